#!/usr/bin/env bash
# Screening benchmark of issue 14: SIPp (bench/sipp uac_invite.xml -> siphon -> uas_answer.xml)
# at ${RATE:-400} calls/s through the extensions page's screening script, whose INVITE handler
# awaits `http.Client("api").get(...)` against a local HTTP server (the `http_ceiling`
# example: hyper HTTP/1.1 answering 200 `ok` to every path), and, in the same run and
# interleaved with it, the same script without the lookup. Reports per run: calls, failed
# calls, upstream connections, and INVITE->180 / INVITE->200 p50/p99 from a tcpdump capture
# on lo (bench/sip/sipcap.py, kernel timestamps in microseconds); then the medians over the
# rounds and the p99 difference (goal: lookup within 2 ms of no lookup).
#
#   bench/http/screening.sh [OUT]    # OUT: results file (default bench/results/<UTC>-http-screening.txt)
#
# siphon (one reactor, its interpreter and the HTTP runtime's thread) is pinned to CPU
# ${SUT_CPU:-0}; SIPp (both sides) and the upstream server to CPU ${LOAD_CPU:-1}.
# Environment: SIPHON_BIN (release `siphon` built with --features http), CEILING (release
# example `http_ceiling`: cargo build --release -p siphon-bin --features http --example
# http_ceiling), RATE (calls/s, 400), SECS (seconds of load per run, 10), ROUNDS (runs per
# variant, 3), KEEP (non-empty: keep the work directory with logs and captures). Needs sipp, tcpdump (root or CAP_NET_RAW), python3, taskset, ss.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
SIPHON_BIN=${SIPHON_BIN:-$target/release/siphon}
CEILING=${CEILING:-$target/release/examples/http_ceiling}
RATE=${RATE:-400}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-3}
SUT_CPU=${SUT_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=${1:-$root/bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)-http-screening.txt}
CALLS=$((RATE * SECS))
WARM=100

for tool in sipp tcpdump python3 taskset ss "$SIPHON_BIN" "$CEILING"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 2; }
done

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "${KEEP:-}" ]; then echo "work files kept in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
cp "$root/bench/sipp/uac_invite.xml" "$root/bench/sipp/uas_answer.xml" "$work/"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_udp() {
    for _ in $(seq 1 600); do
        ss -Hlun "sport = :$1" | grep -q . && return 0
        sleep 0.1
    done
    echo "nothing listens on udp $1" >&2
    return 1
}
wait_tcp() {
    for _ in $(seq 1 600); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on tcp $1" >&2
    return 1
}
# until siphon answers SIP (an OPTIONS): the UDP socket is bound before the script has loaded
wait_sip() {
    python3 - "$1" <<'EOF'
import socket, sys
port = int(sys.argv[1])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("127.0.0.1", 0))
u.settimeout(0.1)
host, me = u.getsockname()
for i in range(600):
    msg = ("OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\n"
           "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK-p%d\r\nMax-Forwards: 70\r\n"
           "From: <sip:p@127.0.0.1>;tag=p\r\nTo: <sip:probe@127.0.0.1>\r\n"
           "Call-ID: probe-%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n" % (host, me, i, i))
    u.sendto(msg.encode(), ("127.0.0.1", port))
    try:
        u.recv(65536)
        sys.exit(0)
    except socket.timeout:
        pass
sys.exit("siphon does not answer SIP")
EOF
}
# the kernel's count of UDP datagrams dropped for a full receive buffer (all sockets)
rcvbuf_drops() { awk '/^Udp:/ { if (!h) { split($0, n); h = 1 } else { split($0, v); for (i in n) if (n[i] == "RcvbufErrors") print v[i] } }' /proc/net/snmp; }
# the final counters of a sipp -trace_stat file: "created successful failed"
sipp_counts() {
    python3 - "$1" <<'EOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=';'))
head, last = rows[0], rows[-1]
get = lambda n: int(last[head.index(n)]) if n in head else 0
print(get('TotalCallCreated'), get('SuccessfulCall(C)'), get('FailedCall(C)'))
EOF
}

