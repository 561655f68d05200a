//! Command line and config file. Every option exists in both, under the same name (dashes on
//! the command line, underscores in the file); the command line wins.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use corecast_broker::{BrokerConfig, ListenerSpec, Protocol, SlowConsumerPolicy};
use serde::Deserialize;

/// corecast: a thread-per-core io_uring pub/sub broker speaking the Redis pub/sub protocol.
#[derive(Debug, Clone, Parser, Default)]
#[command(version, about, long_about = None)]
pub struct Cli {
    /// TOML file with the same keys as these options (e.g. max_pending_bytes = 8388608).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Number of shards: the first N CPUs of the process affinity mask. Default: all of them.
    #[arg(long)]
    pub shards: Option<usize>,
    /// CPUs to run shards on, e.g. 0,2-5 (each must be in the affinity mask).
    #[arg(long, value_name = "LIST")]
    pub cores: Option<String>,
    /// Redis protocol listener [default: 0.0.0.0:6379].
    #[arg(long, value_name = "ADDR")]
    pub resp_listen: Option<SocketAddr>,
    /// HTTP listener: WebSocket /ws, SSE /sse, POST /pub, /stats, /metrics, /healthz, /dashboard [default: 0.0.0.0:8080].
    #[arg(long, value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// A listener as PROTOCOL=ADDR (resp or http), repeatable; when given, only these (and
    /// any --resp-listen/--http-listen) listen.
    #[arg(long, value_name = "PROTO=ADDR")]
    pub listen: Vec<String>,
    /// Maximum open client connections across all shards [default: 10000].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Bytes queued for one connection before the slow-consumer policy applies [default: 8388608].
    #[arg(long, value_name = "BYTES")]
    pub max_pending_bytes: Option<usize>,
    /// What to do with a subscriber past max-pending-bytes: disconnect or drop [default: disconnect].
    #[arg(long, value_name = "POLICY")]
    pub slow_consumer: Option<String>,
    /// Frames of at least this many bytes are sent with SEND_ZC; 0 disables [default: 0, see docs/benchmarks.md].
    #[arg(long, value_name = "BYTES")]
    pub zerocopy_threshold: Option<usize>,
    /// Largest bulk string (channel or payload) a client may send [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub max_bulk_len: Option<usize>,
    /// Largest unparsed input held for one connection [default: max-bulk-len + 65536].
    #[arg(long, value_name = "BYTES")]
    pub max_unparsed_bytes: Option<usize>,
    /// Messages each shard-to-shard ring holds [default: 4096].
    #[arg(long)]
    pub ring_capacity: Option<usize>,
    /// Bytes in one SENDMSG batch [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub max_send_batch_bytes: Option<usize>,
    /// Sends submitted per loop turn, 0 for no limit [default: 64].
    #[arg(long)]
    pub max_sends_per_turn: Option<usize>,
    /// PUBLISH commands of one connection awaiting a remote shard before its input pauses [default: 1024].
    #[arg(long)]
    pub max_inflight_publishes: Option<usize>,
    /// Channels + patterns + shard channels one connection may subscribe to [default: 65536].
    #[arg(long)]
    pub max_subscriptions: Option<usize>,
    /// Longest channel name a client may subscribe or publish to [default: 1024].
    #[arg(long, value_name = "BYTES")]
    pub max_channel_bytes: Option<usize>,
    /// Longest PSUBSCRIBE pattern [default: 256].
    #[arg(long, value_name = "BYTES")]
    pub max_pattern_bytes: Option<usize>,
    /// Distinct patterns across the process (each is matched on every publish) [default: 256].
    #[arg(long)]
    pub max_patterns: Option<usize>,
    /// Patterns one connection may hold [default: 64].
    #[arg(long)]
    pub max_patterns_per_connection: Option<usize>,
    /// Bytes of channel tables (names, entries, subscriptions) one shard may hold [default: 134217728].
    #[arg(long, value_name = "BYTES")]
    pub max_channel_table_bytes: Option<usize>,
    /// Bytes of incomplete commands over all connections of one shard; past it the largest are closed [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    pub max_unparsed_bytes_per_shard: Option<usize>,
    /// Provided receive buffers per shard, a power of two [default: 256].
    #[arg(long)]
    pub recv_buffers: Option<u16>,
    /// Size of each receive buffer [default: 16384].
    #[arg(long, value_name = "BYTES")]
    pub recv_buffer_size: Option<usize>,
    /// Seconds of client silence before TCP keepalive probes it; 0 turns it off [default: 300].
    #[arg(long, value_name = "SECONDS")]
    pub tcp_keepalive_s: Option<u32>,
    /// How long shutdown waits for queued data to drain [default: 2000].
    #[arg(long, value_name = "MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// Largest HTTP request head; more gets 431 [default: 16384].
    #[arg(long, value_name = "BYTES")]
    pub http_max_head_bytes: Option<usize>,
    /// Most headers in one HTTP request; more gets 431 [default: 64].
    #[arg(long)]
    pub http_max_headers: Option<usize>,
    /// Largest POST /pub body; more gets 413 [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub http_max_body_bytes: Option<usize>,
    /// Time to send a complete request head before the connection closes (slowloris) [default: 10000].
    #[arg(long, value_name = "MS")]
    pub http_head_timeout_ms: Option<u64>,
    /// Largest WebSocket message a client may send; more closes with 1009. With 14 bytes of
    /// frame header it must fit in max-unparsed-bytes [default: 1052672, at most max-unparsed-bytes - 14].
    #[arg(long, value_name = "BYTES")]
    pub ws_max_message_bytes: Option<usize>,
    /// Seconds between server pings; no pong by the next ping closes the socket; 0 turns pings off [default: 30].
    #[arg(long, value_name = "SECONDS")]
    pub ws_ping_interval_s: Option<u32>,
    /// Empty (zero-payload) frames one WebSocket message may have; more closes with 1008 [default: 16].
    #[arg(long)]
    pub ws_max_empty_fragments: Option<u16>,
    /// Serve GET /ws/echo, a diagnostic WebSocket endpoint that echoes every message back
    /// (for conformance suites such as Autobahn); off unless given.
    #[arg(long)]
    pub ws_echo: bool,
    /// Origins whose pages may open a WebSocket or SSE stream or POST /pub, comma-separated;
    /// others get 403, requests without Origin (non-browser clients) are allowed; empty
    /// allows any [default: empty].
    #[arg(long, value_name = "ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Deprecated alias of --allowed-origins (logs a warning).
    #[arg(long, value_name = "ORIGINS", value_delimiter = ',', hide = true)]
    pub ws_allowed_origins: Vec<String>,
    /// Seconds between heartbeat comments on an idle SSE stream; 0 turns them off [default: 15].
    #[arg(long, value_name = "SECONDS")]
    pub sse_heartbeat_s: Option<u32>,
    /// SSE retry: advice in normal times [default: 2000].
    #[arg(long, value_name = "MS")]
    pub sse_retry_ms: Option<u64>,
    /// SSE retry: advice during a reconnect storm [default: 15000].
    #[arg(long, value_name = "MS")]
    pub sse_storm_retry_ms: Option<u64>,
    /// SSE streams opened per second on one shard that make a reconnect storm [default: 2000].
    #[arg(long)]
    pub sse_storm_streams_per_s: Option<u32>,
    /// Deprecated alias of --sse-storm-streams-per-s (logs a warning).
    #[arg(long, hide = true)]
    pub sse_storm_accepts_per_s: Option<u32>,
    /// Messages kept per channel for resume; 0 turns history off [default: 64].
    #[arg(long)]
    pub history_size: Option<usize>,
    /// Seconds a message stays in history [default: 300].
    #[arg(long, value_name = "SECONDS")]
    pub history_ttl_s: Option<u32>,
    /// History bytes per shard; past it the least recently published channels lose theirs [default: 67108864].
    #[arg(long, value_name = "BYTES")]
    pub history_max_bytes: Option<usize>,
    /// History bytes one channel may keep; its oldest messages go first past it [default: 16777216].
    #[arg(long, value_name = "BYTES")]
    pub history_channel_max_bytes: Option<usize>,
    /// Log filter (tracing EnvFilter syntax) [default: info].
    #[arg(long)]
    pub log: Option<String>,
    /// Log line format: text (colours only when stderr is a terminal) or json (one object a
    /// line, for log shippers) [default: text].
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,
}

