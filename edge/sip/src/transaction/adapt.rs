//! Adapters between the message layer's [`Message`] and the transaction layer's projection
//! ([`TxRequest`] / [`TxResponse`]). The received bytes are shared, not copied (`Bytes`);
//! header values are split at top-level commas (RFC 3261 §7.3.1) so that one Via/Route line
//! holding several values yields several entries. Compact header names come out in long form.

use std::sync::OnceLock;

use super::message::{RequestView, ResponseView, Sp, TxRequest, TxResponse, ViaSpans};
use crate::syntax::split_commas;
use crate::{HeaderError, HeaderName, Message, ParseError};

/// Why a [`Message`] cannot be viewed as a transaction-layer message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FromMessageError {
    /// A request was expected.
    #[error("not a request")]
    NotARequest,
    /// A response was expected.
    #[error("not a response")]
    NotAResponse,
    /// A header the transaction layer needs is missing (Via, From, To, Call-ID, CSeq).
    #[error("missing {0:?} header")]
    Missing(HeaderName),
    /// A header value is not UTF-8 text.
    #[error("{0:?} header is not UTF-8")]
    NotText(HeaderName),
    /// A typed header failed to parse.
    #[error(transparent)]
    Header(#[from] HeaderError),
}

/// Where the fields every transaction message needs are (the last From/To/Call-ID line, as
/// a header list read in order would keep), checked to be text.
struct Common {
    top_via: Sp,
    from: Sp,
    to: Sp,
    call_id: Sp,
    max_forwards: Option<u32>,
}

fn common(msg: &Message) -> Result<Common, FromMessageError> {
    let base = msg.as_bytes();
    let (mut top_via, mut from, mut to, mut call_id) = (None, None, None, None);
    let mut max_forwards = None;
    for f in msg.headers() {
        // Only the fields kept here must be text: the others travel as received bytes, and a
        // UTF-8 pass over every value of every message was ~1 % of the proxy's CPU.
        let text = || f.value_str().ok_or(FromMessageError::NotText(f.name));
        match f.name {
            HeaderName::Via if top_via.is_none() => {
                let v = text()?;
                top_via = split_commas(v.as_bytes())
                    .filter_map(|r| v.get(r))
                    .find(|v| !v.is_empty())
                    .map(|t| Sp::of(base, t.as_bytes()));
            }
            HeaderName::MaxForwards => max_forwards = msg.max_forwards()?.map(u32::from),
            HeaderName::From => from = Some(Sp::of(base, text()?.as_bytes())),
            HeaderName::To => to = Some(Sp::of(base, text()?.as_bytes())),
            HeaderName::CallId => call_id = Some(Sp::of(base, text()?.as_bytes())),
            _ => {}
        }
    }
    Ok(Common {
        top_via: top_via.ok_or(FromMessageError::Missing(HeaderName::Via))?,
        from: from.ok_or(FromMessageError::Missing(HeaderName::From))?,
        to: to.ok_or(FromMessageError::Missing(HeaderName::To))?,
        call_id: call_id.ok_or(FromMessageError::Missing(HeaderName::CallId))?,
        max_forwards,
    })
}

fn text(msg: &Message, sp: Sp) -> &str {
    msg.as_bytes()
        .get(sp.0 as usize..sp.1 as usize)
        .and_then(|b| msg.text(b))
        .unwrap_or("")
}

impl TryFrom<&Message> for TxRequest {
    type Error = FromMessageError;

    fn try_from(msg: &Message) -> Result<Self, Self::Error> {
        let base = msg.as_bytes();
        let method = msg.method_str().ok_or(FromMessageError::NotARequest)?;
        let uri = msg.request_uri_str().ok_or(FromMessageError::NotARequest)?;
        let cseq = msg.cseq()?.seq;
        let c = common(msg)?;
        Ok(Self::from_view(RequestView {
            method: Sp::of(base, method.as_bytes()),
            uri: Sp::of(base, uri.as_bytes()),
            from: c.from,
            to: c.to,
            call_id: c.call_id,
            top_via: c.top_via,
            stamped: None,
            top: ViaSpans::of_str(text(msg, c.top_via)),
            cseq,
            max_forwards: c.max_forwards,
            popped: 0,
            lists: OnceLock::new(),
            msg: msg.clone(),
        }))
    }
}

