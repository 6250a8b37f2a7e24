//! The HTTP extension end to end (`--features http`): the siphon binary serves script routes
//! to curl (HTTP/1.1 and h2c), answers 404/405/HEAD/504 itself, and scripts await the pooled
//! `http.Client` against a real upstream server this test runs, from routes and from SIP
//! handlers. A bad `http.yaml` stops the start with `file:line`. `@http.on_startup` hooks run on
//! every core before the listeners bind; `@http.on_shutdown` hooks after the SIGTERM drain.
#![cfg(feature = "http")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Node, Ua, free_port, request, status};

const SCRIPT: &str = r#"
import asyncio
from siphon import http, log, proxy

api = http.Client("api")   # module level, as the extensions page recommends

@http.route("/healthz")
def healthz(req):
    return http.Response(status=200, body=b"ok")

@http.route("/users/{id}", methods=["GET"])
async def get_user(req):
    async with http.Client("api") as client:
        upstream = await client.get(f"/v1/users/{req.path_params['id']}")
    return http.Response(status=upstream.status, body=upstream.body)

@http.route("/echo/{*rest}", methods=["POST", "PUT"])
def echo(req):
    return http.Response(status=201, headers={"X-Rest": req.path_params["rest"]},
                         body=req.body() + req.query_params.get("q", "").encode())

@http.route("/slow")
async def slow(req):
    try:
        await asyncio.sleep(5)
    except asyncio.CancelledError:
        log.info("slow handler cancelled")
        raise
    return http.Response(body=b"late")

@http.middleware
def guard(req):
    if req.header("x-deny"):
        return http.Response(status=401, body=b"denied")
    return None

@proxy.on_request("INVITE")
async def screen(request):
    verdict = await api.get(f"/screen/{request.from_uri.user}")
    if verdict.status != 200:
        request.reply(403, "Blocked")
        return
    request.reply(486, "Busy Here")
"#;

/// A keep-alive HTTP/1.1 upstream: `/screen/bad*` is 403, everything else 200 `up:<path>`.
/// Counts connections.
fn upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let (addr, conns, _) = upstream_with_peak();
    (addr, conns)
}

/// Requests in flight at the upstream now and at most so far.
#[derive(Default)]
struct Peak {
    now: AtomicUsize,
    max: AtomicUsize,
}

/// [`upstream`], also tracking the most requests it had in flight at once.
fn upstream_with_peak() -> (SocketAddr, Arc<AtomicUsize>, Arc<Peak>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = l.local_addr().expect("upstream addr");
    let conns = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(Peak::default());
    let (c, p) = (Arc::clone(&conns), Arc::clone(&peak));
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            let p = Arc::clone(&p);
            std::thread::spawn(move || serve(s, &p));
        }
    });
    (addr, conns, peak)
}

