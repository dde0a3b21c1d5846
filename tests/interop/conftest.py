"""Fixtures for the OpenTelemetry-SDK interop tests.

`redwatch` starts a fresh `redwatch run` per test (ephemeral ports, 1 s windows) and stops it
afterwards; when a test fails, the server's log is attached to the failure report.
"""

from __future__ import annotations

import os

import pytest

from otlp_receiver import OtlpReceiver
from redwatch_process import DEFAULT_CONFIG, LISTENERS, RedwatchServer, redwatch_bin, running
from span_workload import unique_service_names

# Everything these tests talk to is on loopback; a proxy from the environment must not see it.
for _var in ("NO_PROXY", "no_proxy"):
    os.environ[_var] = ",".join(filter(None, [os.environ.get(_var), "127.0.0.1", "localhost", "::1"]))


def pytest_report_header(config):
    try:
        return f"redwatch binary: {redwatch_bin()}"
    except RuntimeError as err:
        return f"redwatch binary: MISSING ({err})"


@pytest.fixture
def redwatch(tmp_path):
    # `running` raises with the captured log if the server does not come up, and checks the
    # contract on the way out: SIGTERM is a clean, staged shutdown with exit code 0.
    with running(tmp_path, DEFAULT_CONFIG, LISTENERS) as process:
        yield RedwatchServer(process)


@pytest.fixture
def receiver():
    """An independent OTLP/gRPC receiver (otlp_receiver.py) for redwatch's exports."""
    r = OtlpReceiver().start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def service_names(request):
    return unique_service_names(request.node.name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        server = getattr(item, "funcargs", {}).get("redwatch")
        if isinstance(server, RedwatchServer):
            report.sections.append((f"redwatch server log ({report.when})", server.log_text()))
    return report


def pytest_terminal_summary(terminalreporter):
    """The Kafka exactness cases' per-case keys (compared / exact / wrong / missing / extra)."""
    import sys

    oracle = sys.modules.get("kafka_oracle")
    lines = getattr(oracle, "REPORT_LINES", [])
    if lines:
        terminalreporter.section("Kafka exactness: keys per case")
        for line in lines:
            terminalreporter.write_line(line)
