"""siphon SDK: test SIPhon-style routing scripts against the real siphon scripting engine."""

from ._engine import DegradedModeWarning
from .reply import Reply
from .request import Request
from .testing import NotSupported, ReplyResult, RequestResult, ScriptLoadError, SipTestHarness
from .types import Action, Contact, SipUri

__all__ = ["Action", "Contact", "DegradedModeWarning", "NotSupported", "Reply", "ReplyResult", "Request",
           "RequestResult", "ScriptLoadError", "SipTestHarness", "SipUri"]
