//! What crosses the shard mesh. A delivery is the message itself (channel, sequence number,
//! payload, timestamp), never one front-end's encoding of it: each shard builds the frames
//! its own subscribers' wire formats need (see `delivery.rs`). Payloads are `Bytes` handles
//! and a delivery is one `Arc`, so a fan-out to many shards moves reference counts, never
//! bytes.

use std::sync::Arc;

use bytes::Bytes;

/// A channel or pattern name: one allocation (refcounts and bytes together) shared by
/// every table, set and message that holds the name, at 16 bytes a handle. `Bytes` was 32,
/// and its first clone allocated a second, shared header.
pub type Name = Arc<[u8]>;

/// The two channel namespaces of the Redis protocol: PUBLISH/SUBSCRIBE and the sharded
/// SPUBLISH/SSUBSCRIBE, which Redis keeps apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ns {
    /// Classic pub/sub channels.
    Plain = 0,
    /// Sharded pub/sub channels.
    Shard = 1,
}

/// A published message, as every shard sees it.
#[derive(Debug, Clone)]
pub struct Message {
    /// Namespace.
    pub ns: Ns,
    /// Channel name (the owner's copy, shared with its channel table).
    pub channel: Name,
    /// Position in the channel's order, assigned by the owner (1 for the first message of
    /// the channel's epoch; 0 when the owner keeps no state for the channel: no subscribers
    /// and no history, only patterns matched).
    pub seq: u64,
    /// The channel's epoch when it was published (see [`Position`]).
    pub epoch: u64,
    /// Payload as published.
    pub payload: Bytes,
    /// When the publisher's shard parsed it (CLOCK_MONOTONIC ns), for publish-to-send latency.
    pub ts_ns: u64,
    /// The payload is one valid JSON value (checked once, where it was published), so JSON
    /// front-ends splice it as is; otherwise they send it as a JSON string.
    pub json: bool,
}

impl Message {
    /// The owned form of `view`, with `channel` and `payload` as the caller holds them
    /// (shared with a table, or copied to be node-local).
    pub fn from_view(view: &MessageView<'_>, channel: Name, payload: Bytes) -> Message {
        Message {
            ns: view.ns,
            channel,
            seq: view.seq,
            epoch: view.epoch,
            payload,
            ts_ns: view.ts_ns,
            json: view.json,
        }
    }

    /// The borrowed form frame builders take.
    pub fn view(&self) -> MessageView<'_> {
        MessageView {
            ns: self.ns,
            channel: &self.channel,
            seq: self.seq,
            epoch: self.epoch,
            payload: &self.payload,
            ts_ns: self.ts_ns,
            json: self.json,
        }
    }
}

/// A message borrowed from wherever it lives: the owner delivers to its own subscribers
/// straight from the publisher's input, without the copy and the `Arc` a remote shard needs.
#[derive(Debug, Clone, Copy)]
pub struct MessageView<'a> {
    /// Namespace.
    pub ns: Ns,
    /// Channel name.
    pub channel: &'a [u8],
    /// See [`Message::seq`].
    pub seq: u64,
    /// See [`Message::epoch`].
    pub epoch: u64,
    /// Payload.
    pub payload: &'a [u8],
    /// See [`Message::ts_ns`].
    pub ts_ns: u64,
    /// See [`Message::json`].
    pub json: bool,
}

/// Where a channel stands: its epoch and the sequence number of its last message. The epoch
/// is drawn at random whenever the owner starts keeping state for a channel (first
/// subscriber or, with history on, first publish), so a position from before the state was
/// lost (a restart, the channel forgotten after its history expired) can never be mistaken
/// for one of the present: resuming from it yields a reset notice, not the wrong messages.
pub use corecast_proto::native::Position;

/// What a subscriber that asked to resume receives before the live messages.
#[derive(Debug, Clone)]
pub enum Replay {
    /// Nothing: no resume was asked, or nothing was missed.
    Nothing,
    /// The missed messages, oldest first. Shared: a reconnect storm of clients resuming
    /// from the same position gets one list, built by one history walk.
    Messages(Arc<[Arc<Message>]>),
    /// The gap cannot be replayed whole (another epoch, or history no longer reaches back):
    /// the client is told, with the first sequence number history still holds.
    Reset {
        /// First sequence number still in history (the current seq + 1 when it is empty).
        first: u64,
    },
}

/// The owner's answer to a [`ShardMsg::Join`].
#[derive(Debug, Clone)]
pub struct Joined {
    /// The channel's position when the subscription became live: every later delivery has
    /// a greater seq.
    pub pos: Position,
    /// What to send before live messages.
    pub replay: Replay,
}

