//! The transaction layer's view of a message (RFC 3261 §17.1.3 / §17.2.3): only what matching
//! needs (method, top Via branch and sent-by, CSeq, From/To tags, Call-ID, Request-URI, status),
//! the few raw header values needed to build an ACK for a non-2xx final (§17.1.1.3), a CANCEL
//! (§9.1) or a 100 Trying (§8.2.6), and the serialized bytes kept for retransmission.
//!
//! The full message model (parser, serializer) lives in the message modules; this is the
//! compact projection the transaction table keys on, so that the table never reparses.

use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::syntax::split_commas;
use crate::{HeaderName, Message};

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
        Self::of_bytes(name.as_bytes())
    }

    fn of_bytes(name: &[u8]) -> Self {
        match name {
            b"INVITE" => Self::Invite,
            b"ACK" => Self::Ack,
            b"CANCEL" => Self::Cancel,
            _ => Self::Other,
        }
    }
}

/// A request as the transaction layer sees it. Cloning is a reference-count increment: the
/// table keeps a copy for retransmission and hands others to the transport and the TU.
///
/// A request read from the message layer ([`TryFrom<&Message>`]) is that message plus byte
/// ranges of what matching needs: no header is copied. The header lists ([`Self::vias`],
/// [`Self::routes`], [`Self::header_values`], [`Self::parts`]) are copied out only when
/// asked, once. A request built from [`RequestParts`] owns its parts.
#[derive(Debug, Clone)]
pub struct TxRequest(Arc<RequestRepr>);

#[derive(Debug)]
enum RequestRepr {
    Parts(RequestData),
    View(RequestView),
}

impl PartialEq for TxRequest {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.bytes() == other.bytes() && self.parts() == other.parts())
    }
}

impl Eq for TxRequest {}

#[derive(Debug)]
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
    view: Option<Message>,
}

/// A byte range of a message's bytes (UTF-8 checked when the view was made).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sp(pub(crate) u32, pub(crate) u32);

impl Sp {
    /// The range of `sub`, a subslice of `base`.
    pub(crate) fn of(base: &[u8], sub: &[u8]) -> Self {
        let start = (sub.as_ptr() as usize).saturating_sub(base.as_ptr() as usize);
        Self(start as u32, (start + sub.len()) as u32)
    }

    fn bytes(self, m: &Message) -> &[u8] {
        m.as_bytes()
            .get(self.0 as usize..self.1 as usize)
            .unwrap_or(b"")
    }

    fn get(self, m: &Message) -> &str {
        m.as_bytes()
            .get(self.0 as usize..self.1 as usize)
            .and_then(|b| m.text(b))
            .unwrap_or("")
    }
}

/// The header lists of a viewed message, copied out on first use.
#[derive(Debug, Default)]
pub(crate) struct Lists {
    pub(crate) vias: Vec<Box<str>>,
    pub(crate) routes: Vec<Box<str>>,
    pub(crate) record_routes: Vec<Box<str>>,
    pub(crate) headers: Vec<(Box<str>, Box<str>)>,
}

/// A received (or edited) request: its message and where its matching fields are.
#[derive(Debug)]
pub(crate) struct RequestView {
    pub(crate) msg: Message,
    pub(crate) method: Sp,
    pub(crate) uri: Sp,
    pub(crate) from: Sp,
    pub(crate) to: Sp,
    pub(crate) call_id: Sp,
    /// The first Via value.
    pub(crate) top_via: Sp,
    /// The top Via with `received`/`rport` stamped by the proxy (§18.2.1), when it differs.
    pub(crate) stamped: Option<Box<str>>,
    /// Branch and sent-by within the current top Via (`stamped` or `top_via`).
    pub(crate) top: ViaSpans,
    pub(crate) cseq: u32,
    pub(crate) max_forwards: Option<u32>,
    /// Route values popped by the proxy's §16.4 processing (they name us).
    pub(crate) popped: u16,
    pub(crate) lists: OnceLock<Box<Lists>>,
}

impl RequestView {
    fn top_via(&self) -> &str {
        match &self.stamped {
            Some(v) => v,
            None => self.top_via.get(&self.msg),
        }
    }

