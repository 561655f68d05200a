//! Positions, history and resume across protocols: a subscriber that disconnects and comes
//! back with its position gets exactly what it missed, then live messages; one whose gap
//! history no longer holds gets a reset notice; a storm of resumers costs the owner one
//! history walk; a message published over RESP, WebSocket or HTTP reaches every front-end.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// A minimal WebSocket client speaking the native JSON protocol (frames from the codec's
/// client encoder, server frames parsed here).
struct Ws {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Ws {
    fn connect(addr: SocketAddr) -> Ws {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
        let mut ws = Ws { s, buf: Vec::new() };
        loop {
            if let Some(end) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&ws.buf[..end]).to_string();
                assert!(head.starts_with("HTTP/1.1 101"), "{head}");
                ws.buf.drain(..end + 4);
                return ws;
            }
            ws.fill();
        }
    }

    fn fill(&mut self) {
        let mut b = [0u8; 65536];
        let n = self.s.read(&mut b).expect("read");
        assert!(n > 0, "connection closed");
        self.buf.extend_from_slice(&b[..n]);
    }

    fn send(&mut self, v: &Value) {
        let mut out = Vec::new();
        corecast_proto::ws::client_frame(&mut out, 1, true, [1, 2, 3, 4], v.to_string().as_bytes());
        self.s.write_all(&out).unwrap();
    }

    /// The next text message as JSON (pings are answered, other control frames skipped).
    fn recv(&mut self) -> Value {
        loop {
            if self.buf.len() >= 2 {
                let op = self.buf[0] & 0x0f;
                let (len, hl) = match self.buf[1] & 0x7f {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= hl + len {
                    let payload: Vec<u8> = self.buf[hl..hl + len].to_vec();
                    self.buf.drain(..hl + len);
                    match op {
                        1 => return serde_json::from_slice(&payload).expect("JSON text"),
                        9 => {
                            let mut out = Vec::new();
                            corecast_proto::ws::client_frame(&mut out, 10, true, [0; 4], &payload);
                            self.s.write_all(&out).unwrap();
                        }
                        8 => panic!("closed by the server: {payload:?}"),
                        _ => {}
                    }
                    continue;
                }
            }
            self.fill();
        }
    }

    fn sub(&mut self, ch: &str, since: Option<&Value>) -> Value {
        let mut req = json!({"op": "sub", "ch": ch, "id": 1});
        if let Some(s) = since {
            req["since"] = s.clone();
        }
        self.send(&req);
        let ok = self.recv();
        assert_eq!(ok["op"], "ok", "{ok}");
        assert_eq!(ok["ch"], ch);
        ok
    }
}

fn publish(server: &Server, ch: &str, payload: &str) {
    let mut c = RespConn::connect(server.resp);
    c.cmd(&[b"PUBLISH", ch.as_bytes(), payload.as_bytes()]);
    c.read_replies(1);
}

fn position(ok: &Value) -> Value {
    json!({"epoch": ok["epoch"], "seq": ok["seq"]})
}

/// Channels spread over both shards, so some joins go through a remote owner.
const CHANNELS: [&str; 4] = ["alpha", "bravo", "charlie", "delta"];

#[test]
fn websocket_resume_replays_exactly_the_gap_then_live() {
    let server = Server::start(2, &[]);
    for ch in CHANNELS {
        let mut a = Ws::connect(server.http);
        let ok = a.sub(ch, None);
        publish(&server, ch, "{\"n\":1}");
        publish(&server, ch, "{\"n\":2}");
        let mut last = Value::Null;
        for n in 1..=2 {
            let m = a.recv();
            assert_eq!(m["data"]["n"], n, "{m}");
            last = m;
        }
        let since = json!({"epoch": ok["epoch"], "seq": last["seq"]});
        drop(a);
        for n in 3..=7 {
            publish(&server, ch, &format!("{{\"n\":{n}}}"));
        }
        let mut b = Ws::connect(server.http);
        let ok2 = b.sub(ch, Some(&since));
        assert_eq!(ok2["epoch"], ok["epoch"], "same epoch while history lives");
        for n in 3..=7 {
            let m = b.recv();
            assert_eq!(m["data"]["n"], n, "{ch}: replayed in order: {m}");
        }
        publish(&server, ch, "{\"n\":8}");
        let m = b.recv();
        assert_eq!(
            m["data"]["n"], 8,
            "{ch}: then live, no gap, no duplicate: {m}"
        );
        assert_eq!(m["seq"], ok2["seq"].as_u64().unwrap() + 1);
    }
    server.wait_stats("4 resumes", |s| s["total"]["resumes"] == 4);
}

