//! Parsing one client command (multibulk or inline) with Redis 7's limits and error texts.

use thiserror::Error;

use super::split::split_args;

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
/// nothing once warm. Argument bytes are copied in (inline arguments may be unescaped).
#[derive(Debug, Default, Clone)]
pub struct Args {
    buf: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl Args {
    /// An empty argument list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets the arguments, keeping the buffers.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.spans.clear();
    }

    /// Number of arguments (the command name included).
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are none (an empty inline line or `*0`).
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Argument `i`.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        self.spans.get(i).map(|&(s, e)| &self.buf[s..e])
    }

    /// All arguments in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.spans.iter().map(|&(s, e)| &self.buf[s..e])
    }

    fn push(&mut self, arg: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(arg);
        self.spans.push((start, self.buf.len()));
    }
}

/// A request Redis would reject; `Display` is exactly the text Redis sends after `-ERR `.
/// Redis closes the connection after sending it, and so must the caller.
#[derive(Debug, Error, PartialEq, Eq, Clone)]
pub enum ProtocolError {
    /// The `*N` count is not a number or is too large.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A `$N` length is not a number, negative, or over the bulk limit.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// An argument of a multibulk command does not start with `$`.
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedDollar(char),
    /// An inline command has no newline within the inline limit.
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    /// The `*N` line has no CR within the inline limit.
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    /// A `$N` line has no CR within the inline limit.
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    /// Inline quotes do not balance.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
}

impl ProtocolError {
    /// The full error reply: `-ERR <text>\r\n`.
    pub fn redis_error_line(&self) -> Vec<u8> {
        format!("-ERR {self}\r\n").into_bytes()
    }
}

/// Parses one command from the start of `input` into `args`.
///
/// `Ok(Some(n))`: a whole command used the first `n` bytes (`args` may be empty: Redis
/// ignores empty commands). `Ok(None)`: more bytes are needed; nothing was consumed.
pub fn parse_command(
    input: &[u8],
    limits: &Limits,
    args: &mut Args,
) -> Result<Option<usize>, ProtocolError> {
    args.clear();
    match input.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(input, limits, args),
        Some(_) => parse_inline(input, limits, args),
    }
}

fn parse_multibulk(
    input: &[u8],
    limits: &Limits,
    args: &mut Args,
) -> Result<Option<usize>, ProtocolError> {
    // Like Redis: look for the CR; without one, the line is either incomplete or too long.
    let Some(cr) = memchr(b'\r', input) else {
        if input.len() > limits.max_inline_len {
            return Err(ProtocolError::TooBigMultibulkCount);
        }
        return Ok(None);
    };
    if cr + 2 > input.len() {
        return Ok(None);
    }
    let count = string2ll(&input[1..cr])
        .filter(|&n| n <= limits.max_multibulk_len as i64)
        .ok_or(ProtocolError::InvalidMultibulkLength)?;
    let mut pos = cr + 2;
    if count <= 0 {
        return Ok(Some(pos));
    }
    for _ in 0..count {
        let rest = &input[pos..];
        let Some(cr) = memchr(b'\r', rest) else {
            if rest.len() > limits.max_inline_len {
                return Err(ProtocolError::TooBigBulkCount);
            }
            return Ok(None);
        };
        if cr + 2 > rest.len() {
            return Ok(None);
        }
        if rest[0] != b'$' {
            return Err(ProtocolError::ExpectedDollar(rest[0] as char));
        }
        let len = string2ll(&rest[1..cr])
            .filter(|&n| n >= 0 && n as u64 <= limits.max_bulk_len as u64)
            .ok_or(ProtocolError::InvalidBulkLength)? as usize;
        let start = pos + cr + 2;
        // Redis skips the two bytes after the data without checking them; so do we.
        if input.len() - start < len + 2 {
            return Ok(None);
        }
        args.push(&input[start..start + len]);
        pos = start + len + 2;
    }
    Ok(Some(pos))
}

fn parse_inline(
    input: &[u8],
    limits: &Limits,
    args: &mut Args,
) -> Result<Option<usize>, ProtocolError> {
    let Some(nl) = memchr(b'\n', input) else {
        if input.len() > limits.max_inline_len {
            return Err(ProtocolError::TooBigInline);
        }
        return Ok(None);
    };
    let line = if nl > 0 && input[nl - 1] == b'\r' {
        &input[..nl - 1]
    } else {
        &input[..nl]
    };
    if !split_args(line, |a| args.push(a)) {
        args.clear();
        return Err(ProtocolError::UnbalancedQuotes);
    }
    Ok(Some(nl + 1))
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Redis's strict `string2ll`: optional `-`, no `+`, no leading zeros, no spaces, fits i64.
fn string2ll(s: &[u8]) -> Option<i64> {
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
