//! A bounded, lock-free single-producer/single-consumer ring.
//!
//! Shards talk only through these (one per ordered pair of shards), so the message path has no
//! locks and no shared mutable state beyond two cache-line-separated indices.
//!
//! # Safety invariant
//! Exactly one `Producer` and one `Consumer` exist per ring, and neither is `Clone`. The
//! producer only writes slots in `[tail, head + capacity)` and publishes them with a `Release`
//! store of `tail`; the consumer only reads slots in `[head, tail)` after an `Acquire` load of
//! `tail`, and frees them with a `Release` store of `head`. A slot is therefore never accessed
//! by both sides at once, and every slot in `[head, tail)` holds an initialised value.

use std::cell::{Cell, UnsafeCell};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Pads a value to its own cache line so producer and consumer indices never false-share.
#[repr(align(128))]
struct Padded<T>(T);

struct Shared<T> {
    head: Padded<AtomicUsize>,
    tail: Padded<AtomicUsize>,
    mask: usize,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

// SAFETY: the two halves on two threads share `Shared` by reference. By the module invariant a
// slot is accessed by one side at a time, handed over through the Release/Acquire index
// stores, and values of T only move from one thread to the other, which `T: Send` permits.
unsafe impl<T: Send> Sync for Shared<T> {}
// SAFETY: `Shared` owns values of T (dropped by whichever thread drops the last `Arc`), which
// `T: Send` permits; its indices are atomics.
unsafe impl<T: Send> Send for Shared<T> {}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        let head = *self.head.0.get_mut();
        let tail = *self.tail.0.get_mut();
        for i in head..tail {
            // SAFETY: slots in [head, tail) are initialised (module invariant) and each is
            // dropped once; `&mut self` means no producer or consumer exists any more.
            unsafe { (*self.slots[i & self.mask].get()).assume_init_drop() };
        }
    }
}

/// The writing half. Caches the consumer's index so a push touches the shared line only when
/// the ring looks full.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    tail: Cell<usize>,
    cached_head: Cell<usize>,
}

/// The reading half. Caches the producer's index for the same reason.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    head: Cell<usize>,
    cached_tail: Cell<usize>,
}

// SAFETY: a `Producer` is not `Sync` (its cached indices are `Cell`s), so one thread at a time
// uses it; moving it moves only those caches and an `Arc` of the `Sync` shared ring, and the
// values it sends are `Send`.
unsafe impl<T: Send> Send for Producer<T> {}
// SAFETY: as for `Producer`: one thread at a time, and the values it receives are `Send`.
unsafe impl<T: Send> Send for Consumer<T> {}

/// Creates a ring holding up to `capacity` values (rounded up to a power of two, at least 2).
pub fn channel<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let capacity = capacity.max(2).next_power_of_two();
    let slots = (0..capacity)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect::<Vec<_>>()
        .into_boxed_slice();
    let shared = Arc::new(Shared {
        head: Padded(AtomicUsize::new(0)),
        tail: Padded(AtomicUsize::new(0)),
        mask: capacity - 1,
        slots,
    });
    (
        Producer {
            shared: shared.clone(),
            tail: Cell::new(0),
            cached_head: Cell::new(0),
        },
        Consumer {
            shared,
            head: Cell::new(0),
            cached_tail: Cell::new(0),
        },
    )
}

impl<T> Producer<T> {
    /// Appends `value`, or hands it back when the ring is full (the caller decides how to
    /// apply back-pressure; this never blocks).
    pub fn push(&self, value: T) -> Result<(), T> {
        let tail = self.tail.get();
        let capacity = self.shared.mask + 1;
        if tail - self.cached_head.get() >= capacity {
            self.cached_head
                .set(self.shared.head.0.load(Ordering::Acquire));
            if tail - self.cached_head.get() >= capacity {
                return Err(value);
            }
        }
        // SAFETY: tail < head + capacity (checked above against a head loaded with Acquire),
        // so this slot is free: the consumer does not read it until the Release store of the
        // new tail below, and the producer (this, the only one) does not overwrite a live
        // value: the consumer moved it out before its Release store of head.
        unsafe { (*self.shared.slots[tail & self.shared.mask].get()).write(value) };
        self.tail.set(tail + 1);
        self.shared.tail.0.store(tail + 1, Ordering::Release);
        Ok(())
    }

    /// Number of free slots as last seen; exact when the consumer is idle.
    pub fn free_slots(&self) -> usize {
        let head = self.shared.head.0.load(Ordering::Acquire);
        self.shared.mask + 1 - (self.tail.get() - head)
    }

    /// The ring's capacity in values.
    pub fn capacity(&self) -> usize {
        self.shared.mask + 1
    }
}

impl<T> Consumer<T> {
    /// Takes the oldest value, if any.
    pub fn pop(&self) -> Option<T> {
        let head = self.head.get();
        if head == self.cached_tail.get() {
            self.cached_tail
                .set(self.shared.tail.0.load(Ordering::Acquire));
            if head == self.cached_tail.get() {
                return None;
            }
        }
        // SAFETY: head < tail (tail loaded with Acquire, which orders the producer's write of
        // the slot before this read), so the slot holds an initialised value; it is read out
        // once, and the producer does not reuse the slot until the Release store of head below.
        let value =
            unsafe { (*self.shared.slots[head & self.shared.mask].get()).assume_init_read() };
        self.head.set(head + 1);
        self.shared.head.0.store(head + 1, Ordering::Release);
        Some(value)
    }

    /// Whether the producer has published anything not yet popped. Uses a fresh load, so it is
    /// the check a shard makes after announcing it is about to sleep.
    pub fn is_empty(&self) -> bool {
        self.head.get() == self.shared.tail.0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_then_refuses_then_drains_in_order() {
        let (tx, rx) = channel::<u32>(4);
        for i in 0..4 {
            tx.push(i).unwrap();
        }
        assert_eq!(tx.push(99), Err(99));
        for i in 0..4 {
            assert_eq!(rx.pop(), Some(i));
        }
        assert_eq!(rx.pop(), None);
        assert!(rx.is_empty());
    }

    #[test]
    fn drops_values_left_in_the_ring() {
        let marker = Arc::new(());
        let (tx, rx) = channel::<Arc<()>>(8);
        for _ in 0..5 {
            tx.push(marker.clone()).unwrap();
        }
        drop(rx.pop());
        drop((tx, rx));
        assert_eq!(Arc::strong_count(&marker), 1);
    }

    #[test]
    fn two_threads_see_every_value_once_in_order() {
        const N: u64 = 1_000_000;
        let (tx, rx) = channel::<u64>(64);
        let producer = std::thread::spawn(move || {
            let mut i = 0;
            while i < N {
                if tx.push(i).is_ok() {
                    i += 1;
                } else {
                    std::hint::spin_loop();
                }
            }
        });
        let mut expected = 0;
        while expected < N {
            if let Some(v) = rx.pop() {
                assert_eq!(v, expected);
                expected += 1;
            }
        }
        producer.join().unwrap();
        assert_eq!(rx.pop(), None);
    }
}
