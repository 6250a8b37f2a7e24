//! Adapters between the message layer's [`Message`] and the transaction layer's projection
//! ([`TxRequest`] / [`TxResponse`]). The received bytes are shared, not copied (`Bytes`);
//! header values are split at top-level commas (RFC 3261 §7.3.1) so that one Via/Route line
//! holding several values yields several entries. Compact header names come out in long form.

use super::message::{RequestParts, ResponseParts, TxRequest, TxResponse};
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

#[derive(Default)]
struct Common {
    vias: Vec<String>,
    routes: Vec<String>,
    record_routes: Vec<String>,
    max_forwards: Option<u32>,
    headers: Vec<(String, String)>,
    from: Option<String>,
    to: Option<String>,
    call_id: Option<String>,
}

fn split_into(out: &mut Vec<String>, value: &str) {
    for r in split_commas(value.as_bytes()) {
        if let Some(v) = value.get(r)
            && !v.is_empty()
        {
            out.push(v.to_string());
        }
    }
}

fn common(msg: &Message) -> Result<Common, FromMessageError> {
    let mut c = Common::default();
    for f in msg.headers() {
        let v = f.value_str().ok_or(FromMessageError::NotText(f.name))?;
        match f.name {
            HeaderName::Via => split_into(&mut c.vias, v),
            HeaderName::Route => split_into(&mut c.routes, v),
            HeaderName::RecordRoute => split_into(&mut c.record_routes, v),
            HeaderName::MaxForwards => c.max_forwards = msg.max_forwards()?.map(u32::from),
            HeaderName::From => c.from = Some(v.to_string()),
            HeaderName::To => c.to = Some(v.to_string()),
            HeaderName::CallId => c.call_id = Some(v.to_string()),
            HeaderName::CSeq | HeaderName::ContentLength => {}
            HeaderName::Other => c.headers.push((f.name_str().to_string(), v.to_string())),
            name => c.headers.push((name.as_str().to_string(), v.to_string())),
        }
    }
    if c.vias.is_empty() {
        return Err(FromMessageError::Missing(HeaderName::Via));
    }
    Ok(c)
}

impl TryFrom<&Message> for TxRequest {
    type Error = FromMessageError;

    fn try_from(msg: &Message) -> Result<Self, Self::Error> {
        let method = msg.method_str().ok_or(FromMessageError::NotARequest)?;
        let uri = msg.request_uri_str().ok_or(FromMessageError::NotARequest)?;
        let cseq = msg.cseq()?.seq;
        let c = common(msg)?;
        let parts = RequestParts {
            method: method.to_string(),
            uri: uri.to_string(),
            vias: c.vias,
            routes: c.routes,
            record_routes: c.record_routes,
            max_forwards: c.max_forwards,
            headers: c.headers,
            body: msg.body().to_vec(),
            from: c.from.ok_or(FromMessageError::Missing(HeaderName::From))?,
            to: c.to.ok_or(FromMessageError::Missing(HeaderName::To))?,
            call_id: c
                .call_id
                .ok_or(FromMessageError::Missing(HeaderName::CallId))?,
            cseq,
        };
        Ok(Self::from_message_parts(parts, msg))
    }
}

impl TryFrom<&Message> for TxResponse {
    type Error = FromMessageError;

    fn try_from(msg: &Message) -> Result<Self, Self::Error> {
        let status = msg.status().ok_or(FromMessageError::NotAResponse)?;
        let cseq = msg.cseq()?;
        let c = common(msg)?;
        let parts = ResponseParts {
            status: status.0,
            reason: msg.reason().unwrap_or("").to_string(),
            vias: c.vias,
            record_routes: c.record_routes,
            headers: c.headers,
            body: msg.body().to_vec(),
            from: c.from.ok_or(FromMessageError::Missing(HeaderName::From))?,
            to: c.to.ok_or(FromMessageError::Missing(HeaderName::To))?,
            call_id: c
                .call_id
                .ok_or(FromMessageError::Missing(HeaderName::CallId))?,
            cseq: cseq.seq,
            cseq_method: cseq.method_str.to_string(),
        };
        Ok(Self::from_message_parts(parts, msg))
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
}
