//! UDP loopback tests (IPv4 and IPv6, echo with peer and local address, buffer-ring
//! exhaustion and the hot set of buffers in use, datagrams up to 65,000 bytes received whole, the configured maximum counted),
//! each run against both backends.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use siphon_reactor::{BackendPref, Cx, Datagram, Handler, Runtime, metrics};

struct Echo {
    seen_local: Arc<std::sync::Mutex<Vec<Option<IpAddr>>>>,
    count: Arc<AtomicU64>,
}

impl Handler for Echo {
    type Msg = ();
    fn on_datagram(&mut self, cx: &mut Cx<'_, ()>, d: Datagram<'_>) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.seen_local.lock().expect("lock").push(d.local);
        cx.send_to(d.socket, d.peer, d.local, d.data);
    }
}

fn echo_roundtrip(backend: BackendPref, listen: &str, client_bind: &str) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let count = Arc::new(AtomicU64::new(0));
    let mut cfg = common::config(backend);
    cfg.udp = vec![listen.parse().expect("addr")];
    let (s2, c2) = (seen.clone(), count.clone());
    let rt = Runtime::start(cfg, move |_| Echo {
        seen_local: s2.clone(),
        count: c2.clone(),
    })
    .expect("start");
    let server: SocketAddr = rt.udp_addrs()[0];
    let target: SocketAddr = if server.ip().is_unspecified() {
        SocketAddr::new(
            if server.is_ipv4() {
                "127.0.0.1".parse().expect("ip")
            } else {
                "::1".parse().expect("ip")
            },
            server.port(),
        )
    } else {
        server
    };
    let c = common::client(client_bind);
    let mut buf = [0u8; 2048];
    for i in 0..100u32 {
        let msg = vec![(i % 251) as u8; 300];
        c.send_to(&msg, target).expect("send");
        let (n, from) = common::recv(&c, &mut buf).expect("echo");
        assert_eq!(&buf[..n], &msg[..], "payload {i} on {backend:?}");
        assert_eq!(from, target, "reply comes from the address we sent to");
    }
    assert_eq!(count.load(Ordering::Relaxed), 100);
    let locals = seen.lock().expect("lock");
    assert!(
        locals.iter().all(|l| *l == Some(target.ip())),
        "pktinfo local address on {backend:?}: {locals:?}"
    );
    let m = rt.handle();
    let snap = m.metrics(0).expect("core 0");
    assert_eq!(metrics::get(&snap.udp_rx), 100);
    rt.shutdown().expect("clean shutdown");
}

#[test]
fn udp_echo_ipv4() {
    for b in common::backends() {
        echo_roundtrip(b, "127.0.0.1:0", "127.0.0.1:0");
    }
}

#[test]
fn udp_echo_ipv6() {
    for b in common::backends() {
        echo_roundtrip(b, "[::1]:0", "[::1]:0");
    }
}

#[test]
fn udp_echo_wildcard_replies_from_pktinfo_address() {
    for b in common::backends() {
        echo_roundtrip(b, "0.0.0.0:0", "127.0.0.1:0");
        echo_roundtrip(b, "[::]:0", "[::1]:0");
    }
}

/// Handler that, on the first datagram, floods its own socket from inside the callback, so the
/// backlog is queued in the kernel before the reactor returns to the ring: with 4 provided
/// buffers the multishot receive must run dry (ENOBUFS), be re-armed, and still deliver all.
struct Flood {
    target: SocketAddr,
    count: Arc<AtomicU64>,
    flooded: bool,
    burst: usize,
}

impl Handler for Flood {
    type Msg = ();
    fn on_datagram(&mut self, _cx: &mut Cx<'_, ()>, d: Datagram<'_>) {
        assert_eq!(d.data.len(), 300);
        self.count.fetch_add(1, Ordering::Relaxed);
        if !self.flooded {
            self.flooded = true;
            let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            for _ in 0..self.burst {
                s.send_to(&[7u8; 300], self.target).expect("flood");
            }
        }
    }
}

