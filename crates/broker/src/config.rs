//! Every limit a shard enforces, in one place, with the default and the reason for it: the
//! options in [`BrokerConfig`], the fixed bounds in [`limits`].

use std::net::SocketAddr;

use crate::session::Protocol;

/// One listening address and the protocol spoken there. Every shard binds each listener with
/// SO_REUSEPORT, so a front-end is reachable on every core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerSpec {
    /// What connections accepted here speak.
    pub protocol: Protocol,
    /// Where (port 0 picks a free port once; every shard then binds that port).
    pub addr: SocketAddr,
}

impl ListenerSpec {
    /// The default listener of `protocol`: all interfaces, the protocol's usual port.
    pub fn default_for(protocol: Protocol) -> Self {
        let port = match protocol {
            Protocol::Resp => 6379,
            Protocol::Http => 8080,
        };
        Self {
            protocol,
            addr: SocketAddr::from(([0, 0, 0, 0], port)),
        }
    }
}

/// Limits that are not options: each is a fixed bound with the reason for its value. The
/// options, with their defaults, are [`BrokerConfig`].
pub mod limits {
    /// Largest WebSocket frame header (2 bytes, an 8-byte length, the 4-byte mask): a frame
    /// is decoded once it is whole in the connection's unparsed input, so a WebSocket
    /// connection may hold this much beyond `max_unparsed_bytes` (which bounds the payload,
    /// and so must be at least `ws.max_message_bytes`).
    pub const WS_MAX_FRAME_HEADER: usize = corecast_proto::ws::MAX_FRAME_HEADER;
    /// Connections the HTTP listener may open past `max_connections` (operations access).
    pub const HTTP_RESERVE_CONNECTIONS: usize = 64;
    /// How long a shard's io_uring teardown, after the drain deadline, waits for the
    /// operations it cancels (they usually end within microseconds). What is still in flight
    /// then, such as a zero-copy send whose notification waits for a peer that never reads,
    /// is leaked rather than waited for: the process is exiting. Part of the shutdown slack
    /// documented in docs/operations.md (Shutdown).
    pub const SHUTDOWN_CANCEL_GRACE_MS: u64 = 100;
    /// Idle send buffers a shard keeps for reuse.
    pub const SEND_POOL_MAX: usize = 1024;
    /// Messages taken from one peer's ring per loop turn, so one busy peer cannot starve the
    /// others or the shard's own sockets.
    pub const DRAIN_BUDGET: usize = 4096;
    /// Unparsed input of a paused connection before its receive is cancelled, so TCP flow
    /// control pushes back on the client instead of the shard buffering for it.
    pub const PAUSED_INPUT_BYTES: usize = 256 << 10;
    /// Time one turn of a shard spends on client input before the rest waits for the next
    /// turn (checked every 64 commands or matched patterns). 2 ms: a turn of plain commands
    /// never reaches it, while a pipelined burst of publishes each matched against a
    /// thousand costly patterns (5 ms apiece) held a shard for seconds without it.
    pub const TURN_INPUT_BUDGET_NS: u64 = 2_000_000;
    /// Names of one (P|S)(UN)SUBSCRIBE handled per turn; the rest wait for the next turns
    /// (the connection's later commands behind them). One SUBSCRIBE of 65,536 names held its
    /// shard 120-192 ms; 512 names are about 1.5 ms.
    pub const SUBSCRIPTIONS_PER_TURN: usize = 512;
    /// Subscriptions of closed connections released per turn (the rest in later turns,
    /// while the closed connection receives nothing): closing 30 connections holding 65,536
    /// subscriptions each held both shards about 0.9 s.
    pub const RELEASES_PER_TURN: usize = 2048;
    /// Owned channels the once-a-second sweep looks at per turn (history expiry and budget,
    /// idle channels forgotten); a lap over a large table spans several turns. A table of
    /// twelve million abandoned channels was swept in one 839 ms turn; 8192 entries are
    /// well under a millisecond.
    pub const SWEEP_ENTRIES_PER_TURN: usize = 8192;
    /// Pattern matches one connection's publishes waiting for a remote owner may cost
    /// together: the in-flight cap is this over the number of patterns (at most
    /// `max_inflight_publishes`, at least 4). 4096 matches are about 25 ms of the owner's time
    /// at the worst pattern shape (6 µs a match) and 40 µs at a typical one, so another
    /// client's request waits at most that long behind them in the shards' ring.
    pub const PATTERN_MATCHES_IN_FLIGHT: usize = 4096;
    /// Incomplete input below which a connection is not closed to bring the shard back
    /// under `max_unparsed_bytes_per_shard` (unless its own input passed the budget): a
    /// packet's tail is normal, and connections holding less cost at most
    /// `max_connections` × 4 KiB together.
    pub const SHED_MIN_BYTES: usize = 4 << 10;
    /// Longest client name (CLIENT SETNAME) and library name or version (CLIENT SETINFO).
    /// Redis has no limit; a name is shown in logs and kept for the connection's life, so
    /// 1000 clients naming themselves with 1 MiB held 940 MB. 256 bytes fit any real name.
    pub const MAX_CLIENT_NAME_BYTES: usize = 256;
    /// Channels one SSE stream may name (`ch` parameters): its event ids carry a position
    /// per channel, and browsers keep ids in memory and send them back in a header.
    pub const MAX_SSE_CHANNELS: usize = 64;
    /// Bytes of history per message beyond its payload (the `Arc<Message>`, its queue slot
    /// and the channel name handle), counted against `history.max_bytes`.
    pub const HISTORY_OVERHEAD_BYTES: usize = 96;
    /// How long a rendered `/stats` or `/metrics` body is served again. Rendering copies every
    /// shard's histograms (hundreds of KiB), so a client pipelining hundreds of requests would
    /// hold the shard for each; within this window they get the same bytes. Shards publish
    /// their snapshots every `stats_interval_ms` (100 ms by default), so the reuse adds little
    /// staleness.
    pub const STATS_REUSE_NS: u64 = 20_000_000;
    /// Largest capacity an emptied queue keeps (16 KiB of entries; a 256-message window fits).
    pub const MAX_KEPT_DEQUE_CAPACITY: usize = 1024;
    /// Connections a shard closes per loop turn (the rest wait for the next turns, the loop
    /// not sleeping meanwhile). A reconnect storm cut 15,000 streams at once and the turn
    /// that closed them all took about 250 ms, during which `/healthz` waited; 512 closes
    /// took 11 ms of kernel work a turn here, 256 keep a turn near 5 ms.
    pub const CLOSES_PER_TURN: usize = 256;
    /// Deferred completion work (a socket's readiness: an accepted connection, a request's
    /// bytes, a peer's FIN) a busy shard asks the kernel to run per `io_uring_enter`. Linux
    /// runs only 20 items per pass otherwise; in a reconnect storm of 15,000 SSE clients
    /// that made a turn per 20-40 items and a `/healthz` request waited 100-250 ms behind
    /// the rest. 1024 items are a few milliseconds of kernel work: with it the storm's
    /// `/healthz` p99 went to under 10 ms.
    pub const TASK_WORK_PER_ENTER: u32 = 1024;
    /// Listen backlog per shard socket (the kernel caps it at `net.core.somaxconn`, 4096 by
    /// default since Linux 5.4). 4096: in a reconnect storm of 15,000 SSE clients on one
    /// shard, a backlog of 1024 overflowed (`ListenOverflows` 1008) and each dropped client
    /// waited a 1 s SYN retransmit.
    pub const BACKLOG: i32 = 4096;
    /// Submission queue entries of a shard's io_uring: one turn's sends, receives and
    /// closes fit without an early submit (`sq_stalls` counts the turns that did not).
    pub const SQ_ENTRIES: u32 = 4096;
    /// Completion queue entries: multishot receives and accepts post bursts, and a CQ
    /// overflow costs a slow path in the kernel.
    pub const CQ_ENTRIES: u32 = 16384;
}

