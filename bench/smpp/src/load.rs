//! The load generator: upstream's `drive` workload (spec §5) on our codec. Per bind: bind as
//! transceiver, `window` sequential warm-up submits (not measured), then `count` submits with
//! at most `window` in flight. Latency is submit → resp; percentiles are nearest-rank
//! `round(p/100·(n−1))`, as upstream. deliver_sm from the peer is answered.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use siphon_smpp::{
    Bind, Body, CommandId, CommandStatus, MessageIdResp, Pdu, SequenceNumber, SubmitSm, frame_len,
};

/// One run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// The SMPP server under test.
    pub target: SocketAddr,
    /// Number of binds (one thread each); bind `i` uses system_id `{system_id}{i}` when
    /// `binds > 1`.
    pub binds: usize,
    /// In-flight submits per bind.
    pub window: usize,
    /// Measured submits per bind.
    pub count: u64,
    /// system_id (prefix).
    pub system_id: String,
    /// password.
    pub password: String,
    /// short_message length (upstream: 32 `x`).
    pub body_len: usize,
    /// Give up waiting for a response after this long.
    pub timeout: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            target: SocketAddr::from(([127, 0, 0, 1], 2775)),
            binds: 1,
            window: 64,
            count: 100_000,
            system_id: "load".into(),
            password: "load".into(),
            body_len: 32,
            timeout: Duration::from_secs(30),
        }
    }
}

/// The outcome of one bind.
#[derive(Debug, Clone, Default)]
pub struct BindReport {
    /// Successful submits.
    pub ok: u64,
    /// Errors by cause (`ESME_R...` status, `generic_nack`, `timeout`, `closed`, `connect`,
    /// `bind`).
    pub errors: BTreeMap<String, u64>,
    /// Measured phase.
    pub elapsed: Duration,
    /// Latencies (ns) of successful submits.
    pub lat_ns: Vec<u64>,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Successful submits, all binds.
    pub ok: u64,
    /// Errors by cause, all binds.
    pub errors: BTreeMap<String, u64>,
    /// ok ÷ wall time of the slowest bind's measured phase.
    pub rate_wall: f64,
    /// Sum of per-bind rates (upstream's aggregate).
    pub rate_sum: f64,
    /// p50, p90, p99, p999 in milliseconds.
    pub pct_ms: [f64; 4],
}

impl LoadReport {
    /// One JSON object.
    pub fn json(&self, cfg: &LoadConfig) -> String {
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!(
            "{{\"binds\":{},\"window\":{},\"count\":{},\"ok\":{},\"rate_wall\":{:.0},\"rate_sum\":{:.0},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"errors\":{{{}}}}}",
            cfg.binds,
            cfg.window,
            cfg.count,
            self.ok,
            self.rate_wall,
            self.rate_sum,
            self.pct_ms[0],
            self.pct_ms[1],
            self.pct_ms[2],
            self.pct_ms[3],
            errors.join(",")
        )
    }
}

/// Nearest-rank percentile of sorted `v` (upstream's `round(p/100·(n−1))`).
pub fn percentile(v: &[u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)]
}

/// Run `cfg`: one thread per bind, all started together.
pub fn run(cfg: &LoadConfig) -> LoadReport {
    let start = std::sync::Arc::new(std::sync::Barrier::new(cfg.binds));
    let handles: Vec<_> = (0..cfg.binds)
        .map(|i| {
            let cfg = cfg.clone();
            let start = std::sync::Arc::clone(&start);
            std::thread::spawn(move || {
                let sid = if cfg.binds > 1 {
                    format!("{}{i}", cfg.system_id)
                } else {
                    cfg.system_id.clone()
                };
                one_bind(&cfg, &sid, &start)
            })
        })
        .collect();
    let mut out = LoadReport::default();
    let mut lat = Vec::new();
    let mut wall = Duration::ZERO;
    for h in handles {
        let r = h.join().unwrap_or_else(|_| BindReport {
            errors: BTreeMap::from([("panic".to_owned(), 1)]),
            ..BindReport::default()
        });
        out.ok += r.ok;
        for (k, v) in r.errors {
            *out.errors.entry(k).or_default() += v;
        }
        if r.elapsed > Duration::ZERO {
            out.rate_sum += r.ok as f64 / r.elapsed.as_secs_f64();
        }
        wall = wall.max(r.elapsed);
        lat.extend(r.lat_ns);
    }
    if wall > Duration::ZERO {
        out.rate_wall = out.ok as f64 / wall.as_secs_f64();
    }
    lat.sort_unstable();
    for (o, p) in out.pct_ms.iter_mut().zip([50.0, 90.0, 99.0, 99.9]) {
        *o = percentile(&lat, p) as f64 / 1e6;
    }
    out
}

struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    out: Vec<u8>,
    seq: u32,
}

enum Got {
    /// A response: (sequence, status, command).
    Resp(u32, CommandStatus, CommandId),
    Other,
}

