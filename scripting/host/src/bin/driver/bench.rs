//! `--bench`: events/s per core and reactor → worker → actions round trip for a trivial sync
//! handler, an async handler, a handler that reads three headers and relays, and the default
//! policy (deploy/examples/proxy_default.py) on one call's hooked requests: `default` cycles
//! an initial INVITE to a registered user (registrar.lookup hit, record_route, fork) and its
//! in-dialog ACK and BYE (loose_route over our Record-Route, relay); `default-invite` and
//! `default-dialog` run only the one or the other.
//! One feeder thread plays every reactor: it fills the cores' rings, drains the action rings,
//! and stamps each event. Prints one JSON object.

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use siphon_script::{Event, EventKind, Host, Meta, SipMessage, python_version};

use crate::{Opts, config_from, mode_str};

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\nMax-Forwards: 70\r\nTo: Bob <sip:bob@example.com>\r\nFrom: Alice <sip:alice@example.com>;tag=1928301774\r\nCall-ID: a84b4c76e66710@pc33.example.com\r\nCSeq: 314159 INVITE\r\nContact: <sip:alice@192.0.2.1>\r\nUser-Agent: bench\r\nContent-Length: 0\r\n\r\n";

/// The node's own address in the `default` benches: the Route of in-dialog requests names it.
const NODE_ADDR: &str = "127.0.0.1:5060";

/// bob's binding (`registrar.lookup` finds it for the `default` INVITE).
const REGISTER: &str = "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-reg-1;rport\r\nFrom: <sip:bob@127.0.0.1>;tag=r1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: reg-1@127.0.0.1\r\nCSeq: 1 REGISTER\r\nContact: <sip:bob@127.0.0.1:5070;transport=udp>\r\nExpires: 3600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

/// One call of bench/sipp/uac_invite.xml as the script sees it: the initial INVITE (with
/// SDP), then the ACK and BYE inside the dialog, routed over the node's Record-Route.
const CALL: [&str; 3] = [
    "INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-1-1-0;rport=5080;received=127.0.0.1\r\nFrom: <sip:alice@127.0.0.1>;tag=1SIPpTag001\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: 1-1@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:5080;transport=UDP>\r\nMax-Forwards: 70\r\nUser-Agent: sipp-bench\r\nContent-Type: application/sdp\r\nContent-Length: 129\r\n\r\nv=0\r\no=alice 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
    "ACK sip:bob@127.0.0.1:5070;transport=UDP SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-1-1-5;rport=5080;received=127.0.0.1\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nFrom: <sip:alice@127.0.0.1>;tag=1SIPpTag001\r\nTo: <sip:bob@127.0.0.1>;tag=2SIPpTag011\r\nCall-ID: 1-1@127.0.0.1\r\nCSeq: 1 ACK\r\nContact: <sip:alice@127.0.0.1:5080;transport=UDP>\r\nMax-Forwards: 70\r\nUser-Agent: sipp-bench\r\nContent-Length: 0\r\n\r\n",
    "BYE sip:bob@127.0.0.1:5070;transport=UDP SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-1-1-7;rport=5080;received=127.0.0.1\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nFrom: <sip:alice@127.0.0.1>;tag=1SIPpTag001\r\nTo: <sip:bob@127.0.0.1>;tag=2SIPpTag011\r\nCall-ID: 1-1@127.0.0.1\r\nCSeq: 2 BYE\r\nContact: <sip:alice@127.0.0.1:5080;transport=UDP>\r\nMax-Forwards: 70\r\nUser-Agent: sipp-bench\r\nContent-Length: 0\r\n\r\n",
];

/// The requests one bench event cycles through (event `id` takes `id % len`).
fn messages(kind: &str) -> anyhow::Result<Vec<Arc<SipMessage>>> {
    let raw: &[&str] = match kind {
        "default" => &CALL,
        "default-invite" => &CALL[..1],
        "default-dialog" => &CALL[1..],
        _ => &[INVITE],
    };
    raw.iter()
        .map(|m| Ok(Arc::new(SipMessage::parse(m.as_bytes())?)))
        .collect()
}

