//! The native JSON envelope as a subscriber sees it, read without building a JSON tree:
//! the top-level fields of one object, each value as its raw bytes. Deliveries
//! (`{"ch":..,"seq":..,"data":..}`), acknowledgements (`{"op":"ok",..}`), resets and errors
//! are told apart by `op`. This runs once per delivery, so it only scans.

/// Top-level fields of a server message; strings are raw (between the quotes, escapes kept),
/// `data` is the raw JSON value.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// `op` (absent on deliveries).
    pub op: Option<&'a [u8]>,
    /// `ch`.
    pub ch: Option<&'a [u8]>,
    /// `seq`.
    pub seq: Option<u64>,
    /// `first` (reset notices).
    pub first: Option<u64>,
    /// `id` (acknowledgements), when a number.
    pub id: Option<u64>,
    /// `epoch`.
    pub epoch: Option<&'a [u8]>,
    /// `data`: the published JSON, spliced.
    pub data: Option<&'a [u8]>,
}

/// The delivery as corecast writes it, `{"ch":"<name>","seq":<n>,"data":<value>}` with no
/// whitespace and no escape in the name, read in one pass over the name and the seq:
/// `data` is everything up to the final `}` (the broker validated it once at publish, and
/// [`parse_envelope`] would only scan it to find its end). None for anything else, which then
/// goes through [`parse_envelope`]; so a delivery in another layout is still read right,
/// only slower. Half the load generator's time went to scanning `data` before this.
pub fn fast_delivery(msg: &[u8]) -> Option<(u64, &[u8])> {
    let rest = msg.strip_prefix(b"{\"ch\":\"")?;
    let quote = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    if rest[quote] != b'"' {
        return None;
    }
    let rest = rest[quote + 1..].strip_prefix(b",\"seq\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 20 {
        return None;
    }
    let mut seq = 0u64;
    for &d in &rest[..digits] {
        seq = seq.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    let data = rest[digits..]
        .strip_prefix(b",\"data\":")?
        .strip_suffix(b"}")?;
    (!data.is_empty()).then_some((seq, data))
}

/// Reads the top-level fields of the JSON object `msg`.
pub fn parse_envelope(msg: &[u8]) -> Result<Envelope<'_>, String> {
    let mut e = Envelope::default();
    let mut i = ws(msg, 0);
    if msg.get(i) != Some(&b'{') {
        return Err(bad(msg, "not an object"));
    }
    i = ws(msg, i + 1);
    if msg.get(i) == Some(&b'}') {
        return end(msg, i + 1, e);
    }
    loop {
        if msg.get(i) != Some(&b'"') {
            return Err(bad(msg, "expected a key"));
        }
        let key_end = skip_string(msg, i).ok_or_else(|| bad(msg, "unterminated key"))?;
        let key = &msg[i + 1..key_end - 1];
        i = ws(msg, key_end);
        if msg.get(i) != Some(&b':') {
            return Err(bad(msg, "expected ':'"));
        }
        i = ws(msg, i + 1);
        let v_end = skip_value(msg, i).ok_or_else(|| bad(msg, "bad value"))?;
        let v = &msg[i..v_end];
        match key {
            b"op" => e.op = Some(string(v).ok_or_else(|| bad(msg, "op"))?),
            b"ch" => e.ch = Some(string(v).ok_or_else(|| bad(msg, "ch"))?),
            b"epoch" => e.epoch = Some(string(v).ok_or_else(|| bad(msg, "epoch"))?),
            b"seq" => e.seq = Some(number(v).ok_or_else(|| bad(msg, "seq"))?),
            b"first" => e.first = Some(number(v).ok_or_else(|| bad(msg, "first"))?),
            b"id" => e.id = number(v),
            b"data" => e.data = Some(v),
            _ => {}
        }
        i = ws(msg, v_end);
        match msg.get(i) {
            Some(b',') => i = ws(msg, i + 1),
            Some(b'}') => return end(msg, i + 1, e),
            _ => return Err(bad(msg, "expected ',' or '}'")),
        }
    }
}

