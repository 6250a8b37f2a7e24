//! What the TU (the routing script) changes through the proxy core, driven by hand: an edited
//! request keeps the proxy's own processing (received/rport, Route pop, Max-Forwards), a
//! branch's Path replaces the Route set, an edited reply is relayed in place of the held one,
//! a TU-chosen To tag, and RFC 3262 reliable provisionals (headers, retransmission, PRACK).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::transaction::{
    Config, Outgoing, Remote, RequestParts, ResponseParts, Transmit, Transport, TxRequest,
    TxResponse,
};

/// The origin of the test's virtual clock (time only moves when a test says so).
fn origin() -> Instant {
    #[allow(clippy::disallowed_methods)] // tests only: the origin of the virtual clock
    Instant::now()
}

fn ip(n: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, n], 5060))
}

fn udp(addr: SocketAddr) -> Remote {
    Remote {
        addr,
        transport: Transport::Udp,
    }
}

fn proxy(hooks: Hooks) -> Proxy {
    Proxy::new(ProxyConfig {
        core: 1,
        interfaces: vec![Interface {
            addr: ip(5),
            transport: Transport::Udp,
        }],
        domains: vec!["proxy.example.com".into()],
        transactions: Config {
            trying_delay: Duration::ZERO,
            ..Config::default()
        },
        hooks,
        udp_mtu: DEFAULT_UDP_MTU,
    })
}

/// An INVITE as the UA at 10.0.0.1:5070 sent it: its Via names a private address with an empty
/// `rport`, and it carries a pre-loaded Route naming us, then 10.0.0.9.
fn received(extra: &[(&str, &str)]) -> RequestParts {
    RequestParts {
        method: "INVITE".into(),
        uri: "sip:bob@proxy.example.com".into(),
        vias: vec!["SIP/2.0/UDP 192.168.1.2:5060;rport;branch=z9hG4bKtu1".into()],
        routes: vec!["<sip:10.0.0.5;lr>".into(), "<sip:10.0.0.9;lr>".into()],
        from: "<sip:alice@example.com>;tag=a1".into(),
        to: "<sip:bob@proxy.example.com>".into(),
        call_id: "tu-1".into(),
        cseq: 1,
        max_forwards: Some(70),
        headers: extra
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        ..RequestParts::default()
    }
}

const UA: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
    5070,
);

/// Feed the request; returns its context (the TU event).
fn start(p: &mut Proxy, now: Instant, parts: RequestParts) -> ContextId {
    p.handle_request(now, udp(UA), 0, TxRequest::build(parts));
    let mut ctx = None;
    while let Some(ev) = p.poll_event() {
        if let ProxyEvent::Request { ctx: c, .. } = ev {
            ctx = Some(c);
        }
    }
    ctx.expect("a request event")
}

fn transmits(p: &mut Proxy) -> Vec<Transmit> {
    std::iter::from_fn(|| p.poll_transmit()).collect()
}

fn requests_to(ts: &[Transmit], to: SocketAddr) -> Vec<TxRequest> {
    ts.iter()
        .filter(|t| t.destination.addr == to)
        .filter_map(|t| match &t.message {
            Outgoing::Request(r) => Some(r.clone()),
            Outgoing::Response(_) => None,
        })
        .collect()
}

