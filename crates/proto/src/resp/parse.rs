//! Parsing one client command (multibulk or inline) with Redis 7's limits and error texts.

use thiserror::Error;

use super::split::split_into;

/// Parser limits. Defaults are Redis's.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest bulk string (`proto-max-bulk-len`, 512 MiB in Redis).
    pub max_bulk_len: usize,
    /// Most arguments in one multibulk command (Redis 7 allows up to INT_MAX; 1 Mi bounds the
    /// per-command argument table).
    pub max_multibulk_len: usize,
    /// Longest inline command, and longest count line (`PROTO_INLINE_MAX_SIZE`, 64 KiB).
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bulk_len: 512 << 20,
            max_multibulk_len: 1 << 20,
            max_inline_len: 64 << 10,
        }
    }
}

/// The arguments of one command, reused from command to command so parsing allocates
/// nothing once warm: one byte buffer holds every argument back to back and a span table says
/// where each starts and ends. Argument bytes are copied in (rather than borrowed from the
/// input) because inline arguments may be unescaped, and so the caller may recycle its read
/// buffer as soon as `parse_command` returns.
#[derive(Debug, Default, Clone)]
pub struct Args {
    buf: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl Args {
    /// An empty argument list; it grows to the largest command seen and stays there.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the arguments, keeping the buffers' capacity for the next command.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
    }

    /// Number of arguments (the command name included).
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none (an empty inline line, `*0` or `*-1`): Redis ignores such a
    /// command, and so should the caller.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Argument `i` (0 is the command name), or `None` past the end.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.spans.get(i).and_then(|&(s, e)| self.buf.get(s..e))
    }

    /// All arguments in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.spans
            .iter()
            .map(|&(s, e)| self.buf.get(s..e).unwrap_or_default())
    }

    /// Appends one whole argument.
    pub(crate) fn push(&mut self, arg: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(arg);
        self.spans.push((start, self.buf.len()));
    }

    /// Starts an argument built byte by byte (inline unescaping); returns its start.
    pub(crate) fn begin(&mut self) -> usize {
        self.buf.len()
    }

    /// Appends one byte to the argument being built.
    pub(crate) fn push_byte(&mut self, b: u8) {
        self.buf.push(b);
    }

    /// Ends the argument started at `start`.
    pub(crate) fn finish(&mut self, start: usize) {
        self.spans.push((start, self.buf.len()));
    }
}

/// A request Redis would reject; `Display` is exactly the text Redis 7 sends after `-ERR `
/// (for [`ProtocolError::ExpectedDollar`] with a non-ASCII byte, see
/// [`ProtocolError::redis_error_line`], which is byte-exact). Redis closes the connection
/// after sending it, and so must the caller: the stream can no longer be framed.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum ProtocolError {
    /// The `*N` count is not a strict integer or is over `max_multibulk_len`.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A `$N` length is not a strict integer, is negative, or is over `max_bulk_len`.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// An argument of a multibulk command does not start with `$`; holds the byte found.
    #[error("Protocol error: expected '$', got '{}'", shown_byte(*.0))]
    ExpectedDollar(u8),
    /// An inline command has no newline within `max_inline_len` bytes.
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    /// The `*N` line has no CR within `max_inline_len` bytes.
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    /// A `$N` line has no CR within `max_inline_len` bytes.
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// Inline quotes do not balance, or a closing quote is not followed by a space.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
}

/// Redis formats the offending byte with `%c` and then maps CR and LF to spaces so that the
/// error line stays one line.
fn shown_byte(b: u8) -> char {
    match b {
        b'\r' | b'\n' => ' ',
        _ => char::from(b),
    }
}

