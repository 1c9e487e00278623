#!/usr/bin/env bash
# The dependency rule: a client of a service links that service's interface
# (lockstep-api), never its implementation. The account bridge and the CLI
# must not link the storage engine or the networking stack of the node and
# the event system (dev-dependencies for in-process test services aside).
#
# Usage: scripts/check-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."

status=0
for package in lockstep-bridge lockstep-cli lockstep-api lockstep-service; do
    tree=$(cargo tree --locked -p "$package" -e normal --prefix none)
    for forbidden in librocksdb-sys libp2p lockstep-node lockstep-offchain; do
        if grep -q "^$forbidden v" <<<"$tree"; then
            echo "check-deps: $package links $forbidden (cargo tree -p $package -e normal -i $forbidden shows why)" >&2
            status=1
        fi
    done
done
if [ "$status" -eq 0 ]; then
    echo "check-deps: the bridge, the CLI, the API and the service crates link neither RocksDB nor libp2p"
fi
exit "$status"
