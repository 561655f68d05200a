//! Accepting connections: a multishot accept per listener, admission against
//! `max_connections` (with a small reserve for HTTP operations access), and the session a
//! listener's protocol starts.

use std::sync::atomic::Ordering;

use corecast_runtime::listener::close_fd;

use super::{token, Shard};
use crate::config::limits::HTTP_RESERVE_CONNECTIONS;
use crate::conn::{Conn, Life, Protocol};

impl Shard {
    /// Arms the multishot accept of listener `idx`.
    pub(super) fn arm_accept(&mut self, idx: usize) {
        let fd = self.listeners[idx].fd;
        self.io
            .accept_multi(fd, token::make(token::ACCEPT, idx as u32, 0));
    }

    /// A connection arrived on listener `idx` (or accepting failed).
    pub(super) fn on_accept(&mut self, idx: usize, res: i32, more: bool) {
        if self.stopping || idx >= self.listeners.len() {
            if res >= 0 {
                // A fresh fd nobody else knows.
                close_fd(res);
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
        if !more {
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
        if let crate::session::Session::Http(h) = &mut conn.session {
            h.head_deadline_ns = self.now_ns + self.cfg.http.head_timeout_ms * 1_000_000;
        }
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
}
