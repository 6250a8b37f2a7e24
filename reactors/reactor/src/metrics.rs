//! Counters a node exports: which backend runs and why, and per-reactor traffic counters.
//!
//! Counters are written by their reactor thread only (load + store, no locked RMW on the hot
//! path) and read by any thread with relaxed loads.

use std::sync::atomic::{AtomicU64, Ordering};

/// The I/O backend a runtime chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// io_uring (multishot receive, provided buffer rings).
    Uring,
    /// epoll with recvmmsg/sendmmsg and readv/writev.
    Epoll,
}

impl BackendKind {
    /// Stable name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uring => "io_uring",
            Self::Epoll => "epoll",
        }
    }
}

/// What the runtime chose at start and why (exported as `siphon_io_backend{backend,reason}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeInfo {
    /// The backend in use.
    pub backend: BackendKind,
    /// Why: "probe passed", "forced by config", or the probe failure.
    pub reason: String,
    /// True when io_uring was wanted (auto) but unavailable.
    pub fell_back: bool,
}

impl RuntimeInfo {
    /// 1 for io_uring, 0 for epoll (a gauge).
    pub fn uring_gauge(&self) -> u64 {
        u64::from(self.backend == BackendKind::Uring)
    }
}

macro_rules! counters {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {
        /// Per-reactor counters.
        #[derive(Debug, Default)]
        pub struct ReactorMetrics {
            $($(#[$m])* pub $name: AtomicU64,)*
        }

        impl ReactorMetrics {
            /// (name, value) pairs for an exporter.
            pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters! {
    /// Loop turns.
    turns,
    /// Datagrams received.
    udp_rx,
    /// Datagrams sent (completed).
    udp_tx,
    /// Datagram sends that failed or were dropped (socket buffer full).
    udp_tx_errors,
    /// Datagrams that cannot be received: longer than `udp_max_datagram` (the kernel truncated
    /// them), dropped.
    udp_truncated,
    /// Datagrams longer than the resident part of a buffer (`udp_buffer_size`), received whole
    /// into its reserve; the extra pages were handed back afterwards.
    udp_rx_large,
    /// Provided-buffer ring ran dry and the multishot receive was re-armed.
    buf_exhausted,
    /// Multishot receive/accept re-armed for any reason.
    rearms,
    /// Connections accepted.
    tcp_accepted,
    /// Outbound connections established.
    tcp_connected,
    /// Outbound connections failed or timed out.
    tcp_connect_failed,
    /// Connections closed.
    tcp_closed,
    /// Connections closed because the write queue overflowed (peer stopped reading).
    tcp_slow_peer_closed,
    /// Bytes received on streams.
    tcp_rx_bytes,
    /// Bytes written on streams.
    tcp_tx_bytes,
    /// TLS handshakes or records that failed.
    tls_errors,
    /// Accepted connections closed at once: `max_connections` reached.
    tcp_refused,
    /// Accepted connections closed at once: `max_connections_per_source` reached.
    tcp_refused_per_source,
    /// Accepted TLS connections closed at once: `max_tls_handshakes` reached.
    tls_handshakes_refused,
    /// TLS connections closed for not finishing the handshake in `tls_handshake_timeout`.
    tls_handshake_timeouts,
    /// Accepted connections closed after `idle_timeout` without receiving anything.
    tcp_idle_closed,
    /// In-flight kernel operations cancelled (io_uring).
    ops_cancelled,
    /// Completions of cancelled operations (their buffers were released then, not before).
    cancelled_completions,
    /// Connections closed locally whose kernel operations are still in flight.
    zombie_conns,
    /// Mesh messages sent to another core.
    mesh_forwarded,
    /// Mesh messages dropped because the target queue was full.
    mesh_full,
    /// Mesh and external messages received.
    mesh_received,
    /// Timers fired.
    timers_fired,
    /// Times the reactor went to sleep.
    sleeps,
    /// Times the core's standby thread took the loop over from a guest stuck in its turn
    /// ([`crate::Runtime::start_with_guests`]).
    handovers,
}

/// Add `n` to a counter owned by the calling reactor thread.
#[inline]
pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Subtract `n` from a gauge owned by the calling reactor thread.
#[inline]
pub(crate) fn sub(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_sub(n), Ordering::Relaxed);
}

/// Read a counter.
pub fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}
