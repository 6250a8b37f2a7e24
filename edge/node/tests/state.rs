//! Durable and shared state through the release binary (issue 18): the local registrar store
//! across a restart and a `kill -9` during a REGISTER burst, and two nodes sharing a real
//! `redis-server` (started here on a loopback port) for bindings, `cache` and digest nonces,
//! with Redis stopped and restarted mid-run.
//!
//! The script answers an INVITE with a 302 naming the contact it found (so a test sees what
//! `registrar.lookup` returned without running a UAS per user) and a MESSAGE with cache
//! operations.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Node, Ua, free_port, header, http_get, scratch, status};

const SCRIPT: &str = r#"
from siphon import auth, cache, proxy, registrar

@proxy.on_request("REGISTER")
def register(request):
    if request.get_header("X-Auth") and not auth.require_www_digest(request):
        return
    registrar.save(request)

@proxy.on_request("INVITE")
def invite(request):
    contacts = registrar.lookup(request.ruri)
    if not contacts:
        request.reply(404, "Not Found")
        return
    request.set_reply_header("Contact", "<" + str(contacts[0].uri) + ">")
    request.reply(302, "Moved Temporarily")

@proxy.on_request("MESSAGE")
async def message(request):
    op, key = request.get_header("X-Op"), request.get_header("X-Key")
    if op == "store":
        await cache.store("shared", key, request.get_header("X-Value"))
    else:
        v = await cache.fetch("shared", key)
        request.set_reply_header("X-Value", v if v is not None else "(none)")
    request.reply(200, "OK")
"#;

fn config(backend: &str, extra: &str) -> String {
    format!(
        "listen:\n  udp: [\"127.0.0.1:{{sip}}\"]\n\
         domain:\n  local: [\"example.com\"]\n\
         script:\n  path: s.py\n\
         tuning:\n  reactor_cpus: [0]\n\
         registrar:\n{backend}\n{extra}"
    )
}

