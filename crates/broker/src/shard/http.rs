//! The HTTP front-end. This issue serves the operational routes (`/healthz`, `/stats`,
//! `/metrics`); WebSocket, SSE and publish land on the same connections later.

use crate::config::limits::{MAX_HEAD_BYTES, STATS_REUSE_NS};
use bytes::Bytes;
use corecast_proto::http::{parse_request_head, response, response_head};

use super::Shard;
use crate::conn::Life;
use crate::stats::{render_json, render_prometheus};

/// The last rendered stats bodies of a shard, with the time they were rendered.
#[derive(Default)]
pub(super) struct RenderedStats {
    json: Option<(u64, Bytes)>,
    prometheus: Option<(u64, Bytes)>,
}

/// Which stats rendering a request wants.
#[derive(Clone, Copy)]
enum StatsFormat {
    Json,
    Prometheus,
}

impl Shard {
    /// Handles complete requests in `data`; returns bytes consumed. Stops early (stalling
    /// the connection) once the client has `max_pending_bytes` of responses unread.
    pub(super) fn http_process(&mut self, key: usize, data: &[u8]) -> usize {
        let mut pos = 0;
        while pos < data.len() && self.conns[key].life == Life::Open {
            if let Some(reason) = self.pause_reason(key) {
                self.stall(key, reason);
                break;
            }
            match parse_request_head(&data[pos..], MAX_HEAD_BYTES) {
                Ok(Some((head, n))) => {
                    pos += n;
                    let has_body = head.header("content-length").is_some_and(|v| v != b"0")
                        || head.header("transfer-encoding").is_some();
                    let keep_alive = head.keep_alive && !has_body;
                    // HEAD gets GET's status and headers, and no body (RFC 9110 §9.3.2).
                    let (get, head_only) = match head.method.as_str() {
                        "GET" => (true, false),
                        "HEAD" => (true, true),
                        _ => (false, false),
                    };
                    let (status, reason, content_type, body): (u16, &str, &str, Bytes) =
                        match (get, head.path.as_str()) {
                            (true, "/healthz") => {
                                (200, "OK", "text/plain", Bytes::from_static(b"ok\n"))
                            }
                            (true, "/stats") => (
                                200,
                                "OK",
                                "application/json",
                                self.stats_body(StatsFormat::Json),
                            ),
                            (true, "/metrics") => (
                                200,
                                "OK",
                                "text/plain; version=0.0.4; charset=utf-8",
                                self.stats_body(StatsFormat::Prometheus),
                            ),
                            (false, "/healthz" | "/stats" | "/metrics") => (
                                405,
                                "Method Not Allowed",
                                "text/plain",
                                Bytes::from_static(b"method not allowed\n"),
                            ),
                            _ => (
                                404,
                                "Not Found",
                                "text/plain",
                                Bytes::from_static(b"not found\n"),
                            ),
                        };
                    let mut out = Vec::new();
                    if head_only {
                        response_head(
                            &mut out,
                            status,
                            reason,
                            content_type,
                            body.len(),
                            keep_alive,
                        );
                    } else {
                        response(&mut out, status, reason, content_type, &body, keep_alive);
                    }
                    let conn = &mut self.conns[key];
                    conn.out.reply(&out);
                    if !keep_alive {
                        conn.life = Life::CloseAfterFlush;
                    }
                    self.mark_dirty(key);
                }
                Ok(None) => break,
                Err(e) => {
                    self.counters.protocol_errors += 1;
                    let mut out = Vec::new();
                    let body = format!("bad request: {e}\n");
                    response(
                        &mut out,
                        400,
                        "Bad Request",
                        "text/plain",
                        body.as_bytes(),
                        false,
                    );
                    let conn = &mut self.conns[key];
                    conn.out.reply(&out);
                    conn.life = Life::CloseAfterFlush;
                    self.mark_dirty(key);
                    pos = data.len();
                }
            }
        }
        pos
    }

    /// The stats body in `format`, rendered at most once per `STATS_REUSE_NS`.
    fn stats_body(&mut self, format: StatsFormat) -> Bytes {
        let now = self.now_ns;
        let slot = match format {
            StatsFormat::Json => &mut self.stats_bodies.json,
            StatsFormat::Prometheus => &mut self.stats_bodies.prometheus,
        };
        if let Some((at, body)) = slot {
            if now.saturating_sub(*at) < STATS_REUSE_NS {
                return body.clone();
            }
        }
        let snapshots = self.shared.board.read();
        let body = Bytes::from(match format {
            StatsFormat::Json => render_json(&snapshots),
            StatsFormat::Prometheus => render_prometheus(&snapshots),
        });
        *slot = Some((now, body.clone()));
        body
    }
}
