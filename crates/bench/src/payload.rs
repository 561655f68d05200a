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

/// Reads the header of a JSON-string payload; None unless it starts with `"` and 48
/// lowercase hex digits (the padding and the closing quote are not looked at).
pub fn decode_json(p: &[u8]) -> Option<Header> {
    if p.len() < JSON_HEADER_LEN || p[0] != b'"' {
        return None;
    }
    Some(Header {
        ts_ns: hex16_at(p, 1)?,
        channel: hex8(chunk_at(p, 17))?,
        publisher: hex8(chunk_at(p, 25))?,
        seq: hex16_at(p, 33)?,
    })
}

fn put_hex(out: &mut Vec<u8>, v: u64, digits: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for k in (0..digits).rev() {
        out.push(HEX[((v >> (4 * k)) & 0xf) as usize]);
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Bit 7 of each byte of `x` (every byte below 0x80) that is at least `n` (at most 0x80):
/// adding `0x80 - n` reaches bit 7 exactly then, and never carries into the next byte.
#[inline]
fn bytes_at_least(x: u64, n: u8) -> u64 {
    x.wrapping_add(LO * u64::from(0x80 - n)) & HI
}

/// The eight bytes of `p` from `at`, the first in the lowest byte.
#[inline]
fn chunk_at(p: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(p[at..at + 8].try_into().expect("8 bytes"))
}

/// Eight lowercase hex digits (the first the most significant) read eight bytes at a time:
/// 48 digits per delivery made a table lookup per digit a quarter of the load generator's
/// time at 64 B. None unless every byte is `0-9` or `a-f`.
#[inline]
fn hex8(x: u64) -> Option<u32> {
    if x & HI != 0 {
        return None;
    }
    let digit = bytes_at_least(x, b'0') & !bytes_at_least(x, b'9' + 1);
    let letter = bytes_at_least(x, b'a') & !bytes_at_least(x, b'f' + 1);
    if digit | letter != HI {
        return None;
    }
    // Low nibble, plus 9 for a letter ('a' is 0x61: 1 + 9 = 10).
    let nibbles = (x & (LO * 0x0f)) + (letter >> 7) * 9;
    // The first digit into the highest byte, then pairs, quads, eights of nibbles.
    let mut v = nibbles.swap_bytes();
    v = (v | (v >> 4)) & 0x00ff_00ff_00ff_00ff;
    v = (v | (v >> 8)) & 0x0000_ffff_0000_ffff;
    v = (v | (v >> 16)) & 0x0000_0000_ffff_ffff;
    Some(v as u32)
}

/// Sixteen lowercase hex digits from `at`.
#[inline]
fn hex16_at(p: &[u8], at: usize) -> Option<u64> {
    let hi = hex8(chunk_at(p, at))?;
    let lo = hex8(chunk_at(p, at + 8))?;
    Some(u64::from(hi) << 32 | u64::from(lo))
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

    proptest::proptest! {
        #[test]
        fn hex8_agrees_with_a_digit_loop(bytes in proptest::collection::vec(
            proptest::sample::select(b"0123456789abcdefgABCDEF/:`G\x00\x7f\x80\xff".to_vec()), 8)) {
            let x = u64::from_le_bytes(bytes[..].try_into().unwrap());
            let want = bytes.iter().try_fold(0u32, |v, &b| {
                let d = match b {
                    b'0'..=b'9' => b - b'0',
                    b'a'..=b'f' => b - b'a' + 10,
                    _ => return None,
                };
                Some(v << 4 | u32::from(d))
            });
            proptest::prop_assert_eq!(hex8(x), want);
        }
    }

    #[test]
    fn binary_and_json_min_lengths() {
        assert_eq!(Encoding::Binary.min_len(), HEADER_LEN);
        assert_eq!(Encoding::JsonString.min_len(), 50);
    }
}
