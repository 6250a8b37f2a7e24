#!/usr/bin/env bash
# Bytes out per byte in for a spoofed INVITE and REGISTER: Kamailio 5.6 (bench/sip/kamailio.cfg,
# when installed) and siphon (deploy/examples/siphon.yaml) in the same run, one after the other
# on the same port, started and stopped by bench/sip/lib.sh.
# Usage: bench/hostile/amplification.sh SIPHON_BIN [OUT.txt]
set -uo pipefail  # not -e: bench/sip/lib.sh helpers return non-zero on purpose
here=$(cd "$(dirname "$0")" && pwd)
# Ports of our own (lib.sh reads them when sourced): 5060 may belong to a running node.
export SIP_PORT=${SIP_PORT:-15160} TLS_PORT=${TLS_PORT:-15161} METRICS_PORT=${METRICS_PORT:-19190}
# shellcheck source=../sip/lib.sh
source "$here/../sip/lib.sh"
export SIPHON_BIN=${1:?usage: amplification.sh SIPHON_BIN [OUT.txt]}
out=${2:-}
bench_workdir
trap bench_cleanup EXIT INT TERM
[ -n "$out" ] && printf '\n## 4. Amplification: bytes out per byte in (one spoofed request each)\n' >>"$out"
for t in kamailio siphon; do
	if [ "$t" = kamailio ] && ! command -v "$KAMAILIO_BIN" >/dev/null; then
		say "kamailio not installed (apt-get install -y kamailio): siphon only"
		continue
	fi
	[ "$t" = kamailio ] && [ -n "$out" ] && "$KAMAILIO_BIN" -v 2>/dev/null | head -1 | sed 's/^/# /' >>"$out"
	target_start "$t"
	sleep 2
	timeout 60 python3 "$here/amplification.py" "$SIP_PORT" "$t" ${out:+"$out"}
	target_stop
done
