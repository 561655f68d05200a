//! Publishing: which shard owns a channel, the owner's fan-out of a message to every
//! interested shard (itself first), and delivery to this shard's subscribers.

use std::sync::Arc;

use bytes::Bytes;

use super::{PendingKind, Shard};
use crate::delivery::{FrameCache, Via};
use crate::msg::{Message, MessageView, Name, Ns, Position, ShardMsg};
use crate::tables::OWNED_ENTRY_BYTES;

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

    /// Queues a message for this shard's subscribers of its channel or of `via`'s pattern,
    /// each wire format's frame built once.
    pub(super) fn deliver_here(&mut self, msg: MessageView<'_>, via: Via<'_>) {
        let (local, mut sink) = self.local_and_sink();
        let subs = match via {
            Via::Channel => local.subscribers(msg.ns, msg.channel),
            Via::Pattern(p) => local.pattern_subscribers(p),
        };
        if !subs.is_empty() {
            sink.deliver(subs, &mut FrameCache::new(msg, via));
        }
    }

    /// Publishes on the owner: assigns the sequence number, keeps the message in the
    /// channel's history (when on) and hands it to every interested shard, itself first.
    /// `payload` is the message's payload as a handle when the caller already has one (a
    /// publish from another shard); otherwise it is copied once, and only if another shard
    /// or the history needs it. Returns the subscriber count and the message's position.
    pub(super) fn fanout(
        &mut self,
        mut msg: MessageView<'_>,
        payload: Option<&Bytes>,
    ) -> (i64, Position) {
        let mut count = 0i64;
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        let mut name = None;
        let history_len = self.cfg.history.size;
        // With history on, a publish to a channel the owner keeps nothing for starts its
        // state, if the channel table has room for it.
        let keep = history_len > 0
            && (self.owned.total(msg.ns, msg.channel) > 0
                || self.owned.get_mut(msg.ns, msg.channel).is_some()
                || self.table_room(msg.channel.len() + OWNED_ENTRY_BYTES));
        if let Some((stored, oc)) = self.owned.for_publish(msg.ns, msg.channel, keep) {
            oc.seq += 1;
            oc.last_publish_ns = msg.ts_ns;
            msg.seq = oc.seq;
            msg.epoch = oc.epoch;
            count += oc.total as i64;
            targets.extend((0..self.shards).filter(|&s| oc.per_shard[s] > 0));
            name = Some(stored.clone());
        }
        let pos = Position {
            epoch: msg.epoch,
            seq: msg.seq,
        };
        // The message as other shards get it: made on first need, then shared.
        let mut shared: Option<Arc<Message>> = None;
        let mut share = |msg: &MessageView<'_>, name: Option<&Name>| {
            shared
                .get_or_insert_with(|| {
                    Arc::new(Message::from_view(
                        msg,
                        name.cloned().unwrap_or_else(|| Name::from(msg.channel)),
                        payload
                            .cloned()
                            .unwrap_or_else(|| Bytes::copy_from_slice(msg.payload)),
                    ))
                })
                .clone()
        };
        if history_len > 0 && msg.seq > 0 {
            // Over the shard's history budget, a channel nobody subscribes to keeps no new
            // history until the sweep has made room (subscribed channels' histories go
            // last, so a spray of publishes to fresh channels cannot take theirs).
            let over = self.owned.history_bytes() > self.cfg.history.max_bytes;
            if over && count == 0 {
                self.counters.history_skips += 1;
            } else {
                let stored = share(&msg, name.as_ref());
                let max_bytes = self.cfg.history.channel_max_bytes;
                if let Some((_, oc)) = self.owned.get_mut(msg.ns, msg.channel) {
                    let delta = oc.history.get_or_insert_with(Default::default).push(
                        stored,
                        history_len,
                        max_bytes,
                    );
                    self.owned.history_changed(delta);
                }
            }
        }
        let mut share = || share(&msg, name.as_ref());
        self.send_out(&targets, msg, None, &mut share);
        if msg.ns == Ns::Plain && !self.patterns.is_empty() {
            for i in 0..self.patterns.entries.len() {
                let e = &self.patterns.entries[i];
                if e.total == 0 || !e.glob.matches(msg.channel) {
                    continue;
                }
                count += e.total as i64;
                let pattern = e.pattern.clone();
                targets.clear();
                targets.extend((0..self.shards).filter(|&s| e.per_shard[s] > 0));
                self.send_out(&targets, msg, Some(&pattern), &mut share);
            }
        }
        self.targets = targets;
        // Charged after the matching, so the turn's clock is read with this work done.
        if msg.ns == Ns::Plain {
            self.charge_work(self.patterns.entries.len() as u64);
        }
        (count, pos)
    }

    /// Hands a message to each shard in `targets` (this one at once, as Redis does: before
    /// the publisher's reply and before a command pipelined behind the PUBLISH runs), for
    /// its subscribers of the channel or of `pattern`. When shards span NUMA nodes a remote
    /// node gets one handle, through its relay (`relay.rs`). `share` makes (once) the
    /// message other shards get.
    fn send_out(
        &mut self,
        targets: &[usize],
        msg: MessageView<'_>,
        pattern: Option<&Name>,
        share: &mut dyn FnMut() -> Arc<Message>,
    ) {
        let via = pattern.map_or(Via::Channel, |p| Via::Pattern(p));
        if !self.shared.relay.spans_nodes() {
            for &s in targets {
                if s == self.id {
                    self.deliver_here(msg, via);
                } else {
                    self.send_to(s, ShardMsg::delivery(share(), pattern));
                }
            }
            return;
        }
        let mut plan = std::mem::take(&mut self.plan);
        let relay = &self.shared.relay;
        relay.plan(self.id, targets.iter().copied(), &mut plan);
        for &s in plan.direct() {
            if s == self.id {
                self.deliver_here(msg, via);
            } else {
                self.send_to(s, ShardMsg::delivery(share(), pattern));
            }
        }
        for r in plan.relays() {
            let forward = r.forward.iter().map(|&s| s as u16).collect();
            let msg = ShardMsg::Relay {
                msg: share(),
                pattern: pattern.cloned(),
                forward,
            };
            self.counters.relayed += 1;
            self.send_to(r.relay, msg);
        }
        self.plan = plan;
    }

    /// On a relay: delivers to this shard's subscribers and forwards to the rest of its
    /// node, from a copy of the message made here, so this node's shards read (and count
    /// references on) node-local memory only.
    pub(super) fn relay_message(&mut self, msg: &Message, pattern: Option<Name>, forward: &[u16]) {
        let local = Arc::new(Message::from_view(
            &msg.view(),
            Name::from(&*msg.channel),
            Bytes::copy_from_slice(&msg.payload),
        ));
        let via = pattern.as_ref().map_or(Via::Channel, |p| Via::Pattern(p));
        self.deliver_here(local.view(), via);
        for &s in forward {
            self.send_to(
                usize::from(s),
                ShardMsg::delivery(local.clone(), pattern.as_ref()),
            );
        }
    }

    /// Sends an owner's message that must stay in order with its deliveries to `dest` (the
    /// answer to a `Join`) along the deliveries' path: directly, or through the relay.
    pub(super) fn send_in_order(&mut self, dest: usize, msg: ShardMsg) {
        match self.shared.relay.route(self.id, dest) {
            crate::relay::Route::Via(relay) if relay != dest => self.send_to(
                relay,
                ShardMsg::Forward {
                    to: dest as u16,
                    msg: Box::new(msg),
                },
            ),
            _ => self.send_to(dest, msg),
        }
    }

    /// Publishes a client's message: on this shard when it owns the channel (returning the
    /// receiver count and position at once), otherwise through the owner, with the answer
    /// arriving later in a held reply slot of connection `key` (`None` is returned); `tag`
    /// is the front-end's correlation for that answer.
    pub(super) fn publish(
        &mut self,
        key: usize,
        msg: MessageView<'_>,
        tag: Option<Box<[u8]>>,
    ) -> Option<(i64, Position)> {
        self.counters.published += 1;
        let owner = self.owner_of(msg.channel);
        if owner == self.id {
            return Some(self.fanout(msg, None));
        }
        let kind = PendingKind::Publish {
            receivers: 0,
            pos: Position { epoch: 0, seq: 0 },
            tag,
        };
        let slot = self.hold(key, 1, kind);
        self.send_to(
            owner,
            ShardMsg::Publish {
                ns: msg.ns,
                channel: Name::from(msg.channel),
                payload: Bytes::copy_from_slice(msg.payload),
                ts_ns: msg.ts_ns,
                json: msg.json,
                reply: Some(slot),
            },
        );
        None
    }
}
