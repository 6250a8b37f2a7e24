//! SMPP peers for the node-level tests (`--features smpp`): a blocking raw ESME on our codec
//! and the in-process SMSC simulator of bench/smpp.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use siphon_bench_smpp::smsc::{Smsc, SmscConfig};
use siphon_smpp::{Bind, Body, CommandId, CommandStatus, Pdu, SequenceNumber, frame_len};

/// Our SMSC simulator on loopback `port`, configured by `tweak`. The port may linger for a
/// moment after a kill: the start is retried for 5 s.
pub fn smsc(port: u16, tweak: impl FnOnce(&mut SmscConfig)) -> Smsc {
    let mut cfg = SmscConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        ..SmscConfig::default()
    };
    tweak(&mut cfg);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Smsc::start(cfg.clone()) {
            Ok(s) => return s,
            Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("simulator: {e}"),
        }
    }
}

/// A blocking raw ESME on our codec.
pub struct Esme {
    /// The connection (for raw bytes: bad framing, pipelined bursts).
    pub s: TcpStream,
    buf: Vec<u8>,
    seq: u32,
}

/// An owned decoded PDU from the node.
#[derive(Debug)]
pub struct Resp {
    pub command: CommandId,
    pub status: CommandStatus,
    pub seq: u32,
    /// The message_id of a submit_sm/submit_multi/data_sm/deliver_sm response.
    pub message_id: String,
    /// deliver_sm's short_message.
    pub text: Vec<u8>,
    /// The whole frame.
    pub raw: Vec<u8>,
}

impl Esme {
    /// Connect to the node's SMPP listener at `addr` (no bind yet).
    pub fn connect(addr: SocketAddr) -> Esme {
        let s = TcpStream::connect(addr).expect("connect");
        // A safety net for a lost answer, not a timing assertion: a loaded CI box can stall
        // a loopback answer for seconds.
        s.set_read_timeout(Some(Duration::from_secs(40)))
            .expect("loopback io");
        Esme {
            s,
            buf: Vec::new(),
            seq: 0,
        }
    }

    /// Connect and bind as transceiver `system_id` with `password`: the ESME and the
    /// bind_resp's status.
    pub fn bind_as(addr: SocketAddr, system_id: &str, password: &str) -> (Esme, CommandStatus) {
        let mut e = Esme::connect(addr);
        e.send(Body::BindTransceiver(Bind {
            system_id: system_id.as_bytes(),
            password: password.as_bytes(),
            interface_version: 0x34,
            ..Bind::default()
        }));
        let r = e.recv().expect("bind_resp");
        (e, r.status)
    }

    /// `body` as the next request's frame (not sent).
    pub fn encode(&mut self, body: Body<'_>) -> Vec<u8> {
        self.seq += 1;
        let mut out = Vec::new();
        Pdu::request(SequenceNumber(self.seq), body)
            .encode(&mut out)
            .expect("encodable");
        out
    }

    /// Send `body` as the next request; its sequence number.
    pub fn send(&mut self, body: Body<'_>) -> u32 {
        let b = self.encode(body);
        self.s.write_all(&b).expect("loopback io");
        self.seq
    }

    /// A bind_transceiver frame as `system_id` (password `pw`), not sent.
    pub fn bind_bytes(&mut self, system_id: &str) -> Vec<u8> {
        self.encode(Body::BindTransceiver(Bind {
            system_id: system_id.as_bytes(),
            password: b"pw",
            interface_version: 0x34,
            ..Bind::default()
        }))
    }

    /// Bind as transceiver `system_id` (password `pw`) on this connection; asserts ESME_ROK.
    pub fn bind(&mut self, system_id: &str) {
        let b = self.bind_bytes(system_id);
        self.s.write_all(&b).expect("loopback io");
        let r = self.recv().expect("bind_resp");
        assert_eq!(r.command, CommandId::BindTransceiverResp);
        assert_eq!(r.status, CommandStatus::ESME_ROK);
    }

    /// The next PDU, or None on EOF/timeout.
    pub fn recv(&mut self) -> Option<Resp> {
        loop {
            if let Ok(Some(n)) = frame_len(&self.buf, 1 << 20) {
                let frame: Vec<u8> = self.buf.drain(..n).collect();
                let pdu = Pdu::decode(&frame).expect("decodable");
                let message_id = match &pdu.body {
                    Body::SubmitSmResp(r) | Body::DeliverSmResp(r) => {
                        String::from_utf8_lossy(r.message_id).into_owned()
                    }
                    Body::DataSmResp(r) => String::from_utf8_lossy(r.message_id).into_owned(),
                    Body::SubmitMultiResp(r) => String::from_utf8_lossy(r.message_id).into_owned(),
                    _ => String::new(),
                };
                let text = match &pdu.body {
                    Body::DeliverSm(d) => d.short_message.to_vec(),
                    _ => Vec::new(),
                };
                return Some(Resp {
                    command: pdu.command_id(),
                    status: pdu.status,
                    seq: pdu.sequence.0,
                    message_id,
                    text,
                    raw: frame.clone(),
                });
            }
            let mut tmp = [0u8; 65536];
            match self.s.read(&mut tmp) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
            }
        }
    }

    /// Answer the node's request `req` with `status` and an empty body.
    pub fn respond(&mut self, req: &Resp, status: CommandStatus) {
        let mut out = Vec::new();
        Pdu {
            status,
            sequence: SequenceNumber(req.seq),
            body: Body::empty_response(req.command).expect("a request"),
        }
        .encode(&mut out)
        .expect("loopback io");
        self.s.write_all(&out).expect("loopback io");
    }
}
