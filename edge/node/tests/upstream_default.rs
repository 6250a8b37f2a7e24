//! Upstream's default script and default `siphon.yaml` (tests/fixtures/upstream, unchanged
//! but for loopback listen addresses) on the `siphon` binary, driven by SIPp: digest
//! REGISTER (401 then 200) for alice and bob, a call from alice to bob through the proxy,
//! a PUBLISH answered 200 with a SIP-ETag, a SUBSCRIBE answered 200 and followed by a NOTIFY
//! carrying the published PIDF, a new NOTIFY after the next PUBLISH (SIP-If-Match modify),
//! and an un-SUBSCRIBE ending in `Subscription-State: terminated`. Every sipp must exit 0.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Node, free_port, repo_root, sipp};

const USERS: &[(&str, &str)] = &[
    (
        "alice.csv",
        "SEQUENTIAL\nalice;secret;[authentication username=alice password=secret]\n",
    ),
    (
        "bob.csv",
        "SEQUENTIAL\nbob;secret;[authentication username=bob password=secret]\n",
    ),
];

const SCENARIOS: &[&str] = &[
    "register_auth.xml",
    "uac_invite.xml",
    "uas_answer.xml",
    "presence_publish.xml",
    "presence_modify.xml",
    "presence_subscribe.xml",
];

struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fixture(name: &str) -> String {
    let p = repo_root()
        .join("edge/node/tests/fixtures/upstream")
        .join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn run(dir: &Path, what: &str, args: &[&str], node: &Node) {
    let (ok, text) = sipp(dir, args);
    assert!(
        ok,
        "{what}: sipp failed:\n{text}\nsiphon log:\n{}",
        node.log()
    );
}

/// The first `<log>` line of a sipp `-trace_logs` file for `scenario` that starts `prefix`.
fn logged(dir: &Path, scenario: &str, prefix: &str) -> Option<String> {
    let entries = std::fs::read_dir(dir).ok()?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!("{scenario}_")) && name.ends_with("_logs.log") {
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            if let Some(l) = text.lines().find(|l| l.starts_with(prefix)) {
                return Some(l.to_owned());
            }
        }
    }
    None
}

const COMMON: [&str; 7] = [
    "-i",
    "127.0.0.1",
    "-m",
    "1",
    "-timeout",
    "30s",
    "-timeout_error",
];

fn port_bound_udp(port: u16) -> bool {
    std::net::UdpSocket::bind(("127.0.0.1", port)).is_err()
}

/// Start the node on upstream's fixtures and REGISTER alice and bob with digest; returns the
/// node, the proxy address and the ports alice and bob answer on.
fn registered() -> (Node, String, String, String) {
    let yaml = fixture("siphon.yaml");
    assert!(
        yaml.contains("\"127.0.0.1:5060\""),
        "fixture listen address"
    );
    let config = yaml.replace("127.0.0.1:5060", "127.0.0.1:{sip}");
    let script = fixture("scripts/proxy_default.py");
    let node = Node::start(
        "upstream-default",
        &config,
        &[("scripts/proxy_default.py", &script)],
    );
    let dir = node.dir.clone();
    for (f, text) in USERS {
        std::fs::write(dir.join(f), text).expect("csv");
    }
    for s in SCENARIOS {
        std::fs::copy(repo_root().join("bench/sipp").join(s), dir.join(s)).expect("scenario");
    }
    let proxy = node.sip.to_string();
    let (pa, pb) = (free_port().to_string(), free_port().to_string());

    // Digest REGISTER (401, then 200) for both users, each with the port it answers on.
    for (csv, port) in [("alice.csv", &pa), ("bob.csv", &pb)] {
        let mut a = vec!["-sf", "register_auth.xml", "-inf", csv, "-p", port];
        a.extend(COMMON);
        a.push(&proxy);
        run(&dir, &format!("REGISTER {csv}"), &a, &node);
    }

    (node, proxy, pa, pb)
}

