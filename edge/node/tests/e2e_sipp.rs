//! End-to-end with real SIPp against the `siphon` binary over UDP, TCP and TLS
//! (bench/sipp/e2e.sh): REGISTER with digest (401 then 200), a call through the proxy with
//! record-route (INVITE/180/200, ACK and BYE along the route set), CANCEL before answer (487),
//! unknown user (404) and Max-Forwards: 0 (483). Every sipp must exit 0: no failed call and no
//! unexpected message.
//!
//! `SIPHON_BIN` picks the binary (scripts/test.sh passes the release build); otherwise the
//! binary cargo built for this test is used. Needs `sipp` (Debian `sip-tester`), `socat` for
//! TLS and `openssl`: missing tools fail the test with what to install, never skip silently.

use std::path::PathBuf;
use std::process::Command;

fn run_e2e(config: &str, transports: &[&str]) {
    let root = PathBuf::from(
        std::env::var("CARGO_MANIFEST_DIR").expect("cargo test sets CARGO_MANIFEST_DIR"),
    )
    .join("../..");
    let bin =
        std::env::var("SIPHON_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_siphon").to_string());
    let out = Command::new("bash")
        .arg(root.join("bench/sipp/e2e.sh"))
        .arg("siphon")
        .args(transports)
        .env("SIPHON_BIN", &bin)
        .env("SIPHON_CONFIG", root.join(config))
        .env("E2E_REQUIRE_TLS", "1")
        .current_dir(&root)
        .output()
        .expect("run bench/sipp/e2e.sh (needs bash)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "e2e {config} {transports:?} failed:\n{text}"
    );
    assert!(
        text.contains(" 0 failed"),
        "e2e {transports:?} reported failures:\n{text}"
    );
}

/// One test: the scenarios use fixed loopback ports, so transports run one after another.
#[test]
fn sipp_udp_tcp_tls() {
    run_e2e("bench/sipp/siphon-e2e.yaml", &["udp", "tcp", "tls"]);
    // The same flows with @proxy.on_reply / @proxy.on_failure handlers: every branch reply
    // goes through Python and is relayed by the script.
    run_e2e("bench/sipp/siphon-e2e-hooks.yaml", &["udp", "tcp"]);
}
