//! One shard: a pinned thread that owns an io_uring, its connections, its slice of the
//! channel table and its stats. Shards share nothing mutable; they exchange [`ShardMsg`]s
//! over the SPSC mesh.
//!
//! A loop turn: reap completions (accepts, receives, sends) → drain the mesh → resume
//! connections whose input was paused → close what must close → move overflowed messages
//! into peers' rings → submit one send per dirty connection → wake sleeping peers → enter the
//! kernel once (waiting only if there is nothing left to do).

mod fanout;
mod http;
mod io;
mod mesh;
mod resp;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use corecast_proto::resp::{Args, Limits};
use corecast_runtime::{BufRing, MeshEndpoint};
use io_uring::{opcode, squeue, types, IoUring};
use slab::Slab;

use crate::config::BrokerConfig;
use crate::conn::{Conn, Protocol};
use crate::delivery::Sink;
use crate::msg::ShardMsg;
pub(crate) use crate::pending::PendingKind;
use crate::pending::PendingReplies;
use crate::stats::{Counters, Latencies, StatsBoard};
use crate::tables::{ConnRef, Local, Owned, Patterns};
use mesh::MeshPort;

/// State every shard can see: the stats board and a few process-wide atomics that are read
/// off the message path (connection admission, congestion, shutdown).
pub struct Shared {
    /// Stats snapshots.
    pub board: StatsBoard,
    /// Open connections across shards (for `max_connections`).
    pub connections: AtomicUsize,
    /// Shards that currently hold messages their peers' rings could not take. While non-zero
    /// every shard stops parsing client input, so overflow stays bounded.
    pub congested: AtomicUsize,
    /// Set by the signal handler thread.
    pub stop: AtomicBool,
}

impl Shared {
    /// Fresh shared state for `shards` shards.
    pub fn new(shards: usize) -> Self {
        Self {
            board: StatsBoard::new(shards),
            connections: AtomicUsize::new(0),
            congested: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        }
    }
}

/// A listening socket of this shard.
pub struct Listener {
    /// Socket.
    pub fd: RawFd,
    /// What it speaks.
    pub proto: Protocol,
    /// Accepting stopped for lack of descriptors or memory; the timer re-arms it.
    pub backing_off: bool,
}

/// Kinds of operation, stored in the top byte of `user_data`.
mod token {
    pub const ACCEPT: u64 = 1;
    pub const RECV: u64 = 2;
    pub const SEND: u64 = 3;
    pub const SEND_ZC: u64 = 4;
    pub const WAKE: u64 = 5;
    pub const TIMER: u64 = 6;
    pub const WAKE_SENT: u64 = 7;
    pub const CLOSE: u64 = 8;
    pub const CANCEL: u64 = 9;

    pub const GEN_MASK: u32 = 0x00FF_FFFF;

    pub fn make(kind: u64, key: u32, gen: u32) -> u64 {
        kind << 56 | ((gen & GEN_MASK) as u64) << 32 | key as u64
    }

    pub fn split(t: u64) -> (u64, u32, u32) {
        (t >> 56, t as u32, ((t >> 32) as u32) & GEN_MASK)
    }
}

/// One shard. Built on its own thread, after pinning, so its memory is NUMA-local.
pub struct Shard {
    id: usize,
    shards: usize,
    cfg: Arc<BrokerConfig>,
    shared: Arc<Shared>,
    ring: IoUring,
    bufring: Option<BufRing>,
    mesh: MeshPort,
    /// Some connection stayed paused this turn while the mesh was congested (see `run`).
    congestion_paused: bool,
    listeners: Vec<Listener>,
    conns: Slab<Conn>,
    // Boxed: a SendBuf's address must not change while the kernel may read it.
    #[allow(clippy::vec_box)]
    send_pool: Vec<Box<crate::conn::SendBuf>>,
    next_gen: u32,
    local: Local,
    owned: Owned,
    patterns: Patterns,
    pending: PendingReplies,
    dirty: Vec<u32>,
    stalled: Vec<u32>,
    to_close: Vec<u32>,
    targets: Vec<usize>,
    cqes: Vec<(u64, i32, u32)>,
    args: Args,
    limits: Limits,
    scratch: Vec<u8>,
    /// Rendered `/stats` and `/metrics` bodies and when they were rendered (see `http.rs`).
    stats_bodies: http::RenderedStats,
    counters: Counters,
    latency: Latencies,
    timer: Box<types::Timespec>,
    now_ns: u64,
    stopping: bool,
    stop_deadline_ns: u64,
}

