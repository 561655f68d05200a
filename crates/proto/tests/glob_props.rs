//! Differential property tests: the compiled bit-parallel matcher (`Glob`) against the old
//! backtracking port of Redis's `stringmatchlen` (`reference_glob_match`), which is the
//! specification: on random patterns and strings over the bytes the syntax gives meaning
//! to, on long patterns built to match (several words of NFA state), and on one compiled
//! pattern reused across many strings.

use corecast_proto::glob::{glob_match, reference_glob_match, Glob};
use proptest::prelude::*;

/// Bytes with a meaning in patterns, plus two literals and two high bytes (signed ranges).
const PATTERN_BYTES: &[u8] = b"ab*?[]^-\\\x80\xff";
/// Bytes for strings: the literals, the syntax bytes a class or escape can name, high bytes.
const STRING_BYTES: &[u8] = b"ab-]*\\^?\x80\xff";

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A pattern made from `s` so that it often matches: each byte kept, or turned into `?`, a
/// class holding it, a negated class of another byte, an escape, or dropped under a `*`; `*` groups
/// inserted here and there.
fn pattern_from(s: &[u8], choices: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    for (&c, &k) in s.iter().zip(choices.iter().cycle()) {
        match k % 12 {
            0 => p.push(b'?'),
            1 => p.extend_from_slice(&[b'[', b'\\', c, b']']),
            2 => p.extend_from_slice(&[b'[', b'^', b'\\', c ^ 1, b']']),
            3 => p.push(b'*'),
            4 => p.extend_from_slice(&[b'*', b'\\', c]),
            5 => p.extend_from_slice(b"[\x00-\x7f]"),
            _ => {
                if c == b'*' || c == b'?' || c == b'[' || c == b'\\' {
                    p.push(b'\\');
                }
                p.push(c)
            }
        }
    }
    p
}

proptest! {
    #[test]
    fn compiled_agrees_with_reference(
        p in prop::collection::vec(prop::sample::select(PATTERN_BYTES.to_vec()), 0..16),
        s in prop::collection::vec(prop::sample::select(STRING_BYTES.to_vec()), 0..16),
    ) {
        let want = reference_glob_match(&p, &s);
        prop_assert_eq!(Glob::compile(&p).matches(&s), want, "{:?} vs {:?}", show(&p), show(&s));
        prop_assert_eq!(glob_match(&p, &s), want);
    }

    #[test]
    fn arbitrary_bytes_agree_with_reference(
        p in prop::collection::vec(any::<u8>(), 0..24),
        s in prop::collection::vec(any::<u8>(), 0..24),
    ) {
        prop_assert_eq!(Glob::compile(&p).matches(&s), reference_glob_match(&p, &s),
            "{:?} vs {:?}", show(&p), show(&s));
    }

    /// Patterns of 64 to ~600 positions (one to ten words of state), mostly matching their
    /// source string, then checked on the string, its prefixes, suffixes and a mutation.
    #[test]
    fn long_patterns_agree_with_reference(
        s in prop::collection::vec(prop::sample::select(b"ab".to_vec()), 64..300),
        choices in prop::collection::vec(any::<u8>(), 1..64),
        star_ends in any::<(bool, bool)>(),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
    ) {
        let mut p = pattern_from(&s, &choices);
        if star_ends.0 {
            p.insert(0, b'*');
        }
        if star_ends.1 {
            p.push(b'*');
        }
        let g = Glob::compile(&p);
        let mut mutated = s.clone();
        let at = flip.index(mutated.len());
        mutated[at] ^= 3;
        let c = cut.index(s.len());
        for t in [&s[..], &s[..c], &s[c..], &mutated[..]] {
            prop_assert_eq!(g.matches(t), reference_glob_match(&p, t),
                "{:?} vs {:?}", show(&p), show(t));
        }
    }

    /// One compiled value answers like the reference for every string it is given, in any
    /// order: matching keeps no state between calls.
    #[test]
    fn one_compiled_pattern_many_strings(
        p in prop::collection::vec(prop::sample::select(PATTERN_BYTES.to_vec()), 0..12),
        strings in prop::collection::vec(
            prop::collection::vec(prop::sample::select(STRING_BYTES.to_vec()), 0..12), 1..16),
    ) {
        let g = Glob::compile(&p);
        for s in &strings {
            prop_assert_eq!(g.matches(s), reference_glob_match(&p, s),
                "{:?} vs {:?}", show(&p), show(s));
        }
    }
}
