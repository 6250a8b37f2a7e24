"""http_screening.py under the SDK's HttpTestHarness (the real engine): the reputation API
is answered by the test."""

import json
import os

import pytest

from siphon_sdk.http_testing import HttpTestHarness, MockResponse

SCRIPT = os.path.join(os.path.dirname(__file__), "http_screening.py")


@pytest.fixture
def harness():
    h = HttpTestHarness()
    h.load_script(SCRIPT)
    yield h
    h.close()


def test_premium_prefix_is_blocked_without_a_lookup(harness):
    r = harness.request("GET", "/screen/19005550100")
    assert r.status == 403
    assert json.loads(r.body) == {"verdict": "block", "reason": "premium"}
    assert harness.sent_requests == []


def test_bad_reputation_is_blocked(harness):
    harness.set_response("/v1/score/15550100", MockResponse(status=200, body=b'{"score": 95}'))
    r = harness.request("GET", "/screen/15550100")
    assert (r.status, json.loads(r.body)["reason"]) == (403, "reputation")
    assert harness.sent_requests[0]["name"] == "reputation"


def test_good_reputation_is_allowed(harness):
    harness.set_response("/v1/score/15550101", MockResponse(status=200, body=b'{"score": 10}'))
    r = harness.request("GET", "/screen/15550101")
    assert (r.status, json.loads(r.body)) == (200, {"verdict": "allow"})
    assert r.header("content-type") == "application/json"


def test_reputation_api_down_fails_open(harness):
    def fail(call):
        raise ConnectionError("refused")

    harness.http.set_handler(fail)
    r = harness.request("GET", "/screen/15550102")
    assert r.status == 200
    assert any("reputation lookup for 15550102 failed" in m for _, m in harness.log.messages)


def test_only_get_is_routed(harness):
    assert harness.request("POST", "/screen/15550100").status == 405
