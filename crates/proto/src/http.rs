//! HTTP/1.1 requests and responses, sans-IO: request heads (with limits), request body
//! framing and incremental decoding (`Content-Length` and chunked), query strings, and the
//! response heads the stats, publish, WebSocket and SSE front-ends write. Head parsing is
//! `httparse` (zero-copy, no allocation until a complete head is found); everything else is
//! hand-written over byte slices so it can be fuzzed and fed in any split.

use std::borrow::Cow;
use std::io::Write;
use thiserror::Error;

/// Most headers accepted by [`parse_request_head`] (httparse needs a fixed array).
const MAX_HEADERS: usize = 64;

/// Size of the header array [`parse_head`] lends httparse; [`Limits::max_headers`] above this
/// is clamped to it, so a request never costs more than this many stack slots.
const HEAD_ARRAY: usize = 100;

/// Longest chunk size line (hex digits plus extensions, without the CRLF). Real clients send
/// a few bytes; the bound keeps a client from making us skip an endless extension.
const MAX_CHUNK_LINE: usize = 1024;

/// Largest trailer section (all trailer lines with their CRLFs, and the final empty line).
/// Trailers are skipped, but skipping must still be bounded.
const MAX_TRAILER_BYTES: usize = 8 * 1024;

/// A parsed request head, owned so the caller can recycle its read buffer at once. Heads
/// are rare (stats scrapes, WebSocket upgrades, SSE opens, publishes), so owning them costs
/// nothing that matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query string without `?` (empty if none); split it with [`query_params`].
    pub query: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Whether the connection stays open after the response (HTTP/1.1 default, unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// The minor version: 1 for HTTP/1.1, 0 for HTTP/1.0 (whose requests carry no `Host`
    /// and no expectations a server must honour).
    pub version: u8,
}

impl RequestHead {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// Every header named `name` (case-insensitive), in order: list-valued headers
    /// (`Connection`, `Transfer-Encoding`) may be split over several lines.
    fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// Why a request was refused. Every variant maps to the status to answer with
/// ([`HttpError::status`]); after any of them the connection must be closed, since the
/// request boundary is lost.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum HttpError {
    /// Not a well-formed HTTP/1.x request (bad token, bad version, ambiguous or broken body
    /// framing, bad chunked encoding); holds the reason. 400.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The head is larger than the caller's limit (holds the limit). 431.
    #[error("request head larger than {0} bytes")]
    TooLarge(usize),
    /// The head has more headers than the caller's limit. 431.
    #[error("too many request headers")]
    TooManyHeaders,
    /// The body is (or announces to be) larger than the caller's limit (holds the limit). 413.
    #[error("request body larger than {0} bytes")]
    BodyTooLarge(usize),
    /// The body uses a transfer coding other than `chunked` (we decode no compression). 501.
    #[error("unsupported transfer coding")]
    UnsupportedTransferEncoding,
    /// `Expect` holds an expectation other than `100-continue`, the only one HTTP defines.
    /// 417.
    #[error("unsupported expectation: only Expect: 100-continue is understood")]
    ExpectationFailed,
}

impl HttpError {
    /// The status to answer with: 400 `Malformed`, 431 `TooLarge` and `TooManyHeaders`, 413
    /// `BodyTooLarge`, 417 `ExpectationFailed`, 501 `UnsupportedTransferEncoding`, so a
    /// server can tell the client what to fix without a table of its own.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::Malformed(_) => 400,
            HttpError::TooLarge(_) | HttpError::TooManyHeaders => 431,
            HttpError::BodyTooLarge(_) => 413,
            HttpError::ExpectationFailed => 417,
            HttpError::UnsupportedTransferEncoding => 501,
        }
    }

    /// The reason phrase for [`HttpError::status`] (RFC 9110 names), for the status line.
    pub fn reason(&self) -> &'static str {
        match self.status() {
            400 => "Bad Request",
            413 => "Content Too Large",
            417 => "Expectation Failed",
            431 => "Request Header Fields Too Large",
            _ => "Not Implemented",
        }
    }
}

/// Limits a server applies to one request, so no client can make it buffer or scan more
/// than it chose to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest head (request line, headers and the blank line) in bytes; over is `TooLarge`.
    pub max_head_bytes: usize,
    /// Most headers; over is `TooManyHeaders`. Values above 100 act as 100.
    pub max_headers: usize,
    /// Longest body in bytes (after chunked decoding); over is `BodyTooLarge`.
    pub max_body_bytes: usize,
}

/// Parses a request head at the start of `input`, up to and including the blank line.
///
/// `Ok(Some((head, n)))`: the head used the first `n` bytes (a body, if any, follows).
/// `Ok(None)`: incomplete, nothing consumed; call again with more bytes. Errors mean the
/// caller should answer 400 / 431 and close. At most 64 headers are accepted (more is
/// `Malformed`, kept for existing callers; [`parse_head`] says `TooManyHeaders`), and a head
/// longer than `max_head_bytes` is `TooLarge` whether or not its end has arrived. Every
/// line must end in CRLF: a complete head holding a bare LF is `Malformed` (a proxy
/// in front may split such a head differently: request smuggling).
pub fn parse_request_head(
    input: &[u8],
    max_head_bytes: usize,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let parsed = parse_into(input, max_head_bytes, &mut headers, |e| {
        HttpError::Malformed(e.to_string())
    })?;
    Ok(parsed.map(|(head, n, _)| (head, n)))
}

/// Parses a request head with limits: like [`parse_request_head`], but more than
/// `limits.max_headers` headers (at most 100) is `TooManyHeaders` (431, as soon as the
/// excess header is seen), and a head over `limits.max_head_bytes` is `TooLarge`. The
/// limits are what lets a server face untrusted clients with a fixed memory bound.
///
/// Also `Malformed` here, as RFC 9112 asks of a server:
///
/// - an HTTP/1.0 request with `Transfer-Encoding` (6.1: its framing is faulty; checked here
///   so [`body_framing`] need not look at the version);
/// - an HTTP/1.1 request without `Host`, or any request with more than one `Host` line
///   (3.2: "MUST respond with a 400"). HTTP/1.0 clients need not send `Host`, so its
///   absence there is accepted.
pub fn parse_head(
    input: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; HEAD_ARRAY];
    let allowed = limits.max_headers.min(HEAD_ARRAY);
    let parsed = parse_into(
        input,
        limits.max_head_bytes,
        &mut headers[..allowed],
        |e| match e {
            httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
            e => HttpError::Malformed(e.to_string()),
        },
    )?;
    let Some((head, n, version)) = parsed else {
        return Ok(None);
    };
    if version == 0 && head.header("transfer-encoding").is_some() {
        return Err(HttpError::Malformed(
            "Transfer-Encoding in an HTTP/1.0 request".into(),
        ));
    }
    match head.headers_named("host").count() {
        0 if version >= 1 => {
            return Err(HttpError::Malformed(
                "an HTTP/1.1 request needs a Host header".into(),
            ))
        }
        0 | 1 => {}
        _ => return Err(HttpError::Malformed("more than one Host header".into())),
    }
    Ok(Some((head, n)))
}