fn register(user: &str, ua: SocketAddr, call_id: &str, extra: &str) -> String {
    format!(
        "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {ua};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@example.com>;tag=r-{call_id}\r\n\
         To: <sip:{user}@example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 REGISTER\r\n\
         Contact: <sip:{user}@10.1.2.3:5099;transport=udp>;q=0.7\r\n\
         Path: <sip:edge.example.net;lr>\r\nExpires: 3600\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

fn invite(user: &str, ua: SocketAddr, call_id: &str) -> String {
    common::request(
        "INVITE",
        &format!("sip:{user}@example.com"),
        ua,
        call_id,
        "",
    )
}

/// Send one request and return the final response.
fn ask(ua: &Ua, to: SocketAddr, text: &str) -> String {
    ua.send(to, text);
    ua.recv_final()
        .unwrap_or_else(|| panic!("no answer to:\n{text}"))
}

/// Register `users` on `node`, `window` REGISTERs in flight at a time; returns once every
/// one got its 200.
fn register_all(node: &Node, users: &[String], window: usize) {
    let ua = Ua::new();
    let mut ok = 0;
    for chunk in users.chunks(window) {
        for u in chunk {
            ua.send(node.sip, &register(u, ua.addr, &format!("reg-{u}"), ""));
        }
        let mut got = 0;
        while got < chunk.len() {
            let (m, _) = ua.recv().expect("200 OK to REGISTER");
            match status(&m) {
                Some(200) => got += 1,
                Some(100) => {}
                other => panic!("REGISTER answered {other:?}:\n{m}"),
            }
        }
        ok += got;
    }
    assert_eq!(ok, users.len());
}

/// INVITE each user and check the 302 names its registered contact.
fn assert_routable(node: &Node, users: &[String]) {
    let ua = Ua::new();
    // The proxy retransmits a 302 until it is ACKed (Timer G); repeats are expected.
    let mut done: HashSet<String> = HashSet::new();
    for chunk in users.chunks(100) {
        let mut want: HashSet<String> = HashSet::new();
        for u in chunk {
            ua.send(node.sip, &invite(u, ua.addr, &format!("inv-{u}")));
            want.insert(format!("<sip:{u}@10.1.2.3:5099;transport=udp>"));
        }
        let mut seen = 0;
        while seen < chunk.len() {
            let (m, _) = ua
                .recv()
                .unwrap_or_else(|| panic!("INVITE unanswered; node log:\n{}", node.log()));
            match status(&m) {
                Some(302) => {
                    let c = header(&m, "Contact")[0].to_owned();
                    if want.remove(&c) {
                        done.insert(c);
                        seen += 1;
                    } else {
                        assert!(done.contains(&c), "unexpected contact {c}");
                    }
                }
                Some(100) => {}
                other => panic!("INVITE answered {other:?}:\n{m}"),
            }
        }
    }
}

fn local_backend(db: &Path) -> String {
    format!("  backend: local\n  local:\n    path: {}\n", db.display())
}

#[test]
fn local_store_restart_routes_1000_registrations() {
    let dir = scratch("state-local");
    let db = dir.join("registrar.redb");
    let users: Vec<String> = (0..1000).map(|i| format!("user{i}")).collect();
    let cfg = config(&local_backend(&db), "");
    {
        let node = Node::start("state-local-a", &cfg, &[("s.py", SCRIPT)]);
        register_all(&node, &users, 100);
        assert_routable(&node, &users[..10]);
    } // SIGKILL: no clean shutdown.
    let node = Node::start("state-local-b", &cfg, &[("s.py", SCRIPT)]);
    assert!(
        node.log().contains("1000 bindings loaded"),
        "store not loaded:\n{}",
        node.log()
    );
    // The first INVITE after the node bound is answered from the store.
    assert_routable(&node, &users);
    // Path, q and received came back too: ask the store through a REGISTER with no Contact
    // (a fetch) and read the 200's Contact list.
    let ua = Ua::new();
    let fetch = register("user7", ua.addr, "fetch-7", "").replace(
        "Contact: <sip:user7@10.1.2.3:5099;transport=udp>;q=0.7\r\n",
        "",
    );
    let r = ask(&ua, node.sip, &fetch);
    assert_eq!(status(&r), Some(200), "{r}");
    let contact = header(&r, "Contact");
    assert!(contact[0].contains(";q=0.7"), "{contact:?}");
}

#[test]
fn kill_9_during_register_burst_loses_no_200() {
    let dir = scratch("state-kill");
    let db = dir.join("registrar.redb");
    let cfg = config(&local_backend(&db), "");
    let mut node = Node::start("state-kill-a", &cfg, &[("s.py", SCRIPT)]);
    let ua = Arc::new(Ua::new());
    ua.timeout(Duration::from_millis(200));
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (ua, acked, stop) = (Arc::clone(&ua), Arc::clone(&acked), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some((m, _)) = ua.recv() {
                    if status(&m) == Some(200) {
                        let to = header(&m, "To")[0].to_owned();
                        let user = to
                            .trim_start_matches("<sip:")
                            .split('@')
                            .next()
                            .unwrap_or("")
                            .to_owned();
                        acked.lock().unwrap().insert(user);
                    }
                }
            }
        })
    };
    // A steady burst; kill -9 once a few hundred were answered, with more in flight.
    let target = node.sip;
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < 300 {
        assert!(Instant::now() < deadline, "burst too slow:\n{}", node.log());
        for _ in 0..20 {
            let u = format!("burst{sent}");
            ua.send(target, &register(&u, ua.addr, &format!("b-{u}"), ""));
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for _ in 0..50 {
        let u = format!("burst{sent}");
        ua.send(target, &register(&u, ua.addr, &format!("b-{u}"), ""));
        sent += 1;
    }
    // kill -9 through the command line, as an operator would.
    let _ = Command::new("kill")
        .args(["-9", &node.pid().to_string()])
        .status();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let acked: Vec<String> = acked.lock().unwrap().iter().cloned().collect();
    assert!(acked.len() >= 300);
    drop(std::mem::replace(
        &mut node,
        Node::start("state-kill-b", &cfg, &[("s.py", SCRIPT)]),
    ));
    // The store opened (the node started) and every 200'd registration is there.
    assert_routable(&node, &acked);
}

/// A node whose stderr is a pipe read by a thread (not a file: the test below limits the
/// node's file size, which would also stop its log).
struct PipedNode {
    child: Child,
    sip: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl PipedNode {
    fn start(name: &str, config: &str) -> PipedNode {
        use std::io::BufRead;
        let dir = scratch(name);
        let port = free_port();
        std::fs::write(dir.join("s.py"), SCRIPT).expect("script");
        std::fs::write(
            dir.join("siphon.yaml"),
            config.replace("{sip}", &port.to_string()),
        )
        .expect("config");
        let mut child = Command::new(common::siphon_bin())
            .args(["-c", "siphon.yaml"])
            .current_dir(&dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start siphon");
        let log: Arc<Mutex<String>> = Arc::default();
        let stderr = child.stderr.take().expect("stderr pipe");
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    let mut g = log.lock().expect("log lock");
                    g.push_str(&line);
                    g.push('\n');
                }
            });
        }
        let sip = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::UdpSocket::bind(sip).is_ok() {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "siphon exited early ({st}):\n{}",
                    log.lock().expect("log lock")
                );
            }
            assert!(Instant::now() < deadline, "siphon did not bind {sip}");
            std::thread::sleep(Duration::from_millis(50));
        }
        PipedNode { child, sip, log }
    }

    fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }
}