/// Start a runtime whose handler floods itself with `burst` datagrams on the first one, kick
/// it, and wait until all `burst + 1` arrived; returns the runtime and buf_exhausted.
fn flood(b: BackendPref, buffers: u16, burst: usize) -> (Runtime<()>, u64) {
    let count = Arc::new(AtomicU64::new(0));
    let mut cfg = common::config(b);
    cfg.udp_buffers = buffers;
    cfg.udp_buffer_size = 512;
    // Bind first to learn the port, then hand it to the handler through the mesh-free way:
    // a fixed port chosen by a probe socket.
    let probe_sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("probe");
    let port = probe_sock.local_addr().expect("addr").port();
    drop(probe_sock);
    cfg.udp = vec![SocketAddr::new("127.0.0.1".parse().expect("ip"), port)];
    let target = cfg.udp[0];
    let c2 = count.clone();
    let rt = Runtime::start(cfg, move |_| Flood {
        target,
        count: c2.clone(),
        flooded: false,
        burst,
    })
    .expect("start");
    let c = common::client("127.0.0.1:0");
    c.send_to(&[1u8; 300], target).expect("kick");
    let want = burst as u64 + 1;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while count.load(Ordering::Relaxed) < want && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        count.load(Ordering::Relaxed),
        want,
        "all datagrams delivered on {b:?}"
    );
    let h = rt.handle();
    let m = h.metrics(0).expect("core 0");
    assert!(metrics::get(&m.rearms) >= metrics::get(&m.buf_exhausted));
    let exhausted = metrics::get(&m.buf_exhausted);
    drop(h);
    (rt, exhausted)
}

#[test]
fn udp_buffer_ring_exhaustion_rearms_and_delivers_everything() {
    for b in common::backends() {
        let (rt, exhausted) = flood(b, 4, 64);
        match rt.info().backend {
            siphon_reactor::BackendKind::Uring => assert!(
                exhausted >= 1,
                "io_uring: the 4-buffer ring must have run dry at least once"
            ),
            // epoll has no provided-buffer ring: recvmmsg reads a batch of 4 into its own
            // buffers, so the same backlog is drained batch by batch and nothing is exhausted.
            siphon_reactor::BackendKind::Epoll => assert_eq!(exhausted, 0),
        }
        rt.shutdown().expect("shutdown");
    }
}

/// The default 1,024 buffers keep a hot set of 64 in the ring: a burst of 120 queued behind
/// one handler call is more than the hot set holds, and nothing is lost (the kernel hands
/// completions over in chunks of at most 32, and a dry ring only makes the receive wait in
/// the socket until it is re-armed, with a larger hot set).
#[test]
fn udp_burst_past_the_hot_set_loses_nothing() {
    for b in common::backends() {
        let (rt, _) = flood(b, 1024, 120);
        rt.shutdown().expect("shutdown");
    }
}

/// Handler that echoes and records which memory page each datagram was received into.
struct PageSpy {
    pages: Arc<std::sync::Mutex<std::collections::HashSet<usize>>>,
}

impl Handler for PageSpy {
    type Msg = ();
    fn on_datagram(&mut self, cx: &mut Cx<'_, ()>, d: Datagram<'_>) {
        self.pages
            .lock()
            .expect("lock")
            .insert(d.data.as_ptr() as usize / 4096);
        cx.send_to(d.socket, d.peer, d.local, d.data);
    }
}

/// Request/response traffic keeps landing in the same few receive buffers (the ring's hot
/// set, most recently used first), not in all 1,024 in turn: 2,000 datagrams touch at most
/// 128 pages, so the receive memory a reactor touches stays small and cache-warm.
#[test]
fn udp_steady_traffic_reuses_a_small_set_of_receive_buffers() {
    for b in common::backends() {
        let pages = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
        let mut cfg = common::config(b);
        cfg.udp = vec!["127.0.0.1:0".parse().expect("addr")];
        let p2 = pages.clone();
        let rt = Runtime::start(cfg, move |_| PageSpy { pages: p2.clone() }).expect("start");
        let target = rt.udp_addrs()[0];
        let c = common::client("127.0.0.1:0");
        let mut buf = [0u8; 512];
        for i in 0..2000u32 {
            c.send_to(&i.to_be_bytes(), target).expect("send");
            let (n, _) = common::recv(&c, &mut buf).expect("echo");
            assert_eq!(&buf[..n], &i.to_be_bytes());
        }
        let touched = pages.lock().expect("lock").len();
        assert!(
            touched <= 128,
            "{touched} distinct receive pages for 2,000 datagrams on {b:?}"
        );
        rt.shutdown().expect("shutdown");
    }
}

