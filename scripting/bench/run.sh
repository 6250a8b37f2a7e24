#!/usr/bin/env bash
# Scripting-layer benchmark: events/s per core and reactor -> worker -> actions round trip for
# a trivial sync handler, an async handler, and a handler that reads three headers and relays,
# with 1 and 2 workers. Prints one JSON line per run.
#   scripting/bench/run.sh [python-binary] [events]      (INLINE=1: inline placement, 3.12+)
# Fields: events_per_s_* = wall throughput with one feeder thread playing every reactor (on a
# 2-core box the feeder competes with the workers); cpu_capacity_events_per_s_per_worker =
# events per second of worker CPU time (the scripting layer's capacity per core);
# round_trip_us = one event in flight, submit -> actions polled; saturated_latency_us = same
# under full rings (queueing included).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
py="$(command -v "${1:-python3}")"
events="${2:-300000}"
ver="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
target="${CARGO_TARGET_DIR:-$root/target}/py$ver"
(cd "$root" && PYO3_PYTHON="$py" CARGO_TARGET_DIR="$target" cargo build --release -p siphon-script --bin siphon-script-driver >&2)
echo "# $(uname -r) $(nproc) cpus, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for handler in trivial async headers; do
    for cores in 1 2; do
        "$target/release/siphon-script-driver" --bench "$handler" --cores "$cores" --events "$events" ${INLINE:+--inline}
    done
done
