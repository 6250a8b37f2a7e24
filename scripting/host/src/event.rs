//! The narrow boundary between a reactor and its script worker: [`Event`] in (an SPSC ring per
//! core), [`Actions`] out (a ring back). Plain Rust data only: no Python object ever crosses it.
//!
//! Dispatch semantics follow siphon-core-api.md §1.1: handlers record actions, which the reactor
//! carries out after the handlers return; no recorded action is a silent drop.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::message::SipMessage;

pub use siphon_sip::transaction::{Remote, Transport};

/// Which hook an event is for (siphon-core-api.md §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// A new request needing policy: `@proxy.on_request`.
    Request,
    /// A response to a relayed request: per-relay `on_reply`, else `@proxy.on_reply`.
    Reply,
    /// Every branch failed; `message` is the best final response: `@proxy.on_failure`.
    Failure,
    /// The INVITE was cancelled (the core already answered 487): `@proxy.on_cancel`.
    Cancel,
    /// A response to a REGISTER relayed upstream: `@proxy.on_register_reply`.
    RegisterReply,
}

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Lower-case transport: `udp`, `tcp`, `tls`, `ws`, `wss`, `sctp`.
    pub transport: &'static str,
    /// Peer address.
    pub source: SocketAddr,
}

impl Default for Meta {
    fn default() -> Self {
        Self {
            transport: "udp",
            source: SocketAddr::from(([127, 0, 0, 1], 5060)),
        }
    }
}

/// One unit of work for a script worker.
#[derive(Debug, Clone)]
pub struct Event {
    /// Caller-chosen id echoed in the [`Actions`]; a reply event names its request by it.
    pub id: u64,
    /// Core (reactor) that owns the transaction; the actions go back to this core's ring.
    pub core: usize,
    /// Which hook.
    pub kind: EventKind,
    /// The request (for every kind: the original request of a reply/failure/cancel).
    pub request: Arc<SipMessage>,
    /// The response, for `Reply`, `Failure` and `RegisterReply`.
    pub reply: Option<Arc<SipMessage>>,
    /// Transport metadata of `request`.
    pub meta: Meta,
    /// For reply kinds: the id of the request event whose `relay(on_reply=...)` may apply.
    pub request_id: Option<u64>,
}

/// Fork strategy of `request.fork(targets, strategy)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkStrategy {
    /// All targets at once.
    Parallel,
    /// One after another until a 2xx/6xx.
    Sequential,
}

/// One branch of `request.fork(targets)`. A registered `Contact` carries its binding's Path
/// and the flow its REGISTER came over; a plain URI carries neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForkTarget {
    /// Request-URI of the branch (the Contact URI, or the URI given).
    pub uri: String,
    /// The binding's Path values, top first (RFC 3327 §5.3): the branch's Route set.
    pub routes: Vec<String>,
    /// Where the binding's REGISTER came from (transport and source address): the branch is
    /// sent there, over the same connection while it is open (RFC 5626 §5.3 flow reuse).
    pub flow: Option<Remote>,
}

impl ForkTarget {
    /// A plain URI target.
    pub fn uri(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            routes: Vec::new(),
            flow: None,
        }
    }
}

/// What the script decided for one event (the last `reply`/`relay`/`fork` call wins, as
/// upstream's single `RequestAction`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Disposition {
    /// No action recorded: drop silently (requests), or drop the reply (`on_reply`).
    #[default]
    Drop,
    /// Answer the request statelessly from the proxy core.
    Reply {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
        /// Extra headers for the response (`set_reply_header`/`add_reply_header`, challenges,
        /// the registrar's Contact list).
        headers: Vec<(String, String)>,
        /// Response body and content type.
        body: Option<(String, Vec<u8>)>,
        /// RFC 3262 reliable provisional.
        reliable: bool,
        /// The To tag chosen with `request.set_reply_to_tag`.
        to_tag: Option<String>,
    },
    /// Proxy the (possibly edited) request; `next_hop` overrides Route/R-URI.
    Relay {
        /// Explicit next hop URI, if any.
        next_hop: Option<String>,
        /// A per-relay `on_reply` callback was given (reply events will carry `request_id`).
        has_on_reply: bool,
        /// A per-relay `on_failure` callback was given.
        has_on_failure: bool,
        /// `relay(flow=contact.flow)`: send over the flow a REGISTER came from.
        flow: Option<Remote>,
    },
    /// Fork to several targets.
    Fork {
        /// The branches.
        targets: Vec<ForkTarget>,
        /// Parallel or sequential.
        strategy: ForkStrategy,
    },
    /// Forward the reply upstream (`reply.relay()` / `forward()`).
    ForwardReply,
    /// A provisional reply was rejected with a final error upstream (`reply.reject`).
    RejectReply {
        /// Final status code.
        status: u16,
        /// Reason phrase.
        reason: String,
    },
}

