//! Tests for [`super::DigestAuth`]: challenge → answer → verify round trips, nonce TTL and
//! `stale`, nc replay, realm/uri/opaque mismatches, unknown users, HA1 credentials.

use std::time::{Duration, SystemTime};

use super::*;

const REALM: &str = "example.com";
const URI: &str = "sip:example.com";
const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn setup() -> (DigestAuth, MemoryUserStore) {
    let auth = DigestAuth::new(DigestConfig::new(REALM), b"0123456789abcdef", 42);
    let users = MemoryUserStore::new();
    users.insert(None, "alice", Credential::Password("wonderland".into()));
    (auth, users)
}

fn info() -> RequestInfo<'static> {
    RequestInfo {
        method: "REGISTER",
        request_uri: Some(URI),
        realm: None,
        secret: None,
    }
}

/// Challenge at `t`, pick `alg`, answer as `user`/`pw` with `nc`.
fn answer(
    auth: &DigestAuth,
    t: u64,
    alg: Algorithm,
    user: &str,
    pw: &str,
    nc: u32,
) -> DigestCredentials {
    let ch = auth
        .challenges(at(t), None, false)
        .into_iter()
        .find(|c| c.algorithm() == Some(alg))
        .unwrap();
    answer_challenge(&ch, user, pw, "REGISTER", URI, nc, "c0ffee").unwrap()
}

#[test]
fn round_trip_sha256_and_md5() {
    let (auth, users) = setup();
    for alg in [Algorithm::Sha256, Algorithm::Md5] {
        let creds = answer(&auth, T0, alg, "alice", "wonderland", 1);
        // Through the wire format and back.
        let wire = creds.to_string();
        let parsed = DigestCredentials::parse(&wire).unwrap();
        let ok = auth.verify(at(T0 + 1), &info(), &parsed, &users).unwrap();
        assert_eq!(ok.username, "alice");
        assert_eq!(ok.realm, REALM);
        assert_eq!(ok.algorithm, alg);
    }
}

#[test]
fn challenge_header_values() {
    let (auth, _) = setup();
    let reply = auth.challenge_reply(at(T0), AuthKind::Proxy, None, None);
    assert_eq!(reply.status, 407);
    assert_eq!(reply.header_name, "Proxy-Authenticate");
    assert_eq!(reply.header_values.len(), 2);
    // MD5 first by default (UAs that answer the first challenge), then SHA-256.
    let md5 = DigestChallenge::parse(&reply.header_values[0]).unwrap();
    let sha = DigestChallenge::parse(&reply.header_values[1]).unwrap();
    assert_eq!(sha.algorithm(), Some(Algorithm::Sha256));
    assert_eq!(md5.algorithm(), Some(Algorithm::Md5));
    assert_eq!(sha.nonce, md5.nonce);
    assert_eq!(sha.qop, vec!["auth"]);
    assert!(!sha.stale);
    assert!(
        reply.header_values[0].starts_with("Digest realm=\"example.com\", nonce=\""),
        "{}",
        reply.header_values[0]
    );
    let www = auth.challenge_reply(at(T0), AuthKind::Www, None, Some(&AuthError::StaleNonce));
    assert_eq!((www.status, www.reason), (401, "Unauthorized"));
    assert!(DigestChallenge::parse(&www.header_values[0]).unwrap().stale);
}

