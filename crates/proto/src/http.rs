//! HTTP/1.1 request heads and simple responses, for the stats endpoints now and the
//! WebSocket/SSE front-ends later. Parsing is `httparse` (zero-copy, no allocation until a
//! complete head is found).

use thiserror::Error;

/// Most headers accepted in one request (httparse needs a fixed array).
const MAX_HEADERS: usize = 64;

/// A parsed request head, owned so the caller can recycle its read buffer at once. Heads
/// are rare (stats scrapes, WebSocket upgrades), so owning them costs nothing that matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Query string without `?` (empty if none).
    pub query: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Whether the connection stays open after the response (HTTP/1.1 default, unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    pub keep_alive: bool,
}

impl RequestHead {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

/// Why a request head was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HttpError {
    /// Not a well-formed HTTP/1.x request head (bad token, bad version, too many headers);
    /// holds httparse's reason.
    #[error("malformed request head: {0}")]
    Malformed(String),
    /// The head is larger than the caller's limit (holds the limit).
    #[error("request head larger than {0} bytes")]
    TooLarge(usize),
}

/// Parses a request head at the start of `input`, up to and including the blank line.
///
/// `Ok(Some((head, n)))`: the head used the first `n` bytes (a body, if any, follows).
/// `Ok(None)`: incomplete, nothing consumed; call again with more bytes. Errors mean the
/// caller should answer 400 / 431 and close. At most 64 headers are accepted (more is
/// `Malformed`), and a head longer than `max_head_bytes` is `TooLarge` whether or not its
/// end has arrived.
pub fn parse_request_head(
    input: &[u8],
    max_head_bytes: usize,
) -> Result<Option<(RequestHead, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    // Never look past the limit: a client dribbling a huge head costs one bounded scan.
    let window = &input[..input.len().min(max_head_bytes)];
    let status = req
        .parse(window)
        .map_err(|e| HttpError::Malformed(e.to_string()))?;
    let len = match status {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => {
            if input.len() > max_head_bytes {
                return Err(HttpError::TooLarge(max_head_bytes));
            }
            return Ok(None);
        }
    };
    if len > max_head_bytes {
        return Err(HttpError::TooLarge(max_head_bytes));
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
    };
    if let Some(conn) = head.header("connection") {
        let conn = String::from_utf8_lossy(conn).to_ascii_lowercase();
        if conn.split(',').any(|t| t.trim() == "close") {
            head.keep_alive = false;
        } else if conn.split(',').any(|t| t.trim() == "keep-alive") {
            head.keep_alive = true;
        }
    }
    Ok(Some((head, len)))
}

/// Appends a complete HTTP/1.1 response to `out`: status line, `Content-Type`,
/// `Content-Length`, `Connection` (`keep-alive` or `close`, as the caller decided from the
/// request), `Cache-Control: no-store` (stats are live), and the body.
pub fn response(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
) {
    response_head(out, status, reason, content_type, body.len(), keep_alive);
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
    use std::io::Write;
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\nConnection: {}\r\nCache-Control: no-store\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    );
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
}
