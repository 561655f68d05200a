//! The JSON validator never panics, and what it accepts is UTF-8 (a delivery splices it into
//! a WebSocket text frame).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if corecast_proto::json::is_valid(data) {
        assert!(std::str::from_utf8(data).is_ok());
    }
});
