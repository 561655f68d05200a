#![no_main]
use corecast_proto::http::parse_request_head;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, n))) = parse_request_head(data, 4096) {
        assert!(n <= data.len());
    }
});
