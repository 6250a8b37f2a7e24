# Script under test for edge/node/tests/smpp_store.rs: every submit_sm, submit_multi and
# data_sm goes through the store-and-forward queue (submit_via / submit_multi_via /
# data_via with store=True); the ESME gets our id, its receipt comes back rewritten.
# Bind by the first digit of the destination: 9 -> "slow", 8 -> "down", else "up".
from siphon import log, smpp


def _bind(dest):
    return {"9": "slow", "8": "down"}.get(dest[:1], "up")


def _answer(pdu, r):
    if not r.ok:
        log.info(f"store refused {r.command_status}")
        return pdu.reply(command_status=r.command_status)
    return pdu.reply(message_id=r.message_id)


@smpp.on_bind
def authorise(bind):
    return bind.accept()


@smpp.on_pdu("submit_sm")
async def submit(pdu, session):
    r = await smpp.submit_via(bind=_bind(pdu.destination_addr), source_addr=pdu.source_addr,
                              destination_addr=pdu.destination_addr, short_message=pdu.body,
                              registered_delivery=pdu.registered_delivery,
                              store=True, esme=session)
    return _answer(pdu, r)


@smpp.on_pdu("submit_sm_multi")
async def submit_multi(pdu, session):
    r = await smpp.submit_multi_via(bind=_bind(pdu.destinations[0]),
                                    source_addr=pdu.source_addr,
                                    destinations=pdu.destinations,
                                    short_message=pdu.short_message,
                                    registered_delivery=pdu.registered_delivery,
                                    store=True, esme=session)
    return _answer(pdu, r)


@smpp.on_pdu("data_sm")
async def data(pdu, session):
    r = await smpp.data_via(bind=_bind(pdu.destination_addr), source_addr=pdu.source_addr,
                            destination_addr=pdu.destination_addr, short_message=pdu.body,
                            registered_delivery=pdu.registered_delivery,
                            store=True, esme=session.system_id)
    return _answer(pdu, r)


@smpp.on_pdu("deliver_sm")
def deliver(pdu, session):
    # Receipts of stored messages never get here (the node routes them).
    log.info(f"deliver_sm reached the script: {pdu.body!r}")
