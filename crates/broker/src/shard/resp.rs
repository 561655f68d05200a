//! The Redis pub/sub front-end: RESP2 commands on a connection, byte-compatible with Redis 7.

use bytes::Bytes;
use corecast_proto::resp::{encode, parse_command_resuming, string2ll, Args};

use super::{PendingKind, Shard};
use crate::conn::Life;
use crate::delivery::Format;
use crate::msg::{MessageView, Ns, Query};
use crate::session::{RespSession, Session};

/// Commands Redis knows that corecast does not run; in subscribed mode Redis answers "Can't
/// execute" for these rather than "unknown command", and so do we. Not exhaustive: the common
/// ones clients send.
const REDIS_COMMANDS: &[&str] = &[
    "get",
    "set",
    "del",
    "exists",
    "expire",
    "incr",
    "decr",
    "mget",
    "mset",
    "keys",
    "scan",
    "type",
    "ttl",
    "hget",
    "hset",
    "hgetall",
    "hdel",
    "lpush",
    "rpush",
    "lpop",
    "rpop",
    "lrange",
    "llen",
    "sadd",
    "srem",
    "smembers",
    "zadd",
    "zrange",
    "zrem",
    "info",
    "dbsize",
    "flushdb",
    "flushall",
    "multi",
    "exec",
    "discard",
    "watch",
    "unwatch",
    "eval",
    "evalsha",
    "script",
    "config",
    "command",
    "monitor",
    "xadd",
    "xread",
    "xrange",
    "append",
    "getset",
    "setex",
    "setnx",
    "incrby",
    "decrby",
    "strlen",
    "time",
    "lastsave",
    "save",
    "bgsave",
    "shutdown",
    "slaveof",
    "replicaof",
    "role",
    "wait",
    "object",
    "memory",
    "debug",
    "readonly",
    "readwrite",
    "cluster",
    "function",
    "fcall",
    "blpop",
    "brpop",
    "expireat",
    "persist",
    "rename",
];

/// Commands allowed while subscribed (RESP2).
const SUBSCRIBED_OK: &[&[u8]] = &[
    b"subscribe",
    b"ssubscribe",
    b"psubscribe",
    b"unsubscribe",
    b"sunsubscribe",
    b"punsubscribe",
    b"ping",
    b"quit",
    b"reset",
];

fn lower(name: &[u8]) -> String {
    String::from_utf8_lossy(name).to_ascii_lowercase()
}

/// A client argument as Redis's `%.128s` prints it: up to the first NUL, at most 128 bytes.
fn c_str(arg: &[u8], max: usize) -> &[u8] {
    let end = arg
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(arg.len())
        .min(max);
    &arg[..end]
}

/// Redis's arity of a container command's subcommand (argv counted from the command name;
/// negative: at least that many), or `None` if Redis 7 has no such subcommand. Redis
/// resolves the subcommand before anything else, so an unknown one or a wrong count is
/// answered first, and the subscribed-mode error names `pubsub|numsub` rather than `pubsub`.
fn subcommand_arity(cmd: &str, sub: &str) -> Option<i8> {
    match (cmd, sub) {
        ("pubsub", "channels" | "numsub" | "shardchannels" | "shardnumsub") => Some(-2),
        ("pubsub", "numpat" | "help") => Some(2),
        (
            "client",
            "getname" | "getredir" | "help" | "id" | "info" | "trackinginfo" | "unpause",
        ) => Some(2),
        ("client", "caching" | "no-evict" | "no-touch" | "reply" | "setname") => Some(3),
        ("client", "setinfo") => Some(4),
        ("client", "list") => Some(-2),
        ("client", "kill" | "pause" | "tracking" | "unblock") => Some(-3),
        _ => None,
    }
}

/// Whether `argc` arguments satisfy Redis arity `arity`.
fn arity_accepts(arity: i8, argc: usize) -> bool {
    if arity < 0 {
        argc >= arity.unsigned_abs() as usize
    } else {
        argc == arity as usize
    }
}

/// Redis 7's `PUBSUB HELP`, line for line.
const PUBSUB_HELP: &[&str] = &[
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
];

/// The databases Redis has by default (`databases 16`). Pub/sub ignores the selected
/// database in Redis, so SELECT only has to accept what Redis accepts.
const DATABASES: i64 = 16;