/// `Offer::One` (the node's choice over UDP): one challenge, the first configured algorithm
/// without credentials, the credentials' own algorithm when a stale SHA-256 answer is
/// re-challenged; `Offer::All` (TCP/TLS) offers every configured algorithm.
#[test]
fn offer_one_challenge_or_all() {
    let (auth, users) = setup();
    let www = |offer, values: Vec<&str>| {
        auth.require_offering(at(T0), AuthKind::Www, &info(), values, &users, offer)
            .unwrap_err()
    };
    let (e, one) = www(Offer::One, vec![]);
    assert_eq!(e, AuthError::MissingCredentials);
    assert_eq!(one.header_values.len(), 1);
    let ch = DigestChallenge::parse(&one.header_values[0]).unwrap();
    assert_eq!(ch.algorithm(), Some(Algorithm::Md5));
    // A lone MD5 challenge says so by leaving `algorithm` out (its default).
    assert!(
        !one.header_values[0].contains("algorithm"),
        "{:?}",
        one.header_values
    );
    let (_, all) = www(Offer::All, vec![]);
    let algs: Vec<_> = all
        .header_values
        .iter()
        .map(|v| DigestChallenge::parse(v).unwrap().algorithm())
        .collect();
    assert_eq!(algs, [Some(Algorithm::Md5), Some(Algorithm::Sha256)]);
    // A one-challenge 401 is shorter than the full set by the SHA-256 challenge.
    assert!(one.header_values.concat().len() < all.header_values.concat().len());
    // A stale SHA-256 answer is re-challenged with SHA-256 (stale=true), not moved to MD5.
    let sha = answer(&auth, T0 - 400, Algorithm::Sha256, "alice", "wonderland", 1).to_string();
    let (e, again) = www(Offer::One, vec![sha.as_str()]);
    assert_eq!(e, AuthError::StaleNonce);
    assert_eq!(again.header_values.len(), 1);
    let ch = DigestChallenge::parse(&again.header_values[0]).unwrap();
    assert_eq!(ch.algorithm(), Some(Algorithm::Sha256));
    assert!(ch.stale);
    // Credentials with an algorithm that is not configured: the first configured one.
    let bogus = sha.replace("algorithm=SHA-256", "algorithm=SHA-512-256");
    let (e, other) = www(Offer::One, vec![bogus.as_str()]);
    assert_eq!(e, AuthError::UnsupportedAlgorithm);
    let ch = DigestChallenge::parse(&other.header_values[0]).unwrap();
    assert_eq!(ch.algorithm(), Some(Algorithm::Md5));
    // And an answer to the one challenge verifies.
    let md5 = answer(&auth, T0, Algorithm::Md5, "alice", "wonderland", 1).to_string();
    let ok = auth
        .require_offering(
            at(T0 + 1),
            AuthKind::Www,
            &info(),
            vec![md5.as_str()],
            &users,
            Offer::One,
        )
        .unwrap();
    assert_eq!(ok.algorithm, Algorithm::Md5);
}

#[test]
fn nonce_ttl_and_stale() {
    let (auth, users) = setup();
    let creds = answer(&auth, T0, Algorithm::Sha256, "alice", "wonderland", 1);
    assert!(auth.validate_nonce(at(T0 + 300), None, &creds.nonce));
    assert!(!auth.validate_nonce(at(T0 + 301), None, &creds.nonce));
    // Right answer, expired nonce: stale.
    let e = auth
        .verify(at(T0 + 301), &info(), &creds, &users)
        .unwrap_err();
    assert_eq!(e, AuthError::StaleNonce);
    assert!(e.is_stale());
    // Wrong answer, expired nonce: not stale.
    let bad = answer(&auth, T0, Algorithm::Sha256, "alice", "guess", 1);
    assert_eq!(
        auth.verify(at(T0 + 301), &info(), &bad, &users),
        Err(AuthError::BadResponse)
    );
}

#[test]
fn nc_replay_rejected() {
    let (auth, users) = setup();
    let creds = answer(&auth, T0, Algorithm::Sha256, "alice", "wonderland", 1);
    assert!(auth.verify(at(T0), &info(), &creds, &users).is_ok());
    let e = auth.verify(at(T0), &info(), &creds, &users).unwrap_err();
    assert_eq!(e, AuthError::NonceCountReplay(NcRejection::Replayed));
    assert!(e.is_stale());
    // The next nc on the same nonce is fine.
    let ch = DigestChallenge {
        realm: REALM.into(),
        nonce: creds.nonce.clone(),
        algorithm: Some("SHA-256".into()),
        qop: vec!["auth".into()],
        ..DigestChallenge::default()
    };
    let c2 = answer_challenge(&ch, "alice", "wonderland", "REGISTER", URI, 2, "x").unwrap();
    assert!(auth.verify(at(T0), &info(), &c2, &users).is_ok());
}

