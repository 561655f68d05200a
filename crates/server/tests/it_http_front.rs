//! The HTTP front-end facing bad and unusual input: oversized heads, garbage, slowloris,
//! short and oversized bodies, ambiguous framing; chunked and text publishes reaching
//! WebSocket and RESP subscribers; pipelining; a WebSocket subscriber that stops reading.
//! After every bad client, the others are still served.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use support::{assert_still_serving, http_get, HttpConn, RespConn, Server, WsClient};

/// Sends `request` on a fresh connection, reads one response, and asserts the server closes
/// the connection after it.
fn answer_then_close(server: &Server, request: &[u8]) -> support::HttpResponse {
    let mut c = HttpConn::connect(server.http);
    let r = c.exchange(request);
    c.expect_closed(Duration::from_secs(5));
    r
}

/// A `POST /pub` request with a `Content-Length` body.
fn post(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut v = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

// ----- oversized and malformed heads -----

#[test]
fn head_over_max_head_bytes_is_431() {
    let mut server = Server::start(2, &["--http-max-head-bytes", "1024"]);
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2000)
    );
    let r = answer_then_close(&server, big.as_bytes());
    assert_eq!(r.status, 431, "{r:?}");
    // Also when the end of the head has not arrived yet.
    let r = answer_then_close(&server, &big.as_bytes()[..1500]);
    assert_eq!(r.status, 431, "{r:?}");
    // Just under the limit is fine.
    let fits = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(900)
    );
    let r = answer_then_close(&server, fits.as_bytes());
    assert_eq!((r.status, r.text()), (200, "ok\n".to_string()), "{r:?}");
    assert_still_serving(&mut server);
}

