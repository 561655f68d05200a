//! WebSocket (RFC 6455), sans IO: the opening handshake over a parsed [`RequestHead`], server
//! frame encoders, and a [`Decoder`] of client frames.
//!
//! The server never offers extensions (permessage-deflate is declined by not echoing it) nor
//! subprotocols, so every frame it sends is a plain FIN frame with RSV bits clear and no
//! mask, and every frame it accepts must have RSV bits clear. The decoder consumes whole
//! frames only and copies data payloads, unmasked, into one per-connection message buffer;
//! control frames are returned inline without allocating.

use std::io::Write;

use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::http::RequestHead;

/// The GUID RFC 6455 section 1.3 appends to the key before hashing.
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Base64 that ignores non-zero trailing bits: a key is 16 random bytes and nothing more is
/// asked of it, so a client whose encoder leaves junk in the last 4 bits is not refused.
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// Largest client frame header (RFC 6455 5.2): 2 bytes, an 8-byte extended length and the
/// 4-byte mask. A connection's read buffer must hold this plus `max_message_bytes` for the
/// largest frame the decoder accepts to be decoded at all.
pub const MAX_FRAME_HEADER: usize = 14;

/// Largest payload of a control frame (RFC 6455 5.5).
const MAX_CONTROL: usize = 125;

/// Largest close reason: a control payload less the 2-byte code.
const MAX_CLOSE_REASON: usize = MAX_CONTROL - 2;

/// Empty (zero-payload) data frames one message may have by default (see
/// [`Decoder::with_max_empty_fragments`]).
pub const DEFAULT_MAX_EMPTY_FRAGMENTS: u16 = 16;

/// A message buffer with more capacity than this is freed after the message is consumed, so
/// a connection that once sent a big message does not keep its buffer while idle.
const KEEP_CAPACITY: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------
// Handshake
// ---------------------------------------------------------------------------------------

/// Why an upgrade request is refused; [`status`](Self::status) gives the HTTP status to
/// answer with and [`refusal`] writes the whole answer.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// The method is not GET (405): RFC 6455 4.1 requires GET.
    #[error("a WebSocket upgrade must be a GET request")]
    NotGet,
    /// No `Upgrade` header with the `websocket` token (426): the client did not ask for a
    /// WebSocket, so it is told which protocol this endpoint needs.
    #[error("missing `Upgrade: websocket`")]
    MissingUpgrade,
    /// The `Connection` header lacks the `upgrade` token (400).
    #[error("missing `Connection: upgrade`")]
    MissingConnectionUpgrade,
    /// `Sec-WebSocket-Version` is missing or not 13 (426); the answer names version 13.
    #[error("unsupported Sec-WebSocket-Version (only 13 is supported)")]
    BadVersion,
    /// `Sec-WebSocket-Key` is missing or not the base64 of exactly 16 bytes (400).
    #[error("missing or malformed Sec-WebSocket-Key")]
    BadKey,
}

impl HandshakeError {
    /// The HTTP status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::NotGet => 405,
            HandshakeError::MissingUpgrade | HandshakeError::BadVersion => 426,
            HandshakeError::MissingConnectionUpgrade | HandshakeError::BadKey => 400,
        }
    }

    /// The reason phrase of [`status`](Self::status), for the status line.
    pub fn reason(&self) -> &'static str {
        match self.status() {
            405 => "Method Not Allowed",
            426 => "Upgrade Required",
            _ => "Bad Request",
        }
    }
}

/// Trims HTTP optional whitespace (spaces and tabs) from both ends.
fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    v.get(start..end).unwrap_or_default()
}

/// Whether any header named `name` holds `token` in its comma-separated list
/// (case-insensitive). Every header of that name counts: RFC 9110 5.3 lets a list be split
/// over several lines.
fn has_token(head: &RequestHead, name: &str, token: &str) -> bool {
    head.headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(|&b| b == b','))
        .any(|t| trim_ows(t).eq_ignore_ascii_case(token.as_bytes()))
}

/// Validates an upgrade request head: method GET, `Upgrade` contains the token `websocket`
/// and `Connection` the token `upgrade` (case-insensitive, in any header of that name),
/// `Sec-WebSocket-Version: 13`, and a `Sec-WebSocket-Key` that is the base64 of 16 bytes.
/// Returns the `Sec-WebSocket-Accept` value for [`upgrade_response`]. The checks run in that
/// order, so the error names the first thing wrong. The path is the caller's business.
pub fn check_upgrade(head: &RequestHead) -> Result<String, HandshakeError> {
    if head.method != "GET" {
        return Err(HandshakeError::NotGet);
    }
    if !has_token(head, "upgrade", "websocket") {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !has_token(head, "connection", "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    match head.header("sec-websocket-version") {
        Some(v) if trim_ows(v) == b"13" => {}
        _ => return Err(HandshakeError::BadVersion),
    }
    let key = trim_ows(
        head.header("sec-websocket-key")
            .ok_or(HandshakeError::BadKey)?,
    );
    // 16 bytes are exactly 24 base64 characters with padding; checking the length first
    // also bounds the decode.
    let mut raw = [0u8; 18];
    match (key.len(), KEY_BASE64.decode_slice(key, &mut raw)) {
        (24, Ok(16)) => Ok(accept_key(key)),
        _ => Err(HandshakeError::BadKey),
    }
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key` (RFC 6455 4.2.2):
/// base64(sha1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")). It proves to the client that
/// the server read its handshake, so a cached or cross-protocol answer is not mistaken for
/// an upgrade.
pub fn accept_key(key: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(key);
    h.update(WS_GUID);
    STANDARD.encode(h.finalize())
}

/// Appends the `101 Switching Protocols` answer to a valid upgrade: `Upgrade: websocket`,
/// `Connection: Upgrade` and `Sec-WebSocket-Accept`. It never carries
/// `Sec-WebSocket-Extensions` (declining permessage-deflate and every other extension, so
/// RSV bits stay zero) nor `Sec-WebSocket-Protocol` (no subprotocol is spoken).
pub fn upgrade_response(out: &mut Vec<u8>, accept: &str) {
    out.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}

/// Appends the answer refusing an upgrade for `err`, after which the caller closes: the
/// status line, then for a 426 `Sec-WebSocket-Version: 13` and `Upgrade: websocket` (RFC
/// 6455 4.4 and RFC 9110 15.5.22 ask for them, so the client learns what would work; the
/// `upgrade` connection option goes with the latter, as RFC 9110 7.8 requires), for a 405
/// `Allow: GET`, then `Content-Type`, `Content-Length`, `Connection: close` and a one-line
/// text body.
pub fn refusal(out: &mut Vec<u8>, err: &HandshakeError) {
    let body = format!("{err}\n");
    let _ = write!(out, "HTTP/1.1 {} {}\r\n", err.status(), err.reason());
    let connection = match err {
        HandshakeError::BadVersion | HandshakeError::MissingUpgrade => {
            out.extend_from_slice(b"Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n");
            "upgrade, close"
        }
        HandshakeError::NotGet => {
            out.extend_from_slice(b"Allow: GET\r\n");
            "close"
        }
        HandshakeError::MissingConnectionUpgrade | HandshakeError::BadKey => "close",
    };
    let _ = write!(
        out,
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nX-Content-Type-Options: nosniff\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    );
}

// ---------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------

/// Frame opcodes (RFC 6455 5.2), the low 4 bits of a frame's first byte.
pub mod opcode {
    /// Continues a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// Starts a text (UTF-8) message.
    pub const TEXT: u8 = 0x1;
    /// Starts a binary message.
    pub const BINARY: u8 = 0x2;
    /// Begins or answers the closing handshake.
    pub const CLOSE: u8 = 0x8;
    /// Asks the peer for a pong with the same payload (keep-alive, liveness).
    pub const PING: u8 = 0x9;
    /// Answers a ping (or is an unsolicited heartbeat).
    pub const PONG: u8 = 0xA;
}

/// Close codes the server sends (RFC 6455 7.4.1), so the peer learns why it is closed.
pub mod close_code {
    /// The connection did its job (or the client asked to close).
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the framing rules.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// The peer sent a kind of data the server does not take (e.g. binary where JSON text
    /// is expected).
    pub const UNSUPPORTED: u16 = 1003;
    /// A text message (or close reason) was not UTF-8, or a message was not what the
    /// protocol says it must be.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// The peer broke a policy (e.g. a slow consumer, a forbidden channel).
    pub const POLICY: u16 = 1008;
    /// A message exceeded the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// The server failed in a way that is not the peer's fault.
    pub const INTERNAL: u16 = 1011;
}

// ---------------------------------------------------------------------------------------
// Server-side encoding
// ---------------------------------------------------------------------------------------

/// Length of the header [`frame_header`] writes for a payload of `len` bytes: 2, 4 or 10.
/// Lets a caller reserve room for the header in front of a payload it writes in place.
pub fn frame_header_len(len: usize) -> usize {
    if len < 126 {
        2
    } else if len <= 0xFFFF {
        4
    } else {
        10
    }
}

/// Appends a server frame header for a payload of `len` bytes: FIN set (the server never
/// fragments), RSV clear, never masked (RFC 6455 5.1 forbids masking server frames), with
/// the shortest length encoding (2, 4 or 10 bytes).
pub fn frame_header(out: &mut Vec<u8>, opcode: u8, len: usize) {
    out.push(0x80 | (opcode & 0x0F));
    if len < 126 {
        out.push(len as u8);
    } else if let Ok(l) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&l.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// Appends a whole unmasked server frame (data or control). A control frame's payload must
/// be at most 125 bytes; that is the caller's duty (a pong echoes a ping's payload, which
/// the decoder already bounded).
pub fn frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    frame_header(out, opcode, payload.len());
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason`, the reason cut at a char boundary to
/// fit the 123 bytes a control frame leaves after the code, so any reason can be passed.
pub fn close_frame(out: &mut Vec<u8>, code: u16, reason: &str) {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let reason = reason.as_bytes().get(..end).unwrap_or_default();
    frame_header(out, opcode::CLOSE, 2 + reason.len());
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason);
}

/// Appends a client frame: masked with `mask`, FIN as given, RSV clear, the shortest length
/// encoding. For tests and the load generator (the server never sends masked frames).
pub fn client_frame(out: &mut Vec<u8>, opcode: u8, fin: bool, mask: [u8; 4], payload: &[u8]) {
    out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0F));
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(l) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&l.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(p) = out.get_mut(start..) {
        apply_mask(p, mask);
    }
}

