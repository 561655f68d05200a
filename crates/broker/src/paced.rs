//! A resume whose replay does not fit the subscriber's queue: the replay is queued as the
//! client drains it, and the channel's live messages that arrive meanwhile wait behind it,
//! so the client gets the whole gap and then everything live, in order, with no gap and no
//! silent close. Queuing it all at once met `max_pending_bytes` and closed the connection
//! as a slow consumer, on every retry, so one publisher of big messages could make a
//! channel unresumable for everyone.
//!
//! Memory: the replay list holds handles to messages the owner's history already keeps
//! (16 bytes a message); frames are built one at a time as the queue drains; the live
//! messages held behind it are shared frames, bounded by `max_pending_bytes` (past it the
//! slow-consumer policy applies, as it would to the queue).

use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use crate::config::{BrokerConfig, SlowConsumerPolicy};
use crate::conn::{Conn, Life};
use crate::delivery::{build_frame, sse_id_bytes, Format, Sink, Via};
use crate::msg::{Message, Name, Position};
use crate::outbound::{Frame, LocalFrame};
use crate::session::Session;
use crate::stats::Counters;
use crate::tables::ConnRef;

/// One channel's replay being paced on one connection.
pub struct PacedReplay {
    /// The channel resumed.
    channel: Name,
    /// The missed messages, oldest first (shared with the owner's history and with other
    /// resumers of the same position).
    list: Arc<[Arc<Message>]>,
    /// The first message of `list` not queued yet.
    next: usize,
    /// Live messages of the channel that arrived while the replay was being paced, in order.
    after: VecDeque<(Position, LocalFrame)>,
    /// Bytes of `after`.
    after_bytes: usize,
}

/// Queues `frame` for `conn`, with the `id:` line a multi-channel SSE stream needs before it
/// (its positions, `channel`'s advanced to `pos`). False when the stream does not carry the
/// channel (nothing is queued).
pub fn push_delivery(conn: &mut Conn, channel: &[u8], pos: Position, frame: &LocalFrame) -> bool {
    if conn.format == Format::SseData {
        let Session::Sse(s) = &mut conn.session else {
            return false;
        };
        let Some(i) = s.index_of(channel) else {
            return false;
        };
        s.channels[i].pos = Some(pos);
        let header = sse_id_bytes(s);
        conn.out.push_with_header(header, frame);
    } else {
        conn.out.push_shared(frame);
    }
    true
}

/// Applies the slow-consumer policy to `conn` (at `r`), which cannot take a message.
pub fn slow_consumer(
    cfg: &BrokerConfig,
    counters: &mut Counters,
    to_close: &mut VecDeque<ConnRef>,
    conn: &mut Conn,
    r: ConnRef,
) {
    match cfg.slow_consumer {
        SlowConsumerPolicy::Disconnect => {
            tracing::debug!(
                key = r.key,
                queued = conn.out.queued_bytes(),
                "disconnecting a slow consumer"
            );
            counters.slow_consumer_disconnects += 1;
            conn.life = Life::CloseAfterFlush;
            to_close.push_back(r);
        }
        SlowConsumerPolicy::Drop => counters.dropped += 1,
    }
}

/// What became of a live message for a connection that may be pacing a replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behind {
    /// No replay of its channel is being paced: deliver it as usual.
    NotPacing,
    /// Held behind the replay.
    Held,
    /// The messages held behind the replay would pass `max_pending_bytes`.
    Full,
}

/// If `conn` is pacing a replay of `channel`, holds the live message (`frame` at `pos`)
/// behind it; a connection pacing nothing pays one pointer test.
pub fn hold_behind_replay(
    conn: &mut Conn,
    channel: &[u8],
    pos: Position,
    frame: &LocalFrame,
    max_pending_bytes: usize,
) -> Behind {
    let Some(rare) = conn.rare.as_mut() else {
        return Behind::NotPacing;
    };
    let Some(p) = rare.paced.iter_mut().find(|p| *p.channel == *channel) else {
        return Behind::NotPacing;
    };
    let len = frame.bytes.len();
    if p.after_bytes + len > max_pending_bytes {
        return Behind::Full;
    }
    p.after.push_back((pos, frame.clone()));
    p.after_bytes += len;
    Behind::Held
}

impl Sink<'_> {
    /// Starts pacing `list`, the replay of `channel`, for the subscriber at `r`, and queues
    /// as much of it as fits now.
    pub fn start_paced(&mut self, r: ConnRef, channel: Name, list: Arc<[Arc<Message>]>) {
        let Some(conn) = self.open_conn(r) else {
            return;
        };
        conn.rare_mut().paced.push(PacedReplay {
            channel,
            list,
            next: 0,
            after: VecDeque::new(),
            after_bytes: 0,
        });
        self.counters.paced_replays += 1;
        self.feed_paced(r.key as usize);
    }

    /// Queues more of connection `key`'s paced replays while its queue is under half of
    /// `max_pending_bytes` (at least one message when it is empty); a replay done, the live
    /// messages held behind it follow and the pacing of that channel ends.
    pub fn feed_paced(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.life != Life::Open {
            conn.rare = None;
            return;
        }
        let low_water = self.cfg.max_pending_bytes / 2;
        let mut queued_any = false;
        while let Some(p) = conn.rare.as_mut().and_then(|r| r.paced.first_mut()) {
            if conn.out.queued_bytes() >= low_water && !conn.out.is_empty() {
                break;
            }
            if let Some(m) = p.list.get(p.next).cloned() {
                p.next += 1;
                let mut v = Vec::new();
                build_frame(conn.format, &m.view(), Via::Channel, &mut v);
                self.counters.frames_built += 1;
                let frame = Rc::new(Frame {
                    bytes: Bytes::from(v),
                    ts_ns: 0,
                });
                let pos = Position {
                    epoch: m.epoch,
                    seq: m.seq,
                };
                if push_delivery(conn, &m.channel, pos, &frame) {
                    self.counters.delivered += 1;
                    queued_any = true;
                }
                continue;
            }
            // The replay is out: what arrived meanwhile follows, then live as usual.
            let Some(rare) = conn.rare.as_mut() else {
                break;
            };
            let done = rare.paced.remove(0);
            conn.tidy_rare();
            for (pos, frame) in &done.after {
                if push_delivery(conn, &done.channel, *pos, frame) {
                    self.counters.delivered += 1;
                    queued_any = true;
                }
            }
        }
        if queued_any && !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key as u32);
        }
    }
}
