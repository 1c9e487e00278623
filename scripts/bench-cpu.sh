#!/usr/bin/env bash
# One `lockstep bench` on the running testnet, with the CPU each of its
# processes spent during it (user + system, from /proc/<pid>/stat): what
# an A/B comparison of two builds needs, since on two saturated cores
# every CPU second a process saves is throughput.
#
#   scripts/testnet.sh start        # first
#   scripts/bench-cpu.sh [BENCH ARGS...]
#
# BENCH ARGS default to `--count 30000 --accounts 4000 --clients 8`.
# Prints the bench's settled events/s, the chain's finalized tx/s and their
# ratio, then one line per process. Needs python3 for the JSON.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_DIR=run/testnet
CLI="${CARGO_TARGET_DIR:-target}/release/lockstep"
[ -f "$RUN_DIR/env" ] || { echo "no testnet in $RUN_DIR: scripts/testnet.sh start" >&2; exit 1; }
# shellcheck disable=SC1091
source "$RUN_DIR/env"
[ $# -gt 0 ] || set -- --count 30000 --accounts 4000 --clients 8

ticks() { # name ticks, for every process of the testnet
    while read -r name pid _; do
        [ -r "/proc/$pid/stat" ] && echo "$name $(awk '{print $14 + $15}' "/proc/$pid/stat")"
    done <"$RUN_DIR/pids"
}

before=$(ticks)
report=$("$CLI" --json bench "$@" 2>/dev/null)
after=$(ticks)
python3 -c 'import json, sys
r = json.load(sys.stdin); s = r["settlement"]; c = r["chain"]
print("settled %d events, %.0f/s; chain %.0f tx/s; settled/chain %.2f" % (s["completed"], s["eventsPerSecond"], c["txPerSecond"], s["eventsPerSecond"] / c["txPerSecond"] if c["txPerSecond"] else 0))' <<<"$report"
hz=$(getconf CLK_TCK)
join <(sort <<<"$before") <(sort <<<"$after") |
    awk -v hz="$hz" '{ printf "  %-10s %6.2f CPU s\n", $1, ($3 - $2) / hz }'
