//! `siphon.yaml`: the schema of SIPhon's keys (reference/siphon-core-api.md §2) plus our
//! `tuning:` block, `${VAR}`/`${VAR:-default}` expansion, and errors as `file:line: message`.
//!
//! Three kinds of keys: keys we implement (typed below), keys upstream knows that we do not
//! implement yet (accepted, each one named in a warning, never silently ignored), and keys
//! nobody knows (an error naming the key and its line).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

/// A configuration problem, located in its file when the line is known.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Invalid content at a place in the file.
    #[error("{path}:{line}: {message}")]
    At {
        /// The file.
        path: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    fn at(path: &Path, line: usize, message: impl Into<String>) -> Self {
        Self::At {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

/// One listen entry: `"ip:port"` or `{address, advertise, dscp}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ListenEntry {
    /// `"127.0.0.1:5060"`.
    Plain(String),
    /// The long form.
    Full {
        /// `ip:port`.
        address: String,
        /// Host or IP to put in Via/Record-Route instead of the bound address.
        #[serde(default)]
        advertise: Option<String>,
        /// DSCP name or 0..63 (accepted; marking is applied by the reactors).
        #[serde(default)]
        dscp: Option<Value>,
    },
}

impl ListenEntry {
    /// The `ip:port` text.
    pub fn address(&self) -> &str {
        match self {
            Self::Plain(a) => a,
            Self::Full { address, .. } => address,
        }
    }
    /// The advertised host, if any.
    pub fn advertise(&self) -> Option<&str> {
        match self {
            Self::Plain(_) => None,
            Self::Full { advertise, .. } => advertise.as_deref(),
        }
    }
}

/// `listen:` (required).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// UDP listeners.
    #[serde(default)]
    pub udp: Vec<ListenEntry>,
    /// TCP listeners.
    #[serde(default)]
    pub tcp: Vec<ListenEntry>,
    /// TLS listeners.
    #[serde(default)]
    pub tls: Vec<ListenEntry>,
    /// Upstream key, not implemented: warned.
    #[serde(default)]
    pub ws: Option<Value>,
    /// Upstream key, not implemented: warned.
    #[serde(default)]
    pub wss: Option<Value>,
    /// Needs the `sctp` feature (declared, not implemented): warned.
    #[serde(default)]
    pub sctp: Option<Value>,
    /// Default DSCP for all listeners.
    #[serde(default)]
    pub dscp: Option<Value>,
    /// UDP requests larger than `mtu - 200` go over TCP (RFC 3261 §18.1.1).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Upstream's SO_RCVBUF floor for UDP listeners (in upstream's default config): warned.
    #[serde(default)]
    pub udp_recv_buffer_bytes: Option<Value>,
}

/// `domain:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Domain {
    /// Domains and addresses this node serves (`SipUri.is_local`).
    #[serde(default)]
    pub local: Vec<String>,
}

/// `tls:` material.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain.
    pub certificate: Option<PathBuf>,
    /// PEM private key.
    pub private_key: Option<PathBuf>,
    /// `TLSv1_2` (default minimum) or `TLSv1_3`.
    #[serde(default)]
    pub method: Option<String>,
    /// Require client certificates.
    #[serde(default)]
    pub verify_client: bool,
    /// CA bundle for client certificates.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Outbound mTLS certificate.
    #[serde(default)]
    pub client_certificate: Option<PathBuf>,
    /// Outbound mTLS key.
    #[serde(default)]
    pub client_private_key: Option<PathBuf>,
    /// SNI certificates.
    #[serde(default)]
    pub certificates: Vec<SniCert>,
}

/// One SNI certificate entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCert {
    /// Names served (one-label wildcard allowed).
    pub server_names: Vec<String>,
    /// PEM certificate chain.
    pub certificate: PathBuf,
    /// PEM private key.
    pub private_key: PathBuf,
}

/// `script.reload`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reload {
    /// inotify on the script directory and include paths.
    #[default]
    Auto,
    /// On SIGHUP only.
    Sighup,
}

/// `script:` (required).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Script {
    /// The routing script.
    pub path: PathBuf,
    /// Reload trigger.
    #[serde(default)]
    pub reload: Reload,
    /// Extra module directories.
    #[serde(default)]
    pub include_paths: Vec<PathBuf>,
    /// Upstream thread-pool knobs: meaningless with one worker per core; warned.
    #[serde(default)]
    pub sync_pool_size: Option<Value>,
    /// See `sync_pool_size`.
    #[serde(default)]
    pub sync_pool_max: Option<Value>,
    /// See `sync_pool_size`.
    #[serde(default)]
    pub async_pool_size: Option<Value>,
    /// Capacity of each reactor → worker queue (upstream name kept).
    #[serde(default)]
    pub executor_queue_capacity: Option<usize>,
    /// A handler turn that runs Python longer than this gets `siphon.HandlerStalled` raised
    /// in it (500 Script Error); default 2, 0 = off. Upstream aborts the process instead.
    #[serde(default)]
    pub handler_stall_abort_secs: Option<u64>,
    /// A handler turn this long marks its core stalled: new requests get 503 with Retry-After
    /// from the reactor and `/health` answers 503 until it ends (ours; default 200 ms).
    #[serde(default)]
    pub handler_stall_shed_ms: Option<u64>,
}

