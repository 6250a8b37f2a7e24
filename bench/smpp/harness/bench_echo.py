# Upstream's bench_echo.py workload (spec §5): accept every bind, answer each submit_sm from
# an async handler with message_id "0".
from siphon import smpp


@smpp.on_bind
def authorise(bind):
    return bind.accept()


@smpp.on_pdu("submit_sm")
async def submit(pdu, session):
    return pdu.reply(message_id="0")
