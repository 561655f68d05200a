//! The message payload: a fixed binary header (send time, publisher, channel, sequence)
//! padded to the requested size, so every subscriber can measure latency and detect loss,
//! duplication and reordering per (publisher, channel).

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
}
