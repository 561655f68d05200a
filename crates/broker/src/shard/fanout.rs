//! Channels across shards: ownership, interest, publish, fan-out, and replies that wait for
//! other shards.

use crate::config::limits::DRAIN_BUDGET;
use std::sync::Arc;

use bytes::Bytes;
use corecast_proto::glob::glob_match;

use super::{PendingKind, Shard};
use crate::conn::{Life, Protocol};
use crate::delivery::{FrameCache, Via};
use crate::msg::{Message, MessageView, Ns, Query, ReplyValue, ShardMsg};
use crate::pending::Pending;
use crate::session::SubKind;
use crate::tables::ConnRef;

/// FNV-1a: a fixed hash so every shard (and every restart) agrees on channel owners.
pub fn channel_hash(name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in name {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Shard {
    /// The shard that owns `channel`.
    pub(super) fn owner_of(&self, channel: &[u8]) -> usize {
        (channel_hash(channel) % self.shards as u64) as usize
    }

    /// Sends a message to shard `to` (itself included), never blocking: a full ring queues it
    /// in order behind earlier overflow and marks the mesh congested.
    pub(super) fn send_to(&mut self, to: usize, msg: ShardMsg) {
        if self.mesh.send(to, msg, &self.shared.congested) {
            self.counters.ring_full += 1;
        }
    }

    /// Handles this turn's messages from peers (a budget each) and from itself.
    pub(super) fn drain_mesh(&mut self) {
        for from in 0..self.shards {
            if from == self.id {
                continue;
            }
            for _ in 0..DRAIN_BUDGET {
                let Some(msg) = self.mesh.pop(from) else {
                    break;
                };
                self.handle_msg(from, msg);
            }
        }
        while let Some(msg) = self.mesh.pop_local() {
            self.handle_msg(self.id, msg);
        }
    }

    fn handle_msg(&mut self, from: usize, msg: ShardMsg) {
        match msg {
            ShardMsg::Publish {
                ns,
                channel,
                payload,
                ts_ns,
                json,
                reply,
            } => {
                let msg = MessageView {
                    ns,
                    channel: &channel,
                    seq: 0,
                    payload: &payload,
                    ts_ns,
                    json,
                };
                let n = self.fanout(msg, Some(&payload));
                if let Some(pending) = reply {
                    self.send_to(
                        from,
                        ShardMsg::Reply {
                            pending,
                            value: ReplyValue::Count(n),
                        },
                    );
                }
            }
            ShardMsg::Deliver { msg } => self.deliver_here(msg.view(), Via::Channel),
            ShardMsg::DeliverPattern { pattern, msg } => {
                self.deliver_here(msg.view(), Via::Pattern(&pattern))
            }
            ShardMsg::SubDelta {
                ns,
                channel,
                delta,
                reply,
            } => {
                self.owned.apply(ns, &channel, from, delta);
                if let Some(pending) = reply {
                    self.send_to(
                        from,
                        ShardMsg::Reply {
                            pending,
                            value: ReplyValue::Ack,
                        },
                    );
                }
            }
            ShardMsg::PatDelta {
                pattern,
                delta,
                reply,
            } => {
                self.patterns.apply(&pattern, from, delta);
                if let Some(pending) = reply {
                    self.send_to(
                        from,
                        ShardMsg::Reply {
                            pending,
                            value: ReplyValue::Ack,
                        },
                    );
                }
            }
            ShardMsg::Query { query, reply } => {
                let value = self.answer(&query);
                self.send_to(
                    from,
                    ShardMsg::Reply {
                        pending: reply,
                        value,
                    },
                );
            }
            ShardMsg::Reply { pending, value } => self.complete(pending, value),
        }
    }

    /// Queues a message for this shard's subscribers of its channel or of `via`'s pattern,
    /// each wire format's frame built once.
    fn deliver_here(&mut self, msg: MessageView<'_>, via: Via<'_>) {
        let (local, mut sink) = self.local_and_sink();
        let subs = match via {
            Via::Channel => local.subscribers(msg.ns, msg.channel),
            Via::Pattern(p) => local.pattern_subscribers(p),
        };
        if !subs.is_empty() {
            sink.deliver(subs, &mut FrameCache::new(msg, via));
        }
    }

    /// Publishes on the owner: assigns the sequence number and hands the message to every
    /// interested shard, itself first. `payload` is the message's payload as a handle when
    /// the caller already has one (a publish from another shard); otherwise it is copied
    /// once, and only if another shard needs it. Returns the subscriber count.
    pub(super) fn fanout(&mut self, mut msg: MessageView<'_>, payload: Option<&Bytes>) -> i64 {
        let mut count = 0i64;
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        let mut name = None;
        if let Some((stored, oc)) = self.owned.get_mut(msg.ns, msg.channel) {
            oc.seq += 1;
            msg.seq = oc.seq;
            count += oc.total as i64;
            targets.extend((0..self.shards).filter(|&s| oc.per_shard[s] > 0));
            name = Some(stored.clone());
        }
        // The message as other shards get it: made on first need, then shared.
        let mut shared: Option<Arc<Message>> = None;
        let mut share = |msg: &MessageView<'_>, name: Option<&Bytes>| {
            shared
                .get_or_insert_with(|| {
                    Arc::new(Message {
                        ns: msg.ns,
                        channel: name
                            .cloned()
                            .unwrap_or_else(|| Bytes::copy_from_slice(msg.channel)),
                        seq: msg.seq,
                        payload: payload
                            .cloned()
                            .unwrap_or_else(|| Bytes::copy_from_slice(msg.payload)),
                        ts_ns: msg.ts_ns,
                        json: msg.json,
                    })
                })
                .clone()
        };
        for &s in &targets {
            if s == self.id {
                // Local subscribers get it now, as Redis does: before the publisher's
                // reply, and before a command pipelined behind the PUBLISH runs.
                self.deliver_here(msg, Via::Channel);
            } else {
                let msg = share(&msg, name.as_ref());
                self.send_to(s, ShardMsg::Deliver { msg });
            }
        }
        if msg.ns == Ns::Plain && !self.patterns.is_empty() {
            for i in 0..self.patterns.entries.len() {
                let e = &self.patterns.entries[i];
                if e.total == 0 || !glob_match(&e.pattern, msg.channel) {
                    continue;
                }
                count += e.total as i64;
                let pattern = e.pattern.clone();
                targets.clear();
                targets.extend((0..self.shards).filter(|&s| e.per_shard[s] > 0));
                for &s in &targets {
                    if s == self.id {
                        self.deliver_here(msg, Via::Pattern(&pattern));
                    } else {
                        let msg = share(&msg, name.as_ref());
                        self.send_to(
                            s,
                            ShardMsg::DeliverPattern {
                                pattern: pattern.clone(),
                                msg,
                            },
                        );
                    }
                }
            }
        }
        self.targets = targets;
        count
    }

    /// Publishes a client's message: on this shard when it owns the channel (returning the
    /// receiver count at once), otherwise through the owner, with the count arriving later
    /// in a held reply slot of connection `key` (`None` is returned).
    pub(super) fn publish(&mut self, key: usize, msg: MessageView<'_>) -> Option<i64> {
        self.counters.published += 1;
        let owner = self.owner_of(msg.channel);
        if owner == self.id {
            return Some(self.fanout(msg, None));
        }
        let slot = self.hold(key, 1, PendingKind::Count(0));
        self.send_to(
            owner,
            ShardMsg::Publish {
                ns: msg.ns,
                channel: Bytes::copy_from_slice(msg.channel),
                payload: Bytes::copy_from_slice(msg.payload),
                ts_ns: msg.ts_ns,
                json: msg.json,
                reply: Some(slot),
            },
        );
        None
    }

    /// Registers a reply that completes after `remaining` answers; queues its slot on the
    /// connection. With `remaining == 0` it completes at once.
    pub(super) fn hold(&mut self, key: usize, remaining: u16, kind: PendingKind) -> u32 {
        let conn = self.conns[key].at(key);
        let slot = self.pending.next_slot();
        let ticket = self.conns[key].out.push_held(slot);
        let inserted = self.pending.insert(Pending {
            conn,
            ticket,
            remaining,
            kind,
        });
        debug_assert_eq!(inserted, slot);
        if remaining == 0 {
            if let Some(p) = self.pending.take(slot) {
                self.finish_pending(slot, p);
            }
        }
        slot
    }

    fn complete(&mut self, slot: u32, value: ReplyValue) {
        if let Some(p) = self.pending.complete(slot, value) {
            self.finish_pending(slot, p);
        }
    }

    /// Fills a completed reply into its connection's queue, encoded by its protocol.
    fn finish_pending(&mut self, slot: u32, p: Pending) {
        if p.kind.is_query() {
            if let Some(conn) = self.conn_mut(p.conn) {
                conn.query_inflight = false;
            }
        }
        // Each protocol encodes its own answers.
        let bytes = match p.kind {
            PendingKind::Ready(b) => b,
            value => match self.conn_mut(p.conn).map(|c| c.session.protocol()) {
                Some(Protocol::Resp) => super::resp::encode_answer(value),
                // The connection is gone (or cannot hold such a reply): nothing to fill.
                Some(Protocol::Http) | None => return,
            },
        };
        let key = p.conn.key as usize;
        if let Some(conn) = self.conn_mut(p.conn) {
            if conn.life != Life::Closing && conn.out.fill(p.ticket, slot, bytes) {
                self.mark_dirty(key);
            }
        }
    }

    /// Answers a PUBSUB question from the channels this shard owns.
    pub(super) fn answer(&self, q: &Query) -> ReplyValue {
        match q {
            Query::NumSub(ns, names) => ReplyValue::Counts(
                names
                    .iter()
                    .map(|n| self.owned.total(*ns, n) as i64)
                    .collect(),
            ),
            Query::Channels(ns, pattern) => ReplyValue::Names(
                self.owned
                    .names(*ns)
                    .filter(|n| pattern.as_ref().is_none_or(|p| glob_match(p, n)))
                    .cloned()
                    .collect(),
            ),
        }
    }

    /// Asks every shard (this one answers at once) and replies when all have answered.
    ///
    /// The connection's input waits until the answer is in (`pause.rs`): an answer can be
    /// every channel name of every shard, and a client pipelining a thousand of these
    /// queries would have the broker build a thousand such lists before the first is read.
    pub(super) fn ask_all(&mut self, key: usize, query: Query, kind: PendingKind) {
        self.conns[key].query_inflight = true;
        let local = self.answer(&query);
        let query = Arc::new(query);
        let slot = self.hold(key, self.shards as u16, kind);
        for s in 0..self.shards {
            if s != self.id {
                self.send_to(
                    s,
                    ShardMsg::Query {
                        query: query.clone(),
                        reply: slot,
                    },
                );
            }
        }
        self.complete(slot, local);
    }

    /// Subscribes a connection to a channel. Returns the held slot's reply kind when the
    /// owner is another shard: the confirmation waits until the owner knows.
    pub(super) fn add_subscription(&mut self, key: usize, ns: Ns, channel: &Bytes, reply: Bytes) {
        let who = self.conns[key].at(key);
        self.local.subscribe(ns, channel, who);
        self.counters.subscriptions += 1;
        let owner = self.owner_of(channel);
        if owner == self.id {
            self.owned.apply(ns, channel, self.id, 1);
            self.conns[key].out.push_frame(reply, 0);
            self.mark_dirty(key);
        } else {
            let slot = self.hold(key, 1, PendingKind::Ready(reply));
            self.send_to(
                owner,
                ShardMsg::SubDelta {
                    ns,
                    channel: channel.clone(),
                    delta: 1,
                    reply: Some(slot),
                },
            );
        }
    }

    /// Removes a connection's subscription to a channel (the reply is the caller's).
    pub(super) fn remove_subscription(&mut self, who: ConnRef, ns: Ns, channel: &Bytes) {
        if self.local.unsubscribe(ns, channel, who).is_none() {
            return;
        }
        self.counters.subscriptions -= 1;
        let owner = self.owner_of(channel);
        if owner == self.id {
            // At once, as the +1 was: through the local inbox it landed a turn late, and a
            // PUBLISH pipelined behind the UNSUBSCRIBE still counted the subscriber.
            self.owned.apply(ns, channel, self.id, -1);
            return;
        }
        self.send_to(
            owner,
            ShardMsg::SubDelta {
                ns,
                channel: channel.clone(),
                delta: -1,
                reply: None,
            },
        );
    }

    /// Subscribes a connection to a pattern; the confirmation waits for every shard.
    pub(super) fn add_pattern(&mut self, key: usize, pattern: &Bytes, reply: Bytes) {
        let who = self.conns[key].at(key);
        self.local.psubscribe(pattern, who);
        self.counters.subscriptions += 1;
        self.patterns.apply(pattern, self.id, 1);
        let slot = self.hold(key, (self.shards - 1) as u16, PendingKind::Ready(reply));
        for s in 0..self.shards {
            if s != self.id {
                self.send_to(
                    s,
                    ShardMsg::PatDelta {
                        pattern: pattern.clone(),
                        delta: 1,
                        reply: Some(slot),
                    },
                );
            }
        }
    }

    /// Removes a pattern subscription.
    pub(super) fn remove_pattern(&mut self, who: ConnRef, pattern: &Bytes) {
        if self.local.punsubscribe(pattern, who).is_none() {
            return;
        }
        self.counters.subscriptions -= 1;
        self.patterns.apply(pattern, self.id, -1);
        for s in 0..self.shards {
            if s != self.id {
                self.send_to(
                    s,
                    ShardMsg::PatDelta {
                        pattern: pattern.clone(),
                        delta: -1,
                        reply: None,
                    },
                );
            }
        }
    }

    /// Registers a new subscription of connection `key` (already in its session's set)
    /// with the shard's tables and the shards that must know; `reply` is the protocol's
    /// confirmation, sent once the subscription is active everywhere it matters.
    pub(super) fn subscribe_one(&mut self, key: usize, kind: SubKind, name: &Bytes, reply: Bytes) {
        match kind {
            SubKind::Channel => self.add_subscription(key, Ns::Plain, name, reply),
            SubKind::ShardChannel => self.add_subscription(key, Ns::Shard, name, reply),
            SubKind::Pattern => self.add_pattern(key, name, reply),
        }
    }

    /// Unregisters one subscription (already removed from the session's set).
    pub(super) fn unsubscribe_one(&mut self, who: ConnRef, kind: SubKind, name: &Bytes) {
        match kind {
            SubKind::Channel => self.remove_subscription(who, Ns::Plain, name),
            SubKind::ShardChannel => self.remove_subscription(who, Ns::Shard, name),
            SubKind::Pattern => self.remove_pattern(who, name),
        }
    }

    /// Drops every subscription of a connection (close, RESET).
    pub(super) fn drop_subscriptions(&mut self, key: usize) {
        let who = self.conns[key].at(key);
        let state = self.conns[key].session.take_subscriptions();
        for kind in [SubKind::Channel, SubKind::ShardChannel, SubKind::Pattern] {
            for name in state.set(kind).iter() {
                self.unsubscribe_one(who, kind, name);
            }
        }
    }
}
