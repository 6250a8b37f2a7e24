//! The SMPP extension (feature `smpp`), inbound side: a listener on every reactor (reuseport),
//! each accepted connection an SMPP session owned by that core, driven by the sans-IO
//! [`siphon_smpp::Session`], its PDUs answered by that core's interpreter (`siphon.smpp`).
//!
//! Per connection: [`Framer`] → [`Session::handle_frame`] → binds and PDUs go to the script
//! as [`SmppEvent`]s; answers come back as [`SmppOut::Answer`] and are encoded as the matching
//! `_resp` (a `message_id` field always present in a successful `submit_sm_resp`). Our own
//! window (`server.window`): a request past it is answered ESME_RTHROTTLED and counted.
//! Timers (session-init, enquire_link, inactivity, response, paced responses) are the
//! session's; one reactor timer per connection is armed at its next deadline.
//!
//! Outbound binds (`binds:`) are connections of the same kind in the ESME role; see
//! [`binds`].

pub mod binds;
pub mod config;
mod forward;
pub mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use siphon_reactor::{ConnId, ConnInfo, Cx, ListenerId, TimerId};
use siphon_script::{HostHandle, SmppAnswer, SmppEvent, SmppOut, SmppSend, SmppValue};
use siphon_smpp::{
    AlertNotification, BindResp, Body, CommandId, CommandStatus, DataSm, DataSmResp, Dest, Event,
    Framer, Inbound, List, MessageIdResp, Pdu, QuerySmResp, Role, SequenceNumber, Session,
    SessionConfig, SessionState, SubmitMultiResp, SubmitSm, ThrottleConfig, Tlv, TlvTag, Tlvs,
};

pub use config::SmppConfig;

/// Timer tokens of SMPP connections have this bit set (the engine's own tokens are small).
pub const TIMER_BIT: u64 = 1 << 62;

/// Status reported to the script for a send to a session that is not bound here.
const NOT_BOUND: u32 = 0xFFFF_FFFF;
/// ... and for deliver_sm/alert to a transmitter-only session.
const NOT_RX: u32 = 0xFFFF_FFFE;

/// The command labels of `siphon_smpp_*{command}`: the requests an ESME sends us, then the
/// ones we send it (`deliver_to`, `data_to`, `alert_to`).
const COMMANDS: [&str; 8] = [
    "submit_sm",
    "submit_sm_multi",
    "data_sm",
    "query_sm",
    "cancel_sm",
    "replace_sm",
    "deliver_sm",
    "alert_notification",
];

fn command_index(c: CommandId) -> Option<usize> {
    Some(match c {
        CommandId::SubmitSm => 0,
        CommandId::SubmitMulti => 1,
        CommandId::DataSm => 2,
        CommandId::QuerySm => 3,
        CommandId::CancelSm => 4,
        CommandId::ReplaceSm => 5,
        CommandId::DeliverSm => 6,
        CommandId::AlertNotification => 7,
        _ => return None,
    })
}

/// Upper bounds (seconds) of `siphon_smpp_dispatch_duration_seconds`.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// One command's dispatch-duration histogram; each bucket counts only the durations that
/// fall in it (one atomic add per sample), and the cumulative `le` series is summed at render.
#[derive(Debug, Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// Per-command counters.
#[derive(Debug, Default)]
struct PerCommand {
    ok: AtomicU64,
    error: AtomicU64,
    dispatch_errors: AtomicU64,
    duration: Histogram,
}

