//! Starting, running and stopping the reactors: backend choice, socket groups, pinned threads,
//! and the per-core loop shared by both backends.
//!
//! One loop turn: fire due timers → drain mesh and external queues (batch) →
//! `Handler::on_turn_end` → ring doorbells of cores we forwarded to → decide the wait (zero if
//! work is pending, else until the next timer) → announce sleep on the doorbell and re-check →
//! `Backend::turn` (submit this turn's commands, wait, dispatch completions).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::{BackendPref, Config, Steering};
use crate::cx::{Command, CoreState, Dispatch, Sink};
use crate::mesh::{Bell, Queue};
use crate::metrics::{BackendKind, ReactorMetrics, RuntimeInfo};
use crate::{Handler, sys};

/// The reactor contract both backends implement: own the sockets, execute queued commands,
/// wait for readiness/completions (sockets, doorbell) up to a timeout, and report events.
pub(crate) trait Backend {
    /// Submit `sink`'s queued commands, wait up to `timeout` (None: until an event), dispatch.
    fn turn<S: Sink>(&mut self, timeout: Option<Duration>, sink: &mut S) -> io::Result<()>;
    /// Close everything; in-flight kernel operations are cancelled and reaped before return.
    fn shutdown<S: Sink>(&mut self, sink: &mut S);
}

/// The backend a runtime chose, for every core (one `match` per loop turn).
// One per core, built once and never moved on the data path: boxing the larger variant would
// only add a pointer hop per turn.
#[allow(clippy::large_enum_variant)]
pub(crate) enum AnyBackend {
    Uring(crate::uring::UringBackend),
    Epoll(crate::epoll::EpollBackend),
}

impl Backend for AnyBackend {
    fn turn<S: Sink>(&mut self, timeout: Option<Duration>, sink: &mut S) -> io::Result<()> {
        match self {
            Self::Uring(b) => b.turn(timeout, sink),
            Self::Epoll(b) => b.turn(timeout, sink),
        }
    }

    fn shutdown<S: Sink>(&mut self, sink: &mut S) {
        match self {
            Self::Uring(b) => b.shutdown(sink),
            Self::Epoll(b) => b.shutdown(sink),
        }
    }
}

/// Where a core's thread runs: its index and the CPU it is pinned to.
pub(crate) struct Placed {
    pub(crate) core: usize,
    pub(crate) cpu: Option<usize>,
}

/// What a core's thread runs once its backend is up: build the handler (and guest), loop.
type Launch<M> = dyn Fn(Placed, AnyBackend, CoreState<M>) -> io::Result<()> + Send + Sync;

/// The fds one reactor owns, created on the starting thread so ports and groups are settled.
pub(crate) struct CoreSockets {
    pub(crate) udp: Vec<(OwnedFd, SocketAddr)>,
    pub(crate) tcp: Vec<(OwnedFd, SocketAddr)>,
}

/// State shared by all reactors of one runtime.
#[derive(Debug)]
pub(crate) struct Shared<M> {
    pub(crate) bells: Vec<Arc<Bell>>,
    /// `mesh[to][from]`.
    pub(crate) mesh: Vec<Vec<Queue<M>>>,
    pub(crate) external: Vec<Queue<M>>,
    pub(crate) stop: AtomicBool,
    pub(crate) metrics: Vec<Arc<ReactorMetrics>>,
    /// Connection caps, shared by every reactor.
    pub(crate) limiter: crate::limits::ConnLimiter,
    /// Per core: its guest's turn and standby ([`Runtime::start_with_guests`]).
    pub(crate) guests: Vec<crate::handover::GuestSlot>,
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// `cpus` was empty or longer than 256.
    #[error("need 1..=256 reactor cpus, got {0}")]
    BadCpuCount(usize),
    /// io_uring was forced but the probe failed.
    #[error("io_uring forced by config but unavailable: {0}")]
    UringUnavailable(String),
    /// A socket could not be created or bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: io::Error,
    },
    /// A reactor failed while setting up.
    #[error("reactor {core} failed to start: {source}")]
    Reactor {
        /// Core index.
        core: usize,
        /// Cause.
        source: io::Error,
    },
}

/// A cheap, cloneable, `Send` handle to a running runtime.
pub struct RuntimeHandle<M> {
    shared: Arc<Shared<M>>,
}

