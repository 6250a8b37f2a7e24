//! Registrar behaviour tests (RFC 3261 §10.3) on a virtual clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;

const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn aor() -> Aor {
    Aor::from_uri("sip:alice@example.com").unwrap()
}

fn registrar(config: RegistrarConfig) -> Registrar {
    Registrar::new(config, Arc::new(MemoryLocationStore::with_shards(4)))
}

fn req(call_id: &str, cseq: u32, contacts: &[&str]) -> RegisterRequest {
    let mut r = RegisterRequest::new(aor(), call_id, cseq);
    r.contacts = contacts
        .iter()
        .map(|c| ContactEntry::Binding(ContactBinding::new(c)))
        .collect();
    r
}

fn with_expires(mut r: RegisterRequest, e: u32) -> RegisterRequest {
    r.expires = Some(e);
    r
}

fn kinds(o: &RegisterOutcome) -> Vec<ChangeKind> {
    o.events.iter().map(|e| e.kind).collect()
}

#[test]
fn add_refresh_remove() {
    let r = registrar(RegistrarConfig::default());
    let o = r
        .register(at(T0), &req("c1", 1, &["<sip:alice@10.0.0.1:5060>"]))
        .unwrap();
    assert_eq!(kinds(&o), [ChangeKind::Registered]);
    assert_eq!(
        o.contact_header_values(),
        ["<sip:alice@10.0.0.1:5060>;expires=3600"]
    );
    assert_eq!(r.aor_count().unwrap(), 1);

    // Refresh 100 s later with a shorter lifetime from the Expires header.
    let o = r
        .register(
            at(T0 + 100),
            &with_expires(req("c1", 2, &["sip:alice@10.0.0.1:5060"]), 600),
        )
        .unwrap();
    assert_eq!(kinds(&o), [ChangeKind::Refreshed]);
    assert_eq!(o.bindings.len(), 1);
    assert_eq!(o.bindings[0].remaining_secs(at(T0 + 100)), 600);
    assert_eq!(o.bindings[0].registered_at, at(T0));
    assert_eq!(o.bindings[0].updated_at, at(T0 + 100));

    // A query (no Contact) lists the binding with its remaining time.
    let o = r.register(at(T0 + 160), &req("c1", 3, &[])).unwrap();
    assert!(o.events.is_empty());
    assert_eq!(
        o.contact_header_values(),
        ["<sip:alice@10.0.0.1:5060>;expires=540"]
    );

    // Remove with expires=0 in the contact parameter.
    let mut rm = req("c1", 4, &[]);
    rm.contacts = vec![ContactEntry::Binding(ContactBinding {
        expires: Some(0),
        ..ContactBinding::new("sip:alice@10.0.0.1:5060")
    })];
    let o = r.register(at(T0 + 200), &rm).unwrap();
    assert_eq!(kinds(&o), [ChangeKind::Deregistered]);
    assert!(o.contact_header_values().is_empty());
    assert_eq!(r.aor_count().unwrap(), 0);
}

#[test]
fn expires_precedence() {
    let r = registrar(RegistrarConfig::default());
    let mut q = with_expires(req("c", 1, &[]), 300);
    q.contacts = vec![
        ContactEntry::Binding(ContactBinding {
            expires: Some(120),
            ..ContactBinding::new("sip:a@1.1.1.1")
        }),
        ContactEntry::Binding(ContactBinding::new("sip:a@2.2.2.2")),
    ];
    let o = r.register(at(T0), &q).unwrap();
    let mut got: Vec<_> = o
        .bindings
        .iter()
        .map(|b| (b.uri.clone(), b.remaining_secs(at(T0))))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("sip:a@1.1.1.1".to_owned(), 120),
            ("sip:a@2.2.2.2".to_owned(), 300)
        ]
    );
    // Neither given: default_expires.
    let o = r
        .register(at(T0), &req("d", 1, &["sip:a@3.3.3.3"]))
        .unwrap();
    let b = o
        .bindings
        .iter()
        .find(|b| b.uri == "sip:a@3.3.3.3")
        .unwrap();
    assert_eq!(b.remaining_secs(at(T0)), 3600);
}

