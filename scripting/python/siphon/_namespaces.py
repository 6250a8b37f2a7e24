"""The script namespaces: ``proxy``, ``registrar``, ``auth``, ``log``, ``cache``, ``timer``,
``metrics``, ``config`` (siphon-core-api.md sections 1.3, 1.5, 1.7-1.9, 1.11).

``registrar``, ``cache``, auth nonces, rate limits and metrics live in Rust and are shared by
every core; anything a script keeps in module globals is per core.
"""

import json

import _siphon

from . import _engine
from ._message import Contact

_LEVELS = {"debug": 10, "info": 20, "warn": 30, "error": 40}


def _decorator(kind, arg, metadata=None):
    """Support ``@ns.hook``, ``@ns.hook()`` and ``@ns.hook("INVITE|SUBSCRIBE")``."""
    if callable(arg):
        _engine.registry.register(kind, None, arg, _engine.is_async_fn(arg), metadata)
        return arg
    flt = _engine.parse_filter(arg)

    def deco(fn):
        _engine.registry.register(kind, flt, fn, _engine.is_async_fn(fn), metadata)
        return fn

    return deco


class _Ready:
    """An awaitable that is already complete (in-memory cache calls never suspend)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __await__(self):
        return self.value
        yield  # noqa: unreachable; makes this a generator


class _Proxy:
    def on_request(self, filter=None):
        return _decorator("proxy.on_request", filter)

    def on_reply(self, filter=None):
        return _decorator("proxy.on_reply", filter)

    def on_failure(self, filter=None):
        return _decorator("proxy.on_failure", filter)

    def on_cancel(self, filter=None):
        return _decorator("proxy.on_cancel", filter)

    def on_register_reply(self, filter=None):
        return _decorator("proxy.on_register_reply", filter)

    def rate_limit(self, request, window_secs, max_requests):
        return _siphon.rate_limit(request.source_ip, float(window_secs), int(max_requests))

    def sanity_check(self, request):
        return _siphon.sanity(request._h)

    async def send_request(self, method, ruri, headers=None, body=None, next_hop=None,
                           wait_for_response=False, timeout_ms=2000, flow=None, route=None):
        """Send an out-of-dialog request through the node; with ``wait_for_response`` return
        its final Reply (or None on failure/timeout), else None at once."""
        items = headers.items() if isinstance(headers, dict) else (headers or [])
        flat = []
        for k, v in items:
            flat += [str(k), str(v)]
        if route is not None:
            flat += ["Route", f"<{route}>"]
        if wait_for_response:
            _engine.check_delay(timeout_ms / 1000.0, "send_request timeout_ms")
        tok = _siphon.send_request(str(method), str(ruri), flat, body, None if next_hop is None else str(next_hop),
                                   bool(wait_for_response), int(timeout_ms))
        if not wait_for_response:
            return None
        fut = _engine._loop.create_future()
        _engine._pending_requests[tok] = fut
        _engine.new_timer(("request_timeout", tok), timeout_ms / 1000.0)
        return await fut

    def memory_used_pct(self):
        return 0


class _Registrar:
    def save(self, request, force=False, aliases=None, flow_token=None):
        """Save the REGISTER's bindings and answer it (200 with the bindings, or 4xx)."""
        ok, _aor, events = _siphon.reg_save(request._h)
        for aor, event in events:
            self._changed(aor, event)
        return ok

    def _changed(self, aor, event):
        contacts = self.lookup(aor)
        for _, _, fn, _, _ in _engine.registry.of_kind("registrar.on_change"):
            _engine.call_user(fn, (aor, event, contacts), "registrar.on_change")

    def lookup(self, uri):
        return [Contact(u, q, e, a, r, p, i) for (u, q, e, a, r, p, i) in _siphon.reg_lookup(str(uri))]

    def lookup_contact(self, uri):
        c = self.lookup(uri)
        return c[0] if c else None

    def is_registered(self, uri):
        return bool(_siphon.reg_lookup(str(uri)))

    def is_registered_contact(self, uri):
        return self.is_registered(uri)

    def expire(self, uri):
        if _siphon.reg_expire(str(uri)):
            self._changed(str(uri), "expired")
            return True
        return False

    def remove(self, uri):
        if _siphon.reg_remove(str(uri)):
            self._changed(str(uri), "deregistered")
            return True
        return False

    async def aor_count(self):
        return _siphon.reg_count()

    def on_change(self, fn):
        return _decorator("registrar.on_change", fn)


class _Auth:
    def require_www_digest(self, target, realm=None, password=None, ha1=None):
        return _siphon.auth_digest(target._h, 0, realm, password, ha1)

    def require_proxy_digest(self, target, realm=None, password=None, ha1=None):
        return _siphon.auth_digest(target._h, 1, realm, password, ha1)

    def require_digest(self, target, realm=None, password=None, ha1=None):
        return _siphon.auth_digest(target._h, 0, realm, password, ha1)

    def verify_digest(self, target, realm=None, password=None, ha1=None):
        return _siphon.auth_digest(target._h, 2, realm, password, ha1)

    def generate_nonce(self):
        return _siphon.auth_nonce()

    def validate_nonce(self, nonce):
        return _siphon.auth_validate(nonce)


