//! WebSocket and SSE subscribers (`--sub-mode ws|sse`), one mio (epoll) loop per thread like
//! the native subscribers, but with every connection a small state machine so that
//! connecting, the HTTP handshake, subscribing and (SSE) reconnecting all happen inside the
//! loop, non-blocking, for thousands of connections at once.
//!
//! - `ws` against corecast: `GET /ws`, then `{"op":"sub","ch":..,"id":1}` in a masked text
//!   frame; ready on `{"op":"ok",..}`, whose `seq` is the position the deliveries continue
//!   from. Deliveries are `{"ch":..,"seq":..,"data":<payload>}` text frames; pings are
//!   answered with pongs carrying the same payload.
//! - `ws` with `--proto nats` (nats-server's websocket listener): the NATS protocol in
//!   binary frames (CONNECT, SUB and PING; ready on the PONG; MSG deliveries; PING answered
//!   with PONG). Frames are a byte stream: a NATS line may span frames.
//! - `sse`: `GET /sse?ch=..` with `Accept: text/event-stream`; subscribed once the first
//!   event with an `id` arrives after the `200` head (corecast answers the join with an
//!   id-only event; the head goes out before the subscription is in place). Events
//!   as an EventSource reads them; the last `id` and `retry` are kept, and when the
//!   connection ends (EOF, reset, or the storm's cut) it reconnects after `retry` ms (3000
//!   when never advised) with `Last-Event-ID`, as an EventSource does. An answer other than
//!   200 on a reconnect is counted and retried the same way (an EventSource would give up).
//!
//! Per connection the loop keeps a few dozen bytes plus buffers that are empty unless a read
//! ended mid-frame or mid-event: reads go into one buffer per thread and are parsed in place.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Registry, Token};

use crate::accounting::{latency_us, record, Arrival, SeqTracker};
use crate::frames::{parse_nats, Push};
use crate::http::{parse_head, sse_request, ws_request};
use crate::json::parse_envelope;
use crate::payload::{now_ns, Encoding};
use crate::shared::Shared;
use crate::sse;
use crate::subscribers::{channel_name, SubResult};
use crate::ws::{self, encode_frame, parse_frame, Rng};

/// How subscribers reach the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SubMode {
    /// `--proto` on `--target` (RESP or NATS).
    Native,
    /// WebSocket on `--http-target`.
    Ws,
    /// Server-Sent Events on `--http-target`.
    Sse,
}

/// Least time between two scans for the lowest message every connection of a channel
/// received (what the closed-loop publisher may run ahead of).
const ACK_SCAN_NS: u64 = 1_000_000;

/// EventSource's reconnection time before the server advises one.
pub const DEFAULT_RETRY_MS: u64 = 3000;

/// Initial connections in their handshake at once per thread (a 15,000-connection start
/// would otherwise overflow the listener's backlog and wait out SYN retries). Reconnects are
/// not limited: they are the storm being measured.
const MAX_CONNECTING: usize = 256;

/// What every subscriber thread of a run shares with the main thread.
pub struct WebShared {
    /// Connections subscribed for the first time.
    pub ready: AtomicUsize,
    /// When the storm cuts every connection (CLOCK_MONOTONIC ns; `u64::MAX`: never).
    pub storm_at_ns: AtomicU64,
    /// Threads that have cut their connections.
    pub storm_threads_cut: AtomicUsize,
    /// Connections cut by the storm.
    pub storm_cut: AtomicUsize,
    /// Connections cut by the storm that have a `200` head again.
    pub storm_resubscribed: AtomicUsize,
    /// The run's time origin for per-second series (CLOCK_MONOTONIC ns).
    pub started_ns: u64,
}

impl WebShared {
    /// Shared state, with the time origin now.
    pub fn new() -> Self {
        Self {
            ready: AtomicUsize::new(0),
            storm_at_ns: AtomicU64::new(u64::MAX),
            storm_threads_cut: AtomicUsize::new(0),
            storm_cut: AtomicUsize::new(0),
            storm_resubscribed: AtomicUsize::new(0),
            started_ns: now_ns(),
        }
    }
}

