//! Bad input affects only the client that sent it: garbage, truncated and oversized commands,
//! idle and half-open clients, too many clients. The server keeps serving everyone else.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use support::{RespConn, Server};

/// A tiny deterministic PRNG (xorshift), so the garbage is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A fresh client can still ping, subscribe and receive a publish.
fn still_serving(server: &mut Server) {
    assert!(server.alive(), "corecast died; log:\n{}", server.log());
    let mut sub = RespConn::connect(server.resp);
    sub.cmd(&[b"SUBSCRIBE", b"health"]);
    assert_eq!(
        sub.read_replies(1),
        b"*3\r\n$9\r\nsubscribe\r\n$6\r\nhealth\r\n:1\r\n"
    );
    let mut publ = RespConn::connect(server.resp);
    publ.cmd(&[b"PING"]);
    assert_eq!(publ.read_replies(1), b"+PONG\r\n");
    publ.cmd(&[b"PUBLISH", b"health", b"ok"]);
    assert_eq!(publ.read_replies(1), b":1\r\n");
    assert_eq!(
        sub.read_replies(1),
        b"*3\r\n$7\r\nmessage\r\n$6\r\nhealth\r\n$2\r\nok\r\n"
    );
}

#[test]
fn random_garbage_gets_an_error_or_a_close() {
    let mut server = Server::start(2, &[]);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..50 {
        let len = 1 + (rng.next() % 4096) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if round % 2 == 0 {
            bytes[0] = b'*'; // exercise the multibulk path too
        }
        let mut c = RespConn::connect(server.resp);
        c.send(&bytes);
        // Close our side; the server must answer (or not) and close without harm.
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        let _ = c.read_to_close();
    }
    still_serving(&mut server);
    server.wait_stats("protocol errors counted", |s| {
        s["total"]["protocol_errors"].as_u64() > Some(0)
    });
}

#[test]
fn truncated_oversized_idle_and_half_open_clients() {
    let mut server = Server::start(2, &["--max-bulk-len", "1024"]);
    // Oversized bulk under a configured limit: Redis's error, then close.
    let mut c = RespConn::connect(server.resp);
    c.send(b"*3\r\n$7\r\nPUBLISH\r\n$1\r\na\r\n$2000\r\n");
    assert_eq!(
        c.read_to_close(),
        b"-ERR Protocol error: invalid bulk length\r\n"
    );
    // A bulk within the limit still works on a new connection.
    let mut c = RespConn::connect(server.resp);
    let payload = vec![b'p'; 1000];
    c.cmd(&[b"PUBLISH", b"a", &payload]);
    assert_eq!(c.read_replies(1), b":0\r\n");
    // Truncated commands, then the client goes away mid-command.
    for cut in [
        b"*2\r\n$7\r\nPUBL".as_slice(),
        b"*3\r\n$7\r\nPUBLISH\r\n$1\r\na\r\n$5\r\nab",
        b"SUBSCR",
    ] {
        let mut s = TcpStream::connect(server.resp).unwrap();
        s.write_all(cut).unwrap();
        drop(s);
    }
    // Clients that connect and send nothing, held open while others work.
    let idle: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(server.resp).unwrap())
        .collect();
    // A half-open client: shuts its write side after a complete command; gets nothing it did
    // not ask for and the server closes its side.
    let mut h = RespConn::connect(server.resp);
    h.send(b"PING\r\n");
    let _ = h.stream.shutdown(std::net::Shutdown::Write);
    let _ = h.read_to_close();
    std::thread::sleep(Duration::from_millis(100));
    still_serving(&mut server);
    drop(idle);
    server.wait_stats("idle clients closed", |s| {
        s["total"]["connections"].as_u64() <= Some(2)
    });
}

#[test]
fn too_many_clients_get_redis_error() {
    let mut server = Server::start(1, &["--max-connections", "5"]);
    let held: Vec<RespConn> = (0..5)
        .map(|_| {
            let mut c = RespConn::connect(server.resp);
            c.cmd(&[b"PING"]);
            assert_eq!(c.read_replies(1), b"+PONG\r\n");
            c
        })
        .collect();
    let mut extra = RespConn::connect(server.resp);
    assert_eq!(
        extra.read_to_close(),
        b"-ERR max number of clients reached\r\n"
    );
    let s = server.wait_stats("rejection", |s| {
        s["total"]["rejected_connections"].as_u64() == Some(1)
    });
    assert_eq!(s["total"]["rejected_connections"], 1);
    drop(held);
    server.wait_stats("slots freed", |s| {
        s["total"]["connections"].as_u64() == Some(0)
    });
    still_serving(&mut server);
}

