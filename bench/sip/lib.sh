# shellcheck shell=bash disable=SC2034,SC2046,SC2086
# (SC2034: variables for the scripts that source this; SC2046/SC2086: pid lists split on purpose)
# Shared by bench/sip/run.sh and bench/sipp/e2e.sh (sourced, bash): start and stop a target
# (kamailio or siphon) on loopback, run bounded SIPp jobs, read CPU and memory of a process tree.
#
# Environment (all optional):
#   SIP_PORT=5060        UDP and TCP listener of the target
#   TLS_PORT=5061        TLS listener of the target (when TLS is asked for)
#   UAS_PORT=5070        the callee's SIPp (registered as bob)
#   UAC_PORT=5080        the caller's SIPp
#   REG_PORT=5090        the REGISTER load's SIPp
#   KAMAILIO_BIN=kamailio, KAMAILIO_MODULES=<debian module dir>
#   SIPHON_BIN=path      run siphon instead of kamailio (target "siphon")
#   SIPHON_CONFIG=path   its config (default: deploy/examples/siphon.yaml)
#   WORK=dir             where logs, traces and certificates go (default: a fresh mktemp dir)
#   TARGET_MAX_SECS=1800 hard bound on the target's life (it runs under `timeout`)
#   SIPP_EXTRA_ARGS      appended to every sipp command (e.g. -trace_msg to keep every message)
#
# Every process started here runs under `timeout` and is listed in $WORK/pids; bench_cleanup
# (the callers' EXIT/INT/TERM trap) stops them all, so nothing outlives a run.

BENCH_SIP_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH_SIPP_DIR=$(cd "$BENCH_SIP_DIR/../sipp" && pwd)
REPO_ROOT=$(cd "$BENCH_SIP_DIR/../.." && pwd)

SIP_PORT=${SIP_PORT:-5060}
TLS_PORT=${TLS_PORT:-5061}
UAS_PORT=${UAS_PORT:-5070}
UAC_PORT=${UAC_PORT:-5080}
REG_PORT=${REG_PORT:-5090}
LOOPBACK=127.0.0.1
KAMAILIO_BIN=${KAMAILIO_BIN:-kamailio}
KAMAILIO_MODULES=${KAMAILIO_MODULES:-/usr/lib/x86_64-linux-gnu/kamailio/modules}
SIPP_BIN=${SIPP_BIN:-sipp}

TARGET_PID=""      # the `timeout` wrapping the target
TARGET_MAIN_PID="" # the target itself (its process tree is what is measured)
TARGET_NAME=""
TARGET_LOG=""
LAST_BG_PID=""

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

bench_workdir() {
	if [[ -z "${WORK:-}" ]]; then
		WORK=$(mktemp -d /tmp/siphon-bench.XXXXXX)
	fi
	mkdir -p "$WORK"
	export WORK
}

# remember a pid to stop in bench_cleanup
track_pid() {
	echo "$1" >>"$WORK/pids"
}

# stop everything listed in $WORK/pids (TERM, then KILL of what is left after 5 s, with
# descendants); installed as the EXIT/INT/TERM trap by the callers
bench_cleanup() {
	[[ -n "${WORK:-}" && -s "$WORK/pids" ]] || return 0
	local p i alive all=()
	for p in $(sort -u "$WORK/pids"); do
		[[ $p == "$BASHPID" ]] && continue
		kill -0 "$p" 2>/dev/null || continue
		mapfile -t -O "${#all[@]}" all < <(tree_pids "$p")
		kill -TERM "$p" 2>/dev/null || true
	done
	for ((i = 0; i < 50; i++)); do
		alive=0
		for p in "${all[@]}"; do
			kill -0 "$p" 2>/dev/null && alive=1
		done
		((alive)) || break
		sleep 0.1
	done
	for p in "${all[@]}"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	if grep -qx "$BASHPID" "$WORK/pids"; then
		echo "$BASHPID" >"$WORK/pids"
	else
		: >"$WORK/pids"
	fi
	TARGET_PID=""
	TARGET_MAIN_PID=""
}

