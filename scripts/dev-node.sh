#!/usr/bin/env bash
# Builds (release) and runs a single-validator development chain:
#   scripts/dev-node.sh [extra lockstep-node flags]
# JSON-RPC on http://127.0.0.1:9944 (HTTP and WebSocket), a block every
# second, dev accounts (alice, bob, charlie, ...) endowed, data in a temporary
# directory deleted on exit (pass --base-path DIR to keep it). Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/ensure-packages.sh
cargo build --release --locked --bin lockstep-node --bin lockstep
exec "${CARGO_TARGET_DIR:-target}/release/lockstep-node" --dev "$@"
