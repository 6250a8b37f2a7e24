//! The SIP message model (RFC 3261 §7): an owned, cheaply clonable [`Message`] that keeps the
//! received bytes (`bytes::Bytes`, so a receive buffer can be frozen and shared without a copy)
//! plus byte ranges for the start line and every header line. Header values are parsed into
//! typed views only when asked (`crate::headers`), so one malformed exotic header never stops
//! routing. Framing (how a message is cut out of a datagram or stream) is `crate::framing`.

use bytes::Bytes;
use bytestring::ByteString;

use crate::error::{HeaderError, HeaderErrorKind, ParseError, ParseErrorKind};
use crate::header_name::HeaderName;
use crate::method::{Method, StatusCode};
use crate::parser::{Head, Limits, RawHeader, Span, StartSpans, parse_head};
use crate::uri::Uri;

/// Request or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request (Request-Line).
    Request,
    /// A response (Status-Line).
    Response,
}

/// One header line as received: its recognised name, raw name and raw value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderField<'a> {
    /// Position in the message's header list (stable for [`crate::Editor`] operations).
    pub index: usize,
    /// The recognised name (`Other` for unknown headers).
    pub name: HeaderName,
    /// The name as written (`v`, `MaX-fOrWaRdS`, `X-Custom`).
    pub raw_name: &'a [u8],
    /// The value as written, without surrounding whitespace; folds (CRLF SP) are kept.
    pub value: &'a [u8],
    /// The message's start line and header section as text ([`Message::text`]).
    head: &'a str,
}

impl<'a> HeaderField<'a> {
    /// The value as text, if it is UTF-8.
    pub fn value_str(&self) -> Option<&'a str> {
        text_within(self.head, self.value)
    }

    /// The raw name as text (header names are tokens, hence ASCII).
    pub fn name_str(&self) -> &'a str {
        std::str::from_utf8(self.raw_name).unwrap_or("")
    }
}

/// A parsed SIP request or response owning its bytes.
///
/// Cloning is cheap (a refcount and the header index). The bytes are exactly the message:
/// trailing octets of a datagram or the next message of a stream are not included.
#[derive(Clone)]
pub struct Message {
    buf: Bytes,
    head: Head,
    /// The start line and header section (the same bytes as `buf`'s prefix, shared), checked
    /// to be UTF-8 once when the message was built; empty when they are not. Text views of
    /// header values and the start line are then a char-boundary check instead of a UTF-8
    /// pass each (`core::str::from_utf8` was 8.9 % of the instructions of a proxied call in
    /// `benches/call.rs`, 2.7 % of the node's CPU at 400 calls/s: dozens of calls per message).
    text: ByteString,
}

/// `bytes` as text: when they lie within `head` (text checked once), a char-boundary check
/// (a slice of UTF-8 text is UTF-8 exactly when both its ends are char boundaries), else a
/// UTF-8 check of `bytes`.
fn text_within<'a>(head: &'a str, bytes: &'a [u8]) -> Option<&'a str> {
    let off = (bytes.as_ptr() as usize).wrapping_sub(head.as_ptr() as usize);
    if off <= head.len() && bytes.len() <= head.len() - off {
        head.get(off..off + bytes.len())
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("start_line", &String::from_utf8_lossy(self.start_line()))
            .field("headers", &self.head.headers.len())
            .field("body_len", &self.body().len())
            .finish()
    }
}

impl Message {
    /// Parse one message from a datagram (RFC 3261 §18.3): the body is `Content-Length` octets
    /// (octets beyond it are ignored), or the rest of the datagram when Content-Length is
    /// absent. A Content-Length larger than what follows the header section is an error.
    pub fn parse(buf: impl Into<Bytes>) -> Result<Self, ParseError> {
        Self::parse_with(buf.into(), &Limits::default())
    }

    /// [`Message::parse`] from a borrowed slice (copies it once into an owned buffer).
    pub fn parse_slice(buf: &[u8]) -> Result<Self, ParseError> {
        Self::parse_with(Bytes::copy_from_slice(buf), &Limits::default())
    }