need_tools() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null || die "$t not found (apt-get install -y sip-tester kamailio)"
	done
}

# TLS material in $WORK: a throw-away CA (ca.pem) and a leaf certificate signed by it
# (cert.pem, key.pem) for 127.0.0.1 / localhost, as rustls wants it: subjectAltName IP and DNS,
# CA:FALSE, server and client auth. A client that verifies trusts ca.pem.
ensure_cert() {
	[[ -s "$WORK/cert.pem" ]] && return 0
	(
		cd "$WORK" || exit 1
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days 7 \
			-subj "/CN=siphon bench CA" &&
			openssl req -newkey rsa:2048 -nodes -keyout key.pem -out leaf.csr \
				-subj "/CN=$LOOPBACK" &&
			printf '%s\n' "subjectAltName=IP:$LOOPBACK,DNS:localhost" "basicConstraints=CA:FALSE" \
				"keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth,clientAuth" \
				>leaf.ext &&
			openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
				-out cert.pem -days 7 -extfile leaf.ext
	) >"$WORK/openssl.log" 2>&1 || die "openssl could not make a certificate (see $WORK/openssl.log)"
}

# wait until PROTO (udp|tcp) PORT is bound on loopback, while PID lives; 0 when bound
wait_bound() {
	local proto=$1 port=$2 pid=$3 secs=${4:-10} flag i
	[[ $proto == udp ]] && flag=-Hlun || flag=-Hltn
	for ((i = 0; i < secs * 10; i++)); do
		if ss $flag "sport = :$port" 2>/dev/null | grep -q .; then
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

port_free() {
	! ss -Hlun "sport = :$1" 2>/dev/null | grep -q . && ! ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
}

# target_start kamailio|siphon [tls]: starts it in the background, sets TARGET_PID
target_start() {
	local name=$1 tls=${2:-}
	TARGET_NAME=$name
	TARGET_LOG="$WORK/$name.log"
	local p
	for p in "$SIP_PORT" ${tls:+"$TLS_PORT"}; do
		port_free "$p" || die "port $p on $LOOPBACK is in use: stop what listens there or set SIP_PORT/TLS_PORT"
	done
	case $name in
	kamailio)
		need_tools "$KAMAILIO_BIN"
		local args=(-f "$BENCH_SIP_DIR/kamailio.cfg" -L "$KAMAILIO_MODULES" -DD -E -m "${KAMAILIO_SHM_MB:-256}" -M "${KAMAILIO_PKG_MB:-16}"
			-l "udp:$LOOPBACK:$SIP_PORT" -l "tcp:$LOOPBACK:$SIP_PORT")
		if [[ -n $tls ]]; then
			[[ -e $KAMAILIO_MODULES/tls.so ]] || die "kamailio tls.so missing: apt-get install -y kamailio-tls-modules"
			ensure_cert
			args+=(-A WITH_TLS -A "TLS_CERT=\"$WORK/cert.pem\"" -A "TLS_KEY=\"$WORK/key.pem\""
				-l "tls:$LOOPBACK:$TLS_PORT")
		fi
		# KAMAILIO_DEFINES="A=1 B=2": extra -A defines (bench/overload's INVITE_COST_US)
		local d
		for d in ${KAMAILIO_DEFINES:-}; do args+=(-A "$d"); done
		# -DD: no daemon, but the workers are forked (-D alone serves one UDP socket, no TCP)
		timeout -k 5 "${TARGET_MAX_SECS:-1800}" "$KAMAILIO_BIN" "${args[@]}" >"$TARGET_LOG" 2>&1 &
		TARGET_PID=$!
		;;
	siphon)
		[[ -n "${SIPHON_BIN:-}" ]] || die "target siphon needs SIPHON_BIN=path/to/siphon"
		[[ -x "$SIPHON_BIN" ]] || die "SIPHON_BIN=$SIPHON_BIN is not an executable file"
		local cfg=${SIPHON_CONFIG:-$REPO_ROOT/deploy/examples/siphon.yaml}
		[[ -r $cfg ]] || die "SIPHON_CONFIG=$cfg is not readable"
		ensure_cert
		# the configs read these (deploy/examples/siphon.yaml, bench/sipp/siphon-e2e.yaml)
		export SIPHON_LISTEN_UDP="$LOOPBACK:$SIP_PORT" SIPHON_LISTEN_TCP="$LOOPBACK:$SIP_PORT" \
			SIPHON_LISTEN_TLS="$LOOPBACK:$TLS_PORT" SIPHON_TLS_CERT="$WORK/cert.pem" \
			SIPHON_TLS_KEY="$WORK/key.pem" SIPHON_TLS_CA="$WORK/ca.pem" SIPHON_METRICS="$LOOPBACK:${METRICS_PORT:-9090}"
		if ! "$SIPHON_BIN" check -c "$cfg" >"$WORK/siphon-check.log" 2>&1; then
			tail -n 20 "$WORK/siphon-check.log" >&2
			die "siphon check -c $cfg failed (full output: $WORK/siphon-check.log)"
		fi
		timeout -k 5 "${TARGET_MAX_SECS:-1800}" "$SIPHON_BIN" -c "$cfg" >"$TARGET_LOG" 2>&1 &
		TARGET_PID=$!
		;;
	*) die "unknown target '$name' (kamailio or siphon)" ;;
	esac
	track_pid "$TARGET_PID"
	local i
	for ((i = 0; i < 50; i++)); do
		TARGET_MAIN_PID=$(ps -o pid= --ppid "$TARGET_PID" | head -n 1 | tr -d ' ')
		[[ -n $TARGET_MAIN_PID ]] && break
		kill -0 "$TARGET_PID" 2>/dev/null || break
		sleep 0.1
	done
	local what
	for what in "udp $SIP_PORT" "tcp $SIP_PORT" ${tls:+"tcp $TLS_PORT"}; do
		# shellcheck disable=SC2086
		if ! wait_bound $what "$TARGET_PID" 10; then
			say "---- last lines of $TARGET_LOG:"
			tail -n 20 "$TARGET_LOG" >&2
			if kill -0 "$TARGET_PID" 2>/dev/null; then
				die "$name (pid $TARGET_PID) did not listen on $what at $LOOPBACK within 10 s"
			fi
			wait "$TARGET_PID" 2>/dev/null
			die "$name exited (status $?) before listening on $what at $LOOPBACK: it cannot run yet"
		fi
	done
	[[ -n $TARGET_MAIN_PID ]] || die "$name: no process under its timeout wrapper"
	say "$name running, pid $TARGET_MAIN_PID, log $TARGET_LOG"
}

