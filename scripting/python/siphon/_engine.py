"""Dispatch engine of the embedded ``siphon`` package (one copy per interpreter, i.e. per core).

Rust calls ``dispatch(h, kind, method, request_id)`` for every event and reads the result:
``None`` (handlers ran; the actions they recorded through ``_siphon`` are final), an ``int``
(no handler matched), or a coroutine (at least one ``async def`` handler: Rust steps it with
``PyIter_Send`` and hands it to :func:`suspend` only if it really suspends).

Semantics follow SIPhon (siphon-core-api.md section 1.1): every matching handler runs in
registration order; actions are deferred; no action is a silent drop; no handler is
``500 No Script Handler``; an exception is ``500 Script Error`` with the traceback logged;
in ``on_reply`` a reply is dropped unless relayed.

Module-level state in user scripts is per core by construction. Share through ``cache``.
"""

import asyncio
import inspect
import os
import sys
import traceback
import types

import _siphon

from ._message import Reply, Request

_ERROR = 40


class Registry:
    """Handler registry: 5-tuples ``(kind, filter, callable, is_async, metadata)``."""

    def __init__(self):
        self.entries = []

    def register(self, kind, filter, fn, is_async, metadata=None):
        self.entries.append((kind, filter, fn, is_async, metadata))
        _resolved.clear()

    def clear(self):
        self.entries = []
        _resolved.clear()

    def of_kind(self, kind):
        return [e for e in self.entries if e[0] == kind]


registry = Registry()
# The request event whose handlers are running (``presence.publish`` reads its PUBLISH); -1
# outside one. A stale handle is harmless: Rust checks it names a live event.
current_request = -1
_resolved = {}
_relay_cbs = {}
_RELAY_CB_LIMIT = 100_000


def parse_filter(flt):
    """``"INVITE|SUBSCRIBE"`` -> frozenset; ``None``/``""`` -> None (all methods)."""
    if flt is None:
        return None
    if isinstance(flt, str):
        parts = [p.strip().upper() for p in flt.split("|") if p.strip()]
    else:
        parts = [str(p).strip().upper() for p in flt]
    return frozenset(parts) or None


def is_async_fn(fn):
    return inspect.iscoroutinefunction(fn)


def _handlers(kind, method):
    key = (kind, method)
    r = _resolved.get(key)
    if r is None:
        hs = tuple(
            (fn, a) for k, f, fn, a, _ in registry.entries if k == kind and (f is None or method in f)
        )
        r = (hs, any(a for _, a in hs))
        if len(_resolved) >= 512:
            _resolved.clear()  # bounded: methods are peer-chosen tokens
        _resolved[key] = r
    return r


def _run(hs, args, h, req):
    try:
        for fn, _ in hs:
            fn(*args)
            if req._stopped:
                break
    except BaseException:
        _siphon.script_error(h, traceback.format_exc())


async def _arun(hs, args, h, req):
    try:
        for fn, a in hs:
            if a:
                await fn(*args)
            else:
                fn(*args)
            if req._stopped:
                break
    except asyncio.CancelledError:
        # The node answered without us (its timeout) and cancelled the handler: the node's
        # log says so; anything else cancelling it is the script's own error.
        if h not in _node_cancelled:
            _siphon.script_error(h, traceback.format_exc())
    except BaseException:
        _siphon.script_error(h, traceback.format_exc())


def _single(fn):
    return ((fn, is_async_fn(fn)),), is_async_fn(fn)