    /// [`Message::parse`] with explicit limits.
    pub fn parse_with(buf: Bytes, limits: &Limits) -> Result<Self, ParseError> {
        if buf.len() > limits.max_message {
            return Err(ParseError::new(
                ParseErrorKind::TooLarge,
                limits.max_message,
            ));
        }
        let mut buf = buf;
        let mut head = parse_head(&buf, limits)?;
        if head.start_offset > 0 {
            // CRLFs before the start line (§7.5) are not part of the message: drop them so the
            // message bytes start at the start line (rare; reparse with rebased offsets).
            buf = buf.slice(head.start_offset as usize..);
            head = parse_head(&buf, limits)?;
        }
        let body_start = head.body_start as usize;
        let end = match head.content_length {
            Some(cl) => {
                let end = body_start + cl as usize;
                if end > buf.len() {
                    return Err(ParseError::new(ParseErrorKind::BodyTruncated, buf.len()));
                }
                end
            }
            None => buf.len(),
        };
        // Slicing a Vec-backed `Bytes` promotes it to a shared allocation; skip it when the
        // datagram holds exactly one message (the common case).
        let buf = if end == buf.len() {
            buf
        } else {
            buf.slice(..end)
        };
        Ok(Self::from_parts(buf, head))
    }

    /// Build from a buffer holding exactly one message and its parsed head.
    pub(crate) fn from_parts(buf: Bytes, head: Head) -> Self {
        let end = (head.headers_end as usize).min(buf.len());
        let text = ByteString::try_from(buf.slice(..end)).unwrap_or_default();
        Self { buf, head, text }
    }

    /// The start line and header section as text (empty when they are not UTF-8).
    fn head_text(&self) -> &str {
        &self.text
    }

    /// `bytes` (a slice of this message, such as a header value) as text, if it is UTF-8:
    /// within the start line and header section a char-boundary check, elsewhere a UTF-8
    /// check.
    pub fn text<'a>(&'a self, bytes: &'a [u8]) -> Option<&'a str> {
        text_within(self.head_text(), bytes)
    }

    /// The message bytes (start line to end of body), exactly as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The shared buffer (cheap clone).
    pub fn bytes(&self) -> &Bytes {
        &self.buf
    }

    #[inline]
    pub(crate) fn slice(&self, s: Span) -> &[u8] {
        &self.buf[s.range()]
    }

    pub(crate) fn head(&self) -> &Head {
        &self.head
    }

    /// Request or response.
    pub fn kind(&self) -> Kind {
        match self.head.start {
            StartSpans::Request { .. } => Kind::Request,
            StartSpans::Response { .. } => Kind::Response,
        }
    }

    /// Is this a request?
    pub fn is_request(&self) -> bool {
        self.kind() == Kind::Request
    }

    /// Is this a response?
    pub fn is_response(&self) -> bool {
        self.kind() == Kind::Response
    }

    /// The request method (`None` for a response).
    pub fn method(&self) -> Option<Method> {
        match self.head.start {
            StartSpans::Request { method, .. } => Some(method),
            StartSpans::Response { .. } => None,
        }
    }

    /// The request method as written (`None` for a response).
    pub fn method_str(&self) -> Option<&str> {
        match self.head.start {
            StartSpans::Request { method_span, .. } => self.text(self.slice(method_span)),
            StartSpans::Response { .. } => None,
        }
    }

    /// The Request-URI as written (`None` for a response).
    pub fn request_uri_str(&self) -> Option<&str> {
        match self.head.start {
            StartSpans::Request { uri, .. } => self.text(self.slice(uri)),
            StartSpans::Response { .. } => None,
        }
    }

