//! WebSocket client framing (RFC 6455): parsing server frames (unmasked, headers of 2, 4 or
//! 10 bytes) out of a byte stream and encoding masked client frames. No extensions are
//! negotiated, so a frame with a reserved bit set is an error.

/// Continuation frame.
pub const OP_CONT: u8 = 0x0;
/// Text frame.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub const OP_PING: u8 = 0x9;
/// Pong frame.
pub const OP_PONG: u8 = 0xA;

/// One server frame, its payload borrowed from the stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Final fragment of its message.
    pub fin: bool,
    /// Opcode.
    pub opcode: u8,
    /// Payload (server frames are not masked).
    pub payload: &'a [u8],
}

/// Largest payload accepted in one frame (a bound against garbage lengths).
const MAX_FRAME: u64 = 64 << 20;

/// Parses the first complete frame in `buf`: `Ok(Some((consumed, frame)))`, `Ok(None)` when
/// incomplete, `Err` on a frame a client must reject (masked, reserved bits, bad opcode,
/// fragmented or long control frame, oversized).
pub fn parse_frame(buf: &[u8]) -> Result<Option<(usize, Frame<'_>)>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    if b0 & 0x70 != 0 {
        return Err(format!("WebSocket frame with reserved bits {b0:#04x}"));
    }
    let opcode = b0 & 0x0f;
    if b1 & 0x80 != 0 {
        return Err("masked WebSocket frame from the server".into());
    }
    let (len, at) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let n = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes"));
            (n, 10)
        }
        n => (u64::from(n), 2),
    };
    if len > MAX_FRAME {
        return Err(format!("WebSocket frame of {len} bytes"));
    }
    match opcode {
        OP_CONT | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin || len > 125 {
                return Err("fragmented or long WebSocket control frame".into());
            }
        }
        _ => return Err(format!("WebSocket opcode {opcode:#x}")),
    }
    let end = at + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some((
        end,
        Frame {
            fin,
            opcode,
            payload: &buf[at..end],
        },
    )))
}

/// Appends one final, masked client frame.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let n = payload.len();
    if n < 126 {
        out.push(0x80 | n as u8);
    } else if n <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, &b)| b ^ mask[i & 3]));
}

