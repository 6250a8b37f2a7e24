//! The per-core SIP engine: the reactor [`Handler`] that glues one core's transports, its share
//! of the transaction table (the §16 proxy core of `siphon_sip`), and its script worker.
//!
//! Data path of one request (DESIGN.md): datagram or stream bytes → parse → validate (400, 416,
//! 420, 483, 505 answered here, never reaching Python) → proxy core (retransmissions, ACK for
//! non-2xx, CANCEL and 100 Trying absorbed) → `ProxyEvent::Request` → script worker ring →
//! `Actions` back (doorbell → `Msg::Wake`) → forward / fork / reply through the proxy core →
//! transmits queued into the reactor's batch.
//!
//! Ownership: a transaction belongs to the core that created it. Responses carry that core in
//! the branch we generated (`owner_core`); one that arrives elsewhere is forwarded over the mesh.
//! Streams belong to the core that accepted or dialled them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustc_hash::FxHashMap;
use siphon_reactor::{
    CloseReason, ConnId, ConnInfo, ConnectError, Cx, Datagram, Handler, TimerId, UdpSocketId,
};
use siphon_script::{
    Disposition, Event, EventKind, ForkStrategy, HostHandle, Meta, OutboundRequest, SipMessage,
};
use siphon_sip::locate::{LocateError, Request as LocateRequest};
use siphon_sip::proxy::{
    Answer, ContextId, Hooks, Interface, Proxy, ProxyConfig, ProxyError, ProxyEvent, ReplyId,
    Target, owner_core,
};
use siphon_sip::transaction::{Outgoing, Remote, Transmit, Transport, TxRequest, TxResponse};
use siphon_sip::validate::{ValidationConfig, validate_request};
use siphon_sip::{Message, ParseErrorKind, StreamFramer, StreamItem};

use crate::metrics::{CoreMetrics, DropReason, Metrics, TransportCause};

#[path = "watchdog.rs"]
mod watchdog;
pub use watchdog::FaultConfig;

/// Granularity of transaction timer wake-ups (RFC 3261 timers are 500 ms and up; 5 ms late
/// is harmless, and it turns one wake-up per timer into one per slot).
const TIMER_SLACK: Duration = Duration::from_millis(5);

/// Token of the reactor timer that wakes the inline interpreter for its asyncio deadlines
/// (transaction timers use 0).
const SCRIPT_TIMER: u64 = 1;

/// Messages between cores (and from the script host) over the reactor mesh.
#[derive(Debug)]
pub enum Msg {
    /// The script worker pushed actions for this core.
    Wake,
    /// A script queued a request to originate (`proxy.send_request`); core 0 sends them.
    Outbound,
    /// A message that belongs to this core (its transaction lives here).
    Inbound {
        /// Transport it arrived on.
        transport: Transport,
        /// Sender.
        peer: SocketAddr,
        /// The bytes.
        data: Bytes,
    },
    /// The resolver thread's answer to a lookup this core submitted (RFC 3263).
    Resolved(crate::dns::Resolved),
    /// SIGTERM: unbind every SMPP session of this core.
    #[cfg(feature = "smpp")]
    SmppUnbindAll,
    /// SIGHUP: `smpp.yaml`'s binds, read again.
    #[cfg(feature = "smpp")]
    SmppReloadBinds(Arc<crate::smpp::binds::ReloadedBinds>),
}

/// What every core shares (read-only on the data path).
pub struct Shared {
    /// The script host's rings.
    pub host: HostHandle,
    /// Node metrics.
    pub metrics: Arc<Metrics>,
    /// Our interfaces (Via, Record-Route), by transport.
    pub interfaces: Vec<Interface>,
    /// `domain.local`.
    pub domains: Vec<String>,
    /// `listen.mtu` (RFC 3261 §18.1.1 switch to TCP).
    pub udp_mtu: usize,
    /// Transaction timers.
    pub transactions: siphon_sip::transaction::Config,
    /// UDP socket index for IPv4 and IPv6 sends.
    pub udp_v4: Option<UdpSocketId>,
    /// See `udp_v4`.
    pub udp_v6: Option<UdpSocketId>,
    /// Set by SIGTERM: new INVITEs get 503.
    pub draining: AtomicBool,
    /// Outbound TLS settings (trust roots from `tls.client_ca`), if configured.
    pub tls_client: Option<siphon_reactor::tls::TlsClient>,
    /// Name resolution (RFC 3263) off the reactors.
    pub dns: Arc<crate::dns::Dns>,
    /// `security:` (bans, rate limit, scanners), checked before the parse and the script.
    pub security: Arc<crate::security::Security>,
    /// `limits:` the engine enforces (transactions, stream reassembly).
    pub limits: Arc<crate::limits::NodeLimits>,
    /// Overload shedding and script deadlines.
    pub faults: FaultConfig,
    /// The SMPP listener's settings, when `extensions.smpp` configures one.
    #[cfg(feature = "smpp")]
    pub smpp: Option<Arc<crate::smpp::SmppShared>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("interfaces", &self.interfaces)
            .finish_non_exhaustive()
    }
}

/// The request a context's reply and failure events show the script.
#[derive(Clone)]
struct CtxInfo {
    request: Arc<SipMessage>,
    request_id: u64,
    register: bool,
    meta: Meta,
}

/// What a script event's actions answer.
enum Pending {
    /// A new request: route it.
    Request { ctx: ContextId, info: CtxInfo },
    /// A held branch reply: relay, drop or reject it.
    Reply { ctx: ContextId, reply: ReplyId },
    /// Every branch failed: re-target, answer or relay the best response.
    Failure { ctx: ContextId },
}

/// Global reply/failure handlers of the loaded script.
#[derive(Debug, Clone, Copy, Default)]
struct ScriptFlags {
    on_reply: bool,
    on_failure: bool,
    on_register_reply: bool,
}

/// Most routing decisions, ACKs and originated requests one core keeps waiting for DNS; more
/// are answered 503 (dropped for ACKs) at once.
const MAX_PARKED: usize = 4096;

/// Where one target of a routing decision goes.
enum Dest {
    /// Known now (IP literal, live flow, cache hit), in RFC 3263 order.
    Ready(Result<Vec<Remote>, LocateError>),
    /// Waits for the resolver.
    Lookup(LocateRequest),
}

/// One target of a relay/fork decision before resolution.
struct Spec {
    uri: Option<String>,
    q: u16,
    routes: Vec<String>,
    dest: Dest,
}

/// What waits for a DNS answer ([`Msg::Resolved`]), by lookup id.
enum Parked {
    /// A relay/fork decision of a context.
    Route {
        ctx: ContextId,
        specs: Vec<Spec>,
        fork: bool,
        record_route: bool,
    },
    /// An ACK for a 2xx to forward statelessly.
    Ack { request: TxRequest },
    /// A request a script originated: (parts, (worker, token) when it awaits the answer).
    Outbound {
        parts: Box<siphon_sip::transaction::RequestParts>,
        wait: Option<(usize, u64)>,
    },
}

