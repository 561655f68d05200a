//! WebSocket framing over a real socket, one test per RFC 6455 rule: each broken rule gets
//! the exact close code, then the TCP connection closes, and the server keeps serving
//! everyone else. Also the opening handshake, server pings, and native-protocol errors (which
//! keep the connection open).

mod support;

use std::thread;
use std::time::{Duration, Instant};

use corecast_proto::ws::{client_frame, opcode};
use support::{
    assert_still_serving, http_get, ws_upgrade_request, HttpConn, RespConn, Server, WsClient,
    WS_ACCEPT, WS_KEY, WS_MASK,
};

const PROTOCOL_ERROR: u16 = 1002;
const INVALID_PAYLOAD: u16 = 1007;
const TOO_BIG: u16 = 1009;
const POLICY: u16 = 1008;

/// One masked client frame.
fn cf(op: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    client_frame(&mut out, op, fin, WS_MASK, payload);
    out
}

/// Several frames in one buffer, sent with one write.
fn frames(list: &[(u8, bool, &[u8])]) -> Vec<u8> {
    list.iter()
        .flat_map(|&(op, fin, p)| cf(op, fin, p))
        .collect()
}

/// Opens a WebSocket, sends `bytes` in one write, and asserts that the server answers with
/// nothing but a close frame with `code`, closes the TCP connection, and still serves other
/// clients. Returns the close reason.
fn closes_with(server: &mut Server, bytes: &[u8], code: u16) -> String {
    let mut ws = WsClient::connect(server.http);
    // The server may close as soon as it sees the error, so a failed write is fine.
    ws.send_raw(bytes);
    let (before, reason) = ws.expect_close(code);
    assert!(before.is_empty(), "frames before the close: {before:?}");
    assert_still_serving(server);
    reason
}

/// Waits until /stats counts at least `n` WebSocket protocol errors.
fn wait_protocol_errors(server: &Server, n: u64) {
    server.wait_stats("ws_protocol_errors", |s| {
        s["total"]["ws_protocol_errors"].as_u64() >= Some(n)
    });
}

// ----- RFC 6455 5.1-5.5: framing rules -----

#[test]
fn unmasked_client_frame_closes_1002() {
    let mut server = Server::start(2, &[]);
    // A text frame "hi" without the mask bit.
    let reason = closes_with(&mut server, &[0x81, 0x02, b'h', b'i'], PROTOCOL_ERROR);
    assert!(reason.contains("unmasked"), "{reason}");
    wait_protocol_errors(&server, 1);
}

