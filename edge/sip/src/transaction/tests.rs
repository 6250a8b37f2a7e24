//! Transaction layer scenarios on the simulated network (RFC 3261 §17): exact retransmission
//! schedules, timer-driven termination, absorption, ACK handling, CANCEL and 2543 matching.

use std::time::Duration;

use super::sim::{Agent, Answer, Net, TxnNode, addr, ms, udp};
use super::*;

fn request(method: &str, branch: &str) -> TxRequest {
    TxRequest::build(RequestParts {
        method: method.into(),
        uri: "sip:bob@biloxi.example.com".into(),
        vias: vec![format!("SIP/2.0/UDP 10.0.0.1:5060;branch={branch}")],
        routes: vec![],
        from: "Alice <sip:alice@atlanta.example.com>;tag=1928301774".into(),
        to: "Bob <sip:bob@biloxi.example.com>".into(),
        call_id: "a84b4c76e66710".into(),
        cseq: 314159,
        ..RequestParts::default()
    })
}

/// These tests predate the delayed 100 Trying: they expect it as soon as the INVITE arrives.
fn immediate() -> Config {
    Config {
        trying_delay: Duration::ZERO,
        ..Config::default()
    }
}

fn layer() -> TransactionLayer {
    TransactionLayer::new(immediate())
}

/// Pure RFC 3261 INVITE handling (no RFC 6026 Accepted state).
fn layer_3261() -> TransactionLayer {
    TransactionLayer::new(Config {
        accepted_state: false,
        ..immediate()
    })
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v)
}

fn labels(node: &TxnNode) -> Vec<String> {
    node.event_labels().into_iter().map(|(_, l)| l).collect()
}

fn at(node: &TxnNode, label: &str) -> Vec<Duration> {
    node.event_labels()
        .into_iter()
        .filter(|(_, l)| l == label)
        .map(|(t, _)| t)
        .collect()
}

#[test]
fn invite_client_timer_a_doubles_and_timer_b_times_out() {
    let mut net = Net::new(1);
    let mut uac = TxnNode::new(1, layer(), &net);
    uac.layer
        .send_request(net.now, udp(9), request("INVITE", "z9hG4bKa"))
        .unwrap();
    net.run(&mut [&mut uac], secs(60.0));
    assert_eq!(
        net.times("INVITE", addr(1)),
        [0, 500, 1500, 3500, 7500, 15500, 31500].map(ms)
    );
    assert_eq!(at(&uac, "Timeout TimerB"), [ms(32_000)]);
    assert_eq!(at(&uac, "Terminated"), [ms(32_000)]);
    assert!(uac.layer.is_empty());
}

#[test]
fn non_invite_client_timer_e_capped_at_t2_and_timer_f() {
    let mut net = Net::new(1);
    let mut uac = TxnNode::new(1, layer(), &net);
    uac.layer
        .send_request(net.now, udp(9), request("OPTIONS", "z9hG4bKo"))
        .unwrap();
    net.run(&mut [&mut uac], secs(60.0));
    assert_eq!(
        net.times("OPTIONS", addr(1)),
        [
            0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500
        ]
        .map(ms)
    );
    assert_eq!(labels(&uac), ["Timeout TimerF", "Terminated"]);
    assert_eq!(at(&uac, "Terminated"), [ms(32_000)]);
}

#[test]
fn timers_follow_configured_t1_t2() {
    let mut net = Net::new(1);
    let config = Config {
        timers: TimerConfig {
            t1: ms(100),
            t2: ms(300),
            ..TimerConfig::default()
        },
        ..immediate()
    };
    let mut uac = TxnNode::new(1, TransactionLayer::new(config), &net);
    uac.layer
        .send_request(net.now, udp(9), request("OPTIONS", "z9hG4bKo"))
        .unwrap();
    net.run(&mut [&mut uac], secs(60.0));
    let times = net.times("OPTIONS", addr(1));
    assert_eq!(times[..5], [0, 100, 300, 600, 900].map(ms));
    assert_eq!(at(&uac, "Timeout TimerF"), [ms(6400)]);
}

