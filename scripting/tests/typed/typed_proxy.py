"""A routing script annotated with the ``siphon`` stubs: mypy --strict must pass on it (and
fail on a copy that misspells ``request.ruri``; test_sdk_mypy.py), and the engine runs it."""

from siphon import Contact, Reply, Request, auth, cache, config, http, log, metrics, presence
from siphon import proxy, registrar, smpp, timer

routed = metrics.counter("typed_routed_total", "requests routed", labels=["how"])
blocked_prefix: str = config.get("blocked_prefix", "900")


@proxy.on_request("REGISTER")
def register(request: Request) -> None:
    if not auth.require_www_digest(request):
        return
    registrar.save(request)


@proxy.on_request("INVITE|MESSAGE")
async def route(request: Request) -> None:
    user = request.ruri.user or ""
    if user.startswith(blocked_prefix):
        request.reply(403, "Blocked")
        return
    if await cache.fetch("main", f"dnd:{user}") is not None:
        request.reply(486)
        return
    contacts: list[Contact] = registrar.lookup(request.ruri)
    if not contacts:
        request.set_reply_header("X-Reason", "not registered")
        request.reply(404)
        return
    request.record_route()
    routed.labels(how="fork").inc()
    log.info(f"{request.method} {request.ruri} -> {len(contacts)} contact(s)")
    request.fork(contacts)


@proxy.on_reply
def on_reply(request: Request, reply: Reply) -> None:
    if reply.status_code == 183 and not reply.has_body():
        reply.reject(480)
        return
    reply.relay()


@proxy.on_failure("INVITE")
def on_failure(request: Request, reply: Reply) -> None:
    log.warn(f"{request.call_id}: {reply.status_code} {reply.reason}")


@timer.every(60, name="presence-gc", per_core=False)
def gc() -> None:
    presence.expire_stale()


@smpp.on_pdu("submit_sm")
def submit(pdu: smpp.Pdu, session: smpp.Session) -> smpp.PduReply:
    return pdu.reply(message_id=f"{session.system_id}-{pdu.sm_length}")


@http.route("/health")
def health(req: http.Request) -> http.Response:
    return http.Response(200, {"content-type": "text/plain"}, f"ok {req.path}")
