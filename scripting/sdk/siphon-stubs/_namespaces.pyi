"""The script namespaces: ``proxy``, ``registrar``, ``auth``, ``log``, ``cache``, ``timer``,
``metrics``, ``config``.

``registrar``, ``cache``, auth nonces, rate limits and metrics live in the engine and are
shared by every core; anything a script keeps in module globals is per core.
"""

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, overload

from ._message import Contact, DetachedReply, Reply, Request, SipUri

_RequestHook = TypeVar("_RequestHook", bound=Callable[[Request], Any])
_ReplyHook = TypeVar("_ReplyHook", bound=Callable[[Request, Reply], Any])
_ChangeHook = TypeVar("_ChangeHook", bound=Callable[[str, str, list[Contact]], Any])
_TimerFn = TypeVar("_TimerFn", bound=Callable[[], Any])

class _Proxy:
    """Routing hooks and proxy helpers. A hook may be a plain or an ``async def`` function;
    ``filter`` is a method or ``"INVITE|SUBSCRIBE"``-style list (all methods when omitted)."""

    @overload
    def on_request(self, filter: _RequestHook) -> _RequestHook:
        """``@proxy.on_request``: ``(request)`` for every request."""
    @overload
    def on_request(self, filter: str | None = None) -> Callable[[_RequestHook], _RequestHook]:
        """``@proxy.on_request("INVITE|MESSAGE")``: ``(request)`` for those methods."""
    @overload
    def on_reply(self, filter: _ReplyHook) -> _ReplyHook:
        """``@proxy.on_reply``: ``(request, reply)`` for every relayed response."""
    @overload
    def on_reply(self, filter: str | None = None) -> Callable[[_ReplyHook], _ReplyHook]: ...
    @overload
    def on_failure(self, filter: _ReplyHook) -> _ReplyHook:
        """``@proxy.on_failure``: ``(request, reply)`` when every branch failed."""
    @overload
    def on_failure(self, filter: str | None = None) -> Callable[[_ReplyHook], _ReplyHook]: ...
    @overload
    def on_cancel(self, filter: _RequestHook) -> _RequestHook:
        """``@proxy.on_cancel``: ``(request)`` for a CANCEL of a transaction in progress."""
    @overload
    def on_cancel(self, filter: str | None = None) -> Callable[[_RequestHook], _RequestHook]: ...
    @overload
    def on_register_reply(self, filter: _ReplyHook) -> _ReplyHook:
        """``@proxy.on_register_reply``: ``(request, reply)`` for responses to REGISTERs."""
    @overload
    def on_register_reply(self, filter: str | None = None) -> Callable[[_ReplyHook], _ReplyHook]: ...
    def rate_limit(self, request: Request, window_secs: float, max_requests: int) -> bool:
        """True while the request's source address stays within ``max_requests`` per
        ``window_secs`` (shared by all cores)."""
    def sanity_check(self, request: Request) -> bool:
        """RFC 3261 checks: mandatory headers, CSeq method, Content-Length."""
    async def send_request(self, method: str, ruri: SipUri | str,
                           headers: Mapping[str, object] | Iterable[tuple[str, object]] | None = None,
                           body: str | bytes | None = None, next_hop: SipUri | str | None = None,
                           wait_for_response: bool = False, timeout_ms: int = 2000,
                           flow: Any = None, route: str | None = None) -> DetachedReply | None:
        """Send an out-of-dialog request through the node; with ``wait_for_response`` return
        its final response (None on failure or timeout), else None at once."""
    def memory_used_pct(self) -> int: ...

class _Registrar:
    """The location service (shared by every core)."""

    def save(self, request: Request, force: bool = False, aliases: Any = None,
             flow_token: str | None = None) -> bool:
        """Save the REGISTER's bindings and answer it (200 with the bindings, or 4xx)."""
    def lookup(self, uri: SipUri | str) -> list[Contact]:
        """The live bindings of the AOR ``uri``, best q first."""
    def lookup_contact(self, uri: SipUri | str) -> Contact | None: ...
    def is_registered(self, uri: SipUri | str) -> bool: ...
    def is_registered_contact(self, uri: SipUri | str) -> bool: ...
    def expire(self, uri: SipUri | str) -> bool:
        """Expire the AOR's bindings now; True if it had some."""
    def remove(self, uri: SipUri | str) -> bool:
        """Remove the AOR's bindings (a deregistration); True if it had some."""
    async def aor_count(self) -> int: ...
    def on_change(self, fn: _ChangeHook) -> _ChangeHook:
        """``@registrar.on_change``: ``(aor, event, contacts)`` after a save, expiry or
        removal (``event`` is ``"registered"``, ``"refreshed"``, ``"deregistered"``,
        ``"expired"``)."""

