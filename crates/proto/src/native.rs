//! The native JSON protocol spoken over WebSocket text frames: parsing client requests
//! (`{"op":"sub","ch":"news","id":1}`, `unsub`, `pub`, `ping`) and writing every server
//! message (deliveries, `ok`, `error`, `reset`, `pong`) plus the body of `POST /pub`'s answer.
//!
//! Parsing borrows from the message: the channel is a `Cow` (borrowed unless it has escapes),
//! `id` and `data` are slices of the original text, so a request costs no allocation in the
//! common case. The message is first checked whole by [`crate::json::is_valid`] (the same
//! grammar and depth limit as every other JSON check in corecast, property-tested against
//! `serde_json`), then walked once more to pick out the members; the second walk can then
//! skip values without re-validating them.
//!
//! Writers append to a caller-owned `Vec<u8>` and have exact `*_len` twins where a frame must
//! be sized before it is written (a WebSocket header precedes its payload).
//!
//! Positions travel as `"epoch":"<lowercase hex>"` (a string, so JavaScript's doubles never
//! round a 64-bit epoch) and `"seq":<number>`.

use std::borrow::Cow;

use thiserror::Error;

use crate::json;

/// A channel position: the channel's history epoch and the sequence number of a message in
/// it. The epoch changes whenever the history is lost, so a position from before the loss is
/// recognised as stale instead of being misread as a place in the new history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Position {
    /// Identifies one continuous history of the channel (written as lowercase hex).
    pub epoch: u64,
    /// Sequence number within that history (written as a JSON number).
    pub seq: u64,
}

/// What a client asks for; the `op` member of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `"sub"`: subscribe to `ch` (optionally resuming after `since`).
    Sub,
    /// `"unsub"`: drop the subscription to `ch`.
    Unsub,
    /// `"pub"`: publish `data` to `ch`.
    Pub,
    /// `"ping"`: ask for a `pong`, so a client can measure or keep its connection alive.
    Ping,
}

impl OpKind {
    /// The op's wire name, for logs and replies that name it.
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Sub => "sub",
            OpKind::Unsub => "unsub",
            OpKind::Pub => "pub",
            OpKind::Ping => "ping",
        }
    }
}

/// Longest accepted `id`, in bytes of JSON text (quotes included for a string): the id is
/// echoed in every answer, so its size is bounded to keep answers small.
pub const MAX_ID_LEN: usize = 64;

/// One client request, borrowing from the message text so parsing allocates nothing unless
/// the channel name has escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// What is asked.
    pub op: OpKind,
    /// The channel, JSON-unescaped to UTF-8 bytes (borrowed when it has no escapes). Always
    /// present for sub, unsub and pub; passed through (when given) for ping.
    pub ch: Option<Cow<'a, [u8]>>,
    /// The raw JSON text of `id` (a number or a string, at most [`MAX_ID_LEN`] bytes), to be
    /// echoed back byte for byte so the client can match answers to requests.
    pub id: Option<&'a [u8]>,
    /// The raw JSON text of `data` (any valid JSON value, `null` included), without the
    /// surrounding whitespace, so a publish splices it into deliveries untouched. Always
    /// present for pub.
    pub data: Option<&'a [u8]>,
    /// Where a subscription resumes: deliver everything after this position from history.
    pub since: Option<Position>,
}

/// Why a request is refused. [`NativeError::code`] is the machine-readable `code` of the
/// error reply, `Display` (or the allocation-free [`NativeError::msg`]) its `msg`, and
/// [`NativeError::id`] the request's id when it could be read, so the reply can carry it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NativeError<'a> {
    /// The message is not valid JSON, or not a JSON object.
    #[error("{0}")]
    BadJson(&'static str),
    /// A member has the wrong type or value, or one the op needs is missing.
    #[error("{what}")]
    BadRequest {
        /// What is wrong, in words for the client.
        what: &'static str,
        /// The request's raw `id`, when it was valid.
        id: Option<&'a [u8]>,
    },
    /// `op` is a string naming no known operation (reported before any other member is
    /// judged, since a newer op may give members other meanings).
    #[error("unknown op")]
    UnknownOp {
        /// The request's raw `id`, when it was valid.
        id: Option<&'a [u8]>,
    },
}

