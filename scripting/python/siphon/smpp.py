"""siphon.smpp: the SMPP 3.4 extension's script namespace (built with ``--features smpp``).

ESMEs bind to siphon's SMPP listener; ``@smpp.on_bind`` decides each bind,
``@smpp.on_pdu(command)`` answers each PDU, ``@smpp.on_session(event)`` sees sessions come and
go, and ``deliver_to``/``data_to``/``alert_to`` push PDUs to a bound ESME. Outbound binds
(``binds:`` in smpp.yaml) carry ``submit_via``/``submit_multi_via``/``data_via``/``cancel_via``/
``query_via``/``replace_via`` to upstream SMSCs (from any core: the bind's owner sends, the
answer comes back here); their deliver_sm (DLRs, MO), data_sm and alert_notification reach
``@smpp.on_pdu`` with a ``Session`` of kind ``"bind"``. Handlers may be
sync or ``async def``; they are looked up per PDU, so a script reload applies to the next PDU.

Each session is owned by one core and its PDUs run in that core's interpreter: share state
through ``cache``, not module globals.
"""

import asyncio
import inspect
import json
import struct
import traceback
import types

import _siphon

from . import _engine
from ._smpp_codec import NAMES as _NAMES
from ._smpp_codec import STATUSES, TLVS
from ._smpp_codec import encode_tlvs as _encode_tlvs
from ._smpp_codec import parse_tlvs as _parse_tlvs
from ._smpp_codec import status_code as _status_code
from ._smpp_codec import tag_of as _tag_of

_new = object.__new__
_CoroutineType = types.CoroutineType

__all__ = [
    "on_bind", "on_pdu", "on_session",
    "deliver_to", "data_to", "alert_to",
    "submit_via", "submit_multi_via", "data_via", "cancel_via", "query_via", "replace_via",
    "Bind", "BindResult", "Session", "Pdu", "PduReply", "AlertNotification", "SmppResp",
    "QueryResp", "STATUSES", "COMMANDS",
    "bind_address", "config", "binds", "routing_rules",
]

_ERROR = 40
_WARN = 30

COMMANDS = ("submit_sm", "submit_sm_multi", "deliver_sm", "data_sm", "cancel_sm", "query_sm",
            "replace_sm", "alert_notification")

_STATES = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 6: "ACCEPTD",
           7: "UNKNOWN", 8: "REJECTD"}


# ---- objects -------------------------------------------------------------------------------

class Session:
    """A bound SMPP session: ``kind`` ("esme"|"bind"), ``session_id``, ``system_id``,
    ``client_addr``."""

    __slots__ = ("kind", "session_id", "system_id", "client_addr")

    def __init__(self, kind, session_id, system_id, client_addr):
        self.kind = kind
        self.session_id = session_id
        self.system_id = system_id
        self.client_addr = client_addr

    def __repr__(self):
        return f"Session({self.kind!r}, {self.session_id!r}, {self.system_id!r})"


class BindResult:
    """What ``Bind.accept()``/``reject()`` return; truthy when it accepts."""

    __slots__ = ("accept", "status", "reason")

    def __init__(self, accept, status="ESME_ROK", reason=""):
        self.accept = accept
        self.status = status
        self.reason = reason

    def __bool__(self):
        return bool(self.accept)

    def __repr__(self):
        return f"BindResult(accept={self.accept}, status={self.status!r})"


class Bind:
    """A bind request: ``system_id``, ``password``, ``system_type``, ``bind_type``
    ("transceiver"|"transmitter"|"receiver"), ``interface_version``, ``client_addr``."""

    __slots__ = ("system_id", "password", "system_type", "bind_type", "interface_version",
                 "client_addr")

    def __init__(self, system_id, password, client_addr, system_type="", bind_type="transceiver",
                 interface_version=0x34):
        self.system_id = system_id
        self.password = password
        self.client_addr = client_addr
        self.system_type = system_type
        self.bind_type = bind_type
        self.interface_version = interface_version

    def accept(self):
        return BindResult(True)

    def reject(self, status="ESME_RBINDFAIL", reason=""):
        _status_code(status)
        return BindResult(False, status, reason)


class PduReply:
    """A handler's answer (``pdu.reply(...)`` / ``pdu.reply_query(...)``)."""

    __slots__ = ("command_status", "message_id", "tlvs", "message_state", "final_date",
                 "error_code", "_query")

    def __init__(self, *, command_status="ESME_ROK", message_id=None, tlvs=None,
                 message_state=None, final_date="", error_code=0, _query=False):
        self.command_status = command_status
        self.message_id = message_id
        self.tlvs = tlvs
        self.message_state = message_state
        self.final_date = final_date
        self.error_code = error_code
        self._query = _query

    @property
    def ok(self):
        return self.command_status == "ESME_ROK"

    def __repr__(self):
        return f"PduReply({self.command_status!r}, message_id={self.message_id!r})"


