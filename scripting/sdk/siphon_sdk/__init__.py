"""siphon SDK: test SIPhon-style routing scripts against the real siphon scripting engine."""

from ._engine import DegradedModeWarning
from .testing import ReplyResult, RequestResult, SipTestHarness

__all__ = ["DegradedModeWarning", "ReplyResult", "RequestResult", "SipTestHarness"]
