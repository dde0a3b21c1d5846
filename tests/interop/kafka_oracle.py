"""The oracle of the Kafka exactness cases (test_kafka_exact.py, issue 13).

Owns everything a case needs besides its own story: the broker and its topics, known OTLP
messages produced with a real client (confluent-kafka), the truth computed from the raw
spans/points in plain Python (it shares nothing with redwatch), the reading of the sink topic
(latest record per key, shares merged as docs/kafka-exactness.md says), the `red` and
`metric_points` tables over SQL, and the per-key comparison (compared, exact, wrong, missing,
extra). It never decides what a case asserts.

Time: event times are in the recent past (a few minutes before now), so one run covers several
10 s windows and 1 m rollups in seconds of wall time. The last windows are closed by one "tick"
message per partition whose span ends now (service `oracle-tick`): the watermark then passes the
end plus allowed lateness of every data window. The tick's own window stays open; tick spans are
in no truth and tick keys are left out of what is read back.
"""

from __future__ import annotations

import math
import os
import random
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import requests
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from prometheus_scrape import scrape, sum_samples
from redwatch_process import RedwatchProcess, sql_rows

S = 1_000_000_000
MS = 1_000_000
# The default window config: the 10 s primary window and the 1 m rollup.
WINDOW_SPECS = (("10s", 10 * S), ("1m", 60 * S))
ALLOWED_LATENESS = 30 * S
MAX_OUT_OF_ORDERNESS = 5 * S
# The default RED buckets (ms), upper bounds inclusive.
BUCKETS_MS = (2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10000, 15000)
TICK_SERVICE = "oracle-tick"
END_MARKER = b"oracle-end-marker:"
DEADLINE_S = float(os.environ.get("KAFKA_EXACT_DEADLINE_S", "60"))
POLL_S = 0.2
# Per-case result lines (keys compared / exact / ...), printed at the end of the session.
REPORT_LINES: list[str] = []
# Group liveness for the test's consumers (librdkafka pass-through, not window config): tansu
# holds a group join for about half the session timeout (23 s with the default 45 s, 3 s with
# 6 s), and a SIGKILLed member must leave the group before its partitions move on.
GROUP_LIVENESS = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}

_STATUS_NAME = {0: "STATUS_CODE_UNSET", 1: "STATUS_CODE_OK", 2: "STATUS_CODE_ERROR"}
_KIND_NAME = {
    trace_pb2.Span.SPAN_KIND_INTERNAL: "SPAN_KIND_INTERNAL",
    trace_pb2.Span.SPAN_KIND_SERVER: "SPAN_KIND_SERVER",
    trace_pb2.Span.SPAN_KIND_CLIENT: "SPAN_KIND_CLIENT",
    trace_pb2.Span.SPAN_KIND_PRODUCER: "SPAN_KIND_PRODUCER",
    trace_pb2.Span.SPAN_KIND_CONSUMER: "SPAN_KIND_CONSUMER",
}
_KIND_CODE = {v: k for k, v in _KIND_NAME.items()}


# --- broker ---------------------------------------------------------------------------------


def brokers() -> str:
    """The broker tests/run-all.sh started (REDWATCH_KAFKA_BROKERS); a loud failure without it."""
    b = os.environ.get("REDWATCH_KAFKA_BROKERS", "").strip()
    if not b:
        raise RuntimeError(
            "REDWATCH_KAFKA_BROKERS is not set: the Kafka exactness cases need a running broker "
            "(tests/run-all.sh starts tansu and sets it)"
        )
    try:
        AdminClient({"bootstrap.servers": b}).list_topics(timeout=10)
    except KafkaException as err:
        raise RuntimeError(f"the Kafka broker at REDWATCH_KAFKA_BROKERS={b} does not answer: {err}") from err
    return b


