# Script under test for edge/node/tests/smpp_store.rs: every submit_sm goes to bind "up"
# through the store-and-forward queue; the ESME gets our id, its receipt comes back rewritten.
from siphon import log, smpp


@smpp.on_bind
def authorise(bind):
    return bind.accept()


@smpp.on_pdu("submit_sm")
async def submit(pdu, session):
    r = await smpp.submit_via(bind="up", source_addr=pdu.source_addr,
                              destination_addr=pdu.destination_addr, short_message=pdu.body,
                              registered_delivery=pdu.registered_delivery,
                              store=True, esme=session)
    if not r.ok:
        log.info(f"store refused {r.command_status}")
        return pdu.reply(command_status=r.command_status)
    return pdu.reply(message_id=r.message_id)


@smpp.on_pdu("deliver_sm")
def deliver(pdu, session):
    # Receipts of stored messages never get here (the node routes them).
    log.info(f"deliver_sm reached the script: {pdu.body!r}")
