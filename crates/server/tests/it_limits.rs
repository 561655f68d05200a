//! Every client's cost is bounded: names, patterns, channel tables, incomplete input and
//! history each have a limit, a refusal the client can read, and a counter. Each test here
//! reproduces a flood a hostile client could send (scaled to run in seconds) and asserts
//! the bound it now obeys.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use support::{assert_still_serving, http_post, RespConn, Server, WsClient};

const MIB: u64 = 1 << 20;

/// The tests that time a canary or a shard's turns, and the floods, run one at a time: on
/// two CPUs, three floods at once make every wall-clock figure a measure of the others.
static TIMED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn timed() -> std::sync::MutexGuard<'static, ()> {
    TIMED.lock().unwrap_or_else(|p| p.into_inner())
}

#[test]
fn long_names_get_a_readable_refusal_on_every_front_end() {
    let mut server = Server::start(2, &[]);
    let ok_name = vec![b'c'; 1024];
    let long = vec![b'c'; 1025];
    let mut c = RespConn::connect(server.resp);
    c.cmd(&[b"SUBSCRIBE", &long, b"fine"]);
    let got = c.read_replies(2);
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("-ERR channel name too long (max 1024 bytes)\r\n*3\r\n$9\r\nsubscribe\r\n$4\r\nfine\r\n:1\r\n"),
        "{text}"
    );
    c.cmd(&[b"SUBSCRIBE", &ok_name]);
    assert!(c.read_replies(1).ends_with(b":2\r\n"), "1024 bytes fit");
    let mut p = RespConn::connect(server.resp);
    p.cmd(&[b"PUBLISH", &long, b"x"]);
    assert_eq!(
        p.read_replies(1),
        b"-ERR channel name too long (max 1024 bytes)\r\n"
    );
    p.cmd(&[b"PSUBSCRIBE", &vec![b'*'; 257]]);
    assert_eq!(
        p.read_replies(1),
        b"-ERR pattern too long (max 256 bytes)\r\n"
    );
    let long_s = String::from_utf8(long.clone()).unwrap();
    let mut ws = WsClient::connect(server.http);
    ws.send_text(&serde_json::json!({"op":"sub","ch":long_s,"id":1}).to_string());
    let e = ws.json();
    assert_eq!(
        (e["op"].as_str(), e["code"].as_str()),
        (Some("error"), Some("channel_too_long")),
        "{e}"
    );
    ws.send_text(&serde_json::json!({"op":"pub","ch":long_s,"data":1,"id":2}).to_string());
    assert_eq!(ws.json()["code"], "channel_too_long");
    let (status, body) = http_post(server.http, &format!("/pub?ch={long_s}"), None, b"x");
    assert_eq!(
        (status, body.as_str()),
        (400, "channel name too long (max 1024 bytes)\n")
    );
    let (status, body) = support::http_get(server.http, &format!("/sse?ch={long_s}"));
    assert_eq!(
        (status, body.as_str()),
        (400, "channel name too long (max 1024 bytes)\n")
    );
    let s = server.wait_stats("refusals counted", |s| {
        s["total"]["channel_refusals"].as_u64() >= Some(6)
    });
    assert_eq!(s["total"]["channel_refusals"], 6, "{}", s["total"]);
    assert_eq!(s["total"]["pattern_refusals"], 1);
    assert_still_serving(&mut server);
}

