#!/usr/bin/env bash
# Memory of one siphon under the benchmark's call load (bench/sipp/uac_invite.xml against
# uas_answer.xml through the proxy, UDP on 127.0.0.1): PSS idle, every second of the load, and
# every 5 s after it, from /proc/PID/smaps_rollup; a breakdown of PSS by mapping (file, [heap],
# anonymous mappings by size) at idle, at the peak and at the end.
#
#   SIPHON_BIN=path bench/sip/memory.sh [--rate N] [--secs N] [--after N]
#     --rate N    offered calls per second (default 400)
#     --secs N    seconds of calls (default 10)
#     --after N   seconds sampled after the load (default 45; Timer J/L/M are 32 s over UDP)
#   The ports are lib.sh's (SIP_PORT, UAS_PORT, UAC_PORT, METRICS_PORT ...): set them on a
#   shared machine. Prints one summary line at the end (kB): PSS and Anonymous (private)
#   memory idle, at the peak, 40 s after the load, at the end, and after40/idle.
#
# Bounded: every process runs under `timeout`, and the EXIT trap stops them all.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RATE=400
SECS=10
AFTER=45
while [[ $# -gt 0 ]]; do
	case $1 in
	--rate) RATE=$2; shift 2 ;;
	--secs) SECS=$2; shift 2 ;;
	--after) AFTER=$2; shift 2 ;;
	-h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
done
for n in "$RATE" "$SECS" "$AFTER"; do
	[[ $n =~ ^[0-9]+$ ]] || die "numbers only: '$n'"
done
CALLS=$((RATE * SECS))
((CALLS > 0)) || die "--rate and --secs must be positive"
need_tools "$SIPP_BIN" ss python3 timeout
bench_workdir
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
S=$BENCH_SIPP_DIR
export TARGET_MAX_SECS=$((SECS + AFTER + 180))

target_start siphon
P=$TARGET_MAIN_PID

# "rss_kB pss_kB anon_kB" of the target now (Anonymous: its private heap, arenas, stacks and
# buffers; PSS also counts its share of libpython and the other libraries, which moves when
# other processes map them)
pss() {
	awk '/^Rss:/ {r = $2} /^Pss:/ {p = $2} /^Anonymous:/ {a = $2} END {print r + 0, p + 0, a + 0}' \
		"/proc/$P/smaps_rollup"
}

# PSS by mapping: file-backed by file name, [heap], [stack], anonymous by size class (a
# 1 GiB mapping is mimalloc's arena; 64 MiB-1 GiB are the reactors' UDP receive slabs, which
# reserve 64 KiB per buffer; 64 MiB-aligned pieces below are glibc's per-thread heaps)
breakdown() {
	python3 - "$P" <<'EOF'
import collections, sys
agg, cnt = collections.Counter(), collections.Counter()
cur = None
for line in open(f'/proc/{sys.argv[1]}/smaps'):
    parts = line.split()
    if not parts[0].endswith(':') and '-' in parts[0]:
        lo, hi = (int(x, 16) for x in parts[0].split('-'))
        mib = (hi - lo) >> 20
        if len(parts) > 5:
            cur = parts[5].rsplit('/', 1)[-1]
        elif mib >= 1024:
            cur = '[anon >=1G: mimalloc arena]'
        elif mib >= 64:
            cur = '[anon 64M-1G: receive buffer slabs]'
        elif mib >= 1:
            cur = f'[anon {mib}M]'
        else:
            cur = '[anon <1M]'
        cnt[cur] += 1
    elif parts[0] == 'Pss:':
        agg[cur] += int(parts[1])
print(f'  total PSS {sum(agg.values())} kB')
for k, v in agg.most_common(14):
    print(f'  {v:8d} kB  x{cnt[k]:<4d} {k}')
EOF
}

run_sipp register-bob 15 -sf "$S/register_auth.xml" -inf "$S/bob.csv" -t u1 -i "$LOOPBACK" \
	-p "$UAS_PORT" -m 1 "$LOOPBACK:$SIP_PORT" || die "registering bob failed (see $WORK/register-bob)"
sleep 3
read -r _ idle idle_anon < <(pss)
say "idle: pss $idle kB, anonymous $idle_anon kB"
breakdown >"$WORK/smaps-idle.txt"

start_sipp uas $((SECS + AFTER + 90)) -sf "$S/uas_answer.xml" -t u1 -i "$LOOPBACK" -p "$UAS_PORT" \
	-m $((CALLS + 50)) -l $((RATE * 10 + 100))
uas=$LAST_BG_PID
wait_bound udp "$UAS_PORT" "$uas" 5 || die "the UAS did not start (see $WORK/uas)"
run_sipp warmup 30 -sf "$S/uac_invite.xml" -s bob -t u1 -i "$LOOPBACK" -p "$UAC_PORT" -r 50 -m 50 \
	"$LOOPBACK:$SIP_PORT" || die "warm-up calls failed (see $WORK/warmup)"
start_sipp calls $((SECS + 60)) -sf "$S/uac_invite.xml" -s bob -t u1 -i "$LOOPBACK" -p "$UAC_PORT" \
	-r "$RATE" -rp 1000 -m "$CALLS" -l $((RATE * 10 + 100)) "$LOOPBACK:$SIP_PORT"
uac=$LAST_BG_PID
peak=0 peak_anon=0 t=0
while kill -0 "$uac" 2>/dev/null; do
	sleep 1
	t=$((t + 1))
	read -r rss p a < <(pss)
	say "load t=${t}s: rss $rss kB pss $p kB anonymous $a kB"
	((a > peak_anon)) && peak_anon=$a
	if ((p > peak)); then
		peak=$p
		breakdown >"$WORK/smaps-peak.txt"
	fi
done
rc_uac=$(wait_sipp "$uac")
rc_uas=$(wait_sipp "$uas")
read -r created ok failed _ < <(sipp_counts calls)
say "calls: created $created, successful $ok, failed $failed (uac rc $rc_uac, uas rc $rc_uas)"
after40="" after40_anon=""
for ((i = 5; i <= AFTER; i += 5)); do
	sleep 5
	read -r rss p a < <(pss)
	say "after ${i}s: rss $rss kB pss $p kB anonymous $a kB"
	((p > peak)) && peak=$p
	((a > peak_anon)) && peak_anon=$a
	((i == 40)) && after40=$p after40_anon=$a
done
read -r _ end end_anon < <(pss)
after40=${after40:-$end} after40_anon=${after40_anon:-$end_anon}
breakdown >"$WORK/smaps-after.txt"
say "--- PSS by mapping, idle"
cat "$WORK/smaps-idle.txt" >&2
say "--- at the peak"
cat "$WORK/smaps-peak.txt" >&2
say "--- ${AFTER} s after the load"
cat "$WORK/smaps-after.txt" >&2
say "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf 'memory: pss idle=%s peak=%s after40=%s after%s=%s (after40/idle %s); anonymous idle=%s peak=%s after40=%s (after40/idle %s); calls ok=%s failed=%s\n' \
	"$idle" "$peak" "$after40" "$AFTER" "$end" "$(python3 -c "print(round($after40 / $idle, 3))")" \
	"$idle_anon" "$peak_anon" "$after40_anon" "$(python3 -c "print(round($after40_anon / $idle_anon, 3))")" \
	"$ok" "$failed"
target_stop
