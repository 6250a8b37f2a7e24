//! Answering a request that cannot be used as parsed (RFC 3261 §8.2.6, §16.3 step 1; RFC 4475
//! §3.1.2): when the parser or a typed header rejects a request, but its Via lines, Call-ID and
//! CSeq can still be read, the element answers 400 (or 513 for a message too large) instead of
//! dropping it, so the sender stops retransmitting and learns why.
//!
//! Owns: a lenient line scan of the raw bytes ([`salvage_request`]) that needs only a
//! request-like start line (`METHOD SP ...`) and `Name: value` lines, and the writer of the
//! stateless answer ([`Salvaged::response`]), whose reason phrase names the fault
//! ([`parse_error_reply`]). Does not own: deciding where the answer goes (the node sends it
//! back to the packet's source), or answering parsed requests (see [`crate::response_to`]).
//!
//! Fuzz-safe by construction: no indexing that can panic, bounded work (at most
//! [`MAX_LINES`] lines and [`MAX_VIAS`] Via lines are looked at), values copied verbatim
//! except that CR and LF (folding) become SP, so the answer is always one well-framed message.

use crate::error::{ParseError, ParseErrorKind};
use crate::header_name::HeaderName;
use crate::method::StatusCode;
use crate::syntax::is_token;

/// Header lines looked at before giving up on finding Via, Call-ID and CSeq.
pub const MAX_LINES: usize = 512;
/// Via header lines copied into the answer; more are left out.
pub const MAX_VIAS: usize = 64;

/// Why bytes could not be read as a request, even leniently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SalvageError {
    /// The first line is not `METHOD SP ...` (a response, binary garbage, an empty buffer).
    #[error("no request line")]
    NotARequest,
    /// No Via line with a value.
    #[error("no Via")]
    MissingVia,
    /// No Call-ID line with a value.
    #[error("no Call-ID")]
    MissingCallId,
    /// No CSeq line, or one that is not `digits LWS method`.
    #[error("no readable CSeq")]
    MissingCSeq,
}

/// What a lenient read of a broken request recovered: borrowed from the received bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvaged<'a> {
    method: &'a [u8],
    vias: Vec<&'a [u8]>,
    from: Option<&'a [u8]>,
    to: Option<&'a [u8]>,
    call_id: &'a [u8],
    cseq: &'a [u8],
    cseq_method: &'a [u8],
}

