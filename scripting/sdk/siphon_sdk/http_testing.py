"""``HttpTestHarness``: test ``siphon.http`` scripts against THE REAL scripting engine.

It keeps upstream's harness surface (``siphon_sdk.http_testing.HttpTestHarness``:
``load_script``, ``load_source``, ``run_startup``, ``request``, ``add_response``,
``set_response``, ``http.set_default_response``, ``sent_requests``, ``log``, ``reset``,
``close``) but runs the script in the engine the node runs (``siphon-script-driver`` built with
the ``http`` feature, found through ``$SIPHON_DRIVER``): a request goes through the node's
route table rules (matchit syntax, static beats param, ``{*rest}`` needs a tail), 404, 405 with
``Allow``, HEAD on GET routes, middleware and the same ``siphon.http`` dispatch and error
mapping (500 ``handler error``/``bad response``...) as a request on the wire.

The script's ``http.Client`` calls are answered by the test: ``h.set_handler(fn)`` (``fn(call)``
returns a ``MockResponse``, or raises to fail the call with ``RuntimeError("request failed:
...")``), else the FIFO of ``add_response``, else ``set_response(path, ...)`` keyed by path, else
``http.set_default_response``, else ``200`` with an empty body. Every call is recorded in
``h.sent_requests`` as ``{"method","path","url","name","base_url","headers","body"}``.

Where it differs from upstream's mock (it is the runtime, not a mock): see the README's
"Where the HTTP extension differs". ``on_startup`` hooks run when the script loads (as in the
node, before listeners bind), so ``run_startup()`` only exists for upstream's surface.
``config`` is an ``http.yaml`` document (a dict): its ``clients`` give the names and base URLs
``http.Client(name)`` accepts; without it every name is accepted (as upstream's mock).
"""

import itertools
import re
import threading
from urllib.parse import unquote, urlencode

from ._driver import DriverProcess, HarnessError  # noqa: F401 (importable here, as before)

_TIMEOUT = 30.0


class HttpStatusError(RuntimeError):
    """``MockResponse.raise_for_status()`` for a status >= 400."""

    def __init__(self, response):
        super().__init__(f"HTTP {response.status} response")
        self.response = response


class MockResponse:
    """What the test answers an ``http.Client`` call with (and what ``h.request`` returns):
    ``status``, ``headers`` (lower-case names), ``body`` (bytes), ``header(name)``."""

    def __init__(self, status=200, body=b"", headers=None):
        self.status = int(status)
        if isinstance(body, str):
            body = body.encode()
        self.body = bytes(body or b"")
        self.headers = {str(k).lower(): str(v) for k, v in (headers or {}).items()}

    def header(self, name):
        return self.headers.get(name.lower())

    def raise_for_status(self):
        if self.status >= 400:
            raise HttpStatusError(self)
        return self

    def __repr__(self):
        return f"MockResponse(status={self.status}, body={self.body!r})"


class _Log:
    """``h.log.messages``: ``(level, text)`` of everything the script logged."""

    def __init__(self):
        self.messages = []

    def clear(self):
        self.messages.clear()


class MockHttp:
    """``h.http``: the answers to the script's ``http.Client`` calls, and what it sent."""

    def __init__(self):
        self.sent_requests = []
        self._queue = []
        self._by_path = {}
        self._default = None
        self._handler = None
        self._lock = threading.Lock()

    def add_response(self, response):
        with self._lock:
            self._queue.append(response)

    def set_response(self, path, response):
        with self._lock:
            self._by_path[path] = response

    def set_default_response(self, response):
        self._default = response

    def set_handler(self, fn):
        """``fn(call)`` answers every call (``call`` as in ``sent_requests``); it returns a
        ``MockResponse`` or raises (the script sees ``RuntimeError("request failed: ...")``)."""
        self._handler = fn

    def reset(self):
        with self._lock:
            self.sent_requests.clear()
            self._queue.clear()
            self._by_path.clear()
        self._default = None
        self._handler = None

    # Upstream's mock namespace calls it ``clear()``.
    clear = reset

    def _answer(self, call):
        with self._lock:
            self.sent_requests.append(call)
            if self._handler is None:
                if self._queue:
                    return self._queue.pop(0)
                if call["path"] in self._by_path:
                    return self._by_path[call["path"]]
        if self._handler is not None:
            return self._handler(call)
        return self._default or MockResponse(200)


# ---- the node's route table rules (matchit 0.8, as edge/node/src/http/server.rs) ----------

_PARAM = re.compile(r"^\{(\*?)([A-Za-z_][A-Za-z0-9_]*)\}$")


def _match(pattern, path):
    """``(rank, params)`` when ``pattern`` matches ``path``, else None. Lower rank wins:
    static segments beat ``{param}`` beats ``{*rest}``."""
    pseg = pattern.strip("/").split("/") if pattern.strip("/") else []
    sseg = path.strip("/").split("/") if path.strip("/") else []
    if pattern.endswith("/") != path.endswith("/") and not _PARAM.match(pseg[-1] if pseg else ""):
        return None
    rank, params = [], {}
    for i, p in enumerate(pseg):
        m = _PARAM.match(p)
        if m and m.group(1):
            tail = "/".join(sseg[i:])
            if not tail:
                return None
            params[m.group(2)] = tail
            rank.append(2)
            return tuple(rank), params
        if i >= len(sseg):
            return None
        if m:
            if not sseg[i]:
                return None
            params[m.group(2)] = sseg[i]
            rank.append(1)
        elif p != sseg[i]:
            return None
        else:
            rank.append(0)
    if len(sseg) != len(pseg):
        return None
    return tuple(rank), params


