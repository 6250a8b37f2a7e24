"""``SipTestHarness``: test a routing script in THE REAL embedded engine (own-GIL
subinterpreters, the native ``_siphon`` module, the embedded ``siphon`` package), driven
through the ``siphon-script-driver`` binary's JSON-lines protocol. No mocks: what passes here is
what the node runs.

The API is upstream SIPhon's (``siphon_sdk.testing``), so a test written for it runs here::

    from siphon_sdk.testing import SipTestHarness
    from siphon_sdk.types import Contact

    harness = SipTestHarness(local_domains=["example.com"])
    harness.load_script("proxy.py")
    harness.registrar.add_contact("sip:alice@example.com",
                                  Contact(uri="sip:alice@192.168.1.5:5060"))
    result = harness.send_request("INVITE", "sip:alice@example.com")
    assert result.action == "fork" and "sip:alice@192.168.1.5:5060" in result.targets

Differences that come from running the real engine, not a mock:

- the engine process starts at the first ``load_script``/``load_source`` (or at the first
  use); ``load_source`` replaces the running script (a hot reload) rather than adding to it,
  and a script that fails to load raises (the script's own exception type when it is a
  builtin one, e.g. ``ImportError`` for a namespace this engine does not have);
- ``auth`` verifies real digests: seed users with ``harness.auth.add_user`` and send real
  credentials, or pass ``send_request(auth_user=...)``; the mock's ``auth._allow`` switch is
  refused with an error;
- a handler's exception is the engine's ``500 Script Error`` (``result.script_error``), not
  an exception in the test; a request no handler matches is the engine's 500;
- ``harness.log.messages`` also holds the engine's own lines (script errors, reloads);
- upstream's B2BUA, rtpengine, gateway, Diameter and other handles raise
  :class:`NotSupported` naming the namespace.

The driver binary is the one the wheel installed next to this Python, or ``$SIPHON_DRIVER``
(``scripting/run-tests.sh`` sets it); see ``siphon_sdk._engine``.
"""

from __future__ import annotations

import builtins
import itertools
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Optional

from .reply import Reply
from .request import Request
from .types import Action, Contact, SipUri

from ._driver import DriverProcess, HarnessError

_DEFAULT_TIMEOUT = 30.0

__all__ = ["SipTestHarness", "RequestResult", "ReplyResult", "DriverError", "ScriptLoadError",
           "NotSupported", "Request", "Reply", "Contact", "SipUri", "Action"]


class DriverError(HarnessError):
    """The engine process failed or did not answer."""


class ScriptLoadError(Exception):
    """The script did not load (``message`` has the engine's traceback)."""


def _load_error(text: str) -> ScriptLoadError:
    """A ScriptLoadError that is also the script's builtin exception type when it names one
    (``pytest.raises(ImportError)`` then works as against upstream's in-process loader)."""
    for line in reversed(text.splitlines()):
        name = line.split(":", 1)[0].strip().rsplit(" ", 1)[-1]
        exc = getattr(builtins, name, None)
        if isinstance(exc, type) and issubclass(exc, Exception) and exc is not Exception:
            try:
                return type(name, (ScriptLoadError, exc), {})(text)
            except TypeError:
                break
    return ScriptLoadError(text)


try:
    class NotSupported(AttributeError, NotImplementedError):
        """An upstream harness member this engine has no counterpart for."""
except TypeError:  # pragma: no cover - layout conflict on some interpreters
    class NotSupported(AttributeError):  # type: ignore[no-redef]
        """An upstream harness member this engine has no counterpart for."""


# Upstream harness members that need a namespace or subsystem this engine does not have.
_UNSUPPORTED = {
    "rtpengine": "siphon.rtpengine (media anchoring)",
    "b2bua": "siphon.b2bua (B2BUA call control)",
    "gateway": "siphon.gateway (destination groups)",
    "diameter": "siphon.diameter (Cx/Rx/Ro/Rf)",
    "li": "siphon.li (lawful intercept)",
    "hss": "siphon.diameter (the mock HSS drives Diameter Cx)",
    "pcrf": "siphon.diameter (the mock PCRF drives Diameter Rx)",
    "presence": "the mock presence store (the engine's siphon.presence has no test view)",
    "cdr": "siphon.cdr", "registration": "siphon.registration (outbound REGISTER)",
    "srs": "siphon.srs (SIPREC)", "isc": "siphon.isc", "sbi": "siphon.sbi",
    "ipsec": "siphon.ipsec", "sdp": "siphon.sdp",
    "send_invite": "siphon.b2bua", "send_answer": "siphon.b2bua",
    "send_provisional": "siphon.b2bua", "send_failure": "siphon.b2bua",
    "send_bye": "siphon.b2bua", "send_call_cancel": "siphon.b2bua", "send_refer": "siphon.b2bua",
    "set_inbound_limit": "siphon.b2bua (b2bua.inbound_limit)",
    "clear_inbound_limit": "siphon.b2bua (b2bua.inbound_limit)",
    "advance_time": "siphon.b2bua (b2bua.inbound_limit)",
    "inbound_calls_active": "siphon.b2bua (b2bua.inbound_limit)",
}


