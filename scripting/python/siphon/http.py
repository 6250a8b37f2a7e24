"""siphon.http: the HTTP extension's script namespace (built with ``--features http``).

Outbound: ``http.Client("api")`` is the ``clients.api`` pool of ``http.yaml``, built once per
node before scripts load and shared by every core, so a module-level ``api =
http.Client("api")`` works. ``await api.get(path)`` runs the request in Rust off the core and
resumes the handler on the same core; the core serves SIP meanwhile. An inline client
(``http.Client(base_url=...)``) works the same way.

Inbound: ``@http.route(path, methods=[...])`` handlers (sync or ``async def``) take an
``http.Request`` and return an ``http.Response``. ``@http.middleware`` guards run first (a
``Response`` short-circuits, ``None`` continues). ``@http.on_startup`` hooks run on every core
before the listeners bind; ``@http.on_shutdown`` hooks run on every core at SIGTERM.

Module state is per core: share state through ``cache``, not module globals.
"""

import asyncio
import json
import traceback

import _siphon

from . import _engine

__all__ = ["Client", "Request", "Response", "route", "middleware", "on_startup", "on_shutdown"]

_ERROR = 40


def _load_config():
    try:
        c = json.loads(_siphon.http_config_json())
    except (ValueError, TypeError):
        c = None
    if not isinstance(c, dict):
        c = {}
    c.setdefault("listen_addrs", [])
    c.setdefault("client_names", [])
    return c


_config = _load_config()


def _bytes(body, what):
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    raise TypeError(f"{what} must be bytes or str, not {type(body).__name__}")


def _flat_headers(headers):
    if headers is None:
        return []
    if not isinstance(headers, dict):
        raise TypeError("headers must be a dict[str, str]")
    flat = []
    for k, v in headers.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError("headers must be a dict[str, str]")
        flat += [k, v]
    return flat


class Response:
    """An HTTP response: what a route returns, and what ``Client`` calls give back."""

    __slots__ = ("_status", "headers", "_body")

    def __init__(self, status=200, headers=None, body=None):
        self.status = status
        if headers is not None and not isinstance(headers, dict):
            raise TypeError("headers must be a dict[str, str]")
        self.headers = dict(headers) if headers else {}
        self._body = _bytes(body, "body")

    @property
    def status(self):
        return self._status

    @status.setter
    def status(self, v):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError("status must be an int")
        self._status = v

    @property
    def body(self):
        return self._body

    def header(self, name):
        n = name.lower()
        for k, v in self.headers.items():
            if k.lower() == n:
                return v
        return None

    def raise_for_status(self):
        if self._status >= 400:
            raise RuntimeError(f"HTTP {self._status} response")
        return None

    def __repr__(self):
        return f"<http.Response {self._status} {len(self._body)} bytes>"


def _parse_query(q):
    out = {}
    if not q:
        return out
    from urllib.parse import unquote_plus
    for part in q.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        out[unquote_plus(k)] = unquote_plus(v)
    return out


class Request:
    """An inbound HTTP request (no public constructor)."""

    __slots__ = ("method", "path", "query", "path_params", "query_params", "headers", "client",
                 "_body", "route")

    def __init__(self, method, path, query, path_params, headers, body, client, route=""):
        self.method = method
        self.path = path
        self.query = query
        self.path_params = path_params
        self.query_params = _parse_query(query)
        self.headers = headers
        self.client = client
        self._body = body
        self.route = route

    def body(self):
        return self._body

    def header(self, name):
        return self.headers.get(name.lower())

    def __repr__(self):
        return f"<http.Request {self.method} {self.path}>"