/// What to do when a subscriber's queued bytes would pass `max_pending_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowConsumerPolicy {
    /// Close the connection (the NATS default): the client learns it fell behind and can
    /// reconnect, and the broker frees its queue at once.
    Disconnect,
    /// Drop the newest message for that client only and keep the connection.
    Drop,
}

impl std::str::FromStr for SlowConsumerPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "disconnect" => Ok(Self::Disconnect),
            "drop" => Ok(Self::Drop),
            other => Err(format!("expected disconnect or drop, got {other:?}")),
        }
    }
}

/// Configuration shared by all shards (cloned into each).
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// CPUs to pin shards to, one shard each.
    pub cpus: Vec<usize>,
    /// The listeners, in order: a table of (protocol, address), so a new front-end is a new
    /// row. Several rows may share a protocol.
    pub listeners: Vec<ListenerSpec>,
    /// Open client connections across all shards. Each costs a file descriptor and a slab
    /// slot; past it new RESP clients get Redis's "max number of clients reached".
    pub max_connections: usize,
    /// Bytes queued for one connection before the slow-consumer policy applies. 8 MiB
    /// absorbs a burst of thousands of messages; frames are shared, so N slow subscribers
    /// cost N queue entries, not N copies.
    pub max_pending_bytes: usize,
    /// Slow-consumer policy.
    pub slow_consumer: SlowConsumerPolicy,
    /// Frames of at least this many bytes go out with SEND_ZC; 0 disables it. Off by default:
    /// on loopback SEND_ZC lost to copying at every size measured (docs/benchmarks.md); on a
    /// NIC, measure with corecast-bench and set it (64 KiB is a common starting point).
    pub zerocopy_threshold: usize,
    /// Largest bulk string (channel or payload) accepted from a client.
    pub max_bulk_len: usize,
    /// Largest unparsed input held for one connection (one command plus slack).
    pub max_unparsed_bytes: usize,
    /// Capacity of each SPSC ring between two shards, in messages.
    pub ring_capacity: usize,
    /// Bytes in one SENDMSG batch. 64 KiB (one loopback GSO segment): a 1000-subscriber
    /// fan-out of 1 KiB messages delivered 2.5M msg/s with 64 KiB batches and as little as
    /// 0.13M/s with 1 MiB ones, where every subscriber socket holds hundreds of KiB of fresh
    /// skbs and the kernel's copy into them dominates (docs/benchmarks.md); 64-byte messages
    /// did not care between 64 KiB and 1 MiB.
    pub max_send_batch_bytes: usize,
    /// Sends submitted in one loop turn; 0 for no limit. io_uring runs a turn's sends inline
    /// in one `io_uring_enter`, so with many subscribers a turn lasts as long as all their
    /// sends, and a message published meanwhile waits for the next turn. A cap ends the
    /// turn sooner: new messages join the queues of the subscribers not yet sent to. 64:
    /// against no limit, p99 at 2000 msg/s to 1000 subscribers fell from 26-48 ms to 18-20
    /// ms, and the fan-out rows kept their rates (docs/benchmarks.md).
    pub max_sends_per_turn: usize,
    /// PUBLISH commands of one connection waiting for a remote owner's answer before the
    /// connection's input is paused (bounds the per-connection reply slots).
    pub max_inflight_publishes: usize,
    /// Channels, patterns and shard channels one connection may hold at once. Each costs a
    /// few hundred bytes across the shard's tables; 65536 bounds one client's share near
    /// 20 MiB, far above what a gateway client or a service holds, and past it SUBSCRIBE gets
    /// an error per refused channel.
    pub max_subscriptions: usize,
    /// Longest channel name a client may subscribe or publish to. Redis has no limit;
    /// Centrifugo's default is 255. 1024 fits any key-shaped name with a tenant prefix, and
    /// bounds what one name costs: hashing and copying it per publish, matching it against
    /// every pattern (n × ⌈m/64⌉ word steps), and its bytes in every table that holds it.
    pub max_channel_bytes: usize,
    /// Longest pattern (PSUBSCRIBE, PUBSUB CHANNELS). Patterns are copied to every shard
    /// and every publish is matched against each in n × ⌈m/64⌉ word steps: 256 bytes keep
    /// a match under 4 words × 1024 bytes of channel name, 5.3 µs at worst here.
    pub max_pattern_bytes: usize,
    /// Distinct patterns across the process (each is replicated on every shard and matched
    /// on every publish, so their count is a per-publish cost for everyone). 256: a
    /// pattern with a literal head or tail (`news.*`, `*.tech`) rejects a channel in about
    /// 10 ns, so 256 of them cost a publish about 3 µs; the worst shape at the default
    /// lengths (a 256-byte `*…*` middle against a 1024-byte channel) measured 5-6 µs each
    /// in the server, 1.6 ms a publish for 256 of them (docs/operations.md). Checked on the
    /// subscribing shard against its replica, so patterns added on several shards within
    /// one mesh hop may pass it by that many.
    pub max_patterns: usize,
    /// Patterns one connection may hold, so one client cannot take the whole process's
    /// `max_patterns`. 64.
    pub max_patterns_per_connection: usize,
    /// Bytes of channel tables one shard may hold: names, entries and subscriptions of its
    /// subscribers, and the channels it owns. Past it new subscriptions are refused (an error
    /// per name) and owned channels nobody subscribes to (kept for their history) are
    /// forgotten first. 128 MiB: about 600,000 channels with 64-byte names, or two million
    /// subscriptions, per shard.
    pub max_channel_table_bytes: usize,
    /// Bytes of incomplete commands buffered over all connections of one shard (each is
    /// also bounded by `max_unparsed_bytes`). Past it the connections holding the largest
    /// incomplete input are closed first and counted in `input_budget_closes`; input the
    /// broker itself paused does not count. 64 MiB: 64 publishers each half-way through a
    /// 1 MiB message, where 4,000 connections each holding 1 MiB would be 4 GiB.
    pub max_unparsed_bytes_per_shard: usize,
    /// Provided receive buffers per shard: the most receive completions a shard can hold in
    /// one turn before receives end with ENOBUFS and are re-armed (counted as
    /// `recv_no_buffers`; no data is lost, it waits in the socket). The kernel cycles through
    /// all of them, so each costs a page of memory once used. 256: 15,000 clients connecting
    /// and subscribing at once ran out of 128 but not of 256, and 50 publishers at full rate
    /// used fewer than 128; 512 cost 1 MiB more per shard for nothing measured.
    pub recv_buffers: u16,
    /// Size of each provided receive buffer.
    pub recv_buffer_size: usize,
    /// Seconds of silence before TCP keepalive probes a client (three unanswered probes
    /// close it); 0 turns keepalive off. 300, as Redis: a vanished client is noticed within
    /// ten minutes at the cost of one small probe per idle connection every five.
    pub tcp_keepalive_s: u32,
    /// How long shutdown waits for queued frames to drain.
    pub shutdown_timeout_ms: u64,
    /// Period of the per-shard stats snapshot.
    pub stats_interval_ms: u64,
    /// Limits of one HTTP request (head bytes, header count, body bytes).
    pub http: HttpLimits,
    /// WebSocket options.
    pub ws: WsConfig,
    /// Server-Sent Events options.
    pub sse: SseConfig,
    /// Per-channel history (resume after a reconnect).
    pub history: HistoryConfig,
    /// `Origin` values (exact, case-insensitive) whose pages may use the HTTP front-ends
    /// from a browser: open a WebSocket, open an SSE stream, `POST /pub`. Empty allows any.
    /// A request carrying another `Origin` gets 403; one carrying none is allowed, since
    /// only non-browser clients (services, curl) send none: browsers always send `Origin`
    /// on a WebSocket handshake and on cross-origin fetches, EventSource and form posts.
    /// This is what stops another site's page from subscribing or publishing through a
    /// visitor's browser (and its network position or cookies).
    pub allowed_origins: Vec<String>,
}

