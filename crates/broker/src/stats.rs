//! Per-shard counters and latency histograms, published as periodic snapshots so readers
//! never stop a shard: a shard only `try_lock`s its own slot, and skips a snapshot rather than
//! wait for a reader.

use std::fmt::Write as _;
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

/// Counters of one shard, declared once: the struct, its `/stats` fields, its Prometheus
/// lines and its merge over shards all come from this list. `gauge` is a current value
/// (summed over shards), `counter` only grows (summed), `max` is a value of which the
/// total shows the highest any shard has.
macro_rules! counters {
    ($($(#[doc = $doc:literal])+ $name:ident: $kind:ident,)+) => {
        /// Counters of one shard. Gauges are current values; the rest only grow.
        #[derive(Debug, Clone, Copy, Default)]
        pub struct Counters {
            $($(#[doc = $doc])+ pub $name: u64,)+
        }

        impl Counters {
            /// Every counter: (name, value, is a gauge), in declaration order.
            fn fields(&self) -> [(&'static str, u64, bool); [$(stringify!($name)),+].len()] {
                [$((stringify!($name), self.$name, Merge::$kind.is_gauge())),+]
            }

            fn add(&mut self, o: &Counters) {
                $(self.$name = Merge::$kind.merge(self.$name, o.$name);)+
            }
        }
    };
}

/// How a counter of several shards adds up (see [`counters!`]).
#[derive(Clone, Copy)]
#[allow(non_camel_case_types)]
enum Merge {
    /// Only grows; summed.
    counter,
    /// A current value; summed.
    gauge,
    /// A current value; the total is the highest.
    max,
}

impl Merge {
    const fn is_gauge(self) -> bool {
        !matches!(self, Merge::counter)
    }

    fn merge(self, a: u64, b: u64) -> u64 {
        match self {
            Merge::counter | Merge::gauge => a + b,
            Merge::max => a.max(b),
        }
    }
}

counters! {
    /// Open client connections (gauge).
    connections: gauge,
    /// Local channel + pattern subscriptions (gauge).
    subscriptions: gauge,
    /// Channels with subscribers owned by this shard (gauge).
    channels: gauge,
    /// Publish commands received from this shard's clients.
    published: counter,
    /// Messages queued to this shard's subscribers.
    delivered: counter,
    /// Delivery frames built: at most one per message, wire format and shard, however many
    /// subscribers share it.
    frames_built: counter,
    /// Bytes read from clients.
    bytes_in: counter,
    /// Bytes written to clients.
    bytes_out: counter,
    /// Subscribers disconnected by the slow-consumer policy.
    slow_consumer_disconnects: counter,
    /// Messages dropped by the `drop` slow-consumer policy.
    dropped: counter,
    /// Pushes that found a peer's ring full (the message waited in an overflow queue).
    ring_full: counter,
    /// Times the submission queue was full and had to be flushed early.
    sq_stalls: counter,
    /// Accepted connections.
    accepted: counter,
    /// Connections refused by `max_connections`.
    rejected_connections: counter,
    /// Accepts that failed (out of descriptors or memory: accepting pauses until the next
    /// stats tick).
    accept_errors: counter,
    /// Protocol errors (connection closed after the error reply).
    protocol_errors: counter,
    /// Connections closed for holding more unparsed input than allowed.
    input_overflows: counter,
    /// Times a connection's input was paused: it had more than `max_pending_bytes` of replies
    /// unread, too many publishes or a query in flight, or the mesh was congested.
    input_pauses: counter,
    /// Connections closed by a receive error: reset by the peer, or found dead by TCP
    /// keepalive (a client that vanished without a FIN).
    receive_errors: counter,
    /// Multishot receives ended because no provided buffer was free.
    recv_no_buffers: counter,
    /// Send batches submitted.
    send_batches: counter,
    /// Zero-copy sends submitted.
    zerocopy_sends: counter,
    /// Wake-ups of a sleeping peer (MSG_RING) that failed and were retried.
    wake_failures: counter,
    /// HTTP requests parsed.
    http_requests: counter,
    /// HTTP requests answered with an error status (4xx, 5xx) or refused upgrades.
    http_errors: counter,
    /// HTTP connections closed for not completing a request head in `http.head_timeout_ms` (slowloris, idle keep-alive).
    head_timeouts: counter,
    /// Requests refused with 403 because their `Origin` is not in `allowed_origins`
    /// (WebSocket, SSE, `POST /pub`); also counted in `http_errors`.
    origin_refusals: counter,
    /// Connections upgraded to WebSocket.
    ws_upgrades: counter,
    /// Open WebSocket connections (gauge, updated once a second).
    ws_connections: gauge,
    /// WebSocket connections closed for breaking RFC 6455 (1002, 1007, 1009) or a frame
    /// limit (1008: too many empty fragments).
    ws_protocol_errors: counter,
    /// Native-protocol requests answered with an error (bad JSON, unknown op, ...); the connection stays open.
    ws_request_errors: counter,
    /// WebSocket connections closed for not answering a ping.
    ws_ping_timeouts: counter,
    /// SSE streams opened.
    sse_streams: counter,
    /// Open SSE streams (gauge, updated once a second).
    sse_connections: gauge,
    /// SSE heartbeat comments sent.
    sse_heartbeats: counter,
    /// The `retry:` advice new SSE streams get now (gauge): raised during a reconnect storm.
    sse_retry_ms: max,
    /// Subscriptions that resumed from a position (all of the gap replayed, or nothing missed).
    resumes: counter,
    /// Resumes refused because history no longer held the whole gap or the epoch changed (the client got a reset notice).
    resume_resets: counter,
    /// Replay lists built from history. Resumers from the same position share one list, so
    /// a reconnect storm of thousands of clients on one channel costs one walk, not one each.
    replay_walks: counter,
    /// Messages this shard, as owner, sent to another NUMA node through that node's relay
    /// (one handle per node instead of one per interested shard).
    relayed: counter,
    /// Bytes of channel history this shard holds (gauge).
    history_bytes: gauge,
    /// Bytes charged to this shard's channel-table budget (gauge), bounded by
    /// `max_channel_table_bytes`.
    channel_table_bytes: gauge,
    /// Distinct patterns in the process, as this shard's replica counts them (gauge; the
    /// total sums the replicas).
    patterns: gauge,
    /// Subscriptions and publishes refused for the channel name's length or a full channel
    /// table.
    channel_refusals: counter,
    /// Pattern subscriptions refused (length, patterns per process or per connection, full
    /// table).
    pattern_refusals: counter,
    /// Owned channels nobody subscribed to, forgotten to make room in the channel table.
    channels_evicted: counter,
    /// Connections closed because the shard's incomplete input passed
    /// `max_unparsed_bytes_per_shard` (the largest first).
    input_budget_closes: counter,
    /// Publishes to a channel without subscribers whose history was not kept because the
    /// shard's history was over `history_max_bytes`.
    history_skips: counter,
    /// Resumes whose replay did not fit the subscriber's queue and was queued as the client
    /// drained it.
    paced_replays: counter,
}

/// Latency histograms in microseconds, 3 significant digits, up to 60 s.
#[derive(Debug, Clone)]
pub struct Latencies {
    /// From the publisher's shard parsing a publish to the send that carries it being
    /// submitted (recorded once per send batch, for its oldest frame).
    pub publish_to_send: Histogram<u64>,
    /// From a send's submission to its completion.
    pub send_complete: Histogram<u64>,
    /// One turn of the shard's loop: completions handled, sends and closes submitted, and
    /// (when the turn does not sleep) the kernel work of its enter. Nothing on the shard is
    /// looked at during a turn, so its tail is the shard's own share of any latency.
    pub turn: Histogram<u64>,
}

impl Latencies {
    /// Empty histograms.
    pub fn new() -> Self {
        let h = || Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds");
        Self {
            publish_to_send: h(),
            send_complete: h(),
            turn: h(),
        }
    }

    /// Each histogram's key in `/stats` (`latency_us.<key>`) and its metric name, in the
    /// order of [`Latencies::histograms`].
    pub const NAMES: [(&'static str, &'static str); 3] = [
        (
            "publish_to_send",
            "corecast_publish_to_send_latency_seconds",
        ),
        ("send_complete", "corecast_send_complete_latency_seconds"),
        ("turn", "corecast_turn_duration_seconds"),
    ];

    /// Every histogram, in the order of [`Latencies::NAMES`].
    pub fn histograms(&self) -> [&Histogram<u64>; 3] {
        [&self.publish_to_send, &self.send_complete, &self.turn]
    }

    fn histograms_mut(&mut self) -> [&mut Histogram<u64>; 3] {
        [
            &mut self.publish_to_send,
            &mut self.send_complete,
            &mut self.turn,
        ]
    }

    /// Makes every histogram of `self` a copy of the same one of `other` (no allocation).
    fn copy_from(&mut self, other: &Latencies) {
        for (h, o) in self.histograms_mut().into_iter().zip(other.histograms()) {
            h.reset();
            let _ = h.add(o);
        }
    }

    /// Adds every histogram of `other` into the same one of `self`.
    fn add(&mut self, other: &Latencies) {
        for (h, o) in self.histograms_mut().into_iter().zip(other.histograms()) {
            let _ = h.add(o);
        }
    }

    /// Records a duration in nanoseconds into `h`, saturating at the top bucket.
    pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
        h.saturating_record((ns / 1000).max(1));
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a shard runs, set once at start (not summed into the total).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placement {
    /// The CPU the shard is pinned to.
    pub cpu: Option<usize>,
    /// Its NUMA node, if the topology tells.
    pub node: Option<usize>,
}

/// What a shard publishes.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Counters at snapshot time.
    pub counters: Counters,
    /// Histograms at snapshot time (cumulative since start).
    pub latency: Latencies,
    /// Where the shard runs (set by [`StatsBoard::set_placement`], not by the shard's
    /// snapshots).
    pub place: Placement,
}

/// The shared board: one slot per shard.
pub struct StatsBoard {
    slots: Box<[Mutex<Snapshot>]>,
}

impl StatsBoard {
    /// A board for `shards` shards.
    pub fn new(shards: usize) -> Self {
        Self {
            slots: (0..shards)
                .map(|_| Mutex::new(Snapshot::default()))
                .collect(),
        }
    }

    /// Records where shard `id` runs (at start, before the shard publishes).
    pub fn set_placement(&self, id: usize, place: Placement) {
        match self.slots[id].lock() {
            Ok(mut slot) => slot.place = place,
            Err(p) => p.into_inner().place = place,
        }
    }

    /// Called by shard `id`: copies its stats into its slot unless a reader holds it.
    pub fn publish(&self, id: usize, counters: &Counters, latency: &Latencies) -> bool {
        match self.slots[id].try_lock() {
            Ok(mut slot) => {
                slot.counters = *counters;
                slot.latency.copy_from(latency);
                true
            }
            Err(_) => false,
        }
    }

    /// Copies every slot (readers only contend with a shard's brief try_lock).
    pub fn read(&self) -> Vec<Snapshot> {
        self.slots
            .iter()
            .map(|s| match s.lock() {
                Ok(g) => g.clone(),
                Err(p) => p.into_inner().clone(),
            })
            .collect()
    }
}

fn merged(shards: &[Snapshot]) -> Snapshot {
    let mut total = Snapshot::default();
    for s in shards {
        total.counters.add(&s.counters);
        total.latency.add(&s.latency);
    }
    total
}

fn hist_json(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "p50": h.value_at_quantile(0.5),
        "p90": h.value_at_quantile(0.9),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
    })
}

fn snapshot_json(s: &Snapshot, shard: Option<usize>) -> Value {
    let mut m = Map::new();
    if let Some(id) = shard {
        m.insert("shard".into(), json!(id));
        m.insert("cpu".into(), json!(s.place.cpu));
        m.insert("node".into(), json!(s.place.node));
    }
    for (name, v, _) in s.counters.fields() {
        m.insert(name.into(), json!(v));
    }
    let latency: Map<String, Value> = Latencies::NAMES
        .iter()
        .zip(s.latency.histograms())
        .map(|((key, _), h)| (key.to_string(), hist_json(h)))
        .collect();
    m.insert("latency_us".into(), Value::Object(latency));
    Value::Object(m)
}

/// `GET /stats`: per shard and merged.
pub fn render_json(shards: &[Snapshot]) -> String {
    let total = merged(shards);
    let v = json!({
        "shards": shards.iter().enumerate().map(|(i, s)| snapshot_json(s, Some(i))).collect::<Vec<_>>(),
        "total": snapshot_json(&total, None),
    });
    v.to_string()
}

/// `GET /metrics`: Prometheus text exposition format 0.0.4, one series per shard.
pub fn render_prometheus(shards: &[Snapshot]) -> String {
    let mut out = String::with_capacity(8192);
    let names = Counters::default().fields();
    for (idx, (name, _, gauge)) in names.iter().enumerate() {
        let metric = if *gauge {
            format!("corecast_{name}")
        } else {
            format!("corecast_{name}_total")
        };
        let kind = if *gauge { "gauge" } else { "counter" };
        let _ = writeln!(
            out,
            "# HELP {metric} corecast {} per shard.",
            name.replace('_', " ")
        );
        let _ = writeln!(out, "# TYPE {metric} {kind}");
        for (i, s) in shards.iter().enumerate() {
            let _ = writeln!(
                out,
                "{metric}{{shard=\"{i}\"}} {}",
                s.counters.fields()[idx].1
            );
        }
    }
    // Where each shard runs: gauges with the shard label only, present for the shards whose
    // value is known (a family with no samples is left out).
    let place = |f: fn(&Placement) -> Option<usize>| -> Vec<Option<usize>> {
        shards.iter().map(|s| f(&s.place)).collect()
    };
    for (metric, what, values) in [
        (
            "corecast_shard_cpu",
            "CPU the shard is pinned to",
            place(|p| p.cpu),
        ),
        (
            "corecast_shard_node",
            "NUMA node of the shard's CPU",
            place(|p| p.node),
        ),
    ] {
        if values.iter().all(Option::is_none) {
            continue;
        }
        let _ = writeln!(out, "# HELP {metric} {what}.");
        let _ = writeln!(out, "# TYPE {metric} gauge");
        for (i, v) in values.iter().enumerate() {
            if let Some(v) = v {
                let _ = writeln!(out, "{metric}{{shard=\"{i}\"}} {v}");
            }
        }
    }
    for (pick, (_, metric)) in Latencies::NAMES.iter().enumerate() {
        let _ = writeln!(out, "# HELP {metric} Latency summary from HDR histograms.");
        let _ = writeln!(out, "# TYPE {metric} summary");
        for (i, s) in shards.iter().enumerate() {
            let h = s.latency.histograms()[pick];
            for q in [0.5, 0.9, 0.99, 0.999] {
                let _ = writeln!(
                    out,
                    "{metric}{{shard=\"{i}\",quantile=\"{q}\"}} {}",
                    h.value_at_quantile(q) as f64 / 1e6
                );
            }
            let sum_us: f64 = h
                .iter_recorded()
                .map(|v| v.value_iterated_to() as f64 * v.count_at_value() as f64)
                .sum();
            let _ = writeln!(out, "{metric}_sum{{shard=\"{i}\"}} {}", sum_us / 1e6);
            let _ = writeln!(out, "{metric}_count{{shard=\"{i}\"}} {}", h.len());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_per_shard_and_total() {
        let mut a = Snapshot::default();
        a.counters.published = 3;
        Latencies::record_ns(&mut a.latency.publish_to_send, 5_000);
        let mut b = Snapshot::default();
        b.counters.published = 4;
        let v: Value = serde_json::from_str(&render_json(&[a, b])).unwrap();
        assert_eq!(v["shards"].as_array().unwrap().len(), 2);
        assert_eq!(v["total"]["published"], 7);
        assert_eq!(v["total"]["latency_us"]["publish_to_send"]["count"], 1);
        assert_eq!(v["total"]["latency_us"]["publish_to_send"]["p50"], 5);
    }

    #[test]
    fn placement_is_per_shard_only() {
        let board = StatsBoard::new(2);
        board.set_placement(
            0,
            Placement {
                cpu: Some(4),
                node: Some(1),
            },
        );
        board.set_placement(
            1,
            Placement {
                cpu: Some(5),
                node: None,
            },
        );
        // A shard's own snapshots leave its placement alone.
        let c = Counters {
            published: 2,
            ..Default::default()
        };
        assert!(board.publish(0, &c, &Latencies::new()));
        let snaps = board.read();
        let v: Value = serde_json::from_str(&render_json(&snaps)).unwrap();
        assert_eq!(v["shards"][0]["cpu"], 4);
        assert_eq!(v["shards"][0]["node"], 1);
        assert_eq!(v["shards"][0]["published"], 2);
        assert_eq!(v["shards"][1]["cpu"], 5);
        assert!(v["shards"][1]["node"].is_null(), "unknown node");
        assert!(v["total"].get("cpu").is_none() && v["total"].get("node").is_none());

        let text = render_prometheus(&snaps);
        assert!(text.contains("# TYPE corecast_shard_cpu gauge\n"), "{text}");
        assert!(text.contains("corecast_shard_cpu{shard=\"0\"} 4\n"));
        assert!(text.contains("corecast_shard_cpu{shard=\"1\"} 5\n"));
        assert!(text.contains("corecast_shard_node{shard=\"0\"} 1\n"));
        assert!(!text.contains("corecast_shard_node{shard=\"1\"}"));
        // Never placed (unit tests' shards): no family at all, so no empty one.
        let text = render_prometheus(&[Snapshot::default()]);
        assert!(!text.contains("corecast_shard_"));
    }

    #[test]
    fn board_skips_when_a_reader_holds_the_slot() {
        let board = StatsBoard::new(1);
        let guard = board.slots[0].lock().unwrap();
        assert!(!board.publish(0, &Counters::default(), &Latencies::new()));
        drop(guard);
        assert!(board.publish(0, &Counters::default(), &Latencies::new()));
    }
}
