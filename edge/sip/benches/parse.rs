//! Parser and serializer micro-benchmarks (criterion): parse a typical INVITE with SDP
//! (~900 bytes), a REGISTER, a 200 OK; serialize a relayed INVITE (Via push, Max-Forwards
//! decrement, Record-Route insert, Route pop). Goal: ≤ 500 ns per INVITE parse (DESIGN.md).
#![allow(missing_docs)]

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use siphon_sip::Message;

const INVITE: &[u8] = b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
To: \"Bob\" <sip:bob@biloxi.example.com>\r\n\
From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.example.com:5060;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, SUBSCRIBE, INFO, UPDATE\r\n\
Supported: replaces, timer, 100rel\r\n\
User-Agent: Example-Phone/4.2.1\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 263\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\n\
s=Session SDP\r\n\
c=IN IP4 192.0.2.101\r\n\
t=0 0\r\n\
m=audio 49172 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

const REGISTER: &[u8] = b"REGISTER sip:registrar.biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Bob <sip:bob@biloxi.example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4:5060;transport=udp>;expires=7200\r\n\
Expires: 7200\r\n\
User-Agent: Example-Phone/4.2.1\r\n\
Content-Length: 0\r\n\
\r\n";

const OK200: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP p1.example.com;branch=z9hG4bK2d4790.1;received=192.0.2.3\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport=5060;received=192.0.2.101\r\n\
Record-Route: <sip:p1.example.com;lr>\r\n\
To: \"Bob\" <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
From: \"Alice\" <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:bob@192.0.2.4>\r\n\
Content-Length: 0\r\n\
\r\n";

fn parse_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    for (name, msg) in [
        ("invite_sdp", INVITE),
        ("register", REGISTER),
        ("200_ok", OK200),
    ] {
        let bytes = Bytes::from_static(msg);
        g.throughput(Throughput::Bytes(msg.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| Message::parse(black_box(bytes.clone())).expect("parses"))
        });
    }
    // Parse plus the hot typed fields a transaction layer reads on every message.
    let bytes = Bytes::from_static(INVITE);
    g.bench_function("invite_sdp+hot_headers", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(bytes.clone())).expect("parses");
            let v = m.top_via().expect("via");
            let cseq = m.cseq().expect("cseq");
            let cid = m.call_id().expect("call-id");
            let ft = m.from_tag().expect("from");
            black_box((v.branch(), cseq.seq, cid.as_str().len(), ft));
        })
    });
    g.finish();
}

fn serialize_benches(c: &mut Criterion) {
    let m = Message::parse(Bytes::from_static(INVITE)).expect("parses");
    let mut out = Vec::with_capacity(2048);
    c.bench_function("serialize/relay_invite", |b| {
        b.iter(|| {
            out.clear();
            let mut e = m.edit();
            e.push_via("SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK.c1.8f3a9d2e")
                .expect("via");
            e.decrement_max_forwards().expect("mf");
            e.insert_record_route("<sip:192.0.2.10:5060;lr>")
                .expect("rr");
            e.pop_route().expect("route");
            e.write_to(&mut out);
            black_box(out.len());
        })
    });
}

criterion_group!(benches, parse_benches, serialize_benches);
criterion_main!(benches);
