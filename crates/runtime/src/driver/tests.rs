//! Tests on this machine's real io_uring, with socketpairs and loopback TCP.

use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::*;

/// A send buffer that counts its drops, to prove when (and how often) the driver releases it.
#[derive(Debug)]
struct Counted {
    data: Rc<Vec<u8>>,
    drops: Rc<Cell<usize>>,
}

impl AsRef<[u8]> for Counted {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.set(self.drops.get() + 1);
    }
}

fn counted(data: &Rc<Vec<u8>>, drops: &Rc<Cell<usize>>) -> Counted {
    Counted {
        data: data.clone(),
        drops: drops.clone(),
    }
}

fn config(recv_buffers: u16, recv_buffer_size: usize) -> DriverConfig {
    DriverConfig {
        sq_entries: 64,
        cq_entries: 1024,
        recv_buffers,
        recv_buffer_size,
    }
}

fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 7 + seed) % 251) as u8).collect()
}

fn completions(events: &[Event]) -> impl Iterator<Item = &Completion> {
    events.iter().filter_map(|e| match e {
        Event::Completion(c) => Some(c),
        Event::WakeFailed { .. } => None,
    })
}

/// Enters and reaps into `out` until `done(out)` holds; fails after 5 s.
fn pump<K: AsRef<[u8]>>(d: &mut Driver<K>, out: &mut Vec<Event>, done: impl Fn(&[Event]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done(out) {
        assert!(
            Instant::now() < deadline,
            "timed out; events so far: {out:?}"
        );
        step(d, out);
    }
}

/// One wait of at most 50 ms for a completion, then a reap into `out`.
fn step<K: AsRef<[u8]>>(d: &mut Driver<K>, out: &mut Vec<Event>) {
    d.enter_timeout(1, Duration::from_millis(50)).unwrap();
    // Lets the test's other thread run under valgrind, whose scheduler does not release a
    // thread waiting in io_uring_enter.
    std::thread::yield_now();
    d.reap(out);
}

/// Writes with MSG_DONTWAIT until the socket's send buffer is full.
fn fill_send_buffer(fd: i32) -> usize {
    let chunk = [0x55u8; 4096];
    let mut total = 0;
    loop {
        // SAFETY: `chunk` is a live buffer of the given length; `fd` is an open socket.
        let n = unsafe {
            libc::send(
                fd,
                chunk.as_ptr().cast(),
                chunk.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n <= 0 {
            assert_eq!(
                std::io::Error::last_os_error().raw_os_error(),
                Some(libc::EAGAIN)
            );
            return total;
        }
        total += n as usize;
    }
}

#[test]
fn accept_and_multishot_recv_deliver_everything_through_recycled_buffers() {
    const RING_BUFFERS: u16 = 4;
    const BUF_SIZE: usize = 256;
    const TOTAL: usize = 64 * 1024; // 64× what the buffer ring holds at once
    let (listener, addr) =
        crate::listener::bind_reuseport("127.0.0.1:0".parse().unwrap(), 16).unwrap();
    let (mut d, _) = Driver::<Vec<u8>>::new(config(RING_BUFFERS, BUF_SIZE)).unwrap();
    let accept = d.accept_multi(listener, 1);
    d.enter(0).unwrap();

    let payload = pattern(TOTAL, 3);
    let expected = payload.clone();
    let writer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&payload).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        // Keep the socket open until the reader saw EOF.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });

    let mut events = Vec::new();
    pump(&mut d, &mut events, |ev| {
        completions(ev).any(|c| c.tag == 1)
    });
    let c = completions(&events).next().unwrap();
    assert!(c.result >= 0, "accept failed: {}", c.result);
    assert!(c.more, "a multishot accept stays armed");
    let conn = c.result;
    events.clear();

    d.recv_multi(conn, 2);
    let mut received = Vec::new();
    // The first chunk's handle is held to the end: the kernel must not reuse its buffer even
    // though 64 KiB pass through the other three.
    let mut held: Option<(RecvBuf, Vec<u8>)> = None;
    let mut rearms = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    'recv: loop {
        assert!(
            Instant::now() < deadline,
            "timed out at {} bytes",
            received.len()
        );
        step(&mut d, &mut events);
        for ev in events.drain(..) {
            let Event::Completion(c) = ev else {
                panic!("unexpected {ev:?}")
            };
            assert_eq!(c.tag, 2);
            assert_eq!(c.kind, OpKind::Recv);
            if let Some(buf) = c.buf {
                assert_eq!(buf.len(), c.result as usize);
                assert!(buf.len() <= BUF_SIZE);
                received.extend_from_slice(&buf);
                if held.is_none() {
                    let copy = buf.to_vec();
                    held = Some((buf, copy));
                }
                // Other buffers drop here and go back to the kernel at the next enter.
            }
            if !c.more {
                if c.result == 0 {
                    break 'recv;
                }
                assert!(
                    c.result > 0 || c.result == -libc::ENOBUFS,
                    "recv failed: {}",
                    c.result
                );
                rearms += 1;
                d.recv_multi(conn, 2);
            }
        }
    }
    assert_eq!(received.len(), TOTAL);
    assert!(
        received == expected,
        "received bytes differ from those sent"
    );
    let (buf, copy) = held.unwrap();
    assert_eq!(&*buf, &copy[..], "a held buffer was overwritten");
    drop(buf);
    tracing::debug!(rearms, "recv re-armed");

    assert!(d.cancel(accept));
    pump(&mut d, &mut events, |ev| {
        completions(ev).any(|c| c.tag == 1 && !c.more)
    });
    let c = completions(&events).find(|c| c.tag == 1).unwrap();
    assert_eq!(c.result, -libc::ECANCELED);
    assert!(!d.is_in_flight(accept));
    assert_eq!(d.in_flight(), 0);
    crate::listener::close_fd(conn);
    crate::listener::close_fd(listener);
    writer.join().unwrap();
}

#[test]
fn a_batch_of_several_items_arrives_byte_exact_and_its_box_is_reused() {
    let (a, mut b) = UnixStream::pair().unwrap();
    let (mut d, _) = Driver::<Vec<u8>>::new(config(4, 256)).unwrap();
    let parts = [
        pattern(1000, 1),
        pattern(1, 2),
        pattern(70_000, 3),
        pattern(5, 4),
    ];
    let mut batch = d.batch();
    batch.push(parts[0].clone()).unwrap();
    batch.push(parts[1].clone()).unwrap();
    batch.push_from(parts[2].clone(), 123).unwrap();
    batch.push(parts[3].clone()).unwrap();
    let mut expected = Vec::new();
    expected.extend_from_slice(&parts[0]);
    expected.extend_from_slice(&parts[1]);
    expected.extend_from_slice(&parts[2][123..]);
    expected.extend_from_slice(&parts[3]);
    assert_eq!((batch.len(), batch.bytes()), (4, expected.len()));
    let boxed: *const send::BatchInner<Vec<u8>> = &*batch.inner;

    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; 1000 + 1 + 70_000 - 123 + 5];
        b.read_exact(&mut got).unwrap();
        got
    });
    let id = d.send(a.as_raw_fd(), batch, 42);
    let mut events = Vec::new();
    pump(&mut d, &mut events, |ev| {
        completions(ev).any(|c| c.tag == 42)
    });
    let c = completions(&events).next().unwrap();
    assert_eq!((c.kind, c.more), (OpKind::Send, false));
    assert_eq!(c.result as usize, expected.len());
    assert!(!d.is_in_flight(id));
    assert!(reader.join().unwrap() == expected);

    let again = d.batch();
    assert!(again.is_empty());
    assert_eq!(
        &*again.inner as *const _, boxed,
        "a completed batch's allocation is reused"
    );
}