impl<'a> Salvaged<'a> {
    /// The Request-Line method.
    pub fn method(&self) -> &'a [u8] {
        self.method
    }

    /// Via values, one per Via header line, in order (each may hold several comma-separated
    /// Vias; copied as received).
    pub fn vias(&self) -> &[&'a [u8]] {
        &self.vias
    }

    /// The Call-ID value.
    pub fn call_id(&self) -> &'a [u8] {
        self.call_id
    }

    /// The CSeq value (`digits LWS method`, the number not range-checked).
    pub fn cseq(&self) -> &'a [u8] {
        self.cseq
    }

    /// The From value, if there was one.
    pub fn from(&self) -> Option<&'a [u8]> {
        self.from
    }

    /// The To value, if there was one.
    pub fn to(&self) -> Option<&'a [u8]> {
        self.to
    }

    /// True for an ACK (by Request-Line or CSeq method): never answered (RFC 3261 §17.2.1).
    pub fn is_ack(&self) -> bool {
        self.method.eq_ignore_ascii_case(b"ACK") || self.cseq_method.eq_ignore_ascii_case(b"ACK")
    }

    /// The stateless answer (RFC 3261 §8.2.6.2): status line with `reason`, the Via lines,
    /// From, To (with `to_tag` added when the To value has none and its quotes balance), Call-ID
    /// and CSeq as received, and `Content-Length: 0`. CR/LF in values and reason become SP.
    pub fn response(&self, status: StatusCode, reason: &str, to_tag: Option<&str>) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.vias.iter().map(|v| v.len()).sum::<usize>());
        out.extend_from_slice(b"SIP/2.0 ");
        out.extend_from_slice(status.0.to_string().as_bytes());
        out.push(b' ');
        put_value(&mut out, reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        for v in &self.vias {
            line(&mut out, "Via", v);
        }
        if let Some(f) = self.from {
            line(&mut out, "From", f);
        }
        if let Some(t) = self.to {
            line(&mut out, "To", t);
            if let Some(tag) = to_tag.filter(|_| can_add_tag(t)) {
                // Put the tag on the line just written (before its CRLF).
                out.truncate(out.len() - 2);
                out.extend_from_slice(b";tag=");
                put_value(&mut out, tag.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        line(&mut out, "Call-ID", self.call_id);
        line(&mut out, "CSeq", self.cseq);
        out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        out
    }
}

fn line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    put_value(out, value);
    out.extend_from_slice(b"\r\n");
}

/// Append `v` with CR and LF turned into SP (a folded value becomes one line).
fn put_value(out: &mut Vec<u8>, v: &[u8]) {
    out.extend(
        v.iter()
            .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
    );
}

/// A To value takes a tag when it has none and its quotes balance (otherwise the tag could end
/// up inside an unterminated display name).
fn can_add_tag(to: &[u8]) -> bool {
    let mut quoted = false;
    let mut escaped = false;
    for &c in to {
        match c {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ => {}
        }
    }
    if quoted {
        return false;
    }
    // Any `;tag=` (ASCII case-insensitive, LWS allowed around `=`) means it has one.
    let lower: Vec<u8> = to.iter().map(u8::to_ascii_lowercase).collect();
    let before = |i: usize| lower.get(..i).unwrap_or_default().iter().rev();
    let after = |i: usize| lower.get(i + 3..).unwrap_or_default().iter();
    !lower.windows(3).enumerate().any(|(i, w)| {
        w == b"tag"
            && before(i).find(|c| !is_ws(**c)) == Some(&b';')
            && after(i).find(|c| !is_ws(**c)) == Some(&b'=')
    })
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn trim(v: &[u8]) -> &[u8] {
    let a = v.iter().take_while(|c| is_ws(**c)).count();
    let z = v.iter().rev().take_while(|c| is_ws(**c)).count();
    v.get(a..v.len().saturating_sub(z).max(a))
        .unwrap_or_default()
}

/// Lines of `buf`, split at LF (a CR before it is dropped), as (start offset, line).
fn lines(buf: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= buf.len() {
            return None;
        }
        let rest = buf.get(pos..)?;
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(i) => (rest.get(..i)?, pos + i + 1),
            None => (rest, buf.len()),
        };
        let start = pos;
        pos = next;
        Some((start, line.strip_suffix(b"\r").unwrap_or(line)))
    })
}

