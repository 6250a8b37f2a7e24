//! The message head parser (RFC 3261 §7, §25.1): start line, header boundaries (with line
//! folding, §7.3.1), header-name classification and the eager Content-Length check. It produces
//! byte ranges only; header values are parsed later, on demand (`crate::headers`).
//!
//! Accepts CRLF and, leniently, bare LF line ends; skips CRLFs before the start line (§7.5).
//! Strict on the start line: exactly one SP between its three elements (RFC 4475 §3.1.2.7–10).

use crate::error::{ParseError, ParseErrorKind as K};
use crate::header_name::HeaderName;
use crate::method::{Method, StatusCode};
use crate::syntax::{is_lws, is_token, parse_digits};

/// A byte range into the message buffer. `u32` keeps `RawHeader` small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
}

impl Span {
    #[inline]
    pub(crate) fn new(start: usize, end: usize) -> Self {
        Self {
            start: start as u32,
            end: end as u32,
        }
    }
    #[inline]
    pub(crate) fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One header line: name, value (trimmed, folds kept), and the end of the line (after its
/// newline), so the serializer can copy or skip whole lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawHeader {
    pub(crate) name: HeaderName,
    pub(crate) name_span: Span,
    pub(crate) value: Span,
    pub(crate) line_end: u32,
}

/// The parsed start line (ranges into the buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartSpans {
    Request {
        method: Method,
        method_span: Span,
        uri: Span,
        version: Span,
        /// The parser's check of the Request-URI (`Uri::parse` succeeded): whether it is a
        /// SIP/SIPS URI with headers (`?...`), so that validation need not parse it again.
        /// `None` when the start line was written without that check.
        uri_headers: Option<bool>,
    },
    Response {
        version: Span,
        code: StatusCode,
        reason: Span,
    },
}

/// Limits applied while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message (head + body) accepted, in bytes.
    pub max_message: usize,
    /// Most header lines accepted.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message: 65_536,
            max_headers: 256,
        }
    }
}

/// Everything the head parser found.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) start_offset: u32,
    pub(crate) start: StartSpans,
    pub(crate) headers: Vec<RawHeader>,
    /// Offset of the first header line (= end of the start line).
    pub(crate) headers_start: u32,
    /// Offset of the empty line that ends the header section.
    pub(crate) headers_end: u32,
    /// Offset of the body (after the empty line).
    pub(crate) body_start: u32,
    pub(crate) content_length: Option<u32>,
}

/// Find the end of the header section in `buf` starting the search at `from` (a resume point
/// for streams). Returns the offset just after the empty line, or `None` if not there yet.
pub(crate) fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = memchr::memchr(b'\n', &buf[i..]) {
        let nl = i + p;
        // Empty line: "\n\n" or "\n\r\n".
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => {}
        }
        i = nl + 1;
    }
    None
}

fn skip_leading_crlf(buf: &[u8]) -> usize {
    let mut i = 0;
    while i < buf.len() && (buf[i] == b'\r' || buf[i] == b'\n') {
        i += 1;
    }
    i
}

/// Parse the head of the message in `buf` (which may hold more than one message, or less than
/// one: `Truncated` means no complete header section is present).
pub(crate) fn parse_head(buf: &[u8], limits: &Limits) -> Result<Head, ParseError> {
    let start = skip_leading_crlf(buf);
    if start == buf.len() {
        return Err(ParseError::new(K::Empty, start));
    }
    if buf.len() > u32::MAX as usize {
        return Err(ParseError::new(K::TooLarge, 0));
    }
    let nl = memchr::memchr(b'\n', &buf[start..])
        .map(|p| start + p)
        .ok_or_else(|| ParseError::new(K::Truncated, buf.len()))?;
    let line_end = if nl > start && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let start_line = parse_start_line(buf, start, line_end)?;

    let mut headers = Vec::with_capacity(20);
    let headers_start = nl + 1;
    let mut pos = headers_start;
    let mut content_length: Option<u32> = None;
    loop {
        if pos >= buf.len() {
            return Err(ParseError::new(K::Truncated, pos));
        }
        // Empty line ends the section.
        if buf[pos] == b'\n' {
            return Ok(finish(
                start,
                start_line,
                headers,
                headers_start,
                pos,
                pos + 1,
                content_length,
            ));
        }
        if buf[pos] == b'\r' && buf.get(pos + 1) == Some(&b'\n') {
            return Ok(finish(
                start,
                start_line,
                headers,
                headers_start,
                pos,
                pos + 2,
                content_length,
            ));
        }
        if headers.len() >= limits.max_headers {
            return Err(ParseError::new(K::TooManyHeaders, pos));
        }
        // Header name: token, optional SP/HT, ':'.
        let name_start = pos;
        let mut i = pos;
        while i < buf.len() && is_token(buf[i]) {
            i += 1;
        }
        let name_end = i;
        if name_end == name_start {
            return Err(ParseError::new(K::InvalidHeaderLine, pos));
        }
        while i < buf.len() && (buf[i] == b' ' || buf[i] == b'\t') {
            i += 1;
        }
        if i >= buf.len() || buf[i] != b':' {
            return Err(ParseError::new(
                if i >= buf.len() {
                    K::Truncated
                } else {
                    K::InvalidHeaderLine
                },
                i,
            ));
        }
        let colon = i;
        // Find the end of the logical line (folded continuation lines start with SP/HT).
        let mut search = colon + 1;
        let line_nl = loop {
            let Some(p) = memchr::memchr(b'\n', &buf[search..]) else {
                return Err(ParseError::new(K::Truncated, buf.len()));
            };
            let nl = search + p;
            match buf.get(nl + 1) {
                Some(b' ' | b'\t') => search = nl + 1,
                Some(_) => break nl,
                None => return Err(ParseError::new(K::Truncated, buf.len())),
            }
        };
        // A bare CR inside a value is not allowed; only CRLF / LF line ends.
        let mut v0 = colon + 1;
        let mut v1 = line_nl;
        while v0 < v1 && is_lws(buf[v0]) {
            v0 += 1;
        }
        while v1 > v0 && is_lws(buf[v1 - 1]) {
            v1 -= 1;
        }
        let name = HeaderName::from_bytes(&buf[name_start..name_end]);
        if name == HeaderName::ContentLength {
            let v = parse_digits(&buf[v0..v1])
                .ok_or_else(|| ParseError::new(K::InvalidContentLength, v0))?;
            let v = u32::try_from(v).map_err(|_| ParseError::new(K::InvalidContentLength, v0))?;
            if content_length.is_some_and(|old| old != v) {
                return Err(ParseError::new(K::ConflictingContentLength, v0));
            }
            content_length = Some(v);
        }
        headers.push(RawHeader {
            name,
            name_span: Span::new(name_start, name_end),
            value: Span::new(v0, v1),
            line_end: (line_nl + 1) as u32,
        });
        pos = line_nl + 1;
    }
}

