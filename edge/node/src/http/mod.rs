//! The HTTP extension (`--features http`, `extensions.http`): a small tokio runtime beside
//! the reactors (DESIGN.md "HTTP") that carries all HTTP I/O.
//!
//! - Clients: one reqwest pool per `clients.<name>`, built before scripts load and shared by
//!   every core; inline clients are cached by their parameters. A script's call arrives from
//!   its worker through the host's [`HttpSink`] and completes on that worker
//!   ([`siphon_script::HttpCompleter`]), in both placements.
//! - Servers ([`server`]): hyper 1.x (h1 and h2 on one socket, rustls with ALPN), routes
//!   matched here with matchit, handlers run on the per-core interpreters.
//!
//! Not here: the script API (scripting/python/siphon/http.py) and the event plumbing
//! (scripting/host/src/http.rs).

pub mod config;
pub mod server;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use siphon_script::{HttpCall, HttpClientSpec, HttpCompleter, HttpReply, HttpSink};

use self::config::{ClientConfig, HttpConfig};

/// Why the HTTP runtime could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The tokio runtime could not be built.
    #[error("http runtime: {0}")]
    Runtime(std::io::Error),
    /// A client's TLS material or settings are unusable.
    #[error("clients.{name}: {message}")]
    Client {
        /// Client name.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// Counters of the extension (exported on `/metrics`).
#[derive(Debug, Default)]
pub struct HttpMetrics {
    /// (route, method, status) → requests answered.
    pub requests: Mutex<HashMap<(String, String, u16), u64>>,
    /// Latency buckets (le seconds) of answered requests, cumulative at render.
    pub latency: [AtomicU64; 8],
    /// Sum of latencies, microseconds.
    pub latency_sum_us: AtomicU64,
    /// (client name, outcome) → calls.
    pub client_calls: Mutex<HashMap<(String, &'static str), u64>>,
    /// Connections closed on a protocol or TLS error (bad input).
    pub conn_errors: AtomicU64,
    /// Requests refused with 503 by the per-core in-flight cap.
    pub shed: AtomicU64,
    /// Handlers cancelled at the request timeout.
    pub timeouts: AtomicU64,
}

/// Upper bounds of the latency histogram, seconds.
pub const LATENCY_BUCKETS: [f64; 8] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0];

impl HttpMetrics {
    fn client(&self, name: &str, outcome: &'static str) {
        if let Ok(mut g) = self.client_calls.lock() {
            *g.entry((name.to_owned(), outcome)).or_default() += 1;
        }
    }

    pub(crate) fn request(&self, route: &str, method: &str, status: u16, took: Duration) {
        if let Ok(mut g) = self.requests.lock() {
            *g.entry((route.to_owned(), method.to_owned(), status))
                .or_default() += 1;
        }
        let s = took.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| s <= *b) {
            self.latency[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_sum_us.fetch_add(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Prometheus text.
    pub fn render(&self, o: &mut String) {
        o.push_str("# TYPE siphon_http_requests_total counter\n");
        let mut total = 0u64;
        if let Ok(g) = self.requests.lock() {
            for ((r, m, s), n) in g.iter() {
                total += n;
                let _ = writeln!(
                    o,
                    "siphon_http_requests_total{{route=\"{r}\",method=\"{m}\",status=\"{s}\"}} {n}"
                );
            }
        }
        o.push_str("# TYPE siphon_http_request_duration_seconds histogram\n");
        let mut cum = 0;
        for (b, c) in LATENCY_BUCKETS.iter().zip(&self.latency) {
            cum += c.load(Ordering::Relaxed);
            let _ = writeln!(
                o,
                "siphon_http_request_duration_seconds_bucket{{le=\"{b}\"}} {cum}"
            );
        }
        let _ = writeln!(
            o,
            "siphon_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {total}\n\
             siphon_http_request_duration_seconds_sum {}\n\
             siphon_http_request_duration_seconds_count {total}",
            self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        o.push_str("# TYPE siphon_http_client_calls_total counter\n");
        if let Ok(g) = self.client_calls.lock() {
            for ((n, outcome), c) in g.iter() {
                let _ = writeln!(
                    o,
                    "siphon_http_client_calls_total{{client=\"{n}\",outcome=\"{outcome}\"}} {c}"
                );
            }
        }
        let _ = writeln!(
            o,
            "# TYPE siphon_http_connection_errors_total counter\nsiphon_http_connection_errors_total {}\n\
             # TYPE siphon_http_shed_total counter\nsiphon_http_shed_total {}\n\
             # TYPE siphon_http_timeouts_total counter\nsiphon_http_timeouts_total {}",
            self.conn_errors.load(Ordering::Relaxed),
            self.shed.load(Ordering::Relaxed),
            self.timeouts.load(Ordering::Relaxed),
        );
    }
}

struct Pool {
    client: reqwest::Client,
    base_url: Option<String>,
    /// HTTP/1.1 requests in flight, at most `pool_size` (`None` for h2, which multiplexes).
    /// Without it a burst on a cold pool opens one connection per request: hyper starts a
    /// connect whenever no idle connection is there at checkout.
    slots: Option<Arc<tokio::sync::Semaphore>>,
    /// How long a request may wait for a slot.
    wait: Duration,
}

impl Pool {
    fn new(
        client: reqwest::Client,
        base_url: Option<String>,
        h2: bool,
        size: usize,
        ms: u64,
    ) -> Self {
        Self {
            client,
            base_url,
            slots: (!h2).then(|| Arc::new(tokio::sync::Semaphore::new(size.max(1)))),
            wait: Duration::from_millis(ms),
        }
    }
}

/// Most inline clients kept (distinct parameter sets); past it the cache starts over.
const INLINE_CACHE: usize = 64;
/// `pool_size` of an inline client.
const INLINE_POOL: usize = 8;

struct Clients {
    named: HashMap<String, Pool>,
    inline: Mutex<HashMap<HttpClientSpec, Arc<Pool>>>,
}

/// The running runtime: clients, and the servers once started.
pub struct HttpRuntime {
    rt: tokio::runtime::Runtime,
    clients: Arc<Clients>,
    /// Counters.
    pub metrics: Arc<HttpMetrics>,
    /// The loaded file.
    pub config: HttpConfig,
    servers: Option<server::Servers>,
}

impl std::fmt::Debug for HttpRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRuntime").finish_non_exhaustive()
    }
}

/// PEM text: the value itself when it holds a PEM block, else the file it names.
fn pem(v: &str) -> Result<Vec<u8>, String> {
    if v.contains("-----BEGIN") {
        return Ok(v.as_bytes().to_vec());
    }
    std::fs::read(v).map_err(|e| format!("`{v}`: {e}"))
}

fn build_client(
    timeout_ms: u64,
    verify: Option<&str>,
    cert: Option<&str>,
    key: Option<&str>,
    pool_size: usize,
    h2: bool,
) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_millis(timeout_ms))
        .pool_max_idle_per_host(pool_size)
        .no_proxy();
    if h2 {
        b = b.http2_prior_knowledge();
    }
    if let Some(v) = verify {
        let bundle = pem(v).map_err(|e| format!("read verify CA: {e}"))?;
        let certs = reqwest::Certificate::from_pem_bundle(&bundle)
            .map_err(|e| format!("read verify CA: {e}"))?;
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if let Some(c) = cert {
        let mut id = pem(c).map_err(|e| format!("parse identity: {e}"))?;
        if let Some(k) = key {
            id.push(b'\n');
            id.extend(pem(k).map_err(|e| format!("parse identity: {e}"))?);
        }
        let ident = reqwest::Identity::from_pem(&id).map_err(|e| format!("parse identity: {e}"))?;
        b = b.identity(ident);
    }
    b.build().map_err(|e| e.to_string())
}

fn named_pool(name: &str, c: &ClientConfig) -> Result<Pool, HttpError> {
    let client = build_client(
        c.timeout_ms,
        c.verify.as_deref(),
        c.cert.as_deref(),
        c.key.as_deref(),
        c.pool_size,
        c.http2_prior_knowledge,
    )
    .map_err(|message| HttpError::Client {
        name: name.to_owned(),
        message,
    })?;
    Ok(Pool::new(
        client,
        c.base_url.clone(),
        c.http2_prior_knowledge,
        c.pool_size,
        c.timeout_ms,
    ))
}

impl HttpRuntime {
    /// Build the runtime (threads pinned to `cpus` when given) and every named client.
    pub fn start(config: HttpConfig, cpus: &[usize]) -> Result<Self, HttpError> {
        let threads = cpus.len().max(1);
        let pins: Arc<Vec<usize>> = Arc::new(cpus.to_vec());
        let next = Arc::new(AtomicU64::new(0));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("siphon-http")
            .enable_all()
            .on_thread_start(move || {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if let Some(cpu) = pins.get(i % pins.len().max(1)) {
                    core_affinity_pin(*cpu);
                }
            })
            .build()
            .map_err(HttpError::Runtime)?;
        let mut named = HashMap::new();
        for (name, c) in &config.clients {
            named.insert(name.clone(), named_pool(name, c)?);
        }
        Ok(Self {
            rt,
            clients: Arc::new(Clients {
                named,
                inline: Mutex::new(HashMap::new()),
            }),
            metrics: Arc::new(HttpMetrics::default()),
            config,
            servers: None,
        })
    }

    /// Where the host sends `http.Client` calls.
    pub fn sink(&self) -> HttpSink {
        let clients = Arc::clone(&self.clients);
        let metrics = Arc::clone(&self.metrics);
        let handle = self.rt.handle().clone();
        Arc::new(move |call: HttpCall, done: HttpCompleter| {
            let clients = Arc::clone(&clients);
            let metrics = Arc::clone(&metrics);
            handle.spawn(async move {
                let label = match &call.client {
                    HttpClientSpec::Named(n) => n.clone(),
                    _ => "inline".to_owned(),
                };
                let r = run_call(&clients, call).await;
                metrics.client(&label, if r.is_ok() { "ok" } else { "error" });
                done.complete(r);
            });
        })
    }

    /// Bind and serve every `servers[]` entry (after the scripts' startup hooks ran).
    pub fn serve(
        &mut self,
        host: siphon_script::HostHandle,
    ) -> Result<Vec<std::net::SocketAddr>, crate::config::ConfigError> {
        let s = server::Servers::start(
            self.rt.handle(),
            &self.config,
            host,
            Arc::clone(&self.metrics),
        )?;
        let addrs = s.addrs.clone();
        self.servers = Some(s);
        Ok(addrs)
    }

    /// Stop accepting, let requests in flight finish (at most `grace`), close.
    pub fn drain(&mut self, grace: Duration) {
        if let Some(s) = self.servers.take() {
            self.rt.block_on(s.drain(grace));
        }
    }
}

fn core_affinity_pin(cpu: usize) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
        tracing::warn!(cpu, "tuning.http_cpus: could not pin an HTTP thread");
    }
}

