//! Property tests: the RESP parser against the encoder, and against arbitrary bytes.

use corecast_proto::glob::glob_match;
use corecast_proto::resp::{encode, parse_command, Args, Limits};
use proptest::prelude::*;

fn encode_argv(argv: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    encode::array_header(&mut v, argv.len());
    for a in argv {
        encode::bulk(&mut v, a);
    }
    v
}

proptest! {
    #[test]
    fn multibulk_roundtrips(argv in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..8)) {
        let wire = encode_argv(&argv);
        let mut args = Args::new();
        let n = parse_command(&wire, &Limits::default(), &mut args).unwrap().unwrap();
        prop_assert_eq!(n, wire.len());
        let got: Vec<Vec<u8>> = args.iter().map(<[u8]>::to_vec).collect();
        prop_assert_eq!(got, argv);
    }

    #[test]
    fn every_prefix_is_incomplete(argv in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 1..5)) {
        let wire = encode_argv(&argv);
        let mut args = Args::new();
        for cut in 0..wire.len() {
            prop_assert_eq!(parse_command(&wire[..cut], &Limits::default(), &mut args), Ok(None));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut args = Args::new();
        let mut rest = &bytes[..];
        let limits = Limits { max_bulk_len: 64, max_multibulk_len: 16, max_inline_len: 128 };
        while let Ok(Some(n)) = parse_command(rest, &limits, &mut args) {
            prop_assert!(n > 0 && n <= rest.len());
            rest = &rest[n..];
        }
    }

    #[test]
    fn literal_patterns_match_only_themselves(p in "[a-z0-9.:]{0,12}", s in "[a-z0-9.:]{0,12}") {
        prop_assert_eq!(glob_match(p.as_bytes(), s.as_bytes()), p == s);
    }

    #[test]
    fn star_suffix_matches_every_extension(prefix in "[a-z]{0,8}", tail in prop::collection::vec(any::<u8>(), 0..16)) {
        let pattern = format!("{prefix}*");
        let mut s = prefix.clone().into_bytes();
        s.extend(tail);
        // Redis quirk kept on purpose: "*" does not match the empty string.
        prop_assume!(!s.is_empty());
        prop_assert!(glob_match(pattern.as_bytes(), &s));
    }

    #[test]
    fn glob_never_panics(p in prop::collection::vec(any::<u8>(), 0..24), s in prop::collection::vec(any::<u8>(), 0..24)) {
        let _ = glob_match(&p, &s);
    }
}
