//! The SIP message the script layer works on: the SIP core's parsed message (the received
//! bytes, shared, plus the header index the core built while parsing) and an edit overlay.
//!
//! RFC 3261 §7 (message shape), §7.3.1 (folding), §7.3.3 (compact header forms). Getters read
//! the view (no copy of a header until Python asks for it); setters record edits in the
//! overlay (the header list as original line indexes plus new or rewritten lines, a new
//! Request-URI, a new body). An unchanged message goes back to the proxy as the very message it
//! came from; an edited one is written once by the core's [`siphon_sip::Editor`] (original
//! lines copied verbatim, indexed while written: no re-parse, [`SipMessage::to_message`]).
//! [`SipMessage::parse`] builds one from text (the test driver, the SDK harness) and
//! [`SipMessage::to_bytes`] writes the normalised text form those tools compare.

use siphon_sip::{EditError, HeaderName, Message};
use thiserror::Error;

/// Why a byte string is not a SIP message we can script.
#[derive(Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseError {
    /// No CRLF-terminated start line.
    #[error("missing start line")]
    NoStartLine,
    /// The start line is neither `METHOD uri SIP/2.0` nor `SIP/2.0 code reason`.
    #[error("malformed start line")]
    BadStartLine,
    /// A header line without a colon at this byte offset.
    #[error("malformed header line at byte {offset}")]
    BadHeader {
        /// Byte offset of the line.
        offset: usize,
    },
    /// The message is not UTF-8 in its head.
    #[error("message head is not UTF-8")]
    NotUtf8,
    /// The text has the message's shape but the SIP core's parser refuses it.
    #[error("not a SIP message: {0:?}")]
    Sip(siphon_sip::ParseErrorKind),
}

/// The first line of a SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD Request-URI SIP/2.0`.
    Request {
        /// Method token, e.g. `INVITE`.
        method: String,
        /// Request-URI as text.
        uri: String,
    },
    /// `SIP/2.0 code reason`.
    Response {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
    },
}

/// A SIP request or response as the script sees it: the core's parsed message plus edits.
/// Cloning shares the bytes (a refcount and the header index).
#[derive(Clone)]
pub struct SipMessage {
    base: Message,
    /// Values of folded header lines with the line breaks as spaces (§7.3.1), by line index;
    /// empty (no allocation) for the usual message without folds.
    unfolded: Vec<(u32, Box<str>)>,
    edits: Option<Box<Overlay>>,
}

/// What a script changed; `lines` is the whole header list once anything changed.
#[derive(Clone, Debug, Default)]
struct Overlay {
    lines: Vec<Line>,
    ruri: Option<Box<str>>,
    body: Option<Vec<u8>>,
}

/// One header line of an edited message. Original lines keep their order (edits never move
/// them), which is what lets the core's `Editor` write the result.
#[derive(Clone, Debug)]
enum Line {
    /// Original line `i`, unchanged.
    Orig(u32),
    /// Original line `i` (its name as written) with a new value.
    Value(u32, Box<str>),
    /// A line the script added.
    New {
        known: HeaderName,
        name: Box<str>,
        value: Box<str>,
    },
}

/// One header line as the script reads it.
#[derive(Debug, Clone, Copy)]
struct Field<'a> {
    known: HeaderName,
    /// The name as written, compact forms expanded.
    name: &'a str,
    value: &'a str,
}

impl Field<'_> {
    /// `name` like [`siphon_sip::Message::headers_by_name`]: any case, long or compact form.
    fn is(&self, known: HeaderName, name: &str) -> bool {
        if known == HeaderName::Other {
            self.known == HeaderName::Other && name_eq(self.name, name)
        } else {
            self.known == known
        }
    }
}

/// Expand an RFC 3261 §7.3.3 compact header name; other names are returned as given.
pub fn canonical_name(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'i' => "Call-ID",
        b'm' => "Contact",
        b'e' => "Content-Encoding",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'f' => "From",
        b's' => "Subject",
        b'k' => "Supported",
        b't' => "To",
        b'v' => "Via",
        b'o' => "Event",
        b'r' => "Refer-To",
        _ => name,
    }
}

fn name_eq(a: &str, b: &str) -> bool {
    canonical_name(a).eq_ignore_ascii_case(canonical_name(b))
}

