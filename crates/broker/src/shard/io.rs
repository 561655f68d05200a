//! Completions and submissions: accept, receive, send (batched and zero-copy), close.

use crate::config::limits::{HTTP_RESERVE_CONNECTIONS, SEND_POOL_MAX};
use std::sync::atomic::Ordering;

use io_uring::{cqueue, opcode, squeue, types};

use super::{token, Shard};
use crate::config::limits::{MAX_IOV, PAUSED_INPUT_BYTES};
use crate::conn::{Conn, Life, Protocol};
use crate::pause::{pause_reason, PauseReason};
use crate::stats::Latencies;

impl Shard {
    /// Takes every available completion and dispatches it.
    pub(super) fn reap(&mut self) {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.clear();
        cqes.extend(
            self.ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        for &(ud, res, flags) in &cqes {
            let (kind, key, gen) = token::split(ud);
            match kind {
                token::ACCEPT => self.on_accept(key as usize, res, flags),
                token::RECV => self.on_recv(key as usize, gen, res, flags),
                token::SEND => self.on_send(key as usize, gen, res),
                token::SEND_ZC => self.on_send_zc(key as usize, gen, res, flags),
                token::CLOSE => self.on_closed(key as usize, gen),
                token::TIMER => self.on_timer(),
                token::WAKE_SENT if res < 0 => {
                    self.counters.wake_failures += 1;
                    self.mesh.rewake(key as usize);
                }
                _ => {}
            }
        }
        self.cqes = cqes;
    }

    pub(super) fn arm_accept(&mut self, idx: usize) {
        let l = &self.listeners[idx];
        let e = opcode::AcceptMulti::new(types::Fd(l.fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(token::make(token::ACCEPT, idx as u32, 0));
        self.push_sqe(e);
    }

    fn on_accept(&mut self, idx: usize, res: i32, flags: u32) {
        if self.stopping || idx >= self.listeners.len() {
            if res >= 0 {
                // SAFETY: a fresh fd we own and never registered anywhere.
                unsafe { libc::close(res) };
            }
            return;
        }
        if res >= 0 {
            self.new_conn(res, self.listeners[idx].proto);
        } else {
            self.counters.accept_errors += 1;
            if matches!(
                -res,
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
            ) {
                // The connection stays in the backlog, so accepting again at once fails
                // again at once: a busy loop. Retry at the next timer tick instead, when
                // closing clients may have freed descriptors.
                if !self.listeners[idx].backing_off {
                    tracing::warn!(
                        shard = self.id,
                        error = %std::io::Error::from_raw_os_error(-res),
                        retry_ms = self.cfg.stats_interval_ms,
                        "accept failed; pausing accepts (raise the open-files limit or lower max_connections)"
                    );
                }
                self.listeners[idx].backing_off = true;
                return;
            }
            tracing::debug!(shard = self.id, error = %std::io::Error::from_raw_os_error(-res), "accept failed");
        }
        if !cqueue::more(flags) {
            self.arm_accept(idx);
        }
    }

    fn new_conn(&mut self, fd: i32, proto: Protocol) {
        self.counters.accepted += 1;
        corecast_runtime::listener::set_nodelay(fd);
        if self.cfg.tcp_keepalive_s > 0 {
            corecast_runtime::listener::set_keepalive(fd, self.cfg.tcp_keepalive_s);
        }
        let gen = self.next_gen;
        self.next_gen = (self.next_gen + 1) & token::GEN_MASK;
        if self.next_gen == 0 {
            self.next_gen = 1;
        }
        let open = self.shared.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let client_id = (self.id as u64) << 48 | self.counters.accepted;
        let mut conn = Conn::new(fd, gen, proto.new_session(client_id));
        conn.counted = true;
        let key = self.conns.insert(conn);
        tracing::debug!(shard = self.id, key, fd, "accepted");
        // HTTP keeps a small reserve above the limit so operators can read /stats and
        // /healthz while clients fill every slot.
        let limit = if proto.uses_reserve() {
            self.cfg.max_connections + HTTP_RESERVE_CONNECTIONS
        } else {
            self.cfg.max_connections
        };
        if open > limit {
            self.counters.rejected_connections += 1;
            let conn = &mut self.conns[key];
            match proto {
                Protocol::Resp => conn.out.reply(b"-ERR max number of clients reached\r\n"),
                Protocol::Http => {
                    let mut v = Vec::new();
                    corecast_proto::http::response(
                        &mut v,
                        503,
                        "Service Unavailable",
                        "text/plain",
                        b"max number of clients reached\n",
                        false,
                    );
                    conn.out.reply(&v);
                }
            }
            conn.life = Life::CloseAfterFlush;
            self.mark_dirty(key);
            return;
        }
        self.arm_recv(key);
    }

    pub(super) fn arm_recv(&mut self, key: usize) {
        let group = self.bufring.as_ref().map_or(0, |b| b.group());
        let conn = &mut self.conns[key];
        debug_assert!(!conn.recv_armed);
        conn.recv_armed = true;
        let e = opcode::RecvMulti::new(types::Fd(conn.fd), group)
            .build()
            .user_data(token::make(token::RECV, key as u32, conn.gen));
        self.push_sqe(e);
    }

    fn on_recv(&mut self, key: usize, gen: u32, res: i32, flags: u32) {
        let bid = cqueue::buffer_select(flags);
        let alive = self.conns.get(key).is_some_and(|c| c.gen == gen);
        if !alive {
            if let (Some(bid), Some(br)) = (bid, self.bufring.as_mut()) {
                br.recycle(bid);
            }
            return;
        }
        if !cqueue::more(flags) {
            let c = &mut self.conns[key];
            c.recv_armed = false;
            c.recv_cancelling = false;
        }
        if res > 0 {
            self.counters.bytes_in += res as u64;
            if let Some(bid) = bid {
                let mut br = self.bufring.take().expect("buffer ring present");
                self.on_data(key, br.get(bid, res as usize));
                br.recycle(bid);
                self.bufring = Some(br);
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
            } else {
                tracing::debug!(shard = self.id, key, "peer closed");
                self.begin_close(key);
            }
        } else if res == -libc::ENOBUFS {
            self.counters.recv_no_buffers += 1;
        } else if res != -libc::ECANCELED {
            tracing::debug!(shard = self.id, key, error = %std::io::Error::from_raw_os_error(-res), "receive failed; closing");
            self.counters.receive_errors += 1;
            self.begin_close(key);
        }
        let Some(c) = self.conns.get(key) else { return };
        if c.life == Life::Closing {
            self.maybe_finish(key);
        } else {
            // Receive again unless one is armed, the connection is ending, the client has
            // closed its side, or paused input has reached the point where TCP pushes back.
            let held_back = c.stalled && c.inbuf.len() >= PAUSED_INPUT_BYTES;
            if !c.recv_armed && c.life == Life::Open && !c.peer_eof && !held_back {
                self.arm_recv(key);
            }
        }
    }

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
        if conn.stalled {
            max +=
                usize::from(self.cfg.recv_buffers) * self.cfg.recv_buffer_size + PAUSED_INPUT_BYTES;
        }
        if conn.inbuf.len() > max {
            self.counters.input_overflows += 1;
            self.begin_close(key);
            return;
        }
        if conn.stalled
            && conn.inbuf.len() >= PAUSED_INPUT_BYTES
            && conn.recv_armed
            && !conn.recv_cancelling
        {
            conn.recv_cancelling = true;
            let target = token::make(token::RECV, key as u32, conn.gen);
            let e = opcode::AsyncCancel::new(target)
                .build()
                .user_data(token::make(token::CANCEL, key as u32, conn.gen));
            self.push_sqe(e);
        }
    }

    /// Parses what `inbuf` holds.
    pub(super) fn process_inbuf(&mut self, key: usize) {
        let buf = std::mem::take(&mut self.conns[key].inbuf);
        let used = self.process(key, &buf);
        let mut buf = buf;
        buf.drain(..used);
        if let Some(conn) = self.conns.get_mut(key) {
            if conn.life == Life::Open {
                if buf.is_empty() && buf.capacity() > PAUSED_INPUT_BYTES {
                    buf = Vec::new();
                }
                conn.inbuf = buf;
            }
        }
    }

    fn process(&mut self, key: usize, data: &[u8]) -> usize {
        match self.conns[key].session.protocol() {
            Protocol::Resp => self.resp_process(key, data),
            Protocol::Http => self.http_process(key, data),
        }
    }

    /// Marks a connection's input as paused until `resume_stalled` finds its reason gone,
    /// and records a congestion pause so the shard re-checks congestion before it sleeps.
    pub(super) fn stall(&mut self, key: usize, reason: PauseReason) {
        self.congestion_paused |= reason == PauseReason::Congestion;
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
        let congested = self.shared.congested.load(Ordering::Relaxed);
        pause_reason(&self.conns[key], &self.cfg, congested)
    }

    pub(super) fn resume_stalled(&mut self) {
        self.congestion_paused = false;
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
            } else if !c.recv_armed {
                self.arm_recv(key);
            }
        }
    }

