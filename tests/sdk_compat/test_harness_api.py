"""Upstream's ``SipTestHarness`` members, each used exactly as upstream documents it (its
sdk/README.md and the docstrings of sdk/siphon_sdk/testing.py, mock_module.py, request.py,
reply.py and types.py), run here against the real engine."""

import asyncio
import hashlib
import os

import pytest

from siphon_sdk.request import Request
from siphon_sdk.testing import NotSupported, ReplyResult, RequestResult, SipTestHarness
from siphon_sdk.types import Action, Contact, SipUri

# README "What is SIPhon?": the script upstream's README tests.
README_SCRIPT = '''
from siphon import proxy, registrar, auth, log

@proxy.on_request
def route(request):
    if request.method == "REGISTER":
        if not auth.require_digest(request, realm="example.com"):
            return
        registrar.save(request)
        return

    contacts = registrar.lookup(request.ruri)
    if not contacts:
        request.reply(404, "Not Found")
        return

    request.record_route()
    request.fork([c.uri for c in contacts])
'''

# README "Inline scripts".
INLINE = """
from siphon import proxy

@proxy.on_request
def route(request):
    if request.source_ip_in(["10.0.0.0/8"]):
        request.relay()
    else:
        request.reply(403, "Forbidden")
"""


@pytest.fixture
def harness():
    # As upstream's own tests build it.
    h = SipTestHarness(local_domains=["example.com"])
    yield h
    h.reset()
    h.close()


@pytest.fixture
def script_file(tmp_path):
    path = tmp_path / "proxy.py"
    path.write_text(README_SCRIPT)
    return str(path)


def test_constructor_local_domains(harness):
    harness.load_source("""
from siphon import proxy

@proxy.on_request
def route(request):
    request.reply(200, "local" if request.ruri.is_local else "foreign")
""")
    assert harness.send_request("OPTIONS", "sip:bob@example.com").reason == "local"
    assert harness.send_request("OPTIONS", "sip:bob@elsewhere.net").reason == "foreign"


def test_load_script(harness, script_file):
    # README "Quick start".
    harness.load_script(script_file)
    result = harness.send_request("REGISTER", "sip:alice@example.com",
                                  from_uri="sip:alice@example.com")
    assert result.status_code == 401  # digest challenge


def test_load_script_missing_file_raises(harness, tmp_path):
    with pytest.raises(FileNotFoundError):
        harness.load_script(str(tmp_path / "nope.py"))


def test_load_source(harness):
    # README "Inline scripts".
    harness.load_source(INLINE)
    result = harness.send_request("INVITE", "sip:bob@host", source_ip="10.1.2.3")
    assert result.was_relayed
    result = harness.send_request("INVITE", "sip:bob@host", source_ip="8.8.8.8")
    assert result.status_code == 403


def test_send_request_keywords(harness):
    harness.load_source("""
from siphon import proxy

@proxy.on_request
def route(request):
    request.set_reply_header("X-Seen", "|".join(str(x) for x in (
        request.method, request.ruri, request.from_uri, request.to_uri, request.call_id,
        request.cseq[0], request.max_forwards, request.user_agent, request.event,
        request.transport, request.source_ip, request.auth_user,
        request.get_header("X-Extra"), request.body)))
    request.reply(200, "OK")
""")
    result = harness.send_request(
        "SUBSCRIBE", "sip:bob@example.com", from_uri="sip:alice@example.com",
        to_uri="sip:bob@example.com", call_id="c-1@test", cseq=(7, "SUBSCRIBE"),
        max_forwards=9, body=b"hello", content_type="text/plain", transport="tcp",
        source_ip="192.0.2.7", user_agent="ua/1", auth_user="alice", event="presence",
        headers={"X-Extra": "x"})
    assert result.status_code == 200
    assert result.actions[-1].headers_set["X-Seen"] == (
        "SUBSCRIBE|sip:bob@example.com|sip:alice@example.com|sip:bob@example.com|c-1@test|7|9|"
        "ua/1|presence|tcp|192.0.2.7|alice|x|b'hello'")


def test_send_request_register_to_defaults_to_from(harness):
    harness.load_source("""
from siphon import proxy

@proxy.on_request
def route(request):
    request.reply(200, str(request.to_uri))
""")
    r = harness.send_request("REGISTER", "sip:example.com", from_uri="sip:carol@example.com",
                             contact_expires=600)
    assert r.reason == "sip:carol@example.com"
    assert r.request.contact_expires == 600