impl<'a> NativeError<'a> {
    /// The `code` of the error reply: `bad_json`, `bad_request` or `unknown_op`, so clients
    /// can branch on it without parsing the message.
    pub fn code(&self) -> &'static str {
        match self {
            NativeError::BadJson(_) => "bad_json",
            NativeError::BadRequest { .. } => "bad_request",
            NativeError::UnknownOp { .. } => "unknown_op",
        }
    }

    /// The human-readable `msg` of the error reply, without the allocation `to_string` costs.
    pub fn msg(&self) -> &'static str {
        match self {
            NativeError::BadJson(what) => what,
            NativeError::BadRequest { what, .. } => what,
            NativeError::UnknownOp { .. } => "unknown op",
        }
    }

    /// The raw JSON text of the request's `id`, when it was present and valid, so the error
    /// reply can be matched to its request. Never set for `bad_json`.
    pub fn id(&self) -> Option<&'a [u8]> {
        match self {
            NativeError::BadJson(_) => None,
            NativeError::BadRequest { id, .. } | NativeError::UnknownOp { id } => *id,
        }
    }
}

/// Raw member values, last one wins; `null` has already been turned into "absent" except for
/// `data`, where `null` is the published value.
#[derive(Default)]
struct Members<'a> {
    op: Option<&'a [u8]>,
    ch: Option<&'a [u8]>,
    id: Option<&'a [u8]>,
    data: Option<&'a [u8]>,
    since: Option<&'a [u8]>,
}

const SINCE_SHAPE: &str = "since must be {\"epoch\":\"<lowercase hex>\",\"seq\":<integer>}";

/// Parses one text message: a JSON object with `op` and the optional members `ch`, `id`,
/// `data` and `since`, in any order, with any JSON whitespace. Why it is this shape:
///
/// - Unknown members are ignored, so clients may send fields newer servers will understand.
/// - Duplicate members: the last one wins, as with JavaScript's `JSON.parse`, so what the
///   server does matches what a JavaScript client would read back from its own message.
/// - A member whose value is `null` counts as absent (`{"since":null}` is a plain
///   subscription), except `data`, where `null` is a value that can be published.
/// - `id`, when present, must be a number or a string of at most [`MAX_ID_LEN`] bytes of JSON
///   text (it is echoed raw, so it must be a JSON scalar, and bounded).
/// - `since` is `{"epoch":"<hex>","seq":<n>}`: the epoch as lowercase hex without leading
///   zeros (`"0"` for zero) and seq a plain non-negative integer below 2^64, exactly as the
///   server writes them, so a position has one spelling. Other members of `since` are
///   ignored.
/// - Checks run in this order: valid JSON object (`bad_json`), `op` present and a string
///   (`bad_request`), a known op (`unknown_op`), then the other members (`bad_request`).
///
/// Never panics, whatever the bytes; allocates only to unescape a channel name with escapes.
pub fn parse_request(text: &[u8]) -> Result<Request<'_>, NativeError<'_>> {
    if !json::is_valid(text) {
        return Err(NativeError::BadJson("invalid JSON"));
    }
    let start = skip_ws(text, 0);
    if text.get(start) != Some(&b'{') {
        return Err(NativeError::BadJson("not a JSON object"));
    }
    let mut m = Members::default();
    let walked = members(text, start, |key, value| {
        let null = value == b"null";
        let slot = if key_is(key, b"op") {
            &mut m.op
        } else if key_is(key, b"ch") {
            &mut m.ch
        } else if key_is(key, b"id") {
            &mut m.id
        } else if key_is(key, b"data") {
            m.data = Some(value);
            return;
        } else if key_is(key, b"since") {
            &mut m.since
        } else {
            return;
        };
        *slot = (!null).then_some(value);
    });
    if walked.is_none() {
        // Unreachable for text the validator accepted; kept so no input can panic.
        return Err(NativeError::BadJson("invalid JSON"));
    }

    // The id first, so that every later error can carry it.
    let (id, id_err) = match m.id {
        None => (None, None),
        Some(v)
            if v.len() <= MAX_ID_LEN && matches!(v.first(), Some(b'"' | b'-' | b'0'..=b'9')) =>
        {
            (Some(v), None)
        }
        Some(_) => (
            None,
            Some("id must be a number or a string of at most 64 bytes"),
        ),
    };
    let bad = |what| NativeError::BadRequest { what, id };

    let op = match m.op {
        None => return Err(bad("missing op")),
        Some(v) => {
            let inner = string_inner(v).ok_or_else(|| bad("op must be a string"))?;
            if key_is(inner, b"sub") {
                OpKind::Sub
            } else if key_is(inner, b"unsub") {
                OpKind::Unsub
            } else if key_is(inner, b"pub") {
                OpKind::Pub
            } else if key_is(inner, b"ping") {
                OpKind::Ping
            } else {
                return Err(NativeError::UnknownOp { id });
            }
        }
    };
    if let Some(what) = id_err {
        return Err(bad(what));
    }
    let ch = match m.ch {
        None => None,
        Some(v) => {
            let inner = string_inner(v).ok_or_else(|| bad("ch must be a string"))?;
            Some(unescape(inner).ok_or_else(|| bad("ch must be a string"))?)
        }
    };
    if ch.is_none() && op != OpKind::Ping {
        return Err(bad("missing ch"));
    }
    if m.data.is_none() && op == OpKind::Pub {
        return Err(bad("missing data"));
    }
    let since = match m.since {
        None => None,
        Some(v) => Some(parse_since(v).ok_or_else(|| bad(SINCE_SHAPE))?),
    };
    Ok(Request {
        op,
        ch,
        id,
        data: m.data,
        since,
    })
}

