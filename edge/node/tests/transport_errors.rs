//! Transport errors fail a branch at once (RFC 3261 §8.1.3.1, §16.7), on the release binary:
//! a relay to a TCP next hop where nothing listens is a 503 from that branch, which
//! `@proxy.on_failure` sees before the caller gets its final answer (the answer carries what
//! the handler saw), without waiting for Timer F; the cause is counted.

mod common;

use std::net::SocketAddr;

use common::{Node, Placement, Ua, free_port, http_get, request, status};

const SCRIPT: &str = r#"
from siphon import proxy

@proxy.on_request("MESSAGE")
def route(request):
    request.relay(next_hop=request.get_header("X-Next"))

@proxy.on_failure
def failed(request, reply):
    request.reply(502, f"Failure Hook Saw {reply.status_code}")
"#;

#[test]
fn refused_tcp_next_hop_is_a_503_seen_by_on_failure() {
    let metrics = free_port();
    let node = Node::with_script(
        "transport-error",
        SCRIPT,
        Placement::ALL[0],
        &format!("metrics:\n  prometheus:\n    listen: \"127.0.0.1:{metrics}\"\n"),
    );
    let nobody = free_port();
    let ua = Ua::new();
    ua.send(
        node.sip,
        &request(
            "MESSAGE",
            "sip:svc@127.0.0.1",
            ua.addr,
            "refused-1",
            &format!("X-Next: sip:127.0.0.1:{nobody};transport=tcp\r\n"),
        ),
    );
    let got = ua.recv_final().expect("the caller's final answer");
    assert_eq!(status(&got), Some(502), "{got}\n{}", node.log());
    assert_eq!(
        got.lines().next(),
        Some("SIP/2.0 502 Failure Hook Saw 503"),
        "on_failure saw the branch's 503 before the caller was answered"
    );
    let text = http_get(SocketAddr::from(([127, 0, 0, 1], metrics)), "/metrics");
    assert!(
        text.contains("siphon_transport_errors_total{cause=\"connect\"} 1"),
        "{text}"
    );
    assert!(node.log().contains("transport error towards a next hop"));
}
