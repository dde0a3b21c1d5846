"""Replays labelled series through a real `redwatch run` process: OTLP/HTTP (JSON encoding)
gauges in, one point per window, and results out of the SQL HTTP API. Standard library only.

Knowing when every decision is in: the replay is a backfill (the windows are late on arrival,
see README.md), so they are emitted when the watermark next moves, all in one pass whose rows go
to `metric_points` first and to the detectors after. A point of an unwatched metric
(`replay.end`) follows the data; once its window is final, that pass has begun. A second
`replay.end` point is sent only then: the metrics operator runs on one task, so it is processed
after that pass has finished, and once its own window is final every detector decision about the
data is in the `anomalies` table.
"""

import json
import os
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

WINDOW_NS = 5 * 60 * 10**9
END_METRIC = "replay.end"
DEADLINE_S = 120


class ReplayError(RuntimeError):
    pass


def _post(url, body, content_type="application/json"):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        raise ReplayError(f"POST {url}: HTTP {e.code}: {e.read()[:500]!r}") from e


def config_yaml(signals, warmup_windows, ports_dir):
    """The run's config: default `anomaly:` apart from `signals` and `warmup_windows`; 5 m
    windows without rollups; every listener on an ephemeral port; SQL retention long enough to
    keep a replayed week (retention counts from the newest event time)."""
    sig = ", ".join(json.dumps(s) for s in signals)
    return f"""# written by benches/skab/replay.py
receivers:
  otlp:
    grpc: {{ endpoint: 127.0.0.1:0 }}
    http: {{ endpoint: 127.0.0.1:0 }}
windows:
  size: 5m
  rollups: []
  allowed_lateness: 30d
  idle_timeout: 1s
exporters:
  prometheus: {{ endpoint: 127.0.0.1:0 }}
sql:
  http_endpoint: 127.0.0.1:0
  flight_endpoint: 127.0.0.1:0
  retention: 30d
anomaly:
  signals: [{sig}]
  warmup_windows: {warmup_windows}
"""