def unique(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    """Creates `name` and waits until its metadata lists every partition (tansu keeps only part
    of what is produced to an auto-created topic)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        fut.result(timeout=30)
    wait_until(
        lambda: len(admin.list_topics(name, timeout=5).topics[name].partitions) == partitions,
        f"topic {name} lists {partitions} partitions",
        30,
    )


def wait_until(cond: Callable[[], object], what: str, deadline_s: float = DEADLINE_S, on_timeout=None):
    """Polls `cond` until it returns something truthy (returned); raises after the deadline."""
    until = time.monotonic() + deadline_s
    last_err: Exception | None = None
    while True:
        try:
            got = cond()
            if got:
                return got
        except (KafkaException, requests.RequestException, AssertionError) as err:
            last_err = err
        if time.monotonic() >= until:
            extra = on_timeout() if on_timeout else ""
            raise TimeoutError(f"not within {deadline_s:.0f}s: {what} (last error: {last_err})\n{extra}")
        time.sleep(POLL_S)


class GroupOffsets:
    """Reads a consumer group's committed offsets without joining the group."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int):
        self.topic, self.partitions = topic, partitions
        self._c = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": "false"}
        )

    def committed(self) -> dict[int, int]:
        tps = self._c.committed([TopicPartition(self.topic, p) for p in range(self.partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}

    def close(self) -> None:
        self._c.close()


class Produced:
    """A producer that knows the offset of every message it writes: topics are fresh and written
    only by it, so the n-th message of a partition gets offset n; each flush checks that against
    the broker's delivery reports."""

    def __init__(self, bootstrap: str):
        self._p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                            "enable.idempotence": "false", "max.in.flight.requests.per.connection": 1})
        self.sent: dict[tuple[str, int], int] = defaultdict(int)
        self.delivered: dict[tuple[str, int], list[int]] = defaultdict(list)
        self.errors: list[str] = []

    def send(self, topic: str, partition: int, value: bytes) -> int:
        """Queues one message; returns the offset it will have."""

        def report(err, msg):
            if err is not None:
                self.errors.append(f"{topic}/{partition}: {err}")
            else:
                self.delivered[(msg.topic(), msg.partition())].append(msg.offset())

        offset = self.sent[(topic, partition)]
        self.sent[(topic, partition)] += 1
        while True:
            try:
                self._p.produce(topic, value=value, partition=partition, on_delivery=report)
                break
            except BufferError:
                self._p.poll(0.1)
        self._p.poll(0)
        return offset

    def flush(self) -> None:
        left = self._p.flush(60)
        assert left == 0 and not self.errors, f"{left} messages not delivered within 60 s; errors {self.errors[:5]}"
        for tp, n in self.sent.items():
            assert sorted(self.delivered[tp]) == list(range(n)), (
                f"{tp}: the broker gave offsets {sorted(self.delivered[tp])[:10]}... to {n} messages, not 0..{n - 1}")

    def last(self, topic: str, partition: int) -> int:
        return self.sent[(topic, partition)] - 1


# --- spans and the RED truth -----------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    kind: str  # SPAN_KIND_*
    status: int  # 0 unset, 1 ok, 2 error
    end_ns: int
    duration_ms: int


SERIES = (
    ("checkout", "POST /checkout", "SPAN_KIND_SERVER"),
    ("checkout", "SELECT cart", "SPAN_KIND_CLIENT"),
    ("cart", "GET /cart", "SPAN_KIND_SERVER"),
)
# Whole milliseconds (exact sums), several on a bucket bound (inclusive upper bounds).
DURATIONS_MS = (1, 2, 3, 7, 10, 12, 48, 50, 75, 130, 420, 999, 1500, 2000, 4200, 16000)


def minute_base(before_s: int = 300) -> int:
    """A minute boundary `before_s` or more seconds ago (Unix ns): the event-time origin."""
    t = time.time_ns() - before_s * S
    return t - t % (60 * S)


def message_spans(rng: random.Random, base_ns: int, second: int, spans: int = 4) -> list[Span]:
    """The spans of one message at event second `second` after `base_ns`: `spans` spans ending in
    that second, every series and status possible, and now and then a late one (12 s earlier: the
    previous 10 s window, still inside allowed lateness)."""
    out = []
    for _ in range(spans):
        svc, name, kind = rng.choice(SERIES)
        status = rng.choices((0, 1, 2), weights=(6, 2, 2))[0]
        end = base_ns + second * S + rng.randrange(0, 1000) * MS
        out.append(Span(svc, name, kind, status, end, rng.choice(DURATIONS_MS)))
    if second >= 12 and rng.random() < 0.25:
        svc, name, kind = rng.choice(SERIES)
        end = base_ns + (second - 12) * S + rng.randrange(0, 1000) * MS
        out.append(Span(svc, name, kind, 2, end, rng.choice(DURATIONS_MS)))
    return out


def _kv(k: str, v: str) -> KeyValue:
    return KeyValue(key=k, value=AnyValue(string_value=v))