/// Writes `chunk` over and over for up to `total` bytes, never reading; returns how much
/// the server let in before TCP flow control stopped the writes for 300 ms.
fn write_without_reading(stream: &mut TcpStream, chunk: &[u8], total: usize) -> usize {
    stream
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut written = 0;
    while written < total {
        match stream.write(chunk) {
            Ok(n) => written += n,
            Err(_) => break,
        }
    }
    written
}

/// A client that pipelines commands and never reads its replies is paused at
/// `max_pending_bytes` of replies, subscribed or not, RESP or HTTP: its input stops being
/// read (TCP pushes back on it) instead of its replies growing in the broker without bound.
/// Everyone else keeps being served.
#[test]
fn pipelining_without_reading_is_paused_not_buffered() {
    let mut server = Server::start(
        1,
        &["--max-pending-bytes", "131072", "--max-bulk-len", "65536"],
    );
    const TOTAL: usize = 256 << 20;
    // Unpaused, all 256 MiB would go in and ~370 MiB of replies would pile up.
    const BOUND: usize = 64 << 20;

    let mut sub = RespConn::connect(server.resp);
    sub.cmd(&[b"SUBSCRIBE", b"quiet"]);
    sub.read_replies(1);
    let pings = b"*1\r\n$4\r\nPING\r\n".repeat(4096);
    let n = write_without_reading(&mut sub.stream, &pings, TOTAL);
    assert!(n < BOUND, "subscribed client pushed {n} bytes of PINGs in");

    let mut plain = RespConn::connect(server.resp);
    let echo = b"*2\r\n$4\r\nECHO\r\n$16\r\n0123456789abcdef\r\n".repeat(2048);
    let n = write_without_reading(&mut plain.stream, &echo, TOTAL);
    assert!(n < BOUND, "client pushed {n} bytes of ECHOs in");

    let mut http = TcpStream::connect(server.http).unwrap();
    let gets = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".repeat(1024);
    let n = write_without_reading(&mut http, &gets, TOTAL);
    assert!(n < BOUND, "HTTP client pushed {n} bytes of requests in");

    still_serving(&mut server);
    let s = server.wait_stats("input pauses", |s| {
        s["total"]["input_pauses"].as_u64() >= Some(3)
    });
    assert_eq!(
        s["total"]["input_overflows"], 0,
        "paused input is not an overflow"
    );
}

/// A client that resets its connection is closed and counted; nobody else notices.
#[test]
fn a_reset_connection_is_counted() {
    let mut server = Server::start(1, &[]);
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.connect(&server.resp.into()).unwrap();
    let mut c = RespConn::from(TcpStream::from(sock.try_clone().unwrap()));
    c.cmd(&[b"SUBSCRIBE", b"gone"]);
    c.read_replies(1);
    // Linger 0: close sends a RST instead of a FIN.
    sock.set_linger(Some(Duration::ZERO)).unwrap();
    drop(sock);
    drop(c);
    server.wait_stats("receive error", |s| {
        s["total"]["receive_errors"].as_u64() >= Some(1)
            && s["total"]["subscriptions"].as_u64() == Some(0)
    });
    still_serving(&mut server);
}

/// Sends `GET /stats` on a kept-alive connection and returns the parsed body.
fn stats_over(conn: &mut TcpStream) -> serde_json::Value {
    use std::io::Read;
    conn.write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = conn.read(&mut chunk).unwrap();
        assert!(n > 0, "stats connection closed");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let len: usize = text[..head_end]
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .expect("Content-Length");
            if buf.len() >= head_end + 4 + len {
                return serde_json::from_slice(&buf[head_end + 4..head_end + 4 + len]).unwrap();
            }
        }
    }
}