struct Stream {
    framer: StreamFramer,
    peer: SocketAddr,
    transport: Transport,
}

/// One core's engine.
pub struct Engine {
    core: usize,
    shared: Arc<Shared>,
    m: Arc<CoreMetrics>,
    proxy: Proxy,
    /// Script event id → what waits for its actions.
    pending: FxHashMap<u64, Pending>,
    /// Contexts whose replies or failure go to the script (hooks on), with what to show it.
    ctx_info: FxHashMap<ContextId, CtxInfo>,
    /// Which hooks the loaded script has, and when that was last read.
    flags: ScriptFlags,
    flags_checked: Option<Instant>,
    /// Originated requests whose script awaits the final response: (worker, token).
    outbound: FxHashMap<siphon_sip::transaction::TransactionKey, (usize, u64)>,
    next_id: u64,
    timer: Option<(TimerId, Instant)>,
    /// Origin of the timer slots.
    epoch: Instant,
    streams: FxHashMap<ConnId, Stream>,
    by_peer: HashMap<(Transport, SocketAddr), ConnId>,
    /// This core's interpreter when `tuning.script_placement: inline` (driven every turn).
    inline: Option<siphon_script::InlineWorker>,
    /// The inline worker handled something last turn: take another turn before sleeping.
    inline_busy: bool,
    /// Reactor timer armed for the inline interpreter's next asyncio deadline.
    script_timer: Option<(TimerId, Instant)>,
    /// Decisions waiting for DNS, by lookup id (at most [`MAX_PARKED`]).
    parked: FxHashMap<u64, Parked>,
    /// Destinations whose transport failed while sending; the proxy core hears of them in
    /// [`Self::drain`].
    failed_dests: Vec<Remote>,
    /// Script deadlines and stall state (`watchdog.rs`).
    faults: watchdog::Faults,
    /// The transaction layer's early endings of lingering transactions already counted.
    lingering_evicted: u64,
    /// This core's SMPP sessions.
    #[cfg(feature = "smpp")]
    smpp: Option<crate::smpp::SmppCore>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

fn transport_name(t: Transport) -> &'static str {
    match t {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
        Transport::Sctp => "sctp",
        Transport::Ws => "ws",
        _ => "wss",
    }
}

impl Engine {
    /// The engine of `core`.
    pub fn new(core: usize, shared: Arc<Shared>) -> Self {
        let proxy = Proxy::new(ProxyConfig {
            core: u16::try_from(core).unwrap_or(u16::MAX),
            interfaces: shared.interfaces.clone(),
            domains: shared.domains.clone(),
            transactions: shared.transactions,
            hooks: Hooks::default(),
            udp_mtu: shared.udp_mtu,
        });
        #[cfg(feature = "smpp")]
        let smpp = shared
            .smpp
            .as_ref()
            .map(|s| crate::smpp::SmppCore::new(core, Arc::clone(s), shared.host.clone()));
        Self {
            core,
            m: shared.metrics.core(core),
            shared,
            proxy,
            pending: FxHashMap::default(),
            ctx_info: FxHashMap::default(),
            flags: ScriptFlags::default(),
            flags_checked: None,
            outbound: FxHashMap::default(),
            next_id: 0,
            timer: None,
            epoch: Instant::now(),
            streams: FxHashMap::default(),
            by_peer: HashMap::new(),
            inline: None,
            inline_busy: false,
            script_timer: None,
            parked: FxHashMap::default(),
            failed_dests: Vec::new(),
            faults: watchdog::Faults::default(),
            lingering_evicted: 0,
            #[cfg(feature = "smpp")]
            smpp,
        }
    }

    /// Drive this core's interpreter from the reactor thread (inline placement). Must be
    /// called on the reactor thread; the worker is dropped with the engine on that thread.
    pub fn with_inline_worker(mut self, worker: siphon_script::InlineWorker) -> Self {
        self.inline = Some(worker);
        self
    }

    fn interface_index(&self, transport: Transport) -> usize {
        self.shared
            .interfaces
            .iter()
            .position(|i| i.transport == transport)
            .unwrap_or(0)
    }