/// The parser behind [`parse_request_head`] and [`parse_head`]: `headers` is as many slots
/// as headers allowed, and `map_err` turns httparse's refusal into ours. Also returns the
/// minor version (0 for HTTP/1.0).
fn parse_into<'b>(
    input: &'b [u8],
    max_head_bytes: usize,
    headers: &mut [httparse::Header<'b>],
    map_err: impl Fn(httparse::Error) -> HttpError,
) -> Result<Option<(RequestHead, usize, u8)>, HttpError> {
    let mut req = httparse::Request::new(headers);
    // Never look past the limit: a client dribbling a huge head costs one bounded scan.
    let window = &input[..input.len().min(max_head_bytes)];
    let len = match req.parse(window).map_err(map_err)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => {
            if input.len() > max_head_bytes {
                return Err(HttpError::TooLarge(max_head_bytes));
            }
            return Ok(None);
        }
    };
    // httparse ends a line at a bare LF as well as at CRLF (RFC 9112 2.2 allows a
    // recipient to), and has no setting to refuse it; see [`has_bare_lf`].
    if has_bare_lf(window.get(..len).unwrap_or_default()) {
        return Err(HttpError::Malformed(
            "bare LF in the request head: every line must end in CRLF".into(),
        ));
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let version = req.version.unwrap_or(1);
    let headers: Vec<(String, Vec<u8>)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_string(), h.value.to_vec()))
        .collect();
    let mut head = RequestHead {
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        keep_alive: version == 1,
        version,
    };
    if head
        .headers_named("connection")
        .any(|v| has_token(v, "close"))
    {
        head.keep_alive = false;
    } else if head
        .headers_named("connection")
        .any(|v| has_token(v, "keep-alive"))
    {
        head.keep_alive = true;
    }
    Ok(Some((head, len, version)))
}

/// Whether `head` holds an LF that is not preceded by CR. RFC 9112 2.2 lets a recipient
/// take a bare LF as a line end, but a proxy in front of us may not (it may keep the LF
/// inside a header value, or end the head elsewhere), and two parsers disagreeing on where a
/// header or the head ends is how requests are smuggled past a proxy's checks. A broker
/// meant to sit behind proxies refuses such heads (400) instead. One pass over the head's
/// bytes, so linear in its length, and run once per complete head.
fn has_bare_lf(head: &[u8]) -> bool {
    head.first() == Some(&b'\n') || head.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r')
}

/// Whether a comma-separated header value contains `token` (case-insensitive,
/// whitespace-trimmed), e.g. `Connection: keep-alive, Upgrade`. Header lists are matched by
/// element, never by substring, so `Connection: not-close` is not `close`. An empty token
/// never matches.
pub fn has_token(value: &[u8], token: &str) -> bool {
    !token.is_empty()
        && value
            .split(|&b| b == b',')
            .any(|t| trim_ows(t).eq_ignore_ascii_case(token.as_bytes()))
}

/// `s` without leading and trailing spaces and tabs (RFC 9110 OWS).
fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t');
    let Some(start) = start else { return &[] };
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .unwrap_or(start);
    &s[start..=end]
}

/// The interim answer that tells a client waiting on `Expect: 100-continue` to send its
/// body (RFC 9110 15.2.1): a status line and the empty line, no headers.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What the request's `Expect` header asks (RFC 9110 10.1.1), every `Expect` line taken as
/// one comma-separated list:
///
/// - `Ok(true)`: `100-continue` (any case) in an HTTP/1.1 request: the client waits (curl
///   for 1 s) before sending its body, so a server that will read the body answers
///   [`CONTINUE`] first, and one that will not answers with the final status at once;
/// - `Ok(false)`: no expectation (no `Expect`, or an empty one), or `100-continue` in an
///   HTTP/1.0 request, which a server MUST ignore (a 1.0 client cannot read a 1xx);
/// - `Err(ExpectationFailed)` (417): any other expectation, which nothing here can meet.
pub fn expects_continue(head: &RequestHead) -> Result<bool, HttpError> {
    let mut cont = false;
    for e in head
        .headers_named("expect")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|e| !e.is_empty())
    {
        if !e.eq_ignore_ascii_case(b"100-continue") {
            return Err(HttpError::ExpectationFailed);
        }
        cont = true;
    }
    Ok(cont && head.version >= 1)
}

/// How the request body is framed (RFC 9112 6.3), decided once from the head so the
/// connection knows where the next request starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body: neither `Transfer-Encoding` nor `Content-Length`.
    Empty,
    /// `Content-Length` bytes (possibly 0).
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Decides the body framing of a request (RFC 9112 6.3), refusing every ambiguity a proxy in
/// front of us might resolve differently (request smuggling):
///
/// - `Transfer-Encoding` and `Content-Length` together: `Malformed` (400).
/// - `Transfer-Encoding` (all such headers, as one list) whose last coding is `chunked`:
///   `Chunked` if that is the only coding, `UnsupportedTransferEncoding` (501) if other
///   codings precede it; `chunked` twice, or an empty list: `Malformed`.
/// - `Transfer-Encoding` whose last coding is not `chunked`: `Malformed` (RFC 9112 6.3 item
///   4: the length cannot be determined, MUST answer 400).
/// - `Content-Length` (all such headers and list elements) that is not all digits, or
///   several different values: `Malformed`; identical repeats are accepted (RFC 9110 8.6).
///   Over `limits.max_body_bytes`: `BodyTooLarge` (413). Otherwise `Length(n)`.
/// - Neither: `Empty`.
pub fn body_framing(head: &RequestHead, limits: &Limits) -> Result<BodyFraming, HttpError> {
    let has_te = head.header("transfer-encoding").is_some();
    let has_cl = head.header("content-length").is_some();
    if has_te {
        if has_cl {
            return Err(HttpError::Malformed(
                "both Transfer-Encoding and Content-Length".into(),
            ));
        }
        let (mut count, mut chunked, mut last_chunked) = (0usize, 0usize, false);
        for coding in head
            .headers_named("transfer-encoding")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim_ows)
            .filter(|c| !c.is_empty())
        {
            count += 1;
            last_chunked = coding.eq_ignore_ascii_case(b"chunked");
            chunked += usize::from(last_chunked);
        }
        return if count == 0 {
            Err(HttpError::Malformed("empty Transfer-Encoding".into()))
        } else if !last_chunked {
            Err(HttpError::Malformed(
                "chunked is not the final transfer coding".into(),
            ))
        } else if chunked > 1 {
            Err(HttpError::Malformed(
                "chunked applied more than once".into(),
            ))
        } else if count > 1 {
            Err(HttpError::UnsupportedTransferEncoding)
        } else {
            Ok(BodyFraming::Chunked)
        };
    }
    if !has_cl {
        return Ok(BodyFraming::Empty);
    }
    // The first value, its leading zeros stripped, is what every other value must equal.
    let mut first: Option<&[u8]> = None;
    for value in head
        .headers_named("content-length")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim_ows)
    {
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(HttpError::Malformed("invalid Content-Length".into()));
        }
        let zeros = value.iter().take_while(|&&b| b == b'0').count();
        let value = &value[zeros.min(value.len() - 1)..];
        match first {
            None => first = Some(value),
            Some(f) if f == value => {}
            Some(_) => {
                return Err(HttpError::Malformed(
                    "several different Content-Length values".into(),
                ))
            }
        }
    }
    let digits = first.unwrap_or(b"0");
    let mut n: usize = 0;
    for &d in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(usize::from(d - b'0')))
            .ok_or(HttpError::BodyTooLarge(limits.max_body_bytes))?;
    }
    if n > limits.max_body_bytes {
        return Err(HttpError::BodyTooLarge(limits.max_body_bytes));
    }
    Ok(BodyFraming::Length(n))
}

