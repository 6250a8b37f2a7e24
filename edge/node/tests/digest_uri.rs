//! `auth.digest_uri_check` against stock SIPp: `[authentication]` writes the proxy's address
//! as the digest `uri` (`sip:127.0.0.1:PORT`) while the REGISTER's Request-URI names the
//! domain (`sip:siphon.test`, bench/sipp/register_domain.xml). The default (`relaxed`) and
//! `off` accept it (401, then 200); `strict` answers the credentials with 401 again and SIPp
//! fails the call. The policy is the embedded default script (deploy/examples).

mod common;

use common::{Node, repo_root, sipp};

/// Start a node serving `siphon.test` with the default policy and user alice; `auth_extra`
/// lines go into the `auth:` block.
fn start(name: &str, auth_extra: &str) -> Node {
    let script = std::fs::read_to_string(repo_root().join("deploy/examples/proxy_default.py"))
        .expect("read deploy/examples/proxy_default.py");
    let config = format!(
        "listen:\n  udp: [\"127.0.0.1:{{sip}}\"]\n  tcp: [\"127.0.0.1:{{sip}}\"]\n\
         domain:\n  local: [siphon.test]\n\
         script:\n  path: proxy_default.py\n\
         auth:\n  users:\n    alice: alice-secret\n{auth_extra}\
         tuning:\n  reactor_cpus: [0]\n"
    );
    Node::start(name, &config, &[("proxy_default.py", &script)])
}

/// Run register_domain.xml once against `node` over UDP; (sipp succeeded, message trace).
fn register(node: &Node) -> (bool, String) {
    let scenario = repo_root().join("bench/sipp/register_domain.xml");
    let target = node.sip.to_string();
    let (ok, out) = sipp(
        &node.dir,
        &[
            "-sf",
            &scenario.to_string_lossy(),
            "-t",
            "u1",
            "-i",
            "127.0.0.1",
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "20s",
            "-trace_msg",
            "-message_file",
            "messages.log",
            &target,
        ],
    );
    let trace = std::fs::read_to_string(node.path("messages.log")).unwrap_or_default();
    if !ok || trace.is_empty() {
        println!("sipp output:\n{out}\nnode log:\n{}", node.log());
    }
    (ok, trace)
}

/// Status codes of the final responses SIPp received, in order. Each received message opens
/// with `UDP message received [N] bytes :`; the copy SIPp logs again under `Unexpected UDP
/// message received:` is not counted twice.
fn received_statuses(trace: &str) -> Vec<u16> {
    let mut out = Vec::new();
    let mut in_received = false;
    for line in trace.lines() {
        if line.contains("message received [") {
            in_received = true;
        } else if in_received && let Some(rest) = line.strip_prefix("SIP/2.0 ") {
            in_received = false;
            if let Some(code) = rest.get(..3).and_then(|c| c.parse().ok())
                && code != 100
            {
                out.push(code);
            }
        }
    }
    out
}

/// The premise: SIPp wrote the proxy's address, not the Request-URI, as the digest uri.
fn assert_sipp_wrote_proxy_address(node: &Node, trace: &str) {
    let directive = format!("uri=\"sip:{}\"", node.sip);
    assert!(
        trace.contains(&directive),
        "no {directive} in sipp's REGISTER:\n{trace}"
    );
    assert!(
        trace.contains("REGISTER sip:siphon.test SIP/2.0"),
        "{trace}"
    );
}

#[test]
fn relaxed_by_default_accepts_sipp_authentication() {
    let node = start("digest-uri-default", "");
    let (ok, trace) = register(&node);
    assert!(
        ok,
        "sipp failed with the default digest_uri_check:\n{trace}"
    );
    assert_sipp_wrote_proxy_address(&node, &trace);
    assert_eq!(received_statuses(&trace), [401, 200], "{trace}");
}

#[test]
fn off_accepts_sipp_authentication() {
    let node = start("digest-uri-off", "  digest_uri_check: off\n");
    let (ok, trace) = register(&node);
    assert!(ok, "sipp failed with digest_uri_check: off:\n{trace}");
    assert_eq!(received_statuses(&trace), [401, 200], "{trace}");
}

#[test]
fn strict_refuses_sipp_authentication() {
    let node = start("digest-uri-strict", "  digest_uri_check: strict\n");
    let (ok, trace) = register(&node);
    assert!(
        !ok,
        "sipp succeeded with digest_uri_check: strict:\n{trace}"
    );
    assert_sipp_wrote_proxy_address(&node, &trace);
    assert_eq!(received_statuses(&trace), [401, 401], "{trace}");
}
