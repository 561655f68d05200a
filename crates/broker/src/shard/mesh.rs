//! This shard's side of the mesh: pushes that never block (a full ring queues the message in
//! order behind earlier overflow and raises the process-wide congestion count), the inbox for
//! messages to itself, and the peers a turn's pushes must wake.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use corecast_runtime::MeshEndpoint;

use crate::msg::ShardMsg;

/// The shard's mesh endpoint with its overflow queues and wake list.
pub(super) struct MeshPort {
    endpoint: MeshEndpoint<ShardMsg>,
    /// Messages a full ring could not take, per peer, in order.
    overflow: Vec<VecDeque<ShardMsg>>,
    /// Some overflow queue is non-empty (and this shard counts in `congested`).
    overflowing: bool,
    /// Messages to this shard itself, handled in the same turn's drain.
    local_inbox: VecDeque<ShardMsg>,
    /// Peers pushed to since the last `wakes`.
    wake: Vec<bool>,
}

impl MeshPort {
    pub(super) fn new(endpoint: MeshEndpoint<ShardMsg>) -> Self {
        let shards = endpoint.shards();
        Self {
            endpoint,
            overflow: (0..shards).map(|_| VecDeque::new()).collect(),
            overflowing: false,
            local_inbox: VecDeque::new(),
            wake: vec![false; shards],
        }
    }

    /// This shard's index.
    pub(super) fn id(&self) -> usize {
        self.endpoint.id()
    }

    /// Shards in the mesh.
    pub(super) fn shards(&self) -> usize {
        self.wake.len()
    }

    /// The endpoint (sleep flags, ring fds).
    pub(super) fn endpoint(&self) -> &MeshEndpoint<ShardMsg> {
        &self.endpoint
    }

    /// Whether messages wait in the inbox or in overflow: the shard must not sleep.
    pub(super) fn busy(&self) -> bool {
        !self.local_inbox.is_empty() || self.overflowing
    }

    /// Sends `msg` to shard `to` (itself included), never blocking. Returns true when the
    /// ring was full (the caller counts `ring_full`).
    pub(super) fn send(&mut self, to: usize, msg: ShardMsg, congested: &AtomicUsize) -> bool {
        if to == self.id() {
            self.local_inbox.push_back(msg);
            return false;
        }
        self.wake[to] = true;
        if !self.overflow[to].is_empty() {
            self.overflow[to].push_back(msg);
            return false;
        }
        match self.endpoint.push(to, msg) {
            Ok(()) => false,
            Err(msg) => {
                self.overflow[to].push_back(msg);
                if !self.overflowing {
                    self.overflowing = true;
                    congested.fetch_add(1, Ordering::Relaxed);
                }
                true
            }
        }
    }