#[test]
fn udp_ipv4_and_ipv6_listeners_on_one_runtime() {
    for b in common::backends() {
        let mut cfg = common::config(b);
        cfg.cpus = vec![0, 1];
        cfg.udp = vec![
            "127.0.0.1:0".parse().expect("v4"),
            "[::1]:0".parse().expect("v6"),
        ];
        let rt = Runtime::start(cfg, |_| Echo {
            seen_local: Arc::default(),
            count: Arc::default(),
        })
        .expect("start");
        assert_eq!(rt.udp_addrs().len(), 2);
        for (addr, bind) in rt.udp_addrs().iter().zip(["127.0.0.1:0", "[::1]:0"]) {
            let c = common::client(bind);
            let mut buf = [0u8; 64];
            c.send_to(b"NOTIFY", addr).expect("send");
            let (n, from) = common::recv(&c, &mut buf).expect("echo");
            assert_eq!((&buf[..n], from), (&b"NOTIFY"[..], *addr), "{b:?}");
        }
        rt.shutdown().expect("shutdown");
    }
}

/// Echo `sizes` through a runtime built from `cfg`; returns the runtime for metric checks.
fn echo_sizes(cfg: siphon_reactor::Config, sizes: &[usize]) -> Runtime<()> {
    let rt = Runtime::start(cfg, |_| Echo {
        seen_local: Arc::default(),
        count: Arc::default(),
    })
    .expect("start");
    let target = rt.udp_addrs()[0];
    let c = common::client("127.0.0.1:0");
    let mut buf = vec![0u8; 65_536];
    for &n in sizes {
        let msg: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
        c.send_to(&msg, target).expect("send");
        let (got, _) = common::recv(&c, &mut buf).expect("echo");
        assert_eq!(got, n, "{n}-byte datagram comes back whole");
        assert!(buf[..got] == msg[..], "{n}-byte datagram payload intact");
    }
    rt
}

#[test]
fn udp_large_datagrams_arrive_whole() {
    for b in common::backends() {
        let mut cfg = common::config(b);
        cfg.udp = vec!["127.0.0.1:0".parse().expect("addr")];
        // Small buffers on purpose: everything past 4 KiB lives in each buffer's reserve.
        cfg.udp_buffers = 8;
        cfg.udp_buffer_size = 4096;
        let rt = echo_sizes(cfg, &[300, 5_000, 20_000, 65_000, 5_000, 300]);
        let h = rt.handle();
        let m = h.metrics(0).expect("core 0");
        assert_eq!(metrics::get(&m.udp_rx), 6, "{b:?}");
        assert_eq!(metrics::get(&m.udp_rx_large), 4, "{b:?}");
        assert_eq!(metrics::get(&m.udp_truncated), 0, "{b:?}");
        rt.shutdown().expect("shutdown");
    }
}

#[test]
fn udp_datagram_over_the_configured_maximum_is_counted_and_dropped() {
    for b in common::backends() {
        let mut cfg = common::config(b);
        cfg.udp = vec!["127.0.0.1:0".parse().expect("addr")];
        cfg.udp_max_datagram = 10_000;
        let rt = Runtime::start(cfg, |_| Echo {
            seen_local: Arc::default(),
            count: Arc::default(),
        })
        .expect("start");
        let target = rt.udp_addrs()[0];
        let c = common::client("127.0.0.1:0");
        c.send_to(&vec![1u8; 30_000], target).expect("send big");
        // Datagrams on one socket are handled in order: once the small one is echoed, the big
        // one has been seen and dropped.
        c.send_to(&[2u8; 500], target).expect("send small");
        let mut buf = vec![0u8; 65_536];
        let (n, _) = common::recv(&c, &mut buf).expect("echo");
        assert_eq!(
            (n, buf[0]),
            (500, 2),
            "{b:?}: only the small datagram comes back"
        );
        let h = rt.handle();
        let m = h.metrics(0).expect("core 0");
        assert_eq!(metrics::get(&m.udp_truncated), 1, "{b:?}");
        rt.shutdown().expect("shutdown");
    }
}
