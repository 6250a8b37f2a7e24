//! Issue 17 on the binary over loopback, with low settings: `security:` (a REGISTER flood with
//! wrong passwords from one source is banned while another source is served, scanner
//! User-Agents and rate-limited sources get nothing) and the `limits:` caps that face the
//! network (connections total and per source, idle and TLS handshake timeouts, handshakes in
//! progress, transactions per core → 503 with Retry-After), and the digest challenge set per
//! transport (one challenge over UDP: amplification). Sources differ by loopback
//! address (127.0.0.1, 127.0.0.2, ...), which Linux routes without set-up.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::{Node, header, http_get, request, status};

const ONE_CORE: common::Placement = common::Placement {
    inline: true,
    cores: 1,
};

/// A UDP UA bound on loopback address `ip`.
fn ua_on(ip: &str) -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind(format!("{ip}:0")).expect("bind ua");
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    let a = s.local_addr().expect("addr");
    (s, a)
}

/// The next response that is not a 100, or None when nothing comes in time.
fn answer(s: &UdpSocket) -> Option<String> {
    let mut buf = vec![0u8; 65536];
    loop {
        match s.recv_from(&mut buf) {
            Ok((n, _)) => {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                if status(&m) != Some(100) {
                    return Some(m);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

fn metric(addr: SocketAddr, series: &str) -> f64 {
    http_get(addr, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(series).map(str::trim))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(-1.0)
}

fn metrics_yaml() -> (u16, String) {
    let p = common::free_port();
    (
        p,
        format!("metrics:\n  prometheus:\n    listen: \"127.0.0.1:{p}\"\n"),
    )
}

const AUTH_SCRIPT: &str = r#"
from siphon import proxy, auth, registrar

@proxy.on_request("REGISTER")
def reg(request):
    if not auth.require_www_digest(request):
        return
    registrar.save(request)

@proxy.on_request("OPTIONS")
def options(request):
    request.reply(200, "OK")
"#;

fn register(ua: SocketAddr, call_id: &str, cseq: u32, authz: &str) -> String {
    format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {ua};branch=z9hG4bK-{call_id}-{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=t-{call_id}\r\nTo: <sip:alice@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:alice@{ua}>\r\n\
         User-Agent: brute/1.0\r\n{authz}Content-Length: 0\r\n\r\n"
    )
}

fn param<'a>(challenge: &'a str, name: &str) -> &'a str {
    challenge
        .split(&format!("{name}=\""))
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("")
}

#[test]
fn register_flood_with_bad_passwords_is_banned_while_others_are_served() {
    let (mport, metrics) = metrics_yaml();
    let node = Node::with_script(
        "sec-flood",
        AUTH_SCRIPT,
        ONE_CORE,
        &format!(
            "domain:\n  local: [\"127.0.0.1\"]\nauth:\n  realm: \"127.0.0.1\"\n  users:\n    alice: secret\n\
             security:\n  failed_auth_ban:\n    threshold: 5\n    window_secs: 60\n    ban_duration_secs: 60\n{metrics}"
        ),
    );
    let maddr = SocketAddr::from(([127, 0, 0, 1], mport));
    let (attacker, a_addr) = ua_on("127.0.0.1");
    let (user, u_addr) = ua_on("127.0.0.2");
    let mut answered = 0;
    let mut silent_after = None;
    for i in 0..12u32 {
        // The first leg gets a challenge (not a failure); the second carries a wrong response.
        attacker
            .send_to(
                register(a_addr, &format!("bf{i}"), 1, "").as_bytes(),
                node.sip,
            )
            .expect("send");
        let Some(ch) = answer(&attacker) else {
            silent_after = Some(i);
            break;
        };
        assert_eq!(status(&ch), Some(401), "{ch}");
        let www = header(&ch, "WWW-Authenticate")
            .first()
            .copied()
            .unwrap_or("");
        let authz = format!(
            "Authorization: Digest username=\"alice\", realm=\"{}\", nonce=\"{}\", \
             uri=\"sip:127.0.0.1\", response=\"00000000000000000000000000000000\", \
             algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c{i}\"\r\n",
            param(www, "realm"),
            param(www, "nonce"),
        );
        attacker
            .send_to(
                register(a_addr, &format!("bf{i}"), 2, &authz).as_bytes(),
                node.sip,
            )
            .expect("send");
        match answer(&attacker) {
            Some(m) => {
                assert_eq!(status(&m), Some(401), "{m}");
                answered += 1;
            }
            None => {
                silent_after = Some(i);
                break;
            }
        }
    }
    assert_eq!(
        answered, 5,
        "five wrong passwords are answered, then the source is banned"
    );
    assert_eq!(silent_after, Some(5), "the sixth attempt gets nothing");
    // The banned source stays dropped, even for OPTIONS.
    attacker
        .send_to(
            request("OPTIONS", "sip:127.0.0.1", a_addr, "after-ban", "").as_bytes(),
            node.sip,
        )
        .expect("send");
    assert!(answer(&attacker).is_none(), "banned source answered");
    // Another source is served all along.
    user.send_to(
        request("OPTIONS", "sip:127.0.0.1", u_addr, "other", "").as_bytes(),
        node.sip,
    )
    .expect("send");
    let m = answer(&user).expect("the other source is served");
    assert_eq!(status(&m), Some(200), "{m}");
    assert_eq!(metric(maddr, "siphon_auth_failures_total"), 5.0);
    assert_eq!(metric(maddr, "siphon_banned_ips"), 1.0);
    assert!(metric(maddr, "siphon_banned_dropped_total") >= 2.0);
    assert!(node.log().contains("source banned"), "{}", node.log());
}

/// The 401 to a REGISTER without credentials, over UDP and over TCP.
fn challenges(node: &Node) -> (String, String) {
    let (ua, a) = ua_on("127.0.0.1");
    ua.send_to(register(a, "ch-udp", 1, "").as_bytes(), node.sip)
        .expect("send");
    let udp = answer(&ua).expect("401 over udp");
    let mut tcp = TcpStream::connect(node.sip).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let local = tcp.local_addr().expect("addr");
    let text = register(local, "ch-tcp", 1, "").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    std::io::Write::write_all(&mut tcp, text.as_bytes()).expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    (udp, String::from_utf8_lossy(&got).into_owned())
}

/// Amplification (issue 17): over UDP, where the source can be forged, a 401 carries one
/// challenge (MD5, without `algorithm`: its default), so a spoofed REGISTER draws about its own
/// size; over TCP every `auth.algorithms` entry is offered. `auth.udp_challenge: all` offers
/// every algorithm over UDP too; `auth.algorithms` picks and orders them.
#[test]
fn challenge_set_per_transport() {
    let auth = "domain:\n  local: [\"127.0.0.1\"]\nauth:\n  realm: \"127.0.0.1\"\n  users:\n    alice: secret\n";
    let node = Node::with_script("challenge-default", AUTH_SCRIPT, ONE_CORE, auth);
    let (udp, tcp) = challenges(&node);
    assert_eq!(status(&udp), Some(401), "{udp}");
    let www = header(&udp, "WWW-Authenticate");
    assert_eq!(www.len(), 1, "one challenge over udp: {udp}");
    assert!(!www[0].contains("algorithm"), "{udp}");
    assert!(www[0].contains("qop=\"auth\""), "{udp}");
    let request_len = register("127.0.0.1:5060".parse().expect("addr"), "ch-udp", 1, "").len();
    assert!(
        udp.len() < request_len * 13 / 10,
        "401 {} bytes for a {request_len}-byte request: {udp}",
        udp.len()
    );
    let www = header(&tcp, "WWW-Authenticate");
    assert_eq!(www.len(), 2, "every algorithm over tcp: {tcp}");
    assert!(www[0].contains("algorithm=MD5") && www[1].contains("algorithm=SHA-256"));
    assert_eq!(param(www[0], "nonce"), param(www[1], "nonce"));
    drop(node);

    let node = Node::with_script(
        "challenge-all",
        AUTH_SCRIPT,
        ONE_CORE,
        &format!("{auth}  algorithms: [SHA-256, MD5]\n  udp_challenge: all\n"),
    );
    let (udp, tcp) = challenges(&node);
    for m in [&udp, &tcp] {
        let www = header(m, "WWW-Authenticate");
        assert_eq!(www.len(), 2, "{m}");
        assert!(www[0].contains("algorithm=SHA-256") && www[1].contains("algorithm=MD5"));
    }
}

const ECHO: &str = r#"
from siphon import proxy

@proxy.on_request
def answer(request):
    request.reply(200, "OK")
"#;

#[test]
fn scanners_are_dropped_and_rate_limits_ban() {
    let (mport, metrics) = metrics_yaml();
    let node = Node::with_script(
        "sec-scan-rate",
        ECHO,
        ONE_CORE,
        &format!(
            "security:\n  scanner_block:\n    user_agents: [\"friendly-scanner\", \"sipvicious\"]\n\
             \x20 rate_limit:\n    window_secs: 60\n    max_requests: 5\n    ban_duration_secs: 60\n\
             \x20 trusted_cidrs: [\"127.0.0.9/32\"]\n{metrics}"
        ),
    );
    let maddr = SocketAddr::from(([127, 0, 0, 1], mport));
    let (scanner, s_addr) = ua_on("127.0.0.3");
    scanner
        .send_to(
            request(
                "OPTIONS",
                "sip:100@127.0.0.1",
                s_addr,
                "scan1",
                "User-Agent: friendly-scanner\r\n",
            )
            .as_bytes(),
            node.sip,
        )
        .expect("send");
    assert!(answer(&scanner).is_none(), "scanner answered");
    scanner
        .send_to(
            request(
                "OPTIONS",
                "sip:100@127.0.0.1",
                s_addr,
                "ok1",
                "User-Agent: Linphone\r\n",
            )
            .as_bytes(),
            node.sip,
        )
        .expect("send");
    assert_eq!(answer(&scanner).as_deref().and_then(status), Some(200));
    assert_eq!(metric(maddr, "siphon_scanner_blocked_total"), 1.0);

    // Rate limit: 5 answered (the one above counts), then nothing from that source.
    let (flood, f_addr) = ua_on("127.0.0.4");
    let mut ok = 0;
    for i in 0..8 {
        flood
            .send_to(
                request("OPTIONS", "sip:127.0.0.1", f_addr, &format!("rl{i}"), "").as_bytes(),
                node.sip,
            )
            .expect("send");
        if answer(&flood).is_some() {
            ok += 1;
        }
    }
    assert_eq!(ok, 5);
    assert!(metric(maddr, "siphon_rate_limited_total") >= 1.0);
    // A trusted source is never limited.
    let (trusted, t_addr) = ua_on("127.0.0.9");
    for i in 0..8 {
        trusted
            .send_to(
                request(
                    "OPTIONS",
                    "sip:127.0.0.1",
                    t_addr,
                    &format!("tr{i}"),
                    "User-Agent: sipvicious\r\n",
                )
                .as_bytes(),
                node.sip,
            )
            .expect("send");
        assert_eq!(answer(&trusted).as_deref().and_then(status), Some(200));
    }
}

const RELAY_TO_NOWHERE: &str = r#"
from siphon import proxy

@proxy.on_request
def relay(request):
    request.relay(next_hop="sip:127.0.0.1:9")
"#;

#[test]
fn transactions_past_the_cap_get_503_with_retry_after() {
    let node = Node::with_script(
        "limit-txn",
        RELAY_TO_NOWHERE,
        ONE_CORE,
        "limits:\n  max_transactions_per_core: 4\n  retry_after_secs: 7\n",
    );
    let (ua, addr) = ua_on("127.0.0.1");
    let mut refused = None;
    for i in 0..6 {
        ua.send_to(
            request("MESSAGE", "sip:bob@127.0.0.1", addr, &format!("tx{i}"), "").as_bytes(),
            node.sip,
        )
        .expect("send");
        ua.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        if let Some(m) = answer(&ua)
            && status(&m) == Some(503)
        {
            refused = Some(m);
            break;
        }
    }
    let m = refused.expect("a 503 once the table is full");
    assert_eq!(header(&m, "Retry-After"), ["7"], "{m}");
    // In-dialog requests (a To tag: the BYE of an admitted call) still pass at the cap, up to
    // twice the cap; then they get the same 503. The script relays them to nowhere too, so
    // each admitted one stays in progress (no answer) and counts against the cap.
    let mut admitted = 0;
    let mut refused_in_dialog = None;
    for i in 0..10 {
        let id = format!("dlg{i}");
        let text = request("MESSAGE", "sip:bob@127.0.0.1", addr, &id, "").replace(
            "To: <sip:bob@127.0.0.1>",
            "To: <sip:bob@127.0.0.1>;tag=callee",
        );
        ua.send_to(text.as_bytes(), node.sip).expect("send");
        // Skip late answers to the relayed MESSAGEs above; none for this one means admitted.
        match std::iter::from_fn(|| answer(&ua)).find(|m| header(m, "Call-ID") == [id.as_str()]) {
            None => admitted += 1,
            Some(m) => {
                assert_eq!(status(&m), Some(503), "{m}");
                assert_eq!(header(&m, "Retry-After"), ["7"], "{m}");
                refused_in_dialog = Some(i);
                break;
            }
        }
    }
    // Each relayed request holds a server and a client transaction, so the in-dialog ones fill
    // the second half of the cap two transactions at a time.
    assert!(
        admitted >= 1 && refused_in_dialog.is_some(),
        "in dialog at the cap: admitted up to twice the cap, then 503 (admitted {admitted}, \
         refused at {refused_in_dialog:?})"
    );
}

/// Whether the server closed `s` within `within` (EOF or reset), reading and discarding.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let end = Instant::now() + within;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

fn connect_from(ip: &str, to: SocketAddr) -> TcpStream {
    tcp_bind_connect(ip, to)
}

/// TCP connect from a chosen loopback source address (bind(2) before connect(2)).
fn tcp_bind_connect(ip: &str, to: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let src: std::net::Ipv4Addr = ip.parse().expect("ipv4");
    let SocketAddr::V4(dst) = to else {
        panic!("ipv4 only")
    };
    // SAFETY: plain socket/bind/connect on a fresh descriptor we own; the sockaddr_in values
    // are fully initialised and outlive the calls; the fd is handed to TcpStream exactly once.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let mut a: libc::sockaddr_in = std::mem::zeroed();
        a.sin_family = libc::AF_INET as libc::sa_family_t;
        a.sin_addr.s_addr = u32::from(src).to_be();
        let len = size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(libc::bind(fd, (&raw const a).cast(), len), 0, "bind {ip}");
        let mut d: libc::sockaddr_in = std::mem::zeroed();
        d.sin_family = libc::AF_INET as libc::sa_family_t;
        d.sin_port = dst.port().to_be();
        d.sin_addr.s_addr = u32::from(*dst.ip()).to_be();
        assert_eq!(libc::connect(fd, (&raw const d).cast(), len), 0, "connect");
        TcpStream::from_raw_fd(fd)
    }
}

#[test]
fn connection_caps_and_idle_timeout() {
    let (mport, metrics) = metrics_yaml();
    let node = Node::with_script(
        "limit-conns",
        ECHO,
        ONE_CORE,
        &format!(
            "limits:\n  max_connections: 3\n  max_connections_per_source: 2\n  idle_timeout_secs: 2\n{metrics}"
        ),
    );
    let maddr = SocketAddr::from(([127, 0, 0, 1], mport));
    let mut a1 = connect_from("127.0.0.5", node.sip);
    let mut a2 = connect_from("127.0.0.5", node.sip);
    let mut a3 = connect_from("127.0.0.5", node.sip);
    assert!(
        closed_within(&mut a3, Duration::from_secs(5)),
        "third from one source closed"
    );
    let mut b1 = connect_from("127.0.0.6", node.sip);
    let mut c1 = connect_from("127.0.0.7", node.sip);
    assert!(
        closed_within(&mut c1, Duration::from_secs(5)),
        "fourth overall closed"
    );
    // The admitted ones are served.
    use std::io::Write;
    let opts = request("OPTIONS", "sip:127.0.0.1", node.sip, "tcp1", "")
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    b1.write_all(opts.as_bytes()).expect("write");
    let mut buf = [0u8; 4096];
    b1.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let n = b1.read(&mut buf).expect("answer on an admitted connection");
    assert_eq!(status(&String::from_utf8_lossy(&buf[..n])), Some(200));
    // Idle ones are closed after about two seconds; slots are free again afterwards.
    assert!(
        closed_within(&mut a1, Duration::from_secs(6)),
        "idle connection closed"
    );
    assert!(closed_within(&mut a2, Duration::from_secs(2)));
    let mut a4 = connect_from("127.0.0.5", node.sip);
    assert!(
        !closed_within(&mut a4, Duration::from_millis(500)),
        "slot freed after idle close"
    );
    let body = http_get(maddr, "/metrics");
    let row = |l: &str| metric(maddr, &format!("siphon_limit_hits_total{{limit=\"{l}\"}}"));
    assert_eq!(row("connections_per_source"), 1.0, "{body}");
    assert_eq!(row("connections"), 1.0, "{body}");
    assert!(row("idle_timeout") >= 2.0, "{body}");
}

#[test]
fn silent_tls_handshakes_are_capped_and_timed_out() {
    let dir = common::scratch("limit-tls-certs");
    let ok = std::process::Command::new("openssl")
        .current_dir(&dir)
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "k.pem",
            "-out",
            "c.pem",
            "-days",
            "2",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: openssl is not installed (apt-get install openssl)");
        return;
    }
    let tls_port = common::free_port();
    let (mport, metrics) = metrics_yaml();
    let config = format!(
        "listen:\n  udp: [\"127.0.0.1:{{sip}}\"]\n  tls: [\"127.0.0.1:{tls_port}\"]\n\
         script:\n  path: s.py\n{tuning}tls:\n  certificate: {c}\n  private_key: {k}\n\
         limits:\n  max_tls_handshakes: 2\n  tls_handshake_timeout_secs: 1\n{metrics}",
        tuning = ONE_CORE.tuning_yaml(),
        c = dir.join("c.pem").display(),
        k = dir.join("k.pem").display(),
    );
    let node = Node::start("limit-tls", &config, &[("s.py", ECHO)]);
    let maddr = SocketAddr::from(([127, 0, 0, 1], mport));
    let to = SocketAddr::from(([127, 0, 0, 1], tls_port));
    let mut s1 = connect_from("127.0.0.1", to);
    let mut s2 = connect_from("127.0.0.1", to);
    let mut s3 = connect_from("127.0.0.1", to);
    assert!(
        closed_within(&mut s3, Duration::from_secs(5)),
        "third handshake refused"
    );
    assert!(
        closed_within(&mut s1, Duration::from_secs(5)),
        "silent handshake timed out"
    );
    assert!(closed_within(&mut s2, Duration::from_secs(2)));
    let row = |l: &str| metric(maddr, &format!("siphon_limit_hits_total{{limit=\"{l}\"}}"));
    assert_eq!(row("tls_handshakes"), 1.0);
    assert_eq!(row("tls_handshake_timeout"), 2.0);
    assert_eq!(metric(maddr, "siphon_tls_handshakes_active"), 0.0);
    drop(node);
}
