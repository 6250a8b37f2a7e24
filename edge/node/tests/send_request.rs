//! `proxy.send_request` through the real node: a script awaits an OPTIONS it originates, the
//! node sends it from a core, the response (which may arrive on another core's socket) is
//! routed back by its branch, and the script answers the triggering request with what it got.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const SCRIPT: &str = r#"
from siphon import proxy

@proxy.on_request("MESSAGE")
async def ping(request):
    target = request.get_header("X-Target")
    reply = await proxy.send_request("OPTIONS", target, wait_for_response=True, timeout_ms=5000)
    if reply is None:
        request.reply(504, "No Answer")
    else:
        request.reply(200, f"Got {reply.status_code}")
"#;

fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.lines()
        .filter(|l| {
            l.split(':')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
        })
        .collect()
}

#[test]
fn script_awaits_an_originated_options() {
    let dir = std::env::temp_dir().join(format!("siphon-sendreq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    std::fs::write(dir.join("s.py"), SCRIPT).expect("script");
    let sip = 26060;
    std::fs::write(
        dir.join("siphon.yaml"),
        format!("listen:\n  udp: [\"127.0.0.1:{sip}\"]\nscript:\n  path: s.py\n"),
    )
    .expect("config");
    let _node = Node(
        Command::new(env!("CARGO_BIN_EXE_siphon"))
            .args(["-c", "siphon.yaml"])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start siphon"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while UdpSocket::bind(("127.0.0.1", sip)).is_ok() {
        assert!(Instant::now() < deadline, "siphon did not bind");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ua = UdpSocket::bind("127.0.0.1:0").expect("ua");
    ua.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let client = UdpSocket::bind("127.0.0.1:0").expect("client");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let cport = client.local_addr().expect("addr").port();
    let message = format!(
        "MESSAGE sip:svc@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{cport};branch=z9hG4bK-m1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:svc@127.0.0.1>\r\n\
         Call-ID: sendreq-1\r\nCSeq: 1 MESSAGE\r\nX-Target: sip:ping@{}\r\nContent-Length: 0\r\n\r\n",
        ua.local_addr().expect("addr")
    );
    client
        .send_to(message.as_bytes(), ("127.0.0.1", sip))
        .expect("send");
    let mut buf = [0u8; 4096];
    let (n, from) = loop {
        match ua.recv_from(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => break r.expect("the node sends OPTIONS to the target"),
        }
    };
    let options = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(options.starts_with("OPTIONS sip:ping@"), "{options}");
    let mut resp = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "Call-ID", "CSeq"] {
        for line in header(&options, name) {
            resp.push_str(line.trim_end());
            resp.push_str("\r\n");
        }
    }
    for line in header(&options, "To") {
        resp.push_str(line.trim_end());
        resp.push_str(";tag=ua\r\n");
    }
    resp.push_str("Content-Length: 0\r\n\r\n");
    ua.send_to(resp.as_bytes(), from).expect("answer");
    let (n, _) = loop {
        match client.recv_from(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => break r.expect("the script's answer"),
        }
    };
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("SIP/2.0 200 Got 200"), "{answer}");
    let _ = std::fs::remove_dir_all(&dir);
}
