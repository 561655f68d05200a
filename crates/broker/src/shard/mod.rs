//! One shard: a pinned thread that owns an io_uring (through the runtime's driver), its connections, its slice of the
//! channel table and its stats. Shards share nothing mutable; they exchange [`ShardMsg`]s
//! over the SPSC mesh.
//!
//! A loop turn: reap completions (accepts, receives, sends) → drain the mesh → resume
//! connections whose input was paused → close what must close → move overflowed messages
//! into peers' rings → submit one send per dirty connection → wake sleeping peers → enter the
//! kernel once (waiting only if there is nothing left to do).

mod accept;
mod admit;
mod close;
mod events;
mod fanout;
mod http;
mod inbox;
mod input;
mod interest;
mod join;
mod mesh;
mod replies;
mod resp;
mod send;
mod sse;
mod sweep;
mod ws;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use corecast_proto::resp::{Args, Limits};
use corecast_runtime::listener::shutdown_socket;
use corecast_runtime::{Driver, DriverConfig, Event, MeshEndpoint};
use slab::Slab;

use crate::config::limits::{SHUTDOWN_CANCEL_GRACE_MS, TASK_WORK_PER_ENTER};
use crate::config::BrokerConfig;
use crate::conn::{Conn, Protocol};
use crate::delivery::Sink;
use crate::msg::{Name, ShardMsg};
use crate::outbound::Wire;
pub(crate) use crate::pending::PendingKind;
use crate::pending::PendingReplies;
use crate::session::SubKind;
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
    /// When the stop was asked for (CLOCK_MONOTONIC ns), set before `stop`: the drain
    /// deadline counts from it, not from when each shard notices, so the whole shutdown
    /// stays within `shutdown_timeout_ms` plus the slack.
    pub stop_at_ns: AtomicU64,
    /// A configuration reloaded at run time (SIGHUP), picked up at each shard's tick.
    pub reload: crate::reload::ConfigSlot,
    /// How a message crosses NUMA nodes (`relay.rs`): one handle per remote node.
    pub relay: crate::relay::RelayPlan,
}

impl Shared {
    /// Fresh shared state for `shards` shards, all on one node.
    pub fn new(shards: usize) -> Self {
        Self::with_relay(crate::relay::RelayPlan::new(&vec![None; shards]))
    }

    /// Fresh shared state for the shards of `relay`'s layout.
    pub fn with_relay(relay: crate::relay::RelayPlan) -> Self {
        let shards = relay.shards();
        Self {
            board: StatsBoard::new(shards),
            connections: AtomicUsize::new(0),
            congested: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            stop_at_ns: AtomicU64::new(0),
            reload: Default::default(),
            relay,
        }
    }
}

/// The reason in the close frame (1001) every WebSocket client gets at shutdown.
const SHUTDOWN_CLOSE_REASON: &str = "server shutting down";

/// A listening socket of this shard.
pub struct Listener {
    /// Socket.
    pub fd: RawFd,
    /// What it speaks.
    pub proto: Protocol,
    /// Accepting stopped for lack of descriptors or memory; the timer re-arms it.
    pub backing_off: bool,
}