#[test]
fn non_invite_proceeding_resets_timer_e_to_t2_and_timer_k() {
    let mut net = Net::new(1);
    let mut uac = TxnNode::new(1, layer(), &net);
    let mut uas = TxnNode::new(2, layer(), &net);
    uas.answer = Answer {
        responses: vec![(ms(0), 100), (ms(4990), 200)],
        ..Answer::default()
    };
    uac.layer
        .send_request(net.now, udp(2), request("OPTIONS", "z9hG4bKo"))
        .unwrap();
    net.run(&mut [&mut uac, &mut uas], secs(60.0));
    // 100 arrives at 20 ms: Proceeding; E then fires at 500 and every T2.
    assert_eq!(net.times("OPTIONS", addr(1)), [0, 500, 4500].map(ms));
    // The UAS resends its last provisional for each retransmission, then the 200.
    assert_eq!(net.times("100", addr(2)), [10, 510, 4510].map(ms));
    assert_eq!(net.times("200", addr(2)), [ms(5000)]);
    // Every provisional is passed up in Proceeding (§17.1.2.2).
    assert_eq!(
        labels(&uac),
        [
            "Response 100",
            "Response 100",
            "Response 100",
            "Response 200",
            "Terminated"
        ]
    );
    // Timer K = T4 after the final at 5010.
    assert_eq!(at(&uac, "Terminated"), [ms(10_010)]);
    // Timer J = 64*T1 after the final was sent at 5000; one Request event despite 3 copies.
    assert_eq!(labels(&uas), ["Request OPTIONS", "Terminated"]);
    assert_eq!(at(&uas, "Terminated"), [ms(37_000)]);
}

#[test]
fn non_invite_server_resends_final_on_retransmission() {
    let mut net = Net::new(1);
    let mut uac = TxnNode::new(1, layer(), &net);
    let mut uas = TxnNode::new(2, layer(), &net);
    uas.answer.responses = vec![(ms(0), 200)];
    let mut dropped = false;
    net.drop_rules.push(Box::new(move |s| {
        if s.label() == "200" && !dropped {
            dropped = true;
            return true;
        }
        false
    }));
    uac.layer
        .send_request(net.now, udp(2), request("REGISTER", "z9hG4bKr"))
        .unwrap();
    net.run(&mut [&mut uac, &mut uas], secs(60.0));
    assert_eq!(net.times("REGISTER", addr(1)), [0, 500].map(ms));
    assert_eq!(net.labels(addr(2), addr(1)), ["200", "200"]);
    assert_eq!(net.times("200", addr(2)), [10, 510].map(ms));
    assert_eq!(labels(&uac), ["Response 200", "Terminated"]);
    assert_eq!(at(&uac, "Terminated"), [ms(5520)]);
    assert_eq!(at(&uas, "Terminated"), [ms(32_010)]);
}

#[test]
fn invite_non2xx_ack_generated_absorbed_and_timers_d_g_i() {
    let mut net = Net::new(1);
    let mut uac = TxnNode::new(1, layer(), &net);
    let mut uas = TxnNode::new(2, layer(), &net);
    uas.answer.responses = vec![(ms(100), 486)];
    let mut first_ack = true;
    net.drop_rules.push(Box::new(move |s| {
        if s.label() == "ACK" && first_ack {
            first_ack = false;
            return true;
        }
        false
    }));
    uac.layer
        .send_request(net.now, udp(2), request("INVITE", "z9hG4bKi"))
        .unwrap();
    net.run(&mut [&mut uac, &mut uas], secs(60.0));
    // 100 Trying at 10 ms stops Timer A before it fires.
    assert_eq!(net.times("INVITE", addr(1)), [ms(0)]);
    assert_eq!(net.times("100", addr(2)), [ms(10)]);
    // First ACK lost: Timer G resends the 486 at 110+500; the client resends its ACK.
    assert_eq!(net.times("486", addr(2)), [110, 610].map(ms));
    assert_eq!(net.times("ACK", addr(1)), [120, 620].map(ms));
    // The retransmitted 486 is absorbed by the client transaction.
    assert_eq!(labels(&uac), ["Response 100", "Response 486", "Terminated"]);
    assert_eq!(at(&uac, "Terminated"), [ms(32_120)]); // Timer D = 32 s
    // ACK absorbed by the server (no event), Timer I = T4 after Confirmed at 630.
    assert_eq!(labels(&uas), ["Request INVITE", "Terminated"]);
    assert_eq!(at(&uas, "Terminated"), [ms(5630)]);
    // The ACK is built per §17.1.1.3.
    let ack = net.log.iter().find(|s| s.label() == "ACK").unwrap();
    let Outgoing::Request(ack) = &ack.message else {
        panic!("ACK is a request")
    };
    assert_eq!(ack.branch(), Some("z9hG4bKi"));
    assert_eq!(ack.to_tag(), Some("uas-tag"));
    assert_eq!(ack.cseq(), 314159);
    assert_eq!(ack.vias().len(), 1);
    assert!(String::from_utf8_lossy(ack.bytes()).contains("CSeq: 314159 ACK\r\n"));
}

