//! Channels across shards: ownership, interest, publish, fan-out, and replies that wait for
//! other shards.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use corecast_proto::glob::glob_match;
use corecast_proto::resp::encode;

use super::{Pending, PendingKind, Shard};
use crate::conn::Life;
use crate::msg::{Ns, Query, ReplyValue, ShardMsg};
use crate::tables::ConnRef;

/// Messages taken from one peer's ring per loop turn, so one busy peer cannot starve the
/// others or the shard's own sockets.
const DRAIN_BUDGET: usize = 4096;

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
        if to == self.id {
            self.local_inbox.push_back(msg);
            return;
        }
        if !self.overflow[to].is_empty() {
            self.overflow[to].push_back(msg);
            return;
        }
        match self.mesh.push(to, msg) {
            Ok(()) => self.wake[to] = true,
            Err(msg) => {
                self.counters.ring_full += 1;
                self.overflow[to].push_back(msg);
                self.wake[to] = true;
                if !self.overflowing {
                    self.overflowing = true;
                    self.shared.congested.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    pub(super) fn flush_overflow(&mut self) {
        if !self.overflowing {
            return;
        }
        let mut left = false;
        for to in 0..self.shards {
            while let Some(msg) = self.overflow[to].pop_front() {
                match self.mesh.push(to, msg) {
                    Ok(()) => self.wake[to] = true,
                    Err(msg) => {
                        self.overflow[to].push_front(msg);
                        break;
                    }
                }
            }
            left |= !self.overflow[to].is_empty();
        }
        if !left {
            self.overflowing = false;
            self.shared.congested.fetch_sub(1, Ordering::SeqCst);
            // Every shard paused its clients' input while the mesh was congested; a sleeping
            // one would otherwise resume them only at its next timer tick (up to
            // stats_interval_ms later, per pause: a pipelined publisher crawled).
            for to in 0..self.shards {
                if to != self.id {
                    self.wake[to] = true;
                }
            }
        }
    }

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
        while let Some(msg) = self.local_inbox.pop_front() {
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
                reply,
            } => {
                let n = self.fanout(ns, &channel, &payload, ts_ns);
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
            ShardMsg::Deliver {
                ns,
                channel,
                frame,
                ts_ns,
            } => self.deliver_here(ns, &channel, frame, ts_ns),
            ShardMsg::DeliverPattern {
                pattern,
                frame,
                ts_ns,
            } => self.deliver_pattern_here(&pattern, frame, ts_ns),
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

    /// Queues a channel's message frame for this shard's subscribers of it.
    fn deliver_here(&mut self, ns: Ns, channel: &[u8], frame: Bytes, ts_ns: u64) {
        let subs = self.local.subscribers(ns, channel);
        sink!(self).enqueue_all(subs, frame, ts_ns);
    }

    /// Queues a pattern's message frame for this shard's subscribers of the pattern.
    fn deliver_pattern_here(&mut self, pattern: &[u8], frame: Bytes, ts_ns: u64) {
        let subs = self.local.pattern_subscribers(pattern);
        sink!(self).enqueue_all(subs, frame, ts_ns);
    }

    /// Publishes on the owner: assigns the sequence number, encodes once per format, and
    /// hands one frame handle to every interested shard. Returns the subscriber count.
    pub(super) fn fanout(&mut self, ns: Ns, channel: &[u8], payload: &[u8], ts_ns: u64) -> i64 {
        let mut count = 0i64;
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        let mut delivery = None;
        if let Some((name, oc)) = self.owned.get_mut(ns, channel) {
            oc.seq += 1;
            count += oc.total as i64;
            let mut v = Vec::with_capacity(payload.len() + channel.len() + 48);
            match ns {
                Ns::Plain => encode::push_message(&mut v, channel, payload),
                Ns::Shard => encode::push_smessage(&mut v, channel, payload),
            }
            targets.extend((0..self.shards).filter(|&s| oc.per_shard[s] > 0));
            delivery = Some((name.clone(), Bytes::from(v)));
        }
        if let Some((name, frame)) = delivery {
            // The last target takes the frame itself: a single-target frame (every channel
            // of a one-shard broker) is then never promoted to a shared allocation.
            let mut frame = Some(frame);
            for (i, &s) in targets.iter().enumerate() {
                let frame = if i + 1 == targets.len() {
                    frame.take()
                } else {
                    frame.clone()
                };
                let Some(frame) = frame else { break };
                if s == self.id {
                    // Local subscribers get it now, as Redis does: before the publisher's
                    // reply, and before a command pipelined behind the PUBLISH runs.
                    self.deliver_here(ns, &name, frame, ts_ns);
                    continue;
                }
                self.send_to(
                    s,
                    ShardMsg::Deliver {
                        ns,
                        channel: name.clone(),
                        frame,
                        ts_ns,
                    },
                );
            }
        }
        if ns == Ns::Plain && !self.patterns.is_empty() {
            for i in 0..self.patterns.entries.len() {
                let e = &self.patterns.entries[i];
                if e.total == 0 || !glob_match(&e.pattern, channel) {
                    continue;
                }
                count += e.total as i64;
                let pattern = e.pattern.clone();
                targets.clear();
                targets.extend((0..self.shards).filter(|&s| e.per_shard[s] > 0));
                let mut v = Vec::with_capacity(payload.len() + channel.len() + pattern.len() + 64);
                encode::push_pmessage(&mut v, &pattern, channel, payload);
                let frame = Bytes::from(v);
                for &s in &targets {
                    if s == self.id {
                        self.deliver_pattern_here(&pattern, frame.clone(), ts_ns);
                        continue;
                    }
                    self.send_to(
                        s,
                        ShardMsg::DeliverPattern {
                            pattern: pattern.clone(),
                            frame: frame.clone(),
                            ts_ns,
                        },
                    );
                }
            }
        }
        self.targets = targets;
        count
    }

    /// Registers a reply that completes after `remaining` answers; queues its slot on the
    /// connection. With `remaining == 0` it completes at once.
    pub(super) fn hold(&mut self, key: usize, remaining: u16, kind: PendingKind) -> u32 {
        let conn = self.conns[key].at(key);
        let entry = self.pending.vacant_entry();
        let slot = entry.key() as u32;
        let ticket = self.conns[key].out.push_held(slot);
        entry.insert(Pending {
            conn,
            ticket,
            remaining,
            kind,
        });
        if remaining == 0 {
            self.finish_pending(slot);
        }
        slot
    }

    fn complete(&mut self, slot: u32, value: ReplyValue) {
        let Some(p) = self.pending.get_mut(slot as usize) else {
            return;
        };
        match (&mut p.kind, value) {
            (PendingKind::Count(acc), ReplyValue::Count(n)) => *acc += n,
            (PendingKind::NumSub(_, acc), ReplyValue::Counts(v)) => {
                for (a, n) in acc.iter_mut().zip(v) {
                    *a += n;
                }
            }
            (PendingKind::Names(acc), ReplyValue::Names(v)) => acc.extend(v),
            _ => {}
        }
        p.remaining = p.remaining.saturating_sub(1);
        if p.remaining == 0 {
            self.finish_pending(slot);
        }
    }

    fn finish_pending(&mut self, slot: u32) {
        let p = self.pending.remove(slot as usize);
        if matches!(p.kind, PendingKind::NumSub(..) | PendingKind::Names(_)) {
            if let Some(conn) = self.conn_mut(p.conn) {
                conn.query_inflight = false;
            }
        }
        let mut v = Vec::new();
        let bytes = match p.kind {
            PendingKind::Ready(b) => b,
            PendingKind::Count(n) => integer_reply(n),
            PendingKind::NumSub(names, counts) => {
                encode::array_header(&mut v, names.len() * 2);
                for (name, n) in names.iter().zip(counts) {
                    encode::bulk(&mut v, name);
                    encode::integer(&mut v, n);
                }
                Bytes::from(v)
            }
            PendingKind::Names(mut names) => {
                names.sort();
                encode::array_header(&mut v, names.len());
                for name in &names {
                    encode::bulk(&mut v, name);
                }
                Bytes::from(v)
            }
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
    /// The connection's input waits until the answer is in (`must_pause`): an answer can be
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

    /// Drops every subscription of a connection (close, RESET).
    pub(super) fn drop_subscriptions(&mut self, key: usize) {
        let who = self.conns[key].at(key);
        let state = std::mem::take(&mut self.conns[key].resp);
        for ch in state.channels.iter() {
            self.remove_subscription(who, Ns::Plain, ch);
        }
        for ch in state.schannels.iter() {
            self.remove_subscription(who, Ns::Shard, ch);
        }
        for p in state.patterns.iter() {
            self.remove_pattern(who, p);
        }
        let conn = &mut self.conns[key];
        conn.resp.name = state.name;
    }
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
