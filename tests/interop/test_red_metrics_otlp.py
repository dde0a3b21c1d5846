"""RED metrics over OTLP: known spans in -> `traces.span.metrics.calls` / `.duration` data points
at an independent OTLP/gRPC receiver (otlp_receiver.py: opentelemetry-proto + grpcio, no
redwatch code), in both temporalities of `exporters.otlp.temporality`.

The spans come from the OpenTelemetry Python SDK with explicit start/end times, so every
duration — and its bucket under the default bounds — is known exactly. Two past 1 s windows
(accepted as late data within `allowed_lateness`) are sent and closed; then one more span lands
in the first window after it was emitted final (a late update). docs/design.md, "Time semantics":
a late update adds only its own delta — as a second delta point over the same window, or as
growth of the cumulative totals (fixed start time, time never moving backwards).
"""

from __future__ import annotations

import time
import uuid

import pytest
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from otlp_receiver import OtlpReceiver
from redwatch_process import LISTENERS, RedwatchServer, running
from spike_load import SdkSender

SEC = 1_000_000_000
MS = 1_000_000
DEADLINE_S = 60.0
DELTA, CUMULATIVE = 1, 2
BOUNDS = [2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10000, 15000]

# (window, status, duration ms): window 0 and 1 first, then one late span in window 0.
FIRST = [
    (0, StatusCode.UNSET, 1.0),
    (0, StatusCode.UNSET, 5.0),
    (0, StatusCode.UNSET, 50.0),  # exactly on a bound (le is inclusive)
    (0, StatusCode.ERROR, 700.0),
    (1, StatusCode.UNSET, 3.0),
    (1, StatusCode.UNSET, 20_000.0),  # above the last bound: +Inf only
]
LATE = [(0, StatusCode.UNSET, 7.0)]


def bucket(ms: float) -> int:
    return next((i for i, b in enumerate(BOUNDS) if ms <= b), len(BOUNDS))


def buckets(durations) -> list[int]:
    out = [0] * (len(BOUNDS) + 1)
    for d in durations:
        out[bucket(d)] += 1
    return out


def config(receiver_endpoint: str, temporality: str) -> str:
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
    temporality: {temporality}
