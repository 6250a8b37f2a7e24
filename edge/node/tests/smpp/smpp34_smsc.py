# PyPI smpp34's own Server as the upstream SMSC for siphon's outbound binds
# (edge/node/tests/smpp_outbound.rs). Accepts submit_sm with message_id "s34-N" (rejects
# destination "reject34" with ESME_RSUBMITFAIL); for a submit asking for a receipt it sends a
# DLR, then an MO deliver_sm, over the same bind. Every event is printed. argv: port.
import asyncio
import sys

import smpp34

port = int(sys.argv[1])
esmes = {}


def out(*a):
    print(*a, flush=True)


async def receipt(esme, src, dst, mid):
    text = (f"id:{mid} sub:001 dlvrd:001 submit date:2101010000 done date:2101010000"
            f" stat:DELIVRD err:000 text:hi").encode()
    r = await esme.deliver_sm(src, text, source_addr=dst, esm_class=4)
    out("dlr resp", r.command_status)
    r = await esme.deliver_sm("15550100", b"mo from smpp34", source_addr="15550999")
    out("mo resp", r.command_status)


async def main():
    s = smpp34.Server("127.0.0.1", port, system_id="smpp34")
    await s.start()
    out("listening")
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


asyncio.run(main())
