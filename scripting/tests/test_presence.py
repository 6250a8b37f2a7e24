"""The ``presence`` namespace and the node's compositor/notifier, against the real engine.

Upstream's default script (edge/node/tests/fixtures/upstream, unchanged) handles PUBLISH with
``presence.publish``; the node answers the SUBSCRIBE for a presentity it holds state for.
"""

import os

import pytest

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "edge", "node", "tests", "fixtures",
                       "upstream", "scripts", "proxy_default.py")

PIDF_OPEN = ('<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" '
             'entity="sip:alice@example.com"><tuple id="t1"><status><basic>open</basic>'
             '</status></tuple></presence>')
PIDF_BUSY = PIDF_OPEN.replace("open", "closed")


def hdr(out, name):
    return [v for n, v in out["headers"] if n.lower() == name.lower()]


def upstream_default():
    with open(FIXTURE) as f:
        return f.read()


def publish(h, body=None, etag=None, expires=None, event="presence", core=0):
    headers = {}
    if etag:
        headers["SIP-If-Match"] = etag
    if expires is not None:
        headers["Expires"] = str(expires)
    return h.send_request("PUBLISH", ruri="sip:alice@example.com", event=event, body=body,
                          content_type="application/pidf+xml" if body else None,
                          headers=headers, core=core)


def test_upstream_default_publish_subscribe_notify(harness):
    h = harness(upstream_default(), local_domains=["example.com"])
    r = publish(h, PIDF_OPEN)
    assert (r.status_code, r.reason) == (200, "OK")
    etag = r.header("SIP-ETag")
    assert etag and r.header("Expires") == "3600"

    # SUBSCRIBE for the presentity: answered by the node, then a NOTIFY with the PIDF.
    s = h.send_request("SUBSCRIBE", ruri="sip:alice@example.com", from_uri="sip:bob@example.com",
                       from_tag="b1", call_id="sub1@test", event="presence", core=1,
                       headers={"Contact": "<sip:bob@127.0.0.1:5070>", "Expires": "600",
                                "Accept": "application/pidf+xml",
                                "Record-Route": "<sip:10.0.0.9;lr>"})
    assert s.status_code == 200
    assert s.header("Expires") == "600"
    assert s.header("Contact")
    to_tag = s.raw["disposition"].get("to_tag")
    assert to_tag
    n1 = h.wait_outbound(1)[0]
    assert n1["method"] == "NOTIFY" and n1["ruri"] == "sip:bob@127.0.0.1:5070"
    assert hdr(n1, "Event") == ["presence"]
    assert hdr(n1, "Subscription-State") == ["active;expires=600"]
    assert hdr(n1, "CSeq") == ["1 NOTIFY"]
    assert hdr(n1, "Call-ID") == ["sub1@test"]
    assert hdr(n1, "To") == ["<sip:bob@example.com>;tag=b1"]
    assert hdr(n1, "From") == [f"<sip:alice@example.com>;tag={to_tag}"]
    assert hdr(n1, "Route") == ["<sip:10.0.0.9;lr>"]
    assert hdr(n1, "Content-Type") == ["application/pidf+xml"]
    assert n1["body"] == PIDF_OPEN

    # Modify (SIP-If-Match + body): new ETag, and a NOTIFY with the new state, next CSeq.
    r = publish(h, PIDF_BUSY, etag=etag, expires=600, core=1)
    assert r.status_code == 200
    etag2 = r.header("SIP-ETag")
    assert etag2 and etag2 != etag and r.header("Expires") == "600"
    n2 = h.wait_outbound(2)[1]
    assert hdr(n2, "CSeq") == ["2 NOTIFY"] and n2["body"] == PIDF_BUSY

    # Refresh (no body): new ETag, no NOTIFY (the state did not change).
    r = publish(h, None, etag=etag2, expires=600)
    assert r.status_code == 200 and r.header("SIP-ETag") not in (None, etag2)
    etag3 = r.header("SIP-ETag")

    # An unknown or superseded ETag: 412, whatever the script replies after publish().
    assert publish(h, PIDF_OPEN, etag=etag).status_code == 412
    # An event package the compositor does not serve: 489.
    r = publish(h, PIDF_OPEN, event="dialog")
    assert r.status_code == 489 and r.header("Allow-Events") == "presence"
    # Too brief: 423 with Min-Expires.
    r = publish(h, PIDF_OPEN, expires=5)
    assert (r.status_code, r.header("Min-Expires")) == (423, "60")

    # In-dialog refresh, then unsubscribe (Expires: 0): each answered 200 with a NOTIFY,
    # the last one terminated.
    s = h.send_request("SUBSCRIBE", ruri="sip:127.0.0.1", from_uri="sip:bob@example.com",
                       to_uri="sip:alice@example.com", from_tag="b1", to_tag=to_tag,
                       call_id="sub1@test", cseq=2, event="presence",
                       headers={"Contact": "<sip:bob@127.0.0.1:5070>", "Expires": "300"})
    assert s.status_code == 200 and s.header("Expires") == "300"
    n3 = h.wait_outbound(3)[2]
    assert hdr(n3, "Subscription-State") == ["active;expires=300"] and hdr(n3, "CSeq") == ["3 NOTIFY"]
    s = h.send_request("SUBSCRIBE", ruri="sip:127.0.0.1", from_uri="sip:bob@example.com",
                       to_uri="sip:alice@example.com", from_tag="b1", to_tag=to_tag,
                       call_id="sub1@test", cseq=3, event="presence",
                       headers={"Contact": "<sip:bob@127.0.0.1:5070>", "Expires": "0"})
    assert s.status_code == 200
    n4 = h.wait_outbound(4)[3]
    assert hdr(n4, "Subscription-State") == ["terminated;reason=timeout"]
    assert n4["body"] == PIDF_BUSY

    # Remove the publication (Expires: 0 with its ETag).
    r = publish(h, None, etag=etag3, expires=0)
    assert r.status_code == 200 and r.header("Expires") == "0"

    # A SUBSCRIBE for a presentity with no published state stays the script's: it proxies
    # to the registered contact, here none, so 404.
    s = h.send_request("SUBSCRIBE", ruri="sip:carol@example.com", event="presence",
                       headers={"Contact": "<sip:bob@127.0.0.1:5070>"})
    assert s.status_code == 404


