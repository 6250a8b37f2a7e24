#!/usr/bin/env python3
"""Relay round trips/s through a DNS name (warm cache) against an IP literal, same run.

One node (release binary, one reactor core, inline script), a loopback DNS server written here
(A for the name, NXDOMAIN otherwise, TTL 300 s so the cache stays warm), and a UAS thread that
answers 200. The script relays every OPTIONS to its `X-Next` header: `sip:uas.bench:PORT`
(a name: RFC 3263 with an explicit port asks A/AAAA, answered from the cache after the first)
or `sip:127.0.0.1:PORT`. The two kinds are interleaved in rounds, one request outstanding,
so drift on a shared host hits both alike. Prints round trips/s for each and the ratio.

    python3 bench/dns/name_vs_literal.py [--bin PATH] [--count 5000]

Bounded: --count requests per kind (at most 50,000), 5 s timeout each, loopback only.
"""

import argparse
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

SCRIPT = r'''
from siphon import proxy

@proxy.on_request
def route(request):
    request.relay(next_hop=request.get_header("X-Next"))
'''


def dns_server(sock, stop):
    while not stop.is_set():
        try:
            data, peer = sock.recvfrom(2048)
        except socket.timeout:
            continue
        if len(data) < 12:
            continue
        qid = data[:2]
        i = 12
        labels = []
        while i < len(data) and data[i] != 0:
            n = data[i]
            labels.append(data[i + 1:i + 1 + n].decode().lower())
            i += 1 + n
        qtype = struct.unpack("!H", data[i + 1:i + 3])[0]
        question = data[12:i + 5]
        name = ".".join(labels)
        if name == "uas.bench" and qtype == 1:
            head = qid + struct.pack("!HHHHH", 0x8580, 1, 1, 0, 0)
            answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 300, 4) + socket.inet_aton("127.0.0.1")
            sock.sendto(head + question + answer, peer)
        else:
            head = qid + struct.pack("!HHHHH", 0x8583, 1, 0, 0, 0)
            sock.sendto(head + question, peer)


def uas(sock, stop):
    while not stop.is_set():
        try:
            data, peer = sock.recvfrom(65536)
        except socket.timeout:
            continue
        text = data.decode(errors="replace")
        keep = [l for l in text.split("\r\n\r\n")[0].split("\r\n")[1:]
                if l.split(":")[0].strip().lower() in ("via", "from", "to", "call-id", "cseq")]
        resp = "SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n"
        sock.sendto(resp.encode(), peer)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "siphon"))
    ap.add_argument("--count", type=int, default=5000)
    args = ap.parse_args()
    count = max(1, min(args.count, 50_000))
    stop = threading.Event()
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 0))
    dns.settimeout(0.2)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.settimeout(0.2)
    threading.Thread(target=dns_server, args=(dns, stop), daemon=True).start()
    threading.Thread(target=uas, args=(peer, stop), daemon=True).start()
    uas_port = peer.getsockname()[1]
    sip = free_port()
    d = tempfile.mkdtemp(prefix="siphon-dnsbench-")
    with open(os.path.join(d, "s.py"), "w") as f:
        f.write(SCRIPT)
    with open(os.path.join(d, "siphon.yaml"), "w") as f:
        f.write(f'listen:\n  udp: ["127.0.0.1:{sip}"]\nscript:\n  path: s.py\n'
                f'tuning:\n  reactor_cpus: [0]\n  script_placement: inline\n'
                f'dns:\n  servers: ["127.0.0.1:{dns.getsockname()[1]}"]\n  timeout_ms: 1000\n  attempts: 1\n')
    node = subprocess.Popen([args.bin, "-c", "siphon.yaml"], cwd=d,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.bind(("127.0.0.1", 0))
        c.settimeout(5)
        me = c.getsockname()
        deadline = time.time() + 30
        while True:  # wait for the node to bind
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                probe.bind(("127.0.0.1", sip))
                probe.close()
                if time.time() > deadline:
                    sys.exit("siphon did not start")
                time.sleep(0.05)
            except OSError:
                probe.close()
                break
        kinds = {"name": f"sip:uas.bench:{uas_port}", "literal": f"sip:127.0.0.1:{uas_port}"}
        spent = {k: 0.0 for k in kinds}
        done = {k: 0 for k in kinds}
        n = 0

        def one(kind):
            nonlocal n
            n += 1
            msg = (f"OPTIONS sip:x@bench SIP/2.0\r\nVia: SIP/2.0/UDP {me[0]}:{me[1]};branch=z9hG4bK-b{n}\r\n"
                   f"Max-Forwards: 70\r\nFrom: <sip:b@bench>;tag=b{n}\r\nTo: <sip:x@bench>\r\n"
                   f"Call-ID: bench-{n}\r\nCSeq: 1 OPTIONS\r\nX-Next: {kinds[kind]}\r\nContent-Length: 0\r\n\r\n")
            t0 = time.perf_counter()
            c.sendto(msg.encode(), ("127.0.0.1", sip))
            while True:
                data, _ = c.recvfrom(65536)
                if not data.startswith(b"SIP/2.0 100"):
                    break
            spent[kind] += time.perf_counter() - t0
            if data.startswith(b"SIP/2.0 200"):
                done[kind] += 1

        one("name")  # warm the cache (the one real query)
        spent["name"], done["name"] = 0.0, 0
        rounds = count // 100
        for _ in range(max(1, rounds)):
            for kind in kinds:
                for _ in range(100):
                    one(kind)
        for kind in kinds:
            rate = done[kind] / spent[kind] if spent[kind] else 0
            print(f"{kind:8} {done[kind]} relayed OPTIONS round trips, {rate:,.0f}/s")
        if spent["name"] and spent["literal"]:
            r = (done["name"] / spent["name"]) / (done["literal"] / spent["literal"])
            print(f"name / literal = {r:.3f}")
    finally:
        stop.set()
        node.terminate()
        node.wait(timeout=10)


if __name__ == "__main__":
    main()
