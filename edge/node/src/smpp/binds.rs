//! Outbound binds (`smpp.yaml` `binds:` and `SMPP_BIND_<NAME>_*`): siphon as an ESME towards
//! upstream SMSCs. Each bind is run by one core ([`siphon_script::bind_owner`] of its name,
//! the same function the script side uses to route a `*_via` send to that core's ring); the
//! connection is a `Conn` (the session type of `mod.rs`) like an inbound session, with [`Role::Esme`] and `bind: Some(i)`,
//! so framing, timers, enquire_link, the response timer and the write path are shared.
//!
//! Per bind:
//! - connect (TCP, or TLS verified against `host` with the configured CA), send the bind;
//!   `bound` fires when bind_resp is ESME_ROK; a refused connect or bind is logged with its
//!   cause and counted (`siphon_smpp_bind_errors_total{bind,cause}`), never "timed out";
//! - reconnect after any loss with backoff 1 s doubling to 60 s, reset once a session has been
//!   up for 30 s (upstream's rule); in-flight and queued sends fail at once (RuntimeError);
//! - sends wait in order for the window (`binds[].window`, ours) and the pacing bucket
//!   (`max_msg_per_sec`: submit_sm, submit_sm_multi and data_sm only, as upstream); they are
//!   never refused for rate;
//! - deliver_sm, data_sm and alert_notification from the SMSC go to `@smpp.on_pdu` with a
//!   `Session` of kind `"bind"` whose `system_id` is the bind's name.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use siphon_reactor::tls::TlsClient;
use siphon_reactor::{ConnId, ConnectError, Cx, TimerId};
use siphon_script::SmppSend;
use siphon_smpp::{
    Body, CancelSm, CommandId, CommandStatus, Dest, Framer, List, QuerySm, ReplaceSm, Role,
    Session, SessionConfig, SubmitMulti, SubmitSm, ThrottleAction, ThrottleConfig,
    ThrottleDecision, Tlvs, TokenBucket,
};

use super::config::BindConfig;
use super::data_sm_body;
use super::{Conn, SmppCore, TIMER_BIT};

/// Timer tokens of bind reconnects: `TIMER_BIT | RETRY_BIT | bind index`.
pub(super) const RETRY_BIT: u64 = 1 << 61;
/// ... and of a paced send's release: `TIMER_BIT | PACE_BIT | bind index`.
pub(super) const PACE_BIT: u64 = 1 << 60;

/// Status for a send through a bind that is not bound (KeyError in the script).
pub(super) const NOT_BOUND: u32 = super::NOT_BOUND;
/// ... through a receiver bind (RuntimeError).
pub(super) const NOT_TX: u32 = 0xFFFF_FFFD;
/// ... whose connection was lost, or that timed out (RuntimeError, upstream's message).
pub(super) const LOST: u32 = 0xFFFF_FFFC;
/// ... answered by generic_nack; the real status is the message_id text (RuntimeError).
pub(super) const NACKED: u32 = 0xFFFF_FFFB;

const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A session up this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// connect → bound deadline (upstream's hard-coded 15 s).
const BIND_DEADLINE: Duration = Duration::from_secs(15);

/// One bind this core runs.
pub(super) struct OutBind {
    pub(super) cfg: BindConfig,
    tls: Option<Arc<TlsClient>>,
    /// The connection (connecting, binding or bound).
    pub(super) conn: Option<ConnId>,
    /// bind_resp ESME_ROK arrived on `conn`.
    pub(super) bound_at: Option<Instant>,
    backoff: Duration,
    retry: Option<TimerId>,
    /// Sends waiting for the window or their pacing slot (release instant once taken).
    queue: VecDeque<(Box<SmppSend>, Option<Instant>)>,
    bucket: Option<TokenBucket>,
    pace: Option<(TimerId, Instant)>,
    /// Removed by a reload: no reconnect.
    retired: bool,
    /// Store-and-forward messages not on the wire, by (next attempt, our id).
    pub(super) stored: std::collections::BTreeMap<(Instant, u64), Box<SmppSend>>,
    /// Failed attempts, acceptance time and last status of each stored message, by our id.
    pub(super) meta: std::collections::HashMap<u64, super::forward::StoredMeta>,
}