#[test]
fn patterns_are_capped_per_connection_and_per_process() {
    let server = Server::start(
        2,
        &["--max-patterns", "6", "--max-patterns-per-connection", "4"],
    );
    let mut a = RespConn::connect(server.resp);
    a.cmd(&[b"PSUBSCRIBE", b"a1*", b"a2*", b"a3*", b"a4*", b"a5*"]);
    let got = String::from_utf8(a.read_replies(5)).unwrap();
    assert!(
        got.ends_with("-ERR max patterns per connection reached (4)\r\n"),
        "{got}"
    );
    // Re-subscribing a held pattern is never refused.
    a.cmd(&[b"PSUBSCRIBE", b"a1*"]);
    assert!(a.read_replies(1).ends_with(b":4\r\n"));
    let mut b = RespConn::connect(server.resp);
    b.cmd(&[b"PSUBSCRIBE", b"b1*", b"b2*", b"b3*", b"a1*"]);
    let got = String::from_utf8(b.read_replies(4)).unwrap();
    assert!(
        got.contains("$3\r\nb1*\r\n:1\r\n") && got.contains("$3\r\nb2*\r\n:2\r\n"),
        "{got}"
    );
    assert!(
        got.contains("-ERR max patterns reached (6)\r\n"),
        "the seventh distinct pattern is refused: {got}"
    );
    assert!(
        got.ends_with("$3\r\na1*\r\n:3\r\n"),
        "a pattern the process holds already costs nothing more: {got}"
    );
    let mut q = RespConn::connect(server.resp);
    q.cmd(&[b"PUBSUB", b"NUMPAT"]);
    assert_eq!(q.read_replies(1), b":6\r\n");
    let s = server.wait_stats("refusals counted", |s| {
        s["total"]["pattern_refusals"].as_u64() >= Some(2)
    });
    assert_eq!(s["total"]["pattern_refusals"], 2);
}

/// Publishing 1-byte payloads to channels with long names, with history on: each publish
/// used to keep its name for `history_ttl_s` outside any budget (2.98 GB in 17 s). Now the
/// owner's table is charged for it and, when full, forgets channels nobody subscribes to.
#[test]
fn a_long_name_flood_stays_in_the_channel_budget() {
    let _timed = timed();
    let budget = 8 * MIB;
    let server = Server::start(
        2,
        &[
            "--max-channel-bytes",
            "65536",
            "--max-channel-table-bytes",
            &budget.to_string(),
        ],
    );
    let mut keep = RespConn::connect(server.resp);
    keep.cmd(&[b"SUBSCRIBE", b"kept"]);
    keep.read_replies(1);
    let before = server.rss_bytes();
    let mut p = RespConn::connect(server.resp);
    let mut name = vec![b'n'; 65536];
    // 1,500 names of 64 KiB: 96 MiB of names, six times both shards' budgets.
    for round in 0..15 {
        let mut batch = Vec::new();
        for i in 0..100u32 {
            name[..8].copy_from_slice(format!("{:08}", round * 100 + i).as_bytes());
            batch.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n$65536\r\n");
            batch.extend_from_slice(&name);
            batch.extend_from_slice(b"\r\n$1\r\nx\r\n");
        }
        p.send(&batch);
        let replies = p.read_replies(100);
        assert_eq!(replies, b":0\r\n".repeat(100));
    }
    let s = server.stats();
    for shard in s["shards"].as_array().unwrap() {
        assert!(
            shard["channel_table_bytes"].as_u64().unwrap() <= budget,
            "{shard}"
        );
    }
    assert!(
        s["total"]["channels_evicted"].as_u64().unwrap() > 1000,
        "{}",
        s["total"]
    );
    let grown = server.rss_bytes().saturating_sub(before);
    assert!(
        grown < 2 * budget + 24 * MIB,
        "RSS grew {} MiB for 96 MiB of names (budget 2 x 8 MiB)",
        grown / MIB
    );
    // A subscribed channel is never evicted.
    p.cmd(&[b"PUBLISH", b"kept", b"still"]);
    assert_eq!(p.read_replies(1), b":1\r\n");
}