/// The config file: the same keys as [`Cli`].
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    shards: Option<usize>,
    cores: Option<String>,
    resp_listen: Option<String>,
    http_listen: Option<String>,
    listen: Option<Vec<String>>,
    max_connections: Option<usize>,
    max_pending_bytes: Option<usize>,
    slow_consumer: Option<String>,
    zerocopy_threshold: Option<usize>,
    max_bulk_len: Option<usize>,
    max_unparsed_bytes: Option<usize>,
    ring_capacity: Option<usize>,
    max_send_batch_bytes: Option<usize>,
    max_sends_per_turn: Option<usize>,
    max_inflight_publishes: Option<usize>,
    max_subscriptions: Option<usize>,
    max_channel_bytes: Option<usize>,
    max_pattern_bytes: Option<usize>,
    max_patterns: Option<usize>,
    max_patterns_per_connection: Option<usize>,
    max_channel_table_bytes: Option<usize>,
    max_unparsed_bytes_per_shard: Option<usize>,
    recv_buffers: Option<u16>,
    recv_buffer_size: Option<usize>,
    tcp_keepalive_s: Option<u32>,
    shutdown_timeout_ms: Option<u64>,
    http_max_head_bytes: Option<usize>,
    http_max_headers: Option<usize>,
    http_max_body_bytes: Option<usize>,
    http_head_timeout_ms: Option<u64>,
    ws_max_message_bytes: Option<usize>,
    ws_ping_interval_s: Option<u32>,
    ws_max_empty_fragments: Option<u16>,
    ws_echo: Option<bool>,
    allowed_origins: Option<Vec<String>>,
    /// Deprecated alias of `allowed_origins`.
    ws_allowed_origins: Option<Vec<String>>,
    sse_heartbeat_s: Option<u32>,
    sse_retry_ms: Option<u64>,
    sse_storm_retry_ms: Option<u64>,
    sse_storm_streams_per_s: Option<u32>,
    /// Deprecated alias of `sse_storm_streams_per_s`.
    sse_storm_accepts_per_s: Option<u32>,
    history_size: Option<usize>,
    history_ttl_s: Option<u32>,
    history_max_bytes: Option<usize>,
    history_channel_max_bytes: Option<usize>,
    log: Option<String>,
    log_format: Option<String>,
}

