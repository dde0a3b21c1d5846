"""The spans the interop tests send, created with the real OpenTelemetry Python SDK.

Every span gets an explicit start and end time (nanoseconds), so its duration - and therefore its
histogram bucket - is known exactly. End times are "now" when the span is created, so nothing is
late for redwatch's 1 s windows. Durations cover every default bucket, values exactly on a bound
(le is inclusive), a zero duration and one above the last bound (+Inf only).
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

MS = 1_000_000  # nanoseconds


@dataclass(frozen=True)
class SpanSpec:
    service: str  # key into the test's services ("frontend", "backend")
    name: str
    kind: SpanKind
    status: StatusCode
    duration_ns: int
    children: tuple[SpanSpec, ...] = ()


def _s(service, name, kind, status, duration_ns, *children):
    return SpanSpec(service, name, kind, status, duration_ns, tuple(children))


SERVER, CLIENT, INTERNAL = SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL
PRODUCER, CONSUMER = SpanKind.PRODUCER, SpanKind.CONSUMER
UNSET, OK, ERROR = StatusCode.UNSET, StatusCode.OK, StatusCode.ERROR

# Trees of spans; a child ends together with its parent (same end time), so it is never older
# than the spans sent before it. Several series get several spans in different buckets.
# fmt: off
WORKLOAD: tuple[SpanSpec, ...] = (
    _s("frontend", "GET /api/orders", SERVER, UNSET, 75 * MS,
       _s("frontend", "SELECT orders", CLIENT, UNSET, 6_500_000),
       _s("backend", "POST /charge", SERVER, OK, 50 * MS)),  # 50 ms: exactly on a bound
    _s("frontend", "GET /api/orders", SERVER, UNSET, 500_000),  # 0.5 ms
    _s("frontend", "GET /api/orders", SERVER, UNSET, 2 * MS),  # exactly on the first bound
    _s("frontend", "GET /api/orders", SERVER, UNSET, 10 * MS),  # exactly on a bound
    _s("frontend", "GET /api/orders", SERVER, UNSET, 10 * MS + 1),  # 1 ns above a bound
    _s("frontend", "GET /api/orders", SERVER, ERROR, 10 * MS),
    _s("frontend", "GET /api/orders", SERVER, ERROR, 1400 * MS,  # exactly on a bound
       _s("frontend", "SELECT orders", CLIENT, ERROR, 1399 * MS)),
    _s("frontend", "GET /api/orders", SERVER, ERROR, 2500 * MS),
    _s("frontend", "GET /api/orders", SERVER, OK, 3 * MS),
    _s("frontend", "SELECT orders", CLIENT, UNSET, 4 * MS),
    _s("frontend", "SELECT orders", CLIENT, UNSET, 200 * MS),
    _s("frontend", "SELECT orders", CLIENT, UNSET, 15000 * MS),  # exactly on the last bound
    _s("frontend", "SELECT orders", CLIENT, UNSET, 20000 * MS),  # above every bound: +Inf only
    _s("frontend", "render", INTERNAL, OK, 0),  # zero duration
    _s("frontend", "render", INTERNAL, OK, 7_250_000),
    _s("backend", "orders.created", PRODUCER, UNSET, 8 * MS),
    _s("backend", "orders.created", PRODUCER, UNSET, 800 * MS),
    _s("backend", "orders.consume", CONSUMER, ERROR, 1000 * MS,
       _s("backend", "orders.store", INTERNAL, UNSET, 999_999_999)),
    _s("backend", "orders.consume", CONSUMER, ERROR, 5000 * MS),
    _s("backend", "orders.consume", CONSUMER, ERROR, 10000 * MS),
    _s("backend", "POST /charge", SERVER, ERROR, 400 * MS),
    _s("backend", "POST /charge", SERVER, OK, 100 * MS),
    _s("backend", "POST /charge", SERVER, UNSET, 1234_567_891),
)
# fmt: on


def count_spans(specs: Sequence[SpanSpec] = WORKLOAD) -> int:
    return sum(1 + count_spans(s.children) for s in specs)


def unique_service_names(test_name: str, keys: Sequence[str] = ("frontend", "backend")) -> dict[str, str]:
    """Per-test service names, so tests never see each other's series."""
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40]
    run = uuid.uuid4().hex[:8]
    return {key: f"interop-{slug}-{run}-{key}" for key in keys}


