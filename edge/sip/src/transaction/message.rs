//! The transaction layer's view of a message (RFC 3261 §17.1.3 / §17.2.3): only what matching
//! needs (method, top Via branch and sent-by, CSeq, From/To tags, Call-ID, Request-URI, status),
//! the few raw header values needed to build an ACK for a non-2xx final (§17.1.1.3), a CANCEL
//! (§9.1) or a 100 Trying (§8.2.6), and the serialized bytes kept for retransmission.
//!
//! The full message model (parser, serializer) lives in the message modules; this is the
//! compact projection the transaction table keys on, so that the table never reparses.

use std::sync::Arc;

use bytes::Bytes;

use crate::Message;
use std::fmt::Write as _;

/// RFC 3261 §8.1.1.7: the magic cookie that marks an RFC 3261 branch.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// The method classes the transaction layer treats differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MethodKind {
    /// INVITE: INVITE client/server transactions.
    Invite,
    /// ACK: never creates a transaction; matches an INVITE server transaction.
    Ack,
    /// CANCEL: its own non-INVITE transaction, matched to its INVITE (§9.2).
    Cancel,
    /// Any other method: non-INVITE transactions.
    Other,
}

impl MethodKind {
    /// Classify a method name (case-sensitive, §7.1).
    pub fn of(name: &str) -> Self {
        match name {
            "INVITE" => Self::Invite,
            "ACK" => Self::Ack,
            "CANCEL" => Self::Cancel,
            _ => Self::Other,
        }
    }
}

/// A request as the transaction layer sees it. Cloning is a reference-count increment: the
/// table keeps a copy for retransmission and hands others to the transport and the TU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRequest(Arc<RequestData>);

#[derive(Debug, PartialEq, Eq)]
struct RequestData {
    top: ViaSpans,
    method: Box<str>,
    uri: Box<str>,
    vias: Vec<Box<str>>,
    routes: Vec<Box<str>>,
    record_routes: Vec<Box<str>>,
    max_forwards: Option<u32>,
    headers: Vec<(Box<str>, Box<str>)>,
    body: Box<[u8]>,
    from: Box<str>,
    to: Box<str>,
    call_id: Box<str>,
    cseq: u32,
    /// Serialized message, sent as is on every (re)transmission.
    bytes: Bytes,
    /// The parsed view of `bytes` when it came from the message layer (received, or written
    /// by the [`crate::Editor`]): the proxy edits it instead of re-encoding the parts.
    view: View,
}

/// The message-layer view of a transaction message, if it has one. Equality is the bytes'.
#[derive(Debug, Clone, Default)]
struct View(Option<Message>);

impl PartialEq for View {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for View {}

/// A response as the transaction layer sees it (cheap to clone, like [`TxRequest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxResponse(Arc<ResponseData>);

#[derive(Debug, PartialEq, Eq)]
struct ResponseData {
    top: ViaSpans,
    status: u16,
    reason: Box<str>,
    vias: Vec<Box<str>>,
    record_routes: Vec<Box<str>>,
    headers: Vec<(Box<str>, Box<str>)>,
    body: Box<[u8]>,
    from: Box<str>,
    to: Box<str>,
    call_id: Box<str>,
    cseq: u32,
    cseq_method: Box<str>,
    bytes: Bytes,
    view: View,
}

/// Header field values a request is built from (raw text, as on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestParts {
    /// Method name (`INVITE`).
    pub method: String,
    /// Request-URI text.
    pub uri: String,
    /// Via values, top first.
    pub vias: Vec<String>,
    /// Route values, top first.
    pub routes: Vec<String>,
    /// Record-Route values, top first.
    pub record_routes: Vec<String>,
    /// Max-Forwards, if present (the encoder writes 70 when absent).
    pub max_forwards: Option<u32>,
    /// Every other header field as (name, value), in order.
    pub headers: Vec<(String, String)>,
    /// Message body.
    pub body: Vec<u8>,
    /// From value (with tag).
    pub from: String,
    /// To value.
    pub to: String,
    /// Call-ID value.
    pub call_id: String,
    /// CSeq sequence number (the method is `method`).
    pub cseq: u32,
}

