//! One call through the stateful proxy, sans-IO, as the engine's reactor thread runs it
//! (issue 16): the 6 datagrams in (INVITE, 180, 200, ACK, BYE, 200 of the bench's SIPp
//! scenario) each parsed, validated and handed to [`Proxy`] as `edge/node`'s ingress does, the
//! routing decision the default script takes (record-route and fork to the contact, relay
//! in-dialog), and the 6 datagrams out drained. The clock advances 2.5 ms per call (400
//! calls/s) and due timers run, so the tables hold a steady load's transactions.
//!
//! `cargo bench -p siphon-sip --bench call -- --profile-time 10` runs it long enough for
//! `perf record`; with `CALL_BENCH_CALLS=N` the binary runs N calls after the warm-up and exits
//! (for `perf stat -e instructions:u`, which the machine's load does not change).
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use siphon_sip::Message;
use siphon_sip::proxy::{
    DEFAULT_UDP_MTU, Hooks, Interface, Proxy, ProxyConfig, ProxyEvent, Target,
};
use siphon_sip::transaction::{Config, Remote, Transport, TxRequest, TxResponse};
use siphon_sip::validate::{ValidationConfig, validate_request};

const PROXY: ([u8; 4], u16) = ([127, 0, 0, 1], 29360);
const UAC: ([u8; 4], u16) = ([127, 0, 0, 1], 29380);
const UAS: ([u8; 4], u16) = ([127, 0, 0, 1], 29370);

fn remote(a: ([u8; 4], u16)) -> Remote {
    Remote {
        addr: SocketAddr::from(a),
        transport: Transport::Udp,
    }
}

struct Bench {
    proxy: Proxy,
    now: Instant,
    /// Datagrams out: destination and bytes.
    out: Vec<(Remote, Bytes)>,
}

impl Bench {
    fn new() -> Self {
        let config = ProxyConfig {
            core: 0,
            interfaces: vec![Interface {
                addr: SocketAddr::from(PROXY),
                transport: Transport::Udp,
            }],
            domains: Vec::new(),
            transactions: Config::default(),
            hooks: Hooks::default(),
            udp_mtu: DEFAULT_UDP_MTU,
        };
        #[allow(clippy::disallowed_methods)] // benchmark: one origin for the value-type clock
        let now = Instant::now();
        Self {
            proxy: Proxy::new(config),
            now,
            out: Vec::new(),
        }
    }

    /// One datagram from `from`, as `Engine::handle_bytes` takes it.
    fn input(&mut self, from: Remote, data: Bytes) {
        let msg = Message::parse(data).expect("bench message parses");
        if msg.is_response() {
            let r = TxResponse::try_from(&msg).expect("usable response");
            self.proxy.handle_response(self.now, from, r);
        } else {
            validate_request(&msg, &ValidationConfig::PROXY).expect("valid request");
            let tx = TxRequest::try_from(&msg).expect("usable request");
            self.proxy.handle_request(self.now, from, 0, tx);
        }
        self.drain();
    }

    fn drain(&mut self) {
        loop {
            let mut progressed = false;
            while let Some(t) = self.proxy.poll_transmit() {
                progressed = true;
                self.out.push((t.destination, t.message.bytes().clone()));
            }
            while let Some(ev) = self.proxy.poll_event() {
                progressed = true;
                match ev {
                    ProxyEvent::Request { ctx, request, .. } => {
                        let initial = request.to_tag().is_none();
                        let target = Target {
                            uri: initial.then(|| "sip:bob@127.0.0.1:29370".to_owned()),
                            destination: remote(UAS),
                            q: 1000,
                            routes: Vec::new(),
                            fallbacks: Vec::new(),
                        };
                        self.proxy
                            .forward(self.now, ctx, vec![target], initial)
                            .expect("forward");
                    }
                    ProxyEvent::Stateless { request, .. } => {
                        self.proxy.forward_stateless(&request, None, remote(UAS));
                    }
                    _ => {}
                }
            }
            if !progressed {
                break;
            }
        }
        let _ = self.proxy.poll_timeout();
    }

    /// The last datagram sent to `to`.
    fn last_to(&self, to: Remote) -> Bytes {
        self.out
            .iter()
            .rev()
            .find(|(d, _)| *d == to)
            .map(|(_, b)| b.clone())
            .expect("a datagram went out")
    }

