//! Proxy core scenarios (RFC 3261 §16) on the simulated network: forking and response
//! aggregation, CANCEL, timeouts, Record-Route and loose/strict routing, Max-Forwards, rport,
//! loop detection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::transaction::sim::{Agent, Net, TxnNode, addr, ms, udp};
use crate::transaction::{
    Config, Event, Outgoing, Remote, RequestParts, TransactionLayer, Transmit, Transport,
    TxRequest, TxResponse,
};

const P: u8 = 5;

enum Decision {
    Forward(Vec<Target>, bool),
    Respond(u16),
}

type Router = Box<dyn FnMut(&TxRequest) -> Decision>;
type ReplyFilter = Box<dyn FnMut(&TxResponse) -> bool>;
type FailureRoute = Box<dyn FnMut(&TxResponse) -> Option<Vec<Target>>>;

struct ProxyNode {
    proxy: Proxy,
    route: Router,
    on_reply: Option<ReplyFilter>,
    on_failure: Option<FailureRoute>,
    failures: Vec<u16>,
    start: Instant,
    completed: Vec<(Duration, u16)>,
    requests: Vec<TxRequest>,
    /// Outcomes of `send_request`: final status, or `None` on timeout.
    uac: Vec<Option<u16>>,
}

fn config() -> ProxyConfig {
    ProxyConfig {
        core: 3,
        interfaces: vec![
            Interface {
                addr: addr(P),
                transport: Transport::Udp,
            },
            Interface {
                addr: addr(P),
                transport: Transport::Tcp,
            },
        ],
        domains: vec!["proxy.example.com".into()],
        transactions: Config {
            trying_delay: Duration::ZERO,
            ..Config::default()
        },
        hooks: Hooks::default(),
        udp_mtu: DEFAULT_UDP_MTU,
    }
}

/// Next hop of a request: the top Route, else the Request-URI; IP literals only.
fn resolve(request: &TxRequest) -> Remote {
    let (host, port) = uri_host_port(next_hop_uri(request)).unwrap();
    Remote {
        addr: SocketAddr::new(host.parse().unwrap(), port.unwrap_or(5060)),
        transport: Transport::Udp,
    }
}

impl ProxyNode {
    fn new(net: &Net, route: Router) -> Self {
        Self::with_config(net, route, config())
    }

    fn with_config(net: &Net, route: Router, config: ProxyConfig) -> Self {
        Self {
            proxy: Proxy::new(config),
            route,
            on_reply: None,
            on_failure: None,
            failures: Vec::new(),
            start: net.start,
            completed: Vec::new(),
            requests: Vec::new(),
            uac: Vec::new(),
        }
    }

    fn drain(&mut self, now: Instant) {
        while let Some(ev) = self.proxy.poll_event() {
            match ev {
                ProxyEvent::Request { ctx, request, .. } => {
                    self.requests.push(request.clone());
                    match (self.route)(&request) {
                        Decision::Forward(targets, rr) => {
                            self.proxy.forward(now, ctx, targets, rr).unwrap();
                        }
                        Decision::Respond(status) => {
                            self.proxy.respond(now, ctx, status, "Routed").unwrap();
                        }
                    }
                }
                ProxyEvent::Stateless { request, .. } => {
                    let dest = resolve(&request);
                    self.proxy.forward_stateless(&request, None, dest);
                }
                ProxyEvent::Completed { status, .. } => {
                    self.completed.push((now - self.start, status));
                }
                ProxyEvent::Reply {
                    reply, response, ..
                } => {
                    let relay = self.on_reply.as_mut().is_none_or(|f| f(&response));
                    if relay {
                        self.proxy.relay_reply(now, reply).unwrap();
                    } else {
                        self.proxy.drop_reply(now, reply).unwrap();
                    }
                }
                ProxyEvent::UacResponse { response, .. } => {
                    self.uac.push(response.map(|r| r.status()));
                }
                ProxyEvent::Failure { ctx, response } => {
                    self.failures.push(response.status());
                    match self.on_failure.as_mut().and_then(|f| f(&response)) {
                        Some(targets) => self.proxy.forward(now, ctx, targets, false).unwrap(),
                        None => self.proxy.relay_failure(now, ctx).unwrap(),
                    }
                }
            }
        }
    }
}

impl Agent for ProxyNode {
    fn addr(&self) -> SocketAddr {
        addr(P)
    }
    fn handle(&mut self, now: Instant, source: Remote, message: Outgoing) {
        // As the node does: the proxy gets the message parsed from the bytes on the wire, so
        // it relays by editing them.
        let wire = crate::Message::parse(message.bytes().clone()).expect("parses");
        match message {
            Outgoing::Request(_) => {
                let iface = usize::from(source.transport == Transport::Tcp);
                let r = TxRequest::try_from(&wire).expect("a request");
                self.proxy.handle_request(now, source, iface, r);
            }
            Outgoing::Response(_) => {
                let r = TxResponse::try_from(&wire).expect("a response");
                self.proxy.handle_response(now, source, r);
            }
        }
        self.drain(now);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.proxy.handle_timeout(now);
        self.drain(now);
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        self.proxy.poll_timeout()
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.proxy.poll_transmit()
    }
}

