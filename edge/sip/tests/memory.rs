//! Memory a call keeps in the proxy core while its transactions wait for their timers (RFC 3261
//! Timer J and RFC 6026 Timers L/M: 32 s over UDP), measured with a counting global allocator
//! (this file is its own test binary, so nothing else allocates beside it), and that all of it is
//! given back once the timers have fired.
//!
//! The call is the benchmark's (bench/sipp/uac_invite.xml, uas_answer.xml): INVITE with SDP,
//! 180, 200 (record-routed), ACK (stateless), BYE, 200, driven through the public API.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use siphon_sip::Message;
use siphon_sip::proxy::{
    DEFAULT_UDP_MTU, Hooks, Interface, Proxy, ProxyConfig, ProxyEvent, Target,
};
use siphon_sip::transaction::{Config, Remote, Transport, TxRequest, TxResponse};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s contract is upheld exactly as the caller upholds ours; the counter is a side effect.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `System.alloc` above with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: forwarded unchanged; `ptr`/`layout` came from this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn udp(port: u16) -> Remote {
    Remote {
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        transport: Transport::Udp,
    }
}

const PROXY: u16 = 5060;
const UAS: u16 = 5070;
const UAC: u16 = 5080;

fn proxy() -> Proxy {
    Proxy::new(ProxyConfig {
        core: 0,
        interfaces: vec![Interface {
            addr: udp(PROXY).addr,
            transport: Transport::Udp,
        }],
        domains: Vec::new(),
        transactions: Config::default(),
        hooks: Hooks::default(),
        udp_mtu: DEFAULT_UDP_MTU,
    })
}

fn request(text: String) -> TxRequest {
    let msg = Message::parse(Bytes::from(text)).expect("request parses");
    TxRequest::try_from(&msg).expect("transaction request")
}

fn response(text: String) -> TxResponse {
    let msg = Message::parse(Bytes::from(text)).expect("response parses");
    TxResponse::try_from(&msg).expect("transaction response")
}

const SDP: &str = "v=0\r\no=alice 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// The header lines named `name` of a message (`Via: ...\r\n` each).
fn lines(msg: &[u8], name: &str) -> String {
    let text = std::str::from_utf8(msg).expect("text");
    text.split("\r\n")
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))
        })
        .map(|l| format!("{l}\r\n"))
        .collect()
}

/// The UAS's answer to a request it received (as sipp's uas_answer.xml builds it).
fn answer(req: &[u8], status: &str, to_tag: &str, body: &str) -> TxResponse {
    let to = lines(req, "To");
    let to = to.trim_end().to_string();
    let cseq = lines(req, "CSeq");
    response(format!(
        "SIP/2.0 {status}\r\n{}{}{}{to};tag={to_tag}\r\n{}{cseq}\
Contact: <sip:bob@127.0.0.1:{UAS};transport=UDP>\r\nContent-Type: application/sdp\r\n\
Content-Length: {}\r\n\r\n{body}",
        lines(req, "Via"),
        lines(req, "Record-Route"),
        lines(req, "From"),
        lines(req, "Call-ID"),
        body.len()
    ))
}

