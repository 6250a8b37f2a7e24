//! The SMSC simulator: our [`Session`] in the SMSC role behind a blocking listener, one
//! thread per connection.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use siphon_smpp::{
    BindResp, Body, CommandId, CommandStatus, DataSm, DataSmResp, Framer, Inbound, List,
    MessageIdResp, QuerySmResp, Role, Session, SessionConfig, SessionState, SubmitMultiResp,
    SubmitSm, Tlv, TlvTag, Tlvs,
};

use crate::Rng;

/// Simulator knobs (SMPPSim's names in brackets).
#[derive(Debug, Clone)]
pub struct SmscConfig {
    /// Listen address (port 0: any).
    pub listen: SocketAddr,
    /// Accept only this system_id/password (empty: accept every bind).
    pub system_id: String,
    /// See `system_id`.
    pub password: String,
    /// Delay of a delivery receipt (`DELIVERY_MESSAGE_PER_MINUTE`-like delay).
    pub dlr_delay: Duration,
    /// Share of `registered_delivery` submits that get a receipt, 0..=1.
    pub dlr_ratio: f64,
    /// Share of submits answered with `error_status` (`SUBMIT_SM_ERROR_RATE`).
    pub error_rate: f64,
    /// The status of those answers (default ESME_RSUBMITFAIL).
    pub error_status: u32,
    /// Share of submits answered ESME_RTHROTTLED.
    pub throttle_rate: f64,
    /// MO deliver_sm per second to each receiver/transceiver session (0: none).
    pub mo_per_sec: u32,
    /// Our window for deliver_sm/data_sm towards the ESME.
    pub window: usize,
    /// enquire_link interval of ours (`None`: never).
    pub enquire_link: Option<Duration>,
    /// Seed of the rates.
    pub seed: u64,
}

impl Default for SmscConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            system_id: String::new(),
            password: String::new(),
            dlr_delay: Duration::from_millis(0),
            dlr_ratio: 1.0,
            error_rate: 0.0,
            error_status: CommandStatus::ESME_RSUBMITFAIL.0,
            throttle_rate: 0.0,
            mo_per_sec: 0,
            window: 64,
            enquire_link: None,
            seed: 0x5eed,
        }
    }
}

/// A request the simulator received (tests read these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The command (`"submit_sm"`, `"data_sm"`, ...).
    pub command: &'static str,
    /// source_addr.
    pub source: String,
    /// destination_addr (submit_multi: the addresses joined by `,`).
    pub dest: String,
    /// short_message, or message_payload when present.
    pub body: Vec<u8>,
    /// The message_id we answered (cancel/query/replace: the one asked about).
    pub message_id: String,
    /// registered_delivery.
    pub registered_delivery: u8,
    /// The TLV section's wire octets.
    pub tlvs: Vec<u8>,
}

/// A PDU a test asks the simulator to send to every bound receiver/transceiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// deliver_sm (MO or hand-made receipt).
    Deliver {
        /// source_addr.
        source: String,
        /// destination_addr.
        dest: String,
        /// short_message.
        body: Vec<u8>,
        /// esm_class (0x04: receipt).
        esm_class: u8,
        /// TLV wire octets.
        tlvs: Vec<u8>,
    },
    /// data_sm with the body in message_payload.
    Data {
        /// source_addr.
        source: String,
        /// destination_addr.
        dest: String,
        /// message_payload.
        body: Vec<u8>,
    },
}

/// Counters.
#[derive(Debug, Default)]
pub struct SmscStats {
    /// Binds accepted.
    pub binds: AtomicU64,
    /// submit_sm / submit_multi / data_sm answered (any status).
    pub submits: AtomicU64,
    /// Receipts sent.
    pub dlrs: AtomicU64,
    /// deliver_sm/data_sm answers from the ESME.
    pub acks: AtomicU64,
    /// Connections accepted.
    pub connections: AtomicU64,
}

struct Shared {
    cfg: SmscConfig,
    stop: AtomicBool,
    stats: SmscStats,
    received: Mutex<Vec<Received>>,
    record: AtomicBool,
    pushes: Mutex<Vec<VecDeque<Push>>>,
    streams: Mutex<Vec<TcpStream>>,
    next_id: AtomicU64,
}

/// A running simulator.
pub struct Smsc {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Smsc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smsc").field("addr", &self.addr).finish()
    }
}

