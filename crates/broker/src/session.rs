//! Per-connection protocol state: one [`Session`] value per connection, a variant per
//! front-end. `Conn` keeps only what the send path and the life cycle need; everything a
//! protocol remembers about its client lives here, so a new front-end adds a variant (and
//! its module under `shard/`) without touching the connection or the send path.

use bytes::Bytes;

use crate::msg::{Name, Position};
use corecast_proto::http::BodyDecoder;
use corecast_proto::resp::Resume;
use corecast_proto::ws;

pub use crate::subset::SubSet;

// A RESP session fits a 64-byte malloc chunk (56 bytes plus glibc's 8-byte header).
const _: () = assert!(std::mem::size_of::<RespSession>() <= 56);

/// Which front-end a listener (and so each of its connections) speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The Redis protocol (RESP2, RESP3 after `HELLO 3`).
    Resp,
    /// HTTP/1.1: publish, stats, and the upgrades to WebSocket and SSE.
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
            Self::Http => Session::Http(Box::default()),
        }
    }
}

/// What a subscription names: a channel, a pattern, or a sharded channel (Redis keeps the
/// three apart; other front-ends use channels and, later, patterns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubKind {
    /// A channel (`SUBSCRIBE`).
    Channel,
    /// A glob pattern (`PSUBSCRIBE`).
    Pattern,
    /// A sharded channel (`SSUBSCRIBE`).
    ShardChannel,
}

/// The channels, patterns and shard channels one connection subscribes to. Every front-end
/// that subscribes keeps one; closing a connection takes it to unregister everything.
/// Patterns and shard channels are rare, so their sets live behind one box allocated on
/// first use: an idle subscriber of one channel holds its name inline and nothing else.
#[derive(Debug, Default)]
pub struct Subscriptions {
    channels: SubSet,
    /// Patterns, then shard channels.
    rare: Option<Box<[SubSet; 2]>>,
}

impl Subscriptions {
    /// Channel subscriptions alone (the front-ends without patterns).
    pub fn from_channels(channels: SubSet) -> Self {
        Self {
            channels,
            rare: None,
        }
    }

    /// The set of one kind.
    pub fn set(&self, kind: SubKind) -> &SubSet {
        match (kind, &self.rare) {
            (SubKind::Channel, _) => &self.channels,
            (_, None) => &SubSet::EMPTY,
            (SubKind::Pattern, Some(r)) => &r[0],
            (SubKind::ShardChannel, Some(r)) => &r[1],
        }
    }

    fn set_mut(&mut self, kind: SubKind) -> &mut SubSet {
        let rare = match kind {
            SubKind::Channel => return &mut self.channels,
            SubKind::Pattern => 0,
            SubKind::ShardChannel => 1,
        };
        &mut self.rare.get_or_insert_with(Default::default)[rare]
    }

    /// Adds a name; false if it was already there.
    pub fn insert(&mut self, kind: SubKind, name: Name) -> bool {
        self.set_mut(kind).insert(name)
    }

    /// Removes a name; false if it was not there.
    pub fn remove(&mut self, kind: SubKind, name: &[u8]) -> bool {
        if kind != SubKind::Channel && self.rare.is_none() {
            return false;
        }
        let removed = self.set_mut(kind).remove(name);
        if self
            .rare
            .as_ref()
            .is_some_and(|r| r.iter().all(SubSet::is_empty))
        {
            self.rare = None;
        }
        removed
    }

    /// Channels + patterns: the count Redis reports in (un)subscribe replies.
    pub fn classic_count(&self) -> usize {
        self.channels.len() + self.set(SubKind::Pattern).len()
    }

    /// The count Redis reports after a (un)subscribe of `kind`: shard channels are counted
    /// apart from the others.
    pub fn count_for(&self, kind: SubKind) -> usize {
        match kind {
            SubKind::ShardChannel => self.set(kind).len(),
            _ => self.classic_count(),
        }
    }

    /// Everything held (checked against `max_subscriptions`).
    pub fn total(&self) -> usize {
        self.classic_count() + self.set(SubKind::ShardChannel).len()
    }
}

/// What the Redis front-end remembers about a client. Boxed in [`Session`]: most of a
/// subscriber's own memory, absent for HTTP.
#[derive(Debug, Default)]
pub struct RespSession {
    /// Subscriptions.
    pub subs: Subscriptions,
    /// CLIENT SETNAME (boxed: most clients never set one).
    pub name: Option<Box<Bytes>>,
    /// How far the incomplete command at the front of the connection's `inbuf` has been
    /// framed, so each receive frames only what it added (default whenever `inbuf` holds no
    /// partial command).
    pub resume: Resume,
    /// CLIENT ID / HELLO id: unique for the process's life (shard in the top 16 bits).
    pub client_id: u64,
}

impl RespSession {
    /// Whether the connection is in subscribed mode (RESP2 then allows only a few commands).
    pub fn subscribed(&self) -> bool {
        self.subs.total() > 0
    }
}

/// The rest of a (P|S)(UN)SUBSCRIBE with more names than one turn handles.
#[derive(Debug)]
pub struct PendingSubs {
    /// Which kind of name.
    pub kind: SubKind,
    /// SUBSCRIBE (or UNSUBSCRIBE).
    pub subscribe: bool,
    /// The names still to do, in the command's order.
    pub names: PendingNames,
}

