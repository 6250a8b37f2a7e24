"""siphon SDK: test SIPhon-style routing scripts against the real siphon scripting engine."""

from .testing import ReplyResult, RequestResult, SipTestHarness

__all__ = ["ReplyResult", "RequestResult", "SipTestHarness"]
