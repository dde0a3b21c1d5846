"""A naive model of the RED series redwatch must expose for a set of finished SDK spans.

It knows only the contract (README.md and docs/design.md, "Signals that leave"): one series per (service, span name, kind,
status), calls counted, durations in milliseconds summed and bucketed with inclusive upper bounds.
It must stay independent of redwatch's code: the point is to compare against it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

CALLS = "traces_span_metrics_calls_total"
BUCKET = "traces_span_metrics_duration_milliseconds_bucket"
SUM = "traces_span_metrics_duration_milliseconds_sum"
COUNT = "traces_span_metrics_duration_milliseconds_count"
RED_PREFIX = "traces_span_metrics_"

DEFAULT_BUCKETS_MS = (2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10000, 15000)
SUM_REL_TOLERANCE = 1e-6

_KIND = {
    SpanKind.INTERNAL: "SPAN_KIND_INTERNAL",
    SpanKind.SERVER: "SPAN_KIND_SERVER",
    SpanKind.CLIENT: "SPAN_KIND_CLIENT",
    SpanKind.PRODUCER: "SPAN_KIND_PRODUCER",
    SpanKind.CONSUMER: "SPAN_KIND_CONSUMER",
}
_STATUS = {
    StatusCode.UNSET: "STATUS_CODE_UNSET",
    StatusCode.OK: "STATUS_CODE_OK",
    StatusCode.ERROR: "STATUS_CODE_ERROR",
}

# A scraped or expected sample: (sample name, sorted label pairs) -> value.
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def le_label(bound: float) -> str:
    """Canonical text of an `le` bound, so `10`, `10.0` and `1e1` compare equal."""
    value = float(bound)
    return "+Inf" if math.isinf(value) else repr(value)


def sample_key(name: str, labels: dict[str, str]) -> SampleKey:
    labels = dict(labels)
    if "le" in labels:
        labels["le"] = le_label(float(labels["le"]))
    return name, tuple(sorted(labels.items()))


@dataclass
class _Series:
    calls: int = 0
    sum_ms: float = 0.0
    durations_ms: list[float] = field(default_factory=list)


class ExpectedRed:
    """Accumulates finished spans; `samples()` is what /metrics must show for their services."""

    def __init__(self, buckets_ms: Iterable[float] = DEFAULT_BUCKETS_MS):
        self.buckets_ms = tuple(float(b) for b in buckets_ms)
        self._series: dict[tuple[str, str, str, str], _Series] = {}
        self.services: set[str] = set()
        self.span_count = 0

    def add_spans(self, spans: Iterable[ReadableSpan]) -> None:
        for span in spans:
            self.add_span(span)

    def add_span(self, span: ReadableSpan) -> None:
        assert span.start_time is not None and span.end_time is not None, "span not ended"
        service = str(span.resource.attributes.get("service.name", "unknown_service"))
        key = (service, span.name, _KIND[span.kind], _STATUS[span.status.status_code])
        duration_ms = (span.end_time - span.start_time) / 1e6
        series = self._series.setdefault(key, _Series())
        series.calls += 1
        series.sum_ms += duration_ms
        series.durations_ms.append(duration_ms)
        self.services.add(service)
        self.span_count += 1

    def samples(self) -> dict[SampleKey, float]:
        out: dict[SampleKey, float] = {}
        for (service, span_name, kind, status), series in self._series.items():
            labels = {
                "service_name": service,
                "span_name": span_name,
                "span_kind": kind,
                "status_code": status,
            }
            out[sample_key(CALLS, labels)] = series.calls
            out[sample_key(COUNT, labels)] = series.calls
            out[sample_key(SUM, labels)] = series.sum_ms
            for bound in (*self.buckets_ms, math.inf):
                cumulative = sum(1 for d in series.durations_ms if d <= bound)
                out[sample_key(BUCKET, {**labels, "le": le_label(bound)})] = cumulative
        return out

    def describe(self) -> str:
        rows = []
        for key, series in sorted(self._series.items()):
            durations = ", ".join(f"{d:g}" for d in sorted(series.durations_ms))
            rows.append(f"  {key}: calls={series.calls} durations_ms=[{durations}]")
        return "\n".join(rows)


def red_samples_for(scraped: dict[SampleKey, float], services: set[str]) -> dict[SampleKey, float]:
    """The RED samples on /metrics that belong to the given services (anything else is ignored)."""
    out = {}
    for key, value in scraped.items():
        name, labels = key
        if name.startswith(RED_PREFIX) and dict(labels).get("service_name") in services:
            out[key] = value
    return out


def _values_equal(name: str, expected: float, actual: float) -> bool:
    if name == SUM:
        return math.isclose(actual, expected, rel_tol=SUM_REL_TOLERANCE, abs_tol=1e-9)
    return actual == expected


def diff_red(expected: dict[SampleKey, float], actual: dict[SampleKey, float]) -> list[str]:
    """Human-readable differences; empty when `actual` is exactly what the contract requires."""
    problems = []
    for key in sorted(expected.keys() - actual.keys()):
        problems.append(f"missing    {_fmt(key)} expected={expected[key]:g}")
    for key in sorted(actual.keys() - expected.keys()):
        problems.append(f"unexpected {_fmt(key)} value={actual[key]:g}")
    for key in sorted(expected.keys() & actual.keys()):
        if not _values_equal(key[0], expected[key], actual[key]):
            problems.append(f"wrong      {_fmt(key)} expected={expected[key]!r} actual={actual[key]!r}")
    return problems


_LABEL_ORDER = {"service_name": 0, "span_name": 1, "span_kind": 2, "status_code": 3, "le": 4}


def _fmt(key: SampleKey) -> str:
    name, labels = key
    ordered = sorted(labels, key=lambda kv: (_LABEL_ORDER.get(kv[0], 9), kv[0]))
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in ordered) + "}"