fn target(n: u8, q: u16) -> Target {
    Target {
        uri: Some(format!("sip:bob@{}", addr(n))),
        destination: udp(n),
        q,
        routes: Vec::new(),
        fallbacks: Vec::new(),
    }
}

fn invite_parts(branch: &str) -> RequestParts {
    RequestParts {
        method: "INVITE".into(),
        uri: "sip:bob@proxy.example.com".into(),
        vias: vec![format!("SIP/2.0/UDP 10.0.0.1:5060;branch={branch}")],
        from: "Alice <sip:alice@example.com>;tag=a1".into(),
        to: "Bob <sip:bob@proxy.example.com>".into(),
        call_id: "call-1".into(),
        cseq: 1,
        max_forwards: Some(70),
        ..RequestParts::default()
    }
}

fn node(n: u8, net: &Net, answers: &[(u64, u16)]) -> TxnNode {
    let mut node = TxnNode::new(
        n,
        TransactionLayer::new(Config {
            trying_delay: Duration::ZERO,
            ..Config::default()
        }),
        net,
    );
    node.answer.responses = answers.iter().map(|&(t, s)| (ms(t), s)).collect();
    node
}

fn labels(node: &TxnNode) -> Vec<String> {
    node.event_labels().into_iter().map(|(_, l)| l).collect()
}

fn sent_requests(net: &Net, to: u8, method: &str) -> Vec<TxRequest> {
    net.log
        .iter()
        .filter(|s| s.to == addr(to))
        .filter_map(|s| match &s.message {
            Outgoing::Request(r) if r.method() == method => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn responses_to_uac(net: &Net) -> Vec<String> {
    net.labels(addr(P), addr(1))
}

fn send_invite(uac: &mut TxnNode, net: &Net, parts: RequestParts) -> TxRequest {
    let req = TxRequest::build(parts);
    uac.layer
        .send_request(net.now, udp(P), req.clone())
        .unwrap();
    req
}

#[test]
fn parallel_fork_forwards_200_and_cancels_the_other_branch() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut a = node(2, &net, &[(10, 180), (300, 486)]);
    let mut b = node(3, &net, &[(10, 180), (100, 200)]);
    let mut p = ProxyNode::new(
        &net,
        Box::new(|_| Decision::Forward(vec![target(2, 1000), target(3, 1000)], true)),
    );
    send_invite(&mut uac, &net, invite_parts("z9hG4bKf1"));
    net.run(
        &mut [&mut uac, &mut p, &mut a, &mut b],
        Duration::from_secs(60),
    );
    assert_eq!(responses_to_uac(&net), ["100", "180", "180", "200"]);
    assert_eq!(net.labels(addr(P), addr(2)), ["INVITE", "CANCEL", "ACK"]);
    assert_eq!(net.labels(addr(P), addr(3)), ["INVITE"]);
    assert_eq!(p.completed, [(ms(130), 200)]);
    // The forwarded INVITE: our Via on top with the owner core, Max-Forwards decremented,
    // Record-Route with lr, new Request-URI.
    let fwd = &sent_requests(&net, 3, "INVITE")[0];
    assert_eq!(owner_core(fwd.branch().unwrap()), Some(3));
    assert_eq!(fwd.vias().len(), 2);
    assert!(fwd.vias()[0].starts_with("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-0003-"));
    assert_eq!(fwd.max_forwards(), Some(69));
    assert_eq!(fwd.record_routes(), [Box::from("<sip:10.0.0.5:5060;lr>")]);
    assert_eq!(fwd.uri(), "sip:bob@10.0.0.3:5060");
    // Both branches share the loop hash but not the branch.
    let other = &sent_requests(&net, 2, "INVITE")[0];
    assert_ne!(other.branch(), fwd.branch());
    assert_eq!(
        branch_loop_hash(other.branch().unwrap()),
        branch_loop_hash(fwd.branch().unwrap())
    );
    assert!(labels(&uac).contains(&"Response 200".to_string()));
    assert!(
        !labels(&uac)
            .iter()
            .any(|l| l == "Response 486" || l == "Response 487")
    );
    assert_eq!(p.proxy.contexts(), 0);
}

#[test]
fn sequential_fork_408_then_200() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut b = node(3, &net, &[(50, 200)]);
    let mut p = ProxyNode::new(
        &net,
        // 10.0.0.2 does not exist: Timer B fires on the first branch.
        Box::new(|_| Decision::Forward(vec![target(3, 500), target(2, 1000)], false)),
    );
    send_invite(&mut uac, &net, invite_parts("z9hG4bKs1"));
    net.run(&mut [&mut uac, &mut p, &mut b], Duration::from_secs(120));
    assert_eq!(
        net.times("INVITE", addr(P)),
        [10, 510, 1510, 3510, 7510, 15510, 31510, 32010].map(ms)
    );
    assert_eq!(net.labels(addr(P), addr(3)), ["INVITE"]);
    assert_eq!(responses_to_uac(&net), ["100", "200"]);
    assert_eq!(p.completed, [(ms(32_080), 200)]);
}

#[test]
fn six_xx_ends_the_fork_and_cancels_pending_branches() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut a = node(2, &net, &[(50, 603)]);
    let mut b = node(3, &net, &[(10, 180), (1000, 486)]);
    let mut c = node(4, &net, &[(10, 200)]);
    let mut p = ProxyNode::new(
        &net,
        Box::new(|_| {
            Decision::Forward(
                vec![target(2, 1000), target(3, 1000), target(4, 100)],
                false,
            )
        }),
    );
    send_invite(&mut uac, &net, invite_parts("z9hG4bK6x"));
    net.run(
        &mut [&mut uac, &mut p, &mut a, &mut b, &mut c],
        Duration::from_secs(60),
    );
    assert_eq!(net.labels(addr(P), addr(3)), ["INVITE", "CANCEL", "ACK"]);
    assert!(
        net.labels(addr(P), addr(4)).is_empty(),
        "next group never tried"
    );
    assert_eq!(responses_to_uac(&net), ["100", "180", "603"]);
}

