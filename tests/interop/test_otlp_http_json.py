"""OTLP/HTTP JSON -> redwatch -> exact RED on /metrics.

The Python SDK has no JSON exporter, so the request is built from real SDK spans: the SDK's own
protobuf encoder, then the protobuf JSON mapping fixed up to OTLP/JSON (hex ids, integer enums,
lowerCamelCase keys), as the OTLP specification defines it.
"""

from __future__ import annotations

import base64
import gzip
import json

import pytest
import requests
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

from red_assertions import assert_red_matches
from span_workload import SdkClients, count_spans

_ID_KEYS = ("traceId", "spanId", "parentSpanId")


def _ids_to_hex(node):
    """OTLP/JSON encodes trace and span ids as lowercase hex, not base64 like proto3 JSON."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _ID_KEYS and isinstance(value, str):
                node[key] = base64.b64decode(value).hex()
            else:
                _ids_to_hex(value)
    elif isinstance(node, list):
        for item in node:
            _ids_to_hex(item)
    return node


def otlp_json_request(spans) -> dict:
    message = encode_spans(spans)
    body = MessageToDict(message, use_integers_for_enums=True, preserving_proto_field_name=False)
    return _ids_to_hex(body)


def test_otlp_json_encoding_is_otlp_json(service_names):
    """Guards the converter itself: hex ids, integer enums, camelCase keys."""
    clients = SdkClients.create(service_names)
    clients.emit()
    spans = clients.finished_spans()
    body = otlp_json_request(spans)
    first = body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert len(first["traceId"]) == 32 and int(first["traceId"], 16)
    assert len(first["spanId"]) == 16 and int(first["spanId"], 16)
    assert isinstance(first["kind"], int)
    assert "startTimeUnixNano" in first and "endTimeUnixNano" in first
    children = [
        s for rs in body["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"] if "parentSpanId" in s
    ]
    assert children and all(len(c["parentSpanId"]) == 16 for c in children)
    by_id = {s.context.span_id: s for s in spans}
    for child in children:
        assert int(child["parentSpanId"], 16) in by_id


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_http_json_red(redwatch, service_names, gzipped):
    clients = SdkClients.create(service_names)  # in-memory only: we send the request ourselves
    clients.emit()
    spans = clients.finished_spans()
    assert len(spans) == count_spans()

    payload = json.dumps(otlp_json_request(spans)).encode()
    headers = {"Content-Type": "application/json"}
    if gzipped:
        payload = gzip.compress(payload)
        headers["Content-Encoding"] = "gzip"
    session = requests.Session()
    session.trust_env = False
    resp = session.post(redwatch.http_traces_url, data=payload, headers=headers, timeout=10)

    assert resp.status_code == 200, f"POST {redwatch.http_traces_url} -> {resp.status_code}: {resp.text[:2000]}"
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    answer = resp.json()
    assert isinstance(answer, dict), resp.text[:2000]
    assert int(answer.get("partialSuccess", {}).get("rejectedSpans", 0)) == 0, answer

    assert_red_matches(redwatch, spans, receiver="otlp_http")