    /// One complete message from `peer`.
    fn handle_bytes(
        &mut self,
        cx: &mut Cx<'_, Msg>,
        transport: Transport,
        peer: SocketAddr,
        data: Bytes,
    ) {
        let msg = match Message::parse(data.clone()) {
            Ok(m) => m,
            Err(e) if e.kind == ParseErrorKind::Empty => return, // keep-alive
            Err(e) => {
                // RFC 4475 §3.1.2: a 400 naming the fault, if it still reads as a request.
                let (status, reason) = siphon_sip::salvage::parse_error_reply(&e);
                let source = Remote {
                    addr: peer,
                    transport,
                };
                self.reply_salvaged(cx, source, &data, status.0, reason);
                return;
            }
        };
        let now = cx.now();
        let source = Remote {
            addr: peer,
            transport,
        };
        if msg.is_response() {
            self.handle_response(cx, source, msg);
            return;
        }
        let method = msg.method_str().unwrap_or("");
        if self.screen(&msg, peer, now) {
            return;
        }
        self.m.request(method);
        if self.shed_early(cx, &msg, source, method) {
            return;
        }
        if let Err(rej) = validate_request(&msg, &ValidationConfig::PROXY) {
            let headers = rej
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), v.clone()))
                .collect();
            self.reply_stateless(cx, &msg, source, rej.status.0, rej.reason, headers);
            return;
        }
        let Ok(tx) = TxRequest::try_from(&msg) else {
            self.reply_stateless(cx, &msg, source, 400, "Bad Request", Vec::new());
            return;
        };
        if method == "INVITE"
            && tx.to_tag().is_none()
            && self.shared.draining.load(Ordering::Relaxed)
        {
            self.reply_stateless(cx, &msg, source, 503, "Service Unavailable", Vec::new());
            return;
        }
        if self.over_transaction_cap(method, &tx) {
            let retry = self.shared.limits.retry_after_secs.to_string();
            let headers = vec![("Retry-After".to_owned(), retry)];
            self.reply_stateless(cx, &msg, source, 503, "Service Unavailable", headers);
            return;
        }
        let iface = self.interface_index(transport);
        self.proxy.handle_request(now, source, iface, tx);
        self.drain(cx);
    }

    fn handle_response(&mut self, cx: &mut Cx<'_, Msg>, source: Remote, msg: Message) {
        if let Some(owner) = msg
            .top_via()
            .ok()
            .and_then(|v| v.branch().and_then(owner_core))
            .map(usize::from)
            && owner != self.core
            && owner < cx.cores()
        {
            self.m.mesh_forwards.fetch_add(1, Ordering::Relaxed);
            let fwd = Msg::Inbound {
                transport: source.transport,
                peer: source.addr,
                data: msg.bytes().clone(),
            };
            if cx.forward(owner, fwd).is_err() {
                self.m.dropped(DropReason::QueueFull);
            }
            return;
        }
        match TxResponse::try_from(&msg) {
            Ok(r) => {
                let now = cx.now();
                self.proxy.handle_response(now, source, r);
                self.drain(cx);
            }
            Err(_) => self.m.dropped(DropReason::Malformed),
        }
    }

    /// Answer without a transaction (validation failures, overload).
    fn reply_stateless(
        &mut self,
        cx: &mut Cx<'_, Msg>,
        msg: &Message,
        source: Remote,
        status: u16,
        reason: &str,
        headers: Vec<(String, String)>,
    ) {
        if msg.method_str() == Some("ACK") {
            return; // never answer an ACK
        }
        let Ok(tx) = TxRequest::try_from(msg) else {
            self.reply_salvaged(cx, source, msg.as_bytes(), status, reason);
            return;
        };
        if status == 400 {
            self.m.malformed_answered.fetch_add(1, Ordering::Relaxed);
        }
        let resp =
            TxResponse::to_request(&tx, status, reason, Some(&format!("{:x}", self.next_id)));
        let resp = if headers.is_empty() {
            resp
        } else {
            let mut parts = resp.parts();
            parts.headers.extend(headers);
            TxResponse::build(parts)
        };
        self.m.response(status);
        // A 400 answers a request whose Via is not trusted: back to where it came from.
        let dest = if status == 400 {
            source
        } else {
            stateless_destination(tx.top_via().unwrap_or(""), source)
        };
        self.send(cx, dest, resp.bytes().clone());
    }

    /// Answer a request that cannot be used as parsed from what a lenient read of its bytes
    /// recovers (`siphon_sip::salvage`, RFC 4475 §3.1.2). Its Via is not trusted, so the
    /// answer goes back to the packet's source (the address RFC 3261 §18.2.2 `received` with
    /// RFC 3581 `rport` names; over TCP/TLS, the same connection). An ACK is never answered;
    /// bytes that cannot be read as a request are dropped and counted as malformed.
    fn reply_salvaged(
        &mut self,
        cx: &mut Cx<'_, Msg>,
        source: Remote,
        bytes: &[u8],
        status: u16,
        reason: &str,
    ) {
        let salvaged = match siphon_sip::salvage::salvage_request(bytes) {
            Ok(s) if !s.is_ack() => s,
            _ => {
                self.m.dropped(DropReason::Malformed);
                return;
            }
        };
        if status == 400 {
            self.m.malformed_answered.fetch_add(1, Ordering::Relaxed);
        }
        self.m.response(status);
        let tag = format!("{:x}", self.next_id);
        let resp = salvaged.response(siphon_sip::StatusCode(status), reason, Some(&tag));
        self.send(cx, source, Bytes::from(resp));
    }

    /// Drain the proxy core: transmits, events, then re-arm the timer.
    fn drain(&mut self, cx: &mut Cx<'_, Msg>) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.proxy.poll_transmit() {
                progressed = true;
                self.transmit(cx, t);
            }
            while let Some(ev) = self.proxy.poll_event() {
                progressed = true;
                self.proxy_event(cx, ev);
            }
            for dest in std::mem::take(&mut self.failed_dests) {
                progressed = true;
                let now = cx.now();
                self.proxy.transport_failed(now, dest);
            }
            if !progressed {
                break;
            }
        }
        self.rearm(cx);
    }

    /// Arm one reactor timer for the proxy core's next deadline, rounded up to a
    /// [`TIMER_SLACK`] slot so that the many transaction timers (retransmissions, Timer
    /// J/K/D, RFC 6026 L/M) of one slot share one wake-up instead of one each.
    fn rearm(&mut self, cx: &mut Cx<'_, Msg>) {
        let next = self.proxy.poll_timeout().map(|at| {
            let since = at.saturating_duration_since(self.epoch);
            let slot = TIMER_SLACK.as_nanos();
            let rounded = since.as_nanos().div_ceil(slot) * slot;
            self.epoch + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
        });
        match (next, self.timer) {
            (Some(at), Some((_, armed))) if armed <= at => {}
            (Some(at), old) => {
                if let Some((id, _)) = old {
                    cx.cancel_timer(id);
                }
                let after = at.saturating_duration_since(cx.now());
                self.timer = Some((cx.set_timer(after, 0), at));
            }
            (None, _) => {}
        }
    }

    fn transmit(&mut self, cx: &mut Cx<'_, Msg>, t: Transmit) {
        if let Outgoing::Response(r) = &t.message {
            self.m.response(r.status());
        }
        self.send(cx, t.destination, t.message.bytes().clone());
    }

    fn send(&mut self, cx: &mut Cx<'_, Msg>, dest: Remote, bytes: Bytes) {
        match dest.transport {
            Transport::Udp => {
                let sock = match dest.addr.ip() {
                    IpAddr::V4(_) => self.shared.udp_v4,
                    IpAddr::V6(_) => self.shared.udp_v6,
                };
                match sock {
                    Some(s) => cx.send_to(s, dest.addr, None, &bytes),
                    None => {
                        self.transport_error(dest, TransportCause::NoSocket);
                    }
                }
            }
            Transport::Tcp | Transport::Tls => {
                let conn = match self.by_peer.get(&(dest.transport, dest.addr)) {
                    Some(c) => *c,
                    None => {
                        let c = if dest.transport == Transport::Tls {
                            let Some(client) = self.shared.tls_client.as_ref() else {
                                // No trust roots configured for outbound TLS.
                                self.m.dropped(DropReason::Stray);
                                return;
                            };
                            match cx.connect_tls(
                                dest.addr,
                                client,
                                &dest.addr.ip().to_string(),
                                None,
                            ) {
                                Ok(c) => c,
                                Err(_) => {
                                    self.transport_error(dest, TransportCause::Connect);
                                    return;
                                }
                            }
                        } else {
                            cx.connect(dest.addr, None)
                        };
                        self.by_peer.insert((dest.transport, dest.addr), c);
                        self.streams.insert(
                            c,
                            Stream {
                                framer: StreamFramer::new(),
                                peer: dest.addr,
                                transport: dest.transport,
                            },
                        );
                        c
                    }
                };
                if cx.write(conn, &bytes).is_err() {
                    self.transport_error(dest, TransportCause::Write);
                }
            }
            _ => self.m.dropped(DropReason::Stray),
        }
    }

    fn proxy_event(&mut self, cx: &mut Cx<'_, Msg>, ev: ProxyEvent) {
        match ev {
            ProxyEvent::Request {
                ctx,
                request,
                source,
            } => self.submit_to_script(cx, ctx, &request, source),
            ProxyEvent::Stateless {
                request, routed, ..
            } => {
                // ACK for a 2xx of a dialog we record-routed: it names us in its Route (popped
                // by the proxy core); the next hop is the remaining Route or the R-URI. Any
                // other ACK with no transaction is dropped and counted: relaying it would make
                // the node an open relay and reflector (and a loop when it names us again).
                let next = siphon_sip::proxy::next_hop_uri(&request).to_string();
                // Our own address and port (domain names of ours may also name a
                // registered user's contact host, e.g. 127.0.0.1 in the loopback example).
                let back_to_us = siphon_sip::proxy::is_local(&next, &self.shared.interfaces, &[]);
                if !routed || back_to_us {
                    self.m.dropped(DropReason::UnroutedAck);
                    return;
                }
                match self.locate_now(&next) {
                    Dest::Ready(Ok(v)) if !v.is_empty() => {
                        self.proxy.forward_stateless(&request, None, v[0]);
                    }
                    Dest::Ready(_) => self.m.dropped(DropReason::UnresolvedAck),
                    Dest::Lookup(req) => {
                        if !self.park(vec![req], Parked::Ack { request }) {
                            self.m.dropped(DropReason::UnresolvedAck);
                        }
                    }
                }
            }
            ProxyEvent::Reply {
                ctx,
                reply,
                response,
            } => {
                self.submit_response(cx.now(), ctx, Some(reply), &response);
            }
            ProxyEvent::Failure { ctx, response } => {
                self.submit_response(cx.now(), ctx, None, &response);
            }
            ProxyEvent::Completed { ctx, .. } => {
                self.ctx_info.remove(&ctx);
            }
            ProxyEvent::UacResponse { key, response } => {
                if let Some((worker, token)) = self.outbound.remove(&key) {
                    let reply = response.and_then(|r| script_view(r.message(), r.bytes()));
                    self.shared.host.complete_outbound(worker, token, reply);
                }
            }
            _ => {}
        }
    }

    fn submit_to_script(
        &mut self,
        cx: &mut Cx<'_, Msg>,
        ctx: ContextId,
        request: &TxRequest,
        source: Remote,
    ) {
        let now = cx.now();
        let Some(msg) = script_view(request.message(), request.bytes()) else {
            let _ = self.proxy.respond(now, ctx, 400, "Bad Request");
            return;
        };
        let meta = Meta {
            transport: transport_name(source.transport),
            source: source.addr,
        };
        let request = Arc::new(msg);
        let register = request.method() == "REGISTER";
        let invite = request.method() == "INVITE";
        let id = self.next_event_id();
        let ev = Event {
            id,
            core: self.core,
            kind: EventKind::Request,
            request: Arc::clone(&request),
            reply: None,
            meta,
            request_id: None,
        };
        if self.shared.host.submit(ev).is_err() {
            self.m.dropped(DropReason::QueueFull);
            self.answer_busy(now, ctx);
            return;
        }
        self.m.transactions.fetch_add(1, Ordering::Relaxed);
        self.track_event(id, now, invite);
        self.pending.insert(
            id,
            Pending::Request {
                ctx,
                info: CtxInfo {
                    request,
                    request_id: id,
                    register,
                    meta,
                },
            },
        );
    }

    /// Send `first` (requests that follow an answer: a SUBSCRIBE's NOTIFY), then what scripts
    /// queued with `proxy.send_request`. The next hop is `next_hop`, else the first Route,
    /// else the Request-URI; missing From/To/Call-ID/CSeq are generated.
    fn send_outbound(&mut self, cx: &mut Cx<'_, Msg>, first: Vec<OutboundRequest>) {
        let now = cx.now();
        let mut first = first.into_iter();
        while let Some(req) = first.next().or_else(|| self.shared.host.poll_outbound()) {
            let mut parts = siphon_sip::transaction::RequestParts {
                method: req.method.clone(),
                uri: req.ruri.clone(),
                body: req.body.clone().unwrap_or_default(),
                ..Default::default()
            };
            let mut cseq = None;
            for (name, value) in &req.headers {
                match name.to_ascii_lowercase().as_str() {
                    "from" | "f" => parts.from = value.clone(),
                    "to" | "t" => parts.to = value.clone(),
                    "call-id" | "i" => parts.call_id = value.clone(),
                    "cseq" => cseq = value.split_whitespace().next().and_then(|n| n.parse().ok()),
                    "route" => parts.routes.push(value.clone()),
                    "max-forwards" => parts.max_forwards = value.trim().parse().ok(),
                    "via" | "v" | "content-length" | "l" => {}
                    _ => parts.headers.push((name.clone(), value.clone())),
                }
            }
            self.next_id += 1;
            let tag = format!("{:x}{:x}", self.core, self.next_id);
            let host = self
                .shared
                .interfaces
                .first()
                .map(|i| i.addr.to_string())
                .unwrap_or_default();
            if parts.from.is_empty() {
                parts.from = format!("<sip:siphon@{host}>;tag={tag}");
            }
            if parts.to.is_empty() {
                parts.to = format!("<{}>", req.ruri);
            }
            if parts.call_id.is_empty() {
                parts.call_id = format!("{tag}-{}@{host}", req.token);
            }
            parts.cseq = cseq.unwrap_or(1);
            let next = req
                .next_hop
                .clone()
                .or_else(|| {
                    parts
                        .routes
                        .first()
                        .map(|r| siphon_sip::proxy::strip_angle(r).to_string())
                })
                .unwrap_or_else(|| req.ruri.clone());
            let wait = req.wait_for_response.then_some((req.worker, req.token));
            let dest = match self.locate_now(&next) {
                Dest::Ready(Ok(v)) => v.first().copied(),
                Dest::Ready(Err(_)) => None,
                Dest::Lookup(lr) => {
                    if !self.park(
                        vec![lr],
                        Parked::Outbound {
                            parts: Box::new(parts),
                            wait,
                        },
                    ) {
                        self.m.dropped(DropReason::Stray);
                        if let Some((worker, token)) = wait {
                            self.shared.host.complete_outbound(worker, token, None);
                        }
                    }
                    continue;
                }
            };
            let sent = dest.map(|dest| self.proxy.send_request(now, dest, parts));
            match sent {
                Some(Ok(key)) if req.wait_for_response => {
                    self.outbound.insert(key, (req.worker, req.token));
                }
                Some(Ok(_)) => {}
                _ => {
                    self.m.dropped(DropReason::Stray);
                    if req.wait_for_response {
                        self.shared
                            .host
                            .complete_outbound(req.worker, req.token, None);
                    }
                }
            }
        }
        self.drain(cx);
    }

    fn next_event_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Offer a branch reply (`on_reply`, per-relay callbacks, `on_register_reply`) or the
    /// best failure (`on_failure`) to the script; without a context to show, relay at once.
    fn submit_response(
        &mut self,
        now: Instant,
        ctx: ContextId,
        held: Option<ReplyId>,
        response: &TxResponse,
    ) {
        let parsed = script_view(response.message(), response.bytes());
        let Some((info, reply)) = self.ctx_info.get(&ctx).cloned().zip(parsed) else {
            self.release(now, ctx, held);
            return;
        };
        let kind = match held {
            None => EventKind::Failure,
            Some(_) if info.register => EventKind::RegisterReply,
            Some(_) => EventKind::Reply,
        };
        let id = self.next_event_id();
        let ev = Event {
            id,
            core: self.core,
            kind,
            request: Arc::clone(&info.request),
            reply: Some(Arc::new(reply)),
            meta: info.meta,
            request_id: Some(info.request_id),
        };
        if self.shared.host.submit(ev).is_err() {
            self.m.dropped(DropReason::QueueFull);
            self.release(now, ctx, held);
            return;
        }
        let p = match held {
            Some(reply) => Pending::Reply { ctx, reply },
            None => Pending::Failure { ctx },
        };
        self.pending.insert(id, p);
        self.track_event(id, now, false);
    }

    /// Let the proxy core do what it would have done without the hook.
    fn release(&mut self, now: Instant, ctx: ContextId, held: Option<ReplyId>) {
        let _ = match held {
            Some(r) => self.proxy.relay_reply(now, r),
            None => self.proxy.relay_failure(now, ctx),
        };
    }

    /// Re-read which hooks the loaded script has (after reloads), at most once a second.
    fn refresh_flags(&mut self, now: Instant) {
        if self
            .flags_checked
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        self.flags_checked = Some(now);
        let h = &self.shared.host;
        let has = |kind: &str| {
            h.metric_value("siphon_script_handlers_by_kind", &[kind])
                .is_some_and(|n| n > 0.0)
        };
        self.flags = ScriptFlags {
            on_reply: has("proxy.on_reply"),
            on_failure: has("proxy.on_failure"),
            on_register_reply: has("proxy.on_register_reply"),
        };
    }

    /// A captured flow (`Contact.flow`) that can still be used: UDP always, a stream while its
    /// connection is open (RFC 5626 §5.3: reuse the flow; a closed one falls back to the URI).
    fn live_flow(&self, flow: Option<Remote>) -> Option<Remote> {
        flow.filter(|f| {
            !f.transport.is_reliable() || self.by_peer.contains_key(&(f.transport, f.addr))
        })
    }

    /// Targets of a `relay`/`fork` decision, resolved where that needs no waiting (flows, IP
    /// literals, cache hits). A fork branch to a registered Contact carries the binding's Path
    /// as its Route set and goes over the binding's flow, else to the top Path value, else to
    /// its URI. `None`: a relay with no next hop at all.
    fn targets(&self, ctx: ContextId, d: &Disposition) -> Option<Vec<Spec>> {
        match d {
            Disposition::Relay { next_hop, flow, .. } => {
                let dest = match self.live_flow(*flow) {
                    Some(f) => Dest::Ready(Ok(vec![f])),
                    None => {
                        let target = next_hop.clone().or_else(|| self.proxy.next_hop(ctx))?;
                        self.locate_now(&target)
                    }
                };
                Some(vec![Spec {
                    uri: None,
                    q: 1000,
                    routes: Vec::new(),
                    dest,
                }])
            }
            Disposition::Fork { targets, strategy } => {
                let n = targets.len();
                let ts: Vec<Spec> = targets
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let dest = match self.live_flow(t.flow) {
                            Some(f) => Dest::Ready(Ok(vec![f])),
                            None => self.locate_now(
                                t.routes.first().map_or(t.uri.as_str(), String::as_str),
                            ),
                        };
                        let q = match strategy {
                            ForkStrategy::Parallel => 1000,
                            _ => u16::try_from(1000 - (i * 1000 / n.max(1))).unwrap_or(0),
                        };
                        Spec {
                            uri: Some(siphon_sip::proxy::strip_angle(&t.uri).to_string()),
                            q,
                            routes: t.routes.clone(),
                            dest,
                        }
                    })
                    .collect();
                Some(ts)
            }
            _ => None,
        }
    }

    /// Where `uri` points, if that is known without waiting: an IP literal (no DNS) or a
    /// cache hit; else the lookup to submit. Never blocks.
    fn locate_now(&self, uri: &str) -> Dest {
        let req = match LocateRequest::from_uri(uri) {
            Ok(r) => r,
            Err(e) => return Dest::Ready(Err(e)),
        };
        let seed = self.seed();
        match self.shared.dns.cached(&req, seed) {
            Some(r) => Dest::Ready(r),
            None => Dest::Lookup(req),
        }
    }

    /// Randomness for RFC 2782 weighted selection (differs per decision and core).
    fn seed(&self) -> u64 {
        let t = self.epoch.elapsed().as_nanos() as u64;
        t ^ (self.next_id.rotate_left(17)) ^ ((self.core as u64) << 48)
    }

    /// Submit `requests` to the resolver and park `what` until the answer; false when the
    /// table of waiting decisions is full or the resolver refuses (the caller fails it now).
    fn park(&mut self, requests: Vec<LocateRequest>, what: Parked) -> bool {
        if self.parked.len() >= MAX_PARKED {
            self.shared
                .dns
                .metrics()
                .rejected
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let id = self.next_event_id();
        let seed = self.seed();
        if self
            .shared
            .dns
            .submit(self.core, id, requests, seed)
            .is_err()
        {
            return false;
        }
        self.parked.insert(id, what);
        true
    }

    /// A relay/fork decision whose targets are all known: forward, or answer when none
    /// resolved (408 when DNS timed out, else 503 for a relay and 480 for a fork).
    fn forward_specs(
        &mut self,
        now: Instant,
        ctx: ContextId,
        specs: Vec<Spec>,
        fork: bool,
        record_route: bool,
    ) -> Result<(), ProxyError> {
        let mut timed_out = false;
        let mut ts = Vec::new();
        for s in specs {
            match s.dest {
                Dest::Ready(Ok(mut v)) if !v.is_empty() => {
                    let destination = v.remove(0);
                    ts.push(Target {
                        uri: s.uri,
                        destination,
                        q: s.q,
                        routes: s.routes,
                        fallbacks: v,
                    });
                }
                Dest::Ready(Err(LocateError::Timeout)) => timed_out = true,
                _ => {}
            }
        }
        if !ts.is_empty() {
            self.proxy.forward(now, ctx, ts, record_route)
        } else if timed_out {
            self.proxy.respond(now, ctx, 408, "Request Timeout")
        } else if fork {
            self.proxy.respond(now, ctx, 480, "Temporarily Unavailable")
        } else {
            self.proxy.respond(now, ctx, 503, "Service Unavailable")
        }
    }

    /// The resolver answered lookup `r.id`: continue what waited for it.
    fn on_resolved(&mut self, cx: &mut Cx<'_, Msg>, r: crate::dns::Resolved) {
        let Some(p) = self.parked.remove(&r.id) else {
            return;
        };
        let now = cx.now();
        let mut results = r.results.into_iter();
        match p {
            Parked::Route {
                ctx,
                mut specs,
                fork,
                record_route,
            } => {
                for s in &mut specs {
                    if matches!(s.dest, Dest::Lookup(_)) {
                        s.dest = Dest::Ready(results.next().unwrap_or(Err(LocateError::Failed)));
                    }
                }
                if self
                    .forward_specs(now, ctx, specs, fork, record_route)
                    .is_err()
                {
                    // The context ended while it waited (CANCEL, or answered meanwhile).
                    self.m.dropped(DropReason::Stray);
                }
            }
            Parked::Ack { request } => match results.next() {
                Some(Ok(v)) if !v.is_empty() => {
                    self.proxy.forward_stateless(&request, None, v[0]);
                }
                _ => self.m.dropped(DropReason::UnresolvedAck),
            },
            Parked::Outbound { parts, wait } => {
                let sent = match results.next() {
                    Some(Ok(v)) if !v.is_empty() => self.proxy.send_request(now, v[0], *parts).ok(),
                    _ => None,
                };
                match (sent, wait) {
                    (Some(key), Some(w)) => {
                        self.outbound.insert(key, w);
                    }
                    (Some(_), None) => {}
                    (None, w) => {
                        self.m.dropped(DropReason::Stray);
                        if let Some((worker, token)) = w {
                            self.shared.host.complete_outbound(worker, token, None);
                        }
                    }
                }
            }
        }
        self.drain(cx);
    }

    /// A routing decision (for a new request, or a re-target from `on_failure`).
    fn route(
        &mut self,
        now: Instant,
        ctx: ContextId,
        d: Disposition,
        record_route: bool,
    ) -> Result<(), ProxyError> {
        match d {
            Disposition::Reply {
                status,
                reason,
                headers,
                body,
                reliable,
                to_tag,
                ..
            } => self.proxy.answer(
                now,
                ctx,
                Answer {
                    status,
                    reason,
                    headers,
                    body,
                    to_tag,
                    reliable,
                },
            ),
            Disposition::Relay { .. } | Disposition::Fork { .. } => {
                let fork = matches!(d, Disposition::Fork { .. });
                match self.targets(ctx, &d) {
                    Some(specs) if specs.iter().any(|s| matches!(s.dest, Dest::Lookup(_))) => {
                        // A name to resolve: the context waits in the proxy core, the decision
                        // here, until the resolver thread answers (Msg::Resolved).
                        let lookups = specs
                            .iter()
                            .filter_map(|s| match &s.dest {
                                Dest::Lookup(r) => Some(r.clone()),
                                Dest::Ready(_) => None,
                            })
                            .collect();
                        let parked = Parked::Route {
                            ctx,
                            specs,
                            fork,
                            record_route,
                        };
                        if self.park(lookups, parked) {
                            Ok(())
                        } else {
                            self.proxy.respond(now, ctx, 503, "Service Unavailable")
                        }
                    }
                    Some(specs) if !specs.is_empty() => {
                        self.forward_specs(now, ctx, specs, fork, record_route)
                    }
                    _ if fork => self.proxy.respond(now, ctx, 480, "Temporarily Unavailable"),
                    _ => self.proxy.respond(now, ctx, 503, "Service Unavailable"),
                }
            }
            _ => {
                self.m.dropped(DropReason::NoAction);
                self.proxy.abandon(ctx);
                Ok(())
            }
        }
    }

    /// Carry out the script's decisions for this core.
    fn apply_actions(&mut self, cx: &mut Cx<'_, Msg>) {
        let now = cx.now();
        let mut any = false;
        let mut after = Vec::new();
        while let Some(mut a) = self.shared.host.poll(self.core) {
            any = true;
            after.append(&mut a.outbound);
            self.m.script_executions.fetch_add(1, Ordering::Relaxed);
            if a.script_error {
                self.m.script_errors.fetch_add(1, Ordering::Relaxed);
            }
            let Some(p) = self.pending.remove(&a.id) else {
                continue;
            };
            let result = match p {
                Pending::Request { ctx, info } => {
                    if let Some(edited) = &a.request
                        && self.set_edited_request(ctx, edited).is_err()
                    {
                        // The script's edit does not make a request we can forward: answer
                        // rather than forward something the script did not ask for.
                        if self.proxy.respond(now, ctx, 500, "Script Error").is_err() {
                            self.m.dropped(DropReason::Stray);
                        }
                        continue;
                    }
                    let (per_reply, per_failure) = match &a.disposition {
                        Disposition::Relay {
                            has_on_reply,
                            has_on_failure,
                            ..
                        } => (*has_on_reply, *has_on_failure),
                        _ => (false, false),
                    };
                    let forwarding = matches!(
                        a.disposition,
                        Disposition::Relay { .. } | Disposition::Fork { .. }
                    );
                    if forwarding {
                        self.refresh_flags(now);
                        let f = self.flags;
                        let hooks = Hooks {
                            replies: f.on_reply
                                || per_reply
                                || (info.register && f.on_register_reply),
                            failures: f.on_failure || per_failure,
                        };
                        if hooks != Hooks::default() {
                            let _ = self.proxy.set_hooks(ctx, hooks);
                            self.ctx_info.insert(ctx, info);
                        }
                    }
                    self.route(now, ctx, a.disposition, a.record_route)
                }
                Pending::Reply { ctx, reply } => match a.disposition {
                    Disposition::ForwardReply => match a.reply.as_deref().map(edited_response) {
                        Some(Ok(edited)) => self
                            .proxy
                            .relay_reply_with(now, reply, edited)
                            .or_else(|e| {
                                tracing::warn!(core = self.core, "reply edit not applied: {e}");
                                self.proxy.relay_reply(now, reply)
                            }),
                        Some(Err(e)) => {
                            tracing::warn!(core = self.core, "reply edit not applied: {e}");
                            self.proxy.relay_reply(now, reply)
                        }
                        None => self.proxy.relay_reply(now, reply),
                    },
                    Disposition::RejectReply { status, reason } => {
                        let _ = self.proxy.drop_reply(now, reply);
                        self.proxy.respond(now, ctx, status, &reason)
                    }
                    // upstream: a reply is dropped unless the handler relays it.
                    _ => self.proxy.drop_reply(now, reply),
                },
                Pending::Failure { ctx } => match a.disposition {
                    d @ (Disposition::Relay { .. }
                    | Disposition::Fork { .. }
                    | Disposition::Reply { .. }) => self.route(now, ctx, d, a.record_route),
                    // Upstream suppresses the error response when on_failure does not relay,
                    // leaving the caller to time out; we send the best response instead.
                    _ => self.proxy.relay_failure(now, ctx),
                },
            };
            if result.is_err() {
                self.m.dropped(DropReason::Stray);
            }
        }
        if !after.is_empty() {
            // After this batch's answers, so a SUBSCRIBE's 2xx leaves before its NOTIFY.
            self.send_outbound(cx, after);
        }
        if any {
            self.drain(cx);
        }
    }
}

