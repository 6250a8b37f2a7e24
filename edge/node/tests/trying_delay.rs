//! `transaction.auto_emit_100_trying_delay_ms` (RFC 3261 §17.2.1), through the real node over
//! loopback UDP: an INVITE's 100 Trying goes out only when no provisional or final response
//! has been sent by the end of the delay.
//! - a callee that rings within the delay: the caller sees its 180, and never a 100;
//! - a callee that stays silent: the caller gets the node's 100 Trying.
//!
//! The first case uses a delay far longer than a loopback round trip, so that it asserts the
//! behaviour, not a race.

mod common;

use std::time::Duration;

use common::{Node, Placement, Ua, answer, header, status};

const SCRIPT: &str = r#"
from siphon import proxy

@proxy.on_request
def route(request):
    request.relay()
"#;

const LAYOUT: Placement = Placement {
    inline: true,
    cores: 1,
};

fn node(name: &str, delay_ms: u64) -> Node {
    Node::with_script(
        name,
        SCRIPT,
        LAYOUT,
        &format!("transaction:\n  auto_emit_100_trying_delay_ms: {delay_ms}\n"),
    )
}

/// The next request (not a response) `ua` receives.
fn next_request(ua: &Ua) -> String {
    loop {
        let (m, _) = ua.recv().expect("a request");
        if status(&m).is_none() {
            return m;
        }
    }
}

fn invite(n: &Node, caller: &Ua, callee: &Ua, call_id: &str) {
    let ruri = format!("sip:callee@{}", callee.addr);
    caller.send(
        n.sip,
        &common::request("INVITE", &ruri, caller.addr, call_id, ""),
    );
}

#[test]
fn a_callee_ringing_within_the_delay_means_no_100_trying() {
    let n = node("trying-fast", 1500);
    let (caller, callee) = (Ua::new(), Ua::new());
    invite(&n, &caller, &callee, "trying-fast-1");
    let inv = next_request(&callee);
    callee.send(n.sip, &answer(&inv, 180, "Ringing"));
    let (first, _) = caller.recv().expect("the 180");
    assert_eq!(status(&first), Some(180), "{first}");
    // Past the delay: still nothing (a 100 after a 180 would be a protocol error anyway).
    caller.timeout(Duration::from_millis(2500));
    let late = caller.recv();
    assert!(late.is_none(), "unexpected message: {late:?}");
    // The call goes on normally.
    callee.send(n.sip, &answer(&inv, 486, "Busy Here"));
    caller.timeout(Duration::from_secs(5));
    let busy = caller.recv_final().expect("the 486");
    assert_eq!(status(&busy), Some(486), "{busy}");
}

#[test]
fn a_silent_callee_means_100_trying_after_the_delay() {
    let n = node("trying-slow", 200);
    let (caller, callee) = (Ua::new(), Ua::new());
    invite(&n, &caller, &callee, "trying-slow-1");
    let inv = next_request(&callee);
    let (first, _) = caller.recv().expect("a 100 Trying");
    assert_eq!(status(&first), Some(100), "{first}");
    assert_eq!(header(&first, "Call-ID"), ["trying-slow-1"], "{first}");
    callee.send(n.sip, &answer(&inv, 486, "Busy Here"));
    let busy = caller.recv_final().expect("the 486");
    assert_eq!(status(&busy), Some(486), "{busy}");
}

/// A reactor that slept before the INVITE arrived stamps it with the time it woke, not the
/// time it went to sleep: the 100 Trying's delay (and every timer armed from the request)
/// counts from then. The script answers 404 at once, so the caller sees that 404 only: no 100
/// before it, and no Timer G copies (none is needed before any provisional, §17.1.1.2).
/// Before the fix the reactor's clock was as old as its sleep, so the 100 was already due
/// when the 404 went out and Timer G resent the 404.
#[test]
fn an_idle_reactor_answers_at_once_without_a_100() {
    const NOT_FOUND: &str = r#"
from siphon import proxy

@proxy.on_request
def route(request):
    request.reply(404, "Not Found")
"#;
    for layout in [
        LAYOUT,
        Placement {
            inline: false,
            cores: 1,
        },
    ] {
        let n = Node::with_script("trying-idle", NOT_FOUND, layout, "");
        let caller = Ua::new();
        // Let the reactor go to sleep (its idle wait), then wake it with the INVITE.
        std::thread::sleep(Duration::from_millis(1500));
        caller.send(
            n.sip,
            &common::request(
                "INVITE",
                "sip:nobody@127.0.0.1",
                caller.addr,
                "trying-idle-1",
                "",
            ),
        );
        let (first, _) = caller.recv().expect("the 404");
        assert_eq!(status(&first), Some(404), "{layout:?}: {first}");
        caller.timeout(Duration::from_millis(1200));
        let late = caller.recv();
        assert!(late.is_none(), "{layout:?}: unexpected message: {late:?}");
    }
}