impl SipMessage {
    /// Parse a complete message from text (head + body as framed by the transport). The SIP
    /// core's parser reads it; text it refuses but that has the shape of a message (no blank
    /// line after the head, a Content-Length that does not match) is normalised first, as the
    /// test driver and the SDK harness write messages by hand.
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        if let Ok(m) = Message::parse_slice(bytes) {
            return Self::from_message(m);
        }
        let normal = Legacy::parse(bytes)?.to_bytes();
        let m = Message::parse(normal).map_err(|e| ParseError::Sip(e.kind))?;
        Self::from_message(m)
    }

    /// The script's view of a message the SIP core parsed: no header is copied.
    pub fn from_message(base: Message) -> Result<Self, ParseError> {
        let ok = match (base.method_str(), base.request_uri_str(), base.status()) {
            (Some(m), Some(u), _) => !m.is_empty() && !u.is_empty(),
            (_, _, Some(_)) => true,
            _ => false,
        };
        if !ok {
            return Err(ParseError::BadStartLine);
        }
        let bytes = base.as_bytes();
        let head = &bytes[..bytes.len() - base.body().len()];
        if std::str::from_utf8(head).is_err() {
            return Err(ParseError::NotUtf8);
        }
        let mut unfolded = Vec::new();
        for f in base.headers() {
            if f.value.contains(&b'\n') {
                let v = f.value_str().ok_or(ParseError::NotUtf8)?;
                let v: Vec<&str> = v.split("\r\n").map(str::trim).collect();
                unfolded.push((f.index as u32, v.join(" ").into_boxed_str()));
            }
        }
        Ok(Self {
            base,
            unfolded,
            edits: None,
        })
    }

    /// Convert the SIP core's parsed message (`siphon_sip::Message`) into the script view.
    pub fn from_sip(m: &Message) -> Result<Self, ParseError> {
        Self::from_message(m.clone())
    }

    /// The message as received (before any edit of the script).
    pub fn original(&self) -> &Message {
        &self.base
    }

    /// Has the script changed anything?
    pub fn is_edited(&self) -> bool {
        self.edits.is_some()
    }

    /// The message to hand back to the SIP core: the received one itself when unchanged,
    /// else the received bytes plus the edits, written once by the core's `Editor` (indexed
    /// while written, never re-parsed). Content-Length follows the body.
    pub fn to_message(&self) -> Result<Message, EditError> {
        let Some(o) = &self.edits else {
            return Ok(self.base.clone());
        };
        let n = self.base.header_count();
        let mut ed = self.base.edit();
        let mut present = vec![false; n];
        for l in &o.lines {
            if let Line::Orig(i) | Line::Value(i, _) = l
                && let Some(p) = present.get_mut(*i as usize)
            {
                *p = true;
            }
        }
        for (i, p) in present.iter().enumerate() {
            if !p {
                ed.remove_at(i);
            }
        }
        for (pos, l) in o.lines.iter().enumerate() {
            match l {
                Line::Orig(_) => {}
                Line::Value(i, v) => {
                    ed.set_value_at(*i as usize, v)?;
                }
                Line::New { name, value, .. } => {
                    // Before the next original line still present, else at the end.
                    let anchor = o.lines[pos + 1..]
                        .iter()
                        .find_map(|x| match x {
                            Line::Orig(i) | Line::Value(i, _) => Some(*i as usize),
                            Line::New { .. } => None,
                        })
                        .unwrap_or(n);
                    ed.insert_at(anchor, name, value)?;
                }
            }
        }
        if let Some(u) = &o.ruri {
            ed.set_request_uri(u)?;
        }
        if let Some(b) = &o.body {
            ed.set_body(b.clone());
        }
        ed.ensure_content_length();
        Ok(ed.to_message())
    }

    /// Serialise as normalised text: `Name: value` lines (folds joined), Content-Length
    /// recomputed and written last. What the test driver reports.
    pub fn to_bytes(&self) -> Vec<u8> {
        let body = self.body();
        let mut out = Vec::with_capacity(256 + body.len());
        let push = |out: &mut Vec<u8>, parts: &[&[u8]]| {
            for p in parts {
                out.extend_from_slice(p);
            }
        };
        match (self.base.status(), self.ruri()) {
            (Some(s), _) => {
                let code = s.0.to_string();
                let reason = self.reason().as_bytes();
                push(
                    &mut out,
                    &[b"SIP/2.0 ", code.as_bytes(), b" ", reason, b"\r\n"],
                );
            }
            (None, uri) => {
                let method = self.base.method_str().unwrap_or("").as_bytes();
                push(&mut out, &[method, b" ", uri.as_bytes(), b" SIP/2.0\r\n"]);
            }
        }
        for f in self.fields() {
            if f.known == HeaderName::ContentLength {
                continue;
            }
            push(
                &mut out,
                &[f.name.as_bytes(), b": ", f.value.as_bytes(), b"\r\n"],
            );
        }
        let cl = body.len().to_string();
        push(
            &mut out,
            &[b"Content-Length: ", cl.as_bytes(), b"\r\n\r\n", body],
        );
        out
    }

    /// Method of a request, or the CSeq method of a response.
    pub fn method(&self) -> &str {
        match self.base.method_str() {
            Some(m) => m,
            None => self.cseq().map_or("", |(_, m)| m),
        }
    }

    /// Request-URI (empty for responses).
    pub fn ruri(&self) -> &str {
        match self.edits.as_ref().and_then(|o| o.ruri.as_deref()) {
            Some(u) => u,
            None => self.base.request_uri_str().unwrap_or(""),
        }
    }

    /// Status code of a response (0 for requests).
    pub fn status(&self) -> u16 {
        self.base.status().map_or(0, |s| s.0)
    }

    /// Reason phrase of a response (empty for requests).
    pub fn reason(&self) -> &str {
        self.base.reason().unwrap_or("")
    }

    /// The start line as text.
    pub fn start(&self) -> StartLine {
        match self.base.status() {
            Some(s) => StartLine::Response {
                status: s.0,
                reason: self.reason().to_owned(),
            },
            None => StartLine::Request {
                method: self.method().to_owned(),
                uri: self.ruri().to_owned(),
            },
        }
    }

    /// The body (may be empty).
    pub fn body(&self) -> &[u8] {
        match self.edits.as_ref().and_then(|o| o.body.as_deref()) {
            Some(b) => b,
            None => self.base.body(),
        }
    }

    fn orig_field(&self, i: u32) -> Option<Field<'_>> {
        let f = self.base.header_at(i as usize)?;
        let value = match self.unfolded.iter().find(|(j, _)| *j == i) {
            Some((_, v)) => v,
            None => head_text(f.value),
        };
        Some(Field {
            known: f.name,
            name: canonical_name(head_text(f.raw_name)),
            value,
        })
    }

    /// Whether line `l` is a `name` line (`known` = `HeaderName::from_name(name)`), reading
    /// the name only.
    fn line_is(&self, l: &Line, known: HeaderName, name: &str) -> bool {
        let (k, n) = match l {
            Line::Orig(i) | Line::Value(i, _) => match self.base.header_at(*i as usize) {
                Some(f) => (f.name, head_text(f.raw_name)),
                None => return false,
            },
            Line::New { known, name, .. } => (*known, &**name),
        };
        if known == HeaderName::Other {
            k == HeaderName::Other && name_eq(n, name)
        } else {
            k == known
        }
    }

    fn field_of<'a>(&'a self, l: &'a Line) -> Option<Field<'a>> {
        match l {
            Line::Orig(i) => self.orig_field(*i),
            Line::Value(i, v) => self.orig_field(*i).map(|f| Field { value: v, ..f }),
            Line::New { known, name, value } => Some(Field {
                known: *known,
                name,
                value,
            }),
        }
    }

    /// The header lines as they stand, in order.
    fn fields(&self) -> Box<dyn Iterator<Item = Field<'_>> + '_> {
        match &self.edits {
            None => {
                Box::new((0..self.base.header_count() as u32).filter_map(|i| self.orig_field(i)))
            }
            Some(o) => Box::new(o.lines.iter().filter_map(|l| self.field_of(l))),
        }
    }

    /// The header lines as (name, value), in order: names as written with compact forms
    /// expanded, folded values joined.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.fields().map(|f| (f.name, f.value))
    }

    /// First value of a header, case-insensitive, compact forms understood.
    pub fn header(&self, name: &str) -> Option<&str> {
        let known = HeaderName::from_name(name);
        if self.edits.is_none() && self.unfolded.is_empty() && known != HeaderName::Other {
            return self.base.header(known).map(|f| head_text(f.value));
        }
        self.fields().find(|f| f.is(known, name)).map(|f| f.value)
    }

    /// Every value of a header, in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let known = HeaderName::from_name(name);
        // Unedited, unfolded, a known name: the parser's index by name, no line read as a
        // Field (the usual `hdrs("Route")` of an in-dialog request).
        let indexed =
            self.edits.is_none() && self.unfolded.is_empty() && known != HeaderName::Other;
        let fast = indexed.then(|| self.base.headers_named(known).map(|f| head_text(f.value)));
        let slow = (!indexed).then(|| {
            self.fields()
                .filter(move |f| f.is(known, name))
                .map(|f| f.value)
        });
        fast.into_iter().flatten().chain(slow.into_iter().flatten())
    }

    fn overlay(&mut self) -> &mut Overlay {
        let n = self.base.header_count() as u32;
        self.edits.get_or_insert_with(|| {
            Box::new(Overlay {
                lines: (0..n).map(Line::Orig).collect(),
                ..Overlay::default()
            })
        })
    }

    /// Positions (in the current header list) of the lines named `name` (names compared, no
    /// value read; an unedited message is read as its original lines, no overlay made).
    fn positions(&self, name: &str) -> Vec<usize> {
        let known = HeaderName::from_name(name);
        match &self.edits {
            Some(o) => o
                .lines
                .iter()
                .enumerate()
                .filter(|(_, l)| self.line_is(l, known, name))
                .map(|(i, _)| i)
                .collect(),
            None => (0..self.base.header_count() as u32)
                .filter(|i| self.line_is(&Line::Orig(*i), known, name))
                .map(|i| i as usize)
                .collect(),
        }
    }

    /// Replace every value of `name` with one value (appended if absent).
    pub fn set_header(&mut self, name: &str, value: &str) {
        let at = self.positions(name);
        let o = self.overlay();
        let Some(&first) = at.first() else {
            o.lines.push(new_line(name, value));
            return;
        };
        for &i in at[1..].iter().rev() {
            o.lines.remove(i);
        }
        o.lines[first] = match &o.lines[first] {
            Line::Orig(i) | Line::Value(i, _) => Line::Value(*i, value.into()),
            Line::New { known, name, .. } => Line::New {
                known: *known,
                name: name.clone(),
                value: value.into(),
            },
        };
    }

    /// Append a header line at the end of the header section.
    pub fn add_header(&mut self, name: &str, value: &str) {
        self.overlay().lines.push(new_line(name, value));
    }

    /// Remove every value of `name`; returns whether one existed.
    pub fn remove_header(&mut self, name: &str) -> bool {
        let at = self.positions(name);
        if at.is_empty() {
            return false;
        }
        let o = self.overlay();
        for &i in at.iter().rev() {
            o.lines.remove(i);
        }
        !at.is_empty()
    }

    /// Remove every line whose name starts with `prefix` (lower case); returns how many.
    pub fn remove_prefix(&mut self, prefix: &str) -> usize {
        self.overlay();
        let Some(o) = &self.edits else {
            return 0;
        };
        let keep: Vec<bool> = o
            .lines
            .iter()
            .map(|l| {
                self.field_of(l)
                    .is_none_or(|f| !f.name.to_ascii_lowercase().starts_with(prefix))
            })
            .collect();
        let removed = keep.iter().filter(|k| !**k).count();
        let mut it = keep.into_iter();
        self.overlay().lines.retain(|_| it.next().unwrap_or(true));
        removed
    }

    /// Prepend a header value (e.g. Record-Route, Route): above the first line of that name,
    /// else at the end.
    pub fn prepend_header(&mut self, name: &str, value: &str) {
        let at = self.positions(name).first().copied();
        let o = self.overlay();
        let at = at.unwrap_or(o.lines.len());
        o.lines.insert(at, new_line(name, value));
    }

    /// Replace the Request-URI (no-op on responses).
    pub fn set_ruri(&mut self, new: &str) {
        if self.base.is_request() {
            self.overlay().ruri = Some(new.into());
        }
    }

    /// Replace the body (Content-Length follows when the message is written).
    pub fn set_body(&mut self, body: Vec<u8>) {
        self.overlay().body = Some(body);
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let v = self.header("CSeq")?;
        let mut it = v.split_whitespace();
        let n = it.next()?.parse().ok()?;
        Some((n, it.next().unwrap_or("")))
    }
}