/// A final response sent before any provisional (the default 200 ms 100 Trying had not gone
/// out) is not retransmitted by Timer G: the client is still in Calling and drives the
/// retransmissions itself (a resent INVITE gets the response again). Here the ACK is lost and
/// nothing more is sent until Timer H ends the transaction. A spoofed INVITE thus gets one
/// answer, not eleven.
#[test]
fn invite_final_before_any_provisional_has_no_timer_g() {
    let mut net = Net::new(1);
    let mut uac = TxnNode::new(1, layer(), &net);
    let mut uas = TxnNode::new(2, TransactionLayer::new(Config::default()), &net);
    uas.answer.responses = vec![(ms(100), 404)];
    net.drop_rules.push(Box::new(|s| s.label() == "ACK"));
    uac.layer
        .send_request(net.now, udp(2), request("INVITE", "z9hG4bKg0"))
        .unwrap();
    net.run(&mut [&mut uac, &mut uas], secs(60.0));
    assert!(net.times("100", addr(2)).is_empty());
    assert_eq!(net.times("404", addr(2)), [ms(110)]);
    assert_eq!(
        labels(&uas),
        ["Request INVITE", "Timeout TimerH", "Terminated"]
    );
}

#[test]
fn invite_server_timer_g_capped_and_timer_h_times_out() {
    let mut net = Net::new(1);
    let mut uac = TxnNode::new(1, layer(), &net);
    let mut uas = TxnNode::new(2, layer(), &net);
    uas.answer.responses = vec![(ms(100), 503)];
    net.drop_rules.push(Box::new(|s| s.label() == "ACK"));
    uac.layer
        .send_request(net.now, udp(2), request("INVITE", "z9hG4bKh"))
        .unwrap();
    net.run(&mut [&mut uac, &mut uas], secs(60.0));
    assert_eq!(
        net.times("503", addr(2)),
        [
            110, 610, 1610, 3610, 7610, 11610, 15610, 19610, 23610, 27610, 31610
        ]
        .map(ms)
    );
    assert_eq!(
        labels(&uas),
        ["Request INVITE", "Timeout TimerH", "Terminated"]
    );
    assert_eq!(at(&uas, "Timeout TimerH"), [ms(32_110)]);
}

#[test]
fn invite_server_resends_provisional_on_retransmission() {
    let mut net = Net::new(1);
    let mut uac = TxnNode::new(1, layer_3261(), &net);
    let mut uas = TxnNode::new(2, layer_3261(), &net);
    uas.answer.responses = vec![(ms(2000), 200)];
    let mut first = true;
    net.drop_rules.push(Box::new(move |s| {
        if s.label() == "100" && first {
            first = false;
            return true;
        }
        false
    }));
    uac.layer
        .send_request(net.now, udp(2), request("INVITE", "z9hG4bKp"))
        .unwrap();
    net.run(&mut [&mut uac, &mut uas], secs(60.0));
    assert_eq!(net.times("INVITE", addr(1)), [0, 500].map(ms));
    assert_eq!(net.times("100", addr(2)), [10, 510].map(ms));
    assert_eq!(labels(&uas), ["Request INVITE", "Terminated"]);
    // A 2xx terminates both transactions at once (§17.1.1.2, §17.2.1).
    assert_eq!(at(&uas, "Terminated"), [ms(2010)]);
    assert_eq!(labels(&uac), ["Response 100", "Response 200", "Terminated"]);
    assert_eq!(at(&uac, "Terminated"), [ms(2020)]);
}

