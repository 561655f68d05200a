//! RESP2 encoders, byte-identical to what Redis 7 sends. All append to a caller-owned buffer.

/// Appends `n` in decimal.
fn decimal(out: &mut Vec<u8>, n: i64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(n).as_bytes());
}

/// `+<s>\r\n`.
pub fn simple(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'+');
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
}

/// `-<msg>\r\n`; `msg` carries its own prefix (`ERR ...`, `NOPROTO ...`).
pub fn error(out: &mut Vec<u8>, msg: &[u8]) {
    out.push(b'-');
    // An error is one line: client bytes quoted in it (a subcommand, a command name) must
    // not end it early and forge a reply. Redis maps CR and LF to spaces the same way.
    out.extend(msg.iter().map(|&b| match b {
        b'\r' | b'\n' => b' ',
        b => b,
    }));
    out.extend_from_slice(b"\r\n");
}

/// `:<n>\r\n`.
pub fn integer(out: &mut Vec<u8>, n: i64) {
    out.push(b':');
    decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// `$<len>\r\n<bytes>\r\n`.
pub fn bulk(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'$');
    decimal(out, s.len() as i64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(s);
    out.extend_from_slice(b"\r\n");
}

/// `$-1\r\n`, RESP2's null.
pub fn null_bulk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"$-1\r\n");
}

/// The null of the connection's protocol: RESP3's `_\r\n`, or RESP2's null bulk.
pub fn null(out: &mut Vec<u8>, resp3: bool) {
    if resp3 {
        out.extend_from_slice(b"_\r\n");
    } else {
        null_bulk(out);
    }
}

/// `<type><n>\r\n`: the header every aggregate (array, map, push) shares.
fn aggregate_header(out: &mut Vec<u8>, type_byte: u8, n: usize) {
    out.push(type_byte);
    decimal(out, n as i64);
    out.extend_from_slice(b"\r\n");
}

/// `%<n>\r\n`: a RESP3 map of `n` key/value pairs.
pub fn map_header(out: &mut Vec<u8>, n: usize) {
    aggregate_header(out, b'%', n);
}

/// The header of an out-of-band message: RESP3's push `><n>`, or a RESP2 array.
pub fn push_header(out: &mut Vec<u8>, n: usize, resp3: bool) {
    aggregate_header(out, if resp3 { b'>' } else { b'*' }, n);
}

/// Turns a `message`, `pmessage` or `smessage` frame, encoded as RESP2 at the start of
/// `frame`, into what a RESP3 client gets: the same bytes with the push type `>` in place of
/// the array's `*`, so a shard builds the RESP3 frame in the same pass as the RESP2 one.
pub fn into_resp3_push(frame: &mut [u8]) {
    debug_assert_eq!(frame.first(), Some(&b'*'));
    if let Some(first) = frame.first_mut() {
        *first = b'>';
    }
}

/// `*<n>\r\n`.
pub fn array_header(out: &mut Vec<u8>, n: usize) {
    aggregate_header(out, b'*', n);
}

/// Bytes a bulk string of `len` bytes takes on the wire.
pub fn bulk_len(len: usize) -> usize {
    1 + itoa::Buffer::new().format(len).len() + 2 + len + 2
}

/// Exact size of a `message` push, so callers can allocate the shared frame once.
pub fn message_len(channel_len: usize, payload_len: usize) -> usize {
    4 + bulk_len(7) + bulk_len(channel_len) + bulk_len(payload_len)
}

/// Exact size of a `pmessage` push.
pub fn pmessage_len(pattern_len: usize, channel_len: usize, payload_len: usize) -> usize {
    4 + bulk_len(8) + bulk_len(pattern_len) + bulk_len(channel_len) + bulk_len(payload_len)
}

/// Exact size of an `smessage` push.
pub fn smessage_len(channel_len: usize, payload_len: usize) -> usize {
    4 + bulk_len(8) + bulk_len(channel_len) + bulk_len(payload_len)
}

/// Exact size of a RESP2 [`sub_reply`] (`name_len` `None` for the null bulk), so a batch of
/// confirmations can be reserved at once.
pub fn sub_reply_len(kind_len: usize, name_len: Option<usize>, count: i64) -> usize {
    4 + bulk_len(kind_len)
        + name_len.map_or(5, bulk_len)
        + 1
        + itoa::Buffer::new().format(count).len()
        + 2
}

/// The push a subscriber receives for PUBLISH.
pub fn push_message(out: &mut Vec<u8>, channel: &[u8], payload: &[u8]) {
    out.extend_from_slice(b"*3\r\n$7\r\nmessage\r\n");
    bulk(out, channel);
    bulk(out, payload);
}

/// The push a pattern subscriber receives.
pub fn push_pmessage(out: &mut Vec<u8>, pattern: &[u8], channel: &[u8], payload: &[u8]) {
    out.extend_from_slice(b"*4\r\n$8\r\npmessage\r\n");
    bulk(out, pattern);
    bulk(out, channel);
    bulk(out, payload);
}

