//! Runtime tests on both backends: timers fire through the loop, reactors forward messages to
//! each other over the mesh (waking a sleeping peer through its doorbell), an external thread
//! posts to a reactor, and stop works while every reactor sleeps.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use siphon_reactor::{Cx, Datagram, Handler, Runtime, TimerId, metrics};

#[derive(Debug)]
enum Msg {
    Ping { hops: u32 },
    External(u64),
}

struct Node {
    core: usize,
    events: mpsc::Sender<String>,
    fired: Arc<AtomicU64>,
}

impl Handler for Node {
    type Msg = Msg;

    fn on_datagram(&mut self, _cx: &mut Cx<'_, Msg>, _d: Datagram<'_>) {}

    fn on_timer(&mut self, cx: &mut Cx<'_, Msg>, _id: TimerId, token: u64) {
        self.fired.fetch_add(1, Ordering::SeqCst);
        let _ = self.events.send(format!("core{} timer {token}", self.core));
        if token == 1 && self.core == 0 {
            // Start the ping-pong across cores.
            cx.forward(1, Msg::Ping { hops: 0 }).expect("mesh room");
        }
    }

    fn on_message(&mut self, cx: &mut Cx<'_, Msg>, from: Option<usize>, msg: Msg) {
        match msg {
            Msg::Ping { hops } if hops < 100 => {
                let to = 1 - self.core;
                assert_eq!(from, Some(to));
                cx.forward(to, Msg::Ping { hops: hops + 1 })
                    .expect("mesh room");
            }
            Msg::Ping { hops } => {
                let _ = self
                    .events
                    .send(format!("core{} ping done after {hops}", self.core));
            }
            Msg::External(v) => {
                assert_eq!(from, None);
                let _ = self.events.send(format!("core{} external {v}", self.core));
                // A cancelled timer never fires (the test counts exactly one firing).
                let t = cx.set_timer(Duration::from_millis(5), 99);
                assert!(cx.cancel_timer(t));
                assert!(!cx.cancel_timer(t), "second cancel is a no-op");
                cx.set_timer(Duration::from_millis(20), 1);
            }
        }
    }
}

#[test]
fn timers_mesh_doorbell_and_external_queue() {
    for b in common::backends() {
        let (tx, rx) = mpsc::channel::<String>();
        let fired = Arc::new(AtomicU64::new(0));
        let mut cfg = common::config(b);
        cfg.cpus = vec![0, 1];
        let tx = std::sync::Mutex::new(tx);
        let f2 = fired.clone();
        let rt = Runtime::start(cfg, move |core| Node {
            core,
            events: tx.lock().expect("lock").clone(),
            fired: f2.clone(),
        })
        .expect("start");
        let h = rt.handle();
        // Give both reactors time to go to sleep, so the external post must ring the doorbell.
        std::thread::sleep(Duration::from_millis(50));
        h.send(0, Msg::External(7)).expect("queue room");
        let mut got = Vec::new();
        while got.len() < 3 {
            got.push(
                rx.recv_timeout(Duration::from_secs(10))
                    .unwrap_or_else(|_| panic!("events so far on {b:?}: {got:?}")),
            );
        }
        assert_eq!(got[0], "core0 external 7");
        assert_eq!(got[1], "core0 timer 1");
        // 101 messages: the last one (hops == 100) arrives at core 1 (odd hop count) ... or core 0.
        assert!(got[2].ends_with("ping done after 100"), "{got:?}");
        let m0 = h.metrics(0).expect("core0");
        let m1 = h.metrics(1).expect("core1");
        assert_eq!(
            metrics::get(&m0.mesh_forwarded) + metrics::get(&m1.mesh_forwarded),
            101
        );
        assert!(metrics::get(&m0.sleeps) > 0, "reactor slept while idle");
        rt.shutdown().expect("stop while sleeping");
        assert_eq!(fired.load(Ordering::SeqCst), 1);
    }
}

