#!/usr/bin/env bash
# REGISTER/s with digest on one siphon core for each registrar backend (issue 18), and the
# node's PSS after the run:
#   memory   registrar.backend: memory
#   local    registrar.backend: local (redb file on this disk, group commit, the 200 OK
#            waits for its fsync)
#   redis    registrar.backend: redis (a redis-server started here on loopback; the 200 OK
#            waits for its write)
# SIPp (register_auth.xml: REGISTER, 401, REGISTER with credentials, 200) runs on CPU 1 with
# COUNT distinct users (one AoR each), at most CONC flows in flight; siphon runs one reactor
# on CPU 0 with the script inline. REGISTER/s = successful flows / sipp's wall time.
# Rounds are interleaved (memory, local, redis, memory, ...) and the medians reported.
#
#   SIPHON_BIN=target/release/siphon bench/sip/state.sh [--count N] [--conc N] [--rounds N] [--out FILE]
#
# Bounded: sipp -m COUNT under timeout, every process stopped by the EXIT trap.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

COUNT=20000
CONC=200
ROUNDS=3
OUT=""
while [[ $# -gt 0 ]]; do
	case $1 in
	--count) COUNT=$2; shift 2 ;;
	--conc) CONC=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
done
[[ -x ${SIPHON_BIN:-} ]] || die "set SIPHON_BIN to a release siphon binary"
command -v sipp >/dev/null || die "sipp not found (apt-get install sip-tester)"
command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"

WORK=$(mktemp -d /tmp/siphon-state-bench.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	[[ -n ${KEEP:-} ]] && say "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# COUNT users: the SIPp injection file and the auth.users block.
{
	echo SEQUENTIAL
	for ((i = 0; i < COUNT; i++)); do
		echo "u$i;pw$i;[authentication username=u$i password=pw$i]"
	done
} >"$WORK/users.csv"
{
	echo "  users:"
	for ((i = 0; i < COUNT; i++)); do echo "    u$i: pw$i"; done
} >"$WORK/users.yaml"

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
	--dir "$WORK" >/dev/null 2>&1 &
PIDS+=($!)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pss_kb() { awk '/^Pss:/ {print $2}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }

run_one() { # backend round -> "wall_regs_per_s pss_kb ok failed regs_per_cpu_s"
	local backend=$1 round=$2 dir="$WORK/$1-$2" port
	mkdir -p "$dir"
	port=$(free_port)
	local reg
	case $backend in
	memory) reg="  backend: memory" ;;
	local) reg=$'  backend: local\n  local:\n    path: '"$dir/registrar.redb" ;;
	redis) reg=$'  backend: redis\n  redis:\n    url: "redis://127.0.0.1:'"$redis_port"$'/"\n    key_prefix: "bench'"$round"':"' ;;
	esac
	cat >"$dir/siphon.yaml" <<EOF
listen:
  udp: ["127.0.0.1:$port"]
domain:
  local: ["127.0.0.1"]
script:
  path: $REPO_ROOT/deploy/examples/proxy_default.py
tuning:
  reactor_cpus: [0]
  script_placement: inline
registrar:
$reg
auth:
  realm: 127.0.0.1
$(cat "$WORK/users.yaml")
limits:
  # 2 transactions per flow, each kept 32 s (Timer J): more than the default 20,000.
  max_transactions_per_core: 1000000
log:
  level: warn
EOF
	(cd "$dir" && exec taskset -c 0 "$SIPHON_BIN" -c siphon.yaml 2>"$dir/siphon.log") &
	local pid=$!
	PIDS+=("$pid")
	for _ in $(seq 100); do
		python3 - "$port" <<'PY' && break
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
    sys.exit(1)
except OSError:
    sys.exit(0)
PY
		sleep 0.1
	done
	local t0 t1 c0 c1
	c0=$(cpu_ticks "$pid")
	t0=$(date +%s.%N)
	(cd "$dir" && timeout -k 2 300 taskset -c 1 sipp -sf "$REPO_ROOT/bench/sipp/register_auth.xml" \
		-inf "$WORK/users.csv" -t u1 -i 127.0.0.1 -m "$COUNT" -l "$CONC" -r 100000 \
		-nostdin -trace_stat -stf "$dir/stat.csv" -fd 1 "127.0.0.1:$port" >"$dir/sipp.log" 2>&1)
	t1=$(date +%s.%N)
	c1=$(cpu_ticks "$pid")
	local pss counts
	pss=$(pss_kb "$pid")
	counts=$(python3 - "$dir/stat.csv" <<'PY'
import csv, sys
try:
    rows = list(csv.reader(open(sys.argv[1]), delimiter=';'))
    head, last = rows[0], rows[-1]
    print(last[head.index('SuccessfulCall(C)')], last[head.index('FailedCall(C)')])
except Exception:
    print(0, 0)
PY
)
	local ok=${counts% *} failed=${counts#* }
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	local hz
	hz=$(getconf CLK_TCK)
	# wall rate, PSS, ok, failed, flows per siphon CPU-second (its one-core capacity)
	python3 -c "print(f'{$ok/($t1-$t0):.0f} $pss $ok $failed {$ok/max(($c1-$c0)/$hz, 1e-9):.0f}')"
}

declare -A results
for ((r = 1; r <= ROUNDS; r++)); do
	for b in ${BACKENDS:-memory local redis}; do
		line=$(run_one "$b" "$r")
		say "round $r $b: wall/s pss_kb ok failed cpu-capacity/s = $line"
		results[$b]+="$line"$'\n'
	done
done

report() {
	echo "# bench/sip/state.sh: REGISTER with digest (REGISTER, 401, REGISTER, 200 flows), one siphon core"
	echo "# (CPU 0, inline script), SIPp on CPU 1, $COUNT distinct AoRs, $CONC flows in flight,"
	echo "# $ROUNDS interleaved rounds; medians. cpu-capacity = flows / siphon CPU seconds (utime+stime"
	echo "# of the process over the run): the REGISTER/s one saturated core would do. vs memory = median"
	echo "# of the per-round ratios to the memory run just before (the machine's noise moves both)."
	echo "# wall = flows / SIPp wall time (bounded by SIPp on the other core on this 2-vCPU VM). PSS after"
	echo "# the run."
	echo "# $(uname -srm); $(nproc) CPUs; $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null)"
	printf '%-8s %14s %10s %10s %9s %8s  %s\n' backend "cpu-capacity/s" "vs memory" "wall/s" "PSS MiB" failed "rounds (cpu-capacity/s)"
	for b in ${BACKENDS:-memory local redis}; do
		python3 - "$b" "${results[$b]}" "${results[memory]:-}" <<'PY'
import statistics, sys
b, text, mem = sys.argv[1], sys.argv[2], sys.argv[3]
def rows(t):
    return [l.split() for l in t.strip().splitlines() if l.strip()]
r = rows(text)
cap = [float(x[4]) for x in r]
wall = [float(x[0]) for x in r]
pss = [float(x[1]) / 1024 for x in r]
failed = sum(int(x[3]) for x in r)
m = [float(x[4]) for x in rows(mem)]
ratios = [c / mc for c, mc in zip(cap, m) if mc > 0]
rel = f"{statistics.median(ratios) * 100:.0f} %" if ratios else "-"
print(f"{b:<8} {statistics.median(cap):14.0f} {rel:>10} {statistics.median(wall):10.0f} {statistics.median(pss):9.1f} {failed:8d}  {' '.join(f'{x:.0f}' for x in cap)}")
PY
	done
}
if [[ -n $OUT ]]; then report | tee "$OUT"; else report; fi