impl ProtocolError {
    /// The full error reply, byte-identical to Redis's: `-ERR <text>\r\n`. Prefer this over
    /// formatting `Display`, which cannot carry a raw non-UTF-8 byte.
    pub fn redis_error_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.write_redis_error_line(&mut out);
        out
    }

    /// Appends [`ProtocolError::redis_error_line`] to `out` without allocating.
    pub fn write_redis_error_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"-ERR ");
        match *self {
            ProtocolError::ExpectedDollar(b) => {
                out.extend_from_slice(b"Protocol error: expected '$', got '");
                out.push(if b == b'\r' || b == b'\n' { b' ' } else { b });
                out.push(b'\'');
            }
            _ => {
                use std::io::Write;
                let _ = write!(out, "{self}");
            }
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// How far a partly received multibulk command has been framed, so that the next call,
/// given the same bytes plus more, continues from there instead of starting over.
///
/// Without it every receive re-frames the whole incomplete command: a client trickling a
/// `*150000` command of tiny arguments a few bytes at a time would make the broker re-read
/// up to `max_unparsed_bytes` per packet, quadratic work that can hold a shard. Redis keeps
/// the same state (`multibulklen`, the read position) per client. It is 8 bytes; the caller
/// keeps one per connection and must reset it (`Resume::default()`) whenever the bytes it
/// passes stop starting where the incomplete command starts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// Offset of the first argument header not yet framed (0: nothing framed).
    pos: u32,
    /// Arguments framed before `pos`.
    done: u32,
}

impl Resume {
    /// Records that framing stopped at the header at `pos`, after `done` arguments, and
    /// returns the "incomplete" answer. `done` < count <= max_multibulk_len; an offset past
    /// u32 (a caller buffering gigabytes) just forgoes resuming.
    #[cold]
    fn stop_at(&mut self, pos: usize, done: usize) -> Option<usize> {
        *self = match (u32::try_from(pos), u32::try_from(done)) {
            (Ok(pos), Ok(done)) => Resume { pos, done },
            _ => Resume::default(),
        };
        None
    }
}

/// Parses one command from the start of `input` into `args` (cleared first).
///
/// `Ok(Some(n))`: a whole command used the first `n` bytes (`n > 0`; `args` may be empty,
/// which Redis ignores). `Ok(None)`: more bytes are needed and nothing was consumed; call
/// again with the same bytes plus more. `Err`: reply with the error and close.
///
/// Like Redis, a first byte of `*` means multibulk and anything else an inline command.
/// Redis finds line ends with C `strchr`, which stops at a NUL byte, so a NUL before the
/// end of a count line or inline line makes Redis wait for more data (and fail once the
/// buffer passes the inline limit); this parser does the same. Redis reads inline data 16
/// KiB at a time and fails once more than 64 KiB sit unterminated; here any line longer
/// than `max_inline_len` fails, which is the same for every line Redis reliably accepts or
/// rejects and does not depend on how the bytes were chunked.
pub fn parse_command(
    input: &[u8],
    limits: &Limits,
    args: &mut Args,
) -> Result<Option<usize>, ProtocolError> {
    parse_command_resuming(input, limits, args, &mut Resume::default())
}

/// [`parse_command`] that keeps, in `resume`, how far an incomplete multibulk command was
/// framed, and continues from there on the next call. Results are the same as
/// `parse_command`'s for the same bytes; only the work differs.
#[inline]
pub fn parse_command_resuming(
    input: &[u8],
    limits: &Limits,
    args: &mut Args,
    resume: &mut Resume,
) -> Result<Option<usize>, ProtocolError> {
    args.clear();
    let r = match input.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(input, limits, args, resume),
        Some(_) => parse_inline(input, limits, args),
    };
    if !matches!(r, Ok(None)) {
        *resume = Resume::default();
    }
    if !matches!(r, Ok(Some(_))) {
        args.clear();
    }
    r
}

/// Where a line ends, as Redis's `strchr` sees it.
enum Line {
    /// The delimiter is at this index.
    At(usize),
    /// No delimiter yet (none, or a NUL came first).
    Missing,
}

