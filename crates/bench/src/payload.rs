//! The message payload: a fixed header (send time, publisher, channel, sequence) padded to
//! the requested size, so every subscriber can measure latency and detect loss, duplication
//! and reordering per (publisher, channel).
//!
//! Two encodings: [`Encoding::Binary`] (little-endian fields, for RESP and NATS subscribers,
//! which receive the bytes as published) and [`Encoding::JsonString`] (for WebSocket and SSE
//! subscribers of corecast, which deliver a payload that is valid JSON spliced into the
//! envelope's `data` and anything else re-encoded as a JSON string): a JSON string of
//! exactly the requested length (a quote, the fields in fixed-width lowercase hex, `.`
//! padding, a quote) that needs no escaping, so the subscriber reads the fields straight out
//! of the envelope.

/// Header bytes; payloads are at least this long.
pub const HEADER_LEN: usize = 24;

/// What a payload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Scheduled (open loop) or actual (closed loop) send time, CLOCK_MONOTONIC ns.
    pub ts_ns: u64,
    /// Channel index.
    pub channel: u32,
    /// Publisher index.
    pub publisher: u32,
    /// Sequence number within (publisher, channel), from 0.
    pub seq: u64,
}

/// Appends a payload of `len` bytes (at least [`HEADER_LEN`]).
pub fn encode(out: &mut Vec<u8>, h: &Header, len: usize) {
    out.extend_from_slice(&h.ts_ns.to_le_bytes());
    out.extend_from_slice(&h.channel.to_le_bytes());
    out.extend_from_slice(&h.publisher.to_le_bytes());
    out.extend_from_slice(&h.seq.to_le_bytes());
    out.resize(out.len() + len.saturating_sub(HEADER_LEN), b'.');
}

/// Reads the header back; None if the payload is too short.
pub fn decode(p: &[u8]) -> Option<Header> {
    if p.len() < HEADER_LEN {
        return None;
    }
    let u64_at = |i: usize| u64::from_le_bytes(p[i..i + 8].try_into().expect("8 bytes"));
    let u32_at = |i: usize| u32::from_le_bytes(p[i..i + 4].try_into().expect("4 bytes"));
    Some(Header {
        ts_ns: u64_at(0),
        channel: u32_at(8),
        publisher: u32_at(12),
        seq: u64_at(16),
    })
}

/// Bytes of a [`Encoding::JsonString`] payload before padding: two quotes and 16 + 8 + 8 + 16
/// hex digits.
pub const JSON_HEADER_LEN: usize = 2 + 16 + 8 + 8 + 16;

/// How the header is put into a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Little-endian fields, `.` padding.
    Binary,
    /// A JSON string: `"`, hex fields, `.` padding, `"`.
    JsonString,
}

impl Encoding {
    /// The shortest payload that holds the header.
    pub fn min_len(self) -> usize {
        match self {
            Encoding::Binary => HEADER_LEN,
            Encoding::JsonString => JSON_HEADER_LEN,
        }
    }

    /// Appends a payload of `len` bytes (at least [`Encoding::min_len`]).
    pub fn encode(self, out: &mut Vec<u8>, h: &Header, len: usize) {
        match self {
            Encoding::Binary => encode(out, h, len),
            Encoding::JsonString => encode_json(out, h, len),
        }
    }

    /// Reads the header back out of a payload as delivered (for `JsonString`: the raw JSON
    /// value of the envelope's `data`, quotes included).
    pub fn decode(self, p: &[u8]) -> Option<Header> {
        match self {
            Encoding::Binary => decode(p),
            Encoding::JsonString => decode_json(p),
        }
    }
}

/// Appends a JSON-string payload of `len` bytes (at least [`JSON_HEADER_LEN`]).
pub fn encode_json(out: &mut Vec<u8>, h: &Header, len: usize) {
    out.push(b'"');
    put_hex(out, h.ts_ns, 16);
    put_hex(out, u64::from(h.channel), 8);
    put_hex(out, u64::from(h.publisher), 8);
    put_hex(out, h.seq, 16);
    out.resize(out.len() + len.saturating_sub(JSON_HEADER_LEN), b'.');
    out.push(b'"');
}