class SmppResp:
    """The result of a send helper: ``command_status`` (name), ``message_id``, ``ok``."""

    __slots__ = ("command_status", "message_id")

    def __init__(self, command_status, message_id=""):
        self.command_status = command_status
        self.message_id = message_id

    @property
    def ok(self):
        return self.command_status == "ESME_ROK"

    def __repr__(self):
        return f"SmppResp({self.command_status!r}, {self.message_id!r})"


class QueryResp(SmppResp):
    __slots__ = ("message_state", "final_date", "error_code")

    def __init__(self, command_status, message_id="", message_state=0, final_date="",
                 error_code=0):
        super().__init__(command_status, message_id)
        self.message_state = message_state
        self.final_date = final_date
        self.error_code = error_code


_RECEIPT_KEYS = ("submit date", "done date", "dlvrd", "stat", "text", "sub", "err", "id")


def _parse_receipt(body, tlvs):
    text = body.decode("latin-1") if isinstance(body, (bytes, bytearray)) else str(body or "")
    low = text.lower()
    hits = []
    for key in _RECEIPT_KEYS:  # longest first
        start = 0
        while True:
            i = low.find(key + ":", start)
            if i < 0:
                break
            clash = any(s <= i < e for s, e, _ in hits)
            if not clash and (i == 0 or not low[i - 1].isalpha()):
                hits.append((i, i + len(key) + 1, key))
                break
            start = i + 1
    hits.sort()
    out = {}
    for n, (s, e, key) in enumerate(hits):
        end = hits[n + 1][0] if n + 1 < len(hits) else len(text)
        out[key] = text[e:end].strip()
    rid = tlvs.get(0x001E)
    state = tlvs.get(0x0427)
    if not out and rid is None and state is None:
        return None
    if "id" not in out and rid is not None:
        out["id"] = rid.rstrip(b"\0").decode("latin-1")
    if state is not None and len(state) == 1:
        if "stat" not in out:
            out["stat"] = _STATES.get(state[0], "UNKNOWN")
        out["message_state"] = state[0]
    out["raw"] = text
    return out


class Pdu:
    """An inbound PDU. Read ``body`` for the text (message_payload if present, else
    short_message); ``tlvs`` maps tag -> value octets; ``tlv(name|tag)`` reads one."""

    # Slots: a PDU is built for every request on the hot path (see ``_dispatch``); ``__dict__``
    # stays for scripts that tag a PDU with their own attributes.
    __slots__ = ("_core", "_id", "_session", "command", "message_id", "service_type",
                 "source_addr_ton", "source_addr_npi", "source_addr", "dest_addr_ton",
                 "dest_addr_npi", "destination_addr", "esm_class", "protocol_id",
                 "priority_flag", "registered_delivery", "data_coding", "short_message",
                 "destinations", "_raw_tlvs", "_tlvs", "__dict__")

    _INT_FIELDS = ("source_addr_ton", "source_addr_npi", "dest_addr_ton", "dest_addr_npi",
                   "esm_class", "protocol_id", "priority_flag", "registered_delivery",
                   "data_coding")

    def __init__(self, core, ev_id, command, fields, session):
        self._core = core
        self._id = ev_id
        self._session = session
        self.command = command
        self.message_id = fields.get("message_id", "")
        self.service_type = fields.get("service_type", "")
        self.source_addr = fields.get("source_addr", "")
        self.destination_addr = fields.get("destination_addr", "")
        for k in self._INT_FIELDS:
            setattr(self, k, fields.get(k, 0))
        self.short_message = fields.get("short_message", b"")
        self.destinations = list(fields.get("destinations", ()))
        self._raw_tlvs = fields.get("tlvs", b"")
        self._tlvs = None

    @property
    def sm_length(self):
        return len(self.short_message)

    @property
    def tlvs(self):
        if self._tlvs is None:
            self._tlvs = _parse_tlvs(self._raw_tlvs)
        return self._tlvs

    def tlv(self, key):
        return self.tlvs.get(_tag_of(key))

    def _int(self, tag):
        v = self.tlvs.get(tag)
        return None if v is None or not v else int.from_bytes(v, "big")

    @property
    def message_payload(self):
        return self.tlvs.get(0x0424)

    @property
    def body(self):
        p = self.tlvs.get(0x0424)
        return p if p is not None else self.short_message

    @property
    def receipted_message_id(self):
        v = self.tlvs.get(0x001E)
        return None if v is None else v.rstrip(b"\0").decode("latin-1")

    message_state = property(lambda self: self._int(0x0427))
    user_message_reference = property(lambda self: self._int(0x0204))
    sar_msg_ref_num = property(lambda self: self._int(0x020C))
    sar_total_segments = property(lambda self: self._int(0x020E))
    sar_segment_seqnum = property(lambda self: self._int(0x020F))
    more_messages_to_send = property(lambda self: self._int(0x0426))

    @property
    def network_error_code(self):
        v = self.tlvs.get(0x0423)
        if v is None or len(v) != 3:
            return None
        return (v[0], int.from_bytes(v[1:], "big"))

    @property
    def is_tpdu(self):
        return bool(self.esm_class & 0x40)

    @property
    def is_dlr(self):
        return bool(self.esm_class & 0x04)

    @property
    def receipt(self):
        if not self.is_dlr:
            return None
        return _parse_receipt(self.body, self.tlvs)

    def reply(self, *, command_status="ESME_ROK", message_id=None, tlvs=None):
        if command_status != "ESME_ROK":
            _status_code(command_status)
        if tlvs is not None:
            if self.command != "data_sm":
                raise ValueError("reply(tlvs=...) is only allowed on data_sm")
            _encode_tlvs(tlvs)
        # PduReply(...) without its keyword parsing: one per answered PDU.
        r = _new(PduReply)
        r.command_status = command_status
        r.message_id = message_id
        r.tlvs = tlvs
        r.message_state = None
        r.final_date = ""
        r.error_code = 0
        r._query = False
        return r

    def reply_query(self, *, message_state, message_id=None, final_date="", error_code=0):
        return PduReply(command_status="ESME_ROK",
                        message_id=self.message_id if message_id is None else message_id,
                        message_state=int(message_state), final_date=final_date,
                        error_code=int(error_code), _query=True)

    def __repr__(self):
        return f"Pdu({self.command!r}, {self.source_addr!r} -> {self.destination_addr!r})"


