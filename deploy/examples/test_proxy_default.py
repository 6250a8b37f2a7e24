"""The embedded default script (proxy_default.py, what `siphon` runs without a script:)
under the SDK's SipTestHarness, the real engine."""

import hashlib
import os

import pytest

from siphon_sdk.testing import SipTestHarness
from siphon_sdk.types import Contact

SCRIPT = os.path.join(os.path.dirname(__file__), "proxy_default.py")


@pytest.fixture
def harness():
    h = SipTestHarness(local_domains=["example.com"])
    h.load_script(SCRIPT)
    yield h
    h.close()


def digest(challenge_result, user, password, method, uri):
    www = challenge_result.actions[-1].headers_set["WWW-Authenticate"]
    realm = www.split('realm="', 1)[1].split('"', 1)[0]
    nonce = www.split('nonce="', 1)[1].split('"', 1)[0]
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    resp = md5(f"{md5(f'{user}:{realm}:{password}')}:{nonce}:00000001:abc:auth:{md5(f'{method}:{uri}')}")
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'algorithm=MD5, qop=auth, nc=00000001, cnonce="abc", response="{resp}"')


def test_register_is_challenged_then_saved(harness):
    harness.auth.add_user("example.com", "alice", "alice-secret")
    first = harness.send_request("REGISTER", "sip:example.com", from_uri="sip:alice@example.com",
                                 call_id="r1@ua", cseq=(1, "REGISTER"))
    assert first.status_code == 401
    creds = digest(first, "alice", "alice-secret", "REGISTER", "sip:example.com")
    ok = harness.send_request("REGISTER", "sip:example.com", from_uri="sip:alice@example.com",
                              call_id="r1@ua", cseq=(2, "REGISTER"),
                              headers={"Authorization": creds,
                                       "Contact": "<sip:alice@192.0.2.10:5062>"},
                              contact_expires=600)
    assert ok.status_code == 200
    assert [c.uri for c in harness.registrar.lookup("sip:alice@example.com")] == [
        "sip:alice@192.0.2.10:5062"]


def test_invite_to_registered_user_is_forked_and_record_routed(harness):
    harness.registrar.add_contact("sip:bob@example.com", Contact(uri="sip:bob@192.0.2.20:5064"))
    r = harness.send_request("INVITE", "sip:bob@example.com")
    assert r.was_forked and r.record_routed
    assert r.targets == ["sip:bob@192.0.2.20:5064"]


def test_invite_to_unknown_user_is_404(harness):
    r = harness.send_request("INVITE", "sip:nobody@example.com")
    assert (r.status_code, r.reason) == (404, "Not Found")
    assert any("unknown user" in m for _, m in harness.log.messages)


def test_in_dialog_request_without_route_is_404(harness):
    r = harness.send_request("BYE", "sip:bob@192.0.2.20", to_tag="t1")
    assert r.status_code == 404