/// `{"epoch":"<hex>","seq":<n>}` (raw value text, already known to be valid JSON).
fn parse_since(v: &[u8]) -> Option<Position> {
    if v.first() != Some(&b'{') {
        return None;
    }
    let (mut epoch, mut seq) = (None, None);
    members(v, 0, |key, value| {
        if key_is(key, b"epoch") {
            epoch = Some(value);
        } else if key_is(key, b"seq") {
            seq = Some(value);
        }
    })?;
    Some(Position {
        epoch: parse_hex(string_inner(epoch?)?)?,
        seq: parse_dec(seq?)?,
    })
}

/// Canonical lowercase hex (`0`, or 1..=16 digits without a leading zero), as [`write_hex`]
/// writes it; anything else is `None`.
pub(crate) fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 || (s.len() > 1 && s[0] == b'0') {
        return None;
    }
    s.iter().try_fold(0u64, |n, &c| {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        Some(n << 4 | u64::from(d))
    })
}

/// Canonical decimal (`0`, or digits without a leading zero) that fits a u64.
pub(crate) fn parse_dec(s: &[u8]) -> Option<u64> {
    if s.is_empty() || (s.len() > 1 && s[0] == b'0') {
        return None;
    }
    s.iter().try_fold(0u64, |n, &c| {
        if !c.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(c - b'0'))
    })
}

// ---- Walking text already known to be valid JSON ----------------------------------------

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = s.get(i) {
        i += 1;
    }
    i
}

