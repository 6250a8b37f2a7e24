//! Starting and stopping a node: config → script host → reactors → exporter, then signals
//! (SIGTERM/SIGINT drain and exit 0, SIGHUP reloads the script).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use siphon_reactor::tls::TlsServer;
use siphon_reactor::{BackendPref, ListenTcp, Runtime, RuntimeHandle, UdpSocketId};
use siphon_script::{Host, HostConfig, LogLevel, ReloadMode};
use siphon_sip::proxy::Interface;
use siphon_sip::transaction::Transport;

use crate::config::{self, Loaded};
use crate::engine::{Engine, Msg, ScriptGuest, Shared};
use crate::metrics::{self, Metrics};

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A config value is unusable at start (located in the file).
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The script host failed (script error, interpreter).
    #[error("script: {0}")]
    Script(String),
    /// The reactors failed (bind, io backend).
    #[error("reactors: {0}")]
    Reactors(String),
    /// The exporter could not bind.
    #[error("metrics listener: {0}")]
    Metrics(std::io::Error),
    /// Signal handling could not be installed.
    #[error("signals: {0}")]
    Signals(std::io::Error),
    /// `smpp.yaml` `store_and_forward.path` could not be opened.
    #[cfg(feature = "smpp")]
    #[error(transparent)]
    SmppStore(#[from] crate::smpp::store::StoreError),
}

fn cpus(l: &Loaded) -> Vec<usize> {
    if let Some(c) = &l.config.tuning.reactor_cpus {
        return c.clone();
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (0..n).collect()
}

fn tls_server(l: &Loaded) -> Result<Option<TlsServer>, StartError> {
    if l.config.listen.tls.is_empty() {
        return Ok(None);
    }
    let Some(t) = &l.config.tls else {
        return Ok(None);
    };
    let read = |p: &Option<std::path::PathBuf>, key: &str| -> Result<Vec<u8>, StartError> {
        let p = p
            .as_ref()
            .ok_or_else(|| l.error_at(&["tls", key], format!("`tls.{key}` is required")))?;
        std::fs::read(p).map_err(|e| {
            StartError::Config(l.error_at(&["tls", key], format!("`{}`: {e}", p.display())))
        })
    };
    let cert = read(&t.certificate, "certificate")?;
    let key = read(&t.private_key, "private_key")?;
    let ca = if t.verify_client {
        Some(read(&t.client_ca, "client_ca")?)
    } else {
        None
    };
    let server = TlsServer::from_pem(&cert, &key, ca.as_deref())
        .map_err(|e| StartError::Config(l.error_at(&["tls", "certificate"], e.to_string())))?;
    for s in &t.certificates {
        let c = std::fs::read(&s.certificate)
            .map_err(|e| StartError::Config(l.error_at(&["tls", "certificates"], e.to_string())))?;
        let k = std::fs::read(&s.private_key)
            .map_err(|e| StartError::Config(l.error_at(&["tls", "certificates"], e.to_string())))?;
        for name in &s.server_names {
            server.add_sni(name, &c, &k).map_err(|e| {
                StartError::Config(l.error_at(&["tls", "certificates"], e.to_string()))
            })?;
        }
    }
    Ok(Some(server))
}

/// Outbound TLS: trust `tls.client_ca` (our extension; upstream has no outbound trust setting)
/// and present `tls.client_certificate`/`client_private_key` when set.
fn tls_client(l: &Loaded) -> Result<Option<siphon_reactor::tls::TlsClient>, StartError> {
    let Some(t) = &l.config.tls else {
        return Ok(None);
    };
    let Some(ca) = &t.client_ca else {
        return Ok(None);
    };
    let located = |key: &str, m: String| StartError::Config(l.error_at(&["tls", key], m));
    let roots =
        std::fs::read(ca).map_err(|e| located("client_ca", format!("`{}`: {e}", ca.display())))?;
    let pair = match (&t.client_certificate, &t.client_private_key) {
        (Some(c), Some(k)) => Some((
            std::fs::read(c).map_err(|e| located("client_certificate", e.to_string()))?,
            std::fs::read(k).map_err(|e| located("client_private_key", e.to_string()))?,
        )),
        _ => None,
    };
    siphon_reactor::tls::TlsClient::from_pem(
        &roots,
        pair.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
    )
    .map(Some)
    .map_err(|e| located("client_ca", e.to_string()))
}

fn log_sink() -> siphon_script::LogSink {
    Arc::new(|lvl, worker, msg| match lvl {
        LogLevel::Debug => tracing::debug!(worker, "{msg}"),
        LogLevel::Info => tracing::info!(worker, "{msg}"),
        LogLevel::Warn => tracing::warn!(worker, "{msg}"),
        _ => tracing::error!(worker, "{msg}"),
    })
}

fn advertised(l: &Loaded, addr: SocketAddr, advertise: Option<&str>) -> SocketAddr {
    let host = advertise.or(l.config.advertised_address.as_deref());
    match host.and_then(|h| h.parse::<std::net::IpAddr>().ok()) {
        Some(ip) => SocketAddr::new(ip, addr.port()),
        None => addr,
    }
}

/// Our own SIP addresses as `host:port`: every listen address, and each with its advertised
/// host (per listener, else `advertised_address`) in place of the bound one.
fn local_addrs(c: &config::Config) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let entries = c
        .listen
        .udp
        .iter()
        .chain(&c.listen.tcp)
        .chain(&c.listen.tls);
    for e in entries {
        let addr = e.address().to_string();
        let port = addr.rsplit_once(':').map(|(_, p)| p.to_string());
        let hosts = [e.advertise(), c.advertised_address.as_deref()];
        for h in hosts.into_iter().flatten() {
            if let Some(p) = &port {
                out.push(format!("{h}:{p}"));
            }
        }
        out.push(addr);
    }
    out.sort();
    out.dedup();
    out
}

