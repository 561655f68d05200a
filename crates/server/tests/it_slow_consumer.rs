//! A subscriber that stops reading never holds back the publisher or the other subscribers;
//! it is disconnected (or its messages dropped) and counted.

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use support::{RespConn, Server};

const MESSAGES: usize = 20_000;

/// Connects with a tiny receive buffer, subscribes, then never reads again.
fn stalled_subscriber(server: &Server) -> RespConn {
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.resp.into()).unwrap();
    let mut c = RespConn::from(TcpStream::from(sock));
    c.cmd(&[b"SUBSCRIBE", b"feed"]);
    assert_eq!(
        c.read_replies(1),
        b"*3\r\n$9\r\nsubscribe\r\n$4\r\nfeed\r\n:1\r\n"
    );
    c
}

/// Messages the publisher may run ahead of the slowest *reading* subscriber: keeps the
/// readers' backlog (1000 × 1 KiB) well under max-pending-bytes even on a loaded machine, so
/// only the stalled subscriber trips the policy.
const MAX_LEAD: usize = 1000;

fn reader(
    url: String,
    ready: mpsc::Sender<()>,
    progress: Arc<AtomicUsize>,
) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let client = redis::Client::open(url).unwrap();
        let mut con = client.get_connection().unwrap();
        let mut ps = con.as_pubsub();
        ps.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        ps.subscribe("feed").unwrap();
        ready.send(()).unwrap();
        for i in 0..MESSAGES {
            let m = ps
                .get_message()
                .expect("a reading subscriber must not stall");
            let p: Vec<u8> = m.get_payload().unwrap();
            assert_eq!(&p[..8], format!("{i:08}").as_bytes(), "in order, none lost");
            progress.store(i + 1, Ordering::Release);
        }
        MESSAGES
    })
}

fn publish_all(server: &Server, progress: &[Arc<AtomicUsize>]) -> Duration {
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let start = Instant::now();
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(100) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while progress
            .iter()
            .map(|p| p.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
            + MAX_LEAD
            < chunk[0]
        {
            assert!(
                Instant::now() < deadline,
                "readers stopped making progress at {:?} of {}; stats {}",
                progress
                    .iter()
                    .map(|p| p.load(Ordering::Acquire))
                    .collect::<Vec<_>>(),
                chunk[0],
                server.stats()
            );
            thread::sleep(Duration::from_millis(1));
        }
        let mut pipe = redis::pipe();
        for i in chunk {
            let mut payload = format!("{i:08}").into_bytes();
            payload.resize(1024, b'x');
            pipe.cmd("PUBLISH").arg("feed").arg(payload);
        }
        let _: Vec<i64> = pipe.query(&mut con).unwrap();
    }
    start.elapsed()
}

fn run(policy: &str) -> (Server, RespConn) {
    let server = Server::start(
        2,
        &[
            "--max-pending-bytes",
            "2097152",
            "--max-bulk-len",
            "65536",
            "--slow-consumer",
            policy,
        ],
    );
    let slow = stalled_subscriber(&server);
    let (tx, rx) = mpsc::channel();
    let progress: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let readers: Vec<_> = progress
        .iter()
        .map(|p| reader(server.url(), tx.clone(), p.clone()))
        .collect();
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    let took = publish_all(&server, &progress);
    assert!(
        took < Duration::from_secs(60),
        "publisher finished (took {took:?})"
    );
    for r in readers {
        assert_eq!(r.join().unwrap(), MESSAGES);
    }
    (server, slow)
}

#[test]
fn disconnect_policy_closes_the_slow_subscriber_only() {
    let (server, mut slow) = run("disconnect");
    let s = server.wait_stats("a slow-consumer disconnect", |s| {
        s["total"]["slow_consumer_disconnects"].as_u64() >= Some(1)
    });
    assert_eq!(s["total"]["dropped"], 0);
    // Draining what the kernel buffered ends with the server's close.
    slow.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut sink = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match slow.stream.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("slow subscriber was not closed: {e}"),
        }
        assert!(Instant::now() < deadline, "slow subscriber was not closed");
    }
}

#[test]
fn drop_policy_keeps_the_slow_subscriber_and_counts_drops() {
    let (server, mut slow) = run("drop");
    let s = server.wait_stats("drops", |s| s["total"]["dropped"].as_u64() >= Some(1));
    assert_eq!(s["total"]["slow_consumer_disconnects"], 0);
    // Still connected: drain, then it answers a PING in subscribed mode.
    slow.stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut sink = vec![0u8; 1 << 16];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match slow.stream.read(&mut sink) {
            Ok(0) => panic!("drop policy must not close the connection"),
            Ok(_) => {}
            Err(_) => break,
        }
        assert!(Instant::now() < deadline, "could not drain");
    }
    slow.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    slow.cmd(&[b"PING"]);
    assert_eq!(slow.read_replies(1), b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
}

/// Under the `drop` policy a subscriber's queue fills to exactly `max_pending_bytes` and
/// stays there while it does not read; its commands must still run, so it can shed the load
/// with UNSUBSCRIBE without first reading everything.
#[test]
fn a_full_drop_policy_subscriber_can_still_unsubscribe() {
    let server = Server::start(
        1,
        &[
            "--slow-consumer",
            "drop",
            "--max-pending-bytes",
            "131072",
            "--max-bulk-len",
            "65536",
        ],
    );
    let mut slow = stalled_subscriber(&server);
    let mut publ = RespConn::connect(server.resp);
    // 64-byte frames (`message`, `feed`, 31-byte payload) fill the 128 KiB cap exactly.
    let payload = [b'p'; 31];
    let batch: Vec<u8> = (0..1000)
        .flat_map(|_| {
            let mut v = b"*3\r\n$7\r\nPUBLISH\r\n$4\r\nfeed\r\n$31\r\n".to_vec();
            v.extend_from_slice(&payload);
            v.extend_from_slice(b"\r\n");
            v
        })
        .collect();
    // 12.8 MB: more than the kernel's socket buffers take, so the broker's queue fills.
    for _ in 0..200 {
        publ.send(&batch);
        publ.read_replies(1000);
    }
    let s = server.wait_stats("drops", |s| s["total"]["dropped"].as_u64() >= Some(1));
    assert_eq!(s["total"]["slow_consumer_disconnects"], 0);
    // Without reading anything, the stalled subscriber unsubscribes; publishes stop
    // reaching it.
    slow.cmd(&[b"UNSUBSCRIBE", b"feed"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        publ.cmd(&[b"PUBLISH", b"feed", b"x"]);
        if publ.read_replies(1) == b":0\r\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the full subscriber's UNSUBSCRIBE never ran"
        );
        thread::sleep(Duration::from_millis(50));
    }
}
