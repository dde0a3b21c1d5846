#!/usr/bin/env bash
# SKAB development benchmark (benches/skab/README.md). One command:
#   benches/skab/run.sh /path/to/SKAB                 # builds target/release/redwatch first
#   REDWATCH_BIN=path/to/redwatch benches/skab/run.sh /path/to/SKAB [--out DIR] [--only valve1/0]
# Python 3.9+ standard library only: no virtualenv or requirements needed.
set -euo pipefail
cd "$(dirname "$0")/../.."
data=${1:?usage: benches/skab/run.sh SKAB_CHECKOUT_OR_DATA_DIR [--out DIR] [--only IDS]}
shift
if [[ -z "${REDWATCH_BIN:-}" ]]; then
    cargo build --release --locked --bin redwatch
    REDWATCH_BIN="${CARGO_TARGET_DIR:-target}/release/redwatch"
fi
python3 -m unittest discover -s benches/skab -p 'test_*.py' -q
exec python3 benches/skab/skab_bench.py --data "$data" --redwatch "$REDWATCH_BIN" "$@"
