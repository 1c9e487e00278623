#!/usr/bin/env bash
# The soak benchmark: `lockstep bench` again and again on one running
# testnet until at least TARGET events have settled, to show whether the
# system stays as fast after half a million events as after the first ones.
# Then the disk each process uses per settled event, and each process's CPU
# share while idle (blocks still coming, no transfers).
#
#   scripts/testnet.sh start        # first
#   scripts/soak.sh [TARGET] [COUNT] [IDLE_SECONDS]
#
# TARGET events in total (default 500000), COUNT per run (default 30000,
# the issue's `--accounts 4000 --clients 8`), idle sampled for
# IDLE_SECONDS (default 60). One line per run: settled events/s, the
# chain's finalized tx/s, the registration → PendingAccount and →
# Completed p99, and the event system's node calls per settled event (its
# metrics endpoint); a summary at the end (last run / first run). Needs
# python3 for the JSON.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=run/testnet
RELEASE="${CARGO_TARGET_DIR:-target}/release"
CLI="$RELEASE/lockstep"
TARGET=${1:-500000}
COUNT=${2:-30000}
IDLE=${3:-60}

[ -f "$RUN_DIR/env" ] || { echo "no testnet in $RUN_DIR: scripts/testnet.sh start" >&2; exit 1; }
# shellcheck disable=SC1091
source "$RUN_DIR/env"

field() { # field PATH < json: one value of the bench's JSON report
    python3 -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v=v[k]
print(v)' "$1"
}

METRICS_PORT=$(awk '$1 == "metrics-events" {print $2}' "$RUN_DIR/ports")
node_calls() { # the event system's lockstep_offchain_node_calls_total
    python3 -c 'import sys, urllib.request
for line in urllib.request.urlopen(sys.argv[1], timeout=10).read().decode().splitlines():
    if line.startswith("lockstep_offchain_node_calls_total "): print(int(float(line.split()[1])))' \
        "http://127.0.0.1:$METRICS_PORT/metrics"
}

settled=0
run=0
first=""
last=""
echo "run settled_total events/s chain_tx/s pending_p99_ms completed_p99_ms node_calls/event"
while [ "$settled" -lt "$TARGET" ]; do
    run=$((run + 1))
    calls_before=$(node_calls)
    report=$("$CLI" --json bench --count "$COUNT" --accounts 4000 --clients 8 2>/dev/null)
    completed=$(field settlement.completed <<<"$report")
    eps=$(field settlement.eventsPerSecond <<<"$report")
    tps=$(field chain.txPerSecond <<<"$report")
    pending_p99=$(field settlement.pendingAccountLatencyMs.p99 <<<"$report")
    completed_p99=$(field settlement.latencyMs.p99 <<<"$report")
    calls=$(($(node_calls) - calls_before))
    settled=$((settled + completed))
    [ -n "$first" ] || first=$eps
    last=$eps
    printf '%d %d %.0f %.0f %s %s %s\n' "$run" "$settled" "$eps" "$tps" "$pending_p99" "$completed_p99" \
        "$(awk -v c="$calls" -v n="$completed" 'BEGIN { printf "%.4f", (n > 0 ? c / n : 0) }')"
done
awk -v f="$first" -v l="$last" 'BEGIN { printf "last run / first run: %.2f\n", l / f }'

echo
echo "disk per settled event ($settled settled):"
for dir in "$RUN_DIR"/node-* "$RUN_DIR/events"; do
    [ -d "$dir" ] || continue
    bytes=$(du -sb "$dir" | cut -f1)
    awk -v n="$(basename "$dir")" -v b="$bytes" -v s="$settled" \
        'BEGIN { printf "  %-10s %8.1f MB  %6.0f bytes/event\n", n, b / 1e6, b / s }'
done
bytes=$(cat "$RUN_DIR"/ledger.sqlite* 2>/dev/null | wc -c)
awk -v b="$bytes" -v s="$settled" \
    'BEGIN { printf "  %-10s %8.1f MB  %6.0f bytes/event\n", "ledger", b / 1e6, b / s }'

echo
echo "idle CPU over ${IDLE}s (blocks still coming, no transfers):"
hz=$(getconf CLK_TCK)
declare -A before
while read -r name pid _; do
    before[$name]=$(awk '{print $14 + $15}' "/proc/$pid/stat")
done <"$RUN_DIR/pids"
sleep "$IDLE"
while read -r name pid _; do
    [ -r "/proc/$pid/stat" ] || continue
    after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    awk -v n="$name" -v a="$after" -v b="${before[$name]}" -v t="$IDLE" -v hz="$hz" \
        'BEGIN { printf "  %-10s %5.2f%% of a core\n", n, (a - b) * 100 / (t * hz) }'
done <"$RUN_DIR/pids"