/// The tag of each operation given to the driver: kind in the top byte, then the 24-bit
/// generation and the slab key of the connection (or the listener index), so a completion
/// for a connection that has since closed never reaches a new one in the same slot.
mod token {
    pub const ACCEPT: u64 = 1;
    pub const RECV: u64 = 2;
    pub const SEND: u64 = 3;
    pub const SEND_ZC: u64 = 4;
    pub const LISTENER_CLOSED: u64 = 5;
    pub const TIMER: u64 = 6;
    pub const CLOSE: u64 = 8;

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
    /// The io_uring: every socket operation, and the memory the kernel reads, goes through it.
    io: Driver<Wire>,
    /// Completions taken from the driver this turn (kept to reuse its allocation).
    events: Vec<Event>,
    mesh: MeshPort,
    /// Some connection stayed paused this turn while the mesh was congested (see `run`).
    congestion_paused: bool,
    /// When this turn started (CLOCK_MONOTONIC ns).
    turn_start_ns: u64,
    /// Work units charged this turn (a command, a pattern matched), see `charge_work`.
    turn_work: u64,
    /// This turn spent `TURN_INPUT_BUDGET_NS`: client input waits for the next turn.
    turn_exhausted: bool,
    /// Some connection waits for the next turn's budget: the shard must not sleep.
    budget_paused: bool,
    /// Messages were left in a peer's ring because the turn's budget ran out.
    mesh_deferred: bool,
    /// A lap of the owned channels' sweep is under way (see `sweep_slice`).
    sweeping: bool,
    /// Subscriptions of closed connections still to release (see `release_some`).
    releasing: std::collections::VecDeque<(ConnRef, std::vec::IntoIter<(SubKind, Name)>)>,
    listeners: Vec<Listener>,
    conns: Slab<Conn>,
    next_gen: u32,
    local: Local,
    owned: Owned,
    patterns: Patterns,
    pending: PendingReplies,
    dirty: Vec<u32>,
    /// Connections with an answer to an HTTP request (`/healthz`, `/stats`, `POST /pub`):
    /// sent first at the end of the turn and outside `max_sends_per_turn`, so an operator's
    /// probe is not queued behind thousands of streams being set up in a reconnect storm.
    urgent: Vec<u32>,
    stalled: Vec<u32>,
    /// Incomplete input buffered over this shard's connections (the sum of their
    /// `input_charged`), bounded by `max_unparsed_bytes_per_shard`.
    unparsed_bytes: usize,
    /// Connections to close, oldest first, at most `CLOSES_PER_TURN` a turn.
    to_close: std::collections::VecDeque<ConnRef>,
    targets: Vec<usize>,
    /// The fan-out plan of the message being published (reused).
    plan: crate::relay::Plan,
    args: Args,
    limits: Limits,
    scratch: Vec<u8>,
    /// Rendered `/stats` and `/metrics` bodies and when they were rendered (see `http.rs`).
    stats_bodies: http::RenderedStats,
    counters: Counters,
    latency: Latencies,
    now_ns: u64,
    stopping: bool,
    stop_deadline_ns: u64,
    /// The frames of the last replayed list (see `join.rs`): resumers in a storm share them.
    #[allow(clippy::type_complexity)]
    replay_cache: Option<(
        Arc<[Arc<crate::msg::Message>]>,
        crate::delivery::Format,
        std::rc::Rc<[crate::outbound::LocalFrame]>,
    )>,
    /// In a reconnect storm (see `sweep.rs`): SSE retry advice is raised.
    storm: bool,
    /// Generation of the reloaded configuration this shard runs with (`reload.rs`).
    cfg_generation: u64,
    /// `counters.sse_streams` at the last sweep.
    sse_streams_at_sweep: u64,
    /// When the next once-a-second sweep runs.
    next_sweep_ns: u64,
    /// Connection keys of the sweep (kept to reuse the allocation).
    sweep_keys: Vec<u32>,
}