/// Where a stateless answer goes (RFC 3261 §18.2.2 with RFC 3581): back over a stream on the
/// connection it came from; over UDP to the packet's source address (`received`), and to its
/// source port when the top Via asks with `rport`, else to the sent-by port. Never to a host
/// the sender merely wrote into its Via. (A 400 goes to the packet's source address and port.)
fn stateless_destination(top_via: &str, source: Remote) -> Remote {
    if source.transport.is_reliable() {
        return source;
    }
    let stamped = siphon_sip::proxy::stamp_received(top_via, source.addr);
    match siphon_sip::proxy::via_destination(&stamped) {
        Some(r) if r.addr.ip() == source.addr.ip() => Remote {
            addr: r.addr,
            transport: source.transport,
        },
        _ => source,
    }
}

/// Why a script's edit of a message could not be used.
#[derive(Debug, thiserror::Error)]
enum EditError {
    /// An edit cannot be written (a CR/LF in a value, a Request-URI that does not parse).
    #[error("the edit cannot be written: {0}")]
    Write(#[from] siphon_sip::EditError),
    /// It parses but lacks what the transaction layer needs (Via, CSeq, Call-ID ...).
    #[error("the edited message is not usable: {0}")]
    Unusable(#[from] siphon_sip::transaction::FromMessageError),
    /// The proxy core refused it.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
}

/// The script's view of a message the proxy core holds: the core's own parsed message (shared
/// bytes and header index, no second parse), or a parse of the bytes of one the core built.
fn script_view(view: Option<&Message>, bytes: &Bytes) -> Option<SipMessage> {
    match view {
        Some(m) => SipMessage::from_message(m.clone()).ok(),
        None => SipMessage::parse(bytes).ok(),
    }
}

/// A script's edited response as the transaction layer's response: the received bytes plus
/// the script's edits, written once by the core's `Editor` (indexed while written).
fn edited_response(edited: &SipMessage) -> Result<TxResponse, EditError> {
    let m = edited.to_message()?;
    Ok(TxResponse::try_from(&m)?)
}

impl Engine {
    /// Hand the script's edited request to the proxy core, which re-applies its own processing
    /// (received/rport, Route pop) to it; an edit that does not make a request is logged.
    fn set_edited_request(&mut self, ctx: ContextId, edited: &SipMessage) -> Result<(), EditError> {
        let result = edited
            .to_message()
            .map_err(EditError::from)
            .and_then(|m| Ok(TxRequest::try_from(&m)?))
            .and_then(|tx| Ok(self.proxy.set_request(ctx, tx)?));
        if let Err(e) = &result {
            tracing::warn!(core = self.core, "script edit of the request rejected: {e}");
        }
        result
    }
}

impl Engine {
    /// A stream to `peer` failed or closed: its client transactions fail (RFC 3261 §8.1.3.1)
    /// and move to the next resolved address (RFC 3263 §4.3).
    fn transport_lost(
        &mut self,
        cx: &mut Cx<'_, Msg>,
        transport: Transport,
        peer: SocketAddr,
        cause: TransportCause,
    ) {
        self.transport_error(
            Remote {
                addr: peer,
                transport,
            },
            cause,
        );
        self.drain(cx);
    }

    /// Count and log a failed send to `dest`; its client transactions fail at the next drain.
    fn transport_error(&mut self, dest: Remote, cause: TransportCause) {
        self.m.transport_errors[cause as usize].fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            core = self.core,
            destination = %dest.addr,
            transport = transport_name(dest.transport),
            ?cause,
            "transport error towards a next hop: its transactions fail over or count as 503"
        );
        self.failed_dests.push(dest);
    }
}

/// Issue 17: the `security:` screen and the transaction cap (logic in security.rs, limits.rs).
impl Engine {
    /// Whether a parsed request must be dropped unanswered: scanner User-Agent, or over the
    /// rate limit (which may ban the source; later datagrams then stop before the parse).
    fn screen(&self, msg: &Message, peer: SocketAddr, now: Instant) -> bool {
        let sec = &self.shared.security;
        if !sec.active() {
            return false;
        }
        let ua = msg.header_str("User-Agent");
        sec.check_request(peer.ip(), ua, now) != crate::security::Verdict::Allow
    }

