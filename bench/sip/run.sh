#!/usr/bin/env bash
# SIP proxy benchmark on 127.0.0.1: the call scenario at a fixed offered rate, then REGISTER
# with digest, against one or more targets in turn (same run, same machine), measuring
#   CPU ms per call      utime+stime of the target's whole process tree (/proc/PID/stat of the
#                        root and every descendant, threads included) over the load window
#   INVITE->200 p50/p99  from a tcpdump capture on lo (sipcap.py, kernel timestamps in us):
#                        INVITE in -> 200 out at the proxy, and the time spent inside the proxy;
#                        sipp's own rtd samples (1 ms resolution) are kept as sipp_rtt_*
#   failed calls         sipp's counters (failed, unexpected messages, retransmissions)
#   peak RSS             VmHWM of the target's processes (/proc/PID/status)
# and writes one JSON line per run to stdout, a table to stderr, and
# bench/results/<date>-<target>.json with the machine description.
#
#   bench/sip/run.sh [options] [kamailio] [siphon]
#     --rate N         offered calls per second (default 200)
#     --secs N         seconds of calls at that rate (default 10): N*rate calls
#     --reg-rate N     REGISTER flows per second (default 200)
#     --reg-count N    REGISTER flows (default 2000; 0 skips the REGISTER run)
#     --transport T    udp (default) or tcp
#     --settle N       seconds after the load that are still counted in the "settled" CPU
#                      figure (default 6: Kamailio frees transactions 5 s after completion)
#     --rounds N       repeat the whole target list N times, interleaved (kamailio, siphon,
#                      kamailio, siphon, ...); the table shows medians over the rounds
#                      (default 1). Use 3 or more on a shared or noisy machine
#     --out DIR        results directory (default bench/results; "-" writes none)
#   SIPHON_BIN=path [SIPHON_CONFIG=siphon.yaml] bench/sip/run.sh kamailio siphon
#
# Everything is bounded: sipp -m, timeout on every process, and an EXIT trap that stops the
# target and the SIPp processes.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RATE=200
SECS=10
REG_RATE=200
REG_COUNT=2000
TRANSPORT=udp
SETTLE=6
OUT_DIR="$REPO_ROOT/bench/results"
WARMUP_CALLS=50
ROUNDS=1
targets=()

while [[ $# -gt 0 ]]; do
	case $1 in
	--rate) RATE=$2; shift 2 ;;
	--secs) SECS=$2; shift 2 ;;
	--reg-rate) REG_RATE=$2; shift 2 ;;
	--reg-count) REG_COUNT=$2; shift 2 ;;
	--transport) TRANSPORT=$2; shift 2 ;;
	--settle) SETTLE=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--out) OUT_DIR=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	kamailio | siphon) targets+=("$1"); shift ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
