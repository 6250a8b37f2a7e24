#!/usr/bin/env python3
"""Latency of a SIP proxy from a loopback packet capture (tcpdump -i lo -w FILE).

Reads a classic pcap (Ethernet/DLT_EN10MB as Linux `lo` gives, or Linux cooked SLL/SLL2),
IPv4 or IPv6, UDP and TCP (each TCP direction reassembled and framed by Content-Length), and
pairs messages by Call-ID using kernel timestamps (microseconds), so the figures do not depend
on the load generator's millisecond clock.

Sides are told apart by port: a packet with the callee's port (--uas-port) is on the UAS side,
any other packet with the proxy's port (--proxy-port) is on the UAC side.

Figures (milliseconds; count, p50, p90, p99, max):
  invite_200      INVITE in from the caller -> 200 (INVITE) out to the caller (end to end,
                  includes the callee's own answer time)
  invite_180      INVITE in from the caller -> 180 out to the caller
  proxy_transit   (INVITE out to callee - INVITE in) + (200 out to caller - 200 in from callee):
                  time spent inside the proxy on the two messages that matter
  register        first REGISTER in -> final 200 out (the whole digest exchange)
  register_server (401 out - first REGISTER in) + (200 out - second REGISTER in)

Prints one JSON object.  Usage: sipcap.py FILE.pcap --proxy-port 5060 --uas-port 5070
"""

import argparse
import json
import re
import struct
import sys

CALL_ID = re.compile(rb"^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)", re.I | re.M)
CSEQ = re.compile(rb"^CSeq[ \t]*:[ \t]*(\d+)[ \t]+([A-Za-z]+)", re.I | re.M)
CLEN = re.compile(rb"^(?:Content-Length|l)[ \t]*:[ \t]*(\d+)", re.I | re.M)


