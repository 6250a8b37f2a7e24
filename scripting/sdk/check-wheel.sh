#!/usr/bin/env bash
# Build the SDK wheel for one Python, install it into a fresh virtualenv with nothing else set
# (no $SIPHON_DRIVER, no PYTHONPATH, no LD_LIBRARY_PATH), and run there: the scripting pytest
# suite against the installed package and engine (SIPHON_SDK_INSTALLED=1), which includes the
# stub/runtime sync test and the mypy checks (tests/test_sdk_mypy.py), and then the examples'
# tests when deploy/examples has them, and tests/sdk_compat (upstream's harness API).
#   scripting/sdk/check-wheel.sh <python-binary> [pytest args...]
# The wheel is built with maturin (`--profile dev`) into ${CARGO_TARGET_DIR:-target}/py<ver>,
# the target dir scripting/run-tests.sh builds the same driver in, so the second build of a
# CI run only relinks. maturin itself lives in a virtualenv under the target dir (PyPI).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
py="${1:?usage: scripting/sdk/check-wheel.sh <python-binary> [pytest args]}"
shift
py="$(command -v "$py")"
ver="$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
base="${CARGO_TARGET_DIR:-$root/target}"
target="$base/py$ver"
pipq=(-q --disable-pip-version-check)

tools="$base/sdk-tools"
if ! "$tools/bin/maturin" --version >/dev/null 2>&1; then
    rm -rf "$tools"
    "$py" -m venv "$tools"
    "$tools/bin/pip" install "${pipq[@]}" "maturin>=1.5,<2" >&2
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/siphon-sdk-wheel.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "sdk wheel: Python $ver ($py), target dir $target" >&2
(cd "$here" && CARGO_TARGET_DIR="$target" "$tools/bin/maturin" build --profile dev \
    -i "$py" --out "$work/wheels" >&2)
wheel=$(ls "$work"/wheels/siphon_sdk-*-cp${ver/./}-*.whl)

"$py" -m venv "$work/venv"
"$work/venv/bin/pip" install "${pipq[@]}" "$wheel" pytest mypy >&2
# What the user sees first: the engine and the Python it embeds.
env -u SIPHON_DRIVER -u LD_LIBRARY_PATH -u PYTHONPATH "$work/venv/bin/python" -m siphon_sdk --version

cd "$root/scripting"
env -u SIPHON_DRIVER -u LD_LIBRARY_PATH -u PYTHONPATH SIPHON_SDK_INSTALLED=1 \
    "$work/venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
if compgen -G "$root/deploy/examples/test_*.py" >/dev/null \
    || compgen -G "$root/deploy/examples/*/test_*.py" >/dev/null; then
    cd "$root/deploy/examples"
    env -u SIPHON_DRIVER -u LD_LIBRARY_PATH -u PYTHONPATH SIPHON_SDK_INSTALLED=1 \
        "$work/venv/bin/python" -m pytest -q -p no:cacheprovider
fi
# Upstream's harness API, as a suite written for upstream's SDK runs against the installed one.
cd "$root/tests/sdk_compat"
env -u SIPHON_DRIVER -u LD_LIBRARY_PATH -u PYTHONPATH SIPHON_SDK_INSTALLED=1 \
    "$work/venv/bin/python" -m pytest -q -p no:cacheprovider
