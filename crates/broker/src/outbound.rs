//! A connection's outbound queue: shared pre-encoded frames, the connection's own replies,
//! and reply slots held open until another shard answers.
//!
//! Order is the contract: bytes leave in the order they were queued, and nothing behind a
//! held slot is sent before the slot is filled.

use crate::config::limits::MAX_KEPT_DEQUE_CAPACITY;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use corecast_runtime::SendBatch;

/// Pre-encoded bytes with the publish timestamp they carry (0 for plain replies).
#[derive(Debug)]
pub struct Frame {
    /// What goes on the wire.
    pub bytes: Bytes,
    /// CLOCK_MONOTONIC ns of the PUBLISH, for the publish-to-send histogram.
    pub ts_ns: u64,
}

/// A frame as this shard's queues hold it: every local subscriber of a message shares one
/// `Frame`, and a queue entry is one pointer. Entries used to be a 32-byte `Bytes` plus the
/// timestamp; with a window of messages queued for each of 1000 subscribers those queues
/// outgrew the L2 cache and every delivery wrote a fresh cache line (docs/benchmarks.md).
pub type LocalFrame = Rc<Frame>;

/// A frame handed to the io_uring driver for a send: the driver keeps it (and so the bytes
/// the kernel reads) alive until the send's completion, whatever happens to the queue
/// meanwhile. A newtype because the driver takes any `AsRef<[u8]>` and `Rc` is foreign.
#[derive(Debug, Clone)]
pub struct Wire(pub LocalFrame);

impl AsRef<[u8]> for Wire {
    fn as_ref(&self) -> &[u8] {
        &self.0.bytes
    }
}

/// One queued item.
#[derive(Debug)]
enum Item {
    /// Bytes to send.
    Frame(LocalFrame),
    /// A reply that another shard must complete first (the pending slot id).
    Held(u32),
}

const _: () = assert!(std::mem::size_of::<Item>() == 16);

/// The queue. Frames are `Bytes` handles, so a frame fanned out to a thousand subscribers is
/// stored once.
#[derive(Debug, Default)]
pub struct Outbound {
    items: VecDeque<Item>,
    /// Replies written since the last frame, sealed into one frame before anything else queues.
    /// Boxed and absent while empty: 8 bytes in every connection instead of 32, for one
    /// more allocation per burst of replies.
    replies: Option<Box<BytesMut>>,
    /// Bytes of the front frame already sent.
    head_offset: usize,
    /// Bytes queued and not yet sent (frames + open replies - head_offset).
    queued_bytes: usize,
    held: usize,
    /// Items ever removed from the front: item `i` of `items` is number `popped + i` of this
    /// queue, so a held slot is found by its ticket without a scan (a publisher may hold a
    /// thousand slots, and scanning for each answer was a fifth of a shard's time).
    popped: u64,
}

/// What [`Outbound::gather`] put in a send batch.
pub struct Batch {
    /// Buffers added (one iovec each).
    pub iovecs: usize,
    /// Bytes covered.
    pub bytes: usize,
    /// Oldest publish timestamp among the frames (0 if none).
    pub oldest_ts_ns: u64,
}

