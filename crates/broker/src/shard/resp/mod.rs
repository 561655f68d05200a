//! The Redis pub/sub front-end: RESP2/RESP3 commands on a connection, byte-compatible with
//! Redis 7. `table.rs` lists the commands, `pubsub.rs` and `connection.rs` run them,
//! `errors.rs` words Redis's errors.

mod connection;
mod errors;
mod pubsub;
mod table;

use bytes::Bytes;
use corecast_proto::resp::{encode, parse_command_resuming, Args};

use super::{PendingKind, Shard};
use crate::conn::Life;
use crate::delivery::Format;
use crate::pause::PauseReason;
use crate::session::{RespSession, Session};
use errors::lower;

impl Shard {
    /// Parses and runs as many complete commands as `data` holds; returns bytes consumed.
    pub(super) fn resp_process(&mut self, key: usize, data: &[u8]) -> usize {
        let mut args = std::mem::replace(&mut self.args, Args::new());
        // `data` starts where the incomplete command of the last call started (see
        // `Conn::resume`); each complete command resets it.
        let mut resume = self.resp_mut(key).resume;
        let mut pos = 0;
        if self.conns[key].rare.is_some() && !self.continue_subs(key) {
            self.args = args;
            self.stall(key, PauseReason::Continuation);
            return 0;
        }
        while pos < data.len() {
            if let Some(reason) = self.pause_reason(key) {
                self.stall(key, reason);
                break;
            }
            match parse_command_resuming(&data[pos..], &self.limits, &mut args, &mut resume) {
                Ok(Some(n)) => {
                    pos += n;
                    if !args.is_empty() {
                        self.resp_exec(key, &args);
                    }
                    // A command costs one unit and one more per 4 KiB it carries (hashing
                    // and copying a long name), so the clock is read often enough.
                    self.charge_work(1 + (n as u64 >> 12));
                    if self.conns[key]
                        .rare
                        .as_ref()
                        .is_some_and(|r| r.pending_subs.is_some())
                    {
                        self.stall(key, PauseReason::Continuation);
                        break;
                    }
                    if self.conns[key].life != Life::Open {
                        pos = data.len();
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    self.counters.protocol_errors += 1;
                    let mut msg = Vec::new();
                    e.write_redis_error_line(&mut msg);
                    let conn = &mut self.conns[key];
                    conn.out.reply(&msg);
                    conn.life = Life::CloseAfterFlush;
                    self.mark_dirty(key);
                    pos = data.len();
                    break;
                }
            }
        }
        self.args = args;
        if let Some(Session::Resp(s)) = self.conns.get_mut(key).map(|c| &mut c.session) {
            s.resume = resume;
        }
        pos
    }

    /// The RESP state of connection `key`. Only RESP connections run RESP commands: the
    /// session's variant is fixed by the listener that accepted the connection.
    pub(super) fn resp_mut(&mut self, key: usize) -> &mut RespSession {
        match &mut self.conns[key].session {
            Session::Resp(s) => s,
            other => unreachable!("a RESP command on a {:?} session", other.protocol()),
        }
    }

    /// Whether connection `key` switched to RESP3 with `HELLO 3`.
    pub(super) fn resp3(&self, key: usize) -> bool {
        self.conns[key].format == Format::Resp3
    }

    pub(super) fn reply(&mut self, key: usize, bytes: &[u8]) {
        self.conns[key].out.reply(bytes);
        self.mark_dirty(key);
    }

    pub(super) fn reply_with(&mut self, key: usize, f: impl FnOnce(&mut Vec<u8>)) {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        f(&mut buf);
        self.reply(key, &buf);
        self.scratch = buf;
    }

    fn resp_exec(&mut self, key: usize, args: &Args) {
        let name = args.get(0).unwrap_or_default();
        // Lower-cased on the stack: no allocation per command on the publish path.
        let mut buf = [0u8; 16];
        let cmd: &str = if name.len() <= buf.len() {
            for (d, s) in buf.iter_mut().zip(name) {
                *d = s.to_ascii_lowercase();
            }
            std::str::from_utf8(&buf[..name.len()]).unwrap_or("")
        } else {
            ""
        };
        let argc = args.len();
        // Redis limits the commands of a subscribed connection in RESP2 only: a RESP3 client
        // tells pushes from replies by their type.
        let restricted = self.resp_mut(key).subscribed() && !self.resp3(key);
        let Some(command) = table::lookup(cmd) else {
            if restricted && table::REDIS_COMMANDS.contains(&cmd) {
                self.not_in_subscribed_mode(key, cmd);
            } else {
                self.unknown_command(key, args);
            }
            return;
        };
        if argc < command.min_args || (command.max_args != 0 && argc > command.max_args) {
            self.arity_error(key, cmd);
            return;
        }
        if command.container {
            // Redis resolves the subcommand before anything else, so an unknown one or a
            // wrong count is answered first, and the subscribed-mode error names
            // `pubsub|numsub` rather than `pubsub`.
            let raw = args.get(1).unwrap_or_default();
            let sub = lower(raw);
            match table::subcommand_arity(cmd, &sub) {
                None => {
                    self.unknown_subcommand(key, cmd, raw);
                    return;
                }
                Some(a) if !table::arity_accepts(a, argc) => {
                    self.arity_error(key, &format!("{cmd}|{sub}"));
                    return;
                }
                Some(_) if restricted => {
                    self.not_in_subscribed_mode(key, &format!("{cmd}|{sub}"));
                    return;
                }
                Some(_) => {}
            }
        } else if restricted && !command.subscribed_ok {
            self.not_in_subscribed_mode(key, cmd);
            return;
        }
        (command.run)(self, key, args);
    }
}

/// The RESP encoding of a reply that waited for other shards.
pub(super) fn encode_answer(value: PendingKind) -> Bytes {
    let mut v = Vec::new();
    match value {
        PendingKind::Ready(b) => return b,
        PendingKind::Publish { receivers, .. } => return integer_reply(receivers),
        // A RESP connection never joins through the owner (its subscriptions are live at
        // once, confirmed by acknowledgement).
        PendingKind::Join(_) => return Bytes::new(),
        PendingKind::NumSub(names, counts) => {
            encode::array_header(&mut v, names.len() * 2);
            for (name, n) in names.iter().zip(counts) {
                encode::bulk(&mut v, name);
                encode::integer(&mut v, n);
            }
        }
        PendingKind::Names(mut names) => {
            names.sort();
            encode::array_header(&mut v, names.len());
            for name in &names {
                encode::bulk(&mut v, name);
            }
        }
    }
    Bytes::from(v)
}

/// Most subscriber counts kept pre-encoded.
const CACHED_COUNTS: i64 = 1024;

/// `:n\r\n`, for the counts PUBLISH answers with: small ones come from a table built once
/// (static bytes, so neither an allocation nor a reference count per answer).
fn integer_reply(n: i64) -> Bytes {
    static TABLE: std::sync::OnceLock<Vec<Bytes>> = std::sync::OnceLock::new();
    if !(0..CACHED_COUNTS).contains(&n) {
        let mut v = Vec::new();
        encode::integer(&mut v, n);
        return Bytes::from(v);
    }
    let table = TABLE.get_or_init(|| {
        let mut all = Vec::new();
        let mut ends = Vec::with_capacity(CACHED_COUNTS as usize);
        for i in 0..CACHED_COUNTS {
            encode::integer(&mut all, i);
            ends.push(all.len());
        }
        // Leaked once per process (about 6 KiB) so the slices are 'static.
        let all: &'static [u8] = Box::leak(all.into_boxed_slice());
        let mut start = 0;
        ends.into_iter()
            .map(|end| {
                let b = Bytes::from_static(&all[start..end]);
                start = end;
                b
            })
            .collect()
    });
    table[n as usize].clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_replies_match_the_encoder() {
        for n in [0, 1, 9, 10, 999, 1023, 1024, 5000, -1, i64::MAX] {
            let mut v = Vec::new();
            encode::integer(&mut v, n);
            assert_eq!(integer_reply(n), v, "{n}");
        }
    }
}
