//! Delivering one message to this shard's subscribers: each wire format's frame is built at
//! most once per message per shard, on first need, and shared by every local subscriber of
//! that format; a subscriber costs a queue entry (and the slow-consumer check), nothing more.
//!
//! Adding a front-end adds a [`Format`] and its arm in [`build_frame`]; the fan-out itself
//! does not change.

use std::rc::Rc;

use bytes::Bytes;
use slab::Slab;

use crate::config::BrokerConfig;
use crate::conn::{Conn, Life};
use crate::msg::{MessageView, Ns, Position};
use crate::outbound::{Frame, LocalFrame};
use crate::paced::{hold_behind_replay, slow_consumer, Behind};
use crate::session::Session;
use crate::stats::Counters;
use crate::tables::ConnRef;

/// How a connection wants deliveries encoded. One byte in `Conn`, read by fan-out for every
/// subscriber, so it lives there and not in the protocol session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Format {
    /// RESP2 `*3 message channel payload` arrays.
    #[default]
    Resp2 = 0,
    /// RESP3 `>3` pushes (after `HELLO 3`).
    Resp3 = 1,
    /// A WebSocket text frame, header included, holding the native JSON delivery
    /// `{"ch":..,"seq":..,"data":..}`.
    WsJson = 2,
    /// An SSE event whose id is the message's own position: a stream of one channel.
    Sse = 3,
    /// An SSE event without its id line: a stream of several channels, whose ids carry a
    /// position per channel and so differ per subscriber; each gets its `id:` line as a
    /// header item before this shared body.
    SseData = 4,
}

/// Number of [`Format`]s: the size of a frame cache.
pub const FORMATS: usize = 5;

/// Why the subscribers receive the message.
#[derive(Debug, Clone, Copy)]
pub enum Via<'a> {
    /// They subscribe to its channel.
    Channel,
    /// They subscribe to this pattern, which matches the channel.
    Pattern(&'a [u8]),
}

/// Encodes `msg` in `format` into `out`.
pub fn build_frame(format: Format, msg: &MessageView<'_>, via: Via<'_>, out: &mut Vec<u8>) {
    use corecast_proto::resp::encode;
    match format {
        Format::Resp2 | Format::Resp3 => {
            let start = out.len();
            let (channel, payload) = (msg.channel, msg.payload);
            match (via, msg.ns) {
                (Via::Channel, Ns::Plain) => {
                    out.reserve(encode::message_len(channel.len(), payload.len()));
                    encode::push_message(out, channel, payload);
                }
                (Via::Channel, Ns::Shard) => {
                    out.reserve(encode::smessage_len(channel.len(), payload.len()));
                    encode::push_smessage(out, channel, payload);
                }
                (Via::Pattern(p), _) => {
                    out.reserve(encode::pmessage_len(p.len(), channel.len(), payload.len()));
                    encode::push_pmessage(out, p, channel, payload);
                }
            }
            if format == Format::Resp3 {
                encode::into_resp3_push(&mut out[start..]);
            }
        }
        // The native front-ends have no patterns: a message reaches them by channel.
        Format::WsJson => {
            use corecast_proto::{native, ws};
            let len = native::delivery_len(msg.channel, msg.seq, msg.payload, msg.json);
            out.reserve(ws::frame_header_len(len) + len);
            ws::frame_header(out, ws::opcode::TEXT, len);
            native::delivery(out, msg.channel, msg.seq, msg.payload, msg.json);
        }
        Format::Sse | Format::SseData => {
            use corecast_proto::{native, sse};
            let mut json = Vec::with_capacity(native::delivery_len(
                msg.channel,
                msg.seq,
                msg.payload,
                msg.json,
            ));
            native::delivery(&mut json, msg.channel, msg.seq, msg.payload, msg.json);
            let mut id = Vec::new();
            if format == Format::Sse {
                let pos = Position {
                    epoch: msg.epoch,
                    seq: msg.seq,
                };
                sse::write_positions(&mut id, &[Some(pos)]);
            }
            let id = (format == Format::Sse).then_some(id.as_slice());
            out.reserve(sse::event_len(id, None, &json));
            sse::event(out, id, None, &json);
        }
    }
}

