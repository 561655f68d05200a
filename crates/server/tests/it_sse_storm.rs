//! The `retry:` advice of SSE streams rises while a shard accepts connections faster than
//! `--sse-storm-accepts-per-s` (a reconnect storm) and falls back after it: open streams are
//! told both changes, `/stats` shows the current advice, and heartbeats keep idle streams
//! talking.

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
            "--sse-storm-accepts-per-s",
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

    // A storm: 400 connections in well under a second (each asks for /healthz and closes).
    let mut conns: Vec<TcpStream> = (0..400)
        .map(|_| TcpStream::connect(server.http).expect("connect"))
        .collect();
    for c in &mut conns {
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
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
