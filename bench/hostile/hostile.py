#!/usr/bin/env python3
"""Issue 17 hostile-load bench, bounded in count and time, loopback only.

Starts the release `siphon` with the default `limits:` (README "Limits") and measures:
  1. 20,000 idle TCP connections from 200 loopback sources (100 each): the node-wide cap
     (10,000) holds, the rest are closed at accept; RSS growth against the per-connection
     budget the README states.
  2. 5,000 silent TLS handshakes: at most 1,024 in progress, the rest closed at accept, every
     admitted one closed by the 10 s handshake timeout; RSS before, during and after.
  3. 50,000 MESSAGE transactions that never complete (relayed to a UDP port that never
     answers): the transaction table stops at its cap (503 + Retry-After beyond it) and is
     empty again once Timer F expired them; RSS back near idle.

Usage: bench/hostile/hostile.py SIPHON_BIN [OUT.txt]   (raise `ulimit -n` first: hostile.sh)
Ports: SIP_PORT (15060), TLS_PORT (15061), METRICS_PORT (19090), SINK_PORT (15999).
HOSTILE_SECTIONS=3 runs only the sections named (default 123).
"""
import multiprocessing as mp
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = sys.argv[1]
OUT = sys.argv[2] if len(sys.argv) > 2 else None
SIP = int(os.environ.get("SIP_PORT", 15060))
TLS = int(os.environ.get("TLS_PORT", 15061))
METRICS = int(os.environ.get("METRICS_PORT", 19090))
SINK = int(os.environ.get("SINK_PORT", 15999))
SECTIONS = os.environ.get("HOSTILE_SECTIONS", "123")
lines = []


def say(s=""):
    print(s, flush=True)
    lines.append(s)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            if l.startswith("VmRSS:"):
                return int(l.split()[1])
    return 0


def anon_kib(pid):
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for l in f:
            if l.startswith("Anonymous:"):
                return int(l.split()[1])
    return 0


def metrics():
    body = urllib.request.urlopen(f"http://127.0.0.1:{METRICS}/metrics", timeout=5).read().decode()
    out = {}
    for l in body.splitlines():
        if l and not l.startswith("#"):
            k, _, v = l.rpartition(" ")
            try:
                out[k] = float(v)
            except ValueError:
                pass
    return out


def m(name):
    return int(metrics().get(name, -1))


def hits(limit):
    return m(f'siphon_limit_hits_total{{limit="{limit}"}}')


SCRIPT = """
from siphon import proxy

@proxy.on_request
def relay(request):
    if request.method == "OPTIONS":
        request.reply(200, "OK")
        return
    request.relay(next_hop="sip:127.0.0.1:%d")
""" % SINK


def start(work):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                    "-keyout", f"{work}/k.pem", "-out", f"{work}/c.pem", "-days", "2"],
                   check=True, capture_output=True)
    with open(f"{work}/s.py", "w") as f:
        f.write(SCRIPT)
    with open(f"{work}/siphon.yaml", "w") as f:
        f.write(f"""listen:
  udp: ["127.0.0.1:{SIP}"]
  tcp: ["127.0.0.1:{SIP}"]
  tls: ["127.0.0.1:{TLS}"]
tls: {{certificate: c.pem, private_key: k.pem}}
script: {{path: s.py}}
log: {{level: warn}}
metrics: {{prometheus: {{listen: "127.0.0.1:{METRICS}"}}}}
""")
    p = subprocess.Popen(["timeout", "600", BIN, "-c", "siphon.yaml"], cwd=work,
                         stdout=subprocess.DEVNULL, stderr=open(f"{work}/siphon.log", "w"))
    for _ in range(300):
        try:
            metrics()
            break
        except OSError:
            time.sleep(0.1)
    # `timeout` is the parent; RSS is siphon's own.
    kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    return p, int(kids[0]) if kids else p.pid


def connect_many(n, port, per_source, first_source=0):
    socks = []
    for i in range(n):
        k = first_source + i // per_source
        src = f"127.0.{1 + k // 250}.{1 + k % 250}"
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.bind((src, 0))
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append(s)
        if i % 1000 == 999:
            time.sleep(0.05)
    return socks


def count_closed(socks, wait):
    """Sockets the server closed (EOF/reset) within `wait` seconds (poll: fds beyond 1024)."""
    deadline = time.time() + wait
    closed = set()
    poll = select.poll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poll.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    while time.time() < deadline and len(closed) < len(socks):
        for fd, _ in poll.poll(200):
            try:
                if by_fd[fd].recv(4096) == b"":
                    closed.add(fd)
                    poll.unregister(fd)
            except BlockingIOError:
                pass
            except OSError:
                closed.add(fd)
                poll.unregister(fd)
    return len(closed)


def holder(n, first_source, port, q, done):
    """A child that opens `n` connections (each process has its own descriptor limit), says
    so, reports how many the node closed within 8 s, and keeps the rest open until `done`."""
    socks = connect_many(n, port, 100, first_source)
    q.put("up")
    q.put(count_closed(socks, 8))
    done.wait(60)


