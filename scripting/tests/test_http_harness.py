"""HttpTestHarness against the real engine: routes, methods, params, middleware, error
mapping, startup/shutdown hooks, reload, and http.Client calls answered by the test."""

import pytest

from siphon_sdk.http_testing import HttpTestHarness, MockResponse, HttpStatusError

SRC = '''
from siphon import http, log

api = http.Client("api")
seen = []

@http.on_startup
def boot():
    log.info("startup ran")

@http.on_shutdown
def bye():
    log.info("shutdown ran")

@http.middleware
def guard(req):
    if req.header("x-block"):
        return http.Response(status=401, body=b"blocked")
    return None

@http.route("/items/{id}", methods=["GET", "DELETE"])
def item(req):
    return http.Response(status=200, body=f"{req.method} {req.path_params['id']} {req.query_params}".encode())

@http.route("/items/new")
def new(req):
    return http.Response(status=200, body=b"static")

@http.route("/files/{*rest}")
def files(req):
    return http.Response(body=req.path_params["rest"])

@http.route("/boom")
def boom(req):
    raise ValueError("x")

@http.route("/none")
def none(req):
    return None

@http.route("/echo", methods=["POST"])
def echo(req):
    return http.Response(status=201, headers={"X-Len": str(len(req.body()))}, body=req.body())

@http.route("/lookup/{user}")
async def lookup(req):
    try:
        r = await api.post(f"/screen/{req.path_params['user']}", body=b"q", headers={"a": "b"})
    except RuntimeError as e:
        return http.Response(status=502, body=str(e))
    return http.Response(status=r.status, body=r.body)

@http.route("/later")
async def later(req):
    import asyncio
    async def bg():
        r = await api.get("/bg")
        log.info(f"background done {r.status}")
    asyncio.get_running_loop().create_task(bg())
    return http.Response(body=b"now")
'''


@pytest.fixture
def h():
    with HttpTestHarness() as h:
        h.load_source(SRC)
        yield h


def test_routes_methods_params(h):
    r = h.request("GET", "/items/a%20b?x=1&y")
    assert (r.status, r.body) == (200, b"GET a b {'x': '1', 'y': ''}")
    assert h.request("DELETE", "/items/1").status == 200
    assert h.request("GET", "/items/new").body == b"static"
    r = h.request("PUT", "/items/1")
    assert r.status == 405 and r.header("allow") == "GET, DELETE, HEAD"
    assert h.request("HEAD", "/items/1").status == 200
    assert h.request("GET", "/nope").status == 404
    assert h.request("GET", "/files/a/b").body == b"a/b"
    assert h.request("GET", "/files/").status == 404


def test_middleware_errors_and_body(h):
    assert h.request("GET", "/items/1", headers={"X-Block": "1"}).status == 401
    r = h.request("GET", "/boom")
    assert (r.status, r.body) == (500, b"handler error\n")
    assert h.request("GET", "/none").body == b"bad response\n"
    r = h.request("POST", "/echo", body=b"hello")
    assert (r.status, r.body, r.header("x-len")) == (201, b"hello", "5")
    with pytest.raises(HttpStatusError):
        h.request("GET", "/boom").raise_for_status()


def test_client_calls_answered_by_the_test(h):
    h.add_response(MockResponse(status=200, body=b"ok"))
    assert h.request("GET", "/lookup/alice").body == b"ok"
    call = h.sent_requests[0]
    assert (call["method"], call["path"], call["name"], call["body"]) == \
        ("POST", "/screen/alice", "api", b"q")
    assert call["headers"] == {"a": "b"}
    h.set_response("/screen/bob", MockResponse(status=403))
    assert h.request("GET", "/lookup/bob").status == 403
    h.http.set_default_response(MockResponse(status=204))
    assert h.request("GET", "/lookup/carol").status == 204

    def fail(call):
        raise ConnectionError("refused")
    h.set_handler(fail)
    r = h.request("GET", "/lookup/dave")
    assert r.status == 502 and b"request failed: refused" in r.body


def test_fire_and_forget_task_completes_after_the_response(h):
    assert h.request("GET", "/later").body == b"now"
    h.request("GET", "/items/1")  # another turn of the loop
    for _ in range(100):
        if any("background done 200" in m for _l, m in h.log.messages):
            break
        import time
        time.sleep(0.05)
    assert any("background done 200" in m for _l, m in h.log.messages)
    assert h.sent_requests[-1]["path"] == "/bg"


def test_startup_shutdown_and_reload(h):
    assert any("startup ran" in m for _l, m in h.log.messages)
    h.run_shutdown()
    for _ in range(100):
        if any("shutdown ran" in m for _l, m in h.log.messages):
            break
        import time
        time.sleep(0.05)
    assert any("shutdown ran" in m for _l, m in h.log.messages)
    h.load_source(SRC.replace('body=b"static"', 'body=b"reloaded"'))
    assert h.request("GET", "/items/new").body == b"reloaded"


def test_named_clients_follow_the_config():
    cfg = {"clients": {"api": {"base_url": "http://10.0.0.5:8000/"}}}
    with HttpTestHarness(config=cfg) as h:
        h.load_source(SRC)
        h.add_response(MockResponse(200, b"x"))
        h.request("GET", "/lookup/eve")
        assert h.sent_requests[0]["url"] == "http://10.0.0.5:8000/screen/eve"
    with HttpTestHarness(config={"clients": {}}) as h:
        with pytest.raises(Exception):
            h.load_source(SRC)
