#![no_main]
//! Arbitrary bytes as an HTTP request head: never panic, never claim more bytes than given
//! or than the limit, and the response writer accepts whatever was parsed.
use corecast_proto::http::{parse_request_head, response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((head, n))) = parse_request_head(data, 4096) {
        assert!(n <= data.len() && n <= 4096);
        let _ = head.header("connection");
        let mut out = Vec::new();
        response(&mut out, 200, "OK", "text/plain", head.path.as_bytes(), head.keep_alive);
        assert!(out.ends_with(head.path.as_bytes()));
    }
});