/// Subscribe-then-unsubscribe over fresh names with history on keeps each channel at its
/// owner for resumes; the owner's budget bounds them (the owner is often another shard).
#[test]
fn subscribe_churn_over_fresh_names_stays_in_the_channel_budget() {
    let _timed = timed();
    let budget = 4 * MIB;
    let server = Server::start(
        2,
        &[
            "--max-channel-bytes",
            "16384",
            "--max-channel-table-bytes",
            &budget.to_string(),
        ],
    );
    let mut c = RespConn::connect(server.resp);
    let mut name = vec![b'c'; 16384];
    for round in 0..20 {
        let mut batch = Vec::new();
        for i in 0..100u32 {
            name[..8].copy_from_slice(format!("{:08}", round * 100 + i).as_bytes());
            for cmd in [&b"SUBSCRIBE"[..], b"UNSUBSCRIBE"] {
                batch.extend_from_slice(format!("*2\r\n${}\r\n", cmd.len()).as_bytes());
                batch.extend_from_slice(cmd);
                batch.extend_from_slice(b"\r\n$16384\r\n");
                batch.extend_from_slice(&name);
                batch.extend_from_slice(b"\r\n");
            }
        }
        c.send(&batch);
        c.read_replies(200);
    }
    // 2,000 idle channels of 16 KiB (32 MiB) were kept for 300 s; now each shard's table
    // stays in its budget, give or take the channels it owns that the other shard's client
    // holds at the moment of the snapshot (admitted by that shard's budget).
    let s = server.wait_stats("idle channels evicted", |s| {
        s["total"]["channels_evicted"].as_u64() > Some(1000)
    });
    for shard in s["shards"].as_array().unwrap() {
        assert!(
            shard["channel_table_bytes"].as_u64().unwrap() <= budget + 4 * (16384 + 128),
            "{shard}"
        );
    }
}

/// 4,000 connections each holding 1 MiB of an unfinished command held 4 GiB. Scaled: 60
/// connections of 512 KiB each against a 4 MiB budget on one shard.
#[test]
fn unfinished_commands_are_bounded_over_the_shard() {
    let _timed = timed();
    let budget = 4 * MIB;
    let mut server = Server::start(1, &["--max-unparsed-bytes-per-shard", &budget.to_string()]);
    let before = server.rss_bytes();
    let chunk = vec![b'u'; 512 << 10];
    let mut held = Vec::new();
    for _ in 0..60 {
        let mut s = TcpStream::connect(server.resp).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(b"*3\r\n$7\r\nPUBLISH\r\n$1\r\na\r\n$1000000\r\n");
        let _ = s.write_all(&chunk);
        held.push(s);
    }
    let s = server.wait_stats("the largest incomplete inputs closed", |s| {
        s["total"]["input_budget_closes"].as_u64() >= Some(52)
    });
    assert!(
        s["total"]["input_overflows"].as_u64() == Some(0),
        "no one connection passed max_unparsed_bytes: {}",
        s["total"]
    );
    let grown = server.rss_bytes().saturating_sub(before);
    assert!(
        grown < budget + 16 * MIB,
        "RSS grew {} MiB for 30 MiB of incomplete input (budget 4 MiB)",
        grown / MIB
    );
    drop(held);
    assert_still_serving(&mut server);
    // A complete command of the same size still goes through.
    let mut c = RespConn::connect(server.resp);
    c.cmd(&[b"PUBLISH", b"a", &vec![b'p'; 1_000_000]]);
    assert_eq!(c.read_replies(1), b":0\r\n");
}

#[test]
fn client_names_are_capped() {
    let server = Server::start(1, &[]);
    let mut c = RespConn::connect(server.resp);
    c.cmd(&[b"CLIENT", b"SETNAME", &vec![b'n'; 257]]);
    assert_eq!(
        c.read_replies(1),
        b"-ERR client name too long (max 256 bytes)\r\n"
    );
    c.cmd(&[b"CLIENT", b"SETNAME", &vec![b'n'; 256]]);
    assert_eq!(c.read_replies(1), b"+OK\r\n");
}