def _unsupported(what: str, needs: str) -> NotSupported:
    return NotSupported(f"{what} is not supported by this SDK: it needs {needs}, which the "
                        "siphon engine does not implement")


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

def _actions(raw: dict) -> list:
    d = raw["disposition"]
    out = [Action(kind="record_route")] if raw.get("record_route") else []
    kind = d["kind"]
    if kind == "reply":
        out.append(Action(kind="reply", status_code=d.get("status"), reason=d.get("reason"),
                          headers_set=_first_values(d.get("headers")),
                          reliable=bool(d.get("reliable"))))
    elif kind == "relay":
        out.append(Action(kind="relay", next_hop=d.get("next_hop")))
    elif kind == "fork":
        out.append(Action(kind="fork", targets=list(d.get("targets") or []),
                          strategy=d.get("strategy")))
    elif kind == "forward_reply":
        out.append(Action(kind="relay"))
    elif kind == "reject_reply":
        out.append(Action(kind="reject", status_code=d.get("status"), reason=d.get("reason")))
    return out


def _first_values(headers) -> dict:
    """``{name: first value}`` (a challenge offers MD5 first, then SHA-256)."""
    out: dict = {}
    for n, v in headers or []:
        out.setdefault(n, v)
    return out


def _last(actions, attr):
    for a in reversed(actions):
        v = getattr(a, attr)
        if v is not None:
            return v
    return None


class _Outcome:
    """What :class:`RequestResult` and :class:`ReplyResult` share: the script's last action and
    what its actions carry."""

    actions: list
    raw: Optional[dict]

    @property
    def action(self) -> str:
        """``"reply"``, ``"relay"``, ``"fork"`` ... (the last action), or ``"silent_drop"``."""
        return self.actions[-1].kind if self.actions else "silent_drop"

    @property
    def status_code(self) -> Optional[int]:
        """The status of the script's reply or reject (not a response's own)."""
        return _last(self.actions, "status_code")

    @property
    def reason(self) -> Optional[str]:
        return _last(self.actions, "reason")

    @property
    def targets(self) -> Optional[list]:
        return _last(self.actions, "targets")

    @property
    def strategy(self) -> Optional[str]:
        return _last(self.actions, "strategy")

    @property
    def was_relayed(self) -> bool:
        return any(a.kind == "relay" for a in self.actions)

    @property
    def was_forked(self) -> bool:
        return any(a.kind == "fork" for a in self.actions)

    @property
    def was_dropped(self) -> bool:
        return self.action == "silent_drop"

    # -- beyond upstream: what the real engine reports --
    @property
    def script_error(self) -> bool:
        """A handler raised (the engine answers ``500 Script Error``)."""
        return bool(self.raw and self.raw.get("script_error"))

    @property
    def headers(self) -> list:
        """Headers of the reply the script sent (``(name, value)``, repeats kept)."""
        d = (self.raw or {}).get("disposition") or {}
        return [tuple(h) for h in d.get("headers") or []]


