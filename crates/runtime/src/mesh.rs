//! The full mesh of SPSC rings between shards, and the sleep flags that decide when a push
//! must wake its receiver.
//!
//! Wake-up protocol (Dekker style, both sides use `SeqCst` fences):
//! - a shard about to sleep sets its flag, fences, then looks at its inbound rings once more;
//!   if anything is there it clears the flag and keeps running;
//! - a producer pushes, fences, and if the receiver's flag is set it clears it with a swap and,
//!   only if it won the swap, sends one wake-up (an `IORING_OP_MSG_RING` CQE in the receiver's
//!   ring). Either the sleeper sees the value or the producer sees the flag, never neither.

use std::sync::atomic::{fence, AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use crate::spsc::{channel, Consumer, Producer};

/// One shard's "I may be asleep" flag plus the fd of its io_uring, which peers target with
/// MSG_RING. Aligned so shards do not false-share flags.
#[repr(align(128))]
#[derive(Debug)]
pub struct WakeFlag {
    sleeping: AtomicBool,
    ring_fd: AtomicI32,
}

impl WakeFlag {
    fn new() -> Self {
        Self {
            sleeping: AtomicBool::new(false),
            ring_fd: AtomicI32::new(-1),
        }
    }
}

/// Builds the mesh; hand endpoint `i` to shard `i`.
pub struct Mesh;

impl Mesh {
    /// Creates `shards * (shards - 1)` rings of `capacity` values each.
    pub fn build<T>(shards: usize, capacity: usize) -> Vec<MeshEndpoint<T>> {
        let flags: Arc<[WakeFlag]> = (0..shards).map(|_| WakeFlag::new()).collect();
        let mut tx: Vec<Vec<Option<Producer<T>>>> = (0..shards)
            .map(|_| (0..shards).map(|_| None).collect())
            .collect();
        let mut rx: Vec<Vec<Option<Consumer<T>>>> = (0..shards)
            .map(|_| (0..shards).map(|_| None).collect())
            .collect();
        for from in 0..shards {
            for to in 0..shards {
                if from != to {
                    let (p, c) = channel(capacity);
                    tx[from][to] = Some(p);
                    rx[to][from] = Some(c);
                }
            }
        }
        tx.into_iter()
            .zip(rx)
            .enumerate()
            .map(|(id, (tx, rx))| MeshEndpoint {
                id,
                tx,
                rx,
                flags: flags.clone(),
            })
            .collect()
    }
}

/// One shard's view of the mesh: a producer towards every peer, a consumer from every peer.
pub struct MeshEndpoint<T> {
    id: usize,
    tx: Vec<Option<Producer<T>>>,
    rx: Vec<Option<Consumer<T>>>,
    flags: Arc<[WakeFlag]>,
}

impl<T> MeshEndpoint<T> {
    /// This shard's index.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Number of shards in the mesh.
    pub fn shards(&self) -> usize {
        self.tx.len()
    }

    /// Publishes this shard's io_uring fd so peers can wake it with MSG_RING.
    pub fn set_ring_fd(&self, fd: i32) {
        self.flags[self.id].ring_fd.store(fd, Ordering::Release);
    }

    /// The io_uring fd of shard `peer` (-1 until it has started).
    pub fn ring_fd(&self, peer: usize) -> i32 {
        self.flags[peer].ring_fd.load(Ordering::Acquire)
    }

    /// Pushes towards `to`; a full ring hands the value back (the caller queues it and counts
    /// a ring-full event). Panics in debug builds if `to` is this shard.
    pub fn push(&self, to: usize, value: T) -> Result<(), T> {
        debug_assert_ne!(
            to, self.id,
            "a shard never sends to itself through the mesh"
        );
        match &self.tx[to] {
            Some(p) => p.push(value),
            None => Err(value),
        }
    }

    /// Called after a batch of pushes to `to`: true when the peer may be asleep and this caller
    /// is the one that must wake it.
    pub fn must_wake(&self, to: usize) -> bool {
        fence(Ordering::SeqCst);
        let flag = &self.flags[to].sleeping;
        flag.load(Ordering::Relaxed) && flag.swap(false, Ordering::AcqRel)
    }

    /// Undoes a won [`MeshEndpoint::must_wake`] whose wake-up could not be delivered (the
    /// MSG_RING failed): the peer may be asleep with its flag already cleared, so the flag is
    /// raised again and the next `must_wake` makes this caller (or another pusher) retry. A
    /// peer that woke meanwhile only gets one spurious wake-up.
    pub fn rearm_wake(&self, to: usize) {
        self.flags[to].sleeping.store(true, Ordering::SeqCst);
    }

    /// Pops the next value from `from`, if any.
    pub fn pop(&self, from: usize) -> Option<T> {
        self.rx[from].as_ref().and_then(|c| c.pop())
    }

    /// Announces that this shard is about to sleep. Returns false (and withdraws the
    /// announcement) when a peer has already pushed something, so the caller must not sleep.
    pub fn prepare_sleep(&self) -> bool {
        let flag = &self.flags[self.id].sleeping;
        flag.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let idle = self.rx.iter().flatten().all(|c| c.is_empty());
        if !idle {
            flag.store(false, Ordering::SeqCst);
        }
        idle
    }

    /// Marks this shard awake after it returns from the kernel.
    pub fn awake(&self) {
        self.flags[self.id].sleeping.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ordered_pair_has_its_own_ring() {
        let eps = Mesh::build::<(usize, usize)>(3, 4);
        for from in &eps {
            for to in 0..3 {
                if to != from.id() {
                    from.push(to, (from.id(), to)).unwrap();
                }
            }
        }
        for to in &eps {
            for from in 0..3 {
                if from != to.id() {
                    assert_eq!(to.pop(from), Some((from, to.id())));
                    assert_eq!(to.pop(from), None);
                }
            }
        }
    }

    #[test]
    fn a_push_to_a_sleeper_asks_for_exactly_one_wake() {
        let eps = Mesh::build::<u8>(2, 4);
        assert!(eps[1].prepare_sleep());
        eps[0].push(1, 7).unwrap();
        assert!(eps[0].must_wake(1));
        assert!(!eps[0].must_wake(1));
        eps[1].awake();
        assert!(
            !eps[1].prepare_sleep(),
            "a pending value keeps the shard awake"
        );
    }

    #[test]
    fn a_failed_wake_can_be_retried() {
        let eps = Mesh::build::<u8>(2, 4);
        assert!(eps[1].prepare_sleep());
        eps[0].push(1, 7).unwrap();
        assert!(eps[0].must_wake(1));
        eps[0].rearm_wake(1);
        assert!(eps[0].must_wake(1), "the retry wins the flag again");
        assert!(!eps[0].must_wake(1));
    }
}