/// How one thread's connections run.
#[derive(Clone)]
pub struct WebPlan {
    /// `Ws` or `Sse`.
    pub mode: SubMode,
    /// NATS protocol inside the WebSocket (nats-server) instead of the native JSON one.
    pub nats: bool,
    /// The HTTP (or NATS websocket) listener.
    pub target: SocketAddr,
    /// How payloads carry their header.
    pub encoding: Encoding,
    /// Publishers (for the per-publisher accounting).
    pub publishers: usize,
    /// Channels in the run (0 for idle connections).
    pub channels: usize,
    /// This thread's index in `Shared::acked`.
    pub thread_index: usize,
    /// Idle connections: channel `idle.<n>`, nothing accounted.
    pub idle: bool,
}

/// What one thread saw beyond the delivery accounting.
pub struct WebStats {
    /// Reconnections started (SSE).
    pub reconnects: u64,
    /// Connection attempts that failed (refused, reset before the head, ...).
    pub connect_failures: u64,
    /// Answers other than `200` (SSE) on a reconnect.
    pub http_errors: u64,
    /// Reset notices (a resume that could not be honoured).
    pub resets: u64,
    /// Messages a reset notice skipped: from the last `seq` the connection saw to the
    /// notice's `seq` (the position live deliveries continue from).
    pub reset_missed: u64,
    /// Gaps in the broker's per-channel `seq` on connections never reconnected.
    pub seq_missed: u64,
    /// Broker `seq` seen again on connections never reconnected.
    pub seq_duplicated: u64,
    /// Gaps in the broker's `seq` on connections that reconnected (missed by a resume).
    pub resume_missed: u64,
    /// Broker `seq` seen again on connections that reconnected.
    pub resume_duplicated: u64,
    /// `retry:` advice per second since `WebShared::started_ns`: (min, max, count).
    pub retry_by_s: Vec<Option<(u64, u64, u64)>>,
    /// When this thread cut its connections.
    pub storm_cut_ns: Option<u64>,
    /// The last `200` head of a connection cut by the storm.
    pub storm_last_resub_ns: u64,
    /// Per connection: µs from the cut to its `200` head.
    pub storm_resub_us: Histogram<u64>,
}

impl WebStats {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            reconnects: 0,
            connect_failures: 0,
            http_errors: 0,
            resets: 0,
            reset_missed: 0,
            seq_missed: 0,
            seq_duplicated: 0,
            resume_missed: 0,
            resume_duplicated: 0,
            retry_by_s: Vec::new(),
            storm_cut_ns: None,
            storm_last_resub_ns: 0,
            storm_resub_us: Histogram::new_with_bounds(1, 3_600_000_000, 3)?,
        })
    }

    /// An empty record to merge threads into.
    pub fn empty() -> Self {
        Self::new().expect("histogram bounds are valid")
    }

    fn record_retry(&mut self, sec: usize, ms: u64) {
        if sec >= self.retry_by_s.len() {
            self.retry_by_s.resize(sec + 1, None);
        }
        let e = self.retry_by_s[sec].get_or_insert((ms, ms, 0));
        e.0 = e.0.min(ms);
        e.1 = e.1.max(ms);
        e.2 += 1;
    }

    /// Adds another thread's record.
    pub fn merge(&mut self, o: &WebStats) -> anyhow::Result<()> {
        self.reconnects += o.reconnects;
        self.connect_failures += o.connect_failures;
        self.http_errors += o.http_errors;
        self.resets += o.resets;
        self.reset_missed += o.reset_missed;
        self.seq_missed += o.seq_missed;
        self.seq_duplicated += o.seq_duplicated;
        self.resume_missed += o.resume_missed;
        self.resume_duplicated += o.resume_duplicated;
        if self.retry_by_s.len() < o.retry_by_s.len() {
            self.retry_by_s.resize(o.retry_by_s.len(), None);
        }
        for (mine, theirs) in self.retry_by_s.iter_mut().zip(&o.retry_by_s) {
            *mine = match (*mine, *theirs) {
                (Some(a), Some(b)) => Some((a.0.min(b.0), a.1.max(b.1), a.2 + b.2)),
                (a, b) => a.or(b),
            };
        }
        self.storm_cut_ns = match (self.storm_cut_ns, o.storm_cut_ns) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.storm_last_resub_ns = self.storm_last_resub_ns.max(o.storm_last_resub_ns);
        self.storm_resub_us.add(&o.storm_resub_us)?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not started yet (initial connections beyond `MAX_CONNECTING`).
    Queued,
    /// Waiting for the TCP connection.
    Connecting,
    /// Request sent; waiting for the response head.
    Head,
    /// WebSocket up, subscription sent, not confirmed.
    Subscribing,
    /// Subscribed.
    Live,
    /// Closed; reconnects when its timer fires (SSE).
    Waiting,
}

