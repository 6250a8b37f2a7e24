"""registrar_proxy.py under the SDK's SipTestHarness, the real engine."""

import hashlib
import os

import pytest

from siphon_sdk.testing import SipTestHarness
from siphon_sdk.types import Contact

SCRIPT = os.path.join(os.path.dirname(__file__), "registrar_proxy.py")


@pytest.fixture
def harness():
    h = SipTestHarness(local_domains=["example.com"])
    h.auth.add_user("example.com", "alice", "alice-secret")
    h.load_script(SCRIPT)
    yield h
    h.close()


def creds(challenge, header, user, password, method, uri):
    value = challenge.actions[-1].headers_set[header]
    realm = value.split('realm="', 1)[1].split('"', 1)[0]
    nonce = value.split('nonce="', 1)[1].split('"', 1)[0]
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    resp = md5(f"{md5(f'{user}:{realm}:{password}')}:{nonce}:00000001:abc:auth:{md5(f'{method}:{uri}')}")
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'algorithm=MD5, qop=auth, nc=00000001, cnonce="abc", response="{resp}"')


def test_call_to_registered_user_forks(harness):
    harness.registrar.add_contact("sip:bob@example.com", Contact(uri="sip:bob@192.0.2.20:5064"))
    r = harness.send_request("INVITE", "sip:bob@example.com", from_uri="sip:carol@elsewhere.net")
    assert r.was_forked and r.record_routed and r.targets == ["sip:bob@192.0.2.20:5064"]


def test_call_to_unregistered_local_user_is_480(harness):
    assert harness.send_request("INVITE", "sip:dave@example.com").status_code == 480


def test_foreign_caller_cannot_relay(harness):
    r = harness.send_request("INVITE", "sip:x@elsewhere.net", from_uri="sip:eve@evil.example")
    assert (r.status_code, r.reason) == (403, "Relaying Denied")


def test_local_caller_is_challenged_then_relayed_outbound(harness):
    first = harness.send_request("INVITE", "sip:x@elsewhere.net", call_id="o1@ua")
    assert first.status_code == 407
    auth = creds(first, "Proxy-Authenticate", "alice", "alice-secret", "INVITE",
                 "sip:x@elsewhere.net")
    r = harness.send_request("INVITE", "sip:x@elsewhere.net", call_id="o1@ua",
                             cseq=(2, "INVITE"), headers={"Proxy-Authorization": auth})
    assert r.was_relayed and r.next_hop == "sip:outbound.example.net"
    assert ("info", "alice calls out to sip:x@elsewhere.net") in harness.log.messages


def test_register_then_call_in(harness):
    first = harness.send_request("REGISTER", "sip:example.com", from_uri="sip:alice@example.com",
                                 call_id="r@ua")
    assert first.status_code == 401
    auth = creds(first, "WWW-Authenticate", "alice", "alice-secret", "REGISTER",
                 "sip:example.com")
    ok = harness.send_request("REGISTER", "sip:example.com", from_uri="sip:alice@example.com",
                              call_id="r@ua", cseq=(2, "REGISTER"),
                              headers={"Authorization": auth,
                                       "Contact": "<sip:alice@192.0.2.10:5062>"})
    assert ok.status_code == 200
    r = harness.send_request("INVITE", "sip:alice@example.com", from_uri="sip:bob@example.com")
    assert r.targets == ["sip:alice@192.0.2.10:5062"]