def trace_request(spans: Iterable[Span], rng: random.Random) -> bytes:
    """One ExportTraceServiceRequest: a ResourceSpans per service."""
    req = ExportTraceServiceRequest()
    by_service: dict[str, list[Span]] = defaultdict(list)
    for s in spans:
        by_service[s.service].append(s)
    for svc, ss in by_service.items():
        rs = req.resource_spans.add()
        rs.resource.attributes.append(_kv("service.name", svc))
        sc = rs.scope_spans.add()
        sc.scope.name = "redwatch-oracle"
        for s in ss:
            sp = sc.spans.add()
            sp.trace_id = rng.randbytes(16)
            sp.span_id = rng.randbytes(8)
            sp.name = s.name
            sp.kind = _KIND_CODE[s.kind]
            sp.start_time_unix_nano = s.end_ns - s.duration_ms * MS
            sp.end_time_unix_nano = s.end_ns
            sp.status.code = s.status
    return req.SerializeToString()


@dataclass
class RedAgg:
    """One (window spec, window, series): per status code calls, duration sum and buckets."""

    calls: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    sum_ms: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    buckets: dict[str, list[int]] = field(default_factory=dict)

    def add_span(self, s: Span) -> None:
        st = _STATUS_NAME[s.status]
        self.calls[st] += 1
        self.sum_ms[st] += s.duration_ms
        b = self.buckets.setdefault(st, [0] * (len(BUCKETS_MS) + 1))
        b[next((i for i, le in enumerate(BUCKETS_MS) if s.duration_ms <= le), len(BUCKETS_MS))] += 1

    def add(self, other: RedAgg) -> None:
        for st, v in other.calls.items():
            self.calls[st] += v
        for st, v in other.sum_ms.items():
            self.sum_ms[st] += v
        for st, b in other.buckets.items():
            mine = self.buckets.setdefault(st, [0] * len(b))
            assert len(mine) == len(b), "shares with different bucket layouts"
            for i, c in enumerate(b):
                mine[i] += c

    def _norm(self):
        calls = {k: v for k, v in self.calls.items() if v}
        sums = {k: v for k, v in self.sum_ms.items() if k in calls}
        bks = {k: list(v) for k, v in self.buckets.items() if k in calls}
        return calls, sums, bks

    def same(self, other: RedAgg) -> bool:
        (c1, s1, b1), (c2, s2, b2) = self._norm(), other._norm()
        return (
            c1 == c2
            and b1 == b2
            and s1.keys() == s2.keys()
            and all(math.isclose(s1[k], s2[k], rel_tol=1e-9, abs_tol=1e-6) for k in s1)
        )

    def describe(self) -> str:
        calls, sums, _ = self._norm()
        return ", ".join(f"{k.removeprefix('STATUS_CODE_')}: {calls[k]:g} calls {sums[k]:g} ms" for k in sorted(calls))


RedKey = tuple[str, int, str, str, str]  # (window spec, window start ns, service, span name, kind)


def red_truth(spans: Iterable[Span]) -> dict[RedKey, RedAgg]:
    truth: dict[RedKey, RedAgg] = defaultdict(RedAgg)
    for s in spans:
        for spec, size in WINDOW_SPECS:
            truth[(spec, s.end_ns - s.end_ns % size, s.service, s.name, s.kind)].add_span(s)
    return dict(truth)


def tick_request(rng: random.Random) -> bytes:
    """The drain tick: one span of `oracle-tick` ending now (see the module comment)."""
    return trace_request([Span(TICK_SERVICE, "tick", "SPAN_KIND_INTERNAL", 0, time.time_ns(), 1)], rng)


# --- metric points and their truth -------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    service: str
    metric: str
    kind: str  # gauge | sum (delta, monotonic)
    time_ns: int
    value: float


METRIC_SERIES = (("inventory", "queue.depth", "gauge"), ("inventory", "items.shipped", "sum"),
                 ("billing", "queue.depth", "gauge"))


def message_points(rng: random.Random, base_ns: int, second: int, points: int = 4) -> list[Point]:
    out = []
    for _ in range(points):
        svc, metric, kind = rng.choice(METRIC_SERIES)
        t = base_ns + second * S + rng.randrange(0, 1000) * MS
        out.append(Point(svc, metric, kind, t, float(rng.randrange(0, 500))))
    return out


