# PyPI smpp34's own Server as the upstream SMSC for siphon's outbound binds
# (edge/node/tests/smpp_outbound.rs). Accepts submit_sm with message_id "s34-N" (rejects
# destination "reject34" with ESME_RSUBMITFAIL); for a submit asking for a receipt it sends a
# DLR, then an MO deliver_sm, over the same bind. Every event is printed.
#
#   smpp34_smsc.py PORT                  # smpp34's Server on PORT, as shipped
#   smpp34_smsc.py PORT --tls CERT KEY   # the same Server, extended: TLS and data_sm
#
# smpp34's Server speaks plain TCP only and has no data_sm event (it is a compiled class,
# not subclassable). The extended form keeps it the SMSC for everything it handles (bind,
# enquire_link, submit_sm, deliver_sm, unbind) and adds the two missing pieces in front of
# its socket, in this process: Python's ssl module terminates TLS on PORT, and the PDU
# stream is relayed to the Server frame by frame, with data_sm handled here both ways:
# - a data_sm from the ESME is answered data_sm_resp "d34-N" and printed
#   ("data_sm SRC DST len=N d34-N"), then a data_sm with a 300-octet message_payload goes
#   back over the same bind ("data_sm resp STATUS MESSAGE_ID" when the ESME answers);
# - the data_sm bodies are encoded and decoded with smpp34's own PDU classes (DeliverSm,
#   Tlv, decode): data_sm's fields are deliver_sm's minus protocol_id, priority_flag, the
#   two times, replace_if_present_flag, sm_default_msg_id and short_message.
import asyncio
import socket
import ssl
import struct
import sys

import smpp34

port = int(sys.argv[1])
tls = sys.argv[2:5] if len(sys.argv) >= 5 and sys.argv[2] == "--tls" else None
esmes = {}

DATA_SM, DATA_SM_RESP, DELIVER_SM = 0x00000103, 0x80000103, 0x00000005


def out(*a):
    print(*a, flush=True)


async def receipt(esme, src, dst, mid):
    text = (f"id:{mid} sub:001 dlvrd:001 submit date:2101010000 done date:2101010000"
            f" stat:DELIVRD err:000 text:hi").encode()
    r = await esme.deliver_sm(src, text, source_addr=dst, esm_class=4)
    out("dlr resp", r.command_status)
    r = await esme.deliver_sm("15550100", b"mo from smpp34", source_addr="15550999")
    out("mo resp", r.command_status)


async def serve(s):
    n = 0
    while True:
        ev = await s.next()
        if isinstance(ev, smpp34.Esme):
            esmes[ev.session_id] = ev
            out("bound", ev.system_id)
        elif isinstance(ev, smpp34.SubmitSmEvent):
            if ev.destination_addr == "reject34":
                ev.reject(0x45)
                out("rejected")
                continue
            n += 1
            mid = f"s34-{n}"
            ev.accept(mid)
            out("submit", ev.destination_addr, ev.short_message.decode(), mid)
            esme = esmes.get(ev.session_id)
            if esme is not None and ev.registered_delivery:
                asyncio.ensure_future(receipt(esme, ev.source_addr, ev.destination_addr, mid))
        elif isinstance(ev, smpp34.Unbound):
            esmes.pop(ev.session_id, None)
            out("unbound")


# ---- data_sm on smpp34's codec ----------------------------------------------------------------

def _esm_class_at(body):
    """Offset of esm_class in a deliver_sm/data_sm body (after three C-strings and 4 octets)."""
    i = body.index(b"\0") + 1            # service_type
    i = body.index(b"\0", i + 2) + 1     # source ton, npi, source_addr
    return body.index(b"\0", i + 2) + 1  # dest ton, npi, destination_addr


def encode_data_sm(seq, source, dest, payload):
    d = smpp34.DeliverSm(source, dest, b"", source_addr_ton=1, source_addr_npi=1,
                         dest_addr_ton=1, dest_addr_npi=1,
                         tlvs=[smpp34.Tlv(smpp34.TLV_MESSAGE_PAYLOAD, payload)],
                         sequence_number=seq).encode()
    body = d[16:]
    e = _esm_class_at(body)
    # esm_class, [protocol_id, priority, "", ""], registered_delivery, [replace],
    # data_coding, [sm_default_msg_id, sm_length], TLVs
    body = body[:e + 1] + body[e + 5:e + 6] + body[e + 7:e + 8] + body[e + 10:]
    return struct.pack(">IIII", 16 + len(body), DATA_SM, 0, seq) + body


def decode_data_sm(frame):
    """A data_sm frame as smpp34's DeliverSm (same fields, short_message empty)."""
    body = frame[16:]
    e = _esm_class_at(body)
    body = (body[:e + 1] + b"\0\0\0\0" + body[e + 1:e + 2] + b"\0" + body[e + 2:e + 3]
            + b"\0\0" + body[e + 3:])
    seq = struct.unpack_from(">I", frame, 12)[0]
    return smpp34.decode(struct.pack(">IIII", 16 + len(body), DELIVER_SM, 0, seq) + body)


def data_sm_resp(seq, message_id):
    body = message_id.encode() + b"\0"
    return struct.pack(">IIII", 16 + len(body), DATA_SM_RESP, 0, seq) + body


async def read_pdu(r):
    try:
        head = await r.readexactly(16)
        (n,) = struct.unpack_from(">I", head)
        return head + await r.readexactly(n - 16)
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        return None


data_ids = [0]


async def front(inner, cr, cw):
    """One ESME connection: relay to smpp34's Server, data_sm handled here."""
    br, bw = await asyncio.open_connection("127.0.0.1", inner)
    ours = set()

    async def esme_to_server():
        while (frame := await read_pdu(cr)) is not None:
            cmd, status, seq = struct.unpack_from(">III", frame, 4)
            if cmd == DATA_SM:
                pdu = decode_data_sm(frame)
                payload = b"".join(t.value for t in pdu.tlvs
                                   if t.tag == smpp34.TLV_MESSAGE_PAYLOAD)
                data_ids[0] += 1
                mid = f"d34-{data_ids[0]}"
                cw.write(data_sm_resp(seq, mid))
                out("data_sm", pdu.source_addr, pdu.destination_addr, f"len={len(payload)}", mid)
                mseq = 0x7FFF0000 + data_ids[0]
                ours.add(mseq)
                cw.write(encode_data_sm(mseq, pdu.destination_addr, pdu.source_addr,
                                        b"m" * 300))
            elif cmd == DATA_SM_RESP and seq in ours:
                ours.discard(seq)
                out("data_sm resp", status, frame[16:].split(b"\0")[0].decode())
            else:
                bw.write(frame)
        bw.close()

    async def server_to_esme():
        while (frame := await read_pdu(br)) is not None:
            cw.write(frame)
        cw.close()

    await asyncio.gather(esme_to_server(), server_to_esme())


async def main():
    inner = port
    if tls:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            inner = s.getsockname()[1]
    s = smpp34.Server("127.0.0.1", inner, system_id="smpp34")
    await s.start()
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls[1], tls[2])
        await asyncio.start_server(lambda r, w: front(inner, r, w), "127.0.0.1", port, ssl=ctx)
    out("listening")
    await serve(s)


asyncio.run(main())
