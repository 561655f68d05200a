//! Server-Sent Events as an EventSource reads them (the WHATWG "event stream
//! interpretation"): lines end in CRLF, LF or CR; `:` starts a comment; `field: value` with
//! one optional space after the colon; `data` lines of one event are joined with `\n`; a blank
//! line dispatches the event. `retry` takes only all-digit values; an `id` holding NUL is
//! ignored.
//!
//! The parser works on whole events: it returns nothing until the blank line that ends an
//! event has arrived, so the subscriber keeps only an incomplete tail between reads and an
//! event with one `data` line (every delivery) is borrowed from the read buffer, not copied.

/// One event: the fields of one block of lines ended by a blank line. A block of comments
/// only (a heartbeat) is an event with every field `None`.
#[derive(Debug, Default, PartialEq, Eq, Clone)]
pub struct Event<'a> {
    /// The last `id` field (sets the last event ID even when there is no data).
    pub id: Option<&'a [u8]>,
    /// The last `event` field (the type; `message` when absent).
    pub event: Option<&'a [u8]>,
    /// The `data` fields joined with `\n`; `None` when there were none (nothing to
    /// dispatch to a listener).
    pub data: Option<&'a [u8]>,
    /// The last valid `retry` field, in ms.
    pub retry: Option<u64>,
}

/// Parser state carried between events: whether the last event ended in a CR whose LF (if
/// it is a CRLF) has not arrived yet.
#[derive(Debug, Default)]
pub struct Parser {
    skip_lf: bool,
}

/// Longest line accepted before the stream is an error (a bound against garbage).
const MAX_EVENT: usize = 16 << 20;

impl Parser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses the first complete event in `buf`: `Ok(Some((consumed, event)))` once its
    /// blank line has arrived, `Ok(None)` before. Multi-line data is joined into `scratch`.
    pub fn parse<'a>(
        &mut self,
        buf: &'a [u8],
        scratch: &'a mut Vec<u8>,
    ) -> Result<Option<(usize, Event<'a>)>, String> {
        if !self.skip_lf {
            if let Some(found) = delivery(buf) {
                return Ok(Some(found));
            }
        }
        let mut pos = 0;
        if self.skip_lf {
            match buf.first() {
                None => return Ok(None),
                Some(b'\n') => pos = 1,
                Some(_) => {}
            }
        }
        let mut ev = Event::default();
        let mut first_data: Option<&'a [u8]> = None;
        let mut joined = false;
        loop {
            // SIMD: a byte loop, then eight bytes at a time, each left this scan the load
            // generator's largest cost (38% of its CPU at 1 KiB with the latter).
            let Some(e) = memchr::memchr2(b'\n', b'\r', &buf[pos..]).map(|k| pos + k) else {
                if buf.len() - pos > MAX_EVENT {
                    return Err("SSE line too long".into());
                }
                return Ok(None);
            };
            let line = &buf[pos..e];
            let (next, ends_in_lone_cr_at_end) = if buf[e] == b'\r' {
                match buf.get(e + 1) {
                    Some(b'\n') => (e + 2, false),
                    Some(_) => (e + 1, false),
                    None => (e + 1, true),
                }
            } else {
                (e + 1, false)
            };
            if line.is_empty() {
                self.skip_lf = ends_in_lone_cr_at_end;
                if joined {
                    let s: &'a Vec<u8> = scratch;
                    ev.data = Some(&s[..]);
                } else {
                    ev.data = first_data;
                }
                return Ok(Some((next, ev)));
            }
            if ends_in_lone_cr_at_end {
                // The event is not complete before its blank line anyway.
                return Ok(None);
            }
            pos = next;
            if line[0] == b':' {
                continue;
            }
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(c) => {
                    let v = &line[c + 1..];
                    (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
                }
                None => (line, &line[line.len()..]),
            };
            match name {
                b"data" => match first_data {
                    None => first_data = Some(value),
                    Some(first) => {
                        if !joined {
                            scratch.clear();
                            scratch.extend_from_slice(first);
                            joined = true;
                        }
                        scratch.push(b'\n');
                        scratch.extend_from_slice(value);
                    }
                },
                b"id" if !value.contains(&0) => ev.id = Some(value),
                b"event" => ev.event = Some(value),
                b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                    // All digits; too many for a u64 is no advice.
                    if let Ok(ms) = std::str::from_utf8(value).unwrap_or("").parse() {
                        ev.retry = Some(ms);
                    }
                }
                _ => {}
            }
        }
    }
}

