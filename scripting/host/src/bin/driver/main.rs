//! `siphon-script-driver`: runs THE REAL scripting engine (subinterpreters, `_siphon`, the
//! embedded `siphon` package) behind a JSON-lines protocol, for pytest (scripting/tests/) and
//! the benchmark (`--bench`). This is the seed of the SDK's `SipTestHarness`.
//!
//! stdin, one JSON object per line:
//! ```text
//!   {"op":"event","id":1,"core":0,"kind":"request","msg":"<raw SIP>","reply":"<raw SIP>",
//!    "request_id":7,"transport":"udp","source":"192.0.2.1:5060"}
//!   {"op":"respond","worker":0,"token":3,"reply":"<raw SIP>"|null}
//!   {"op":"reload"} {"op":"metrics"} {"op":"info"} {"op":"sync","wait":true} {"op":"quit"}
//!   {"op":"registrar_add","msg":"<raw REGISTER>"} {"op":"registrar_lookup","aor":"sip:a@b"}
//!   {"op":"registrar_remove","aor":"sip:a@b"} {"op":"auth_add_user","realm":"r"|null,
//!    "username":"u","password":"p"} {"op":"cache_set","name":"n","data":{"k":"v"}}
//!   {"op":"cache_clear"} {"op":"cache_fetch","name":"n","key":"k"}
//! ```
//! An `event` may carry `"auth_user"`: the request starts authenticated as that user.
//! With the `smpp` feature also `smpp_event` and `smpp_complete` (see `smpp.rs`); with the
//! `http` feature `http_request`, `http_complete`, `http_routes`, `http_cancel` and
//! `http_shutdown` (see `http.rs`).
//! stdout, one JSON object per line: `ready`, `actions`, `log`, `outbound`, `reloaded`,
//! `metrics`, `info`, `sync`, `registrar`, `ok`, `cache`, `error`, `bye` (the `type` field).

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use siphon_script::shared::SaveOutcome;
use siphon_script::{
    Actions, Disposition, Event, EventKind, ForkStrategy, Host, HostConfig, HostHandle, Meta, Mode,
    ReloadMode, SipMessage, python_version,
};

type Out = Arc<Mutex<std::io::Stdout>>;

fn emit(out: &Out, v: &Value) {
    let mut o = out
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _ = writeln!(o, "{v}");
    let _ = o.flush();
}

fn msg_text(m: &SipMessage) -> String {
    String::from_utf8_lossy(&m.to_bytes()).into_owned()
}

/// A flow as `[transport, "ip:port"]`.
fn flow_json(r: siphon_script::event::Remote) -> Value {
    let t = format!("{:?}", r.transport).to_ascii_lowercase();
    json!([t, r.addr.to_string()])
}

fn actions_json(a: &Actions) -> Value {
    let disposition = match &a.disposition {
        Disposition::Drop => json!({"kind": "drop"}),
        Disposition::Reply {
            status,
            reason,
            headers,
            body,
            reliable,
            to_tag,
        } => json!({
            "kind": "reply", "status": status, "reason": reason, "headers": headers,
            "body": body.as_ref().map(|(ct, b)| json!([ct, String::from_utf8_lossy(b)])), "reliable": reliable,
            "to_tag": to_tag,
        }),
        Disposition::Relay {
            next_hop,
            has_on_reply,
            has_on_failure,
            flow,
        } => json!({
            "kind": "relay", "next_hop": next_hop, "on_reply": has_on_reply, "on_failure": has_on_failure,
            "flow": flow.map(flow_json),
        }),
        Disposition::Fork { targets, strategy } => json!({
            "kind": "fork", "targets": targets.iter().map(|t| &t.uri).collect::<Vec<_>>(),
            "routes": targets.iter().map(|t| &t.routes).collect::<Vec<_>>(),
            "flows": targets.iter().map(|t| t.flow.map(flow_json)).collect::<Vec<_>>(),
            "strategy": if *strategy == ForkStrategy::Parallel { "parallel" } else { "sequential" },
        }),
        Disposition::ForwardReply => json!({"kind": "forward_reply"}),
        Disposition::RejectReply { status, reason } => {
            json!({"kind": "reject_reply", "status": status, "reason": reason})
        }
        _ => json!({"kind": "other"}),
    };
    json!({
        "type": "actions", "id": a.id, "core": a.core, "disposition": disposition,
        "record_route": a.record_route, "script_error": a.script_error, "auth_user": a.auth_user,
        "request": a.request.as_deref().map(msg_text), "reply": a.reply.as_deref().map(msg_text),
    })
}

