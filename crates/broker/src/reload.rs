//! Changing options at run time (SIGHUP): which options a running broker can take, and how
//! a new configuration reaches the shards without stopping them. The main thread stores
//! the new configuration in [`ConfigSlot`] and bumps its generation; every shard compares
//! the generation at its stats tick (one atomic load every 100 ms) and swaps its `Arc`.
//! Options that shape what was built at start-up (threads, listeners, rings, buffers)
//! need a restart and are reported as such.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::BrokerConfig;
use crate::launch::Running;

/// The configuration shards switch to, with a generation that says when it changed.
#[derive(Debug, Default)]
pub struct ConfigSlot {
    generation: AtomicU64,
    config: Mutex<Option<Arc<BrokerConfig>>>,
}

impl ConfigSlot {
    /// The generation of the configuration in the slot (0: the one the shards started with).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The configuration of generation [`ConfigSlot::generation`], if one was stored.
    pub fn current(&self) -> Option<Arc<BrokerConfig>> {
        self.config.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn store(&self, cfg: Arc<BrokerConfig>) {
        if let Ok(mut slot) = self.config.lock() {
            *slot = Some(cfg);
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Options that changed and took effect: `name: old -> new`.
    pub applied: Vec<String>,
    /// Options that differ but need a restart (the running values stay).
    pub need_restart: Vec<String>,
}

/// Merges `new` into `old`: the options a running broker can change come from `new`, the
/// rest stay as they are. Returns the merged configuration and what changed.
pub fn merge(old: &BrokerConfig, new: &BrokerConfig) -> (BrokerConfig, ReloadReport) {
    let mut merged = old.clone();
    let mut report = ReloadReport::default();
    // Each of these is read where it is used (admission, delivery, the send path, the
    // sweep), so a new value applies from the shard's next tick; ones that belong to a
    // connection (a WebSocket's message limit) apply to connections opened after it.
    macro_rules! runtime {
        ($($($field:ident).+),* $(,)?) => {$(
            if format!("{:?}", old.$($field).+) != format!("{:?}", new.$($field).+) {
                report.applied.push(format!(
                    "{}: {:?} -> {:?}",
                    stringify!($($field).+).replace(' ', ""),
                    old.$($field).+,
                    new.$($field).+
                ));
                merged.$($field).+ = new.$($field).+.clone();
            }
        )*};
    }
    // Built once at start-up: threads, listeners, rings and buffers.
    macro_rules! restart {
        ($($($field:ident).+),* $(,)?) => {$(
            if format!("{:?}", old.$($field).+) != format!("{:?}", new.$($field).+) {
                report
                    .need_restart
                    .push(stringify!($($field).+).replace(' ', ""));
            }
        )*};
    }
    runtime!(
        max_connections,
        max_pending_bytes,
        slow_consumer,
        zerocopy_threshold,
        max_send_batch_bytes,
        max_sends_per_turn,
        max_inflight_publishes,
        max_subscriptions,
        max_channel_bytes,
        max_pattern_bytes,
        max_patterns,
        max_patterns_per_connection,
        max_channel_table_bytes,
        max_unparsed_bytes_per_shard,
        tcp_keepalive_s,
        shutdown_timeout_ms,
        http.max_head_bytes,
        http.max_headers,
        http.max_body_bytes,
        http.head_timeout_ms,
        ws.max_message_bytes,
        ws.ping_interval_s,
        ws.max_empty_fragments,
        allowed_origins,
        sse.heartbeat_s,
        sse.retry_ms,
        sse.storm_retry_ms,
        sse.storm_streams_per_s,
        history.size,
        history.ttl_s,
        history.max_bytes,
        history.channel_max_bytes,
    );
    restart!(
        cpus,
        listeners,
        max_bulk_len,
        max_unparsed_bytes,
        ring_capacity,
        recv_buffers,
        recv_buffer_size,
        stats_interval_ms,
        // Which routes the HTTP listener serves is fixed at start-up.
        ws.echo,
    );
    // A WebSocket frame's payload must fit in a connection's unparsed input
    // (`max_unparsed_bytes`, which needs a restart): a larger message limit waits for the
    // restart too.
    if merged.ws.max_message_bytes > merged.max_unparsed_bytes {
        merged.ws.max_message_bytes = old.ws.max_message_bytes;
        report
            .applied
            .retain(|line| !line.starts_with("ws.max_message_bytes:"));
        report.need_restart.push(format!(
            "ws.max_message_bytes (it passes the running max_unparsed_bytes, {})",
            merged.max_unparsed_bytes
        ));
    }
    (merged, report)
}

impl Running {
    /// Applies the options of `new` that can change at run time (see [`merge`]); shards take
    /// them within one stats interval.
    pub fn reload(&mut self, new: &BrokerConfig) -> ReloadReport {
        let (merged, report) = merge(&self.config, new);
        if !report.applied.is_empty() {
            let merged = Arc::new(merged);
            self.config = merged.clone();
            self.shared.reload.store(merged);
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SlowConsumerPolicy;

    #[test]
    fn runtime_options_change_and_the_rest_wait_for_a_restart() {
        let old = BrokerConfig::default();
        let mut new = old.clone();
        new.max_pending_bytes = 1 << 20;
        new.slow_consumer = SlowConsumerPolicy::Drop;
        new.sse.retry_ms = 5000;
        new.recv_buffers = 1024;
        let (merged, report) = merge(&old, &new);
        assert_eq!(merged.max_pending_bytes, 1 << 20);
        assert_eq!(merged.slow_consumer, SlowConsumerPolicy::Drop);
        assert_eq!(merged.sse.retry_ms, 5000);
        assert_eq!(
            merged.recv_buffers, old.recv_buffers,
            "kept until a restart"
        );
        assert_eq!(
            report.applied,
            [
                "max_pending_bytes: 8388608 -> 1048576",
                "slow_consumer: Disconnect -> Drop",
                "sse.retry_ms: 2000 -> 5000",
            ]
        );
        assert_eq!(report.need_restart, ["recv_buffers"]);
        assert_eq!(merge(&old, &old).1, ReloadReport::default());
    }

    #[test]
    fn a_message_limit_past_the_running_unparsed_limit_waits_for_a_restart() {
        let old = BrokerConfig::default();
        let mut new = old.clone();
        new.max_unparsed_bytes = 30_000_000;
        new.ws.max_message_bytes = 20_000_000;
        new.ws.ping_interval_s = 10;
        let (merged, report) = merge(&old, &new);
        assert_eq!(merged.ws.max_message_bytes, old.ws.max_message_bytes);
        assert_eq!(merged.ws.ping_interval_s, 10);
        assert_eq!(report.applied, ["ws.ping_interval_s: 30 -> 10"]);
        assert_eq!(report.need_restart.len(), 2, "{report:?}");
        assert_eq!(report.need_restart[0], "max_unparsed_bytes");
        assert!(report.need_restart[1].starts_with("ws.max_message_bytes"));
        // Within the running limit it applies at once.
        let mut new = old.clone();
        new.ws.max_message_bytes = old.max_unparsed_bytes - 14;
        assert_eq!(
            merge(&old, &new).0.ws.max_message_bytes,
            new.ws.max_message_bytes
        );
    }

    #[test]
    fn the_echo_route_needs_a_restart() {
        let old = BrokerConfig::default();
        let mut new = old.clone();
        new.ws.echo = true;
        let (merged, report) = merge(&old, &new);
        assert!(!merged.ws.echo);
        assert_eq!(report.need_restart, ["ws.echo"]);
        assert!(report.applied.is_empty());
    }

    #[test]
    fn the_slot_hands_out_the_latest_configuration() {
        let slot = ConfigSlot::default();
        assert_eq!((slot.generation(), slot.current().is_none()), (0, true));
        let cfg = Arc::new(BrokerConfig {
            max_pending_bytes: 7,
            ..BrokerConfig::default()
        });
        slot.store(cfg);
        assert_eq!(slot.generation(), 1);
        assert_eq!(slot.current().map(|c| c.max_pending_bytes), Some(7));
    }
}
