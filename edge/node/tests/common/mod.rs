//! Shared harness for node-level tests: start the `siphon` binary (the release build named by
//! `SIPHON_BIN`, as `./scripts/test.sh` exports it, else this crate's own binary) with a config
//! and script in a scratch directory, and talk to it over real loopback sockets.
//!
//! Each test file `mod common;`s this; not every file uses every helper.
#![allow(dead_code)]

#[cfg(feature = "smpp")]
pub mod smpp;

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn siphon_bin() -> PathBuf {
    std::env::var_os("SIPHON_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_siphon")))
}

/// The repository root (for bench/sipp scenarios and deploy/ examples).
pub fn repo_root() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"))
        .join("../..")
}

/// A loopback UDP port nobody holds right now that is also free on TCP.
pub fn free_port() -> u16 {
    // Below the kernel's ephemeral range (32768-60999 by default): a port the kernel handed
    // out as free may be taken again at once by any outgoing connection (curl, a node's own
    // client socket) before the node under test binds it. Ports here are only ever taken by
    // someone binding them by number; a per-process counter keeps this binary's tests apart.
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 10_000 + (std::process::id() % 2_000) * 11;
    for _ in 0..22_000 {
        let k = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (10_000 + (base - 10_000 + k) % 22_000) as u16;
        if UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free loopback port")
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A fresh scratch directory under the system temp dir.
pub fn scratch(name: &str) -> PathBuf {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("siphon-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Where the script runs (`tuning.script_placement`) and on how many reactor cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// `inline` or `thread` (the default).
    pub inline: bool,
    /// Reactor cores (`tuning.reactor_cpus: [0..cores)`).
    pub cores: usize,
}

impl Placement {
    /// The four layouts the node-level suite covers: both placements on 1 and 2 cores.
    pub const ALL: [Placement; 4] = [
        Placement {
            inline: true,
            cores: 1,
        },
        Placement {
            inline: true,
            cores: 2,
        },
        Placement {
            inline: false,
            cores: 1,
        },
        Placement {
            inline: false,
            cores: 2,
        },
    ];

    /// The `tuning:` block for this layout.
    pub fn tuning_yaml(self) -> String {
        let cpus: Vec<String> = (0..self.cores).map(|c| c.to_string()).collect();
        format!(
            "tuning:\n  reactor_cpus: [{}]\n  script_placement: {}\n",
            cpus.join(", "),
            if self.inline { "inline" } else { "thread" }
        )
    }
}

/// A running node; killed when dropped. Its log is kept in `dir/siphon.log`.
pub struct Node {
    child: Child,
    /// Scratch directory holding the config, script and log.
    pub dir: PathBuf,
    /// The UDP (and TCP) SIP address.
    pub sip: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Start siphon with `config` (YAML; `{sip}` is replaced by the SIP port) and the files
    /// (name, contents) written beside it, and wait until it answers on UDP.
    pub fn start(name: &str, config: &str, files: &[(&str, &str)]) -> Node {
        let dir = scratch(name);
        let port = free_port();
        for (f, text) in files {
            if let Some(parent) = dir.join(f).parent() {
                std::fs::create_dir_all(parent).expect("file's directory");
            }
            std::fs::write(dir.join(f), text).expect("write file");
        }
        let config = config.replace("{sip}", &port.to_string());
        std::fs::write(dir.join("siphon.yaml"), config).expect("write config");
        let log = std::fs::File::create(dir.join("siphon.log")).expect("log file");
        let child = Command::new(siphon_bin())
            .args(["-c", "siphon.yaml"])
            .current_dir(&dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start siphon");
        let mut node = Node {
            child,
            dir,
            sip: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        node.wait_ready();
        node
    }

    /// Start with a script (`s.py`) and a layout; `extra` is appended to the config.
    pub fn with_script(name: &str, script: &str, placement: Placement, extra: &str) -> Node {
        let config = format!(
            "listen:\n  udp: [\"127.0.0.1:{{sip}}\"]\n  tcp: [\"127.0.0.1:{{sip}}\"]\n\
             script:\n  path: s.py\n{}{extra}",
            placement.tuning_yaml()
        );
        Node::start(name, &config, &[("s.py", script)])
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        // Bound means the reactors are up; the script is loaded before the reactors start.
        while UdpSocket::bind(self.sip).is_ok() {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("siphon exited early ({st}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "siphon did not bind {}:\n{}",
                self.sip,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("siphon.log")).unwrap_or_default()
    }

    /// The node's process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The node's process (to wait for its exit after a signal).
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// A path inside the scratch directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Wait (`secs` at most) until the log holds `what` `n` times or more; panics with the
    /// log otherwise.
    pub fn wait_log(&self, what: &str, n: usize, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.log().matches(what).count() < n {
            assert!(
                Instant::now() < deadline,
                "`{what}` x{n} not seen:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait (45 s at most) until something accepts TCP on `addr` (an extension's listener);
    /// panics with the log otherwise.
    pub fn wait_tcp(&self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(45);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "no listener on {addr}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Send `sig` (`-TERM`, `-HUP`, ...) to the node with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill {sig}");
    }
}

/// A child process (a SIPp UAS, a Python peer), killed when dropped.
pub struct Bg(pub Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Bg {
    /// Wait up to `secs` for the exit; true if it exited 0.
    pub fn finished_ok(&mut self, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(Some(st)) = self.0.try_wait() {
                return st.success();
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Run `python3 script args...` to the end; its stdout, which must hold `DONE` (the script's
/// last line when all it checked held). Panics with both streams and the node's log otherwise.
pub fn python_done(node: &Node, script: &Path, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 (with PyPI smpplib and smpp34 for the SMPP peers)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("DONE"),
        "{} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}\nlog:\n{}",
        script.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
    stdout
}

/// A UDP user agent on an ephemeral loopback port.
pub struct Ua {
    /// The socket.
    pub sock: UdpSocket,
    /// Its address.
    pub addr: SocketAddr,
}

impl Ua {
    /// Bind a new UA with a 5 s read timeout.
    pub fn new() -> Ua {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind ua");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr");
        Ua { sock, addr }
    }

    /// Set how long [`Ua::recv`] waits.
    pub fn timeout(&self, d: Duration) {
        self.sock.set_read_timeout(Some(d)).expect("timeout");
    }

    /// Send text to `to`.
    pub fn send(&self, to: SocketAddr, text: &str) {
        self.sock.send_to(text.as_bytes(), to).expect("send");
    }

    /// The next datagram as text, or None on timeout. Retries on EINTR.
    pub fn recv(&self) -> Option<(String, SocketAddr)> {
        let mut buf = vec![0u8; 65536];
        loop {
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    return Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            }
        }
    }

    /// The next message that is not a 100 Trying.
    pub fn recv_final(&self) -> Option<String> {
        loop {
            let (m, _) = self.recv()?;
            if status(&m) != Some(100) {
                return Some(m);
            }
        }
    }
}

impl Default for Ua {
    fn default() -> Self {
        Ua::new()
    }
}

/// Status code of a response's start line.
pub fn status(msg: &str) -> Option<u16> {
    let line = msg.lines().next()?;
    let rest = line.strip_prefix("SIP/2.0 ")?;
    rest.get(..3)?.parse().ok()
}

/// Values of every header `name` (long name; compact forms are not expanded).
pub fn header<'a>(msg: &'a str, name: &str) -> Vec<&'a str> {
    msg.split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .collect()
}

/// A minimal request from `ua` with a fresh branch and Call-ID; `extra` headers are
/// inserted before Content-Length (end each with `\r\n`).
pub fn request(method: &str, ruri: &str, ua: SocketAddr, call_id: &str, extra: &str) -> String {
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {ua};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:tester@127.0.0.1>;tag=t-{call_id}\r\nTo: <{ruri}>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// A response to `req` with status `code`, its Via/From/Call-ID/CSeq and a To tag.
pub fn answer(req: &str, code: u16, reason: &str) -> String {
    answer_with(req, code, reason, "")
}

/// [`answer`] with `extra` header lines (each ending `\r\n`) before Content-Length.
pub fn answer_with(req: &str, code: u16, reason: &str, extra: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for v in header(req, "Via") {
        out.push_str(&format!("Via: {v}\r\n"));
    }
    for name in ["From", "Call-ID", "CSeq"] {
        for v in header(req, name) {
            out.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    for v in header(req, "To") {
        out.push_str(&format!("To: {v};tag=callee\r\n"));
    }
    out.push_str(extra);
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// Fetch `path` from an HTTP endpoint (metrics) with a plain TCP request.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).expect("connect metrics");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The value of the Prometheus sample `series` (name and labels exactly as exposed) in a
/// scrape's `body`.
pub fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The next HTTP/1.1 request on `r` (a test's own upstream server): its path and body (by
/// Content-Length); None once the client closed.
pub fn read_request(r: &mut impl std::io::BufRead) -> Option<(String, Vec<u8>)> {
    let mut line = String::new();
    if r.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 {
            return None;
        }
        if h == "\r\n" {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((path, body))
}

/// curl with `args`: (status of the last response, response headers, body).
pub fn curl(args: &[&str]) -> (u16, String, String) {
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

/// The openssl CLI with `args` in `dir` (test certificates); panics with its stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl) is needed for this test");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run SIPp in `dir` with `args`; returns (exit status success, stdout+stderr).
pub fn sipp(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("sipp")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run sipp (apt-get install sip-tester)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}
