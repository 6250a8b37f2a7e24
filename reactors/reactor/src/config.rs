//! Runtime settings (the node fills these from `tuning:` and `listen:` in siphon.yaml).

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::tls::TlsServer;

/// Which I/O backend to run (`tuning.io_backend`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackendPref {
    /// io_uring when the probe passes, else epoll (with the reason logged).
    #[default]
    Auto,
    /// io_uring or fail to start.
    Uring,
    /// epoll, even where io_uring works.
    Epoll,
}

/// Unknown `io_backend` value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown io backend {given:?}: expected auto, io_uring or epoll")]
pub struct ParseBackendError {
    /// What was given.
    pub given: String,
}

impl FromStr for BackendPref {
    type Err = ParseBackendError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(Self::Uring),
            "epoll" => Ok(Self::Epoll),
            _ => Err(ParseBackendError {
                given: s.to_owned(),
            }),
        }
    }
}

/// One classic BPF instruction `(code, jt, jf, k)` (`struct sock_filter`).
pub type BpfInsn = (u16, u8, u8, u32);

/// How datagrams are steered to the reactor of the CPU that received them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Steering {
    /// `SO_INCOMING_CPU` set to the reactor's CPU on each socket (works for any CPU list).
    #[default]
    IncomingCpu,
    /// Classic BPF `return cpu` on the group (needs CPUs 0..n in order).
    Cbpf,
    /// Kernel 4-tuple hash only.
    Hash,
    /// A classic BPF program attached to each UDP reuseport group: it returns the index of
    /// the reactor to deliver to, or an out-of-range value for the kernel's 4-tuple hash
    /// (the node's SIP response steering). Best effort: if the kernel refuses it, the group
    /// keeps the hash and a warning is logged.
    Program(std::sync::Arc<[BpfInsn]>),
}

/// A TCP listen address, optionally TLS.
#[derive(Clone, Debug)]
pub struct ListenTcp {
    /// Address (port 0 picks one port for the whole reuseport group).
    pub addr: SocketAddr,
    /// TLS server settings; `None` for plain TCP.
    pub tls: Option<TlsServer>,
}

/// Reactor runtime configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// CPU numbers; one reactor per entry (reactor i is "core i" in [`crate::ConnId`]).
    pub cpus: Vec<usize>,
    /// Pin each reactor thread to its CPU.
    pub pin: bool,
    /// Backend choice.
    pub backend: BackendPref,
    /// UDP listen addresses (one socket per reactor per address).
    pub udp: Vec<SocketAddr>,
    /// TCP/TLS listen addresses.
    pub tcp: Vec<ListenTcp>,
    /// Datagram steering.
    pub steering: Steering,
    /// Submission queue entries per ring.
    pub ring_entries: u32,
    /// Provided buffers for UDP receive per reactor (power of two).
    pub udp_buffers: u16,
    /// Bytes of each UDP buffer kept in memory (io_uring: includes the kernel's recvmsg header,
    /// name and cmsg). A larger datagram, up to `udp_max_datagram`, still arrives whole: each
    /// buffer reserves address space for it and the pages it touched are handed back after.
    pub udp_buffer_size: u32,
    /// Largest UDP payload received whole (65,535: any datagram). Larger ones are dropped and
    /// counted in `udp_truncated`.
    pub udp_max_datagram: u32,
    /// Provided buffers for TCP receive per reactor (power of two).
    pub tcp_buffers: u16,
    /// Size of each TCP receive buffer.
    pub tcp_buffer_size: u32,
    /// Bytes queued for one connection beyond which it is closed as a slow reader.
    pub write_queue_limit: usize,
    /// Capacity of each mesh queue.
    pub mesh_capacity: usize,
    /// How long a reactor spins on its queues before sleeping (0 = sleep at once).
    pub spin: Duration,
    /// Timeout for [`crate::Cx::connect`] when none is given.
    pub connect_timeout: Duration,
    /// Thread name prefix.
    pub name: String,
    /// Caps on accepted connections and their handshake/idle timeouts (none by default).
    pub limits: crate::limits::Limits,
    /// With [`crate::Runtime::start_with_guests`]: how long a guest turn must have lasted
    /// before [`crate::RuntimeHandle::rescue`] hands the core's loop to its standby thread.
    pub handover_after: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cpus: vec![0],
            pin: true,
            backend: BackendPref::Auto,
            udp: Vec::new(),
            tcp: Vec::new(),
            steering: Steering::IncomingCpu,
            ring_entries: 1024,
            udp_buffers: 1024,
            udp_buffer_size: 4096,
            udp_max_datagram: 65_535,
            tcp_buffers: 512,
            tcp_buffer_size: 16 * 1024,
            write_queue_limit: 4 * 1024 * 1024,
            mesh_capacity: 4096,
            spin: Duration::ZERO,
            connect_timeout: Duration::from_secs(5),
            name: "siphon-reactor".to_owned(),
            limits: crate::limits::Limits::default(),
            handover_after: Duration::from_millis(200),
        }
    }
}