fn end<'a>(msg: &'a [u8], i: usize, e: Envelope<'a>) -> Result<Envelope<'a>, String> {
    if ws(msg, i) == msg.len() {
        Ok(e)
    } else {
        Err(bad(msg, "bytes after the object"))
    }
}

fn bad(msg: &[u8], what: &str) -> String {
    format!(
        "bad server message ({what}): {:?}",
        String::from_utf8_lossy(&msg[..msg.len().min(200)])
    )
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        i += 1;
    }
    i
}

/// End (exclusive, after the closing quote) of the string starting at `b[i] == '"'`.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        j += memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
        if b[j] == b'"' {
            return Some(j + 1);
        }
        j += 2;
    }
}

/// End of the JSON value starting at `i` (containers are matched by depth, strings skipped;
/// scalars run to the next delimiter and are checked only when read).
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *b.get(j)? {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let n = b[i..]
                .iter()
                .position(|&c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))
                .unwrap_or(b.len() - i);
            (n > 0).then_some(i + n)
        }
    }
}

fn string(v: &[u8]) -> Option<&[u8]> {
    (v.len() >= 2 && v[0] == b'"').then(|| &v[1..v.len() - 1])
}

fn number(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &c| {
        if !c.is_ascii_digit() {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(c - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_agrees_with_the_full_parser_or_declines() {
        for msg in [
            &br#"{"ch":"c0","seq":42,"data":"abc"}"#[..],
            br#"{"ch":"c0","seq":0,"data":{"a":[1,2]}}"#,
            br#"{"ch":"x y","seq":18446744073709551615,"data":null}"#,
        ] {
            let env = parse_envelope(msg).unwrap();
            assert_eq!(
                fast_delivery(msg),
                Some((env.seq.unwrap(), env.data.unwrap()))
            );
        }
        for msg in [
            &br#"{"ch":"c"0","seq":1,"data":1}"#[..],
            br#"{"op":"ok","ch":"c0","seq":1}"#,
            br#"{ "ch":"c0","seq":1,"data":1}"#,
            br#"{"ch":"c0","seq":,"data":1}"#,
            br#"{"ch":"c0","seq":1,"data":}"#,
            br#"{"ch":"c0","seq":1,"data":1"#,
        ] {
            assert_eq!(fast_delivery(msg), None, "{}", String::from_utf8_lossy(msg));
        }
    }

    #[test]
    fn deliveries_acks_resets_and_errors() {
        let d = parse_envelope(br#"{"ch":"c0","seq":43,"data":{"a":[1,"}"],"b":"\""}}"#).unwrap();
        assert_eq!(d.op, None);
        assert_eq!(d.ch, Some(&b"c0"[..]));
        assert_eq!(d.seq, Some(43));
        assert_eq!(d.data, Some(&br#"{"a":[1,"}"],"b":"\""}"#[..]));
        let d = parse_envelope(br#"{"ch":"c0","seq":1,"data":"\"x\\"}"#).unwrap();
        assert_eq!(d.data, Some(&br#""\"x\\""#[..]));
        let d = parse_envelope(b" { \"data\" : -1.5e3 , \"seq\" : 7 } ").unwrap();
        assert_eq!((d.data, d.seq), (Some(&b"-1.5e3"[..]), Some(7)));
        let ok =
            parse_envelope(br#"{"op":"ok","id":1,"ch":"c0","epoch":"1f3a","seq":42}"#).unwrap();
        assert_eq!(ok.op, Some(&b"ok"[..]));
        assert_eq!((ok.id, ok.seq), (Some(1), Some(42)));
        assert_eq!(ok.epoch, Some(&b"1f3a"[..]));
        let r =
            parse_envelope(br#"{"op":"reset","ch":"c","epoch":"2","first":10,"seq":99}"#).unwrap();
        assert_eq!((r.first, r.seq), (Some(10), Some(99)));
        let e = parse_envelope(br#"{"op":"error","id":3,"code":"bad","msg":"no"}"#).unwrap();
        assert_eq!(e.op, Some(&b"error"[..]));
        assert_eq!(parse_envelope(b"{}").unwrap(), Envelope::default());
    }

    #[test]
    fn malformed_messages_are_errors() {
        for m in [
            &b""[..],
            b"[]",
            b"{",
            b"{\"ch\"",
            b"{\"ch\":}",
            b"{\"seq\":\"1\"}",
            b"{\"seq\":-1}",
            b"{\"seq\":18446744073709551616}",
            b"{\"seq\":1",
            b"{\"seq\":1}x",
            b"{\"data\":[1,2}",
            b"{\"data\":\"abc}",
            b"{ch:1}",
        ] {
            assert!(
                parse_envelope(m).is_err(),
                "{:?}",
                String::from_utf8_lossy(m)
            );
        }
    }

    #[test]
    fn agrees_with_serde_json_on_data() {
        for data in [
            r#""plain""#,
            r#"{"nested":{"deep":[1,2,{"x":"]}"}]}}"#,
            "[1, 2, 3]",
            "true",
            "null",
            "12345",
            r#""\u00e9\n\"""#,
        ] {
            let msg = format!(r#"{{"ch":"x","seq":5,"data":{data}}}"#);
            let e = parse_envelope(msg.as_bytes()).unwrap();
            let v: serde_json::Value = serde_json::from_str(&msg).unwrap();
            let ours: serde_json::Value = serde_json::from_slice(e.data.unwrap()).unwrap();
            assert_eq!(ours, v["data"]);
        }
    }

    mod props {
        use super::*;
        use corecast_proto::native;
        use proptest::prelude::*;

        proptest! {
            /// Deliveries, sub answers and reset notices as the broker writes them read back
            /// to their fields; a payload that is not JSON arrives as a JSON string.
            #[test]
            fn broker_messages_read_back(
                ch in prop::collection::vec(any::<u8>(), 0..30),
                seq in any::<u64>(),
                epoch in any::<u64>(),
                first in any::<u64>(),
                payload in prop::collection::vec(any::<u8>(), 0..200),
            ) {
                let mut out = Vec::new();
                native::delivery(&mut out, &ch, seq, &payload, false);
                let e = parse_envelope(&out).unwrap();
                prop_assert_eq!((e.op, e.seq), (None, Some(seq)));
                let s: String = serde_json::from_slice(e.data.unwrap()).unwrap();
                prop_assert_eq!(s, String::from_utf8_lossy(&payload).into_owned());
                let ch_json: String = serde_json::from_slice(&[b"\"", e.ch.unwrap(), b"\""].concat()).unwrap();
                prop_assert_eq!(ch_json, String::from_utf8_lossy(&ch).into_owned());

                out.clear();
                native::subscribed(&mut out, Some(b"1"), &ch, native::Position { epoch, seq });
                let e = parse_envelope(&out).unwrap();
                prop_assert_eq!((e.op, e.id, e.seq), (Some(&b"ok"[..]), Some(1), Some(seq)));
                prop_assert_eq!(u64::from_str_radix(std::str::from_utf8(e.epoch.unwrap()).unwrap(), 16).unwrap(), epoch);

                out.clear();
                native::reset(&mut out, &ch, epoch, first, seq);
                let e = parse_envelope(&out).unwrap();
                prop_assert_eq!((e.op, e.first, e.seq), (Some(&b"reset"[..]), Some(first), Some(seq)));
            }

            /// The bench's JSON-string payload is spliced as is.
            #[test]
            fn json_payloads_are_spliced(seq in any::<u64>(), ts in any::<u64>(), len in 0usize..300) {
                let h = crate::payload::Header { ts_ns: ts, channel: 3, publisher: 1, seq };
                let mut p = Vec::new();
                crate::payload::encode_json(&mut p, &h, len);
                let mut out = Vec::new();
                native::delivery(&mut out, b"bench.3", 9, &p, true);
                let e = parse_envelope(&out).unwrap();
                prop_assert_eq!(e.data, Some(&p[..]));
                prop_assert_eq!(crate::payload::decode_json(e.data.unwrap()), Some(h));
            }
        }
    }
}