class Client:
    """A pooled outbound HTTP client. ``Client("api")`` is the ``clients.api`` pool of
    ``http.yaml`` (the other arguments are then ignored, as upstream); without a name it is an
    inline client built from the arguments (pools are cached by their parameters)."""

    __slots__ = ("name", "base_url", "verify", "cert", "timeout_ms", "http2_prior_knowledge",
                 "_spec")

    def __init__(self, name=None, base_url=None, verify=None, cert=None, timeout_ms=None,
                 http2_prior_knowledge=False):
        # The constructor's arguments, readable as upstream's SDK mock keeps them.
        self.verify = verify
        self.cert = cert
        self.timeout_ms = timeout_ms
        self.http2_prior_knowledge = http2_prior_knowledge
        if name is not None:
            name = str(name)
            # ``any_client_name``: the SDK harness answers every name (as upstream's mock).
            if name not in _config["client_names"] and not _config.get("any_client_name"):
                raise RuntimeError(
                    f"no client named '{name}' in the http addon config (clients.{name})")
            self.name = name
            self.base_url = None
            self._spec = (name, None, None, None, None, 0, False)
            return
        if verify is not None and not isinstance(verify, str):
            raise TypeError("verify must be a str (a PEM CA path or text)")
        key = None
        if isinstance(cert, tuple):
            if len(cert) != 2:
                raise TypeError("cert must be a PEM str or a (cert, key) tuple")
            cert, key = str(cert[0]), str(cert[1])
        elif cert is not None and not isinstance(cert, str):
            raise TypeError("cert must be a PEM str or a (cert, key) tuple")
        t = 5000 if timeout_ms is None else int(timeout_ms)
        if t <= 0:
            raise ValueError("timeout_ms must be positive")
        self.name = None
        self.base_url = base_url
        self._spec = (None, None if base_url is None else str(base_url), verify, cert, key, t,
                      bool(http2_prior_knowledge))

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return False

    async def _call(self, method, path, body, headers):
        if not isinstance(path, str):
            raise TypeError("path must be a str")
        flat = _flat_headers(headers)
        b = None if body is None else _bytes(body, "body")
        tok = _siphon.http_request(*self._spec, method, path, flat, b)
        fut = _engine._loop.create_future()
        _pending[tok] = fut
        try:
            return await fut
        finally:
            _pending.pop(tok, None)

    def get(self, path, headers=None):
        return self._call("GET", path, None, headers)

    def delete(self, path, headers=None):
        return self._call("DELETE", path, None, headers)

    def post(self, path, body=None, headers=None):
        return self._call("POST", path, body, headers)

    def put(self, path, body=None, headers=None):
        return self._call("PUT", path, body, headers)

    def patch(self, path, body=None, headers=None):
        return self._call("PATCH", path, body, headers)

    def __repr__(self):
        return f"<http.Client {self.name or self.base_url!r}>"


# token -> future of an in-flight Client call (this core only).
_pending = {}


def _complete(token, reply, error):
    fut = _pending.pop(token, None)
    if fut is None or fut.done():
        return
    if error is not None:
        fut.set_exception(RuntimeError(error))
        return
    status, headers, body = reply
    h = {}
    for k, v in headers:
        h[k] = v  # a repeated name keeps the last value, as upstream
    r = Response(status, None, body)
    r.headers = h
    fut.set_result(r)


# ---- decorators ---------------------------------------------------------------------------

def _origin(fn):
    code = getattr(fn, "__code__", None)
    if code is None:
        return "<unknown>:0"
    return f"{code.co_filename}:{code.co_firstlineno}"


