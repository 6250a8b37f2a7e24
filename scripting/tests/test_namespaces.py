"""registrar, auth, cache, log, timer, metrics, config, proxy utilities against the real engine."""

import hashlib
import re

REG_SCRIPT = '''
from siphon import proxy, registrar, log

@registrar.on_change
def changed(aor, event, contacts):
    log.info(f"on_change {aor} {event} {len(contacts)}")

@proxy.on_request("REGISTER")
def reg(request):
    registrar.save(request)

@proxy.on_request("INVITE")
def inv(request):
    contacts = registrar.lookup(request.ruri)
    if not contacts:
        request.reply(404, "Not Found")
        return
    c = registrar.lookup_contact(request.ruri)
    assert registrar.is_registered(str(request.ruri))
    request.fork([str(x) for x in contacts])
    request.set_header("X-First", f"{c.uri} q={c.q} exp<={c.expires}")
'''


def test_registrar_save_lookup_across_cores(harness):
    h = harness(REG_SCRIPT, min_expires=60)
    r = h.send_request("REGISTER", ruri="sip:example.com", to_uri="sip:alice@example.com",
                       from_uri="sip:alice@example.com", contact_expires=600,
                       headers={"Contact": ["<sip:alice@192.0.2.1:5060>;q=0.5", "<sip:alice@192.0.2.2>"]}, core=0)
    assert (r.status_code, r.reason) == (200, "OK")
    contacts = [v for n, v in r.headers if n == "Contact"]
    assert len(contacts) == 2 and all(re.search(r";expires=\d+", c) for c in contacts)
    h.wait_log("on_change sip:alice@example.com registered 2")
    # Lookup on the other core (other interpreter) sees the same location store.
    r = h.send_request("INVITE", ruri="sip:alice@example.com", core=1)
    assert r.was_forked
    assert r.targets == ["sip:alice@192.0.2.2", "sip:alice@192.0.2.1:5060"]
    assert "X-First: sip:alice@192.0.2.2 q=1.0" in r.request_text
    assert h.send_request("INVITE", ruri="sip:nobody@example.com").status_code == 404
    r = h.send_request("REGISTER", ruri="sip:example.com", to_uri="sip:alice@example.com",
                       headers={"Contact": "<sip:alice@192.0.2.3>;expires=10"})
    assert (r.status_code, r.header("Min-Expires")) == (423, "60")
    r = h.send_request("REGISTER", ruri="sip:example.com", to_uri="sip:alice@example.com",
                       contact_expires=0, headers={"Contact": "*"}, core=1)
    assert r.status_code == 200
    h.wait_log("on_change sip:alice@example.com deregistered 0")


AUTH_SCRIPT = '''
from siphon import proxy, auth

@proxy.on_request("REGISTER")
def reg(request):
    if not auth.require_www_digest(request):
        return
    request.reply(200, "OK " + request.auth_user)

@proxy.on_request("INVITE")
def inv(request):
    if not auth.require_proxy_digest(request, realm="calls.example.com", password="pw2"):
        return
    request.relay()

@proxy.on_request("OPTIONS")
def opt(request):
    request.reply(200, str(auth.verify_digest(request)) + " " + str(auth.validate_nonce(auth.generate_nonce())))
'''


def _md5(s):
    return hashlib.md5(s.encode()).hexdigest()


def _authz(challenge, user, password, method, uri):
    realm = re.search(r'realm="([^"]+)"', challenge).group(1)
    nonce = re.search(r'nonce="([^"]+)"', challenge).group(1)
    ha1, ha2 = _md5(f"{user}:{realm}:{password}"), _md5(f"{method}:{uri}")
    resp = _md5(f"{ha1}:{nonce}:00000001:abc:auth:{ha2}")
    return (f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
            f'response="{resp}", qop=auth, nc=00000001, cnonce="abc", algorithm=MD5')


def test_digest_www_and_proxy(harness):
    h = harness(AUTH_SCRIPT, auth_users={"alice": "secret"})
    r = h.send_request("REGISTER", ruri="sip:example.com", to_uri="sip:alice@example.com")
    assert (r.status_code, r.reason) == (401, "Unauthorized")
    ch = r.header("WWW-Authenticate")
    assert ch.startswith("Digest realm=\"example.com\"")
    ok = h.send_request("REGISTER", ruri="sip:example.com", core=1,
                        headers={"Authorization": _authz(ch, "alice", "secret", "REGISTER", "sip:example.com")})
    assert (ok.status_code, ok.reason, ok.auth_user) == (200, "OK alice", "alice")
    bad = h.send_request("REGISTER", ruri="sip:example.com",
                         headers={"Authorization": _authz(ch, "alice", "wrong", "REGISTER", "sip:example.com")})
    assert bad.status_code == 401
    r = h.send_request("INVITE")
    assert r.status_code == 407
    ch = r.header("Proxy-Authenticate")
    ok = h.send_request("INVITE", headers={
        "Proxy-Authorization": _authz(ch, "bob", "pw2", "INVITE", "sip:bob@example.com")})
    assert ok.was_relayed and ok.auth_user == "bob"
    v = h.send_request("OPTIONS")
    assert v.reason == "False True"