/// Reads the header of a JSON-string payload; None unless it starts with `"` and 48 hex
/// digits (the padding and the closing quote are not looked at).
pub fn decode_json(p: &[u8]) -> Option<Header> {
    if p.len() < JSON_HEADER_LEN || p[0] != b'"' {
        return None;
    }
    Some(Header {
        ts_ns: hex_at(p, 1, 16)?,
        channel: u32::try_from(hex_at(p, 17, 8)?).ok()?,
        publisher: u32::try_from(hex_at(p, 25, 8)?).ok()?,
        seq: hex_at(p, 33, 16)?,
    })
}

fn put_hex(out: &mut Vec<u8>, v: u64, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for k in (0..digits).rev() {
        out.push(HEX[((v >> (4 * k)) & 0xf) as usize]);
    }
}

/// Hex digit values; 0xff for anything else.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

fn hex_at(p: &[u8], at: usize, digits: usize) -> Option<u64> {
    let mut v = 0u64;
    let mut bad = 0u8;
    for &b in &p[at..at + digits] {
        let d = HEX_VALUE[b as usize];
        bad |= d;
        v = v << 4 | u64::from(d & 0xf);
    }
    (bad & 0xf0 == 0).then_some(v)
}

/// Monotonic nanoseconds, comparable across threads and processes.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_padding() {
        let h = Header {
            ts_ns: 123456789,
            channel: 7,
            publisher: 3,
            seq: 42,
        };
        let mut v = Vec::new();
        encode(&mut v, &h, 64);
        assert_eq!(v.len(), 64);
        assert_eq!(decode(&v), Some(h));
        v.clear();
        encode(&mut v, &h, 1);
        assert_eq!(v.len(), HEADER_LEN);
        assert_eq!(decode(&v[..10]), None);
    }

    #[test]
    fn json_string_payloads_are_exact_length_valid_json_and_roundtrip() {
        let h = Header {
            ts_ns: 0x0123_4567_89ab_cdef,
            channel: 0xffff_fffe,
            publisher: 3,
            seq: u64::MAX,
        };
        for len in [0, JSON_HEADER_LEN, JSON_HEADER_LEN + 1, 64, 1024] {
            let mut v = Vec::new();
            Encoding::JsonString.encode(&mut v, &h, len);
            assert_eq!(v.len(), len.max(JSON_HEADER_LEN));
            let parsed: serde_json::Value = serde_json::from_slice(&v).expect("valid JSON");
            assert!(parsed.is_string());
            assert_eq!(Encoding::JsonString.decode(&v), Some(h));
            assert!(
                v[1..v.len() - 1]
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || b == b'.'),
                "nothing to escape"
            );
        }
        let mut v = Vec::new();
        encode_json(&mut v, &h, 64);
        assert_eq!(
            &v[..JSON_HEADER_LEN - 1],
            b"\"0123456789abcdeffffffffe00000003ffffffffffffffff"
        );
        assert_eq!(&v[JSON_HEADER_LEN - 1..], b"..............\"");
        assert_eq!(decode_json(&v[..JSON_HEADER_LEN - 1]), None, "too short");
        assert_eq!(decode_json(&v[1..]), None, "no opening quote");
        let mut bad = v.clone();
        bad[5] = b'g';
        assert_eq!(decode_json(&bad), None, "not hex");
        // A binary payload delivered as a JSON string (re-encoded) is not a header.
        assert_eq!(
            decode_json(b"\"\\u0001...............................................\""),
            None
        );
    }

    #[test]
    fn binary_and_json_min_lengths() {
        assert_eq!(Encoding::Binary.min_len(), HEADER_LEN);
        assert_eq!(Encoding::JsonString.min_len(), 50);
    }
}
