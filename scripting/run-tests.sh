#!/usr/bin/env bash
# Build the scripting test driver against one Python and run the pytest suite with it.
#   scripting/run-tests.sh <python-binary> [pytest args...]
# The driver is built with PYO3_PYTHON=<python-binary> into ${CARGO_TARGET_DIR:-target}/py<ver>
# (one target dir per Python version, so switching versions does not rebuild everything).
# Python 3.12+ runs one own-GIL subinterpreter per core; 3.11 runs the degraded shared mode.
# The driver is built with the `smpp` and `http` features so that the SDK's SmppTestHarness and
# HttpTestHarness can drive it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
py="${1:?usage: scripting/run-tests.sh <python-binary> [pytest args]}"
shift
py="$(command -v "$py")"
ver="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
base="${CARGO_TARGET_DIR:-$root/target}"
target="$base/py$ver"
echo "scripting: Python $ver ($py), target dir $target" >&2
if ! "$py" -c 'import pytest' 2>/dev/null; then
    "$py" -m pip install -q --disable-pip-version-check pytest >&2
fi
(cd "$root" && PYO3_PYTHON="$py" CARGO_TARGET_DIR="$target" cargo build -p siphon-script --features smpp,http --bin siphon-script-driver ${CARGO_LOCKED:+--locked})
export SIPHON_DRIVER="$target/debug/siphon-script-driver"
cd "$here"
exec "$py" -m pytest -q -p no:cacheprovider "$@"
