//! The native request parser never panics, whatever the bytes, and what it accepts can be
//! answered: the channel is UTF-8, the id is bounded JSON, `data` is valid JSON, and every
//! reply and delivery built from the request is valid JSON of the announced length.
#![no_main]
use corecast_proto::json::is_valid;
use corecast_proto::native::{self, OpKind, MAX_ID_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let req = match native::parse_request(data) {
        Ok(req) => req,
        Err(e) => {
            assert!(matches!(
                e.code(),
                "bad_json" | "bad_request" | "unknown_op"
            ));
            if e.code() == "bad_json" {
                assert!(e.id().is_none());
            }
            if let Some(id) = e.id() {
                assert!(id.len() <= MAX_ID_LEN && is_valid(id));
            }
            let mut out = Vec::new();
            native::error(&mut out, e.id(), e.code(), e.msg());
            assert!(is_valid(&out));
            return;
        }
    };
    assert!(is_valid(data));
    if let Some(id) = req.id {
        assert!(id.len() <= MAX_ID_LEN && is_valid(id));
    }
    if req.op != OpKind::Ping {
        assert!(req.ch.is_some());
    }
    let ch = req.ch.as_deref().unwrap_or_default();
    assert!(std::str::from_utf8(ch).is_ok());

    let mut out = Vec::new();
    if let Some(payload) = req.data {
        assert!(is_valid(payload));
        for json in [true, false] {
            out.clear();
            native::delivery(&mut out, ch, 7, payload, json);
            assert_eq!(out.len(), native::delivery_len(ch, 7, payload, json));
            assert!(is_valid(&out));
        }
    } else {
        assert!(req.op != OpKind::Pub);
    }
    let pos = req.since.unwrap_or_default();
    out.clear();
    match req.op {
        OpKind::Sub => native::subscribed(&mut out, req.id, ch, pos),
        OpKind::Unsub => native::ok(&mut out, req.id),
        OpKind::Pub => native::published(&mut out, req.id, pos, 1),
        OpKind::Ping => native::pong(&mut out, req.id),
    }
    assert!(is_valid(&out));
    out.clear();
    native::write_json_string(&mut out, data);
    assert_eq!(out.len(), native::json_string_len(data));
    assert!(is_valid(&out));
});