/// Incremental request body decoder: the caller feeds bytes as they arrive (any split, byte
/// by byte included); the decoder appends body bytes to `out` and says how much input it
/// consumed and whether the body is complete. Its state is a few integers, so nothing
/// already consumed is ever scanned again and a slow client costs no buffering here.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    /// Where in the body we are.
    state: State,
    /// The caller's body limit, for chunked bodies (a length is checked up front).
    max_body_bytes: usize,
}

/// The decoder's position.
#[derive(Debug, Clone)]
enum State {
    /// `left` more bytes of a `Content-Length` body.
    Length { left: usize },
    /// Inside a chunked body.
    Chunked(Chunked),
    /// The body is complete; nothing more is consumed.
    Done,
    /// An error was returned; it is returned again on every call.
    Failed(HttpError),
}

/// Chunked decoding state: the step plus the counters that bound it.
#[derive(Debug, Clone, Copy)]
struct Chunked {
    /// Where in the chunked grammar we are.
    step: Step,
    /// Bytes of the current chunk size line so far (without CRLF).
    line_len: usize,
    /// Bytes of the trailer section so far.
    trailer_len: usize,
    /// Body bytes announced so far (all chunk sizes, including the current one).
    total: usize,
}

/// A position in RFC 9112 7.1's `chunked-body` grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Hex digits of a chunk size (`digits` says whether one was seen).
    Size { size: usize, digits: bool },
    /// After the size: whitespace before `;` or CR.
    SizeWs { size: usize },
    /// Chunk extensions, ignored up to CR.
    Ext { size: usize },
    /// CR of the size line seen; LF expected.
    SizeLf { size: usize },
    /// `left` bytes of chunk data to go.
    Data { left: usize },
    /// The CR after chunk data expected.
    DataCr,
    /// The LF after chunk data expected.
    DataLf,
    /// At the start of a trailer line or of the final empty line.
    TrailerStart,
    /// Inside a trailer field line, skipped up to CR.
    TrailerLine,
    /// CR of a trailer line seen; LF expected.
    TrailerLf,
    /// CR of the final empty line seen; LF ends the body.
    FinalLf,
}

/// Shorthand for a chunked-encoding `Malformed`.
fn bad(why: &str) -> HttpError {
    HttpError::Malformed(format!("chunked body: {why}"))
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing` (from [`body_framing`]), refusing more than
    /// `max_body_bytes` of body. A `Length` over the limit fails on the first `decode`.
    pub fn new(framing: BodyFraming, max_body_bytes: usize) -> Self {
        let state = match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(n) if n > max_body_bytes => {
                State::Failed(HttpError::BodyTooLarge(max_body_bytes))
            }
            BodyFraming::Length(n) => State::Length { left: n },
            BodyFraming::Chunked => State::Chunked(Chunked {
                step: Step::Size {
                    size: 0,
                    digits: false,
                },
                line_len: 0,
                trailer_len: 0,
                total: 0,
            }),
        };
        BodyDecoder {
            state,
            max_body_bytes,
        }
    }

    /// Whether the body is complete, so the caller can tell without feeding more bytes.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Decodes what it can of `input`, appending body bytes to `out`. Returns `(consumed,
    /// done)`: until the body is done every byte given is consumed (so the caller need not
    /// keep any); once done, `consumed` stops at the end of the body and whatever follows is
    /// the next request. After an error, `out` may hold part of the body, the connection
    /// must be closed, and every later call returns the same error.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(usize, bool), HttpError> {
        let result = match &mut self.state {
            State::Done => return Ok((0, true)),
            State::Failed(e) => return Err(e.clone()),
            State::Length { left } => {
                let take = (*left).min(input.len());
                out.extend_from_slice(&input[..take]);
                *left -= take;
                Ok((take, *left == 0))
            }
            State::Chunked(c) => c.decode(input, out, self.max_body_bytes),
        };
        match &result {
            Ok((_, true)) => self.state = State::Done,
            Ok(_) => {}
            Err(e) => self.state = State::Failed(e.clone()),
        }
        result
    }
}

