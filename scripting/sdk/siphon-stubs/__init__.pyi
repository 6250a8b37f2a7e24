"""siphon: the routing-script API (SIPhon-compatible), embedded in the siphon binary.

Type stubs for the package the engine embeds (it is importable only inside siphon, or inside
the SDK's harnesses, which run the engine). Each core runs its own copy of this package in its
own Python interpreter: module-level variables in a script are per core. Share state through
``cache`` or ``registrar``. ``siphon.smpp`` and ``siphon.http`` are the extensions'
namespaces (``from siphon import smpp, http``).
"""

from . import http as http
from . import smpp as smpp
from ._message import Contact as Contact
from ._message import Flow as Flow
from ._message import Reply as Reply
from ._message import Request as Request
from ._message import SipUri as SipUri
from ._namespaces import auth as auth
from ._namespaces import cache as cache
from ._namespaces import config as config
from ._namespaces import log as log
from ._namespaces import metrics as metrics
from ._namespaces import proxy as proxy
from ._namespaces import registrar as registrar
from ._namespaces import timer as timer
from ._presence import presence as presence

__all__ = [
    "Contact", "Flow", "Reply", "Request", "SipUri",
    "auth", "cache", "config", "log", "metrics", "presence", "proxy", "registrar", "timer",
]
