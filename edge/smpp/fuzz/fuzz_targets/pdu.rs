//! Fuzz target: PDU decode (SMPP 3.4 §3–§4). Any input must decode or fail with a typed
//! error, never panic; what decodes must re-encode, and decode again to the same PDU.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siphon_smpp::{Body, Pdu, Receipt};

fn check(buf: &[u8]) {
    let Ok(pdu) = Pdu::decode(buf) else {
        return;
    };
    // Touch the lazily iterated parts.
    match pdu.body {
        Body::SubmitSm(s) | Body::DeliverSm(s) => {
            let _ = s.tlvs.iter().count();
            let _ = Receipt::from_deliver_sm(&s);
        }
        Body::SubmitMulti(m) => {
            let _ = m.dests.iter().count();
        }
        Body::SubmitMultiResp(m) => {
            let _ = m.unsuccess.iter().count();
        }
        _ => {}
    }
    let mut out = Vec::new();
    pdu.encode(&mut out).expect("a decoded PDU re-encodes");
    let again = Pdu::decode(&out).expect("a re-encoded PDU decodes");
    assert_eq!(again, pdu, "decode(encode(pdu)) == pdu");
}

fuzz_target!(|data: &[u8]| {
    check(data);
    // Also with command_length fixed up, so the body decoders get explored.
    if data.len() >= 16 {
        let mut v = data.to_vec();
        let n = u32::try_from(v.len()).unwrap_or(u32::MAX);
        v[..4].copy_from_slice(&n.to_be_bytes());
        check(&v);
    }
});
