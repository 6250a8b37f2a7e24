//! Round trips for every SMPP 3.4 PDU and the malformed-input rules of the decoder.

use super::*;
use crate::codec::List;
use crate::tlv::{Tlv, TlvTag, Tlvs};

const TLVS: [Tlv<'static>; 4] = [
    Tlv::new(TlvTag::SAR_MSG_REF_NUM, &[0x01, 0x02]),
    Tlv::new(TlvTag::SAR_TOTAL_SEGMENTS, &[2]),
    Tlv::new(TlvTag::SAR_SEGMENT_SEQNUM, &[1]),
    Tlv::new(TlvTag(0x1403), b"vendor"),
];

fn submit() -> SubmitSm<'static> {
    SubmitSm {
        service_type: b"CMT",
        source_addr_ton: 1,
        source_addr_npi: 1,
        source_addr: b"447700900000",
        dest_addr_ton: 1,
        dest_addr_npi: 1,
        destination_addr: b"447700900001",
        esm_class: 0x40,
        protocol_id: 0,
        priority_flag: 1,
        schedule_delivery_time: b"261126190300000+",
        validity_period: b"000001000000000R",
        registered_delivery: 1,
        replace_if_present_flag: 0,
        data_coding: 8,
        sm_default_msg_id: 0,
        short_message: b"\x05\x00\x03\x01\x02\x01hello",
        tlvs: Tlvs::from_slice(&TLVS),
    }
}

