"""The SDK load of the anomaly-span tests (test_anomaly_spans.py, test_problem_spans.py,
test_stack_without_docker.py): one service's SERVER spans `GET /pay`, CALLS a window, with
explicit start/end times so that HISTORY_WINDOWS one-second windows of history can be replayed
fast, and a latency spike (600 ms instead of 20 ms, with noise) in the windows of SPIKE.
"""

from __future__ import annotations

import math
import time

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

SEC = 1_000_000_000
MS = 1_000_000
HISTORY_WINDOWS = 45
SPIKE = range(30, 35)
CALLS = 40


def noise(k: int, i: int) -> float:
    return abs(math.modf(math.sin((k * 131 + i * 17) * 12.9898) * 43758.5453)[0])


class SdkSender:
    """One service's SDK TracerProvider that keeps its finished spans in memory, and an OTLP/gRPC
    exporter that the caller sends them with (so it sees each export's result)."""

    def __init__(self, grpc_endpoint: str, service: str, first_window_s: int):
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": service}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.tracer = self.provider.get_tracer("redwatch-interop")
        self.exporter = OTLPSpanExporter(endpoint=grpc_endpoint, insecure=True, timeout=10)
        self.first = first_window_s

    def take_finished(self) -> list:
        """The spans finished since the last call."""
        spans = self.memory.get_finished_spans()
        self.memory.clear()
        return spans

    def shutdown(self) -> None:
        self.exporter.shutdown()
        self.provider.shutdown()


class SdkLoad(SdkSender):
    """One service's SERVER spans, one window at a time, made and exported by the SDK."""

    def __init__(self, grpc_endpoint: str, service: str, first_window_s: int, peer: str = "redwatch"):
        super().__init__(grpc_endpoint, service, first_window_s)
        self.peer = peer  # who the exporter sends to, for the refusal message
        self.k = 0
        # (trace id, span id) -> duration in ms of every span sent, to check exemplar links.
        self.sent_ids: dict[tuple[bytes, bytes], float] = {}

    def latency_ms(self, k: int, i: int) -> float:
        base = 600.0 if k in SPIKE else 20.0
        return base * (1.0 + 0.2 * noise(k, i))

    def send_window(self) -> None:
        start = (self.first + self.k) * SEC
        for i in range(CALLS):
            end = start + i * (SEC - 1) // CALLS
            span = self.tracer.start_span(
                "GET /pay", kind=SpanKind.SERVER, start_time=end - int(self.latency_ms(self.k, i) * MS)
            )
            span.end(end_time=end)
        spans = self.take_finished()
        for s in spans:
            self.sent_ids[(s.context.trace_id.to_bytes(16, "big"), s.context.span_id.to_bytes(8, "big"))] = (
                s.end_time - s.start_time
            ) / MS
        assert self.exporter.export(spans) == SpanExportResult.SUCCESS, f"{self.peer} refused window {self.k}"
        self.k += 1

    def catch_up(self) -> None:
        """Sends every window that has ended by now."""
        while (self.first + self.k + 1) * SEC <= time.time_ns():
            self.send_window()
