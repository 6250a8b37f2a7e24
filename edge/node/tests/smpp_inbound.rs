//! SMPP extension, inbound side (issue 12): a real `siphon` built with `--features smpp`,
//! ESMEs on loopback: PyPI `smpplib` and `smpp34` (interop), and a raw client built on our
//! codec for the bad-input and pipelining cases. Run with
//! `cargo test -p siphon-bin --features smpp --test smpp_inbound`.
#![cfg(feature = "smpp")]

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::smpp::{Esme, Resp};
use common::{Node, free_port, python_done};
use siphon_smpp::{Body, CommandId, CommandStatus, DataSm, Pdu, SubmitSm};

const SCRIPT: &str = include_str!("smpp/gateway_test.py");

fn start(name: &str, server_extra: &str) -> (Node, SocketAddr) {
    start_with(name, server_extra, "", &[])
}

/// `start` with more `siphon.yaml` (`node_extra`) and more files beside it.
fn start_with(
    name: &str,
    server_extra: &str,
    node_extra: &str,
    files: &[(&str, &str)],
) -> (Node, SocketAddr) {
    let port = free_port();
    let smpp = format!("server:\n  bind_address: 127.0.0.1\n  port: {port}\n{server_extra}");
    let config = format!(
        "listen:\n  udp: [\"127.0.0.1:{{sip}}\"]\nscript:\n  path: s.py\n\
         extensions:\n  smpp: smpp.yaml\ntuning:\n  reactor_cpus: [0, 1]\n{node_extra}"
    );
    let mut all = vec![("s.py", SCRIPT), ("smpp.yaml", smpp.as_str())];
    all.extend_from_slice(files);
    let node = Node::start(name, &config, &all);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    node.wait_tcp(addr);
    (node, addr)
}

/// This suite's submit_sm (source address `1`).
impl Esme {
    fn submit_bytes(&mut self, dest: &str, text: &[u8]) -> Vec<u8> {
        let d = dest.as_bytes().to_vec();
        let t = text.to_vec();
        self.encode(Body::SubmitSm(SubmitSm {
            source_addr: b"1",
            destination_addr: &d,
            short_message: &t,
            ..SubmitSm::default()
        }))
    }

    fn submit(&mut self, dest: &str, text: &[u8]) -> Resp {
        let b = self.submit_bytes(dest, text);
        self.s.write_all(&b).expect("loopback io");
        self.recv().expect("submit_sm_resp")
    }
}

fn python(script: &str, addr: SocketAddr, node: &Node) -> String {
    let path = common::repo_root()
        .join("edge/node/tests/smpp")
        .join(script);
    python_done(node, &path, &[&addr.port().to_string()])
}