#[test]
fn a_gap_history_no_longer_holds_gets_a_reset_not_part_of_it() {
    let server = Server::start(2, &["--history-size", "3"]);
    for ch in CHANNELS {
        let mut a = Ws::connect(server.http);
        let ok = a.sub(ch, None);
        let since = position(&ok);
        drop(a);
        for n in 1..=10 {
            publish(&server, ch, &format!("{n}"));
        }
        let mut b = Ws::connect(server.http);
        let ok2 = b.sub(ch, Some(&since));
        assert_eq!(ok2["seq"], 10);
        let reset = b.recv();
        assert_eq!(reset["op"], "reset", "{reset}");
        assert_eq!(reset["ch"], ch);
        assert_eq!(reset["first"], 8, "history keeps the last 3: {reset}");
        assert_eq!(reset["seq"], 10);
        publish(&server, ch, "11");
        assert_eq!(b.recv()["data"], 11, "then live");
        // A position from another epoch is never replayed.
        let mut c = Ws::connect(server.http);
        c.sub(ch, Some(&json!({"epoch": "1", "seq": 9})));
        assert_eq!(c.recv()["op"], "reset");
    }
    server.wait_stats("8 resets", |s| s["total"]["resume_resets"] == 8);
}

#[test]
fn the_epoch_changes_when_a_channel_is_forgotten() {
    // Without history the owner forgets a channel with its last subscriber.
    let server = Server::start(1, &["--history-size", "0"]);
    let mut a = Ws::connect(server.http);
    let first = a.sub("news", None);
    publish(&server, "news", "1");
    a.recv();
    drop(a);
    // Wait for the unsubscribe to land (the channel leaves the table).
    server.wait_stats("the channel forgotten", |s| s["total"]["channels"] == 0);
    let mut b = Ws::connect(server.http);
    let again = b.sub("news", Some(&json!({"epoch": first["epoch"], "seq": 1})));
    assert_ne!(again["epoch"], first["epoch"], "a new epoch");
    assert_eq!(again["seq"], 0);
    assert_eq!(b.recv()["op"], "reset", "the old position is not resumed");
}

#[test]
fn a_storm_of_resumers_costs_one_history_walk() {
    let server = Server::start(2, &[]);
    for ch in CHANNELS {
        let mut a = Ws::connect(server.http);
        let ok = a.sub(ch, None);
        let since = position(&ok);
        drop(a);
        for n in 1..=20 {
            publish(&server, ch, &format!("{n}"));
        }
        let mut clients: Vec<Ws> = (0..100).map(|_| Ws::connect(server.http)).collect();
        for c in &mut clients {
            let mut req = json!({"op": "sub", "ch": ch, "since": since});
            req["id"] = json!(7);
            c.send(&req);
        }
        for c in &mut clients {
            assert_eq!(c.recv()["op"], "ok");
            for n in 1..=20 {
                assert_eq!(c.recv()["data"], n);
            }
        }
    }
    let s = server.wait_stats("400 resumes", |s| s["total"]["resumes"] == 400);
    assert_eq!(
        s["total"]["replay_walks"], 4,
        "one walk per channel, shared by its 100 resumers: {s}"
    );
}

/// Reads SSE events from a raw stream until `n` data events (or the deadline).
fn sse_events(s: &mut TcpStream, n: usize) -> (Vec<Value>, String) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = String::new();
    let mut b = [0u8; 65536];
    loop {
        let data: Vec<Value> = text
            .split("\n\n")
            .filter(|ev| !ev.contains("event: subscribed"))
            .filter_map(|ev| {
                let lines: Vec<&str> = ev
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                (!lines.is_empty() && ev.ends_with('}') || ev.contains("data: "))
                    .then(|| serde_json::from_str(&lines.join("\n")).ok())
                    .flatten()
            })
            .collect();
        if data.len() >= n && text.ends_with("\n\n") {
            let last_id = text
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("id: "))
                .unwrap_or_default()
                .to_string();
            return (data, last_id);
        }
        assert!(Instant::now() < deadline, "timed out; got {text:?}");
        let k = s.read(&mut b).expect("read");
        assert!(k > 0, "closed; got {text:?}");
        text.push_str(&String::from_utf8_lossy(&b[..k]));
    }
}