    fn lists(&self) -> &Lists {
        self.lists.get_or_init(|| {
            let mut l = lists_of(&self.msg);
            if let (Some(s), Some(top)) = (&self.stamped, l.vias.first_mut()) {
                *top = s.clone();
            }
            let popped = usize::from(self.popped).min(l.routes.len());
            l.routes.drain(..popped);
            Box::new(l)
        })
    }
}

/// Copy the header lists out of a message (values split at top-level commas, §7.3.1).
pub(crate) fn lists_of(msg: &Message) -> Lists {
    let mut l = Lists::default();
    for f in msg.headers() {
        let Some(v) = f.value_str() else {
            continue;
        };
        match f.name {
            HeaderName::Via => split_into(&mut l.vias, v),
            HeaderName::Route => split_into(&mut l.routes, v),
            HeaderName::RecordRoute => split_into(&mut l.record_routes, v),
            HeaderName::MaxForwards
            | HeaderName::From
            | HeaderName::To
            | HeaderName::CallId
            | HeaderName::CSeq
            | HeaderName::ContentLength => {}
            HeaderName::Other => l.headers.push((f.name_str().into(), v.into())),
            name => l.headers.push((name.as_str().into(), v.into())),
        }
    }
    l
}

fn split_into(out: &mut Vec<Box<str>>, value: &str) {
    for r in split_commas(value.as_bytes()) {
        if let Some(v) = value.get(r)
            && !v.is_empty()
        {
            out.push(v.into());
        }
    }
}

