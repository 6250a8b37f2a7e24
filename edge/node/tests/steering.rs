//! UDP response steering (`tuning.steering`), through the real node on two reactors: with the
//! default `branch`, each response reaches the reactor owning its transaction straight from the
//! kernel (the classic BPF program reads our Via branch), so nothing is forwarded over the
//! inter-core mesh; with `hash`, responses from callees whose flows hash to the other reactor
//! are forwarded (the check that the test can tell the two apart). Thirty-two calls, each with
//! its own caller and callee socket: with the hash alone, all 32 responses landing on their
//! owner by chance has odds of 2^-32.

mod common;

use std::net::SocketAddr;

use common::{Node, Placement, Ua, answer, free_port, http_get, metric, status};

const SCRIPT: &str = r#"
from siphon import proxy

@proxy.on_request
def route(request):
    request.relay()
"#;

const CALLS: usize = 32;

/// Run the calls; the node's `siphon_mesh_forwards_total` after them.
fn mesh_forwards(name: &str, steering: Option<&str>) -> f64 {
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut extra = format!("metrics:\n  prometheus:\n    listen: \"{metrics}\"\n");
    let placement = Placement {
        inline: false,
        cores: 2,
    };
    let mut tuning = placement.tuning_yaml();
    if let Some(s) = steering {
        tuning.push_str(&format!("  steering: {s}\n"));
    }
    extra.push_str(&tuning);
    // The config of Node::with_script, with the steering line in its tuning block.
    let config = format!(
        "listen:\n  udp: [\"127.0.0.1:{{sip}}\"]\n  tcp: [\"127.0.0.1:{{sip}}\"]\n\
         script:\n  path: s.py\n{extra}"
    );
    let n = Node::start(name, &config, &[("s.py", SCRIPT)]);
    for i in 0..CALLS {
        let (caller, callee) = (Ua::new(), Ua::new());
        let call_id = format!("{name}-{i}");
        let ruri = format!("sip:callee@{}", callee.addr);
        caller.send(
            n.sip,
            &common::request("INVITE", &ruri, caller.addr, &call_id, ""),
        );
        let inv = loop {
            let (m, _) = callee.recv().expect("the INVITE at the callee");
            if status(&m).is_none() {
                break m;
            }
        };
        callee.send(n.sip, &answer(&inv, 486, "Busy Here"));
        let fin = caller.recv_final().expect("the 486 at the caller");
        assert_eq!(status(&fin), Some(486), "{fin}");
    }
    let body = http_get(metrics, "/metrics");
    metric(&body, "siphon_mesh_forwards_total").expect("siphon_mesh_forwards_total")
}

#[test]
fn responses_reach_their_transactions_reactor_without_the_mesh() {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        eprintln!("one CPU: two reactors cannot be placed; steering has nothing to steer");
        return;
    }
    assert_eq!(mesh_forwards("steer-branch", None), 0.0, "default steering");
    assert!(
        mesh_forwards("steer-hash", Some("hash")) > 0.0,
        "hash steering forwards some responses (the test tells the modes apart)"
    );
}
