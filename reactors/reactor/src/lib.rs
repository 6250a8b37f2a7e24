//! siphon-reactor: the thread-per-core engine room (DESIGN.md "Reactor", feasibility-uring.md).
//!
//! One OS thread per configured CPU, pinned with `core_affinity`, each owning one backend
//! (io_uring, or the epoll fallback), its sockets, a hierarchical [`timer::TimerWheel`], and a
//! doorbell ([`mesh::Bell`]) armed in the ring / epoll set, so one wait covers sockets, timers and
//! queues. The node drives it through [`Handler`] callbacks and the [`Cx`] context:
//!
//! - UDP: one SO_REUSEPORT socket per reactor per listen address, steered to the reactor's CPU;
//!   io_uring receives with multishot RECVMSG into a provided buffer ring and hands the payload
//!   up in place with peer and local address; sends are SENDMSG SQEs batched per loop turn.
//! - TCP: reuseport listeners, multishot ACCEPT, buffer-select RECV, ordered writes with a bounded
//!   per-connection queue (a peer that stops reading is closed and counted), outbound connect
//!   with a timeout. [`ConnId`]s encode the owning core.
//! - TLS: rustls as a byte-stream transform above either backend ([`tls`]).
//! - Mesh: a bounded lock-free queue per ordered pair of reactors plus one external queue per
//!   reactor ([`RuntimeHandle::send`]), with the sleep-flag doorbell protocol ([`mesh`]).
//! - Guests: [`Runtime::start_with_guests`] runs a [`Guest`] (an inline script interpreter) on
//!   each core's thread between loop turns, with a parked standby thread that takes the loop
//!   over while the guest is stuck ([`RuntimeHandle::rescue`]; `handover.rs`).
//! - Fallback: [`probe::probe`] checks io_uring at start (setup, opcodes, buffer ring); on failure
//!   the epoll backend (recvmmsg/sendmmsg, readv/writev) runs behind the same internal `Backend` trait.
//!   The choice and reason are logged and exported ([`metrics::RuntimeInfo`]).
//!
//! Measured (bench/echo, 2-vCPU VM shared with other builds, loopback, 300-byte datagrams,
//! median of 5 rounds): io_uring 1.00 µs server CPU per datagram, epoll 1.05 µs, tokio 2.12 µs
//! (io_uring = 0.47× tokio). As feasibility-uring.md found, io_uring does not beat batched
//! recvmmsg/sendmmsg on one socket; its gains are one wait point for sockets, timers and queues
//! and batching across many sockets and connections. When not to use: a single-socket,
//! low-rate service gains nothing over tokio here.
//!
//! Not done here: MSG_RING between rings (the mesh uses eventfd doorbells), SQPOLL, registered
//! files, zero-copy send, reply-in-place from the receive buffer (a datagram's buffer returns
//! to the ring right after the callback, so slow consumers can never starve the ring; sends are
//! copied into pooled buffers that are freed on completion).

pub mod config;
mod cx;
mod epoll;
mod handover;
mod limits;
pub mod mesh;
pub mod metrics;
pub mod probe;
mod runtime;
mod slab;
pub mod sys;
pub mod timer;
pub mod tls;
mod uring;

use std::fmt;
use std::net::{IpAddr, SocketAddr};

pub use config::{BackendPref, BpfInsn, Config, ListenTcp, Steering};
pub use cx::{Cx, WriteError};
pub use handover::Guest;
pub use limits::Limits;
pub use metrics::{BackendKind, ReactorMetrics, RuntimeInfo};
pub use runtime::{Runtime, RuntimeHandle, StartError};
pub use timer::TimerId;

/// Identifies a TCP/TLS connection. Bits 56..64 hold the owning core, 32..56 a generation,
/// 0..32 a slot index, so any core can tell which reactor owns a connection.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    pub(crate) fn new(core: usize, generation: u32, index: u32) -> Self {
        Self(((core as u64 & 0xff) << 56) | ((generation as u64 & 0xff_ffff) << 32) | index as u64)
    }
    /// The reactor (core index, not CPU number) that owns this connection.
    pub fn core(self) -> usize {
        (self.0 >> 56) as usize
    }
    pub(crate) fn index(self) -> u32 {
        self.0 as u32
    }
    /// The raw value (for logs, metrics labels, or carrying through script events).
    pub fn as_u64(self) -> u64 {
        self.0
    }
    /// Rebuild from [`ConnId::as_u64`].
    pub fn from_u64(v: u64) -> Self {
        Self(v)
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conn#{}.{}.{}",
            self.core(),
            (self.0 >> 32) & 0xff_ffff,
            self.index()
        )
    }
}

