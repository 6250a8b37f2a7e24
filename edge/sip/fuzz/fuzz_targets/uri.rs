//! Fuzz target: URI parsing (SIP/SIPS/TEL/other), accessors, and reflexive equivalence.
#![no_main]

use libfuzzer_sys::fuzz_target;
use siphon_sip::Uri;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(u) = Uri::parse(s) else {
        return;
    };
    assert_eq!(u.as_str(), s);
    assert!(u.equivalent(&u), "a URI is equivalent to itself");
    let _ = u.scheme();
    if let Some(sip) = u.as_sip() {
        let _ = (
            sip.transport(),
            sip.lr(),
            sip.maddr(),
            sip.user_decoded(),
            sip.host.to_string(),
        );
        for p in sip.params.iter() {
            let _ = p;
        }
    }
    let _ = siphon_sip::uri::pct_decode(s);
    let _ = siphon_sip::uri::unquote(s);
});
