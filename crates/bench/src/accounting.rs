//! Per-subscriber delivery accounting: which messages arrived once, which were skipped,
//! arrived late or twice, and how long each took. Kept apart from the socket loop so it is
//! tested on plain values.

use hdrhistogram::Histogram;

use crate::payload::Header;

/// Most gap entries remembered per subscriber; past it a late arrival counts as a duplicate.
const MAX_MISSING: usize = 4096;

/// What one subscriber has seen, per publisher.
pub struct SeqTracker {
    /// Next expected sequence number per publisher (index = publisher mod len).
    next: Vec<u64>,
    /// (publisher, seq) skipped over by a gap, so a late arrival counts as reordered.
    missing: Vec<(u32, u64)>,
    /// Distinct messages received.
    pub received: u64,
}

/// How one arrival was judged.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// In order (possibly after a gap).
    InOrder,
    /// Older than one already seen, and not seen before.
    Reordered,
    /// Seen before.
    Duplicate,
}

impl SeqTracker {
    /// A tracker for messages from `publishers` publishers.
    pub fn new(publishers: usize) -> Self {
        Self {
            next: vec![0; publishers.max(1)],
            missing: Vec::new(),
            received: 0,
        }
    }

    /// Records message `seq` of `publisher`.
    pub fn arrive(&mut self, publisher: u32, seq: u64) -> Arrival {
        let slot = publisher as usize % self.next.len();
        let next = &mut self.next[slot];
        if seq >= *next {
            for skipped in *next..seq {
                if self.missing.len() < MAX_MISSING {
                    self.missing.push((publisher, skipped));
                }
            }
            *next = seq + 1;
            self.received += 1;
            Arrival::InOrder
        } else if let Some(at) = self.missing.iter().position(|&m| m == (publisher, seq)) {
            self.missing.swap_remove(at);
            self.received += 1;
            Arrival::Reordered
        } else {
            Arrival::Duplicate
        }
    }
}

/// End-to-end latency of a message received at `now_ns`, in µs (at least 1, so an HDR
/// histogram with a lower bound of 1 takes it), or `None` when it was sent before the
/// measurement window opened at `measure_from_ns`.
pub fn latency_us(h: &Header, now_ns: u64, measure_from_ns: u64) -> Option<u64> {
    (h.ts_ns >= measure_from_ns).then(|| (now_ns.saturating_sub(h.ts_ns) / 1000).max(1))
}

/// Records a latency into `hist`, saturating at its top.
pub fn record(hist: &mut Histogram<u64>, us: u64) {
    hist.saturating_record(us);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_gaps_late_arrivals_and_duplicates() {
        let mut t = SeqTracker::new(2);
        assert_eq!(t.arrive(0, 0), Arrival::InOrder);
        assert_eq!(t.arrive(1, 0), Arrival::InOrder);
        assert_eq!(t.arrive(0, 3), Arrival::InOrder, "gap: 1 and 2 missing");
        assert_eq!(t.arrive(0, 2), Arrival::Reordered);
        assert_eq!(t.arrive(0, 2), Arrival::Duplicate);
        assert_eq!(t.arrive(0, 3), Arrival::Duplicate);
        assert_eq!(t.arrive(0, 1), Arrival::Reordered);
        assert_eq!(
            t.arrive(1, 1),
            Arrival::InOrder,
            "publishers are independent"
        );
        assert_eq!(t.received, 6);
    }

    #[test]
    fn a_message_never_received_is_not_counted() {
        let mut t = SeqTracker::new(1);
        for seq in [0, 1, 3, 4] {
            t.arrive(0, seq);
        }
        // The caller counts lost = published - received: 5 published, 4 received.
        assert_eq!(t.received, 4);
    }

    #[test]
    fn latency_is_measured_from_the_stamped_time_and_only_in_the_window() {
        let h = |ts_ns| Header {
            ts_ns,
            channel: 0,
            publisher: 0,
            seq: 0,
        };
        assert_eq!(latency_us(&h(1_000_000), 3_500_000, 0), Some(2500));
        assert_eq!(
            latency_us(&h(1_000_000), 1_000_100, 0),
            Some(1),
            "sub-µs rounds up to 1"
        );
        assert_eq!(
            latency_us(&h(5), 4, 0),
            Some(1),
            "clock skew never underflows"
        );
        assert_eq!(
            latency_us(&h(999), 2_000, 1_000),
            None,
            "warm-up is not measured"
        );
        let mut hist = Histogram::new_with_bounds(1, 60_000_000, 3).unwrap();
        record(&mut hist, 2500);
        record(&mut hist, u64::MAX);
        assert_eq!(hist.len(), 2);
    }
}
