//! Counters shared between publisher and subscriber threads: what was published per channel,
//! and the least any subscriber of the channel has received (the window's other edge).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Shared state of one run.
pub struct Shared {
    /// Messages published per channel.
    pub published: Vec<AtomicU64>,
    /// Per subscriber thread, per channel: the fewest messages any of that thread's
    /// subscribers of the channel has received (u64::MAX when it has none).
    pub acked: Vec<Vec<AtomicU64>>,
    /// Set when publishers must stop.
    pub stop: AtomicBool,
    /// Set once every publisher (or the raw sender) has returned, so `published` is final.
    /// Subscribers judge completeness only after this: a publisher may still be finishing
    /// a batch when `stop` is seen.
    pub senders_done: AtomicBool,
    /// CLOCK_MONOTONIC ns when measurement starts (after warm-up).
    pub measure_from_ns: AtomicU64,
}

impl Shared {
    /// State for `channels` channels and `threads` subscriber threads.
    pub fn new(channels: usize, threads: usize) -> Self {
        Self {
            published: (0..channels).map(|_| AtomicU64::new(0)).collect(),
            acked: (0..threads)
                .map(|_| (0..channels).map(|_| AtomicU64::new(u64::MAX)).collect())
                .collect(),
            stop: AtomicBool::new(false),
            senders_done: AtomicBool::new(false),
            measure_from_ns: AtomicU64::new(u64::MAX),
        }
    }

    /// The fewest messages any subscriber of `channel` has received.
    pub fn min_acked(&self, channel: usize) -> u64 {
        self.acked
            .iter()
            .map(|t| t[channel].load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// How many more messages may be published on `channel` under `window`.
    pub fn allowance(&self, channel: usize, window: u64) -> u64 {
        let acked = self.min_acked(channel);
        if acked == u64::MAX {
            return window;
        }
        let published = self.published[channel].load(Ordering::Acquire);
        window.saturating_sub(published.saturating_sub(acked))
    }
}
