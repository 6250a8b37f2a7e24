# SMPP gateway (issue 13): ESMEs bind to siphon, the policy below picks an upstream SMSC bind
# (smpp_gateway.yaml `binds:`), submits go out with submit_via, and delivery receipts from the
# SMSC come back to the ESME that sent the message. Tested by test_smpp_gateway.py (SDK) and,
# through the binary, by edge/node/tests/smpp_outbound.rs `gateway_example` (receipts) and
# edge/node/tests/sdk_examples.rs (smpplib as the ESME, test_smpp_gateway.py's outcomes).
#
# Scripts run in one subinterpreter per core: the receipt arrives on the bind's core, which
# is not always the ESME's, so the message_id -> ESME session map lives in `cache` (shared by
# all cores), not in a module-level dict.
from siphon import cache, log, smpp

# system_id -> password of the ESMEs allowed to bind.
ESMES = {"shop": "shop-pw", "bank": "bank-pw"}
# Destination prefixes nobody may send to (premium numbers).
BLOCKED = ("1900",)
# Longest prefix first: destination prefix -> outbound bind.
ROUTES = [("4477", "uk"), ("", "up")]
# How long a receipt may take (the cache entry's TTL), seconds.
DLR_TTL = 48 * 3600


def route(dest):
    for prefix, bind in ROUTES:
        if dest.startswith(prefix):
            return bind
    return None


@smpp.on_bind
def authorise(bind):
    if ESMES.get(bind.system_id) != bind.password:
        return bind.reject("ESME_RINVPASWD")
    return bind.accept()


@smpp.on_pdu("submit_sm")
async def submit(pdu, session):
    dest = pdu.destination_addr
    if dest.startswith(BLOCKED):
        return pdu.reply(command_status="ESME_RINVDSTADR")
    bind = route(dest)
    if len(pdu.body) > 254:
        return pdu.reply(command_status="ESME_RINVMSGLEN")
    try:
        r = await smpp.submit_via(bind=bind, source_addr=pdu.source_addr, destination_addr=dest,
                                  short_message=pdu.body, data_coding=pdu.data_coding,
                                  registered_delivery=pdu.registered_delivery)
    except KeyError:
        # The bind is down (reconnecting): the ESME may retry later.
        return pdu.reply(command_status="ESME_RTHROTTLED")
    except RuntimeError as e:
        log.warn(f"gateway: {bind}: {e}")
        return pdu.reply(command_status="ESME_RSYSERR")
    if not r.ok:
        return pdu.reply(command_status=r.command_status)
    if pdu.registered_delivery:
        await cache.store("smpp_dlr", f"{bind}:{r.message_id}", session.session_id, ttl=DLR_TTL)
    return pdu.reply(message_id=r.message_id)


@smpp.on_pdu("deliver_sm")
async def deliver(pdu, session):
    if session.kind != "bind" or not pdu.is_dlr:
        return None  # MO traffic is acknowledged and dropped by this example
    key = f"{session.system_id}:{pdu.receipt['id']}"
    owner = await cache.fetch("smpp_dlr", key)
    if owner is None:
        log.warn(f"gateway: receipt for unknown message {key}")
        return None
    await cache.delete("smpp_dlr", key)
    try:
        await smpp.deliver_to(session_id=owner, source_addr=pdu.source_addr,
                              destination_addr=pdu.destination_addr, short_message=pdu.body,
                              esm_class=pdu.esm_class)
    except (KeyError, RuntimeError) as e:
        log.warn(f"gateway: receipt {key} not delivered to {owner}: {e}")
    return None