/// Counters exported as upstream's `siphon_smpp_*` series (spec §3, `direction="inbound"`:
/// ESME sessions) plus window occupancy, malformed input and slow-reader closes.
#[derive(Debug, Default)]
pub struct SmppMetrics {
    /// Bound inbound sessions now.
    pub bound: AtomicU64,
    by_command: [PerCommand; COMMANDS.len()],
    /// Requests refused past the window or by the reject throttle.
    pub throttled: AtomicU64,
    /// generic_nack sent / malformed input.
    pub malformed: AtomicU64,
    /// bind requests accepted / rejected.
    pub binds_ok: AtomicU64,
    /// See `binds_ok`.
    pub binds_rejected: AtomicU64,
    /// Requests awaiting the script now (all sessions): window occupancy.
    pub window_used: AtomicU64,
    /// `server.window` (per session).
    pub window_size: AtomicU64,
    /// Connections closed because the peer stopped reading.
    pub slow_readers: AtomicU64,
    /// Outbound binds bound now.
    pub egress_bound: AtomicU64,
    /// Our requests on outbound binds and the SMSC's requests to us, by command.
    egress: [PerCommand; COMMANDS.len()],
    /// `(bind, cause)` → connect or bind failures; `bind` → reconnects scheduled.
    bind_errors: std::sync::Mutex<std::collections::BTreeMap<(String, &'static str), u64>>,
    bind_reconnects: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl SmppMetrics {
    /// A PDU of `command` was answered (or its answer came back) with `status`.
    fn pdu(&self, command: CommandId, ok: bool) {
        if let Some(i) = command_index(command) {
            let c = &self.by_command[i];
            if ok { &c.ok } else { &c.error }.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Outbound-bind traffic (`direction="egress"`, upstream's label for all of it).
    fn pdu_egress(&self, command: CommandId, ok: bool) {
        if let Some(i) = command_index(command) {
            let c = &self.egress[i];
            if ok { &c.ok } else { &c.error }.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A bind's connect or bind failed with `cause`.
    pub fn bind_error(&self, bind: &str, cause: &'static str) {
        if let Ok(mut m) = self.bind_errors.lock() {
            *m.entry((bind.to_owned(), cause)).or_default() += 1;
        }
    }

    /// A bind's reconnect was scheduled.
    pub fn bind_reconnect(&self, bind: &str) {
        if let Ok(mut m) = self.bind_reconnects.lock() {
            *m.entry(bind.to_owned()).or_default() += 1;
        }
    }

    /// The script answered a `command` request after `took`; `error`: its handler raised.
    fn dispatched(&self, command: CommandId, took: Duration, error: bool) {
        let Some(i) = command_index(command) else {
            return;
        };
        let c = &self.by_command[i];
        if error {
            c.dispatch_errors.fetch_add(1, Ordering::Relaxed);
        }
        let secs = took.as_secs_f64();
        if let Some((b, _)) = c
            .duration
            .buckets
            .iter()
            .zip(BUCKETS)
            .find(|(_, le)| secs <= *le)
        {
            b.fetch_add(1, Ordering::Relaxed);
        }
        c.duration.count.fetch_add(1, Ordering::Relaxed);
        c.duration.sum_us.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Prometheus text.
    pub fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# TYPE siphon_smpp_binds gauge\nsiphon_smpp_binds{{direction=\"inbound\",state=\"bound\"}} {}",
            g(&self.bound)
        );
        let _ = writeln!(
            out,
            "siphon_smpp_binds{{direction=\"egress\",state=\"bound\"}} {}",
            g(&self.egress_bound)
        );
        let _ = writeln!(out, "# TYPE siphon_smpp_pdus_total counter");
        for (direction, table) in [("inbound", &self.by_command), ("egress", &self.egress)] {
            for (name, c) in COMMANDS.iter().zip(table) {
                for (result, v) in [("ok", &c.ok), ("error", &c.error)] {
                    let _ = writeln!(
                        out,
                        "siphon_smpp_pdus_total{{direction=\"{direction}\",command=\"{name}\",result=\"{result}\"}} {}",
                        g(v)
                    );
                }
            }
        }
        let _ = writeln!(out, "# TYPE siphon_smpp_bind_reconnects_total counter");
        if let Ok(m) = self.bind_reconnects.lock() {
            for (bind, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "siphon_smpp_bind_reconnects_total{{bind=\"{bind}\"}} {n}"
                );
            }
        }
        let _ = writeln!(out, "# TYPE siphon_smpp_bind_errors_total counter");
        if let Ok(m) = self.bind_errors.lock() {
            for ((bind, cause), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "siphon_smpp_bind_errors_total{{bind=\"{bind}\",cause=\"{cause}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# TYPE siphon_smpp_throttled_total counter\nsiphon_smpp_throttled_total{{direction=\"inbound\"}} {}",
            g(&self.throttled)
        );
        let _ = writeln!(out, "# TYPE siphon_smpp_dispatch_errors_total counter");
        for (name, c) in COMMANDS.iter().zip(&self.by_command) {
            let _ = writeln!(
                out,
                "siphon_smpp_dispatch_errors_total{{command=\"{name}\"}} {}",
                g(&c.dispatch_errors)
            );
        }
        let _ = writeln!(
            out,
            "# TYPE siphon_smpp_dispatch_duration_seconds histogram"
        );
        for (name, c) in COMMANDS.iter().zip(&self.by_command) {
            let h = &c.duration;
            let mut cumulative = 0;
            for (b, le) in h.buckets.iter().zip(BUCKETS) {
                cumulative += g(b);
                let _ = writeln!(
                    out,
                    "siphon_smpp_dispatch_duration_seconds_bucket{{command=\"{name}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let n = g(&h.count);
            let _ = writeln!(
                out,
                "siphon_smpp_dispatch_duration_seconds_bucket{{command=\"{name}\",le=\"+Inf\"}} {n}\nsiphon_smpp_dispatch_duration_seconds_sum{{command=\"{name}\"}} {}\nsiphon_smpp_dispatch_duration_seconds_count{{command=\"{name}\"}} {n}",
                g(&h.sum_us) as f64 / 1e6
            );
        }
        let _ = writeln!(
            out,
            "# TYPE siphon_smpp_bind_requests_total counter\nsiphon_smpp_bind_requests_total{{result=\"ok\"}} {}\nsiphon_smpp_bind_requests_total{{result=\"rejected\"}} {}",
            g(&self.binds_ok),
            g(&self.binds_rejected)
        );
        let _ = writeln!(
            out,
            "# TYPE siphon_smpp_malformed_total counter\nsiphon_smpp_malformed_total {}",
            g(&self.malformed)
        );
        let _ = writeln!(
            out,
            "# TYPE siphon_smpp_window_used gauge\nsiphon_smpp_window_used {}\n# TYPE siphon_smpp_window_size gauge\nsiphon_smpp_window_size {}",
            g(&self.window_used),
            g(&self.window_size)
        );
        let _ = writeln!(
            out,
            "# TYPE siphon_smpp_slow_reader_closes_total counter\nsiphon_smpp_slow_reader_closes_total {}",
            g(&self.slow_readers)
        );
    }
}

/// What every core's SMPP handler shares.
#[derive(Debug)]
pub struct SmppShared {
    /// The loaded `smpp.yaml`.
    pub config: SmppConfig,
    /// The reactor listener index of the SMPP listener (none: binds only).
    pub listener: Option<ListenerId>,
    /// The TLS client of each `config.binds` entry that has `tls`.
    pub bind_tls: Vec<Option<Arc<siphon_reactor::tls::TlsClient>>>,
    /// Counters.
    pub metrics: Arc<SmppMetrics>,
    /// `store_and_forward:` (opened before the reactors start).
    pub store: Option<Arc<store::Store>>,
}

impl SmppShared {
    fn session_config(&self) -> SessionConfig {
        let s = &self.config.server;
        let opt = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
        SessionConfig {
            window: 64,
            // Our own window is enforced here (ESME_RTHROTTLED); the session's is a backstop.
            inbound_window: s.window.saturating_mul(2).max(s.window + 64),
            session_init_timeout: Duration::from_millis(s.session_init_timer_ms.max(1)),
            enquire_link_interval: opt(s.enquire_link_timer_ms),
            inactivity_timeout: opt(s.inactivity_timer_ms),
            response_timeout: Duration::from_millis(s.response_timer_ms.max(1)),
            unbind_on_response_timeout: true,
            throttle: (s.max_msg_per_sec > 0).then_some(ThrottleConfig {
                per_second: s.max_msg_per_sec,
                burst: s.max_msg_per_sec,
                action: match s.throttle_action {
                    config::ThrottleAction::Pace => siphon_smpp::ThrottleAction::Pace,
                    config::ThrottleAction::Reject => siphon_smpp::ThrottleAction::Reject,
                },
            }),
        }
    }
}

struct Conn {
    session: Session,
    framer: Framer,
    session_id: String,
    system_id: String,
    peer: SocketAddr,
    timer: Option<(TimerId, Instant, u64)>,
    /// Requests handed to the script and not answered yet.
    in_script: usize,
    /// The session is registered (bound, "bound" fired).
    registered: bool,
    closing: bool,
    /// A bind awaits the script: later PDUs wait in the framer (they may not be judged
    /// against state Open; spec §6 #10).
    bind_pending: bool,
    /// An outbound bind's connection: its index in [`SmppCore::binds`].
    bind: Option<usize>,
}

struct PendingReq {
    /// When it went to the script (`dispatch_duration_seconds`).
    since: Instant,
    conn: ConnId,
    sequence: SequenceNumber,
    command: CommandId,
    system_id: Vec<u8>,
}

/// One core's SMPP sessions.
pub struct SmppCore {
    core: usize,
    shared: Arc<SmppShared>,
    host: HostHandle,
    conns: HashMap<ConnId, Conn>,
    by_session: HashMap<String, ConnId>,
    by_timer: HashMap<u64, ConnId>,
    pending: HashMap<u64, PendingReq>,
    sends: HashMap<(ConnId, u32), (usize, u64)>,
    next_id: u64,
    next_timer: u64,
    rng: u64,
    /// The outbound binds this core owns.
    binds: Vec<binds::OutBind>,
    binds_started: bool,
    /// Store-and-forward: this turn's batch, the scripts awaiting it, the failure receipts
    /// it holds, messages and receipts on the wire, binds to pump after a commit, the next
    /// expiry sweep.
    store_ops: Vec<store::Op>,
    store_acks: Vec<forward::StoreAck>,
    store_receipts: Vec<(u64, Box<SmppSend>)>,
    next_sweep: Option<Instant>,
    store_inflight: HashMap<u64, (usize, Box<SmppSend>)>,
    receipt_inflight: HashMap<u64, Box<SmppSend>>,
    store_kicks: Vec<usize>,
}

impl std::fmt::Debug for SmppCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmppCore")
            .field("core", &self.core)
            .field("sessions", &self.conns.len())
            .finish_non_exhaustive()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `session_kind` field of an event: `"bind"` for an outbound bind (the script's
/// `Session.kind`), nothing for an ESME session.
fn session_kind(bind: Option<usize>) -> Vec<(&'static str, SmppValue)> {
    match bind {
        Some(_) => vec![("session_kind", SmppValue::Str("bind".into()))],
        None => Vec::new(),
    }
}

fn bind_type(c: CommandId) -> &'static str {
    match c {
        CommandId::BindTransmitter => "bind_transmitter",
        CommandId::BindReceiver => "bind_receiver",
        _ => "bind_transceiver",
    }
}

impl SmppCore {
    /// The handler of `core`.
    pub fn new(core: usize, shared: Arc<SmppShared>, host: HostHandle) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ ((core as u64) << 48)
            ^ (std::process::id() as u64);
        Self {
            core,
            shared,
            host,
            conns: HashMap::new(),
            by_session: HashMap::new(),
            by_timer: HashMap::new(),
            pending: HashMap::new(),
            sends: HashMap::new(),
            next_id: 0,
            next_timer: 0,
            rng: seed | 1,
            binds: Vec::new(),
            binds_started: false,
            store_ops: Vec::new(),
            store_acks: Vec::new(),
            store_receipts: Vec::new(),
            next_sweep: None,
            store_inflight: HashMap::new(),
            receipt_inflight: HashMap::new(),
            store_kicks: Vec::new(),
        }
    }

    /// True when `listener` is the SMPP listener.
    pub fn owns_listener(&self, listener: Option<ListenerId>) -> bool {
        listener.is_some() && listener == self.shared.listener
    }

    /// True when `conn` is an SMPP session of this core.
    pub fn owns(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*: session ids only need to be unique and unguessable enough for logs.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A UUIDv4 whose first two hex digits are the owning core.
    fn session_id(&mut self) -> String {
        let (a, b) = (self.rand(), self.rand());
        let core = (self.core & 0xff) as u64;
        let a = (core << 56) | (a & 0x00ff_ffff_ffff_ffff);
        let a = (a & 0xffff_ffff_ffff_0fff) | 0x4000;
        let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xffff,
            b >> 48,
            b & 0xffff_ffff_ffff
        )
    }

    /// A connection arrived on the SMPP listener.
    pub fn on_accepted(
        &mut self,
        cx: &mut Cx<'_, crate::engine::Msg>,
        conn: ConnId,
        info: ConnInfo,
    ) {
        let now = cx.now();
        let session_id = self.session_id();
        let c = Conn {
            session: Session::new(Role::Smsc, self.shared.session_config(), now),
            framer: Framer::new(siphon_smpp::DEFAULT_MAX_PDU_LEN),
            session_id,
            system_id: String::new(),
            peer: info.peer,
            timer: None,
            in_script: 0,
            registered: false,
            closing: false,
            bind_pending: false,
            bind: None,
        };
        self.conns.insert(conn, c);
        self.after(cx, conn);
    }

    /// Bytes from an SMPP connection.
    pub fn on_data(&mut self, cx: &mut Cx<'_, crate::engine::Msg>, conn: ConnId, data: &[u8]) {
        let Some(mut c) = self.conns.remove(&conn) else {
            return;
        };
        let now = cx.now();
        // The framer is taken out so that frames can borrow it while the session is driven.
        let mut framer = std::mem::take(&mut c.framer);
        framer.push(data);
        loop {
            if c.session.state() == SessionState::Closed || c.bind_pending {
                break;
            }
            let frame = match framer.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    self.shared
                        .metrics
                        .malformed
                        .fetch_add(1, Ordering::Relaxed);
                    c.session.handle_frame_error(now, e);
                    break;
                }
            };
            let was_open = c.session.state() == SessionState::Open;
            match c.session.handle_frame(now, frame) {
                Inbound::Request(pdu) => self.request(now, conn, &mut c, &pdu),
                Inbound::Response { pdu, request } => {
                    if let Some((worker, token)) = self.sends.remove(&(conn, pdu.sequence.0)) {
                        let mut status = pdu.status.0;
                        let (command, mid) = match pdu.body {
                            Body::DeliverSmResp(r) => (CommandId::DeliverSm, text(r.message_id)),
                            Body::DataSmResp(r) => (CommandId::DataSm, text(r.message_id)),
                            Body::SubmitSmResp(r) => (CommandId::SubmitSm, text(r.message_id)),
                            Body::SubmitMultiResp(r) => {
                                (CommandId::SubmitMulti, text(r.message_id))
                            }
                            // query_via: "id NUL state NUL final_date NUL error_code".
                            Body::QuerySmResp(r) => (
                                CommandId::QuerySm,
                                format!(
                                    "{}\0{}\0{}\0{}",
                                    text(r.message_id),
                                    r.message_state,
                                    text(r.final_date),
                                    r.error_code
                                ),
                            ),
                            Body::CancelSmResp => (CommandId::CancelSm, String::new()),
                            Body::ReplaceSmResp => (CommandId::ReplaceSm, String::new()),
                            _ if c.bind.is_some() => {
                                // generic_nack: the helper raises with the status.
                                let s = status;
                                status = binds::NACKED;
                                (request, s.to_string())
                            }
                            _ => (CommandId::GenericNack, String::new()),
                        };
                        if c.bind.is_some() {
                            self.shared.metrics.pdu_egress(command, pdu.status.is_ok());
                        } else {
                            self.shared.metrics.pdu(command, pdu.status.is_ok());
                        }
                        self.complete(worker, token, status, mid);
                    }
                }
                Inbound::Handled(h) => {
                    use siphon_smpp::Handled;
                    match h {
                        Handled::Rejected(s) => {
                            if s == CommandStatus::ESME_RTHROTTLED {
                                self.shared
                                    .metrics
                                    .throttled
                                    .fetch_add(1, Ordering::Relaxed);
                            } else {
                                self.shared
                                    .metrics
                                    .malformed
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                            // Before bind, the first PDU must be a bind: answer and close.
                            if was_open && s == CommandStatus::ESME_RINVBNDSTS {
                                c.closing = true;
                            }
                        }
                        Handled::Malformed(_) => {
                            self.shared
                                .metrics
                                .malformed
                                .fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
            }
            if c.closing {
                break;
            }
        }
        c.framer = framer;
        self.conns.insert(conn, c);
        self.after(cx, conn);
        self.kick_stored(cx);
        self.flush_store(cx);
    }

    fn request(&mut self, now: Instant, conn: ConnId, c: &mut Conn, pdu: &Pdu<'_>) {
        let id = pdu.command_id();
        let sequence = pdu.sequence;
        if id.response().is_some()
            && !id.is_bind()
            && c.in_script >= self.shared.config.server.window
        {
            self.shared
                .metrics
                .throttled
                .fetch_add(1, Ordering::Relaxed);
            let body = Body::empty_response(id).unwrap_or(Body::GenericNack);
            let _ = c
                .session
                .send_response(now, sequence, CommandStatus::ESME_RTHROTTLED, &body);
            return;
        }
        if let Body::DeliverSm(m) = &pdu.body
            && c.bind.is_some()
            && self.stored_receipt(now, c, sequence, m)
        {
            return;
        }
        let mut fields: Vec<(&'static str, SmppValue)> = Vec::with_capacity(16);
        let int = |v: u8| SmppValue::Int(i64::from(v));
        let s = |v: &[u8]| SmppValue::Str(text(v));
        let tl = |t: &Tlvs<'_>| {
            let mut raw = Vec::new();
            for tlv in t.iter() {
                raw.extend_from_slice(&tlv.tag.0.to_be_bytes());
                raw.extend_from_slice(&(tlv.value.len() as u16).to_be_bytes());
                raw.extend_from_slice(tlv.value);
            }
            SmppValue::Bytes(raw)
        };
        let submit = |f: &mut Vec<(&'static str, SmppValue)>, m: &SubmitSm<'_>| {
            f.push(("service_type", s(m.service_type)));
            f.push(("source_addr_ton", int(m.source_addr_ton)));
            f.push(("source_addr_npi", int(m.source_addr_npi)));
            f.push(("source_addr", s(m.source_addr)));
            f.push(("dest_addr_ton", int(m.dest_addr_ton)));
            f.push(("dest_addr_npi", int(m.dest_addr_npi)));
            f.push(("destination_addr", s(m.destination_addr)));
            f.push(("esm_class", int(m.esm_class)));
            f.push(("protocol_id", int(m.protocol_id)));
            f.push(("priority_flag", int(m.priority_flag)));
            f.push(("registered_delivery", int(m.registered_delivery)));
            f.push(("data_coding", int(m.data_coding)));
            f.push(("short_message", SmppValue::Bytes(m.short_message.to_vec())));
            f.push(("tlvs", tl(&m.tlvs)));
        };
        let (kind, command): (&'static str, &'static str) = match pdu.body {
            Body::BindTransceiver(b) | Body::BindTransmitter(b) | Body::BindReceiver(b) => {
                c.system_id = text(b.system_id);
                fields.push(("password", s(b.password)));
                fields.push(("system_type", s(b.system_type)));
                fields.push(("interface_version", int(b.interface_version)));
                ("bind", bind_type(id))
            }
            Body::SubmitSm(m) if c.bind.is_none() => {
                submit(&mut fields, &m);
                ("pdu", "submit_sm")
            }
            // From the SMSC on an outbound bind: MO messages and delivery receipts.
            Body::DeliverSm(m) if c.bind.is_some() => {
                submit(&mut fields, &m);
                ("pdu", "deliver_sm")
            }
            Body::AlertNotification(m) if c.bind.is_some() => {
                fields.push(("source_addr", s(m.source_addr)));
                fields.push(("esme_addr", s(m.esme_addr)));
                fields.push(("tlvs", tl(&m.tlvs)));
                ("pdu", "alert_notification")
            }
            Body::SubmitMulti(m) => {
                let dests: Vec<String> = m
                    .dests
                    .iter()
                    .map(|d| match d {
                        Dest::Sme { addr, .. } => text(addr),
                        Dest::DistributionList(n) => text(n),
                    })
                    .collect();
                fields.push(("service_type", s(m.service_type)));
                fields.push(("source_addr_ton", int(m.source_addr_ton)));
                fields.push(("source_addr_npi", int(m.source_addr_npi)));
                fields.push(("source_addr", s(m.source_addr)));
                fields.push(("destinations", SmppValue::List(dests)));
                fields.push(("esm_class", int(m.esm_class)));
                fields.push(("protocol_id", int(m.protocol_id)));
                fields.push(("priority_flag", int(m.priority_flag)));
                fields.push(("registered_delivery", int(m.registered_delivery)));
                fields.push(("data_coding", int(m.data_coding)));
                fields.push(("short_message", SmppValue::Bytes(m.short_message.to_vec())));
                fields.push(("tlvs", tl(&m.tlvs)));
                ("pdu", "submit_sm_multi")
            }
            Body::DataSm(m) => {
                fields.push(("service_type", s(m.service_type)));
                fields.push(("source_addr_ton", int(m.source_addr_ton)));
                fields.push(("source_addr_npi", int(m.source_addr_npi)));
                fields.push(("source_addr", s(m.source_addr)));
                fields.push(("dest_addr_ton", int(m.dest_addr_ton)));
                fields.push(("dest_addr_npi", int(m.dest_addr_npi)));
                fields.push(("destination_addr", s(m.destination_addr)));
                fields.push(("esm_class", int(m.esm_class)));
                fields.push(("registered_delivery", int(m.registered_delivery)));
                fields.push(("data_coding", int(m.data_coding)));
                fields.push(("tlvs", tl(&m.tlvs)));
                ("pdu", "data_sm")
            }
            Body::QuerySm(m) => {
                fields.push(("message_id", s(m.message_id)));
                fields.push(("source_addr_ton", int(m.source_addr_ton)));
                fields.push(("source_addr_npi", int(m.source_addr_npi)));
                fields.push(("source_addr", s(m.source_addr)));
                ("pdu", "query_sm")
            }
            Body::CancelSm(m) => {
                fields.push(("service_type", s(m.service_type)));
                fields.push(("message_id", s(m.message_id)));
                fields.push(("source_addr_ton", int(m.source_addr_ton)));
                fields.push(("source_addr_npi", int(m.source_addr_npi)));
                fields.push(("source_addr", s(m.source_addr)));
                fields.push(("dest_addr_ton", int(m.dest_addr_ton)));
                fields.push(("dest_addr_npi", int(m.dest_addr_npi)));
                fields.push(("destination_addr", s(m.destination_addr)));
                ("pdu", "cancel_sm")
            }
            Body::ReplaceSm(m) => {
                fields.push(("message_id", s(m.message_id)));
                fields.push(("source_addr_ton", int(m.source_addr_ton)));
                fields.push(("source_addr_npi", int(m.source_addr_npi)));
                fields.push(("source_addr", s(m.source_addr)));
                fields.push(("registered_delivery", int(m.registered_delivery)));
                fields.push(("short_message", SmppValue::Bytes(m.short_message.to_vec())));
                ("pdu", "replace_sm")
            }
            _ => {
                // deliver_sm, outbind, alert_notification from an ESME: unsupported here.
                self.shared
                    .metrics
                    .malformed
                    .fetch_add(1, Ordering::Relaxed);
                if id.response().is_some() {
                    let _ = c.session.send_response(
                        now,
                        sequence,
                        CommandStatus::ESME_RINVCMDID,
                        &Body::GenericNack,
                    );
                }
                return;
            }
        };
        if c.bind.is_some() {
            fields.push(("session_kind", SmppValue::Str("bind".into())));
            self.shared.metrics.pdu_egress(id, true);
        }
        self.next_id += 1;
        let ev_id = self.next_id;
        let ev = SmppEvent {
            id: ev_id,
            core: self.core,
            kind,
            command,
            session_id: c.session_id.clone(),
            system_id: c.system_id.clone(),
            client_addr: c.peer.to_string(),
            fields,
        };
        if self.host.submit_smpp(ev).is_err() {
            // The script's ring is full: shed with a status, never silently.
            self.shared
                .metrics
                .throttled
                .fetch_add(1, Ordering::Relaxed);
            let body = Body::empty_response(id).unwrap_or(Body::GenericNack);
            let status = if id.is_bind() {
                CommandStatus::ESME_RBINDFAIL
            } else {
                CommandStatus::ESME_RMSGQFUL
            };
            let _ = c.session.send_response(now, sequence, status, &body);
            return;
        }
        c.in_script += 1;
        c.bind_pending |= id.is_bind();
        self.shared
            .metrics
            .window_used
            .fetch_add(1, Ordering::Relaxed);
        let system_id = if id.is_bind() {
            c.system_id.as_bytes().to_vec()
        } else {
            Vec::new()
        };
        self.pending.insert(
            ev_id,
            PendingReq {
                since: now,
                conn,
                sequence,
                command: id,
                system_id,
            },
        );
    }

    /// Answers and sends from the script (drained every loop turn).
    pub fn turn(&mut self, cx: &mut Cx<'_, crate::engine::Msg>) {
        // This runs after the interpreter's turn: events queued from here ("bound", PDUs held
        // behind a bind) need a doorbell, or an inline interpreter could sleep on them.
        let first_id = self.next_id;
        self.turn_inner(cx);
        if self.next_id != first_id {
            self.host.wake_smpp(self.core);
        }
    }

    fn turn_inner(&mut self, cx: &mut Cx<'_, crate::engine::Msg>) {
        if !self.binds_started {
            self.start_binds(cx);
        }
        let mut touched: Vec<ConnId> = Vec::new();
        while let Some(out) = self.host.poll_smpp(self.core) {
            match out {
                SmppOut::Answer(a) => {
                    if let Some(conn) = self.answer(cx.now(), a) {
                        touched.push(conn);
                    }
                }
                SmppOut::Send(s) if s.via.as_ref().is_some_and(|v| v.store.is_some()) => {
                    self.store_submit(s)
                }
                SmppOut::Send(s) if s.via.is_some() => self.send_via(cx, s),
                SmppOut::Send(s) => {
                    if let Some(conn) = self.send(cx.now(), &s) {
                        touched.push(conn);
                    }
                }
                _ => {}
            }
        }
        self.flush_store(cx);
        touched.sort_unstable();
        touched.dedup();
        for conn in touched {
            // PDUs that arrived behind a bind are judged now that it is decided.
            let buffered = self
                .conns
                .get(&conn)
                .is_some_and(|c| !c.bind_pending && c.framer.buffered() > 0);
            if buffered {
                self.on_data(cx, conn, &[]);
            } else {
                self.after(cx, conn);
            }
        }
    }

    fn answer(&mut self, now: Instant, a: SmppAnswer) -> Option<ConnId> {
        let p = self.pending.remove(&a.id)?;
        let m = Arc::clone(&self.shared.metrics);
        m.window_used.fetch_sub(1, Ordering::Relaxed);
        m.dispatched(p.command, now.saturating_duration_since(p.since), a.error);
        let c = self.conns.get_mut(&p.conn)?;
        c.in_script = c.in_script.saturating_sub(1);
        if p.command.is_bind() {
            c.bind_pending = false;
        }
        let status = CommandStatus(a.status);
        if p.command == CommandId::AlertNotification {
            // alert_notification has no response PDU.
            return Some(p.conn);
        }
        if c.bind.is_none() {
            m.pdu(p.command, status.is_ok());
        }
        let sc_version = [0x34u8];
        let version_tlv = [Tlv::new(TlvTag::SC_INTERFACE_VERSION, &sc_version)];
        let resp_tlvs = Tlvs::decode(&a.tlvs).unwrap_or(List::Items(&[]));
        let body = if !status.is_ok() {
            Body::empty_response(p.command).unwrap_or(Body::GenericNack)
        } else {
            let mid = a.message_id.as_bytes();
            match p.command {
                CommandId::BindTransceiver
                | CommandId::BindTransmitter
                | CommandId::BindReceiver => {
                    let r = BindResp {
                        system_id: &p.system_id,
                        tlvs: List::Items(&version_tlv),
                    };
                    match p.command {
                        CommandId::BindTransmitter => Body::BindTransmitterResp(r),
                        CommandId::BindReceiver => Body::BindReceiverResp(r),
                        _ => Body::BindTransceiverResp(r),
                    }
                }
                CommandId::SubmitSm => Body::SubmitSmResp(MessageIdResp { message_id: mid }),
                CommandId::SubmitMulti => Body::SubmitMultiResp(SubmitMultiResp {
                    message_id: mid,
                    unsuccess: List::Items(&[]),
                }),
                CommandId::DataSm => Body::DataSmResp(DataSmResp {
                    message_id: mid,
                    tlvs: resp_tlvs,
                }),
                CommandId::QuerySm => {
                    let (state, date, err) = a.query.clone().unwrap_or((0, String::new(), 0));
                    return self.query_resp(now, p, status, mid, state, &date, err);
                }
                c => Body::empty_response(c).unwrap_or(Body::GenericNack),
            }
        };
        let ok = c
            .session
            .send_response(now, p.sequence, status, &body)
            .is_ok();
        if p.command.is_bind() {
            if ok && status.is_ok() {
                m.binds_ok.fetch_add(1, Ordering::Relaxed);
                m.bound.fetch_add(1, Ordering::Relaxed);
                c.registered = true;
                let sid = c.session_id.clone();
                self.by_session.insert(sid, p.conn);
                self.session_event(p.conn, "bound");
            } else {
                m.binds_rejected.fetch_add(1, Ordering::Relaxed);
            }
        }
        Some(p.conn)
    }

    #[allow(clippy::too_many_arguments)]
    fn query_resp(
        &mut self,
        now: Instant,
        p: PendingReq,
        status: CommandStatus,
        mid: &[u8],
        state: u8,
        date: &str,
        err: u8,
    ) -> Option<ConnId> {
        let c = self.conns.get_mut(&p.conn)?;
        let body = Body::QuerySmResp(QuerySmResp {
            message_id: mid,
            final_date: date.as_bytes(),
            message_state: state,
            error_code: err,
        });
        if c.session
            .send_response(now, p.sequence, status, &body)
            .is_err()
        {
            let _ = c.session.send_response(
                now,
                p.sequence,
                CommandStatus::ESME_RQUERYFAIL,
                &Body::empty_response(CommandId::QuerySm).unwrap_or(Body::GenericNack),
            );
        }
        Some(p.conn)
    }

    fn send(&mut self, now: Instant, s: &SmppSend) -> Option<ConnId> {
        let Some(&conn) = self.by_session.get(&s.session_id) else {
            self.complete(s.worker, s.token, NOT_BOUND, String::new());
            return None;
        };
        let c = self.conns.get_mut(&conn)?;
        let state = c.session.state();
        let o = s.octets;
        let tlvs = Tlvs::decode(&s.tlvs).unwrap_or(List::Items(&[]));
        let body = match s.command.as_str() {
            "deliver_sm" | "alert_notification" if state == SessionState::BoundTx => {
                self.complete(s.worker, s.token, NOT_RX, String::new());
                return None;
            }
            "deliver_sm" => Body::DeliverSm(SubmitSm {
                service_type: s.service_type.as_bytes(),
                source_addr_ton: o[0],
                source_addr_npi: o[1],
                source_addr: s.source_addr.as_bytes(),
                dest_addr_ton: o[2],
                dest_addr_npi: o[3],
                destination_addr: s.destination_addr.as_bytes(),
                esm_class: o[4],
                protocol_id: o[5],
                priority_flag: o[6],
                registered_delivery: o[7],
                data_coding: o[8],
                short_message: &s.short_message,
                tlvs,
                ..SubmitSm::default()
            }),
            "data_sm" => data_sm_body(s, tlvs),
            _ => Body::AlertNotification(AlertNotification {
                source_addr_ton: o[0],
                source_addr_npi: o[1],
                source_addr: s.source_addr.as_bytes(),
                esme_addr_ton: o[2],
                esme_addr_npi: o[3],
                esme_addr: s.destination_addr.as_bytes(),
                tlvs,
            }),
        };
        match c.session.send_request(now, &body) {
            Ok(seq) => {
                if body.command_id() == CommandId::AlertNotification {
                    self.shared.metrics.pdu(CommandId::AlertNotification, true);
                    self.host.complete_smpp(s.worker, s.token, 0, String::new());
                } else {
                    self.sends.insert((conn, seq.0), (s.worker, s.token));
                }
            }
            Err(_) => {
                self.complete(
                    s.worker,
                    s.token,
                    CommandStatus::ESME_RSYSERR.0,
                    String::new(),
                );
            }
        }
        Some(conn)
    }

    fn session_event(&mut self, conn: ConnId, event: &'static str) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        self.next_id += 1;
        let ev = SmppEvent {
            id: self.next_id,
            core: self.core,
            kind: "session",
            command: event,
            session_id: c.session_id.clone(),
            system_id: c.system_id.clone(),
            client_addr: c.peer.to_string(),
            fields: session_kind(c.bind),
        };
        let _ = self.host.submit_smpp(ev);
    }

    /// After any input: drain session events, write, close when done, re-arm the timer.
    fn after(&mut self, cx: &mut Cx<'_, crate::engine::Msg>, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let mut failed: Vec<u32> = Vec::new();
        let mut bind_events: Vec<Event> = Vec::new();
        while let Some(ev) = c.session.poll_event() {
            match ev {
                Event::RequestFailed { sequence, .. } => failed.push(sequence.0),
                Event::Bound { .. } | Event::BindFailed { .. } if c.bind.is_some() => {
                    bind_events.push(ev);
                }
                _ => {}
            }
        }
        let bind = c.bind;
        for ev in &bind_events {
            self.bind_event(conn, ev);
        }
        if let Some(i) = bind {
            self.pump(cx, i, conn);
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let tx = c.session.transmit();
        if !tx.is_empty() {
            let n = tx.len();
            if cx.write(conn, tx).is_err() {
                self.shared
                    .metrics
                    .slow_readers
                    .fetch_add(1, Ordering::Relaxed);
                c.closing = true;
            }
            c.session.advance_transmit(n);
        }
        let closed = c.session.state() == SessionState::Closed || c.closing;
        let next = if closed {
            None
        } else {
            c.session.poll_timeout()
        };
        let lost = if bind.is_some() {
            binds::LOST
        } else {
            CommandStatus::ESME_RSYSERR.0
        };
        for seq in failed {
            if let Some((worker, token)) = self.sends.remove(&(conn, seq)) {
                self.complete(worker, token, lost, String::new());
            }
        }
        if closed {
            cx.close(conn);
            return;
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match (next, c.timer) {
            (Some(at), Some((_, armed, _))) if armed == at => {}
            (next, old) => {
                if let Some((id, _, token)) = old {
                    cx.cancel_timer(id);
                    self.by_timer.remove(&token);
                    c.timer = None;
                }
                if let Some(at) = next {
                    self.next_timer += 1;
                    let token = TIMER_BIT | self.next_timer;
                    let after = at.saturating_duration_since(cx.now());
                    let id = cx.set_timer(after, token);
                    c.timer = Some((id, at, token));
                    self.by_timer.insert(token, conn);
                }
            }
        }
    }

    /// A timer with [`TIMER_BIT`] fired.
    pub fn on_timer(&mut self, cx: &mut Cx<'_, crate::engine::Msg>, token: u64) {
        if token & forward::STORE_BIT != 0 {
            return self.store_tick(cx);
        }
        if token & (binds::RETRY_BIT | binds::PACE_BIT) != 0 {
            return self.on_bind_timer(cx, token);
        }
        let Some(conn) = self.by_timer.remove(&token) else {
            return;
        };
        let now = cx.now();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.timer = None;
            c.session.handle_timeout(now);
        }
        self.after(cx, conn);
    }

    /// The connection is gone.
    pub fn on_closed(
        &mut self,
        cx: &mut Cx<'_, crate::engine::Msg>,
        conn: ConnId,
        reason: &siphon_reactor::CloseReason,
    ) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(i) = c.bind
            && let Some(b) = self.binds.get(i)
        {
            tracing::warn!(bind = %b.cfg.name, peer = %c.peer, ?reason, "SMPP bind: connection closed");
        }
        if *reason == siphon_reactor::CloseReason::WriteQueueFull {
            self.shared
                .metrics
                .slow_readers
                .fetch_add(1, Ordering::Relaxed);
        }
        if let Some((_, _, token)) = c.timer {
            self.by_timer.remove(&token);
        }
        let lost = if c.bind.is_some() {
            binds::LOST
        } else {
            CommandStatus::ESME_RSYSERR.0
        };
        let mut gone = Vec::new();
        self.sends.retain(|(k, _), w| {
            if *k == conn {
                gone.push(*w);
                false
            } else {
                true
            }
        });
        for (worker, token) in gone {
            self.complete(worker, token, lost, String::new());
        }
        let before = self.pending.len();
        self.pending.retain(|_, p| p.conn != conn);
        let dropped = before - self.pending.len();
        self.shared
            .metrics
            .window_used
            .fetch_sub(dropped as u64, Ordering::Relaxed);
        if c.registered {
            self.by_session.remove(&c.session_id);
            if c.bind.is_some() {
                &self.shared.metrics.egress_bound
            } else {
                &self.shared.metrics.bound
            }
            .fetch_sub(1, Ordering::Relaxed);
            // Fire "unbound" with the session's identity (the connection is gone already).
            self.next_id += 1;
            let ev = SmppEvent {
                id: self.next_id,
                core: self.core,
                kind: "session",
                command: "unbound",
                session_id: c.session_id,
                system_id: c.system_id,
                client_addr: c.peer.to_string(),
                fields: session_kind(c.bind),
            };
            let _ = self.host.submit_smpp(ev);
        }
        if let Some(i) = c.bind {
            self.bind_lost(cx, i);
        }
    }

    /// SIGTERM: send `unbind` to every bound session of this core.
    pub fn unbind_all(&mut self, cx: &mut Cx<'_, crate::engine::Msg>) {
        let now = cx.now();
        // Binds stay down from here on.
        self.binds_started = true;
        for b in &mut self.binds {
            b.retire();
        }
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            if let Some(c) = self.conns.get_mut(&conn)
                && c.session.state().is_bound()
            {
                let _ = c.session.unbind(now);
            }
            self.after(cx, conn);
        }
    }
}

/// A script's `data_sm` send (towards a bound ESME or through a bind) as a PDU body; the
/// address/class octets come in `SmppSend.octets` order (ton, npi, dest ton, dest npi,
/// esm_class, protocol_id, priority, registered_delivery, data_coding).
pub(crate) fn data_sm_body<'a>(s: &'a SmppSend, tlvs: Tlvs<'a>) -> Body<'a> {
    let o = s.octets;
    Body::DataSm(DataSm {
        service_type: s.service_type.as_bytes(),
        source_addr_ton: o[0],
        source_addr_npi: o[1],
        source_addr: s.source_addr.as_bytes(),
        dest_addr_ton: o[2],
        dest_addr_npi: o[3],
        destination_addr: s.destination_addr.as_bytes(),
        esm_class: o[4],
        registered_delivery: o[7],
        data_coding: o[8],
        tlvs,
    })
}