# script VARIANT UAS_PORT: the page's screening handler (`lookup`) or the same without the
# lookup (`nolookup`); both relay to the callee with a record-route so ACK and BYE follow.
script() {
    local lookup="    verdict = await api.get(f\"/screen/{request.from_uri.user}\")
    if verdict.status != 200:
        request.reply(403, \"Blocked\")
        return"
    [ "$1" = lookup ] || lookup="    pass  # no lookup"
    cat <<PY
from siphon import http, proxy

api = http.Client("api")           # named, pooled: construct once, reuse

@proxy.on_request("INVITE|ACK|BYE")
async def screen(request):
    if request.in_dialog:
        if request.loose_route():
            request.relay()
        return
$lookup
    request.record_route()
    request.relay("sip:127.0.0.1:$2")
PY
}

# one VARIANT ROUND: a fresh siphon, warm-up, measured load; prints one result line
one() {
    local variant=$1 round=$2 sip uas uac up dir rc
    sip=$(free_port); uas=$(free_port); uac=$(free_port); up=$(free_port)
    dir="$work/$variant-$round"
    mkdir -p "$dir"
    cp "$work"/*.xml "$dir/"
    taskset -c "$LOAD_CPU" "$CEILING" "127.0.0.1:$up" &
    local up_pid=$!
    pids+=("$up_pid")
    script "$variant" "$uas" >"$dir/s.py"
    cat >"$dir/http.yaml" <<Y
clients:
  api:
    base_url: http://127.0.0.1:$up
    timeout_ms: 2000
Y
    cat >"$dir/siphon.yaml" <<Y
listen:
  udp: ["127.0.0.1:$sip"]
script:
  path: s.py
extensions:
  http: http.yaml
log:
  level: warn
tuning:
  reactor_cpus: [$SUT_CPU]
  http_cpus: [$SUT_CPU]
Y
    (cd "$dir" && exec taskset -c "$SUT_CPU" "$SIPHON_BIN" -c siphon.yaml 2>"$dir/siphon.log") &
    local sut=$!
    pids+=("$sut")
    wait_tcp "$up"
    wait_udp "$sip"
    wait_sip "$sip"
    (cd "$dir" && exec timeout -k 2 $((SECS + 120)) taskset -c "$LOAD_CPU" sipp -sf uas_answer.xml \
        -i 127.0.0.1 -p "$uas" -m $((CALLS + WARM)) -nostdin -trace_stat -stf uas.csv \
        >"$dir/uas.log" 2>&1) &
    local uas_pid=$!
    pids+=("$uas_pid")
    sleep 0.5
    (cd "$dir" && timeout -k 2 60 taskset -c "$LOAD_CPU" sipp -sf uac_invite.xml -s bob \
        -i 127.0.0.1 -p "$uac" -r 50 -m "$WARM" -nostdin -timeout 30s -timeout_error \
        "127.0.0.1:$sip" >"$dir/warm.log" 2>&1) || echo "$variant round $round: warm-up failed" >&2
    timeout -k 2 $((SECS + 60)) tcpdump -i lo -n -s 0 -B 32768 --immediate-mode \
        -w "$dir/cap.pcap" "udp and (port $sip or port $uas)" 2>"$dir/tcpdump.log" &
    local cap=$!
    pids+=("$cap")
    for _ in $(seq 1 50); do grep -q 'listening on' "$dir/tcpdump.log" && break; sleep 0.1; done
    rc=0
    local drops0
    drops0=$(rcvbuf_drops)
    (cd "$dir" && timeout -k 2 $((SECS + 60)) taskset -c "$LOAD_CPU" sipp -sf uac_invite.xml -s bob \
        -i 127.0.0.1 -p "$uac" -r "$RATE" -m "$CALLS" -nostdin -timeout $((SECS + 30))s \
        -timeout_error -trace_stat -stf uac.csv "127.0.0.1:$sip" >"$dir/uac.log" 2>&1) || rc=$?
    local drops=$(($(rcvbuf_drops) - drops0))
    sleep 0.5
    kill -INT "$cap" 2>/dev/null || true
    wait "$cap" 2>/dev/null || true
    kill "$uas_pid" 2>/dev/null || true
    wait "$uas_pid" 2>/dev/null || true
    local conns
    conns=$(ss -Htn state established "( dport = :$up )" | wc -l)
    kill "$sut" "$up_pid" 2>/dev/null || true
    wait "$sut" "$up_pid" 2>/dev/null || true
    local created ok failed
    read -r created ok failed < <(sipp_counts "$dir/uac.csv")
    python3 "$root/bench/sip/sipcap.py" "$dir/cap.pcap" --proxy-port "$sip" --uas-port "$uas" |
        python3 -c '
import json, sys
d = json.load(sys.stdin)
v, r, created, ok, failed, rc, conns, drops = sys.argv[1:9]
def f(k, p):
    return d.get(k, {}).get(p)
print("%-8s round=%s calls=%s ok=%s failed=%s sipp_rc=%s upstream_conns=%s invite_180_p50=%s "
      "invite_180_p99=%s invite_200_p99=%s samples=%s udp_rcvbuf_drops=%s" % (
          v, r, created, ok, failed, rc, conns, f("invite_180", "p50"), f("invite_180", "p99"),
          f("invite_200", "p99"), f("invite_180", "n"), drops))
' "$variant" "$round" "$created" "$ok" "$failed" "$rc" "$conns" "$drops"
}

{
    echo "# bench/http/screening.sh $(date -u +%Y-%m-%dT%H:%M:%SZ): $RATE calls/s for ${SECS}s per run, $ROUNDS rounds per variant, interleaved"
    echo "# host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); siphon on CPU $SUT_CPU, SIPp and the upstream on CPU $LOAD_CPU"
    echo "# lookup: INVITE handler awaits http.Client(\"api\").get(\"/screen/<user>\") (HTTP/1.1 keep-alive to a hyper server), then relays"
    echo "# nolookup: the same script without the await; latencies in ms from a tcpdump capture (INVITE in -> 180/200 out to the caller)"
    echo "# udp_rcvbuf_drops: the kernel's RcvbufErrors during the load (every UDP socket on the host); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT"

for r in $(seq 1 "$ROUNDS"); do
    for v in lookup nolookup; do
        one "$v" "$r" | tee -a "$OUT"
    done
done

python3 - "$OUT" <<'EOF' | tee -a "$OUT"
import re, statistics, sys
rows = {}
failed = 0
for line in open(sys.argv[1]):
    m = re.match(r"(\w+)\s+round=\d+ .*failed=(\d+) .*invite_180_p50=([\d.]+) invite_180_p99=([\d.]+)", line)
    if m:
        rows.setdefault(m.group(1), []).append((float(m.group(3)), float(m.group(4))))
        failed += int(m.group(2))
med = {v: (statistics.median(a for a, _ in xs), statistics.median(b for _, b in xs)) for v, xs in rows.items()}
for v, (p50, p99) in sorted(med.items()):
    print(f"# median over rounds: {v:<8} INVITE->180 p50 {p50:.3f} ms, p99 {p99:.3f} ms")
if "lookup" in med and "nolookup" in med:
    d = med["lookup"][1] - med["nolookup"][1]
    print(f"# p99 lookup - nolookup: {d:+.3f} ms (goal: within 2 ms); failed calls in all runs: {failed}")
EOF
