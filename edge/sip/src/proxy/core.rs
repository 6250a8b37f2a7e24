//! The stateful proxy core, RFC 3261 §16, sans-IO: one response context per server
//! transaction with its client branches (§16.6 request forwarding, §16.7 response processing,
//! §16.10 CANCEL), over the transaction layer of `crate::transaction`.
//!
//! It does not choose targets or resolve names: for every new request it asks its TU (the
//! routing script) with [`ProxyEvent::Request`], and the TU answers with [`Proxy::forward`]
//! (resolved targets, q-ordered: equal q in parallel, groups in sequence) or [`Proxy::respond`].
//! ACKs for 2xx come up as [`ProxyEvent::Stateless`] and go out with [`Proxy::forward_stateless`].
//!
//! Drain order after every input: [`Proxy::poll_transmit`] until `None`, [`Proxy::poll_event`]
//! until `None`, then re-arm the wake-up from [`Proxy::poll_timeout`].
//!
//! Split by RFC section as Kamailio splits tm (`t_fwd.c`, `t_reply.c`, `t_cancel.c`): this
//! file holds the types and the I/O (`handle_*` in, `poll_*` out, the transaction layer's
//! events, §16.3/§16.4 on a new request); `forward` is §16.6 (branches, Timer C, fail-over,
//! §16.11 stateless forwarding), `response` §16.7 (branch responses, the TU's answers and
//! held replies, RFC 3262 reliable provisionals), `cancel` §16.10.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use super::branch::push_hex;
use super::branch::{Branch, branch_loop_hash, loop_hash};
use super::route::{
    Interface, is_local, is_our_record_route, next_hop_uri, preprocess_routes, sent_by_is_local,
    stamp_received,
};
use crate::transaction::{
    Config, Deadline, Event, MethodKind, Remote, RequestParts, TransactionError, TransactionKey,
    TransactionLayer, Transmit, TxRequest, TxResponse, via_sent_by,
};

mod cancel;
mod forward;
mod response;

/// Proxy configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The core this proxy instance runs on (encoded in every branch it generates).
    pub core: u16,
    /// Our interfaces; the first of a transport is used for forwarding on that transport.
    pub interfaces: Vec<Interface>,
    /// Domains that name this proxy in Route / Request-URI (besides the interface addresses).
    pub domains: Vec<String>,
    /// Transaction layer settings.
    pub transactions: Config,
    /// Which decisions are handed to the TU (the script's `on_reply` / `on_failure`).
    pub hooks: Hooks,
    /// Path MTU for UDP (`listen.mtu`; 1,500 by default). RFC 3261 §18.1.1: a request within
    /// 200 bytes of it goes over TCP when we have a TCP interface of the same address family,
    /// with the UDP address as the first fallback (a refused or reset connection retries it
    /// over UDP).
    pub udp_mtu: usize,
}

/// The path MTU assumed when `listen.mtu` is not set (Ethernet).
pub const DEFAULT_UDP_MTU: usize = 1500;

/// Optional TU decision points. With both off the proxy forwards replies and sends the best
/// final response by itself (RFC 3261 §16.7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hooks {
    /// Hold every branch response except 100 and emit [`ProxyEvent::Reply`]; the TU answers
    /// with [`Proxy::relay_reply`] or [`Proxy::drop_reply`] (SIPhon `@proxy.on_reply`: a reply
    /// is dropped unless relayed).
    pub replies: bool,
    /// When every branch failed, emit [`ProxyEvent::Failure`] with the best response instead of
    /// sending it; the TU answers with [`Proxy::forward`] (re-target), [`Proxy::relay_failure`]
    /// or [`Proxy::respond`] (SIPhon `@proxy.on_failure`).
    pub failures: bool,
}

/// A branch response held for the TU (see [`Hooks::replies`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyId(u64);

/// One response context: the handle of the server transaction that created it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContextId(pub TransactionKey);