#[test]
fn star_rules() {
    let r = registrar(RegistrarConfig::default());
    r.register(at(T0), &req("c1", 1, &["sip:a@1.1.1.1", "sip:a@2.2.2.2"]))
        .unwrap();

    let mut star = req("c2", 1, &[]);
    star.contacts = vec![ContactEntry::Star];
    // Without Expires: 400.
    let e = r.register(at(T0), &star).unwrap_err();
    assert_eq!(e, RegisterError::InvalidStar(StarMisuse::ExpiresNotZero));
    assert_eq!(e.status(), (400, "Bad Request"));
    // With Expires != 0: 400.
    let e = r
        .register(at(T0), &with_expires(star.clone(), 10))
        .unwrap_err();
    assert_eq!(e.status().0, 400);
    // With another contact: 400.
    let mut mixed = with_expires(star.clone(), 0);
    mixed
        .contacts
        .push(ContactEntry::Binding(ContactBinding::new("sip:a@3.3.3.3")));
    assert_eq!(
        r.register(at(T0), &mixed).unwrap_err(),
        RegisterError::InvalidStar(StarMisuse::WithOtherContacts)
    );
    assert_eq!(r.lookup(at(T0), &aor()).unwrap().len(), 2);

    // `*` with Expires: 0 removes everything.
    let o = r.register(at(T0 + 1), &with_expires(star, 0)).unwrap();
    assert_eq!(kinds(&o), [ChangeKind::Deregistered]);
    assert_eq!(o.events[0].contacts.len(), 2);
    assert!(o.bindings.is_empty());
    assert_eq!(r.aor_count().unwrap(), 0);
}

#[test]
fn star_respects_cseq_order() {
    let r = registrar(RegistrarConfig::default());
    r.register(at(T0), &req("c1", 5, &["sip:a@1.1.1.1"]))
        .unwrap();
    let mut star = with_expires(req("c1", 5, &[]), 0);
    star.contacts = vec![ContactEntry::Star];
    let e = r.register(at(T0), &star).unwrap_err();
    assert!(matches!(e, RegisterError::OutOfOrder { .. }));
    assert_eq!(r.lookup(at(T0), &aor()).unwrap().len(), 1);
}

