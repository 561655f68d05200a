//! The WebSocket front-end: the upgrade from HTTP, frames (RFC 6455, sans-IO in
//! `corecast_proto::ws`), and the native JSON protocol (`corecast_proto::native`): `sub`
//! (with `since` to resume), `unsub`, `pub`, `ping`. Deliveries are `Format::WsJson` frames,
//! built once per message per shard (see `delivery.rs`).

use bytes::Bytes;
use corecast_proto::http::RequestHead;
use corecast_proto::native::{self, OpKind};
use corecast_proto::ws::{self, close_code, Decoder, Event};

use super::join::ws_text;
use super::Shard;
use crate::conn::Life;
use crate::delivery::Format;
use crate::msg::{MessageView, Name, Ns};
use crate::pending::PendingKind;
use crate::session::{Session, WsSession};

/// The answer to a publish that waited for its owner, as a text frame (`tag` holds the
/// request's id; without one nothing is sent).
pub(super) fn encode_answer(value: PendingKind) -> Bytes {
    let PendingKind::Publish {
        receivers,
        pos,
        tag: Some(id),
    } = value
    else {
        return Bytes::new();
    };
    let mut text = Vec::new();
    native::published(&mut text, Some(&id), pos, receivers.max(0) as u64);
    let mut out = Vec::new();
    ws_text(&mut out, &text);
    Bytes::from(out)
}

impl Shard {
    /// `GET /ws` (or `GET /ws/echo` with `echo`, see option `ws_echo`): validates the
    /// handshake (and the origin), answers 101 and turns the connection into a WebSocket.
    pub(super) fn ws_upgrade(&mut self, key: usize, head: &RequestHead, echo: bool) {
        let accept = match ws::check_upgrade(head) {
            Ok(a) => a,
            Err(e) => {
                self.counters.http_errors += 1;
                let mut out = Vec::new();
                ws::refusal(&mut out, &e);
                let conn = &mut self.conns[key];
                conn.out.reply(&out);
                conn.life = Life::CloseAfterFlush;
                self.mark_dirty(key);
                return;
            }
        };
        if !self.origin_allowed(head) {
            return self.refuse_origin(key);
        }
        if !self.upgrade_fits() {
            return self.refuse_full(key);
        }
        let mut out = Vec::new();
        ws::upgrade_response(&mut out, &accept);
        let interval_ns = u64::from(self.cfg.ws.ping_interval_s) * 1_000_000_000;
        let conn = &mut self.conns[key];
        conn.out.reply(&out);
        conn.format = Format::WsJson;
        conn.session = Session::Ws(Box::new(WsSession {
            decoder: Decoder::new(self.cfg.ws.max_message_bytes)
                .with_max_empty_fragments(self.cfg.ws.max_empty_fragments),
            subs: Default::default(),
            joining: Vec::new(),
            next_ping_ns: self.now_ns + interval_ns,
            awaiting_pong: false,
            close_sent: false,
            echo,
        }));
        self.counters.ws_upgrades += 1;
        self.mark_dirty(key);
    }

    /// Decodes frames in `data`; returns bytes consumed.
    pub(super) fn ws_process(&mut self, key: usize, data: &[u8]) -> usize {
        let mut pos = 0;
        while self.conns[key].life == Life::Open {
            if let Some(reason) = self.pause_reason(key) {
                self.stall(key, reason);
                break;
            }
            let Session::Ws(s) = &mut self.conns[key].session else {
                break;
            };
            if s.close_sent {
                // Our close is out: what follows is at most the client's close, then EOF.
                return data.len();
            }
            match s.decoder.decode(&data[pos..]) {
                Err(e) => {
                    self.counters.ws_protocol_errors += 1;
                    self.ws_close(key, e.close_code(), &e.to_string());
                    return data.len();
                }
                Ok((used, event)) => {
                    pos += used;
                    self.charge_work(1);
                    match event {
                        Some(ev) => self.ws_event(key, ev),
                        None if used == 0 => break,
                        None => {}
                    }
                }
            }
        }
        pos
    }

    /// Sends a close frame and closes once it is out.
    pub(super) fn ws_close(&mut self, key: usize, code: u16, reason: &str) {
        let mut out = Vec::new();
        ws::close_frame(&mut out, code, reason);
        let conn = &mut self.conns[key];
        if let Session::Ws(s) = &mut conn.session {
            s.close_sent = true;
        }
        conn.out.reply(&out);
        conn.life = Life::CloseAfterFlush;
        self.mark_dirty(key);
    }

