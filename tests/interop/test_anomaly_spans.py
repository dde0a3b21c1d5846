"""Latency incident -> redwatch anomaly detection -> `anomaly_detected` spans at an independent
OTLP/gRPC receiver (otlp_receiver.py: opentelemetry-proto + grpcio, no redwatch code).

Load comes from the OpenTelemetry Python SDK (spans with explicit start/end times, exported with
the SDK's OTLP/gRPC exporter): 45 one-second windows of history replayed fast — accepted as late
data within `allowed_lateness` — with a latency spike in windows 30..34, then a steady real-time
load until the receiver has what the test waits for. Checks the span contract of docs/anomaly-detection.md
("Anomaly and prediction signals"): names, kind, window times, status, every attribute, the
`anomaly_alert` event, and one trace per incident.
"""

from __future__ import annotations

import time
import uuid

import pytest
import requests

from otlp_receiver import attributes
from redwatch_process import LISTENERS, RedwatchServer, running
from spike_load import HISTORY_WINDOWS, SEC, SPIKE, SdkLoad

DEADLINE_S = 90.0

ANOMALY_ATTRIBUTES = (
    "anomaly.signal",
    "anomaly.value",
    "anomaly.expected_min",
    "anomaly.expected_max",
    "anomaly.severity",
    "anomaly.score",
    "anomaly.detector",
    "anomaly.incident_id",
    "service.name.observed",
    "span.name.observed",
)


def config(receiver_endpoint: str) -> str:
    return f"""\
receivers:
  otlp:
    grpc: {{ endpoint: 127.0.0.1:0 }}
    http: {{ endpoint: 127.0.0.1:0 }}
windows: {{ size: 1s, rollups: [], max_out_of_orderness: 0s, allowed_lateness: 120s, idle_timeout: 1s }}
exporters:
  prometheus: {{ endpoint: 127.0.0.1:0 }}
  otlp:
    endpoint: {receiver_endpoint}
    protocol: grpc
    compression: gzip
    batch: {{ max_size: 512, timeout: 100ms }}
    retry: {{ initial_interval: 100ms, max_interval: 1s, max_elapsed_time: 1m }}
sql: {{ http_endpoint: 127.0.0.1:0, flight_endpoint: null }}
anomaly:
  warmup_windows: 20
  detectors: {{ robust_z: {{ baseline_windows: 20 }} }}
forecast: {{ enabled: false }}
# One incident = one trace is the problems-off shape; with problems on (the default) the spans are
# children in their problem's trace.
problems: {{ enabled: false }}
"""


@pytest.fixture
def redwatch_exporting(tmp_path, receiver):
    with running(tmp_path, config(receiver.endpoint), LISTENERS) as process:
        yield RedwatchServer(process)


