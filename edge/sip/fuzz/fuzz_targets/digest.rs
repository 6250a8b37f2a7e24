//! Fuzz target `digest`: the digest authentication header parsers (`WWW-Authenticate`,
//! `Proxy-Authenticate`, `Authorization`, `Proxy-Authorization`; RFC 3261 §25.1, RFC 7616
//! §3.3–§3.4) and the nonce checker, on raw bytes.
//!
//! Properties: no panic on any input; whatever parses, formats to a value that parses back
//! to the same structure (the formatter only writes what the parser accepts).
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use siphon_sip::auth::{DigestChallenge, DigestCredentials, NonceIssuer, header};
use siphon_sip::registrar::{Aor, ContactKey};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = DigestChallenge::parse_bytes(data) {
        let text = c.to_string();
        let again = DigestChallenge::parse(&text).expect("formatted challenge must parse");
        assert_eq!(again, c, "challenge round trip: {text}");
    }
    if let Ok(c) = DigestCredentials::parse_bytes(data) {
        let text = c.to_string();
        let again = DigestCredentials::parse(&text).expect("formatted credentials must parse");
        assert_eq!(again, c, "credentials round trip: {text}");
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = header::parse_auth_params(s);
        let issuer = NonceIssuer::new(b"fuzz", 0, Duration::from_secs(300), Duration::ZERO);
        let _ = issuer.check(SystemTime::UNIX_EPOCH, "realm", s);
        let _ = Aor::from_uri(s);
        let _ = ContactKey::from_uri(s);
    }
});
