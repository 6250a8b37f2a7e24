#!/usr/bin/env bash
# Overload benchmark (issue 17): capacity with SIPp on ONE reactor core, then 2x capacity for
# --secs seconds. Reports, per target: admitted calls and their INVITE->200 p50/p99 (sipp rtd 1),
# calls shed with 503 (and whether the 503s carried Retry-After), failed calls, sipp
# retransmissions, kernel UDP receive-buffer drops (nstat UdpRcvbufErrors), RSS every second
# (first/min/max/last), and recovery: a 5 s probe at 50 calls/s right after the load (all must
# complete, p99 < 200 ms) plus siphon's queue depth back at 0.
#
# Bounded: every sipp runs with -m and under `timeout`; the target runs under `timeout`; the
# EXIT trap of bench/sip/lib.sh stops everything. Loopback only.
#
#   SIPHON_BIN=target/release/siphon bench/overload/run.sh                 # siphon then kamailio
#   SIPHON_BIN=... bench/overload/run.sh --secs 20 --capacity 800 siphon   # skip the search
#
# Options: --secs N (60), --step-secs N (8: one capacity-search step), --start-rate N (250),
# --capacity N (skip the search and use N calls/s), --out FILE (print to stdout and FILE),
# --script-cost-ms N (0: siphon's routing script busy-waits N ms per new INVITE, so that the
# per-core Python worker, not the load generator, is the bottleneck on a small machine;
# Kamailio's one UDP worker gets the same busy-wait in its cfg: INVITE_COST_US).
# Targets: siphon, kamailio (default: both if kamailio is installed). Kamailio gets the same
# offered load, at the capacity found for siphon (like for like: children=1, same cost).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../sip/lib.sh
source "$HERE/../sip/lib.sh"

SECS=60 STEP_SECS=8 START_RATE=250 CAPACITY="" OUT="" COST_MS=0
TARGETS=()
while [[ $# -gt 0 ]]; do
	case $1 in
	--secs) SECS=$2; shift 2 ;;
	--step-secs) STEP_SECS=$2; shift 2 ;;
	--start-rate) START_RATE=$2; shift 2 ;;
	--capacity) CAPACITY=$2; shift 2 ;;
	--out) OUT=$2; shift 2 ;;
	--script-cost-ms) COST_MS=$2; shift 2 ;;
	-h | --help) sed -n '2,20p' "$0"; exit 0 ;;
	siphon | kamailio) TARGETS+=("$1"); shift ;;
	*) die "unknown argument $1" ;;
	esac