@dataclass
class RequestResult(_Outcome):
    """What the script did with a request: :attr:`actions` (record_route first, then the
    final reply/relay/fork) and :attr:`request`, the request as the script left it."""

    request: Request
    actions: list = field(default_factory=list)
    raw: Optional[dict] = field(default=None, repr=False)
    sent: Optional[str] = field(default=None, repr=False)
    id: Optional[int] = None

    @property
    def next_hop(self) -> Optional[str]:
        for a in reversed(self.actions):
            if a.kind == "relay":
                return a.next_hop
        return None

    @property
    def record_routed(self) -> bool:
        return any(a.kind == "record_route" for a in self.actions)

    # -- beyond upstream: what the real engine reports --
    @property
    def auth_user(self) -> Optional[str]:
        return self.request.auth_user

    @property
    def body(self):
        """``[content_type, text]`` of the reply the script sent, or None."""
        return ((self.raw or {}).get("disposition") or {}).get("body")

    @property
    def core(self) -> Optional[int]:
        return (self.raw or {}).get("core")

    @property
    def request_text(self) -> Optional[str]:
        """The request as the script left it, raw."""
        return (self.raw or {}).get("request") or self.sent

    def header(self, name: str) -> Optional[str]:
        """First header ``name`` of the reply the script sent."""
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def __repr__(self) -> str:
        return f"<RequestResult {self.action} {self.status_code or ''} {self.reason or ''}>"


@dataclass
class ReplyResult(_Outcome):
    """What the script did with a response: :attr:`reply` as the script left it and its
    :attr:`actions` (``relay`` when relayed, ``reject`` when rejected)."""

    reply: Reply
    actions: list = field(default_factory=list)
    raw: Optional[dict] = field(default=None, repr=False)

    @property
    def next_hop(self) -> Optional[str]:
        """Where ``@proxy.on_failure`` relayed the request again, if it did."""
        return _last(self.actions, "next_hop")

    def __repr__(self) -> str:
        return f"<ReplyResult {self.action} {self.status_code or ''}>"


# ---------------------------------------------------------------------------------------------
# Handles on engine state (harness.registrar / auth / cache / log / proxy)
# ---------------------------------------------------------------------------------------------

class RegistrarHandle:
    """``harness.registrar``: the engine's location service, seeded and read from the test.
    ``add_contact`` writes a binding as a REGISTER would (no ``received``), so the script's
    ``registrar.lookup`` finds it; it does not fire ``@registrar.on_change``."""

    def __init__(self, h: "SipTestHarness") -> None:
        self._h = h
        self._n = itertools.count(1)

    def add_contact(self, aor: str, contact) -> None:
        """Add a binding of ``contact`` (a :class:`Contact` or a URI string) to ``aor``."""
        c = contact if isinstance(contact, Contact) else Contact(uri=str(contact))
        params = f";q={c.q:g}" if c.q is not None else ""
        params += f";expires={int(c.expires)}"
        if c.instance_id:
            params += f';+sip.instance="{c.instance_id}"'
        n = next(self._n)
        aor_uri = str(SipUri.parse(aor))
        req = Request(method="REGISTER", ruri=f"sip:{SipUri.parse(aor).host}", from_uri=aor_uri,
                      to_uri=aor_uri, call_id=f"sdk-seed-{n}@harness", cseq=(n, "REGISTER"),
                      headers=[("Contact", f"<{c.uri}>{params}")] + [("Path", p) for p in c.path])
        self._h._state({"op": "registrar_add", "msg": req.to_sip()}, seed=True)
        self._h._aors.add(aor_uri)

    def lookup(self, uri) -> list:
        """The AoR's live bindings as :class:`Contact` objects, preferred first."""
        r = self._h._state({"op": "registrar_lookup", "aor": str(uri)})
        return [Contact(uri=c["uri"], q=c["q"], expires=c["expires"], path=list(c["path"]),
                        instance_id=c.get("instance_id"), received=c.get("received"),
                        age_secs=c.get("age_secs", 0)) for c in r["contacts"]]

    def is_registered(self, uri) -> bool:
        return bool(self.lookup(uri))

    def remove(self, uri) -> None:
        """Remove every binding of the AoR."""
        self._h._state({"op": "registrar_remove", "aor": str(uri)})

    expire = remove

    def clear(self) -> None:
        """Remove every binding the test seeded or registered through this harness."""
        self._h._seeds = [s for s in self._h._seeds if s["op"] != "registrar_add"]
        if self._h._proc is not None:
            for aor in sorted(self._h._aors):
                self.remove(aor)
        self._h._aors.clear()