#[test]
fn caller_cancel_cancels_branches_and_gets_487() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut a = node(2, &net, &[(10, 180)]);
    let mut b = node(3, &net, &[(10, 183)]);
    let mut p = ProxyNode::new(
        &net,
        Box::new(|_| Decision::Forward(vec![target(2, 1000), target(3, 1000)], false)),
    );
    let invite = send_invite(&mut uac, &net, invite_parts("z9hG4bKc1"));
    net.run(
        &mut [&mut uac, &mut p, &mut a, &mut b],
        Duration::from_secs(1),
    );
    uac.layer
        .send_request(net.now, udp(P), invite.cancel())
        .unwrap();
    net.run(
        &mut [&mut uac, &mut p, &mut a, &mut b],
        Duration::from_secs(60),
    );
    assert_eq!(net.labels(addr(P), addr(2)), ["INVITE", "CANCEL", "ACK"]);
    assert_eq!(net.labels(addr(P), addr(3)), ["INVITE", "CANCEL", "ACK"]);
    let uac_events = labels(&uac);
    assert!(uac_events.contains(&"Response 487".to_string()));
    assert_eq!(
        uac_events.iter().filter(|l| *l == "Response 200").count(),
        1,
        "200 to the CANCEL"
    );
    // The caller's ACK for the 487 is absorbed by the proxy's server transaction.
    assert_eq!(net.labels(addr(1), addr(P)), ["INVITE", "CANCEL", "ACK"]);
    assert_eq!(p.completed.iter().map(|c| c.1).collect::<Vec<_>>(), [487]);
}

#[test]
fn all_branches_time_out_gives_408() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut p = ProxyNode::new(
        &net,
        Box::new(|_| Decision::Forward(vec![target(2, 1000), target(3, 1000)], false)),
    );
    send_invite(&mut uac, &net, invite_parts("z9hG4bKt1"));
    net.run(&mut [&mut uac, &mut p], Duration::from_secs(60));
    assert_eq!(responses_to_uac(&net), ["100", "408"]);
    assert_eq!(p.completed, [(ms(32_010), 408)]);
}

