//! TCP loopback tests on both backends: echo with ordered writes, close by either side, a peer
//! that stops reading (closed and counted, the reactor keeps serving), an in-flight send
//! cancelled by close whose buffer stays owned until its completion, outbound connect,
//! refused connect and connect timeout.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::time::Duration;

use siphon_reactor::{
    BackendKind, CloseReason, ConnId, ConnInfo, ConnectError, Cx, Datagram, Handler, ListenTcp,
    Runtime, TimerId, metrics,
};

#[derive(Debug, PartialEq)]
enum Ev {
    Accepted(ConnId),
    Closed(ConnId, CloseReason),
    Connected(Result<ConnInfo, ConnectError>),
    Data(Vec<u8>),
    /// (zombie_conns, ops_cancelled) seen from inside on_closed.
    ClosedWithInflight(u64, u64),
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Echo; close when a line "bye\n" arrives.
    Echo,
    /// Write 64 KiB every millisecond to whoever connects, never read.
    Flood,
    /// Write 8 MiB at once, then abort after 300 ms (the send is in flight by then).
    WriteThenClose,
}

struct Tcp {
    mode: Mode,
    ev: mpsc::Sender<Ev>,
    conns: Vec<ConnId>,
    connect_to: Option<(SocketAddr, Duration)>,
}

enum Cmd {
    Connect(SocketAddr, Duration),
}

impl Handler for Tcp {
    type Msg = Cmd;

    fn on_datagram(&mut self, cx: &mut Cx<'_, Cmd>, d: Datagram<'_>) {
        cx.send_to(d.socket, d.peer, d.local, d.data);
    }

    fn on_accepted(&mut self, cx: &mut Cx<'_, Cmd>, conn: ConnId, info: ConnInfo) {
        assert_eq!(
            conn.core(),
            cx.core(),
            "connection ids encode the owning core"
        );
        assert!(!info.tls);
        self.conns.push(conn);
        let _ = self.ev.send(Ev::Accepted(conn));
        match self.mode {
            Mode::Echo => {}
            Mode::Flood => {
                cx.set_timer(Duration::from_millis(1), conn.as_u64());
            }
            Mode::WriteThenClose => {
                cx.write(conn, &vec![0x5a; 8 << 20]).expect("open");
                cx.set_timer(Duration::from_millis(300), conn.as_u64());
            }
        }
    }

    fn on_timer(&mut self, cx: &mut Cx<'_, Cmd>, _id: TimerId, token: u64) {
        let conn = ConnId::from_u64(token);
        match self.mode {
            Mode::Flood => {
                if cx.write(conn, &[0xa5; 64 * 1024]).is_ok() {
                    cx.set_timer(Duration::from_millis(1), token);
                }
            }
            Mode::WriteThenClose => cx.abort(conn),
            Mode::Echo => {}
        }
    }

    fn on_stream_data(&mut self, cx: &mut Cx<'_, Cmd>, conn: ConnId, data: &[u8]) {
        let _ = self.ev.send(Ev::Data(data.to_vec()));
        if self.mode == Mode::Echo {
            cx.write(conn, data).expect("open");
            if data.ends_with(b"bye\n") {
                cx.close(conn);
            }
        }
    }

    fn on_closed(&mut self, cx: &mut Cx<'_, Cmd>, conn: ConnId, reason: CloseReason) {
        let m = cx.metrics();
        let _ = self.ev.send(Ev::ClosedWithInflight(
            metrics::get(&m.zombie_conns),
            metrics::get(&m.ops_cancelled),
        ));
        let _ = self.ev.send(Ev::Closed(conn, reason));
    }

    fn on_connected(
        &mut self,
        cx: &mut Cx<'_, Cmd>,
        conn: ConnId,
        result: Result<ConnInfo, ConnectError>,
    ) {
        if result.is_ok() {
            cx.write(conn, b"hello from the reactor\n").expect("open");
        }
        let _ = self.ev.send(Ev::Connected(result));
    }

    fn on_message(&mut self, cx: &mut Cx<'_, Cmd>, _from: Option<usize>, msg: Cmd) {
        let Cmd::Connect(addr, t) = msg;
        let _ = cx.connect(addr, Some(t));
        let _ = self.connect_to.take();
    }
}