impl Smsc {
    /// Listen and serve in background threads.
    pub fn start(cfg: SmscConfig) -> io::Result<Self> {
        let listener = TcpListener::bind(cfg.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cfg,
            stop: AtomicBool::new(false),
            stats: SmscStats::default(),
            received: Mutex::new(Vec::new()),
            record: AtomicBool::new(true),
            pushes: Mutex::new(Vec::new()),
            streams: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
        });
        let sh = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("smsc-accept".into())
            .spawn(move || accept_loop(&listener, &sh))?;
        Ok(Self {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Counters.
    pub fn stats(&self) -> &SmscStats {
        &self.shared.stats
    }

    /// Requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Keep (default) or stop keeping [`Received`] records (benchmarks).
    pub fn set_recording(&self, on: bool) {
        self.shared.record.store(on, Ordering::Relaxed);
    }

    /// Queue `p` for every session bound now (receiver or transceiver).
    pub fn push(&self, p: Push) {
        if let Ok(mut q) = self.shared.pushes.lock() {
            for s in q.iter_mut() {
                s.push_back(p.clone());
            }
        }
    }

    /// Drop every connection and stop listening (the SMSC dies mid-flow).
    pub fn kill(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Ok(s) = self.shared.streams.lock() {
            for s in s.iter() {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        if let Some(j) = self.accept.take() {
            let _ = j.join();
        }
    }
}

impl Drop for Smsc {
    fn drop(&mut self) {
        self.stop_all();
    }
}

fn accept_loop(listener: &TcpListener, sh: &Arc<Shared>) {
    let mut seed = sh.cfg.seed;
    while !sh.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, _)) => {
                sh.stats.connections.fetch_add(1, Ordering::Relaxed);
                if let Ok(c) = s.try_clone()
                    && let Ok(mut v) = sh.streams.lock()
                {
                    v.push(c);
                }
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                let sh2 = Arc::clone(sh);
                let _ = std::thread::Builder::new()
                    .name("smsc-conn".into())
                    .spawn(move || {
                        let _ = serve(s, &sh2, seed);
                    });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

struct Dlr {
    due: Instant,
    id: String,
    source: String,
    dest: String,
    text: Vec<u8>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn serve(mut s: TcpStream, sh: &Shared, seed: u64) -> io::Result<()> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_millis(5)))?;
    let cfg = &sh.cfg;
    let mut rng = Rng::new(seed);
    let mut session = Session::new(
        Role::Smsc,
        SessionConfig {
            window: cfg.window,
            inbound_window: 4096,
            enquire_link_interval: cfg.enquire_link,
            inactivity_timeout: None,
            ..SessionConfig::default()
        },
        Instant::now(),
    );
    let mut framer = Framer::new(siphon_smpp::DEFAULT_MAX_PDU_LEN);
    let mut dlrs: VecDeque<Dlr> = VecDeque::new();
    let mut push_slot: Option<usize> = None;
    let mut next_mo = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if sh.stop.load(Ordering::Relaxed) {
            let _ = s.shutdown(Shutdown::Both);
            return Ok(());
        }
        let n = match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                0
            }
            Err(e) => return Err(e),
        };
        let now = Instant::now();
        framer.push(&buf[..n]);
        loop {
            let frame = match framer.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    session.handle_frame_error(now, e);
                    break;
                }
            };
            match session.handle_frame(now, frame) {
                Inbound::Request(pdu) => {
                    handle_request(sh, &mut session, &mut rng, &mut dlrs, now, &pdu);
                }
                Inbound::Response { request, .. } => {
                    if matches!(request, CommandId::DeliverSm | CommandId::DataSm) {
                        sh.stats.acks.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Inbound::Handled(_) => {}
            }
        }
        let rx = matches!(
            session.state(),
            SessionState::BoundRx | SessionState::BoundTrx
        );
        if rx
            && push_slot.is_none()
            && let Ok(mut q) = sh.pushes.lock()
        {
            q.push(VecDeque::new());
            push_slot = Some(q.len() - 1);
        }
        if rx {
            send_due(sh, &mut session, &mut dlrs, push_slot, &mut next_mo, now);
        }
        if session.poll_timeout().is_some_and(|t| t <= now) {
            session.handle_timeout(now);
        }
        while session.poll_event().is_some() {}
        let tx = session.transmit();
        if !tx.is_empty() {
            let n = tx.len();
            s.write_all(tx)?;
            session.advance_transmit(n);
        }
        if session.state() == SessionState::Closed {
            let _ = s.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

fn handle_request(
    sh: &Shared,
    session: &mut Session,
    rng: &mut Rng,
    dlrs: &mut VecDeque<Dlr>,
    now: Instant,
    pdu: &siphon_smpp::Pdu<'_>,
) {
    let cfg = &sh.cfg;
    let seq = pdu.sequence;
    let record = |r: Received| {
        if sh.record.load(Ordering::Relaxed)
            && let Ok(mut v) = sh.received.lock()
        {
            v.push(r);
        }
    };
    let new_id = || format!("{:08x}", sh.next_id.fetch_add(1, Ordering::Relaxed));
    let verdict = |rng: &mut Rng| {
        if rng.unit() < cfg.throttle_rate {
            CommandStatus::ESME_RTHROTTLED
        } else if rng.unit() < cfg.error_rate {
            CommandStatus(cfg.error_status)
        } else {
            CommandStatus::ESME_ROK
        }
    };
    let payload = |t: &Tlvs<'_>, sm: &[u8]| {
        t.iter()
            .find(|t| t.tag == TlvTag::MESSAGE_PAYLOAD)
            .map_or_else(|| sm.to_vec(), |t| t.value.to_vec())
    };
    let raw_tlvs = |t: &Tlvs<'_>| {
        let mut raw = Vec::new();
        for tlv in t.iter() {
            raw.extend_from_slice(&tlv.tag.0.to_be_bytes());
            raw.extend_from_slice(&(tlv.value.len() as u16).to_be_bytes());
            raw.extend_from_slice(tlv.value);
        }
        raw
    };
    let _ = match pdu.body {
        Body::BindTransceiver(b) | Body::BindTransmitter(b) | Body::BindReceiver(b) => {
            let ok = cfg.system_id.is_empty()
                || (b.system_id == cfg.system_id.as_bytes()
                    && b.password == cfg.password.as_bytes());
            let r = BindResp {
                system_id: b"smsc-sim",
                tlvs: List::Items(&[]),
            };
            let body = match pdu.command_id() {
                CommandId::BindTransmitter => Body::BindTransmitterResp(r),
                CommandId::BindReceiver => Body::BindReceiverResp(r),
                _ => Body::BindTransceiverResp(r),
            };
            if ok {
                sh.stats.binds.fetch_add(1, Ordering::Relaxed);
                session.send_response(now, seq, CommandStatus::ESME_ROK, &body)
            } else {
                session.send_response(now, seq, CommandStatus::ESME_RINVPASWD, &body)
            }
        }
        Body::SubmitSm(m) => {
            sh.stats.submits.fetch_add(1, Ordering::Relaxed);
            let status = verdict(rng);
            let id = if status.is_ok() {
                new_id()
            } else {
                String::new()
            };
            let body = payload(&m.tlvs, m.short_message);
            if status.is_ok() && m.registered_delivery & 0x03 != 0 && rng.unit() < cfg.dlr_ratio {
                dlrs.push_back(Dlr {
                    due: now + cfg.dlr_delay,
                    id: id.clone(),
                    source: text(m.destination_addr),
                    dest: text(m.source_addr),
                    text: body.iter().copied().take(20).collect(),
                });
            }
            record(Received {
                command: "submit_sm",
                source: text(m.source_addr),
                dest: text(m.destination_addr),
                body,
                message_id: id.clone(),
                registered_delivery: m.registered_delivery,
                tlvs: raw_tlvs(&m.tlvs),
            });
            session.send_response(
                now,
                seq,
                status,
                &Body::SubmitSmResp(MessageIdResp {
                    message_id: id.as_bytes(),
                }),
            )
        }
        Body::SubmitMulti(m) => {
            sh.stats.submits.fetch_add(1, Ordering::Relaxed);
            let status = verdict(rng);
            let id = if status.is_ok() {
                new_id()
            } else {
                String::new()
            };
            let dests: Vec<String> = m
                .dests
                .iter()
                .map(|d| match d {
                    siphon_smpp::Dest::Sme { addr, .. } => text(addr),
                    siphon_smpp::Dest::DistributionList(n) => text(n),
                })
                .collect();
            record(Received {
                command: "submit_sm_multi",
                source: text(m.source_addr),
                dest: dests.join(","),
                body: m.short_message.to_vec(),
                message_id: id.clone(),
                registered_delivery: m.registered_delivery,
                tlvs: raw_tlvs(&m.tlvs),
            });
            session.send_response(
                now,
                seq,
                status,
                &Body::SubmitMultiResp(SubmitMultiResp {
                    message_id: id.as_bytes(),
                    unsuccess: List::Items(&[]),
                }),
            )
        }
        Body::DataSm(m) => {
            sh.stats.submits.fetch_add(1, Ordering::Relaxed);
            let status = verdict(rng);
            let id = if status.is_ok() {
                new_id()
            } else {
                String::new()
            };
            record(Received {
                command: "data_sm",
                source: text(m.source_addr),
                dest: text(m.destination_addr),
                body: payload(&m.tlvs, b""),
                message_id: id.clone(),
                registered_delivery: m.registered_delivery,
                tlvs: raw_tlvs(&m.tlvs),
            });
            session.send_response(
                now,
                seq,
                status,
                &Body::DataSmResp(DataSmResp {
                    message_id: id.as_bytes(),
                    tlvs: List::Items(&[]),
                }),
            )
        }
        Body::QuerySm(m) => {
            record(Received {
                command: "query_sm",
                source: text(m.source_addr),
                dest: String::new(),
                body: Vec::new(),
                message_id: text(m.message_id),
                registered_delivery: 0,
                tlvs: Vec::new(),
            });
            session.send_response(
                now,
                seq,
                CommandStatus::ESME_ROK,
                &Body::QuerySmResp(QuerySmResp {
                    message_id: m.message_id,
                    final_date: b"",
                    message_state: 2,
                    error_code: 0,
                }),
            )
        }
        Body::CancelSm(m) => {
            record(Received {
                command: "cancel_sm",
                source: text(m.source_addr),
                dest: text(m.destination_addr),
                body: Vec::new(),
                message_id: text(m.message_id),
                registered_delivery: 0,
                tlvs: Vec::new(),
            });
            session.send_response(now, seq, CommandStatus::ESME_ROK, &Body::CancelSmResp)
        }
        Body::ReplaceSm(m) => {
            record(Received {
                command: "replace_sm",
                source: text(m.source_addr),
                dest: String::new(),
                body: m.short_message.to_vec(),
                message_id: text(m.message_id),
                registered_delivery: m.registered_delivery,
                tlvs: Vec::new(),
            });
            session.send_response(now, seq, CommandStatus::ESME_ROK, &Body::ReplaceSmResp)
        }
        _ => {
            let body = Body::empty_response(pdu.command_id()).unwrap_or(Body::GenericNack);
            session.send_response(now, seq, CommandStatus::ESME_RINVCMDID, &body)
        }
    };
}

