//! Input and back-pressure: the multishot receive, parsing through the connection's
//! protocol, the unparsed-input limit, and pausing input (and, past a threshold, the receive
//! itself, so TCP pushes back) until the reason clears.

use std::sync::atomic::Ordering;

use corecast_runtime::RecvBuf;

use super::{token, Shard};
use crate::config::limits::{
    PATTERN_MATCHES_IN_FLIGHT, PAUSED_INPUT_BYTES, SHED_MIN_BYTES, TURN_INPUT_BUDGET_NS,
    WS_MAX_FRAME_HEADER,
};
use crate::conn::Life;
use crate::pause::{pause_reason, PauseReason};
use crate::session::Session;

impl Shard {
    /// Arms the connection's multishot receive (buffers come from the driver's ring).
    pub(super) fn arm_recv(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        debug_assert!(conn.recv_op.is_none(), "one receive per connection");
        let op = self
            .io
            .recv_multi(conn.fd, token::make(token::RECV, key as u32, conn.gen));
        self.conns[key].recv_op = Some(op);
    }

    /// A receive completion: data (in a provided buffer, given back when `buf` drops), the
    /// peer's EOF, or the end of the multishot receive.
    pub(super) fn on_recv(
        &mut self,
        key: usize,
        gen: u32,
        res: i32,
        more: bool,
        buf: Option<RecvBuf>,
    ) {
        let Some(c) = self.conns.get_mut(key).filter(|c| c.gen == gen) else {
            return;
        };
        if !more {
            c.recv_op = None;
            c.recv_cancelling = false;
        }
        if res > 0 {
            self.counters.bytes_in += res as u64;
            if let Some(buf) = buf {
                self.on_data(key, &buf);
            }
        } else if res == 0 {
            let c = &mut self.conns[key];
            if c.stalled && !c.inbuf.is_empty() && c.life == Life::Open {
                // Commands the client sent before closing its side still run, as they would
                // have without the pause (`resume_stalled` finishes the connection).
                tracing::debug!(
                    shard = self.id,
                    key,
                    "peer closed; running its paused input"
                );
                c.peer_eof = true;
            } else if c.life == Life::Open && !c.out.is_empty() {
                // Replies to what the client sent are still queued, or wait for another
                // shard (a PUBLISH's count): send them, then close. A client that closed
                // only its sending side reads them; one that is gone fails the send.
                tracing::debug!(shard = self.id, key, "peer closed; flushing its replies");
                c.life = Life::CloseAfterFlush;
                self.mark_dirty(key);
            } else {
                tracing::debug!(shard = self.id, key, "peer closed");
                self.queue_close(key);
            }
        } else if res == -libc::ENOBUFS {
            self.counters.recv_no_buffers += 1;
        } else if res != -libc::ECANCELED {
            tracing::debug!(shard = self.id, key, error = %std::io::Error::from_raw_os_error(-res), "receive failed; closing");
            self.counters.receive_errors += 1;
            self.queue_close(key);
        }
        let Some(c) = self.conns.get(key) else { return };
        if c.life == Life::Closing {
            self.maybe_finish(key);
        } else {
            // Receive again unless one is armed, the connection is ending, the client has
            // closed its side, or paused input has reached the point where TCP pushes back.
            let held_back = c.stalled && c.inbuf.len() >= PAUSED_INPUT_BYTES;
            if c.recv_op.is_none() && c.life == Life::Open && !c.peer_eof && !held_back {
                self.arm_recv(key);
            }
        }
    }

    /// Bytes received: parsed at once when nothing is buffered or paused, else appended.
    fn on_data(&mut self, key: usize, data: &[u8]) {
        let conn = &mut self.conns[key];
        if conn.life != Life::Open {
            return;
        }
        if conn.inbuf.is_empty() && !conn.stalled {
            let used = self.process(key, data);
            let conn = &mut self.conns[key];
            if conn.life == Life::Open && used < data.len() {
                conn.inbuf.extend_from_slice(&data[used..]);
            }
        } else {
            conn.inbuf.extend_from_slice(data);
            if !conn.stalled {
                self.process_inbuf(key);
            }
        }
        self.check_input(key);
    }

