//! The harness and the node agree (issue 15): each example in deploy/examples runs on the
//! `siphon` binary (the release build `SIPHON_BIN` names, as `./scripts/test.sh` exports it)
//! with its own script and config, driven by stock tools (SIPp, smpplib, curl), and every
//! outcome its pytest file asserts under the SDK's harness is asserted here too. Each check
//! names the pytest test it mirrors (`test_*.py::test_*`).
//!
//! The SIP examples run in every build; the SMPP gateway needs `--features smpp` and the HTTP
//! screening service `--features http`:
//! `cargo test -p siphon-bin --features smpp,http --test sdk_examples`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Bg, Node, free_port, repo_root, sipp};

/// A file of deploy/examples.
fn example(name: &str) -> String {
    let p = repo_root().join("deploy/examples").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Whether someone holds loopback UDP `port`.
fn port_bound_udp(port: u16) -> bool {
    std::net::UdpSocket::bind(("127.0.0.1", port)).is_err()
}

/// SIPp options every run here shares: loopback, one call, bounded, message trace.
const ONE_CALL: [&str; 8] = [
    "-i",
    "127.0.0.1",
    "-m",
    "1",
    "-nostdin",
    "-timeout",
    "30s",
    "-timeout_error",
];

/// Run SIPp scenario `sf` once from `port` against the node, tracing the messages into
/// `trace`; `extra` goes before the target. Panics with SIPp's output and the node's log
/// unless SIPp exits 0 (every message of the scenario as expected). Returns the trace.
fn run_sipp(node: &Node, sf: &str, port: u16, trace: &str, extra: &[&str]) -> String {
    let (p, target) = (port.to_string(), node.sip.to_string());
    let mut args = vec!["-sf", sf, "-p", &p, "-trace_msg", "-message_file", trace];
    args.extend(ONE_CALL);
    args.extend(extra);
    args.push(&target);
    let (ok, out) = sipp(&node.dir, &args);
    let text = std::fs::read_to_string(node.path(trace)).unwrap_or_default();
    assert!(
        ok,
        "sipp {sf} failed:\n{out}\nmessages:\n{text}\nsiphon log:\n{}",
        node.log()
    );
    text
}

/// Start SIPp `uas_answer.xml` (one call) on `port` in the background, tracing into `trace`,
/// and wait until it listens.
fn uas(dir: &Path, port: u16, trace: &str) -> Bg {
    let p = port.to_string();
    let mut args = vec!["-sf", "uas_answer.xml", "-p", &p];
    args.extend(["-trace_msg", "-message_file", trace]);
    args.extend(ONE_CALL);
    let child = Command::new("sipp")
        .current_dir(dir)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sipp (apt-get install sip-tester)");
    let uas = Bg(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !port_bound_udp(port) {
        assert!(Instant::now() < deadline, "sipp UAS did not bind {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    uas
}

/// The head of the first message in a SIPp trace whose start line begins with `start`.
fn traced<'a>(trace: &'a str, start: &str) -> Option<&'a str> {
    let at = trace.find(&format!("\n{start}"))?;
    let msg = &trace[at + 1..];
    let end = [msg.find("\r\n\r\n"), msg.find("\n\n")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(msg.len());
    Some(&msg[..end])
}

/// Copy bench/sipp scenarios into `dir`.
fn stock(dir: &Path, scenarios: &[&str]) {
    for s in scenarios {
        std::fs::copy(repo_root().join("bench/sipp").join(s), dir.join(s)).expect("scenario");
    }
}

/// Run `sf` once from `port` with a one-line injection file of `fields`, tracing into
/// `<name>.log`; the trace.
fn sipp_with(node: &Node, sf: &str, port: u16, name: &str, fields: &[&str]) -> String {
    let csv = format!("{name}.csv");
    let line = fields.join(";");
    std::fs::write(node.path(&csv), format!("SEQUENTIAL\n{line}\n")).expect("csv");
    run_sipp(node, sf, port, &format!("{name}.log"), &["-inf", &csv])
}

/// REGISTER `user` from `port` with `sf` (401, then 200 with the digest); the trace.
fn register(node: &Node, sf: &str, port: u16, user: &str, password: &str) -> String {
    let auth = format!("[authentication username={user} password={password}]");
    sipp_with(
        node,
        sf,
        port,
        &format!("reg_{user}"),
        &[user, password, &auth],
    )
}

/// The head of the INVITE a SIPp UAS traced into `trace`.
fn uas_invite(node: &Node, trace: &str) -> String {
    let text = std::fs::read_to_string(node.path(trace)).unwrap_or_default();
    traced(&text, "INVITE ")
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no INVITE in {trace}:\n{text}"))
}

/// An in-dialog BYE (To tag) with no Route header to `sip:bob@<proxy>`, answered 404.
const BYE_NO_ROUTE: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="bye_no_route">
  <send retrans="500">
    <![CDATA[

      BYE sip:bob@[remote_ip] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:alice@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:bob@[remote_ip]>;tag=t1
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="404"/>
</scenario>
"#;

/// deploy/examples/proxy_default.py with deploy/examples/siphon.yaml (the embedded default;
/// local domains 127.0.0.1 and localhost, users alice and bob) against test_proxy_default.py.
/// The stock bench/sipp scenarios address users as `sip:USER@<proxy IP>`.
#[test]
fn proxy_default_example() {
    let metrics = free_port();
    let config = example("siphon.yaml")
        .replace("${SIPHON_LISTEN_UDP:-127.0.0.1:5060}", "127.0.0.1:{sip}")
        .replace("${SIPHON_LISTEN_TCP:-127.0.0.1:5060}", "127.0.0.1:{sip}")
        .replace(
            "${SIPHON_METRICS:-127.0.0.1:9090}",
            &format!("127.0.0.1:{metrics}"),
        );
    assert!(config.contains("127.0.0.1:{sip}"), "listen addresses moved");
    let node = Node::start(
        "sdk-example-proxy-default",
        &config,
        &[("proxy_default.py", &example("proxy_default.py"))],
    );
    let dir = node.dir.clone();
    stock(
        &dir,
        &[
            "register_auth.xml",
            "uac_invite.xml",
            "uas_answer.xml",
            "uac_404.xml",
        ],
    );
    std::fs::write(dir.join("bye_no_route.xml"), BYE_NO_ROUTE).expect("scenario");
    let (pa, pb, pc) = (free_port(), free_port(), free_port());

    // test_register_is_challenged_then_saved: 401, then 200 with the digest (SIPp checks
    // both), and the binding is saved: the 200 lists the registered contact.
    let trace = register(&node, "register_auth.xml", pa, "alice", "alice-secret");
    assert!(traced(&trace, "SIP/2.0 401").is_some(), "{trace}");
    let ok = traced(&trace, "SIP/2.0 200").unwrap_or_default();
    let contact = format!("<sip:alice@127.0.0.1:{pa};transport=UDP>");
    assert!(
        ok.contains(&contact),
        "no saved contact in the 200:\n{trace}"
    );

    // test_invite_to_registered_user_is_forked_and_record_routed: bob registers from the port
    // his UAS answers on; alice's INVITE reaches that contact (the only target) with the
    // proxy's Record-Route, and the call completes along the route set.
    register(&node, "register_auth.xml", pb, "bob", "bob-secret");
    let mut bob = uas(&dir, pb, "uas_bob.log");
    run_sipp(&node, "uac_invite.xml", pc, "call_bob.log", &["-s", "bob"]);
    assert!(bob.finished_ok(20), "bob's UAS did not complete its call");
    let invite = uas_invite(&node, "uas_bob.log");
    let ruri = format!("INVITE sip:bob@127.0.0.1:{pb};transport=UDP SIP/2.0");
    assert!(invite.starts_with(&ruri), "not forked to bob:\n{invite}");
    let rr = format!("Record-Route: <sip:{}", node.sip);
    assert!(invite.contains(&rr), "not record-routed:\n{invite}");

    // test_invite_to_unknown_user_is_404: 404 Not Found (then ACK), and the script's log line.
    let trace = run_sipp(&node, "uac_404.xml", pc, "nobody.log", &["-s", "nobody"]);
    assert!(traced(&trace, "SIP/2.0 404 Not Found").is_some(), "{trace}");
    let log = node.log();
    assert!(
        log.contains("INVITE to unknown user sip:nobody@127.0.0.1"),
        "{log}"
    );

    // test_in_dialog_request_without_route_is_404.
    run_sipp(&node, "bye_no_route.xml", pc, "bye.log", &[]);
}

/// REGISTER to `sip:example.com` for the injection file's user (field0), with its digest
/// credentials (field2) after the 401; the contact is this SIPp's own address.
const REGISTER_EXAMPLE_COM: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="register_example_com">
  <send retrans="500">
    <![CDATA[

      REGISTER sip:example.com SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[field0]@example.com>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field0]@example.com>
      Call-ID: [call_id]
      CSeq: 1 REGISTER
      Contact: <sip:[field0]@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Expires: 3600
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="401" auth="true"/>
  <send retrans="500">
    <![CDATA[

      REGISTER sip:example.com SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:[field0]@example.com>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[field0]@example.com>
      Call-ID: [call_id]
      CSeq: 2 REGISTER
      Contact: <sip:[field0]@[local_ip]:[local_port];transport=[transport]>
      [field2]
      Max-Forwards: 70
      Expires: 3600
      Content-Length: 0

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
</scenario>
"#;

/// The INVITE of the UAC scenarios below: From is field0, the Request-URI (and To) field1.
const INVITE_FROM_FIELDS: &str = r#"
      INVITE [field1] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <[field0]>;tag=[pid]SIPpTag00[call_number]
      To: <[field1]>
      Call-ID: [call_id]
      CSeq: @CSEQ@ INVITE
      Contact: <sip:caller@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      @AUTH@
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=caller 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
"#;

/// The rest of a call once the INVITE is out: 180, 200 (route set learned), ACK and BYE
/// along it, 200 to the BYE.
const CALL_TAIL: &str = r#"
  <recv response="100" optional="true"/>
  <recv response="180"/>
  <recv response="200" rrs="true"/>
  <send>
    <![CDATA[

      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      [routes]
      From: <[field0]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: @CSEQ@ ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <send retrans="500">
    <![CDATA[

      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      [routes]
      From: <[field0]>;tag=[pid]SIPpTag00[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: @NEXT@ BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" crlf="true"/>
"#;

const SCENARIO_HEAD: &str = "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n\
                             <!DOCTYPE scenario SYSTEM \"sipp.dtd\">\n<scenario name=\"uac\">\n";

fn invite(cseq: u32, auth: &str) -> String {
    format!(
        "  <send retrans=\"500\">\n    <![CDATA[\n{}\n    ]]>\n  </send>\n",
        INVITE_FROM_FIELDS
            .replace("@CSEQ@", &cseq.to_string())
            .replace("      @AUTH@\n", auth)
    )
}

/// A UAC scenario: INVITE (field0 calls field1), then a whole call.
fn uac_call() -> String {
    format!(
        "{SCENARIO_HEAD}{}{}</scenario>\n",
        invite(1, ""),
        CALL_TAIL.replace("@CSEQ@", "1").replace("@NEXT@", "2")
    )
}

/// A UAC scenario: INVITE (field0 calls field1) answered with `code`, then the ACK.
fn uac_final(code: u16) -> String {
    format!(
        "{SCENARIO_HEAD}{}  <recv response=\"100\" optional=\"true\"/>\n  \
         <recv response=\"{code}\"/>\n{}</scenario>\n",
        invite(1, ""),
        ack_non_2xx()
    )
}

/// The hop-by-hop ACK of a non-2xx answer to the INVITE three messages back.
fn ack_non_2xx() -> String {
    "  <send>\n    <![CDATA[\n\n      ACK [field1] SIP/2.0\n      \
     Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3];rport\n      \
     From: <[field0]>;tag=[pid]SIPpTag00[call_number]\n      [last_To:]\n      \
     Call-ID: [call_id]\n      CSeq: 1 ACK\n      Max-Forwards: 70\n      \
     Content-Length: 0\n\n    ]]>\n  </send>\n"
        .to_owned()
}

/// A UAC scenario: INVITE (field0 calls field1) → 407 → ACK → INVITE with alice's
/// Proxy-Authorization → a whole call.
fn uac_proxy_auth_call() -> String {
    format!(
        "{SCENARIO_HEAD}{}  <recv response=\"100\" optional=\"true\"/>\n  \
         <recv response=\"407\" auth=\"true\"/>\n{}{}{}</scenario>\n",
        invite(1, ""),
        ack_non_2xx(),
        invite(
            2,
            "      [authentication username=alice password=alice-secret]\n"
        ),
        CALL_TAIL.replace("@CSEQ@", "2").replace("@NEXT@", "3")
    )
}

/// deploy/examples/registrar_proxy.py with deploy/examples/registrar_proxy.yaml (local domain
/// example.com, realm example.com, users alice and bob) against test_registrar_proxy.py; the
/// outbound proxy (`script_config.outbound_proxy`) is a SIPp UAS here.
#[test]
fn registrar_proxy_example() {
    let outbound = free_port();
    let config = example("registrar_proxy.yaml")
        .replace("${SIPHON_LISTEN_UDP:-127.0.0.1:5060}", "127.0.0.1:{sip}")
        .replace("${SIPHON_LISTEN_TCP:-127.0.0.1:5060}", "127.0.0.1:{sip}")
        .replace(
            "${SIPHON_OUTBOUND_PROXY:-sip:outbound.example.net}",
            &format!("sip:127.0.0.1:{outbound}"),
        );
    assert!(
        config.contains("127.0.0.1:{sip}") && config.contains(&format!(":{outbound}")),
        "listen address and outbound proxy moved"
    );
    let node = Node::start(
        "sdk-example-registrar-proxy",
        &config,
        &[("registrar_proxy.py", &example("registrar_proxy.py"))],
    );
    let dir = node.dir.clone();
    stock(&dir, &["uas_answer.xml"]);
    for (f, text) in [
        ("register.xml", REGISTER_EXAMPLE_COM.to_owned()),
        ("call.xml", uac_call()),
        ("call_480.xml", uac_final(480)),
        ("call_403.xml", uac_final(403)),
        ("call_out.xml", uac_proxy_auth_call()),
    ] {
        std::fs::write(dir.join(f), text).expect("scenario");
    }
    let (pa, pb, pc) = (free_port(), free_port(), free_port());

    // test_call_to_registered_user_forks: bob's contact (registered here, seeded there) gets
    // the INVITE of a caller from another domain, record-routed; the call completes.
    register(&node, "register.xml", pb, "bob", "bob-secret");
    let mut bob = uas(&dir, pb, "uas_bob.log");
    let (carol, bob_aor) = ("sip:carol@elsewhere.net", "sip:bob@example.com");
    sipp_with(&node, "call.xml", pc, "carol_bob", &[carol, bob_aor]);
    assert!(bob.finished_ok(20), "bob's UAS did not complete its call");
    let invite = uas_invite(&node, "uas_bob.log");
    let ruri = format!("INVITE sip:bob@127.0.0.1:{pb};transport=UDP SIP/2.0");
    assert!(invite.starts_with(&ruri), "not forked to bob:\n{invite}");
    let rr = format!("Record-Route: <sip:{}", node.sip);
    assert!(invite.contains(&rr), "not record-routed:\n{invite}");

    // test_call_to_unregistered_local_user_is_480.
    let dave = "sip:dave@example.com";
    sipp_with(
        &node,
        "call_480.xml",
        pc,
        "dave",
        &["sip:tester@example.com", dave],
    );

    // test_foreign_caller_cannot_relay: 403 Relaying Denied.
    let (eve, x) = ("sip:eve@evil.example", "sip:x@elsewhere.net");
    let trace = sipp_with(&node, "call_403.xml", pc, "eve", &[eve, x]);
    let denied = traced(&trace, "SIP/2.0 403 Relaying Denied");
    assert!(denied.is_some(), "{trace}");

    // test_local_caller_is_challenged_then_relayed_outbound: 407, then with alice's
    // Proxy-Authorization the INVITE is relayed, Request-URI unchanged, to the outbound proxy
    // (record-routed, so ACK and BYE follow), and the script logs who called out.
    let mut out = uas(&dir, outbound, "uas_outbound.log");
    let alice_aor = "sip:alice@example.com";
    let trace = sipp_with(&node, "call_out.xml", pc, "alice_out", &[alice_aor, x]);
    assert!(traced(&trace, "SIP/2.0 407").is_some(), "{trace}");
    assert!(
        out.finished_ok(20),
        "the outbound proxy's UAS did not complete"
    );
    let invite = uas_invite(&node, "uas_outbound.log");
    let ruri = "INVITE sip:x@elsewhere.net SIP/2.0";
    assert!(invite.starts_with(ruri), "not relayed as is:\n{invite}");
    let log = node.log();
    assert!(
        log.contains("alice calls out to sip:x@elsewhere.net"),
        "{log}"
    );

    // test_register_then_call_in: alice registers (401, then 200), then bob's call reaches
    // her contact.
    let trace = register(&node, "register.xml", pa, "alice", "alice-secret");
    assert!(traced(&trace, "SIP/2.0 401").is_some(), "{trace}");
    let mut alice = uas(&dir, pa, "uas_alice.log");
    sipp_with(&node, "call.xml", pc, "bob_alice", &[bob_aor, alice_aor]);
    assert!(
        alice.finished_ok(20),
        "alice's UAS did not complete its call"
    );
    let invite = uas_invite(&node, "uas_alice.log");
    let ruri = format!("INVITE sip:alice@127.0.0.1:{pa};transport=UDP SIP/2.0");
    assert!(invite.starts_with(&ruri), "not forked to alice:\n{invite}");
}

/// deploy/examples/smpp_gateway.{py,yaml} against test_smpp_gateway.py: PyPI smpplib is the
/// ESME, our SMSC simulator (bench/smpp) answers the `up` and `uk` binds.
#[cfg(feature = "smpp")]
mod smpp_gateway {
    use std::net::SocketAddr;

    use super::common::python_done;
    use super::common::smpp::smsc;
    use super::{Node, example, free_port};

    /// smpplib as the ESME. argv: port, mode. One line per outcome, then DONE.
    const ESME: &str = r#"
import sys

import smpplib.client
import smpplib.exceptions
import smpplib.smpp

port, mode = int(sys.argv[1]), sys.argv[2]


def bind(system_id, password):
    c = smpplib.client.Client("127.0.0.1", port, allow_unknown_opt_params=True, timeout=10)
    c.connect()
    try:
        c.bind_transceiver(system_id=system_id, password=password)
    except smpplib.exceptions.PDUError as e:
        c.disconnect()
        return None, e.args[1]
    return c, 0


def submit(c, dest):
    c.send_pdu(smpplib.smpp.make_pdu("submit_sm", client=c, source_addr="15550100",
                                     destination_addr=dest, short_message=b"hi"))
    r = c.read_pdu()
    mid = r.message_id.decode() if isinstance(r.message_id, bytes) else (r.message_id or "")
    print("submit", dest, r.status, mid)


if mode == "gateway":
    for sid, pw in (("shop", "nope"), ("mallory", "x")):
        print("bind", sid, bind(sid, pw)[1])
c, status = bind("shop", "shop-pw")
print("bind shop", status)
if mode == "gateway":
    for dest in ("19005550100", "447700900123", "15550101"):
        submit(c, dest)
else:
    submit(c, "15550101")
c.unbind()
c.disconnect()
print("DONE")
"#;

    /// The gateway example with its binds towards `up_port` and `uk_port`; waits for the
    /// ESME listener and `binds` bound binds. Returns the node and the listener's port.
    fn gateway(name: &str, up_port: u16, uk_port: u16, binds: usize) -> (Node, u16) {
        let port = free_port();
        let yaml = example("smpp_gateway.yaml")
            .replace("bind_address: 0.0.0.0", "bind_address: 127.0.0.1")
            .replace("${SMPP_PORT:-2775}", &port.to_string())
            .replace("${SMSC_PORT:-2776}", &up_port.to_string())
            .replace("${SMSC_UK_PORT:-2777}", &uk_port.to_string());
        let config = "listen:\n  udp: [\"127.0.0.1:{sip}\"]\nscript:\n  path: smpp_gateway.py\n\
             extensions:\n  smpp: smpp_gateway.yaml\ntuning:\n  reactor_cpus: [0, 1]\n";
        let node = Node::start(
            name,
            config,
            &[
                ("smpp_gateway.py", &example("smpp_gateway.py")),
                ("smpp_gateway.yaml", &yaml),
            ],
        );
        node.wait_tcp(SocketAddr::from(([127, 0, 0, 1], port)));
        node.wait_log("SMPP bind: bound", binds, 15);
        (node, port)
    }

    /// Run the smpplib ESME in `mode`; its output.
    fn esme(node: &Node, port: u16, mode: &str) -> String {
        let path = node.path("esme.py");
        std::fs::write(&path, ESME).expect("esme.py");
        python_done(node, &path, &[&port.to_string(), mode])
    }

    /// The `submit DEST STATUS ID` line for `dest`: (status, message_id).
    fn submitted(out: &str, dest: &str) -> (u32, String) {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("submit {dest} ")))
            .unwrap_or_else(|| panic!("no submit to {dest}:\n{out}"));
        let mut f = line.split(' ').skip(2);
        let status = f.next().and_then(|s| s.parse().ok()).unwrap_or(u32::MAX);
        (status, f.next().unwrap_or_default().to_owned())
    }

    #[test]
    fn smpp_gateway_example() {
        let (up_port, uk_port) = (free_port(), free_port());
        let up = smsc(up_port, |_| {});
        let uk = smsc(uk_port, |_| {});
        let (node, port) = gateway("sdk-example-smpp-gateway", up_port, uk_port, 2);
        let out = esme(&node, port, "gateway");
        // test_known_esme_binds.
        assert!(out.contains("bind shop 0\n"), "{out}");
        // test_wrong_password_is_refused: ESME_RINVPASWD (0x0E).
        assert!(out.contains("bind shop 14\n"), "{out}");
        // test_unknown_esme_is_refused.
        assert!(
            out.lines()
                .any(|l| l.starts_with("bind mallory ") && l != "bind mallory 0"),
            "{out}"
        );
        // test_premium_destination_is_refused: ESME_RINVDSTADR (0x0B), nothing goes out.
        assert_eq!(submitted(&out, "19005550100").0, 0x0B, "{out}");
        // test_submit_is_routed_by_destination_prefix: 4477… through `uk`, the rest through
        // `up`; the ESME gets the upstream SMSC's message_id.
        let (status, uk_id) = submitted(&out, "447700900123");
        assert_eq!(status, 0, "{out}\n{}", node.log());
        let (status, up_id) = submitted(&out, "15550101");
        assert_eq!(status, 0, "{out}\n{}", node.log());
        let (uk_got, up_got) = (uk.received(), up.received());
        let uk_dests: Vec<(&str, &str)> = uk_got
            .iter()
            .filter(|g| g.command == "submit_sm")
            .map(|g| (g.dest.as_str(), g.message_id.as_str()))
            .collect();
        let up_dests: Vec<(&str, &str)> = up_got
            .iter()
            .filter(|g| g.command == "submit_sm")
            .map(|g| (g.dest.as_str(), g.message_id.as_str()))
            .collect();
        assert_eq!(uk_dests, [("447700900123", uk_id.as_str())]);
        assert_eq!(up_dests, [("15550101", up_id.as_str())]);
    }

    /// test_upstream_refusal_is_passed_back: the `up` SMSC throttles every submit; the ESME
    /// gets ESME_RTHROTTLED (0x58).
    #[test]
    fn smpp_gateway_example_passes_an_upstream_refusal_back() {
        let (up_port, uk_port) = (free_port(), free_port());
        let _up = smsc(up_port, |c| c.throttle_rate = 1.0);
        let (node, port) = gateway("sdk-example-smpp-throttled", up_port, uk_port, 1);
        let out = esme(&node, port, "throttled");
        assert!(out.contains("bind shop 0\n"), "{out}");
        assert_eq!(submitted(&out, "15550101").0, 0x58, "{out}\n{}", node.log());
    }
}

/// deploy/examples/http_screening.{py,yaml} and http.yaml against test_http_screening.py:
/// curl asks the node's HTTP listener; the reputation API is a server this test runs.
#[cfg(feature = "http")]
mod http_screening {
    use std::io::{BufReader, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};

    use super::common::{curl, read_request};
    use super::{Node, example, free_port};

    /// The reputation API: `/v1/score/15550100` scores 95, `/v1/score/15550101` 10, and
    /// `/v1/score/15550102` closes the connection unanswered (the API is down). Keeps the
    /// paths it was asked for.
    fn reputation() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind reputation API");
        let addr = l.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = Arc::clone(&seen);
        std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                let seen = Arc::clone(&s2);
                std::thread::spawn(move || serve(s, &seen));
            }
        });
        (addr, seen)
    }

    fn serve(s: TcpStream, seen: &Mutex<Vec<String>>) {
        let Ok(mut w) = s.try_clone() else { return };
        let mut r = BufReader::new(s);
        while let Some((path, _)) = read_request(&mut r) {
            if let Ok(mut g) = seen.lock() {
                g.push(path.clone());
            }
            let score = match path.as_str() {
                "/v1/score/15550100" => "95",
                "/v1/score/15550101" => "10",
                _ => return, // down: no answer, the connection closes
            };
            let b = format!("{{\"score\": {score}}}");
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            );
            if w.write_all(resp.as_bytes()).is_err() {
                return;
            }
        }
    }

    fn json(body: &str) -> serde_json::Value {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body:?}"))
    }

    #[test]
    fn http_screening_example() {
        let (api, seen) = reputation();
        let port = free_port();
        let http = example("http.yaml")
            .replace(
                "${HTTP_LISTEN:-127.0.0.1:8080}",
                &format!("127.0.0.1:{port}"),
            )
            .replace(
                "${REPUTATION_URL:-http://127.0.0.1:8081}",
                &format!("http://{api}"),
            );
        let config = example("http_screening.yaml")
            .replace("${SIPHON_LISTEN_UDP:-127.0.0.1:5060}", "127.0.0.1:{sip}");
        assert!(
            config.contains("{sip}") && http.contains(&format!(":{port}")),
            "addresses moved"
        );
        let node = Node::start(
            "sdk-example-http-screening",
            &config,
            &[
                ("http_screening.py", &example("http_screening.py")),
                ("http.yaml", &http),
            ],
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        node.wait_tcp(addr);
        let url = |n: &str| format!("http://{addr}/screen/{n}");
        let asked = || seen.lock().map(|g| g.clone()).unwrap_or_default();

        // test_premium_prefix_is_blocked_without_a_lookup.
        let (code, _, body) = curl(&[&url("19005550100")]);
        assert_eq!(code, 403, "{body}\n{}", node.log());
        assert_eq!(
            json(&body),
            serde_json::json!({"verdict": "block", "reason": "premium"})
        );
        assert!(asked().is_empty(), "{:?}", asked());

        // test_bad_reputation_is_blocked: asked through the `reputation` client.
        let (code, _, body) = curl(&[&url("15550100")]);
        assert_eq!(
            (code, json(&body)["reason"].as_str()),
            (403, Some("reputation")),
            "{body}\n{}",
            node.log()
        );
        assert_eq!(asked(), ["/v1/score/15550100"]);

        // test_good_reputation_is_allowed.
        let (code, head, body) = curl(&[&url("15550101")]);
        assert_eq!(
            (code, json(&body)),
            (200, serde_json::json!({"verdict": "allow"})),
            "{}",
            node.log()
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json\r\n"),
            "{head}"
        );

        // test_reputation_api_down_fails_open: the lookup fails, the call is allowed, and the
        // script logs a warning.
        let (code, _, body) = curl(&[&url("15550102")]);
        assert_eq!(code, 200, "{body}\n{}", node.log());
        assert!(asked().contains(&"/v1/score/15550102".to_owned()));
        node.wait_log("reputation lookup for 15550102 failed", 1, 5);

        // test_only_get_is_routed.
        assert_eq!(curl(&["-X", "POST", &url("15550100")]).0, 405);
    }
}