#[test]
fn a_partial_send_reports_the_bytes_written() {
    let (a, mut b) = UnixStream::pair().unwrap();
    let (mut d, _) = Driver::<Rc<[u8]>>::new(config(4, 256)).unwrap();
    let mb: Rc<[u8]> = pattern(1 << 20, 9).into();
    let mut batch = d.batch();
    for _ in 0..8 {
        batch.push(mb.clone()).unwrap();
    }
    let total = batch.bytes();
    d.send(a.as_raw_fd(), batch, 5);
    let mut events = Vec::new();
    pump(&mut d, &mut events, |ev| {
        completions(ev).any(|c| c.tag == 5)
    });
    let c = completions(&events).next().unwrap();
    let sent = c.result;
    assert!(
        sent > 0 && (sent as usize) < total,
        "expected a partial send of {total} bytes into an unread socket, got {sent}"
    );
    assert_eq!(Rc::strong_count(&mb), 1, "the batch's handles were dropped");
    let mut got = vec![0u8; sent as usize];
    b.read_exact(&mut got).unwrap();
    let expected: Vec<u8> = mb.iter().copied().cycle().take(sent as usize).collect();
    assert!(got == expected);
}

#[test]
fn send_zc_delivers_and_releases_its_buffer_only_at_the_notification() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let (mut d, _) = Driver::<Counted>::new(config(4, 256)).unwrap();
    let data = Rc::new(pattern(256 * 1024, 5));
    let drops = Rc::new(Cell::new(0));

    let id = d.send_zc(client.as_raw_fd(), counted(&data, &drops), 1000, 77);
    let want = data.len() - 1000;
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; want];
        server.read_exact(&mut got).unwrap();
        got
    });
    let mut events = Vec::new();
    let mut saw_result = false;
    let mut saw_notif = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !saw_notif {
        assert!(
            Instant::now() < deadline,
            "no notification (result seen: {saw_result}, in flight: {}, reader done: {})",
            d.in_flight(),
            reader.is_finished()
        );
        step(&mut d, &mut events);
        for ev in events.drain(..) {
            let Event::Completion(c) = ev else {
                panic!("unexpected {ev:?}")
            };
            assert_eq!((c.tag, c.kind), (77, OpKind::SendZc));
            if c.notif {
                assert!(saw_result, "the notification comes after the result");
                assert!(!c.more);
                saw_notif = true;
            } else {
                assert!(!saw_result);
                saw_result = true;
                assert_eq!(c.result as usize, want);
                assert!(c.more, "TCP zero-copy sends post a notification");
            }
        }
        if saw_result && !saw_notif {
            assert_eq!(drops.get(), 0, "buffer released before the notification");
            assert!(d.is_in_flight(id));
        }
    }
    assert_eq!(
        drops.get(),
        1,
        "buffer released exactly once, at the notification"
    );
    assert!(!d.is_in_flight(id));
    assert!(reader.join().unwrap()[..] == data[1000..]);
}

