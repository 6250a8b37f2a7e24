//! The scripting host: starts CPython once per process, one script worker per core (own-GIL
//! subinterpreters on Python ≥ 3.12, one shared interpreter thread on 3.11), the per-core event
//! and action rings, the timer service, the hot-reload watcher, and clean shutdown
//! (feasibility-python.md §2, §5, §9; siphon-core-api.md §4.3 for reload semantics).
//!
//! Threading contract: [`Host::start`] and [`Host::shutdown`] run on the same thread (the one
//! that initialised Python). [`HostHandle::submit`]/[`HostHandle::poll`] for core `k` are called by core
//! `k`'s reactor only (single producer / single consumer per ring).

use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_queue::{ArrayQueue, SegQueue};
use pyo3_ffi as ffi;
use thiserror::Error;

use crate::event::{Actions, Control, Event, OutboundRequest};
use crate::message::SipMessage;
use crate::shared::{
    Auth, Cache, MetricKind, Metrics, RateLimiter, Registrar, RegistrarConfig, lock,
};
use crate::worker::{self, LogLevel};

/// Log sink: (level, worker index, message). The node routes this to `tracing`.
pub type LogSink = Arc<dyn Fn(LogLevel, usize, &str) + Send + Sync>;

/// Called after actions were pushed for a core (the reactor's doorbell); `usize::MAX` means
/// an outbound request is waiting ([`HostHandle::poll_outbound`]).
pub type Doorbell = Arc<dyn Fn(usize) + Send + Sync>;

/// `script.reload` (siphon-core-api.md §2, §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadMode {
    /// inotify on the script directory and include paths, debounced 50 ms.
    Auto,
    /// Only on [`HostHandle::reload`] (the node calls it on SIGHUP).
    Sighup,
}

/// Everything the host needs; built by the node from `siphon.yaml`.
#[derive(Clone)]
pub struct HostConfig {
    /// Number of cores (reactors); one event ring and one action ring each.
    pub cores: usize,
    /// CPU to pin worker `k` to (`tuning`); empty = no pinning.
    pub cpus: Vec<usize>,
    /// The app script (`script.path`).
    pub script_path: PathBuf,
    /// Extra directories on `sys.path` and watched for reload (`script.include_paths`).
    pub include_paths: Vec<PathBuf>,
    /// Reload trigger.
    pub reload: ReloadMode,
    /// Capacity of each ring.
    pub queue_capacity: usize,
    /// How long an idle worker spins before parking.
    pub spin: Duration,
    /// `domain.local` (`SipUri.is_local`).
    pub local_domains: Vec<String>,
    /// Our own SIP addresses as `host:port` (listen and advertised): what `loose_route()`
    /// accepts as a Route naming us.
    pub local_addrs: Vec<String>,
    /// `auth.realm`.
    pub auth_realm: String,
    /// `auth.users` (name → password).
    pub auth_users: HashMap<String, String>,
    /// `auth.digest_uri_check`.
    pub auth_uri_check: siphon_sip::auth::DigestUriCheck,
    /// The node's listen and advertised addresses: with `local_domains`, the hosts a relaxed
    /// digest `uri` directive may name instead of the Request-URI's host.
    pub own_addresses: Vec<String>,
    /// `registrar:` limits.
    pub registrar: RegistrarConfig,
    /// `registrar.backend` and its settings (issue 18).
    pub registrar_backend: crate::state::RegistrarBackend,
    /// `cache:` entries; one with a URL is kept on Redis too.
    pub caches: Vec<crate::state::CacheSpec>,
    /// `auth.nonce_secret` (random per start when `None`).
    pub auth_nonce_secret: Option<String>,
    /// `auth.nonce_ttl_secs` (the digest default, 300 s, when `None`).
    pub auth_nonce_ttl: Option<Duration>,
    /// `auth.algorithms`: offered in this order (empty: MD5 then SHA-256).
    pub auth_algorithms: Vec<siphon_sip::auth::Algorithm>,
    /// `auth.udp_challenge`: a 401/407 over UDP offers one challenge (`Offer::One`, the
    /// default: a spoofed request draws no more than its own size) or all.
    pub auth_udp_challenge: siphon_sip::auth::Offer,
    /// Limits of the presence store (`presence` namespace).
    pub presence: crate::presence::PresenceLimits,
    /// Names from `cache:` (in-memory here).
    pub cache_names: Vec<String>,
    /// The `script_config:` document for the `config` namespace.
    pub script_config: serde_json::Value,
    /// The loaded `smpp.yaml` as scripts read it (`siphon.smpp._config`); `null` when none.
    #[cfg(feature = "smpp")]
    pub smpp_config: serde_json::Value,
    /// What scripts read as `siphon.http._config` (`listen_addrs`, `client_names`); `null`
    /// when `extensions.http` is not set.
    #[cfg(feature = "http")]
    pub http_config: serde_json::Value,
    /// Where `http.Client` calls go (the node's HTTP runtime); `None` without `extensions.http`.
    #[cfg(feature = "http")]
    pub http_sink: Option<crate::http::HttpSink>,
    /// Run one shared interpreter even when own-GIL subinterpreters are available.
    pub force_shared_interpreter: bool,
    /// Inline placement: no worker threads; each reactor thread creates its core's interpreter
    /// with [`HostHandle::inline_worker`] and calls [`InlineWorker::turn`] every loop turn
    /// (DESIGN.md: placement is a setting, the rings stay). Needs per-core interpreters.
    pub inline: bool,
    /// Account worker CPU time per batch ([`HostHandle::worker_stats`]); costs two clock
    /// reads per batch, so it is for benchmarks.
    pub account_cpu: bool,
    /// Script fault watchdog thresholds (`script.handler_stall_*`).
    pub stall: crate::watchdog::StallConfig,
    /// Log sink.
    pub log: LogSink,
    /// Optional doorbell after actions are pushed.
    pub doorbell: Option<Doorbell>,
    /// Called with each core of a worker the watchdog just marked stalled (after its
    /// doorbell): inline placement hands that core's reactor loop to a standby thread.
    pub on_stall: Option<Doorbell>,
    /// Caps of the shared tables (`limits:`).
    pub limits: crate::limits::HostLimits,
    /// Told the outcome of every digest check with credentials (`security.failed_auth_ban`).
    pub auth_observer: Option<AuthObserver>,
    /// Called on a worker thread once it has had no event for [`WORKER_IDLE_RELEASE`] after
    /// some work (the node gives the thread's freed allocator pages back to the OS).
    pub idle_hook: Option<fn()>,
}

