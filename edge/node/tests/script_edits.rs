//! What a routing script's edits and registered contacts put on the wire (siphon issue 9,
//! item 5), through the real node over loopback UDP:
//! - a fork to a registered Contact goes through the binding's Path (RFC 3327) and the
//!   upstream idiom `fork([c.received or c.uri ...])` reaches a UA behind NAT;
//! - an edited, relayed request keeps the proxy's processing (received/rport, our Route
//!   popped, Max-Forwards decremented) plus the edits;
//! - header edits made in `@proxy.on_reply` reach the caller;
//! - an edit that leaves no usable request is answered 500, not dropped;
//! - `set_reply_to_tag` sets the To tag (no pseudo-header on the wire);
//! - `reply(..., reliable=True)` sends an RFC 3262 reliable provisional, retransmitted until the
//!   node answers its PRACK.

mod common;

use std::time::Duration;

use common::{Node, Placement, Ua, answer_with as answer, header, status};

const SCRIPT: &str = r#"
from siphon import proxy, registrar

@proxy.on_request("REGISTER")
def reg(request):
    registrar.save(request)

@proxy.on_request("INVITE")
def inv(request):
    if request.get_header("X-Reliable"):
        request.reply(183, "Session Progress", reliable=True)
        return
    contacts = registrar.lookup(request.ruri)
    if not contacts:
        request.reply(404, "Not Found")
    elif request.get_header("X-Mode") == "received":
        request.fork([c.received or c.uri for c in contacts])
    else:
        request.fork(contacts)

@proxy.on_request("MESSAGE")
def msg(request):
    if request.get_header("X-Tag"):
        request.set_reply_to_tag("script-tag")
        request.reply(486, "Busy Here")
        return
    if request.get_header("X-Break"):
        request.remove_header("Via")
    request.set_header("X-Edited", "yes")
    request.remove_header("X-Private")
    request.relay()

@proxy.on_reply
def reply(request, reply):
    reply.set_header("X-Reply-Edit", "done")
    reply.remove_header("X-Secret")
    reply.relay()
"#;

const LAYOUT: Placement = Placement {
    inline: true,
    cores: 1,
};

