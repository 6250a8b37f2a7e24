//! Fuzz target: the lenient salvage of a broken request, and the stateless answer built from
//! it, which must always frame as one response carrying the salvaged Call-ID.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siphon_sip::salvage::salvage_request;
use siphon_sip::{Message, StatusCode};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = salvage_request(data) else {
        return;
    };
    let _ = (s.is_ack(), s.method(), s.from(), s.to());
    let out = s.response(StatusCode::BAD_REQUEST, "Bad Request", Some("fz"));
    let m = Message::parse(out).expect("the answer frames");
    assert_eq!(m.status(), Some(StatusCode::BAD_REQUEST));
    assert_eq!(
        m.headers_named(siphon_sip::HeaderName::Via).count(),
        s.vias().len()
    );
});