#[test]
fn no_minimum_and_no_contact_limit_by_default() {
    // SIPhon's defaults when `min_expires`/`max_contacts` are unset: no 423, no limit.
    let r = registrar(RegistrarConfig::default());
    assert!(
        r.register(at(T0), &with_expires(req("c", 1, &["sip:a@1.1.1.1"]), 1))
            .is_ok()
    );
    let many: Vec<String> = (0..20).map(|i| format!("sip:a@10.0.0.{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let o = r.register(at(T0), &req("c", 2, &many)).unwrap();
    assert_eq!(o.bindings.len(), 21);
}

#[test]
fn interval_too_brief() {
    let r = registrar(RegistrarConfig {
        min_expires: 60,
        ..RegistrarConfig::default()
    });
    let e = r
        .register(at(T0), &with_expires(req("c", 1, &["sip:a@1.1.1.1"]), 30))
        .unwrap_err();
    assert_eq!(
        e,
        RegisterError::IntervalTooBrief {
            requested: 30,
            min_expires: 60
        }
    );
    assert_eq!(e.status(), (423, "Interval Too Brief"));
    assert_eq!(e.extra_headers(), [("Min-Expires", "60".to_owned())]);
    // Nothing was stored, even for a valid contact in the same request.
    let mut two = req("c", 2, &["sip:a@2.2.2.2"]);
    two.contacts.push(ContactEntry::Binding(ContactBinding {
        expires: Some(1),
        ..ContactBinding::new("sip:a@1.1.1.1")
    }));
    assert!(r.register(at(T0), &two).is_err());
    assert_eq!(r.aor_count().unwrap(), 0);
    // Zero is not "too brief".
    assert!(
        r.register(at(T0), &with_expires(req("c", 3, &["sip:a@1.1.1.1"]), 0))
            .is_ok()
    );
}

#[test]
fn max_expires_clamp() {
    let r = registrar(RegistrarConfig::default());
    let o = r
        .register(
            at(T0),
            &with_expires(req("c", 1, &["sip:a@1.1.1.1"]), 86_400),
        )
        .unwrap();
    assert_eq!(o.contact_header_values(), ["<sip:a@1.1.1.1>;expires=7200"]);
    // u32::MAX (the saturated value of a huge Expires) too.
    let o = r
        .register(
            at(T0),
            &with_expires(req("c", 2, &["sip:a@1.1.1.1"]), u32::MAX),
        )
        .unwrap();
    assert_eq!(o.bindings[0].remaining_secs(at(T0)), 7200);
}

#[test]
fn max_contacts_forbidden_and_503() {
    let cfg = RegistrarConfig {
        max_contacts: 2,
        ..RegistrarConfig::default()
    };
    let r = registrar(cfg.clone());
    r.register(at(T0), &with_expires(req("a", 1, &["sip:a@1.1.1.1"]), 600))
        .unwrap();
    r.register(at(T0 + 10), &req("b", 1, &["sip:a@2.2.2.2"]))
        .unwrap();
    let e = r
        .register(at(T0 + 20), &req("c", 1, &["sip:a@3.3.3.3"]))
        .unwrap_err();
    assert_eq!(e.status(), (403, "Too Many Contacts"));
    assert!(e.extra_headers().is_empty());
    assert_eq!(r.lookup(at(T0 + 20), &aor()).unwrap().len(), 2);
    // A refresh of an existing binding is still allowed at the limit.
    assert!(
        r.register(at(T0 + 30), &req("b", 2, &["sip:a@2.2.2.2"]))
            .is_ok()
    );
    // Replace one binding with another in one request: count does not grow.
    let mut swap = req("a", 2, &["sip:a@3.3.3.3"]);
    swap.contacts.insert(
        0,
        ContactEntry::Binding(ContactBinding {
            expires: Some(0),
            ..ContactBinding::new("sip:a@1.1.1.1")
        }),
    );
    assert!(r.register(at(T0 + 40), &swap).is_ok());

    let r = registrar(RegistrarConfig {
        too_many_contacts: TooManyContactsStatus::ServiceUnavailable,
        ..cfg
    });
    r.register(at(T0), &with_expires(req("a", 1, &["sip:a@1.1.1.1"]), 600))
        .unwrap();
    r.register(at(T0), &req("b", 1, &["sip:a@2.2.2.2"]))
        .unwrap();
    let e = r
        .register(at(T0 + 100), &req("c", 1, &["sip:a@3.3.3.3"]))
        .unwrap_err();
    assert_eq!(e.status().0, 503);
    // The 600 s binding expires first: in 500 s.
    assert_eq!(e.extra_headers(), [("Retry-After", "500".to_owned())]);
    // Expired bindings do not count against the limit.
    assert!(
        r.register(at(T0 + 601), &req("c", 2, &["sip:a@3.3.3.3"]))
            .is_ok()
    );
}

#[test]
fn q_ordering_on_lookup() {
    let r = registrar(RegistrarConfig::default());
    let mut q = req("c", 1, &[]);
    for (uri, qv) in [
        ("sip:a@low", Some("0.1")),
        ("sip:a@none", None),
        ("sip:a@mid", Some("0.5")),
        ("sip:a@high", Some("1.0")),
    ] {
        q.contacts.push(ContactEntry::Binding(ContactBinding {
            q: qv.map(|s| Q::parse(s).unwrap()),
            ..ContactBinding::new(uri)
        }));
    }
    r.register(at(T0), &q).unwrap();
    let uris: Vec<_> = r
        .lookup(at(T0), &aor())
        .unwrap()
        .into_iter()
        .map(|b| b.uri)
        .collect();
    // Absent q counts as 1; ties go to the most recently refreshed, then URI order.
    assert_eq!(uris, ["sip:a@high", "sip:a@none", "sip:a@mid", "sip:a@low"]);
    // A refresh makes "none" win the tie with "high".
    r.register(at(T0 + 5), &req("c", 2, &["sip:a@none"]))
        .unwrap();
    let first = &r.lookup(at(T0 + 5), &aor()).unwrap()[0];
    assert_eq!(first.uri, "sip:a@none");
    let o = r.register(at(T0 + 5), &req("c", 3, &[])).unwrap();
    assert!(o.contact_header_values()[3].ends_with(";q=0.1"));
}

#[test]
fn q_parse_and_display() {
    for (s, m) in [
        ("0", 0),
        ("0.5", 500),
        ("0.125", 125),
        ("1", 1000),
        ("1.000", 1000),
        ("0.", 0),
    ] {
        assert_eq!(Q::parse(s).map(Q::millis), Some(m), "{s}");
    }
    for s in ["1.5", "2", "0.1234", "-0", "0.x", "", ".5"] {
        assert_eq!(Q::parse(s), None, "{s}");
    }
    assert_eq!(Q::from_millis(500).unwrap().to_string(), "0.5");
    assert_eq!(Q::from_millis(120).unwrap().to_string(), "0.12");
    assert_eq!(Q::ONE.to_string(), "1");
    assert_eq!(Q::ZERO.to_string(), "0");
    assert_eq!(Q::from_millis(1001), None);
}

#[test]
fn call_id_cseq_ordering() {
    let r = registrar(RegistrarConfig::default());
    r.register(at(T0), &req("c1", 10, &["sip:a@1.1.1.1"]))
        .unwrap();
    // Same Call-ID, same CSeq: a retransmission that slipped past the transaction layer, or
    // a replay: refused with 500, nothing changes.
    let e = r
        .register(
            at(T0 + 1),
            &with_expires(req("c1", 10, &["sip:a@1.1.1.1"]), 0),
        )
        .unwrap_err();
    assert_eq!(
        e,
        RegisterError::OutOfOrder {
            cseq: 10,
            stored_cseq: 10
        }
    );
    assert_eq!(e.status(), (500, "Server Internal Error"));
    // Lower CSeq: refused too.
    assert!(
        r.register(at(T0 + 1), &req("c1", 9, &["sip:a@1.1.1.1"]))
            .is_err()
    );
    assert_eq!(r.lookup(at(T0 + 1), &aor()).unwrap().len(), 1);
    // A different Call-ID may update regardless of CSeq (another UA instance, §10.3 step 7).
    let o = r
        .register(at(T0 + 2), &req("c2", 1, &["sip:a@1.1.1.1"]))
        .unwrap();
    assert_eq!(kinds(&o), [ChangeKind::Refreshed]);
    assert_eq!(o.bindings[0].call_id, "c2");
    // Higher CSeq on the new Call-ID works.
    assert!(
        r.register(at(T0 + 3), &req("c2", 2, &["sip:a@1.1.1.1"]))
            .is_ok()
    );
    // All-or-nothing: a request with one good new contact and one out-of-order contact
    // changes nothing.
    let bad = req("c2", 2, &["sip:a@9.9.9.9", "sip:a@1.1.1.1"]);
    assert!(r.register(at(T0 + 4), &bad).is_err());
    assert_eq!(r.lookup(at(T0 + 4), &aor()).unwrap().len(), 1);
}

#[test]
fn path_and_metadata_kept() {
    let r = registrar(RegistrarConfig::default());
    let mut q = req("c", 1, &[]);
    q.path = vec![
        "<sip:p1.example.net;lr>".into(),
        "<sip:p2.example.net;lr>".into(),
    ];
    q.received = Some("sip:198.51.100.7:40000".into());
    q.user_agent = Some("phone/1.0".into());
    q.auth_user = Some("alice".into());
    q.contacts = vec![ContactEntry::Binding(ContactBinding {
        params: vec![
            ("+sip.instance".into(), Some("\"<urn:uuid:abc>\"".into())),
            ("reg-id".into(), Some("1".into())),
            ("expires".into(), Some("99".into())),
        ],
        ..ContactBinding::new("<sip:alice@192.0.2.4;ob>")
    })];
    let o = r.register(at(T0), &q).unwrap();
    let b = &o.bindings[0];
    assert_eq!(b.path, q.path);
    assert_eq!(b.instance_id.as_deref(), Some("urn:uuid:abc"));
    assert_eq!(b.reg_id, Some(1));
    assert_eq!(b.received, q.received);
    assert_eq!(b.auth_user.as_deref(), Some("alice"));
    assert_eq!(b.key, ContactKey::from_instance("urn:uuid:abc", 1));
    let h = o.reply_headers(&q, true);
    assert_eq!(h.len(), 3);
    assert_eq!(h[1], ("Path", "<sip:p1.example.net;lr>".to_owned()));
    assert_eq!(o.reply_headers(&q, false).len(), 1);
    assert_eq!(
        o.contact_header_values(),
        ["<sip:alice@192.0.2.4;ob>;expires=3600;+sip.instance=\"<urn:uuid:abc>\";reg-id=1"]
    );
    // RFC 5626: same instance and reg-id from a new address replaces the binding.
    let mut moved = q.clone();
    moved.cseq = 2;
    moved.path = vec!["<sip:p3.example.net;lr>".into()];
    if let ContactEntry::Binding(c) = &mut moved.contacts[0] {
        c.uri = "sip:alice@203.0.113.9;ob".into();
    }
    let o = r.register(at(T0 + 1), &moved).unwrap();
    assert_eq!(o.bindings.len(), 1);
    assert_eq!(o.bindings[0].uri, "sip:alice@203.0.113.9;ob");
    assert_eq!(o.bindings[0].path, ["<sip:p3.example.net;lr>"]);
    assert_eq!(kinds(&o), [ChangeKind::Refreshed]);
}

#[test]
fn expiry_sweep_virtual_time() {
    let r = registrar(RegistrarConfig::default());
    r.register(at(T0), &with_expires(req("c", 1, &["sip:a@1.1.1.1"]), 60))
        .unwrap();
    r.register(at(T0), &with_expires(req("c", 2, &["sip:a@2.2.2.2"]), 120))
        .unwrap();
    let bob = Aor::from_uri("sip:bob@example.com").unwrap();
    let mut b = with_expires(req("x", 1, &["sip:bob@3.3.3.3"]), 60);
    b.aor = bob.clone();
    r.register(at(T0), &b).unwrap();

    assert!(r.sweep(at(T0 + 59)).unwrap().is_empty());
    assert_eq!(r.store().binding_count().unwrap(), 3);
    // Lookups stop returning a binding at its expiry even before a sweep.
    assert_eq!(r.lookup(at(T0 + 60), &aor()).unwrap().len(), 1);
    assert!(!r.is_registered(at(T0 + 60), &bob).unwrap());

    let mut ev = r.sweep(at(T0 + 60)).unwrap();
    ev.sort_by(|a, b| a.aor.cmp(&b.aor));
    assert_eq!(ev.len(), 2);
    assert!(ev.iter().all(|e| e.kind == ChangeKind::Expired));
    assert_eq!(ev[0].aor, aor());
    assert_eq!(ev[0].contacts[0].uri, "sip:a@1.1.1.1");
    assert_eq!(ev[1].aor, bob);
    assert_eq!(r.aor_count().unwrap(), 1);
    assert_eq!(r.store().binding_count().unwrap(), 1);

    // An expired-but-unswept binding is reported as expired by the next REGISTER.
    let o = r
        .register(at(T0 + 200), &req("c", 3, &["sip:a@4.4.4.4"]))
        .unwrap();
    assert_eq!(kinds(&o), [ChangeKind::Expired, ChangeKind::Registered]);
    assert_eq!(r.sweep(at(T0 + 200)).unwrap().len(), 0);
    assert_eq!(r.aor_count().unwrap(), 1);
}

#[test]
fn remove_expire_remove_contact() {
    let r = registrar(RegistrarConfig::default());
    r.register(at(T0), &req("c", 1, &["sip:a@1.1.1.1", "sip:a@2.2.2.2"]))
        .unwrap();
    let e = r
        .remove_contact(at(T0), &aor(), "<SIP:a@1.1.1.1>")
        .unwrap()
        .unwrap();
    assert_eq!(e.kind, ChangeKind::Deregistered);
    assert_eq!(r.lookup(at(T0), &aor()).unwrap().len(), 1);
    assert!(
        r.remove_contact(at(T0), &aor(), "sip:a@9.9.9.9")
            .unwrap()
            .is_none()
    );
    let e = r.expire(at(T0), &aor()).unwrap().unwrap();
    assert_eq!(e.kind.as_str(), "expired");
    assert_eq!(r.aor_count().unwrap(), 0);
    assert!(r.remove(at(T0), &aor()).unwrap().is_none());
}

#[test]
fn auth_aor_match() {
    let r = registrar(RegistrarConfig {
        enforce_auth_aor_match: true,
        ..RegistrarConfig::default()
    });
    let mut q = req("c", 1, &["sip:a@1.1.1.1"]);
    q.auth_user = Some("mallory".into());
    let e = r.register(at(T0), &q).unwrap_err();
    assert_eq!(e, RegisterError::AuthAorMismatch);
    assert_eq!(e.status().0, 403);
    q.auth_user = Some("alice".into());
    assert!(r.register(at(T0), &q).is_ok());
}

#[test]
fn store_trait_defaults_and_object_safety() {
    let store: Arc<dyn LocationStore> = Arc::new(MemoryLocationStore::new());
    let r = registrar(RegistrarConfig::default());
    let o = r
        .register(at(T0), &req("c", 1, &["sip:a@1.1.1.1"]))
        .unwrap();
    let b = o.bindings[0].clone();
    store.upsert(&aor(), b.clone()).unwrap();
    store.upsert(&aor(), b.clone()).unwrap();
    assert_eq!(store.get(&aor()).unwrap().len(), 1);
    assert_eq!(store.remove(&aor(), &b.key).unwrap(), Some(b.clone()));
    assert_eq!(store.remove(&aor(), &b.key).unwrap(), None);
    assert_eq!(store.aor_count().unwrap(), 0);
    store.upsert(&aor(), b).unwrap();
    assert_eq!(store.remove_aor(&aor()).unwrap().len(), 1);
    assert_eq!(store.binding_count().unwrap(), 0);
    fn assert_send_sync<T: Send + Sync + ?Sized>() {}
    assert_send_sync::<dyn LocationStore>();
    assert_send_sync::<Registrar>();
}

#[test]
fn concurrent_registrations_on_one_aor_are_atomic() {
    // Several cores registering different contacts for one AOR at once: every update is
    // applied (none lost to a read-modify-write race) and the limit holds exactly.
    let r = registrar(RegistrarConfig {
        max_contacts: 50,
        ..RegistrarConfig::default()
    });
    let refused = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (r, refused) = (&r, &refused);
            s.spawn(move || {
                for i in 0..20 {
                    let uri = format!("sip:a@10.0.{t}.{i}");
                    match r.register(at(T0), &req(&format!("c{t}-{i}"), 1, &[&uri])) {
                        Ok(_) => {}
                        Err(RegisterError::TooManyContacts { .. }) => {
                            refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
    });
    assert_eq!(r.lookup(at(T0), &aor()).unwrap().len(), 50);
    assert_eq!(refused.into_inner(), 30);
}
