//! SMPP extension, outbound binds (issue 13): a real `siphon --features smpp` between a raw
//! ESME on our codec (the listener side) and our SMSC simulator (`bench/smpp`, in process) as
//! the upstream SMSC. Run with
//! `cargo test -p siphon-bin --features smpp --test smpp_outbound`.
#![cfg(feature = "smpp")]

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::smpp::{Esme, Resp, smsc};
use common::{Bg, Node, free_port, http_get, openssl};
use siphon_bench_smpp::smsc::Push;
use siphon_smpp::{Body, CommandId, CommandStatus, DataSm, SubmitSm, Tlv, TlvTag};

const SCRIPT: &str = include_str!("smpp/outbound_test.py");

/// A node with the ESME listener and binds `up` (transceiver), `rx` (receiver) and `nack`
/// (transceiver to a second simulator) towards `up_port` / `nack_port`.
fn start(name: &str, up_port: u16, nack_port: u16) -> (Node, SocketAddr, SocketAddr) {
    let port = free_port();
    let metrics = free_port();
    let smpp = format!(
        "server:\n  bind_address: 127.0.0.1\n  port: {port}\nbinds:\n\
         \x20 - {{name: up, host: 127.0.0.1, port: {up_port}, system_id: gw, password: pw}}\n\
         \x20 - {{name: rx, host: 127.0.0.1, port: {up_port}, system_id: gwrx, password: pw, bind_type: receiver}}\n\
         \x20 - {{name: nack, host: 127.0.0.1, port: {nack_port}, system_id: gw, password: pw}}\n"
    );
    let config = format!(
        "listen:\n  udp: [\"127.0.0.1:{{sip}}\"]\nscript:\n  path: s.py\n\
         extensions:\n  smpp: smpp.yaml\ntuning:\n  reactor_cpus: [0, 1]\n\
         metrics:\n  prometheus:\n    listen: \"127.0.0.1:{metrics}\"\n"
    );
    let node = Node::start(name, &config, &[("s.py", SCRIPT), ("smpp.yaml", &smpp)]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    node.wait_tcp(addr);
    (node, addr, SocketAddr::from(([127, 0, 0, 1], metrics)))
}

/// This suite's submit_sm (source address `15550100`).
impl Esme {
    /// Connect and bind as `esme`; asserts ESME_ROK.
    fn bound(addr: SocketAddr) -> Esme {
        let (e, status) = Esme::bind_as(addr, "esme", "pw");
        assert_eq!(status, CommandStatus::ESME_ROK);
        e
    }

    fn submit(&mut self, dest: &str, text: &[u8], registered_delivery: u8) -> u32 {
        self.send(Body::SubmitSm(SubmitSm {
            source_addr: b"15550100",
            destination_addr: dest.as_bytes(),
            registered_delivery,
            short_message: text,
            ..SubmitSm::default()
        }))
    }

    fn call(&mut self, dest: &str, text: &[u8], rd: u8) -> Resp {
        let seq = self.submit(dest, text, rd);
        let r = self.recv().expect("a response");
        assert_eq!(r.seq, seq);
        r
    }
}

#[test]
fn submit_via_dlrs_mo_data_sm_and_errors() {
    let up_port = free_port();
    let nack_port = free_port();
    let up = smsc(up_port, |c| c.dlr_delay = Duration::from_millis(50));
    let nack = smsc(nack_port, |c| c.error_rate = 1.0);
    let (node, addr, metrics) = start("smpp-out-basic", up_port, nack_port);
    node.wait_log("session bound kind=bind", 3, 15);
    let mut e = Esme::bound(addr);

    // submit_via with a receipt requested: the SMSC's id comes back to the ESME, and the DLR
    // reaches @smpp.on_pdu("deliver_sm") with pdu.receipt.
    let r = e.call("15550199", b"hello world", 1);
    assert_eq!(r.status, CommandStatus::ESME_ROK, "{}", node.log());
    assert!(!r.message_id.is_empty());
    let got = up.received();
    let s = got
        .iter()
        .find(|g| g.command == "submit_sm")
        .expect("submit reached the SMSC");
    assert_eq!(s.body, b"hello world");
    assert_eq!(s.message_id, r.message_id);
    node.wait_log(
        &format!("DLR via bind:up id={} stat=DELIVRD", r.message_id),
        1,
        10,
    );

    // Spec §6 #13: a soft nack is ok=False with the SMSC's status (upstream says success).
    let r = e.call("nack", b"x", 0);
    assert_eq!(r.status, CommandStatus::ESME_RSUBMITFAIL, "{}", node.log());
    node.wait_log("via soft nack ESME_RSUBMITFAIL", 1, 5);
    // submit_via on a receiver bind raises RuntimeError (upstream panics inside smpp34).
    let r = e.call("rx", b"x", 0);
    assert_eq!(r.status, CommandStatus::ESME_RX_T_APPN);
    node.wait_log("via RuntimeError bind 'rx' is a receiver bind", 1, 5);
    // An unknown bind raises KeyError at the await.
    let r = e.call("nobind", b"x", 0);
    assert_eq!(r.status, CommandStatus::ESME_RINVDSTADR);
    node.wait_log("via KeyError \"bind 'nosuchbind' not bound\"", 1, 5);

    // Spec §6 #2/#4: 254 octets go through; the SAR TLVs travel (#5).
    let long = vec![b'a'; 254];
    assert_eq!(e.call("long", &long, 0).status, CommandStatus::ESME_ROK);
    assert_eq!(e.call("sar", b"part", 0).status, CommandStatus::ESME_ROK);
    let got = up.received();
    assert!(got.iter().any(|g| g.dest == "long" && g.body.len() == 254));
    let sar = got.iter().find(|g| g.dest == "sar").expect("sar submit");
    assert_eq!(sar.tlvs, vec![0x02, 0x0C, 0, 2, 0, 7]);

    // submit_multi_via, query_via, cancel_via, replace_via.
    assert_eq!(e.call("multi", b"m", 0).status, CommandStatus::ESME_ROK);
    assert!(
        up.received()
            .iter()
            .any(|g| g.command == "submit_sm_multi" && g.dest == "1,2,3")
    );
    assert_eq!(e.call("query", b"q", 0).status, CommandStatus::ESME_ROK);
    node.wait_log("query_via ESME_ROK state=2 id=abc", 1, 5);
    node.wait_log("cancel_via ESME_ROK", 1, 5);
    node.wait_log("replace_via ESME_ROK", 1, 5);

    // Spec §6 #1/#2: data_sm both ways with a 300-octet body in message_payload.
    let body = vec![b'd'; 300];
    let t = [Tlv::new(TlvTag::MESSAGE_PAYLOAD, &body)];
    let seq = e.send(Body::DataSm(DataSm {
        source_addr: b"1",
        destination_addr: b"2",
        tlvs: siphon_smpp::List::Items(&t),
        ..DataSm::default()
    }));
    let r = e.recv().expect("data_sm_resp");
    assert_eq!((r.seq, r.command), (seq, CommandId::DataSmResp));
    assert_eq!(r.status, CommandStatus::ESME_ROK, "{}", node.log());
    assert!(!r.message_id.is_empty(), "data_via returns the SMSC's id");
    assert!(
        up.received()
            .iter()
            .any(|g| g.command == "data_sm" && g.body.len() == 300)
    );
    up.push(Push::Data {
        source: "9".into(),
        dest: "8".into(),
        body: vec![b'e'; 300],
    });
    // Both the transceiver and the receiver bind get it.
    node.wait_log("data_sm from up len=300", 1, 10);
    node.wait_log("data_sm from rx len=300", 1, 10);
    // MO deliver_sm.
    up.push(Push::Deliver {
        source: "5".into(),
        dest: "6".into(),
        body: b"mo text".to_vec(),
        esm_class: 0,
        tlvs: Vec::new(),
    });
    node.wait_log("MO via bind:up body=mo text", 1, 10);
    // TLV-only receipt (spec §6 #6).
    up.push(Push::Deliver {
        source: "5".into(),
        dest: "6".into(),
        body: Vec::new(),
        esm_class: 4,
        tlvs: vec![0x00, 0x1E, 0, 4, b't', b'i', b'd', 0, 0x04, 0x27, 0, 1, 2],
    });
    node.wait_log("DLR via bind:up id=tid stat=DELIVRD", 1, 10);

    let m = http_get(metrics, "/metrics");
    assert!(
        m.contains("siphon_smpp_binds{direction=\"egress\",state=\"bound\"} 3"),
        "{m}"
    );
    assert!(
        m.contains(
            "siphon_smpp_pdus_total{direction=\"egress\",command=\"submit_sm\",result=\"error\"} 1"
        ),
        "{m}"
    );
    drop(nack);
}

#[test]
fn refused_connect_is_reported_and_retried_with_backoff() {
    let up_port = free_port();
    let nack_port = free_port();
    let (node, _addr, metrics) = start("smpp-out-refused", up_port, nack_port);
    // Nothing listens: each attempt is a refused connect, logged as such (spec §6 #12), and
    // retried after 1 s, then 2 s.
    // (Three binds, two attempts each; the log is coloured, so match the value only.)
    node.wait_log("\"refused\"", 6, 10);
    let log = node.log();
    let delays: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains("reconnecting") && l.contains("bind\u{1b}[0m\u{1b}[2m=\u{1b}[0mup")
                || l.contains("reconnecting") && l.contains("bind=up")
        })
        .collect();
    assert!(
        delays.len() >= 2 && delays[0].contains("1000") && delays[1].contains("2000"),
        "{log}"
    );
    let m = http_get(metrics, "/metrics");
    assert!(
        m.contains("siphon_smpp_bind_errors_total{bind=\"up\",cause=\"refused\"}"),
        "{m}"
    );
    assert!(!node.log().contains("timed out"), "{}", node.log());
    // The SMSC comes up: the next attempt binds (backoff is at most 4 s by now).
    let up = smsc(up_port, |_| {});
    node.wait_log("session bound kind=bind system_id=up", 1, 10);
    assert!(up.stats().binds.load(std::sync::atomic::Ordering::Relaxed) >= 1);
}