impl<M> Clone for RuntimeHandle<M> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<M: Send + 'static> RuntimeHandle<M> {
    /// Post a message to `core`'s [`Handler::on_message`] (with `from == None`). The doorbell is
    /// written only if that reactor sleeps. A full queue returns the message.
    pub fn send(&self, core: usize, msg: M) -> Result<(), M> {
        match self.shared.external.get(core) {
            Some(q) => q.push(msg),
            None => Err(msg),
        }
    }

    /// Number of reactors.
    pub fn cores(&self) -> usize {
        self.shared.bells.len()
    }

    /// Counters of reactor `core`.
    pub fn metrics(&self, core: usize) -> Option<&ReactorMetrics> {
        self.shared.metrics.get(core).map(|m| &**m)
    }

    /// Accepted connections open now and TLS handshakes in progress, all reactors.
    pub fn connections(&self) -> (usize, usize) {
        self.shared.limiter.usage()
    }

    /// Core `core`'s guest is stuck in its turn (its watchdog says so): the core's standby
    /// thread takes the loop over until that turn ends, if the turn began at least
    /// [`Config::handover_after`] ago. Nothing for a core without a guest.
    pub fn rescue(&self, core: usize) {
        if let Some(g) = self.shared.guests.get(core) {
            g.rescue();
        }
    }

    /// Ask every reactor to stop after its current turn.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for b in &self.shared.bells {
            b.ring();
        }
    }
}

/// A set of running reactors.
pub struct Runtime<M> {
    handle: RuntimeHandle<M>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    info: RuntimeInfo,
    udp_addrs: Vec<SocketAddr>,
    tcp_addrs: Vec<SocketAddr>,
}

fn choose_backend(pref: BackendPref) -> Result<RuntimeInfo, StartError> {
    Ok(match pref {
        BackendPref::Epoll => RuntimeInfo {
            backend: BackendKind::Epoll,
            reason: "forced by config (io_backend: epoll)".to_owned(),
            fell_back: false,
        },
        BackendPref::Uring => match crate::probe::probe() {
            Ok(_) => RuntimeInfo {
                backend: BackendKind::Uring,
                reason: "forced by config (io_backend: io_uring); probe passed".to_owned(),
                fell_back: false,
            },
            Err(why) => return Err(StartError::UringUnavailable(why)),
        },
        BackendPref::Auto => match crate::probe::probe() {
            Ok(_) => RuntimeInfo {
                backend: BackendKind::Uring,
                reason: "probe passed".to_owned(),
                fell_back: false,
            },
            Err(why) => RuntimeInfo {
                backend: BackendKind::Epoll,
                reason: why,
                fell_back: true,
            },
        },
    })
}

/// Per-core sockets, then the bound UDP and TCP addresses.
type Bound = (Vec<CoreSockets>, Vec<SocketAddr>, Vec<SocketAddr>);

fn bind_groups(config: &Config) -> Result<Bound, StartError> {
    let n = config.cpus.len();
    let mut cores: Vec<CoreSockets> = (0..n)
        .map(|_| CoreSockets {
            udp: Vec::new(),
            tcp: Vec::new(),
        })
        .collect();
    let mut udp_addrs = Vec::new();
    for want in &config.udp {
        let mut addr = *want;
        for (i, core) in cores.iter_mut().enumerate() {
            let fd =
                sys::udp_socket(&addr).map_err(|source| StartError::Listen { addr, source })?;
            if i == 0 {
                addr = sys::local_addr(fd.as_raw_fd())
                    .map_err(|source| StartError::Listen { addr, source })?;
                udp_addrs.push(addr);
                if config.steering == Steering::Cbpf && n > 1 {
                    sys::attach_cpu_cbpf(fd.as_raw_fd())
                        .map_err(|source| StartError::Listen { addr, source })?;
                }
                if let Steering::Program(prog) = &config.steering
                    && n > 1
                {
                    // Best effort: steering is an optimisation, never a reason not to start.
                    if let Err(e) = sys::attach_reuseport_cbpf(fd.as_raw_fd(), prog) {
                        tracing::warn!(%addr, error = %e, "UDP steering program refused; the group keeps the kernel's hash");
                    }
                }
            }
            if config.steering == Steering::IncomingCpu && n > 1 {
                // Best effort: steering is an optimisation, never a reason not to start.
                let _ = sys::set_incoming_cpu(fd.as_raw_fd(), config.cpus[i]);
            }
            core.udp.push((fd, addr));
        }
    }
    let mut tcp_addrs = Vec::new();
    for l in &config.tcp {
        let mut addr = l.addr;
        for (i, core) in cores.iter_mut().enumerate() {
            let fd = sys::tcp_listener(&addr, 1024)
                .map_err(|source| StartError::Listen { addr, source })?;
            if i == 0 {
                addr = sys::local_addr(fd.as_raw_fd())
                    .map_err(|source| StartError::Listen { addr, source })?;
                tcp_addrs.push(addr);
            }
            core.tcp.push((fd, addr));
        }
    }
    Ok((cores, udp_addrs, tcp_addrs))
}

