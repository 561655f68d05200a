//! Pub/sub commands: (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, (S)PUBLISH, PUBSUB.

use bytes::Bytes;
use corecast_proto::resp::{encode, Args};

use super::super::{PendingKind, Shard};
use super::errors::lower;
use crate::msg::{MessageView, Ns, Query};

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
    pub(super) fn cmd_subscribe(&mut self, key: usize, args: &Args, ns: Ns) {
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

    pub(super) fn cmd_psubscribe(&mut self, key: usize, args: &Args) {
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

    pub(super) fn cmd_unsubscribe(&mut self, key: usize, args: &Args, ns: Ns) {
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

    pub(super) fn cmd_punsubscribe(&mut self, key: usize, args: &Args) {
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

    pub(super) fn cmd_publish(&mut self, key: usize, args: &Args, ns: Ns) {
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
}
