//! io_uring made unavailable to a child process: the runtime must fall back to epoll, log the
//! reason, export it, and still serve traffic.
//!
//! Two ways: a seccomp filter that makes `io_uring_setup` fail with EPERM (what Docker's default
//! profile does), and the `SIPHON_IO_URING_PROBE_FAIL` injection. The parent re-runs this test
//! binary with `--exact fallback_child` and checks the child's output.

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use siphon_reactor::{BackendKind, BackendPref, Config, Cx, Datagram, Handler, Runtime};

const CHILD_ENV: &str = "SIPHON_FALLBACK_CHILD";

struct Echo;

impl Handler for Echo {
    type Msg = ();
    fn on_datagram(&mut self, cx: &mut Cx<'_, ()>, d: Datagram<'_>) {
        cx.send_to(d.socket, d.peer, d.local, d.data);
    }
}

/// Deny `io_uring_setup` with EPERM for this thread and every thread it spawns later.
fn deny_io_uring() {
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let nr = libc::SYS_io_uring_setup as u32;
    let mut filter = [
        // A = seccomp_data.nr
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        // if A == io_uring_setup: next, else skip one
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: nr,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_NO_NEW_PRIVS");
    // SAFETY: `prog` points at `filter`, both alive across the call.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    };
    assert_eq!(r, 0, "PR_SET_SECCOMP: {}", std::io::Error::last_os_error());
}

/// Runs only inside the child started by `falls_back_to_epoll_*` (a no-op otherwise).
#[test]
fn fallback_child() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    if mode == "seccomp" {
        deny_io_uring();
        // Show the filter works on this thread before the runtime probes.
        let e = io_uring::IoUring::new(8)
            .err()
            .expect("io_uring_setup must be denied");
        assert_eq!(e.raw_os_error(), Some(libc::EPERM));
    }
    let cfg = Config {
        cpus: vec![0],
        pin: false,
        backend: BackendPref::Auto,
        udp: vec!["127.0.0.1:0".parse().expect("addr")],
        ..Config::default()
    };
    let rt = Runtime::start(cfg, |_| Echo).expect("start on epoll");
    let info = rt.info().clone();
    assert_eq!(info.backend, BackendKind::Epoll);
    assert!(info.fell_back);
    assert_eq!(info.uring_gauge(), 0);
    let c = UdpSocket::bind("127.0.0.1:0").expect("bind");
    c.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    c.send_to(b"OPTIONS sip:x SIP/2.0\r\n\r\n", rt.udp_addrs()[0])
        .expect("send");
    let mut b = [0u8; 512];
    let (n, _) = c.recv_from(&mut b).expect("echo over epoll");
    assert_eq!(&b[..n], b"OPTIONS sip:x SIP/2.0\r\n\r\n");
    rt.shutdown().expect("shutdown");
    println!(
        "CHILD-OK backend={} reason={}",
        info.backend.as_str(),
        info.reason
    );
}

fn run_child(mode: &str, extra_env: Option<(&str, &str)>) -> String {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "fallback_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, mode);
    if let Some((k, v)) = extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("spawn child");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(
        text.contains("CHILD-OK backend=epoll"),
        "child did not run its checks:\n{text}"
    );
    assert!(
        text.contains("io_uring unavailable, falling back to epoll"),
        "fallback not logged:\n{text}"
    );
    text
}

#[test]
fn falls_back_to_epoll_under_seccomp() {
    let text = run_child("seccomp", None);
    assert!(
        text.contains("io_uring_setup: Operation not permitted"),
        "reason not logged:\n{text}"
    );
}

#[test]
fn falls_back_to_epoll_on_injected_probe_failure() {
    let text = run_child(
        "inject",
        Some((siphon_reactor::probe::PROBE_FAIL_ENV, "rehearsal")),
    );
    assert!(
        text.contains("probe failure injected by SIPHON_IO_URING_PROBE_FAIL: rehearsal"),
        "{text}"
    );
}