fn serve(s: TcpStream, peak: &Peak) {
    let mut w = s.try_clone().expect("clone stream");
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let busy = peak.now.fetch_add(1, Ordering::SeqCst) + 1;
        peak.max.fetch_max(busy, Ordering::SeqCst);
        let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            if h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        let _ = r.read_exact(&mut body);
        let code = if path.starts_with("/screen/bad") {
            403
        } else {
            200
        };
        let b = format!("up:{path}");
        let resp = format!(
            "HTTP/1.1 {code} X\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        );
        peak.now.fetch_sub(1, Ordering::SeqCst);
        if w.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

fn start(name: &str, up: SocketAddr) -> (Node, SocketAddr) {
    let port = free_port();
    let http = format!(
        "servers:\n  - listen: 127.0.0.1:{port}\n    request_timeout_ms: 500\n    max_body_bytes: 64\n\
         clients:\n  api:\n    base_url: http://{up}\n    timeout_ms: 2000\n"
    );
    let config = "listen:\n  udp: [\"127.0.0.1:{sip}\"]\nscript:\n  path: s.py\n\
                  extensions:\n  http: http.yaml\ntuning:\n  reactor_cpus: [0, 1]\n";
    let node = Node::start(name, config, &[("s.py", SCRIPT), ("http.yaml", &http)]);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(45);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "no HTTP listener:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (node, addr)
}

/// curl: (status, headers, body).
fn curl(args: &[&str]) -> (u16, String, String) {
    let out = Command::new("curl")
        .args(["-s", "-S", "-D", "/dev/stderr", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl is installed");
    let head = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = head
        .lines()
        .rev()
        .find(|l| l.starts_with("HTTP/"))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        code,
        head,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn routes_methods_params_middleware_and_the_client() {
    let (up, _) = upstream();
    let (node, a) = start("http_routes", up);
    let u = |p: &str| format!("http://{a}{p}");
    let (s, _, b) = curl(&[&u("/healthz")]);
    assert_eq!((s, b.as_str()), (200, "ok"));
    let (s, _, b) = curl(&["--http2-prior-knowledge", &u("/healthz")]);
    assert_eq!((s, b.as_str()), (200, "ok"), "{}", node.log());
    // A route handler awaits the named client; UTF-8 path parameters.
    let (s, _, b) = curl(&[&u("/users/caf%C3%A9")]);
    assert_eq!(s, 200, "{}", node.log());
    assert!(b.starts_with("up:/v1/users/caf"), "{b}");
    let (s, _, b) = curl(&["-X", "POST", "--data-binary", "hi", &u("/echo/a/b?q=1")]);
    assert_eq!((s, b.as_str()), (201, "hi1"));
    // 404: no route; 405 with Allow; HEAD on a GET route has no body.
    assert_eq!(curl(&[&u("/nope")]).0, 404);
    assert_eq!(curl(&[&u("/echo/")]).0, 404, "{{*rest}} needs a tail");
    let (s, h, _) = curl(&["-X", "DELETE", &u("/healthz")]);
    assert_eq!(s, 405);
    assert!(h.to_ascii_lowercase().contains("allow: get, head"), "{h}");
    let (s, _, b) = curl(&["-I", &u("/healthz")]);
    assert_eq!((s, b.contains("ok")), (200, false));
    // Middleware short-circuits matched routes only.
    assert_eq!(curl(&["-H", "x-deny: 1", &u("/healthz")]).0, 401);
    assert_eq!(curl(&["-H", "x-deny: 1", &u("/nope")]).0, 404);
    // 413 over the body cap, by Content-Length and chunked.
    let big = "x".repeat(100);
    assert_eq!(
        curl(&["-X", "POST", "--data-binary", &big, &u("/echo/x")]).0,
        413
    );
    assert_eq!(
        curl(&[
            "-X",
            "POST",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &big,
            &u("/echo/x")
        ])
        .0,
        413
    );
    // 504 at the timeout, and the handler is cancelled on its core.
    assert_eq!(curl(&[&u("/slow")]).0, 504);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !node.log().contains("slow handler cancelled") {
        assert!(
            Instant::now() < deadline,
            "handler not cancelled:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!node.log().contains("panicked"), "{}", node.log());
}

#[test]
fn sip_handlers_await_the_pooled_client() {
    let (up, conns) = upstream();
    let (node, _) = start("http_sip_screen", up);
    let ua = Ua::new();
    for (i, user) in ["bad1", "good", "bad2", "good2"].iter().enumerate() {
        let msg = request(
            "INVITE",
            "sip:bob@example.com",
            ua.addr,
            &format!("screen-{i}"),
            "",
        )
        .replace("sip:tester@", &format!("sip:{user}@"));
        ua.send(node.sip, &msg);
        let r = ua.recv_final().unwrap_or_default();
        let want = if user.starts_with("bad") { 403 } else { 486 };
        assert_eq!(status(&r), Some(want), "{user}: {r}\n{}", node.log());
    }
    // One pool shared by all cores: a handful of connections, not one per call.
    assert!(
        conns.load(Ordering::SeqCst) <= 2,
        "{} connections",
        conns.load(Ordering::SeqCst)
    );
}

#[test]
fn a_bad_http_yaml_stops_the_start_with_file_and_line() {
    let dir = common::scratch("http_bad_yaml");
    std::fs::write(dir.join("s.py"), "from siphon import http\n").unwrap();
    std::fs::write(
        dir.join("http.yaml"),
        "servers:\n  - listen: 127.0.0.1:0\n  - listen: nowhere:80\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("siphon.yaml"),
        "listen:\n  udp: [\"127.0.0.1:0\"]\nscript:\n  path: s.py\nextensions:\n  http: http.yaml\n",
    )
    .unwrap();
    for args in [
        &["-c", "siphon.yaml"][..],
        &["check", "-c", "siphon.yaml"][..],
    ] {
        let out = Command::new(common::siphon_bin())
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(
            err.contains("http.yaml:3: servers[1].listen: `nowhere:80` is not ip:port"),
            "{args:?}: {err}"
        );
    }
}

/// openssl CLI: `args` in `dir`; panics with its stderr on failure (test set-up).
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate signed by it, and a
/// client certificate from another CA.
fn make_pki(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).expect("pki dir");
    std::fs::write(
        dir.join("srv.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .expect("ext");
    std::fs::write(
        dir.join("cli.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .expect("ext");
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for ca in ["ca", "other"] {
        let (key, crt, subj) = (
            format!("{ca}.key"),
            format!("{ca}.crt"),
            format!("/CN={ca}"),
        );
        let mut a = vec!["req", "-x509"];
        a.extend(ec);
        a.extend(["-keyout", &key, "-out", &crt, "-subj", &subj, "-days", "2"]);
        openssl(dir, &a);
    }
    for (name, ca, ext) in [
        ("srv", "ca", "srv.ext"),
        ("cli", "ca", "cli.ext"),
        ("bad", "other", "cli.ext"),
    ] {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let subj = format!("/CN={name}");
        let mut a = vec!["req"];
        a.extend(ec);
        a.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &a);
        let (cacrt, cakey) = (format!("{ca}.crt"), format!("{ca}.key"));
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &cacrt,
                "-CAkey",
                &cakey,
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                ext,
            ],
        );
    }
}

#[test]
fn tls_h2_by_alpn_and_mtls_accepted_and_refused() {
    let (up, _) = upstream();
    let dir = std::env::temp_dir().join(format!("siphon-http-pki-{}", std::process::id()));
    make_pki(&dir);
    let port = free_port();
    let d = dir.display();
    let http = format!(
        "servers:\n  - listen: 127.0.0.1:{port}\n    tls:\n      cert_path: {d}/srv.crt\n      \
         key_path: {d}/srv.key\n      client_ca: {d}/ca.crt\n\
         clients:\n  api:\n    base_url: http://{up}\n"
    );
    let config = "listen:\n  udp: [\"127.0.0.1:{sip}\"]\nscript:\n  path: s.py\n\
                  extensions:\n  http: http.yaml\ntuning:\n  reactor_cpus: [0, 1]\n";
    let node = Node::start(
        "http-tls",
        config,
        &[("s.py", SCRIPT), ("http.yaml", &http)],
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(45);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "no HTTPS listener:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("https://127.0.0.1:{port}/healthz");
    let (ca, cert, key) = (
        format!("{d}/ca.crt"),
        format!("{d}/cli.crt"),
        format!("{d}/cli.key"),
    );
    // mTLS accepted, HTTP/2 negotiated by ALPN.
    let (code, head, body) = curl(&[
        "--http2", "--cacert", &ca, "--cert", &cert, "--key", &key, &url,
    ]);
    assert_eq!((code, body.as_str()), (200, "ok"), "{head}\n{}", node.log());
    assert!(head.starts_with("HTTP/2"), "{head}");
    // HTTP/1.1 on the same TLS listener.
    let (code, head, _) = curl(&[
        "--http1.1",
        "--cacert",
        &ca,
        "--cert",
        &cert,
        "--key",
        &key,
        &url,
    ]);
    assert_eq!(code, 200);
    assert!(head.starts_with("HTTP/1.1"), "{head}");
    // No client certificate, or one from another CA: the handshake fails, no status.
    let (code, _, _) = curl(&["--cacert", &ca, &url]);
    assert_eq!(code, 0, "served without a client certificate");
    let (bc, bk) = (format!("{d}/bad.crt"), format!("{d}/bad.key"));
    let (code, _, _) = curl(&["--cacert", &ca, "--cert", &bc, "--key", &bk, &url]);
    assert_eq!(code, 0, "served a certificate from another CA");
    // Garbage on the TLS port: closed, the listener and SIP keep working.
    if let Ok(mut s) = TcpStream::connect(addr) {
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01\x02garbage");
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
    }
    let (code, _, _) = curl(&["--cacert", &ca, "--cert", &cert, "--key", &key, &url]);
    assert_eq!(code, 200, "{}", node.log());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The extensions page's screening example end to end: stock SIPp (bench/sipp uac_invite.xml
/// against uas_answer.xml) places 200 calls at 200 calls/s through the node; each INVITE's
/// handler awaits `http.Client("api").get(...)` against the upstream server above and relays
/// on its 200 (the page's `request.relay()`, with the callee as next hop and a record-route so
/// ACK and BYE follow). Every call must succeed, the upstream must see a handful of pooled
/// connections, not one per call, and a caller the upstream refuses gets the 403.
#[test]
fn sipp_screening_example_relays_or_blocks_by_the_upstream_answer() {
    let (up, conns, peak) = upstream_with_peak();
    let uas_port = free_port();
    let uac_port = free_port();
    let script = format!(
        r#"
from siphon import http, proxy

api = http.Client("api")           # named, pooled: construct once, reuse

@proxy.on_request("INVITE|ACK|BYE")
async def screen(request):
    if request.in_dialog:
        if request.loose_route():
            request.relay()
        return
    verdict = await api.get(f"/screen/{{request.from_uri.user}}")
    if verdict.status != 200:
        request.reply(403, "Blocked")
        return
    request.record_route()
    request.relay("sip:127.0.0.1:{uas_port}")
"#
    );
    let metrics = free_port();
    let http = format!("clients:\n  api:\n    base_url: http://{up}\n    timeout_ms: 2000\n");
    let config = format!(
        "listen:\n  udp: [\"127.0.0.1:{{sip}}\"]\nscript:\n  path: s.py\n\
         extensions:\n  http: http.yaml\ntuning:\n  reactor_cpus: [0, 1]\n\
         metrics:\n  prometheus:\n    listen: \"127.0.0.1:{metrics}\"\n"
    );
    let node = Node::start(
        "http_sipp_screen",
        &config,
        &[("s.py", &script), ("http.yaml", &http)],
    );
    let dir = node.dir.clone();
    for s in ["uac_invite.xml", "uas_answer.xml"] {
        std::fs::copy(common::repo_root().join("bench/sipp").join(s), dir.join(s))
            .expect("copy scenario");
    }
    let (uas_p, uac_p, proxy) = (
        uas_port.to_string(),
        uac_port.to_string(),
        node.sip.to_string(),
    );
    let uas_log = std::fs::File::create(dir.join("uas.out")).expect("uas log");
    let mut uas = Command::new("sipp")
        .current_dir(&dir)
        .args(["-sf", "uas_answer.xml", "-i", "127.0.0.1", "-p", &uas_p])
        .args(["-m", "200", "-timeout", "60s", "-timeout_error"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(uas_log)
        .spawn()
        .expect("run sipp (apt-get install sip-tester)");
    let (ok, text) = common::sipp(
        &dir,
        &[
            "-sf",
            "uac_invite.xml",
            "-s",
            "bob",
            "-i",
            "127.0.0.1",
            "-p",
            &uac_p,
            "-r",
            "200",
            "-m",
            "200",
            "-timeout",
            "60s",
            "-timeout_error",
            &proxy,
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let uas_ok = loop {
        if let Ok(Some(st)) = uas.try_wait() {
            break st.success();
        }
        if Instant::now() > deadline {
            let _ = uas.kill();
            let _ = uas.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ok, "uac sipp failed:\n{text}\nsiphon log:\n{}", node.log());
    assert!(
        uas_ok,
        "uas sipp failed:\n{}",
        std::fs::read_to_string(dir.join("uas.out")).unwrap_or_default()
    );
    // One pool shared by both cores: connections are reused, not one per call. SIPp's first
    // calls come as a burst (about 30 awaited calls at once while the first connects are
    // still under way); hyper opens a connection for every checkout that finds none idle, so
    // the pool caps HTTP/1.1 requests in flight at `pool_size` (8 by default) and the burst
    // waits for pooled connections instead of opening one each (before: 19 to 68).
    let n = conns.load(Ordering::SeqCst);
    let most = peak.max.load(Ordering::SeqCst);
    eprintln!("{n} upstream connections, at most {most} requests in flight at once");
    assert!(
        (1..=8).contains(&n),
        "{n} upstream connections for 200 calls (at most {most} in flight)"
    );
    // Every call's INVITE was screened through the client.
    let body = common::http_get(SocketAddr::from(([127, 0, 0, 1], metrics)), "/metrics");
    let ok_calls: u64 = body
        .lines()
        .filter(|l| l.starts_with("siphon_http_client_calls_total") && l.contains("\"api\""))
        .filter(|l| l.contains("outcome=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum();
    assert_eq!(ok_calls, 200, "{body}");
    // The other answer: a caller the upstream refuses is blocked with 403.
    let ua = Ua::new();
    let msg = request("INVITE", "sip:bob@127.0.0.1", ua.addr, "screen-bad", "")
        .replace("sip:tester@", "sip:bad-caller@");
    ua.send(node.sip, &msg);
    let r = ua.recv_final().unwrap_or_default();
    assert_eq!(status(&r), Some(403), "{r}\n{}", node.log());
    assert!(!node.log().contains("panicked"), "{}", node.log());
}

/// `siphon_http_connection_errors_total` from the node's /metrics.
fn conn_errors(metrics: SocketAddr) -> u64 {
    common::http_get(metrics, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix("siphon_http_connection_errors_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Read until the peer closes (or `limit` passes): (bytes read, closed).
fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (String, bool) {
    let _ = s.set_read_timeout(Some(limit));
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A reset after the server gave up on us is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (String::from_utf8_lossy(&out).into_owned(), true);
            }
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
        }
    }
}

/// Bad input on the HTTP listener: oversize request headers get a 431 (or a close), a client
/// that never finishes its headers is closed after the header timeout (10 s); each is
/// counted in `siphon_http_connection_errors_total`, nothing panics, and SIP OPTIONS are
/// still answered.
#[test]
fn oversize_headers_and_a_slow_client_are_refused_and_counted_sip_unaffected() {
    let script = "from siphon import http, proxy\n\n\
                  @http.route(\"/healthz\")\ndef healthz(req):\n    \
                  return http.Response(status=200, body=b\"ok\")\n\n\
                  @proxy.on_request(\"OPTIONS\")\ndef options(request):\n    \
                  request.reply(200, \"OK\")\n";
    let (port, metrics) = (free_port(), free_port());
    let http = format!("servers:\n  - listen: 127.0.0.1:{port}\n");
    let config = format!(
        "listen:\n  udp: [\"127.0.0.1:{{sip}}\"]\nscript:\n  path: s.py\n\
         extensions:\n  http: http.yaml\ntuning:\n  reactor_cpus: [0, 1]\n\
         metrics:\n  prometheus:\n    listen: \"127.0.0.1:{metrics}\"\n"
    );
    let node = Node::start(
        "http_bad_input",
        &config,
        &[("s.py", script), ("http.yaml", &http)],
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics));
    let deadline = Instant::now() + Duration::from_secs(45);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "no HTTP listener:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ua = Ua::new();
    let options_answered = |id: &str| {
        ua.send(
            node.sip,
            &request("OPTIONS", "sip:svc@127.0.0.1", ua.addr, id, ""),
        );
        status(&ua.recv_final().unwrap_or_default())
    };
    assert_eq!(options_answered("opt-0"), Some(200), "{}", node.log());
    let before = conn_errors(metrics);

    // Oversize headers: 100 KiB of one header, past the 64 KiB read buffer.
    let mut s = TcpStream::connect(addr).expect("connect");
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let _ = s.write_all(big.as_bytes());
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(20));
    assert!(
        got.starts_with("HTTP/1.1 431") || (got.is_empty() && closed),
        "oversize headers: {got:?} closed={closed}"
    );
    assert!(
        closed,
        "connection left open after oversize headers: {got:?}"
    );

    // A slow client: headers started, never finished; closed after the header timeout.
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n")
        .expect("write partial headers");
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(30));
    assert!(closed, "slow client not closed: {got:?}");
    assert!(
        got.is_empty() || got.starts_with("HTTP/1.1 408"),
        "slow client: {got:?}"
    );

    // Both counted; the listener and SIP keep working.
    let deadline = Instant::now() + Duration::from_secs(5);
    while conn_errors(metrics) < before + 2 {
        assert!(
            Instant::now() < deadline,
            "connection errors {} (before {before}):\n{}",
            conn_errors(metrics),
            common::http_get(metrics, "/metrics")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, _, body) = curl(&[&format!("http://{addr}/healthz")]);
    assert_eq!((code, body.as_str()), (200, "ok"), "{}", node.log());
    assert_eq!(options_answered("opt-1"), Some(200), "{}", node.log());
    assert!(!node.log().contains("panicked"), "{}", node.log());
}

const HOOKS: &str = r#"
import asyncio, socket, threading, time
from siphon import http

PORT = {port}
OUT = "{out}"
started = []

def note(line):
    with open(OUT, "a") as f:
        f.write(line + "\n")

def listening():
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=0.2).close()
        return "bound"
    except OSError:
        return "unbound"

@http.on_startup
def first():
    started.append("first")
    note(f"startup {{threading.get_native_id()}} {{listening()}}")

@http.on_startup
async def second():
    await asyncio.sleep(0.3)
    started.append("second")
    note(f"startup-async {{threading.get_native_id()}} {{listening()}}")

@http.on_shutdown
def bye():
    note(f"shutdown {{threading.get_native_id()}}")

@http.route("/hooks")
def hooks(req):
    return http.Response(body=",".join(started).encode())

@http.route("/slow")
def slow(req):
    note("slow start")
    time.sleep(1)
    note("slow done")
    return http.Response(body=b"slow ok")
"#;

/// Whether process `pid` has exited (gone or a zombie waiting for its parent).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// `@http.on_startup` runs on every core before the listeners bind (async hooks to the end);
/// `@http.on_shutdown` runs on every core at SIGTERM, after the drain let a request in flight
/// finish; the node then exits.
#[test]
fn startup_hooks_run_before_bind_and_shutdown_hooks_after_the_drain() {
    let port = free_port();
    let out = common::scratch("http_hooks_out").join("hooks.txt");
    let script = HOOKS
        .replace("{port}", &port.to_string())
        .replace("{out}", &out.display().to_string())
        .replace("{{", "{")
        .replace("}}", "}");
    let http = format!("servers:\n  - listen: 127.0.0.1:{port}\n    request_timeout_ms: 5000\n");
    let config = "listen:\n  udp: [\"127.0.0.1:{sip}\"]\nscript:\n  path: s.py\n\
                  extensions:\n  http: http.yaml\ntuning:\n  reactor_cpus: [0, 1]\n";
    let node = Node::start(
        "http_hooks",
        config,
        &[("s.py", &script), ("http.yaml", &http)],
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(45);
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "no HTTP listener:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    // Both hooks on both cores, each before the listener was bound.
    for kind in ["startup ", "startup-async "] {
        let ours: Vec<&&str> = lines.iter().filter(|l| l.starts_with(kind)).collect();
        assert_eq!(ours.len(), 2, "{kind}: {text}\n{}", node.log());
        assert!(ours.iter().all(|l| l.ends_with(" unbound")), "{text}");
        let threads: std::collections::HashSet<&str> =
            ours.iter().filter_map(|l| l.split(' ').nth(1)).collect();
        assert_eq!(threads.len(), 2, "one per core: {text}");
    }
    // Module state the hooks set, seen by a route (whichever core serves it).
    let (code, _, body) = curl(&[&format!("http://{addr}/hooks")]);
    assert_eq!(
        (code, body.as_str()),
        (200, "first,second"),
        "{}",
        node.log()
    );
    assert!(!text.contains("shutdown"), "{text}");

    // A request in flight at SIGTERM finishes; the shutdown hooks run after it.
    let slow = std::thread::spawn(move || curl(&[&format!("http://{addr}/slow")]));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&out)
        .unwrap_or_default()
        .contains("slow start")
    {
        assert!(
            Instant::now() < deadline,
            "/slow never ran:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ok = Command::new("kill")
        .args(["-TERM", &node.pid().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
    let (code, _, body) = slow.join().expect("slow request");
    assert_eq!((code, body.as_str()), (200, "slow ok"), "{}", node.log());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !exited(node.pid()) {
        assert!(Instant::now() < deadline, "still running:\n{}", node.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let done = text.find("slow done").unwrap_or(usize::MAX);
    let shut: Vec<usize> = text.match_indices("shutdown ").map(|(i, _)| i).collect();
    assert_eq!(shut.len(), 2, "on every core: {text}\n{}", node.log());
    assert!(shut.iter().all(|&i| i > done), "after the drain: {text}");
    assert!(!node.log().contains("panicked"), "{}", node.log());
}
