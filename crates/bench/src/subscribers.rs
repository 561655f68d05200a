//! Subscriber connections driven by one mio (epoll) loop per thread, so a thousand
//! subscribers cost the load generator a thread or two.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::accounting::{latency_us, record, Arrival, SeqTracker};
use crate::frames::Push;
use crate::payload::{decode, now_ns};
use crate::proto::Proto;
use crate::shared::Shared;

/// What one subscriber thread measured.
pub struct SubResult {
    /// Messages received in the measurement window.
    pub delivered: u64,
    /// Messages received in total.
    pub delivered_total: u64,
    /// Gaps in (publisher, channel) sequences.
    pub lost: u64,
    /// Sequence numbers seen again.
    pub duplicated: u64,
    /// Sequence numbers older than the newest seen, but not seen before.
    pub reordered: u64,
    /// End-to-end latency in µs (measurement window only).
    pub latency: Histogram<u64>,
}

struct Sub {
    stream: TcpStream,
    channel: usize,
    buf: Vec<u8>,
    /// What arrived, per publisher.
    seen: SeqTracker,
}

/// Accounts every complete push at the start of `data`; returns the bytes they took.
/// Counts NATS keep-alive PINGs into `pings` (the caller answers them).
fn consume(
    proto: Proto,
    data: &[u8],
    seen: &mut SeqTracker,
    r: &mut SubResult,
    now: u64,
    measure_from: u64,
    pings: &mut usize,
) -> anyhow::Result<usize> {
    let mut pos = 0;
    while let Some((used, push)) = proto.parse(&data[pos..]).map_err(anyhow::Error::msg)? {
        if push == Push::Ping {
            *pings += 1;
        }
        if let Push::Message(p) = push {
            let h = decode(p).ok_or_else(|| anyhow::anyhow!("short payload"))?;
            match seen.arrive(h.publisher, h.seq) {
                Arrival::InOrder => {}
                Arrival::Reordered => r.reordered += 1,
                Arrival::Duplicate => r.duplicated += 1,
            }
            r.delivered_total += 1;
            if let Some(us) = latency_us(&h, now, measure_from) {
                r.delivered += 1;
                record(&mut r.latency, us);
            }
        }
        pos += used;
    }
    Ok(pos)
}

/// Opens `subs` (channel index per subscriber), subscribes each to `channel_name(c)`, and
/// returns when all are confirmed. Then `run` drives them until `shared.stop` and drain.
pub struct SubscriberThread {
    proto: Proto,
    poll: Poll,
    subs: Vec<Sub>,
    by_channel: Vec<Vec<usize>>,
    thread_index: usize,
}

/// Name of channel `c`.
pub fn channel_name(c: usize) -> String {
    format!("bench.{c}")
}

impl SubscriberThread {
    /// Connects and subscribes.
    pub fn connect(
        proto: Proto,
        target: SocketAddr,
        channels_of_subs: &[usize],
        channels: usize,
        publishers: usize,
        thread_index: usize,
    ) -> anyhow::Result<Self> {
        let poll = Poll::new()?;
        let mut subs = Vec::with_capacity(channels_of_subs.len());
        let mut by_channel = vec![Vec::new(); channels];
        for (i, &c) in channels_of_subs.iter().enumerate() {
            let std_stream = std::net::TcpStream::connect(target)?;
            std_stream.set_nodelay(true)?;
            let mut s = std_stream;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            proto.handshake(&mut s)?;
            let mut sub = Vec::new();
            proto.subscribe(&mut sub, &channel_name(c), i + 1);
            s.write_all(&sub)?;
            // Wait for the confirmation before going non-blocking.
            let buf = proto.await_confirmation(&mut s)?;
            s.set_nonblocking(true)?;
            let mut stream = TcpStream::from_std(s);
            poll.registry()
                .register(&mut stream, Token(i), Interest::READABLE)?;
            by_channel[c].push(i);
            subs.push(Sub {
                stream,
                channel: c,
                buf,
                seen: SeqTracker::new(publishers),
            });
        }
        Ok(Self {
            proto,
            poll,
            subs,
            by_channel,
            thread_index,
        })
    }

    /// Reads until `shared.senders_done` is set and either every subscriber has received everything
    /// published on its channel or `drain` has passed.
    pub fn run(mut self, shared: Arc<Shared>, drain: Duration) -> anyhow::Result<SubResult> {
        let mut events = Events::with_capacity(1024);
        let mut tmp = vec![0u8; 256 << 10];
        let mut r = SubResult {
            delivered: 0,
            delivered_total: 0,
            lost: 0,
            duplicated: 0,
            reordered: 0,
            latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
        };
        let mut stop_seen: Option<std::time::Instant> = None;
        let mut touched = vec![false; self.by_channel.len()];
        let mut moved = false;
        loop {
            self.poll
                .poll(&mut events, Some(Duration::from_millis(20)))?;
            let measure_from = shared.measure_from_ns.load(Ordering::Relaxed);
            for ev in events.iter() {
                let i = ev.token().0;
                let sub = &mut self.subs[i];
                loop {
                    let n = match sub.stream.read(&mut tmp) {
                        Ok(0) => anyhow::bail!("subscriber {i} was disconnected by the broker"),
                        Ok(n) => n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e.into()),
                    };
                    let now = now_ns();
                    let mut pings = 0;
                    // Parse straight out of the read buffer; only an incomplete tail is kept.
                    if sub.buf.is_empty() {
                        let used = consume(
                            self.proto,
                            &tmp[..n],
                            &mut sub.seen,
                            &mut r,
                            now,
                            measure_from,
                            &mut pings,
                        )?;
                        sub.buf.extend_from_slice(&tmp[used..n]);
                    } else {
                        sub.buf.extend_from_slice(&tmp[..n]);
                        let used = consume(
                            self.proto,
                            &sub.buf,
                            &mut sub.seen,
                            &mut r,
                            now,
                            measure_from,
                            &mut pings,
                        )?;
                        sub.buf.drain(..used);
                    }
                    for _ in 0..pings {
                        // A keep-alive answer is 6 bytes on an idle send buffer.
                        sub.stream.write_all(b"PONG\r\n")?;
                    }
                }
                touched[sub.channel] = true;
            }
            for (c, t) in touched.iter_mut().enumerate() {
                if std::mem::take(t) {
                    let min = self.by_channel[c]
                        .iter()
                        .map(|&i| self.subs[i].seen.received)
                        .min()
                        .unwrap_or(u64::MAX);
                    shared.acked[self.thread_index][c].store(min, Ordering::SeqCst);
                    moved = true;
                }
            }
            if std::mem::take(&mut moved) {
                shared.acked_moved();
            }
            if shared.senders_done.load(Ordering::Acquire) {
                let since = *stop_seen.get_or_insert_with(std::time::Instant::now);
                let done = self.subs.iter().all(|s| {
                    s.seen.received >= shared.published[s.channel].load(Ordering::Acquire)
                });
                if done || since.elapsed() > drain {
                    // Whatever a subscriber has not received of its channel is lost.
                    for s in &self.subs {
                        let want = shared.published[s.channel].load(Ordering::Acquire);
                        r.lost += want.saturating_sub(s.seen.received);
                    }
                    return Ok(r);
                }
            }
        }
    }
}
