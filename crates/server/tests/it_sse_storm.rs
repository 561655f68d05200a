//! The `retry:` advice of SSE streams rises while SSE streams open on a shard faster than
//! `--sse-storm-streams-per-s` (a reconnect storm) and falls back after it: open streams are
//! told both changes, `/stats` shows the current advice, and heartbeats keep idle streams
//! talking. Other connections (plain connect-and-close, `/healthz` polls) never make a storm.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::*;

/// Reads from an SSE stream until `pred` holds for everything read so far (bounded).
fn read_until(s: &mut TcpStream, text: &mut String, what: &str, pred: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut b = [0u8; 4096];
    while !pred(text) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {text:?}"
        );
        match s.read(&mut b) {
            Ok(0) => panic!("stream closed waiting for {what}: {text:?}"),
            Ok(n) => text.push_str(&String::from_utf8_lossy(&b[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn retries(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("retry: "))
        .map(|v| v.parse().expect("retry is a number"))
        .collect()
}

#[test]
fn retry_advice_rises_in_a_storm_and_falls_after_it() {
    let server = Server::start(
        1,
        &[
            "--sse-retry-ms",
            "1000",
            "--sse-storm-retry-ms",
            "8000",
            "--sse-storm-streams-per-s",
            "100",
            "--sse-heartbeat-s",
            "1",
        ],
    );
    let mut stream = TcpStream::connect(server.http).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    stream
        .write_all(b"GET /sse?ch=storm HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    read_until(&mut stream, &mut text, "the first advice", |t| {
        t.contains("event: subscribed")
    });
    assert_eq!(retries(&text), [1000], "normal advice at first: {text}");

    // A storm: 400 SSE streams opened in well under a second (a reconnect wave).
    let mut conns: Vec<TcpStream> = (0..400)
        .map(|_| TcpStream::connect(server.http).expect("connect"))
        .collect();
    for c in &mut conns {
        c.write_all(b"GET /sse?ch=storm-wave HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    let stats = server.wait_stats("storm advice in /stats", |s| {
        s["total"]["sse_retry_ms"] == 8000
    });
    assert_eq!(stats["total"]["sse_retry_ms"], 8000);
    read_until(&mut stream, &mut text, "the storm advice", |t| {
        retries(t).len() >= 2
    });
    let storm = retries(&text)[1];
    assert!(
        (8000..=12000).contains(&storm),
        "storm advice with up to 50% of spread: {storm}"
    );
    // A stream opened during the storm is told the storm advice at once.
    let mut late = TcpStream::connect(server.http).unwrap();
    late.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    late.write_all(b"GET /sse?ch=storm HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut late_text = String::new();
    read_until(
        &mut late,
        &mut late_text,
        "advice of a stream opened in the storm",
        |t| !retries(t).is_empty(),
    );
    let advice = retries(&late_text)[0];
    // The storm may already be over when the stream's request is parsed; it cannot be the
    // normal advice while /stats still says storm, which the loop above just saw.
    assert!(
        advice == 1000 || (8000..=12000).contains(&advice),
        "{advice}"
    );
    drop(conns);

    // Quiet: the first second under the threshold restores the normal advice, told to the
    // open stream; heartbeats keep coming.
    server.wait_stats("normal advice again", |s| {
        s["total"]["sse_retry_ms"] == 1000
    });
    read_until(&mut stream, &mut text, "the normal advice again", |t| {
        retries(t).last() == Some(&1000) && retries(t).len() >= 3
    });
    read_until(&mut stream, &mut text, "a heartbeat", |t| {
        t.contains("\n:\n")
    });
    let s = server.stats();
    assert!(s["total"]["sse_heartbeats"].as_u64().unwrap() >= 1, "{s}");
}

#[test]
fn plain_connections_do_not_make_a_storm() {
    let server = Server::start(
        1,
        &[
            "--sse-retry-ms",
            "1000",
            "--sse-storm-retry-ms",
            "8000",
            "--sse-storm-streams-per-s",
            "100",
        ],
    );
    let mut stream = TcpStream::connect(server.http).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    stream
        .write_all(b"GET /sse?ch=calm HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    read_until(&mut stream, &mut text, "the first advice", |t| {
        t.contains("event: subscribed")
    });
    assert_eq!(retries(&text), [1000], "{text}");

    // Well over 100 accepts a second for 1.5 s, from a client that never sends a request
    // (connect, close), and some /healthz polls: none of them is an SSE stream.
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        for _ in 0..50 {
            drop(TcpStream::connect(server.http).expect("connect"));
            n += 1;
        }
        assert_eq!(http_get(server.http, "/healthz").0, 200);
    }
    assert!(n >= 300, "only {n} connections in 1.5 s");
    let accepted = server.wait_stats("the accepts counted", |s| {
        s["total"]["accepted"].as_u64() >= Some(n)
    });
    // Two more sweeps: the advice never moved, and the stream was told nothing new.
    std::thread::sleep(Duration::from_millis(2200));
    let s = server.stats();
    assert_eq!(s["total"]["sse_retry_ms"], 1000, "{s} (after {accepted})");
    let mut b = [0u8; 4096];
    while let Ok(k) = stream.read(&mut b) {
        if k == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&b[..k]));
    }
    assert_eq!(retries(&text), [1000], "{text}");
    assert!(
        !server.log().contains("reconnect storm detected"),
        "{}",
        server.log()
    );
}

#[test]
fn the_deprecated_sse_storm_accepts_per_s_still_applies_and_warns() {
    let server = Server::start(
        1,
        &[
            "--sse-storm-accepts-per-s",
            "5",
            "--sse-storm-retry-ms",
            "8000",
        ],
    );
    // Twenty streams at once pass a threshold of five a second.
    let conns: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut c = TcpStream::connect(server.http).expect("connect");
            c.write_all(b"GET /sse?ch=old HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            c
        })
        .collect();
    server.wait_stats("storm advice", |s| s["total"]["sse_retry_ms"] == 8000);
    drop(conns);
    let log = server.log();
    assert!(
        log.contains("WARN") && log.contains("--sse-storm-accepts-per-s is deprecated"),
        "{log}"
    );
}
