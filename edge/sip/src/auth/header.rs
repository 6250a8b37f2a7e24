//! Typed accessor for the four digest authentication headers: `WWW-Authenticate`,
//! `Proxy-Authenticate` (challenges) and `Authorization`, `Proxy-Authorization` (credentials).
//!
//! Grammar: RFC 3261 §25.1 (`challenge`, `credentials`, `auth-param`, `quoted-string`,
//! `quoted-pair`), with the RFC 7616 §3.3/§3.4 directives (`algorithm` values, `userhash`).
//! Parameter names are case-insensitive, values are a token or a quoted string (escapes
//! removed), list elements are separated by commas with optional linear white space (folded
//! lines included). One header value carries one challenge or one credentials set: SIP sends
//! several challenges as several header fields (RFC 3261 §20.44), never comma-joined.
//!
//! This module only parses and formats; it does not judge whether a response is correct (that
//! is [`super::DigestAuth::verify`]). It never panics on any input (fuzz target `digest`).

use std::fmt::{self, Write as _};

use super::digest::Algorithm;

/// Why a header value is not a well-formed digest challenge or credentials set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthHeaderError {
    /// The header value is empty or only white space.
    #[error("empty authentication header")]
    Empty,
    /// The raw bytes are not UTF-8.
    #[error("authentication header is not UTF-8 (byte {offset})")]
    NotUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// The scheme is not `Digest` (for example `Basic` or `Bearer`).
    #[error("unsupported authentication scheme")]
    UnsupportedScheme,
    /// The parameter list does not follow the `auth-param` grammar.
    #[error("{kind} at byte {offset}")]
    Syntax {
        /// What was wrong.
        kind: SyntaxKind,
        /// Byte offset into the header value where it was detected.
        offset: usize,
    },
    /// A directive appears twice (RFC 7616 §3.3: each at most once).
    #[error("duplicate directive {name}")]
    DuplicateParam {
        /// The directive, lower-cased.
        name: &'static str,
    },
    /// A directive this structure requires is absent.
    #[error("missing directive {name}")]
    MissingParam {
        /// The directive.
        name: &'static str,
    },
    /// `nc` is not exactly 8 hex digits (RFC 3261 `nonce-count = "nc" EQUAL 8LHEX`).
    #[error("invalid nonce-count")]
    InvalidNonceCount,
    /// `stale` or `userhash` is neither `true` nor `false`.
    #[error("invalid boolean for {name}")]
    InvalidBool {
        /// The directive.
        name: &'static str,
    },
}

/// The kind of syntax error found in an `auth-param` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyntaxKind {
    /// Expected a parameter name (a token).
    ExpectedName,
    /// Expected `=` after a parameter name.
    ExpectedEquals,
    /// Expected a token or quoted string after `=`.
    ExpectedValue,
    /// A quoted string is not closed.
    UnterminatedQuote,
    /// A backslash escape of a character `quoted-pair` does not allow (CR, LF), or at the end.
    BadEscape,
    /// A control character inside a quoted string.
    ControlInQuote,
    /// Expected `,` or the end of the value after a parameter.
    ExpectedComma,
    /// No white space between the scheme and the first parameter.
    ExpectedSpace,
}

impl fmt::Display for SyntaxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ExpectedName => "expected a parameter name",
            Self::ExpectedEquals => "expected '='",
            Self::ExpectedValue => "expected a token or quoted string",
            Self::UnterminatedQuote => "unterminated quoted string",
            Self::BadEscape => "invalid escape in quoted string",
            Self::ControlInQuote => "control character in quoted string",
            Self::ExpectedComma => "expected ',' between parameters",
            Self::ExpectedSpace => "expected white space after the scheme",
        })
    }
}

/// One `auth-param`: name as written, value with quotes and escapes removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParam {
    /// The parameter name as written (compare with `eq_ignore_ascii_case`).
    pub name: String,
    /// The value, unquoted and unescaped.
    pub value: String,
    /// Whether the value was a quoted string on the wire.
    pub quoted: bool,
}

/// A `WWW-Authenticate` / `Proxy-Authenticate` digest challenge (RFC 7616 §3.3).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestChallenge {
    /// `realm` (required).
    pub realm: String,
    /// `domain`, space-separated URI list, if any.
    pub domain: Option<String>,
    /// `nonce` (required).
    pub nonce: String,
    /// `opaque`, echoed unchanged by the client.
    pub opaque: Option<String>,
    /// `stale=true`: the nonce expired but the credentials were right; retry silently.
    pub stale: bool,
    /// `algorithm`, as written (absent means MD5). See [`DigestChallenge::algorithm`].
    pub algorithm: Option<String>,
    /// `qop` options offered (the quoted list split on commas), e.g. `["auth"]`.
    pub qop: Vec<String>,
    /// `userhash=true` (RFC 7616 §3.4.4).
    pub userhash: bool,
    /// Any other parameter, kept in order.
    pub extra: Vec<AuthParam>,
}