#[test]
fn interop_smpplib_every_bind_type_and_command() {
    let (node, addr) = start("smpp-smpplib", "");
    let out = python("smpplib_client.py", addr, &node);
    for line in [
        "bound transceiver",
        "bound transmitter",
        "bound receiver",
        "bind refused 14",
        "submit_sm 0 b'm-2'",
        "submit_sm reject 69",
        "query_sm 0 2",
        "data_sm 0 b'd-300'",
        "deliver_sm 4 id:abc",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
}

#[test]
fn interop_smpp34_default_ack_long_body_and_dlr() {
    let (node, addr) = start("smpp-smpp34", "");
    let out = python("smpp34_client.py", addr, &node);
    for line in [
        "submit none 0 ''",
        "submit 0 m-5",
        "submit payload 0 m-300",
        "submit raise 8",
        "deliver_sm 4 id:abc",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
}

/// Spec §6 #10: a PDU coalesced behind the bind in one write must not kill the session.
#[test]
fn pdu_pipelined_behind_bind_is_answered() {
    let (_node, addr) = start("smpp-pipeline-bind", "");
    let mut e = Esme::connect(addr);
    let mut both = e.bind_bytes("esme1");
    both.extend(e.submit_bytes("1555", b"hello"));
    both.extend(e.encode(Body::DataSm(DataSm {
        source_addr: b"1",
        destination_addr: b"2",
        ..DataSm::default()
    })));
    e.s.write_all(&both).expect("loopback io");
    let r = e.recv().expect("bind_resp");
    assert_eq!(r.status, CommandStatus::ESME_ROK);
    let r = e.recv().expect("submit_sm_resp");
    assert_eq!(
        (r.command, r.status, r.message_id.as_str()),
        (CommandId::SubmitSmResp, CommandStatus::ESME_ROK, "m-5")
    );
    let r = e.recv().expect("data_sm_resp");
    assert_eq!(r.command, CommandId::DataSmResp);
}

/// Spec §3: the first PDU must be a bind; anything else is refused and the connection closed.
#[test]
fn pdu_before_bind_is_refused_and_closed() {
    let (_node, addr) = start("smpp-before-bind", "");
    let mut other = Esme::connect(addr);
    other.bind("ok");
    let mut e = Esme::connect(addr);
    let b = e.submit_bytes("1", b"x");
    e.s.write_all(&b).expect("loopback io");
    let r = e.recv().expect("an answer");
    assert_eq!(r.status, CommandStatus::ESME_RINVBNDSTS);
    assert!(e.recv().is_none(), "connection closed");
    assert_eq!(other.submit("1", b"abc").message_id, "m-3");
}

/// A command_length below the header, and one over the maximum: generic_nack ESME_RINVCMDLEN
/// and close; a malformed body: its own `_resp` with an error status, session kept.
#[test]
fn bad_framing_and_malformed_body() {
    let (_node, addr) = start("smpp-bad-input", "");
    let mut other = Esme::connect(addr);
    other.bind("other");
    for len in [8u32, 0x7fff_ffff] {
        let mut e = Esme::connect(addr);
        e.bind("esme");
        let mut raw = len.to_be_bytes().to_vec();
        raw.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 9]);
        e.s.write_all(&raw).expect("loopback io");
        let r = e.recv().expect("generic_nack");
        assert_eq!(
            (r.command, r.status),
            (CommandId::GenericNack, CommandStatus::ESME_RINVCMDLEN)
        );
        assert!(e.recv().is_none(), "closed after a framing error");
    }
    // A submit_sm whose body stops mid-field.
    let mut e = Esme::connect(addr);
    e.bind("esme2");
    let mut raw = 20u32.to_be_bytes().to_vec();
    raw.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 77, b'a', b'b', b'c', b'd']);
    e.s.write_all(&raw).expect("loopback io");
    let r = e.recv().expect("submit_sm_resp");
    assert_eq!(r.command, CommandId::SubmitSmResp);
    assert_eq!(r.seq, 77);
    assert!(!r.status.is_ok());
    // An unknown command id: generic_nack ESME_RINVCMDID, session kept.
    let mut raw = 16u32.to_be_bytes().to_vec();
    raw.extend_from_slice(&[0, 0, 0x77, 0x77, 0, 0, 0, 0, 0, 0, 0, 78]);
    e.s.write_all(&raw).expect("loopback io");
    let r = e.recv().expect("generic_nack");
    assert_eq!(
        (r.command, r.status),
        (CommandId::GenericNack, CommandStatus::ESME_RINVCMDID)
    );
    assert_eq!(e.submit("1", b"still").message_id, "m-5");
    assert_eq!(other.submit("1", b"ok").message_id, "m-2");
}

/// Our window: requests past `server.window` unanswered ones get ESME_RTHROTTLED; all are
/// answered, none lost.
#[test]
fn flood_past_the_window_is_throttled() {
    let (_node, addr) = start("smpp-window", "  window: 4\n");
    let mut e = Esme::connect(addr);
    e.bind("esme");
    let mut all = Vec::new();
    for _ in 0..12 {
        all.extend(e.submit_bytes("slow", b"x"));
    }
    e.s.write_all(&all).expect("loopback io");
    let mut throttled = 0;
    let mut ok = 0;
    for _ in 0..12 {
        let r = e.recv().expect("every submit answered");
        match r.status {
            CommandStatus::ESME_RTHROTTLED => throttled += 1,
            CommandStatus::ESME_ROK => ok += 1,
            s => panic!("unexpected {s:?}"),
        }
    }
    assert_eq!(ok, 4);
    assert_eq!(throttled, 8);
}