/// How long a worker goes without events before [`HostConfig::idle_hook`] runs.
pub const WORKER_IDLE_RELEASE: Duration = Duration::from_secs(1);

/// What a digest check with credentials in the request ended as, and where it came from:
/// `(source, reliable transport, accepted)`.
pub type AuthObserver = Arc<dyn Fn(std::net::SocketAddr, bool, bool) + Send + Sync>;

impl std::fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostConfig")
            .field("cores", &self.cores)
            .field("script_path", &self.script_path)
            .finish_non_exhaustive()
    }
}

impl HostConfig {
    /// Defaults for `cores` cores running `script`, logging to stderr.
    pub fn new(cores: usize, script: impl Into<PathBuf>) -> Self {
        Self {
            cores: cores.max(1),
            cpus: Vec::new(),
            script_path: script.into(),
            include_paths: Vec::new(),
            reload: ReloadMode::Sighup,
            queue_capacity: 4096,
            spin: Duration::from_micros(50),
            local_domains: vec!["example.com".into()],
            local_addrs: Vec::new(),
            auth_realm: "example.com".into(),
            auth_users: HashMap::new(),
            auth_uri_check: siphon_sip::auth::DigestUriCheck::Relaxed,
            own_addresses: Vec::new(),
            registrar: RegistrarConfig::default(),
            registrar_backend: crate::state::RegistrarBackend::Memory,
            caches: Vec::new(),
            auth_nonce_secret: None,
            auth_nonce_ttl: None,
            auth_algorithms: Vec::new(),
            auth_udp_challenge: siphon_sip::auth::Offer::One,
            presence: crate::presence::PresenceLimits::default(),
            cache_names: vec!["default".into()],
            script_config: serde_json::Value::Object(serde_json::Map::new()),
            #[cfg(feature = "smpp")]
            smpp_config: serde_json::Value::Null,
            #[cfg(feature = "http")]
            http_config: serde_json::Value::Null,
            #[cfg(feature = "http")]
            http_sink: None,
            force_shared_interpreter: false,
            account_cpu: false,
            inline: false,
            stall: crate::watchdog::StallConfig::default(),
            log: Arc::new(|lvl, w, msg| eprintln!("[{} worker={w}] {msg}", lvl.as_str())),
            doorbell: None,
            on_stall: None,
            limits: crate::limits::HostLimits::default(),
            auth_observer: None,
            idle_hook: None,
        }
    }
}

/// Why the host could not start.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HostError {
    /// Python was already initialised by this process (one host per process).
    #[error("the scripting host is already running in this process")]
    AlreadyStarted,
    /// A worker could not create its interpreter or load the script.
    #[error("script worker {worker} failed to start: {reason}")]
    Worker {
        /// Worker index.
        worker: usize,
        /// What went wrong (compile error, import error, interpreter creation).
        reason: String,
    },
    /// The registrar store or a Redis link could not be set up (bad file, bad URL).
    #[error("state backend: {0}")]
    Store(String),
    /// The script file cannot be read.
    #[error("cannot read script {path}: {source}")]
    Script {
        /// Path given.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
}

/// How the interpreters are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One own-GIL subinterpreter per core (Python ≥ 3.12).
    PerCore,
    /// One interpreter on one thread serving every core (Python 3.11 or forced).
    Shared,
}

pub(crate) struct Lane {
    pub(crate) inbound: ArrayQueue<Event>,
    pub(crate) outbound: ArrayQueue<Actions>,
    /// Inline placement only: results that found `outbound` full. Its only consumer is the
    /// thread that produces them, so waiting for room would never end (findings §3); bounded
    /// by the events and completions one turn handles.
    pub(crate) overflow: SegQueue<Actions>,
    /// SMPP events (reactor → worker) and answers/sends (worker → reactor).
    pub(crate) smpp_in: ArrayQueue<crate::smpp::SmppEvent>,
    pub(crate) smpp_out: ArrayQueue<crate::smpp::SmppOut>,
}

pub(crate) struct WorkerShared {
    pub(crate) control: SegQueue<Control>,
    pub(crate) sleeping: AtomicBool,
    pub(crate) thread: OnceLock<std::thread::Thread>,
    pub(crate) loaded_gen: AtomicU64,
    pub(crate) last_reload_ok: AtomicBool,
    /// Nanoseconds spent in non-empty batches (the worker's busy time).
    pub(crate) busy_ns: AtomicU64,
    /// Events and timer callbacks handled.
    pub(crate) events: AtomicU64,
    /// Wall-clock nanoseconds spent in turns that handled something (always accounted: one
    /// clock read per such turn).
    pub(crate) work_ns: AtomicU64,
    /// Lowest commit ticket among the 200 OKs this worker holds (`u64::MAX`: none).
    pub(crate) held_min: AtomicU64,
    /// Busy marks read by the fault watchdog.
    pub(crate) watch: crate::watchdog::WorkerWatch,
    /// Handlers suspended on this worker (its asyncio tasks holding an event), at the end of
    /// its last turn.
    pub(crate) suspended: AtomicU64,
}

/// Engine counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events dispatched.
    pub events: AtomicU64,
    /// Script exceptions.
    pub errors: AtomicU64,
    /// Suspended handlers cancelled because the node answered without them.
    pub cancelled: AtomicU64,
}

