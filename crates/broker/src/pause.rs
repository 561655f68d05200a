//! Why a connection's input must wait: the one decision behind every pause, made from a
//! single reading of the mesh's congestion count, so the reason a connection was paused is
//! the reason recorded (a shard that paused a client for congestion must re-check before it
//! sleeps, or it sleeps a whole tick after congestion ends).

use crate::config::BrokerConfig;
use crate::conn::Conn;
use crate::session::Session;

/// What holds a connection's input back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    /// More than `max_pending_bytes` of replies are queued unread.
    Backlog,
    /// Some shard holds messages its peers' rings could not take.
    Congestion,
    /// `max_inflight_publishes` publishes wait for a remote owner's count.
    Publishes,
    /// A query every shard answers is still being answered.
    Query,
    /// This turn of the shard has spent its budget on client input
    /// (`limits::TURN_INPUT_BUDGET_NS`): the rest waits for the next turn, so one client's
    /// costly requests (publishes matched against many patterns) cannot hold the shard.
    TurnBudget,
    /// The connection's big (UN)SUBSCRIBE goes on in slices; its later commands wait.
    Continuation,
}

/// Whether a connection must not parse more input now, and why; `congested` is one reading
/// of the process-wide congestion count.
///
/// Every command's reply lands in the connection's own queue, so a client that pipelines
/// commands without reading its replies is paused once more than `max_pending_bytes` are
/// queued, subscribed or not, RESP or HTTP: its replies never grow without bound. (A
/// subscriber's deliveries meet the same cap in the slow-consumer policy.) RESP input also
/// waits while another shard's ring is congested, the client has too many publishes in
/// flight, or a PUBSUB query of the client's is still being answered by the other shards;
/// HTTP does not, so `/stats` stays readable while publishers are held back.
pub fn pause_reason(conn: &Conn, cfg: &BrokerConfig, congested: usize) -> Option<PauseReason> {
    // Past the cap, not at it: deliveries fill a `drop`-policy subscriber's queue up to
    // exactly the cap and no further, and such a client must still be able to UNSUBSCRIBE
    // or QUIT; only its own replies can take it past.
    if conn.out.queued_bytes() > cfg.max_pending_bytes {
        return Some(PauseReason::Backlog);
    }
    match conn.session {
        // Operators' requests are never held back by congestion; a pipelined POST /pub is
        // bounded by its reply slots.
        Session::Http(_) | Session::Sse(_) => {
            (conn.out.held() >= cfg.max_inflight_publishes).then_some(PauseReason::Publishes)
        }
        Session::Resp(_) | Session::Ws(_) => {
            if conn.query_inflight {
                Some(PauseReason::Query)
            } else if congested > 0 {
                Some(PauseReason::Congestion)
            } else if conn.out.held() >= cfg.max_inflight_publishes {
                Some(PauseReason::Publishes)
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Protocol;

    #[test]
    fn reasons_in_order_of_precedence() {
        let cfg = BrokerConfig {
            max_pending_bytes: 4,
            max_inflight_publishes: 2,
            ..BrokerConfig::default()
        };
        let mut resp = Conn::new(-1, 1, Protocol::Resp.new_session(1));
        assert_eq!(pause_reason(&resp, &cfg, 0), None);
        assert_eq!(pause_reason(&resp, &cfg, 1), Some(PauseReason::Congestion));
        resp.out.push_held(0);
        resp.out.push_held(1);
        assert_eq!(pause_reason(&resp, &cfg, 0), Some(PauseReason::Publishes));
        resp.query_inflight = true;
        assert_eq!(pause_reason(&resp, &cfg, 1), Some(PauseReason::Query));
        resp.out.reply(b"12345");
        assert_eq!(pause_reason(&resp, &cfg, 1), Some(PauseReason::Backlog));

        let mut http = Conn::new(-1, 1, Protocol::Http.new_session(2));
        assert_eq!(
            pause_reason(&http, &cfg, 1),
            None,
            "HTTP ignores congestion"
        );
        http.out.reply(b"1234");
        assert_eq!(
            pause_reason(&http, &cfg, 0),
            None,
            "at the cap is not past it"
        );
        http.out.reply(b"5");
        assert_eq!(pause_reason(&http, &cfg, 0), Some(PauseReason::Backlog));
    }
}
