//! The HTTP listeners: hyper 1.x through hyper-util's auto builder (HTTP/1.1 and HTTP/2 on
//! one socket: h2 by ALPN on TLS, by prior knowledge on cleartext), rustls with optional or
//! required client certificates, routes matched with matchit (upstream's `{id}` / `{*rest}`),
//! and handlers run on the per-core interpreters (round-robin, capped per core).
//!
//! Answered here, without Python: 404 (no route, middleware does not run), 405 with `Allow`,
//! 413 (any framing), 503 (the core's in-flight cap), 504 at the timeout (the handler is
//! cancelled on its core). HEAD runs a GET route and drops the body.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use siphon_script::{HostHandle, HttpAnswer, HttpInbound, RouteDef};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::HttpMetrics;
use super::config::{ClientAuth, HttpConfig, ServerConfig};
use crate::config::ConfigError;

/// The compiled route table.
pub struct Router {
    inner: matchit::Router<usize>,
    routes: Vec<(String, Vec<String>)>,
}

impl Router {
    /// Build from a script's routes; a conflict or bad pattern is `(origin, message)`.
    pub fn build(version: u64, defs: &[RouteDef]) -> Result<Self, (String, String)> {
        let mut inner = matchit::Router::new();
        let mut routes: Vec<(String, Vec<String>)> = Vec::new();
        for d in defs {
            if let Some((_, ms)) = routes.iter_mut().find(|(p, _)| *p == d.path) {
                // Decorators sharing a path merge (upstream).
                for m in &d.methods {
                    if !ms.contains(m) {
                        ms.push(m.clone());
                    }
                }
                continue;
            }
            inner.insert(d.path.clone(), routes.len()).map_err(|e| {
                (
                    d.origin.clone(),
                    format!("route `{}` cannot be added: {e}", d.path),
                )
            })?;
            routes.push((d.path.clone(), d.methods.clone()));
        }
        let _ = version;
        Ok(Self { inner, routes })
    }
}

/// A route conflict as a config error at the script's `file:line`.
pub fn route_error(origin: &str, message: String) -> ConfigError {
    let (file, line) = origin
        .rsplit_once(':')
        .map_or((origin, 0), |(f, l)| (f, l.parse().unwrap_or(0)));
    ConfigError::At {
        path: file.into(),
        line,
        message,
    }
}

struct Ctx {
    host: HostHandle,
    router: RwLock<Arc<Router>>,
    metrics: Arc<HttpMetrics>,
    inflight: Vec<AtomicUsize>,
    cap: usize,
    next: AtomicUsize,
    ids: AtomicU64,
}

struct Listener {
    cfg: ServerConfig,
    trusted: Vec<IpAddr>,
}

/// The running listeners.
pub struct Servers {
    /// Bound addresses, in `servers[]` order.
    pub addrs: Vec<SocketAddr>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    ctx: Arc<Ctx>,
}

fn tls_acceptor(t: &super::config::ServerTls) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert_path)
        .map_err(|e| format!("tls.cert_path `{}`: {e}", t.cert_path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls.cert_path `{}`: {e}", t.cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls.cert_path `{}`: no certificate",
            t.cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&t.key_path)
        .map_err(|e| format!("tls.key_path `{}`: {e}", t.key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let b = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let b = match &t.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("tls.client_ca `{}`: {e}", ca.display()))?
            {
                let c = c.map_err(|e| format!("tls.client_ca `{}`: {e}", ca.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("tls.client_ca `{}`: {e}", ca.display()))?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let v = if t.client_auth == ClientAuth::Optional {
                v.allow_unauthenticated()
            } else {
                v
            };
            b.with_client_cert_verifier(v.build().map_err(|e| e.to_string())?)
        }
        None => b.with_no_client_auth(),
    };
    let mut sc = b
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls: {e}"))?;
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(sc)))
}