/// An `Authorization` / `Proxy-Authorization` digest response (RFC 7616 §3.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DigestCredentials {
    /// `username` (required).
    pub username: String,
    /// `realm` (required).
    pub realm: String,
    /// `nonce` (required).
    pub nonce: String,
    /// `uri`, the digest-uri (required).
    pub uri: String,
    /// `response`, hex digest (required).
    pub response: String,
    /// `algorithm` as written (absent means MD5).
    pub algorithm: Option<String>,
    /// `cnonce` (required with qop).
    pub cnonce: Option<String>,
    /// `opaque`, as echoed.
    pub opaque: Option<String>,
    /// `qop` chosen by the client (`auth` or `auth-int`).
    pub qop: Option<String>,
    /// `nc`, the nonce count (8 hex digits on the wire).
    pub nc: Option<u32>,
    /// `userhash=true`: `username` is `H(user:realm)`.
    pub userhash: bool,
    /// Any other parameter, kept in order.
    pub extra: Vec<AuthParam>,
}

impl DigestChallenge {
    /// Parse a challenge header value (`Digest realm="…", nonce="…", …`).
    pub fn parse(value: &str) -> Result<Self, AuthHeaderError> {
        let params = parse_digest_params(value)?;
        let mut c = Self::default();
        let mut seen = Seen::default();
        let mut realm = None;
        let mut nonce = None;
        for p in params {
            match known(&p.name) {
                Some(n @ "realm") => set_once(&mut seen, n, &mut realm, p.value)?,
                Some(n @ "nonce") => set_once(&mut seen, n, &mut nonce, p.value)?,
                Some(n @ "domain") => set_once(&mut seen, n, &mut c.domain, p.value)?,
                Some(n @ "opaque") => set_once(&mut seen, n, &mut c.opaque, p.value)?,
                Some(n @ "algorithm") => set_once(&mut seen, n, &mut c.algorithm, p.value)?,
                Some(n @ "stale") => {
                    seen.check(n)?;
                    c.stale = parse_bool(n, &p.value)?;
                }
                Some(n @ "userhash") => {
                    seen.check(n)?;
                    c.userhash = parse_bool(n, &p.value)?;
                }
                Some(n @ "qop") => {
                    seen.check(n)?;
                    c.qop = p
                        .value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                _ => c.extra.push(p),
            }
        }
        c.realm = realm.ok_or(AuthHeaderError::MissingParam { name: "realm" })?;
        c.nonce = nonce.ok_or(AuthHeaderError::MissingParam { name: "nonce" })?;
        Ok(c)
    }

    /// Parse from raw header bytes (checks UTF-8 first).
    pub fn parse_bytes(value: &[u8]) -> Result<Self, AuthHeaderError> {
        Self::parse(utf8(value)?)
    }

    /// The algorithm, `None` when it names one this crate does not implement.
    #[must_use]
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.algorithm
            .as_deref()
            .map_or(Some(Algorithm::Md5), Algorithm::from_name)
    }
}

