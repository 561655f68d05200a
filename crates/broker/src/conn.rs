//! One client connection as a shard sees it.

use bytes::Bytes;

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
    /// How deliveries are encoded for this connection (read by fan-out for every message).
    pub format: Format,
    /// Life-cycle state.
    pub life: Life,
    /// Bytes received but not yet parsed (empty, and unallocated, for idle connections).
    pub inbuf: Vec<u8>,
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
    /// The client closed its sending side while input it had sent was still paused: the
    /// connection closes once that input has run and the replies are sent.
    pub peer_eof: bool,
    /// The protocol's state (see `session.rs`).
    pub session: Session,
}

impl Conn {
    /// A fresh connection.
    pub fn new(fd: i32, gen: u32, session: Session) -> Self {
        Self {
            fd,
            gen,
            format: Format::default(),
            life: Life::Open,
            inbuf: Vec::new(),
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
            peer_eof: false,
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

    /// No operation of the kernel still refers to this connection's fd or buffers.
    pub fn quiescent(&self) -> bool {
        !self.recv_armed
            && !self.send_inflight
            && self.zc_frames.as_ref().is_none_or(|q| q.is_empty())
    }
}
