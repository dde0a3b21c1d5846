"""Configured RED dimensions from span, scope and resource attributes (with defaults) and span-name
normalisation, end to end: OpenTelemetry Python SDK -> OTLP/gRPC -> redwatch -> Prometheus labels
and the `red` table's `dims` map.
"""

from __future__ import annotations

import time

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from prometheus_scrape import sum_samples, wait_for
from redwatch_process import running, sql_rows

MS = 1_000_000

CONFIG = """\
receivers:
  otlp:
    grpc: { endpoint: 127.0.0.1:0 }
    http: null
windows: { size: 1s, rollups: [], max_out_of_orderness: 0s, allowed_lateness: 5s, idle_timeout: 1s }
red:
  dimensions:
    - { name: http.request.method, default: none, source: span }
    - { name: deployment.environment, source: resource }
    - { name: library.tier, source: scope }
    - { name: region }
  span_names:
    rules: [{ pattern: '^(GET|POST) /api/v[0-9]+/', replacement: '$1 /api/' }]
exporters:
  prometheus: { endpoint: 127.0.0.1:0 }
sql: { http_endpoint: 127.0.0.1:0, flight_endpoint: null }
"""
LISTENERS = ("otlp_grpc", "sql_http", "prometheus")

@pytest.fixture
def server(tmp_path):
    with running(tmp_path, CONFIG, LISTENERS) as process:
        yield process


def test_dimensions_and_normalised_span_names_reach_labels_and_the_red_table(server):
    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": "dim-users", "deployment.environment": "staging", "region": "from-resource"}
        )
    )
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("users.http", attributes={"library.tier": "edge", "region": "from-scope"})
    now = time.time_ns()
    names = ["GET /api/v1/users/17", "GET /api/v2/users/42", "GET /users/9f1c2e3d4b5a6978", "GET /health"]
    for i, name in enumerate(names):
        attrs = {"http.request.method": "GET"} if i < 2 else {}
        if i == 0:
            attrs["region"] = "from-span"
        span = tracer.start_span(name, kind=SpanKind.SERVER, start_time=now - 20 * MS, attributes=attrs)
        span.end(end_time=now - 10 * MS)
    spans = list(memory.get_finished_spans())
    provider.shutdown()
    exporter = OTLPSpanExporter(endpoint=f"http://{server.addresses['otlp_grpc']}", insecure=True, timeout=10)
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()

    common = {"service_name": "dim-users", "deployment_environment": "staging", "library_tier": "edge"}
    want = [
        ({"span_name": "GET /api/users/{id}", "http_request_method": "GET", "region": "from-span"}, 1),
        ({"span_name": "GET /api/users/{id}", "http_request_method": "GET", "region": "from-scope"}, 1),
        ({"span_name": "GET /users/{id}", "http_request_method": "none", "region": "from-scope"}, 1),
        ({"span_name": "GET /health", "http_request_method": "none", "region": "from-scope"}, 1),
    ]

    def values(samples):
        return [sum_samples(samples, "traces_span_metrics_calls_total", **common, **labels) for labels, _ in want]

    metrics_url = f"http://{server.addresses['prometheus']}/metrics"
    samples = wait_for(
        metrics_url,
        lambda s: values(s) == [n for _, n in want],
        lambda s: f"got {values(s)}, want {[n for _, n in want]}",
        relevant=lambda line: "dim-users" in line or "normalized" in line,
    )
    assert sum_samples(samples, "traces_span_metrics_calls_total", service_name="dim-users") == len(names)
    assert sum_samples(samples, "redwatch_red_span_names_normalized_total") == 3

    query = (
        "SELECT span_name, dims['http.request.method'] AS method, dims['deployment.environment'] AS env, "
        "dims['library.tier'] AS tier, dims['region'] AS region, sum(calls) AS calls "
        "FROM red WHERE is_final AND service_name = 'dim-users' "
        "GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 5"
    )
    got = [(r["span_name"], r["method"], r["env"], r["tier"], r["region"], r["calls"]) for r in sql_rows(server, query)]
    assert got == [
        ("GET /api/users/{id}", "GET", "staging", "edge", "from-scope", 1),
        ("GET /api/users/{id}", "GET", "staging", "edge", "from-span", 1),
        ("GET /health", "none", "staging", "edge", "from-scope", 1),
        ("GET /users/{id}", "none", "staging", "edge", "from-scope", 1),
    ], got