def hold_many(n, port, halves=2):
    """`n` connections from `halves` processes; returns (children, queue, done event)."""
    q, done = mp.Queue(), mp.Event()
    per = n // halves
    kids = [mp.Process(target=holder, args=(per, h * per // 100, port, q, done)) for h in range(halves)]
    for k in kids:
        k.start()
    for _ in kids:
        q.get(timeout=120)
    return kids, q, done


def main():
    work = tempfile.mkdtemp(prefix="siphon-hostile.")
    say(f"# bench/hostile/hostile.py  {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
    say(f"# host: {os.uname().nodename} {os.uname().release}, {os.cpu_count()} CPUs; binary {BIN}")
    p, pid = start(work)
    try:
        time.sleep(1)
        idle = rss_kib(pid)
        say(f"idle RSS: {idle} KiB")

        if "1" in SECTIONS:
            say("\n## 1. 20,000 idle TCP connections (200 sources x 100), default caps")
            kids, q, done = hold_many(20_000, SIP)
            time.sleep(3)
            r = rss_kib(pid)
            active = m('siphon_connections_active')
            say(f"connections_active={active} refused(total cap)={hits('connections')} "
                f"refused(per source)={hits('connections_per_source')}")
            closed = sum(q.get(timeout=60) for _ in kids)
            say(f"closed by the node within 8 s of connecting: {closed}")
            say(f"RSS {r} KiB, growth {r - idle} KiB = {(r - idle) * 1024 // max(1, active)} B per open connection")
            done.set()
            for k in kids:
                k.join(30)
            time.sleep(3)
            say(f"after the client closed them: connections_active={m('siphon_connections_active')} RSS {rss_kib(pid)} KiB")

        if "2" in SECTIONS:
            say("\n## 2. 5,000 silent TLS handshakes (one source per 100)")
            base = rss_kib(pid)
            socks = connect_many(5_000, TLS, 100)
            time.sleep(2)
            during = rss_kib(pid)
            say(f"in progress={m('siphon_tls_handshakes_active')} refused(handshake cap)={hits('tls_handshakes')} "
                f"RSS {during} KiB (+{during - base} KiB)")
            closed = count_closed(socks, 14)
            say(f"after 14 s: closed by the node={closed}/5000 timed out={hits('tls_handshake_timeout')} "
                f"in progress={m('siphon_tls_handshakes_active')} RSS {rss_kib(pid)} KiB")
            for s in socks:
                s.close()

        if "3" in SECTIONS:
            say("\n## 3. 50,000 MESSAGE transactions that never complete (relayed to a silent UDP port)")
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sink.bind(("127.0.0.1", SINK))  # bound so no ICMP comes back; never answers
            ua = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            ua.bind(("127.0.0.1", 0))
            ua.setblocking(False)
            ua_addr = ua.getsockname()
            base = rss_kib(pid)
            codes = {}

            def drain():
                """Count every answer waiting on the UA socket by status code."""
                while True:
                    try:
                        data = ua.recv(65535)
                    except BlockingIOError:
                        return
                    c = data[8:11].decode(errors="replace")
                    codes[c] = codes.get(c, 0) + 1

            peak = 0
            t0 = time.time()
            for i in range(50_000):
                msg = (f"MESSAGE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {ua_addr[0]}:{ua_addr[1]};branch=z9hG4bK-h{i}\r\n"
                       f"Max-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=h{i}\r\nTo: <sip:bob@127.0.0.1>\r\n"
                       f"Call-ID: h{i}@bench\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n").encode()
                ua.sendto(msg, ("127.0.0.1", SIP))
                if i % 500 == 499:
                    time.sleep(0.05)
                    drain()
                    if i % 5000 == 4999:
                        peak = max(peak, m("siphon_transactions_active"))
            sent_s = time.time() - t0
            time.sleep(1)
            drain()
            full = rss_kib(pid)
            say(f"sent in {sent_s:.1f} s; answers so far by code: {dict(sorted(codes.items()))}")
            say(f"contexts active (peak sampled)={peak}, refused at the cap={hits('transactions')}, "
                f"RSS {full} KiB (+{full - base} KiB)")
            deadline = time.time() + 60
            while time.time() < deadline and m("siphon_transactions_active") > 0:
                time.sleep(2)
            time.sleep(6)
            say(f"after expiry ({time.time() - t0:.0f} s from the first send): contexts active="
                f"{m('siphon_transactions_active')} RSS {rss_kib(pid)} KiB (idle was {idle} KiB)")
            # Does the allocator hand the pages back later (nothing else runs meanwhile)?
            time.sleep(30)
            say(f"30 s later: RSS {rss_kib(pid)} KiB, anonymous {anon_kib(pid)} KiB")
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
    if OUT:
        with open(OUT, "a") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
