#!/usr/bin/env bash
# Issue 17 hostile bench: hostile.py (connections, handshakes, transactions) then
# amplification.py (bytes out per byte in). Bounded: every process runs under `timeout`.
# Usage: bench/hostile/hostile.sh SIPHON_BIN [OUT.txt]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:?usage: hostile.sh SIPHON_BIN [OUT.txt]}
out=${2:-}
# 20,000 client sockets plus the node's 10,000: raise the descriptor limit for both.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ -n "$out" ] && : >"$out"
timeout 400 python3 "$here/hostile.py" "$bin" ${out:+"$out"}
"$here/amplification.sh" "$bin" ${out:+"$out"}
