#!/usr/bin/env bash
# Coverage-guided fuzzing of every decoder of untrusted bytes (fuzz/, with
# libFuzzer through cargo fuzz), each target for a set time.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  default 600 (ten minutes)
#   TARGET              default: all of them (cargo fuzz list)
# Environment:
#   FUZZ_JOBS           targets fuzzed at once (default 1; one core each)
#
# Needs only the stable toolchain: cargo fuzz passes the sanitizer flags
# as `-Z` options, which stable rustc accepts under RUSTC_BOOTSTRAP=1 (set
# here on the cargo fuzz commands only: in the environment of the other
# builds it would change their fingerprints and rebuild the workspace). The sanitizer is off (`-s none`): the
# fuzzed code is safe Rust, so libFuzzer's own checks (panics, aborts,
# out-of-memory, time-outs) are what can fail, and runs are several times
# faster.
#
# Seeds come from `cargo run --example fuzz_corpus` (fuzz/corpus/, committed);
# what the fuzzer finds goes to fuzz/work/ (not committed), crashes to
# fuzz/artifacts/TARGET/. A crash makes the script fail; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none TARGET fuzz/artifacts/TARGET/crash-…
# and turn it into a regression test next to the decoder. The figures of
# each run (executions, coverage, corpus) are printed at the end and kept
# in fuzz/work/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
shift || true
jobs=${FUZZ_JOBS:-1}

if ! command -v cargo-fuzz >/dev/null; then
    echo "==> installing cargo-fuzz (once)"
    cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi

echo "==> seed corpus"
cargo run --release --locked --example fuzz_corpus -- fuzz/corpus

echo "==> building ${targets[*]}"
for target in "${targets[@]}"; do
    (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build -s none "$target")
done

mkdir -p fuzz/work
summary=fuzz/work/summary.txt
: >"$summary"

run() {
    local target=$1 log=fuzz/work/$1.log
    mkdir -p "fuzz/work/$target" "fuzz/artifacts/$target"
    echo "==> $target for ${seconds}s (log: $log)"
    local status=0
    (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s none "$target" "work/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="artifacts/$target/") >"$log" 2>&1 || status=$?
    local done_line execs
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 | sed -E 's/^#[0-9]+[[:space:]]+DONE[[:space:]]+//; s/[[:space:]]+lim:.*//' || true)
    execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
    local crashes
    crashes=$(find "fuzz/artifacts/$target" -type f | wc -l)
    printf '%-10s %6ss  execs %-10s crashes %s  %s  exit %s\n' \
        "$target" "$seconds" "${execs:-?}" "$crashes" "${done_line:-no DONE line}" "$status" >>"$summary"
    return "$status"
}

failed=0
pids=()
for target in "${targets[@]}"; do
    run "$target" &
    pids+=($!)
    if [ ${#pids[@]} -ge "$jobs" ]; then
        wait "${pids[0]}" || failed=1
        pids=("${pids[@]:1}")
    fi
done
for pid in "${pids[@]}"; do
    wait "$pid" || failed=1
done

echo "==> figures"
cat "$summary"
if [ "$failed" -ne 0 ] || [ -n "$(find fuzz/artifacts -type f 2>/dev/null)" ]; then
    echo "fuzzing found crashes: see fuzz/artifacts/" >&2
    exit 1
fi