NS_SCRIPT = '''
from siphon import proxy, presence, log

@proxy.on_request("MESSAGE")
def m(request):
    op = request.get_header("X-Op")
    if op == "basic":
        e = presence.publish("sip:dave@example.com", "<presence/>", expires=120)
        assert isinstance(e, str) and e
        assert presence.lookup("sip:dave@example.com") == "<presence/>"
        assert presence.lookup("sip:nobody@example.com") is None
        assert presence.document_count() >= 1
        sid = presence.subscribe("sip:erin@example.com", "sip:dave@example.com")
        assert sid.startswith("sub-")
        subs = presence.subscribers("sip:dave@example.com")
        assert [s["subscriber"] for s in subs] == ["sip:erin@example.com"]
        assert subs[0]["event"] == "presence" and subs[0]["state"] == "init"
        assert 3590 <= subs[0]["remaining"] <= 3600
        assert presence.refresh(sid, 60) and not presence.refresh("sub-nope", 60)
        try:
            presence.notify(sid, body="<x/>")
        except ValueError:
            pass
        else:
            raise AssertionError("notify without dialog state must raise")
        assert presence.unsubscribe(sid) and not presence.unsubscribe(sid)
        did = presence.subscribe_dialog("sip:erin@127.0.0.1:5090", "sip:dave@example.com",
                                        "presence", 300, "cid-1", "ft-1", "tt-1",
                                        route_set=["<sip:10.1.1.1;lr>"],
                                        local_uri="<sip:dave@example.com>",
                                        remote_uri="<sip:erin@example.com>;tag=ft-1")
        assert presence.find_by_dialog("cid-1", "ft-1") == did
        assert presence.find_by_dialog("cid-1", "other") is None
        assert presence.subscription_count() == 1
        assert presence.notify(did, body="<presence/>", content_type="application/pidf+xml") is None
        assert presence.terminate(did, reason="deactivated") is True
        assert presence.terminate(did) is False
        assert presence.subscription_count() == 0
        presence.expire_stale()
        info = presence.parse_reginfo(
            '<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="3" state="full">'
            '<registration aor="sip:a@x" id="r1" state="active">'
            '<contact id="c1" state="active" event="registered" expires="600" q="0.5">'
            '<uri>sip:a@10.0.0.1</uri></contact></registration></reginfo>')
        assert info == {"version": 3, "state": "full", "registrations": [
            {"aor": "sip:a@x", "id": "r1", "state": "active", "contacts": [
                {"uri": "sip:a@10.0.0.1", "state": "active", "event": "registered",
                 "expires": 600, "q": 0.5}]}]}
        for bad in ("<reginfo", '<reginfo version="1" state="weird"/>'):
            try:
                presence.parse_reginfo(bad)
            except ValueError:
                pass
            else:
                raise AssertionError("bad reginfo must raise")
        request.reply(200, "OK")
    elif op == "count":
        request.reply(200, f"docs={presence.document_count()}")
'''


def test_namespace_signatures_and_values(harness):
    h = harness(NS_SCRIPT)
    r = h.send_request("MESSAGE", headers={"X-Op": "basic"})
    assert not r.script_error, r.raw
    assert r.status_code == 200
    out = h.wait_outbound(2)
    n, t = out[0], out[1]
    assert n["ruri"] == "sip:erin@127.0.0.1:5090"
    assert hdr(n, "From") == ["<sip:dave@example.com>;tag=tt-1"]
    assert hdr(n, "To") == ["<sip:erin@example.com>;tag=ft-1"]
    assert hdr(n, "Route") == ["<sip:10.1.1.1;lr>"]
    assert hdr(n, "Subscription-State") == ["active"] and hdr(n, "CSeq") == ["1 NOTIFY"]
    assert hdr(t, "Subscription-State") == ["terminated;reason=deactivated"]
    assert hdr(t, "CSeq") == ["2 NOTIFY"]
    # State is shared by every core's interpreter.
    assert h.send_request("MESSAGE", headers={"X-Op": "count"}, core=1).reason == "docs=1"