impl Chunked {
    /// Runs the chunked grammar over `input`; see [`BodyDecoder::decode`].
    fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(usize, bool), HttpError> {
        let mut i = 0;
        while i < input.len() {
            if let Step::Data { left } = self.step {
                let take = left.min(input.len() - i);
                out.extend_from_slice(&input[i..i + take]);
                i += take;
                self.step = if take == left {
                    Step::DataCr
                } else {
                    Step::Data { left: left - take }
                };
                continue;
            }
            let b = input[i];
            i += 1;
            if self.step.in_size_line() {
                self.line_len += 1;
                if self.line_len > MAX_CHUNK_LINE && b != b'\r' {
                    return Err(bad("chunk size line too long"));
                }
            }
            if self.step.in_trailers() {
                self.trailer_len += 1;
                if self.trailer_len > MAX_TRAILER_BYTES {
                    return Err(bad("trailer section too large"));
                }
            }
            self.step = match (self.step, b) {
                (Step::Size { size, .. }, b) if b.is_ascii_hexdigit() => {
                    let digit = match b {
                        b'0'..=b'9' => b - b'0',
                        _ => (b | 0x20) - b'a' + 10,
                    };
                    let size = size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(usize::from(digit)))
                        .ok_or_else(|| bad("chunk size overflows"))?;
                    // Refuse as soon as the size announces too much, before any data.
                    if size > max - self.total {
                        return Err(HttpError::BodyTooLarge(max));
                    }
                    Step::Size { size, digits: true }
                }
                (Step::Size { digits: false, .. }, _) => {
                    return Err(bad("chunk size expected"));
                }
                (Step::Size { size, .. } | Step::SizeWs { size }, b' ' | b'\t') => {
                    Step::SizeWs { size }
                }
                (Step::Size { size, .. } | Step::SizeWs { size }, b';') => Step::Ext { size },
                (Step::Size { size, .. } | Step::SizeWs { size } | Step::Ext { size }, b'\r') => {
                    Step::SizeLf { size }
                }
                (Step::Size { .. } | Step::SizeWs { .. }, _) => {
                    return Err(bad("invalid byte in chunk size"));
                }
                (Step::Ext { .. }, b'\n') => return Err(bad("bare LF in chunk extension")),
                (Step::Ext { size }, _) => Step::Ext { size },
                (Step::SizeLf { size }, b'\n') => {
                    self.line_len = 0;
                    // Cannot overflow: `size <= max - total` was checked digit by digit.
                    self.total += size;
                    if size == 0 {
                        Step::TrailerStart
                    } else {
                        Step::Data { left: size }
                    }
                }
                (Step::SizeLf { .. }, _) => return Err(bad("CRLF expected after chunk size")),
                (Step::DataCr, b'\r') => Step::DataLf,
                (Step::DataLf, b'\n') => Step::Size {
                    size: 0,
                    digits: false,
                },
                (Step::DataCr | Step::DataLf, _) => {
                    return Err(bad("CRLF expected after chunk data"))
                }
                (Step::TrailerStart, b'\r') => Step::FinalLf,
                (Step::FinalLf, b'\n') => return Ok((i, true)),
                (Step::FinalLf, _) => return Err(bad("CRLF expected at end of trailers")),
                (Step::TrailerStart | Step::TrailerLine, b'\n') => {
                    return Err(bad("bare LF in trailers"))
                }
                (Step::TrailerLine, b'\r') => Step::TrailerLf,
                (Step::TrailerStart | Step::TrailerLine, _) => Step::TrailerLine,
                (Step::TrailerLf, b'\n') => Step::TrailerStart,
                (Step::TrailerLf, _) => return Err(bad("CRLF expected after trailer")),
                // Handled before the byte is taken.
                (Step::Data { .. }, _) => self.step,
            };
        }
        Ok((i, false))
    }
}

impl Step {
    /// Whether this step reads the chunk size line (whose length is bounded).
    fn in_size_line(self) -> bool {
        matches!(
            self,
            Step::Size { .. } | Step::SizeWs { .. } | Step::Ext { .. }
        )
    }

    /// Whether this step reads the trailer section (whose length is bounded).
    fn in_trailers(self) -> bool {
        matches!(
            self,
            Step::TrailerStart | Step::TrailerLine | Step::TrailerLf | Step::FinalLf
        )
    }
}

/// Query string parameters, percent-decoded (`+` as space), in order, so handlers read
/// repeated keys (`?ch=a&ch=b`) without a map: `query_params("ch=a&ch=b%20c&x")` yields
/// `(b"ch", b"a")`, `(b"ch", b"b c")`, `(b"x", b"")`. Empty pieces (`a&&b`) are skipped, the
/// first `=` splits key from value, invalid `%` escapes are kept literally, and nothing is
/// copied unless something was decoded.
pub fn query_params(query: &str) -> impl Iterator<Item = (Cow<'_, [u8]>, Cow<'_, [u8]>)> {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k.as_bytes()), percent_decode(v.as_bytes()))
    })
}

/// `s` with `%XX` escapes decoded and `+` as space; a `%` not followed by two hex digits is
/// kept as is.
fn percent_decode(s: &[u8]) -> Cow<'_, [u8]> {
    if !s.iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = s.get(i + 1).copied().and_then(hex);
                let lo = s.get(i + 2).copied().and_then(hex);
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// Appends a complete HTTP/1.1 response to `out`: status line, `Content-Type`,
/// `Content-Length`, `Connection` (`keep-alive` or `close`, as the caller decided from the
/// request), `Cache-Control: no-store` (stats are live), `X-Content-Type-Options: nosniff`
/// (a browser takes the body for its declared type only: a text answer echoing a client's
/// bytes is never run as a script or page), and the body.
pub fn response(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) {
    response_with(out, status, reason, content_type, &[], body, keep_alive);
}

/// Appends a response with extra headers: like [`response`] but with the `extra` header
/// lines (each `"Name: value"`, no CRLF) after the standard ones, for answers that need more
/// (`Allow` on a 405, `Sec-WebSocket-Version` on a refused upgrade, ...). A line holding CR
/// or LF is left out rather than allowed to split the head.
pub fn response_with(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    content_type: &str,
    extra: &[&str],
    body: &[u8],
    keep_alive: bool,
) {
    write_head(
        out,
        status,
        reason,
        content_type,
        body.len(),
        keep_alive,
        extra,
    );
    out.extend_from_slice(body);
}

/// Appends the status line and headers of [`response`] alone: the answer to a HEAD request,
/// whose `Content-Length` is that of the body a GET would get.
pub fn response_head(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    content_type: &str,
    content_length: usize,
    keep_alive: bool,
) {
    response_head_with(
        out,
        status,
        reason,
        content_type,
        &[],
        content_length,
        keep_alive,
    );
}

/// [`response_head`] with the `extra` header lines of [`response_with`], so the answer to a
/// HEAD carries the same headers as that to a GET.
pub fn response_head_with(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    content_type: &str,
    extra: &[&str],
    content_length: usize,
    keep_alive: bool,
) {
    write_head(
        out,
        status,
        reason,
        content_type,
        content_length,
        keep_alive,
        extra,
    );
}

/// The head shared by [`response_with`] and [`response_head`].
fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    content_type: &str,
    content_length: usize,
    keep_alive: bool,
    extra: &[&str],
) {
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\nConnection: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    );
    push_extra(out, extra);
    out.extend_from_slice(b"\r\n");
}