impl DigestCredentials {
    /// Parse a credentials header value (`Digest username="…", realm="…", …`).
    pub fn parse(value: &str) -> Result<Self, AuthHeaderError> {
        let params = parse_digest_params(value)?;
        let mut c = Self::default();
        let mut seen = Seen::default();
        let (mut username, mut realm, mut nonce, mut uri, mut response) =
            (None, None, None, None, None);
        for p in params {
            match known(&p.name) {
                Some(n @ "username") => set_once(&mut seen, n, &mut username, p.value)?,
                Some(n @ "realm") => set_once(&mut seen, n, &mut realm, p.value)?,
                Some(n @ "nonce") => set_once(&mut seen, n, &mut nonce, p.value)?,
                Some(n @ "uri") => set_once(&mut seen, n, &mut uri, p.value)?,
                Some(n @ "response") => set_once(&mut seen, n, &mut response, p.value)?,
                Some(n @ "algorithm") => set_once(&mut seen, n, &mut c.algorithm, p.value)?,
                Some(n @ "cnonce") => set_once(&mut seen, n, &mut c.cnonce, p.value)?,
                Some(n @ "opaque") => set_once(&mut seen, n, &mut c.opaque, p.value)?,
                Some(n @ "qop") => set_once(&mut seen, n, &mut c.qop, p.value)?,
                Some(n @ "nc") => {
                    seen.check(n)?;
                    c.nc = Some(parse_nc(&p.value)?);
                }
                Some(n @ "userhash") => {
                    seen.check(n)?;
                    c.userhash = parse_bool(n, &p.value)?;
                }
                _ => c.extra.push(p),
            }
        }
        c.username = username.ok_or(AuthHeaderError::MissingParam { name: "username" })?;
        c.realm = realm.ok_or(AuthHeaderError::MissingParam { name: "realm" })?;
        c.nonce = nonce.ok_or(AuthHeaderError::MissingParam { name: "nonce" })?;
        c.uri = uri.ok_or(AuthHeaderError::MissingParam { name: "uri" })?;
        c.response = response.ok_or(AuthHeaderError::MissingParam { name: "response" })?;
        Ok(c)
    }

    /// Parse from raw header bytes (checks UTF-8 first).
    pub fn parse_bytes(value: &[u8]) -> Result<Self, AuthHeaderError> {
        Self::parse(utf8(value)?)
    }

    /// The algorithm, `None` when it names one this crate does not implement.
    #[must_use]
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.algorithm
            .as_deref()
            .map_or(Some(Algorithm::Md5), Algorithm::from_name)
    }
}

/// Header value text, e.g. `Digest realm="atlanta.com", nonce="…", algorithm=SHA-256, qop="auth"`.
impl fmt::Display for DigestChallenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digest ")?;
        write_quoted(f, "realm", &self.realm, true)?;
        if let Some(d) = &self.domain {
            write_quoted(f, "domain", d, false)?;
        }
        write_quoted(f, "nonce", &self.nonce, false)?;
        if let Some(o) = &self.opaque {
            write_quoted(f, "opaque", o, false)?;
        }
        if self.stale {
            f.write_str(", stale=true")?;
        }
        if let Some(a) = &self.algorithm {
            write_token_or_quoted(f, "algorithm", a)?;
        }
        if !self.qop.is_empty() {
            write_quoted(f, "qop", &self.qop.join(","), false)?;
        }
        if self.userhash {
            f.write_str(", userhash=true")?;
        }
        write_extra(f, &self.extra)
    }
}

/// Header value text, e.g. `Digest username="bob", realm="…", …, nc=00000001, qop=auth`.
impl fmt::Display for DigestCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Digest ")?;
        write_quoted(f, "username", &self.username, true)?;
        write_quoted(f, "realm", &self.realm, false)?;
        write_quoted(f, "nonce", &self.nonce, false)?;
        write_quoted(f, "uri", &self.uri, false)?;
        write_quoted(f, "response", &self.response, false)?;
        if let Some(a) = &self.algorithm {
            write_token_or_quoted(f, "algorithm", a)?;
        }
        if let Some(c) = &self.cnonce {
            write_quoted(f, "cnonce", c, false)?;
        }
        if let Some(o) = &self.opaque {
            write_quoted(f, "opaque", o, false)?;
        }
        if let Some(q) = &self.qop {
            write_token_or_quoted(f, "qop", q)?;
        }
        if let Some(nc) = self.nc {
            write!(f, ", nc={nc:08x}")?;
        }
        if self.userhash {
            f.write_str(", userhash=true")?;
        }
        write_extra(f, &self.extra)
    }
}

fn write_extra(f: &mut fmt::Formatter<'_>, extra: &[AuthParam]) -> fmt::Result {
    for p in extra {
        if p.quoted || !is_token(&p.value) {
            write_quoted(f, &p.name, &p.value, false)?;
        } else {
            write!(f, ", {}={}", p.name, p.value)?;
        }
    }
    Ok(())
}

fn write_token_or_quoted(f: &mut fmt::Formatter<'_>, name: &str, value: &str) -> fmt::Result {
    if is_token(value) {
        write!(f, ", {name}={value}")
    } else {
        write_quoted(f, name, value, false)
    }
}