#[test]
fn wrong_realm_uri_and_tampering() {
    let (auth, users) = setup();
    let creds = answer(&auth, T0, Algorithm::Md5, "alice", "wonderland", 1);
    // Another realm.
    let other = RequestInfo {
        realm: Some("other.org"),
        ..info()
    };
    assert_eq!(
        auth.verify(at(T0), &other, &creds, &users),
        Err(AuthError::RealmMismatch)
    );
    // Request-URI differs from the digest uri.
    let moved = RequestInfo {
        request_uri: Some("sip:elsewhere.com"),
        ..info()
    };
    assert_eq!(
        auth.verify(at(T0), &moved, &creds, &users),
        Err(AuthError::UriMismatch)
    );
    // Same credentials, changed uri directive: wrong response.
    let mut t = creds.clone();
    t.uri = "sip:elsewhere.com".into();
    let elsewhere = RequestInfo {
        request_uri: Some("sip:elsewhere.com"),
        ..info()
    };
    assert_eq!(
        auth.verify(at(T0), &elsewhere, &t, &users),
        Err(AuthError::BadResponse)
    );
    // Method differs (response computed for REGISTER).
    let invite = RequestInfo {
        method: "INVITE",
        ..info()
    };
    assert_eq!(
        auth.verify(at(T0), &invite, &creds, &users),
        Err(AuthError::BadResponse)
    );
    // A nonce we never issued.
    let mut forged = creds.clone();
    forged.nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093".into();
    assert_eq!(
        auth.verify(at(T0), &info(), &forged, &users),
        Err(AuthError::InvalidNonce)
    );
    // Upper-case hex in the response is accepted.
    let mut upper = creds.clone();
    upper.response = upper.response.to_uppercase();
    assert!(auth.verify(at(T0), &info(), &upper, &users).is_ok());
}

#[test]
fn unknown_user_same_challenge_same_failure() {
    let (auth, users) = setup();
    // The challenge does not depend on the user: it is built before anyone is named, and two
    // challenges differ only in the nonce.
    let a = auth.challenges(at(T0), None, false);
    let b = auth.challenges(at(T0), None, false);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            DigestChallenge {
                nonce: String::new(),
                ..x.clone()
            },
            DigestChallenge {
                nonce: String::new(),
                ..y.clone()
            }
        );
    }
    let unknown = answer(&auth, T0, Algorithm::Sha256, "mallory", "x", 1);
    let wrong_pw = answer(&auth, T0, Algorithm::Sha256, "alice", "x", 1);
    let e1 = auth.verify(at(T0), &info(), &unknown, &users).unwrap_err();
    let e2 = auth.verify(at(T0), &info(), &wrong_pw, &users).unwrap_err();
    assert_eq!(e1, AuthError::BadResponse);
    assert_eq!(e1, e2);
    // And the replies are the same shape.
    let r1 = auth.challenge_reply(at(T0), AuthKind::Www, None, Some(&e1));
    let r2 = auth.challenge_reply(at(T0), AuthKind::Www, None, Some(&e2));
    assert_eq!(r1.status, r2.status);
    assert_eq!(r1.header_values.len(), r2.header_values.len());
}