/// The `id:` line of a multi-channel SSE stream after `msg`: the stream's positions with
/// this channel's advanced to the message. Returns None when the stream does not carry the
/// channel (it cannot happen for a subscriber of it; nothing is sent then).
fn sse_id_line(conn: &mut Conn, msg: &MessageView<'_>) -> Option<Bytes> {
    let Session::Sse(s) = &mut conn.session else {
        return None;
    };
    let i = s.index_of(msg.channel)?;
    s.channels[i].pos = Some(Position {
        epoch: msg.epoch,
        seq: msg.seq,
    });
    Some(sse_id_bytes(s))
}

/// `id: <positions>\n` for an SSE stream.
pub fn sse_id_bytes(s: &crate::session::SseSession) -> Bytes {
    let positions: Vec<_> = s.channels.iter().map(|c| c.pos).collect();
    let mut v = Vec::with_capacity(8 + 24 * positions.len());
    v.extend_from_slice(b"id: ");
    corecast_proto::sse::write_positions(&mut v, &positions);
    v.push(b'\n');
    Bytes::from(v)
}

/// The frames of one message (through one channel or pattern) built on this shard so far.
pub struct FrameCache<'a> {
    /// The message.
    pub msg: MessageView<'a>,
    via: Via<'a>,
    frames: [Option<LocalFrame>; FORMATS],
    /// Frames built (for tests and the `frames_built` counter).
    pub built: u32,
}

impl<'a> FrameCache<'a> {
    /// An empty cache for `msg` delivered through `via`.
    pub fn new(msg: MessageView<'a>, via: Via<'a>) -> Self {
        Self {
            msg,
            via,
            frames: Default::default(),
            built: 0,
        }
    }

    /// The frame for `format`, built on first need.
    pub fn frame(&mut self, format: Format) -> &LocalFrame {
        let (msg, via) = (self.msg, self.via);
        let built = &mut self.built;
        self.frames[format as usize].get_or_insert_with(|| {
            *built += 1;
            let mut v = Vec::new();
            build_frame(format, &msg, via, &mut v);
            Rc::new(Frame {
                bytes: Bytes::from(v),
                ts_ns: msg.ts_ns,
            })
        })
    }
}

/// The parts of a shard that delivery writes, borrowed apart from the channel table it reads.
pub struct Sink<'a> {
    /// The shard's connections.
    pub conns: &'a mut Slab<Conn>,
    /// Connections with something new to send.
    pub dirty: &'a mut Vec<u32>,
    /// Connections to close at the end of the turn (slow consumers).
    pub to_close: &'a mut std::collections::VecDeque<ConnRef>,
    /// The shard's counters.
    pub counters: &'a mut Counters,
    /// Limits and the slow-consumer policy.
    pub cfg: &'a BrokerConfig,
}

