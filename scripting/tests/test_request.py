"""Request / Reply / SipUri / Contact (siphon-core-api.md 1.14-1.17)."""

SCRIPT = '''
from siphon import proxy, SipUri

@proxy.on_request("INVITE")
def inv(request):
    u = request.ruri
    f = request.from_uri
    parts = [request.method, u.scheme, u.user, u.host, str(u.port), str(u.is_local),
             f.user, request.from_tag, str(request.to_tag), request.call_id,
             str(request.cseq), str(request.in_dialog), str(request.max_forwards),
             request.transport, request.source_ip, str(request.source_port),
             str(request.user_agent), str(request.body), str(request.content_type),
             str(request.has_body("application/sdp"))]
    request.set_reply_header("X-Info", "|".join(parts))
    request.add_reply_header("X-Two", "1")
    request.add_reply_header("X-Two", "2")
    request.set_reply_body("hello", "text/plain")
    request.reply(403, "Forbidden")

@proxy.on_request("MESSAGE")
def edit(request):
    request.set_header("X-New", "v")
    request.remove_header("Subject")
    request.remove_headers_matching("X-Drop-")
    request.set_ruri_user("carol")
    request.set_ruri_host("example.net")
    request.ruri.port = 5080
    request.record_route()
    request.relay("sip:proxy2.example.net;lr")

@proxy.on_request("OPTIONS")
def fork(request):
    request.fork(["sip:a@example.com", SipUri("sip:b@example.com:5070;transport=tcp")])

@proxy.on_request("INFO")
def uri(request):
    u = SipUri("sips:alice;npdi@[2001:db8::1]:5061;transport=tls;lr")
    t = SipUri("tel:+15551234")
    request.reply(200, f"{u.scheme} {u.user} {u.host} {u.port} {u.params} {t.is_tel} {t}")
'''


def test_getters(harness):
    h = harness(SCRIPT)
    r = h.send_request("INVITE", ruri="sip:bob@example.com:5062", from_uri="sip:alice@atlanta.com",
                       from_tag="ft", call_id="cid-1", cseq=7, max_forwards=69, user_agent="UA/1",
                       body="v=0\r\n", content_type="application/sdp", transport="tcp",
                       source_ip="192.0.2.9", source_port=5070)
    assert r.status_code == 403
    info = r.header("X-Info").split("|")
    assert info == ["INVITE", "sip", "bob", "example.com", "5062", "True", "alice", "ft", "None", "cid-1",
                    "(7, 'INVITE')", "False", "69", "tcp", "192.0.2.9", "5070", "UA/1", "b'v=0\\r\\n'",
                    "application/sdp", "True"]
    assert [v for n, v in r.headers if n == "X-Two"] == ["1", "2"]
    assert r.body == ["text/plain", "hello"]


def test_header_and_ruri_edits_reported(harness):
    h = harness(SCRIPT)
    r = h.send_request("MESSAGE", headers={"Subject": "s", "X-Drop-A": "1", "X-Drop-B": "2", "X-Keep": "k"})
    assert r.was_relayed and r.next_hop == "sip:proxy2.example.net;lr" and r.record_routed
    first = r.request_text.split("\r\n")[0]
    assert first == "MESSAGE sip:carol@example.net:5080 SIP/2.0"
    assert "X-New: v" in r.request_text and "X-Keep: k" in r.request_text
    assert "Subject" not in r.request_text and "X-Drop-" not in r.request_text


def test_fork_targets(harness):
    h = harness(SCRIPT)
    r = h.send_request("OPTIONS")
    assert r.was_forked and r.strategy == "parallel"
    assert r.targets == ["sip:a@example.com", "sip:b@example.com:5070;transport=tcp"]
    assert r.raw["request"] is None  # untouched message is not copied back


def test_sip_uri(harness):
    h = harness(SCRIPT)
    r = h.send_request("INFO")
    assert r.reason == "sips alice;npdi [2001:db8::1] 5061 {'transport': 'tls', 'lr': None} True tel:+15551234"


REPLY_VIEW = '''
from siphon import proxy

@proxy.on_request
def r(request):
    request.relay()

@proxy.on_reply
def on_reply(request, reply):
    reply.set_header("X-Seen", f"{reply.status_code} {reply.reason} {reply.get_header('X-Up')} "
                               f"{reply.has_header('X-Nope')} {request.method} {reply.call_id == request.call_id}")
    reply.remove_header("X-Up")
    reply.relay()
'''


def test_reply_view_and_reply_edits(harness):
    h = harness(REPLY_VIEW)
    req = h.send_request("INVITE")
    r = h.send_reply(req, 183, "Session Progress", headers={"X-Up": "u"})
    assert r.action == "relay"
    assert r.raw["reply"].startswith("SIP/2.0 183 Session Progress\r\n")
    assert "X-Seen: 183 Session Progress u False INVITE True" in r.raw["reply"]
    assert "X-Up" not in r.raw["reply"]


def test_load_source_replaces_script(harness):
    h = harness(REPLY_VIEW)
    assert h.send_request("INVITE").was_relayed
    h.load_source("from siphon import proxy\n@proxy.on_request\ndef r(q):\n    q.reply(404)\n")
    r = h.send_request("INVITE")
    assert (r.status_code, r.reason) == (404, "Not Found")


NAT_SCRIPT = '''
from siphon import proxy

@proxy.on_request
def nat(request):
    request.fix_nated_contact()
    request.set_from_display("Alice A")
    request.set_contact_user("alice2")
    request.reply(200, f"{request.client_transport} {request.client_is_secure} {request.source_ip_in(['10.0.0.0/8'])}")
'''


def test_nat_and_identity_helpers(harness):
    h = harness(NAT_SCRIPT)
    r = h.send_request("INVITE", headers={"Contact": "<sip:alice@192.168.1.5:5060>"}, transport="tls",
                       source_ip="10.1.2.3", source_port=40000, from_tag="f1")
    assert r.reason == "tls True True"
    assert "Contact: <sip:alice2@10.1.2.3:40000>" in r.request_text
    assert 'From: "Alice A" <sip:alice@example.com>;tag=f1' in r.request_text