fn sse_open(addr: SocketAddr, query: &str, last_id: Option<&str>) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let extra = last_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
    write!(
        s,
        "GET /sse?{query} HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n{extra}\r\n"
    )
    .unwrap();
    s
}

#[test]
fn sse_resumes_every_channel_of_a_stream_from_last_event_id() {
    let server = Server::start(2, &[]);
    let query = "ch=alpha&ch=bravo&ch=charlie";
    let mut s = sse_open(server.http, query, None);
    // The id-only event after the joins says the stream is live.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = String::new();
    while !seen.contains("id: ") {
        assert!(Instant::now() < deadline);
        let mut b = [0u8; 4096];
        let k = s.read(&mut b).unwrap();
        seen.push_str(&String::from_utf8_lossy(&b[..k]));
    }
    publish(&server, "alpha", "\"a1\"");
    publish(&server, "bravo", "b1");
    let (got, last_id) = sse_events(&mut s, 2);
    assert_eq!(got[0]["data"], "a1");
    assert_eq!(
        got[1]["data"], "b1",
        "a non-JSON payload arrives as a JSON string"
    );
    drop(s);
    publish(&server, "charlie", "{\"c\":1}");
    publish(&server, "alpha", "[2]");
    publish(&server, "bravo", "3");
    let mut s = sse_open(server.http, query, Some(&last_id));
    let (got, _) = sse_events(&mut s, 3);
    let mut by_ch: Vec<(String, Value)> = got
        .iter()
        .map(|m| (m["ch"].as_str().unwrap().to_string(), m["data"].clone()))
        .collect();
    by_ch.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        by_ch,
        [
            ("alpha".to_string(), json!([2])),
            ("bravo".to_string(), json!(3)),
            ("charlie".to_string(), json!({"c": 1})),
        ],
        "exactly the missed messages: {got:?}"
    );
    publish(&server, "bravo", "4");
    let (live, _) = sse_events(&mut s, 1);
    assert_eq!(live[0]["data"], 4, "then live: {live:?}");
}

#[test]
fn messages_cross_every_front_end() {
    let server = Server::start(2, &[]);
    let mut ws = Ws::connect(server.http);
    ws.sub("x", None);
    let mut resp = RespConn::connect(server.resp);
    resp.cmd(&[b"SUBSCRIBE", b"x"]);
    resp.read_replies(1);
    let mut sse = sse_open(server.http, "ch=x", None);
    let mut b = [0u8; 4096];
    let k = sse.read(&mut b).unwrap();
    assert!(String::from_utf8_lossy(&b[..k]).starts_with("HTTP/1.1 200"));
    server.wait_stats("three subscribers", |s| s["total"]["subscriptions"] == 3);

    // RESP → JSON payload spliced, binary payload as a string.
    publish(&server, "x", "{\"k\": [1, 2]}");
    assert_eq!(ws.recv()["data"], json!({"k": [1, 2]}));
    // WebSocket pub → RESP gets the JSON bytes.
    let mut pubber = Ws::connect(server.http);
    pubber.send(&json!({"op": "pub", "ch": "x", "data": {"from": "ws"}, "id": 5}));
    let ack = pubber.recv();
    assert_eq!(
        (ack["op"].clone(), ack["receivers"].clone()),
        (json!("ok"), json!(3))
    );
    assert_eq!(ws.recv()["data"], json!({"from": "ws"}));
    // HTTP text → a JSON string for JSON clients, the raw bytes for RESP.
    let (status, body) = http_post(server.http, "/pub?ch=x", Some("text/plain"), b"plain\ttext");
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["receivers"], 3);
    assert_eq!(ws.recv()["data"], "plain\ttext");
    let replies = String::from_utf8_lossy(&resp.read_replies(3)).to_string();
    assert!(replies.contains("{\"k\": [1, 2]}"), "{replies}");
    assert!(replies.contains("{\"from\":\"ws\"}"), "{replies}");
    assert!(replies.contains("$10\r\nplain\ttext\r\n"), "{replies}");
    let (events, _) = sse_events(&mut sse, 3);
    let datas: Vec<Value> = events.iter().map(|e| e["data"].clone()).collect();
    assert_eq!(
        datas,
        [
            json!({"k": [1, 2]}),
            json!({"from": "ws"}),
            json!("plain\ttext")
        ]
    );
}

