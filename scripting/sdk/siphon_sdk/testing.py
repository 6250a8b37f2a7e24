"""``SipTestHarness``: drives THE REAL embedded engine (own-GIL subinterpreters, the native
``_siphon`` module, the embedded ``siphon`` package) through the ``siphon-script-driver``
binary's JSON-lines protocol. No mocks: what passes here is what the node runs.

The driver binary is the one the wheel installed next to this Python, or ``$SIPHON_DRIVER``
(``scripting/run-tests.sh`` sets it); see ``siphon_sdk._engine``.
"""

import itertools
import json
import os
import queue
import subprocess
import tempfile
import threading
import time

from . import _engine

_DEFAULT_TIMEOUT = 30.0


class DriverError(RuntimeError):
    pass


class RequestResult:
    """What the script decided for a request."""

    def __init__(self, raw):
        self.raw = raw
        d = raw["disposition"]
        self.action = "silent_drop" if d["kind"] == "drop" else d["kind"]
        self.status_code = d.get("status")
        self.reason = d.get("reason")
        self.headers = [tuple(h) for h in d.get("headers") or []]
        self.body = d.get("body")
        self.targets = d.get("targets")
        self.strategy = d.get("strategy")
        self.next_hop = d.get("next_hop")
        self.record_routed = raw["record_route"]
        self.script_error = raw["script_error"]
        self.auth_user = raw["auth_user"]
        self.request = raw["request"]
        self.reply = raw["reply"]
        self.core = raw["core"]

    was_relayed = property(lambda self: self.action == "relay")
    was_forked = property(lambda self: self.action == "fork")
    was_dropped = property(lambda self: self.action == "silent_drop")

    def header(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return f"<RequestResult {self.action} {self.status_code or ''} {self.reason or ''}>"


class ReplyResult(RequestResult):
    was_relayed = property(lambda self: self.action == "forward_reply")


def _sip_request(method, ruri, from_uri, to_uri, from_tag, to_tag, call_id, cseq, max_forwards,
                 body, content_type, user_agent, headers, contact_expires, event):
    to = f"<{to_uri or ruri}>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {ruri} SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK" + call_id.replace("@", "")[:16],
        f"Max-Forwards: {max_forwards}",
        f"From: <{from_uri}>;tag={from_tag}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
    ]
    if user_agent:
        lines.append(f"User-Agent: {user_agent}")
    if event:
        lines.append(f"Event: {event}")
    if contact_expires is not None:
        lines.append(f"Expires: {contact_expires}")
    for k, v in (headers.items() if isinstance(headers, dict) else headers or []):
        if isinstance(v, (list, tuple)):
            lines.extend(f"{k}: {x}" for x in v)
        else:
            lines.append(f"{k}: {v}")
    body = body or ""
    if isinstance(body, bytes):
        body = body.decode()
    if body and content_type:
        lines.append(f"Content-Type: {content_type}")
    lines.append(f"Content-Length: {len(body.encode())}")
    return "\r\n".join(lines) + "\r\n\r\n" + body