#[test]
fn a_send_zc_is_held_until_its_notification_cqe_and_no_longer() {
    // Feeds the op table the CQE sequences the kernel posts, without the kernel, to pin the
    // exact CQE at which the buffer is released.
    let (mut d, _) = Driver::<Counted>::new(config(4, 256)).unwrap();
    let data = Rc::new(vec![1u8; 10]);
    let drops = Rc::new(Cell::new(0));
    const MORE: u32 = 1 << 1; // IORING_CQE_F_MORE
    const NOTIF: u32 = 1 << 3; // IORING_CQE_F_NOTIF
    let mut out = Vec::new();

    let mut batch = d.batch();
    batch.push(counted(&data, &drops)).unwrap();
    let id = d.table.insert(9, OpState::SendZc(batch.inner));
    d.table
        .complete(id.user_data(), 10, MORE, &d.bufs, &mut out);
    assert_eq!(
        drops.get(),
        0,
        "the result CQE with F_MORE keeps the buffer"
    );
    assert!(d.is_in_flight(id));
    d.table
        .complete(id.user_data(), 0, NOTIF, &d.bufs, &mut out);
    assert_eq!(drops.get(), 1, "the notification releases it");
    assert!(!d.is_in_flight(id));
    let got: Vec<(bool, bool)> = completions(&out).map(|c| (c.more, c.notif)).collect();
    assert_eq!(got, vec![(true, false), (false, true)]);

    out.clear();
    let mut batch = d.batch();
    batch.push(counted(&data, &drops)).unwrap();
    let id = d.table.insert(9, OpState::SendZc(batch.inner));
    d.table
        .complete(id.user_data(), -libc::EPIPE, 0, &d.bufs, &mut out);
    assert_eq!(
        drops.get(),
        2,
        "without F_MORE no notification follows: released at once"
    );
    assert!(!d.is_in_flight(id));
}