    /// Whether a request that would create a transaction must get 503 because this core's
    /// table is at `limits.max_transactions_per_core` transactions in progress (finished ones
    /// waiting out Timer J/L/M have their own cap and are ended early there instead). ACK
    /// creates none; CANCEL and retransmissions of live transactions are always let through.
    /// An in-dialog request (To tag) may use up to twice the cap, so that the BYEs of calls
    /// already admitted still end them while new requests are refused; past that it gets 503.
    fn over_transaction_cap(&self, method: &str, tx: &TxRequest) -> bool {
        let layer = self.proxy.transactions();
        let cap = self.shared.limits.max_transactions;
        let used = layer.in_progress().max(self.proxy.contexts());
        if method == "ACK" || method == "CANCEL" || used < cap {
            return false;
        }
        if used < cap.saturating_mul(2) && tx.to_tag().is_some() {
            return false;
        }
        if layer.find_server(tx).is_some() {
            return false;
        }
        self.shared
            .limits
            .counters
            .transactions_refused
            .fetch_add(1, Ordering::Relaxed);
        true
    }
}

impl Handler for Engine {
    type Msg = Msg;

    fn has_pending_work(&self) -> bool {
        self.inline_busy
    }

    fn on_datagram(&mut self, cx: &mut Cx<'_, Msg>, dgram: Datagram<'_>) {
        if self.shared.security.is_banned(dgram.peer.ip(), cx.now()) {
            return;
        }
        let data = Bytes::copy_from_slice(dgram.data);
        self.handle_bytes(cx, Transport::Udp, dgram.peer, data);
    }