class AlertNotification:
    __slots__ = ("command", "source_addr", "esme_addr", "ms_availability_status")

    def __init__(self, fields):
        self.command = "alert_notification"
        self.source_addr = fields.get("source_addr", "")
        self.esme_addr = fields.get("esme_addr", "")
        v = _parse_tlvs(fields.get("tlvs", b"")).get(0x0422)
        self.ms_availability_status = v[0] if v else None


# ---- config readouts (spec section 2.4) ------------------------------------------------------

# What a script sees without an smpp.yaml: the documented defaults, no binds, no routing.
_DEFAULT_CONFIG = {
    "server": {
        "bind_address": "0.0.0.0", "port": 2775, "session_init_timer_ms": 5000,
        "enquire_link_timer_ms": 30000, "inactivity_timer_ms": 300000,
        "response_timer_ms": 30000, "max_msg_per_sec": 0, "throttle_action": "pace",
    },
    "binds": [],
    "routing": {"default_chain": [], "rules": []},
}

_BIND_KEYS = ("name", "host", "port", "system_id", "system_type", "bind_type", "max_msg_per_sec")


def __getattr__(name):
    # ``_config`` is read from the engine on first use (the loaded smpp.yaml: server without
    # tls, binds without password/timers/tls, routing), then kept as a module global that a
    # test harness may replace.
    if name == "_config":
        doc = json.loads(_siphon.smpp_config_json())
        if not isinstance(doc, dict):
            doc = json.loads(json.dumps(_DEFAULT_CONFIG))
        globals()["_config"] = doc
        return doc
    raise AttributeError(f"module 'siphon.smpp' has no attribute {name!r}")


def _cfg():
    return globals()["_config"] if "_config" in globals() else __getattr__("_config")


def bind_address():
    """The inbound listener's address as ``"host:port"``."""
    server = _cfg().get("server") or {}
    return f"{server.get('bind_address', '0.0.0.0')}:{server.get('port', 2775)}"


def config():
    """A shallow copy of ``_config`` (``{server, binds, routing}``)."""
    return dict(_cfg())


def binds():
    """The outbound binds: ``[{name, host, port, system_id, system_type, bind_type,
    max_msg_per_sec}]`` (no password, timers or tls)."""
    return [{k: b.get(k) for k in _BIND_KEYS} for b in _cfg().get("binds") or []]


def routing_rules():
    """``(default_chain, rules)`` from ``routing:`` (data only)."""
    routing = _cfg().get("routing") or {}
    return list(routing.get("default_chain") or []), list(routing.get("rules") or [])


# ---- decorators ----------------------------------------------------------------------------

def on_bind(fn):
    """``@smpp.on_bind``: ``(bind) -> bind.accept() | bind.reject(status) | bool``. The first
    registered handler decides."""
    _engine.registry.register("smpp.on_bind", None, fn, _engine.is_async_fn(fn))
    return fn


def on_pdu(command):
    """``@smpp.on_pdu("submit_sm")``: ``(pdu, session) -> pdu.reply(...) | None``. The first
    handler registered for the command answers it."""
    if command not in COMMANDS:
        raise ValueError(f"unknown SMPP command {command!r}; one of {', '.join(COMMANDS)}")

    def deco(fn):
        _engine.registry.register("smpp.on_pdu", None, fn, _engine.is_async_fn(fn),
                                  {"command": command})
        return fn
    return deco