/// The non-empty top-level values of every `name` line of `msg`, in order.
fn values_of(msg: &Message, name: HeaderName) -> impl Iterator<Item = &str> + '_ {
    msg.headers_named(name).flat_map(|f| {
        let v = f.value_str().unwrap_or("");
        split_commas(v.as_bytes())
            .filter_map(move |r| v.get(r))
            .filter(|v| !v.is_empty())
    })
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
        Self(Arc::new(RequestRepr::Parts(data)))
    }

    /// A request from its parts and its serialized form as received or produced by the
    /// serializer (the bytes are not checked against the parts).
    pub fn from_parts(parts: RequestParts, bytes: Bytes) -> Self {
        Self(Arc::new(RequestRepr::Parts(RequestData::new(parts, bytes))))
    }

    /// A request viewing a message (see [`TryFrom<&Message>`]).
    pub(crate) fn from_view(view: RequestView) -> Self {
        Self(Arc::new(RequestRepr::View(view)))
    }

    /// These parts (processed by the proxy core) over this request's bytes and view.
    pub(crate) fn with_parts(&self, parts: RequestParts) -> Self {
        let mut data = RequestData::new(parts, self.bytes().clone());
        data.view = self.message().cloned();
        Self(Arc::new(RequestRepr::Parts(data)))
    }

    /// This request with its top Via replaced by `stamped` (the proxy's `received`/`rport`,
    /// §18.2.1); the bytes stay the received ones, the relayed copy writes the new value.
    pub(crate) fn with_top_via(self, stamped: String) -> Self {
        match self.into_view() {
            Ok(mut v) => {
                v.top = ViaSpans::of_str(&stamped);
                v.stamped = Some(stamped.into());
                Self::from_view(v)
            }
            Err(r) => {
                let mut parts = r.parts();
                if let Some(top) = parts.vias.first_mut() {
                    *top = stamped;
                }
                r.with_parts(parts)
            }
        }
    }

    /// The view of this request to change (moved out when not shared, else a copy of the
    /// index; the bytes stay shared), or the request itself when it owns parts.
    fn into_view(self) -> Result<RequestView, Self> {
        match Arc::try_unwrap(self.0) {
            Ok(RequestRepr::View(mut v)) => {
                v.lists = OnceLock::new();
                Ok(v)
            }
            Ok(repr) => Err(Self(Arc::new(repr))),
            Err(shared) => match &*shared {
                RequestRepr::View(v) => Ok(RequestView {
                    msg: v.msg.clone(),
                    stamped: v.stamped.clone(),
                    top: v.top.clone(),
                    lists: OnceLock::new(),
                    ..*v
                }),
                RequestRepr::Parts(_) => Err(Self(shared)),
            },
        }
    }

    /// This request with its first `n` Route values removed (§16.4: they name us).
    pub(crate) fn with_popped_routes(self, n: usize) -> Self {
        if n == 0 {
            return self;
        }
        match self.into_view() {
            Ok(mut v) => {
                v.popped = v
                    .popped
                    .saturating_add(u16::try_from(n).unwrap_or(u16::MAX));
                Self::from_view(v)
            }
            Err(r) => {
                let mut parts = r.parts();
                let n = n.min(parts.routes.len());
                parts.routes.drain(..n);
                r.with_parts(parts)
            }
        }
    }

    /// The message-layer view of the bytes, when the request came from the message layer.
    pub fn message(&self) -> Option<&Message> {
        match &*self.0 {
            RequestRepr::Parts(d) => d.view.as_ref(),
            RequestRepr::View(v) => Some(&v.msg),
        }
    }

    /// The parts this request was built from (to edit and [`Self::build`] again).
    pub fn parts(&self) -> RequestParts {
        RequestParts {
            method: self.method().to_string(),
            uri: self.uri().to_string(),
            vias: strings(self.vias()),
            routes: strings(self.routes()),
            record_routes: strings(self.record_routes()),
            max_forwards: self.max_forwards(),
            headers: owned_pairs(self.headers()),
            body: self.body().to_vec(),
            from: self.from_value().to_string(),
            to: self.to_value().to_string(),
            call_id: self.call_id().to_string(),
            cseq: self.cseq(),
        }
    }

    fn headers(&self) -> &[(Box<str>, Box<str>)] {
        match &*self.0 {
            RequestRepr::Parts(d) => &d.headers,
            RequestRepr::View(v) => &v.lists().headers,
        }
    }

    /// Record-Route values, top first.
    pub fn record_routes(&self) -> &[Box<str>] {
        match &*self.0 {
            RequestRepr::Parts(d) => &d.record_routes,
            RequestRepr::View(v) => &v.lists().record_routes,
        }
    }
    /// Max-Forwards, if present.
    pub fn max_forwards(&self) -> Option<u32> {
        match &*self.0 {
            RequestRepr::Parts(d) => d.max_forwards,
            RequestRepr::View(v) => v.max_forwards,
        }
    }
    /// Values of the header fields named `name` other than Via, Route, Record-Route, From,
    /// To, Call-ID, CSeq, Max-Forwards and Content-Length, read from the message without
    /// copying the header lists out (as [`Self::header_values`] gives them).
    pub(crate) fn values_named(&self, name: HeaderName) -> impl Iterator<Item = &str> + '_ {
        let (parts, view) = match &*self.0 {
            RequestRepr::Parts(d) => (Some(named(&d.headers, name.as_str())), None),
            RequestRepr::View(v) => (
                None,
                Some(v.msg.headers_named(name).filter_map(|f| f.value_str())),
            ),
        };
        parts
            .into_iter()
            .flatten()
            .chain(view.into_iter().flatten())
    }
    /// Values of the other header fields named `name` (case-insensitive).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        named(self.headers(), name)
    }
    /// Body.
    pub fn body(&self) -> &[u8] {
        match &*self.0 {
            RequestRepr::Parts(d) => &d.body,
            RequestRepr::View(v) => v.msg.body(),
        }
    }

    /// Method name.
    pub fn method(&self) -> &str {
        match &*self.0 {
            RequestRepr::Parts(d) => &d.method,
            RequestRepr::View(v) => v.method.get(&v.msg),
        }
    }
    /// Method class.
    pub fn kind(&self) -> MethodKind {
        match &*self.0 {
            RequestRepr::Parts(d) => MethodKind::of(&d.method),
            // The method's bytes, not its text: no UTF-8 pass per call (issue 16).
            RequestRepr::View(v) => MethodKind::of_bytes(v.method.bytes(&v.msg)),
        }
    }
    /// Request-URI text.
    pub fn uri(&self) -> &str {
        match &*self.0 {
            RequestRepr::Parts(d) => &d.uri,
            RequestRepr::View(v) => v.uri.get(&v.msg),
        }
    }
    /// Via values, top first.
    pub fn vias(&self) -> &[Box<str>] {
        match &*self.0 {
            RequestRepr::Parts(d) => &d.vias,
            RequestRepr::View(v) => &v.lists().vias,
        }
    }
    /// The top Via value (no copy).
    pub fn top_via(&self) -> Option<&str> {
        match &*self.0 {
            RequestRepr::Parts(d) => d.vias.first().map(|v| &**v),
            RequestRepr::View(v) => Some(v.top_via()),
        }
    }
    /// Every Via value, top first, without copying them.
    pub fn via_values(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match &*self.0 {
            RequestRepr::Parts(d) => Box::new(d.vias.iter().map(|v| &**v)),
            RequestRepr::View(v) => Box::new(
                std::iter::once(v.top_via()).chain(values_of(&v.msg, HeaderName::Via).skip(1)),
            ),
        }
    }
    /// Route values, top first.
    pub fn routes(&self) -> &[Box<str>] {
        match &*self.0 {
            RequestRepr::Parts(d) => &d.routes,
            RequestRepr::View(v) => &v.lists().routes,
        }
    }
    /// Every Route value, top first, without copying them.
    pub fn route_values(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match &*self.0 {
            RequestRepr::Parts(d) => Box::new(d.routes.iter().map(|v| &**v)),
            RequestRepr::View(v) => {
                Box::new(values_of(&v.msg, HeaderName::Route).skip(usize::from(v.popped)))
            }
        }
    }
    /// From value.
    pub fn from_value(&self) -> &str {
        match &*self.0 {
            RequestRepr::Parts(d) => &d.from,
            RequestRepr::View(v) => v.from.get(&v.msg),
        }
    }
    /// To value.
    pub fn to_value(&self) -> &str {
        match &*self.0 {
            RequestRepr::Parts(d) => &d.to,
            RequestRepr::View(v) => v.to.get(&v.msg),
        }
    }
    /// Call-ID.
    pub fn call_id(&self) -> &str {
        match &*self.0 {
            RequestRepr::Parts(d) => &d.call_id,
            RequestRepr::View(v) => v.call_id.get(&v.msg),
        }
    }
    /// CSeq number.
    pub fn cseq(&self) -> u32 {
        match &*self.0 {
            RequestRepr::Parts(d) => d.cseq,
            RequestRepr::View(v) => v.cseq,
        }
    }
    /// Serialized bytes.
    pub fn bytes(&self) -> &Bytes {
        match &*self.0 {
            RequestRepr::Parts(d) => &d.bytes,
            RequestRepr::View(v) => v.msg.bytes(),
        }
    }
    /// `branch` of the top Via.
    pub fn branch(&self) -> Option<&str> {
        match &*self.0 {
            RequestRepr::Parts(d) => d.top.branch(&d.vias),
            RequestRepr::View(v) => v.top.branch_in(v.top_via()),
        }
    }
    /// sent-by (`host[:port]`) of the top Via.
    pub fn sent_by(&self) -> &str {
        match &*self.0 {
            RequestRepr::Parts(d) => d.top.sent_by(&d.vias),
            RequestRepr::View(v) => v.top.sent_by_in(v.top_via()),
        }
    }
    /// From tag.
    pub fn from_tag(&self) -> Option<&str> {
        header_param(self.from_value(), "tag")
    }
    /// To tag.
    pub fn to_tag(&self) -> Option<&str> {
        header_param(self.to_value(), "tag")
    }

    /// The ACK a client transaction sends for a non-2xx final `response` (§17.1.1.3): same
    /// Request-URI, Call-ID, From, CSeq number and Route set, only the top Via, To of the response.
    pub fn ack_for(&self, response: &TxResponse) -> Self {
        Self::build(RequestParts {
            method: "ACK".into(),
            uri: self.uri().to_string(),
            vias: self.top_via().map(str::to_string).into_iter().collect(),
            routes: self.route_values().map(str::to_string).collect(),
            from: self.from_value().to_string(),
            to: response.to_value().to_string(),
            call_id: self.call_id().to_string(),
            cseq: self.cseq(),
            ..RequestParts::default()
        })
    }

    /// The CANCEL for this request (§9.1): same Request-URI, Call-ID, From, To, CSeq number,
    /// Route set and top Via only.
    pub fn cancel(&self) -> Self {
        Self::build(RequestParts {
            method: "CANCEL".into(),
            uri: self.uri().to_string(),
            vias: self.top_via().map(str::to_string).into_iter().collect(),
            routes: self.route_values().map(str::to_string).collect(),
            from: self.from_value().to_string(),
            to: self.to_value().to_string(),
            call_id: self.call_id().to_string(),
            cseq: self.cseq(),
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
            view: None,
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

/// A response as the transaction layer sees it (cheap to clone, like [`TxRequest`]; a
/// received one is its message plus byte ranges, like a received request).
#[derive(Debug, Clone)]
pub struct TxResponse(Arc<ResponseRepr>);

#[derive(Debug)]
enum ResponseRepr {
    Parts(ResponseData),
    View(ResponseView),
}

impl PartialEq for TxResponse {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (self.bytes() == other.bytes() && self.parts() == other.parts())
    }
}

impl Eq for TxResponse {}

#[derive(Debug)]
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
}

/// A received (or edited) response: its message and where its matching fields are.
#[derive(Debug)]
pub(crate) struct ResponseView {
    pub(crate) msg: Message,
    pub(crate) status: u16,
    pub(crate) reason: Sp,
    pub(crate) from: Sp,
    pub(crate) to: Sp,
    pub(crate) call_id: Sp,
    pub(crate) top_via: Sp,
    pub(crate) top: ViaSpans,
    pub(crate) cseq: u32,
    pub(crate) cseq_method: Sp,
    pub(crate) lists: OnceLock<Box<Lists>>,
}

impl ResponseView {
    fn lists(&self) -> &Lists {
        self.lists.get_or_init(|| Box::new(lists_of(&self.msg)))
    }
}

impl TxResponse {
    /// A response from its parts, serialized by the minimal encoder.
    pub fn build(parts: ResponseParts) -> Self {
        let mut data = ResponseData::new(parts, Bytes::new());
        data.bytes = Bytes::from(data.encode());
        Self(Arc::new(ResponseRepr::Parts(data)))
    }

    /// A response from its parts and its serialized form.
    pub fn from_parts(parts: ResponseParts, bytes: Bytes) -> Self {
        Self(Arc::new(ResponseRepr::Parts(ResponseData::new(
            parts, bytes,
        ))))
    }

    /// A response viewing a message (see [`TryFrom<&Message>`]).
    pub(crate) fn from_view(view: ResponseView) -> Self {
        Self(Arc::new(ResponseRepr::View(view)))
    }

    /// The message-layer view of the bytes, when the response came from the message layer.
    pub fn message(&self) -> Option<&Message> {
        match &*self.0 {
            ResponseRepr::Parts(_) => None,
            ResponseRepr::View(v) => Some(&v.msg),
        }
    }

    /// The parts this response was built from.
    pub fn parts(&self) -> ResponseParts {
        ResponseParts {
            status: self.status(),
            reason: self.reason().to_string(),
            vias: strings(self.vias()),
            record_routes: strings(self.record_routes()),
            headers: owned_pairs(self.headers()),
            body: self.body().to_vec(),
            from: self.from_value().to_string(),
            to: self.to_value().to_string(),
            call_id: self.call_id().to_string(),
            cseq: self.cseq(),
            cseq_method: self.cseq_method().to_string(),
        }
    }

    fn headers(&self) -> &[(Box<str>, Box<str>)] {
        match &*self.0 {
            ResponseRepr::Parts(d) => &d.headers,
            ResponseRepr::View(v) => &v.lists().headers,
        }
    }

    /// Record-Route values, top first.
    pub fn record_routes(&self) -> &[Box<str>] {
        match &*self.0 {
            ResponseRepr::Parts(d) => &d.record_routes,
            ResponseRepr::View(v) => &v.lists().record_routes,
        }
    }
    /// Values of the other header fields named `name` (case-insensitive).
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        named(self.headers(), name)
    }
    /// Body.
    pub fn body(&self) -> &[u8] {
        match &*self.0 {
            ResponseRepr::Parts(d) => &d.body,
            ResponseRepr::View(v) => v.msg.body(),
        }
    }

    /// A response to `request` (§8.2.6.2): Via, From, Call-ID, CSeq, Record-Route copied; To copied and given
    /// `to_tag` when it has none and one is passed.
    pub fn to_request(
        request: &TxRequest,
        status: u16,
        reason: &str,
        to_tag: Option<&str>,
    ) -> Self {
        let mut to = request.to_value().to_string();
        if let Some(tag) = to_tag
            && request.to_tag().is_none()
        {
            let _ = write!(to, ";tag={tag}");
        }
        Self::build(ResponseParts {
            status,
            reason: reason.into(),
            vias: request.via_values().map(str::to_string).collect(),
            from: request.from_value().to_string(),
            to,
            call_id: request.call_id().to_string(),
            cseq: request.cseq(),
            cseq_method: request.method().to_string(),
            // §12.1.1: the UAS copies Record-Route into a response that establishes a
            // dialog (101-299); a 100 or an error carries none (it would only make a
            // spoofed request's answer bigger).
            record_routes: if (101..300).contains(&status) {
                strings(request.record_routes())
            } else {
                Vec::new()
            },
            ..ResponseParts::default()
        })
    }

    /// Status code.
    pub fn status(&self) -> u16 {
        match &*self.0 {
            ResponseRepr::Parts(d) => d.status,
            ResponseRepr::View(v) => v.status,
        }
    }
    /// Reason phrase.
    pub fn reason(&self) -> &str {
        match &*self.0 {
            ResponseRepr::Parts(d) => &d.reason,
            ResponseRepr::View(v) => v.reason.get(&v.msg),
        }
    }
    /// Via values, top first.
    pub fn vias(&self) -> &[Box<str>] {
        match &*self.0 {
            ResponseRepr::Parts(d) => &d.vias,
            ResponseRepr::View(v) => &v.lists().vias,
        }
    }
    /// The top Via value (no copy).
    pub fn top_via(&self) -> Option<&str> {
        match &*self.0 {
            ResponseRepr::Parts(d) => d.vias.first().map(|v| &**v),
            ResponseRepr::View(v) => Some(v.top_via.get(&v.msg)),
        }
    }
    /// From value.
    pub fn from_value(&self) -> &str {
        match &*self.0 {
            ResponseRepr::Parts(d) => &d.from,
            ResponseRepr::View(v) => v.from.get(&v.msg),
        }
    }
    /// To value.
    pub fn to_value(&self) -> &str {
        match &*self.0 {
            ResponseRepr::Parts(d) => &d.to,
            ResponseRepr::View(v) => v.to.get(&v.msg),
        }
    }
    /// To tag.
    pub fn to_tag(&self) -> Option<&str> {
        header_param(self.to_value(), "tag")
    }
    /// Call-ID.
    pub fn call_id(&self) -> &str {
        match &*self.0 {
            ResponseRepr::Parts(d) => &d.call_id,
            ResponseRepr::View(v) => v.call_id.get(&v.msg),
        }
    }
    /// CSeq number.
    pub fn cseq(&self) -> u32 {
        match &*self.0 {
            ResponseRepr::Parts(d) => d.cseq,
            ResponseRepr::View(v) => v.cseq,
        }
    }
    /// CSeq method.
    pub fn cseq_method(&self) -> &str {
        match &*self.0 {
            ResponseRepr::Parts(d) => &d.cseq_method,
            ResponseRepr::View(v) => v.cseq_method.get(&v.msg),
        }
    }
    /// Serialized bytes.
    pub fn bytes(&self) -> &Bytes {
        match &*self.0 {
            ResponseRepr::Parts(d) => &d.bytes,
            ResponseRepr::View(v) => v.msg.bytes(),
        }
    }
    /// `branch` of the top Via.
    pub fn branch(&self) -> Option<&str> {
        match &*self.0 {
            ResponseRepr::Parts(d) => d.top.branch(&d.vias),
            ResponseRepr::View(v) => v.top.branch_in(v.top_via.get(&v.msg)),
        }
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
pub(crate) struct ViaSpans {
    branch: Option<std::ops::Range<usize>>,
    sent_by: std::ops::Range<usize>,
}

impl ViaSpans {
    fn of(vias: &[Box<str>]) -> Self {
        vias.first()
            .map_or_else(Self::default, |top| Self::of_str(top))
    }

    /// The spans within one Via value.
    pub(crate) fn of_str(top: &str) -> Self {
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
        self.branch_in(vias.first()?)
    }

    fn sent_by<'a>(&self, vias: &'a [Box<str>]) -> &'a str {
        vias.first().map_or("", |v| self.sent_by_in(v))
    }

    fn branch_in<'a>(&self, top: &'a str) -> Option<&'a str> {
        top.get(self.branch.clone()?)
    }

    fn sent_by_in<'a>(&self, top: &'a str) -> &'a str {
        top.get(self.sent_by.clone()).unwrap_or("")
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
    // By bytes with memchr (issue 16: the `str` pattern searches were several per cent of the
    // proxy's CPU); the same pieces as splitting the text: after the last `>`, split at `;`,
    // the first piece skipped, the name before the first `=`, both sides trimmed. `>`, `;`
    // and `=` are ASCII, so every index found is a char boundary.
    let b = value.as_bytes();
    let start = memchr::memrchr(b'>', b).map_or(0, |i| i + 1);
    let mut at = start + memchr::memchr(b';', b.get(start..)?)? + 1;
    loop {
        let end = memchr::memchr(b';', b.get(at..)?).map_or(b.len(), |e| at + e);
        let p = value.get(at..end)?;
        let (k, v) = match memchr::memchr(b'=', p.as_bytes()) {
            Some(e) => (p.get(..e)?, p.get(e + 1..)?),
            None => (p, ""),
        };
        if k.trim().eq_ignore_ascii_case(name) {
            return Some(v.trim());
        }
        if end >= b.len() {
            return None;
        }
        at = end + 1;
    }
}

