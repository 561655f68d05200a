//! Publish/subscribe through real Redis clients (the `redis` crate), with one and two shards.

mod support;

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use support::{per_shard, Server};

const MESSAGES: usize = 2000;

/// A subscriber on its own connection and thread: subscribes (channels or patterns), reports
/// ready, then collects `expect` messages as (channel, payload).
fn spawn_subscriber(
    url: String,
    channels: Vec<String>,
    patterns: Vec<String>,
    expect: usize,
    ready: mpsc::Sender<()>,
) -> thread::JoinHandle<Vec<(String, String)>> {
    thread::spawn(move || {
        let client = redis::Client::open(url).unwrap();
        let mut con = client.get_connection().unwrap();
        let mut ps = con.as_pubsub();
        ps.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        for c in &channels {
            ps.subscribe(c).unwrap();
        }
        for p in &patterns {
            ps.psubscribe(p).unwrap();
        }
        ready.send(()).unwrap();
        let mut got = Vec::with_capacity(expect);
        while got.len() < expect {
            let m = ps.get_message().expect("message before the timeout");
            got.push((
                m.get_channel_name().to_string(),
                m.get_payload::<String>().unwrap(),
            ));
        }
        got
    })
}

fn publish(con: &mut redis::Connection, ch: &str, msg: &str) -> i64 {
    redis::cmd("PUBLISH").arg(ch).arg(msg).query(con).unwrap()
}

fn every_subscriber_gets_everything_in_order(shards: usize) {
    let server = Server::start(shards, &[]);
    let (tx, rx) = mpsc::channel();
    let subs: Vec<_> = (0..4)
        .map(|_| {
            spawn_subscriber(
                server.url(),
                vec!["news".into()],
                vec![],
                MESSAGES,
                tx.clone(),
            )
        })
        .collect();
    for _ in 0..subs.len() {
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    for i in 0..MESSAGES {
        assert_eq!(
            publish(&mut con, "news", &format!("m{i}")),
            4,
            "PUBLISH counts every subscriber"
        );
    }
    assert_eq!(publish(&mut con, "nobody-listens", "x"), 0);
    for s in subs {
        let got = s.join().unwrap();
        let want: Vec<(String, String)> = (0..MESSAGES)
            .map(|i| ("news".to_string(), format!("m{i}")))
            .collect();
        assert_eq!(got, want);
    }
}

#[test]
fn one_shard_delivers_every_message_in_order() {
    every_subscriber_gets_everything_in_order(1);
}

#[test]
fn two_shards_deliver_every_message_in_order() {
    every_subscriber_gets_everything_in_order(2);
}

#[test]
fn fan_out_crosses_shards() {
    let server = Server::start(2, &[]);
    let (tx, rx) = mpsc::channel();
    let mut subs = Vec::new();
    // The kernel spreads connections over the shards' listeners; add subscribers until both
    // shards hold one (bounded).
    loop {
        subs.push(spawn_subscriber(
            server.url(),
            vec!["cross".into()],
            vec![],
            100,
            tx.clone(),
        ));
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let n = subs.len() as u64;
        let s = server.wait_stats("subscriptions", |s| {
            s["total"]["subscriptions"].as_u64() == Some(n)
        });
        if per_shard(&s, "subscriptions").iter().all(|&c| c > 0) {
            break;
        }
        assert!(subs.len() < 32, "32 connections all landed on one shard");
    }
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    for i in 0..100 {
        assert_eq!(
            publish(&mut con, "cross", &i.to_string()) as usize,
            subs.len()
        );
    }
    let n = subs.len() as u64;
    for s in subs {
        let got = s.join().unwrap();
        assert_eq!(
            got.iter().map(|(_, p)| p.clone()).collect::<Vec<_>>(),
            (0..100).map(|i| i.to_string()).collect::<Vec<_>>()
        );
    }
    // Each shard publishes its own snapshot every 100 ms: wait until both have caught up.
    let s = server.wait_stats("published and delivered", |s| {
        s["total"]["published"].as_u64() == Some(100)
            && s["total"]["delivered"].as_u64() == Some(100 * n)
    });
    let published = per_shard(&s, "published");
    let delivered = per_shard(&s, "delivered");
    let publisher_shard = published
        .iter()
        .position(|&p| p == 100)
        .expect("one shard took every publish");
    let other = 1 - publisher_shard;
    assert!(
        delivered[other] >= 100,
        "shard {other} (not the publisher's) delivered: {s}"
    );
}

#[test]
fn patterns_and_sharded_channels() {
    for shards in [1, 2] {
        let server = Server::start(shards, &[]);
        let (tx, rx) = mpsc::channel();
        let p = spawn_subscriber(server.url(), vec![], vec!["user.*".into()], 3, tx.clone());
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let client = redis::Client::open(server.url()).unwrap();
        let mut con = client.get_connection().unwrap();
        assert_eq!(publish(&mut con, "user.1", "a"), 1);
        assert_eq!(publish(&mut con, "other", "b"), 0);
        assert_eq!(publish(&mut con, "user.2", "c"), 1);
        assert_eq!(publish(&mut con, "user.", "d"), 1);
        assert_eq!(
            p.join().unwrap(),
            vec![
                ("user.1".into(), "a".into()),
                ("user.2".into(), "c".into()),
                ("user.".into(), "d".into())
            ]
        );

        // SSUBSCRIBE/SPUBLISH is its own namespace: PUBLISH does not reach it.
        let mut raw = support::RespConn::connect(server.resp);
        raw.cmd(&[b"SSUBSCRIBE", b"orders"]);
        assert_eq!(
            raw.read_replies(1),
            b"*3\r\n$10\r\nssubscribe\r\n$6\r\norders\r\n:1\r\n"
        );
        assert_eq!(publish(&mut con, "orders", "plain"), 0);
        let n: i64 = redis::cmd("SPUBLISH")
            .arg("orders")
            .arg("sharded")
            .query(&mut con)
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            raw.read_replies(1),
            b"*3\r\n$8\r\nsmessage\r\n$6\r\norders\r\n$7\r\nsharded\r\n"
        );
        let numsub: Vec<redis::Value> = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg("orders")
            .query(&mut con)
            .unwrap();
        assert_eq!(numsub.len(), 2);
    }
}