struct Conn {
    stream: Option<TcpStream>,
    state: State,
    /// Channel index (run) or idle connection number.
    name: u32,
    /// SSE reconnection time (ms).
    retry_ms: u32,
    /// Ever subscribed.
    ever_live: bool,
    /// Has reconnected at least once: later `seq` gaps count as missed by a resume.
    resumed: bool,
    /// Cut by the storm and not yet resubscribed.
    storm_pending: bool,
    /// Waiting for WRITABLE to flush `out`.
    want_write: bool,
    sse: sse::Parser,
    /// The broker's last `seq` on this connection's channel.
    last_seq: Option<u64>,
    /// Received bytes not yet parsed (a frame, head or event cut by a read).
    buf: Vec<u8>,
    /// Bytes not yet written (rare: requests and pongs are small).
    out: Vec<u8>,
    /// WebSocket: fragments of a message; NATS over WebSocket: unparsed protocol bytes.
    msg: Vec<u8>,
    /// SSE: the last event ID.
    last_id: Vec<u8>,
    /// What arrived, per publisher.
    seen: SeqTracker,
}

/// Why a connection ended, for the error or the count.
enum Lost {
    Eof,
    Io(std::io::Error),
    Status(u16),
    Closed,
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::Eof => write!(f, "closed by the server"),
            Lost::Io(e) => write!(f, "{e}"),
            Lost::Status(s) => write!(f, "HTTP status {s}"),
            Lost::Closed => write!(f, "WebSocket close frame"),
        }
    }
}

/// Everything but the connections, so a handler can hold one connection and this.
struct Ctx {
    plan: WebPlan,
    host: String,
    registry: Registry,
    web: Arc<WebShared>,
    shared: Arc<Shared>,
    r: SubResult,
    st: WebStats,
    rng: Rng,
    scratch: Vec<u8>,
    /// Reused for requests.
    wbuf: Vec<u8>,
    now: u64,
    measure_from: u64,
    /// Reconnects due: (ns, connection).
    timers: BinaryHeap<Reverse<(u64, u32)>>,
    /// Initial connections still in their handshake.
    connecting: usize,
    /// Channels whose slowest subscriber may have moved.
    touched: Vec<bool>,
    /// Set once the run is ending: disconnects are no longer errors.
    stopping: bool,
}

/// One thread's subscribers; [`WebThread::run`] drives them.
pub struct WebThread {
    poll: Poll,
    conns: Vec<Conn>,
    /// Connections per channel (empty for idle connections).
    by_channel: Vec<Vec<u32>>,
    ctx: Ctx,
}

