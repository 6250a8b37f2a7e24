//! Requests that fail to parse, or whose mandatory headers are malformed, but whose Via,
//! Call-ID and CSeq can still be read, get a stateless 400 naming the fault (RFC 4475 §3.1.2:
//! scalar02, quotbal, badinv01, regbadct, clerr), sent back to the packet's source over UDP and
//! on the same connection over TCP. Bytes that cannot be read as a request, and a broken ACK,
//! get nothing and are counted as `siphon_dropped_total{reason="malformed"}`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{Node, Placement, Ua, free_port, header, http_get, repo_root, request, status};

const SCRIPT: &str = r#"
from siphon import proxy

@proxy.on_request("OPTIONS")
def options(request):
    request.reply(200, "OK")
"#;

fn corpus(name: &str) -> Vec<u8> {
    let p = repo_root().join(format!("edge/sip/tests/corpus/rfc4475/{name}.dat"));
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn metric(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing:\n{body}"))
}

#[test]
fn salvageable_requests_get_a_400_and_garbage_is_counted() {
    let metrics_port = free_port();
    let extra = format!("metrics:\n  prometheus:\n    listen: \"127.0.0.1:{metrics_port}\"\n");
    let one_core = Placement {
        inline: true,
        cores: 1,
    };
    let node = Node::with_script("salvage-400", SCRIPT, one_core, &extra);
    let ua = Ua::new();

    // (file, reason, Call-ID, CSeq as received)
    let cases = [
        (
            "scalar02",
            "Malformed CSeq",
            "scalar02.23o0pd9vanlq3wnrlnewofjas9ui32",
            "36893488147419103232 REGISTER",
        ),
        ("quotbal", "Malformed To", "quotbal.aksdj", "8 INVITE"),
        (
            "badinv01",
            "Malformed Via",
            "badinv01.0ha0isndaksdjasdf3234nas",
            "8 INVITE",
        ),
        (
            "regbadct",
            "Malformed Contact",
            "regbadct.k345asrl3fdbv@10.0.0.1",
            "1 REGISTER",
        ),
        (
            "clerr",
            "Body Shorter Than Content-Length",
            "clerr.0ha0isndaksdjweiafasdk3",
            "8 INVITE",
        ),
    ];
    for (name, reason, call_id, cseq) in cases {
        ua.sock.send_to(&corpus(name), node.sip).expect("send");
        let (reply, from) = ua
            .recv()
            .unwrap_or_else(|| panic!("{name}: no answer\n{}", node.log()));
        assert_eq!(from, node.sip, "{name}");
        assert_eq!(
            reply.lines().next(),
            Some(format!("SIP/2.0 400 {reason}").as_str()),
            "{name}: {reply}"
        );
        assert_eq!(header(&reply, "Call-ID"), [call_id], "{name}");
        assert_eq!(header(&reply, "CSeq"), [cseq], "{name}");
    }

    // Nothing comes back for garbage, a response that does not parse, a request without Via,
    // or a broken ACK: the OPTIONS sent after them is answered first.
    let ack = "ACK sip:user@example.com SIP/ 2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKa\r\n\
               Call-ID: ack-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    let dropped: [&[u8]; 4] = [
        b"\x00\x01 this is not SIP \xff\r\n\r\n",
        &corpus("bigcode"),
        &corpus("test"),
        ack.as_bytes(),
    ];
    for d in dropped {
        ua.sock.send_to(d, node.sip).expect("send garbage");
    }
    let probe = request("OPTIONS", "sip:svc@127.0.0.1", ua.addr, "after-garbage", "");
    ua.send(node.sip, &probe);
    let reply = ua.recv_final().expect("OPTIONS answered");
    assert_eq!(status(&reply), Some(200), "{reply}");
    assert_eq!(header(&reply, "Call-ID"), ["after-garbage"], "{reply}");

    // Over TCP the 400 comes back on the same connection.
    let mut tcp = TcpStream::connect(node.sip).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    tcp.write_all(&corpus("scalar02")).expect("write");
    let mut buf = vec![0u8; 4096];
    let mut got = String::new();
    while !got.contains("\r\n\r\n") {
        let n = tcp.read(&mut buf).expect("read 400 over TCP");
        assert!(n > 0, "connection closed before the answer: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(status(&got), Some(400), "{got}");
    assert_eq!(
        header(&got, "Call-ID"),
        ["scalar02.23o0pd9vanlq3wnrlnewofjas9ui32"]
    );

    let body = http_get(SocketAddr::from(([127, 0, 0, 1], metrics_port)), "/metrics");
    assert_eq!(
        metric(&body, "siphon_dropped_total{reason=\"malformed\"}"),
        4,
        "{body}"
    );
    assert_eq!(metric(&body, "siphon_malformed_total"), 6, "{body}");
}