target_stop() {
	[[ -n "$TARGET_PID" ]] || return 0
	local i
	# timeout passes the TERM on to the target
	kill -TERM "$TARGET_PID" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		kill -0 "$TARGET_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$TARGET_PID" 2>/dev/null; then
		say "$TARGET_NAME did not stop on SIGTERM within 5 s: SIGKILL"
		kill -KILL $(tree_pids "$TARGET_PID") 2>/dev/null || true
	fi
	wait "$TARGET_PID" 2>/dev/null || true
	# workers that outlived their parent
	[[ -n $TARGET_MAIN_PID ]] && kill -KILL $(tree_pids "$TARGET_MAIN_PID" | tail -n +2) 2>/dev/null
	TARGET_PID=""
	TARGET_MAIN_PID=""
	return 0
}

# pids of ROOT and all its descendants (root first)
tree_pids() {
	local root=$1
	ps -e -o pid=,ppid= | awk -v root="$root" '
		{ parent[$1] = $2; pids[NR] = $1 }
		END {
			keep[root] = 1; print root
			changed = 1
			while (changed) {
				changed = 0
				for (i in pids) { p = pids[i]
					if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; print p; changed = 1 } }
			}
		}'
}

# CPU of the whole tree in clock ticks: utime+stime of every live process (all threads) plus
# cutime+cstime (children already reaped); /proc/PID/stat fields 14-17
tree_cpu_ticks() {
	local p total=0 rest
	for p in $(tree_pids "$1"); do
		[[ -r /proc/$p/stat ]] || continue
		rest=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
		# after "pid (comm) ": field 3 is state, so utime is the 12th word here
		set -- $rest
		total=$((total + ${12} + ${13} + ${14} + ${15}))
	done
	echo "$total"
}

