//! The HTTP extension end to end (`--features http`): the siphon binary serves script routes
//! to curl (HTTP/1.1 and h2c), answers 404/405/HEAD/504 itself, and scripts await the pooled
//! `http.Client` against a real upstream server this test runs, from routes and from SIP
//! handlers. A bad `http.yaml` stops the start with `file:line`. `@http.on_startup` hooks run on
//! every core before the listeners bind; `@http.on_shutdown` hooks after the SIGTERM drain.
#![cfg(feature = "http")]

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Node, Ua, curl, free_port, openssl, request, status};

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
    upstream_delayed(Duration::ZERO)
}

/// [`upstream_with_peak`] answering each request `delay` after it arrived.
fn upstream_delayed(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>, Arc<Peak>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = l.local_addr().expect("upstream addr");
    let conns = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(Peak::default());
    let (c, p) = (Arc::clone(&conns), Arc::clone(&peak));
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            let p = Arc::clone(&p);
            std::thread::spawn(move || serve(s, &p, delay));
        }
    });
    (addr, conns, peak)
}

fn serve(s: TcpStream, peak: &Peak, delay: Duration) {
    let mut w = s.try_clone().expect("clone stream");
    let mut r = BufReader::new(s);
    while let Some((path, _)) = common::read_request(&mut r) {
        let busy = peak.now.fetch_add(1, Ordering::SeqCst) + 1;
        peak.max.fetch_max(busy, Ordering::SeqCst);
        std::thread::sleep(delay);
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
    node.wait_tcp(addr);
    (node, addr)
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
    // A route handler awaits the named client; path parameters are decoded as UTF-8 (the
    // client sends `é` on as `%C3%A9`; upstream's Latin-1 decoding would send `%C3%83%C2%A9`)
    // and `+` stays `+` (upstream: a space).
    let (s, _, b) = curl(&[&u("/users/caf%C3%A9")]);
    assert_eq!(s, 200, "{}", node.log());
    assert_eq!(b, "up:/v1/users/caf%C3%A9");
    let (s, _, b) = curl(&[&u("/users/a+b")]);
    assert_eq!((s, b.as_str()), (200, "up:/v1/users/a+b"));
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
    // 504 at the timeout, and the handler is cancelled on its core; SIP is served while the
    // handler sleeps (spec §6 row 2).
    let slow = std::thread::spawn({
        let url = u("/slow");
        move || curl(&[&url]).0
    });
    let ua = Ua::new();
    let invite = request("INVITE", "sip:bob@example.com", ua.addr, "during-slow", "")
        .replace("sip:tester@", "sip:good@");
    ua.send(node.sip, &invite);
    let r = ua.recv_final().unwrap_or_default();
    assert_eq!(status(&r), Some(486), "{r}\n{}", node.log());
    assert_eq!(slow.join().expect("curl /slow"), 504);
    node.wait_log("slow handler cancelled", 1, 5);
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
    // A missing http.yaml (spec §6 row 4: upstream started silently without HTTP) stops the
    // start and fails `siphon check`, naming the file.
    std::fs::remove_file(dir.join("http.yaml")).unwrap();
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
        assert!(err.contains("http.yaml"), "{args:?}: {err}");
    }
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
    node.wait_tcp(addr);
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
    wait_sip(&node);
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
    let mut uas = common::Bg(
        Command::new("sipp")
            .current_dir(&dir)
            .args(["-sf", "uas_answer.xml", "-i", "127.0.0.1", "-p", &uas_p])
            .args(["-m", "200", "-timeout", "60s", "-timeout_error"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(uas_log)
            .spawn()
            .expect("run sipp (apt-get install sip-tester)"),
    );
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
    let uas_ok = uas.finished_ok(30);
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
    common::metric(
        &common::http_get(metrics, "/metrics"),
        "siphon_http_connection_errors_total",
    )
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

/// Bad input on the HTTP listener: oversize request headers get a 431 (or a close); a client
/// that never finishes its headers, and clients that stall before sending the 24 bytes that
/// tell HTTP/1.1 from HTTP/2 (nothing, or part of the preface), are closed after the header
/// timeout (10 s); each is counted in `siphon_http_connection_errors_total`, nothing panics,
/// and SIP OPTIONS are still answered.
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
    node.wait_tcp(addr);
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

    // Clients that stall before the first bytes tell HTTP/1.1 from HTTP/2 (fewer than the
    // preface's 24 bytes): nothing at all, and the first 16 bytes of the h2 preface. Each is
    // closed after the header timeout (hyper-util alone would wait for ever). Opened first so
    // their timeouts run alongside the slow client's.
    let mut silent = TcpStream::connect(addr).expect("connect");
    let mut partial = TcpStream::connect(addr).expect("connect");
    partial
        .write_all(b"PRI * HTTP/2.0\r\n")
        .expect("write part of the preface");

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
    for (what, c) in [("silent", &mut silent), ("partial preface", &mut partial)] {
        let (got, closed) = read_until_closed(c, Duration::from_secs(30));
        assert!(closed, "{what} client not closed: {got:?}");
        assert!(got.is_empty(), "{what} client: {got:?}");
    }

    // All four counted; the listener and SIP keep working.
    let deadline = Instant::now() + Duration::from_secs(5);
    while conn_errors(metrics) < before + 4 {
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
    node.wait_tcp(addr);
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
    node.signal("-TERM");
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

/// Wait (30 s at most) until the node answers SIP (an OPTIONS, whatever the status). The UDP
/// socket is bound before the script has loaded (inline placement loads it on the reactor
/// threads, which takes up to a second on a loaded host), and load sent before that arrives
/// as one burst when it has.
fn wait_sip(node: &Node) {
    let ua = Ua::new();
    ua.timeout(Duration::from_millis(100));
    let deadline = Instant::now() + Duration::from_secs(30);
    for i in 0.. {
        ua.send(
            node.sip,
            &request(
                "OPTIONS",
                "sip:probe@127.0.0.1",
                ua.addr,
                &format!("probe-{i}"),
                "",
            ),
        );
        if ua.recv().is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "no SIP answer:\n{}", node.log());
    }
}

/// A node on two cores with `script` as s.py and `http` as http.yaml (`{up}` stands for the
/// upstream's address), and a Prometheus endpoint: (node, metrics address).
fn start_with(name: &str, script: &str, http: &str) -> (Node, SocketAddr) {
    let metrics = free_port();
    let config = format!(
        "listen:\n  udp: [\"127.0.0.1:{{sip}}\"]\nscript:\n  path: s.py\n\
         extensions:\n  http: http.yaml\ntuning:\n  reactor_cpus: [0, 1]\n\
         metrics:\n  prometheus:\n    listen: \"127.0.0.1:{metrics}\"\n"
    );
    let node = Node::start(name, &config, &[("s.py", script), ("http.yaml", http)]);
    wait_sip(&node);
    (node, SocketAddr::from(([127, 0, 0, 1], metrics)))
}

const WHO: &str = r#"
from siphon import http

@http.route("/who")
def who(req):
    return http.Response(body=req.client.encode())
"#;

/// Spec §6 row 3, `trusted_proxies`: from a listed peer the client the script sees is the
/// left-most `X-Forwarded-For` entry; from any other peer (127.0.0.2 here), or without the
/// header, it is the socket address. A CIDR entry is warned about at load (upstream's docs:
/// bare IPs only) by the node and by `siphon check`, and ignored.
#[test]
fn trusted_proxies_decide_whose_forwarded_for_is_believed() {
    let port = free_port();
    let http = format!(
        "servers:\n  - listen: 127.0.0.1:{port}\n    trusted_proxies: [127.0.0.1, 10.0.0.0/8]\n"
    );
    let (node, _) = start_with("http_xff", WHO, &http);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    node.wait_tcp(addr);
    let url = format!("http://{addr}/who");
    let xff = "X-Forwarded-For: 203.0.113.7, 10.1.1.1";
    let (code, _, body) = curl(&["-H", xff, &url]);
    assert_eq!(
        (code, body.as_str()),
        (200, "203.0.113.7"),
        "{}",
        node.log()
    );
    // The trusted peer without the header: its own address.
    let (code, _, body) = curl(&[&url]);
    assert_eq!(code, 200);
    assert!(body.starts_with("127.0.0.1:"), "{body}");
    // An untrusted peer's header is not believed.
    let (code, _, body) = curl(&["--interface", "127.0.0.2", "-H", xff, &url]);
    assert_eq!(code, 200, "{}", node.log());
    assert!(body.starts_with("127.0.0.2:"), "{body}");
    // The CIDR entry: warned at load, with the file and line.
    let warning = "servers[0].trusted_proxies: `10.0.0.0/8` is not a bare IP";
    assert!(node.log().contains(warning), "{}", node.log());
    let out = Command::new(common::siphon_bin())
        .args(["check", "-c", "siphon.yaml"])
        .current_dir(&node.dir)
        .output()
        .expect("siphon check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("http.yaml:2: warning: ") && err.contains(warning),
        "{err}"
    );
}

/// One HTTP/2 frame: 9-byte header (RFC 9113 §4.1) and payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame length");
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend([kind, flags]);
    f.extend(stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Spec §6 row 5 (RUSTSEC-2026-0258): a client that opens a request stream and floods it with
/// empty DATA frames gets a GOAWAY (ENHANCE_YOUR_CALM) and its connection closed, the close is
/// counted, and the listener and SIP keep serving. The frames are written by hand (h2c prior
/// knowledge). The fix is h2's limit on empty DATA frames, so Cargo.lock must pin h2 >= 0.4.16.
#[test]
fn an_h2_flood_of_empty_data_frames_is_closed_and_counted_sip_unaffected() {
    let lock = std::fs::read_to_string(common::repo_root().join("Cargo.lock")).expect("lock");
    let h2 = lock
        .split("[[package]]")
        .find(|p| p.contains("name = \"h2\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .and_then(|v| v.strip_suffix('"'))
        .expect("h2 in Cargo.lock");
    let v: Vec<u64> = h2.split('.').filter_map(|n| n.parse().ok()).collect();
    assert!(v >= vec![0, 4, 16], "h2 {h2} lacks the empty-DATA limit");

    let script = "from siphon import http, proxy\n\n\
                  @http.route(\"/sink\", methods=[\"POST\"])\ndef sink(req):\n    \
                  return http.Response(body=b\"got %d\" % len(req.body()))\n\n\
                  @proxy.on_request(\"OPTIONS\")\ndef options(request):\n    \
                  request.reply(200, \"OK\")\n";
    let port = free_port();
    let (node, metrics) = start_with(
        "http_h2_flood",
        script,
        &format!("servers:\n  - listen: 127.0.0.1:{port}\n"),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    node.wait_tcp(addr);
    let before = conn_errors(metrics);

    let mut s = TcpStream::connect(addr).expect("connect");
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(h2_frame(0x4, 0, 0, &[])); // SETTINGS
    // HEADERS, END_HEADERS, no END_STREAM. HPACK: :method POST (static 3), :scheme http (6),
    // :path literal with indexed name (4), :authority literal with indexed name (1).
    let mut block = vec![0x83, 0x86, 0x04, 5];
    block.extend(b"/sink");
    block.extend([0x01, 1, b'x']);
    out.extend(h2_frame(0x1, 0x4, 1, &block));
    for _ in 0..1000 {
        out.extend(h2_frame(0x0, 0, 1, &[])); // empty DATA, no END_STREAM
    }
    // The server may close while we still write: that is the point.
    let _ = s.write_all(&out);
    let mut got = Vec::new();
    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
    let closed = loop {
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(closed, "flooding connection left open");
    // The server's frames: a GOAWAY (7) with ENHANCE_YOUR_CALM (0xb).
    let mut goaway = None;
    let mut at = 0;
    while at + 9 <= got.len() {
        let len =
            usize::from(got[at]) << 16 | usize::from(got[at + 1]) << 8 | usize::from(got[at + 2]);
        if got[at + 3] == 0x7 && at + 9 + 8 <= got.len() {
            let code = &got[at + 9 + 4..at + 9 + 8];
            goaway = Some(u32::from_be_bytes([code[0], code[1], code[2], code[3]]));
        }
        at += 9 + len;
    }
    assert_eq!(goaway, Some(0xb), "server frames: {got:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while conn_errors(metrics) <= before {
        assert!(
            Instant::now() < deadline,
            "flood not counted:\n{}",
            common::http_get(metrics, "/metrics")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The listener (h2 included) and SIP keep serving.
    let (code, _, body) = curl(&[
        "--http2-prior-knowledge",
        "--data-binary",
        "abc",
        &format!("http://{addr}/sink"),
    ]);
    assert_eq!((code, body.as_str()), (200, "got 3"), "{}", node.log());
    let ua = Ua::new();
    ua.send(
        node.sip,
        &request("OPTIONS", "sip:svc@127.0.0.1", ua.addr, "after-flood", ""),
    );
    assert_eq!(status(&ua.recv_final().unwrap_or_default()), Some(200));
    assert!(!node.log().contains("panicked"), "{}", node.log());
}

/// A root CA, an intermediate CA under it, server certificates for 127.0.0.1 signed by the
/// intermediate for keys in PKCS#1 (RSA), PKCS#8 (RSA and EC) and SEC1 (EC, after the
/// `EC PARAMETERS` block `openssl ecparam -genkey` writes) form, each with its chain file
/// (leaf then intermediate), and a client certificate chained the same way.
fn make_chained_pki(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).expect("pki dir");
    let ca_ext = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n";
    std::fs::write(dir.join("ca.ext"), ca_ext).expect("ext");
    std::fs::write(
        dir.join("srv.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    std::fs::write(
        dir.join("cli.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "root.key",
            "-out",
            "root.crt",
            "-subj",
            "/CN=root",
            "-days",
            "2",
        ],
    );
    let keys: [(&str, &[&str], &str); 5] = [
        (
            "int",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
            "PRIVATE KEY",
        ),
        ("rsa1", &["genrsa", "-traditional"], "RSA PRIVATE KEY"),
        (
            "rsa8",
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ],
            "PRIVATE KEY",
        ),
        (
            "sec1",
            &["ecparam", "-name", "prime256v1", "-genkey"],
            "EC PRIVATE KEY",
        ),
        (
            "ec8",
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
            "PRIVATE KEY",
        ),
    ];
    let mut all: Vec<(&str, &str)> = Vec::new();
    for (name, gen_args, label) in keys {
        let key = format!("{name}.key");
        let mut a = gen_args.to_vec();
        a.extend(["-out", &key]);
        openssl(dir, &a);
        let text = std::fs::read_to_string(dir.join(&key)).expect("key");
        assert!(
            text.contains(&format!("-----BEGIN {label}-----")),
            "{name}: not {label}:\n{text}"
        );
        all.push((name, if name == "int" { "ca.ext" } else { "srv.ext" }));
    }
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "cli.key",
        ],
    );
    all.push(("cli", "cli.ext"));
    for (name, ext) in all {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let subj = format!("/CN={name}");
        openssl(
            dir,
            &["req", "-new", "-key", &key, "-out", &csr, "-subj", &subj],
        );
        let (ca, cakey) = if name == "int" {
            ("root.crt", "root.key")
        } else {
            ("int.crt", "int.key")
        };
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                ca,
                "-CAkey",
                cakey,
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                ext,
            ],
        );
        if name != "int" {
            let chain = std::fs::read_to_string(dir.join(&crt)).expect("crt")
                + &std::fs::read_to_string(dir.join("int.crt")).expect("int.crt");
            std::fs::write(dir.join(format!("{name}.chain")), chain).expect("chain");
        }
    }
}

/// Spec §6 row 6 (certificates and keys through rustls-pki-types): a PKCS#1 RSA key, PKCS#8
/// RSA and EC keys and a SEC1 EC key each load and serve, with a chain that carries an
/// intermediate (the client trusts only the root). Row 1's chained case too: an mTLS listener
/// trusting the root accepts a client certificate signed by the intermediate and sent with it,
/// and refuses a client without one.
#[test]
fn tls_keys_in_pkcs1_pkcs8_and_sec1_and_chains_with_an_intermediate_serve() {
    let dir = common::scratch("http_tls_keys");
    make_chained_pki(&dir);
    let d = dir.display();
    let names = ["rsa1", "rsa8", "sec1", "ec8"];
    let ports: Vec<u16> = (0..=names.len()).map(|_| free_port()).collect();
    let mut http = String::from("servers:\n");
    for (name, port) in names.iter().zip(&ports) {
        http += &format!(
            "  - listen: 127.0.0.1:{port}\n    tls:\n      cert_path: {d}/{name}.chain\n      \
             key_path: {d}/{name}.key\n"
        );
    }
    let mtls = ports[names.len()];
    http += &format!(
        "  - listen: 127.0.0.1:{mtls}\n    tls:\n      cert_path: {d}/ec8.chain\n      \
         key_path: {d}/ec8.key\n      client_ca: {d}/root.crt\n"
    );
    let script = "from siphon import http\n\n@http.route(\"/healthz\")\ndef healthz(req):\n    \
                  return http.Response(status=200, body=b\"ok\")\n";
    let (node, _) = start_with("http_tls_keys", script, &http);
    let root = format!("{d}/root.crt");
    for (name, port) in names.iter().zip(&ports) {
        node.wait_tcp(SocketAddr::from(([127, 0, 0, 1], *port)));
        let url = format!("https://127.0.0.1:{port}/healthz");
        let (code, head, body) = curl(&["--cacert", &root, &url]);
        assert_eq!(
            (code, body.as_str()),
            (200, "ok"),
            "{name}: {head}\n{}",
            node.log()
        );
    }
    node.wait_tcp(SocketAddr::from(([127, 0, 0, 1], mtls)));
    let url = format!("https://127.0.0.1:{mtls}/healthz");
    let (cert, key) = (format!("{d}/cli.chain"), format!("{d}/cli.key"));
    let (code, head, body) = curl(&["--cacert", &root, "--cert", &cert, "--key", &key, &url]);
    assert_eq!((code, body.as_str()), (200, "ok"), "{head}\n{}", node.log());
    assert_eq!(
        curl(&["--cacert", &root, &url]).0,
        0,
        "served without a client certificate"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// An upstream that records each request's path and holds every answer until the gate
/// opens: (address, paths seen, gate).
#[allow(clippy::type_complexity)]
fn gated_upstream() -> (
    SocketAddr,
    Arc<std::sync::Mutex<Vec<String>>>,
    Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = l.local_addr().expect("addr");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let (sn, gt) = (Arc::clone(&seen), Arc::clone(&gate));
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let (sn, gt) = (Arc::clone(&sn), Arc::clone(&gt));
            std::thread::spawn(move || {
                let mut w = s.try_clone().expect("clone");
                let mut r = BufReader::new(s);
                while let Some((path, _)) = common::read_request(&mut r) {
                    if let Ok(mut g) = sn.lock() {
                        g.push(path);
                    }
                    let (m, cv) = &*gt;
                    let mut open = m.lock().expect("gate");
                    while !*open {
                        open = cv.wait(open).expect("gate");
                    }
                    drop(open);
                    if w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen, gate)
}

/// Spec §6 row 7: a handler's fire-and-forget `asyncio.create_task` that awaits
/// `http.Client` runs and completes after the handler answered, from an HTTP route and from a
/// SIP handler. The upstream holds its answer until both answers are in, so the tasks cannot
/// have finished before them.
#[test]
fn fire_and_forget_tasks_awaiting_the_client_complete_after_the_answer() {
    let (up, seen, gate) = gated_upstream();
    let script = r#"
import asyncio
from siphon import http, log, proxy

api = http.Client("api")

async def audit(what):
    r = await api.get(f"/audit/{what}")
    log.info(f"audit {what} done {r.status} {r.body.decode()}")

@http.route("/ff")
async def ff(req):
    asyncio.create_task(audit("http"))
    return http.Response(body=b"answered")

@proxy.on_request("MESSAGE")
async def message(request):
    asyncio.create_task(audit("sip"))
    request.reply(200, "OK")
"#;
    let port = free_port();
    let http = format!(
        "servers:\n  - listen: 127.0.0.1:{port}\nclients:\n  api:\n    base_url: http://{up}\n"
    );
    let (node, _) = start_with("http_fire_and_forget", script, &http);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    node.wait_tcp(addr);
    let (code, _, body) = curl(&[&format!("http://{addr}/ff")]);
    assert_eq!((code, body.as_str()), (200, "answered"), "{}", node.log());
    let ua = Ua::new();
    ua.send(
        node.sip,
        &request("MESSAGE", "sip:svc@127.0.0.1", ua.addr, "ff-1", ""),
    );
    assert_eq!(status(&ua.recv_final().unwrap_or_default()), Some(200));
    // Both tasks are awaiting the upstream now; neither can have completed.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let paths = seen.lock().map(|g| g.clone()).unwrap_or_default();
        if paths.contains(&"/audit/http".to_owned()) && paths.contains(&"/audit/sip".to_owned()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tasks never called out: {paths:?}\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!node.log().contains(" done 200"), "{}", node.log());
    {
        let (m, cv) = &*gate;
        *m.lock().expect("gate") = true;
        cv.notify_all();
    }
    node.wait_log("audit http done 200 done", 1, 10);
    node.wait_log("audit sip done 200 done", 1, 10);
}

/// Spec §6 row 8: 50 INVITEs, each handler awaiting a 200 ms upstream, are all in flight at
/// the upstream at once (a sync client per INVITE would serialize them). Over HTTP/1.1 a
/// client carries at most `pool_size` requests at once (README), so the client is configured
/// as the README tells users to for this load: `pool_size` at least the concurrency.
#[test]
fn fifty_invites_awaiting_a_slow_upstream_are_all_in_flight_at_once() {
    let (up, _, peak) = upstream_delayed(Duration::from_millis(200));
    let script = r#"
from siphon import http, proxy

api = http.Client("api")

@proxy.on_request("INVITE")
async def screen(request):
    verdict = await api.get(f"/screen/{request.from_uri.user}")
    if verdict.status != 200:
        request.reply(403, "Blocked")
        return
    request.reply(486, "Busy Here")
"#;
    let http = format!(
        "clients:\n  api:\n    base_url: http://{up}\n    timeout_ms: 5000\n    pool_size: 64\n"
    );
    let (node, _) = start_with("http_fifty", script, &http);
    let ua = Ua::new();
    for i in 0..50 {
        let msg = request(
            "INVITE",
            "sip:bob@127.0.0.1",
            ua.addr,
            &format!("fifty-{i}"),
            "",
        )
        .replace("sip:tester@", &format!("sip:caller{i}@"));
        ua.send(node.sip, &msg);
    }
    let mut answered = std::collections::HashMap::new();
    while answered.len() < 50 {
        let Some(m) = ua.recv_final() else {
            panic!("{} of 50 answered:\n{}", answered.len(), node.log());
        };
        let id = common::header(&m, "Call-ID").first().map(|s| s.to_string());
        if let Some(id) = id {
            answered.entry(id).or_insert_with(|| status(&m));
        }
    }
    assert!(answered.values().all(|s| *s == Some(486)), "{answered:?}");
    let most = peak.max.load(Ordering::SeqCst);
    assert_eq!(most, 50, "the upstream saw at most {most} requests at once");
}

/// Spec §6 row 9: `siphon.http` carries every public name of upstream's namespace and of its
/// SDK mock, with their parameters: the names `check_sdk_parity.py` derives from siphon-http
/// `python/http.py` (the decorators, `Request`/`Response`/`Client` and their public methods),
/// plus what siphon-sip's `sdk/siphon_sdk/http.py` adds (`Response.header`, `async with`, the
/// client's constructor arguments as attributes) and the request and response attributes.
#[test]
fn siphon_http_carries_every_name_of_upstreams_namespace_and_sdk() {
    let script = r#"
import inspect
from siphon import http

TOP = ["route", "middleware", "on_startup", "Request", "Response", "Client"]
METHODS = {
    "Request": ["body", "header"],
    "Response": ["body", "header", "raise_for_status"],
    "Client": ["get", "put", "post", "patch", "delete", "__aenter__", "__aexit__"],
}
CALLS = [
    ("Client.get", ["path", "headers"]),
    ("Client.delete", ["path", "headers"]),
    ("Client.post", ["path", "body", "headers"]),
    ("Client.put", ["path", "body", "headers"]),
    ("Client.patch", ["path", "body", "headers"]),
    ("Client.__init__", ["name", "base_url", "verify", "cert", "timeout_ms",
                         "http2_prior_knowledge"]),
    ("Response.__init__", ["status", "headers", "body"]),
    ("route", ["path", "methods"]),
]
REQUEST_ATTRS = ["method", "path", "path_params", "query_params", "headers", "client"]
RESPONSE_ATTRS = ["status", "headers", "body"]
CLIENT_ATTRS = ["name", "base_url", "verify", "cert", "timeout_ms", "http2_prior_knowledge"]

def missing_names(req):
    missing = [f"http.{n}" for n in TOP if not hasattr(http, n)]
    for cls, names in METHODS.items():
        missing += [f"http.{cls}.{n}" for n in names if not hasattr(getattr(http, cls), n)]
    for dotted, params in CALLS:
        obj = http
        for part in dotted.split("."):
            obj = getattr(obj, part)
        have = inspect.signature(obj).parameters
        missing += [f"http.{dotted}({p}=)" for p in params if p not in have]
    missing += [f"http.Request.{a}" for a in REQUEST_ATTRS if not hasattr(req, a)]
    r = http.Response(status=201, headers={"a": "b"}, body="x")
    missing += [f"http.Response.{a}" for a in RESPONSE_ATTRS if not hasattr(r, a)]
    for c in (http.Client("api"), http.Client(base_url="http://127.0.0.1:9", timeout_ms=100)):
        missing += [f"http.Client.{a}" for a in CLIENT_ATTRS if not hasattr(c, a)]
    return missing

@http.route("/parity")
def parity(req):
    return http.Response(body=",".join(missing_names(req)) or "none missing")
"#;
    let port = free_port();
    let http = format!(
        "servers:\n  - listen: 127.0.0.1:{port}\nclients:\n  api:\n    base_url: http://127.0.0.1:9\n"
    );
    let (node, _) = start_with("http_parity", script, &http);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    node.wait_tcp(addr);
    let (code, _, body) = curl(&[&format!("http://{addr}/parity")]);
    assert_eq!(
        (code, body.as_str()),
        (200, "none missing"),
        "{}",
        node.log()
    );
}
