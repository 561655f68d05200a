//! The native JSON envelope: every writer's output is JSON that `serde_json` reads back to the
//! intended values, the `*_len` functions agree with what is written, and `parse_request`
//! accepts every member order, spelling and spacing of a request while refusing each bad case
//! with the right code (and agreeing with `serde_json` on what a mutated request says).

use corecast_proto::native::{self, NativeError, OpKind, Position, Request};
use proptest::prelude::*;
use serde_json::{json, Value};

fn written(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    f(&mut out);
    out
}

fn parsed(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".*".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::hash_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn position() -> impl Strategy<Value = Position> {
    (any::<u64>(), any::<u64>()).prop_map(|(epoch, seq)| Position { epoch, seq })
}

/// A raw request id: a JSON number or a short string, as clients send them.
fn raw_id() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string().into_bytes()),
        any::<f32>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| serde_json::to_vec(&f).unwrap()),
        "[ -~]{0,20}".prop_map(|s| serde_json::to_vec(&s).unwrap()),
    ]
}

/// What `epoch` should look like on the wire.
fn hex(n: u64) -> String {
    format!("{n:x}")
}

// ---- Writers -----------------------------------------------------------------------------

proptest! {
    #[test]
    fn strings_match_serde_json(s in any::<String>()) {
        let out = written(|o| native::write_json_string(o, s.as_bytes()));
        prop_assert_eq!(&out, &serde_json::to_vec(&s).unwrap());
        prop_assert_eq!(native::json_string_len(s.as_bytes()), out.len());
    }

    #[test]
    fn control_heavy_strings_match_serde_json(s in "[\\x00-\\x1f\"\\\\a\u{7f}\u{e9}\u{2028}\u{1F600}]{0,40}") {
        let out = written(|o| native::write_json_string(o, s.as_bytes()));
        prop_assert_eq!(&out, &serde_json::to_vec(&s).unwrap());
    }

    #[test]
    fn any_bytes_become_the_lossy_string(b in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut out = b"prefix".to_vec();
        native::write_json_string(&mut out, &b);
        let tail = &out[b"prefix".len()..];
        prop_assert_eq!(native::json_string_len(&b), tail.len());
        prop_assert!(std::str::from_utf8(tail).is_ok());
        prop_assert_eq!(parsed(tail), Value::String(lossy(&b)));
    }

    #[test]
    fn deliveries_read_back(
        ch in prop::collection::vec(any::<u8>(), 0..24),
        seq in any::<u64>(),
        data in json_value(),
        pretty in any::<bool>(),
        raw in prop::collection::vec(any::<u8>(), 0..48),
    ) {
        let payload = if pretty {
            serde_json::to_vec_pretty(&data).unwrap()
        } else {
            serde_json::to_vec(&data).unwrap()
        };
        let mut out = b"xx".to_vec();
        native::delivery(&mut out, &ch, seq, &payload, true);
        prop_assert_eq!(out.len() - 2, native::delivery_len(&ch, seq, &payload, true));
        // Compared with serde_json's reading of the payload: its float parsing may differ
        // from `data` in the last bit, which is not what is tested here.
        prop_assert_eq!(
            parsed(&out[2..]),
            json!({"ch": lossy(&ch), "seq": seq, "data": parsed(&payload)})
        );
        // The payload is spliced byte for byte.
        prop_assert!(out.windows(payload.len()).any(|w| w == payload.as_slice()));

        let out = written(|o| native::delivery(o, &ch, seq, &raw, false));
        prop_assert_eq!(out.len(), native::delivery_len(&ch, seq, &raw, false));
        prop_assert_eq!(parsed(&out), json!({"ch": lossy(&ch), "seq": seq, "data": lossy(&raw)}));
    }

    #[test]
    fn replies_read_back(
        id in proptest::option::of(raw_id()),
        ch in prop::collection::vec(any::<u8>(), 0..16),
        pos in position(),
        n in any::<u64>(),
        code in ".{0,12}",
        msg in ".{0,40}",
    ) {
        let id_value = id.as_deref().map(parsed);
        let with_id = |mut v: Value| {
            if let Some(id) = &id_value {
                v["id"] = id.clone();
            }
            v
        };
        let id = id.as_deref();
        prop_assert_eq!(
            parsed(&written(|o| native::ok(o, id))),
            with_id(json!({"op": "ok"}))
        );
        prop_assert_eq!(
            parsed(&written(|o| native::pong(o, id))),
            with_id(json!({"op": "pong"}))
        );
        prop_assert_eq!(
            parsed(&written(|o| native::subscribed(o, id, &ch, pos))),
            with_id(json!({"op": "ok", "ch": lossy(&ch), "epoch": hex(pos.epoch), "seq": pos.seq}))
        );
        prop_assert_eq!(
            parsed(&written(|o| native::published(o, id, pos, n))),
            with_id(json!({"op": "ok", "epoch": hex(pos.epoch), "seq": pos.seq, "receivers": n}))
        );
        prop_assert_eq!(
            parsed(&written(|o| native::error(o, id, &code, &msg))),
            with_id(json!({"op": "error", "code": code, "msg": msg}))
        );
        prop_assert_eq!(
            parsed(&written(|o| native::reset(o, &ch, pos.epoch, n, pos.seq))),
            json!({"op": "reset", "ch": lossy(&ch), "epoch": hex(pos.epoch), "first": n, "seq": pos.seq})
        );
        prop_assert_eq!(
            parsed(&written(|o| native::publish_answer(o, pos, n))),
            json!({"epoch": hex(pos.epoch), "seq": pos.seq, "receivers": n})
        );
    }
}