# memory of the tree in kB: "max_hwm sum_hwm sum_pss" (VmHWM per process; Pss now)
tree_mem_kb() {
	local p hwm pss max=0 sum=0 psum=0
	for p in $(tree_pids "$1"); do
		hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null)
		pss=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null)
		hwm=${hwm:-0} pss=${pss:-0}
		((hwm > max)) && max=$hwm
		sum=$((sum + hwm))
		psum=$((psum + pss))
	done
	echo "$max $sum $psum"
}

# transport letter -> sipp -t value and target port
sipp_transport() {
	case $1 in
	udp) echo "u1 $SIP_PORT" ;;
	tcp) echo "t1 $SIP_PORT" ;;
	tls) echo "l1 $TLS_PORT" ;;
	*) die "transport $1: udp, tcp or tls" ;;
	esac
}

# does this sipp have TLS? (Debian's sip-tester 3.6.1 is built without OpenSSL)
sipp_has_tls() {
	local out
	out=$(cd "$WORK" && timeout 5 "$SIPP_BIN" -t l1 -sn uac -m 1 -timeout 1 -nostdin 127.0.0.1:1 2>&1)
	! grep -q 'compile SIPp with OpenSSL' <<<"$out"
}

# start_sipp NAME TIMEOUT_S SIPP_ARGS...: one bounded sipp in the background, in $WORK/NAME/
# with its traces; LAST_BG_PID is the pid of `timeout`, which passes a SIGTERM on to sipp
start_sipp() {
	local name=$1 secs=$2
	shift 2
	local dir="$WORK/$name"
	mkdir -p "$dir"
	(
		cd "$dir" || exit 99
		# shellcheck disable=SC2086
		exec timeout -k 2 "$secs" "$SIPP_BIN" "$@" ${SIPP_EXTRA_ARGS:-} -nostdin -trace_err -error_file "$dir/errors.log" \
			-trace_stat -stf "$dir/stat.csv" -fd 1 -trace_screen -screen_file "$dir/screen.log" \
			>"$dir/stdout.log" 2>&1
	) &
	LAST_BG_PID=$!
	track_pid "$LAST_BG_PID"
}

# run_sipp NAME TIMEOUT_S SIPP_ARGS...: the same, waited for (wait lets traps run at once).
# Returns sipp's status (0 = every call succeeded; 1 = some failed; 124 = timed out).
run_sipp() {
	start_sipp "$@"
	local rc=0
	wait "$LAST_BG_PID" || rc=$?
	return $rc
}

# wait_sipp PID: its status
wait_sipp() {
	local rc=0
	wait "$1" || rc=$?
	echo "$rc"
}

# the final cumulative counters of a run: "created successful failed unexpected"
sipp_counts() {
	local csv="$WORK/$1/stat.csv"
	[[ -s $csv ]] || { echo "0 0 0 0"; return; }
	python3 - "$csv" <<'EOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=';'))
head, last = rows[0], rows[-1]
def get(name):
    return int(last[head.index(name)]) if name in head else 0
print(get('TotalCallCreated'), get('SuccessfulCall(C)'), get('FailedCall(C)'),
      get('FailedUnexpectedMessage(C)'))
EOF
}
