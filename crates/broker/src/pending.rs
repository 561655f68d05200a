//! Replies that wait for other shards: a PUBLISH's receiver count (summed from the owner's
//! answer), a subscribe confirmation (sent once the owner, or every shard for a pattern, has
//! registered the interest), a PUBSUB answer (merged from every shard). Each is a slot here
//! and a held item in its connection's outbound queue; nothing behind the held item is sent
//! before the slot completes.

use bytes::Bytes;
use slab::Slab;

use crate::msg::{Joined, Name, Ns, Position, ReplyValue};
use crate::tables::ConnRef;

/// What a held reply accumulates; the connection's protocol encodes it once complete.
#[derive(Debug)]
pub enum PendingKind {
    /// The reply is known (encoded by the protocol when it was held); it waits for
    /// acknowledgements (subscriptions becoming active).
    Ready(Bytes),
    /// A publish waiting for its owner: receivers and the message's position.
    Publish {
        /// Subscribers reached.
        receivers: i64,
        /// The message's position.
        pos: Position,
        /// The front-end's correlation for the answer (a WebSocket request's `id`).
        tag: Option<Box<[u8]>>,
    },
    /// A WebSocket or SSE subscriber joining a channel another shard owns (see
    /// `ShardMsg::Join`); the subscriber enters this shard's table when the answer comes.
    Join(Box<JoinWait>),
    /// PUBSUB NUMSUB / SHARDNUMSUB: the names asked and their summed counts.
    NumSub(Vec<Name>, Vec<i64>),
    /// PUBSUB CHANNELS / SHARDCHANNELS.
    Names(Vec<Name>),
}

impl PendingKind {
    /// Whether this is the answer to a query every shard answers (the connection's input
    /// waits for it).
    pub fn is_query(&self) -> bool {
        matches!(self, Self::NumSub(..) | Self::Names(_))
    }
}

/// A join waiting for the channel's owner.
#[derive(Debug)]
pub struct JoinWait {
    /// Namespace.
    pub ns: Ns,
    /// The channel.
    pub channel: Name,
    /// The front-end's correlation for the answer (a WebSocket request's `id`).
    pub tag: Option<Box<[u8]>>,
    /// The position the subscriber resumes after, if any.
    pub since: Option<Position>,
    /// The owner's answer, once in.
    pub joined: Option<Joined>,
}

/// A reply that waits for other shards.
#[derive(Debug)]
pub struct Pending {
    /// Whose reply it is.
    pub conn: ConnRef,
    /// Where the held item sits in the connection's outbound queue.
    pub ticket: u64,
    /// Answers still to come.
    pub remaining: u16,
    /// What has been accumulated so far.
    pub kind: PendingKind,
}

/// The shard's held replies, by slot number (the number peers echo back in `Reply`).
#[derive(Debug, Default)]
pub struct PendingReplies {
    slots: Slab<Pending>,
}

impl PendingReplies {
    /// Replies waiting.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slot number the next [`PendingReplies::insert`] will use (so the caller can queue
    /// the held item, whose ticket the entry records, before inserting).
    pub fn next_slot(&self) -> u32 {
        self.slots.vacant_key() as u32
    }

    /// Registers a reply; returns its slot.
    pub fn insert(&mut self, pending: Pending) -> u32 {
        self.slots.insert(pending) as u32
    }

