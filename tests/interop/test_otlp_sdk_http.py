"""The OpenTelemetry Python SDK's OTLP/HTTP protobuf exporter -> redwatch -> exact RED on /metrics."""

from __future__ import annotations

import threading

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from red_assertions import assert_red_matches
from span_workload import send_workload


class SentRequests:
    """A requests.Session for the SDK exporter that remembers what went over the wire."""

    def __init__(self):
        self.session = requests.Session()
        self.session.trust_env = False
        self.seen: list[tuple] = []
        self._lock = threading.Lock()
        self.session.hooks["response"].append(self._record)

    def _record(self, response, *args, **kwargs):
        with self._lock:
            self.seen.append(
                (response.request.headers.copy(), response.status_code, response.headers.copy(), response.content)
            )


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip], ids=["plain", "gzip"])
def test_sdk_http_protobuf_exporter_red(redwatch, service_names, compression):
    wire = SentRequests()
    spans = send_workload(
        service_names,
        lambda: OTLPSpanExporter(
            endpoint=redwatch.http_traces_url, compression=compression, timeout=10, session=wire.session
        ),
    )

    assert wire.seen, "the SDK exporter sent no HTTP request"
    for headers, status, response_headers, body in wire.seen:
        assert status == 200, (status, body[:500])
        # OTLP/HTTP: the response uses the request's Content-Type and is an ExportTraceServiceResponse.
        assert response_headers.get("Content-Type", "").startswith("application/x-protobuf"), response_headers
        answer = ExportTraceServiceResponse.FromString(body)
        assert answer.partial_success.rejected_spans == 0, answer
        assert headers.get("Content-Type") == "application/x-protobuf", headers
        if compression is Compression.Gzip:
            assert headers.get("Content-Encoding") == "gzip", headers
        else:
            assert "Content-Encoding" not in headers, headers

    assert_red_matches(redwatch, spans, receiver="otlp_http")