impl Shard {
    /// Parses and runs as many complete commands as `data` holds; returns bytes consumed.
    pub(super) fn resp_process(&mut self, key: usize, data: &[u8]) -> usize {
        let mut args = std::mem::replace(&mut self.args, Args::new());
        // `data` starts where the incomplete command of the last call started (see
        // `Conn::resume`); each complete command resets it.
        let mut resume = self.resp_mut(key).resume;
        let mut pos = 0;
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
    fn resp_mut(&mut self, key: usize) -> &mut RespSession {
        match &mut self.conns[key].session {
            Session::Resp(s) => s,
            other => unreachable!("a RESP command on a {:?} session", other.protocol()),
        }
    }

    /// Whether connection `key` switched to RESP3 with `HELLO 3`.
    fn resp3(&self, key: usize) -> bool {
        self.conns[key].format == Format::Resp3
    }

    fn reply(&mut self, key: usize, bytes: &[u8]) {
        self.conns[key].out.reply(bytes);
        self.mark_dirty(key);
    }

    fn reply_with(&mut self, key: usize, f: impl FnOnce(&mut Vec<u8>)) {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        f(&mut buf);
        self.reply(key, &buf);
        self.scratch = buf;
    }

    fn reply_error(&mut self, key: usize, msg: &str) {
        self.reply_error_bytes(key, msg.as_bytes());
    }

    fn reply_error_bytes(&mut self, key: usize, msg: &[u8]) {
        self.reply_with(key, |b| encode::error(b, msg));
    }

    /// Refuses a new channel or pattern when the connection already holds
    /// `max_subscriptions` (one that it holds is never refused: re-subscribing adds nothing).
    /// Redis has no such limit, so no text to copy; one error per refused name keeps the
    /// reply count that clients expect from a multi-channel SUBSCRIBE.
    fn refused_past_limit(&mut self, key: usize, already_held: bool) -> bool {
        let held = self.resp_mut(key).subs.total();
        let max = self.cfg.max_subscriptions;
        if already_held || held < max {
            return false;
        }
        self.reply_error(
            key,
            &format!("ERR max subscriptions per connection reached ({max})"),
        );
        true
    }

    /// `unknown subcommand 'x'. Try PUBSUB HELP.`, with `x` as the client sent it.
    fn unknown_subcommand(&mut self, key: usize, cmd: &str, sub: &[u8]) {
        self.subcommand_error(key, "ERR unknown subcommand '", cmd, sub);
    }

    /// Redis's `addReplySubcommandSyntaxError`: a known subcommand with arguments it rejects.
    fn subcommand_syntax_error(&mut self, key: usize, cmd: &str, sub: &[u8]) {
        let text = "ERR unknown subcommand or wrong number of arguments for '";
        self.subcommand_error(key, text, cmd, sub);
    }

    /// `<text><sub>'. Try <CMD> HELP.`
    fn subcommand_error(&mut self, key: usize, text: &str, cmd: &str, sub: &[u8]) {
        let mut m = text.as_bytes().to_vec();
        m.extend_from_slice(c_str(sub, 128));
        m.extend_from_slice(format!("'. Try {} HELP.", cmd.to_ascii_uppercase()).as_bytes());
        self.reply_error_bytes(key, &m);
    }

    fn arity_error(&mut self, key: usize, cmd: &str) {
        self.reply_error(
            key,
            &format!("ERR wrong number of arguments for '{cmd}' command"),
        );
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
        // (minimum args, maximum args or 0 for no maximum), as Redis's command table.
        let arity: Option<(usize, usize)> = match cmd {
            "subscribe" | "psubscribe" | "ssubscribe" => Some((2, 0)),
            "unsubscribe" | "punsubscribe" | "sunsubscribe" => Some((1, 0)),
            "publish" | "spublish" => Some((3, 3)),
            "pubsub" | "client" => Some((2, 0)),
            "ping" | "quit" | "hello" => Some((1, 0)),
            "echo" | "select" => Some((2, 2)),
            "auth" => Some((2, 0)),
            "reset" => Some((1, 1)),
            _ => None,
        };
        // Redis limits the commands of a subscribed connection in RESP2 only: a RESP3 client
        // tells pushes from replies by their type.
        let restricted = self.resp_mut(key).subscribed() && !self.resp3(key);
        let Some((min, max)) = arity else {
            if restricted && REDIS_COMMANDS.contains(&cmd) {
                self.not_in_subscribed_mode(key, cmd);
            } else {
                self.unknown_command(key, args);
            }
            return;
        };
        if argc < min || (max != 0 && argc > max) {
            self.arity_error(key, cmd);
            return;
        }
        if cmd == "pubsub" || cmd == "client" {
            let raw = args.get(1).unwrap_or_default();
            let sub = lower(raw);
            match subcommand_arity(cmd, &sub) {
                None => {
                    self.unknown_subcommand(key, cmd, raw);
                    return;
                }
                Some(a) if !arity_accepts(a, argc) => {
                    self.arity_error(key, &format!("{cmd}|{sub}"));
                    return;
                }
                Some(_) if restricted => {
                    self.not_in_subscribed_mode(key, &format!("{cmd}|{sub}"));
                    return;
                }
                Some(_) => {}
            }
        } else if restricted && !SUBSCRIBED_OK.contains(&cmd.as_bytes()) {
            self.not_in_subscribed_mode(key, cmd);
            return;
        }
        match cmd {
            "subscribe" => self.cmd_subscribe(key, args, Ns::Plain),
            "ssubscribe" => self.cmd_subscribe(key, args, Ns::Shard),
            "psubscribe" => self.cmd_psubscribe(key, args),
            "unsubscribe" => self.cmd_unsubscribe(key, args, Ns::Plain),
            "sunsubscribe" => self.cmd_unsubscribe(key, args, Ns::Shard),
            "punsubscribe" => self.cmd_punsubscribe(key, args),
            "publish" => self.cmd_publish(key, args, Ns::Plain),
            "spublish" => self.cmd_publish(key, args, Ns::Shard),
            "pubsub" => self.cmd_pubsub(key, args),
            "ping" => self.cmd_ping(key, args),
            "echo" => {
                let msg = args.get(1).unwrap_or_default();
                self.reply_with(key, |b| encode::bulk(b, msg));
            }
            "quit" => {
                self.reply(key, b"+OK\r\n");
                self.conns[key].life = Life::CloseAfterFlush;
            }
            "reset" => {
                self.drop_subscriptions(key);
                self.resp_mut(key).name = None;
                self.conns[key].format = Format::Resp2;
                self.reply(key, b"+RESET\r\n");
            }
            "hello" => self.cmd_hello(key, args),
            "client" => self.cmd_client(key, args),
            "auth" => self.cmd_auth(key, args),
            "select" => self.cmd_select(key, args),
            _ => unreachable!("every command with an arity is dispatched"),
        }
    }

    fn not_in_subscribed_mode(&mut self, key: usize, cmd: &str) {
        self.reply_error(
            key,
            &format!(
                "ERR Can't execute '{cmd}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
            ),
        );
    }

    /// Redis's `unknown command 'x', with args beginning with: 'a' 'b' `, built from bytes
    /// the way its `%.128s` / `%.*s` formats do (at most 128 bytes of arguments, each cut at
    /// a NUL).
    fn unknown_command(&mut self, key: usize, args: &Args) {
        let mut m = b"ERR unknown command '".to_vec();
        m.extend_from_slice(c_str(args.get(0).unwrap_or_default(), 128));
        m.extend_from_slice(b"', with args beginning with: ");
        let mut rest = Vec::new();
        for a in args.iter().skip(1) {
            if rest.len() >= 128 {
                break;
            }
            let room = 128 - rest.len();
            rest.push(b'\'');
            rest.extend_from_slice(c_str(a, room));
            rest.extend_from_slice(b"' ");
        }
        m.extend_from_slice(&rest);
        self.reply_error_bytes(key, &m);
    }

    fn cmd_subscribe(&mut self, key: usize, args: &Args, ns: Ns) {
        let resp3 = self.resp3(key);
        let kind: &[u8] = if ns == Ns::Plain {
            b"subscribe"
        } else {
            b"ssubscribe"
        };
        for ch in args.iter().skip(1) {
            let resp = &self.resp_mut(key).subs;
            let held = if ns == Ns::Plain {
                resp.channels.contains(ch)
            } else {
                resp.schannels.contains(ch)
            };
            if self.refused_past_limit(key, held) {
                continue;
            }
            let resp = &mut self.resp_mut(key).subs;
            let set = if ns == Ns::Plain {
                &mut resp.channels
            } else {
                &mut resp.schannels
            };
            let channel = Bytes::copy_from_slice(ch);
            let added = set.insert(channel.clone());
            let count = if ns == Ns::Plain {
                resp.classic_count()
            } else {
                resp.schannels.len()
            };
            let mut v = Vec::with_capacity(ch.len() + 32);
            encode::sub_reply(&mut v, kind, Some(ch), count as i64, resp3);
            if added {
                self.add_subscription(key, ns, &channel, Bytes::from(v));
            } else {
                self.reply(key, &v);
            }
        }
    }

    fn cmd_psubscribe(&mut self, key: usize, args: &Args) {
        let resp3 = self.resp3(key);
        for p in args.iter().skip(1) {
            let held = self.resp_mut(key).subs.patterns.contains(p);
            if self.refused_past_limit(key, held) {
                continue;
            }
            let resp = &mut self.resp_mut(key).subs;
            let pattern = Bytes::copy_from_slice(p);
            let added = resp.patterns.insert(pattern.clone());
            let count = resp.classic_count();
            let mut v = Vec::with_capacity(p.len() + 32);
            encode::sub_reply(&mut v, b"psubscribe", Some(p), count as i64, resp3);
            if added {
                self.add_pattern(key, &pattern, Bytes::from(v));
            } else {
                self.reply(key, &v);
            }
        }
    }

    fn cmd_unsubscribe(&mut self, key: usize, args: &Args, ns: Ns) {
        let resp3 = self.resp3(key);
        let kind: &[u8] = if ns == Ns::Plain {
            b"unsubscribe"
        } else {
            b"sunsubscribe"
        };
        let who = self.conns[key].at(key);
        let names: Vec<Bytes> = if args.len() > 1 {
            args.iter().skip(1).map(Bytes::copy_from_slice).collect()
        } else {
            let resp = &self.resp_mut(key).subs;
            let set = if ns == Ns::Plain {
                &resp.channels
            } else {
                &resp.schannels
            };
            set.iter().cloned().collect()
        };
        if names.is_empty() {
            let count = {
                let resp = &self.resp_mut(key).subs;
                if ns == Ns::Plain {
                    resp.classic_count()
                } else {
                    resp.schannels.len()
                }
            };
            self.reply_with(key, |b| {
                encode::sub_reply(b, kind, None, count as i64, resp3)
            });
            return;
        }
        for ch in names {
            let resp = &mut self.resp_mut(key).subs;
            let set = if ns == Ns::Plain {
                &mut resp.channels
            } else {
                &mut resp.schannels
            };
            let removed = set.remove(&ch);
            let count = if ns == Ns::Plain {
                resp.classic_count()
            } else {
                resp.schannels.len()
            };
            if removed {
                self.remove_subscription(who, ns, &ch);
            }
            self.reply_with(key, |b| {
                encode::sub_reply(b, kind, Some(&ch), count as i64, resp3)
            });
        }
    }

    fn cmd_punsubscribe(&mut self, key: usize, args: &Args) {
        let resp3 = self.resp3(key);
        let who = self.conns[key].at(key);
        let names: Vec<Bytes> = if args.len() > 1 {
            args.iter().skip(1).map(Bytes::copy_from_slice).collect()
        } else {
            self.resp_mut(key).subs.patterns.iter().cloned().collect()
        };
        if names.is_empty() {
            let count = self.resp_mut(key).subs.classic_count();
            self.reply_with(key, |b| {
                encode::sub_reply(b, b"punsubscribe", None, count as i64, resp3)
            });
            return;
        }
        for p in names {
            let resp = &mut self.resp_mut(key).subs;
            let removed = resp.patterns.remove(&p);
            let count = resp.classic_count();
            if removed {
                self.remove_pattern(who, &p);
            }
            self.reply_with(key, |b| {
                encode::sub_reply(b, b"punsubscribe", Some(&p), count as i64, resp3)
            });
        }
    }

    fn cmd_publish(&mut self, key: usize, args: &Args, ns: Ns) {
        let channel = args.get(1).unwrap_or_default();
        let payload = args.get(2).unwrap_or_default();
        let msg = MessageView {
            ns,
            channel,
            seq: 0,
            payload,
            ts_ns: corecast_runtime::clock::now_ns(),
            json: corecast_proto::json::is_valid(payload),
        };
        if let Some(n) = self.publish(key, msg) {
            self.reply_with(key, |b| encode::integer(b, n));
        }
    }

    fn cmd_ping(&mut self, key: usize, args: &Args) {
        if args.len() > 2 {
            self.arity_error(key, "ping");
            return;
        }
        let arg = args.get(1);
        if self.resp_mut(key).subscribed() && !self.resp3(key) {
            self.reply_with(key, |b| encode::pong_subscribed(b, arg));
        } else if let Some(a) = arg {
            self.reply_with(key, |b| encode::bulk(b, a));
        } else {
            self.reply(key, b"+PONG\r\n");
        }
    }

    fn cmd_pubsub(&mut self, key: usize, args: &Args) {
        let sub = lower(args.get(1).unwrap_or_default());
        let argc = args.len();
        match sub.as_str() {
            "channels" | "shardchannels" if argc <= 3 => {
                let ns = if sub == "channels" {
                    Ns::Plain
                } else {
                    Ns::Shard
                };
                let pattern = args.get(2).map(Bytes::copy_from_slice);
                self.ask_all(
                    key,
                    Query::Channels(ns, pattern),
                    PendingKind::Names(Vec::new()),
                );
            }
            "numsub" | "shardnumsub" => {
                let ns = if sub == "numsub" {
                    Ns::Plain
                } else {
                    Ns::Shard
                };
                let names: Vec<Bytes> = args.iter().skip(2).map(Bytes::copy_from_slice).collect();
                let zeros = vec![0; names.len()];
                self.ask_all(
                    key,
                    Query::NumSub(ns, names.clone()),
                    PendingKind::NumSub(names, zeros),
                );
            }
            "numpat" => {
                let n = self.patterns.len() as i64;
                self.reply_with(key, |b| encode::integer(b, n));
            }
            "help" => self.reply_with(key, |b| {
                encode::array_header(b, PUBSUB_HELP.len());
                for line in PUBSUB_HELP {
                    encode::simple(b, line.as_bytes());
                }
            }),
            _ => {
                // Known (resp_exec checked), but not with these arguments: CHANNELS with
                // more than one pattern.
                self.subcommand_syntax_error(key, "pubsub", args.get(1).unwrap_or_default());
            }
        }
    }

    /// HELLO [protover [AUTH username password] [SETNAME name]]. Options take effect one by
    /// one as Redis 7.0 applies them: a name set before a bad option stays set.
    fn cmd_hello(&mut self, key: usize, args: &Args) {
        let mut switch_to = None;
        if let Some(v) = args.get(1) {
            let resp3 = match string2ll(v) {
                Some(2) => false,
                Some(3) => true,
                Some(_) => {
                    self.reply_error(key, "NOPROTO unsupported protocol version");
                    return;
                }
                None => {
                    self.reply_error(
                        key,
                        "ERR Protocol version is not an integer or out of range",
                    );
                    return;
                }
            };
            switch_to = Some(resp3);
        }
        let mut i = 2;
        while i < args.len() {
            let opt = args.get(i).unwrap_or_default();
            let more = args.len() - 1 - i;
            if opt.eq_ignore_ascii_case(b"auth") && more >= 2 {
                if !default_user_accepts(args.get(i + 1).unwrap_or_default()) {
                    self.reply(key, WRONGPASS);
                    return;
                }
                i += 3;
            } else if opt.eq_ignore_ascii_case(b"setname") && more >= 1 {
                let name = args.get(i + 1).unwrap_or_default();
                if !valid_client_name(name) {
                    self.reply_error(
                        key,
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    );
                    return;
                }
                self.resp_mut(key).name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
                i += 2;
            } else {
                let mut m = b"ERR Syntax error in HELLO option '".to_vec();
                m.extend_from_slice(c_str(opt, usize::MAX));
                m.push(b'\'');
                self.reply_error_bytes(key, &m);
                return;
            }
        }
        // As Redis: the protocol switches once every option has been applied.
        if let Some(resp3) = switch_to {
            self.conns[key].format = if resp3 { Format::Resp3 } else { Format::Resp2 };
        }
        let id = self.resp_mut(key).client_id as i64;
        let resp3 = self.resp3(key);
        self.reply_with(key, |b| {
            if resp3 {
                encode::map_header(b, 7);
            } else {
                encode::array_header(b, 14);
            }
            encode::bulk(b, b"server");
            encode::bulk(b, b"corecast");
            encode::bulk(b, b"version");
            encode::bulk(b, b"7.0.0");
            encode::bulk(b, b"proto");
            encode::integer(b, if resp3 { 3 } else { 2 });
            encode::bulk(b, b"id");
            encode::integer(b, id);
            encode::bulk(b, b"mode");
            encode::bulk(b, b"standalone");
            encode::bulk(b, b"role");
            encode::bulk(b, b"master");
            encode::bulk(b, b"modules");
            encode::array_header(b, 0);
        });
    }

    fn cmd_client(&mut self, key: usize, args: &Args) {
        let sub = lower(args.get(1).unwrap_or_default());
        match (sub.as_str(), args.len()) {
            ("setname", 3) => {
                let name = args.get(2).unwrap_or_default();
                if !valid_client_name(name) {
                    self.reply_error(
                        key,
                        "ERR Client names cannot contain spaces, newlines or special characters.",
                    );
                    return;
                }
                self.resp_mut(key).name = if name.is_empty() {
                    None
                } else {
                    Some(Bytes::copy_from_slice(name))
                };
                self.reply(key, b"+OK\r\n");
            }
            ("getname", 2) => match self.resp_mut(key).name.clone() {
                Some(n) => self.reply_with(key, |b| encode::bulk(b, &n)),
                None => {
                    let resp3 = self.resp3(key);
                    self.reply_with(key, |b| encode::null(b, resp3));
                }
            },
            ("setinfo", 4) => {
                let attr = lower(args.get(2).unwrap_or_default());
                if attr == "lib-name" || attr == "lib-ver" {
                    self.reply(key, b"+OK\r\n");
                } else {
                    let raw = String::from_utf8_lossy(args.get(2).unwrap_or_default()).into_owned();
                    self.reply_error(key, &format!("ERR Unrecognized option '{raw}'"));
                }
            }
            ("id", 2) => {
                let id = self.resp_mut(key).client_id as i64;
                self.reply_with(key, |b| encode::integer(b, id));
            }
            // Redis has these; corecast does not (resp_exec checked the arity already).
            _ => self.unknown_subcommand(key, "client", args.get(1).unwrap_or_default()),
        }
    }

    /// AUTH as Redis answers it with no password configured: the one-argument form is an
    /// error saying so, and the default user accepts any password. A client configured with
    /// a password hears clearly that this broker has none.
    fn cmd_auth(&mut self, key: usize, args: &Args) {
        match args.len() {
            2 => self.reply_error(
                key,
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ),
            3 if default_user_accepts(args.get(1).unwrap_or_default()) => {
                self.reply(key, b"+OK\r\n")
            }
            3 => self.reply(key, WRONGPASS),
            _ => self.reply_error(key, "ERR syntax error"),
        }
    }

    /// SELECT: Redis's pub/sub ignores the database, so clients that select one (node-redis's
    /// `database` option) work unchanged; indexes outside Redis's default 16 fail as there.
    fn cmd_select(&mut self, key: usize, args: &Args) {
        match string2ll(args.get(1).unwrap_or_default()) {
            Some(db) if (0..DATABASES).contains(&db) => self.reply(key, b"+OK\r\n"),
            Some(db) if i32::try_from(db).is_ok() => {
                self.reply_error(key, "ERR DB index is out of range")
            }
            Some(_) => self.reply_error(
                key,
                "ERR value is out of range, value must between -2147483648 and 2147483647",
            ),
            None => self.reply_error(key, "ERR value is not an integer or out of range"),
        }
    }
}

/// Redis's reply to credentials the default user (no password set) does not take.
const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

/// With no password configured, Redis's only user is `default`, and it takes any password.
fn default_user_accepts(user: &[u8]) -> bool {
    user == b"default"
}

/// Redis allows printable ASCII without spaces in client names.
fn valid_client_name(name: &[u8]) -> bool {
    name.iter().all(|&c| (b'!'..=b'~').contains(&c))
}

/// The RESP encoding of a reply that waited for other shards.
pub(super) fn encode_answer(value: PendingKind) -> Bytes {
    let mut v = Vec::new();
    match value {
        PendingKind::Ready(b) => return b,
        PendingKind::Count(n) => return integer_reply(n),
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