impl OutBind {
    pub(super) fn new(cfg: BindConfig, tls: Option<Arc<TlsClient>>) -> Self {
        let bucket = (cfg.max_msg_per_sec > 0).then(|| {
            TokenBucket::new(ThrottleConfig {
                per_second: cfg.max_msg_per_sec,
                burst: cfg.max_msg_per_sec,
                action: ThrottleAction::Pace,
            })
        });
        Self {
            cfg,
            tls,
            conn: None,
            bound_at: None,
            backoff: BACKOFF_START,
            retry: None,
            queue: VecDeque::new(),
            bucket,
            pace: None,
            retired: false,
            stored: std::collections::BTreeMap::new(),
            meta: std::collections::HashMap::new(),
        }
    }

    /// Stop for good (SIGTERM, or removed by a reload): no reconnect.
    pub(super) fn retire(&mut self) {
        self.retired = true;
    }

    fn session_config(&self) -> SessionConfig {
        let c = &self.cfg;
        SessionConfig {
            window: c.window,
            inbound_window: 512,
            session_init_timeout: BIND_DEADLINE,
            enquire_link_interval: (c.enquire_link_timer_ms > 0)
                .then(|| Duration::from_millis(c.enquire_link_timer_ms)),
            // Upstream's 60 s tore sessions down after one missed keepalive (spec §6 #9).
            inactivity_timeout: Some(Duration::from_secs(300)),
            response_timeout: Duration::from_millis(c.response_timer_ms.max(1)),
            unbind_on_response_timeout: true,
            throttle: None,
        }
    }

    fn bind_command(&self) -> CommandId {
        match self.cfg.bind_type.as_str() {
            "transmitter" => CommandId::BindTransmitter,
            "receiver" => CommandId::BindReceiver,
            _ => CommandId::BindTransceiver,
        }
    }

    pub(super) fn is_retired(&self) -> bool {
        self.retired
    }

    pub(super) fn can_transmit(&self) -> bool {
        self.cfg.bind_type != "receiver"
    }
}

/// Why a connect failed, as a metric label and log text.
fn connect_cause(e: &ConnectError) -> &'static str {
    match e {
        ConnectError::TimedOut => "timeout",
        ConnectError::Io(std::io::ErrorKind::ConnectionRefused) => "refused",
        ConnectError::Io(std::io::ErrorKind::HostUnreachable)
        | ConnectError::Io(std::io::ErrorKind::NetworkUnreachable) => "unreachable",
        _ => "io",
    }
}

/// The trust roots and client identity of a bind's TLS.
pub(crate) fn tls_client(
    t: &super::config::BindTls,
) -> Result<TlsClient, Box<dyn std::error::Error + Send + Sync>> {
    let ca = t
        .ca_path
        .clone()
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    let roots = std::fs::read(&ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    let client = match (&t.cert_path, &t.key_path) {
        (Some(c), Some(k)) => Some((
            std::fs::read(c).map_err(|e| format!("{}: {e}", c.display()))?,
            std::fs::read(k).map_err(|e| format!("{}: {e}", k.display()))?,
        )),
        (None, None) => None,
        _ => return Err("tls: cert_path and key_path go together".into()),
    };
    Ok(TlsClient::from_pem(
        &roots,
        client.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
    )?)
}

/// `smpp.yaml`'s binds read again on SIGHUP, each with its TLS client; every core keeps the
/// ones it owns (`SmppCore::reload_binds`).
pub struct ReloadedBinds(pub Vec<(BindConfig, Option<Arc<TlsClient>>)>);

impl std::fmt::Debug for ReloadedBinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(b, _)| &b.name))
            .finish()
    }
}

/// Read `path` again for SIGHUP: its binds with their TLS clients, or why not.
pub(crate) fn reread(path: &std::path::Path) -> Result<ReloadedBinds, crate::config::ConfigError> {
    let cfg = super::config::load(path)?;
    let tls = tls_clients(&cfg)?;
    Ok(ReloadedBinds(cfg.binds.into_iter().zip(tls).collect()))
}

/// The TLS client of every bind of `cfg` (`None` without `tls`); a bad file stops the start.
pub(crate) fn tls_clients(
    cfg: &super::SmppConfig,
) -> Result<Vec<Option<Arc<TlsClient>>>, crate::config::ConfigError> {
    cfg.binds
        .iter()
        .map(|b| {
            b.tls
                .as_ref()
                .map(|t| {
                    tls_client(t)
                        .map(Arc::new)
                        .map_err(|e| crate::config::ConfigError::At {
                            path: cfg.path.clone(),
                            line: 0,
                            message: format!("bind `{}`: tls: {e}", b.name),
                        })
                })
                .transpose()
        })
        .collect()
}