/// A header name or value of the message's head as text. [`SipMessage::from_message`] (the
/// only constructor) refused a head that is not UTF-8, so this does not check it again.
fn head_text(b: &[u8]) -> &str {
    debug_assert!(std::str::from_utf8(b).is_ok());
    // SAFETY: `b` is a header name or value of a message whose whole head `from_message`
    // found UTF-8. The parser's slices start after an ASCII byte (line start, `:`, SP/HT)
    // and end at an ASCII byte (`:`, SP/HT, CR/LF); in valid UTF-8 every position next to an
    // ASCII byte is a character boundary, so the slice is valid UTF-8 too.
    unsafe { std::str::from_utf8_unchecked(b) }
}

fn new_line(name: &str, value: &str) -> Line {
    Line::New {
        known: HeaderName::from_name(name),
        name: name.into(),
        value: value.into(),
    }
}

impl PartialEq for SipMessage {
    fn eq(&self, other: &Self) -> bool {
        self.start() == other.start()
            && self.body() == other.body()
            && self.headers().eq(other.headers())
    }
}

impl Eq for SipMessage {}

impl std::fmt::Debug for SipMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SipMessage")
            .field("start", &self.start())
            .field("headers", &self.headers().collect::<Vec<_>>())
            .field("body_len", &self.body().len())
            .field("edited", &self.is_edited())
            .finish()
    }
}