fn transport(s: &str) -> &'static str {
    match s {
        "tcp" => "tcp",
        "tls" => "tls",
        "ws" => "ws",
        "wss" => "wss",
        "sctp" => "sctp",
        _ => "udp",
    }
}

fn parse_event(v: &Value) -> anyhow::Result<Event> {
    let kind = match v["kind"].as_str().unwrap_or("request") {
        "request" => EventKind::Request,
        "reply" => EventKind::Reply,
        "failure" => EventKind::Failure,
        "cancel" => EventKind::Cancel,
        "register_reply" => EventKind::RegisterReply,
        k => bail!("unknown kind {k}"),
    };
    let raw = v["msg"].as_str().context("msg")?;
    let request = Arc::new(SipMessage::parse(raw.as_bytes())?);
    let reply = match v["reply"].as_str() {
        Some(r) => Some(Arc::new(SipMessage::parse(r.as_bytes())?)),
        None => None,
    };
    let source: SocketAddr = v["source"].as_str().unwrap_or("127.0.0.1:5060").parse()?;
    Ok(Event {
        id: v["id"].as_u64().unwrap_or(0),
        core: v["core"].as_u64().unwrap_or(0) as usize,
        kind,
        request,
        reply,
        meta: Meta {
            transport: transport(v["transport"].as_str().unwrap_or("udp")),
            source,
        },
        request_id: v["request_id"].as_u64(),
    })
}

struct Opts {
    script: Option<String>,
    cores: usize,
    reload: ReloadMode,
    config: Option<String>,
    force_shared: bool,
    bench: Option<String>,
    events: usize,
    inline: bool,
}

