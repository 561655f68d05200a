//! Replies that wait for other shards: holding a slot in the connection's queue, folding
//! in the answers, filling the slot with the protocol's encoding; and PUBSUB queries that
//! every shard answers from the channels it owns.

use std::sync::Arc;

use corecast_proto::glob::Glob;

use super::{PendingKind, Shard};
use crate::conn::Life;
use crate::msg::{Query, ReplyValue, ShardMsg};
use crate::pending::JoinWait;
use crate::pending::Pending;
use crate::session::Session;

impl Shard {
    /// Registers a reply that completes after `remaining` answers; queues its slot on the
    /// connection. With `remaining == 0` it completes at once.
    pub(super) fn hold(&mut self, key: usize, remaining: u16, kind: PendingKind) -> u32 {
        let conn = self.conns[key].at(key);
        let slot = self.pending.next_slot();
        let ticket = self.conns[key].out.push_held(slot);
        let inserted = self.pending.insert(Pending {
            conn,
            ticket,
            remaining,
            kind,
        });
        debug_assert_eq!(inserted, slot);
        if remaining == 0 {
            if let Some(p) = self.pending.take(slot) {
                self.finish_pending(slot, p);
            }
        }
        slot
    }

    pub(super) fn complete(&mut self, slot: u32, value: ReplyValue) {
        if let Some(p) = self.pending.complete(slot, value) {
            self.finish_pending(slot, p);
        }
    }

    /// Fills a completed reply into its connection's queue, encoded by its protocol.
    fn finish_pending(&mut self, slot: u32, p: Pending) {
        if p.kind.is_query() {
            if let Some(conn) = self.conn_mut(p.conn) {
                conn.query_inflight = false;
            }
        }
        // Each protocol encodes its own answers.
        let bytes = match p.kind {
            PendingKind::Ready(b) => b,
            PendingKind::Join(wait) => {
                let JoinWait {
                    ns,
                    channel,
                    tag,
                    since,
                    joined,
                } = *wait;
                let Some(joined) = joined else {
                    debug_assert!(false, "a join completes with the owner's answer");
                    return;
                };
                let held = Some((p.ticket, slot));
                self.joined(p.conn, held, ns, &channel, tag.as_deref(), since, joined);
                return;
            }
            value => match self.conn_mut(p.conn).map(|c| &c.session) {
                Some(Session::Resp(_)) => super::resp::encode_answer(value),
                Some(Session::Ws(_)) => super::ws::encode_answer(value),
                Some(Session::Http(_)) => super::http::encode_answer(value),
                // The connection is gone (or cannot hold such a reply): nothing to fill.
                Some(Session::Sse(_)) | None => return,
            },
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
            Query::Channels(ns, pattern) => {
                let glob = pattern.as_deref().map(Glob::compile);
                ReplyValue::Names(
                    self.owned
                        .names(*ns)
                        .filter(|n| glob.as_ref().is_none_or(|g| g.matches(n)))
                        .cloned()
                        .collect(),
                )
            }
        }
    }

    /// Asks every shard (this one answers at once) and replies when all have answered.
    ///
    /// The connection's input waits until the answer is in (`pause.rs`): an answer can be
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
}
