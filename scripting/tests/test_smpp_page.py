"""The extensions page's SMPP test, exactly as the page prints it, against the page's own
snippet saved as ``scripts/gateway.py`` (run from the repository root, as a user would)."""

import os

import pytest

from siphon_sdk.smpp_testing import SmppTestHarness

_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(autouse=True)
def _at_repository_root(monkeypatch):
    monkeypatch.chdir(_ROOT)


# ---- from the page, verbatim ----
def test_submit_sm():
    h = SmppTestHarness()
    h.load_script("scripts/gateway.py")
    assert h.bind("esme1", password="s3cret")
    reply = h.submit_sm(source_addr="15550100", destination_addr="15550101",
                        short_message=b"hi")
    assert reply.ok
# ---- end of the page's test ----


def test_page_example_details():
    with SmppTestHarness() as h:
        h.load_script("scripts/gateway.py")
        assert h.bind("esme1", password="s3cret").status == "ESME_ROK"
        reply = h.submit_sm(source_addr="15550100", destination_addr="15550101",
                            short_message=b"hi")
        assert reply.message_id == "abc123"
        texts = [m for _lvl, m in h.log.messages]
        assert any("bind from esme1" in t for t in texts)
        assert any("15550100 -> 15550101" in t for t in texts)