impl<M: Send + 'static> Runtime<M> {
    /// Probe, bind, and start one pinned reactor per `config.cpus` entry. `factory(core)` builds
    /// each core's handler on its own thread (so handlers need not be `Send`).
    pub fn start<H, F>(config: Config, factory: F) -> Result<Self, StartError>
    where
        H: Handler<Msg = M>,
        F: Fn(usize) -> H + Send + Sync + 'static,
    {
        let spin = config.spin;
        Self::launch(
            config,
            false,
            Arc::new(move |p: Placed, b, st| run(Core::new(b, st, factory(p.core), spin))),
        )
    }

    /// Like [`Runtime::start`], but `factory(core)` may also return a [`crate::Guest`] that the
    /// core's thread runs between the two halves of every loop turn, with nothing of the
    /// reactor borrowed (an inline script interpreter). Each such core gets a parked standby
    /// thread on its CPU; [`RuntimeHandle::rescue`] makes it run the core's loop while the
    /// guest is stuck in a turn (handover.rs). The rings are shared by two threads, so they
    /// are set up without `SINGLE_ISSUER`/`DEFER_TASKRUN`; handlers must be `Send`.
    pub fn start_with_guests<H, F>(config: Config, factory: F) -> Result<Self, StartError>
    where
        H: Handler<Msg = M> + Send,
        F: Fn(usize) -> (H, Option<Box<dyn crate::Guest>>) + Send + Sync + 'static,
    {
        let spin = config.spin;
        let after = config.handover_after;
        Self::launch(
            config,
            true,
            Arc::new(move |p: Placed, b, st| {
                let (h, guest) = factory(p.core);
                let core = Core::new(b, st, h, spin);
                match guest {
                    Some(g) => crate::handover::run(core, g, p, after),
                    None => run(core),
                }
            }),
        )
    }

    fn launch(config: Config, shared_ring: bool, go: Arc<Launch<M>>) -> Result<Self, StartError> {
        let n = config.cpus.len();
        if n == 0 || n > 256 {
            return Err(StartError::BadCpuCount(n));
        }
        let info = choose_backend(config.backend)?;
        if info.fell_back {
            tracing::warn!(backend = "epoll", reason = %info.reason, "io_uring unavailable, falling back to epoll");
        } else {
            tracing::info!(backend = info.backend.as_str(), reason = %info.reason, "reactor I/O backend selected");
        }
        let (sockets, udp_addrs, tcp_addrs) = bind_groups(&config)?;
        let mut bells = Vec::with_capacity(n);
        for core in 0..n {
            bells.push(Arc::new(
                Bell::eventfd().map_err(|source| StartError::Reactor { core, source })?,
            ));
        }
        let shared = Arc::new(Shared {
            mesh: (0..n)
                .map(|to| {
                    (0..n)
                        .map(|_| Queue::new(config.mesh_capacity, bells[to].clone()))
                        .collect()
                })
                .collect(),
            external: (0..n)
                .map(|to| Queue::new(config.mesh_capacity, bells[to].clone()))
                .collect(),
            bells,
            limiter: crate::limits::ConnLimiter::new(config.limits),
            stop: AtomicBool::new(false),
            guests: (0..n).map(|_| Default::default()).collect(),
            metrics: (0..n)
                .map(|_| Arc::new(ReactorMetrics::default()))
                .collect(),
        });
        // Resolve core ids once, before any thread is pinned (feasibility pitfall: later calls
        // only see the caller's own affinity mask).
        let available: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .iter()
            .map(|c| c.id)
            .collect();
        let tls_servers: Vec<_> = config.tcp.iter().map(|l| l.tls.clone()).collect();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<(usize, io::Result<()>)>();
        let mut threads = Vec::with_capacity(n);
        for (core, socks) in sockets.into_iter().enumerate() {
            let cpu = config.cpus[core];
            let pin = config.pin && available.contains(&cpu);
            if config.pin && !pin {
                tracing::warn!(
                    core,
                    cpu,
                    "cpu not in this process's affinity mask; reactor left unpinned"
                );
            }
            let shared = shared.clone();
            let go = go.clone();
            let config = config.clone();
            let tls_servers = tls_servers.clone();
            let ready = ready_tx.clone();
            let backend = info.backend;
            let t = std::thread::Builder::new()
                .name(format!("{}-{core}", config.name))
                .spawn(move || {
                    if pin {
                        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
                    }
                    let st = CoreState::new(core, shared, config.connect_timeout, tls_servers);
                    let backend = match backend {
                        BackendKind::Uring => crate::uring::UringBackend::new(
                            &config,
                            socks,
                            &st.shared.bells[core],
                            core,
                            shared_ring,
                        )
                        .map(AnyBackend::Uring),
                        BackendKind::Epoll => {
                            crate::epoll::EpollBackend::new(&config, socks, &st.shared.bells[core])
                                .map(AnyBackend::Epoll)
                        }
                    };
                    match backend {
                        Ok(b) => {
                            let _ = ready.send((core, Ok(())));
                            let placed = Placed {
                                core,
                                cpu: pin.then_some(cpu),
                            };
                            go(placed, b, st)
                        }
                        Err(e) => {
                            let _ =
                                ready.send((core, Err(io::Error::new(e.kind(), e.to_string()))));
                            Err(e)
                        }
                    }
                })
                .map_err(|source| StartError::Reactor { core, source })?;
            threads.push(t);
        }
        drop(ready_tx);
        let rt = Self {
            handle: RuntimeHandle { shared },
            threads,
            info,
            udp_addrs,
            tcp_addrs,
        };
        for _ in 0..n {
            match ready_rx.recv() {
                Ok((_, Ok(()))) => {}
                Ok((core, Err(source))) => {
                    rt.handle.stop();
                    return Err(StartError::Reactor { core, source });
                }
                Err(_) => break,
            }
        }
        Ok(rt)
    }

    /// Backend in use and why.
    pub fn info(&self) -> &RuntimeInfo {
        &self.info
    }

    /// Bound UDP addresses, in [`Config::udp`] order (port 0 resolved).
    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    /// Bound TCP addresses, in [`Config::tcp`] order (port 0 resolved).
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    /// A handle for other threads.
    pub fn handle(&self) -> RuntimeHandle<M> {
        self.handle.clone()
    }

    /// Stop all reactors and wait for them; returns the first reactor error.
    pub fn shutdown(self) -> io::Result<()> {
        self.handle.stop();
        self.join()
    }

    /// Wait for all reactors to stop (after [`RuntimeHandle::stop`] or [`crate::Cx::stop_all`]).
    pub fn join(self) -> io::Result<()> {
        let mut first = Ok(());
        for t in self.threads {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("reactor thread panicked")));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