/// End (one past the closing quote) of the string whose opening quote is at `i`.
fn skip_string(s: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match s.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// End of the value starting at `i`.
fn skip_value(s: &[u8], i: usize) -> Option<usize> {
    match s.get(i)? {
        b'"' => skip_string(s, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match s.get(j)? {
                    b'"' => {
                        j = skip_string(s, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.checked_sub(1)?;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while let Some(c) = s.get(j) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// Calls `f(key_inner, value)` for each member of the object whose `{` is at `start`: the
/// key without its quotes (still escaped) and the value's text without surrounding space.
fn members<'a>(s: &'a [u8], start: usize, mut f: impl FnMut(&'a [u8], &'a [u8])) -> Option<()> {
    let mut i = skip_ws(s, start + 1);
    if s.get(i)? == &b'}' {
        return Some(());
    }
    loop {
        i = skip_ws(s, i);
        if s.get(i)? != &b'"' {
            return None;
        }
        let key_end = skip_string(s, i)?;
        let key = s.get(i + 1..key_end - 1)?;
        i = skip_ws(s, key_end);
        if s.get(i)? != &b':' {
            return None;
        }
        i = skip_ws(s, i + 1);
        let end = skip_value(s, i)?;
        f(key, s.get(i..end)?);
        i = skip_ws(s, end);
        match s.get(i)? {
            b',' => i += 1,
            b'}' => return Some(()),
            _ => return None,
        }
    }
}

/// The inside of a string value's text, or `None` when the value is not a string.
fn string_inner(v: &[u8]) -> Option<&[u8]> {
    match v {
        [b'"', inner @ .., b'"'] => Some(inner),
        _ => None,
    }
}

/// Decodes the escapes of a (valid) string's inside, handing UTF-8 pieces to `sink`, which
/// may stop the walk by returning false. Returns false if stopped or malformed.
fn decode(inner: &[u8], mut sink: impl FnMut(&[u8]) -> bool) -> bool {
    let mut run = 0;
    let mut i = 0;
    while i < inner.len() {
        if inner[i] != b'\\' {
            i += 1;
            continue;
        }
        if !sink(&inner[run..i]) {
            return false;
        }
        let Some(&e) = inner.get(i + 1) else {
            return false;
        };
        let short = match e {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => 0,
            _ => return false,
        };
        if e != b'u' {
            if !sink(&[short]) {
                return false;
            }
            i += 2;
        } else {
            let Some(hi) = hex4(inner, i + 2) else {
                return false;
            };
            i += 6;
            let code = if (0xD800..0xDC00).contains(&hi) {
                let lo = match inner.get(i..i + 2) {
                    Some(b"\\u") => hex4(inner, i + 2),
                    _ => None,
                };
                let Some(lo @ 0xDC00..=0xDFFF) = lo else {
                    return false;
                };
                i += 6;
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            } else {
                hi
            };
            let Some(c) = char::from_u32(code) else {
                return false;
            };
            if !sink(c.encode_utf8(&mut [0; 4]).as_bytes()) {
                return false;
            }
        }
        run = i;
    }
    sink(inner.get(run..).unwrap_or_default())
}

fn hex4(s: &[u8], i: usize) -> Option<u32> {
    s.get(i..i + 4)?
        .iter()
        .try_fold(0u32, |n, &c| Some(n << 4 | (c as char).to_digit(16)?))
}

/// Whether a string's inside decodes to exactly `name`, without allocating.
fn key_is(inner: &[u8], name: &[u8]) -> bool {
    if !inner.contains(&b'\\') {
        return inner == name;
    }
    let mut rest = name;
    decode(inner, |piece| match rest.strip_prefix(piece) {
        Some(r) => {
            rest = r;
            true
        }
        None => false,
    }) && rest.is_empty()
}

/// A string's inside, unescaped: borrowed when there is nothing to unescape.
fn unescape(inner: &[u8]) -> Option<Cow<'_, [u8]>> {
    if !inner.contains(&b'\\') {
        return Some(Cow::Borrowed(inner));
    }
    // Unescaping never lengthens: `\n` is 2 bytes for 1, `\uXXXX` 6 for at most 3.
    let mut out = Vec::with_capacity(inner.len());
    decode(inner, |piece| {
        out.extend_from_slice(piece);
        true
    })
    .then_some(Cow::Owned(out))
}

// ---- Writing -------------------------------------------------------------------------------

/// For each byte: 0 when it goes out as is, else the letter after the backslash (`u` for the
/// `\u00XX` form). The same choices as `serde_json`, so outputs can be compared byte for byte.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The escape for one invalid UTF-8 sequence: U+FFFD REPLACEMENT CHARACTER, as ASCII text.
const REPLACEMENT: &[u8] = b"\\ufffd";

fn escaped_len(b: u8) -> usize {
    match ESCAPE[b as usize] {
        0 => 1,
        b'u' => 6,
        _ => 2,
    }
}

/// Appends `bytes` as a JSON string: quoted, with `"` and `\` escaped and control characters
/// written as `\b \t \n \f \r` or `\u00XX` (the forms `serde_json` uses). Any bytes are
/// accepted because a RESP payload may be any bytes: each maximal invalid UTF-8 sequence
/// becomes one `\ufffd`, exactly where `String::from_utf8_lossy` puts U+FFFD, so the output
/// is always valid JSON and valid UTF-8 (a WebSocket text frame must be).
pub fn write_json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut run = 0;
        for (i, &b) in valid.iter().enumerate() {
            let e = ESCAPE[b as usize];
            if e == 0 {
                continue;
            }
            out.extend_from_slice(&valid[run..i]);
            if e == b'u' {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            } else {
                out.extend_from_slice(&[b'\\', e]);
            }
            run = i + 1;
        }
        out.extend_from_slice(&valid[run..]);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(REPLACEMENT);
        }
    }
    out.push(b'"');
}

/// Exact number of bytes [`write_json_string`] appends for `bytes`, so a frame can be sized
/// (and its header written) before its body.
pub fn json_string_len(bytes: &[u8]) -> usize {
    let mut n = 2;
    for chunk in bytes.utf8_chunks() {
        n += chunk.valid().bytes().map(escaped_len).sum::<usize>();
        if !chunk.invalid().is_empty() {
            n += REPLACEMENT.len();
        }
    }
    n
}

fn write_dec(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn dec_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// Lowercase hex without leading zeros (`0` for zero): the epoch's spelling everywhere.
pub(crate) fn write_hex(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 16];
    let len = hex_len(n);
    for (k, slot) in buf[..len].iter_mut().rev().enumerate() {
        *slot = HEX[((n >> (4 * k)) & 0xf) as usize];
    }
    out.extend_from_slice(&buf[..len]);
}

/// Length of [`write_hex`]'s output.
pub(crate) fn hex_len(n: u64) -> usize {
    (64 - n.leading_zeros() as usize).div_ceil(4).max(1)
}

fn write_id(out: &mut Vec<u8>, id: Option<&[u8]>) {
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        out.extend_from_slice(id);
    }
}

/// `"epoch":"<hex>","seq":<n>`
fn write_position(out: &mut Vec<u8>, pos: Position) {
    out.extend_from_slice(b"\"epoch\":\"");
    write_hex(out, pos.epoch);
    out.extend_from_slice(b"\",\"seq\":");
    write_dec(out, pos.seq);
}

/// Appends a delivery, `{"ch":<ch>,"seq":<seq>,"data":<payload>}`. With `json` true the
/// payload is spliced byte for byte (the caller has checked it with
/// [`crate::json::is_valid`], once per message), so subscribers get exactly the published
/// JSON; otherwise it goes as a JSON string (see [`write_json_string`]), so any payload can
/// be delivered. The channel is written as a JSON string too.
pub fn delivery(out: &mut Vec<u8>, ch: &[u8], seq: u64, payload: &[u8], json: bool) {
    out.extend_from_slice(b"{\"ch\":");
    write_json_string(out, ch);
    out.extend_from_slice(b",\"seq\":");
    write_dec(out, seq);
    out.extend_from_slice(b",\"data\":");
    if json {
        out.extend_from_slice(payload);
    } else {
        write_json_string(out, payload);
    }
    out.push(b'}');
}

/// Exact number of bytes [`delivery`] appends, so the WebSocket header can be written first.
pub fn delivery_len(ch: &[u8], seq: u64, payload: &[u8], json: bool) -> usize {
    let data = if json {
        payload.len()
    } else {
        json_string_len(payload)
    };
    br#"{"ch":,"seq":,"data":}"#.len() + json_string_len(ch) + dec_len(seq) + data
}

/// Appends `{"op":"ok","id":<id>}` (the id omitted when `None`): the answer to an unsub, or to
/// any request that only needs acknowledging. `id` is the raw text from [`Request::id`].
pub fn ok(out: &mut Vec<u8>, id: Option<&[u8]>) {
    out.extend_from_slice(b"{\"op\":\"ok\"");
    write_id(out, id);
    out.push(b'}');
}

/// Appends a sub's answer, `{"op":"ok","id":1,"ch":"news","epoch":"1f","seq":42}`: the
/// channel's position when the subscription became active, so the client knows where its
/// stream starts and can resume from there later.
pub fn subscribed(out: &mut Vec<u8>, id: Option<&[u8]>, ch: &[u8], pos: Position) {
    out.extend_from_slice(b"{\"op\":\"ok\"");
    write_id(out, id);
    out.extend_from_slice(b",\"ch\":");
    write_json_string(out, ch);
    out.push(b',');
    write_position(out, pos);
    out.push(b'}');
}

/// Appends a pub's answer, `{"op":"ok","id":..,"epoch":"..","seq":..,"receivers":n}`: the
/// position the message got and how many subscribers it went to, as Redis's PUBLISH reply
/// counts receivers.
pub fn published(out: &mut Vec<u8>, id: Option<&[u8]>, pos: Position, receivers: u64) {
    out.extend_from_slice(b"{\"op\":\"ok\"");
    write_id(out, id);
    out.push(b',');
    write_position(out, pos);
    out.extend_from_slice(b",\"receivers\":");
    write_dec(out, receivers);
    out.push(b'}');
}

/// Appends `{"op":"error","id":..,"code":"..","msg":".."}`: `code` for programs (see
/// [`NativeError::code`]), `msg` for people; both are escaped, so any text is safe.
pub fn error(out: &mut Vec<u8>, id: Option<&[u8]>, code: &str, msg: &str) {
    out.extend_from_slice(b"{\"op\":\"error\"");
    write_id(out, id);
    out.extend_from_slice(b",\"code\":");
    write_json_string(out, code.as_bytes());
    out.extend_from_slice(b",\"msg\":");
    write_json_string(out, msg.as_bytes());
    out.push(b'}');
}

/// Appends the resume notice sent when history cannot cover the gap a `since` asks for,
/// `{"op":"reset","ch":..,"epoch":"..","first":<first seq still in history, 0 if none>,
/// "seq":<current last seq>}`: resume is all or nothing, so instead of a partial replay the
/// client learns the current position and what history still holds, and resynchronises.
pub fn reset(out: &mut Vec<u8>, ch: &[u8], epoch: u64, first: u64, seq: u64) {
    out.extend_from_slice(b"{\"op\":\"reset\",\"ch\":");
    write_json_string(out, ch);
    out.extend_from_slice(b",\"epoch\":\"");
    write_hex(out, epoch);
    out.extend_from_slice(b"\",\"first\":");
    write_dec(out, first);
    out.extend_from_slice(b",\"seq\":");
    write_dec(out, seq);
    out.push(b'}');
}

/// Appends `{"op":"pong","id":..}`, the answer to op ping (the id omitted when `None`).
pub fn pong(out: &mut Vec<u8>, id: Option<&[u8]>) {
    out.extend_from_slice(b"{\"op\":\"pong\"");
    write_id(out, id);
    out.push(b'}');
}

/// Appends the body of `POST /pub`'s answer, `{"epoch":"..","seq":..,"receivers":..}`: the
/// same facts as [`published`], for HTTP publishers, which have no op or id.
pub fn publish_answer(out: &mut Vec<u8>, pos: Position, receivers: u64) {
    out.push(b'{');
    write_position(out, pos);
    out.extend_from_slice(b",\"receivers\":");
    write_dec(out, receivers);
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn hex_and_dec() {
        for (n, s) in [
            (0u64, "0"),
            (1, "1"),
            (0xf, "f"),
            (0x10, "10"),
            (0x1f3a, "1f3a"),
            (u64::MAX, "ffffffffffffffff"),
        ] {
            let mut out = Vec::new();
            write_hex(&mut out, n);
            assert_eq!(out, s.as_bytes());
            assert_eq!(hex_len(n), s.len());
            assert_eq!(parse_hex(s.as_bytes()), Some(n));
        }
        for bad in ["", "00", "01", "F", "1g", "10000000000000000", " 1"] {
            assert_eq!(parse_hex(bad.as_bytes()), None, "{bad:?}");
        }
        for n in [0, 9, 10, 99, 100, u64::MAX] {
            assert_eq!(dec_len(n), n.to_string().len());
            assert_eq!(parse_dec(n.to_string().as_bytes()), Some(n));
        }
        for bad in ["", "01", "-1", "1.0", "18446744073709551616", "1e3"] {
            assert_eq!(parse_dec(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn decode_escapes() {
        let got = unescape(br#"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00z"#).unwrap();
        assert_eq!(&*got, "a\"\\/\x08\x0c\n\r\t\u{e9}\u{1F600}z".as_bytes());
        assert!(matches!(unescape(b"plain"), Some(Cow::Borrowed(b"plain"))));
        assert!(key_is(br"\u006fp", b"op"));
        assert!(!key_is(br"\u006fpx", b"op"));
        assert!(!key_is(br"\u006f", b"op"));
        // Malformed insides (never produced by the validator) are refused, not panicked on.
        for bad in [&br"\"[..], br"\x", br"\u12", br"\ud800", br"\ud800\u0041"] {
            assert_eq!(unescape(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn skips_values() {
        let s = br#"{"a" : [1, {"b": "]}\"" }], "c":-1.5e3 ,"d":"x"}"#;
        let mut seen = Vec::new();
        members(s, 0, |k, v| seen.push((k, v))).unwrap();
        assert_eq!(
            seen,
            [
                (&b"a"[..], &br#"[1, {"b": "]}\"" }]"#[..]),
                (b"c", b"-1.5e3"),
                (b"d", br#""x""#),
            ]
        );
        let mut none = 0;
        members(b"{ }", 0, |_, _| none += 1).unwrap();
        assert_eq!(none, 0);
    }

    #[test]
    fn writers() {
        assert_eq!(text(|o| ok(o, None)), r#"{"op":"ok"}"#);
        assert_eq!(text(|o| ok(o, Some(b"3"))), r#"{"op":"ok","id":3}"#);
        assert_eq!(
            text(|o| subscribed(
                o,
                Some(b"1"),
                b"news",
                Position {
                    epoch: 0x1f,
                    seq: 42
                }
            )),
            r#"{"op":"ok","id":1,"ch":"news","epoch":"1f","seq":42}"#
        );
        assert_eq!(
            text(|o| published(o, Some(br#""a""#), Position { epoch: 0, seq: 7 }, 3)),
            r#"{"op":"ok","id":"a","epoch":"0","seq":7,"receivers":3}"#
        );
        assert_eq!(
            text(|o| error(o, None, "unknown_op", "unknown op")),
            r#"{"op":"error","code":"unknown_op","msg":"unknown op"}"#
        );
        assert_eq!(
            text(|o| reset(o, b"n", 0xab, 5, 9)),
            r#"{"op":"reset","ch":"n","epoch":"ab","first":5,"seq":9}"#
        );
        assert_eq!(text(|o| pong(o, Some(b"-1"))), r#"{"op":"pong","id":-1}"#);
        assert_eq!(
            text(|o| publish_answer(o, Position { epoch: 2, seq: 1 }, 0)),
            r#"{"epoch":"2","seq":1,"receivers":0}"#
        );
        assert_eq!(
            text(|o| delivery(o, b"news", 42, br#"{"a":1}"#, true)),
            r#"{"ch":"news","seq":42,"data":{"a":1}}"#
        );
        assert_eq!(
            text(|o| delivery(o, b"news", 0, b"hi\n\xff", false)),
            r#"{"ch":"news","seq":0,"data":"hi\n\ufffd"}"#
        );
    }

    #[test]
    fn string_escapes() {
        assert_eq!(
            text(|o| write_json_string(o, b"\"\\/\x00\x08\t\n\x0b\x0c\r\x1f\x7f")),
            r#""\"\\/\u0000\b\t\n\u000b\f\r\u001f"#.to_owned() + "\x7f\""
        );
        // One replacement per maximal invalid sequence, as from_utf8_lossy does.
        assert_eq!(
            text(|o| write_json_string(o, b"a\xf0\x9f\x98b\xff\xfe\xc3")),
            r#""a\ufffdb\ufffd\ufffd\ufffd""#
        );
        assert_eq!(text(|o| write_json_string(o, b"")), r#""""#);
    }
}
