#!/usr/bin/env bash
# End-to-end SIPp scenarios against a target proxy + registrar on 127.0.0.1, per transport:
#   register   REGISTER -> 401 -> REGISTER with digest -> 200 (alice and bob)
#   call       alice -> proxy -> bob: INVITE/100/180/200, ACK and BYE along the route set
#   cancel     INVITE, 180, CANCEL -> 200 + 487, ACK
#   404        INVITE to an unknown user -> 404, ACK
#   maxfwd0    OPTIONS with Max-Forwards: 0 -> 483
# Each transport gets a freshly started target (an empty registrar). A scenario passes when
# every sipp involved exits 0 (all calls successful: no failed call, no unexpected message)
# and its error trace is empty.
#
#   bench/sipp/e2e.sh [kamailio|siphon] [udp tcp tls]
#   SIPHON_BIN=target/release/siphon bench/sipp/e2e.sh siphon udp tcp
#
# TLS: with a sipp built with OpenSSL the scenarios run as they are (-t l1). Debian's
# sip-tester is built without it, so by default tls runs through a socat shim instead (said
# loudly; E2E_TLS=native|shim|skip forces a mode, E2E_REQUIRE_TLS=1 makes a skip a failure):
#   caller sipp -t t1 -> socat TCP:15061 -> TLS -> proxy 127.0.0.1:5061
#   proxy -> TLS -> socat 127.0.0.1:15070 -> TCP -> callee sipp :5070
# with copies of the scenarios that say TLS where they say [transport] and give the shim's
# ports (UAS_PORT+10000, UAC_PORT+10000) as their own in Contact and Via. Both of the proxy's
# TLS sides (server for the caller, client towards the callee) are then exercised.
set -uo pipefail
# shellcheck source-path=SCRIPTDIR source=../sip/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../sip/lib.sh"