    /// Enforces the unparsed-input limit and pauses the receive of a stalled connection.
    ///
    /// A running connection's `inbuf` holds only an incomplete command, so
    /// `max_unparsed_bytes` bounds it. A stalled connection's holds complete commands the
    /// shard chose not to parse yet; its receive is cancelled at `PAUSED_INPUT_BYTES`, but
    /// completions the kernel posted before the cancel still land, at most one provided
    /// buffer ring's worth (`recv_buffers × recv_buffer_size`). Closing the client for
    /// input the broker itself paused would punish it for the broker's back-pressure.
    fn check_input(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.life != Life::Open {
            return;
        }
        let mut max = self.cfg.max_unparsed_bytes;
        if matches!(conn.session, Session::Ws(_)) {
            // A frame is decoded once whole: its header comes on top of the payload.
            max += WS_MAX_FRAME_HEADER;
        }
        if conn.stalled {
            max +=
                usize::from(self.cfg.recv_buffers) * self.cfg.recv_buffer_size + PAUSED_INPUT_BYTES;
        }
        if conn.inbuf.len() > max {
            self.counters.input_overflows += 1;
            self.begin_close(key);
            return;
        }
        let charge = if conn.stalled { 0 } else { conn.inbuf.len() };
        self.unparsed_bytes = self.unparsed_bytes - (conn.input_charged as usize) + charge;
        conn.input_charged = charge as u32;
        if self.unparsed_bytes > self.cfg.max_unparsed_bytes_per_shard {
            self.shed_input(key);
            if self.conns[key].life != Life::Open {
                return;
            }
        }
        let conn = &mut self.conns[key];
        if conn.stalled && conn.inbuf.len() >= PAUSED_INPUT_BYTES && !conn.recv_cancelling {
            if let Some(op) = conn.recv_op {
                conn.recv_cancelling = true;
                self.io.cancel(op);
            }
        }
    }

    /// The shard holds more incomplete input than `max_unparsed_bytes_per_shard`: closes the
    /// connections holding the most (at least `SHED_MIN_BYTES` each) until it is back under,
    /// or, when none holds that much, the connection `key` whose input passed the budget.
    /// A walk over the connections, but each one closes at least one connection, so the
    /// work is paid for by connections that had to be accepted first.
    fn shed_input(&mut self, key: usize) {
        let mut big: Vec<(u32, usize)> = self
            .conns
            .iter()
            .filter(|(_, c)| c.input_charged as usize >= SHED_MIN_BYTES)
            .map(|(k, c)| (c.input_charged, k))
            .collect();
        big.sort_unstable_by(|a, b| b.cmp(a));
        if big.is_empty() {
            big.push((self.conns[key].input_charged, key));
        }
        for (_, k) in big {
            if self.unparsed_bytes <= self.cfg.max_unparsed_bytes_per_shard {
                break;
            }
            tracing::debug!(
                shard = self.id,
                key = k,
                "shard input budget full; closing the largest"
            );
            self.counters.input_budget_closes += 1;
            self.begin_close(k);
        }
    }

    /// Parses what `inbuf` holds.
    pub(super) fn process_inbuf(&mut self, key: usize) {
        let mut buf = self.conns[key].inbuf.take();
        let used = self.process(key, &buf);
        buf.drain(..used);
        if let Some(conn) = self.conns.get_mut(key) {
            if conn.life == Life::Open {
                conn.inbuf.put(buf);
            }
        }
    }

    /// Hands bytes to the connection's protocol; returns how many it consumed. An HTTP
    /// request can upgrade the connection (WebSocket, SSE): what follows its head goes to
    /// the new protocol.
    pub(super) fn process(&mut self, key: usize, data: &[u8]) -> usize {
        let mut used = 0;
        loop {
            let conn = &self.conns[key];
            let before = std::mem::discriminant(&conn.session);
            let rest = &data[used..];
            used += match &conn.session {
                Session::Resp(_) => self.resp_process(key, rest),
                Session::Http(_) => self.http_process(key, rest),
                Session::Ws(_) => self.ws_process(key, rest),
                Session::Sse(_) => self.sse_process(key, rest),
            };
            let Some(conn) = self.conns.get(key) else {
                return used;
            };
            let upgraded = std::mem::discriminant(&conn.session) != before;
            if !upgraded || used >= data.len() || conn.life != Life::Open || conn.stalled {
                return used;
            }
        }
    }

