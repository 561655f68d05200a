//! Splitting an inline command line into arguments the way Redis's `sdssplitargs` does:
//! whitespace separates, "double quotes" understand `\xHH \n \r \t \b \a` and `\<char>`,
//! 'single quotes' understand `\'`, and a closing quote must be followed by whitespace or the
//! end of the line.

/// Splits `line` into `out` (each argument's bytes, unescaped). Returns false for unbalanced
/// quotes, as Redis rejects them.
pub fn split_args(line: &[u8], mut out: impl FnMut(&[u8])) -> bool {
    let mut i = 0;
    let mut cur: Vec<u8> = Vec::new();
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i >= line.len() {
            return true;
        }
        cur.clear();
        let mut in_dq = false;
        let mut in_sq = false;
        loop {
            let c = line.get(i).copied();
            if in_dq {
                match c {
                    None => return false,
                    Some(b'\\')
                        if i + 3 < line.len()
                            && line[i + 1] == b'x'
                            && is_hex(line[i + 2])
                            && is_hex(line[i + 3]) =>
                    {
                        cur.push(hex(line[i + 2]) * 16 + hex(line[i + 3]));
                        i += 3;
                    }
                    Some(b'\\') if i + 1 < line.len() => {
                        i += 1;
                        cur.push(match line[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                    }
                    Some(b'"') => {
                        if line.get(i + 1).is_some_and(|&n| !is_space(n)) {
                            return false;
                        }
                        in_dq = false;
                        i += 1;
                        break;
                    }
                    Some(ch) => cur.push(ch),
                }
            } else if in_sq {
                match c {
                    None => return false,
                    Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                        i += 1;
                        cur.push(b'\'');
                    }
                    Some(b'\'') => {
                        if line.get(i + 1).is_some_and(|&n| !is_space(n)) {
                            return false;
                        }
                        in_sq = false;
                        i += 1;
                        break;
                    }
                    Some(ch) => cur.push(ch),
                }
            } else {
                match c {
                    None => break,
                    Some(ch) if is_space(ch) => break,
                    Some(b'"') => in_dq = true,
                    Some(b'\'') => in_sq = true,
                    Some(ch) => cur.push(ch),
                }
            }
            i += 1;
        }
        debug_assert!(!in_dq && !in_sq);
        out(&cur);
    }
}

/// C `isspace` in the "C" locale.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
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
    fn unbalanced_quotes_are_rejected() {
        assert!(split(r#"ECHO "abc"#).is_none());
        assert!(split(r#"ECHO "abc"x"#).is_none());
        assert!(split("ECHO 'abc").is_none());
    }
}