pub(crate) struct Shared {
    pub(crate) cfg: HostConfig,
    /// Origin of the watchdog's busy stamps.
    pub(crate) epoch: Instant,
    pub(crate) own_gil: bool,
    pub(crate) lanes: Vec<Lane>,
    pub(crate) workers: Vec<WorkerShared>,
    pub(crate) lane_worker: Vec<usize>,
    pub(crate) generation: AtomicU64,
    pub(crate) shutdown: AtomicBool,
    pub(crate) cache: Cache,
    pub(crate) registrar: Registrar,
    pub(crate) presence: crate::presence::Presence,
    pub(crate) auth: Auth,
    pub(crate) rate: RateLimiter,
    pub(crate) metrics: Metrics,
    pub(crate) limit_hits: Arc<crate::limits::LimitHits>,
    pub(crate) stats: Stats,
    pub(crate) timers: Timers,
    pub(crate) log: LogSink,
    pub(crate) outbound: SegQueue<OutboundRequest>,
    pub(crate) next_token: AtomicU64,
    /// The route table core 0 published at its last successful load, and its version.
    pub(crate) http_routes: Mutex<(u64, Vec<crate::http::RouteDef>)>,
    /// Interpreters whose first load finished, `@http.on_startup` hooks included.
    pub(crate) http_started: AtomicU64,
    /// `auth_user` an event starts with, by event id ([`HostHandle::preset_auth_user`]);
    /// `presets` is its length, so the per-event check is one atomic load when it is empty.
    pub(crate) preset_auth: Mutex<HashMap<u64, String>>,
    pub(crate) presets: AtomicU64,
}

impl Shared {
    /// The `auth_user` preset for event `id`, taken (at most once).
    pub(crate) fn take_preset_auth(&self, id: u64) -> Option<String> {
        if self.presets.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut g = lock(&self.preset_auth);
        let user = g.remove(&id);
        self.presets.store(g.len() as u64, Ordering::Release);
        user
    }

    pub(crate) fn wake(&self, worker: usize) {
        if self.cfg.inline {
            // Inline placement: the reactor thread drives this interpreter, so timers and
            // completions must wake the reactor (its doorbell), not a worker thread.
            if let Some(bell) = &self.cfg.doorbell {
                bell(worker);
            }
            return;
        }
        let w = &self.workers[worker];
        if w.sleeping.load(Ordering::SeqCst) {
            if let Some(t) = w.thread.get() {
                t.unpark();
            }
        }
    }

    /// Push a result to its core's ring; returns the core. The doorbell is rung by the
    /// caller once per batch ([`Shared::ring`]), or here when the ring is full.
    pub(crate) fn push_actions(&self, mut act: Actions) -> usize {
        let core = act.core.min(self.lanes.len() - 1);
        let ring = &self.lanes[core].outbound;
        // Backpressure: the reactor drains its ring every loop turn; make sure it is awake.
        let mut rung = false;
        while let Err(a) = ring.push(act) {
            act = a;
            if self.cfg.inline {
                // The reactor that drains this ring is the calling thread.
                self.lanes[core].overflow.push(act);
                return core;
            }
            if self.shutdown.load(Ordering::Relaxed) {
                return core;
            }
            if !rung {
                self.ring(core);
                rung = true;
            }
            std::thread::yield_now();
        }
        core
    }

    /// Push an SMPP answer or send to its core's ring (backpressure as [`Shared::push_actions`]).
    pub(crate) fn push_smpp(&self, mut out: crate::smpp::SmppOut) -> usize {
        let core = out.core().min(self.lanes.len() - 1);
        let ring = &self.lanes[core].smpp_out;
        let mut rung = false;
        while let Err(o) = ring.push(out) {
            out = o;
            if self.shutdown.load(Ordering::Relaxed) {
                return core;
            }
            if !rung {
                self.ring(core);
                rung = true;
            }
            std::thread::yield_now();
        }
        core
    }

    /// Ring core `core`'s doorbell (results are waiting in its ring).
    pub(crate) fn ring(&self, core: usize) {
        if let Some(d) = &self.cfg.doorbell {
            d(core);
        }
    }
}

/// The Contact of the node's NOTIFYs: `sip:` and its first listen or advertised address that
/// names a host (not a wildcard bind).
fn notifier_contact(addrs: &[String]) -> String {
    let named = addrs.iter().find(|a| {
        a.parse::<std::net::SocketAddr>()
            .map_or(true, |s| !s.ip().is_unspecified())
    });
    format!("sip:{}", named.map_or("127.0.0.1", String::as_str))
}

impl Shared {
    /// An outbound request for a NOTIFY (fire and forget, sent by whichever core takes it).
    pub(crate) fn notify_request(&self, n: crate::presence::Notify) -> OutboundRequest {
        OutboundRequest {
            token: self.next_token.fetch_add(1, Ordering::Relaxed),
            worker: 0,
            method: "NOTIFY".into(),
            ruri: n.ruri,
            headers: n.headers,
            body: n.body,
            next_hop: None,
            wait_for_response: false,
            timeout_ms: 0,
        }
    }

    /// Queue NOTIFYs raised outside any event (expiry, a timer callback) and ring core 0.
    pub(crate) fn send_notifies(&self, notifies: Vec<crate::presence::Notify>) {
        if notifies.is_empty() {
            return;
        }
        for n in notifies {
            let r = self.notify_request(n);
            self.outbound.push(r);
        }
        if let Some(d) = &self.cfg.doorbell {
            d(usize::MAX);
        }
    }
}

/// How often expired registrar bindings are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// (deadline, sequence, worker, token), earliest first.
type TimerEntry = std::cmp::Reverse<(Instant, u64, usize, u64)>;

/// One-shot timers for `timer.set`/`timer.every`/`timer.sleep`: fire by posting the token to
/// the owning worker's control queue.
pub(crate) struct Timers {
    heap: Mutex<BinaryHeap<TimerEntry>>,
    cv: Condvar,
    seq: AtomicU64,
}

