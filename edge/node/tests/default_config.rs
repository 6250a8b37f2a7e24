//! The README's run command: `siphon` with no `-c` and no ./siphon.yaml runs the embedded
//! default (loopback proxy + registrar). A real SIPp REGISTER gets 401, then 200 with digest.
//! Ports come from the default config's `${SIPHON_LISTEN_UDP:-127.0.0.1:5060}` variables and
//! are moved off 5060 here so the test can run beside a node on the default port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn port_bound_udp(port: u16) -> bool {
    std::net::UdpSocket::bind(("127.0.0.1", port)).is_err()
}

#[test]
fn embedded_default_registers_with_digest() {
    let root = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
    .join("../..");
    let bin =
        std::env::var("SIPHON_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_siphon").to_string());
    let dir = std::env::temp_dir().join(format!("siphon-default-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let (sip, metrics) = (25060u16, 29090u16);
    let node = Node(
        Command::new(&bin)
            .current_dir(&dir)
            .env("SIPHON_LISTEN_UDP", format!("127.0.0.1:{sip}"))
            .env("SIPHON_LISTEN_TCP", format!("127.0.0.1:{sip}"))
            .env("SIPHON_METRICS", format!("127.0.0.1:{metrics}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start siphon"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !port_bound_udp(sip) {
        assert!(
            Instant::now() < deadline,
            "siphon did not bind 127.0.0.1:{sip}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let sipp = Command::new("sipp")
        .current_dir(&dir)
        .args(["-sf"])
        .arg(root.join("bench/sipp/register_auth.xml"))
        .arg("-inf")
        .arg(root.join("bench/sipp/alice.csv"))
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            "25080",
            "-m",
            "1",
            "-timeout",
            "15s",
            "-nostdin",
        ])
        .arg(format!("127.0.0.1:{sip}"))
        .output()
        .expect("run sipp (Debian package sip-tester)");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&sipp.stdout),
        String::from_utf8_lossy(&sipp.stderr)
    );
    assert_eq!(
        sipp.status.code(),
        Some(0),
        "REGISTER 401 then 200 failed:\n{out}"
    );
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
}