fn responses(ts: &[Transmit]) -> Vec<TxResponse> {
    ts.iter()
        .filter_map(|t| match &t.message {
            Outgoing::Response(r) if r.status() > 100 => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn target(to: SocketAddr, routes: &[&str]) -> Target {
    Target {
        uri: Some(format!("sip:bob@{to}")),
        destination: udp(to),
        q: 1000,
        routes: routes.iter().map(|r| (*r).to_owned()).collect(),
        fallbacks: Vec::new(),
    }
}

#[test]
fn an_edited_request_keeps_received_rport_route_pop_and_max_forwards() {
    let now = origin();
    let mut p = proxy(Hooks::default());
    let ctx = start(&mut p, now, received(&[]));
    // The TU edits the request as it was received (its view has our Route and no received).
    let edited = TxRequest::build(received(&[("X-Edit", "yes")]));
    p.set_request(ctx, edited).unwrap();
    p.forward(now, ctx, vec![target(ip(9), &[])], false)
        .unwrap();
    let fwd = &requests_to(&transmits(&mut p), ip(9))[0];
    assert_eq!(fwd.header_values("X-Edit").collect::<Vec<_>>(), ["yes"]);
    assert_eq!(
        &*fwd.vias()[1],
        "SIP/2.0/UDP 192.168.1.2:5060;branch=z9hG4bKtu1;received=10.0.0.1;rport=5070"
    );
    assert_eq!(fwd.routes(), [Box::from("<sip:10.0.0.9;lr>")]);
    assert_eq!(fwd.max_forwards(), Some(69));
}

#[test]
fn a_branch_path_replaces_the_route_set() {
    let now = origin();
    let mut p = proxy(Hooks::default());
    let ctx = start(&mut p, now, received(&[]));
    let targets = vec![
        target(ip(7), &["<sip:10.0.0.7;lr>", "<sip:10.0.0.8;lr>"]),
        target(ip(9), &[]),
    ];
    p.forward(now, ctx, targets, false).unwrap();
    let ts = transmits(&mut p);
    let via_path = &requests_to(&ts, ip(7))[0];
    assert_eq!(
        via_path.routes(),
        [
            Box::from("<sip:10.0.0.7;lr>"),
            Box::from("<sip:10.0.0.8;lr>")
        ]
    );
    assert_eq!(via_path.uri(), "sip:bob@10.0.0.7:5060");
    // The other branch keeps what was left of the request's own Route set.
    let plain = &requests_to(&ts, ip(9))[0];
    assert_eq!(plain.routes(), [Box::from("<sip:10.0.0.9;lr>")]);
}

/// The response a UAS at `from` sends to the forwarded `request`.
fn answer_from(request: &TxRequest, status: u16, tag: &str) -> TxResponse {
    TxResponse::build(ResponseParts {
        status,
        reason: "Ringing".into(),
        vias: request.vias().iter().map(|v| v.to_string()).collect(),
        from: request.from_value().into(),
        to: format!("{};tag={tag}", request.to_value()),
        call_id: request.call_id().into(),
        cseq: request.cseq(),
        cseq_method: request.method().into(),
        ..ResponseParts::default()
    })
}

#[test]
fn an_edited_reply_is_relayed_in_place_of_the_held_one() {
    let now = origin();
    let mut p = proxy(Hooks {
        replies: true,
        failures: false,
    });
    let ctx = start(&mut p, now, received(&[]));
    p.forward(now, ctx, vec![target(ip(9), &[])], false)
        .unwrap();
    let fwd = requests_to(&transmits(&mut p), ip(9)).remove(0);
    p.handle_response(now, udp(ip(9)), answer_from(&fwd, 180, "b1"));
    let (reply, held) = std::iter::from_fn(|| p.poll_event())
        .find_map(|ev| match ev {
            ProxyEvent::Reply {
                reply, response, ..
            } => Some((reply, response)),
            _ => None,
        })
        .expect("a held reply");
    let mut parts = held.parts();
    parts.headers.push(("X-Script".into(), "edited".into()));
    let mut wrong = parts.clone();
    wrong.status = 183;
    assert_eq!(
        p.relay_reply_with(now, reply, TxResponse::build(wrong)),
        Err(ProxyError::EditedStatus)
    );
    p.relay_reply_with(now, reply, TxResponse::build(parts))
        .unwrap();
    let up = responses(&transmits(&mut p));
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].status(), 180);
    assert_eq!(
        up[0].header_values("X-Script").collect::<Vec<_>>(),
        ["edited"]
    );
    assert_eq!(up[0].vias().len(), 1, "our Via is still removed");
}

#[test]
fn the_tu_chooses_the_to_tag() {
    let now = origin();
    let mut p = proxy(Hooks::default());
    let ctx = start(&mut p, now, received(&[]));
    let answer = Answer {
        status: 486,
        reason: "Busy Here".into(),
        to_tag: Some("script-tag".into()),
        ..Answer::default()
    };
    p.answer(now, ctx, answer).unwrap();
    let up = responses(&transmits(&mut p));
    assert_eq!(up[0].to_tag(), Some("script-tag"));
    assert!(up[0].header_values(":to-tag").next().is_none());
}

fn prack(rack: &str) -> TxRequest {
    TxRequest::build(RequestParts {
        method: "PRACK".into(),
        uri: "sip:bob@10.0.0.5".into(),
        vias: vec!["SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKpr1".into()],
        from: "<sip:alice@example.com>;tag=a1".into(),
        to: "<sip:bob@proxy.example.com>;tag=rel".into(),
        call_id: "tu-1".into(),
        cseq: 2,
        max_forwards: Some(70),
        headers: vec![("RAck".into(), rack.into())],
        ..RequestParts::default()
    })
}

#[test]
fn a_reliable_provisional_is_retransmitted_until_its_prack() {
    let t1 = Duration::from_millis(500);
    let now = origin();
    let mut p = proxy(Hooks::default());
    let ctx = start(&mut p, now, received(&[("Supported", "timer, 100rel")]));
    let _ = transmits(&mut p);
    let answer = Answer {
        status: 183,
        reason: "Session Progress".into(),
        to_tag: Some("rel".into()),
        reliable: true,
        ..Answer::default()
    };
    p.answer(now, ctx, answer).unwrap();
    let first = responses(&transmits(&mut p));
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].header_values("Require").collect::<Vec<_>>(),
        ["100rel"]
    );
    assert_eq!(first[0].header_values("RSeq").collect::<Vec<_>>(), ["1"]);
    // T1, then 2*T1 later: sent again.
    assert_eq!(p.poll_timeout(), Some(now + t1));
    p.handle_timeout(now + t1);
    assert_eq!(responses(&transmits(&mut p)).len(), 1);
    assert_eq!(p.poll_timeout(), Some(now + t1 * 3));
    // A PRACK for another RSeq is not ours: the TU sees it.
    p.handle_request(now + t1, udp(UA), 0, prack("2 1 INVITE"));
    assert!(matches!(p.poll_event(), Some(ProxyEvent::Request { .. })));
    let _ = transmits(&mut p);
    // The matching PRACK is answered here and stops the retransmissions.
    let mut matching = prack("1 1 INVITE").parts();
    matching.vias[0] = "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKpr2".into();
    p.handle_request(now + t1, udp(UA), 0, TxRequest::build(matching));
    assert!(p.poll_event().is_none());
    let ok: Vec<_> = responses(&transmits(&mut p));
    assert_eq!(ok.len(), 1);
    assert_eq!((ok[0].status(), ok[0].cseq_method()), (200, "PRACK"));
    p.handle_timeout(now + t1 * 3);
    assert!(responses(&transmits(&mut p)).is_empty());
}