    pub(super) fn flush_sends(&mut self) {
        if self.dirty.is_empty() {
            return;
        }
        // A fresh reading: publishes parsed during this turn are stamped after its start.
        self.now_ns = corecast_runtime::clock::now_ns();
        let dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            let key = key as usize;
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            conn.dirty = false;
            if conn.send_inflight || conn.life == Life::Closing {
                continue;
            }
            self.submit_send(key);
        }
        let mut dirty = dirty;
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    fn submit_send(&mut self, key: usize) {
        let zc = self.cfg.zerocopy_threshold;
        let conn = &mut self.conns[key];
        if zc > 0 {
            if let Some((frame, off)) = conn.out.front_large(zc) {
                let len = frame.len() - off;
                let e = opcode::SendZc::new(types::Fd(conn.fd), frame[off..].as_ptr(), len as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
                    .user_data(token::make(token::SEND_ZC, key as u32, conn.gen));
                conn.zc_frames
                    .get_or_insert_with(Default::default)
                    .push_back(frame);
                conn.send_inflight = true;
                conn.send_submit_ns = self.now_ns;
                conn.send_bytes = len;
                self.counters.zerocopy_sends += 1;
                self.push_sqe(e);
                return;
            }
        }
        let mut sb = self.send_pool.pop().unwrap_or_default();
        let batch = conn
            .out
            .gather(&mut sb.iov, MAX_IOV, self.cfg.max_send_batch_bytes);
        if batch.iovecs == 0 {
            self.send_pool.push(sb);
            if conn.life == Life::CloseAfterFlush && conn.out.is_empty() {
                self.begin_close(key);
            }
            return;
        }
        sb.msg.msg_iov = sb.iov.as_mut_ptr();
        sb.msg.msg_iovlen = batch.iovecs as _;
        let e = opcode::SendMsg::new(types::Fd(conn.fd), &sb.msg as *const libc::msghdr)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
            .user_data(token::make(token::SEND, key as u32, conn.gen));
        conn.send_inflight = true;
        conn.send_submit_ns = self.now_ns;
        conn.send_bytes = batch.bytes;
        conn.send_buf = Some(sb);
        self.counters.send_batches += 1;
        if batch.oldest_ts_ns != 0 {
            Latencies::record_ns(
                &mut self.latency.publish_to_send,
                self.now_ns.saturating_sub(batch.oldest_ts_ns),
            );
        }
        self.push_sqe(e);
    }

    fn release_send_buf(&mut self, key: usize) {
        if let Some(sb) = self.conns[key].send_buf.take() {
            // Enough for a thousand subscribers sending at once without allocating; past a
            // burst larger than that, the extra buffers (up to 16 KiB of iovecs each) go.
            if self.send_pool.len() < SEND_POOL_MAX {
                self.send_pool.push(sb);
            }
        }
    }

    fn on_send(&mut self, key: usize, gen: u32, res: i32) {
        if self.conns.get(key).is_none_or(|c| c.gen != gen) {
            return;
        }
        self.release_send_buf(key);
        self.send_done(key, res);
    }

    fn on_send_zc(&mut self, key: usize, gen: u32, res: i32, flags: u32) {
        let Some(conn) = self.conns.get_mut(key).filter(|c| c.gen == gen) else {
            return;
        };
        if cqueue::notif(flags) {
            if let Some(q) = conn.zc_frames.as_mut() {
                q.pop_front();
            }
            if conn.life == Life::Closing {
                self.maybe_finish(key);
            }
            return;
        }
        if !cqueue::more(flags) {
            if let Some(q) = conn.zc_frames.as_mut() {
                q.pop_back();
            }
        }
        self.send_done(key, res);
    }

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
        if conn.out.sendable() {
            self.mark_dirty(key);
        } else if conn.life == Life::CloseAfterFlush && conn.out.is_empty() {
            self.begin_close(key);
        }
    }