impl Shard {
    /// Builds shard `mesh.id()` on the calling thread.
    pub fn new(
        cfg: Arc<BrokerConfig>,
        shared: Arc<Shared>,
        mesh: MeshEndpoint<ShardMsg>,
        listeners: Vec<Listener>,
    ) -> std::io::Result<Self> {
        let (io, features) = Driver::new(DriverConfig {
            sq_entries: crate::config::limits::SQ_ENTRIES,
            cq_entries: crate::config::limits::CQ_ENTRIES,
            recv_buffers: cfg.recv_buffers,
            recv_buffer_size: cfg.recv_buffer_size,
        })?;
        tracing::info!(shard = mesh.id(), ?features, "io_uring ready");
        mesh.set_ring_fd(io.ring_fd());
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
            turn_start_ns: 0,
            turn_work: 0,
            turn_exhausted: false,
            budget_paused: false,
            releasing: Default::default(),
            sweeping: false,
            mesh_deferred: false,
            listeners,
            conns: Slab::with_capacity(per_shard),
            next_gen: 1,
            local: Local::with_capacity(per_shard),
            owned: {
                let mut owned = Owned::new(shards, per_shard);
                owned.keep_idle_channels(cfg.history.size > 0);
                owned
            },
            patterns: Patterns::new(shards),
            pending: PendingReplies::default(),
            dirty: Vec::new(),
            urgent: Vec::new(),
            stalled: Vec::new(),
            unparsed_bytes: 0,
            to_close: std::collections::VecDeque::new(),
            targets: Vec::new(),
            plan: crate::relay::Plan::new(),
            events: Vec::with_capacity(1024),
            args: Args::new(),
            limits,
            scratch: Vec::with_capacity(256),
            stats_bodies: http::RenderedStats::default(),
            counters: Counters::default(),
            latency: Latencies::new(),
            now_ns: 0,
            stopping: false,
            stop_deadline_ns: 0,
            replay_cache: None,
            storm: false,
            cfg_generation: 0,
            sse_streams_at_sweep: 0,
            next_sweep_ns: 0,
            sweep_keys: Vec::new(),
            cfg,
            shared,
            io,
            mesh: MeshPort::new(mesh),
        })
    }

    /// Runs until shutdown completes.
    pub fn run(mut self) {
        self.now_ns = corecast_runtime::clock::now_ns();
        self.next_sweep_ns = self.now_ns + sweep::SWEEP_NS;
        for i in 0..self.listeners.len() {
            self.arm_accept(i);
        }
        self.arm_timer();
        // Start of the turn whose work is being timed, and whether that turn ended in a
        // non-blocking enter (then its kernel work counts too, up to the next turn's start).
        let mut turn_start_ns = self.now_ns;
        let mut timing_enter = false;
        loop {
            self.now_ns = corecast_runtime::clock::now_ns();
            if timing_enter {
                self.record_turn(self.now_ns - turn_start_ns);
            }
            turn_start_ns = self.now_ns;
            self.turn_start_ns = self.now_ns;
            self.turn_work = 0;
            self.turn_exhausted = false;
            let reaped = self.reap();
            self.drain_mesh();
            self.resume_stalled();
            self.release_some();
            self.sweep_slice();
            // Answers to requests go out before this turn's closes: a storm of peers leaving
            // at once would otherwise put thousands of closes (and their TCP work) ahead of
            // an operator's /healthz in the submission queue.
            self.flush_urgent();
            self.close_queued();
            self.mesh.flush_overflow(&self.shared.congested);
            self.flush_sends();
            self.send_wakes();
            if self.stopping && (self.conns.is_empty() || self.now_ns >= self.stop_deadline_ns) {
                break;
            }
            // A turn that found completions does not sleep: the kernel may hold more
            // deferred work than one enter runs (see `Driver::enter_drain`).
            let busy = reaped > 0
                || self.mesh.busy()
                || !self.dirty.is_empty()
                || !self.urgent.is_empty()
                || !self.to_close.is_empty()
                || self.budget_paused
                || !self.releasing.is_empty()
                || self.sweeping
                || self.mesh_deferred;
            timing_enter = true;
            let result = if !busy && self.mesh.endpoint().prepare_sleep() {
                // Only this turn's own work: the enter below waits.
                timing_enter = false;
                self.record_turn(corecast_runtime::clock::now_ns() - turn_start_ns);
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
                self.io.enter_drain(TASK_WORK_PER_ENTER)
            };
            if let Err(e) = result {
                // The driver retries EINTR, EAGAIN and EBUSY itself; anything else means the
                // ring is unusable.
                tracing::error!(shard = self.id, error = %e, "io_uring_enter failed");
                break;
            }
        }
        // Every operation is cancelled and completed before any buffer it uses is freed. At
        // shutdown the wait is what is left of the drain deadline (if the loop ended early)
        // plus a short grace, not another full `shutdown_timeout_ms`: an operation that
        // cannot end (a zero-copy send's notification waits for a peer that never reads)
        // would otherwise double the time to exit. A loop that ended on an error waits as
        // long as a drain would.
        let wait_ms = if self.stopping {
            let left_ns = self
                .stop_deadline_ns
                .saturating_sub(corecast_runtime::clock::now_ns());
            left_ns / 1_000_000 + SHUTDOWN_CANCEL_GRACE_MS
        } else {
            self.cfg.shutdown_timeout_ms
        };
        if !self.io.shutdown(wait_ms) {
            tracing::warn!(
                shard = self.id,
                in_flight = self.io.in_flight(),
                "operations still in flight at exit; their buffers are leaked, not freed"
            );
        }
        self.publish_stats();
        tracing::info!(shard = self.id, "shard stopped");
    }

    /// Records how long a turn of work took: the longest any connection on this shard can
    /// have waited for its completion to be looked at.
    fn record_turn(&mut self, ns: u64) {
        Latencies::record_ns(&mut self.latency.turn, ns);
    }

    /// Submits queued operations and runs deferred completion work; waits for `want`
    /// completions. While stopping, the wait ends at the drain deadline: with only slow
    /// readers left nothing may complete before it, and the loop must end on time rather
    /// than at the next stats tick.
    fn enter(&mut self, want: u32) -> std::io::Result<()> {
        if self.stopping && want > 0 {
            let left_ns = self
                .stop_deadline_ns
                .saturating_sub(corecast_runtime::clock::now_ns());
            return self
                .io
                .enter_timeout(want, std::time::Duration::from_nanos(left_ns));
        }
        self.io.enter(want)
    }

    fn arm_timer(&mut self) {
        let interval_ns = self.cfg.stats_interval_ms * 1_000_000;
        self.io
            .timeout(interval_ns, token::make(token::TIMER, 0, 0));
    }

    fn on_timer(&mut self) {
        for idx in 0..self.listeners.len() {
            if std::mem::take(&mut self.listeners[idx].backing_off) && !self.stopping {
                self.arm_accept(idx);
            }
        }
        self.take_reloaded_config();
        self.maybe_sweep();
        self.publish_stats();
        if !self.stopping && self.shared.stop.load(Ordering::Relaxed) {
            self.begin_shutdown();
        }
        self.arm_timer();
    }

    /// Switches to a configuration reloaded since the last tick, if any.
    fn take_reloaded_config(&mut self) {
        let generation = self.shared.reload.generation();
        if generation == self.cfg_generation {
            return;
        }
        self.cfg_generation = generation;
        if let Some(cfg) = self.shared.reload.current() {
            self.owned.keep_idle_channels(cfg.history.size > 0);
            self.cfg = cfg;
            tracing::debug!(shard = self.id, generation, "configuration reloaded");
        }
    }

    fn publish_stats(&mut self) {
        self.counters.connections = self.conns.len() as u64;
        self.counters.sq_stalls = self.io.sq_stalls();
        self.counters.channels = self.owned.len() as u64;
        self.counters.channel_table_bytes = (self.local.bytes() + self.owned.bytes()) as u64;
        self.counters.patterns = self.patterns.len() as u64;
        self.counters.history_bytes = self.owned.history_bytes() as u64;
        self.shared
            .board
            .publish(self.id, &self.counters, &self.latency);
    }

    fn begin_shutdown(&mut self) {
        self.stopping = true;
        // From when the stop was asked for: this shard may notice it up to a tick later.
        let asked = match self.shared.stop_at_ns.load(Ordering::SeqCst) {
            0 => self.now_ns,
            at => at.min(self.now_ns),
        };
        self.stop_deadline_ns = asked + self.cfg.shutdown_timeout_ms * 1_000_000;
        for l in std::mem::take(&mut self.listeners) {
            // shutdown(2) takes the socket out of the listening state at once, which ends
            // the multishot accept (closing alone would not: the ring holds a reference)
            // and resets connections still in its backlog; new ones are refused.
            let _ = shutdown_socket(l.fd);
            self.io
                .close(l.fd, token::make(token::LISTENER_CLOSED, 0, 0));
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let conn = &mut self.conns[key];
            // A WebSocket client learns why its connection ends (1001, going away) rather
            // than seeing a bare TCP close (1006 in browsers). The close frame is queued
            // behind what is already queued, which drains first as for every connection.
            if conn.life == crate::conn::Life::Open
                && matches!(&conn.session, crate::session::Session::Ws(s) if !s.close_sent)
            {
                self.ws_close(
                    key,
                    corecast_proto::ws::close_code::GOING_AWAY,
                    SHUTDOWN_CLOSE_REASON,
                );
            }
            let conn = &mut self.conns[key];
            if conn.life == crate::conn::Life::Open {
                conn.life = crate::conn::Life::CloseAfterFlush;
            }
            if conn.out.is_empty() && !conn.send_inflight {
                let who = ConnRef {
                    key: key as u32,
                    gen: conn.gen,
                };
                self.to_close.push_back(who);
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

    /// Marks a connection to be sent to first this turn (see `urgent`).
    fn mark_urgent(&mut self, key: usize) {
        self.conns[key].dirty = true;
        self.urgent.push(key as u32);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Protocol;
    use corecast_runtime::Mesh;

    /// A one-shard shard on a real io_uring, with no listener: its methods can be driven
    /// directly, without sockets.
    fn shard() -> Shard {
        shard_with(BrokerConfig::default())
    }

    fn shard_with(cfg: BrokerConfig) -> Shard {
        let cfg = Arc::new(BrokerConfig {
            recv_buffers: 16,
            recv_buffer_size: 4096,
            max_connections: 64,
            ..cfg
        });
        let endpoint = Mesh::build::<ShardMsg>(1, 16).pop().expect("one endpoint");
        Shard::new(cfg, Arc::new(Shared::new(1)), endpoint, Vec::new()).expect("io_uring")
    }

    #[test]
    fn a_client_paused_for_congestion_makes_the_shard_recheck_before_sleeping() {
        let mut s = shard();
        let key = s
            .conns
            .insert(Conn::new(-1, 1, Protocol::Resp.new_session(1)));
        s.shared.congested.store(1, Ordering::SeqCst);
        assert_eq!(s.process(key, b"PUBLISH news hi\r\n"), 0, "input waits");
        assert!(s.conns[key].stalled);
        // Before the fix only resume_stalled recorded a congestion pause: a client paused
        // while parsing left the flag unset, and the shard slept a whole tick after the
        // congestion ended.
        assert!(s.congestion_paused);
        s.shared.congested.store(0, Ordering::SeqCst);
        s.resume_stalled();
        assert!(!s.congestion_paused);
    }

    #[test]
    fn a_backlog_pause_is_not_a_congestion_pause() {
        let mut s = shard();
        let key = s
            .conns
            .insert(Conn::new(-1, 1, Protocol::Resp.new_session(1)));
        let cap = s.cfg.max_pending_bytes;
        s.conns[key].out.reply(&vec![b'x'; cap + 1]);
        assert_eq!(s.process(key, b"PING\r\n"), 0);
        assert!(s.conns[key].stalled);
        assert!(!s.congestion_paused);
    }

    #[test]
    fn a_turn_submits_at_most_the_cap_and_the_rest_go_first_next_turn() {
        let mut s = shard_with(BrokerConfig {
            max_sends_per_turn: 2,
            ..BrokerConfig::default()
        });
        let keys: Vec<usize> = (0..3)
            .map(|_| {
                s.conns
                    .insert(Conn::new(-1, 1, Protocol::Resp.new_session(1)))
            })
            .collect();
        for &k in &keys {
            s.conns[k].out.reply(b"+OK\r\n");
            s.mark_dirty(k);
        }
        s.flush_sends();
        let in_flight: Vec<bool> = keys.iter().map(|&k| s.conns[k].send_inflight).collect();
        assert_eq!(in_flight, [true, true, false]);
        // A connection made dirty after the cut queues behind the one left over.
        let late = s
            .conns
            .insert(Conn::new(-1, 1, Protocol::Resp.new_session(1)));
        s.conns[late].out.reply(b"+OK\r\n");
        s.mark_dirty(late);
        assert_eq!(s.dirty, [keys[2] as u32, late as u32]);
        s.flush_sends();
        assert!(s.conns[keys[2]].send_inflight && s.conns[late].send_inflight);
        assert!(s.dirty.is_empty());
    }
}
