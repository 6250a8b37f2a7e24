# Store-and-forward as users run it: PyPI smpplib as the ESME (edge/node/tests/smpp_store.rs).
#   smpplib_store.py submit PORT N    bind transceiver, submit N messages ("sf-0".."sf-N-1")
#                                     with registered_delivery=1; print "id SEQ MESSAGE_ID"
#                                     for each submit_sm_resp
#   smpplib_store.py receipts PORT N  bind transceiver, take N delivery receipts (smpplib
#                                     answers each deliver_sm_resp); print
#                                     "receipt TLV_ID TEXT_ID STAT ESM_CLASS MESSAGE_STATE"
# Then "DONE". Exits non-zero after 90 s without what it waits for.
import sys
import time

import smpplib.client
import smpplib.consts

mode, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
deadline = time.monotonic() + 90

c = smpplib.client.Client("127.0.0.1", port, allow_unknown_opt_params=True, timeout=5)
c.connect()
c.bind_transceiver(system_id="shop", password="pw")


def text(v):
    if isinstance(v, bytes):
        v = v.decode("latin-1")
    return (v or "").rstrip("\0")


if mode == "submit":
    sent = {}
    got = []

    def on_sent(pdu, **_):
        got.append(pdu)

    c.set_message_sent_handler(on_sent)
    for i in range(n):
        ssm = c.send_message(source_addr_ton=smpplib.consts.SMPP_TON_INTL,
                             source_addr="15550100",
                             dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                             destination_addr="15550199",
                             short_message=f"sf-{i}".encode(),
                             registered_delivery=1)
        sent[ssm.sequence] = i
    while len(got) < n:
        if time.monotonic() > deadline:
            sys.exit(f"only {len(got)} of {n} submit_sm_resp")
        c.read_once()
    for pdu in got:
        assert pdu.status == 0, pdu.status
        print("id", sent[pdu.sequence], text(pdu.message_id))
elif mode == "receipts":
    got = []

    def on_received(pdu, **_):
        got.append(pdu)
        return 0  # deliver_sm_resp ESME_ROK

    c.set_message_received_handler(on_received)
    while len(got) < n:
        if time.monotonic() > deadline:
            sys.exit(f"only {len(got)} of {n} receipts")
        c.read_once()
    for pdu in got:
        body = text(pdu.short_message)
        words = dict(w.split(":", 1) for w in body.split(" ") if ":" in w)
        print("receipt", text(pdu.receipted_message_id), words.get("id", "-"),
              words.get("stat", "-"), pdu.esm_class, pdu.message_state)
c.unbind()
c.disconnect()
print("DONE")