/// Listen and advertised addresses (`listen.*`, their `advertise`, `advertised_address`):
/// with `domain.local`, the hosts a relaxed digest `uri` directive may name. Wildcard binds
/// name no host and are left out.
fn own_addresses(c: &config::Config) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let entries = c
        .listen
        .udp
        .iter()
        .chain(&c.listen.tcp)
        .chain(&c.listen.tls);
    for e in entries {
        if let Ok(a) = e.address().parse::<SocketAddr>()
            && !a.ip().is_unspecified()
        {
            out.push(a.ip().to_string());
        }
        out.extend(e.advertise().map(str::to_owned));
    }
    out.extend(c.advertised_address.clone());
    out.sort();
    out.dedup();
    out
}

/// The resolver thread (`dns:`), posting answers to the owning core over the mesh; its
/// metrics join the exposition.
fn start_dns(
    l: &Loaded,
    handle_cell: &Arc<OnceLock<RuntimeHandle<Msg>>>,
    metrics: &Arc<Metrics>,
) -> Result<Arc<crate::dns::Dns>, StartError> {
    let c = &l.config.dns;
    let mut servers = Vec::new();
    for s in &c.servers {
        let addr = s
            .parse::<SocketAddr>()
            .or_else(|_| {
                s.parse::<std::net::IpAddr>()
                    .map(|ip| SocketAddr::new(ip, 53))
            })
            .map_err(|_| l.error_at(&["dns", "servers"], format!("`{s}` is not ip:port")))?;
        servers.push(addr);
    }
    let mut supported = vec![Transport::Udp, Transport::Tcp];
    if l.config.tls.is_some() {
        supported.push(Transport::Tls);
    }
    let config = crate::dns::DnsConfig {
        servers,
        timeout: Duration::from_millis(c.timeout_ms.max(1)),
        attempts: c.attempts.max(1),
        cache_entries: c.cache_entries,
    };
    let dm = Arc::new(metrics::DnsMetrics::default());
    let rendered = Arc::clone(&dm);
    metrics.add_extra_renderer(Box::new(move |o| rendered.render(o)));
    let cell = Arc::clone(handle_cell);
    crate::dns::Dns::start(
        config,
        supported,
        dm,
        Box::new(move |core, r| {
            if let Some(h) = cell.get() {
                let _ = h.send(core, Msg::Resolved(r));
            }
        }),
    )
    .map_err(|e| StartError::Reactors(e.to_string()))
}

/// `extensions.smpp`: load `smpp.yaml` (a bad file stops the start) and add its listener to
/// the reactors' TCP listeners (one reuseport socket per core).
#[cfg(feature = "smpp")]
fn smpp_listener(
    l: &Loaded,
    rc: &mut siphon_reactor::Config,
    metrics: &Arc<Metrics>,
) -> Result<Option<Arc<crate::smpp::SmppShared>>, StartError> {
    let Some(path) = l.config.extensions.get("smpp") else {
        return Ok(None);
    };
    let cfg = crate::smpp::config::load(path)?;
    for w in &cfg.warnings {
        tracing::warn!("{}:{}: {}", cfg.path.display(), w.line, w.message);
    }
    if !cfg.listen && cfg.binds.is_empty() {
        return Ok(None);
    }
    let bind_tls = crate::smpp::binds::tls_clients(&cfg)?;
    let listener = if cfg.listen {
        Some(smpp_tcp(&cfg, rc)?)
    } else {
        None
    };
    let m = Arc::new(crate::smpp::SmppMetrics::default());
    m.window_size
        .store(cfg.server.window as u64, Ordering::Relaxed);
    let mm = Arc::clone(&m);
    metrics.add_extra_renderer(Box::new(move |o| mm.render(o)));
    // Loaded before the reactors start: queued messages and receipts from the last run.
    let store = match &cfg.store {
        Some(sc) => {
            let st = Arc::new(crate::smpp::store::Store::open(sc.clone())?);
            let sm = Arc::clone(&st);
            metrics.add_extra_renderer(Box::new(move |o| sm.metrics.render(o)));
            Some(st)
        }
        None => None,
    };
    Ok(Some(Arc::new(crate::smpp::SmppShared {
        config: cfg,
        listener,
        bind_tls,
        metrics: m,
        store,
    })))
}