fn start(
    b: siphon_reactor::BackendPref,
    mode: Mode,
    limit: usize,
) -> (Runtime<Cmd>, mpsc::Receiver<Ev>) {
    start_on(b, mode, limit, "127.0.0.1:0")
}

fn start_on(
    b: siphon_reactor::BackendPref,
    mode: Mode,
    limit: usize,
    listen: &str,
) -> (Runtime<Cmd>, mpsc::Receiver<Ev>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let mut cfg = common::config(b);
    cfg.tcp = vec![ListenTcp {
        addr: listen.parse().expect("addr"),
        tls: None,
    }];
    cfg.udp = vec!["127.0.0.1:0".parse().expect("addr")];
    cfg.write_queue_limit = limit;
    let rt = Runtime::start(cfg, move |_| Tcp {
        mode,
        ev: tx.lock().expect("lock").clone(),
        conns: vec![],
        connect_to: None,
    })
    .expect("start");
    (rt, rx)
}

fn next(rx: &mpsc::Receiver<Ev>) -> Ev {
    rx.recv_timeout(Duration::from_secs(20)).expect("event")
}

fn next_closed(rx: &mpsc::Receiver<Ev>) -> (Option<(u64, u64)>, ConnId, CloseReason) {
    let mut inflight = None;
    loop {
        match next(rx) {
            Ev::ClosedWithInflight(z, c) => inflight = Some((z, c)),
            Ev::Closed(c, r) => return (inflight, c, r),
            _ => {}
        }
    }
}

#[test]
fn tcp_echo_ordered_and_both_close_directions() {
    for b in common::backends() {
        let (rt, rx) = start(b, Mode::Echo, 1 << 20);
        let addr = rt.tcp_addrs()[0];
        // Peer closes.
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let Ev::Accepted(id) = next(&rx) else {
            panic!("accept first")
        };
        let mut expect = Vec::new();
        for i in 0..200u32 {
            let line = format!("line {i} {}\n", "x".repeat((i as usize * 37) % 900));
            s.write_all(line.as_bytes()).expect("write");
            expect.extend_from_slice(line.as_bytes());
        }
        let mut got = vec![0u8; expect.len()];
        s.read_exact(&mut got).expect("echo");
        assert_eq!(got, expect, "ordered echo on {b:?}");
        drop(s);
        let (_, c, r) = next_closed(&rx);
        assert_eq!((c, r), (id, CloseReason::PeerClosed));
        // Reactor closes.
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(b"bye\n").expect("write");
        let mut all = Vec::new();
        s.read_to_end(&mut all)
            .expect("read until the reactor closes");
        assert_eq!(all, b"bye\n");
        let (_, _, r) = next_closed(&rx);
        assert_eq!(r, CloseReason::Local);
        rt.shutdown().expect("shutdown");
    }
}

#[test]
fn tcp_peer_that_stops_reading_is_closed_and_counted() {
    for b in common::backends() {
        let (rt, rx) = start(b, Mode::Flood, 256 * 1024);
        let s = TcpStream::connect(rt.tcp_addrs()[0]).expect("connect");
        let (_, _, r) = next_closed(&rx);
        assert_eq!(r, CloseReason::WriteQueueFull, "{b:?}");
        let h = rt.handle();
        let m = h.metrics(0).expect("core0");
        assert_eq!(metrics::get(&m.tcp_slow_peer_closed), 1);
        // The reactor is not wedged: it still answers datagrams.
        let u = common::client("127.0.0.1:0");
        u.send_to(b"ping", rt.udp_addrs()[0]).expect("send");
        let mut buf = [0u8; 16];
        let (n, _) = common::recv(&u, &mut buf).expect("udp still served");
        assert_eq!(&buf[..n], b"ping");
        drop(s);
        rt.shutdown().expect("shutdown");
    }
}

