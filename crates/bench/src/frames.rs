//! Incremental parsing of what a subscriber receives: RESP2 arrays of bulk strings and
//! integers (subscribe confirmations, `message` and `pmessage` pushes), and NATS protocol
//! lines (`MSG`, `PING`, `PONG`, `+OK`, `INFO`, `-ERR`).

/// One parsed push.
#[derive(Debug, PartialEq, Eq)]
pub enum Push<'a> {
    /// `message`/`pmessage`/`smessage`: the payload (last element).
    Message(&'a [u8]),
    /// Anything else (subscribe confirmations, pongs).
    Other,
    /// A NATS server's keep-alive: the client must answer `PONG`.
    Ping,
}

/// Parses the first complete push in `buf`: `Ok(Some((consumed, push)))`, `Ok(None)` when
/// incomplete, `Err` on bytes that are not a RESP2 array of bulks/integers.
pub fn parse_push(buf: &[u8]) -> Result<Option<(usize, Push<'_>)>, String> {
    let Some((n, mut pos)) = line_int(buf, 0, b'*')? else {
        return Ok(None);
    };
    let mut first: Option<&[u8]> = None;
    let mut last: &[u8] = &[];
    for _ in 0..n {
        match buf.get(pos) {
            None => return Ok(None),
            Some(b':') => {
                let Some((_, p)) = line_int(buf, pos, b':')? else {
                    return Ok(None);
                };
                pos = p;
                last = &[];
            }
            Some(b'$') => {
                let Some((len, p)) = line_int(buf, pos, b'$')? else {
                    return Ok(None);
                };
                if len < 0 {
                    pos = p;
                    continue;
                }
                let end = p.checked_add(len as usize).ok_or("bulk length overflows")?;
                if buf.len().saturating_sub(2) < end {
                    return Ok(None);
                }
                last = &buf[p..end];
                if first.is_none() {
                    first = Some(last);
                }
                pos = end + 2;
            }
            Some(c) => return Err(format!("unexpected byte {c:#x} in a push")),
        }
    }
    let push = match first {
        Some(b"message" | b"pmessage" | b"smessage") => Push::Message(last),
        _ => Push::Other,
    };
    Ok(Some((pos, push)))
}

/// Parses the first complete NATS server message in `buf`, like [`parse_push`].
/// `MSG <subject> <sid> [reply-to] <#bytes>\r\n<payload>\r\n` carries a payload; `-ERR` is an
/// error; `PING` asks for a `PONG`; everything else (`PONG`, `+OK`, `INFO`) is `Other`.
pub fn parse_nats(buf: &[u8]) -> Result<Option<(usize, Push<'_>)>, String> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let line = buf[..nl]
        .strip_suffix(b"\r")
        .ok_or("NATS line without CR")?;
    if let Some(rest) = line.strip_prefix(b"MSG ") {
        let len_field = rest
            .rsplit(|&b| b == b' ')
            .next()
            .ok_or("MSG without a length")?;
        let len = std::str::from_utf8(len_field)
            .ok()
            .and_then(|t| t.parse::<usize>().ok())
            .ok_or("bad MSG length")?;
        let start = nl + 1;
        let end = start.checked_add(len).ok_or("MSG length overflows")?;
        if buf.len().saturating_sub(2) < end {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err("MSG payload not followed by CRLF".into());
        }
        return Ok(Some((end + 2, Push::Message(&buf[start..end]))));
    }
    if line.starts_with(b"-ERR") {
        return Err(format!("server error: {}", String::from_utf8_lossy(line)));
    }
    let push = if line == b"PING" {
        Push::Ping
    } else {
        Push::Other
    };
    Ok(Some((nl + 1, push)))
}

