#!/usr/bin/env python3
"""Added latency of an async handler, in both script placements, on the release binary.

One node per placement (`inline`, the default, and `thread`), one reactor core, loopback UDP.
Three OPTIONS handlers chosen by a header, measured in the same run and interleaved so that
drift on a shared host hits them alike:

  sync     def h(r): r.reply(200)
  async0   async def h(r): r.reply(200)                          (never suspends)
  sleep0   async def h(r): await asyncio.sleep(0); r.reply(200)  (suspends once: asyncio loop)

Each request is sent only after the previous answer (one outstanding), so the figure is the
round trip through the node. Prints p50/p99 per handler and the async ones minus sync.

    python3 bench/script/async_latency.py [--bin PATH] [--count 3000]

Bounded: --count requests per handler and placement (at most 20,000), 5 s timeout each.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

SCRIPT = r'''
import asyncio
from siphon import proxy

@proxy.on_request("OPTIONS")
async def route(request):
    kind = request.get_header("X-Kind")
    if kind == "sleep0":
        await asyncio.sleep(0)
    request.reply(200, "OK")

@proxy.on_request("INFO")
def sync(request):
    request.reply(200, "OK")
'''


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, placement, tmp):
    port = free_port()
    d = os.path.join(tmp, placement)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "s.py"), "w") as f:
        f.write(SCRIPT)
    with open(os.path.join(d, "siphon.yaml"), "w") as f:
        f.write(f'listen:\n  udp: ["127.0.0.1:{port}"]\nscript:\n  path: s.py\n'
                f'tuning:\n  reactor_cpus: [0]\n  script_placement: {placement}\n'
                f'log:\n  level: warn\n')
    p = subprocess.Popen([binary, "-c", "siphon.yaml"], cwd=d,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            return p, port
        time.sleep(0.05)
    p.kill()
    sys.exit(f"siphon ({placement}) did not start")


def req(kind, port, local, n):
    method = "INFO" if kind == "sync" else "OPTIONS"
    return (f"{method} sip:svc@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-{kind}-{n}\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:b@127.0.0.1>;tag=b{n}\r\nTo: <sip:svc@127.0.0.1>\r\n"
            f"Call-ID: bench-{kind}-{n}\r\nCSeq: 1 {method}\r\nX-Kind: {kind}\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def measure(port, count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    local = s.getsockname()[1]
    kinds = ["sync", "async0", "sleep0"]
    rtt = {k: [] for k in kinds}
    for n in range(count + 200):
        for k in kinds:
            data = req(k, port, local, n)
            t0 = time.perf_counter()
            s.sendto(data, ("127.0.0.1", port))
            while True:
                msg = s.recv(65536)
                if not msg.startswith(b"SIP/2.0 100"):
                    break
            if n >= 200:  # warm-up
                rtt[k].append((time.perf_counter() - t0) * 1e6)
    s.close()
    return rtt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("SIPHON_BIN", "/var/cache/siphon/target/release/siphon"))
    ap.add_argument("--count", type=int, default=3000)
    a = ap.parse_args()
    count = max(100, min(a.count, 20000))
    with tempfile.TemporaryDirectory() as tmp:
        for placement in ["inline", "thread"]:
            p, port = start(a.bin, placement, tmp)
            try:
                rtt = measure(port, count)
            finally:
                p.kill()
                p.wait()
            base50, base99 = pct(rtt["sync"], 0.5), pct(rtt["sync"], 0.99)
            print(f"placement={placement} requests/handler={count}")
            for k, xs in rtt.items():
                p50, p99 = pct(xs, 0.5), pct(xs, 0.99)
                extra = "" if k == "sync" else f"  added p50 {p50 - base50:+.1f} us, p99 {p99 - base99:+.1f} us"
                print(f"  {k:7s} p50 {p50:8.1f} us  p99 {p99:8.1f} us{extra}")


if __name__ == "__main__":
    main()