#[test]
fn ha1_and_script_secret() {
    let (auth, users) = setup();
    users.insert(
        Some(REALM),
        "bob",
        Credential::Ha1 {
            algorithm: Algorithm::Md5,
            ha1: Algorithm::Md5.ha1("bob", REALM, "builder"),
        },
    );
    let md5 = answer(&auth, T0, Algorithm::Md5, "bob", "builder", 1);
    assert!(auth.verify(at(T0), &info(), &md5, &users).is_ok());
    // An MD5 HA1 cannot answer SHA-256.
    let sha = answer(&auth, T0, Algorithm::Sha256, "bob", "builder", 1);
    assert_eq!(
        auth.verify(at(T0), &info(), &sha, &users),
        Err(AuthError::BadResponse)
    );
    // password= given by the script overrides the store.
    let secret = Credential::Password("s3cret".into());
    let with_secret = RequestInfo {
        secret: Some(&secret),
        ..info()
    };
    let carol = answer(&auth, T0, Algorithm::Sha256, "carol", "s3cret", 1);
    assert!(auth.verify(at(T0), &with_secret, &carol, &users).is_ok());
}

#[test]
fn qop_rules_and_algorithms() {
    let (auth, users) = setup();
    let creds = answer(&auth, T0, Algorithm::Sha256, "alice", "wonderland", 1);
    let mut no_qop = creds.clone();
    no_qop.qop = None;
    assert_eq!(
        auth.verify(at(T0), &info(), &no_qop, &users),
        Err(AuthError::QopRequired)
    );
    let mut int = creds.clone();
    int.qop = Some("auth-int".into());
    assert_eq!(
        auth.verify(at(T0), &info(), &int, &users),
        Err(AuthError::UnsupportedQop)
    );
    let mut no_nc = creds.clone();
    no_nc.nc = None;
    assert_eq!(
        auth.verify(at(T0), &info(), &no_nc, &users),
        Err(AuthError::MissingQopParams)
    );
    let mut sha512 = creds.clone();
    sha512.algorithm = Some("SHA-512-256".into());
    assert_eq!(
        auth.verify(at(T0), &info(), &sha512, &users),
        Err(AuthError::UnsupportedAlgorithm)
    );

    // RFC 2069 mode when qop is not required.
    let mut cfg = DigestConfig::new(REALM);
    cfg.qop_required = false;
    cfg.algorithms = vec![Algorithm::Md5, Algorithm::Sha256Sess];
    cfg.opaque = Some("op4que".into());
    let auth = DigestAuth::new(cfg, b"k", 1);
    let mut ch = auth.challenges(at(T0), None, false).remove(0);
    assert_eq!(ch.opaque.as_deref(), Some("op4que"));
    ch.qop.clear();
    let c = answer_challenge(&ch, "alice", "wonderland", "REGISTER", URI, 1, "c").unwrap();
    assert_eq!(c.qop, None);
    assert!(auth.verify(at(T0), &info(), &c, &users).is_ok());
    let mut no_opaque = c.clone();
    no_opaque.opaque = None;
    assert_eq!(
        auth.verify(at(T0), &info(), &no_opaque, &users),
        Err(AuthError::OpaqueMismatch)
    );
    // -sess with qop.
    let sess = auth.challenges(at(T0), None, false).remove(1);
    assert_eq!(sess.algorithm(), Some(Algorithm::Sha256Sess));
    let c = answer_challenge(&sess, "alice", "wonderland", "REGISTER", URI, 1, "cn").unwrap();
    assert!(auth.verify(at(T0), &info(), &c, &users).is_ok());
}

#[test]
fn require_one_call() {
    let (auth, users) = setup();
    // No credentials: 401 with a fresh, non-stale challenge.
    let (e, reply) = auth
        .require(at(T0), AuthKind::Www, &info(), [], &users)
        .unwrap_err();
    assert_eq!(e, AuthError::MissingCredentials);
    assert!(!e.is_failure());
    assert_eq!(reply.status, 401);
    let ch = DigestChallenge::parse(&reply.header_values[0]).unwrap();
    let good = answer_challenge(&ch, "alice", "wonderland", "REGISTER", URI, 1, "c")
        .unwrap()
        .to_string();
    // Credentials for another realm are skipped; ours are found.
    let foreign = "Digest username=\"a\", realm=\"other\", nonce=\"n\", uri=\"u\", response=\"r\"";
    let ok = auth
        .require(
            at(T0),
            AuthKind::Www,
            &info(),
            [foreign, "Bearer abc", good.as_str()],
            &users,
        )
        .unwrap();
    assert_eq!(ok.username, "alice");
    // Garbage only: malformed.
    let (e, _) = auth
        .require(at(T0), AuthKind::Www, &info(), ["Digest ,,=\""], &users)
        .unwrap_err();
    assert!(e.is_malformed());
}

