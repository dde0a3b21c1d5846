#!/usr/bin/env bash
# OTLP/gRPC ingest throughput with the memory limiter on (the default limits.memory) and off
# (limits.memory: null), in one run of the same release build on the same machine (issue 16):
# otlp_load, then otlp_load --no-memory-limit, then the ratio of their accepted spans/s.
# Extra arguments go to both runs (e.g. --secs 10).
#
#   benches/limiter_compare.sh [--secs 15] [--concurrency 8]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo bench --locked --bench otlp_load --no-run
run() { cargo bench --locked --bench otlp_load -- "$@" | tee /dev/stderr | grep '^RESULT otlp_load'; }
on="$(run "$@")"
off="$(run --no-memory-limit "$@")"
rate() { sed -E 's/.* spans_per_s=([0-9.]+).*/\1/' <<<"$1"; }
cpu() { sed -E 's/.* spans_per_cpu_s=([0-9.]+).*/\1/' <<<"$1"; }
echo
echo "limiter on:  $(rate "$on") spans/s ($(cpu "$on") per server CPU-s)"
echo "limiter off: $(rate "$off") spans/s ($(cpu "$off") per server CPU-s)"
awk -v a="$(rate "$on")" -v b="$(rate "$off")" -v ac="$(cpu "$on")" -v bc="$(cpu "$off")" \
    'BEGIN { printf "on/off: %.3f x throughput, %.3f x per server CPU-second\n", a / b, ac / bc }'
