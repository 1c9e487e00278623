#!/usr/bin/env bash
# The method, on the running testnet (scripts/testnet.sh start), step by step:
#
#   1. alice transfers 100 units of the dev asset to bob, and bob pays alice
#      25.00 USD: Registered -> PendingAccount -> Completed;
#   2. charlie transfers more than he holds: the transfer fails on chain, the
#      event is Cancelled and nothing is paid;
#   3. dave's transfer is registered but never submitted: once the chain is
#      past its expiry the event is Cancelled and nothing is paid;
#
# then each event's history, the ledger balances, and the audit.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=run/testnet
if [ ! -f "$RUN_DIR/env" ]; then
    echo "no testnet found: run scripts/testnet.sh start first" >&2
    exit 1
fi
# shellcheck source=/dev/null
source "$RUN_DIR/env"
if [ -z "${LOCKSTEP_TOKEN:-}" ]; then
    # A testnet started before the event system took credentials.
    echo "$RUN_DIR/env holds no LOCKSTEP_TOKEN: restart the testnet (scripts/testnet.sh stop; scripts/testnet.sh start)" >&2
    exit 1
fi
RELEASE="${CARGO_TARGET_DIR:-target}/release"
CLI="$RELEASE/lockstep"
BRIDGE="$RELEASE/lockstep-bridge"
for binary in "$CLI" "$BRIDGE"; do
    [ -x "$binary" ] || {
        echo "$binary is missing: run scripts/testnet.sh start first" >&2
        exit 1
    }
done
if ! "$CLI" chain head >/dev/null 2>&1; then
    echo "the testnet does not answer at $LOCKSTEP_RPC: scripts/testnet.sh status" >&2
    exit 1
fi

# Event ids are the client's idempotency keys: unique per run of the demo.
run=$(date +%s)
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "ledger before"
show "$BRIDGE" ledger --ledger "$LOCKSTEP_LEDGER" balance

step "1. alice transfers 100 units to bob; bob pays alice 25.00 USD"
show "$CLI" transfer --from alice --to bob --amount 100 --pay bob:alice:2500:USD \
    --event-id "demo-$run-paid" --wait

step "2. charlie transfers more than he holds: fails on chain, Cancelled, nothing paid"
# Exit code 3: the transfer failed on chain (expected here).
show "$CLI" transfer --from charlie --to dave --amount 1000000000000000000 \
    --pay dave:charlie:9900:USD --event-id "demo-$run-failed" --wait || [ $? -eq 3 ]

step "3. dave registers a transfer and never submits it: Cancelled after expiry"
show "$CLI" transfer --from dave --to eve --amount 5 --pay eve:dave:1000:USD \
    --event-id "demo-$run-unsent" --valid-for 5 --register-only --wait || [ $? -eq 3 ]

for outcome in paid failed unsent; do
    step "history of demo-$run-$outcome"
    show "$CLI" event history "demo-$run-$outcome"
done

step "ledger after: alice +25.00, bob -25.00; nothing moved for charlie, dave or eve"
show "$BRIDGE" ledger --ledger "$LOCKSTEP_LEDGER" balance

step "audit: chain (every node), event store and ledger against the invariants"
show "$CLI" audit --chain-spec "$RUN_DIR/chain-spec.json"