def on_session(event):
    """``@smpp.on_session("bound"|"unbound")``: ``(session)``; every matching hook runs."""
    def deco(fn):
        _engine.registry.register("smpp.on_session", event, fn, _engine.is_async_fn(fn),
                                  {"event": event})
        return fn
    return deco


def _first(kind, command=None):
    for k, _f, fn, a, meta in _engine.registry.entries:
        if k == kind and (command is None or (meta or {}).get("command") == command):
            return fn, a
    return None, False


# ---- dispatch (called by the engine for every SMPP event) ----------------------------------

# command -> (no handler, raised) statuses (spec section 2.1 dispatch table).
_DEFAULTS = {
    "submit_sm": (0x00, 0x08),
    "submit_sm_multi": (0x08, 0x08),
    "data_sm": (0x08, 0x08),
    "cancel_sm": (0x11, 0x11),
    "replace_sm": (0x13, 0x13),
    "query_sm": (0x67, 0x67),
    "deliver_sm": (0x00, 0x08),
}


def _log(level, msg):
    _siphon.log(level, msg)


def _answer(core, ev_id, status, message_id="", tlvs=b"", query=None, error=False):
    if query is None:
        _siphon.smpp_answer(core, ev_id, status, message_id, tlvs, -1, "", 0, error)
    else:
        state, final_date, err = query
        _siphon.smpp_answer(core, ev_id, status, message_id, tlvs, state, final_date, err, error)


def _answer_pdu(core, ev_id, command, pdu, result):
    """Map a handler's return value onto the ``_resp`` (dispatch table)."""
    if result is not None and not isinstance(result, PduReply):
        _log(_WARN, f"smpp.on_pdu({command}) returned {type(result).__name__}, not a PduReply;"
                    " treated as None")
        result = None
    if command == "query_sm":
        if result is None:
            _answer(core, ev_id, 0, pdu.message_id, query=(0, "", 0))
            return
        status = _status_code(result.command_status)
        if result._query:
            _answer(core, ev_id, status, result.message_id or "",
                    query=(result.message_state or 0, result.final_date or "",
                           result.error_code or 0))
        else:
            _answer(core, ev_id, status, result.message_id or pdu.message_id, query=(0, "", 0))
        return
    if result is None:
        _answer(core, ev_id, 0, "")
        return
    status = _status_code(result.command_status)
    tlvs = _encode_tlvs(result.tlvs) if result.tlvs else b""
    _answer(core, ev_id, status, result.message_id or "" if status == 0 else "", tlvs)


# The fields the reactor sends, in this order, for submit_sm from an ESME and deliver_sm
# from an SMSC (edge/node/src/smpp/mod.rs `request`): ``_dispatch`` unpacks them by position.
# Any other layout (other commands, test drivers) takes the generic path by name.
_SM_NAMES = ("service_type", "source_addr_ton", "source_addr_npi", "source_addr",
             "dest_addr_ton", "dest_addr_npi", "destination_addr", "esm_class", "protocol_id",
             "priority_flag", "registered_delivery", "data_coding", "short_message", "tlvs")

# Session objects by session_id: one per bound session, shared by its PDUs; dropped when it
# unbinds (bounded in case an "unbound" never comes).
_sessions = {}
_SESSIONS_MAX = 100_000


def _session(kind, session_id, system_id, client_addr, fresh=False):
    s = None if fresh else _sessions.get(session_id)
    if s is None:
        s = Session(kind, session_id, system_id, client_addr)
        if len(_sessions) >= _SESSIONS_MAX:
            _sessions.clear()
        _sessions[session_id] = s
    return s


def _pdu_handler(command):
    """``(fn, is_async)`` of the first ``on_pdu(command)`` handler, cached in the engine's
    resolution table (cleared whenever the registry changes: registration, reload)."""
    key = ("smpp.on_pdu", command)
    r = _engine._resolved.get(key)
    if r is None:
        r = _engine._resolved[key] = _first("smpp.on_pdu", command)
    return r