#[test]
fn record_route_then_loose_routed_ack_and_bye() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut a = node(2, &net, &[(10, 200)]);
    let mut p = ProxyNode::new(
        &net,
        Box::new(|req| {
            if req.to_tag().is_some() {
                // In-dialog: next hop from the (already popped) Route set / Request-URI.
                let dest = resolve(req);
                Decision::Forward(
                    vec![Target {
                        uri: None,
                        destination: dest,
                        q: 1000,
                        routes: Vec::new(),
                        fallbacks: Vec::new(),
                    }],
                    false,
                )
            } else {
                Decision::Forward(vec![target(2, 1000)], true)
            }
        }),
    );
    send_invite(&mut uac, &net, invite_parts("z9hG4bKr1"));
    net.run(&mut [&mut uac, &mut p, &mut a], Duration::from_secs(1));
    let ok = uac
        .events
        .iter()
        .find_map(|(_, e)| match e {
            Event::Response { response, .. } if response.status() == 200 => Some(response.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(ok.record_routes(), [Box::from("<sip:10.0.0.5:5060;lr>")]);
    assert_eq!(ok.vias().len(), 1, "proxy Via popped");
    // The UAC's route set is the Record-Route; the remote target is the callee.
    let in_dialog = |method: &str, branch: &str| {
        TxRequest::build(RequestParts {
            method: method.into(),
            uri: "sip:bob@10.0.0.2:5060".into(),
            vias: vec![format!("SIP/2.0/UDP 10.0.0.1:5060;branch={branch}")],
            routes: ok.record_routes().iter().map(|r| r.to_string()).collect(),
            from: ok.from_value().into(),
            to: ok.to_value().into(),
            call_id: ok.call_id().into(),
            cseq: if method == "ACK" { 1 } else { 2 },
            max_forwards: Some(70),
            ..RequestParts::default()
        })
    };
    uac.extra.push_back(Transmit {
        destination: udp(P),
        message: Outgoing::Request(in_dialog("ACK", "z9hG4bKack")),
    });
    uac.layer
        .send_request(net.now, udp(P), in_dialog("BYE", "z9hG4bKbye"))
        .unwrap();
    net.run(&mut [&mut uac, &mut p, &mut a], Duration::from_secs(60));
    assert_eq!(net.labels(addr(P), addr(2)), ["INVITE", "ACK", "BYE"]);
    let ack = &sent_requests(&net, 2, "ACK")[0];
    assert!(ack.routes().is_empty(), "our Route popped");
    assert_eq!(ack.max_forwards(), Some(69));
    assert_eq!(owner_core(ack.branch().unwrap()), Some(3));
    assert!(labels(&a).contains(&"Ack".to_string()));
    let bye = &sent_requests(&net, 2, "BYE")[0];
    assert!(bye.routes().is_empty());
    assert!(bye.record_routes().is_empty());
    assert!(labels(&uac).iter().filter(|l| *l == "Response 200").count() >= 2);
}

#[test]
fn double_record_route_on_transport_change() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut a = node(2, &net, &[(10, 200)]);
    let mut p = ProxyNode::new(
        &net,
        Box::new(|_| {
            Decision::Forward(
                vec![Target {
                    uri: None,
                    destination: Remote {
                        addr: addr(2),
                        transport: Transport::Tcp,
                    },
                    q: 1000,
                    routes: Vec::new(),
                    fallbacks: Vec::new(),
                }],
                true,
            )
        }),
    );
    send_invite(&mut uac, &net, invite_parts("z9hG4bKd1"));
    net.run(&mut [&mut uac, &mut p, &mut a], Duration::from_secs(5));
    let fwd = &sent_requests(&net, 2, "INVITE")[0];
    assert_eq!(
        fwd.record_routes(),
        [
            Box::from("<sip:10.0.0.5:5060;transport=tcp;lr>"),
            Box::from("<sip:10.0.0.5:5060;lr>")
        ]
    );
    assert!(fwd.vias()[0].starts_with("SIP/2.0/TCP 10.0.0.5:5060;"));
    // A request carrying both values back pops both (§16.4).
    let mut parts = invite_parts("z9hG4bKd2");
    parts.routes = fwd.record_routes().iter().map(|r| r.to_string()).collect();
    parts.routes.push("<sip:next.example.com;lr>".into());
    preprocess_routes(&mut parts, &config().interfaces, &config().domains);
    assert_eq!(parts.routes, ["<sip:next.example.com;lr>"]);
}

#[test]
fn strict_route_fixup_restores_the_request_uri() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut a = node(2, &net, &[(10, 200)]);
    let mut p = ProxyNode::new(
        &net,
        Box::new(|req| {
            Decision::Forward(
                vec![Target {
                    uri: None,
                    destination: resolve(req),
                    q: 1000,
                    routes: Vec::new(),
                    fallbacks: Vec::new(),
                }],
                false,
            )
        }),
    );
    // A strict router put our RR URI in the Request-URI and the target at the end of Route.
    let bye = RequestParts {
        method: "BYE".into(),
        uri: "sip:10.0.0.5:5060".into(),
        vias: vec!["SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKst".into()],
        routes: vec!["<sip:bob@10.0.0.2:5060>".into()],
        from: "<sip:alice@example.com>;tag=a1".into(),
        to: "<sip:bob@example.com>;tag=b1".into(),
        call_id: "call-2".into(),
        cseq: 5,
        ..RequestParts::default()
    };
    uac.layer
        .send_request(net.now, udp(P), TxRequest::build(bye))
        .unwrap();
    net.run(&mut [&mut uac, &mut p, &mut a], Duration::from_secs(5));
    let fwd = &sent_requests(&net, 2, "BYE")[0];
    assert_eq!(fwd.uri(), "sip:bob@10.0.0.2:5060");
    assert!(fwd.routes().is_empty());
    // The UAC's encoder wrote Max-Forwards: 70; the proxy decrements it (§16.6 item 3). An
    // absent one becomes 70 (`edit::tests::max_forwards_edge_cases`).
    assert_eq!(fwd.max_forwards(), Some(69));
    assert_eq!(p.requests[0].uri(), "sip:bob@10.0.0.2:5060");
}

#[test]
fn strict_next_hop_rewrites_the_copy() {
    let mut parts = invite_parts("z9hG4bKx");
    parts.uri = "sip:bob@example.com".into();
    parts.routes = vec![
        "<sip:strict.example.com>".into(),
        "<sip:p2.example.com;lr>".into(),
    ];
    strict_next_hop(&mut parts);
    assert_eq!(parts.uri, "sip:strict.example.com");
    assert_eq!(
        parts.routes,
        ["<sip:p2.example.com;lr>", "<sip:bob@example.com>"]
    );
}

#[test]
fn max_forwards_zero_gets_483() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut p = ProxyNode::new(&net, Box::new(|_| Decision::Respond(500)));
    let mut parts = invite_parts("z9hG4bKm0");
    parts.method = "OPTIONS".into();
    parts.max_forwards = Some(0);
    send_invite(&mut uac, &net, parts);
    net.run(&mut [&mut uac, &mut p], Duration::from_secs(5));
    assert_eq!(responses_to_uac(&net), ["483"]);
    assert!(p.requests.is_empty(), "never reaches the routing script");
}

