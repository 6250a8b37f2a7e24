"""scripting/examples/proxy_default.py in the real engine, on two cores."""

import os

from test_namespaces import _authz

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "proxy_default.py")


def test_example_proxy_default(harness):
    with open(EXAMPLE) as f:
        src = f.read()
    h = harness(src, cores=2, auth_users={"alice": "secret"})
    reg = dict(ruri="sip:example.com", to_uri="sip:alice@example.com", from_uri="sip:alice@example.com",
               contact_expires=600)
    r = h.send_request("REGISTER", headers={"Contact": "<sip:alice@198.51.100.7:5060>"}, **reg)
    assert r.status_code == 401
    ch = r.header("WWW-Authenticate")
    r = h.send_request("REGISTER", core=1, headers={
        "Contact": "<sip:alice@198.51.100.7:5060>",
        "Authorization": _authz(ch, "alice", "secret", "REGISTER", "sip:example.com")}, **reg)
    assert r.status_code == 200 and r.auth_user == "alice"
    inv = h.send_request("INVITE", ruri="sip:alice@example.com", core=0)
    assert inv.was_forked and inv.targets == ["sip:alice@198.51.100.7:5060"] and inv.record_routed
    assert h.send_request("INVITE", ruri="sip:bob@example.com").status_code == 404
    assert h.send_request("INVITE", ruri="sip:bob@elsewhere.net").status_code == 403
    assert h.send_request("INVITE", ruri="sip:alice@example.com", max_forwards=1).status_code == 483
    bye = h.send_request("BYE", ruri="sip:alice@198.51.100.7:5060", to_tag="t1",
                         headers={"Route": "<sip:example.com;lr>"})
    assert bye.was_relayed and "Route" not in bye.request_text
    assert h.send_request("BYE").status_code == 481
    assert h.send_reply(inv, 180, "Ringing").action == "relay"
    assert 'example_calls_total{result="forked"} 1' in h.metrics()