/// Finds `delim` in `hay` the way `strchr` would (a NUL ends the search), looking no further
/// than `limit + 1` bytes: a line longer than `limit` is too big whether or not its end has
/// arrived, which keeps the scan bounded.
fn find_line(hay: &[u8], delim: u8, limit: usize) -> Line {
    let window = &hay[..hay.len().min(limit.saturating_add(1))];
    match window.iter().position(|&b| b == delim || b == 0) {
        Some(i) if window[i] == delim => Line::At(i),
        _ => Line::Missing,
    }
}

fn parse_multibulk(
    input: &[u8],
    limits: &Limits,
    args: &mut Args,
    resume: &mut Resume,
) -> Result<Option<usize>, ProtocolError> {
    let Some(cr) = count_line(input, limits, ProtocolError::TooBigMultibulkCount)? else {
        return Ok(None);
    };
    let count = string2ll(&input[1..cr])
        .filter(|&n| n <= limits.max_multibulk_len as i64)
        .ok_or(ProtocolError::InvalidMultibulkLength)?;
    let first = cr + 2;
    if count <= 0 {
        return Ok(Some(first));
    }
    let count = count as usize;
    // Continue where the last call stopped, if it stopped inside these bytes.
    let (mut pos, done) = match (resume.pos as usize, resume.done as usize) {
        (p, d) if d > 0 && p > first && p <= input.len() && d < count => (p, d),
        _ => (first, 0),
    };
    // A command that arrives whole (the usual case) is framed and copied in one pass; one
    // that resumes is framed from where it stopped and copied once it is complete.
    if done == 0 {
        for i in 0..count {
            let Some((start, end)) = frame_bulk(input, pos, limits)? else {
                return Ok(resume.stop_at(pos, i));
            };
            args.push(&input[start..end - 2]);
            pos = end;
        }
        return Ok(Some(pos));
    }
    for i in done..count {
        let framed = match frame_bulk(input, pos, limits) {
            Ok(framed) => framed,
            // Errors are rare and final: confirm from the start rather than on the word of
            // the resume point.
            Err(_) => {
                *resume = Resume::default();
                return parse_multibulk(input, limits, args, resume);
            }
        };
        let Some((_, end)) = framed else {
            return Ok(resume.stop_at(pos, i));
        };
        pos = end;
    }
    // Complete: frame and copy once more from the start. The resume point is the caller's
    // word that the first arguments were framed already; this pass checks it rather than
    // trusting it, so a stale `Resume` costs time, never a wrong command or a panic.
    *resume = Resume::default();
    let mut at = first;
    for i in 0..count {
        let Some((start, end)) = frame_bulk(input, at, limits)? else {
            return Ok(resume.stop_at(at, i));
        };
        args.push(&input[start..end - 2]);
        at = end;
    }
    Ok(Some(at))
}

/// Finds the CR ending the `*N` or `$N` line at the start of `input`: `Ok(None)` until it and
/// the byte after it have arrived (Redis wants that byte too, without checking it is LF),
/// `too_big` if no CR comes within `max_inline_len` bytes.
#[inline(always)]
fn count_line(
    input: &[u8],
    limits: &Limits,
    too_big: ProtocolError,
) -> Result<Option<usize>, ProtocolError> {
    match find_line(input, b'\r', limits.max_inline_len) {
        Line::At(cr) if cr + 2 <= input.len() => Ok(Some(cr)),
        Line::At(_) => Ok(None),
        Line::Missing if input.len() > limits.max_inline_len => Err(too_big),
        Line::Missing => Ok(None),
    }
}