/// Spec §6 #7: 20 runs of 5,000 pipelined submits at window 64, none lost.
#[test]
fn pipelined_submits_none_lost() {
    let (node, addr) = start("smpp-pipelined", "  window: 64\n");
    for run in 0..20 {
        let mut e = Esme::connect(addr);
        let b = e.bind_bytes(&format!("esme{run}"));
        e.s.write_all(&b).expect("loopback io");
        let Some(r) = e.recv() else {
            panic!("run {run}: no bind_resp\n{}", node.log());
        };
        assert_eq!(r.command, CommandId::BindTransceiverResp, "run {run}");
        assert_eq!(r.status, CommandStatus::ESME_ROK, "run {run}");
        let total = 5_000u32;
        let mut sent = 0u32;
        let mut got = 0u32;
        let mut seen = std::collections::HashSet::new();
        while got < total {
            let mut burst = Vec::new();
            while sent < total && sent - got < 64 {
                burst.extend(e.submit_bytes("1555", b"x"));
                sent += 1;
            }
            if !burst.is_empty() {
                e.s.write_all(&burst).expect("loopback io");
            }
            let r = e
                .recv()
                .unwrap_or_else(|| panic!("run {run}: lost after {got}"));
            assert_eq!(r.status, CommandStatus::ESME_ROK, "run {run}");
            assert!(seen.insert(r.seq), "duplicate response");
            got += 1;
        }
        assert_eq!(seen.len(), total as usize);
    }
}

/// A peer that stops reading is closed by the reactor's write-queue limit; other sessions
/// keep working and the node does not fall over.
#[test]
fn peer_that_stops_reading_is_closed() {
    let (node, addr) = start("smpp-slow-reader", "");
    let mut other = Esme::connect(addr);
    other.bind("other");
    let mut e = Esme::connect(addr);
    e.bind("esme");
    let link = e.encode(Body::EnquireLink);
    let chunk: Vec<u8> = link
        .iter()
        .copied()
        .cycle()
        .take(link.len() * 4096)
        .collect();
    e.s.set_write_timeout(Some(Duration::from_secs(2)))
        .expect("loopback io");
    let deadline = Instant::now() + Duration::from_secs(60);
    // Never read: 16-octet enquire_link_resps pile up past the 4 MiB write queue.
    while Instant::now() < deadline {
        if e.s.write_all(&chunk).is_err() {
            break;
        }
    }
    assert_eq!(other.submit("1", b"ok").message_id, "m-2", "{}", node.log());
}

/// cancel_sm and replace_sm (smpplib has neither): the script's `None`/`reply()` → ROK.
#[test]
fn cancel_and_replace_reach_the_script() {
    let (_node, addr) = start("smpp-cancel-replace", "");
    let mut e = Esme::connect(addr);
    e.bind("esme");
    e.send(Body::CancelSm(siphon_smpp::CancelSm {
        message_id: b"abc",
        source_addr: b"1",
        destination_addr: b"2",
        ..siphon_smpp::CancelSm::default()
    }));
    let r = e.recv().expect("cancel_sm_resp");
    assert_eq!(
        (r.command, r.status),
        (CommandId::CancelSmResp, CommandStatus::ESME_ROK)
    );
    e.send(Body::ReplaceSm(siphon_smpp::ReplaceSm {
        message_id: b"abc",
        source_addr: b"1",
        short_message: b"new",
        ..siphon_smpp::ReplaceSm::default()
    }));
    let r = e.recv().expect("replace_sm_resp");
    assert_eq!(
        (r.command, r.status),
        (CommandId::ReplaceSmResp, CommandStatus::ESME_ROK)
    );
}