#[test]
fn reliable_is_ignored_when_the_uac_does_not_support_100rel() {
    let now = origin();
    let mut p = proxy(Hooks::default());
    let ctx = start(&mut p, now, received(&[]));
    let answer = Answer {
        status: 180,
        reason: "Ringing".into(),
        reliable: true,
        ..Answer::default()
    };
    p.answer(now, ctx, answer).unwrap();
    let up = responses(&transmits(&mut p));
    assert!(up[0].header_values("Require").next().is_none());
    assert!(up[0].header_values("RSeq").next().is_none());
}

/// A target at `to` whose next hop also answers at `fallbacks` (RFC 3263 §4.3).
fn target_with_fallbacks(to: SocketAddr, fallbacks: &[SocketAddr]) -> Target {
    Target {
        fallbacks: fallbacks.iter().map(|a| udp(*a)).collect(),
        ..target(to, &[])
    }
}

#[test]
fn a_503_moves_the_branch_to_the_next_address() {
    let now = origin();
    let mut p = proxy(Hooks::default());
    let mut parts = received(&[]);
    parts.routes.clear();
    let ctx = start(&mut p, now, parts);
    p.forward(
        now,
        ctx,
        vec![target_with_fallbacks(ip(7), &[ip(8)])],
        false,
    )
    .unwrap();
    let ts = transmits(&mut p);
    let first = requests_to(&ts, ip(7));
    assert_eq!(first.len(), 1);
    p.handle_response(
        now,
        udp(ip(7)),
        TxResponse::to_request(&first[0], 503, "Service Unavailable", Some("t7")),
    );
    let ts = transmits(&mut p);
    let second = requests_to(&ts, ip(8));
    assert_eq!(second.len(), 1, "the request goes to the next address");
    assert_ne!(
        second[0].vias()[0],
        first[0].vias()[0],
        "a new client transaction has a new branch"
    );
    assert!(
        responses(&ts)
            .iter()
            .all(|r| r.status() != 503 && r.status() != 500),
        "the caller sees no failure yet"
    );
    // The last address answers 503 too: now the caller gets the failure.
    p.handle_response(
        now,
        udp(ip(8)),
        TxResponse::to_request(&second[0], 503, "Service Unavailable", Some("t8")),
    );
    let ts = transmits(&mut p);
    assert!(responses(&ts).iter().any(|r| r.status() >= 500));
}

