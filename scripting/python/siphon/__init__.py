"""siphon: the routing-script API (SIPhon-compatible), embedded in the siphon binary.

Each core runs its own copy of this package in its own Python interpreter: module-level
variables in a script are per core. Share state through ``cache`` or ``registrar``.
"""

from ._message import Contact, Flow, Reply, Request, SipUri
from ._namespaces import auth, cache, config, log, metrics, proxy, registrar, timer
from ._presence import presence

__all__ = [
    "Contact", "Flow", "Reply", "Request", "SipUri",
    "auth", "cache", "config", "log", "metrics", "presence", "proxy", "registrar", "timer",
]