/// One publisher spraying 200 channels with 1 MiB messages used to evict every other
/// channel's history (the least recently published went first) and end its epoch. Channels
/// nobody subscribes to now go first, so a subscribed channel's history stays whole.
#[test]
fn a_spray_of_big_publishes_leaves_a_subscribed_channel_history_whole() {
    let _timed = timed();
    let mut server = Server::start(2, &["--history-max-bytes", &(16 * MIB).to_string()]);
    let mut sub = RespConn::connect(server.resp);
    sub.cmd(&[b"SUBSCRIBE", b"victim"]);
    sub.read_replies(1);
    let mut epoch = String::new();
    for i in 0..5 {
        let (status, body) = http_post(
            server.http,
            "/pub?ch=victim",
            None,
            format!("v{i}").repeat(20_000).as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        epoch = v["epoch"].as_str().unwrap().to_string();
    }
    let big = vec![b's'; 1 << 20];
    let mut p = RespConn::connect(server.resp);
    for round in 0..4 {
        for i in 0..50 {
            let ch = format!("spray{}", round * 50 + i);
            p.cmd(&[b"PUBLISH", ch.as_bytes(), &big]);
        }
        p.read_replies(50);
    }
    // The sweep (once a second) brings the shards back under their budget.
    let s = server.wait_stats("history back under budget", |s| {
        s["shards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|sh| sh["history_bytes"].as_u64().unwrap() <= 16 * MIB)
    });
    assert!(s["total"]["history_bytes"].as_u64().unwrap() > 0);
    let mut ws = WsClient::connect(server.http);
    let since =
        serde_json::json!({"op":"sub","ch":"victim","id":1,"since":{"epoch":epoch,"seq":0}});
    ws.send_text(&since.to_string());
    let ok = ws.json();
    assert_eq!(ok["op"], "ok", "{ok}");
    for i in 0..5u64 {
        let m = ws.json();
        assert_eq!(m["seq"], i + 1, "{m}");
    }
    assert_still_serving(&mut server);
}

/// Pings `server` every 5 ms on its own connection while `work` runs; returns the slowest
/// round trip seen.
fn slowest_ping_during(server: &Server, work: impl FnOnce()) -> Duration {
    let addr = server.resp;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let canary = std::thread::spawn(move || {
        let mut c = RespConn::connect(addr);
        let mut slowest = Duration::ZERO;
        for _ in 0..2000 {
            if flag.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let t = std::time::Instant::now();
            c.cmd(&[b"PING"]);
            assert_eq!(c.read_replies(1), b"+PONG\r\n");
            slowest = slowest.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(5));
        }
        slowest
    });
    std::thread::sleep(Duration::from_millis(50));
    work();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    canary.join().unwrap()
}

/// PSUBSCRIBE `"*" + "a"*L + "b"`, then PUBLISH to `"a"*L`: the backtracking matcher took
/// 6.1 CPU-seconds at L = 100 KB and froze its shard. Run at the largest lengths that can be
/// configured, so this exercises the matcher, not the refusal.
#[test]
fn an_adversarial_pattern_costs_a_publish_milliseconds_at_most() {
    let _timed = timed();
    let server = Server::start(
        1,
        &[
            "--max-pattern-bytes",
            "4096",
            "--max-channel-bytes",
            "65536",
        ],
    );
    let mut s = RespConn::connect(server.resp);
    let a = |n: usize| vec![b'a'; n];
    let mut tail_b = vec![b'*'];
    tail_b.extend(a(4094));
    tail_b.push(b'b');
    let mut middle = vec![b'*'];
    middle.extend(a(4093));
    middle.extend(b"b*");
    s.cmd(&[b"PSUBSCRIBE", &tail_b, &middle]);
    s.read_replies(2);
    let mut p = RespConn::connect(server.resp);
    let mut slowest_publish = Duration::ZERO;
    let slowest_ping = slowest_ping_during(&server, || {
        for _ in 0..10 {
            let t = std::time::Instant::now();
            p.cmd(&[b"PUBLISH", &a(65536), b"x"]);
            assert_eq!(p.read_replies(1), b":0\r\n");
            slowest_publish = slowest_publish.max(t.elapsed());
        }
    });
    assert!(
        slowest_publish < Duration::from_millis(50),
        "{slowest_publish:?}"
    );
    assert!(slowest_ping < Duration::from_millis(50), "{slowest_ping:?}");
}

/// 1,024 costly patterns (allowed here; the default `max_patterns` is 256) make every
/// publish cost about 6 ms;
/// a pipelined burst of them used to hold the shard for the whole burst. The turn budget
/// makes the rest of the burst wait for later turns, so another client is answered
/// meanwhile.
#[test]
fn a_burst_of_costly_publishes_does_not_hold_the_shard() {
    let _timed = timed();
    let server = Server::start(
        1,
        &[
            "--max-patterns",
            "1024",
            "--max-patterns-per-connection",
            "256",
        ],
    );
    let _holders = costly_patterns(&server, 256);
    let channel = vec![b'a'; 1024];
    let mut p = RespConn::connect(server.resp);
    let mut burst_time = Duration::ZERO;
    let slowest_ping = slowest_ping_during(&server, || {
        let started = std::time::Instant::now();
        let mut burst = Vec::new();
        for _ in 0..200 {
            burst.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n$1024\r\n");
            burst.extend_from_slice(&channel);
            burst.extend_from_slice(b"\r\n$1\r\nx\r\n");
        }
        p.send(&burst);
        let replies = p.read_replies(200);
        assert_eq!(replies, b":0\r\n".repeat(200));
        burst_time = started.elapsed();
    });
    // Without the turn budget a PING waits for the whole burst. The bound is relative to the
    // burst, since this machine's load (and the unoptimised test build) moves both.
    assert!(
        slowest_ping < burst_time / 4,
        "a PING waited {slowest_ping:?} behind a burst of {burst_time:?}"
    );
    let turn = &server.stats()["total"]["latency_us"]["turn"];
    eprintln!("burst {burst_time:?}, slowest PING {slowest_ping:?}, turns: {turn}");
}

/// SUBSCRIBE of `n` names `prefix0..prefix{n-1}` as one command.
fn subscribe_command(prefix: &str, n: usize) -> Vec<u8> {
    let mut v = format!("*{}\r\n$9\r\nSUBSCRIBE\r\n", n + 1).into_bytes();
    for i in 0..n {
        let name = format!("{prefix}{i}");
        v.extend_from_slice(format!("${}\r\n{name}\r\n", name.len()).as_bytes());
    }
    v
}

/// The longest shard turn so far (µs), from `/stats`.
fn longest_turn_us(server: &Server) -> u64 {
    server.stats()["total"]["latency_us"]["turn"]["max"]
        .as_u64()
        .unwrap()
}

/// One SUBSCRIBE of 65,536 names held its shard 120-192 ms. It now runs 512 names a turn,
/// the connection's later commands after it, in order.
#[test]
fn a_huge_subscribe_runs_in_slices_and_in_order() {
    let _timed = timed();
    let server = Server::start(1, &[]);
    let mut c = RespConn::connect(server.resp);
    let mut cmd = subscribe_command("huge.", 65536);
    cmd.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    let started = std::time::Instant::now();
    let mut elapsed = Duration::ZERO;
    let slowest_ping = slowest_ping_during(&server, || {
        c.send(&cmd);
        let mut n = 0;
        while n < 65536 {
            let batch = c.read_replies(1024.min(65536 - n));
            assert!(batch.starts_with(b"*3\r\n$9\r\nsubscribe\r\n"));
            n += 1024.min(65536 - n);
        }
        assert_eq!(
            c.read_replies(1),
            b"*2\r\n$4\r\npong\r\n$0\r\n\r\n",
            "PING after it"
        );
        elapsed = started.elapsed();
    });
    let turn_ms = longest_turn_us(&server) as f64 / 1000.0;
    eprintln!("SUBSCRIBE of 65,536: {elapsed:?}, slowest PING {slowest_ping:?}, longest turn {turn_ms} ms");
    // In one turn, as before, the longest turn was most of the command's time and a PING
    // waited for all of it. (Relative bounds: the machine's load moves both.)
    assert!(
        slowest_ping < elapsed / 3,
        "{slowest_ping:?} of {elapsed:?}"
    );
    assert!(
        Duration::from_micros((turn_ms * 1000.0) as u64) < elapsed / 3,
        "a turn of {turn_ms} ms in {elapsed:?}"
    );
    let s = server.wait_stats("65,536 subscriptions", |s| {
        s["total"]["subscriptions"].as_u64() == Some(65536)
    });
    assert_eq!(s["total"]["channels"], 65536);
    // The same names unsubscribed in one command, also in slices: the last confirmation
    // counts 0, and the PING behind it comes after.
    let mut cmd = subscribe_command("huge.", 65536);
    cmd.splice(
        ..cmd.iter().position(|&b| b == b'S').unwrap() + 9,
        *b"*65537\r\n$11\r\nUNSUBSCRIBE",
    );
    cmd.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    c.send(&cmd);
    let mut last = Vec::new();
    for _ in 0..64 {
        last = c.read_replies(1024);
    }
    assert!(
        last.ends_with(b"$10\r\nhuge.65535\r\n:0\r\n"),
        "{:?}",
        String::from_utf8_lossy(&last[last.len() - 40..])
    );
    assert_eq!(
        c.read_replies(1),
        b"+PONG\r\n",
        "not subscribed any more: a plain PONG"
    );
}

/// Closing connections that hold 65,536 subscriptions each held both shards about 0.9 s.
/// Their subscriptions are now released 2048 a turn.
#[test]
fn closing_connections_with_many_subscriptions_releases_them_in_slices() {
    let _timed = timed();
    let server = Server::start(1, &[]);
    let mut conns = Vec::new();
    for _ in 0..6 {
        let mut c = RespConn::connect(server.resp);
        c.send(&subscribe_command("many.", 65536));
        let mut n = 0;
        while n < 65536 {
            c.read_replies(4096);
            n += 4096;
        }
        conns.push(c);
    }
    server.wait_stats("all subscribed", |s| {
        s["total"]["subscriptions"].as_u64() == Some(6 * 65536)
    });
    let started = std::time::Instant::now();
    let mut elapsed = Duration::ZERO;
    let slowest_ping = slowest_ping_during(&server, || {
        drop(std::mem::take(&mut conns));
        server.wait_stats("all released", |s| {
            s["total"]["subscriptions"].as_u64() == Some(0)
        });
        elapsed = started.elapsed();
    });
    eprintln!("release of 393,216: {elapsed:?}, slowest PING {slowest_ping:?}");
    assert!(
        slowest_ping < elapsed / 3,
        "{slowest_ping:?} of {elapsed:?}"
    );
    // With history on, the owner keeps the idle channels for resumes until their TTL; the
    // subscriber side holds nothing any more.
    let s = server.stats();
    assert!(
        s["total"]["channel_table_bytes"].as_u64().unwrap() <= 65536 * (16 + 128),
        "{}",
        s["total"]
    );
}

/// A canary keeps working while the floods above run one after another: its subscriber gets
/// every message its publisher sends, in order, and quickly. Bounded: about 15 s.
#[test]
fn a_canary_keeps_working_through_every_flood() {
    let _timed = timed();
    let server = Server::start(
        2,
        &[
            "--max-channel-bytes",
            "65536",
            "--max-channel-table-bytes",
            &(8 * MIB).to_string(),
            "--max-unparsed-bytes-per-shard",
            &(4 * MIB).to_string(),
            "--history-max-bytes",
            &(8 * MIB).to_string(),
        ],
    );
    let addr = server.resp;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let canary = std::thread::spawn(move || {
        let mut sub = RespConn::connect(addr);
        sub.cmd(&[b"SUBSCRIBE", b"canary"]);
        sub.read_replies(1);
        let mut publ = RespConn::connect(addr);
        let mut latencies = Vec::new();
        let mut seq = 0u32;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) && seq < 5000 {
            seq += 1;
            let body = seq.to_string();
            let t = std::time::Instant::now();
            publ.cmd(&[b"PUBLISH", b"canary", body.as_bytes()]);
            assert_eq!(publ.read_replies(1), b":1\r\n", "message {seq}");
            let expected = format!(
                "*3\r\n$7\r\nmessage\r\n$6\r\ncanary\r\n${}\r\n{body}\r\n",
                body.len()
            );
            assert_eq!(sub.read_replies(1), expected.as_bytes(), "message {seq}");
            latencies.push(t.elapsed());
            std::thread::sleep(Duration::from_millis(1));
        }
        latencies
    });
    std::thread::sleep(Duration::from_millis(100));
    // Long names with history on.
    let mut p = RespConn::connect(server.resp);
    let mut name = vec![b'n'; 65536];
    for round in 0..5 {
        let mut batch = Vec::new();
        for i in 0..100u32 {
            name[..8].copy_from_slice(format!("{:08}", round * 100 + i).as_bytes());
            batch.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n$65536\r\n");
            batch.extend_from_slice(&name);
            batch.extend_from_slice(b"\r\n$1\r\nx\r\n");
        }
        p.send(&batch);
        p.read_replies(100);
    }
    // As many patterns as allowed (the finding was 8 x 65,536 simple ones), the adversarial
    // shape among them, then a burst of publishes they must all be matched against. (The
    // costliest shape, a long `*...*` middle, is `a_burst_of_costly_publishes_...` on one
    // shard: across shards its publishes queue ahead of others in the shards' ring.)
    let mut holders = Vec::new();
    for c in 0..4 {
        let mut h = RespConn::connect(server.resp);
        let mut cmd: Vec<Vec<u8>> = vec![b"PSUBSCRIBE".to_vec()];
        for i in 0..64 {
            let pat = if i == 0 {
                let mut pat = format!("*{c}").into_bytes();
                pat.extend(vec![b'a'; 250]);
                pat.push(b'b');
                pat
            } else {
                format!("news.{c}.{i}.*").into_bytes()
            };
            cmd.push(pat);
        }
        let argv: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
        h.cmd(&argv);
        h.read_replies(64);
        holders.push(h);
    }
    let mut burst = Vec::new();
    for _ in 0..300 {
        burst.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n$1024\r\n");
        burst.extend_from_slice(&[b'a'; 1024]);
        burst.extend_from_slice(b"\r\n$1\r\nx\r\n");
    }
    p.send(&burst);
    p.read_replies(300);
    drop(holders);
    // A huge SUBSCRIBE, then its connection closed.
    let mut big = RespConn::connect(server.resp);
    big.send(&subscribe_command("flood.", 30000));
    let mut n = 0;
    while n < 30000 {
        big.read_replies(1000);
        n += 1000;
    }
    drop(big);
    // Unfinished commands over the shard budget.
    let mut held = Vec::new();
    for _ in 0..24 {
        let mut s = TcpStream::connect(server.resp).unwrap();
        let _ = s.write_all(b"*3\r\n$7\r\nPUBLISH\r\n$1\r\na\r\n$1000000\r\n");
        let _ = s.write_all(&vec![b'u'; 512 << 10]);
        held.push(s);
    }
    // A spray of big publishes over HTTP.
    for i in 0..40 {
        let (status, _) = http_post(
            server.http,
            &format!("/pub?ch=spray{i}"),
            None,
            &vec![b's'; 1 << 20],
        );
        assert_eq!(status, 200);
    }
    drop(held);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut latencies = canary
        .join()
        .expect("the canary lost or reordered a message");
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "canary: {} messages, p50 {:?}, p99 {p99:?}, max {:?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies.last().unwrap()
    );
    assert!(
        latencies.len() >= 20,
        "the canary ran only {} rounds",
        latencies.len()
    );
    // Before the bounds the canary waited seconds (a 13 s publish, 4.8 s behind a pattern
    // burst, 839 ms sweeps). The target, p99 under 50 ms, is a measured figure (quiet
    // machine: 13-25 ms; docs/benchmarks.md); the test's bound is looser so that a loaded
    // machine (load 7 on 2 CPUs gave 250 ms) does not fail it, and still below what those
    // floods did.
    assert!(p99 < Duration::from_millis(500), "canary p99 {p99:?}");
}

