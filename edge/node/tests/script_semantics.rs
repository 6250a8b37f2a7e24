//! Scripts behave on the running node as they do upstream, in both placements (`inline`, the
//! default, and `thread`) on 1 and 2 reactor cores: every awaitable wakes its core (asyncio's
//! own timers, `asyncio.wait_for`, `proxy.send_request`), and `timer.every` runs on every core
//! so module globals it refreshes are fresh wherever a request lands (`per_core=False`: core 0
//! only). Runs the release binary (`SIPHON_BIN`) over real loopback sockets.

mod common;

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::time::Duration;

use common::{Node, Placement, Ua, header, request, status};

const SCRIPT: &str = r#"
import asyncio
import _siphon
from siphon import proxy, timer

table = None        # refreshed by a per-core periodic timer
once_ran = False    # set by a once-per-node timer (core 0 only)


@timer.every(0.05)
def refresh():
    global table
    table = "fresh"


@timer.every(0.05, per_core=False)
def once():
    global once_ran
    once_ran = True


@proxy.on_request("OPTIONS")
async def sleepy(request):
    await asyncio.sleep(0.05)
    request.reply(202, "Accepted")


@proxy.on_request("SUBSCRIBE")
async def waits(request):
    try:
        await asyncio.wait_for(asyncio.Event().wait(), 0.05)
        request.reply(200, "Impossible")
    except asyncio.TimeoutError:
        request.reply(504, "Timed Out")


@proxy.on_request("MESSAGE")
async def originate(request):
    target = request.get_header("X-Target")
    reply = await proxy.send_request("OPTIONS", target, wait_for_response=True, timeout_ms=5000)
    request.reply(200 if reply is not None else 504, f"Got {reply.status_code if reply else 'none'}")


@proxy.on_request("INFO")
def table_state(request):
    request.set_reply_header("X-Core", str(_siphon.worker_id()))
    request.set_reply_header("X-Once", "yes" if once_ran else "no")
    request.reply(200 if table == "fresh" else 503, str(table))
"#;

fn start(p: Placement) -> Node {
    Node::with_script("semantics", SCRIPT, p, "")
}

/// `n` UAs, so that reuseport hashing spreads them over the cores.
fn uas(n: usize) -> Vec<Ua> {
    (0..n).map(|_| Ua::new()).collect()
}

fn async_sleep_answers_all(node: &Node, p: Placement) {
    let uas = uas(10);
    for (i, ua) in uas.iter().enumerate() {
        for j in 0..10 {
            let id = format!("sleep-{i}-{j}");
            ua.send(
                node.sip,
                &request("OPTIONS", "sip:svc@127.0.0.1", ua.addr, &id, ""),
            );
        }
    }
    let mut answered = 0;
    for ua in &uas {
        for _ in 0..10 {
            match ua.recv_final() {
                Some(m) => {
                    assert_eq!(status(&m), Some(202), "{p:?}: {m}");
                    answered += 1;
                }
                None => break,
            }
        }
    }
    assert_eq!(
        answered,
        100,
        "{p:?}: async handlers awaiting asyncio.sleep(0.05) answered {answered} of 100\n{}",
        node.log()
    );
}

fn wait_for_times_out(node: &Node, p: Placement) {
    for ua in uas(4) {
        let id = format!("waitfor-{}", ua.addr.port());
        ua.send(
            node.sip,
            &request("SUBSCRIBE", "sip:svc@127.0.0.1", ua.addr, &id, ""),
        );
        let m = ua
            .recv_final()
            .unwrap_or_else(|| panic!("{p:?}: no answer to the wait_for handler\n{}", node.log()));
        assert_eq!(status(&m), Some(504), "{p:?}: {m}");
    }
}

/// Answer one request received on `sock` with 200 (copying Via, From, To, Call-ID, CSeq).
fn answer_one(sock: &UdpSocket) -> Option<String> {
    let mut buf = vec![0u8; 65536];
    let (n, from) = sock.recv_from(&mut buf).ok()?;
    let req = String::from_utf8_lossy(&buf[..n]).into_owned();
    let mut resp = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for v in header(&req, name) {
            resp.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    resp.push_str("Content-Length: 0\r\n\r\n");
    sock.send_to(resp.as_bytes(), from).ok()?;
    Some(req)
}

fn send_request_is_awaited(node: &Node, p: Placement) {
    let target = UdpSocket::bind("127.0.0.1:0").expect("target");
    target
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let target_addr = target.local_addr().expect("addr");
    for ua in uas(3) {
        let id = format!("sendreq-{}", ua.addr.port());
        ua.send(
            node.sip,
            &request(
                "MESSAGE",
                "sip:svc@127.0.0.1",
                ua.addr,
                &id,
                &format!("X-Target: sip:ping@{target_addr}\r\n"),
            ),
        );
        let got = answer_one(&target);
        assert!(
            got.as_deref().is_some_and(|r| r.starts_with("OPTIONS ")),
            "{p:?}: the node did not originate the OPTIONS: {got:?}\n{}",
            node.log()
        );
        let m = ua
            .recv_final()
            .unwrap_or_else(|| panic!("{p:?}: no answer after send_request\n{}", node.log()));
        assert_eq!(status(&m), Some(200), "{p:?}: {m}");
        assert!(m.lines().next().unwrap_or("").ends_with("Got 200"), "{m}");
    }
}

fn timers_refresh_every_core(node: &Node, p: Placement) {
    let uas = uas(24);
    let mut cores = BTreeSet::new();
    let mut once_by_core = std::collections::BTreeMap::new();
    for (i, ua) in uas.iter().enumerate() {
        ua.timeout(Duration::from_secs(5));
        // The first refresh runs 50 ms after the script loads: ask again until it has.
        let mut last = String::new();
        for attempt in 0..50 {
            let id = format!("info-{i}-{attempt}");
            ua.send(
                node.sip,
                &request("INFO", "sip:svc@127.0.0.1", ua.addr, &id, ""),
            );
            last = ua.recv_final().unwrap_or_default();
            if status(&last) == Some(200) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(
            status(&last),
            Some(200),
            "{p:?}: a handler read a global the periodic timer never refreshed on its core: {last}"
        );
        let core = header(&last, "X-Core").first().map(|c| c.to_string());
        let once = header(&last, "X-Once").first().map(|c| c.to_string());
        if let (Some(c), Some(o)) = (core, once) {
            cores.insert(c.clone());
            once_by_core.insert(c, o);
        }
    }
    assert_eq!(
        cores.len(),
        p.cores,
        "{p:?}: requests from 24 source ports did not reach every core: {cores:?}"
    );
    // per_core=False: the once-per-node timer ran on core 0 and nowhere else.
    assert_eq!(once_by_core.get("0").map(String::as_str), Some("yes"));
    if p.cores > 1 {
        assert_eq!(once_by_core.get("1").map(String::as_str), Some("no"));
    }
}

fn check_layout(p: Placement) {
    let node = start(p);
    async_sleep_answers_all(&node, p);
    wait_for_times_out(&node, p);
    send_request_is_awaited(&node, p);
    timers_refresh_every_core(&node, p);
}

#[test]
fn inline_one_core() {
    check_layout(Placement::ALL[0]);
}

#[test]
fn inline_two_cores() {
    check_layout(Placement::ALL[1]);
}

#[test]
fn thread_one_core() {
    check_layout(Placement::ALL[2]);
}

#[test]
fn thread_two_cores() {
    check_layout(Placement::ALL[3]);
}
