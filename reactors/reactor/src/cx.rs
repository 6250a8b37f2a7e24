//! Per-core state shared by both backends, the [`Cx`] handed to handlers, and the dispatch
//! layer that turns backend events into [`Handler`] callbacks (TLS is applied here, so it works
//! the same over io_uring and epoll).
//!
//! Owns: the command outbox (sends, writes, connects, closes) that the backend drains once per
//! loop turn, the send-buffer pool, the timer wheel, connection-id allocation and per-connection
//! runtime state (connect timers, TLS sessions), and mesh forwarding with batched doorbells.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::metrics::{self, ReactorMetrics};
use crate::runtime::Shared;
use crate::timer::{TimerId, TimerWheel};
use crate::tls::{TlsClient, TlsServer};
use crate::{
    CloseReason, ConnId, ConnInfo, ConnectError, Datagram, Handler, ListenerId, UdpSocketId,
};

/// An I/O request queued by a handler, executed by the backend at the start of its next turn.
#[derive(Debug)]
pub(crate) enum Command {
    SendUdp {
        sock: u32,
        peer: SocketAddr,
        local: Option<IpAddr>,
        buf: Vec<u8>,
    },
    Write {
        conn: ConnId,
        buf: Vec<u8>,
    },
    Connect {
        conn: ConnId,
        peer: SocketAddr,
    },
    /// `graceful`: close once the queued writes are flushed; else at once (cancelling
    /// in-flight operations).
    Close {
        conn: ConnId,
        reason: CloseReason,
        graceful: bool,
    },
    /// Give the receive buffers' touched pages back (see [`Cx::release_idle_memory`]).
    TrimReceiveBuffers,
}

#[derive(Debug)]
pub(crate) enum TimerKind {
    User(u64),
    ConnectTimeout(ConnId),
    /// A graceful close that has not finished flushing becomes an abort.
    Linger(ConnId),
    /// An accepted connection's handshake or idle deadline (`limits.rs`).
    Guard(ConnId),
}

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
enum ConnState {
    #[default]
    Free,
    Connecting,
    Open,
    /// Close requested locally; the backend's `closed` event will notify the handler.
    Closing,
    /// The handler has been told (or never needs to be); waiting for the backend to release.
    Gone,
}

#[derive(Default)]
struct ConnSlot {
    generation: u32,
    state: ConnState,
    timer: Option<TimerId>,
    tls: Option<Box<rustls::Connection>>,
    info: Option<ConnInfo>,
    /// Accepted and admitted by the limiter: the source whose slot it holds.
    admitted: Option<IpAddr>,
    /// Holds a TLS handshake slot of the limiter.
    handshaking: bool,
    /// When it was accepted and when it last received bytes (handshake and idle timeouts).
    accepted_at: Option<Instant>,
    last_rx: Option<Instant>,
    guard: Option<TimerId>,
}

/// Everything one reactor owns besides its backend.
pub(crate) struct CoreState<M> {
    pub(crate) core: usize,
    pub(crate) start: Instant,
    pub(crate) now: Instant,
    pub(crate) commands: Vec<Command>,
    pool: Vec<Vec<u8>>,
    pub(crate) timers: TimerWheel<TimerKind>,
    conns: Vec<ConnSlot>,
    free_conns: Vec<u32>,
    pub(crate) shared: Arc<Shared<M>>,
    rings_due: Vec<bool>,
    any_ring_due: bool,
    pub(crate) metrics: Arc<ReactorMetrics>,
    connect_timeout: Duration,
    tls_servers: Vec<Option<TlsServer>>,
    scratch: Vec<u8>,
}

