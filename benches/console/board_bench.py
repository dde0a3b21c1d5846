"""Web console cost with 10k series (issue 18): board render time in a real browser and the
engine's CPU with and without a live board open, in one run.

    .venv-test/bin/python benches/console/board_bench.py [--binary target/release/redwatch]

Starts `redwatch run` with the default config (ephemeral ports), feeds 10 000 series (200
services × 50 operations, SERVER spans over OTLP/HTTP protobuf; each series gets one span per
10 s window, 1 000 spans/s) and waits until the board query returns every series. Then, in the
same run, it measures the engine's CPU (utime + stime from /proc/<pid>/stat) over phases of
`--phase` seconds: without the console, with the board open in headless Chromium (live
updates, 1 per second), and without it again. The board's render time is read in the browser
(`performance` marks set by app.js: from navigation start to the first table with rows, and
to its sparklines). Prints one Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "interop"))
from redwatch_process import RedwatchProcess  # noqa: E402

SERVICES, OPS = 200, 50
CONFIG = """\
receivers:
  otlp:
    grpc: { endpoint: 127.0.0.1:0 }
    http: { endpoint: 127.0.0.1:0 }
exporters:
  prometheus: { endpoint: 127.0.0.1:0 }
sql: { http_endpoint: 127.0.0.1:0, flight_endpoint: null }
"""
http = requests.Session()
http.trust_env = False


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Feeder(threading.Thread):
    """Every second, one span for each of 1/10 of the series (all of them every 10 s)."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.stop, self.sent, self.failed = url, threading.Event(), 0, 0

    def request(self, part: int, now_ns: int) -> bytes:
        req = ExportTraceServiceRequest()
        for s in range(SERVICES):
            rs = req.resource_spans.add()
            rs.resource.attributes.append(KeyValue(key="service.name", value=AnyValue(string_value=f"svc-{s:03d}")))
            ss = rs.scope_spans.add()
            for o in range(part * OPS // 10, (part + 1) * OPS // 10):
                sp = ss.spans.add()
                sp.trace_id = os.urandom(16)
                sp.span_id = os.urandom(8)
                sp.name = f"op-{o:02d}"
                sp.kind = Span.SPAN_KIND_SERVER
                dur = (5 + (s * 7 + o * 13) % 200) * 1_000_000
                sp.end_time_unix_nano = now_ns - (s * OPS + o) % 1_000_000
                sp.start_time_unix_nano = sp.end_time_unix_nano - dur
                if (s + o + part) % 37 == 0:
                    sp.status.code = 2
        return req.SerializeToString()

    def run(self) -> None:
        part = 0
        while not self.stop.is_set():
            t = time.monotonic()
            body = self.request(part, time.time_ns())
            r = http.post(self.url, data=body, headers={"Content-Type": "application/x-protobuf"}, timeout=30)
            if r.status_code == 200:
                self.sent += SERVICES * OPS // 10
            else:
                self.failed += 1
            part = (part + 1) % 10
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - t)))


def browser(profile: str):
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,800",
              f"--user-data-dir={profile}"):
        opts.add_argument(a)
    return webdriver.Chrome(options=opts, service=Service(executable_path="/usr/bin/chromedriver"))


def measure(pid: int, seconds: float) -> float:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100.0 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=None, help="redwatch binary (default: $REDWATCH_BIN or target/debug)")
    ap.add_argument("--phase", type=float, default=60.0, help="seconds per CPU phase")
    ap.add_argument("--renders", type=int, default=5, help="board loads to time")
    args = ap.parse_args()
    if args.binary:
        os.environ["REDWATCH_BIN"] = args.binary
    tmp = Path(tempfile.mkdtemp(prefix="redwatch-console-bench-"))
    (tmp / "redwatch.yaml").write_text(CONFIG)
    proc = RedwatchProcess(tmp / "redwatch.yaml", ("otlp_http", "sql_http"))
    addrs = proc.wait_until_listening()
    pid = proc._proc.pid
    base = f"http://{addrs['sql_http']}"
    feeder = Feeder(f"http://{addrs['otlp_http']}/v1/traces")
    feeder.start()
    driver = None
    try:
        board = ("SELECT count(*) AS n FROM (SELECT service_name, span_name, span_kind, row_number() OVER "
                 "(PARTITION BY service_name, span_name, span_kind ORDER BY window_start DESC) AS newest FROM red "
                 "WHERE window_size = '10s' AND is_final AND window_start >= now() - INTERVAL '5 minutes') WHERE newest = 1")
        deadline = time.monotonic() + 180
        n = 0
        while time.monotonic() < deadline:
            n = http.post(f"{base}/api/v1/sql", json={"query": board}, timeout=30).json()["rows"][0]["n"]
            if n >= SERVICES * OPS:
                break
            time.sleep(2)
        assert n >= SERVICES * OPS, f"only {n} series on the board"
        time.sleep(70)  # a full minute of history, so every 1m rollup window exists
        without1 = measure(pid, args.phase)
        driver = browser(str(tmp / "chromium"))
        renders = []
        for _ in range(args.renders):
            driver.get("about:blank")  # a fresh page load each time (a hash change would not reload)
            driver.get(f"{base}/#/board")
            deadline = time.monotonic() + 30
            got = None
            while time.monotonic() < deadline and not got:
                got = driver.execute_script(
                    "const r = performance.getEntriesByName('board-rows')[0], s = performance.getEntriesByName('board-sparklines')[0];"
                    "return r && s ? [r.startTime, s.startTime, +document.querySelector('#board').dataset.total] : null")
                time.sleep(0.05)
            assert got and got[2] >= SERVICES * OPS, got
            renders.append(got)
        with_console = measure(pid, args.phase)
        updates = driver.execute_script("return +document.querySelector('#board').dataset.ticks")
        driver.quit()
        driver = None
        without2 = measure(pid, args.phase)
    finally:
        feeder.stop.set()
        if driver:
            driver.quit()
        proc.stop()
    rows_ms = sorted(r[0] for r in renders)
    spark_ms = sorted(r[1] for r in renders)
    base_cpu = (without1 + without2) / 2
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores; binary {os.environ.get('REDWATCH_BIN', 'target/debug/redwatch')}")
    print(f"series on the board: {SERVICES * OPS}; spans sent {feeder.sent}, failed requests {feeder.failed}")
    print()
    print("| measure | value |")
    print("|---|---:|")
    print(f"| board rows drawn after navigation, median of {len(renders)} (max) | {rows_ms[len(rows_ms)//2]:.0f} ms ({rows_ms[-1]:.0f} ms) |")
    print(f"| board with sparklines, median (max) | {spark_ms[len(spark_ms)//2]:.0f} ms ({spark_ms[-1]:.0f} ms) |")
    print(f"| engine CPU without console, before / after | {without1:.2f} % / {without2:.2f} % of one core |")
    print(f"| engine CPU with the live board open ({updates} updates in {args.phase:.0f} s + loads) | {with_console:.2f} % |")
    print(f"| cost of the live board (with − mean without) | **{with_console - base_cpu:.2f} %** of one core |")


if __name__ == "__main__":
    main()
