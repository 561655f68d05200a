#![no_main]
//! Feeds arbitrary bytes through the RESP parser as a pipelined stream: it must never panic,
//! must consume at least one byte per command, and every command it accepts must survive a
//! round trip through the multibulk encoder unchanged.
use corecast_proto::resp::{encode, parse_command, Args, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_bulk_len: 1024,
        max_multibulk_len: 64,
        max_inline_len: 256,
    };
    let mut args = Args::new();
    let mut again = Args::new();
    let mut wire = Vec::new();
    let mut rest = data;
    loop {
        match parse_command(rest, &limits, &mut args) {
            Ok(Some(n)) => {
                assert!(n > 0 && n <= rest.len());
                rest = &rest[n..];
                wire.clear();
                encode::array_header(&mut wire, args.len());
                args.iter().for_each(|a| encode::bulk(&mut wire, a));
                let m = parse_command(&wire, &Limits::default(), &mut again)
                    .expect("re-encoded command parses")
                    .expect("re-encoded command is complete");
                assert_eq!(m, wire.len());
                assert!(args.iter().eq(again.iter()));
            }
            Ok(None) => break,
            Err(e) => {
                let line = e.redis_error_line();
                assert!(line.starts_with(b"-ERR Protocol error: ") && line.ends_with(b"\r\n"));
                break;
            }
        }
    }
});