impl Timers {
    /// Arm a timer; false (nothing armed) when `cap` timers are pending already.
    pub(crate) fn schedule(&self, worker: usize, token: u64, after: Duration, cap: usize) -> bool {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        {
            let mut heap = lock(&self.heap);
            if heap.len() >= cap {
                return false;
            }
            heap.push(std::cmp::Reverse((
                Instant::now() + after,
                seq,
                worker,
                token,
            )));
        }
        self.cv.notify_one();
        true
    }

    fn run(shared: &Shared) {
        let t = &shared.timers;
        let mut heap = lock(&t.heap);
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        loop {
            if shared.shutdown.load(Ordering::Acquire) {
                return;
            }
            let now = Instant::now();
            if now >= next_sweep {
                // Registrar expiry: `@registrar.on_change(..., "expired", ...)` runs on worker 0.
                next_sweep = now + SWEEP_EVERY;
                drop(heap);
                shared.send_notifies(shared.presence.sweep(now));
                for (aor, kind) in shared.registrar.sweep() {
                    shared.workers[0]
                        .control
                        .push(Control::Registrar(aor, kind));
                    shared.wake(0);
                }
                heap = lock(&t.heap);
                continue;
            }
            let wait = match heap.peek() {
                Some(std::cmp::Reverse((at, _, w, token))) if *at <= now => {
                    let (w, token) = (*w, *token);
                    heap.pop();
                    shared.workers[w].control.push(Control::Timer(token));
                    shared.wake(w);
                    continue;
                }
                Some(std::cmp::Reverse((at, ..))) => *at - now,
                None => Duration::from_millis(200),
            };
            let wait = wait.min(next_sweep.saturating_duration_since(now));
            heap =
                t.cv.wait_timeout(heap, wait.min(Duration::from_millis(200)))
                    .map_or_else(|e| e.into_inner().0, |r| r.0);
        }
    }
}

/// Thread-safe access to a running host: rings, reload, metrics, shared state.
#[derive(Clone)]
pub struct HostHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HostHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostHandle")
            .field("cores", &self.shared.lanes.len())
            .finish_non_exhaustive()
    }
}

impl HostHandle {
    /// Number of cores (rings).
    pub fn cores(&self) -> usize {
        self.shared.lanes.len()
    }

    /// Queue an event on its core's ring; gives it back when the ring is full. With inline
    /// placement, call it on that core's reactor thread (which then runs the interpreter
    /// before it sleeps): nothing is woken.
    pub fn submit(&self, ev: Event) -> Result<(), Event> {
        let core = ev.core;
        let Some(lane) = self.shared.lanes.get(core) else {
            return Err(ev);
        };
        lane.inbound.push(ev)?;
        // Inline placement: the submitter is this lane's own reactor, which gives the
        // interpreter its turn before it sleeps (`InlineWorker::has_work`); a doorbell here
        // would only post a message to itself, an eventfd write while it dispatches (its
        // doorbell says "asleep" until the wait's completions are handled) and one more loop
        // turn per script event.
        if !self.shared.cfg.inline {
            self.shared.wake(self.shared.lane_worker[core]);
        }
        Ok(())
    }

    /// Queue an SMPP event on its core's ring; gives it back when the ring is full.
    pub fn submit_smpp(
        &self,
        ev: crate::smpp::SmppEvent,
    ) -> Result<(), Box<crate::smpp::SmppEvent>> {
        let core = ev.core;
        let Some(lane) = self.shared.lanes.get(core) else {
            return Err(Box::new(ev));
        };
        lane.smpp_in.push(ev).map_err(Box::new)?;
        // Inline placement: the submitter is this lane's own reactor (its SMPP sessions), whose
        // next loop turn drives the interpreter before it sleeps; a doorbell per PDU would only
        // add a message to itself. Events queued after the interpreter's turn in a loop turn
        // need [`HostHandle::wake_smpp`].
        if !self.shared.cfg.inline {
            self.shared.wake(self.shared.lane_worker[core]);
        }
        Ok(())
    }

    /// Wake core `core`'s interpreter for SMPP events queued since its last turn (one doorbell
    /// for many events; with worker threads `submit_smpp` has rung it already).
    pub fn wake_smpp(&self, core: usize) {
        if let Some(w) = self.shared.lane_worker.get(core) {
            self.shared.wake(*w);
        }
    }

    /// Take one SMPP answer or send for `core`.
    pub fn poll_smpp(&self, core: usize) -> Option<crate::smpp::SmppOut> {
        self.shared.lanes.get(core)?.smpp_out.pop()
    }

    /// Deliver the response to an SMPP request a script sent (`deliver_to`, ...); the
    /// waiting coroutine resumes on its worker.
    pub fn complete_smpp(&self, worker: usize, token: u64, status: u32, message_id: String) {
        if let Some(w) = self.shared.workers.get(worker) {
            w.control.push(Control::Smpp(token, status, message_id));
            self.shared.wake(worker);
        }
    }

    /// Take one finished result for `core`.
    pub fn poll(&self, core: usize) -> Option<Actions> {
        let lane = self.shared.lanes.get(core)?;
        lane.outbound.pop().or_else(|| lane.overflow.pop())
    }

    /// Whether `core`'s script worker is stuck in one turn past `script.handler_stall_shed_ms`
    /// (a handler looping or blocked): its reactor should answer new requests itself.
    pub fn stalled(&self, core: usize) -> bool {
        self.shared
            .lane_worker
            .get(core)
            .and_then(|w| self.shared.workers.get(*w))
            .is_some_and(|w| w.watch.is_stalled())
    }

    /// The cores whose script worker is stalled now (`/health`).
    pub fn stalled_cores(&self) -> Vec<usize> {
        (0..self.shared.lanes.len())
            .filter(|c| self.stalled(*c))
            .collect()
    }