fn opts() -> anyhow::Result<Opts> {
    let mut o = Opts {
        script: None,
        cores: 1,
        reload: ReloadMode::Sighup,
        config: None,
        force_shared: false,
        bench: None,
        events: 200_000,
        inline: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--script" => o.script = it.next(),
            "--cores" => o.cores = it.next().context("--cores N")?.parse()?,
            "--reload" => {
                o.reload = match it.next().as_deref() {
                    Some("auto") => ReloadMode::Auto,
                    _ => ReloadMode::Sighup,
                }
            }
            "--config" => o.config = it.next(),
            "--force-shared" => o.force_shared = true,
            "--inline" => o.inline = true,
            "--bench" => o.bench = it.next(),
            "--events" => o.events = it.next().context("--events N")?.parse()?,
            "--version" | "-V" => {
                println!("{}", version_line());
                std::process::exit(0);
            }
            "--help" | "-h" => {
                println!(
                    "usage: siphon-script-driver --version\n       siphon-script-driver --script app.py [--cores N] [--reload auto|sighup] [--config cfg.json] [--force-shared]\n       siphon-script-driver --bench trivial|async|headers|default|default-invite|default-dialog [--cores N] [--events N] [--inline]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(o)
}

/// `siphon-script-driver --version` (what `python -m siphon_sdk --version` shows): the engine's
/// version, the Python it embeds as the loaded libpython reports it, and the interpreter mode.
fn version_line() -> String {
    // SAFETY: Py_GetVersion is one of the informative functions CPython documents as safe to
    // call before Py_Initialize; it returns a pointer to a static NUL-terminated string.
    let full = unsafe { std::ffi::CStr::from_ptr(pyo3_ffi::Py_GetVersion()) };
    let full = full.to_string_lossy();
    let python = full
        .split_whitespace()
        .next()
        .map_or_else(|| python_version().to_owned(), str::to_owned);
    let mode = if cfg!(Py_3_12) {
        "per-core: one own-GIL subinterpreter per core"
    } else {
        "shared: degraded mode, every core shares one interpreter (Python < 3.12)"
    };
    format!(
        "siphon engine {} (siphon-script-driver), embedded Python {python}, {mode}",
        env!("CARGO_PKG_VERSION")
    )
}

fn config_from(o: &Opts, script: &str, out: Option<Out>) -> anyhow::Result<HostConfig> {
    let mut cfg = HostConfig::new(o.cores, script);
    cfg.reload = o.reload;
    cfg.force_shared_interpreter = o.force_shared;
    cfg.inline = o.inline && o.bench.is_some();
    if let Some(out) = out.clone() {
        cfg.log = Arc::new(move |lvl, w, msg| {
            emit(
                &out,
                &json!({"type": "log", "level": lvl.as_str(), "worker": w, "msg": msg}),
            )
        });
    }
    if let Some(path) = &o.config {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        if let Some(d) = v["local_domains"].as_array() {
            cfg.local_domains = d
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect();
        }
        if let Some(r) = v["auth_realm"].as_str() {
            cfg.auth_realm = r.to_owned();
        }
        if let Some(u) = v["auth_users"].as_object() {
            cfg.auth_users = u
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect();
        }
        if let Some(p) = v["include_paths"].as_array() {
            cfg.include_paths = p
                .iter()
                .filter_map(|s| s.as_str().map(Into::into))
                .collect();
        }
        if let Some(c) = v["cache_names"].as_array() {
            cfg.cache_names = c
                .iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect();
        }
        if !v["script_config"].is_null() {
            cfg.script_config = v["script_config"].clone();
        }
        if let Some(m) = v["registrar"]["min_expires"].as_u64() {
            cfg.registrar.min_expires = m as u32;
        }
        #[cfg(feature = "smpp")]
        if !v["smpp_config"].is_null() {
            cfg.smpp_config = v["smpp_config"].clone();
        }
        // `http_config` turns the extension on: `http.Client` calls go to the harness.
        #[cfg(feature = "http")]
        if !v["http_config"].is_null() {
            cfg.http_config = v["http_config"].clone();
            if let Some(out) = &out {
                cfg.http_sink = Some(http::sink(Arc::clone(out)));
            }
        }
    }
    Ok(cfg)
}

fn mode_str(m: Mode) -> &'static str {
    match m {
        Mode::PerCore => "per-core",
        Mode::Shared => "shared",
    }
}

fn main() -> anyhow::Result<()> {
    let o = opts()?;
    if let Some(kind) = o.bench.clone() {
        return bench::run(&o, &kind);
    }
    let script = o.script.clone().context("--script is required")?;
    let out: Out = Arc::new(Mutex::new(std::io::stdout()));
    let cfg = config_from(&o, &script, Some(Arc::clone(&out)))?;
    let host = match Host::start(cfg) {
        Ok(h) => h,
        Err(e) => {
            emit(&out, &json!({"type": "error", "message": e.to_string()}));
            std::process::exit(2);
        }
    };
    emit(
        &out,
        &json!({"type": "ready", "mode": mode_str(host.mode()), "python": python_version(), "cores": o.cores}),
    );
    let handle = host.handle();
    let stop = Arc::new(AtomicBool::new(false));
    let emitted = Arc::new(AtomicU64::new(0));
    let mut submitted = 0u64;
    let collector = {
        let (h, out, stop, emitted) = (
            handle.clone(),
            Arc::clone(&out),
            Arc::clone(&stop),
            Arc::clone(&emitted),
        );
        std::thread::spawn(move || collect(&h, &out, &stop, &emitted))
    };
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                emit(&out, &json!({"type": "error", "message": e.to_string()}));
                continue;
            }
        };
        match v["op"].as_str().unwrap_or("") {
            "event" => match parse_event(&v) {
                Ok(mut ev) => {
                    if let Some(user) = v["auth_user"].as_str() {
                        handle.preset_auth_user(ev.id, user);
                    }
                    while let Err(back) = handle.submit(ev) {
                        ev = back;
                        std::thread::sleep(Duration::from_micros(100));
                    }
                    submitted += 1;
                }
                Err(e) => emit(
                    &out,
                    &json!({"type": "error", "id": v["id"], "message": e.to_string()}),
                ),
            },
            "reload" => {
                let g = handle.reload();
                let failed = handle.wait_reloaded(g, Duration::from_secs(30));
                emit(
                    &out,
                    &json!({"type": "reloaded", "generation": g, "failed": failed}),
                );
            }
            "metrics" => {
                let (events, errors) = handle.counters();
                let text = format!(
                    "{}# TYPE siphon_script_executions_total counter\nsiphon_script_executions_total {events}\n# TYPE siphon_script_errors_total counter\nsiphon_script_errors_total {errors}\n",
                    handle.render_metrics()
                );
                emit(&out, &json!({"type": "metrics", "text": text}));
            }
            "info" => emit(
                &out,
                &json!({"type": "info", "mode": mode_str(host.mode()), "python": python_version(), "generation": handle.generation()}),
            ),
            "sync" => {
                // Barrier: with "wait": true, until every submitted event has its actions.
                if v["wait"].as_bool().unwrap_or(false) {
                    wait_emitted(&emitted, submitted, Duration::from_secs(30));
                }
                emit(&out, &json!({"type": "sync"}));
            }
            "respond" => {
                let reply = match v["reply"].as_str() {
                    Some(r) => match SipMessage::parse(r.as_bytes()) {
                        Ok(m) => Some(m),
                        Err(e) => {
                            emit(&out, &json!({"type": "error", "message": e.to_string()}));
                            continue;
                        }
                    },
                    None => None,
                };
                let worker = v["worker"].as_u64().unwrap_or(0) as usize;
                handle.complete_outbound(worker, v["token"].as_u64().unwrap_or(0), reply);
            }
            op @ ("registrar_add" | "registrar_lookup" | "registrar_remove" | "auth_add_user"
            | "cache_set" | "cache_clear" | "cache_fetch") => match state_op(&handle, op, &v) {
                Ok(answer) => emit(&out, &answer),
                Err(e) => emit(&out, &json!({"type": "error", "message": e.to_string()})),
            },
            #[cfg(feature = "smpp")]
            "smpp_event" => match smpp::parse_event(&v) {
                Ok(ev) if ev.core >= handle.cores() => emit(
                    &out,
                    &json!({"type": "error", "id": v["id"], "message": "no such core"}),
                ),
                Ok(mut ev) => {
                    while let Err(back) = handle.submit_smpp(ev) {
                        ev = *back;
                        std::thread::sleep(Duration::from_micros(100));
                    }
                }
                Err(e) => emit(
                    &out,
                    &json!({"type": "error", "id": v["id"], "message": e.to_string()}),
                ),
            },
            #[cfg(feature = "smpp")]
            "smpp_complete" => handle.complete_smpp(
                v["worker"].as_u64().unwrap_or(0) as usize,
                v["token"].as_u64().unwrap_or(0),
                v["status"]
                    .as_u64()
                    .and_then(|s| u32::try_from(s).ok())
                    .unwrap_or(0),
                v["message_id"].as_str().unwrap_or("").to_owned(),
            ),
            #[cfg(feature = "http")]
            op if op.starts_with("http_") => {
                if let Err(e) = http::op(&handle, &out, &v) {
                    emit(
                        &out,
                        &json!({"type": "error", "id": v["id"], "message": e.to_string()}),
                    );
                }
            }
            "quit" => break,
            other => emit(
                &out,
                &json!({"type": "error", "message": format!("unknown op {other}")}),
            ),
        }
    }
    wait_emitted(&emitted, submitted, Duration::from_secs(10));
    stop.store(true, Ordering::Release);
    let _ = collector.join();
    host.shutdown();
    emit(&out, &json!({"type": "bye"}));
    Ok(())
}

