//! Cores with a guest (`Runtime::start_with_guests`): the guest runs between loop turns; while
//! it is stuck in a turn, `rescue` hands the core's loop to its standby thread, which keeps UDP,
//! TCP and timers going; when the guest returns, the core's own thread takes the loop back;
//! a stop asked while the guest is stuck completes once it returns. Both backends.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use siphon_reactor::{
    BackendPref, ConnId, Cx, Datagram, Guest, Handler, ListenTcp, Runtime, TimerId, metrics,
};

/// Which thread answered (the standby is `siphon-sb-<core>`).
fn by_standby() -> bool {
    std::thread::current()
        .name()
        .is_some_and(|n| n.starts_with("siphon-sb-"))
}

/// Echoes datagrams and stream bytes, prefixed with `s` when the standby thread answered and
/// `c` when the core's own thread did; counts its timer ticks.
struct Echo {
    ticks: Arc<AtomicU64>,
}

impl Handler for Echo {
    type Msg = ();

    fn on_datagram(&mut self, cx: &mut Cx<'_, ()>, d: Datagram<'_>) {
        let mut out = vec![if by_standby() { b's' } else { b'c' }];
        out.extend_from_slice(d.data);
        cx.send_to(d.socket, d.peer, d.local, &out);
    }

    fn on_stream_data(&mut self, cx: &mut Cx<'_, ()>, conn: ConnId, data: &[u8]) {
        let mut out = vec![if by_standby() { b's' } else { b'c' }];
        out.extend_from_slice(data);
        let _ = cx.write(conn, &out);
    }

    fn on_timer(&mut self, cx: &mut Cx<'_, ()>, _id: TimerId, _token: u64) {
        self.ticks.fetch_add(1, Ordering::SeqCst);
        cx.set_timer(Duration::from_millis(10), 0);
    }

    fn on_accepted(&mut self, cx: &mut Cx<'_, ()>, _conn: ConnId, _info: siphon_reactor::ConnInfo) {
        // Start the periodic timer with the first connection (any callback on the core).
        if self.ticks.load(Ordering::SeqCst) == 0 {
            cx.set_timer(Duration::from_millis(10), 0);
        }
    }
}

/// A guest that blocks in its turn (a blocking C call: a channel receive) when asked, and
/// otherwise asks for a turn every 5 ms with no event.
struct Blocker {
    block: Arc<AtomicBool>,
    blocked: Arc<AtomicBool>,
    release: Arc<Mutex<mpsc::Receiver<()>>>,
    turns: Arc<AtomicU64>,
}

impl Guest for Blocker {
    fn turn(&mut self) -> Option<Duration> {
        self.turns.fetch_add(1, Ordering::SeqCst);
        if self.block.swap(false, Ordering::SeqCst) {
            self.blocked.store(true, Ordering::SeqCst);
            let _ = self.release.lock().expect("release lock").recv();
            self.blocked.store(false, Ordering::SeqCst);
        }
        Some(Duration::from_millis(5))
    }

    fn pending(&self) -> bool {
        false
    }
}

struct Rig {
    rt: Runtime<()>,
    udp: SocketAddr,
    tcp: SocketAddr,
    block: Arc<AtomicBool>,
    blocked: Arc<AtomicBool>,
    release: mpsc::Sender<()>,
    turns: Arc<AtomicU64>,
    ticks: Arc<AtomicU64>,
}

fn start(backend: BackendPref) -> Rig {
    let mut cfg = common::config(backend);
    cfg.udp = vec!["127.0.0.1:0".parse().expect("addr")];
    cfg.tcp = vec![ListenTcp {
        addr: "127.0.0.1:0".parse().expect("addr"),
        tls: None,
    }];
    cfg.handover_after = Duration::from_millis(20);
    let block = Arc::new(AtomicBool::new(false));
    let blocked = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let rx = Arc::new(Mutex::new(rx));
    let turns = Arc::new(AtomicU64::new(0));
    let ticks = Arc::new(AtomicU64::new(0));
    let (b, bd, t, k) = (block.clone(), blocked.clone(), turns.clone(), ticks.clone());
    let rt = Runtime::start_with_guests(cfg, move |_| {
        let guest: Box<dyn Guest> = Box::new(Blocker {
            block: b.clone(),
            blocked: bd.clone(),
            release: rx.clone(),
            turns: t.clone(),
        });
        (Echo { ticks: k.clone() }, Some(guest))
    })
    .expect("start");
    Rig {
        udp: rt.udp_addrs()[0],
        tcp: rt.tcp_addrs()[0],
        rt,
        block,
        blocked,
        release: tx,
        turns,
        ticks,
    }
}