impl SmppCore {
    /// Start this core's binds (first loop turn).
    pub(super) fn start_binds(&mut self, cx: &mut Cx<'_, crate::engine::Msg>) {
        self.binds_started = true;
        let cores = self.host.cores();
        let shared = Arc::clone(&self.shared);
        for (cfg, tls) in shared.config.binds.iter().zip(&shared.bind_tls) {
            if siphon_script::bind_owner(&cfg.name, cores) == self.core {
                self.binds
                    .push(OutBind::new(cfg.clone(), tls.as_ref().map(Arc::clone)));
            }
        }
        self.start_store(cx);
        for i in 0..self.binds.len() {
            self.connect_bind(cx, i);
        }
    }

    fn bind_index(&self, name: &str) -> Option<usize> {
        self.binds
            .iter()
            .position(|b| !b.retired && b.cfg.name == name)
    }

    fn connect_bind(&mut self, cx: &mut Cx<'_, crate::engine::Msg>, i: usize) {
        let Some(b) = self.binds.get_mut(i) else {
            return;
        };
        if b.retired || b.conn.is_some() {
            return;
        }
        b.retry = None;
        let name = b.cfg.name.clone();
        // IP literals only (checked at load): names would need the resolver off the reactor.
        let Ok(ip) = b.cfg.host.parse::<std::net::IpAddr>() else {
            tracing::warn!(bind = %name, host = %b.cfg.host, "SMPP bind: host is not an IP address");
            self.shared.metrics.bind_error(&name, "resolve");
            return self.schedule_retry(cx, i);
        };
        let addr = SocketAddr::new(ip, b.cfg.port);
        let conn = match &b.tls {
            Some(t) => match cx.connect_tls(addr, t, &b.cfg.host, Some(CONNECT_TIMEOUT)) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(bind = %name, error = %e, "SMPP bind: TLS set-up failed");
                    self.shared.metrics.bind_error(&name, "tls");
                    return self.schedule_retry(cx, i);
                }
            },
            None => cx.connect(addr, Some(CONNECT_TIMEOUT)),
        };
        b.conn = Some(conn);
        let now = cx.now();
        let mut session = Session::new(Role::Esme, b.session_config(), now);
        let bind = siphon_smpp::Bind {
            system_id: b.cfg.system_id.as_bytes(),
            password: b.cfg.password.as_bytes(),
            system_type: b.cfg.system_type.as_bytes(),
            interface_version: 0x34,
            addr_ton: 1,
            addr_npi: 1,
            address_range: b"",
        };
        let body = match b.bind_command() {
            CommandId::BindTransmitter => Body::BindTransmitter(bind),
            CommandId::BindReceiver => Body::BindReceiver(bind),
            _ => Body::BindTransceiver(bind),
        };
        // Writes before the connect completes are queued by the reactor.
        let _ = session.send_request(now, &body);
        let session_id = self.session_id();
        self.conns.insert(
            conn,
            Conn {
                session,
                framer: Framer::new(siphon_smpp::DEFAULT_MAX_PDU_LEN),
                session_id,
                system_id: name,
                peer: addr,
                timer: None,
                in_script: 0,
                registered: false,
                closing: false,
                bind_pending: false,
                bind: Some(i),
            },
        );
        self.after(cx, conn);
    }

    fn schedule_retry(&mut self, cx: &mut Cx<'_, crate::engine::Msg>, i: usize) {
        let Some(b) = self.binds.get_mut(i) else {
            return;
        };
        if b.retired || b.retry.is_some() {
            return;
        }
        let now = cx.now();
        if b.bound_at
            .take()
            .is_some_and(|t| now.saturating_duration_since(t) >= STABLE)
        {
            b.backoff = BACKOFF_START;
        }
        let delay = b.backoff;
        b.backoff = (b.backoff * 2).min(BACKOFF_MAX);
        tracing::info!(bind = %b.cfg.name, after_ms = delay.as_millis() as u64, "SMPP bind: reconnecting");
        self.shared.metrics.bind_reconnect(&b.cfg.name);
        b.retry = Some(cx.set_timer(delay, TIMER_BIT | RETRY_BIT | i as u64));
    }

    /// A timer with [`RETRY_BIT`] or [`PACE_BIT`] fired.
    pub(super) fn on_bind_timer(&mut self, cx: &mut Cx<'_, crate::engine::Msg>, token: u64) {
        let i = (token & 0xffff_ffff) as usize;
        if token & RETRY_BIT != 0 {
            if let Some(b) = self.binds.get_mut(i) {
                b.retry = None;
            }
            self.connect_bind(cx, i);
        } else if let Some(b) = self.binds.get_mut(i) {
            b.pace = None;
            if let Some(conn) = b.conn {
                self.after(cx, conn);
            }
        }
    }

    /// The outcome of a connect the reactor attempted for a bind.
    pub fn on_connected(
        &mut self,
        cx: &mut Cx<'_, crate::engine::Msg>,
        conn: ConnId,
        result: Result<siphon_reactor::ConnInfo, ConnectError>,
    ) {
        let Err(e) = result else {
            return;
        };
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some((id, _, token)) = c.timer {
            cx.cancel_timer(id);
            self.by_timer.remove(&token);
        }
        let Some(i) = c.bind else {
            return;
        };
        if let Some(b) = self.binds.get_mut(i) {
            let cause = connect_cause(&e);
            // Upstream reported a refused connect as "bind timed out" (spec §6 #12).
            tracing::warn!(bind = %b.cfg.name, peer = %c.peer, cause, "SMPP bind: connect failed");
            self.shared.metrics.bind_error(&b.cfg.name, cause);
            b.conn = None;
        }
        self.bind_lost(cx, i);
    }

    /// The bind's connection or session ended: fail what waits, reconnect later.
    pub(super) fn bind_lost(&mut self, cx: &mut Cx<'_, crate::engine::Msg>, i: usize) {
        let Some(b) = self.binds.get_mut(i) else {
            return;
        };
        b.conn = None;
        if let Some((id, _)) = b.pace.take() {
            cx.cancel_timer(id);
        }
        let queued: Vec<_> = b.queue.drain(..).collect();
        for (s, _) in queued {
            self.complete(s.worker, s.token, LOST, String::new());
        }
        self.schedule_retry(cx, i);
    }

    /// Session events of a bind's connection (from `after`).
    pub(super) fn bind_event(&mut self, conn: ConnId, ev: &siphon_smpp::Event) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(i) = c.bind else {
            return;
        };
        match ev {
            siphon_smpp::Event::Bound { .. } => {
                c.registered = true;
                let sid = c.session_id.clone();
                self.by_session.insert(sid, conn);
                self.shared
                    .metrics
                    .egress_bound
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(b) = self.binds.get_mut(i) {
                    b.bound_at = Some(Instant::now());
                    tracing::info!(bind = %b.cfg.name, peer = %c.peer, "SMPP bind: bound");
                }
                self.session_event(conn, "bound");
            }
            siphon_smpp::Event::BindFailed { status } => {
                if let Some(b) = self.binds.get(i) {
                    tracing::warn!(bind = %b.cfg.name, status = %format!("0x{:08x}", status.0), "SMPP bind: refused by the SMSC");
                    self.shared.metrics.bind_error(&b.cfg.name, "bind_refused");
                }
                c.closing = true;
            }
            _ => {}
        }
    }

    /// A `*_via` send arrived on this (the owning) core.
    pub(super) fn send_via(&mut self, cx: &mut Cx<'_, crate::engine::Msg>, s: Box<SmppSend>) {
        let i = self.bind_index(&s.session_id);
        let Some(b) = i.and_then(|i| self.binds.get_mut(i)) else {
            return self
                .host
                .complete_smpp(s.worker, s.token, NOT_BOUND, String::new());
        };
        let bound = b
            .conn
            .and_then(|c| self.conns.get(&c))
            .is_some_and(|c| c.registered && c.session.state().is_bound());
        if !bound {
            return self
                .host
                .complete_smpp(s.worker, s.token, NOT_BOUND, String::new());
        }
        if !b.can_transmit() {
            return self
                .host
                .complete_smpp(s.worker, s.token, NOT_TX, String::new());
        }
        b.queue.push_back((s, None));
        if let Some(conn) = b.conn {
            self.after(cx, conn);
        }
    }

    /// Move queued sends onto the wire while the window and the pacing bucket allow.
    pub(super) fn pump(&mut self, cx: &mut Cx<'_, crate::engine::Msg>, i: usize, conn: ConnId) {
        let Some(b) = self.binds.get_mut(i) else {
            return;
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if !c.registered || !c.session.state().is_bound() {
            return;
        }
        let now = cx.now();
        let mut failed: Vec<(usize, u64, u32)> = Vec::new();
        // Due store-and-forward messages join the queue while it is short.
        let wall = Instant::now();
        while b.queue.len() < b.cfg.window {
            let Some(((at, _), _)) = b.stored.first_key_value() else {
                break;
            };
            if *at > wall {
                break;
            }
            let Some((_, s)) = b.stored.pop_first() else {
                break;
            };
            self.store_inflight.insert(s.token, (i, s.clone()));
            b.queue.push_back((s, None));
        }
        while let Some((s, release)) = b.queue.front_mut() {
            let paced = matches!(
                s.command.as_str(),
                "submit_sm" | "submit_sm_multi" | "data_sm"
            );
            if paced
                && release.is_none()
                && let Some(bucket) = b.bucket.as_mut()
            {
                *release = Some(match bucket.take(now) {
                    ThrottleDecision::Pace(at) => at,
                    _ => now,
                });
            }
            if let Some(at) = *release
                && at > now
            {
                if b.pace.is_none_or(|(_, armed)| armed != at) {
                    if let Some((id, _)) = b.pace.take() {
                        cx.cancel_timer(id);
                    }
                    let id = cx.set_timer(
                        at.saturating_duration_since(now),
                        TIMER_BIT | PACE_BIT | i as u64,
                    );
                    b.pace = Some((id, at));
                }
                break;
            }
            if c.session.window_available() == 0 {
                break;
            }
            let Some((s, _)) = b.queue.pop_front() else {
                break;
            };
            match encode_via(&s).map(|body| c.session.send_request(now, &body.as_body())) {
                Some(Ok(seq)) => {
                    self.sends.insert((conn, seq.0), (s.worker, s.token));
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "SMPP bind: send refused by the session");
                    failed.push((s.worker, s.token, LOST));
                }
                None => {
                    failed.push((s.worker, s.token, CommandStatus::ESME_RINVCMDID.0));
                }
            }
        }
        for (worker, token, status) in failed {
            self.complete(worker, token, status, String::new());
        }
    }

    /// SIGHUP: `smpp.yaml` was read again. Binds added start, binds removed unbind and stay
    /// down, binds changed reconnect with their new settings; unchanged ones are untouched.
    pub fn reload_binds(
        &mut self,
        cx: &mut Cx<'_, crate::engine::Msg>,
        binds: &[(BindConfig, Option<Arc<TlsClient>>)],
    ) {
        if !self.binds_started {
            return;
        }
        let cores = self.host.cores();
        let mine: Vec<&(BindConfig, Option<Arc<TlsClient>>)> = binds
            .iter()
            .filter(|(b, _)| siphon_script::bind_owner(&b.name, cores) == self.core)
            .collect();
        let now = cx.now();
        for i in 0..self.binds.len() {
            let b = &self.binds[i];
            if b.retired {
                continue;
            }
            let keep = mine.iter().any(|(n, _)| same_bind(n, &b.cfg));
            if keep {
                continue;
            }
            let b = &mut self.binds[i];
            b.retire();
            tracing::info!(bind = %b.cfg.name, "SMPP bind: removed or changed by reload");
            if let Some(id) = b.retry.take() {
                cx.cancel_timer(id);
            }
            if let Some(conn) = b.conn
                && let Some(c) = self.conns.get_mut(&conn)
            {
                if c.session.state().is_bound() {
                    let _ = c.session.unbind(now);
                } else {
                    c.closing = true;
                }
                self.after(cx, conn);
            }
        }
        for (cfg, tls) in mine {
            if self.bind_index(&cfg.name).is_none() {
                self.binds
                    .push(OutBind::new(cfg.clone(), tls.as_ref().map(Arc::clone)));
                let i = self.binds.len() - 1;
                self.connect_bind(cx, i);
            }
        }
    }
}

