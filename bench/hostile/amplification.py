#!/usr/bin/env python3
"""Bytes out per byte in for one spoofed request (the victim's address written as the source).

Sends one INVITE to an unknown user carrying ~2 KB of Record-Route and never ACKs, counting
every byte that comes back for 34 s (Timer G retransmits a final answer until Timer H); then
one REGISTER without credentials (the 401 challenge), counting for 5 s.
Usage: amplification.py PORT LABEL [OUT.txt]
"""
import socket
import sys
import time

PORT, LABEL = int(sys.argv[1]), sys.argv[2]
OUT = sys.argv[3] if len(sys.argv) > 3 else None


def probe(text, wait):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    a = s.getsockname()
    data = text.format(ua=f"{a[0]}:{a[1]}").encode()
    s.sendto(data, ("127.0.0.1", PORT))
    got, n = 0, 0
    end = time.time() + wait
    while time.time() < end:
        s.settimeout(max(0.01, end - time.time()))
        try:
            b = s.recv(65535)
        except (socket.timeout, BlockingIOError):
            break
        got += len(b)
        n += 1
    return len(data), got, n


rr = "".join(f"Record-Route: <sip:hop{i}.attacker.example;lr;pad={'x' * 60}>\r\n" for i in range(24))
INVITE = ("INVITE sip:nobody-here@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {ua};branch=z9hG4bK-amp1;rport\r\n"
          "Max-Forwards: 70\r\nFrom: <sip:x@127.0.0.1>;tag=amp1\r\nTo: <sip:nobody-here@127.0.0.1>\r\n"
          "Call-ID: amp1@bench\r\nCSeq: 1 INVITE\r\nContact: <sip:x@{ua}>\r\n" + rr +
          "Content-Type: application/sdp\r\nContent-Length: 0\r\n\r\n")
REGISTER = ("REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {ua};branch=z9hG4bK-amp2;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=amp2\r\nTo: <sip:alice@127.0.0.1>\r\n"
            "Call-ID: amp2@bench\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@{ua}>\r\nExpires: 3600\r\n"
            "Content-Length: 0\r\n\r\n")
rows = []
for name, text, wait in (("INVITE (unknown user, 2 KB Record-Route, no ACK)", INVITE, 34),
                         ("REGISTER (no credentials)", REGISTER, 5)):
    sent, got, n = probe(text, wait)
    rows.append(f"{LABEL:9} {name}: in {sent} B, out {got} B in {n} datagrams, ratio {got / sent:.2f}")
    print(rows[-1], flush=True)
if OUT:
    with open(OUT, "a") as f:
        f.write("\n".join(rows) + "\n")
