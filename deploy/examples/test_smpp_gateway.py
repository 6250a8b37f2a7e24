"""smpp_gateway.py under the SDK's SmppTestHarness (the real engine). The outbound leg
(submit_via through smpp_gateway.yaml's binds) needs SMSC binds; the harness answers them itself
(``harness.smpp.set_response``). The same outcomes on the release binary with smpplib and a
real SMSC: edge/node/tests/sdk_examples.rs; receipts: smpp_outbound.rs `gateway_example`."""

import os

import pytest

from siphon_sdk.smpp_testing import SmppTestHarness

SCRIPT = os.path.join(os.path.dirname(__file__), "smpp_gateway.py")


@pytest.fixture
def harness():
    h = SmppTestHarness()
    h.load_script(SCRIPT)
    yield h
    h.close()


def test_known_esme_binds(harness):
    assert harness.bind("shop", password="shop-pw")


def test_wrong_password_is_refused(harness):
    r = harness.bind("shop", password="nope")
    assert not r and r.status == "ESME_RINVPASWD"


def test_unknown_esme_is_refused(harness):
    assert not harness.bind("mallory", password="x")


def test_premium_destination_is_refused(harness):
    reply = harness.submit_sm(system_id="shop", source_addr="15550100",
                              destination_addr="19005550100", short_message=b"win")
    assert reply.command_status == "ESME_RINVDSTADR"


def test_submit_is_routed_by_destination_prefix(harness):
    harness.smpp.set_response("ESME_ROK", message_id="up-1")
    reply = harness.submit_sm(system_id="shop", source_addr="15550100",
                              destination_addr="447700900123", short_message=b"hi")
    assert reply.ok and reply.message_id == "up-1"
    reply = harness.submit_sm(system_id="shop", source_addr="15550100",
                              destination_addr="15550101", short_message=b"hi")
    assert reply.ok
    binds = [kw["session_id"] for op, kw in harness.sent if op == "submit_sm"]
    assert binds == ["uk", "up"]


def test_upstream_refusal_is_passed_back(harness):
    harness.smpp.set_response("ESME_RTHROTTLED")
    reply = harness.submit_sm(system_id="shop", source_addr="15550100",
                              destination_addr="15550101", short_message=b"hi")
    assert reply.command_status == "ESME_RTHROTTLED"