#[test]
fn tcp_send_cancelled_in_flight_keeps_buffer_until_completion() {
    for b in common::backends() {
        let (rt, rx) = start(b, Mode::WriteThenClose, 64 << 20);
        let s = TcpStream::connect(rt.tcp_addrs()[0]).expect("connect");
        let (inflight, _, r) = next_closed(&rx);
        assert_eq!(r, CloseReason::Local);
        let (zombies, cancelled) = inflight.expect("metrics seen in on_closed");
        let h = rt.handle();
        let m = h.metrics(0).expect("core0");
        match rt.info().backend {
            BackendKind::Uring => {
                // At close time the 8 MiB send was still in the kernel: it was cancelled, and
                // the connection (fd + the buffer being sent) was kept as a zombie.
                assert_eq!(zombies, 1, "connection kept alive for its in-flight send");
                assert!(cancelled >= 1, "in-flight ops were cancelled");
                // The buffer is released only when the cancelled op's completion arrives.
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while metrics::get(&m.zombie_conns) != 0 && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                assert_eq!(
                    metrics::get(&m.zombie_conns),
                    0,
                    "zombie freed after its completions"
                );
                assert!(metrics::get(&m.cancelled_completions) >= 1);
            }
            // epoll has no operation in flight between turns (writev returned EAGAIN), so the
            // queued buffer is simply dropped at close: nothing to cancel, no zombie.
            BackendKind::Epoll => assert_eq!((zombies, cancelled), (0, 0)),
        }
        drop(s);
        rt.shutdown().expect("shutdown");
    }
}

#[test]
fn tcp_outbound_connect_refused_and_timeout() {
    for b in common::backends() {
        let (rt, rx) = start(b, Mode::Echo, 1 << 20);
        let h = rt.handle();
        // Success.
        let l = TcpListener::bind("127.0.0.1:0").expect("listen");
        h.send(
            0,
            Cmd::Connect(l.local_addr().expect("addr"), Duration::from_secs(10)),
        )
        .map_err(|_| ())
        .expect("room");
        let (mut peer, _) = l.accept().expect("accept");
        match next(&rx) {
            Ev::Connected(Ok(info)) => assert_eq!(info.peer, l.local_addr().expect("addr")),
            e => panic!("expected connected, got {e:?}"),
        }
        let mut buf = [0u8; 23];
        peer.read_exact(&mut buf).expect("greeting");
        assert_eq!(&buf, b"hello from the reactor\n");
        peer.write_all(b"bye\n").expect("write");
        let mut rest = Vec::new();
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        peer.read_to_end(&mut rest).expect("echo then close");
        assert_eq!(rest, b"bye\n");
        // Refused: nothing listens on a port we just released.
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("l")
            .local_addr()
            .expect("a");
        h.send(0, Cmd::Connect(port, Duration::from_secs(10)))
            .map_err(|_| ())
            .expect("room");
        loop {
            match next(&rx) {
                Ev::Connected(r) => {
                    assert_eq!(
                        r,
                        Err(ConnectError::Io(std::io::ErrorKind::ConnectionRefused))
                    );
                    break;
                }
                _ => continue,
            }
        }
        // Timeout: a listener with a full accept queue drops our SYN.
        let full = TcpListener::bind("127.0.0.1:0").expect("l");
        // SAFETY: lowering the backlog of a listening socket we own.
        assert_eq!(unsafe { libc::listen(full.as_raw_fd(), 0) }, 0);
        let a = full.local_addr().expect("a");
        let _fill = TcpStream::connect(a).expect("first fills the queue");
        let _fill2 = TcpStream::connect_timeout(&a, Duration::from_millis(200));
        h.send(0, Cmd::Connect(a, Duration::from_millis(150)))
            .map_err(|_| ())
            .expect("room");
        loop {
            match next(&rx) {
                Ev::Connected(r) => {
                    assert_eq!(r, Err(ConnectError::TimedOut), "{b:?}");
                    break;
                }
                _ => continue,
            }
        }
        rt.shutdown().expect("shutdown");
    }
}

#[test]
fn tcp_echo_ipv6() {
    for b in common::backends() {
        let (rt, rx) = start_on(b, Mode::Echo, 1 << 20, "[::1]:0");
        let addr = rt.tcp_addrs()[0];
        assert!(addr.is_ipv6());
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(b"REGISTER over v6\nbye\n").expect("write");
        let mut all = Vec::new();
        s.read_to_end(&mut all).expect("echo then close");
        assert_eq!(all, b"REGISTER over v6\nbye\n", "{b:?}");
        let (_, _, r) = next_closed(&rx);
        assert_eq!(r, CloseReason::Local);
        rt.shutdown().expect("shutdown");
    }
}