/// Frames the bulk argument whose `$N` header starts at `pos`: `Ok(Some((start, end)))` with
/// the offset of its data and the offset after the data and the two bytes that follow it,
/// `Ok(None)` if it has not all arrived.
#[inline(always)]
fn frame_bulk(
    input: &[u8],
    pos: usize,
    limits: &Limits,
) -> Result<Option<(usize, usize)>, ProtocolError> {
    let rest = &input[pos..];
    let Some(cr) = count_line(rest, limits, ProtocolError::TooBigBulkCount)? else {
        return Ok(None);
    };
    // `cr` may be 0 (an empty line): then rest[0] is the CR itself.
    if rest[0] != b'$' {
        return Err(ProtocolError::ExpectedDollar(rest[0]));
    }
    let len = string2ll(&rest[1..cr])
        .filter(|&n| n >= 0 && n as u64 <= limits.max_bulk_len as u64)
        .ok_or(ProtocolError::InvalidBulkLength)? as usize;
    let start = pos + cr + 2;
    // Redis skips the two bytes after the data without checking them; so do we.
    if (input.len() - start) < len.saturating_add(2) {
        return Ok(None);
    }
    Ok(Some((start, start + len + 2)))
}

fn parse_inline(
    input: &[u8],
    limits: &Limits,
    args: &mut Args,
) -> Result<Option<usize>, ProtocolError> {
    let nl = match find_line(input, b'\n', limits.max_inline_len) {
        Line::At(nl) => nl,
        Line::Missing if input.len() > limits.max_inline_len => {
            return Err(ProtocolError::TooBigInline)
        }
        Line::Missing => return Ok(None),
    };
    let line = match input[..nl] {
        [ref head @ .., b'\r'] => head,
        ref all => all,
    };
    if !split_into(line, args) {
        return Err(ProtocolError::UnbalancedQuotes);
    }
    Ok(Some(nl + 1))
}

/// Redis's strict `string2ll`: optional `-`, no `+`, no leading zeros, no spaces, fits i64.
/// Commands that take an integer argument (HELLO's protocol version, SELECT's index) read it
/// this way too, so "02" or "+2" fail as they do in Redis.
pub fn string2ll(s: &[u8]) -> Option<i64> {
    match s {
        [] => None,
        [b'0'] => Some(0),
        [b'-', rest @ ..] => {
            let v = digits(rest)?;
            if v > i64::MAX as u64 + 1 {
                None
            } else {
                Some((v as i64).wrapping_neg())
            }
        }
        _ => {
            let v = digits(s)?;
            i64::try_from(v).ok()
        }
    }
}

