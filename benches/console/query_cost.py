"""Engine CPU per query the web console's services board sends, 10k series (issue 18).

    .venv-test/bin/python benches/console/query_cost.py [--binary PATH] [--reps 20]

Same engine, config and load as board_bench.py (10 000 series, 1 000 spans/s). Once every
series is on the board and a minute of history exists, it runs each query kind `--reps` times
back to back and prints the engine's CPU seconds per query (utime + stime from /proc, minus the
engine's idle rate measured just before), rows and bytes of the JSON answer. Query kinds a
binary does not know (e.g. `red_windows` on an older build) are reported as such. Where
board_bench.py says what a live board costs, this says which query it goes to.
"""

from __future__ import annotations

import argparse
import datetime
import os
import tempfile
import time
from pathlib import Path

import board_bench as bb

COLS = "service_name, span_name, span_kind, window_start, window_end, calls, rate_per_s, error_ratio, p50_ms, p99_ms"


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def parse(s: str) -> float:
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def kinds(closed: str, svc: str, spn: str) -> dict[str, tuple[str, str]]:
    since = iso(parse(closed) - 30)  # what the old board re-read after every closed window
    win = iso(parse(closed) - 10)
    return {
        "http_floor": ("SELECT 1 (fixed cost of one API request)", "SELECT 1 AS x"),
        "windows": ("new, each second: red_windows in the look-back",
                    "SELECT window_start, window_end, version, now() AS now FROM red_windows WHERE window_size = '10s' "
                    "AND window_start >= now() - INTERVAL '120 seconds' ORDER BY window_start"),
        "prov_spark": ("each second: open 1m rollup rows of the 100 rows on screen",
                       "SELECT service_name, span_name, span_kind, window_start, rate_per_s, is_final FROM red "
                       f"WHERE window_size = '1m' AND NOT is_final AND window_start >= now() - INTERVAL '120 seconds' "
                       f"AND service_name IN ({svc}) AND span_name IN ({spn}) ORDER BY window_start"),
        "window_rows": ("new, per closed 10 s window: that window's rows",
                        f"SELECT {COLS} FROM red WHERE window_size = '10s' AND is_final "
                        f"AND window_start >= '{win}' AND window_start <= '{win}'"),
        "full_board": ("page load (old: also once a minute): latest window per series",
                       f"SELECT {COLS} FROM (SELECT {COLS}, row_number() OVER (PARTITION BY service_name, span_name, "
                       "span_kind ORDER BY window_start DESC) AS newest FROM red WHERE window_size = '10s' AND is_final "
                       "AND window_start >= now() - INTERVAL '120 seconds') WHERE newest = 1"),
        "spark_hist": ("per closed 1m window: last hour of the 100 rows on screen",
                       "SELECT service_name, span_name, span_kind, window_start, rate_per_s, is_final FROM red "
                       "WHERE window_size = '1m' AND window_start >= now() - INTERVAL '1 hour' "
                       f"AND service_name IN ({svc}) AND span_name IN ({spn}) ORDER BY window_start"),
        "old_closed": ("old, each second: max(window_end)",
                       "SELECT max(window_end) AS closed_end FROM red WHERE window_size = '10s' AND is_final "
                       "AND window_start >= now() - INTERVAL '40 seconds'"),
        "old_relateness": ("old, per closed 10 s window: every window late data may restate",
                           f"SELECT {COLS} FROM red WHERE window_size = '10s' AND is_final "
                           f"AND window_start >= now() - INTERVAL '120 seconds' AND window_end >= '{since}'"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=None)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    if args.binary:
        os.environ["REDWATCH_BIN"] = args.binary
    tmp = Path(tempfile.mkdtemp(prefix="redwatch-console-qcost-"))
    (tmp / "redwatch.yaml").write_text(bb.CONFIG)
    proc = bb.RedwatchProcess(tmp / "redwatch.yaml", ("otlp_http", "sql_http"))
    addrs = proc.wait_until_listening()
    pid = proc._proc.pid
    base = f"http://{addrs['sql_http']}"
    feeder = bb.Feeder(f"http://{addrs['otlp_http']}/v1/traces")
    feeder.start()

    def q(sql: str):
        return bb.http.post(f"{base}/api/v1/sql", json={"query": sql}, timeout=120)

    try:
        deadline = time.monotonic() + 240
        n = 0
        while time.monotonic() < deadline:
            n = q("SELECT count(*) AS n FROM red WHERE window_size = '10s' AND is_final AND window_start >= "
                  "now() - INTERVAL '60 seconds' AND window_start < now() - INTERVAL '50 seconds'").json()["rows"][0]["n"]
            if n >= bb.SERVICES * bb.OPS:
                break
            time.sleep(2)
        assert n >= bb.SERVICES * bb.OPS, f"only {n} series in a window"
        time.sleep(70)
        closed = q("SELECT max(window_end) AS c FROM red WHERE window_size = '10s' AND is_final").json()["rows"][0]["c"]
        vis = q("SELECT DISTINCT service_name, span_name FROM red WHERE window_size = '10s' AND is_final "
                "ORDER BY service_name, span_name LIMIT 100").json()["rows"]
        svc = ", ".join(sorted({f"'{r['service_name']}'" for r in vis}))
        spn = ", ".join(sorted({f"'{r['span_name']}'" for r in vis}))
        c0, t0 = bb.cpu_seconds(pid), time.monotonic()
        time.sleep(10)
        idle = (bb.cpu_seconds(pid) - c0) / (time.monotonic() - t0)
        print(f"CPU: {bb.cpu_model()}, {os.cpu_count()} cores; binary {os.environ.get('REDWATCH_BIN', 'target/debug/redwatch')}")
        print(f"engine CPU without queries: {100 * idle:.2f} % of one core; {args.reps} runs per query")
        print()
        print("| query | when | rows | JSON bytes | engine CPU per query |")
        print("|---|---|---:|---:|---:|")
        for name, (when, sql) in kinds(closed, svc, spn).items():
            r = q(sql)
            if r.status_code != 200:
                print(f"| {name} | {when} | – | – | not run: HTTP {r.status_code} |")
                continue
            rows, size = len(r.json()["rows"]), len(r.content)
            c0, t0 = bb.cpu_seconds(pid), time.monotonic()
            for _ in range(args.reps):
                q(sql)
            cpu = bb.cpu_seconds(pid) - c0 - idle * (time.monotonic() - t0)
            print(f"| {name} | {when} | {rows} | {size} | {1000 * cpu / args.reps:.2f} ms |", flush=True)
    finally:
        feeder.stop.set()
        proc.stop()


if __name__ == "__main__":
    main()
