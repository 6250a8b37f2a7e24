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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use super::branch::{Branch, branch_loop_hash, loop_hash, owner_core, stateless_branch};
use super::relay::{BranchEdits, relay_request};
use super::route::{
    Interface, is_local, is_our_record_route, next_hop_uri, preprocess_routes, stamp_received,
    strict_next_hop, via_destination,
};
use super::select::{best_branch_response, upstream_form};
use crate::transaction::{
    Config, Event, MethodKind, Outgoing, Remote, RequestParts, State, TransactionError,
    TransactionKey, TransactionLayer, Transmit, TxRequest, TxResponse, via_sent_by,
};

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

    /// §16.8: Timer C fired. A branch with a provisional is CANCELled; either way the branch
    /// counts as a 408 and its later non-2xx final is ignored.
    fn on_timer_c(&mut self, now: Instant, key: TransactionKey, at: Instant) {
        let Some(&(ctx, idx)) = self.branch_of.get(&key) else {
            return;
        };
        let Some(b) = self
            .contexts
            .get_mut(&ctx)
            .and_then(|c| c.branches.get_mut(idx))
        else {
            return;
        };
        if b.timer_c != Some(at) {
            return; // re-armed by a provisional
        }
        b.timer_c = None;
        let cancel =
            (b.state == BranchState::Proceeding).then(|| (b.destination, b.request.cancel()));
        if matches!(b.state, BranchState::Trying | BranchState::Proceeding) {
            if let Some((dest, cancel)) = cancel {
                let _ = self.txns.send_request(now, dest, cancel);
            }
            self.on_branch_final(now, ctx, idx, None, 408, "Request Timeout");
        }
    }

    /// The TU's routing decision: forward the context's request to `targets`, inserting
    /// Record-Route when `record_route` is set.
    pub fn forward(
        &mut self,
        now: Instant,
        ctx: ContextId,
        targets: Vec<Target>,
        record_route: bool,
    ) -> Result<(), ProxyError> {
        if targets.is_empty() {
            return Err(ProxyError::NoTargets);
        }
        let c = self
            .contexts
            .get_mut(&ctx)
            .ok_or(ProxyError::UnknownContext)?;
        if c.final_sent {
            return Err(ProxyError::AlreadyAnswered);
        }
        c.record_route = record_route;
        c.failure = None;
        let mut sorted = targets;
        sorted.sort_by_key(|t| Reverse(t.q));
        let mut groups: VecDeque<Vec<Target>> = VecDeque::new();
        for t in sorted {
            match groups.back_mut() {
                Some(g) if g[0].q == t.q => g.push(t),
                _ => groups.push_back(vec![t]),
            }
        }
        c.groups = groups;
        self.start_next_group(now, ctx);
        self.drain_transactions(now, 0);
        Ok(())
    }

    /// The TU answers the context itself (e.g. 404, 403, or a redirect).
    pub fn respond(
        &mut self,
        now: Instant,
        ctx: ContextId,
        status: u16,
        reason: &str,
    ) -> Result<(), ProxyError> {
        self.respond_with(now, ctx, status, reason, Vec::new(), None)
    }

    /// [`Self::respond`] with extra header fields (challenges, Contact lists of a registrar
    /// 200, Min-Expires, Unsupported) and an optional body given as (content type, bytes).
    pub fn respond_with(
        &mut self,
        now: Instant,
        ctx: ContextId,
        status: u16,
        reason: &str,
        headers: Vec<(String, String)>,
        body: Option<(String, Vec<u8>)>,
    ) -> Result<(), ProxyError> {
        self.answer(
            now,
            ctx,
            Answer {
                status,
                reason: reason.to_owned(),
                headers,
                body,
                ..Answer::default()
            },
        )
    }

    /// The TU answers the context with a response it shaped: extra headers and body, its own
    /// To tag, and RFC 3262 reliability for a 101-199 (`Require: 100rel` and `RSeq` when the
    /// request supports 100rel; retransmitted from T1, doubling, until the PRACK, which the
    /// proxy answers itself; after 64*T1 without one the request gets a 500).
    pub fn answer(
        &mut self,
        now: Instant,
        ctx: ContextId,
        answer: Answer,
    ) -> Result<(), ProxyError> {
        let local = self.local_tag();
        let t1 = self.config.transactions.timers.t1;
        let c = self.contexts.get(&ctx).ok_or(ProxyError::UnknownContext)?;
        if c.final_sent {
            return Err(ProxyError::AlreadyAnswered);
        }
        let Answer {
            status,
            reason,
            mut headers,
            body,
            to_tag,
            reliable,
        } = answer;
        let tag = to_tag.unwrap_or(local);
        let mut response = TxResponse::to_request(&c.request, status, &reason, Some(&tag));
        // §3: only a 101-199 to a request whose UAC supports 100rel, one at a time.
        let rseq = (reliable
            && (101..200).contains(&status)
            && c.reliable.is_none()
            && supports_100rel(&c.request))
        .then(|| c.rseq.wrapping_add(1).max(1));
        if let Some(rseq) = rseq {
            headers.push(("Require".into(), "100rel".into()));
            headers.push(("RSeq".into(), rseq.to_string()));
        }
        if !headers.is_empty() || body.is_some() {
            let mut parts = response.parts();
            parts.headers.extend(headers);
            if let Some((content_type, bytes)) = body {
                parts.headers.push(("Content-Type".into(), content_type));
                parts.body = bytes;
            }
            response = TxResponse::build(parts);
        }
        let call_id: Box<str> = c.request.call_id().into();
        self.send_upstream(now, ctx, response.clone())?;
        if let Some(rseq) = rseq
            && let Some(c) = self.contexts.get_mut(&ctx)
        {
            c.rseq = rseq;
            c.reliable = Some(Reliable {
                rseq,
                response,
                next: now + t1,
                interval: t1,
                deadline: now + t1 * 64,
            });
            self.prack.insert((call_id, rseq), ctx);
            self.prack_timers.push(Reverse((now + t1, ctx)));
        }
        if status >= 200 {
            // The TU ended the context: stop the branches (§16.7 step 10).
            self.cancel_pending(now, ctx);
            self.maybe_remove(ctx);
        }
        self.drain_transactions(now, 0);
        Ok(())
    }

    /// RFC 3262 §3: a reliable provisional's retransmission time came (`at`): send it again
    /// with a doubled interval, or give up after 64*T1 and reject the request with a 500.
    fn on_prack_timer(&mut self, now: Instant, ctx: ContextId, at: Instant) {
        let tag = self.local_tag();
        let Some(c) = self.contexts.get_mut(&ctx) else {
            return;
        };
        let Some(r) = c.reliable.as_mut().filter(|r| r.next == at) else {
            return;
        };
        if c.final_sent {
            c.reliable = None;
            return;
        }
        if now >= r.deadline {
            let rseq = r.rseq;
            c.reliable = None;
            let key: (Box<str>, u32) = (c.request.call_id().into(), rseq);
            let response =
                TxResponse::to_request(&c.request, 500, "Server Internal Error", Some(&tag));
            self.prack.remove(&key);
            let _ = self.send_upstream(now, ctx, response);
            self.maybe_remove(ctx);
            return;
        }
        r.interval *= 2;
        r.next = now + r.interval;
        let (next, response) = (r.next, r.response.clone());
        self.prack_timers.push(Reverse((next, ctx)));
        let _ = self.send_upstream(now, ctx, response);
    }

    /// A PRACK for one of our reliable provisionals (RFC 3262 §7.2: `RAck: rseq cseq method`):
    /// stop its retransmission and answer the PRACK with a 200. `false` when it is not ours
    /// (it is then proxied like any request).
    fn on_prack(&mut self, now: Instant, key: TransactionKey, prack: &TxRequest) -> bool {
        let Some((rseq, cseq)) = prack.header_values("RAck").next().and_then(parse_rack) else {
            return false;
        };
        let id: (Box<str>, u32) = (prack.call_id().into(), rseq);
        let Some(&ctx) = self.prack.get(&id) else {
            return false;
        };
        let Some(c) = self.contexts.get_mut(&ctx) else {
            self.prack.remove(&id);
            return false;
        };
        if c.request.cseq() != cseq {
            return false;
        }
        self.prack.remove(&id);
        c.reliable = None;
        let _ = self
            .txns
            .send_response(now, key, TxResponse::to_request(prack, 200, "OK", None));
        true
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

    /// The TU decided nothing (SIPhon: no action is a silent drop): forget the context and
    /// its server transaction without answering. A retransmission starts over.
    pub fn abandon(&mut self, ctx: ContextId) {
        let Some(c) = self.contexts.get(&ctx) else {
            return;
        };
        if c.final_sent || !c.branches.is_empty() {
            return;
        }
        self.contexts.remove(&ctx);
        self.txns.abandon(ctx.0);
    }

    /// Send the best response offered by [`ProxyEvent::Failure`].
    pub fn relay_failure(&mut self, now: Instant, ctx: ContextId) -> Result<(), ProxyError> {
        let c = self
            .contexts
            .get_mut(&ctx)
            .ok_or(ProxyError::UnknownContext)?;
        let best = c.failure.take().ok_or(ProxyError::NothingHeld)?;
        self.send_upstream(now, ctx, upstream_form(best))?;
        self.maybe_remove(ctx);
        self.drain_transactions(now, 0);
        Ok(())
    }

    /// Let a held reply continue: provisionals and 2xx go upstream, other finals join the
    /// response selection.
    pub fn relay_reply(&mut self, now: Instant, reply: ReplyId) -> Result<(), ProxyError> {
        let h = self.held.remove(&reply).ok_or(ProxyError::NothingHeld)?;
        let status = h.response.status();
        if status < 200 {
            if self
                .contexts
                .get(&h.ctx)
                .is_some_and(|c| !c.final_sent && !c.cancelled)
            {
                let _ = self.send_upstream(now, h.ctx, h.response);
            }
        } else {
            if let Some(c) = self.contexts.get_mut(&h.ctx) {
                c.held = c.held.saturating_sub(1);
            }
            self.apply_final(now, h.ctx, h.response);
        }
        self.drain_transactions(now, 0);
        Ok(())
    }

    /// [`Self::relay_reply`] with the TU's edit of the held response (a script's header
    /// changes in `on_reply`) sent in its place. An edit that changed the status code is
    /// refused ([`ProxyError::EditedStatus`]) and the reply stays held.
    pub fn relay_reply_with(
        &mut self,
        now: Instant,
        reply: ReplyId,
        response: TxResponse,
    ) -> Result<(), ProxyError> {
        let h = self.held.get_mut(&reply).ok_or(ProxyError::NothingHeld)?;
        if h.response.status() != response.status() {
            return Err(ProxyError::EditedStatus);
        }
        h.response = response;
        self.relay_reply(now, reply)
    }

    /// Discard a held reply: it is not forwarded and takes no part in response selection.
    pub fn drop_reply(&mut self, now: Instant, reply: ReplyId) -> Result<(), ProxyError> {
        let h = self.held.remove(&reply).ok_or(ProxyError::NothingHeld)?;
        if h.response.status() >= 200 {
            if let Some(c) = self.contexts.get_mut(&h.ctx) {
                c.held = c.held.saturating_sub(1);
            }
            self.check_complete(now, h.ctx);
        }
        self.drain_transactions(now, 0);
        Ok(())
    }

    fn hold(&mut self, ctx: ContextId, response: TxResponse) {
        self.counter += 1;
        let reply = ReplyId(self.counter);
        if response.status() >= 200
            && let Some(c) = self.contexts.get_mut(&ctx)
        {
            c.held += 1;
        }
        self.events.push_back(ProxyEvent::Reply {
            ctx,
            reply,
            response: response.clone(),
        });
        self.held.insert(reply, Held { ctx, response });
    }

    /// Forward a request statelessly (§16.11): ACK for 2xx. Max-Forwards is decremented and
    /// a Via with a deterministic branch pushed; no transaction is created.
    pub fn forward_stateless(
        &mut self,
        request: &TxRequest,
        uri: Option<&str>,
        destination: Remote,
    ) {
        let branch = stateless_branch(self.config.core, request);
        let iface = self.interface_for(destination);
        let via = iface.via(branch.as_str());
        // The received bytes plus edits (Route processing already done on the parts).
        if let Some(msg) = request.message() {
            let edits = BranchEdits {
                top_via: request.top_via(),
                interfaces: &self.config.interfaces,
                domains: &self.config.domains,
                uri,
                routes: &[],
                record_routes: &[],
                via: Some(&via),
            };
            if let Some(out) = relay_request(msg, &edits)
                .ok()
                .and_then(|m| TxRequest::try_from(&m).ok())
            {
                self.transmits.push_back(Transmit {
                    destination,
                    message: Outgoing::Request(out),
                });
                return;
            }
        }
        let mut parts = request.parts();
        if let Some(u) = uri {
            parts.uri = u.to_string();
        }
        parts.max_forwards = Some(parts.max_forwards.map_or(70, |m| m.saturating_sub(1)));
        strict_next_hop(&mut parts);
        parts.vias.insert(0, via);
        self.transmits.push_back(Transmit {
            destination,
            message: Outgoing::Request(TxRequest::build(parts)),
        });
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
        let c = self.timer_c.peek().map(|Reverse((at, _))| *at);
        let p = self.prack_timers.peek().map(|Reverse((at, _))| *at);
        [self.txns.poll_timeout(), c, p].into_iter().flatten().min()
    }

    fn local_tag(&mut self) -> String {
        self.counter += 1;
        format!("px{:x}{:x}", self.config.core, self.counter)
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
        let sent_by = via_sent_by(via);
        is_local(&format!("sip:{sent_by}"), &self.config.interfaces, &[])
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

    /// §16.10: answer the CANCEL, cancel the pending branches of its INVITE.
    fn on_cancel(
        &mut self,
        now: Instant,
        key: TransactionKey,
        cancel: &TxRequest,
        cancels: Option<TransactionKey>,
    ) {
        let ctx = cancels
            .map(ContextId)
            .filter(|c| self.contexts.contains_key(c));
        let tag = self.local_tag();
        // The INVITE's server transaction still runs (its context may be gone once answered):
        // the CANCEL matched a transaction (§9.2).
        let (status, reason) = if cancels.is_some() {
            (200, "OK")
        } else {
            (481, "Call/Transaction Does Not Exist")
        };
        let _ = self.txns.send_response(
            now,
            key,
            TxResponse::to_request(cancel, status, reason, Some(&tag)),
        );
        let Some(ctx) = ctx else {
            return;
        };
        let Some(c) = self.contexts.get_mut(&ctx) else {
            return;
        };
        if c.final_sent {
            return;
        }
        c.cancelled = true;
        c.groups.clear();
        let pending = c.branches.iter().any(|b| {
            matches!(
                b.state,
                BranchState::Trying | BranchState::Proceeding | BranchState::Cancelling
            )
        });
        if !pending {
            c.failure = None;
            // Not forwarded yet: answer the INVITE now.
            let response =
                TxResponse::to_request(&c.request, 487, "Request Terminated", Some(&tag));
            let _ = self.send_upstream(now, ctx, response);
            return;
        }
        self.cancel_pending(now, ctx);
        // Branches that never answered cannot be CANCELled yet and do not hold the 487 back.
        self.check_complete(now, ctx);
    }

    /// CANCEL every branch still without a final (§16.7 step 10, §16.10); branches without a
    /// provisional get it when one arrives (§9.1).
    fn cancel_pending(&mut self, now: Instant, ctx: ContextId) {
        let Some(c) = self.contexts.get_mut(&ctx) else {
            return;
        };
        c.groups.clear();
        if !c.invite {
            return;
        }
        let mut to_send = Vec::new();
        for b in &mut c.branches {
            match b.state {
                BranchState::Proceeding => {
                    to_send.push((b.destination, b.request.cancel()));
                    b.state = BranchState::Cancelling;
                }
                BranchState::Trying => b.cancel_when_provisional = true,
                BranchState::Cancelling | BranchState::Done => {}
            }
        }
        for (dest, cancel) in to_send {
            // The CANCEL's own transaction is not tracked: its 200 is absorbed as a response
            // of an unknown branch.
            let _ = self.txns.send_request(now, dest, cancel);
        }
    }

    fn start_next_group(&mut self, now: Instant, ctx: ContextId) {
        let Some(c) = self.contexts.get_mut(&ctx) else {
            return;
        };
        let Some(group) = c.groups.pop_front() else {
            return;
        };
        for target in group {
            self.send_branch(now, ctx, target, None, true);
        }
        self.check_complete(now, ctx);
    }

    /// Build and send one client branch of `ctx` to `target.destination`: a new branch at the
    /// end of the context's list, or in place of branch `replace` (RFC 3263 §4.3 failover: a
    /// new client transaction with a new Via branch, the same request otherwise).
    fn send_branch(
        &mut self,
        now: Instant,
        ctx: ContextId,
        target: Target,
        replace: Option<usize>,
        may_switch: bool,
    ) {
        let core = self.config.core;
        let Some(c) = self.contexts.get_mut(&ctx) else {
            return;
        };
        let in_iface = self.config.interfaces.get(c.interface).copied();
        self.counter += 1;
        let branch = Branch::new(core, c.loop_hash, self.counter);
        let ifs = &self.config.interfaces;
        let out_iface = ifs
            .iter()
            .find(|i| {
                i.transport == target.destination.transport
                    && i.addr.is_ipv4() == target.destination.addr.is_ipv4()
            })
            .or_else(|| ifs.first())
            .copied();
        // §16.6 item 4, with a second value when the request changes interface (the
        // "double Record-Route" of RFC 5658): top = side facing the callee.
        let mut record_routes = Vec::new();
        if c.record_route {
            if let Some(o) = out_iface
                && Some(o) != in_iface
            {
                record_routes.push(o.record_route());
            }
            if let Some(i) = in_iface {
                record_routes.push(i.record_route());
            }
        }
        let via = out_iface.map(|o| o.via(branch.as_str()));
        // The received bytes plus this branch's edits, written once (no re-encode).
        let relayed = c.request.message().and_then(|msg| {
            let edits = BranchEdits {
                top_via: c.request.top_via(),
                interfaces: ifs,
                domains: &self.config.domains,
                uri: target.uri.as_deref(),
                routes: &target.routes,
                record_routes: &record_routes,
                via: via.as_deref(),
            };
            relay_request(msg, &edits)
                .ok()
                .and_then(|m| TxRequest::try_from(&m).ok())
        });
        let request = match relayed {
            Some(r) => r,
            None => Self::encode_branch(&c.request, &target, &record_routes, via),
        };
        self.send_built_branch(now, ctx, target, replace, may_switch, request);
    }

    /// A branch request re-encoded from the parts (requests the proxy built itself, without a
    /// message-layer view).
    fn encode_branch(
        request: &TxRequest,
        target: &Target,
        record_routes: &[String],
        via: Option<String>,
    ) -> TxRequest {
        let mut parts = request.parts();
        if let Some(uri) = &target.uri {
            parts.uri.clone_from(uri);
        }
        // RFC 3327 §5.3: a binding's Path becomes this branch's Route set.
        if !target.routes.is_empty() {
            parts.routes.clone_from(&target.routes);
        }
        // §16.6 item 3.
        parts.max_forwards = Some(parts.max_forwards.map_or(70, |m| m.saturating_sub(1)));
        for rr in record_routes.iter().rev() {
            parts.record_routes.insert(0, rr.clone());
        }
        strict_next_hop(&mut parts);
        if let Some(v) = via {
            parts.vias.insert(0, v);
        }
        TxRequest::build(parts)
    }

    /// Send one built branch request (see [`Self::send_branch`]).
    fn send_built_branch(
        &mut self,
        now: Instant,
        ctx: ContextId,
        target: Target,
        replace: Option<usize>,
        may_switch: bool,
        request: TxRequest,
    ) {
        let ifs = &self.config.interfaces;
        // RFC 3261 §18.1.1: too close to the path MTU for UDP, switch to TCP (the Via and the
        // Record-Route then name our TCP interface), keeping UDP as the fallback.
        if may_switch
            && target.destination.transport == crate::transaction::Transport::Udp
            && request.bytes().len() + 200 > self.config.udp_mtu
            && ifs.iter().any(|i| {
                i.transport == crate::transaction::Transport::Tcp
                    && i.addr.is_ipv4() == target.destination.addr.is_ipv4()
            })
        {
            let mut target = target;
            target.fallbacks.insert(0, target.destination);
            target.destination.transport = crate::transaction::Transport::Tcp;
            self.mtu_switches += 1;
            return self.send_branch(now, ctx, target, replace, false);
        }
        let destination = target.destination;
        let timer_c = now + self.config.transactions.timers.timer_c;
        match self.txns.send_request(now, destination, request.clone()) {
            Ok(key) => {
                let Some(c) = self.contexts.get_mut(&ctx) else {
                    return;
                };
                let idx = replace.unwrap_or(c.branches.len());
                self.branch_of.insert(key, (ctx, idx));
                let timer_c = c.invite.then_some(timer_c);
                if let Some(at) = timer_c {
                    self.timer_c.push(Reverse((at, key)));
                }
                let b = ClientBranch {
                    key,
                    request,
                    destination,
                    target,
                    state: BranchState::Trying,
                    cancel_when_provisional: false,
                    timer_c,
                };
                match c.branches.get_mut(idx) {
                    Some(slot) => *slot = b,
                    None => c.branches.push(b),
                }
            }
            Err(_) => {
                // Cannot happen with our unique branches; treat like a transport error.
                let Some(c) = self.contexts.get_mut(&ctx) else {
                    return;
                };
                c.finals.push(TxResponse::to_request(
                    &c.request,
                    503,
                    "Service Unavailable",
                    None,
                ));
                if let Some(b) = replace.and_then(|i| c.branches.get_mut(i)) {
                    b.state = BranchState::Done;
                    b.timer_c = None;
                }
            }
        }
    }

    /// RFC 3263 §4.3: branch `idx` of `ctx` (client transaction `key`) failed with a transport
    /// error, a timeout or a 503; when its target has another address and the context still
    /// wants answers, send the request there instead and return true.
    fn fail_over(&mut self, now: Instant, ctx: ContextId, idx: usize, key: TransactionKey) -> bool {
        let Some(c) = self.contexts.get_mut(&ctx) else {
            return false;
        };
        if c.final_sent || c.cancelled || c.got_6xx {
            return false;
        }
        let Some(b) = c.branches.get_mut(idx) else {
            return false;
        };
        if b.key != key
            || b.target.fallbacks.is_empty()
            || !matches!(b.state, BranchState::Trying | BranchState::Proceeding)
        {
            return false;
        }
        let mut target = b.target.clone();
        let failed = b.destination;
        target.destination = target.fallbacks.remove(0);
        // RFC 3261 §18.1.1: the TCP attempt made for the request's size failed; the UDP retry
        // to the same address must not switch to TCP again.
        let mtu_fallback = failed.transport == crate::transaction::Transport::Tcp
            && target.destination.transport == crate::transaction::Transport::Udp
            && failed.addr == target.destination.addr;
        b.state = BranchState::Done;
        b.timer_c = None;
        self.branch_of.remove(&key);
        self.send_branch(now, ctx, target, Some(idx), !mtu_fallback);
        true
    }

    /// The transport to `destination` failed (TCP/TLS connect refused or reset, a write
    /// error): every client transaction to it fails now (RFC 3261 §8.1.3.1, §16.7), moving on
    /// to the next address of its target (RFC 3263 §4.3) or counting as a 503, without
    /// waiting for Timer B/F.
    pub fn transport_failed(&mut self, now: Instant, destination: Remote) {
        let mut keys: Vec<TransactionKey> = self
            .contexts
            .values()
            .flat_map(|c| c.branches.iter())
            .filter(|b| {
                b.destination == destination
                    && matches!(b.state, BranchState::Trying | BranchState::Proceeding)
            })
            .map(|b| b.key)
            .collect();
        keys.extend(
            self.uac
                .iter()
                .filter(|(_, d)| **d == destination)
                .map(|(k, _)| *k),
        );
        if keys.is_empty() {
            return;
        }
        for key in keys {
            self.txns.handle_transport_error(key);
        }
        self.drain_transactions(now, 0);
    }

    fn on_branch_response(&mut self, now: Instant, key: TransactionKey, response: TxResponse) {
        let Some(&(ctx, idx)) = self.branch_of.get(&key) else {
            // A 2xx retransmission passed up by an Accepted branch whose context is gone
            // (RFC 6026 §8.4: forwarded upstream); anything else is a CANCEL's own response.
            if (200..300).contains(&response.status()) && response.cseq_method() == "INVITE" {
                self.forward_stray(&response);
            }
            return;
        };
        let status = response.status();
        let upstream = response.without_top_via();
        if status < 200 {
            let Some(c) = self.contexts.get_mut(&ctx) else {
                return;
            };
            let Some(b) = c.branches.get_mut(idx) else {
                return;
            };
            if b.state == BranchState::Trying {
                b.state = BranchState::Proceeding;
                if b.cancel_when_provisional {
                    let cancel = b.request.cancel();
                    let dest = b.destination;
                    b.state = BranchState::Cancelling;
                    let _ = self.txns.send_request(now, dest, cancel);
                }
            }
            // §16.7 step 2: a 101-199 resets Timer C.
            if status > 100 && b.timer_c.is_some() {
                let at = now + self.config.transactions.timers.timer_c;
                b.timer_c = Some(at);
                self.timer_c.push(Reverse((at, key)));
            }
            // §16.7 step 5: 101-199 forwarded, 100 not.
            if status > 100 && !c.final_sent && !c.cancelled {
                if c.hooks.replies {
                    self.hold(ctx, upstream);
                } else {
                    let _ = self.send_upstream(now, ctx, upstream);
                }
            }
            return;
        }
        // RFC 3263 §4.3: a 503 from one address of the next hop sends the request to the next.
        if status == 503 && self.fail_over(now, ctx, idx, key) {
            return;
        }
        self.on_branch_final(now, ctx, idx, Some(upstream), status, "");
    }

    fn on_branch_final(
        &mut self,
        now: Instant,
        ctx: ContextId,
        idx: usize,
        response: Option<TxResponse>,
        status: u16,
        reason: &str,
    ) {
        let tag = self.local_tag();
        let Some(c) = self.contexts.get_mut(&ctx) else {
            return;
        };
        let ok = (200..300).contains(&status);
        if let Some(b) = c.branches.get_mut(idx) {
            if b.state == BranchState::Done && !ok {
                return; // already has a final (Timer C); a late 487 changes nothing
            }
            b.state = BranchState::Done;
            b.timer_c = None;
        }
        let received = response.is_some();
        let response = response
            .unwrap_or_else(|| TxResponse::to_request(&c.request, status, reason, Some(&tag)));
        if received && c.hooks.replies {
            self.hold(ctx, response);
            return;
        }
        self.apply_final(now, ctx, response);
    }

    /// A branch's final response takes effect (§16.7 steps 4-5, 10).
    fn apply_final(&mut self, now: Instant, ctx: ContextId, response: TxResponse) {
        let status = response.status();
        let Some(c) = self.contexts.get_mut(&ctx) else {
            return;
        };
        if (200..300).contains(&status) {
            // §16.7 step 5: every 2xx goes upstream at once.
            let _ = self.send_upstream(now, ctx, response);
            if self.contexts.get(&ctx).is_some_and(|c| c.invite) {
                self.cancel_pending(now, ctx);
            }
            self.maybe_remove(ctx);
            return;
        }
        if status >= 600 {
            c.got_6xx = true;
            c.finals.push(response);
            self.cancel_pending(now, ctx);
        } else {
            c.finals.push(response);
        }
        self.check_complete(now, ctx);
    }

    /// When no branch is pending: next sequential group, or the best response upstream.
    fn check_complete(&mut self, now: Instant, ctx: ContextId) {
        let tag = self.local_tag();
        let Some(c) = self.contexts.get(&ctx) else {
            return;
        };
        if c.final_sent {
            self.maybe_remove(ctx);
            return;
        }
        // Pending branches block the answer, except those cancelled before any provisional
        // (their CANCEL cannot even be sent yet, §9.1; they may take until Timer B).
        let blocking = |b: &ClientBranch| match b.state {
            BranchState::Trying => !b.cancel_when_provisional,
            BranchState::Proceeding | BranchState::Cancelling => true,
            BranchState::Done => false,
        };
        if c.held > 0 || c.failure.is_some() || c.branches.iter().any(blocking) {
            return;
        }
        let hooks = c.hooks;
        if !c.groups.is_empty() && !c.cancelled && !c.got_6xx {
            self.start_next_group(now, ctx);
            return;
        }
        // The branch's own status: `on_failure` sees a 503 as a 503; upstream gets a 500.
        let mut best = best_branch_response(&c.finals).unwrap_or_else(|| {
            TxResponse::to_request(&c.request, 408, "Request Timeout", Some(&tag))
        });
        if c.cancelled && best.status() < 600 {
            best = TxResponse::to_request(&c.request, 487, "Request Terminated", best.to_tag());
        } else if hooks.failures {
            if let Some(c) = self.contexts.get_mut(&ctx) {
                c.failure = Some(best.clone());
                c.finals.clear();
            }
            self.events.push_back(ProxyEvent::Failure {
                ctx,
                response: best,
            });
            return;
        }
        let _ = self.send_upstream(now, ctx, upstream_form(best));
        self.maybe_remove(ctx);
    }

    /// Send a response on the context's server transaction; once it has terminated (after a
    /// first 2xx), further 2xx go straight to the upstream peer.
    fn send_upstream(
        &mut self,
        now: Instant,
        ctx: ContextId,
        response: TxResponse,
    ) -> Result<(), ProxyError> {
        let c = self
            .contexts
            .get_mut(&ctx)
            .ok_or(ProxyError::UnknownContext)?;
        let status = response.status();
        let is_final = status >= 200;
        if is_final && c.final_sent && !(200..300).contains(&status) {
            return Err(ProxyError::AlreadyAnswered);
        }
        if is_final && !c.final_sent {
            c.final_sent = true;
            c.groups.clear();
            if let Some(r) = c.reliable.take() {
                self.prack.remove(&(c.request.call_id().into(), r.rseq));
            }
            self.events.push_back(ProxyEvent::Completed { ctx, status });
        }
        let server = self.txns.state(ctx.0);
        let late_2xx = (200..300).contains(&status)
            && matches!(server, Some(State::Completed | State::Confirmed));
        if server.is_some() && !late_2xx {
            self.txns.send_response(now, ctx.0, response)?;
        } else {
            let source = c.source;
            self.transmits.push_back(Transmit {
                destination: source,
                message: Outgoing::Response(response),
            });
        }
        Ok(())
    }

    /// Forget a context as soon as it can no longer act: its final response is sent and no
    /// branch can still bring a response it must process (each branch transaction ended, or
    /// waits in Completed / Accepted). The server transaction goes on alone (it absorbs or
    /// answers retransmissions, passes the ACK of a 2xx up); 2xx retransmissions that an
    /// Accepted branch passes up are relayed by their Via ([`Self::forward_stray`]).
    fn maybe_remove(&mut self, ctx: ContextId) {
        let Some(c) = self.contexts.get(&ctx) else {
            return;
        };
        let live_branch = c.branches.iter().any(|b| {
            matches!(
                self.txns.state(b.key),
                Some(State::Calling | State::Trying | State::Proceeding)
            )
        });
        if c.final_sent && c.held == 0 && !live_branch {
            if let Some(c) = self.contexts.remove(&ctx) {
                for b in &c.branches {
                    self.branch_of.remove(&b.key);
                }
            }
        }
    }

    /// §16.7 / §18.1.2: a response with no client transaction (a retransmitted 2xx): pop our
    /// Via and send it to the next one.
    fn forward_stray(&mut self, response: &TxResponse) {
        let Some(top) = response.top_via() else {
            return;
        };
        if !self.is_ours(top) || response.branch().and_then(owner_core).is_none() {
            return;
        }
        let upstream = response.without_top_via();
        let Some(dest) = upstream.top_via().and_then(via_destination) else {
            return;
        };
        self.transmits.push_back(Transmit {
            destination: dest,
            message: Outgoing::Response(upstream),
        });
    }
}

/// Whether the request's `Supported` or `Require` (RFC 3262 §3) lists `100rel`.
fn supports_100rel(request: &TxRequest) -> bool {
    ["Supported", "k", "Require"].iter().any(|name| {
        request
            .header_values(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("100rel"))
    })
}

/// `RAck: rseq cseq method` (RFC 3262 §7.2) as (RSeq, CSeq number).
fn parse_rack(value: &str) -> Option<(u32, u32)> {
    let mut it = value.split_whitespace();
    let rseq = it.next()?.parse().ok()?;
    let cseq = it.next()?.parse().ok()?;
    Some((rseq, cseq))
}
