//! Micro benchmarks for digest authentication and the registrar (owner: sipreg).
//!
//! `cargo bench -p siphon-sip --bench auth_registrar`. What a REGISTER with digest costs in
//! the Rust core: parse the Authorization value, verify it (HMAC nonce check, HA1 from a
//! password, response hash, nc window), build a 401, and apply a refresh to the store.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use siphon_sip::auth::{
    Algorithm, AuthKind, Credential, DigestAuth, DigestChallenge, DigestConfig, DigestCredentials,
    MemoryUserStore, RequestInfo, answer_challenge,
};
use siphon_sip::registrar::{
    Aor, ContactBinding, ContactEntry, MemoryLocationStore, RegisterRequest, Registrar,
    RegistrarConfig,
};

const T0: u64 = 1_800_000_000;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn digest(c: &mut Criterion) {
    let auth = DigestAuth::new(DigestConfig::new("example.com"), b"bench-secret", 1);
    let users = MemoryUserStore::new();
    users.insert(None, "alice", Credential::Password("wonderland".into()));
    let info = RequestInfo {
        method: "REGISTER",
        request_uri: Some("sip:example.com"),
        realm: None,
        secret: None,
    };
    for alg in [Algorithm::Sha256, Algorithm::Md5] {
        let ch: DigestChallenge = auth
            .challenges(at(T0), None, false)
            .into_iter()
            .find(|c| c.algorithm() == Some(alg))
            .expect("offered");
        let mut nc = 0u32;
        c.bench_function(&format!("digest_verify_{}", alg.name()), |b| {
            b.iter_batched(
                || {
                    nc += 1;
                    answer_challenge(
                        &ch,
                        "alice",
                        "wonderland",
                        "REGISTER",
                        "sip:example.com",
                        nc,
                        "c0ffee",
                    )
                    .expect("answer")
                },
                |creds| auth.verify(at(T0), &info, &creds, &users).expect("valid"),
                BatchSize::SmallInput,
            );
        });
    }
    let wire = answer_challenge(
        &auth.challenges(at(T0), None, false)[0],
        "alice",
        "wonderland",
        "REGISTER",
        "sip:example.com",
        1,
        "c0ffee",
    )
    .expect("answer")
    .to_string();
    c.bench_function("digest_parse_credentials", |b| {
        b.iter(|| DigestCredentials::parse(black_box(&wire)).expect("parses"));
    });
    c.bench_function("digest_challenge_reply_401", |b| {
        b.iter(|| auth.challenge_reply(at(T0), AuthKind::Www, None, None));
    });
}

fn registrar(c: &mut Criterion) {
    let r = Registrar::new(
        RegistrarConfig::default(),
        Arc::new(MemoryLocationStore::new()),
    );
    // 10 000 AORs with one binding each, then refresh one of them repeatedly.
    for i in 0..10_000u32 {
        let mut q = RegisterRequest::new(
            Aor::from_uri(&format!("sip:user{i}@example.com")).expect("aor"),
            &format!("cid{i}"),
            1,
        );
        q.contacts = vec![ContactEntry::Binding(ContactBinding::new(&format!(
            "sip:user{i}@192.0.2.{}:5060",
            i % 250
        )))];
        r.register(at(T0), &q).expect("registers");
    }
    let aor = Aor::from_uri("sip:user42@example.com").expect("aor");
    let mut cseq = 1;
    c.bench_function("registrar_refresh_10k_aors", |b| {
        b.iter(|| {
            cseq += 1;
            let mut q = RegisterRequest::new(aor.clone(), "cid42", cseq);
            q.contacts = vec![ContactEntry::Binding(ContactBinding::new(
                "sip:user42@192.0.2.42:5060",
            ))];
            r.register(at(T0 + 1), &q).expect("refresh")
        });
    });
    c.bench_function("registrar_lookup_10k_aors", |b| {
        b.iter(|| r.lookup(at(T0 + 1), black_box(&aor)).expect("lookup"));
    });
}

criterion_group!(benches, digest, registrar);
criterion_main!(benches);