done
if [[ ${#TARGETS[@]} -eq 0 ]]; then
	TARGETS=(siphon)
	command -v "$KAMAILIO_BIN" >/dev/null 2>&1 && TARGETS+=(kamailio)
fi
need_tools "$SIPP_BIN" python3
bench_workdir
trap bench_cleanup EXIT INT TERM
S=$BENCH_SIPP_DIR
METRICS_PORT=${METRICS_PORT:-9190}

# siphon on one reactor core, the example proxy script, metrics on METRICS_PORT
mkcfg() {
	cp "$REPO_ROOT/deploy/examples/proxy_default.py" "$WORK/"
	[[ $COST_MS == 0 ]] || python3 "$HERE/script_cost.py" "$WORK/proxy_default.py" "$COST_MS"
	sed -e "s#\${SIPHON_METRICS:-127.0.0.1:9090}#127.0.0.1:$METRICS_PORT#" \
		-e 's/level: info/level: warn/' \
		"$REPO_ROOT/deploy/examples/siphon.yaml" >"$WORK/siphon.yaml"
	printf 'tuning:\n  reactor_cpus: [0]\n' >>"$WORK/siphon.yaml"
	# SIPHON_EXTRA_YAML: more top-level settings (e.g. "limits: {max_transactions_per_core: 100000}")
	[[ -z ${SIPHON_EXTRA_YAML:-} ]] || printf '%s\n' "$SIPHON_EXTRA_YAML" >>"$WORK/siphon.yaml"
	echo "$WORK/siphon.yaml"
}

# p50 p99 count of rtd 1 samples (ms) in a sipp -trace_rtt file
rtt_stats() {
	python3 - "$@" <<'EOF'
import glob, sys
vals = []
for f in glob.glob(sys.argv[1] + "/*_rtt.csv"):
    for line in open(f):
        parts = line.strip().split(";")
        if len(parts) >= 3 and parts[-1] == "1":
            try:
                vals.append(float(parts[1]))
            except ValueError:
                pass
vals.sort()
def pct(p):
    return vals[min(len(vals) - 1, int(p * len(vals)))] if vals else -1
print("%.1f %.1f %d" % (pct(0.5), pct(0.99), len(vals)))
EOF
}

# "created successful failed retrans shed503" of a finished sipp job
job_counts() {
	local dir="$WORK/$1"
	python3 - "$dir" <<'EOF'
import csv, re, sys
d = sys.argv[1]
rows = list(csv.reader(open(d + "/stat.csv"), delimiter=";"))
head, last = rows[0], rows[-1]
get = lambda n: int(last[head.index(n)]) if n in head else 0
shed = 0
for name in ("/screen.log", "/stdout.log"):  # the last screen sipp drew, wherever it is
    try:
        for line in open(d + name, errors="replace"):
            m = re.match(r"\s*503 <-+\s+(\d+)", line)
            if m:
                shed = int(m.group(1))
    except OSError:
        pass
    if shed:
        break
print(get("TotalCallCreated"), get("SuccessfulCall(C)"), get("FailedCall(C)"),
      get("Retransmissions(C)"), shed)
EOF
}

udp_drops() { { nstat -az UdpRcvbufErrors 2>/dev/null || true; } | awk '/UdpRcvbufErrors/ {v=$2} END {print v+0}'; }
rss_kb() { { cat "/proc/$TARGET_MAIN_PID/status" 2>/dev/null || true; } | awk '/^VmRSS:/ {v=$2} END {print v+0}'; }
metric() { # metric NAME: the first sample of a siphon metric (0 when absent)
	{ curl -s --max-time 1 "http://127.0.0.1:$METRICS_PORT/metrics" 2>/dev/null || true; } |
		awk -v n="$1" 'index($1, n) == 1 && !found {v=$2; found=1} END {print v+0}'
}

# calls RATE SECS NAME: one bounded uac_overload job (the UAS is already running)
calls() {
	local rate=$1 secs=$2 name=$3
	run_sipp "$name" $((secs + 45)) -sf "$HERE/uac_overload.xml" -s bob -t u1 -i "$LOOPBACK" \
		-p "$UAC_PORT" -r "$rate" -m $((rate * secs)) -l $((rate * 12 + 100)) \
		-timeout $((secs + 35)) -trace_rtt -rtt_freq 1 "$LOOPBACK:$SIP_PORT" || true
}

report=()
say_r() { report+=("$*"); say "$*"; }

run_target() {
	local t=$1
	if [[ $t == siphon ]]; then
		SIPHON_CONFIG=$(mkcfg) target_start siphon
	elif [[ $COST_MS != 0 ]]; then
		KAMAILIO_DEFINES="INVITE_COST_US=$((COST_MS * 1000))" target_start kamailio
	else
		target_start kamailio
	fi
	run_sipp "$t-register-bob" 15 -sf "$S/register_auth.xml" -inf "$S/bob.csv" -t u1 \
		-i "$LOOPBACK" -p "$UAS_PORT" -m 1 "$LOOPBACK:$SIP_PORT" || die "$t: registering bob failed"
	start_sipp "$t-uas" 900 -sf "$S/uas_answer.xml" -t u1 -i "$LOOPBACK" -p "$UAS_PORT" \
		-l 100000 -m 100000000
	local uas=$LAST_BG_PID
	wait_bound udp "$UAS_PORT" "$uas" 5 || die "$t: the UAS did not start"
	calls 50 2 "$t-warmup"

	if [[ -z $CAPACITY ]]; then
		# capacity search: double while a step is clean (no failure, no 503, p99 < 100 ms)
		local rate=$START_RATE good=0 n=0
		while ((n < 6)); do
			calls "$rate" "$STEP_SECS" "$t-step-$rate"
			read -r created ok failed retrans shed <<<"$(job_counts "$t-step-$rate")"
			read -r p50 p99 _ <<<"$(rtt_stats "$WORK/$t-step-$rate")"
			say_r "  search $t rate=$rate/s: created=$created ok=$ok failed=$failed shed503=$shed retrans=$retrans p50=${p50}ms p99=${p99}ms"
			if ((failed == 0 && shed == 0)) && python3 -c "import sys; sys.exit(0 if $p99 < 100 else 1)"; then
				good=$rate
				rate=$((rate * 2))
			else
				break
			fi
			n=$((n + 1))
		done
		# one bisection step between the last clean rate and the first unclean one
		if ((good > 0 && rate > good)); then
			local mid=$(((good + rate) / 2))
			calls "$mid" "$STEP_SECS" "$t-step-$mid"
			read -r created ok failed retrans shed <<<"$(job_counts "$t-step-$mid")"
			read -r p50 p99 _ <<<"$(rtt_stats "$WORK/$t-step-$mid")"
			say_r "  search $t rate=$mid/s: created=$created ok=$ok failed=$failed shed503=$shed retrans=$retrans p50=${p50}ms p99=${p99}ms"
			if ((failed == 0 && shed == 0)) && python3 -c "import sys; sys.exit(0 if $p99 < 100 else 1)"; then
				good=$mid
			fi
		fi
		((good > 0)) || good=$START_RATE
		CAPACITY=$good
		say_r "capacity ($t, one reactor core): $CAPACITY calls/s"
	fi
	local over=$((CAPACITY * 2))
	say_r "overload $t: offered $over calls/s (2x $CAPACITY) for ${SECS}s"
	local d0 rss=() q=() sh0
	d0=$(udp_drops)
	calls "$over" "$SECS" "$t-overload" &
	local job=$!
	local i=0
	while kill -0 "$job" 2>/dev/null && ((i < SECS + 60)); do
		rss+=("$(rss_kb)")
		[[ $t == siphon ]] && q+=("$(metric 'siphon_queue_depth{core="0"}')")
		sleep 1
		i=$((i + 1))
	done
	wait "$job" || true
	local d1 sh1
	d1=$(udp_drops)
	local shed_lines
	shed_lines=$({ curl -s --max-time 1 "http://127.0.0.1:$METRICS_PORT/metrics" 2>/dev/null || true; } |
		awk '/^siphon_shed_total/ {printf "%s ", $0}')
	read -r created ok failed retrans shed <<<"$(job_counts "$t-overload")"
	read -r p50 p99 nrt <<<"$(rtt_stats "$WORK/$t-overload")"
	say_r "  $t: created=$created completed=$((ok - shed)) shed503=$shed failed=$failed sipp_retransmissions=$retrans"
	say_r "  $t: admitted INVITE->200 p50=${p50}ms p99=${p99}ms (n=$nrt)"
	say_r "  $t: kernel UdpRcvbufErrors during the load: $((d1 - d0))"
	if [[ $t == siphon ]]; then
		say_r "  $t: since start (search included): $shed_lines"
		say_r "  $t: queue depth samples (1/s): ${q[*]:-}"
	fi
	say_r "  $t: RSS kB first=${rss[0]:-0} min=$(printf '%s\n' "${rss[@]}" | sort -n | head -1) max=$(printf '%s\n' "${rss[@]}" | sort -n | tail -1) last=${rss[-1]:-0}"
	say_r "  $t: RSS kB every 5 s: $(for ((k = 0; k < ${#rss[@]}; k += 5)); do printf '%s ' "${rss[k]}"; done)"
	# flatness: mean RSS over the first and the last 30 samples (1 s apart) of the load
	say_r "  $t: RSS kB mean first 30 s / last 30 s of the load: $(printf '%s\n' "${rss[@]:0:$SECS}" | python3 -c '
import sys
v = [int(x) for x in sys.stdin.read().split()]
h = min(30, len(v) // 2)
a, b = sum(v[:h]) / max(h, 1), sum(v[-h:]) / max(h, 1)
print("%.0f / %.0f (%+.1f%%); last 30 s min %d max %d" % (a, b, (b - a) * 100 / max(a, 1),
      min(v[-h:] or [0]), max(v[-h:] or [0])))')"
	[[ $t == siphon ]] && say_r "  $t: 503 at the transaction cap (siphon_limit_hits_total{limit=\"transactions\"}, since start): $(metric 'siphon_limit_hits_total{limit="transactions"}')"
	if [[ $t == siphon ]]; then
		local retry
		retry=$(grep -c 'Retry-After' "$WORK/$t-overload/"*messages.log 2>/dev/null || true)
		[[ -n $retry ]] && say_r "  $t: Retry-After seen in traced 503s: $retry"
	fi
	# recovery: queue back to 0, then a clean 5 s probe at 50 calls/s
	if [[ $t == siphon ]]; then
		local t0 ms
		t0=$(date +%s%3N)
		for ((i = 0; i < 100; i++)); do
			[[ $(metric 'siphon_queue_depth{core="0"}') == 0 ]] && break
			sleep 0.1
		done
		ms=$(($(date +%s%3N) - t0))
		say_r "  $t: queue depth back to 0 ${ms} ms after the load"
	fi
	calls 50 5 "$t-recovery"
	read -r created ok failed retrans shed <<<"$(job_counts "$t-recovery")"
	read -r p50 p99 _ <<<"$(rtt_stats "$WORK/$t-recovery")"
	say_r "  $t: recovery probe (50/s for 5 s right after): created=$created ok=$((ok - shed)) shed503=$shed failed=$failed p99=${p99}ms"
	kill -TERM "$uas" 2>/dev/null || true
	wait "$uas" 2>/dev/null || true
	target_stop || true # (lib.sh's target_stop is not written for set -e)
	sleep 2
}

{
	echo "# bench/overload/run.sh $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "# siphon: $("${SIPHON_BIN:-siphon}" --version 2>/dev/null | head -n 1), kamailio: $("$KAMAILIO_BIN" -v 2>/dev/null | head -n 1)"
	echo "# secs=$SECS step_secs=$STEP_SECS start_rate=$START_RATE capacity=${CAPACITY:-search} script_cost_ms=$COST_MS (siphon only)"
} | tee -a "$WORK/report.txt"
for t in "${TARGETS[@]}"; do
	run_target "$t"
done
printf '%s\n' "${report[@]}" >>"$WORK/report.txt"
[[ -n $OUT ]] && cp "$WORK/report.txt" "$OUT"
cat "$WORK/report.txt"