/// `registrar.backend`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistrarBackend {
    /// In-memory, shared by all cores.
    #[default]
    Memory,
    /// Ours: an embedded crash-safe file (`registrar.local.path`); survives restarts.
    Local,
    /// Shared by nodes through Redis (`registrar.redis`).
    Redis,
    /// Upstream backend, not implemented yet: warned, memory used.
    Postgres,
    /// Upstream parses it but has no implementation; neither do we.
    Python,
}

/// `registrar:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Registrar {
    /// Storage.
    pub backend: RegistrarBackend,
    /// Expiry when the REGISTER names none.
    pub default_expires: u32,
    /// Longer requests are clamped to this.
    pub max_expires: u32,
    /// Shorter (non-zero) requests get 423 with Min-Expires (0 = no minimum).
    pub min_expires: u32,
    /// Bindings per AOR (0 = unlimited).
    pub max_contacts: u32,
    /// The authenticated user must match the AOR.
    pub enforce_auth_aor_match: bool,
    /// `backend: local` settings.
    pub local: Option<RegistrarLocal>,
    /// `backend: redis` settings.
    pub redis: Option<RegistrarRedis>,
    /// See `redis`.
    pub postgres: Option<Value>,
    /// See `redis`.
    pub liveness: Option<Value>,
}

impl Default for Registrar {
    fn default() -> Self {
        Self {
            backend: RegistrarBackend::Memory,
            default_expires: 3600,
            max_expires: 7200,
            // SIPhon leaves both unset: no 423 minimum, no contact limit.
            min_expires: 0,
            max_contacts: 0,
            enforce_auth_aor_match: false,
            local: None,
            redis: None,
            postgres: None,
            liveness: None,
        }
    }
}

/// `registrar.local:` (ours).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrarLocal {
    /// The database file (created with its directory when missing).
    pub path: PathBuf,
    /// Longest a REGISTER's 200 OK waits for its commit; past it (the disk is full or
    /// failing) the REGISTER gets 503 with `Retry-After`.
    #[serde(default = "default_commit_timeout_ms")]
    pub commit_timeout_ms: u64,
}

fn default_commit_timeout_ms() -> u64 {
    4_000
}

/// `registrar.redis:` (upstream's keys plus our timeouts and queue cap).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrarRedis {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Prefix of the AoR keys.
    #[serde(default = "default_reg_prefix")]
    pub key_prefix: String,
    /// Seconds a key outlives its longest binding.
    #[serde(default = "default_ttl_slack")]
    pub ttl_slack_secs: u64,
    /// Upstream sharding keys: accepted, warned, not used.
    #[serde(default)]
    pub urls: Option<Value>,
    /// See `urls`.
    #[serde(default)]
    pub shard_count: Option<Value>,
    /// Ours: longest a lookup waits for Redis before answering from the local copy.
    #[serde(default = "default_read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// Ours: writes kept while Redis is unreachable (oldest dropped and counted beyond).
    #[serde(default = "default_queue_cap")]
    pub queue_cap: usize,
}

fn default_reg_prefix() -> String {
    "siphon:reg:".into()
}
fn default_ttl_slack() -> u64 {
    30
}
fn default_read_timeout_ms() -> u64 {
    50
}
fn default_queue_cap() -> usize {
    100_000
}

/// One `cache:` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheEntry {
    /// The name scripts use.
    pub name: String,
    /// `redis://...`: shared by nodes; absent: this process only.
    #[serde(default)]
    pub url: Option<String>,
    /// How long a value read from Redis is served locally without asking again.
    #[serde(default)]
    pub local_ttl_secs: Option<u64>,
    /// Most values kept locally.
    #[serde(default)]
    pub local_max_entries: Option<usize>,
    /// Ours: longest a read waits for Redis.
    #[serde(default = "default_read_timeout_ms")]
    pub read_timeout_ms: u64,
    /// Ours: writes kept while Redis is unreachable.
    #[serde(default = "default_queue_cap")]
    pub queue_cap: usize,
}

/// `auth:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Digest realm (default: the first `domain.local`, else the advertised address).
    pub realm: Option<String>,
    /// `static` (users below) is implemented; others are warned.
    pub backend: String,
    /// Username → password.
    pub users: BTreeMap<String, String>,
    /// Nonce lifetime.
    pub nonce_ttl_secs: u64,
    /// HMAC secret for stateless nonces (random per start when absent).
    pub nonce_secret: Option<String>,
    /// Ours: how the digest `uri` directive is checked against the Request-URI.
    pub digest_uri_check: DigestUriCheck,
    /// Digest algorithms offered, most preferred first, one challenge each (upstream's key;
    /// our default is MD5 then SHA-256, upstream adds SHA-512-256).
    pub algorithms: Vec<String>,
    /// Ours: the challenge set of a 401/407 to a request that came over UDP.
    pub udp_challenge: UdpChallenge,
    /// Upstream sub-blocks, not implemented: warned.
    pub http: Option<Value>,
    /// See `http`.
    pub diameter: Option<Value>,
    /// See `http`.
    pub aka_credentials: Option<Value>,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            realm: None,
            backend: "static".into(),
            users: BTreeMap::new(),
            nonce_ttl_secs: 300,
            nonce_secret: None,
            digest_uri_check: DigestUriCheck::Relaxed,
            algorithms: vec!["MD5".into(), "SHA-256".into()],
            udp_challenge: UdpChallenge::One,
            http: None,
            diameter: None,
            aka_credentials: None,
        }
    }
}

