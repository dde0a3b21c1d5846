#!/usr/bin/env bash
# OTLP/gRPC ingest throughput with TLS + bearer auth off and on, in one run of the same release
# build on the same machine (issue 16): otlp_load plaintext, then otlp_load --tls, then the ratio
# of their end-to-end accepted spans/s. Extra arguments go to both runs (e.g. --secs 10).
#
#   benches/tls_compare.sh [--secs 15] [--concurrency 8]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/otlp_load_runs.sh"
plain="$(run "$@")"
tls="$(run --tls "$@")"
echo
echo "plaintext: $(rate "$plain") spans/s ($(cpu "$plain") per server CPU-s)"
echo "TLS+auth:  $(rate "$tls") spans/s ($(cpu "$tls") per server CPU-s)"
awk -v p="$(rate "$plain")" -v t="$(rate "$tls")" -v pc="$(cpu "$plain")" -v tc="$(cpu "$tls")" \
    'BEGIN { printf "TLS/plaintext: %.3f x throughput, %.3f x per server CPU-second\n", t / p, tc / pc }'
