//! Node metrics and the Prometheus exporter (`/metrics`, `/health`, `/ready`).
//!
//! Hot-path counters are per core (`CoreMetrics`, one cache-line-aligned block per reactor,
//! `Relaxed` increments, never shared between writers); the exporter sums them when scraped.
//! Node-wide gauges and info (io backend, draining) live in `Metrics`. User metrics from the
//! script `metrics` namespace are appended through `Metrics::set_extra_renderer`.

use std::fmt::Write as _;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// Methods counted by name; anything else is `OTHER`.
pub const METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
    "OTHER",
];

/// Index of a method in [`METHODS`].
pub fn method_index(method: &str) -> usize {
    METHODS
        .iter()
        .position(|m| *m == method)
        .unwrap_or(METHODS.len() - 1)
}

/// Why a message was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum DropReason {
    /// Unparseable and not answerable (a response, or no usable Via).
    Malformed = 0,
    /// A response that matched no transaction and could not be routed statelessly.
    Stray = 1,
    /// A queue to a script worker or another core was full.
    QueueFull = 2,
    /// The script recorded no action.
    NoAction = 3,
    /// Receive buffers ran out.
    NoBuffer = 4,
    /// An ACK that matched no transaction and did not arrive through a Route naming us (we
    /// relay only ACKs for 2xx of dialogs we record-routed; anything else would make the node
    /// an open relay and reflector).
    UnroutedAck = 5,
    /// An ACK whose next hop is a name that did not resolve (RFC 3263), or a relayed request
    /// that could not wait for its lookup (the table of waiting lookups was full).
    UnresolvedAck = 6,
}

const DROP_NAMES: &[&str] = &[
    "malformed",
    "stray",
    "queue_full",
    "no_action",
    "no_buffer",
    "unrouted_ack",
    "unresolved_ack",
];

/// Why a request was answered 503 (with Retry-After) without its script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum ShedReason {
    /// A new INVITE or REGISTER while the core's script queue was deeper than
    /// `tuning.overload_queue_depth` (stateless, before any transaction).
    Overload = 0,
    /// The core's script worker was stuck in a handler (stateless, or for requests that were
    /// waiting for it).
    Stalled = 1,
    /// The script queue was full when the request was handed over.
    QueueFull = 2,
    /// A new INVITE or REGISTER while the reactor was saturated (it did not sleep once in the
    /// last 100 ms; stateless, before any transaction).
    Saturated = 3,
}

const SHED_NAMES: &[&str] = &["overload", "stalled", "queue_full", "saturated"];

/// Why a send towards a next hop failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportCause {
    /// A TCP/TLS connect was refused or failed (or could not be started).
    Connect = 0,
    /// A connection closed or was reset while transactions waited on it.
    Closed = 1,
    /// Writing to a connection failed.
    Write = 2,
    /// No socket for the address family (no UDP listener of that family).
    NoSocket = 3,
}

const TRANSPORT_CAUSES: &[&str] = &["connect", "closed", "write", "no_socket"];

/// Counters written by one reactor only.
#[derive(Debug)]
#[repr(align(64))]
pub struct CoreMetrics {
    /// Requests received, by [`METHODS`] index.
    pub requests: [AtomicU64; 15],
    /// Responses sent or relayed, by status code (100..=699 at index code-100).
    pub responses: Box<[AtomicU64]>,
    /// Malformed messages answered with 400.
    pub malformed_answered: AtomicU64,
    /// Drops by [`DropReason`].
    pub dropped: [AtomicU64; 7],
    /// Transactions created.
    pub transactions: AtomicU64,
    /// Transactions alive now (incremented and decremented by the owner core).
    pub transactions_active: AtomicI64,
    /// Script handler invocations.
    pub script_executions: AtomicU64,
    /// Script handler exceptions (500 Script Error).
    pub script_errors: AtomicU64,
    /// Messages forwarded to another core over the mesh.
    pub mesh_forwards: AtomicU64,
    /// Requests sent over TCP instead of UDP because of their size (`listen.mtu`).
    pub mtu_tcp: AtomicU64,
    /// Transport errors towards a next hop, by [`TransportCause`].
    pub transport_errors: [AtomicU64; 4],
    /// Depth of this core's worker queue at the last loop turn.
    pub queue_depth: AtomicU64,
    /// Response contexts still without a final response (what a drain waits for).
    pub transactions_pending: AtomicI64,
    /// Requests answered 503 with Retry-After without their script, by [`ShedReason`].
    pub shed: [AtomicU64; 4],
    /// Script events that got no answer by their transaction deadline (408 sent).
    pub script_timeouts: AtomicU64,
}