class AuthHandle:
    """``harness.auth``: digest users of the engine (``auth.add_user``)."""

    def __init__(self, h: "SipTestHarness") -> None:
        self._h = h

    def add_user(self, realm: str, username: str, password: str) -> None:
        """Let ``username`` authenticate with ``password`` in ``realm`` (a real digest check)."""
        self._h._state({"op": "auth_add_user", "realm": realm, "username": username,
                        "password": password}, seed=True)

    @property
    def _allow(self) -> bool:
        return False

    @_allow.setter
    def _allow(self, value: bool) -> None:
        raise _unsupported("harness.auth._allow", "a mock digest check; this engine verifies "
                           "real credentials (seed them with harness.auth.add_user, or pass "
                           "send_request(auth_user=...) for an already authenticated request)")


class CacheHandle:
    """``harness.cache``: the engine's shared cache, preset from the test."""

    def __init__(self, h: "SipTestHarness") -> None:
        self._h = h

    def set_data(self, name: str, data: Optional[dict] = None) -> None:
        """Create or replace cache ``name`` with ``data``; ``cache.has_cache(name)`` is then
        true in the script."""
        data = {str(k): str(v) for k, v in (data or {}).items()}
        self._h._seeds = [s for s in self._h._seeds
                          if not (s["op"] == "cache_set" and s["name"] == name)]
        self._h._state({"op": "cache_set", "name": name, "data": data}, seed=True)

    def clear(self) -> None:
        """Drop every cache entry (and the names ``set_data`` made)."""
        self._h._seeds = [s for s in self._h._seeds if s["op"] != "cache_set"]
        if self._h._proc is not None:
            self._h._state({"op": "cache_clear"})

    async def fetch(self, name: str, key: str) -> Optional[str]:
        """What the script's ``await cache.fetch(name, key)`` would return now."""
        return self._h._state({"op": "cache_fetch", "name": name, "key": key})["value"]


class LogHandle:
    """``harness.log``: every line the engine logged, ``messages`` as ``(level, text)`` with
    levels ``debug``/``info``/``warn``/``error``."""

    def __init__(self, h: "SipTestHarness") -> None:
        self._h = h

    @property
    def messages(self) -> list:
        with self._h._cond:
            return [(m["level"], m["msg"]) for m in self._h.logs]

    def clear(self) -> None:
        with self._h._cond:
            self._h.logs.clear()


class ProxyHandle:
    """``harness.proxy``: requests the script sent with ``proxy.send_request``
    (``sent_requests``) and the answers they get (``set_response_for``)."""

    def __init__(self, h: "SipTestHarness") -> None:
        self._h = h
        self._responses: dict = {}

    @property
    def sent_requests(self) -> list:
        """Each as a dict: method, ruri, headers, body, next_hop, wait_for_response,
        timeout_ms."""
        keys = ("method", "ruri", "headers", "body", "next_hop", "wait_for_response",
                "timeout_ms")
        with self._h._cond:
            out = []
            for o in self._h.outbound:
                d = {k: o.get(k) for k in keys}
                d["headers"] = {n: v for n, v in o.get("headers") or []}
                out.append(d)
            return out

    def set_response_for(self, method: str, ruri: str, reply) -> None:
        """Answer the script's ``send_request(method, ruri, wait_for_response=True)`` with
        ``reply`` (a :class:`~siphon_sdk.reply.Reply`, a status code, or None for no
        answer)."""
        self._responses[(method.upper(), str(ruri))] = reply

    def _answer(self, o: dict) -> None:
        key = (str(o.get("method", "")).upper(), str(o.get("ruri", "")))
        if not o.get("wait_for_response") or key not in self._responses:
            return
        reply = self._responses[key]
        if isinstance(reply, int):
            reply = Reply(reply, "OK" if 200 <= reply < 300 else "Response")
        self._h.respond(o, None if reply is None else reply.status_code,
                        None if reply is None else reply.reason,
                        headers=None if reply is None else reply.headers)

    def __getattr__(self, name: str):
        if name == "_utils":
            raise _unsupported("harness.proxy._utils", "mock switches for rate_limit, "
                               "sanity_check, enum_lookup and memory_used_pct; this engine "
                               "computes them for real")
        raise AttributeError(name)


# ---------------------------------------------------------------------------------------------
# The harness
# ---------------------------------------------------------------------------------------------