    fn call(&mut self, n: u64) {
        self.out.clear();
        let uac = remote(UAC);
        let uas = remote(UAS);
        self.input(uac, Bytes::from(invite(n)));
        let fwd = self.last_to(uas);
        self.input(uas, Bytes::from(answer(&fwd, 180, "Ringing", n)));
        self.input(uas, Bytes::from(answer(&fwd, 200, "OK", n)));
        let ok = self.last_to(uac);
        let route = header_line(&ok, "Record-Route")
            .map(|v| format!("Route: {v}\r\n"))
            .unwrap_or_default();
        self.input(uac, Bytes::from(in_dialog("ACK", 1, &route, n)));
        self.input(uac, Bytes::from(in_dialog("BYE", 2, &route, n)));
        let bye = self.last_to(uas);
        self.input(uas, Bytes::from(answer(&bye, 200, "OK", n)));
        self.now += Duration::from_micros(2500);
        if self.proxy.poll_timeout().is_some_and(|t| t <= self.now) {
            self.proxy.handle_timeout(self.now);
            self.drain();
        }
    }
}

const SDP: &str = "v=0\r\no=alice 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn invite(n: u64) -> Vec<u8> {
    format!(
        "INVITE sip:bob@127.0.0.1:29360 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:29380;branch=z9hG4bK-1-{n}-0;rport\r\n\
         From: <sip:alice@127.0.0.1:29360>;tag=1SIPpTag00{n}\r\n\
         To: <sip:bob@127.0.0.1:29360>\r\n\
         Call-ID: {n}-1@127.0.0.1\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:alice@127.0.0.1:29380;transport=UDP>\r\n\
         Max-Forwards: 70\r\n\
         User-Agent: sipp-bench\r\n\
         Subject: siphon bench\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    )
    .into_bytes()
}

fn in_dialog(method: &str, cseq: u32, route: &str, n: u64) -> Vec<u8> {
    format!(
        "{method} sip:bob@127.0.0.1:29370;transport=UDP SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:29380;branch=z9hG4bK-1-{n}-{cseq};rport\r\n\
         {route}\
         From: <sip:alice@127.0.0.1:29360>;tag=1SIPpTag00{n}\r\n\
         To: <sip:bob@127.0.0.1:29360>;tag=2SIPpTag01{n}\r\n\
         Call-ID: {n}-1@127.0.0.1\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:alice@127.0.0.1:29380;transport=UDP>\r\n\
         Max-Forwards: 70\r\n\
         User-Agent: sipp-bench\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The callee's answer to a forwarded request: its Via, Record-Route, From, Call-ID and CSeq
/// copied, a To tag added (SIPp's uas scenario does the same).
fn answer(request: &[u8], status: u16, reason: &str, n: u64) -> Vec<u8> {
    let text = std::str::from_utf8(request).expect("UTF-8");
    let mut out = format!("SIP/2.0 {status} {reason}\r\n");
    for line in text.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        let name = line.split(':').next().unwrap_or("").trim();
        match name {
            "Via" | "Record-Route" | "From" | "Call-ID" | "CSeq" => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "To" if line.contains("tag=") => {
                out.push_str(line);
                out.push_str("\r\n");
            }
            "To" => {
                out.push_str(&format!("{line};tag=2SIPpTag01{n}\r\n"));
            }
            _ => {}
        }
    }
    out.push_str("Contact: <sip:bob@127.0.0.1:29370;transport=UDP>\r\n");
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

fn header_line(msg: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(msg).ok()?;
    text.split("\r\n")
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_owned())
}

fn bench(c: &mut Criterion) {
    let mut b = Bench::new();
    // Warm up to a steady load: 40 s of calls at 400/s (Timer J/K/D running).
    let mut n = 0u64;
    let warm = std::env::var("CALL_BENCH_WARM")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(16_000);
    for _ in 0..warm {
        n += 1;
        b.call(n);
    }
    assert_eq!(b.out.len(), 6, "one call sends 6 datagrams: {:?}", b.out);
    // A fixed number of calls and nothing else, for `perf stat -e instructions:u` (a count
    // the machine's load does not change): CALL_BENCH_CALLS=100000 target/.../call-*
    if let Some(calls) = std::env::var("CALL_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        for _ in 0..calls {
            n += 1;
            b.call(n);
        }
        std::process::exit(0);
    }
    // The harness's own share: building one call's 6 input texts (unique Call-ID and
    // branches) from sample forwarded messages; subtract it from the figure above.
    let fwd_invite = b.out[0].1.clone();
    let fwd_bye = b.out[4].1.clone();
    let route = "Route: <sip:127.0.0.1:29360;lr>\r\n";
    c.bench_function("call/harness_only", |bench| {
        bench.iter(|| {
            n += 1;
            black_box(invite(n));
            black_box(answer(&fwd_invite, 180, "Ringing", n));
            black_box(answer(&fwd_invite, 200, "OK", n));
            black_box(header_line(&fwd_invite, "Record-Route"));
            black_box(in_dialog("ACK", 1, route, n));
            black_box(in_dialog("BYE", 2, route, n));
            black_box(answer(&fwd_bye, 200, "OK", n));
        })
    });
    c.bench_function("call/12_datagrams_through_proxy", |bench| {
        bench.iter(|| {
            n += 1;
            b.call(black_box(n));
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