#[test]
fn replies_have_the_documented_shape() {
    let pos = Position {
        epoch: 0x1f,
        seq: 42,
    };
    let cases: [(Vec<u8>, &str); 4] = [
        (
            written(|o| native::subscribed(o, Some(b"1"), b"news", pos)),
            r#"{"op":"ok","id":1,"ch":"news","epoch":"1f","seq":42}"#,
        ),
        (
            written(|o| native::delivery(o, b"news", 42, br#" {"a": [1]} "#, true)),
            r#"{"ch":"news","seq":42,"data": {"a": [1]} }"#,
        ),
        (
            written(|o| native::error(o, Some(br#""q""#), "bad_request", "missing ch")),
            r#"{"op":"error","id":"q","code":"bad_request","msg":"missing ch"}"#,
        ),
        (
            written(|o| native::write_json_string(o, b"caf\xc3\xa9 \xc3")),
            r#""caf\u00e9 \ufffd""#,
        ),
    ];
    for (got, want) in &cases[..3] {
        assert_eq!(lossy(got), *want);
    }
    // Valid UTF-8 goes out raw; only the invalid byte is escaped.
    assert_eq!(cases[3].0, "\"caf\u{e9} \\ufffd\"".as_bytes());
    assert_eq!(parsed(&cases[3].0), json!("caf\u{e9} \u{fffd}"));
}

// ---- parse_request: acceptance -------------------------------------------------------------

/// JSON text for `s` with every character as a `\u` escape (surrogate pairs beyond the BMP).
fn escape_all(s: &str) -> String {
    let mut out = String::from("\"");
    for unit in s.encode_utf16() {
        out.push_str(&format!("\\u{unit:04X}"));
    }
    out.push('"');
    out
}

fn key(name: &str, escaped: bool) -> String {
    if escaped {
        escape_all(name)
    } else {
        format!("\"{name}\"")
    }
}

/// `{ k : v , ... }` with the gaps filled from `ws` in turn.
fn object(members: &[(String, String)], ws: &[String]) -> String {
    let mut gaps = ws.iter().cycle();
    let mut gap = || gaps.next().cloned().unwrap_or_default();
    let mut out = format!("{}{{{}", gap(), gap());
    for (k, (name, value)) in members.iter().enumerate() {
        if k > 0 {
            out.push_str(&format!("{},{}", gap(), gap()));
        }
        out.push_str(&format!("{name}{}:{}{value}", gap(), gap()));
    }
    out.push_str(&format!("{}}}{}", gap(), gap()));
    out
}

#[derive(Debug, Clone)]
struct Spec {
    op: OpKind,
    ch: Option<String>,
    ch_escaped: bool,
    id: Option<Vec<u8>>,
    data: Option<Value>,
    since: Option<Position>,
    extra: Vec<(String, Value)>,
    keys_escaped: bool,
    ws: Vec<String>,
    order: Vec<usize>,
}

fn spec() -> impl Strategy<Value = Spec> {
    let op = prop_oneof![
        Just(OpKind::Sub),
        Just(OpKind::Unsub),
        Just(OpKind::Pub),
        Just(OpKind::Ping),
    ];
    (
        op,
        proptest::option::of(".{0,12}"),
        any::<bool>(),
        proptest::option::of(raw_id()),
        proptest::option::of(json_value()),
        proptest::option::of(position()),
        prop::collection::vec(("[a-z]{1,6}", json_value()), 0..3),
        any::<bool>(),
        prop::collection::vec("[ \t\n\r]{0,2}", 1..8),
        Just((0..16).collect::<Vec<usize>>()).prop_shuffle(),
    )
        .prop_map(
            |(op, ch, ch_escaped, id, data, since, extra, keys_escaped, ws, order)| {
                let ch = match op {
                    OpKind::Ping => ch,
                    _ => Some(ch.unwrap_or_default()),
                };
                let data = match op {
                    OpKind::Pub => Some(data.unwrap_or(Value::Null)),
                    _ => data,
                };
                let known = ["op", "ch", "id", "data", "since"];
                let extra = extra
                    .into_iter()
                    .filter(|(k, _)| !known.contains(&k.as_str()))
                    .collect();
                Spec {
                    op,
                    ch,
                    ch_escaped,
                    id,
                    data,
                    since,
                    extra,
                    keys_escaped,
                    ws,
                    order,
                }
            },
        )
}

impl Spec {
    /// The request's text and the raw `data` text in it.
    fn text(&self) -> (String, Option<String>) {
        let k = |name: &str| key(name, self.keys_escaped);
        let mut members = vec![(k("op"), format!("\"{}\"", self.op.as_str()))];
        if let Some(ch) = &self.ch {
            let v = if self.ch_escaped {
                escape_all(ch)
            } else {
                serde_json::to_string(ch).unwrap()
            };
            members.push((k("ch"), v));
        }
        if let Some(id) = &self.id {
            members.push((k("id"), String::from_utf8(id.clone()).unwrap()));
        }
        let data = self
            .data
            .as_ref()
            .map(|d| serde_json::to_string(d).unwrap());
        if let Some(d) = &data {
            members.push((k("data"), d.clone()));
        }
        if let Some(p) = self.since {
            let inner = vec![
                (k("seq"), p.seq.to_string()),
                (k("epoch"), format!("\"{:x}\"", p.epoch)),
                (k("note"), "[1,{\"seq\":\"x\"}]".to_owned()),
            ];
            let inner = if self.order[0] & 1 == 0 {
                inner
            } else {
                inner.into_iter().rev().collect()
            };
            members.push((k("since"), object(&inner, &self.ws)));
        }
        for (name, v) in &self.extra {
            members.push((k(name), serde_json::to_string(v).unwrap()));
        }
        let mut ordered: Vec<_> = self
            .order
            .iter()
            .filter_map(|&i| members.get(i).cloned())
            .collect();
        ordered.extend(members.into_iter().skip(16));
        (object(&ordered, &self.ws), data)
    }
}

proptest! {
    #[test]
    fn requests_parse_in_any_order_and_spacing(spec in spec()) {
        let (text, data) = spec.text();
        let req = native::parse_request(text.as_bytes());
        prop_assert!(req.is_ok(), "{:?} for {}", req, text);
        let req = req.unwrap();
        prop_assert_eq!(req.op, spec.op);
        prop_assert_eq!(req.ch.as_deref(), spec.ch.as_ref().map(|c| c.as_bytes()));
        prop_assert_eq!(req.id, spec.id.as_deref());
        prop_assert_eq!(req.data, data.as_ref().map(|d| d.as_bytes()));
        prop_assert_eq!(req.since, spec.since);
    }

    /// Whatever a mutated request says, parse_request reads it as serde_json does (last
    /// duplicate wins, `null` is absence), and anything it accepts serde_json accepts.
    #[test]
    fn mutated_requests_agree_with_serde_json(
        spec in spec(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
    ) {
        let mut text = spec.text().0.into_bytes();
        for (at, byte, kind) in edits {
            let i = at.index(text.len() + 1);
            match kind {
                0 if i < text.len() => text[i] = byte,
                1 => text.insert(i, byte),
                _ if i < text.len() => {
                    text.remove(i);
                }
                _ => {}
            }
        }
        check_against_serde(&text)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(text in prop::collection::vec(any::<u8>(), 0..64)) {
        check_against_serde(&text)?;
    }
}

fn check_against_serde(text: &[u8]) -> Result<(), TestCaseError> {
    let ours = native::parse_request(text);
    let theirs = std::str::from_utf8(text)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str::<Value>(s).map_err(|e| e.to_string()));
    let theirs = match theirs {
        // serde_json refuses numbers beyond f64's range, which JSON's grammar allows.
        Err(e) if e.contains("number out of range") => return Ok(()),
        Err(_) => {
            prop_assert_eq!(ours.map(|_| ()).map_err(|e| e.code()), Err("bad_json"));
            return Ok(());
        }
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            prop_assert_eq!(ours.map(|_| ()).map_err(|e| e.code()), Err("bad_json"));
            return Ok(());
        }
    };
    let present = |k: &str| theirs.get(k).filter(|v| !v.is_null());
    let Ok(req) = ours else {
        let err = ours.unwrap_err();
        prop_assert_ne!(err.code(), "bad_json", "serde_json read an object");
        return Ok(());
    };
    prop_assert_eq!(present("op").and_then(Value::as_str), Some(req.op.as_str()));
    prop_assert_eq!(
        present("ch").and_then(Value::as_str).map(str::as_bytes),
        req.ch.as_deref()
    );
    prop_assert_eq!(present("id").is_some(), req.id.is_some());
    if let Some(id) = req.id {
        prop_assert!(id.len() <= native::MAX_ID_LEN);
        prop_assert_eq!(Some(&parsed(id)), present("id"));
    }
    prop_assert_eq!(theirs.get("data").is_some(), req.data.is_some());
    if let Some(data) = req.data {
        prop_assert_eq!(Some(&parsed(data)), theirs.get("data"));
    }
    if let Some(p) = req.since {
        let s = present("since").unwrap();
        let epoch = hex(p.epoch);
        prop_assert_eq!(s["epoch"].as_str(), Some(epoch.as_str()));
        prop_assert_eq!(s["seq"].as_u64(), Some(p.seq));
    } else {
        prop_assert!(present("since").is_none());
    }
    Ok(())
}

// ---- parse_request: the cases, one by one ----------------------------------------------------

fn ok(text: &str) -> Request<'_> {
    native::parse_request(text.as_bytes())
        .unwrap_or_else(|e| panic!("{text}: {e:?} ({})", e.code()))
}

fn refused(text: &[u8]) -> NativeError<'_> {
    match native::parse_request(text) {
        Ok(r) => panic!("{} accepted as {r:?}", lossy(text)),
        Err(e) => e,
    }
}

#[test]
fn accepts_the_documented_requests() {
    let r = ok(r#"{"op":"sub","ch":"news","id":1}"#);
    assert_eq!(
        (r.op, r.ch.as_deref(), r.id, r.data, r.since),
        (OpKind::Sub, Some(&b"news"[..]), Some(&b"1"[..]), None, None)
    );
    let r = ok(r#"{"op":"unsub","ch":"news","id":"two"}"#);
    assert_eq!((r.op, r.id), (OpKind::Unsub, Some(&br#""two""#[..])));
    let r = ok("{ \"data\" :\n [1, {\"a\" : 2}]\t, \"ch\":\"news\",\"op\":\"pub\",\"id\":3}\r\n");
    assert_eq!(
        (r.op, r.data),
        (OpKind::Pub, Some(&br#"[1, {"a" : 2}]"#[..]))
    );
    let r = ok(r#"{"op":"ping"}"#);
    assert_eq!((r.op, r.ch, r.id), (OpKind::Ping, None, None));
    let r = ok(r#"{"op":"sub","ch":"n","since":{"seq":42,"epoch":"1f"}}"#);
    assert_eq!(
        r.since,
        Some(Position {
            epoch: 0x1f,
            seq: 42
        })
    );
    let r = ok(
        r#"{"op":"sub","ch":"n","since":{"epoch":"ffffffffffffffff","seq":18446744073709551615}}"#,
    );
    assert_eq!(
        r.since,
        Some(Position {
            epoch: u64::MAX,
            seq: u64::MAX
        })
    );
    let r = ok(r#"{"op":"sub","ch":"n","since":{"epoch":"0","seq":0,"x":[]}}"#);
    assert_eq!(r.since, Some(Position { epoch: 0, seq: 0 }));
}

#[test]
fn channels_are_unescaped_and_borrowed_when_plain() {
    use std::borrow::Cow;
    let r = ok(r#"{"op":"sub","ch":"caf\u00e9\n\ud83d\ude00\"\\/"}"#);
    assert_eq!(
        r.ch.as_deref(),
        Some("caf\u{e9}\n\u{1F600}\"\\/".as_bytes())
    );
    assert!(matches!(r.ch, Some(Cow::Owned(_))));
    let r = ok(r#"{"op":"sub","ch":"plain café"}"#);
    assert!(matches!(r.ch, Some(Cow::Borrowed(b)) if b == "plain café".as_bytes()));
    let r = ok(r#"{"op":"sub","ch":""}"#);
    assert_eq!(r.ch.as_deref(), Some(&b""[..]));
    // Escaped keys and op values name the same members.
    let r = ok(r#"{"\u006fp":"\u0073ub","c\u0068":"x"}"#);
    assert_eq!((r.op, r.ch.as_deref()), (OpKind::Sub, Some(&b"x"[..])));
}

#[test]
fn null_is_absence_except_for_data() {
    let r = ok(r#"{"op":"ping","id":null,"ch":null,"since":null}"#);
    assert_eq!((r.id, r.ch, r.since), (None, None, None));
    let r = ok(r#"{"op":"pub","ch":"a","data":null}"#);
    assert_eq!(r.data, Some(&b"null"[..]));
    assert_eq!(refused(br#"{"op":"sub","ch":null}"#).msg(), "missing ch");
    assert_eq!(refused(br#"{"op":null}"#).msg(), "missing op");
}

#[test]
fn the_last_duplicate_wins() {
    let r = ok(r#"{"op":"pub","op":"sub","ch":1,"ch":"b","id":{},"id":2}"#);
    assert_eq!(
        (r.op, r.ch.as_deref(), r.id),
        (OpKind::Sub, Some(&b"b"[..]), Some(&b"2"[..]))
    );
    assert_eq!(
        refused(br#"{"op":"sub","ch":"a","ch":null}"#).msg(),
        "missing ch"
    );
}

#[test]
fn ids_are_numbers_or_strings_of_at_most_64_bytes() {
    for id in ["0", "-1.5e3", r#""""#, &format!("\"{}\"", "x".repeat(62))] {
        let text = format!(r#"{{"op":"ping","id":{id}}}"#);
        assert_eq!(ok(&text).id, Some(id.as_bytes()), "{id}");
    }
    for id in [
        "true",
        "{}",
        "[1]",
        &format!("\"{}\"", "x".repeat(63)),
        &"1".repeat(65),
    ] {
        let text = format!(r#"{{"op":"ping","id":{id}}}"#);
        let e = refused(text.as_bytes());
        assert_eq!((e.code(), e.id()), ("bad_request", None), "{id}");
    }
}

#[test]
fn refuses_each_bad_case_with_its_code() {
    let deep_ok = format!(
        r#"{{"op":"pub","ch":"a","data":{}{}}}"#,
        "[".repeat(127),
        "]".repeat(127)
    );
    assert!(native::parse_request(deep_ok.as_bytes()).is_ok());
    let too_deep = format!(
        r#"{{"op":"pub","ch":"a","data":{}{}}}"#,
        "[".repeat(128),
        "]".repeat(128)
    );
    let bad_json: &[&[u8]] = &[
        b"",
        b"   ",
        b"nope",
        b"[1]",
        b"\"sub\"",
        b"null",
        b"{",
        br#"{"op":"sub",}"#,
        br#"{"op":"sub"} {}"#,
        br#"{"op":'sub'}"#,
        br#"{op:"sub"}"#,
        b"{\"op\":\"sub\",\"ch\":\"\xff\"}",
        br#"{"op":"sub","ch":"\ud800"}"#,
        too_deep.as_bytes(),
    ];
    for text in bad_json {
        let e = refused(text);
        assert_eq!((e.code(), e.id()), ("bad_json", None), "{}", lossy(text));
    }

    let since = |s: &str| format!(r#"{{"id":9,"op":"sub","ch":"a","since":{s}}}"#);
    let mut bad_request: Vec<(String, &str)> = vec![
        (r#"{}"#.into(), "missing op"),
        (r#"{"op":1,"id":9}"#.into(), "op must be a string"),
        (r#"{"op":["sub"],"id":9}"#.into(), "op must be a string"),
        (r#"{"op":"sub","id":9}"#.into(), "missing ch"),
        (r#"{"op":"unsub","id":9}"#.into(), "missing ch"),
        (r#"{"op":"pub","data":1,"id":9}"#.into(), "missing ch"),
        (r#"{"op":"pub","ch":"a","id":9}"#.into(), "missing data"),
        (
            r#"{"op":"sub","ch":1,"id":9}"#.into(),
            "ch must be a string",
        ),
        (
            r#"{"op":"ping","ch":{},"id":9}"#.into(),
            "ch must be a string",
        ),
    ];
    let shape = "since must be {\"epoch\":\"<lowercase hex>\",\"seq\":<integer>}";
    for s in [
        r#""1f:42""#,
        r#"[]"#,
        r#"{}"#,
        r#"{"epoch":"1f"}"#,
        r#"{"seq":1}"#,
        r#"{"epoch":"1F","seq":1}"#,
        r#"{"epoch":"01","seq":1}"#,
        r#"{"epoch":"","seq":1}"#,
        r#"{"epoch":"0x1","seq":1}"#,
        r#"{"epoch":"10000000000000000","seq":1}"#,
        r#"{"epoch":1,"seq":1}"#,
        r#"{"epoch":"\u0031","seq":1}"#,
        r#"{"epoch":"1","seq":-1}"#,
        r#"{"epoch":"1","seq":1.0}"#,
        r#"{"epoch":"1","seq":1e2}"#,
        r#"{"epoch":"1","seq":"1"}"#,
        r#"{"epoch":"1","seq":null}"#,
        r#"{"epoch":"1","seq":18446744073709551616}"#,
    ] {
        bad_request.push((since(s), shape));
    }
    for (text, what) in &bad_request {
        let e = refused(text.as_bytes());
        assert_eq!(e.code(), "bad_request", "{text}");
        assert_eq!(e.msg(), *what, "{text}");
        assert_eq!(e.to_string(), *what, "{text}");
        let want_id = text.contains("\"id\":9").then_some(&b"9"[..]);
        assert_eq!(e.id(), want_id, "{text}");
    }

    for (text, id) in [
        (r#"{"op":"subscribe","ch":"a"}"#, None),
        (r#"{"op":"SUB","ch":"a","id":"k"}"#, Some(&br#""k""#[..])),
        (r#"{"id":-2,"op":"","data":1}"#, Some(&b"-2"[..])),
        // An unknown op is reported before members a newer op might define differently.
        (r#"{"op":"sub2","ch":[1],"id":5}"#, Some(&b"5"[..])),
        (r#"{"op":"nope","id":true}"#, None),
    ] {
        let e = refused(text.as_bytes());
        assert_eq!(
            (e.code(), e.id(), e.msg()),
            ("unknown_op", id, "unknown op"),
            "{text}"
        );
    }
}

#[test]
fn error_replies_carry_what_the_error_knows() {
    let e = refused(br#"{"op":"pub","ch":"a","id":"r1"}"#);
    let out = written(|o| native::error(o, e.id(), e.code(), e.msg()));
    assert_eq!(
        parsed(&out),
        json!({"op": "error", "id": "r1", "code": "bad_request", "msg": "missing data"})
    );
}
