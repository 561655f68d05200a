//! Joining a channel with a position: how WebSocket and SSE subscribers subscribe. The owner
//! counts the subscriber and answers with the channel's position and, for a resume, the
//! missed messages from history (or a reset notice); the subscriber's shard adds it to its
//! table only when that answer arrives. Deliveries the owner sends after the answer follow
//! it on the same ring, so replay then live has no gap and no duplicate.

use bytes::Bytes;

use super::Shard;
use crate::conn::Life;
use crate::delivery::{build_frame, sse_id_bytes, Format, Via};
use crate::msg::{Joined, Name, Ns, Position, Replay, ShardMsg};
use crate::pending::{JoinWait, PendingKind};
use crate::session::Session;
use crate::tables::ConnRef;

impl Shard {
    /// On the owner: counts one more subscriber of `channel` on shard `from` and says where
    /// the channel stands and what a subscriber resuming after `since` missed.
    pub(super) fn join_owned(
        &mut self,
        ns: Ns,
        channel: &Name,
        from: usize,
        since: Option<Position>,
    ) -> Joined {
        self.owned_apply(ns, channel, from, 1);
        let Some((_, oc)) = self.owned.get_mut(ns, channel) else {
            debug_assert!(false, "a channel with a subscriber is kept");
            return Joined {
                pos: Position { epoch: 0, seq: 0 },
                replay: Replay::Nothing,
            };
        };
        let pos = oc.position();
        let first = || oc.history.as_ref().and_then(|h| h.first_seq());
        let replay = match since {
            None => Replay::Nothing,
            Some(p) if p.epoch != oc.epoch => Replay::Reset {
                first: first().unwrap_or(oc.seq + 1),
            },
            Some(p) => match oc.history.as_mut() {
                Some(h) => {
                    let walks = h.walks();
                    let replay = h.replay(p.seq, oc.seq);
                    self.counters.replay_walks += h.walks() - walks;
                    replay
                }
                None if p.seq == oc.seq => Replay::Nothing,
                None => Replay::Reset { first: oc.seq + 1 },
            },
        };
        if since.is_some() {
            match replay {
                Replay::Reset { .. } => self.counters.resume_resets += 1,
                _ => self.counters.resumes += 1,
            }
        }
        Joined { pos, replay }
    }

    /// Joins connection `key` (WebSocket or SSE, its session already listing the channel)
    /// to `channel`: at once when this shard owns it, else through the owner. `tag` is the
    /// front-end's correlation for the confirmation (a WebSocket request id).
    pub(super) fn join(
        &mut self,
        key: usize,
        channel: Name,
        since: Option<Position>,
        tag: Option<Box<[u8]>>,
    ) {
        let ns = Ns::Plain;
        let owner = self.owner_of(&channel);
        if owner == self.id {
            let joined = self.join_owned(ns, &channel, self.id, since);
            let who = self.conns[key].at(key);
            self.joined(who, None, ns, &channel, tag.as_deref(), since, joined);
            return;
        }
        let wait = JoinWait {
            ns,
            channel: channel.clone(),
            tag,
            since,
            joined: None,
        };
        let slot = self.hold(key, 1, PendingKind::Join(Box::new(wait)));
        if let Session::Ws(s) = &mut self.conns[key].session {
            s.joining.push((slot, channel.clone()));
        }
        self.send_to(
            owner,
            ShardMsg::Join {
                ns,
                channel,
                since,
                reply: slot,
            },
        );
    }

