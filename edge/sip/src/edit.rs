//! The serializer: writes a modified copy of a received message without reparsing it. An
//! [`Editor`] records edits (an edit list keyed by header index) against the original bytes;
//! [`Editor::write_to`] then copies untouched header lines verbatim and emits only what changed.
//! Covers what a proxy does to a request or response (RFC 3261 §16.6, §16.7): Via push/pop,
//! Route pop, Record-Route insert, Max-Forwards decrement, header add/replace/remove, a new
//! Request-URI and a new body (Content-Length follows).
//!
//! Edits refer to the headers *as received*: `pop_via` pops the topmost received Via, never one
//! pushed by the same editor. New header lines are written with the long name and CRLF.

use std::ops::Range;

use crate::error::{HeaderError, HeaderErrorKind, UriError};
use crate::header_name::HeaderName;
use crate::message::{Builder, Message};
use crate::parser::StartSpans;
use crate::syntax::{parse_digits, split_commas};
use crate::uri::Uri;

#[derive(Debug, Clone)]
enum Override {
    Removed,
    /// New value bytes in `scratch`.
    Value(Range<usize>),
}

/// Why an edit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// The new Request-URI does not parse.
    #[error("invalid Request-URI: {0}")]
    Uri(UriError),
    /// The message is a response; it has no Request-URI.
    #[error("not a request")]
    NotARequest,
    /// Max-Forwards is already 0 (answer 483 instead of forwarding).
    #[error("Max-Forwards is 0")]
    TooManyHops,
    /// A header the edit needs is malformed.
    #[error("{0}")]
    Header(HeaderError),
    /// A name or value contains CR/LF or is otherwise not writable.
    #[error("header name or value not writable")]
    BadHeaderText,
    /// There is nothing to pop.
    #[error("no such header to pop")]
    NothingToPop,
}

/// An edit list over a received [`Message`]. Create with [`Message::edit`].
#[derive(Debug, Clone)]
pub struct Editor<'m> {
    msg: &'m Message,
    scratch: Vec<u8>,
    overrides: Vec<(usize, Override)>,
    /// Full new header lines (in `scratch`) to write before header `index`
    /// (`index == header_count` means at the end of the header section).
    inserts: Vec<(usize, Range<usize>)>,
    new_uri: Option<Range<usize>>,
    /// Whether the new Request-URI is a SIP/SIPS URI with headers (its parse's finding).
    new_uri_headers: bool,
    new_body: Option<Vec<u8>>,
    ensure_cl: bool,
}

fn writable(s: &str) -> bool {
    !s.bytes().any(|c| c == b'\r' || c == b'\n')
}

impl<'m> Editor<'m> {
    pub(crate) fn new(msg: &'m Message) -> Self {
        Self {
            msg,
            scratch: Vec::new(),
            overrides: Vec::new(),
            inserts: Vec::new(),
            new_uri: None,
            new_uri_headers: false,
            new_body: None,
            ensure_cl: false,
        }
    }

