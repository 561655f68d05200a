//! One client connection as a shard sees it.

pub use crate::subset::SubSet;
use bytes::Bytes;
use corecast_proto::resp::Resume;

use crate::outbound::Outbound;
use crate::tables::ConnRef;

/// Which front-end speaks on this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Redis protocol (RESP2).
    Resp,
    /// HTTP/1.1 (stats now; WebSocket and SSE later).
    Http,
}

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

/// Subscription state of a RESP connection.
#[derive(Debug, Default)]
pub struct RespState {
    /// Classic channels.
    pub channels: SubSet,
    /// Patterns.
    pub patterns: SubSet,
    /// Sharded channels.
    pub schannels: SubSet,
    /// CLIENT SETNAME.
    pub name: Option<Bytes>,
}

impl RespState {
    /// Channels + patterns: the count Redis reports in (un)subscribe replies.
    pub fn classic_count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Whether the connection is in RESP2 subscribed mode.
    pub fn subscribed(&self) -> bool {
        self.classic_count() + self.schannels.len() > 0
    }
}

/// iovecs and msghdr of one in-flight SENDMSG; boxed so their addresses stay put while the
/// kernel reads them, and pooled by the shard so a send allocates nothing after warm-up.
pub struct SendBuf {
    /// The iovecs (pointing into queued frames).
    pub iov: Vec<libc::iovec>,
    /// The header pointing at `iov`.
    pub msg: libc::msghdr,
}

impl Default for SendBuf {
    fn default() -> Self {
        Self {
            iov: Vec::new(),
            // SAFETY: msghdr is plain data; all-zero is a valid empty header.
            msg: unsafe { std::mem::zeroed() },
        }
    }
}

/// A connection in the shard's slab.
pub struct Conn {
    /// Socket.
    pub fd: i32,
    /// Generation (see [`ConnRef`]).
    pub gen: u32,
    /// Front-end.
    pub proto: Protocol,
    /// Life-cycle state.
    pub life: Life,
    /// Bytes received but not yet parsed (empty, and unallocated, for idle connections).
    pub inbuf: Vec<u8>,
    /// How far the incomplete RESP command at the front of `inbuf` has been framed, so each
    /// receive frames only what it added (default whenever `inbuf` holds no partial command).
    pub resume: Resume,
    /// Outbound queue.
    pub out: Outbound,
    /// A multishot receive is armed.
    pub recv_armed: bool,
    /// A cancel of the receive has been requested (input paused).
    pub recv_cancelling: bool,
    /// A send is in flight (at most one).
    pub send_inflight: bool,
    /// Zero-copy notifications outstanding, with the frames they keep alive. Boxed on first
    /// use: zero-copy is off by default, and an inline deque cost every connection 24 bytes.
    pub zc_frames: Option<Box<std::collections::VecDeque<Bytes>>>,
    /// When the in-flight send was submitted.
    pub send_submit_ns: u64,
    /// Bytes in the in-flight send.
    pub send_bytes: usize,
    /// The in-flight SENDMSG's iovecs (None between sends; returned to the shard's pool).
    pub send_buf: Option<Box<SendBuf>>,
    /// In the shard's dirty list.
    pub dirty: bool,
    /// In the shard's stalled list (input waits for a reason to clear).
    pub stalled: bool,
    /// Counted in the global connection count.
    pub counted: bool,
    /// A PUBSUB query to every shard is unanswered (input waits for it).
    pub query_inflight: bool,
    /// The client closed its sending side while input it had sent was still paused: the
    /// connection closes once that input has run and the replies are sent.
    pub peer_eof: bool,
    /// The client switched to RESP3 with `HELLO 3`: pushes start with `>` and subscribed
    /// mode allows every command. Kept here, beside the fields fan-out already reads, not in
    /// the boxed `RespState`.
    pub resp3: bool,
    /// CLIENT ID / HELLO id: unique for the process's life (shard in the top 16 bits).
    pub client_id: u64,
    /// RESP state (boxed: most of a subscriber's footprint, absent for HTTP).
    pub resp: Box<RespState>,
}

impl Conn {
    /// A fresh connection.
    pub fn new(fd: i32, gen: u32, proto: Protocol) -> Self {
        Self {
            fd,
            gen,
            proto,
            life: Life::Open,
            inbuf: Vec::new(),
            resume: Resume::default(),
            out: Outbound::default(),
            recv_armed: false,
            recv_cancelling: false,
            send_inflight: false,
            zc_frames: None,
            send_submit_ns: 0,
            send_bytes: 0,
            send_buf: None,
            dirty: false,
            stalled: false,
            counted: false,
            query_inflight: false,
            resp3: false,
            peer_eof: false,
            client_id: 0,
            resp: Box::default(),
        }
    }

    /// This connection's reference given its slab key.
    pub fn at(&self, key: usize) -> ConnRef {
        ConnRef {
            key: key as u32,
            gen: self.gen,
        }
    }

    /// No operation of the kernel still refers to this connection's fd or buffers.
    pub fn quiescent(&self) -> bool {
        !self.recv_armed
            && !self.send_inflight
            && self.zc_frames.as_ref().is_none_or(|q| q.is_empty())
    }
}