#[test]
fn reserved_bits_close_1002() {
    let mut server = Server::start(2, &[]);
    for bit in [0x40, 0x20, 0x10] {
        let mut f = cf(opcode::TEXT, true, br#"{"op":"ping"}"#);
        f[0] |= bit;
        closes_with(&mut server, &f, PROTOCOL_ERROR);
    }
    wait_protocol_errors(&server, 3);
}

#[test]
fn reserved_opcodes_close_1002() {
    let mut server = Server::start(2, &[]);
    for op in [0x3, 0xB] {
        closes_with(&mut server, &cf(op, true, b"x"), PROTOCOL_ERROR);
    }
    wait_protocol_errors(&server, 2);
}

#[test]
fn control_frame_over_125_bytes_closes_1002() {
    let mut server = Server::start(2, &[]);
    for op in [opcode::PING, opcode::PONG] {
        closes_with(&mut server, &cf(op, true, &[b'p'; 126]), PROTOCOL_ERROR);
    }
}

#[test]
fn fragmented_control_frame_closes_1002() {
    let mut server = Server::start(2, &[]);
    // A ping without FIN (and its would-be continuation).
    let bytes = frames(&[
        (opcode::PING, false, b"pi"),
        (opcode::CONTINUATION, true, b"ng"),
    ]);
    closes_with(&mut server, &bytes, PROTOCOL_ERROR);
}

#[test]
fn continuation_without_a_started_message_closes_1002() {
    let mut server = Server::start(2, &[]);
    closes_with(
        &mut server,
        &cf(opcode::CONTINUATION, true, br#"{"op":"ping"}"#),
        PROTOCOL_ERROR,
    );
    // Also right after a complete message: its answer comes first, then the close.
    let mut ws = WsClient::connect(server.http);
    ws.send_raw(&frames(&[
        (opcode::TEXT, true, br#"{"op":"ping","id":1}"#),
        (opcode::CONTINUATION, true, b"x"),
    ]));
    let (before, _) = ws.expect_close(PROTOCOL_ERROR);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0].payload, br#"{"op":"pong","id":1}"#);
    assert_still_serving(&mut server);
}

#[test]
fn new_text_frame_inside_a_fragmented_message_closes_1002() {
    let mut server = Server::start(2, &[]);
    let bytes = frames(&[
        (opcode::TEXT, false, br#"{"op":"sub","#),
        (opcode::TEXT, true, br#"{"op":"ping"}"#),
    ]);
    closes_with(&mut server, &bytes, PROTOCOL_ERROR);
    let bytes = frames(&[
        (opcode::TEXT, false, br#"{"op":"sub","#),
        (opcode::BINARY, true, b"\x00"),
    ]);
    closes_with(&mut server, &bytes, PROTOCOL_ERROR);
}

// ----- UTF-8 -----

#[test]
fn invalid_utf8_in_a_text_message_closes_1007() {
    let mut server = Server::start(2, &[]);
    closes_with(
        &mut server,
        &cf(opcode::TEXT, true, b"{\"op\":\"sub\",\"ch\":\"\xff\"}"),
        INVALID_PAYLOAD,
    );
    // A code point cut short at the end of a single-frame message.
    closes_with(
        &mut server,
        &cf(opcode::TEXT, true, b"{\"op\":\"ping\"}\xe2\x82"),
        INVALID_PAYLOAD,
    );
    wait_protocol_errors(&server, 2);
}

#[test]
fn invalid_utf8_inside_a_frame_still_arriving_closes_1007_at_once() {
    // Autobahn 6.4.3: the first part of one text frame carries the invalid bytes; the close
    // must come before the rest of the frame is sent.
    let mut server = Server::start(1, &[]);
    let mut payload = "κόσμε".as_bytes().to_vec();
    payload.extend_from_slice(b"\xf4\x90\x80\x80");
    payload.extend(std::iter::repeat_n(b'e', 1000));
    let f = cf(opcode::TEXT, true, &payload);
    let mut ws = WsClient::connect(server.http);
    assert!(ws.send_raw(&f[..30]));
    let (before, _) = ws.expect_close(INVALID_PAYLOAD);
    assert!(before.is_empty(), "{before:?}");
    assert_still_serving(&mut server);
}

#[test]
fn invalid_utf8_split_across_fragments_closes_1007() {
    let mut server = Server::start(2, &[]);
    // A surrogate (ED A0 80): the lead byte alone is a fine prefix; the next fragment
    // makes it invalid.
    let bytes = frames(&[
        (opcode::TEXT, false, b"{\"op\":\"sub\",\"ch\":\"a\xed"),
        (opcode::CONTINUATION, true, b"\xa0\x80\"}"),
    ]);
    closes_with(&mut server, &bytes, INVALID_PAYLOAD);
    // A two-byte sequence whose second byte, in the next fragment, is not a continuation.
    let bytes = frames(&[
        (opcode::TEXT, false, b"{\"op\":\"sub\",\"ch\":\"caf\xc3"),
        (opcode::CONTINUATION, true, b"(\"}"),
    ]);
    closes_with(&mut server, &bytes, INVALID_PAYLOAD);
    // A sequence still open when the last fragment ends the message.
    let bytes = frames(&[
        (opcode::TEXT, false, b"{\"op\":\"ping\"} \xf0\x9d"),
        (opcode::CONTINUATION, true, b"\x84"),
    ]);
    closes_with(&mut server, &bytes, INVALID_PAYLOAD);
}

#[test]
fn code_point_split_across_fragments_is_accepted() {
    let server = Server::start(2, &[]);
    let mut ws = WsClient::connect(server.http);
    // "é" = C3 A9, split between two fragments.
    let req = r#"{"op":"sub","ch":"café","id":7}"#.as_bytes();
    let cut = req.iter().position(|&b| b == 0xc3).unwrap() + 1;
    ws.send_raw(&frames(&[
        (opcode::TEXT, false, &req[..cut]),
        (opcode::CONTINUATION, true, &req[cut..]),
    ]));
    let ok = ws.json();
    assert_eq!(
        (&ok["op"], &ok["id"], &ok["ch"]),
        (&"ok".into(), &7.into(), &"café".into()),
        "{ok}"
    );
    // "𝄞" = F0 9D 84 9E, each of its bytes after the first in a fragment of its own.
    let req = r#"{"op":"sub","ch":"g𝄞","id":8}"#.as_bytes();
    let at = req.iter().position(|&b| b == 0xf0).unwrap() + 1;
    ws.send_raw(&frames(&[
        (opcode::TEXT, false, &req[..at]),
        (opcode::CONTINUATION, false, &req[at..at + 1]),
        (opcode::CONTINUATION, false, &req[at + 1..at + 2]),
        (opcode::CONTINUATION, true, &req[at + 2..]),
    ]));
    let ok = ws.json();
    assert_eq!(
        (&ok["op"], &ok["id"], &ok["ch"]),
        (&"ok".into(), &8.into(), &"g𝄞".into()),
        "{ok}"
    );
    // The subscription is live: a publish reaches it.
    let mut publ = RespConn::connect(server.resp);
    publ.cmd(&["PUBLISH".as_bytes(), "café".as_bytes(), b"{\"x\":1}"]);
    assert_eq!(publ.read_replies(1), b":1\r\n");
    let d = ws.json();
    assert_eq!(
        (&d["ch"], &d["data"]),
        (&"café".into(), &serde_json::json!({"x": 1})),
        "{d}"
    );
}

// ----- message size -----

#[test]
fn message_over_the_limit_closes_1009() {
    let mut server = Server::start(2, &["--ws-max-message-bytes", "1024"]);
    // Exactly at the limit is fine.
    let head = r#"{"op":"pub","ch":"big","id":1,"data":""#;
    let pad = "x".repeat(1024 - head.len() - 2);
    let exact = format!("{head}{pad}\"}}");
    assert_eq!(exact.len(), 1024);
    let mut ws = WsClient::connect(server.http);
    ws.send_text(&exact);
    let ok = ws.json();
    assert_eq!((&ok["op"], &ok["id"]), (&"ok".into(), &1.into()), "{ok}");
    // One byte over, in one frame.
    let over = format!("{head}{pad}x\"}}");
    let reason = closes_with(
        &mut server,
        &cf(opcode::TEXT, true, over.as_bytes()),
        TOO_BIG,
    );
    assert!(reason.contains("too big"), "{reason}");
    // Refused from the header alone: frames announcing 60000 (16-bit length) and 100000
    // bytes (64-bit length) with none of their payload sent.
    let mut f = cf(opcode::BINARY, true, &[0; 60000]);
    f.truncate(8);
    closes_with(&mut server, &f, TOO_BIG);
    let mut f = vec![0x82, 0x80 | 127];
    f.extend_from_slice(&100_000u64.to_be_bytes());
    f.extend_from_slice(&WS_MASK);
    closes_with(&mut server, &f, TOO_BIG);
    wait_protocol_errors(&server, 3);
}

#[test]
fn fragments_summing_over_the_limit_close_1009() {
    let mut server = Server::start(2, &["--ws-max-message-bytes", "1024"]);
    // Each fragment is under the limit; the second one's header takes the sum over it.
    let bytes = frames(&[
        (opcode::TEXT, false, &[b' '; 600]),
        (opcode::CONTINUATION, false, &[b' '; 600]),
    ]);
    closes_with(&mut server, &bytes, TOO_BIG);
    // Control frames in between do not count (their pong comes first), and the check uses
    // the announced length: the last fragment's payload is never sent.
    let mut ws = WsClient::connect(server.http);
    let mut bytes = frames(&[
        (opcode::TEXT, false, &[b' '; 500]),
        (opcode::PING, true, &[b'p'; 125]),
        (opcode::CONTINUATION, false, &[b' '; 500]),
    ]);
    let mut last = cf(opcode::CONTINUATION, true, &[b' '; 200]);
    last.truncate(8);
    bytes.extend_from_slice(&last);
    ws.send_raw(&bytes);
    let (before, _) = ws.expect_close(TOO_BIG);
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(
        (before[0].opcode, &before[0].payload[..]),
        (opcode::PONG, &[b'p'; 125][..])
    );
    assert_still_serving(&mut server);
}

#[test]
fn endless_empty_continuations_close_1008_and_a_few_are_fine() {
    let mut server = Server::start(2, &[]);
    // An opening empty frame, then empty continuations without end: refused at the 17th
    // empty frame (the default limit is 16), not after the client tires.
    let mut flood = cf(opcode::TEXT, false, b"");
    for _ in 0..10_000 {
        flood.extend(cf(opcode::CONTINUATION, false, b""));
    }
    let reason = closes_with(&mut server, &flood, POLICY);
    assert!(reason.contains("empty fragments"), "{reason}");
    wait_protocol_errors(&server, 1);
    // Sixteen empty frames (the final one holding the request) are a normal message.
    let mut ws = WsClient::connect(server.http);
    let mut ok = cf(opcode::TEXT, false, b"");
    for _ in 0..14 {
        ok.extend(cf(opcode::CONTINUATION, false, b""));
    }
    ok.extend(cf(opcode::CONTINUATION, false, br#"{"op":"ping","id":7}"#));
    ok.extend(cf(opcode::CONTINUATION, true, b""));
    assert!(ws.send_raw(&ok));
    assert_eq!(ws.json(), serde_json::json!({"op": "pong", "id": 7}));
}

#[test]
fn the_empty_fragment_limit_is_an_option() {
    let mut server = Server::start(1, &["--ws-max-empty-fragments", "2"]);
    let three = frames(&[
        (opcode::TEXT, false, b""),
        (opcode::CONTINUATION, false, b""),
        (opcode::CONTINUATION, true, b""),
    ]);
    let _ = closes_with(&mut server, &three, POLICY);
    // The count is per message: two empty frames in each of several messages are fine.
    let mut ws = WsClient::connect(server.http);
    for id in 0..3 {
        let ping = format!(r#"{{"op":"ping","id":{id}}}"#);
        assert!(ws.send_raw(&frames(&[
            (opcode::TEXT, false, b""),
            (opcode::CONTINUATION, false, b""),
            (opcode::CONTINUATION, true, ping.as_bytes()),
        ])));
        assert_eq!(ws.json()["id"], id);
    }
    wait_protocol_errors(&server, 1);
}

// ----- control frames -----

#[test]
fn ping_gets_a_pong_with_the_same_payload() {
    let server = Server::start(1, &[]);
    let mut ws = WsClient::connect(server.http);
    let long: Vec<u8> = (0..125u8).collect();
    for payload in [&b""[..], b"hello", &long] {
        assert!(ws.send_frame(opcode::PING, true, payload));
        let f = ws.frame();
        assert_eq!((f.opcode, f.fin, f.rsv), (opcode::PONG, true, 0), "{f:?}");
        assert_eq!(f.payload, payload);
    }
    // An unsolicited pong is ignored; the connection stays usable.
    assert!(ws.send_frame(opcode::PONG, true, b"heartbeat"));
    ws.sub("after-pings", 2);
}

#[test]
fn ping_between_fragments_gets_its_pong_then_the_ok() {
    let server = Server::start(2, &[]);
    let req = br#"{"op":"sub","ch":"frag","id":3}"#;
    let stream = frames(&[
        (opcode::TEXT, false, &req[..10]),
        (opcode::PING, true, b"p1"),
        (opcode::CONTINUATION, false, &req[10..20]),
        (opcode::PING, true, b"p2"),
        (opcode::CONTINUATION, true, &req[20..]),
    ]);
    // Once in one write, once a byte at a time (partial frames everywhere).
    for bytewise in [false, true] {
        let mut ws = WsClient::connect(server.http);
        if bytewise {
            for b in &stream {
                assert!(ws.send_raw(std::slice::from_ref(b)));
            }
        } else {
            assert!(ws.send_raw(&stream));
        }
        for p in [b"p1", b"p2"] {
            let f = ws.frame();
            assert_eq!((f.opcode, &f.payload[..]), (opcode::PONG, &p[..]), "{f:?}");
        }
        let ok = ws.json();
        assert_eq!(
            (&ok["op"], &ok["id"], &ok["ch"]),
            (&"ok".into(), &3.into(), &"frag".into()),
            "{ok}"
        );
    }
}

#[test]
fn client_close_1000_is_echoed_then_closed() {
    let mut server = Server::start(2, &[]);
    let mut ws = WsClient::connect(server.http);
    ws.sub("leaving", 1);
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    assert!(ws.send_frame(opcode::CLOSE, true, &payload));
    let (before, _) = ws.expect_close(1000);
    assert!(before.is_empty(), "{before:?}");
    // An empty close is answered with 1000 too.
    let mut ws = WsClient::connect(server.http);
    assert!(ws.send_frame(opcode::CLOSE, true, b""));
    ws.expect_close(1000);
    // Another allowed code is echoed.
    closes_with(
        &mut server,
        &cf(opcode::CLOSE, true, &4001u16.to_be_bytes()),
        4001,
    );
    // The subscriber is gone: nobody receives a publish.
    let mut publ = RespConn::connect(server.resp);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        publ.cmd(&[b"PUBLISH", b"leaving", b"x"]);
        if publ.read_replies(1) == b":0\r\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed subscriber still receives"
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert_still_serving(&mut server);
    let s = server.stats();
    assert_eq!(s["total"]["ws_protocol_errors"], 0, "{s}");
}

#[test]
fn close_with_an_invalid_code_closes_1002() {
    let mut server = Server::start(2, &[]);
    for code in [1005u16, 999, 1004, 1006, 1015, 2000] {
        closes_with(
            &mut server,
            &cf(opcode::CLOSE, true, &code.to_be_bytes()),
            PROTOCOL_ERROR,
        );
    }
    // A reason that is not UTF-8 is 1007.
    closes_with(
        &mut server,
        &cf(opcode::CLOSE, true, b"\x03\xe8bye\xff"),
        INVALID_PAYLOAD,
    );
}

#[test]
fn close_with_a_one_byte_payload_closes_1002() {
    let mut server = Server::start(2, &[]);
    closes_with(
        &mut server,
        &cf(opcode::CLOSE, true, b"\x03"),
        PROTOCOL_ERROR,
    );
    wait_protocol_errors(&server, 1);
}

// ----- the opening handshake -----

/// Sends `request`, reads the answer and asserts the server then closes.
fn refused(server: &Server, request: &str) -> support::HttpResponse {
    let mut c = HttpConn::connect(server.http);
    let r = c.exchange(request.as_bytes());
    c.expect_closed(Duration::from_secs(5));
    r
}

#[test]
fn upgrade_without_upgrade_header_is_426() {
    let mut server = Server::start(2, &[]);
    let r = refused(
        &server,
        &format!(
            "GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ),
    );
    assert_eq!(r.status, 426, "{r:?}");
    assert_eq!(r.header("upgrade"), Some("websocket"), "{r:?}");
    assert_eq!(r.header("sec-websocket-version"), Some("13"), "{r:?}");
    assert_still_serving(&mut server);
}

#[test]
fn websocket_version_8_is_426_naming_13() {
    let mut server = Server::start(2, &[]);
    let req =
        ws_upgrade_request("").replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    let r = refused(&server, &req);
    assert_eq!(r.status, 426, "{r:?}");
    assert_eq!(r.header("sec-websocket-version"), Some("13"), "{r:?}");
    assert_still_serving(&mut server);
}

#[test]
fn missing_or_invalid_key_is_400() {
    let mut server = Server::start(2, &[]);
    let good = format!("Sec-WebSocket-Key: {WS_KEY}\r\n");
    for key in [
        "",
        "Sec-WebSocket-Key: abc\r\n",
        // 15 bytes, not 16.
        "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n",
        // 24 characters that are not base64.
        "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n",
    ] {
        let r = refused(&server, &ws_upgrade_request("").replace(&good, key));
        assert_eq!(r.status, 400, "{key:?}: {r:?}");
        assert_eq!(r.header("sec-websocket-accept"), None);
    }
    assert_still_serving(&mut server);
}

#[test]
fn post_ws_is_405() {
    let mut server = Server::start(2, &[]);
    let req = ws_upgrade_request("Content-Length: 0\r\n").replacen("GET", "POST", 1);
    let mut c = HttpConn::connect(server.http);
    let r = c.exchange(req.as_bytes());
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.header("allow"), Some("GET"), "{r:?}");
    assert_eq!(r.header("sec-websocket-accept"), None);
    // Not upgraded: the connection still speaks HTTP (or was closed after the 405).
    if c.send(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n") {
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut c.stream, &mut rest);
        let rest = String::from_utf8_lossy(&rest);
        assert!(
            rest.is_empty() || rest.starts_with("HTTP/1.1 200 "),
            "{rest}"
        );
    }
    assert_still_serving(&mut server);
}

#[test]
fn accept_key_is_the_rfc_value_and_no_extension_or_subprotocol_is_chosen() {
    let server = Server::start(2, &[]);
    let mut c = HttpConn::connect(server.http);
    let r = c.exchange(
        ws_upgrade_request(
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
             Sec-WebSocket-Protocol: chat\r\nOrigin: https://anywhere.example\r\n",
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 101, "{r:?}");
    assert!(r.head.starts_with("HTTP/1.1 101 "), "{r:?}");
    assert_eq!(r.header("sec-websocket-accept"), Some(WS_ACCEPT), "{r:?}");
    assert!(r
        .header("upgrade")
        .unwrap()
        .eq_ignore_ascii_case("websocket"));
    assert!(r
        .header("connection")
        .unwrap()
        .to_ascii_lowercase()
        .contains("upgrade"));
    assert_eq!(r.header("sec-websocket-extensions"), None, "{r:?}");
    assert_eq!(r.header("sec-websocket-protocol"), None, "{r:?}");
    // Uncompressed frames (RSV1 clear) flow both ways.
    let mut ws = c.into_ws();
    ws.sub("plain", 1);
    let s = server.wait_stats("ws_upgrades", |s| {
        s["total"]["ws_upgrades"].as_u64() >= Some(1)
    });
    assert_eq!(s["total"]["ws_upgrades"], 1, "{s}");
}

#[test]
fn allowed_origins_admit_only_those_listed() {
    let server = Server::start(
        2,
        &["--allowed-origins", "https://a.example,https://b.example"],
    );
    let mut ws = WsClient::upgrade(
        HttpConn::connect(server.http),
        "Origin: https://b.example\r\n",
    );
    ws.sub("origin", 1);
    let r = refused(
        &server,
        &ws_upgrade_request("Origin: https://evil.example\r\n"),
    );
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.header("sec-websocket-accept"), None);
    // Still serving: the allowed origin and /healthz.
    assert_eq!(http_get(server.http, "/healthz").0, 200);
    let mut ws = WsClient::upgrade(
        HttpConn::connect(server.http),
        "Origin: https://a.example\r\n",
    );
    ws.sub("origin", 2);
    // A client that sends no Origin is not a browser (browsers always send it on a
    // handshake): no page can drive it, so it is let in.
    let mut ws = WsClient::upgrade(HttpConn::connect(server.http), "");
    ws.sub("origin", 3);
}

// ----- server pings -----

#[test]
fn a_client_that_answers_pings_stays_and_a_silent_one_is_closed_1001() {
    let server = Server::start(2, &["--ws-ping-interval-s", "1"]);
    let start = Instant::now();
    let silent_addr = server.http;
    let silent = thread::spawn(move || {
        let mut ws = WsClient::connect(silent_addr);
        let (before, reason) = ws.expect_close(1001);
        let elapsed = start.elapsed();
        (before, reason, elapsed)
    });
    let mut ws = WsClient::connect(server.http);
    let mut pings = 0;
    // At least 3.2 s, and two pings (a loaded machine may run the sweep late).
    while start.elapsed() < Duration::from_millis(3200) || pings < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "{pings} pings in 6 s"
        );
        if let Some(f) = ws.frame_within(Duration::from_millis(100)) {
            assert_eq!(f.opcode, opcode::PING, "{f:?}");
            pings += 1;
            assert!(ws.send_frame(opcode::PONG, true, &f.payload));
        }
    }
    // Still connected and usable (a ping may come before the answer).
    ws.send_text(r#"{"op":"sub","ch":"alive","id":1}"#);
    let ok = loop {
        let f = ws.frame();
        if f.opcode == opcode::PING {
            assert!(ws.send_frame(opcode::PONG, true, &f.payload));
            continue;
        }
        break serde_json::from_slice::<serde_json::Value>(&f.payload).unwrap();
    };
    assert_eq!((&ok["op"], &ok["id"]), (&"ok".into(), &1.into()), "{ok}");
    let (before, reason, elapsed) = silent.join().unwrap();
    assert!(
        before.iter().any(|f| f.opcode == opcode::PING),
        "closed without a ping first: {before:?}"
    );
    assert!(reason.contains("ping timeout"), "{reason}");
    assert!(
        elapsed > Duration::from_millis(1500) && elapsed < Duration::from_millis(4500),
        "closed after {elapsed:?}"
    );
    server.wait_stats("ws_ping_timeouts", |s| {
        s["total"]["ws_ping_timeouts"].as_u64() == Some(1)
    });
}

// ----- the native protocol: request errors keep the connection -----

#[test]
fn native_protocol_errors_keep_the_connection_open() {
    let server = Server::start(2, &[]);
    let mut ws = WsClient::connect(server.http);
    ws.send_text(r#"{"op":"#);
    let e = ws.json();
    assert_eq!(
        (&e["op"], &e["code"]),
        (&"error".into(), &"bad_json".into()),
        "{e}"
    );
    assert!(e.get("id").is_none(), "{e}");
    assert!(e["msg"].is_string(), "{e}");
    ws.send_text("[1,2]");
    let e = ws.json();
    assert_eq!(e["code"], "bad_json", "{e}");
    ws.send_text(r#"{"op":"frob","id":5}"#);
    let e = ws.json();
    assert_eq!(
        (&e["op"], &e["code"], &e["id"]),
        (&"error".into(), &"unknown_op".into(), &5.into()),
        "{e}"
    );
    ws.send_text(r#"{"op":"sub","id":"six"}"#);
    let e = ws.json();
    assert_eq!(
        (&e["op"], &e["code"], &e["id"]),
        (&"error".into(), &"bad_request".into(), &"six".into()),
        "{e}"
    );
    ws.send_text(r#"{"op":"sub","ch":"","id":7}"#);
    let e = ws.json();
    assert_eq!(
        (&e["code"], &e["id"]),
        (&"bad_request".into(), &7.into()),
        "{e}"
    );
    // A valid sub still works, and deliveries arrive.
    ws.sub("n", 9);
    let mut publ = RespConn::connect(server.resp);
    publ.cmd(&[b"PUBLISH", b"n", b"[1,2,3]"]);
    assert_eq!(publ.read_replies(1), b":1\r\n");
    let d = ws.json();
    assert_eq!(
        (&d["ch"], &d["data"]),
        (&"n".into(), &serde_json::json!([1, 2, 3])),
        "{d}"
    );
    assert!(d["seq"].is_u64(), "{d}");
    let s = server.wait_stats("ws_request_errors", |s| {
        s["total"]["ws_request_errors"].as_u64() >= Some(5)
    });
    assert_eq!(s["total"]["ws_protocol_errors"], 0, "{s}");
}

#[test]
fn a_binary_message_gets_an_error_reply_and_the_connection_stays() {
    let server = Server::start(2, &[]);
    let mut ws = WsClient::connect(server.http);
    assert!(ws.send_frame(opcode::BINARY, true, b"\x00\x01\xff"));
    let e = ws.json();
    assert_eq!(e["op"], "error", "{e}");
    assert!(e["code"].is_string() && e["msg"].is_string(), "{e}");
    // Fragmented binary too.
    ws.send_raw(&frames(&[
        (opcode::BINARY, false, b"\x00"),
        (opcode::CONTINUATION, true, b"\x01"),
    ]));
    assert_eq!(ws.json()["op"], "error");
    ws.sub("after-binary", 1);
    ws.send_text(r#"{"op":"ping","id":2}"#);
    assert_eq!(ws.json(), serde_json::json!({"op": "pong", "id": 2}));
}

// ----- the diagnostic echo route (`ws_echo`) -----

/// Opens a WebSocket at `/ws/echo`, asserting the 101.
fn echo_client(server: &Server) -> WsClient {
    let mut conn = HttpConn::connect(server.http);
    let req = ws_upgrade_request("").replacen("GET /ws ", "GET /ws/echo ", 1);
    let r = conn.exchange(req.as_bytes());
    assert_eq!(r.status, 101, "upgrade refused: {r:?}");
    assert_eq!(r.header("sec-websocket-accept"), Some(WS_ACCEPT));
    conn.into_ws()
}

#[test]
fn ws_echo_is_off_by_default_and_404() {
    let server = Server::start(1, &[]);
    let mut conn = HttpConn::connect(server.http);
    let req = ws_upgrade_request("").replacen("GET /ws ", "GET /ws/echo ", 1);
    let r = conn.exchange(req.as_bytes());
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(http_get(server.http, "/ws/echo").0, 404);
}

#[test]
fn ws_echo_sends_every_message_back_whole_and_of_its_kind() {
    let mut server = Server::start(2, &["--ws-echo", "--ws-max-message-bytes", "200000"]);
    let mut ws = echo_client(&server);
    // Text as text, binary as binary, empty messages too.
    ws.send_text("hello, ✓");
    let f = ws.frame();
    assert_eq!((f.opcode, f.fin, f.rsv), (opcode::TEXT, true, 0), "{f:?}");
    assert_eq!(f.payload, "hello, ✓".as_bytes());
    assert!(ws.send_frame(opcode::BINARY, true, b"\x00\x01\xff"));
    let f = ws.frame();
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (opcode::BINARY, &b"\x00\x01\xff"[..])
    );
    assert!(ws.send_frame(opcode::TEXT, true, b""));
    assert_eq!(
        ws.frame(),
        support::WsFrame {
            fin: true,
            rsv: 0,
            opcode: 1,
            payload: vec![]
        }
    );
    // A fragmented message, a code point split across fragments and a ping between them:
    // the pong comes at once, the message once its last fragment is in, as one frame.
    ws.send_raw(&frames(&[
        (opcode::TEXT, false, b"ab\xe2"),
        (opcode::PING, true, b"p"),
        (opcode::CONTINUATION, false, b"\x9c"),
        (opcode::CONTINUATION, true, b"\x93cd"),
    ]));
    let f = ws.frame();
    assert_eq!((f.opcode, f.payload.as_slice()), (opcode::PONG, &b"p"[..]));
    let f = ws.frame();
    assert_eq!((f.opcode, f.fin), (opcode::TEXT, true), "{f:?}");
    assert_eq!(f.payload, "ab✓cd".as_bytes());
    // A message with a 64-bit length, in two fragments.
    let big: Vec<u8> = (0..150_000u32).map(|i| (i * 7) as u8).collect();
    ws.send_raw(&frames(&[
        (opcode::BINARY, false, &big[..70_000]),
        (opcode::CONTINUATION, true, &big[70_000..]),
    ]));
    let f = ws.frame();
    assert_eq!((f.opcode, f.payload.len()), (opcode::BINARY, big.len()));
    assert!(f.payload == big, "the echo differs");
    // The native protocol is not spoken here: a request is echoed, not answered.
    ws.send_text(r#"{"op":"ping","id":1}"#);
    assert_eq!(ws.frame().payload, br#"{"op":"ping","id":1}"#);
    // The limits and the close path are /ws's.
    let mut over = echo_client(&server);
    over.send_raw(&cf(opcode::BINARY, true, &vec![0; 200_001]));
    over.expect_close(TOO_BIG);
    let mut bad = echo_client(&server);
    bad.send_raw(&cf(opcode::TEXT, true, b"ok \xc0\xaf"));
    bad.expect_close(INVALID_PAYLOAD);
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"bye");
    assert!(ws.send_frame(opcode::CLOSE, true, &payload));
    let (before, _) = ws.expect_close(1000);
    assert!(before.is_empty(), "{before:?}");
    // /ws still speaks the native protocol beside it.
    assert_still_serving(&mut server);
}

#[test]
fn a_message_limit_the_unparsed_input_cannot_hold_exits_2_naming_both_options() {
    // The largest frame's payload must fit in max_unparsed_bytes (its header may come on
    // top), else it would be dropped at the TCP level with no close frame.
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_corecast"))
            .args([
                "--resp-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn corecast")
    };
    let out = run(&[
        "--ws-max-message-bytes",
        "20000001",
        "--max-unparsed-bytes",
        "20000000",
    ])
    .wait_with_output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ws_max_message_bytes") && err.contains("max_unparsed_bytes"),
        "{err}"
    );
    // With the two equal it starts (and a 16 MiB frame is echoed whole, not dropped, as
    // Autobahn's 9.* cases need: see it_autobahn.rs).
    let mut server = Server::start(
        1,
        &[
            "--ws-echo",
            "--ws-max-message-bytes",
            "20000000",
            "--max-unparsed-bytes",
            "20000000",
            "--max-pending-bytes",
            "40000000",
        ],
    );
    let mut ws = echo_client(&server);
    let big = vec![b'*'; 16 << 20];
    assert!(ws.send_frame(opcode::BINARY, true, &big));
    let f = ws.frame_within(Duration::from_secs(30)).expect("the echo");
    assert_eq!((f.opcode, f.payload.len()), (opcode::BINARY, big.len()));
    assert_eq!(server.stats()["total"]["input_overflows"], 0);
    assert_still_serving(&mut server);
}