class SipTestHarness(DriverProcess):
    """Run a routing script in the real engine with ``cores`` interpreters.

    ``SipTestHarness(local_domains=["example.com"])`` then ``load_script(path)`` or
    ``load_source(text)`` (upstream's form), or ``SipTestHarness(source=SCRIPT, cores=2)``
    to start at once. Keyword options: ``auth_users`` (``{user: password}``, any realm),
    ``auth_realm``, ``script_config``, ``include_paths``, ``min_expires``, ``reload``,
    ``force_shared`` (one shared interpreter), ``driver`` (path of siphon-script-driver).
    """

    _ANSWER = "actions"
    _CALL = "outbound"
    _error = DriverError

    def __init__(self, local_domains: Optional[list] = None, *, script: Optional[str] = None,
                 source: Optional[str] = None, cores: int = 2, auth_users: Optional[dict] = None,
                 auth_realm: str = "example.com", script_config: Optional[dict] = None,
                 reload: str = "sighup", include_paths: Optional[list] = None,
                 min_expires: Optional[int] = None, driver: Optional[str] = None,
                 force_shared: bool = False) -> None:
        self._init_driver("siphon-test-", cores, driver, "app.py")
        self.local_domains = list(local_domains or ["example.com"])
        self._cfg = {
            "local_domains": self.local_domains,
            "auth_realm": auth_realm,
            "auth_users": auth_users or {},
            "script_config": script_config or {},
            "include_paths": list(include_paths or []),
            "cache_names": ["default", "main"],
        }
        if min_expires is not None:
            self._cfg["registrar"] = {"min_expires": min_expires}
        self._reload_mode = reload
        self._force_shared = force_shared
        self._clock = threading.RLock()
        self._seeds: list = []
        self._aors: set = set()
        self.logs: list = []
        self.outbound: list = []
        self.registrar = RegistrarHandle(self)
        self.auth = AuthHandle(self)
        self.cache = CacheHandle(self)
        self.log = LogHandle(self)
        self.proxy = ProxyHandle(self)
        self.script = script or self._script
        if script is None:
            with open(self._script, "w") as f:
                f.write(source or "")
        if script is not None or source is not None:
            self._start()

    def __getattr__(self, name: str):
        if name in _UNSUPPORTED:
            raise _unsupported(f"SipTestHarness.{name}", _UNSUPPORTED[name])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def cores(self) -> int:
        """How many cores (interpreters) the engine runs."""
        return self._cores

    @cores.setter
    def cores(self, n: int) -> None:
        self._cores = n

    # -- the engine process --
    def _start(self) -> None:
        self._spawn(self._cfg, self.script, self._reload_mode,
                    ["--force-shared"] if self._force_shared else [])
        for s in list(self._seeds):
            self._state(s)

    def _start_error(self, first) -> ScriptLoadError:
        with self._cond:
            errors = [m["msg"] for m in self.logs if m["level"] == "error"]
        return _load_error("\n".join([first.get("message", str(first))] + errors))

    def _on_log(self, msg) -> None:
        self.logs.append(msg)

    def _on_call(self, proc, msg) -> None:
        """A request the script sent (``proxy.send_request``): kept, and answered when the
        test set an answer for it."""
        with self._cond:
            self.outbound.append(msg)
            self._cond.notify_all()
        try:
            self.proxy._answer(msg)
        except (OSError, ValueError):
            pass

    def _control_reply(self, op, timeout=_DEFAULT_TIMEOUT, **kw):
        with self._clock:
            self._send({"op": op, **kw})
            return self._control.get(timeout=timeout)

    def _state(self, op: dict, seed: bool = False) -> dict:
        """One state op (registrar/auth/cache); ``seed`` ones are replayed on every start."""
        if seed and op not in self._seeds:
            self._seeds.append(op)
            if self._proc is None:
                return {}
        r = self._control_reply(**op)
        if r.get("type") == "error":
            raise DriverError(r.get("message", str(r)))
        if r.get("type") == "registrar" and r.get("status", 200) != 200:
            raise DriverError(f"registrar refused the binding: {r['status']} {r.get('reason')}")
        return r

    # -- raw events (beyond upstream) --
    def submit(self, kind, msg, core=0, reply=None, request_id=None, source="127.0.0.1:5060",
               transport="udp", auth_user=None) -> int:
        """Queue a raw event; returns its id (see :meth:`result`)."""
        eid = next(self._ids)
        ev = {"op": "event", "id": eid, "core": core, "kind": kind, "msg": msg, "source": source,
              "transport": transport}
        if reply is not None:
            ev["reply"] = reply
        if request_id is not None:
            ev["request_id"] = request_id
        if auth_user is not None:
            ev["auth_user"] = auth_user
        self._send(ev)
        return eid

    def result(self, eid, timeout=_DEFAULT_TIMEOUT) -> dict:
        self._wait(lambda: eid in self._answers, timeout)
        with self._cond:
            return self._answers.pop(eid)

    def _request_result(self, raw, sent, eid, req: Request) -> RequestResult:
        acts = _actions(raw)
        view = Request._from_wire(raw.get("request") or sent, transport=req.transport,
                                  source_ip=req.source_ip, source_port=req.source_port,
                                  auth_user=raw.get("auth_user"), actions=acts)
        view.ruri._is_local = view.ruri.host in self.local_domains
        return RequestResult(request=view, actions=acts, raw=raw, sent=sent, id=eid)

    # -- upstream's API --
    def load_script(self, path: str) -> None:
        """Run the script at ``path`` (its directory is importable). Raises
        ``FileNotFoundError`` when it does not exist and the script's error when it does not
        load."""
        path = os.path.abspath(path)
        if not os.path.exists(path):
            raise FileNotFoundError(f"Script not found: {path}")
        if self._proc is not None and path == self.script:
            self._reload_or_raise()
            return
        self._stop()
        self.script = path
        self._start()

    def load_source(self, source: str, name: str = "<test>") -> None:
        """Run ``source`` as the script, replacing the one running (hot reload)."""
        with open(self._script, "w") as f:
            f.write(source)
        if self._proc is not None and self.script == self._script:
            self._reload_or_raise()
            return
        self._stop()
        self.script = self._script
        self._start()

    def _reload_or_raise(self) -> None:
        with self._cond:
            mark = len(self.logs)
        if self.reload() != 0:
            with self._cond:
                errors = [m["msg"] for m in self.logs[mark:] if m["level"] == "error"]
            raise _load_error("\n".join(errors) or "script reload failed")

    def build_request(self, method="INVITE", ruri="sip:bob@example.com", **kw) -> str:
        """Raw text of a request (``Request``'s keyword arguments)."""
        return Request(method, ruri, **kw).to_sip()

    def send_request(self, method: str = "INVITE", ruri="sip:bob@example.com", *,
                     from_uri="sip:alice@example.com", to_uri=None, from_tag=None, to_tag=None,
                     call_id=None, cseq=None, max_forwards: int = 70, body=None,
                     content_type=None, transport: str = "udp", source_ip: str = "127.0.0.1",
                     user_agent=None, auth_user=None, contact_expires=None, event=None,
                     headers=None, source_port: int = 5060, core: int = 0) -> RequestResult:
        """Send a request through ``@proxy.on_request`` and return what the script did.

        For REGISTER, ``to_uri`` defaults to ``from_uri`` (the AoR), else to ``ruri``.
        ``cseq`` is ``(number, method)``; ``headers`` a dict (a list value gives one line per
        item) or ``(name, value)`` pairs; ``auth_user`` makes the request arrive already
        authenticated as that user. As in the node, Max-Forwards 0 is answered 483 and a
        CANCEL is relayed hop by hop without running the script.
        """
        if isinstance(cseq, int):
            cseq = (cseq, method)
        if to_uri is None:
            to_uri = from_uri if method == "REGISTER" else ruri
        req = Request(method, ruri, from_uri=from_uri, to_uri=to_uri, from_tag=from_tag,
                      to_tag=to_tag, call_id=call_id, cseq=cseq, max_forwards=max_forwards,
                      body=body, content_type=content_type, transport=transport,
                      source_ip=source_ip, source_port=source_port, user_agent=user_agent,
                      auth_user=auth_user, contact_expires=contact_expires, event=event,
                      headers=headers)
        if method == "REGISTER" and req.to_uri is not None:
            self._aors.add(str(req.to_uri))
        sent = req.to_sip()
        if max_forwards == 0 or method == "CANCEL":
            acts = [Action(kind="reply", status_code=483, reason="Too Many Hops")
                    if max_forwards == 0 else Action(kind="relay")]
            view = Request._from_wire(sent, transport=transport, source_ip=source_ip,
                                      source_port=source_port, auth_user=auth_user, actions=acts)
            return RequestResult(request=view, actions=acts, sent=sent)
        eid = self.submit("request", sent, core=core, source=f"{source_ip}:{source_port}",
                          transport=transport, auth_user=auth_user)
        return self._request_result(self.result(eid), sent, eid, req)

    def send_reply(self, request=None, status_code: int = 200, reason: str = "OK", *,
                   from_uri=None, to_uri=None, call_id=None, body=None, content_type=None,
                   headers=None, kind: str = "reply", core: int = 0,
                   request_id=None) -> ReplyResult:
        """Deliver a response to ``request`` (a :class:`Request`, a :class:`RequestResult`
        from :meth:`send_request`, raw text, or None for a default INVITE) and return what
        ``@proxy.on_reply`` did. A response to a REGISTER goes to
        ``@proxy.on_register_reply``, as in the node; ``kind="failure"`` runs
        ``@proxy.on_failure``. Given a RequestResult, the request's per-relay
        ``on_reply``/``on_failure`` callbacks apply."""
        if isinstance(request, RequestResult):
            rid = request.id
            req = Request._from_wire(request.sent or request.request.to_sip())
        else:
            rid = None
            req = Request._from_wire(request) if isinstance(request, str) else (request or Request())
        if request_id is not None:
            rid = request_id
        rep = Reply(status_code, reason, from_uri=from_uri, to_uri=to_uri, call_id=call_id,
                    body=body, content_type=content_type, headers=headers)
        reply_text = rep._to_sip(req)
        if kind == "reply" and req.method == "REGISTER":
            kind = "register_reply"
        eid = self.submit(kind, req.to_sip(), core=core, reply=reply_text, request_id=rid,
                          source=f"{req.source_ip}:{req.source_port}", transport=req.transport)
        raw = self.result(eid)
        acts = _actions(raw)
        view = Reply._from_wire(raw.get("reply") or reply_text, actions=acts)
        return ReplyResult(reply=view, actions=acts, raw=raw)

    def send_cancel(self, request=None, **kwargs: Any) -> RequestResult:
        """Run ``@proxy.on_cancel`` for a cancelled INVITE: ``request`` (a :class:`Request`
        or :class:`RequestResult`), or one built from ``kwargs`` (``Request``'s arguments,
        method INVITE)."""
        if isinstance(request, RequestResult):
            sent = request.sent or request.request.to_sip()
            req = Request._from_wire(sent)
        else:
            req = request if request is not None else Request(method="INVITE", **kwargs)
            sent = req.to_sip()
        eid = self.submit("cancel", sent, source=f"{req.source_ip}:{req.source_port}",
                          transport=req.transport)
        return self._request_result(self.result(eid), sent, eid, req)

    def reset(self) -> None:
        """Start over: the engine stops (handlers, registrar, users, cache and log go with
        it) and starts again, empty, at the next load or send."""
        self._stop()
        self._seeds.clear()
        self._aors.clear()
        self.proxy._responses.clear()
        with self._cond:
            self.logs.clear()
            self.outbound.clear()
            self._answers.clear()
        with open(self._script, "w") as f:
            f.write("")
        self.script = self._script

    # -- beyond upstream --
    def wait_outbound(self, count=1, timeout=_DEFAULT_TIMEOUT) -> list:
        """Wait until ``count`` requests were sent by scripts (``proxy.send_request``)."""
        self._wait(lambda: len(self.outbound) >= count, timeout)
        with self._cond:
            return list(self.outbound)

    def respond(self, outbound, status_code=200, reason="OK", headers=None) -> None:
        """Answer a script's outbound request (``None`` status: the request failed)."""
        reply = None
        if status_code is not None:
            items = headers.items() if isinstance(headers, dict) else (headers or [])
            extra = "".join(f"{k}: {v}\r\n" for k, v in items)
            reply = f"SIP/2.0 {status_code} {reason}\r\n{extra}Content-Length: 0\r\n\r\n"
        self._send({"op": "respond", "worker": outbound["worker"], "token": outbound["token"],
                    "reply": reply})

    def reload(self) -> int:
        """SIGHUP-style reload; returns the number of workers that kept the old handlers."""
        return self._control_reply("reload")["failed"]

    def metrics(self) -> str:
        return self._control_reply("metrics")["text"]

    def info(self) -> dict:
        return self._control_reply("info")

    def logs_matching(self, text, level=None) -> list:
        with self._cond:
            return [m for m in self.logs
                    if text in m["msg"] and (level is None or m["level"] == level)]

    def wait_log(self, text, timeout=_DEFAULT_TIMEOUT) -> None:
        self._wait(lambda: any(text in m["msg"] for m in self.logs), timeout)
