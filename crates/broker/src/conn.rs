//! One client connection as a shard sees it.

use corecast_runtime::OpId;

use crate::delivery::Format;
use crate::outbound::Outbound;
pub use crate::session::{Protocol, Session};
use crate::tables::ConnRef;

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// Serving.
    Open,
    /// Input is ignored; close once everything queued has been sent (QUIT, errors).
    CloseAfterFlush,
    /// Shut down; waiting for in-flight operations before the fd is closed.
    Closing,
}

/// Bytes received but not yet parsed. Absent (8 bytes in `Conn`, no allocation) whenever
/// nothing is buffered, which is the state of the idle connections that are most of a
/// gateway's; an emptied buffer is freed rather than kept for reuse.
// The box is the point: 8 bytes in every `Conn` instead of a 24-byte `Vec`.
#[allow(clippy::box_collection)]
#[derive(Debug, Default)]
pub struct InBuf(Option<Box<Vec<u8>>>);

impl InBuf {
    /// Bytes buffered.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.len())
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends received bytes.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        if !data.is_empty() {
            self.0
                .get_or_insert_with(Default::default)
                .extend_from_slice(data);
        }
    }

    /// Takes the bytes out (to parse them while the connection is borrowed elsewhere).
    pub fn take(&mut self) -> Vec<u8> {
        self.0.take().map(|b| *b).unwrap_or_default()
    }

    /// Puts back what is left after parsing.
    pub fn put(&mut self, rest: Vec<u8>) {
        self.0 = (!rest.is_empty()).then(|| Box::new(rest));
    }

    /// Drops everything buffered.
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

/// A connection in the shard's slab.
pub struct Conn {
    /// Socket.
    pub fd: i32,
    /// Generation (see [`ConnRef`]).
    pub gen: u32,
    /// How deliveries are encoded for this connection (read by fan-out for every message).
    pub format: Format,
    /// Life-cycle state.
    pub life: Life,
    /// Bytes received but not yet parsed (empty, and unallocated, for idle connections).
    pub inbuf: InBuf,
    /// Outbound queue.
    pub out: Outbound,
    /// The armed multishot receive, if any (to cancel it when input is paused).
    pub recv_op: Option<OpId>,
    /// A cancel of the receive has been requested (input paused).
    pub recv_cancelling: bool,
    /// A send is in flight (at most one).
    pub send_inflight: bool,
    /// When the in-flight send was submitted.
    pub send_submit_ns: u64,
    /// In the shard's dirty list.
    pub dirty: bool,
    /// In the shard's stalled list (input waits for a reason to clear).
    pub stalled: bool,
    /// Counted in the global connection count.
    pub counted: bool,
    /// A query every shard answers (PUBSUB CHANNELS/NUMSUB) is unanswered: the client's
    /// input waits for it, so it cannot queue a thousand of them.
    pub query_inflight: bool,
    /// The client closed its sending side while input it had sent was still paused: the
    /// connection closes once that input has run and the replies are sent.
    pub peer_eof: bool,
    /// Bytes of `inbuf` charged to the shard's `max_unparsed_bytes_per_shard` (an
    /// incomplete command; nothing while the broker itself pauses the input).
    pub input_charged: u32,
    /// State few connections ever have (see [`ConnRare`]).
    pub rare: Option<Box<ConnRare>>,
    /// The protocol's state (see `session.rs`).
    pub session: Session,
}

// An idle connection's cost starts here (docs/architecture.md, "Memory per connection"): a
// field added to `Conn` is paid by every connection, so a change of size is a decision.
const _: () = assert!(std::mem::size_of::<Conn>() == 152);

/// State few connections ever have, behind one pointer, so an idle connection pays eight
/// bytes for all of it.
#[derive(Default)]
pub struct ConnRare {
    /// Replays being queued as the client drains them (see `paced.rs`).
    pub paced: Vec<crate::paced::PacedReplay>,
    /// A (P|S)(UN)SUBSCRIBE with more names than one turn handles: the names still to do.
    pub pending_subs: Option<crate::session::PendingSubs>,
}

impl Conn {
    /// The connection's rare state, made on first need.
    pub fn rare_mut(&mut self) -> &mut ConnRare {
        self.rare.get_or_insert_with(Default::default)
    }

    /// Frees the rare state once nothing is left in it.
    pub fn tidy_rare(&mut self) {
        if self
            .rare
            .as_ref()
            .is_some_and(|r| r.paced.is_empty() && r.pending_subs.is_none())
        {
            self.rare = None;
        }
    }

    /// Whether a replay is being paced (checked on every send completion).
    pub fn pacing(&self) -> bool {
        self.rare.as_ref().is_some_and(|r| !r.paced.is_empty())
    }

    /// A fresh connection.
    pub fn new(fd: i32, gen: u32, session: Session) -> Self {
        Self {
            fd,
            gen,
            format: Format::default(),
            life: Life::Open,
            inbuf: InBuf::default(),
            out: Outbound::default(),
            recv_op: None,
            recv_cancelling: false,
            send_inflight: false,
            send_submit_ns: 0,
            dirty: false,
            stalled: false,
            counted: false,
            query_inflight: false,
            peer_eof: false,
            input_charged: 0,
            rare: None,
            session,
        }
    }

    /// This connection's reference given its slab key.
    pub fn at(&self, key: usize) -> ConnRef {
        ConnRef {
            key: key as u32,
            gen: self.gen,
        }
    }

    /// No operation of the kernel still refers to this connection's fd, so it may be closed.
    /// (Buffers are not this connection's concern: the driver holds what the kernel reads,
    /// zero-copy frames included, until their completions.)
    pub fn quiescent(&self) -> bool {
        self.recv_op.is_none() && !self.send_inflight
    }
}