impl TxRequest {
    /// A request from its parts, serialized by the minimal encoder (`Max-Forwards: 70`, no body).
    pub fn build(parts: RequestParts) -> Self {
        let mut data = RequestData::new(parts, Bytes::new());
        data.bytes = Bytes::from(data.encode());
        Self(Arc::new(data))
    }

    /// A request from its parts and its serialized form as received or produced by the
    /// serializer (the bytes are not checked against the parts).
    pub fn from_parts(parts: RequestParts, bytes: Bytes) -> Self {
        Self(Arc::new(RequestData::new(parts, bytes)))
    }

    /// A request from its parts and the message they were read from (bytes and view shared).
    pub(crate) fn from_message_parts(parts: RequestParts, msg: &Message) -> Self {
        let mut data = RequestData::new(parts, msg.bytes().clone());
        data.view = View(Some(msg.clone()));
        Self(Arc::new(data))
    }

    /// These parts (processed by the proxy core) over this request's bytes and view.
    pub(crate) fn with_parts(&self, parts: RequestParts) -> Self {
        let mut data = RequestData::new(parts, self.0.bytes.clone());
        data.view = self.0.view.clone();
        Self(Arc::new(data))
    }

    /// The message-layer view of the bytes, when the request came from the message layer.
    pub fn message(&self) -> Option<&Message> {
        self.0.view.0.as_ref()
    }

    /// The parts this request was built from (to edit and [`Self::build`] again).
    pub fn parts(&self) -> RequestParts {
        RequestParts {
            method: self.0.method.to_string(),
            uri: self.0.uri.to_string(),
            vias: strings(&self.0.vias),
            routes: strings(&self.0.routes),
            record_routes: strings(&self.0.record_routes),
            max_forwards: self.0.max_forwards,
            headers: owned_pairs(&self.0.headers),
            body: self.0.body.to_vec(),
            from: self.0.from.to_string(),
            to: self.0.to.to_string(),
            call_id: self.0.call_id.to_string(),
            cseq: self.0.cseq,
        }
    }

    /// Record-Route values, top first.
    pub fn record_routes(&self) -> &[Box<str>] {
        &self.0.record_routes
    }
    /// Max-Forwards, if present.
    pub fn max_forwards(&self) -> Option<u32> {
        self.0.max_forwards
    }
    /// Values of the other header fields named `name` (case-insensitive).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        named(&self.0.headers, name)
    }
    /// Body.
    pub fn body(&self) -> &[u8] {
        &self.0.body
    }

    /// Method name.
    pub fn method(&self) -> &str {
        &self.0.method
    }
    /// Method class.
    pub fn kind(&self) -> MethodKind {
        MethodKind::of(&self.0.method)
    }
    /// Request-URI text.
    pub fn uri(&self) -> &str {
        &self.0.uri
    }
    /// Via values, top first.
    pub fn vias(&self) -> &[Box<str>] {
        &self.0.vias
    }
    /// Route values, top first.
    pub fn routes(&self) -> &[Box<str>] {
        &self.0.routes
    }
    /// From value.
    pub fn from_value(&self) -> &str {
        &self.0.from
    }
    /// To value.
    pub fn to_value(&self) -> &str {
        &self.0.to
    }
    /// Call-ID.
    pub fn call_id(&self) -> &str {
        &self.0.call_id
    }
    /// CSeq number.
    pub fn cseq(&self) -> u32 {
        self.0.cseq
    }
    /// Serialized bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.0.bytes
    }
    /// `branch` of the top Via.
    pub fn branch(&self) -> Option<&str> {
        self.0.top.branch(&self.0.vias)
    }
    /// sent-by (`host[:port]`) of the top Via.
    pub fn sent_by(&self) -> &str {
        self.0.top.sent_by(&self.0.vias)
    }
    /// From tag.
    pub fn from_tag(&self) -> Option<&str> {
        header_param(&self.0.from, "tag")
    }
    /// To tag.
    pub fn to_tag(&self) -> Option<&str> {
        header_param(&self.0.to, "tag")
    }

    /// The ACK a client transaction sends for a non-2xx final `response` (§17.1.1.3): same
    /// Request-URI, Call-ID, From, CSeq number and Route set, only the top Via, To of the response.
    pub fn ack_for(&self, response: &TxResponse) -> Self {
        Self::build(RequestParts {
            method: "ACK".into(),
            uri: self.0.uri.to_string(),
            vias: self.0.vias.iter().take(1).map(|v| v.to_string()).collect(),
            routes: self.0.routes.iter().map(|v| v.to_string()).collect(),
            from: self.0.from.to_string(),
            to: response.0.to.to_string(),
            call_id: self.0.call_id.to_string(),
            cseq: self.0.cseq,
            ..RequestParts::default()
        })
    }

    /// The CANCEL for this request (§9.1): same Request-URI, Call-ID, From, To, CSeq number,
    /// Route set and top Via only.
    pub fn cancel(&self) -> Self {
        Self::build(RequestParts {
            method: "CANCEL".into(),
            uri: self.0.uri.to_string(),
            vias: self.0.vias.iter().take(1).map(|v| v.to_string()).collect(),
            routes: self.0.routes.iter().map(|v| v.to_string()).collect(),
            from: self.0.from.to_string(),
            to: self.0.to.to_string(),
            call_id: self.0.call_id.to_string(),
            cseq: self.0.cseq,
            ..RequestParts::default()
        })
    }
}