/// Drive one call through the proxy at `now`; return how many datagrams it sent.
fn call(p: &mut Proxy, now: Instant, n: usize) -> usize {
    let mut sent = Vec::new();
    let drain = |p: &mut Proxy, sent: &mut Vec<Bytes>| {
        while let Some(ev) = p.poll_event() {
            match ev {
                ProxyEvent::Request { ctx, .. } => {
                    let target = Target {
                        uri: None,
                        destination: udp(UAS),
                        q: 1000,
                        routes: Vec::new(),
                        fallbacks: Vec::new(),
                    };
                    p.forward(now, ctx, vec![target], true).expect("forward");
                }
                ProxyEvent::Stateless { request, .. } => {
                    p.forward_stateless(&request, None, udp(UAS));
                }
                _ => {}
            }
        }
        while let Some(t) = p.poll_transmit() {
            sent.push(t.message.bytes().clone());
        }
    };
    let from = format!("From: <sip:alice@127.0.0.1>;tag=a{n}\r\n");
    let call_id = format!("Call-ID: {n}-call@127.0.0.1\r\n");
    let common = format!(
        "{from}{call_id}Contact: <sip:alice@127.0.0.1:{UAC};transport=UDP>\r\n\
Max-Forwards: 70\r\nUser-Agent: sipp-bench\r\n"
    );
    let invite = request(format!(
        "INVITE sip:bob@127.0.0.1:{UAS} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{UAC};branch=z9hG4bK-i{n};rport\r\n\
To: <sip:bob@127.0.0.1>\r\nCSeq: 1 INVITE\r\n{common}Subject: siphon bench\r\n\
Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    ));
    p.handle_request(now, udp(UAC), 0, invite);
    drain(p, &mut sent);
    let forwarded = sent.last().expect("INVITE forwarded").clone();
    p.handle_response(now, udp(UAS), answer(&forwarded, "180 Ringing", "b", ""));
    drain(p, &mut sent);
    let ok = answer(&forwarded, "200 OK", "b", SDP);
    p.handle_response(now, udp(UAS), ok);
    drain(p, &mut sent);
    let route = lines(&forwarded, "Record-Route").replace("Record-Route", "Route");
    let to = "To: <sip:bob@127.0.0.1>;tag=b\r\n";
    let ack = request(format!(
        "ACK sip:bob@127.0.0.1:{UAS};transport=UDP SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{UAC};branch=z9hG4bK-a{n};rport\r\n{route}{to}CSeq: 1 ACK\r\n\
{common}Content-Length: 0\r\n\r\n"
    ));
    p.handle_request(now, udp(UAC), 0, ack);
    drain(p, &mut sent);
    let bye = request(format!(
        "BYE sip:bob@127.0.0.1:{UAS};transport=UDP SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:{UAC};branch=z9hG4bK-b{n};rport\r\n{route}{to}CSeq: 2 BYE\r\n\
{common}Content-Length: 0\r\n\r\n"
    ));
    p.handle_request(now, udp(UAC), 0, bye);
    drain(p, &mut sent);
    let bye_out = sent.last().expect("BYE forwarded").clone();
    p.handle_response(now, udp(UAS), answer(&bye_out, "200 OK", "b", ""));
    drain(p, &mut sent);
    sent.len()
}

#[test]
fn per_call_memory_and_release() {
    const CALLS: usize = 2000;
    #[allow(clippy::disallowed_methods)] // the test's virtual clock starts at any instant
    let start = Instant::now();
    let empty = live();
    let mut p = proxy();
    // Warm-up: first-use allocations.
    for n in 0..CALLS {
        call(&mut p, start, n);
    }
    let later = start + Duration::from_secs(40);
    p.handle_timeout(later);
    while p.poll_transmit().is_some() {}
    while p.poll_event().is_some() {}
    assert_eq!(p.transactions().len(), 0, "every transaction ended by 40 s");
    assert_eq!(p.contexts(), 0, "every context ended by 40 s");
    let base = live();
    println!("live bytes of an idle proxy after a load: {}", base - empty);
    assert!(
        base - empty <= 64 * 1024,
        "an idle proxy keeps {} bytes after a load",
        base - empty
    );

    let now = later + Duration::from_secs(1);
    let mut datagrams = 0;
    for n in CALLS..2 * CALLS {
        datagrams += call(&mut p, now, n);
    }
    // INVITE, 180, 200, ACK, BYE, 200 forwarded each (the 100 Trying waits 200 ms: not sent).
    assert_eq!(datagrams, 6 * CALLS);
    // Per call: INVITE server + client (Accepted, 32 s), BYE server (Timer J, 32 s) and client
    // (Timer K, 5 s) transactions, each down to its matching key (the BYE server keeps the
    // 200's bytes to answer a retransmission), no response context (forgotten once answered),
    // and the table and map capacity they take (given back when idle, above).
    assert_eq!(p.transactions().len(), 4 * CALLS);
    assert_eq!(p.contexts(), 0, "answered contexts are forgotten");
    let per_call = (live() - base) / CALLS as isize;
    println!("live bytes per call (4 transactions waiting on their timers): {per_call}");
    assert!(
        per_call < 3_000,
        "a call keeps {per_call} bytes in the proxy core"
    );

    p.handle_timeout(now + Duration::from_secs(40));
    while p.poll_transmit().is_some() {}
    while p.poll_event().is_some() {}
    assert_eq!(p.transactions().len(), 0);
    assert_eq!(p.contexts(), 0);
    let left = live() - base;
    println!("live bytes left after 40 s: {left}");
    assert!(
        left <= 4096,
        "{left} bytes still held after every timer fired"
    );
}