/// `auth.udp_challenge` (ours): over UDP the source address can be forged, so by default a
/// 401/407 offers one challenge (the first of `auth.algorithms`, or the algorithm of the
/// failed credentials) and stays about as large as the request; TCP/TLS get every algorithm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UdpChallenge {
    /// One challenge.
    #[default]
    One,
    /// One per `auth.algorithms` entry, as over TCP/TLS.
    All,
}

/// `auth.digest_uri_check` (ours; upstream SIPhon and Kamailio do not check the directive).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestUriCheck {
    /// The directive's host is the Request-URI's or one of ours (`domain.local`, listen and
    /// advertised addresses); the port is not compared.
    #[default]
    Relaxed,
    /// The directive is the Request-URI by RFC 3261 §19.1.4 (port included).
    Strict,
    /// Not checked.
    Off,
}

/// `transaction:` timers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Transaction {
    /// Non-INVITE transaction timeout (Timer F), seconds.
    pub timeout_secs: u64,
    /// INVITE client transaction timeout (Timer B / C), seconds.
    pub invite_timeout_secs: u64,
    /// Send 100 Trying for INVITE (RFC 3261 §16.2, §17.2.1).
    pub auto_emit_100_trying: bool,
    /// How long the automatic 100 Trying waits: it is sent only if no provisional or final
    /// response went out by then (§17.2.1's 200 ms); 0 sends it at once.
    pub auto_emit_100_trying_delay_ms: u64,
    /// RFC 3261 T1, ms (ours).
    pub t1_ms: u64,
    /// RFC 3261 T2, ms (ours).
    pub t2_ms: u64,
    /// RFC 3261 T4, ms (ours).
    pub t4_ms: u64,
}

impl Default for Transaction {
    fn default() -> Self {
        Self {
            timeout_secs: 5,
            invite_timeout_secs: 30,
            auto_emit_100_trying: true,
            auto_emit_100_trying_delay_ms: 200,
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
        }
    }
}

/// `log.format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    #[default]
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `log:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `debug|info|warn|error`.
    pub level: String,
    /// Output format.
    pub format: LogFormat,
    /// Log file instead of stderr.
    pub file: Option<PathBuf>,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Pretty,
            file: None,
        }
    }
}

/// `metrics:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Prometheus exporter.
    #[serde(default)]
    pub prometheus: Option<Prometheus>,
}

/// `metrics.prometheus`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prometheus {
    /// `ip:port` of the HTTP exporter (also serves /health and /ready).
    pub listen: String,
    /// Path of the exposition (default `/metrics`).
    #[serde(default = "default_metrics_path")]
    pub path: String,
    /// Upstream CORS knob: accepted.
    #[serde(default)]
    pub cors: Option<Value>,
}

fn default_metrics_path() -> String {
    "/metrics".into()
}

/// `server:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Server header on our responses.
    pub server_header: Option<String>,
    /// User-Agent header on our requests.
    pub user_agent_header: Option<String>,
    /// Seconds in-flight transactions may drain after SIGTERM.
    pub drain_secs: u64,
    /// Instance identifier.
    pub instance_id: Option<String>,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            server_header: None,
            user_agent_header: None,
            drain_secs: 30,
            instance_id: None,
        }
    }
}

/// `tuning.io_backend`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoBackend {
    /// io_uring when the probe passes, else epoll (logged with the reason).
    #[default]
    Auto,
    /// io_uring or fail.
    Uring,
    /// epoll.
    Epoll,
}

/// `tuning.script_placement`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScriptPlacement {
    /// A worker thread per reactor (sleeps when idle; it spins briefly first only when no
    /// worker shares a reactor's CPU, e.g. `script_cpus` on sibling hyperthreads). Each
    /// script event costs two cross-thread wake-ups (reactor → worker → reactor).
    Thread,
    /// The default. The reactor's thread runs its core's interpreter between loop turns: no
    /// thread hop (issue 16: 0.2975–0.3175 against 0.3325–0.3475 ms CPU per call with
    /// `thread` at 400 calls/s, bench/sip/run.sh, same rounds). A handler that blocks
    /// (`time.sleep`, a blocking socket) past `script.handler_stall_shed_ms` hands the core's
    /// reactor loop to a standby thread, which keeps its sockets, timers and retransmissions
    /// and answers new requests 503 with Retry-After until the handler returns (README,
    /// "Script faults"). Needs Python >= 3.12 (one interpreter per core); on 3.11 the node
    /// runs worker threads and says so.
    #[default]
    Inline,
}

/// `tuning.steering`: how datagrams pick a reactor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Steering {
    /// Requests by the kernel's SO_REUSEPORT 4-tuple hash (a flow always reaches the same
    /// reactor, so in-dialog requests of one UA stay in order); a response straight to the
    /// reactor owning its transaction, named in the top Via branch we generated (a classic BPF
    /// program on the UDP group). Without it, a response that hashes elsewhere is forwarded to
    /// its owner over the mesh (three per INVITE dialog). The default; if the kernel refuses
    /// the program the group keeps the hash (logged).
    #[default]
    Branch,
    /// The kernel's SO_REUSEPORT 4-tuple hash only; responses reach their owner through the
    /// mesh.
    Hash,
    /// SO_INCOMING_CPU: the reactor of the CPU that received the packet. Only with NIC queue
    /// IRQs pinned to the reactor CPUs (RSS keeps a flow on one CPU); on loopback or with
    /// irqbalance a flow's packets can reach different reactors and be reordered.
    IncomingCpu,
    /// Classic BPF `return cpu` (needs reactor CPUs 0..n in order); same caveat.
    Cbpf,
}