impl Drop for PipedNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Set the soft `RLIMIT_FSIZE` of process `pid` (the hard limit stays).
fn set_file_size_limit(pid: u32, soft: u64) {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a query (null new limit) with a valid out-pointer.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(rc, 0, "prlimit query: {}", std::io::Error::last_os_error());
    let new = libc::rlimit {
        rlim_cur: soft.min(old.rlim_max),
        rlim_max: old.rlim_max,
    };
    // SAFETY: valid pointer to the new limit; no old limit asked for.
    let rc = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &new,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "prlimit set: {}", std::io::Error::last_os_error());
}

/// A REGISTER's 200 OK leaves only once its binding is committed: with the node's writes
/// failing (its file-size limit lowered below the store's size, as a full disk would) the
/// 200 is held, and it leaves once writes succeed again. A commit that keeps failing does not
/// hold replies for ever: past `commit_timeout_ms` the REGISTER gets 503 with Retry-After,
/// counted and logged. Every binding is on disk once the store recovered.
#[test]
fn register_200_waits_for_its_commit_and_gives_up_with_503() {
    let dir = scratch("state-held");
    let db = dir.join("registrar.redb");
    let metrics = free_port();
    let backend = format!(
        "  backend: local\n  local:\n    path: {}\n    commit_timeout_ms: 1500\n",
        db.display()
    );
    let extra = format!("metrics:\n  prometheus:\n    listen: \"127.0.0.1:{metrics}\"\n");
    let cfg = config(&backend, &extra);
    let node = PipedNode::start("state-held-a", &cfg);
    let pid = node.child.id();
    let ua = Ua::new();
    let r = ask(&ua, node.sip, &register("alice", ua.addr, "held-1", ""));
    assert_eq!(status(&r), Some(200), "{r}");

    // Writes fail: bob's 200 is held (nothing arrives while the store cannot commit).
    set_file_size_limit(pid, 4096);
    ua.timeout(Duration::from_millis(700));
    ua.send(node.sip, &register("bob", ua.addr, "held-2", ""));
    assert_eq!(
        ua.recv_final(),
        None,
        "answered before its commit; log:\n{}",
        node.log()
    );
    // Writes succeed again: the held 200 leaves.
    set_file_size_limit(pid, u64::MAX);
    ua.timeout(Duration::from_secs(5));
    let r = ua
        .recv_final()
        .unwrap_or_else(|| panic!("held 200 never sent; log:\n{}", node.log()));
    assert_eq!(status(&r), Some(200), "{r}");
    assert!(header(&r, "To")[0].contains("bob@"), "{r}");

    // Writes keep failing: past commit_timeout_ms carol gets 503 with Retry-After.
    set_file_size_limit(pid, 4096);
    let r = ask(&ua, node.sip, &register("carol", ua.addr, "held-3", ""));
    assert_eq!(status(&r), Some(503), "{r}\nlog:\n{}", node.log());
    assert_eq!(header(&r, "Retry-After").len(), 1, "{r}");
    let text = http_get(SocketAddr::from(([127, 0, 0, 1], metrics)), "/metrics");
    assert!(
        text.contains("siphon_state_commit_timeouts_total{backend=\"local\"} 1\n"),
        "{text}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !node.log().contains("REGISTERs answered 503") {
        assert!(Instant::now() < deadline, "not logged:\n{}", node.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(node.log().contains("commit failed"), "{}", node.log());

    // The store recovers: new REGISTERs get their 200, and carol's binding (kept in memory
    // meanwhile) is written with them.
    set_file_size_limit(pid, u64::MAX);
    let r = ask(&ua, node.sip, &register("dave", ua.addr, "held-4", ""));
    assert_eq!(status(&r), Some(200), "{r}\nlog:\n{}", node.log());
    assert!(
        node.log().contains("writes succeed again"),
        "{}",
        node.log()
    );
    drop(node); // SIGKILL
    let node = Node::start("state-held-b", &config(&backend, ""), &[("s.py", SCRIPT)]);
    let users: Vec<String> = ["alice", "bob", "carol", "dave"]
        .iter()
        .map(|u| (*u).to_owned())
        .collect();
    assert_routable(&node, &users);
}

/// A `redis-server` on a loopback port, stopped when dropped.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start(port: u16, dir: &Path) -> Redis {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &dir.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn redis_config(url: &str, metrics: Option<u16>) -> String {
    let backend =
        format!("  backend: redis\n  redis:\n    url: \"{url}\"\n    key_prefix: \"t:reg:\"\n");
    let mut extra = format!(
        "cache:\n  - name: shared\n    url: \"{url}\"\n\
         auth:\n  realm: example.com\n  nonce_secret: \"shared-secret-for-tests\"\n\
         \x20 users:\n    alice: alice-pw\n    bob: bob-pw\n"
    );
    if let Some(p) = metrics {
        extra.push_str(&format!(
            "metrics:\n  prometheus:\n    listen: \"127.0.0.1:{p}\"\n"
        ));
    }
    config(&backend, &extra)
}

fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(s.as_bytes()))
}