/// Limits of one HTTP request: past them the client gets 431 (head) or 413 (body) and the
/// connection closes, so no request costs more than these bytes of buffering.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request head. 16 KiB: a browser's upgrade request with cookies fits many
    /// times over, and nginx's default large-header buffers are 8 KiB each.
    pub max_head_bytes: usize,
    /// Most headers in one request. 64: browsers send about 15.
    pub max_headers: usize,
    /// Largest `POST /pub` body, 1 MiB by default (the same bound as a RESP payload).
    pub max_body_bytes: usize,
    /// Time a client has to send a complete request head once it has started one (or since
    /// it connected): a slowloris client that trickles a head holds a connection only this
    /// long. 10 s, the order of nginx's `client_header_timeout` (60 s) cut for a broker.
    pub head_timeout_ms: u64,
}

/// WebSocket options.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Largest message (all fragments together) a client may send; more closes with 1009.
    /// 1 MiB + 4 KiB: a `pub` of the largest payload RESP accepts, plus its envelope.
    pub max_message_bytes: usize,
    /// Seconds between server pings; a client that has not answered the previous ping by
    /// the next one is closed (1001). 30 s keeps NAT and proxy idle timers (often 60 s)
    /// from dropping quiet subscribers and finds dead ones within a minute; 0 turns pings off.
    pub ping_interval_s: u32,
    /// Empty (zero-payload) data frames one message may have; one more closes with 1008.
    /// Each costs a frame's work but adds nothing to the message, so `max_message_bytes`
    /// does not bound them: a client sending nothing but empty continuations kept a core
    /// busy (1.15 billion frames in 20 s). 16: Autobahn's fragmentation cases send up to
    /// three, and no real client sends more than a couple.
    pub max_empty_fragments: u16,
    /// Serve `GET /ws/echo`, a diagnostic endpoint that echoes every message back (text as
    /// text, binary as binary) through the same handshake, frame decoder, limits, pings and
    /// close path as `/ws`, so a conformance suite (Autobahn|Testsuite) can test them. Off
    /// by default: it is no part of the protocol and costs a client's bandwidth twice.
    pub echo: bool,
}

