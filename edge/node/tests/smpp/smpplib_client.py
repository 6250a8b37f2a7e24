# Interop: PyPI smpplib as the ESME. argv: port. Prints one line per check, then "DONE".
import sys

import smpplib.client
import smpplib.consts
import smpplib.smpp

port = int(sys.argv[1])


def client():
    c = smpplib.client.Client("127.0.0.1", port, allow_unknown_opt_params=True, timeout=10)
    c.connect()
    return c


# every bind type
for kind in ("transceiver", "transmitter", "receiver"):
    c = client()
    getattr(c, "bind_" + kind)(system_id="esme-" + kind, password="pw")
    print("bound", kind)
    c.unbind()
    c.disconnect()

# a bad password is refused with the script's status
c = client()
try:
    c.bind_transceiver(system_id="x", password="bad")
    print("bad bind accepted")
except smpplib.exceptions.PDUError as e:
    print("bind refused", e.args[1])
c.disconnect()

c = client()
c.bind_transceiver(system_id="esme1", password="pw")
resps = []
c.set_message_sent_handler(lambda pdu: resps.append(pdu))


def roundtrip(pdu):
    c.send_pdu(pdu)
    r = c.read_pdu()
    return r


r = roundtrip(smpplib.smpp.make_pdu("submit_sm", client=c, source_addr="15550100",
                                    destination_addr="15550101", short_message=b"hi"))
print("submit_sm", r.status, r.message_id)
r = roundtrip(smpplib.smpp.make_pdu("submit_sm", client=c, source_addr="1",
                                    destination_addr="reject", short_message=b"x"))
print("submit_sm reject", r.status)
r = roundtrip(smpplib.smpp.make_pdu("query_sm", client=c, message_id="abc", source_addr="1"))
print("query_sm", r.status, r.message_state)
# smpplib has no cancel_sm/replace_sm: the raw client covers them (smpp_inbound.rs).
r = roundtrip(smpplib.smpp.make_pdu("data_sm", client=c, source_addr="1", destination_addr="2",
                                    message_payload=b"y" * 300))
print("data_sm", r.status, r.message_id)
c.unbind()
c.disconnect()

# a receiver gets the script's deliver_sm (a DLR) right after its bind
c = client()
got = []
c.set_message_received_handler(lambda pdu: got.append(pdu))
c.bind_receiver(system_id="rx1", password="pw")
c.read_once()
print("deliver_sm", got[0].esm_class, got[0].short_message.decode()[:6])
c.unbind()
c.disconnect()
print("DONE")
