#!/usr/bin/env bash
# Starts `redwatch run` the way otlpbench's run_vs_rotel.sh wants a server: OTLP/gRPC on the
# address given as $1 (run_vs_rotel.sh replaces `{addr}` with it), stops on SIGTERM.
#
#   /work/shared/tools/otlpbench/run_vs_rotel.sh 'redwatch=/work/main/benches/otlpbench_redwatch.sh {addr}'
#
# Writes a config (gRPC on ADDR, HTTP off, Prometheus on an ephemeral port, 10m out-of-orderness
# and lateness: otlpbench's data spans the 5 minutes before generation and is replayed), then
# execs redwatch, so the listening process run_vs_rotel.sh measures is redwatch itself.
# A sidecar pinned to $SCRAPE_CORE (default 1, the client core) copies /metrics once a second to
# $REDWATCH_METRICS_DIR/metrics-<redwatch pid>.txt (default dir: the temp dir holding the config;
# the path is printed on stderr), so that `redwatch_late_dropped_total` and
# `redwatch_spans_accepted_total` can be checked after the run.
# Env: REDWATCH_BIN (default: target/release/redwatch of this checkout); any REDWATCH__* config
# override reaches the server, e.g. REDWATCH__SERVICE_GRAPH__ENABLED=false measures RED alone
# (the service graph is its own operator, on by default: ~30% of the CPU per span on
# otlpbench's data, see BENCHMARKS.md).
set -euo pipefail

ADDR=${1:?usage: $0 HOST:PORT}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN=${REDWATCH_BIN:-$HERE/../target/release/redwatch}
DIR="$(mktemp -d "${TMPDIR:-/tmp}/otlpbench-redwatch.XXXXXX")"
mkdir -p "${REDWATCH_METRICS_DIR:=$DIR}"
OUT="$REDWATCH_METRICS_DIR/metrics-$$.txt"

cat > "$DIR/config.yaml" <<EOF
receivers:
  otlp:
    grpc: { endpoint: "$ADDR" }
    http: null
windows:
  max_out_of_orderness: 10m
  allowed_lateness: 10m
red:
  cardinality_limit: 20000
exporters:
  prometheus: { endpoint: "127.0.0.1:0" }
EOF
echo "otlpbench_redwatch: config $DIR/config.yaml, /metrics copies in $OUT" >&2

SERVER_PID=$$ # exec below keeps the pid
GRPC_PORT=${ADDR##*:}
(
  # Off the server core; ends with the server.
  exec taskset -c "${SCRAPE_CORE:-1}" bash -c '
    pid=$1 grpc_port=$2 out=$3 port=""
    while kill -0 "$pid" 2>/dev/null; do
      if [ -z "$port" ]; then
        # The listening port that answers /metrics (SQL and Flight SQL listen too).
        for p in $(ss -Hltnp 2>/dev/null | grep "pid=$pid," | awk "{print \$4}" | sed "s/.*://" | grep -vx "$grpc_port" || true); do
          if curl -sf "http://127.0.0.1:$p/metrics" -o /dev/null; then port=$p; break; fi
        done
      fi
      if [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/metrics" -o "$out.tmp"; then
        mv -f "$out.tmp" "$out"
      fi
      sleep 1
    done' sidecar "$SERVER_PID" "$GRPC_PORT" "$OUT"
) </dev/null >/dev/null 2>&1 &

exec "$BIN" run --config "$DIR/config.yaml"