/// XORs `buf` with the repeating 4-byte `mask` (masking and unmasking are the same),
/// eight bytes at a time.
fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let [a, b, c, d] = mask;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        if let Ok(arr) = <[u8; 8]>::try_from(&*chunk) {
            chunk.copy_from_slice(&(u64::from_ne_bytes(arr) ^ wide).to_ne_bytes());
        }
    }
    // The remainder starts at a multiple of 8, so the mask phase restarts at 0.
    for (byte, m) in chunks.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= m;
    }
}

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

/// The payload of a control frame: at most 125 bytes, kept inline so a ping or close costs
/// no allocation. For a close frame it holds the reason only (the code is separate).
#[derive(Clone, Copy)]
pub struct ControlPayload {
    len: u8,
    bytes: [u8; MAX_CONTROL],
}

impl ControlPayload {
    /// An empty payload.
    pub const EMPTY: ControlPayload = ControlPayload {
        len: 0,
        bytes: [0; MAX_CONTROL],
    };

    /// A payload holding `bytes`, or `None` if they are over 125 bytes (too long for a
    /// control frame). Lets tests and callers build expected events.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        let mut p = Self::EMPTY;
        p.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        p.len = bytes.len() as u8;
        Some(p)
    }

    /// The payload bytes (e.g. to echo a ping's payload in the pong).
    pub fn as_slice(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl PartialEq for ControlPayload {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for ControlPayload {}

impl std::fmt::Debug for ControlPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ControlPayload({:?})",
            String::from_utf8_lossy(self.as_slice())
        )
    }
}

/// What [`Decoder::decode`] found. Control frames may arrive between the fragments of a
/// message (RFC 6455 5.4); they are returned at once, and the message keeps assembling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A complete message (`text`: opcode TEXT, already checked to be UTF-8). Read it with
    /// [`Decoder::message`], then call [`Decoder::consume_message`].
    Message {
        /// Whether it is a text message (else binary).
        text: bool,
    },
    /// A ping; answer with a pong carrying the same payload.
    Ping(ControlPayload),
    /// A pong (an answer to a ping of ours, or a heartbeat).
    Pong(ControlPayload),
    /// The peer starts (or answers) the closing handshake. `code` is `None` for an empty
    /// close payload; it is otherwise a code valid per RFC 6455 7.4, and `reason` is UTF-8.
    Close {
        /// The close code, if the frame had one.
        code: Option<u16>,
        /// The close reason (UTF-8, possibly empty).
        reason: ControlPayload,
    },
}

/// Why the peer's input is refused; the connection must then be closed with
/// [`close_code`](Self::close_code) (the `Display` text fits a close reason).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum WsError {
    /// The framing rules were broken (1002); holds which one.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A text message or close reason is not UTF-8 (1007).
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    /// A message is larger than the decoder's limit (1009).
    #[error("message too big")]
    TooBig,
    /// A message has more empty (zero-payload) data frames than the decoder's limit (1008,
    /// policy): they cost a frame's work each and bring the message no closer to its size
    /// limit, so without a bound one client could keep a core busy for ever.
    #[error("too many empty fragments in one message")]
    TooManyEmptyFragments,
}

impl WsError {
    /// The close code to send before closing.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::Protocol(_) => close_code::PROTOCOL_ERROR,
            WsError::InvalidUtf8 => close_code::INVALID_PAYLOAD,
            WsError::TooBig => close_code::TOO_BIG,
            WsError::TooManyEmptyFragments => close_code::POLICY,
        }
    }
}

/// Whether a close code received from a peer is allowed (RFC 6455 7.4.1 and 7.4.2, plus the
/// IANA-registered 1012-1014 that browsers and most servers accept). 1004 is reserved, and
/// 1005, 1006 and 1015 must never be sent.
fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Incremental UTF-8 validation state between fragments: how many continuation bytes are
/// still due, and the range the next one must lie in (narrower than 0x80..=0xBF right after
/// E0, ED, F0 and F4, which is what rejects overlong forms, surrogates and code points past
/// U+10FFFF at the first byte that makes them so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Utf8 {
    need: u8,
    lo: u8,
    hi: u8,
}

impl Utf8 {
    const START: Utf8 = Utf8 {
        need: 0,
        lo: 0x80,
        hi: 0xBF,
    };

    /// Feeds one byte; `false` if the bytes so far can never be valid UTF-8.
    fn step(&mut self, b: u8) -> bool {
        if self.need > 0 {
            if b < self.lo || b > self.hi {
                return false;
            }
            self.need -= 1;
            self.lo = 0x80;
            self.hi = 0xBF;
            return true;
        }
        let (need, lo, hi) = match b {
            0x00..=0x7F => return true,
            0xC2..=0xDF => (1, 0x80, 0xBF),
            0xE0 => (2, 0xA0, 0xBF),
            0xE1..=0xEC | 0xEE..=0xEF => (2, 0x80, 0xBF),
            0xED => (2, 0x80, 0x9F),
            0xF0 => (3, 0x90, 0xBF),
            0xF1..=0xF3 => (3, 0x80, 0xBF),
            0xF4 => (3, 0x80, 0x8F),
            _ => return false,
        };
        *self = Utf8 { need, lo, hi };
        true
    }

    /// Feeds a chunk; `false` if the bytes so far can never be valid UTF-8. Finishes a
    /// sequence left open by the previous chunk byte by byte, then lets the standard
    /// library's fast validator do the rest, stepping only through an incomplete tail.
    fn feed(&mut self, mut chunk: &[u8]) -> bool {
        while self.need > 0 {
            let Some((&b, rest)) = chunk.split_first() else {
                return true;
            };
            if !self.step(b) {
                return false;
            }
            chunk = rest;
        }
        match std::str::from_utf8(chunk) {
            Ok(_) => true,
            // Invalid for good, whatever follows.
            Err(e) if e.error_len().is_some() => false,
            // A valid prefix of a sequence ends the chunk: remember where it stands.
            Err(e) => chunk
                .get(e.valid_up_to()..)
                .unwrap_or_default()
                .iter()
                .all(|&b| self.step(b)),
        }
    }
}