    /// The owner's answer to a join of connection `who` (through held slot `held`, or at
    /// once): the subscriber enters this shard's table, gets its confirmation and replay.
    /// If the connection left (or unsubscribed) meanwhile, the owner's count is given back.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn joined(
        &mut self,
        who: ConnRef,
        held: Option<(u64, u32)>,
        ns: Ns,
        channel: &Name,
        tag: Option<&[u8]>,
        since: Option<Position>,
        joined: Joined,
    ) {
        let key = who.key as usize;
        let wanted = match self.conn_mut(who) {
            Some(conn) if conn.life == Life::Open => match &mut conn.session {
                Session::Ws(s) => match held {
                    Some((_, slot)) => {
                        let at = s.joining.iter().position(|(sl, _)| *sl == slot);
                        at.map(|i| s.joining.swap_remove(i)).is_some()
                    }
                    None => s.subs.contains(channel),
                },
                Session::Sse(s) => s.index_of(channel).is_some(),
                _ => false,
            },
            _ => false,
        };
        if !wanted {
            // Nobody to deliver to: undo the owner's +1.
            if let Some(conn) = self.conn_mut(who) {
                if let Some((ticket, slot)) = held {
                    conn.out.fill(ticket, slot, Bytes::new());
                }
            }
            self.release_at_owner(ns, channel);
            return;
        }
        self.local.subscribe(ns, channel, who);
        self.counters.subscriptions += 1;
        let format = self.conns[key].format;
        // The confirmation (WebSocket) or the stream's position (SSE), in the held slot or
        // at the end of the queue.
        let mut first = Vec::new();
        let mut sse_replay_from = None;
        match &mut self.conns[key].session {
            Session::Ws(_) => {
                use corecast_proto::native;
                native::subscribed(&mut first, tag, channel, joined.pos);
                let mut text = Vec::new();
                if let Replay::Reset { first: f } = joined.replay {
                    native::reset(&mut text, channel, joined.pos.epoch, f, joined.pos.seq);
                }
                let ok = std::mem::take(&mut first);
                ws_text(&mut first, &ok);
                if !text.is_empty() {
                    ws_text(&mut first, &text);
                }
            }
            Session::Sse(s) => {
                let i = s.index_of(channel).expect("checked above");
                s.joining = s.joining.saturating_sub(1);
                match &joined.replay {
                    Replay::Messages(_) => {
                        s.channels[i].pos = since;
                        sse_replay_from = since;
                    }
                    _ => s.channels[i].pos = Some(joined.pos),
                }
                // The id line first: field order within an event does not matter. A stream
                // of several channels announces its position once every join is in, so the
                // first id it records holds every channel (a replay's events carry theirs).
                let announce = s.joining == 0 && !matches!(joined.replay, Replay::Messages(_));
                let reset = matches!(joined.replay, Replay::Reset { .. });
                if announce || reset {
                    first.extend_from_slice(&sse_id_bytes(s));
                }
                if let Replay::Reset { first: f } = joined.replay {
                    let mut data = Vec::new();
                    corecast_proto::native::reset(
                        &mut data,
                        channel,
                        joined.pos.epoch,
                        f,
                        joined.pos.seq,
                    );
                    corecast_proto::sse::event(&mut first, None, Some("reset"), &data);
                } else if announce {
                    // A `subscribed` event per channel, with the position in its data. A
                    // browser records the id of a block without data too (WHATWG dispatch
                    // step 1), but common libraries (npm eventsource 3, sseclient-py) drop
                    // such blocks, and would resume a stream cut before its first message
                    // from nothing; a named event is ignored by `onmessage` yet sets every
                    // client's last id.
                    let id_line_end = first.len();
                    let mut data = Vec::new();
                    for (k, c) in s.channels.iter().enumerate() {
                        let pos = c.pos.unwrap_or(joined.pos);
                        data.clear();
                        corecast_proto::native::subscribed(&mut data, None, &c.name, pos);
                        if k > 0 {
                            first.extend_from_within(..id_line_end);
                        }
                        corecast_proto::sse::event(&mut first, None, Some("subscribed"), &data);
                    }
                }
            }
            _ => {}
        }
        let conn = &mut self.conns[key];
        match held {
            Some((ticket, slot)) => {
                conn.out.fill(ticket, slot, Bytes::from(first));
            }
            None if first.is_empty() => {}
            None => conn.out.push_frame(Bytes::from(first), 0),
        }
        if let Replay::Messages(list) = &joined.replay {
            debug_assert!(
                format != Format::Sse || sse_replay_from.is_some(),
                "an SSE replay starts from the resumed position"
            );
            let frames = self.replay_frames(list, format);
            let bytes: usize = frames.iter().map(|f| f.bytes.len()).sum();
            let fits = self.conns[key].out.queued_bytes() + bytes <= self.cfg.max_pending_bytes;
            let (_, mut sink) = self.local_and_sink();
            if fits {
                for (msg, frame) in list.iter().zip(frames.iter()) {
                    sink.deliver_frame(who, &msg.view(), frame);
                }
            } else {
                // Queued as the client drains it, live messages held behind it.
                sink.start_paced(who, channel.clone(), list.clone());
            }
        }
        self.mark_dirty(key);
    }

    /// The frames of a replayed list in `format`, built once per list and format: in a
    /// reconnect storm every resumer of a channel on this shard gets the same list (the
    /// owner shares it), and so the same frames.
    fn replay_frames(
        &mut self,
        list: &std::sync::Arc<[std::sync::Arc<crate::msg::Message>]>,
        format: Format,
    ) -> std::rc::Rc<[crate::outbound::LocalFrame]> {
        if let Some((l, f, frames)) = &self.replay_cache {
            if std::sync::Arc::ptr_eq(l, list) && *f == format {
                return frames.clone();
            }
        }
        let frames: std::rc::Rc<[crate::outbound::LocalFrame]> = list
            .iter()
            .map(|m| {
                let mut v = Vec::new();
                build_frame(format, &m.view(), Via::Channel, &mut v);
                self.counters.frames_built += 1;
                std::rc::Rc::new(crate::outbound::Frame {
                    bytes: Bytes::from(v),
                    ts_ns: 0,
                })
            })
            .collect();
        self.replay_cache = Some((list.clone(), format, frames.clone()));
        frames
    }
}

/// Appends `text` as one WebSocket text frame.
pub(super) fn ws_text(out: &mut Vec<u8>, text: &[u8]) {
    corecast_proto::ws::frame(out, corecast_proto::ws::opcode::TEXT, text);
}