pub(crate) fn queues_pending<M>(shared: &Shared<M>, core: usize) -> bool {
    shared.mesh[core].iter().any(|q| !q.is_empty()) || !shared.external[core].is_empty()
}

/// One core's loop state: its backend, runtime state and handler, plus the turn's scratch.
/// Owned by the core's thread, or (with a guest) shared with its standby under a mutex.
pub(crate) struct Core<B, H: Handler> {
    pub(crate) backend: B,
    pub(crate) st: CoreState<H::Msg>,
    pub(crate) handler: H,
    /// `st.shared`, held here too so a turn borrows it beside `&mut st` (no clone per turn).
    shared: Arc<Shared<H::Msg>>,
    spin: Duration,
    fired: Vec<(crate::TimerId, crate::cx::TimerKind)>,
    msgs: Vec<H::Msg>,
}

impl<B: Backend, H: Handler> Core<B, H> {
    pub(crate) fn new(backend: B, st: CoreState<H::Msg>, handler: H, spin: Duration) -> Self {
        Self {
            shared: Arc::clone(&st.shared),
            backend,
            st,
            handler,
            spin,
            fired: Vec::new(),
            msgs: Vec::with_capacity(256),
        }
    }

    /// First half of a loop turn: due timers, then the mesh and external queues. Returns the
    /// turn's clock.
    pub(crate) fn turn_start(&mut self) -> std::time::Instant {
        let st = &mut self.st;
        st.now = std::time::Instant::now();
        crate::metrics::add(&st.metrics.turns, 1);
        let shared = &*self.shared;
        let core = st.core;
        let mut d = Dispatch {
            handler: &mut self.handler,
            st: &mut *st,
        };
        d.run_timers(&mut self.fired);
        for (from, q) in shared.mesh[core].iter().enumerate() {
            if q.drain_into(&mut self.msgs, 256) > 0 {
                crate::metrics::add(&d.st.metrics.mesh_received, self.msgs.len() as u64);
                for m in self.msgs.drain(..) {
                    let mut cx = crate::Cx { st: &mut *d.st };
                    d.handler.on_message(&mut cx, Some(from), m);
                }
            }
        }
        if shared.external[core].drain_into(&mut self.msgs, 256) > 0 {
            crate::metrics::add(&d.st.metrics.mesh_received, self.msgs.len() as u64);
            for m in self.msgs.drain(..) {
                let mut cx = crate::Cx { st: &mut *d.st };
                d.handler.on_message(&mut cx, None, m);
            }
        }
        st.now
    }

