//! SSE encoding read back by a small model of the browser's parser (WHATWG HTML Standard,
//! §9.2.5 "Parsing an event stream" and §9.2.6 "Interpreting an event stream"): data comes
//! back with its line breaks normalised to `\n`, ids and event types as written, comments and
//! `retry:` fire nothing, an id-only block moves `lastEventId` without firing; the `*_len`
//! functions match what is written; event ids of positions round-trip.

use corecast_proto::sse::{self, Position};
use proptest::prelude::*;

/// One dispatched `MessageEvent`: type, data, lastEventId.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Dispatched {
    kind: Vec<u8>,
    data: Vec<u8>,
    last_event_id: Vec<u8>,
}

/// The EventSource's state, per §9.2.6.
#[derive(Default)]
struct EventSource {
    last_event_id: Vec<u8>,
    id_buffer: Vec<u8>,
    type_buffer: Vec<u8>,
    data_buffer: Vec<u8>,
    reconnection_ms: Option<u64>,
    events: Vec<Dispatched>,
}

impl EventSource {
    /// Feeds a whole stream. Lines end at CRLF, CR or LF; a last line with no end is pending
    /// data and is discarded when the stream ends (§9.2.6).
    fn feed(&mut self, stream: &[u8]) {
        let mut start = 0;
        let mut i = 0;
        while i < stream.len() {
            match stream[i] {
                b'\n' => {
                    self.line(&stream[start..i]);
                    i += 1;
                    start = i;
                }
                b'\r' => {
                    self.line(&stream[start..i]);
                    i += if stream.get(i + 1) == Some(&b'\n') {
                        2
                    } else {
                        1
                    };
                    start = i;
                }
                _ => i += 1,
            }
        }
    }

    fn line(&mut self, line: &[u8]) {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            return;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"event" => self.type_buffer = value.to_vec(),
            b"data" => {
                self.data_buffer.extend_from_slice(value);
                self.data_buffer.push(b'\n');
            }
            b"id" if !value.contains(&0) => self.id_buffer = value.to_vec(),
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.reconnection_ms = std::str::from_utf8(value).unwrap().parse().ok();
            }
            _ => {}
        }
    }

    /// "Dispatch the event", steps 1-8.
    fn dispatch(&mut self) {
        self.last_event_id = self.id_buffer.clone();
        if self.data_buffer.is_empty() {
            self.type_buffer.clear();
            return;
        }
        if self.data_buffer.last() == Some(&b'\n') {
            self.data_buffer.pop();
        }
        let kind = if self.type_buffer.is_empty() {
            b"message".to_vec()
        } else {
            std::mem::take(&mut self.type_buffer)
        };
        self.events.push(Dispatched {
            kind,
            data: std::mem::take(&mut self.data_buffer),
            last_event_id: self.last_event_id.clone(),
        });
    }
}

fn normalised(data: &str) -> Vec<u8> {
    data.replace("\r\n", "\n").replace('\r', "\n").into_bytes()
}

fn read(stream: &[u8]) -> EventSource {
    let mut es = EventSource::default();
    es.feed(stream);
    es
}

/// Data rich in line breaks of every kind, and in leading spaces and colons.
fn data() -> impl Strategy<Value = String> {
    "(\r\n|\r|\n| |:|data: |[a-z]|.){0,24}"
}

fn position() -> impl Strategy<Value = Option<Position>> {
    proptest::option::of(
        (any::<u64>(), any::<u64>()).prop_map(|(epoch, seq)| Position { epoch, seq }),
    )
}

#[derive(Debug, Clone)]
enum Block {
    Event(Option<String>, Option<String>, String),
    Comment(String),
    Retry(u64),
    IdOnly(String),
}

fn block() -> impl Strategy<Value = Block> {
    let id = "[ -~]{0,12}";
    prop_oneof![
        4 => (
            proptest::option::of(id),
            proptest::option::of("[a-z]{0,6}"),
            data()
        )
            .prop_map(|(i, n, d)| Block::Event(i, n, d)),
        1 => ".{0,12}".prop_map(Block::Comment),
        1 => any::<u64>().prop_map(Block::Retry),
        1 => id.prop_map(Block::IdOnly),
    ]
}