/// The lenient text reader kept for hand-written messages (see [`SipMessage::parse`]).
struct Legacy {
    start: StartLine,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Legacy {
    fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let head_end = find(bytes, b"\r\n\r\n");
        let (head, body) = match head_end {
            Some(i) => (&bytes[..i], bytes[i + 4..].to_vec()),
            None => (bytes, Vec::new()),
        };
        let head = std::str::from_utf8(head).map_err(|_| ParseError::NotUtf8)?;
        let mut lines = head.split("\r\n");
        let first = lines.next().ok_or(ParseError::NoStartLine)?;
        if first.is_empty() {
            return Err(ParseError::NoStartLine);
        }
        let start = parse_start(first)?;
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut offset = first.len() + 2;
        for line in lines {
            if line.starts_with([' ', '\t']) {
                // RFC 3261 §7.3.1 line folding: continuation of the previous value.
                let last = headers.last_mut().ok_or(ParseError::BadHeader { offset })?;
                last.1.push(' ');
                last.1.push_str(line.trim());
            } else if !line.is_empty() {
                let colon = line.find(':').ok_or(ParseError::BadHeader { offset })?;
                let name = canonical_name(line[..colon].trim()).to_owned();
                headers.push((name, line[colon + 1..].trim().to_owned()));
            }
            offset += line.len() + 2;
        }
        Ok(Self {
            start,
            headers,
            body,
        })
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                out.extend_from_slice(format!("{method} {uri} SIP/2.0\r\n").as_bytes());
            }
            StartLine::Response { status, reason } => {
                out.extend_from_slice(format!("SIP/2.0 {status} {reason}\r\n").as_bytes());
            }
        }
        for (n, v) in &self.headers {
            if n.eq_ignore_ascii_case("Content-Length") || n.eq_ignore_ascii_case("l") {
                continue;
            }
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes());
        out.extend_from_slice(&self.body);
        out
    }
}