    /// Second half: `on_turn_end`, doorbells, then wait (zero when work is pending, else until
    /// the next timer or the guest's own deadline) and dispatch what the backend reports.
    /// `wake()` is re-checked after the sleep is announced, like the queues. `Some` when the
    /// loop must end (stop asked, or the backend failed).
    pub(crate) fn turn_finish(
        &mut self,
        guest: Option<(&dyn crate::Guest, Option<Duration>)>,
        wake: &dyn Fn() -> bool,
    ) -> Option<io::Result<()>> {
        let st = &mut self.st;
        let shared = &*self.shared;
        let core = st.core;
        {
            let mut cx = crate::Cx { st: &mut *st };
            self.handler.on_turn_end(&mut cx);
        }
        st.ring_due();
        if shared.stop.load(Ordering::SeqCst) {
            return Some(Ok(()));
        }
        // Work queued for the guest (by its own batch cap, or by this turn's `on_turn_end`) or
        // its loop ready now: turn again. Not "the guest handled something": the actions of
        // what it handled were applied above, and a turn for nothing costs a syscall.
        let guest_next = guest.and_then(|(_, next)| next);
        let guest_now =
            guest_next == Some(Duration::ZERO) || guest.is_some_and(|(g, _)| g.pending());
        let busy = guest_now || queues_pending(shared, core);
        let mut timeout = if busy {
            Some(Duration::ZERO)
        } else {
            match (st.timer_timeout(), guest_next) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        let bell = &shared.bells[core];
        if timeout != Some(Duration::ZERO) {
            if !self.spin.is_zero() && st.commands.is_empty() {
                let t0 = std::time::Instant::now();
                while t0.elapsed() < self.spin && !queues_pending(shared, core) {
                    std::hint::spin_loop();
                }
            }
            bell.prepare_sleep();
            if queues_pending(shared, core) || shared.stop.load(Ordering::SeqCst) || wake() {
                timeout = Some(Duration::ZERO);
            } else {
                crate::metrics::add(&st.metrics.sleeps, 1);
            }
        }
        let mut d = Dispatch {
            handler: &mut self.handler,
            st: &mut *st,
        };
        let r = self.backend.turn(timeout, &mut d);
        bell.awake();
        r.err().map(Err)
    }

    /// Close everything (after the loop ended).
    pub(crate) fn shutdown(&mut self) {
        let mut d = Dispatch {
            handler: &mut self.handler,
            st: &mut self.st,
        };
        self.backend.shutdown(&mut d);
    }
}

fn run<B: Backend, H: Handler>(mut core: Core<B, H>) -> io::Result<()> {
    let result = loop {
        core.turn_start();
        if let Some(r) = core.turn_finish(None, &|| false) {
            break r;
        }
    };
    core.shutdown();
    result
}

/// Split queued commands: the backend calls this at the start of a turn.
pub(crate) fn take_commands<S: Sink>(sink: &mut S, scratch: &mut Vec<Command>) {
    scratch.clear();
    sink.take_commands(scratch);
}
