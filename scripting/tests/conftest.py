import os
import sys

import pytest

# The SDK from this checkout, unless the run is meant to test the installed wheel
# (scripts/test.sh sets SIPHON_SDK_INSTALLED=1 in the fresh virtualenvs it installs it into).
if not os.environ.get("SIPHON_SDK_INSTALLED"):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "sdk"))

from siphon_sdk import SipTestHarness  # noqa: E402


@pytest.fixture
def harness(request):
    """``harness(source, **kw)`` -> a running SipTestHarness, closed after the test."""
    made = []

    def make(source, **kw):
        kw.setdefault("cores", 2)
        h = SipTestHarness(source=source, **kw)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()
