"""Problem traces, read by an independent OTLP receiver (issue 17).

The same redwatch and SDK load as test_anomaly_spans.py, with problems on (the default): the
latency spike is one `problem_detected` trace whose children are the member anomalies' spans,
and whose links resolve to spans the SDK really exported (the cause's exemplars).
"""

from __future__ import annotations

import time
import uuid

import pytest

from otlp_receiver import attributes
from redwatch_process import LISTENERS, RedwatchServer, running
from spike_load import HISTORY_WINDOWS, SEC, SPIKE, SdkLoad
from test_anomaly_spans import DEADLINE_S, config


@pytest.fixture
def redwatch_with_problems(tmp_path, receiver):
    text = config(receiver.endpoint).replace("problems: { enabled: false }\n", "")
    assert "problems:" not in text
    with running(tmp_path, text, LISTENERS) as process:
        yield RedwatchServer(process)


def test_spike_arrives_as_one_problem_trace(redwatch_with_problems, receiver):
    service = f"payments-{uuid.uuid4().hex[:8]}"
    first = time.time_ns() // SEC - HISTORY_WINDOWS
    load = SdkLoad(redwatch_with_problems.grpc_endpoint, service, first)

    def roots(spans):
        return [
            s
            for s in spans
            if s.span.name == "problem_detected" and s.attributes.get("problem.cause.service") == service
        ]

    def resolved(spans):
        return [s for s in spans if s.span.name == "problem_resolved"]

    try:
        receiver.wait_for(
            lambda spans: any(r.span.trace_id == p.span.trace_id for p in roots(spans) for r in resolved(spans)),
            DEADLINE_S,
            "the problem's root span and its resolution arrive",
            tick=load.catch_up,
        )
    finally:
        load.shutdown()

    found = roots(receiver.spans("problem_detected"))
    assert len(found) == 1, f"one problem for the spike: {[r.attributes for r in found]}"
    root = found[0]
    a = root.attributes
    assert root.resource.get("service.name") == "redwatch", root.resource
    assert not root.span.parent_span_id, "the problem span is its trace's root"
    assert a["problem.id"] == root.span.trace_id.hex()
    assert a["problem.cause.span"] == "GET /pay"
    assert a["problem.cause.signal"].startswith("latency_p"), a
    assert a["problem.summary"].startswith(f"{service} GET /pay (server) latency_p"), a
    assert root.span.start_time_unix_nano == (first + SPIKE[0]) * SEC, "its onset is the spike's first window"

    # Its links resolve to spans the SDK exported: the slowest span of the cause's window.
    links = list(root.span.links)
    assert links, "the problem span links to the cause's exemplars"
    for link in links:
        sent = load.sent_ids.get((link.trace_id, link.span_id))
        assert sent is not None, "a link points at a span the SDK exported"
        assert abs(sent - attributes(link.attributes)["exemplar.duration_ms"]) < 1e-6

    # Its children: every member anomaly span of the service is in the problem's trace; each
    # incident's first span hangs off the root, later windows off that first span.
    spans = [s for s in receiver.spans("anomaly_detected") if s.attributes.get("service.name.observed") == service]
    in_spike = [s for s in spans if s.span.start_time_unix_nano // SEC - first in SPIKE]
    assert in_spike
    assert all(s.span.trace_id == root.span.trace_id for s in in_spike), "the spike's spans are in the problem's trace"
    members = [s for s in spans if s.span.trace_id == root.span.trace_id]
    ids = {s.span.span_id for s in members} | {root.span.span_id}
    assert all(s.span.parent_span_id in ids for s in members), "every member span's parent is in the trace"
    incidents = {s.attributes["anomaly.incident_id"] for s in members}
    children = [s for s in members if s.span.parent_span_id == root.span.span_id]
    assert len(children) == len(incidents) == a["problem.members"], (len(children), incidents, a)
    p99 = [s for s in members if s.attributes["anomaly.signal"] == "latency_p99_ms"]
    assert p99, "the p99 anomaly is a member"

    final = [r for r in resolved(receiver.spans("problem_resolved")) if r.span.trace_id == root.span.trace_id]
    assert len(final) == 1 and final[0].span.parent_span_id == root.span.span_id