    fn on_accepted(&mut self, cx: &mut Cx<'_, Msg>, conn: ConnId, info: ConnInfo) {
        #[cfg(feature = "smpp")]
        if let Some(s) = self.smpp.as_mut()
            && s.owns_listener(info.listener)
        {
            return s.on_accepted(cx, conn, info);
        }
        if self.shared.security.is_banned(info.peer.ip(), cx.now()) {
            cx.abort(conn);
            return;
        }
        let transport = if info.tls {
            Transport::Tls
        } else {
            Transport::Tcp
        };
        self.by_peer.insert((transport, info.peer), conn);
        self.streams.insert(
            conn,
            Stream {
                framer: self.shared.limits.framer(),
                peer: info.peer,
                transport,
            },
        );
    }

    fn on_connected(
        &mut self,
        cx: &mut Cx<'_, Msg>,
        conn: ConnId,
        result: Result<ConnInfo, ConnectError>,
    ) {
        #[cfg(feature = "smpp")]
        if let Some(s) = self.smpp.as_mut()
            && s.owns(conn)
        {
            return s.on_connected(cx, conn, result);
        }
        if result.is_err()
            && let Some(s) = self.streams.remove(&conn)
        {
            self.by_peer.remove(&(s.transport, s.peer));
            // Connect refused or failed: the transactions waiting on it fail over now.
            self.transport_lost(cx, s.transport, s.peer, TransportCause::Connect);
        }
    }

