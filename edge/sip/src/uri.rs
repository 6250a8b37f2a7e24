//! URIs: SIP/SIPS (RFC 3261 §19.1, §25.1), TEL (RFC 3966) and any other absolute URI
//! (RFC 3986, kept opaque). IPv6 references follow RFC 5118: `[2001:db8::10]`, with the
//! three-colon form of §4.10 tolerated. Comparison follows §19.1.4: %-escapes compare equal to
//! the characters they encode. Views borrow the text they were parsed from; nothing is copied.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::error::UriError;
use crate::syntax::{class, hex_val, is_lws, is_token, quoted_len, trim_lws};

/// The scheme of a URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme<'a> {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:`
    Tel,
    /// Any other scheme, as written.
    Other(&'a str),
}

impl Scheme<'_> {
    /// The scheme name (lower case for the known ones).
    pub fn as_str(&self) -> &str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
            Scheme::Other(s) => s,
        }
    }
}

/// A host: domain name, IPv4 address or IPv6 reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host<'a> {
    /// A domain name as written (compare case-insensitively).
    Domain(&'a str),
    /// A dotted-quad IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (written in `[]` in URIs and Via sent-by).
    Ipv6(Ipv6Addr),
}

impl Host<'_> {
    /// Same host per RFC 3261 §19.1.4 (domains case-insensitive, addresses by value).
    pub fn equivalent(&self, other: &Host<'_>) -> bool {
        match (self, other) {
            (Host::Domain(a), Host::Domain(b)) => a.eq_ignore_ascii_case(b),
            (Host::Ipv4(a), Host::Ipv4(b)) => a == b,
            (Host::Ipv6(a), Host::Ipv6(b)) => a == b,
            _ => false,
        }
    }
}

impl std::fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// Parse a host: `[IPv6]`, dotted IPv4, or a domain name (alnum, `-`, `.`, `_`).
pub fn parse_host(s: &str) -> Result<Host<'_>, UriError> {
    let b = s.as_bytes();
    if b.first() == Some(&b'[') {
        if b.len() < 3 || b[b.len() - 1] != b']' {
            return Err(UriError::Host);
        }
        return parse_ipv6(&s[1..s.len() - 1]).map(Host::Ipv6);
    }
    if b.is_empty() || !DOMAIN[b[0] as usize] || b[0] == b'.' || b[0] == b'-' {
        return Err(UriError::Host);
    }
    // HOST_CLASS: 0 = not allowed, 1 = digit or '.', 2 = other domain character.
    let mut kinds = 0u8;
    for &c in b {
        let k = HOST_CLASS[c as usize];
        if k == 0 {
            return Err(UriError::Host);
        }
        kinds |= k;
    }
    if kinds == 1 {
        return s
            .parse::<Ipv4Addr>()
            .map(Host::Ipv4)
            .map_err(|_| UriError::Host);
    }
    Ok(Host::Domain(s))
}

/// Parse an IPv6 address (without brackets), tolerating the `:::` form of RFC 5118 §4.10.
pub fn parse_ipv6(s: &str) -> Result<Ipv6Addr, UriError> {
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
    {
        return Err(UriError::Host);
    }
    if let Ok(a) = s.parse::<Ipv6Addr>() {
        return Ok(a);
    }
    if let Some(i) = s.find(":::") {
        let fixed = format!("{}{}", &s[..i + 1], &s[i + 2..]);
        return fixed.parse::<Ipv6Addr>().map_err(|_| UriError::Host);
    }
    Err(UriError::Host)
}

/// A parameter list (`;name=value;flag`), either URI parameters or header parameters. Holds the
/// validated text; lookups scan it (lists are short). Names compare case-insensitively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a> {
    raw: &'a str,
}

impl<'a> Params<'a> {
    pub(crate) fn new(raw: &'a str) -> Self {
        Self { raw }
    }