target=${1:-kamailio}
shift || true
transports=("$@")
[[ ${#transports[@]} -gt 0 ]] || transports=(udp tcp tls)

need_tools "$SIPP_BIN" ss openssl python3 timeout
bench_workdir
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

S=$BENCH_SIPP_DIR
SIPP_DIR=$BENCH_SIPP_DIR
FAILS=0
PASSES=0
TLS_OPTS=()

# check NAME: sipp status and error trace of the job in $WORK/NAME
check_job() {
	local name=$1 rc=$2 counts
	counts=$(sipp_counts "$name")
	if [[ $rc -ne 0 ]]; then
		say "  $name: sipp exit $rc (created successful failed unexpected: $counts); see $WORK/$name"
		return 1
	fi
	if [[ -s $WORK/$name/errors.log ]]; then
		say "  $name: errors traced in $WORK/$name/errors.log:"
		head -n 20 "$WORK/$name/errors.log" >&2
		return 1
	fi
	return 0
}

result() {
	local label=$1 ok=$2
	if [[ $ok -eq 0 ]]; then
		printf 'PASS  %-8s %s\n' "$tp" "$label"
		PASSES=$((PASSES + 1))
	else
		printf 'FAIL  %-8s %s\n' "$tp" "$label"
		FAILS=$((FAILS + 1))
	fi
}

register() { # register USER PORT JOBNAME
	local xml=register_auth.xml
	[[ -n $shim ]] && xml=register_auth_$1.xml
	run_sipp "$3" 15 -sf "$S/$xml" -inf "$S/$1.csv" -t "$mode" "${TLS_OPTS[@]}" \
		-i "$LOOPBACK" -p "$2" -m 1 "$LOOPBACK:$port"
	check_job "$3" $?
}

# uas_then_uac UAS_XML UAC_XML LABEL: callee in the background, then the caller, both -m 1
uas_then_uac() {
	local uas=$1 uac=$2 label=$3 uas_pid rc ok=0
	start_sipp "$tp-$label-uas" 20 -sf "$S/$uas" -t "$mode" "${TLS_OPTS[@]}" -i "$LOOPBACK" \
		-p "$UAS_PORT" -m 1
	uas_pid=$LAST_BG_PID
	wait_bound "$proto_l4" "$UAS_PORT" "$uas_pid" 5 || { say "  $label: the UAS did not start"; ok=1; }
	run_sipp "$tp-$label-uac" 15 -sf "$S/$uac" -s bob -t "$mode" "${TLS_OPTS[@]}" -i "$LOOPBACK" \
		-p "$UAC_PORT" -m 1 "$LOOPBACK:$port"
	check_job "$tp-$label-uac" $? || ok=1
	rc=$(wait_sipp "$uas_pid")
	check_job "$tp-$label-uas" "$rc" || ok=1
	return $ok
}

# copies of the scenarios for the socat TLS shim (see the top of this file)
make_shim_scenarios() {
	local dir="$WORK/tls-shim" f base
	mkdir -p "$dir"
	cp "$SIPP_DIR"/*.csv "$dir/"
	for f in "$SIPP_DIR"/*.xml; do
		base=$(basename "$f")
		case $base in
		uas_*) sed -e 's/\[transport\]/TLS/g' -e "s/\[local_port\]/$SHIM_UAS_PORT/g" "$f" >"$dir/$base" ;;
		register_auth.xml)
			sed -e 's/\[transport\]/TLS/g' -e "s/\[local_port\]/$SHIM_UAS_PORT/g" "$f" >"$dir/register_auth_bob.xml"
			sed -e 's/\[transport\]/TLS/g' -e "s/\[local_port\]/$SHIM_UAC_PORT/g" "$f" >"$dir/register_auth_alice.xml"
			;;
		*) sed -e 's/\[transport\]/TLS/g' -e "s/\[local_port\]/$SHIM_UAC_PORT/g" "$f" >"$dir/$base" ;;
		esac
	done
	echo "$dir"
}

start_shims() {
	need_tools socat
	ensure_cert
	local a b
	# caller side: plain TCP in, TLS to the proxy
	timeout -k 2 300 socat "TCP-LISTEN:$SHIM_PROXY_PORT,bind=$LOOPBACK,reuseaddr,fork" \
		"OPENSSL:$LOOPBACK:$TLS_PORT,verify=0" 2>"$WORK/socat-uac.log" &
	a=$!
	track_pid "$a"
	# callee side: TLS in from the proxy, plain TCP to the callee's sipp
	timeout -k 2 300 socat "OPENSSL-LISTEN:$SHIM_UAS_PORT,bind=$LOOPBACK,reuseaddr,fork,cert=$WORK/cert.pem,key=$WORK/key.pem,verify=0" \
		"TCP:$LOOPBACK:$UAS_PORT" 2>"$WORK/socat-uas.log" &
	b=$!
	track_pid "$b"
	SHIM_PIDS="$a $b"
	if ! wait_bound tcp "$SHIM_PROXY_PORT" "$a" 5 || ! wait_bound tcp "$SHIM_UAS_PORT" "$b" 5; then
		die "the socat TLS shim did not start (see $WORK/socat-*.log)"
	fi
}

SHIM_UAS_PORT=$((UAS_PORT + 10000))
SHIM_UAC_PORT=$((UAC_PORT + 10000))
SHIM_PROXY_PORT=$((TLS_PORT + 10000))
SHIM_PIDS=""

for tp in "${transports[@]}"; do
	read -r mode port < <(sipp_transport "$tp")
	proto_l4=tcp
	[[ $tp == udp ]] && proto_l4=udp
	tls=""
	shim=""
	TLS_OPTS=()
	S=$SIPP_DIR
	if [[ $tp == tls ]]; then
		tls_mode=${E2E_TLS:-}
		if [[ -z $tls_mode ]]; then
			if sipp_has_tls; then
				tls_mode=native
			elif command -v socat >/dev/null; then
				tls_mode=shim
			else
				tls_mode=skip
			fi
		fi
		case $tls_mode in
		native)
			ensure_cert
			TLS_OPTS=(-tls_cert "$WORK/cert.pem" -tls_key "$WORK/key.pem")
			;;
		shim)
			say "NOTE  tls: $SIPP_BIN has no TLS (Debian's sip-tester is built without OpenSSL):" \
				"running tls through a socat shim (sipp speaks TCP to socat, socat TLS to the proxy)"
			shim=1
			mode=t1
			port=$SHIM_PROXY_PORT
			S=$(make_shim_scenarios)
			;;
		*)
			say "SKIP  tls: $SIPP_BIN is built without OpenSSL and socat is missing; no TLS scenarios"
			if [[ ${E2E_REQUIRE_TLS:-0} == 1 ]]; then
				FAILS=$((FAILS + 1))
			fi
			continue
			;;
		esac
		tls=1
	fi
	say "== $target over $tp${shim:+ (socat shim)}"
	target_start "$target" $tls
	[[ -n $shim ]] && start_shims

	ok=0
	register alice "$UAC_PORT" "$tp-register-alice" || ok=1
	register bob "$UAS_PORT" "$tp-register-bob" || ok=1
	result "register (401 then 200, alice and bob)" $ok

	uas_then_uac uas_answer.xml uac_invite.xml call
	result "call (INVITE/180/200, ACK and BYE via Record-Route)" $?

	uas_then_uac uas_ring_only.xml uac_cancel.xml cancel
	result "cancel (180, CANCEL -> 200 + 487, ACK)" $?

	run_sipp "$tp-404" 15 -sf "$S/uac_404.xml" -s nobody -t "$mode" "${TLS_OPTS[@]}" \
		-i "$LOOPBACK" -p "$UAC_PORT" -m 1 "$LOOPBACK:$port"
	check_job "$tp-404" $?
	result "unknown user -> 404" $?

	run_sipp "$tp-maxfwd0" 15 -sf "$S/uac_maxfwd0.xml" -s bob -t "$mode" "${TLS_OPTS[@]}" \
		-i "$LOOPBACK" -p "$UAC_PORT" -m 1 "$LOOPBACK:$port"
	check_job "$tp-maxfwd0" $?
	result "Max-Forwards: 0 -> 483" $?

	target_stop
	if [[ -n $SHIM_PIDS ]]; then
		# shellcheck disable=SC2086
		kill $SHIM_PIDS 2>/dev/null
		# shellcheck disable=SC2086
		wait $SHIM_PIDS 2>/dev/null
		SHIM_PIDS=""
	fi
done

say "e2e $target: $PASSES passed, $FAILS failed (logs in $WORK)"
[[ $FAILS -eq 0 ]]