impl<M: Send + 'static> CoreState<M> {
    pub(crate) fn new(
        core: usize,
        shared: Arc<Shared<M>>,
        connect_timeout: Duration,
        tls_servers: Vec<Option<TlsServer>>,
    ) -> Self {
        let n = shared.bells.len();
        let metrics = shared.metrics[core].clone();
        let now = Instant::now();
        Self {
            core,
            start: now,
            now,
            commands: Vec::with_capacity(256),
            pool: Vec::new(),
            timers: TimerWheel::new(),
            conns: Vec::new(),
            free_conns: Vec::new(),
            shared,
            rings_due: vec![false; n],
            any_ring_due: false,
            metrics,
            connect_timeout,
            tls_servers,
            scratch: vec![0; 16 * 1024],
        }
    }

    pub(crate) fn tick_of(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_millis() as u64
    }

    /// How long the reactor may sleep before the next timer.
    pub(crate) fn timer_timeout(&self) -> Option<Duration> {
        let next = self.timers.next_deadline()?;
        let at = self.start + Duration::from_millis(next);
        Some(at.saturating_duration_since(self.now))
    }

    pub(crate) fn take_buf(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_else(|| Vec::with_capacity(2048))
    }

    pub(crate) fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.pool.len() < 4096 && buf.capacity() <= 64 * 1024 {
            buf.clear();
            self.pool.push(buf);
        }
    }

    fn alloc_conn(&mut self, state: ConnState) -> ConnId {
        let index = match self.free_conns.pop() {
            Some(i) => i,
            None => {
                self.conns.push(ConnSlot::default());
                (self.conns.len() - 1) as u32
            }
        };
        let slot = &mut self.conns[index as usize];
        slot.generation = (slot.generation + 1) & 0xff_ffff;
        slot.state = state;
        ConnId::new(self.core, slot.generation, index)
    }

    fn slot(&mut self, conn: ConnId) -> Option<&mut ConnSlot> {
        if conn.core() != self.core {
            return None;
        }
        let s = self.conns.get_mut(conn.index() as usize)?;
        (ConnId::new(self.core, s.generation, conn.index()) == conn && s.state != ConnState::Free)
            .then_some(s)
    }

    /// Ring the doorbells of cores we forwarded to during this turn (one syscall at most per
    /// sleeping core per turn).
    pub(crate) fn ring_due(&mut self) {
        if !self.any_ring_due {
            return;
        }
        self.any_ring_due = false;
        for (i, due) in self.rings_due.iter_mut().enumerate() {
            if std::mem::take(due) {
                self.shared.bells[i].ring();
            }
        }
    }

    /// Push TLS output (handshake, alerts, records) of `conn` as write commands.
    fn flush_tls(&mut self, conn: ConnId) {
        let Some(slot) = self.slot(conn) else { return };
        let Some(tls) = slot.tls.as_mut() else { return };
        let mut out = Vec::new();
        while tls.wants_write() {
            if tls.write_tls(&mut out).is_err() {
                break;
            }
        }
        if !out.is_empty() {
            self.commands.push(Command::Write { conn, buf: out });
        }
    }
}

/// The handler's view of its reactor: queue I/O, timers and mesh messages.
pub struct Cx<'a, M> {
    pub(crate) st: &'a mut CoreState<M>,
}

/// Why a write was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The connection is closed, closing, or owned by another core.
    #[error("connection not open on this core")]
    NotOpen,
}

impl<M: Send + 'static> Cx<'_, M> {
    /// This reactor's core index (0-based position in [`crate::Config::cpus`]).
    pub fn core(&self) -> usize {
        self.st.core
    }

    /// Number of reactors.
    pub fn cores(&self) -> usize {
        self.st.shared.bells.len()
    }

    /// The time at the start of this loop turn, or when the reactor last woke from its wait
    /// within the turn (events from the wait carry their wake-up time).
    pub fn now(&self) -> Instant {
        self.st.now
    }

    /// Counters of this reactor.
    pub fn metrics(&self) -> &ReactorMetrics {
        &self.st.metrics
    }

    /// The handler went idle after a load: drop the pooled send buffers and give the pages
    /// the receive buffers touched back to the OS (`MADV_DONTNEED`, at the end of this turn;
    /// a buffer's pages come back as the kernel writes the next datagrams into it). Every
    /// buffer of the ring was written once a load has cycled through it, so without this a
    /// reactor keeps `buffer_count × buffer_size` bytes in memory for good.
    pub fn release_idle_memory(&mut self) {
        self.st.pool = Vec::new();
        self.st.commands.push(Command::TrimReceiveBuffers);
    }

    /// Queue a datagram (copied into a pooled buffer); sent in this turn's batch.
    /// `local` selects the source address on a wildcard-bound socket (IP_PKTINFO).
    pub fn send_to(
        &mut self,
        socket: UdpSocketId,
        peer: SocketAddr,
        local: Option<IpAddr>,
        data: &[u8],
    ) {
        let mut buf = self.st.take_buf();
        buf.extend_from_slice(data);
        self.st.commands.push(Command::SendUdp {
            sock: socket.0,
            peer,
            local,
            buf,
        });
    }