impl RequestData {
    fn new(parts: RequestParts, bytes: Bytes) -> Self {
        let vias: Vec<Box<str>> = parts.vias.into_iter().map(Into::into).collect();
        Self {
            top: ViaSpans::of(&vias),
            method: parts.method.into(),
            uri: parts.uri.into(),
            vias,
            routes: parts.routes.into_iter().map(Into::into).collect(),
            record_routes: parts.record_routes.into_iter().map(Into::into).collect(),
            max_forwards: parts.max_forwards,
            headers: pairs(parts.headers),
            body: parts.body.into(),
            from: parts.from.into(),
            to: parts.to.into(),
            call_id: parts.call_id.into(),
            cseq: parts.cseq,
            bytes,
            view: View::default(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut s = String::with_capacity(256);
        let _ = write!(s, "{} {} SIP/2.0\r\n", self.method, self.uri);
        for v in &self.vias {
            let _ = write!(s, "Via: {v}\r\n");
        }
        for r in &self.routes {
            let _ = write!(s, "Route: {r}\r\n");
        }
        for r in &self.record_routes {
            let _ = write!(s, "Record-Route: {r}\r\n");
        }
        let _ = write!(
            s,
            "Max-Forwards: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {}\r\n",
            self.max_forwards.unwrap_or(70),
            self.from,
            self.to,
            self.call_id,
            self.cseq,
            self.method
        );
        encode_tail(&mut s, &self.headers, &self.body)
    }
}

/// Header field values a response is built from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseParts {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Via values, top first.
    pub vias: Vec<String>,
    /// Record-Route values, top first.
    pub record_routes: Vec<String>,
    /// Every other header field as (name, value), in order.
    pub headers: Vec<(String, String)>,
    /// Message body.
    pub body: Vec<u8>,
    /// From value.
    pub from: String,
    /// To value.
    pub to: String,
    /// Call-ID.
    pub call_id: String,
    /// CSeq number.
    pub cseq: u32,
    /// CSeq method.
    pub cseq_method: String,
}

impl TxResponse {
    /// A response from its parts, serialized by the minimal encoder.
    pub fn build(parts: ResponseParts) -> Self {
        let mut data = ResponseData::new(parts, Bytes::new());
        data.bytes = Bytes::from(data.encode());
        Self(Arc::new(data))
    }

    /// A response from its parts and its serialized form.
    pub fn from_parts(parts: ResponseParts, bytes: Bytes) -> Self {
        Self(Arc::new(ResponseData::new(parts, bytes)))
    }

    /// A response from its parts and the message they were read from.
    pub(crate) fn from_message_parts(parts: ResponseParts, msg: &Message) -> Self {
        let mut data = ResponseData::new(parts, msg.bytes().clone());
        data.view = View(Some(msg.clone()));
        Self(Arc::new(data))
    }