impl Conn {
    fn request(&mut self, body: Body<'_>) -> u32 {
        self.seq = self.seq.wrapping_add(1).max(1);
        let _ = Pdu::request(SequenceNumber(self.seq), body).encode(&mut self.out);
        self.seq
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            self.s.write_all(&self.out)?;
            self.out.clear();
        }
        Ok(())
    }

    /// Every complete PDU now buffered (reading once if none); deliver_sm is answered.
    fn read(&mut self, got: &mut Vec<Got>) -> io::Result<()> {
        let mut tmp = [0u8; 65536];
        let n = self.s.read(&mut tmp)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&tmp[..n]);
        let mut at = 0;
        while let Ok(Some(len)) = frame_len(&self.buf[at..], 1 << 20) {
            let frame = &self.buf[at..at + len];
            at += len;
            let Ok(pdu) = Pdu::decode(frame) else {
                got.push(Got::Other);
                continue;
            };
            let id = pdu.command_id();
            if id.is_response() {
                got.push(Got::Resp(pdu.sequence.0, pdu.status, id));
            } else if let Some(resp) = id.response() {
                let body = match resp {
                    CommandId::DeliverSmResp => {
                        Body::DeliverSmResp(MessageIdResp { message_id: b"" })
                    }
                    r => Body::empty(r),
                };
                let _ = Pdu {
                    status: CommandStatus::ESME_ROK,
                    sequence: pdu.sequence,
                    body,
                }
                .encode(&mut self.out);
                got.push(Got::Other);
            }
        }
        self.buf.drain(..at);
        self.flush()
    }
}

fn cause(status: CommandStatus, id: CommandId) -> String {
    if id == CommandId::GenericNack {
        return "generic_nack".into();
    }
    match status.0 {
        0x14 => "ESME_RMSGQFUL".into(),
        0x58 => "ESME_RTHROTTLED".into(),
        0x45 => "ESME_RSUBMITFAIL".into(),
        0x08 => "ESME_RSYSERR".into(),
        s => format!("status_0x{s:08x}"),
    }
}

fn one_bind(cfg: &LoadConfig, system_id: &str, start: &std::sync::Barrier) -> BindReport {
    let mut r = BindReport::default();
    let err = |r: &mut BindReport, k: &str, n: u64| *r.errors.entry(k.to_owned()).or_default() += n;
    let Ok(s) = TcpStream::connect_timeout(&cfg.target, Duration::from_secs(5)) else {
        start.wait();
        err(&mut r, "connect", cfg.count);
        return r;
    };
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(cfg.timeout));
    let mut c = Conn {
        s,
        buf: Vec::new(),
        out: Vec::new(),
        seq: 0,
    };
    let body = vec![b'x'; cfg.body_len];
    let mut got = Vec::new();
    // Bind.
    c.request(Body::BindTransceiver(Bind {
        system_id: system_id.as_bytes(),
        password: cfg.password.as_bytes(),
        interface_version: 0x34,
        ..Bind::default()
    }));
    let bound = c.flush().is_ok()
        && loop {
            got.clear();
            if c.read(&mut got).is_err() {
                break false;
            }
            if let Some(Got::Resp(_, st, _)) = got.iter().find(|g| matches!(g, Got::Resp(..))) {
                break st.is_ok();
            }
        };
    start.wait();
    if !bound {
        err(&mut r, "bind", cfg.count);
        return r;
    }
    let submit = |c: &mut Conn, i: u64| {
        let dest = format!("155501{:02}", 100 + (i % 100));
        c.request(Body::SubmitSm(SubmitSm {
            source_addr_ton: 1,
            source_addr_npi: 1,
            source_addr: b"15550100",
            dest_addr_ton: 1,
            dest_addr_npi: 1,
            destination_addr: dest.as_bytes(),
            short_message: &body,
            ..SubmitSm::default()
        }))
    };
    // Warm-up: `window` sequential submits.
    for i in 0..cfg.window as u64 {
        submit(&mut c, i);
        if c.flush().is_err() {
            err(&mut r, "closed", cfg.count);
            return r;
        }
        loop {
            got.clear();
            if c.read(&mut got).is_err() {
                err(&mut r, "closed", cfg.count);
                return r;
            }
            if got.iter().any(|g| matches!(g, Got::Resp(..))) {
                break;
            }
        }
    }
    let mut inflight: HashMap<u32, Instant> = HashMap::with_capacity(cfg.window * 2);
    r.lat_ns.reserve(cfg.count as usize);
    let mut sent = 0u64;
    let t0 = Instant::now();
    while sent < cfg.count || !inflight.is_empty() {
        while sent < cfg.count && inflight.len() < cfg.window {
            let seq = submit(&mut c, sent);
            inflight.insert(seq, Instant::now());
            sent += 1;
        }
        if c.flush().is_err() {
            err(&mut r, "closed", inflight.len() as u64 + (cfg.count - sent));
            break;
        }
        got.clear();
        match c.read(&mut got) {
            Ok(()) => {}
            Err(e) => {
                let k = if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    "timeout"
                } else {
                    "closed"
                };
                err(&mut r, k, inflight.len() as u64 + (cfg.count - sent));
                break;
            }
        }
        let now = Instant::now();
        for g in &got {
            if let Got::Resp(seq, st, id) = g
                && let Some(at) = inflight.remove(seq)
            {
                if st.is_ok() && *id == CommandId::SubmitSmResp {
                    r.ok += 1;
                    r.lat_ns
                        .push(u64::try_from(now.duration_since(at).as_nanos()).unwrap_or(u64::MAX));
                } else {
                    err(&mut r, &cause(*st, *id), 1);
                }
            }
        }
    }
    r.elapsed = t0.elapsed();
    // Unbind politely.
    c.request(Body::Unbind);
    let _ = c.flush();
    r
}
