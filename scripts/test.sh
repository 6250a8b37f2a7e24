#!/usr/bin/env bash
# The whole test suite, set-up included, on a fresh Debian/Ubuntu machine:
# formatting, clippy (-D warnings), every Rust test (unit, RFC 4475/5118 conformance,
# loopback reactors, end-to-end with SIPp), the fuzz targets' build, pytest against the
# real embedded engine on Python 3.13 (own GIL per core) and 3.11 (degraded mode), and the
# same again with the SDK installed from its wheel in fresh virtualenvs (plus mypy on the stubs).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$SIPHON_ROOT"

# A clone alone must build and pass: nothing but documentation may reach outside the
# repository into a sibling shared/ directory (copy what a test needs into the repo).
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    if outside=$(git grep -n -E '\.\./shared' -- ':(exclude)*.md'); then
        say "tracked files reach outside the repository into the sibling shared/ directory;"
        say "copy what they need into the repository (only *.md may mention it):"
        printf '%s\n' "$outside" >&2
        exit 1
    fi
fi

ensure_apt build-essential pkg-config sip-tester redis-server socat openssl curl
# Independent SMPP implementations for the interop test; pytest for the scripting suite.
python3 -m pip install -q --disable-pip-version-check pytest smpplib smpp34 2>&1 | grep -v "^$" >&2 || true
pick_python

step() { say "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The extension features are declared and must always build.
cargo clippy -p siphon-bin --all-targets --locked --features smpp,http,sctp -- -D warnings

step "cargo doc -D warnings"
RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --locked

step "release build of siphon (the end-to-end SIPp tests run against it)"
cargo build --release --locked -p siphon-bin
export SIPHON_BIN="$CARGO_TARGET_DIR/release/siphon"

step "cargo test"
cargo test --workspace --locked

step "cargo test: SMPP extension (siphon-bin --features smpp, its own debug binary)"
env -u SIPHON_BIN cargo test -p siphon-bin --locked --features smpp --lib --test smpp_inbound --test smpp_outbound --test smpp_store

step "cargo test: HTTP extension (siphon-bin --features http, its own debug binary; curl)"
env -u SIPHON_BIN cargo test -p siphon-bin --locked --features http --lib --test http_ext
step "cargo test: deploy/examples on the binary with SIPp, smpplib, curl (--features smpp,http)"; env -u SIPHON_BIN cargo test -p siphon-bin --locked --features smpp,http --test sdk_examples

step "fuzz targets build"
for fz in edge/*/fuzz; do
    [ -f "$fz/Cargo.toml" ] || continue
    RUSTFLAGS="--cfg fuzzing" CARGO_TARGET_DIR="$CARGO_TARGET_DIR/fuzz" \
        cargo build --locked --manifest-path "$fz/Cargo.toml" --bins
done

if [ -x scripting/run-tests.sh ]; then
    step "pytest: scripting on $PYO3_PYTHON"
    scripting/run-tests.sh "$PYO3_PYTHON"
    step "pytest: upstream's harness API (tests/sdk_compat) and the examples' SDK tests on $PYO3_PYTHON"
    scripting/run-tests.sh "$PYO3_PYTHON" ../tests/sdk_compat ../deploy/examples
    py311=$(command -v python3.11 || command -v python3)
    step "pytest: scripting on $py311 (degraded single-interpreter mode)"
    scripting/run-tests.sh "$py311"
    step "pytest: tests/sdk_compat and the examples' SDK tests on $py311"
    scripting/run-tests.sh "$py311" ../tests/sdk_compat ../deploy/examples
    # The SDK as users get it: a wheel per Python, installed into a fresh virtualenv with
    # nothing set; pytest (stubs/runtime sync, mypy over the stubs) runs there.
    step "SDK wheel on $PYO3_PYTHON: build, fresh venv, pytest + mypy with the installed package"
    scripting/sdk/check-wheel.sh "$PYO3_PYTHON"
    step "SDK wheel on $py311: build, fresh venv, pytest + mypy with the installed package"
    scripting/sdk/check-wheel.sh "$py311"
fi
say "all checks passed"