#[test]
fn pubsub_introspection_spans_shards() {
    let server = Server::start(2, &[]);
    let mut conns: Vec<support::RespConn> = Vec::new();
    for ch in ["a1", "a2", "b1", "c9"] {
        for _ in 0..2 {
            let mut c = support::RespConn::connect(server.resp);
            c.cmd(&[b"SUBSCRIBE", ch.as_bytes()]);
            c.read_replies(1);
            conns.push(c);
        }
    }
    let mut p = support::RespConn::connect(server.resp);
    p.cmd(&[b"PSUBSCRIBE", b"x*"]);
    p.read_replies(1);
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let mut chans: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query(&mut con)
        .unwrap();
    chans.sort();
    assert_eq!(chans, vec!["a1", "a2", "b1", "c9"]);
    let a: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg("a*")
        .query(&mut con)
        .unwrap();
    assert_eq!(a.len(), 2);
    let numsub: Vec<redis::Value> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("a1")
        .arg("zz")
        .query(&mut con)
        .unwrap();
    assert_eq!(
        numsub,
        vec![
            redis::Value::BulkString(b"a1".to_vec()),
            redis::Value::Int(2),
            redis::Value::BulkString(b"zz".to_vec()),
            redis::Value::Int(0)
        ]
    );
    let numpat: i64 = redis::cmd("PUBSUB").arg("NUMPAT").query(&mut con).unwrap();
    assert_eq!(numpat, 1);
}

/// Pipelined queries that every shard must answer come back complete and in order, each
/// before the command after it (the connection's input waits for each answer).
#[test]
fn pipelined_queries_across_shards_answer_in_order() {
    let server = Server::start(2, &[]);
    let mut sub = support::RespConn::connect(server.resp);
    sub.cmd(&[b"SUBSCRIBE", b"q1", b"q2", b"q3"]);
    sub.read_replies(3);
    let mut c = support::RespConn::connect(server.resp);
    let mut pipeline = Vec::new();
    let mut want = Vec::new();
    for i in 0..300 {
        match i % 3 {
            0 => {
                pipeline.extend_from_slice(b"*3\r\n$6\r\nPUBSUB\r\n$6\r\nNUMSUB\r\n$2\r\nq2\r\n");
                want.extend_from_slice(b"*2\r\n$2\r\nq2\r\n:1\r\n");
            }
            1 => {
                pipeline.extend_from_slice(b"*3\r\n$6\r\nPUBSUB\r\n$8\r\nCHANNELS\r\n$2\r\nq3\r\n");
                want.extend_from_slice(b"*1\r\n$2\r\nq3\r\n");
            }
            _ => {
                let n = i.to_string();
                pipeline.extend_from_slice(
                    format!("*2\r\n$4\r\nECHO\r\n${}\r\n{n}\r\n", n.len()).as_bytes(),
                );
                want.extend_from_slice(format!("${}\r\n{n}\r\n", n.len()).as_bytes());
            }
        }
    }
    c.send(&pipeline);
    assert_eq!(
        String::from_utf8_lossy(&c.read_replies(300)),
        String::from_utf8_lossy(&want)
    );
}

/// Commands a client sent before closing its side run even when the broker had paused them
/// (here behind a PUBSUB query that every shard must answer): the PUBLISH is delivered and
/// both replies come back before the connection closes.
#[test]
fn input_paused_when_the_client_half_closes_still_runs() {
    use std::io::{Read, Write};
    let server = Server::start(2, &[]);
    let mut sub = support::RespConn::connect(server.resp);
    sub.cmd(&[b"SUBSCRIBE", b"c"]);
    sub.read_replies(1);
    for i in 0..30 {
        let mut p = std::net::TcpStream::connect(server.resp).unwrap();
        p.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let payload = format!("m{i}");
        p.write_all(
            format!(
                "*3\r\n$6\r\nPUBSUB\r\n$6\r\nNUMSUB\r\n$1\r\nx\r\n*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n${}\r\n{payload}\r\n",
                payload.len()
            )
            .as_bytes(),
        )
        .unwrap();
        p.shutdown(std::net::Shutdown::Write).unwrap();
        let mut replies = Vec::new();
        p.read_to_end(&mut replies).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&replies),
            "*2\r\n$1\r\nx\r\n:0\r\n:1\r\n",
            "round {i}"
        );
        let want = format!(
            "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n${}\r\n{payload}\r\n",
            payload.len()
        );
        assert_eq!(String::from_utf8_lossy(&sub.read_replies(1)), want);
    }
}