/// A configuration problem, always naming the key.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad(key: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("invalid value for {key}: {why}"))
}

/// The resolved settings.
pub struct Settings {
    /// Broker configuration.
    pub broker: BrokerConfig,
    /// Log filter.
    pub log: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// Deprecated options in use, one sentence each, for the log once it is set up.
    pub warnings: Vec<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines; ANSI colours only when stderr is a terminal (journald and
    /// files get plain text).
    Text,
    /// One JSON object a line.
    Json,
}

/// Reads the config file without ever blocking on it: a path that is not a regular file
/// (or a symlink to one) is refused before it is opened, and the open itself is
/// non-blocking, so a FIFO swapped in between the check and the open cannot block either
/// (the open descriptor is checked again). A FIFO without a writer would otherwise hold the
/// thread in `open` for ever, and on SIGHUP that thread is the one that takes SIGTERM.
fn read_config_file(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let not_regular = |kind: std::fs::FileType| {
        use std::os::unix::fs::FileTypeExt;
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "something else"
        };
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a regular file ({what})"),
        )
    };
    let kind = std::fs::metadata(path)?.file_type();
    if !kind.is_file() {
        return Err(not_regular(kind));
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(not_regular(kind));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

/// Merges the file (if any) under the command line and validates everything.
pub fn resolve(cli: Cli) -> Result<Settings, ConfigError> {
    let file = match &cli.config {
        Some(path) => {
            let text = read_config_file(path)
                .map_err(|e| ConfigError(format!("cannot read config {}: {e}", path.display())))?;
            toml::from_str::<FileConfig>(&text)
                .map_err(|e| ConfigError(format!("invalid config {}: {e}", path.display())))?
        }
        None => FileConfig::default(),
    };
    let d = BrokerConfig::default();
    let addr = |key: &str, cli: Option<SocketAddr>, file: Option<String>| match (cli, file) {
        (Some(a), _) => Ok(Some(a)),
        (None, Some(s)) => s.parse::<SocketAddr>().map(Some).map_err(|e| bad(key, e)),
        (None, None) => Ok(None),
    };
    let resp_listen = addr("resp_listen", cli.resp_listen, file.resp_listen)?;
    let http_listen = addr("http_listen", cli.http_listen, file.http_listen)?;
    let listen = if cli.listen.is_empty() {
        file.listen.unwrap_or_default()
    } else {
        cli.listen
    };
    let listeners = listener_table(&listen, resp_listen, http_listen)?;
    let slow_consumer = match cli.slow_consumer.or(file.slow_consumer) {
        Some(s) => s
            .parse::<SlowConsumerPolicy>()
            .map_err(|e| bad("slow_consumer", e))?,
        None => d.slow_consumer,
    };
    let allowed = corecast_runtime::process_cpus().map_err(|e| bad("cores", e))?;
    let cores = match cli.cores.or(file.cores) {
        Some(text) => Some(corecast_runtime::parse_core_list(&text).map_err(|e| bad("cores", e))?),
        None => None,
    };
    let shards = cli.shards.or(file.shards);
    if shards == Some(0) {
        return Err(bad("shards", "must be at least 1"));
    }
    // CORECAST_SHARDS_PER_CPU=N runs N shards on each chosen CPU: never faster, but it lets
    // a two-CPU machine run four shards on a fake two-node layout (tests of the cross-node
    // relay); `shards` then counts them all.
    let per_cpu: usize = match std::env::var("CORECAST_SHARDS_PER_CPU") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|&n| (1..=16).contains(&n))
            .ok_or_else(|| bad("CORECAST_SHARDS_PER_CPU", "must be between 1 and 16"))?,
        Err(_) => 1,
    };
    let cpus = corecast_runtime::affinity::select_cpus(
        &allowed,
        cores.as_deref(),
        shards.map(|n| n.div_ceil(per_cpu)),
    )
    .map_err(|e| bad(if cores.is_some() { "cores" } else { "shards" }, e))?;
    let mut cpus: Vec<usize> = cpus
        .iter()
        .flat_map(|&c| std::iter::repeat_n(c, per_cpu))
        .collect();
    if let Some(n) = shards {
        cpus.truncate(n);
    }
    // The command line wins over the file, the file over the default.
    macro_rules! pick {
        ($key:ident, $default:expr) => {
            cli.$key.or(file.$key).unwrap_or($default)
        };
    }
    let mut warnings = Vec::new();
    // `allowed_origins` applies to every HTTP front-end; it was `ws_allowed_origins` when
    // it applied to WebSocket only. The old name still works (the new one wins) and says so.
    if !cli.ws_allowed_origins.is_empty() {
        warnings.push(
            "--ws-allowed-origins is deprecated: use --allowed-origins (it now also applies \
             to SSE and POST /pub)"
                .to_string(),
        );
    }
    if file.ws_allowed_origins.is_some() {
        warnings.push(
            "config key ws_allowed_origins is deprecated: use allowed_origins (it now also \
             applies to SSE and POST /pub)"
                .to_string(),
        );
    }
    let allowed_origins = [
        Some(cli.allowed_origins).filter(|v| !v.is_empty()),
        Some(cli.ws_allowed_origins).filter(|v| !v.is_empty()),
        file.allowed_origins,
        file.ws_allowed_origins,
    ]
    .into_iter()
    .flatten()
    .next()
    .unwrap_or_default();
    // The storm threshold counted accepted connections and was `sse_storm_accepts_per_s`;
    // it counts SSE streams now, and the old name still sets it.
    if cli.sse_storm_accepts_per_s.is_some() {
        warnings.push(
            "--sse-storm-accepts-per-s is deprecated: use --sse-storm-streams-per-s (the \
             storm threshold counts SSE streams opened, not accepted connections)"
                .to_string(),
        );
    }
    if file.sse_storm_accepts_per_s.is_some() {
        warnings.push(
            "config key sse_storm_accepts_per_s is deprecated: use sse_storm_streams_per_s \
             (the storm threshold counts SSE streams opened, not accepted connections)"
                .to_string(),
        );
    }
    let storm_streams_per_s = cli
        .sse_storm_streams_per_s
        .or(cli.sse_storm_accepts_per_s)
        .or(file.sse_storm_streams_per_s)
        .or(file.sse_storm_accepts_per_s)
        .unwrap_or(d.sse.storm_streams_per_s);
    let max_bulk_len = cli
        .max_bulk_len
        .or(file.max_bulk_len)
        .unwrap_or(d.max_bulk_len);
    let max_unparsed_bytes = cli
        .max_unparsed_bytes
        .or(file.max_unparsed_bytes)
        .unwrap_or(max_bulk_len + (64 << 10));
    // A WebSocket frame is decoded only once it is whole in the connection's unparsed input,
    // so the default message limit never passes what `max_unparsed_bytes` can hold (a small
    // `max_bulk_len` lowers both); a value given explicitly is validated instead.
    let ws_max_message_bytes = pick!(
        ws_max_message_bytes,
        d.ws.max_message_bytes.min(max_unparsed_bytes)
    );
    let broker = BrokerConfig {
        cpus,
        listeners,
        max_connections: cli
            .max_connections
            .or(file.max_connections)
            .unwrap_or(d.max_connections),
        max_pending_bytes: cli
            .max_pending_bytes
            .or(file.max_pending_bytes)
            .unwrap_or(d.max_pending_bytes),
        slow_consumer,
        zerocopy_threshold: cli
            .zerocopy_threshold
            .or(file.zerocopy_threshold)
            .unwrap_or(d.zerocopy_threshold),
        max_bulk_len,
        max_unparsed_bytes,
        ring_capacity: cli
            .ring_capacity
            .or(file.ring_capacity)
            .unwrap_or(d.ring_capacity),
        max_send_batch_bytes: cli
            .max_send_batch_bytes
            .or(file.max_send_batch_bytes)
            .unwrap_or(d.max_send_batch_bytes),
        max_sends_per_turn: cli
            .max_sends_per_turn
            .or(file.max_sends_per_turn)
            .unwrap_or(d.max_sends_per_turn),
        max_inflight_publishes: cli
            .max_inflight_publishes
            .or(file.max_inflight_publishes)
            .unwrap_or(d.max_inflight_publishes),
        max_subscriptions: cli
            .max_subscriptions
            .or(file.max_subscriptions)
            .unwrap_or(d.max_subscriptions),
        max_channel_bytes: pick!(max_channel_bytes, d.max_channel_bytes),
        max_pattern_bytes: pick!(max_pattern_bytes, d.max_pattern_bytes),
        max_patterns: pick!(max_patterns, d.max_patterns),
        max_patterns_per_connection: pick!(
            max_patterns_per_connection,
            d.max_patterns_per_connection
        ),
        max_channel_table_bytes: pick!(max_channel_table_bytes, d.max_channel_table_bytes),
        max_unparsed_bytes_per_shard: pick!(
            max_unparsed_bytes_per_shard,
            d.max_unparsed_bytes_per_shard
        ),
        recv_buffers: cli
            .recv_buffers
            .or(file.recv_buffers)
            .unwrap_or(d.recv_buffers),
        recv_buffer_size: cli
            .recv_buffer_size
            .or(file.recv_buffer_size)
            .unwrap_or(d.recv_buffer_size),
        tcp_keepalive_s: cli
            .tcp_keepalive_s
            .or(file.tcp_keepalive_s)
            .unwrap_or(d.tcp_keepalive_s),
        shutdown_timeout_ms: cli
            .shutdown_timeout_ms
            .or(file.shutdown_timeout_ms)
            .unwrap_or(d.shutdown_timeout_ms),
        stats_interval_ms: d.stats_interval_ms,
        http: corecast_broker::config::HttpLimits {
            max_head_bytes: pick!(http_max_head_bytes, d.http.max_head_bytes),
            max_headers: pick!(http_max_headers, d.http.max_headers),
            max_body_bytes: pick!(http_max_body_bytes, d.http.max_body_bytes),
            head_timeout_ms: pick!(http_head_timeout_ms, d.http.head_timeout_ms),
        },
        ws: corecast_broker::config::WsConfig {
            max_message_bytes: ws_max_message_bytes,
            ping_interval_s: pick!(ws_ping_interval_s, d.ws.ping_interval_s),
            max_empty_fragments: pick!(ws_max_empty_fragments, d.ws.max_empty_fragments),
            // A flag turns it on; the file may too (there is no flag to turn it off).
            echo: cli.ws_echo || file.ws_echo.unwrap_or(d.ws.echo),
        },
        sse: corecast_broker::config::SseConfig {
            heartbeat_s: pick!(sse_heartbeat_s, d.sse.heartbeat_s),
            retry_ms: pick!(sse_retry_ms, d.sse.retry_ms),
            storm_retry_ms: pick!(sse_storm_retry_ms, d.sse.storm_retry_ms),
            storm_streams_per_s,
        },
        history: corecast_broker::config::HistoryConfig {
            size: pick!(history_size, d.history.size),
            ttl_s: pick!(history_ttl_s, d.history.ttl_s),
            max_bytes: pick!(history_max_bytes, d.history.max_bytes),
            channel_max_bytes: pick!(history_channel_max_bytes, d.history.channel_max_bytes),
        },
        allowed_origins,
    };
    validate(&broker)?;
    let log_format = match cli.log_format.or(file.log_format).as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(bad(
                "log_format",
                format!("expected text or json, got {other:?}"),
            ))
        }
    };
    let log = cli.log.or(file.log).unwrap_or_else(|| "info".into());
    // An invalid filter is an invalid value like any other (exit 2), not a silent `info`.
    tracing_subscriber::EnvFilter::try_new(&log).map_err(|e| bad("log", e))?;
    Ok(Settings {
        broker,
        log,
        log_format,
        warnings,
    })
}