    /// The raw text, starting at the first `;` (empty when there are no parameters).
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// No parameters at all.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Iterate `(name, value)`; `value` is `None` for a flag (`;lr`). Values are as written
    /// (quoted strings keep their quotes, escapes are not decoded).
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter { rest: self.raw }
    }

    /// The parameter `name`: `Some(Some(v))` with a value, `Some(None)` as a flag, else `None`.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The value of `name` if present with a value.
    pub fn value(&self, name: &str) -> Option<&'a str> {
        self.get(name).flatten()
    }

    /// Is `name` present (with or without a value)?
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Iterator over [`Params`].
#[derive(Debug, Clone)]
pub struct ParamIter<'a> {
    rest: &'a str,
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a str, Option<&'a str>);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest;
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() && (is_lws(b[i]) || b[i] == b';') {
            i += 1;
        }
        if i >= b.len() {
            self.rest = "";
            return None;
        }
        let start = i;
        let mut eq = None;
        while i < b.len() && b[i] != b';' {
            match b[i] {
                b'"' => i += quoted_len(&b[i..]).unwrap_or(b.len() - i),
                b'=' if eq.is_none() => {
                    eq = Some(i);
                    i += 1;
                }
                _ => i += 1,
            }
        }
        self.rest = &s[i..];
        // All cut points below are at ASCII octets (';', '=', LWS), hence char boundaries.
        Some(match eq {
            Some(e) => (trim_lws(&s[start..e]), Some(trim_lws(&s[e + 1..i]))),
            None => (trim_lws(&s[start..i]), None),
        })
    }
}

/// Remove surrounding quotes from a quoted-string value and resolve `\x` escapes.
pub fn unquote(s: &str) -> Cow<'_, str> {
    let Some(inner) = s.strip_prefix('"').and_then(|x| x.strip_suffix('"')) else {
        return Cow::Borrowed(s);
    };
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Decode %-escapes (`%41` → `A`, `%00` → NUL). A `%` not followed by two hex digits is kept.
pub fn pct_decode(s: &str) -> Cow<'_, [u8]> {
    let b = s.as_bytes();
    if !b.contains(&b'%') {
        return Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(out)
}

/// A SIP or SIPS URI (RFC 3261 §19.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipUri<'a> {
    raw: &'a str,
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// The user part as written (escapes not decoded), if any.
    pub user: Option<&'a str>,
    /// The password as written, if any.
    pub password: Option<&'a str>,
    /// The host.
    pub host: Host<'a>,
    /// The host as written (IPv6 with its brackets).
    pub host_raw: &'a str,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp;lr`).
    pub params: Params<'a>,
    /// The header part after `?`, if any (`Route=%3Csip:x%3E&Subject=y`).
    pub headers: Option<&'a str>,
}

impl<'a> SipUri<'a> {
    /// The URI as written.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// `transport=` parameter.
    pub fn transport(&self) -> Option<&'a str> {
        self.params.value("transport")
    }

    /// `lr` flag (loose routing, RFC 3261 §16.4).
    pub fn lr(&self) -> bool {
        self.params.contains("lr")
    }

    /// `maddr=` parameter.
    pub fn maddr(&self) -> Option<&'a str> {
        self.params.value("maddr")
    }

    /// `user=` parameter (`phone`, `ip`).
    pub fn user_param(&self) -> Option<&'a str> {
        self.params.value("user")
    }

    /// The user part with escapes decoded.
    pub fn user_decoded(&self) -> Option<Cow<'a, [u8]>> {
        self.user.map(pct_decode)
    }

    /// Equivalence per RFC 3261 §19.1.4.
    pub fn equivalent(&self, other: &SipUri<'_>) -> bool {
        if self.secure != other.secure
            || !opt_eq_decoded(self.user, other.user)
            || !opt_eq_decoded(self.password, other.password)
            || !self.host.equivalent(&other.host)
            || self.port != other.port
        {
            return false;
        }
        // user, ttl, method, maddr, transport: present in one ⇒ must match in the other.
        for special in ["user", "ttl", "method", "maddr", "transport"] {
            match (self.params.get(special), other.params.get(special)) {
                (None, None) => {}
                (Some(a), Some(b)) if opt_eq_ci_decoded(a, b) => {}
                _ => return false,
            }
        }
        // Other parameters: compared only when present in both (first occurrence of a name).
        for (n, _) in self.params.iter() {
            if let (Some(v), Some(ov)) = (self.params.get(n), other.params.get(n)) {
                if !opt_eq_ci_decoded(v, ov) {
                    return false;
                }
            }
        }
        headers_equivalent(self.headers, other.headers)
    }
}