    /// Queue a datagram the caller already owns (no copy).
    pub fn send_owned(
        &mut self,
        socket: UdpSocketId,
        peer: SocketAddr,
        local: Option<IpAddr>,
        buf: Vec<u8>,
    ) {
        self.st.commands.push(Command::SendUdp {
            sock: socket.0,
            peer,
            local,
            buf,
        });
    }

    /// Queue stream bytes in order (encrypted first for TLS). A connection whose queue passes
    /// the configured limit is closed with [`CloseReason::WriteQueueFull`].
    pub fn write(&mut self, conn: ConnId, data: &[u8]) -> Result<(), WriteError> {
        if data.is_empty() {
            return Ok(());
        }
        let st = &mut *self.st;
        let slot = st.slot(conn).ok_or(WriteError::NotOpen)?;
        if !matches!(slot.state, ConnState::Open | ConnState::Connecting) {
            return Err(WriteError::NotOpen);
        }
        if let Some(tls) = slot.tls.as_mut() {
            tls.writer()
                .write_all(data)
                .map_err(|_| WriteError::NotOpen)?;
            st.flush_tls(conn);
        } else {
            let mut buf = st.take_buf();
            buf.extend_from_slice(data);
            st.commands.push(Command::Write { conn, buf });
        }
        Ok(())
    }

    /// Like [`Cx::write`] for a buffer the caller already owns (no copy on plain TCP).
    pub fn write_owned(&mut self, conn: ConnId, buf: Vec<u8>) -> Result<(), WriteError> {
        let st = &mut *self.st;
        let slot = st.slot(conn).ok_or(WriteError::NotOpen)?;
        if !matches!(slot.state, ConnState::Open | ConnState::Connecting) {
            return Err(WriteError::NotOpen);
        }
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(tls) = slot.tls.as_mut() {
            tls.writer()
                .write_all(&buf)
                .map_err(|_| WriteError::NotOpen)?;
            st.flush_tls(conn);
        } else {
            st.commands.push(Command::Write { conn, buf });
        }
        Ok(())
    }

    /// Open a TCP connection owned by this core; the result arrives in
    /// [`Handler::on_connected`]. Writes issued before it connects are queued.
    pub fn connect(&mut self, peer: SocketAddr, timeout: Option<Duration>) -> ConnId {
        let conn = self.st.alloc_conn(ConnState::Connecting);
        let after = timeout.unwrap_or(self.st.connect_timeout);
        let deadline = self.st.tick_of(self.st.now + after).max(1);
        let t = self
            .st
            .timers
            .insert(deadline, TimerKind::ConnectTimeout(conn));
        if let Some(s) = self.st.slot(conn) {
            s.timer = Some(t);
        }
        self.st.commands.push(Command::Connect { conn, peer });
        conn
    }

    /// Open a TLS connection to `server_name` (SNI and certificate check).
    pub fn connect_tls(
        &mut self,
        peer: SocketAddr,
        client: &TlsClient,
        server_name: &str,
        timeout: Option<Duration>,
    ) -> Result<ConnId, crate::tls::TlsError> {
        let tls = client.connection(server_name)?;
        let conn = self.connect(peer, timeout);
        if let Some(s) = self.st.slot(conn) {
            s.tls = Some(Box::new(tls.into()));
        }
        Ok(conn)
    }

    /// Close a connection after its queued writes are flushed (TLS: after close_notify);
    /// [`Handler::on_closed`] follows with [`CloseReason::Local`]. If the peer does not take the
    /// data within `linger` (default 2 s) the connection is aborted.
    pub fn close(&mut self, conn: ConnId) {
        self.close_inner(conn, true, Duration::from_secs(2));
    }

    /// Like [`Cx::close`] with an explicit linger time.
    pub fn close_linger(&mut self, conn: ConnId, linger: Duration) {
        self.close_inner(conn, true, linger);
    }

    /// Close at once: queued writes are dropped and in-flight operations cancelled (their
    /// buffers are released only when the kernel reports their completion).
    pub fn abort(&mut self, conn: ConnId) {
        self.close_inner(conn, false, Duration::ZERO);
    }

