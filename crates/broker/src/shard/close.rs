//! Closing connections: unregister the subscriptions, shut the socket down so in-flight
//! operations complete, and close the fd once none refers to it.

use std::sync::atomic::Ordering;

use corecast_runtime::listener::shutdown_socket;

use super::{token, Shard};
use crate::config::limits::CLOSES_PER_TURN;
use crate::conn::Life;
use crate::tables::ConnRef;

impl Shard {
    /// Closes the connections queued for closing during the turn.
    pub(super) fn close_queued(&mut self) {
        // At most CLOSES_PER_TURN a turn (the loop does not sleep while some wait): each
        // close is kernel work (and, on loopback, the peer's TCP work too), and 15,000 peers
        // leaving at once made one turn of a quarter of a second that every other client
        // waited behind.
        // Oldest first, so steady churn cannot leave an early entry waiting.
        for _ in 0..CLOSES_PER_TURN {
            let Some(who) = self.to_close.pop_front() else {
                break;
            };
            // The connection may have closed by another path meanwhile and its slot gone to
            // a new one (which may itself be closing after its answer): only the same
            // generation is closed here.
            if self
                .conns
                .get(who.key as usize)
                .is_some_and(|c| c.gen == who.gen && c.life != Life::Open)
            {
                self.begin_close(who.key as usize);
            }
        }
    }

    /// A peer closed or reset its connection: the close itself waits its turn in
    /// `close_queued`. Nothing more is delivered to it meanwhile.
    pub(super) fn queue_close(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.life == Life::Open {
            conn.life = Life::CloseAfterFlush;
            // A send in flight completes over its queue, which must still be there.
            if !conn.send_inflight {
                conn.out.clear();
            }
        }
        let who = ConnRef {
            key: key as u32,
            gen: conn.gen,
        };
        self.to_close.push_back(who);
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
        conn.inbuf.clear();
        conn.rare = None;
        self.unparsed_bytes -= (conn.input_charged as usize).min(self.unparsed_bytes);
        conn.input_charged = 0;
        conn.out.clear();
        if conn.counted {
            conn.counted = false;
            self.shared.connections.fetch_sub(1, Ordering::Relaxed);
        }
        let fd = conn.fd;
        let quiescent = conn.quiescent();
        self.release_subscriptions(key);
        if quiescent {
            self.maybe_finish(key);
        } else {
            // shutdown(2) directly, not IORING_OP_SHUTDOWN: the ring runs that op from a
            // worker and resolves the fd number only then, by which time this fd may have
            // been closed and reused by a new connection. The call never blocks.
            // `fd` is this connection's open socket; it is closed only later, by
            // maybe_finish, once no operation refers to it.
            let _ = shutdown_socket(fd);
        }
    }

    /// Closes the fd of a closing connection once no operation refers to it.
    pub(super) fn maybe_finish(&mut self, key: usize) {
        let conn = &mut self.conns[key];
        if conn.life != Life::Closing || !conn.quiescent() || conn.fd < 0 {
            return;
        }
        let (fd, tag) = (conn.fd, token::make(token::CLOSE, key as u32, conn.gen));
        conn.fd = -1;
        self.io.close(fd, tag);
    }

    /// The fd is closed: the slab slot is free for a new connection.
    pub(super) fn on_closed(&mut self, key: usize, gen: u32) {
        if self
            .conns
            .get(key)
            .is_some_and(|c| c.gen == gen && c.fd < 0)
        {
            self.conns.remove(key);
        }
    }
}