impl WebThread {
    /// Subscribers with the given channel indices (or idle numbers); nothing is connected
    /// until `run`.
    pub fn new(
        plan: WebPlan,
        names: &[u32],
        shared: Arc<Shared>,
        web: Arc<WebShared>,
    ) -> anyhow::Result<Self> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let mut by_channel = vec![Vec::new(); plan.channels];
        if !plan.idle {
            for (k, &c) in names.iter().enumerate() {
                by_channel[c as usize].push(k as u32);
            }
        }
        let conns = names
            .iter()
            .map(|&name| Conn {
                stream: None,
                state: State::Queued,
                name,
                retry_ms: DEFAULT_RETRY_MS as u32,
                ever_live: false,
                resumed: false,
                storm_pending: false,
                want_write: false,
                sse: sse::Parser::new(),
                last_seq: None,
                buf: Vec::new(),
                out: Vec::new(),
                msg: Vec::new(),
                last_id: Vec::new(),
                seen: SeqTracker::new(if plan.idle { 1 } else { plan.publishers }),
            })
            .collect();
        let ctx = Ctx {
            host: plan.target.to_string(),
            registry,
            r: SubResult {
                delivered: 0,
                delivered_total: 0,
                lost: 0,
                duplicated: 0,
                reordered: 0,
                latency: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            },
            st: WebStats::new()?,
            rng: Rng::new(now_ns() ^ (plan.thread_index as u64) << 48),
            scratch: Vec::new(),
            wbuf: Vec::new(),
            now: now_ns(),
            measure_from: u64::MAX,
            timers: BinaryHeap::new(),
            connecting: 0,
            touched: vec![false; plan.channels],
            stopping: false,
            plan,
            web,
            shared,
        };
        Ok(Self {
            poll,
            conns,
            by_channel,
            ctx,
        })
    }

    /// Connects and subscribes everything, then reads until `shared.senders_done` is set and
    /// every subscriber has received everything published on its channel or `drain` has
    /// passed (idle connections: until `shared.stop`).
    pub fn run(mut self, drain: Duration) -> anyhow::Result<(SubResult, WebStats)> {
        let mut events = Events::with_capacity(1024);
        let mut tmp = vec![0u8; 256 << 10];
        let mut queue: VecDeque<u32> = (0..self.conns.len() as u32).collect();
        let mut stop_seen: Option<Instant> = None;
        let mut storm_done = false;
        let mut last_ack_scan_ns = 0;
        loop {
            let ctx = &mut self.ctx;
            while ctx.connecting < MAX_CONNECTING {
                let Some(i) = queue.pop_front() else { break };
                ctx.connecting += 1;
                ctx.start(&mut self.conns[i as usize], i)?;
            }
            let storm_at = ctx.web.storm_at_ns.load(Ordering::Acquire);
            let mut wake = ctx.now + 20_000_000;
            if let Some(Reverse((due, _))) = ctx.timers.peek() {
                wake = wake.min(*due);
            }
            if !storm_done {
                wake = wake.min(storm_at);
            }
            let timeout =
                Duration::from_nanos(wake.saturating_sub(now_ns())).max(Duration::from_micros(200));
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
            let ctx = &mut self.ctx;
            ctx.now = now_ns();
            ctx.measure_from = ctx.shared.measure_from_ns.load(Ordering::Relaxed);
            for ev in events.iter() {
                let i = ev.token().0;
                let c = &mut self.conns[i];
                ctx.on_event(c, i as u32, ev.is_writable(), &mut tmp)?;
                if !ctx.plan.idle {
                    ctx.touched[c.name as usize] = true;
                }
            }
            ctx.now = now_ns();
            while let Some(&Reverse((due, i))) = ctx.timers.peek() {
                if due > ctx.now {
                    break;
                }
                ctx.timers.pop();
                let c = &mut self.conns[i as usize];
                if c.state == State::Waiting {
                    ctx.start(c, i)?;
                }
            }
            if !storm_done && ctx.now >= storm_at {
                storm_done = true;
                ctx.storm_cut(&mut self.conns);
            }
            // The ack scan walks every connection of a touched channel: at most once per
            // ACK_SCAN_NS, or a reconnect wave (a few events per poll, 7,500 connections a
            // thread on one channel) spends a third of the load CPU in it.
            if !ctx.plan.idle && ctx.now >= last_ack_scan_ns + ACK_SCAN_NS {
                last_ack_scan_ns = ctx.now;
                let mut moved = false;
                for c in 0..ctx.touched.len() {
                    if std::mem::take(&mut ctx.touched[c]) {
                        let min = self.by_channel[c]
                            .iter()
                            .map(|&k| self.conns[k as usize].seen.received)
                            .min()
                            .unwrap_or(u64::MAX);
                        ctx.shared.acked[ctx.plan.thread_index][c].store(min, Ordering::SeqCst);
                        moved = true;
                    }
                }
                if moved {
                    ctx.shared.acked_moved();
                }
            }
            if ctx.plan.idle {
                if ctx.shared.stop.load(Ordering::Acquire) {
                    ctx.stopping = true;
                    return Ok((self.ctx.r, self.ctx.st));
                }
            } else if ctx.shared.senders_done.load(Ordering::Acquire) {
                ctx.stopping = true;
                let since = *stop_seen.get_or_insert_with(Instant::now);
                let done = self.conns.iter().all(|s| {
                    s.seen.received >= ctx.shared.published[s.name as usize].load(Ordering::Acquire)
                });
                if done || since.elapsed() > drain {
                    for s in &self.conns {
                        let want = ctx.shared.published[s.name as usize].load(Ordering::Acquire);
                        ctx.r.lost += want.saturating_sub(s.seen.received);
                    }
                    return Ok((self.ctx.r, self.ctx.st));
                }
            }
        }
    }
}

impl Ctx {
    fn channel(&self, c: &Conn) -> String {
        if self.plan.idle {
            format!("idle.{}", c.name)
        } else {
            channel_name(c.name as usize)
        }
    }

