//! Pub/sub commands: (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, (S)PUBLISH, PUBSUB.

use bytes::Bytes;
use corecast_proto::resp::{encode, Args};

use super::super::{PendingKind, Shard};
use super::errors::lower;
use crate::config::limits::SUBSCRIPTIONS_PER_TURN;
use crate::conn::Life;
use crate::msg::{MessageView, Name, Ns, Query};
use crate::session::{PendingNames, PendingSubs, SubKind};

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

impl Shard {
    /// SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE: one confirmation per name, each sent once the
    /// subscription is active (held until the owner, or every shard for a pattern, knows).
    /// More names than `SUBSCRIPTIONS_PER_TURN` go on in later turns (see `continue_subs`).
    pub(super) fn cmd_subscribe(&mut self, key: usize, args: &Args, kind: SubKind) {
        if args.len() - 1 > SUBSCRIPTIONS_PER_TURN {
            let names = PendingNames::Args {
                args: args.clone(),
                next: 1,
            };
            return self.start_pending_subs(key, kind, true, names);
        }
        for name in args.iter().skip(1) {
            self.subscribe_name(key, kind, name);
        }
    }

    /// One name of a SUBSCRIBE: checks, registration, confirmation.
    fn subscribe_name(&mut self, key: usize, kind: SubKind, name: &[u8]) {
        let resp3 = self.resp3(key);
        let word = reply_word(kind, true);
        let held = self.resp_mut(key).subs.set(kind).contains(name);
        if self.refused_past_limit(key, held) {
            return;
        }
        if !held {
            let admitted = match kind {
                SubKind::Pattern => {
                    let patterns = self.resp_mut(key).subs.set(kind).len();
                    self.admit_pattern(name, patterns)
                }
                SubKind::Channel | SubKind::ShardChannel => self.admit_channel(name),
            };
            if let Err(refusal) = admitted {
                return self.reply_error(key, &refusal.resp_error());
            }
        }
        let subs = &mut self.resp_mut(key).subs;
        let name = Name::from(name);
        let added = subs.insert(kind, name.clone());
        let count = subs.count_for(kind) as i64;
        let mut v = Vec::with_capacity(name.len() + 32);
        encode::sub_reply(&mut v, word, Some(&name), count, resp3);
        if added {
            self.subscribe_one(key, kind, &name, Bytes::from(v));
        } else {
            self.reply(key, &v);
        }
    }

    /// UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE: the names given, or every name of the kind;
    /// one confirmation each (or one with a null name when there are none). More names than
    /// `SUBSCRIPTIONS_PER_TURN` go on in later turns.
    pub(super) fn cmd_unsubscribe(&mut self, key: usize, args: &Args, kind: SubKind) {
        let resp3 = self.resp3(key);
        let word = reply_word(kind, false);
        if args.len() - 1 > SUBSCRIPTIONS_PER_TURN {
            let names = PendingNames::Args {
                args: args.clone(),
                next: 1,
            };
            return self.start_pending_subs(key, kind, false, names);
        }
        let names: Vec<Name> = if args.len() > 1 {
            args.iter().skip(1).map(Name::from).collect()
        } else {
            self.resp_mut(key).subs.set(kind).iter().cloned().collect()
        };
        if names.is_empty() {
            let count = self.resp_mut(key).subs.count_for(kind) as i64;
            self.reply_with(key, |b| encode::sub_reply(b, word, None, count, resp3));
            return;
        }
        if names.len() > SUBSCRIPTIONS_PER_TURN {
            let names = PendingNames::Names(names.into_iter());
            return self.start_pending_subs(key, kind, false, names);
        }
        for name in names {
            self.unsubscribe_name(key, kind, &name);
        }
    }

    /// One name of an UNSUBSCRIBE.
    fn unsubscribe_name(&mut self, key: usize, kind: SubKind, name: &Name) {
        let resp3 = self.resp3(key);
        let word = reply_word(kind, false);
        let who = self.conns[key].at(key);
        let subs = &mut self.resp_mut(key).subs;
        let removed = subs.remove(kind, name);
        let count = subs.count_for(kind) as i64;
        if removed {
            self.unsubscribe_one(who, kind, name);
        }
        self.reply_with(key, |b| {
            encode::sub_reply(b, word, Some(name), count, resp3)
        });
    }