def metrics_request(points: Iterable[Point]) -> bytes:
    """One ExportMetricsServiceRequest: a ResourceMetrics per service, a Metric per point."""
    req = ExportMetricsServiceRequest()
    by_service: dict[str, list[Point]] = defaultdict(list)
    for p in points:
        by_service[p.service].append(p)
    for svc, ps in by_service.items():
        rm = req.resource_metrics.add()
        rm.resource.attributes.append(_kv("service.name", svc))
        sm = rm.scope_metrics.add()
        sm.scope.name = "redwatch-oracle"
        for p in ps:
            m = sm.metrics.add()
            m.name = p.metric
            if p.kind == "gauge":
                dp = m.gauge.data_points.add()
            else:
                m.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
                m.sum.is_monotonic = True
                dp = m.sum.data_points.add()
                dp.start_time_unix_nano = p.time_ns - 1 * MS
            dp.time_unix_nano = p.time_ns
            dp.as_double = p.value
    return req.SerializeToString()


MetricKey = tuple[str, int, str, str]  # (window spec, window start ns, service, metric)


@dataclass
class MetricAgg:
    count: float = 0.0
    sum: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    gauge: bool = True

    def add_point(self, p: Point) -> None:
        self.gauge = p.kind == "gauge"
        self.count += 1
        self.sum += p.value
        self.min = min(self.min, p.value)
        self.max = max(self.max, p.value)

    def same(self, o: MetricAgg) -> bool:
        if not math.isclose(self.sum, o.sum, rel_tol=1e-9, abs_tol=1e-6):
            return False
        # Gauges: count, min and max of the readings; delta sums: the total is the result.
        return not self.gauge or (self.count == o.count and self.min == o.min and self.max == o.max)

    def describe(self) -> str:
        return f"count {self.count:g} sum {self.sum:g} min {self.min:g} max {self.max:g}"


def metric_truth(points: Iterable[Point]) -> dict[MetricKey, MetricAgg]:
    truth: dict[MetricKey, MetricAgg] = defaultdict(MetricAgg)
    for p in points:
        for spec, size in WINDOW_SPECS:
            truth[(spec, p.time_ns - p.time_ns % size, p.service, p.metric)].add_point(p)
    return dict(truth)


# --- the sink topic ----------------------------------------------------------------------------


@dataclass
class SinkRecord:
    partition: int
    offset: int
    key: bytes
    value: bytes | None


def read_sink(bootstrap: str, topic: str, partitions: int, deadline_s: float = 60) -> list[SinkRecord]:
    """Every record of `topic` up to an end marker this call writes to each partition first: the
    marker lands after everything the broker had acknowledged, so no high watermark (which tansu
    can report wrong) is needed to know where the end is."""
    marker = END_MARKER + uuid.uuid4().hex.encode()
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for part in range(partitions):
        p.produce(topic, key=marker, value=b"", partition=part)
    assert p.flush(30) == 0, f"end markers not delivered to {topic}"
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("oracle-reader"),
            "enable.auto.commit": "false",
            "enable.partition.eof": "false",
        }
    )
    c.assign([TopicPartition(topic, part, OFFSET_BEGINNING) for part in range(partitions)])
    out: list[SinkRecord] = []
    open_parts = set(range(partitions))
    until = time.monotonic() + deadline_s
    try:
        while open_parts:
            assert time.monotonic() < until, f"end markers of {topic} not read within {deadline_s}s (partitions {open_parts})"
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                raise KafkaException(m.error())
            if m.key() == marker:
                open_parts.discard(m.partition())
            elif m.partition() in open_parts and not (m.key() or b"").startswith(END_MARKER):
                out.append(SinkRecord(m.partition(), m.offset(), m.key() or b"", m.value()))
    finally:
        c.close()
    return out


def _attrs(kvs) -> dict[str, str]:
    return {kv.key: kv.value.string_value for kv in kvs}


def decode_red_record(value: bytes) -> dict[RedKey, RedAgg]:
    """One sink record (an ExportMetricsServiceRequest) as per-key aggregates, keyed from its data
    points' attributes (redwatch.window_size, start time, service, span name, kind)."""
    req = ExportMetricsServiceRequest()
    req.ParseFromString(value)
    out: dict[RedKey, RedAgg] = defaultdict(RedAgg)
    for rm in req.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == "traces.span.metrics.calls":
                    for dp in m.sum.data_points:
                        a = _attrs(dp.attributes)
                        k = (a["redwatch.window_size"], dp.start_time_unix_nano, a["service.name"], a["span.name"], a["span.kind"])
                        v = dp.as_int if dp.HasField("as_int") else dp.as_double
                        out[k].calls[a["status.code"]] += v
                elif m.name == "traces.span.metrics.duration":
                    for dp in m.histogram.data_points:
                        a = _attrs(dp.attributes)
                        k = (a["redwatch.window_size"], dp.start_time_unix_nano, a["service.name"], a["span.name"], a["span.kind"])
                        st = a["status.code"]
                        assert tuple(dp.explicit_bounds) == tuple(float(b) for b in BUCKETS_MS), dp.explicit_bounds
                        out[k].sum_ms[st] += dp.sum
                        b = out[k].buckets.setdefault(st, [0] * (len(BUCKETS_MS) + 1))
                        for i, c in enumerate(dp.bucket_counts):
                            b[i] += c
    return dict(out)


