//! Session scenarios on a virtual clock (quinn `Pair` style): an ESME and an SMSC session
//! wired back to back through framers; time only moves when a test moves it.

use std::time::{Duration, Instant};

use super::*;
use crate::framer::Framer;
use crate::pdu::tests::samples;
use crate::pdu::{Bind, BindResp, MessageIdResp, SubmitSm};
use crate::tlv::{Tlv, TlvTag, Tlvs};
use crate::{MessageState, Receipt, ReceiptBuilder};

#[expect(
    clippy::disallowed_methods,
    reason = "the virtual clock needs one real origin"
)]
fn t0() -> Instant {
    Instant::now()
}

/// What one side saw for one frame, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Seen {
    Request(CommandId, SequenceNumber),
    Response(CommandId, CommandStatus, CommandId),
    Handled(Handled),
}

fn summarise(i: Inbound<'_>) -> Seen {
    match i {
        Inbound::Request(p) => Seen::Request(p.command_id(), p.sequence),
        Inbound::Response { pdu, request } => Seen::Response(pdu.command_id(), pdu.status, request),
        Inbound::Handled(h) => Seen::Handled(h),
    }
}

/// Takes everything `s` wants to send, as (command, status, sequence).
fn sent(s: &mut Session) -> Vec<(CommandId, CommandStatus, SequenceNumber)> {
    let mut f = Framer::default();
    f.push(s.transmit());
    let n = s.transmit().len();
    s.advance_transmit(n);
    let mut out = Vec::new();
    while let Some(frame) = f.next_frame().unwrap() {
        let p = Pdu::decode(frame).unwrap();
        out.push((p.command_id(), p.status, p.sequence));
    }
    out
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

struct Pair {
    now: Instant,
    esme: Session,
    smsc: Session,
    to_esme: Framer,
    to_smsc: Framer,
}

const BIND: Bind<'static> = Bind {
    system_id: b"esme",
    password: b"pw",
    system_type: b"",
    interface_version: 0x34,
    addr_ton: 1,
    addr_npi: 1,
    address_range: b"",
};

fn submit() -> SubmitSm<'static> {
    SubmitSm {
        source_addr: b"4477",
        destination_addr: b"4478",
        short_message: b"hello",
        ..SubmitSm::default()
    }
}

