//! Property tests: the WebSocket decoder against the client frame encoder, and against
//! arbitrary (or corrupted) bytes fed in arbitrary pieces.

use corecast_proto::ws::{client_frame, opcode, ControlPayload, Decoder, Event, WsError};
use proptest::prelude::*;

/// What a connection sees: messages with their contents, other events, then maybe an error.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Msg(bool, Vec<u8>),
    Ev(Event),
}

/// Feeds `input` to a fresh decoder in pieces of the given sizes (cycled), keeping a read
/// buffer the way a connection does, until an error or the end.
fn decode_in_pieces(input: &[u8], sizes: &[usize], max: usize) -> (Vec<Seen>, Option<WsError>) {
    let mut d = Decoder::new(max);
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    let mut rest = input;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        i += 1;
        let (piece, r) = rest.split_at(n.min(rest.len()));
        rest = r;
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&buf) {
                Err(e) => return (seen, Some(e)),
                Ok((n, ev)) => {
                    assert!(n <= buf.len());
                    buf.drain(..n);
                    match ev {
                        Some(Event::Message { text }) => {
                            if text {
                                assert!(std::str::from_utf8(d.message()).is_ok());
                            }
                            seen.push(Seen::Msg(text, d.message().to_vec()));
                            d.consume_message();
                        }
                        Some(e) => seen.push(Seen::Ev(e)),
                        None if n == 0 => break,
                        None => {}
                    }
                }
            }
        }
        // Never more than one frame header plus one payload is left waiting.
        assert!(buf.len() <= 14 + max.max(125));
    }
    (seen, None)
}

/// One message to send: text or binary, its bytes, where to cut it into fragments, and
/// whether to slip a ping in after each fragment.
#[derive(Debug, Clone)]
struct Msg {
    text: bool,
    bytes: Vec<u8>,
    cuts: Vec<usize>,
    pings: Vec<bool>,
    mask: [u8; 4],
}

fn msg() -> impl Strategy<Value = Msg> {
    (
        prop_oneof![
            ".{0,40}".prop_map(|s: String| (true, s.into_bytes())),
            // Long enough for 16-bit lengths.
            "[a-zé€𝄞]{100,200}".prop_map(|s: String| (true, s.into_bytes())),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| (false, b)),
        ],
        prop::collection::vec(any::<prop::sample::Index>(), 0..4),
        prop::collection::vec(any::<bool>(), 0..5),
        any::<[u8; 4]>(),
    )
        .prop_map(|((text, bytes), cuts, pings, mask)| {
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            cuts.sort_unstable();
            Msg {
                text,
                bytes,
                cuts,
                pings,
                mask,
            }
        })
}

/// Encodes the messages as client frames; returns the stream and the events expected.
fn encode(msgs: &[Msg]) -> (Vec<u8>, Vec<Seen>) {
    let mut out = Vec::new();
    let mut expect = Vec::new();
    for m in msgs {
        let mut bounds = vec![0];
        bounds.extend(&m.cuts);
        bounds.push(m.bytes.len());
        let frags = bounds.len() - 1;
        for (k, w) in bounds.windows(2).enumerate() {
            let op = match (k, m.text) {
                (0, true) => opcode::TEXT,
                (0, false) => opcode::BINARY,
                _ => opcode::CONTINUATION,
            };
            let fin = k + 1 == frags;
            client_frame(&mut out, op, fin, m.mask, &m.bytes[w[0]..w[1]]);
            if !fin && m.pings.get(k).copied().unwrap_or(false) {
                let p = format!("ping {k}");
                client_frame(&mut out, opcode::PING, true, m.mask, p.as_bytes());
                expect.push(Seen::Ev(Event::Ping(
                    ControlPayload::new(p.as_bytes()).expect("short"),
                )));
            }
        }
        expect.push(Seen::Msg(m.text, m.bytes.clone()));
    }
    (out, expect)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random messages, fragmented at random with pings in between, masked at random and
    /// delivered in random pieces, come out exactly as sent.
    #[test]
    fn client_frames_round_trip(
        msgs in prop::collection::vec(msg(), 1..6),
        sizes in prop::collection::vec(1usize..64, 1..8),
    ) {
        let (wire, expect) = encode(&msgs);
        let (seen, err) = decode_in_pieces(&wire, &sizes, 1024);
        prop_assert_eq!(err, None);
        prop_assert_eq!(seen, expect);
    }

    /// A valid stream with some bytes overwritten decodes the same however it is split:
    /// the same events, then the same error (if any), and never a panic.
    #[test]
    fn corrupted_streams_split_anyhow_agree(
        msgs in prop::collection::vec(msg(), 1..4),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        sizes in prop::collection::vec(1usize..32, 1..8),
        max in 0usize..400,
    ) {
        let (mut wire, _) = encode(&msgs);
        for (at, byte) in edits {
            if !wire.is_empty() {
                let i = at.index(wire.len());
                wire[i] = byte;
            }
        }
        let whole = decode_in_pieces(&wire, &[wire.len().max(1)], max);
        prop_assert_eq!(decode_in_pieces(&wire, &sizes, max), whole);
    }

    /// Arbitrary bytes: decoding one byte at a time equals decoding whole.
    #[test]
    fn arbitrary_bytes_split_anyhow_agree(
        wire in prop::collection::vec(any::<u8>(), 0..200),
        max in 0usize..300,
    ) {
        let whole = decode_in_pieces(&wire, &[wire.len().max(1)], max);
        prop_assert_eq!(decode_in_pieces(&wire, &[1], max), whole);
    }
}