def _dispatch(ev):
    """One SMPP event from the reactor (scripting/host/src/smpp.rs ``event_to_py``). Returns
    None (answered), a coroutine for Rust to step, or ``(coro, pdu)``: an ``on_pdu``
    handler's own coroutine, which Rust steps and ends with ``_finish(pdu, value)`` or
    ``_fail(pdu, exc)`` (no wrapper coroutine, no closures: this is the per-PDU path)."""
    ev_id, core, kind, command, session_id, system_id, client_addr, skind, names, values = ev
    if kind == "pdu" and names == _SM_NAMES:
        session = _sessions.get(session_id)
        if session is None:
            session = _session(skind, session_id, system_id, client_addr)
        fn = _pdu_handler(command)[0]
        pdu = _new(Pdu)
        pdu._core = core
        pdu._id = ev_id
        pdu._session = session
        pdu.command = command
        (pdu.service_type, pdu.source_addr_ton, pdu.source_addr_npi, pdu.source_addr,
         pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr, pdu.esm_class,
         pdu.protocol_id, pdu.priority_flag, pdu.registered_delivery, pdu.data_coding,
         pdu.short_message, pdu._raw_tlvs) = values
        pdu.message_id = ""
        pdu.destinations = []
        pdu._tlvs = None
        if fn is None:
            _siphon.smpp_answer(core, ev_id, _DEFAULTS[command][0], "", b"", -1, "", 0, False)
            return None
        try:
            r = fn(pdu, session)
        except BaseException as e:
            _fail(pdu, e)
            return None
        if type(r) is _CoroutineType:
            return (r, pdu)
        if r is not None and type(r) is not PduReply and inspect.isawaitable(r):
            return _finish_async(r, lambda v: _finish(pdu, v),
                                 lambda: _fail(pdu, None, logged=True),
                                 f"smpp.on_pdu({command})")
        _finish(pdu, r)
        return None
    fields = dict(zip(names, values))
    if kind == "session":
        if command == "unbound":
            session = _sessions.pop(session_id, None) or Session(skind, session_id, system_id,
                                                                 client_addr)
        else:
            session = _session(skind, session_id, system_id, client_addr, fresh=True)
        # The answer only says the hooks are done (the reactor has nothing to send for it).
        return _run_session(command, session, lambda: _answer(core, ev_id, 0))
    if kind == "bind":
        bind = Bind(system_id, fields.get("password", ""), client_addr,
                    fields.get("system_type", ""), command[5:],
                    fields.get("interface_version", 0x34))
        fn, is_async = _first("smpp.on_bind")
        if fn is None:
            _answer(core, ev_id, 0x0D)
            return None
        return _call(fn, is_async, (bind,), lambda r: _answer_bind(core, ev_id, r),
                     lambda: _answer(core, ev_id, 0x0D, error=True), "smpp.on_bind")
    # a PDU
    session = _session(skind, session_id, system_id, client_addr)
    if command == "alert_notification":
        fn, is_async = _first("smpp.on_pdu", command)
        if fn is None:
            _answer(core, ev_id, 0)
            return None
        return _call(fn, is_async, (AlertNotification(fields), session),
                     lambda r: _answer(core, ev_id, 0),
                     lambda: _answer(core, ev_id, 0, error=True),
                     "smpp.on_pdu(alert_notification)")
    pdu = Pdu(core, ev_id, command, fields, session)
    none_status, raised_status = _DEFAULTS.get(command, (0x08, 0x08))
    fn, is_async = _pdu_handler(command)
    if fn is None:
        if command == "query_sm" and none_status == 0:
            _answer(core, ev_id, 0, pdu.message_id, query=(0, "", 0))
        else:
            _answer(core, ev_id, none_status, "", query=(0, "", 0) if command == "query_sm" else None)
        return None

    def done(r):
        _answer_pdu(core, ev_id, command, pdu, r)

    def failed():
        _answer(core, ev_id, raised_status, "",
                query=(0, "", 0) if command == "query_sm" else None, error=True)
    return _call(fn, is_async, (pdu, session), done, failed, f"smpp.on_pdu({command})")


def _finish(pdu, r):
    """An ``on_pdu`` handler returned ``r``: answer its PDU (dispatch table)."""
    try:
        if (type(r) is PduReply and r.command_status == "ESME_ROK" and r.tlvs is None
                and pdu.command != "query_sm"):
            _siphon.smpp_answer(pdu._core, pdu._id, 0, r.message_id or "", b"", -1, "", 0, False)
        else:
            _answer_pdu(pdu._core, pdu._id, pdu.command, pdu, r)
    except BaseException as e:
        _fail(pdu, e)


def _fail(pdu, exc, logged=False):
    """An ``on_pdu`` handler raised ``exc``: log it, answer with the command's status."""
    command = pdu.command
    if not logged:
        tb = "".join(traceback.format_exception(exc)) if exc is not None else "unknown error\n"
        _log(_ERROR, f"smpp.on_pdu({command}) raised:\n{tb}")
    try:
        _answer(pdu._core, pdu._id, _DEFAULTS.get(command, (0x08, 0x08))[1], "",
                query=(0, "", 0) if command == "query_sm" else None, error=True)
    except BaseException:
        _log(_ERROR, traceback.format_exc())


def _answer_bind(core, ev_id, r):
    if isinstance(r, BindResult):
        if r.accept:
            _answer(core, ev_id, 0)
        else:
            if r.reason:
                _log(_WARN, f"bind rejected: {r.reason}")
            _answer(core, ev_id, _status_code(r.status))
        return
    _answer(core, ev_id, 0 if r else 0x0D)


def _call(fn, is_async, args, done, failed, what):
    try:
        r = fn(*args)
        if inspect.isawaitable(r):
            return _finish_async(r, done, failed, what)
        done(r)
    except BaseException:
        _log(_ERROR, f"{what} raised:\n{traceback.format_exc()}")
        try:
            failed()
        except BaseException:
            _log(_ERROR, traceback.format_exc())
    return None


