//! Redis glob patterns (PSUBSCRIBE, PUBSUB CHANNELS), with the semantics of Redis's
//! `stringmatchlen`: `*`, `?`, `[abc]`, `[^a-z]`, `\` escapes, and its guards against abusive
//! patterns (a nesting limit, and giving up on longer matches once a `*` has failed at every
//! position, which keeps `a*a*a*a*b` linear-ish instead of exponential).

/// Deepest `*` nesting followed; deeper patterns simply do not match (as in Redis).
const MAX_NESTING: u32 = 1000;

/// Whether `string` matches `pattern`, case-sensitively, exactly as Redis's
/// `stringmatchlen(..., nocase=0)` decides it, so PSUBSCRIBE and PUBSUB CHANNELS select the
/// same channels as on Redis. Quirks kept on purpose: `*` never matches an empty string (but
/// `a*` matches `a`), an unterminated `[` class runs to the end of the pattern, a trailing
/// lone `\` is a literal backslash, range bounds compare as signed C `char` (Redis on x86),
/// and a pattern needing more than 1000 nested `*` levels does not match. Runs in bounded
/// stack (at most ~1000 frames) and, thanks to the skip-longer-matches rule, polynomial time.
pub fn glob_match(pattern: &[u8], string: &[u8]) -> bool {
    let mut skip_longer = false;
    match_from(pattern, string, &mut skip_longer, 0)
}

fn match_from(mut p: &[u8], mut s: &[u8], skip_longer: &mut bool, nesting: u32) -> bool {
    if nesting > MAX_NESTING {
        return false;
    }
    while !p.is_empty() && !s.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if match_from(&p[1..], s, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s = &s[1..];
                }
                *skip_longer = true;
                return false;
            }
            b'?' => s = &s[1..],
            b'[' => {
                p = &p[1..];
                let negate = p.first() == Some(&b'^');
                if negate {
                    p = &p[1..];
                }
                let c = s[0];
                let mut matched = false;
                loop {
                    match p {
                        [b'\\', esc, ..] => {
                            p = &p[1..];
                            if *esc == c {
                                matched = true;
                            }
                        }
                        [b']', ..] => break,
                        [] => {
                            // Unterminated class: Redis treats the end as the class's end.
                            break;
                        }
                        [lo, b'-', hi, ..] => {
                            // Redis compares as C `char` (signed on x86).
                            let (mut lo, mut hi, ch) = (*lo as i8, *hi as i8, c as i8);
                            if lo > hi {
                                std::mem::swap(&mut lo, &mut hi);
                            }
                            if ch >= lo && ch <= hi {
                                matched = true;
                            }
                            p = &p[2..];
                        }
                        [x, ..] => {
                            if *x == c {
                                matched = true;
                            }
                        }
                    }
                    p = &p[1..];
                }
                if negate {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                s = &s[1..];
                if p.is_empty() {
                    // The unterminated class consumed the pattern.
                    break;
                }
            }
            b'\\' if p.len() >= 2 => {
                p = &p[1..];
                if p[0] != s[0] {
                    return false;
                }
                s = &s[1..];
            }
            ch => {
                if ch != s[0] {
                    return false;
                }
                s = &s[1..];
            }
        }
        p = &p[1..];
        if s.is_empty() {
            while p.first() == Some(&b'*') {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_examples() {
        // From the PSUBSCRIBE / KEYS documentation.
        for (p, s, m) in [
            ("h?llo", "hello", true),
            ("h?llo", "hallo", true),
            ("h?llo", "hllo", false),
            ("h*llo", "hllo", true),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hello", true),
            ("h[ae]llo", "hillo", false),
            ("h[^e]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("h[a-b]llo", "hcllo", false),
            ("h[b-a]llo", "hallo", true),
            ("news.*", "news.tech", true),
            ("news.*", "news", false),
            ("*", "", false), // Redis: the loop never runs on an empty string
            ("", "", true),
            ("a*", "a", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("h[\\]]llo", "h]llo", true),
            ("[abc", "a", true),
        ] {
            assert_eq!(glob_match(p.as_bytes(), s.as_bytes()), m, "{p} vs {s}");
        }
    }

    #[test]
    fn escapes_classes_and_signed_ranges() {
        for (p, s, m) in [
            (&b"a\\"[..], &b"a\\"[..], true), // a lone trailing backslash is literal
            (b"\\?", b"?", true),
            (b"\\?", b"x", false),
            (b"[\\", b"\\", true),  // class ending in a lone backslash
            (b"[a-]", b"-", false), // "a-]" is the range ']'..'a', then the class is unterminated
            (b"[a-]", b"]", true),
            (b"[a-]", b"_", true),
            (b"[]a]", b"a", false), // a leading ']' closes an empty class, which matches nothing
            (b"[^]", b"x", true),
            (b"[-a]", b"-", true),
            (b"[\x7f-\x81]", b"\x80", false), // signed: 0x81 < 0x7f, so the range is -127..127
            (b"[\x7f-\x81]", b"a", true),
            (b"[\x80-\xff]", b"\x90", true),
            (b"*?", b"a", true),
            (b"a**", b"a", true),
            (b"a*?", b"a", false),
            (b"?", b"", false),
        ] {
            assert_eq!(
                glob_match(p, s),
                m,
                "{:?} vs {:?}",
                String::from_utf8_lossy(p),
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn nesting_limit_matches_redis() {
        let s = "a".repeat(1100);
        let ok = "*a".repeat(1000);
        assert!(glob_match(ok.as_bytes(), &s.as_bytes()[..1000]));
        let too_deep = "*a".repeat(1001);
        assert!(!glob_match(too_deep.as_bytes(), &s.as_bytes()[..1001]));
    }

    #[test]
    fn adversarial_patterns_finish() {
        let p = "a*".repeat(60) + "b";
        let s = "a".repeat(200);
        assert!(!glob_match(p.as_bytes(), s.as_bytes()));
        let deep = "*".repeat(5000) + "x";
        assert!(glob_match(deep.as_bytes(), b"abcx"));
    }
}
