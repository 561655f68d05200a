//! Counters shared between publisher and subscriber threads: what was published per channel,
//! and the least any subscriber of the channel has received (the window's other edge).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

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
    /// Senders waiting for their window to open, and where they wait (the raw sender, so its
    /// CPU use is work rather than spinning).
    waiting: AtomicUsize,
    gate: Mutex<()>,
    opened: Condvar,
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
            waiting: AtomicUsize::new(0),
            gate: Mutex::new(()),
            opened: Condvar::new(),
        }
    }

    /// Subscriber threads call this after moving `acked` forward.
    pub fn acked_moved(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let _g = self.gate.lock().unwrap_or_else(|e| e.into_inner());
            self.opened.notify_all();
        }
    }

    /// Blocks until one of `channels` has room under `window`, `stop` is set, or 1 ms passed
    /// (the bound keeps a missed wake-up cheap).
    pub fn wait_for_window(&self, channels: &[usize], window: u64) {
        let open = || {
            self.stop.load(Ordering::Acquire)
                || channels.iter().any(|&c| self.allowance(c, window) > 0)
        };
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let g = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        if !open() {
            let _ = self.opened.wait_timeout(g, Duration::from_millis(1));
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }

    /// The fewest messages any subscriber of `channel` has received.
    pub fn min_acked(&self, channel: usize) -> u64 {
        self.acked
            .iter()
            .map(|t| t[channel].load(Ordering::SeqCst))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_closes_until_subscribers_catch_up() {
        let s = Shared::new(1, 2);
        // Both threads have subscribers of channel 0 and have received nothing yet.
        s.acked[0][0].store(0, Ordering::Release);
        s.acked[1][0].store(0, Ordering::Release);
        assert_eq!(s.allowance(0, 4), 4);
        s.published[0].store(4, Ordering::Release);
        assert_eq!(s.allowance(0, 4), 0);
        // The slowest thread sets the pace.
        s.acked[0][0].store(4, Ordering::Release);
        s.acked[1][0].store(1, Ordering::Release);
        assert_eq!(s.allowance(0, 4), 1);
        s.acked[1][0].store(3, Ordering::Release);
        assert_eq!(s.allowance(0, 4), 3);
    }

    #[test]
    fn a_thread_without_subscribers_of_the_channel_does_not_hold_it_back() {
        let s = Shared::new(1, 2);
        s.acked[0][0].store(2, Ordering::Release);
        s.published[0].store(3, Ordering::Release);
        // Thread 1 stays at u64::MAX: it has no subscriber of channel 0.
        assert_eq!(s.allowance(0, 4), 3);
    }
}