/// `param="value"` or `param=value` of a challenge.
fn param(h: &str, name: &str) -> String {
    h.split(',')
        .filter_map(|p| p.trim().trim_start_matches("Digest ").split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("no {name} in {h}"))
}

/// The MD5 challenge of a 401 (over UDP the only one, without `algorithm`: MD5 is its default).
fn md5_challenge(r: &str) -> String {
    header(r, "WWW-Authenticate")
        .into_iter()
        .find(|h| !h.contains("algorithm") || (h.contains("MD5") && !h.contains("SHA")))
        .unwrap_or_else(|| panic!("no MD5 challenge in\n{r}"))
        .to_owned()
}

fn authorization(user: &str, pw: &str, challenge: &str) -> String {
    let (realm, nonce) = (param(challenge, "realm"), param(challenge, "nonce"));
    let uri = "sip:example.com";
    let ha1 = md5_hex(&format!("{user}:{realm}:{pw}"));
    let ha2 = md5_hex(&format!("REGISTER:{uri}"));
    let (nc, cnonce) = ("00000001", "0a4f113b");
    let resp = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{resp}\", algorithm=MD5, qop=auth, nc={nc}, \
         cnonce=\"{cnonce}\"\r\n"
    )
}

/// REGISTER `user` with digest: challenged by `challenger`, answered on `answerer`.
fn register_digest(ua: &Ua, user: &str, pw: &str, challenger: &Node, answerer: &Node) -> String {
    let r = ask(
        ua,
        challenger.sip,
        &register(user, ua.addr, &format!("d1-{user}"), "X-Auth: 1\r\n"),
    );
    assert_eq!(status(&r), Some(401), "{r}");
    let auth = authorization(user, pw, &md5_challenge(&r));
    ask(
        ua,
        answerer.sip,
        &register(
            user,
            ua.addr,
            &format!("d2-{user}"),
            &format!("X-Auth: 1\r\n{auth}"),
        ),
    )
}