/// Same settings (TLS compared by its files).
fn same_bind(a: &BindConfig, b: &BindConfig) -> bool {
    a.name == b.name
        && a.host == b.host
        && a.port == b.port
        && a.system_id == b.system_id
        && a.password == b.password
        && a.system_type == b.system_type
        && a.bind_type == b.bind_type
        && a.max_msg_per_sec == b.max_msg_per_sec
        && a.enquire_link_timer_ms == b.enquire_link_timer_ms
        && a.response_timer_ms == b.response_timer_ms
        && a.window == b.window
        && a.tls == b.tls
}

/// The owned parts a `*_via` request body borrows from.
struct ViaBody<'a> {
    s: &'a SmppSend,
    dests: Vec<Dest<'a>>,
}

fn encode_via(s: &SmppSend) -> Option<ViaBody<'_>> {
    let via = s.via.as_deref()?;
    let ton = s.octets[2];
    let npi = s.octets[3];
    let dests = via
        .destinations
        .iter()
        .map(|d| Dest::Sme {
            ton,
            npi,
            addr: d.as_bytes(),
        })
        .collect();
    matches!(
        s.command.as_str(),
        "submit_sm" | "submit_sm_multi" | "data_sm" | "cancel_sm" | "query_sm" | "replace_sm"
    )
    .then_some(ViaBody { s, dests })
}

