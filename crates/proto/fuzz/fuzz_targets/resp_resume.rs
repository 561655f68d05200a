#![no_main]
//! Parses arbitrary bytes as they would arrive in pieces (the first byte picks the piece
//! size), keeping one `Resume` as the broker does: every step must give exactly what parsing
//! the bytes received so far from scratch gives.
use corecast_proto::resp::{parse_command, parse_command_resuming, Args, Limits, Resume};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 32) + 1;
    let limits = Limits {
        max_bulk_len: 64,
        max_multibulk_len: 32,
        max_inline_len: 128,
    };
    let (mut args, mut fresh) = (Args::new(), Args::new());
    let mut resume = Resume::default();
    let mut start = 0;
    let mut have = 0;
    while have < data.len() {
        have = (have + step).min(data.len());
        let bytes = &data[start..have];
        let got = parse_command_resuming(bytes, &limits, &mut args, &mut resume);
        let want = parse_command(bytes, &limits, &mut fresh);
        assert_eq!(got, want);
        assert!(args.iter().eq(fresh.iter()));
        match got {
            Ok(Some(n)) => start += n,
            Ok(None) => {}
            Err(_) => return,
        }
    }
});
