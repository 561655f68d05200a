//! The HTTP/1.1 front-end: request heads and bodies (sans-IO in `corecast_proto::http`),
//! keep-alive and pipelining, and the routes: `POST /pub`, the upgrades to WebSocket
//! (`GET /ws`, and the diagnostic `GET /ws/echo` when `ws_echo` is on, see `ws.rs`) and SSE (`GET /sse`, see `sse.rs`), and the operational
//! `/healthz`, `/stats`, `/metrics` and `/dashboard` (a page built into the binary that
//! draws `/stats` over time).

use bytes::Bytes;
use std::sync::OnceLock;

use base64::Engine;
use corecast_proto::http::{
    body_framing, expects_continue, parse_head, response_head_with, response_with, BodyDecoder,
    BodyFraming, Limits, RequestHead, CONTINUE,
};
use sha2::{Digest, Sha256};

use super::admit::Refusal;
use super::Shard;
use crate::config::limits::STATS_REUSE_NS;
use crate::conn::Life;
use crate::msg::{MessageView, Name, Ns, Position};
use crate::pending::PendingKind;
use crate::session::{PendingBody, Session};
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

/// A complete answer to one request.
struct Answer<'a> {
    status: u16,
    reason: &'a str,
    content_type: &'a str,
    extra: &'a [&'a str],
    body: Bytes,
}

impl<'a> Answer<'a> {
    fn text(status: u16, reason: &'a str, body: &'static str) -> Self {
        Self {
            status,
            reason,
            content_type: "text/plain",
            extra: &[],
            body: Bytes::from_static(body.as_bytes()),
        }
    }
}

/// The body of `GET /`'s redirect, for a client that does not follow it: what is here.
const ROOT_PAGE: &str = "corecast: the dashboard is at /dashboard\n\
GET /ws (WebSocket, native JSON protocol), GET /sse?ch=NAME (Server-Sent Events),\n\
POST /pub?ch=NAME (publish), GET /stats, /metrics, /healthz\n\
docs: docs/protocols.md and docs/operations.md in the source repository\n";

/// The answer to a publish that waited for its owner (`tag` holds the keep-alive flag).
pub(super) fn encode_answer(value: PendingKind) -> Bytes {
    let PendingKind::Publish {
        receivers,
        pos,
        tag,
    } = value
    else {
        return Bytes::new();
    };
    let keep_alive = tag.is_some_and(|t| t.first() == Some(&1));
    Bytes::from(publish_response(receivers, pos, keep_alive))
}

fn publish_response(receivers: i64, pos: Position, keep_alive: bool) -> Vec<u8> {
    let mut body = Vec::new();
    corecast_proto::native::publish_answer(&mut body, pos, receivers.max(0) as u64);
    let mut out = Vec::new();
    response_with(
        &mut out,
        200,
        "OK",
        "application/json",
        &[],
        &body,
        keep_alive,
    );
    out
}

/// The dashboard page, built into the binary.
const DASHBOARD: &[u8] = include_bytes!("../dashboard.html");

/// The dashboard's `Content-Security-Policy` header line, computed once from the page.
///
/// The page is one file with an inline script and inline styles, and talks only to `stats`
/// on its own origin, so it needs nothing else: no other script runs (only the page's own
/// scripts, by the SHA-256 of each, so an injected `<script>` or `onclick=` does not),
/// styles may be inline (the page writes `style=` attributes; CSS cannot run code),
/// images only from `data:` (the empty favicon), fetches only to the page's origin
/// (`'self'`, which behind a proxy prefix is the proxy's), no `<base>`, no form posts,
/// and no framing by any page (`frame-ancestors 'none'`, clickjacking). The hashes are
/// computed from the page itself, so editing the script cannot leave a stale one.
fn dashboard_csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| csp_for(DASHBOARD))
}

