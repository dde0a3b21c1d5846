"""OpenTelemetry Python SDK metrics -> redwatch (OTLP/gRPC and OTLP/HTTP, delta and cumulative
temporality) -> the expected `metric_points` rows over `POST /api/v1/sql`.

Each case records into a counter, an up-down counter, a histogram and an observable gauge, and
exports twice (two collections, via `force_flush`). The two exports may land in one 1 s window or
in two, so the assertions add the final rows of every window up: the totals do not depend on
where the window boundary fell. Cumulative streams must come out as the same deltas as delta
ones: the SDK's first cumulative point carries a start time, so it counts from there.
"""

from __future__ import annotations

import time

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from redwatch_process import RedwatchProcess, running, sql_rows

DEADLINE_S = 30.0

CONFIG = """\
receivers:
  otlp:
    grpc: { endpoint: 127.0.0.1:0 }
    http: { endpoint: 127.0.0.1:0 }
windows: { size: 1s, rollups: [], max_out_of_orderness: 0s, allowed_lateness: 5s, idle_timeout: 1s }
exporters:
  prometheus: null
sql: { http_endpoint: 127.0.0.1:0, flight_endpoint: null }
"""
LISTENERS = ("otlp_grpc", "otlp_http", "sql_http")

# The SDK's default explicit bucket bounds, and where the recorded values fall.
SDK_BOUNDS = [0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0, 10000.0]
HIST_VALUES = [[5.0, 50.0, 500.0], [7.0]]

@pytest.fixture
def server(tmp_path):
    with running(tmp_path, CONFIG, LISTENERS) as process:
        yield process


sql = sql_rows


def temporality(kind: AggregationTemporality) -> dict:
    instruments = [Counter, UpDownCounter, Histogram, ObservableCounter, ObservableUpDownCounter, ObservableGauge]
    return {i: kind for i in instruments}


def exporter(process: RedwatchProcess, protocol: str, kind: AggregationTemporality):
    if protocol == "grpc":
        return GrpcMetricExporter(
            endpoint=f"http://{process.addresses['otlp_grpc']}",
            insecure=True,
            timeout=10,
            preferred_temporality=temporality(kind),
        )
    return HttpMetricExporter(
        endpoint=f"http://{process.addresses['otlp_http']}/v1/metrics",
        timeout=10,
        preferred_temporality=temporality(kind),
    )


def record_and_export(provider: MeterProvider, temperatures: list[float]) -> None:
    meter = provider.get_meter("redwatch-interop", "1.0")
    orders = meter.create_counter("orders", unit="1")
    queue = meter.create_up_down_counter("queue.size", unit="1")
    latency = meter.create_histogram("latency", unit="ms")
    readings = iter(temperatures)

    def temperature(_options: CallbackOptions):
        yield Observation(next(readings), {"room": "lab"})

    meter.create_observable_gauge("temperature", callbacks=[temperature], unit="Cel")

    # Export 1.
    orders.add(3, {"shop": "a"})
    orders.add(4, {"shop": "a"})
    queue.add(10)
    queue.add(-3)
    for v in HIST_VALUES[0]:
        latency.record(v)
    assert provider.force_flush(10_000)
    # Export 2 (in the same or a later window).
    time.sleep(0.3)
    orders.add(5, {"shop": "a"})
    queue.add(-2)
    for v in HIST_VALUES[1]:
        latency.record(v)
    assert provider.force_flush(10_000)


def expected_bucket_counts() -> list[int]:
    counts = [0] * (len(SDK_BOUNDS) + 1)
    for v in [x for batch in HIST_VALUES for x in batch]:
        i = next((i for i, b in enumerate(SDK_BOUNDS) if v <= b), len(SDK_BOUNDS))
        counts[i] += 1
    return counts


@pytest.mark.parametrize("kind", [AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE], ids=["delta", "cumulative"])
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sdk_metrics_arrive_as_metric_points(server, protocol, kind):
    service = f"mp-{protocol}-{kind.name.lower()}"
    reader = PeriodicExportingMetricReader(exporter(server, protocol, kind), export_interval_millis=3_600_000)
    provider = MeterProvider(
        resource=Resource.create({"service.name": service, "service.instance.id": "i-1"}),
        metric_readers=[reader],
    )
    try:
        record_and_export(provider, [20.0, 25.0, 30.0])
        want = {
            # metric: (type, unit, count, sum, min, max)
            "latency": ("histogram", "ms", 4.0, 562.0),
            "orders": ("counter", "1", 2.0, 12.0),
            "queue.size": ("up_down_counter", "1", 2.0, 5.0),
            "temperature": ("gauge", "Cel", 2.0, 45.0),
        }
        query = (
            'SELECT metric_name, metric_type, unit, sum("count") AS n, sum("sum") AS total, '
            'min("min") AS lo, max("max") AS hi, count(*) AS windows '
            f"FROM metric_points WHERE is_final AND service_name = '{service}' "
            "GROUP BY metric_name, metric_type, unit ORDER BY metric_name"
        )
        deadline = time.monotonic() + DEADLINE_S
        rows: list[dict] = []
        while time.monotonic() < deadline:
            rows = sql(server, query)
            got = {r["metric_name"]: (r["metric_type"], r["unit"], r["n"], r["total"]) for r in rows}
            if got == want:
                break
            time.sleep(0.2)
        got = {r["metric_name"]: (r["metric_type"], r["unit"], r["n"], r["total"]) for r in rows}
        assert got == want, rows
        by_name = {r["metric_name"]: r for r in rows}
        # Gauge readings: min and max of the two collections.
        assert (by_name["temperature"]["lo"], by_name["temperature"]["hi"]) == (20.0, 25.0)
        if kind == AggregationTemporality.DELTA:
            # Delta points carry their own min and max; a cumulative point's cover its whole
            # history, so only the first (from its start) keeps them.
            assert (by_name["latency"]["lo"], by_name["latency"]["hi"]) == (5.0, 500.0)
            assert (by_name["orders"]["lo"], by_name["orders"]["hi"]) == (5.0, 7.0)

        # Attributes, buckets and the newest gauge reading, row by row.
        detail = sql(
            server,
            "SELECT metric_name, window_start, attributes, bucket_bounds, bucket_counts, \"last\" "
            f"FROM metric_points WHERE is_final AND service_name = '{service}' ORDER BY metric_name, window_start",
        )
        hist = [r for r in detail if r["metric_name"] == "latency"]
        assert all(r["bucket_bounds"] == SDK_BOUNDS for r in hist), hist
        summed = [sum(c) for c in zip(*[r["bucket_counts"] for r in hist])]
        assert summed == expected_bucket_counts(), hist
        temps = [r for r in detail if r["metric_name"] == "temperature"]
        assert temps[-1]["last"] == 25.0, temps
        assert all(r["attributes"] == {"room": "lab"} for r in temps), temps
        orders = [r for r in detail if r["metric_name"] == "orders"]
        assert all(r["attributes"] == {"shop": "a"} for r in orders), orders
    finally:
        provider.shutdown()