#[test]
fn relaxed_digest_uri_rules() {
    let relaxed = |r: &str, d: &str| digest_uri_matches(DigestUriCheck::Relaxed, &[], r, d);
    // The port is not compared.
    assert!(relaxed("sip:127.0.0.1", "sip:127.0.0.1:5060"));
    assert!(relaxed("sips:a.example", "sips:a.example:5061"));
    assert!(relaxed("sip:127.0.0.1", "sip:127.0.0.1:15061"));
    assert!(relaxed("sip:a.example", "sip:A.Example"));
    // Scheme, host and a written user are.
    assert!(!relaxed("sip:a.example", "sips:a.example"));
    assert!(!relaxed("sip:127.0.0.1", "sip:127.0.0.2"));
    assert!(!relaxed("sip:a@h", "sip:b@h"));
    assert!(!relaxed("sip:h", "sip:b@h"));
    // A directive without a user names the host (SIPp writes `sip:<proxy>:<port>`).
    assert!(relaxed("sip:bob@h", "sip:h:5060"));
    assert!(relaxed("sip:b%6Fb@h", "sip:bob@h"));
    // Not a SIP URI: only the same text.
    assert!(relaxed("tel:+15551234", "tel:+15551234"));
    assert!(!relaxed("sip:h", "urn:x"));
    // Own hosts: a domain case-insensitively, an address by value (IPv6 in brackets).
    let own = [
        "siphon.test".to_owned(),
        "::1".to_owned(),
        "[2001:db8::1]".to_owned(),
    ];
    let own_ok = |d: &str| digest_uri_matches(DigestUriCheck::Relaxed, &own, "sip:x.example", d);
    assert!(own_ok("sip:SIPHON.test:5070"));
    assert!(own_ok("sip:[::1]:5060"));
    assert!(own_ok("sip:[2001:db8:0::1]"));
    assert!(!own_ok("sip:[2001:db8::2]"));
    assert!(!own_ok("sips:siphon.test"));
}

#[test]
fn strict_and_off_digest_uri_rules() {
    let own = ["siphon.test".to_owned()];
    let strict = |r: &str, d: &str| digest_uri_matches(DigestUriCheck::Strict, &own, r, d);
    assert!(strict("sip:siphon.test", "sip:siphon.test"));
    assert!(strict("sip:bob@siphon.test", "sip:bob@SIPHON.TEST"));
    assert!(strict(
        "sip:b%6Fb@h;transport=udp",
        "sip:bob@h;transport=UDP"
    ));
    // RFC 3261 §19.1.4: an explicit default port is not the same as none.
    assert!(!strict("sip:siphon.test", "sip:siphon.test:5060"));
    assert!(!strict("sip:bob@h", "sip:h"));
    assert!(!strict("sip:h", "sip:h;transport=tcp"));
    assert!(!strict("sip:x.example", "sip:siphon.test"));
    let off = |r: &str, d: &str| digest_uri_matches(DigestUriCheck::Off, &[], r, d);
    assert!(off("sip:siphon.test", "sip:192.0.2.99:5060"));
    assert!(off("sip:siphon.test", "not a uri"));
}

