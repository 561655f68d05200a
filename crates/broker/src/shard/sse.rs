//! The Server-Sent Events front-end: `GET /sse?ch=a&ch=b` opens a stream that never ends;
//! `Last-Event-ID` resumes every channel from history (see `join.rs`); heartbeats keep
//! proxies from cutting it; `retry:` advice rises during a reconnect storm.
//!
//! Event ids are the stream's position in each of its channels, in the order of the `ch`
//! parameters: `<epoch hex>:<seq>` items joined by `,` (`corecast_proto::sse`). A stream of
//! one channel has ids that are the message's own position, so its frames are shared by
//! every subscriber on the shard (`Format::Sse`); a stream of several gets its id line per
//! subscriber before a shared body (`Format::SseData`).

use bytes::Bytes;
use corecast_proto::http::{query_params, stream_head, RequestHead};

use super::Shard;
use crate::config::limits::MAX_SSE_CHANNELS;
use crate::delivery::Format;
use crate::msg::{Name, Position};
use crate::session::{Session, SseChannel, SseSession};

/// The heartbeat comment: static bytes, so a heartbeat to every stream allocates nothing.
const HEARTBEAT: &[u8] = b":\n\n";

impl Shard {
    /// The `retry:` advice for connection `key` now: the normal value, or during a storm
    /// the storm value plus up to 50% from the connection's own hash, so clients cut
    /// together do not come back together.
    pub(super) fn retry_advice(&self, key: usize) -> u64 {
        if !self.storm {
            return self.cfg.sse.retry_ms;
        }
        let base = self.cfg.sse.storm_retry_ms;
        let gen = self.conns.get(key).map_or(0, |c| c.gen);
        // A multiplicative hash of the connection's slot and generation: fixed per
        // connection, spread across connections, no allocation (the sweep asks for every
        // stream once a second during a storm).
        let h = ((key as u64) ^ (u64::from(gen) << 32)).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
        base + (h % 512) * base / 1024
    }

    /// `GET /sse`: answers with the stream's head and `retry:` advice, then joins every
    /// channel (resuming from `Last-Event-ID` when it parses for these channels).
    pub(super) fn sse_start(&mut self, key: usize, head: &RequestHead) {
        // EventSource sends Origin on a cross-origin stream: refused as a WebSocket is (403).
        if !self.origin_allowed(head) {
            return self.refuse_origin(key);
        }
        let mut names: Vec<Name> = Vec::new();
        for (k, v) in query_params(&head.query) {
            if k.as_ref() != b"ch" {
                continue;
            }
            if v.is_empty() {
                return self.sse_refuse(key, b"a ch parameter is empty\n");
            }
            if !names.iter().any(|n| **n == *v) {
                names.push(Name::from(v.as_ref()));
            }
        }
        if names.is_empty() {
            return self.sse_refuse(key, b"GET /sse needs at least one channel: /sse?ch=NAME\n");
        }
        if names.len() > MAX_SSE_CHANNELS.min(self.cfg.max_subscriptions) {
            return self.sse_refuse(key, b"too many channels in one stream\n");
        }
        for name in &names {
            if let Err(r) = self.admit_channel(name) {
                return self.refuse_name(key, r);
            }
        }
        if !self.upgrade_fits() {
            return self.refuse_full(key);
        }
        // A malformed or foreign id (another channel list, a tampered value) starts fresh.
        let since = head
            .header("last-event-id")
            .and_then(|id| corecast_proto::sse::parse_positions(id.trim_ascii(), names.len()));
        let mut out = Vec::new();
        // With a list, the (allowed) origin is echoed, and `Vary` tells caches the answer
        // depends on it; a request without Origin (not a browser) needs no CORS header.
        let origin = head.header("origin").map(String::from_utf8_lossy);
        let cors: Vec<String> = match (self.cfg.allowed_origins.is_empty(), origin) {
            (true, _) => vec!["Access-Control-Allow-Origin: *".into()],
            (false, Some(o)) => vec![
                format!("Access-Control-Allow-Origin: {}", o.trim()),
                "Vary: Origin".into(),
            ],
            (false, None) => Vec::new(),
        };
        let cors: Vec<&str> = cors.iter().map(String::as_str).collect();
        stream_head(&mut out, "text/event-stream", &cors);
        let retry_ms = self.retry_advice(key);
        corecast_proto::sse::retry(&mut out, retry_ms);
        let channels: Box<[SseChannel]> = names
            .iter()
            .enumerate()
            .map(|(i, name)| SseChannel {
                name: name.clone(),
                pos: since.as_ref().and_then(|s| s[i]),
            })
            .collect();
        let resume: Vec<Option<Position>> = channels.iter().map(|c| c.pos).collect();
        let heartbeat_ns = u64::from(self.cfg.sse.heartbeat_s) * 1_000_000_000;
        let conn = &mut self.conns[key];
        conn.out.reply(&out);
        conn.format = if names.len() == 1 {
            Format::Sse
        } else {
            Format::SseData
        };
        conn.session = Session::Sse(Box::new(SseSession {
            channels,
            joining: names.len() as u16,
            next_heartbeat_ns: self.now_ns + heartbeat_ns,
            retry_ms,
        }));
        self.counters.sse_streams += 1;
        self.mark_dirty(key);
        for (name, since) in names.into_iter().zip(resume) {
            self.join(key, name, since, None);
        }
    }

    fn sse_refuse(&mut self, key: usize, body: &'static [u8]) {
        let mut out = Vec::new();
        corecast_proto::http::response_with(
            &mut out,
            400,
            "Bad Request",
            "text/plain",
            &[],
            body,
            false,
        );
        self.counters.http_errors += 1;
        let conn = &mut self.conns[key];
        conn.out.reply(&out);
        conn.life = crate::conn::Life::CloseAfterFlush;
        self.mark_dirty(key);
    }

    /// An SSE stream's input: a client has nothing to say after its request, so anything
    /// it sends is read and ignored (its EOF closes the stream).
    pub(super) fn sse_process(&mut self, _key: usize, data: &[u8]) -> usize {
        data.len()
    }

    /// Periodic work of one stream: a heartbeat when due, and new `retry:` advice when
    /// the storm state changed since the stream was last told.
    pub(super) fn sse_tick(&mut self, key: usize) {
        let advice = self.retry_advice(key);
        let heartbeat_ns = u64::from(self.cfg.sse.heartbeat_s) * 1_000_000_000;
        let now = self.now_ns;
        let conn = &mut self.conns[key];
        let Session::Sse(s) = &mut conn.session else {
            return;
        };
        let mut wrote = false;
        if s.retry_ms != advice {
            s.retry_ms = advice;
            let mut out = Vec::new();
            corecast_proto::sse::retry(&mut out, advice);
            conn.out.reply(&out);
            wrote = true;
        }
        if heartbeat_ns > 0 && now >= s.next_heartbeat_ns {
            s.next_heartbeat_ns = now + heartbeat_ns;
            conn.out.push_frame(Bytes::from_static(HEARTBEAT), 0);
            self.counters.sse_heartbeats += 1;
            wrote = true;
        }
        if wrote {
            self.mark_dirty(key);
        }
    }
}