impl Outbound {
    /// Bytes waiting to be sent.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Reply slots waiting for another shard.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Whether nothing at all is queued (no bytes, no held slots).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && !self.has_replies()
    }

    fn has_replies(&self) -> bool {
        self.replies.as_ref().is_some_and(|r| !r.is_empty())
    }

    /// Appends reply bytes produced by this connection's own commands.
    pub fn reply(&mut self, bytes: &[u8]) {
        self.replies
            .get_or_insert_with(Default::default)
            .extend_from_slice(bytes);
        self.queued_bytes += bytes.len();
    }

    fn seal(&mut self) {
        if let Some(replies) = self.replies.as_mut().filter(|r| !r.is_empty()) {
            let bytes = replies.split().freeze();
            self.items
                .push_back(Item::Frame(Rc::new(Frame { bytes, ts_ns: 0 })));
        }
    }

    /// Appends bytes of this connection's own.
    pub fn push_frame(&mut self, bytes: Bytes, ts_ns: u64) {
        self.push_shared(&Rc::new(Frame { bytes, ts_ns }));
    }

    /// Appends a frame shared with other subscribers of this shard.
    #[inline]
    pub fn push_shared(&mut self, frame: &LocalFrame) {
        self.seal();
        self.queued_bytes += frame.bytes.len();
        self.items.push_back(Item::Frame(Rc::clone(frame)));
        self.check();
    }

    /// Appends a per-subscriber header followed by a body shared with other subscribers (a
    /// NATS `MSG subject sid len` line before the payload every subscriber shares): two
    /// queue entries, sent as two iovecs, always in this order and never split by other
    /// items. Returns the bytes queued.
    pub fn push_with_header(&mut self, header: Bytes, body: &LocalFrame) -> usize {
        let len = header.len() + body.bytes.len();
        self.seal();
        self.queued_bytes += header.len();
        self.items.push_back(Item::Frame(Rc::new(Frame {
            bytes: header,
            ts_ns: body.ts_ns,
        })));
        self.push_shared(body);
        len
    }

    /// Appends a slot that [`Outbound::fill`] completes later; returns its ticket.
    pub fn push_held(&mut self, slot: u32) -> u64 {
        self.seal();
        self.held += 1;
        let ticket = self.popped + self.items.len() as u64;
        self.items.push_back(Item::Held(slot));
        ticket
    }

    /// Completes held slot `slot` (queued under `ticket`) with `bytes`. Returns false if the
    /// slot is not queued (the queue was cleared).
    pub fn fill(&mut self, ticket: u64, slot: u32, bytes: Bytes) -> bool {
        let Some(at) = ticket.checked_sub(self.popped) else {
            return false;
        };
        let Some(item) = self.items.get_mut(at as usize) else {
            return false;
        };
        if !matches!(item, Item::Held(s) if *s == slot) {
            return false;
        }
        self.queued_bytes += bytes.len();
        *item = Item::Frame(Rc::new(Frame { bytes, ts_ns: 0 }));
        debug_assert!(self.held > 0, "a fill without a held slot");
        self.held -= 1;
        // A slot filled with nothing at the front must not sit there with nothing to send.
        self.skip_empty_front();
        self.check();
        true
    }

    /// Drops zero-length frames (slots filled with nothing) from the front.
    fn skip_empty_front(&mut self) {
        while matches!(self.items.front(), Some(Item::Frame(f)) if f.bytes.is_empty())
            && self.head_offset == 0
        {
            self.items.pop_front();
            self.popped += 1;
        }
    }

    /// Drops everything queued (the connection is closing). Safe at any time: a send in
    /// flight holds its own handles to the frames it covers (see [`Wire`]).
    pub fn clear(&mut self) {
        self.popped += self.items.len() as u64;
        self.items.clear();
        self.replies = None;
        self.head_offset = 0;
        self.queued_bytes = 0;
        self.held = 0;
    }

    /// The first sendable frame and how much of it was sent, if what is left is at least
    /// `min_len` bytes (zero-copy candidates: such a frame goes out alone).
    pub fn front_large(&mut self, min_len: usize) -> Option<(LocalFrame, usize)> {
        if self.items.front().is_none() {
            self.seal();
        }
        match self.items.front() {
            Some(Item::Frame(f)) if f.bytes.len() - self.head_offset >= min_len => {
                Some((Rc::clone(f), self.head_offset))
            }
            _ => None,
        }
    }

    /// Adds the sendable prefix of the queue to `batch` (empty on entry), up to its capacity
    /// and `max_bytes` bytes (at least one frame if any is sendable). The batch holds its own
    /// handle to each frame.
    pub fn gather(&mut self, batch: &mut SendBatch<Wire>, max_bytes: usize) -> Batch {
        debug_assert!(batch.is_empty());
        self.seal();
        let mut out = Batch {
            iovecs: 0,
            bytes: 0,
            oldest_ts_ns: 0,
        };
        for (i, item) in self.items.iter().enumerate() {
            let Item::Frame(f) = item else {
                break;
            };
            let skip = if i == 0 { self.head_offset } else { 0 };
            let len = f.bytes.len() - skip;
            if out.iovecs > 0 && (batch.is_full() || out.bytes + len > max_bytes) {
                break;
            }
            if len > 0 {
                if batch.push_from(Wire(Rc::clone(f)), skip).is_err() {
                    break;
                }
                out.iovecs += 1;
                out.bytes += len;
            }
            if f.ts_ns != 0 && (out.oldest_ts_ns == 0 || f.ts_ns < out.oldest_ts_ns) {
                out.oldest_ts_ns = f.ts_ns;
            }
        }
        debug_assert!(out.bytes <= self.queued_bytes);
        out
    }

    /// Whether the front of the queue holds bytes that can be sent now.
    pub fn sendable(&self) -> bool {
        matches!(self.items.front(), Some(Item::Frame { .. }))
            || (self.items.is_empty() && self.has_replies())
    }

    /// Marks `n` bytes as sent from the front.
    pub fn advance(&mut self, mut n: usize) {
        debug_assert!(n <= self.queued_bytes);
        self.queued_bytes -= n.min(self.queued_bytes);
        while n > 0 {
            let Some(Item::Frame(f)) = self.items.front() else {
                debug_assert!(false, "advanced past the sendable prefix");
                return;
            };
            let left = f.bytes.len() - self.head_offset;
            if n >= left {
                n -= left;
                self.head_offset = 0;
                self.items.pop_front();
                self.popped += 1;
            } else {
                self.head_offset += n;
                n = 0;
            }
        }
        // Zero-length frames (filled with nothing) are skipped eagerly.
        self.skip_empty_front();
        if self.items.is_empty() && !self.has_replies() {
            self.release_idle_memory();
        }
        self.check();
    }

    /// The queue's invariants, recomputed from scratch (unit tests only: it walks the
    /// queue): `held` counts the held items, `queued_bytes` is every frame's bytes plus the
    /// open replies less what of the front frame was sent, and the sent part of the front
    /// frame is within it.
    fn check(&self) {
        #[cfg(test)]
        {
            let held = self
                .items
                .iter()
                .filter(|i| matches!(i, Item::Held(_)))
                .count();
            assert_eq!(held, self.held, "held slots counted");
            let frames: usize = self
                .items
                .iter()
                .map(|i| match i {
                    Item::Frame(f) => f.bytes.len(),
                    Item::Held(_) => 0,
                })
                .sum();
            let replies = self.replies.as_ref().map_or(0, |r| r.len());
            assert_eq!(
                frames + replies - self.head_offset,
                self.queued_bytes,
                "queued bytes"
            );
            if let Some(Item::Frame(f)) = self.items.front() {
                assert!(self.head_offset <= f.bytes.len());
            } else {
                assert_eq!(self.head_offset, 0);
            }
        }
    }

    /// Frees what an empty queue still holds, so an idle connection costs no heap here: most
    /// connections of a gateway sit idle, and the deque's minimum allocation (four items)
    /// plus the reply buffer's last chunk were a fifth of an idle subscriber's memory. A deque
    /// that has grown past the minimum keeps its capacity while it is moderate: that
    /// connection is busy and would only allocate it again. One that a burst grew past
    /// `MAX_KEPT_DEQUE_CAPACITY` is freed, or a subscriber that once fell behind by 8 MiB of
    /// small frames would keep megabytes of empty queue for good.
    fn release_idle_memory(&mut self) {
        debug_assert!(self.items.is_empty() && !self.has_replies());
        let capacity = self.items.capacity();
        if capacity <= MIN_DEQUE_CAPACITY || capacity > MAX_KEPT_DEQUE_CAPACITY {
            self.items = VecDeque::new();
        }
        // An empty reply buffer still shares the last reply chunk's allocation.
        self.replies = None;
    }
}

