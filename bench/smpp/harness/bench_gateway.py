# siphon between the load generator and the SMSC simulator: each submit_sm from the ESME is
# forwarded with submit_via over the outbound bind "up" and answered with the SMSC's id.
from siphon import smpp


@smpp.on_bind
def authorise(bind):
    return bind.accept()


@smpp.on_pdu("submit_sm")
async def submit(pdu, session):
    r = await smpp.submit_via(bind="up", source_addr=pdu.source_addr,
                              destination_addr=pdu.destination_addr, short_message=pdu.body)
    if not r.ok:
        return pdu.reply(command_status=r.command_status)
    return pdu.reply(message_id=r.message_id)