/// Writes `name="value"` with `"` and `\` escaped as quoted-pairs.
fn write_quoted(f: &mut fmt::Formatter<'_>, name: &str, value: &str, first: bool) -> fmt::Result {
    if !first {
        f.write_str(", ")?;
    }
    f.write_str(name)?;
    f.write_str("=\"")?;
    // Copy runs of plain characters in one call; only specials go one by one.
    let mut run = 0;
    for (i, ch) in value.char_indices() {
        let special = matches!(ch, '"' | '\\') || (ch.is_ascii_control() && ch != '\t');
        if !special {
            continue;
        }
        f.write_str(&value[run..i])?;
        run = i + ch.len_utf8();
        match ch {
            // CR and LF cannot be represented inside a quoted string at all; drop them so the
            // output is always a single well-formed header line.
            '\r' | '\n' => {}
            // `"`, `\` and other controls (not qdtext) are sent as quoted-pairs.
            _ => {
                f.write_str("\\")?;
                f.write_char(ch)?;
            }
        }
    }
    f.write_str(&value[run..])?;
    f.write_str("\"")
}

fn utf8(value: &[u8]) -> Result<&str, AuthHeaderError> {
    std::str::from_utf8(value).map_err(|e| AuthHeaderError::NotUtf8 {
        offset: e.valid_up_to(),
    })
}

/// Known directive names, lower-cased, so duplicates are found case-insensitively.
fn known(name: &str) -> Option<&'static str> {
    const NAMES: [&str; 13] = [
        "realm",
        "nonce",
        "domain",
        "opaque",
        "algorithm",
        "stale",
        "qop",
        "userhash",
        "username",
        "uri",
        "response",
        "cnonce",
        "nc",
    ];
    NAMES.iter().copied().find(|k| k.eq_ignore_ascii_case(name))
}

#[derive(Default)]
struct Seen(Vec<&'static str>);

impl Seen {
    fn check(&mut self, name: &'static str) -> Result<(), AuthHeaderError> {
        if self.0.contains(&name) {
            return Err(AuthHeaderError::DuplicateParam { name });
        }
        self.0.push(name);
        Ok(())
    }
}

fn set_once(
    seen: &mut Seen,
    name: &'static str,
    slot: &mut Option<String>,
    value: String,
) -> Result<(), AuthHeaderError> {
    seen.check(name)?;
    *slot = Some(value);
    Ok(())
}

fn parse_bool(name: &'static str, v: &str) -> Result<bool, AuthHeaderError> {
    if v.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if v.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(AuthHeaderError::InvalidBool { name })
    }
}

fn parse_nc(v: &str) -> Result<u32, AuthHeaderError> {
    if v.len() != 8 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthHeaderError::InvalidNonceCount);
    }
    u32::from_str_radix(v, 16).map_err(|_| AuthHeaderError::InvalidNonceCount)
}

/// RFC 3261 `token` characters.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// Splits `Digest <auth-param list>` into its parameters, checking the scheme.
///
/// Returns [`AuthHeaderError::UnsupportedScheme`] for any other scheme.
pub fn parse_digest_params(value: &str) -> Result<Vec<AuthParam>, AuthHeaderError> {
    let (scheme, params) = parse_auth_params(value)?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(AuthHeaderError::UnsupportedScheme);
    }
    Ok(params)
}

/// Splits any `scheme auth-param *(COMMA auth-param)` value into the scheme and its
/// parameters (RFC 3261 §25.1 `other-challenge` / `other-response`).
pub fn parse_auth_params(value: &str) -> Result<(&str, Vec<AuthParam>), AuthHeaderError> {
    let b = value.as_bytes();
    let mut i = skip_lws(b, 0);
    if i >= b.len() {
        return Err(AuthHeaderError::Empty);
    }
    let start = i;
    while i < b.len() && is_token_byte(b[i]) {
        i += 1;
    }
    if i == start {
        return Err(syntax(SyntaxKind::ExpectedName, i));
    }
    let scheme = &value[start..i];
    let after_scheme = i;
    i = skip_lws(b, i);
    let mut params = Vec::new();
    if i >= b.len() {
        return Ok((scheme, params));
    }
    if i == after_scheme {
        return Err(syntax(SyntaxKind::ExpectedSpace, i));
    }
    loop {
        // Tolerate empty list elements (`a=1,,b=2`, a leading comma) as RFC 7230 §7 does.
        while i < b.len() && b[i] == b',' {
            i = skip_lws(b, i + 1);
        }
        if i >= b.len() {
            break;
        }
        let name_start = i;
        while i < b.len() && is_token_byte(b[i]) {
            i += 1;
        }
        if i == name_start {
            return Err(syntax(SyntaxKind::ExpectedName, i));
        }
        let name = &value[name_start..i];
        i = skip_lws(b, i);
        if i >= b.len() || b[i] != b'=' {
            return Err(syntax(SyntaxKind::ExpectedEquals, i));
        }
        i = skip_lws(b, i + 1);
        let (v, quoted, next) = if i < b.len() && b[i] == b'"' {
            let (v, next) = parse_quoted(value, i)?;
            (v, true, next)
        } else {
            let vs = i;
            while i < b.len() && is_token_byte(b[i]) {
                i += 1;
            }
            if i == vs {
                return Err(syntax(SyntaxKind::ExpectedValue, i));
            }
            (value[vs..i].to_owned(), false, i)
        };
        params.push(AuthParam {
            name: name.to_owned(),
            value: v,
            quoted,
        });
        i = skip_lws(b, next);
        if i >= b.len() {
            break;
        }
        if b[i] != b',' {
            return Err(syntax(SyntaxKind::ExpectedComma, i));
        }
    }
    Ok((scheme, params))
}

