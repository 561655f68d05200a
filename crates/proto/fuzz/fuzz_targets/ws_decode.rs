#![no_main]
//! Feeds arbitrary bytes to the WebSocket decoder as they would arrive in pieces (the first
//! byte picks the piece size, the second the message limit): it must never panic, never
//! consume more than it was given, never leave more than one frame waiting, only return
//! UTF-8 text messages, and give exactly the events and error that decoding the bytes whole
//! gives.
use corecast_proto::ws::{Decoder, Event, WsError};
use libfuzzer_sys::fuzz_target;

/// One thing a connection saw: a message (text flag and contents) or another event.
type Seen = (Option<bool>, Vec<u8>, Option<Event>);

/// What a connection sees: message contents, other events, and the error that ended it.
fn run(data: &[u8], step: usize, max: usize) -> (Vec<Seen>, Option<WsError>) {
    let mut d = Decoder::new(max);
    let mut buf = Vec::new();
    let mut seen = Vec::new();
    for piece in data.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match d.decode(&buf) {
                Err(e) => {
                    // The error is one the caller can close with.
                    assert!(matches!(e.close_code(), 1002 | 1007 | 1008 | 1009));
                    return (seen, Some(e));
                }
                Ok((n, ev)) => {
                    assert!(n <= buf.len());
                    buf.drain(..n);
                    match ev {
                        Some(Event::Message { text }) => {
                            if text {
                                assert!(std::str::from_utf8(d.message()).is_ok());
                            }
                            assert!(d.message().len() <= max);
                            seen.push((Some(text), d.message().to_vec(), None));
                            d.consume_message();
                        }
                        Some(ev) => {
                            if let Event::Close { reason, .. } = ev {
                                assert!(std::str::from_utf8(reason.as_slice()).is_ok());
                            }
                            seen.push((None, Vec::new(), Some(ev)));
                        }
                        None if n == 0 => break,
                        None => {}
                    }
                }
            }
        }
        assert!(buf.len() <= 14 + max.max(125));
    }
    (seen, None)
}

fuzz_target!(|data: &[u8]| {
    let [step, max, data @ ..] = data else {
        return;
    };
    let step = usize::from(*step % 64) + 1;
    let max = usize::from(*max) * 4;
    let whole = run(data, data.len().max(1), max);
    assert_eq!(run(data, step, max), whole);
});
