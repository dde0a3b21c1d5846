#!/usr/bin/env bash
# Builds the OTLP decoder fuzz targets and runs each for a bounded time, one after the other
# (libFuzzer, one process); fails if any target finds a crash, panic, hang or memory blow-up.
#
#   fuzz/run.sh [seconds-per-target] [target...]      # default: 60 s, every target
#
# Seeds: tests/fuzz-corpus/<target>/ (read only). New inputs go to a working corpus under the
# target dir ($FUZZ_TARGET_DIR, else $CARGO_TARGET_DIR/fuzz, else target/fuzz), which is kept
# between runs so coverage accumulates; crashing inputs go to fuzz/artifacts/<target>/ and are
# printed as hex. The stable toolchain is used with RUSTC_BOOTSTRAP=1 (cargo fuzz passes -Z
# flags). FUZZ_SANITIZER picks the sanitizer (default none: the decoders contain no unsafe code,
# and without ASan each target runs ~2x more inputs; `address` for a deeper run). FUZZ_RUNS=n
# also stops each target after n inputs.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECS="${1:-60}"
shift || true
ALL_TARGETS=(trace_proto metrics_proto traces_json metrics_json)
if (($# > 0)); then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

export RUSTC_BOOTSTRAP=1
TARGET_DIR="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/fuzz}"
SANITIZER="${FUZZ_SANITIZER:-none}"
BUILD=(--sanitizer "$SANITIZER" --codegen-units 16 --target-dir "$TARGET_DIR")

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> cargo install cargo-fuzz"
    cargo install cargo-fuzz --locked --version 0.13.2
fi

cd "$REPO_ROOT/fuzz"
echo "==> cargo fuzz build (sanitizer: $SANITIZER, target dir: $TARGET_DIR)"
if ((${#TARGETS[@]} == 1)); then
    cargo fuzz build "${BUILD[@]}" "${TARGETS[0]}"
else
    cargo fuzz build "${BUILD[@]}"
fi

failed=()
summary=()
for t in "${TARGETS[@]}"; do
    seeds="$REPO_ROOT/tests/fuzz-corpus/$t"
    work="$TARGET_DIR/corpus/$t"
    mkdir -p "$work" "$REPO_ROOT/fuzz/artifacts/$t"
    extra=()
    case "$t" in *json) extra+=("-dict=$REPO_ROOT/fuzz/dicts/otlp_json.dict") ;; esac
    # FUZZ_RUNS=n stops a target after n inputs (whichever comes first with the time limit).
    [[ -n "${FUZZ_RUNS:-}" ]] && extra+=("-runs=$FUZZ_RUNS")
    log="$TARGET_DIR/$t.log"
    echo "==> $t: ${SECS}s (seeds: tests/fuzz-corpus/$t, log: $log)"
    set +e
    cargo fuzz run "${BUILD[@]}" "$t" "$work" "$seeds" -- \
        -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -print_final_stats=1 "${extra[@]}" >"$log" 2>&1
    rc=$?
    set -e
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)"
    corpus="$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1)"
    summary+=("$(printf '%-14s rc=%-3s execs=%-12s %s' "$t" "$rc" "${execs:-?}" "$corpus")")
    if ((rc != 0)); then
        failed+=("$t")
        echo "!! $t failed (exit $rc); the end of its log:"
        tail -n 60 "$log"
        for a in $(grep -Eo "fuzz/artifacts/$t/[a-z]+-[0-9a-f]+" "$log" | sort -u); do
            echo "!! input $a (hex):"
            od -An -tx1 -v "$REPO_ROOT/$a" | head -n 64
        done
    fi
done

echo "==> fuzz summary (${SECS}s per target)"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]} > 0)); then
    echo "fuzzing found failures in: ${failed[*]}" >&2
    exit 1
fi