class HttpTestHarness(DriverProcess):
    """Run an HTTP routing script in the real engine."""

    _ANSWER = "http_answer"
    _CALL = "http_call"

    def __init__(self, config=None, *, cores=1, driver=None):
        self._init_driver("siphon-http-test-", cores, driver)
        self.config = config
        self._next_core = itertools.count()
        self.http = MockHttp()
        self.sent_requests = self.http.sent_requests
        self.log = _Log()

    # -- the mock client surface, as upstream's harness --
    def add_response(self, response):
        self.http.add_response(response)

    def set_response(self, path, response):
        self.http.set_response(path, response)

    def set_handler(self, fn):
        self.http.set_handler(fn)

    # -- engine process --
    def _clients(self):
        c = (self.config or {}).get("clients") if isinstance(self.config, dict) else None
        return c if isinstance(c, dict) else {}

    def _start(self):
        http_config = {"listen_addrs": [], "client_names": sorted(self._clients()),
                       "any_client_name": self.config is None}
        self._spawn({"http_config": http_config, "cache_names": ["default", "main"]})

    def _on_log(self, msg):
        self.log.messages.append((msg["level"], msg["msg"]))

    def _on_call(self, proc, msg):
        client = msg.get("client") or {}
        name = client.get("name")
        base = client.get("base_url")
        if name is not None:
            base = (self._clients().get(name) or {}).get("base_url")
        path = msg["path"]
        call = {
            "method": msg["method"], "path": path,
            "url": (base.rstrip("/") + path) if base else path,
            "name": name, "base_url": base,
            "headers": {k: v for k, v in msg.get("headers") or []},
            "body": bytes.fromhex(msg["body"]) if msg.get("body") else b"",
        }
        reply = {"op": "http_complete", "call": msg["call"]}
        try:
            r = self.http._answer(call)
            if not isinstance(r, MockResponse):
                r = MockResponse(*r) if isinstance(r, tuple) else MockResponse(int(r))
            reply.update(status=r.status, headers=[[k, v] for k, v in r.headers.items()],
                         body=r.body.hex())
        except Exception as e:  # the test's handler failed the call
            reply["error"] = f"request failed: {e}"
        try:
            self._write(proc, reply)
        except (OSError, ValueError):
            pass

    # -- upstream's surface --
    def reset(self):
        """Forget the script, the mock answers, the sent requests and the logs."""
        self._stop()
        self._source = ""
        self.http.reset()
        self.log.clear()
        with self._cond:
            self._answers.clear()

    def run_startup(self):
        """``on_startup`` hooks already ran when the script loaded (as in the node)."""
        if self._proc is None:
            self._start()

    def run_shutdown(self):
        """Run the ``@http.on_shutdown`` hooks (the node does on SIGTERM)."""
        self._send({"op": "http_shutdown"})
        self._ask({"op": "sync", "wait": False}, "sync")

    def routes(self):
        """The loaded route table: ``[(path, [methods], "file:line")]``."""
        r = self._ask({"op": "http_routes"}, "http_routes")
        return [(p, m, o) for p, m, o in r["routes"]]

    def request(self, method, path, headers=None, query_params=None, path_params=None,
                body=b"", client="127.0.0.1:0", timeout=_TIMEOUT):
        """Serve one request as the node would; returns a ``MockResponse``."""
        method = method.upper()
        path, _, query = path.partition("?")
        if query_params:
            extra = urlencode(query_params)
            query = f"{query}&{extra}" if query else extra
        if isinstance(body, str):
            body = body.encode()
        best = None
        for pattern, methods, _origin in self.routes():
            m = _match(pattern, path)
            if m is not None and (best is None or m[0] < best[0]):
                best = (m[0], pattern, methods, m[1])
        if best is None:
            return MockResponse(404)
        _, pattern, methods, params = best
        if method not in methods and not (method == "HEAD" and "GET" in methods):
            allow = list(methods) + (["HEAD"] if "GET" in methods and "HEAD" not in methods
                                     else [])
            return MockResponse(405, b"method not allowed\n", {"allow": ", ".join(allow)})
        if path_params is not None:
            params = dict(path_params)
        else:
            params = {k: unquote(v, errors="replace") for k, v in params.items()}
        hs = [[str(k).lower(), str(v)] for k, v in (headers or {}).items()]
        rid = next(self._ids)
        core = next(self._next_core) % self._cores
        self._send({
            "op": "http_request", "id": rid, "core": core, "route": pattern,
            "method": method, "path": path, "query": query,
            "path_params": [[k, v] for k, v in params.items()], "headers": hs,
            "body": bytes(body or b"").hex(), "client": client,
        })
        self._wait(lambda: rid in self._answers, timeout)
        with self._cond:
            a = self._answers.pop(rid)
        body = b"" if method == "HEAD" else bytes.fromhex(a["body"])
        return MockResponse(a["status"], body, {k: v for k, v in a["headers"]})