/// `dns:` (ours): how next hops that are names are resolved (RFC 3263, off the reactors).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dns {
    /// Resolvers as `ip:port` (or `ip`, port 53); empty: the host's `/etc/resolv.conf`.
    pub servers: Vec<String>,
    /// Time to wait for one answer, in milliseconds.
    pub timeout_ms: u64,
    /// Tries per query (the first included) before the query counts as timed out.
    pub attempts: usize,
    /// Most records (positive and negative) the cache holds; at the limit the entry closest to
    /// expiry is evicted (and counted).
    pub cache_entries: usize,
}

impl Default for Dns {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            timeout_ms: 2000,
            attempts: 2,
            cache_entries: 10_000,
        }
    }
}

/// `tuning:` (ours). Every default derives from the machine.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tuning {
    /// CPUs to run one reactor each on (default: all online CPUs).
    pub reactor_cpus: Option<Vec<usize>>,
    /// CPUs for the script workers, one per reactor (default: the reactor's CPU).
    pub script_cpus: Option<Vec<usize>>,
    /// Where script workers run.
    pub script_placement: ScriptPlacement,
    /// io_uring or epoll.
    pub io_backend: IoBackend,
    /// Datagram steering across reactors.
    pub steering: Steering,
    /// Submission queue entries per ring.
    pub ring_entries: Option<u32>,
    /// UDP receive buffers per reactor (default 1,024): the burst capacity. With io_uring a
    /// hot set of 64 circulates, doubled each time a burst empties the ring.
    pub buffer_count: Option<u32>,
    /// Bytes of each UDP receive buffer kept in memory (default 4,096).
    pub buffer_size: Option<u32>,
    /// Capacity of each reactor ↔ worker and reactor ↔ reactor queue.
    pub queue_capacity: Option<usize>,
    /// Events waiting for a core's script worker at which new INVITEs and REGISTERs get a
    /// stateless 503 with Retry-After (default 256; 0 = only when the queue is full).
    pub overload_queue_depth: Option<usize>,
    /// Estimated wait in a core's script queue (its depth over the worker's measured
    /// throughput) at which new INVITEs and REGISTERs get a stateless 503 with Retry-After
    /// (default 50 ms; 0 = depth limit only).
    pub overload_queue_delay_ms: Option<u64>,
    /// Retry-After (seconds) of the 503s that shed load or answer for a stalled worker
    /// (default 2).
    pub overload_retry_after_secs: Option<u32>,
    /// Also shed new INVITEs and REGISTERs while a reactor is saturated (it did not sleep once
    /// in the last 100 ms), when the bottleneck is the reactor and not the script (default
    /// true).
    pub overload_shed_on_saturation: Option<bool>,
    /// CPUs for the HTTP extension's tokio threads (one thread per entry; default: one
    /// unpinned thread).
    pub http_cpus: Option<Vec<usize>>,
}

/// The whole `siphon.yaml`. Unknown top-level keys are collected by `upstream_only` and sorted
/// into warnings (upstream keys) and errors (keys nobody knows) after parsing.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// Listeners (required).
    pub listen: Listen,
    /// Served domains.
    #[serde(default)]
    pub domain: Domain,
    /// Public address for Via/Record-Route/Contact.
    #[serde(default)]
    pub advertised_address: Option<String>,
    /// TLS material.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// The routing script (required).
    pub script: Script,
    /// Location service.
    #[serde(default)]
    pub registrar: Registrar,
    /// Digest authentication.
    #[serde(default)]
    pub auth: Auth,
    /// Transaction timers.
    #[serde(default)]
    pub transaction: Transaction,
    /// Logging (required upstream; defaulted here).
    #[serde(default)]
    pub log: Log,
    /// Exporters.
    #[serde(default)]
    pub metrics: Metrics,
    /// Server identity and drain.
    #[serde(default)]
    pub server: Server,
    /// Extension name → its config file.
    #[serde(default)]
    pub extensions: BTreeMap<String, PathBuf>,
    /// Named caches (`{name, url, local_ttl_secs, local_max_entries}`); in-memory when no URL,
    /// on Redis too when it has one.
    #[serde(default)]
    pub cache: Option<Vec<CacheEntry>>,
    /// Free-form document read by the `config` script namespace.
    #[serde(default)]
    pub script_config: Option<Value>,
    /// Ours: cores, backends, sizes.
    #[serde(default)]
    pub tuning: Tuning,
    /// Ours: RFC 3263 name resolution (servers, timeouts, cache).
    #[serde(default)]
    pub dns: Dns,
    /// Upstream's floods-and-scanners section (`rate_limit`, `failed_auth_ban`,
    /// `scanner_block`, `trusted_cidrs`).
    #[serde(default)]
    pub security: crate::security::SecurityConfig,
    /// Ours: caps on every table and connection count (README "Limits").
    #[serde(default)]
    pub limits: crate::limits::LimitsConfig,
    /// Upstream sections we accept and do not implement yet (each warned by name).
    #[serde(flatten)]
    pub upstream_only: BTreeMap<String, Value>,
}

