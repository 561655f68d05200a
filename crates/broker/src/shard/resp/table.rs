//! The RESP command table: one row per command, as Redis's own table has them (name,
//! arity, whether RESP2 subscribed mode allows it, handler). Adding a command is one row here
//! and its handler in `pubsub.rs` or `connection.rs`.

use corecast_proto::resp::Args;

use super::super::Shard;
use crate::msg::Ns;
use crate::session::SubKind;

/// One command corecast runs.
pub(super) struct Command {
    /// Lower-case name.
    pub name: &'static str,
    /// Fewest arguments, the name included (Redis's arity).
    pub min_args: usize,
    /// Most arguments, or 0 for no maximum.
    pub max_args: usize,
    /// Allowed while a RESP2 connection is subscribed.
    pub subscribed_ok: bool,
    /// Takes a subcommand whose arity is checked first (`subcommand_arity`).
    pub container: bool,
    /// Runs the command for connection `key`.
    pub run: fn(&mut Shard, usize, &Args),
}

const fn row(
    name: &'static str,
    min_args: usize,
    max_args: usize,
    subscribed_ok: bool,
    run: fn(&mut Shard, usize, &Args),
) -> Command {
    Command {
        name,
        min_args,
        max_args,
        subscribed_ok,
        container: false,
        run,
    }
}

/// Every command, the publish path's first.
pub(super) static COMMANDS: &[Command] = &[
    row("publish", 3, 3, false, |s, k, a| {
        s.cmd_publish(k, a, Ns::Plain)
    }),
    row("spublish", 3, 3, false, |s, k, a| {
        s.cmd_publish(k, a, Ns::Shard)
    }),
    row("subscribe", 2, 0, true, |s, k, a| {
        s.cmd_subscribe(k, a, SubKind::Channel)
    }),
    row("ssubscribe", 2, 0, true, |s, k, a| {
        s.cmd_subscribe(k, a, SubKind::ShardChannel)
    }),
    row("psubscribe", 2, 0, true, |s, k, a| {
        s.cmd_subscribe(k, a, SubKind::Pattern)
    }),
    row("unsubscribe", 1, 0, true, |s, k, a| {
        s.cmd_unsubscribe(k, a, SubKind::Channel)
    }),
    row("sunsubscribe", 1, 0, true, |s, k, a| {
        s.cmd_unsubscribe(k, a, SubKind::ShardChannel)
    }),
    row("punsubscribe", 1, 0, true, |s, k, a| {
        s.cmd_unsubscribe(k, a, SubKind::Pattern)
    }),
    Command {
        container: true,
        ..row("pubsub", 2, 0, false, Shard::cmd_pubsub)
    },
    row("ping", 1, 0, true, Shard::cmd_ping),
    row("echo", 2, 2, false, Shard::cmd_echo),
    row("quit", 1, 0, true, Shard::cmd_quit),
    row("reset", 1, 1, true, Shard::cmd_reset),
    row("hello", 1, 0, false, Shard::cmd_hello),
    Command {
        container: true,
        ..row("client", 2, 0, false, Shard::cmd_client)
    },
    row("auth", 2, 0, false, Shard::cmd_auth),
    row("select", 2, 2, false, Shard::cmd_select),
];

/// The row of `name` (lower case).
pub(super) fn lookup(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// Commands Redis knows that corecast does not run; in subscribed mode Redis answers "Can't
/// execute" for these rather than "unknown command", and so do we. Not exhaustive: the common
/// ones clients send.
pub(super) const REDIS_COMMANDS: &[&str] = &[
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

/// Redis's arity of a container command's subcommand (argv counted from the command name;
/// negative: at least that many), or `None` if Redis 7 has no such subcommand. Redis
/// resolves the subcommand before anything else, so an unknown one or a wrong count is
/// answered first, and the subscribed-mode error names `pubsub|numsub` rather than `pubsub`.
pub(super) fn subcommand_arity(cmd: &str, sub: &str) -> Option<i8> {
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
pub(super) fn arity_accepts(arity: i8, argc: usize) -> bool {
    if arity < 0 {
        argc >= arity.unsigned_abs() as usize
    } else {
        argc == arity as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_unique_lower_case_and_not_listed_as_foreign() {
        for (i, c) in COMMANDS.iter().enumerate() {
            assert_eq!(c.name, c.name.to_ascii_lowercase());
            assert!(c.name.len() <= 16, "resp_exec lower-cases at most 16 bytes");
            assert!(COMMANDS[..i].iter().all(|o| o.name != c.name), "{}", c.name);
            assert!(!REDIS_COMMANDS.contains(&c.name), "{}", c.name);
            assert!(lookup(c.name).is_some_and(|r| std::ptr::eq(r, c)));
        }
    }

    #[test]
    fn subscribed_mode_allows_what_redis_allows() {
        let allowed: Vec<&str> = COMMANDS
            .iter()
            .filter(|c| c.subscribed_ok)
            .map(|c| c.name)
            .collect();
        let mut expected = [
            "subscribe",
            "ssubscribe",
            "psubscribe",
            "unsubscribe",
            "sunsubscribe",
            "punsubscribe",
            "ping",
            "quit",
            "reset",
        ];
        let mut allowed = allowed;
        allowed.sort_unstable();
        expected.sort_unstable();
        assert_eq!(allowed, expected);
    }
}