    /// Marks a connection's input as paused until `resume_stalled` finds its reason gone,
    /// and records a congestion pause so the shard re-checks congestion before it sleeps.
    pub(super) fn stall(&mut self, key: usize, reason: PauseReason) {
        self.congestion_paused |= reason == PauseReason::Congestion;
        self.budget_paused |= matches!(reason, PauseReason::TurnBudget | PauseReason::Continuation);
        let conn = &mut self.conns[key];
        if !conn.stalled {
            conn.stalled = true;
            self.stalled.push(key as u32);
            self.counters.input_pauses += 1;
        }
    }

    /// Why a connection must not parse more input now (see `pause.rs`), from one reading of
    /// the congestion count.
    pub(super) fn pause_reason(&self, key: usize) -> Option<PauseReason> {
        if self.turn_exhausted {
            return Some(PauseReason::TurnBudget);
        }
        let congested = self.shared.congested.load(Ordering::Relaxed);
        let conn = &self.conns[key];
        pause_reason(conn, &self.cfg, congested).or_else(|| {
            (conn.out.held() >= self.inflight_publish_cap()).then_some(PauseReason::Publishes)
        })
    }

    /// Publishes one connection may have waiting for a remote owner. Every publish is matched
    /// against every pattern on its owner, and a peer's ring is one queue: a connection with
    /// `max_inflight_publishes` costly publishes in flight put the owner's answers to every
    /// other client of this shard behind all of them. So with patterns the cap shrinks to
    /// about `PATTERN_MATCHES_IN_FLIGHT` matches' worth (16 publishes with 256 patterns).
    pub(super) fn inflight_publish_cap(&self) -> usize {
        let patterns = self.patterns.len().max(1);
        (PATTERN_MATCHES_IN_FLIGHT / patterns).clamp(4, self.cfg.max_inflight_publishes.max(4))
    }

    /// Charges `units` of work done for clients to this turn (a command is one, and one
    /// more per 4 KiB it carries; each pattern a publish is matched against one more). Every 64 units the turn's time is
    /// read; past `TURN_INPUT_BUDGET_NS` client input waits for the next turn. Reading the
    /// clock only every 64 units keeps the check off the cost of a plain command.
    pub(super) fn charge_work(&mut self, units: u64) {
        let before = self.turn_work;
        self.turn_work += units;
        if before / 64 != self.turn_work / 64 && !self.turn_exhausted {
            let spent = corecast_runtime::clock::now_ns().saturating_sub(self.turn_start_ns);
            self.turn_exhausted = spent > TURN_INPUT_BUDGET_NS;
        }
    }

    pub(super) fn resume_stalled(&mut self) {
        self.congestion_paused = false;
        self.budget_paused = false;
        if self.stalled.is_empty() {
            return;
        }
        let list = std::mem::take(&mut self.stalled);
        for key in list {
            let key = key as usize;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if !conn.stalled {
                continue;
            }
            if conn.life != Life::Open {
                conn.stalled = false;
                continue;
            }
            if let Some(reason) = self.pause_reason(key) {
                self.stalled.push(key as u32);
                self.congestion_paused |= reason == PauseReason::Congestion;
                self.budget_paused |= reason == PauseReason::TurnBudget;
                continue;
            }
            self.conns[key].stalled = false;
            self.process_inbuf(key);
            self.check_input(key);
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            if c.stalled || c.life != Life::Open {
                continue;
            }
            if c.peer_eof {
                // Everything complete has run; what is left is at most a command the client
                // never finished. Send the replies, then close.
                c.life = Life::CloseAfterFlush;
                self.mark_dirty(key);
            } else if c.recv_op.is_none() {
                self.arm_recv(key);
            }
        }
    }
}