sql: {{ http_endpoint: 127.0.0.1:0, flight_endpoint: null }}
anomaly: {{ enabled: false }}
forecast: {{ enabled: false }}
"""


class Sender(SdkSender):
    def send(self, specs) -> None:
        for i, (w, status, ms) in enumerate(specs):
            end = (self.first + w) * SEC + (i + 1) * 10 * MS
            span = self.tracer.start_span("GET /red", kind=SpanKind.SERVER, start_time=end - int(ms * MS))
            if status == StatusCode.ERROR:
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=end)
        assert self.exporter.export(self.take_finished()) == SpanExportResult.SUCCESS


def number(point) -> float:
    """A NumberDataPoint's value: whole counts arrive as as_int (as the spanmetrics connector
    writes them), weighted ones as as_double."""
    return getattr(point, point.WhichOneof("value"))


def series_points(receiver: OtlpReceiver, name: str, service: str, status: str):
    return [
        p
        for p in receiver.points(name)
        if p.attributes.get("service.name") == service and p.attributes.get("status.code") == status
    ]


def check_common(receiver: OtlpReceiver, service: str, temporality: int) -> None:
    points = [p for p in receiver.points() if p.attributes.get("service.name") == service]
    assert points
    for p in points:
        assert p.resource.get("service.name") == "redwatch", p.resource
        assert p.attributes["span.name"] == "GET /red"
        assert p.attributes["span.kind"] == "SPAN_KIND_SERVER"
        assert p.temporality == temporality, f"{p.name}: temporality {p.temporality}"
        if p.name == "traces.span.metrics.calls":
            assert p.kind == "sum" and p.monotonic
        else:
            assert p.name == "traces.span.metrics.duration", p.name
            assert p.kind == "histogram" and p.unit == "ms"
            assert list(p.point.explicit_bounds) == BOUNDS
            assert p.point.count == sum(p.point.bucket_counts)
            assert len(p.point.bucket_counts) == len(BOUNDS) + 1


@pytest.mark.parametrize("temporality", ["delta", "cumulative"])
def test_red_metrics_arrive_over_otlp(tmp_path, receiver, temporality):
    with running(tmp_path, config(receiver.endpoint, temporality), LISTENERS) as process:
        server = RedwatchServer(process)
        service = f"red-otlp-{uuid.uuid4().hex[:8]}"
        first = time.time_ns() // SEC - 20
        w0, w1 = first * SEC, (first + 1) * SEC
        sender = Sender(server.grpc_endpoint, service, first)
        try:
            sender.send(FIRST)
            unset = lambda: series_points(receiver, "traces.span.metrics.calls", service, "STATUS_CODE_UNSET")  # noqa: E731
            if temporality == "delta":
                receiver.wait_for_points(
                    lambda _: {p.point.start_time_unix_nano for p in unset()} >= {w0, w1},
                    DEADLINE_S,
                    "delta points of both windows arrive",
                )
            else:
                receiver.wait_for_points(
                    lambda _: any(number(p.point) == 5 for p in unset()),
                    DEADLINE_S,
                    "the cumulative total of both windows arrives",
                )
            # Window 0 is now emitted final: this span is a late update of it.
            sender.send(LATE)
            if temporality == "delta":
                receiver.wait_for_points(
                    lambda _: len([p for p in unset() if p.point.start_time_unix_nano == w0]) >= 2,
                    DEADLINE_S,
                    "the late update's delta point arrives",
                )
            else:
                receiver.wait_for_points(
                    lambda _: any(number(p.point) == 6 for p in unset()),
                    DEADLINE_S,
                    "the late update grows the cumulative total",
                )
            time.sleep(1.0)  # anything else (wrongly) sent would show up now
        finally:
            sender.shutdown()

    check_common(receiver, service, DELTA if temporality == "delta" else CUMULATIVE)
    calls = lambda st: series_points(receiver, "traces.span.metrics.calls", service, st)  # noqa: E731
    durs = lambda st: series_points(receiver, "traces.span.metrics.duration", service, st)  # noqa: E731
    u0 = [d for w, s, d in FIRST if w == 0 and s == StatusCode.UNSET]
    u1 = [d for w, s, d in FIRST if w == 1 and s == StatusCode.UNSET]
    late = [d for _, _, d in LATE]
    if temporality == "delta":
        by_window = lambda pts, w: sorted(  # noqa: E731
            (p for p in pts if p.point.start_time_unix_nano == w * SEC), key=lambda p: p.point.time_unix_nano
        )
        # Window 0, UNSET: the first emission, then the late update's own delta.
        c0 = by_window(calls("STATUS_CODE_UNSET"), first)
        assert [number(p.point) for p in c0] == [3, 1], [p.point for p in c0]
        assert all(p.point.time_unix_nano == w0 + SEC for p in c0)
        h0 = by_window(durs("STATUS_CODE_UNSET"), first)
        got = sorted((list(p.point.bucket_counts), p.point.sum) for p in h0)
        want = sorted([(buckets(u0), sum(u0)), (buckets(late), sum(late))])
        assert got == want
        c1 = by_window(calls("STATUS_CODE_UNSET"), first + 1)
        assert [number(p.point) for p in c1] == [2]
        h1 = by_window(durs("STATUS_CODE_UNSET"), first + 1)
        assert [list(p.point.bucket_counts) for p in h1] == [buckets(u1)]
        assert h1[0].point.bucket_counts[-1] == 1, "20 s is in the +Inf bucket only"
        assert (h1[0].point.start_time_unix_nano, h1[0].point.time_unix_nano) == (w1, w1 + SEC)
        # ERROR: one point, window 0, its 700 ms span in the le=800 bucket.
        ce = calls("STATUS_CODE_ERROR")
        assert [(p.point.start_time_unix_nano, number(p.point)) for p in ce] == [(w0, 1)]
        he = durs("STATUS_CODE_ERROR")
        assert [list(p.point.bucket_counts) for p in he] == [buckets([700.0])]
    else:
        cu = calls("STATUS_CODE_UNSET")
        hu = durs("STATUS_CODE_UNSET")
        # One fixed start time: the first window of the series.
        assert {p.point.start_time_unix_nano for p in cu + hu} == {w0}
        # Totals only grow, and time never moves backwards.
        ordered = sorted(cu, key=lambda p: p.point.time_unix_nano)
        values = [number(p.point) for p in ordered]
        assert values == sorted(values), values
        assert values[-1] == 6
        assert len({p.point.time_unix_nano for p in cu}) == len(cu), "one time per cumulative point"
        last = max(hu, key=lambda p: p.point.time_unix_nano).point
        assert list(last.bucket_counts) == buckets(u0 + u1 + late)
        assert last.count == 6
        assert abs(last.sum - sum(u0 + u1 + late)) < 1e-6
        assert last.time_unix_nano > w1 + SEC - 1, "the late update does not move time back"
        ce = calls("STATUS_CODE_ERROR")
        assert [(p.point.start_time_unix_nano, number(p.point)) for p in ce] == [(w0, 1)]
        he = durs("STATUS_CODE_ERROR")
        assert [list(p.point.bucket_counts) for p in he] == [buckets([700.0])]
