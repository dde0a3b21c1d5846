#!/usr/bin/env bash
# Runs every benchmark BENCHMARKS.md reports, on this machine, and keeps the raw outputs.
#
#   benches/run_e2e.sh [--reps N] [--secs S] [--no-criterion] [--no-state] [--no-rotel]
#
# Steps (each writes <step>.txt into $OUT, default target/bench-results/<UTC time>/):
#   1. cargo build --release --bin redwatch, cargo bench --no-run; the three binaries are copied
#      to $OUT/bin so that edits in the checkout cannot change them mid-run
#   2. criterion: decode_aggregate --bench                    (pinned to core 0)
#   3. throughput, uncompressed: otlp_load --secs S           ×N  (= cargo bench --bench otlp_load -- --secs S)
#   4. throughput, gzip:         otlp_load --secs S --gzip    ×N
#   5. state per series:         otlp_load --mode state
#   6. redwatch vs rotel vs prost: otlpbench's run_vs_rotel.sh with benches/otlpbench_redwatch.sh
# Then prints the RESULT lines. Every figure is a share of one pinned core, so before each step
# the script waits (up to QUIET_WAIT s, default 900) for both cores to be under 10% busy; the
# tables also flag other load on the server core.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
REPS=${REPS:-3}
SECS=${SECS:-15}
OTLPBENCH=${OTLPBENCH:-/work/shared/tools/otlpbench}
CRITERION=1 STATE=1 ROTEL=1
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=$2; shift 2 ;;
    --secs) SECS=$2; shift 2 ;;
    --no-criterion) CRITERION=0; shift ;;
    --no-state) STATE=0; shift ;;
    --no-rotel) ROTEL=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//; /^set -euo/d'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-$ROOT/target/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
# Busy % of cpu0 and cpu1 over 3 s (everything but idle and iowait).
busy_pct() {
  local a b
  a=$(grep -E '^cpu[01] ' /proc/stat); sleep 3; b=$(grep -E '^cpu[01] ' /proc/stat)
  paste <(echo "$a") <(echo "$b") | awk '{ ba=$2+$3+$4+$7+$8+$9; bb=$13+$14+$15+$18+$19+$20;
    d=(bb+$16+$17)-(ba+$5+$6); printf "%d ", (d > 0 ? 100 * (bb - ba) / d : 0) }'
}
# On a shared machine, waits (up to QUIET_WAIT seconds, default 900) until both cores are under
# 10% busy, so the pinned figures are not someone else's build.
wait_quiet() {
  local waited=0 pcts
  while [ "$waited" -lt "${QUIET_WAIT:-900}" ]; do
    pcts=$(busy_pct)
    # shellcheck disable=SC2086
    set -- $pcts
    if [ "${1:-100}" -lt 10 ] && [ "${2:-100}" -lt 10 ]; then return 0; fi
    [ $((waited % 60)) -eq 0 ] && log "waiting for a quiet machine (cores busy: ${pcts}%)"
    waited=$((waited + 3))
  done
  log "the machine did not get quiet; measuring anyway (see 'other load' in the tables)"
}
cd "$ROOT"

log "building the release binary and the benches"
cargo build --release --bin redwatch > "$OUT/build.txt" 2>&1 || { tail -30 "$OUT/build.txt" >&2; exit 1; }
# Snapshot the binaries: other work in this checkout cannot change them between steps.
mkdir -p "$OUT/bin"
cp "$ROOT/target/release/redwatch" "$OUT/bin/redwatch"
for b in decode_aggregate otlp_load; do
  exe=$(cargo bench --no-run --bench "$b" --message-format=json 2>>"$OUT/build.txt" \
    | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | grep "/$b-" | tail -1)
  [ -x "$exe" ] || { tail -30 "$OUT/build.txt" >&2; echo "could not build bench $b" >&2; exit 1; }
  cp "$exe" "$OUT/bin/$b"
done
export REDWATCH_BIN="$OUT/bin/redwatch"
{ echo "commit $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- . 2>/dev/null || echo ' + uncommitted changes')"
  echo "date $(date -u '+%Y-%m-%d %H:%M UTC')"; echo "rustc $(rustc --version)"
  echo "cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//') x $(nproc --all)"
  echo "kernel $(uname -r)"; } | tee "$OUT/machine.txt" >&2

if [ "$CRITERION" = 1 ]; then
  wait_quiet
  log "criterion decode_aggregate (core 0)"
  taskset -c 0 "$OUT/bin/decode_aggregate" --bench 2>&1 | tee "$OUT/criterion.txt" | grep -E 'thrpt|^[a-z_]+/' >&2
fi
for rep in $(seq 1 "$REPS"); do
  wait_quiet
  log "otlp_load throughput, uncompressed, rep $rep"
  "$OUT/bin/otlp_load" --secs "$SECS" > "$OUT/throughput-rep$rep.txt"
  grep '^RESULT' "$OUT/throughput-rep$rep.txt" >&2
done
for rep in $(seq 1 "$REPS"); do
  wait_quiet
  log "otlp_load throughput, gzip, rep $rep"
  "$OUT/bin/otlp_load" --secs "$SECS" --gzip > "$OUT/gzip-rep$rep.txt"
  grep '^RESULT' "$OUT/gzip-rep$rep.txt" >&2
done
if [ "$STATE" = 1 ]; then
  wait_quiet
  log "otlp_load state per series (about 2 minutes)"
  "$OUT/bin/otlp_load" --mode state > "$OUT/state.txt"
  grep '^RESULT' "$OUT/state.txt" >&2
fi
if [ "$ROTEL" = 1 ]; then
  wait_quiet
  log "otlpbench run_vs_rotel.sh with redwatch"
  REDWATCH_METRICS_DIR="$OUT/vs-rotel-metrics" \
    "$OTLPBENCH/run_vs_rotel.sh" --reps "$REPS" --secs "$SECS" \
    "redwatch=$HERE/otlpbench_redwatch.sh {addr}" 2>&1 | tee "$OUT/vs-rotel.txt" | grep -E '^\||^#' >&2
  grep -E '^redwatch_(late_dropped|spans_accepted)_total' "$OUT"/vs-rotel-metrics/*.txt >&2 || true
fi
log "outputs in $OUT"
grep -h '^RESULT' "$OUT"/*.txt || true