def dispatch(h, kind, method, rid):
    global current_request
    if kind == "request":
        # The node is the presence agent of what its compositor holds (``siphon.presence``):
        # such a SUBSCRIBE is answered before the script's handlers.
        if method == "SUBSCRIBE" and _siphon.pres_agent(h):
            return None
        current_request = h
        # Keyed by the method alone (other kinds' keys are tuples): no key tuple per request.
        r = _resolved.get(method)
        if r is None:
            r = _handlers("proxy.on_request", method)
            if len(_resolved) >= 512:
                _resolved.clear()  # bounded: methods are peer-chosen tokens
            _resolved[method] = r
        hs, anya = r
        if not hs:
            return 1
        req = Request(h, method)
        if anya:
            return _arun(hs, (req,), h, req)
        try:
            if len(hs) == 1:
                hs[0][0](req)
            else:
                for fn, _ in hs:
                    fn(req)
                    if req._stopped:
                        break
        except BaseException:
            _siphon.script_error(h, traceback.format_exc())
        return None
    current_request = -1
    req = Request(h, method)
    if kind == "cancel":
        hs, anya = _handlers("proxy.on_cancel", method)
        args = (req,)
    else:
        rep = Reply(h)
        args = (req, rep)
        cbs = _relay_cbs.get(rid) if rid >= 0 else None
        if kind == "failure":
            _relay_cbs.pop(rid, None)
            if cbs is not None and cbs[1] is not None:
                hs, anya = _single(cbs[1])
            else:
                hs, anya = _handlers("proxy.on_failure", method)
        else:
            final = rep.status_code >= 200
            if final and rep.status_code < 300:
                _relay_cbs.pop(rid, None)
            if cbs is not None and cbs[0] is not None:
                hs, anya = _single(cbs[0])
            elif kind == "register_reply":
                hs, anya = _handlers("proxy.on_register_reply", method)
            else:
                hs, anya = _handlers("proxy.on_reply", method)
    if not hs:
        return 1
    if anya:
        return _arun(hs, args, h, req)
    _run(hs, args, h, req)
    return None


def remember_relay(event_id, on_reply, on_failure):
    if len(_relay_cbs) >= _RELAY_CB_LIMIT:
        _relay_cbs.pop(next(iter(_relay_cbs)))
    _relay_cbs[event_id] = (on_reply, on_failure)


# ---- asyncio: only suspended coroutines get here ------------------------------------------

_loop = asyncio.new_event_loop()
asyncio.events._set_running_loop(_loop)


@types.coroutine
def _trampoline(coro, y):
    # Pass the already-started coroutine's yields through to the Task driving us.
    while True:
        try:
            v = yield y
        except BaseException as e:
            try:
                y = coro.throw(e)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                y = coro.send(v)
            except StopIteration as stop:
                return stop.value


# Suspended request/reply handlers by handle (``cancel_event``), and those the node cancelled.
_event_tasks = {}
_node_cancelled = set()


def cancel_event(h):
    """The node answered event ``h`` without the script (``transaction.timeout_secs``, a
    stalled worker) or its transaction ended: cancel its handler, which sees
    ``CancelledError`` at its ``await`` (its ``finally`` blocks run). True if it was running."""
    t = _event_tasks.get(h)
    if t is None or t.done():
        return False
    _node_cancelled.add(h)
    t.cancel()
    return True


async def _resume(coro, y, h, ctx=None):
    try:
        if ctx is None:
            await _trampoline(coro, y)
            return
        # An SMPP on_pdu handler's own coroutine (``siphon.smpp._dispatch``): its value or
        # its exception answers the PDU.
        from . import smpp
        try:
            r = await _trampoline(coro, y)
        except BaseException as e:
            smpp._fail(ctx, e)
        else:
            smpp._finish(ctx, r)
    finally:
        if ctx is None:
            _event_tasks.pop(h, None)
            _node_cancelled.discard(h)
        _siphon.done(h)


class _FirstStep:
    """The current task while Rust runs a handler's first step, which happens outside any
    asyncio Task (a Task per event costs ~7 us; most handlers never suspend). asyncio.timeout,
    wait_for and TaskGroup ask for the current task and later cancel/uncancel it: until the
    handler suspends this stands in, then it forwards to the Task that drives the rest."""

    # Class defaults and no __init__: Rust creates one per handler step without running any
    # Python code (an instance dict appears only if the handler cancels or suspends).
    task = None
    _cancels = 0

    def cancel(self, msg=None):
        if self.task is not None:
            return self.task.cancel(msg)
        self._cancels += 1
        return True

    def cancelling(self):
        return self.task.cancelling() if self.task is not None else self._cancels

    def uncancel(self):
        if self.task is not None:
            return self.task.uncancel()
        if self._cancels > 0:
            self._cancels -= 1
        return self._cancels

    def done(self):
        return self.task.done() if self.task is not None else False

    def get_loop(self):
        return _loop

    def __getattr__(self, name):
        task = object.__getattribute__(self, "task")
        if task is None:
            raise AttributeError(name)
        return getattr(task, name)


_enter_task = asyncio.tasks._enter_task
_leave_task = asyncio.tasks._leave_task