impl Default for CoreMetrics {
    fn default() -> Self {
        Self {
            requests: Default::default(),
            responses: (100..=699).map(|_| AtomicU64::new(0)).collect(),
            malformed_answered: AtomicU64::new(0),
            dropped: Default::default(),
            transactions: AtomicU64::new(0),
            transactions_active: AtomicI64::new(0),
            script_executions: AtomicU64::new(0),
            script_errors: AtomicU64::new(0),
            mesh_forwards: AtomicU64::new(0),
            mtu_tcp: AtomicU64::new(0),
            transport_errors: Default::default(),
            queue_depth: AtomicU64::new(0),
            transactions_pending: AtomicI64::new(0),
            shed: Default::default(),
            script_timeouts: AtomicU64::new(0),
        }
    }
}

impl CoreMetrics {
    /// Count a received request.
    pub fn request(&self, method: &str) {
        self.requests[method_index(method)].fetch_add(1, Ordering::Relaxed);
    }
    /// Count a response sent or relayed.
    pub fn response(&self, code: u16) {
        if let Some(c) = self.responses.get(usize::from(code).wrapping_sub(100)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
    /// Count a drop.
    pub fn dropped(&self, why: DropReason) {
        self.dropped[why as usize].fetch_add(1, Ordering::Relaxed);
    }
}

type ExtraRenderer = Box<dyn Fn(&mut String) + Send + Sync>;
type RegistrationsSource = Box<dyn Fn() -> u64 + Send + Sync>;
type StalledSource = Box<dyn Fn() -> Vec<usize> + Send + Sync>;

/// Node-wide metrics: the per-core blocks plus gauges and info.
pub struct Metrics {
    cores: Vec<Arc<CoreMetrics>>,
    io_backend: Mutex<(String, String)>,
    draining: AtomicBool,
    registrations_source: Mutex<Option<RegistrationsSource>>,
    stalled_source: Mutex<Option<StalledSource>>,
    extra: Mutex<Vec<ExtraRenderer>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("cores", &self.cores.len())
            .finish()
    }
}

impl Metrics {
    /// Metrics for `cores` reactors.
    pub fn new(cores: usize) -> Arc<Self> {
        Arc::new(Self {
            cores: (0..cores)
                .map(|_| Arc::new(CoreMetrics::default()))
                .collect(),
            io_backend: Mutex::new(("unknown".into(), String::new())),
            draining: AtomicBool::new(false),
            registrations_source: Mutex::new(None),
            stalled_source: Mutex::new(None),
            extra: Mutex::new(Vec::new()),
        })
    }
    /// The block core `k` writes.
    pub fn core(&self, k: usize) -> Arc<CoreMetrics> {
        Arc::clone(&self.cores[k % self.cores.len()])
    }
    /// Record which io backend runs and why.
    pub fn set_io_backend(&self, backend: &str, reason: &str) {
        if let Ok(mut g) = self.io_backend.lock() {
            *g = (backend.into(), reason.into());
        }
    }
    /// Enter drain mode (`/ready` answers 503).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
    /// Whether draining.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
    /// Where `siphon_registrations_active` is read at scrape time (the shared registrar).
    pub fn set_registrations_source(&self, f: RegistrationsSource) {
        if let Ok(mut g) = self.registrations_source.lock() {
            *g = Some(f);
        }
    }
    /// Where `/health` learns which cores have a stuck script worker.
    pub fn set_stalled_source(&self, f: StalledSource) {
        if let Ok(mut g) = self.stalled_source.lock() {
            *g = Some(f);
        }
    }
    /// Cores whose script worker is stuck in a handler now.
    pub fn stalled_cores(&self) -> Vec<usize> {
        self.stalled_source
            .lock()
            .ok()
            .and_then(|g| g.as_ref().map(|f| f()))
            .unwrap_or_default()
    }
    /// Transactions alive on all cores.
    pub fn transactions_active(&self) -> i64 {
        self.cores
            .iter()
            .map(|c| c.transactions_active.load(Ordering::Relaxed))
            .sum()
    }
    /// Requests in flight on all cores (no final response yet).
    pub fn transactions_pending(&self) -> i64 {
        self.cores
            .iter()
            .map(|c| c.transactions_pending.load(Ordering::Relaxed))
            .sum()
    }
    /// Append more exposition text at scrape time (script metrics).
    pub fn add_extra_renderer(&self, f: ExtraRenderer) {
        if let Ok(mut g) = self.extra.lock() {
            g.push(f);
        }
    }