impl Sink<'_> {
    /// Queues the message in `frames` for every subscriber in `subs`, in order.
    pub fn deliver(&mut self, subs: &[ConnRef], frames: &mut FrameCache<'_>) {
        for &r in subs {
            self.deliver_one(r, frames);
        }
        self.counters.frames_built += u64::from(std::mem::take(&mut frames.built));
    }

    /// The connection at `r` if it is still that connection and open.
    pub fn open_conn(&mut self, r: ConnRef) -> Option<&mut Conn> {
        self.conns
            .get_mut(r.key as usize)
            .filter(|c| c.gen == r.gen && c.life == Life::Open)
    }

    /// Queues the message for one subscriber, its frame built on first need.
    fn deliver_one(&mut self, r: ConnRef, frames: &mut FrameCache<'_>) {
        let Some(conn) = self.open_conn(r) else {
            return;
        };
        let format = conn.format;
        let msg = frames.msg;
        let frame = frames.frame(format);
        self.deliver_frame(r, &msg, frame);
    }

    /// Queues `frame` (the message `msg` in the subscriber's format) for one subscriber,
    /// applying the slow-consumer policy; a multi-channel SSE stream gets its `id:` line
    /// before it.
    pub fn deliver_frame(&mut self, r: ConnRef, msg: &MessageView<'_>, frame: &LocalFrame) {
        let Some(conn) = self
            .conns
            .get_mut(r.key as usize)
            .filter(|c| c.gen == r.gen)
        else {
            return;
        };
        if conn.life != Life::Open {
            return;
        }
        let pos = Position {
            epoch: msg.epoch,
            seq: msg.seq,
        };
        match hold_behind_replay(conn, msg.channel, pos, frame, self.cfg.max_pending_bytes) {
            Behind::NotPacing => {}
            Behind::Held => {
                self.counters.delivered += 1;
                return;
            }
            Behind::Full => {
                return slow_consumer(self.cfg, self.counters, self.to_close, conn, r);
            }
        }
        let header = if conn.format == Format::SseData {
            match sse_id_line(conn, msg) {
                Some(h) => Some(h),
                None => return,
            }
        } else {
            None
        };
        let len = frame.bytes.len() + header.as_ref().map_or(0, Bytes::len);
        if conn.out.queued_bytes() + len > self.cfg.max_pending_bytes {
            return slow_consumer(self.cfg, self.counters, self.to_close, conn, r);
        }
        match header {
            Some(h) => {
                conn.out.push_with_header(h, frame);
            }
            None => conn.out.push_shared(frame),
        }
        self.counters.delivered += 1;
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(r.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Protocol;

    fn sink_test(
        formats: &[Format],
        max_pending_bytes: usize,
        f: impl FnOnce(&mut Sink<'_>, &[ConnRef]),
    ) -> (Slab<Conn>, Counters) {
        let mut conns = Slab::new();
        let refs: Vec<ConnRef> = formats
            .iter()
            .map(|&fmt| {
                let mut c = Conn::new(-1, 1, Protocol::Resp.new_session(0));
                c.format = fmt;
                let key = conns.insert(c);
                conns[key].at(key)
            })
            .collect();
        let cfg = BrokerConfig {
            max_pending_bytes,
            ..BrokerConfig::default()
        };
        let (mut dirty, mut to_close, mut counters) = (
            Vec::new(),
            std::collections::VecDeque::new(),
            Counters::default(),
        );
        let mut sink = Sink {
            conns: &mut conns,
            dirty: &mut dirty,
            to_close: &mut to_close,
            counters: &mut counters,
            cfg: &cfg,
        };
        f(&mut sink, &refs);
        (conns, counters)
    }

    fn queued(c: &mut Conn) -> Vec<u8> {
        let mut v = Vec::new();
        while let Some((bytes, offset)) = c.out.front_large(1) {
            v.extend_from_slice(&bytes.bytes[offset..]);
            c.out.advance(bytes.bytes.len() - offset);
        }
        v
    }

    fn msg() -> MessageView<'static> {
        MessageView {
            ns: Ns::Plain,
            channel: b"news",
            seq: 7,
            epoch: 1,
            payload: b"hi",
            ts_ns: 5,
            json: false,
        }
    }

    #[test]
    fn one_frame_per_format_per_shard() {
        let formats = [
            Format::Resp2,
            Format::Resp3,
            Format::Resp2,
            Format::Resp3,
            Format::Resp2,
        ];
        let (mut conns, counters) = sink_test(&formats, 1 << 20, |sink, subs| {
            let mut frames = FrameCache::new(msg(), Via::Channel);
            sink.deliver(subs, &mut frames);
        });
        assert_eq!(counters.frames_built, 2, "one RESP2 and one RESP3 frame");
        assert_eq!(counters.delivered, 5);
        for (key, c) in conns.iter_mut() {
            let expected: &[u8] = if formats[key] == Format::Resp3 {
                b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
            } else {
                b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
            };
            assert_eq!(queued(c), expected);
        }
    }

    #[test]
    fn pattern_and_shard_frames_match_redis() {
        let mut v = Vec::new();
        build_frame(Format::Resp2, &msg(), Via::Pattern(b"n*"), &mut v);
        assert_eq!(
            v,
            b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n"
        );
        v.clear();
        let m = MessageView {
            ns: Ns::Shard,
            ..msg()
        };
        build_frame(Format::Resp3, &m, Via::Channel, &mut v);
        assert_eq!(v, b">3\r\n$8\r\nsmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n");
    }

    #[test]
    fn a_slow_consumer_is_disconnected_and_the_others_still_get_it() {
        // Room for one 35-byte frame, not two.
        let (conns, counters) = sink_test(&[Format::Resp2, Format::Resp2], 60, |sink, subs| {
            let mut frames = FrameCache::new(msg(), Via::Channel);
            sink.deliver(&subs[..1], &mut frames);
            let mut frames = FrameCache::new(msg(), Via::Channel);
            sink.deliver(subs, &mut frames);
            assert_eq!(*sink.to_close, [subs[0]]);
        });
        assert_eq!(counters.slow_consumer_disconnects, 1);
        assert_eq!(counters.delivered, 2);
        assert_eq!(conns[0].life, Life::CloseAfterFlush);
        assert_eq!(conns[1].out.queued_bytes(), 35);
    }
}