fn message(ua: &Ua, node: &Node, op: &str, key: &str, value: &str) -> String {
    let extra = format!("X-Op: {op}\r\nX-Key: {key}\r\nX-Value: {value}\r\n");
    let m = common::request(
        "MESSAGE",
        "sip:cache@example.com",
        ua.addr,
        &format!("m-{op}-{key}-{}", node.sip.port()),
        &extra,
    );
    let r = ask(ua, node.sip, &m);
    assert_eq!(status(&r), Some(200), "{r}");
    header(&r, "X-Value")
        .first()
        .map_or(String::new(), |v| (*v).to_owned())
}

/// A number on a metrics line starting with `prefix`.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"))
}

/// `local_max_entries` of a Redis cache bounds what the node keeps of it: past the cap the
/// oldest local entries are dropped and counted, and a dropped key is still read (from
/// Redis).
#[test]
fn redis_cache_local_max_entries_evicts_the_oldest() {
    let dir = scratch("state-cache-max");
    let redis = Redis::start(free_port(), &dir);
    let metrics = free_port();
    let extra = format!(
        "cache:\n  - name: shared\n    url: \"{}\"\n    local_max_entries: 10\n\
         metrics:\n  prometheus:\n    listen: \"127.0.0.1:{metrics}\"\n",
        redis.url()
    );
    let node = Node::start(
        "state-cache-max",
        &config("  backend: memory\n", &extra),
        &[("s.py", SCRIPT)],
    );
    let ua = Ua::new();
    for i in 0..60 {
        message(&ua, &node, "store", &format!("k{i}"), &format!("v{i}"));
    }
    let text = http_get(SocketAddr::from(([127, 0, 0, 1], metrics)), "/metrics");
    let evicted = metric(
        &text,
        "siphon_state_local_evictions_total{backend=\"cache:shared\"} ",
    );
    // Entries whose write is still queued are kept, so the count is not exact; but most of
    // the 50 beyond the cap went, and what is left is near the cap.
    assert!(evicted >= 40.0, "{text}");
    let held = metric(&text, "siphon_cache_entries ");
    assert!(held <= 12.0, "{text}");
    // All 60 are on Redis, and the oldest (dropped here) is still read, through Redis.
    assert_eq!(redis.cli(&["DBSIZE"]), "60");
    assert_eq!(message(&ua, &node, "fetch", "k0", ""), "v0");
}