    fn ws_event(&mut self, key: usize, ev: Event) {
        match ev {
            Event::Message { text } => {
                let Session::Ws(s) = &mut self.conns[key].session else {
                    return;
                };
                if s.echo {
                    // `/ws/echo`: the message goes back whole, as one frame of its kind, in a
                    // buffer of its own (no shard buffer keeps a 16 MiB echo's capacity).
                    let op = if text {
                        ws::opcode::TEXT
                    } else {
                        ws::opcode::BINARY
                    };
                    let mut out = Vec::with_capacity(s.decoder.message().len() + 10);
                    ws::frame(&mut out, op, s.decoder.message());
                    s.decoder.consume_message();
                    self.conns[key].out.push_frame(Bytes::from(out), 0);
                    self.mark_dirty(key);
                    return;
                }
                let mut msg = std::mem::take(&mut self.scratch);
                msg.clear();
                msg.extend_from_slice(s.decoder.message());
                s.decoder.consume_message();
                if text {
                    self.ws_request(key, &msg);
                } else {
                    self.ws_error(
                        key,
                        None,
                        "bad_request",
                        "binary messages are not part of the protocol; send JSON text",
                    );
                }
                self.scratch = msg;
            }
            Event::Ping(p) => {
                let mut out = Vec::new();
                ws::frame(&mut out, ws::opcode::PONG, p.as_slice());
                self.conns[key].out.reply(&out);
                self.mark_dirty(key);
            }
            Event::Pong(_) => {
                if let Session::Ws(s) = &mut self.conns[key].session {
                    s.awaiting_pong = false;
                }
            }
            Event::Close { code, .. } => {
                // Echo the code (RFC 6455 5.5.1); an empty close is answered with 1000.
                let code = code.unwrap_or(close_code::NORMAL);
                self.ws_close(key, code, "");
            }
        }
    }

    /// Queues a JSON text as one frame.
    fn ws_send_text(&mut self, key: usize, text: &[u8]) {
        let mut out = Vec::with_capacity(text.len() + 4);
        ws_text(&mut out, text);
        self.conns[key].out.reply(&out);
        self.mark_dirty(key);
    }

    fn ws_error(&mut self, key: usize, id: Option<&[u8]>, code: &str, msg: &str) {
        self.counters.ws_request_errors += 1;
        let mut text = Vec::new();
        native::error(&mut text, id, code, msg);
        self.ws_send_text(key, &text);
    }

    /// One request of the native protocol.
    fn ws_request(&mut self, key: usize, text: &[u8]) {
        let req = match native::parse_request(text) {
            Ok(r) => r,
            Err(e) => return self.ws_error(key, e.id(), e.code(), e.msg()),
        };
        let id = req.id;
        let channel = req.ch.as_deref().unwrap_or_default();
        if matches!(req.op, OpKind::Sub | OpKind::Unsub | OpKind::Pub) && channel.is_empty() {
            return self.ws_error(key, id, "bad_request", "ch must be a non-empty string");
        }
        if matches!(req.op, OpKind::Pub) {
            if let Err(r) = self.check_channel_name(channel) {
                return self.ws_error(key, id, r.code(), &r.message());
            }
        }
        match req.op {
            OpKind::Sub => {
                let max = self.cfg.max_subscriptions;
                let Session::Ws(s) = &mut self.conns[key].session else {
                    return;
                };
                if s.subs.contains(channel) {
                    return self.ws_error(key, id, "already_subscribed", "already subscribed");
                }
                if s.subs.len() >= max {
                    return self.ws_error(
                        key,
                        id,
                        "too_many_subscriptions",
                        "max subscriptions per connection reached",
                    );
                }
                if let Err(r) = self.admit_channel(channel) {
                    return self.ws_error(key, id, r.code(), &r.message());
                }
                let Session::Ws(s) = &mut self.conns[key].session else {
                    return;
                };
                let name = Name::from(channel);
                s.subs.insert(name.clone());
                self.join(key, name, req.since, id.map(Box::from));
            }
            OpKind::Unsub => {
                let who = self.conns[key].at(key);
                let Session::Ws(s) = &mut self.conns[key].session else {
                    return;
                };
                if s.subs.remove(channel) {
                    match s.joining.iter().position(|(_, n)| **n == *channel) {
                        // Still joining: the owner's answer finds it gone and gives the
                        // count back.
                        Some(i) => {
                            s.joining.swap_remove(i);
                        }
                        None => {
                            let name = Name::from(channel);
                            self.remove_subscription(who, Ns::Plain, &name);
                        }
                    }
                }
                if id.is_some() {
                    let mut out = Vec::new();
                    native::ok(&mut out, id);
                    self.ws_send_text(key, &out);
                }
            }
            OpKind::Pub => {
                let Some(data) = req.data else {
                    return self.ws_error(key, id, "bad_request", "pub needs data");
                };
                let msg = MessageView {
                    ns: Ns::Plain,
                    channel,
                    seq: 0,
                    epoch: 0,
                    payload: data,
                    ts_ns: corecast_runtime::clock::now_ns(),
                    json: true,
                };
                if let Some((receivers, pos)) = self.publish(key, msg, id.map(Box::from)) {
                    if id.is_some() {
                        let mut out = Vec::new();
                        native::published(&mut out, id, pos, receivers.max(0) as u64);
                        self.ws_send_text(key, &out);
                    }
                }
            }
            OpKind::Ping => {
                let mut out = Vec::new();
                native::pong(&mut out, id);
                self.ws_send_text(key, &out);
            }
        }
    }
}
