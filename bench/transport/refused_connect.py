#!/usr/bin/env python3
"""Time from a refused TCP connect to the caller's final answer, on the release binary.

A script relays every MESSAGE to a TCP next hop where nothing listens (loopback: the connect
is refused at once). Each MESSAGE is sent after the previous answer; the figure is the round
trip to the final answer (the refused connect happens inside it). For comparison, the same run
measures a MESSAGE answered 404 by the script (no relay). Before transport errors failed a
branch at once, the caller waited for Timer F (32 s) and got 408.

    python3 bench/transport/refused_connect.py [--bin PATH] [--count 500]   (at most 5,000)
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

SCRIPT = r'''
from siphon import proxy

@proxy.on_request("MESSAGE")
def route(request):
    if request.get_header("X-Next"):
        request.relay(next_hop=request.get_header("X-Next"))
    else:
        request.reply(404, "Not Found")
'''


def free_port(kind=socket.SOCK_DGRAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("SIPHON_BIN", "/var/cache/siphon/target/release/siphon"))
    ap.add_argument("--count", type=int, default=500)
    a = ap.parse_args()
    count = max(50, min(a.count, 5000))
    port, nobody = free_port(), free_port(socket.SOCK_STREAM)
    with tempfile.TemporaryDirectory() as d:
        open(os.path.join(d, "s.py"), "w").write(SCRIPT)
        open(os.path.join(d, "siphon.yaml"), "w").write(
            f'listen:\n  udp: ["127.0.0.1:{port}"]\n  tcp: ["127.0.0.1:{port}"]\nscript:\n  path: s.py\n'
            f'tuning:\n  reactor_cpus: [0]\nlog:\n  level: warn\n')
        p = subprocess.Popen([a.bin, "-c", "siphon.yaml"], cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 30
            while time.time() < deadline:
                try:
                    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as t:
                        t.bind(("127.0.0.1", port))
                    time.sleep(0.05)
                except OSError:
                    break
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.settimeout(40)
            local = s.getsockname()[1]
            rtt = {"refused": [], "local404": []}
            finals = {}
            for n in range(count):
                for kind in rtt:
                    nxt = f"X-Next: sip:127.0.0.1:{nobody};transport=tcp\r\n" if kind == "refused" else ""
                    msg = (f"MESSAGE sip:svc@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-{kind}{n}\r\n"
                           f"Max-Forwards: 70\r\nFrom: <sip:b@127.0.0.1>;tag={n}\r\nTo: <sip:svc@127.0.0.1>\r\n"
                           f"Call-ID: rc-{kind}-{n}\r\nCSeq: 1 MESSAGE\r\n{nxt}Content-Length: 0\r\n\r\n").encode()
                    t0 = time.perf_counter()
                    s.sendto(msg, ("127.0.0.1", port))
                    while True:
                        r = s.recv(65536)
                        if not r.startswith(b"SIP/2.0 100"):
                            break
                    rtt[kind].append((time.perf_counter() - t0) * 1e6)
                    code = r[8:11].decode()
                    finals[(kind, code)] = finals.get((kind, code), 0) + 1
        finally:
            p.kill()
            p.wait()
    print(f"requests per kind: {count}; final answers: {finals}")
    for k, xs in rtt.items():
        print(f"  {k:9s} p50 {pct(xs, 0.5):8.1f} us  p99 {pct(xs, 0.99):8.1f} us  max {max(xs):8.1f} us")


if __name__ == "__main__":
    sys.exit(main())