/// Top-level sections upstream SIPhon knows that this build does not implement.
pub const UPSTREAM_ONLY_SECTIONS: &[&str] = &[
    "registrant",
    "nat",
    "session_timer",
    "dialog",
    "media",
    "gateway",
    "b2bua",
    "numbering",
    "number_policies",
    "cdr",
    "tracing",
    "admin",
    "memory",
    "control",
    "diameter",
    "rf",
    "ro",
    "ipsec",
    "isc",
    "sbi",
    "stir",
    "lcr",
    "srs",
    "lawful_intercept",
    "subscribe_state",
];

/// Extensions this binary can run (by cargo feature).
pub fn compiled_extensions() -> &'static [&'static str] {
    &[
        #[cfg(feature = "smpp")]
        "smpp",
        #[cfg(feature = "http")]
        "http",
    ]
}

/// A non-fatal finding: a key we accept but do not act on, or an extension not built in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// What to tell the operator.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// A loaded config with its source, for locating later findings.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The parsed config; relative paths are resolved against the file's directory.
    pub config: Config,
    /// Where it came from (`<embedded>` for the default).
    pub path: PathBuf,
    /// The expanded text.
    pub text: String,
    /// Findings to log at start.
    pub warnings: Vec<Warning>,
}

impl Loaded {
    /// The line of `key.path` in the file (best effort, 0 when not found).
    pub fn line_of(&self, key_path: &[&str]) -> usize {
        line_of(&self.text, key_path)
    }
    /// An error located at `key_path`.
    pub fn error_at(&self, key_path: &[&str], message: impl Into<String>) -> ConfigError {
        ConfigError::at(&self.path, self.line_of(key_path), message)
    }
}

/// Read, expand and parse a config file.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let raw = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&raw, path, &base, &|k| std::env::var(k).ok())
}

