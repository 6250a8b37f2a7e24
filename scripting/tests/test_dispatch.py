"""Dispatch semantics (siphon-core-api.md 1.1) against the real engine."""

SCRIPT = '''
from siphon import proxy, log

@proxy.on_request("INVITE|SUBSCRIBE")
def first(request):
    request.set_header("X-Order", (request.get_header("X-Order") or "") + "a")
    request.reply(486, "Busy Here")

@proxy.on_request("INVITE")
def second(request):
    request.set_header("X-Order", request.get_header("X-Order") + "b")
    if request.get_header("X-Relay"):
        request.relay()

@proxy.on_request("MESSAGE")
def silent(request):
    log.info("message seen")

@proxy.on_request("OPTIONS")
def boom(request):
    raise ValueError("kaboom in OPTIONS")

@proxy.on_request("NOTIFY")
def stopper(request):
    request.stop_propagation()

@proxy.on_request("NOTIFY")
def after_stop(request):
    request.reply(200, "OK")
'''


def test_filters_and_order(harness):
    h = harness(SCRIPT)
    r = h.send_request("INVITE")
    assert (r.action, r.status_code, r.reason) == ("reply", 486, "Busy Here")
    assert "X-Order: ab" in r.request_text
    r = h.send_request("SUBSCRIBE", event="presence")
    assert r.status_code == 486
    assert "X-Order: a\r\n" in r.request_text


def test_last_action_wins_and_actions_are_deferred(harness):
    h = harness(SCRIPT)
    r = h.send_request("INVITE", headers={"X-Relay": "1"})
    assert r.action == "relay"
    assert r.next_hop is None


def test_no_action_is_silent_drop(harness):
    h = harness(SCRIPT)
    r = h.send_request("MESSAGE")
    assert r.was_dropped and r.status_code is None
    h.wait_log("message seen")


def test_no_handler_is_500(harness):
    h = harness(SCRIPT)
    r = h.send_request("BYE")
    assert (r.status_code, r.reason) == (500, "No Script Handler")
    assert not r.script_error


def test_exception_is_500_with_traceback_logged(harness):
    h = harness(SCRIPT)
    r = h.send_request("OPTIONS")
    assert (r.status_code, r.reason) == (500, "Script Error")
    assert r.script_error
    h.wait_log("kaboom in OPTIONS")
    tb = h.logs_matching("kaboom in OPTIONS", level="error")[0]["msg"]
    assert "Traceback" in tb and "in boom" in tb
    assert "siphon_script_errors_total 1" in h.metrics()


def test_stop_propagation(harness):
    h = harness(SCRIPT)
    r = h.send_request("NOTIFY", event="x")
    assert r.was_dropped


def test_per_core_interpreters_and_module_state(harness):
    src = '''
from siphon import proxy
import _siphon
seen = []

@proxy.on_request
def h(request):
    seen.append(1)
    request.reply(200, f"w{_siphon.worker_id()} n{len(seen)}")
'''
    h = harness(src, cores=2)
    a = h.send_request("OPTIONS", core=0)
    b = h.send_request("OPTIONS", core=1)
    c = h.send_request("OPTIONS", core=1)
    if h.mode == "per-core":
        assert (a.reason, b.reason, c.reason) == ("w0 n1", "w1 n1", "w1 n2")
    else:
        # Degraded mode: one interpreter serves both cores; results still go to each core.
        assert (a.reason, b.reason, c.reason) == ("w0 n1", "w0 n2", "w0 n3")
    assert (a.core, b.core, c.core) == (0, 1, 1)


REPLY_SCRIPT = '''
from siphon import proxy, log

def per_relay(request, reply):
    log.info(f"per-relay {reply.status_code}")
    reply.relay()

def per_failure(request, reply):
    request.relay("sip:backup.example.com")

@proxy.on_request
def route(request):
    if request.get_header("X-Cb"):
        request.relay(on_reply=per_relay, on_failure=per_failure)
    else:
        request.relay()

@proxy.on_reply("INVITE")
def on_reply(request, reply):
    if reply.status_code == 180:
        reply.relay()
    elif reply.status_code == 183:
        reply.reject(488, "Not Here")

@proxy.on_failure
def on_failure(request, reply):
    if reply.status_code == 486:
        request.fork(["sip:a@example.net", "sip:b@example.net"], "sequential")

@proxy.on_cancel
def on_cancel(request):
    log.info("cancelled " + request.call_id)
'''


def test_on_reply_dropped_unless_relayed(harness):
    h = harness(REPLY_SCRIPT)
    req = h.send_request("INVITE")
    assert req.was_relayed
    assert h.send_reply(req, 180, "Ringing").action == "relay"
    assert h.send_reply(req, 200, "OK").action == "silent_drop"
    r = h.send_reply(req, 183, "Session Progress")
    assert (r.action, r.status_code) == ("reject", 488)


def test_reply_without_handler_is_forwarded(harness):
    h = harness(REPLY_SCRIPT)
    req = h.send_request("MESSAGE")
    assert h.send_reply(req, 200, "OK").action == "relay"


def test_per_relay_callbacks(harness):
    h = harness(REPLY_SCRIPT)
    req = h.send_request("INVITE", headers={"X-Cb": "1"})
    assert req.raw["disposition"]["on_reply"] is True
    assert h.send_reply(req, 200, "OK").action == "relay"
    h.wait_log("per-relay 200")
    req = h.send_request("INVITE", headers={"X-Cb": "1"})
    r = h.send_reply(req, 503, "Unavailable", kind="failure")
    assert (r.action, r.next_hop) == ("relay", "sip:backup.example.com")


def test_on_failure_and_cancel(harness):
    h = harness(REPLY_SCRIPT)
    req = h.send_request("INVITE")
    r = h.send_reply(req, 486, "Busy Here", kind="failure")
    assert r.was_forked and r.strategy == "sequential"
    assert r.targets == ["sip:a@example.net", "sip:b@example.net"]
    r = h.send_reply(req, 404, "Not Found", kind="failure")
    assert r.was_dropped
    c = h.submit("cancel", req.sent)
    assert h.result(c)["disposition"]["kind"] == "drop"
    h.wait_log("cancelled ")


def test_forced_shared_interpreter_mode(harness):
    """The degraded layout (3.11's only mode) also runs on 3.12+ when forced."""
    h = harness(SCRIPT, cores=2, force_shared=True)
    assert h.mode == "shared"
    assert h.logs_matching("DEGRADED SCRIPTING MODE", level="warn")
    assert h.send_request("INVITE", core=1).status_code == 486
    assert h.send_request("BYE", core=0).reason == "No Script Handler"