#[test]
fn rport_routes_responses_back_to_the_source() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut a = node(2, &net, &[(10, 200)]);
    let mut p = ProxyNode::new(
        &net,
        Box::new(|_| Decision::Forward(vec![target(2, 1000)], false)),
    );
    // The UAC is behind a NAT: its Via names a private address.
    let mut parts = invite_parts("z9hG4bKn1");
    parts.vias = vec!["SIP/2.0/UDP 192.168.1.50:5062;branch=z9hG4bKn1;rport".into()];
    send_invite(&mut uac, &net, parts);
    net.run(&mut [&mut uac, &mut p, &mut a], Duration::from_secs(1));
    let fwd = &sent_requests(&net, 2, "INVITE")[0];
    assert_eq!(
        &*fwd.vias()[1],
        "SIP/2.0/UDP 192.168.1.50:5062;branch=z9hG4bKn1;received=10.0.0.1;rport=5060"
    );
    assert_eq!(responses_to_uac(&net), ["100", "200"]);
    // A retransmitted 2xx after Timer M (no client transaction any more) goes statelessly to
    // received:rport.
    net.run(&mut [&mut uac, &mut p, &mut a], Duration::from_secs(40));
    let ok = a
        .events
        .iter()
        .find_map(|(_, e)| match e {
            Event::Request { request, .. } => Some(request.clone()),
            _ => None,
        })
        .unwrap();
    let again = TxResponse::to_request(&ok, 200, "OK", Some("uas-tag"));
    a.extra.push_back(Transmit {
        destination: udp(P),
        message: Outgoing::Response(again),
    });
    net.run(&mut [&mut uac, &mut p, &mut a], Duration::from_secs(41));
    assert_eq!(responses_to_uac(&net), ["100", "200", "200"]);
    assert!(labels(&uac).contains(&"Stray 200".to_string()));
}

#[test]
fn loop_is_482_and_spiral_is_forwarded() {
    // Loop: the proxy forwards to itself without changing the Request-URI.
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut p = ProxyNode::new(
        &net,
        Box::new(|_| {
            Decision::Forward(
                vec![Target {
                    uri: None,
                    destination: udp(P),
                    q: 1000,
                    routes: Vec::new(),
                    fallbacks: Vec::new(),
                }],
                false,
            )
        }),
    );
    send_invite(&mut uac, &net, invite_parts("z9hG4bKl1"));
    net.run(&mut [&mut uac, &mut p], Duration::from_secs(5));
    assert_eq!(responses_to_uac(&net), ["100", "482"]);
    assert_eq!(p.requests.len(), 1, "second pass rejected before routing");

    // Spiral: the Request-URI changes on the way round, so the hash differs.
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut a = node(2, &net, &[(10, 200)]);
    let mut p = ProxyNode::new(
        &net,
        Box::new(|req| {
            if req.uri() == "sip:bob@proxy.example.com" {
                Decision::Forward(
                    vec![Target {
                        uri: Some("sip:bob-mobile@proxy.example.com".into()),
                        destination: udp(P),
                        q: 1000,
                        routes: Vec::new(),
                        fallbacks: Vec::new(),
                    }],
                    false,
                )
            } else {
                Decision::Forward(vec![target(2, 1000)], false)
            }
        }),
    );
    send_invite(&mut uac, &net, invite_parts("z9hG4bKl2"));
    net.run(&mut [&mut uac, &mut p, &mut a], Duration::from_secs(5));
    assert_eq!(p.requests.len(), 2);
    assert_eq!(responses_to_uac(&net), ["100", "200"]);
}

