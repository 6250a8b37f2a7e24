//! Building a response to a received request (RFC 3261 §8.2.6.2): the Via lines, From, To (with
//! a To tag added when the caller gives one and the request has none), Call-ID and CSeq are
//! copied verbatim from the request; extra headers and an optional body follow. Used for local
//! replies (100 Trying, validation rejections, registrar answers). Does not parse the output.

use crate::header_name::HeaderName;
use crate::message::Message;
use crate::method::StatusCode;
use crate::validate::Rejection;

/// What to put in a locally generated response.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplyParts<'a> {
    /// Reason phrase; the RFC 3261 §21 phrase when `None`.
    pub reason: Option<&'a str>,
    /// To tag to add when the request's To has none (required for final responses of a UAS).
    pub to_tag: Option<&'a str>,
    /// Extra header lines `(name, value)`, written after the copied ones.
    pub headers: &'a [(&'a str, &'a str)],
    /// Body and its Content-Type.
    pub body: Option<(&'a str, &'a [u8])>,
}

/// Write a response to `request` into `out` (appends). Names and values must not contain CR/LF
/// (they are written as given).
pub fn write_response(
    request: &Message,
    status: StatusCode,
    parts: &ReplyParts<'_>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"SIP/2.0 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        parts
            .reason
            .unwrap_or_else(|| status.canonical_reason())
            .as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    let line = |out: &mut Vec<u8>, name: &str, value: &[u8]| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    for f in request.headers_named(HeaderName::Via) {
        line(out, "Via", f.value);
    }
    for name in [
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ] {
        let Some(v) = request.header_value(name) else {
            continue;
        };
        line(out, name.as_str(), v);
        if name == HeaderName::To {
            if let Some(tag) = parts.to_tag {
                if request.to_tag().ok().flatten().is_none() {
                    // Put the tag on the line just written (before its CRLF).
                    out.truncate(out.len() - 2);
                    out.extend_from_slice(b";tag=");
                    out.extend_from_slice(tag.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }
    for (n, v) in parts.headers {
        line(out, n, v.as_bytes());
    }
    let body: &[u8] = match parts.body {
        Some((ct, b)) => {
            line(out, "Content-Type", ct.as_bytes());
            b
        }
        None => b"",
    };
    line(out, "Content-Length", body.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// [`write_response`] into a new buffer.
pub fn response_to(request: &Message, status: StatusCode, parts: &ReplyParts<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(request.as_bytes().len().min(1024) + 64);
    write_response(request, status, parts, &mut out);
    out
}

impl Rejection {
    /// The response this rejection calls for (status, reason, Unsupported/Accept headers).
    pub fn response_to(&self, request: &Message, to_tag: Option<&str>) -> Vec<u8> {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        response_to(
            request,
            self.status,
            &ReplyParts {
                reason: Some(self.reason),
                to_tag,
                headers: &headers,
                body: None,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ValidationConfig, validate_request};

    #[test]
    fn rejection_becomes_a_response() {
        let req = Message::parse(
            &b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nv: SIP/2.0/UDP g;branch=z9hG4bK0\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nProxy-Require: foo\r\nl: 0\r\n\r\n"[..],
        )
        .unwrap();
        let rej = validate_request(&req, &ValidationConfig::PROXY).unwrap_err();
        let resp = Message::parse(rej.response_to(&req, Some("srv1"))).unwrap();
        assert_eq!(resp.status(), Some(StatusCode::BAD_EXTENSION));
        assert_eq!(resp.vias().count(), 2);
        assert_eq!(resp.to_tag().unwrap(), Some("srv1"));
        assert_eq!(resp.from_tag().unwrap(), Some("1"));
        assert_eq!(resp.header_str("Unsupported"), Some("foo"));
        assert_eq!(resp.cseq().unwrap().seq, 1);
        let ok = response_to(
            &req,
            StatusCode::OK,
            &ReplyParts {
                body: Some(("text/plain", b"hi")),
                ..ReplyParts::default()
            },
        );
        let ok = Message::parse(ok).unwrap();
        assert_eq!(ok.body(), b"hi");
        assert_eq!(ok.reason(), Some("OK"));
    }
}
