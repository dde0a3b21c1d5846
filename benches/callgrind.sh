#!/usr/bin/env bash
# Instructions per span of the OTLP trace hot path, counted by callgrind: a figure that repeats
# exactly on a busy machine, unlike spans/s (issue 9; tracked in BENCHMARKS.md).
#
#   benches/callgrind.sh [N1 N2]        # default 1 3 passes over the payloads
#   OTLP_LOAD_BIN=/path/to/otlp_load benches/callgrind.sh   # count a given build (no cargo),
#                                       # e.g. an older commit's, to compare two in one run
#   CALLGRIND_OUT=DIR                   # where the callgrind files go (default: $CARGO_TARGET_DIR/callgrind)
#
# Runs the profile phase of benches/otlp_load.rs (`--phase profile`: 256 requests of 500 spans,
# the otlpbench shape, a fixed clock) under `valgrind --tool=callgrind`, collecting only inside
# `profile_loop` (series creation and payload generation happen before it), for decode only and
# for decode + RED aggregation, each with N1 and N2 passes; instructions per span =
# (Ir(N2) - Ir(N1)) / (spans(N2) - spans(N1)), which also cancels what a pass costs once.
# Installs valgrind with apt-get when it is missing (CI machines reach Debian's packages).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
N1="${1:-1}"
N2="${2:-3}"
((N2 > N1)) || { echo "N2 must be larger than N1" >&2; exit 2; }
# Any fixed clock: end times then fall in the same windows every run.
NOW_NS=1700000005000000000

if ! command -v valgrind >/dev/null; then
    echo "==> apt-get install valgrind"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends valgrind
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
if [[ -n "${OTLP_LOAD_BIN:-}" ]]; then
    bin="$OTLP_LOAD_BIN"
else
    echo "==> cargo bench --bench otlp_load --no-run"
    bin="$(cargo bench --bench otlp_load --no-run --message-format=json 2>/dev/null |
        grep -o '"executable":"[^"]*otlp_load[^"]*"' | tail -1 | cut -d'"' -f4)"
fi
[[ -x "$bin" ]] || { echo "otlp_load bench binary not found: ${bin:-none}" >&2; exit 1; }
echo "binary: $bin"
out_dir="${CALLGRIND_OUT:-$CARGO_TARGET_DIR/callgrind}"
mkdir -p "$out_dir"

# run <label> <iters> [extra args]: prints "<instructions> <spans>".
run() {
    local label="$1" iters="$2"
    shift 2
    local out="$out_dir/$label-$iters.out" log="$out_dir/$label-$iters.log"
    valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect='*profile_loop*' \
        "$bin" --phase profile --iters "$iters" --now-ns "$NOW_NS" "$@" >"$log" 2>&1 ||
        { cat "$log" >&2; return 1; }
    local ir spans
    ir="$(grep -E '^(summary|totals):' "$out" | head -1 | awk '{print $2}')"
    spans="$(grep -o 'RESULT profile spans=[0-9]*' "$log" | grep -o '[0-9]*$')"
    echo "$ir $spans"
}

declare -A per_span
for mode in decode decode_aggregate; do
    extra=()
    [[ $mode == decode ]] && extra=(--decode-only)
    echo "==> callgrind: $mode, $N1 and $N2 passes"
    read -r ir1 s1 < <(run "$mode" "$N1" "${extra[@]}")
    read -r ir2 s2 < <(run "$mode" "$N2" "${extra[@]}")
    per_span[$mode]="$(awk -v a="$ir1" -v b="$ir2" -v x="$s1" -v y="$s2" 'BEGIN { printf "%.1f", (b - a) / (y - x) }')"
    printf '   %d passes: %d instructions, %d spans\n   %d passes: %d instructions, %d spans\n' \
        "$N1" "$ir1" "$s1" "$N2" "$ir2" "$s2"
    echo "   => ${per_span[$mode]} instructions per span"
done
aggregate="$(awk -v a="${per_span[decode]}" -v b="${per_span[decode_aggregate]}" 'BEGIN { printf "%.1f", b - a }')"

echo "==> decode + aggregate, $N2 passes: inclusive instructions of the two halves"
callgrind_annotate --inclusive=yes "$out_dir/decode_aggregate-$N2.out" 2>/dev/null |
    grep -E '(decode::decode_traces_proto|RedOperator::process_spans)$' | head -n 2 || true
echo "   (full profile: callgrind_annotate --inclusive=yes $out_dir/decode_aggregate-$N2.out)"

echo "RESULT callgrind decode=${per_span[decode]} decode_aggregate=${per_span[decode_aggregate]} aggregate=$aggregate valgrind=\"$(valgrind --version)\""
