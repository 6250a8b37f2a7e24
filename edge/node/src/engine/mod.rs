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
//!
//! This file holds the engine's state, the reactor [`Handler`] entry points and the proxy-core
//! drain loop; the work is split by direction: `ingress` (bytes in: parse, screen, validate,
//! stateless answers, the transaction cap), `script` (the bridge to the script worker: events
//! out, actions back, routing decisions), `locate` (next-hop resolution, RFC 3263, and the
//! decisions parked for DNS), `outbound` (requests scripts originate), `egress` (bytes out:
//! datagrams, streams, transport errors) and `watchdog` (overload shedding, script deadlines).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustc_hash::FxHashMap;
use siphon_reactor::{
    CloseReason, ConnId, ConnInfo, ConnectError, Cx, Datagram, Handler, TimerId, UdpSocketId,
};
use siphon_script::{HostHandle, Meta, SipMessage};
use siphon_sip::locate::{LocateError, Request as LocateRequest};
use siphon_sip::proxy::{ContextId, Hooks, Interface, Proxy, ProxyConfig, ReplyId};
use siphon_sip::transaction::{Remote, Transport, TxRequest};
use siphon_sip::{StreamFramer, StreamItem};

use crate::metrics::{CoreMetrics, DropReason, Metrics, TransportCause};

mod egress;
mod ingress;
mod locate;
mod outbound;
mod script;
mod watchdog;
pub use watchdog::FaultConfig;

/// Granularity of transaction timer wake-ups (RFC 3261 timers are 500 ms and up; 5 ms late
/// is harmless, and it turns one wake-up per timer into one per slot).
const TIMER_SLACK: Duration = Duration::from_millis(5);
/// Slack of a proxy timer that only ends a transaction's wait ([`Engine::rearm`]): it then
/// lives up to this much longer than RFC 3261 asks, which changes nothing on the wire.
const WAIT_SLACK: Duration = Duration::from_millis(64);

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

/// Inline placement: the core's interpreter, run by the reactor's thread between the two
/// halves of every loop turn with nothing of the engine borrowed (siphon_reactor's
/// `handover.rs`: while a handler is stuck, the core's standby thread runs the engine).
pub struct ScriptGuest(pub siphon_script::InlineWorker);

impl siphon_reactor::Guest for ScriptGuest {
    fn turn(&mut self) -> Option<Duration> {
        // A few batches per turn: enough to keep up, bounded so sockets are not starved.
        for _ in 0..4 {
            if self.0.turn() == 0 {
                break;
            }
        }
        // asyncio's own timers (sleep, wait_for, call_later) have no doorbell: the reactor's
        // wait ends at the loop's next deadline (far ones are re-read at the next wake-up).
        self.0.next_wake().map(|d| d.min(Duration::from_secs(60)))
    }

    fn pending(&self) -> bool {
        self.0.has_work()
    }
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
            parked: FxHashMap::default(),
            failed_dests: Vec::new(),
            faults: watchdog::Faults::default(),
            lingering_evicted: 0,
            #[cfg(feature = "smpp")]
            smpp,
        }
    }

    /// What every core shares.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
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
    /// [`TIMER_SLACK`] slot so that the many transaction timers of one slot share one
    /// wake-up instead of one each; when that deadline only ends a transaction's wait
    /// (Timer D/I/J/K, RFC 6026 L/M: four per call), to a [`WAIT_SLACK`] slot. At 400
    /// calls/s in steady state that took the reactor's timer wake-ups from 0.46 to 0.04 per call.
    fn rearm(&mut self, cx: &mut Cx<'_, Msg>) {
        let next = self.proxy.poll_deadline().map(|d| {
            let since = d.at.saturating_duration_since(self.epoch);
            let slot = if d.wait { WAIT_SLACK } else { TIMER_SLACK }.as_nanos();
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
}

impl Handler for Engine {
    type Msg = Msg;

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
        // With inline placement the core's interpreter ran just before (a `Guest` turn,
        // `ScriptGuest`): its actions are applied in the same loop turn.
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

#[cfg(test)]
mod tests {
    use siphon_sip::transaction::Transport;

    use super::transport_name;

    #[test]
    fn transport_names_are_the_via_tokens_in_lower_case() {
        let names = [
            (Transport::Udp, "udp"),
            (Transport::Tcp, "tcp"),
            (Transport::Tls, "tls"),
            (Transport::Sctp, "sctp"),
            (Transport::Ws, "ws"),
            (Transport::Wss, "wss"),
        ];
        for (t, name) in names {
            assert_eq!(transport_name(t), name);
            let via = siphon_sip::proxy::via_transport(t);
            assert_eq!(via.to_ascii_lowercase(), name, "{t:?}");
        }
    }
}
