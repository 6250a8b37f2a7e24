//! Test-only deterministic simulated network with a virtual clock (quinn's `Pair` idea, for N
//! agents): configurable latency, seeded random loss, duplication and reordering (jitter), and
//! explicit drop rules. Every transmission is logged with its virtual send time so that tests
//! can assert retransmission schedules exactly. Used by the transaction and proxy tests.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{
    Event, Outgoing, Remote, TransactionKey, TransactionLayer, Transmit, Transport, TxResponse,
};

/// One participant of the simulation.
pub(crate) trait Agent {
    fn addr(&self) -> SocketAddr;
    fn handle(&mut self, now: Instant, source: Remote, message: Outgoing);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_timeout(&mut self) -> Option<Instant>;
    fn poll_transmit(&mut self) -> Option<Transmit>;
}

/// A logged transmission.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    /// Virtual send time, relative to the start.
    pub(crate) at: Duration,
    pub(crate) from: SocketAddr,
    pub(crate) to: SocketAddr,
    pub(crate) message: Outgoing,
    /// Whether the network dropped it.
    pub(crate) dropped: bool,
}

impl Sent {
    /// `INVITE`, `ACK`, `100`, `200 INVITE`... : the method or status.
    pub(crate) fn label(&self) -> String {
        match &self.message {
            Outgoing::Request(r) => r.method().to_string(),
            Outgoing::Response(r) => r.status().to_string(),
        }
    }
}

type DropRule = Box<dyn FnMut(&Sent) -> bool>;

/// The network and the clock.
pub(crate) struct Net {
    pub(crate) start: Instant,
    pub(crate) now: Instant,
    pub(crate) latency: Duration,
    /// Extra random delay in [0, jitter) per packet: reorders packets.
    pub(crate) jitter: Duration,
    /// Probability of dropping a packet, 0..=1.
    pub(crate) loss: f64,
    /// Probability of delivering a packet twice.
    pub(crate) duplicate: f64,
    pub(crate) drop_rules: Vec<DropRule>,
    rng: u64,
    seq: u64,
    in_flight: Vec<(Instant, u64, SocketAddr, Remote, Outgoing)>,
    pub(crate) log: Vec<Sent>,
}

impl Net {
    pub(crate) fn new(seed: u64) -> Self {
        // One origin for the virtual clock; everything after is `start + offset`.
        #[allow(clippy::disallowed_methods)] // tests only: the origin of the virtual clock
        let start = Instant::now();
        Self {
            start,
            now: start,
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplicate: 0.0,
            drop_rules: Vec::new(),
            rng: seed | 1,
            seq: 0,
            in_flight: Vec::new(),
            log: Vec::new(),
        }
    }

    /// Time since the start.
    pub(crate) fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    fn random(&mut self) -> f64 {
        // xorshift64*: deterministic per seed.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn collect(&mut self, agents: &mut [&mut dyn Agent]) {
        for agent in agents.iter_mut() {
            while let Some(t) = agent.poll_transmit() {
                let mut sent = Sent {
                    at: self.elapsed(),
                    from: agent.addr(),
                    to: t.destination.addr,
                    message: t.message,
                    dropped: false,
                };
                let ruled = self.drop_rules.iter_mut().any(|rule| rule(&sent));
                sent.dropped = ruled || (self.loss > 0.0 && self.random() < self.loss);
                if !sent.dropped {
                    let copies = if self.duplicate > 0.0 && self.random() < self.duplicate {
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        let jitter = if self.jitter.is_zero() {
                            Duration::ZERO
                        } else {
                            self.jitter.mul_f64(self.random())
                        };
                        self.seq += 1;
                        let source = Remote {
                            addr: sent.from,
                            transport: t.destination.transport,
                        };
                        self.in_flight.push((
                            self.now + self.latency + jitter,
                            self.seq,
                            sent.to,
                            source,
                            sent.message.clone(),
                        ));
                    }
                }
                self.log.push(sent);
            }
        }
    }

    /// Run until nothing is in flight and no timer is due before `until` (relative to start).
    pub(crate) fn run(&mut self, agents: &mut [&mut dyn Agent], until: Duration) {
        let limit = self.start + until;
        loop {
            self.collect(agents);
            let next_packet = self.in_flight.iter().map(|p| (p.0, p.1)).min();
            let next_timer = agents.iter_mut().filter_map(|a| a.poll_timeout()).min();
            let next = match (next_packet, next_timer) {
                (Some((p, _)), Some(t)) => p.min(t),
                (Some((p, _)), None) => p,
                (None, Some(t)) => t,
                (None, None) => break,
            };
            if next > limit {
                break;
            }
            self.now = self.now.max(next);
            if let Some((at, seq)) = next_packet
                && at <= self.now
            {
                let pos = self
                    .in_flight
                    .iter()
                    .position(|p| p.0 == at && p.1 == seq)
                    .expect("packet present");
                let (_, _, to, source, message) = self.in_flight.remove(pos);
                if let Some(agent) = agents.iter_mut().find(|a| a.addr() == to) {
                    agent.handle(self.now, source, message);
                }
                continue;
            }
            for agent in agents.iter_mut() {
                if agent.poll_timeout().is_some_and(|t| t <= self.now) {
                    agent.handle_timeout(self.now);
                }
            }
        }
        self.now = self.now.max(limit);
        self.collect(agents);
    }

