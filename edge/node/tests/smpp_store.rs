//! SMPP store-and-forward (issue 18): a real `siphon --features smpp` between an ESME (a raw
//! one on our codec, or PyPI smpplib as users run it) and our SMSC simulator (`bench/smpp`, in
//! process). Run with `cargo test -p siphon-bin --features smpp --test smpp_store`.
#![cfg(feature = "smpp")]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Node, free_port, http_get, scratch};
use siphon_bench_smpp::smsc::Push;
use siphon_bench_smpp::smsc::{Smsc, SmscConfig};
use siphon_smpp::{
    Bind, Body, CommandId, CommandStatus, DataSm, Dest, List, MessageIdResp, Pdu, SequenceNumber,
    SubmitMulti, SubmitSm, Tlv, TlvTag, frame_len,
};

const SCRIPT: &str = include_str!("smpp/store_test.py");

fn smsc(port: u16, throttle_rate: f64) -> Smsc {
    smsc_with(SmscConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        dlr_delay: Duration::from_millis(20),
        throttle_rate,
        ..SmscConfig::default()
    })
}

fn smsc_with(cfg: SmscConfig) -> Smsc {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Smsc::start(cfg.clone()) {
            Ok(s) => return s,
            Err(e) => {
                assert!(Instant::now() < deadline, "simulator: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// A node whose bind `up` points at `smsc_port` (the SMSC may be down), with the store at
/// `db` and the ESME listener on `port`.
fn start(name: &str, port: u16, metrics: u16, smsc_port: u16, db: &Path, max_queue: usize) -> Node {
    start_with(
        name,
        port,
        metrics,
        &[("up", smsc_port)],
        db,
        &format!("retry: {{initial_secs: 1, max_secs: 2}}\n  max_queue: {max_queue}"),
    )
}

/// A node with `binds` (name, SMSC port) and `store` lines under `store_and_forward:`.
fn start_with(
    name: &str,
    port: u16,
    metrics: u16,
    binds: &[(&str, u16)],
    db: &Path,
    store: &str,
) -> Node {
    let mut smpp = format!("server:\n  bind_address: 127.0.0.1\n  port: {port}\nbinds:\n");
    for (bind, smsc_port) in binds {
        smpp.push_str(&format!(
            "  - {{name: {bind}, host: 127.0.0.1, port: {smsc_port}, system_id: gw, password: pw}}\n"
        ));
    }
    smpp.push_str(&format!(
        "store_and_forward:\n  path: {}\n  {store}\n",
        db.display()
    ));
    let config = format!(
        "listen:\n  udp: [\"127.0.0.1:{{sip}}\"]\nscript:\n  path: s.py\n\
         extensions:\n  smpp: smpp.yaml\ntuning:\n  reactor_cpus: [0, 1]\n\
         metrics:\n  prometheus:\n    listen: \"127.0.0.1:{metrics}\"\n"
    );
    let node = Node::start(name, &config, &[("s.py", SCRIPT), ("smpp.yaml", &smpp)]);
    let deadline = Instant::now() + Duration::from_secs(10);
    for p in [port, metrics] {
        while TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], p))).is_err() {
            assert!(
                Instant::now() < deadline,
                "no listener on {p}:\n{}",
                node.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    node
}

/// A blocking raw ESME (transceiver).
struct Esme {
    s: TcpStream,
    buf: Vec<u8>,
    seq: u32,
    /// deliver_sm that arrived while a response was awaited (not acknowledged yet).
    early: std::collections::VecDeque<In>,
}

struct In {
    command: CommandId,
    status: CommandStatus,
    seq: u32,
    message_id: String,
    text: String,
}

impl Esme {
    fn bind(addr: SocketAddr) -> Esme {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("loopback io");
        let mut e = Esme {
            s,
            buf: Vec::new(),
            seq: 0,
            early: std::collections::VecDeque::new(),
        };
        e.send(Body::BindTransceiver(Bind {
            system_id: b"shop",
            password: b"pw",
            interface_version: 0x34,
            ..Bind::default()
        }));
        let r = e.recv().expect("bind_resp");
        assert_eq!(r.status, CommandStatus::ESME_ROK);
        e
    }

    fn write(&mut self, pdu: &Pdu<'_>) {
        let mut out = Vec::new();
        pdu.encode(&mut out).expect("encodable");
        self.s.write_all(&out).expect("loopback io");
    }

    fn send(&mut self, body: Body<'_>) -> u32 {
        self.seq += 1;
        self.write(&Pdu::request(SequenceNumber(self.seq), body));
        self.seq
    }

    fn recv(&mut self) -> Option<In> {
        loop {
            if let Ok(Some(n)) = frame_len(&self.buf, 1 << 20) {
                let frame: Vec<u8> = self.buf.drain(..n).collect();
                let pdu = Pdu::decode(&frame).expect("decodable");
                let message_id = match &pdu.body {
                    Body::SubmitSmResp(r) => String::from_utf8_lossy(r.message_id).into_owned(),
                    Body::DataSmResp(r) => String::from_utf8_lossy(r.message_id).into_owned(),
                    Body::SubmitMultiResp(r) => String::from_utf8_lossy(r.message_id).into_owned(),
                    // A receipt: its receipted_message_id TLV.
                    Body::DeliverSm(d) => d
                        .tlvs
                        .iter()
                        .find(|t| t.tag == TlvTag::RECEIPTED_MESSAGE_ID)
                        .map(|t| {
                            String::from_utf8_lossy(t.value)
                                .trim_end_matches('\0')
                                .to_owned()
                        })
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                let text = match &pdu.body {
                    Body::DeliverSm(d) => String::from_utf8_lossy(d.short_message).into_owned(),
                    _ => String::new(),
                };
                return Some(In {
                    command: pdu.command_id(),
                    status: pdu.status,
                    seq: pdu.sequence.0,
                    message_id,
                    text,
                });
            }
            let mut tmp = [0u8; 65536];
            match self.s.read(&mut tmp) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
            }
        }
    }

    /// submit_sm with a receipt requested; its response.
    fn submit(&mut self, text: &str) -> In {
        self.submit_to("15550199", text, 1)
    }

    /// submit_sm to `dest`; its response.
    fn submit_to(&mut self, dest: &str, text: &str, registered_delivery: u8) -> In {
        self.request(
            Body::SubmitSm(SubmitSm {
                source_addr: b"15550100",
                destination_addr: dest.as_bytes(),
                registered_delivery,
                short_message: text.as_bytes(),
                ..SubmitSm::default()
            }),
            CommandId::SubmitSmResp,
        )
    }

    /// A request; its response.
    fn request(&mut self, body: Body<'_>, resp: CommandId) -> In {
        let seq = self.send(body);
        loop {
            let r = self.recv().expect("a response");
            if r.command == CommandId::DeliverSm {
                self.early.push_back(r);
                continue;
            }
            assert_eq!((r.command, r.seq), (resp, seq));
            return r;
        }
    }

    /// The next `n` receipts (each acknowledged): their `id:` values.
    fn receipts(&mut self, n: usize) -> Vec<String> {
        self.receipt_texts(n)
            .into_iter()
            .map(|(id, text)| {
                assert!(text.contains("stat:DELIVRD"), "{text}");
                id
            })
            .collect()
    }

    /// The next `n` receipts (each acknowledged): `(id: value, text)`; the
    /// receipted_message_id TLV names the same id.
    fn receipt_texts(&mut self, n: usize) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while out.len() < n {
            let r = match self.early.pop_front() {
                Some(r) => r,
                None => self.recv().expect("a receipt"),
            };
            assert_eq!(r.command, CommandId::DeliverSm);
            self.write(&Pdu {
                status: CommandStatus::ESME_ROK,
                sequence: SequenceNumber(r.seq),
                body: Body::DeliverSmResp(MessageIdResp { message_id: b"" }),
            });
            let id = r
                .text
                .split(' ')
                .find_map(|w| w.strip_prefix("id:"))
                .expect("id: in the receipt")
                .to_owned();
            assert_eq!(id, r.message_id, "{}", r.text);
            out.push((id, r.text));
        }
        out
    }
}

/// Accepted submits (the simulator records throttled ones too, without an id), by content.
fn accepted(s: &Smsc) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for r in s.received() {
        if r.command == "submit_sm" && !r.message_id.is_empty() {
            *m.entry(String::from_utf8_lossy(&r.body).into_owned())
                .or_default() += 1;
        }
    }
    m
}

fn wait_accepted(s: &Smsc, n: usize, node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while accepted(s).values().sum::<usize>() < n {
        assert!(
            Instant::now() < deadline,
            "{} of {n} accepted:\n{}",
            accepted(s).values().sum::<usize>(),
            node.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metric(addr: u16, name: &str) -> u64 {
    let text = http_get(SocketAddr::from(([127, 0, 0, 1], addr)), "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

/// The SMSC is down: every submit is acknowledged with our id once it is on disk. The node
/// is killed (SIGKILL) and restarted, then the SMSC comes up (answering 30 % of submits
/// ESME_RTHROTTLED, so retries happen): every message reaches it exactly once, and every
/// receipt reaches the ESME carrying the id the ESME was given.
#[test]
fn smsc_down_kill_restart_every_message_once_and_receipts_back() {
    const N: usize = 30;
    let db = scratch("smpp-store-db").join("queue.redb");
    let smsc_port = free_port();
    let (port, metrics) = (free_port(), free_port());
    let node = start("smpp-store-a", port, metrics, smsc_port, &db, 1000);
    let mut e = Esme::bind(SocketAddr::from(([127, 0, 0, 1], port)));
    let mut ours = BTreeSet::new();
    for i in 0..N {
        let r = e.submit(&format!("msg-{i}"));
        assert_eq!(r.status, CommandStatus::ESME_ROK, "{}", node.log());
        assert!(r.message_id.starts_with('S'), "{}", r.message_id);
        assert!(ours.insert(r.message_id));
    }
    assert_eq!(metric(metrics, "siphon_smpp_store_queue_depth"), N as u64);
    drop(e);
    // SIGKILL: nothing is flushed or unbound on the way out.
    drop(node);

    let (port, metrics) = (free_port(), free_port());
    let node = start("smpp-store-b", port, metrics, smsc_port, &db, 1000);
    // Loaded from the file before the reactors started.
    assert_eq!(metric(metrics, "siphon_smpp_store_queue_depth"), N as u64);
    let up = smsc(smsc_port, 0.3);
    wait_accepted(&up, N, &node);
    let mut e = Esme::bind(SocketAddr::from(([127, 0, 0, 1], port)));
    let got: BTreeSet<String> = e.receipts(N).into_iter().collect();
    assert_eq!(got, ours, "{}", node.log());
    // Exactly once, by content, after the receipts (so nothing was still on its way).
    let seen = accepted(&up);
    assert_eq!(seen.len(), N);
    for i in 0..N {
        assert_eq!(seen.get(&format!("msg-{i}")), Some(&1), "msg-{i}");
    }
    assert_eq!(
        metric(metrics, "siphon_smpp_store_delivered_total"),
        N as u64
    );
    assert_eq!(metric(metrics, "siphon_smpp_store_queue_depth"), 0);
    // The throttled attempts were retried (and counted).
    assert!(metric(metrics, "siphon_smpp_store_retried_total") > 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(metrics, "siphon_smpp_store_receipts_depth") != 0 {
        assert!(Instant::now() < deadline, "receipts still waiting");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!node.log().contains("deliver_sm reached the script"));
}

/// At its cap the queue answers ESME_RMSGQFUL (0x14) and the messages it took are all
/// delivered once the SMSC is up.
#[test]
fn queue_at_cap_answers_msgqful_and_loses_nothing() {
    let db = scratch("smpp-store-cap").join("queue.redb");
    let smsc_port = free_port();
    let (port, metrics) = (free_port(), free_port());
    let node = start("smpp-store-cap", port, metrics, smsc_port, &db, 3);
    let mut e = Esme::bind(SocketAddr::from(([127, 0, 0, 1], port)));
    let mut ok = Vec::new();
    for i in 0..5 {
        let r = e.submit(&format!("cap-{i}"));
        if i < 3 {
            assert_eq!(r.status, CommandStatus::ESME_ROK, "{}", node.log());
            ok.push(format!("cap-{i}"));
        } else {
            assert_eq!(r.status, CommandStatus::ESME_RMSGQFUL, "{}", node.log());
        }
    }
    assert_eq!(metric(metrics, "siphon_smpp_store_refused_total"), 2);
    let up = smsc(smsc_port, 0.0);
    wait_accepted(&up, 3, &node);
    let _ = e.receipts(3);
    let seen = accepted(&up);
    assert_eq!(seen.len(), 3);
    for m in &ok {
        assert_eq!(seen.get(m), Some(&1), "{m}");
    }
    // Room again: the next submit is taken.
    assert_eq!(e.submit("cap-5").status, CommandStatus::ESME_ROK);
    wait_accepted(&up, 4, &node);
}

/// Run `smpp/smpplib_store.py MODE PORT N` (PyPI smpplib, as users run it); its stdout.
fn smpplib(mode: &str, port: u16, n: usize, node: &Node) -> String {
    let path = common::repo_root().join("edge/node/tests/smpp/smpplib_store.py");
    let out = Command::new("python3")
        .arg(path)
        .args([mode, &port.to_string(), &n.to_string()])
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("DONE"),
        "smpplib_store.py {mode} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}\nlog:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
    stdout
}

/// The acceptance with the ESME users run: PyPI smpplib binds as transceiver and
/// submits N messages with registered_delivery=1 while the SMSC is down; every
/// submit_sm_resp carries an id. The node is SIGKILLed and restarted, the SMSC comes up
/// (throttling 30 %): every message reaches it exactly once, and smpplib (bound again) gets
/// every receipt as a deliver_sm with esm_class "receipt", naming in its text and its
/// receipted_message_id TLV the id smpplib got in its submit_sm_resp.
#[test]
fn smpplib_esme_smsc_down_kill_restart_receipts_carry_its_ids() {
    const N: usize = 20;
    let db = scratch("smpp-store-smpplib").join("queue.redb");
    let smsc_port = free_port();
    let (port, metrics) = (free_port(), free_port());
    let node = start("smpp-store-lib-a", port, metrics, smsc_port, &db, 1000);
    let out = smpplib("submit", port, N, &node);
    let mut ours: HashMap<usize, String> = HashMap::new();
    for line in out.lines().filter_map(|l| l.strip_prefix("id ")) {
        let (i, id) = line.split_once(' ').expect("id SEQ MESSAGE_ID");
        assert!(id.starts_with('S'), "{id}");
        assert!(
            ours.insert(i.parse().expect("index"), id.to_owned())
                .is_none()
        );
    }
    assert_eq!(ours.len(), N, "{out}");
    let ids: BTreeSet<String> = ours.values().cloned().collect();
    assert_eq!(ids.len(), N, "ids are unique: {out}");
    assert_eq!(metric(metrics, "siphon_smpp_store_queue_depth"), N as u64);
    // SIGKILL.
    drop(node);

    let (port, metrics) = (free_port(), free_port());
    let node = start("smpp-store-lib-b", port, metrics, smsc_port, &db, 1000);
    let up = smsc(smsc_port, 0.3);
    wait_accepted(&up, N, &node);
    let out = smpplib("receipts", port, N, &node);
    let mut got = BTreeSet::new();
    for line in out.lines().filter_map(|l| l.strip_prefix("receipt ")) {
        let f: Vec<&str> = line.split(' ').collect();
        // TLV id, text id, stat, esm_class, message_state.
        assert_eq!(f.len(), 5, "{line}");
        assert_eq!(f[0], f[1], "TLV and text name the same id: {line}");
        assert_eq!(f[2], "DELIVRD", "{line}");
        assert_eq!(
            f[3].parse::<u8>().expect("esm_class") & 0x04,
            0x04,
            "{line}"
        );
        assert!(
            got.insert(f[0].to_owned()),
            "one receipt per message: {out}"
        );
    }
    assert_eq!(got, ids, "{}", node.log());
    let seen = accepted(&up);
    assert_eq!(seen.len(), N);
    for i in 0..N {
        assert_eq!(seen.get(&format!("sf-{i}")), Some(&1), "sf-{i}");
    }
    assert_eq!(
        metric(metrics, "siphon_smpp_store_delivered_total"),
        N as u64
    );
    assert!(!node.log().contains("deliver_sm reached the script"));
}

/// Requests the simulator answered ROK, of `command`: (message_id, dest, body).
fn accepted_of(s: &Smsc, command: &str) -> Vec<(String, String, Vec<u8>)> {
    s.received()
        .into_iter()
        .filter(|r| r.command == command && !r.message_id.is_empty())
        .map(|r| (r.message_id, r.dest, r.body))
        .collect()
}

/// A hand-made receipt from the SMSC for its id `smsc_id` (the simulator makes receipts for
/// submit_sm only).
fn push_receipt(s: &Smsc, smsc_id: &str, dest: &str) {
    let mut tlvs = vec![0x00, 0x1E];
    tlvs.extend_from_slice(&((smsc_id.len() + 1) as u16).to_be_bytes());
    tlvs.extend_from_slice(smsc_id.as_bytes());
    tlvs.push(0);
    s.push(Push::Deliver {
        source: dest.to_owned(),
        dest: "15550100".into(),
        body: format!("id:{smsc_id} sub:001 dlvrd:001 stat:DELIVRD err:000 text:").into_bytes(),
        esm_class: 0x04,
        tlvs,
    });
}

/// `data_via(..., store=True)` and `submit_multi_via(..., store=True)`: accepted with the
/// SMSC down, kept across a SIGKILL (the submit_multi with its destinations, the data_sm with
/// its message_payload), delivered once when the SMSC is up; the data_sm's receipt and both
/// of the submit_multi's (one per destination) reach the ESME under our ids.
#[test]
fn data_via_and_submit_multi_via_store_and_forward() {
    let db = scratch("smpp-store-multi").join("queue.redb");
    let smsc_port = free_port();
    let (port, metrics) = (free_port(), free_port());
    let node = start("smpp-store-multi-a", port, metrics, smsc_port, &db, 1000);
    let mut e = Esme::bind(SocketAddr::from(([127, 0, 0, 1], port)));
    let payload = vec![b'p'; 300];
    let t = [Tlv::new(TlvTag::MESSAGE_PAYLOAD, &payload)];
    let data = e.request(
        Body::DataSm(DataSm {
            source_addr: b"15550100",
            destination_addr: b"15550177",
            registered_delivery: 1,
            tlvs: List::Items(&t),
            ..DataSm::default()
        }),
        CommandId::DataSmResp,
    );
    assert_eq!(data.status, CommandStatus::ESME_ROK, "{}", node.log());
    let dests = [
        Dest::Sme {
            ton: 1,
            npi: 1,
            addr: b"15550131",
        },
        Dest::Sme {
            ton: 1,
            npi: 1,
            addr: b"15550132",
        },
    ];
    let multi = e.request(
        Body::SubmitMulti(SubmitMulti {
            source_addr: b"15550100",
            dests: List::Items(&dests),
            registered_delivery: 1,
            short_message: b"to both",
            ..SubmitMulti::default()
        }),
        CommandId::SubmitMultiResp,
    );
    assert_eq!(multi.status, CommandStatus::ESME_ROK, "{}", node.log());
    assert!(data.message_id.starts_with('S') && multi.message_id.starts_with('S'));
    assert_ne!(data.message_id, multi.message_id);
    assert_eq!(metric(metrics, "siphon_smpp_store_queue_depth"), 2);
    drop(e);
    drop(node);

    let (port, metrics) = (free_port(), free_port());
    let node = start("smpp-store-multi-b", port, metrics, smsc_port, &db, 1000);
    assert_eq!(metric(metrics, "siphon_smpp_store_queue_depth"), 2);
    let up = smsc(smsc_port, 0.0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while accepted_of(&up, "data_sm").is_empty() || accepted_of(&up, "submit_sm_multi").is_empty() {
        assert!(Instant::now() < deadline, "not delivered:\n{}", node.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let d = accepted_of(&up, "data_sm");
    let m = accepted_of(&up, "submit_sm_multi");
    assert_eq!((d.len(), m.len()), (1, 1));
    assert_eq!((d[0].1.as_str(), &d[0].2), ("15550177", &payload));
    assert_eq!(
        (m[0].1.as_str(), m[0].2.as_slice()),
        ("15550131,15550132", &b"to both"[..])
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(metrics, "siphon_smpp_store_queue_depth") != 0 {
        assert!(Instant::now() < deadline, "still queued:\n{}", node.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut e = Esme::bind(SocketAddr::from(([127, 0, 0, 1], port)));
    push_receipt(&up, &d[0].0, "15550177");
    push_receipt(&up, &m[0].0, "15550131");
    push_receipt(&up, &m[0].0, "15550132");
    let mut got = e.receipts(3);
    got.sort();
    let mut want = vec![
        data.message_id.clone(),
        multi.message_id.clone(),
        multi.message_id.clone(),
    ];
    want.sort();
    assert_eq!(got, want, "{}", node.log());
    assert_eq!(
        metric(metrics, "siphon_smpp_store_receipts_queued_total"),
        3
    );
    assert!(!node.log().contains("deliver_sm reached the script"));
}

/// A stored message the node drops answers its ESME with a failure receipt when it asked for
/// one: "up" refuses every submit for good (ESME_RSUBMITFAIL, 0x45) → stat:REJECTD err:045;
/// "slow" throttles every submit (0x58) until `retry.max_attempts` → stat:UNDELIV err:058;
/// "down" never answers until `expire_secs` → stat:UNDELIV err:000. A message without
/// registered_delivery is dropped without one. All counted.
#[test]
fn dropped_messages_send_failure_receipts() {
    let db = scratch("smpp-store-fail").join("queue.redb");
    let rejecting = smsc_with(SmscConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
        error_rate: 1.0,
        ..SmscConfig::default()
    });
    let throttling = smsc_with(SmscConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], free_port())),
        throttle_rate: 1.0,
        ..SmscConfig::default()
    });
    let (port, metrics) = (free_port(), free_port());
    let node = start_with(
        "smpp-store-fail",
        port,
        metrics,
        &[
            ("up", rejecting.addr().port()),
            ("slow", throttling.addr().port()),
            ("down", free_port()),
        ],
        &db,
        "retry: {initial_secs: 1, max_secs: 1, max_attempts: 2}\n  expire_secs: 2",
    );
    let mut e = Esme::bind(SocketAddr::from(([127, 0, 0, 1], port)));
    let rejected = e.submit("to be rejected");
    let slow = e.submit_to("95550199", "to be throttled", 1);
    let down = e.submit_to("85550199", "nobody home", 1);
    let quiet = e.submit_to("15550199", "no receipt asked", 0);
    for r in [&rejected, &slow, &down, &quiet] {
        assert_eq!(r.status, CommandStatus::ESME_ROK, "{}", node.log());
    }
    let got: HashMap<String, String> = e.receipt_texts(3).into_iter().collect();
    let text = |r: &In| got.get(&r.message_id).cloned().unwrap_or_default();
    assert!(text(&rejected).contains("stat:REJECTD err:045"), "{got:?}");
    assert!(text(&rejected).ends_with("text:to be rejected"), "{got:?}");
    assert!(text(&slow).contains("stat:UNDELIV err:058"), "{got:?}");
    assert!(text(&down).contains("stat:UNDELIV err:000"), "{got:?}");
    assert!(!got.contains_key(&quiet.message_id), "{got:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(metrics, "siphon_smpp_store_dropped_total") != 4
        || metric(metrics, "siphon_smpp_store_receipts_depth") != 0
    {
        assert!(Instant::now() < deadline, "{}", node.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metric(metrics, "siphon_smpp_store_expired_total"), 2);
    assert_eq!(
        metric(metrics, "siphon_smpp_store_failure_receipts_total"),
        3
    );
    assert_eq!(metric(metrics, "siphon_smpp_store_queue_depth"), 0);
    // The drops are in the file: nothing comes back after a restart.
    drop(e);
    drop(node);
    let (port, metrics) = (free_port(), free_port());
    let _node = start_with(
        "smpp-store-fail-b",
        port,
        metrics,
        &[("up", rejecting.addr().port())],
        &db,
        "retry: {initial_secs: 1, max_secs: 1}",
    );
    assert_eq!(metric(metrics, "siphon_smpp_store_queue_depth"), 0);
    assert_eq!(metric(metrics, "siphon_smpp_store_receipts_depth"), 0);
}