/// A resolved forwarding target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// New Request-URI (`None` keeps the received one, e.g. in-dialog requests).
    pub uri: Option<String>,
    /// Next hop address and transport: resolved (RFC 3263, by the caller) from the top Route of
    /// the forwarded copy when it has one (pre-loaded or dialog route set, see
    /// [`super::next_hop_uri`]), else from `uri`.
    pub destination: Remote,
    /// q-value × 1000 (Contact q, RFC 3261 §20.10); higher first, equal q forked in parallel.
    pub q: u16,
    /// Route set of this branch, top first: a registered binding's Path (RFC 3327 §5.3). When
    /// not empty it replaces the Route values left on the request, so that every branch goes
    /// through its own binding's edge proxies; `destination` is then resolved from its top.
    pub routes: Vec<String>,
    /// Further addresses of the same next hop (RFC 3263 §4.3), tried in order when the branch
    /// to `destination` fails with a transport error, a timeout or a 503, before the branch
    /// counts as failed.
    pub fallbacks: Vec<Remote>,
}

/// A response the TU builds for a context itself ([`Proxy::answer`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Extra header fields (challenges, a registrar's Contact list, Min-Expires ...).
    pub headers: Vec<(String, String)>,
    /// Body as (content type, bytes).
    pub body: Option<(String, Vec<u8>)>,
    /// To tag of the response (a script's `set_reply_to_tag`); `None` picks one of ours. A
    /// request that already has a To tag keeps it.
    pub to_tag: Option<String>,
    /// RFC 3262: send a 101-199 reliably (`Require: 100rel`, `RSeq`) when the request's
    /// `Supported` or `Require` lists `100rel`; retransmitted until the PRACK comes (§3).
    pub reliable: bool,
}

/// Misuse of the proxy by its TU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// No live context with this id.
    #[error("no such response context")]
    UnknownContext,
    /// A final response was already sent for this context.
    #[error("response context already answered")]
    AlreadyAnswered,
    /// `forward` was called with no target.
    #[error("no targets")]
    NoTargets,
    /// No held reply or pending failure with this id / for this context.
    #[error("nothing held")]
    NothingHeld,
    /// A replacement for a held reply has another status code than the reply.
    #[error("an edited reply must keep its status code")]
    EditedStatus,
    /// The transaction layer refused.
    #[error(transparent)]
    Transaction(#[from] TransactionError),
}

