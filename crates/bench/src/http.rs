//! HTTP/1.1 client pieces for the WebSocket and SSE subscribers and the `/healthz` poller:
//! request heads and an incremental parser of response heads.

use std::io::Write;

/// What the bench needs out of a response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// Bytes the head took, blank line included.
    pub len: usize,
    /// `Content-Length`, if given.
    pub content_length: Option<usize>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// `Connection: close`.
    pub close: bool,
}

/// Most bytes a response head may take before it is an error.
const MAX_HEAD: usize = 16 << 10;

/// Parses the response head at the start of `buf`: `Ok(None)` until the blank line has
/// arrived, `Err` on anything that is not an HTTP/1.x response head.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEAD {
            return Err("response head too long".into());
        }
        if !buf.is_empty() && !b"HTTP/1.".starts_with(&buf[..buf.len().min(7)]) {
            return Err(format!(
                "not an HTTP response: {:?}",
                String::from_utf8_lossy(&buf[..buf.len().min(40)])
            ));
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| "response head is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP response: {status_line:?}"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut head = Head {
        status,
        len: end + 4,
        content_length: None,
        chunked: false,
        close: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("bad header line {line:?}"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = Some(
                value
                    .parse()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.to_ascii_lowercase().contains("close");
        }
    }
    Ok(Some(head))
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Appends `GET /sse?ch=<channel>` with `Accept: text/event-stream` and, when resuming,
/// `Last-Event-ID`.
pub fn sse_request(out: &mut Vec<u8>, host: &str, channel: &str, last_event_id: &[u8]) {
    let _ = write!(
        out,
        "GET /sse?ch={} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n",
        Query(channel)
    );
    if !last_event_id.is_empty() {
        out.extend_from_slice(b"Last-Event-ID: ");
        out.extend_from_slice(last_event_id);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends a WebSocket opening handshake for `path` (no extensions, no subprotocol).
pub fn ws_request(out: &mut Vec<u8>, host: &str, path: &str, key: &str) {
    let _ = write!(
        out,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
}

/// Appends `GET <path>` on a kept-alive connection.
pub fn get_request(out: &mut Vec<u8>, host: &str, path: &str) {
    let _ = write!(out, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
}

/// A query-string value, percent-encoded where needed.
struct Query<'a>(&'a str);

impl std::fmt::Display for Query<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "%{b:02X}")?;
            }
        }
        Ok(())
    }
}

/// Base64 (standard alphabet, padded) of `bytes`: the `Sec-WebSocket-Key`.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for k in 0..4 {
            if k <= chunk.len() {
                s.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_once_complete() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\nretry: 10\n";
        for cut in 0..r.len() - 10 {
            assert_eq!(parse_head(&r[..cut]), Ok(None), "cut {cut}");
        }
        let h = parse_head(r).unwrap().unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(&r[h.len..], b"retry: 10\n");
        assert_eq!(h.content_length, None);
        let h = parse_head(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 5\r\nConnection: close\r\n\r\nbusy!",
        )
        .unwrap()
        .unwrap();
        assert_eq!((h.status, h.content_length, h.close), (503, Some(5), true));
        let h = parse_head(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.status, 101);
        assert!(parse_head(b"*3\r\n$7\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n").is_err());
    }

    #[test]
    fn requests() {
        let mut out = Vec::new();
        sse_request(&mut out, "h:1", "bench.0", b"");
        assert_eq!(
            out,
            b"GET /sse?ch=bench.0 HTTP/1.1\r\nHost: h:1\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
        );
        out.clear();
        sse_request(&mut out, "h", "a b/c", b"1f:42");
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /sse?ch=a%20b%2Fc HTTP/1.1\r\n"));
        assert!(text.ends_with("Last-Event-ID: 1f:42\r\n\r\n"));
        let mut out = Vec::new();
        ws_request(&mut out, "h", "/ws", "dGhlIHNhbXBsZSBub25jZQ==");
        assert!(out.ends_with(b"Sec-WebSocket-Version: 13\r\n\r\n"));
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
        assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
    }
}