class _Log:
    def debug(self, msg):
        _siphon.log(10, str(msg))

    def info(self, msg):
        _siphon.log(20, str(msg))

    def warn(self, msg):
        _siphon.log(30, str(msg))

    warning = warn

    def error(self, msg):
        _siphon.log(40, str(msg))


class _Cache:
    """Named caches; in memory and shared by all cores (a Redis URL is not wired yet)."""

    def fetch(self, name, key):
        return _Ready(_siphon.cache_fetch(name, str(key)))

    def store(self, name, key, value, ttl=None):
        return _Ready(_siphon.cache_store(name, str(key), str(value), None if ttl is None else float(ttl)))

    def delete(self, name, key):
        return _Ready(_siphon.cache_delete(name, str(key)))

    def exists(self, name, key):
        return _Ready(_siphon.cache_exists(name, str(key)))

    def list_push(self, name, key, item):
        return _Ready(_siphon.list_push(name, str(key), str(item)))

    def list_pop_all(self, name, key):
        return _Ready(_siphon.list_pop_all(name, str(key)))

    def list_len(self, name, key):
        return _Ready(_siphon.list_len(name, str(key)))

    def expire(self, name, key, ttl):
        return _Ready(_siphon.cache_expire(name, str(key), float(ttl)))

    def has_cache(self, name):
        return _siphon.cache_has(name)


class TimerHandle:
    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key

    def cancel(self):
        return timer.cancel(self.key)


class _Timer:
    def every(self, seconds, name=None, jitter=0, per_core=True):
        """Run ``fn`` every ``seconds``. Module globals are per core, so by default the timer
        runs on every core (each core's globals stay fresh); ``per_core=False`` runs it once
        per node (on core 0), for timers whose point is a side effect."""
        seconds = _engine.check_delay(seconds, "timer.every seconds")

        def deco(fn):
            md = {"seconds": seconds, "name": name, "jitter": jitter, "per_core": bool(per_core)}
            _engine.registry.register("timer.every", None, fn, _engine.is_async_fn(fn), md)
            return fn

        return deco

    def set(self, key, delay_ms, handler):
        delay = _engine.check_delay(float(delay_ms) / 1000.0, "timer.set delay_ms")
        self.cancel(key)
        tok = _engine.new_timer(("set", key, handler), delay)
        _engine._keyed[key] = tok
        return TimerHandle(key)

    def cancel(self, key):
        tok = _engine._keyed.pop(key, None)
        if tok is None:
            return False
        _engine._timers.pop(tok, None)
        return True

    @property
    def active_count(self):
        return len(_engine._keyed)

    def sleep(self, seconds):
        """Await a Rust timer (completes by posting to this worker's queue)."""
        delay = _engine.check_delay(seconds, "timer.sleep seconds")
        fut = _engine._loop.create_future()
        _engine.new_timer(("future", fut), delay)
        return fut


class _Metric:
    __slots__ = ("_name", "_labels", "_values")

    def __init__(self, name, labels, values=()):
        self._name = name
        self._labels = labels
        self._values = list(values)

    def labels(self, *args, **kw):
        vals = [str(a) for a in args] + [str(kw[n]) for n in self._labels[len(args):]]
        return type(self)(self._name, self._labels, vals)


class Counter(_Metric):
    __slots__ = ()

    def inc(self, n=1.0):
        _siphon.metric_op(self._name, self._values, 0, float(n))


class Gauge(_Metric):
    __slots__ = ()

    def inc(self, n=1.0):
        _siphon.metric_op(self._name, self._values, 0, float(n))

    def dec(self, n=1.0):
        _siphon.metric_op(self._name, self._values, 0, -float(n))

    def set(self, v):
        _siphon.metric_op(self._name, self._values, 1, float(v))


class Histogram(_Metric):
    __slots__ = ()

    def observe(self, v):
        _siphon.metric_op(self._name, self._values, 2, float(v))


class _Metrics:
    def counter(self, name, help="", labels=None):
        _siphon.metric_decl("counter", name, help, list(labels or ()), None)
        return Counter(name, list(labels or ()))

    def gauge(self, name, help="", labels=None):
        _siphon.metric_decl("gauge", name, help, list(labels or ()), None)
        return Gauge(name, list(labels or ()))

    def histogram(self, name, help="", labels=None, buckets=None):
        b = None if buckets is None else [repr(float(x)) for x in buckets]
        _siphon.metric_decl("histogram", name, help, list(labels or ()), b)
        return Histogram(name, list(labels or ()))


_MISSING = object()


class _Config:
    _doc = None

    def _root(self):
        if self._doc is None:
            type(self)._doc = json.loads(_siphon.config_json())
        return self._doc

    def get(self, key, default=None):
        v = self._lookup(key)
        return default if v is _MISSING else v

    def require(self, key):
        v = self._lookup(key)
        if v is _MISSING:
            raise KeyError(f"script_config: missing required key {key!r}")
        return v

    def _lookup(self, key):
        cur = self._root()
        for part in str(key).split("."):
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
                cur = cur[int(part)]
            else:
                return _MISSING
        return cur


proxy = _Proxy()
registrar = _Registrar()
auth = _Auth()
log = _Log()
cache = _Cache()
timer = _Timer()
metrics = _Metrics()
config = _Config()
