//! Answers and relays an attacker could steer (reliability findings §7 items 2–4 and 10), on
//! the release binary over loopback: stateless answers go to the packet's source (`received`,
//! and `rport` when asked), an ACK that matches no transaction is relayed only when it was
//! routed to us, the embedded default script is no open relay for fake in-dialog requests, and
//! a script passing an infinite or huge number to `timer`, `cache` or `rate_limit` gets a
//! Python exception (500) while the node keeps serving.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{Node, Placement, Ua, free_port, http_get, request, status};

const ECHO: &str = r#"
from siphon import proxy

@proxy.on_request
def answer(request):
    request.reply(200, "OK")
"#;

fn listener() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let a = s.local_addr().expect("addr");
    (s, a)
}

/// Nothing arrives on `sock` within half a second (checked after the node has provably
/// handled the message, so anything it relayed would already be there).
fn nothing_arrives(sock: &UdpSocket) -> bool {
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut buf = vec![0u8; 65536];
    loop {
        match sock.recv_from(&mut buf) {
            Ok(_) => return false,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return true,
        }
    }
}

/// The value of a metric line `name{labels} v` on the node's exporter, polled until it is at
/// least `want` (bounded), then returned.
fn metric_at_least(addr: SocketAddr, series: &str, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body = http_get(addr, "/metrics");
        let v = body
            .lines()
            .find_map(|l| l.strip_prefix(series).map(str::trim))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if v >= want || Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stateless_answers_go_to_the_packet_source() {
    let node = Node::with_script("stateless", ECHO, Placement::ALL[0], "");
    let ua = Ua::new();
    let (decoy, decoy_addr) = listener();
    // The Via names another port and asks for rport: the answer goes to where the packet
    // came from (RFC 3581), not to the port the sender wrote.
    let via = format!("Via: SIP/2.0/UDP {decoy_addr};branch=z9hG4bK-mf0;rport\r\n");
    let msg = format!(
        "OPTIONS sip:svc@127.0.0.1 SIP/2.0\r\n{via}Max-Forwards: 0\r\n\
         From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:svc@127.0.0.1>\r\nCall-ID: mf0\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    ua.send(node.sip, &msg);
    let got = ua.recv_final().expect("the 483 came back to the sender");
    assert_eq!(status(&got), Some(483), "{got}");
    // Proxy-Require with unknown options: 420, also to the source.
    let msg = format!(
        "OPTIONS sip:svc@127.0.0.1 SIP/2.0\r\n{}Max-Forwards: 70\r\n\
         From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:svc@127.0.0.1>\r\nCall-ID: pr0\r\n\
         CSeq: 1 OPTIONS\r\nProxy-Require: a, b, c\r\nContent-Length: 0\r\n\r\n",
        via.replace("mf0", "pr0")
    );
    ua.send(node.sip, &msg);
    let got = ua.recv_final().expect("the 420 came back to the sender");
    assert_eq!(status(&got), Some(420), "{got}");
    assert!(
        nothing_arrives(&decoy),
        "a stateless answer went to the Via's port"
    );
}

#[test]
fn unmatched_ack_is_not_relayed() {
    let metrics = free_port();
    let node = Node::with_script(
        "ack",
        ECHO,
        Placement::ALL[0],
        &format!("metrics:\n  prometheus:\n    listen: \"127.0.0.1:{metrics}\"\n"),
    );
    let metrics: SocketAddr = ([127, 0, 0, 1], metrics).into();
    let ua = Ua::new();
    let (victim, victim_addr) = listener();
    let body = "x".repeat(2000);
    let ack = |ruri: &str, id: &str| {
        format!(
            "ACK {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-{id}\r\nMax-Forwards: 70\r\n\
             From: <sip:a@127.0.0.1>;tag=1\r\nTo: <{ruri}>;tag=2\r\nCall-ID: {id}\r\n\
             CSeq: 1 ACK\r\nContent-Length: {}\r\n\r\n{body}",
            ua.addr,
            body.len()
        )
    };
    // To a third party: an open relay and reflector if forwarded.
    ua.send(node.sip, &ack(&format!("sip:v@{victim_addr}"), "ack-1"));
    // Back to ourselves: a loop through the node if forwarded.
    ua.send(node.sip, &ack(&format!("sip:x@{}", node.sip), "ack-2"));
    let series = "siphon_dropped_total{reason=\"unrouted_ack\"}";
    assert_eq!(metric_at_least(metrics, series, 2.0), 2.0, "{}", node.log());
    assert!(nothing_arrives(&victim), "an unrouted ACK was relayed");
    let acks = metric_at_least(metrics, "siphon_requests_total{method=\"ACK\"}", 2.0);
    assert_eq!(acks, 2.0, "the ACK to ourselves looped");
}

#[test]
fn default_script_is_no_open_relay() {
    let yaml = std::fs::read_to_string(common::repo_root().join("deploy/examples/siphon.yaml"))
        .expect("default config")
        .replace("${SIPHON_LISTEN_UDP:-127.0.0.1:5060}", "127.0.0.1:{sip}")
        .replace("${SIPHON_LISTEN_TCP:-127.0.0.1:5060}", "127.0.0.1:{sip}")
        .replace(
            "${SIPHON_METRICS:-127.0.0.1:9090}",
            &format!("127.0.0.1:{}", free_port()),
        );
    let script =
        std::fs::read_to_string(common::repo_root().join("deploy/examples/proxy_default.py"))
            .expect("default script");
    let node = Node::start("openrelay", &yaml, &[("proxy_default.py", &script)]);
    let ua = Ua::new();
    let (victim, victim_addr) = listener();
    // A fake in-dialog INVITE (To tag) routed through a third party, no credentials.
    let msg = request(
        "INVITE",
        "sip:+15551234@127.0.0.1",
        ua.addr,
        "relay-1",
        &format!("Route: <sip:{victim_addr};lr>\r\n"),
    )
    .replace(
        "To: <sip:+15551234@127.0.0.1>",
        "To: <sip:+15551234@127.0.0.1>;tag=x",
    );
    ua.send(node.sip, &msg);
    let got = ua
        .recv_final()
        .expect("an answer to the fake in-dialog INVITE");
    assert_eq!(status(&got), Some(404), "{got}");
    assert!(
        nothing_arrives(&victim),
        "the INVITE was relayed to the Route"
    );
}

const NUMBERS: &str = r#"
from siphon import cache, proxy, timer

@proxy.on_request("OPTIONS")
async def numbers(request):
    d = float(request.get_header("X-D") or "1")
    what = request.get_header("X-What")
    if what == "timer":
        timer.set("k", d, lambda: None)
    elif what == "sleep":
        await timer.sleep(d)
    elif what == "cache":
        await cache.store("default", "k", "v", ttl=d)
    elif what == "expire":
        await cache.expire("default", "k", d)
    elif what == "rate":
        proxy.rate_limit(request, d, 10)
    request.reply(200, "OK")
"#;

#[test]
fn script_numbers_raise_instead_of_aborting() {
    let node = Node::with_script("numbers", NUMBERS, Placement::ALL[0], "");
    let ua = Ua::new();
    let mut n = 0;
    for what in ["timer", "sleep", "cache", "expire", "rate"] {
        for bad in ["inf", "-inf", "nan", "1e300", "-5"] {
            n += 1;
            let id = format!("num-{n}");
            ua.send(
                node.sip,
                &request(
                    "OPTIONS",
                    "sip:svc@127.0.0.1",
                    ua.addr,
                    &id,
                    &format!("X-What: {what}\r\nX-D: {bad}\r\n"),
                ),
            );
            let got = ua
                .recv_final()
                .unwrap_or_else(|| panic!("{what}({bad}): no answer (node down?)\n{}", node.log()));
            assert_eq!(status(&got), Some(500), "{what}({bad}): {got}");
        }
        // And the node still serves with a sane number.
        n += 1;
        let id = format!("num-{n}");
        ua.send(
            node.sip,
            &request(
                "OPTIONS",
                "sip:svc@127.0.0.1",
                ua.addr,
                &id,
                &format!("X-What: {what}\r\nX-D: 0.01\r\n"),
            ),
        );
        let got = ua.recv_final().expect("answer after the bad numbers");
        assert_eq!(status(&got), Some(200), "{what}: {got}");
    }
    assert!(
        node.log().contains("ValueError"),
        "the traceback names the ValueError"
    );
}