/// A small xorshift generator for masking keys and handshake nonces (RFC 6455 asks for
/// unpredictable masks so that intermediaries cannot be poisoned; a load generator on a
/// benchmark host needs them varied, not secret).
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `seed` (zero is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A masking key.
    pub fn mask(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_le_bytes()
    }

    /// A `Sec-WebSocket-Key`: 16 random bytes in base64.
    pub fn key(&mut self) -> String {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        b[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        crate::http::base64(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server frame (unmasked) with the given header length form.
    fn server_frame(fin: bool, opcode: u8, payload: &[u8], form: usize) -> Vec<u8> {
        let mut v = vec![u8::from(fin) << 7 | opcode];
        match form {
            2 => v.push(payload.len() as u8),
            4 => {
                v.push(126);
                v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
            }
            _ => {
                v.push(127);
                v.extend_from_slice(&(payload.len() as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(payload);
        v
    }

    /// Everything `stream` parses to when it arrives cut at `cuts` (kept tail as the
    /// subscriber keeps it).
    fn frames_when_cut(stream: &[u8], cuts: &[usize]) -> Vec<(bool, u8, Vec<u8>)> {
        let mut got = Vec::new();
        let mut buf = Vec::new();
        let mut from = 0;
        for &to in cuts.iter().chain([stream.len()].iter()) {
            buf.extend_from_slice(&stream[from..to]);
            from = to;
            let mut pos = 0;
            while let Some((n, f)) = parse_frame(&buf[pos..]).unwrap() {
                got.push((f.fin, f.opcode, f.payload.to_vec()));
                pos += n;
            }
            buf.drain(..pos);
        }
        assert!(buf.is_empty());
        got
    }

    #[test]
    fn every_split_gives_the_same_frames() {
        let big = vec![b'x'; 300];
        let huge = vec![b'y'; 70_000];
        let mut stream = Vec::new();
        stream.extend(server_frame(true, OP_TEXT, br#"{"op":"ok","id":1}"#, 2));
        stream.extend(server_frame(true, OP_PING, b"hb", 2));
        stream.extend(server_frame(false, OP_TEXT, b"{\"ch\":", 2));
        stream.extend(server_frame(true, OP_PONG, b"", 2));
        stream.extend(server_frame(true, OP_CONT, b"\"a\"}", 2));
        stream.extend(server_frame(true, OP_BINARY, &big, 4));
        stream.extend(server_frame(true, OP_TEXT, &big[..5], 10));
        stream.extend(server_frame(true, OP_BINARY, &huge, 10));
        let whole = frames_when_cut(&stream, &[]);
        assert_eq!(whole.len(), 8);
        assert_eq!(whole[5], (true, OP_BINARY, big.clone()));
        assert_eq!(whole[7].2.len(), 70_000);
        let short = &stream[..stream.len() - huge.len() - 10];
        let short_whole = frames_when_cut(short, &[]);
        for a in 0..short.len() {
            assert_eq!(frames_when_cut(short, &[a]), short_whole, "cut {a}");
            for b in (a..short.len()).step_by(7) {
                assert_eq!(frames_when_cut(short, &[a, b]), short_whole, "cuts {a} {b}");
            }
        }
        let mut rng = Rng::new(7);
        for _ in 0..50 {
            let mut cuts: Vec<usize> = (0..8)
                .map(|_| rng.next_u64() as usize % stream.len())
                .collect();
            cuts.sort_unstable();
            assert_eq!(frames_when_cut(&stream, &cuts), whole, "cuts {cuts:?}");
        }
    }

    #[test]
    fn frames_a_client_must_reject() {
        assert!(
            parse_frame(&[0x81, 0x81, 0, 0, 0, 0, b'x']).is_err(),
            "masked"
        );
        assert!(
            parse_frame(&[0xC1, 0x00]).is_err(),
            "RSV1 (no deflate negotiated)"
        );
        assert!(parse_frame(&[0x83, 0x00]).is_err(), "reserved opcode");
        assert!(parse_frame(&[0x09, 0x00]).is_err(), "fragmented ping");
        assert!(parse_frame(&[0x89, 126, 0, 126]).is_err(), "long ping");
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(parse_frame(&huge).is_err());
        assert_eq!(parse_frame(&[0x81]), Ok(None));
        assert_eq!(parse_frame(&[0x81, 126, 0]), Ok(None));
        assert_eq!(parse_frame(&[0x81, 127, 0, 0, 0, 0, 0, 0, 0]), Ok(None));
    }

    #[test]
    fn client_frames_are_masked_and_unmask_to_the_payload() {
        for len in [0usize, 5, 125, 126, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mask = [0x37, 0xfa, 0x21, 0x3d];
            let mut out = Vec::new();
            encode_frame(&mut out, OP_TEXT, &payload, mask);
            assert_eq!(out[0], 0x81);
            assert!(out[1] & 0x80 != 0, "mask bit");
            let (at, n) = match out[1] & 0x7f {
                126 => (4, u16::from_be_bytes([out[2], out[3]]) as usize),
                127 => (
                    10,
                    u64::from_be_bytes(out[2..10].try_into().unwrap()) as usize,
                ),
                n => (2, n as usize),
            };
            assert_eq!(n, len);
            assert_eq!(&out[at..at + 4], &mask);
            let body: Vec<u8> = out[at + 4..]
                .iter()
                .enumerate()
                .map(|(i, &b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(body, payload);
        }
        // RFC 6455 5.7: a masked "Hello".
        let mut out = Vec::new();
        encode_frame(&mut out, OP_TEXT, b"Hello", [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(
            out,
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn keys_are_16_bytes_of_base64() {
        let mut r = Rng::new(0);
        let (a, b) = (r.key(), r.key());
        assert_eq!(a.len(), 24);
        assert!(a.ends_with("=="));
        assert_ne!(a, b);
    }

    mod props {
        use super::*;
        use corecast_proto::ws as server;
        use proptest::prelude::*;

        fn frame() -> impl Strategy<Value = (u8, bool, Vec<u8>)> {
            prop_oneof![
                (
                    prop::sample::select(vec![OP_TEXT, OP_BINARY]),
                    prop::collection::vec(any::<u8>(), 0..70_000)
                )
                    .prop_map(|(op, p)| (op, true, p)),
                (
                    prop::sample::select(vec![OP_PING, OP_PONG, OP_CLOSE]),
                    prop::collection::vec(any::<u8>(), 0..=125)
                )
                    .prop_map(|(op, p)| (op, true, p)),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Frames as the broker writes them (corecast_proto's encoder, every header
            /// length) parse back, wherever reads cut the stream.
            #[test]
            fn broker_frames_parse_back_at_every_cut(
                frames in prop::collection::vec(frame(), 1..6),
                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            ) {
                let mut wire = Vec::new();
                for (op, _, p) in &frames {
                    server::frame(&mut wire, *op, p);
                }
                let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
                cuts.sort_unstable();
                prop_assert_eq!(frames_when_cut(&wire, &cuts), frames.iter().map(|(op, fin, p)| (*fin, *op, p.clone())).collect::<Vec<_>>());
            }

            /// The broker's decoder takes the bench's masked client frames.
            #[test]
            fn the_broker_decodes_client_frames(
                payload in prop::collection::vec(any::<u8>(), 0..70_000),
                seed in any::<u64>(),
            ) {
                let mut wire = Vec::new();
                encode_frame(&mut wire, OP_BINARY, &payload, super::super::Rng::new(seed).mask());
                let mut d = server::Decoder::new(1 << 20);
                let (n, ev) = d.decode(&wire).unwrap();
                prop_assert_eq!(n, wire.len());
                let binary_message = matches!(ev, Some(server::Event::Message { text: false }));
                prop_assert!(binary_message);
                prop_assert_eq!(d.message(), &payload[..]);
            }
        }
    }
}