/// Parses a quoted string starting at the opening quote; returns (unescaped, index after).
fn parse_quoted(value: &str, open: usize) -> Result<(String, usize), AuthHeaderError> {
    let b = value.as_bytes();
    let mut out = String::new();
    let mut i = open + 1;
    let mut run = i;
    while i < b.len() {
        match b[i] {
            b'"' => {
                out.push_str(&value[run..i]);
                return Ok((out, i + 1));
            }
            b'\\' => {
                out.push_str(&value[run..i]);
                let Some(&e) = b.get(i + 1) else {
                    return Err(syntax(SyntaxKind::BadEscape, i));
                };
                // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F): no CR, LF or non-ASCII.
                if e == b'\r' || e == b'\n' || !e.is_ascii() {
                    return Err(syntax(SyntaxKind::BadEscape, i));
                }
                out.push(char::from(e));
                i += 2;
                run = i;
            }
            b'\r' | b'\n' => {
                // Folded line inside a quoted string (LWS): CRLF followed by SP/HTAB.
                let lws_end = skip_lws(b, i);
                if lws_end == i {
                    return Err(syntax(SyntaxKind::ControlInQuote, i));
                }
                out.push_str(&value[run..i]);
                out.push(' ');
                i = lws_end;
                run = i;
            }
            c if c < 0x20 && c != b'\t' || c == 0x7f => {
                return Err(syntax(SyntaxKind::ControlInQuote, i));
            }
            _ => i += 1,
        }
    }
    Err(syntax(SyntaxKind::UnterminatedQuote, open))
}

/// Skips LWS: spaces, tabs, and CRLF/LF folds followed by white space.
fn skip_lws(b: &[u8], mut i: usize) -> usize {
    loop {
        match b.get(i) {
            Some(b' ' | b'\t') => i += 1,
            Some(b'\r') if b.get(i + 1) == Some(&b'\n') && is_wsp(b.get(i + 2)) => i += 3,
            Some(b'\n') if is_wsp(b.get(i + 1)) => i += 2,
            _ => return i,
        }
    }
}

fn is_wsp(b: Option<&u8>) -> bool {
    matches!(b, Some(b' ' | b'\t'))
}

