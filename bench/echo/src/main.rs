//! SIP-sized UDP echo benchmark: the io_uring reactor, the epoll reactor and a tokio baseline in
//! one run, each pinned to one core (`--server-cpu`) with the load generator pinned to another
//! (`--gen-cpu`), loopback only, bounded in datagrams and seconds.
//!
//! Reports, per variant: datagrams/s and the server thread's CPU time per datagram (from
//! `/proc/self/task/<tid>/schedstat`, which counts the kernel UDP work done in its context).
//! Each variant runs `--rounds` times, interleaved, and the median is reported (the build VM is
//! shared, so single runs are noisy).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use siphon_reactor::{BackendPref, Config, Cx, Datagram, Handler, Runtime};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    count: u64,
    warmup: u64,
    secs: f64,
    window: usize,
    batch: usize,
    size: usize,
    server_cpu: usize,
    gen_cpu: usize,
    rounds: usize,
    modes: Vec<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        count: 300_000,
        warmup: 20_000,
        secs: 4.0,
        window: 256,
        batch: 32,
        size: 300,
        server_cpu: 0,
        gen_cpu: 1,
        rounds: 3,
        modes: vec!["io_uring".into(), "epoll".into(), "tokio".into()],
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--count" => a.count = v()?.parse()?,
            "--warmup" => a.warmup = v()?.parse()?,
            "--secs" => a.secs = v()?.parse()?,
            "--window" => a.window = v()?.parse()?,
            "--batch" => a.batch = v()?.parse()?,
            "--size" => a.size = v()?.parse()?,
            "--server-cpu" => a.server_cpu = v()?.parse()?,
            "--gen-cpu" => a.gen_cpu = v()?.parse()?,
            "--rounds" => a.rounds = v()?.parse()?,
            "--modes" => a.modes = v()?.split(',').map(str::to_owned).collect(),
            "-h" | "--help" => {
                println!(
                    "siphon-bench-echo [--count N] [--warmup N] [--secs S] [--window N] [--batch N] [--size B]\n  [--server-cpu C] [--gen-cpu C] [--rounds R] [--modes io_uring,epoll,tokio]"
                );
                std::process::exit(0);
            }
            _ => bail!("unknown argument {k}"),
        }
    }
    Ok(a)
}

/// Nanoseconds thread `tid` of this process has run.
fn thread_cpu_ns(tid: i32) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))?;
    Ok(s.split_whitespace().next().context("schedstat")?.parse()?)
}

struct Echo;

impl Handler for Echo {
    type Msg = ();
    fn on_datagram(&mut self, cx: &mut Cx<'_, ()>, d: Datagram<'_>) {
        cx.send_to(d.socket, d.peer, None, d.data);
    }
}

/// A running echo server: its address, the tid to measure, and how to stop it.
struct Server {
    addr: SocketAddr,
    tid: i32,
    stop: Box<dyn FnOnce()>,
}

fn reactor_server(backend: BackendPref, cpu: usize) -> anyhow::Result<Server> {
    let tid = Arc::new(AtomicI32::new(0));
    let t2 = tid.clone();
    let cfg = Config {
        cpus: vec![cpu],
        backend,
        udp: vec!["127.0.0.1:0".parse()?],
        udp_buffers: 4096,
        udp_buffer_size: 2048,
        ..Config::default()
    };
    let rt = Runtime::start(cfg, move |_| {
        t2.store(siphon_reactor::sys::gettid(), Ordering::SeqCst);
        Echo
    })?;
    eprintln!(
        "  backend: {} ({})",
        rt.info().backend.as_str(),
        rt.info().reason
    );
    while tid.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let addr = rt.udp_addrs()[0];
    Ok(Server {
        addr,
        tid: tid.load(Ordering::SeqCst),
        stop: Box::new(move || {
            let _ = rt.shutdown();
        }),
    })
}

fn tokio_server(cpu: usize) -> anyhow::Result<Server> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let th = std::thread::spawn(move || -> anyhow::Result<()> {
        core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
            tx.send((sock.local_addr()?, siphon_reactor::sys::gettid()))?;
            let mut buf = vec![0u8; 2048];
            let serve = async {
                loop {
                    let (n, peer) = sock.recv_from(&mut buf).await?;
                    sock.send_to(&buf[..n], peer).await?;
                }
                #[allow(unreachable_code)] // the loop only ends through `?`
                Ok::<(), anyhow::Error>(())
            };
            tokio::select! {
                r = serve => r,
                _ = stop_rx => Ok(()),
            }
        })
    });
    let (addr, tid) = rx.recv_timeout(Duration::from_secs(10))?;
    Ok(Server {
        addr,
        tid,
        stop: Box::new(move || {
            let _ = stop_tx.send(());
            let _ = th.join();
        }),
    })
}

fn start_server(mode: &str, cpu: usize) -> anyhow::Result<Server> {
    match mode {
        "io_uring" => reactor_server(BackendPref::Uring, cpu),
        "epoll" => reactor_server(BackendPref::Epoll, cpu),
        "tokio" => tokio_server(cpu),
        other => bail!("unknown mode {other}"),
    }
}

struct Sample {
    datagrams: u64,
    secs: f64,
    cpu_ns: u64,
    lost: u64,
}

