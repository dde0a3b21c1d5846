# Sourced by the benches/*_compare.sh scripts: builds the otlp_load bench once and defines
# `run ARGS…` (one otlp_load run, its output on stderr, its RESULT line on stdout) and `rate` /
# `cpu` (accepted spans/s and spans per server CPU-second of a RESULT line).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo bench --locked --bench otlp_load --no-run
run() { cargo bench --locked --bench otlp_load -- "$@" | tee /dev/stderr | grep '^RESULT otlp_load'; }
rate() { sed -E 's/.* spans_per_s=([0-9.]+).*/\1/' <<<"$1"; }
cpu() { sed -E 's/.* spans_per_cpu_s=([0-9.]+).*/\1/' <<<"$1"; }