/// Out of file descriptors, the broker stops accepting until the next tick instead of
/// spinning on a failing accept; it counts the failures, keeps serving who it has, and
/// accepts the waiting clients once descriptors are free again.
#[test]
fn running_out_of_descriptors_backs_off_and_recovers() {
    let mut server = Server::start_limited(1, &[], Some(64));
    let mut stats = TcpStream::connect(server.http).unwrap();
    stats
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(stats_over(&mut stats)["total"]["accept_errors"], 0);
    let mut clients: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(server.resp).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let errors = stats_over(&mut stats)["total"]["accept_errors"]
        .as_u64()
        .unwrap();
    // One failed accept per tick (100 ms), not a busy loop of them.
    assert!(
        (1..200).contains(&errors),
        "{errors} failed accepts in 1.5 s"
    );
    // Free descriptors: every client still waiting is accepted and served.
    clients.drain(..60);
    for c in clients.iter_mut() {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"PING\r\n").unwrap();
        let mut pong = [0u8; 7];
        std::io::Read::read_exact(c, &mut pong).unwrap();
        assert_eq!(&pong, b"+PONG\r\n");
    }
    drop(clients);
    still_serving(&mut server);
}

/// Past `max_subscriptions` each further channel or pattern gets an error reply of its own;
/// names already held still confirm, and the connection keeps working.
#[test]
fn subscriptions_past_the_limit_are_refused_one_by_one() {
    let mut server = Server::start(2, &["--max-subscriptions", "3"]);
    let mut c = RespConn::connect(server.resp);
    c.cmd(&[b"SUBSCRIBE", b"a", b"b"]);
    c.read_replies(2);
    c.cmd(&[b"PSUBSCRIBE", b"p*", b"q*"]);
    assert_eq!(
        String::from_utf8_lossy(&c.read_replies(2)),
        "*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:3\r\n\
         -ERR max subscriptions per connection reached (3)\r\n"
    );
    c.cmd(&[b"SSUBSCRIBE", b"s"]);
    c.cmd(&[b"SUBSCRIBE", b"c", b"a"]);
    assert_eq!(
        String::from_utf8_lossy(&c.read_replies(3)),
        "-ERR max subscriptions per connection reached (3)\r\n\
         -ERR max subscriptions per connection reached (3)\r\n\
         *3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:3\r\n"
    );
    let mut p = RespConn::connect(server.resp);
    p.cmd(&[b"PUBLISH", b"c", b"x"]);
    assert_eq!(p.read_replies(1), b":0\r\n");
    c.cmd(&[b"UNSUBSCRIBE", b"b"]);
    c.read_replies(1);
    c.cmd(&[b"SUBSCRIBE", b"c"]);
    assert_eq!(
        c.read_replies(1),
        b"*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:3\r\n"
    );
    still_serving(&mut server);
}

/// The kernel timer running on the broker's side of the connection from `client`
/// (`/proc/net/tcp`'s `tr` field: 0 none, 1 retransmit, 2 keepalive, ...).
fn broker_side_timer(broker_port: u16, client: &TcpStream) -> Option<u32> {
    let client_port = client.local_addr().unwrap().port();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
        if port(f[1]) == Some(broker_port) && port(f[2]) == Some(client_port) {
            u32::from_str_radix(f[5].split(':').next()?, 16).ok()
        } else {
            None
        }
    })
}

/// Accepted clients get TCP keepalive (so one that vanished without a FIN is found and closed),
/// unless `--tcp-keepalive-s 0` turns it off.
#[test]
fn accepted_clients_have_keepalive() {
    for (flag, want) in [("300", 2), ("0", 0)] {
        let server = Server::start(1, &["--tcp-keepalive-s", flag]);
        let mut c = RespConn::connect(server.resp);
        c.cmd(&[b"PING"]);
        assert_eq!(c.read_replies(1), b"+PONG\r\n");
        // The reply's retransmit timer runs until the client's (possibly delayed) ACK lands;
        // then the keepalive timer, or none.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut timer = broker_side_timer(server.resp.port(), &c.stream);
        while timer != Some(want) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            timer = broker_side_timer(server.resp.port(), &c.stream);
        }
        assert_eq!(timer, Some(want), "--tcp-keepalive-s {flag}");
    }
}
