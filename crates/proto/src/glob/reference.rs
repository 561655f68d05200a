//! The original backtracking matcher, a line-by-line port of Redis 7's `stringmatchlen`
//! (nocase=0). It is no longer used to serve PSUBSCRIBE: its worst case is quadratic (a
//! `*aaaa…b*` pattern against a long run of `a`s took seconds and froze a shard). It is kept,
//! unchanged, as the executable specification that [`super::Glob`] is tested against (unit
//! tests, the differential proptests in `tests/glob_props.rs`, the fuzz target).

/// Deepest `*` nesting followed; deeper patterns simply do not match (as in Redis).
const MAX_NESTING: u32 = 1000;

/// Whether `string` matches `pattern`, case-sensitively, exactly as Redis's
/// `stringmatchlen(..., nocase=0)` decides it, so PSUBSCRIBE and PUBSUB CHANNELS select the
/// same channels as on Redis. Quirks kept on purpose: `*` never matches an empty string (but
/// `a*` matches `a`), an unterminated `[` class runs to the end of the pattern, a trailing
/// lone `\` is a literal backslash, range bounds compare as signed C `char` (Redis on x86),
/// and a pattern needing more than 1000 nested `*` levels does not match. Runs in bounded
/// stack (at most ~1000 frames) and, thanks to the skip-longer-matches rule, polynomial time,
/// but O(n·m) in the worst case (`*aaaa…b*` against `aaaa…`): only for tests and fuzzing.
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