def test_send_reply(harness):
    # upstream tests/test_reply_filter.py: send_reply(Request(method=...), 200, "OK").
    harness.load_source("""
from siphon import proxy

@proxy.on_reply("INVITE|UPDATE")
def invite_or_update_reply(request, reply):
    reply.set_header("X-Invite-Or-Update", "yes")
    reply.relay()
""")
    result = harness.send_reply(Request(method="INVITE"), 200, "OK")
    assert isinstance(result, ReplyResult)
    assert result.was_relayed
    assert result.reply.has_header("X-Invite-Or-Update")
    result = harness.send_reply(Request(method="OPTIONS"), 200, "OK")
    assert not result.reply.has_header("X-Invite-Or-Update")


def test_send_cancel(harness):
    # upstream tests/test_on_cancel.py, verbatim.
    harness.load_source(
        """
from siphon import proxy

@proxy.on_cancel
def on_cancel(request):
    request.set_header("X-Cancelled", request.call_id)
"""
    )
    result = harness.send_cancel(call_id="abc123@example.com")
    assert result.request.get_header("X-Cancelled") == "abc123@example.com"


def test_send_request_cancel_and_max_forwards_are_the_nodes(harness):
    # testing.py: "simulate Rust dispatcher pre-checks".
    harness.load_source(INLINE)
    assert harness.send_request("INVITE", max_forwards=0).status_code == 483
    assert harness.send_request("CANCEL").was_relayed


def test_reset(harness):
    harness.load_source(INLINE)
    harness.registrar.add_contact("sip:alice@example.com", Contact(uri="sip:alice@192.0.2.5"))
    harness.reset()
    assert harness.log.messages == []
    assert harness.registrar.lookup("sip:alice@example.com") == []


def test_close_and_context_manager(script_file):
    with SipTestHarness() as harness:
        harness.load_script(script_file)
        assert harness.send_request("INVITE", "sip:nobody@example.com").status_code == 404
    harness.close()  # idempotent after __exit__


def test_registrar_add_contact(harness, script_file):
    # README "Quick start".
    harness.load_script(script_file)
    harness.registrar.add_contact(
        "sip:alice@example.com",
        Contact(uri="sip:alice@192.168.1.5:5060"),
    )
    result = harness.send_request("INVITE", "sip:alice@example.com")
    assert result.action == "fork"
    assert "sip:alice@192.168.1.5:5060" in result.targets


def test_registrar_add_contact_before_load(harness, script_file):
    harness.registrar.add_contact("sip:alice@example.com",
                                  Contact(uri="sip:alice@192.0.2.9:5070", q=0.5))
    harness.load_script(script_file)
    [c] = harness.registrar.lookup("sip:alice@example.com")
    assert (c.uri, c.q) == ("sip:alice@192.0.2.9:5070", 0.5)
    assert harness.registrar.is_registered("sip:alice@example.com")


def test_registrar_clear(harness, script_file):
    harness.load_script(script_file)
    harness.registrar.add_contact("sip:alice@example.com", Contact(uri="sip:alice@192.0.2.5"))
    harness.registrar.clear()
    assert harness.send_request("INVITE", "sip:alice@example.com").status_code == 404


def test_auth_add_user(harness, script_file):
    # mock_module.MockAuth.add_user(realm, username, password); the engine checks for real.
    harness.load_script(script_file)
    harness.auth.add_user("example.com", "alice", "s3cret")
    challenge = harness.send_request("REGISTER", "sip:example.com", from_uri="sip:alice@example.com",
                                     call_id="reg-1@test", cseq=(1, "REGISTER"))
    assert challenge.status_code == 401
    www = challenge.actions[-1].headers_set["WWW-Authenticate"]
    nonce = www.split('nonce="', 1)[1].split('"', 1)[0]
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    ha1 = md5("alice:example.com:s3cret")
    # Over UDP (the harness's default transport) one challenge: MD5, named or by default
    # (README "Where we differ": auth.udp_challenge).
    assert ("algorithm=MD5" in www or "algorithm" not in www) and 'qop="auth"' in www
    response = md5(f"{ha1}:{nonce}:00000001:c0ffee:auth:{md5('REGISTER:sip:example.com')}")
    creds = (f'Digest username="alice", realm="example.com", nonce="{nonce}", '
             f'uri="sip:example.com", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee", '
             f'response="{response}"')
    ok = harness.send_request("REGISTER", "sip:example.com", from_uri="sip:alice@example.com",
                              call_id="reg-1@test", cseq=(2, "REGISTER"),
                              headers={"Authorization": creds,
                                       "Contact": "<sip:alice@192.0.2.10:5060>"})
    assert ok.status_code == 200
    assert ok.request.auth_user == "alice"
    assert harness.registrar.lookup("sip:alice@example.com")[0].uri == "sip:alice@192.0.2.10:5060"


def test_auth_allow_switch_is_refused(harness):
    with pytest.raises(NotSupported, match="auth._allow"):
        harness.auth._allow = True