/// Appends each `extra` header line with its CRLF, leaving out any line holding CR or LF
/// (header injection).
fn push_extra(out: &mut Vec<u8>, extra: &[&str]) {
    for line in extra {
        if !line.bytes().any(|b| b == b'\r' || b == b'\n') {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Appends the head of a streaming response with no length (SSE): status 200, the content
/// type, `Cache-Control: no-store`, `X-Content-Type-Options: nosniff`, `Connection:
/// keep-alive`, `X-Accel-Buffering: no` (so a reverse proxy passes events on at once), then
/// the `extra` lines (as in
/// [`response_with`]), and no `Content-Length`: the body ends when the connection closes.
pub fn stream_head(out: &mut Vec<u8>, content_type: &str, extra: &[&str]) {
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: keep-alive\r\nX-Accel-Buffering: no\r\n"
    );
    push_extra(out, extra);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_get_with_query() {
        let (h, n) = parse_request_head(b"GET /stats?x=1 HTTP/1.1\r\nHost: a\r\n\r\nrest", 1024)
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.method.as_str(), h.path.as_str(), h.query.as_str()),
            ("GET", "/stats", "x=1")
        );
        assert_eq!(h.header("HOST"), Some(&b"a"[..]));
        assert!(h.keep_alive);
        assert_eq!(n, 36);
    }

    #[test]
    fn connection_semantics() {
        let h = |s: &[u8]| parse_request_head(s, 1024).unwrap().unwrap().0.keep_alive;
        assert!(!h(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!h(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(h(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn bare_lf_in_a_head_is_refused() {
        let limits = Limits {
            max_head_bytes: 1024,
            max_headers: 64,
            max_body_bytes: 100,
        };
        for bad in [
            &b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: b\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\n",
            b"GET / HTTP/1.1\nHost: a\n\n",
            b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
            // A smuggling attempt: a proxy that keeps the LF inside the value sees one
            // header; a parser that ends the line there sees a Content-Length.
            b"POST /pub?ch=x HTTP/1.1\r\nHost: a\r\nX: y\nContent-Length: 5\r\n\r\nhello",
        ] {
            let text = String::from_utf8_lossy(bad);
            assert!(
                matches!(parse_head(bad, &limits), Err(HttpError::Malformed(_))),
                "{text:?}"
            );
            assert!(
                matches!(parse_request_head(bad, 1024), Err(HttpError::Malformed(_))),
                "{text:?}"
            );
        }
        // CRLF throughout is fine, and LF inside the body is the body's business.
        let good = b"POST /pub?ch=x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\na\nb";
        let (_, n) = parse_head(good, &limits).unwrap().unwrap();
        assert_eq!(&good[n..], b"a\nb");
        // An incomplete head is not judged yet.
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost: a\n", &limits),
            Ok(None)
        );
    }

    #[test]
    fn partial_malformed_and_large() {
        assert_eq!(
            parse_request_head(b"GET / HTTP/1.1\r\nHost:", 1024),
            Ok(None)
        );
        assert!(matches!(
            parse_request_head(b"\x00\x01 nonsense\r\n\r\n", 1024),
            Err(HttpError::Malformed(_))
        ));
        let big = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 2000]].concat();
        assert_eq!(
            parse_request_head(&big, 1024),
            Err(HttpError::TooLarge(1024))
        );
    }

    #[test]
    fn limits_and_edges() {
        // Exactly at the limit is fine; one byte over is not, even if complete.
        let head = b"GET / HTTP/1.1\r\n\r\n";
        assert!(parse_request_head(head, head.len()).unwrap().is_some());
        assert_eq!(
            parse_request_head(head, head.len() - 1),
            Err(HttpError::TooLarge(head.len() - 1))
        );
        // A body after the head is not counted against the limit.
        let with_body = [&head[..], &[b'x'; 100]].concat();
        let (_, n) = parse_request_head(&with_body, head.len()).unwrap().unwrap();
        assert_eq!(n, head.len());
        let many: Vec<u8> = [
            b"GET / HTTP/1.1\r\n".to_vec(),
            b"X: y\r\n".repeat(65),
            b"\r\n".to_vec(),
        ]
        .concat();
        assert!(matches!(
            parse_request_head(&many, 1 << 20),
            Err(HttpError::Malformed(_))
        ));
        assert_eq!(parse_request_head(b"", 10), Ok(None));
        let (h, _) = parse_request_head(
            b"GET /a?b?c HTTP/1.1\r\nConnection: Upgrade, close\r\n\r\n",
            1024,
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.path.as_str(), h.query.as_str()), ("/a", "b?c"));
        assert!(!h.keep_alive);
        assert_eq!(h.header("x-missing"), None);
    }

    #[test]
    fn response_has_length_and_connection() {
        let mut v = Vec::new();
        response(&mut v, 200, "OK", "text/plain", b"ok\n", false);
        let s = String::from_utf8(v).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(s.contains("Content-Length: 3\r\n"));
        assert!(s.contains("Connection: close\r\n"));
        assert!(s.ends_with("\r\n\r\nok\n"));
    }

    const LIMITS: Limits = Limits {
        max_head_bytes: 1024,
        max_headers: 8,
        max_body_bytes: 100,
    };

    /// The head of `request` (which must be complete).
    fn head(request: &[u8]) -> RequestHead {
        parse_head(request, &LIMITS).unwrap().unwrap().0
    }

    /// The framing of a POST with the given header lines.
    fn framing(version: u8, headers: &[&str]) -> Result<BodyFraming, HttpError> {
        let mut req = format!("POST /pub HTTP/1.{version}\r\nHost: h\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        body_framing(&head(req.as_bytes()), &LIMITS)
    }

    /// Decodes `input` in one call.
    fn decode_whole(
        framing: BodyFraming,
        max: usize,
        input: &[u8],
    ) -> Result<(Vec<u8>, usize, bool), HttpError> {
        let mut out = Vec::new();
        let (n, done) = BodyDecoder::new(framing, max).decode(input, &mut out)?;
        Ok((out, n, done))
    }

    /// Decodes `input` one byte per call.
    fn decode_bytewise(
        framing: BodyFraming,
        max: usize,
        input: &[u8],
    ) -> Result<(Vec<u8>, usize, bool), HttpError> {
        let mut d = BodyDecoder::new(framing, max);
        let mut out = Vec::new();
        let mut used = 0;
        for b in input {
            let (n, done) = d.decode(std::slice::from_ref(b), &mut out)?;
            used += n;
            if done {
                return Ok((out, used, true));
            }
            assert_eq!(n, 1);
        }
        Ok((out, used, false))
    }

    /// Both ways must agree; returns the result.
    fn decode_both(
        framing: BodyFraming,
        max: usize,
        input: &[u8],
    ) -> Result<(Vec<u8>, usize, bool), HttpError> {
        let whole = decode_whole(framing, max, input);
        assert_eq!(
            whole,
            decode_bytewise(framing, max, input),
            "{:?}",
            String::from_utf8_lossy(input)
        );
        whole
    }

    #[test]
    fn parse_head_header_limits() {
        // HTTP/1.0, which needs no Host, so every header counted is an `X`.
        let req = |n: usize| {
            [
                b"GET / HTTP/1.0\r\n".to_vec(),
                b"X: y\r\n".repeat(n),
                b"\r\n".to_vec(),
            ]
            .concat()
        };
        let limits = |max_headers| Limits {
            max_head_bytes: 1 << 20,
            max_headers,
            max_body_bytes: 0,
        };
        assert_eq!(
            parse_head(&req(8), &limits(8))
                .unwrap()
                .unwrap()
                .0
                .headers
                .len(),
            8
        );
        assert_eq!(
            parse_head(&req(9), &limits(8)),
            Err(HttpError::TooManyHeaders)
        );
        // Detected before the head is complete.
        let partial = &req(9)[..req(9).len() - 2];
        assert_eq!(
            parse_head(partial, &limits(8)),
            Err(HttpError::TooManyHeaders)
        );
        assert!(parse_head(&req(0), &limits(0)).unwrap().is_some());
        assert_eq!(
            parse_head(&req(1), &limits(0)),
            Err(HttpError::TooManyHeaders)
        );
        // Above 100 the limit is 100.
        assert!(parse_head(&req(100), &limits(1000)).unwrap().is_some());
        assert_eq!(
            parse_head(&req(101), &limits(1000)),
            Err(HttpError::TooManyHeaders)
        );
        // parse_request_head keeps its own rule.
        assert!(matches!(
            parse_request_head(&req(65), 1 << 20),
            Err(HttpError::Malformed(_))
        ));
    }

    #[test]
    fn parse_head_size_limit() {
        let req = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
        let at = Limits {
            max_head_bytes: req.len(),
            ..LIMITS
        };
        let under = Limits {
            max_head_bytes: req.len() - 1,
            ..LIMITS
        };
        assert_eq!(parse_head(req, &at).unwrap().unwrap().1, req.len());
        assert_eq!(
            parse_head(req, &under),
            Err(HttpError::TooLarge(req.len() - 1))
        );
        assert_eq!(parse_head(&req[..10], &under), Ok(None));
        assert!(matches!(
            parse_head(b"G\0T / HTTP/1.1\r\n\r\n", &LIMITS),
            Err(HttpError::Malformed(_))
        ));
    }

    #[test]
    fn http_1_0_parses() {
        let h = head(b"GET /sse?ch=a HTTP/1.0\r\nHost: a\r\n\r\n");
        assert_eq!((h.keep_alive, h.path.as_str()), (false, "/sse"));
        assert_eq!(
            parse_request_head(b"GET / HTTP/1.0\r\n\r\n", 100)
                .unwrap()
                .unwrap()
                .1,
            18
        );
        let h = head(b"POST / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n");
        assert!(h.keep_alive);
        assert_eq!(body_framing(&h, &LIMITS), Ok(BodyFraming::Length(3)));
        // HTTP/1.0 cannot use Transfer-Encoding (RFC 9112 6.1); HTTP/1.1 can.
        assert!(matches!(
            parse_head(
                b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                &LIMITS
            ),
            Err(HttpError::Malformed(_))
        ));
        assert_eq!(
            framing(1, &["Transfer-Encoding: chunked"]),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            framing(0, &["Content-Length: 1"]),
            Ok(BodyFraming::Length(1))
        );
        // A close in a second Connection line still counts.
        assert!(
            !head(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nConnection: Close\r\n\r\n")
                .keep_alive
        );
    }

    #[test]
    fn expectations() {
        let expect = |version: u8, lines: &[&str]| {
            let mut req = format!("POST /pub HTTP/1.{version}\r\nHost: h\r\n");
            for l in lines {
                req.push_str(&format!("Expect: {l}\r\n"));
            }
            req.push_str("\r\n");
            expects_continue(&head(req.as_bytes()))
        };
        assert_eq!(expect(1, &[]), Ok(false));
        assert_eq!(expect(1, &[""]), Ok(false));
        for cont in [
            "100-continue",
            "100-Continue",
            " 100-CONTINUE ",
            "100-continue, ",
        ] {
            assert_eq!(expect(1, &[cont]), Ok(true), "{cont:?}");
        }
        assert_eq!(expect(1, &["100-continue", "100-continue"]), Ok(true));
        // HTTP/1.0: 100-continue is ignored (RFC 9110 10.1.1).
        assert_eq!(expect(0, &["100-continue"]), Ok(false));
        for other in [
            "200-ok",
            "100-continue=1",
            "100-continuex",
            "100-continue, foo",
        ] {
            assert_eq!(
                expect(1, &[other]),
                Err(HttpError::ExpectationFailed),
                "{other:?}"
            );
            assert_eq!(expect(0, &[other]), Err(HttpError::ExpectationFailed));
        }
        assert_eq!(
            expect(1, &["100-continue", "bogus"]),
            Err(HttpError::ExpectationFailed)
        );
        assert!(CONTINUE.starts_with(b"HTTP/1.1 100 ") && CONTINUE.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn host_is_required_in_http_1_1_and_only_once() {
        let parse = |req: &[u8]| parse_head(req, &LIMITS);
        for bad in [
            &b"GET /healthz HTTP/1.1\r\n\r\n"[..],
            b"GET /healthz HTTP/1.1\r\nX-Host: a\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nhost: a\r\nHOST: a\r\n\r\n",
            b"GET /healthz HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        ] {
            let r = parse(bad);
            assert!(
                matches!(&r, Err(HttpError::Malformed(why)) if why.contains("Host")),
                "{:?}: {r:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Any case; an empty value is valid (RFC 9112 3.2: no authority in the target).
        for (good, version) in [
            (&b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"[..], 1),
            (b"GET /healthz HTTP/1.1\r\nhOST: a:8080\r\n\r\n", 1),
            (b"GET /healthz HTTP/1.1\r\nHost:\r\n\r\n", 1),
            // HTTP/1.0 needs none.
            (b"GET /healthz HTTP/1.0\r\n\r\n", 0),
        ] {
            let (h, _) = parse(good).unwrap().unwrap();
            assert_eq!(h.version, version, "{:?}", String::from_utf8_lossy(good));
        }
    }

    #[test]
    fn framing_without_body_or_with_length() {
        assert_eq!(framing(1, &[]), Ok(BodyFraming::Empty));
        assert_eq!(
            framing(1, &["Content-Length: 0"]),
            Ok(BodyFraming::Length(0))
        );
        assert_eq!(
            framing(1, &["Content-Length: 42"]),
            Ok(BodyFraming::Length(42))
        );
        assert_eq!(
            framing(1, &["content-length:  7 "]),
            Ok(BodyFraming::Length(7))
        );
        assert_eq!(
            framing(1, &["Content-Length: 007"]),
            Ok(BodyFraming::Length(7))
        );
        // Identical repeats, as a list or as lines, are one value.
        assert_eq!(
            framing(1, &["Content-Length: 5, 5"]),
            Ok(BodyFraming::Length(5))
        );
        assert_eq!(
            framing(1, &["Content-Length: 5", "Content-Length: 05"]),
            Ok(BodyFraming::Length(5))
        );
        for bad in [
            &["Content-Length: 5", "Content-Length: 6"][..],
            &["Content-Length: 5, 6"],
            &["Content-Length: 5,"],
            &["Content-Length: +5"],
            &["Content-Length: -1"],
            &["Content-Length: 0x10"],
            &["Content-Length: 1 2"],
            &["Content-Length: 5a"],
            &["Content-Length:"],
        ] {
            assert!(
                matches!(framing(1, bad), Err(HttpError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn framing_length_limit() {
        assert_eq!(
            framing(1, &["Content-Length: 100"]),
            Ok(BodyFraming::Length(100))
        );
        assert_eq!(
            framing(1, &["Content-Length: 101"]),
            Err(HttpError::BodyTooLarge(100))
        );
        assert_eq!(
            framing(1, &["Content-Length: 99999999999999999999999999999"]),
            Err(HttpError::BodyTooLarge(100))
        );
        // Different huge values are still different.
        assert!(matches!(
            framing(
                1,
                &["Content-Length: 99999999999999999999999999999, 99999999999999999999999999998"]
            ),
            Err(HttpError::Malformed(_))
        ));
    }

    #[test]
    fn framing_transfer_encoding() {
        assert_eq!(
            framing(1, &["Transfer-Encoding: chunked"]),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            framing(1, &["transfer-encoding: Chunked "]),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            framing(1, &["Transfer-Encoding: , chunked,"]),
            Ok(BodyFraming::Chunked)
        );
        assert_eq!(
            framing(1, &["Transfer-Encoding: gzip, chunked"]),
            Err(HttpError::UnsupportedTransferEncoding)
        );
        assert_eq!(
            framing(
                1,
                &["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"]
            ),
            Err(HttpError::UnsupportedTransferEncoding)
        );
        for bad in [
            // Smuggling: both framings.
            &["Transfer-Encoding: chunked", "Content-Length: 5"][..],
            &["Content-Length: 5", "Transfer-Encoding: chunked"],
            &["Content-Length: 0", "Transfer-Encoding: gzip"],
            // chunked not last: the length is unknowable (RFC 9112 6.3 item 4).
            &["Transfer-Encoding: gzip"],
            &["Transfer-Encoding: chunked, gzip"],
            &["Transfer-Encoding: chunked", "Transfer-Encoding: identity"],
            &["Transfer-Encoding: chunked;q=1"],
            &["Transfer-Encoding: xchunked"],
            // chunked twice, or nothing.
            &["Transfer-Encoding: chunked, chunked"],
            &["Transfer-Encoding: "],
            &["Transfer-Encoding: ,"],
        ] {
            assert!(
                matches!(framing(1, bad), Err(HttpError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn status_mapping() {
        let cases = [
            (HttpError::Malformed("x".into()), 400, "Bad Request"),
            (
                HttpError::TooLarge(1),
                431,
                "Request Header Fields Too Large",
            ),
            (
                HttpError::TooManyHeaders,
                431,
                "Request Header Fields Too Large",
            ),
            (HttpError::BodyTooLarge(1), 413, "Content Too Large"),
            (HttpError::ExpectationFailed, 417, "Expectation Failed"),
            (
                HttpError::UnsupportedTransferEncoding,
                501,
                "Not Implemented",
            ),
        ];
        for (e, status, reason) in cases {
            assert_eq!((e.status(), e.reason()), (status, reason), "{e}");
        }
    }

    #[test]
    fn length_bodies() {
        let input = b"hello world";
        assert_eq!(
            decode_both(BodyFraming::Length(5), 100, input),
            Ok((b"hello".to_vec(), 5, true))
        );
        assert_eq!(
            decode_both(BodyFraming::Length(5), 100, b"hel"),
            Ok((b"hel".to_vec(), 3, false))
        );
        assert_eq!(
            decode_both(BodyFraming::Empty, 100, input),
            Ok((vec![], 0, true))
        );
        assert_eq!(
            decode_both(BodyFraming::Length(0), 0, input),
            Ok((vec![], 0, true))
        );
        assert_eq!(
            decode_both(BodyFraming::Length(5), 5, input),
            Ok((b"hello".to_vec(), 5, true))
        );
        assert_eq!(
            decode_both(BodyFraming::Length(6), 5, input),
            Err(HttpError::BodyTooLarge(5))
        );
        let mut d = BodyDecoder::new(BodyFraming::Length(2), 10);
        let mut out = Vec::new();
        assert_eq!(d.decode(b"", &mut out), Ok((0, false)));
        assert!(!d.is_done());
        assert_eq!(d.decode(b"abc", &mut out), Ok((2, true)));
        assert!(d.is_done());
        assert_eq!(d.decode(b"abc", &mut out), Ok((0, true)));
        assert_eq!(out, b"ab");
    }

    #[test]
    fn chunked_bodies() {
        let ok = |input: &[u8], body: &[u8]| {
            assert_eq!(
                decode_both(BodyFraming::Chunked, 100, input),
                Ok((body.to_vec(), input.len() - 4, true)),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        };
        // Each input ends with "NEXT", the next request, which must not be consumed.
        ok(
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT",
            b"hello world",
        );
        ok(b"0\r\n\r\nNEXT", b"");
        ok(
            b"A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\nNEXT",
            b"01234567890123456789",
        );
        ok(b"00000003\r\nabc\r\n000\r\n\r\nNEXT", b"abc");
        // Extensions (with whitespace before ';') are ignored.
        ok(
            b"3;name=value;x=\"q;\"\r\nabc\r\n3 \t; e\r\ndef\r\n0;last\r\n\r\nNEXT",
            b"abcdef",
        );
        ok(b"3 \r\nabc\r\n0\r\n\r\nNEXT", b"abc");
        // Trailers are skipped.
        ok(b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nY: 2\r\n\r\nNEXT", b"abc");
        // Data may hold CR and LF.
        ok(b"4\r\n\r\n\r\n\r\n0\r\n\r\nNEXT", b"\r\n\r\n");
    }

    #[test]
    fn chunked_malformed() {
        for input in [
            &b"\r\n"[..],
            b"x\r\n",
            b";ext\r\n",
            b" 5\r\n",
            b"5 5\r\nhello\r\n",
            b"5\nhello\r\n",
            b"5\r\r\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"5\r\nhello\rX",
            b"5\r\nhello\n",
            b"3;ext\nabc\r\n",
            b"0\r\nX: y\n\r\n",
            b"0\r\nX: y\rz",
            b"0\r\n\n",
            b"0\r\n\rX",
            b"-1\r\n",
            b"0x5\r\n",
        ] {
            let r = decode_both(BodyFraming::Chunked, 100, input);
            assert!(
                matches!(r, Err(HttpError::Malformed(_))),
                "{:?}: {r:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn chunk_size_line_limit() {
        let line = |len: usize| {
            let mut v = b"1;".to_vec();
            v.resize(len, b'e');
            v.extend_from_slice(b"\r\na\r\n0\r\n\r\n");
            v
        };
        assert_eq!(
            decode_both(BodyFraming::Chunked, 100, &line(1024)),
            Ok((b"a".to_vec(), 1024 + 10, true))
        );
        assert!(matches!(
            decode_both(BodyFraming::Chunked, 100, &line(1025)),
            Err(HttpError::Malformed(_))
        ));
        // Zeros count too: no endless size line.
        let zeros = [vec![b'0'; 1025], b"1\r\na\r\n0\r\n\r\n".to_vec()].concat();
        assert!(matches!(
            decode_both(BodyFraming::Chunked, 100, &zeros),
            Err(HttpError::Malformed(_))
        ));
    }

    #[test]
    fn chunk_size_overflow() {
        let r = decode_both(
            BodyFraming::Chunked,
            usize::MAX,
            b"1ffffffffffffffffffffff\r\n",
        );
        assert!(matches!(r, Err(HttpError::Malformed(_))), "{r:?}");
        // Without a huge limit, the limit trips first.
        let r = decode_both(BodyFraming::Chunked, 100, b"1ffffffffffffffffffffff\r\n");
        assert_eq!(r, Err(HttpError::BodyTooLarge(100)));
    }

    #[test]
    fn chunked_body_limit() {
        // Exactly at the limit, in two chunks.
        let at = [
            b"32\r\n".to_vec(),
            vec![b'a'; 50],
            b"\r\n32\r\n".to_vec(),
            vec![b'b'; 50],
            b"\r\n0\r\n\r\n".to_vec(),
        ]
        .concat();
        let (body, n, done) = decode_both(BodyFraming::Chunked, 100, &at).unwrap();
        assert_eq!((body.len(), n, done), (100, at.len(), true));
        // One over, refused when the second size is announced, before its data.
        let over = b"32\r\naaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n33";
        assert_eq!(
            decode_both(BodyFraming::Chunked, 100, over),
            Err(HttpError::BodyTooLarge(100))
        );
        let mut d = BodyDecoder::new(BodyFraming::Chunked, 100);
        let mut out = Vec::new();
        assert_eq!(d.decode(b"6", &mut out), Ok((1, false)));
        assert_eq!(d.decode(b"5", &mut out), Err(HttpError::BodyTooLarge(100)));
        // The error sticks.
        assert_eq!(
            d.decode(b"\r\n", &mut out),
            Err(HttpError::BodyTooLarge(100))
        );
        assert_eq!(
            decode_both(BodyFraming::Chunked, 0, b"0\r\n\r\n"),
            Ok((vec![], 5, true))
        );
        assert_eq!(
            decode_both(BodyFraming::Chunked, 0, b"1"),
            Err(HttpError::BodyTooLarge(0))
        );
    }

    #[test]
    fn trailer_limit() {
        let trailers = |len: usize| {
            // "0\r\n" + one trailer line of `len - 4` bytes + CRLF + the final CRLF.
            [b"0\r\n".to_vec(), vec![b'x'; len - 4], b"\r\n\r\n".to_vec()].concat()
        };
        let at = trailers(MAX_TRAILER_BYTES);
        assert_eq!(
            decode_both(BodyFraming::Chunked, 100, &at),
            Ok((vec![], at.len(), true))
        );
        let over = trailers(MAX_TRAILER_BYTES + 1);
        assert!(matches!(
            decode_both(BodyFraming::Chunked, 100, &over),
            Err(HttpError::Malformed(_))
        ));
    }

    #[test]
    fn query_params_decode() {
        let got: Vec<(Vec<u8>, Vec<u8>)> = query_params("ch=a&ch=b%20c&x")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            got,
            vec![
                (b"ch".to_vec(), b"a".to_vec()),
                (b"ch".to_vec(), b"b c".to_vec()),
                (b"x".to_vec(), b"".to_vec()),
            ]
        );
        let one = |q| {
            let mut it = query_params(q);
            let r = it.next().map(|(k, v)| (k.into_owned(), v.into_owned()));
            assert!(it.next().is_none());
            r
        };
        assert_eq!(one("a+b=c+d"), Some((b"a b".to_vec(), b"c d".to_vec())));
        assert_eq!(
            one("k=%2B%3d%zz%4%"),
            Some((b"k".to_vec(), b"+=%zz%4%".to_vec()))
        );
        assert_eq!(one("k=a=b"), Some((b"k".to_vec(), b"a=b".to_vec())));
        assert_eq!(one("=v"), Some((b"".to_vec(), b"v".to_vec())));
        assert_eq!(
            one("k=%C3%A9%00"),
            Some((b"k".to_vec(), "é\0".as_bytes().to_vec()))
        );
        assert_eq!(one("&&k&"), Some((b"k".to_vec(), b"".to_vec())));
        assert_eq!(one(""), None);
        // Nothing decoded, nothing copied.
        let (k, v) = query_params("ch=news").next().unwrap();
        assert!(matches!((k, v), (Cow::Borrowed(_), Cow::Borrowed(_))));
    }

    #[test]
    fn tokens() {
        assert!(has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(has_token(b" close ", "close"));
        assert!(has_token(b"a,\tKeep-Alive\t", "keep-alive"));
        assert!(!has_token(b"not-close", "close"));
        assert!(!has_token(b"closed", "close"));
        assert!(!has_token(b"", "close"));
        assert!(!has_token(b"a,,b", ""));
    }

    #[test]
    fn responses_with_extras_and_streams() {
        let mut v = Vec::new();
        response_with(
            &mut v,
            405,
            "Method Not Allowed",
            "text/plain",
            &["Allow: GET, HEAD", "X-Bad: a\r\nInjected: 1"],
            b"no\n",
            true,
        );
        let s = String::from_utf8(v).unwrap();
        assert_eq!(
            s,
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: keep-alive\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nAllow: GET, HEAD\r\n\r\nno\n"
        );
        let (mut a, mut b) = (Vec::new(), Vec::new());
        response(&mut a, 200, "OK", "text/plain", b"ok", false);
        response_with(&mut b, 200, "OK", "text/plain", &[], b"ok", false);
        assert_eq!(a, b);
        let mut v = Vec::new();
        stream_head(&mut v, "text/event-stream", &["X-A: 1"]);
        let s = String::from_utf8(v).unwrap();
        assert_eq!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: keep-alive\r\nX-Accel-Buffering: no\r\nX-A: 1\r\n\r\n"
        );
    }
}