fn script(kind: &str) -> anyhow::Result<&'static str> {
    Ok(match kind {
        "trivial" => {
            "from siphon import proxy\n@proxy.on_request\ndef h(request):\n    request.reply(200, 'OK')\n"
        }
        "async" => {
            "from siphon import proxy\n@proxy.on_request\nasync def h(request):\n    request.reply(200, 'OK')\n"
        }
        "headers" => {
            "from siphon import proxy\n@proxy.on_request\ndef h(request):\n    f = request.get_header('From')\n    c = request.get_header('Call-ID')\n    u = request.get_header('User-Agent')\n    if f and c and u:\n        request.relay()\n"
        }
        "default" | "default-invite" | "default-dialog" => {
            include_str!("../../../../../deploy/examples/proxy_default.py")
        }
        k => anyhow::bail!(
            "unknown bench handler {k} (trivial|async|headers|default|default-invite|default-dialog)"
        ),
    })
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i] as f64 / 1000.0
}

pub(crate) fn run(o: &Opts, kind: &str) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("siphon-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("bench_app.py");
    std::fs::write(&path, script(kind)?)?;
    let mut cfg = config_from(o, &path.to_string_lossy(), None)?;
    cfg.queue_capacity = 1024;
    cfg.account_cpu = true;
    cfg.log = Arc::new(|_, _, m| eprintln!("{m}"));
    if kind.starts_with("default") {
        cfg.local_addrs = vec![NODE_ADDR.into()];
        cfg.local_domains = vec!["127.0.0.1".into(), "localhost".into()];
    }
    let host = Host::start(cfg)?;
    if kind.starts_with("default") {
        let reg = SipMessage::parse(REGISTER.as_bytes())?;
        if !matches!(
            host.handle().registrar().seed(&reg),
            siphon_script::shared::SaveOutcome::Ok { .. }
        ) {
            anyhow::bail!("bench: seeding bob's binding failed");
        }
    }
    if o.inline {
        let r = inline(&host, o, kind);
        host.shutdown();
        let _ = std::fs::remove_dir_all(&dir);
        println!("{}", r?);
        return Ok(());
    }
    let h = host.handle();
    let cores = o.cores;
    let msgs = messages(kind)?;
    let mk = |id: u64, core: usize| Event {
        id,
        core,
        kind: EventKind::Request,
        request: Arc::clone(&msgs[id as usize % msgs.len()]),
        reply: None,
        meta: Meta::default(),
        request_id: None,
    };
    // Warm-up: every warm-up event's actions are drained before measuring.
    let warm = 2000usize;
    let (mut sent, mut got) = (0usize, 0usize);
    while got < warm {
        if sent < warm && h.submit(mk(sent as u64, sent % cores)).is_ok() {
            sent += 1;
        }
        for c in 0..cores {
            while h.poll(c).is_some() {
                got += 1;
            }
        }
    }

    let before = h.worker_stats();
    // Throughput: keep every ring full.
    let n = o.events;
    let mut sent_at = vec![Instant::now(); n];
    let mut lat = Vec::with_capacity(n);
    let (mut next, mut done) = (0usize, 0usize);
    let start = Instant::now();
    while done < n {
        let mut progress = false;
        for c in 0..cores {
            while next < n {
                let ev = mk(next as u64, c);
                let t = Instant::now();
                if h.submit(ev).is_err() {
                    break;
                }
                sent_at[next] = t;
                next += 1;
                progress = true;
                if next % cores != c {
                    break;
                }
            }
            while let Some(a) = h.poll(c) {
                lat.push(sent_at[a.id as usize].elapsed().as_nanos() as u64);
                done += 1;
                progress = true;
            }
        }
        if !progress {
            std::thread::yield_now();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let after = h.worker_stats();
    // Capacity per core: events per second of worker busy time (excludes feeder starvation).
    let capacity: Vec<f64> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| (a.0 - b.0) as f64 / ((a.1 - b.1).max(1) as f64 / 1e9))
        .collect();
    let total_rate = n as f64 / secs;
    let (lp50, lp99) = (pct(&mut lat, 0.50), pct(&mut lat, 0.99));

    // Round trip: one event in flight on core 0.
    let m = (n / 10).clamp(1000, 50_000);
    let mut rt = Vec::with_capacity(m);
    for i in 0..m {
        let t = Instant::now();
        let mut ev = mk(i as u64, 0);
        while let Err(e) = h.submit(ev) {
            ev = e;
        }
        loop {
            if h.poll(0).is_some() {
                break;
            }
            std::hint::spin_loop();
        }
        rt.push(t.elapsed().as_nanos() as u64);
    }
    let (rp50, rp99) = (pct(&mut rt, 0.50), pct(&mut rt, 0.99));
    let result = json!({
        "handler": kind, "python": python_version(), "mode": mode_str(host.mode()), "cores": cores, "events": n,
        "events_per_s_total": total_rate.round(), "events_per_s_per_core": (total_rate / cores as f64).round(),
        "cpu_capacity_events_per_s_per_worker": capacity.iter().map(|c| c.round()).collect::<Vec<_>>(),
        "saturated_latency_us": {"p50": lp50, "p99": lp99},
        "round_trip_us": {"p50": rp50, "p99": rp99, "samples": m},
    });
    println!("{result}");
    host.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// Inline placement: each core's thread is both the "reactor" (fills its ring, drains its
/// actions) and the script worker (`InlineWorker::turn`), so no thread hop and no wake-ups.
fn inline(host: &Host, o: &Opts, kind: &str) -> anyhow::Result<serde_json::Value> {
    let cores = o.cores;
    let n = o.events;
    let barrier = Arc::new(std::sync::Barrier::new(cores));
    let mut threads = Vec::new();
    for core in 0..cores {
        let (h, barrier) = (host.handle(), Arc::clone(&barrier));
        let kind = kind.to_owned();
        threads.push(std::thread::spawn(
            move || -> Result<(f64, f64, f64, f64), String> {
                let mut w = h.inline_worker(core).map_err(|e| e.to_string())?;
                let msgs = messages(&kind).map_err(|e| e.to_string())?;
                let mk = |id: u64| Event {
                    id,
                    core,
                    kind: EventKind::Request,
                    request: Arc::clone(&msgs[id as usize % msgs.len()]),
                    reply: None,
                    meta: Meta::default(),
                    request_id: None,
                };
                let run = |w: &mut siphon_script::InlineWorker, count: usize| {
                    let (mut sent, mut got) = (0usize, 0usize);
                    while got < count {
                        while sent < count && h.submit(mk(sent as u64)).is_ok() {
                            sent += 1;
                        }
                        w.turn();
                        while h.poll(core).is_some() {
                            got += 1;
                        }
                    }
                };
                run(&mut w, 2000);
                barrier.wait();
                let start = Instant::now();
                run(&mut w, n);
                let rate = n as f64 / start.elapsed().as_secs_f64();
                // Round trip with one event in flight: submit -> turn -> poll.
                let m = (n / 10).clamp(1000, 50_000);
                let mut rt = Vec::with_capacity(m);
                for i in 0..m {
                    let t = Instant::now();
                    let _ = h.submit(mk(i as u64));
                    while h.poll(core).is_none() {
                        w.turn();
                    }
                    rt.push(t.elapsed().as_nanos() as u64);
                }
                let (p50, p99) = (pct(&mut rt, 0.5), pct(&mut rt, 0.99));
                drop(w);
                Ok((rate, p50, p99, m as f64))
            },
        ));
    }
    let mut rates = Vec::new();
    let mut rts = Vec::new();
    for t in threads {
        let r = t
            .join()
            .map_err(|_| anyhow::anyhow!("bench thread panicked"))?
            .map_err(anyhow::Error::msg)?;
        rates.push(r.0.round());
        rts.push(json!({"p50": r.1, "p99": r.2, "samples": r.3}));
    }
    let total: f64 = rates.iter().sum();
    Ok(json!({
        "handler": kind, "python": python_version(), "mode": mode_str(host.mode()), "placement": "inline",
        "cores": cores, "events_per_core": n, "events_per_s_per_core": rates, "events_per_s_total": total.round(),
        "round_trip_us": rts,
    }))
}
