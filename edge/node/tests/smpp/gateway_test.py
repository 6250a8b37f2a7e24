# Script under test for edge/node/tests/smpp_inbound.rs.
import asyncio

from siphon import log, smpp


@smpp.on_bind
def authorise(bind):
    if bind.password == "bad":
        return bind.reject("ESME_RINVPASWD")
    return bind.accept()


@smpp.on_session("bound")
async def bound(session):
    if session.system_id.startswith("rx"):
        text = (b"id:abc sub:001 dlvrd:001 submit date:2101010000 done date:2101010000"
                b" stat:DELIVRD err:000 text:hi")
        r = await smpp.deliver_to(session_id=session.session_id, source_addr="111",
                                  destination_addr="222", short_message=text, esm_class=4)
        log.info(f"deliver_to {r.command_status} ok={r.ok}")


@smpp.on_session("bound")
async def alert(session):
    # Spec 6 #3: a full alert_notification with ms_availability_status (TLV 0x0422).
    if session.system_id.startswith("alert"):
        await smpp.alert_to(session_id=session.session_id, source_addr="333", esme_addr="444",
                            ms_availability_status=1)


@smpp.on_pdu("submit_sm")
async def submit(pdu, session):
    dest = pdu.destination_addr
    if dest == "reject":
        return pdu.reply(command_status="ESME_RSUBMITFAIL")
    if dest == "raise":
        raise RuntimeError("boom")
    if dest == "slow":
        await asyncio.sleep(0.5)
    if dest == "none":
        return None
    return pdu.reply(message_id=f"m-{len(pdu.body)}")


@smpp.on_pdu("data_sm")
def data(pdu, session):
    return pdu.reply(message_id=f"d-{len(pdu.body)}")


@smpp.on_pdu("query_sm")
def query(pdu, session):
    return pdu.reply_query(message_state=2)


@smpp.on_pdu("cancel_sm")
def cancel(pdu, session):
    return None


@smpp.on_pdu("replace_sm")
def replace(pdu, session):
    return pdu.reply()


@smpp.on_pdu("submit_sm_multi")
def multi(pdu, session):
    return pdu.reply(message_id=",".join(pdu.destinations))
