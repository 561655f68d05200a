//! Once-a-second work over every connection and owned channel: HTTP head deadlines
//! (slowloris), WebSocket pings and their deadline, SSE heartbeats and `retry:` advice, the
//! reconnect-storm detector (SSE streams opened per second), and history expiry and budget.
//! One walk a second of a slab of tens of thousands of connections costs well under a
//! millisecond, and needs no timer per connection; the owned channels, bounded by the
//! channel-table budget but up to a million, are swept in slices over several turns.

use super::Shard;
use crate::config::limits::SWEEP_ENTRIES_PER_TURN;
use crate::conn::Life;
use crate::session::Session;

/// Period of the sweep.
pub(super) const SWEEP_NS: u64 = 1_000_000_000;

impl Shard {
    /// Runs the sweep if it is due (called from the stats tick).
    pub(super) fn maybe_sweep(&mut self) {
        if self.now_ns < self.next_sweep_ns {
            return;
        }
        let elapsed_ns = SWEEP_NS.max(self.now_ns - self.next_sweep_ns + SWEEP_NS);
        self.next_sweep_ns = self.now_ns + SWEEP_NS;
        self.detect_storm(elapsed_ns);
        self.sweep_connections();
        // A new lap of the channel sweep, unless the last one is still going.
        self.sweeping = true;
    }

    /// One slice of the owned channels' sweep (history expiry and budget, idle channels
    /// forgotten), while a lap is going: at most `SWEEP_ENTRIES_PER_TURN` entries a turn.
    pub(super) fn sweep_slice(&mut self) {
        if !self.sweeping {
            return;
        }
        let ttl_ns = u64::from(self.cfg.history.ttl_s) * 1_000_000_000;
        let (_, done) = self.owned.sweep_step(
            self.now_ns.saturating_sub(ttl_ns),
            self.cfg.history.max_bytes,
            SWEEP_ENTRIES_PER_TURN,
        );
        self.sweeping = !done;
        self.counters.history_bytes = self.owned.history_bytes() as u64;
    }

    /// A storm is a rate of SSE streams opened above `sse.storm_streams_per_s` over the
    /// last sweep period; it ends with the first period below it.
    ///
    /// Streams, not TCP accepts: the advice is for EventSource clients coming back, and
    /// accepts count anyone's connections. A few thousand plain connect-and-close per
    /// second, from any client and needing no valid request, used to flip every stream's
    /// advice to the storm value; a stream only counts once its request was valid and it
    /// holds a connection slot, which is what a reconnect wave of EventSource clients is.
    fn detect_storm(&mut self, elapsed_ns: u64) {
        let opened = self.counters.sse_streams - self.sse_streams_at_sweep;
        self.sse_streams_at_sweep = self.counters.sse_streams;
        let per_s = opened.saturating_mul(1_000_000_000) / elapsed_ns.max(1);
        let storm = per_s > u64::from(self.cfg.sse.storm_streams_per_s);
        if storm != self.storm {
            tracing::info!(
                shard = self.id,
                sse_streams_per_s = per_s,
                storm,
                "reconnect storm {}",
                if storm {
                    "detected: raising SSE retry advice"
                } else {
                    "over"
                }
            );
            self.storm = storm;
        }
        self.counters.sse_retry_ms = if storm {
            self.cfg.sse.storm_retry_ms
        } else {
            self.cfg.sse.retry_ms
        };
    }

    fn sweep_connections(&mut self) {
        let mut keys = std::mem::take(&mut self.sweep_keys);
        keys.clear();
        keys.extend(self.conns.iter().map(|(k, _)| k as u32));
        let ping_ns = u64::from(self.cfg.ws.ping_interval_s) * 1_000_000_000;
        let (mut ws, mut sse) = (0, 0);
        for &key in &keys {
            let key = key as usize;
            let now = self.now_ns;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.life != Life::Open {
                continue;
            }
            match &mut conn.session {
                Session::Http(h) => {
                    if now > h.head_deadline_ns && conn.out.is_empty() && !conn.send_inflight {
                        tracing::debug!(shard = self.id, key, "request head deadline passed");
                        self.counters.head_timeouts += 1;
                        self.begin_close(key);
                    }
                }
                Session::Ws(s) => {
                    ws += 1;
                    if ping_ns == 0 || now < s.next_ping_ns {
                        continue;
                    }
                    s.next_ping_ns = now + ping_ns;
                    if s.awaiting_pong {
                        self.counters.ws_ping_timeouts += 1;
                        self.ws_close(
                            key,
                            corecast_proto::ws::close_code::GOING_AWAY,
                            "ping timeout",
                        );
                    } else {
                        s.awaiting_pong = true;
                        let mut out = Vec::new();
                        corecast_proto::ws::frame(&mut out, corecast_proto::ws::opcode::PING, b"");
                        conn.out.reply(&out);
                        self.mark_dirty(key);
                    }
                }
                Session::Sse(_) => {
                    sse += 1;
                    self.sse_tick(key);
                }
                Session::Resp(_) => {}
            }
        }
        self.counters.ws_connections = ws;
        self.counters.sse_connections = sse;
        self.sweep_keys = keys;
    }
}
