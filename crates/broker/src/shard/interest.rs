//! Interest: registering a connection's subscriptions with this shard's tables, the
//! channel's owner (exact per-shard counts) and, for patterns, every shard; and dropping
//! them all when the connection closes or resets.

use bytes::Bytes;

use super::{PendingKind, Shard};
use crate::config::limits::RELEASES_PER_TURN;
use crate::msg::{Name, Ns, ShardMsg};
use crate::session::SubKind;
use crate::tables::ConnRef;

impl Shard {
    /// Subscribes a connection to a channel. Returns the held slot's reply kind when the
    /// owner is another shard: the confirmation waits until the owner knows.
    pub(super) fn add_subscription(&mut self, key: usize, ns: Ns, channel: &Name, reply: Bytes) {
        let who = self.conns[key].at(key);
        self.local.subscribe(ns, channel, who);
        self.counters.subscriptions += 1;
        let owner = self.owner_of(channel);
        if owner == self.id {
            self.owned_apply(ns, channel, self.id, 1);
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
    pub(super) fn remove_subscription(&mut self, who: ConnRef, ns: Ns, channel: &Name) {
        if self.local.unsubscribe(ns, channel, who).is_none() {
            return;
        }
        self.counters.subscriptions -= 1;
        self.release_at_owner(ns, channel);
    }

    /// Takes one subscriber of this shard off the channel's count at its owner.
    pub(super) fn release_at_owner(&mut self, ns: Ns, channel: &Name) {
        let owner = self.owner_of(channel);
        if owner == self.id {
            // At once, as the +1 was: through the local inbox it landed a turn late, and a
            // PUBLISH pipelined behind the UNSUBSCRIBE still counted the subscriber.
            self.owned_apply(ns, channel, self.id, -1);
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
    pub(super) fn add_pattern(&mut self, key: usize, pattern: &Name, reply: Bytes) {
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
    pub(super) fn remove_pattern(&mut self, who: ConnRef, pattern: &Name) {
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
    pub(super) fn subscribe_one(&mut self, key: usize, kind: SubKind, name: &Name, reply: Bytes) {
        match kind {
            SubKind::Channel => self.add_subscription(key, Ns::Plain, name, reply),
            SubKind::ShardChannel => self.add_subscription(key, Ns::Shard, name, reply),
            SubKind::Pattern => self.add_pattern(key, name, reply),
        }
    }

    /// Unregisters one subscription (already removed from the session's set).
    pub(super) fn unsubscribe_one(&mut self, who: ConnRef, kind: SubKind, name: &Name) {
        match kind {
            SubKind::Channel => self.remove_subscription(who, Ns::Plain, name),
            SubKind::ShardChannel => self.remove_subscription(who, Ns::Shard, name),
            SubKind::Pattern => self.remove_pattern(who, name),
        }
    }

    /// Drops every subscription of a closing connection: at once when it has few, otherwise
    /// `RELEASES_PER_TURN` a turn (`release_some`). Meanwhile the connection, closing,
    /// receives nothing, and a later connection in its slot has another generation, so the
    /// deferred removals cannot touch it.
    pub(super) fn release_subscriptions(&mut self, key: usize) {
        if self.conns[key].session.subscription_count() <= RELEASES_PER_TURN / 8 {
            return self.drop_subscriptions(key);
        }
        let who = self.conns[key].at(key);
        let state = self.conns[key].session.take_subscriptions();
        let mut list = Vec::with_capacity(state.total());
        for kind in [SubKind::Channel, SubKind::ShardChannel, SubKind::Pattern] {
            list.extend(state.set(kind).iter().map(|n| (kind, n.clone())));
        }
        self.releasing.push_back((who, list.into_iter()));
    }

    /// Releases up to `RELEASES_PER_TURN` subscriptions of closed connections (called once a
    /// turn).
    pub(super) fn release_some(&mut self) {
        let mut budget = RELEASES_PER_TURN;
        while budget > 0 {
            let Some((who, names)) = self.releasing.front_mut() else {
                break;
            };
            let who = *who;
            match names.next() {
                Some((kind, name)) => {
                    self.unsubscribe_one(who, kind, &name);
                    budget -= 1;
                }
                None => {
                    self.releasing.pop_front();
                }
            }
        }
    }

    /// Drops every subscription of a connection at once (RESET, or a close with few).
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