/// Where a pending (UN)SUBSCRIBE's names are.
#[derive(Debug)]
pub enum PendingNames {
    /// In the command itself (a copy of its arguments, one buffer: no allocation per name
    /// until its slice runs), from argument `next` on.
    Args {
        /// The command's arguments.
        args: corecast_proto::resp::Args,
        /// The next argument to do.
        next: usize,
    },
    /// A list (UNSUBSCRIBE without arguments: the connection's own names).
    Names(std::vec::IntoIter<Name>),
}

impl PendingNames {
    /// Names left.
    pub fn len(&self) -> usize {
        match self {
            Self::Args { args, next } => args.len().saturating_sub(*next),
            Self::Names(n) => n.len(),
        }
    }

    /// Whether none is left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An HTTP/1.1 connection between requests, or inside one whose body is arriving.
#[derive(Debug, Default)]
pub struct HttpSession {
    /// When the request head being received must be complete (the connection closes then):
    /// set at accept and after each response, so a slowloris client cannot hold it.
    pub head_deadline_ns: u64,
    /// A `POST /pub` whose body is still arriving.
    pub body: Option<Box<PendingBody>>,
}

/// A publish request whose body has not fully arrived.
#[derive(Debug)]
pub struct PendingBody {
    /// Decodes `Content-Length` or chunked framing, bounded by `http.max_body_bytes`.
    pub decoder: BodyDecoder,
    /// The body so far.
    pub body: Vec<u8>,
    /// The channel to publish on.
    pub channel: Name,
    /// The body is declared JSON (published as is, after validation) rather than text (sent
    /// to JSON subscribers as a string).
    pub json: bool,
    /// Keep the connection open after the answer.
    pub keep_alive: bool,
}

/// A WebSocket client speaking the native JSON protocol.
#[derive(Debug)]
pub struct WsSession {
    /// Frame decoder (fragments, UTF-8 state, the message being assembled).
    pub decoder: ws::Decoder,
    /// Channels subscribed or being joined.
    pub subs: SubSet,
    /// Joins waiting for another shard: (reply slot, channel). Usually empty.
    pub joining: Vec<(u32, Name)>,
    /// When to send the next ping (or close, if the last one is unanswered).
    pub next_ping_ns: u64,
    /// A ping is out and no pong has come back.
    pub awaiting_pong: bool,
    /// A close frame has been sent: input is ignored until the client's close or EOF.
    pub close_sent: bool,
    /// The connection came in on `/ws/echo` (option `ws_echo`): each message is sent back
    /// as it came, instead of being read as a request of the native protocol.
    pub echo: bool,
}

/// One channel of an SSE stream, in the order of the request's `ch` parameters.
#[derive(Debug)]
pub struct SseChannel {
    /// The channel.
    pub name: Name,
    /// The stream's position in it: from `Last-Event-ID` until the join answers, then the
    /// last message sent.
    pub pos: Option<Position>,
}

/// A Server-Sent Events stream.
#[derive(Debug)]
pub struct SseSession {
    /// The channels, in request order (event ids list positions in this order).
    pub channels: Box<[SseChannel]>,
    /// Joins not answered yet; the first id-only event goes out when this reaches 0.
    pub joining: u16,
    /// When the next heartbeat comment is due (pushed back by every write).
    pub next_heartbeat_ns: u64,
    /// The `retry:` advice last sent to this stream.
    pub retry_ms: u64,
}

impl SseSession {
    /// The index of `channel` in this stream.
    pub fn index_of(&self, channel: &[u8]) -> Option<usize> {
        self.channels.iter().position(|c| *c.name == *channel)
    }
}

/// One connection's protocol state.
#[derive(Debug)]
pub enum Session {
    /// A Redis client.
    Resp(Box<RespSession>),
    /// An HTTP client between upgrades.
    Http(Box<HttpSession>),
    /// A WebSocket client (upgraded from HTTP).
    Ws(Box<WsSession>),
    /// An SSE stream (an HTTP response that never ends).
    Sse(Box<SseSession>),
}

impl Session {
    /// The protocol of the listener this session came from.
    pub fn protocol(&self) -> Protocol {
        match self {
            Self::Resp(_) => Protocol::Resp,
            Self::Http(_) | Self::Ws(_) | Self::Sse(_) => Protocol::Http,
        }
    }

    /// How many subscriptions the session holds.
    pub fn subscription_count(&self) -> usize {
        match self {
            Self::Resp(s) => s.subs.total(),
            Self::Http(_) => 0,
            Self::Ws(s) => s.subs.len(),
            Self::Sse(s) => s.channels.len(),
        }
    }

    /// Takes every subscription (the connection closes or resets), leaving none.
    pub fn take_subscriptions(&mut self) -> Subscriptions {
        match self {
            Self::Resp(s) => std::mem::take(&mut s.subs),
            Self::Http(_) => Subscriptions::default(),
            Self::Ws(s) => Subscriptions::from_channels(std::mem::take(&mut s.subs)),
            Self::Sse(s) => {
                let mut set = SubSet::default();
                for c in s.channels.iter() {
                    set.insert(c.name.clone());
                }
                s.channels = Box::new([]);
                Subscriptions::from_channels(set)
            }
        }
    }
}
