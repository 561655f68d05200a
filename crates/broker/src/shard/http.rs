//! The HTTP front-end. This issue serves the operational routes (`/healthz`, `/stats`,
//! `/metrics`); WebSocket, SSE and publish land on the same connections later.

use corecast_proto::http::{parse_request_head, response};

use super::Shard;
use crate::conn::Life;
use crate::stats::{render_json, render_prometheus};

/// Largest request head accepted; heads are small (no cookies or big headers expected).
const MAX_HEAD_BYTES: usize = 16 << 10;

impl Shard {
    /// Handles complete requests in `data`; returns bytes consumed.
    pub(super) fn http_process(&mut self, key: usize, data: &[u8]) -> usize {
        let mut pos = 0;
        while pos < data.len() && self.conns[key].life == Life::Open {
            match parse_request_head(&data[pos..], MAX_HEAD_BYTES) {
                Ok(Some((head, n))) => {
                    pos += n;
                    let has_body = head.header("content-length").is_some_and(|v| v != b"0")
                        || head.header("transfer-encoding").is_some();
                    let keep_alive = head.keep_alive && !has_body;
                    let mut out = Vec::new();
                    match (head.method.as_str(), head.path.as_str()) {
                        ("GET" | "HEAD", "/healthz") => {
                            response(&mut out, 200, "OK", "text/plain", b"ok\n", keep_alive)
                        }
                        ("GET", "/stats") => {
                            let body = render_json(&self.shared.board.read());
                            response(
                                &mut out,
                                200,
                                "OK",
                                "application/json",
                                body.as_bytes(),
                                keep_alive,
                            );
                        }
                        ("GET", "/metrics") => {
                            let body = render_prometheus(&self.shared.board.read());
                            response(
                                &mut out,
                                200,
                                "OK",
                                "text/plain; version=0.0.4; charset=utf-8",
                                body.as_bytes(),
                                keep_alive,
                            );
                        }
                        (_, "/healthz" | "/stats" | "/metrics") => response(
                            &mut out,
                            405,
                            "Method Not Allowed",
                            "text/plain",
                            b"method not allowed\n",
                            keep_alive,
                        ),
                        _ => response(
                            &mut out,
                            404,
                            "Not Found",
                            "text/plain",
                            b"not found\n",
                            keep_alive,
                        ),
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
}