    fn sum(&self, f: impl Fn(&CoreMetrics) -> u64) -> u64 {
        self.cores.iter().map(|c| f(c)).sum()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        header(
            &mut o,
            "siphon_requests_total",
            "counter",
            "SIP requests received",
        );
        for (i, m) in METHODS.iter().enumerate() {
            let v = self.sum(|c| load(&c.requests[i]));
            if v > 0 {
                let _ = writeln!(o, "siphon_requests_total{{method=\"{m}\"}} {v}");
            }
        }
        header(
            &mut o,
            "siphon_responses_total",
            "counter",
            "SIP responses sent or relayed",
        );
        for code in 100..=699u16 {
            let v = self.sum(|c| load(&c.responses[usize::from(code - 100)]));
            if v > 0 {
                let _ = writeln!(o, "siphon_responses_total{{code=\"{code}\"}} {v}");
            }
        }
        header(
            &mut o,
            "siphon_malformed_total",
            "counter",
            "Malformed messages answered with 400",
        );
        let _ = writeln!(
            o,
            "siphon_malformed_total {}",
            self.sum(|c| load(&c.malformed_answered))
        );
        header(
            &mut o,
            "siphon_dropped_total",
            "counter",
            "Messages dropped without an answer",
        );
        for (i, n) in DROP_NAMES.iter().enumerate() {
            let v = self.sum(|c| load(&c.dropped[i]));
            let _ = writeln!(o, "siphon_dropped_total{{reason=\"{n}\"}} {v}");
        }
        header(
            &mut o,
            "siphon_transactions_total",
            "counter",
            "Transactions created",
        );
        let _ = writeln!(
            o,
            "siphon_transactions_total {}",
            self.sum(|c| load(&c.transactions))
        );
        header(
            &mut o,
            "siphon_transactions_active",
            "gauge",
            "Transactions alive",
        );
        let active: i64 = self
            .cores
            .iter()
            .map(|c| c.transactions_active.load(Ordering::Relaxed))
            .sum();
        let _ = writeln!(o, "siphon_transactions_active {active}");
        if let Ok(f) = self.registrations_source.lock()
            && let Some(f) = f.as_ref()
        {
            header(
                &mut o,
                "siphon_registrations_active",
                "gauge",
                "AORs with at least one binding",
            );
            let _ = writeln!(o, "siphon_registrations_active {}", f());
        }
        header(
            &mut o,
            "siphon_script_executions_total",
            "counter",
            "Script handler runs",
        );
        let _ = writeln!(
            o,
            "siphon_script_executions_total {}",
            self.sum(|c| load(&c.script_executions))
        );
        header(
            &mut o,
            "siphon_script_errors_total",
            "counter",
            "Script handler exceptions",
        );
        let _ = writeln!(
            o,
            "siphon_script_errors_total {}",
            self.sum(|c| load(&c.script_errors))
        );
        header(
            &mut o,
            "siphon_mesh_forwards_total",
            "counter",
            "Messages forwarded to their owner core",
        );
        let _ = writeln!(
            o,
            "siphon_mesh_forwards_total {}",
            self.sum(|c| load(&c.mesh_forwards))
        );
        header(
            &mut o,
            "siphon_transport_errors_total",
            "counter",
            "Sends to a next hop that failed (the branch fails over or counts as a 503)",
        );
        for (i, n) in TRANSPORT_CAUSES.iter().enumerate() {
            let v = self.sum(|c| load(&c.transport_errors[i]));
            let _ = writeln!(o, "siphon_transport_errors_total{{cause=\"{n}\"}} {v}");
        }
        header(
            &mut o,
            "siphon_mtu_tcp_total",
            "counter",
            "Requests sent over TCP instead of UDP for their size (RFC 3261 18.1.1, listen.mtu)",
        );
        let _ = writeln!(o, "siphon_mtu_tcp_total {}", self.sum(|c| load(&c.mtu_tcp)));
        header(
            &mut o,
            "siphon_queue_depth",
            "gauge",
            "Events waiting in a core's script queue",
        );
        for (k, c) in self.cores.iter().enumerate() {
            let _ = writeln!(
                o,
                "siphon_queue_depth{{core=\"{k}\"}} {}",
                load(&c.queue_depth)
            );
        }
        header(
            &mut o,
            "siphon_shed_total",
            "counter",
            "Requests answered 503 with Retry-After without their script, by reason",
        );
        for (i, n) in SHED_NAMES.iter().enumerate() {
            let v = self.sum(|c| load(&c.shed[i]));
            let _ = writeln!(o, "siphon_shed_total{{reason=\"{n}\"}} {v}");
        }
        header(
            &mut o,
            "siphon_script_timeouts_total",
            "counter",
            "Script events with no answer by transaction.timeout_secs / invite_timeout_secs",
        );
        let _ = writeln!(
            o,
            "siphon_script_timeouts_total {}",
            self.sum(|c| load(&c.script_timeouts))
        );
        header(
            &mut o,
            "siphon_script_stalled",
            "gauge",
            "1 while a core's script worker is stuck in one handler turn",
        );
        let stalled = self.stalled_cores();
        for k in 0..self.cores.len() {
            let _ = writeln!(
                o,
                "siphon_script_stalled{{core=\"{k}\"}} {}",
                u8::from(stalled.contains(&k))
            );
        }
        header(
            &mut o,
            "siphon_io_backend_info",
            "gauge",
            "The io backend in use and why",
        );
        if let Ok(g) = self.io_backend.lock() {
            let _ = writeln!(
                o,
                "siphon_io_backend_info{{backend=\"{}\",reason=\"{}\"}} 1",
                escape(&g.0),
                escape(&g.1)
            );
        }
        header(
            &mut o,
            "siphon_draining",
            "gauge",
            "1 while draining after SIGTERM",
        );
        let _ = writeln!(o, "siphon_draining {}", u8::from(self.is_draining()));
        if let Ok(g) = self.extra.lock() {
            for f in g.iter() {
                f(&mut o);
            }
        }
        o
    }
}

fn header(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Connections the exporter serves at once; more are closed at once (a scrape flood or a
/// slowloris cannot pin more threads than this).
const MAX_EXPORTER_CONNS: usize = 8;
/// Time a client has to send its request head, and to take the answer.
const EXPORTER_IO_DEADLINE: Duration = Duration::from_secs(2);

/// Serve `/metrics` (or `path`), `/health` and `/ready` on `addr`. The accepting thread hands
/// each connection to a short-lived thread (at most `MAX_EXPORTER_CONNS` at once) with an
/// overall deadline, so a client that sends one byte every second cannot block the probes.
pub fn serve(addr: SocketAddr, path: String, metrics: Arc<Metrics>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    let path = Arc::new(path);
    let busy = Arc::new(AtomicU64::new(0));
    thread::Builder::new()
        .name("siphon-metrics".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                if busy.load(Ordering::Acquire) >= MAX_EXPORTER_CONNS as u64 {
                    drop(conn);
                    continue;
                }
                busy.fetch_add(1, Ordering::AcqRel);
                let (p, m, b) = (Arc::clone(&path), Arc::clone(&metrics), Arc::clone(&busy));
                let spawned = thread::Builder::new()
                    .name("siphon-metrics-conn".into())
                    .spawn(move || {
                        let _ = answer(conn, &p, &m);
                        b.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    busy.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
    Ok(bound)
}

/// Read a request head (up to 8 KiB) before `deadline`; None when it did not come in time.
fn read_head(conn: &mut TcpStream, deadline: std::time::Instant) -> Option<String> {
    use std::io::Read;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let left = deadline.checked_duration_since(std::time::Instant::now())?;
        if left.is_zero() || buf.len() > 8192 {
            return None;
        }
        conn.set_read_timeout(Some(left)).ok()?;
        match conn.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn answer(mut conn: TcpStream, path: &str, metrics: &Metrics) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + EXPORTER_IO_DEADLINE;
    let Some(head) = read_head(&mut conn, deadline) else {
        return Ok(());
    };
    let line = head.lines().next().unwrap_or("");
    let target = line.split_whitespace().nth(1).unwrap_or("");
    let target = target.split('?').next().unwrap_or("");
    let (status, ctype, body) = if target == path {
        ("200 OK", "text/plain; version=0.0.4", metrics.render())
    } else if target == "/health" {
        let stalled = metrics.stalled_cores();
        if stalled.is_empty() {
            ("200 OK", "text/plain", "ok\n".to_string())
        } else {
            let cores: Vec<String> = stalled.iter().map(ToString::to_string).collect();
            (
                "503 Service Unavailable",
                "text/plain",
                format!(
                    "stuck: script worker of core {} is stuck in a handler\n",
                    cores.join(", ")
                ),
            )
        }
    } else if target == "/ready" {
        if metrics.is_draining() {
            (
                "503 Service Unavailable",
                "text/plain",
                "draining\n".to_string(),
            )
        } else {
            ("200 OK", "text/plain", "ready\n".to_string())
        }
    } else {
        ("404 Not Found", "text/plain", "not found\n".to_string())
    };
    let _ = conn.set_write_timeout(Some(EXPORTER_IO_DEADLINE));
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn exposition_and_readiness() {
        let m = Metrics::new(2);
        m.core(0).request("INVITE");
        m.core(1).request("INVITE");
        m.core(1).request("FOO");
        m.core(0).response(404);
        m.core(1).dropped(DropReason::Malformed);
        m.set_io_backend("epoll", "io_uring_setup: EPERM");
        m.set_registrations_source(Box::new(|| 3));
        let addr = serve(
            "127.0.0.1:0".parse().unwrap(),
            "/metrics".into(),
            Arc::clone(&m),
        )
        .unwrap();
        let body = get(addr, "/metrics");
        assert!(
            body.contains("siphon_requests_total{method=\"INVITE\"} 2"),
            "{body}"
        );
        assert!(body.contains("siphon_requests_total{method=\"OTHER\"} 1"));
        assert!(body.contains("siphon_responses_total{code=\"404\"} 1"));
        assert!(body.contains("siphon_dropped_total{reason=\"malformed\"} 1"));
        assert!(body.contains("siphon_registrations_active 3"));
        assert!(body.contains(
            "siphon_io_backend_info{backend=\"epoll\",reason=\"io_uring_setup: EPERM\"} 1"
        ));
        assert!(get(addr, "/ready").starts_with("HTTP/1.1 200"));
        m.set_draining();
        assert!(get(addr, "/ready").starts_with("HTTP/1.1 503"));
        assert!(get(addr, "/health").starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
        m.set_stalled_source(Box::new(|| vec![1]));
        let health = get(addr, "/health");
        assert!(health.starts_with("HTTP/1.1 503"), "{health}");
        assert!(health.contains("core 1"), "{health}");
    }

    #[test]
    fn slow_clients_do_not_block_probes() {
        let m = Metrics::new(1);
        let addr = serve("127.0.0.1:0".parse().unwrap(), "/metrics".into(), m).unwrap();
        // Slowloris clients that send part of a head and stall.
        let idle: Vec<TcpStream> = (0..4)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /metr").unwrap();
                s
            })
            .collect();
        assert!(get(addr, "/health").starts_with("HTTP/1.1 200"));
        drop(idle);
    }
}

/// DNS record types counted by [`DnsMetrics`] (the record types RFC 3263 uses).
pub const DNS_TYPES: &[&str] = &["naptr", "srv", "a", "aaaa"];
/// Outcomes of one DNS query.
pub const DNS_OUTCOMES: &[&str] = &["ok", "not_found", "timeout", "failed"];
/// Upper bounds (seconds) of the DNS latency histogram buckets.
pub const DNS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Name-resolution metrics (written by the resolver thread and, for cache hits, by reactors).
#[derive(Debug, Default)]
pub struct DnsMetrics {
    /// Queries sent to a DNS server, by [`DNS_TYPES`] × [`DNS_OUTCOMES`].
    pub queries: [[AtomicU64; 4]; 4],
    /// Questions answered from the cache.
    pub cache_hits: AtomicU64,
    /// Questions that had to be asked.
    pub cache_misses: AtomicU64,
    /// Entries evicted because the cache was full (`dns.cache_entries`).
    pub cache_evictions: AtomicU64,
    /// Entries in the cache.
    pub cache_entries: AtomicU64,
    /// Lookups refused because the resolver's queue or a core's table was full.
    pub rejected: AtomicU64,
    /// Query latency histogram: counts per [`DNS_BUCKETS`] bound, then +Inf.
    pub latency: [AtomicU64; 12],
    /// Sum of query latencies in microseconds.
    pub latency_sum_us: AtomicU64,
}

impl DnsMetrics {
    /// Count one query of `kind` (index in [`DNS_TYPES`]) with `outcome` (index in
    /// [`DNS_OUTCOMES`]) that took `took`.
    pub fn query(&self, kind: usize, outcome: usize, took: Duration) {
        if let Some(c) = self.queries.get(kind).and_then(|k| k.get(outcome)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let secs = took.as_secs_f64();
        let bucket = DNS_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(DNS_BUCKETS.len());
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Append the Prometheus exposition.
    pub fn render(&self, o: &mut String) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        header(
            o,
            "siphon_dns_queries_total",
            "counter",
            "DNS queries sent, by type and outcome",
        );
        for (t, name) in DNS_TYPES.iter().enumerate() {
            for (r, outcome) in DNS_OUTCOMES.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "siphon_dns_queries_total{{type=\"{name}\",outcome=\"{outcome}\"}} {}",
                    load(&self.queries[t][r])
                );
            }
        }
        header(
            o,
            "siphon_dns_cache_hits_total",
            "counter",
            "DNS questions answered from the cache",
        );
        let _ = writeln!(o, "siphon_dns_cache_hits_total {}", load(&self.cache_hits));
        header(
            o,
            "siphon_dns_cache_misses_total",
            "counter",
            "DNS questions asked of a server",
        );
        let _ = writeln!(
            o,
            "siphon_dns_cache_misses_total {}",
            load(&self.cache_misses)
        );
        header(
            o,
            "siphon_dns_cache_evictions_total",
            "counter",
            "DNS cache entries evicted at the size limit",
        );
        let _ = writeln!(
            o,
            "siphon_dns_cache_evictions_total {}",
            load(&self.cache_evictions)
        );
        header(o, "siphon_dns_cache_entries", "gauge", "DNS cache entries");
        let _ = writeln!(o, "siphon_dns_cache_entries {}", load(&self.cache_entries));
        header(
            o,
            "siphon_dns_rejected_total",
            "counter",
            "Lookups refused: resolver queue or waiting table full",
        );
        let _ = writeln!(o, "siphon_dns_rejected_total {}", load(&self.rejected));
        header(
            o,
            "siphon_dns_query_seconds",
            "histogram",
            "DNS query latency",
        );
        let mut cumulative = 0;
        for (i, b) in DNS_BUCKETS.iter().enumerate() {
            cumulative += load(&self.latency[i]);
            let _ = writeln!(
                o,
                "siphon_dns_query_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        cumulative += load(&self.latency[DNS_BUCKETS.len()]);
        let _ = writeln!(
            o,
            "siphon_dns_query_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let sum = load(&self.latency_sum_us) as f64 / 1e6;
        let _ = writeln!(o, "siphon_dns_query_seconds_sum {sum}");
        let _ = writeln!(o, "siphon_dns_query_seconds_count {cumulative}");
    }
}
