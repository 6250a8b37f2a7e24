//! Fuzz target: the stream framer feeding an SMSC-side session (SMPP 3.4 §3.2 framing, §2
//! session rules). The input is split into reads by its first byte; every frame goes through
//! the session, which must answer or absorb it without panicking, whatever the bytes.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use siphon_smpp::{
    Bind, BindResp, Body, CommandStatus, Framer, Inbound, Pdu, Role, SequenceNumber, Session,
    SessionConfig, Tlvs,
};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    #[allow(clippy::disallowed_methods, reason = "fuzz harness: one real origin")]
    let mut now = Instant::now();
    let mut session = Session::new(Role::Smsc, SessionConfig::default(), now);
    // Bind first so most PDUs reach the bound-state rules.
    let mut bind = Vec::new();
    Pdu::request(
        SequenceNumber(1),
        Body::BindTransceiver(Bind {
            system_id: b"fuzz",
            password: b"pw",
            interface_version: 0x34,
            ..Bind::default()
        }),
    )
    .encode(&mut bind)
    .expect("bind encodes");
    let mut framer = Framer::new(4096);
    framer.push(&bind);
    let frame = framer.next_frame().expect("valid").expect("complete");
    if let Inbound::Request(p) = session.handle_frame(now, frame) {
        let resp = Body::BindTransceiverResp(BindResp {
            system_id: b"SMSC",
            tlvs: Tlvs::default(),
        });
        session
            .send_response(now, p.sequence, CommandStatus::ESME_ROK, &resp)
            .expect("bind answered");
    }
    let chunk = usize::from(split).max(1);
    for read in rest.chunks(chunk) {
        framer.push(read);
        loop {
            match framer.next_frame() {
                Ok(Some(f)) => {
                    if let Inbound::Request(p) = session.handle_frame(now, f) {
                        // Answer what can be answered, as an application would.
                        if let Some(r) = p.empty_response(CommandStatus::ESME_ROK) {
                            let _ = session.send_response(now, p.sequence, r.status, &r.body);
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    session.handle_frame_error(now, e);
                    break;
                }
            }
        }
        while session.poll_event().is_some() {}
        let n = session.transmit().len();
        session.advance_transmit(n);
        now += Duration::from_millis(u64::from(split) * 100);
        session.handle_timeout(now);
        let _ = session.poll_timeout();
    }
});