    /// Moves overflow into the rings as they make room. When the last overflow is gone the
    /// congestion count drops and every peer is woken: they paused their clients' input
    /// while the mesh was congested, and a sleeping one would otherwise resume them only at
    /// its next timer tick (up to `stats_interval_ms` later, per pause).
    pub(super) fn flush_overflow(&mut self, congested: &AtomicUsize) {
        if !self.overflowing {
            return;
        }
        let mut left = false;
        for to in 0..self.shards() {
            while let Some(msg) = self.overflow[to].pop_front() {
                match self.endpoint.push(to, msg) {
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
            congested.fetch_sub(1, Ordering::SeqCst);
            let me = self.id();
            for (to, wake) in self.wake.iter_mut().enumerate() {
                *wake |= to != me;
            }
        }
    }

    /// The next message from peer `from`, if any. The caller takes at most `DRAIN_BUDGET`
    /// from each peer per turn, so one busy peer cannot starve the others or the shard's own
    /// sockets.
    pub(super) fn pop(&mut self, from: usize) -> Option<ShardMsg> {
        self.endpoint.pop(from)
    }

    /// The next message this shard sent itself.
    pub(super) fn pop_local(&mut self) -> Option<ShardMsg> {
        self.local_inbox.pop_front()
    }

    /// Calls `wake(peer, ring_fd)` for each peer pushed to since the last call that may be
    /// asleep and must be woken by this shard (each is woken by exactly one pusher: see
    /// `MeshEndpoint::must_wake`). A peer whose ring is not up yet is skipped: it looks at
    /// its rings before it first sleeps.
    pub(super) fn wakes(&mut self, mut wake: impl FnMut(usize, i32)) {
        for peer in 0..self.wake.len() {
            if std::mem::take(&mut self.wake[peer]) && self.endpoint.must_wake(peer) {
                let fd = self.endpoint.ring_fd(peer);
                if fd >= 0 {
                    wake(peer, fd);
                }
            }
        }
    }

    /// Asks to be woken again (a wake to `peer` failed): the next `wakes` retries it.
    pub(super) fn rewake(&mut self, peer: usize) {
        self.endpoint.rearm_wake(peer);
        self.wake[peer] = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::ReplyValue;
    use corecast_runtime::Mesh;

    fn reply(n: u32) -> ShardMsg {
        ShardMsg::Reply {
            pending: n,
            value: ReplyValue::Ack,
        }
    }

    fn pending_of(m: &ShardMsg) -> u32 {
        match m {
            ShardMsg::Reply { pending, .. } => *pending,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_full_ring_overflows_in_order_and_congestion_ends_with_the_overflow() {
        let congested = AtomicUsize::new(0);
        let mut eps = Mesh::build::<ShardMsg>(2, 2).into_iter();
        let mut a = MeshPort::new(eps.next().unwrap());
        let mut b = MeshPort::new(eps.next().unwrap());
        let full: Vec<bool> = (0..5).map(|i| a.send(1, reply(i), &congested)).collect();
        assert_eq!(
            full,
            [false, false, true, false, false],
            "only the first refusal counts"
        );
        assert_eq!(congested.load(Ordering::Relaxed), 1);
        assert!(a.busy());
        let mut got = Vec::new();
        for _ in 0..3 {
            while let Some(m) = b.pop(0) {
                got.push(pending_of(&m));
            }
            a.flush_overflow(&congested);
        }
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert_eq!(congested.load(Ordering::Relaxed), 0);
        assert!(!a.busy());
    }

    #[test]
    fn messages_to_itself_go_through_the_inbox() {
        let congested = AtomicUsize::new(0);
        let mut a = MeshPort::new(Mesh::build::<ShardMsg>(1, 2).pop().unwrap());
        assert!(!a.send(0, reply(7), &congested));
        assert!(a.busy());
        assert_eq!(a.pop_local().map(|m| pending_of(&m)), Some(7));
        let mut woken = Vec::new();
        a.wakes(|p, _| woken.push(p));
        assert!(woken.is_empty(), "no wake for itself");
    }

    #[test]
    fn a_sleeping_peer_is_woken_once_and_a_failed_wake_is_retried() {
        let congested = AtomicUsize::new(0);
        let mut eps = Mesh::build::<ShardMsg>(2, 4).into_iter();
        let mut a = MeshPort::new(eps.next().unwrap());
        let b = MeshPort::new(eps.next().unwrap());
        // Any number stands for the peer's ring here: nothing is sent to it.
        b.endpoint().set_ring_fd(42);
        assert!(b.endpoint().prepare_sleep());
        a.send(1, reply(1), &congested);
        a.send(1, reply(2), &congested);
        let mut woken = Vec::new();
        a.wakes(|p, fd| {
            assert_eq!(fd, 42);
            woken.push(p)
        });
        assert_eq!(woken, [1]);
        a.wakes(|p, _| woken.push(p));
        assert_eq!(woken, [1], "nothing new pushed");
        // The MSG_RING failed: the peer's flag was already swapped off, so without a retry
        // it would sleep until its timer.
        a.rewake(1);
        a.wakes(|p, _| woken.push(p));
        assert_eq!(woken, [1, 1]);
    }
}
