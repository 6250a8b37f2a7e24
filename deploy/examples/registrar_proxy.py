"""Registrar + proxy: local users register with digest auth and call each other; calls to
other domains leave through an outbound proxy, but only for authenticated local users.

REGISTER            401 challenge, then registrar.save (which answers 200 itself)
in-dialog           loose_route + relay along the route set
to a local user     record_route + fork to the user's contacts; 480 when not registered
to another domain   407 challenge for local callers, then relay to the outbound proxy;
                    403 for callers from other domains (no open relay)

Tested by test_registrar_proxy.py (SipTestHarness) and, through the release binary with SIPp,
by edge/node/tests/sdk_examples.rs.
"""

from siphon import Request, auth, config, log, proxy, registrar

OUTBOUND = config.get("outbound_proxy", "sip:outbound.example.net")


@proxy.on_request("REGISTER")
def register(request: Request) -> None:
    if not auth.require_www_digest(request):
        return
    registrar.save(request)


@proxy.on_request("INVITE|MESSAGE|OPTIONS|BYE|ACK|UPDATE|INFO|PRACK|REFER|NOTIFY|SUBSCRIBE")
def route(request: Request) -> None:
    if request.in_dialog:
        if request.loose_route() or request.method != "ACK":
            request.relay()
        return
    if request.ruri.is_local:
        contacts = registrar.lookup(request.ruri)
        if not contacts:
            request.reply(480, "Temporarily Unavailable")
            return
        request.record_route()
        request.fork(contacts)
        return
    if request.from_uri is None or not request.from_uri.is_local:
        request.reply(403, "Relaying Denied")
        return
    if not auth.require_proxy_digest(request):
        return
    log.info(f"{request.auth_user} calls out to {request.ruri}")
    request.record_route()
    request.relay(OUTBOUND)