/// The SMPP listener's reactor TCP listener.
#[cfg(feature = "smpp")]
fn smpp_tcp(
    cfg: &crate::smpp::SmppConfig,
    rc: &mut siphon_reactor::Config,
) -> Result<siphon_reactor::ListenerId, StartError> {
    let addr = cfg.listen_addr()?;
    let tls = match &cfg.server.tls {
        Some(t) => Some(
            TlsServer::from_files(&t.cert_path, &t.key_path, t.ca_path.as_deref()).map_err(
                |e| {
                    StartError::Config(config::ConfigError::At {
                        path: cfg.path.clone(),
                        line: 0,
                        message: format!("server.tls: {e}"),
                    })
                },
            )?,
        ),
        None => None,
    };
    let listener = siphon_reactor::ListenerId(u32::try_from(rc.tcp.len()).unwrap_or(u32::MAX));
    rc.tcp.push(ListenTcp { addr, tls });
    Ok(listener)
}

/// Issue 17's exposition (security counters, every `siphon_limit_hits_total` row, connection
/// gauges) and the once-a-second sweep of the security table.
fn guard_metrics(
    metrics: &Arc<Metrics>,
    security: &Arc<crate::security::Security>,
    limits: &Arc<crate::limits::NodeLimits>,
    host: &Host,
    handle_cell: &Arc<OnceLock<RuntimeHandle<Msg>>>,
) {
    use std::fmt::Write as _;
    let (sec, lim, hh, cell) = (
        Arc::clone(security),
        Arc::clone(limits),
        host.handle(),
        Arc::clone(handle_cell),
    );
    metrics.add_extra_renderer(Box::new(move |o| {
        sec.render(o);
        lim.counters.render(o);
        hh.render_limits_rows(o);
        let Some(h) = cell.get() else { return };
        let sum = |f: fn(&siphon_reactor::ReactorMetrics) -> &std::sync::atomic::AtomicU64| {
            (0..h.cores())
                .filter_map(|c| h.metrics(c))
                .map(|m| f(m).load(Ordering::Relaxed))
                .sum::<u64>()
        };
        for (limit, v) in [
            ("connections", sum(|m| &m.tcp_refused)),
            ("connections_per_source", sum(|m| &m.tcp_refused_per_source)),
            ("tls_handshakes", sum(|m| &m.tls_handshakes_refused)),
            ("tls_handshake_timeout", sum(|m| &m.tls_handshake_timeouts)),
            ("idle_timeout", sum(|m| &m.tcp_idle_closed)),
        ] {
            let _ = writeln!(o, "siphon_limit_hits_total{{limit=\"{limit}\"}} {v}");
        }
        hh.render_limits_gauges(o);
        let (open, handshakes) = h.connections();
        let _ = writeln!(
            o,
            "# HELP siphon_connections_active Accepted TCP/TLS connections open\n\
             # TYPE siphon_connections_active gauge\nsiphon_connections_active {open}\n\
             # HELP siphon_tls_handshakes_active Accepted TLS connections in their handshake\n\
             # TYPE siphon_tls_handshakes_active gauge\nsiphon_tls_handshakes_active {handshakes}"
        );
    }));
    if security.active() {
        let weak = Arc::downgrade(security);
        let _ = std::thread::Builder::new()
            .name("siphon-security".into())
            .spawn(move || {
                while let Some(s) = weak.upgrade() {
                    s.sweep(Instant::now());
                    drop(s);
                    std::thread::sleep(Duration::from_secs(1));
                }
            });
    }
}