/// What the proxy tells its TU.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyEvent {
    /// A new request needs a routing decision (`forward` or `respond`). `request` is already
    /// Route-processed (§16.4) and has `received`/`rport` on its top Via.
    Request {
        /// Its response context.
        ctx: ContextId,
        /// The request.
        request: TxRequest,
        /// Where it came from.
        source: Remote,
    },
    /// An ACK for a 2xx (or another request with no transaction) to forward statelessly with
    /// [`Proxy::forward_stateless`]; already Route-processed.
    Stateless {
        /// The request.
        request: TxRequest,
        /// Where it came from.
        source: Remote,
        /// It arrived routed to us: its top Route named us (popped), or its Request-URI was one
        /// of our Record-Route URIs (strict routing). Only such an ACK belongs to a dialog we
        /// record-routed; the TU should not relay any other.
        routed: bool,
    },
    /// A branch response held for the TU ([`Hooks::replies`]): relay or drop it.
    Reply {
        /// Its response context.
        ctx: ContextId,
        /// Handle for [`Proxy::relay_reply`] / [`Proxy::drop_reply`].
        reply: ReplyId,
        /// The response, our Via already removed.
        response: TxResponse,
    },
    /// Every branch failed ([`Hooks::failures`]): re-target, relay or respond.
    Failure {
        /// Its response context.
        ctx: ContextId,
        /// The best response (§16.7 step 6) that [`Proxy::relay_failure`] would send.
        response: TxResponse,
    },
    /// The final outcome of a request the TU originated with [`Proxy::send_request`]:
    /// its final response, or `None` on timeout or transport failure.
    UacResponse {
        /// The transaction `send_request` returned.
        key: TransactionKey,
        /// The final response.
        response: Option<TxResponse>,
    },
    /// A response context sent its final response.
    Completed {
        /// The context.
        ctx: ContextId,
        /// Status sent upstream.
        status: u16,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BranchState {
    /// Request sent, nothing back.
    Trying,
    /// A provisional arrived: a CANCEL may be sent (§9.1).
    Proceeding,
    /// CANCEL sent; its final (487 or a late 2xx) is still awaited.
    Cancelling,
    /// Final response received (or synthesized).
    Done,
}

#[derive(Debug)]
struct ClientBranch {
    key: TransactionKey,
    request: TxRequest,
    destination: Remote,
    /// What the branch was built from; its `fallbacks` are the addresses not tried yet.
    target: Target,
    state: BranchState,
    cancel_when_provisional: bool,
    /// Timer C deadline (INVITE branches only, §16.6 item 11).
    timer_c: Option<Instant>,
}

#[derive(Debug)]
struct Context {
    request: TxRequest,
    source: Remote,
    interface: usize,
    invite: bool,
    loop_hash: u64,
    record_route: bool,
    groups: VecDeque<Vec<Target>>,
    branches: Vec<ClientBranch>,
    finals: Vec<TxResponse>,
    final_sent: bool,
    server_alive: bool,
    cancelled: bool,
    got_6xx: bool,
    /// Branch finals held for the TU; the answer waits for them.
    held: usize,
    /// Best response offered to the TU by [`ProxyEvent::Failure`].
    failure: Option<TxResponse>,
    /// Decision points for this context ([`ProxyConfig::hooks`] unless set by the TU).
    hooks: Hooks,
    /// RSeq of the last reliable provisional sent (RFC 3262 §3); 0 before the first.
    rseq: u32,
    /// The reliable provisional awaiting its PRACK, if any.
    reliable: Option<Reliable>,
}

/// A reliable provisional response of ours awaiting its PRACK (RFC 3262 §3).
#[derive(Debug)]
struct Reliable {
    rseq: u32,
    response: TxResponse,
    /// When it is sent again.
    next: Instant,
    /// The current retransmission interval (T1, doubling).
    interval: Duration,
    /// 64*T1 after the first transmission: the request is then rejected with a 5xx.
    deadline: Instant,
}

#[derive(Debug)]
struct Held {
    ctx: ContextId,
    response: TxResponse,
}

/// The stateful proxy core. See the module docs for the drain order.
#[derive(Debug)]
pub struct Proxy {
    config: ProxyConfig,
    txns: TransactionLayer,
    contexts: FxHashMap<ContextId, Context>,
    branch_of: FxHashMap<TransactionKey, (ContextId, usize)>,
    /// Requests the TU originated ([`Proxy::send_request`]), waiting for a final response.
    uac: FxHashMap<TransactionKey, Remote>,
    timer_c: BinaryHeap<Reverse<(Instant, TransactionKey)>>,
    held: FxHashMap<ReplyId, Held>,
    /// Reliable provisionals awaiting a PRACK, by (Call-ID, RSeq).
    prack: HashMap<(Box<str>, u32), ContextId>,
    /// Retransmission times of reliable provisionals.
    prack_timers: BinaryHeap<Reverse<(Instant, ContextId)>>,
    counter: u64,
    /// Branches moved from UDP to TCP by size (RFC 3261 §18.1.1).
    mtu_switches: u64,
    transmits: VecDeque<Transmit>,
    events: VecDeque<ProxyEvent>,
}

impl Proxy {
    /// A proxy with no transactions.
    pub fn new(config: ProxyConfig) -> Self {
        Self {
            txns: TransactionLayer::new(config.transactions),
            config,
            contexts: FxHashMap::default(),
            branch_of: FxHashMap::default(),
            uac: FxHashMap::default(),
            timer_c: BinaryHeap::new(),
            held: FxHashMap::default(),
            prack: HashMap::new(),
            prack_timers: BinaryHeap::new(),
            counter: 0,
            mtu_switches: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The transaction layer (read-only: state inspection).
    pub fn transactions(&self) -> &TransactionLayer {
        &self.txns
    }

    /// Number of live response contexts.
    pub fn contexts(&self) -> usize {
        self.contexts.len()
    }

    /// Branches sent over TCP instead of UDP because of their size (RFC 3261 §18.1.1).
    pub fn mtu_switches(&self) -> u64 {
        self.mtu_switches
    }

    /// Response contexts that have not sent a final response yet (O(contexts): for draining).
    pub fn unanswered(&self) -> usize {
        self.contexts.values().filter(|c| !c.final_sent).count()
    }

    /// A request arrived from `source` on our interface number `interface` at `now`. The
    /// message layer has validated it already (400/416/420/483/505).
    pub fn handle_request(
        &mut self,
        now: Instant,
        source: Remote,
        interface: usize,
        request: TxRequest,
    ) {
        let stamped = request
            .top_via()
            .map(|top| stamp_received(top, source.addr))
            .filter(|v| request.top_via() != Some(v.as_str()));
        let request = match stamped {
            Some(top) => request.with_top_via(top),
            None => request,
        };
        self.txns.handle_request(now, source, request);
        self.drain_transactions(now, interface);
    }

    /// A response arrived from `source` at `now`.
    pub fn handle_response(&mut self, now: Instant, source: Remote, response: TxResponse) {
        self.txns.handle_response(now, source, response);
        self.drain_transactions(now, 0);
    }

    /// Timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.txns.handle_timeout(now);
        self.drain_transactions(now, 0);
        while let Some(&Reverse((at, key))) = self.timer_c.peek() {
            if at > now {
                break;
            }
            self.timer_c.pop();
            self.on_timer_c(now, key, at);
        }
        while let Some(&Reverse((at, ctx))) = self.prack_timers.peek() {
            if at > now {
                break;
            }
            self.prack_timers.pop();
            self.on_prack_timer(now, ctx, at);
        }
        self.drain_transactions(now, 0);
        self.release_idle();
    }

    /// Once no context is left, give back the capacity a load peak left in the maps (the
    /// Timer C and PRACK deadlines left are stale then: their contexts are gone).
    fn release_idle(&mut self) {
        self.txns.release_idle();
        if !self.contexts.is_empty() || !self.branch_of.is_empty() {
            return;
        }
        self.timer_c = BinaryHeap::new();
        self.prack_timers = BinaryHeap::new();
        if self.contexts.capacity() > 64 {
            self.contexts = FxHashMap::default();
            self.branch_of = FxHashMap::default();
            self.held.shrink_to_fit();
            self.prack.shrink_to_fit();
            self.uac.shrink_to_fit();
        }
        if self.events.is_empty() && self.events.capacity() > 64 {
            self.events = VecDeque::new();
        }
        if self.transmits.is_empty() && self.transmits.capacity() > 64 {
            self.transmits = VecDeque::new();
        }
    }

    /// Originate a request (a script's `proxy.send_request`): our Via with a branch of this
    /// core is pushed, Max-Forwards defaults to 70, and the final outcome comes back as
    /// [`ProxyEvent::UacResponse`].
    pub fn send_request(
        &mut self,
        now: Instant,
        destination: Remote,
        mut parts: RequestParts,
    ) -> Result<TransactionKey, ProxyError> {
        self.counter += 1;
        let branch = Branch::new(self.config.core, 0, self.counter);
        let iface = self.interface_for(destination);
        parts.vias.insert(0, iface.via(branch.as_str()));
        parts.max_forwards.get_or_insert(70);
        let key = self
            .txns
            .send_request(now, destination, TxRequest::build(parts))?;
        self.uac.insert(key, destination);
        self.drain_transactions(now, 0);
        Ok(key)
    }

    /// Decision points for one context (a script's per-relay `on_reply`/`on_failure`, or
    /// global handlers that appeared after a reload); call before [`Self::forward`].
    pub fn set_hooks(&mut self, ctx: ContextId, hooks: Hooks) -> Result<(), ProxyError> {
        let c = self
            .contexts
            .get_mut(&ctx)
            .ok_or(ProxyError::UnknownContext)?;
        c.hooks = hooks;
        Ok(())
    }

    /// The TU edited the request before deciding (script header, Request-URI or body
    /// changes): later forwarding and local responses use `request`. `request` is the edit of
    /// the request *as received* (the TU's view of it): the proxy applies its own processing
    /// again, `received`/`rport` on the top Via (§18.2.1, RFC 3581) and §16.4 Route
    /// processing, so the forwarded copy has both; Max-Forwards is decremented per branch.
    pub fn set_request(&mut self, ctx: ContextId, request: TxRequest) -> Result<(), ProxyError> {
        let source = self
            .contexts
            .get(&ctx)
            .ok_or(ProxyError::UnknownContext)?
            .source
            .addr;
        // On the view, as for a received request: no copy of the headers, no re-encode.
        let stamped = request
            .top_via()
            .map(|top| stamp_received(top, source))
            .filter(|v| request.top_via() != Some(v.as_str()));
        let request = match stamped {
            Some(top) => request.with_top_via(top),
            None => request,
        };
        let (request, _) = self.preprocess(request);
        if let Some(c) = self.contexts.get_mut(&ctx) {
            c.request = request;
        }
        Ok(())
    }

    /// Where the context's request goes next without a routing decision: the top remaining
    /// Route, else the Request-URI (§16.6 item 6/7).
    pub fn next_hop(&self, ctx: ContextId) -> Option<String> {
        self.contexts
            .get(&ctx)
            .map(|c| next_hop_uri(&c.request).to_string())
    }

    /// The next message to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits
            .pop_front()
            .or_else(|| self.txns.poll_transmit())
    }

    /// The next event for the TU.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ProxyEvent> {
        self.events.pop_front()
    }

    /// When to call [`Self::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.poll_deadline().map(|d| d.at)
    }

    /// [`Self::poll_timeout`], saying also whether the earliest timer only ends a
    /// transaction's wait ([`crate::transaction::Timer::is_wait`]), which the caller may fire
    /// late, together with others.
    pub fn poll_deadline(&mut self) -> Option<Deadline> {
        // Drop Timer C entries of finished branches so they do not cause idle wake-ups.
        while let Some(&Reverse((at, key))) = self.timer_c.peek() {
            let live = self.branch_of.get(&key).is_some_and(|&(ctx, idx)| {
                self.contexts
                    .get(&ctx)
                    .and_then(|c| c.branches.get(idx))
                    .is_some_and(|b| b.timer_c == Some(at))
            });
            if live {
                break;
            }
            self.timer_c.pop();
        }
        while let Some(&Reverse((at, ctx))) = self.prack_timers.peek() {
            let live = self
                .contexts
                .get(&ctx)
                .and_then(|c| c.reliable.as_ref())
                .is_some_and(|r| r.next == at);
            if live {
                break;
            }
            self.prack_timers.pop();
        }
        let precise = |at: Instant| Deadline { at, wait: false };
        let c = self.timer_c.peek().map(|Reverse((at, _))| precise(*at));
        let p = self
            .prack_timers
            .peek()
            .map(|Reverse((at, _))| precise(*at));
        [self.txns.poll_deadline(), c, p]
            .into_iter()
            .flatten()
            .min()
    }

    fn local_tag(&mut self) -> String {
        self.counter += 1;
        let mut tag = String::with_capacity(2 + 4 + 16);
        tag.push_str("px");
        push_hex(&mut tag, u64::from(self.config.core), 1);
        push_hex(&mut tag, self.counter, 1);
        tag
    }

    fn interface_for(&self, destination: Remote) -> Interface {
        let ifs = &self.config.interfaces;
        ifs.iter()
            .find(|i| {
                i.transport == destination.transport
                    && i.addr.is_ipv4() == destination.addr.is_ipv4()
            })
            .or_else(|| ifs.iter().find(|i| i.transport == destination.transport))
            .or_else(|| ifs.first())
            .copied()
            .unwrap_or_else(|| Interface {
                addr: std::net::SocketAddr::from(([0, 0, 0, 0], 5060)),
                transport: destination.transport,
            })
    }

    fn is_ours(&self, via: &str) -> bool {
        sent_by_is_local(via_sent_by(via), &self.config.interfaces)
    }

    /// Process every event of the transaction layer.
    fn drain_transactions(&mut self, now: Instant, interface: usize) {
        while let Some(ev) = self.txns.poll_event() {
            match ev {
                Event::Request {
                    key,
                    request,
                    source,
                    cancels,
                } => {
                    if request.kind() == MethodKind::Cancel {
                        self.on_cancel(now, key, &request, cancels);
                    } else if request.method() == "PRACK"
                        && !self.prack.is_empty()
                        && self.on_prack(now, key, &request)
                    {
                        // Ours: answered here, never seen by the TU.
                    } else {
                        self.on_new_request(now, key, request, source, interface);
                    }
                }
                Event::Ack { request, source } => {
                    let (request, routed) = self.preprocess(request);
                    self.events.push_back(ProxyEvent::Stateless {
                        request,
                        source,
                        routed,
                    });
                }
                Event::Response { key, response } if self.uac.contains_key(&key) => {
                    if response.status() >= 200 {
                        self.uac.remove(&key);
                        self.events.push_back(ProxyEvent::UacResponse {
                            key,
                            response: Some(response.without_top_via()),
                        });
                    }
                }
                Event::Timeout { key, .. } | Event::TransportError { key }
                    if self.uac.remove(&key).is_some() =>
                {
                    self.events.push_back(ProxyEvent::UacResponse {
                        key,
                        response: None,
                    });
                }
                Event::Response { key, response } => self.on_branch_response(now, key, response),
                Event::StrayResponse { response, .. } => self.forward_stray(&response),
                Event::Timeout { key, .. } => {
                    if let Some(&(ctx, idx)) = self.branch_of.get(&key)
                        && !self.fail_over(now, ctx, idx, key)
                    {
                        self.on_branch_final(now, ctx, idx, None, 408, "Request Timeout");
                    }
                }
                Event::TransportError { key } => {
                    if let Some(&(ctx, idx)) = self.branch_of.get(&key)
                        && !self.fail_over(now, ctx, idx, key)
                    {
                        self.on_branch_final(now, ctx, idx, None, 503, "Service Unavailable");
                    }
                }
                Event::Terminated { key } => {
                    if let Some((owner, _)) = self.branch_of.remove(&key) {
                        self.maybe_remove(owner);
                    }
                    let ctx = ContextId(key);
                    if let Some(c) = self.contexts.get_mut(&ctx) {
                        c.server_alive = false;
                    }
                    self.maybe_remove(ctx);
                }
            }
        }
    }

    /// §16.4 on a received request: pop the Route values naming us (no copy: the view skips
    /// them); the strict-route fix-up (rare) rewrites the parts. Returns the request and
    /// whether it was routed to us.
    fn preprocess(&self, request: TxRequest) -> (TxRequest, bool) {
        let (ifs, domains) = (&self.config.interfaces, &self.config.domains);
        if is_our_record_route(request.uri(), ifs) && request.route_values().next().is_some() {
            let mut parts = request.parts();
            preprocess_routes(&mut parts, ifs, domains);
            return (request.with_parts(parts), true);
        }
        let popped = request
            .route_values()
            .take_while(|r| is_local(r, ifs, domains))
            .count();
        (request.with_popped_routes(popped), popped > 0)
    }

    fn on_new_request(
        &mut self,
        now: Instant,
        key: TransactionKey,
        request: TxRequest,
        source: Remote,
        interface: usize,
    ) {
        let hash = loop_hash(&request);
        // §16.3 item 4: a Via of ours carrying this request's hash means a loop.
        let looped = request.via_values().any(|v| {
            self.is_ours(v)
                && crate::transaction::header_param(v, "branch")
                    .and_then(branch_loop_hash)
                    .is_some_and(|h| h == hash)
        });
        let status = if looped {
            Some((482, "Loop Detected"))
        } else if request.max_forwards() == Some(0) {
            Some((483, "Too Many Hops"))
        } else {
            None
        };
        if let Some((status, reason)) = status {
            let tag = self.local_tag();
            let _ = self.txns.send_response(
                now,
                key,
                TxResponse::to_request(&request, status, reason, Some(&tag)),
            );
            return;
        }
        let (request, _) = self.preprocess(request);
        let ctx = ContextId(key);
        self.contexts.insert(
            ctx,
            Context {
                invite: request.kind() == MethodKind::Invite,
                request: request.clone(),
                source,
                interface,
                loop_hash: hash,
                record_route: false,
                groups: VecDeque::new(),
                branches: Vec::new(),
                finals: Vec::new(),
                final_sent: false,
                server_alive: true,
                cancelled: false,
                got_6xx: false,
                held: 0,
                failure: None,
                hooks: self.config.hooks,
                rseq: 0,
                reliable: None,
            },
        );
        self.events.push_back(ProxyEvent::Request {
            ctx,
            request,
            source,
        });
    }
}
