//! RFC 3263 name resolution through the real node, against a DNS server this test runs on
//! loopback (answers NAPTR/SRV/A from a table; NXDOMAIN otherwise; or never answers): NAPTR →
//! SRV priority → A selection, §4.3 failover on a 503 and on a refused TCP connect, TTL
//! expiry (cache, then a new query), and a silent server: the request gets its 408 after the
//! configured timeout while OPTIONS to the same (single) core are answered meanwhile.

mod common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Node, Placement, Ua, request, status};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, NAPTR, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};

type Table = HashMap<(String, RecordType), (Vec<RData>, u32)>;

/// A tiny authoritative-looking DNS server on 127.0.0.1 (UDP), for the test's lifetime.
struct DnsServer {
    addr: SocketAddr,
    table: Arc<Mutex<Table>>,
    asked: Arc<Mutex<HashMap<(String, RecordType), usize>>>,
    stop: Arc<AtomicBool>,
}

impl DnsServer {
    fn start(silent: bool) -> DnsServer {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind dns");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr");
        let table: Arc<Mutex<Table>> = Arc::default();
        let asked: Arc<Mutex<HashMap<(String, RecordType), usize>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (t, a, s) = (Arc::clone(&table), Arc::clone(&asked), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(query) = q.queries().first().cloned() else {
                    continue;
                };
                let name = query.name().to_ascii().trim_end_matches('.').to_lowercase();
                let key = (name, query.query_type());
                *a.lock().expect("lock").entry(key.clone()).or_default() += 1;
                if silent {
                    continue;
                }
                let mut r = Message::new();
                r.set_id(q.id());
                r.set_message_type(MessageType::Response);
                r.set_op_code(q.op_code());
                r.set_recursion_desired(q.recursion_desired());
                r.set_recursion_available(true);
                r.set_authoritative(true);
                r.add_query(query.clone());
                match t.lock().expect("lock").get(&key) {
                    Some((rdata, ttl)) => {
                        for d in rdata {
                            r.add_answer(Record::from_rdata(query.name().clone(), *ttl, d.clone()));
                        }
                    }
                    None => {
                        r.set_response_code(ResponseCode::NXDomain);
                    }
                }
                if let Ok(bytes) = r.to_vec() {
                    let _ = sock.send_to(&bytes, from);
                }
            }
        });
        DnsServer {
            addr,
            table,
            asked,
            stop,
        }
    }

    fn set(&self, name: &str, rtype: RecordType, ttl: u32, data: Vec<RData>) {
        self.table
            .lock()
            .expect("lock")
            .insert((name.to_string(), rtype), (data, ttl));
    }

    fn asked(&self, name: &str, rtype: RecordType) -> usize {
        self.asked
            .lock()
            .expect("lock")
            .get(&(name.to_string(), rtype))
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn a(ip: Ipv4Addr) -> RData {
    RData::A(A(ip))
}

fn srv(priority: u16, weight: u16, port: u16, target: &str) -> RData {
    RData::SRV(SRV::new(
        priority,
        weight,
        port,
        Name::from_str(target).expect("name"),
    ))
}

fn naptr(order: u16, pref: u16, service: &str, replacement: &str) -> RData {
    RData::NAPTR(NAPTR::new(
        order,
        pref,
        b"s".to_vec().into_boxed_slice(),
        service.as_bytes().to_vec().into_boxed_slice(),
        Vec::new().into_boxed_slice(),
        Name::from_str(replacement).expect("name"),
    ))
}

/// OPTIONS with `X-Local` are answered by the script; anything else is relayed to `X-Next`.
const SCRIPT: &str = r#"
from siphon import proxy

@proxy.on_request
def route(request):
    if request.get_header("X-Local"):
        request.reply(200, "Local")
        return
    request.relay(next_hop=request.get_header("X-Next"))
"#;

fn node(name: &str, dns: &DnsServer, timeout_ms: u64) -> Node {
    let extra = format!(
        "dns:\n  servers: [\"{}\"]\n  timeout_ms: {timeout_ms}\n  attempts: 1\n",
        dns.addr
    );
    Node::with_script(
        name,
        SCRIPT,
        Placement {
            inline: true,
            cores: 1,
        },
        &extra,
    )
}

/// Answer the next request `ua` receives with `code`; returns the request.
fn answer(ua: &Ua, code: u16) -> String {
    let (req, from) = ua.recv().expect("a request reaches the UA");
    let mut head = String::new();
    for line in req.split("\r\n\r\n").next().unwrap_or("").lines().skip(1) {
        let n = line
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if ["via", "from", "to", "call-id", "cseq"].contains(&n.as_str()) {
            head.push_str(line);
            head.push_str("\r\n");
        }
    }
    let resp = format!("SIP/2.0 {code} Whatever\r\n{head}Content-Length: 0\r\n\r\n");
    ua.send(from, &resp);
    req
}

#[test]
fn naptr_srv_priority_and_failover_on_503() {
    let dns = DnsServer::start(false);
    let first = Ua::new();
    let second = Ua::new();
    let lo = Ipv4Addr::LOCALHOST;
    dns.set(
        "carrier.test",
        RecordType::NAPTR,
        60,
        vec![naptr(10, 10, "SIP+D2U", "_sip._udp.carrier.test.")],
    );
    dns.set(
        "_sip._udp.carrier.test",
        RecordType::SRV,
        60,
        vec![
            srv(20, 0, second.addr.port(), "b.carrier.test."),
            srv(10, 0, first.addr.port(), "a.carrier.test."),
        ],
    );
    dns.set("a.carrier.test", RecordType::A, 60, vec![a(lo)]);
    dns.set("b.carrier.test", RecordType::A, 60, vec![a(lo)]);
    let n = node("dns-naptr", &dns, 2000);
    let caller = Ua::new();
    caller.send(
        n.sip,
        &request(
            "OPTIONS",
            "sip:bob@carrier.test",
            caller.addr,
            "dns-1",
            "X-Next: sip:carrier.test\r\n",
        ),
    );
    // Priority 10 first: it refuses with 503, and the request moves to priority 20.
    answer(&first, 503);
    answer(&second, 200);
    let r = caller.recv_final().expect("a final response");
    assert_eq!(status(&r), Some(200), "{r}\n{}", n.log());
    assert_eq!(dns.asked("carrier.test", RecordType::NAPTR), 1);
}

#[test]
fn failover_when_the_first_target_refuses_tcp() {
    let dns = DnsServer::start(false);
    let udp_peer = Ua::new();
    // A TCP port with nobody listening: connect is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_port = closed.local_addr().expect("addr").port();
    drop(closed);
    let lo = Ipv4Addr::LOCALHOST;
    dns.set(
        "refuse.test",
        RecordType::NAPTR,
        60,
        vec![
            naptr(10, 10, "SIP+D2T", "_sip._tcp.refuse.test."),
            naptr(20, 10, "SIP+D2U", "_sip._udp.refuse.test."),
        ],
    );
    dns.set(
        "_sip._tcp.refuse.test",
        RecordType::SRV,
        60,
        vec![srv(10, 0, closed_port, "host.refuse.test.")],
    );
    dns.set(
        "_sip._udp.refuse.test",
        RecordType::SRV,
        60,
        vec![srv(10, 0, udp_peer.addr.port(), "host.refuse.test.")],
    );
    dns.set("host.refuse.test", RecordType::A, 60, vec![a(lo)]);
    let n = node("dns-refuse", &dns, 2000);
    let caller = Ua::new();
    caller.send(
        n.sip,
        &request(
            "OPTIONS",
            "sip:bob@refuse.test",
            caller.addr,
            "dns-2",
            "X-Next: sip:refuse.test\r\n",
        ),
    );
    answer(&udp_peer, 200);
    let r = caller.recv_final().expect("a final response");
    assert_eq!(status(&r), Some(200), "{r}\n{}", n.log());
}

#[test]
fn ttl_expiry_queries_again() {
    let dns = DnsServer::start(false);
    let peer = Ua::new();
    dns.set("ttl.test", RecordType::A, 1, vec![a(Ipv4Addr::LOCALHOST)]);
    let n = node("dns-ttl", &dns, 2000);
    let caller = Ua::new();
    let next = format!("X-Next: sip:ttl.test:{}\r\n", peer.addr.port());
    let send = |id: &str| {
        caller.send(
            n.sip,
            &request("OPTIONS", "sip:bob@ttl.test", caller.addr, id, &next),
        );
        answer(&peer, 200);
        let r = caller.recv_final().expect("a final response");
        assert_eq!(status(&r), Some(200), "{r}\n{}", n.log());
    };
    send("ttl-1");
    assert_eq!(dns.asked("ttl.test", RecordType::A), 1);
    send("ttl-2");
    assert_eq!(
        dns.asked("ttl.test", RecordType::A),
        1,
        "within the TTL the cache answers"
    );
    std::thread::sleep(Duration::from_millis(1500));
    send("ttl-3");
    assert_eq!(
        dns.asked("ttl.test", RecordType::A),
        2,
        "after the TTL the name is asked again"
    );
    // The missing AAAA is cached negatively (30 s without an SOA): asked once.
    assert_eq!(dns.asked("ttl.test", RecordType::AAAA), 1);
    let metrics_line = n.log();
    assert!(!metrics_line.contains("panicked"));
}

#[test]
fn a_silent_server_gets_408_while_the_core_keeps_answering() {
    let dns = DnsServer::start(true);
    let n = node("dns-silent", &dns, 1500);
    let caller = Ua::new();
    caller.send(
        n.sip,
        &request(
            "INVITE",
            "sip:bob@silent.test",
            caller.addr,
            "dns-3",
            "X-Next: sip:silent.test\r\n",
        ),
    );
    // Once the lookup is under way (the server saw the NAPTR question and will never answer),
    // OPTIONS to the same single core are still answered.
    for _ in 0..100 {
        if dns.asked("silent.test", RecordType::NAPTR) > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        dns.asked("silent.test", RecordType::NAPTR),
        1,
        "{}",
        n.log()
    );
    let other = Ua::new();
    for i in 0..3 {
        other.send(
            n.sip,
            &request(
                "OPTIONS",
                "sip:x@127.0.0.1",
                other.addr,
                &format!("local-{i}"),
                "X-Local: 1\r\n",
            ),
        );
        let r = other
            .recv_final()
            .expect("OPTIONS answered during the lookup");
        assert_eq!(status(&r), Some(200), "{r}");
    }
    let r = caller
        .recv_final()
        .expect("the INVITE gets a final response");
    assert_eq!(status(&r), Some(408), "{r}\n{}", n.log());
}

#[test]
fn srv_weights_share_the_load() {
    let dns = DnsServer::start(false);
    let heavy = Ua::new();
    let light = Ua::new();
    let lo = Ipv4Addr::LOCALHOST;
    dns.set(
        "_sip._udp.weighted.test",
        RecordType::SRV,
        60,
        vec![
            srv(10, 30, heavy.addr.port(), "heavy.weighted.test."),
            srv(10, 10, light.addr.port(), "light.weighted.test."),
        ],
    );
    dns.set("heavy.weighted.test", RecordType::A, 60, vec![a(lo)]);
    dns.set("light.weighted.test", RecordType::A, 60, vec![a(lo)]);
    let n = node("dns-weights", &dns, 2000);
    // Each next hop answers 200 to whatever reaches it, until it has been quiet for 2 s.
    let serve = |ua: Ua| {
        std::thread::spawn(move || {
            ua.timeout(Duration::from_secs(2));
            let mut got = 0usize;
            while let Some((req, from)) = ua.recv() {
                let mut head = String::new();
                for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
                    for v in common::header(&req, name) {
                        head.push_str(&format!("{name}: {v}\r\n"));
                    }
                }
                ua.send(
                    from,
                    &format!("SIP/2.0 200 OK\r\n{head}Content-Length: 0\r\n\r\n"),
                );
                got += 1;
            }
            got
        })
    };
    let (h, l) = (serve(heavy), serve(light));
    let caller = Ua::new();
    let total = 80;
    for i in 0..total {
        caller.send(
            n.sip,
            &request(
                "OPTIONS",
                "sip:svc@weighted.test",
                caller.addr,
                &format!("w-{i}"),
                "X-Next: sip:weighted.test;transport=udp\r\n",
            ),
        );
        let r = caller.recv_final().expect("a final response");
        assert_eq!(status(&r), Some(200), "{r}");
    }
    let (h, l) = (h.join().expect("heavy"), l.join().expect("light"));
    assert_eq!(h + l, total);
    // RFC 2782: weights 30:10 share the load about 3:1 (a binomial draw: both get some, and the
    // heavier target more; the chance of either failing by luck is below 1e-4).
    assert!(l > 0 && h > l, "heavy {h}, light {l}");
    assert_eq!(
        dns.asked("_sip._udp.weighted.test", RecordType::SRV),
        1,
        "cached"
    );
}