done
if [[ ${#targets[@]} -eq 0 ]]; then
	targets=(kamailio)
	[[ -n "${SIPHON_BIN:-}" ]] && targets+=(siphon)
fi
[[ $TRANSPORT == udp || $TRANSPORT == tcp ]] || die "--transport udp or tcp"
for n in "$RATE" "$SECS" "$REG_RATE" "$REG_COUNT" "$SETTLE" "$ROUNDS"; do
	[[ $n =~ ^[0-9]+$ ]] || die "numbers only: '$n'"
done
CALLS=$((RATE * SECS))
((CALLS > 0)) || die "--rate and --secs must be positive"

need_tools "$SIPP_BIN" ss openssl python3 timeout
bench_workdir
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
read -r MODE PORT < <(sipp_transport "$TRANSPORT")
S=$BENCH_SIPP_DIR
CLK_TCK=$(getconf CLK_TCK)
STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
RESULTS="$WORK/results.jsonl"
: >"$RESULTS"

machine_json() {
	python3 - "$SIPP_BIN" "$KAMAILIO_BIN" <<'EOF'
import json, os, platform, re, subprocess, sys
def first(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
        for line in (out.stdout + out.stderr).splitlines():
            if line.strip():
                return line.strip()
    except Exception:
        pass
    return None
model = None
for line in open('/proc/cpuinfo'):
    if line.startswith('model name'):
        model = line.split(':', 1)[1].strip(); break
mem = None
for line in open('/proc/meminfo'):
    if line.startswith('MemTotal'):
        mem = int(line.split()[1]); break
sipp = first([sys.argv[1], '-v'])
print(json.dumps({
    'nproc': os.cpu_count(), 'cpu_model': model, 'kernel': platform.release(),
    'mem_total_kb': mem, 'sipp': sipp, 'kamailio': first([sys.argv[2], '-v']),
}))
EOF
}

# percentiles of the rtd 1 samples in a sipp -trace_rtt file: "count p50 p99 max" (ms)
rtt_stats() {
	python3 - "$@" <<'EOF'
import glob, sys
vals = []
for path in glob.glob(sys.argv[1] + '/*_rtt.csv'):
    for line in open(path):
        parts = line.strip().split(';')
        # date_ms;response_time_ms;rtd_no
        if len(parts) >= 3 and parts[2] == '1':
            try:
                vals.append(float(parts[1]))
            except ValueError:
                pass
vals.sort()
def pct(p):
    if not vals:
        return 'null'
    k = max(0, min(len(vals) - 1, int(round(p / 100.0 * len(vals) + 0.5)) - 1))
    return '%.3f' % vals[k]
print(len(vals), pct(50), pct(99), ('%.3f' % vals[-1]) if vals else 'null')
EOF
}

# counters of a sipp job as JSON fields
sipp_json() {
	python3 - "$WORK/$1/stat.csv" <<'EOF'
import csv, json, sys
try:
    rows = list(csv.reader(open(sys.argv[1]), delimiter=';'))
    head, last = rows[0], rows[-1]
except Exception:
    head, last = [], []
def get(name):
    try:
        return int(last[head.index(name)])
    except Exception:
        return None
print(json.dumps({
    'created': get('TotalCallCreated'), 'successful': get('SuccessfulCall(C)'),
    'failed': get('FailedCall(C)'), 'unexpected': get('FailedUnexpectedMessage(C)'),
    'timeouts': get('FailedTimeoutOnRecv(C)'), 'retransmissions': get('Retransmissions(C)'),
    'out_of_call_msgs': get('OutOfCallMsgs(C)'), 'dead_call_msgs': get('DeadCallMsgs(C)'),
}))
EOF
}

now_ms() { date +%s%3N; }

# packet capture on lo for microsecond latencies (sipcap.py); sipp's own clock is in ms
CAP_PID=""
capture_start() { # capture_start NAME
	CAP_FILE="$WORK/$1.pcap"
	CAP_PID=""
	if ! command -v tcpdump >/dev/null; then
		say "tcpdump not found (apt-get install -y tcpdump): latencies from sipp only, 1 ms resolution"
		return 0
	fi
	timeout -k 2 $((SECS + REG_COUNT / (REG_RATE > 0 ? REG_RATE : 1) + 120)) \
		tcpdump -i lo -n -s 0 -B 32768 --immediate-mode -w "$CAP_FILE" "port $PORT or port $UAS_PORT" \
		2>"$WORK/$1.tcpdump.log" &
	CAP_PID=$!
	track_pid "$CAP_PID"
	local i
	for ((i = 0; i < 50; i++)); do
		grep -q 'listening on' "$WORK/$1.tcpdump.log" 2>/dev/null && return 0
		sleep 0.1
	done
	say "tcpdump did not start (see $WORK/$1.tcpdump.log)"
}

# capture_stop NAME: prints the sipcap.py JSON ({} without a capture)
capture_stop() {
	if [[ -z $CAP_PID ]]; then
		echo '{}'
		return
	fi
	sleep 0.5
	kill -INT "$CAP_PID" 2>/dev/null
	wait "$CAP_PID" 2>/dev/null
	CAP_PID=""
	local dropped
	dropped=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$WORK/$1.tcpdump.log")
	python3 "$BENCH_SIP_DIR/sipcap.py" "$CAP_FILE" --proxy-port "$PORT" --uas-port "$UAS_PORT" |
		python3 -c 'import json,sys; d=json.load(sys.stdin); d["capture_dropped"]=int(sys.argv[1] or 0); print(json.dumps(d))' "${dropped:-0}"
}

# jget JSON KEY SUBKEY DEFAULT: a figure from the capture analysis, DEFAULT when absent
jget() {
	python3 -c '
import json, sys
d = json.loads(sys.argv[1] or "{}").get(sys.argv[2]) or {}
v = d.get(sys.argv[3])
print(json.dumps(v) if v is not None else sys.argv[4])' "$@"
}

# emit_run JSON-FIELDS...: one result line (stdout and the results file)
emit_run() {
	python3 -c '
import json, sys
d = {}
for a in sys.argv[1:]:
    k, v = a.split("=", 1)
    try:
        d[k] = json.loads(v)
    except ValueError:
        d[k] = v
print(json.dumps(d))' "$@" | tee -a "$RESULTS"
}

bench_target() {
	local target=$1 round=$2 t0 t1 c0 c1 c2 rc_uac rc_uas rc_reg uas_pid
	say "== $target (round $round/$ROUNDS): $TRANSPORT, $RATE calls/s for $SECS s ($CALLS calls)"
	target_start "$target"
	local version
	if [[ $target == kamailio ]]; then
		version=$("$KAMAILIO_BIN" -v 2>/dev/null | head -n 1)
	else
		version=$("$SIPHON_BIN" --version 2>/dev/null | head -n 1)
	fi

	# bob's contact is the UAS
	run_sipp "$target-r$round-register-bob" 15 -sf "$S/register_auth.xml" -inf "$S/bob.csv" -t "$MODE" \
		-i "$LOOPBACK" -p "$UAS_PORT" -m 1 "$LOOPBACK:$PORT" ||
		die "$target: registering bob failed (see $WORK/$target-register-bob)"

	start_sipp "$target-r$round-uas" $((SECS + 90)) -sf "$S/uas_answer.xml" -t "$MODE" -i "$LOOPBACK" \
		-p "$UAS_PORT" -m $((CALLS + WARMUP_CALLS)) -l $((RATE * 10 + 100))
	uas_pid=$LAST_BG_PID
	wait_bound "$([[ $TRANSPORT == udp ]] && echo udp || echo tcp)" "$UAS_PORT" "$uas_pid" 5 ||
		die "$target: the UAS did not start (see $WORK/$target-uas)"

	# warm-up: allocations, connections, first-call paths; not measured
	run_sipp "$target-r$round-warmup" 30 -sf "$S/uac_invite.xml" -s bob -t "$MODE" -i "$LOOPBACK" \
		-p "$UAC_PORT" -r 50 -m "$WARMUP_CALLS" "$LOOPBACK:$PORT" ||
		die "$target: warm-up calls failed (see $WORK/$target-warmup)"

	capture_start "$target-r$round-calls"
	c0=$(tree_cpu_ticks "$TARGET_MAIN_PID")
	t0=$(now_ms)
	run_sipp "$target-r$round-calls" $((SECS + 60)) -sf "$S/uac_invite.xml" -s bob -t "$MODE" \
		-i "$LOOPBACK" -p "$UAC_PORT" -r "$RATE" -rp 1000 -m "$CALLS" -l $((RATE * 10 + 100)) \
		-trace_rtt -rtt_freq 1 "$LOOPBACK:$PORT"
	rc_uac=$?
	c1=$(tree_cpu_ticks "$TARGET_MAIN_PID")
	t1=$(now_ms)
	rc_uas=$(wait_sipp "$uas_pid")
	local cap
	cap=$(capture_stop "$target-r$round-calls")
	sleep "$SETTLE"
	c2=$(tree_cpu_ticks "$TARGET_MAIN_PID")

	local counts ok n_rtt p50 p99 pmax hwm_max hwm_sum pss_sum
	read -r n_rtt p50 p99 pmax < <(rtt_stats "$WORK/$target-calls")
	read -r hwm_max hwm_sum pss_sum < <(tree_mem_kb "$TARGET_MAIN_PID")
	counts=$(sipp_json "$target-r$round-calls")
	ok=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["successful"] or 0)' "$counts")
	local per_call per_call_settled
	per_call=$(python3 -c "import sys; c=int(sys.argv[2]); print('%.4f' % ((int(sys.argv[1]) * 1000.0 / $CLK_TCK) / c) if c else 'null')" $((c1 - c0)) "$ok")
	per_call_settled=$(python3 -c "import sys; c=int(sys.argv[2]); print('%.4f' % ((int(sys.argv[1]) * 1000.0 / $CLK_TCK) / c) if c else 'null')" $((c2 - c0)) "$ok")
	emit_run target="$target" round="$round" version="\"$version\"" run='"call"' transport="\"$TRANSPORT\"" \
		offered_rate="$RATE" calls="$CALLS" load_secs="$(((t1 - t0) / 1000))" \
		wall_ms="$((t1 - t0))" sipp="$counts" uac_exit="$rc_uac" uas_exit="$rc_uas" \
		cpu_ms="$(((c1 - c0) * 1000 / CLK_TCK))" cpu_ms_per_call="$per_call" \
		cpu_ms_settled="$(((c2 - c0) * 1000 / CLK_TCK))" settle_secs="$SETTLE" \
		cpu_ms_per_call_settled="$per_call_settled" \
		invite_200_p50_ms="$(jget "$cap" invite_200 p50 "$p50")" \
		invite_200_p99_ms="$(jget "$cap" invite_200 p99 "$p99")" \
		proxy_transit_p50_ms="$(jget "$cap" proxy_transit p50 null)" \
		proxy_transit_p99_ms="$(jget "$cap" proxy_transit p99 null)" \
		capture="$cap" sipp_rtt_samples="$n_rtt" sipp_rtt_p50_ms="$p50" sipp_rtt_p99_ms="$p99" \
		sipp_rtt_max_ms="$pmax" \
		peak_rss_kb="$hwm_max" rss_hwm_sum_kb="$hwm_sum" pss_kb="$pss_sum" \
		processes="$(tree_pids "$TARGET_MAIN_PID" | wc -l)" >/dev/null

	if ((REG_COUNT > 0)); then
		say "== $target: REGISTER with digest, $REG_RATE/s, $REG_COUNT flows"
		capture_start "$target-r$round-registers"
		c0=$(tree_cpu_ticks "$TARGET_MAIN_PID")
		t0=$(now_ms)
		run_sipp "$target-r$round-registers" $((REG_COUNT / (REG_RATE > 0 ? REG_RATE : 1) + 60)) \
			-sf "$S/register_auth.xml" -inf "$S/users.csv" -t "$MODE" -i "$LOOPBACK" \
			-p "$REG_PORT" -r "$REG_RATE" -rp 1000 -m "$REG_COUNT" -l $((REG_RATE * 10 + 100)) \
			-trace_rtt -rtt_freq 1 "$LOOPBACK:$PORT"
		rc_reg=$?
		c1=$(tree_cpu_ticks "$TARGET_MAIN_PID")
		t1=$(now_ms)
		cap=$(capture_stop "$target-r$round-registers")
		read -r n_rtt p50 p99 pmax < <(rtt_stats "$WORK/$target-registers")
		read -r hwm_max hwm_sum pss_sum < <(tree_mem_kb "$TARGET_MAIN_PID")
		counts=$(sipp_json "$target-r$round-registers")
		ok=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["successful"] or 0)' "$counts")
		per_call=$(python3 -c "import sys; c=int(sys.argv[2]); print('%.4f' % ((int(sys.argv[1]) * 1000.0 / $CLK_TCK) / c) if c else 'null')" $((c1 - c0)) "$ok")
		emit_run target="$target" round="$round" version="\"$version\"" run='"register"' transport="\"$TRANSPORT\"" \
			offered_rate="$REG_RATE" calls="$REG_COUNT" load_secs="$(((t1 - t0) / 1000))" \
			wall_ms="$((t1 - t0))" sipp="$counts" uac_exit="$rc_reg" \
			cpu_ms="$(((c1 - c0) * 1000 / CLK_TCK))" cpu_ms_per_call="$per_call" \
			register_p50_ms="$(jget "$cap" register p50 "$p50")" \
			register_p99_ms="$(jget "$cap" register p99 "$p99")" \
			register_server_p50_ms="$(jget "$cap" register_server p50 null)" \
			register_server_p99_ms="$(jget "$cap" register_server p99 null)" \
			capture="$cap" sipp_rtt_samples="$n_rtt" sipp_rtt_p50_ms="$p50" sipp_rtt_p99_ms="$p99" \
			sipp_rtt_max_ms="$pmax" \
			peak_rss_kb="$hwm_max" rss_hwm_sum_kb="$hwm_sum" pss_kb="$pss_sum" \
			processes="$(tree_pids "$TARGET_MAIN_PID" | wc -l)" >/dev/null
	fi
	target_stop
}

MACHINE=$(machine_json)
status=0
for ((round = 1; round <= ROUNDS; round++)); do
	for target in "${targets[@]}"; do
		# a subshell, so that a target that cannot run stops its own runs only (with cleanup),
		# in the background and waited for, so that INT/TERM reach the traps at once
		(
			trap bench_cleanup EXIT
			trap 'exit 143' TERM
			bench_target "$target" "$round"
		) &
		sub=$!
		track_pid "$sub"
		if ! wait "$sub"; then
			status=1
			say "FAILED: $target, round $round (see above; logs in $WORK)"
		fi
	done
done

# table, ratios and result files
python3 - "$RESULTS" "$MACHINE" "$OUT_DIR" "$STAMP" "$WORK" <<'EOF'
import json, os, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
machine = json.loads(sys.argv[2])
out_dir, stamp, work = sys.argv[3], sys.argv[4], sys.argv[5]
for r in runs:
    print(json.dumps(r))
def f(v, fmt='%.3f'):
    return '-' if v is None else (fmt % v if isinstance(v, (int, float)) else str(v))
err = sys.stderr
print(file=err)
print('machine: %s x %s, kernel %s' % (machine['nproc'], machine['cpu_model'], machine['kernel']), file=err)
hdr = '%-11s %-9s %-4s %5s %6s %6s %6s %7s %8s %8s %8s %8s %8s %10s' % (
    'target', 'run', 'tp', 'rate', 'calls', 'ok', 'failed', 'cpu_ms', 'ms/call',
    'p50_ms', 'p99_ms', 'px_p50', 'px_p99', 'peakRSS_kB')

def figures(r):
    call = r['run'] == 'call'
    s = r.get('sipp') or {}
    return {
        'ok': s.get('successful'), 'failed': s.get('failed'), 'cpu_ms': r.get('cpu_ms'),
        'ms_call': r.get('cpu_ms_per_call'),
        'p50': r.get('invite_200_p50_ms' if call else 'register_p50_ms'),
        'p99': r.get('invite_200_p99_ms' if call else 'register_p99_ms'),
        'x50': r.get('proxy_transit_p50_ms' if call else 'register_server_p50_ms'),
        'x99': r.get('proxy_transit_p99_ms' if call else 'register_server_p99_ms'),
        'rss': r.get('peak_rss_kb'),
    }

def row(label, r, g):
    return '%-11s %-9s %-4s %5s %6s %6s %6s %7s %8s %8s %8s %8s %8s %10s' % (
        label, r['run'], r['transport'], r['offered_rate'], r['calls'], f(g['ok'], '%d'),
        f(g['failed'], '%d'), f(g['cpu_ms'], '%d'), f(g['ms_call'], '%.4f'), f(g['p50']),
        f(g['p99']), f(g['x50']), f(g['x99']), f(g['rss'], '%d'))

print(hdr, file=err)
rounds = max([r.get('round', 1) for r in runs] or [1])
for r in runs:
    label = r['target'] if rounds == 1 else '%s#%d' % (r['target'], r.get('round', 1))
    print(row(label, r, figures(r)), file=err)

def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2.0

summary = {}
for key in sorted({(r['target'], r['run']) for r in runs}):
    group = [figures(r) for r in runs if (r['target'], r['run']) == key]
    m = {k: median([g[k] for g in group]) for k in group[0]}
    m['failed'] = sum(g['failed'] or 0 for g in group)
    m['rss'] = max((g['rss'] or 0) for g in group)
    m['rounds'] = len(group)
    summary[key] = m
if rounds > 1:
    print('medians over %d rounds (failed: total; peak RSS: max):' % rounds, file=err)
    for (target, run), m in summary.items():
        r0 = next(r for r in runs if (r['target'], r['run']) == (target, run))
        print(row(target, r0, m), file=err)
print('p50/p99: INVITE->200 (call) or first REGISTER->200 (register) at the proxy, from a lo capture;',
      file=err)
print('px_*: time inside the proxy (call: INVITE in->out + 200 in->out; register: 401 + 200 turnaround)',
      file=err)
ratios = {}
for run in ('call', 'register'):
    k, s = summary.get(('kamailio', run)), summary.get(('siphon', run))
    if k and s and k.get('ms_call') and s.get('ms_call') is not None:
        ratios[run] = {'cpu_per_call': s['ms_call'] / k['ms_call']}
        line = '%s: siphon/kamailio CPU per call = %.3f' % (run, ratios[run]['cpu_per_call'])
        if k.get('p99') and s.get('p99') is not None:
            ratios[run]['p99'] = s['p99'] / k['p99']
            line += ', p99 = %.3f' % ratios[run]['p99']
        print(line, file=err)
if out_dir != '-':
    os.makedirs(out_dir, exist_ok=True)
    for target in sorted({r['target'] for r in runs}):
        path = os.path.join(out_dir, '%s-%s.json' % (stamp, target))
        with open(path, 'w') as fh:
            json.dump({'machine': machine, 'stamp': stamp, 'ratios_siphon_over_kamailio': ratios,
                       'medians': {run: m for (t, run), m in summary.items() if t == target},
                       'runs': [r for r in runs if r['target'] == target]}, fh, indent=2)
            fh.write('\n')
        print('wrote %s' % path, file=err)
print('logs and sipp traces: %s' % work, file=err)
EOF

# success only when every run had zero failed calls and every sipp exited 0
python3 - "$RESULTS" <<'EOF' || status=1
import json, sys
bad = []
for line in open(sys.argv[1]):
    r = json.loads(line)
    s = r.get('sipp') or {}
    if s.get('failed') or r.get('uac_exit') or r.get('uas_exit') or not s.get('successful'):
        bad.append('%s %s: failed=%s uac_exit=%s uas_exit=%s' % (
            r['target'], r['run'], s.get('failed'), r.get('uac_exit'), r.get('uas_exit')))
for b in bad:
    print('FAILED RUN: ' + b, file=sys.stderr)
sys.exit(1 if bad else 0)
EOF
exit $status
