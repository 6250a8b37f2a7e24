#!/usr/bin/env bash
# HTTP extension benchmark of issue 14: a sync Python route returning a small body, requests/s
# on one core, against a plain hyper server with the same response (the ceiling), in the same
# run. The system under test (siphon: reactor, script interpreter and HTTP runtime threads, or
# the hyper server) is pinned to CPU ${SUT_CPU:-0}; the load generator (wrk, HTTP/1.1
# keep-alive) to CPU ${LOAD_CPU:-1}.
#
#   bench/http/run.sh [OUT]        # OUT: results file (default bench/results/<UTC>-http.txt)
#
# Environment: SIPHON_BIN (release `siphon` built with --features http), CEILING (release
# example `http_ceiling`: cargo build --release -p siphon-bin --features http --example
# http_ceiling), WRK (wrk binary), DURATION (seconds per run, default 10), CONNS ("16 64"),
# ROUNDS (runs per target and connection count, default 2).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
SIPHON_BIN=${SIPHON_BIN:-$target/release/siphon}
CEILING=${CEILING:-$target/release/examples/http_ceiling}
WRK=${WRK:-wrk}
DURATION=${DURATION:-10}
CONNS=${CONNS:-16 64}
ROUNDS=${ROUNDS:-2}
SUT_CPU=${SUT_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=${1:-$root/bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)-http.txt}

work=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 1 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    return 1
}
# requests/s of one bounded wrk run against http://127.0.0.1:$1/$3 with $2 connections.
load() {
    local out
    out=$(timeout $((DURATION + 30)) taskset -c "$LOAD_CPU" "$WRK" -t1 -c"$2" -d"${DURATION}s" \
        "http://127.0.0.1:$1/$3")
    echo "$out" >>"$work/wrk.log"
    if echo "$out" | grep -q "Non-2xx\|Socket errors"; then
        echo "wrk saw errors:" >&2
        echo "$out" >&2
        return 1
    fi
    echo "$out" | awk '/^Requests\/sec:/ {printf "%.0f", $2}'
}
stop() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; }

cat >"$work/s.py" <<'PY'
from siphon import http

@http.route("/bench")
def bench(req):
    return http.Response(status=200, body=b"ok")
PY

{
    echo "# bench/http/run.sh $(date -u +%Y-%m-%dT%H:%M:%SZ): requests/s on one core (CPU $SUT_CPU), wrk -t1 on CPU $LOAD_CPU, ${DURATION}s per run"
    echo "# host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
    echo "# siphon: sync Python route returning 200 'ok'; ceiling: hyper http1 on a current-thread runtime, same response"
} | tee "$OUT"

for c in $CONNS; do
    for r in $(seq 1 "$ROUNDS"); do
        port=$(free_port)
        sip=$(free_port)
        cat >"$work/http.yaml" <<Y
servers:
  - listen: 127.0.0.1:$port
max_in_flight_per_core: 4096
Y
        cat >"$work/siphon.yaml" <<Y
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
        (cd "$work" && exec taskset -c "$SUT_CPU" "$SIPHON_BIN" -c siphon.yaml 2>>"$work/siphon.log") &
        pid=$!
        wait_port "$port"
        sip_rps=$(load "$port" "$c" bench)
        stop

        port=$(free_port)
        taskset -c "$SUT_CPU" "$CEILING" "127.0.0.1:$port" &
        pid=$!
        wait_port "$port"
        ceil_rps=$(load "$port" "$c" bench)
        stop

        pct=$(awk -v a="$sip_rps" -v b="$ceil_rps" 'BEGIN { printf "%.0f", 100 * a / b }')
        printf "conns=%-3s round=%s  siphon %8s req/s   hyper ceiling %8s req/s   siphon/ceiling %s%%\n" \
            "$c" "$r" "$sip_rps" "$ceil_rps" "$pct" | tee -a "$OUT"
    done
done