    fn close_inner(&mut self, conn: ConnId, graceful: bool, linger: Duration) {
        let st = &mut *self.st;
        let Some(s) = st.slot(conn) else { return };
        match s.state {
            ConnState::Open => {
                s.state = ConnState::Closing;
                if let Some(tls) = s.tls.as_mut() {
                    tls.send_close_notify();
                }
                st.flush_tls(conn);
                if graceful {
                    let deadline = st.tick_of(st.now + linger).max(1);
                    st.timers.insert(deadline, TimerKind::Linger(conn));
                }
                st.commands.push(Command::Close {
                    conn,
                    reason: CloseReason::Local,
                    graceful,
                });
            }
            ConnState::Connecting => {
                st.commands.push(Command::Close {
                    conn,
                    reason: CloseReason::Local,
                    graceful: false,
                });
            }
            ConnState::Closing if !graceful => {
                st.commands.push(Command::Close {
                    conn,
                    reason: CloseReason::Local,
                    graceful: false,
                });
            }
            _ => {}
        }
    }

    /// Run [`Handler::on_timer`] with `token` after `after` (1 ms resolution).
    pub fn set_timer(&mut self, after: Duration, token: u64) -> TimerId {
        let deadline = self
            .st
            .tick_of(self.st.now + after + Duration::from_micros(999));
        self.st.timers.insert(deadline, TimerKind::User(token))
    }

    /// Cancel a timer; false if it already fired or was cancelled.
    pub fn cancel_timer(&mut self, id: TimerId) -> bool {
        self.st.timers.cancel(id).is_some()
    }

    /// Forward a message to another core's [`Handler::on_message`] over the mesh. The doorbell
    /// is rung once at the end of the turn, and only if that core sleeps. A full queue returns
    /// the message (back-pressure).
    pub fn forward(&mut self, core: usize, msg: M) -> Result<(), M> {
        let Some(row) = self.st.shared.mesh.get(core) else {
            return Err(msg);
        };
        match row[self.st.core].push_quiet(msg) {
            Ok(()) => {
                metrics::add(&self.st.metrics.mesh_forwarded, 1);
                self.st.rings_due[core] = true;
                self.st.any_ring_due = true;
                Ok(())
            }
            Err(m) => {
                metrics::add(&self.st.metrics.mesh_full, 1);
                Err(m)
            }
        }
    }

    /// Ask every reactor to stop after its current turn.
    pub fn stop_all(&mut self) {
        self.st.shared.stop.store(true, Ordering::SeqCst);
        for b in &self.st.shared.bells {
            b.ring();
        }
    }
}

/// Receives backend events for one turn and calls the handler.
pub(crate) trait Sink {
    fn datagram(&mut self, d: Datagram<'_>);
    fn accepted(&mut self, listener: u32, peer: SocketAddr, local: SocketAddr) -> ConnId;
    fn connected(&mut self, conn: ConnId, result: std::io::Result<(SocketAddr, SocketAddr)>);
    fn stream_data(&mut self, conn: ConnId, data: &[u8]);
    fn closed(&mut self, conn: ConnId, reason: CloseReason);
    fn released(&mut self, conn: ConnId);
    fn take_commands(&mut self, out: &mut Vec<Command>);
    fn recycle(&mut self, buf: Vec<u8>);
    fn metrics(&self) -> &ReactorMetrics;
    /// The backend returned from its wait: what it dispatches next happened now, not when
    /// the turn began (a reactor idle for seconds would stamp its first packet that old, and
    /// every timer armed from it would be due at once).
    fn woke(&mut self) {}
}

/// The sink of one reactor: its handler plus its core state.
pub(crate) struct Dispatch<'a, H: Handler> {
    pub(crate) handler: &'a mut H,
    pub(crate) st: &'a mut CoreState<H::Msg>,
}