#[test]
fn reliable_transport_skips_retransmissions_and_zeroes_wait_timers() {
    let mut net = Net::new(1);
    let mut uac = TxnNode::new(1, layer(), &net);
    let mut uas = TxnNode::new(2, layer(), &net);
    uas.answer.responses = vec![(ms(100), 486)];
    let tcp = Remote {
        addr: addr(2),
        transport: Transport::Tcp,
    };
    uac.layer
        .send_request(net.now, tcp, request("INVITE", "z9hG4bKt"))
        .unwrap();
    uac.layer
        .send_request(net.now, tcp, request("BYE", "z9hG4bKt2"))
        .unwrap();
    net.run(&mut [&mut uac, &mut uas], secs(60.0));
    assert_eq!(net.times("INVITE", addr(1)), [ms(0)]);
    assert_eq!(net.times("486", addr(2)), [110, 110].map(ms));
    // D = 0 at the client, I = 0 at the server; K = 0 and J = 0 for the BYE.
    assert_eq!(at(&uac, "Terminated"), [120, 120].map(ms));
    assert_eq!(at(&uas, "Terminated"), [110, 130].map(ms));

    // No answer over TCP: one INVITE, Timer B still fires.
    let mut net = Net::new(1);
    let mut uac = TxnNode::new(1, layer(), &net);
    uac.layer
        .send_request(net.now, tcp, request("INVITE", "z9hG4bKt3"))
        .unwrap();
    net.run(&mut [&mut uac], secs(60.0));
    assert_eq!(net.times("INVITE", addr(1)), [ms(0)]);
    assert_eq!(at(&uac, "Timeout TimerB"), [ms(32_000)]);
}

#[test]
fn ack_for_2xx_and_stray_responses_go_to_the_tu() {
    let mut net = Net::new(1);
    let mut uas = TxnNode::new(2, layer(), &net);
    let now = net.now;
    uas.layer
        .handle_request(now, udp(1), request("ACK", "z9hG4bKnew"));
    uas.layer.handle_response(
        now,
        udp(1),
        TxResponse::to_request(&request("INVITE", "z9hG4bKx"), 200, "OK", Some("t")),
    );
    assert!(matches!(uas.layer.poll_event(), Some(Event::Ack { .. })));
    assert!(matches!(
        uas.layer.poll_event(),
        Some(Event::StrayResponse { .. })
    ));
    assert!(uas.layer.poll_transmit().is_none());
    net.run(&mut [&mut uas], secs(1.0));
}

#[test]
fn cancel_matches_its_invite_server_transaction() {
    let net = Net::new(1);
    let mut uas = TxnNode::new(2, layer(), &net);
    let now = net.now;
    let invite = request("INVITE", "z9hG4bKc");
    uas.layer.handle_request(now, udp(1), invite.clone());
    let Some(Event::Request {
        key: invite_key, ..
    }) = uas.layer.poll_event()
    else {
        panic!("INVITE event");
    };
    uas.layer.handle_request(now, udp(1), invite.cancel());
    let Some(Event::Request {
        key,
        request: cancel,
        cancels,
        ..
    }) = uas.layer.poll_event()
    else {
        panic!("CANCEL event");
    };
    assert_eq!(cancel.method(), "CANCEL");
    assert_eq!(cancels, Some(invite_key));
    assert_ne!(key, invite_key);
    assert_eq!(uas.layer.find_server(&invite), Some(invite_key));
    // A CANCEL with an unknown branch matches nothing.
    uas.layer
        .handle_request(now, udp(1), request("INVITE", "z9hG4bKother").cancel());
    let Some(Event::Request { cancels, .. }) = uas.layer.poll_event() else {
        panic!("CANCEL event");
    };
    assert_eq!(cancels, None);
}