    pub(super) fn close_queued(&mut self) {
        while let Some(key) = self.to_close.pop() {
            if self.conns.contains(key as usize) {
                self.begin_close(key as usize);
            }
        }
    }

    /// Stops a connection: drops its subscriptions, shuts the socket down so in-flight
    /// operations complete, and closes the fd once none is left.
    pub(super) fn begin_close(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.life == Life::Closing {
            return;
        }
        conn.life = Life::Closing;
        conn.stalled = false;
        conn.inbuf = Vec::new();
        if !conn.send_inflight {
            conn.out.clear();
        }
        if conn.counted {
            conn.counted = false;
            self.shared.connections.fetch_sub(1, Ordering::Relaxed);
        }
        let fd = conn.fd;
        let quiescent = conn.quiescent();
        self.drop_subscriptions(key);
        if quiescent {
            self.maybe_finish(key);
        } else {
            // shutdown(2) directly, not IORING_OP_SHUTDOWN: the ring runs that op from a
            // worker and resolves the fd number only then, by which time this fd may have
            // been closed and reused by a new connection. The call never blocks.
            // SAFETY: `fd` is this connection's open socket; it is closed only later, by
            // maybe_finish, once no operation refers to it.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
    }

    pub(super) fn maybe_finish(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.life != Life::Closing || !conn.quiescent() || conn.fd < 0 {
            return;
        }
        let e = opcode::Close::new(types::Fd(conn.fd))
            .build()
            .user_data(token::make(token::CLOSE, key as u32, conn.gen));
        conn.fd = -1;
        self.push_sqe(e);
    }

    fn on_closed(&mut self, key: usize, gen: u32) {
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.gen == gen && c.fd < 0)
        {
            self.conns.remove(key);
        }
    }

    pub(super) fn send_wakes(&mut self) {
        // `targets` is a scratch list, free outside fan-out.
        let mut peers = std::mem::take(&mut self.targets);
        peers.clear();
        self.mesh.wakes(|peer| peers.push(peer));
        for &peer in &peers {
            let fd = self.mesh.endpoint().ring_fd(peer);
            if fd < 0 {
                continue;
            }
            let e =
                opcode::MsgRingData::new(types::Fd(fd), 0, token::make(token::WAKE, 0, 0), None)
                    .build()
                    // Success is silent; a failure comes back naming the peer, whose wake-up is then
                    // retried (its sleep flag was already swapped off: without the retry it would
                    // sleep until its timer).
                    .flags(squeue::Flags::SKIP_SUCCESS)
                    .user_data(token::make(token::WAKE_SENT, peer as u32, 0));
            self.push_sqe(e);
        }
        peers.clear();
        self.targets = peers;
    }
}