async def _finish_async(aw, done, failed, what):
    try:
        r = await aw
        done(r)
    except BaseException:
        _log(_ERROR, f"{what} raised:\n{traceback.format_exc()}")
        try:
            failed()
        except BaseException:
            _log(_ERROR, traceback.format_exc())


def _run_session(event, session, done):
    hooks = [(fn, a) for k, f, fn, a, _m in _engine.registry.entries
             if k == "smpp.on_session" and f == event]
    if not hooks:
        done()
        return None

    async def run_all():
        for fn, _a in hooks:
            try:
                r = fn(session)
                if inspect.isawaitable(r):
                    await r
            except BaseException:
                _log(_ERROR, f"smpp.on_session({event}) raised:\n{traceback.format_exc()}")
        done()

    if not any(a for _f, a in hooks):
        for fn, _a in hooks:
            try:
                fn(session)
            except BaseException:
                _log(_ERROR, f"smpp.on_session({event}) raised:\n{traceback.format_exc()}")
        done()
        return None
    return run_all()


# ---- sends towards bound ESMEs -------------------------------------------------------------

_pending = {}
_next = [0]
# Status the reactor reports for a session that is not bound (not an SMPP status).
_NOT_BOUND = 0xFFFF_FFFF
_NOT_RX = 0xFFFF_FFFE


def _complete(token, status, message_id):
    fut = _pending.pop(token, None)
    if fut is not None and not fut.done():
        fut.set_result((status, message_id))


def _check_sm(short_message):
    if isinstance(short_message, str):
        short_message = short_message.encode()
    short_message = bytes(short_message or b"")
    if len(short_message) > 254:
        raise ValueError("short_message over 254 octets; use data_to or message_payload")
    return short_message


async def _send(session_id, command, source, dest, sm, service_type, tlvs, octets):
    _next[0] += 1
    token = _next[0]
    fut = asyncio.get_event_loop().create_future()
    _pending[token] = fut
    _siphon.smpp_send(session_id, command, token, source, dest, sm, service_type, tlvs, *octets)
    status, message_id = await fut
    if status == _NOT_BOUND:
        raise KeyError(f"esme session '{session_id}' not bound")
    if status == _NOT_RX:
        raise RuntimeError(f"esme session '{session_id}' cannot receive {command}")
    name = _NAMES.get(status, f"0x{status:08x}")
    if command == "alert_notification":
        return SmppResp("ESME_ROK", "")
    return SmppResp(name, message_id)


def deliver_to(*, session_id, source_addr, destination_addr, short_message, source_addr_ton=1,
               source_addr_npi=1, dest_addr_ton=1, dest_addr_npi=1, service_type="",
               esm_class=0, protocol_id=0, priority_flag=0, schedule_delivery_time="",
               validity_period="", registered_delivery=0, replace_if_present_flag=0,
               data_coding=0, sm_default_msg_id=0, tlvs=None):
    """Send deliver_sm to a bound receiver/transceiver ESME; awaitable -> SmppResp."""
    sm = _check_sm(short_message)
    raw = _encode_tlvs(tlvs)
    return _send(session_id, "deliver_sm", source_addr, destination_addr, sm, service_type, raw,
                 (source_addr_ton, source_addr_npi, dest_addr_ton, dest_addr_npi, esm_class,
                  protocol_id, priority_flag, registered_delivery, data_coding))


def data_to(*, session_id, source_addr, destination_addr, short_message=b"", source_addr_ton=1,
            source_addr_npi=1, dest_addr_ton=1, dest_addr_npi=1, service_type="", esm_class=0,
            registered_delivery=0, data_coding=0, tlvs=None):
    """Send data_sm to a bound ESME; ``short_message`` goes in MESSAGE_PAYLOAD."""
    if isinstance(short_message, str):
        short_message = short_message.encode()
    tlvs = dict(tlvs or {})
    has_payload = any(_tag_of(k) == 0x0424 for k in tlvs)
    if short_message and has_payload:
        raise ValueError("data_to: give short_message or a message_payload TLV, not both")
    raw = _encode_tlvs(tlvs)
    if short_message:
        raw = struct.pack(">HH", 0x0424, len(short_message)) + bytes(short_message) + raw
    return _send(session_id, "data_sm", source_addr, destination_addr, b"", service_type, raw,
                 (source_addr_ton, source_addr_npi, dest_addr_ton, dest_addr_npi, esm_class, 0, 0,
                  registered_delivery, data_coding))


def alert_to(*, session_id, source_addr, esme_addr, source_addr_ton=1, source_addr_npi=1,
             esme_addr_ton=1, esme_addr_npi=1, ms_availability_status=None):
    """Send alert_notification (no response PDU); awaitable -> SmppResp("ESME_ROK")."""
    raw = b"" if ms_availability_status is None else _encode_tlvs(
        {"ms_availability_status": int(ms_availability_status)})
    return _send(session_id, "alert_notification", source_addr, esme_addr, b"", "", raw,
                 (source_addr_ton, source_addr_npi, esme_addr_ton, esme_addr_npi, 0, 0, 0, 0, 0))


