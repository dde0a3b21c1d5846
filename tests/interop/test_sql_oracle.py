"""Cross-check of the `red` SQL table against an independent oracle (DuckDB over the raw spans).

A seeded random span set is made with the OpenTelemetry Python SDK and sent over OTLP/gRPC to a
fresh `redwatch run` (1 s windows, no rollups, no out-of-orderness, 5 s allowed lateness). Once
the final windows hold every span, `SELECT ... FROM red WHERE is_final` through the SQL HTTP API
must equal the same aggregation DuckDB computes from the spans we sent:

- window_start = floor(end_ns / 1e9) s (1 s tumbling windows aligned to the epoch, by end time);
- calls, errors exact; duration_min_ms / duration_max_ms exact (both sides compute
  (end_ns − start_ns) / 1e6 in double precision); duration_avg_ms within 1e-9 relative;
- p50_ms / p90_ms / p99_ms within 1 % of the *lower* quantile: the value at 0-based rank
  floor(q·(n−1)) of the sorted durations — what a DDSketch with relative accuracy 1 % estimates
  (redwatch reports its bin's estimate, clamped to [min, max]). DuckDB's `quantile_disc` is
  PERCENTILE_DISC, rank ceil(q·n) − 1, a different definition (e.g. n = 10, q = 0.95: rank 9, not
  8), so the lower quantile is taken explicitly from the sorted list;
- `quantile_merge(duration_sketch, q)` per service over all windows, within 1 % of the lower
  quantile of all that service's spans.

The seed is REDWATCH_ORACLE_SEED (default below); a failure prints it.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import time

import duckdb
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from redwatch_process import running, sql_rows

SEED = int(os.environ.get("REDWATCH_ORACLE_SEED", "20261125"))
ROUNDS = 5  # send rounds, paced ~1 s apart so the spans cover several windows
SPANS_PER_ROUND = 600
MAX_AGE_NS = 2_000_000_000  # a span ends at most 2 s before it is sent (lateness is 5 s)
DEADLINE_S = float(os.environ.get("INTEROP_RED_DEADLINE_S", "30"))
QUANTILES = {"p50_ms": 0.5, "p90_ms": 0.9, "p99_ms": 0.99}
RELATIVE_ACCURACY = 0.01

CONFIG = """\
receivers:
  otlp:
    grpc: { endpoint: 127.0.0.1:0 }
    http: null
windows: { size: 1s, rollups: [], max_out_of_orderness: 0s, allowed_lateness: 5s, idle_timeout: 1s }
exporters:
  prometheus: { endpoint: 127.0.0.1:0 }
sql: { http_endpoint: 127.0.0.1:0, flight_endpoint: null }
"""
LISTENERS = ("otlp_grpc", "sql_http", "prometheus")

KIND_LABEL = {
    SpanKind.INTERNAL: "SPAN_KIND_INTERNAL",
    SpanKind.SERVER: "SPAN_KIND_SERVER",
    SpanKind.CLIENT: "SPAN_KIND_CLIENT",
    SpanKind.PRODUCER: "SPAN_KIND_PRODUCER",
    SpanKind.CONSUMER: "SPAN_KIND_CONSUMER",
}
# (service, operation, kind, median duration in ms)
OPERATIONS = [
    ("oracle-frontend", "GET /", SpanKind.SERVER, 40.0),
    ("oracle-frontend", "GET /", SpanKind.CLIENT, 35.0),  # same name, other kind: another series
    ("oracle-frontend", "render", SpanKind.INTERNAL, 2.0),
    ("oracle-cart", "GET /cart", SpanKind.SERVER, 8.0),
    ("oracle-cart", "redis GET", SpanKind.CLIENT, 0.3),
    ("oracle-checkout", "POST /checkout", SpanKind.SERVER, 250.0),
    ("oracle-checkout", "orders.publish", SpanKind.PRODUCER, 5.0),
    ("oracle-worker", "orders.consume", SpanKind.CONSUMER, 900.0),
]
# Durations that probe the edges (ns): zero, 1 ns, exact ms, huge.
EDGE_DURATIONS_NS = [0, 1, 999, 1_000_000, 10_000_000, 1_234_567_891, 30_000_000_000]

@pytest.fixture
def sql_server(tmp_path):
    with running(tmp_path, CONFIG, LISTENERS) as process:
        yield process


sql = sql_rows


def epoch_s(rfc3339: str) -> int:
    t = dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    assert t.microsecond == 0, rfc3339
    return int(t.timestamp())


class Workload:
    """Seeded spans made by the SDK (one TracerProvider per service, as real services do)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.providers: dict[str, tuple[TracerProvider, InMemorySpanExporter]] = {}
        for service in sorted({op[0] for op in OPERATIONS}):
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            memory = InMemorySpanExporter()
            provider.add_span_processor(SimpleSpanProcessor(memory))
            self.providers[service] = (provider, memory)
        self.rows: list[tuple] = []  # (service, name, kind, status, start_ns, end_ns)

    def _duration_ns(self, median_ms: float) -> int:
        r = self.rng.random()
        if r < 0.02:
            return self.rng.choice(EDGE_DURATIONS_NS)
        return int(self.rng.lognormvariate(math.log(median_ms * 1e6), 0.8))

    def make_round(self, n: int) -> list:
        """n spans ending within MAX_AGE_NS before now, in random order of end time."""
        now = time.time_ns()
        made = []
        for _ in range(n):
            service, name, kind, median_ms = self.rng.choice(OPERATIONS)
            end = now - self.rng.randrange(MAX_AGE_NS)
            start = end - self._duration_ns(median_ms)
            r = self.rng.random()
            status = StatusCode.ERROR if r < 0.12 else StatusCode.OK if r < 0.2 else StatusCode.UNSET
            provider, memory = self.providers[service]
            span = provider.get_tracer("redwatch.oracle").start_span(name, kind=kind, start_time=start)
            if status is not StatusCode.UNSET:
                span.set_status(Status(status, "oracle error" if status is StatusCode.ERROR else None))
            span.end(end_time=end)
            self.rows.append((service, name, KIND_LABEL[kind], status.name, start, end))
        for _, memory in self.providers.values():
            made.extend(memory.get_finished_spans())
            memory.clear()
        return made

    def shutdown(self) -> None:
        for provider, _ in self.providers.values():
            provider.shutdown()