impl TryFrom<&Message> for TxResponse {
    type Error = FromMessageError;

    fn try_from(msg: &Message) -> Result<Self, Self::Error> {
        let base = msg.as_bytes();
        let status = msg.status().ok_or(FromMessageError::NotAResponse)?;
        let cseq = msg.cseq()?;
        let c = common(msg)?;
        let reason = msg.reason().unwrap_or("");
        Ok(Self::from_view(ResponseView {
            status: status.0,
            reason: Sp::of(base, reason.as_bytes()),
            from: c.from,
            to: c.to,
            call_id: c.call_id,
            top_via: c.top_via,
            top: ViaSpans::of_str(text(msg, c.top_via)),
            cseq: cseq.seq,
            cseq_method: Sp::of(base, cseq.method_str.as_bytes()),
            lists: OnceLock::new(),
            msg: msg.clone(),
        }))
    }
}

impl TxRequest {
    /// The message layer's view of this request's bytes.
    pub fn to_message(&self) -> Result<Message, ParseError> {
        Message::parse(self.bytes().clone())
    }
}

impl TxResponse {
    /// The message layer's view of this response's bytes.
    pub fn to_message(&self) -> Result<Message, ParseError> {
        Message::parse(self.bytes().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
v: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds, SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKold\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p1.example.com;lr>,<sip:p2.example.com;lr>\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
f: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    #[test]
    fn request_from_message_and_back() {
        let msg = Message::parse(Bytes::from_static(INVITE)).unwrap();
        let req = TxRequest::try_from(&msg).unwrap();
        assert_eq!(req.method(), "INVITE");
        assert_eq!(req.vias().len(), 2);
        assert_eq!(req.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(req.sent_by(), "pc33.atlanta.example.com");
        assert_eq!(req.routes().len(), 2);
        assert_eq!(req.max_forwards(), Some(70));
        assert_eq!(req.from_tag(), Some("1928301774"));
        assert_eq!(req.call_id(), "a84b4c76e66710@pc33.atlanta.example.com");
        assert_eq!(req.cseq(), 314159);
        assert_eq!(req.body(), b"v=0\n");
        assert_eq!(
            req.header_values("content-type").collect::<Vec<_>>(),
            ["application/sdp"]
        );
        // Shared, not copied.
        assert_eq!(req.bytes().as_ptr(), msg.bytes().as_ptr());
        // Rebuilt (e.g. by the proxy) it parses again with the same fields.
        let rebuilt = TxRequest::build(req.parts());
        let again = TxRequest::try_from(&rebuilt.to_message().unwrap()).unwrap();
        assert_eq!(again.parts(), req.parts());
    }

    #[test]
    fn response_from_message() {
        let bytes = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:b@b>;tag=2\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\n\
Record-Route: <sip:p1;lr>\r\nContent-Length: 0\r\n\r\n";
        let msg = Message::parse(Bytes::from_static(bytes)).unwrap();
        let resp = TxResponse::try_from(&msg).unwrap();
        assert_eq!(resp.status(), 180);
        assert_eq!(resp.cseq_method(), "INVITE");
        assert_eq!(resp.to_tag(), Some("2"));
        assert_eq!(resp.record_routes().len(), 1);
        assert_eq!(
            TxRequest::try_from(&msg),
            Err(FromMessageError::NotARequest)
        );
    }

    #[test]
    fn only_the_kept_fields_must_be_text() {
        // A Latin-1 Subject travels as received bytes; a Latin-1 From is refused.
        let head = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx\r\n\
To: <sip:b@b>;tag=2\r\nCall-ID: c\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n";
        let with = |extra: &[u8]| {
            let mut v = head.to_vec();
            v.extend_from_slice(extra);
            v.extend_from_slice(b"\r\n");
            Message::parse(Bytes::from(v)).unwrap()
        };
        let msg = with(b"From: <sip:a@b>;tag=1\r\nSubject: caf\xe9\r\n");
        let resp = TxResponse::try_from(&msg).unwrap();
        assert_eq!(resp.bytes(), msg.bytes());
        let msg = with(b"From: \"Caf\xe9\" <sip:a@b>;tag=1\r\n");
        assert!(matches!(
            TxResponse::try_from(&msg),
            Err(FromMessageError::NotText(HeaderName::From))
        ));
    }
}