def test_log_messages(harness):
    harness.load_source("""
from siphon import proxy, log

@proxy.on_request
def route(request):
    log.info("hello")
    log.error("boom")
    request.reply(200, "OK")
""")
    harness.send_request("OPTIONS")
    # README "Controlling mock behavior" and MockLog's docstring.
    assert ("info", "hello") in harness.log.messages
    assert any("error" in msg for level, msg in harness.log.messages) or \
        any(level == "error" for level, msg in harness.log.messages)
    harness.log.clear()
    assert harness.log.messages == []


def test_cache_set_data(harness):
    # MockCache's docstring: set_data, then the script's await cache.fetch finds it.
    harness.cache.set_data("cnam", {"msisdn_display:1234": "Sales"})
    harness.load_source("""
from siphon import proxy, cache

@proxy.on_request
async def route(request):
    name = await cache.fetch("cnam", "msisdn_display:" + request.from_uri.user)
    request.reply(200, f"{name} {cache.has_cache('cnam')}")
""")
    r = harness.send_request("INVITE", from_uri="sip:1234@example.com")
    assert r.reason == "Sales True"
    assert asyncio.run(harness.cache.fetch("cnam", "msisdn_display:1234")) == "Sales"
    harness.cache.clear()
    assert harness.send_request("INVITE", from_uri="sip:1234@example.com").reason == "None False"


def test_proxy_sent_requests_and_set_response_for(harness):
    harness.proxy.set_response_for("OPTIONS", "sip:peer@192.0.2.20", 200)
    harness.load_source("""
from siphon import proxy

@proxy.on_request
async def route(request):
    reply = await proxy.send_request("OPTIONS", "sip:peer@192.0.2.20",
                                     headers={"X-Probe": "1"}, wait_for_response=True)
    request.reply(200, f"peer {reply.status_code if reply else None}")
""")
    assert harness.send_request("MESSAGE").reason == "peer 200"
    [sent] = harness.proxy.sent_requests
    assert (sent["method"], sent["ruri"], sent["headers"]["X-Probe"]) == (
        "OPTIONS", "sip:peer@192.0.2.20", "1")
    assert sent["wait_for_response"] is True


def test_request_result_properties(harness):
    harness.load_source("""
from siphon import proxy

@proxy.on_request
def route(request):
    if request.method == "INVITE":
        request.record_route()
        request.fork(["sip:a@192.0.2.1", "sip:b@192.0.2.2"], "sequential")
    elif request.method == "MESSAGE":
        request.relay("sip:proxy2.example.net")
    elif request.method == "OPTIONS":
        request.reply(200, "OK")
""")
    fork = harness.send_request("INVITE")
    assert isinstance(fork, RequestResult) and isinstance(fork.request, Request)
    assert (fork.action, fork.targets, fork.strategy) == (
        "fork", ["sip:a@192.0.2.1", "sip:b@192.0.2.2"], "sequential")
    assert fork.was_forked and fork.record_routed and not fork.was_relayed
    assert all(isinstance(a, Action) for a in fork.actions)
    relay = harness.send_request("MESSAGE")
    assert relay.was_relayed and relay.next_hop == "sip:proxy2.example.net"
    reply = harness.send_request("OPTIONS")
    assert (reply.action, reply.status_code, reply.reason) == ("reply", 200, "OK")
    drop = harness.send_request("SUBSCRIBE")
    assert drop.was_dropped and drop.action == "silent_drop" and drop.status_code is None
    assert isinstance(fork.request.ruri, SipUri) and fork.request.ruri.user == "bob"


def test_reply_result_properties(harness):
    harness.load_source("""
from siphon import proxy

@proxy.on_reply
def reply(request, reply):
    if reply.status_code == 183:
        reply.reject(488, "Not Acceptable Here")
    elif reply.status_code == 180:
        reply.relay()
""")
    relayed = harness.send_reply(Request(method="INVITE"), 180, "Ringing")
    assert (relayed.action, relayed.was_relayed) == ("relay", True)
    assert relayed.reply.status_code == 180 and relayed.reply.reason == "Ringing"
    rejected = harness.send_reply(Request(method="INVITE"), 183, "Session Progress")
    assert rejected.action == "reject" and not rejected.was_relayed
    assert harness.send_reply(Request(method="INVITE"), 200, "OK").action == "silent_drop"


@pytest.mark.parametrize("member", ["rtpengine", "b2bua", "gateway", "diameter", "li", "hss",
                                    "pcrf", "send_invite", "send_bye"])
def test_members_needing_missing_namespaces_raise(harness, member):
    with pytest.raises(NotSupported, match=member):
        getattr(harness, member)


def test_script_importing_a_missing_namespace_fails_to_load(harness):
    with pytest.raises(ImportError, match="rtpengine"):
        harness.load_source("from siphon import proxy, rtpengine\n")
