//! Cross-node fan-out on a fake two-node layout: four shards on two CPUs (two per CPU, each
//! CPU its own NUMA node through `CORECAST_SYSFS_ROOT`), so a message to a remote node goes
//! to that node's relay shard, which forwards it. Every subscriber must still get every
//! message once, in the owner's order, and a WebSocket resume whose answer crosses a relay
//! must still replay exactly the gap, then live.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use corecast_runtime::topology::{LayoutCpu, SysfsLayout};
use serde_json::{json, Value};
use support::*;

const CHANNELS: usize = 8;

fn two_node_server(tag: &str) -> (Server, std::path::PathBuf) {
    let cpus = corecast_runtime::process_cpus().unwrap();
    assert!(cpus.len() >= 2, "needs two CPUs");
    let layout = SysfsLayout {
        cpus: (0..2)
            .map(|i| LayoutCpu {
                cpu: cpus[i],
                node: i,
                socket: i,
                core: 0,
            })
            .collect(),
        offline: Vec::new(),
        node_dirs: true,
        missing_nodes: Vec::new(),
    };
    let root = std::env::temp_dir().join(format!("corecast-relay-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    layout.write(&root).unwrap();
    let cores = format!("{},{}", cpus[0], cpus[1]);
    let server = Server::start_env(
        4,
        &["--cores", &cores],
        &[
            ("CORECAST_SYSFS_ROOT", root.to_str().unwrap()),
            ("CORECAST_SHARDS_PER_CPU", "2"),
        ],
    );
    let log = server.log();
    assert!(log.contains("shards span NUMA nodes"), "{log}");
    (server, root)
}

#[test]
fn every_subscriber_gets_every_message_once_in_order_through_relays() {
    let (server, root) = two_node_server("fanout");
    let mut subs: Vec<RespConn> = (0..48)
        .map(|_| {
            let mut c = RespConn::connect(server.resp);
            let mut argv: Vec<Vec<u8>> = vec![b"SUBSCRIBE".to_vec()];
            argv.extend((0..CHANNELS).map(|i| format!("ch{i}").into_bytes()));
            let argv: Vec<&[u8]> = argv.iter().map(Vec::as_slice).collect();
            c.cmd(&argv);
            c.read_replies(CHANNELS);
            c
        })
        .collect();
    let mut psub = RespConn::connect(server.resp);
    psub.cmd(&[b"PSUBSCRIBE", b"ch*"]);
    psub.read_replies(1);
    let stats = server.wait_stats("every subscription counted", |s| {
        s["total"]["subscriptions"] == 48 * CHANNELS as u64 + 1
    });
    assert!(
        per_shard(&stats, "subscriptions").iter().all(|&n| n > 0),
        "subscribers on every shard (48 connections spread by SO_REUSEPORT): {stats}"
    );

    const PER_CHANNEL: usize = 40;
    let mut publisher = RespConn::connect(server.resp);
    for n in 0..PER_CHANNEL {
        for ch in 0..CHANNELS {
            let payload = format!("{ch}:{n}");
            publisher.cmd(&[b"PUBLISH", format!("ch{ch}").as_bytes(), payload.as_bytes()]);
        }
    }
    let replies = publisher.read_replies(PER_CHANNEL * CHANNELS);
    let text = String::from_utf8_lossy(&replies);
    assert_eq!(
        text.matches(":49\r\n").count(),
        PER_CHANNEL * CHANNELS,
        "every publish reached 48 subscribers and the pattern: {text}"
    );
    for (i, c) in subs.iter_mut().enumerate() {
        let got = c.read_replies(PER_CHANNEL * CHANNELS);
        let got = String::from_utf8_lossy(&got).to_string();
        let mut next = [0usize; CHANNELS];
        for payload in got
            .split("\r\n")
            .filter(|l| l.contains(':') && !l.starts_with(':'))
        {
            let (ch, n) = payload.split_once(':').unwrap();
            let (ch, n): (usize, usize) = (ch.parse().unwrap(), n.parse().unwrap());
            assert_eq!(
                n, next[ch],
                "subscriber {i}, channel {ch}: out of order or repeated"
            );
            next[ch] += 1;
        }
        assert_eq!(
            next, [PER_CHANNEL; CHANNELS],
            "subscriber {i} missed messages"
        );
    }
    let got = psub.read_replies(PER_CHANNEL * CHANNELS);
    assert_eq!(
        String::from_utf8_lossy(&got).matches("pmessage").count(),
        PER_CHANNEL * CHANNELS
    );
    let s = server.wait_stats("relayed counted", |s| {
        s["total"]["relayed"].as_u64() > Some(0)
    });
    let relayed = s["total"]["relayed"].as_u64().unwrap();
    // Each message crosses to the other node once (channel and pattern deliveries alike).
    assert!(
        relayed <= 2 * (PER_CHANNEL * CHANNELS) as u64,
        "at most one handle per message and subscription kind crosses: {relayed}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(root);
}

/// A raw WebSocket client of the native protocol (upgrade, masked text frames out).
fn ws(server: &Server) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(server.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(ws_upgrade_request("").as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut b).unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&b[..n]);
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    buf.drain(..end);
    (s, buf)
}

fn ws_send(s: &mut TcpStream, v: &Value) {
    let mut out = Vec::new();
    corecast_proto::ws::client_frame(&mut out, 1, true, [9, 8, 7, 6], v.to_string().as_bytes());
    s.write_all(&out).unwrap();
}

fn ws_recv(s: &mut TcpStream, buf: &mut Vec<u8>) -> Value {
    loop {
        if let Some((frame, used)) = parse_server_frame(buf) {
            buf.drain(..used);
            if frame.opcode == 1 {
                return serde_json::from_slice(&frame.payload).unwrap();
            }
            continue;
        }
        let mut b = [0u8; 65536];
        let n = s.read(&mut b).expect("read");
        assert!(n > 0, "closed");
        buf.extend_from_slice(&b[..n]);
    }
}

#[test]
fn websocket_resume_across_a_relay_replays_exactly_the_gap() {
    let (server, root) = two_node_server("resume");
    for ch in 0..CHANNELS {
        let ch = format!("ch{ch}");
        // Connections land on shards at random: many resumers cover every (owner, shard).
        let (mut a, mut abuf) = ws(&server);
        ws_send(&mut a, &json!({"op": "sub", "ch": ch, "id": 1}));
        let ok = ws_recv(&mut a, &mut abuf);
        assert_eq!(ok["op"], "ok", "{ok}");
        let since = json!({"epoch": ok["epoch"], "seq": ok["seq"]});
        drop(a);
        let mut publisher = RespConn::connect(server.resp);
        for n in 1..=5 {
            publisher.cmd(&[b"PUBLISH", ch.as_bytes(), format!("{n}").as_bytes()]);
        }
        publisher.read_replies(5);
        let mut clients: Vec<(TcpStream, Vec<u8>)> = (0..12).map(|_| ws(&server)).collect();
        for (c, _) in &mut clients {
            ws_send(c, &json!({"op": "sub", "ch": ch, "since": since}));
        }
        // A live message published while the joins are in flight must come once, after
        // the replay.
        publisher.cmd(&[b"PUBLISH", ch.as_bytes(), b"6"]);
        publisher.read_replies(1);
        for (c, buf) in &mut clients {
            let ok = ws_recv(c, buf);
            assert_eq!(ok["op"], "ok", "{ok}");
            let from = ok["seq"].as_u64().unwrap();
            assert!(from == 5 || from == 6, "{ok}");
            let want: Vec<u64> = (1..=6).collect();
            let mut got = Vec::new();
            while got.len() < want.len() {
                let m = ws_recv(c, buf);
                got.push(m["data"].as_u64().unwrap());
            }
            assert_eq!(got, want, "{ch}: replay then live, no gap, no duplicate");
        }
    }
    drop(server);
    let _ = std::fs::remove_dir_all(root);
}
