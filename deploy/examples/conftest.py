"""pytest for the examples, written against the SDK (``siphon_sdk``): run with the SDK
installed, or from the repository (``scripting/sdk`` is used when it is not installed).
The engine is ``$SIPHON_DRIVER`` (``scripting/run-tests.sh`` builds and sets it)."""

import os
import sys

try:
    import siphon_sdk  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripting", "sdk"))