CACHE_SCRIPT = '''
from siphon import proxy, cache

@proxy.on_request("PUBLISH")
async def put(request):
    await cache.store("main", request.get_header("X-Key"), request.get_header("X-Val"))
    n = await cache.list_push("main", "log", request.get_header("X-Val"))
    request.reply(200, f"stored {n}")

@proxy.on_request("SUBSCRIBE")
async def get(request):
    v = await cache.fetch("main", request.get_header("X-Key"))
    items = await cache.list_pop_all("main", "log")
    request.reply(200, f"{v} {items} {cache.has_cache('main')} {cache.has_cache('nope')}")
'''


def test_cache_visible_from_two_cores(harness):
    h = harness(CACHE_SCRIPT, cores=2)
    assert h.send_request("PUBLISH", core=0, headers={"X-Key": "k", "X-Val": "v0"}).reason == "stored 1"
    assert h.send_request("PUBLISH", core=1, headers={"X-Key": "k2", "X-Val": "v1"}).reason == "stored 2"
    r = h.send_request("SUBSCRIBE", core=1, headers={"X-Key": "k"})
    assert r.reason == "v0 ['v0', 'v1'] True False"
    r = h.send_request("SUBSCRIBE", core=0, headers={"X-Key": "k2"})
    assert r.reason == "v1 [] True False"


MISC_SCRIPT = '''
from siphon import proxy, metrics, config, log, timer

calls = metrics.counter("app_calls_total", "calls", labels=["method"])
depth = metrics.gauge("app_depth", "depth")
lat = metrics.histogram("app_latency_seconds", "latency", buckets=[0.1, 1.0])

@proxy.on_request
def any_method(request):
    calls.labels(method=request.method).inc()
    depth.set(5)
    depth.dec()
    lat.observe(0.5)
    if request.method == "OPTIONS":
        request.reply(200, f"{config.get('routing.trunk')} {config.get('missing', 'dflt')} {config.get('list.1')}")
    elif request.method == "INFO":
        config.require("no.such.key")
    elif request.method == "MESSAGE":
        ok = proxy.sanity_check(request)
        allowed = [proxy.rate_limit(request, 60, 2) for _ in range(3)]
        request.reply(200, f"{ok} {allowed}")
    elif request.method == "NOTIFY":
        timer.set("k1", 10, lambda: log.info("timer k1 fired"))
        timer.set("k2", 10, lambda: log.info("timer k2 fired"))
        timer.cancel("k2")
        log.debug("dbg")
        log.warning("careful")
        request.reply(202, f"active {timer.active_count}")
'''


def test_metrics_config_log_timer_proxy_utils(harness):
    h = harness(MISC_SCRIPT, script_config={"routing": {"trunk": "sip:gw.example.net"}, "list": [1, 2]})
    r = h.send_request("OPTIONS")
    assert r.reason == "sip:gw.example.net dflt 2"
    r = h.send_request("INFO", core=1)
    assert r.status_code == 500 and r.script_error
    r = h.send_request("MESSAGE")
    assert r.reason == "True [True, True, False]"
    r = h.send_request("NOTIFY", event="x")
    assert r.reason == "active 1"
    h.wait_log("timer k1 fired")
    assert not h.logs_matching("timer k2 fired")
    assert h.logs_matching("careful", level="warn")
    text = h.metrics()
    assert 'app_calls_total{method="OPTIONS"} 1' in text
    assert 'app_calls_total{method="MESSAGE"} 1' in text
    assert "app_depth 4" in text
    assert 'app_latency_seconds_bucket{le="1"} 4' in text
    assert "# TYPE app_latency_seconds histogram" in text


def test_registrar_expiry_fires_on_change(harness):
    h = harness(REG_SCRIPT, min_expires=1)
    r = h.send_request("REGISTER", ruri="sip:example.com", to_uri="sip:carol@example.com",
                       headers={"Contact": "<sip:carol@192.0.2.7>;expires=1"}, core=1)
    assert r.status_code == 200
    h.wait_log("on_change sip:carol@example.com registered 1")
    h.wait_log("on_change sip:carol@example.com expired 0")
    assert h.send_request("INVITE", ruri="sip:carol@example.com").status_code == 404


ADMIN_SCRIPT = REG_SCRIPT + '''
@proxy.on_request("OPTIONS")
async def admin(request):
    op = request.get_header("X-Op")
    uri = "sip:dave@example.com"
    if op == "count":
        request.reply(200, f"count {await registrar.aor_count()} {registrar.is_registered(uri)}")
    elif op == "remove":
        request.reply(200, f"removed {registrar.remove(uri)} {registrar.remove(uri)}")
'''


def test_registrar_count_and_remove(harness):
    h = harness(ADMIN_SCRIPT)
    h.send_request("REGISTER", ruri="sip:example.com", to_uri="sip:dave@example.com",
                   headers={"Contact": "<sip:dave@192.0.2.8>"})
    assert h.send_request("OPTIONS", core=1, headers={"X-Op": "count"}).reason == "count 1 True"
    assert h.send_request("OPTIONS", headers={"X-Op": "remove"}).reason == "removed True False"
    h.wait_log("on_change sip:dave@example.com deregistered 0")
    assert h.send_request("OPTIONS", headers={"X-Op": "count"}).reason == "count 0 False"
