#![no_main]
//! Pattern and subject split from one input at the first 0xff byte; the compiled matcher
//! (`Glob`, and the `glob_match` convenience) must answer exactly as the backtracking
//! reference port of Redis's `stringmatchlen` does.
use corecast_proto::glob::{glob_match, reference_glob_match, Glob};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0xff).unwrap_or(data.len());
    let (p, s) = data.split_at(split);
    let s = s.get(1..).unwrap_or_default();
    let want = reference_glob_match(p, s);
    assert_eq!(Glob::compile(p).matches(s), want, "{p:?} vs {s:?}");
    assert_eq!(glob_match(p, s), want);
});