#[test]
fn best_response_prefers_auth_and_aggregates_challenges() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut a = node(2, &net, &[(10, 401)]);
    a.answer.headers = vec![("WWW-Authenticate".into(), "Digest realm=\"a\"".into())];
    let mut b = node(3, &net, &[(20, 407)]);
    b.answer.headers = vec![("Proxy-Authenticate".into(), "Digest realm=\"b\"".into())];
    let mut c = node(4, &net, &[(30, 404)]);
    let mut p = ProxyNode::new(
        &net,
        Box::new(|_| {
            Decision::Forward(
                vec![target(2, 1000), target(3, 1000), target(4, 1000)],
                false,
            )
        }),
    );
    send_invite(&mut uac, &net, invite_parts("z9hG4bKau"));
    net.run(
        &mut [&mut uac, &mut p, &mut a, &mut b, &mut c],
        Duration::from_secs(5),
    );
    let fin = uac
        .events
        .iter()
        .find_map(|(_, e)| match e {
            Event::Response { response, .. } if response.status() >= 400 => Some(response.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(fin.status(), 401);
    assert_eq!(
        fin.header_values("WWW-Authenticate").collect::<Vec<_>>(),
        ["Digest realm=\"a\""]
    );
    assert_eq!(
        fin.header_values("Proxy-Authenticate").collect::<Vec<_>>(),
        ["Digest realm=\"b\""]
    );
}

#[test]
fn lone_503_is_forwarded_as_500_and_tu_reply() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut a = node(2, &net, &[(10, 503)]);
    let mut p = ProxyNode::new(
        &net,
        Box::new(|req| {
            if req.method() == "INVITE" {
                Decision::Forward(vec![target(2, 1000)], false)
            } else {
                Decision::Respond(404)
            }
        }),
    );
    send_invite(&mut uac, &net, invite_parts("z9hG4bK53"));
    let mut parts = invite_parts("z9hG4bK54");
    parts.method = "MESSAGE".into();
    send_invite(&mut uac, &net, parts);
    net.run(&mut [&mut uac, &mut p, &mut a], Duration::from_secs(5));
    assert_eq!(responses_to_uac(&net), ["100", "404", "500"]);
}

#[test]
fn timer_c_cancels_a_ringing_branch_and_answers_408() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    // Rings at 10 ms and again at 5 s, never answers.
    let mut a = node(2, &net, &[(10, 180), (5000, 180)]);
    let mut cfg = config();
    cfg.transactions.timers.timer_c = Duration::from_secs(10);
    let mut p = ProxyNode::with_config(
        &net,
        Box::new(|_| Decision::Forward(vec![target(2, 1000)], false)),
        cfg,
    );
    send_invite(&mut uac, &net, invite_parts("z9hG4bKtc"));
    net.run(&mut [&mut uac, &mut p, &mut a], Duration::from_secs(60));
    // The second 180 (at P at 5.030 s) re-armed Timer C: it fires at 15.030 s.
    assert_eq!(net.times("CANCEL", addr(P)), [ms(15_030)]);
    assert_eq!(responses_to_uac(&net), ["100", "180", "180", "408"]);
    assert_eq!(p.completed, [(ms(15_030), 408)]);
}

#[test]
fn two_xx_wins_over_6xx_while_cancelling() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut a = node(2, &net, &[(50, 603)]);
    // B answers 200 before the CANCEL reaches it.
    let mut b = node(3, &net, &[(10, 180), (55, 200)]);
    let mut p = ProxyNode::new(
        &net,
        Box::new(|_| Decision::Forward(vec![target(2, 1000), target(3, 1000)], false)),
    );
    send_invite(&mut uac, &net, invite_parts("z9hG4bK26"));
    net.run(
        &mut [&mut uac, &mut p, &mut a, &mut b],
        Duration::from_secs(60),
    );
    assert_eq!(responses_to_uac(&net), ["100", "180", "200"]);
    assert_eq!(p.completed, [(ms(85), 200)]);
}

#[test]
fn late_2xx_is_forwarded_after_a_6xx() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut a = node(2, &net, &[(50, 603)]);
    // B sends no provisional (not even 100), so it cannot be CANCELled and does not hold the
    // 603 back.
    let mut b = node(3, &net, &[(200, 200)]);
    b.layer = TransactionLayer::new(Config {
        send_trying: false,
        ..Config::default()
    });
    let mut p = ProxyNode::new(
        &net,
        Box::new(|_| Decision::Forward(vec![target(2, 1000), target(3, 1000)], false)),
    );
    send_invite(&mut uac, &net, invite_parts("z9hG4bKl6"));
    net.run(
        &mut [&mut uac, &mut p, &mut a, &mut b],
        Duration::from_secs(60),
    );
    assert_eq!(responses_to_uac(&net), ["100", "603", "200"]);
    assert_eq!(net.times("603", addr(P)), [ms(80)]);
    assert_eq!(net.times("200", addr(P)), [ms(230)]);
}

fn hooked() -> ProxyConfig {
    ProxyConfig {
        hooks: Hooks {
            replies: true,
            failures: true,
        },
        ..config()
    }
}

#[test]
fn failure_hook_retargets_then_relays() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut a = node(2, &net, &[(10, 486)]);
    let mut b = node(3, &net, &[(10, 404)]);
    let mut p = ProxyNode::with_config(
        &net,
        Box::new(|_| Decision::Forward(vec![target(2, 1000)], false)),
        hooked(),
    );
    let mut tries = 0;
    p.on_failure = Some(Box::new(move |_| {
        tries += 1;
        (tries == 1).then(|| vec![target(3, 1000)])
    }));
    send_invite(&mut uac, &net, invite_parts("z9hG4bKfh"));
    net.run(
        &mut [&mut uac, &mut p, &mut a, &mut b],
        Duration::from_secs(60),
    );
    // First failure (486) re-targets to B; B's 404 is then relayed as is.
    assert_eq!(p.failures, [486, 404]);
    assert_eq!(net.labels(addr(P), addr(3)), ["INVITE", "ACK"]);
    assert_eq!(responses_to_uac(&net), ["100", "404"]);
    assert_eq!(p.proxy.contexts(), 0);
}

#[test]
fn reply_hook_drops_or_relays_branch_responses() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut a = node(2, &net, &[(10, 180), (20, 183), (100, 200)]);
    let mut p = ProxyNode::with_config(
        &net,
        Box::new(|_| Decision::Forward(vec![target(2, 1000)], false)),
        hooked(),
    );
    // The script drops 180 and relays everything else.
    p.on_reply = Some(Box::new(|r| r.status() != 180));
    send_invite(&mut uac, &net, invite_parts("z9hG4bKrh"));
    net.run(&mut [&mut uac, &mut p, &mut a], Duration::from_secs(60));
    assert_eq!(responses_to_uac(&net), ["100", "183", "200"]);
    assert!(p.failures.is_empty());
}