/// The listener table: the `listen` rows if any were given, else one listener per protocol at
/// its default address; `--resp-listen`/`--http-listen` set (or add) that protocol's row.
fn listener_table(
    listen: &[String],
    resp_listen: Option<SocketAddr>,
    http_listen: Option<SocketAddr>,
) -> Result<Vec<ListenerSpec>, ConfigError> {
    let mut table = Vec::new();
    for row in listen {
        let (proto, addr) = row
            .split_once('=')
            .ok_or_else(|| bad("listen", format!("{row:?} is not PROTOCOL=ADDR")))?;
        let protocol = Protocol::from_name(proto.trim()).ok_or_else(|| {
            bad(
                "listen",
                format!("unknown protocol {proto:?} (resp or http)"),
            )
        })?;
        let addr = addr
            .trim()
            .parse::<SocketAddr>()
            .map_err(|e| bad("listen", format!("{addr:?}: {e}")))?;
        table.push(ListenerSpec { protocol, addr });
    }
    let defaults = table.is_empty();
    for (protocol, given) in [(Protocol::Resp, resp_listen), (Protocol::Http, http_listen)] {
        let spec = match given {
            Some(addr) => ListenerSpec { protocol, addr },
            None if defaults => ListenerSpec::default_for(protocol),
            None => continue,
        };
        match table.iter_mut().find(|l| l.protocol == protocol) {
            Some(row) if given.is_some() => *row = spec,
            Some(_) => {}
            None => table.push(spec),
        }
    }
    Ok(table)
}