/// sent-by (`host[:port]`) of a Via value `SIP/2.0/UDP host:port;params`.
pub fn via_sent_by(via: &str) -> &str {
    // By bytes while the text up to the protocol's end is ASCII (`char::is_whitespace` on
    // ASCII is space, tab, LF, VT, FF and CR); `;` and `,` by memchr.
    let ws = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let b = via.as_bytes();
    let mut i = 0;
    while i < b.len() && ws(b[i]) {
        i += 1;
    }
    let mut j = i;
    while j < b.len() && !ws(b[j]) && b[j].is_ascii() {
        j += 1;
    }
    if j < b.len() && !b[j].is_ascii() {
        return via_sent_by_text(via);
    }
    let after_proto = if j < b.len() { j + 1 } else { i };
    let end = memchr::memchr2(b';', b',', b.get(after_proto..).unwrap_or(b""))
        .map_or(b.len(), |e| after_proto + e);
    via.get(after_proto..end).unwrap_or("").trim()
}

/// [`via_sent_by`] by `str` methods (a value with non-ASCII text before the sent-by).
fn via_sent_by_text(via: &str) -> &str {
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

    /// The byte-wise fast paths give what the `str` versions give.
    #[test]
    fn byte_paths_match_the_str_versions() {
        fn slow_param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
            let params = match value.rfind('>') {
                Some(i) => &value[i + 1..],
                None => value,
            };
            params.split(';').skip(1).find_map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
        }
        let values = [
            "",
            ";",
            "a",
            ";tag",
            ";tag=",
            "<sip:a@b;tag=no>",
            "<sip:a@b;tag=no>;tag=yes",
            "\"A;b\" <sip:a@b;tag=no> ; TAG = x ;tag=y",
            "<sip:a>;;tag=1;",
            "SIP/2.0/UDP pc33.atlanta.com:5060 ;branch=z9hG4bK776 ;rport",
            "SIP/2.0/UDP 127.0.0.1:5060;rport;branch=z9hG4bK-1",
            "  SIP/2.0/TCP\t[::1]:5061 , SIP/2.0/UDP x",
            "SIP/2.0/UDP\x0bhost;branch=a=b",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP ",
            "x;branch=1>;branch=2",
            "\u{a0}SIP/2.0/UDP h;branch=1",
            "SIP/2.0/UDP\u{2003}h\u{e9};tag=\u{e9} ;x= \u{a0}y\u{a0}",
            "<sip:\u{e9}>;tag=\u{e9}",
        ];
        for v in values {
            for name in ["tag", "branch", "rport", "TAG", ""] {
                assert_eq!(header_param(v, name), slow_param(v, name), "{v:?} {name:?}");
            }
            assert_eq!(via_sent_by(v), via_sent_by_text(v), "{v:?}");
        }
    }

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
