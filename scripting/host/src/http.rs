//! HTTP work between the node's HTTP runtime (tokio, hyper, reqwest: siphon-bin's `http`
//! feature) and the script workers (the `siphon.http` namespace). Plain Rust data only; this
//! crate knows neither tokio nor hyper.
//!
//! - Outbound (`http.Client`): `_siphon.http_request` hands an [`HttpCall`] and an
//!   [`HttpCompleter`] to the node's [`HttpSink`]; the completer posts the result to the
//!   calling worker's control queue and wakes it (thread or reactor doorbell), where the
//!   awaiting future resolves. Many calls may be in flight per core.
//! - Inbound (`@http.route`): the node posts an [`HttpInbound`] with a [`Responder`] to a
//!   core ([`crate::HostHandle::submit_http`]); the script's answer calls the responder once.
//!   [`crate::HostHandle::cancel_http`] cancels a handler the node gave up on (the 504).

use std::sync::Arc;

use crate::event::Control;
use crate::host::Shared;
use crate::py::{Args, PyErrSpec, PyResult, Ret};
use crate::worker::with_ctx;

/// Which client a call goes through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HttpClientSpec {
    /// A `clients.<name>` entry of `http.yaml` (one pool per name, shared by all cores).
    Named(String),
    /// `http.Client(base_url=..., ...)` without a name.
    Inline {
        /// Prefix of every path.
        base_url: Option<String>,
        /// PEM CA file or text added to the trust roots.
        verify: Option<String>,
        /// Client certificate (PEM file or text; may hold the key too).
        cert: Option<String>,
        /// Client key when given apart from `cert`.
        key: Option<String>,
        /// Total timeout.
        timeout_ms: u64,
        /// Speak HTTP/2 without negotiation.
        http2_prior_knowledge: bool,
    },
}

/// One outbound request a script awaits.
#[derive(Debug, Clone)]
pub struct HttpCall {
    /// The client.
    pub client: HttpClientSpec,
    /// Upper-case method.
    pub method: String,
    /// Path (or a full URL when the client has no base URL).
    pub path: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Option<Vec<u8>>,
}

/// A response as scripts see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// Completes one [`HttpCall`] on the worker that made it (exactly once; dropping it
/// completes the call with an error so that no script awaits forever).
pub struct HttpCompleter {
    shared: Option<Arc<Shared>>,
    worker: usize,
    token: u64,
}

impl std::fmt::Debug for HttpCompleter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpCompleter")
            .field("worker", &self.worker)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl HttpCompleter {
    /// Deliver the outcome: a response, or the text of `RuntimeError("request failed: …")`.
    pub fn complete(mut self, result: Result<HttpReply, String>) {
        if let Some(s) = self.shared.take() {
            post(&s, self.worker, Control::Http(self.token, result));
        }
    }
}

impl Drop for HttpCompleter {
    fn drop(&mut self) {
        if let Some(s) = self.shared.take() {
            post(
                &s,
                self.worker,
                Control::Http(self.token, Err("request failed: dropped".into())),
            );
        }
    }
}

fn post(s: &Shared, worker: usize, c: Control) {
    if let Some(w) = s.workers.get(worker) {
        w.control.push(c);
        s.wake(worker);
    }
}

/// Where `_siphon.http_request` sends calls (the node's HTTP runtime). Called on a script
/// worker thread: it must not block.
pub type HttpSink = Arc<dyn Fn(HttpCall, HttpCompleter) + Send + Sync>;

/// One inbound request for a route handler.
#[derive(Debug, Clone, Default)]
pub struct HttpInbound {
    /// Node-chosen id (unique per process); the answer and a cancel name it.
    pub id: u64,
    /// The route pattern that matched (`/users/{id}`): the handler's key.
    pub route: String,
    /// Method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string (without `?`).
    pub query: String,
    /// Path parameters, percent-decoded as UTF-8.
    pub path_params: Vec<(String, String)>,
    /// Headers, lower-case names.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// `ip:port` of the client (left-most X-Forwarded-For from a trusted proxy).
    pub client: String,
}

/// The script's answer to an [`HttpInbound`]. `status` 0 with `error` set: the handler failed
/// and `body` says how (`handler error`, `bad response`, ...): the node answers 500.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// Headers as the script set them.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

/// Called once with the answer (on the worker thread; it must not block).
pub type Responder = Box<dyn FnOnce(HttpAnswer) + Send>;

/// A [`Responder`] in a control message (Debug for the queue's derive).
pub(crate) struct ResponderBox(pub(crate) Responder);

impl std::fmt::Debug for ResponderBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Responder")
    }
}

