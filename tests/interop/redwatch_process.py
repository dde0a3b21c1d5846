"""Runs one `redwatch run` server for a test and knows where it listens.

Owns the child process and its captured log. It waits for the `listening <name> <addr>` lines
instead of sleeping, and it never silently skips: a missing binary or a server that does not come
up is a loud failure that carries the captured log.
"""

from __future__ import annotations

import contextlib

import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]

# A tracing line may carry a timestamp, level, target and ANSI colours before the message; the
# message itself ends in `listening <name> <addr>`.
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LISTENING = re.compile(r"listening\s+([a-z_]+)\s+(\S+)\s*$")

# The listeners every interop server has (names from the `listening <name> <addr>` lines).
LISTENERS = ("otlp_grpc", "otlp_http", "prometheus")

START_DEADLINE_S = 30.0
STOP_GRACE_S = 10.0

# Config that the interop tests run with: every listener on an ephemeral port, 1 s windows that
# close quickly once the test's sources go idle.
DEFAULT_CONFIG = """\
receivers:
  otlp:
    grpc: { endpoint: 127.0.0.1:0 }
    http: { endpoint: 127.0.0.1:0 }
windows: { size: 1s, rollups: [], max_out_of_orderness: 0s, allowed_lateness: 5s, idle_timeout: 1s }
exporters:
  prometheus: { endpoint: 127.0.0.1:0 }
sql: { http_endpoint: 127.0.0.1:0, flight_endpoint: 127.0.0.1:0 }
"""


def redwatch_bin() -> Path:
    """The binary under test: $REDWATCH_BIN, else the cargo debug build of this checkout."""
    explicit = os.environ.get("REDWATCH_BIN")
    if explicit:
        path = Path(explicit)
    else:
        target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
        if not target.is_absolute():
            target = REPO_ROOT / target
        path = target / "debug" / "redwatch"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RuntimeError(
            f"redwatch binary not found or not executable at {path}; build it with "
            "`cargo build --locked --bin redwatch` or set REDWATCH_BIN (tests/run-all.sh does both)"
        )
    return path


def _server_env() -> dict[str, str]:
    env = dict(os.environ)
    # The test config must be the whole config: drop overrides that the caller's shell may carry.
    for key in list(env):
        if key.startswith("REDWATCH__"):
            del env[key]
    env.pop("RUST_LOG", None)
    env["NO_COLOR"] = "1"
    return env


class RedwatchProcess:
    """A running `redwatch run --config FILE` with its output captured by a reader thread."""

    def __init__(self, config_path: Path, expected_listeners: tuple[str, ...]):
        self.config_path = config_path
        self.expected_listeners = expected_listeners
        self.addresses: dict[str, str] = {}
        self.exit_code: int | None = None
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self._started_at = time.monotonic()
        self.argv = [str(redwatch_bin()), "run", "--config", str(config_path)]
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=_server_env(),
            cwd=str(config_path.parent),
        )
        self._reader = threading.Thread(target=self._read_output, name="redwatch-log", daemon=True)
        self._reader.start()

    # -- output -----------------------------------------------------------------------------------

    def _read_output(self) -> None:
        assert self._proc.stdout is not None
        for raw in iter(self._proc.stdout.readline, b""):
            line = _ANSI.sub("", raw.decode("utf-8", errors="replace")).rstrip("\r\n")
            stamp = time.monotonic() - self._started_at
            with self._cond:
                self._lines.append(f"[+{stamp:7.3f}s] {line}")
                match = _LISTENING.search(line)
                if match:
                    self.addresses[match.group(1)] = match.group(2)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def log_text(self) -> str:
        with self._cond:
            lines = list(self._lines)
        header = f"$ {' '.join(self.argv)}\n--- config ---\n{self.config_path.read_text()}--- output ---\n"
        footer = "" if self.exit_code is None else f"--- exited with {self.exit_code} ---\n"
        return header + "\n".join(lines) + "\n" + footer

    # -- lifecycle --------------------------------------------------------------------------------

    def wait_until_listening(self, deadline_s: float = START_DEADLINE_S) -> dict[str, str]:
        deadline = time.monotonic() + deadline_s
        with self._cond:
            while not all(name in self.addresses for name in self.expected_listeners):
                if self._eof or self._proc.poll() is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(timeout=min(remaining, 0.5))
            missing = [n for n in self.expected_listeners if n not in self.addresses]
        if missing:
            code = self._proc.poll()
            why = f"exited with code {code}" if code is not None else f"still running after {deadline_s:.0f}s"
            self.stop()
            raise RuntimeError(
                f"redwatch did not log `listening <name> <addr>` for {missing} ({why}).\n{self.log_text()}"
            )
        return dict(self.addresses)

    def is_running(self) -> bool:
        return self._proc.poll() is None

    def stop(self) -> int:
        """SIGTERM, wait up to STOP_GRACE_S, then SIGKILL. Returns the exit code."""
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with self._cond:
                    self._lines.append(f"[harness] no exit {STOP_GRACE_S:.0f}s after SIGTERM; sending SIGKILL")
                self._proc.kill()
                self._proc.wait()
        self.exit_code = self._proc.returncode
        self._reader.join(timeout=5)
        return self.exit_code


class RedwatchServer:
    """What a test sees: the listen addresses of a started server and its log."""

    def __init__(self, process: RedwatchProcess):
        self.process = process
        addrs = process.addresses
        self.otlp_grpc = addrs["otlp_grpc"]
        self.otlp_http = addrs["otlp_http"]
        self.prometheus = addrs["prometheus"]

    @property
    def grpc_endpoint(self) -> str:
        return f"http://{self.otlp_grpc}"

    @property
    def http_traces_url(self) -> str:
        return f"http://{self.otlp_http}/v1/traces"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.prometheus}/metrics"

    def log_text(self) -> str:
        return self.process.log_text()


@contextlib.contextmanager
def running(tmp_path: Path, config: str, listeners: tuple[str, ...]):
    """Starts `redwatch run` with `config` (written under `tmp_path`), waits for `listeners`,
    yields the process, and on exit stops it and fails the test unless SIGTERM gave exit 0."""
    config_path = tmp_path / "redwatch.yaml"
    config_path.write_text(config)
    process = RedwatchProcess(config_path, listeners)
    process.wait_until_listening()
    try:
        yield process
    finally:
        code = process.stop()
    if code != 0:
        raise AssertionError(f"redwatch exited with {code} after SIGTERM (expected 0)\n{process.log_text()}")


_sql_http = requests.Session()
_sql_http.trust_env = False  # never through a proxy: the server is on loopback


def sql_rows(process: RedwatchProcess, query: str) -> list[dict]:
    """Rows of `query` from the SQL HTTP API (asserts a 200 answer)."""
    url = f"http://{process.addresses['sql_http']}/api/v1/sql"
    resp = _sql_http.post(url, json={"query": query, "format": "json"}, timeout=30)
    assert resp.status_code == 200, f"{query}\n-> {resp.status_code}: {resp.text[:2000]}"
    return resp.json()["rows"]
