"""A three-service trace set made with the OpenTelemetry Python SDK -> redwatch over OTLP/gRPC ->
exact service graph edges on /metrics and in the `service_graph` SQL table.

Per trace: frontend SERVER (root) -> frontend CLIENT -> cart SERVER -> cart CLIENT -> payments
SERVER, and cart PRODUCER -> payments CONSUMER, and a cart CLIENT to database `orders`
(`db.system`, `db.name`: a `database` edge). The payments server span fails in every other
trace; the root frontend SERVER span is an edge from the virtual client `user`. One extra
frontend CLIENT span has no server: it must be counted as unpaired once `service_graph.wait` has
passed; another one names `peer.service=ext-geo` and becomes an edge to that virtual node
instead. The payments spans are exported before the others, so every server half arrives before
its client half.
"""

from __future__ import annotations

import time

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from prometheus_scrape import sum_samples, wait_for
from redwatch_process import running, sql_rows

TRACES = 6
MS = 1_000_000
DEADLINE_S = 30.0

CONFIG = """\
receivers:
  otlp:
    grpc: { endpoint: 127.0.0.1:0 }
    http: null
windows: { size: 1s, rollups: [], max_out_of_orderness: 0s, allowed_lateness: 5s, idle_timeout: 1s }
service_graph: { wait: 2s, max_items: 1000 }
exporters:
  prometheus: { endpoint: 127.0.0.1:0 }
sql: { http_endpoint: 127.0.0.1:0, flight_endpoint: null }
"""
LISTENERS = ("otlp_grpc", "sql_http", "prometheus")

@pytest.fixture
def server(tmp_path):
    with running(tmp_path, CONFIG, LISTENERS) as process:
        yield process


sql = sql_rows


class Services:
    """One TracerProvider per service (`service.name` = `sg-<role>`), as real services have,
    recording into memory."""

    def __init__(self, roles: list[str]):
        self.providers: dict[str, tuple[TracerProvider, InMemorySpanExporter]] = {}
        for name in roles:
            provider = TracerProvider(resource=Resource.create({"service.name": f"sg-{name}"}))
            memory = InMemorySpanExporter()
            provider.add_span_processor(SimpleSpanProcessor(memory))
            self.providers[name] = (provider, memory)

    def tracer(self, name: str):
        return self.providers[name][0].get_tracer("redwatch.interop.service_graph")

    def spans(self, name: str) -> list:
        return list(self.providers[name][1].get_finished_spans())

    def shutdown(self) -> None:
        for provider, _ in self.providers.values():
            provider.shutdown()


def child(tracer, name, kind, parent, start, end, error=False):
    span = tracer.start_span(name, kind=kind, context=trace.set_span_in_context(parent), start_time=start)
    if error:
        span.set_status(Status(StatusCode.ERROR, "payment declined"))
    span.end(end_time=end)
    return span


def make_traces(svc: Services) -> None:
    now = time.time_ns()
    for i in range(TRACES):
        end = now - (TRACES - i) * 10 * MS
        root = svc.tracer("frontend").start_span("GET /checkout", kind=SpanKind.SERVER, start_time=end - 90 * MS)
        call_cart = svc.tracer("frontend").start_span(
            "GET /cart", kind=SpanKind.CLIENT, context=trace.set_span_in_context(root), start_time=end - 80 * MS
        )
        cart = svc.tracer("cart").start_span(
            "GET /cart", kind=SpanKind.SERVER, context=trace.set_span_in_context(call_cart), start_time=end - 75 * MS
        )
        call_pay = child(svc.tracer("cart"), "POST /pay", SpanKind.CLIENT, cart, end - 60 * MS, end - 20 * MS)
        child(
            svc.tracer("payments"), "POST /pay", SpanKind.SERVER, call_pay, end - 55 * MS, end - 25 * MS, error=i % 2 == 0
        )
        query = svc.tracer("cart").start_span(
            "SELECT orders",
            kind=SpanKind.CLIENT,
            context=trace.set_span_in_context(cart),
            start_time=end - 19 * MS,
            attributes={"db.system": "postgresql", "db.name": "orders"},
        )
        query.end(end_time=end - 18 * MS)
        publish = child(svc.tracer("cart"), "orders publish", SpanKind.PRODUCER, cart, end - 18 * MS, end - 17 * MS)
        child(svc.tracer("payments"), "orders process", SpanKind.CONSUMER, publish, end - 16 * MS, end - 5 * MS)
        cart.end(end_time=end - 15 * MS)
        call_cart.end(end_time=end - 10 * MS)
        root.end(end_time=end)
    # A call whose server never reports.
    lonely = svc.tracer("frontend").start_span("GET /gone", kind=SpanKind.CLIENT, start_time=now - 5 * MS)
    lonely.end(end_time=now - 4 * MS)
    # A call to an uninstrumented peer that names itself.
    geo = svc.tracer("frontend").start_span(
        "GET /geo", kind=SpanKind.CLIENT, start_time=now - 5 * MS, attributes={"peer.service": "ext-geo"}
    )
    geo.end(end_time=now - 3 * MS)