class Redwatch:
    """One `redwatch run` process; started on enter, stopped (SIGTERM) on exit."""

    def __init__(self, binary, cfg_text, workdir):
        self.binary = binary
        self.workdir = workdir
        self.cfg_path = os.path.join(workdir, "redwatch.yaml")
        with open(self.cfg_path, "w") as f:
            f.write(cfg_text)
        self.log_path = os.path.join(workdir, "redwatch.log")
        self.proc = None
        self.addr = {}

    def __enter__(self):
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen([self.binary, "run", "--config", self.cfg_path],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + DEADLINE_S
        want = {"otlp_http", "sql_http", "prometheus"}
        while not want <= self.addr.keys():
            if self.proc.poll() is not None:
                raise ReplayError(f"redwatch exited ({self.proc.returncode}): {self.log_tail()}")
            if time.monotonic() > deadline:
                raise ReplayError(f"redwatch listeners not up: {self.log_tail()}")
            with open(self.log_path) as f:
                for m in re.finditer(r"listening (\w+) (\S+)", f.read()):
                    self.addr[m.group(1)] = m.group(2)
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_tail(self):
        with open(self.log_path) as f:
            return f.read()[-2000:]

    def sql(self, query):
        r = _post(f"http://{self.addr['sql_http']}/api/v1/sql", {"query": query, "format": "json"})
        if "error" in r:
            raise ReplayError(f"SQL error: {r['error']}")
        return r["rows"]

    def export(self, metrics):
        """One ExportMetricsServiceRequest (OTLP JSON); fails on any rejected point."""
        body = {"resourceMetrics": [{
            "resource": {"attributes": [_attr("service.name", "skab")]},
            "scopeMetrics": [{"scope": {"name": "redwatch-skab-bench"}, "metrics": metrics}],
        }]}
        r = _post(f"http://{self.addr['otlp_http']}/v1/metrics", body)
        ps = r.get("partialSuccess") or {}
        if int(ps.get("rejectedDataPoints", 0) or 0):
            raise ReplayError(f"points rejected: {ps}")

    def self_metric(self, name):
        """Sum of a self-metric's samples on /metrics."""
        with urllib.request.urlopen(f"http://{self.addr['prometheus']}/metrics", timeout=30) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total


def _attr(k, v):
    return {"key": k, "value": {"stringValue": v}}


def _gauge(name, points):
    return {"name": name, "unit": "1", "gauge": {"dataPoints": points}}


def _point(t_ns, value, attrs):
    return {"timeUnixNano": str(t_ns), "asDouble": value, "attributes": attrs}


def replay(binary, series, warmup_windows, workdir=None, batch_windows=100):
    """Replays `series` ({metric name: [value or None per window]}, all equally long) as gauges
    of one experiment, one point per 5 m window. Returns
    (t0_ns, anomaly rows, {metric name: [per-window value read back from metric_points]},
    counters that must stay 0, other self-metrics)."""
    names = sorted(series)
    n = len(series[names[0]])
    # Detectors with a daily or weekly profile depend on the time of day and week, so every
    # run puts a file at the same place: its replay ends at the latest Monday 00:00 UTC at least
    # an hour ago (1970-01-05 was a Monday).
    week = 7 * 86400 * 10**9
    monday0 = 4 * 86400 * 10**9
    t_end = (time.time_ns() - 3600 * 10**9 - monday0) // week * week + monday0
    t0 = t_end - (n + 4) * WINDOW_NS
    # A point sits in the middle of its window.
    tw = [t0 + i * WINDOW_NS + WINDOW_NS // 2 for i in range(n)]
    tmp = tempfile.TemporaryDirectory(prefix="redwatch-skab-") if workdir is None else None
    wd = workdir or tmp.name
    try:
        with Redwatch(binary, config_yaml(names, warmup_windows, wd), wd) as rw:
            for b in range(0, n, batch_windows):
                metrics = []
                for name in names:
                    pts = [_point(tw[i], series[name][i], [])
                           for i in range(b, min(n, b + batch_windows))
                           if series[name][i] is not None]
                    if pts:
                        metrics.append(_gauge(name, pts))
                rw.export(metrics)
            last = tw[n - 1]
            for k in (1, 2):
                rw.export([_gauge(END_METRIC, [_point(last + 2 * k * WINDOW_NS, 0.0, [])])])
                _wait_final(rw, k)
            anomalies = rw.sql(
                "SELECT signal, span_name, window_start, value, expected_min, expected_max, "
                "severity, score, detector, incident_id, incident_state FROM anomalies "
                "ORDER BY window_start, signal")
            values = {name: [None] * n for name in names}
            for r in rw.sql("SELECT metric_name, window_start, avg FROM metric_points "
                            f"WHERE is_final AND metric_name <> '{END_METRIC}'"):
                i = (_ms(r["window_start"]) * 10**6 - t0) // WINDOW_NS
                if r["metric_name"] in values and 0 <= i < n:
                    values[r["metric_name"]][i] = r["avg"]
            counters = {k: rw.self_metric(k) for k in (
                "redwatch_late_dropped_total", "redwatch_metric_series_expired_total")}
            info = {k: rw.self_metric(k) for k in (
                "redwatch_anomalies_total", "redwatch_metric_points_windowed_total",
                "redwatch_metric_series_created_total")}
    finally:
        if tmp is not None:
            tmp.cleanup()
    return t0, anomalies, values, counters, info


def _wait_final(rw, count):
    deadline = time.monotonic() + DEADLINE_S
    while True:
        rows = rw.sql(f"SELECT count(*) AS c FROM metric_points WHERE is_final "
                      f"AND metric_name = '{END_METRIC}'")
        if rows and rows[0]["c"] >= count:
            return
        if time.monotonic() > deadline:
            raise ReplayError(f"replay end window {count} never final: {rw.log_tail()}")
        time.sleep(0.05)


def _ms(rfc3339):
    """Milliseconds since the epoch of an RFC 3339 UTC timestamp from the SQL API."""
    from datetime import datetime
    return round(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


def window_index(rfc3339, t0):
    return (_ms(rfc3339) * 10**6 - t0) // WINDOW_NS