/// The policy of [`dashboard_csp`] for `page`: one `'sha256-...'` source per inline
/// `<script>` element.
fn csp_for(page: &[u8]) -> String {
    let mut scripts = String::new();
    let mut rest = page;
    while let Some(open) = find(rest, b"<script") {
        let after = &rest[open..];
        let (Some(gt), Some(close)) = (find(after, b">"), find(after, b"</script>")) else {
            break;
        };
        if let Some(body) = after.get(gt + 1..close) {
            let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(body));
            scripts.push_str(&format!(" 'sha256-{hash}'"));
        }
        rest = &after[close..];
    }
    if scripts.is_empty() {
        scripts.push_str(" 'none'");
    }
    format!(
        "Content-Security-Policy: default-src 'none'; script-src{scripts}; \
         style-src 'unsafe-inline'; img-src data:; connect-src 'self'; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'"
    )
}

/// Position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether a `Content-Type` value names JSON (`application/json`, `application/*+json`).
fn is_json_type(value: &[u8]) -> bool {
    let media = value.split(|&b| b == b';').next().unwrap_or_default();
    let media = String::from_utf8_lossy(media).trim().to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

impl Shard {
    fn http_limits(&self) -> Limits {
        Limits {
            max_head_bytes: self.cfg.http.max_head_bytes,
            max_headers: self.cfg.http.max_headers,
            max_body_bytes: self.cfg.http.max_body_bytes,
        }
    }

    /// Handles complete requests in `data`; returns bytes consumed. Stops early (stalling
    /// the connection) once the client has `max_pending_bytes` of responses unread, and
    /// after an upgrade (the rest belongs to the new protocol).
    pub(super) fn http_process(&mut self, key: usize, data: &[u8]) -> usize {
        let mut pos = 0;
        while self.conns[key].life == Life::Open {
            let Session::Http(session) = &self.conns[key].session else {
                break;
            };
            if session.body.is_some() {
                let (used, done) = self.http_body(key, &data[pos..]);
                pos += used;
                if !done {
                    break;
                }
                continue;
            }
            if pos >= data.len() {
                break;
            }
            if let Some(reason) = self.pause_reason(key) {
                self.stall(key, reason);
                break;
            }
            match parse_head(&data[pos..], &self.http_limits()) {
                Ok(Some((head, n))) => {
                    pos += n;
                    self.counters.http_requests += 1;
                    self.http_request(key, head);
                    self.charge_work(1);
                }
                Ok(None) => break,
                Err(e) => {
                    let body = format!("{e}\n");
                    self.http_fail(key, e.status(), e.reason(), body.as_bytes());
                    pos = data.len();
                }
            }
        }
        pos
    }

    /// Refuses a request for a name it carries (too long, no room), with the refusal's
    /// status and words.
    pub(super) fn refuse_name(&mut self, key: usize, r: Refusal) {
        let (status, reason) = r.status();
        let body = format!("{}\n", r.message());
        self.http_fail(key, status, reason, body.as_bytes());
    }

    /// Answers with an error and closes after it: the rest of the input cannot be trusted
    /// to start a request.
    pub(super) fn http_fail(&mut self, key: usize, status: u16, reason: &str, body: &[u8]) {
        self.counters.http_errors += 1;
        let mut out = Vec::new();
        response_with(&mut out, status, reason, "text/plain", &[], body, false);
        let conn = &mut self.conns[key];
        conn.out.reply(&out);
        conn.life = Life::CloseAfterFlush;
        self.mark_urgent(key);
    }

    /// Queues a complete answer; closes after it unless `keep_alive`.
    fn http_answer(&mut self, key: usize, a: Answer<'_>, keep_alive: bool, head_only: bool) {
        if a.status >= 400 {
            self.counters.http_errors += 1;
        }
        let mut out = Vec::new();
        if head_only {
            response_head_with(
                &mut out,
                a.status,
                a.reason,
                a.content_type,
                a.extra,
                a.body.len(),
                keep_alive,
            );
        } else {
            response_with(
                &mut out,
                a.status,
                a.reason,
                a.content_type,
                a.extra,
                &a.body,
                keep_alive,
            );
        }
        self.http_reply(key, &out, keep_alive);
    }

    /// Queues response bytes and restarts the head deadline for the next request.
    fn http_reply(&mut self, key: usize, bytes: &[u8], keep_alive: bool) {
        let deadline = self.now_ns + self.cfg.http.head_timeout_ms * 1_000_000;
        let conn = &mut self.conns[key];
        conn.out.reply(bytes);
        if !keep_alive {
            conn.life = Life::CloseAfterFlush;
        }
        if let Session::Http(s) = &mut conn.session {
            s.head_deadline_ns = deadline;
        }
        self.mark_urgent(key);
    }

    /// Routes one request.
    fn http_request(&mut self, key: usize, head: RequestHead) {
        let method = head.method.as_str();
        let framing = body_framing(&head, &self.http_limits());
        // Only `POST /pub` reads a body; any other request that has one is answered and the
        // connection closed, so the body is never mistaken for the next request.
        let has_body = !matches!(framing, Ok(BodyFraming::Empty) | Ok(BodyFraming::Length(0)));
        let keep_alive = head.keep_alive && !has_body;
        let (get, head_only) = match method {
            "GET" => (true, false),
            "HEAD" => (true, true),
            _ => (false, false),
        };
        // An expectation we cannot meet is refused before anything else (417); the body a
        // client may send anyway after it is never read, since the connection closes.
        if let Err(e) = expects_continue(&head) {
            let body = format!("{e}\n");
            return self.http_fail(key, e.status(), e.reason(), body.as_bytes());
        }
        let dashboard_extra = [dashboard_csp(), "X-Frame-Options: DENY"];
        let answer = match head.path.as_str() {
            "/pub" if method == "POST" => return self.http_publish(key, &head),
            "/ws" if method == "GET" => return self.ws_upgrade(key, &head, false),
            "/ws/echo" if method == "GET" && self.cfg.ws.echo => {
                return self.ws_upgrade(key, &head, true)
            }
            "/sse" if method == "GET" => return self.sse_start(key, &head),
            "/healthz" if get => Answer::text(200, "OK", "ok\n"),
            // A person who opens the HTTP port in a browser lands on the dashboard. The
            // location is relative, so it also works behind a proxy's path prefix.
            "/" if get => Answer {
                extra: &["Location: dashboard"],
                ..Answer::text(302, "Found", ROOT_PAGE)
            },
            // Every answer carries `Cache-Control: no-store` and `X-Content-Type-Options:
            // nosniff` (see `response_with`); the page adds its policy and refuses frames
            // (`X-Frame-Options` for browsers that predate `frame-ancestors`).
            "/dashboard" if get => Answer {
                status: 200,
                reason: "OK",
                content_type: "text/html; charset=utf-8",
                extra: &dashboard_extra,
                body: Bytes::from_static(DASHBOARD),
            },
            "/stats" if get => Answer {
                status: 200,
                reason: "OK",
                content_type: "application/json",
                extra: &[],
                body: self.stats_body(StatsFormat::Json),
            },
            "/metrics" if get => Answer {
                status: 200,
                reason: "OK",
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                extra: &[],
                body: self.stats_body(StatsFormat::Prometheus),
            },
            "/pub" => Answer {
                extra: &["Allow: POST"],
                ..Answer::text(405, "Method Not Allowed", "method not allowed\n")
            },
            "/ws" | "/sse" => Answer {
                extra: &["Allow: GET"],
                ..Answer::text(405, "Method Not Allowed", "method not allowed\n")
            },
            "/ws/echo" if self.cfg.ws.echo => Answer {
                extra: &["Allow: GET"],
                ..Answer::text(405, "Method Not Allowed", "method not allowed\n")
            },
            "/" | "/healthz" | "/stats" | "/metrics" | "/dashboard" => Answer {
                extra: &["Allow: GET, HEAD"],
                ..Answer::text(405, "Method Not Allowed", "method not allowed\n")
            },
            _ => Answer::text(404, "Not Found", "not found\n"),
        };
        self.http_answer(key, answer, keep_alive, head_only);
    }

    /// `POST /pub?ch=NAME`: reads the body (see `http_body`), then publishes it.
    fn http_publish(&mut self, key: usize, head: &RequestHead) {
        // A page of another site may post here from a visitor's browser (a `text/plain`
        // form or fetch needs no preflight): with an allow-list, its Origin gives it away.
        if !self.origin_allowed(head) {
            return self.refuse_origin(key);
        }
        let channel = corecast_proto::http::query_params(&head.query)
            .find(|(k, _)| k.as_ref() == b"ch")
            .map(|(_, v)| v.into_owned());
        let channel = match channel {
            Some(c) if !c.is_empty() => c,
            _ => {
                return self.http_fail(
                    key,
                    400,
                    "Bad Request",
                    b"POST /pub needs a channel: /pub?ch=NAME\n",
                )
            }
        };
        if let Err(r) = self.check_channel_name(&channel) {
            return self.refuse_name(key, r);
        }
        let framing = match body_framing(head, &self.http_limits()) {
            Ok(f) => f,
            Err(e) => {
                let body = format!("{e}\n");
                return self.http_fail(key, e.status(), e.reason(), body.as_bytes());
            }
        };
        // The body is wanted (its channel is valid and its announced length fits), so a
        // client waiting on `Expect: 100-continue` is told to send it now instead of after
        // its own timeout (curl waits 1 s). A refusal above went out as the final answer
        // with no 100 first (RFC 9110 10.1.1), and a body that is already here makes the 100
        // harmless (clients skip 1xx answers).
        let has_body = !matches!(framing, BodyFraming::Empty | BodyFraming::Length(0));
        if has_body && expects_continue(head) == Ok(true) {
            self.conns[key].out.reply(CONTINUE);
            self.mark_urgent(key);
        }
        let json = head.header("content-type").is_some_and(is_json_type);
        let pending = PendingBody {
            decoder: BodyDecoder::new(framing, self.cfg.http.max_body_bytes),
            body: Vec::new(),
            channel: Name::from(channel),
            json,
            keep_alive: head.keep_alive,
        };
        if let Session::Http(s) = &mut self.conns[key].session {
            s.body = Some(Box::new(pending));
        }
    }

    /// Feeds body bytes of a `POST /pub`; publishes once the body is complete. Returns the
    /// bytes used and whether the body is done (the next request may start).
    fn http_body(&mut self, key: usize, data: &[u8]) -> (usize, bool) {
        let Session::Http(s) = &mut self.conns[key].session else {
            return (0, false);
        };
        let Some(p) = s.body.as_mut() else {
            return (0, true);
        };
        let (used, done) = match p.decoder.decode(data, &mut p.body) {
            Ok(r) => r,
            Err(e) => {
                s.body = None;
                let body = format!("{e}\n");
                self.http_fail(key, e.status(), e.reason(), body.as_bytes());
                return (data.len(), true);
            }
        };
        if !done {
            return (used, false);
        }
        let Some(p) = s.body.take() else {
            return (used, true);
        };
        let p = *p;
        if p.json && !corecast_proto::json::is_valid(&p.body) {
            self.http_fail(
                key,
                400,
                "Bad Request",
                b"the body is declared JSON but is not valid JSON\n",
            );
            return (used, true);
        }
        let msg = MessageView {
            ns: Ns::Plain,
            channel: &p.channel,
            seq: 0,
            epoch: 0,
            payload: &p.body,
            ts_ns: corecast_runtime::clock::now_ns(),
            json: p.json,
        };
        let tag = Some(Box::from([u8::from(p.keep_alive)]));
        match self.publish(key, msg, tag) {
            Some((receivers, pos)) => {
                let out = publish_response(receivers, pos, p.keep_alive);
                self.http_reply(key, &out, p.keep_alive);
            }
            None => {
                // The answer fills a held slot when the owner replies.
                let deadline = self.now_ns + self.cfg.http.head_timeout_ms * 1_000_000;
                let conn = &mut self.conns[key];
                if !p.keep_alive {
                    conn.life = Life::CloseAfterFlush;
                }
                if let Session::Http(s) = &mut conn.session {
                    s.head_deadline_ns = deadline;
                }
            }
        }
        (used, true)
    }

    /// Whether the request may use a front-end (WebSocket, SSE, `POST /pub`) under
    /// `allowed_origins`: any request when the list is empty; else one whose `Origin` is
    /// on the list, or one with no `Origin` at all. Browsers always send `Origin` on a
    /// WebSocket handshake and on cross-origin fetches, EventSource and form posts, so a
    /// request without one comes from a non-browser client (a service, curl), which no
    /// other site's page can drive; refusing it would only break those clients.
    pub(super) fn origin_allowed(&self, head: &RequestHead) -> bool {
        let allowed = &self.cfg.allowed_origins;
        if allowed.is_empty() {
            return true;
        }
        let Some(origin) = head.header("origin") else {
            return true;
        };
        let origin = String::from_utf8_lossy(origin);
        allowed
            .iter()
            .any(|a| a.eq_ignore_ascii_case(origin.trim()))
    }

    /// Refuses a request whose `Origin` is not in `allowed_origins`: 403 with the reason,
    /// then close (counted in `origin_refusals` and `http_errors`).
    pub(super) fn refuse_origin(&mut self, key: usize) {
        self.counters.origin_refusals += 1;
        self.http_fail(
            key,
            403,
            "Forbidden",
            b"origin not allowed: this page's Origin is not in the broker's allowed_origins\n",
        );
    }

    /// Whether one more long-lived connection (WebSocket, SSE) fits under
    /// `max_connections`: HTTP requests may use a small reserve above it so operators can
    /// always read `/stats`, and an upgrade must not keep that reserve.
    pub(super) fn upgrade_fits(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.shared.connections.load(Ordering::Relaxed) <= self.cfg.max_connections
    }

    /// Refuses an upgrade the connection limit does not allow.
    pub(super) fn refuse_full(&mut self, key: usize) {
        self.counters.rejected_connections += 1;
        self.http_fail(
            key,
            503,
            "Service Unavailable",
            b"max number of clients reached\n",
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_policy_allows_exactly_its_inline_script() {
        let page = b"<html><script>let a = 1;</script><p>x</p><script>b()</script></html>";
        let csp = csp_for(page);
        // echo -n 'let a = 1;' | openssl dgst -sha256 -binary | base64, and so for `b()`.
        assert!(
            csp.contains(
                "script-src 'sha256-xY6QKfH9PRsQnLz56nj6MBwiK5oHg+im1Jkpdp1x/Ck=' \
                 'sha256-cf242PFc/kb7xD0Qzhsmd9vvRkc+cWFmbi+k+YvtdKc=';"
            ),
            "{csp}"
        );
        assert_eq!(
            csp_for(b"<p>no script</p>")
                .matches("script-src 'none';")
                .count(),
            1
        );
        let real = dashboard_csp();
        assert!(real.starts_with("Content-Security-Policy: default-src 'none'; "));
        for directive in [
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "style-src 'unsafe-inline'",
            "img-src data:",
        ] {
            assert!(real.contains(directive), "{real}");
        }
        // The page has one inline script, hence one hash; no CR or LF may split the header.
        assert_eq!(real.matches("'sha256-").count(), 1, "{real}");
        assert!(!real.contains(['\r', '\n']));
    }

    #[test]
    fn json_content_types() {
        assert!(is_json_type(b"application/json"));
        assert!(is_json_type(b"Application/JSON; charset=utf-8"));
        assert!(is_json_type(b"application/cloudevents+json"));
        assert!(!is_json_type(b"text/plain"));
        assert!(!is_json_type(b"application/jsonx"));
        assert!(!is_json_type(b""));
    }
}