/// Publishes 12 messages of about 1 MB to `ch` (more than `max_pending_bytes`, 8 MiB) over
/// RESP; returns the channel's epoch as an SSE id writes it and as JSON gives it.
fn publish_twelve_big(server: &Server, ch: &str) -> (String, Value) {
    let mut c = RespConn::connect(server.resp);
    for i in 0..12u8 {
        c.cmd(&[b"PUBLISH", ch.as_bytes(), &vec![b'a' + i; 1_000_000]]);
        c.read_replies(1);
    }
    let mut ws = WsClient::connect(server.http);
    ws.send_text(&json!({"op":"sub","ch":ch,"id":1}).to_string());
    let ok = ws.json();
    assert_eq!(ok["seq"], 12, "{ok}");
    (
        ok["epoch"].as_str().unwrap().to_string(),
        ok["epoch"].clone(),
    )
}

/// A resume across more than `max_pending_bytes` of history used to be closed silently, on
/// every retry. Now the replay is queued as the client drains it, and the live messages
/// published meanwhile follow it with no gap.
#[test]
fn a_websocket_resume_bigger_than_the_queue_is_paced_not_cut() {
    let server = Server::start(2, &[]);
    let (_, epoch) = publish_twelve_big(&server, "big");
    let mut ws = WsClient::connect(server.http);
    let since = json!({"op":"sub","ch":"big","id":2,"since":{"epoch":epoch,"seq":0}});
    ws.send_text(&since.to_string());
    // Live messages while the replay waits for this client to read.
    publish(&server, "big", "\"live-13\"");
    publish(&server, "big", "\"live-14\"");
    let ok = ws.json();
    assert_eq!(
        (ok["op"].as_str(), ok["id"].as_u64()),
        (Some("ok"), Some(2)),
        "{ok}"
    );
    for seq in 1..=14u64 {
        let m = ws.json();
        assert_eq!(m["seq"], seq, "in order, none missing");
        if seq <= 12 {
            assert_eq!(m["data"].as_str().map(str::len), Some(1_000_000));
        }
    }
    publish(&server, "big", "\"live-15\"");
    assert_eq!(ws.json()["data"], "live-15");
    let s = server.wait_stats("the paced replay counted", |s| {
        s["total"]["paced_replays"].as_u64() >= Some(1)
    });
    assert_eq!(s["total"]["slow_consumer_disconnects"], 0, "{}", s["total"]);
}

#[test]
fn an_sse_resume_bigger_than_the_queue_is_paced_not_cut() {
    let server = Server::start(2, &[]);
    let (hex, _) = publish_twelve_big(&server, "bigsse");
    // Hex epoch, as the SSE id writes it: the native JSON gives the same hex string.
    let id = format!("{hex}:0");
    let mut s = sse_open(server.http, "ch=bigsse", Some(&id));
    publish(&server, "bigsse", "\"live-13\"");
    // Read 12 MB raw until the live event's end, then parse once (sse_events re-parses all
    // it has on every read).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut raw = Vec::new();
    let mut b = vec![0u8; 1 << 20];
    while !raw.ends_with(b"\"live-13\"}\n\n") {
        assert!(
            Instant::now() < deadline,
            "timed out after {} bytes",
            raw.len()
        );
        let k = s.read(&mut b).expect("read");
        assert!(k > 0, "closed after {} bytes", raw.len());
        raw.extend_from_slice(&b[..k]);
    }
    let text = String::from_utf8(raw).unwrap();
    let got: Vec<Value> = text
        .split("\n\n")
        .filter_map(|ev| ev.lines().find_map(|l| l.strip_prefix("data: ")))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v.get("seq").is_some())
        .collect();
    let last_id = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap_or_default()
        .to_string();
    let seqs: Vec<u64> = got.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=13).collect::<Vec<_>>());
    assert_eq!(last_id, format!("{hex}:13"));
}