class RecordingExporter(SpanExporter):
    """Delegates to a real SDK exporter and keeps every export result for assertions."""

    def __init__(self, inner: SpanExporter):
        self.inner = inner
        self.results: list[tuple[int, SpanExportResult]] = []
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.inner.export(spans)
        with self._lock:
            self.results.append((len(spans), result))
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def exported_ok(self) -> int:
        return sum(n for n, r in self.results if r is SpanExportResult.SUCCESS)

    def failures(self) -> list[tuple[int, SpanExportResult]]:
        return [(n, r) for n, r in self.results if r is not SpanExportResult.SUCCESS]


@dataclass
class ServiceTracer:
    service_name: str
    provider: TracerProvider
    tracer: trace.Tracer
    finished: InMemorySpanExporter
    exporter: RecordingExporter | None = None


@dataclass
class SdkClients:
    """One TracerProvider per service (the resource is per provider)."""

    services: dict[str, ServiceTracer] = field(default_factory=dict)

    @classmethod
    def create(cls, service_names: dict[str, str], make_exporter=None, batch: bool = True) -> SdkClients:
        """`make_exporter()` builds the real OTLP exporter for a provider; None = in-memory only."""
        clients = cls()
        for key, service_name in service_names.items():
            provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
            finished = InMemorySpanExporter()
            provider.add_span_processor(SimpleSpanProcessor(finished))
            recording = None
            if make_exporter is not None:
                recording = RecordingExporter(make_exporter())
                processor = BatchSpanProcessor(recording) if batch else SimpleSpanProcessor(recording)
                provider.add_span_processor(processor)
            tracer = provider.get_tracer("redwatch.interop", "0.1.0")
            clients.services[key] = ServiceTracer(service_name, provider, tracer, finished, recording)
        return clients

    def emit(self, specs: Sequence[SpanSpec] = WORKLOAD) -> None:
        for spec in specs:
            self._emit_tree(spec)

    def _emit_tree(self, spec: SpanSpec, parent: trace.Span | None = None, end_ns: int | None = None) -> None:
        end = time.time_ns() if end_ns is None else end_ns
        ctx = trace.set_span_in_context(parent) if parent is not None else None
        tracer = self.services[spec.service].tracer
        span = tracer.start_span(spec.name, context=ctx, kind=spec.kind, start_time=end - spec.duration_ns)
        span.set_attribute("interop.expected_duration_ns", spec.duration_ns)
        for child in spec.children:
            assert child.duration_ns <= spec.duration_ns, "a child must fit inside its parent"
            self._emit_tree(child, parent=span, end_ns=end)
        if spec.status is not StatusCode.UNSET:
            span.set_status(Status(spec.status, "interop error" if spec.status is StatusCode.ERROR else None))
        span.end(end_time=end)

    def flush(self, timeout_millis: int = 30000) -> None:
        for svc in self.services.values():
            assert svc.provider.force_flush(timeout_millis), f"force_flush timed out for {svc.service_name}"

    def finished_spans(self) -> list[ReadableSpan]:
        spans: list[ReadableSpan] = []
        for svc in self.services.values():
            spans.extend(svc.finished.get_finished_spans())
        return spans

    def check_exports_succeeded(self) -> int:
        """Asserts every export the SDK made returned SUCCESS; returns the number of spans sent."""
        sent = 0
        for svc in self.services.values():
            assert svc.exporter is not None
            assert not svc.exporter.failures(), f"{svc.service_name}: failed exports {svc.exporter.failures()}"
            sent += svc.exporter.exported_ok()
        return sent

    def shutdown(self) -> None:
        for svc in self.services.values():
            svc.provider.shutdown()


def send_workload(service_names: dict[str, str], make_exporter) -> list[ReadableSpan]:
    """Emits the workload with one `make_exporter()` per service, flushes, and asserts that every
    export succeeded and carried every span; returns the spans."""
    clients = SdkClients.create(service_names, make_exporter)
    try:
        clients.emit()
        clients.flush()
        sent = clients.check_exports_succeeded()
    finally:
        clients.shutdown()
    spans = clients.finished_spans()
    assert sent == len(spans) == count_spans()
    return spans


def check_durations(spans: Sequence[ReadableSpan]) -> None:
    """The SDK kept our explicit timestamps (guards the model against a test-side mistake)."""
    for span in spans:
        expected = span.attributes["interop.expected_duration_ns"]
        assert span.end_time - span.start_time == expected, (span.name, span.start_time, span.end_time)