    /// The parsed Request-URI (validated by the parser, so `None` only for a response).
    pub fn request_uri(&self) -> Option<Uri<'_>> {
        self.request_uri_str().and_then(|u| Uri::parse(u).ok())
    }

    /// What the parser found when it checked the Request-URI of a received request: its
    /// scheme as written and whether it is a SIP/SIPS URI with headers. `None` for a response,
    /// a Request-URI that is not text, or a start line written without that check (then
    /// [`Self::request_uri`] parses it).
    pub(crate) fn request_uri_checked(&self) -> Option<(&str, bool)> {
        match self.head.start {
            StartSpans::Request {
                uri_headers: Some(headers),
                ..
            } => {
                let uri = self.request_uri_str()?;
                let scheme = uri.split_once(':').map_or(uri, |(s, _)| s);
                Some((scheme, headers))
            }
            _ => None,
        }
    }

    /// The status code (`None` for a request).
    pub fn status(&self) -> Option<StatusCode> {
        match self.head.start {
            StartSpans::Response { code, .. } => Some(code),
            StartSpans::Request { .. } => None,
        }
    }

    /// The reason phrase bytes (`None` for a request; may be empty or UTF-8).
    pub fn reason_bytes(&self) -> Option<&[u8]> {
        match self.head.start {
            StartSpans::Response { reason, .. } => Some(self.slice(reason)),
            StartSpans::Request { .. } => None,
        }
    }

    /// The reason phrase as text (`None` for a request or non-UTF-8 phrase).
    pub fn reason(&self) -> Option<&str> {
        self.reason_bytes().and_then(|r| self.text(r))
    }

    /// The SIP-Version as written (`SIP/2.0`).
    pub fn version(&self) -> &str {
        let v = match self.head.start {
            StartSpans::Request { version, .. } | StartSpans::Response { version, .. } => version,
        };
        self.text(self.slice(v)).unwrap_or("")
    }

    /// Is the version SIP/2.0?
    pub fn is_sip_2_0(&self) -> bool {
        self.version().eq_ignore_ascii_case("SIP/2.0")
    }

    /// The start line without its line end.
    pub fn start_line(&self) -> &[u8] {
        let s = self.head.start_offset as usize;
        let mut e = self.head.headers_start as usize - 1;
        if e > s && self.buf[e - 1] == b'\r' {
            e -= 1;
        }
        &self.buf[s..e]
    }

    /// The body (may be empty; opaque, possibly binary).
    pub fn body(&self) -> &[u8] {
        &self.buf[self.head.body_start as usize..]
    }

    /// The Content-Length value, if the header is present (validated by the parser).
    pub fn content_length(&self) -> Option<u32> {
        self.head.content_length
    }

    /// Number of header lines.
    pub fn header_count(&self) -> usize {
        self.head.headers.len()
    }

    fn field(&self, index: usize, h: &RawHeader) -> HeaderField<'_> {
        HeaderField {
            index,
            name: h.name,
            raw_name: self.slice(h.name_span),
            value: self.slice(h.value),
            head: self.head_text(),
        }
    }

    /// All header lines in order.
    pub fn headers(&self) -> impl Iterator<Item = HeaderField<'_>> + '_ {
        self.head
            .headers
            .iter()
            .enumerate()
            .map(|(i, h)| self.field(i, h))
    }

    /// The header line at `index`.
    pub fn header_at(&self, index: usize) -> Option<HeaderField<'_>> {
        self.head.headers.get(index).map(|h| self.field(index, h))
    }

    /// Header lines with a recognised name (for `HeaderName::Other` use [`Self::headers_by_name`]).
    pub fn headers_named(&self, name: HeaderName) -> impl Iterator<Item = HeaderField<'_>> + '_ {
        self.head
            .headers
            .iter()
            .enumerate()
            .filter(move |(_, h)| h.name == name)
            .map(|(i, h)| self.field(i, h))
    }

    /// The first header line with a recognised name.
    pub fn header(&self, name: HeaderName) -> Option<HeaderField<'_>> {
        self.headers_named(name).next()
    }

    /// The first value (raw bytes) of a recognised header.
    pub fn header_value(&self, name: HeaderName) -> Option<&[u8]> {
        self.header(name).map(|f| f.value)
    }

    /// Header lines by textual name, any case, long or compact form (`"Via"`, `"v"`,
    /// `"X-Foo"`).
    pub fn headers_by_name<'s>(
        &'s self,
        name: &'s str,
    ) -> impl Iterator<Item = HeaderField<'s>> + 's {
        let known = HeaderName::from_name(name);
        self.headers().filter(move |f| {
            if known == HeaderName::Other {
                f.name == HeaderName::Other && f.raw_name.eq_ignore_ascii_case(name.as_bytes())
            } else {
                f.name == known
            }
        })
    }

    /// The first value of a header by textual name, as text.
    pub fn header_str<'s>(&'s self, name: &str) -> Option<&'s str> {
        let known = HeaderName::from_name(name);
        self.headers()
            .find(|f| {
                if known == HeaderName::Other {
                    f.name == HeaderName::Other && f.raw_name.eq_ignore_ascii_case(name.as_bytes())
                } else {
                    f.name == known
                }
            })
            .and_then(|f| f.value_str())
    }

    /// How many header lines carry `name`.
    pub fn count_of(&self, name: HeaderName) -> usize {
        self.head.headers.iter().filter(|h| h.name == name).count()
    }

    /// The first value of `name` as text; `Missing` / `NotUtf8` errors.
    pub(crate) fn required_str(&self, name: HeaderName) -> Result<&str, HeaderError> {
        let v = self
            .header_value(name)
            .ok_or_else(|| HeaderError::new(name, HeaderErrorKind::Missing))?;
        self.text(v)
            .ok_or_else(|| HeaderError::new(name, HeaderErrorKind::NotUtf8))
    }

    /// The first value of `name` as text if present.
    pub(crate) fn optional_str(&self, name: HeaderName) -> Result<Option<&str>, HeaderError> {
        match self.header_value(name) {
            None => Ok(None),
            Some(v) => self
                .text(v)
                .map(Some)
                .ok_or_else(|| HeaderError::new(name, HeaderErrorKind::NotUtf8)),
        }
    }

    /// Start an edit of this message (see [`crate::Editor`]).
    pub fn edit(&self) -> crate::edit::Editor<'_> {
        crate::edit::Editor::new(self)
    }
}

