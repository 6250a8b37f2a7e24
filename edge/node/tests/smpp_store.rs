//! SMPP store-and-forward (issue 18): a real `siphon --features smpp` between a raw ESME on
//! our codec and our SMSC simulator (`bench/smpp`, in process). Run with
//! `cargo test -p siphon-bin --features smpp --test smpp_store`.
#![cfg(feature = "smpp")]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Node, free_port, http_get, scratch};
use siphon_bench_smpp::smsc::{Smsc, SmscConfig};
use siphon_smpp::{
    Bind, Body, CommandId, CommandStatus, MessageIdResp, Pdu, SequenceNumber, SubmitSm, frame_len,
};

const SCRIPT: &str = include_str!("smpp/store_test.py");

fn smsc(port: u16, throttle_rate: f64) -> Smsc {
    let cfg = SmscConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        dlr_delay: Duration::from_millis(20),
        throttle_rate,
        ..SmscConfig::default()
    };
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
    let smpp = format!(
        "server:\n  bind_address: 127.0.0.1\n  port: {port}\nbinds:\n\
         \x20 - {{name: up, host: 127.0.0.1, port: {smsc_port}, system_id: gw, password: pw}}\n\
         store_and_forward:\n  path: {}\n  retry: {{initial_secs: 1, max_secs: 2}}\n\
         \x20 max_queue: {max_queue}\n",
        db.display()
    );
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
        let seq = self.send(Body::SubmitSm(SubmitSm {
            source_addr: b"15550100",
            destination_addr: b"15550199",
            registered_delivery: 1,
            short_message: text.as_bytes(),
            ..SubmitSm::default()
        }));
        let r = self.recv().expect("submit_sm_resp");
        assert_eq!((r.command, r.seq), (CommandId::SubmitSmResp, seq));
        r
    }

    /// The next `n` receipts (each acknowledged): their `id:` values.
    fn receipts(&mut self, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        while ids.len() < n {
            let r = self.recv().expect("a receipt");
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
            assert!(r.text.contains("stat:DELIVRD"), "{}", r.text);
            ids.push(id);
        }
        ids
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
