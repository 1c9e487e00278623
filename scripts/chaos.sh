#!/usr/bin/env bash
# A chaos soak: the seeded schedules of tests/it/seeded.rs, one test
# process per seed, so that one failing seed neither hides nor stops the
# others. Each seed draws its faults (kill -9, SIGTERM, SIGSTOP, a
# validator partitioned away, two against two, the event system cut off
# from nodes) during a settlement load, then checks every invariant.
#
# Usage: scripts/chaos.sh SEEDS
#   SEEDS   7 | 1,5,9 | 1..50 (both ends included) | a mix: 1..3,9
#
# Results go to target/chaos/: one log per seed (seed-N.log) and
# results.txt (seed, pass or FAIL, seconds, the schedule drawn). A failing
# seed is reproduced with
#   LOCKSTEP_CHAOS_SEEDS=N cargo test --release --workspace --locked -- seeded::
# Exits 1 if any seed failed.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -ne 1 ]; then
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi

seeds=()
IFS=',' read -ra parts <<<"$1"
for part in "${parts[@]}"; do
    part=${part// /}
    [ -z "$part" ] && continue
    if [[ $part =~ ^([0-9]+)\.\.([0-9]+)$ ]]; then
        low=${BASH_REMATCH[1]} high=${BASH_REMATCH[2]}
        if [ "$low" -gt "$high" ]; then
            echo "chaos.sh: $part is an empty range" >&2
            exit 2
        fi
        for ((s = low; s <= high; s++)); do seeds+=("$s"); done
    elif [[ $part =~ ^[0-9]+$ ]]; then
        seeds+=("$part")
    else
        echo "chaos.sh: $part is not a seed or a range of seeds" >&2
        exit 2
    fi
done
if [ ${#seeds[@]} -eq 0 ]; then
    echo "chaos.sh: no seed given" >&2
    exit 2
fi

target_dir=${CARGO_TARGET_DIR:-target}
out=$target_dir/chaos
mkdir -p "$out"
results=$out/results.txt

# One build, then the test executable itself per seed: `cargo test` for
# each would relink the tests every time the scenarios' own build of the
# binaries (with the test features, run from inside the test) has touched
# shared dependencies. The scenarios build the binaries at the first seed.
echo "==> building the tests"
exe=$(cargo test --release --workspace --locked --no-run --message-format=json \
    | python3 -c '
import json, os, sys
main = os.path.join(os.getcwd(), "tests", "it", "main.rs")
for line in sys.stdin:
    m = json.loads(line)
    t = m.get("target") or {}
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and t.get("src_path") == main:
        print(m["executable"])
')
if [ -z "$exe" ] || [ ! -x "$exe" ]; then
    echo "chaos.sh: no test executable for tests/it" >&2
    exit 1
fi
# What cargo would set for it: where the harness finds cargo and the sources.
export CARGO=${CARGO:-$(command -v cargo)}
export CARGO_MANIFEST_DIR=$PWD/tests

echo "==> ${#seeds[@]} seeds; results in $results"
printf '# %s  scripts/chaos.sh %s\n' "$(date -u +%FT%TZ)" "$1" >>"$results"
failed=0
for seed in "${seeds[@]}"; do
    log=$out/seed-$seed.log
    started=$SECONDS
    status=pass
    LOCKSTEP_CHAOS_SEEDS=$seed "$exe" \
        seeded::chaos_schedules_from_seeds_keep_every_invariant --exact --nocapture \
        >"$log" 2>&1 || status=FAIL
    [ "$status" = pass ] || failed=$((failed + 1))
    schedule=$(grep -m1 '^chaos seed ' "$log" | sed 's/^chaos //' || true)
    line=$(printf '%-6s %-4s %4ss  %s' "$seed" "$status" "$((SECONDS - started))" "${schedule:-no schedule printed}")
    echo "$line"
    echo "$line" >>"$results"
done

echo "==> ${#seeds[@]} seeds, $failed failed"
[ "$failed" -eq 0 ]
