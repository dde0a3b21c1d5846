"""The OpenTelemetry Python SDK's OTLP/gRPC exporter -> redwatch -> exact RED on /metrics."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

from red_assertions import assert_red_matches
from span_workload import send_workload


@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip], ids=["plain", "gzip"])
def test_sdk_grpc_exporter_red(redwatch, service_names, compression):
    spans = send_workload(
        service_names,
        lambda: OTLPSpanExporter(endpoint=redwatch.grpc_endpoint, insecure=True, compression=compression, timeout=10),
    )
    assert_red_matches(redwatch, spans, receiver="otlp_grpc")
