# shellcheck shell=bash
# Shared set-up for scripts/run.sh and scripts/test.sh: system packages, the Python that
# siphon embeds, and a build cache outside the clone. Sourced, not executed.

SIPHON_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SIPHON_ROOT
# Build output outside the clone so fresh clones (CI) reuse it.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/cache/siphon/target}
mkdir -p "$CARGO_TARGET_DIR"

say() { printf '==> %s\n' "$*" >&2; }

# apt packages the tests need: real peers (SIPp, Kamailio for the benchmark, Redis for the
# cache backend) and the C toolchain bits the -sys crates use.
ensure_apt() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing Debian packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Python for the embedded interpreter: 3.13 (own GIL per core) preferred, then 3.12; a distro
# build or a pyenv build, as long as it runs and ships libpython. Prints the path.
find_python() {
    local want cand root
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    for want in 3.13 3.12; do
        for cand in "python$want" /usr/bin/python$want /usr/local/bin/python$want \
            "$root"/versions/"$want"*/bin/python"$want"; do
            [ -n "$cand" ] || continue
            command -v "$cand" >/dev/null 2>&1 || [ -x "$cand" ] || continue
            if "$cand" -c 'import sys, sysconfig; sys.exit(0 if sysconfig.get_config_var("LDLIBRARY") else 1)' 2>/dev/null; then
                command -v "$cand" 2>/dev/null || echo "$cand"
                return 0
            fi
        done
    done
    return 1
}

pick_python() {
    local py
    if [ -n "${PYO3_PYTHON:-}" ]; then
        py=$PYO3_PYTHON
    elif py=$(find_python); then
        :
    else
        say "no runnable Python 3.13 or 3.12 found; falling back to python3 ($(python3 -V 2>&1)):"
        say "on Python < 3.12 every core shares ONE interpreter (degraded mode)"
        py=$(command -v python3)
    fi
    export PYO3_PYTHON=$py
    say "embedding Python: $PYO3_PYTHON ($("$PYO3_PYTHON" -V 2>&1))"
}
