//! Server-Sent Events (`text/event-stream`): encoding events, comments and `retry:` advice,
//! and the event ids that let an `EventSource` resume from `Last-Event-ID`.
//!
//! Everything is written for the WHATWG HTML Standard's parser (§9.2.5 "Parsing an event
//! stream", §9.2.6 "Interpreting an event stream"): lines end in `\n`, a field's value
//! starts after `: ` (the parser drops exactly one space after the colon, so a value that
//! itself starts with a space survives), and a blank line dispatches the event. Each writer
//! appends one complete block, blank line included, so blocks can be queued independently.
//!
//! An event id carries the stream's position in every channel it subscribes (see
//! [`write_positions`]), so one `Last-Event-ID` resumes them all.

pub use crate::native::Position;
use crate::native::{hex_len, parse_dec, parse_hex, write_hex};

/// Longest `Last-Event-ID` [`parse_positions`] reads: bounds the work a client can ask for,
/// and is far above what the subscription limits let a real stream's id reach.
pub const MAX_ID_LEN: usize = 4096;

fn is_line_break(b: u8) -> bool {
    b == b'\r' || b == b'\n'
}

/// Appends `field` without the bytes `strip` refuses.
fn push_stripped(out: &mut Vec<u8>, field: &[u8], strip: fn(u8) -> bool) {
    for piece in field.split(|&b| strip(b)) {
        out.extend_from_slice(piece);
    }
}

fn stripped_len(field: &[u8], strip: fn(u8) -> bool) -> usize {
    field.iter().filter(|&&b| !strip(b)).count()
}

/// CR and LF would end the `id:` line early, and §9.2.6 ignores an id containing NULL.
fn id_strip(b: u8) -> bool {
    is_line_break(b) || b == 0
}