/// Read the fields a stateless answer needs from a request that failed to parse, leniently:
/// leading empty lines are skipped; the first line must be `METHOD SP ...` (not `SIP/...`);
/// then `Name: value` lines up to the first empty line (folded continuation lines belong to the
/// value; lines without a colon are skipped). Compact names (`v`, `f`, `t`, `i`) count. The
/// first From, To, Call-ID and CSeq win; Via lines are kept in order (at most [`MAX_VIAS`]).
pub fn salvage_request(buf: &[u8]) -> Result<Salvaged<'_>, SalvageError> {
    let mut it = lines(buf).skip_while(|(_, l)| trim(l).is_empty());
    let (_, start) = it.next().ok_or(SalvageError::NotARequest)?;
    let method_len = start.iter().take_while(|c| is_token(**c)).count();
    let method = start.get(..method_len).ok_or(SalvageError::NotARequest)?;
    // A Status-Line fails here too: `/` is not a token character, so "SIP/2.0" is no method.
    if method.is_empty() || !matches!(start.get(method_len), Some(b' ' | b'\t')) {
        return Err(SalvageError::NotARequest);
    }
    // (name, value start, value end) of the header being read; a fold extends its end.
    let mut fields: Vec<(HeaderName, usize, usize)> = Vec::new();
    for (seen, (off, l)) in it.enumerate() {
        if seen >= MAX_LINES || l.is_empty() {
            break;
        }
        if matches!(l.first(), Some(b' ' | b'\t')) {
            if let Some(last) = fields.last_mut() {
                last.2 = off + l.len();
            }
            continue;
        }
        let Some(colon) = memchr::memchr(b':', l) else {
            fields.push((HeaderName::Other, off, off)); // ends any fold
            continue;
        };
        let name = trim(l.get(..colon).unwrap_or_default());
        let name = if !name.is_empty() && name.iter().all(|c| is_token(*c)) {
            HeaderName::from_bytes(name)
        } else {
            HeaderName::Other
        };
        fields.push((name, off + colon + 1, off + l.len()));
    }
    let value = |a: usize, z: usize| trim(buf.get(a..z).unwrap_or_default());
    let mut s = Salvaged {
        method,
        vias: Vec::new(),
        from: None,
        to: None,
        call_id: b"",
        cseq: b"",
        cseq_method: b"",
    };
    for &(name, a, z) in &fields {
        let v = value(a, z);
        if v.is_empty() {
            continue;
        }
        match name {
            HeaderName::Via if s.vias.len() < MAX_VIAS => s.vias.push(v),
            HeaderName::From if s.from.is_none() => s.from = Some(v),
            HeaderName::To if s.to.is_none() => s.to = Some(v),
            HeaderName::CallId if s.call_id.is_empty() => s.call_id = v,
            HeaderName::CSeq if s.cseq.is_empty() => {
                if let Some(m) = cseq_method(v) {
                    s.cseq = v;
                    s.cseq_method = m;
                }
            }
            _ => {}
        }
    }
    if s.vias.is_empty() {
        return Err(SalvageError::MissingVia);
    }
    if s.call_id.is_empty() {
        return Err(SalvageError::MissingCallId);
    }
    if s.cseq.is_empty() {
        return Err(SalvageError::MissingCSeq);
    }
    Ok(s)
}

/// The method of a CSeq value `1*DIGIT LWS token` (any number of digits), or `None`.
fn cseq_method(v: &[u8]) -> Option<&[u8]> {
    let digits = v.iter().take_while(|c| c.is_ascii_digit()).count();
    let rest = v.get(digits..)?;
    let ws = rest.iter().take_while(|c| is_ws(**c)).count();
    let m = rest.get(ws..)?;
    (digits > 0 && ws > 0 && !m.is_empty() && m.iter().all(|c| is_token(*c))).then_some(m)
}

/// The status and reason phrase that answer a request rejected by the parser: 513 Message Too
/// Large for [`ParseErrorKind::TooLarge`] (RFC 3261 §21.5.14), else 400 with a phrase naming
/// the fault.
pub fn parse_error_reply(err: &ParseError) -> (StatusCode, &'static str) {
    let reason = match err.kind {
        ParseErrorKind::TooLarge => return (StatusCode(513), "Message Too Large"),
        ParseErrorKind::Empty => "Empty Message",
        ParseErrorKind::Truncated => "Header Section Not Terminated",
        ParseErrorKind::InvalidStartLine => "Malformed Request-Line",
        ParseErrorKind::InvalidMethod => "Malformed Method",
        ParseErrorKind::InvalidRequestUri => "Malformed Request-URI",
        ParseErrorKind::InvalidVersion => "Malformed SIP-Version",
        ParseErrorKind::InvalidStatusCode => "Malformed Status-Code",
        ParseErrorKind::InvalidHeaderLine => "Malformed Header Line",
        ParseErrorKind::InvalidContentLength => "Malformed Content-Length",
        ParseErrorKind::ConflictingContentLength => "Conflicting Content-Length",
        ParseErrorKind::BodyTruncated => "Body Shorter Than Content-Length",
        ParseErrorKind::MissingContentLength => "Missing Content-Length",
        ParseErrorKind::TooManyHeaders => "Too Many Headers",
    };
    (StatusCode::BAD_REQUEST, reason)
}

#[cfg(test)]
mod tests;