    fn on_stream_data(&mut self, cx: &mut Cx<'_, Msg>, conn: ConnId, data: &[u8]) {
        #[cfg(feature = "smpp")]
        if let Some(s) = self.smpp.as_mut()
            && s.owns(conn)
        {
            return s.on_data(cx, conn, data);
        }
        let Some(s) = self.streams.get_mut(&conn) else {
            return;
        };
        if self.shared.security.is_banned(s.peer.ip(), cx.now()) {
            cx.abort(conn);
            return;
        }
        s.framer.push(data);
        let (peer, transport) = (s.peer, s.transport);
        loop {
            let Some(s) = self.streams.get_mut(&conn) else {
                return;
            };
            match s.framer.poll_item() {
                Ok(Some(StreamItem::Message(m))) => {
                    let bytes = m.bytes().clone();
                    self.handle_bytes(cx, transport, peer, bytes);
                }
                Ok(Some(StreamItem::Ping)) => {
                    let _ = cx.write(conn, b"\r\n");
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    // A stream that lost framing cannot be resynchronised: close it.
                    self.m.dropped(DropReason::Malformed);
                    cx.close(conn);
                    break;
                }
            }
        }
    }

    fn on_closed(&mut self, cx: &mut Cx<'_, Msg>, conn: ConnId, _reason: CloseReason) {
        #[cfg(feature = "smpp")]
        if let Some(s) = self.smpp.as_mut()
            && s.owns(conn)
        {
            return s.on_closed(cx, conn, &_reason);
        }
        if let Some(s) = self.streams.remove(&conn) {
            self.by_peer.remove(&(s.transport, s.peer));
            self.transport_lost(cx, s.transport, s.peer, TransportCause::Closed);
        }
    }

