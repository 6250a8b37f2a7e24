#!/usr/bin/env bash
# Build and run siphon with its embedded default config (loopback proxy + registrar,
# default routing script, no external services). Extra arguments go to `siphon`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
command -v cargo >/dev/null || { say "cargo not found: install Rust (https://rustup.rs)"; exit 1; }
ensure_apt build-essential pkg-config
pick_python
cd "$SIPHON_ROOT"
cargo build --release --locked -p siphon-bin
exec "$CARGO_TARGET_DIR/release/siphon" "$@"