/// Four connections holding `per_connection` patterns each of the costliest shape at the
/// default lengths: a 256-byte pattern whose middle (between its first and last `*`) is run
/// over the whole channel, 5-6 µs a match against a 1024-byte channel.
fn costly_patterns(server: &Server, per_connection: usize) -> Vec<RespConn> {
    (0..4)
        .map(|c| {
            let mut h = RespConn::connect(server.resp);
            let mut cmd: Vec<Vec<u8>> = vec![b"PSUBSCRIBE".to_vec()];
            for i in 0..per_connection {
                let mut p = b"*".to_vec();
                p.extend(format!("{c}{i:04}").as_bytes());
                p.extend(vec![b'a'; 248]);
                p.extend(b"b*");
                cmd.push(p);
            }
            let argv: Vec<&[u8]> = cmd.iter().map(Vec::as_slice).collect();
            h.cmd(&argv);
            h.read_replies(per_connection);
            h
        })
        .collect()
}

/// The shard a RESP connection landed on (CLIENT ID carries it in its top 16 bits).
fn shard_of(c: &mut RespConn) -> u64 {
    c.cmd(&[b"CLIENT", b"ID"]);
    let reply = String::from_utf8(c.read_replies(1)).unwrap();
    reply.trim_start_matches(':').trim().parse::<u64>().unwrap() >> 48
}