def suspend(coro, y, h, step=None, ctx=None):
    task = _loop.create_task(_resume(coro, y, h, ctx))
    if ctx is None:
        _event_tasks[h] = task
    if step is not None:
        step.task = task
        for _ in range(step._cancels):
            task.cancel()


def run_loop_once():
    """One turn of this interpreter's loop; seconds until it needs another (-1: idle)."""
    loop = _loop
    asyncio.events._set_running_loop(None)
    try:
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        asyncio.events._set_running_loop(loop)
    if loop._ready:
        return 0.0
    if loop._scheduled:
        return max(0.0, loop._scheduled[0].when() - loop.time())
    return -1.0


# ``loop_ready()``: how many callbacks the loop has ready (a task a handler created without
# suspending); non-zero, the worker gives it a turn after the batch. The ready queue's own
# ``__len__`` (asyncio never replaces the deque): the worker calls it after every batch, and
# a C slot costs no Python frame.
loop_ready = _loop._ready.__len__


async def _guard(coro, what):
    try:
        await coro
    except BaseException:
        _siphon.log(_ERROR, f"{what} failed:\n{traceback.format_exc()}")


def call_user(fn, args, what):
    """Run a callback outside an event (timer, on_change): sync or async, errors logged."""
    try:
        r = fn(*args)
        if inspect.iscoroutine(r):
            _loop.create_task(_guard(r, what))
    except BaseException:
        _siphon.log(_ERROR, f"{what} failed:\n{traceback.format_exc()}")


def registrar_event(aor, kind):
    """A binding change found by the Rust expiry sweep (delivered to worker 0)."""
    from ._namespaces import registrar
    registrar._changed(aor, kind)


# ---- timers: Rust fires a token into this worker's queue -----------------------------------

_timers = {}
_keyed = {}
_next_token = [0]


# The longest delay a timer, TTL or window accepts (a year): beyond it a number is a mistake.
MAX_DELAY_S = 365 * 24 * 3600.0