fn opt_eq_decoded(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => pct_decode(a) == pct_decode(b),
        _ => false,
    }
}

fn opt_eq_ci_decoded(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => pct_decode(a).eq_ignore_ascii_case(&pct_decode(b)),
        _ => false,
    }
}

fn headers_equivalent(a: Option<&str>, b: Option<&str>) -> bool {
    let split = |h: Option<&str>| -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut v: Vec<(Vec<u8>, Vec<u8>)> = h
            .unwrap_or("")
            .split('&')
            .filter(|x| !x.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (
                    pct_decode(k).to_ascii_lowercase(),
                    pct_decode(v).into_owned(),
                )
            })
            .collect();
        v.sort();
        v
    };
    split(a) == split(b)
}

/// A TEL URI (RFC 3966): the number as written and its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelUri<'a> {
    raw: &'a str,
    /// The telephone-subscriber part (`+1-201-555-0123`).
    pub number: &'a str,
    /// Parameters (`;phone-context=...`).
    pub params: Params<'a>,
}

impl<'a> TelUri<'a> {
    /// The URI as written.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }
}

/// Any other absolute URI, kept opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbsoluteUri<'a> {
    raw: &'a str,
    /// The scheme as written.
    pub scheme: &'a str,
    /// Everything after `scheme:`.
    pub rest: &'a str,
}

