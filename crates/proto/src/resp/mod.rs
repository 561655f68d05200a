//! RESP2, the Redis protocol, as Redis 7 speaks it to pub/sub clients.

pub mod encode;
mod parse;
mod split;

pub use parse::{parse_command, Args, Limits, ProtocolError};
pub use split::split_args;