    /// Send times (relative) of logged messages with `label` from `from`.
    pub(crate) fn times(&self, label: &str, from: SocketAddr) -> Vec<Duration> {
        self.log
            .iter()
            .filter(|s| s.from == from && s.label() == label)
            .map(|s| s.at)
            .collect()
    }

    /// Labels of every logged message from `from` to `to`, in order.
    pub(crate) fn labels(&self, from: SocketAddr, to: SocketAddr) -> Vec<String> {
        self.log
            .iter()
            .filter(|s| s.from == from && s.to == to)
            .map(Sent::label)
            .collect()
    }
}

/// Milliseconds as a `Duration` (readable schedules).
pub(crate) fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// A socket address on 10.0.0.`n`:5060.
pub(crate) fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 5060))
}

/// A UDP remote.
pub(crate) fn udp(n: u8) -> Remote {
    Remote {
        addr: addr(n),
        transport: Transport::Udp,
    }
}

/// What a [`TxnNode`] does when a new request reaches it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Answer {
    /// Responses to send, each after a delay from the request's arrival.
    pub(crate) responses: Vec<(Duration, u16)>,
    /// Extra header fields put on final responses.
    pub(crate) headers: Vec<(String, String)>,
}

/// A UA-like node: a transaction layer plus a scripted TU that answers new requests.
pub(crate) struct TxnNode {
    pub(crate) addr: SocketAddr,
    pub(crate) layer: TransactionLayer,
    pub(crate) answer: Answer,
    pub(crate) events: Vec<(Duration, Event)>,
    /// Messages the test sends outside any transaction (ACK for 2xx, 2xx retransmissions).
    pub(crate) extra: std::collections::VecDeque<Transmit>,
    /// Play the UA core too (RFC 3261 §13.2.2.4 / §13.3.1.4): ACK every 2xx received for an
    /// INVITE, put a Contact on our 2xx and retransmit it (T1 doubling to T2) until its ACK.
    pub(crate) ua_core: bool,
    start: Instant,
    scheduled: Vec<(Instant, TransactionKey, u16)>,
    /// 2xx retransmissions: (next, interval, key, response).
    retransmit_2xx: Vec<(Instant, Duration, TransactionKey, TxResponse)>,
    acks_sent: u64,
}

impl TxnNode {
    pub(crate) fn new(n: u8, layer: TransactionLayer, net: &Net) -> Self {
        Self {
            addr: addr(n),
            layer,
            answer: Answer::default(),
            events: Vec::new(),
            extra: std::collections::VecDeque::new(),
            ua_core: false,
            start: net.start,
            scheduled: Vec::new(),
            retransmit_2xx: Vec::new(),
            acks_sent: 0,
        }
    }

    fn drain_events(&mut self, now: Instant) {
        while let Some(ev) = self.layer.poll_event() {
            match &ev {
                Event::Request {
                    key,
                    request,
                    cancels,
                    ..
                } if request.kind() == super::MethodKind::Cancel => {
                    // UAS behaviour of §9.2: 200 to the CANCEL, 487 to the INVITE.
                    let ok = TxResponse::to_request(request, 200, "OK", Some("uas-tag"));
                    let _ = self.layer.send_response(now, *key, ok);
                    if let Some(invite) = cancels {
                        self.scheduled.retain(|s| s.1 != *invite);
                        if let Some(req) = self.layer.request(*invite).cloned() {
                            let resp = TxResponse::to_request(
                                &req,
                                487,
                                "Request Terminated",
                                Some("uas-tag"),
                            );
                            let _ = self.layer.send_response(now, *invite, resp);
                        }
                    }
                }
                Event::Request { key, .. } => {
                    for &(delay, status) in &self.answer.responses {
                        self.scheduled.push((now + delay, *key, status));
                    }
                }
                Event::Ack { request, .. } if self.ua_core => {
                    let (call_id, cseq) = (request.call_id(), request.cseq());
                    self.retransmit_2xx
                        .retain(|r| r.3.call_id() != call_id || r.3.cseq() != cseq);
                }
                Event::Response { response, .. }
                    if self.ua_core
                        && (200..300).contains(&response.status())
                        && response.cseq_method() == "INVITE" =>
                {
                    self.send_2xx_ack(response);
                }
                _ => {}
            }
            self.events.push((now - self.start, ev));
        }
        self.fire_scheduled(now);
    }

