"""Default routing policy: a registrar with digest auth and a record-routing proxy.

REGISTER    digest (401 challenge) then registrar.save, which sends the 200 itself
in-dialog   loose_route + relay along the route set
otherwise   lookup the Request-URI; record_route + parallel fork to the contacts; 404 if unknown
"""

from siphon import Request, auth, log, proxy, registrar


@proxy.on_request("REGISTER")
def register(request: Request) -> None:
    if not auth.require_www_digest(request):
        return  # the 401 challenge is already armed as the reply
    registrar.save(request)


@proxy.on_request("INVITE|BYE|ACK|OPTIONS|MESSAGE|INFO|UPDATE|PRACK|SUBSCRIBE|NOTIFY|REFER|PUBLISH")
def route(request: Request) -> None:
    if request.in_dialog:
        if request.loose_route():
            request.relay()
            return
        if request.method == "ACK":
            return  # stray ACK: nothing to do
        request.reply(404, "Not Here")
        return
    contacts = registrar.lookup(request.ruri)
    if not contacts:
        log.info(f"{request.method} to unknown user {request.ruri}")
        request.reply(404, "Not Found")
        return
    request.record_route()
    request.fork(contacts)
