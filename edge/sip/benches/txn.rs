//! Transaction layer micro-benchmarks (criterion): server-transaction lookup among 10 000 live
//! transactions (RFC 3261 §17.2.3 key), absorbing a request retransmission (lookup + resend of
//! the last response), matching a response to one of 10 000 client transactions (§17.1.3),
//! and projecting a parsed `Message` into the transaction layer's view.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use siphon_sip::Message;
use siphon_sip::transaction::{
    Config, Remote, RequestParts, TransactionLayer, Transport, TxRequest, TxResponse,
};

const LIVE: usize = 10_000;

fn request(method: &str, i: usize) -> TxRequest {
    TxRequest::build(RequestParts {
        method: method.into(),
        uri: "sip:bob@biloxi.example.com".into(),
        vias: vec![format!(
            "SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK{i:08x}a7d;rport"
        )],
        from: "Alice <sip:alice@atlanta.example.com>;tag=1928301774".into(),
        to: "Bob <sip:bob@biloxi.example.com>".into(),
        call_id: format!("{i}@pc33.atlanta.example.com"),
        cseq: 1,
        max_forwards: Some(70),
        ..RequestParts::default()
    })
}

fn peer() -> Remote {
    Remote {
        addr: SocketAddr::from(([192, 0, 2, 10], 5060)),
        transport: Transport::Udp,
    }
}

fn drain(l: &mut TransactionLayer) {
    while l.poll_transmit().is_some() {}
    while l.poll_event().is_some() {}
}

fn bench(c: &mut Criterion) {
    #[allow(clippy::disallowed_methods)] // benchmark: one origin for the value-type clock
    let now = Instant::now();

    let mut servers = TransactionLayer::new(Config::default());
    for i in 0..LIVE {
        servers.handle_request(now, peer(), request("INVITE", i));
    }
    drain(&mut servers);
    let probe = request("INVITE", LIVE / 2);
    c.bench_function("txn/server_lookup_10k", |b| {
        b.iter(|| black_box(servers.find_server(black_box(&probe))))
    });
    c.bench_function("txn/absorb_retransmission_10k", |b| {
        b.iter_batched(
            || probe.clone(),
            |req| {
                servers.handle_request(now, peer(), req);
                black_box(servers.poll_transmit())
            },
            BatchSize::SmallInput,
        )
    });

    let mut clients = TransactionLayer::new(Config::default());
    for i in 0..LIVE {
        clients
            .send_request(now, peer(), request("INVITE", i))
            .expect("unique branch");
    }
    drain(&mut clients);
    let ringing = TxResponse::to_request(&probe, 180, "Ringing", Some("b1"));
    c.bench_function("txn/client_response_match_10k", |b| {
        b.iter_batched(
            || ringing.clone(),
            |resp| {
                clients.handle_response(now, peer(), resp);
                black_box(clients.poll_event())
            },
            BatchSize::SmallInput,
        )
    });

    let wire = Bytes::from(request("INVITE", 1).bytes().to_vec());
    let msg = Message::parse(wire).expect("valid INVITE");
    c.bench_function("txn/tx_request_from_message", |b| {
        b.iter(|| black_box(TxRequest::try_from(black_box(&msg))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