/// The push a shard-channel subscriber receives for SPUBLISH.
pub fn push_smessage(out: &mut Vec<u8>, channel: &[u8], payload: &[u8]) {
    out.extend_from_slice(b"*3\r\n$8\r\nsmessage\r\n");
    bulk(out, channel);
    bulk(out, payload);
}

/// A (un)subscribe confirmation: `[kind, name, count]`, an array in RESP2 and a push in
/// RESP3; `None` encodes the null Redis sends for UNSUBSCRIBE with no subscriptions.
pub fn sub_reply(out: &mut Vec<u8>, kind: &[u8], name: Option<&[u8]>, count: i64, resp3: bool) {
    push_header(out, 3, resp3);
    bulk(out, kind);
    match name {
        Some(n) => bulk(out, n),
        None => null(out, resp3),
    }
    integer(out, count);
}

/// PING's answer in RESP2 subscribed mode: `["pong", arg or ""]`.
pub fn pong_subscribed(out: &mut Vec<u8>, arg: Option<&[u8]>) {
    out.extend_from_slice(b"*2\r\n$4\r\npong\r\n");
    bulk(out, arg.unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_match_redis() {
        let mut v = Vec::new();
        push_message(&mut v, b"ch", b"hi");
        assert_eq!(v, b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n");
        assert_eq!(v.len(), message_len(2, 2));
        v.clear();
        push_pmessage(&mut v, b"c*", b"ch", b"");
        assert_eq!(
            v,
            b"*4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$0\r\n\r\n"
        );
        assert_eq!(v.len(), pmessage_len(2, 2, 0));
    }

    #[test]
    fn an_error_stays_one_line() {
        let mut v = Vec::new();
        error(&mut v, b"ERR unknown subcommand 'a\r\n+OK'");
        assert_eq!(v, b"-ERR unknown subcommand 'a  +OK'\r\n");
    }

    #[test]
    fn sizes_are_exact() {
        let mut v = Vec::new();
        for (c, p) in [(0, 0), (9, 10), (99, 100_000), (1, 1 << 20)] {
            let (ch, pl) = (vec![b'c'; c], vec![b'p'; p]);
            v.clear();
            push_message(&mut v, &ch, &pl);
            assert_eq!(v.len(), message_len(c, p));
            v.clear();
            push_smessage(&mut v, &ch, &pl);
            assert_eq!(v.len(), smessage_len(c, p));
            v.clear();
            push_pmessage(&mut v, b"p*", &ch, &pl);
            assert_eq!(v.len(), pmessage_len(2, c, p));
            v.clear();
            bulk(&mut v, &pl);
            assert_eq!(v.len(), bulk_len(p));
        }
        for (name, count) in [(None, 0), (Some(&b"news"[..]), 12345), (Some(&b""[..]), -3)] {
            v.clear();
            sub_reply(&mut v, b"psubscribe", name, count, false);
            assert_eq!(v.len(), sub_reply_len(10, name.map(<[u8]>::len), count));
        }
    }

    #[test]
    fn bulks_and_headers() {
        let mut v = Vec::new();
        bulk(&mut v, b"");
        null_bulk(&mut v);
        array_header(&mut v, 0);
        integer(&mut v, i64::MIN);
        assert_eq!(v, b"$0\r\n\r\n$-1\r\n*0\r\n:-9223372036854775808\r\n");
        v.clear();
        push_smessage(&mut v, b"ch", b"x");
        assert_eq!(v, b"*3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$1\r\nx\r\n");
        v.clear();
        sub_reply(&mut v, b"subscribe", Some(b"ch"), 1, false);
        pong_subscribed(&mut v, Some(b"hi"));
        assert_eq!(
            v,
            b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n*2\r\n$4\r\npong\r\n$2\r\nhi\r\n"
        );
    }

    #[test]
    fn replies_match_redis() {
        let mut v = Vec::new();
        sub_reply(&mut v, b"unsubscribe", None, 0, false);
        assert_eq!(v, b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
        // RESP3, as Redis 7 sends it after HELLO 3.
        v.clear();
        sub_reply(&mut v, b"unsubscribe", None, 0, true);
        sub_reply(&mut v, b"subscribe", Some(b"a"), 1, true);
        assert_eq!(
            v,
            b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n>3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
        );
        v.clear();
        push_pmessage(&mut v, b"p*", b"pa", b"x");
        into_resp3_push(&mut v);
        assert_eq!(
            v,
            b">4\r\n$8\r\npmessage\r\n$2\r\np*\r\n$2\r\npa\r\n$1\r\nx\r\n"
        );
        v.clear();
        v.clear();
        pong_subscribed(&mut v, None);
        assert_eq!(v, b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
        v.clear();
        integer(&mut v, -12);
        simple(&mut v, b"OK");
        error(&mut v, b"ERR x");
        assert_eq!(v, b":-12\r\n+OK\r\n-ERR x\r\n");
    }
}
