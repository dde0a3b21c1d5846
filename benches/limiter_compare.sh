#!/usr/bin/env bash
# OTLP/gRPC ingest throughput with the memory limiter on (the default limits.memory) and off
# (limits.memory: null), in one run of the same release build on the same machine (issue 16):
# otlp_load, then otlp_load --no-memory-limit, then the ratio of their accepted spans/s.
# Extra arguments go to both runs (e.g. --secs 10).
#
#   benches/limiter_compare.sh [--secs 15] [--concurrency 8]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/otlp_load_runs.sh"
on="$(run "$@")"
off="$(run --no-memory-limit "$@")"
echo
echo "limiter on:  $(rate "$on") spans/s ($(cpu "$on") per server CPU-s)"
echo "limiter off: $(rate "$off") spans/s ($(cpu "$off") per server CPU-s)"
awk -v a="$(rate "$on")" -v b="$(rate "$off")" -v ac="$(cpu "$on")" -v bc="$(cpu "$off")" \
    'BEGIN { printf "on/off: %.3f x throughput, %.3f x per server CPU-second\n", a / b, ac / bc }'
