//! Redis glob patterns (PSUBSCRIBE, PUBSUB CHANNELS), with the semantics of Redis's
//! `stringmatchlen`: `*`, `?`, `[abc]`, `[^a-z]`, `\` escapes, and its guards against abusive
//! patterns (a nesting limit, and giving up on longer matches once a `*` has failed at every
//! position, which keeps `a*a*a*a*b` linear-ish instead of exponential).

/// Deepest `*` nesting followed; deeper patterns simply do not match (as in Redis).
const MAX_NESTING: u32 = 1000;

/// Whether `string` matches `pattern` (case-sensitive).
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
    fn adversarial_patterns_finish() {
        let p = "a*".repeat(60) + "b";
        let s = "a".repeat(200);
        assert!(!glob_match(p.as_bytes(), s.as_bytes()));
        let deep = "*".repeat(5000) + "x";
        assert!(glob_match(deep.as_bytes(), b"abcx"));
    }
}