    /// The message being edited.
    pub fn message(&self) -> &'m Message {
        self.msg
    }

    fn override_of(&self, i: usize) -> Option<&Override> {
        self.overrides
            .iter()
            .rev()
            .find(|(j, _)| *j == i)
            .map(|(_, o)| o)
    }

    fn set_override(&mut self, i: usize, o: Override) {
        self.overrides.retain(|(j, _)| *j != i);
        self.overrides.push((i, o));
    }

    fn is_removed(&self, i: usize) -> bool {
        matches!(self.override_of(i), Some(Override::Removed))
    }

    fn current_value(&self, i: usize) -> &[u8] {
        match self.override_of(i) {
            Some(Override::Value(r)) => &self.scratch[r.clone()],
            Some(Override::Removed) => b"",
            None => self.msg.slice(self.msg.head().headers[i].value),
        }
    }

    fn push_line(&mut self, name: &str, value: &str) -> Range<usize> {
        if self.scratch.capacity() == 0 {
            self.scratch.reserve(256);
        }
        let st = self.scratch.len();
        self.scratch.extend_from_slice(name.as_bytes());
        self.scratch.extend_from_slice(b": ");
        self.scratch.extend_from_slice(value.as_bytes());
        self.scratch.extend_from_slice(b"\r\n");
        st..self.scratch.len()
    }

    fn push_value(&mut self, value: &[u8]) -> Range<usize> {
        if self.scratch.capacity() == 0 {
            self.scratch.reserve(256);
        }
        let st = self.scratch.len();
        self.scratch.extend_from_slice(value);
        st..self.scratch.len()
    }

    /// Insert a line before header `index`, above lines inserted there earlier. `inserts`
    /// stays sorted by index.
    fn insert_top(&mut self, index: usize, line: Range<usize>) {
        let pos = self
            .inserts
            .iter()
            .position(|(i, _)| *i >= index)
            .unwrap_or(self.inserts.len());
        self.inserts.insert(pos, (index, line));
    }

    /// Append a line at the end of the header section, below earlier appends.
    fn append_line(&mut self, line: Range<usize>) {
        let end = self.msg.header_count();
        self.inserts.push((end, line));
    }

    fn first_live(&self, name: HeaderName) -> Option<usize> {
        let h = &self.msg.head().headers;
        (0..h.len()).find(|&i| h[i].name == name && !self.is_removed(i))
    }

    fn matches_name(&self, i: usize, known: HeaderName, name: &str) -> bool {
        let h = &self.msg.head().headers[i];
        if known == HeaderName::Other {
            h.name == HeaderName::Other
                && self
                    .msg
                    .slice(h.name_span)
                    .eq_ignore_ascii_case(name.as_bytes())
        } else {
            h.name == known
        }
    }

    /// Add a Via on top (`value` like `SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK...`).
    pub fn push_via(&mut self, value: &str) -> Result<&mut Self, EditError> {
        if !writable(value) {
            return Err(EditError::BadHeaderText);
        }
        let at = self.first_live(HeaderName::Via).unwrap_or(0);
        let line = self.push_line("Via", value);
        self.insert_top(at, line);
        Ok(self)
    }

    fn pop_list(&mut self, name: HeaderName) -> Result<&mut Self, EditError> {
        let i = self.first_live(name).ok_or(EditError::NothingToPop)?;
        match self.override_of(i) {
            // Already rewritten by this editor: the value lives in `scratch`.
            Some(Override::Value(r)) => {
                let r = r.clone();
                let rest = split_commas(&self.scratch[r.clone()])
                    .nth(1)
                    .map(|x| x.start);
                match rest {
                    None => self.set_override(i, Override::Removed),
                    Some(st) => self.set_override(i, Override::Value(r.start + st..r.end)),
                }
            }
            _ => {
                let msg: &'m Message = self.msg;
                let v = msg.slice(msg.head().headers[i].value);
                match split_commas(v).nth(1).map(|x| x.start) {
                    None => self.set_override(i, Override::Removed),
                    Some(st) => {
                        let r = self.push_value(&v[st..]);
                        self.set_override(i, Override::Value(r));
                    }
                }
            }
        }
        Ok(self)
    }

    /// Replace the topmost received Via value (`received`/`rport` stamped on it, §18.2.1).
    pub fn set_top_via(&mut self, value: &str) -> Result<&mut Self, EditError> {
        if !writable(value) {
            return Err(EditError::BadHeaderText);
        }
        let i = self
            .first_live(HeaderName::Via)
            .ok_or(EditError::NothingToPop)?;
        let cur = self.current_value(i);
        let mut new = value.as_bytes().to_vec();
        if let Some(rest) = split_commas(cur).nth(1).map(|x| x.start) {
            new.extend_from_slice(b", ");
            new.extend_from_slice(&cur[rest..]);
        }
        let r = self.push_value(&new);
        self.set_override(i, Override::Value(r));
        Ok(self)
    }

    /// The field values of header `name` as the edited message carries them, top first:
    /// inserted lines at their places and the original fields not removed (as edited).
    fn current_fields(&self, name: HeaderName) -> impl Iterator<Item = &[u8]> + '_ {
        let h = &self.msg.head().headers;
        let (mut i, mut ins) = (0usize, 0usize);
        std::iter::from_fn(move || {
            while i <= h.len() {
                while ins < self.inserts.len() && self.inserts[ins].0 == i {
                    let line = &self.scratch[self.inserts[ins].1.clone()];
                    ins += 1;
                    if let Some(colon) = line.iter().position(|&c| c == b':')
                        && HeaderName::from_bytes(&line[..colon]) == name
                    {
                        return Some(line[colon + 1..].trim_ascii());
                    }
                }
                let at = i;
                i += 1;
                if at < h.len() && h[at].name == name && !self.is_removed(at) {
                    return Some(self.current_value(at));
                }
            }
            None
        })
    }

    /// The values of header `name` as the edited message carries them, top first, split at
    /// top-level commas (what Route processing looks at).
    pub fn current_values(&self, name: HeaderName) -> Vec<&str> {
        self.current_fields(name).flat_map(comma_values).collect()
    }

    /// The first value of header `name` as the edited message carries it: the first of
    /// [`Self::current_values`], without collecting the others.
    pub fn current_first_value(&self, name: HeaderName) -> Option<&str> {
        self.current_fields(name).flat_map(comma_values).next()
    }

    /// The Request-URI the edited message carries (`None` for a response).
    pub fn current_request_uri(&self) -> Option<&str> {
        match &self.new_uri {
            Some(r) => std::str::from_utf8(&self.scratch[r.clone()]).ok(),
            None => self.msg.request_uri_str(),
        }
    }

    /// Replace every Route value with `routes`, top first (a binding's Path as the branch's
    /// Route set, RFC 3327 §5.3; the strict-route fix-ups of §16.4 and §16.6 item 6).
    pub fn set_routes(&mut self, routes: &[&str]) -> Result<&mut Self, EditError> {
        if !routes.iter().all(|r| writable(r)) {
            return Err(EditError::BadHeaderText);
        }
        let msg: &'m Message = self.msg;
        for (i, h) in msg.head().headers.iter().enumerate() {
            if h.name == HeaderName::Route {
                self.set_override(i, Override::Removed);
            }
        }
        self.inserts.retain(|(_, r)| {
            let line = &self.scratch[r.clone()];
            let colon = line.iter().position(|&c| c == b':').unwrap_or(0);
            HeaderName::from_bytes(&line[..colon]) != HeaderName::Route
        });
        for r in routes.iter().rev() {
            self.push_route(r)?;
        }
        Ok(self)
    }

    /// Remove the topmost Via value (a response going upstream, §18.1.2).
    pub fn pop_via(&mut self) -> Result<&mut Self, EditError> {
        self.pop_list(HeaderName::Via)
    }

    /// Remove the topmost Route value (loose routing, §16.4).
    pub fn pop_route(&mut self) -> Result<&mut Self, EditError> {
        self.pop_list(HeaderName::Route)
    }

    /// Add a Record-Route value on top (`value` like `<sip:proxy.example.com;lr>`).
    pub fn insert_record_route(&mut self, value: &str) -> Result<&mut Self, EditError> {
        if !writable(value) {
            return Err(EditError::BadHeaderText);
        }
        let h = &self.msg.head().headers;
        let at = match self.first_live(HeaderName::RecordRoute) {
            Some(i) => i,
            None => h
                .iter()
                .rposition(|x| x.name == HeaderName::Via)
                .map_or(0, |i| i + 1),
        };
        let line = self.push_line("Record-Route", value);
        self.insert_top(at, line);
        Ok(self)
    }

    /// Add a Route value on top (pre-loaded route, strict-route fix-up).
    pub fn push_route(&mut self, value: &str) -> Result<&mut Self, EditError> {
        if !writable(value) {
            return Err(EditError::BadHeaderText);
        }
        let at = self
            .first_live(HeaderName::Route)
            .or_else(|| {
                let h = &self.msg.head().headers;
                h.iter()
                    .rposition(|x| x.name == HeaderName::Via)
                    .map(|i| i + 1)
            })
            .unwrap_or(0);
        let line = self.push_line("Route", value);
        self.insert_top(at, line);
        Ok(self)
    }

    /// Decrement Max-Forwards (§16.6 step 3); adds `Max-Forwards: 70` when absent. Returns the
    /// value written. Fails with `TooManyHops` at 0 (validate first: 483).
    pub fn decrement_max_forwards(&mut self) -> Result<u8, EditError> {
        let Some(i) = self.first_live(HeaderName::MaxForwards) else {
            let line = self.push_line("Max-Forwards", "70");
            self.append_line(line);
            return Ok(70);
        };
        let cur = parse_digits(self.current_value(i))
            .and_then(|n| u8::try_from(n).ok())
            .ok_or_else(|| {
                EditError::Header(HeaderError::new(
                    HeaderName::MaxForwards,
                    HeaderErrorKind::Syntax,
                ))
            })?;
        if cur == 0 {
            return Err(EditError::TooManyHops);
        }
        let new = cur - 1;
        let mut tmp = [0u8; 3];
        let s = fmt_u32(u32::from(new), &mut tmp);
        let r = self.push_value(s);
        self.set_override(i, Override::Value(r));
        Ok(new)
    }

    /// Append a header line at the end of the header section.
    pub fn add_header(&mut self, name: &str, value: &str) -> Result<&mut Self, EditError> {
        if name.is_empty() || !name.bytes().all(crate::syntax::is_token) || !writable(value) {
            return Err(EditError::BadHeaderText);
        }
        let line = self.push_line(name, value);
        self.append_line(line);
        Ok(self)
    }

    /// Remove every line of header `name` (any form: `"Via"`, `"v"`, `"X-Foo"`). Returns how
    /// many lines were removed.
    pub fn remove_header(&mut self, name: &str) -> usize {
        let known = HeaderName::from_name(name);
        let mut n = 0;
        for i in 0..self.msg.header_count() {
            if self.matches_name(i, known, name) && !self.is_removed(i) {
                self.set_override(i, Override::Removed);
                n += 1;
            }
        }
        n
    }

    /// Set header `name` to a single `value`: the first line is rewritten in place, any other
    /// lines removed; appended if absent.
    pub fn set_header(&mut self, name: &str, value: &str) -> Result<&mut Self, EditError> {
        if name.is_empty() || !name.bytes().all(crate::syntax::is_token) || !writable(value) {
            return Err(EditError::BadHeaderText);
        }
        let known = HeaderName::from_name(name);
        let mut first = None;
        for i in 0..self.msg.header_count() {
            if self.matches_name(i, known, name) && !self.is_removed(i) {
                if first.is_none() {
                    first = Some(i);
                } else {
                    self.set_override(i, Override::Removed);
                }
            }
        }
        match first {
            Some(i) => {
                let r = self.push_value(value.as_bytes());
                self.set_override(i, Override::Value(r));
            }
            None => {
                self.add_header(name, value)?;
            }
        }
        Ok(self)
    }

    /// Remove header line `index` (as received). Lines out of range are ignored.
    pub fn remove_at(&mut self, index: usize) -> &mut Self {
        if index < self.msg.header_count() {
            self.set_override(index, Override::Removed);
        }
        self
    }

    /// Give header line `index` (as received) a new value; its name stays as written.
    pub fn set_value_at(&mut self, index: usize, value: &str) -> Result<&mut Self, EditError> {
        if index >= self.msg.header_count() || !writable(value) {
            return Err(EditError::BadHeaderText);
        }
        let r = self.push_value(value.as_bytes());
        self.set_override(index, Override::Value(r));
        Ok(self)
    }

    /// Insert a line before header line `index` (as received; `header_count` means the end of
    /// the header section), below lines inserted there earlier: a script's edits in order.
    pub fn insert_at(
        &mut self,
        index: usize,
        name: &str,
        value: &str,
    ) -> Result<&mut Self, EditError> {
        if name.is_empty() || !name.bytes().all(crate::syntax::is_token) || !writable(value) {
            return Err(EditError::BadHeaderText);
        }
        let index = index.min(self.msg.header_count());
        let line = self.push_line(name, value);
        let pos = self
            .inserts
            .iter()
            .position(|(i, _)| *i > index)
            .unwrap_or(self.inserts.len());
        self.inserts.insert(pos, (index, line));
        Ok(self)
    }

    /// Replace the Request-URI (validated).
    pub fn set_request_uri(&mut self, uri: &str) -> Result<&mut Self, EditError> {
        if !self.msg.is_request() {
            return Err(EditError::NotARequest);
        }
        let parsed = Uri::parse(uri).map_err(EditError::Uri)?;
        self.new_uri_headers = matches!(parsed, Uri::Sip(ref s) if s.headers.is_some());
        let r = self.push_value(uri.as_bytes());
        self.new_uri = Some(r);
        Ok(self)
    }

    /// Replace the body; Content-Length is rewritten (or added) to match. Set Content-Type
    /// separately with [`Self::set_header`] if it changes.
    pub fn set_body(&mut self, body: impl Into<Vec<u8>>) -> &mut Self {
        self.new_body = Some(body.into());
        self
    }

    /// Make sure the output carries Content-Length (needed when relaying a datagram that had
    /// none onto a stream transport, §18.3).
    pub fn ensure_content_length(&mut self) -> &mut Self {
        self.ensure_cl = true;
        self
    }

    /// Has anything been changed?
    pub fn is_modified(&self) -> bool {
        !self.overrides.is_empty()
            || !self.inserts.is_empty()
            || self.new_uri.is_some()
            || self.new_body.is_some()
    }

    /// Write the edited message to `out` (appends).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.to_message().as_bytes());
    }

    /// The edited message as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_message().as_bytes().to_vec()
    }

    /// The edited message: the received bytes with the edits applied, written once and
    /// indexed while written (untouched header lines are copied verbatim, no parse, no
    /// re-encode). This is how a proxy relays a request or response.
    pub fn to_message(&self) -> Message {
        let msg = self.msg;
        let buf = msg.as_bytes();
        let head = msg.head();
        let mut out = Builder::with_capacity(
            buf.len() + self.scratch.len() + 16,
            head.headers.len() + self.inserts.len() + 1,
        );
        // Start line.
        match (&self.new_uri, head.start) {
            (
                Some(r),
                StartSpans::Request {
                    method_span,
                    version,
                    ..
                },
            ) => out.request_line(
                msg.slice(method_span),
                &self.scratch[r.clone()],
                msg.slice(version),
                Some(self.new_uri_headers),
            ),
            _ => out.start_line_of(msg),
        }
        // Content-Length handling.
        let body: &[u8] = self.new_body.as_deref().unwrap_or_else(|| msg.body());
        let fix_cl = self.new_body.is_some() || self.ensure_cl;
        let cl_index = if fix_cl {
            (0..head.headers.len())
                .find(|&i| head.headers[i].name == HeaderName::ContentLength && !self.is_removed(i))
        } else {
            None
        };
        let mut cl_buf = [0u8; 10];
        let cl_text = fmt_u32(body.len() as u32, &mut cl_buf);
        let mut ins = 0;
        for (i, h) in head.headers.iter().enumerate() {
            while ins < self.inserts.len() && self.inserts[ins].0 == i {
                out.raw_line(&self.scratch[self.inserts[ins].1.clone()]);
                ins += 1;
            }
            if Some(i) == cl_index {
                out.header_named(HeaderName::ContentLength, msg.slice(h.name_span), cl_text);
                continue;
            }
            match self.override_of(i) {
                Some(Override::Removed) => {}
                Some(Override::Value(r)) => {
                    out.header_named(h.name, msg.slice(h.name_span), &self.scratch[r.clone()])
                }
                None => out.line_of(msg, h),
            }
        }
        for (_, r) in &self.inserts[ins..] {
            out.raw_line(&self.scratch[r.clone()]);
        }
        if fix_cl && cl_index.is_none() {
            out.header_named(HeaderName::ContentLength, b"Content-Length", cl_text);
        }
        out.finish(
            &buf[head.headers_end as usize..head.body_start as usize],
            body,
        )
    }
}