    fn fire_scheduled(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.scheduled.len() {
            if self.scheduled[i].0 <= now {
                let (_, key, status) = self.scheduled.remove(i);
                if let Some(req) = self.layer.request(key).cloned() {
                    let tag = (status > 100).then_some("uas-tag");
                    let mut resp = TxResponse::to_request(&req, status, "Scripted", tag);
                    let invite_2xx =
                        self.ua_core && req.method() == "INVITE" && (200..300).contains(&status);
                    if status >= 200 && (!self.answer.headers.is_empty() || invite_2xx) {
                        let mut parts = resp.parts();
                        parts.headers.extend(self.answer.headers.iter().cloned());
                        if invite_2xx {
                            parts
                                .headers
                                .push(("Contact".into(), format!("<sip:ua@{}>", self.addr)));
                        }
                        resp = TxResponse::build(parts);
                    }
                    if invite_2xx {
                        let t1 = self.layer.config().timers.t1;
                        self.retransmit_2xx.push((now + t1, t1, key, resp.clone()));
                    }
                    let _ = self.layer.send_response(now, key, resp);
                }
            } else {
                i += 1;
            }
        }
        while let Some(ev) = self.layer.poll_event() {
            self.events.push((now - self.start, ev));
        }
    }

    /// §13.2.2.4: ACK a 2xx, through the route set (Record-Route reversed) to the Contact.
    fn send_2xx_ack(&mut self, response: &TxResponse) {
        let Some(contact) = response.header_values("Contact").next() else {
            return;
        };
        let contact = crate::proxy::strip_angle(contact).to_string();
        let routes: Vec<String> = response
            .record_routes()
            .iter()
            .rev()
            .map(|r| r.to_string())
            .collect();
        let next = routes.first().map_or(contact.as_str(), |r| r.as_str());
        let Some((host, port)) = crate::proxy::uri_host_port(next) else {
            return;
        };
        let Ok(ip) = host.parse::<std::net::IpAddr>() else {
            return;
        };
        self.acks_sent += 1;
        let ack = super::TxRequest::build(super::RequestParts {
            method: "ACK".into(),
            uri: contact,
            vias: vec![format!(
                "SIP/2.0/UDP {};branch=z9hG4bKack{}",
                self.addr, self.acks_sent
            )],
            routes,
            from: response.from_value().into(),
            to: response.to_value().into(),
            call_id: response.call_id().into(),
            cseq: response.cseq(),
            max_forwards: Some(70),
            ..super::RequestParts::default()
        });
        self.extra.push_back(Transmit {
            destination: Remote {
                addr: SocketAddr::new(ip, port.unwrap_or(5060)),
                transport: Transport::Udp,
            },
            message: Outgoing::Request(ack),
        });
    }

    fn fire_2xx_retransmissions(&mut self, now: Instant) {
        let t2 = self.layer.config().timers.t2;
        let mut keep = Vec::new();
        for (next, interval, key, resp) in std::mem::take(&mut self.retransmit_2xx) {
            if next > now {
                keep.push((next, interval, key, resp));
            } else if self.layer.send_response(now, key, resp.clone()).is_ok() {
                let interval = (interval * 2).min(t2);
                keep.push((now + interval, interval, key, resp));
            }
        }
        self.retransmit_2xx = keep;
    }

    /// Labels of the events seen, with their times (`Request INVITE`, `Response 180`,
    /// `Timeout TimerB`, `Terminated`...).
    pub(crate) fn event_labels(&self) -> Vec<(Duration, String)> {
        self.events
            .iter()
            .map(|(at, ev)| {
                let label = match ev {
                    Event::Request { request, .. } => format!("Request {}", request.method()),
                    Event::Ack { .. } => "Ack".to_string(),
                    Event::Response { response, .. } => format!("Response {}", response.status()),
                    Event::StrayResponse { response, .. } => {
                        format!("Stray {}", response.status())
                    }
                    Event::Timeout { timer, .. } => format!("Timeout {timer:?}"),
                    Event::TransportError { .. } => "TransportError".to_string(),
                    Event::Terminated { .. } => "Terminated".to_string(),
                };
                (*at, label)
            })
            .collect()
    }
}

impl Agent for TxnNode {
    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn handle(&mut self, now: Instant, source: Remote, message: Outgoing) {
        match message {
            Outgoing::Request(r) => self.layer.handle_request(now, source, r),
            Outgoing::Response(r) => self.layer.handle_response(now, source, r),
        }
        self.drain_events(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.layer.handle_timeout(now);
        self.fire_2xx_retransmissions(now);
        self.drain_events(now);
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        let own = self
            .scheduled
            .iter()
            .map(|s| s.0)
            .chain(self.retransmit_2xx.iter().map(|r| r.0))
            .min();
        match (self.layer.poll_timeout(), own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.extra
            .pop_front()
            .or_else(|| self.layer.poll_transmit())
    }
}