/// Where the decoder stands between frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No message started.
    Idle,
    /// A fragmented message is being assembled.
    Assembling { text: bool },
    /// A message is complete and awaits [`Decoder::consume_message`].
    Complete,
}

/// Decoder of client frames, one per connection.
///
/// It holds only the message being assembled (an unallocated `Vec` until the first data
/// frame; a buffer over 64 KiB is freed once its message is consumed, so idle connections
/// stay small), the size limit, and the UTF-8 validation state of a text message, so invalid
/// UTF-8 is refused at the first byte that makes it so: in the fragment where it occurs, even
/// when a code point is split across fragments, and inside a frame that is still arriving
/// (the payload bytes of an incomplete text frame are validated as they come, and the
/// decoder remembers how far it got). Frames are consumed whole: the caller keeps at most
/// one frame header (up to 14 bytes) plus one frame's payload (at most `max_message_bytes`)
/// in its read buffer.
///
/// Empty data frames are bounded too: each costs a frame's work but adds nothing to the
/// message, so the size limit alone would let a client send them for ever (1.15 billion
/// in 20 s kept a core busy). A message may have at most `max_empty_fragments` of them
/// (the first frame, continuations and the final one all count);
/// one more is [`WsError::TooManyEmptyFragments`].
///
/// After an error the connection must be closed; the decoder's state is then unspecified
/// (though it still never panics).
#[derive(Debug)]
pub struct Decoder {
    msg: Vec<u8>,
    max: usize,
    /// Payload bytes of the incomplete text frame at the start of the caller's buffer that
    /// were already fed to `utf8` (0 between frames). A u32 keeps the decoder in 48 bytes;
    /// a frame longer than 4 GiB has the rest of its bytes checked once it is complete.
    checked: u32,
    utf8: Utf8,
    state: State,
    /// Empty data frames in the current message.
    empty: u16,
    /// Most empty data frames a message may have.
    max_empty: u16,
}

const _: () = assert!(std::mem::size_of::<Decoder>() <= 48);

impl Decoder {
    /// A decoder that accepts messages of at most `max_message_bytes` (the sum of a
    /// message's fragments); a frame that would pass it is [`WsError::TooBig`] as soon as its
    /// header has arrived, before any of its payload is buffered.
    /// It allows [`DEFAULT_MAX_EMPTY_FRAGMENTS`] empty data frames per message.
    pub fn new(max_message_bytes: usize) -> Self {
        Decoder {
            msg: Vec::new(),
            max: max_message_bytes,
            checked: 0,
            utf8: Utf8::START,
            state: State::Idle,
            empty: 0,
            max_empty: DEFAULT_MAX_EMPTY_FRAGMENTS,
        }
    }

    /// The decoder allowing at most `n` empty (zero-payload) data frames per message; one
    /// more is [`WsError::TooManyEmptyFragments`] (close 1008) as soon as its 6 bytes have
    /// arrived. An unfragmented empty message is one such frame. Autobahn's fragmentation
    /// cases send up to three, and no real client sends more than a couple.
    pub fn with_max_empty_fragments(mut self, n: u16) -> Self {
        self.max_empty = n;
        self
    }

    /// Decodes at most one event from the start of `input`.
    ///
    /// Returns `(consumed, Some(event))`, or `(consumed, None)` when no event is complete:
    /// `consumed == 0` if more input is needed (a partial frame is never consumed), or
    /// `consumed > 0` when a data frame that does not end its message was taken into the
    /// message buffer. So the caller drops `consumed` bytes and loops while
    /// `consumed > 0` or an event came. Any split of the input works, down to one byte at
    /// a time, and gives the same events and errors as decoding it whole; an error is
    /// reported as soon as the bytes received show it, even before the frame is complete
    /// (invalid UTF-8 in the received part of a text frame's payload included).
    ///
    /// After `(0, None)` the next call must pass the same unconsumed bytes again, followed
    /// by any that arrived since, as a read buffer does: the decoder remembers how much of
    /// an incomplete text frame's payload it has validated and checks only what is new.
    ///
    /// A message still held from the previous [`Event::Message`] is dropped first, as if
    /// [`consume_message`](Self::consume_message) had been called.
    ///
    /// Refused (RFC 6455 5.1-5.5): unmasked frames, RSV bits set, opcodes 3-7 and 0xB-0xF,
    /// control frames without FIN or with over 125 bytes, a continuation with no message
    /// started, a TEXT or BINARY frame while a message is unfinished, a 64-bit length with
    /// the top bit set (all [`WsError::Protocol`]); invalid UTF-8 in a text message or close
    /// reason ([`WsError::InvalidUtf8`]); a 1-byte close payload or a close code not allowed
    /// by RFC 6455 7.4 (Protocol); a message over the limit ([`WsError::TooBig`]); more
    /// empty data frames in one message than allowed ([`WsError::TooManyEmptyFragments`]).
    /// Non-minimal length encodings are accepted.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), WsError> {
        if self.state == State::Complete {
            self.consume_message();
        }
        let Some(&b0) = input.first() else {
            return Ok((0, None));
        };
        if b0 & 0x70 != 0 {
            return Err(WsError::Protocol("reserved bits set"));
        }
        let fin = b0 & 0x80 != 0;
        let op = b0 & 0x0F;
        let control = match op {
            opcode::CONTINUATION => {
                if self.state == State::Idle {
                    return Err(WsError::Protocol("continuation frame without a message"));
                }
                false
            }
            opcode::TEXT | opcode::BINARY => {
                if self.state != State::Idle {
                    return Err(WsError::Protocol("new message inside a fragmented message"));
                }
                false
            }
            opcode::CLOSE | opcode::PING | opcode::PONG => {
                if !fin {
                    return Err(WsError::Protocol("fragmented control frame"));
                }
                true
            }
            _ => return Err(WsError::Protocol("unknown opcode")),
        };
        let Some(&b1) = input.get(1) else {
            return Ok((0, None));
        };
        if b1 & 0x80 == 0 {
            return Err(WsError::Protocol("unmasked client frame"));
        }
        let len7 = b1 & 0x7F;
        if control && usize::from(len7) > MAX_CONTROL {
            return Err(WsError::Protocol("control frame over 125 bytes"));
        }
        let (len, mask_at): (u64, usize) = match len7 {
            126 => match input.get(2..4) {
                Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
                _ => return Ok((0, None)),
            },
            127 => match input.get(2..10).map(<[u8; 8]>::try_from) {
                Some(Ok(l)) => {
                    let l = u64::from_be_bytes(l);
                    if l >> 63 != 0 {
                        return Err(WsError::Protocol("64-bit length with the top bit set"));
                    }
                    (l, 10)
                }
                _ => return Ok((0, None)),
            },
            n => (u64::from(n), 2),
        };
        // Data frames: refuse a message over the limit before its payload arrives. The sum
        // is at most max + 2^63, so it cannot overflow u64 (usize is at most 64 bits).
        if !control && (self.msg.len() as u64).saturating_add(len) > self.max as u64 {
            return Err(WsError::TooBig);
        }
        // len <= max (data) or <= 125 (control), so it fits usize.
        let Ok(len) = usize::try_from(len) else {
            return Err(WsError::TooBig);
        };
        let payload_at = mask_at + 4;
        let end = payload_at.saturating_add(len);
        let Some(Ok(mask)) = input.get(mask_at..payload_at).map(<[u8; 4]>::try_from) else {
            return Ok((0, None));
        };
        // The whole frame must be here; a partial one is left for the next call, once the
        // part of a text payload that is here has been validated.
        let Some(payload) = input.get(payload_at..end) else {
            if !control && self.is_text(op) {
                let arrived = input.get(payload_at..).unwrap_or_default();
                self.check_partial(arrived, mask)?;
            }
            return Ok((0, None));
        };
        if control {
            let mut p = ControlPayload::EMPTY;
            let Some(dst) = p.bytes.get_mut(..len) else {
                return Err(WsError::Protocol("control frame over 125 bytes"));
            };
            dst.copy_from_slice(payload);
            apply_mask(dst, mask);
            p.len = len as u8;
            let event = match op {
                opcode::PING => Event::Ping(p),
                opcode::PONG => Event::Pong(p),
                _ => close_event(p)?,
            };
            return Ok((end, Some(event)));
        }
        let text = self.is_text(op);
        if !matches!(self.state, State::Assembling { .. }) {
            // A new message (its first frame may have been validated in part already).
            if self.checked == 0 {
                self.utf8 = Utf8::START;
            }
            self.empty = 0;
        }
        let checked = std::mem::take(&mut self.checked) as usize;
        if len == 0 {
            self.empty = self.empty.saturating_add(1);
            if self.empty > self.max_empty {
                return Err(WsError::TooManyEmptyFragments);
            }
        }
        let start = self.msg.len();
        self.msg.extend_from_slice(payload);
        let fresh = self.msg.get_mut(start..).unwrap_or_default();
        apply_mask(fresh, mask);
        // Mark the message started before any error so the state stays coherent.
        self.state = State::Assembling { text };
        if text && !self.utf8.feed(fresh.get(checked..).unwrap_or_default()) {
            return Err(WsError::InvalidUtf8);
        }
        if !fin {
            return Ok((end, None));
        }
        if text && self.utf8.need != 0 {
            return Err(WsError::InvalidUtf8);
        }
        self.state = State::Complete;
        Ok((end, Some(Event::Message { text })))
    }

    /// Whether a data frame with opcode `op` belongs to a text message: a continuation
    /// continues the message being assembled, a first frame says itself.
    fn is_text(&self, op: u8) -> bool {
        match self.state {
            State::Assembling { text } => text,
            _ => op == opcode::TEXT,
        }
    }

    /// Validates the payload bytes of an incomplete text frame that arrived since the last
    /// call (`arrived` holds all of them, still masked), so invalid UTF-8 is refused as soon
    /// as its first wrong byte is in rather than when the frame completes.
    fn check_partial(&mut self, arrived: &[u8], mask: [u8; 4]) -> Result<(), WsError> {
        let from = self.checked as usize;
        let Some(fresh) = arrived.get(from..) else {
            return Ok(());
        };
        // Past 4 GiB the rest waits for the frame to complete.
        let room = (u32::MAX - self.checked) as usize;
        let fresh = fresh.get(..fresh.len().min(room)).unwrap_or_default();
        if fresh.is_empty() {
            return Ok(());
        }
        if self.checked == 0 && !matches!(self.state, State::Assembling { .. }) {
            self.utf8 = Utf8::START;
        }
        // The mask phase of payload byte i is i % 4; chunks of a multiple of 4 keep it.
        let mut phased = [0u8; 4];
        for (i, m) in phased.iter_mut().enumerate() {
            *m = mask[(from + i) % 4];
        }
        let mut buf = [0u8; 512];
        for chunk in fresh.chunks(buf.len()) {
            let Some(dst) = buf.get_mut(..chunk.len()) else {
                break;
            };
            dst.copy_from_slice(chunk);
            apply_mask(dst, phased);
            if !self.utf8.feed(dst) {
                return Err(WsError::InvalidUtf8);
            }
        }
        self.checked += fresh.len() as u32;
        Ok(())
    }

    /// The complete message after [`Event::Message`] (unmasked, fragments joined). Before
    /// that it holds the fragments received so far.
    pub fn message(&self) -> &[u8] {
        &self.msg
    }

    /// Drops the message returned by [`Event::Message`], keeping its buffer for the next one
    /// unless it grew over 64 KiB.
    pub fn consume_message(&mut self) {
        if self.msg.capacity() > KEEP_CAPACITY {
            self.msg = Vec::new();
        } else {
            self.msg.clear();
        }
        self.state = State::Idle;
        self.utf8 = Utf8::START;
        self.checked = 0;
        self.empty = 0;
    }

    /// Heap bytes the decoder holds for messages: the capacity of its message buffer, not
    /// just the length, since capacity is what a per-connection memory limit must count.
    /// Zero for a decoder that never received a data frame or just freed a big buffer.
    pub fn buffered(&self) -> usize {
        self.msg.capacity()
    }
}