/// Closed-window load: sendmmsg batches while fewer than `window` are in flight, drain replies
/// with recvmmsg. Returns the measured part (after `warmup` replies).
fn generate(a: &Args, server: &Server) -> anyhow::Result<Sample> {
    core_affinity::set_for_current(core_affinity::CoreId { id: a.gen_cpu });
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.connect(server.addr)?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    let fd = sock.as_raw_fd();
    let payload = vec![b'S'; a.size];
    let batch = a.batch.max(1);
    let mut rbufs = vec![vec![0u8; 2048]; 64];
    let total = a.warmup + a.count;
    let (mut sent, mut received, mut inflight, mut lost) = (0u64, 0u64, 0usize, 0u64);
    let mut measure_start: Option<(Instant, u64, u64)> = None;
    let t0 = Instant::now();
    loop {
        while inflight + batch <= a.window && sent < total + a.window as u64 {
            let mut iovs: Vec<libc::iovec> = (0..batch)
                .map(|_| libc::iovec {
                    iov_base: payload.as_ptr() as *mut _,
                    iov_len: payload.len(),
                })
                .collect();
            // SAFETY: mmsghdr is plain old data; zero is valid.
            let mut hdrs: Vec<libc::mmsghdr> =
                (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect();
            for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: headers point at `iovs` and `payload`, alive across the call.
            let r = unsafe { libc::sendmmsg(fd, hdrs.as_mut_ptr(), batch as u32, 0) };
            if r <= 0 {
                break;
            }
            sent += r as u64;
            inflight += r as usize;
        }
        let mut iovs: Vec<libc::iovec> = rbufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: b.len(),
            })
            .collect();
        // SAFETY: plain old data; zero is valid.
        let mut hdrs: Vec<libc::mmsghdr> = (0..iovs.len())
            .map(|_| unsafe { std::mem::zeroed() })
            .collect();
        for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: headers point at `iovs` over `rbufs`, alive across the call.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                hdrs.len() as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if r > 0 {
            received += r as u64;
            inflight -= (r as usize).min(inflight);
        } else {
            // Timed out: whatever is in flight was dropped somewhere; reopen the window.
            lost += inflight as u64;
            inflight = 0;
        }
        if measure_start.is_none() && received >= a.warmup {
            measure_start = Some((Instant::now(), received, thread_cpu_ns(server.tid)?));
        }
        if received >= total || t0.elapsed().as_secs_f64() > a.secs {
            break;
        }
    }
    let (start, base, cpu0) = measure_start.context("warm-up did not finish within --secs")?;
    let cpu1 = thread_cpu_ns(server.tid)?;
    Ok(Sample {
        datagrams: received - base,
        secs: start.elapsed().as_secs_f64(),
        cpu_ns: cpu1 - cpu0,
        lost,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let a = parse_args()?;
    let cores = core_affinity::get_core_ids().unwrap_or_default().len();
    println!(
        "siphon-bench-echo: {}-byte datagrams, window {}, batch {}, {} measured (+{} warm-up) or {} s, server cpu {}, generator cpu {}, {} rounds, {} cpus, kernel {}",
        a.size,
        a.window,
        a.batch,
        a.count,
        a.warmup,
        a.secs,
        a.server_cpu,
        a.gen_cpu,
        a.rounds,
        cores,
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
    );
    // The first server run in a process costs ~0.8 µs/datagram more whatever the variant
    // (measured: first-touch and kernel slab warm-up), so one unmeasured run goes first.
    if let Some(first) = a.modes.first() {
        let server = start_server(first, a.server_cpu)?;
        let _ = generate(&a, &server)?;
        (server.stop)();
    }
    let mut results: Vec<(String, Vec<f64>, Vec<f64>)> = a
        .modes
        .iter()
        .map(|m| (m.clone(), vec![], vec![]))
        .collect();
    for round in 0..a.rounds {
        for (mode, pps, cpu) in results.iter_mut() {
            let server = start_server(mode, a.server_cpu)?;
            let s = generate(&a, &server)?;
            (server.stop)();
            let rate = s.datagrams as f64 / s.secs;
            let us = s.cpu_ns as f64 / 1000.0 / s.datagrams.max(1) as f64;
            println!(
                "round {round} {mode:>8}: {:>8} dgrams in {:.2} s = {:>9.0} dgram/s, server CPU {:.2} µs/dgram, lost {}",
                s.datagrams, s.secs, rate, us, s.lost
            );
            pps.push(rate);
            cpu.push(us);
        }
    }
    let tokio_cpu = results
        .iter()
        .find(|r| r.0 == "tokio")
        .map(|r| median(r.2.clone()));
    println!("\nmedian of {} rounds:", a.rounds);
    for (mode, pps, cpu) in &results {
        let c = median(cpu.clone());
        let ratio = tokio_cpu.map_or(String::new(), |t| format!(", {:.2}x tokio CPU", c / t));
        println!(
            "  {mode:>8}: {:>9.0} dgram/s, {:.2} µs CPU/dgram{ratio}",
            median(pps.clone()),
            c
        );
    }
    let json: Vec<String> = results
        .iter()
        .map(|(m, p, c)| {
            format!(
                "{{\"mode\":\"{m}\",\"dgram_per_s\":{:.0},\"cpu_us_per_dgram\":{:.3}}}",
                median(p.clone()),
                median(c.clone())
            )
        })
        .collect();
    println!("JSON [{}]", json.join(","));
    Ok(())
}
