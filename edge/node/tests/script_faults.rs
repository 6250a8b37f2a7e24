//! Script faults on the release binary, one reactor core (issue 17; findings §3, §7 items 5, 7,
//! 8): a handler stuck in `time.sleep(30)`, in `while True: pass`, or awaiting a future that
//! never completes. Meanwhile every other request gets a final answer (200, or 503 with
//! Retry-After) and none is left unanswered; the stuck one gets 500, 503 or 408; `/health`
//! names a stuck core; and after SIGTERM the process exits by itself (the test kills it as a
//! safety net at `drain_secs` + 30 s and fails if it had to). Both placements: `inline` (the
//! default: the core's standby thread runs its reactor while the handler holds the reactor's
//! own thread) and `thread`.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use common::{Node, Placement, Ua, free_port, header, http_get, request, status};

const SCRIPT: &str = r#"
import asyncio, time
from siphon import proxy

@proxy.on_request
async def stuck_handler(request):
    hang = request.get_header("X-Hang")
    if request.get_header("X-Ping"):
        pass
    elif hang == "loop":
        while True:
            pass
    elif hang == "sleep":
        time.sleep(30)
    elif hang == "never":
        await asyncio.Future()
    request.reply(200, "OK")
"#;

/// Drain seconds in the test config (the safety net is this + 30 s).
const DRAIN_SECS: u64 = 5;

fn start(name: &str, placement: Placement) -> (Node, SocketAddr) {
    let mport = free_port();
    let extra = format!(
        "server:\n  drain_secs: {DRAIN_SECS}\n\
         transaction:\n  timeout_secs: 5\n\
         metrics:\n  prometheus:\n    listen: \"127.0.0.1:{mport}\"\n"
    );
    let node = Node::with_script(name, SCRIPT, placement, &extra);
    (node, SocketAddr::from(([127, 0, 0, 1], mport)))
}

/// Final answers by Call-ID until every id in `want` has one or `until` passes.
fn collect(ua: &Ua, want: &[String], until: Instant) -> HashMap<String, String> {
    let mut got = HashMap::new();
    ua.timeout(Duration::from_millis(200));
    while Instant::now() < until && want.iter().any(|c| !got.contains_key(c)) {
        let Some((m, _)) = ua.recv() else { continue };
        if status(&m).is_none_or(|s| s < 200) {
            continue;
        }
        if let Some(cid) = header(&m, "Call-ID").first() {
            got.entry((*cid).to_string()).or_insert(m);
        }
    }
    got
}

/// Send one `method` request per Call-ID in `ids` back to back (with `extra` header lines);
/// the final answers that come within `wait`, by Call-ID.
fn ask_all(
    ua: &Ua,
    node: &Node,
    method: &str,
    ids: &[String],
    extra: &str,
    wait: Duration,
) -> HashMap<String, String> {
    for id in ids {
        ua.send(
            node.sip,
            &request(method, "sip:x@127.0.0.1", ua.addr, id, extra),
        );
    }
    collect(ua, ids, Instant::now() + wait)
}

/// Send one OPTIONS with Call-ID `id` (and `extra` header lines); its final answer, if one
/// comes within `wait`.
fn ask_one(ua: &Ua, node: &Node, id: &str, extra: &str, wait: Duration) -> Option<String> {
    ask_all(ua, node, "OPTIONS", &[id.to_owned()], extra, wait).remove(id)
}