/// `_siphon.http_request(name, base_url, verify, cert, key, timeout_ms, h2, method, path,
/// flat_headers, body)` → token; the result arrives through `_engine.http_complete`.
pub(crate) fn http_request(a: &Args<'_>) -> PyResult<Ret> {
    let client = match a.opt_str(0)? {
        Some(n) => HttpClientSpec::Named(n.to_owned()),
        None => HttpClientSpec::Inline {
            base_url: a.opt_str(1)?.map(str::to_owned),
            verify: a.opt_str(2)?.map(str::to_owned),
            cert: a.opt_str(3)?.map(str::to_owned),
            key: a.opt_str(4)?.map(str::to_owned),
            timeout_ms: u64::try_from(a.int(5)?).unwrap_or(0),
            http2_prior_knowledge: a.truthy(6)?,
        },
    };
    let flat = a.str_list(9)?;
    if flat.len() % 2 != 0 {
        return Err(PyErrSpec::Value("headers must be name/value pairs".into()));
    }
    let call = HttpCall {
        client,
        method: a.str(7)?.to_ascii_uppercase(),
        path: a.str(8)?.to_owned(),
        headers: flat
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect(),
        body: if a.is_none(10) {
            None
        } else {
            Some(a.bytes(10)?)
        },
    };
    with_ctx(|c| {
        #[cfg(feature = "http")]
        let sink = c.shared.cfg.http_sink.clone();
        #[cfg(not(feature = "http"))]
        let sink: Option<HttpSink> = None;
        let Some(sink) = sink else {
            return Err(PyErrSpec::Runtime(
                "request failed: the http extension is not configured (extensions.http)".into(),
            ));
        };
        let token = c
            .shared
            .next_token
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let done = HttpCompleter {
            shared: Some(Arc::clone(&c.shared)),
            worker: c.worker,
            token,
        };
        sink(call, done);
        Ok(Ret::Int(i64::try_from(token).unwrap_or(i64::MAX)))
    })
}

/// `_siphon.http_respond(id, status, flat_headers, body)`: answer an inbound request (a late
/// answer, after the node gave up, is ignored).
pub(crate) fn http_respond(a: &Args<'_>) -> PyResult<Ret> {
    let id = a.int(0)? as u64;
    let status = u16::try_from(a.int(1)?).unwrap_or(0);
    let flat = a.str_list(2)?;
    let body = a.bytes(3)?;
    let headers = flat
        .chunks(2)
        .filter(|p| p.len() == 2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    with_ctx(|c| {
        if let Some(r) = c.http_responders.remove(&id) {
            r(HttpAnswer {
                status,
                headers,
                body,
            });
        }
        Ok(Ret::None)
    })
}

/// One `@http.route`: path pattern, methods, and where the script declared it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDef {
    /// Path pattern (`/users/{id}`, `/files/{*rest}`).
    pub path: String,
    /// Upper-case methods.
    pub methods: Vec<String>,
    /// `file:line` of the handler.
    pub origin: String,
}

/// `_siphon.http_set_routes([path, "GET,POST", origin, ...])`: core 0 publishes its routes.
pub(crate) fn http_set_routes(a: &Args<'_>) -> PyResult<Ret> {
    let flat = a.str_list(0)?;
    let routes = flat
        .chunks(3)
        .filter(|c| c.len() == 3)
        .map(|c| RouteDef {
            path: c[0].clone(),
            methods: c[1]
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect(),
            origin: c[2].clone(),
        })
        .collect();
    with_ctx(|c| {
        let mut g = crate::shared::lock(&c.shared.http_routes);
        g.0 += 1;
        g.1 = routes;
        Ok(Ret::None)
    })
}

/// `_siphon.http_started()`: this interpreter's first load and startup hooks are done.
pub(crate) fn http_started(_a: &Args<'_>) -> PyResult<Ret> {
    with_ctx(|c| {
        c.shared
            .http_started
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(Ret::None)
    })
}

/// `_siphon.http_config_json()`: `{"listen_addrs": [...], "client_names": [...]}`.
#[cfg(feature = "http")]
pub(crate) fn http_config_json(_a: &Args<'_>) -> PyResult<Ret> {
    with_ctx(|c| Ok(Ret::Str(c.shared.cfg.http_config.to_string())))
}

/// `_siphon.http_config_json()` without the `http` feature: no config.
#[cfg(not(feature = "http"))]
pub(crate) fn http_config_json(_a: &Args<'_>) -> PyResult<Ret> {
    Ok(Ret::Str("null".into()))
}

/// The event as plain Python data: `(id, route, method, path, query, [(k, v)] path_params,
/// [(k, v)] headers, body, client)`.
pub(crate) fn inbound_to_ret(r: HttpInbound) -> Ret {
    let pairs = |v: Vec<(String, String)>| {
        Ret::List(
            v.into_iter()
                .map(|(k, v)| Ret::Tuple(vec![Ret::Str(k), Ret::Str(v)]))
                .collect(),
        )
    };
    Ret::Tuple(vec![
        Ret::Int(i64::try_from(r.id).unwrap_or(i64::MAX)),
        Ret::Str(r.route),
        Ret::Str(r.method),
        Ret::Str(r.path),
        Ret::Str(r.query),
        pairs(r.path_params),
        pairs(r.headers),
        Ret::Bytes(r.body),
        Ret::Str(r.client),
    ])
}

/// A reply as plain Python data: `(status, [(k, v)], body)`.
pub(crate) fn reply_to_ret(r: HttpReply) -> Ret {
    Ret::Tuple(vec![
        Ret::Int(i64::from(r.status)),
        Ret::List(
            r.headers
                .into_iter()
                .map(|(k, v)| Ret::Tuple(vec![Ret::Str(k), Ret::Str(v)]))
                .collect(),
        ),
        Ret::Bytes(r.body),
    ])
}