/// Server-Sent Events options.
#[derive(Debug, Clone)]
pub struct SseConfig {
    /// Seconds between heartbeat comments on an idle stream. 15 s: proxies commonly close a
    /// response idle for 30-60 s, and a dead client is found by the failed write.
    pub heartbeat_s: u32,
    /// `retry:` advice in normal times, in ms. EventSource waits this long before it
    /// reconnects. 2000 ms, a little under browsers' own default of about 3 s.
    pub retry_ms: u64,
    /// `retry:` advice during a reconnect storm, in ms: clients cut again spread their
    /// return over this much longer window (each connection gets up to 50% more, from its
    /// own hash, so they do not come back in step).
    pub storm_retry_ms: u64,
    /// SSE streams opened per second on one shard above which it is in a reconnect storm
    /// (the advice rises), and below which, for a whole second, the storm is over. Streams,
    /// not TCP accepts: plain connect-and-close from anyone must not change every stream's
    /// advice. 2000/s: an order above a busy gateway's steady churn, well below a restart's
    /// wave.
    pub storm_streams_per_s: u32,
}

/// Per-channel history on the owner shard, for resume (WebSocket `since`, SSE
/// `Last-Event-ID`).
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// Messages kept per channel; 0 turns history (and so resume) off. 64 covers a few
    /// seconds of a busy channel's reconnect gap at about 100 bytes of overhead a message.
    pub size: usize,
    /// Seconds a message stays in history; a channel with no subscribers and no history
    /// left is forgotten (its position's epoch ends). 300 s covers a browser tab that
    /// slept or a node that restarted.
    pub ttl_s: u32,
    /// History bytes (payloads plus a fixed overhead per message) one shard keeps across
    /// its channels. Past it, the histories of the channels published to least recently
    /// are dropped (their epochs end), so a publisher spraying channel names cannot grow
    /// the broker without bound. 64 MiB per shard.
    pub max_bytes: usize,
    /// History bytes one channel may keep (its oldest messages go first past it), so one
    /// busy channel cannot take the whole shard budget. 16 MiB: a dozen of the largest
    /// messages (1 MiB) stay resumable.
    pub channel_max_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: 16 << 10,
            max_headers: 64,
            max_body_bytes: 1 << 20,
            head_timeout_ms: 10_000,
        }
    }
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: (1 << 20) + (4 << 10),
            ping_interval_s: 30,
            max_empty_fragments: corecast_proto::ws::DEFAULT_MAX_EMPTY_FRAGMENTS,
            echo: false,
        }
    }
}