    /// Id of the event `core`'s worker dispatched last (the one a stuck synchronous handler
    /// is running).
    pub fn current_event(&self, core: usize) -> Option<u64> {
        let w = self.shared.lane_worker.get(core)?;
        let ws = self.shared.workers.get(*w)?;
        Some(ws.watch.current_event.load(Ordering::Relaxed))
    }

    /// Events and callbacks `core`'s script worker has handled since start, and the wall-clock
    /// nanoseconds its turns that handled them took: its rate per second of work, read by the
    /// reactor's overload estimate (per second of wall time it would only be the offered load).
    pub fn worker_load(&self, core: usize) -> (u64, u64) {
        self.shared
            .lane_worker
            .get(core)
            .and_then(|w| self.shared.workers.get(*w))
            .map_or((0, 0), |w| {
                (
                    w.events.load(Ordering::Relaxed),
                    w.work_ns.load(Ordering::Relaxed),
                )
            })
    }

    /// Events waiting in `core`'s ring for its script worker.
    pub fn queue_depth(&self, core: usize) -> usize {
        self.shared.lanes.get(core).map_or(0, |l| l.inbound.len())
    }

    /// Ask every worker to reload the script at its next batch boundary (SIGHUP path).
    /// Returns the generation to pass to [`HostHandle::wait_reloaded`].
    pub fn reload(&self) -> u64 {
        request_reload(&self.shared)
    }

