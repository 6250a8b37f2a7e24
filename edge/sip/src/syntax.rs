//! Lexical building blocks of RFC 3261 §25.1: character classes, LWS, quoted strings, and the
//! comma splitter that keeps commas inside quotes and `<>` (§7.3.1). Crate-internal.

/// `token` characters: alphanum and `-.!%*_+`'~`.
pub(crate) const fn is_token(c: u8) -> bool {
    TOKEN[c as usize]
}

const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        i += 1;
    }
    t
};

/// Whitespace inside a header value: SP, HT, and the CR/LF of a fold (the parser has already
/// checked that every line break inside a value is followed by SP/HT).
pub(crate) const fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// `s` without leading and trailing LWS (byte-wise; LWS octets are ASCII so the cut points are
/// char boundaries).
pub(crate) fn trim_lws(s: &str) -> &str {
    let b = s.as_bytes();
    let (mut a, mut z) = (0, b.len());
    while a < z && is_lws(b[a]) {
        a += 1;
    }
    while z > a && is_lws(b[z - 1]) {
        z -= 1;
    }
    &s[a..z]
}

/// Build a 256-entry character class: ASCII alphanumerics (if `alnum`) plus `extra`.
pub(crate) const fn class(alnum: bool, extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alnum && (i as u8).is_ascii_alphanumeric();
        i += 1;
    }
    let mut j = 0;
    while j < extra.len() {
        t[extra[j] as usize] = true;
        j += 1;
    }
    t
}

/// Length of the quoted string that starts at `s[0] == '"'` (including both quotes), or `None`
/// when it is not terminated. Backslash escapes any octet (`quoted-pair`).
pub(crate) fn quoted_len(s: &[u8]) -> Option<usize> {
    debug_assert_eq!(s.first(), Some(&b'"'));
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Split a header value at top-level commas (not inside `"..."` or `<...>`), yielding byte
/// ranges into `s`, each trimmed of LWS. Empty elements are yielded as empty ranges so typed
/// parsers can reject them. An unterminated quote or `<` swallows the rest of the value.
pub(crate) fn split_commas(s: &[u8]) -> CommaSplit<'_> {
    CommaSplit {
        s,
        pos: 0,
        done: false,
    }
}

/// Iterator of [`split_commas`].
pub(crate) struct CommaSplit<'a> {
    s: &'a [u8],
    pos: usize,
    done: bool,
}

impl Iterator for CommaSplit<'_> {
    type Item = std::ops::Range<usize>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let s = self.s;
        let start = self.pos;
        let mut i = start;
        // Jump between the only octets that matter: ',' '"' '<' outside brackets, '>' inside.
        while i < s.len() {
            let Some(p) = memchr::memchr3(b',', b'"', b'<', &s[i..]) else {
                i = s.len();
                break;
            };
            i += p;
            match s[i] {
                b',' => break,
                b'"' => i += quoted_len(&s[i..]).unwrap_or(s.len() - i),
                _ => match memchr::memchr(b'>', &s[i..]) {
                    Some(q) => i += q + 1,
                    None => i = s.len(),
                },
            }
        }
        let end = i.min(s.len());
        if i >= s.len() {
            self.done = true;
        } else {
            self.pos = i + 1;
        }
        let mut a = start;
        let mut b = end;
        while a < b && is_lws(s[a]) {
            a += 1;
        }
        while b > a && is_lws(s[b - 1]) {
            b -= 1;
        }
        Some(a..b)
    }
}

/// Parse a decimal number made only of ASCII digits (leading zeros allowed), saturating at
/// `u64::MAX` so callers can range-check. `None` if empty or not all digits.
pub(crate) fn parse_digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.saturating_mul(10).saturating_add(u64::from(c - b'0'));
    }
    Some(v)
}

/// Value of a hex digit.
pub(crate) const fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<&str> {
        split_commas(s.as_bytes()).map(|r| &s[r]).collect()
    }

    #[test]
    fn comma_split_respects_quotes_and_angles() {
        assert_eq!(split("a, b ,c"), ["a", "b", "c"]);
        assert_eq!(
            split("\"Doe, J\" <sip:a@b;x=1,2>;q=1, <sip:c@d>"),
            ["\"Doe, J\" <sip:a@b;x=1,2>;q=1", "<sip:c@d>"]
        );
        assert_eq!(split("x;;,;,,"), ["x;;", ";", "", ""]);
        assert_eq!(split(""), [""]);
        assert_eq!(split("\"a\\\",b\", c"), ["\"a\\\",b\"", "c"]);
    }

    #[test]
    fn digits() {
        assert_eq!(parse_digits(b"0068"), Some(68));
        assert_eq!(parse_digits(b"-1"), None);
        assert_eq!(parse_digits(b""), None);
        assert_eq!(parse_digits(b"99999999999999999999999999"), Some(u64::MAX));
    }
}