fn node(name: &str) -> Node {
    Node::with_script(
        name,
        SCRIPT,
        LAYOUT,
        "domain:\n  local: [\"example.com\"]\n",
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

/// A REGISTER for `user@example.com` sent from `ua` with a Contact and extra headers.
fn register(n: &Node, ua: &Ua, user: &str, contact: &str, extra: &str) {
    let req = format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {ua};rport;branch=z9hG4bK-reg-{user}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=r-{user}\r\n\
         To: <sip:{user}@example.com>\r\nCall-ID: reg-{user}\r\nCSeq: 1 REGISTER\r\n\
         Contact: {contact}\r\nExpires: 600\r\n{extra}Content-Length: 0\r\n\r\n",
        ua = ua.addr
    );
    ua.send(n.sip, &req);
    let ok = ua.recv_final().expect("REGISTER answered");
    assert_eq!(status(&ok), Some(200), "{ok}");
}

#[test]
fn a_fork_to_a_registered_contact_goes_through_its_path() {
    let n = node("edits-path");
    // An edge proxy registers the UA on its behalf and puts itself in Path.
    let edge = Ua::new();
    let path = format!("<sip:{};lr>", edge.addr);
    register(
        &n,
        &edge,
        "alice",
        "<sip:alice@192.0.2.50:5062>",
        &format!("Supported: path\r\nPath: {path}\r\n"),
    );
    let caller = Ua::new();
    caller.send(
        n.sip,
        &common::request("INVITE", "sip:alice@example.com", caller.addr, "path-1", ""),
    );
    let inv = next_request(&edge);
    assert!(
        inv.starts_with("INVITE sip:alice@192.0.2.50:5062 SIP/2.0\r\n"),
        "{inv}"
    );
    assert_eq!(header(&inv, "Route"), [path.as_str()], "{inv}");
    edge.send(n.sip, &answer(&inv, 486, "Busy Here", ""));
    let busy = caller.recv_final().expect("the branch's answer");
    assert_eq!(status(&busy), Some(486), "{busy}");
}

#[test]
fn fork_to_received_reaches_a_ua_behind_nat() {
    let n = node("edits-received");
    // The UA's Contact names an address nobody listens on; it is reachable at its source only.
    let ua = Ua::new();
    register(&n, &ua, "bob", "<sip:bob@10.255.255.1:5060>", "");
    let caller = Ua::new();
    caller.send(
        n.sip,
        &common::request(
            "INVITE",
            "sip:bob@example.com",
            caller.addr,
            "nat-1",
            "X-Mode: received\r\n",
        ),
    );
    let inv = next_request(&ua);
    let expect = format!("INVITE sip:{};transport=udp SIP/2.0\r\n", ua.addr);
    assert!(inv.starts_with(&expect), "{inv}");
    ua.send(n.sip, &answer(&inv, 486, "Busy Here", ""));
    let busy = caller.recv_final().expect("an answer, not 480");
    assert_eq!(status(&busy), Some(486), "{busy}");
}

#[test]
fn an_edited_relayed_request_keeps_the_proxys_processing() {
    let n = node("edits-request");
    let callee = Ua::new();
    let caller = Ua::new();
    // A private sent-by with an empty rport, and a pre-loaded Route naming the node.
    let msg = format!(
        "MESSAGE sip:carol@{callee} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.9:5999;rport;branch=z9hG4bK-edit-1\r\n\
         Route: <sip:{node};lr>\r\nMax-Forwards: 70\r\n\
         From: <sip:tester@127.0.0.1>;tag=t-edit\r\nTo: <sip:carol@{callee}>\r\n\
         Call-ID: edit-1\r\nCSeq: 1 MESSAGE\r\nX-Private: secret\r\nContent-Length: 0\r\n\r\n",
        callee = callee.addr,
        node = n.sip,
    );
    caller.send(n.sip, &msg);
    let fwd = next_request(&callee);
    assert_eq!(header(&fwd, "X-Edited"), ["yes"], "{fwd}");
    assert!(header(&fwd, "X-Private").is_empty(), "{fwd}");
    let vias = header(&fwd, "Via");
    assert_eq!(vias.len(), 2, "{fwd}");
    assert!(
        vias[1].ends_with(&format!(";received=127.0.0.1;rport={}", caller.addr.port())),
        "{fwd}"
    );
    let ours = n.sip.to_string();
    assert!(
        header(&fwd, "Route").iter().all(|r| !r.contains(&ours)),
        "{fwd}"
    );
    assert_eq!(header(&fwd, "Max-Forwards"), ["69"], "{fwd}");
    // The answer finds its way back through received/rport.
    callee.send(n.sip, &answer(&fwd, 200, "OK", ""));
    let ok = caller.recv_final().expect("the 200");
    assert_eq!(status(&ok), Some(200), "{ok}");
}

#[test]
fn an_unusable_edit_is_answered_500() {
    let n = node("edits-broken");
    let callee = Ua::new();
    let caller = Ua::new();
    let ruri = format!("sip:gina@{}", callee.addr);
    caller.send(
        n.sip,
        &common::request("MESSAGE", &ruri, caller.addr, "broken-1", "X-Break: 1\r\n"),
    );
    let err = caller.recv_final().expect("an answer");
    assert_eq!(status(&err), Some(500), "{err}");
    assert!(n.log().contains("script edit of the request rejected"));
}

#[test]
fn on_reply_edits_reach_the_caller() {
    let n = node("edits-reply");
    let callee = Ua::new();
    let caller = Ua::new();
    let ruri = format!("sip:dave@{}", callee.addr);
    caller.send(
        n.sip,
        &common::request("MESSAGE", &ruri, caller.addr, "reply-1", ""),
    );
    let fwd = next_request(&callee);
    callee.send(
        n.sip,
        &answer(&fwd, 200, "OK", "X-Secret: internal\r\nX-Keep: kept\r\n"),
    );
    let ok = caller.recv_final().expect("the relayed 200");
    assert_eq!(status(&ok), Some(200), "{ok}");
    assert_eq!(header(&ok, "X-Reply-Edit"), ["done"], "{ok}");
    assert!(header(&ok, "X-Secret").is_empty(), "{ok}");
    assert_eq!(header(&ok, "X-Keep"), ["kept"], "{ok}");
    assert_eq!(header(&ok, "Via").len(), 1, "{ok}");
}

#[test]
fn set_reply_to_tag_sets_the_to_tag() {
    let n = node("edits-totag");
    let caller = Ua::new();
    caller.send(
        n.sip,
        &common::request(
            "MESSAGE",
            "sip:erin@example.com",
            caller.addr,
            "tag-1",
            "X-Tag: 1\r\n",
        ),
    );
    let busy = caller.recv_final().expect("the 486");
    assert_eq!(status(&busy), Some(486), "{busy}");
    let to = header(&busy, "To");
    assert_eq!(to.len(), 1, "{busy}");
    assert!(to[0].ends_with(";tag=script-tag"), "{busy}");
    assert!(!busy.contains(":to-tag"), "{busy}");
}

#[test]
fn a_reliable_provisional_carries_100rel_and_is_retransmitted_until_prack() {
    let n = node("edits-100rel");
    let caller = Ua::new();
    caller.timeout(Duration::from_secs(10));
    let invite = common::request(
        "INVITE",
        "sip:frank@example.com",
        caller.addr,
        "rel-1",
        "Supported: 100rel\r\nX-Reliable: 1\r\n",
    );
    caller.send(n.sip, &invite);
    let p1 = caller.recv_final().expect("the 183");
    assert_eq!(status(&p1), Some(183), "{p1}");
    assert_eq!(header(&p1, "Require"), ["100rel"], "{p1}");
    assert_eq!(header(&p1, "RSeq"), ["1"], "{p1}");
    // Not acknowledged yet: it comes again (RFC 3262 §3).
    let again = caller.recv_final().expect("a retransmission of the 183");
    assert_eq!(status(&again), Some(183), "{again}");
    assert_eq!(header(&again, "RSeq"), ["1"], "{again}");
    // The PRACK is answered by the node itself.
    let to = header(&p1, "To")[0];
    let prack = format!(
        "PRACK sip:frank@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP {ua};branch=z9hG4bK-prack-1\r\nMax-Forwards: 70\r\n\
         From: <sip:tester@127.0.0.1>;tag=t-rel-1\r\nTo: {to}\r\nCall-ID: rel-1\r\n\
         CSeq: 2 PRACK\r\nRAck: 1 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        ua = caller.addr
    );
    caller.send(n.sip, &prack);
    let ok = loop {
        let m = caller.recv_final().expect("the PRACK's 200");
        if header(&m, "CSeq")
            .first()
            .is_some_and(|c| c.ends_with("PRACK"))
        {
            break m;
        }
    };
    assert_eq!(status(&ok), Some(200), "{ok}");
    // Clean up: the caller gives up.
    let cancel = invite
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    caller.send(n.sip, &cancel);
}
