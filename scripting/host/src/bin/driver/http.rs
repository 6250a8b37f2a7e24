//! HTTP ops of the driver (feature `http`), for the SDK's `HttpTestHarness`:
//!
//! ```text
//!   {"op":"http_request","id":1,"core":0,"route":"/users/{id}","method":"GET","path":"/users/7",
//!    "query":"a=1","path_params":[["id","7"]],"headers":[["host","x"]],"body":"<hex>",
//!    "client":"127.0.0.1:40000"}
//!   {"op":"http_complete","call":3,"status":200,"headers":[["k","v"]],"body":"<hex>"}
//!   {"op":"http_complete","call":3,"error":"request failed: ..."}
//!   {"op":"http_routes"} {"op":"http_cancel","core":0,"id":1} {"op":"http_shutdown"}
//! ```
//! stdout: `http_answer` (a route handler's answer), `http_call` (an `http.Client` call the
//! harness answers with `http_complete`), `http_routes` (the loaded route table).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use siphon_script::{
    HostHandle, HttpCall, HttpClientSpec, HttpCompleter, HttpInbound, HttpReply, HttpSink,
};

use super::{Out, emit};

/// `http.Client` calls waiting for the harness's `http_complete`, by call number.
fn calls() -> &'static Mutex<HashMap<u64, HttpCompleter>> {
    static CALLS: OnceLock<Mutex<HashMap<u64, HttpCompleter>>> = OnceLock::new();
    CALLS.get_or_init(|| Mutex::new(HashMap::new()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unhex(s: &str) -> anyhow::Result<Vec<u8>> {
    if s.len() % 2 != 0 {
        bail!("odd hex length");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .context("bad hex")
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter_map(|p| Some((p[0].as_str()?.to_owned(), p[1].as_str()?.to_owned())))
        .collect()
}

/// The sink `http.Client` calls go to: each becomes an `http_call` line.
pub fn sink(out: Out) -> HttpSink {
    let next = AtomicU64::new(1);
    Arc::new(move |call: HttpCall, done: HttpCompleter| {
        let n = next.fetch_add(1, Ordering::Relaxed);
        lock(calls()).insert(n, done);
        let client = match &call.client {
            HttpClientSpec::Named(name) => json!({"name": name}),
            HttpClientSpec::Inline {
                base_url,
                timeout_ms,
                http2_prior_knowledge,
                ..
            } => json!({
                "name": null, "base_url": base_url, "timeout_ms": timeout_ms,
                "http2_prior_knowledge": http2_prior_knowledge,
            }),
            _ => json!({"name": null}),
        };
        emit(
            &out,
            &json!({
                "type": "http_call", "call": n, "client": client, "method": call.method,
                "path": call.path, "headers": call.headers,
                "body": call.body.as_deref().map(hex),
            }),
        );
    })
}

/// Handle one `http_*` op.
pub fn op(handle: &HostHandle, out: &Out, v: &Value) -> anyhow::Result<()> {
    match v["op"].as_str().unwrap_or("") {
        "http_request" => {
            let core = v["core"].as_u64().unwrap_or(0) as usize;
            if core >= handle.cores() {
                bail!("no such core");
            }
            let id = v["id"].as_u64().context("id")?;
            let req = HttpInbound {
                id,
                route: v["route"].as_str().unwrap_or("").to_owned(),
                method: v["method"].as_str().unwrap_or("GET").to_owned(),
                path: v["path"].as_str().unwrap_or("/").to_owned(),
                query: v["query"].as_str().unwrap_or("").to_owned(),
                path_params: pairs(&v["path_params"]),
                headers: pairs(&v["headers"]),
                body: unhex(v["body"].as_str().unwrap_or(""))?,
                client: v["client"].as_str().unwrap_or("127.0.0.1:0").to_owned(),
            };
            let o = Arc::clone(out);
            handle.submit_http(
                core,
                req,
                Box::new(move |a| {
                    emit(
                        &o,
                        &json!({
                            "type": "http_answer", "id": id, "status": a.status,
                            "headers": a.headers, "body": hex(&a.body),
                        }),
                    );
                }),
            );
        }
        "http_complete" => {
            let n = v["call"].as_u64().context("call")?;
            let Some(done) = lock(calls()).remove(&n) else {
                bail!("no http call {n} waiting");
            };
            let result = match v["error"].as_str() {
                Some(e) => Err(e.to_owned()),
                None => Ok(HttpReply {
                    status: v["status"]
                        .as_u64()
                        .and_then(|s| u16::try_from(s).ok())
                        .unwrap_or(200),
                    headers: pairs(&v["headers"]),
                    body: unhex(v["body"].as_str().unwrap_or(""))?,
                }),
            };
            done.complete(result);
        }
        "http_routes" => {
            let (version, defs) = handle.http_routes();
            let routes: Vec<Value> = defs
                .iter()
                .map(|r| json!([r.path, r.methods, r.origin]))
                .collect();
            emit(
                out,
                &json!({"type": "http_routes", "version": version, "routes": routes}),
            );
        }
        "http_cancel" => handle.cancel_http(
            v["core"].as_u64().unwrap_or(0) as usize,
            v["id"].as_u64().unwrap_or(0),
        ),
        "http_shutdown" => handle.http_shutdown(),
        other => bail!("unknown op {other}"),
    }
    Ok(())
}
