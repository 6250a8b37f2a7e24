//! The owned SIP message the script layer works on: start line, raw headers in wire order
//! (names and values kept as text, typed views parsed on demand), body.
//!
//! RFC 3261 §7 (message shape), §7.3.3 (compact header forms). This is deliberately small: the
//! reactor hands the script worker a parsed message, Python pulls fields lazily by name, and
//! edits (set/remove header, R-URI user/host) are applied here and reported back with the
//! actions so the reactor serialises the edited message.
//! The reactor builds it from the SIP core's parsed message with [`SipMessage::from_sip`]
//! (`siphon_sip::Message`); [`SipMessage::to_bytes`] serialises an edited message.
//! TODO(sipmsg): keep `siphon_sip::Message` itself and record edits with its `Editor`, so
//! unchanged headers are never copied.

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

/// A SIP request or response with its headers kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipMessage {
    /// Request or status line.
    pub start: StartLine,
    /// Header fields in wire order, names as received (compact forms expanded).
    pub headers: Vec<(String, String)>,
    /// Message body (may be empty).
    pub body: Vec<u8>,
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
    /// Parse a complete message (head + body as framed by the transport).
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
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

    /// Serialise with a recomputed Content-Length.
    pub fn to_bytes(&self) -> Vec<u8> {
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
            if n.eq_ignore_ascii_case("Content-Length") {
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

    /// Method of a request, or the CSeq method of a response.
    pub fn method(&self) -> &str {
        match &self.start {
            StartLine::Request { method, .. } => method,
            StartLine::Response { .. } => self.cseq().map_or("", |(_, m)| m),
        }
    }

    /// Request-URI (empty for responses).
    pub fn ruri(&self) -> &str {
        match &self.start {
            StartLine::Request { uri, .. } => uri,
            StartLine::Response { .. } => "",
        }
    }

    /// Status code of a response (0 for requests).
    pub fn status(&self) -> u16 {
        match &self.start {
            StartLine::Response { status, .. } => *status,
            StartLine::Request { .. } => 0,
        }
    }

    /// First value of a header, case-insensitive, compact forms understood.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| name_eq(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header, in order.
    pub fn header_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| name_eq(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// Replace every value of `name` with one value (appended if absent).
    pub fn set_header(&mut self, name: &str, value: &str) {
        if let Some(i) = self.headers.iter().position(|(n, _)| name_eq(n, name)) {
            self.headers[i].1 = value.to_owned();
            let mut j = i + 1;
            while j < self.headers.len() {
                if name_eq(&self.headers[j].0, name) {
                    self.headers.remove(j);
                } else {
                    j += 1;
                }
            }
        } else {
            self.headers.push((name.to_owned(), value.to_owned()));
        }
    }

    /// Remove every value of `name`; returns whether one existed.
    pub fn remove_header(&mut self, name: &str) -> bool {
        let before = self.headers.len();
        self.headers.retain(|(n, _)| !name_eq(n, name));
        before != self.headers.len()
    }

    /// Prepend a header value (e.g. Record-Route, Route).
    pub fn prepend_header(&mut self, name: &str, value: &str) {
        let at = self
            .headers
            .iter()
            .position(|(n, _)| name_eq(n, name))
            .unwrap_or(self.headers.len());
        self.headers.insert(at, (name.to_owned(), value.to_owned()));
    }

    /// Replace the Request-URI (no-op on responses).
    pub fn set_ruri(&mut self, new: &str) {
        if let StartLine::Request { uri, .. } = &mut self.start {
            new.clone_into(uri);
        }
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, &str)> {
        let v = self.header("CSeq")?;
        let mut it = v.split_whitespace();
        let n = it.next()?.parse().ok()?;
        Some((n, it.next().unwrap_or("")))
    }
}

impl SipMessage {
    /// Convert the SIP core's parsed message (`siphon_sip::Message`) into the script view.
    /// Header names and values are copied as text; compact forms are expanded.
    pub fn from_sip(m: &siphon_sip::Message) -> Result<Self, ParseError> {
        let start = match (m.method_str(), m.request_uri_str(), m.status()) {
            (Some(method), Some(uri), _) => StartLine::Request {
                method: method.to_owned(),
                uri: uri.to_owned(),
            },
            (_, _, Some(status)) => StartLine::Response {
                status: status.0,
                reason: m.reason().unwrap_or("").to_owned(),
            },
            _ => return Err(ParseError::BadStartLine),
        };
        let mut headers = Vec::new();
        for (offset, f) in m.headers().enumerate() {
            let name = std::str::from_utf8(f.raw_name).map_err(|_| ParseError::NotUtf8)?;
            let value = f.value_str().ok_or(ParseError::BadHeader { offset })?;
            // RFC 3261 §7.3.1: a folded value is one value with the line breaks as spaces.
            let value = value
                .split("\r\n")
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(" ");
            headers.push((canonical_name(name.trim()).to_owned(), value));
        }
        Ok(Self {
            start,
            headers,
            body: m.body().to_vec(),
        })
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
        assert_eq!(m.body, b"abc");
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
        let core = siphon_sip::Message::parse_slice(INVITE).unwrap();
        let ours = SipMessage::from_sip(&core).unwrap();
        assert_eq!(ours, SipMessage::parse(INVITE).unwrap());
    }

    #[test]
    fn parses_response_and_rejects_garbage() {
        let r = SipMessage::parse(b"SIP/2.0 180 Ringing\r\nCSeq: 2 INVITE\r\n\r\n").unwrap();
        assert_eq!(r.status(), 180);
        assert_eq!(r.method(), "INVITE");
        assert_eq!(
            SipMessage::parse(b"hello\r\n\r\n"),
            Err(ParseError::BadStartLine)
        );
        assert_eq!(SipMessage::parse(b""), Err(ParseError::NoStartLine));
    }
}