/// A channel name whose owner is shard `owner` of 2 (FNV-1a, as the broker hashes).
fn owned_by(owner: u64, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|n| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for &b in n.as_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
            h % 2 == owner
        })
        .unwrap()
}

/// Publishes through another shard wait in one ring: a client pipelining costly publishes
/// (each matched against 256 patterns on the owner) put every other client's publishes
/// behind all of them. With patterns, a connection's publishes in flight are capped by the
/// matching they cost, so another client of the same shard waits for a few of them only.
#[test]
fn costly_publishes_through_a_peer_do_not_queue_ahead_of_everyone() {
    let _timed = timed();
    let server = Server::start(2, &[]);
    let _holders = costly_patterns(&server, 64);
    let mut flood = RespConn::connect(server.resp);
    let shard = shard_of(&mut flood);
    let mut canary = loop {
        let mut c = RespConn::connect(server.resp);
        if shard_of(&mut c) == shard {
            break c;
        }
    };
    // Both publish to channels the other shard owns: one ring carries both.
    let mut heavy = owned_by(1 - shard, "a").into_bytes();
    heavy.resize(1024, b'a');
    let light = owned_by(1 - shard, "canary.");
    let mut burst = Vec::new();
    for _ in 0..400 {
        burst.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n$1024\r\n");
        burst.extend_from_slice(&heavy);
        burst.extend_from_slice(b"\r\n$1\r\nx\r\n");
    }
    let started = std::time::Instant::now();
    flood.send(&burst);
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let t = std::time::Instant::now();
        canary.cmd(&[b"PUBLISH", light.as_bytes(), b"x"]);
        assert_eq!(canary.read_replies(1), b":0\r\n");
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(flood.read_replies(400), b":0\r\n".repeat(400));
    let burst_time = started.elapsed();
    eprintln!("burst of 400 through the peer: {burst_time:?}, slowest canary publish {slowest:?}");
    assert!(
        slowest < burst_time / 4,
        "a publish waited {slowest:?} behind a burst of {burst_time:?}"
    );
}
