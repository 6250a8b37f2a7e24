"""async def handlers: stepped from Rust; only suspended ones reach the asyncio loop."""

SCRIPT = '''
import asyncio
from siphon import proxy, timer, log

@proxy.on_request("OPTIONS")
async def no_await(request):
    request.reply(200, "sync-fast")

@proxy.on_request("INVITE")
async def waits_for_rust_timer(request):
    await timer.sleep(0.05)
    request.reply(180 + 0, "after timer")

@proxy.on_request("MESSAGE")
async def waits_for_asyncio(request):
    await asyncio.sleep(0.02)
    await asyncio.sleep(0)
    request.relay()

@proxy.on_request("INFO")
async def fails_after_await(request):
    await timer.sleep(0.01)
    raise RuntimeError("async boom")

order = []

@proxy.on_request("NOTIFY")
def a(request):
    request.set_header("X-Seq", "1")

@proxy.on_request("NOTIFY")
async def b(request):
    await timer.sleep(0.01)
    request.set_header("X-Seq", request.get_header("X-Seq") + "2")

@proxy.on_request("NOTIFY")
def c(request):
    request.set_header("X-Seq", request.get_header("X-Seq") + "3")
    request.reply(200, "OK")

@timer.every(0.05)
def tick():
    log.info("tick")
'''


def test_async_without_await(harness):
    h = harness(SCRIPT)
    assert h.send_request("OPTIONS").reason == "sync-fast"


def test_async_awaiting_rust_timer(harness):
    h = harness(SCRIPT, cores=2)
    ids = [h.submit("request", h.build_request("INVITE"), core=i % 2) for i in range(6)]
    quick = h.submit("request", h.build_request("OPTIONS"), core=0)
    # The suspended handlers do not block the worker: OPTIONS completes independently.
    assert h.result(quick)["disposition"]["reason"] == "sync-fast"
    for i in ids:
        d = h.result(i)["disposition"]
        assert (d["status"], d["reason"]) == (180, "after timer")


def test_async_awaiting_asyncio(harness):
    h = harness(SCRIPT)
    assert h.send_request("MESSAGE").was_relayed


def test_async_exception_is_500(harness):
    h = harness(SCRIPT)
    r = h.send_request("INFO")
    assert (r.status_code, r.reason, r.script_error) == (500, "Script Error", True)
    h.wait_log("async boom")


def test_mixed_handlers_run_in_order(harness):
    h = harness(SCRIPT)
    r = h.send_request("NOTIFY", event="x")
    assert r.status_code == 200
    assert "X-Seq: 123" in r.request_text


def test_timer_every_runs(harness):
    h = harness(SCRIPT)
    h.wait_log("tick")


SEND_SCRIPT = '''
from siphon import proxy

@proxy.on_request("INVITE")
async def ask(request):
    r = await proxy.send_request("OPTIONS", "sip:gw.example.net", headers={"X-A": "1"},
                                 next_hop="sip:10.0.0.9", wait_for_response=True, timeout_ms=20000)
    request.reply(200, f"got {r.status_code} {r.get_header('X-B')}")

@proxy.on_request("MESSAGE")
async def times_out(request):
    r = await proxy.send_request("OPTIONS", "sip:slow.example.net", wait_for_response=True, timeout_ms=30)
    request.reply(200, f"got {r}")

@proxy.on_request("NOTIFY")
async def fire_and_forget(request):
    await proxy.send_request("MESSAGE", "sip:log.example.net", body="hi")
    request.reply(202, "Accepted")
'''


def test_send_request_waits_for_response(harness):
    h = harness(SEND_SCRIPT, cores=2)
    eid = h.submit("request", h.build_request("INVITE"), core=1)
    out = h.wait_outbound(1)[0]
    assert (out["method"], out["ruri"], out["next_hop"], out["wait_for_response"]) == (
        "OPTIONS", "sip:gw.example.net", "sip:10.0.0.9", True)
    assert out["headers"] == [["X-A", "1"]]
    h.respond(out, 200, "OK", headers={"X-B": "yes"})
    assert h.result(eid)["disposition"]["reason"] == "got 200 yes"


def test_send_request_timeout_and_fire_and_forget(harness):
    h = harness(SEND_SCRIPT)
    assert h.send_request("MESSAGE").reason == "got None"
    r = h.send_request("NOTIFY", event="x")
    assert r.status_code == 202
    sent = h.wait_outbound(2)
    assert any(o["ruri"] == "sip:log.example.net" and o["body"] == "hi" and not o["wait_for_response"] for o in sent)
