#!/usr/bin/env bash
# Runs exactly what CI runs: formatting, lints, and the whole test suite,
# slow multi-process tests included.
#
# Usage: scripts/test.sh
#
# On a fresh Debian machine it first installs the system packages the build
# needs (libclang-dev for RocksDB's bindings, a C++ compiler) and the
# tests need (nats-server, for the message bus on NATS JetStream;
# postgresql, for the ledger on PostgreSQL), only those that are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

LOCKSTEP_NEED_NATS=1
LOCKSTEP_NEED_POSTGRES=1
source scripts/lib/ensure-packages.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> dependency rule"
scripts/check-deps.sh

# Everything builds in the release profile, which scripts/testnet.sh uses
# too: one build of the C and C++ dependencies (RocksDB, SQLite) serves
# both commands, and the tests run optimised code.
echo "==> cargo clippy"
cargo clippy --release --workspace --all-targets --locked -- -D warnings

echo "==> cargo test"
cargo test --release --workspace --locked

# The whole-system end-to-end tests once more with the ledger on a
# PostgreSQL server of their own (tests/it/system.rs): the same assertions
# must hold on either ledger.
echo "==> cargo test, end to end on a PostgreSQL ledger"
LOCKSTEP_TEST_LEDGER=postgres cargo test --release --workspace --locked -- end_to_end::