/// Send OPTIONS (with `extra` header lines) once a second or so until an answer satisfies
/// `done`, for at most `limit`; panics with the last answer and the node's log otherwise.
fn ask_until(node: &Node, extra: &str, limit: Duration, done: impl Fn(&str) -> bool) {
    let ua = Ua::new();
    let until = Instant::now() + limit;
    let mut last = String::new();
    for i in 0.. {
        assert!(
            Instant::now() < until,
            "no answer as expected (last: {last})\n{}",
            node.log()
        );
        let id = format!("ask-{i}");
        if let Some(m) = ask_one(&ua, node, &id, extra, Duration::from_secs(1)) {
            if done(&m) {
                return;
            }
            last = m.lines().next().unwrap_or_default().to_owned();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Wait until the node's interpreter answers (inline placement loads the script on the
/// reactor thread after the sockets are bound): an OPTIONS with `X-Ping` gets 200.
fn warm_up(node: &Node) {
    ask_until(node, "X-Ping: 1\r\n", Duration::from_secs(30), |m| {
        status(m) == Some(200)
    });
}

/// Wait for the process to exit by itself within `limit`; kill it and return false otherwise.
fn exits_within(child: &mut Child, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

fn scenario(hang: &str, placement: Placement) {
    let name = format!(
        "faults-{hang}-{}",
        if placement.inline { "inline" } else { "thread" }
    );
    let (mut node, metrics) = start(&name, placement);
    warm_up(&node);
    let stuck_ua = Ua::new();
    let stuck_id = format!("{name}-stuck");
    stuck_ua.send(
        node.sip,
        &request(
            "OPTIONS",
            "sip:x@127.0.0.1",
            stuck_ua.addr,
            &stuck_id,
            &format!("X-Hang: {hang}\r\n"),
        ),
    );
    std::thread::sleep(Duration::from_millis(400));
    // A handler blocked or looping in one turn marks its core stuck (the exporter thread
    // answers the probe).
    if hang != "never" {
        let health = http_get(metrics, "/health");
        assert!(
            health.starts_with("HTTP/1.1 503") && health.contains("core 0"),
            "{name}: /health while stuck: {health}"
        );
    }
    // Normal traffic meanwhile: 20 OPTIONS at 10/s.
    let ua = Ua::new();
    let ids: Vec<String> = (0..20).map(|i| format!("{name}-n{i}")).collect();
    for id in &ids {
        ua.send(
            node.sip,
            &request("OPTIONS", "sip:x@127.0.0.1", ua.addr, id, ""),
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Inline placement too: the core's standby thread runs its reactor while the handler
    // holds the reactor's own thread.
    let wait = Duration::from_secs(15);
    let got = collect(&ua, &ids, Instant::now() + wait);
    for id in &ids {
        let m = got
            .get(id)
            .unwrap_or_else(|| panic!("{name}: {id} unanswered\n{}", node.log()));
        match status(m) {
            Some(200) => {}
            Some(503) => assert!(
                !header(m, "Retry-After").is_empty(),
                "{name}: 503 without Retry-After: {m}"
            ),
            other => panic!("{name}: {id} got {other:?}: {m}"),
        }
    }
    let stuck = collect(
        &stuck_ua,
        std::slice::from_ref(&stuck_id),
        Instant::now() + wait,
    );
    let answer = stuck
        .get(&stuck_id)
        .unwrap_or_else(|| panic!("{name}: the stuck request is unanswered\n{}", node.log()));
    let code = status(answer);
    assert!(
        matches!(code, Some(500 | 503 | 408)),
        "{name}: the stuck request got {code:?}"
    );
    if hang == "loop" {
        assert_eq!(code, Some(500), "{name}: an interrupted loop answers 500");
        let log = node.log();
        assert!(
            log.contains("HandlerStalled") && log.contains("in stuck_handler"),
            "{name}: the log names the handler and its line:\n{log}"
        );
    }
    if placement.inline && hang != "never" {
        // The standby took the core over once (`siphon_reactor_events_total{event="handovers"}`).
        let m = http_get(metrics, "/metrics");
        assert!(
            m.contains("siphon_reactor_events_total{core=\"0\",event=\"handovers\"} 1"),
            "{name}: one handover\n{m}"
        );
    }
    {
        // Once the worker is back (or was never stuck), the node serves again.
        if hang == "loop" || hang == "never" {
            let id = format!("{name}-after");
            let got = ask_one(&ua, &node, &id, "", Duration::from_secs(5));
            assert_eq!(
                got.as_deref().and_then(status),
                Some(200),
                "{name}: served after"
            );
            assert!(http_get(metrics, "/health").starts_with("HTTP/1.1 200"));
        }
    }
    // SIGTERM: the process exits by itself, a stuck thread or not.
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &node.pid().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -TERM failed");
    let exited = exits_within(node.child_mut(), Duration::from_secs(DRAIN_SECS + 30));
    assert!(
        exited,
        "{name}: SIGTERM did not stop the node\n{}",
        node.log()
    );
}

const THREAD: Placement = Placement {
    inline: false,
    cores: 1,
};
const INLINE: Placement = Placement {
    inline: true,
    cores: 1,
};

#[test]
fn thread_sleep() {
    scenario("sleep", THREAD);
}

#[test]
fn thread_busy_loop() {
    scenario("loop", THREAD);
}

#[test]
fn thread_never_answers() {
    scenario("never", THREAD);
}

#[test]
fn inline_sleep() {
    scenario("sleep", INLINE);
}

#[test]
fn inline_busy_loop() {
    scenario("loop", INLINE);
}

#[test]
fn inline_never_answers() {
    scenario("never", INLINE);
}

/// Inline placement with a tiny queue: more async completions in one turn than the outbound
/// ring holds must not hang the core (findings §7 item 8).
#[test]
fn inline_full_outbound_queue_does_not_deadlock() {
    let script = r#"
import asyncio
from siphon import proxy

ev = asyncio.Event()

@proxy.on_request
async def h(request):
    if request.get_header("X-Ping"):
        request.reply(200, "OK")
        return
    if request.get_header("X-Release"):
        ev.set()
        request.reply(200, "OK")
        return
    await ev.wait()
    request.reply(200, "OK")
"#;
    let mport = free_port();
    let extra = format!(
        "  queue_capacity: 64\nmetrics:\n  prometheus:\n    listen: \"127.0.0.1:{mport}\"\n"
    );
    let node = Node::with_script("faults-ring", script, INLINE, &extra);
    warm_up(&node);
    // Four callers, so that the burst of answers fits their receive buffers.
    let uas: Vec<Ua> = (0..4).map(|_| Ua::new()).collect();
    let ids: Vec<String> = (0..200).map(|i| format!("ring-{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let ua = &uas[i % 4];
        ua.send(
            node.sip,
            &request("OPTIONS", "sip:x@127.0.0.1", ua.addr, id, ""),
        );
        // Stay under the inbound ring's capacity per turn.
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(300));
    let rel = "ring-release".to_string();
    uas[0].send(
        node.sip,
        &request(
            "OPTIONS",
            "sip:x@127.0.0.1",
            uas[0].addr,
            &rel,
            "X-Release: 1\r\n",
        ),
    );
    let mut got = HashMap::new();
    for (k, ua) in uas.iter().enumerate() {
        let mine: Vec<String> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 4 == k)
            .map(|(_, id)| id.clone())
            .chain((k == 0).then(|| rel.clone()))
            .collect();
        got.extend(collect(ua, &mine, Instant::now() + Duration::from_secs(15)));
    }
    let mut all = ids.clone();
    all.push(rel);
    let ok = all
        .iter()
        .filter(|id| got.get(*id).and_then(|m| status(m)) == Some(200))
        .count();
    // What the node sent (the warm-up's 200 included), whatever the callers' buffers kept.
    let metrics = http_get(SocketAddr::from(([127, 0, 0, 1], mport)), "/metrics");
    let sent = metrics
        .lines()
        .find_map(|l| l.strip_prefix("siphon_responses_total{code=\"200\"} "))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    assert!(
        sent > all.len(),
        "the node sent {sent} 200s for {} requests",
        all.len()
    );
    let mut codes: Vec<Option<u16>> = all
        .iter()
        .map(|id| got.get(id).and_then(|m| status(m)))
        .filter(|c| *c != Some(200))
        .collect();
    codes.sort_unstable();
    assert_eq!(
        ok,
        all.len(),
        "answered 200: {ok} of {}; the others: {codes:?}\n{}",
        all.len(),
        node.log()
    );
}

/// Handlers that await a future that never completes: each holds a suspended task (and its
/// event) until the node answers 408 at `transaction.timeout_secs`; the node then cancels it
/// (`CancelledError` at its await, its `finally` runs), so its slot is free again. With
/// `limits.max_suspended_handlers: 4`, a request arriving while four are suspended gets 503
/// with Retry-After; after the 408s, four more are admitted (eight in all, twice the cap), and
/// the cancellations are counted (`siphon_script_cancelled_total`) and logged.
#[test]
fn never_answering_handlers_are_cancelled_at_the_timeout() {
    let script = r#"
import asyncio
from siphon import proxy, metrics

finals = metrics.counter("test_handler_finally_total", "finally blocks of cancelled handlers")

@proxy.on_request
async def never(request):
    if request.get_header("X-Ping"):
        request.reply(200, "OK")
        return
    try:
        await asyncio.Future()
    finally:
        finals.inc()
"#;
    let mport = free_port();
    let extra = format!(
        "transaction:\n  timeout_secs: 1\n\
         limits:\n  max_suspended_handlers: 4\n  retry_after_secs: 7\n\
         metrics:\n  prometheus:\n    listen: \"127.0.0.1:{mport}\"\n"
    );
    let node = Node::with_script("faults-cancel", script, THREAD, &extra);
    let metrics = SocketAddr::from(([127, 0, 0, 1], mport));
    warm_up(&node);
    let ua = Ua::new();
    let send = |id: &str| {
        ua.send(
            node.sip,
            &request("OPTIONS", "sip:x@127.0.0.1", ua.addr, id, ""),
        );
    };
    // Wave 1: four suspended handlers fill the cap; the fifth is refused without the script.
    let wave1: Vec<String> = (0..4).map(|i| format!("cancel-a{i}")).collect();
    for id in &wave1 {
        send(id);
    }
    std::thread::sleep(Duration::from_millis(200));
    send("cancel-full");
    let mut want = wave1.clone();
    want.push("cancel-full".into());
    let got = collect(&ua, &want, Instant::now() + Duration::from_secs(10));
    let full = got
        .get("cancel-full")
        .unwrap_or_else(|| panic!("cancel-full unanswered\n{}", node.log()));
    assert_eq!(status(full), Some(503), "at the cap: {full}");
    assert_eq!(header(full, "Retry-After"), ["7"], "{full}");
    for id in &wave1 {
        let m = got
            .get(id)
            .unwrap_or_else(|| panic!("{id} unanswered\n{}", node.log()));
        assert_eq!(status(m), Some(408), "{id}: {m}");
    }
    // Wave 2: the cancelled handlers freed their slots, so four more are admitted (and time
    // out in turn) instead of being refused at the cap.
    let metric = |name: &str| -> f64 {
        http_get(metrics, "/metrics")
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(-1.0)
    };
    let until = Instant::now() + Duration::from_secs(10);
    while metric("siphon_script_suspended ") != 0.0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let wave2: Vec<String> = (0..4).map(|i| format!("cancel-b{i}")).collect();
    for id in &wave2 {
        send(id);
    }
    let got = collect(&ua, &wave2, Instant::now() + Duration::from_secs(10));
    for id in &wave2 {
        let m = got
            .get(id)
            .unwrap_or_else(|| panic!("{id} unanswered\n{}", node.log()));
        assert_eq!(status(m), Some(408), "{id} (not refused at the cap): {m}");
    }
    ua.send(
        node.sip,
        &request(
            "OPTIONS",
            "sip:x@127.0.0.1",
            ua.addr,
            "cancel-ping",
            "X-Ping: 1\r\n",
        ),
    );
    let got = collect(
        &ua,
        &["cancel-ping".to_string()],
        Instant::now() + Duration::from_secs(5),
    );
    assert_eq!(got.get("cancel-ping").and_then(|m| status(m)), Some(200));
    // Every one of the eight was cancelled, and its finally block ran.
    let until = Instant::now() + Duration::from_secs(10);
    while metric("test_handler_finally_total ") < 8.0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(metric("test_handler_finally_total "), 8.0, "{}", node.log());
    assert_eq!(metric("siphon_script_cancelled_total "), 8.0);
    assert_eq!(metric("siphon_script_suspended "), 0.0);
    assert_eq!(
        metric("siphon_limit_hits_total{limit=\"suspended_handlers\"} "),
        1.0
    );
    assert_eq!(metric("siphon_script_timeouts_total "), 8.0);
    let log = node.log();
    assert!(
        log.contains("suspended handler(s): the node answered without them"),
        "the cancellation is logged:\n{log}"
    );
    assert!(
        !log.contains("CancelledError"),
        "a cancellation by the node is no script error:\n{log}"
    );
}

/// A burst at low load is not overload: 60 INVITEs sent back to back to a one-core node on
/// the default placement, after a quiet minute's worth of warm-up, all get 200 (none the 503
/// of `tuning.overload_queue_delay_ms`). The delay estimate divides the queue by the worker's
/// rate per second of *work*; per second of wall time (the offered load, a few events here)
/// it shed every INVITE past the 16th of such a burst.
#[test]
fn a_burst_at_low_load_is_not_shed() {
    let (node, _metrics) = start("faults-burst", INLINE);
    warm_up(&node);
    // A few quiet windows (100 ms each) with a handful of events: the worker's measured rate.
    let ua = Ua::new();
    for i in 0..5 {
        let id = format!("quiet-{i}");
        let _ = ask_one(&ua, &node, &id, "X-Ping: 1\r\n", Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(120));
    }
    let ids: Vec<String> = (0..60).map(|i| format!("burst-{i}")).collect();
    let got = ask_all(
        &ua,
        &node,
        "INVITE",
        &ids,
        "X-Ping: 1\r\n",
        Duration::from_secs(15),
    );
    let shed: Vec<&String> = ids
        .iter()
        .filter(|id| got.get(*id).and_then(|m| status(m)) == Some(503))
        .collect();
    assert!(shed.is_empty(), "shed {} of 60: {shed:?}", shed.len());
    for id in &ids {
        let m = got
            .get(id)
            .unwrap_or_else(|| panic!("{id} unanswered\n{}", node.log()));
        assert_eq!(status(m), Some(200), "{id}: {m}");
    }
}

/// A reload while a handler is stuck and the core's standby runs its reactor: requests
/// meanwhile get answers (503 with Retry-After from the standby), and once the handler returns
/// the core's own thread takes the reactor back and loads the new script.
#[test]
fn a_reload_while_the_standby_runs_the_core_applies_when_the_handler_returns() {
    let script = |reason: &str| {
        format!(
            "import time\nfrom siphon import proxy\n\n@proxy.on_request\n\
             def h(request):\n    if request.get_header(\"X-Hang\"):\n        time.sleep(3)\n\
             \x20   request.reply(200, \"{reason}\")\n"
        )
    };
    let mport = free_port();
    let extra = format!("metrics:\n  prometheus:\n    listen: \"127.0.0.1:{mport}\"\n");
    let node = Node::with_script("faults-reload", &script("one"), INLINE, &extra);
    warm_up(&node);
    let ua = Ua::new();
    ua.send(
        node.sip,
        &request(
            "OPTIONS",
            "sip:x@127.0.0.1",
            ua.addr,
            "hang",
            "X-Hang: 1\r\n",
        ),
    );
    std::thread::sleep(Duration::from_millis(500));
    // Stuck in C: the standby has the reactor. Change the script and ask for a reload.
    std::fs::write(node.dir.join("s.py"), script("two")).expect("rewrite the script");
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &node.pid().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -HUP failed");
    let during: Vec<String> = (0..5).map(|i| format!("during-{i}")).collect();
    let got = ask_all(&ua, &node, "OPTIONS", &during, "", Duration::from_secs(2));
    for id in &during {
        let m = got
            .get(id)
            .unwrap_or_else(|| panic!("{id} unanswered while stuck\n{}", node.log()));
        assert_eq!(status(m), Some(503), "{id}: {m}");
        assert!(!header(m, "Retry-After").is_empty(), "{m}");
    }
    // The handler returns after its 3 s; then the new script answers, on the core's thread.
    ask_until(&node, "", Duration::from_secs(20), |m| {
        m.starts_with("SIP/2.0 200 two\r\n")
    });
    let m = http_get(SocketAddr::from(([127, 0, 0, 1], mport)), "/metrics");
    assert!(
        m.contains("siphon_reactor_events_total{core=\"0\",event=\"handovers\"} 1"),
        "one handover\n{m}"
    );
    let log = node.log();
    assert!(log.contains("its own thread runs the loop again"), "{log}");
}