impl Servers {
    /// Build the router from the loaded script, bind every listener (a failure stops the
    /// start with the file's line), and serve.
    pub fn start(
        rt: &tokio::runtime::Handle,
        cfg: &HttpConfig,
        host: HostHandle,
        metrics: Arc<HttpMetrics>,
    ) -> Result<Self, ConfigError> {
        let (version, defs) = host.http_routes();
        let router = Router::build(version, &defs).map_err(|(o, m)| route_error(&o, m))?;
        let workers = host.workers().max(1);
        let ctx = Arc::new(Ctx {
            host,
            router: RwLock::new(Arc::new(router)),
            metrics,
            inflight: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
            cap: cfg.max_in_flight_per_core,
            next: AtomicUsize::new(0),
            ids: AtomicU64::new(1),
        });
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        let at = |i: usize, m: String| ConfigError::At {
            path: cfg.path.clone(),
            line: cfg.server_lines.get(i).copied().unwrap_or(0),
            message: m,
        };
        for (i, (addr, s)) in cfg.servers.iter().enumerate() {
            let acceptor = match &s.tls {
                Some(t) => Some(tls_acceptor(t).map_err(|m| at(i, format!("servers[{i}].{m}")))?),
                None => None,
            };
            let std_l = std::net::TcpListener::bind(addr)
                .map_err(|e| at(i, format!("servers[{i}].listen {addr}: {e}")))?;
            std_l
                .set_nonblocking(true)
                .map_err(|e| at(i, format!("servers[{i}].listen {addr}: {e}")))?;
            addrs.push(
                std_l
                    .local_addr()
                    .map_err(|e| at(i, format!("servers[{i}].listen: {e}")))?,
            );
            let _g = rt.enter();
            let l = tokio::net::TcpListener::from_std(std_l)
                .map_err(|e| at(i, format!("servers[{i}].listen {addr}: {e}")))?;
            let listener = Arc::new(Listener {
                cfg: s.clone(),
                trusted: s
                    .trusted_proxies
                    .iter()
                    .filter_map(|p| p.parse().ok())
                    .collect(),
            });
            tasks.push(rt.spawn(accept_loop(
                l,
                acceptor,
                listener,
                Arc::clone(&ctx),
                stop_rx.clone(),
            )));
        }
        // A reload swaps the handlers: rebuild the table when core 0 publishes new routes.
        let c = Arc::clone(&ctx);
        let mut srx = stop_rx.clone();
        tasks.push(rt.spawn(async move {
            let mut seen = version;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = srx.changed() => return,
                }
                let (v, defs) = c.host.http_routes();
                if v == seen {
                    continue;
                }
                seen = v;
                match Router::build(v, &defs) {
                    Ok(r) => {
                        if let Ok(mut g) = c.router.write() {
                            *g = Arc::new(r);
                        }
                        tracing::info!(version = v, "http routes reloaded");
                    }
                    Err((o, m)) => {
                        tracing::error!("{o}: {m}; keeping the previous routes");
                    }
                }
            }
        }));
        Ok(Self {
            addrs,
            stop,
            tasks,
            ctx,
        })
    }

    /// Stop accepting; wait (at most `grace`) for requests in flight.
    pub async fn drain(self, grace: Duration) {
        let _ = self.stop.send(true);
        let until = Instant::now() + grace;
        while Instant::now() < until
            && self
                .ctx
                .inflight
                .iter()
                .any(|n| n.load(Ordering::Relaxed) > 0)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for t in self.tasks {
            t.abort();
        }
    }
}