def test_latency_spike_arrives_as_anomaly_spans(redwatch_exporting, receiver):
    service = f"payments-{uuid.uuid4().hex[:8]}"
    first = time.time_ns() // SEC - HISTORY_WINDOWS
    load = SdkLoad(redwatch_exporting.grpc_endpoint, service, first)
    last_spike_start = (first + SPIKE[-1]) * SEC

    def p99_spans(spans):
        return [
            s
            for s in spans
            if s.span.name == "anomaly_detected"
            and s.attributes.get("anomaly.signal") == "latency_p99_ms"
            and s.attributes.get("service.name.observed") == service
        ]

    def resolved(r) -> bool:
        return r.attributes.get("anomaly.incident_state") == "resolved"

    try:
        receiver.wait_for(
            lambda spans: any(s.span.start_time_unix_nano == last_spike_start for s in p99_spans(spans))
            and any(resolved(s) for s in p99_spans(spans)),
            DEADLINE_S,
            "the p99 anomaly spans of the whole spike and the incident's resolved span arrive",
            tick=load.catch_up,
        )
    finally:
        load.shutdown()

    everything = [s for s in receiver.spans("anomaly_detected") if s.attributes.get("service.name.observed") == service]
    resolved_spans = [s for s in everything if resolved(s)]
    anomalies = [s for s in everything if not resolved(s)]
    assert anomalies
    incidents: dict[str, list] = {}
    for r in anomalies:
        s, a = r.span, r.attributes
        assert r.resource.get("service.name") == "redwatch", r.resource
        missing = [k for k in ANOMALY_ATTRIBUTES if k not in a]
        assert not missing, f"anomaly span lacks {missing}: {a}"
        assert a["span.name.observed"] == "GET /pay"
        assert a["anomaly.severity"] in ("low", "medium", "high", "critical")
        assert isinstance(a["anomaly.value"], float) and isinstance(a["anomaly.score"], float)
        # The calibrated score is a probability; the raw statistics ride along.
        assert 0.0 <= a["anomaly.score"] <= 1.0, a
        assert isinstance(a["anomaly.z"], float) and 0.0 <= a["anomaly.p_value"] <= 1.0, a
        assert s.kind == 1, "SPAN_KIND_INTERNAL"
        assert s.end_time_unix_nano - s.start_time_unix_nano == SEC, "start/end = the 1 s window"
        window = s.start_time_unix_nano // SEC - first
        assert window in SPIKE, f"anomaly outside the spike (window {window}): {a}"
        error = a["anomaly.severity"] in ("high", "critical")
        assert (s.status.code == 2) == error, f"status {s.status.code} for severity {a['anomaly.severity']}"
        events = [e for e in s.events if e.name == "anomaly_alert"]
        assert len(events) == 1
        assert attributes(events[0].attributes) == a, "the event carries the same fields"
        # One incident = one trace: the trace id is the incident id.
        assert s.trace_id.hex() == a["anomaly.incident_id"]
        assert len(s.span_id) == 8 and s.span_id != bytes(8)
        incidents.setdefault(a["anomaly.incident_id"], []).append(s)

    p99 = p99_spans(anomalies)
    p99 = [r for r in p99 if not resolved(r)]
    assert len(p99) == len(SPIKE), f"one p99 span per spike window: {[x.span.start_time_unix_nano for x in p99]}"
    for r in p99:
        assert r.attributes["anomaly.value"] > r.attributes["anomaly.expected_max"]
        # Linked to the window's slowest span, one the SDK really sent (no failed spans here).
        links = list(r.span.links)
        assert len(links) == 1, links
        link_attrs = attributes(links[0].attributes)
        assert link_attrs["exemplar.kind"] == "slowest"
        sent = load.sent_ids.get((links[0].trace_id, links[0].span_id))
        assert sent is not None, "the link points at a span the SDK exported"
        assert abs(sent - link_attrs["exemplar.duration_ms"]) < 1e-6
        assert sent >= r.attributes["anomaly.value"] * 0.99, "the slowest span is at least the p99"
    ids = {r.attributes["anomaly.incident_id"] for r in p99}
    assert len(ids) == 1, f"the spike is one p99 incident, got {ids}"
    group = incidents[ids.pop()]
    root = min(group, key=lambda s: s.start_time_unix_nano)
    assert root.start_time_unix_nano == (first + SPIKE[0]) * SEC
    assert not root.parent_span_id, "the incident's first window is the root span"
    for s in group:
        assert s.trace_id == root.trace_id
        if s is not root:
            assert s.parent_span_id == root.span_id
    assert len({s.span_id for s in group}) == len(group), "span ids are unique within the trace"

    # The incident resolves after `resolve_after_windows` (3) calm windows: one final span in
    # the same trace, a child of the root, status OK, with how long the incident lasted.
    final = [r for r in resolved_spans if r.attributes["anomaly.incident_id"] == root.trace_id.hex()]
    assert len(final) == 1, [r.attributes for r in resolved_spans]
    f = final[0]
    fa = f.attributes
    # A resolved record is no alarm: every attribute but the score (and the raw statistics).
    missing = [k for k in ANOMALY_ATTRIBUTES if k not in fa and k != "anomaly.score"]
    assert not missing, f"the resolved span lacks {missing}: {fa}"
    for k in ("anomaly.score", "anomaly.p_value", "anomaly.z"):
        assert k not in fa, f"the resolved span carries {k}: {fa}"
    assert f.span.name == "anomaly_detected" and f.span.trace_id == root.trace_id
    assert f.span.parent_span_id == root.span_id
    assert f.span.span_id not in {s.span_id for s in group}
    assert f.span.start_time_unix_nano == (first + SPIKE[-1] + 3) * SEC, "the third calm window resolves it"
    assert f.span.status.code == 1, "STATUS_CODE_OK: the incident is over"
    assert fa["anomaly.incident_duration_ms"] == len(SPIKE) * 1000
    assert fa["anomaly.incident_windows"] == len(SPIKE)
    assert fa["anomaly.severity"] == max(
        (r.attributes["anomaly.severity"] for r in p99), key=["low", "medium", "high", "critical"].index
    ), "the resolved span carries the incident's peak severity"
    assert [e.name for e in f.span.events] == ["anomaly_resolved"]
    assert not f.span.links

    # The anomalies table shows the incident's states, the resolving row with its duration.
    url = f"http://{redwatch_exporting.process.addresses['sql_http']}/api/v1/sql"
    query = (
        "SELECT incident_state, incident_duration_ms, incident_windows FROM anomalies "
        f"WHERE incident_id = '{root.trace_id.hex()}' ORDER BY window_start"
    )
    http = requests.Session()
    http.trust_env = False  # no proxy for 127.0.0.1
    resp = http.post(url, json={"query": query, "format": "json"}, timeout=30)
    assert resp.status_code == 200, resp.text[:2000]
    rows = resp.json()["rows"]
    assert [r["incident_state"] for r in rows] == ["open"] + ["ongoing"] * (len(SPIKE) - 1) + ["resolved"], rows
    assert rows[-1]["incident_duration_ms"] == len(SPIKE) * 1000
    assert rows[-1]["incident_windows"] == len(SPIKE)
