#![no_main]
//! Arbitrary bytes as a request (head, then body): never panic; the body decoder gives the
//! same result however the bytes are split, never claims more bytes than given, never
//! outputs more than the body limit, and every error maps to a 4xx/5xx status.
//!
//! The first byte picks the limits and the split pattern; the rest is the request.
use corecast_proto::http::{body_framing, parse_head, BodyDecoder, HttpError, Limits};
use libfuzzer_sys::fuzz_target;

/// Feeds `input` to a fresh decoder in pieces whose sizes come from `seed` (xorshift), as a
/// server would: unconsumed bytes are kept and offered again with the next piece.
fn decode_split(
    decoder: &mut BodyDecoder,
    input: &[u8],
    mut seed: u32,
    out: &mut Vec<u8>,
) -> Result<(usize, bool), HttpError> {
    let mut used = 0;
    let mut offered = 0;
    loop {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        offered = (offered + 1 + (seed % 17) as usize).min(input.len());
        let pending = &input[used..offered];
        let (n, done) = decoder.decode(pending, out)?;
        assert!(n <= pending.len());
        used += n;
        if done || offered == input.len() {
            return Ok((used, done));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&knob, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_head_bytes: 4096,
        max_headers: usize::from(knob % 16) * 8,
        max_body_bytes: usize::from(knob) * 4,
    };
    let (head, n) = match parse_head(input, &limits) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => return,
        Err(e) => {
            assert!(matches!(e.status(), 400 | 431));
            return;
        }
    };
    assert!(n <= input.len() && n <= limits.max_head_bytes);
    assert!(head.headers.len() <= limits.max_headers);
    let framing = match body_framing(&head, &limits) {
        Ok(f) => f,
        Err(e) => {
            assert!(matches!(e.status(), 400 | 413 | 501), "{e}");
            return;
        }
    };
    let body = &input[n..];
    let mut whole_out = Vec::new();
    let whole = BodyDecoder::new(framing, limits.max_body_bytes).decode(body, &mut whole_out);
    let mut split_out = Vec::new();
    let mut decoder = BodyDecoder::new(framing, limits.max_body_bytes);
    let split = decode_split(&mut decoder, body, u32::from(knob) | 1, &mut split_out);
    assert_eq!(whole, split);
    match whole {
        Ok((used, done)) => {
            assert!(used <= body.len());
            assert!(done || used == body.len());
            assert_eq!(whole_out, split_out);
            assert!(whole_out.len() <= limits.max_body_bytes);
        }
        Err(e) => assert!(matches!(e.status(), 400 | 413), "{e}"),
    }
});
