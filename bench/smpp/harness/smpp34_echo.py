# PyPI smpp34's own Server as the peer (spec §5, "a second peer"): accept every submit_sm with
# message_id "0". argv: port. Prints "listening" once it serves.
import asyncio
import sys

import smpp34


async def main(port):
    s = smpp34.Server("127.0.0.1", port)
    await s.start()
    print("listening", flush=True)
    while True:
        ev = await s.next()
        if isinstance(ev, smpp34.SubmitSmEvent):
            ev.accept("0")


asyncio.run(main(int(sys.argv[1])))