impl Pair {
    fn new(esme: SessionConfig, smsc: SessionConfig) -> Self {
        let now = t0();
        Self {
            now,
            esme: Session::new(Role::Esme, esme, now),
            smsc: Session::new(Role::Smsc, smsc, now),
            to_esme: Framer::default(),
            to_smsc: Framer::default(),
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.esme.handle_timeout(self.now);
        self.smsc.handle_timeout(self.now);
    }

    /// Moves the ESME's bytes to the SMSC and returns what the SMSC saw.
    fn esme_to_smsc(&mut self) -> Vec<Seen> {
        carry(self.now, &mut self.esme, &mut self.to_smsc, &mut self.smsc)
    }

    fn smsc_to_esme(&mut self) -> Vec<Seen> {
        carry(self.now, &mut self.smsc, &mut self.to_esme, &mut self.esme)
    }

    /// Binds as `kind`; the SMSC accepts.
    fn bind(&mut self, kind: CommandId) {
        let body = match kind {
            CommandId::BindTransmitter => Body::BindTransmitter(BIND),
            CommandId::BindReceiver => Body::BindReceiver(BIND),
            _ => Body::BindTransceiver(BIND),
        };
        let seq = self.esme.send_request(self.now, &body).unwrap();
        assert_eq!(self.esme_to_smsc(), [Seen::Request(kind, seq)]);
        let resp = Body::empty(kind.response().unwrap());
        let resp = match resp {
            Body::BindTransceiverResp(_) => Body::BindTransceiverResp(BindResp {
                system_id: b"SMSC",
                tlvs: Tlvs::default(),
            }),
            other => other,
        };
        self.smsc
            .send_response(self.now, seq, CommandStatus::ESME_ROK, &resp)
            .unwrap();
        let want = SessionState::after_bind(kind).unwrap();
        assert_eq!(self.smsc.state(), want);
        assert_eq!(
            self.smsc_to_esme(),
            [Seen::Response(
                kind.response().unwrap(),
                CommandStatus::ESME_ROK,
                kind
            )]
        );
        assert_eq!(self.esme.state(), want);
        assert_eq!(events(&mut self.esme), [Event::Bound { state: want }]);
        assert_eq!(events(&mut self.smsc), [Event::Bound { state: want }]);
    }
}

fn carry(now: Instant, from: &mut Session, framer: &mut Framer, to: &mut Session) -> Vec<Seen> {
    framer.push(from.transmit());
    let n = from.transmit().len();
    from.advance_transmit(n);
    let mut seen = Vec::new();
    loop {
        match framer.next_frame() {
            Ok(Some(f)) => seen.push(summarise(to.handle_frame(now, f))),
            Ok(None) => break,
            Err(e) => {
                to.handle_frame_error(now, e);
                break;
            }
        }
    }
    seen
}

fn quiet() -> SessionConfig {
    SessionConfig {
        enquire_link_interval: None,
        inactivity_timeout: None,
        ..SessionConfig::default()
    }
}

#[test]
fn bind_each_kind_both_roles() {
    for kind in [
        CommandId::BindTransmitter,
        CommandId::BindReceiver,
        CommandId::BindTransceiver,
    ] {
        let mut p = Pair::new(quiet(), quiet());
        p.bind(kind);
        // A second bind while bound: ESME_RALYBND.
        p.esme.force_state(SessionState::Open);
        let seq = p
            .esme
            .send_request(p.now, &Body::BindTransceiver(BIND))
            .unwrap();
        assert_eq!(
            p.esme_to_smsc(),
            [Seen::Handled(Handled::Rejected(
                CommandStatus::ESME_RALYBND
            ))]
        );
        let back = sent(&mut p.smsc);
        assert_eq!(
            back,
            [(
                CommandId::BindTransceiverResp,
                CommandStatus::ESME_RALYBND,
                seq
            )]
        );
    }
}

#[test]
fn bind_rejected_then_session_init_timeout() {
    let mut p = Pair::new(quiet(), quiet());
    let seq = p
        .esme
        .send_request(p.now, &Body::BindTransmitter(BIND))
        .unwrap();
    // A second bind while one is pending is refused locally.
    assert!(matches!(
        p.esme.send_request(p.now, &Body::BindTransmitter(BIND)),
        Err(SessionError::InvalidState { .. })
    ));
    p.esme_to_smsc();
    p.smsc
        .send_response(
            p.now,
            seq,
            CommandStatus::ESME_RINVPASWD,
            &Body::empty(CommandId::BindTransmitterResp),
        )
        .unwrap();
    assert_eq!(p.smsc.state(), SessionState::Open);
    p.smsc_to_esme();
    assert_eq!(
        events(&mut p.esme),
        [Event::BindFailed {
            status: CommandStatus::ESME_RINVPASWD
        }]
    );
    assert_eq!(p.esme.state(), SessionState::Open);
    p.advance(Duration::from_millis(4_999));
    assert_eq!(p.smsc.state(), SessionState::Open);
    assert_eq!(
        p.smsc.poll_timeout(),
        Some(p.now + Duration::from_millis(1))
    );
    p.advance(Duration::from_millis(1));
    for s in [&mut p.esme, &mut p.smsc] {
        assert_eq!(s.state(), SessionState::Closed);
        assert_eq!(
            events(s),
            [Event::Closed {
                reason: CloseReason::SessionInitTimeout
            }]
        );
        assert_eq!(s.poll_timeout(), None);
    }
}

/// Every (role, state, request) for requests arriving from the peer.
#[test]
fn inbound_state_rules() {
    let bodies = samples();
    for role in [Role::Esme, Role::Smsc] {
        for state in SessionState::ALL {
            for body in &bodies {
                let id = body.command_id();
                if id.is_response() {
                    continue;
                }
                let now = t0();
                let mut s = Session::new(role, quiet(), now);
                s.force_state(state);
                let mut wire = Vec::new();
                Pdu::request(SequenceNumber(42), *body)
                    .encode(&mut wire)
                    .unwrap();
                let got = s.handle_frame(now, &wire);
                let out = sent(&mut s);
                let ctx = format!("{role:?} {state:?} {id}");
                if state == SessionState::Closed {
                    assert_eq!(got, Inbound::Handled(Handled::Closed), "{ctx}");
                    assert!(out.is_empty(), "{ctx}");
                    continue;
                }
                let expected_reject = if id.is_bind() && role == Role::Smsc && state.is_bound() {
                    Some(CommandStatus::ESME_RALYBND)
                } else if !request_allowed(role.peer(), state, id) {
                    Some(CommandStatus::ESME_RINVBNDSTS)
                } else {
                    None
                };
                match expected_reject {
                    Some(status) => {
                        assert_eq!(got, Inbound::Handled(Handled::Rejected(status)), "{ctx}");
                        let answer = id.response().unwrap_or(CommandId::GenericNack);
                        assert_eq!(out, [(answer, status, SequenceNumber(42))], "{ctx}");
                    }
                    None => match id {
                        CommandId::EnquireLink => {
                            assert_eq!(got, Inbound::Handled(Handled::EnquireLink), "{ctx}");
                            assert_eq!(
                                out,
                                [(
                                    CommandId::EnquireLinkResp,
                                    CommandStatus::ESME_ROK,
                                    SequenceNumber(42)
                                )]
                            );
                        }
                        CommandId::Unbind => {
                            assert_eq!(got, Inbound::Handled(Handled::Unbind), "{ctx}");
                            assert_eq!(s.state(), SessionState::Unbound);
                        }
                        _ => {
                            assert!(
                                matches!(got, Inbound::Request(p) if p.command_id() == id),
                                "{ctx}"
                            );
                            assert!(out.is_empty(), "{ctx}");
                        }
                    },
                }
            }
        }
    }
}

/// Every (role, state, request) for requests we try to send.
#[test]
fn outbound_state_rules() {
    for role in [Role::Esme, Role::Smsc] {
        for state in SessionState::ALL {
            for body in samples() {
                let id = body.command_id();
                let now = t0();
                let mut s = Session::new(role, quiet(), now);
                s.force_state(state);
                let r = s.send_request(now, &body);
                if id.is_response() {
                    assert_eq!(r, Err(SessionError::NotARequest { command: id }));
                } else if request_allowed(role, state, id) {
                    assert!(r.is_ok(), "{role:?} {state:?} {id}");
                    assert_eq!(sent(&mut s)[0].0, id);
                } else {
                    assert_eq!(r, Err(SessionError::InvalidState { state, command: id }));
                    assert!(s.transmit().is_empty());
                }
            }
        }
    }
    // Spot checks against the spec table.
    assert!(request_allowed(
        Role::Esme,
        SessionState::BoundTx,
        CommandId::SubmitSm
    ));
    assert!(!request_allowed(
        Role::Esme,
        SessionState::BoundRx,
        CommandId::SubmitSm
    ));
    assert!(request_allowed(
        Role::Smsc,
        SessionState::BoundRx,
        CommandId::DeliverSm
    ));
    assert!(!request_allowed(
        Role::Smsc,
        SessionState::BoundTx,
        CommandId::DeliverSm
    ));
    assert!(request_allowed(
        Role::Smsc,
        SessionState::Open,
        CommandId::Outbind
    ));
    assert!(!request_allowed(
        Role::Esme,
        SessionState::Open,
        CommandId::SubmitSm
    ));
}

#[test]
fn sequence_numbers_and_responses() {
    let mut p = Pair::new(quiet(), quiet());
    p.bind(CommandId::BindTransceiver);
    let a = p
        .esme
        .send_request(p.now, &Body::SubmitSm(submit()))
        .unwrap();
    let b = p
        .esme
        .send_request(p.now, &Body::SubmitSm(submit()))
        .unwrap();
    assert_eq!((a, b), (SequenceNumber(2), SequenceNumber(3)));
    assert_eq!(
        p.esme_to_smsc(),
        [
            Seen::Request(CommandId::SubmitSm, a),
            Seen::Request(CommandId::SubmitSm, b)
        ]
    );
    // Answer out of order; the wrong response type is refused.
    assert_eq!(
        p.smsc.send_response(
            p.now,
            b,
            CommandStatus::ESME_ROK,
            &Body::DeliverSmResp(MessageIdResp::default())
        ),
        Err(SessionError::WrongResponse {
            request: CommandId::SubmitSm,
            response: CommandId::DeliverSmResp
        })
    );
    let id = Body::SubmitSmResp(MessageIdResp { message_id: b"m2" });
    p.smsc
        .send_response(p.now, b, CommandStatus::ESME_ROK, &id)
        .unwrap();
    assert_eq!(
        p.smsc.send_response(p.now, b, CommandStatus::ESME_ROK, &id),
        Err(SessionError::NoSuchRequest { sequence: b })
    );
    p.smsc
        .send_response(
            p.now,
            a,
            CommandStatus::ESME_RSUBMITFAIL,
            &Body::empty(CommandId::SubmitSmResp),
        )
        .unwrap();
    assert_eq!(
        p.smsc_to_esme(),
        [
            Seen::Response(
                CommandId::SubmitSmResp,
                CommandStatus::ESME_ROK,
                CommandId::SubmitSm
            ),
            Seen::Response(
                CommandId::SubmitSmResp,
                CommandStatus::ESME_RSUBMITFAIL,
                CommandId::SubmitSm
            ),
        ]
    );
    assert_eq!(p.esme.outstanding(), 0);
    // A response nobody waits for is dropped.
    p.smsc.inbound.insert(
        99,
        Pending {
            command: CommandId::SubmitSm,
            release_at: None,
        },
    );
    p.smsc
        .send_response(p.now, SequenceNumber(99), CommandStatus::ESME_ROK, &id)
        .unwrap();
    assert_eq!(
        p.smsc_to_esme(),
        [Seen::Handled(Handled::UnexpectedResponse)]
    );
    // Sequence numbers wrap 0x7FFFFFFF -> 1.
    p.esme.next_seq = SequenceNumber(SequenceNumber::MAX);
    let a = p
        .esme
        .send_request(p.now, &Body::SubmitSm(submit()))
        .unwrap();
    let b = p
        .esme
        .send_request(p.now, &Body::SubmitSm(submit()))
        .unwrap();
    assert_eq!((a.0, b.0), (SequenceNumber::MAX, 1));
}

#[test]
fn window_full() {
    let cfg = SessionConfig {
        window: 2,
        ..quiet()
    };
    let mut p = Pair::new(cfg, quiet());
    p.bind(CommandId::BindTransmitter);
    assert_eq!(p.esme.window_available(), 2);
    let a = p
        .esme
        .send_request(p.now, &Body::SubmitSm(submit()))
        .unwrap();
    p.esme
        .send_request(p.now, &Body::SubmitSm(submit()))
        .unwrap();
    assert_eq!(
        p.esme.send_request(p.now, &Body::SubmitSm(submit())),
        Err(SessionError::WindowFull { window: 2 })
    );
    p.esme_to_smsc();
    p.smsc
        .send_response(
            p.now,
            a,
            CommandStatus::ESME_ROK,
            &Body::empty(CommandId::SubmitSmResp),
        )
        .unwrap();
    p.smsc_to_esme();
    assert_eq!(p.esme.window_available(), 1);
    assert!(
        p.esme
            .send_request(p.now, &Body::SubmitSm(submit()))
            .is_ok()
    );
}

#[test]
fn inbound_window_answers_msgqful() {
    let cfg = SessionConfig {
        inbound_window: 1,
        ..quiet()
    };
    let mut p = Pair::new(quiet(), cfg);
    p.bind(CommandId::BindTransceiver);
    p.esme
        .send_request(p.now, &Body::SubmitSm(submit()))
        .unwrap();
    let b = p
        .esme
        .send_request(p.now, &Body::SubmitSm(submit()))
        .unwrap();
    assert_eq!(
        p.esme_to_smsc()[1],
        Seen::Handled(Handled::Rejected(CommandStatus::ESME_RMSGQFUL))
    );
    assert_eq!(
        sent(&mut p.smsc),
        [(CommandId::SubmitSmResp, CommandStatus::ESME_RMSGQFUL, b)]
    );
}

#[test]
fn response_timeout() {
    let mut p = Pair::new(quiet(), quiet());
    p.bind(CommandId::BindTransceiver);
    let a = p
        .esme
        .send_request(p.now, &Body::SubmitSm(submit()))
        .unwrap();
    p.esme_to_smsc();
    assert_eq!(p.esme.poll_timeout(), Some(p.now + Duration::from_secs(30)));
    p.advance(Duration::from_millis(29_999));
    assert!(events(&mut p.esme).is_empty());
    p.advance(Duration::from_millis(1));
    assert_eq!(
        events(&mut p.esme),
        [Event::RequestFailed {
            sequence: a,
            command: CommandId::SubmitSm,
            reason: FailReason::Timeout
        }]
    );
    assert_eq!(p.esme.outstanding(), 0);
    assert_eq!(
        p.esme.state(),
        SessionState::BoundTrx,
        "a timeout alone does not unbind"
    );
    // A late response is dropped.
    p.smsc
        .send_response(
            p.now,
            a,
            CommandStatus::ESME_ROK,
            &Body::empty(CommandId::SubmitSmResp),
        )
        .unwrap();
    assert_eq!(
        p.smsc_to_esme(),
        [Seen::Handled(Handled::UnexpectedResponse)]
    );
}

#[test]
fn response_timeout_unbinds_when_configured() {
    let smsc = SessionConfig {
        unbind_on_response_timeout: true,
        ..quiet()
    };
    let mut p = Pair::new(quiet(), smsc);
    p.bind(CommandId::BindTransceiver);
    let d = p
        .smsc
        .send_request(p.now, &Body::DeliverSm(submit()))
        .unwrap();
    p.smsc_to_esme();
    p.advance(Duration::from_secs(30));
    assert_eq!(
        events(&mut p.smsc),
        [
            Event::RequestFailed {
                sequence: d,
                command: CommandId::DeliverSm,
                reason: FailReason::Timeout
            },
            Event::Unbinding { by_peer: false }
        ]
    );
    assert_eq!(p.smsc.state(), SessionState::Unbound);
    assert_eq!(p.smsc_to_esme(), [Seen::Handled(Handled::Unbind)]);
    assert_eq!(
        p.esme_to_smsc(),
        [Seen::Handled(Handled::OwnResponse(CommandId::UnbindResp))]
    );
    assert_eq!(p.smsc.state(), SessionState::Closed);
}

#[test]
fn enquire_link_on_idle_then_dead_link() {
    let cfg = SessionConfig {
        enquire_link_interval: Some(Duration::from_secs(30)),
        inactivity_timeout: None,
        ..SessionConfig::default()
    };
    let mut p = Pair::new(cfg, quiet());
    p.bind(CommandId::BindTransceiver);
    assert_eq!(p.esme.poll_timeout(), Some(p.now + Duration::from_secs(30)));
    p.advance(Duration::from_secs(30));
    // Sent by the session, answered by the peer's session, absorbed by ours.
    assert_eq!(p.esme_to_smsc(), [Seen::Handled(Handled::EnquireLink)]);
    assert_eq!(
        p.smsc_to_esme(),
        [Seen::Handled(Handled::OwnResponse(
            CommandId::EnquireLinkResp
        ))]
    );
    // Traffic from the peer resets the idle timer.
    p.advance(Duration::from_secs(20));
    let d = p
        .smsc
        .send_request(p.now, &Body::DeliverSm(submit()))
        .unwrap();
    p.smsc_to_esme();
    p.esme
        .send_response(
            p.now,
            d,
            CommandStatus::ESME_ROK,
            &Body::empty(CommandId::DeliverSmResp),
        )
        .unwrap();
    p.esme_to_smsc();
    p.advance(Duration::from_secs(29));
    assert!(p.esme.transmit().is_empty());
    p.advance(Duration::from_secs(1));
    assert_eq!(sent(&mut p.esme)[0].0, CommandId::EnquireLink);
    // No answer this time: the link is dead after response_timeout.
    p.advance(Duration::from_secs(30));
    assert_eq!(p.esme.state(), SessionState::Closed);
    assert_eq!(
        events(&mut p.esme),
        [Event::Closed {
            reason: CloseReason::EnquireLinkTimeout
        }]
    );
}

#[test]
fn inactivity_timeout_unbinds() {
    let cfg = SessionConfig {
        enquire_link_interval: Some(Duration::from_secs(30)),
        inactivity_timeout: Some(Duration::from_secs(100)),
        ..SessionConfig::default()
    };
    let mut p = Pair::new(quiet(), cfg);
    p.bind(CommandId::BindTransceiver);
    // enquire_links flow, but they do not count as activity.
    for _ in 0..3 {
        p.advance(Duration::from_secs(30));
        assert_eq!(p.smsc_to_esme(), [Seen::Handled(Handled::EnquireLink)]);
        p.esme_to_smsc();
    }
    assert_eq!(p.smsc.state(), SessionState::BoundTrx);
    p.advance(Duration::from_secs(10));
    assert_eq!(
        events(&mut p.smsc),
        [Event::Inactive, Event::Unbinding { by_peer: false }]
    );
    assert_eq!(p.smsc_to_esme(), [Seen::Handled(Handled::Unbind)]);
    assert_eq!(p.esme.state(), SessionState::Unbound);
    assert_eq!(events(&mut p.esme), [Event::Unbinding { by_peer: true }]);
    p.esme_to_smsc();
    assert_eq!(p.smsc.state(), SessionState::Closed);
    assert_eq!(
        events(&mut p.smsc),
        [Event::Closed {
            reason: CloseReason::Unbound
        }]
    );
    // The initiator closes TCP; the other side sees the close.
    p.esme.handle_close(p.now);
    assert_eq!(
        events(&mut p.esme),
        [Event::Closed {
            reason: CloseReason::Unbound
        }]
    );
}

#[test]
fn unbind_handshake_both_directions() {
    // ESME initiates.
    let mut p = Pair::new(quiet(), quiet());
    p.bind(CommandId::BindTransceiver);
    let pending = p
        .esme
        .send_request(p.now, &Body::SubmitSm(submit()))
        .unwrap();
    p.esme.unbind(p.now).unwrap();
    assert_eq!(p.esme.state(), SessionState::Unbound);
    assert!(matches!(
        p.esme.send_request(p.now, &Body::SubmitSm(submit())),
        Err(SessionError::InvalidState { .. })
    ));
    p.esme_to_smsc();
    assert_eq!(p.smsc.state(), SessionState::Unbound);
    // The SMSC may still not send new requests.
    assert!(
        p.smsc
            .send_request(p.now, &Body::DeliverSm(submit()))
            .is_err()
    );
    p.smsc_to_esme();
    assert_eq!(p.esme.state(), SessionState::Closed);
    assert_eq!(
        events(&mut p.esme),
        [
            Event::Unbinding { by_peer: false },
            Event::RequestFailed {
                sequence: pending,
                command: CommandId::SubmitSm,
                reason: FailReason::Closed
            },
            Event::Closed {
                reason: CloseReason::Unbound
            }
        ]
    );
    // The SMSC closes by itself if the ESME never drops the connection.
    p.advance(Duration::from_secs(30));
    assert_eq!(p.smsc.state(), SessionState::Closed);

    // SMSC initiates; no unbind_resp comes back.
    let mut p = Pair::new(quiet(), quiet());
    p.bind(CommandId::BindReceiver);
    p.smsc.unbind(p.now).unwrap();
    assert_eq!(p.smsc_to_esme(), [Seen::Handled(Handled::Unbind)]);
    p.advance(Duration::from_secs(30));
    assert_eq!(
        events(&mut p.smsc).last(),
        Some(&Event::Closed {
            reason: CloseReason::UnbindTimeout
        })
    );
    // Unbinding an unbound session is misuse.
    let mut s = Session::new(Role::Esme, quiet(), p.now);
    assert!(s.unbind(p.now).is_err());
}

#[test]
fn generic_nack_answers_a_request() {
    let mut p = Pair::new(quiet(), quiet());
    p.bind(CommandId::BindTransceiver);
    let a = p
        .esme
        .send_request(p.now, &Body::SubmitSm(submit()))
        .unwrap();
    p.esme_to_smsc();
    p.smsc
        .send_response(p.now, a, CommandStatus::ESME_RSYSERR, &Body::GenericNack)
        .unwrap();
    assert_eq!(
        p.smsc_to_esme(),
        [Seen::Response(
            CommandId::GenericNack,
            CommandStatus::ESME_RSYSERR,
            CommandId::SubmitSm
        )]
    );
    assert_eq!(p.esme.outstanding(), 0);
}

#[test]
fn malformed_input_is_answered_per_spec() {
    let now = t0();
    let mut s = Session::new(Role::Smsc, quiet(), now);
    s.force_state(SessionState::BoundTrx);
    // Unknown command id: generic_nack(ESME_RINVCMDID) with the PDU's sequence number.
    let unknown = [0, 0, 0, 16, 0, 0, 0, 0x99, 0, 0, 0, 0, 0, 0, 0, 5];
    assert_eq!(
        s.handle_frame(now, &unknown),
        Inbound::Handled(Handled::Rejected(CommandStatus::ESME_RINVCMDID))
    );
    assert_eq!(
        sent(&mut s),
        [(
            CommandId::GenericNack,
            CommandStatus::ESME_RINVCMDID,
            SequenceNumber(5)
        )]
    );
    // Malformed body: the matching resp with the field's status.
    let mut bad = Vec::new();
    Pdu::request(SequenceNumber(6), Body::SubmitSm(submit()))
        .encode(&mut bad)
        .unwrap();
    let at = 16 + 1 + 2; // source_addr
    bad.splice(at..at + 5, [b'9'; 25]);
    let n = bad.len() as u32;
    bad[..4].copy_from_slice(&n.to_be_bytes());
    assert!(
        matches!(s.handle_frame(now, &bad), Inbound::Handled(Handled::Malformed(e)) if e.field == crate::Field::SourceAddr)
    );
    assert_eq!(
        sent(&mut s),
        [(
            CommandId::SubmitSmResp,
            CommandStatus::ESME_RINVSRCADR,
            SequenceNumber(6)
        )]
    );
    // Bad TLV length: ESME_RINVPARLEN.
    let tl = [Tlv::new(TlvTag(0x1403), b"x")];
    let mut bad = Vec::new();
    Pdu::request(
        SequenceNumber(7),
        Body::SubmitSm(SubmitSm {
            tlvs: Tlvs::from_slice(&tl),
            ..submit()
        }),
    )
    .encode(&mut bad)
    .unwrap();
    let l = bad.len();
    bad[l - 5..l - 1].copy_from_slice(&[0x04, 0x27, 0, 2]); // message_state with length 2 (…then 1 octet)
    assert!(matches!(
        s.handle_frame(now, &bad),
        Inbound::Handled(Handled::Malformed(_))
    ));
    assert_eq!(sent(&mut s)[0].1, CommandStatus::ESME_RINVPARLEN);
    // A command_length the framer rejects: generic_nack(ESME_RINVCMDLEN) and close.
    let mut f = Framer::new(1024);
    f.push(&[0, 0, 0x10, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 8]);
    let e = f.next_frame().unwrap_err();
    s.handle_frame_error(now, e);
    assert_eq!(
        sent(&mut s),
        [(
            CommandId::GenericNack,
            CommandStatus::ESME_RINVCMDLEN,
            SequenceNumber(8)
        )]
    );
    assert_eq!(s.state(), SessionState::Closed);
    assert_eq!(
        events(&mut s),
        [Event::Closed {
            reason: CloseReason::FramingError
        }]
    );

    // ESME side: a malformed alert_notification (no response exists) gets generic_nack.
    let mut e = Session::new(Role::Esme, quiet(), now);
    e.force_state(SessionState::BoundRx);
    let mut bad = Vec::new();
    Pdu::request(SequenceNumber(9), Body::empty(CommandId::AlertNotification))
        .encode(&mut bad)
        .unwrap();
    bad.truncate(bad.len() - 1);
    let n = bad.len() as u32;
    bad[..4].copy_from_slice(&n.to_be_bytes());
    assert!(matches!(
        e.handle_frame(now, &bad),
        Inbound::Handled(Handled::Malformed(_))
    ));
    assert_eq!(
        sent(&mut e),
        [(
            CommandId::GenericNack,
            CommandStatus::ESME_RINVDSTADR,
            SequenceNumber(9)
        )]
    );
    // A malformed response fails the request it answers.
    e.force_state(SessionState::BoundTrx);
    let q = e
        .send_request(now, &Body::empty(CommandId::QuerySm))
        .unwrap();
    let _ = sent(&mut e);
    let mut bad = Vec::new();
    Pdu {
        status: CommandStatus::ESME_ROK,
        sequence: q,
        body: Body::empty(CommandId::QuerySmResp),
    }
    .encode(&mut bad)
    .unwrap();
    bad.pop();
    let n = bad.len() as u32;
    bad[..4].copy_from_slice(&n.to_be_bytes());
    assert!(matches!(
        e.handle_frame(now, &bad),
        Inbound::Handled(Handled::Malformed(_))
    ));
    assert!(matches!(
        events(&mut e)[..],
        [Event::RequestFailed {
            command: CommandId::QuerySm,
            reason: FailReason::MalformedResponse(_),
            ..
        }]
    ));
}

#[test]
fn throttle_reject_and_pace() {
    use crate::throttle::{ThrottleAction, ThrottleConfig};
    let reject = SessionConfig {
        throttle: Some(ThrottleConfig {
            per_second: 10,
            burst: 1,
            action: ThrottleAction::Reject,
        }),
        ..quiet()
    };
    let mut p = Pair::new(quiet(), reject);
    p.bind(CommandId::BindTransceiver);
    p.esme
        .send_request(p.now, &Body::SubmitSm(submit()))
        .unwrap();
    let b = p
        .esme
        .send_request(p.now, &Body::SubmitSm(submit()))
        .unwrap();
    let seen = p.esme_to_smsc();
    assert!(matches!(seen[0], Seen::Request(CommandId::SubmitSm, _)));
    assert_eq!(
        seen[1],
        Seen::Handled(Handled::Rejected(CommandStatus::ESME_RTHROTTLED))
    );
    assert_eq!(
        sent(&mut p.smsc),
        [(CommandId::SubmitSmResp, CommandStatus::ESME_RTHROTTLED, b)]
    );
    // enquire_link is never throttled.
    p.esme.send_request(p.now, &Body::EnquireLink).unwrap();
    assert_eq!(p.esme_to_smsc(), [Seen::Handled(Handled::EnquireLink)]);

    let pace = SessionConfig {
        throttle: Some(ThrottleConfig {
            per_second: 10,
            burst: 1,
            action: ThrottleAction::Pace,
        }),
        ..quiet()
    };
    let mut p = Pair::new(quiet(), pace);
    p.bind(CommandId::BindTransceiver);
    let a = p
        .esme
        .send_request(p.now, &Body::SubmitSm(submit()))
        .unwrap();
    let b = p
        .esme
        .send_request(p.now, &Body::SubmitSm(submit()))
        .unwrap();
    assert_eq!(p.esme_to_smsc().len(), 2);
    let ok = Body::empty(CommandId::SubmitSmResp);
    p.smsc
        .send_response(p.now, a, CommandStatus::ESME_ROK, &ok)
        .unwrap();
    p.smsc
        .send_response(p.now, b, CommandStatus::ESME_ROK, &ok)
        .unwrap();
    assert_eq!(sent(&mut p.smsc).len(), 1, "the second response is held");
    assert_eq!(
        p.smsc.poll_timeout(),
        Some(p.now + Duration::from_millis(100))
    );
    p.advance(Duration::from_millis(99));
    assert!(p.smsc.transmit().is_empty());
    p.advance(Duration::from_millis(1));
    assert_eq!(
        sent(&mut p.smsc),
        [(CommandId::SubmitSmResp, CommandStatus::ESME_ROK, b)]
    );
}

#[test]
fn outbind_then_bind_receiver() {
    let mut p = Pair::new(quiet(), quiet());
    p.smsc
        .send_request(
            p.now,
            &Body::Outbind(crate::Outbind {
                system_id: b"SMSC",
                password: b"pw",
            }),
        )
        .unwrap();
    assert_eq!(
        p.smsc_to_esme(),
        [Seen::Request(CommandId::Outbind, SequenceNumber(1))]
    );
    assert_eq!(p.smsc.outstanding(), 0, "outbind has no response");
    p.bind(CommandId::BindReceiver);
}

#[test]
fn deliver_sm_receipt_end_to_end() {
    let mut p = Pair::new(quiet(), quiet());
    p.bind(CommandId::BindTransceiver);
    let rb = ReceiptBuilder {
        id: b"abc-1",
        submitted: 1,
        delivered: 1,
        submit_date: b"2611261903",
        done_date: b"2611261904",
        state: MessageState::Delivered,
        err: 0,
        text: b"hello",
    };
    let mut text = Vec::new();
    rb.write_text(&mut text);
    let (mut idb, mut stb) = (Vec::new(), [0]);
    let tlvs = rb.tlvs(&mut idb, &mut stb);
    let dlr = SubmitSm {
        esm_class: 0x04,
        short_message: &text,
        tlvs: Tlvs::from_slice(&tlvs),
        ..submit()
    };
    let seq = p.smsc.send_request(p.now, &Body::DeliverSm(dlr)).unwrap();
    let mut f = Framer::default();
    f.push(p.smsc.transmit());
    let frame = f.next_frame().unwrap().unwrap();
    let Inbound::Request(pdu) = p.esme.handle_frame(p.now, frame) else {
        panic!()
    };
    let Body::DeliverSm(d) = pdu.body else {
        panic!()
    };
    let r = Receipt::from_deliver_sm(&d).unwrap();
    assert_eq!(r.id, Some(&b"abc-1"[..]));
    assert_eq!(r.state(), Some(MessageState::Delivered));
    assert_eq!(r.message_state, Some(2));
    p.esme
        .send_response(
            p.now,
            seq,
            CommandStatus::ESME_ROK,
            &Body::empty(CommandId::DeliverSmResp),
        )
        .unwrap();
}

#[test]
fn expiry_queue_stays_bounded_behind_a_stuck_request() {
    let mut p = Pair::new(quiet(), quiet());
    p.bind(CommandId::BindTransceiver);
    // The first submit is never answered; thousands of later ones are.
    let stuck = p
        .esme
        .send_request(p.now, &Body::SubmitSm(submit()))
        .unwrap();
    p.esme_to_smsc();
    for _ in 0..5_000 {
        let s = p
            .esme
            .send_request(p.now, &Body::SubmitSm(submit()))
            .unwrap();
        p.esme_to_smsc();
        p.smsc
            .send_response(
                p.now,
                s,
                CommandStatus::ESME_ROK,
                &Body::empty(CommandId::SubmitSmResp),
            )
            .unwrap();
        p.smsc_to_esme();
    }
    assert_eq!(p.esme.outstanding(), 1);
    assert!(p.esme.expiry.len() <= 2 + 64 + 1, "{}", p.esme.expiry.len());
    p.advance(Duration::from_secs(30));
    assert_eq!(
        events(&mut p.esme),
        [Event::RequestFailed {
            sequence: stuck,
            command: CommandId::SubmitSm,
            reason: FailReason::Timeout
        }]
    );
}
