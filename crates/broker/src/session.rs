//! Per-connection protocol state: one [`Session`] value per connection, a variant per
//! front-end. `Conn` keeps only what the send path and the life cycle need; everything a
//! protocol remembers about its client lives here, so a new front-end adds a variant (and
//! its module under `shard/`) without touching the connection or the send path.

use bytes::Bytes;
use corecast_proto::resp::Resume;

pub use crate::subset::SubSet;

/// Which front-end a listener (and so each of its connections) speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The Redis protocol (RESP2, RESP3 after `HELLO 3`).
    Resp,
    /// HTTP/1.1 (stats now; WebSocket and SSE next).
    Http,
}

impl Protocol {
    /// The name used in config files, flags and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Resp => "resp",
            Self::Http => "http",
        }
    }

    /// Parses [`Protocol::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Resp, Self::Http]
            .into_iter()
            .find(|p| p.name() == name)
    }

    /// Whether connections of this protocol may exceed `max_connections` by a small reserve:
    /// operators must be able to read `/stats` and `/healthz` while clients fill every slot.
    pub fn uses_reserve(self) -> bool {
        self == Self::Http
    }

    /// A fresh session for a connection accepted on a listener of this protocol.
    pub fn new_session(self, client_id: u64) -> Session {
        match self {
            Self::Resp => Session::Resp(Box::new(RespSession {
                client_id,
                ..RespSession::default()
            })),
            Self::Http => Session::Http,
        }
    }
}

/// The channels, patterns and shard channels one connection subscribes to. Every front-end
/// that subscribes keeps one; closing a connection takes it to unregister everything.
#[derive(Debug, Default)]
pub struct Subscriptions {
    /// Classic channels.
    pub channels: SubSet,
    /// Patterns.
    pub patterns: SubSet,
    /// Sharded channels.
    pub schannels: SubSet,
}

impl Subscriptions {
    /// Channels + patterns: the count Redis reports in (un)subscribe replies.
    pub fn classic_count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Everything held (checked against `max_subscriptions`).
    pub fn total(&self) -> usize {
        self.classic_count() + self.schannels.len()
    }
}

/// What the Redis front-end remembers about a client. Boxed in [`Session`]: most of a
/// subscriber's own memory, absent for HTTP.
#[derive(Debug, Default)]
pub struct RespSession {
    /// Subscriptions.
    pub subs: Subscriptions,
    /// CLIENT SETNAME.
    pub name: Option<Bytes>,
    /// How far the incomplete command at the front of the connection's `inbuf` has been
    /// framed, so each receive frames only what it added (default whenever `inbuf` holds no
    /// partial command).
    pub resume: Resume,
    /// CLIENT ID / HELLO id: unique for the process's life (shard in the top 16 bits).
    pub client_id: u64,
    /// A PUBSUB query to every shard is unanswered (input waits for it).
    pub query_inflight: bool,
}

impl RespSession {
    /// Whether the connection is in subscribed mode (RESP2 then allows only a few commands).
    pub fn subscribed(&self) -> bool {
        self.subs.total() > 0
    }
}

/// One connection's protocol state.
#[derive(Debug)]
pub enum Session {
    /// A Redis client.
    Resp(Box<RespSession>),
    /// An HTTP client (no state between requests yet).
    Http,
}

impl Session {
    /// The protocol this session speaks.
    pub fn protocol(&self) -> Protocol {
        match self {
            Self::Resp(_) => Protocol::Resp,
            Self::Http => Protocol::Http,
        }
    }

    /// Takes every subscription (the connection closes or resets), leaving none.
    pub fn take_subscriptions(&mut self) -> Subscriptions {
        match self {
            Self::Resp(s) => std::mem::take(&mut s.subs),
            Self::Http => Subscriptions::default(),
        }
    }

    /// Whether a reply to a query that every shard answers is still outstanding; such a
    /// client's input waits so it cannot queue a thousand of them.
    pub fn query_inflight(&self) -> bool {
        match self {
            Self::Resp(s) => s.query_inflight,
            Self::Http => false,
        }
    }

    /// Records that a query is (or no longer is) outstanding.
    pub fn set_query_inflight(&mut self, on: bool) {
        if let Self::Resp(s) = self {
            s.query_inflight = on;
        }
    }
}