/// Writes a message and indexes it while writing, so that what it builds needs no parse: the
/// serializer of [`crate::Editor`] (received bytes plus edits) and of the messages the
/// transaction layer generates. Names and values are written as given (callers keep CR/LF out
/// of them).
pub(crate) struct Builder {
    buf: Vec<u8>,
    start: Option<StartSpans>,
    headers: Vec<RawHeader>,
    headers_start: u32,
    content_length: Option<u32>,
}

impl Builder {
    /// An empty builder with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize, headers: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
            start: None,
            headers: Vec::with_capacity(headers),
            headers_start: 0,
            content_length: None,
        }
    }

    fn span(start: usize, end: usize) -> Span {
        Span::new(start, end)
    }

    /// `METHOD SP uri SP version CRLF`.
    /// `uri_headers`: the caller's parse of `uri` ([`StartSpans::Request`]), if it made one.
    pub(crate) fn request_line(
        &mut self,
        method: &[u8],
        uri: &[u8],
        version: &[u8],
        uri_headers: Option<bool>,
    ) {
        let m0 = self.buf.len();
        self.buf.extend_from_slice(method);
        let u0 = self.buf.len() + 1;
        self.buf.push(b' ');
        self.buf.extend_from_slice(uri);
        let v0 = self.buf.len() + 1;
        self.buf.push(b' ');
        self.buf.extend_from_slice(version);
        let v1 = self.buf.len();
        self.buf.extend_from_slice(b"\r\n");
        self.start = Some(StartSpans::Request {
            method: Method::from_bytes(method),
            method_span: Self::span(m0, u0 - 1),
            uri: Self::span(u0, v0 - 1),
            version: Self::span(v0, v1),
            uri_headers,
        });
        self.headers_start = self.buf.len() as u32;
    }

    /// A start line copied from `msg` as it is.
    pub(crate) fn start_line_of(&mut self, msg: &Message) {
        let head = msg.head();
        let from = head.start_offset as usize;
        let at = self.buf.len();
        self.buf
            .extend_from_slice(&msg.as_bytes()[from..head.headers_start as usize]);
        let shift = |s: Span| Self::span(s.start as usize - from + at, s.end as usize - from + at);
        self.start = Some(match head.start {
            StartSpans::Request {
                method,
                method_span,
                uri,
                version,
                uri_headers,
            } => StartSpans::Request {
                method,
                method_span: shift(method_span),
                uri: shift(uri),
                version: shift(version),
                uri_headers,
            },
            StartSpans::Response {
                version,
                code,
                reason,
            } => StartSpans::Response {
                version: shift(version),
                code,
                reason: shift(reason),
            },
        });
        self.headers_start = self.buf.len() as u32;
    }

    fn note(&mut self, name: HeaderName, value: Span) {
        if name == HeaderName::ContentLength {
            self.content_length = crate::syntax::parse_digits(&self.buf[value.range()])
                .and_then(|n| u32::try_from(n).ok());
        }
    }

    /// `name: value CRLF`, the name already recognised.
    pub(crate) fn header_named(&mut self, known: HeaderName, name: &[u8], value: &[u8]) {
        let n0 = self.buf.len();
        self.buf.extend_from_slice(name);
        let n1 = self.buf.len();
        self.buf.extend_from_slice(b": ");
        let v0 = self.buf.len();
        self.buf.extend_from_slice(value);
        let v1 = self.buf.len();
        self.buf.extend_from_slice(b"\r\n");
        let value = Self::span(v0, v1);
        self.headers.push(RawHeader {
            name: known,
            name_span: Self::span(n0, n1),
            value,
            line_end: self.buf.len() as u32,
        });
        self.note(known, value);
    }

    /// A whole header line of `msg` copied as it is.
    pub(crate) fn line_of(&mut self, msg: &Message, h: &RawHeader) {
        let from = h.name_span.start as usize;
        let at = self.buf.len();
        self.buf
            .extend_from_slice(&msg.as_bytes()[from..h.line_end as usize]);
        let shift = |s: Span| Self::span(s.start as usize - from + at, s.end as usize - from + at);
        let value = shift(h.value);
        self.headers.push(RawHeader {
            name: h.name,
            name_span: shift(h.name_span),
            value,
            line_end: (h.line_end as usize - from + at) as u32,
        });
        self.note(h.name, value);
    }

    /// A whole header line written elsewhere (`Name: value CRLF`, as [`Self::header`] writes
    /// it) copied in.
    pub(crate) fn raw_line(&mut self, line: &[u8]) {
        let colon = line.iter().position(|&c| c == b':').unwrap_or(0);
        let name = &line[..colon];
        let mut v0 = colon + 1;
        while v0 < line.len() && (line[v0] == b' ' || line[v0] == b'\t') {
            v0 += 1;
        }
        let mut v1 = line.len();
        while v1 > v0 && matches!(line[v1 - 1], b'\r' | b'\n' | b' ' | b'\t') {
            v1 -= 1;
        }
        let at = self.buf.len();
        self.buf.extend_from_slice(line);
        let known = HeaderName::from_bytes(name);
        let value = Self::span(at + v0, at + v1);
        self.headers.push(RawHeader {
            name: known,
            name_span: Self::span(at, at + colon),
            value,
            line_end: self.buf.len() as u32,
        });
        self.note(known, value);
    }

    /// End the header section with `blank` (`\r\n`, or `\n` as received) and add `body`.
    pub(crate) fn finish(mut self, blank: &[u8], body: &[u8]) -> Message {
        let headers_end = self.buf.len() as u32;
        self.buf.extend_from_slice(blank);
        let body_start = self.buf.len() as u32;
        self.buf.extend_from_slice(body);
        let start = self.start.unwrap_or_else(|| StartSpans::Response {
            version: Span::default(),
            code: StatusCode(0),
            reason: Span::default(),
        });
        let head = Head {
            start_offset: 0,
            start,
            headers: self.headers,
            headers_start: self.headers_start,
            headers_end,
            body_start,
            content_length: self.content_length,
        };
        Message::from_parts(Bytes::from(self.buf), head)
    }
}

