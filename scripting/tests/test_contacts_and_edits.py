"""Delivery to registered contacts and reply shaping (siphon issue 9, item 5): ``Contact.received``
is a SIP URI, ``fork(contacts)`` carries each binding's Path and flow, ``set_reply_to_tag`` sets
the To tag (no pseudo-header), ``reply(reliable=True)`` reaches the engine, and the registrar's
defaults are SIPhon's (no ``min_expires``, no ``max_contacts``)."""

SCRIPT = '''
from siphon import proxy, registrar

@proxy.on_request("REGISTER")
def reg(request):
    registrar.save(request)

@proxy.on_request("INVITE")
def inv(request):
    contacts = registrar.lookup(request.ruri)
    if request.get_header("X-Mode") == "received":
        request.fork([c.received or c.uri for c in contacts])
    else:
        request.fork(contacts)

@proxy.on_request("OPTIONS")
def show(request):
    c = registrar.lookup(request.ruri)[0]
    request.reply(200, f"{c.received}|{c.path}|{c.flow.transport}|{c.flow.remote_addr}")

@proxy.on_request("MESSAGE")
def tagged(request):
    request.set_reply_to_tag("script-tag")
    request.reply(486, "Busy Here")

@proxy.on_request("INFO")
def early(request):
    request.reply(183, "Session Progress", reliable=True)
    request.set_reply_to_tag("late-tag")

@proxy.on_request("SUBSCRIBE")
def relay_flow(request):
    c = registrar.lookup(request.ruri)[0]
    request.relay(flow=c.flow)
'''


def _register(h, user, source_ip, source_port, transport, headers):
    return h.send_request("REGISTER", ruri="sip:example.com", to_uri=f"sip:{user}@example.com",
                          from_uri=f"sip:{user}@example.com", source_ip=source_ip,
                          source_port=source_port, transport=transport, headers=headers)


def test_received_is_a_sip_uri_with_transport(harness):
    h = harness(SCRIPT)
    r = _register(h, "alice", "198.51.100.7", 40001, "tcp",
                  {"Contact": "<sip:alice@10.1.1.1:5060;transport=tcp>"})
    assert r.status_code == 200
    r = h.send_request("OPTIONS", ruri="sip:alice@example.com", core=1)
    assert r.reason == "sip:198.51.100.7:40001;transport=tcp|[]|tcp|198.51.100.7:40001"
    # The upstream idiom forks to a URI the node can route (it answered 480 with "IP:PORT").
    r = h.send_request("INVITE", ruri="sip:alice@example.com", headers={"X-Mode": "received"})
    assert r.targets == ["sip:198.51.100.7:40001;transport=tcp"]


def test_fork_to_contacts_carries_path_and_flow(harness):
    h = harness(SCRIPT)
    _register(h, "bob", "203.0.113.5", 5060, "udp",
              {"Contact": "<sip:bob@10.2.2.2>", "Supported": "path",
               "Path": ["<sip:edge1.example.net;lr>", "<sip:edge0.example.net;lr>"]})
    r = h.send_request("INVITE", ruri="sip:bob@example.com", core=1)
    assert r.was_forked and r.targets == ["sip:bob@10.2.2.2"]
    d = r.raw["disposition"]
    assert d["routes"] == [["<sip:edge1.example.net;lr>", "<sip:edge0.example.net;lr>"]]
    assert d["flows"] == [["udp", "203.0.113.5:5060"]]
    # A plain URI target carries neither.
    r = h.send_request("INVITE", ruri="sip:bob@example.com", headers={"X-Mode": "received"})
    assert r.raw["disposition"]["routes"] == [[]] and r.raw["disposition"]["flows"] == [None]


def test_relay_over_a_contact_flow(harness):
    h = harness(SCRIPT)
    _register(h, "carol", "203.0.113.9", 5099, "tcp", {"Contact": "<sip:carol@10.3.3.3>"})
    r = h.send_request("SUBSCRIBE", ruri="sip:carol@example.com")
    assert r.was_relayed and r.raw["disposition"]["flow"] == ["tcp", "203.0.113.9:5099"]


def test_set_reply_to_tag_is_typed_not_a_header(harness):
    h = harness(SCRIPT)
    r = h.send_request("MESSAGE")
    assert (r.status_code, r.raw["disposition"]["to_tag"]) == (486, "script-tag")
    assert all(not n.startswith(":") for n, _ in r.headers)
    # After reply() too, and reliable=True reaches the engine.
    r = h.send_request("INFO")
    d = r.raw["disposition"]
    assert (d["status"], d["reliable"], d["to_tag"]) == (183, True, "late-tag")


def test_registrar_defaults_have_no_minimum_and_no_limit(harness):
    h = harness(SCRIPT)
    r = _register(h, "dave", "192.0.2.1", 5060, "udp", {"Contact": "<sip:dave@192.0.2.1>;expires=5"})
    assert r.status_code == 200 and r.header("Min-Expires") is None
    contacts = [f"<sip:dave@192.0.2.{i}>" for i in range(2, 14)]
    r = _register(h, "dave", "192.0.2.1", 5060, "udp", {"Contact": contacts})
    assert r.status_code == 200
    assert len([v for n, v in r.headers if n == "Contact"]) == 13