def oracle(rows: list[tuple]) -> duckdb.DuckDBPyConnection:
    db = duckdb.connect()
    db.execute(
        "CREATE TABLE spans (service VARCHAR, name VARCHAR, kind VARCHAR, status VARCHAR, "
        "start_ns BIGINT, end_ns BIGINT)"
    )
    db.executemany("INSERT INTO spans VALUES (?, ?, ?, ?, ?, ?)", rows)
    return db


# Lower quantile: 0-based rank floor(q·(n−1)) of the sorted durations (DuckDB lists are 1-based).
def lower_quantile_sql(q: float) -> str:
    # q as DOUBLE (a bare 0.99 is a DECIMAL in DuckDB): the same IEEE product as the sketch's rank.
    return f"list_sort(list(dur_ms))[CAST(floor(CAST({q!r} AS DOUBLE) * (count(*) - 1)) AS BIGINT) + 1]"


def expected_windows(db) -> dict[tuple, dict]:
    quantiles = ", ".join(f"{lower_quantile_sql(q)} AS {col}" for col, q in QUANTILES.items())
    rows = db.execute(
        f"""
        WITH s AS (
          SELECT service, name, kind, status, end_ns // 1000000000 AS window_start,
                 (end_ns - start_ns) / 1e6 AS dur_ms
          FROM spans
        )
        SELECT window_start, service, name, kind,
               count(*) AS calls,
               count(*) FILTER (WHERE status = 'ERROR') AS errors,
               min(dur_ms) AS duration_min_ms, max(dur_ms) AS duration_max_ms,
               avg(dur_ms) AS duration_avg_ms,
               {quantiles}
        FROM s GROUP BY ALL ORDER BY ALL
        """
    ).fetchall()
    cols = [d[0] for d in db.description]
    out = {}
    for r in rows:
        d = dict(zip(cols, r))
        out[(d["window_start"], d["service"], d["name"], d["kind"])] = d
    return out


def within_relative(got: float, want: float, rel: float) -> bool:
    return abs(got - want) <= rel * abs(want) + 1e-12