#[test]
fn server_matching_uses_sent_by_and_method() {
    let net = Net::new(1);
    let mut l = layer();
    let now = net.now;
    l.handle_request(now, udp(1), request("INVITE", "z9hG4bKs"));
    // Same branch, other sent-by: a different transaction.
    let mut other = RequestParts {
        method: "INVITE".into(),
        uri: "sip:bob@biloxi.example.com".into(),
        vias: vec!["SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bKs".into()],
        from: "<sip:a@b>;tag=1".into(),
        to: "<sip:b@b>".into(),
        call_id: "x".into(),
        cseq: 1,
        routes: vec![],
        ..RequestParts::default()
    };
    l.handle_request(now, udp(7), TxRequest::build(other.clone()));
    other.method = "OPTIONS".into();
    l.handle_request(now, udp(7), TxRequest::build(other));
    assert_eq!(l.len(), 3);
    // Host part of sent-by compares case-insensitively: a retransmission.
    let mut again = request("INVITE", "z9hG4bKs");
    again = TxRequest::build(RequestParts {
        vias: vec!["SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKs".into()],
        method: again.method().into(),
        uri: again.uri().into(),
        from: again.from_value().into(),
        to: again.to_value().into(),
        call_id: again.call_id().into(),
        cseq: again.cseq(),
        routes: vec![],
        ..RequestParts::default()
    });
    l.handle_request(now, udp(1), again);
    assert_eq!(l.len(), 3);
}

#[test]
fn rfc2543_fallback_matching() {
    let net = Net::new(1);
    let mut l = layer();
    let now = net.now;
    let invite = request("INVITE", "1234");
    l.handle_request(now, udp(1), invite.clone());
    let Some(Event::Request { key, .. }) = l.poll_event() else {
        panic!("INVITE event");
    };
    let trying = l.poll_transmit().unwrap();
    assert!(matches!(&trying.message, Outgoing::Response(r) if r.status() == 100));
    // Retransmission matches: the 100 is resent, no new event.
    l.handle_request(now, udp(1), invite.clone());
    assert!(l.poll_event().is_none());
    assert!(l.poll_transmit().is_some());
    assert_eq!(l.len(), 1);
    // A different top Via is a different transaction.
    let mut p = RequestParts {
        method: "INVITE".into(),
        uri: invite.uri().into(),
        vias: vec!["SIP/2.0/UDP 10.0.0.1:5070;branch=1234".into()],
        routes: vec![],
        from: invite.from_value().into(),
        to: invite.to_value().into(),
        call_id: invite.call_id().into(),
        cseq: invite.cseq(),
        ..RequestParts::default()
    };
    l.handle_request(now, udp(1), TxRequest::build(p.clone()));
    assert_eq!(l.len(), 2);
    // Final 404 with a tag; the ACK carrying that tag matches and confirms.
    l.send_response(
        now,
        key,
        TxResponse::to_request(&invite, 404, "Not Found", Some("srv")),
    )
    .unwrap();
    p.vias = vec![invite.vias()[0].to_string()];
    p.method = "ACK".into();
    p.to = format!("{};tag=other", invite.to_value());
    l.handle_request(now, udp(1), TxRequest::build(p.clone()));
    assert_eq!(
        l.state(key),
        Some(State::Completed),
        "wrong To tag: no match"
    );
    p.to = format!("{};tag=srv", invite.to_value());
    l.handle_request(now, udp(1), TxRequest::build(p));
    assert_eq!(l.state(key), Some(State::Confirmed));
    // CANCEL also matches its INVITE under 2543 rules.
    while l.poll_event().is_some() {}
    l.handle_request(now, udp(1), invite.cancel());
    let Some(Event::Request { cancels, .. }) = l.poll_event() else {
        panic!("CANCEL event");
    };
    assert_eq!(cancels, Some(key));
}

