"""An independent OTLP/gRPC trace and metrics receiver: the stand-in for Jaeger / a Collector in
the interop tests.

Built only from the `opentelemetry-proto` and `grpcio` Python packages — no redwatch code — so
what it accepts is what any OTLP backend would accept. It answers every `TraceService/Export`
and `MetricsService/Export` with success and keeps the decoded spans and metric data points
(with their resource attributes) for assertions.

Use it in-process (`OtlpReceiver().start()`), or run it alone to watch redwatch's output:

    python tests/interop/otlp_receiver.py --port 14317   # prints one line per received span
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent import futures
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span


def any_value(v: AnyValue):
    """The Python value of an OTLP AnyValue (scalars; others as their text form)."""
    kind = v.WhichOneof("value")
    if kind in ("string_value", "bool_value", "int_value", "double_value"):
        return getattr(v, kind)
    return str(v)


def attributes(kvs) -> dict:
    return {kv.key: any_value(kv.value) for kv in kvs}


@dataclass
class ReceivedSpan:
    resource: dict
    scope: str
    span: Span

    @property
    def attributes(self) -> dict:
        return attributes(self.span.attributes)


@dataclass
class ReceivedPoint:
    """One metric data point with its metric's name, unit, type and temporality."""

    resource: dict
    scope: str
    name: str
    unit: str
    kind: str  # the Metric `data` oneof: "sum", "histogram", "gauge", ...
    temporality: int  # AggregationTemporality: 1 = DELTA, 2 = CUMULATIVE (0 for gauges)
    monotonic: bool
    point: object  # NumberDataPoint or HistogramDataPoint

    @property
    def attributes(self) -> dict:
        return attributes(self.point.attributes)


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: OtlpReceiver):
        self._receiver = receiver

    def Export(self, request, context):  # noqa: N802 (gRPC method name)
        self._receiver._add_metrics(request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver):
        self._receiver = receiver

    def Export(self, request, context):  # noqa: N802 (gRPC method name)
        self._receiver._add(request)
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """A gRPC server on 127.0.0.1 (port 0 = ephemeral) that records every received span and
    metric data point."""

    def __init__(self, port: int = 0, on_span=None):
        self._spans: list[ReceivedSpan] = []
        self._points: list[ReceivedPoint] = []
        self.metric_requests = 0
        self._cond = threading.Condition()
        self._on_span = on_span
        self.requests = 0
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self), self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_MetricsService(self), self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        if self.port == 0:
            raise RuntimeError(f"cannot bind the OTLP receiver on 127.0.0.1:{port}")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=2).wait(5)

    def _add(self, request) -> None:
        received = []
        for rs in request.resource_spans:
            res = attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    received.append(ReceivedSpan(res, ss.scope.name, span))
        with self._cond:
            self.requests += 1
            self._spans.extend(received)
            self._cond.notify_all()
        if self._on_span:
            for r in received:
                self._on_span(r)

    def _add_metrics(self, request) -> None:
        received = []
        for rm in request.resource_metrics:
            res = attributes(rm.resource.attributes)
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    if kind is None:
                        continue
                    data = getattr(m, kind)
                    temporality = getattr(data, "aggregation_temporality", 0)
                    monotonic = getattr(data, "is_monotonic", False)
                    for p in data.data_points:
                        received.append(ReceivedPoint(res, sm.scope.name, m.name, m.unit, kind, temporality, monotonic, p))
        with self._cond:
            self.metric_requests += 1
            self._points.extend(received)
            self._cond.notify_all()

    def points(self, name: str | None = None) -> list[ReceivedPoint]:
        with self._cond:
            return [p for p in self._points if name is None or p.name == name]

    def wait_for_points(self, predicate, deadline_s: float, what: str, tick=None) -> list[ReceivedPoint]:
        """Like `wait_for`, over the received metric data points."""
        until = time.monotonic() + deadline_s
        while True:
            points = self.points()
            if predicate(points):
                return points
            if time.monotonic() >= until:
                raise AssertionError(f"timed out after {deadline_s:.0f}s waiting until {what}; received {len(points)} points")
            if tick:
                tick()
            with self._cond:
                self._cond.wait(timeout=0.2)

    def spans(self, name: str | None = None) -> list[ReceivedSpan]:
        with self._cond:
            return [s for s in self._spans if name is None or s.span.name == name]

    def wait_for(self, predicate, deadline_s: float, what: str, tick=None) -> list[ReceivedSpan]:
        """Waits until `predicate(spans)` holds (calling `tick()` between checks, e.g. to keep a
        load going); raises AssertionError naming `what` after `deadline_s`."""
        until = time.monotonic() + deadline_s
        while True:
            spans = self.spans()
            if predicate(spans):
                return spans
            if time.monotonic() >= until:
                raise AssertionError(f"timed out after {deadline_s:.0f}s waiting until {what}; received {len(spans)} spans")
            if tick:
                tick()
            with self._cond:
                self._cond.wait(timeout=0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=14317)
    args = parser.parse_args()

    def show(r: ReceivedSpan) -> None:
        print(f"{r.span.name} trace={r.span.trace_id.hex()} span={r.span.span_id.hex()} {r.attributes}", flush=True)

    receiver = OtlpReceiver(args.port, on_span=show).start()
    print(f"listening otlp_receiver 127.0.0.1:{receiver.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        receiver.stop()


if __name__ == "__main__":
    main()
