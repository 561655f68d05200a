//! Property tests: the RESP parser against the encoder, and against arbitrary bytes.

use corecast_proto::glob::glob_match;
use corecast_proto::resp::{encode, parse_command, parse_command_resuming, Args, Limits, Resume};
use proptest::prelude::*;

/// Redis's `stringmatchlen` without the skip-longer-matches shortcut and without the
/// nesting limit: the plain backtracking definition the shortcut must agree with.
fn naive_glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => {
            if s.is_empty() {
                // Redis's loop never runs on an empty string: a leading '*' only matches
                // when something is left, except for trailing stars after a consumed string.
                return false;
            }
            let rest = &p[1..];
            if rest.iter().all(|&c| c == b'*') {
                return true;
            }
            (0..s.len()).any(|i| naive_glob_inner(rest, &s[i..]))
        }
        _ => naive_glob_inner(p, s),
    }
}

/// One step of the definition, with Redis's end-of-string rule: once the string is used up,
/// trailing stars are dropped and the pattern must be done.
fn naive_glob_inner(p: &[u8], s: &[u8]) -> bool {
    if p.is_empty() || s.is_empty() {
        return p.is_empty() && s.is_empty();
    }
    let (consumed_p, ok) = match p[0] {
        b'*' => return naive_glob(p, s),
        b'?' => (1, true),
        b'[' => {
            let mut i = 1;
            let not = p.get(1) == Some(&b'^');
            if not {
                i += 1;
            }
            let c = s[0];
            let mut m = false;
            loop {
                if p.get(i) == Some(&b'\\') && i + 1 < p.len() {
                    i += 1;
                    m |= p[i] == c;
                } else if p.get(i) == Some(&b']') {
                    break;
                } else if i >= p.len() {
                    i -= 1;
                    break;
                } else if i + 2 < p.len() && p[i + 1] == b'-' {
                    let (mut lo, mut hi) = (p[i] as i8, p[i + 2] as i8);
                    if lo > hi {
                        std::mem::swap(&mut lo, &mut hi);
                    }
                    m |= (c as i8) >= lo && (c as i8) <= hi;
                    i += 2;
                } else {
                    m |= p[i] == c;
                }
                i += 1;
            }
            (i + 1, m != not)
        }
        b'\\' if p.len() >= 2 => (2, p[1] == s[0]),
        ch => (1, ch == s[0]),
    };
    if !ok {
        return false;
    }
    let (mut p, s) = (&p[consumed_p.min(p.len())..], &s[1..]);
    if s.is_empty() {
        while p.first() == Some(&b'*') {
            p = &p[1..];
        }
        return p.is_empty();
    }
    naive_glob_inner(p, s)
}

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

    /// Bytes arriving in arbitrary pieces, parsed with one kept `Resume` as the broker does,
    /// give exactly what parsing the whole input at once gives: the same commands, or the
    /// same error at the same point.
    #[test]
    fn resuming_matches_parsing_whole(
        argv in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 1..12),
        tail in prop::collection::vec(any::<u8>(), 0..16),
        cuts in prop::collection::vec(1usize..40, 1..64),
    ) {
        let limits = Limits { max_bulk_len: 20, max_multibulk_len: 10, max_inline_len: 64 };
        let mut input = encode_argv(&argv);
        // Keep some commands whole, break others with garbage in place of their end.
        if tail.first().is_some_and(|b| b % 2 == 0) {
            let keep = input.len() * 2 / 3;
            input.truncate(keep);
            input.extend_from_slice(&tail);
        }
        let mut whole_args = Args::new();
        let whole = parse_command(&input, &limits, &mut whole_args);
        let mut args = Args::new();
        let mut resume = Resume::default();
        let mut have = 0;
        let mut got = Ok(None);
        for step in cuts.iter().cycle() {
            have = (have + step).min(input.len());
            got = parse_command_resuming(&input[..have], &limits, &mut args, &mut resume);
            if !matches!(got, Ok(None)) || have == input.len() {
                break;
            }
        }
        prop_assert_eq!(&got, &whole);
        prop_assert!(args.iter().eq(whole_args.iter()));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut args = Args::new();
        let mut rest = &bytes[..];
        let limits = Limits { max_bulk_len: 64, max_multibulk_len: 16, max_inline_len: 128 };
        let mut again = Args::new();
        while let Ok(Some(n)) = parse_command(rest, &limits, &mut args) {
            prop_assert!(n > 0 && n <= rest.len());
            rest = &rest[n..];
            // Whatever was accepted survives a multibulk round trip.
            let argv: Vec<Vec<u8>> = args.iter().map(<[u8]>::to_vec).collect();
            let wire = encode_argv(&argv);
            prop_assert_eq!(parse_command(&wire, &Limits::default(), &mut again), Ok(Some(wire.len())));
            prop_assert!(args.iter().eq(again.iter()));
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
    fn glob_agrees_with_plain_backtracking(
        p in prop::collection::vec(prop::sample::select(b"ab*?[]^-\\".to_vec()), 0..10),
        s in prop::collection::vec(prop::sample::select(b"ab-]*".to_vec()), 0..10),
    ) {
        prop_assert_eq!(glob_match(&p, &s), naive_glob(&p, &s), "{:?} vs {:?}",
            String::from_utf8_lossy(&p), String::from_utf8_lossy(&s));
    }

    #[test]
    fn inline_roundtrips_through_quoting(argv in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 1..6)) {
        // Quote every argument as redis-cli would (sdscatrepr-style) and parse it back.
        let mut wire = Vec::new();
        for a in &argv {
            wire.push(b'"');
            for &b in a {
                match b {
                    b'"' | b'\\' => { wire.push(b'\\'); wire.push(b); }
                    0x20..=0x7e => wire.push(b),
                    _ => wire.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                }
            }
            wire.extend_from_slice(b"\" ");
        }
        wire.extend_from_slice(b"\r\n");
        let mut args = Args::new();
        let n = parse_command(&wire, &Limits::default(), &mut args).unwrap().unwrap();
        prop_assert_eq!(n, wire.len());
        let got: Vec<Vec<u8>> = args.iter().map(<[u8]>::to_vec).collect();
        prop_assert_eq!(got, argv);
        for cut in 0..wire.len() {
            prop_assert_eq!(parse_command(&wire[..cut], &Limits::default(), &mut args), Ok(None));
        }
    }

    #[test]
    fn pipelines_parse_the_same_in_any_chunking(
        cmds in prop::collection::vec(prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 0..4), 1..6),
        chunk in 1usize..40,
    ) {
        let wire: Vec<u8> = cmds.iter().flat_map(|c| encode_argv(c)).collect();
        // Feed the stream `chunk` bytes at a time, keeping unconsumed bytes, as a server does.
        let mut got: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut args = Args::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            let mut pos = 0;
            while let Some(n) = parse_command(&buf[pos..], &Limits::default(), &mut args).unwrap() {
                got.push(args.iter().map(<[u8]>::to_vec).collect());
                pos += n;
            }
            buf.drain(..pos);
        }
        prop_assert!(buf.is_empty());
        // `*0` commands come back as empty argument lists, like the empty argv they encode.
        prop_assert_eq!(got, cmds);
    }

    #[test]
    fn arbitrary_prefixes_never_panic(
        prefix in prop::sample::select(vec![&b"*"[..], b"*1\r\n", b"*2\r\n$3\r\n", b"\"", b"'"]),
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let input = [prefix, &bytes[..]].concat();
        let mut args = Args::new();
        let limits = Limits { max_bulk_len: 64, max_multibulk_len: 16, max_inline_len: 128 };
        if let Ok(Some(n)) = parse_command(&input, &limits, &mut args) {
            prop_assert!(n > 0 && n <= input.len());
        }
        let _ = corecast_proto::http::parse_request_head(&input, 128);
    }

    #[test]
    fn glob_never_panics(p in prop::collection::vec(any::<u8>(), 0..24), s in prop::collection::vec(any::<u8>(), 0..24)) {
        let _ = glob_match(&p, &s);
    }
}
