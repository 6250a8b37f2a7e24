# A TLS front for the SMSC simulator (edge/node/tests/smpp_outbound.rs): terminates TLS with
# the given certificate and pipes the bytes to the plain simulator.
# argv: listen_port backend_port cert.pem key.pem. Prints "listening" once it serves.
import asyncio
import ssl
import sys

listen_port, backend_port = int(sys.argv[1]), int(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[3], sys.argv[4])


async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        w.close()


async def conn(r, w):
    br, bw = await asyncio.open_connection("127.0.0.1", backend_port)
    await asyncio.gather(pipe(r, bw), pipe(br, w))


async def main():
    s = await asyncio.start_server(conn, "127.0.0.1", listen_port, ssl=ctx)
    print("listening", flush=True)
    async with s:
        await s.serve_forever()


asyncio.run(main())
