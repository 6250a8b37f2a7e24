//! Criterion micro-benchmarks for the SMPP codec: decode and encode of submit_sm and
//! deliver_sm (a delivery receipt with TLVs), one PDU per iteration. Goal: ≥ 10 M submit_sm
//! decodes/s per core (smpp34 publishes 6.6 M/s decode, 12.3 M/s encode).
//! Run: `cargo bench -p siphon-smpp --bench codec -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use siphon_smpp::{
    Bind, BindResp, Body, CommandStatus, Inbound, MessageIdResp, Pdu, Receipt, Role,
    SequenceNumber, Session, SessionConfig, SubmitSm, Tlv, TlvTag, Tlvs, frame_len,
};

const TEXT: &[u8] = b"Your verification code is 493021. It expires in 10 minutes. \
Do not share this code with anyone, including people claiming to be from us.";

const SUBMIT_TLVS: [Tlv<'static>; 2] = [
    Tlv::new(TlvTag::USER_MESSAGE_REFERENCE, &[0, 42]),
    Tlv::new(TlvTag::SOURCE_PORT, &[0x0B, 0x84]),
];

const DLR: &[u8] = b"id:8f3a9c2e71d04b5a sub:001 dlvrd:001 submit date:2611261903 \
done date:2611261904 stat:DELIVRD err:000 text:Your verification c";

const DLR_TLVS: [Tlv<'static>; 3] = [
    Tlv::new(TlvTag::RECEIPTED_MESSAGE_ID, b"8f3a9c2e71d04b5a\0"),
    Tlv::new(TlvTag::MESSAGE_STATE, &[2]),
    Tlv::new(TlvTag::NETWORK_ERROR_CODE, &[3, 0, 0]),
];

fn submit_sm() -> Pdu<'static> {
    Pdu::request(
        SequenceNumber(123_456),
        Body::SubmitSm(SubmitSm {
            service_type: b"",
            source_addr_ton: 5,
            source_addr_npi: 0,
            source_addr: b"SiphonBank",
            dest_addr_ton: 1,
            dest_addr_npi: 1,
            destination_addr: b"447700900123",
            registered_delivery: 1,
            short_message: TEXT,
            tlvs: Tlvs::from_slice(&SUBMIT_TLVS),
            ..SubmitSm::default()
        }),
    )
}

fn deliver_sm() -> Pdu<'static> {
    Pdu::request(
        SequenceNumber(654_321),
        Body::DeliverSm(SubmitSm {
            source_addr_ton: 1,
            source_addr_npi: 1,
            source_addr: b"447700900123",
            dest_addr_ton: 5,
            dest_addr_npi: 0,
            destination_addr: b"SiphonBank",
            esm_class: 0x04,
            short_message: DLR,
            tlvs: Tlvs::from_slice(&DLR_TLVS),
            ..SubmitSm::default()
        }),
    )
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("smpp");
    g.throughput(Throughput::Elements(1));
    for (name, pdu) in [("submit_sm", submit_sm()), ("deliver_sm", deliver_sm())] {
        let mut wire = Vec::new();
        pdu.encode(&mut wire).expect("bench PDU encodes");
        g.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| Pdu::decode(black_box(&wire)).expect("bench PDU decodes"))
        });
        // Framing + decode, as the reactor does it on a receive buffer.
        g.bench_function(format!("frame+decode/{name}"), |b| {
            b.iter(|| {
                let buf = black_box(&wire[..]);
                let n = frame_len(buf, 65_536)
                    .expect("valid length")
                    .expect("complete");
                Pdu::decode(&buf[..n]).expect("bench PDU decodes")
            })
        });
        let mut out = Vec::with_capacity(512);
        g.bench_function(format!("encode/{name}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&pdu).encode(&mut out).expect("bench PDU encodes")
            })
        });
    }
    let mut wire = Vec::new();
    deliver_sm().encode(&mut wire).expect("bench PDU encodes");
    g.bench_function("decode+receipt/deliver_sm", |b| {
        b.iter(|| {
            let pdu = Pdu::decode(black_box(&wire)).expect("bench PDU decodes");
            match pdu.body {
                Body::DeliverSm(d) => Receipt::from_deliver_sm(&d),
                _ => None,
            }
        })
    });
    g.finish();
}

/// One submit_sm through an SMSC-side session: state check, decode, window bookkeeping,
/// submit_sm_resp encode into the transmit buffer.
fn bench_session(c: &mut Criterion) {
    #[expect(clippy::disallowed_methods, reason = "bench: one real clock origin")]
    let now = std::time::Instant::now();
    let mut s = Session::new(Role::Smsc, SessionConfig::default(), now);
    let mut bind = Vec::new();
    Pdu::request(
        SequenceNumber(1),
        Body::BindTransceiver(Bind {
            system_id: b"bench",
            interface_version: 0x34,
            ..Bind::default()
        }),
    )
    .encode(&mut bind)
    .expect("bind encodes");
    let Inbound::Request(b) = s.handle_frame(now, &bind) else {
        panic!("bind not delivered")
    };
    let resp = Body::BindTransceiverResp(BindResp {
        system_id: b"SMSC",
        tlvs: Tlvs::default(),
    });
    s.send_response(now, b.sequence, CommandStatus::ESME_ROK, &resp)
        .expect("bind answered");
    let mut wire = Vec::new();
    submit_sm().encode(&mut wire).expect("bench PDU encodes");
    let ack = Body::SubmitSmResp(MessageIdResp {
        message_id: b"8f3a9c2e71d04b5a",
    });
    let mut g = c.benchmark_group("session");
    g.throughput(Throughput::Elements(1));
    g.bench_function("submit_sm+resp", |bench| {
        bench.iter(|| {
            let Inbound::Request(p) = s.handle_frame(now, black_box(&wire)) else {
                panic!("submit_sm not delivered")
            };
            s.send_response(now, p.sequence, CommandStatus::ESME_ROK, &ack)
                .expect("answered");
            let n = s.transmit().len();
            s.advance_transmit(n);
        })
    });
    g.finish();
}

criterion_group!(benches, bench, bench_session);
criterion_main!(benches);
