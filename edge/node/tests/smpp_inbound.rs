//! SMPP extension, inbound side (issue 12): a real `siphon` built with `--features smpp`,
//! ESMEs on loopback: PyPI `smpplib` and `smpp34` (interop), and a raw client built on our
//! codec for the bad-input and pipelining cases. Run with
//! `cargo test -p siphon-bin --features smpp --test smpp_inbound`.
#![cfg(feature = "smpp")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Node, free_port};
use siphon_smpp::{
    Bind, Body, CommandId, CommandStatus, DataSm, Pdu, SequenceNumber, SubmitSm, frame_len,
};

const SCRIPT: &str = include_str!("smpp/gateway_test.py");

fn start(name: &str, server_extra: &str) -> (Node, SocketAddr) {
    let port = free_port();
    let smpp = format!("server:\n  bind_address: 127.0.0.1\n  port: {port}\n{server_extra}");
    let config = "listen:\n  udp: [\"127.0.0.1:{sip}\"]\nscript:\n  path: s.py\n\
                  extensions:\n  smpp: smpp.yaml\ntuning:\n  reactor_cpus: [0, 1]\n";
    let node = Node::start(name, config, &[("s.py", SCRIPT), ("smpp.yaml", &smpp)]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "no SMPP listener:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (node, addr)
}

/// A blocking raw ESME on our codec.
struct Esme {
    s: TcpStream,
    buf: Vec<u8>,
    seq: u32,
}

/// An owned decoded response: (command, status, sequence, message_id).
#[derive(Debug)]
struct Resp {
    command: CommandId,
    status: CommandStatus,
    seq: u32,
    message_id: String,
}

impl Esme {
    fn connect(addr: SocketAddr) -> Esme {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("loopback io");
        Esme {
            s,
            buf: Vec::new(),
            seq: 0,
        }
    }

    fn encode(&mut self, body: Body<'_>) -> Vec<u8> {
        self.seq += 1;
        let mut out = Vec::new();
        Pdu::request(SequenceNumber(self.seq), body)
            .encode(&mut out)
            .expect("loopback io");
        out
    }

    fn send(&mut self, body: Body<'_>) -> u32 {
        let b = self.encode(body);
        self.s.write_all(&b).expect("loopback io");
        self.seq
    }

    fn bind_bytes(&mut self, system_id: &str) -> Vec<u8> {
        self.encode(Body::BindTransceiver(Bind {
            system_id: system_id.as_bytes(),
            password: b"pw",
            interface_version: 0x34,
            ..Bind::default()
        }))
    }

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

    /// The next PDU, or None on EOF/timeout.
    fn recv(&mut self) -> Option<Resp> {
        loop {
            if let Ok(Some(n)) = frame_len(&self.buf, 1 << 20) {
                let frame: Vec<u8> = self.buf.drain(..n).collect();
                let pdu = Pdu::decode(&frame).expect("decodable response");
                let message_id = match pdu.body {
                    Body::SubmitSmResp(r) | Body::DeliverSmResp(r) => {
                        String::from_utf8_lossy(r.message_id).into_owned()
                    }
                    Body::DataSmResp(r) => String::from_utf8_lossy(r.message_id).into_owned(),
                    _ => String::new(),
                };
                return Some(Resp {
                    command: pdu.command_id(),
                    status: pdu.status,
                    seq: pdu.sequence.0,
                    message_id,
                });
            }
            let mut tmp = [0u8; 65536];
            match self.s.read(&mut tmp) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
            }
        }
    }

    fn bind(&mut self, system_id: &str) {
        let b = self.bind_bytes(system_id);
        self.s.write_all(&b).expect("loopback io");
        let r = self.recv().expect("bind_resp");
        assert_eq!(r.command, CommandId::BindTransceiverResp);
        assert_eq!(r.status, CommandStatus::ESME_ROK);
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
    let out = Command::new("python3")
        .arg(path)
        .arg(addr.port().to_string())
        .output()
        .expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("DONE"),
        "{script} failed:\nstdout:\n{stdout}\nstderr:\n{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
    stdout
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
    let (_node, addr) = start("smpp-pipelined", "  window: 64\n");
    for run in 0..20 {
        let mut e = Esme::connect(addr);
        e.bind(&format!("esme{run}"));
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
