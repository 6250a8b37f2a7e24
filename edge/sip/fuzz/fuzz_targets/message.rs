//! Fuzz target: datagram parse of arbitrary bytes, every typed accessor, validation, and the
//! serializer (unmodified output must be byte-exact; a modified copy must reparse to the same index).
#![no_main]

use libfuzzer_sys::fuzz_target;
use siphon_sip::{Message, ValidationConfig, validate_request};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse_slice(data) else {
        return;
    };
    let _ = (
        m.method(),
        m.method_str(),
        m.request_uri(),
        m.status(),
        m.reason(),
        m.version(),
    );
    let _ = (
        m.call_id(),
        m.cseq(),
        m.from(),
        m.to(),
        m.top_via(),
        m.max_forwards(),
    );
    let _ = (
        m.expires(),
        m.min_expires(),
        m.content_type(),
        m.top_route(),
        m.from_tag(),
    );
    for v in m.vias().flatten() {
        let _ = (
            v.branch(),
            v.received(),
            v.rport(),
            v.ttl(),
            v.host.to_string(),
        );
    }
    for c in m.contacts().flatten() {
        let _ = (c.expires(), c.q_millis());
        if let Some(a) = c.address() {
            let _ = (a.display_name_unquoted(), a.uri.equivalent(&a.uri));
        }
    }
    let _ = m.routes().count() + m.record_routes().count() + m.paths().count();
    let _ = m.allow().count() + m.supported().count() + m.require().count();
    let _ = m.proxy_require().count();
    let _ = m.check_typed_headers();
    for f in m.headers() {
        let _ = (f.value_str(), f.name_str());
    }
    let _ = validate_request(&m, &ValidationConfig::PROXY);
    let _ = validate_request(&m, &ValidationConfig::UAS);

    assert_eq!(m.edit().to_bytes(), m.as_bytes(), "unmodified round trip");
    let mut e = m.edit();
    if m.is_request() {
        e.push_via("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKfuzz")
            .expect("push_via");
        let _ = e.decrement_max_forwards();
        e.insert_record_route("<sip:192.0.2.1;lr>").expect("rr");
        let _ = e.pop_route();
        e.set_request_uri("sip:x@192.0.2.2").expect("ruri");
    } else {
        let _ = e.pop_via();
    }
    e.set_header("X-Fuzz", "1").expect("set_header");
    e.remove_header("Subject");
    e.ensure_content_length();
    // The copy is indexed as it is written; a parse of its bytes must find the same.
    let again = e.to_message();
    let reparsed =
        Message::parse(again.bytes().clone()).expect("a modified accepted message reparses");
    assert_eq!(again.start_line(), reparsed.start_line());
    assert!(
        again.headers().eq(reparsed.headers()),
        "same header index as a parse"
    );
    assert_eq!(again.body(), reparsed.body());
    assert_eq!(again.body(), m.body());
});