/// Calls `f` on each line of `data`, split at `\r\n`, `\r` or `\n` (the three line ends
/// §9.2.5 recognises); there is always at least one line, possibly empty.
fn for_each_line(data: &[u8], mut f: impl FnMut(&[u8])) {
    let mut start = 0;
    let mut i = 0;
    while i < data.len() {
        match data[i] {
            b'\n' => {
                f(&data[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                f(&data[start..i]);
                i += if data.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            _ => i += 1,
        }
    }
    f(&data[start..]);
}

/// Appends one event: an `id: <id>` line when `id` is given, an `event: <name>` line when
/// `name` is given, then `data` split at every line break (`\r\n`, `\r` or `\n`) into one
/// `data: ` line each, then the blank line that dispatches it. The browser joins the data
/// lines with `\n`, so the client sees `data` with its line breaks normalised to `\n`.
///
/// Empty data is still one `data: ` line: §9.2.6 "dispatch the event" step 2 drops an event
/// whose data buffer is empty, and only a `data` field makes it non-empty (`"\n"`, which
/// step 3 trims back to the empty string). `id` and `name` cannot hold line breaks (they would
/// end the line), so CR and LF are left out of them, and NULL out of the id (§9.2.6 ignores
/// an id containing one); corecast's own ids and names contain none of these.
pub fn event(out: &mut Vec<u8>, id: Option<&[u8]>, name: Option<&str>, data: &[u8]) {
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        push_stripped(out, id, id_strip);
        out.push(b'\n');
    }
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        push_stripped(out, name.as_bytes(), is_line_break);
        out.push(b'\n');
    }
    for_each_line(data, |line| {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    });
    out.push(b'\n');
}

/// Exact number of bytes [`event`] appends, so a frame (e.g. an HTTP chunk with its size
/// line) can be sized before it is written.
pub fn event_len(id: Option<&[u8]>, name: Option<&str>, data: &[u8]) -> usize {
    let mut n = 1;
    if let Some(id) = id {
        n += b"id: \n".len() + stripped_len(id, id_strip);
    }
    if let Some(name) = name {
        n += b"event: \n".len() + stripped_len(name.as_bytes(), is_line_break);
    }
    for_each_line(data, |line| n += b"data: \n".len() + line.len());
    n
}

/// Appends a comment block, `: <text>\n\n`: a heartbeat that keeps proxies from timing the
/// connection out (§9.2.7 suggests one about every 15 seconds) and that the browser ignores.
/// Line breaks in `text` are left out, as they would turn the rest into a field.
pub fn comment(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(b": ");
    push_stripped(out, text.as_bytes(), is_line_break);
    out.extend_from_slice(b"\n\n");
}

/// Appends `retry: <ms>\n\n`: sets how long the browser waits before reconnecting after the
/// connection drops, so a restarting server is not stormed (or clients not left waiting).
pub fn retry(out: &mut Vec<u8>, ms: u64) {
    out.extend_from_slice(b"retry: ");
    out.extend_from_slice(itoa::Buffer::new().format(ms).as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Appends `id: <id>\n\n`, a block with an id and no data. It moves the `EventSource`'s
/// `lastEventId` (what it sends as `Last-Event-ID` on reconnect) without firing an event:
/// per the WHATWG HTML Standard, §9.2.6 "Interpreting an event stream", "dispatch the
/// event" step 1 sets the last event ID string of the event source from the last event ID
/// buffer, and step 2 returns without creating an event when the data buffer is empty. So a
/// stream can advance its resume point past messages the client did not need (e.g. after a
/// subscription to another channel began) without sending them. CR, LF and NULL are left
/// out of `id`, as in [`event`].
pub fn id_only(out: &mut Vec<u8>, id: &[u8]) {
    out.extend_from_slice(b"id: ");
    push_stripped(out, id, id_strip);
    out.extend_from_slice(b"\n\n");
}

/// Appends an event id holding the stream's position in every channel it subscribes, in the
/// order of the request's `ch` parameters: items joined by `,`, each `<epoch hex>:<seq>`
/// (e.g. `1f3a:42,1f3b:7`), or empty for a channel with no known position yet. One id resumes
/// every channel, and the browser treats it as opaque. [`parse_positions`] reads it back.
pub fn write_positions(out: &mut Vec<u8>, positions: &[Option<Position>]) {
    for (k, pos) in positions.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        if let Some(pos) = pos {
            write_hex(out, pos.epoch);
            out.push(b':');
            out.extend_from_slice(itoa::Buffer::new().format(pos.seq).as_bytes());
        }
    }
}

/// Exact number of bytes [`write_positions`] appends, so an event can be sized before its id
/// is written.
pub fn positions_len(positions: &[Option<Position>]) -> usize {
    let items: usize = positions
        .iter()
        .flatten()
        .map(|p| hex_len(p.epoch) + 1 + p.seq.checked_ilog10().map_or(1, |l| l as usize + 1))
        .sum();
    items + positions.len().saturating_sub(1)
}

/// Reads an id written by [`write_positions`] (from a `Last-Event-ID` header) for a stream
/// of `channels` channels. Anything else is `None`, so a stale, foreign or tampered id
/// starts the stream fresh instead of resuming from a wrong place: longer than
/// [`MAX_ID_LEN`], an item that is not `<hex>:<decimal>` in the canonical spelling
/// [`write_positions`] uses (lowercase hex and decimal without leading zeros, fitting u64),
/// or an item count other than `channels` (the channel list changed). With zero channels only
/// the empty id is accepted.
pub fn parse_positions(id: &[u8], channels: usize) -> Option<Vec<Option<Position>>> {
    if id.len() > MAX_ID_LEN {
        return None;
    }
    if channels == 0 {
        return id.is_empty().then(Vec::new);
    }
    // Count first, so a huge `channels` never sizes an allocation.
    if id.iter().filter(|&&b| b == b',').count() + 1 != channels {
        return None;
    }
    let mut out = Vec::with_capacity(channels);
    for item in id.split(|&b| b == b',') {
        if item.is_empty() {
            out.push(None);
            continue;
        }
        let colon = item.iter().position(|&b| b == b':')?;
        out.push(Some(Position {
            epoch: parse_hex(&item[..colon])?,
            seq: parse_dec(&item[colon + 1..])?,
        }));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn events() {
        assert_eq!(text(|o| event(o, None, None, b"hi")), "data: hi\n\n");
        assert_eq!(text(|o| event(o, None, None, b"")), "data: \n\n");
        assert_eq!(
            text(|o| event(o, Some(b"1:2"), Some("msg"), b"a\r\nb\rc\nd\n")),
            "id: 1:2\nevent: msg\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \n\n"
        );
        assert_eq!(
            text(|o| event(o, Some(b"a\r\n\0b"), Some("x\ny"), b" lead")),
            "id: ab\nevent: xy\ndata:  lead\n\n"
        );
        for (id, name, data) in [
            (None, None, &b""[..]),
            (Some(&b"a\nb"[..]), Some("e\r"), &b"\r\r\n\n"[..]),
        ] {
            assert_eq!(
                text(|o| event(o, id, name, data)).len(),
                event_len(id, name, data)
            );
        }
    }

    #[test]
    fn blocks() {
        assert_eq!(text(|o| comment(o, "beat\r\nx")), ": beatx\n\n");
        assert_eq!(text(|o| comment(o, "")), ": \n\n");
        assert_eq!(text(|o| retry(o, 3000)), "retry: 3000\n\n");
        assert_eq!(text(|o| id_only(o, b"1f:4")), "id: 1f:4\n\n");
    }

    #[test]
    fn positions() {
        let p = |epoch, seq| Some(Position { epoch, seq });
        let cases: [(&[Option<Position>], &str); 5] = [
            (&[], ""),
            (&[None], ""),
            (&[p(0x1f3a, 42), p(0x1f3b, 7)], "1f3a:42,1f3b:7"),
            (&[None, p(0, 0), None], ",0:0,"),
            (
                &[p(u64::MAX, u64::MAX)],
                "ffffffffffffffff:18446744073709551615",
            ),
        ];
        for (positions, id) in cases {
            assert_eq!(text(|o| write_positions(o, positions)), id);
            assert_eq!(positions_len(positions), id.len());
            assert_eq!(
                parse_positions(id.as_bytes(), positions.len()).as_deref(),
                Some(positions)
            );
        }
        for (bad, n) in [
            ("", 2),
            ("1:2", 0),
            ("1:2", 2),
            ("1:2,", 1),
            ("1", 1),
            ("1:", 1),
            (":1", 1),
            ("01:1", 1),
            ("1:01", 1),
            ("A:1", 1),
            ("1:-1", 1),
            ("1:1:1", 1),
            ("1:18446744073709551616", 1),
            ("10000000000000000:1", 1),
            (" 1:1", 1),
        ] {
            assert_eq!(parse_positions(bad.as_bytes(), n), None, "{bad:?} {n}");
        }
        assert_eq!(parse_positions(b"1:1", usize::MAX), None);
        let long = vec![b','; MAX_ID_LEN + 1];
        assert_eq!(
            parse_positions(&long, MAX_ID_LEN + 2).map(|v| v.len()),
            None,
            "over the limit"
        );
        let edge = vec![b','; MAX_ID_LEN - 1];
        assert_eq!(
            parse_positions(&edge, MAX_ID_LEN).map(|v| v.len()),
            Some(MAX_ID_LEN)
        );
    }
}
