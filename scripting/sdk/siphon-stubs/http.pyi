"""siphon.http: the HTTP extension's script namespace (the node built with ``http``).

Outbound: ``http.Client("api")`` is the ``clients.api`` pool of ``http.yaml``, shared by every
core; ``await api.get(path)`` runs the request off the core and resumes the handler on it.
Inbound: ``@http.route(path, methods=[...])`` handlers (plain or ``async def``) take an
``http.Request`` and return an ``http.Response``; ``@http.middleware`` guards run first (a
``Response`` short-circuits, ``None`` continues); ``@http.on_startup`` hooks run on every core
before the listeners bind, ``@http.on_shutdown`` hooks at SIGTERM.
"""

from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["Client", "Request", "Response", "route", "middleware", "on_startup", "on_shutdown"]

_Body = str | bytes | bytearray | None
_Headers = Mapping[str, str] | None
_RouteHandler = TypeVar("_RouteHandler", bound=Callable[..., Any])
_Middleware = TypeVar("_Middleware", bound=Callable[[Request], Any])
_Hook = TypeVar("_Hook", bound=Callable[[], Any])

class Response:
    """An HTTP response: what a route returns, and what ``Client`` calls give back."""

    headers: dict[str, str]
    def __init__(self, status: int = 200, headers: dict[str, str] | None = None,
                 body: _Body = None) -> None: ...
    @property
    def status(self) -> int: ...
    @status.setter
    def status(self, v: int) -> None: ...
    @property
    def body(self) -> bytes: ...
    def header(self, name: str) -> str | None:
        """A header's value (case-insensitive), or None."""
    def raise_for_status(self) -> None:
        """RuntimeError for a 4xx or 5xx status."""

class Request:
    """An inbound HTTP request (no public constructor)."""

    method: str
    path: str
    query: str
    path_params: dict[str, str]
    """The route's ``{name}`` segments."""
    query_params: dict[str, str]
    headers: dict[str, str]
    """Lower-case names."""
    client: str
    """The peer's ``ip:port``."""
    route: str
    """The matched route's path pattern."""
    def __init__(self, method: str, path: str, query: str, path_params: dict[str, str],
                 headers: dict[str, str], body: bytes, client: str, route: str = "") -> None: ...
    def body(self) -> bytes: ...
    def header(self, name: str) -> str | None: ...

class Client:
    """A pooled outbound HTTP client: ``Client("api")`` is the ``clients.api`` pool of
    ``http.yaml``; without a name an inline client built from the arguments."""

    name: str | None
    base_url: str | None
    verify: str | None
    """CA bundle an inline client trusts (``None``: the system roots)."""
    cert: str | tuple[str, str] | None
    """Client certificate (PEM with key, or ``(cert, key)``) of an inline client."""
    timeout_ms: int | None
    """Per-request timeout of an inline client, ms."""
    http2_prior_knowledge: bool
    """HTTP/2 without ALPN (cleartext h2c) for an inline client."""
    def __init__(self, name: str | None = None, base_url: str | None = None,
                 verify: str | None = None, cert: str | tuple[str, str] | None = None,
                 timeout_ms: int | None = None, http2_prior_knowledge: bool = False) -> None: ...
    async def __aenter__(self) -> Client: ...
    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> bool: ...
    def get(self, path: str, headers: _Headers = None) -> Awaitable[Response]: ...
    def delete(self, path: str, headers: _Headers = None) -> Awaitable[Response]: ...
    def post(self, path: str, body: _Body = None, headers: _Headers = None) -> Awaitable[Response]: ...
    def put(self, path: str, body: _Body = None, headers: _Headers = None) -> Awaitable[Response]: ...
    def patch(self, path: str, body: _Body = None, headers: _Headers = None) -> Awaitable[Response]: ...

def route(path: str, methods: list[str] | None = None) -> Callable[[_RouteHandler], _RouteHandler]:
    """Serve ``path`` (``{name}`` is one segment, ``{*rest}`` the tail) for ``methods``
    (default ``["GET"]``; HEAD is served by a GET route without its body)."""
def middleware(fn: _Middleware) -> _Middleware:
    """A guard ``(req) -> Response | None`` run before every matched route."""
def on_startup(fn: _Hook) -> _Hook:
    """Run before the listeners bind, on every core."""
def on_shutdown(fn: _Hook) -> _Hook:
    """Run on every core when the node drains at SIGTERM."""
def cancelled_count() -> int:
    """How many handlers this core cancelled at the request timeout."""