fn syntax(kind: SyntaxKind, offset: usize) -> AuthHeaderError {
    AuthHeaderError::Syntax { kind, offset }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3261_authorization() {
        let v = "Digest username=\"bob\", realm=\"biloxi.com\",\r\n nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"sip:bob@biloxi.com\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        let c = DigestCredentials::parse(v).unwrap();
        assert_eq!(c.username, "bob");
        assert_eq!(c.realm, "biloxi.com");
        assert_eq!(c.uri, "sip:bob@biloxi.com");
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(c.nc, Some(1));
        assert_eq!(c.cnonce.as_deref(), Some("0a4f113b"));
        assert_eq!(c.algorithm(), Some(Algorithm::Md5));
    }

    #[test]
    fn names_case_insensitive_and_escapes() {
        let v = r#"digest REALM="a \"quoted\" \\ realm", Nonce=abc, QOP="auth,auth-int", Stale=TRUE, algorithm=sha-256"#;
        let c = DigestChallenge::parse(v).unwrap();
        assert_eq!(c.realm, r#"a "quoted" \ realm"#);
        assert_eq!(c.nonce, "abc");
        assert_eq!(c.qop, vec!["auth", "auth-int"]);
        assert!(c.stale);
        assert_eq!(c.algorithm(), Some(Algorithm::Sha256));
        // Round trip through the formatter.
        let again = DigestChallenge::parse(&c.to_string()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn credentials_round_trip() {
        let c = DigestCredentials {
            username: "al\"ice".into(),
            realm: "r".into(),
            nonce: "n".into(),
            uri: "sip:x@y;transport=tcp".into(),
            response: "00ff".into(),
            algorithm: Some("SHA-256".into()),
            cnonce: Some("c".into()),
            opaque: Some("o".into()),
            qop: Some("auth".into()),
            nc: Some(0x1a),
            userhash: false,
            extra: vec![AuthParam {
                name: "x-foo".into(),
                value: "bar baz".into(),
                quoted: true,
            }],
        };
        let s = c.to_string();
        assert!(s.contains("nc=0000001a"), "{s}");
        assert_eq!(DigestCredentials::parse(&s).unwrap(), c);
    }

    #[test]
    fn typed_errors() {
        use AuthHeaderError as E;
        assert_eq!(DigestChallenge::parse("  "), Err(E::Empty));
        assert_eq!(
            DigestChallenge::parse("Basic realm=\"x\""),
            Err(E::UnsupportedScheme)
        );
        assert_eq!(
            DigestChallenge::parse("Digest nonce=\"n\""),
            Err(E::MissingParam { name: "realm" })
        );
        assert_eq!(
            DigestChallenge::parse("Digest realm=a, realm=b, nonce=c"),
            Err(E::DuplicateParam { name: "realm" })
        );
        assert!(matches!(
            DigestChallenge::parse("Digest realm=\"abc"),
            Err(E::Syntax {
                kind: SyntaxKind::UnterminatedQuote,
                ..
            })
        ));
        assert!(matches!(
            DigestChallenge::parse("Digest realm=a nonce=b"),
            Err(E::Syntax {
                kind: SyntaxKind::ExpectedComma,
                ..
            })
        ));
        assert!(matches!(
            DigestChallenge::parse("Digest realm"),
            Err(E::Syntax {
                kind: SyntaxKind::ExpectedEquals,
                ..
            })
        ));
        assert!(matches!(
            DigestChallenge::parse("Digest realm=,nonce=a"),
            Err(E::Syntax {
                kind: SyntaxKind::ExpectedValue,
                ..
            })
        ));
        assert!(matches!(
            DigestChallenge::parse("Digestrealm=a"),
            Err(E::Syntax { .. })
        ));
        assert_eq!(
            DigestCredentials::parse(
                "Digest username=a, realm=b, nonce=c, uri=d, response=e, nc=1"
            ),
            Err(E::InvalidNonceCount)
        );
        assert_eq!(
            DigestChallenge::parse("Digest realm=a, nonce=b, stale=maybe"),
            Err(E::InvalidBool { name: "stale" })
        );
        assert!(matches!(
            DigestChallenge::parse_bytes(b"Digest realm=\"\xff\""),
            Err(E::NotUtf8 { offset: 14 })
        ));
        assert!(matches!(
            DigestChallenge::parse("Digest realm=\"a\\"),
            Err(E::Syntax {
                kind: SyntaxKind::BadEscape,
                ..
            })
        ));
    }

    #[test]
    fn control_characters_round_trip_as_quoted_pairs() {
        let c = DigestChallenge::parse("Digest realm=\"a\\\u{1}b\", nonce=\"x\\\u{7f}\"").unwrap();
        assert_eq!(c.realm, "a\u{1}b");
        assert_eq!(DigestChallenge::parse(&c.to_string()).unwrap(), c);
        // Raw controls are refused.
        assert!(DigestChallenge::parse("Digest realm=\"a\u{1}\", nonce=x").is_err());
    }

    #[test]
    fn tolerates_empty_elements_and_unknown_params() {
        let c = DigestChallenge::parse("Digest ,realm=a,, nonce=b , foo=\"x\",").unwrap();
        assert_eq!(c.extra.len(), 1);
        assert_eq!(c.extra[0].name, "foo");
        assert_eq!(c.algorithm(), Some(Algorithm::Md5));
        let c = DigestChallenge::parse("Digest realm=a, nonce=b, algorithm=SHA-999").unwrap();
        assert_eq!(c.algorithm(), None);
    }

    #[test]
    fn other_scheme_params() {
        let (scheme, params) = parse_auth_params("Bearer realm=\"x\", error=invalid").unwrap();
        assert_eq!(scheme, "Bearer");
        assert_eq!(params.len(), 2);
        assert_eq!(parse_auth_params("Negotiate").unwrap().1.len(), 0);
    }
}