/// submit_sm_multi on the wire: every destination reaches `pdu.destinations` and the
/// script's message_id comes back in submit_multi_resp.
#[test]
fn submit_multi_over_the_wire() {
    let (_node, addr) = start("smpp-multi", "");
    let mut e = Esme::connect(addr);
    e.bind("esme");
    let dests = [
        siphon_smpp::Dest::Sme {
            ton: 1,
            npi: 1,
            addr: b"15550101",
        },
        siphon_smpp::Dest::Sme {
            ton: 1,
            npi: 1,
            addr: b"15550102",
        },
        siphon_smpp::Dest::DistributionList(b"friends"),
    ];
    e.send(Body::SubmitMulti(siphon_smpp::SubmitMulti {
        source_addr: b"1",
        dests: siphon_smpp::List::Items(&dests),
        short_message: b"hi all",
        ..siphon_smpp::SubmitMulti::default()
    }));
    let r = e.recv().expect("submit_multi_resp");
    assert_eq!(
        (r.command, r.status, r.message_id.as_str()),
        (
            CommandId::SubmitMultiResp,
            CommandStatus::ESME_ROK,
            "15550101,15550102,friends"
        )
    );
}

/// Upstream's `siphon_smpp_*` series with their labels, read through /metrics.
#[test]
fn metrics_series_through_prometheus() {
    let mport = free_port();
    let (node, addr) = start_with(
        "smpp-metrics",
        "",
        &format!("metrics:\n  prometheus:\n    listen: \"127.0.0.1:{mport}\"\n"),
        &[],
    );
    let mut e = Esme::connect(addr);
    e.bind("esme");
    assert_eq!(e.submit("ok", b"x").status, CommandStatus::ESME_ROK);
    assert_eq!(
        e.submit("reject", b"x").status,
        CommandStatus::ESME_RSUBMITFAIL
    );
    assert_eq!(e.submit("raise", b"x").status, CommandStatus::ESME_RSYSERR);
    let body = common::http_get(SocketAddr::from(([127, 0, 0, 1], mport)), "/metrics");
    for (series, want) in [
        (
            "siphon_smpp_binds{direction=\"inbound\",state=\"bound\"}",
            1.0,
        ),
        (
            "siphon_smpp_pdus_total{direction=\"inbound\",command=\"submit_sm\",result=\"ok\"}",
            1.0,
        ),
        (
            "siphon_smpp_pdus_total{direction=\"inbound\",command=\"submit_sm\",result=\"error\"}",
            2.0,
        ),
        (
            "siphon_smpp_dispatch_errors_total{command=\"submit_sm\"}",
            1.0,
        ),
        (
            "siphon_smpp_dispatch_duration_seconds_count{command=\"submit_sm\"}",
            3.0,
        ),
        (
            "siphon_smpp_dispatch_duration_seconds_bucket{command=\"submit_sm\",le=\"+Inf\"}",
            3.0,
        ),
        ("siphon_smpp_bind_requests_total{result=\"ok\"}", 1.0),
        ("siphon_smpp_throttled_total{direction=\"inbound\"}", 0.0),
        ("siphon_smpp_window_used", 0.0),
        ("siphon_smpp_window_size", 512.0),
    ] {
        assert_eq!(
            common::metric(&body, series),
            Some(want),
            "{series} in:\n{body}\nlog:\n{}",
            node.log()
        );
    }
}

/// `server.tls` is wired (rustls): a Python `ssl` client binds and submits over TLS.
#[test]
fn tls_listener_with_a_python_ssl_client() {
    let dir = common::scratch("smpp-tls-certs");
    common::openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "k.pem",
            "-out",
            "c.pem",
        ],
    );
    let cert = std::fs::read_to_string(dir.join("c.pem")).expect("cert");
    let key = std::fs::read_to_string(dir.join("k.pem")).expect("key");
    let (node, addr) = start_with(
        "smpp-tls",
        "  tls: {cert_path: c.pem, key_path: k.pem}\n",
        "",
        &[("c.pem", &cert), ("k.pem", &key)],
    );
    let client = r#"
import socket, ssl, struct, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.check_hostname = False
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost")
def pdu(cmd, seq, body):
    return struct.pack(">IIII", 16 + len(body), cmd, 0, seq) + body