# ---- sends through outbound binds (spec section 2.3) ------------------------------------------

# Statuses the reactor reports for a bind (not SMPP statuses; see edge/node/src/smpp/binds.rs).
_NOT_TX = 0xFFFF_FFFD
_LOST = 0xFFFF_FFFC
_NACKED = 0xFFFF_FFFB
_NO_STORE = 0xFFFF_FFFA


async def _send_via(bind, command, source, dest, sm, service_type, tlvs, octets, message_id="",
                    destinations=(), schedule_delivery_time="", validity_period="",
                    replace_if_present_flag=0, sm_default_msg_id=0, store=False, esme=""):
    _next[0] += 1
    token = _next[0]
    fut = asyncio.get_event_loop().create_future()
    _pending[token] = fut
    dests = b"\0".join(str(d).encode() for d in destinations)
    _siphon.smpp_send_via(bind, command, token, source, dest, sm, service_type, tlvs, message_id,
                          dests, schedule_delivery_time, validity_period, *octets,
                          replace_if_present_flag, sm_default_msg_id, bool(store), esme)
    status, mid = await fut
    if status == _NOT_BOUND:
        raise KeyError(f"bind '{bind}' not bound")
    if status == _NO_STORE:
        raise RuntimeError(f"{_VIA_NAMES.get(command, command)}(store=True): smpp.yaml has no "
                           "store_and_forward")
    if status == _NOT_TX:
        raise RuntimeError(f"bind '{bind}' is a receiver bind; it cannot send {command}")
    if status == _LOST:
        raise RuntimeError(f"bind '{bind}' {command} failed: ESME_RSYSERR")
    if status == _NACKED:
        code = int(mid or 8)
        raise RuntimeError(f"bind '{bind}' {command} failed: "
                           f"{_NAMES.get(code, f'0x{code:08x}')} (generic_nack)")
    name = _NAMES.get(status, f"0x{status:08x}")
    if command == "query_sm":
        parts = (mid.split("\0") + ["", "0", "", "0"])[:4]
        return QueryResp(name, parts[0], int(parts[1] or 0), parts[2], int(parts[3] or 0))
    return SmppResp(name, mid)


_VIA_NAMES = {"submit_sm": "submit_via", "submit_sm_multi": "submit_multi_via",
              "data_sm": "data_via"}


def _esme_id(esme):
    """``esme=`` of a stored send: a Session (its system_id) or a system_id."""
    if esme is not None and not isinstance(esme, str):
        esme = esme.system_id
    return esme or ""


def _sub_octets(source_addr_ton, source_addr_npi, dest_addr_ton, dest_addr_npi, esm_class,
                protocol_id, priority_flag, registered_delivery, data_coding):
    return (source_addr_ton, source_addr_npi, dest_addr_ton, dest_addr_npi, esm_class,
            protocol_id, priority_flag, registered_delivery, data_coding)


def submit_via(*, bind, source_addr, destination_addr, short_message, source_addr_ton=1,
               source_addr_npi=1, dest_addr_ton=1, dest_addr_npi=1, service_type="",
               esm_class=0, protocol_id=0, priority_flag=0, schedule_delivery_time="",
               validity_period="", registered_delivery=0, replace_if_present_flag=0,
               data_coding=0, sm_default_msg_id=0, tlvs=None, store=False, esme=None):
    """submit_sm through the outbound bind ``bind``; awaitable -> SmppResp (``ok=False`` with
    the SMSC's status on a soft nack). KeyError at the await when the bind is not bound,
    RuntimeError for a receiver bind, a generic_nack, a timeout or a lost connection.

    ``store=True`` (ours; needs ``store_and_forward`` in smpp.yaml): the message is written
    to the durable queue and the await returns ``SmppResp("ESME_ROK", <our id>)`` once it is
    committed, whether or not the bind is up; the node forwards it with retries. A full queue
    returns ``ok=False`` with ESME_RMSGQFUL. ``esme`` (a Session or a system_id) is whom the
    SMSC's receipt goes back to, rewritten to our id; when the node drops the message (the
    SMSC's permanent error, ``retry.max_attempts`` or ``expire_secs``) and
    ``registered_delivery`` asked for a receipt, that ESME gets a failure receipt
    (stat:REJECTD or UNDELIV) from the node."""
    sm = _check_sm(short_message)
    raw = _encode_tlvs(tlvs)
    return _send_via(bind, "submit_sm", source_addr, destination_addr, sm, service_type, raw,
                     _sub_octets(source_addr_ton, source_addr_npi, dest_addr_ton, dest_addr_npi,
                                 esm_class, protocol_id, priority_flag, registered_delivery,
                                 data_coding),
                     schedule_delivery_time=schedule_delivery_time,
                     validity_period=validity_period,
                     replace_if_present_flag=replace_if_present_flag,
                     sm_default_msg_id=sm_default_msg_id, store=store, esme=_esme_id(esme))