/// A call alice -> bob between the registered users (INVITE/180/200, ACK, BYE).
#[test]
fn upstream_default_call_between_registered_users() {
    let (node, proxy, pa, pb) = registered();
    let dir = node.dir.clone();
    // A call alice -> bob between the registered users (INVITE/180/200, ACK, BYE).
    let mut a = vec!["-sf", "uas_answer.xml", "-p", &pb, "-trace_msg"];
    a.extend(COMMON);
    let mut uas = Bg(Command::new("sipp")
        .current_dir(&dir)
        .args(&a)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp uas"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !port_bound_udp(pb.parse().unwrap_or(0)) {
        assert!(Instant::now() < deadline, "uas sipp did not bind");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut a = vec!["-sf", "uac_invite.xml", "-s", "bob", "-p", &pa];
    a.extend(COMMON);
    a.push(&proxy);
    run(&dir, "call alice -> bob", &a, &node);
    let out = std::mem::replace(
        &mut uas.0,
        Command::new("true").spawn().expect("placeholder"),
    )
    .wait_with_output()
    .expect("uas exit");
    assert!(
        out.status.success(),
        "uas sipp: {}\n{}{}\nsiphon log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
}

/// PUBLISH -> 200 + SIP-ETag; SUBSCRIBE -> 200 + NOTIFY with the PIDF; the next PUBLISH ->
/// a new NOTIFY; un-SUBSCRIBE -> NOTIFY terminated.
#[test]
fn upstream_default_presence_publish_subscribe_notify() {
    let (node, proxy, _pa, _pb) = registered();
    let dir = node.dir.clone();
    let (pw, pp) = (free_port().to_string(), free_port().to_string());
    // PUBLISH: 200 with a SIP-ETag.
    let mut a = vec![
        "-sf",
        "presence_publish.xml",
        "-s",
        "alice",
        "-key",
        "basic",
        "open",
        "-trace_logs",
        "-p",
        &pp,
    ];
    a.extend(COMMON);
    a.push(&proxy);
    run(&dir, "PUBLISH", &a, &node);
    let etag = logged(&dir, "presence_publish", "SIP-ETag ")
        .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .expect("the PUBLISH's 200 carried a SIP-ETag");

    // SUBSCRIBE: 200, then a NOTIFY with the published PIDF.
    let mut a = vec![
        "-sf",
        "presence_subscribe.xml",
        "-s",
        "alice",
        "-trace_logs",
        "-trace_msg",
        "-trace_err",
        "-p",
        &pw,
    ];
    a.extend(COMMON);
    a.push(&proxy);
    let mut watcher = Bg(Command::new("sipp")
        .current_dir(&dir)
        .args(&a)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sipp watcher"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while logged(&dir, "presence_subscribe", "NOTIFY 1").is_none() {
        if let Ok(Some(st)) = watcher.0.try_wait() {
            panic!(
                "watcher sipp ended ({st}) before the first NOTIFY:\n{}",
                node.log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no NOTIFY after the SUBSCRIBE:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The next PUBLISH (modify with SIP-If-Match): 200 with a new SIP-ETag, and the watcher
    // gets a new NOTIFY with the new state, then unsubscribes.
    let mut a = vec![
        "-sf",
        "presence_modify.xml",
        "-s",
        "alice",
        "-key",
        "etag",
        &etag,
        "-key",
        "basic",
        "closed",
        "-trace_logs",
        "-p",
        &pp,
    ];
    a.extend(COMMON);
    a.push(&proxy);
    run(&dir, "PUBLISH modify", &a, &node);
    let etag2 = logged(&dir, "presence_modify", "SIP-ETag ").expect("new SIP-ETag");
    assert!(!etag2.contains(&etag), "a modify gets a new entity-tag");
    let out = std::mem::replace(
        &mut watcher.0,
        Command::new("true").spawn().expect("placeholder"),
    )
    .wait_with_output()
    .expect("watcher exit");
    assert!(
        out.status.success(),
        "watcher sipp: {}\n{}{}\nsiphon log:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        node.log()
    );
    assert!(logged(&dir, "presence_subscribe", "NOTIFY 2").is_some());
    assert!(logged(&dir, "presence_subscribe", "NOTIFY 3 terminated").is_some());
    // The node loaded upstream's config and script without an error.
    assert!(!node.log().contains("ERROR"), "{}", node.log());
}