/// Identifies a UDP listen address (the index into [`Config::udp`], same on every core).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UdpSocketId(pub u32);

/// Identifies a TCP listen address (the index into [`Config::tcp`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(pub u32);

/// One received datagram, borrowed from the receive buffer for the duration of the callback.
#[derive(Debug)]
pub struct Datagram<'a> {
    /// The socket (listen address) it arrived on.
    pub socket: UdpSocketId,
    /// Sender.
    pub peer: SocketAddr,
    /// Destination address from IP_PKTINFO (the local address to reply from), if known.
    pub local: Option<IpAddr>,
    /// Payload, in place in the backend's buffer: copy it to keep it.
    pub data: &'a [u8],
}

/// Addresses of an accepted or connected stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    /// Remote address.
    pub peer: SocketAddr,
    /// Local address.
    pub local: SocketAddr,
    /// The listener that accepted it (`None` for outbound connections).
    pub listener: Option<ListenerId>,
    /// Whether the stream is TLS (data seen by the handler is plaintext).
    pub tls: bool,
}

/// Why a connection closed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed its side (read returned 0).
    PeerClosed,
    /// Closed by [`Cx::close`].
    Local,
    /// The write queue passed [`Config::write_queue_limit`]: the peer stopped reading.
    WriteQueueFull,
    /// A socket error.
    Io(std::io::ErrorKind),
    /// TLS failed (handshake or record layer).
    Tls(String),
    /// The reactor is shutting down.
    Shutdown,
}

/// Why an outbound connection failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The connect timeout passed first.
    #[error("connect timed out")]
    TimedOut,
    /// The kernel refused (refused, unreachable, ...).
    #[error("connect failed: {0:?}")]
    Io(std::io::ErrorKind),
    /// Closed locally before it completed.
    #[error("connect cancelled")]
    Cancelled,
}

/// Per-core event handler, created on its reactor thread by the factory given to
/// [`Runtime::start`]. Every callback runs on that thread; [`Cx`] queues the resulting I/O,
/// which the backend submits in one batch at the end of the loop turn.
pub trait Handler: 'static {
    /// Messages carried by the mesh (reactor → reactor and external → reactor).
    type Msg: Send + 'static;

    /// A datagram arrived; the payload is borrowed in place.
    fn on_datagram(&mut self, cx: &mut Cx<'_, Self::Msg>, dgram: Datagram<'_>);

    /// A listener accepted a connection.
    fn on_accepted(&mut self, cx: &mut Cx<'_, Self::Msg>, conn: ConnId, info: ConnInfo) {
        let _ = (cx, conn, info);
    }

    /// An outbound connection from [`Cx::connect`] completed or failed. For TLS this fires when
    /// TCP connects; the handshake then runs, and writes are held by rustls until it completes
    /// (a handshake failure arrives as [`Handler::on_closed`] with [`CloseReason::Tls`]).
    fn on_connected(
        &mut self,
        cx: &mut Cx<'_, Self::Msg>,
        conn: ConnId,
        result: Result<ConnInfo, ConnectError>,
    ) {
        let _ = (cx, conn, result);
    }

    /// Stream bytes (plaintext for TLS), in order, borrowed in place.
    fn on_stream_data(&mut self, cx: &mut Cx<'_, Self::Msg>, conn: ConnId, data: &[u8]) {
        let _ = (cx, conn, data);
    }

    /// A connection is gone; its id is never reused for another live connection while
    /// anything on this core could still refer to it.
    fn on_closed(&mut self, cx: &mut Cx<'_, Self::Msg>, conn: ConnId, reason: CloseReason) {
        let _ = (cx, conn, reason);
    }

    /// A timer set with [`Cx::set_timer`] fired.
    fn on_timer(&mut self, cx: &mut Cx<'_, Self::Msg>, id: TimerId, token: u64) {
        let _ = (cx, id, token);
    }

    /// A mesh message arrived; `from` is the sending core, or `None` for an external sender.
    fn on_message(&mut self, cx: &mut Cx<'_, Self::Msg>, from: Option<usize>, msg: Self::Msg) {
        let _ = (cx, from, msg);
    }

    /// End of a loop turn, before the reactor may sleep (and after the core's [`Guest`] turn,
    /// if it has one): drain side queues (for example the actions a script worker pushed) here.
    fn on_turn_end(&mut self, cx: &mut Cx<'_, Self::Msg>) {
        let _ = cx;
    }
}