    /// Keeps the names of a big (UN)SUBSCRIBE on the connection and does the first slice;
    /// `resp_process` pauses the connection's input until the rest is done, so the commands
    /// behind it still run after it, in order.
    fn start_pending_subs(
        &mut self,
        key: usize,
        kind: SubKind,
        subscribe: bool,
        names: PendingNames,
    ) {
        self.conns[key].rare_mut().pending_subs = Some(PendingSubs {
            kind,
            subscribe,
            names,
        });
        self.continue_subs(key);
    }

    /// Does up to `SUBSCRIPTIONS_PER_TURN` more names of the connection's pending
    /// (UN)SUBSCRIBE (fewer if the turn's budget runs out). Returns whether it is done.
    pub(in crate::shard) fn continue_subs(&mut self, key: usize) -> bool {
        let Some(mut pending) = self.conns[key]
            .rare
            .as_mut()
            .and_then(|r| r.pending_subs.take())
        else {
            return true;
        };
        for _ in 0..SUBSCRIPTIONS_PER_TURN {
            match &mut pending.names {
                PendingNames::Args { args, next } => {
                    let Some(name) = args.get(*next) else {
                        break;
                    };
                    *next += 1;
                    if pending.subscribe {
                        self.subscribe_name(key, pending.kind, name);
                    } else {
                        self.unsubscribe_name(key, pending.kind, &Name::from(name));
                    }
                }
                PendingNames::Names(names) => {
                    let Some(name) = names.next() else {
                        break;
                    };
                    if pending.subscribe {
                        self.subscribe_name(key, pending.kind, &name);
                    } else {
                        self.unsubscribe_name(key, pending.kind, &name);
                    }
                }
            }
            self.charge_work(1);
            if self.turn_exhausted || self.conns[key].life != Life::Open {
                break;
            }
        }
        let conn = &mut self.conns[key];
        if !pending.names.is_empty() && conn.life == Life::Open {
            conn.rare_mut().pending_subs = Some(pending);
            false
        } else {
            conn.tidy_rare();
            true
        }
    }

    pub(super) fn cmd_publish(&mut self, key: usize, args: &Args, ns: Ns) {
        let channel = args.get(1).unwrap_or_default();
        let payload = args.get(2).unwrap_or_default();
        if let Err(refusal) = self.check_channel_name(channel) {
            return self.reply_error(key, &refusal.resp_error());
        }
        let msg = MessageView {
            ns,
            channel,
            seq: 0,
            epoch: 0,
            payload,
            ts_ns: corecast_runtime::clock::now_ns(),
            json: corecast_proto::json::is_valid(payload),
        };
        if let Some((n, _)) = self.publish(key, msg, None) {
            self.reply_with(key, |b| encode::integer(b, n));
        }
    }

    pub(super) fn cmd_pubsub(&mut self, key: usize, args: &Args) {
        let sub = lower(args.get(1).unwrap_or_default());
        let argc = args.len();
        match sub.as_str() {
            "channels" | "shardchannels" if argc <= 3 => {
                let ns = if sub == "channels" {
                    Ns::Plain
                } else {
                    Ns::Shard
                };
                let pattern = args.get(2).map(Name::from);
                let max = self.cfg.max_pattern_bytes;
                if pattern.as_ref().is_some_and(|p| p.len() > max) {
                    self.counters.pattern_refusals += 1;
                    let refusal = crate::shard::admit::Refusal::PatternTooLong(max);
                    return self.reply_error(key, &refusal.resp_error());
                }
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
                let names: Vec<Name> = args.iter().skip(2).map(Name::from).collect();
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
}

/// The first element of a (un)subscribe confirmation, as Redis names it.
fn reply_word(kind: SubKind, subscribe: bool) -> &'static [u8] {
    match (kind, subscribe) {
        (SubKind::Channel, true) => b"subscribe",
        (SubKind::Pattern, true) => b"psubscribe",
        (SubKind::ShardChannel, true) => b"ssubscribe",
        (SubKind::Channel, false) => b"unsubscribe",
        (SubKind::Pattern, false) => b"punsubscribe",
        (SubKind::ShardChannel, false) => b"sunsubscribe",
    }
}