    /// Folds one shard's answer into `slot`. Returns the reply once every answer is in
    /// (removing it), `None` while answers are missing or for an unknown slot.
    pub fn complete(&mut self, slot: u32, value: ReplyValue) -> Option<Pending> {
        let p = self.slots.get_mut(slot as usize)?;
        match (&mut p.kind, value) {
            (
                PendingKind::Publish { receivers, pos, .. },
                ReplyValue::Published {
                    receivers: n,
                    pos: at,
                },
            ) => {
                *receivers += n;
                *pos = at;
            }
            (PendingKind::Join(wait), ReplyValue::Joined(joined)) => wait.joined = Some(*joined),
            (PendingKind::NumSub(_, acc), ReplyValue::Counts(v)) => {
                debug_assert_eq!(acc.len(), v.len(), "one count per name asked");
                for (a, n) in acc.iter_mut().zip(v) {
                    *a += n;
                }
            }
            (PendingKind::Names(acc), ReplyValue::Names(v)) => acc.extend(v),
            (PendingKind::Ready(_), ReplyValue::Ack) => {}
            (kind, value) => debug_assert!(false, "answer {value:?} for {kind:?}"),
        }
        debug_assert!(p.remaining > 0, "an answer for a complete reply");
        p.remaining = p.remaining.saturating_sub(1);
        if p.remaining == 0 {
            Some(self.slots.remove(slot as usize))
        } else {
            None
        }
    }

    /// Removes a reply that needs no answer (`remaining == 0`).
    pub fn take(&mut self, slot: u32) -> Option<Pending> {
        self.slots.try_remove(slot as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(remaining: u16, kind: PendingKind) -> Pending {
        Pending {
            conn: ConnRef { key: 1, gen: 1 },
            ticket: 0,
            remaining,
            kind,
        }
    }

    fn published(receivers: i64, seq: u64) -> ReplyValue {
        ReplyValue::Published {
            receivers,
            pos: Position { epoch: 7, seq },
        }
    }

    #[test]
    fn counts_sum_until_every_shard_answered() {
        let mut p = PendingReplies::default();
        let kind = PendingKind::Publish {
            receivers: 0,
            pos: Position { epoch: 0, seq: 0 },
            tag: None,
        };
        let slot = p.insert(pending(3, kind));
        assert!(p.complete(slot, published(2, 0)).is_none());
        assert!(p.complete(slot, published(5, 0)).is_none());
        let done = p.complete(slot, published(1, 9)).expect("complete");
        assert!(matches!(
            done.kind,
            PendingKind::Publish {
                receivers: 8,
                pos: Position { epoch: 7, seq: 9 },
                ..
            }
        ));
        assert!(p.is_empty());
        assert!(p.complete(slot, published(1, 1)).is_none(), "stale slot");
    }

    #[test]
    fn numsub_and_names_merge_answers() {
        let mut p = PendingReplies::default();
        let names = vec![Name::from(&b"a"[..]), Name::from(&b"b"[..])];
        let s1 = p.insert(pending(2, PendingKind::NumSub(names.clone(), vec![0, 0])));
        let s2 = p.insert(pending(2, PendingKind::Names(Vec::new())));
        assert_ne!(s1, s2);
        assert!(p.complete(s1, ReplyValue::Counts(vec![1, 0])).is_none());
        let done = p.complete(s1, ReplyValue::Counts(vec![2, 3])).unwrap();
        assert!(matches!(&done.kind, PendingKind::NumSub(n, c) if *n == names && *c == [3, 3]));
        assert!(done.kind.is_query());
        assert!(p
            .complete(s2, ReplyValue::Names(vec![Name::from(&b"x"[..])]))
            .is_none());
        let done = p
            .complete(s2, ReplyValue::Names(vec![Name::from(&b"y"[..])]))
            .unwrap();
        assert!(matches!(&done.kind, PendingKind::Names(v) if v.len() == 2));
    }

    #[test]
    fn next_slot_is_the_slot_insert_uses() {
        let mut p = PendingReplies::default();
        let a = p.insert(pending(1, PendingKind::Ready(Bytes::new())));
        let next = p.next_slot();
        assert_eq!(p.insert(pending(1, PendingKind::Ready(Bytes::new()))), next);
        assert!(p.complete(a, ReplyValue::Ack).is_some());
        let reused = p.next_slot();
        assert_eq!(reused, a, "freed slots are reused");
        assert!(p.take(reused).is_none());
    }
}
