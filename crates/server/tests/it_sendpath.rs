//! The send path under its less common conditions: zero-copy sends for large frames, and
//! full shard-to-shard rings (back-pressure without loss).

mod support;

use support::{per_shard, RespConn, Server};

fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

#[test]
fn large_frames_go_zero_copy_intact() {
    let server = Server::start(
        2,
        &["--zerocopy-threshold", "4096", "--max-bulk-len", "262144"],
    );
    let mut subs: Vec<RespConn> = (0..3)
        .map(|_| {
            let mut c = RespConn::connect(server.resp);
            c.cmd(&[b"SUBSCRIBE", b"big"]);
            c.read_replies(1);
            c
        })
        .collect();
    let mut publ = RespConn::connect(server.resp);
    const N: usize = 40;
    for i in 0..N {
        let len = if i % 2 == 0 { 100_000 } else { 100 };
        publ.cmd(&[b"PUBLISH", b"big", &payload(i, len)]);
    }
    assert_eq!(publ.read_replies(N), b":3\r\n".repeat(N));
    for s in &mut subs {
        for i in 0..N {
            let len = if i % 2 == 0 { 100_000 } else { 100 };
            let mut want = Vec::new();
            want.extend_from_slice(
                format!("*3\r\n$7\r\nmessage\r\n$3\r\nbig\r\n${len}\r\n").as_bytes(),
            );
            want.extend_from_slice(&payload(i, len));
            want.extend_from_slice(b"\r\n");
            assert!(s.read_replies(1) == want, "message {i} differs");
        }
    }
    server.wait_stats("zero-copy sends", |s| {
        s["total"]["zerocopy_sends"].as_u64() >= Some(N as u64 / 2)
    });
}

#[test]
fn full_rings_lose_nothing_and_are_counted() {
    let server = Server::start(2, &["--ring-capacity", "2"]);
    let channels: Vec<String> = (0..8).map(|i| format!("ch{i}")).collect();
    // Subscribers until both shards hold some, each on every channel.
    let mut subs: Vec<RespConn> = Vec::new();
    loop {
        let mut c = RespConn::connect(server.resp);
        let mut argv: Vec<&[u8]> = vec![b"SUBSCRIBE"];
        argv.extend(channels.iter().map(|c| c.as_bytes()));
        c.cmd(&argv);
        c.read_replies(channels.len());
        subs.push(c);
        let want = (subs.len() * channels.len()) as u64;
        let s = server.wait_stats("subscriptions", |s| {
            s["total"]["subscriptions"].as_u64() == Some(want)
        });
        if per_shard(&s, "subscriptions").iter().all(|&n| n > 0) {
            break;
        }
        assert!(subs.len() < 32);
    }
    // One pipelined burst: far more than a 2-slot ring holds.
    const PER_CHANNEL: usize = 500;
    let mut burst = Vec::new();
    for i in 0..PER_CHANNEL {
        for ch in &channels {
            let msg = format!("{i}");
            burst.extend_from_slice(
                format!(
                    "*3\r\n$7\r\nPUBLISH\r\n${}\r\n{ch}\r\n${}\r\n{msg}\r\n",
                    ch.len(),
                    msg.len()
                )
                .as_bytes(),
            );
        }
    }
    let mut publ = RespConn::connect(server.resp);
    publ.send(&burst);
    let n = subs.len();
    assert_eq!(
        publ.read_replies(PER_CHANNEL * channels.len()),
        format!(":{n}\r\n")
            .repeat(PER_CHANNEL * channels.len())
            .into_bytes()
    );
    for s in &mut subs {
        let mut next = vec![0usize; channels.len()];
        for _ in 0..PER_CHANNEL * channels.len() {
            let r = s.read_replies(1);
            let text = String::from_utf8(r).unwrap();
            let parts: Vec<&str> = text.split("\r\n").collect();
            let ch: usize = parts[4].trim_start_matches("ch").parse().unwrap();
            let seq: usize = parts[6].parse().unwrap();
            assert_eq!(seq, next[ch], "per-channel order on {}", parts[4]);
            next[ch] += 1;
        }
    }
    server.wait_stats("ring_full", |s| s["total"]["ring_full"].as_u64() > Some(0));
}

/// A publisher whose input the broker pauses (full rings) is not closed for the input the
/// pause left unparsed: `max_unparsed_bytes` bounds an incomplete command, not commands the
/// broker chose to hold back.
#[test]
fn paused_publisher_keeps_its_connection() {
    let server = Server::start(
        2,
        &[
            "--ring-capacity",
            "2",
            "--max-bulk-len",
            "16384",
            "--max-unparsed-bytes",
            "32768",
        ],
    );
    let mut subs: Vec<RespConn> = Vec::new();
    loop {
        let mut c = RespConn::connect(server.resp);
        c.cmd(&[b"SUBSCRIBE", b"big"]);
        c.read_replies(1);
        subs.push(c);
        let want = subs.len() as u64;
        let s = server.wait_stats("subscriptions", |s| {
            s["total"]["subscriptions"].as_u64() == Some(want)
        });
        if per_shard(&s, "subscriptions").iter().all(|&n| n > 0) {
            break;
        }
        assert!(subs.len() < 32);
    }
    // 4 MiB of pipelined PUBLISH, over a hundred times max_unparsed_bytes.
    const COUNT: usize = 4096;
    let body = vec![b'x'; 1000];
    let mut burst = Vec::new();
    for _ in 0..COUNT {
        burst.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n$3\r\nbig\r\n$1000\r\n");
        burst.extend_from_slice(&body);
        burst.extend_from_slice(b"\r\n");
    }
    let n = subs.len();
    let frame_len = "*3\r\n$7\r\nmessage\r\n$3\r\nbig\r\n$1000\r\n".len() + 1002;
    let readers: Vec<_> = subs
        .into_iter()
        .map(|s| std::thread::spawn(move || read_bytes(s.stream, COUNT * frame_len)))
        .collect();
    let publ = RespConn::connect(server.resp);
    let writer = {
        let mut w = publ.stream.try_clone().unwrap();
        std::thread::spawn(move || std::io::Write::write_all(&mut w, &burst).unwrap())
    };
    let replies = format!(":{n}\r\n").repeat(COUNT).into_bytes();
    assert_eq!(read_bytes(publ.stream, replies.len()), replies);
    writer.join().unwrap();
    for r in readers {
        assert_eq!(r.join().unwrap().len(), COUNT * frame_len);
    }
    let s = server.stats();
    assert_eq!(s["total"]["input_overflows"], 0, "{s}");
}

/// Reads exactly `len` bytes (bounded: 60 s, far above the second or two this takes even in a
/// debug build beside other tests).
fn read_bytes(mut s: std::net::TcpStream, len: usize) -> Vec<u8> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut out = Vec::with_capacity(len);
    let mut tmp = vec![0u8; 1 << 16];
    while out.len() < len {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out: {} of {len} bytes",
            out.len()
        );
        match std::io::Read::read(&mut s, &mut tmp) {
            Ok(0) => panic!("closed after {} of {len} bytes", out.len()),
            Ok(k) => out.extend_from_slice(&tmp[..k]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    out
}