#[test]
fn two_nodes_share_bindings_cache_and_nonces_through_redis() {
    let dir = scratch("state-redis");
    let redis = Redis::start(free_port(), &dir);
    let cfg = redis_config(&redis.url(), None);
    let a = Node::start("state-redis-a", &cfg, &[("s.py", SCRIPT)]);
    let b = Node::start("state-redis-b", &cfg, &[("s.py", SCRIPT)]);
    let ua = Ua::new();

    // A digest challenge from A answered on B.
    let r = register_digest(&ua, "alice", "alice-pw", &a, &b);
    assert_eq!(status(&r), Some(200), "{r}\nB log:\n{}", b.log());
    // Registered through A, called through B (and the other way round).
    let r = register_digest(&ua, "bob", "bob-pw", &a, &a);
    assert_eq!(status(&r), Some(200), "{r}");
    let r = ask(&ua, b.sip, &invite("bob", ua.addr, "i-bob-b"));
    assert_eq!(status(&r), Some(302), "{r}");
    assert_eq!(
        header(&r, "Contact"),
        ["<sip:bob@10.1.2.3:5099;transport=udp>"]
    );
    let r = ask(&ua, a.sip, &invite("alice", ua.addr, "i-alice-a"));
    assert_eq!(status(&r), Some(302), "{r}");
    // Upstream's layout: a hash per AoR under the prefix, field = contact URI.
    let fields = redis.cli(&["HKEYS", "t:reg:sip:bob@example.com"]);
    assert_eq!(fields, "sip:bob@10.1.2.3:5099;transport=udp");
    let ttl: u64 = redis
        .cli(&["TTL", "t:reg:sip:bob@example.com"])
        .parse()
        .unwrap();
    assert!(ttl > 3600 && ttl <= 3630, "ttl {ttl}");

    // A cache write on A is read on B. Writes reach Redis behind the script (the link's
    // queue, README "Durable and shared state"): B reads it once it has landed there.
    message(&ua, &a, "store", "k1", "v1");
    let deadline = Instant::now() + Duration::from_secs(30);
    while redis.cli(&["GET", "k1"]) != "v1" {
        assert!(Instant::now() < deadline, "k1 never reached Redis");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(message(&ua, &b, "fetch", "k1", ""), "v1");
}

#[test]
fn redis_outage_serves_local_state_and_replays_writes() {
    let dir = scratch("state-outage");
    let port = free_port();
    let mut redis = Redis::start(port, &dir);
    let metrics = free_port();
    let cfg = redis_config(&redis.url(), Some(metrics));
    let a = Node::start("state-outage-a", &cfg, &[("s.py", SCRIPT)]);
    let ua = Ua::new();
    let users = |r: std::ops::Range<usize>| -> Vec<String> { r.map(|i| format!("o{i}")).collect() };
    register_all(&a, &users(0..20), 20);

    redis.stop();
    // Still answering: REGISTERs get their 200 (writes queued), lookups use the local copy,
    // cache reads the node's own copy.
    register_all(&a, &users(20..40), 20);
    assert_routable(&a, &users(0..40));
    message(&ua, &a, "store", "k2", "during-outage");
    assert_eq!(message(&ua, &a, "fetch", "k2", ""), "during-outage");
    let m = http_get(SocketAddr::from(([127, 0, 0, 1], metrics)), "/metrics");
    assert!(
        m.contains("siphon_state_backend_up{backend=\"redis\"} 0"),
        "{m}"
    );
    let queued: HashMap<String, f64> = m
        .lines()
        .filter(|l| l.starts_with("siphon_state_queued_writes"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect();
    assert!(
        queued["siphon_state_queued_writes{backend=\"redis\"}"] >= 20.0,
        "{queued:?}"
    );
    assert!(a.log().contains("redis unreachable"), "{}", a.log());

    // Redis comes back empty (no persistence): the queued writes are replayed.
    let redis = Redis::start(port, &dir);
    let deadline = Instant::now() + Duration::from_secs(15);
    while redis.cli(&["EXISTS", "t:reg:sip:o39@example.com"]) != "1"
        || redis.cli(&["GET", "k2"]) != "during-outage"
    {
        assert!(
            Instant::now() < deadline,
            "writes not replayed:\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(a.log().contains("replaying"), "{}", a.log());
    let m = http_get(SocketAddr::from(([127, 0, 0, 1], metrics)), "/metrics");
    assert!(
        m.contains("siphon_state_backend_up{backend=\"redis\"} 1"),
        "{m}"
    );
    // A second node finds what the first registered while Redis was down.
    let b = Node::start(
        "state-outage-b",
        &redis_config(&redis.url(), None),
        &[("s.py", SCRIPT)],
    );
    assert_routable(&b, &users(20..40));
    assert_eq!(message(&ua, &b, "fetch", "k2", ""), "during-outage");
}