def latest_per_key(records: Iterable[SinkRecord]) -> dict[bytes, SinkRecord]:
    """What a compacted topic keeps: the last record of every message key (within a key's
    partition, the highest offset); an empty value deletes the key."""
    latest: dict[bytes, SinkRecord] = {}
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        if r.value:
            latest[r.key] = r
        else:
            latest.pop(r.key, None)
    return latest


def merge_shares(records: Iterable[SinkRecord]) -> dict[RedKey, RedAgg]:
    """The consumer's view of the sink (docs/kafka-exactness.md): the latest record of every
    message key, then the shares of one (window spec, window, series) added — calls, duration
    sums and buckets per status. A share is any message key that carries the same window and
    series (the key names the source partition); a record written again under the same key
    replaces the earlier one instead of adding to it."""
    merged: dict[RedKey, RedAgg] = defaultdict(RedAgg)
    for rec in latest_per_key(records).values():
        for k, agg in decode_red_record(rec.value).items():
            if k[2] != TICK_SERVICE:
                merged[k].add(agg)
    return dict(merged)


# --- the `red` and `metric_points` tables -------------------------------------------------------


@dataclass
class SqlRed:
    calls: float
    errors: float
    min_ms: float | None
    max_ms: float | None
    avg_ms: float | None

    @staticmethod
    def of(agg: RedAgg) -> SqlRed:
        calls = sum(agg.calls.values())
        return SqlRed(calls, agg.calls.get("STATUS_CODE_ERROR", 0.0), None, None,
                      sum(agg.sum_ms.values()) / calls if calls else None)

    def same(self, o: SqlRed) -> bool:
        def close(a, b):
            return (a is None and b is None) or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6))
        return self.calls == o.calls and self.errors == o.errors and close(self.avg_ms, o.avg_ms)

    def describe(self) -> str:
        return f"{self.calls:g} calls {self.errors:g} errors avg {self.avg_ms}"


def sql_truth(spans: Iterable[Span]) -> dict[RedKey, SqlRed]:
    return {k: SqlRed.of(v) for k, v in red_truth(spans).items()}


def sql_red(process: RedwatchProcess) -> dict[RedKey, SqlRed]:
    """Final rows of the `red` table (the tick service left out)."""
    q = ("SELECT window_size, CAST(window_start AS BIGINT) AS ws, service_name, span_name, span_kind, "
         "calls, errors, duration_avg_ms FROM red WHERE is_final")
    out = {}
    for r in sql_rows(process, q):
        if r["service_name"] == TICK_SERVICE:
            continue
        k = (r["window_size"], int(r["ws"]) * MS, r["service_name"], r["span_name"], r["span_kind"])
        assert k not in out, f"two final rows for {k} in the red table"
        # The JSON answer leaves NULLs out: a window restated with no calls left on this instance
        # (its shares were revoked) has no average.
        out[k] = SqlRed(r["calls"], r["errors"], None, None, r.get("duration_avg_ms"))
    return out


def sql_metric_points(process: RedwatchProcess, services: Iterable[str]) -> dict[MetricKey, MetricAgg]:
    names = ", ".join(f"'{s}'" for s in services)
    q = ("SELECT window_size, CAST(window_start AS BIGINT) AS ws, service_name, metric_name, metric_type, "
         f"count, sum, min, max FROM metric_points WHERE is_final AND service_name IN ({names})")
    out = {}
    for r in sql_rows(process, q):
        k = (r["window_size"], int(r["ws"]) * MS, r["service_name"], r["metric_name"])
        assert k not in out, f"two final rows for {k} in the metric_points table"
        gauge = r["metric_type"] == "gauge"
        out[k] = MetricAgg(r["count"] or 0.0, r["sum"] or 0.0,
                           math.inf if r["min"] is None else r["min"],
                           -math.inf if r["max"] is None else r["max"], gauge)
    return out


# --- comparison --------------------------------------------------------------------------------