def packets(path):
    """Yield (ts_seconds, src_port, dst_port, proto, seq, payload) for UDP/TCP over IP."""
    with open(path, "rb") as fh:
        head = fh.read(24)
        if len(head) < 24:
            return
        magic = struct.unpack("<I", head[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            endian = "<"
        else:
            endian = ">"
            magic = struct.unpack(">I", head[:4])[0]
        nano = magic == 0xA1B23C4D
        linktype = struct.unpack(endian + "I", head[20:24])[0]
        while True:
            rec = fh.read(16)
            if len(rec) < 16:
                return
            sec, frac, incl, _orig = struct.unpack(endian + "IIII", rec)
            data = fh.read(incl)
            ts = sec + frac / (1e9 if nano else 1e6)
            if linktype == 1:  # Ethernet
                off, ethertype = 14, struct.unpack(">H", data[12:14])[0]
            elif linktype == 113:  # Linux SLL
                off, ethertype = 16, struct.unpack(">H", data[14:16])[0]
            elif linktype == 276:  # Linux SLL2
                off, ethertype = 20, struct.unpack(">H", data[0:2])[0]
            elif linktype == 0:  # BSD loopback
                off, ethertype = 4, 0x0800
            else:
                continue
            ip = data[off:]
            if ethertype == 0x0800 and len(ip) >= 20:
                ihl = (ip[0] & 0x0F) * 4
                proto = ip[9]
                total = struct.unpack(">H", ip[2:4])[0]
                l4 = ip[ihl:total]
            elif ethertype == 0x86DD and len(ip) >= 40:
                proto = ip[6]
                plen = struct.unpack(">H", ip[4:6])[0]
                l4 = ip[40 : 40 + plen]
            else:
                continue
            if proto == 17 and len(l4) >= 8:
                sp, dp = struct.unpack(">HH", l4[:4])
                yield ts, sp, dp, "udp", 0, l4[8:]
            elif proto == 6 and len(l4) >= 20:
                sp, dp, seq = struct.unpack(">HHI", l4[:8])
                doff = (l4[12] >> 4) * 4
                if len(l4) > doff:
                    yield ts, sp, dp, "tcp", seq, l4[doff:]


def messages(path):
    """Yield (ts, src_port, dst_port, message_bytes); TCP streams framed per direction."""
    streams = {}  # (sp, dp) -> [next_seq, buffer]
    for ts, sp, dp, proto, seq, payload in packets(path):
        if proto == "udp":
            if payload.strip():
                yield ts, sp, dp, payload
            continue
        st = streams.get((sp, dp))
        if st is None:
            st = streams[(sp, dp)] = [seq, b""]
        if seq != st[0]:
            if (seq - st[0]) & 0xFFFFFFFF > 0x7FFFFFFF:
                continue  # retransmitted bytes we already have
            st[1] = b""  # a gap (capture drop): resynchronise on the next message start
        st[0] = (seq + len(payload)) & 0xFFFFFFFF
        st[1] += payload
        buf = st[1]
        while True:
            buf = buf.lstrip(b"\r\n")
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            m = CLEN.search(buf[:end])
            body = int(m.group(1)) if m else 0
            if len(buf) < end + 4 + body:
                break
            yield ts, sp, dp, buf[: end + 4 + body]
            buf = buf[end + 4 + body :]
        st[1] = buf


def stats(values):
    values = sorted(values)
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}

    def pct(p):
        k = max(0, min(len(values) - 1, -(-len(values) * p // 100) - 1))
        return round(values[int(k)] * 1000.0, 4)

    return {
        "n": len(values),
        "p50": pct(50),
        "p90": pct(90),
        "p99": pct(99),
        "max": round(values[-1] * 1000.0, 4),
    }


def analyse(path, proxy_port, uas_port):
    calls = {}
    for ts, sp, dp, msg in messages(path):
        nl = msg.find(b"\r\n")
        first = msg[: nl if nl >= 0 else len(msg)]
        cid = CALL_ID.search(msg)
        cseq = CSEQ.search(msg)
        if not cid or not cseq:
            continue
        if uas_port in (sp, dp):
            side = "uas"
            inbound = sp == uas_port  # towards the proxy
        elif proxy_port in (sp, dp):
            side = "uac"
            inbound = dp == proxy_port
        else:
            continue
        method = cseq.group(2).decode().upper()
        c = calls.setdefault(cid.group(1), {})
        if first.startswith(b"SIP/2.0 "):
            code = first[8:11]
            key = (side, "in" if inbound else "out", method, code.decode(), cseq.group(1).decode())
        else:
            key = (side, "in" if inbound else "out", method, "req", cseq.group(1).decode())
        c.setdefault(key, ts)  # first occurrence (retransmissions ignored)

    inv200, inv180, transit, reg, reg_server = [], [], [], [], []
    for c in calls.values():
        t_inv_in = next((t for k, t in c.items() if k[:4] == ("uac", "in", "INVITE", "req")), None)
        t_inv_out = next((t for k, t in c.items() if k[:4] == ("uas", "out", "INVITE", "req")), None)
        t_200_in = next((t for k, t in c.items() if k[:4] == ("uas", "in", "INVITE", "200")), None)
        t_200_out = next((t for k, t in c.items() if k[:4] == ("uac", "out", "INVITE", "200")), None)
        t_180_out = next((t for k, t in c.items() if k[:4] == ("uac", "out", "INVITE", "180")), None)
        if t_inv_in is not None and t_180_out is not None:
            inv180.append(t_180_out - t_inv_in)
        if t_inv_in is not None and t_200_out is not None:
            inv200.append(t_200_out - t_inv_in)
            if t_inv_out is not None and t_200_in is not None:
                transit.append((t_inv_out - t_inv_in) + (t_200_out - t_200_in))
        regs = sorted((k[4], t) for k, t in c.items() if k[:4] == ("uac", "in", "REGISTER", "req"))
        if len(regs) >= 2:
            r1, r2 = regs[0], regs[-1]
            t401 = c.get(("uac", "out", "REGISTER", "401", r1[0]))
            t200 = c.get(("uac", "out", "REGISTER", "200", r2[0]))
            if t200 is not None:
                reg.append(t200 - r1[1])
                if t401 is not None:
                    reg_server.append((t401 - r1[1]) + (t200 - r2[1]))
    return {
        "invite_200": stats(inv200),
        "invite_180": stats(inv180),
        "proxy_transit": stats(transit),
        "register": stats(reg),
        "register_server": stats(reg_server),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pcap")
    ap.add_argument("--proxy-port", type=int, default=5060)
    ap.add_argument("--uas-port", type=int, default=5070)
    a = ap.parse_args()
    json.dump(analyse(a.pcap, a.proxy_port, a.uas_port), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