async fn accept_loop(
    l: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    listener: Arc<Listener>,
    ctx: Arc<Ctx>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let graceful = Arc::new(hyper_util::server::graceful::GracefulShutdown::new());
    loop {
        let (stream, peer) = tokio::select! {
            r = l.accept() => match r {
                Ok(x) => x,
                Err(_) => { tokio::time::sleep(Duration::from_millis(5)).await; continue; }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let (ctx, listener, tls, graceful) = (
            Arc::clone(&ctx),
            Arc::clone(&listener),
            tls.clone(),
            Arc::clone(&graceful),
        );
        tokio::spawn(async move {
            let svc = {
                let (ctx, listener) = (Arc::clone(&ctx), Arc::clone(&listener));
                hyper::service::service_fn(move |req| {
                    handle(req, Arc::clone(&ctx), Arc::clone(&listener), peer)
                })
            };
            let mut b = auto::Builder::new(TokioExecutor::new());
            b.http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .max_buf_size(64 * 1024)
                .header_read_timeout(HEADER_TIMEOUT);
            b.http2()
                .timer(hyper_util::rt::TokioTimer::new())
                .max_concurrent_streams(256);
            let r = match tls {
                Some(acc) => match tokio::time::timeout(HEADER_TIMEOUT, acc.accept(stream)).await {
                    Ok(Ok(s)) => {
                        let Some(io) = sniffed(s, &ctx).await else {
                            return;
                        };
                        let conn = b.serve_connection(TokioIo::new(io), svc).into_owned();
                        graceful.watch(conn).await
                    }
                    _ => {
                        ctx.metrics.conn_errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                },
                None => {
                    let Some(io) = sniffed(stream, &ctx).await else {
                        return;
                    };
                    let conn = b.serve_connection(TokioIo::new(io), svc).into_owned();
                    graceful.watch(conn).await
                }
            };
            if r.is_err() {
                ctx.metrics.conn_errors.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    drop(l);
    if let Ok(g) = Arc::try_unwrap(graceful) {
        let _ = tokio::time::timeout(Duration::from_secs(30), g.shutdown()).await;
    }
}

/// How long a client has to send its request head, and before that the bytes that tell
/// HTTP/1.1 from the HTTP/2 preface; and how long a TLS handshake may take.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Read the first bytes of a connection until they tell HTTP/1.1 from HTTP/2: the whole
/// 24-byte preface, or the first byte that departs from it. hyper-util's auto builder does the
/// same sniff with no deadline (its HTTP/1.1 header timeout starts only after it), so a client
/// that sends nothing, or part of the preface, and stalls would hold the connection for ever;
/// here it has [`HEADER_TIMEOUT`], then the connection is closed and counted in
/// `siphon_http_connection_errors_total`. `None`: closed (a peer that left before sending a
/// byte is not counted). The bytes read are replayed to hyper, which sniffs them again.
async fn sniffed<I>(mut io: I, ctx: &Ctx) -> Option<Prefixed<I>>
where
    I: AsyncRead + Unpin,
{
    let read = async {
        let mut head = Vec::with_capacity(H2_PREFACE.len());
        let mut buf = [0u8; 24];
        while head.len() < H2_PREFACE.len() {
            let n = io.read(&mut buf[..H2_PREFACE.len() - head.len()]).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
            if !H2_PREFACE.starts_with(&head) {
                break;
            }
        }
        Ok::<_, std::io::Error>(head)
    };
    match tokio::time::timeout(HEADER_TIMEOUT, read).await {
        Ok(Ok(head)) if head.is_empty() => None,
        Ok(Ok(head)) => Some(Prefixed {
            head: Bytes::from(head),
            io,
        }),
        Ok(Err(_)) | Err(_) => {
            ctx.metrics.conn_errors.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// A connection with the bytes [`sniffed`] already read put back in front.
struct Prefixed<I> {
    head: Bytes,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.head.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.head.len().min(buf.remaining());
        buf.put_slice(&this.head.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Prefixed<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

fn simple(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if !body.is_empty() {
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    r
}

/// `%XX` decoding as UTF-8 (invalid sequences become U+FFFD); `+` stays `+` in paths.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

struct Slot<'a>(&'a AtomicUsize);
impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle(
    req: Request<Incoming>,
    ctx: Arc<Ctx>,
    listener: Arc<Listener>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let started = Instant::now();
    let router = ctx
        .router
        .read()
        .map(|r| Arc::clone(&r))
        .unwrap_or_else(|e| Arc::clone(&e.into_inner()));
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let Ok(m) = router.inner.at(&path) else {
        ctx.metrics.request("", &method, 404, started.elapsed());
        return Ok(simple(404, ""));
    };
    let (route, methods) = &router.routes[*m.value];
    let params: Vec<(String, String)> = m
        .params
        .iter()
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect();
    let head_on_get = method == "HEAD" && methods.iter().any(|x| x == "GET");
    if !methods.contains(&method) && !head_on_get {
        let mut allow: Vec<&str> = methods.iter().map(String::as_str).collect();
        if allow.contains(&"GET") && !allow.contains(&"HEAD") {
            allow.push("HEAD");
        }
        let mut r = simple(405, "method not allowed\n");
        if let Ok(v) = hyper::header::HeaderValue::from_str(&allow.join(", ")) {
            r.headers_mut().insert(hyper::header::ALLOW, v);
        }
        ctx.metrics.request(route, &method, 405, started.elapsed());
        return Ok(r);
    }
    let cfg = &listener.cfg;
    if req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > cfg.max_body_bytes as u64)
    {
        ctx.metrics.request(route, &method, 413, started.elapsed());
        return Ok(simple(413, "payload too large\n"));
    }
    let core = ctx.next.fetch_add(1, Ordering::Relaxed) % ctx.inflight.len();
    if ctx.inflight[core].fetch_add(1, Ordering::Relaxed) >= ctx.cap {
        ctx.inflight[core].fetch_sub(1, Ordering::Relaxed);
        ctx.metrics.shed.fetch_add(1, Ordering::Relaxed);
        ctx.metrics.request(route, &method, 503, started.elapsed());
        return Ok(simple(503, "busy\n"));
    }
    let _slot = Slot(&ctx.inflight[core]);
    let timeout = Duration::from_millis(cfg.request_timeout_ms);
    let id = ctx.ids.fetch_add(1, Ordering::Relaxed);
    let mut headers = Vec::with_capacity(req.headers().len());
    for (k, v) in req.headers() {
        if let Ok(v) = v.to_str() {
            headers.push((k.as_str().to_owned(), v.to_owned()));
        }
    }
    let client = if listener.trusted.contains(&peer.ip()) {
        req.headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| peer.to_string())
    } else {
        peer.to_string()
    };
    let query = req.uri().query().unwrap_or("").to_owned();
    let body_limit = cfg.max_body_bytes;
    let work = async {
        let body = match Limited::new(req.into_body(), body_limit).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    return simple(413, "payload too large\n");
                }
                return simple(400, "bad body\n");
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<HttpAnswer>();
        ctx.host.submit_http(
            core,
            HttpInbound {
                id,
                route: route.clone(),
                method: method.clone(),
                path: path.clone(),
                query,
                path_params: params,
                headers,
                body: body.to_vec(),
                client,
            },
            Box::new(move |a| {
                let _ = tx.send(a);
            }),
        );
        match rx.await {
            Ok(a) => {
                let mut r = Response::new(Full::new(if method == "HEAD" {
                    Bytes::new()
                } else {
                    Bytes::from(a.body)
                }));
                *r.status_mut() =
                    StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                for (k, v) in a.headers {
                    if let (Ok(k), Ok(v)) = (
                        hyper::header::HeaderName::from_bytes(k.as_bytes()),
                        hyper::header::HeaderValue::from_str(&v),
                    ) {
                        r.headers_mut().append(k, v);
                    }
                }
                r
            }
            Err(_) => simple(500, "internal error\n"),
        }
    };
    let r = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => {
            ctx.host.cancel_http(core, id);
            ctx.metrics.timeouts.fetch_add(1, Ordering::Relaxed);
            simple(504, "")
        }
    };
    ctx.metrics
        .request(route, &method, r.status().as_u16(), started.elapsed());
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(p: &str, o: &str) -> RouteDef {
        RouteDef {
            path: p.into(),
            methods: vec!["GET".into()],
            origin: o.into(),
        }
    }

    #[test]
    fn conflicts_are_errors_with_the_scripts_line() {
        let e = Router::build(1, &[def("/a/{x}", "s.py:3"), def("/a/{y}", "s.py:7")])
            .err()
            .unwrap();
        assert_eq!(e.0, "s.py:7");
        let ce = route_error(&e.0, e.1).to_string();
        assert!(ce.starts_with("s.py:7: route `/a/{y}`"), "{ce}");
    }

    #[test]
    fn static_beats_param_and_rest_needs_a_tail() {
        let r = Router::build(
            1,
            &[
                def("/u/{id}", "a:1"),
                def("/u/me", "a:2"),
                def("/f/{*rest}", "a:3"),
            ],
        )
        .unwrap();
        assert_eq!(*r.inner.at("/u/me").unwrap().value, 1);
        assert_eq!(*r.inner.at("/u/7").unwrap().value, 0);
        assert!(r.inner.at("/f/").is_err());
        assert_eq!(
            r.inner.at("/f/a/b").unwrap().params.get("rest"),
            Some("a/b")
        );
    }

    #[test]
    fn percent_decoding_is_utf8() {
        assert_eq!(percent_decode("caf%C3%A9+x"), "café+x");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