/// The capacity `VecDeque` gives on its first push for items of this size.
const MIN_DEQUE_CAPACITY: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(o: &mut Outbound) -> Vec<u8> {
        let mut batch = SendBatch::new();
        let b = o.gather(&mut batch, usize::MAX);
        let v: Vec<u8> = batch.slices().flatten().copied().collect();
        assert_eq!(v.len(), b.bytes);
        assert_eq!(batch.len(), b.iovecs);
        v
    }

    #[test]
    fn an_emptied_queue_frees_its_memory_unless_it_grew_moderately() {
        let mut o = Outbound::default();
        o.reply(b"+OK\r\n");
        assert_eq!(collect(&mut o), b"+OK\r\n");
        o.advance(5);
        assert!(o.is_empty());
        assert_eq!(o.items.capacity(), 0);
        for _ in 0..64 {
            o.push_frame(Bytes::from_static(b"F"), 1);
        }
        let grown = o.items.capacity();
        assert!(grown > MIN_DEQUE_CAPACITY);
        collect(&mut o);
        o.advance(64);
        assert!(o.is_empty());
        assert_eq!(o.items.capacity(), grown);
        // Still usable after release.
        o.reply(b"x");
        assert_eq!(collect(&mut o), b"x");
        o.advance(1);
        // A burst far past the kept capacity is freed once drained.
        for _ in 0..5000 {
            o.push_frame(Bytes::from_static(b"F"), 1);
        }
        assert!(o.items.capacity() > MAX_KEPT_DEQUE_CAPACITY);
        while !o.is_empty() {
            let n = o.gather(&mut SendBatch::new(), usize::MAX).bytes;
            o.advance(n);
        }
        assert_eq!(o.items.capacity(), 0);
    }

    #[test]
    fn tickets_find_held_slots_filled_in_any_order_and_die_with_a_clear() {
        let mut o = Outbound::default();
        let mut tickets = Vec::new();
        for slot in 0..100u32 {
            o.reply(b"r");
            tickets.push((o.push_held(slot), slot));
        }
        // Send the first reply, so the queue has popped items before the fills.
        assert_eq!(collect(&mut o), b"r");
        o.advance(1);
        for &(t, slot) in tickets.iter().rev() {
            assert!(o.fill(t, slot, Bytes::from(format!("{slot},"))));
        }
        let expected: String = (0..100)
            .map(|s| format!("{s},"))
            .collect::<Vec<_>>()
            .join("r");
        assert_eq!(collect(&mut o), expected.as_bytes());
        let t = o.push_held(500);
        o.clear();
        assert!(!o.fill(t, 500, Bytes::from_static(b"late")));
        assert!(!o.fill(0, 0, Bytes::from_static(b"stale")));
    }

    #[test]
    fn replies_and_frames_keep_their_order() {
        let mut o = Outbound::default();
        o.reply(b"a");
        o.reply(b"b");
        o.push_frame(Bytes::from_static(b"F"), 5);
        o.reply(b"c");
        assert_eq!(collect(&mut o), b"abFc");
        assert_eq!(o.queued_bytes(), 4);
    }

    #[test]
    fn held_slots_block_what_follows_until_filled() {
        let mut o = Outbound::default();
        o.reply(b"1");
        let t = o.push_held(7);
        o.reply(b"3");
        assert_eq!(collect(&mut o), b"1");
        o.advance(1);
        assert!(!o.sendable());
        assert!(!o.fill(t, 8, Bytes::from_static(b"2")), "wrong slot");
        assert!(o.fill(t, 7, Bytes::from_static(b"2")));
        assert_eq!(collect(&mut o), b"23");
    }

    #[test]
    fn partial_sends_resume_mid_frame() {
        let mut o = Outbound::default();
        o.push_frame(Bytes::from_static(b"hello"), 1);
        o.push_frame(Bytes::from_static(b"world"), 2);
        o.advance(3);
        assert_eq!(collect(&mut o), b"loworld");
        o.advance(7);
        assert!(o.is_empty());
        assert_eq!(o.queued_bytes(), 0);
    }

    #[test]
    fn header_and_body_survive_partial_sends_at_every_offset() {
        let body: LocalFrame = Rc::new(Frame {
            bytes: Bytes::from_static(b"shared-body"),
            ts_ns: 9,
        });
        let expected = b"+r\r\nMSG a 1 11\r\nshared-body+s\r\nMSG a 22 11\r\nshared-body";
        for first in 0..=expected.len() {
            let mut o = Outbound::default();
            o.reply(b"+r\r\n");
            assert_eq!(
                o.push_with_header(Bytes::from_static(b"MSG a 1 11\r\n"), &body),
                23
            );
            o.reply(b"+s\r\n");
            o.push_with_header(Bytes::from_static(b"MSG a 22 11\r\n"), &body);
            assert_eq!(o.queued_bytes(), expected.len());
            // A send that takes `first` bytes, then one that takes the rest, one by one.
            let mut sent = Vec::new();
            let all = collect(&mut o);
            assert_eq!(all, expected, "offset {first}");
            sent.extend_from_slice(&all[..first]);
            o.advance(first);
            while !o.is_empty() {
                let rest = collect(&mut o);
                sent.push(rest[0]);
                o.advance(1);
            }
            assert_eq!(sent, expected, "offset {first}");
            assert_eq!(o.queued_bytes(), 0);
        }
        assert_eq!(
            Rc::strong_count(&body),
            1,
            "queues released the shared body"
        );
    }

    #[test]
    fn a_cleared_queue_leaves_an_in_flight_batch_intact() {
        let mut o = Outbound::default();
        o.push_frame(Bytes::from(vec![7u8; 64]), 1);
        o.reply(b"+OK\r\n");
        let mut batch = SendBatch::new();
        o.gather(&mut batch, usize::MAX);
        o.clear();
        assert!(o.is_empty());
        let sent: Vec<u8> = batch.slices().flatten().copied().collect();
        assert_eq!(sent.len(), 69);
        assert_eq!(&sent[64..], b"+OK\r\n");
    }

    #[test]
    fn gather_respects_the_byte_cap_but_sends_at_least_one_frame() {
        let mut o = Outbound::default();
        o.push_frame(Bytes::from(vec![1u8; 100]), 1);
        o.push_frame(Bytes::from(vec![2u8; 100]), 1);
        let b = o.gather(&mut SendBatch::new(), 50);
        assert_eq!((b.iovecs, b.bytes), (1, 100));
    }
}