fn send_due(
    sh: &Shared,
    session: &mut Session,
    dlrs: &mut VecDeque<Dlr>,
    push_slot: Option<usize>,
    next_mo: &mut Instant,
    now: Instant,
) {
    while session.window_available() > 0 {
        let Some(d) = dlrs.front() else {
            break;
        };
        if d.due > now {
            break;
        }
        let Some(d) = dlrs.pop_front() else {
            break;
        };
        let receipt = format!(
            "id:{} sub:001 dlvrd:001 submit date:2601011200 done date:2601011200 stat:DELIVRD err:000 text:{}",
            d.id,
            text(&d.text)
        );
        let rid = format!("{}\0", d.id);
        let state = [2u8];
        let tlvs = [
            Tlv::new(TlvTag::RECEIPTED_MESSAGE_ID, rid.as_bytes()),
            Tlv::new(TlvTag::MESSAGE_STATE, &state),
        ];
        let body = Body::DeliverSm(SubmitSm {
            source_addr: d.source.as_bytes(),
            destination_addr: d.dest.as_bytes(),
            esm_class: 0x04,
            short_message: receipt.as_bytes(),
            tlvs: List::Items(&tlvs),
            ..SubmitSm::default()
        });
        if session.send_request(now, &body).is_ok() {
            sh.stats.dlrs.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some(slot) = push_slot {
        loop {
            if session.window_available() == 0 {
                break;
            }
            let p = sh
                .pushes
                .lock()
                .ok()
                .and_then(|mut q| q.get_mut(slot).and_then(VecDeque::pop_front));
            let Some(p) = p else {
                break;
            };
            let _ = match &p {
                Push::Deliver {
                    source,
                    dest,
                    body,
                    esm_class,
                    tlvs,
                } => session.send_request(
                    now,
                    &Body::DeliverSm(SubmitSm {
                        source_addr: source.as_bytes(),
                        destination_addr: dest.as_bytes(),
                        esm_class: *esm_class,
                        short_message: body,
                        tlvs: Tlvs::decode(tlvs).unwrap_or(List::Items(&[])),
                        ..SubmitSm::default()
                    }),
                ),
                Push::Data { source, dest, body } => {
                    let t = [Tlv::new(TlvTag::MESSAGE_PAYLOAD, body)];
                    session.send_request(
                        now,
                        &Body::DataSm(DataSm {
                            source_addr: source.as_bytes(),
                            destination_addr: dest.as_bytes(),
                            tlvs: List::Items(&t),
                            ..DataSm::default()
                        }),
                    )
                }
            };
        }
    }
    let mo = sh.cfg.mo_per_sec;
    if mo > 0 {
        let step = Duration::from_nanos(1_000_000_000 / u64::from(mo));
        while *next_mo <= now && session.window_available() > 0 {
            *next_mo += step;
            let _ = session.send_request(
                now,
                &Body::DeliverSm(SubmitSm {
                    source_addr: b"15559990000",
                    destination_addr: b"1234",
                    short_message: b"MO from the simulator",
                    ..SubmitSm::default()
                }),
            );
        }
        if *next_mo < now {
            *next_mo = now;
        }
    }
}