def test_sdk_trace_set_gives_exact_service_graph(server):
    svc = Services(["frontend", "cart", "payments"])
    try:
        make_traces(svc)
        exporter = OTLPSpanExporter(endpoint=f"http://{server.addresses['otlp_grpc']}", insecure=True, timeout=10)
        # Server halves first: the payments spans, then the rest.
        for name in ["payments", "cart", "frontend"]:
            assert exporter.export(svc.spans(name)) == SpanExportResult.SUCCESS
        exporter.shutdown()
    finally:
        svc.shutdown()

    failed_payments = sum(1 for i in range(TRACES) if i % 2 == 0)
    edge_fc = {"client": "sg-frontend", "server": "sg-cart", "connection_type": ""}
    edge_cp = {"client": "sg-cart", "server": "sg-payments", "connection_type": ""}
    edge_mq = {"client": "sg-cart", "server": "sg-payments", "connection_type": "messaging_system"}
    edge_db = {"client": "sg-cart", "server": "orders", "connection_type": "database"}
    edge_user = {"client": "user", "server": "sg-frontend", "connection_type": "virtual_node"}
    edge_geo = {"client": "sg-frontend", "server": "ext-geo", "connection_type": "virtual_node"}
    unpaired = {"client": "sg-frontend", "server": "", "connection_type": ""}
    want = [
        ("traces_service_graph_request_total", edge_fc, TRACES),
        ("traces_service_graph_request_failed_total", edge_fc, 0),
        ("traces_service_graph_request_total", edge_cp, TRACES),
        ("traces_service_graph_request_failed_total", edge_cp, failed_payments),
        ("traces_service_graph_request_total", edge_mq, TRACES),
        ("traces_service_graph_request_failed_total", edge_mq, 0),
        ("traces_service_graph_request_client_seconds_count", edge_fc, TRACES),
        ("traces_service_graph_request_server_seconds_count", edge_cp, TRACES),
        ("traces_service_graph_request_total", edge_db, TRACES),
        ("traces_service_graph_request_total", edge_user, TRACES),
        ("traces_service_graph_request_total", edge_geo, 1),
        ("traces_service_graph_unpaired_spans_total", unpaired, 1),
    ]

    def values(samples):
        return [sum_samples(samples, name, **labels) for name, labels, _ in want]

    metrics_url = f"http://{server.addresses['prometheus']}/metrics"
    samples = wait_for(
        metrics_url,
        lambda s: values(s) == [w for _, _, w in want],
        lambda s: "\n".join(
            f"{name}{labels}: got {got}, want {w}" for (name, labels, w), got in zip(want, values(s))
        ),
        deadline_s=DEADLINE_S,
        relevant=lambda line: "service_graph" in line,
    )
    # Latencies, in seconds: the cart -> payments client span lasts 40 ms, the server span 30 ms.
    assert sum_samples(samples, "traces_service_graph_request_client_seconds_bucket", le="0.05", **edge_cp) == TRACES
    assert sum_samples(samples, "traces_service_graph_request_client_seconds_bucket", le="0.01", **edge_cp) == 0
    assert sum_samples(samples, "traces_service_graph_request_server_seconds_sum", **edge_cp) == pytest.approx(
        TRACES * 0.030
    )
    # The database edge's server latency is the client span's (1 ms).
    assert sum_samples(samples, "traces_service_graph_request_server_seconds_bucket", le="0.002", **edge_db) == TRACES
    # Nothing else became an edge.
    total = sum_samples(samples, "traces_service_graph_request_total")
    assert total == 5 * TRACES + 1, total

    rows = sql(
        server,
        "SELECT client, server, connection_type, sum(requests) AS requests, sum(failed) AS failed, "
        "max(client_p99_ms) AS client_p99_ms FROM service_graph WHERE is_final "
        "GROUP BY client, server, connection_type ORDER BY client, server, connection_type",
    )
    got = [(r["client"], r["server"], r["connection_type"], r["requests"], r["failed"]) for r in rows]
    assert got == [
        ("sg-cart", "orders", "database", TRACES, 0),
        ("sg-cart", "sg-payments", "", TRACES, failed_payments),
        ("sg-cart", "sg-payments", "messaging_system", TRACES, 0),
        ("sg-frontend", "ext-geo", "virtual_node", 1, 0),
        ("sg-frontend", "sg-cart", "", TRACES, 0),
        ("user", "sg-frontend", "virtual_node", TRACES, 0),
    ], got
    cp = rows[1]
    assert cp["client_p99_ms"] == pytest.approx(40.0, rel=0.011)