class SipTestHarness:
    """Run a routing script in the real engine with ``cores`` interpreters.

    ``with SipTestHarness(source=SCRIPT, cores=2) as h: r = h.send_request("INVITE")``
    """

    def __init__(self, script=None, source=None, cores=2, local_domains=None, auth_users=None,
                 auth_realm="example.com", script_config=None, reload="sighup", include_paths=None,
                 min_expires=None, driver=None, force_shared=False):
        driver = driver or _engine.driver_path()
        self._tmp = tempfile.TemporaryDirectory(prefix="siphon-test-")
        if script is None:
            script = os.path.join(self._tmp.name, "app.py")
            with open(script, "w") as f:
                f.write(source or "")
        self.script = script
        cfg = {
            "local_domains": local_domains or ["example.com"],
            "auth_realm": auth_realm,
            "auth_users": auth_users or {},
            "script_config": script_config or {},
            "include_paths": include_paths or [],
            "cache_names": ["default", "main"],
        }
        if min_expires is not None:
            cfg["registrar"] = {"min_expires": min_expires}
        cfg_path = os.path.join(self._tmp.name, "cfg.json")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        argv = [driver, "--script", script, "--cores", str(cores), "--config", cfg_path, "--reload", reload]
        if force_shared:
            argv.append("--force-shared")
        self.cores = cores
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                      env=_engine.driver_env())
        self._ids = itertools.count(1)
        self._actions = {}
        self._cond = threading.Condition()
        self._control = queue.Queue()
        self.logs = []
        self.outbound = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        first = self._control.get(timeout=120)
        if first.get("type") != "ready":
            self._proc.wait(timeout=30)
            self.close()
            raise DriverError(first.get("message", str(first)))
        self.mode = first["mode"]
        self.python = first["python"]
        _engine.announce_mode(self.mode, self.python)

    # -- plumbing --
    def _read(self):
        for line in self._proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            t = msg.get("type")
            with self._cond:
                if t == "actions":
                    self._actions[msg["id"]] = msg
                elif t == "log":
                    self.logs.append(msg)
                elif t == "outbound":
                    self.outbound.append(msg)
                else:
                    self._control.put(msg)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _send(self, obj):
        self._proc.stdin.write(json.dumps(obj) + "\n")
        self._proc.stdin.flush()

    def _wait(self, pred, timeout=_DEFAULT_TIMEOUT):
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0 or self._proc.poll() is not None and not pred():
                    raise DriverError("timed out waiting for the engine")
                self._cond.wait(min(left, 0.5))

    def submit(self, kind, msg, core=0, reply=None, request_id=None, source="127.0.0.1:5060", transport="udp"):
        """Queue a raw event; returns its id (see :meth:`result`)."""
        eid = next(self._ids)
        ev = {"op": "event", "id": eid, "core": core, "kind": kind, "msg": msg, "source": source,
              "transport": transport}
        if reply is not None:
            ev["reply"] = reply
        if request_id is not None:
            ev["request_id"] = request_id
        self._send(ev)
        return eid

    def result(self, eid, timeout=_DEFAULT_TIMEOUT):
        self._wait(lambda: eid in self._actions, timeout)
        with self._cond:
            return self._actions.pop(eid)

    def _control_reply(self, op, timeout=_DEFAULT_TIMEOUT, **kw):
        self._send({"op": op, **kw})
        return self._control.get(timeout=timeout)

    # -- API (upstream SipTestHarness names) --
    def build_request(self, method="INVITE", ruri="sip:bob@example.com", *, from_uri="sip:alice@example.com",
                      to_uri=None, from_tag="f1", to_tag=None, call_id=None, cseq=1, max_forwards=70,
                      body=None, content_type=None, user_agent=None, headers=None, contact_expires=None,
                      event=None):
        call_id = call_id or f"c{next(self._ids)}@test"
        return _sip_request(method, ruri, from_uri, to_uri, from_tag, to_tag, call_id, cseq, max_forwards,
                            body, content_type, user_agent, headers, contact_expires, event)

    def send_request(self, method="INVITE", ruri="sip:bob@example.com", *, core=0, source_ip="127.0.0.1",
                     source_port=5060, transport="udp", **kw):
        msg = self.build_request(method, ruri, **kw)
        eid = self.submit("request", msg, core=core, source=f"{source_ip}:{source_port}", transport=transport)
        r = RequestResult(self.result(eid))
        r.id = eid
        r.sent = msg
        return r

    def send_reply(self, request=None, status_code=200, reason="OK", *, kind="reply", core=0, headers=None,
                   request_id=None):
        """Deliver a response to ``request`` (a RequestResult or raw request text)."""
        raw_req = request.sent if isinstance(request, RequestResult) else (request or self.build_request())
        rid = request_id if request_id is not None else getattr(request, "id", None)
        head, _, _ = raw_req.partition("\r\n\r\n")
        lines = head.split("\r\n")[1:]
        keep = [l for l in lines if l.split(":", 1)[0].strip().lower() in ("via", "from", "to", "call-id", "cseq")]
        extra = [f"{k}: {v}" for k, v in (headers or {}).items()]
        reply = "\r\n".join([f"SIP/2.0 {status_code} {reason}"] + keep + extra + ["Content-Length: 0"]) + "\r\n\r\n"
        eid = self.submit(kind, raw_req, core=core, reply=reply, request_id=rid)
        return ReplyResult(self.result(eid))

    def wait_outbound(self, count=1, timeout=_DEFAULT_TIMEOUT):
        """Wait until ``count`` requests were sent by scripts (``proxy.send_request``)."""
        self._wait(lambda: len(self.outbound) >= count, timeout)
        with self._cond:
            return list(self.outbound)

    def respond(self, outbound, status_code=200, reason="OK", headers=None):
        """Answer a script's outbound request (``None`` status: the request failed)."""
        reply = None
        if status_code is not None:
            extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
            reply = f"SIP/2.0 {status_code} {reason}\r\n{extra}Content-Length: 0\r\n\r\n"
        self._send({"op": "respond", "worker": outbound["worker"], "token": outbound["token"], "reply": reply})

    def reload(self):
        """SIGHUP-style reload; returns the number of workers that kept the old handlers."""
        r = self._control_reply("reload")
        return r["failed"]

    def load_source(self, source, name="<test>"):
        """Replace the running script (hot reload in every interpreter); True if it loaded."""
        with open(self.script, "w") as f:
            f.write(source)
        return self.reload() == 0

    def load_script(self, path):
        with open(path) as f:
            return self.load_source(f.read())

    def metrics(self):
        return self._control_reply("metrics")["text"]

    def info(self):
        return self._control_reply("info")

    def logs_matching(self, text, level=None):
        with self._cond:
            return [l for l in self.logs if text in l["msg"] and (level is None or l["level"] == level)]

    def wait_log(self, text, timeout=_DEFAULT_TIMEOUT):
        self._wait(lambda: any(text in l["msg"] for l in self.logs), timeout)

    def close(self):
        if self._proc.poll() is None:
            try:
                self._send({"op": "quit"})
                self._proc.stdin.close()
                self._proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._reader.join(timeout=10)
        for f in (self._proc.stdin, self._proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        self._tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