    /// The message-layer view of the bytes, when the response came from the message layer.
    pub fn message(&self) -> Option<&Message> {
        self.0.view.0.as_ref()
    }

    /// The parts this response was built from.
    pub fn parts(&self) -> ResponseParts {
        ResponseParts {
            status: self.0.status,
            reason: self.0.reason.to_string(),
            vias: strings(&self.0.vias),
            record_routes: strings(&self.0.record_routes),
            headers: owned_pairs(&self.0.headers),
            body: self.0.body.to_vec(),
            from: self.0.from.to_string(),
            to: self.0.to.to_string(),
            call_id: self.0.call_id.to_string(),
            cseq: self.0.cseq,
            cseq_method: self.0.cseq_method.to_string(),
        }
    }

    /// Record-Route values, top first.
    pub fn record_routes(&self) -> &[Box<str>] {
        &self.0.record_routes
    }
    /// Values of the other header fields named `name` (case-insensitive).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        named(&self.0.headers, name)
    }
    /// Body.
    pub fn body(&self) -> &[u8] {
        &self.0.body
    }

    /// A response to `request` (§8.2.6.2): Via, From, Call-ID, CSeq, Record-Route copied; To copied and given
    /// `to_tag` when it has none and one is passed.
    pub fn to_request(
        request: &TxRequest,
        status: u16,
        reason: &str,
        to_tag: Option<&str>,
    ) -> Self {
        let mut to = request.0.to.to_string();
        if let Some(tag) = to_tag
            && request.to_tag().is_none()
        {
            let _ = write!(to, ";tag={tag}");
        }
        Self::build(ResponseParts {
            status,
            reason: reason.into(),
            vias: request.0.vias.iter().map(|v| v.to_string()).collect(),
            from: request.0.from.to_string(),
            to,
            call_id: request.0.call_id.to_string(),
            cseq: request.0.cseq,
            cseq_method: request.0.method.to_string(),
            // §12.1.1: the UAS copies Record-Route into the response.
            record_routes: strings(&request.0.record_routes),
            ..ResponseParts::default()
        })
    }

    /// Status code.
    pub fn status(&self) -> u16 {
        self.0.status
    }
    /// Reason phrase.
    pub fn reason(&self) -> &str {
        &self.0.reason
    }
    /// Via values, top first.
    pub fn vias(&self) -> &[Box<str>] {
        &self.0.vias
    }
    /// From value.
    pub fn from_value(&self) -> &str {
        &self.0.from
    }
    /// To value.
    pub fn to_value(&self) -> &str {
        &self.0.to
    }
    /// To tag.
    pub fn to_tag(&self) -> Option<&str> {
        header_param(&self.0.to, "tag")
    }
    /// Call-ID.
    pub fn call_id(&self) -> &str {
        &self.0.call_id
    }
    /// CSeq number.
    pub fn cseq(&self) -> u32 {
        self.0.cseq
    }
    /// CSeq method.
    pub fn cseq_method(&self) -> &str {
        &self.0.cseq_method
    }
    /// Serialized bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.0.bytes
    }
    /// `branch` of the top Via.
    pub fn branch(&self) -> Option<&str> {
        self.0.top.branch(&self.0.vias)
    }
    /// This response with its top Via removed: the received bytes edited when it has a
    /// message-layer view, else re-serialized by the minimal encoder.
    pub fn without_top_via(&self) -> Self {
        // Received: the same bytes minus the Via line's first value (an edit, no re-encode).
        if let Some(m) = self.message()
            && let Ok(out) = crate::proxy::relay_response(m)
            && let Ok(r) = Self::try_from(&out)
        {
            return r;
        }
        let mut parts = self.parts();
        if !parts.vias.is_empty() {
            parts.vias.remove(0);
        }
        Self::build(parts)
    }
}