class _Auth:
    """Digest authentication (RFC 7616/2617) against the node's user table or the given
    ``password``/``ha1``."""

    def require_www_digest(self, target: Request, realm: str | None = None,
                           password: str | None = None, ha1: str | None = None) -> bool:
        """True when the request carries valid credentials; else it is answered 401 with a
        challenge and False is returned."""
    def require_proxy_digest(self, target: Request, realm: str | None = None,
                             password: str | None = None, ha1: str | None = None) -> bool:
        """As ``require_www_digest`` with 407 and Proxy-Authenticate."""
    def require_digest(self, target: Request, realm: str | None = None,
                       password: str | None = None, ha1: str | None = None) -> bool: ...
    def verify_digest(self, target: Request, realm: str | None = None,
                      password: str | None = None, ha1: str | None = None) -> bool:
        """Check the credentials without challenging."""
    def generate_nonce(self) -> str: ...
    def validate_nonce(self, nonce: str) -> bool: ...

class _Log:
    """The node's log (``level`` ``debug``/``info``/``warn``/``error``)."""

    def debug(self, msg: object) -> None: ...
    def info(self, msg: object) -> None: ...
    def warn(self, msg: object) -> None: ...
    def warning(self, msg: object) -> None: ...
    def error(self, msg: object) -> None: ...

class _Cache:
    """Named caches (``cache:`` in the node config), in memory and shared by all cores. Every
    call is awaitable (``await cache.fetch("main", key)``)."""

    def fetch(self, name: str, key: object) -> Awaitable[str | None]: ...
    def store(self, name: str, key: object, value: object, ttl: float | None = None) -> Awaitable[None]: ...
    def delete(self, name: str, key: object) -> Awaitable[bool]: ...
    def exists(self, name: str, key: object) -> Awaitable[bool]: ...
    def list_push(self, name: str, key: object, item: object) -> Awaitable[int]:
        """Append to a list; its new length."""
    def list_pop_all(self, name: str, key: object) -> Awaitable[list[str]]: ...
    def list_len(self, name: str, key: object) -> Awaitable[int]: ...
    def expire(self, name: str, key: object, ttl: float) -> Awaitable[bool]: ...
    def has_cache(self, name: str) -> bool: ...

class TimerHandle:
    """What ``timer.set`` returns."""

    key: str
    def __init__(self, key: str) -> None: ...
    def cancel(self) -> bool: ...

class _Timer:
    def every(self, seconds: float, name: str | None = None, jitter: float = 0,
              per_core: bool = True) -> Callable[[_TimerFn], _TimerFn]:
        """``@timer.every(30)``: run the function every ``seconds`` (on every core, or once per
        node on core 0 with ``per_core=False``)."""
    def set(self, key: str, delay_ms: float, handler: Callable[[], Any]) -> TimerHandle:
        """Run ``handler`` once after ``delay_ms`` (replacing a timer of the same key)."""
    def cancel(self, key: str) -> bool: ...
    @property
    def active_count(self) -> int: ...
    def sleep(self, seconds: float) -> Awaitable[None]:
        """``await timer.sleep(0.5)``."""

class _Metric:
    def labels(self, *args: object, **kw: object) -> Any:
        """The metric for these label values (positional in declaration order, or by name)."""

class Counter(_Metric):
    def labels(self, *args: object, **kw: object) -> Counter: ...
    def inc(self, n: float = 1.0) -> None: ...

class Gauge(_Metric):
    def labels(self, *args: object, **kw: object) -> Gauge: ...
    def inc(self, n: float = 1.0) -> None: ...
    def dec(self, n: float = 1.0) -> None: ...
    def set(self, v: float) -> None: ...

class Histogram(_Metric):
    def labels(self, *args: object, **kw: object) -> Histogram: ...
    def observe(self, v: float) -> None: ...

class _Metrics:
    """Prometheus metrics, shared by every core (``/metrics``)."""

    def counter(self, name: str, help: str = "", labels: Sequence[str] | None = None) -> Counter: ...
    def gauge(self, name: str, help: str = "", labels: Sequence[str] | None = None) -> Gauge: ...
    def histogram(self, name: str, help: str = "", labels: Sequence[str] | None = None,
                  buckets: Iterable[float] | None = None) -> Histogram: ...

class _Config:
    """The node config's ``script_config:`` document (dotted keys: ``"trunks.0.host"``)."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def require(self, key: str) -> Any:
        """The value at ``key``; KeyError when it is missing."""

proxy: _Proxy
registrar: _Registrar
auth: _Auth
log: _Log
cache: _Cache
timer: _Timer
metrics: _Metrics
config: _Config