/// Challenge with `kind` for a request to `ruri`, answer with `directive` as the digest
/// `uri`, and check the answer through [`DigestAuth::require`] as the header of `kind`.
fn check_uri(
    check: DigestUriCheck,
    kind: AuthKind,
    ruri: &str,
    directive: &str,
) -> Result<AuthOk, AuthError> {
    let mut cfg = DigestConfig::new(REALM);
    cfg.uri_check = check;
    cfg.local_hosts = vec!["siphon.test".into(), "127.0.0.1".into()];
    let auth = DigestAuth::new(cfg, b"0123456789abcdef", 7);
    let users = MemoryUserStore::new();
    users.insert(None, "alice", Credential::Password("wonderland".into()));
    let method = match kind {
        AuthKind::Www => "REGISTER",
        AuthKind::Proxy => "INVITE",
    };
    let req = RequestInfo {
        method,
        request_uri: Some(ruri),
        realm: None,
        secret: None,
    };
    let (_, reply) = auth
        .require(at(T0), kind, &req, [], &users)
        .expect_err("no credentials yet");
    assert_eq!(reply.status, kind.status());
    let ch = DigestChallenge::parse(&reply.header_values[0]).expect("challenge");
    let creds = answer_challenge(&ch, "alice", "wonderland", method, directive, 1, "cn")
        .expect("md5")
        .to_string();
    auth.require(at(T0 + 1), kind, &req, [creds.as_str()], &users)
        .map_err(|(e, _)| e)
}

const KINDS: [AuthKind; 2] = [AuthKind::Www, AuthKind::Proxy];

#[test]
fn relaxed_accepts_own_address_and_request_uri_host() {
    for kind in KINDS {
        for (ruri, directive) in [
            // SIPp's `[authentication]`: the proxy's address, R-URI names the domain.
            ("sip:siphon.test", "sip:127.0.0.1:5060"),
            ("sip:bob@siphon.test", "sip:127.0.0.1:5060"),
            // Another of our own names.
            ("sip:127.0.0.1", "sip:siphon.test"),
            // The Request-URI's host, port ignored.
            ("sip:elsewhere.example", "sip:elsewhere.example:5060"),
            ("sip:siphon.test", "sip:siphon.test"),
        ] {
            let ok = check_uri(DigestUriCheck::Relaxed, kind, ruri, directive);
            assert_eq!(
                ok.map(|o| o.username),
                Ok("alice".to_owned()),
                "{kind:?} {ruri} {directive}"
            );
        }
    }
}

#[test]
fn relaxed_refuses_a_foreign_host() {
    for kind in KINDS {
        for directive in [
            "sip:192.0.2.99:5060",
            "sip:elsewhere.example",
            "sips:siphon.test",
        ] {
            assert_eq!(
                check_uri(DigestUriCheck::Relaxed, kind, "sip:siphon.test", directive),
                Err(AuthError::UriMismatch),
                "{kind:?} {directive}"
            );
        }
    }
}

#[test]
fn strict_refuses_another_port_or_host() {
    for kind in KINDS {
        for directive in [
            "sip:siphon.test:5060",
            "sip:127.0.0.1:5060",
            "sip:siphon.test:5070",
        ] {
            assert_eq!(
                check_uri(DigestUriCheck::Strict, kind, "sip:siphon.test", directive),
                Err(AuthError::UriMismatch),
                "{kind:?} {directive}"
            );
        }
        assert!(
            check_uri(
                DigestUriCheck::Strict,
                kind,
                "sip:siphon.test",
                "sip:siphon.test"
            )
            .is_ok()
        );
        assert!(
            check_uri(
                DigestUriCheck::Strict,
                kind,
                "sip:siphon.test:5070",
                "sip:SIPHON.TEST:5070"
            )
            .is_ok()
        );
    }
}

#[test]
fn off_accepts_any_uri() {
    for kind in KINDS {
        for directive in [
            "sip:192.0.2.99:5060",
            "sips:elsewhere.example",
            "urn:x",
            "u",
        ] {
            assert!(
                check_uri(DigestUriCheck::Off, kind, "sip:siphon.test", directive).is_ok(),
                "{kind:?} {directive}"
            );
        }
    }
}

#[test]
fn uri_check_is_relaxed_by_default() {
    assert_eq!(DigestConfig::new(REALM).uri_check, DigestUriCheck::Relaxed);
    assert_eq!(DigestUriCheck::default().as_str(), "relaxed");
}