fn finish(
    start: usize,
    start_line: StartSpans,
    headers: Vec<RawHeader>,
    headers_start: usize,
    headers_end: usize,
    body_start: usize,
    content_length: Option<u32>,
) -> Head {
    Head {
        start_offset: start as u32,
        start: start_line,
        headers,
        headers_start: headers_start as u32,
        headers_end: headers_end as u32,
        body_start: body_start as u32,
        content_length,
    }
}

/// `SIP/<digits>.<digits>` (case-insensitive "SIP").
fn is_version(v: &[u8]) -> bool {
    if v.len() < 7 || !v[..4].eq_ignore_ascii_case(b"SIP/") {
        return false;
    }
    let rest = &v[4..];
    let Some(dot) = rest.iter().position(|&c| c == b'.') else {
        return false;
    };
    let (a, b) = (&rest[..dot], &rest[dot + 1..]);
    !a.is_empty()
        && !b.is_empty()
        && a.iter().all(u8::is_ascii_digit)
        && b.iter().all(u8::is_ascii_digit)
}

fn parse_start_line(buf: &[u8], start: usize, end: usize) -> Result<StartSpans, ParseError> {
    let line = &buf[start..end];
    if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"SIP/") {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let sp1 =
            memchr::memchr(b' ', line).ok_or_else(|| ParseError::new(K::InvalidStartLine, end))?;
        if !is_version(&line[..sp1]) {
            return Err(ParseError::new(K::InvalidVersion, start));
        }
        let code_start = sp1 + 1;
        let mut j = code_start;
        while j < line.len() && line[j].is_ascii_digit() {
            j += 1;
        }
        if j - code_start != 3 || (j < line.len() && line[j] != b' ') {
            return Err(ParseError::new(K::InvalidStatusCode, start + code_start));
        }
        let code = line[code_start..j]
            .iter()
            .fold(0u16, |a, &c| a * 10 + u16::from(c - b'0'));
        if !(100..=699).contains(&code) {
            return Err(ParseError::new(K::InvalidStatusCode, start + code_start));
        }
        let reason_start = (j + 1).min(line.len());
        if line[reason_start..].iter().any(|&c| c == b'\r' || c == 0) {
            return Err(ParseError::new(K::InvalidStartLine, start + reason_start));
        }
        return Ok(StartSpans::Response {
            version: Span::new(start, start + sp1),
            code: StatusCode(code),
            reason: Span::new(start + reason_start, end),
        });
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    let sp1 =
        memchr::memchr(b' ', line).ok_or_else(|| ParseError::new(K::InvalidStartLine, end))?;
    let sp2 =
        memchr::memrchr(b' ', line).ok_or_else(|| ParseError::new(K::InvalidStartLine, end))?;
    let method = &line[..sp1];
    if method.is_empty() || !method.iter().all(|&c| is_token(c)) {
        return Err(ParseError::new(K::InvalidMethod, start));
    }
    if sp2 <= sp1 {
        return Err(ParseError::new(K::InvalidStartLine, start + sp1));
    }
    let version = &line[sp2 + 1..];
    if !is_version(version) {
        return Err(ParseError::new(K::InvalidVersion, start + sp2 + 1));
    }
    let uri = &line[sp1 + 1..sp2];
    let parsed = std::str::from_utf8(uri)
        .ok()
        .and_then(|u| crate::uri::Uri::parse(u).ok());
    let Some(parsed) = parsed else {
        return Err(ParseError::new(K::InvalidRequestUri, start + sp1 + 1));
    };
    let uri_headers = matches!(parsed, crate::uri::Uri::Sip(ref s) if s.headers.is_some());
    Ok(StartSpans::Request {
        method: Method::from_bytes(method),
        method_span: Span::new(start, start + sp1),
        uri: Span::new(start + sp1 + 1, start + sp2),
        version: Span::new(start + sp2 + 1, end),
        uri_headers: Some(uri_headers),
    })
}

