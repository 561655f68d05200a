#![no_main]
//! Feeds arbitrary bytes through the RESP parser as a pipelined stream: it must never panic
//! and must always consume at least one byte per command.
use corecast_proto::resp::{parse_command, Args, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits { max_bulk_len: 1024, max_multibulk_len: 64, max_inline_len: 256 };
    let mut args = Args::new();
    let mut rest = data;
    while let Ok(Some(n)) = parse_command(rest, &limits, &mut args) {
        assert!(n > 0 && n <= rest.len());
        rest = &rest[n..];
    }
});
