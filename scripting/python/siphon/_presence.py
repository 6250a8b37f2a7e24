"""The ``presence`` namespace (siphon-core-api.md section 1.13): SIPhon's signatures and return
values over the node's presence store, which lives in Rust and is shared by every core.

The store is an event state compositor for PUBLISH (RFC 3903) and a notifier for SUBSCRIBE
(RFC 6665, RFC 3856 ``presence`` with PIDF bodies). Called from the handler of the PUBLISH it
is about, ``publish()`` reads that request's ``Event``, ``SIP-If-Match`` and ``Expires``: a
refresh, modify or remove is applied to the publication the entity-tag names, the 2xx gets
``SIP-ETag`` and ``Expires``, and a refusal (412 unknown entity-tag, 489 unknown event
package, 423 interval too brief, 503 store full) becomes the request's answer whatever the
script replies next. Every change of a presentity's composed state NOTIFYs its watchers.

A SUBSCRIBE with ``Event: presence`` for a presentity the store holds state for is answered
by the node itself before the script's handlers run (it is that presentity's presence agent):
200 with Expires, then a NOTIFY with the current PIDF; refreshes and ``Expires: 0`` within
that dialog are answered the same way, the last with ``Subscription-State: terminated``.
"""

import _siphon

from . import _engine


def _h():
    return _engine.current_request


def _text(v, what):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if not isinstance(v, str):
        raise TypeError(f"{what} must be str, not {type(v).__name__}")
    return v


def _seconds(v, what):
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{what} must be an int number of seconds")
    if v < 0:
        raise ValueError(f"{what} must not be negative")
    return v


def _local(tag):
    return tag.rsplit("}", 1)[-1]


class _Presence:
    def publish(self, entity, pidf_xml, expires=3600):
        """Publish ``pidf_xml`` for ``entity`` for ``expires`` seconds; returns the SIP-ETag
        ("" when the PUBLISH being handled was refused)."""
        return _siphon.pres_publish(_h(), str(entity), _text(pidf_xml, "pidf_xml"),
                                    _seconds(expires, "expires"))

    def lookup(self, entity):
        """The composed PIDF of ``entity`` (the latest live publication), or None."""
        return _siphon.pres_lookup(str(entity))

    def subscribe(self, subscriber, resource, event="presence", expires=3600):
        """Record a watcher without a dialog (state ``init``); returns its id."""
        return _siphon.pres_subscribe(str(subscriber), str(resource), str(event),
                                      _seconds(expires, "expires"))

    def subscribe_dialog(self, subscriber, resource, event, expires, call_id, from_tag, to_tag,
                         route_set=None, local_uri=None, remote_uri=None):
        """Record a subscription with its dialog (``subscriber`` is the watcher's Contact), so
        ``notify()`` can send in-dialog NOTIFYs; returns its id."""
        routes = [str(r) for r in (route_set or [])]
        return _siphon.pres_subscribe_dialog(
            str(subscriber), str(resource), str(event), _seconds(expires, "expires"),
            str(call_id), str(from_tag), str(to_tag), routes,
            None if local_uri is None else str(local_uri),
            None if remote_uri is None else str(remote_uri))

    def unsubscribe(self, subscription_id):
        """Remove a subscription; True if it existed."""
        return _siphon.pres_unsubscribe(str(subscription_id))

    def refresh(self, subscription_id, expires):
        """Restart a subscription's timer at ``expires`` seconds; True if it existed."""
        return _siphon.pres_refresh(str(subscription_id), _seconds(expires, "expires"))

    def find_by_dialog(self, call_id, from_tag):
        """The id of the subscription of dialog (Call-ID, subscriber's From tag), or None."""
        return _siphon.pres_find(str(call_id), str(from_tag))

    def subscribers(self, resource):
        """Live watchers of ``resource``: dicts with id, subscriber, event, state, remaining."""
        return [
            {"id": i, "subscriber": s, "event": e, "state": st, "remaining": r}
            for (i, s, e, st, r) in _siphon.pres_subscribers(str(resource))
        ]

    def subscription_count(self):
        return _siphon.pres_counts()[0]

    def document_count(self):
        """Number of presentities with a live publication."""
        return _siphon.pres_counts()[1]

    def expire_stale(self):
        """Drop expired publications and subscriptions now (the node also does it every
        second), sending the NOTIFYs that follow."""
        _siphon.pres_expire()

    def notify(self, subscription_id, body=None, content_type=None, subscription_state="active"):
        """Send an in-dialog NOTIFY for a ``subscribe_dialog`` subscription (after the answer
        of the request being handled, if any). A ``terminated`` state removes it. Raises
        ValueError for an unknown id or one without dialog state."""
        b = None if body is None else _text(body, "body")
        ct = None if content_type is None else str(content_type)
        if not _siphon.pres_notify(_h(), str(subscription_id), b, ct, str(subscription_state)):
            raise ValueError(
                f"subscription '{subscription_id}' not found or has no dialog state "
                "- use subscribe_dialog() to create subscriptions with dialog fields")

    def terminate(self, subscription_id, reason=None, body=None, content_type=None):
        """Final NOTIFY (``terminated;reason=...``, default ``noresource``) and removal.
        False if the id is unknown."""
        state = f"terminated;reason={reason or 'noresource'}"
        b = None if body is None else _text(body, "body")
        ct = None if content_type is None else str(content_type)
        return bool(_siphon.pres_notify(_h(), str(subscription_id), b, ct, state))

    def parse_reginfo(self, xml):
        """Parse an RFC 3680 ``application/reginfo+xml`` body into
        ``{"version", "state", "registrations": [{"aor", "id", "state", "contacts": [...]}]}``.
        Raises ValueError on malformed XML or unknown attribute values."""
        import xml.etree.ElementTree as _ET

        try:
            root = _ET.fromstring(_text(xml, "xml"))
        except _ET.ParseError as e:
            raise ValueError(f"invalid reginfo: {e}") from None
        if _local(root.tag) != "reginfo":
            raise ValueError("invalid reginfo: root element is not <reginfo>")
        state = root.get("state")
        if state not in ("full", "partial"):
            raise ValueError(f"invalid reginfo: state {state!r}")
        try:
            version = int(root.get("version", ""))
        except ValueError:
            raise ValueError("invalid reginfo: version is not an integer") from None
        regs = []
        for reg in root:
            if _local(reg.tag) != "registration":
                continue
            rstate = reg.get("state")
            if rstate not in ("init", "active", "terminated"):
                raise ValueError(f"invalid reginfo: registration state {rstate!r}")
            contacts = []
            for c in reg:
                if _local(c.tag) != "contact":
                    continue
                cstate = c.get("state")
                if cstate not in ("active", "terminated"):
                    raise ValueError(f"invalid reginfo: contact state {cstate!r}")
                uri = next((x.text or "" for x in c if _local(x.tag) == "uri"), "").strip()
                exp, q = c.get("expires"), c.get("q")
                try:
                    contacts.append({
                        "uri": uri,
                        "state": cstate,
                        "event": c.get("event", ""),
                        "expires": None if exp is None else int(exp),
                        "q": None if q is None else float(q),
                    })
                except ValueError:
                    raise ValueError("invalid reginfo: bad contact expires or q") from None
            regs.append({"aor": reg.get("aor", ""), "id": reg.get("id", ""), "state": rstate,
                         "contacts": contacts})
        return {"version": version, "state": state, "registrations": regs}


presence = _Presence()
