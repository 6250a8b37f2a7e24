"""tests/sdk_compat: upstream SIPhon's harness API (``siphon_sdk.testing``), one test per
member we support, each used as upstream's README and docstrings document it. Run against the
installed SDK, or the repository's ``scripting/sdk`` when it is not installed; the engine is
``$SIPHON_DRIVER`` (``scripting/run-tests.sh`` builds and sets it)."""

import os
import sys

try:
    import siphon_sdk  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripting", "sdk"))
