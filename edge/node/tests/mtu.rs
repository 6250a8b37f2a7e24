//! `listen.mtu` and RFC 3261 §18.1.1 on the release binary: a relayed request within 200 bytes
//! of the path MTU goes to its next hop over TCP (the Via names our TCP interface), a small one
//! over UDP, on IPv4 and on `::1`; and when the next hop refuses the TCP connection the request
//! is retried over UDP.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::Duration;

use common::{Node, Ua, free_port, status};

const SCRIPT: &str = r#"
from siphon import proxy

@proxy.on_request("MESSAGE")
def route(request):
    request.relay(next_hop=request.get_header("X-Next"))
"#;

fn config(metrics: u16) -> String {
    format!(
        "listen:\n  udp: [\"127.0.0.1:{{sip}}\", \"[::1]:{{sip}}\"]\n  tcp: [\"127.0.0.1:{{sip}}\", \"[::1]:{{sip}}\"]\n  mtu: 1280\n\
         script:\n  path: s.py\ntuning:\n  reactor_cpus: [0]\n\
         metrics:\n  prometheus:\n    listen: \"127.0.0.1:{metrics}\"\n"
    )
}

/// A MESSAGE of about `size` bytes from `ua` to the node, relayed to `next`.
fn message(ua: SocketAddr, id: &str, next: &str, size: usize) -> String {
    let head = format!(
        "MESSAGE sip:svc@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {ua};branch=z9hG4bK-{id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=a-{id}\r\nTo: <sip:svc@127.0.0.1>\r\n\
         Call-ID: {id}\r\nCSeq: 1 MESSAGE\r\nX-Next: {next}\r\nContent-Type: text/plain\r\n"
    );
    let body_len = size.saturating_sub(head.len() + 24);
    format!(
        "{head}Content-Length: {body_len}\r\n\r\n{}",
        "m".repeat(body_len)
    )
}

/// 200 OK for a request (Via, From, To, Call-ID, CSeq copied).
fn ok_for(req: &str) -> String {
    let mut resp = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for v in common::header(req, name) {
            resp.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    resp + "Content-Length: 0\r\n\r\n"
}

/// Read one request from a TCP connection (headers and Content-Length body).
fn read_stream_request(conn: &mut std::net::TcpStream) -> String {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = common::header(&text, "Content-Length")
                .first()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return text;
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return String::from_utf8_lossy(&buf).into_owned(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn run_family(node: &Node, ip: &str) {
    let bracket = |ip: &str| {
        if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        }
    };
    let port = free_port();
    let hop = format!("{}:{port}", bracket(ip));
    let hop_addr: SocketAddr = hop.parse().expect("hop");
    let udp = UdpSocket::bind(hop_addr).expect("hop udp");
    udp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let tcp = TcpListener::bind(hop_addr).expect("hop tcp");
    let ua = Ua::new();

    // Large: over TCP, with a Via naming our TCP interface.
    let big = message(ua.addr, &format!("big-{port}"), &format!("sip:{hop}"), 1400);
    assert!(big.len() >= 1380, "{}", big.len());
    ua.send(node.sip, &big);
    let (mut conn, _) = tcp.accept().expect("the node connected over TCP");
    let req = read_stream_request(&mut conn);
    assert!(req.starts_with("MESSAGE "), "{ip}: {req}");
    let top_via = common::header(&req, "Via")
        .first()
        .map(|v| v.to_string())
        .unwrap_or_default();
    assert!(
        top_via.starts_with("SIP/2.0/TCP"),
        "{ip}: top Via {top_via}"
    );
    conn.write_all(ok_for(&req).as_bytes()).expect("answer");
    let got = ua.recv_final().expect("the caller's answer");
    assert_eq!(status(&got), Some(200), "{ip}: {got}");

    // Small: over UDP.
    let small = message(
        ua.addr,
        &format!("small-{port}"),
        &format!("sip:{hop}"),
        300,
    );
    ua.send(node.sip, &small);
    let mut buf = vec![0u8; 65536];
    let (n, from) = udp.recv_from(&mut buf).expect("the small MESSAGE over UDP");
    let req = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(req.starts_with("MESSAGE "), "{ip}: {req}");
    udp.send_to(ok_for(&req).as_bytes(), from).expect("answer");
    let got = ua.recv_final().expect("the caller's answer");
    assert_eq!(status(&got), Some(200), "{ip}: {got}");
}

#[test]
fn large_requests_go_over_tcp_small_ones_over_udp() {
    let metrics = free_port();
    let node = Node::start("mtu", &config(metrics), &[("s.py", SCRIPT)]);
    run_family(&node, "127.0.0.1");
    run_family(&node, "::1");
    let text = common::http_get(SocketAddr::from(([127, 0, 0, 1], metrics)), "/metrics");
    assert!(text.contains("siphon_mtu_tcp_total 2"), "{text}");
}

#[test]
fn refused_tcp_falls_back_to_udp() {
    let node = Node::start("mtu-fallback", &config(free_port()), &[("s.py", SCRIPT)]);
    // Only UDP listens at the next hop: the TCP connect is refused.
    let port = free_port();
    let udp = UdpSocket::bind(("127.0.0.1", port)).expect("hop udp");
    udp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let ua = Ua::new();
    let big = message(ua.addr, "fallback", &format!("sip:127.0.0.1:{port}"), 1400);
    ua.send(node.sip, &big);
    let mut buf = vec![0u8; 65536];
    let (n, from) = udp.recv_from(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no UDP retry after the refused TCP connect: {e}\n{}",
            node.log()
        )
    });
    let req = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(req.starts_with("MESSAGE "), "{req}");
    udp.send_to(ok_for(&req).as_bytes(), from).expect("answer");
    let got = ua.recv_final().expect("the caller's answer");
    assert_eq!(status(&got), Some(200), "{got}");
}