fn digits(s: &[u8]) -> Option<u64> {
    let (first, rest) = s.split_first()?;
    if !(b'1'..=b'9').contains(first) {
        return None;
    }
    let mut v = (first - b'0') as u64;
    for &c in rest {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed = Option<(usize, Vec<Vec<u8>>)>;

    fn parse(input: &[u8]) -> Result<Parsed, ProtocolError> {
        let mut a = Args::new();
        parse_command(input, &Limits::default(), &mut a)
            .map(|r| r.map(|n| (n, a.iter().map(<[u8]>::to_vec).collect())))
    }

    #[test]
    fn multibulk_and_pipelining() {
        let input = b"*2\r\n$4\r\nPING\r\n$2\r\nhi\r\n*1\r\n$4\r\nPING\r\n";
        let (n, args) = parse(input).unwrap().unwrap();
        assert_eq!(args, vec![b"PING".to_vec(), b"hi".to_vec()]);
        assert_eq!(&input[n..], b"*1\r\n$4\r\nPING\r\n");
    }

    #[test]
    fn binary_safe_bulks() {
        let (_, args) = parse(b"*2\r\n$4\r\na\r\n\0\r\n$0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(args, vec![b"a\r\n\0".to_vec(), Vec::new()]);
    }

    #[test]
    fn incomplete_input_waits() {
        for input in [
            &b"*2\r\n$4\r\nPI"[..],
            b"*2",
            b"*2\r",
            b"*2\r\n$4",
            b"*1\r\n$4\r\nPING\r",
            b"PING",
        ] {
            assert_eq!(parse(input), Ok(None), "{input:?}");
        }
    }

    #[test]
    fn inline_commands() {
        let (n, args) = parse(b"PUBLISH ch \"a b\"\r\nrest").unwrap().unwrap();
        assert_eq!(n, 18);
        assert_eq!(args[2], b"a b");
        assert_eq!(parse(b"\r\n").unwrap().unwrap(), (2, vec![]));
        assert_eq!(parse(b"PING\n").unwrap().unwrap().1, vec![b"PING".to_vec()]);
    }

    #[test]
    fn redis_error_texts() {
        assert_eq!(
            parse(b"*x\r\n").unwrap_err().redis_error_line(),
            b"-ERR Protocol error: invalid multibulk length\r\n"
        );
        assert_eq!(
            parse(b"*1\r\n$-1\r\n").unwrap_err(),
            ProtocolError::InvalidBulkLength
        );
        assert_eq!(
            parse(b"*1\r\n$999999999999\r\n").unwrap_err(),
            ProtocolError::InvalidBulkLength
        );
        assert_eq!(
            parse(b"*1\r\nx\r\n").unwrap_err().to_string(),
            "Protocol error: expected '$', got 'x'"
        );
        assert_eq!(
            parse(&vec![b'a'; 70_000]).unwrap_err(),
            ProtocolError::TooBigInline
        );
        let mut long = b"*".to_vec();
        long.extend(vec![b'1'; 70_000]);
        assert_eq!(
            parse(&long).unwrap_err(),
            ProtocolError::TooBigMultibulkCount
        );
        assert_eq!(
            parse(b"ECHO \"x\r\n").unwrap_err(),
            ProtocolError::UnbalancedQuotes
        );
        assert_eq!(
            parse(b"*01\r\n").unwrap_err(),
            ProtocolError::InvalidMultibulkLength
        );
    }

    #[test]
    fn expected_dollar_is_byte_exact() {
        assert_eq!(
            parse(b"*1\r\n\n\r\n").unwrap_err().redis_error_line(),
            b"-ERR Protocol error: expected '$', got ' '\r\n"
        );
        assert_eq!(
            parse(b"*1\r\n\r\n").unwrap_err().to_string(),
            "Protocol error: expected '$', got ' '"
        );
        assert_eq!(
            parse(b"*1\r\n\xffoo\r\n").unwrap_err().redis_error_line(),
            b"-ERR Protocol error: expected '$', got '\xff'\r\n"
        );
        // The error only shows once the whole line is there, as in Redis.
        assert_eq!(parse(b"*1\r\nxyz"), Ok(None));
        let mut v = b"junk".to_vec();
        ProtocolError::TooBigInline.write_redis_error_line(&mut v);
        assert_eq!(v, b"junk-ERR Protocol error: too big inline request\r\n");
    }

    #[test]
    fn every_error_text() {
        let cases: [(ProtocolError, &str); 7] = [
            (
                ProtocolError::InvalidMultibulkLength,
                "invalid multibulk length",
            ),
            (ProtocolError::InvalidBulkLength, "invalid bulk length"),
            (ProtocolError::ExpectedDollar(b'x'), "expected '$', got 'x'"),
            (ProtocolError::TooBigInline, "too big inline request"),
            (
                ProtocolError::TooBigMultibulkCount,
                "too big mbulk count string",
            ),
            (ProtocolError::TooBigBulkCount, "too big bulk count string"),
            (
                ProtocolError::UnbalancedQuotes,
                "unbalanced quotes in request",
            ),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), format!("Protocol error: {text}"));
            assert_eq!(
                e.redis_error_line(),
                format!("-ERR Protocol error: {text}\r\n").into_bytes()
            );
        }
    }

    #[test]
    fn count_lines_follow_string2ll() {
        for bad in [
            &b"*+1\r\n"[..],
            b"*1 \r\n",
            b"* 1\r\n",
            b"*\r\n",
            b"*-\r\n",
            b"*-0\r\n",
            b"*99999999999999999999\r\n",
            b"*1048577\r\n",
        ] {
            assert_eq!(
                parse(bad),
                Err(ProtocolError::InvalidMultibulkLength),
                "{bad:?}"
            );
        }
        assert_eq!(parse(b"*1048576\r\n"), Ok(None));
        assert_eq!(parse(b"*-5\r\n").unwrap().unwrap().0, 5);
        for bad in [
            &b"*1\r\n$\r\n"[..],
            b"*1\r\n$01\r\n",
            b"*1\r\n$-0\r\n",
            b"*1\r\n$1x\r\n",
        ] {
            assert_eq!(parse(bad), Err(ProtocolError::InvalidBulkLength), "{bad:?}");
        }
        assert_eq!(
            parse(b"*1\r\n$536870912\r\n"),
            Ok(None),
            "512 MiB exactly is allowed"
        );
        assert_eq!(
            parse(b"*1\r\n$536870913\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
        // CR must be followed by one more byte, which is not checked; nor is the data's CRLF.
        assert_eq!(parse(b"*1\r"), Ok(None));
        assert_eq!(
            parse(b"*1\rX$1\rXaXY").unwrap().unwrap(),
            (11, vec![b"a".to_vec()])
        );
    }

    #[test]
    fn too_big_lines() {
        let l = Limits {
            max_inline_len: 8,
            ..Limits::default()
        };
        let mut a = Args::new();
        let mut p = |b: &[u8]| parse_command(b, &l, &mut a).map(|r| r.map(|_| ()));
        assert_eq!(p(b"PING 123"), Ok(None));
        assert_eq!(p(b"PING 1234"), Err(ProtocolError::TooBigInline));
        assert_eq!(p(b"PING 123\n"), Ok(Some(())));
        assert_eq!(p(b"PING 1234\n"), Err(ProtocolError::TooBigInline));
        assert_eq!(p(b"*1234567"), Ok(None));
        assert_eq!(p(b"*12345678"), Err(ProtocolError::TooBigMultibulkCount));
        assert_eq!(
            p(b"*123456789\r\n"),
            Err(ProtocolError::TooBigMultibulkCount)
        );
        assert_eq!(p(b"*1\r\n$1234567"), Ok(None));
        assert_eq!(p(b"*1\r\n$12345678"), Err(ProtocolError::TooBigBulkCount));
        assert_eq!(
            p(b"*1\r\n$12345678\r\n"),
            Err(ProtocolError::TooBigBulkCount)
        );
        // The data of a bulk is not a line: no inline limit applies to it.
        assert_eq!(p(b"*1\r\n$20\r\n01234567890123456789\r\n"), Ok(Some(())));
    }

    #[test]
    fn nul_stalls_line_search_like_strchr() {
        assert_eq!(parse(b"PING\0\r\n"), Ok(None));
        assert_eq!(parse(b"*1\0\r\n$4\r\nPING\r\n"), Ok(None));
        let mut long = b"PING\0\n".to_vec();
        long.resize(70_000, b'a');
        assert_eq!(parse(&long), Err(ProtocolError::TooBigInline));
        let mut long = b"*1\r\n$\0".to_vec();
        long.resize(70_000, b'1');
        assert_eq!(parse(&long), Err(ProtocolError::TooBigBulkCount));
    }

    proptest::proptest! {
        /// Whatever resume point a caller passes, a command or an error that comes back is
        /// exactly what parsing from scratch gives, and nothing panics.
        #[test]
        fn any_resume_point_fails_safe(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..96),
            pos in 0u32..100,
            done in 0u32..8,
            star in proptest::prelude::any::<bool>(),
        ) {
            let mut input = bytes;
            if star {
                input.splice(0..0, b"*3\r\n".iter().copied());
            }
            let l = Limits { max_bulk_len: 32, max_multibulk_len: 8, max_inline_len: 64 };
            let (mut a, mut b) = (Args::new(), Args::new());
            let mut r = Resume { pos, done };
            let got = parse_command_resuming(&input, &l, &mut a, &mut r);
            let want = parse_command(&input, &l, &mut b);
            if !matches!(got, Ok(None)) {
                proptest::prop_assert_eq!(&got, &want);
                proptest::prop_assert!(a.iter().eq(b.iter()));
            }
        }
    }

    #[test]
    fn an_incomplete_multibulk_resumes_after_its_framed_arguments() {
        let l = Limits::default();
        let mut a = Args::new();
        let mut r = Resume::default();
        let wire = b"*4\r\n$1\r\na\r\n$2\r\nbc\r\n$3\r\nde";
        assert_eq!(parse_command_resuming(wire, &l, &mut a, &mut r), Ok(None));
        // Two arguments framed; the third's header starts at byte 19.
        assert_eq!(r, Resume { pos: 19, done: 2 });
        let mut more = wire.to_vec();
        more.extend_from_slice(b"f\r\n$0\r\n\r\n");
        assert_eq!(
            parse_command_resuming(&more, &l, &mut a, &mut r),
            Ok(Some(more.len()))
        );
        assert_eq!(r, Resume::default());
        let got: Vec<&[u8]> = a.iter().collect();
        assert_eq!(got, [&b"a"[..], b"bc", b"def", b""]);
        // A stale resume point outside the bytes given is ignored, not trusted.
        let mut stale = Resume { pos: 999, done: 3 };
        assert_eq!(
            parse_command_resuming(&more, &l, &mut a, &mut stale),
            Ok(Some(more.len()))
        );
        // One inside them that claims garbage was framed is checked: the same error as
        // parsing from scratch, no panic.
        let bad = b"*2\r\nXX$1\r\nb\r\n";
        let mut stale = Resume { pos: 6, done: 1 };
        assert_eq!(
            parse_command_resuming(bad, &l, &mut a, &mut stale),
            Err(ProtocolError::ExpectedDollar(b'X'))
        );
    }

    #[test]
    fn inline_quoting() {
        let args = |b: &[u8]| parse(b).unwrap().unwrap().1;
        assert_eq!(
            args(b"SET \"a\\x41\\n\\\"\" 'it\\'s' \r\n"),
            vec![b"SET".to_vec(), b"aA\n\"".to_vec(), b"it's".to_vec()]
        );
        assert_eq!(args(b"a\"b c\" d\n"), vec![b"ab c".to_vec(), b"d".to_vec()]);
        assert_eq!(args(b"\x0ba\x0bb\n"), vec![b"a\x0bb".to_vec()]);
        assert_eq!(args(b" \t \r\n"), Vec::<Vec<u8>>::new());
        assert_eq!(args(b"\"\" ''\n"), vec![Vec::new(), Vec::new()]);
        assert_eq!(args(b"\"\\xZZ\"\n"), vec![b"xZZ".to_vec()]);
        for bad in [
            &b"\"a\"b\n"[..],
            b"'a'b\n",
            b"'a\n",
            b"\"a\\\"\n",
            b"x \"\n",
        ] {
            assert_eq!(parse(bad), Err(ProtocolError::UnbalancedQuotes), "{bad:?}");
        }
    }

    #[test]
    fn args_are_reused_and_cleared_on_error() {
        let mut a = Args::new();
        let l = Limits::default();
        parse_command(b"*2\r\n$1\r\na\r\n$1\r\nb\r\n", &l, &mut a).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a.get(2), None);
        assert!(parse_command(b"*2\r\n$1\r\na\r\nx\r\n", &l, &mut a).is_err());
        assert!(a.is_empty());
        assert_eq!(parse_command(b"*2\r\n$1\r\na\r\n", &l, &mut a), Ok(None));
        assert!(a.is_empty());
    }

    #[test]
    fn empty_multibulk_is_an_empty_command() {
        assert_eq!(parse(b"*0\r\n").unwrap().unwrap(), (4, vec![]));
        assert_eq!(parse(b"*-1\r\n").unwrap().unwrap(), (5, vec![]));
    }

    #[test]
    fn bulk_limit_is_configurable() {
        let limits = Limits {
            max_bulk_len: 3,
            ..Limits::default()
        };
        let mut a = Args::new();
        assert_eq!(
            parse_command(b"*1\r\n$4\r\n", &limits, &mut a),
            Err(ProtocolError::InvalidBulkLength)
        );
    }
}