    fn on_timer(&mut self, cx: &mut Cx<'_, Msg>, id: TimerId, token: u64) {
        #[cfg(feature = "smpp")]
        if token & crate::smpp::TIMER_BIT != 0 {
            if let Some(s) = self.smpp.as_mut() {
                s.on_timer(cx, token);
            }
            return;
        }
        if token == watchdog::FAULT_TIMER {
            // A script deadline: `on_turn_end` expires it.
            self.faults.timer_fired(id);
            return;
        }
        if token == SCRIPT_TIMER {
            // The inline interpreter's asyncio deadline: `on_turn_end` gives it its turn.
            if self.script_timer.is_some_and(|(t, _)| t == id) {
                self.script_timer = None;
            }
            return;
        }
        if self.timer.is_some_and(|(t, _)| t == id) {
            self.timer = None;
        }
        let now = cx.now();
        self.proxy.handle_timeout(now);
        self.drain(cx);
        if self.proxy.transactions().is_empty() && self.proxy.contexts() == 0 {
            // The last transaction of a load ended (no proxy timer is armed until the next
            // request): give the pages this reactor freed, its pooled send buffers and the
            // pages its receive buffers touched back to the OS.
            cx.release_idle_memory();
            crate::alloc::release_thread_memory();
        }
    }

    fn on_message(&mut self, cx: &mut Cx<'_, Msg>, _from: Option<usize>, msg: Msg) {
        match msg {
            Msg::Wake => self.apply_actions(cx),
            Msg::Outbound => self.send_outbound(cx, Vec::new()),
            Msg::Inbound {
                transport,
                peer,
                data,
            } => self.handle_bytes(cx, transport, peer, data),
            Msg::Resolved(r) => self.on_resolved(cx, r),
            #[cfg(feature = "smpp")]
            Msg::SmppUnbindAll => {
                if let Some(s) = self.smpp.as_mut() {
                    s.unbind_all(cx);
                }
            }
            #[cfg(feature = "smpp")]
            Msg::SmppReloadBinds(binds) => {
                if let Some(s) = self.smpp.as_mut() {
                    s.reload_binds(cx, &binds.0);
                }
            }
        }
    }

    fn on_turn_end(&mut self, cx: &mut Cx<'_, Msg>) {
        if let Some(w) = self.inline.as_mut() {
            // A few batches per turn: enough to keep up, bounded so sockets are not starved.
            let mut handled = 0;
            for _ in 0..4 {
                let n = w.turn();
                handled += n;
                if n == 0 {
                    break;
                }
            }
            // asyncio's own timers (sleep, wait_for, call_later) have no doorbell: wake the
            // reactor for the loop's next deadline, or keep it from sleeping when callbacks
            // are ready now.
            let wake = w.next_wake();
            self.inline_busy = handled > 0 || wake == Some(Duration::ZERO);
            if let Some(after) = wake.filter(|d| !d.is_zero()) {
                // Far deadlines are re-read at the next wake-up (no Instant overflow).
                let after = after.min(Duration::from_secs(60));
                let at = cx.now() + after;
                match self.script_timer {
                    Some((_, armed)) if armed <= at => {}
                    old => {
                        if let Some((id, _)) = old {
                            cx.cancel_timer(id);
                        }
                        self.script_timer = Some((cx.set_timer(after, SCRIPT_TIMER), at));
                    }
                }
            }
        }
        self.apply_actions(cx);
        #[cfg(feature = "smpp")]
        if let Some(s) = self.smpp.as_mut() {
            s.turn(cx);
        }
        if self.shared.draining.load(Ordering::Relaxed) {
            let pending = self.proxy.unanswered();
            self.m.transactions_pending.store(
                i64::try_from(pending).unwrap_or(i64::MAX),
                Ordering::Relaxed,
            );
        }
        self.m
            .mtu_tcp
            .store(self.proxy.mtu_switches(), Ordering::Relaxed);
        let evicted = self.proxy.transactions().evicted();
        if evicted > self.lingering_evicted {
            self.shared
                .limits
                .counters
                .lingering_evicted
                .fetch_add(evicted - self.lingering_evicted, Ordering::Relaxed);
        }
        self.lingering_evicted = evicted;
        self.m.transactions_active.store(
            i64::try_from(self.proxy.contexts()).unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
        self.fault_turn(cx);
    }
}