@dataclass
class Report:
    label: str
    compared: int = 0
    exact: int = 0
    wrong: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    extra: list = field(default_factory=list)

    def ok(self, allow_missing: bool = False) -> bool:
        return not self.wrong and not self.extra and (allow_missing or not self.missing)

    def line(self) -> str:
        return (f"{self.label}: keys compared {self.compared}, exact {self.exact}, wrong {len(self.wrong)}, "
                f"missing {len(self.missing)}, extra {len(self.extra)}")

    def details(self, n: int = 8) -> str:
        def fmt(k):
            spec, start, *rest = k
            return f"{spec} @{start // S} ({time.strftime('%H:%M:%S', time.gmtime(start // S))}) {'|'.join(rest)}"
        lines = [self.line()]
        for k, want, got in self.wrong[:n]:
            lines.append(f"  wrong   {fmt(k)}: truth [{want.describe()}] got [{got.describe()}]")
        for k, want in self.missing[:n]:
            lines.append(f"  missing {fmt(k)}: truth [{want.describe()}]")
        for k, got in self.extra[:n]:
            lines.append(f"  extra   {fmt(k)}: got [{got.describe()}]")
        return "\n".join(lines)


def compare(label: str, truth: dict, got: dict, only: Iterable | None = None) -> Report:
    """Every key of the truth and of what was read: exact, wrong, missing or extra. With `only`,
    the truth is restricted to those keys (used where a table can hold only some windows)."""
    keys = set(truth) | set(got) if only is None else set(only) | set(got)
    rep = Report(label, compared=len(keys))
    for k in sorted(keys):
        want, have = truth.get(k), got.get(k)
        if want is None:
            rep.extra.append((k, have))
        elif have is None:
            rep.missing.append((k, want))
        elif want.same(have):
            rep.exact += 1
        else:
            rep.wrong.append((k, want, have))
    return rep


# --- redwatch ----------------------------------------------------------------------------------


def redwatch_config(bootstrap: str, traces_topic: str, group: str, sink_topic: str | None,
                    metrics_topic: str | None = None, windows: str = "", sink_librdkafka: str = "") -> str:
    """`redwatch run` config: Kafka receiver and sink, SQL and Prometheus on ephemeral ports, the
    default window config unless `windows` (a YAML block) says otherwise."""
    liveness = ", ".join(f"{k}: '{v}'" for k, v in GROUP_LIVENESS.items())
    sink = ""
    if sink_topic:
        sink = (f"  kafka:\n    brokers: ['{bootstrap}']\n    metrics_topic: {sink_topic}\n    spans_topic: null\n"
                + (f"    librdkafka: {{ {sink_librdkafka} }}\n" if sink_librdkafka else ""))
    return (
        "receivers:\n"
        "  otlp:\n    grpc: { endpoint: 127.0.0.1:0 }\n    http: { endpoint: 127.0.0.1:0 }\n"
        f"  kafka:\n    brokers: ['{bootstrap}']\n    traces_topic: {traces_topic}\n"
        f"    metrics_topic: {metrics_topic or 'null'}\n    group_id: {group}\n"
        f"    librdkafka: {{ {liveness} }}\n"
        f"{windows}"
        "exporters:\n  prometheus: { endpoint: 127.0.0.1:0 }\n"
        f"{sink}"
        "sql: { http_endpoint: 127.0.0.1:0, flight_endpoint: null }\n"
    )


class Instance:
    """One `redwatch run` of a case, with its log kept for the failure report."""

    LISTENERS = ("prometheus", "sql_http")

    def __init__(self, workdir: Path, name: str, config: str):
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / f"{name}.yaml"
        path.write_text(config)
        self.name = name
        self.process = RedwatchProcess(path, self.LISTENERS)
        self.process.wait_until_listening()
        self.metrics_url = f"http://{self.process.addresses['prometheus']}/metrics"

    def metric(self, name: str, **labels: str) -> float:
        return sum_samples(scrape(self.metrics_url), name, **labels)

    def assigned(self, topic: str) -> int:
        """Partitions of `topic` assigned here now."""
        return int(self.metric("redwatch_kafka_partition_assigned", topic=topic))

    def kill(self) -> None:
        self.process._proc.send_signal(signal.SIGKILL)
        self.process._proc.wait(timeout=30)
        self.process.stop()

    def terminate(self) -> int:
        return self.process.stop()

    def log(self) -> str:
        return f"===== {self.name} =====\n{self.process.log_text()}"