async fn run_call(clients: &Clients, call: HttpCall) -> Result<HttpReply, String> {
    let pool: Arc<Pool>;
    let p: &Pool = match &call.client {
        HttpClientSpec::Named(n) => clients.named.get(n).ok_or_else(|| {
            format!("no client named '{n}' in the http addon config (clients.{n})")
        })?,
        spec @ HttpClientSpec::Inline {
            base_url,
            verify,
            cert,
            key,
            timeout_ms,
            http2_prior_knowledge,
        } => {
            let cached = clients
                .inline
                .lock()
                .ok()
                .and_then(|g| g.get(spec).cloned());
            pool = match cached {
                Some(p) => p,
                None => {
                    let client = build_client(
                        *timeout_ms,
                        verify.as_deref(),
                        cert.as_deref(),
                        key.as_deref(),
                        INLINE_POOL,
                        *http2_prior_knowledge,
                    )?;
                    let p = Arc::new(Pool::new(
                        client,
                        base_url.clone(),
                        *http2_prior_knowledge,
                        INLINE_POOL,
                        *timeout_ms,
                    ));
                    if let Ok(mut g) = clients.inline.lock() {
                        if g.len() >= INLINE_CACHE {
                            g.clear();
                        }
                        g.insert(spec.clone(), Arc::clone(&p));
                    }
                    p
                }
            };
            &pool
        }
        _ => return Err("request failed: unsupported client".into()),
    };
    let url = match &p.base_url {
        Some(b) => format!("{}{}", b.trim_end_matches('/'), call.path),
        None => call.path.clone(),
    };
    let method = reqwest::Method::from_bytes(call.method.as_bytes())
        .map_err(|e| format!("request failed: {e}"))?;
    let mut rb = p.client.request(method, &url);
    for (k, v) in &call.headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    if let Some(b) = call.body {
        rb = rb.body(b);
    }
    // Held until the body is read, so the connection is back in the pool for the next one.
    let _slot = match &p.slots {
        Some(s) => Some(
            tokio::time::timeout(p.wait, Arc::clone(s).acquire_owned())
                .await
                .map_err(|_| {
                    "request failed: timed out waiting for a pooled connection".to_owned()
                })?
                .map_err(|e| format!("request failed: {e}"))?,
        ),
        None => None,
    };
    let resp = rb
        .send()
        .await
        .map_err(|e| format!("request failed: {}", error_chain(&e)))?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .bytes()
        .await
        .map_err(|e| format!("read body: {}", error_chain(&e)))?;
    // Let hyper put the connection back in the pool before the slot goes to the next request.
    tokio::task::yield_now().await;
    Ok(HttpReply {
        status,
        headers,
        body: body.to_vec(),
    })
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}
