"""``SmppTestHarness``: test ``siphon.smpp`` scripts against THE REAL scripting engine.

It keeps upstream's harness surface (``siphon_sdk.smpp_testing.SmppTestHarness``: ``bind``,
``submit_sm``, ``deliver_sm``, ``data_sm``, ``cancel_sm``, ``query_sm``, ``replace_sm``,
``submit_sm_multi``, ``alert_notification``, ``session_event``, ``sent``, ``smpp``, ``log``,
``load_script``, ``load_source``, ``reset``, ``close``) but runs the script in the engine the
node runs (``siphon-script-driver`` built with the ``smpp`` feature, found through
``$SIPHON_DRIVER``): every event goes through the same ``siphon.smpp`` dispatch and the same
per-command defaults as an ESME's PDU on the wire. Beyond upstream's mock it takes ``tlvs=``,
``message_payload=`` and ``body=`` and reads back ``pdu.body``/``pdu.tlvs`` in the script.

The script's sends (``deliver_to``, ``data_to``, ``alert_to``) are recorded in ``h.sent`` as
``(op, kwargs)`` and answered by the harness: ESME_ROK with a fresh id by default;
``h.smpp.set_response(...)`` sets another status (for every send or for one op).

Where it differs from upstream's mock: handlers are selected as the runtime selects them (the
first ``on_bind`` and the first matching ``on_pdu``), exceptions are logged and mapped to the
dispatch table's status rather than raised into the test, a PDU with no handler gets its
documented default answer (not ``None``), and ``alert_notification`` returns ``None``.
"""

import uuid

from ._driver import DriverProcess, HarnessError  # noqa: F401 (importable here, as before)
# The runtime's own tables and TLV codec: siphon_sdk/_smpp_codec.py is a link to the runtime's
# scripting/python/siphon/_smpp_codec.py (the wheel ships the file). It is imported under this
# package's name, never as `siphon`: a test environment may hold another `siphon` package.
from ._smpp_codec import NAMES as _NAMES
from ._smpp_codec import STATUSES, encode_tlvs, parse_tlvs  # noqa: F401 (public here too)
from ._smpp_codec import status_code as _status_code

_TIMEOUT = 30.0

_INT_FIELDS = ("source_addr_ton", "source_addr_npi", "dest_addr_ton", "dest_addr_npi",
               "esme_addr_ton", "esme_addr_npi", "esm_class", "protocol_id", "priority_flag",
               "registered_delivery", "data_coding", "interface_version")
_STR_FIELDS = ("message_id", "service_type", "source_addr", "destination_addr", "esme_addr",
               "password", "system_type")
_SEND_OPS = {"deliver_sm": "deliver_to", "data_sm": "data_to", "alert_notification": "alert_to"}
_OCTETS = ("source_addr_ton", "source_addr_npi", "dest_addr_ton", "dest_addr_npi", "esm_class",
           "protocol_id", "priority_flag", "registered_delivery", "data_coding")


def _status_name(code):
    return _NAMES.get(code, f"0x{code:08x}")


class BindResult:
    """What the engine decided for a bind: truthy when accepted; ``status`` is its name."""

    def __init__(self, status):
        self.status = _status_name(status)
        self.command_status = self.status
        self.accept = status == 0

    ok = property(lambda self: self.accept)

    def __bool__(self):
        return self.accept

    def __repr__(self):
        return f"BindResult(accept={self.accept}, status={self.status!r})"


class PduReply:
    """The ``_resp`` the engine would send: ``command_status`` (name), ``message_id``,
    ``message_state``/``final_date``/``error_code`` (query_sm), ``tlvs`` (data_sm), ``ok``."""

    def __init__(self, answer):
        self.status = answer["status"]
        self.command_status = _status_name(self.status)
        self.message_id = answer["message_id"]
        q = answer.get("query")
        self.message_state, self.final_date, self.error_code = q if q else (None, "", 0)
        self.tlvs = parse_tlvs(bytes.fromhex(answer.get("tlvs") or ""))
        self.script_error = bool(answer.get("error"))

    @property
    def ok(self):
        return self.status == 0

    def __repr__(self):
        return f"PduReply({self.command_status!r}, message_id={self.message_id!r})"


class _Log:
    """``h.log.messages``: ``(level, text)`` of everything the script logged."""

    def __init__(self):
        self.messages = []

    def clear(self):
        self.messages.clear()


