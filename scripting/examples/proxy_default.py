"""A SIPhon-style default proxy: digest-authenticated registrar, location lookup, forking.

Runs unchanged on upstream SIPhon and on siphon (one interpreter per core here: the
module-level counter below is per core; the registrar is shared by all cores).
"""

from siphon import auth, log, metrics, proxy, registrar

calls = metrics.counter("example_calls_total", "INVITEs routed", labels=["result"])
seen = 0  # per core


@proxy.on_request
def sanity(request):
    if not proxy.sanity_check(request):
        request.reply(400, "Bad Request")
        request.stop_propagation()
        return
    if request.max_forwards is not None and request.max_forwards <= 1:
        request.reply(483, "Too Many Hops")
        request.stop_propagation()


@proxy.on_request("REGISTER")
def register(request):
    if not auth.require_www_digest(request):
        return
    registrar.save(request)


@proxy.on_request("INVITE|MESSAGE|OPTIONS|SUBSCRIBE")
def route(request):
    global seen
    seen += 1
    if request.in_dialog:
        if request.loose_route():
            request.relay()
        else:
            request.reply(404, "Not Here")
        return
    if not request.ruri.is_local:
        request.reply(403, "Relaying Denied")
        return
    contacts = registrar.lookup(request.ruri)
    if not contacts:
        calls.labels(result="not_found").inc()
        request.reply(404, "Not Found")
        return
    request.record_route()
    calls.labels(result="forked").inc()
    log.info(f"{request.method} {request.ruri} -> {len(contacts)} contact(s)")
    request.fork(contacts)


@proxy.on_request("BYE|ACK|CANCEL|PRACK|UPDATE|INFO|NOTIFY|REFER")
def in_dialog(request):
    if request.loose_route() or request.in_dialog:
        request.relay()
    else:
        request.reply(481, "Call/Transaction Does Not Exist")


@proxy.on_reply
def reply(request, reply):
    reply.relay()
