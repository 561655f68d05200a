//! One channel's history on its owner shard: the last messages, bounded by count and age,
//! and the replay a resuming subscriber gets. Pure (no shard, no clock of its own), so the
//! all-or-nothing rule and the storm cache are tested here on plain values.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::config::limits::HISTORY_OVERHEAD_BYTES;
use crate::msg::{Message, Replay};

/// The retained messages of one channel, oldest first, with consecutive sequence numbers.
#[derive(Debug, Default)]
pub struct History {
    entries: VecDeque<Arc<Message>>,
    /// Bytes counted against the shard's `history.max_bytes`.
    bytes: usize,
    /// The last replay built, by the seq it resumed after: in a reconnect storm thousands
    /// of clients resume from the same position, and each gets this list (one `Arc` clone)
    /// instead of a walk of its own. Valid while the newest entry is unchanged.
    cached: Option<(u64, Arc<[Arc<Message>]>)>,
    /// Replay lists built (cache misses), for the `replay_walks` counter.
    walks: u64,
}

/// Bytes one message costs in history.
pub fn cost(msg: &Message) -> usize {
    msg.payload.len() + HISTORY_OVERHEAD_BYTES
}

impl History {
    /// Messages held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Replay lists built so far (resumers served from the cache do not count).
    pub fn walks(&self) -> u64 {
        self.walks
    }

    /// Bytes held (see [`cost`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The oldest sequence number held.
    pub fn first_seq(&self) -> Option<u64> {
        self.entries.front().map(|m| m.seq)
    }

    /// Appends the channel's newest message, dropping the oldest past `max_len` messages or
    /// `max_bytes` (the newest always stays). Returns the change in bytes held.
    pub fn push(&mut self, msg: Arc<Message>, max_len: usize, max_bytes: usize) -> isize {
        debug_assert!(
            self.entries.back().is_none_or(|m| m.seq + 1 == msg.seq),
            "history seqs are consecutive"
        );
        let before = self.bytes;
        self.bytes += cost(&msg);
        self.entries.push_back(msg);
        while self.entries.len() > max_len || (self.bytes > max_bytes && self.entries.len() > 1) {
            self.pop_front();
        }
        self.cached = None;
        self.bytes as isize - before as isize
    }

    fn pop_front(&mut self) {
        if let Some(m) = self.entries.pop_front() {
            self.bytes -= cost(&m);
        }
    }

    /// Drops messages published before `cutoff_ns`; returns the bytes freed.
    pub fn expire(&mut self, cutoff_ns: u64) -> usize {
        let before = self.bytes;
        while self.entries.front().is_some_and(|m| m.ts_ns < cutoff_ns) {
            self.pop_front();
            self.cached = None;
        }
        before - self.bytes
    }

    /// What a subscriber that saw everything up to `since` (in the current epoch) needs,
    /// the channel's last seq being `last`: every message after `since`, or a reset when
    /// history no longer reaches back that far. All or nothing: never part of the gap.
    pub fn replay(&mut self, since: u64, last: u64) -> Replay {
        if since >= last {
            return if since == last {
                Replay::Nothing
            } else {
                Replay::Reset {
                    first: self.first_seq().unwrap_or(last + 1),
                }
            };
        }
        let first = match self.first_seq() {
            Some(first) if first <= since + 1 => first,
            other => {
                return Replay::Reset {
                    first: other.unwrap_or(last + 1),
                }
            }
        };
        if let Some((at, list)) = &self.cached {
            if *at == since {
                return Replay::Messages(list.clone());
            }
        }
        self.walks += 1;
        let skip = (since + 1 - first) as usize;
        let list: Arc<[Arc<Message>]> = self.entries.iter().skip(skip).cloned().collect();
        debug_assert_eq!(list.last().map(|m| m.seq), Some(last));
        self.cached = Some((since, list.clone()));
        Replay::Messages(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{Name, Ns};
    use bytes::Bytes;

    fn msg(seq: u64, ts_ns: u64) -> Arc<Message> {
        Arc::new(Message {
            ns: Ns::Plain,
            channel: Name::from(&b"c"[..]),
            seq,
            epoch: 1,
            payload: Bytes::from_static(b"{}"),
            ts_ns,
            json: true,
        })
    }

    fn seqs(r: &Replay) -> Vec<u64> {
        match r {
            Replay::Messages(l) => l.iter().map(|m| m.seq).collect(),
            other => panic!("expected messages, got {other:?}"),
        }
    }

    #[test]
    fn replays_exactly_the_gap_or_resets() {
        let mut h = History::default();
        for s in 1..=10 {
            h.push(msg(s, s), 4, usize::MAX);
        }
        assert_eq!(h.len(), 4);
        assert_eq!(h.first_seq(), Some(7));
        assert!(matches!(h.replay(10, 10), Replay::Nothing));
        assert_eq!(seqs(&h.replay(6, 10)), [7, 8, 9, 10]);
        assert_eq!(seqs(&h.replay(8, 10)), [9, 10]);
        // Message 6 is gone: resuming after 5 must not get 7..10 alone.
        assert!(matches!(h.replay(5, 10), Replay::Reset { first: 7 }));
        // A position ahead of the channel is not ours.
        assert!(matches!(h.replay(11, 10), Replay::Reset { first: 7 }));
    }

    #[test]
    fn resumers_from_one_position_share_one_list() {
        let mut h = History::default();
        for s in 1..=5 {
            h.push(msg(s, s), 8, usize::MAX);
        }
        let (Replay::Messages(a), Replay::Messages(b)) = (h.replay(2, 5), h.replay(2, 5)) else {
            panic!("expected messages");
        };
        assert!(
            Arc::ptr_eq(&a, &b),
            "the second resumer reuses the first walk"
        );
        assert_eq!(h.walks(), 1);
        h.push(msg(6, 6), 8, usize::MAX);
        let Replay::Messages(c) = h.replay(2, 6) else {
            panic!()
        };
        assert_eq!(c.len(), 4, "a new message invalidates the cache");
    }

    #[test]
    fn a_channel_keeps_at_most_its_share_of_bytes() {
        let mut h = History::default();
        let each = 2 + HISTORY_OVERHEAD_BYTES;
        for s in 1..=10 {
            h.push(msg(s, s), 64, 3 * each);
        }
        assert_eq!(h.len(), 3, "the oldest go past the byte share");
        assert_eq!(h.first_seq(), Some(8));
        assert_eq!(h.bytes(), 3 * each);
        h.push(msg(11, 11), 64, 1);
        assert_eq!(h.len(), 1, "the newest always stays");
    }

    #[test]
    fn expiry_and_bytes() {
        let mut h = History::default();
        for s in 1..=3 {
            h.push(msg(s, s * 100), 8, usize::MAX);
        }
        assert_eq!(h.bytes(), 3 * (2 + HISTORY_OVERHEAD_BYTES));
        assert_eq!(h.expire(250), 2 * (2 + HISTORY_OVERHEAD_BYTES));
        assert_eq!(h.first_seq(), Some(3));
        assert!(matches!(h.replay(1, 3), Replay::Reset { first: 3 }));
        h.expire(u64::MAX);
        assert!(h.is_empty());
        assert_eq!(h.bytes(), 0);
        assert!(matches!(h.replay(2, 3), Replay::Reset { first: 4 }));
    }
}