def test_red_table_equals_duckdb_over_the_raw_spans(sql_server):
    workload = Workload(SEED)
    exporter = OTLPSpanExporter(endpoint=f"http://{sql_server.addresses['otlp_grpc']}", insecure=True, timeout=10)
    try:
        next_round = time.monotonic()
        for _ in range(ROUNDS):
            # Pacing the workload over several windows (not synchronisation).
            time.sleep(max(0.0, next_round - time.monotonic()))
            next_round = time.monotonic() + 1.0
            spans = workload.make_round(SPANS_PER_ROUND)
            for i in range(0, len(spans), 250):
                assert exporter.export(spans[i : i + 250]) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
        workload.shutdown()
    sent = len(workload.rows)
    assert sent == ROUNDS * SPANS_PER_ROUND
    services = sorted({op[0] for op in OPERATIONS})
    in_services = "service_name IN (" + ", ".join(f"'{s}'" for s in services) + ")"

    # Wait until the final windows hold every span (the source goes idle, the watermark follows
    # the wall clock and closes the last windows).
    deadline = time.monotonic() + DEADLINE_S
    final_calls = None
    while time.monotonic() < deadline:
        got = sql(sql_server, f"SELECT sum(calls) AS calls FROM red WHERE is_final AND {in_services}")
        final_calls = got[0].get("calls") if got else None
        if final_calls == sent:
            break
        time.sleep(0.2)
    context = f"(seed {SEED}, {sent} spans sent)\n{sql_server.log_text()[-4000:]}"
    assert final_calls == sent, f"final windows hold {final_calls} calls, expected {sent} {context}"

    db = oracle(workload.rows)
    want = expected_windows(db)
    got_rows = sql(
        sql_server,
        "SELECT window_start, service_name, span_name, span_kind, calls, errors, duration_min_ms, "
        "duration_max_ms, duration_avg_ms, p50_ms, p90_ms, p99_ms, window_size, window_end, error_ratio "
        f"FROM red WHERE is_final AND {in_services} ORDER BY window_start, service_name, span_name, span_kind",
    )
    got = {}
    for r in got_rows:
        key = (epoch_s(r["window_start"]), r["service_name"], r["span_name"], r["span_kind"])
        assert key not in got, f"duplicate final row {key} {context}"
        got[key] = r
    assert set(got) == set(want), (
        f"series/windows differ: only in redwatch {sorted(set(got) - set(want))[:10]}, "
        f"only in DuckDB {sorted(set(want) - set(got))[:10]} {context}"
    )
    assert len(want) >= 3 * len(OPERATIONS), f"the workload should cover several windows: {len(want)} rows"

    problems = []
    for key in sorted(want):
        w, g = want[key], got[key]
        checks = [
            ("calls", g["calls"] == w["calls"]),
            ("errors", g["errors"] == w["errors"]),
            ("duration_min_ms", g["duration_min_ms"] == w["duration_min_ms"]),
            ("duration_max_ms", g["duration_max_ms"] == w["duration_max_ms"]),
            ("duration_avg_ms", within_relative(g["duration_avg_ms"], w["duration_avg_ms"], 1e-9)),
            ("window_size", g["window_size"] == "1s"),
            ("window_end", epoch_s(g["window_end"]) == key[0] + 1),
            ("error_ratio", within_relative(g["error_ratio"], w["errors"] / w["calls"], 1e-12)),
        ]
        checks += [(col, within_relative(g[col], w[col], RELATIVE_ACCURACY + 1e-9)) for col in QUANTILES]
        for col, ok in checks:
            if not ok:
                problems.append(f"{key} {col}: redwatch {g.get(col)!r}, DuckDB {w.get(col)!r}")
    assert not problems, f"{len(problems)} mismatches {context}:\n" + "\n".join(problems[:40])

    # quantile_merge re-aggregates the windows' sketches: per service over every window.
    merged = sql(
        sql_server,
        "SELECT service_name, sum(calls) AS calls, "
        + ", ".join(f"quantile_merge(duration_sketch, {q!r}) AS {col}" for col, q in QUANTILES.items())
        + f" FROM red WHERE is_final AND {in_services} GROUP BY service_name ORDER BY service_name",
    )
    quantiles = ", ".join(f"{lower_quantile_sql(q)} AS {col}" for col, q in QUANTILES.items())
    per_service = db.execute(
        f"SELECT service, count(*) AS calls, {quantiles} FROM "
        "(SELECT service, (end_ns - start_ns) / 1e6 AS dur_ms FROM spans) GROUP BY service ORDER BY service"
    ).fetchall()
    assert [r["service_name"] for r in merged] == [r[0] for r in per_service]
    for r, o in zip(merged, per_service):
        assert r["calls"] == o[1], (r, o)
        for i, col in enumerate(QUANTILES):
            want_q = o[2 + i]
            # Unclamped bin estimate: within 1 % of the exact lower quantile (0 for the zero bin).
            assert within_relative(r[col], want_q, RELATIVE_ACCURACY + 1e-9), (
                f"{r['service_name']} quantile_merge {col}: {r[col]} vs DuckDB {want_q} {context}"
            )
