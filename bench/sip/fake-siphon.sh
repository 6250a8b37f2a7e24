#!/usr/bin/env bash
# Test double for the harness's siphon path: Kamailio behind siphon's CLI (`check`, `--version`,
# `-c FILE`) and the SIPHON_LISTEN_UDP/TCP environment that lib.sh passes. Lets a change to
# run.sh or e2e.sh be checked end to end before siphon runs:
#   SIPHON_BIN=bench/sip/fake-siphon.sh bench/sip/run.sh --rate 100 --secs 3 kamailio siphon
#   SIPHON_BIN=bench/sip/fake-siphon.sh bench/sipp/e2e.sh siphon udp tcp
# (the CPU ratio must come out near 1.0). No TLS listener.
case "${1:-}" in check) exit 0 ;; --version) echo "fake-siphon (kamailio)"; exit 0 ;; esac
exec "${KAMAILIO_BIN:-kamailio}" -f "$(dirname "$0")/kamailio.cfg" -L "${KAMAILIO_MODULES:-/usr/lib/x86_64-linux-gnu/kamailio/modules}" -DD -E -m 64 -M 8 -l "udp:$SIPHON_LISTEN_UDP" -l "tcp:$SIPHON_LISTEN_TCP"