class MockSmpp:
    """``h.smpp``: ``sent``, ``clear()``, ``set_config(d)``, ``set_query_result(q)``, and
    ``set_response(command_status, message_id=None, op=None)`` for the harness's answers."""

    def __init__(self, harness):
        self._h = harness
        self.sent = []
        self.query_result = None
        self._responses = {}

    def clear(self):
        self.sent.clear()

    def set_config(self, config):
        self._h._set_config(config)

    def set_query_result(self, q):
        # query_via (outbound binds) is part 2; kept for upstream's surface.
        self.query_result = q

    def set_response(self, command_status="ESME_ROK", message_id=None, op=None):
        """Answer the script's sends (``op``: "deliver_to", "data_to", "alert_to"; None: all)
        with ``command_status`` (and ``message_id``; default a fresh hex id when ROK)."""
        self._responses[op] = (_status_code(command_status), message_id)

    def _response_for(self, op):
        status, mid = self._responses.get(op, self._responses.get(None, (0, None)))
        if mid is None:
            mid = uuid.uuid4().hex if status == 0 else ""
        return status, mid


class SmppTestHarness(DriverProcess):
    """Run an SMPP routing script in the real engine. ``config`` is the ``smpp.yaml``
    document the script reads through ``smpp.config()``/``binds()``/``routing_rules()``."""

    _ANSWER = "smpp_answer"
    _CALL = "smpp_send"

    def __init__(self, config=None, *, cores=1, driver=None):
        self._init_driver("siphon-smpp-test-", cores, driver)
        self._config = config
        self.smpp = MockSmpp(self)
        self.sent = self.smpp.sent
        self.log = _Log()

    # -- engine process --
    def _start(self):
        self._spawn({"smpp_config": self._config, "cache_names": ["default", "main"]})

    def _on_log(self, msg):
        self.log.messages.append((msg["level"], msg["msg"]))

    def _on_call(self, proc, msg):
        op = _SEND_OPS.get(msg["command"], msg["command"])
        octets = dict(zip(_OCTETS, msg["octets"]))
        tlvs = parse_tlvs(bytes.fromhex(msg["tlvs"]))
        kw = {"session_id": msg["session_id"], "source_addr": msg["source_addr"]}
        if op == "alert_to":
            kw["esme_addr"] = msg["destination_addr"]
            kw["source_addr_ton"], kw["source_addr_npi"] = octets["source_addr_ton"], octets["source_addr_npi"]
            kw["esme_addr_ton"], kw["esme_addr_npi"] = octets["dest_addr_ton"], octets["dest_addr_npi"]
            st = tlvs.get(0x0422)
            kw["ms_availability_status"] = st[0] if st else None
        else:
            kw["destination_addr"] = msg["destination_addr"]
            sm = bytes.fromhex(msg["short_message"])
            if op == "data_to":
                sm = tlvs.pop(0x0424, sm)
                for k in ("protocol_id", "priority_flag"):
                    octets.pop(k)
            kw["short_message"] = sm
            kw["service_type"] = msg["service_type"]
            kw.update(octets)
            kw["tlvs"] = tlvs
        with self._cond:
            self.sent.append((op, kw))
            self._cond.notify_all()
        status, mid = self.smpp._response_for(op)
        try:
            self._write(proc, {"op": "smpp_complete", "worker": msg["worker"], "token": msg["token"],
                               "status": status, "message_id": mid})
        except (OSError, ValueError):
            pass

    def _event(self, kind, command, session_id, system_id, client_addr, fields, timeout=_TIMEOUT):
        eid = next(self._ids)
        self._send({"op": "smpp_event", "id": eid, "core": 0, "kind": kind, "command": command,
                    "session_id": session_id, "system_id": system_id, "client_addr": client_addr,
                    "fields": fields})
        self._wait(lambda: eid in self._answers, timeout)
        with self._cond:
            return self._answers.pop(eid)

    @staticmethod
    def _fields(fields):
        fields = dict(fields)
        tlvs = encode_tlvs(fields.pop("tlvs", None))
        payload = fields.pop("message_payload", None)
        body = fields.pop("body", None)
        if body is not None:
            if isinstance(body, str):
                body = body.encode()
            if len(body) > 254:
                payload = body
            else:
                fields.setdefault("short_message", body)
        if payload is not None:
            if isinstance(payload, str):
                payload = payload.encode()
            tlvs = encode_tlvs({"message_payload": bytes(payload)}) + tlvs
        out = []
        for k, v in fields.items():
            if k in _INT_FIELDS:
                out.append([k, "int", int(v)])
            elif k in _STR_FIELDS:
                out.append([k, "str", str(v)])
            elif k == "short_message":
                if isinstance(v, str):
                    v = v.encode()
                out.append([k, "hex", bytes(v).hex()])
            elif k == "destinations":
                out.append([k, "list", [str(d) for d in v]])
            elif k == "ms_availability_status":
                if v is not None:
                    tlvs += encode_tlvs({"ms_availability_status": int(v)})
            else:
                raise TypeError(f"unexpected PDU field {k!r}")
        for k in ("source_addr_ton", "source_addr_npi", "dest_addr_ton", "dest_addr_npi"):
            if k not in fields:
                out.append([k, "int", 1])
        out.append(["tlvs", "hex", tlvs.hex()])
        return out

    def _pdu(self, command, session_id, system_id, client_addr, fields):
        return PduReply(self._event("pdu", command, session_id, system_id, client_addr,
                                    self._fields(fields)))

    def _set_config(self, config):
        self._config = config
        if self._proc is not None:
            self._stop()
            self._start()

    # -- upstream's API --
    def reset(self):
        """Forget the script, the sends and the logs (a fresh engine on next use)."""
        self._stop()
        self._source = ""
        self.sent.clear()
        self.log.clear()
        with self._cond:
            self._answers.clear()

    def bind(self, system_id, *, password="", client_addr="203.0.113.5:5000",
             bind_type="transceiver", system_type="", session_id="esme-1"):
        """Offer a bind to ``@smpp.on_bind``; truthy result when accepted."""
        a = self._event("bind", f"bind_{bind_type}", session_id, system_id, client_addr,
                        [["password", "str", password], ["system_type", "str", system_type],
                         ["interface_version", "int", 0x34]])
        return BindResult(a["status"])

    def submit_sm(self, *, session_id="esme-1", system_id="esme1",
                  client_addr="203.0.113.5:5000", **fields):
        return self._pdu("submit_sm", session_id, system_id, client_addr, fields)

    def submit_sm_multi(self, *, session_id="esme-1", system_id="esme1",
                        client_addr="203.0.113.5:5000", **fields):
        fields.setdefault("destinations", [])
        return self._pdu("submit_sm_multi", session_id, system_id, client_addr, fields)

    def deliver_sm(self, *, session_id="bind-1", system_id="carrier",
                   client_addr="198.51.100.7:2775", **fields):
        return self._pdu("deliver_sm", session_id, system_id, client_addr, fields)

    def data_sm(self, *, kind="esme", session_id=None, system_id=None, client_addr=None,
                **fields):
        esme = kind == "esme"
        return self._pdu("data_sm", session_id or ("esme-1" if esme else "bind-1"),
                         system_id or ("esme1" if esme else "carrier"),
                         client_addr or ("203.0.113.5:5000" if esme else "198.51.100.7:2775"),
                         fields)

    def cancel_sm(self, *, message_id, session_id="esme-1", system_id="esme1",
                  client_addr="203.0.113.5:5000", **fields):
        return self._pdu("cancel_sm", session_id, system_id, client_addr,
                         dict(fields, message_id=message_id))

    def query_sm(self, *, message_id, session_id="esme-1", system_id="esme1",
                 client_addr="203.0.113.5:5000", **fields):
        return self._pdu("query_sm", session_id, system_id, client_addr,
                         dict(fields, message_id=message_id))

    def replace_sm(self, *, message_id, session_id="esme-1", system_id="esme1",
                   client_addr="203.0.113.5:5000", **fields):
        return self._pdu("replace_sm", session_id, system_id, client_addr,
                         dict(fields, message_id=message_id))

    def alert_notification(self, *, session_id="bind-1", system_id="carrier",
                           client_addr="198.51.100.7:2775", **fields):
        """Run ``@smpp.on_pdu("alert_notification")``; fields: ``source_addr``, ``esme_addr``,
        ``ms_availability_status``. Returns None (no response PDU exists)."""
        self._event("pdu", "alert_notification", session_id, system_id, client_addr,
                    self._fields(fields))

    def session_event(self, event, *, kind="esme", session_id="esme-1", system_id="esme1",
                      client_addr="203.0.113.5:5000"):
        """Run every ``@smpp.on_session(event)`` hook; returns when they are done."""
        self._event("session", event, session_id, system_id, client_addr, [])

    def wait_sent(self, count=1, timeout=_TIMEOUT):
        """Wait until the script has sent ``count`` PDUs; returns ``h.sent``."""
        self._wait(lambda: len(self.sent) >= count, timeout)
        return list(self.sent)