#[test]
fn misuse_is_reported() {
    let net = Net::new(1);
    let mut l = layer();
    let now = net.now;
    assert_eq!(
        l.send_request(now, udp(2), request("ACK", "z9hG4bKa")),
        Err(TransactionError::AckTransaction)
    );
    assert_eq!(
        l.send_request(now, udp(2), request("INVITE", "abc")),
        Err(TransactionError::MissingBranch)
    );
    let k = l
        .send_request(now, udp(2), request("INVITE", "z9hG4bKa"))
        .unwrap();
    assert_eq!(
        l.send_request(now, udp(2), request("INVITE", "z9hG4bKa")),
        Err(TransactionError::DuplicateBranch)
    );
    let resp = TxResponse::to_request(&request("INVITE", "z9hG4bKa"), 200, "OK", None);
    assert_eq!(
        l.send_response(now, k, resp.clone()),
        Err(TransactionError::WrongKind)
    );
    l.handle_request(now, udp(1), request("MESSAGE", "z9hG4bKm"));
    let Some(Event::Request {
        key, request: m, ..
    }) = l.poll_event()
    else {
        panic!("MESSAGE event");
    };
    let ok = TxResponse::to_request(&m, 200, "OK", Some("x"));
    l.send_response(now, key, ok.clone()).unwrap();
    assert!(matches!(
        l.send_response(now, key, ok),
        Err(TransactionError::InvalidState {
            state: State::Completed,
            status: 200
        })
    ));
    l.handle_transport_error(k);
    assert!(matches!(l.poll_event(), Some(Event::TransportError { .. })));
    assert!(matches!(l.poll_event(), Some(Event::Terminated { .. })));
    assert_eq!(l.state(k), None);
    assert_eq!(
        l.send_response(now, k, resp),
        Err(TransactionError::UnknownTransaction)
    );
}

#[test]
fn lossy_duplicating_reordering_network_delivers_exactly_once() {
    for (method, final_status, timeout) in [
        ("INVITE", "486", "Timeout TimerB"),
        ("OPTIONS", "200", "Timeout TimerF"),
    ] {
        for seed in 1..40u64 {
            let mut net = Net::new(seed);
            net.loss = 0.3;
            net.duplicate = 0.3;
            net.jitter = ms(80);
            let mut uac = TxnNode::new(1, layer(), &net);
            let mut uas = TxnNode::new(2, layer(), &net);
            uas.answer.responses = vec![(ms(50), 180), (ms(300), final_status.parse().unwrap())];
            uac.layer
                .send_request(net.now, udp(2), request(method, "z9hG4bKl"))
                .unwrap();
            net.run(&mut [&mut uac, &mut uas], secs(120.0));
            let uac_labels = labels(&uac);
            let uas_labels = labels(&uas);
            let count = |v: &[String], l: &str| v.iter().filter(|x| *x == l).count();
            let ctx = format!("{method} seed {seed}: {uac_labels:?} {uas_labels:?}");
            // The request reaches the UAS TU once; the final reaches the UAC TU at most once,
            // or a timeout is reported instead; everything terminates.
            assert_eq!(count(&uas_labels, &format!("Request {method}")), 1, "{ctx}");
            let finals = count(&uac_labels, &format!("Response {final_status}"));
            assert_eq!(finals + count(&uac_labels, timeout), 1, "{ctx}");
            assert_eq!(count(&uac_labels, "Terminated"), 1, "{ctx}");
            assert!(uac.layer.is_empty() && uas.layer.is_empty(), "{ctx}");
        }
    }
}

#[test]
fn poll_timeout_tracks_the_earliest_live_timer() {
    let net = Net::new(1);
    let mut l = layer();
    let now = net.now;
    assert_eq!(l.poll_timeout(), None);
    let k = l
        .send_request(now, udp(2), request("INVITE", "z9hG4bKa"))
        .unwrap();
    assert_eq!(l.poll_timeout(), Some(now + ms(500)));
    let resp = TxResponse::to_request(l.request(k).unwrap(), 180, "Ringing", Some("t"));
    l.handle_response(now + ms(100), udp(2), resp);
    // Proceeding: A and B stopped, nothing armed.
    assert_eq!(l.poll_timeout(), None);
    assert_eq!(l.state(k), Some(State::Proceeding));
    let _ = Timer::VALUES;
    let _: &dyn Agent = &TxnNode::new(1, layer(), &net);
}

