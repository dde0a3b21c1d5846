"""A full pipeline queue is retryable backpressure for a real OpenTelemetry SDK: the Python SDK's
OTLP/gRPC exporter gets RESOURCE_EXHAUSTED with RetryInfo, waits as told, retries, and in the end
every span is delivered exactly once (accepted count == spans sent; no export reports failure).

The queue is made tiny (one batch, 1 ms enqueue timeout). As the SDK exporters start, other
threads keep the pipeline busy with large raw OTLP/HTTP "ballast" requests (50 000 spans each)
until an exporter has been refused,
so the exporters meet a full queue however fast the machine is; the test repeats a round
(bounded) until at least one gRPC request was refused, so it always exercises the retry path it
is about. Only the gRPC receiver's counters are compared: the ballast goes to the HTTP receiver.
"""

from __future__ import annotations

import threading
import time

import requests
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from prometheus_scrape import scrape, sum_samples
from redwatch_process import DEFAULT_CONFIG, LISTENERS, running

# The engine's default windows (10 s, 30 s allowed lateness), not the tests' usual 1 s windows
# with 5 s lateness: the SDK's spans are made before each round and then wait through the
# ballast and the exporters' retries, which on a loaded machine takes longer than 5 s, and
# the receiver would refuse the oldest as late (partial success, which the SDK reports as a
# success). The case is about backpressure, so only the queue differs from the defaults.
_TEST_WINDOWS = (
    "windows: { size: 1s, rollups: [], max_out_of_orderness: 0s, allowed_lateness: 5s, idle_timeout: 1s }\n"
)
assert _TEST_WINDOWS in DEFAULT_CONFIG
CONFIG = DEFAULT_CONFIG.replace(_TEST_WINDOWS, "") + "limits: { queue_capacity: 1, enqueue_timeout: 1ms }\n"

EXPORTERS = 8
BATCHES = 4
SPANS_PER_BATCH = 2000
MAX_ROUNDS = 5
DEADLINE_S = 120
BALLAST_SPANS = 50_000
BALLAST_SENDERS = 3
BALLAST_POSTS = 40


def ballast_body() -> bytes:
    """One OTLP/HTTP protobuf request of BALLAST_SPANS spans (100 series), encoded once."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value="ballast")))
    ss = rs.scope_spans.add()
    now = time.time_ns()
    for i in range(BALLAST_SPANS):
        span = ss.spans.add()
        span.trace_id = (i + 1).to_bytes(16, "big")
        span.span_id = (i + 1).to_bytes(8, "big")
        span.name = f"ballast-{i % 100}"
        span.kind = 2
        span.start_time_unix_nano = now - 1_000_000
        span.end_time_unix_nano = now
    return req.SerializeToString()


def make_batches(service: str) -> list[list]:
    """Real SDK spans (ReadableSpan), made with a TracerProvider and kept in memory."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("backpressure-test")
    for i in range(BATCHES * SPANS_PER_BATCH):
        now = time.time_ns()
        tracer.start_span(f"op-{i % 16}", start_time=now - 1_000_000).end(end_time=now)
    spans = list(memory.get_finished_spans())
    provider.shutdown()
    return [spans[i : i + SPANS_PER_BATCH] for i in range(0, len(spans), SPANS_PER_BATCH)]


def counters(metrics_url: str) -> tuple[float, float]:
    samples = scrape(metrics_url)
    accepted = sum_samples(samples, "redwatch_spans_accepted_total", receiver="otlp_grpc")
    refused = sum_samples(
        samples, "redwatch_requests_rejected_total", receiver="otlp_grpc", reason="backpressure"
    )
    return accepted, refused


def spans_refused(metrics_url: str) -> float:
    """Spans the gRPC receiver refused one by one (partial success: late, bad, ...)."""
    return sum_samples(scrape(metrics_url), "redwatch_spans_rejected_total", receiver="otlp_grpc")


def test_sdk_exporter_retries_a_full_queue_and_delivers_everything(tmp_path):
    with running(tmp_path, CONFIG, LISTENERS) as process:
        endpoint = f"http://{process.addresses['otlp_grpc']}"
        metrics_url = f"http://{process.addresses['prometheus']}/metrics"
        traces_url = f"http://{process.addresses['otlp_http']}/v1/traces"
        sent = 0
        refused = 0.0
        for round_ in range(MAX_ROUNDS):
            work = [make_batches(f"bp-{round_}-{e}") for e in range(EXPORTERS)]
            # Made after the SDK's spans, fresh each round: ballast the receiver refused as
            # late would never reach the queue.
            ballast = ballast_body()
            refused_before = counters(metrics_url)[1]

            def keep_busy():
                # Until an exporter has met the full queue (bounded): then the burst stops and
                # the exporters get through when they retry.
                with requests.Session() as http:
                    http.trust_env = False
                    for _ in range(BALLAST_POSTS):
                        if counters(metrics_url)[1] > refused_before:
                            return
                        # 200 or 429: either way the pipeline has work or the queue is full.
                        http.post(
                            traces_url,
                            data=ballast,
                            headers={"Content-Type": "application/x-protobuf"},
                            timeout=60,
                        )

            busy = [threading.Thread(target=keep_busy) for _ in range(BALLAST_SENDERS)]
            for t in busy:
                t.start()
            results: list[SpanExportResult] = []
            lock = threading.Lock()

            def export(batches):
                exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=60)
                try:
                    for batch in batches:
                        r = exporter.export(batch)
                        with lock:
                            results.append(r)
                finally:
                    exporter.shutdown()

            threads = [threading.Thread(target=export, args=(w,)) for w in work]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for t in busy:
                t.join()
            sent += EXPORTERS * BATCHES * SPANS_PER_BATCH
            assert results == [SpanExportResult.SUCCESS] * (EXPORTERS * BATCHES), (
                f"an export failed for good: {results}"
            )
            _, refused = counters(metrics_url)
            if refused > 0:
                break
        assert refused > 0, f"the queue never filled in {MAX_ROUNDS} rounds: the retry path was not exercised"

        deadline = time.monotonic() + DEADLINE_S
        accepted = 0.0
        while time.monotonic() < deadline:
            accepted, refused = counters(metrics_url)
            if accepted >= sent:
                break
            time.sleep(0.2)  # poll interval of a deadline loop
        assert accepted == sent, (
            f"accepted {accepted} of {sent} spans ({refused} requests refused and retried, "
            f"{spans_refused(metrics_url)} spans refused one by one)"
        )