/// The data path of DESIGN.md with a script worker on its own thread: reactor → worker over a
/// bounded queue with a parker bell (spin, then park), worker → reactor over the runtime's
/// external queue (doorbell rung only when the reactor sleeps), reactor sends the reply.
struct ToWorker {
    q: Arc<siphon_reactor::mesh::Queue<(std::net::SocketAddr, Vec<u8>)>>,
}

enum Reply {
    Send(std::net::SocketAddr, Vec<u8>),
}

impl Handler for ToWorker {
    type Msg = Reply;
    fn on_datagram(&mut self, _cx: &mut Cx<'_, Reply>, d: Datagram<'_>) {
        // Back-pressure: a full worker queue drops the datagram (UDP retransmits).
        let _ = self.q.push((d.peer, d.data.to_vec()));
    }
    fn on_message(&mut self, cx: &mut Cx<'_, Reply>, from: Option<usize>, msg: Reply) {
        assert_eq!(from, None);
        let Reply::Send(peer, mut data) = msg;
        data.extend_from_slice(b" handled");
        cx.send_owned(siphon_reactor::UdpSocketId(0), peer, None, data);
    }
}

#[test]
fn reactor_to_worker_and_back() {
    use siphon_reactor::mesh::{Bell, Queue};
    for b in common::backends() {
        let bell = Arc::new(Bell::parker());
        let q = Arc::new(Queue::new(1024, bell));
        let mut cfg = common::config(b);
        cfg.udp = vec!["127.0.0.1:0".parse().expect("addr")];
        let q2 = q.clone();
        let rt = Runtime::start(cfg, move |_| ToWorker { q: q2.clone() }).expect("start");
        let handle = rt.handle();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (qw, sw) = (q.clone(), stop.clone());
        let worker = std::thread::spawn(move || {
            let mut batch = Vec::new();
            while !sw.load(Ordering::SeqCst) {
                qw.bell().wait(
                    Duration::from_micros(30),
                    Some(Duration::from_millis(50)),
                    || !qw.is_empty(),
                );
                qw.drain_into(&mut batch, 64);
                for (peer, data) in batch.drain(..) {
                    let mut m = Reply::Send(peer, data);
                    while let Err(back) = handle.send(0, m) {
                        m = back;
                        std::thread::yield_now();
                    }
                }
            }
        });
        let c = common::client("127.0.0.1:0");
        let mut buf = [0u8; 64];
        for i in 0..50 {
            let msg = format!("req {i}");
            c.send_to(msg.as_bytes(), rt.udp_addrs()[0]).expect("send");
            let (n, _) = common::recv(&c, &mut buf).expect("reply via worker");
            assert_eq!(&buf[..n], format!("req {i} handled").as_bytes());
        }
        stop.store(true, Ordering::SeqCst);
        q.bell().ring();
        worker.join().expect("worker");
        rt.shutdown().expect("shutdown");
    }
}

struct Tagger;

#[test]
fn a_steering_program_picks_the_reactor_by_payload_and_falls_back_to_the_hash() {
    // A = payload[0] - '0'; return A: "0…" to reactor 0, "1…" to reactor 1, anything else out
    // of range (the kernel's hash).
    let prog: Vec<siphon_reactor::BpfInsn> =
        vec![(0x30, 0, 0, 0), (0x14, 0, 0, 0x30), (0x16, 0, 0, 0)];
    for b in common::backends() {
        let mut cfg = common::config(b);
        cfg.cpus = vec![0, 1];
        cfg.steering = siphon_reactor::Steering::Program(prog.clone().into());
        cfg.udp = vec!["127.0.0.1:0".parse().expect("addr")];
        let rt = Runtime::start(cfg, |_| Tagger).expect("start");
        let mut buf = [0u8; 8];
        let mut hashed = 0;
        for _ in 0..16 {
            let c = common::client("127.0.0.1:0");
            for want in [b'0', b'1'] {
                c.send_to(&[want, b'x'], rt.udp_addrs()[0]).expect("send");
                let (n, _) = common::recv(&c, &mut buf).expect("reply");
                assert_eq!((n, buf[0]), (1, want), "{b:?}: steered by the first byte");
            }
            c.send_to(b"zz", rt.udp_addrs()[0]).expect("send");
            let (n, _) = common::recv(&c, &mut buf).expect("reply by the hash");
            assert_eq!(n, 1);
            hashed += 1;
        }
        assert_eq!(hashed, 16);
        rt.shutdown().expect("shutdown");
    }
}