/// The block corecast writes for every delivery on a one-channel stream, `id: <id>\n`,
/// `data: <json>\n`, a blank line, read with two line searches and no field dispatch. None
/// for anything else (another layout, CR line ends, an incomplete block), which the general
/// parser then reads; so this only makes the common case cheaper. The general parser at
/// 64 B was a quarter of the load generator's CPU in an SSE fan-out.
fn delivery(buf: &[u8]) -> Option<(usize, Event<'_>)> {
    let rest = buf.strip_prefix(b"id: ")?;
    let id_end = memchr::memchr2(b'\n', b'\r', rest)?;
    let id = &rest[..id_end];
    if rest[id_end] != b'\n' || id.contains(&0) {
        return None;
    }
    let rest = rest[id_end + 1..].strip_prefix(b"data: ")?;
    let data_end = memchr::memchr2(b'\n', b'\r', rest)?;
    if rest[data_end] != b'\n' || rest.get(data_end + 1) != Some(&b'\n') {
        return None;
    }
    let used = b"id: ".len() + id_end + 1 + b"data: ".len() + data_end + 2;
    Some((
        used,
        Event {
            id: Some(id),
            event: None,
            data: Some(&rest[..data_end]),
            retry: None,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event with owned fields, for comparing.
    #[derive(Debug, PartialEq, Eq)]
    struct Owned {
        id: Option<Vec<u8>>,
        event: Option<Vec<u8>>,
        data: Option<Vec<u8>>,
        retry: Option<u64>,
    }

    /// The events of `stream` arriving in pieces cut at `cuts`, kept as a subscriber keeps
    /// an incomplete tail.
    fn events_when_cut(stream: &[u8], cuts: &[usize]) -> Vec<Owned> {
        let mut p = Parser::new();
        let mut scratch = Vec::new();
        let mut got = Vec::new();
        let mut buf = Vec::new();
        let mut from = 0;
        for &to in cuts.iter().chain([stream.len()].iter()) {
            buf.extend_from_slice(&stream[from..to]);
            from = to;
            let mut pos = 0;
            while let Some((n, e)) = p.parse(&buf[pos..], &mut scratch).unwrap() {
                assert!(n > 0);
                got.push(Owned {
                    id: e.id.map(<[u8]>::to_vec),
                    event: e.event.map(<[u8]>::to_vec),
                    data: e.data.map(<[u8]>::to_vec),
                    retry: e.retry,
                });
                pos += n;
            }
            buf.drain(..pos);
        }
        got
    }

    fn o(id: Option<&str>, event: Option<&str>, data: Option<&str>, retry: Option<u64>) -> Owned {
        Owned {
            id: id.map(|s| s.as_bytes().to_vec()),
            event: event.map(|s| s.as_bytes().to_vec()),
            data: data.map(|s| s.as_bytes().to_vec()),
            retry,
        }
    }

    const STREAM: &[u8] = b"retry: 2500\n\
id: 1f3a:42\n\n\
: heartbeat\n\n\
id: 1f3a:43\ndata: {\"ch\":\"c0\",\"seq\":43,\"data\":\"x\"}\n\n\
id: 1f3a:44\r\ndata: {\"ch\":\"c0\",\"seq\":44,\r\ndata:\"data\":{\"a\":\r\ndata:  1}}\r\n\r\n\
event: reset\rdata: {\"ch\":\"c0\",\"epoch\":\"2\",\"first\":7,\"seq\":9}\r\r\
retry: soon\nretry:100\nid\nfoo: bar\nfoo\ndata\n\n\
id: a\0b\ndata:\n\n\
\r\n\n";

    fn expected() -> Vec<Owned> {
        vec![
            o(Some("1f3a:42"), None, None, Some(2500)),
            o(None, None, None, None),
            o(
                Some("1f3a:43"),
                None,
                Some("{\"ch\":\"c0\",\"seq\":43,\"data\":\"x\"}"),
                None,
            ),
            o(
                Some("1f3a:44"),
                None,
                Some("{\"ch\":\"c0\",\"seq\":44,\n\"data\":{\"a\":\n 1}}"),
                None,
            ),
            o(
                None,
                Some("reset"),
                Some("{\"ch\":\"c0\",\"epoch\":\"2\",\"first\":7,\"seq\":9}"),
                None,
            ),
            o(Some(""), None, Some(""), Some(100)),
            o(None, None, Some(""), None),
            o(None, None, None, None),
            o(None, None, None, None),
        ]
    }

    #[test]
    fn fields_line_endings_and_joined_data() {
        assert_eq!(events_when_cut(STREAM, &[]), expected());
    }

    #[test]
    fn the_delivery_layout_is_read_by_the_fast_path_and_nothing_else_is() {
        let block = b"id: 1f3a:43\ndata: {\"seq\":43}\n\nid: 1f3a:44\n";
        let (used, ev) = delivery(block).expect("corecast's delivery block");
        assert_eq!(used, block.len() - b"id: 1f3a:44\n".len());
        assert_eq!(ev.id, Some(&b"1f3a:43"[..]));
        assert_eq!(ev.data, Some(&b"{\"seq\":43}"[..]));
        for other in [
            &b"id: 1\ndata: a\ndata: b\n\n"[..],
            b"id: 1\r\ndata: a\r\n\r\n",
            b"id: 1\nevent: reset\ndata: a\n\n",
            b"id: a\0b\ndata: a\n\n",
            b"id: 1\ndata: a\n",
            b"data: a\n\n",
        ] {
            assert!(delivery(other).is_none(), "{other:?}");
        }
    }

    #[test]
    fn every_split_gives_the_same_events() {
        let want = expected();
        for a in 0..=STREAM.len() {
            assert_eq!(events_when_cut(STREAM, &[a]), want, "cut {a}");
            for b in a..=STREAM.len() {
                assert_eq!(events_when_cut(STREAM, &[a, b]), want, "cuts {a} {b}");
            }
        }
        // One byte at a time.
        let all: Vec<usize> = (1..STREAM.len()).collect();
        assert_eq!(events_when_cut(STREAM, &all), want);
    }

    #[test]
    fn a_lone_cr_at_the_end_is_a_line_end_and_a_following_lf_is_not_a_blank_line() {
        let mut p = Parser::new();
        let mut s = Vec::new();
        let (n, e) = p.parse(b"data: x\r\r", &mut s).unwrap().unwrap();
        assert_eq!((n, e.data), (9, Some(&b"x"[..])));
        // The next read starts with the LF of a CRLF: not a blank line.
        assert_eq!(p.parse(b"", &mut s).unwrap(), None);
        assert_eq!(p.parse(b"\n", &mut s).unwrap(), None);
        let (n, e) = p.parse(b"\ndata: y\n\n", &mut s).unwrap().unwrap();
        assert_eq!((n, e.data), (10, Some(&b"y"[..])));
        // Without a pending CR, an LF is a blank line.
        let (n, e) = p.parse(b"\n", &mut s).unwrap().unwrap();
        assert_eq!((n, e), (1, Event::default()));
    }

    mod props {
        use super::*;
        use corecast_proto::sse as server;
        use proptest::prelude::*;

        /// One block as the broker writes it.
        #[derive(Debug, Clone)]
        enum Block {
            Retry(u64),
            Comment(String),
            IdOnly(Vec<u8>),
            Event(Option<Vec<u8>>, Option<String>, Vec<u8>),
        }

        fn block() -> impl Strategy<Value = Block> {
            let bytes = || prop::collection::vec(any::<u8>(), 0..40);
            let texty =
                || prop::collection::vec(prop::sample::select(&b"ab:\r\n \0{}\""[..]), 0..30);
            prop_oneof![
                any::<u64>().prop_map(Block::Retry),
                "[ -~]{0,20}".prop_map(Block::Comment),
                bytes().prop_map(Block::IdOnly),
                (
                    prop::option::of(texty()),
                    prop::option::of("[a-z :]{0,10}"),
                    prop_oneof![bytes(), texty()],
                )
                    .prop_map(|(i, n, d)| Block::Event(i, n, d)),
            ]
        }

        /// What an EventSource makes of a block.
        fn expect(b: &Block) -> Owned {
            let strip = |v: &[u8], nul: bool| -> Vec<u8> {
                v.iter()
                    .copied()
                    .filter(|&c| c != b'\r' && c != b'\n' && !(nul && c == 0))
                    .collect()
            };
            match b {
                Block::Retry(ms) => o(None, None, None, Some(*ms)),
                Block::Comment(_) => o(None, None, None, None),
                Block::IdOnly(id) => Owned {
                    id: Some(strip(id, true)),
                    event: None,
                    data: None,
                    retry: None,
                },
                Block::Event(id, name, data) => {
                    // Line breaks (CRLF, CR, LF) arrive as LF.
                    let mut d = Vec::new();
                    let mut i = 0;
                    while i < data.len() {
                        match data[i] {
                            b'\r' => {
                                d.push(b'\n');
                                if data.get(i + 1) == Some(&b'\n') {
                                    i += 1;
                                }
                            }
                            c => d.push(c),
                        }
                        i += 1;
                    }
                    Owned {
                        id: id.as_ref().map(|v| strip(v, true)),
                        event: name.as_ref().map(|n| strip(n.as_bytes(), false)),
                        data: Some(d),
                        retry: None,
                    }
                }
            }
        }

        proptest! {
            /// Whatever the broker writes (corecast_proto's encoders), wherever reads cut it,
            /// the client parses the events an EventSource would see.
            #[test]
            fn broker_blocks_parse_to_what_eventsource_sees(
                blocks in prop::collection::vec(block(), 1..12),
                cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            ) {
                let mut wire = Vec::new();
                for b in &blocks {
                    match b {
                        Block::Retry(ms) => server::retry(&mut wire, *ms),
                        Block::Comment(t) => server::comment(&mut wire, t),
                        Block::IdOnly(id) => server::id_only(&mut wire, id),
                        Block::Event(id, name, data) => {
                            server::event(&mut wire, id.as_deref(), name.as_deref(), data)
                        }
                    }
                }
                let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(wire.len() + 1)).collect();
                cuts.sort_unstable();
                let want: Vec<Owned> = blocks.iter().map(expect).collect();
                prop_assert_eq!(events_when_cut(&wire, &cuts), want);
            }
        }
    }
}