/// A question every shard answers from the channels it owns (PUBSUB introspection).
#[derive(Debug)]
pub enum Query {
    /// Subscriber counts of these channels.
    NumSub(Ns, Vec<Name>),
    /// Active channels, optionally matching a glob pattern.
    Channels(Ns, Option<Name>),
}

/// An answer to a request that carried a reply slot.
#[derive(Debug)]
pub enum ReplyValue {
    /// The request took effect (interest registered).
    Ack,
    /// A publish was sequenced: subscribers reached and the message's position.
    Published {
        /// Subscribers (and pattern subscribers) the message reached.
        receivers: i64,
        /// The message's position (seq 0 when the owner keeps no state for the channel).
        pos: Position,
    },
    /// A join took effect (see [`ShardMsg::Join`]).
    Joined(Box<Joined>),
    /// Per-channel subscriber counts, in the order asked.
    Counts(Vec<i64>),
    /// Channel names.
    Names(Vec<Name>),
}

/// One message on a ring between two shards.
#[derive(Debug)]
pub enum ShardMsg {
    /// A client publish for a channel the receiver owns. Flat rather than a [`Message`]: the
    /// owner assigns the sequence number, and most publishes reach no other shard, so the
    /// `Arc` is made only when a delivery needs it.
    Publish {
        /// Namespace.
        ns: Ns,
        /// Channel name.
        channel: Name,
        /// Payload as published.
        payload: Bytes,
        /// When the publisher's shard parsed it (CLOCK_MONOTONIC ns).
        ts_ns: u64,
        /// See [`Message::json`].
        json: bool,
        /// Pending slot on the sender to answer with the subscriber count.
        reply: Option<u32>,
    },
    /// A message for the receiver's local subscribers of its channel.
    Deliver {
        /// The message, shared by every shard it goes to.
        msg: Arc<Message>,
    },
    /// A message the receiver, the relay of its NUMA node for the owner, delivers to its own
    /// subscribers (if any) and forwards to `forward`, shards of its node (`relay.rs`).
    Relay {
        /// The message (the relay makes a node-local copy before forwarding).
        msg: Arc<Message>,
        /// The pattern, for a pattern delivery.
        pattern: Option<Name>,
        /// The other interested shards of the relay's node.
        forward: Box<[u16]>,
    },
    /// A message for another shard of the receiver's node, which the owner routes through
    /// the receiver so that it stays in order with the deliveries the receiver relays (the
    /// answer to a `Join`).
    Forward {
        /// The shard to pass it to.
        to: u16,
        /// The message.
        msg: Box<ShardMsg>,
    },
    /// A message for the receiver's local subscribers of `pattern`.
    DeliverPattern {
        /// The pattern the subscribers used.
        pattern: Name,
        /// The message.
        msg: Arc<Message>,
    },
    /// The sender's local subscriber count for a channel the receiver owns changed.
    SubDelta {
        /// Namespace.
        ns: Ns,
        /// Channel name.
        channel: Name,
        /// +1 or -1.
        delta: i32,
        /// Pending slot to acknowledge once the owner has applied it.
        reply: Option<u32>,
    },
    /// A subscriber of the sender (WebSocket, SSE) joins a channel the receiver owns: +1 to
    /// the sender's count, as [`ShardMsg::SubDelta`], answered with the channel's position
    /// and, when `since` is given, the messages after it. The sender adds the subscriber to
    /// its own table only when the answer arrives: deliveries the owner sends later follow
    /// the answer on the same ring, so replay then live has no gap and no duplicate.
    Join {
        /// Namespace.
        ns: Ns,
        /// Channel name.
        channel: Name,
        /// Resume after this position.
        since: Option<Position>,
        /// Pending slot on the sender.
        reply: u32,
    },
    /// The sender's local subscriber count for a pattern changed (patterns live everywhere).
    PatDelta {
        /// The glob pattern.
        pattern: Name,
        /// +1 or -1.
        delta: i32,
        /// Pending slot to acknowledge.
        reply: Option<u32>,
    },
    /// A PUBSUB question.
    Query {
        /// What is asked.
        query: Arc<Query>,
        /// Pending slot on the sender.
        reply: u32,
    },
    /// The answer to one of the above.
    Reply {
        /// The sender's pending slot.
        pending: u32,
        /// The answer.
        value: ReplyValue,
    },
}

impl ShardMsg {
    /// A delivery of `msg` to the receiver's subscribers of its channel, or of `pattern`.
    pub fn delivery(msg: Arc<Message>, pattern: Option<&Name>) -> ShardMsg {
        match pattern {
            None => ShardMsg::Deliver { msg },
            Some(p) => ShardMsg::DeliverPattern {
                pattern: p.clone(),
                msg,
            },
        }
    }
}
