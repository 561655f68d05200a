//! The send path: at most one send in flight per connection; at the end of a turn every
//! dirty connection gets one SENDMSG covering its queued frames (or a SEND_ZC for a large
//! front frame); partial sends advance the queue and go again.

use super::{token, Shard};
use crate::conn::Life;
use crate::outbound::Wire;
use crate::stats::Latencies;

impl Shard {
    /// One send for every dirty connection with no send in flight.
    pub(super) fn flush_sends(&mut self) {
        if self.dirty.is_empty() && self.urgent.is_empty() {
            return;
        }
        // A fresh reading: publishes parsed during this turn are stamped after its start.
        self.now_ns = corecast_runtime::clock::now_ns();
        self.flush_urgent();
        let cap = self.cfg.max_sends_per_turn;
        let mut dirty = std::mem::take(&mut self.dirty);
        let (mut done, mut sent) = (0, 0);
        for &key in &dirty {
            if cap != 0 && sent >= cap {
                break;
            }
            done += 1;
            if self.send_if_idle(key as usize) {
                sent += 1;
            }
        }
        // Connections past the cap go first next turn, ahead of any made dirty meanwhile.
        dirty.drain(..done);
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
    }

    /// Sends the answers to requests (`/healthz`, `/stats`, `POST /pub`) queued so far, ahead
    /// of everything else and outside `max_sends_per_turn`. A connection may also sit in
    /// `dirty`: its later entry finds the send in flight and is skipped.
    pub(super) fn flush_urgent(&mut self) {
        if self.urgent.is_empty() {
            return;
        }
        // A fresh reading: the sends are stamped with it (`send_complete`), and this turn's
        // own work so far is not theirs.
        self.now_ns = corecast_runtime::clock::now_ns();
        let mut urgent = std::mem::take(&mut self.urgent);
        for &key in &urgent {
            self.send_if_idle(key as usize);
        }
        urgent.clear();
        self.urgent = urgent;
    }

    /// Clears the connection's dirty mark and submits its send unless one is in flight or it
    /// is closing; true when a send was submitted.
    fn send_if_idle(&mut self, key: usize) -> bool {
        let Some(conn) = self.conns.get_mut(key) else {
            return false;
        };
        conn.dirty = false;
        if conn.send_inflight || conn.life == Life::Closing {
            return false;
        }
        self.submit_send(key);
        true
    }

    /// One send for the connection: its front frame alone with SEND_ZC when it is large
    /// enough, else one SENDMSG over its sendable prefix.
    fn submit_send(&mut self, key: usize) {
        let zc = self.cfg.zerocopy_threshold;
        let conn = &mut self.conns[key];
        let gen = conn.gen;
        let tag = |kind| token::make(kind, key as u32, gen);
        if zc > 0 {
            if let Some((frame, off)) = conn.out.front_large(zc) {
                conn.send_inflight = true;
                conn.send_submit_ns = self.now_ns;
                self.counters.zerocopy_sends += 1;
                self.io
                    .send_zc(conn.fd, Wire(frame), off, tag(token::SEND_ZC));
                return;
            }
        }
        let mut batch = self.io.batch();
        let gathered = conn.out.gather(&mut batch, self.cfg.max_send_batch_bytes);
        if gathered.iovecs == 0 {
            self.io.recycle(batch);
            if conn.life == Life::CloseAfterFlush && conn.out.is_empty() {
                self.begin_close(key);
            }
            return;
        }
        conn.send_inflight = true;
        conn.send_submit_ns = self.now_ns;
        let fd = conn.fd;
        self.counters.send_batches += 1;
        if gathered.oldest_ts_ns != 0 {
            Latencies::record_ns(
                &mut self.latency.publish_to_send,
                self.now_ns.saturating_sub(gathered.oldest_ts_ns),
            );
        }
        self.io.send(fd, batch, tag(token::SEND));
    }

    /// A SENDMSG completed (the driver has released its batch).
    pub(super) fn on_send(&mut self, key: usize, gen: u32, res: i32) {
        if self.conns.get(key).is_some_and(|c| c.gen == gen) {
            self.send_done(key, res);
        }
    }

    /// A SEND_ZC completion: the result (handled like a SENDMSG's), or the notification that
    /// the kernel no longer reads the frame (the driver has dropped it; nothing to do here).
    pub(super) fn on_send_zc(&mut self, key: usize, gen: u32, res: i32, notif: bool) {
        if !notif && self.conns.get(key).is_some_and(|c| c.gen == gen) {
            self.send_done(key, res);
        }
    }

    /// The connection's send finished with `res` bytes written (or an error).
    fn send_done(&mut self, key: usize, res: i32) {
        let now = self.now_ns;
        let conn = &mut self.conns[key];
        conn.send_inflight = false;
        Latencies::record_ns(
            &mut self.latency.send_complete,
            now.saturating_sub(conn.send_submit_ns),
        );
        if conn.life == Life::Closing {
            conn.out.clear();
            self.maybe_finish(key);
            return;
        }
        if res < 0 {
            tracing::debug!(shard = self.id, key, error = %std::io::Error::from_raw_os_error(-res), "send failed; closing");
            self.begin_close(key);
            return;
        }
        self.counters.bytes_out += res as u64;
        conn.out.advance(res as usize);
        if conn.pacing() {
            let (_, mut sink) = self.local_and_sink();
            sink.feed_paced(key);
        }
        let conn = &mut self.conns[key];
        if conn.out.sendable() {
            self.mark_dirty(key);
        } else if conn.life == Life::CloseAfterFlush && conn.out.is_empty() {
            self.begin_close(key);
        }
    }
}