fn parse_start(line: &str) -> Result<StartLine, ParseError> {
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let status = code.parse().map_err(|_| ParseError::BadStartLine)?;
        return Ok(StartLine::Response {
            status,
            reason: reason.to_owned(),
        });
    }
    let mut it = line.split(' ');
    let (Some(method), Some(uri), Some("SIP/2.0"), None) =
        (it.next(), it.next(), it.next(), it.next())
    else {
        return Err(ParseError::BadStartLine);
    };
    if method.is_empty() || uri.is_empty() {
        return Err(ParseError::BadStartLine);
    }
    Ok(StartLine::Request {
        method: method.to_owned(),
        uri: uri.to_owned(),
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Value of a `;name=value` parameter in a header value such as From/To/Via.
pub fn header_param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    // Parameters follow the closing '>' of a name-addr, or the URI itself for addr-spec.
    let tail = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value.split_once(';').map_or("", |(_, t)| t),
    };
    tail.split(';').find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The URI inside a name-addr (`"Bob" <sip:bob@b>;tag=1` → `sip:bob@b`) or an addr-spec.
pub fn addr_uri(value: &str) -> &str {
    if let (Some(a), Some(b)) = (value.find('<'), value.find('>')) {
        if a < b {
            return &value[a + 1..b];
        }
    }
    value.split(';').next().unwrap_or(value).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nf: \"Alice\" <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\ni: c1@h\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nSubject: a\r\n folded\r\nContent-Length: 3\r\n\r\nabc";

    #[test]
    fn parses_request_and_compact_forms() {
        let m = SipMessage::parse(INVITE).unwrap();
        assert_eq!(m.method(), "INVITE");
        assert_eq!(m.ruri(), "sip:bob@example.com");
        assert_eq!(m.header("call-id"), Some("c1@h"));
        assert_eq!(m.header("i"), Some("c1@h"));
        assert_eq!(m.header("Subject"), Some("a folded"));
        assert_eq!(m.cseq(), Some((1, "INVITE")));
        assert_eq!(m.body(), b"abc");
        assert_eq!(header_param(m.header("From").unwrap(), "tag"), Some("a1"));
        assert_eq!(addr_uri(m.header("From").unwrap()), "sip:alice@example.com");
    }

    #[test]
    fn edits_and_roundtrip() {
        let mut m = SipMessage::parse(INVITE).unwrap();
        m.set_header("X-A", "1");
        m.set_header("x-a", "2");
        assert_eq!(m.header_all("X-A").collect::<Vec<_>>(), vec!["2"]);
        assert!(m.remove_header("subject"));
        m.set_ruri("sip:carol@example.net");
        let mut again = SipMessage::parse(&m.to_bytes()).unwrap();
        // Content-Length is regenerated (moved last, recomputed); everything else round-trips.
        again.remove_header("Content-Length");
        m.remove_header("Content-Length");
        assert_eq!(again, m);
    }

    #[test]
    fn converts_from_the_sip_core_message() {
        let core = Message::parse_slice(INVITE).unwrap();
        let ours = SipMessage::from_sip(&core).unwrap();
        assert_eq!(ours, SipMessage::parse(INVITE).unwrap());
    }

    #[test]
    fn parses_response_and_rejects_garbage() {
        let r = SipMessage::parse(b"SIP/2.0 180 Ringing\r\nCSeq: 2 INVITE\r\n\r\n").unwrap();
        assert_eq!(r.reason(), "Ringing");
        assert_eq!(r.status(), 180);
        assert_eq!(r.method(), "INVITE");
        assert_eq!(
            SipMessage::parse(b"hello\r\n\r\n"),
            Err(ParseError::BadStartLine)
        );
        assert_eq!(SipMessage::parse(b""), Err(ParseError::NoStartLine));
    }
    #[test]
    fn names_and_values_read_without_a_second_utf8_check() {
        let text = "MESSAGE sip:b@h SIP/2.0\r\nSubject: caf\u{e9} \u{2603}\r\nX-Note: \u{fc}\r\ni: c@h\r\nContent-Length: 0\r\n\r\n";
        let mut m = SipMessage::parse(text.as_bytes()).unwrap();
        assert_eq!(m.header("subject"), Some("caf\u{e9} \u{2603}"));
        assert_eq!(m.header("x-note"), Some("\u{fc}"));
        // Every value of a known name through the parser's index, compact forms included.
        assert_eq!(m.header_all("Call-ID").collect::<Vec<_>>(), ["c@h"]);
        assert_eq!(m.header_all("I").collect::<Vec<_>>(), ["c@h"]);
        assert_eq!(m.header_all("Route").count(), 0);
        // Absent: nothing removed, nothing edited.
        assert!(!m.remove_header("Route"));
        assert!(!m.is_edited());
        // By long name a compact line, by any case an unknown one.
        assert!(m.remove_header("Call-ID"));
        assert!(m.remove_header("X-NOTE"));
        assert_eq!(
            m.headers().map(|(n, _)| n).collect::<Vec<_>>(),
            ["Subject", "Content-Length"]
        );
        // A head that is not UTF-8 is refused once, when the view is made.
        let bad = b"MESSAGE sip:b@h SIP/2.0\r\nSubject: \xff\r\nContent-Length: 0\r\n\r\n";
        assert!(matches!(
            Message::parse_slice(bad).map(SipMessage::from_message),
            Ok(Err(ParseError::NotUtf8))
        ));
    }

    #[test]
    fn an_unedited_message_is_the_received_one() {
        let core = Message::parse_slice(INVITE).unwrap();
        let m = SipMessage::from_message(core.clone()).unwrap();
        assert!(!m.is_edited());
        let back = m.to_message().unwrap();
        // The same shared buffer: no copy, no re-serialisation.
        assert_eq!(back.as_bytes().as_ptr(), core.as_bytes().as_ptr());
        assert_eq!(m.header("v"), Some("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1"));
        assert_eq!(
            m.header("from"),
            Some("\"Alice\" <sip:alice@example.com>;tag=a1")
        );
        assert_eq!(
            m.headers().next(),
            Some(("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1"))
        );
        assert_eq!(m.headers().nth(1).map(|(n, _)| n), Some("From"));
    }

    #[test]
    fn edits_are_written_as_the_received_bytes_plus_exactly_the_edits() {
        let core = Message::parse_slice(INVITE).unwrap();
        let mut m = SipMessage::from_message(core).unwrap();
        assert!(m.remove_header("Subject"));
        m.set_header("Max-Forwards", "69");
        m.prepend_header("Route", "<sip:p1;lr>");
        m.add_header("X-A", "1");
        m.set_ruri("sip:carol@example.net");
        m.set_body(b"abcd".to_vec());
        assert_eq!(m.header("subject"), None);
        assert_eq!(m.header("Max-Forwards"), Some("69"));
        assert_eq!(m.ruri(), "sip:carol@example.net");
        let out = m.to_message().unwrap();
        let want = "INVITE sip:carol@example.net SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nf: \"Alice\" <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\ni: c1@h\r\nCSeq: 1 INVITE\r\nMax-Forwards: 69\r\nContent-Length: 4\r\nRoute: <sip:p1;lr>\r\nX-A: 1\r\n\r\nabcd";
        assert_eq!(String::from_utf8_lossy(out.as_bytes()), want);
        // The Editor's index is the one a parse of its output builds.
        let again = Message::parse_slice(out.as_bytes()).unwrap();
        assert_eq!(
            SipMessage::from_message(again).unwrap(),
            SipMessage::from_message(out).unwrap()
        );
    }

    #[test]
    fn new_lines_keep_their_place_among_the_original_ones() {
        let mut m = SipMessage::parse(INVITE).unwrap();
        m.prepend_header("To", "<sip:x@y>");
        m.prepend_header("Via", "SIP/2.0/UDP p;branch=z9hG4bKp");
        assert_eq!(m.remove_prefix("sub"), 1);
        let out = m.to_message().unwrap();
        let text = String::from_utf8_lossy(out.as_bytes()).into_owned();
        assert!(text.starts_with("INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP p;branch=z9hG4bKp\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nf: "), "{text}");
        assert!(
            text.contains("tag=a1\r\nTo: <sip:x@y>\r\nTo: <sip:bob@example.com>\r\n"),
            "{text}"
        );
        assert!(!text.contains("Subject"), "{text}");
        assert_eq!(m.header_all("To").count(), 2);
    }

    #[test]
    fn a_bad_edit_is_refused_when_written() {
        let mut m = SipMessage::parse(INVITE).unwrap();
        m.set_header("X-Evil", "a\r\nInjected: 1");
        assert!(m.to_message().is_err());
    }
}
