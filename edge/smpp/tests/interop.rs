//! Interoperability with an independent SMPP 3.4 implementation, PyPI `smpplib` (2.2.x):
//! smpplib encodes bind_transceiver(+resp), submit_sm (with TLVs, and with message_payload),
//! submit_sm_resp, deliver_sm (a delivery receipt with TLVs), deliver_sm_resp,
//! enquire_link(+resp), unbind(+resp) and generic_nack; our encoding of the same PDUs must be
//! byte-for-byte identical, we must decode theirs to the same values, and smpplib must decode
//! ours to the expected fields. Needs `python3` with `pip install smpplib` (override the
//! interpreter with SIPHON_PYTHON); fails, never skips, when it is missing.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::{Command, Stdio};

use siphon_smpp::{
    Bind, BindResp, Body, CommandStatus, MessageIdResp, Pdu, Receipt, SequenceNumber, SubmitSm,
    Tlv, TlvTag, Tlvs,
};

const DLR: &[u8] = b"id:msg-0001 sub:001 dlvrd:001 submit date:2611261903 \
done date:2611261904 stat:DELIVRD err:000 text:hello";

const SUBMIT_TLVS: [Tlv<'static>; 4] = [
    Tlv::new(TlvTag::USER_MESSAGE_REFERENCE, &[0, 42]),
    Tlv::new(TlvTag::SAR_MSG_REF_NUM, &[0x12, 0x34]),
    Tlv::new(TlvTag::SAR_TOTAL_SEGMENTS, &[2]),
    Tlv::new(TlvTag::SAR_SEGMENT_SEQNUM, &[1]),
];
const PAYLOAD_TLVS: [Tlv<'static>; 1] = [Tlv::new(TlvTag::MESSAGE_PAYLOAD, &[b'L'; 300])];
const DLR_TLVS: [Tlv<'static>; 3] = [
    Tlv::new(TlvTag::NETWORK_ERROR_CODE, &[3, 0, 0]),
    Tlv::new(TlvTag::MESSAGE_STATE, &[2]),
    Tlv::new(TlvTag::RECEIPTED_MESSAGE_ID, b"msg-0001\0"),
];
const IFV: [Tlv<'static>; 1] = [Tlv::new(TlvTag::SC_INTERFACE_VERSION, &[0x34])];

/// (case, our PDU, fields smpplib must decode from our bytes).
type Case = (&'static str, Pdu<'static>, Vec<(&'static str, Val)>);

fn cases() -> Vec<Case> {
    use Val::{B, I};
    let req = |seq, body| Pdu::request(SequenceNumber(seq), body);
    let submit = SubmitSm {
        source_addr_ton: 1,
        source_addr_npi: 1,
        source_addr: b"447700900000",
        dest_addr_ton: 1,
        dest_addr_npi: 1,
        destination_addr: b"447700900001",
        esm_class: 0x40,
        priority_flag: 1,
        registered_delivery: 1,
        data_coding: 8,
        short_message: b"\x05\x00\x03\x2a\x02\x01\x00h\x00i",
        tlvs: Tlvs::from_slice(&SUBMIT_TLVS),
        ..SubmitSm::default()
    };
    let payload = SubmitSm {
        service_type: b"CMT",
        source_addr_ton: 5,
        source_addr_npi: 0,
        source_addr: b"Siphon",
        dest_addr_ton: 1,
        dest_addr_npi: 1,
        destination_addr: b"447700900001",
        schedule_delivery_time: b"261126190300000+",
        validity_period: b"000001000000000R",
        tlvs: Tlvs::from_slice(&PAYLOAD_TLVS),
        ..SubmitSm::default()
    };
    let deliver = SubmitSm {
        source_addr_ton: 1,
        source_addr_npi: 1,
        source_addr: b"447700900001",
        dest_addr_ton: 1,
        dest_addr_npi: 1,
        destination_addr: b"447700900000",
        esm_class: 0x04,
        short_message: DLR,
        tlvs: Tlvs::from_slice(&DLR_TLVS),
        ..SubmitSm::default()
    };
    let resp = |seq, body| Pdu {
        status: CommandStatus::ESME_ROK,
        sequence: SequenceNumber(seq),
        body,
    };
    vec![
        (
            "bind_transceiver",
            req(
                1,
                Body::BindTransceiver(Bind {
                    system_id: b"esme01",
                    password: b"secret",
                    system_type: b"VMA",
                    interface_version: 0x34,
                    addr_ton: 1,
                    addr_npi: 1,
                    address_range: b"",
                }),
            ),
            vec![
                ("system_id", B(b"esme01")),
                ("password", B(b"secret")),
                ("system_type", B(b"VMA")),
                ("interface_version", I(0x34)),
                ("addr_ton", I(1)),
                ("address_range", B(b"")),
            ],
        ),
        (
            "bind_transceiver_resp",
            resp(
                1,
                Body::BindTransceiverResp(BindResp {
                    system_id: b"SMSC",
                    tlvs: Tlvs::from_slice(&IFV),
                }),
            ),
            vec![("system_id", B(b"SMSC")), ("sc_interface_version", I(0x34))],
        ),
        (
            "submit_sm",
            req(2, Body::SubmitSm(submit)),
            vec![
                ("source_addr", B(b"447700900000")),
                ("destination_addr", B(b"447700900001")),
                ("esm_class", I(0x40)),
                ("priority_flag", I(1)),
                ("registered_delivery", I(1)),
                ("data_coding", I(8)),
                ("sm_length", I(10)),
                ("short_message", B(b"\x05\x00\x03\x2a\x02\x01\x00h\x00i")),
                ("user_message_reference", I(42)),
                ("sar_msg_ref_num", I(0x1234)),
                ("sar_total_segments", I(2)),
                ("sar_segment_seqnum", I(1)),
            ],
        ),
        (
            "submit_sm_payload",
            req(3, Body::SubmitSm(payload)),
            vec![
                ("service_type", B(b"CMT")),
                ("source_addr_ton", I(5)),
                ("source_addr", B(b"Siphon")),
                ("schedule_delivery_time", B(b"261126190300000+")),
                ("validity_period", B(b"000001000000000R")),
                ("sm_length", I(0)),
                ("message_payload", B(&[b'L'; 300])),
            ],
        ),
        (
            "submit_sm_resp",
            resp(
                2,
                Body::SubmitSmResp(MessageIdResp {
                    message_id: b"msg-0001",
                }),
            ),
            vec![("message_id", B(b"msg-0001"))],
        ),
        (
            "deliver_sm",
            req(7, Body::DeliverSm(deliver)),
            vec![
                ("esm_class", I(4)),
                ("short_message", B(DLR)),
                ("network_error_code", B(&[3, 0, 0])),
                ("message_state", I(2)),
                ("receipted_message_id", B(b"msg-0001")),
            ],
        ),
        (
            "deliver_sm_resp",
            resp(7, Body::DeliverSmResp(MessageIdResp::default())),
            vec![("message_id", B(b""))],
        ),
        ("enquire_link", req(8, Body::EnquireLink), vec![]),
        ("enquire_link_resp", resp(8, Body::EnquireLinkResp), vec![]),
        ("unbind", req(9, Body::Unbind), vec![]),
        ("unbind_resp", resp(9, Body::UnbindResp), vec![]),
        (
            "generic_nack",
            siphon_smpp::generic_nack(CommandStatus::ESME_RINVCMDID, SequenceNumber(10)),
            vec![],
        ),
    ]
}

#[derive(Clone, Copy, Debug)]
enum Val {
    I(u64),
    B(&'static [u8]),
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex from the script"))
        .collect()
}

#[test]
fn smpplib_byte_for_byte() {
    let python = std::env::var("SIPHON_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = &format!(
        "{}/tests/interop_smpplib.py",
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR")
    );
    let cases = cases();
    let mut ours = HashMap::new();
    let mut stdin_text = String::new();
    for (name, pdu, _) in &cases {
        let mut b = Vec::new();
        pdu.encode(&mut b).unwrap();
        stdin_text.push_str(&format!("{name} {}\n", hex(&b)));
        ours.insert(*name, b);
    }
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `{python}` ({e}); the interop test needs python3 with `pip install smpplib`")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin_text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code() != Some(3),
        "PyPI smpplib is not importable by `{python}`: pip install smpplib\n{stderr}"
    );
    assert!(out.status.success(), "interop script failed:\n{stderr}");

    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut theirs = HashMap::new();
    let mut decoded: HashMap<(String, String), (String, String)> = HashMap::new();
    for line in stdout.lines() {
        let parts: Vec<&str> = line.splitn(5, ' ').collect();
        match parts[..] {
            ["ENC", case, h] => {
                theirs.insert(case.to_string(), unhex(h));
            }
            ["DEC", case, field, kind, v] => {
                decoded.insert(
                    (case.to_string(), field.to_string()),
                    (kind.to_string(), v.to_string()),
                );
            }
            ["DEC", case, field, kind] => {
                decoded.insert(
                    (case.to_string(), field.to_string()),
                    (kind.to_string(), String::new()),
                );
            }
            _ => panic!("unexpected line from the interop script: {line}"),
        }
    }

    for (name, pdu, fields) in &cases {
        // 1. Byte for byte.
        let their = theirs
            .get(*name)
            .unwrap_or_else(|| panic!("smpplib did not encode {name}"));
        assert_eq!(
            hex(their),
            hex(&ours[name]),
            "{name}: smpplib (left) vs siphon-smpp (right)"
        );
        // 2. We decode theirs to the same PDU.
        let back = Pdu::decode(their).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&back, pdu, "{name}");
        // 3. smpplib decodes ours to the expected fields.
        let get = |f: &str| {
            decoded
                .get(&(name.to_string(), f.to_string()))
                .unwrap_or_else(|| panic!("{name}: smpplib decoded no {f}"))
                .clone()
        };
        assert_eq!(
            get("command").1,
            hex(pdu.command_id().name().as_bytes()),
            "{name}"
        );
        assert_eq!(get("status").1, pdu.status.0.to_string(), "{name}");
        assert_eq!(get("sequence").1, pdu.sequence.0.to_string(), "{name}");
        for (field, want) in fields {
            let (kind, v) = get(field);
            match want {
                Val::I(i) => assert_eq!((kind.as_str(), v), ("i", i.to_string()), "{name}.{field}"),
                Val::B(b) => assert_eq!((kind.as_str(), v), ("b", hex(b)), "{name}.{field}"),
            }
        }
    }

    // The DLR smpplib built parses as a receipt on our side.
    let dlr = Pdu::decode(&theirs["deliver_sm"]).unwrap();
    let Body::DeliverSm(d) = dlr.body else {
        panic!("deliver_sm")
    };
    let r = Receipt::from_deliver_sm(&d).unwrap();
    assert_eq!(r.id, Some(&b"msg-0001"[..]));
    assert_eq!(r.stat, Some(&b"DELIVRD"[..]));
    assert_eq!(r.message_state, Some(2));
}