#[cfg(test)]
mod tests {
    use crate::{HeaderName, Message, ParseErrorKind as K};

    fn parse(b: &[u8]) -> Result<Message, crate::ParseError> {
        Message::parse_slice(b)
    }

    #[test]
    fn folding_compact_and_case() {
        let m = parse(
            b"OPTIONS sip:a@b SIP/2.0\r\ni: abc\r\nSUBJECT: one\r\n two\r\n\tthree\r\nl: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(m.call_id().unwrap().as_str(), "abc");
        assert_eq!(
            m.header_value(HeaderName::Subject),
            Some(&b"one\r\n two\r\n\tthree"[..])
        );
        assert_eq!(m.headers_by_name("s").count(), 1);
        assert_eq!(m.headers_by_name("call-id").count(), 1);
    }

    #[test]
    fn bare_lf_and_leading_crlf_tolerated() {
        let m = parse(b"\r\n\r\nOPTIONS sip:a@b SIP/2.0\nCall-ID: x\nl: 2\n\nhi").unwrap();
        assert_eq!(m.body(), b"hi");
        assert_eq!(m.start_line(), b"OPTIONS sip:a@b SIP/2.0");
        assert_eq!(
            m.edit().to_bytes(),
            b"OPTIONS sip:a@b SIP/2.0\nCall-ID: x\nl: 2\n\nhi"
        );
        assert_eq!(m.as_bytes(), m.edit().to_bytes());
    }

    #[test]
    fn start_line_errors() {
        let cases: &[(&[u8], K)] = &[
            (b"INVITE sip:a@b\r\n\r\n", K::InvalidStartLine),
            (b"INVITE  sip:a@b SIP/2.0\r\n\r\n", K::InvalidRequestUri),
            (b"INVITE sip:a@b SIP/2.0 \r\n\r\n", K::InvalidVersion),
            (b"INVITE <sip:a@b> SIP/2.0\r\n\r\n", K::InvalidRequestUri),
            (b"SIP/2.0 4294967301 x\r\n\r\n", K::InvalidStatusCode),
            (b"SIP/2.0 99 x\r\n\r\n", K::InvalidStatusCode),
            (b"SIP/2.0 700 x\r\n\r\n", K::InvalidStatusCode),
            (b"SIP/x 200 OK\r\n\r\n", K::InvalidVersion),
            (b"IN\x01VITE sip:a@b SIP/2.0\r\n\r\n", K::InvalidMethod),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nNoColon\r\n\r\n",
                K::InvalidHeaderLine,
            ),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\n: x\r\n\r\n",
                K::InvalidHeaderLine,
            ),
            (b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n", K::Truncated),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nl: -1\r\n\r\n",
                K::InvalidContentLength,
            ),
            (
                b"OPTIONS sip:a@b SIP/2.0\r\nl: 99999999999\r\n\r\n",
                K::InvalidContentLength,
            ),
            (b"\r\n\r\n", K::Empty),
        ];
        for (input, kind) in cases {
            assert_eq!(
                parse(input).unwrap_err().kind,
                *kind,
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn responses() {
        let m = parse(b"SIP/2.0 180 Ringing\r\nl: 0\r\n\r\n").unwrap();
        assert_eq!(m.status().unwrap().as_u16(), 180);
        assert_eq!(m.reason(), Some("Ringing"));
        assert!(m.method().is_none() && m.request_uri().is_none());
        let m = parse(b"SIP/2.0 200\r\nl: 0\r\n\r\n").unwrap();
        assert_eq!(m.reason(), Some(""));
    }

    #[test]
    fn limits() {
        let mut big = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
        for i in 0..300 {
            big.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        big.extend_from_slice(b"\r\n");
        assert_eq!(parse(&big).unwrap_err().kind, K::TooManyHeaders);
        let mut long = b"OPTIONS sip:a@b SIP/2.0\r\nX: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', 70_000));
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parse(&long).unwrap_err().kind, K::TooLarge);
        let mut ok = b"OPTIONS sip:a@b SIP/2.0\r\nX: ".to_vec();
        ok.extend(std::iter::repeat_n(b'a', 60_000));
        ok.extend_from_slice(b"\r\nl: 0\r\n\r\n");
        assert!(parse(&ok).is_ok());
    }
}