#[cfg(test)]
mod text_tests {
    use super::{HeaderName, Message};

    const UTF8: &[u8] = "OPTIONS sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
        From: \"Zoë\" <sip:zoe@example.com>;tag=1\r\n\
        To: <sip:bob@example.com>\r\nCall-ID: t1\r\nCSeq: 1 OPTIONS\r\n\r\n"
        .as_bytes();

    #[test]
    fn text_views_of_a_utf8_head_match_a_utf8_check_of_each_value() {
        let m = Message::parse(UTF8).expect("parses");
        for f in m.headers() {
            assert_eq!(
                f.value_str(),
                std::str::from_utf8(f.value).ok(),
                "{:?}",
                f.name
            );
        }
        assert_eq!(
            m.header_str("From"),
            Some("\"Zoë\" <sip:zoe@example.com>;tag=1")
        );
        assert_eq!(m.method_str(), Some("OPTIONS"));
        assert!(m.is_sip_2_0());
        // A slice that cuts a character in two is not text, as a UTF-8 check says.
        let from = m.header_value(HeaderName::From).expect("From");
        let cut = from.iter().position(|b| *b >= 0x80).expect("ë") + 1;
        assert_eq!(m.text(&from[..cut]), None);
        assert_eq!(m.text(&from[..cut - 1]), Some("\"Zo"));
        // Bytes that are not the message's own are checked as they are.
        assert_eq!(m.text(b"elsewhere"), Some("elsewhere"));
    }

    #[test]
    fn a_head_that_is_not_utf8_is_checked_value_by_value() {
        let mut raw = UTF8.to_vec();
        let at = raw.windows(2).position(|w| w == "ë".as_bytes()).expect("ë");
        raw[at] = 0xEB; // Latin-1 ë: not UTF-8
        raw.remove(at + 1);
        let m = Message::parse(raw).expect("parses");
        assert_eq!(m.header_str("From"), None);
        assert_eq!(m.header_str("Call-ID"), Some("t1"));
        assert!(
            m.header(HeaderName::From)
                .is_some_and(|f| f.value_str().is_none())
        );
        assert_eq!(m.method_str(), Some("OPTIONS"));
    }
}