    /// Wait until every worker has processed reload generation `generation_no`; returns how many
    /// workers kept their old handlers because the new script failed, or None on timeout.
    pub fn wait_reloaded(&self, generation_no: u64, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let ws = &self.shared.workers;
            if ws
                .iter()
                .all(|w| w.loaded_gen.load(Ordering::Acquire) >= generation_no)
            {
                return Some(
                    ws.iter()
                        .filter(|w| !w.last_reload_ok.load(Ordering::Acquire))
                        .count(),
                );
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Per worker: (events handled, CPU nanoseconds in non-empty batches; 0 unless
    /// `account_cpu`). events / busy is the capacity of one core's interpreter, independent of
    /// the feeding side and of other load on the host.
    pub fn worker_stats(&self) -> Vec<(u64, u64)> {
        self.shared
            .workers
            .iter()
            .map(|w| {
                (
                    w.events.load(Ordering::Relaxed),
                    w.busy_ns.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Create core `core`'s interpreter on the calling (reactor) thread for inline placement.
    /// Drop it on the same thread before [`Host::shutdown`].
    pub fn inline_worker(&self, core: usize) -> Result<InlineWorker, HostError> {
        if !self.shared.cfg.inline || core >= self.shared.lanes.len() {
            return Err(HostError::Worker {
                worker: core,
                reason: "not an inline-placement core".into(),
            });
        }
        worker::WorkerCore::start(&self.shared, core, vec![core])
            .map(|core| InlineWorker { core })
            .map_err(|reason| HostError::Worker {
                worker: core,
                reason,
            })
    }

    /// Take one request a script asked to send (`proxy.send_request`).
    pub fn poll_outbound(&self) -> Option<OutboundRequest> {
        self.shared.outbound.pop()
    }

    /// Deliver the final response of an outbound request (`None`: it failed or timed out);
    /// the waiting coroutine resumes on its worker.
    pub fn complete_outbound(&self, worker: usize, token: u64, reply: Option<SipMessage>) {
        if let Some(w) = self.shared.workers.get(worker) {
            w.control
                .push(Control::Response(token, reply.map(Arc::new)));
            self.shared.wake(worker);
        }
    }

    /// Run a route handler for an inbound HTTP request on `core`'s interpreter; `respond`
    /// gets the answer once (never, when the request is cancelled first). Any thread.
    pub fn submit_http(
        &self,
        core: usize,
        req: crate::http::HttpInbound,
        respond: crate::http::Responder,
    ) {
        let worker = self
            .shared
            .lane_worker
            .get(core)
            .copied()
            .unwrap_or_default();
        if let Some(w) = self.shared.workers.get(worker) {
            w.control.push(Control::HttpRequest(
                Box::new(req),
                crate::http::ResponderBox(respond),
            ));
            self.shared.wake(worker);
        }
    }

    /// The node finished SIP event `id` of `core` without the script (it answered 408 at
    /// `transaction.timeout_secs` / `invite_timeout_secs`, or 503 for a stalled worker, or the
    /// transaction ended): a handler still suspended on it is cancelled (asyncio: its await
    /// raises `CancelledError`, its `finally` blocks run) and its slot is freed. Counted in
    /// `siphon_script_cancelled_total`. A handler that already finished is left alone.
    pub fn cancel_event(&self, core: usize, id: u64) {
        let Some(&worker) = self.shared.lane_worker.get(core) else {
            return;
        };
        if let Some(w) = self.shared.workers.get(worker) {
            w.control.push(Control::Cancel(id));
            self.shared.wake(worker);
        }
    }

    /// Cancel the handler of inbound request `id` on `core` (the node answered 504).
    pub fn cancel_http(&self, core: usize, id: u64) {
        let worker = self
            .shared
            .lane_worker
            .get(core)
            .copied()
            .unwrap_or_default();
        if let Some(w) = self.shared.workers.get(worker) {
            w.control.push(Control::HttpCancel(id));
            self.shared.wake(worker);
        }
    }

    /// The route table of the loaded script (core 0's) and its version (bumped by every
    /// load that registered routes anew).
    pub fn http_routes(&self) -> (u64, Vec<crate::http::RouteDef>) {
        lock(&self.shared.http_routes).clone()
    }

    /// How many interpreters finished their first load and its `@http.on_startup` hooks
    /// (async ones to the end): the node binds HTTP listeners once all [`Self::workers`] did.
    pub fn http_started(&self) -> usize {
        usize::try_from(self.shared.http_started.load(Ordering::Acquire)).unwrap_or(usize::MAX)
    }

    /// Run the `@http.on_shutdown` hooks on every core (SIGTERM drain).
    pub fn http_shutdown(&self) {
        for (i, w) in self.shared.workers.iter().enumerate() {
            w.control.push(Control::HttpShutdown);
            self.shared.wake(i);
        }
    }

    /// Number of script workers (interpreters): HTTP requests are spread over these.
    pub fn workers(&self) -> usize {
        self.shared.workers.len()
    }

    /// Current reload generation (bumped by [`HostHandle::reload`] and the inotify watcher).
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    /// Prometheus text of the script metrics registry: every `metrics.counter/gauge/histogram`
    /// a script declared plus `siphon_script_reloads_total{result}`. The engine counters
    /// (`siphon_script_executions_total`, `siphon_script_errors_total`) are not in it: the
    /// node exports those itself; read them with [`HostHandle::counters`].
    pub fn render_metrics(&self) -> String {
        let mut out = self.shared.metrics.render();
        let mut state = String::new();
        self.shared.registrar.render_metrics(&mut state);
        self.shared.cache.render_metrics(&mut state);
        if !state.is_empty() {
            out.push_str(crate::state::STATS_HEADER);
            out.push_str(&state);
        }
        out
    }

    /// (events dispatched, script exceptions) since start.
    pub fn counters(&self) -> (u64, u64) {
        let s = &self.shared.stats;
        (
            s.events.load(Ordering::Relaxed),
            s.errors.load(Ordering::Relaxed),
        )
    }

    /// `siphon_limit_hits_total{limit=...}` rows of the host's tables (see
    /// [`Self::render_limits_gauges`] for their usage).
    pub fn render_limits_rows(&self, o: &mut String) {
        self.shared.limit_hits.render(o);
    }

    /// Usage gauges of the host's capped tables.
    pub fn render_limits_gauges(&self, o: &mut String) {
        use std::fmt::Write as _;
        let s = &self.shared;
        let (entries, bytes) = s.cache.usage();
        let timers = lock(&s.timers.heap).len();
        for (name, help, v) in [
            (
                "siphon_cache_entries",
                "Entries in the script cache",
                entries,
            ),
            (
                "siphon_cache_bytes",
                "Bytes held by the script cache",
                bytes,
            ),
            (
                "siphon_rate_limit_keys",
                "Keys proxy.rate_limit remembers",
                s.rate.len(),
            ),
            ("siphon_script_timers", "Pending script timers", timers),
            (
                "siphon_script_suspended",
                "Handlers suspended on an await, all interpreters",
                s.workers
                    .iter()
                    .map(|w| w.suspended.load(Ordering::Relaxed) as usize)
                    .sum(),
            ),
        ] {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(
            o,
            "# HELP siphon_script_cancelled_total Suspended handlers cancelled because the node \
             answered without them (transaction timeout, stalled worker, transaction gone)\n\
             # TYPE siphon_script_cancelled_total counter\n\
             siphon_script_cancelled_total {}",
            s.stats.cancelled.load(Ordering::Relaxed)
        );
    }

    /// Value of a metric series (tests, admin API).
    pub fn metric_value(&self, name: &str, labels: &[&str]) -> Option<f64> {
        self.shared.metrics.value(name, labels)
    }

    /// The shared registrar (the admin API reads it).
    pub fn registrar(&self) -> &Registrar {
        &self.shared.registrar
    }

    /// The shared cache.
    pub fn cache(&self) -> &Cache {
        &self.shared.cache
    }

    /// Add or replace a digest user (`realm` `None`: every realm), as `auth.users` does.
    pub fn add_auth_user(&self, realm: Option<&str>, username: &str, password: &str) {
        self.shared.auth.add_user(realm, username, password);
    }

    /// Make the event with this id start with `request.auth_user` set to `user`, as if an
    /// earlier step had authenticated it (the SDK's `send_request(auth_user=...)`). Call it
    /// before [`HostHandle::submit`]; the node itself presets nothing.
    pub fn preset_auth_user(&self, id: u64, user: &str) {
        let mut g = lock(&self.shared.preset_auth);
        g.insert(id, user.to_owned());
        self.shared.presets.store(g.len() as u64, Ordering::Release);
    }
}

/// A core's interpreter driven by its reactor thread (inline placement). Not `Send`: the
/// interpreter belongs to the thread that created it.
pub struct InlineWorker {
    core: worker::WorkerCore,
}

impl std::fmt::Debug for InlineWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineWorker").finish_non_exhaustive()
    }
}

impl InlineWorker {
    /// Drain up to one batch from this core's ring (plus timers and asyncio); returns the
    /// number of events and callbacks handled. Call it every reactor loop turn.
    pub fn turn(&mut self) -> usize {
        self.core.turn()
    }

    /// When the interpreter needs another [`InlineWorker::turn`] with no new event (asyncio
    /// timers such as `asyncio.sleep`, `wait_for`, `call_later`): the reactor arms a timer for
    /// it, or does not sleep at all for `Some(Duration::ZERO)`. `None`: everything it awaits
    /// completes through the core's doorbell (Rust timers, `proxy.send_request`).
    pub fn next_wake(&self) -> Option<Duration> {
        self.core.next_wake()
    }

    /// Whether work waits for the next [`InlineWorker::turn`] now: events, completions and
    /// timers queued for this core, held replies whose registrar write is durable, a reload.
    pub fn has_work(&self) -> bool {
        self.core.has_work()
    }
}

static STARTED: AtomicBool = AtomicBool::new(false);

/// How long [`Host::shutdown`] waits for script workers to finish their turn.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A running scripting host.
pub struct Host {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    aux: Vec<JoinHandle<()>>,
    main_ts: MainThreadState,
    mode: Mode,
}

struct MainThreadState(*mut ffi::PyThreadState);

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("mode", &self.mode)
            .field("cores", &self.shared.lanes.len())
            .finish_non_exhaustive()
    }
}

/// The Python version this host was built against, e.g. `3.13`.
pub fn python_version() -> &'static str {
    if cfg!(Py_3_13) {
        "3.13"
    } else if cfg!(Py_3_12) {
        "3.12"
    } else {
        "3.11"
    }
}

impl Host {
    /// Initialise CPython (with `_siphon` in the inittab), start the workers, load the script in
    /// every interpreter. Fails if any worker cannot load the script.
    pub fn start(cfg: HostConfig) -> Result<Self, HostError> {
        std::fs::metadata(&cfg.script_path).map_err(|e| HostError::Script {
            path: cfg.script_path.clone(),
            source: e,
        })?;
        if STARTED.swap(true, Ordering::SeqCst) {
            return Err(HostError::AlreadyStarted);
        }
        let own_gil = cfg!(Py_3_12) && !cfg.force_shared_interpreter;
        let mode = if own_gil { Mode::PerCore } else { Mode::Shared };
        let n_workers = if own_gil { cfg.cores } else { 1 };
        let log = Arc::clone(&cfg.log);
        if !own_gil {
            let why = if cfg!(Py_3_12) {
                "forced by configuration"
            } else {
                "Python 3.11 has no per-interpreter GIL"
            };
            log(
                LogLevel::Warn,
                0,
                &format!(
                    "DEGRADED SCRIPTING MODE: {why}; ONE shared interpreter on ONE thread serves all {} cores. \
                     Python handlers will not scale with cores. Build with Python >= 3.12 (3.13 recommended).",
                    cfg.cores
                ),
            );
        }
        let limit_hits = Arc::new(crate::limits::LimitHits::default());
        let state_log: crate::state::StateLog = {
            let log = Arc::clone(&log);
            Arc::new(move |err, msg: &str| {
                log(if err { LogLevel::Error } else { LogLevel::Info }, 0, msg);
            })
        };
        let (registrar, loaded) = Registrar::open(
            cfg.registrar.clone(),
            &cfg.registrar_backend,
            cfg.limits,
            Arc::clone(&limit_hits),
            Arc::clone(&state_log),
        )
        .map_err(HostError::Store)?;
        if cfg.registrar_backend != crate::state::RegistrarBackend::Memory {
            log(
                LogLevel::Info,
                0,
                &format!("registrar store open: {loaded} bindings loaded"),
            );
        }
        let cache = if cfg.caches.is_empty() {
            Cache::bounded(
                cfg.cache_names.clone(),
                cfg.limits.cache_entries,
                cfg.limits.cache_bytes,
                Arc::clone(&limit_hits),
            )
        } else {
            Cache::from_specs(
                &cfg.caches,
                cfg.limits.cache_entries,
                cfg.limits.cache_bytes,
                Arc::clone(&limit_hits),
                state_log,
            )
            .map_err(|e| HostError::Store(e.to_string()))?
        };
        let metrics = Metrics::bounded(cfg.limits.metric_series, Arc::clone(&limit_hits));
        metrics.declare(
            MetricKind::Counter,
            "siphon_script_reloads_total",
            "Script reloads by result",
            vec!["result".into()],
            None,
        );
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            own_gil,
            lanes: (0..cfg.cores)
                .map(|_| Lane {
                    inbound: ArrayQueue::new(cfg.queue_capacity),
                    outbound: ArrayQueue::new(cfg.queue_capacity),
                    overflow: SegQueue::new(),
                    smpp_in: ArrayQueue::new(cfg.queue_capacity),
                    smpp_out: ArrayQueue::new(cfg.queue_capacity),
                })
                .collect(),
            workers: (0..n_workers)
                .map(|_| WorkerShared {
                    control: SegQueue::new(),
                    sleeping: AtomicBool::new(false),
                    thread: OnceLock::new(),
                    loaded_gen: AtomicU64::new(0),
                    last_reload_ok: AtomicBool::new(true),
                    busy_ns: AtomicU64::new(0),
                    events: AtomicU64::new(0),
                    work_ns: AtomicU64::new(0),
                    held_min: AtomicU64::new(u64::MAX),
                    watch: crate::watchdog::WorkerWatch::default(),
                    suspended: AtomicU64::new(0),
                })
                .collect(),
            lane_worker: (0..cfg.cores)
                .map(|c| if own_gil { c } else { 0 })
                .collect(),
            generation: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            cache,
            registrar,
            presence: crate::presence::Presence::new(cfg.presence),
            auth: Auth::with_challenges(
                cfg.auth_realm.clone(),
                cfg.auth_users.clone(),
                cfg.auth_uri_check,
                cfg.local_domains
                    .iter()
                    .chain(&cfg.own_addresses)
                    .cloned()
                    .collect(),
                cfg.limits.nonce_windows,
                cfg.auth_nonce_secret.as_deref(),
                cfg.auth_nonce_ttl,
                &cfg.auth_algorithms,
                cfg.auth_udp_challenge,
            ),
            rate: RateLimiter::bounded(cfg.limits.rate_limit_keys, Arc::clone(&limit_hits)),
            metrics,
            limit_hits,
            stats: Stats::default(),
            outbound: SegQueue::new(),
            next_token: AtomicU64::new(1),
            http_routes: Mutex::new((0, Vec::new())),
            http_started: AtomicU64::new(0),
            preset_auth: Mutex::new(HashMap::new()),
            presets: AtomicU64::new(0),
            timers: Timers {
                heap: Mutex::new(BinaryHeap::new()),
                cv: Condvar::new(),
                seq: AtomicU64::new(0),
            },
            log,
            cfg,
        });
        shared
            .presence
            .set_contact(&notifier_contact(&shared.cfg.local_addrs));
        if let Some(commits) = shared.registrar.commits() {
            // A batch committed: wake the workers holding 200 OKs it covers (`u64::MAX`, a
            // nudge: every worker holding any, to check their commit timeouts).
            let weak = Arc::downgrade(&shared);
            commits.set_waker(Box::new(move |done| {
                if let Some(s) = weak.upgrade() {
                    for (w, ws) in s.workers.iter().enumerate() {
                        let held = ws.held_min.load(Ordering::Acquire);
                        if held != u64::MAX && held <= done {
                            s.wake(w);
                        }
                    }
                }
            }));
        }
        crate::native::prepare();
        // SAFETY: first and only initialisation in this process (STARTED guard); the inittab
        // entry is appended before Py_InitializeEx as CPython requires. Afterwards the main
        // thread state is released so worker threads can create their interpreters.
        let main_ts = unsafe {
            ffi::PyImport_AppendInittab(c"_siphon".as_ptr(), Some(crate::native::pyinit_siphon));
            ffi::Py_InitializeEx(0);
            ffi::PyEval_SaveThread()
        };
        let mut host = Self {
            shared: Arc::clone(&shared),
            threads: Vec::new(),
            aux: Vec::new(),
            main_ts: MainThreadState(main_ts),
            mode,
        };
        let mut failure = None;
        if shared.cfg.inline && !own_gil {
            failure = Some(HostError::Worker {
                worker: 0,
                reason: "inline placement needs one interpreter per core (Python >= 3.12, not forced shared)".into(),
            });
        }
        let spawn_workers = if shared.cfg.inline { 0 } else { n_workers };
        for w in 0..spawn_workers {
            if failure.is_some() {
                break;
            }
            let lanes: Vec<usize> = (0..shared.cfg.cores)
                .filter(|c| shared.lane_worker[*c] == w)
                .collect();
            let (tx, rx) = std::sync::mpsc::channel();
            let s = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("siphon-script-{w}"))
                .spawn(move || worker::run(s, w, lanes, tx));
            match spawned {
                Ok(t) => {
                    let _ = shared.workers[w].thread.set(t.thread().clone());
                    host.threads.push(t);
                    match rx.recv() {
                        Ok(Ok(())) => {}
                        Ok(Err(reason)) => failure = Some(HostError::Worker { worker: w, reason }),
                        Err(_) => {
                            failure = Some(HostError::Worker {
                                worker: w,
                                reason: "worker thread died".into(),
                            })
                        }
                    }
                }
                Err(e) => {
                    failure = Some(HostError::Worker {
                        worker: w,
                        reason: e.to_string(),
                    })
                }
            }
            if failure.is_some() {
                break;
            }
        }
        if let Some(e) = failure {
            host.stop();
            return Err(e);
        }
        let s = Arc::clone(&shared);
        if let Ok(t) = std::thread::Builder::new()
            .name("siphon-watchdog".into())
            .spawn(move || crate::watchdog::run(&s))
        {
            host.aux.push(t);
        }
        let s = Arc::clone(&shared);
        if let Ok(t) = std::thread::Builder::new()
            .name("siphon-timers".into())
            .spawn(move || Timers::run(&s))
        {
            host.aux.push(t);
        }
        if shared.cfg.reload == ReloadMode::Auto {
            let s = Arc::clone(&shared);
            if let Ok(t) = std::thread::Builder::new()
                .name("siphon-reload".into())
                .spawn(move || crate::reload::watch(&s))
            {
                host.aux.push(t);
            }
        }
        Ok(host)
    }

