//! What crosses the shard mesh. Payloads and frames are `Bytes` handles: a fan-out to many
//! shards moves reference counts, never bytes.

use std::sync::Arc;

use bytes::Bytes;

/// The two channel namespaces of the Redis protocol: PUBLISH/SUBSCRIBE and the sharded
/// SPUBLISH/SSUBSCRIBE, which Redis keeps apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ns {
    /// Classic pub/sub channels.
    Plain = 0,
    /// Sharded pub/sub channels.
    Shard = 1,
}

/// A question every shard answers from the channels it owns (PUBSUB introspection).
#[derive(Debug)]
pub enum Query {
    /// Subscriber counts of these channels.
    NumSub(Ns, Vec<Bytes>),
    /// Active channels, optionally matching a glob pattern.
    Channels(Ns, Option<Bytes>),
}

/// An answer to a request that carried a reply slot.
#[derive(Debug)]
pub enum ReplyValue {
    /// The request took effect (interest registered).
    Ack,
    /// Number of subscribers a publish reached.
    Count(i64),
    /// Per-channel subscriber counts, in the order asked.
    Counts(Vec<i64>),
    /// Channel names.
    Names(Vec<Bytes>),
}

/// One message on a ring between two shards.
#[derive(Debug)]
pub enum ShardMsg {
    /// A client publish for a channel the receiver owns.
    Publish {
        /// Namespace.
        ns: Ns,
        /// Channel name.
        channel: Bytes,
        /// Payload as published.
        payload: Bytes,
        /// When the publisher's shard parsed it (CLOCK_MONOTONIC ns).
        ts_ns: u64,
        /// Pending slot on the sender to answer with the subscriber count.
        reply: Option<u32>,
    },
    /// A pre-encoded frame for the receiver's local subscribers of `channel`.
    Deliver {
        /// Namespace.
        ns: Ns,
        /// Channel name (the lookup key on the receiver).
        channel: Bytes,
        /// The encoded frame, shared by every subscriber.
        frame: Bytes,
        /// Publish timestamp, for publish→send latency.
        ts_ns: u64,
    },
    /// A pre-encoded pmessage frame for the receiver's local subscribers of `pattern`.
    DeliverPattern {
        /// The pattern the subscribers used.
        pattern: Bytes,
        /// Encoded frame.
        frame: Bytes,
        /// Publish timestamp.
        ts_ns: u64,
    },
    /// The sender's local subscriber count for a channel the receiver owns changed.
    SubDelta {
        /// Namespace.
        ns: Ns,
        /// Channel name.
        channel: Bytes,
        /// +1 or -1.
        delta: i32,
        /// Pending slot to acknowledge once the owner has applied it.
        reply: Option<u32>,
    },
    /// The sender's local subscriber count for a pattern changed (patterns live everywhere).
    PatDelta {
        /// The glob pattern.
        pattern: Bytes,
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