impl ResponseData {
    fn new(parts: ResponseParts, bytes: Bytes) -> Self {
        let vias: Vec<Box<str>> = parts.vias.into_iter().map(Into::into).collect();
        Self {
            top: ViaSpans::of(&vias),
            status: parts.status,
            reason: parts.reason.into(),
            vias,
            record_routes: parts.record_routes.into_iter().map(Into::into).collect(),
            headers: pairs(parts.headers),
            body: parts.body.into(),
            from: parts.from.into(),
            to: parts.to.into(),
            call_id: parts.call_id.into(),
            cseq: parts.cseq,
            cseq_method: parts.cseq_method.into(),
            bytes,
            view: View::default(),
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut s = String::with_capacity(256);
        let _ = write!(s, "SIP/2.0 {} {}\r\n", self.status, self.reason);
        for v in &self.vias {
            let _ = write!(s, "Via: {v}\r\n");
        }
        for r in &self.record_routes {
            let _ = write!(s, "Record-Route: {r}\r\n");
        }
        let _ = write!(
            s,
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {}\r\n",
            self.from, self.to, self.call_id, self.cseq, self.cseq_method
        );
        encode_tail(&mut s, &self.headers, &self.body)
    }
}

/// Where the branch and sent-by of the top Via are, computed once per message so that
/// matching does not rescan the Via text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ViaSpans {
    branch: Option<std::ops::Range<usize>>,
    sent_by: std::ops::Range<usize>,
}

impl ViaSpans {
    fn of(vias: &[Box<str>]) -> Self {
        let Some(top) = vias.first() else {
            return Self::default();
        };
        let base = top.as_ptr() as usize;
        let span = |sub: &str| {
            let start = sub.as_ptr() as usize - base;
            start..start + sub.len()
        };
        Self {
            branch: header_param(top, "branch").map(span),
            sent_by: span(via_sent_by(top)),
        }
    }

    fn branch<'a>(&self, vias: &'a [Box<str>]) -> Option<&'a str> {
        let r = self.branch.clone()?;
        vias.first()?.get(r)
    }

    fn sent_by<'a>(&self, vias: &'a [Box<str>]) -> &'a str {
        vias.first()
            .and_then(|v| v.get(self.sent_by.clone()))
            .unwrap_or("")
    }
}

fn pairs(v: Vec<(String, String)>) -> Vec<(Box<str>, Box<str>)> {
    v.into_iter().map(|(k, v)| (k.into(), v.into())).collect()
}

fn owned_pairs(v: &[(Box<str>, Box<str>)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn strings(v: &[Box<str>]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn named<'a>(
    headers: &'a [(Box<str>, Box<str>)],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| &**v)
}

/// Other headers, Content-Length and the body, after the head already in `s`.
fn encode_tail(s: &mut String, headers: &[(Box<str>, Box<str>)], body: &[u8]) -> Vec<u8> {
    for (k, v) in headers {
        let _ = write!(s, "{k}: {v}\r\n");
    }
    let _ = write!(s, "Content-Length: {}\r\n\r\n", body.len());
    let mut out = std::mem::take(s).into_bytes();
    out.extend_from_slice(body);
    out
}

/// The value of parameter `name` in a header value such as `<sip:a@b>;tag=x` or
/// `SIP/2.0/UDP h;branch=y` (parameters after the URI's closing `>` or, without `<>`, after the
/// first `;`). Names compare case-insensitively; a flag parameter yields `Some("")`.
pub fn header_param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    params.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// sent-by (`host[:port]`) of a Via value `SIP/2.0/UDP host:port;params`.
pub fn via_sent_by(via: &str) -> &str {
    let rest = via.trim_start();
    let after_proto = rest
        .split_once(char::is_whitespace)
        .map_or(rest, |(_, r)| r);
    let end = after_proto.find([';', ',']).unwrap_or(after_proto.len());
    after_proto[..end].trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_sent_by() {
        let via = "SIP/2.0/UDP pc33.atlanta.com:5060 ;branch=z9hG4bK776 ;rport";
        assert_eq!(via_sent_by(via), "pc33.atlanta.com:5060");
        assert_eq!(header_param(via, "branch"), Some("z9hG4bK776"));
        assert_eq!(header_param(via, "rport"), Some(""));
        assert_eq!(
            header_param("\"A;b\" <sip:a@b;tag=no>;tag=yes", "tag"),
            Some("yes")
        );
        assert_eq!(header_param("<sip:a@b;tag=no>", "tag"), None);
    }
}