impl<H: Handler> Dispatch<'_, H> {
    fn cx(&mut self) -> (&mut H, Cx<'_, H::Msg>) {
        (self.handler, Cx { st: self.st })
    }

    /// Fire due timers.
    pub(crate) fn run_timers(&mut self, fired: &mut Vec<(TimerId, TimerKind)>) {
        let now = self.st.tick_of(self.st.now);
        self.st.timers.advance(now, fired);
        for (id, kind) in fired.drain(..) {
            metrics::add(&self.st.metrics.timers_fired, 1);
            match kind {
                TimerKind::User(token) => {
                    let (h, mut cx) = self.cx();
                    h.on_timer(&mut cx, id, token);
                }
                TimerKind::ConnectTimeout(conn) => {
                    let Some(s) = self.st.slot(conn) else {
                        continue;
                    };
                    if s.state != ConnState::Connecting {
                        continue;
                    }
                    s.state = ConnState::Gone;
                    s.timer = None;
                    metrics::add(&self.st.metrics.tcp_connect_failed, 1);
                    self.st.commands.push(Command::Close {
                        conn,
                        reason: CloseReason::Local,
                        graceful: false,
                    });
                    let (h, mut cx) = self.cx();
                    h.on_connected(&mut cx, conn, Err(ConnectError::TimedOut));
                }
                TimerKind::Guard(conn) => self.guard_fired(conn),
                TimerKind::Linger(conn) => {
                    if self
                        .st
                        .slot(conn)
                        .is_some_and(|s| s.state == ConnState::Closing)
                    {
                        self.st.commands.push(Command::Close {
                            conn,
                            reason: CloseReason::Local,
                            graceful: false,
                        });
                    }
                }
            }
        }
    }

    fn tls_input(&mut self, conn: ConnId, mut data: &[u8]) {
        loop {
            let Some(slot) = self.st.slot(conn) else {
                return;
            };
            let Some(tls) = slot.tls.as_mut() else { return };
            if !data.is_empty() && tls.read_tls(&mut data).is_err() {
                self.fail_tls(conn, "read_tls".to_owned());
                return;
            }
            let st = match tls.process_new_packets() {
                Ok(s) => s,
                Err(e) => {
                    self.st.flush_tls(conn);
                    self.fail_tls(conn, e.to_string());
                    return;
                }
            };
            let mut avail = st.plaintext_bytes_to_read();
            let peer_closed = st.peer_has_closed();
            self.handshake_progress(conn);
            while avail > 0 {
                let mut scratch = std::mem::take(&mut self.st.scratch);
                let n = self
                    .st
                    .slot(conn)
                    .and_then(|s| s.tls.as_mut())
                    .and_then(|t| t.reader().read(&mut scratch).ok())
                    .unwrap_or(0);
                if n > 0 {
                    let (h, mut cx) = self.cx();
                    h.on_stream_data(&mut cx, conn, &scratch[..n]);
                }
                self.st.scratch = scratch;
                if n == 0 {
                    break;
                }
                avail = avail.saturating_sub(n);
            }
            self.st.flush_tls(conn);
            if peer_closed {
                self.close_from_runtime(conn, CloseReason::PeerClosed);
                return;
            }
            if data.is_empty() {
                return;
            }
        }
    }

    /// Take a connection slot for an accepted connection (and a handshake slot for TLS), or
    /// close it unseen when a cap is reached. Arms its handshake/idle deadline.
    fn admit(&mut self, conn: ConnId, peer: SocketAddr, tls: bool) -> bool {
        let ip = peer.ip();
        if let Err(why) = self.st.shared.limiter.admit(ip, tls) {
            let m = &self.st.metrics;
            metrics::add(
                match why {
                    crate::limits::Refused::Total => &m.tcp_refused,
                    crate::limits::Refused::PerSource => &m.tcp_refused_per_source,
                    crate::limits::Refused::Handshakes => &m.tls_handshakes_refused,
                },
                1,
            );
            if let Some(s) = self.st.slot(conn) {
                s.state = ConnState::Gone;
            }
            self.st.commands.push(Command::Close {
                conn,
                reason: CloseReason::Shutdown,
                graceful: false,
            });
            return false;
        }
        let now = self.st.now;
        if let Some(s) = self.st.slot(conn) {
            s.admitted = Some(ip);
            s.handshaking = tls;
            s.accepted_at = Some(now);
            s.last_rx = Some(now);
        }
        self.arm_guard(conn);
        true
    }

    /// The next deadline of an admitted connection: the handshake timeout while it
    /// handshakes, else the idle timeout from its last bytes.
    fn arm_guard(&mut self, conn: ConnId) {
        let l = self.st.shared.limiter.limits;
        let Some(s) = self.st.slot(conn) else { return };
        let at = if s.handshaking {
            s.accepted_at.map(|t| t + l.tls_handshake_timeout)
        } else {
            l.idle_timeout.zip(s.last_rx).map(|(d, t)| t + d)
        };
        let Some(at) = at else { return };
        let deadline = self.st.tick_of(at + Duration::from_micros(999));
        let id = self.st.timers.insert(deadline, TimerKind::Guard(conn));
        if let Some(s) = self.st.slot(conn) {
            if let Some(old) = s.guard.replace(id) {
                self.st.timers.cancel(old);
            }
        } else {
            self.st.timers.cancel(id);
        }
    }

    fn guard_fired(&mut self, conn: ConnId) {
        let l = self.st.shared.limiter.limits;
        let now = self.st.now;
        let Some(s) = self.st.slot(conn) else { return };
        s.guard = None;
        if !matches!(s.state, ConnState::Open) {
            return;
        }
        if s.handshaking {
            if s.accepted_at
                .is_some_and(|t| now >= t + l.tls_handshake_timeout)
            {
                metrics::add(&self.st.metrics.tls_handshake_timeouts, 1);
                self.close_from_runtime(conn, CloseReason::Tls("handshake timed out".into()));
                return;
            }
        } else if let (Some(idle), Some(last)) = (l.idle_timeout, s.last_rx)
            && now >= last + idle
        {
            metrics::add(&self.st.metrics.tcp_idle_closed, 1);
            self.close_from_runtime(conn, CloseReason::Local);
            return;
        }
        self.arm_guard(conn);
    }

    /// A TLS connection that finished its handshake frees its handshake slot.
    fn handshake_progress(&mut self, conn: ConnId) {
        let Some(s) = self.st.slot(conn) else { return };
        if !s.handshaking || s.tls.as_ref().is_some_and(|t| t.is_handshaking()) {
            return;
        }
        s.handshaking = false;
        self.st.shared.limiter.handshake_done();
        self.arm_guard(conn);
    }

    fn fail_tls(&mut self, conn: ConnId, why: String) {
        metrics::add(&self.st.metrics.tls_errors, 1);
        self.close_from_runtime(conn, CloseReason::Tls(why));
    }

    /// Close requested by the runtime itself (TLS failure, TLS close_notify): tell the handler
    /// now and have the backend tear the socket down.
    fn close_from_runtime(&mut self, conn: ConnId, reason: CloseReason) {
        let Some(s) = self.st.slot(conn) else { return };
        let was = s.state;
        if !matches!(was, ConnState::Open | ConnState::Closing) {
            return;
        }
        s.state = ConnState::Gone;
        s.tls = None;
        self.st.commands.push(Command::Close {
            conn,
            reason: reason.clone(),
            graceful: false,
        });
        let (h, mut cx) = self.cx();
        h.on_closed(&mut cx, conn, reason);
    }
}