/// Parse config text. `env` looks up variables for `${VAR}` expansion.
pub fn parse(
    raw: &str,
    path: &Path,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, ConfigError> {
    let text = expand(raw, env).map_err(|(line, m)| ConfigError::at(path, line, m))?;
    let mut config: Config = serde_yaml_ng::from_str(&text).map_err(|e| {
        let line = e.location().map_or(0, |l| l.line());
        ConfigError::at(path, line, yaml_message(&e))
    })?;
    let mut loaded = Loaded {
        config: Config {
            upstream_only: BTreeMap::new(),
            ..config.clone()
        },
        path: path.to_path_buf(),
        text,
        warnings: Vec::new(),
    };
    // Unknown top-level keys land in the flattened map; split known-upstream from unknown.
    for key in std::mem::take(&mut config.upstream_only).into_keys() {
        if UPSTREAM_ONLY_SECTIONS.contains(&key.as_str()) {
            let line = loaded.line_of(&[&key]);
            loaded.warnings.push(Warning {
                line,
                message: format!(
                    "`{key}` is a SIPhon section this build does not implement yet; it is ignored"
                ),
            });
        } else {
            return Err(loaded.error_at(&[&key], format!("unknown key `{key}`")));
        }
    }
    warn_unimplemented(&mut loaded);
    resolve_paths(&mut loaded.config, base);
    validate(&loaded)?;
    Ok(loaded)
}

fn yaml_message(e: &serde_yaml_ng::Error) -> String {
    // serde_yaml_ng appends " at line L column C"; the line is already in our prefix.
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn warn_unimplemented(loaded: &mut Loaded) {
    let c = &loaded.config;
    let mut found: Vec<(Vec<&str>, String)> = Vec::new();
    let mut note = |present: bool, path: &[&'static str], what: &str| {
        if present {
            found.push((path.to_vec(), what.to_string()));
        }
    };
    note(
        c.listen.ws.is_some(),
        &["listen", "ws"],
        "WebSocket transport is not implemented yet; `listen.ws` is ignored",
    );
    note(
        c.listen.wss.is_some(),
        &["listen", "wss"],
        "WebSocket transport is not implemented yet; `listen.wss` is ignored",
    );
    note(
        c.listen.sctp.is_some(),
        &["listen", "sctp"],
        "SCTP needs the `sctp` feature, which is declared but not implemented; `listen.sctp` is ignored",
    );
    note(
        c.listen.udp_recv_buffer_bytes.is_some(),
        &["listen", "udp_recv_buffer_bytes"],
        "`listen.udp_recv_buffer_bytes` is not applied yet; UDP sockets keep the kernel's receive buffer size",
    );
    note(
        c.script.sync_pool_size.is_some()
            || c.script.sync_pool_max.is_some()
            || c.script.async_pool_size.is_some(),
        &["script"],
        "`script.*_pool_*` sizes do not apply: siphon runs one script worker per core (see `tuning`)",
    );
    note(
        matches!(
            c.registrar.backend,
            RegistrarBackend::Postgres | RegistrarBackend::Python
        ),
        &["registrar", "backend"],
        "the `postgres` and `python` registrar backends are not implemented; using memory",
    );
    note(
        c.registrar.postgres.is_some() || c.registrar.liveness.is_some(),
        &["registrar"],
        "`registrar.postgres/liveness` are not implemented yet and are ignored",
    );
    note(
        c.registrar
            .redis
            .as_ref()
            .is_some_and(|r| r.urls.is_some() || r.shard_count.is_some()),
        &["registrar", "redis"],
        "`registrar.redis.urls/shard_count` (sharding) are not implemented; `url` is used",
    );
    note(
        c.auth.backend != "static",
        &["auth", "backend"],
        "only the `static` auth backend (auth.users) is implemented",
    );
    note(
        c.auth.http.is_some() || c.auth.diameter.is_some() || c.auth.aka_credentials.is_some(),
        &["auth"],
        "`auth.http/diameter/aka_credentials` are not implemented yet and are ignored",
    );
    note(
        c.security.apiban.is_some() || c.security.firewall.is_some(),
        &["security"],
        "`security.apiban` and `security.firewall` are not implemented yet and are ignored",
    );
    for (path, message) in found {
        let line = loaded.line_of(&path);
        loaded.warnings.push(Warning { line, message });
    }
    for name in loaded.config.extensions.keys() {
        if !compiled_extensions().contains(&name.as_str()) {
            let line = loaded.line_of(&["extensions", name]);
            let message = if matches!(name.as_str(), "smpp" | "http" | "sctp") {
                format!(
                    "extension `{name}` is configured but this binary was built without it; \
                     rebuild with `cargo build -p siphon-bin --release --features {name}`. \
                     Starting without it"
                )
            } else {
                format!("unknown extension `{name}`; starting without it")
            };
            loaded.warnings.push(Warning { line, message });
        }
    }
}

fn resolve_paths(c: &mut Config, base: &Path) {
    let fix = |p: &mut PathBuf| {
        if p.is_relative() && !base.as_os_str().is_empty() {
            *p = base.join(&*p);
        }
    };
    fix(&mut c.script.path);
    c.script.include_paths.iter_mut().for_each(fix);
    if let Some(l) = c.registrar.local.as_mut() {
        fix(&mut l.path);
    }
    if let Some(t) = c.tls.as_mut() {
        for p in [
            &mut t.certificate,
            &mut t.private_key,
            &mut t.client_ca,
            &mut t.client_certificate,
            &mut t.client_private_key,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
        for s in &mut t.certificates {
            fix(&mut s.certificate);
            fix(&mut s.private_key);
        }
    }
    c.extensions.values_mut().for_each(fix);
}

/// Checks that need no I/O: addresses parse, values are in range, required pairs present.
/// `auth.algorithms` as digest algorithms: an unknown name is an error (as upstream), not
/// skipped, and so is an empty list.
pub fn digest_algorithms(names: &[String]) -> Result<Vec<siphon_sip::auth::Algorithm>, String> {
    if names.is_empty() {
        return Err("`auth.algorithms` needs at least one algorithm".into());
    }
    names
        .iter()
        .map(|n| {
            siphon_sip::auth::Algorithm::from_name(n).ok_or_else(|| {
                format!(
                    "`{n}` is not a digest algorithm (MD5, MD5-sess, SHA-256, SHA-256-sess, \
                     SHA-512-256, SHA-512-256-sess)"
                )
            })
        })
        .collect()
}

fn validate(l: &Loaded) -> Result<(), ConfigError> {
    let c = &l.config;
    if c.listen.udp.is_empty() && c.listen.tcp.is_empty() && c.listen.tls.is_empty() {
        return Err(l.error_at(
            &["listen"],
            "`listen` needs at least one udp, tcp or tls address",
        ));
    }
    for (kind, list) in [
        ("udp", &c.listen.udp),
        ("tcp", &c.listen.tcp),
        ("tls", &c.listen.tls),
    ] {
        for e in list {
            if e.address().parse::<SocketAddr>().is_err() {
                return Err(l.error_at(
                    &["listen", kind],
                    format!(
                        "`{}` is not an ip:port address (IPv6 as [::1]:5060)",
                        e.address()
                    ),
                ));
            }
        }
    }
    if !c.listen.tls.is_empty() {
        let ok = c
            .tls
            .as_ref()
            .is_some_and(|t| t.certificate.is_some() && t.private_key.is_some());
        if !ok {
            return Err(l.error_at(
                &["listen", "tls"],
                "`listen.tls` needs `tls.certificate` and `tls.private_key`",
            ));
        }
    }
    if let Err((key, m)) = crate::security::validate(&c.security) {
        return Err(l.error_at(&["security", key], m));
    }
    if let Err((key, m)) = crate::limits::validate(&c.limits) {
        return Err(l.error_at(&["limits", key], m));
    }
    if let Err(m) = digest_algorithms(&c.auth.algorithms) {
        return Err(l.error_at(&["auth", "algorithms"], m));
    }
    let r = &c.registrar;
    if r.backend == RegistrarBackend::Local && r.local.is_none() {
        return Err(l.error_at(
            &["registrar", "backend"],
            "`registrar.backend: local` needs `registrar.local.path`",
        ));
    }
    if r.backend == RegistrarBackend::Redis && r.redis.is_none() {
        return Err(l.error_at(
            &["registrar", "backend"],
            "`registrar.backend: redis` needs `registrar.redis.url`",
        ));
    }
    if r.min_expires > r.max_expires {
        return Err(l.error_at(
            &["registrar", "min_expires"],
            format!(
                "min_expires ({}) is above max_expires ({})",
                r.min_expires, r.max_expires
            ),
        ));
    }
    if !["debug", "info", "warn", "error", "trace"].contains(&c.log.level.as_str()) {
        return Err(l.error_at(
            &["log", "level"],
            format!(
                "log.level `{}` is not one of debug, info, warn, error",
                c.log.level
            ),
        ));
    }
    if let Some(p) = &c.metrics.prometheus
        && p.listen.parse::<SocketAddr>().is_err()
    {
        return Err(l.error_at(
            &["metrics", "prometheus", "listen"],
            format!("`{}` is not an ip:port address", p.listen),
        ));
    }
    for (key, cpus) in [
        ("reactor_cpus", &c.tuning.reactor_cpus),
        ("script_cpus", &c.tuning.script_cpus),
    ] {
        if let Some(cpus) = cpus
            && cpus.is_empty()
        {
            return Err(l.error_at(&["tuning", key], format!("`tuning.{key}` is empty")));
        }
    }
    if let (Some(r), Some(s)) = (&c.tuning.reactor_cpus, &c.tuning.script_cpus)
        && r.len() != s.len()
    {
        return Err(l.error_at(
            &["tuning", "script_cpus"],
            format!(
                "`tuning.script_cpus` has {} entries; one per reactor ({}) is needed",
                s.len(),
                r.len()
            ),
        ));
    }
    Ok(())
}

/// `${VAR}` and `${VAR:-default}` expansion. Returns (line, message) on an unset variable
/// without a default or an unclosed `${`.
pub fn expand(raw: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, (usize, String)> {
    let mut out = String::with_capacity(raw.len());
    for (i, line) in raw.split_inclusive('\n').enumerate() {
        let lineno = i + 1;
        // Comments are not expanded: a commented-out ${VAR} must not fail the load.
        let code_end = comment_start(line).unwrap_or(line.len());
        let (code, comment) = line.split_at(code_end);
        let mut rest = code;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err((lineno, "unclosed `${` in variable reference".into()));
            };
            let inner = &after[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err((
                    lineno,
                    format!("`${{{inner}}}` is not a valid variable reference"),
                ));
            }
            match (env(name), default) {
                (Some(v), _) if !v.is_empty() || default.is_none() => out.push_str(&v),
                (_, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err((
                        lineno,
                        format!(
                            "environment variable `{name}` is not set (use ${{{name}:-default}})"
                        ),
                    ));
                }
                (Some(v), None) => out.push_str(&v),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    Ok(out)
}

/// Byte offset of a `#` comment outside quotes.
fn comment_start(line: &str) -> Option<usize> {
    let (mut sq, mut dq) = (false, false);
    let mut prev = ' ';
    for (i, ch) in line.char_indices() {
        match ch {
            '\'' if !dq => sq = !sq,
            '"' if !sq => dq = !dq,
            '#' if !sq && !dq && (prev == ' ' || prev == '\t' || i == 0) => return Some(i),
            _ => {}
        }
        prev = ch;
    }
    None
}

/// Best-effort line of a key path in block-style YAML (0 when not found).
pub fn line_of(text: &str, path: &[&str]) -> usize {
    let mut depth_indent: Option<usize> = None; // indent of the parent we matched
    let mut want = 0;
    let mut best = 0;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if let Some(d) = depth_indent
            && indent <= d
        {
            // Left the parent block without finding the child.
            if want < path.len() {
                return best;
            }
        }
        let Some(key) = path.get(want) else { break };
        let key_text = trimmed.trim_start_matches("- ");
        let matches = key_text.starts_with(key)
            && key_text[key.len()..].trim_start().starts_with(':')
            && depth_indent.is_none_or(|d| indent > d);
        if matches {
            best = i + 1;
            want += 1;
            depth_indent = Some(indent);
            if want == path.len() {
                return best;
            }
        }
    }
    best
}

/// The embedded default config: loopback proxy + registrar with the default script.
pub const DEFAULT_YAML: &str = include_str!("../../../deploy/examples/siphon.yaml");
/// The embedded default routing script.
pub const DEFAULT_SCRIPT: &str = include_str!("../../../deploy/examples/proxy_default.py");

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOST" => Some("127.0.0.1".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn parse_str(s: &str) -> Result<Loaded, ConfigError> {
        parse(s, Path::new("siphon.yaml"), Path::new(""), &env)
    }

    const MIN: &str = "listen:\n  udp: [\"127.0.0.1:5060\"]\nscript:\n  path: s.py\n";

    #[test]
    fn minimal_config_parses_with_defaults() {
        let l = parse_str(MIN).unwrap();
        assert_eq!(l.config.registrar.default_expires, 3600);
        assert_eq!(l.config.registrar.max_expires, 7200);
        assert_eq!(l.config.registrar.min_expires, 0);
        assert_eq!(l.config.registrar.max_contacts, 0);
        assert_eq!(l.config.transaction.timeout_secs, 5);
        assert_eq!(l.config.server.drain_secs, 30);
        assert!(l.warnings.is_empty());
    }

    #[test]
    fn expansion_with_defaults_and_errors() {
        assert_eq!(expand("a: ${HOST}\n", &env).unwrap(), "a: 127.0.0.1\n");
        assert_eq!(expand("a: ${NOPE:-x}\n", &env).unwrap(), "a: x\n");
        assert_eq!(expand("a: ${EMPTY:-x}\n", &env).unwrap(), "a: x\n");
        assert_eq!(expand("# ${NOPE}\n", &env).unwrap(), "# ${NOPE}\n");
        let (line, msg) = expand("a: 1\nb: ${NOPE}\n", &env).unwrap_err();
        assert_eq!(line, 2);
        assert!(msg.contains("NOPE"));
    }

    #[test]
    fn unknown_key_is_error_with_line() {
        let e = parse_str(&format!("{MIN}bogus: 1\n"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "siphon.yaml:5: unknown key `bogus`");
        let e =
            parse_str("listen:\n  udp: [\"127.0.0.1:5060\"]\n  bogus: 1\nscript:\n  path: s.py\n")
                .unwrap_err()
                .to_string();
        assert!(
            e.starts_with("siphon.yaml:3: listen: unknown field `bogus`"),
            "{e}"
        );
    }

    #[test]
    fn upstream_default_config_loads_with_warnings_naming_keys() {
        let l = parse_str(include_str!("../tests/fixtures/upstream/siphon.yaml"))
            .expect("upstream's default siphon.yaml loads");
        assert!(
            l.warnings
                .iter()
                .any(|w| w.message.contains("`listen.udp_recv_buffer_bytes`")),
            "{:?}",
            l.warnings
        );
    }

    #[test]
    fn upstream_only_key_is_warning() {
        let l = parse_str(&format!("{MIN}nat:\n  fix_contact: true\n")).unwrap();
        assert_eq!(l.warnings.len(), 1);
        assert_eq!(l.warnings[0].line, 5);
        assert!(l.warnings[0].message.contains("`nat`"));
    }

    #[test]
    fn missing_extension_feature_is_warned_with_rebuild_command() {
        let l = parse_str(&format!("{MIN}extensions:\n  smpp: smpp.yaml\n")).unwrap();
        if cfg!(feature = "smpp") {
            assert!(l.warnings.is_empty());
        } else {
            assert!(
                l.warnings[0].message.contains("--features smpp"),
                "{:?}",
                l.warnings
            );
            assert_eq!(l.warnings[0].line, 6);
        }
    }

    #[test]
    fn bad_listen_address_is_located() {
        let e = parse_str("listen:\n  udp: [\"nowhere\"]\nscript:\n  path: s.py\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "siphon.yaml:2: `nowhere` is not an ip:port address (IPv6 as [::1]:5060)"
        );
    }

    #[test]
    fn missing_required_section() {
        let e = parse_str("listen:\n  udp: [\"127.0.0.1:5060\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field `script`"), "{e}");
    }

    #[test]
    fn tls_listener_needs_material() {
        let e = parse_str("listen:\n  tls: [\"127.0.0.1:5061\"]\nscript:\n  path: s.py\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("siphon.yaml:2:"), "{e}");
    }

    #[test]
    fn embedded_default_parses() {
        let l = parse(
            DEFAULT_YAML,
            Path::new("<embedded>"),
            Path::new(""),
            &|_| None,
        )
        .unwrap();
        assert!(!l.config.listen.udp.is_empty());
    }

    #[test]
    fn digest_uri_check_values() {
        let l = parse_str(MIN).unwrap();
        assert_eq!(l.config.auth.digest_uri_check, DigestUriCheck::Relaxed);
        for (v, want) in [
            ("relaxed", DigestUriCheck::Relaxed),
            ("strict", DigestUriCheck::Strict),
            ("off", DigestUriCheck::Off),
        ] {
            let l = parse_str(&format!("{MIN}auth:\n  digest_uri_check: {v}\n")).unwrap();
            assert_eq!(l.config.auth.digest_uri_check, want);
        }
        let e = parse_str(&format!(
            "{MIN}auth:\n  realm: r\n  digest_uri_check: lenient\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("siphon.yaml:7: auth.digest_uri_check: unknown variant `lenient`"),
            "{e}"
        );
    }

    #[test]
    fn auth_algorithms_and_udp_challenge() {
        let l = parse_str(MIN).unwrap();
        assert_eq!(l.config.auth.algorithms, ["MD5", "SHA-256"]);
        assert_eq!(l.config.auth.udp_challenge, UdpChallenge::One);
        let l = parse_str(&format!(
            "{MIN}auth:\n  algorithms: [SHA-256, MD5, SHA-512-256]\n  udp_challenge: all\n"
        ))
        .unwrap();
        assert_eq!(l.config.auth.udp_challenge, UdpChallenge::All);
        assert_eq!(
            digest_algorithms(&l.config.auth.algorithms).unwrap(),
            [
                siphon_sip::auth::Algorithm::Sha256,
                siphon_sip::auth::Algorithm::Md5,
                siphon_sip::auth::Algorithm::Sha512_256
            ]
        );
        let e = parse_str(&format!("{MIN}auth:\n  algorithms: [MD5, AKAv1-MD5]\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("siphon.yaml:6: ") && e.contains("`AKAv1-MD5` is not a digest algorithm"),
            "{e}"
        );
        assert!(parse_str(&format!("{MIN}auth:\n  algorithms: []\n")).is_err());
    }

    #[test]
    fn line_of_nested() {
        let t = "a:\n  b: 1\nc:\n  b: 2\n  d:\n    e: 3\n";
        assert_eq!(line_of(t, &["c", "b"]), 4);
        assert_eq!(line_of(t, &["c", "d", "e"]), 6);
        assert_eq!(line_of(t, &["a", "b"]), 2);
    }
}