def submit_multi_via(*, bind, source_addr, destinations, short_message, source_addr_ton=1,
                     source_addr_npi=1, dest_addr_ton=1, dest_addr_npi=1, service_type="",
                     esm_class=0, protocol_id=0, priority_flag=0, schedule_delivery_time="",
                     validity_period="", registered_delivery=0, replace_if_present_flag=0,
                     data_coding=0, sm_default_msg_id=0, tlvs=None, store=False, esme=None):
    """submit_multi to up to 254 SME addresses (dest TON/NPI apply to each).
    ``store``/``esme`` as for ``submit_via``: one id for the message; the ESME gets one
    receipt per destination."""
    sm = _check_sm(short_message)
    destinations = [str(d) for d in destinations]
    if len(destinations) > 254:
        raise ValueError("more than 254 destinations")
    if not destinations:
        raise ValueError("submit_multi_via needs at least one destination")
    raw = _encode_tlvs(tlvs)
    return _send_via(bind, "submit_sm_multi", source_addr, "", sm, service_type, raw,
                     _sub_octets(source_addr_ton, source_addr_npi, dest_addr_ton, dest_addr_npi,
                                 esm_class, protocol_id, priority_flag, registered_delivery,
                                 data_coding),
                     destinations=destinations, schedule_delivery_time=schedule_delivery_time,
                     validity_period=validity_period,
                     replace_if_present_flag=replace_if_present_flag,
                     sm_default_msg_id=sm_default_msg_id, store=store, esme=_esme_id(esme))


def data_via(*, bind, source_addr, destination_addr, short_message=b"", source_addr_ton=1,
             source_addr_npi=1, dest_addr_ton=1, dest_addr_npi=1, service_type="", esm_class=0,
             registered_delivery=0, data_coding=0, tlvs=None, store=False, esme=None):
    """data_sm through ``bind``; ``short_message`` goes in MESSAGE_PAYLOAD (any length up to
    64 KiB). The SMSC's message_id is returned (upstream always returns "").
    ``store``/``esme`` as for ``submit_via`` (the receipt comes back as deliver_sm)."""
    if isinstance(short_message, str):
        short_message = short_message.encode()
    tlvs = dict(tlvs or {})
    if short_message and any(_tag_of(k) == 0x0424 for k in tlvs):
        raise ValueError("data_via: give short_message or a message_payload TLV, not both")
    raw = _encode_tlvs(tlvs)
    if short_message:
        if len(short_message) > 0xFFFF:
            raise ValueError("data_via: short_message over 65535 octets")
        raw = struct.pack(">HH", 0x0424, len(short_message)) + bytes(short_message) + raw
    return _send_via(bind, "data_sm", source_addr, destination_addr, b"", service_type, raw,
                     _sub_octets(source_addr_ton, source_addr_npi, dest_addr_ton, dest_addr_npi,
                                 esm_class, 0, 0, registered_delivery, data_coding),
                     store=store, esme=_esme_id(esme))


def cancel_via(*, bind, message_id, source_addr="", destination_addr="", service_type="",
               source_addr_ton=1, source_addr_npi=1, dest_addr_ton=1, dest_addr_npi=1):
    """cancel_sm through ``bind`` (not paced); awaitable -> SmppResp."""
    return _send_via(bind, "cancel_sm", source_addr, destination_addr, b"", service_type, b"",
                     _sub_octets(source_addr_ton, source_addr_npi, dest_addr_ton, dest_addr_npi,
                                 0, 0, 0, 0, 0),
                     message_id=str(message_id))


def query_via(*, bind, message_id, source_addr="", source_addr_ton=1, source_addr_npi=1):
    """query_sm through ``bind`` (not paced); awaitable -> QueryResp."""
    return _send_via(bind, "query_sm", source_addr, "", b"", "", b"",
                     _sub_octets(source_addr_ton, source_addr_npi, 1, 1, 0, 0, 0, 0, 0),
                     message_id=str(message_id))


def replace_via(*, bind, message_id, source_addr="", source_addr_ton=1, source_addr_npi=1,
                schedule_delivery_time="", validity_period="", registered_delivery=0,
                sm_default_msg_id=0, short_message=b""):
    """replace_sm through ``bind`` (not paced); awaitable -> SmppResp."""
    sm = _check_sm(short_message)
    return _send_via(bind, "replace_sm", source_addr, "", sm, "", b"",
                     _sub_octets(source_addr_ton, source_addr_npi, 1, 1, 0, 0, 0,
                                 registered_delivery, 0),
                     message_id=str(message_id), schedule_delivery_time=schedule_delivery_time,
                     validity_period=validity_period, sm_default_msg_id=sm_default_msg_id)
