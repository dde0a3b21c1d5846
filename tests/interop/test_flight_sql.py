"""Flight SQL with a standard non-Rust client: ADBC's Flight SQL driver and pyarrow.

Spans go in through the OpenTelemetry SDK's OTLP/gRPC exporter; once the `red` table counts all of
them as final, the test queries it over Flight SQL (the DB-API cursor prepares every statement, so
this exercises prepared statements too) and compares per-series calls and errors exactly with a
naive count of the finished spans. It also checks the ADBC metadata calls (GetInfo / GetObjects /
table types / table schema) and that bad SQL or a write is a clean client error after which the
server keeps answering.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterable

import adbc_driver_flightsql.dbapi as flight_sql
import pyarrow as pa
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from redwatch_process import DEFAULT_CONFIG, LISTENERS, RedwatchProcess, RedwatchServer, running
from span_workload import send_workload

DEADLINE_S = float(os.environ.get("INTEROP_RED_DEADLINE_S", "30"))

# The interop config with both SQL listeners on ephemeral ports (added unless it has them).
SQL_CONFIG = (
    DEFAULT_CONFIG
    if "flight_endpoint: 127.0.0.1:0" in DEFAULT_CONFIG
    else DEFAULT_CONFIG + "sql: { http_endpoint: 127.0.0.1:0, flight_endpoint: 127.0.0.1:0 }\n"
)
SQL_LISTENERS = LISTENERS + ("sql_http", "flight_sql")

_KIND = {
    SpanKind.INTERNAL: "SPAN_KIND_INTERNAL",
    SpanKind.SERVER: "SPAN_KIND_SERVER",
    SpanKind.CLIENT: "SPAN_KIND_CLIENT",
    SpanKind.PRODUCER: "SPAN_KIND_PRODUCER",
    SpanKind.CONSUMER: "SPAN_KIND_CONSUMER",
}


class SqlServer(RedwatchServer):
    """A started server that also serves SQL over HTTP and Flight SQL."""

    def __init__(self, process: RedwatchProcess):
        super().__init__(process)
        self.flight_sql = process.addresses["flight_sql"]
        self.sql_http = process.addresses["sql_http"]

    @property
    def flight_uri(self) -> str:
        return f"grpc://{self.flight_sql}"


@pytest.fixture
def redwatch(tmp_path):
    """Overrides conftest's `redwatch` for this module (same lifecycle, SQL listeners on), so the
    failure report still carries the server log."""
    with running(tmp_path, SQL_CONFIG, SQL_LISTENERS) as process:
        yield SqlServer(process)


# Per-series (service, span name, kind) -> (calls, errors).
Series = dict[tuple[str, str, str], tuple[float, float]]


def expected_series(spans: Iterable[ReadableSpan]) -> Series:
    """The naive model: status is not a key of `red`; errors are spans with status ERROR."""
    calls: Counter = Counter()
    errors: Counter = Counter()
    for span in spans:
        key = (span.resource.attributes["service.name"], span.name, _KIND[span.kind])
        calls[key] += 1
        if span.status.status_code is StatusCode.ERROR:
            errors[key] += 1
    return {k: (float(calls[k]), float(errors[k])) for k in calls}


def sql_list(values: Iterable[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(values))


def connect(server: SqlServer):
    # autocommit=True: redwatch has no transactions, so the driver need not try to turn them on.
    return flight_sql.connect(server.flight_uri, autocommit=True)


def final_calls(cur, services: str) -> float:
    cur.execute(f"SELECT coalesce(sum(calls), 0.0) AS n FROM red WHERE is_final AND service_name IN ({services})")
    (n,) = cur.fetchone()
    return float(n)


def wait_for_final_calls(cur, services: str, want: float) -> None:
    deadline = time.monotonic() + DEADLINE_S
    got = final_calls(cur, services)
    while got != want:
        assert time.monotonic() < deadline, f"red counts {got} final calls after {DEADLINE_S}s, expected {want}"
        time.sleep(0.2)
        got = final_calls(cur, services)


def send_grpc_workload(server: SqlServer, service_names: dict[str, str]) -> list[ReadableSpan]:
    return send_workload(
        service_names,
        lambda: OTLPSpanExporter(endpoint=server.grpc_endpoint, insecure=True, timeout=10),
    )


def test_red_over_flight_sql_matches_the_spans_sent(redwatch, service_names):
    spans = send_grpc_workload(redwatch, service_names)
    expected = expected_series(spans)
    services = sql_list(service_names.values())

    with connect(redwatch) as conn, conn.cursor() as cur:
        wait_for_final_calls(cur, services, float(len(spans)))

        cur.execute(
            "SELECT service_name, span_name, span_kind, sum(calls) AS calls, sum(errors) AS errors "
            f"FROM red WHERE is_final AND service_name IN ({services}) "
            "GROUP BY service_name, span_name, span_kind ORDER BY service_name, span_name, span_kind"
        )
        table: pa.Table = cur.fetch_arrow_table()
        assert table.column_names == ["service_name", "span_name", "span_kind", "calls", "errors"]
        assert table.schema.field("calls").type == pa.float64()
        assert table.schema.field("service_name").type == pa.string()
        got = {
            (r["service_name"], r["span_name"], r["span_kind"]): (r["calls"], r["errors"])
            for r in table.to_pylist()
        }
        assert got == expected

        # Window bounds arrive as Arrow timestamps in UTC.
        cur.execute(f"SELECT window_start, window_end FROM red WHERE service_name IN ({services}) LIMIT 1")
        bounds = cur.fetch_arrow_table()
        assert bounds.schema.field("window_start").type == pa.timestamp("ms", tz="UTC")


def test_metadata_calls_and_errors_leave_the_server_up(redwatch, service_names):
    with connect(redwatch) as conn:
        info = conn.adbc_get_info()
        assert info["vendor_name"] == "redwatch"
        assert info["vendor_version"]

        assert "TABLE" in conn.adbc_get_table_types()

        schema = conn.adbc_get_table_schema("red")
        for name in ("window_start", "service_name", "calls", "errors", "p99_ms", "is_final"):
            assert name in schema.names, name

        objects = conn.adbc_get_objects(depth="all", table_name_filter="red").read_all().to_pylist()
        tables = [
            table
            for catalog in objects
            for db_schema in catalog["catalog_db_schemas"] or []
            for table in db_schema["db_schema_tables"] or []
        ]
        assert [t["table_name"] for t in tables] == ["red"]
        columns = [c["column_name"] for c in tables[0]["table_columns"]]
        assert columns[:3] == ["window_size", "window_start", "window_end"]

        with conn.cursor() as cur:
            for bad, code in [
                ("SELEC 1", "invalid_sql"),
                ("SELECT no_such_column FROM red", "invalid_query"),
                ("CREATE TABLE t (a INT)", "read_only"),
                ("DELETE FROM red", "read_only"),
            ]:
                with pytest.raises(flight_sql.ProgrammingError) as err:
                    cur.execute(bad)
                    cur.fetchall()
                assert code in str(err.value), str(err.value)
                assert redwatch.process.is_running()
                cur.execute("SELECT 1 AS one")
                assert cur.fetchall() == [(1,)]

    # Ingest still works after the errors, and a fresh connection sees it.
    spans = send_grpc_workload(redwatch, service_names)
    with connect(redwatch) as conn, conn.cursor() as cur:
        wait_for_final_calls(cur, sql_list(service_names.values()), float(len(spans)))