/// One sample body for every command id.
pub(crate) fn samples() -> Vec<Body<'static>> {
    const DESTS: [Dest<'static>; 2] = [
        Dest::Sme {
            ton: 1,
            npi: 1,
            addr: b"447700900002",
        },
        Dest::DistributionList(b"friends"),
    ];
    const UNSUCCESS: [UnsuccessSme<'static>; 1] = [UnsuccessSme {
        ton: 1,
        npi: 1,
        addr: b"447700900002",
        error_status_code: CommandStatus::ESME_RINVDSTADR,
    }];
    const IFV: [Tlv<'static>; 1] = [Tlv::new(TlvTag::SC_INTERFACE_VERSION, &[0x34])];
    const PAYLOAD: [Tlv<'static>; 1] = [Tlv::new(TlvTag::MESSAGE_PAYLOAD, &[b'x'; 300])];
    const DFR: [Tlv<'static>; 1] = [Tlv::new(TlvTag::DELIVERY_FAILURE_REASON, &[1])];
    const MAS: [Tlv<'static>; 1] = [Tlv::new(TlvTag::MS_AVAILABILITY_STATUS, &[0])];
    let bind = Bind {
        system_id: b"esme01",
        password: b"secret",
        system_type: b"VMA",
        interface_version: 0x34,
        addr_ton: 1,
        addr_npi: 1,
        address_range: b"^4477",
    };
    let bind_resp = BindResp {
        system_id: b"SMSC",
        tlvs: Tlvs::from_slice(&IFV),
    };
    let id = MessageIdResp {
        message_id: b"0123456789abcdef",
    };
    let mut deliver = submit();
    deliver.schedule_delivery_time = b"";
    deliver.validity_period = b"";
    deliver.esm_class = 0x04;
    let all = vec![
        Body::GenericNack,
        Body::BindReceiver(bind),
        Body::BindReceiverResp(bind_resp),
        Body::BindTransmitter(bind),
        Body::BindTransmitterResp(bind_resp),
        Body::BindTransceiver(bind),
        Body::BindTransceiverResp(bind_resp),
        Body::QuerySm(QuerySm {
            message_id: b"abc",
            source_addr_ton: 1,
            source_addr_npi: 1,
            source_addr: b"4477",
        }),
        Body::QuerySmResp(QuerySmResp {
            message_id: b"abc",
            final_date: b"261126190300004+",
            message_state: 2,
            error_code: 0,
        }),
        Body::SubmitSm(submit()),
        Body::SubmitSmResp(id),
        Body::DeliverSm(deliver),
        Body::DeliverSmResp(MessageIdResp::default()),
        Body::Unbind,
        Body::UnbindResp,
        Body::ReplaceSm(ReplaceSm {
            message_id: b"abc",
            source_addr_ton: 1,
            source_addr_npi: 1,
            source_addr: b"4477",
            schedule_delivery_time: b"",
            validity_period: b"261126190300000+",
            registered_delivery: 1,
            sm_default_msg_id: 0,
            short_message: b"replaced",
        }),
        Body::ReplaceSmResp,
        Body::CancelSm(CancelSm {
            service_type: b"",
            message_id: b"abc",
            source_addr_ton: 1,
            source_addr_npi: 1,
            source_addr: b"4477",
            dest_addr_ton: 1,
            dest_addr_npi: 1,
            destination_addr: b"4478",
        }),
        Body::CancelSmResp,
        Body::Outbind(Outbind {
            system_id: b"SMSC",
            password: b"pw",
        }),
        Body::EnquireLink,
        Body::EnquireLinkResp,
        Body::SubmitMulti(SubmitMulti {
            service_type: b"",
            source_addr_ton: 1,
            source_addr_npi: 1,
            source_addr: b"4477",
            dests: List::from_slice(&DESTS),
            esm_class: 0,
            protocol_id: 0,
            priority_flag: 0,
            schedule_delivery_time: b"",
            validity_period: b"",
            registered_delivery: 0,
            replace_if_present_flag: 0,
            data_coding: 0,
            sm_default_msg_id: 0,
            short_message: b"hi all",
            tlvs: Tlvs::default(),
        }),
        Body::SubmitMultiResp(SubmitMultiResp {
            message_id: b"m1",
            unsuccess: List::from_slice(&UNSUCCESS),
        }),
        Body::AlertNotification(AlertNotification {
            source_addr_ton: 1,
            source_addr_npi: 1,
            source_addr: b"4477",
            esme_addr_ton: 1,
            esme_addr_npi: 1,
            esme_addr: b"esme",
            tlvs: Tlvs::from_slice(&MAS),
        }),
        Body::DataSm(DataSm {
            service_type: b"WAP",
            source_addr_ton: 1,
            source_addr_npi: 1,
            source_addr: b"a-very-long-data-sm-source-address-beyond-twenty",
            dest_addr_ton: 1,
            dest_addr_npi: 1,
            destination_addr: b"4478",
            esm_class: 0,
            registered_delivery: 0,
            data_coding: 0,
            tlvs: Tlvs::from_slice(&PAYLOAD),
        }),
        Body::DataSmResp(DataSmResp {
            message_id: b"d1",
            tlvs: Tlvs::from_slice(&DFR),
        }),
    ];
    all
}

#[test]
fn every_pdu_round_trips() {
    let all = samples();
    let mut ids: Vec<_> = all.iter().map(Body::command_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), CommandId::ALL.len(), "a sample per command id");
    for (i, body) in all.into_iter().enumerate() {
        let pdu = Pdu::request(SequenceNumber(i as u32 + 1), body);
        let mut buf = vec![0xAA]; // encoding appends
        let n = pdu.encode(&mut buf).unwrap();
        assert_eq!(n, buf.len() - 1);
        let wire = &buf[1..];
        let back = Pdu::decode(wire).unwrap_or_else(|e| panic!("{:?}: {e}", body.command_id()));
        assert_eq!(back, pdu, "{:?}", body.command_id());
        let mut again = Vec::new();
        back.encode(&mut again).unwrap();
        assert_eq!(
            again,
            wire,
            "{:?} re-encodes byte for byte",
            body.command_id()
        );
    }
}

#[test]
fn submit_sm_wire_layout() {
    let pdu = Pdu::request(SequenceNumber(7), Body::EnquireLink);
    let mut b = Vec::new();
    pdu.encode(&mut b).unwrap();
    assert_eq!(b, [0, 0, 0, 16, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 7]);
    let mut s = submit();
    s.tlvs = Tlvs::default();
    s.schedule_delivery_time = b"";
    s.validity_period = b"";
    s.short_message = b"hi";
    s.service_type = b"";
    s.source_addr = b"1";
    s.destination_addr = b"2";
    let mut b = Vec::new();
    Pdu::request(SequenceNumber(1), Body::SubmitSm(s))
        .encode(&mut b)
        .unwrap();
    let body = [
        0, 1, 1, b'1', 0, 1, 1, b'2', 0, 0x40, 0, 1, 0, 0, 1, 0, 8, 0, 2, b'h', b'i',
    ];
    assert_eq!(&b[16..], body);
    assert_eq!(b[3] as usize, 16 + body.len());
}

#[test]
fn error_responses_without_body() {
    // submit_sm_resp with an error status and no body decodes to an empty body …
    let wire = [0, 0, 0, 16, 0x80, 0, 0, 4, 0, 0, 0, 0x58, 0, 0, 0, 3];
    let pdu = Pdu::decode(&wire).unwrap();
    assert_eq!(pdu.status, CommandStatus::ESME_RTHROTTLED);
    assert_eq!(pdu.body, Body::SubmitSmResp(MessageIdResp::default()));
    // … and encodes back header-only.
    let mut out = Vec::new();
    pdu.encode(&mut out).unwrap();
    assert_eq!(out, wire);
    // With ESME_ROK the body is written even when empty.
    let ok = Pdu {
        status: CommandStatus::ESME_ROK,
        ..pdu
    };
    out.clear();
    ok.encode(&mut out).unwrap();
    assert_eq!(out.len(), 17);
}

fn encode(body: Body<'_>) -> Vec<u8> {
    let mut b = Vec::new();
    Pdu::request(SequenceNumber(1), body)
        .encode(&mut b)
        .unwrap();
    b
}

fn set_len(b: &mut [u8]) {
    let n = b.len() as u32;
    b[..4].copy_from_slice(&n.to_be_bytes());
}

#[test]
fn malformed_fields_are_named() {
    use crate::CommandStatus as S;
    use crate::error::{DecodeErrorKind as K, Field as F};
    let mut s = submit();
    s.tlvs = Tlvs::default();
    let good = encode(Body::SubmitSm(s));
    // Unterminated source_addr (21 octets, no NUL).
    let mut b = good[..16].to_vec();
    b.extend_from_slice(b"CMT\0\x01\x01");
    b.extend_from_slice(&[b'9'; 30]);
    set_len(&mut b);
    let e = Pdu::decode(&b).unwrap_err();
    assert_eq!(
        (e.field, e.kind),
        (F::SourceAddr, K::Unterminated { max: 21 })
    );
    assert_eq!(e.offset, 16 + 6);
    assert_eq!(e.status(), S::ESME_RINVSRCADR);
    // Truncated in the middle of destination_addr.
    let cut = 16 + 4 + 2 + 13 + 2 + 3;
    let mut b = good[..cut].to_vec();
    set_len(&mut b);
    let e = Pdu::decode(&b).unwrap_err();
    assert_eq!((e.field, e.kind), (F::DestinationAddr, K::UnexpectedEnd));
    assert_eq!(e.status(), S::ESME_RINVDSTADR);
    // service_type too long.
    let mut b = good[..16].to_vec();
    b.extend_from_slice(b"TOOLONG\0");
    set_len(&mut b);
    let e = Pdu::decode(&b).unwrap_err();
    assert_eq!(e.field, F::ServiceType);
    assert_eq!(e.status(), S::ESME_RINVSERTYP);
    // Time field of bad length.
    let mut s2 = submit();
    s2.tlvs = Tlvs::default();
    s2.schedule_delivery_time = b"";
    let mut b = encode(Body::SubmitSm(s2));
    let at = 16 + 4 + 2 + 13 + 2 + 13 + 3;
    assert_eq!(b[at], 0, "empty schedule_delivery_time");
    b.splice(at..at, *b"2611");
    set_len(&mut b);
    let e = Pdu::decode(&b).unwrap_err();
    assert_eq!(
        (e.field, e.kind),
        (F::ScheduleDeliveryTime, K::BadTimeLength { len: 4 })
    );
    assert_eq!(e.status(), S::ESME_RINVSCHED);
    // sm_length 255.
    let mut b = good.clone();
    let sm_at = b.len() - s.short_message.len() - 1;
    b[sm_at] = 255;
    let e = Pdu::decode(&b).unwrap_err();
    assert_eq!(e.field, F::SmLength);
    assert_eq!(e.status(), S::ESME_RINVMSGLEN);
    // sm_length past the end.
    let mut b = good.clone();
    b[sm_at] = 200;
    let e = Pdu::decode(&b).unwrap_err();
    assert_eq!((e.field, e.kind), (F::ShortMessage, K::UnexpectedEnd));
    // Trailing junk after a bodyless PDU.
    let mut b = encode(Body::EnquireLink);
    b.push(0);
    set_len(&mut b);
    let e = Pdu::decode(&b).unwrap_err();
    assert_eq!((e.field, e.kind), (F::Body, K::TrailingBytes { count: 1 }));
    assert_eq!(e.status(), S::ESME_RINVCMDLEN);
    // Broken TLV: wrong width for message_state.
    let mut b = good.clone();
    b.extend_from_slice(&[0x04, 0x27, 0, 2, 0, 2]);
    set_len(&mut b);
    let e = Pdu::decode(&b).unwrap_err();
    assert_eq!(e.field, F::Tlv(TlvTag::MESSAGE_STATE));
    assert_eq!(e.status(), S::ESME_RINVPARLEN);
    // Truncated TLV header.
    let mut b = good.clone();
    b.extend_from_slice(&[0x04]);
    set_len(&mut b);
    assert_eq!(
        Pdu::decode(&b).unwrap_err().status(),
        S::ESME_RINVOPTPARSTREAM
    );
    // Unknown command id.
    let mut b = encode(Body::EnquireLink);
    b[7] = 0x77;
    let e = Pdu::decode(&b).unwrap_err();
    assert_eq!(e.kind, K::UnknownCommandId { command_id: 0x77 });
    assert_eq!(e.status(), S::ESME_RINVCMDID);
    // command_length disagreeing with the frame.
    let mut b = encode(Body::EnquireLink);
    b[3] = 17;
    assert_eq!(Pdu::decode(&b).unwrap_err().status(), S::ESME_RINVCMDLEN);
    assert_eq!(
        Pdu::decode(&b[..10]).unwrap_err().status(),
        S::ESME_RINVCMDLEN
    );
    // submit_multi: bad dest_flag and zero destinations.
    let multi = samples()
        .into_iter()
        .find(|b| b.command_id() == CommandId::SubmitMulti)
        .unwrap();
    let mut b = encode(multi);
    let nd = 16 + 1 + 2 + 5;
    assert_eq!(b[nd], 2);
    b[nd + 1] = 9;
    let e = Pdu::decode(&b).unwrap_err();
    assert_eq!(
        (e.field, e.kind),
        (F::DestFlag, K::InvalidValue { value: 9 })
    );
    assert_eq!(e.status(), S::ESME_RINVDESTFLAG);
    let mut b = encode(multi);
    b[nd] = 0;
    assert_eq!(Pdu::decode(&b).unwrap_err().status(), S::ESME_RINVNUMDESTS);
    // short_message and message_payload together.
    let mut b = good.clone();
    b.extend_from_slice(&[0x04, 0x24, 0, 1, b'x']);
    set_len(&mut b);
    let e = Pdu::decode(&b).unwrap_err();
    assert_eq!((e.field, e.kind), (F::ShortMessage, K::PayloadConflict));
    assert_eq!(e.status(), S::ESME_RINVMSGLEN);
    // Bind with a 16-character system_id.
    let mut b = good[..16].to_vec();
    b[7] = 9;
    b.extend_from_slice(b"ABCDEFGHIJKLMNOP\0");
    set_len(&mut b);
    assert_eq!(Pdu::decode(&b).unwrap_err().status(), S::ESME_RINVSYSID);
}

#[test]
fn encoder_enforces_limits() {
    use crate::error::{EncodeErrorKind as K, Field as F};
    let check = |body: Body<'_>, field: F, kind: K| {
        let mut out = vec![1, 2, 3];
        let e = Pdu::request(SequenceNumber(1), body)
            .encode(&mut out)
            .unwrap_err();
        assert_eq!((e.field, e.kind), (field, kind));
        assert_eq!(out, [1, 2, 3], "buffer untouched on error");
    };
    let mut s = submit();
    s.source_addr = b"123456789012345678901";
    check(
        Body::SubmitSm(s),
        F::SourceAddr,
        K::TooLong { len: 22, max: 21 },
    );
    let mut s = submit();
    s.destination_addr = b"12\x0034";
    check(Body::SubmitSm(s), F::DestinationAddr, K::InteriorNul);
    let mut s = submit();
    s.validity_period = b"123";
    check(
        Body::SubmitSm(s),
        F::ValidityPeriod,
        K::BadTimeLength { len: 3 },
    );
    let mut s = submit();
    s.short_message = &[0; 255];
    check(
        Body::SubmitSm(s),
        F::ShortMessage,
        K::TooLong { len: 255, max: 254 },
    );
    let payload = [Tlv::new(TlvTag::MESSAGE_PAYLOAD, b"long")];
    let mut s = submit();
    s.tlvs = Tlvs::from_slice(&payload);
    check(Body::SubmitSm(s), F::ShortMessage, K::PayloadConflict);
    let bind = Bind {
        password: b"123456789",
        ..Bind::default()
    };
    check(
        Body::BindTransceiver(bind),
        F::Password,
        K::TooLong { len: 10, max: 9 },
    );
    let m = SubmitMulti::default();
    check(
        Body::SubmitMulti(m),
        F::NumberOfDests,
        K::TooLong { len: 0, max: 254 },
    );
}

#[test]
fn decode_borrows_from_the_input() {
    let wire = encode(Body::SubmitSm(submit()));
    let pdu = Pdu::decode(&wire).unwrap();
    let Body::SubmitSm(s) = pdu.body else {
        panic!()
    };
    let range = wire.as_ptr_range();
    assert!(range.contains(&s.source_addr.as_ptr()));
    assert!(range.contains(&s.short_message.as_ptr()));
    assert!(range.contains(&s.tlvs.get(TlvTag(0x1403)).unwrap().value.as_ptr()));
    assert_eq!(s.tlvs.len(), 4);
    assert_eq!(s.body(), s.short_message);
}