impl Shard {
    /// Builds shard `mesh.id()` on the calling thread.
    pub fn new(
        cfg: Arc<BrokerConfig>,
        shared: Arc<Shared>,
        mesh: MeshEndpoint<ShardMsg>,
        listeners: Vec<Listener>,
    ) -> std::io::Result<Self> {
        let (ring, features) = corecast_runtime::UringBuilder {
            sq_entries: crate::config::limits::SQ_ENTRIES,
            cq_entries: crate::config::limits::CQ_ENTRIES,
        }
        .build()?;
        tracing::info!(shard = mesh.id(), ?features, "io_uring ready");
        mesh.set_ring_fd(ring.as_raw_fd_compat());
        let bufring = BufRing::new(&ring, 0, cfg.recv_buffers, cfg.recv_buffer_size)?;
        let shards = mesh.shards();
        // Sized for this shard's share of max_connections up front: only touched pages
        // count, and the tables never pay a grow-and-copy (whose freed copies the allocator
        // keeps) while clients arrive.
        let per_shard = (cfg.max_connections / shards).max(64);
        let limits = Limits {
            max_bulk_len: cfg.max_bulk_len,
            ..Limits::default()
        };
        Ok(Self {
            id: mesh.id(),
            shards,
            congestion_paused: false,
            listeners,
            conns: Slab::with_capacity(per_shard),
            send_pool: Vec::new(),
            next_gen: 1,
            local: Local::with_capacity(per_shard),
            owned: Owned::new(shards, per_shard),
            patterns: Patterns::new(shards),
            pending: PendingReplies::default(),
            dirty: Vec::new(),
            stalled: Vec::new(),
            to_close: Vec::new(),
            targets: Vec::new(),
            cqes: Vec::with_capacity(1024),
            args: Args::new(),
            limits,
            scratch: Vec::with_capacity(256),
            stats_bodies: http::RenderedStats::default(),
            counters: Counters::default(),
            latency: Latencies::new(),
            timer: Box::new(types::Timespec::new().nsec(cfg.stats_interval_ms as u32 * 1_000_000)),
            now_ns: 0,
            stopping: false,
            stop_deadline_ns: 0,
            cfg,
            shared,
            ring,
            bufring: Some(bufring),
            mesh: MeshPort::new(mesh),
        })
    }

    /// Runs until shutdown completes.
    pub fn run(mut self) {
        self.now_ns = corecast_runtime::clock::now_ns();
        for i in 0..self.listeners.len() {
            self.arm_accept(i);
        }
        self.arm_timer();
        loop {
            self.now_ns = corecast_runtime::clock::now_ns();
            self.reap();
            self.drain_mesh();
            self.resume_stalled();
            self.close_queued();
            self.mesh.flush_overflow(&self.shared.congested);
            self.flush_sends();
            self.send_wakes();
            if self.stopping && (self.conns.is_empty() || self.now_ns >= self.stop_deadline_ns) {
                break;
            }
            let busy = self.mesh.busy() || !self.dirty.is_empty() || !self.to_close.is_empty();
            let result = if !busy && self.mesh.endpoint().prepare_sleep() {
                // A peer that ends congestion wakes only shards already asleep; one that was
                // about to sleep sees the cleared count here instead (the sleep flag is
                // stored before, and the count cleared before the peer reads the flag).
                if self.congestion_paused && self.shared.congested.load(Ordering::SeqCst) == 0 {
                    self.mesh.endpoint().awake();
                    self.enter(0)
                } else {
                    let r = self.enter(1);
                    self.mesh.endpoint().awake();
                    r
                }
            } else {
                self.enter(0)
            };
            if let Err(e) = result {
                if e.raw_os_error() != Some(libc::EINTR) && e.raw_os_error() != Some(libc::EBUSY) {
                    tracing::error!(shard = self.id, error = %e, "io_uring_enter failed");
                    break;
                }
            }
        }
        self.publish_stats();
        tracing::info!(shard = self.id, "shard stopped");
    }