/// Parses a close frame's unmasked payload into [`Event::Close`].
fn close_event(p: ControlPayload) -> Result<Event, WsError> {
    let (code, reason) = match p.as_slice() {
        [] => (None, ControlPayload::EMPTY),
        [_] => return Err(WsError::Protocol("close payload of 1 byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !valid_close_code(code) {
                return Err(WsError::Protocol("invalid close code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(WsError::InvalidUtf8);
            }
            (
                Some(code),
                ControlPayload::new(reason).unwrap_or(ControlPayload::EMPTY),
            )
        }
    };
    Ok(Event::Close { code, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Builds a head through the real parser, so fields added to `RequestHead` later do
    /// not break these tests.
    fn head(method: &str, headers: &[(&str, &str)]) -> RequestHead {
        let mut raw = format!("{method} /ws HTTP/1.1\r\n");
        for (k, v) in headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        raw.push_str("\r\n");
        crate::http::parse_request_head(raw.as_bytes(), 8192)
            .unwrap()
            .unwrap()
            .0
    }

    const GOOD: &[(&str, &str)] = &[
        ("Host", "example.com"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];

    fn with(over: &[(&str, Option<&str>)]) -> RequestHead {
        let mut hs: Vec<(&str, &str)> = GOOD
            .iter()
            .filter(|(k, _)| !over.iter().any(|(o, _)| o == k))
            .copied()
            .collect();
        hs.extend(over.iter().filter_map(|(k, v)| v.map(|v| (*k, v))));
        head("GET", &hs)
    }

    fn cf(op: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        client_frame(&mut v, op, fin, MASK, payload);
        v
    }

    /// What a caller sees: events (with message contents) until an error or the end.
    #[derive(Debug, PartialEq, Eq)]
    enum Seen {
        Msg(bool, Vec<u8>),
        Ev(Event),
    }

    /// Decodes `input` fed in pieces of `step` bytes, the way a connection would.
    fn run_chunked(input: &[u8], step: usize, max: usize) -> (Vec<Seen>, Option<WsError>) {
        let mut d = Decoder::new(max);
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                match d.decode(&buf) {
                    Err(e) => return (seen, Some(e)),
                    Ok((n, ev)) => {
                        assert!(n <= buf.len());
                        buf.drain(..n);
                        match ev {
                            Some(Event::Message { text }) => {
                                seen.push(Seen::Msg(text, d.message().to_vec()));
                                d.consume_message();
                            }
                            Some(e) => seen.push(Seen::Ev(e)),
                            None if n == 0 => break,
                            None => {}
                        }
                    }
                }
            }
        }
        (seen, None)
    }

    fn err_of(input: &[u8]) -> WsError {
        err_of_max(input, 1 << 20)
    }

    fn err_of_max(input: &[u8], max: usize) -> WsError {
        let (_, e) = run_chunked(input, input.len(), max);
        let e = e.expect("an error");
        // The same error arrives however the bytes are split.
        for step in 1..input.len() {
            assert_eq!(run_chunked(input, step, max).1, Some(e), "step {step}");
        }
        e
    }

    fn code_of(input: &[u8]) -> u16 {
        err_of(input).close_code()
    }

    fn cp(b: &[u8]) -> ControlPayload {
        ControlPayload::new(b).unwrap()
    }

    // ----- handshake -----

    #[test]
    fn rfc_accept_key() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn valid_upgrade_and_response() {
        let accept = check_upgrade(&with(&[])).unwrap();
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let mut out = Vec::new();
        upgrade_response(&mut out, &accept);
        assert_eq!(
            out,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        // Browsers' usual headers, token lists, odd case and whitespace, extension offers.
        let h = with(&[
            ("Upgrade", Some("h2c, WebSocket")),
            ("Connection", Some("keep-alive, Upgrade")),
            ("Sec-WebSocket-Version", Some(" 13 ")),
            ("Sec-WebSocket-Key", Some("\tdGhlIHNhbXBsZSBub25jZQ== ")),
            (
                "Sec-WebSocket-Extensions",
                Some("permessage-deflate; client_max_window_bits"),
            ),
        ]);
        assert_eq!(check_upgrade(&h).unwrap(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        // A token list split over two Connection headers.
        let mut hs = GOOD.to_vec();
        hs[2] = ("Connection", "keep-alive");
        hs.push(("connection", "upgrade"));
        assert!(check_upgrade(&head("GET", &hs)).is_ok());
    }

    #[test]
    fn refused_upgrades() {
        let e = |h: &RequestHead| check_upgrade(h).unwrap_err();
        assert_eq!(e(&head("POST", GOOD)), HandshakeError::NotGet);
        assert_eq!(e(&head("get", GOOD)), HandshakeError::NotGet);
        assert_eq!(
            e(&with(&[("Upgrade", None)])),
            HandshakeError::MissingUpgrade
        );
        assert_eq!(
            e(&with(&[("Upgrade", Some("websocketx"))])),
            HandshakeError::MissingUpgrade
        );
        assert_eq!(
            e(&with(&[("Connection", None)])),
            HandshakeError::MissingConnectionUpgrade
        );
        assert_eq!(
            e(&with(&[("Connection", Some("keep-alive"))])),
            HandshakeError::MissingConnectionUpgrade
        );
        assert_eq!(
            e(&with(&[("Connection", Some("upgraded"))])),
            HandshakeError::MissingConnectionUpgrade
        );
        assert_eq!(
            e(&with(&[("Sec-WebSocket-Version", None)])),
            HandshakeError::BadVersion
        );
        assert_eq!(
            e(&with(&[("Sec-WebSocket-Version", Some("8"))])),
            HandshakeError::BadVersion
        );
        for key in [
            None,
            Some(""),
            Some("dGhlIHNhbXBsZSBub25jZQ"),       // unpadded
            Some("dGhlIHNhbXBsZSBub25jZXg="),     // 17 bytes
            Some("dGhlIHNhbXBsZSBub25j"),         // 15 bytes
            Some("dGhlIHNhbXBsZSBub25jZQ==AAAA"), // 19 bytes
            Some("dGhlIHNhbXBsZSBub25jZ!=="),     // not base64
        ] {
            assert_eq!(
                e(&with(&[("Sec-WebSocket-Key", key)])),
                HandshakeError::BadKey,
                "{key:?}"
            );
        }
        // Statuses and reasons.
        let all = [
            (HandshakeError::NotGet, 405, "Method Not Allowed"),
            (HandshakeError::MissingUpgrade, 426, "Upgrade Required"),
            (HandshakeError::MissingConnectionUpgrade, 400, "Bad Request"),
            (HandshakeError::BadVersion, 426, "Upgrade Required"),
            (HandshakeError::BadKey, 400, "Bad Request"),
        ];
        for (err, status, reason) in all {
            assert_eq!((err.status(), err.reason()), (status, reason));
        }
    }

    #[test]
    fn refusal_responses() {
        let text = |e: HandshakeError| {
            let mut out = Vec::new();
            refusal(&mut out, &e);
            String::from_utf8(out).unwrap()
        };
        let r = text(HandshakeError::BadVersion);
        assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(r.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        assert!(text(HandshakeError::MissingUpgrade).contains("\r\nSec-WebSocket-Version: 13\r\n"));
        let r = text(HandshakeError::BadKey);
        assert!(r.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(!r.contains("Sec-WebSocket-Version"));
        assert!(r.contains("\r\nConnection: close\r\n"));
        assert!(text(HandshakeError::NotGet).starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        // Content-Length matches the one-line body.
        for e in [
            HandshakeError::NotGet,
            HandshakeError::MissingUpgrade,
            HandshakeError::MissingConnectionUpgrade,
            HandshakeError::BadVersion,
            HandshakeError::BadKey,
        ] {
            let r = text(e);
            let (head, body) = r.split_once("\r\n\r\n").unwrap();
            let cl = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap();
            assert_eq!(cl.parse::<usize>().unwrap(), body.len());
            assert!(body.ends_with('\n') && body.lines().count() == 1);
            assert!(head.contains("close"));
        }
    }

    // ----- encoding -----

    #[test]
    fn server_frame_headers() {
        for (len, hdr) in [
            (0usize, vec![0x81, 0]),
            (125, vec![0x81, 125]),
            (126, vec![0x81, 126, 0, 126]),
            (65535, vec![0x81, 126, 0xff, 0xff]),
            (65536, vec![0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ] {
            let mut out = Vec::new();
            frame_header(&mut out, opcode::TEXT, len);
            assert_eq!(out, hdr, "{len}");
            assert_eq!(frame_header_len(len), hdr.len());
        }
        let mut out = Vec::new();
        frame(&mut out, opcode::PONG, b"hi");
        assert_eq!(out, [0x8A, 2, b'h', b'i']);
    }

    #[test]
    fn close_frames_truncate_at_char_boundary() {
        let mut out = Vec::new();
        close_frame(&mut out, close_code::NORMAL, "bye");
        assert_eq!(out, [0x88, 5, 0x03, 0xE8, b'b', b'y', b'e']);
        // 61 two-byte chars = 122 bytes, plus one more would be 124 > 123.
        let reason = "é".repeat(70);
        let mut out = Vec::new();
        close_frame(&mut out, close_code::TOO_BIG, &reason);
        assert_eq!(out[1] as usize, 2 + 122);
        assert_eq!(out.len(), 2 + 2 + 122);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
        let reason = "x".repeat(200);
        let mut out = Vec::new();
        close_frame(&mut out, close_code::POLICY, &reason);
        assert_eq!(out.len(), 2 + 125);
    }

    #[test]
    fn client_frame_roundtrips_lengths() {
        for len in [0, 1, 7, 8, 9, 125, 126, 127, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let f = cf(opcode::BINARY, true, &payload);
            let mut d = Decoder::new(1 << 20);
            let (n, ev) = d.decode(&f).unwrap();
            assert_eq!(n, f.len());
            assert_eq!(ev, Some(Event::Message { text: false }));
            assert_eq!(d.message(), &payload[..]);
            // Every strict prefix is incomplete and consumes nothing.
            let mut d = Decoder::new(1 << 20);
            for cut in [0, 1, 2, 3, 5, f.len() - 1] {
                if cut < f.len() {
                    assert_eq!(d.decode(&f[..cut]), Ok((0, None)), "{len} {cut}");
                }
            }
        }
    }

    // ----- decoding: events -----

    #[test]
    fn single_frames() {
        let mut input = cf(opcode::TEXT, true, "héllo".as_bytes());
        input.extend(cf(opcode::BINARY, true, &[0, 1, 2, 255]));
        input.extend(cf(opcode::TEXT, true, b""));
        input.extend(cf(opcode::PING, true, b"p"));
        input.extend(cf(opcode::PONG, true, b""));
        input.extend(cf(opcode::CLOSE, true, b""));
        input.extend(cf(opcode::CLOSE, true, b"\x03\xe8bye"));
        let (seen, err) = run_chunked(&input, input.len(), 1024);
        assert_eq!(err, None);
        assert_eq!(
            seen,
            vec![
                Seen::Msg(true, "héllo".as_bytes().to_vec()),
                Seen::Msg(false, vec![0, 1, 2, 255]),
                Seen::Msg(true, vec![]),
                Seen::Ev(Event::Ping(cp(b"p"))),
                Seen::Ev(Event::Pong(cp(b""))),
                Seen::Ev(Event::Close {
                    code: None,
                    reason: ControlPayload::EMPTY
                }),
                Seen::Ev(Event::Close {
                    code: Some(1000),
                    reason: cp(b"bye")
                }),
            ]
        );
    }

    #[test]
    fn fragmented_with_interleaved_ping() {
        let mut input = cf(opcode::TEXT, false, b"Hel");
        input.extend(cf(opcode::PING, true, b"are you there"));
        input.extend(cf(opcode::CONTINUATION, false, b""));
        input.extend(cf(opcode::CONTINUATION, false, b"lo, "));
        input.extend(cf(opcode::PONG, true, b"x"));
        input.extend(cf(opcode::CONTINUATION, true, b"world"));
        input.extend(cf(opcode::BINARY, false, b"\xff"));
        input.extend(cf(opcode::CONTINUATION, true, b"\xfe"));
        let mut d = Decoder::new(1024);
        let mut rest = &input[..];
        let mut step = |d: &mut Decoder| {
            let (n, ev) = d.decode(rest).unwrap();
            rest = &rest[n..];
            (n > 0, ev)
        };
        assert_eq!(step(&mut d), (true, None));
        assert!(d.buffered() >= 3);
        assert_eq!(d.message(), b"Hel");
        assert_eq!(
            step(&mut d),
            (true, Some(Event::Ping(cp(b"are you there"))))
        );
        assert_eq!(step(&mut d), (true, None));
        assert_eq!(step(&mut d), (true, None));
        assert_eq!(step(&mut d), (true, Some(Event::Pong(cp(b"x")))));
        assert_eq!(step(&mut d), (true, Some(Event::Message { text: true })));
        assert_eq!(d.message(), b"Hello, world");
        d.consume_message();
        assert_eq!(d.message(), b"");
        assert_eq!(step(&mut d), (true, None));
        assert_eq!(step(&mut d), (true, Some(Event::Message { text: false })));
        assert_eq!(d.message(), b"\xff\xfe");
        assert_eq!(step(&mut d), (false, None));
    }

    #[test]
    fn utf8_split_across_fragments() {
        // "€" = E2 82 AC and "𝄞" = F0 9D 84 9E, split at every point over up to 4 fragments.
        let text = "a€b𝄞c".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let mut input = cf(opcode::TEXT, false, &text[..i]);
                input.extend(cf(opcode::CONTINUATION, false, &text[i..j]));
                input.extend(cf(opcode::CONTINUATION, true, &text[j..]));
                let (seen, err) = run_chunked(&input, input.len(), 64);
                assert_eq!(err, None, "{i} {j}");
                assert_eq!(seen, vec![Seen::Msg(true, text.to_vec())]);
            }
        }
    }

    /// Feeds `input` to one decoder a byte at a time, the way a read buffer grows, and
    /// returns how many bytes were in when the first error came (and the error).
    fn first_error_at(input: &[u8], max: usize) -> Option<(usize, WsError)> {
        let mut d = Decoder::new(max);
        let mut start = 0;
        for end in 1..=input.len() {
            loop {
                match d.decode(&input[start..end]) {
                    Err(e) => return Some((end, e)),
                    Ok((n, ev)) => {
                        start += n;
                        if matches!(ev, Some(Event::Message { .. })) {
                            d.consume_message();
                        }
                        if n == 0 && ev.is_none() {
                            break;
                        }
                    }
                }
            }
        }
        None
    }

    #[test]
    fn invalid_utf8_fails_inside_a_frame_that_is_still_arriving() {
        // Autobahn 6.4.3/6.4.4: one text frame sent in pieces, its payload broken in the
        // middle. The error comes with the first byte that makes it invalid, not when the
        // frame completes.
        let good = "κόσμε".as_bytes();
        for (bad, wrong_at) in [
            (&b"\xf4\x90\x80\x80"[..], 1), // past U+10FFFF: the 0x90
            (b"\xed\xa0\x80", 1),          // a surrogate: the 0xA0
            (b"\xe0\x80\x80", 1),          // overlong: the 0x80
            (b"\xc0\xaf", 0),              // never valid: the 0xC0
            (b"\xff", 0),
            (b"\xce\xba\x80", 2), // a stray continuation after a whole code point
        ] {
            for tail_len in [10, 200, 70_000] {
                let mut payload = good.to_vec();
                payload.extend_from_slice(bad);
                payload.extend(std::iter::repeat_n(b'e', tail_len));
                let f = cf(opcode::TEXT, true, &payload);
                let header = f.len() - payload.len();
                let at = first_error_at(&f, 1 << 20);
                assert_eq!(
                    at,
                    Some((header + good.len() + wrong_at + 1, WsError::InvalidUtf8)),
                    "{bad:?} + {tail_len}"
                );
                // The same in a continuation frame, after a first fragment.
                let mut input = cf(opcode::TEXT, false, b"start ");
                let first = input.len();
                input.extend(cf(opcode::CONTINUATION, true, &payload));
                assert_eq!(
                    first_error_at(&input, 1 << 20),
                    Some((
                        first + header + good.len() + wrong_at + 1,
                        WsError::InvalidUtf8
                    )),
                    "continuation {bad:?} + {tail_len}"
                );
                // Binary payloads are not UTF-8's business.
                assert_eq!(
                    first_error_at(&cf(opcode::BINARY, true, &payload), 1 << 20),
                    None
                );
            }
        }
        // Code points cut anywhere by the reads, and a frame whose text ends in the middle
        // of one that the next fragment completes, are fine.
        let text = "a€𝄞é".repeat(50);
        let mut input = cf(opcode::TEXT, false, &text.as_bytes()[..7]);
        input.extend(cf(opcode::CONTINUATION, true, &text.as_bytes()[7..]));
        input.extend(cf(opcode::TEXT, true, text.as_bytes()));
        assert_eq!(first_error_at(&input, 1 << 20), None);
        let (seen, err) = run_chunked(&input, 1, 1 << 20);
        assert_eq!(err, None);
        assert_eq!(
            seen,
            [
                Seen::Msg(true, text.clone().into_bytes()),
                Seen::Msg(true, text.into_bytes())
            ]
        );
        // A sequence still open where the frame's bytes stop is not an error yet; the
        // frame ending there is.
        let f = cf(opcode::TEXT, true, b"ok \xf0\x9f\x98");
        assert_eq!(
            first_error_at(&f, 64),
            Some((f.len(), WsError::InvalidUtf8))
        );
        let mut d = Decoder::new(64);
        assert_eq!(d.decode(&f[..f.len() - 1]), Ok((0, None)));
    }

    #[test]
    fn invalid_utf8_fails_in_the_fragment_where_it_occurs() {
        // A surrogate (ED A0 80) split after its lead byte: the second fragment is refused
        // even though the message is not finished.
        let mut d = Decoder::new(64);
        let f1 = cf(opcode::TEXT, false, b"ok\xed");
        assert_eq!(d.decode(&f1), Ok((f1.len(), None)));
        let f2 = cf(opcode::CONTINUATION, false, b"\xa0\x80");
        assert_eq!(d.decode(&f2), Err(WsError::InvalidUtf8));
        // Fail fast on bytes that can never start or continue anything.
        for bad in [
            &b"\xff"[..],
            b"\xc0\xaf",         // overlong
            b"\xe0\x80",         // overlong 3-byte prefix
            b"\xf4\x90",         // past U+10FFFF
            b"\xf5",             // never a lead byte
            b"a\x80",            // stray continuation
            b"\xce\xba\xe1\xbd", // fine, then the next fragment breaks it
        ] {
            let mut input = cf(opcode::TEXT, false, bad);
            input.extend(cf(opcode::CONTINUATION, false, b"\x41"));
            let mut d = Decoder::new(64);
            let r = d.decode(&input);
            if bad == b"\xce\xba\xe1\xbd" {
                let (n, ev) = r.unwrap();
                assert_eq!(ev, None);
                assert_eq!(d.decode(&input[n..]), Err(WsError::InvalidUtf8));
            } else {
                assert_eq!(r, Err(WsError::InvalidUtf8), "{bad:?}");
            }
            assert_eq!(code_of(&input), close_code::INVALID_PAYLOAD);
        }
        // A sequence cut short at the end of the message.
        let mut input = cf(opcode::TEXT, false, b"x\xf0\x9d");
        input.extend(cf(opcode::CONTINUATION, true, b"\x84"));
        assert_eq!(code_of(&input), close_code::INVALID_PAYLOAD);
        assert_eq!(
            code_of(&cf(opcode::TEXT, true, b"\xe2\x82")),
            close_code::INVALID_PAYLOAD
        );
        // Binary messages are not checked.
        let (seen, err) = run_chunked(&cf(opcode::BINARY, true, b"\xff\xed\xa0"), 100, 64);
        assert_eq!(err, None);
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn utf8_state_machine_matches_std() {
        // Every 1-3 byte string over an interesting alphabet, fed in every split.
        let alphabet = [
            0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0,
            0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff,
        ];
        let mut strings: Vec<Vec<u8>> = vec![vec![]];
        let mut layer: Vec<Vec<u8>> = vec![vec![]];
        for _ in 0..3 {
            layer = layer
                .iter()
                .flat_map(|s| {
                    alphabet.iter().map(move |&b| {
                        let mut t = s.clone();
                        t.push(b);
                        t
                    })
                })
                .collect();
            strings.extend(layer.iter().cloned());
        }
        // Witnesses for "some continuation makes it valid": each allowed second-byte range
        // contains one of these.
        let tails = [0x80u8, 0xa0];
        let completable = |s: &[u8]| {
            (0..4).any(|extra| {
                (0..(1usize << extra)).any(|bits| {
                    let mut t = s.to_vec();
                    t.extend((0..extra).map(|k| tails[(bits >> k) & 1]));
                    std::str::from_utf8(&t).is_ok()
                })
            })
        };
        for s in &strings {
            let valid = std::str::from_utf8(s).is_ok();
            for cut in 0..=s.len() {
                let mut u = Utf8::START;
                let ok = u.feed(&s[..cut]) && u.feed(&s[cut..]) && u.need == 0;
                assert_eq!(ok, valid, "{s:x?} cut {cut}");
            }
            // Fail fast: refused exactly when no continuation could make it valid.
            let mut u = Utf8::START;
            assert_eq!(u.feed(s), completable(s), "{s:x?}");
        }
    }

    // ----- decoding: every rule, with its close code -----

    #[test]
    fn unmasked_frame_is_protocol_error() {
        let mut f = Vec::new();
        frame(&mut f, opcode::TEXT, b"hi");
        assert_eq!(code_of(&f), close_code::PROTOCOL_ERROR);
    }

    #[test]
    fn reserved_bits_are_protocol_errors() {
        for bit in [0x40, 0x20, 0x10] {
            let mut f = cf(opcode::TEXT, true, b"hi");
            f[0] |= bit;
            assert_eq!(code_of(&f), close_code::PROTOCOL_ERROR);
            // Detected from the first byte alone.
            assert!(Decoder::new(64).decode(&f[..1]).is_err());
        }
    }

    #[test]
    fn unknown_opcodes_are_protocol_errors() {
        for op in (3..=7).chain(0xB..=0xF) {
            assert_eq!(
                code_of(&cf(op, true, b"")),
                close_code::PROTOCOL_ERROR,
                "{op}"
            );
            assert_eq!(
                code_of(&cf(op, true, b"x")),
                close_code::PROTOCOL_ERROR,
                "{op}"
            );
        }
    }

    #[test]
    fn control_frames_need_fin_and_125_bytes() {
        for op in [opcode::PING, opcode::PONG, opcode::CLOSE] {
            assert_eq!(code_of(&cf(op, false, b"")), close_code::PROTOCOL_ERROR);
            assert_eq!(
                code_of(&cf(op, true, &[b'a'; 126])),
                close_code::PROTOCOL_ERROR
            );
            // 125 is fine (for close: a code and 123 bytes of reason).
            let mut p = vec![0x03, 0xe8];
            p.extend([b'r'; 123]);
            let f = cf(op, true, &p);
            let (n, ev) = Decoder::new(0).decode(&f).unwrap();
            assert_eq!(n, f.len());
            assert!(ev.is_some());
        }
        // Detected from the length byte, before any payload: a 16-bit length is refused.
        let f = cf(opcode::PING, true, &[0; 200]);
        assert_eq!(
            Decoder::new(64).decode(&f[..2]),
            Err(WsError::Protocol("control frame over 125 bytes"))
        );
    }

    #[test]
    fn empty_fragments_are_bounded_per_message() {
        // A message of `n` frames, all empty but a final one holding `tail`.
        let msg = |n: usize, tail: &[u8]| -> Vec<u8> {
            let mut v = cf(opcode::TEXT, n == 1, if n == 1 { tail } else { b"" });
            for i in 1..n {
                let last = i == n - 1;
                v.extend(cf(
                    opcode::CONTINUATION,
                    last,
                    if last { tail } else { b"" },
                ));
            }
            v
        };
        // 16 by default: 16 empty frames (the final one too) pass, a 17th does not.
        let (seen, e) = run_chunked(&msg(16, b""), 1, 1024);
        assert_eq!((seen, e), (vec![Seen::Msg(true, vec![])], None));
        let (seen, e) = run_chunked(&msg(17, b"x"), 7, 1024);
        assert_eq!((seen, e), (vec![Seen::Msg(true, b"x".to_vec())], None));
        let e = err_of(&msg(17, b""));
        assert_eq!((e, e.close_code()), (WsError::TooManyEmptyFragments, 1008));
        // Refused at the 17th frame, never reading further: an endless stream of them
        // costs 17 frames of work.
        let endless: Vec<u8> = cf(opcode::TEXT, false, b"")
            .into_iter()
            .chain((0..1000).flat_map(|_| cf(opcode::CONTINUATION, false, b"")))
            .collect();
        let mut d = Decoder::new(1024);
        let mut at = 0;
        let err = loop {
            match d.decode(&endless[at..]) {
                Ok((n, None)) if n > 0 => at += n,
                Ok(other) => panic!("{other:?} at {at}"),
                Err(e) => break e,
            }
        };
        assert_eq!((err, at), (WsError::TooManyEmptyFragments, 16 * 6));
        // The count is per message: many messages of 16 empty frames each are fine, and
        // non-empty fragments do not count.
        let many = [msg(16, b""), msg(16, b"ab"), msg(16, b"")].concat();
        let (seen, e) = run_chunked(&many, 5, 1024);
        assert_eq!((seen.len(), e), (3, None));
        let mut mixed = cf(opcode::TEXT, false, b"a");
        for _ in 0..40 {
            mixed.extend(cf(opcode::CONTINUATION, false, b"b"));
        }
        mixed.extend(cf(opcode::CONTINUATION, true, b""));
        assert_eq!(run_chunked(&mixed, 3, 1024).1, None);
        // Control frames between fragments do not count either.
        let mut pinged = cf(opcode::TEXT, false, b"");
        for _ in 0..20 {
            pinged.extend(cf(opcode::PING, true, b""));
        }
        pinged.extend(cf(opcode::CONTINUATION, true, b"z"));
        assert_eq!(run_chunked(&pinged, 64, 1024).1, None);
    }

    #[test]
    fn the_empty_fragment_limit_is_a_parameter() {
        let run = |max_empty: u16, input: &[u8]| {
            let mut d = Decoder::new(1024).with_max_empty_fragments(max_empty);
            let mut at = 0;
            loop {
                match d.decode(&input[at..]) {
                    Ok((0, None)) => return Ok(at),
                    Ok((n, ev)) => {
                        at += n;
                        if ev.is_some() {
                            d.consume_message();
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        let three = [
            cf(opcode::TEXT, false, b""),
            cf(opcode::CONTINUATION, false, b""),
            cf(opcode::CONTINUATION, true, b""),
        ]
        .concat();
        assert_eq!(run(3, &three), Ok(three.len()));
        assert_eq!(run(2, &three), Err(WsError::TooManyEmptyFragments));
        // An unfragmented empty message is one empty frame.
        assert_eq!(run(1, &cf(opcode::TEXT, true, b"")), Ok(6));
        assert_eq!(
            run(0, &cf(opcode::BINARY, true, b"")),
            Err(WsError::TooManyEmptyFragments)
        );
        // A large limit is a large limit.
        let mut lots = cf(opcode::TEXT, false, b"");
        for _ in 0..999 {
            lots.extend(cf(opcode::CONTINUATION, false, b""));
        }
        lots.extend(cf(opcode::CONTINUATION, true, b"."));
        assert_eq!(run(1000, &lots), Ok(lots.len()));
        assert_eq!(run(999, &lots), Err(WsError::TooManyEmptyFragments));
    }

    #[test]
    fn continuation_without_message_is_protocol_error() {
        assert_eq!(
            code_of(&cf(opcode::CONTINUATION, true, b"x")),
            close_code::PROTOCOL_ERROR
        );
        // Also right after a finished message.
        let mut input = cf(opcode::TEXT, true, b"done");
        input.extend(cf(opcode::CONTINUATION, false, b"x"));
        assert_eq!(code_of(&input), close_code::PROTOCOL_ERROR);
    }

    #[test]
    fn new_message_inside_fragmented_message_is_protocol_error() {
        for op in [opcode::TEXT, opcode::BINARY] {
            let mut input = cf(opcode::BINARY, false, b"a");
            input.extend(cf(op, true, b"b"));
            assert_eq!(code_of(&input), close_code::PROTOCOL_ERROR);
        }
    }

    #[test]
    fn sixty_four_bit_length_top_bit_is_protocol_error() {
        let mut f = vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        f.extend(MASK);
        assert_eq!(
            err_of_max(&f, usize::MAX),
            WsError::Protocol("64-bit length with the top bit set")
        );
        assert_eq!(code_of(&f), close_code::PROTOCOL_ERROR);
    }

    #[test]
    fn non_minimal_lengths_are_accepted() {
        // 5 bytes with a 16-bit and with a 64-bit length.
        let payload = b"hello";
        for hdr in [
            vec![0x81, 0x80 | 126, 0, 5],
            vec![0x81, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 5],
        ] {
            let mut f = hdr;
            f.extend(MASK);
            let start = f.len();
            f.extend(payload);
            apply_mask(&mut f[start..], MASK);
            let (seen, err) = run_chunked(&f, 1, 64);
            assert_eq!(err, None);
            assert_eq!(seen, vec![Seen::Msg(true, payload.to_vec())]);
        }
    }

    #[test]
    fn too_big_detected_from_the_header() {
        // Exactly at the limit is fine.
        let (seen, err) = run_chunked(&cf(opcode::BINARY, true, &[1; 100]), 7, 100);
        assert_eq!((seen.len(), err), (1, None));
        // One over, in a single frame: refused from the 4-byte header alone.
        let f = cf(opcode::BINARY, true, &[1; 200]);
        assert_eq!(Decoder::new(199).decode(&f[..4]), Err(WsError::TooBig));
        assert_eq!(err_of_max(&f, 199).close_code(), close_code::TOO_BIG);
        // Over the limit as the sum of fragments.
        let mut input = cf(opcode::TEXT, false, &[b'a'; 60]);
        input.extend(cf(opcode::PING, true, b""));
        input.extend(cf(opcode::CONTINUATION, false, &[b'a'; 40]));
        input.extend(cf(opcode::CONTINUATION, true, b"a"));
        assert_eq!(err_of_max(&input, 100).close_code(), close_code::TOO_BIG);
        // A huge 64-bit length.
        let mut f = vec![
            0x82,
            0x80 | 127,
            0x7f,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
        ];
        f.extend(MASK);
        assert_eq!(err_of_max(&f, 1 << 40), WsError::TooBig);
        // Control frames are not counted against the message limit.
        let (seen, err) = run_chunked(&cf(opcode::PING, true, &[1; 100]), 3, 0);
        assert_eq!((seen.len(), err), (1, None));
    }

    #[test]
    fn close_payload_rules() {
        let close = |p: &[u8]| cf(opcode::CLOSE, true, p);
        assert_eq!(code_of(&close(b"\x03")), close_code::PROTOCOL_ERROR);
        for code in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert_eq!(
                code_of(&close(&code.to_be_bytes())),
                close_code::PROTOCOL_ERROR,
                "{code}"
            );
        }
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            let (seen, err) = run_chunked(&close(&code.to_be_bytes()), 1, 0);
            assert_eq!(err, None);
            assert_eq!(
                seen,
                vec![Seen::Ev(Event::Close {
                    code: Some(code),
                    reason: ControlPayload::EMPTY
                })]
            );
        }
        assert_eq!(
            code_of(&close(b"\x03\xe8ok\xff")),
            close_code::INVALID_PAYLOAD
        );
        assert_eq!(
            code_of(&close(b"\x03\xe8\xe2\x82")),
            close_code::INVALID_PAYLOAD
        );
    }

    // ----- decoding: splits, buffers, size -----

    fn stream() -> Vec<u8> {
        let mut s = cf(opcode::TEXT, false, "frag€".as_bytes());
        s.extend(cf(opcode::PING, true, b"ping"));
        s.extend(cf(opcode::CONTINUATION, false, &[b'm'; 130]));
        s.extend(cf(opcode::CONTINUATION, true, "𝄞 end".as_bytes()));
        s.extend(cf(opcode::BINARY, true, &[9; 300]));
        s.extend(cf(opcode::PONG, true, b""));
        s.extend(cf(opcode::TEXT, true, b"{\"op\":\"sub\",\"ch\":\"news\"}"));
        s.extend(cf(opcode::CLOSE, true, b"\x03\xe9gone"));
        s
    }

    #[test]
    fn every_split_point_equals_whole() {
        let s = stream();
        let whole = run_chunked(&s, s.len(), 1024);
        assert_eq!(whole.1, None);
        assert_eq!(whole.0.len(), 6);
        for step in 1..=s.len() {
            assert_eq!(run_chunked(&s, step, 1024), whole, "step {step}");
        }
        // Every single split point into two pieces.
        for cut in 0..=s.len() {
            let mut d = Decoder::new(1024);
            let mut buf = s[..cut].to_vec();
            let mut seen = Vec::new();
            for piece in [&[][..], &s[cut..]] {
                buf.extend_from_slice(piece);
                loop {
                    let (n, ev) = d.decode(&buf).unwrap();
                    buf.drain(..n);
                    match ev {
                        Some(Event::Message { text }) => {
                            seen.push(Seen::Msg(text, d.message().to_vec()))
                        }
                        Some(e) => seen.push(Seen::Ev(e)),
                        None if n == 0 => break,
                        None => {}
                    }
                }
            }
            assert_eq!(seen, whole.0, "cut {cut}");
        }
        // Errors in the middle of a stream too.
        let mut bad = s.clone();
        bad.truncate(bad.len() - 12);
        bad.extend(cf(opcode::CONTINUATION, true, b"x"));
        let whole = run_chunked(&bad, bad.len(), 1024);
        assert!(whole.1.is_some());
        for step in 1..=bad.len() {
            assert_eq!(run_chunked(&bad, step, 1024), whole, "step {step}");
        }
    }

    #[test]
    fn buffers_stay_small() {
        let mut d = Decoder::new(1 << 20);
        assert_eq!(d.buffered(), 0);
        let f = cf(opcode::BINARY, true, &[0; 100]);
        assert_eq!(d.decode(&f).unwrap().0, f.len());
        d.consume_message();
        assert!(d.buffered() >= 100 && d.buffered() <= KEEP_CAPACITY);
        let f = cf(opcode::BINARY, true, &[0; 100_000]);
        d.decode(&f).unwrap();
        assert!(d.buffered() >= 100_000);
        d.consume_message();
        assert_eq!(d.buffered(), 0);
        // Decoding again without consume_message drops the previous message.
        let f = cf(opcode::TEXT, true, b"a");
        d.decode(&f).unwrap();
        let g = cf(opcode::TEXT, true, b"b");
        assert_eq!(
            d.decode(&g),
            Ok((g.len(), Some(Event::Message { text: true })))
        );
        assert_eq!(d.message(), b"b");
        assert!(std::mem::size_of::<Decoder>() <= 48);
    }

    #[test]
    fn mask_matches_bytewise() {
        for len in 0..40 {
            let mut a: Vec<u8> = (0..len as u8).collect();
            let b: Vec<u8> = a.iter().enumerate().map(|(i, x)| x ^ MASK[i % 4]).collect();
            apply_mask(&mut a, MASK);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn errors_map_to_close_codes() {
        assert_eq!(WsError::Protocol("x").close_code(), 1002);
        assert_eq!(WsError::InvalidUtf8.close_code(), 1007);
        assert_eq!(WsError::TooBig.close_code(), 1009);
        assert!(WsError::TooBig.to_string().len() <= MAX_CLOSE_REASON);
    }
}