/// A running node.
pub struct Node {
    runtime: Option<Runtime<Msg>>,
    host: Option<Host>,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    drain_secs: u64,
    /// Bound UDP addresses (port 0 resolved).
    pub udp: Vec<SocketAddr>,
    /// Bound TCP/TLS addresses.
    pub tcp: Vec<SocketAddr>,
    /// Bound exporter address.
    pub metrics_addr: Option<SocketAddr>,
    /// Bound SMPP listener address.
    #[cfg(feature = "smpp")]
    pub smpp_addr: Option<SocketAddr>,
    /// The HTTP extension's runtime.
    #[cfg(feature = "http")]
    http: Option<crate::http::HttpRuntime>,
    /// Bound HTTP listener addresses, in `servers[]` order.
    #[cfg(feature = "http")]
    pub http_addrs: Vec<SocketAddr>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("udp", &self.udp)
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

/// `registrar.backend` as the host takes it (`registrar.local.path` is already resolved
/// against the config file's directory).
fn state_backend(l: &Loaded) -> siphon_script::state::RegistrarBackend {
    use siphon_script::state::{RedisSettings, RegistrarBackend as B};
    let r = &l.config.registrar;
    match (r.backend, &r.local, &r.redis) {
        (config::RegistrarBackend::Local, Some(local), _) => B::Local {
            path: local.path.clone(),
            commit_timeout: Duration::from_millis(local.commit_timeout_ms.max(1)),
        },
        (config::RegistrarBackend::Redis, _, Some(rc)) => {
            let mut s = RedisSettings::new(&rc.url);
            s.key_prefix = rc.key_prefix.clone();
            s.ttl_slack_secs = rc.ttl_slack_secs;
            s.read_timeout = Duration::from_millis(rc.read_timeout_ms.max(1));
            s.queue_cap = rc.queue_cap;
            B::Redis(s)
        }
        _ => B::Memory,
    }
}

/// `cache:` entries as the host takes them.
fn cache_specs(c: &config::Config) -> Vec<siphon_script::state::CacheSpec> {
    c.cache
        .iter()
        .flatten()
        .map(|e| siphon_script::state::CacheSpec {
            name: e.name.clone(),
            url: e.url.clone(),
            local_ttl: e.local_ttl_secs.map(Duration::from_secs),
            local_max_entries: e.local_max_entries.unwrap_or(10_000),
            read_timeout: Duration::from_millis(e.read_timeout_ms.max(1)),
            queue_cap: e.queue_cap,
        })
        .collect()
}

impl Node {
    /// Start everything the config describes.
    pub fn start(l: &Loaded) -> Result<Self, StartError> {
        let c = &l.config;
        let cpus = cpus(l);
        let cores = cpus.len();
        let metrics = Metrics::new(cores);

        // Script host first: a script that does not compile stops the start.
        let handle_cell: Arc<OnceLock<RuntimeHandle<Msg>>> = Arc::new(OnceLock::new());
        let bell_cell = Arc::clone(&handle_cell);
        let mut hc = HostConfig::new(cores, c.script.path.clone());
        hc.cpus = c.tuning.script_cpus.clone().unwrap_or_else(|| cpus.clone());
        hc.spin = worker_spin(&hc.cpus, &cpus, hc.spin);
        hc.include_paths = c.script.include_paths.clone();
        hc.reload = match c.script.reload {
            config::Reload::Auto => ReloadMode::Auto,
            config::Reload::Sighup => ReloadMode::Sighup,
        };
        if let Some(q) = c.tuning.queue_capacity.or(c.script.executor_queue_capacity) {
            hc.queue_capacity = q;
        }
        hc.local_domains = c.domain.local.clone();
        hc.local_addrs = local_addrs(c);
        hc.auth_realm = c
            .auth
            .realm
            .clone()
            .or_else(|| c.domain.local.first().cloned())
            .unwrap_or_else(|| "siphon".into());
        hc.auth_users = c
            .auth
            .users
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<HashMap<_, _>>();
        hc.auth_uri_check = match c.auth.digest_uri_check {
            config::DigestUriCheck::Relaxed => siphon_sip::auth::DigestUriCheck::Relaxed,
            config::DigestUriCheck::Strict => siphon_sip::auth::DigestUriCheck::Strict,
            config::DigestUriCheck::Off => siphon_sip::auth::DigestUriCheck::Off,
        };
        hc.auth_algorithms = config::digest_algorithms(&c.auth.algorithms).unwrap_or_default();
        hc.auth_udp_challenge = match c.auth.udp_challenge {
            config::UdpChallenge::One => siphon_sip::auth::Offer::One,
            config::UdpChallenge::All => siphon_sip::auth::Offer::All,
        };
        hc.own_addresses = own_addresses(c);
        hc.registrar.default_expires = c.registrar.default_expires;
        hc.registrar.max_expires = c.registrar.max_expires;
        hc.registrar.min_expires = c.registrar.min_expires;
        hc.registrar.max_contacts = c.registrar.max_contacts as usize;
        hc.registrar.enforce_auth_aor_match = c.registrar.enforce_auth_aor_match;
        hc.registrar_backend = state_backend(l);
        hc.caches = cache_specs(c);
        hc.cache_names = hc.caches.iter().map(|s| s.name.clone()).collect();
        if hc.cache_names.is_empty() {
            hc.cache_names.push("default".into());
        }
        hc.auth_nonce_secret = c.auth.nonce_secret.clone();
        hc.auth_nonce_ttl = Some(Duration::from_secs(c.auth.nonce_ttl_secs.max(1)));
        if let Some(doc) = &c.script_config {
            hc.script_config = serde_json::to_value(doc).unwrap_or_default();
        }
        hc.log = log_sink();
        hc.idle_hook = Some(crate::alloc::release_thread_memory);
        hc.limits = c.limits.host();
        let security = Arc::new(crate::security::Security::new(&c.security));
        let observer = Arc::clone(&security);
        hc.auth_observer = Some(Arc::new(move |source, reliable, accepted| {
            let signal = if accepted {
                crate::security::AuthSignal::Success
            } else {
                crate::security::AuthSignal::Failure
            };
            observer.auth_signal(source.ip(), reliable, signal, Instant::now());
        }));
        // Inline placement needs one interpreter per core (Python >= 3.12).
        let inline = c.tuning.script_placement == config::ScriptPlacement::Inline
            && siphon_script::python_version() >= "3.12";
        if c.tuning.script_placement == config::ScriptPlacement::Inline && !inline {
            tracing::info!(
                python = siphon_script::python_version(),
                "script placement inline (the default) needs Python >= 3.12 (one interpreter per \
                 core); scripts run on worker threads"
            );
        }
        hc.inline = inline;
        let hc_shed_after =
            Duration::from_millis(c.script.handler_stall_shed_ms.unwrap_or(200).max(1));
        hc.stall = siphon_script::StallConfig {
            shed_after: hc_shed_after,
            abort_after: match c.script.handler_stall_abort_secs {
                Some(0) => None,
                Some(n) => Some(Duration::from_secs(n)),
                None => Some(Duration::from_secs(2)),
            },
        };
        // A stalled inline worker's core: its standby thread runs the reactor meanwhile.
        let rescue_cell = Arc::clone(&handle_cell);
        hc.on_stall = Some(Arc::new(move |core| {
            if let Some(h) = rescue_cell.get() {
                h.rescue(core);
            }
        }));
        hc.doorbell = Some(Arc::new(move |core| {
            if let Some(h) = bell_cell.get() {
                // usize::MAX: a script queued a request to originate; core 0 sends them.
                let _ = if core == usize::MAX {
                    h.send(0, Msg::Outbound)
                } else {
                    h.send(core, Msg::Wake)
                };
            }
        }));
        // `siphon.smpp._config`; a bad file is reported (and stops the start) further down.
        #[cfg(feature = "smpp")]
        if let Some(Ok(sc)) = c
            .extensions
            .get("smpp")
            .map(|p| crate::smpp::config::load(p))
        {
            hc.smpp_config = sc.script_view();
        }
        // HTTP: named clients exist before scripts load (a module-level
        // `http.Client("api")` works); listeners bind after the startup hooks ran.
        #[cfg(feature = "http")]
        let mut http = match c.extensions.get("http") {
            Some(p) => {
                let hcfg = crate::http::config::load(p)?;
                for w in &hcfg.warnings {
                    tracing::warn!("{}:{}: {}", hcfg.path.display(), w.line, w.message);
                }
                hc.http_config = hcfg.script_view();
                let path = hcfg.path.clone();
                let rt = crate::http::HttpRuntime::start(
                    hcfg,
                    c.tuning.http_cpus.as_deref().unwrap_or(&[]),
                )
                .map_err(|e| config::ConfigError::At {
                    path,
                    line: 0,
                    message: e.to_string(),
                })?;
                hc.http_sink = Some(rt.sink());
                Some(rt)
            }
            None => None,
        };
        let host = Host::start(hc).map_err(|e| StartError::Script(e.to_string()))?;

        tracing::info!(python = siphon_script::python_version(), mode = ?host.mode(), "script host started");

        // Reactors.
        let mut rc = siphon_reactor::Config {
            cpus: cpus.clone(),
            backend: match c.tuning.io_backend {
                config::IoBackend::Auto => BackendPref::Auto,
                config::IoBackend::Uring => BackendPref::Uring,
                config::IoBackend::Epoll => BackendPref::Epoll,
            },
            steering: match c.tuning.steering {
                config::Steering::Branch => {
                    siphon_reactor::Steering::Program(siphon_sip::proxy::steering_program().into())
                }
                config::Steering::Hash => siphon_reactor::Steering::Hash,
                config::Steering::IncomingCpu => siphon_reactor::Steering::IncomingCpu,
                config::Steering::Cbpf => siphon_reactor::Steering::Cbpf,
            },
            limits: c.limits.reactor(),
            ..Default::default()
        };
        if let Some(n) = c.tuning.ring_entries {
            rc.ring_entries = n;
        }
        if let Some(n) = c.tuning.buffer_count {
            rc.udp_buffers = u16::try_from(n.next_power_of_two()).unwrap_or(u16::MAX / 2 + 1);
        }
        if let Some(n) = c.tuning.buffer_size {
            rc.udp_buffer_size = n;
        }
        if let Some(q) = c.tuning.queue_capacity {
            rc.mesh_capacity = q;
        }
        let mut interfaces = Vec::new();
        let mut udp_v4 = None;
        let mut udp_v6 = None;
        for e in &c.listen.udp {
            let addr: SocketAddr = e.address().parse().map_err(|_| {
                l.error_at(
                    &["listen", "udp"],
                    format!("`{}` is not ip:port", e.address()),
                )
            })?;
            let id = UdpSocketId(u32::try_from(rc.udp.len()).unwrap_or(0));
            if addr.is_ipv4() {
                udp_v4.get_or_insert(id);
            } else {
                udp_v6.get_or_insert(id);
            }
            rc.udp.push(addr);
        }
        for e in &c.listen.tcp {
            let addr: SocketAddr = e.address().parse().map_err(|_| {
                l.error_at(
                    &["listen", "tcp"],
                    format!("`{}` is not ip:port", e.address()),
                )
            })?;
            rc.tcp.push(ListenTcp { addr, tls: None });
        }
        let tls = tls_server(l)?;
        for e in &c.listen.tls {
            let addr: SocketAddr = e.address().parse().map_err(|_| {
                l.error_at(
                    &["listen", "tls"],
                    format!("`{}` is not ip:port", e.address()),
                )
            })?;
            rc.tcp.push(ListenTcp {
                addr,
                tls: tls.clone(),
            });
        }
        #[cfg(feature = "smpp")]
        let smpp = smpp_listener(l, &mut rc, &metrics)?;
        // Interfaces are known only after binding (port 0); build them from the config now
        // and fix ports below when the runtime reports them.
        let shared_slot: Arc<OnceLock<Arc<Shared>>> = Arc::new(OnceLock::new());
        let factory_slot = Arc::clone(&shared_slot);
        // The stall threshold the host's watchdog uses; a guest turn shorter than half of it
        // is never handed over, whatever calls `rescue`.
        rc.handover_after = hc_shed_after / 2;
        let engine_for = move |core: usize| {
            let shared = factory_slot.get().cloned().unwrap_or_else(|| {
                // The runtime builds handlers on its threads after `start` returns the bound
                // addresses; they wait here for the shared state to be published.
                loop {
                    if let Some(s) = factory_slot.get() {
                        break Arc::clone(s);
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
            Engine::new(core, shared)
        };
        let runtime = if inline {
            Runtime::start_with_guests(rc, move |core| {
                let engine = engine_for(core);
                let guest = match engine.shared().host.inline_worker(core) {
                    Ok(w) => Some(Box::new(ScriptGuest(w)) as Box<dyn siphon_reactor::Guest>),
                    Err(e) => {
                        tracing::error!(core, error = %e, "inline script worker failed");
                        None
                    }
                };
                (engine, guest)
            })
        } else {
            Runtime::start(rc, engine_for)
        }
        .map_err(|e| StartError::Reactors(e.to_string()))?;
        let udp = runtime.udp_addrs().to_vec();
        let tcp = runtime.tcp_addrs().to_vec();
        for (a, e) in udp.iter().zip(&c.listen.udp) {
            interfaces.push(Interface {
                addr: advertised(l, *a, e.advertise()),
                transport: Transport::Udp,
            });
        }
        for (a, e) in tcp.iter().zip(c.listen.tcp.iter()) {
            interfaces.push(Interface {
                addr: advertised(l, *a, e.advertise()),
                transport: Transport::Tcp,
            });
        }
        for (a, e) in tcp.iter().skip(c.listen.tcp.len()).zip(c.listen.tls.iter()) {
            interfaces.push(Interface {
                addr: advertised(l, *a, e.advertise()),
                transport: Transport::Tls,
            });
        }
        let info = runtime.info().clone();
        metrics.set_io_backend(info.backend.as_str(), &info.reason);
        if info.fell_back {
            tracing::warn!(backend = info.backend.as_str(), reason = %info.reason, "io_uring unavailable: running the epoll backend");
        }
        let mut domains = c.domain.local.clone();
        if let Some(a) = &c.advertised_address {
            domains.push(a.clone());
        }
        let t = &c.transaction;
        let mut txc = siphon_sip::transaction::Config::default();
        txc.timers.t1 = Duration::from_millis(t.t1_ms);
        txc.timers.t2 = Duration::from_millis(t.t2_ms);
        txc.timers.t4 = Duration::from_millis(t.t4_ms);
        txc.send_trying = t.auto_emit_100_trying;
        txc.trying_delay = Duration::from_millis(t.auto_emit_100_trying_delay_ms);
        txc.max_lingering = c.limits.max_lingering_transactions_per_core;
        let dns = start_dns(l, &handle_cell, &metrics)?;
        let node_limits = Arc::new(crate::limits::NodeLimits::new(&c.limits));
        let shared = Arc::new(Shared {
            host: host.handle(),
            metrics: Arc::clone(&metrics),
            interfaces,
            domains,
            udp_mtu: c
                .listen
                .mtu
                .map_or(siphon_sip::proxy::DEFAULT_UDP_MTU, |m| m as usize),
            transactions: txc,
            udp_v4,
            udp_v6,
            draining: std::sync::atomic::AtomicBool::new(false),
            tls_client: tls_client(l)?,
            dns,
            security: Arc::clone(&security),
            limits: Arc::clone(&node_limits),
            faults: crate::engine::FaultConfig {
                shed_depth: match c.tuning.overload_queue_depth {
                    Some(0) => usize::MAX,
                    Some(n) => n,
                    None => 256,
                },
                shed_delay: Duration::from_millis(c.tuning.overload_queue_delay_ms.unwrap_or(50)),
                retry_after_secs: c.tuning.overload_retry_after_secs.unwrap_or(2),
                shed_on_saturation: c.tuning.overload_shed_on_saturation.unwrap_or(true),
                timeout: Duration::from_secs(t.timeout_secs.max(1)),
                invite_timeout: Duration::from_secs(t.invite_timeout_secs.max(1)),
            },
            #[cfg(feature = "smpp")]
            smpp: smpp.clone(),
        });
        guard_metrics(&metrics, &security, &node_limits, &host, &handle_cell);
        let _ = shared_slot.set(Arc::clone(&shared));
        let _ = handle_cell.set(runtime.handle());
        let hh = host.handle();
        metrics.add_extra_renderer(Box::new(move |o| o.push_str(&hh.render_metrics())));
        let hh = host.handle();
        metrics.set_registrations_source(Box::new(move || hh.registrar().aor_count() as u64));
        let hh = host.handle();
        metrics.set_stalled_source(Box::new(move || hh.stalled_cores()));
        let rh = runtime.handle();
        metrics.add_extra_renderer(Box::new(move |o| render_reactor(&rh, o)));

        let metrics_addr = match &c.metrics.prometheus {
            Some(p) => {
                let addr: SocketAddr = p
                    .listen
                    .parse()
                    .map_err(|_| l.error_at(&["metrics", "prometheus", "listen"], "not ip:port"))?;
                Some(
                    metrics::serve(addr, p.path.clone(), Arc::clone(&metrics))
                        .map_err(StartError::Metrics)?,
                )
            }
            None => None,
        };
        tracing::info!(
            ?udp,
            ?tcp,
            ?metrics_addr,
            cores,
            backend = info.backend.as_str(),
            "siphon is serving"
        );
        // HTTP listeners bind once the scripts loaded (inline placement loads them on the
        // reactor threads): core 0 published its routes and every core's startup hooks ran.
        #[cfg(feature = "http")]
        let http_addrs = match http.as_mut() {
            Some(rt) => {
                let m = Arc::clone(&rt.metrics);
                metrics.add_extra_renderer(Box::new(move |o| m.render(o)));
                let hh = host.handle();
                let until = Instant::now() + Duration::from_secs(30);
                while (hh.http_routes().0 == 0 || hh.http_started() < hh.workers())
                    && Instant::now() < until
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                let a = rt.serve(hh)?;
                if !a.is_empty() {
                    tracing::info!(?a, "HTTP listeners serving");
                }
                a
            }
            None => Vec::new(),
        };
        #[cfg(feature = "smpp")]
        let smpp_addr = smpp
            .as_ref()
            .and_then(|s| s.listener)
            .and_then(|l| tcp.get(l.0 as usize).copied());
        #[cfg(feature = "smpp")]
        if let Some(a) = smpp_addr {
            tracing::info!(smpp = %a, "SMPP listener serving");
        }
        Ok(Self {
            #[cfg(feature = "http")]
            http,
            #[cfg(feature = "http")]
            http_addrs,
            #[cfg(feature = "smpp")]
            smpp_addr,
            runtime: Some(runtime),
            host: Some(host),
            shared,
            metrics,
            drain_secs: c.server.drain_secs,
            udp,
            tcp,
            metrics_addr,
        })
    }

    /// Reload the script (SIGHUP).
    pub fn reload(&self) {
        if let Some(h) = &self.host {
            let generation = h.handle().reload();
            tracing::info!(generation, "script reload requested");
        }
        #[cfg(feature = "smpp")]
        self.reload_smpp_binds();
    }

    /// SIGHUP: read `smpp.yaml` again and hand every core the new `binds:` (added ones bind,
    /// removed ones unbind, changed ones reconnect, the rest are untouched). A bad file is
    /// reported and changes nothing; the listener and `server:` keep their start-up settings.
    #[cfg(feature = "smpp")]
    fn reload_smpp_binds(&self) {
        let (Some(rt), Some(smpp)) = (&self.runtime, &self.shared.smpp) else {
            return;
        };
        match crate::smpp::binds::reread(&smpp.config.path) {
            Ok(binds) => {
                tracing::info!(binds = ?binds, "SMPP reload: binds re-read");
                let binds = Arc::new(binds);
                let h = rt.handle();
                for core in 0..h.cores() {
                    let _ = h.send(core, Msg::SmppReloadBinds(Arc::clone(&binds)));
                }
            }
            Err(e) => tracing::warn!(error = %e, "SMPP reload refused; binds unchanged"),
        }
    }

    /// SIGTERM: refuse new INVITEs with 503, let in-flight transactions finish (up to
    /// `server.drain_secs`), then stop.
    /// `interrupted` is polled while waiting; true stops at once (a second signal).
    pub fn drain_and_stop(mut self, mut interrupted: impl FnMut() -> bool) {
        self.shared.draining.store(true, Ordering::SeqCst);
        self.metrics.set_draining();
        tracing::info!(drain_secs = self.drain_secs, "draining");
        // Every core takes a turn so that it publishes its count of unanswered requests.
        if let Some(rt) = &self.runtime {
            let h = rt.handle();
            for core in 0..h.cores() {
                let _ = h.send(core, Msg::Wake);
            }
        }
        #[cfg(feature = "smpp")]
        if let Some(rt) = &self.runtime
            && self.shared.smpp.is_some()
        {
            // Upstream leaves SMPP sessions to the operator; we unbind each one before exit.
            let h = rt.handle();
            for core in 0..h.cores() {
                let _ = h.send(core, Msg::SmppUnbindAll);
            }
            let m = self.shared.smpp.as_ref().map(|s| Arc::clone(&s.metrics));
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until
                && m.as_ref()
                    .is_some_and(|m| m.bound.load(Ordering::Relaxed) > 0)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        #[cfg(feature = "http")]
        if let Some(rt) = self.http.as_mut() {
            // Stop accepting, let requests in flight finish, then the on_shutdown hooks.
            rt.drain(Duration::from_secs(self.drain_secs.clamp(1, 30)));
            if let Some(h) = &self.host {
                h.handle().http_shutdown();
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        let deadline = Instant::now() + Duration::from_secs(self.drain_secs);
        while Instant::now() < deadline && self.metrics.transactions_pending() > 0 {
            if interrupted() {
                tracing::warn!("second signal: stopping without waiting for the drain");
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop();
    }

    fn stop(&mut self) {
        let mut stuck = false;
        if let Some(rt) = self.runtime.take() {
            // A reactor running a stuck inline handler never ends its turn: wait a bounded
            // time, then exit around it (SIGTERM always exits).
            let (tx, rx) = std::sync::mpsc::channel();
            let joiner = std::thread::Builder::new()
                .name("siphon-stop".into())
                .spawn(move || {
                    let _ = tx.send(rt.shutdown());
                });
            match rx.recv_timeout(Duration::from_secs(3)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "reactor shutdown"),
                Err(_) => {
                    stuck = true;
                    tracing::error!(
                        "a reactor is stuck in an inline script handler; exiting without it"
                    );
                }
            }
            if joiner.is_err() {
                stuck = true;
            }
        }
        if let Some(h) = self.host.take() {
            if stuck {
                h.abandon();
            } else {
                h.shutdown();
            }
        }
        tracing::info!("stopped");
    }
}

/// Every reactor's own counters (drops and truncations included) as
/// `siphon_reactor_events_total{core,event}`.
fn render_reactor(h: &RuntimeHandle<Msg>, o: &mut String) {
    use std::fmt::Write as _;
    let _ = writeln!(
        o,
        "# HELP siphon_reactor_events_total Reactor counters (udp_truncated, buf_exhausted, \
         mesh_full, udp_tx_errors, tcp_slow_peer_closed ...)\n# TYPE siphon_reactor_events_total counter"
    );
    for core in 0..h.cores() {
        if let Some(m) = h.metrics(core) {
            for (name, v) in m.snapshot() {
                let _ = writeln!(
                    o,
                    "siphon_reactor_events_total{{core=\"{core}\",event=\"{name}\"}} {v}"
                );
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How long an idle script worker spins before it parks: `spin` when no worker runs on a
/// reactor's CPU, none otherwise (the default placement puts worker k on reactor k's CPU). A
/// worker spinning on a reactor's CPU cannot see that reactor's next event before the
/// scheduler preempts it for the reactor, so it only burns the CPU the reactor needs; at
/// 1,200 calls/s on 2 vCPUs that spin was ~20 % of the worker's samples, and without it CPU
/// per call fell 10–14 % with a lower p50 and p99 (issue 16, session 6).
fn worker_spin(script_cpus: &[usize], reactor_cpus: &[usize], spin: Duration) -> Duration {
    if script_cpus.iter().any(|s| reactor_cpus.contains(s)) {
        Duration::ZERO
    } else {
        spin
    }
}

#[cfg(test)]
mod spin_tests {
    use std::time::Duration;

    use super::worker_spin;

    #[test]
    fn a_worker_on_its_reactors_cpu_parks_at_once() {
        let spin = Duration::from_micros(50);
        // Default placement: worker k on reactor k's CPU.
        assert_eq!(worker_spin(&[0, 1], &[0, 1], spin), Duration::ZERO);
        // Sibling hyperthreads (tuning/README.md): each worker has a CPU of its own.
        assert_eq!(worker_spin(&[2, 3], &[0, 1], spin), spin);
        // Swapped CPUs: each worker shares the other reactor's CPU.
        assert_eq!(worker_spin(&[1, 0], &[0, 1], spin), Duration::ZERO);
        assert_eq!(worker_spin(&[2, 1], &[0, 1], spin), Duration::ZERO);
    }
}