#[test]
fn poll_deadline_says_when_the_earliest_timer_only_ends_a_wait() {
    let net = Net::new(1);
    let mut l = layer();
    let now = net.now;
    let k = l
        .send_request(now, udp(2), request("OPTIONS", "z9hG4bKw"))
        .unwrap();
    // Timer E (retransmission) first: on time.
    let d = l.poll_deadline().unwrap();
    assert_eq!((d.at, d.wait), (now + ms(500), false));
    let resp = TxResponse::to_request(l.request(k).unwrap(), 200, "OK", Some("t"));
    l.handle_response(now + ms(10), udp(2), resp);
    // Completed: only Timer K (T4) is left, which just ends the transaction.
    assert_eq!(l.state(k), Some(State::Completed));
    let d = l.poll_deadline().unwrap();
    assert_eq!((d.at, d.wait), (now + ms(5010), true));
    assert!(Timer::TimerK.is_wait() && Timer::TimerJ.is_wait() && Timer::TimerL.is_wait());
    assert!(!Timer::TimerA.is_wait() && !Timer::TimerG.is_wait() && !Timer::TimerH.is_wait());
}

#[test]
fn rfc6026_accepted_absorbs_invite_retransmissions_and_passes_2xx() {
    let mut net = Net::new(1);
    let mut uac = TxnNode::new(1, layer(), &net);
    // No 100 Trying: the UAC keeps retransmitting until the 2xx arrives.
    let mut uas = TxnNode::new(
        2,
        TransactionLayer::new(Config {
            send_trying: false,
            ..immediate()
        }),
        &net,
    );
    uas.answer.responses = vec![(ms(100), 200)];
    let mut first = true;
    net.drop_rules.push(Box::new(move |s| {
        if s.label() == "200" && first {
            first = false;
            return true;
        }
        false
    }));
    uac.layer
        .send_request(net.now, udp(2), request("INVITE", "z9hG4bKacc"))
        .unwrap();
    net.run(&mut [&mut uac, &mut uas], secs(1.0));
    // The retransmission at 500 ms hits the Accepted server transaction: absorbed, no second
    // request for the TU (RFC 3261 alone would have created a new transaction).
    assert_eq!(net.times("INVITE", addr(1)), [0, 500].map(ms));
    assert_eq!(labels(&uas), ["Request INVITE"]);
    let Some((
        _,
        Event::Request {
            key, request: inv, ..
        },
    )) = uas.events.first().cloned()
    else {
        panic!("INVITE event");
    };
    assert_eq!(uas.layer.state(key), Some(State::Accepted));
    // The UAS core retransmits its 2xx; Accepted lets each one through, and the client passes
    // each one up.
    let ok = TxResponse::to_request(&inv, 200, "OK", Some("uas-tag"));
    uas.layer.send_response(net.now, key, ok.clone()).unwrap();
    net.run(&mut [&mut uac, &mut uas], secs(2.0));
    uas.layer.send_response(net.now, key, ok).unwrap();
    net.run(&mut [&mut uac, &mut uas], secs(60.0));
    assert_eq!(net.times("200", addr(2)), [110, 1000, 2000].map(ms));
    assert_eq!(
        uac.event_labels(),
        [
            (ms(1010), "Response 200".to_string()),
            (ms(2010), "Response 200".to_string()),
            (ms(33_010), "Terminated".to_string()), // Timer M = 64*T1
        ]
    );
    assert_eq!(at(&uas, "Terminated"), [ms(32_110)]); // Timer L = 64*T1
}

#[test]
fn rfc6026_ack_matching_an_accepted_transaction_goes_to_the_tu() {
    let net = Net::new(1);
    let mut l = layer();
    let now = net.now;
    let invite = request("INVITE", "z9hG4bKak");
    l.handle_request(now, udp(1), invite.clone());
    let Some(Event::Request { key, .. }) = l.poll_event() else {
        panic!("INVITE event");
    };
    l.send_response(
        now,
        key,
        TxResponse::to_request(&invite, 200, "OK", Some("t")),
    )
    .unwrap();
    // An ACK reusing the INVITE's branch (allowed for 2xx ACKs by RFC 2543 peers).
    let mut p = invite.parts();
    p.method = "ACK".into();
    l.handle_request(now, udp(1), TxRequest::build(p));
    assert!(matches!(l.poll_event(), Some(Event::Ack { .. })));
    assert_eq!(l.state(key), Some(State::Accepted));
}