impl<H: Handler> Sink for Dispatch<'_, H> {
    #[inline]
    fn datagram(&mut self, d: Datagram<'_>) {
        let (h, mut cx) = self.cx();
        h.on_datagram(&mut cx, d);
    }

    fn accepted(&mut self, listener: u32, peer: SocketAddr, local: SocketAddr) -> ConnId {
        let conn = self.st.alloc_conn(ConnState::Open);
        metrics::add(&self.st.metrics.tcp_accepted, 1);
        let server = self
            .st
            .tls_servers
            .get(listener as usize)
            .cloned()
            .flatten();
        if !self.admit(conn, peer, server.is_some()) {
            return conn;
        }
        let mut is_tls = false;
        if let Some(server) = server {
            match server.connection() {
                Ok(c) => {
                    is_tls = true;
                    if let Some(s) = self.st.slot(conn) {
                        s.tls = Some(Box::new(c.into()));
                    }
                }
                Err(_) => {
                    // Never serve a TLS listener in plaintext: drop the connection unseen.
                    metrics::add(&self.st.metrics.tls_errors, 1);
                    if let Some(s) = self.st.slot(conn) {
                        s.state = ConnState::Gone;
                    }
                    self.st.commands.push(Command::Close {
                        conn,
                        reason: CloseReason::Shutdown,
                        graceful: false,
                    });
                    return conn;
                }
            }
        }
        let info = ConnInfo {
            peer,
            local,
            listener: Some(ListenerId(listener)),
            tls: is_tls,
        };
        if let Some(s) = self.st.slot(conn) {
            s.info = Some(info);
        }
        let (h, mut cx) = self.cx();
        h.on_accepted(&mut cx, conn, info);
        conn
    }

    fn connected(&mut self, conn: ConnId, result: std::io::Result<(SocketAddr, SocketAddr)>) {
        let Some(s) = self.st.slot(conn) else { return };
        if let Some(t) = s.timer.take() {
            self.st.timers.cancel(t);
        }
        let Some(s) = self.st.slot(conn) else { return };
        if s.state != ConnState::Connecting {
            return; // timed out or cancelled already; the backend will release it
        }
        match result {
            Ok((peer, local)) => {
                s.state = ConnState::Open;
                let info = ConnInfo {
                    peer,
                    local,
                    listener: None,
                    tls: s.tls.is_some(),
                };
                s.info = Some(info);
                metrics::add(&self.st.metrics.tcp_connected, 1);
                self.st.flush_tls(conn); // ClientHello
                let (h, mut cx) = self.cx();
                h.on_connected(&mut cx, conn, Ok(info));
            }
            Err(e) => {
                s.state = ConnState::Gone;
                s.tls = None;
                metrics::add(&self.st.metrics.tcp_connect_failed, 1);
                let (h, mut cx) = self.cx();
                h.on_connected(&mut cx, conn, Err(ConnectError::Io(e.kind())));
            }
        }
    }

    fn stream_data(&mut self, conn: ConnId, data: &[u8]) {
        metrics::add(&self.st.metrics.tcp_rx_bytes, data.len() as u64);
        let now = self.st.now;
        let Some(s) = self.st.slot(conn) else { return };
        if s.state != ConnState::Open {
            return;
        }
        if s.admitted.is_some() {
            s.last_rx = Some(now);
        }
        if s.tls.is_some() {
            self.tls_input(conn, data);
        } else {
            let (h, mut cx) = self.cx();
            h.on_stream_data(&mut cx, conn, data);
        }
    }

    fn closed(&mut self, conn: ConnId, reason: CloseReason) {
        let Some(s) = self.st.slot(conn) else { return };
        let was = s.state;
        s.state = ConnState::Gone;
        s.tls = None;
        if let Some(t) = s.timer.take() {
            self.st.timers.cancel(t);
        }
        metrics::add(&self.st.metrics.tcp_closed, 1);
        if reason == CloseReason::WriteQueueFull {
            metrics::add(&self.st.metrics.tcp_slow_peer_closed, 1);
        }
        match was {
            ConnState::Open | ConnState::Closing => {
                let (h, mut cx) = self.cx();
                h.on_closed(&mut cx, conn, reason);
            }
            ConnState::Connecting => {
                let (h, mut cx) = self.cx();
                h.on_connected(&mut cx, conn, Err(ConnectError::Cancelled));
            }
            ConnState::Gone | ConnState::Free => {}
        }
    }

    fn released(&mut self, conn: ConnId) {
        if let Some(s) = self.st.slot(conn) {
            s.state = ConnState::Free;
            s.tls = None;
            s.info = None;
            let (admitted, handshaking, guard) = (
                s.admitted.take(),
                std::mem::take(&mut s.handshaking),
                s.guard.take(),
            );
            s.accepted_at = None;
            s.last_rx = None;
            if let Some(ip) = admitted {
                self.st.shared.limiter.release(ip);
            }
            if handshaking {
                self.st.shared.limiter.handshake_done();
            }
            if let Some(t) = guard {
                self.st.timers.cancel(t);
            }
            let Some(s) = self.st.slot(conn) else { return };
            if let Some(t) = s.timer.take() {
                self.st.timers.cancel(t);
            }
            self.st.free_conns.push(conn.index());
        }
    }

    #[inline]
    fn take_commands(&mut self, out: &mut Vec<Command>) {
        std::mem::swap(out, &mut self.st.commands);
    }

    #[inline]
    fn recycle(&mut self, buf: Vec<u8>) {
        self.st.recycle(buf);
    }

    fn metrics(&self) -> &ReactorMetrics {
        &self.st.metrics
    }

    fn woke(&mut self) {
        self.st.now = Instant::now();
    }
}