/// Format `n` in decimal into `buf`, returning the digits.
fn fmt_u32(mut n: u32, buf: &mut [u8]) -> &[u8] {
    let mut tmp = [0u8; 10];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let len = tmp.len() - i;
    let len = len.min(buf.len());
    buf[..len].copy_from_slice(&tmp[tmp.len() - len..]);
    &buf[..len]
}

/// The non-empty values of one field value split at top-level commas.
fn comma_values(v: &[u8]) -> impl Iterator<Item = &str> {
    split_commas(v)
        .filter_map(move |r| v.get(r).and_then(|x| std::str::from_utf8(x).ok()))
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use crate::{HeaderName, Message};

    const REQ: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP a.example.com;branch=z9hG4bKa, SIP/2.0/UDP b.example.com;branch=z9hG4bKb\r\n\
v: SIP/2.0/UDP c.example.com;branch=z9hG4bKc\r\n\
Route: <sip:p1.example.com;lr>,\r\n <sip:p2.example.com;lr>\r\n\
Max-Forwards: 10\r\n\
Record-Route: <sip:old.example.com;lr>\r\n\
From: <sip:a@example.com>;tag=1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: x@y\r\n\
CSeq: 1 INVITE\r\n\
Subject: hi\r\n\
X-Custom: 1\r\n\
Content-Length: 3\r\n\
\r\n\
abc";

    fn msg() -> Message {
        Message::parse(REQ).unwrap()
    }

    #[test]
    fn unmodified_is_byte_exact() {
        let m = msg();
        let e = m.edit();
        assert!(!e.is_modified());
        assert_eq!(e.to_bytes(), REQ);
    }

    #[test]
    fn proxy_relay_edits() {
        let m = msg();
        let mut e = m.edit();
        e.push_via("SIP/2.0/UDP proxy;branch=z9hG4bKp").unwrap();
        assert_eq!(e.decrement_max_forwards().unwrap(), 9);
        e.insert_record_route("<sip:proxy;lr>").unwrap();
        e.pop_route().unwrap();
        e.set_request_uri("sip:bob@192.0.2.7:5070").unwrap();
        let out = e.to_message();
        let vias: Vec<_> = out
            .vias()
            .map(|v| v.unwrap().branch().unwrap().to_string())
            .collect();
        assert_eq!(vias, ["z9hG4bKp", "z9hG4bKa", "z9hG4bKb", "z9hG4bKc"]);
        assert_eq!(out.max_forwards().unwrap(), Some(9));
        let rr: Vec<_> = out
            .record_routes()
            .map(|r| r.unwrap().uri.as_str().to_string())
            .collect();
        assert_eq!(rr, ["sip:proxy;lr", "sip:old.example.com;lr"]);
        let routes: Vec<_> = out
            .routes()
            .map(|r| r.unwrap().uri.as_str().to_string())
            .collect();
        assert_eq!(routes, ["sip:p2.example.com;lr"]);
        assert_eq!(out.request_uri_str(), Some("sip:bob@192.0.2.7:5070"));
        assert_eq!(out.body(), b"abc");
        // Unknown headers are forwarded unchanged.
        assert_eq!(out.header_str("X-Custom"), Some("1"));
    }

    /// The index written with the edited bytes is the one a parse of those bytes gives.
    fn assert_indexed_like_parsed(out: &Message) {
        let again = Message::parse(out.bytes().clone()).unwrap();
        let (a, b) = (out.head(), again.head());
        assert_eq!(a.start, b.start);
        assert_eq!(a.headers, b.headers);
        assert_eq!(
            (
                a.headers_start,
                a.headers_end,
                a.body_start,
                a.content_length
            ),
            (
                b.headers_start,
                b.headers_end,
                b.body_start,
                b.content_length
            )
        );
    }

    #[test]
    fn edited_message_is_indexed_without_a_parse() {
        let m = msg();
        let mut e = m.edit();
        e.push_via("SIP/2.0/UDP proxy;branch=z9hG4bKp").unwrap();
        e.decrement_max_forwards().unwrap();
        e.insert_record_route("<sip:proxy;lr>").unwrap();
        e.pop_route().unwrap();
        e.set_request_uri("sip:bob@192.0.2.7:5070").unwrap();
        e.set_header("Subject", "new").unwrap();
        e.add_header("X-Added", "1").unwrap();
        assert_indexed_like_parsed(&e.to_message());
        let mut e = m.edit();
        e.set_body(b"v=0\r\n".to_vec());
        e.remove_header("X-Custom");
        assert_indexed_like_parsed(&e.to_message());
        assert_indexed_like_parsed(&m.edit().to_message());
        let r = Message::parse(
            &b"SIP/2.0 180 Ringing\r\nv: SIP/2.0/UDP p;branch=z9hG4bK1, SIP/2.0/UDP c;branch=z9hG4bK2\r\nl: 0\r\n\r\n"[..],
        )
        .unwrap();
        let mut e = r.edit();
        e.pop_via().unwrap();
        let out = e.to_message();
        assert_indexed_like_parsed(&out);
        assert_eq!(
            out.as_bytes(),
            b"SIP/2.0 180 Ringing\r\nv: SIP/2.0/UDP c;branch=z9hG4bK2\r\nl: 0\r\n\r\n"
        );
    }

    #[test]
    fn pops_across_values_and_lines() {
        let m = msg();
        let mut e = m.edit();
        e.pop_via().unwrap();
        e.pop_via().unwrap();
        let out = e.to_message();
        assert_eq!(out.top_via().unwrap().branch(), Some("z9hG4bKc"));
        let mut e = m.edit();
        e.pop_route().unwrap();
        e.pop_route().unwrap();
        assert!(e.pop_route().is_err());
        let out = e.to_message();
        assert_eq!(out.count_of(HeaderName::Route), 0);
    }

    #[test]
    fn first_current_value_is_the_first_of_the_current_values() {
        let m = msg();
        let mut e = m.edit();
        for name in [HeaderName::Via, HeaderName::Route, HeaderName::RecordRoute] {
            assert_eq!(
                e.current_first_value(name),
                e.current_values(name).first().copied()
            );
        }
        e.pop_via().unwrap();
        assert_eq!(
            e.current_first_value(HeaderName::Via),
            Some("SIP/2.0/UDP b.example.com;branch=z9hG4bKb")
        );
        e.pop_via().unwrap();
        e.pop_route().unwrap();
        assert_eq!(
            e.current_first_value(HeaderName::Via),
            Some("SIP/2.0/UDP c.example.com;branch=z9hG4bKc")
        );
        e.push_via("SIP/2.0/UDP proxy;branch=z9hG4bKp").unwrap();
        for name in [HeaderName::Via, HeaderName::Route, HeaderName::Subject] {
            assert_eq!(
                e.current_first_value(name),
                e.current_values(name).first().copied()
            );
        }
        assert_eq!(e.current_first_value(HeaderName::Contact), None);
    }

    #[test]
    fn header_add_set_remove_and_body() {
        let m = msg();
        let mut e = m.edit();
        e.add_header("X-New", "v").unwrap();
        e.set_header("subject", "changed").unwrap();
        assert_eq!(e.remove_header("X-Custom"), 1);
        e.set_header("Contact", "<sip:c@d>").unwrap();
        e.set_body(b"v=0\r\n".to_vec());
        let out = e.to_message();
        assert_eq!(out.header_str("X-New"), Some("v"));
        assert_eq!(out.header_str("Subject"), Some("changed"));
        assert_eq!(out.header_str("X-Custom"), None);
        assert_eq!(out.contacts().count(), 1);
        assert_eq!(out.body(), b"v=0\r\n");
        assert_eq!(out.content_length(), Some(5));
        assert!(e.add_header("Bad Name", "x").is_err());
        assert!(e.add_header("X", "a\r\nInjected: 1").is_err());
        assert!(e.set_request_uri("not a uri").is_err());
    }

    #[test]
    fn max_forwards_edge_cases() {
        let m = Message::parse(&b"OPTIONS sip:a@b SIP/2.0\r\nMax-Forwards: 0\r\nl: 0\r\n\r\n"[..])
            .unwrap();
        assert!(m.edit().decrement_max_forwards().is_err());
        let m = Message::parse(&b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n"[..]).unwrap();
        let mut e = m.edit();
        assert_eq!(e.decrement_max_forwards().unwrap(), 70);
        assert_eq!(e.to_message().max_forwards().unwrap(), Some(70));
    }

    #[test]
    fn ensure_content_length_on_datagram_without_one() {
        let m = Message::parse(&b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n\r\nxyz"[..])
            .unwrap();
        assert_eq!(m.content_length(), None);
        let mut e = m.edit();
        e.ensure_content_length();
        let out = e.to_message();
        assert_eq!(out.content_length(), Some(3));
        assert_eq!(out.body(), b"xyz");
    }

    #[test]
    fn response_via_pop() {
        let r = Message::parse(
            &b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP p;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP c;branch=z9hG4bK2\r\nContent-Length: 0\r\n\r\n"[..],
        )
        .unwrap();
        let mut e = r.edit();
        e.pop_via().unwrap();
        let out = e.to_message();
        assert_eq!(out.top_via().unwrap().branch(), Some("z9hG4bK2"));
        assert_eq!(out.status(), Some(crate::StatusCode::OK));
        assert!(r.edit().set_request_uri("sip:x@y").is_err());
    }
}