/// The SDK harness's helpers on engine state (`harness.registrar/auth/cache`): seed the
/// location service, add digest users, preset cache data. One answer line each.
fn state_op(handle: &HostHandle, op: &str, v: &Value) -> anyhow::Result<Value> {
    let s = |k: &str| v[k].as_str().with_context(|| format!("{op}: {k}"));
    Ok(match op {
        "registrar_add" => {
            let msg = SipMessage::parse(s("msg")?.as_bytes())?;
            match handle.registrar().seed(&msg) {
                SaveOutcome::Ok { .. } => json!({"type": "registrar", "status": 200}),
                SaveOutcome::Reject { status, reason, .. } => {
                    json!({"type": "registrar", "status": status, "reason": reason})
                }
            }
        }
        "registrar_lookup" => {
            let now = std::time::SystemTime::now();
            let contacts: Vec<Value> = handle
                .registrar()
                .lookup(s("aor")?)
                .iter()
                .map(|b| {
                    json!({
                        "uri": b.uri,
                        "q": b.q.map_or(1.0, |q| f64::from(q.millis()) / 1000.0),
                        "expires": b.remaining_secs(now), "age_secs": b.age_secs(now),
                        "received": b.received, "path": b.path, "instance_id": b.instance_id,
                    })
                })
                .collect();
            json!({"type": "registrar", "contacts": contacts})
        }
        "registrar_remove" => {
            json!({"type": "registrar", "removed": handle.registrar().remove(s("aor")?)})
        }
        "auth_add_user" => {
            handle.add_auth_user(v["realm"].as_str(), s("username")?, s("password")?);
            json!({"type": "ok"})
        }
        "cache_set" => {
            let data: Vec<(String, String)> = v["data"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, x)| Some((k.clone(), x.as_str()?.to_owned())))
                        .collect()
                })
                .unwrap_or_default();
            handle.cache().set_data(s("name")?, &data);
            json!({"type": "ok"})
        }
        "cache_clear" => {
            handle.cache().clear();
            json!({"type": "ok"})
        }
        _ => json!({"type": "cache", "value": handle.cache().fetch(s("name")?, s("key")?)}),
    })
}