def read():
    h = b""
    while len(h) < 16:
        h += s.recv(16 - len(h))
    n, cmd, st, seq = struct.unpack(">IIII", h)
    b = b""
    while len(b) < n - 16:
        b += s.recv(n - 16 - len(b))
    return cmd, st, b
s.sendall(pdu(0x09, 1, b"tls\0pw\0\0\x34\x01\x01\0"))
cmd, st, b = read()
print("bind", hex(cmd), st)
sm = b"\0\x01\x01" + b"1\0" + b"\x01\x01" + b"tls-dest\0" + b"\0\0\0\0\0\0\0\0\0" + bytes([5]) + b"hello"
s.sendall(pdu(0x04, 2, sm))
cmd, st, b = read()
print("submit", hex(cmd), st, b.rstrip(b"\0").decode())
print("DONE")
"#;
    let path = dir.join("tls_client.py");
    std::fs::write(&path, client).expect("tls_client.py");
    let ca = dir.join("c.pem").display().to_string();
    let stdout = python_done(&node, &path, &[&addr.port().to_string(), &ca]);
    assert!(
        stdout.contains("bind 0x80000009 0") && stdout.contains("submit 0x80000004 0 m-5"),
        "stdout:\n{stdout}\nlog:\n{}",
        node.log()
    );
}

/// SIGTERM: every bound session gets an `unbind` before the node exits.
#[test]
fn sigterm_unbinds_every_session() {
    let (node, addr) = start("smpp-sigterm", "");
    let mut a = Esme::connect(addr);
    a.bind("a");
    let mut b = Esme::connect(addr);
    b.bind("b");
    node.signal("-TERM");
    for e in [&mut a, &mut b] {
        let r = e.recv().expect("unbind");
        assert_eq!(r.command, CommandId::Unbind, "{}", node.log());
        e.respond(&r, CommandStatus::ESME_ROK);
    }
}

/// throttle_action: reject answers ESME_RTHROTTLED at once without running the handler;
/// pace never refuses.
#[test]
fn throttle_reject_and_pace() {
    let (_node, addr) = start(
        "smpp-throttle-reject",
        "  max_msg_per_sec: 2\n  throttle_action: reject\n",
    );
    let mut e = Esme::connect(addr);
    e.bind("esme");
    let mut all = Vec::new();
    for _ in 0..8 {
        all.extend(e.submit_bytes("1555", b"x"));
    }
    e.s.write_all(&all).expect("loopback io");
    let (mut ok, mut throttled) = (0, 0);
    for _ in 0..8 {
        let r = e.recv().expect("answered");
        match r.status {
            CommandStatus::ESME_ROK => {
                assert_eq!(r.message_id, "m-1");
                ok += 1;
            }
            CommandStatus::ESME_RTHROTTLED => throttled += 1,
            s => panic!("unexpected {s:?}"),
        }
    }
    // The bucket starts full (2 tokens); 8 back to back cannot all pass.
    assert!(ok >= 2 && throttled >= 1, "ok {ok} throttled {throttled}");

    let (_node, addr) = start(
        "smpp-throttle-pace",
        "  max_msg_per_sec: 5\n  throttle_action: pace\n",
    );
    let mut e = Esme::connect(addr);
    e.bind("esme");
    let mut all = Vec::new();
    for _ in 0..8 {
        all.extend(e.submit_bytes("1555", b"x"));
    }
    e.s.write_all(&all).expect("loopback io");
    for _ in 0..8 {
        let r = e.recv().expect("answered");
        assert_eq!(
            (r.status, r.message_id.as_str()),
            (CommandStatus::ESME_ROK, "m-1")
        );
    }
}