/// The worker's answer for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actions {
    /// The [`Event::id`].
    pub id: u64,
    /// The [`Event::core`].
    pub core: usize,
    /// What to do.
    pub disposition: Disposition,
    /// `record_route()` was called.
    pub record_route: bool,
    /// The edited request (headers, R-URI, body) when the script changed anything.
    pub request: Option<Arc<SipMessage>>,
    /// The edited reply when the script changed a reply's headers.
    pub reply: Option<Arc<SipMessage>>,
    /// `auth_user` set by a successful digest check.
    pub auth_user: Option<String>,
    /// The script raised (the disposition is then `500 Script Error`).
    pub script_error: bool,
    /// Requests to send once the disposition has been carried out, in order (the NOTIFY
    /// that follows a SUBSCRIBE's 2xx, RFC 6665 §4.2.1).
    pub outbound: Vec<OutboundRequest>,
}

impl Actions {
    /// An empty (silent drop) result for an event.
    pub fn new(id: u64, core: usize) -> Self {
        Self {
            id,
            core,
            disposition: Disposition::Drop,
            record_route: false,
            request: None,
            reply: None,
            auth_user: None,
            script_error: false,
            outbound: Vec::new(),
        }
    }

    /// A plain `Reply` disposition.
    pub fn reply(status: u16, reason: &str) -> Disposition {
        Disposition::Reply {
            status,
            reason: reason.to_owned(),
            headers: Vec::new(),
            body: None,
            reliable: false,
            to_tag: None,
        }
    }
}

/// An out-of-dialog request a script asked for (`proxy.send_request`); the node sends it and,
/// when `wait_for_response`, answers with [`crate::HostHandle::complete_outbound`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRequest {
    /// Token to complete with.
    pub token: u64,
    /// Worker whose script is waiting.
    pub worker: usize,
    /// Method.
    pub method: String,
    /// Request-URI.
    pub ruri: String,
    /// Extra headers (a pre-loaded Route is honoured: next_hop > first Route > R-URI).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Option<Vec<u8>>,
    /// Explicit next hop.
    pub next_hop: Option<String>,
    /// The script awaits the final response.
    pub wait_for_response: bool,
    /// How long the script waits (it gets `None` after that).
    pub timeout_ms: u64,
}

/// Something posted to a worker from outside its rings.
#[derive(Debug)]
pub(crate) enum Control {
    /// A Rust timer fired.
    Timer(u64),
    /// The final response (or `None`: failed/timed out) of an outbound request.
    Response(u64, Option<Arc<SipMessage>>),
    /// A registrar binding change found by the expiry sweep: (AoR, event type).
    Registrar(String, &'static str),
    /// The response to an SMPP request the script sent: (token, command_status, message_id).
    Smpp(u64, u32, String),
    /// The outcome of an `http.Client` call: (token, response or error text).
    Http(u64, Result<crate::http::HttpReply, String>),
    /// An inbound HTTP request for a route handler, and who takes the answer.
    HttpRequest(Box<crate::http::HttpInbound>, crate::http::ResponderBox),
    /// The node gave up on an inbound request (its timeout): cancel the handler.
    HttpCancel(u64),
    /// The node answered SIP event `id` without the script (`transaction.timeout_secs`, a
    /// stalled worker) or its transaction ended: cancel the handler if it is suspended.
    Cancel(u64),
    /// SIGTERM: run the `@http.on_shutdown` hooks.
    HttpShutdown,
}