    /// Submits queued SQEs and, with GETEVENTS, runs deferred task work so completions
    /// appear; waits for `want` completions.
    fn enter(&mut self, want: u32) -> std::io::Result<usize> {
        let sub = self.ring.submitter();
        let to_submit = unsafe { self.ring.submission_shared().len() } as u32;
        // SAFETY: no extra argument is passed.
        unsafe {
            sub.enter::<libc::sigset_t>(to_submit, want, 1 /* IORING_ENTER_GETEVENTS */, None)
        }
    }

    /// Queues an SQE, flushing the submission queue to the kernel if it is full.
    fn push_sqe(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every buffer an entry points to is owned by the shard (connection
            // frames, send buffers, the timer) and outlives the operation.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_ok() {
                return;
            }
            self.counters.sq_stalls += 1;
            if let Err(e) = self.ring.submit() {
                tracing::warn!(shard = self.id, error = %e, "submit while the SQ was full");
            }
        }
    }

    fn arm_timer(&mut self) {
        let e = opcode::Timeout::new(&*self.timer as *const types::Timespec)
            .build()
            .user_data(token::make(token::TIMER, 0, 0));
        self.push_sqe(e);
    }

    fn on_timer(&mut self) {
        for idx in 0..self.listeners.len() {
            if std::mem::take(&mut self.listeners[idx].backing_off) && !self.stopping {
                self.arm_accept(idx);
            }
        }
        self.publish_stats();
        if !self.stopping && self.shared.stop.load(Ordering::Relaxed) {
            self.begin_shutdown();
        }
        self.arm_timer();
    }

    fn publish_stats(&mut self) {
        self.counters.connections = self.conns.len() as u64;
        self.counters.channels = self.owned.len() as u64;
        self.shared
            .board
            .publish(self.id, &self.counters, &self.latency);
    }

    fn begin_shutdown(&mut self) {
        self.stopping = true;
        self.stop_deadline_ns = self.now_ns + self.cfg.shutdown_timeout_ms * 1_000_000;
        for l in std::mem::take(&mut self.listeners) {
            // shutdown(2) takes the socket out of the listening state at once, which ends
            // the multishot accept (closing alone would not: the ring holds a reference)
            // and resets connections still in its backlog; new ones are refused.
            // SAFETY: our own listening socket.
            unsafe { libc::shutdown(l.fd, libc::SHUT_RDWR) };
            let e = opcode::Close::new(types::Fd(l.fd))
                .build()
                .user_data(token::make(token::WAKE, 0, 0));
            self.push_sqe(e);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let conn = &mut self.conns[key];
            if conn.life == crate::conn::Life::Open {
                conn.life = crate::conn::Life::CloseAfterFlush;
            }
            if conn.out.is_empty() && !conn.send_inflight {
                self.to_close.push(key as u32);
            } else {
                self.mark_dirty(key);
            }
        }
    }

    fn mark_dirty(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key as u32);
        }
    }

    /// This shard's subscriber table beside the parts of the shard that delivery writes:
    /// disjoint fields, so a delivery can read the subscriber list while it writes queues.
    fn local_and_sink(&mut self) -> (&Local, Sink<'_>) {
        (
            &self.local,
            Sink {
                conns: &mut self.conns,
                dirty: &mut self.dirty,
                to_close: &mut self.to_close,
                counters: &mut self.counters,
                cfg: &self.cfg,
            },
        )
    }

    /// The connection at `r`, if it is still the same connection.
    fn conn_mut(&mut self, r: ConnRef) -> Option<&mut Conn> {
        self.conns
            .get_mut(r.key as usize)
            .filter(|c| c.gen == r.gen)
    }
}

/// `IoUring::as_raw_fd` under a name that does not need the trait in scope everywhere.
trait RawRingFd {
    fn as_raw_fd_compat(&self) -> RawFd;
}

impl RawRingFd for IoUring {
    fn as_raw_fd_compat(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.as_raw_fd()
    }
}
