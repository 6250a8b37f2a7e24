# Script under test for edge/node/tests/smpp_outbound.rs: a gateway from ESMEs (the listener)
# to SMSCs (binds "up", "rx", "nack"); the destination address picks the case.
from siphon import log, smpp


@smpp.on_bind
def authorise(bind):
    return bind.accept()


@smpp.on_session("bound")
def bound(session):
    log.info(f"session bound kind={session.kind} system_id={session.system_id}")


@smpp.on_session("unbound")
def unbound(session):
    log.info(f"session unbound kind={session.kind} system_id={session.system_id}")


@smpp.on_pdu("submit_sm")
async def submit(pdu, session):
    dest = pdu.destination_addr
    bind = {"rx": "rx", "nack": "nack", "nobind": "nosuchbind"}.get(dest, "up")
    try:
        if dest == "multi":
            r = await smpp.submit_multi_via(bind=bind, source_addr=pdu.source_addr,
                                            destinations=["1", "2", "3"],
                                            short_message=pdu.body)
        elif dest == "query":
            q = await smpp.query_via(bind=bind, message_id="abc")
            log.info(f"query_via {q.command_status} state={q.message_state} id={q.message_id}")
            r = await smpp.cancel_via(bind=bind, message_id="abc")
            log.info(f"cancel_via {r.command_status}")
            r = await smpp.replace_via(bind=bind, message_id="abc", short_message=b"new")
            log.info(f"replace_via {r.command_status}")
        else:
            r = await smpp.submit_via(bind=bind, source_addr=pdu.source_addr,
                                      destination_addr=dest, short_message=pdu.body,
                                      registered_delivery=pdu.registered_delivery,
                                      tlvs={"sar_msg_ref_num": 7} if dest == "sar" else None)
    except KeyError as e:
        log.info(f"via KeyError {e}")
        return pdu.reply(command_status="ESME_RINVDSTADR")
    except RuntimeError as e:
        log.info(f"via RuntimeError {e}")
        return pdu.reply(command_status="ESME_RX_T_APPN")
    if not r.ok:
        log.info(f"via soft nack {r.command_status}")
        return pdu.reply(command_status=r.command_status)
    return pdu.reply(message_id=r.message_id)


@smpp.on_pdu("data_sm")
async def data(pdu, session):
    if session.kind == "bind":
        log.info(f"data_sm from {session.system_id} len={len(pdu.body)}")
        return pdu.reply(message_id="dmo")
    r = await smpp.data_via(bind="up", source_addr=pdu.source_addr,
                            destination_addr=pdu.destination_addr, short_message=pdu.body)
    return pdu.reply(message_id=r.message_id, command_status=r.command_status)


@smpp.on_pdu("deliver_sm")
def deliver(pdu, session):
    if pdu.is_dlr:
        rc = pdu.receipt
        log.info(f"DLR via {session.kind}:{session.system_id} id={rc['id']} stat={rc['stat']}")
    else:
        log.info(f"MO via {session.kind}:{session.system_id} body={pdu.body.decode()}")
    return None
