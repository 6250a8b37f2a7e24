"""The per-interpreter caches behind ``SipUri``, ``Contact``, ``Flow``, ``loose_route`` and the
``to_tag``/``from_tag``/``in_dialog`` reads (issue 16: the Python side of each hooked request)
change no answer: every object built from a cached parse is the script's own to edit, a value
read twice reads the same, and a cache that fills up is emptied and counted."""

SCRIPT = '''
from siphon import Contact, SipUri, proxy, registrar
from siphon import _message

@proxy.on_request("REGISTER")
def reg(request):
    registrar.save(request)

@proxy.on_request("OPTIONS")
def uris(request):
    a = SipUri("sip:bob@example.com:5070;transport=udp;lr")
    b = SipUri("sip:bob@example.com:5070;transport=udp;lr")
    a.params["transport"] = "tcp"
    a.user = "carol"
    c = SipUri(" <SIP:bob@example.com:5070;transport=udp;lr> ")
    request.reply(200, f"{a}|{b}|{c}|{b.params}|{c.scheme}")

@proxy.on_request("INFO")
def contacts(request):
    first = registrar.lookup(request.ruri)
    second = registrar.lookup(request.ruri)
    before = str(first[0])
    first[0].uri.user = "changed"
    first[0].flow.transport = "tls"
    x = Contact("sip:x@example.net;transport=tcp")
    x.uri = "sip:y@example.net"
    request.reply(200, f"{before}|{first[0]}|{second[0]}|{second[0].flow.transport}|{x}|"
                       f"{second[0].uri.port}")

@proxy.on_request("BYE")
def bye(request):
    tags = f"{request.in_dialog}|{request.to_tag}|{request.from_tag}"
    if request.loose_route():
        request.set_header("X-Tags", tags)
        request.relay()
    else:
        request.reply(404, f"not ours|{tags}")

@proxy.on_request("UPDATE")
def written(request):
    # An unchanged SipUri writes the remembered form of its text; every change is written.
    out = [str(request.ruri), str(SipUri(" <SIP:bob@example.com:05070;lr> "))]
    p = SipUri("sip:bob@example.com;transport=udp")
    params = p.params
    out.append(str(p))
    params["transport"] = "tcp"
    out.append(str(p))
    for attr, v in (("scheme", "sips"), ("headers", "subject=x"), ("port", 5071),
                    ("host", "h.example.net"), ("user", "carol")):
        u = SipUri("sip:bob@example.com")
        setattr(u, attr, v)
        out.append(str(u))
    request.set_ruri_user("dave")
    out.append(str(request.ruri))
    request.reply(200, "|".join(out))

@proxy.on_request("MESSAGE")
def fill(request):
    for i in range(3000):
        u = SipUri(f"sip:u{i}@example.com")
        assert u.user == f"u{i}", u
    long = SipUri("sip:" + "x" * 300 + "@example.com")
    assert long.user == "x" * 300 and long.host == "example.com"
    request.reply(200, f"{_message.cache_resets > 0}|{len(_message._uri_cache) <= _message._CACHE_LIMIT}|"
                       f"{str(long) not in _message._uri_cache}")
'''


def test_uris_from_one_text_are_separate_objects(harness):
    h = harness(SCRIPT)
    for core in (0, 1, 0):
        r = h.send_request("OPTIONS", core=core)
        assert r.reason == ("sip:carol@example.com:5070;transport=tcp;lr|"
                            "sip:bob@example.com:5070;transport=udp;lr|"
                            "sip:bob@example.com:5070;transport=udp;lr|"
                            "{'transport': 'udp', 'lr': None}|sip")


def test_contacts_from_one_binding_are_separate_objects(harness):
    h = harness(SCRIPT)
    r = h.send_request("REGISTER", ruri="sip:example.com", from_uri="sip:bob@example.com",
                       source_ip="198.51.100.7", source_port=40001,
                       headers={"Contact": "<sip:bob@10.1.1.1:5062;transport=udp>"})
    assert r.status_code == 200
    for _ in range(2):
        r = h.send_request("INFO", ruri="sip:bob@example.com")
        assert r.reason == ("sip:bob@10.1.1.1:5062;transport=udp|"
                            "sip:changed@10.1.1.1:5062;transport=udp|"
                            "sip:bob@10.1.1.1:5062;transport=udp|udp|sip:y@example.net|5062")


def test_loose_route_and_tags_read_the_same_twice(harness):
    h = harness(SCRIPT)
    for _ in range(2):
        r = h.send_request("BYE", ruri="sip:bob@10.1.1.1:5062", to_tag="tt1", from_tag="ff1",
                           headers=[("Route", "<sip:example.com;lr>, <sip:next.example.net;lr>")])
        assert r.was_relayed
        assert r.request.get_header("X-Tags") == "True|tt1|ff1"
        assert r.request.get_headers("Route") == ["<sip:next.example.net;lr>"]
        r = h.send_request("BYE", ruri="sip:bob@10.1.1.1:5062", to_tag="tt1",
                           headers=[("Route", "<sip:elsewhere.example.net;lr>")])
        assert r.status_code == 404
        assert r.reason.startswith("not ours|True|tt1|")
        r = h.send_request("BYE", ruri="sip:bob@10.1.1.1:5062")
        assert r.reason.startswith("not ours|False|None|")


def test_a_full_cache_is_emptied_and_counted(harness):
    h = harness(SCRIPT)
    r = h.send_request("MESSAGE")
    assert r.reason == "True|True|True"


def test_an_unchanged_uri_writes_its_text_and_a_changed_one_its_parts(harness):
    h = harness(SCRIPT)
    for _ in range(2):
        r = h.send_request("UPDATE", ruri="sip:bob@example.com:5062;transport=udp")
        assert r.reason.split("|") == [
            "sip:bob@example.com:5062;transport=udp", "sip:bob@example.com:5070;lr",
            "sip:bob@example.com;transport=udp", "sip:bob@example.com;transport=tcp",
            "sips:bob@example.com", "sip:bob@example.com?subject=x", "sip:bob@example.com:5071",
            "sip:bob@h.example.net", "sip:carol@example.com",
            "sip:dave@example.com:5062;transport=udp"]
