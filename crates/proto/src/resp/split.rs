//! Splitting an inline command line into arguments the way Redis's `sdssplitargs` does:
//! `isspace` blanks separate arguments, "double quotes" understand `\xHH \n \r \t \b \a` and
//! `\<char>`, 'single quotes' understand `\'`, a closing quote must be followed by a blank or
//! the end of the line, and quotes may start in the middle of an argument (`a"b c"` is
//! `ab c`). Like the C original, the line ends at a NUL byte.

use super::parse::Args;

/// Splits `line` into arguments, calling `out` with each one's unescaped bytes. Returns
/// false for unbalanced quotes (Redis's "unbalanced quotes in request").
///
/// A convenience for tools and tests: it allocates a scratch [`Args`]. The parser itself
/// splits straight into the caller's reusable `Args`.
pub fn split_args(line: &[u8], mut out: impl FnMut(&[u8])) -> bool {
    let mut args = Args::new();
    if !split_into(line, &mut args) {
        return false;
    }
    args.iter().for_each(&mut out);
    true
}

/// Splits `line` into `args` (appending). On false (unbalanced quotes) `args` holds junk and
/// must be cleared by the caller.
pub(crate) fn split_into(line: &[u8], args: &mut Args) -> bool {
    // C strings end at NUL; the parser never passes one, but `split_args` might.
    let line = match line.iter().position(|&b| b == 0) {
        Some(n) => &line[..n],
        None => line,
    };
    let at = |i: usize| line.get(i).copied();
    let mut i = 0;
    loop {
        while at(i).is_some_and(is_space) {
            i += 1;
        }
        if i >= line.len() {
            return true;
        }
        let start = args.begin();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            let c = at(i);
            if in_dq {
                match c {
                    None => return false,
                    Some(b'\\')
                        if at(i + 1) == Some(b'x')
                            && at(i + 2).is_some_and(|h| h.is_ascii_hexdigit())
                            && at(i + 3).is_some_and(|h| h.is_ascii_hexdigit()) =>
                    {
                        args.push_byte(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                        i += 3;
                    }
                    Some(b'\\') if i + 1 < line.len() => {
                        i += 1;
                        args.push_byte(match line[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                    }
                    Some(b'"') => {
                        if at(i + 1).is_some_and(|n| !is_space(n)) {
                            return false;
                        }
                        i += 1;
                        break;
                    }
                    Some(ch) => args.push_byte(ch),
                }
            } else if in_sq {
                match c {
                    None => return false,
                    Some(b'\\') if at(i + 1) == Some(b'\'') => {
                        i += 1;
                        args.push_byte(b'\'');
                    }
                    Some(b'\'') => {
                        if at(i + 1).is_some_and(|n| !is_space(n)) {
                            return false;
                        }
                        i += 1;
                        break;
                    }
                    Some(ch) => args.push_byte(ch),
                }
            } else {
                match c {
                    // Only these end an unquoted argument in sdssplitargs (not \v or \f,
                    // although leading blanks are skipped with isspace).
                    None | Some(b' ' | b'\n' | b'\r' | b'\t') => break,
                    Some(b'"') => in_dq = true,
                    Some(b'\'') => in_sq = true,
                    Some(ch) => args.push_byte(ch),
                }
            }
            i += 1;
        }
        args.finish(start);
    }
}

/// C `isspace` in the "C" locale.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Option<Vec<Vec<u8>>> {
        let mut v = Vec::new();
        split_args(s.as_bytes(), |a| v.push(a.to_vec())).then_some(v)
    }

    #[test]
    fn plain_words() {
        assert_eq!(
            split("  PING  hello ").unwrap(),
            vec![b"PING".to_vec(), b"hello".to_vec()]
        );
        assert_eq!(split("").unwrap(), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(
            split(r#"SET "a b" 'c d'"#).unwrap()[1..],
            [b"a b".to_vec(), b"c d".to_vec()]
        );
        assert_eq!(split(r#""\x41\n""#).unwrap(), vec![b"A\n".to_vec()]);
        assert_eq!(split(r"'it\'s'").unwrap(), vec![b"it's".to_vec()]);
        assert_eq!(split(r#""""#).unwrap(), vec![Vec::new()]);
    }

    #[test]
    fn sdssplitargs_corners() {
        // \v and \f are skipped as leading blanks but do not end an unquoted argument.
        assert_eq!(
            split("\x0ba\x0cb c").unwrap(),
            vec![b"a\x0cb".to_vec(), b"c".to_vec()]
        );
        // Quotes may open mid-argument; the closing quote ends the argument.
        assert_eq!(
            split(r#"a"b c" d"#).unwrap(),
            vec![b"ab c".to_vec(), b"d".to_vec()]
        );
        // A NUL ends the line, as in C.
        assert_eq!(
            split("a b\0c d").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert_eq!(split(r#""\q\"""#).unwrap(), vec![b"q\"".to_vec()]);
        assert_eq!(split(r#""\x4""#).unwrap(), vec![b"x4".to_vec()]);
        assert_eq!(split(r"'a\b'").unwrap(), vec![b"a\\b".to_vec()]);
    }

    #[test]
    fn unbalanced_quotes_are_rejected() {
        assert!(split(r#"ECHO "abc"#).is_none());
        assert!(split(r#"ECHO "abc"x"#).is_none());
        assert!(split("ECHO 'abc").is_none());
    }
}