#[test]
fn a_wake_from_another_thread_ends_enter_and_is_swallowed() {
    let (fd_tx, fd_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let sleeper = std::thread::spawn(move || {
        let (mut d, _) = Driver::<Vec<u8>>::new(config(4, 256)).unwrap();
        fd_tx.send(d.ring_fd()).unwrap();
        let start = Instant::now();
        d.enter(1).unwrap(); // no timeout: only the wake-up can end this
        let waited = start.elapsed();
        let mut events = Vec::new();
        d.reap(&mut events);
        done_tx
            .send((waited, events.len(), d.wakes_received()))
            .unwrap();
        // Keep the ring open until the waker has reaped its side.
        std::thread::sleep(Duration::from_millis(100));
    });
    let peer_fd = fd_rx.recv().unwrap();
    let (mut d, _) = Driver::<Vec<u8>>::new(config(4, 256)).unwrap();
    std::thread::sleep(Duration::from_millis(100)); // let the sleeper block in enter
    d.wake(peer_fd, 1);
    d.enter(0).unwrap();
    let (waited, events, wakes) = done_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the peer was not woken");
    assert!(
        waited >= Duration::from_millis(50),
        "it did wait: {waited:?}"
    );
    assert_eq!(events, 0, "the wake-up CQE is not reported to the caller");
    assert_eq!(wakes, 1);
    let mut events = Vec::new();
    step(&mut d, &mut events);
    assert!(
        events.is_empty(),
        "a delivered wake-up is silent: {events:?}"
    );
    sleeper.join().unwrap();
}

#[test]
fn a_failed_wake_comes_back_naming_the_peer() {
    // The "failed MSG_RING loses the wake-up" defect: with CQE_SKIP on every outcome (or the
    // failure CQE dropped), no event would arrive and this test would time out.
    let (mut d, _) = Driver::<Vec<u8>>::new(config(4, 256)).unwrap();
    let (not_a_ring, _other) = UnixStream::pair().unwrap();
    d.wake(not_a_ring.as_raw_fd(), 3);
    d.wake(1_000_000, 7); // no such fd
    let mut events = Vec::new();
    pump(&mut d, &mut events, |ev| ev.len() >= 2);
    let mut failed: Vec<(usize, i32)> = events
        .iter()
        .map(|e| match e {
            Event::WakeFailed { peer, error } => (*peer, *error),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    failed.sort();
    assert_eq!(failed, vec![(3, libc::EBADFD), (7, libc::EBADF)]);
}

#[test]
fn dropping_a_driver_cancels_in_flight_ops_before_freeing_their_memory() {
    let (quiet, _quiet_peer) = UnixStream::pair().unwrap(); // never receives
    let (full, _full_peer) = UnixStream::pair().unwrap(); // peer never reads
    let filled = fill_send_buffer(full.as_raw_fd());
    assert!(filled > 0);
    let (mut d, _) = Driver::<Counted>::new(config(4, 256)).unwrap();
    let data = Rc::new(pattern(64 * 1024, 1));
    let drops = Rc::new(Cell::new(0));

    d.recv_multi(quiet.as_raw_fd(), 1);
    let mut batch = d.batch();
    for _ in 0..3 {
        batch.push(counted(&data, &drops)).unwrap();
    }
    let send = d.send(full.as_raw_fd(), batch, 2);
    d.enter(0).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut events = Vec::new();
    d.enter_timeout(0, Duration::from_millis(10)).unwrap();
    d.reap(&mut events);
    assert!(events.is_empty(), "nothing can complete yet: {events:?}");
    assert!(d.is_in_flight(send));
    assert_eq!(d.in_flight(), 2);
    assert_eq!(drops.get(), 0);

    let start = Instant::now();
    drop(d);
    assert!(
        start.elapsed() < Duration::from_millis(DROP_SHUTDOWN_TIMEOUT_MS),
        "the cancels completed before the deadline (no leak)"
    );
    assert_eq!(drops.get(), 3, "each handle dropped exactly once");
    assert_eq!(Rc::strong_count(&data), 1);
}

#[test]
fn shutdown_reports_completion_and_keeps_final_results_for_reap() {
    let (quiet, _quiet_peer) = UnixStream::pair().unwrap();
    let (full, _full_peer) = UnixStream::pair().unwrap();
    fill_send_buffer(full.as_raw_fd());
    let (mut d, _) = Driver::<Counted>::new(config(4, 256)).unwrap();
    let data = Rc::new(pattern(4096, 1));
    let drops = Rc::new(Cell::new(0));
    d.recv_multi(quiet.as_raw_fd(), 1);
    let mut batch = d.batch();
    batch.push(counted(&data, &drops)).unwrap();
    batch.push(counted(&data, &drops)).unwrap();
    d.send(full.as_raw_fd(), batch, 2);
    d.timeout(60_000_000_000, 3);
    d.enter(0).unwrap();

    assert!(d.shutdown(1000), "every op finished");
    assert_eq!(d.in_flight(), 0);
    assert_eq!(
        drops.get(),
        2,
        "the batch was released once its send completed"
    );
    let mut events = Vec::new();
    d.reap(&mut events);
    let mut finals: Vec<(u64, i32, bool)> = completions(&events)
        .map(|c| (c.tag, c.result, c.more))
        .collect();
    finals.sort();
    assert_eq!(
        finals,
        vec![
            (1, -libc::ECANCELED, false),
            (2, -libc::ECANCELED, false),
            (3, -libc::ECANCELED, false)
        ]
    );
    drop(d);
    assert_eq!(drops.get(), 2);
}

#[test]
fn a_stale_op_id_does_not_cancel_the_op_reusing_its_slot() {
    let (mut d, _) = Driver::<Vec<u8>>::new(config(4, 256)).unwrap();
    let first = d.timeout(1_000_000, 1);
    let mut events = Vec::new();
    pump(&mut d, &mut events, |ev| {
        completions(ev).any(|c| c.tag == 1)
    });
    assert_eq!(completions(&events).next().unwrap().result, -libc::ETIME);
    events.clear();

    let second = d.timeout(60_000_000_000, 2);
    assert_eq!(second.key, first.key, "the slot is reused");
    assert_ne!(second, first);
    assert!(!d.cancel(first), "a finished op's id cancels nothing");
    d.enter_timeout(1, Duration::from_millis(100)).unwrap();
    d.reap(&mut events);
    assert!(
        events.is_empty(),
        "the later op was not cancelled: {events:?}"
    );
    assert!(d.is_in_flight(second));

    assert!(d.cancel(second));
    pump(&mut d, &mut events, |ev| {
        completions(ev).any(|c| c.tag == 2)
    });
    assert_eq!(
        completions(&events).next().unwrap().result,
        -libc::ECANCELED
    );
    assert_eq!(d.in_flight(), 0);
}

#[test]
fn a_full_submission_queue_submits_early_and_loses_nothing() {
    let (mut d, _) = Driver::<Vec<u8>>::new(DriverConfig {
        sq_entries: 4,
        ..config(4, 256)
    })
    .unwrap();
    for tag in 0..100 {
        d.timeout(1_000, tag);
    }
    assert!(d.sq_stalls() > 0);
    let mut events = Vec::new();
    pump(&mut d, &mut events, |ev| ev.len() == 100);
    let mut tags: Vec<u64> = completions(&events).map(|c| c.tag).collect();
    tags.sort();
    assert_eq!(tags, (0..100).collect::<Vec<_>>());
    assert_eq!(d.in_flight(), 0);
}

#[test]
fn bad_buffer_configurations_are_refused() {
    assert!(Driver::<Vec<u8>>::new(config(3, 256)).is_err());
    assert!(Driver::<Vec<u8>>::new(config(0, 256)).is_err());
    assert!(Driver::<Vec<u8>>::new(config(4, 0)).is_err());
}

/// A driver with one zero-copy send whose notification cannot come: its bytes sit in a send
/// queue that the peer's closed window keeps from draining. Returns the driver, the
/// buffer (the test's reference), its drop counter and the sockets (kept open).
#[allow(clippy::type_complexity)]
fn driver_with_a_stuck_notification() -> (
    Driver<Counted>,
    Rc<Vec<u8>>,
    Rc<Cell<usize>>,
    (TcpStream, TcpStream),
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    fill_send_buffer(client.as_raw_fd());
    let big: libc::c_int = 8 << 20;
    // SAFETY: a valid socket, option pointer and length.
    let rc = unsafe {
        libc::setsockopt(
            client.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&big as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);

    let (mut d, _) = Driver::<Counted>::new(config(4, 256)).unwrap();
    let data = Rc::new(pattern(64 * 1024, 2));
    let drops = Rc::new(Cell::new(0));
    d.send_zc(client.as_raw_fd(), counted(&data, &drops), 0, 1);
    let mut events = Vec::new();
    pump(&mut d, &mut events, |ev| {
        completions(ev).any(|c| c.tag == 1)
    });
    let c = completions(&events).next().unwrap();
    assert_eq!(
        c.result as usize,
        data.len(),
        "queued behind a closed window"
    );
    assert!(c.more, "a notification is pending");
    events.clear();

    (d, data, drops, (client, server))
}

#[test]
fn memory_the_kernel_may_still_read_is_leaked_not_freed_at_the_deadline() {
    // A zero-copy send whose bytes sit in a send queue the peer's closed window keeps from
    // draining: the send itself completes, but the kernel holds the pages until the
    // notification, which no cancel can hasten. Drop must give up at its deadline and leak
    // the buffer; freeing it would hand the kernel freed memory.
    let (d, data, drops, sockets) = driver_with_a_stuck_notification();
    let start = Instant::now();
    drop(d);
    assert!(start.elapsed() >= Duration::from_millis(DROP_SHUTDOWN_TIMEOUT_MS));
    assert_eq!(
        drops.get(),
        0,
        "the buffer the kernel still holds was not freed"
    );
    assert_eq!(Rc::strong_count(&data), 2, "it is leaked for good");
    drop(sockets);
}

#[test]
fn drop_after_a_shutdown_that_gave_up_does_not_wait_again() {
    // The shard calls shutdown with what is left of its drain deadline; before, Drop then
    // waited DROP_SHUTDOWN_TIMEOUT_MS more for the same stuck notification, a second of
    // extra time to exit.
    let (mut d, data, drops, sockets) = driver_with_a_stuck_notification();
    let start = Instant::now();
    assert!(!d.shutdown(50), "the notification cannot come");
    drop(d);
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(DROP_SHUTDOWN_TIMEOUT_MS / 2),
        "took {took:?}"
    );
    assert_eq!(drops.get(), 0, "still leaked, not freed");
    assert_eq!(Rc::strong_count(&data), 2);
    drop(sockets);
}

#[test]
fn an_overflowing_completion_queue_loses_nothing() {
    // 8 CQ slots for 300 completions posted while nobody reaps: the kernel parks the excess
    // on its overflow list, and enter/reap must still hand every one over.
    let (mut d, _) = Driver::<Vec<u8>>::new(DriverConfig {
        sq_entries: 4,
        cq_entries: 8,
        ..config(4, 256)
    })
    .unwrap();
    for tag in 0..300 {
        d.timeout(1_000, tag);
    }
    d.enter(0).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let mut events = Vec::new();
    pump(&mut d, &mut events, |ev| ev.len() == 300);
    let mut tags: Vec<u64> = completions(&events).map(|c| c.tag).collect();
    tags.sort();
    assert_eq!(tags, (0..300).collect::<Vec<_>>());
    assert_eq!(d.in_flight(), 0);
}

#[test]
fn one_drain_enter_runs_the_deferred_work_of_hundreds_of_ready_sockets() {
    // Since Linux 6.13 a plain enter runs at most 20 deferred items per pass; a reconnect
    // storm makes thousands. `enter_drain` must run them all in one call.
    const SOCKETS: usize = 300;
    let (mut d, _) = Driver::<Vec<u8>>::new(config(512, 64)).unwrap();
    let pairs: Vec<(UnixStream, UnixStream)> =
        (0..SOCKETS).map(|_| UnixStream::pair().unwrap()).collect();
    for (i, (ours, _)) in pairs.iter().enumerate() {
        d.recv_multi(ours.as_raw_fd(), i as u64);
    }
    // Arms every receive: nothing is readable yet, so each waits on its socket.
    d.enter(0).unwrap();
    let mut events = Vec::new();
    d.reap(&mut events);
    assert!(events.is_empty(), "nothing was written yet: {events:?}");
    for (_, theirs) in &pairs {
        (&*theirs).write_all(b"x").unwrap();
    }
    d.enter_drain(1024).unwrap();
    d.reap(&mut events);
    let mut tags: Vec<u64> = completions(&events).map(|c| c.tag).collect();
    tags.sort_unstable();
    tags.dedup();
    assert_eq!(
        tags.len(),
        SOCKETS,
        "one enter_drain should complete every ready receive"
    );
}