    /// Interpreter layout in use.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// A cloneable, thread-safe handle for the reactors (submit/poll), the reload trigger and
    /// the admin surface.
    pub fn handle(&self) -> HostHandle {
        HostHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Stop every thread; true when all ended. A worker still stuck in a handler after
    /// [`STOP_GRACE`] (blocked in C, or looping with the watchdog off) is left running: the
    /// process exits around it rather than wait for it (SIGTERM always exits).
    fn stop(&mut self) -> bool {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        for w in 0..self.shared.workers.len() {
            if let Some(t) = self.shared.workers[w].thread.get() {
                t.unpark();
            }
        }
        self.shared.timers.cv.notify_all();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline && self.threads.iter().any(|t| !t.is_finished()) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut all = true;
        for t in self.threads.drain(..) {
            if t.is_finished() {
                let _ = t.join();
            } else {
                all = false;
                let name = t.thread().name().unwrap_or("?").to_owned();
                (self.shared.log)(
                    LogLevel::Error,
                    0,
                    &format!("{name} is stuck in a script handler; exiting without it"),
                );
            }
        }
        for t in self.aux.drain(..) {
            let _ = t.join();
        }
        // Flush what the registrar store has pending, stop the Redis writers.
        self.shared.registrar.close();
        self.shared.cache.close();
        all
    }

    /// Stop the workers (each ends its own interpreter), then finalise Python where that is
    /// safe: 3.13+ runs `Py_FinalizeEx`; 3.12 skips it (it crashes after own-GIL
    /// subinterpreters used asyncio, feasibility-python.md §8.1) and the process should exit.
    /// Finalisation is also skipped when a worker is stuck in a handler (see `Host::stop`).
    pub fn shutdown(mut self) {
        let all = self.stop();
        if !all {
            return;
        }
        // SAFETY: all worker threads have ended their interpreters and exited; main_ts is the
        // thread state saved in start() on this same thread (contract of Host).
        unsafe {
            ffi::PyEval_RestoreThread(self.main_ts.0);
            if cfg!(Py_3_13) || !cfg!(Py_3_12) {
                ffi::Py_FinalizeEx();
            }
        }
    }

    /// Leave Python as it is and return: an inline reactor thread is stuck in a handler and
    /// still owns its interpreter, so nothing may be torn down under it (the process exits).
    pub fn abandon(mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.timers.cv.notify_all();
        for t in self.aux.drain(..) {
            let _ = t.join();
        }
        self.threads.clear();
    }
}

pub(crate) fn request_reload(shared: &Shared) -> u64 {
    let g = shared.generation.fetch_add(1, Ordering::AcqRel) + 1;
    for w in 0..shared.workers.len() {
        shared.wake(w);
        if let Some(t) = shared.workers[w].thread.get() {
            t.unpark();
        }
    }
    g
}