proptest! {
    #[test]
    fn one_event_reads_back(
        id in proptest::option::of("[ -~]{0,16}"),
        name in proptest::option::of("[ -~]{0,8}"),
        data in data(),
    ) {
        let mut out = b"data: earlier\n\n".to_vec();
        let before = out.len();
        sse::event(&mut out, id.as_deref().map(str::as_bytes), name.as_deref(), data.as_bytes());
        prop_assert_eq!(
            out.len() - before,
            sse::event_len(id.as_deref().map(str::as_bytes), name.as_deref(), data.as_bytes())
        );
        let es = read(&out);
        prop_assert_eq!(es.events.len(), 2);
        let kind = match name.as_deref() {
            None | Some("") => "message",
            Some(n) => n,
        };
        prop_assert_eq!(
            &es.events[1],
            &Dispatched {
                kind: kind.as_bytes().to_vec(),
                data: normalised(&data),
                last_event_id: id.unwrap_or_default().into_bytes(),
            }
        );
    }

    #[test]
    fn line_breaks_in_fields_cannot_break_framing(
        id in prop::collection::vec(any::<u8>(), 0..16),
        name in ".{0,8}",
        text in ".{0,12}",
        data in data(),
    ) {
        let mut out = Vec::new();
        sse::comment(&mut out, &text);
        let comment_len = out.len();
        sse::event(&mut out, Some(&id), Some(&name), data.as_bytes());
        prop_assert_eq!(
            out.len() - comment_len,
            sse::event_len(Some(&id), Some(&name), data.as_bytes())
        );
        let es = read(&out);
        prop_assert_eq!(es.events.len(), 1);
        let clean: Vec<u8> = id.iter().copied().filter(|&b| !matches!(b, b'\r' | b'\n' | 0)).collect();
        prop_assert_eq!(&es.events[0].last_event_id, &clean);
        prop_assert_eq!(&es.events[0].data, &normalised(&data));
        let name: String = name.chars().filter(|&c| c != '\r' && c != '\n').collect();
        let kind = if name.is_empty() { "message".to_owned() } else { name };
        prop_assert_eq!(&es.events[0].kind, &kind.into_bytes());
    }

    /// A stream of blocks of every kind dispatches exactly its events, in order, each with the
    /// id in force at the time (set by the event itself or an earlier id-only block).
    #[test]
    fn streams_of_blocks_read_back(blocks in prop::collection::vec(block(), 0..12)) {
        let mut out = Vec::new();
        let mut want = Vec::new();
        let mut id_now = Vec::new();
        let mut retry = None;
        for b in &blocks {
            match b {
                Block::Event(id, name, data) => {
                    sse::event(&mut out, id.as_deref().map(str::as_bytes), name.as_deref(), data.as_bytes());
                    if let Some(id) = id {
                        id_now = id.clone().into_bytes();
                    }
                    let kind = match name.as_deref() {
                        None | Some("") => "message",
                        Some(n) => n,
                    };
                    want.push(Dispatched {
                        kind: kind.as_bytes().to_vec(),
                        data: normalised(data),
                        last_event_id: id_now.clone(),
                    });
                }
                Block::Comment(text) => sse::comment(&mut out, text),
                Block::Retry(ms) => {
                    sse::retry(&mut out, *ms);
                    retry = Some(*ms);
                }
                Block::IdOnly(id) => {
                    sse::id_only(&mut out, id.as_bytes());
                    id_now = id.clone().into_bytes();
                }
            }
        }
        let es = read(&out);
        prop_assert_eq!(es.events, want);
        prop_assert_eq!(es.last_event_id, id_now);
        prop_assert_eq!(es.reconnection_ms, retry);
    }

    #[test]
    fn positions_round_trip(positions in prop::collection::vec(position(), 0..8)) {
        let mut id = Vec::new();
        sse::write_positions(&mut id, &positions);
        prop_assert_eq!(id.len(), sse::positions_len(&positions));
        prop_assert_eq!(sse::parse_positions(&id, positions.len()), Some(positions.clone()));
        if !positions.is_empty() {
            prop_assert_eq!(sse::parse_positions(&id, positions.len() + 1), None);
        }
        // As an event id, it survives the browser's parser unchanged.
        let mut out = Vec::new();
        sse::event(&mut out, Some(&id), None, b"x");
        prop_assert_eq!(&read(&out).last_event_id, &id);
    }

    /// Whatever `parse_positions` accepts is in the one spelling `write_positions` produces.
    #[test]
    fn accepted_ids_are_canonical(id in "[0-9a-fA-F:,x -]{0,24}", channels in 0usize..6) {
        if let Some(positions) = sse::parse_positions(id.as_bytes(), channels) {
            prop_assert_eq!(positions.len(), channels);
            let mut again = Vec::new();
            sse::write_positions(&mut again, &positions);
            prop_assert_eq!(again, id.into_bytes());
        }
    }

    #[test]
    fn arbitrary_ids_never_panic(id in prop::collection::vec(any::<u8>(), 0..64), channels in any::<usize>()) {
        let _ = sse::parse_positions(&id, channels);
        let _ = sse::parse_positions(&id, channels % 8);
    }
}

#[test]
fn id_only_sets_last_event_id_without_an_event() {
    let mut out = Vec::new();
    sse::event(&mut out, Some(b"1:1"), None, b"first");
    sse::id_only(&mut out, b"1:5");
    sse::comment(&mut out, "heartbeat");
    sse::retry(&mut out, 2500);
    sse::event(&mut out, None, Some("note"), b"");
    let es = read(&out);
    assert_eq!(
        es.events,
        [
            Dispatched {
                kind: b"message".to_vec(),
                data: b"first".to_vec(),
                last_event_id: b"1:1".to_vec(),
            },
            Dispatched {
                kind: b"note".to_vec(),
                data: b"".to_vec(),
                last_event_id: b"1:5".to_vec(),
            },
        ]
    );
    assert_eq!(es.reconnection_ms, Some(2500));
}

#[test]
fn empty_data_still_dispatches() {
    let mut out = Vec::new();
    sse::event(&mut out, None, None, b"");
    assert_eq!(out, b"data: \n\n");
    assert_eq!(read(&out).events.len(), 1);
    // Without the data line nothing would fire: the model agrees with step 2.
    assert_eq!(read(b"event: x\n\n").events.len(), 0);
}