impl ViaBody<'_> {
    fn as_body(&self) -> Body<'_> {
        let s = self.s;
        let o = s.octets;
        let via = s.via.as_deref().unwrap_or(&EMPTY_VIA);
        let tlvs = Tlvs::decode(&s.tlvs).unwrap_or(List::Items(&[]));
        match s.command.as_str() {
            "submit_sm" => Body::SubmitSm(SubmitSm {
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
                schedule_delivery_time: via.schedule_delivery_time.as_bytes(),
                validity_period: via.validity_period.as_bytes(),
                registered_delivery: o[7],
                replace_if_present_flag: via.replace_if_present_flag,
                data_coding: o[8],
                sm_default_msg_id: via.sm_default_msg_id,
                short_message: &s.short_message,
                tlvs,
            }),
            "submit_sm_multi" => Body::SubmitMulti(SubmitMulti {
                service_type: s.service_type.as_bytes(),
                source_addr_ton: o[0],
                source_addr_npi: o[1],
                source_addr: s.source_addr.as_bytes(),
                dests: List::Items(&self.dests),
                esm_class: o[4],
                protocol_id: o[5],
                priority_flag: o[6],
                schedule_delivery_time: via.schedule_delivery_time.as_bytes(),
                validity_period: via.validity_period.as_bytes(),
                registered_delivery: o[7],
                replace_if_present_flag: via.replace_if_present_flag,
                data_coding: o[8],
                sm_default_msg_id: via.sm_default_msg_id,
                short_message: &s.short_message,
                tlvs,
            }),
            "data_sm" => data_sm_body(s, tlvs),
            "cancel_sm" => Body::CancelSm(CancelSm {
                service_type: s.service_type.as_bytes(),
                message_id: via.message_id.as_bytes(),
                source_addr_ton: o[0],
                source_addr_npi: o[1],
                source_addr: s.source_addr.as_bytes(),
                dest_addr_ton: o[2],
                dest_addr_npi: o[3],
                destination_addr: s.destination_addr.as_bytes(),
            }),
            "query_sm" => Body::QuerySm(QuerySm {
                message_id: via.message_id.as_bytes(),
                source_addr_ton: o[0],
                source_addr_npi: o[1],
                source_addr: s.source_addr.as_bytes(),
            }),
            _ => Body::ReplaceSm(ReplaceSm {
                message_id: via.message_id.as_bytes(),
                source_addr_ton: o[0],
                source_addr_npi: o[1],
                source_addr: s.source_addr.as_bytes(),
                schedule_delivery_time: via.schedule_delivery_time.as_bytes(),
                validity_period: via.validity_period.as_bytes(),
                registered_delivery: o[7],
                sm_default_msg_id: via.sm_default_msg_id,
                short_message: &s.short_message,
            }),
        }
    }
}

/// Defaults for a send without `via` (never encoded: `encode_via` requires it).
static EMPTY_VIA: siphon_script::SmppVia = siphon_script::SmppVia {
    message_id: String::new(),
    destinations: Vec::new(),
    schedule_delivery_time: String::new(),
    validity_period: String::new(),
    replace_if_present_flag: 0,
    sm_default_msg_id: 0,
    store: None,
};