    /// Opens connection `i` (non-blocking connect).
    fn start(&mut self, c: &mut Conn, i: u32) -> anyhow::Result<()> {
        c.buf.clear();
        c.out.clear();
        c.msg.clear();
        c.sse = sse::Parser::new();
        c.want_write = false;
        match crate::connect::connect(self.plan.target, i) {
            Ok(mut s) => {
                self.registry.register(
                    &mut s,
                    Token(i as usize),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                c.stream = Some(s);
                c.state = State::Connecting;
                Ok(())
            }
            Err(e) => self.lost(c, i, Lost::Io(e)),
        }
    }

    fn on_event(
        &mut self,
        c: &mut Conn,
        i: u32,
        writable: bool,
        tmp: &mut [u8],
    ) -> anyhow::Result<()> {
        if c.state == State::Connecting {
            let Some(s) = c.stream.as_mut() else {
                return Ok(());
            };
            match s.take_error() {
                Ok(Some(e)) | Err(e) => return self.lost(c, i, Lost::Io(e)),
                Ok(None) => {}
            }
            match s.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotConnected => return Ok(()),
                Err(e) => return self.lost(c, i, Lost::Io(e)),
            }
            s.set_nodelay(true)?;
            self.registry
                .reregister(s, Token(i as usize), Interest::READABLE)?;
            let mut req = std::mem::take(&mut self.wbuf);
            req.clear();
            let channel = self.channel(c);
            match (self.plan.mode, self.plan.nats) {
                (SubMode::Sse, _) => sse_request(&mut req, &self.host, &channel, &c.last_id),
                // nats-server serves its websocket at any path; corecast at /ws.
                (_, true) => ws_request(&mut req, &self.host, "/", &self.rng.key()),
                (_, false) => ws_request(&mut req, &self.host, "/ws", &self.rng.key()),
            }
            c.state = State::Head;
            let sent = self.send(c, i, &req);
            self.wbuf = req;
            if let Err(e) = sent {
                return self.lost(c, i, Lost::Io(e));
            }
        }
        if writable && c.want_write {
            if let Err(e) = self.flush(c, i) {
                return self.lost(c, i, Lost::Io(e));
            }
        }
        loop {
            let Some(s) = c.stream.as_mut() else {
                return Ok(());
            };
            let n = match s.read(tmp) {
                Ok(0) => return self.lost(c, i, Lost::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return self.lost(c, i, Lost::Io(e)),
            };
            self.now = now_ns();
            let data = &tmp[..n];
            let result = if c.buf.is_empty() {
                self.consume(c, i, data).map(|used| {
                    if c.stream.is_some() {
                        c.buf.extend_from_slice(&data[used..]);
                    }
                })
            } else {
                let mut buf = std::mem::take(&mut c.buf);
                buf.extend_from_slice(data);
                self.consume(c, i, &buf).map(|used| {
                    if c.stream.is_some() {
                        buf.drain(..used);
                        c.buf = buf;
                    }
                })
            };
            match result {
                Ok(()) => {}
                Err(Fail::Lost(why)) => return self.lost(c, i, why),
                Err(Fail::Fatal(e)) => return Err(e),
            }
        }
    }

    /// Parses what `data` holds; returns the bytes used (the rest is an incomplete tail).
    fn consume(&mut self, c: &mut Conn, i: u32, data: &[u8]) -> Result<usize, Fail> {
        let mut pos = 0;
        loop {
            match c.state {
                State::Head => {
                    let Some(h) = parse_head(&data[pos..]).map_err(bad)? else {
                        return Ok(pos);
                    };
                    pos += h.len;
                    self.on_head(c, i, h.status, h.chunked)?;
                }
                State::Subscribing | State::Live => {
                    let used = match self.plan.mode {
                        SubMode::Sse => self.sse_event(c, &data[pos..])?,
                        _ => self.ws_frame(c, i, &data[pos..])?,
                    };
                    if used == 0 {
                        return Ok(pos);
                    }
                    pos += used;
                }
                _ => return Ok(data.len()),
            }
        }
    }

    fn on_head(&mut self, c: &mut Conn, i: u32, status: u16, chunked: bool) -> Result<(), Fail> {
        let want = if self.plan.mode == SubMode::Sse {
            200
        } else {
            101
        };
        if status != want {
            return Err(Fail::Lost(Lost::Status(status)));
        }
        if chunked {
            return Err(fatal(anyhow::anyhow!(
                "the SSE response is chunked; the bench reads an unframed event stream"
            )));
        }
        match self.plan.mode {
            SubMode::Sse => {
                // corecast sends the head before the subscription is in place; the event
                // that carries the stream's first id (an id-only event, a reset or the first
                // replayed message) says it is.
                c.state = State::Subscribing;
                if std::mem::take(&mut c.storm_pending) {
                    self.web.storm_resubscribed.fetch_add(1, Ordering::AcqRel);
                    if let Some(cut) = self.st.storm_cut_ns {
                        self.st
                            .storm_resub_us
                            .saturating_record((self.now.saturating_sub(cut) / 1000).max(1));
                        self.st.storm_last_resub_ns = self.st.storm_last_resub_ns.max(self.now);
                    }
                }
            }
            _ => {
                let mut out = Vec::new();
                let mask = self.rng.mask();
                if self.plan.nats {
                    let cmd = format!(
                        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"echo\":false}}\r\nSUB {} {}\r\nPING\r\n",
                        self.channel(c),
                        i + 1
                    );
                    encode_frame(&mut out, ws::OP_BINARY, cmd.as_bytes(), mask);
                } else {
                    let cmd = format!(r#"{{"op":"sub","ch":"{}","id":1}}"#, self.channel(c));
                    encode_frame(&mut out, ws::OP_TEXT, cmd.as_bytes(), mask);
                }
                c.state = State::Subscribing;
                self.send(c, i, &out).map_err(|e| Fail::Lost(Lost::Io(e)))?;
            }
        }
        Ok(())
    }

    /// The connection is subscribed (again).
    fn live(&mut self, c: &mut Conn) {
        c.state = State::Live;
        if !c.ever_live {
            c.ever_live = true;
            self.connecting -= 1;
            self.web.ready.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// One SSE event from `data`, if complete; returns the bytes used (0: incomplete).
    fn sse_event(&mut self, c: &mut Conn, data: &[u8]) -> Result<usize, Fail> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let r = self.sse_event_with(c, data, &mut scratch);
        self.scratch = scratch;
        r
    }

    fn sse_event_with(
        &mut self,
        c: &mut Conn,
        data: &[u8],
        scratch: &mut Vec<u8>,
    ) -> Result<usize, Fail> {
        let Some((used, ev)) = c.sse.parse(data, scratch).map_err(bad)? else {
            return Ok(0);
        };
        if let Some(ms) = ev.retry {
            c.retry_ms = ms.min(u64::from(u32::MAX)) as u32;
            let sec = (self.now.saturating_sub(self.web.started_ns) / 1_000_000_000) as usize;
            self.st.record_retry(sec, ms);
        }
        if let Some(id) = ev.id {
            c.last_id.clear();
            c.last_id.extend_from_slice(id);
            if c.state == State::Subscribing {
                self.live(c);
            }
        }
        if let Some(d) = ev.data {
            if matches!(ev.event, None | Some(b"message")) {
                if let Some((seq, payload)) = crate::json::fast_delivery(d) {
                    self.deliver(c, Some(seq), payload)?;
                    return Ok(used);
                }
            }
            let env = parse_envelope(d).map_err(bad)?;
            match ev.event {
                None | Some(b"message") => {
                    let payload = env.data.ok_or_else(|| {
                        fatal(anyhow::anyhow!(
                            "SSE event without data: {:?}",
                            String::from_utf8_lossy(d)
                        ))
                    })?;
                    self.deliver(c, env.seq, payload)?;
                }
                Some(b"reset") => self.reset(c, env.seq),
                Some(_) => {}
            }
        }
        Ok(used)
    }

    /// One WebSocket frame from `data`, if complete; returns the bytes used (0: incomplete).
    fn ws_frame(&mut self, c: &mut Conn, i: u32, data: &[u8]) -> Result<usize, Fail> {
        let Some((used, f)) = parse_frame(data).map_err(bad)? else {
            return Ok(0);
        };
        match f.opcode {
            ws::OP_PING => {
                let mut out = Vec::with_capacity(6 + f.payload.len());
                encode_frame(&mut out, ws::OP_PONG, f.payload, self.rng.mask());
                self.send(c, i, &out).map_err(|e| Fail::Lost(Lost::Io(e)))?;
            }
            ws::OP_PONG => {}
            ws::OP_CLOSE => return Err(Fail::Lost(Lost::Closed)),
            _ if self.plan.nats => {
                let mut msg = std::mem::take(&mut c.msg);
                let r = if msg.is_empty() {
                    self.nats_bytes(c, i, f.payload).map(|n| {
                        msg.extend_from_slice(&f.payload[n..]);
                    })
                } else {
                    msg.extend_from_slice(f.payload);
                    self.nats_bytes(c, i, &msg).map(|n| {
                        msg.drain(..n);
                    })
                };
                c.msg = msg;
                r?;
            }
            op => {
                if f.fin && op != ws::OP_CONT {
                    self.native_message(c, f.payload)?;
                } else {
                    c.msg.extend_from_slice(f.payload);
                    if f.fin {
                        let msg = std::mem::take(&mut c.msg);
                        let r = self.native_message(c, &msg);
                        c.msg = msg;
                        c.msg.clear();
                        r?;
                    }
                }
            }
        }
        Ok(used)
    }

    /// NATS protocol bytes from a WebSocket; returns the bytes used.
    fn nats_bytes(&mut self, c: &mut Conn, i: u32, data: &[u8]) -> Result<usize, Fail> {
        let mut pos = 0;
        while let Some((used, push)) = parse_nats(&data[pos..]).map_err(bad)? {
            match push {
                Push::Message(p) => self.deliver(c, None, p)?,
                Push::Ping => {
                    let mut out = Vec::new();
                    encode_frame(&mut out, ws::OP_BINARY, b"PONG\r\n", self.rng.mask());
                    self.send(c, i, &out).map_err(|e| Fail::Lost(Lost::Io(e)))?;
                }
                Push::Other => {
                    if c.state == State::Subscribing && data[pos..].starts_with(b"PONG") {
                        self.live(c);
                    }
                }
            }
            pos += used;
        }
        Ok(pos)
    }

    /// One native JSON message.
    fn native_message(&mut self, c: &mut Conn, msg: &[u8]) -> Result<(), Fail> {
        if let Some((seq, payload)) = crate::json::fast_delivery(msg) {
            return self.deliver(c, Some(seq), payload);
        }
        let env = parse_envelope(msg).map_err(bad)?;
        match env.op {
            None => {
                let payload = env.data.ok_or_else(|| {
                    fatal(anyhow::anyhow!(
                        "delivery without data: {:?}",
                        String::from_utf8_lossy(msg)
                    ))
                })?;
                self.deliver(c, env.seq, payload)
            }
            Some(b"ok") => {
                if c.state == State::Subscribing {
                    c.last_seq = env.seq;
                    self.live(c);
                }
                Ok(())
            }
            Some(b"reset") => {
                self.reset(c, env.seq);
                Ok(())
            }
            Some(b"error") => Err(fatal(anyhow::anyhow!(
                "broker error: {}",
                String::from_utf8_lossy(msg)
            ))),
            Some(_) => Ok(()),
        }
    }

    /// A reset notice: deliveries continue after `seq`; what lies between the last `seq` seen
    /// and it was skipped (when the epoch changed too, that distance is only an estimate).
    fn reset(&mut self, c: &mut Conn, seq: Option<u64>) {
        self.st.resets += 1;
        if let (Some(last), Some(seq)) = (c.last_seq, seq) {
            self.st.reset_missed += seq.saturating_sub(last);
        }
        if seq.is_some() {
            c.last_seq = seq;
        }
    }

    /// Accounts one delivery: the broker's `seq` on this connection, then the payload's
    /// header per publisher.
    fn deliver(&mut self, c: &mut Conn, seq: Option<u64>, payload: &[u8]) -> Result<(), Fail> {
        if let Some(s) = seq {
            if let Some(last) = c.last_seq {
                let (missed, dup) = if c.resumed {
                    (&mut self.st.resume_missed, &mut self.st.resume_duplicated)
                } else {
                    (&mut self.st.seq_missed, &mut self.st.seq_duplicated)
                };
                if s > last + 1 {
                    *missed += s - last - 1;
                } else if s <= last {
                    *dup += 1;
                }
            }
            c.last_seq = Some(c.last_seq.map_or(s, |l| l.max(s)));
        }
        if self.plan.idle {
            return Ok(());
        }
        let h = self.plan.encoding.decode(payload).ok_or_else(|| {
            fatal(anyhow::anyhow!(
                "payload without a bench header: {:?}",
                String::from_utf8_lossy(&payload[..payload.len().min(80)])
            ))
        })?;
        match c.seen.arrive(h.publisher, h.seq) {
            Arrival::InOrder => {}
            Arrival::Reordered => self.r.reordered += 1,
            Arrival::Duplicate => self.r.duplicated += 1,
        }
        self.r.delivered_total += 1;
        if let Some(us) = latency_us(&h, self.now, self.measure_from) {
            self.r.delivered += 1;
            record(&mut self.r.latency, us);
        }
        Ok(())
    }

    /// Writes `bytes` now, or queues what does not fit and waits for WRITABLE.
    fn send(&mut self, c: &mut Conn, i: u32, bytes: &[u8]) -> std::io::Result<()> {
        if !c.out.is_empty() {
            c.out.extend_from_slice(bytes);
            return Ok(());
        }
        let Some(s) = c.stream.as_mut() else {
            return Ok(());
        };
        let mut at = 0;
        while at < bytes.len() {
            match s.write(&bytes[at..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => at += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if at < bytes.len() {
            c.out.extend_from_slice(&bytes[at..]);
            c.want_write = true;
            self.registry.reregister(
                s,
                Token(i as usize),
                Interest::READABLE | Interest::WRITABLE,
            )?;
        }
        Ok(())
    }

    fn flush(&mut self, c: &mut Conn, i: u32) -> std::io::Result<()> {
        let Some(s) = c.stream.as_mut() else {
            return Ok(());
        };
        while !c.out.is_empty() {
            match s.write(&c.out) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        c.out = Vec::new();
        c.want_write = false;
        self.registry
            .reregister(s, Token(i as usize), Interest::READABLE)
    }

    /// The connection ended: SSE reconnects after its retry time (once it has been
    /// subscribed; failing the first time is an error, as is any loss of a WebSocket), unless
    /// the run is ending.
    fn lost(&mut self, c: &mut Conn, i: u32, why: Lost) -> anyhow::Result<()> {
        c.stream = None;
        c.buf = Vec::new();
        c.out = Vec::new();
        c.msg = Vec::new();
        c.want_write = false;
        let was = std::mem::replace(&mut c.state, State::Waiting);
        if self.stopping {
            return Ok(());
        }
        if self.plan.mode != SubMode::Sse || !c.ever_live {
            anyhow::bail!(
                "{} subscriber {} ({}): {why}",
                if self.plan.mode == SubMode::Sse {
                    "SSE"
                } else {
                    "WebSocket"
                },
                i,
                self.channel(c)
            );
        }
        match why {
            Lost::Status(_) => self.st.http_errors += 1,
            _ if was != State::Live => self.st.connect_failures += 1,
            _ => {}
        }
        self.schedule(c, i);
        Ok(())
    }

    fn schedule(&mut self, c: &mut Conn, i: u32) {
        c.state = State::Waiting;
        c.resumed = true;
        self.st.reconnects += 1;
        let due = self.now + u64::from(c.retry_ms) * 1_000_000;
        self.timers.push(Reverse((due, i)));
    }

    /// The storm: every connection is shut down and closed at once, and reconnects as if
    /// the server had closed it.
    fn storm_cut(&mut self, conns: &mut [Conn]) {
        self.st.storm_cut_ns = Some(self.now);
        let mut cut = 0;
        for (i, c) in conns.iter_mut().enumerate() {
            if let Some(s) = c.stream.take() {
                let _ = s.shutdown(Shutdown::Both);
                drop(s);
                c.buf = Vec::new();
                c.out = Vec::new();
                c.want_write = false;
                if c.state != State::Waiting {
                    self.schedule(c, i as u32);
                }
            }
            if c.ever_live {
                c.storm_pending = true;
                cut += 1;
            }
        }
        self.web.storm_cut.fetch_add(cut, Ordering::AcqRel);
        self.web.storm_threads_cut.fetch_add(1, Ordering::AcqRel);
    }
}

/// How handling received bytes can fail: the connection ends (reconnect or error by mode)
/// or the run ends.
enum Fail {
    Lost(Lost),
    Fatal(anyhow::Error),
}

fn fatal(e: anyhow::Error) -> Fail {
    Fail::Fatal(e)
}

fn bad(e: String) -> Fail {
    Fail::Fatal(anyhow::Error::msg(e))
}