fn wait_emitted(emitted: &AtomicU64, submitted: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while emitted.load(Ordering::Acquire) < submitted && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn collect(h: &HostHandle, out: &Out, stop: &AtomicBool, emitted: &AtomicU64) {
    loop {
        let mut any = false;
        for core in 0..h.cores() {
            while let Some(a) = h.poll(core) {
                emit(out, &actions_json(&a));
                emitted.fetch_add(1, Ordering::Release);
                any = true;
                // Requests that follow the answer (a SUBSCRIBE's NOTIFY), as the node sends them.
                for r in &a.outbound {
                    emit_outbound(out, r);
                }
            }
        }
        #[cfg(feature = "smpp")]
        for core in 0..h.cores() {
            while let Some(o) = h.poll_smpp(core) {
                emit(out, &smpp::out_json(&o));
                any = true;
            }
        }
        while let Some(r) = h.poll_outbound() {
            emit_outbound(out, &r);
            any = true;
        }
        if !any {
            if stop.load(Ordering::Acquire) {
                return;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

fn emit_outbound(out: &Out, r: &siphon_script::OutboundRequest) {
    emit(
        out,
        &json!({
            "type": "outbound", "token": r.token, "worker": r.worker, "method": r.method, "ruri": r.ruri,
            "headers": r.headers, "body": r.body.as_deref().map(String::from_utf8_lossy),
            "next_hop": r.next_hop, "wait_for_response": r.wait_for_response, "timeout_ms": r.timeout_ms,
        }),
    );
}

mod bench;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "smpp")]
mod smpp;