#[test]
fn dropped_final_leaves_408_for_the_failure_route() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut a = node(2, &net, &[(10, 486)]);
    let mut p = ProxyNode::with_config(
        &net,
        Box::new(|_| Decision::Forward(vec![target(2, 1000)], false)),
        hooked(),
    );
    p.on_reply = Some(Box::new(|_| false));
    send_invite(&mut uac, &net, invite_parts("z9hG4bKdf"));
    net.run(&mut [&mut uac, &mut p, &mut a], Duration::from_secs(60));
    // No final was kept: the context answers 408 (after offering it to on_failure).
    assert_eq!(p.failures, [408]);
    assert_eq!(responses_to_uac(&net), ["100", "408"]);
}

#[test]
fn invite_retransmitted_after_2xx_does_not_fork_again() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut a = node(2, &net, &[(10, 200)]);
    let mut p = ProxyNode::new(
        &net,
        Box::new(|_| Decision::Forward(vec![target(2, 1000)], false)),
    );
    // The caller hears nothing at first: no 100 and the first 200 is lost.
    let mut first_200 = true;
    net.drop_rules.push(Box::new(move |s| {
        if s.from != addr(P) || s.to != addr(1) {
            return false;
        }
        match s.label().as_str() {
            "100" => true,
            "200" if first_200 => {
                first_200 = false;
                true
            }
            _ => false,
        }
    }));
    send_invite(&mut uac, &net, invite_parts("z9hG4bKre"));
    net.run(&mut [&mut uac, &mut p, &mut a], Duration::from_secs(1));
    // The retransmission at 500 ms is absorbed by the Accepted server transaction (RFC 6026).
    assert_eq!(net.times("INVITE", addr(1)), [0, 500].map(ms));
    assert_eq!(p.requests.len(), 1);
    assert_eq!(net.labels(addr(P), addr(2)), ["INVITE"]);
    // Answered, no branch pending: the context is gone; both INVITE transactions wait in
    // Accepted. The callee's 2xx retransmission is matched by the Accepted client
    // transaction and relayed by its Via.
    assert_eq!(p.proxy.contexts(), 0);
    assert_eq!(p.proxy.transactions().len(), 2);
    let inv = sent_requests(&net, 2, "INVITE").remove(0);
    a.extra.push_back(Transmit {
        destination: udp(P),
        message: Outgoing::Response(TxResponse::to_request(&inv, 200, "OK", Some("uas-tag"))),
    });
    net.run(&mut [&mut uac, &mut p, &mut a], Duration::from_secs(60));
    assert_eq!(net.labels(addr(P), addr(1)), ["100", "200", "200"]);
    assert_eq!(
        labels(&uac),
        ["Response 200", "Terminated"],
        "the caller got the 2xx once"
    );
}

/// A context is forgotten once answered with no branch pending; a CANCEL that still finds
/// the INVITE's server transaction (Accepted) gets 200, not 481 (§9.2), and goes nowhere.
#[test]
fn answered_context_is_forgotten_and_a_late_cancel_gets_200() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut a = node(2, &net, &[(10, 200)]);
    let mut p = ProxyNode::new(
        &net,
        Box::new(|_| Decision::Forward(vec![target(2, 1000)], false)),
    );
    let invite = send_invite(&mut uac, &net, invite_parts("z9hG4bKlate"));
    net.run(&mut [&mut uac, &mut p, &mut a], Duration::from_secs(1));
    assert_eq!(p.proxy.contexts(), 0);
    assert_eq!(p.proxy.transactions().len(), 2);
    uac.layer
        .send_request(net.now, udp(P), invite.cancel())
        .unwrap();
    net.run(&mut [&mut uac, &mut p, &mut a], Duration::from_secs(2));
    let answers: Vec<u16> = net
        .log
        .iter()
        .filter(|s| s.from == addr(P) && s.to == addr(1))
        .filter_map(|s| match &s.message {
            Outgoing::Response(r) if r.cseq_method() == "CANCEL" => Some(r.status()),
            _ => None,
        })
        .collect();
    assert_eq!(answers, [200]);
    assert!(sent_requests(&net, 2, "CANCEL").is_empty());
}

