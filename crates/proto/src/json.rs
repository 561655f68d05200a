//! A JSON validator (RFC 8259), for deciding once per published message whether its payload
//! can be spliced byte for byte into a JSON delivery (`{"ch":..,"seq":..,"data":<payload>}`)
//! or must be sent as a JSON string.
//!
//! It only answers yes or no: nothing is built, nothing allocated. Nesting is tracked in a
//! 128-bit mask (one bit per open container), so the depth limit, [`MAX_DEPTH`], is also the
//! memory bound. What it accepts is what `serde_json` accepts (the property tests compare the
//! two): UTF-8 text, no lone surrogate escapes, no trailing commas, no comments, one value
//! with optional surrounding whitespace.

/// Deepest nesting accepted (about `serde_json`'s default recursion limit, which stops at 127).
/// A browser's `JSON.parse` accepts deeper documents, but no real message nests that far, and
/// the limit keeps the validator's state in one register.
pub const MAX_DEPTH: usize = 128;

/// Whether `text` is one complete JSON value.
pub fn is_valid(text: &[u8]) -> bool {
    // Most non-JSON payloads (binary, plain text) fail on their first byte: no scan at all.
    let mut v = Validator { s: text, i: 0 };
    v.skip_ws();
    match v.s.get(v.i) {
        Some(b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {}
        _ => return false,
    }
    if v.value().is_none() {
        return false;
    }
    v.skip_ws();
    v.i == v.s.len()
}

struct Validator<'a> {
    s: &'a [u8],
    i: usize,
}

/// `None` means "not JSON"; the `?` operator then unwinds the whole check.
type Step = Option<()>;

impl Validator<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Step {
        (self.peek()? == b).then(|| self.i += 1)
    }

    /// One value, containers included, without recursion: `stack` has bit `d` set when the
    /// container at depth `d` is an object.
    fn value(&mut self) -> Step {
        let mut stack: u128 = 0;
        let mut depth = 0usize;
        loop {
            // At the start of a value.
            self.skip_ws();
            match self.peek()? {
                b'{' | b'[' => {
                    let object = self.peek()? == b'{';
                    self.i += 1;
                    if depth == MAX_DEPTH {
                        return None;
                    }
                    if object {
                        stack |= 1 << depth;
                    } else {
                        stack &= !(1 << depth);
                    }
                    depth += 1;
                    self.skip_ws();
                    let close = if object { b'}' } else { b']' };
                    if self.peek()? == close {
                        self.i += 1;
                        depth -= 1;
                    } else {
                        if object {
                            self.key()?;
                        }
                        continue;
                    }
                }
                b'"' => self.string()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return None,
            }
            // After a value: close containers or move to the next element.
            loop {
                if depth == 0 {
                    return Some(());
                }
                let object = stack & (1 << (depth - 1)) != 0;
                self.skip_ws();
                match self.peek()? {
                    b',' => {
                        self.i += 1;
                        if object {
                            self.skip_ws();
                            self.key()?;
                        }
                        break;
                    }
                    b'}' if object => {
                        self.i += 1;
                        depth -= 1;
                    }
                    b']' if !object => {
                        self.i += 1;
                        depth -= 1;
                    }
                    _ => return None,
                }
            }
        }
    }

    /// `"name" :` of an object member (leading whitespace already skipped).
    fn key(&mut self) -> Step {
        if self.peek()? != b'"' {
            return None;
        }
        self.string()?;
        self.skip_ws();
        self.eat(b':')
    }

    fn literal(&mut self, word: &[u8]) -> Step {
        let end = self.i + word.len();
        (self.s.get(self.i..end)? == word).then(|| self.i = end)
    }

    fn digits(&mut self) -> Step {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        (self.i > start).then_some(())
    }

    fn number(&mut self) -> Step {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits()?,
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.digits()?;
        }
        Some(())
    }

    /// A string from its opening quote: escapes checked, control characters refused, and the
    /// raw bytes must be UTF-8 (checked per run of non-ASCII bytes).
    fn string(&mut self) -> Step {
        self.i += 1;
        loop {
            let b = self.peek()?;
            match b {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => {
                    self.i += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    }
                }
                0x00..=0x1f => return None,
                0x20..=0x7f => self.i += 1,
                _ => {
                    let start = self.i;
                    while self.peek().is_some_and(|c| c >= 0x80) {
                        self.i += 1;
                    }
                    std::str::from_utf8(&self.s[start..self.i]).ok()?;
                }
            }
        }
    }

    fn hex4(&mut self) -> Option<u16> {
        let h = self.s.get(self.i..self.i + 4)?;
        let mut n = 0u16;
        for &c in h {
            n = n << 4 | (c as char).to_digit(16)? as u16;
        }
        self.i += 4;
        Some(n)
    }

    /// `\uXXXX` from the `u`; a high surrogate must be followed by an escaped low one.
    fn unicode_escape(&mut self) -> Step {
        self.i += 1;
        let n = self.hex4()?;
        match n {
            0xD800..=0xDBFF => {
                self.literal(b"\\u")?;
                let low = self.hex4()?;
                (0xDC00..=0xDFFF).contains(&low).then_some(())
            }
            0xDC00..=0xDFFF => None,
            _ => Some(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_json() {
        for ok in [
            "0",
            "-0.5e+10",
            "  {\"a\" : [1, 2, {\"b\":null}], \"c\":\"\\u00e9\\n\"} ",
            "\"caf\u{e9} \u{1F600}\"",
            "\"\\ud83d\\ude00\"",
            "[]",
            "{}",
            "[[[]]]",
            "true",
            "\"\"",
        ] {
            assert!(is_valid(ok.as_bytes()), "{ok}");
        }
    }

    #[test]
    fn refuses_what_is_not() {
        for bad in [
            "",
            " ",
            "hello",
            "01",
            "1.",
            "-",
            "1e",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\"}",
            "{1:2}",
            "[1 2]",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"a\nb\"",
            "nul",
            "true false",
            "[",
            "{\"a\":",
            "\"open",
        ] {
            assert!(!is_valid(bad.as_bytes()), "{bad:?}");
        }
        assert!(!is_valid(b"\"\xff\""), "invalid UTF-8 in a string");
        assert!(!is_valid(b"\"\xc3\""), "cut UTF-8 sequence");
    }

    #[test]
    fn depth_is_bounded() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(is_valid(ok.as_bytes()));
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(!is_valid(deep.as_bytes()));
        let objects = format!("{}1{}", "{\"k\":".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert!(is_valid(objects.as_bytes()));
    }
}