#[test]
fn more_headers_than_max_headers_is_431() {
    let mut server = Server::start(2, &["--http-max-headers", "8"]);
    let mut req = String::from("GET /healthz HTTP/1.1\r\nHost: t\r\n");
    for i in 0..10 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let r = answer_then_close(&server, req.as_bytes());
    assert_eq!(r.status, 431, "{r:?}");
    // Eight are fine.
    let mut req = String::from("GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    for i in 0..6 {
        req.push_str(&format!("X-H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let r = answer_then_close(&server, req.as_bytes());
    assert_eq!(r.status, 200, "{r:?}");
    assert_still_serving(&mut server);
}

#[test]
fn garbage_is_400() {
    let mut server = Server::start(2, &[]);
    for garbage in [
        // The start of a TLS ClientHello.
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
        b"\x00\x01\x02\x03 / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nBad Header Name: x\r\n\r\n",
    ] {
        let r = answer_then_close(&server, garbage);
        assert_eq!(r.status, 400, "{garbage:?}: {r:?}");
    }
    let s = server.wait_stats("http_errors", |s| {
        s["total"]["http_errors"].as_u64() >= Some(4)
    });
    assert!(s["total"]["http_requests"].is_u64(), "{s}");
    assert_still_serving(&mut server);
}

#[test]
fn a_bare_lf_in_the_head_is_400_and_nothing_is_published() {
    let mut server = Server::start(2, &[]);
    let mut ws = WsClient::connect(server.http);
    ws.sub("lf", 1);
    let errors_before = server.stats()["total"]["http_errors"].as_u64().unwrap_or(0);
    for bad in [
        &b"GET /healthz HTTP/1.1\nHost: t\r\n\r\n"[..],
        b"GET /healthz HTTP/1.1\r\nHost: t\n\r\n",
        // What a proxy that keeps the LF inside X's value sees as one header without a body,
        // and a lenient parser as a Content-Length and a body: the smuggled publish must
        // not happen.
        b"POST /pub?ch=lf HTTP/1.1\r\nHost: t\r\nX: y\nContent-Length: 5\r\n\r\nhello",
    ] {
        let r = answer_then_close(&server, bad);
        assert_eq!(r.status, 400, "{:?}: {r:?}", String::from_utf8_lossy(bad));
        assert!(r.text().contains("bare LF"), "{r:?}");
    }
    let s = server.wait_stats("http_errors", |s| {
        s["total"]["http_errors"].as_u64() >= Some(errors_before + 3)
    });
    assert_eq!(s["total"]["published"], 0, "{s}");
    assert!(ws.frame_within(Duration::from_millis(200)).is_none());
    assert_still_serving(&mut server);
}

#[test]
fn http_1_1_without_host_is_400_and_http_1_0_without_host_is_served() {
    let mut server = Server::start(2, &[]);
    let errors_before = server.stats()["total"]["http_errors"].as_u64().unwrap_or(0);
    for bad in [
        &b"GET /healthz HTTP/1.1\r\n\r\n"[..],
        b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST /pub?ch=h HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
    ] {
        let r = answer_then_close(&server, bad);
        assert_eq!(r.status, 400, "{:?}: {r:?}", String::from_utf8_lossy(bad));
        assert!(r.text().contains("Host"), "{r:?}");
    }
    let s = server.wait_stats("http_errors", |s| {
        s["total"]["http_errors"].as_u64() >= Some(errors_before + 4)
    });
    assert_eq!(s["total"]["published"], 0, "{s}");
    // HTTP/1.0 needs no Host.
    let r = answer_then_close(&server, b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!((r.status, r.text()), (200, "ok\n".to_string()), "{r:?}");
    let mut c = HttpConn::connect(server.http);
    let r = c.exchange(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(r.status, 200, "{r:?}");
    assert_still_serving(&mut server);
}

#[test]
fn every_answer_says_nosniff() {
    let server = Server::start(1, &[]);
    let mut c = HttpConn::connect(server.http);
    for req in [
        &b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        b"GET /stats HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /pub?ch=n HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
    ] {
        let r = c.exchange(req);
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{:?}: {r:?}",
            String::from_utf8_lossy(req)
        );
    }
    // The SSE stream's head and a refused upgrade too.
    let mut sse = HttpConn::connect(server.http);
    assert!(sse.send(b"GET /sse?ch=n HTTP/1.1\r\nHost: t\r\n\r\n"));
    let r = sse.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{r:?}");
    let r = answer_then_close(&server, b"GET /ws HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 426, "{r:?}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{r:?}");
}

// ----- allowed origins -----

/// A `POST /pub?ch=orig` of `body` with the `Origin` line `origin` (if any).
fn post_from(origin: Option<&str>, body: &str) -> Vec<u8> {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    format!(
        "POST /pub?ch=orig HTTP/1.1\r\nHost: t\r\n{origin}Content-Type: text/plain\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `GET /sse?ch=orig` with the `Origin` line `origin` (if any), on a fresh connection.
fn sse_from(server: &Server, origin: Option<&str>) -> (HttpConn, support::HttpResponse) {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let mut c = HttpConn::connect(server.http);
    let r = c.exchange(format!("GET /sse?ch=orig HTTP/1.1\r\nHost: t\r\n{origin}\r\n").as_bytes());
    (c, r)
}

#[test]
fn allowed_origins_apply_to_publish_sse_and_websocket_alike() {
    let mut server = Server::start(2, &["--allowed-origins", "https://app.example"]);
    let mut ws = WsClient::connect(server.http);
    ws.sub("orig", 1);
    let evil = Some("https://evil.example");
    let app = Some("https://APP.example");

    // POST /pub: another site's page (a text/plain post needs no CORS preflight) is
    // refused and nothing is published; the app's page and a service (no Origin) publish.
    let r = answer_then_close(&server, &post_from(evil, "csrf"));
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.text().contains("origin not allowed"), "{r:?}");
    let mut c = HttpConn::connect(server.http);
    let r = c.exchange(&post_from(app, "from-app"));
    assert_eq!(
        (r.status, &r.json()["receivers"]),
        (200, &serde_json::json!(1)),
        "{r:?}"
    );
    let r = c.exchange(&post_from(None, "from-service"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(ws.json()["data"], "from-app");
    assert_eq!(ws.json()["data"], "from-service");

    // SSE: refused with 403 (as WebSocket is), allowed with the app's origin (echoed, with
    // Vary) and without any Origin.
    let (mut c, r) = sse_from(&server, evil);
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.text().contains("origin not allowed"), "{r:?}");
    c.expect_closed(Duration::from_secs(5));
    let (_app_stream, r) = sse_from(&server, app);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://APP.example")
    );
    assert_eq!(r.header("vary"), Some("Origin"));
    let (_plain_stream, r) = sse_from(&server, None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), None, "{r:?}");

    // WebSocket: the same rule.
    let r = answer_then_close(
        &server,
        support::ws_upgrade_request("Origin: https://evil.example\r\n").as_bytes(),
    );
    assert_eq!(r.status, 403, "{r:?}");
    let mut plain = WsClient::upgrade(HttpConn::connect(server.http), "");
    plain.sub("orig", 2);

    let s = server.wait_stats("origin_refusals", |s| {
        s["total"]["origin_refusals"].as_u64() >= Some(3)
    });
    assert_eq!(s["total"]["origin_refusals"], 3, "{s}");
    assert_eq!(s["total"]["published"], 2, "{s}");
    assert!(
        support::http_get(server.http, "/metrics")
            .1
            .contains("corecast_origin_refusals_total{shard=\"0\"}"),
        "no origin_refusals in /metrics"
    );
    assert_still_serving(&mut server);
}

#[test]
fn without_allowed_origins_every_origin_may_publish_and_stream() {
    let server = Server::start(1, &[]);
    let mut c = HttpConn::connect(server.http);
    let r = c.exchange(&post_from(Some("https://anyone.example"), "x"));
    assert_eq!(r.status, 200, "{r:?}");
    let (_s, r) = sse_from(&server, Some("https://anyone.example"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn the_deprecated_ws_allowed_origins_still_applies_everywhere_and_warns() {
    let server = Server::start(1, &["--ws-allowed-origins", "https://app.example"]);
    let r = answer_then_close(&server, &post_from(Some("https://evil.example"), "x"));
    assert_eq!(r.status, 403, "{r:?}");
    let (_s, r) = sse_from(&server, Some("https://app.example"));
    assert_eq!(r.status, 200, "{r:?}");
    let log = server.log();
    assert!(
        log.contains("WARN") && log.contains("--ws-allowed-origins is deprecated"),
        "{log}"
    );
}

// ----- Expect: 100-continue -----

#[test]
fn expect_100_continue_gets_a_100_then_the_body_is_read_and_published() {
    let server = Server::start(2, &[]);
    let mut ws = WsClient::connect(server.http);
    ws.sub("cont", 1);
    let body = vec![b'x'; 2000];
    let mut c = HttpConn::connect(server.http);
    let start = Instant::now();
    assert!(c.send(
        b"POST /pub?ch=cont HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n\
          Content-Length: 2000\r\nExpect: 100-continue\r\n\r\n"
    ));
    // The 100 comes before any body byte is sent, at once (not after a client's timeout).
    let r = c.response();
    assert_eq!(r.status, 100, "{r:?}");
    assert!(r.head.starts_with("HTTP/1.1 100 Continue"), "{r:?}");
    assert!(
        start.elapsed() < Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
    assert!(c.send(&body));
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["receivers"], 1, "{r:?}");
    assert_eq!(ws.json()["data"], "x".repeat(2000));
    // The same connection goes on; a chunked body gets its 100 too.
    assert!(c.send(
        b"POST /pub?ch=cont HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\
          Expect: 100-Continue\r\n\r\n"
    ));
    assert_eq!(c.response().status, 100);
    let r = c.exchange(b"2\r\nhi\r\n0\r\n\r\n");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(ws.json()["data"], "hi");
    // A client that sent its body without waiting gets the 100 and then the answer.
    let mut req = b"POST /pub?ch=cont HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\
                    Expect: 100-continue\r\n\r\nabc"
        .to_vec();
    req.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n");
    assert!(c.send(&req));
    assert_eq!(c.response().status, 100);
    assert_eq!(c.response().status, 200);
    // No body, nothing to continue: the answer alone.
    let r = c.response();
    assert_eq!((r.status, r.text()), (200, "ok\n".to_string()), "{r:?}");
    assert_eq!(ws.json()["data"], "abc");
}

#[test]
fn expect_100_continue_with_a_body_over_the_limit_is_413_without_a_100() {
    let mut server = Server::start(2, &["--http-max-body-bytes", "1024"]);
    let r = answer_then_close(
        &server,
        b"POST /pub?ch=big HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
    );
    assert_eq!(r.status, 413, "{r:?}");
    // Nor for a publish refused for another reason.
    let r = answer_then_close(
        &server,
        b"POST /pub HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert_still_serving(&mut server);
}

#[test]
fn other_expectations_are_417_and_http_1_0_ignores_100_continue() {
    let mut server = Server::start(2, &[]);
    let errors_before = server.stats()["total"]["http_errors"].as_u64().unwrap_or(0);
    for req in [
        &b"POST /pub?ch=e HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nExpect: 200-ok\r\n\r\nhi"[..],
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: 100-continue, x\r\n\r\n",
    ] {
        let r = answer_then_close(&server, req);
        assert_eq!(r.status, 417, "{:?}: {r:?}", String::from_utf8_lossy(req));
        assert!(r.text().contains("100-continue"), "{r:?}");
    }
    server.wait_stats("http_errors", |s| {
        s["total"]["http_errors"].as_u64() >= Some(errors_before + 2)
    });
    assert_eq!(server.stats()["total"]["published"], 0);
    // HTTP/1.0 cannot read a 1xx: its 100-continue is ignored (RFC 9110 10.1.1).
    let r = answer_then_close(
        &server,
        b"POST /pub?ch=e HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_still_serving(&mut server);
}

#[test]
fn curl_posts_a_body_with_expect_without_waiting_for_its_timeout() {
    support::require("curl", "curl", &["--version"]);
    let server = Server::start(2, &[]);
    let mut ws = WsClient::connect(server.http);
    ws.sub("curl", 1);
    let path = std::env::temp_dir().join(format!("corecast-curl-{}.txt", std::process::id()));
    std::fs::write(&path, "y".repeat(4096)).unwrap();
    let start = Instant::now();
    // curl sends `Expect: 100-continue` by itself for bodies over 1 KiB (curl 7.x); the
    // header is given explicitly so newer versions, which send it only for larger bodies,
    // behave the same. Without a 100, curl waits --expect100-timeout (3 s here) first.
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-v",
            "--expect100-timeout",
            "3",
            "-H",
            "Expect: 100-continue",
        ])
        .args(["-H", "Content-Type: text/plain", "--data-binary"])
        .arg(format!("@{}", path.display()))
        .arg(format!("http://{}/pub?ch=curl", server.http))
        .output()
        .expect("run curl");
    let elapsed = start.elapsed();
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "curl failed: {stderr}");
    assert!(stderr.contains("< HTTP/1.1 100 Continue"), "{stderr}");
    assert!(
        elapsed < Duration::from_secs(2),
        "curl took {elapsed:?}: {stderr}"
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON answer");
    assert_eq!(answer["receivers"], 1, "{answer}");
    assert_eq!(ws.json()["data"], "y".repeat(4096));
}

// ----- slow and short clients -----

#[test]
fn slowloris_is_closed_by_the_head_timeout_while_others_are_served() {
    let mut server = Server::start(2, &["--http-head-timeout-ms", "500"]);
    let start = Instant::now();
    let mut slow = TcpStream::connect(server.http).unwrap();
    slow.set_nodelay(true).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        .unwrap();
    let mut served_meanwhile = false;
    let closed_after = loop {
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "the slowloris client is still connected after 4 s"
        );
        // One header byte every 100 ms (the read below waits that long).
        if slow.write_all(b"a").is_err() {
            break start.elapsed();
        }
        let mut b = [0u8; 256];
        match std::io::Read::read(&mut slow, &mut b) {
            Ok(0) => break start.elapsed(),
            Ok(n) => panic!(
                "the slowloris client got an answer: {:?}",
                String::from_utf8_lossy(&b[..n])
            ),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break start.elapsed(),
            Err(_) => {}
        }
        if !served_meanwhile && start.elapsed() > Duration::from_millis(300) {
            // A normal client on the same server is served during the attack.
            assert_eq!(http_get(server.http, "/healthz"), (200, "ok\n".to_string()));
            served_meanwhile = true;
        }
    };
    assert!(served_meanwhile);
    assert!(
        closed_after >= Duration::from_millis(450) && closed_after < Duration::from_millis(2500),
        "closed after {closed_after:?}"
    );
    server.wait_stats("head_timeouts", |s| {
        s["total"]["head_timeouts"].as_u64() >= Some(1)
    });
    assert_still_serving(&mut server);
}

#[test]
fn body_shorter_than_content_length_gets_no_answer_then_the_head_timeout() {
    let mut server = Server::start(2, &["--http-head-timeout-ms", "500"]);
    let start = Instant::now();
    let mut c = HttpConn::connect(server.http);
    assert!(c.send(
        b"POST /pub?ch=short HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nonly this"
    ));
    // Nothing is answered (nor published); the connection is closed by the sweep.
    c.expect_closed(Duration::from_secs(3));
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_millis(2500),
        "closed after {elapsed:?}"
    );
    let s = server.wait_stats("head_timeouts", |s| {
        s["total"]["head_timeouts"].as_u64() >= Some(1)
    });
    assert_eq!(s["total"]["published"], 0, "{s}");
    assert_still_serving(&mut server);
}

#[test]
fn content_length_over_max_body_bytes_is_413() {
    let mut server = Server::start(2, &["--http-max-body-bytes", "1024"]);
    // Refused from the head: the body is never sent.
    let r = answer_then_close(
        &server,
        b"POST /pub?ch=big HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n",
    );
    assert_eq!(r.status, 413, "{r:?}");
    // A chunked body that grows over the limit.
    let mut req =
        b"POST /pub?ch=big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        req.extend_from_slice(b"200\r\n");
        req.extend_from_slice(&[b'x'; 0x200]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = answer_then_close(&server, &req);
    assert_eq!(r.status, 413, "{r:?}");
    // At the limit is fine.
    let mut c = HttpConn::connect(server.http);
    let r = c.exchange(&post("/pub?ch=big", "text/plain", &[b'x'; 1024]));
    assert_eq!(r.status, 200, "{r:?}");
    assert_still_serving(&mut server);
}

// ----- publishing -----

#[test]
fn chunked_publish_reaches_a_websocket_subscriber_as_json() {
    let server = Server::start(2, &[]);
    let mut ws = WsClient::connect(server.http);
    ws.sub("chunked", 1);
    let mut c = HttpConn::connect(server.http);
    let r = c.exchange(
        b"POST /pub?ch=chunked HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
          Transfer-Encoding: chunked\r\n\r\n\
          5;name=value\r\n{\"a\":\r\n\
          4\r\n [1,\r\n\
          A;x=\"q\"\r\n 2], \"b\": \r\n\
          5\r\n\"\xc3\xa9\"}\r\n\
          0\r\nX-Trailer: yes\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{r:?}"
    );
    let answer = r.json();
    assert!(answer["epoch"].is_string(), "{answer}");
    assert!(answer["seq"].is_u64(), "{answer}");
    assert_eq!(answer["receivers"], 1, "{answer}");
    let d = ws.json();
    assert_eq!(d["ch"], "chunked", "{d}");
    assert_eq!(d["seq"], answer["seq"], "{d}");
    assert_eq!(d["data"], serde_json::json!({"a": [1, 2], "b": "é"}), "{d}");
    // The connection is kept alive after a chunked body with a trailer.
    let r = c.exchange(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.text()), (200, "ok\n".to_string()));
}

#[test]
fn text_publish_is_a_json_string_on_websocket_and_raw_bytes_on_resp() {
    let server = Server::start(2, &[]);
    let mut ws = WsClient::connect(server.http);
    ws.sub("text", 1);
    let mut resp = RespConn::connect(server.resp);
    resp.cmd(&[b"SUBSCRIBE", b"text"]);
    resp.read_replies(1);
    let body = b"say \"hi\"\n{not json\xff";
    let mut c = HttpConn::connect(server.http);
    let r = c.exchange(&post("/pub?ch=text", "text/plain; charset=utf-8", body));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["receivers"], 2, "{r:?}");
    let d = ws.json();
    assert_eq!(d["data"], "say \"hi\"\n{not json\u{fffd}", "{d}");
    let mut want = b"*3\r\n$7\r\nmessage\r\n$4\r\ntext\r\n$19\r\n".to_vec();
    want.extend_from_slice(body);
    want.extend_from_slice(b"\r\n");
    assert_eq!(resp.read_replies(1), want);
    // Any type that is not JSON makes a string, even of a body that parses as JSON.
    let r = c.exchange(&post("/pub?ch=text", "application/octet-stream", b"[1]"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(ws.json()["data"], "[1]");
}

#[test]
fn publish_without_a_channel_is_400() {
    let mut server = Server::start(2, &[]);
    for path in ["/pub", "/pub?ch=", "/pub?channel=x"] {
        let r = answer_then_close(&server, &post(path, "application/json", b"{}"));
        assert_eq!(r.status, 400, "{path}: {r:?}");
    }
    assert_still_serving(&mut server);
}

#[test]
fn invalid_json_body_declared_json_is_400() {
    let mut server = Server::start(2, &[]);
    let mut ws = WsClient::connect(server.http);
    ws.sub("j", 1);
    for body in [&b"{\"a\":"[..], b"[1,]", b"", b"{} {}"] {
        let r = answer_then_close(&server, &post("/pub?ch=j", "application/json", body));
        assert_eq!(r.status, 400, "{body:?}: {r:?}");
    }
    // Nothing was delivered: the next delivery is the valid one.
    let r = HttpConn::connect(server.http).exchange(&post(
        "/pub?ch=j",
        "application/cloudevents+json",
        b" {\"ok\":true} ",
    ));
    assert_eq!(r.status, 200, "{r:?}");
    let d = ws.json();
    assert_eq!(d["data"], serde_json::json!({"ok": true}), "{d}");
    assert_still_serving(&mut server);
}

#[test]
fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
    let mut server = Server::start(2, &[]);
    // "/" redirects to the dashboard (the_root_redirects_to_the_dashboard).
    for path in ["/nope", "/pubx", "/ws/x", "/healthz/"] {
        assert_eq!(http_get(server.http, path).0, 404, "{path}");
    }
    let mut c = HttpConn::connect(server.http);
    let r = c.exchange(b"GET /pub?ch=x HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.header("allow"), Some("POST"), "{r:?}");
    let r = c.exchange(b"POST /stats HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 405, "{r:?}");
    let allow = r.header("allow").unwrap_or_default().replace(' ', "");
    assert_eq!(allow, "GET,HEAD", "{r:?}");
    let r = c.exchange(b"DELETE /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 405, "{r:?}");
    c.expect_closed(Duration::from_secs(5));
    assert_still_serving(&mut server);
}

#[test]
fn pipelined_requests_get_their_answers_in_order() {
    let server = Server::start(2, &[]);
    // Subscribers on some of the channels, so each answer's receivers tell which it is.
    let channels = ["p0", "p1", "p2", "p3", "p4", "p5"];
    let mut subs = Vec::new();
    for (i, ch) in channels.iter().enumerate() {
        if i % 2 == 1 {
            let mut ws = WsClient::connect(server.http);
            ws.sub(ch, 1);
            subs.push(ws);
        }
    }
    let mut c = HttpConn::connect(server.http);
    let mut batch = Vec::new();
    for ch in channels {
        batch.extend(post(
            &format!("/pub?ch={ch}"),
            "application/json",
            b"{\"n\":1}",
        ));
    }
    batch.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(c.send(&batch));
    for (i, ch) in channels.iter().enumerate() {
        let r = c.response();
        assert_eq!(r.status, 200, "{ch}: {r:?}");
        assert_eq!(r.json()["receivers"], (i % 2) as u64, "{ch}: {r:?}");
    }
    let r = c.response();
    assert_eq!((r.status, r.text()), (200, "ok\n".to_string()), "{r:?}");
    // Still the same keep-alive connection.
    let r = c.exchange(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(r.status, 200, "{r:?}");
    c.expect_closed(Duration::from_secs(5));
    for ws in &mut subs {
        assert_eq!(ws.json()["data"], serde_json::json!({"n": 1}));
    }
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    let mut server = Server::start(2, &[]);
    let r = answer_then_close(
        &server,
        b"POST /pub?ch=x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 400, "{r:?}");
    let s = server.stats();
    assert_eq!(s["total"]["published"], 0, "{s}");
    assert_still_serving(&mut server);
}

// ----- a WebSocket subscriber that stops reading -----

const BIG: usize = 64 * 1024;

#[test]
fn a_websocket_subscriber_that_never_reads_is_disconnected_while_a_reader_gets_all() {
    let server = Server::start(
        2,
        &[
            "--max-pending-bytes",
            "262144",
            // max-pending-bytes must exceed it.
            "--max-bulk-len",
            "131072",
            "--slow-consumer",
            "disconnect",
        ],
    );
    // The stalled one: a small receive buffer, subscribes, then never reads again.
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.http.into()).unwrap();
    let mut stalled = WsClient::upgrade(HttpConn::from(TcpStream::from(sock)), "");
    stalled.sub("feed", 1);

    // The reader checks every message, in order, until the end marker.
    let progress = Arc::new(AtomicUsize::new(0));
    let mut reader_ws = WsClient::connect(server.http);
    reader_ws.sub("feed", 1);
    let reader = {
        let progress = progress.clone();
        thread::spawn(move || {
            let mut i = 0;
            loop {
                let f = reader_ws.frame();
                assert_eq!(f.opcode, 1, "{f:?}");
                let p = &f.payload;
                if p.ends_with(b"\"data\":\"end\"}") {
                    return (i, reader_ws);
                }
                let want = format!("\"data\":\"{i:08}");
                let at = p.windows(7).position(|w| w == b"\"data\":").unwrap();
                assert_eq!(
                    &p[at..at + want.len()],
                    want.as_bytes(),
                    "message {i} out of order or lost"
                );
                assert_eq!(p.len() - at, 7 + BIG + 3, "message {i} truncated");
                i += 1;
                progress.store(i, Ordering::Release);
            }
        })
    };

    let start = Instant::now();
    let mut publ = RespConn::connect(server.resp);
    let mut sent = 0;
    let mut payload = vec![b'x'; BIG];
    loop {
        // Keep at most two messages ahead of the reader, far under max-pending-bytes.
        while progress.load(Ordering::Acquire) + 2 < sent {
            assert!(
                start.elapsed() < Duration::from_secs(8),
                "the reader stopped at {} of {sent}",
                progress.load(Ordering::Acquire)
            );
            thread::yield_now();
        }
        payload[..8].copy_from_slice(format!("{sent:08}").as_bytes());
        publ.cmd(&[b"PUBLISH", b"feed", &payload]);
        publ.read_replies(1);
        sent += 1;
        if sent % 16 == 0
            && server.stats()["total"]["slow_consumer_disconnects"].as_u64() >= Some(1)
        {
            break;
        }
        assert!(
            sent < 2000 && start.elapsed() < Duration::from_secs(8),
            "no slow-consumer disconnect after {sent} messages of {BIG} bytes: {}",
            server.stats()
        );
    }
    publ.cmd(&[b"PUBLISH", b"feed", b"end"]);
    publ.read_replies(1);
    let (received, _reader_ws) = reader.join().unwrap();
    assert_eq!(received, sent, "the reader lost messages");
    // Each shard serves /stats from a body it may have rendered up to 20 ms ago, so a read
    // after the one that saw the disconnect can land on a shard with an older body.
    let s = server.wait_stats("the slow-consumer disconnect", |s| {
        s["total"]["slow_consumer_disconnects"].as_u64() >= Some(1)
    });
    assert_eq!(s["total"]["slow_consumer_disconnects"], 1, "{s}");
    // The stalled subscriber is gone (its owner learns it soon): one receiver left.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        publ.cmd(&[b"PUBLISH", b"feed", b"after"]);
        let got = publ.read_replies(1);
        if got == b":1\r\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled subscriber still counts: PUBLISH answers {:?}; stats {}",
            String::from_utf8_lossy(&got),
            server.stats()
        );
        thread::sleep(Duration::from_millis(20));
    }
    drop(stalled);
}

/// A person opening the HTTP port in a browser lands on the dashboard (a relative redirect,
/// so a proxy's path prefix is kept); a client that does not follow it reads where things are.
#[test]
fn the_root_redirects_to_the_dashboard() {
    let server = Server::start(1, &[]);
    let mut c = HttpConn::connect(server.http);
    let r = c.exchange(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(r.header("location"), Some("dashboard"));
    assert!(r.text().contains("/dashboard"), "{}", r.text());
    let r = c.exchange(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    // The page it points to.
    let (status, body) = http_get(server.http, "/dashboard");
    assert_eq!(status, 200);
    assert!(body.contains("<html"), "the dashboard page");
}