#[test]
fn a_transport_error_fails_over_and_fails_the_last_at_once() {
    let now = origin();
    let mut p = proxy(Hooks::default());
    let mut parts = received(&[]);
    parts.routes.clear();
    let ctx = start(&mut p, now, parts);
    p.forward(
        now,
        ctx,
        vec![target_with_fallbacks(ip(7), &[ip(8)])],
        false,
    )
    .unwrap();
    let _ = transmits(&mut p);
    p.transport_failed(now, udp(ip(7)));
    let ts = transmits(&mut p);
    assert_eq!(requests_to(&ts, ip(8)).len(), 1);
    assert!(responses(&ts).is_empty());
    // The last address fails too: a 503 upstream now (500 after §16.7 step 6), not after
    // Timer B.
    p.transport_failed(now, udp(ip(8)));
    let ts = transmits(&mut p);
    let finals = responses(&ts);
    assert_eq!(finals.len(), 1);
    assert!(finals[0].status() >= 500);
}

/// §16.6: the relayed request is the received bytes plus exactly the proxy's edits (our Via
/// on top, `received`/`rport` on the sender's, our Route popped, Max-Forwards decremented,
/// Record-Route added), every other byte as received: compact names, odd spacing, unknown
/// headers and the body included. The 180 back is the received bytes minus our Via.
#[test]
fn a_relayed_request_is_the_received_bytes_plus_the_edits() {
    let now = origin();
    let mut p = proxy(Hooks::default());
    let received = "INVITE sip:bob@10.0.0.9:5060 SIP/2.0\r\n\
v: SIP/2.0/UDP 192.0.2.1:5070;rport;branch=z9hG4bK-e1\r\n\
Route: <sip:10.0.0.5;lr>\r\n\
Max-Forwards:   12\r\n\
f: <sip:alice@example.com>;tag=a1\r\n\
To:<sip:bob@example.com>\r\n\
i: edit-exact\r\n\
CSeq: 7 INVITE\r\n\
X-Odd  :  kept as is\r\n\
Content-Type: application/sdp\r\n\
l: 5\r\n\
\r\n\
v=0\r\n";
    let msg = crate::Message::parse(received.as_bytes().to_vec()).unwrap();
    p.handle_request(now, udp(UA), 0, TxRequest::try_from(&msg).unwrap());
    let mut ctx = None;
    while let Some(ev) = p.poll_event() {
        if let ProxyEvent::Request { ctx: c, .. } = ev {
            ctx = Some(c);
        }
    }
    let ctx = ctx.expect("a request event");
    p.forward(now, ctx, vec![target(ip(9), &[])], true).unwrap();
    let fwd = requests_to(&transmits(&mut p), ip(9));
    assert_eq!(fwd.len(), 1);
    let branch = fwd[0].branch().unwrap().to_string();
    let expected = format!(
        "INVITE sip:bob@10.0.0.9:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5060;branch={branch};rport\r\n\
v: SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK-e1;received=10.0.0.1;rport=5070\r\n\
Record-Route: <sip:10.0.0.5:5060;lr>\r\n\
Max-Forwards: 11\r\n\
f: <sip:alice@example.com>;tag=a1\r\n\
To:<sip:bob@example.com>\r\n\
i: edit-exact\r\n\
CSeq: 7 INVITE\r\n\
X-Odd  :  kept as is\r\n\
Content-Type: application/sdp\r\n\
l: 5\r\n\
\r\n\
v=0\r\n"
    );
    assert_eq!(String::from_utf8_lossy(fwd[0].bytes()), expected);
    // The 180 back: the callee's bytes minus our Via, nothing else touched.
    let ringing = format!(
        "SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5060;branch={branch};rport=5060, \
SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK-e1;received=10.0.0.1;rport=5070\r\n\
Record-Route: <sip:10.0.0.5:5060;lr>\r\n\
f: <sip:alice@example.com>;tag=a1\r\nTo:<sip:bob@example.com>;tag=b\r\n\
i: edit-exact\r\nCSeq: 7 INVITE\r\nX-Callee:  1\r\nContent-Length: 0\r\n\r\n"
    );
    let r = crate::Message::parse(ringing.clone().into_bytes()).unwrap();
    p.handle_response(now, udp(ip(9)), TxResponse::try_from(&r).unwrap());
    let up = responses(&transmits(&mut p));
    assert_eq!(up.len(), 1);
    let our_via = format!("SIP/2.0/UDP 10.0.0.5:5060;branch={branch};rport=5060, ");
    assert_eq!(
        String::from_utf8_lossy(up[0].bytes()),
        ringing.replacen(&our_via, "", 1)
    );
}