/// A parsed URI, borrowing its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uri<'a> {
    /// `sip:` or `sips:`.
    Sip(SipUri<'a>),
    /// `tel:`.
    Tel(TelUri<'a>),
    /// Anything else (`http:`, `urn:`, `isbn:`...).
    Other(AbsoluteUri<'a>),
}

impl<'a> Uri<'a> {
    /// Parse a URI (the whole of `s`; no surrounding spaces or `<>`).
    pub fn parse(s: &'a str) -> Result<Self, UriError> {
        parse_uri(s)
    }

    /// The URI as written.
    pub fn as_str(&self) -> &'a str {
        match self {
            Uri::Sip(u) => u.raw,
            Uri::Tel(u) => u.raw,
            Uri::Other(u) => u.raw,
        }
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme<'a> {
        match self {
            Uri::Sip(u) if u.secure => Scheme::Sips,
            Uri::Sip(_) => Scheme::Sip,
            Uri::Tel(_) => Scheme::Tel,
            Uri::Other(u) => Scheme::Other(u.scheme),
        }
    }

    /// The SIP/SIPS view, if it is one.
    pub fn as_sip(&self) -> Option<&SipUri<'a>> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// Equivalence: §19.1.4 for SIP; TEL by number (visual separators ignored) and params;
    /// other schemes by exact text.
    pub fn equivalent(&self, other: &Uri<'_>) -> bool {
        match (self, other) {
            (Uri::Sip(a), Uri::Sip(b)) => a.equivalent(b),
            (Uri::Tel(a), Uri::Tel(b)) => {
                let digits = |n: &str| -> String {
                    n.chars()
                        .filter(|c| !matches!(c, '-' | '.' | '(' | ')'))
                        .map(|c| c.to_ascii_lowercase())
                        .collect()
                };
                digits(a.number) == digits(b.number)
                    && a.params.as_str().eq_ignore_ascii_case(b.params.as_str())
            }
            (Uri::Other(a), Uri::Other(b)) => {
                a.scheme.eq_ignore_ascii_case(b.scheme) && a.rest == b.rest
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const USER: [bool; 256] = class(true, b"-_.!~*'()&=+$,;?/");
const PASSWORD: [bool; 256] = class(true, b"-_.!~*'()&=+$,");
const PARAM: [bool; 256] = class(true, b"-_.!~*'()[]/:&+$");
const HNV: [bool; 256] = class(true, b"-_.!~*'()[]/?:+$");
const URIC: [bool; 256] = class(true, b"-_.!~*'();/?:@&=+$,#");
const DOMAIN: [bool; 256] = class(true, b"-._");
const HOST_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = if c.is_ascii_digit() || c == b'.' {
            1
        } else if DOMAIN[i] {
            2
        } else {
            0
        };
        i += 1;
    }
    t
};

/// Check that every byte satisfies `ok` or is a valid `%HH` escape.
fn check_escaped(s: &[u8], ok: impl Fn(u8) -> bool) -> bool {
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == b'%' {
            if i + 2 >= s.len() {
                return false;
            }
            if hex_val(s[i + 1]).is_none() || hex_val(s[i + 2]).is_none() {
                return false;
            }
            i += 3;
        } else if ok(c) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn is_param_char(c: u8) -> bool {
    PARAM[c as usize]
}

fn is_hnv_char(c: u8) -> bool {
    HNV[c as usize]
}

fn is_uric(c: u8) -> bool {
    URIC[c as usize]
}

/// Validate URI parameters (`;a=b;c`): no empty names, paramchar only.
fn check_uri_params(p: &str) -> Result<(), UriError> {
    if p.is_empty() {
        return Ok(());
    }
    let p = p.strip_prefix(';').ok_or(UriError::Param)?;
    for item in p.split(';') {
        let (n, v) = match item.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (item, None),
        };
        if n.is_empty() || !check_escaped(n.as_bytes(), is_param_char) {
            return Err(UriError::Param);
        }
        if let Some(v) = v {
            if v.is_empty() || !check_escaped(v.as_bytes(), is_param_char) {
                return Err(UriError::Param);
            }
        }
    }
    Ok(())
}

fn check_uri_headers(h: &str) -> Result<(), UriError> {
    for item in h.split('&') {
        let (n, v) = item.split_once('=').ok_or(UriError::Headers)?;
        if n.is_empty()
            || !check_escaped(n.as_bytes(), is_hnv_char)
            || !check_escaped(v.as_bytes(), is_hnv_char)
        {
            return Err(UriError::Headers);
        }
    }
    Ok(())
}

fn parse_uri(s: &str) -> Result<Uri<'_>, UriError> {
    let b = s.as_bytes();
    let colon = memchr::memchr(b':', b).ok_or(UriError::Scheme)?;
    let scheme = &s[..colon];
    if scheme.is_empty()
        || !scheme.as_bytes()[0].is_ascii_alphabetic()
        || !scheme
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
    {
        return Err(UriError::Scheme);
    }
    let rest = &s[colon + 1..];
    if scheme.eq_ignore_ascii_case("sip") {
        parse_sip(s, rest, false).map(Uri::Sip)
    } else if scheme.eq_ignore_ascii_case("sips") {
        parse_sip(s, rest, true).map(Uri::Sip)
    } else if scheme.eq_ignore_ascii_case("tel") {
        let (number, params) = match rest.find(';') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if number.is_empty()
            || !number.bytes().all(|c| {
                c.is_ascii_alphanumeric()
                    || matches!(c, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#')
            })
        {
            return Err(UriError::UserInfo);
        }
        check_uri_params(params)?;
        Ok(Uri::Tel(TelUri {
            raw: s,
            number,
            params: Params::new(params),
        }))
    } else {
        if rest.is_empty() || !check_escaped(rest.as_bytes(), is_uric) {
            return Err(UriError::Char);
        }
        Ok(Uri::Other(AbsoluteUri {
            raw: s,
            scheme,
            rest,
        }))
    }
}

fn parse_sip<'a>(raw: &'a str, rest: &'a str, secure: bool) -> Result<SipUri<'a>, UriError> {
    let b = rest.as_bytes();
    let (user, password, hostpart) = match memchr::memchr(b'@', b) {
        Some(at) => {
            let ui = &rest[..at];
            let (u, p) = match memchr::memchr(b':', ui.as_bytes()) {
                Some(c) => (&ui[..c], Some(&ui[c + 1..])),
                None => (ui, None),
            };
            if u.is_empty() || !check_escaped(u.as_bytes(), |c| USER[c as usize]) {
                return Err(UriError::UserInfo);
            }
            if let Some(p) = p {
                if !check_escaped(p.as_bytes(), |c| PASSWORD[c as usize]) {
                    return Err(UriError::UserInfo);
                }
            }
            (Some(u), p, &rest[at + 1..])
        }
        None => (None, None, rest),
    };
    let hb = hostpart.as_bytes();
    // Host ends at ']' for IPv6, else at ':', ';' or '?'.
    let host_end = if hb.first() == Some(&b'[') {
        memchr::memchr(b']', hb).ok_or(UriError::Host)? + 1
    } else {
        hb.iter()
            .position(|&c| matches!(c, b':' | b';' | b'?'))
            .unwrap_or(hb.len())
    };
    let host_raw = &hostpart[..host_end];
    let host = parse_host(host_raw)?;
    let mut i = host_end;
    let mut port = None;
    if hb.get(i) == Some(&b':') {
        let pstart = i + 1;
        let mut j = pstart;
        while j < hb.len() && hb[j].is_ascii_digit() {
            j += 1;
        }
        let digits = &hb[pstart..j];
        if digits.is_empty() || digits.len() > 5 {
            return Err(UriError::Port);
        }
        let v = crate::syntax::parse_digits(digits).ok_or(UriError::Port)?;
        port = Some(u16::try_from(v).map_err(|_| UriError::Port)?);
        i = j;
    }
    let after = &hostpart[i..];
    let (params, headers) = match memchr::memchr(b'?', after.as_bytes()) {
        Some(q) => (&after[..q], Some(&after[q + 1..])),
        None => (after, None),
    };
    if !params.is_empty() && !params.starts_with(';') {
        return Err(if params.starts_with(':') {
            UriError::Port
        } else {
            UriError::Host
        });
    }
    check_uri_params(params)?;
    if let Some(h) = headers {
        check_uri_headers(h)?;
    }
    Ok(SipUri {
        raw,
        secure,
        user,
        password,
        host,
        host_raw,
        port,
        params: Params::new(params),
        headers,
    })
}

/// Validate a header parameter list (`;tag=x ; q = 0.5;flag`, LWS allowed around `;` and `=`).
/// Returns an error on an empty parameter (`;;`) or an illegal character. `s` must start with
/// `;` or be blank.
pub(crate) fn check_header_params(s: &str) -> Result<(), crate::error::HeaderErrorKind> {
    use crate::error::HeaderErrorKind as K;
    let b = s.as_bytes();
    let mut i = 0;
    let skip = |i: &mut usize| {
        while *i < b.len() && is_lws(b[*i]) {
            *i += 1;
        }
    };
    skip(&mut i);
    while i < b.len() {
        if b[i] != b';' {
            return Err(K::Syntax);
        }
        i += 1;
        skip(&mut i);
        let n0 = i;
        while i < b.len() && is_token(b[i]) {
            i += 1;
        }
        if i == n0 {
            return Err(K::Empty);
        }
        skip(&mut i);
        if i < b.len() && b[i] == b'=' {
            i += 1;
            skip(&mut i);
            if i < b.len() && b[i] == b'"' {
                i += quoted_len(&b[i..]).ok_or(K::UnterminatedQuote)?;
            } else {
                let v0 = i;
                while i < b.len() && (is_token(b[i]) || matches!(b[i], b':' | b'[' | b']')) {
                    i += 1;
                }
                if i == v0 {
                    return Err(K::Syntax);
                }
            }
            skip(&mut i);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sip(s: &str) -> SipUri<'_> {
        match Uri::parse(s).unwrap() {
            Uri::Sip(u) => u,
            other => panic!("not sip: {other:?}"),
        }
    }

    #[test]
    fn basic_sip() {
        let u = sip("sip:alice:pw@example.com:5070;transport=tcp;lr?Subject=x&Priority=urgent");
        assert_eq!(u.user, Some("alice"));
        assert_eq!(u.password, Some("pw"));
        assert_eq!(u.host, Host::Domain("example.com"));
        assert_eq!(u.port, Some(5070));
        assert_eq!(u.transport(), Some("tcp"));
        assert!(u.lr());
        assert_eq!(u.headers, Some("Subject=x&Priority=urgent"));
    }

    #[test]
    fn ipv6_forms() {
        let u = sip("sip:[2001:db8::10]:5070");
        assert_eq!(u.host, Host::Ipv6("2001:db8::10".parse().unwrap()));
        assert_eq!(u.port, Some(5070));
        let u = sip("sip:[2001:db8::10:5070]");
        assert_eq!(u.port, None);
        let a = sip("sip:user@[2001:db8:::192.0.2.1]");
        let b = sip("sip:user@[2001:db8::192.0.2.1]");
        assert!(a.equivalent(&b));
        assert!(Uri::parse("sip:2001:db8::10").is_err());
        assert!(Uri::parse("sip:[::ffff:192.0.2.10]:19823").is_ok());
    }

    #[test]
    fn escapes_compare_equal() {
        let a = sip("sip:%75se%72@example.com");
        let b = sip("sip:user@EXAMPLE.com");
        assert!(a.equivalent(&b));
        let n = sip("sip:null-%00-null@example.com");
        assert_eq!(&*n.user_decoded().unwrap(), b"null-\0-null");
        assert!(Uri::parse("sip:a%zz@b").is_err());
    }

    #[test]
    fn equivalence_rules() {
        assert!(!sip("sip:a@b").equivalent(&sip("sip:a@b:5060")));
        assert!(!sip("sip:A@b").equivalent(&sip("sip:a@b")));
        assert!(sip("sip:a@b;foo=1").equivalent(&sip("sip:a@b")));
        assert!(!sip("sip:a@b;transport=tcp").equivalent(&sip("sip:a@b")));
        assert!(!sip("sip:a@b;foo=1").equivalent(&sip("sip:a@b;foo=2")));
        assert!(!sip("sips:a@b").equivalent(&sip("sip:a@b")));
        let dup = sip("sip:a@b;cp=1;cp=2;transport");
        assert!(dup.equivalent(&dup));
    }

    #[test]
    fn odd_users() {
        let u = sip(
            "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        );
        assert_eq!(
            u.user,
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            u.password,
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        let u = sip("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user, Some("user;par=u%40example.net"));
        assert!(u.params.is_empty());
    }

    #[test]
    fn rejects() {
        for bad in [
            "<sip:a@b>",
            "sip:a@b; lr",
            "sip:",
            "sip:a@",
            "sip:a@b:",
            "sip:a@b:99999",
            "sip:a@b;",
            "sip:a@b;;x",
            "sip:a@b?x",
            "sip:[::1",
            "nosuch",
            "1x:abc",
            "x: y",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tel_and_other() {
        let Uri::Tel(t) = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").unwrap()
        else {
            panic!()
        };
        assert_eq!(t.number, "+1-201-555-0123");
        assert_eq!(t.params.value("phone-context"), Some("example.com"));
        let o = Uri::parse("soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(o.scheme(), Scheme::Other("soap.beep"));
    }

    #[test]
    fn params_iter() {
        let p = Params::new(" ;  tag    = 1918181833n ; q=0.5;lr");
        let v: Vec<_> = p.iter().collect();
        assert_eq!(
            v,
            [
                ("tag", Some("1918181833n")),
                ("q", Some("0.5")),
                ("lr", None)
            ]
        );
        assert!(check_header_params(";;").is_err());
        assert!(
            check_header_params(" ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33")
                .is_ok()
        );
        assert!(check_header_params(";a=\"x;y\"").is_ok());
        assert!(check_header_params(";received=2001:db8::9:255").is_ok());
        assert_eq!(unquote("\"a\\\"b\""), "a\"b");
    }
}