/// Largest WebSocket frame header, which `max_unparsed_bytes` must hold besides the
/// largest message (`ws_max_message_bytes`).
const WS_MAX_FRAME_HEADER: usize = corecast_broker::config::limits::WS_MAX_FRAME_HEADER;

/// Largest `max_channel_bytes` accepted.
pub const MAX_CHANNEL_BYTES_ALLOWED: usize = 65536;
/// Largest `max_pattern_bytes` accepted.
pub const MAX_PATTERN_BYTES_ALLOWED: usize = 4096;

fn validate(b: &BrokerConfig) -> Result<(), ConfigError> {
    if b.max_connections == 0 {
        return Err(bad("max_connections", "must be at least 1"));
    }
    if b.max_bulk_len < 16 {
        return Err(bad("max_bulk_len", "must be at least 16"));
    }
    if b.max_pending_bytes < b.max_bulk_len + 64 {
        return Err(bad(
            "max_pending_bytes",
            format!(
                "must exceed max_bulk_len ({}) so one message always fits",
                b.max_bulk_len
            ),
        ));
    }
    if b.max_unparsed_bytes < b.max_bulk_len + 1024 {
        return Err(bad(
            "max_unparsed_bytes",
            "must exceed max_bulk_len by at least 1024 so one command fits",
        ));
    }
    if !(2..=1 << 20).contains(&b.ring_capacity) {
        return Err(bad("ring_capacity", "must be between 2 and 1048576"));
    }
    if !b.recv_buffers.is_power_of_two() || b.recv_buffers > 32768 {
        return Err(bad("recv_buffers", "must be a power of two up to 32768"));
    }
    if !(512..=1 << 24).contains(&b.recv_buffer_size) {
        return Err(bad("recv_buffer_size", "must be between 512 and 16777216"));
    }
    if b.max_send_batch_bytes < 4096 {
        return Err(bad("max_send_batch_bytes", "must be at least 4096"));
    }
    if b.max_inflight_publishes == 0 || b.max_inflight_publishes > 65536 {
        return Err(bad("max_inflight_publishes", "must be between 1 and 65536"));
    }
    if b.max_subscriptions == 0 {
        return Err(bad("max_subscriptions", "must be at least 1"));
    }
    // Upper bounds keep one pattern match, the product of the two lengths over 64, at a
    // few milliseconds at worst (4096 against 65536 bytes: 64 words × 64 Ki steps).
    if !(1..=MAX_CHANNEL_BYTES_ALLOWED.min(b.max_bulk_len)).contains(&b.max_channel_bytes) {
        return Err(bad(
            "max_channel_bytes",
            format!("must be between 1 and {MAX_CHANNEL_BYTES_ALLOWED} (and max_bulk_len)"),
        ));
    }
    if !(1..=MAX_PATTERN_BYTES_ALLOWED.min(b.max_bulk_len)).contains(&b.max_pattern_bytes) {
        return Err(bad(
            "max_pattern_bytes",
            format!("must be between 1 and {MAX_PATTERN_BYTES_ALLOWED} (and max_bulk_len)"),
        ));
    }
    if b.max_unparsed_bytes_per_shard < b.max_unparsed_bytes {
        return Err(bad(
            "max_unparsed_bytes_per_shard",
            format!(
                "must be at least max_unparsed_bytes ({}) so one command always fits",
                b.max_unparsed_bytes
            ),
        ));
    }
    if b.max_channel_table_bytes < 1 << 20 {
        return Err(bad("max_channel_table_bytes", "must be at least 1048576"));
    }
    if b.http.max_head_bytes < 256 {
        return Err(bad("http_max_head_bytes", "must be at least 256"));
    }
    if !(1..=100).contains(&b.http.max_headers) {
        return Err(bad("http_max_headers", "must be between 1 and 100"));
    }
    if b.http.head_timeout_ms == 0 {
        return Err(bad("http_head_timeout_ms", "must be at least 1"));
    }
    if b.ws.max_message_bytes < 128 {
        return Err(bad("ws_max_message_bytes", "must be at least 128"));
    }
    // The decoder takes a frame only once all of it is in the connection's unparsed input
    // (a WebSocket connection may hold `WS_MAX_FRAME_HEADER` bytes of header beyond
    // `max_unparsed_bytes`); a payload that cannot fit there passes the limit first, and the
    // connection is dropped at the TCP level with no close frame (`input_overflows`) instead
    // of being closed with 1009.
    if b.ws.max_message_bytes > b.max_unparsed_bytes {
        return Err(bad(
            "ws_max_message_bytes",
            format!(
                "ws_max_message_bytes ({}) must be at most max_unparsed_bytes ({}), so the \
                 largest frame fits in a connection's unparsed input (its {WS_MAX_FRAME_HEADER}-byte \
                 header is allowed on top); raise max_unparsed_bytes or lower \
                 ws_max_message_bytes",
                b.ws.max_message_bytes, b.max_unparsed_bytes,
            ),
        ));
    }
    if b.ws.max_empty_fragments == 0 {
        return Err(bad(
            "ws_max_empty_fragments",
            "must be at least 1 (an empty message is one empty frame)",
        ));
    }
    if b.sse.retry_ms == 0 || b.sse.storm_retry_ms < b.sse.retry_ms {
        return Err(bad(
            "sse_storm_retry_ms",
            "sse_retry_ms must be positive and sse_storm_retry_ms at least sse_retry_ms",
        ));
    }
    if b.history.size > 1 << 20 {
        return Err(bad("history_size", "must be at most 1048576"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command-line option is a config-file key of the same name and has a row in the
    /// operator's table, so the three cannot drift apart.
    #[test]
    fn every_flag_is_a_file_key_and_documented() {
        use clap::CommandFactory;
        let table = include_str!("../../../docs/operations.md");
        let mut seen = 0;
        for arg in Cli::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if long == "config" {
                continue;
            }
            let key = long.replace('-', "_");
            if let Err(e) = toml::from_str::<FileConfig>(&format!("{key} = 1\n")) {
                assert!(!e.to_string().contains("unknown field"), "{key}: {e}");
            }
            assert!(
                table.contains(&format!("| `{key}` |")),
                "docs/operations.md has no row for `{key}`"
            );
            seen += 1;
        }
        assert!(seen >= 19, "only {seen} options found");
    }

    #[test]
    fn file_values_apply_and_flags_override_them() {
        let dir = std::env::temp_dir().join(format!("corecast-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "max_pending_bytes = 4000000\nslow_consumer = \"drop\"\nshards = 1\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(path.clone()),
            max_pending_bytes: Some(3_000_000),
            ..Cli::default()
        };
        let s = resolve(cli).unwrap();
        assert_eq!(s.broker.max_pending_bytes, 3_000_000);
        assert_eq!(s.broker.slow_consumer, SlowConsumerPolicy::Drop);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn listeners_form_a_table() {
        let a: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let t = listener_table(&[], None, None).unwrap();
        assert_eq!(
            t,
            [
                ListenerSpec::default_for(Protocol::Resp),
                ListenerSpec::default_for(Protocol::Http)
            ]
        );
        let t = listener_table(&[], Some(a), None).unwrap();
        assert_eq!(t[0].addr, a);
        assert_eq!(t[1], ListenerSpec::default_for(Protocol::Http));
        let rows = [
            "resp=127.0.0.1:7000".to_string(),
            "resp = 127.0.0.1:7001".into(),
        ];
        let t = listener_table(&rows, None, None).unwrap();
        assert_eq!(t.len(), 2, "only the rows given: {t:?}");
        assert_eq!((t[0].addr, t[1].addr), (a, b));
        let t = listener_table(&rows[..1], None, Some(b)).unwrap();
        assert_eq!(
            t[1],
            ListenerSpec {
                protocol: Protocol::Http,
                addr: b
            }
        );
        for bad in ["resp", "nats=127.0.0.1:1", "http=nowhere"] {
            let e = listener_table(&[bad.to_string()], None, None).unwrap_err();
            assert!(e.0.contains("listen"), "{e}");
        }
    }

    #[test]
    fn allowed_origins_has_a_deprecated_alias_that_warns() {
        let dir = std::env::temp_dir().join(format!("corecast-origins-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |text: &str| {
            let path = dir.join(format!("c{}.toml", text.len()));
            std::fs::write(&path, format!("shards = 1\n{text}")).unwrap();
            Some(path)
        };
        let origins = |s: &Settings| s.broker.allowed_origins.clone();
        let one = |o: &str| vec![o.to_string()];
        // The new name, on the command line or in the file: no warning.
        let s = resolve(Cli {
            allowed_origins: one("https://a"),
            ..Cli::default()
        })
        .unwrap();
        assert_eq!((origins(&s), s.warnings.len()), (one("https://a"), 0));
        let s = resolve(Cli {
            config: file("allowed_origins = [\"https://f\"]\n"),
            ..Cli::default()
        })
        .unwrap();
        assert_eq!((origins(&s), s.warnings.len()), (one("https://f"), 0));
        // The old name still works, and warns.
        let s = resolve(Cli {
            ws_allowed_origins: one("https://old"),
            ..Cli::default()
        })
        .unwrap();
        assert_eq!(origins(&s), one("https://old"));
        assert!(
            s.warnings.len() == 1 && s.warnings[0].contains("--ws-allowed-origins is deprecated"),
            "{:?}",
            s.warnings
        );
        let s = resolve(Cli {
            config: file("ws_allowed_origins = [\"https://old-file\"]\n"),
            ..Cli::default()
        })
        .unwrap();
        assert_eq!(origins(&s), one("https://old-file"));
        assert!(s.warnings[0].contains("ws_allowed_origins is deprecated"));
        // Both: the command line wins over the file, and at each the new name over the old.
        let s = resolve(Cli {
            config: file(
                "allowed_origins = [\"https://new-file\"]\nws_allowed_origins = [\"https://x\"]\n",
            ),
            ws_allowed_origins: one("https://old"),
            ..Cli::default()
        })
        .unwrap();
        assert_eq!(origins(&s), one("https://old"));
        assert_eq!(s.warnings.len(), 2);
        let s = resolve(Cli {
            config: file("ws_allowed_origins = [\"https://x\"]\n"),
            allowed_origins: one("https://new"),
            ..Cli::default()
        })
        .unwrap();
        assert_eq!(origins(&s), one("https://new"));
        // The old flag is not in --help (the example config follows --help).
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--allowed-origins") && !help.contains("--ws-allowed-origins"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn sse_storm_streams_per_s_has_a_deprecated_alias_that_warns() {
        let s = resolve(Cli {
            sse_storm_streams_per_s: Some(50),
            ..Cli::default()
        })
        .unwrap();
        assert_eq!(
            (s.broker.sse.storm_streams_per_s, s.warnings.len()),
            (50, 0)
        );
        let s = resolve(Cli {
            sse_storm_accepts_per_s: Some(60),
            ..Cli::default()
        })
        .unwrap();
        assert_eq!(s.broker.sse.storm_streams_per_s, 60);
        assert!(
            s.warnings.len() == 1
                && s.warnings[0].contains("--sse-storm-accepts-per-s is deprecated"),
            "{:?}",
            s.warnings
        );
        let s = resolve(Cli {
            sse_storm_accepts_per_s: Some(60),
            sse_storm_streams_per_s: Some(70),
            ..Cli::default()
        })
        .unwrap();
        assert_eq!(s.broker.sse.storm_streams_per_s, 70, "the new name wins");
        assert_eq!(
            resolve(Cli::default())
                .unwrap()
                .broker
                .sse
                .storm_streams_per_s,
            2000
        );
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--sse-storm-streams-per-s"));
        assert!(!help.contains("--sse-storm-accepts-per-s"));
    }

    #[test]
    fn an_invalid_log_filter_is_refused() {
        let cli = Cli {
            log: Some("nope=[".into()),
            ..Cli::default()
        };
        let e = resolve(cli).err().unwrap();
        assert!(e.0.contains("invalid value for log"), "{e}");
        let cli = Cli {
            log: Some("corecast=debug,warn".into()),
            ..Cli::default()
        };
        assert!(resolve(cli).is_ok());
    }

    #[test]
    fn the_websocket_message_limit_fits_in_the_unparsed_input() {
        let with = |ws: Option<usize>, unparsed: Option<usize>, bulk: Option<usize>| {
            resolve(Cli {
                ws_max_message_bytes: ws,
                max_unparsed_bytes: unparsed,
                max_bulk_len: bulk,
                max_pending_bytes: Some(40_000_000),
                ..Cli::default()
            })
        };
        // Over by one byte: refused, naming both options.
        let e = with(Some(20_000_001), Some(20_000_000), None)
            .err()
            .unwrap();
        assert!(
            e.0.contains("ws_max_message_bytes (20000001)")
                && e.0.contains("max_unparsed_bytes (20000000)"),
            "{e}"
        );
        // Equal, as in the Autobahn test's configuration (crates/server/tests/it_autobahn.rs;
        // max_unparsed_bytes_per_shard stays 64 MiB).
        let s = with(Some(20_000_000), Some(20_000_000), None).unwrap();
        assert_eq!(
            (
                s.broker.ws.max_message_bytes,
                s.broker.max_unparsed_bytes,
                s.broker.max_unparsed_bytes_per_shard
            ),
            (20_000_000, 20_000_000, 64 << 20)
        );
        // The defaults fit; the default limit follows a small max_bulk_len (whose
        // max_unparsed_bytes default follows it) or max_unparsed_bytes.
        let s = with(None, None, None).unwrap();
        assert_eq!(s.broker.ws.max_message_bytes, (1 << 20) + (4 << 10));
        let s = with(None, None, Some(1024)).unwrap();
        assert_eq!(s.broker.ws.max_message_bytes, 1024 + 65536);
        let s = with(None, Some(100_000), Some(1024)).unwrap();
        assert_eq!(s.broker.ws.max_message_bytes, 100_000);
    }

    #[test]
    fn errors_name_the_key() {
        let cli = Cli {
            slow_consumer: Some("maybe".into()),
            ..Cli::default()
        };
        let e = resolve(cli).err().unwrap();
        assert!(e.0.contains("slow_consumer"), "{e}");
        let cli = Cli {
            recv_buffers: Some(100),
            ..Cli::default()
        };
        assert!(resolve(cli).err().unwrap().0.contains("recv_buffers"));
    }
}