/// Parses `<tag><int>\r\n` at `pos`; returns the integer and the position after the line.
/// Digits are read straight from the bytes (this runs several times per message received,
/// and going through `str::parse` was a quarter of the load generator's CPU).
fn line_int(buf: &[u8], pos: usize, tag: u8) -> Result<Option<(i64, usize)>, String> {
    let Some(&t) = buf.get(pos) else {
        return Ok(None);
    };
    if t != tag {
        return Err(format!("expected {:?}, got {:?}", tag as char, t as char));
    }
    let mut i = pos + 1;
    let negative = buf.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let digits_from = i;
    let mut n: i64 = 0;
    while let Some(&b) = buf.get(i) {
        if !b.is_ascii_digit() {
            break;
        }
        if i - digits_from >= 18 {
            return Err("integer too long".to_string());
        }
        n = n * 10 + i64::from(b - b'0');
        i += 1;
    }
    match (buf.get(i), buf.get(i + 1)) {
        (None, _) | (Some(b'\r'), None) => Ok(None),
        (Some(b'\r'), Some(b'\n')) if i > digits_from => {
            Ok(Some((if negative { -n } else { n }, i + 2)))
        }
        _ => Err("bad integer".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_confirmations() {
        let stream = b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nabc\r\n";
        let (n, p) = parse_push(stream).unwrap().unwrap();
        assert_eq!(p, Push::Other);
        let (m, p) = parse_push(&stream[n..]).unwrap().unwrap();
        assert_eq!(p, Push::Message(b"abc"));
        assert_eq!(n + m, stream.len());
    }

    #[test]
    fn pmessage_payload_is_the_last_element() {
        let s = b"*4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$2\r\nhi\r\n";
        assert_eq!(parse_push(s).unwrap().unwrap().1, Push::Message(b"hi"));
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let s = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nab\r\nc\r\n";
        for cut in 0..s.len() {
            assert_eq!(parse_push(&s[..cut]).unwrap(), None, "cut {cut}");
        }
        assert_eq!(parse_push(s).unwrap().unwrap().1, Push::Message(b"ab\r\nc"));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse_push(b"+OK\r\n").is_err());
    }

    #[test]
    fn nats_messages_pings_and_errors() {
        let s = b"INFO {\"x\":1}\r\nMSG bench.0 1 5\r\nab\r\nc\r\nMSG a.b 9 reply.to 2\r\nhi\r\nPING\r\n";
        let (a, p) = parse_nats(s).unwrap().unwrap();
        assert_eq!(p, Push::Other);
        let (b, p) = parse_nats(&s[a..]).unwrap().unwrap();
        assert_eq!(p, Push::Message(b"ab\r\nc"));
        let (c, p) = parse_nats(&s[a + b..]).unwrap().unwrap();
        assert_eq!(p, Push::Message(b"hi"));
        let (d, p) = parse_nats(&s[a + b + c..]).unwrap().unwrap();
        assert_eq!(p, Push::Ping);
        assert_eq!(a + b + c + d, s.len());
        let m = b"MSG bench.0 1 5\r\nab\r\nc\r\n";
        for cut in 0..m.len() {
            assert_eq!(parse_nats(&m[..cut]).unwrap(), None, "cut {cut}");
        }
        assert!(parse_nats(b"-ERR 'Slow Consumer'\r\n").is_err());
        assert!(parse_nats(b"MSG a 1 x\r\n").is_err());
        assert!(parse_nats(b"MSG a 1 2\r\nabXY").is_err());
    }

    #[test]
    fn integer_lines() {
        assert_eq!(line_int(b":0\r\n", 0, b':'), Ok(Some((0, 4))));
        assert_eq!(line_int(b"$-1\r\n", 0, b'$'), Ok(Some((-1, 5))));
        assert_eq!(line_int(b"*123456\r\nxx", 0, b'*'), Ok(Some((123456, 9))));
        assert_eq!(line_int(b":12", 0, b':'), Ok(None));
        assert_eq!(line_int(b":12\r", 0, b':'), Ok(None));
        assert!(line_int(b":\r\n", 0, b':').is_err());
        assert!(line_int(b":-\r\n", 0, b':').is_err());
        assert!(line_int(b":1x\r\n", 0, b':').is_err());
        assert!(line_int(b":12\rx", 0, b':').is_err());
        assert!(line_int(b":1234567890123456789\r\n", 0, b':').is_err());
        assert!(line_int(b"$1\r\n", 0, b':').is_err());
    }

    mod props {
        use super::super::*;
        use corecast_proto::resp::encode;
        use proptest::prelude::*;

        proptest! {
            /// Every push Redis or corecast sends parses to its payload once whole, and every
            /// prefix of it is incomplete, wherever a read cuts it.
            #[test]
            fn resp_pushes_parse_whole_and_wait_when_cut(
                channel in prop::collection::vec(any::<u8>(), 0..40),
                payload in prop::collection::vec(any::<u8>(), 0..300),
                pattern in prop::option::of(prop::collection::vec(any::<u8>(), 1..10)),
            ) {
                let mut wire = Vec::new();
                match &pattern {
                    Some(p) => encode::push_pmessage(&mut wire, p, &channel, &payload),
                    None => encode::push_message(&mut wire, &channel, &payload),
                }
                prop_assert_eq!(parse_push(&wire), Ok(Some((wire.len(), Push::Message(&payload[..])))));
                for cut in 0..wire.len() {
                    prop_assert_eq!(parse_push(&wire[..cut]), Ok(None));
                }
            }

            /// NATS MSG lines likewise, with and without a reply subject.
            #[test]
            fn nats_msgs_parse_whole_and_wait_when_cut(
                subject in "[a-z.]{1,20}",
                sid in 1u32..100_000,
                reply in prop::option::of("[a-z]{1,8}"),
                payload in prop::collection::vec(any::<u8>(), 0..300),
            ) {
                let mut wire = match &reply {
                    Some(r) => format!("MSG {subject} {sid} {r} {}\r\n", payload.len()),
                    None => format!("MSG {subject} {sid} {}\r\n", payload.len()),
                }
                .into_bytes();
                wire.extend_from_slice(&payload);
                wire.extend_from_slice(b"\r\n");
                prop_assert_eq!(parse_nats(&wire), Ok(Some((wire.len(), Push::Message(&payload[..])))));
                for cut in 0..wire.len() {
                    prop_assert_eq!(parse_nats(&wire[..cut]), Ok(None));
                }
            }

            /// Whatever a server sends, the parsers answer without panicking, and a parsed
            /// frame never claims more bytes than it was given.
            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
                for parse in [parse_push, parse_nats] {
                    if let Ok(Some((n, _))) = parse(&bytes) {
                        prop_assert!(n > 0 && n <= bytes.len());
                    }
                }
            }
        }

        #[test]
        fn huge_lengths_are_errors_or_incomplete_not_panics() {
            assert!(parse_nats(b"MSG a 1 18446744073709551615\r\nxx").is_err());
            assert_eq!(
                parse_push(b"*3\r\n$7\r\nmessage\r\n$999999999999999999\r\nx"),
                Ok(None)
            );
        }
    }
}
