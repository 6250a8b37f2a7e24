#!/usr/bin/env bash
# SMPP benchmark of issue 13 / spec §5, bounded in count and time. The system under test is
# pinned to CPU ${SUT_CPU:-0}, the load generator (`smpp-bench load`) to CPU ${LOAD_CPU:-1}.
#
#   bench/smpp/run.sh [OUT]        # OUT: results file (default bench/results/<UTC>-smpp.txt)
#
# Environment: SIPHON_BIN (release `siphon` built with --features smpp), SMPP_BENCH
# (release `smpp-bench`), PY (a python3 with PyPI smpp34), COUNT (submits per window run,
# default 100000), MULTI_COUNT (submits per bind in the N-bind runs, default 20000), WINDOWS
# ("1 8 64 512"), BINDS ("1 4 8 16 24"), RUN_TIMEOUT (seconds per load run, default 120),
# PARTS ("python native smpp34 gateway").
#
# Peers, each answering every submit_sm with a message_id:
#   python  - siphon with upstream's bench_echo.py (async on_pdu → reply(message_id="0"))
#   native  - our SMSC simulator (`smpp-bench smsc`, no Python): the ceiling
#   smpp34  - PyPI smpp34's own Server (harness/smpp34_echo.py)
#   gateway - siphon between the generator and the simulator: submit_via over one outbound
#             bind (harness/bench_gateway.py); siphon and the simulator share SUT_CPU
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
SIPHON_BIN=${SIPHON_BIN:-$target/release/siphon}
SMPP_BENCH=${SMPP_BENCH:-$target/release/smpp-bench}
PY=${PY:-python3}
COUNT=${COUNT:-100000}
MULTI_COUNT=${MULTI_COUNT:-20000}
WINDOWS=${WINDOWS:-1 8 64 512}
BINDS=${BINDS:-1 4 8 16 24}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
PARTS=${PARTS:-python native smpp34 gateway}
SUT_CPU=${SUT_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
OUT=${1:-$root/bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)-smpp.txt}

work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

wait_port() {
    local port=$1 i
    for i in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listens on $port" >&2
    return 1
}

stop_sut() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}

# CPU time (clock ticks, user + system, all threads) of the system under test so far.
sut_ticks() {
    local t=0 p
    for p in "${pids[@]}"; do
        [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}

# load LABEL PORT WINDOW BINDS COUNT → one "LABEL {json}" line in OUT, with the SUT's CPU
# time over the run ("sut_cpu_ms", warm-up and bind included) and per answered submit
# ("sut_us_per_ok"): on a shared host that cost holds when the wall-clock rate does not.
load() {
    local label=$1 port=$2 window=$3 binds=$4 count=$5 line rc=0 t0 t1 ok cpu_ms
    t0=$(sut_ticks)
    line=$(taskset -c "$LOAD_CPU" timeout "$RUN_TIMEOUT" "$SMPP_BENCH" load \
        --target "127.0.0.1:$port" --window "$window" --binds "$binds" --count "$count") || rc=$?
    t1=$(sut_ticks)
    [ -n "$line" ] || line="{\"binds\":$binds,\"window\":$window,\"count\":$count,\"failed\":$rc}"
    cpu_ms=$(((t1 - t0) * 1000 / $(getconf CLK_TCK)))
    ok=$(echo "$line" | grep -o '"ok":[0-9]*' | cut -d: -f2)
    if [ -n "$ok" ] && [ "$ok" -gt 0 ]; then
        line="${line%\}},\"sut_cpu_ms\":$cpu_ms,\"sut_us_per_ok\":$(awk -v c="$cpu_ms" -v n="$ok" 'BEGIN{printf "%.2f", c * 1000 / n}')}"
    fi
    echo "$label $line" | tee -a "$OUT"
}

siphon_start() { # SCRIPT SMPP_YAML_EXTRA
    local dir=$work/siphon-$RANDOM
    mkdir -p "$dir"
    cp "$here/harness/$1" "$dir/s.py"
    cat >"$dir/siphon.yaml" <<YAML
listen:
  udp: ["127.0.0.1:15060"]
script:
  path: s.py
log:
  level: warn
extensions:
  smpp: smpp.yaml
tuning:
  reactor_cpus: [$SUT_CPU]
YAML
    cat >"$dir/smpp.yaml" <<YAML
server:
  bind_address: 127.0.0.1
  port: 2775
  enquire_link_timer_ms: 30000
  inactivity_timer_ms: 300000
  response_timer_ms: 30000
  window: 1024
$2
YAML
    (cd "$dir" && exec taskset -c "$SUT_CPU" "$SIPHON_BIN" -c siphon.yaml >siphon.log 2>&1) &
    pids+=($!)
    wait_port 2775
}

{
    echo "# smpp bench $(date -u +%FT%TZ) host=$(hostname) cpus=$(nproc) kernel=$(uname -r)"
    echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
    echo "# sut_cpu=$SUT_CPU load_cpu=$LOAD_CPU count=$COUNT multi_count=$MULTI_COUNT"
    echo "# python: $("$PY" -c 'import sys,smpp34;print(sys.version.split()[0],"smpp34",smpp34.__version__)')"
    echo "# siphon: $SIPHON_BIN ($("$SIPHON_BIN" --version 2>/dev/null || echo '?'))"
} | tee -a "$OUT"

matrix() { # PREFIX PORT
    local w n
    for w in $WINDOWS; do load "$1 w=$w" "$2" "$w" 1 "$COUNT"; done
    for n in $BINDS; do load "$1 binds=$n" "$2" 64 "$n" "$MULTI_COUNT"; done
}

for part in $PARTS; do
    case $part in
    python)
        siphon_start bench_echo.py ""
        matrix python 2775
        stop_sut
        ;;
    native)
        taskset -c "$SUT_CPU" "$SMPP_BENCH" smsc --listen 127.0.0.1:2776 --dlr-ratio 0 \
            --window 1024 >/dev/null &
        pids+=($!)
        wait_port 2776
        matrix native 2776
        stop_sut
        ;;
    smpp34)
        taskset -c "$SUT_CPU" "$PY" "$here/harness/smpp34_echo.py" 2777 >/dev/null &
        pids+=($!)
        wait_port 2777
        matrix smpp34 2777
        stop_sut
        ;;
    gateway)
        taskset -c "$SUT_CPU" "$SMPP_BENCH" smsc --listen 127.0.0.1:2776 --dlr-ratio 0 \
            --window 1024 >/dev/null &
        pids+=($!)
        wait_port 2776
        siphon_start bench_gateway.py "binds:
  - {name: up, host: 127.0.0.1, port: 2776, system_id: gw, password: pw, window: 1024}"
        sleep 1 # the bind comes up
        local_w=""
        for local_w in $WINDOWS; do load "gateway w=$local_w" 2775 "$local_w" 1 "$COUNT"; done
        stop_sut
        ;;
    *) echo "unknown part $part" >&2 ;;
    esac
done
echo "results: $OUT"
