"""The extensions page's HTTP test, exactly as the page prints it, against the page's own
snippet saved as ``scripts/api.py`` (run from the repository root, as a user would)."""

import os

import pytest

from siphon_sdk.http_testing import HttpTestHarness

_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(autouse=True)
def _at_repository_root(monkeypatch):
    monkeypatch.chdir(_ROOT)


# ---- from the page, verbatim ----
def test_healthz():
    h = HttpTestHarness()
    h.load_script("scripts/api.py")
    assert h.request("GET", "/healthz").body == b"ok"
# ---- end of the page's test ----


def test_page_users_route_answers_through_the_tests_client():
    from siphon_sdk.http_testing import MockResponse
    with HttpTestHarness() as h:
        h.load_script("scripts/api.py")
        h.set_response("/v1/users/42", MockResponse(status=203, body=b'{"id":42}'))
        r = h.request("GET", "/users/42")
        assert (r.status, r.body) == (203, b'{"id":42}')
        assert h.sent_requests[0]["method"] == "GET"
        assert h.sent_requests[0]["path"] == "/v1/users/42"
        assert h.sent_requests[0]["name"] == "api"
