//! Incremental parsing of what a subscriber receives: RESP2 arrays of bulk strings and
//! integers (subscribe confirmations, `message` and `pmessage` pushes).

/// One parsed push.
#[derive(Debug, PartialEq, Eq)]
pub enum Push<'a> {
    /// `message`/`pmessage`/`smessage`: the payload (last element).
    Message(&'a [u8]),
    /// Anything else (subscribe confirmations, pongs).
    Other,
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
                let end = p + len as usize;
                if buf.len() < end + 2 {
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

/// Parses `<tag><int>\r\n` at `pos`; returns the integer and the position after the line.
fn line_int(buf: &[u8], pos: usize, tag: u8) -> Result<Option<(i64, usize)>, String> {
    let Some(&t) = buf.get(pos) else {
        return Ok(None);
    };
    if t != tag {
        return Err(format!("expected {:?}, got {:?}", tag as char, t as char));
    }
    let Some(cr) = buf[pos..].iter().position(|&b| b == b'\r') else {
        return Ok(None);
    };
    let end = pos + cr;
    if buf.len() < end + 2 {
        return Ok(None);
    }
    let n = std::str::from_utf8(&buf[pos + 1..end])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| "bad integer".to_string())?;
    Ok(Some((n, end + 2)))
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
}