def check_delay(value, what):
    """A finite, non-negative number of seconds no larger than a year, else ValueError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number, not {type(value).__name__}") from None
    if v != v or v < 0 or v > MAX_DELAY_S:
        raise ValueError(f"{what} must be between 0 and {MAX_DELAY_S:.0f} seconds, got {value!r}")
    return v


def new_timer(entry, delay_s):
    _next_token[0] += 1
    tok = _next_token[0]
    _timers[tok] = entry
    try:
        _siphon.timer_start(tok, delay_s * 1000.0)
    except BaseException:
        # limits.max_script_timers reached: forget the entry, the caller sees RuntimeError.
        _timers.pop(tok, None)
        raise
    return tok


def fire_timer(tok):
    t = _timers.pop(tok, None)
    if t is None:
        return
    kind = t[0]
    if kind == "future":
        fut = t[1]
        if not fut.done():
            fut.set_result(None)
    elif kind == "set":
        key, fn = t[1], t[2]
        if _keyed.get(key) == tok:
            del _keyed[key]
        call_user(fn, (), f"timer {key!r}")
    elif kind == "request_timeout":
        fut = _pending_requests.pop(t[1], None)
        if fut is not None and not fut.done():
            fut.set_result(None)
    elif kind == "every":
        fn, seconds, name = t[1], t[2], t[3]
        new_timer(t, seconds)
        call_user(fn, (), f"timer {name!r}")


def _start_periodic():
    for tok in [k for k, v in _timers.items() if v[0] in ("every", "set")]:
        del _timers[tok]
    _keyed.clear()
    # Module state is per core: a periodic timer runs on every core so each core's globals
    # stay fresh, unless it asked for once per node (per_core=False: core 0 only).
    first = _siphon.worker_id() == 0
    for _, _, fn, _, md in registry.of_kind("timer.every"):
        if not md.get("per_core", True) and not first:
            continue
        seconds = float(md.get("seconds", 1.0))
        new_timer(("every", fn, seconds, md.get("name") or fn.__name__), seconds)


# ---- (re)loading the app script ------------------------------------------------------------

app = None


def load(path):
    """Compile and exec the script into a fresh module; on failure keep the old handlers."""
    global app
    path = os.path.abspath(path)
    dirs = [os.path.dirname(path)] + [os.path.abspath(p) for p in _siphon.include_paths()]
    for d in reversed(dirs):
        if d not in sys.path:
            sys.path.insert(0, d)
    try:
        with open(path, encoding="utf-8") as f:
            src = f.read()
        code = compile(src, path, "exec")
    except BaseException:
        _siphon.log(_ERROR, f"script {path} failed to compile; keeping the old handlers:\n{traceback.format_exc()}")
        return False
    old = registry.entries
    registry.clear()
    evicted = {}
    prefixes = tuple(d.rstrip(os.sep) + os.sep for d in dirs)
    for name, m in list(sys.modules.items()):
        f = getattr(m, "__file__", None)
        if f and not f.startswith("<") and os.path.abspath(f).startswith(prefixes):
            evicted[name] = sys.modules.pop(name)
    mod = types.ModuleType("__siphon_app__")
    mod.__file__ = path
    try:
        exec(code, mod.__dict__)
    except BaseException:
        registry.entries = old
        _resolved.clear()
        sys.modules.update(evicted)
        _siphon.log(_ERROR, f"script {path} raised at import; keeping the old handlers:\n{traceback.format_exc()}")
        return False
    sys.modules["__siphon_app__"] = mod
    first_load = app is None
    app = mod
    _start_periodic()
    _http_loaded(first_load)
    # Exported on /metrics, and read by `siphon check` (a script needs at least one handler).
    _siphon.metric_decl("gauge", "siphon_script_handlers", "Handlers registered by the loaded script", [], None)
    _siphon.metric_op("siphon_script_handlers", [], 1, float(len(registry.entries)))
    # Per kind, so the node sends replies/failures to Python only when a handler wants them.
    _siphon.metric_decl("gauge", "siphon_script_handlers_by_kind", "Handlers by hook", ["kind"], None)
    for kind in _NODE_HOOK_KINDS:
        n = sum(1 for e in registry.entries if e[0] == kind)
        _siphon.metric_op("siphon_script_handlers_by_kind", [kind], 1, float(n))
    return True


_NODE_HOOK_KINDS = ("proxy.on_request", "proxy.on_reply", "proxy.on_failure", "proxy.on_cancel", "proxy.on_register_reply")


def shutdown():
    loop = _loop
    asyncio.events._set_running_loop(None)
    try:
        for t in asyncio.all_tasks(loop):
            t.cancel()
        loop.call_soon(loop.stop)
        loop.run_forever()
        loop.close()
    except BaseException:
        pass


# ---- outbound requests (proxy.send_request) -------------------------------------------------

_pending_requests = {}


def complete_request(token, snapshot):
    fut = _pending_requests.pop(token, None)
    if fut is None or fut.done():
        return
    if snapshot is None:
        fut.set_result(None)
    else:
        from ._message import DetachedReply
        fut.set_result(DetachedReply(*snapshot))


# ---- SMPP (feature `smpp`): events from the reactors' SMPP sessions ------------------------

# SMPP events go straight to ``siphon.smpp._dispatch`` (Rust imports it at the first one).


def smpp_complete(token, status, message_id):
    from . import smpp
    smpp._complete(token, status, message_id)


# ---- HTTP (feature `http`): client completions and route requests --------------------------

def _http_loaded(first_load):
    """After a (re)load: publish the route table to the node (core 0), and on the first load
    run ``@http.on_startup`` hooks (every core, before the node binds its listeners)."""
    m = sys.modules.get("siphon.http")
    if m is None:
        if first_load:
            _siphon.http_started()
        return
    if _siphon.worker_id() == 0:
        flat = []
        for path, methods, origin in m._routes():
            flat += [path, ",".join(methods), origin]
        _siphon.http_set_routes(flat)
    if first_load:
        m._run_hooks("http.startup")
        # Async hooks run to completion here, before the node binds (asyncio-only awaits).
        pending = [t for t in asyncio.all_tasks(_loop) if not t.done()]
        if pending:
            asyncio.events._set_running_loop(None)
            try:
                _loop.run_until_complete(asyncio.wait(pending, timeout=30))
            finally:
                asyncio.events._set_running_loop(_loop)
        # The node binds its HTTP listeners once every core got here.
        _siphon.http_started()


def http_complete(token, reply, error):
    from . import http
    http._complete(token, reply, error)


def http_dispatch(ev):
    from . import http
    http._dispatch(ev)


def http_cancel(id):
    from . import http
    http._cancel(id)


def http_shutdown():
    m = sys.modules.get("siphon.http")
    if m is not None:
        m._run_hooks("http.shutdown")