#[test]
fn lossy_network_fork_ends_cleanly() {
    for seed in 1..30u64 {
        let mut net = Net::new(seed);
        net.loss = 0.2;
        net.duplicate = 0.2;
        net.jitter = ms(40);
        let mut uac = node(1, &net, &[]);
        let mut a = node(2, &net, &[(10, 180), (300, 486)]);
        let mut b = node(3, &net, &[(10, 180), (100, 200)]);
        for ua in [&mut uac, &mut a, &mut b] {
            ua.ua_core = true;
        }
        let mut p = ProxyNode::new(
            &net,
            Box::new(|_| Decision::Forward(vec![target(2, 1000), target(3, 1000)], true)),
        );
        send_invite(&mut uac, &net, invite_parts("z9hG4bKlx"));
        net.run(
            &mut [&mut uac, &mut p, &mut a, &mut b],
            Duration::from_secs(300),
        );
        let ctx = format!("seed {seed}: {:?}", labels(&uac));
        // One routing decision, one final upstream, and every transaction and context gone.
        assert_eq!(p.requests.len(), 1, "{ctx}");
        assert_eq!(p.completed.len(), 1, "{ctx}");
        assert_eq!(p.proxy.contexts(), 0, "{ctx}");
        assert!(p.proxy.transactions().is_empty(), "{ctx}");
        assert!(
            uac.layer.is_empty() && a.layer.is_empty() && b.layer.is_empty(),
            "{ctx}"
        );
        // The caller's TU saw at most one non-2xx final and never both a 2xx and an error.
        let finals: Vec<_> = labels(&uac)
            .into_iter()
            .filter(|l| l.starts_with("Response ") && !l.starts_with("Response 1"))
            .collect();
        let errors = finals
            .iter()
            .filter(|l| !l.starts_with("Response 2"))
            .count();
        assert!(errors <= 1, "{ctx}");
        assert!(errors == 0 || finals.len() == 1, "{ctx}");
        // B answers first: the call is set up and its 2xx acknowledged end to end.
        assert!(finals.iter().any(|l| l == "Response 200"), "{ctx}");
        assert!(labels(&b).iter().any(|l| l == "Ack"), "{ctx}");
    }
}

#[test]
fn pre_loaded_route_is_followed_and_ours_popped() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    let mut next = node(3, &net, &[(10, 200)]);
    let mut p = ProxyNode::new(
        &net,
        Box::new(|req| {
            // The script retargets; the copy still goes to the top Route (§16.6 items 6-7).
            let mut copy = req.parts();
            copy.uri = "sip:bob@10.0.0.2:5060".into();
            let dest = resolve(&TxRequest::build(copy));
            Decision::Forward(
                vec![Target {
                    uri: Some("sip:bob@10.0.0.2:5060".into()),
                    destination: dest,
                    q: 1000,
                    routes: Vec::new(),
                    fallbacks: Vec::new(),
                }],
                false,
            )
        }),
    );
    let mut parts = invite_parts("z9hG4bKpl");
    parts.routes = vec![
        "<sip:proxy.example.com;lr>".into(),
        "<sip:10.0.0.3:5060;lr>".into(),
    ];
    send_invite(&mut uac, &net, parts);
    net.run(&mut [&mut uac, &mut p, &mut next], Duration::from_secs(5));
    let fwd = &sent_requests(&net, 3, "INVITE")[0];
    assert_eq!(fwd.uri(), "sip:bob@10.0.0.2:5060");
    assert_eq!(fwd.routes(), [Box::from("<sip:10.0.0.3:5060;lr>")]);
    assert_eq!(responses_to_uac(&net), ["100", "200"]);
}

#[test]
fn caller_cancel_with_a_silent_branch_gets_487_at_once() {
    let mut net = Net::new(1);
    let mut uac = node(1, &net, &[]);
    // 10.0.0.2 never answers (no node there).
    let mut p = ProxyNode::new(
        &net,
        Box::new(|_| Decision::Forward(vec![target(2, 1000)], false)),
    );
    let invite = send_invite(&mut uac, &net, invite_parts("z9hG4bKcs"));
    net.run(&mut [&mut uac, &mut p], Duration::from_secs(1));
    uac.layer
        .send_request(net.now, udp(P), invite.cancel())
        .unwrap();
    net.run(&mut [&mut uac, &mut p], Duration::from_secs(60));
    assert_eq!(p.completed, [(ms(1010), 487)]);
    // No CANCEL can go to a branch without a provisional (§9.1).
    assert!(net.times("CANCEL", addr(P)).is_empty());
    assert_eq!(p.proxy.contexts(), 0);
}

fn options_to(n: u8) -> RequestParts {
    RequestParts {
        method: "OPTIONS".into(),
        uri: format!("sip:ping@{}", addr(n)),
        from: "<sip:siphon@proxy.example.com>;tag=o1".into(),
        to: format!("<sip:ping@{}>", addr(n)),
        call_id: "options-1".into(),
        cseq: 1,
        ..RequestParts::default()
    }
}

#[test]
fn originated_request_reports_its_final_response_or_timeout() {
    let mut net = Net::new(1);
    let mut ua = node(2, &net, &[(10, 200)]);
    let mut silent = node(3, &net, &[]);
    let mut p = ProxyNode::new(&net, Box::new(|_| Decision::Respond(404)));
    p.proxy
        .send_request(net.now, udp(2), options_to(2))
        .unwrap();
    p.proxy
        .send_request(net.now, udp(3), options_to(3))
        .unwrap();
    net.run(&mut [&mut ua, &mut silent, &mut p], Duration::from_secs(40));
    let sent = sent_requests(&net, 2, "OPTIONS");
    assert_eq!(sent[0].max_forwards(), Some(70));
    assert_eq!(owner_core(sent[0].branch().unwrap()), Some(3));
    // The 200 first, then Timer F (64*T1 = 32 s) for the silent one.
    assert_eq!(p.uac, [Some(200), None]);
}
