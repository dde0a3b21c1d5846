#!/usr/bin/env bash
# shellcheck disable=SC2329  # trap handlers and service hooks are called indirectly
# The one test command: builds redwatch, runs the Rust test suite, then the interop tests that
# drive the binary with real peers (the OpenTelemetry Python SDK; later a Kafka broker).
#
#   tests/run-all.sh            # from any directory
#
# Python tools live in <repo>/.venv-test/ (created here; reinstalled only when
# tests/interop/requirements.txt changes). Respects CARGO_TARGET_DIR. Extra pytest options can
# be passed through PYTEST_ADDOPTS (e.g. PYTEST_ADDOPTS='-k grpc -x').
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv-test"
REQUIREMENTS="$REPO_ROOT/tests/interop/requirements.txt"
STAMP="$VENV/.requirements.sha256"
SERVICE_STOP_GRACE_S=10

cd "$REPO_ROOT"
# Keep the work tree clean: no __pycache__/ or .pytest_cache/ next to the tests.
export PYTHONDONTWRITEBYTECODE=1

step() { printf '\n==> %s\n' "$*"; }

# --- services ------------------------------------------------------------------------------
# Peers the tests need that run for the whole test session (e.g. a Kafka broker). A service is
# started in the background by start_services, its pid is recorded with track_service, and it is
# stopped on any exit (success, failure, Ctrl-C) by stop_services.

STARTED_PIDS=()
STARTED_NAMES=()

track_service() { # NAME PID
    STARTED_NAMES+=("$1")
    STARTED_PIDS+=("$2")
}

stop_services() {
    local i pid name waited
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        pid="${STARTED_PIDS[$i]}"
        name="${STARTED_NAMES[$i]}"
        kill -0 "$pid" 2>/dev/null || continue
        echo "stopping $name (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        waited=0
        while kill -0 "$pid" 2>/dev/null && ((waited < SERVICE_STOP_GRACE_S * 10)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "$name did not stop within ${SERVICE_STOP_GRACE_S}s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
}

on_exit() {
    local rc=$?
    stop_services
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_services() {
    # Nothing yet. A service goes here as:
    #   some-broker --listen 127.0.0.1:9092 >"$LOG_DIR/broker.log" 2>&1 &
    #   track_service broker $!
    #   wait until it accepts connections (deadline, then fail with its log)
    #   export REDWATCH_TEST_KAFKA_BROKERS=127.0.0.1:9092
    :
}

# --- python tools ----------------------------------------------------------------------------

setup_venv() {
    if [[ -x "$VENV/bin/python" ]] && ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
        echo "$VENV is broken (its python does not run); recreating it"
        rm -rf "$VENV"
    fi
    if [[ ! -x "$VENV/bin/python" ]]; then
        echo "creating $VENV"
        python3 -m venv "$VENV"
    fi
    local want have=""
    want="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1) $("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')"
    [[ -f "$STAMP" ]] && have="$(cat "$STAMP")"
    if [[ "$want" != "$have" ]]; then
        echo "installing tests/interop/requirements.txt into $VENV"
        rm -f "$STAMP"
        "$VENV/bin/python" -m pip install --disable-pip-version-check --quiet -r "$REQUIREMENTS"
        echo "$want" >"$STAMP"
    else
        echo "$VENV is up to date with tests/interop/requirements.txt"
    fi
}

# --- rust ----------------------------------------------------------------------------------

cargo_target_dir() {
    # cargo knows best (CARGO_TARGET_DIR, build.target-dir in .cargo/config.toml, the default).
    cargo metadata --format-version 1 --no-deps --locked |
        "$VENV/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

# --- run -----------------------------------------------------------------------------------

SECONDS=0

step "python test tools"
setup_venv

step "cargo build --locked --bin redwatch"
cargo build --locked --bin redwatch
REDWATCH_BIN="$(cargo_target_dir)/debug/redwatch"
export REDWATCH_BIN
echo "REDWATCH_BIN=$REDWATCH_BIN"

step "start services"
start_services

step "cargo test --locked --workspace"
cargo_rc=0
cargo test --locked --workspace || cargo_rc=$?

step "pytest -q tests/interop"
pytest_rc=0
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/interop || pytest_rc=$?

step "summary (${SECONDS}s)"
status=0
if ((cargo_rc == 0)); then echo "cargo test: ok"; else echo "cargo test: FAILED (exit $cargo_rc)"; status=1; fi
case "$pytest_rc" in
    0) echo "pytest: ok" ;;
    5) echo "pytest: FAILED - no tests were collected (exit 5)"; status=1 ;;
    *) echo "pytest: FAILED (exit $pytest_rc)"; status=1 ;;
esac
exit "$status"
