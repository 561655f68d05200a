#![no_main]
//! Pattern and subject split from one input at the first 0xff byte.
use corecast_proto::glob::glob_match;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0xff).unwrap_or(data.len());
    let (p, s) = data.split_at(split);
    let s = s.get(1..).unwrap_or_default();
    let _ = glob_match(p, s);
});