/// inactivity_timer_ms: a silent ESME is unbound (as upstream's docs say; its code closes
/// silently), then closed when it does not answer.
#[test]
fn inactivity_timer_unbinds_and_closes() {
    let (_node, addr) = start(
        "smpp-inactivity",
        "  inactivity_timer_ms: 300\n  response_timer_ms: 300\n",
    );
    let mut e = Esme::connect(addr);
    e.bind("esme");
    let r = e.recv().expect("unbind");
    assert_eq!(r.command, CommandId::Unbind);
    let next = e.recv();
    assert!(next.is_none(), "closed, got {next:?}");
}

/// enquire_link_timer_ms: we probe; an answered probe keeps the session, an unanswered one
/// closes it after response_timer_ms.
#[test]
fn enquire_link_timer_and_its_response_timer() {
    let (_node, addr) = start(
        "smpp-enquire",
        "  enquire_link_timer_ms: 200\n  response_timer_ms: 400\n",
    );
    let mut e = Esme::connect(addr);
    e.bind("esme");
    let r = e.recv().expect("enquire_link");
    assert_eq!(r.command, CommandId::EnquireLink);
    e.respond(&r, CommandStatus::ESME_ROK);
    assert_eq!(e.submit("1", b"abc").message_id, "m-3");
    // Stop answering: the next unanswered probe ends the session.
    loop {
        match e.recv() {
            Some(r) if r.command == CommandId::EnquireLink => continue,
            Some(r) => panic!("unexpected {r:?}"),
            None => break,
        }
    }
}

/// A script reload (SIGHUP) applies to the next PDU.
#[test]
fn script_reload_applies_to_the_next_pdu() {
    let (node, addr) = start("smpp-reload", "");
    let mut e = Esme::connect(addr);
    e.bind("esme");
    assert_eq!(e.submit("1", b"abc").message_id, "m-3");
    let v2 = SCRIPT.replace("message_id=f\"m-{len(pdu.body)}\"", "message_id=\"v2\"");
    assert_ne!(v2, SCRIPT);
    std::fs::write(node.path("s.py"), v2).expect("write script");
    node.signal("-HUP");
    let mut seen = String::new();
    for _ in 0..200 {
        seen = e.submit("1", b"abc").message_id;
        if seen == "v2" {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(seen, "v2", "{}", node.log());
    // The session survived the reload.
    assert_eq!(e.submit("1", b"abcd").message_id, "v2");
}

/// Spec §6 #3: alert_to sends a whole alert_notification, ms_availability_status as TLV
/// 0x0422, that an ESME decodes.
#[test]
fn alert_to_is_a_full_pdu() {
    let (_node, addr) = start("smpp-alert", "");
    let mut e = Esme::connect(addr);
    e.bind("alert1");
    let r = e.recv().expect("alert_notification");
    assert_eq!(r.command, CommandId::AlertNotification);
    let pdu = Pdu::decode(&r.raw).expect("decodes whole");
    let Body::AlertNotification(a) = pdu.body else {
        panic!("{pdu:?}")
    };
    assert_eq!((a.source_addr, a.esme_addr), (&b"333"[..], &b"444"[..]));
    let st = a
        .tlvs
        .get(siphon_smpp::TlvTag::MS_AVAILABILITY_STATUS)
        .expect("TLV 0x0422");
    assert_eq!(st.value, [1]);
}

/// Spec §6 #11 and #13: an ESME's vendor status (0x400) or soft nack to our deliver_sm is
/// carried to the script as ok=False with that status; the session stays up.
#[test]
fn vendor_and_soft_nack_statuses_reach_the_script() {
    let (node, addr) = start("smpp-vendor-status", "");
    for (who, status, want) in [
        (
            "rx-vendor",
            CommandStatus(0x400),
            "deliver_to 0x00000400 ok=False",
        ),
        (
            "rx-throttled",
            CommandStatus::ESME_RTHROTTLED,
            "deliver_to ESME_RTHROTTLED ok=False",
        ),
    ] {
        let mut e = Esme::connect(addr);
        e.bind(who);
        let r = e.recv().expect("deliver_sm");
        assert_eq!(r.command, CommandId::DeliverSm);
        e.respond(&r, status);
        assert_eq!(e.submit("1", b"still").message_id, "m-5");
        node.wait_log(want, 1, 10);
    }
}