def route(path, methods=None):
    """Serve ``path`` (``{name}`` is one segment, ``{*rest}`` the non-empty tail) for
    ``methods`` (default ``["GET"]``; HEAD is served by a GET route without its body)."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"route path must start with '/': {path!r}")
    ms = ["GET"] if methods is None else [str(m).upper() for m in methods]

    def deco(fn):
        md = {"path": path, "methods": ms, "origin": _origin(fn)}
        _engine.registry.register("http.route", None, fn, _engine.is_async_fn(fn), md)
        return fn
    return deco


def middleware(fn):
    """A guard ``(req)`` run before every matched route, in registration order."""
    _engine.registry.register("http.middleware", None, fn, _engine.is_async_fn(fn), {})
    return fn


def on_startup(fn):
    """Run before the listeners bind, on every core (side effects repeat once per core)."""
    _engine.registry.register("http.startup", None, fn, _engine.is_async_fn(fn), {})
    return fn


def on_shutdown(fn):
    """Run on every core when siphon drains at SIGTERM."""
    _engine.registry.register("http.shutdown", None, fn, _engine.is_async_fn(fn), {})
    return fn


# ---- inbound dispatch ---------------------------------------------------------------------

# id -> Task of an async handler in flight (cancelled at the node's timeout).
_tasks = {}


def _routes():
    """(path, methods, origin) of every route, in registration order (the node builds its
    router from this)."""
    return [(md["path"], list(md["methods"]), md.get("origin", "")) for k, _, _, _, md
            in _engine.registry.entries if k == "http.route"]


def _handler(route_path, method):
    for k, _, fn, a, md in _engine.registry.entries:
        if k == "http.route" and md["path"] == route_path and method in md["methods"]:
            return fn
    return None


def _fail(id, what):
    _siphon.http_respond(id, 500, ["content-type", "text/plain; charset=utf-8"],
                         (what + "\n").encode())


def _send(id, r):
    if not isinstance(r, Response):
        _fail(id, "bad response")
        return
    status = r.status if 100 <= r.status <= 999 else 500
    flat = []
    for k, v in r.headers.items():
        if isinstance(k, str) and isinstance(v, str):
            flat += [k, v]
    _siphon.http_respond(id, status, flat, r.body)


async def _await_if(v):
    if asyncio.iscoroutine(v):
        return await v
    return v


def _dispatch(ev):
    id, route_path, method, path, query, pp, hs, body, client = ev
    lookup = "GET" if method == "HEAD" else method
    fn = _handler(route_path, method) or _handler(route_path, lookup)
    if fn is None:
        _siphon.http_respond(id, 404, [], b"")
        return None
    headers = {}
    for k, v in hs:
        headers[k] = headers[k] + ", " + v if k in headers else v
    req = Request(method, path, query, dict(pp), headers, body, client, route_path)
    mws = [e[2] for e in _engine.registry.entries if e[0] == "http.middleware"]
    if not mws and not _engine.is_async_fn(fn):
        # The common case runs with no Task at all.
        try:
            r = fn(req)
        except BaseException:
            _siphon.log(_ERROR, f"http handler {route_path} failed:\n{traceback.format_exc()}")
            _fail(id, "handler error")
            return None
        if asyncio.iscoroutine(r):
            r.close()
            _fail(id, "bad response")
            return None
        _send(id, r)
        return None
    _tasks[id] = _engine._loop.create_task(_run(id, mws, fn, req, route_path))
    return None


async def _run(id, mws, fn, req, route_path):
    try:
        for mw in mws:
            try:
                r = await _await_if(mw(req))
            except asyncio.CancelledError:
                raise
            except BaseException:
                _siphon.log(_ERROR, f"http middleware failed:\n{traceback.format_exc()}")
                _fail(id, "middleware error")
                return
            if r is None:
                continue
            if isinstance(r, Response):
                _send(id, r)
            else:
                _fail(id, "middleware must return Response or None")
            return
        try:
            if _engine.is_async_fn(fn):
                r = await fn(req)
            else:
                r = fn(req)
                if asyncio.iscoroutine(r):
                    r.close()
                    _fail(id, "bad response")
                    return
        except asyncio.CancelledError:
            raise
        except BaseException:
            _siphon.log(_ERROR, f"http handler {route_path} failed:\n{traceback.format_exc()}")
            _fail(id, "handler error")
            return
        _send(id, r)
    except asyncio.CancelledError:
        _cancelled[0] += 1
    finally:
        _tasks.pop(id, None)


# Handlers cancelled at the node's timeout on this core (tests read it).
_cancelled = [0]


def _cancel(id):
    t = _tasks.pop(id, None)
    if t is not None and not t.done():
        t.cancel()


def cancelled_count():
    """How many handlers this core cancelled at the request timeout."""
    return _cancelled[0]


def _run_hooks(kind):
    """Run ``http.startup``/``http.shutdown`` hooks in order; an exception is logged and the
    next hook runs. Async hooks run to completion on this core's loop."""
    for k, _, fn, _, _ in list(_engine.registry.entries):
        if k != kind:
            continue
        try:
            r = fn()
            if asyncio.iscoroutine(r):
                _engine._loop.create_task(_engine._guard(r, kind))
        except BaseException:
            _siphon.log(_ERROR, f"{kind} hook failed:\n{traceback.format_exc()}")