impl Default for SseConfig {
    fn default() -> Self {
        Self {
            heartbeat_s: 15,
            retry_ms: 2000,
            storm_retry_ms: 15_000,
            storm_streams_per_s: 2000,
        }
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            size: 64,
            ttl_s: 300,
            max_bytes: 64 << 20,
            channel_max_bytes: 16 << 20,
        }
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            cpus: vec![0],
            listeners: vec![
                ListenerSpec::default_for(Protocol::Resp),
                ListenerSpec::default_for(Protocol::Http),
            ],
            max_connections: 10_000,
            max_pending_bytes: 8 << 20,
            slow_consumer: SlowConsumerPolicy::Disconnect,
            zerocopy_threshold: 0,
            max_bulk_len: 1 << 20,
            max_unparsed_bytes: (1 << 20) + (64 << 10),
            ring_capacity: 4096,
            max_send_batch_bytes: 64 << 10,
            max_sends_per_turn: 64,
            max_inflight_publishes: 1024,
            max_subscriptions: 65536,
            max_channel_bytes: 1024,
            max_pattern_bytes: 256,
            max_patterns: 256,
            max_patterns_per_connection: 64,
            max_channel_table_bytes: 128 << 20,
            max_unparsed_bytes_per_shard: 64 << 20,
            recv_buffers: 256,
            recv_buffer_size: 16 << 10,
            tcp_keepalive_s: 300,
            shutdown_timeout_ms: 2000,
            stats_interval_ms: 100,
            http: HttpLimits::default(),
            ws: WsConfig::default(),
            sse: SseConfig::default(),
            history: HistoryConfig::default(),
            allowed_origins: Vec::new(),
        }
    }
}
