//! RESP2, the Redis protocol, as Redis 7 speaks it to pub/sub clients.
//!
//! [`parse_command`] frames and splits one client command (multibulk or inline) into a
//! reusable [`Args`] with Redis's limits and byte-exact error texts, so tools written for
//! Redis see the same behaviour; [`encode`] writes replies and pushes byte-identical to
//! Redis's RESP2 output, so pre-encoded frames can be shared by every subscriber.

pub mod encode;
mod parse;
mod split;

pub use parse::{
    parse_command, parse_command_resuming, string2ll, Args, Limits, ProtocolError, Resume,
};
pub use split::split_args;