impl Handler for Tagger {
    type Msg = ();
    fn on_datagram(&mut self, cx: &mut Cx<'_, ()>, d: Datagram<'_>) {
        let core = [b'0' + cx.core() as u8];
        cx.send_to(d.socket, d.peer, d.local, &core);
    }
}

#[test]
fn two_reactors_share_a_reuseport_group_and_flows_stick_to_one_core() {
    for b in common::backends() {
        for steering in [
            siphon_reactor::Steering::IncomingCpu,
            siphon_reactor::Steering::Cbpf,
            siphon_reactor::Steering::Hash,
        ] {
            let mut cfg = common::config(b);
            cfg.cpus = vec![0, 1];
            cfg.steering = steering.clone();
            cfg.udp = vec!["127.0.0.1:0".parse().expect("addr")];
            let rt = Runtime::start(cfg, |_| Tagger).expect("start");
            let mut buf = [0u8; 8];
            for _ in 0..16 {
                let c = common::client("127.0.0.1:0");
                let mut first = None;
                for _ in 0..5 {
                    c.send_to(b"x", rt.udp_addrs()[0]).expect("send");
                    let (n, _) = common::recv(&c, &mut buf).expect("reply");
                    assert_eq!(n, 1);
                    let core = buf[0];
                    assert!(core == b'0' || core == b'1');
                    // A flow stays on one socket unless CPU steering moves it with the sender's
                    // CPU, which is also one reactor at a time: either way one core answers.
                    if steering == siphon_reactor::Steering::Hash {
                        assert_eq!(*first.get_or_insert(core), core, "flow moved between cores");
                    }
                }
            }
            let h = rt.handle();
            let total: u64 = (0..2)
                .map(|i| metrics::get(&h.metrics(i).expect("core").udp_rx))
                .sum();
            assert_eq!(total, 80, "{b:?} {steering:?}");
            // CPU steering: on loopback the receiving CPU is the sender's, so a sender pinned
            // to CPU k must be answered by reactor k (feasibility §3 measured 100%).
            let cpus = core_affinity::get_core_ids().unwrap_or_default();
            if steering != siphon_reactor::Steering::Hash
                && cpus.iter().filter(|c| c.id < 2).count() == 2
            {
                let want = std::thread::scope(|sc| {
                    [0usize, 1]
                        .map(|cpu| {
                            let addr = rt.udp_addrs()[0];
                            sc.spawn(move || {
                                assert!(core_affinity::set_for_current(core_affinity::CoreId {
                                    id: cpu
                                }));
                                let c = common::client("127.0.0.1:0");
                                let mut buf = [0u8; 8];
                                (0..20)
                                    .map(|_| {
                                        c.send_to(b"x", addr).expect("send");
                                        common::recv(&c, &mut buf).expect("reply");
                                        buf[0]
                                    })
                                    .collect::<Vec<u8>>()
                            })
                        })
                        .map(|t| t.join().expect("sender"))
                });
                assert!(
                    want[0].iter().all(|&c| c == b'0'),
                    "{b:?} {steering:?}: cpu0 sender answered by {:?}",
                    want[0]
                );
                assert!(
                    want[1].iter().all(|&c| c == b'1'),
                    "{b:?} {steering:?}: cpu1 sender answered by {:?}",
                    want[1]
                );
            } else if steering != siphon_reactor::Steering::Hash {
                eprintln!("fewer than 2 CPUs usable: CPU steering not checked");
            }
            rt.shutdown().expect("shutdown");
        }
    }
}