#[test]
fn smsc_killed_mid_flow_answers_every_submit_once_and_rebinds() {
    let up_port = free_port();
    let nack_port = free_port();
    let up = smsc(up_port, |c| c.window = 64);
    let (node, addr, _metrics) = start("smpp-out-kill", up_port, nack_port);
    node.wait_log("session bound kind=bind system_id=up", 1, 15);
    let mut e = Esme::bound(addr);
    const N: u32 = 400;
    let mut seqs = std::collections::HashSet::new();
    for i in 0..N {
        seqs.insert(e.submit(&format!("1555{i:04}"), b"flow", 0));
        if i == N / 2 {
            // Let some go through, then kill the SMSC with requests in flight.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while up
        .stats()
        .submits
        .load(std::sync::atomic::Ordering::Relaxed)
        < 50
    {
        assert!(Instant::now() < deadline, "no submits reached the SMSC");
        std::thread::sleep(Duration::from_millis(5));
    }
    up.kill();
    let mut answered = std::collections::HashMap::new();
    let (mut ok, mut failed) = (0, 0);
    while answered.len() < seqs.len() {
        let r = e.recv().unwrap_or_else(|| {
            panic!(
                "ESME stalled after {} of {N} answers:\n{}",
                answered.len(),
                node.log()
            )
        });
        assert_eq!(r.command, CommandId::SubmitSmResp);
        assert!(seqs.contains(&r.seq));
        assert!(answered.insert(r.seq, r.status).is_none(), "answered twice");
        if r.status.is_ok() {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    assert_eq!(ok + failed, N);
    assert!(ok >= 50, "{ok} ok");
    // The bind comes back when the SMSC does.
    node.wait_log("session unbound kind=bind system_id=up", 1, 5);
    let up2 = smsc(up_port, |_| {});
    node.wait_log("session bound kind=bind system_id=up", 2, 10);
    assert_eq!(e.call("after", b"x", 0).status, CommandStatus::ESME_ROK);
    assert!(up2.received().iter().any(|g| g.dest == "after"));
}

/// A node with the ESME listener, `binds_yaml` (the `binds:` list items) and extra files.
fn start_binds(name: &str, binds_yaml: &str, files: &[(&str, &str)]) -> (Node, SocketAddr) {
    let port = free_port();
    let smpp = format!("server:\n  bind_address: 127.0.0.1\n  port: {port}\nbinds:\n{binds_yaml}");
    let config = "listen:\n  udp: [\"127.0.0.1:{sip}\"]\nscript:\n  path: s.py\n\
         extensions:\n  smpp: smpp.yaml\ntuning:\n  reactor_cpus: [0, 1]\n";
    let mut all = vec![("s.py", SCRIPT), ("smpp.yaml", smpp.as_str())];
    all.extend_from_slice(files);
    let node = Node::start(name, config, &all);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    node.wait_tcp(addr);
    (node, addr)
}

/// A test CA (`{ca}.pem`) and, when `leaf`, a server certificate for IP 127.0.0.1 it signed
/// (`c.pem`, `k.pem`).
fn make_ca(dir: &std::path::Path, ca: &str, leaf: bool) {
    let (key, pem) = (format!("{ca}.key"), format!("{ca}.pem"));
    let subj = format!("/CN={ca}");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subj,
            "-keyout", &key, "-out", &pem,
        ],
    );
    if !leaf {
        return;
    }
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext.cnf");
    openssl(
        dir,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=smsc", "-keyout", "k.pem",
            "-out", "r.csr",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "r.csr",
            "-CA",
            &pem,
            "-CAkey",
            &key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "c.pem",
        ],
    );
}

/// TLS to the SMSC with a CA alone (`tls: {ca_path: ...}`; upstream's schema cannot parse
/// that form): our simulator behind a Python `ssl` front whose certificate (IP 127.0.0.1) a
/// test CA signed. submit_via and the DLR back go over TLS; a bind trusting another CA is
/// refused by the handshake and never reaches the SMSC.
#[test]
fn tls_bind_with_a_ca_only() {
    let dir = common::scratch("smpp-out-tls-certs");
    make_ca(&dir, "ca", true);
    make_ca(&dir, "other", false);
    let up_port = free_port();
    let up = smsc(up_port, |c| c.dlr_delay = Duration::from_millis(50));
    let tls_port = free_port();
    let mut front = Bg(std::process::Command::new("python3")
        .arg(format!(
            "{}/tests/smpp/tls_front.py",
            std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR")
        ))
        .args([tls_port.to_string(), up_port.to_string()])
        .arg(dir.join("c.pem"))
        .arg(dir.join("k.pem"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3"));
    let mut line = String::new();
    if let Some(out) = front.0.stdout.as_mut() {
        let mut b = [0u8; 64];
        let n = out.read(&mut b).unwrap_or(0);
        line.push_str(&String::from_utf8_lossy(&b[..n]));
    }
    assert!(line.contains("listening"), "TLS front: {line:?}");
    let ca = std::fs::read_to_string(dir.join("ca.pem")).expect("ca");
    let other = std::fs::read_to_string(dir.join("other.pem")).expect("other ca");
    let binds = format!(
        "  - {{name: up, host: 127.0.0.1, port: {tls_port}, system_id: gw, password: pw, tls: {{ca_path: ca.pem}}}}\n\
         \x20 - {{name: wrong, host: 127.0.0.1, port: {tls_port}, system_id: gwx, password: pw, tls: {{ca_path: other.pem}}}}\n"
    );
    let (node, addr) = start_binds(
        "smpp-out-tls",
        &binds,
        &[("ca.pem", &ca), ("other.pem", &other)],
    );
    node.wait_log("session bound kind=bind system_id=up", 1, 15);
    let mut e = Esme::bound(addr);
    let r = e.call("15550199", b"over tls", 1);
    assert_eq!(r.status, CommandStatus::ESME_ROK, "{}", node.log());
    let got = up.received();
    let s = got
        .iter()
        .find(|g| g.command == "submit_sm")
        .expect("submit reached the SMSC through TLS");
    assert_eq!(s.body, b"over tls");
    assert_eq!(s.message_id, r.message_id);
    node.wait_log(
        &format!("DLR via bind:up id={} stat=DELIVRD", r.message_id),
        1,
        10,
    );
    // The bind that trusts another CA fails its handshake and keeps retrying; it never binds.
    node.wait_log("invalid peer certificate: UnknownIssuer", 1, 10);
    assert!(
        !node.log().contains("system_id=wrong"),
        "a bind with the wrong CA bound:\n{}",
        node.log()
    );
}

fn count(node: &Node, what: &str) -> usize {
    node.log().matches(what).count()
}

/// SIGHUP re-reads `smpp.yaml`'s binds: an added bind binds, a removed one unbinds, a changed
/// one reconnects, an unchanged one keeps its session; a bad file keeps the binds as they are.
#[test]
fn sighup_rereads_binds() {
    let (a_port, b_port) = (free_port(), free_port());
    let a = smsc(a_port, |_| {});
    let _b = smsc(b_port, |_| {});
    let bind = |name: &str, port: u16, extra: &str| {
        format!(
            "  - {{name: {name}, host: 127.0.0.1, port: {port}, system_id: {name}, password: pw{extra}}}\n"
        )
    };
    let first = format!(
        "{}{}{}",
        bind("up", a_port, ""),
        bind("gone", a_port, ""),
        bind("chg", b_port, ", window: 64")
    );
    let (node, addr) = start_binds("smpp-out-sighup", &first, &[]);
    for n in ["up", "gone", "chg"] {
        node.wait_log(&format!("session bound kind=bind system_id={n}"), 1, 15);
    }
    // The listener port and the rest of the file stay; only `binds:` differs.
    let yaml = std::fs::read_to_string(node.path("smpp.yaml")).expect("smpp.yaml");
    let head = yaml.split("binds:\n").next().unwrap_or_default().to_owned();
    let second = format!(
        "{head}binds:\n{}{}{}",
        bind("up", a_port, ""),
        bind("chg", b_port, ", window: 32"),
        bind("added", b_port, "")
    );
    std::fs::write(node.path("smpp.yaml"), second).expect("rewrite smpp.yaml");
    node.signal("-HUP");
    node.wait_log("session bound kind=bind system_id=added", 1, 15);
    node.wait_log("session unbound kind=bind system_id=gone", 1, 15);
    node.wait_log("session unbound kind=bind system_id=chg", 1, 15);
    node.wait_log("session bound kind=bind system_id=chg", 2, 15);
    assert_eq!(count(&node, "session bound kind=bind system_id=up"), 1);
    assert_eq!(count(&node, "session unbound kind=bind system_id=up"), 0);
    let mut e = Esme::bound(addr);
    assert_eq!(e.call("after", b"x", 0).status, CommandStatus::ESME_ROK);
    assert!(a.received().iter().any(|g| g.dest == "after"));
    // `gone` stays down: no reconnect after its unbind.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(count(&node, "session bound kind=bind system_id=gone"), 1);

    // A bad file is reported and changes nothing.
    std::fs::write(node.path("smpp.yaml"), "binds: [ {name: \n").expect("rewrite");
    node.signal("-HUP");
    node.wait_log("SMPP reload refused", 1, 10);
    assert_eq!(e.call("after2", b"x", 0).status, CommandStatus::ESME_ROK);
    assert_eq!(count(&node, "session unbound kind=bind system_id=added"), 0);
}

/// deploy/examples/smpp_gateway.{py,yaml}: ESME in with a password, policy (blocked prefix,
/// routing by prefix), SMSC out over two binds, the receipt back to the ESME that sent it.
#[test]
fn gateway_example() {
    let root = common::repo_root().join("deploy/examples");
    let script = std::fs::read_to_string(root.join("smpp_gateway.py")).expect("example script");
    let yaml = std::fs::read_to_string(root.join("smpp_gateway.yaml")).expect("example yaml");
    let (port, up_port, uk_port) = (free_port(), free_port(), free_port());
    let up = smsc(up_port, |c| c.dlr_delay = Duration::from_millis(50));
    let uk = smsc(uk_port, |_| {});
    let yaml = yaml
        .replace("bind_address: 0.0.0.0", "bind_address: 127.0.0.1")
        .replace("${SMPP_PORT:-2775}", &port.to_string())
        .replace("${SMSC_PORT:-2776}", &up_port.to_string())
        .replace("${SMSC_UK_PORT:-2777}", &uk_port.to_string());
    let config = "listen:\n  udp: [\"127.0.0.1:{sip}\"]\nscript:\n  path: smpp_gateway.py\n\
         extensions:\n  smpp: smpp_gateway.yaml\ntuning:\n  reactor_cpus: [0, 1]\n";
    let node = Node::start(
        "smpp-gateway-example",
        config,
        &[("smpp_gateway.py", &script), ("smpp_gateway.yaml", &yaml)],
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    node.wait_tcp(addr);
    node.wait_log("SMPP bind: bound", 2, 15);
    let (_, status) = Esme::bind_as(addr, "shop", "wrong");
    assert_eq!(status, CommandStatus::ESME_RINVPASWD);
    let (mut e, status) = Esme::bind_as(addr, "shop", "shop-pw");
    assert_eq!(status, CommandStatus::ESME_ROK, "{}", node.log());

    // Blocked prefix: refused by the policy, nothing goes out.
    assert_eq!(
        e.call("1900555", b"x", 0).status,
        CommandStatus::ESME_RINVDSTADR
    );
    // Routed by prefix to `uk`, the rest to `up`.
    let r = e.call("447700900123", b"to uk", 0);
    assert_eq!(r.status, CommandStatus::ESME_ROK, "{}", node.log());
    assert!(uk.received().iter().any(|g| g.dest == "447700900123"));
    let r = e.call("15550199", b"with receipt", 1);
    assert_eq!(r.status, CommandStatus::ESME_ROK, "{}", node.log());
    let got = up.received();
    let s = got
        .iter()
        .find(|g| g.dest == "15550199")
        .expect("submit reached `up`");
    assert_eq!(s.message_id, r.message_id);
    assert!(
        !got.iter()
            .any(|g| g.dest == "1900555" || g.dest == "447700900123")
    );
    // The receipt comes back to this ESME as a deliver_sm naming the SMSC's id.
    let dlr = e.recv().expect("the receipt");
    assert_eq!(dlr.command, CommandId::DeliverSm, "{}", node.log());
    let text = String::from_utf8_lossy(&dlr.text).into_owned();
    assert!(
        text.contains(&format!("id:{}", r.message_id)) && text.contains("stat:DELIVRD"),
        "{text}"
    );
}

/// Spec §6 #7 (responses lost under pipelining, the receipt path too): an ESME keeps 64
/// submits in flight through siphon and the bind (window 64) to the SMSC, every one asking
/// for a receipt, which the SMSC pipelines back over the bind (its window 64). Ten runs:
/// every submit answered ok exactly once, every receipt acknowledged and seen by the script.
#[test]
fn pipelining_window_64_many_runs_nothing_lost() {
    const RUNS: usize = 10;
    const N: usize = 1000;
    let up_port = free_port();
    let nack_port = free_port();
    let up = smsc(up_port, |c| c.window = 64);
    let _nack = smsc(nack_port, |_| {});
    let (node, addr, _) = start("smpp-out-pipelining", up_port, nack_port);
    node.wait_log("session bound kind=bind system_id=up", 1, 15);
    let mut e = Esme::bound(addr);
    for run in 0..RUNS {
        let mut seen = std::collections::HashSet::new();
        let (mut sent, mut got) = (0, 0);
        while got < N {
            while sent < N && sent - got < 64 {
                let seq = e.submit("15550199", b"pipelined", 1);
                assert!(seen.insert(seq));
                sent += 1;
            }
            let r = e.recv().unwrap_or_else(|| {
                panic!("run {run}: stalled after {got} of {N}:\n{}", node.log())
            });
            assert_eq!(r.command, CommandId::SubmitSmResp);
            assert_eq!(r.status, CommandStatus::ESME_ROK, "run {run}");
            assert!(
                seen.remove(&r.seq),
                "run {run}: seq {} answered twice",
                r.seq
            );
            got += 1;
        }
        assert!(seen.is_empty());
    }
    let total = (RUNS * N) as u64;
    let stats = up.stats();
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats.acks.load(std::sync::atomic::Ordering::Relaxed) < total {
        assert!(
            Instant::now() < deadline,
            "receipts acknowledged: {} of {total}",
            stats.acks.load(std::sync::atomic::Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stats.dlrs.load(std::sync::atomic::Ordering::Relaxed), total);
    node.wait_log("DLR via bind:up", RUNS * N, 10);
}

/// PyPI smpp34's own `Server` as the SMSC (issue 13): submit_via gets its message_id, a soft
/// nack (ESME_RSUBMITFAIL) is `ok=False` with the status, and the receipt and an MO
/// deliver_sm it sends over the bind reach `@smpp.on_pdu` and are acknowledged.
#[test]
fn smpp34_server_as_the_smsc() {
    let port = free_port();
    let smsc = Smpp34::start(port, &[]);
    let wait_out = |what: &str| smsc.wait_out(what);
    let binds =
        format!("  - {{name: up, host: 127.0.0.1, port: {port}, system_id: gw, password: pw}}\n");
    let (node, addr) = start_binds("smpp-out-smpp34", &binds, &[]);
    node.wait_log("session bound kind=bind system_id=up", 1, 15);
    wait_out("bound gw");
    let mut e = Esme::bound(addr);
    let r = e.call("15550199", b"hello 34", 1);
    assert_eq!(r.status, CommandStatus::ESME_ROK, "{}", node.log());
    assert_eq!(r.message_id, "s34-1");
    wait_out("submit 15550199 hello 34 s34-1");
    node.wait_log("DLR via bind:up id=s34-1 stat=DELIVRD", 1, 10);
    node.wait_log("MO via bind:up body=mo from smpp34", 1, 10);
    wait_out("dlr resp 0");
    wait_out("mo resp 0");
    // Spec §6 #13 against smpp34: its reject is ok=False with the status.
    let r = e.call("reject34", b"x", 0);
    assert_eq!(r.status, CommandStatus::ESME_RSUBMITFAIL, "{}", node.log());
    node.wait_log("via soft nack ESME_RSUBMITFAIL", 1, 5);
}

/// PyPI smpp34's `Server` driven by tests/smpp/smpp34_smsc.py; its stdout is collected.
struct Smpp34 {
    _child: Bg,
    seen: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Smpp34 {
    /// `smpp34_smsc.py PORT EXTRA...`; returns once it listens.
    fn start(port: u16, extra: &[&std::ffi::OsStr]) -> Smpp34 {
        let mut child = Bg(std::process::Command::new("python3")
            .arg(format!(
                "{}/tests/smpp/smpp34_smsc.py",
                std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR")
            ))
            .arg(port.to_string())
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("python3 with PyPI smpp34"));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        if let Some(mut out) = child.0.stdout.take() {
            let seen = std::sync::Arc::clone(&seen);
            std::thread::spawn(move || {
                let mut b = [0u8; 4096];
                while let Ok(n) = out.read(&mut b) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = seen.lock() {
                        s.push_str(&String::from_utf8_lossy(&b[..n]));
                    }
                }
            });
        }
        let s = Smpp34 {
            _child: child,
            seen,
        };
        s.wait_out("listening");
        s
    }

    fn text(&self) -> String {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn wait_out(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.text().contains(what) {
            assert!(
                Instant::now() < deadline,
                "smpp34 SMSC: `{what}` not seen:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// PyPI smpp34's own `Server` as the SMSC over TLS, with data_sm both ways (issue 13): the
/// Server stays the SMSC for bind, submit_sm and deliver_sm; tests/smpp/smpp34_smsc.py
/// serves it through Python's `ssl` (a certificate for IP 127.0.0.1 from a test CA; our bind
/// trusts that CA alone, `tls: {ca_path}`) and adds data_sm, encoded and decoded with
/// smpp34's own PDU classes, which the Server lacks. Over that one TLS bind: submit_via gets
/// smpp34's id, its receipt and MO deliver_sm reach the script, a data_sm from the ESME
/// (300 octets in message_payload) goes out by data_via and its data_sm_resp id comes back,
/// and the SMSC's data_sm (300 octets) reaches `@smpp.on_pdu("data_sm")` and is answered.
#[test]
fn smpp34_server_over_tls_with_data_sm_both_ways() {
    let dir = common::scratch("smpp-out-smpp34-tls-certs");
    make_ca(&dir, "ca", true);
    let port = free_port();
    let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
    let smsc = Smpp34::start(port, &["--tls".as_ref(), cert.as_os_str(), key.as_os_str()]);
    let ca = std::fs::read_to_string(dir.join("ca.pem")).expect("ca");
    let binds = format!(
        "  - {{name: up, host: 127.0.0.1, port: {port}, system_id: gw, password: pw, tls: {{ca_path: ca.pem}}}}\n"
    );
    let (node, addr) = start_binds("smpp-out-smpp34-tls", &binds, &[("ca.pem", &ca)]);
    node.wait_log("session bound kind=bind system_id=up", 1, 15);
    smsc.wait_out("bound gw");
    let mut e = Esme::bound(addr);

    // submit_via over TLS: smpp34's id back, then its receipt and an MO over the bind.
    let r = e.call("15550199", b"hello tls", 1);
    assert_eq!(r.status, CommandStatus::ESME_ROK, "{}", node.log());
    assert_eq!(r.message_id, "s34-1");
    smsc.wait_out("submit 15550199 hello tls s34-1");
    node.wait_log("DLR via bind:up id=s34-1 stat=DELIVRD", 1, 10);
    node.wait_log("MO via bind:up body=mo from smpp34", 1, 10);
    smsc.wait_out("dlr resp 0");
    smsc.wait_out("mo resp 0");

    // data_sm ESME -> siphon -> data_via -> smpp34 (spec §6 #1/#2: 300 octets of payload).
    let body = vec![b'd'; 300];
    let t = [Tlv::new(TlvTag::MESSAGE_PAYLOAD, &body)];
    let seq = e.send(Body::DataSm(DataSm {
        source_addr: b"15550100",
        destination_addr: b"15550199",
        tlvs: siphon_smpp::List::Items(&t),
        ..DataSm::default()
    }));
    let r = e.recv().expect("data_sm_resp");
    assert_eq!((r.seq, r.command), (seq, CommandId::DataSmResp));
    assert_eq!(r.status, CommandStatus::ESME_ROK, "{}", node.log());
    assert_eq!(r.message_id, "d34-1", "data_via returns smpp34's id");
    smsc.wait_out("data_sm 15550100 15550199 len=300 d34-1");
    // ... and smpp34's data_sm back over the bind to @smpp.on_pdu, answered by the script.
    node.wait_log("data_sm from up len=300", 1, 10);
    smsc.wait_out("data_sm resp 0 dmo");
}