/// Send `msg` and return the echo's first byte (who answered).
fn udp_echo(c: &std::net::UdpSocket, to: SocketAddr, msg: &[u8]) -> u8 {
    let mut buf = [0u8; 2048];
    c.send_to(msg, to).expect("send");
    let (n, _) = common::recv(c, &mut buf).expect("echo");
    assert_eq!(&buf[1..n], msg, "the payload comes back");
    buf[0]
}

fn tcp_echo(s: &mut TcpStream, msg: &[u8]) -> u8 {
    s.write_all(msg).expect("write");
    let mut buf = vec![0u8; msg.len() + 1];
    s.read_exact(&mut buf).expect("echo");
    assert_eq!(&buf[1..], msg, "the bytes come back");
    buf[0]
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    for _ in 0..2000 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("never happened: {what}");
}

#[test]
fn a_stuck_guest_hands_the_loop_to_the_standby_and_takes_it_back() {
    for backend in common::backends() {
        let r = start(backend);
        let c = common::client("127.0.0.1:0");
        let mut s = TcpStream::connect(r.tcp).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        for i in 0..10u8 {
            assert_eq!(udp_echo(&c, r.udp, &[i; 100]), b'c', "{backend:?}");
        }
        assert_eq!(tcp_echo(&mut s, b"before"), b'c', "{backend:?}");
        // The guest's own deadline gives it turns with no event.
        let t0 = r.turns.load(Ordering::SeqCst);
        wait_until("guest turns while idle", || {
            r.turns.load(Ordering::SeqCst) >= t0 + 5
        });

        // The guest blocks in its next turn (at most 5 ms away); the watchdog's rescue hands
        // the loop over.
        r.block.store(true, Ordering::SeqCst);
        wait_until("the guest blocks", || r.blocked.load(Ordering::SeqCst));
        std::thread::sleep(Duration::from_millis(30));
        let h = r.rt.handle();
        h.rescue(0);
        for i in 0..20u8 {
            assert_eq!(
                udp_echo(&c, r.udp, &[i; 200]),
                b's',
                "{backend:?} datagram {i}"
            );
        }
        assert_eq!(tcp_echo(&mut s, b"during"), b's', "{backend:?}");
        let mut s2 = TcpStream::connect(r.tcp).expect("a new connection while stuck");
        s2.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        assert_eq!(tcp_echo(&mut s2, b"new"), b's', "{backend:?}");
        let k0 = r.ticks.load(Ordering::SeqCst);
        wait_until("timers fire while the guest is stuck", || {
            r.ticks.load(Ordering::SeqCst) >= k0 + 3
        });
        let m = h.metrics(0).expect("core 0");
        assert_eq!(metrics::get(&m.handovers), 1, "{backend:?}");

        // The guest returns: the core's own thread answers again, on old and new flows.
        r.release.send(()).expect("release");
        wait_until("the guest returns", || !r.blocked.load(Ordering::SeqCst));
        let mut back = false;
        for i in 0..50u8 {
            // The standby may finish the turn it was in when the guest returned.
            back = udp_echo(&c, r.udp, &[i; 50]) == b'c';
            if back {
                break;
            }
        }
        assert!(back, "{backend:?}: the core's thread took the loop back");
        for i in 0..20u8 {
            assert_eq!(udp_echo(&c, r.udp, &[i; 60]), b'c', "{backend:?} after {i}");
        }
        assert_eq!(tcp_echo(&mut s, b"after"), b'c', "{backend:?}");
        assert_eq!(tcp_echo(&mut s2, b"after2"), b'c', "{backend:?}");
        // A rescue when nothing is stuck changes nothing.
        h.rescue(0);
        assert_eq!(udp_echo(&c, r.udp, b"still"), b'c', "{backend:?}");
        assert_eq!(metrics::get(&m.handovers), 1, "{backend:?}");
        r.rt.shutdown().expect("clean shutdown");
    }
}

#[test]
fn a_stop_while_the_guest_is_stuck_completes_when_it_returns() {
    for backend in common::backends() {
        let r = start(backend);
        let c = common::client("127.0.0.1:0");
        r.block.store(true, Ordering::SeqCst);
        wait_until("the guest blocks", || r.blocked.load(Ordering::SeqCst));
        std::thread::sleep(Duration::from_millis(30));
        r.rt.handle().rescue(0);
        assert_eq!(udp_echo(&c, r.udp, b"stuck"), b's', "{backend:?}");
        let (done_tx, done_rx) = mpsc::channel();
        let rt = r.rt;
        let stopper = std::thread::spawn(move || {
            let _ = done_tx.send(rt.shutdown());
        });
        // The runtime cannot finish while the guest holds the core's thread ...
        std::thread::sleep(Duration::from_millis(50));
        r.release.send(()).expect("release");
        // ... and finishes cleanly once it returns.
        let result = done_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("shutdown completes after the guest returns");
        result.expect("clean shutdown");
        stopper.join().expect("stopper");
    }
}