#[test]
fn invite_server_resends_final_on_retransmission_in_completed() {
    let net = Net::new(1);
    let mut l = layer();
    let now = net.now;
    let invite = request("INVITE", "z9hG4bKcf");
    l.handle_request(now, udp(1), invite.clone());
    let Some(Event::Request { key, .. }) = l.poll_event() else {
        panic!("INVITE event");
    };
    assert!(l.poll_transmit().is_some()); // 100 Trying
    l.send_response(
        now,
        key,
        TxResponse::to_request(&invite, 486, "Busy Here", Some("t")),
    )
    .unwrap();
    let first = l.poll_transmit().unwrap();
    // Completed: the request is dropped, the key and the response's bytes are kept.
    assert!(l.request(key).is_none());
    assert_eq!(l.state(key), Some(State::Completed));
    l.handle_request(now + ms(100), udp(1), invite);
    let again = l.poll_transmit().unwrap();
    assert!(matches!(&again.message, Outgoing::Response(r) if r.status() == 486));
    assert_eq!(again.message.bytes(), first.message.bytes());
    assert_eq!(again.destination, udp(1));
    assert!(l.poll_event().is_none());
}

/// RFC 3261 §17.2.1: with the default 200 ms delay, a UAS that answers 180 within it sends no
/// 100 Trying; one that stays silent gets the 100 at 200 ms.
#[test]
fn delayed_100_trying_only_when_the_tu_is_slow() {
    for (answer_after, expect_100) in [(ms(50), false), (ms(1000), true)] {
        let mut net = Net::new(1);
        let mut uac = TxnNode::new(1, TransactionLayer::new(Config::default()), &net);
        let mut uas = TxnNode::new(2, TransactionLayer::new(Config::default()), &net);
        uas.answer.responses = vec![(answer_after, 180), (answer_after + ms(10), 486)];
        uac.layer
            .send_request(net.now, udp(2), request("INVITE", "z9hG4bKd"))
            .unwrap();
        net.run(&mut [&mut uac, &mut uas], secs(40.0));
        let trying = net.times("100", addr(2));
        if expect_100 {
            // Sent 200 ms after the INVITE arrived (10 ms transit).
            assert_eq!(trying, [ms(210)]);
        } else {
            assert!(trying.is_empty(), "{trying:?}");
        }
        assert_eq!(net.times("180", addr(2)).len(), 1);
        assert!(labels(&uac).contains(&"Response 486".to_string()));
    }
}

#[test]
fn lingering_transactions_are_capped_oldest_first_and_not_counted_in_progress() {
    let mut l = TransactionLayer::new(Config {
        max_lingering: 2,
        ..immediate()
    });
    #[allow(clippy::disallowed_methods)] // the origin of the test's clock; no time passes
    let now = std::time::Instant::now();
    let mut keys = Vec::new();
    for b in ["z9hG4bKa", "z9hG4bKb", "z9hG4bKc"] {
        l.handle_request(now, udp(1), request("OPTIONS", b));
        let Some(Event::Request { key, request, .. }) = l.poll_event() else {
            panic!("no request event");
        };
        assert_eq!(l.in_progress(), 1);
        let ok = TxResponse::to_request(&request, 200, "OK", None);
        l.send_response(now, key, ok).unwrap();
        assert_eq!(
            l.in_progress(),
            0,
            "a Completed transaction is not in progress"
        );
        keys.push(key);
    }
    // The third to complete pushed the first out; its Terminated event says so.
    assert_eq!((l.lingering(), l.evicted(), l.len()), (2, 1, 2));
    assert!(l.state(keys[0]).is_none());
    assert_eq!(l.state(keys[2]), Some(State::Completed));
    let mut ended = Vec::new();
    while let Some(e) = l.poll_event() {
        if let Event::Terminated { key } = e {
            ended.push(key);
        }
    }
    assert_eq!(ended, [keys[0]]);
    // A retransmission of the evicted request is new work; of a kept one, absorbed (resent).
    l.handle_request(now, udp(1), request("OPTIONS", "z9hG4bKa"));
    assert!(matches!(l.poll_event(), Some(Event::Request { .. })));
    l.handle_request(now, udp(1), request("OPTIONS", "z9hG4bKc"));
    assert!(l.poll_event().is_none());
    // Timer J ends the rest; the count follows.
    l.handle_timeout(now + Duration::from_secs(40));
    assert_eq!(l.lingering(), 0);
}
