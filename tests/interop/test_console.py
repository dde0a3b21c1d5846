"""The web console (issue 18) in a real headless Chromium driven by selenium (chromedriver).

One `redwatch run` is fed by the workload generator (`redwatch generate`, the demo's shop) and,
for one extra service, by the OpenTelemetry SDK replaying 45 one-second windows with a latency
spike (the load of test_anomaly_spans.py), so the anomaly detector has an incident to show. The
browser then opens each page and the test checks what it draws against what the SQL API returns
for the same window; screenshots of each page land in `target/console/` (CI artefacts). At the
end the browser's own network log must show that no request left 127.0.0.1.

Chromium and chromedriver come from Debian (`chromium`, `chromium-driver`: .ci/run installs
them); a missing browser is a loud failure, never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from redwatch_process import REPO_ROOT, RedwatchProcess, redwatch_bin
from spike_load import MS, SEC, SPIKE, SdkLoad

HISTORY_WINDOWS = 45
DEADLINE_S = 120.0
CHROMIUM = os.environ.get("REDWATCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("REDWATCH_CHROMEDRIVER", "/usr/bin/chromedriver")
SCREENSHOTS = Path(os.environ.get("CARGO_TARGET_DIR", REPO_ROOT / "target"))
if not SCREENSHOTS.is_absolute():
    SCREENSHOTS = REPO_ROOT / SCREENSHOTS
SCREENSHOTS = SCREENSHOTS / "console"

# 1 s windows (with the default `1m` rollup) so windows close and the detector warms up within
# CI time, and enough lateness for the SDK's replayed history; the anomaly settings are
# test_anomaly_spans.py's. Everything else is the default, the console included (`ui` only
# sets the Jaeger URL so trace ids become links).
CONFIG = """\
receivers:
  otlp:
    grpc: { endpoint: 127.0.0.1:0 }
    http: { endpoint: 127.0.0.1:0 }
windows: { size: 1s, rollups: [1m], max_out_of_orderness: 0s, allowed_lateness: 120s, idle_timeout: 1s }
exporters:
  prometheus: { endpoint: 127.0.0.1:0 }
sql: { http_endpoint: 127.0.0.1:0, flight_endpoint: null }
anomaly:
  warmup_windows: 20
  detectors: { robust_z: { baseline_windows: 20 } }
ui: { jaeger_url: "http://127.0.0.1:16686" }
"""

_http = requests.Session()
_http.trust_env = False


def wait_for(what: str, check, deadline_s: float = DEADLINE_S, every_s: float = 0.5, tick=None):
    """Polls `check` until it returns something truthy; fails with `what` at the deadline."""
    deadline = time.monotonic() + deadline_s
    last_error = None
    while time.monotonic() < deadline:
        if tick:
            tick()
        try:
            got = check()
            if got:
                return got
        except Exception as e:  # noqa: BLE001 - reported at the deadline
            last_error = e
        time.sleep(every_s)
    raise AssertionError(f"timed out after {deadline_s:.0f}s waiting until {what}; last error: {last_error!r}")


class Console:
    """The engine, its load and one browser, shared by the page tests of this module."""

    def __init__(self, tmp: Path):
        cfg = tmp / "redwatch.yaml"
        cfg.write_text(CONFIG)
        self.process = RedwatchProcess(cfg, ("otlp_grpc", "sql_http"))
        self.process.wait_until_listening()
        self.base = f"http://{self.process.addresses['sql_http']}"
        grpc = f"http://{self.process.addresses['otlp_grpc']}"
        self.grpc = grpc
        self.generator = subprocess.Popen(
            [str(redwatch_bin()), "generate", "--otlp", grpc, "--rate", "300"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        self.spike_service = f"console-spike-{uuid.uuid4().hex[:6]}"
        self.first = time.time_ns() // SEC - HISTORY_WINDOWS
        self.load = SdkLoad(grpc, self.spike_service, self.first)
        self._stop = threading.Event()
        self._feeder = threading.Thread(target=self._feed, daemon=True)
        self._feeder.start()
        self.profile = tempfile.mkdtemp(prefix="redwatch-chromium-")
        self.driver = self._browser()

    def _feed(self) -> None:
        while not self._stop.is_set():
            self.load.catch_up()
            self._stop.wait(0.2)

    def _browser(self):
        for path in (CHROMIUM, CHROMEDRIVER):
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                raise AssertionError(
                    f"{path} is missing: install Debian's chromium and chromium-driver (.ci/run does)"
                )
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in (
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,800",
            f"--user-data-dir={self.profile}",
        ):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
        driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
        driver.set_script_timeout(30)
        return driver

    def sql(self, query: str):
        r = _http.post(f"{self.base}/api/v1/sql", json={"query": query}, timeout=30)
        return r.status_code, r.json()

    def rows(self, query: str) -> list[dict]:
        status, body = self.sql(query)
        assert status == 200, f"{query}\n-> {status} {body}"
        return body["rows"]

    def open(self, fragment: str) -> None:
        self.driver.get(f"{self.base}/{fragment}")

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        assert self.driver.save_screenshot(str(path)), path
        return path

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def close(self) -> int:
        self._stop.set()
        self._feeder.join(timeout=10)
        try:
            self.driver.quit()
        finally:
            self.load.shutdown()
            self.generator.terminate()
            try:
                self.generator.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.generator.kill()
            shutil.rmtree(self.profile, ignore_errors=True)
        return self.process.stop()


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    c = Console(tmp_path_factory.mktemp("console"))
    try:
        yield c
    finally:
        code = c.close()
    if code != 0:
        pytest.fail(f"redwatch exited with {code} after SIGTERM (expected 0)\n{c.process.log_text()}")


BOARD_ROWS_JS = """
return [...document.querySelectorAll('#board tbody tr')].map(tr => ({
  service: tr.dataset.service, span: tr.dataset.span, kind: tr.dataset.kind,
  window_start: tr.dataset.windowStart,
  values: Object.fromEntries([...tr.querySelectorAll('td[data-col]')].map(td => [td.dataset.col, [td.dataset.value, td.textContent]])),
}));
"""


def test_served_with_a_strict_csp_and_same_origin_api(console):
    r = _http.get(f"{console.base}/", timeout=10)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    cfg = _http.get(f"{console.base}/console/config.json", timeout=10).json()
    assert cfg["primary_window"] == "1s" and cfg["rollups"] == ["1m"]
    assert cfg["jaeger_url"] == "http://127.0.0.1:16686"
    # The console is static pages: a foreign Host is refused like the API refuses it.
    bad = _http.get(f"{console.base}/", headers={"Host": "evil.example"}, timeout=10)
    assert bad.status_code == 403


def test_board_lists_the_generators_services_with_the_apis_values(console):
    # The shop's services close their first windows over a few seconds (a trace's deeper
    # services appear only once requests reach them), so wait for three, not for the first.
    def generator_services():
        got = {
            r["service_name"]
            for r in console.rows(
                "SELECT DISTINCT service_name FROM red WHERE window_size = '1s' AND is_final "
                f"AND service_name <> '{console.spike_service}'"
            )
        }
        return got if len(got) >= 3 else None

    services = wait_for("three of the generator's services have closed windows", generator_services)
    console.open("#/board")
    rows = wait_for(
        "the board lists every generator service",
        lambda: (lambda rs: rs if services <= {r["service"] for r in rs} else None)(console.js(BOARD_ROWS_JS)),
    )
    # Every row's numbers are the API's for that row's window (read in one script run, so a
    # re-render between rows cannot mix windows). Late data may restate a closed window between
    # the two reads; the board re-reads such windows on its next update, so the check is
    # repeated until one board snapshot and the API agree on every row.
    def board_equals_api():
        mismatches, compared = [], 0
        rows = console.js(BOARD_ROWS_JS)
        for row in rows:
            api = console.rows(
                "SELECT rate_per_s, error_ratio, p50_ms, p99_ms FROM red WHERE window_size = '1s' AND is_final "
                f"AND service_name = '{row['service']}' AND span_name = '{row['span'].replace(chr(39), chr(39) * 2)}' "
                f"AND span_kind = '{row['kind']}' AND window_start = '{row['window_start']}'"
            )
            if len(api) != 1:
                mismatches.append((row, api))
                continue
            for col, scale in (("rate_per_s", 1), ("error_ratio", 100), ("p50_ms", 1), ("p99_ms", 1)):
                raw, text = row["values"][col]
                want = api[0].get(col)
                if want is None:
                    ok = raw == "" and text == "–"
                else:
                    ok = float(raw) == want and text == f"{want * scale:.2f}"
                    compared += 1
                if not ok:
                    mismatches.append((row["service"], row["span"], row["window_start"], col, raw, text, want))
        board_equals_api.last = mismatches
        return compared if not mismatches and services <= {r["service"] for r in rows} else None

    board_equals_api.last = []
    try:
        compared = wait_for("the board shows the API's values for every row's window", board_equals_api, deadline_s=60)
    except AssertionError as e:
        raise AssertionError(f"{e}\nlast mismatches: {board_equals_api.last[:10]}") from None
    assert compared >= 4 * len(services)
    # Provisional (open) 1m rollup windows are drawn apart from final ones in the sparklines.
    wait_for("sparklines draw an open window", lambda: console.js(
        "return document.querySelectorAll('#board svg.spark circle.provisional-dot').length"))
    assert console.js("return document.querySelectorAll('#board svg.spark path.spark-line').length") > 0
    console.shot("board")

    # Sorting by p99 (descending) and filtering work from the keyboard.
    console.driver.find_element(By.CSS_SELECTOR, "th button.sort[data-key='p99_ms']").send_keys(Keys.ENTER)
    p99 = [float(r["values"]["p99_ms"][0] or 0) for r in console.js(BOARD_ROWS_JS)]
    assert p99 == sorted(p99, reverse=True), p99
    target = sorted(services)[0]
    box = console.driver.find_element(By.ID, "board-filter")
    box.send_keys(target)
    def filtered():
        rs = console.js(BOARD_ROWS_JS)
        # Case-insensitive, over service, operation and kind.
        hit = [target.lower() in f"{r['service']} {r['span']} {r['kind']}".lower() for r in rs]
        return rs if rs and all(hit) and len(rs) < len(rows) else None

    shown = wait_for("the filter applies", filtered, deadline_s=30)
    assert any(r["service"] == target for r in shown)


def test_board_shows_a_window_restated_by_late_data(console):
    """A span arriving late (within allowed_lateness) restates a closed window; the open board
    must show the restated values without a reload (it re-reads windows whose `red_windows`
    version changed)."""
    service = f"console-late-{uuid.uuid4().hex[:6]}"
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("redwatch-interop")
    exporter = OTLPSpanExporter(endpoint=console.grpc, insecure=True, timeout=10)

    def send(end_ns: int, ms: float) -> None:
        tracer.start_span("GET /late", kind=SpanKind.SERVER, start_time=end_ns - int(ms * MS)).end(end_time=end_ns)
        spans = memory.get_finished_spans()
        memory.clear()
        assert exporter.export(spans) == SpanExportResult.SUCCESS

    def api_row():
        rows = console.rows(
            "SELECT window_start, calls, rate_per_s, p99_ms FROM red WHERE window_size = '1s' AND is_final "
            f"AND service_name = '{service}'"
        )
        return rows[0] if len(rows) == 1 else None

    def shown():
        rows = [r for r in console.js(BOARD_ROWS_JS) if r["service"] == service]
        return rows[0] if len(rows) == 1 else None

    try:
        window = time.time_ns() // SEC - 2
        send(window * SEC + 300 * MS, 10.0)
        first = wait_for("the service's window is final", lambda: (lambda r: r if r and r["calls"] == 1 else None)(api_row()))
        console.open("#/board")
        box = console.driver.find_element(By.ID, "board-filter")
        box.clear()
        box.send_keys(service)
        before = wait_for("the board shows the window", lambda: (lambda r: r if r and r["window_start"] == first["window_start"] else None)(shown()), deadline_s=30)
        assert float(before["values"]["rate_per_s"][0]) == first["rate_per_s"]
        console.js("window.__notReloaded = true")
        version = console.rows(
            f"SELECT version FROM red_windows WHERE window_size = '1s' AND window_start = '{first['window_start']}'"
        )[0]["version"]
        # Late: the window closed a while ago, but allowed_lateness (120 s) has not passed.
        send(window * SEC + 600 * MS, 900.0)
        restated = wait_for("the late span restates the window", lambda: (lambda r: r if r and r["calls"] == 2 else None)(api_row()))
        assert restated["window_start"] == first["window_start"]
        assert console.rows(
            f"SELECT version FROM red_windows WHERE window_size = '1s' AND window_start = '{first['window_start']}'"
        )[0]["version"] != version
        after = wait_for(
            "the board shows the restated values",
            lambda: (lambda r: r if r and float(r["values"]["rate_per_s"][0]) == restated["rate_per_s"]
                     and float(r["values"]["p99_ms"][0]) == restated["p99_ms"] else None)(shown()),
            deadline_s=30,
        )
        assert after["window_start"] == first["window_start"]
        assert console.js("return window.__notReloaded === true"), "the page was reloaded"
        assert restated["p99_ms"] > float(before["values"]["p99_ms"][0]), (restated, before)
    finally:
        exporter.shutdown()
        provider.shutdown()


def test_series_page_draws_the_chart_and_the_latency_spike_marker(console):
    def anomalies():
        return console.rows(
            "SELECT window_start, value, expected_max FROM anomalies WHERE signal = 'latency_p99_ms' "
            f"AND service_name = '{console.spike_service}' AND incident_state <> 'resolved' ORDER BY window_start"
        )

    wait_for("the spike's p99 anomalies are in the anomalies table", anomalies)
    spike_starts = {time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(console.first + k)) for k in SPIKE}
    console.open(f"#/series?service={console.spike_service}&span=GET%20%2Fpay&kind=SPAN_KIND_SERVER&range=15m")

    # The chart marks exactly the anomalies the API has. More of the spike's windows may close
    # between the two reads, so both are read again until one chart and one answer agree.
    def markers_match_api():
        shown = console.js(
            "return [...document.querySelectorAll('.anomaly-marker[data-signal=\"latency_p99_ms\"]')]"
            ".map(m => m.dataset.windowStart)"
        )
        api = anomalies()
        markers_match_api.last = (shown, api)
        return (shown, api) if shown and set(shown) == {r["window_start"] for r in api} else None

    markers_match_api.last = None
    try:
        markers, want = wait_for("the latency chart marks the API's anomalies", markers_match_api, deadline_s=30)
    except AssertionError as e:
        raise AssertionError(f"{e}\nlast (markers, anomalies): {markers_match_api.last}") from None
    assert any(m[:19] in spike_starts for m in markers), (markers, spike_starts)
    lines = console.js(
        "return [...document.querySelectorAll('svg.chart path.line')].map(p => p.getAttribute('d').length)"
    )
    assert len(lines) >= 5 and all(n > 20 for n in lines), lines
    assert console.js("return document.querySelectorAll('svg.chart rect.band').length") >= len(want)
    console.js("document.querySelector('.anomaly-marker').closest('section').scrollIntoView()")
    console.shot("series")


def test_problems_page_links_the_incident_to_its_trace_and_shows_its_likely_cause(console):
    incident = wait_for(
        "the spike's incident is listed",
        lambda: console.rows(
            f"SELECT DISTINCT incident_id FROM anomalies WHERE service_name = '{console.spike_service}' "
            "AND signal = 'latency_p99_ms'"
        ),
    )[0]["incident_id"]
    console.open("#/problems")
    href = wait_for(
        "the problems table shows the incident with a Jaeger link",
        lambda: console.js(
            "const tr = document.querySelector(`#problems tr[data-incident='${arguments[0]}']`);"
            "return tr && tr.querySelector('a.trace') && tr.querySelector('a.trace').href",
            incident,
        ),
        deadline_s=30,
    )
    assert href == f"http://127.0.0.1:16686/trace/{incident}"
    console.shot("problems")

    # The incident's problem (problems are on by default) and its ranked likely causes, as the
    # SQL API has them in the problem's newest snapshot.
    def api_cause():
        member = console.rows(
            f"SELECT problem_id FROM problem_members WHERE incident_id = '{incident}' ORDER BY updated_at DESC LIMIT 1"
        )
        if not member:
            return None
        problem = console.rows(
            "SELECT problem_id, cause_service, cause_span, cause_signal, causes FROM problems "
            f"WHERE problem_id = '{member[0]['problem_id']}' ORDER BY updated_at DESC LIMIT 1"
        )
        return problem[0] if problem and problem[0].get("cause_service") else None

    cell_js = (
        "const td = document.querySelector(`#problems tr[data-incident='${arguments[0]}'] td.cause`);"
        "return td && td.dataset.problem ? {problem: td.dataset.problem, service: td.dataset.service, span: td.dataset.span,"
        " signal: td.dataset.signal, first: td.querySelector('.cause-first').textContent,"
        " ranks: [...td.querySelectorAll('ol.cause-ranks li')].map(li => li.textContent)} : null"
    )

    def cause_matches():
        want = api_cause()
        shown = console.js(cell_js, incident)
        cause_matches.last = (want, shown)
        if not want or not shown:
            return None
        ranks = [line.split(". ", 1)[1] for line in want["causes"].splitlines() if line.strip()]
        ok = (
            shown["problem"] == want["problem_id"]
            and (shown["service"], shown["span"], shown["signal"]) == (want["cause_service"], want["cause_span"], want["cause_signal"])
            and shown["first"] == f"{want['cause_service']} · {want['cause_span']}"
            and shown["ranks"] == ranks
        )
        return (want, shown) if ok else None

    cause_matches.last = None
    try:
        want, shown = wait_for("the incident's row shows its problem's likely cause", cause_matches, deadline_s=60)
    except AssertionError as e:
        raise AssertionError(f"{e}\nlast (api, shown): {cause_matches.last}") from None
    # The spike's series is the only anomalous one of its problem: it is the first likely cause.
    assert (shown["service"], shown["span"]) == (console.spike_service, "GET /pay"), shown
    assert shown["ranks"] and shown["ranks"][0].startswith(f"{console.spike_service} GET /pay"), shown
    # The ranked list opens from the keyboard and stays open across the page's refreshes.
    summary = console.driver.find_element(
        By.CSS_SELECTOR, f"#problems tr[data-incident='{incident}'] td.cause summary"
    )
    summary.send_keys(Keys.ENTER)
    wait_for("the ranked causes are shown", lambda: console.js(
        "const d = document.querySelector(`#problems tr[data-incident='${arguments[0]}'] td.cause details`);"
        "return d && d.open && d.querySelector('ol.cause-ranks li').getBoundingClientRect().height > 0", incident),
        deadline_s=10)
    console.js(
        "document.querySelector(`#problems tr[data-incident='${arguments[0]}']`).scrollIntoView()", incident
    )
    console.shot("problems-cause")


def test_service_graph_page_draws_the_generators_edges(console):
    edges = wait_for(
        "the service graph has edges",
        lambda: console.rows("SELECT DISTINCT client, server FROM service_graph WHERE window_size = '1s' AND is_final"),
    )
    console.open("#/graph")
    drawn = wait_for("the graph is drawn", lambda: console.js(
        "return document.querySelectorAll('svg.graph path.edge').length"), deadline_s=30)
    assert drawn >= 1 and drawn <= len(edges) + 50
    labels = console.js("return [...document.querySelectorAll('svg.graph .node text')].map(t => t.textContent)")
    assert {e["client"] for e in edges} & set(labels)
    console.shot("graph")


def test_sql_editor_runs_a_query_and_shows_api_errors(console):
    query = "SELECT service_name, count(*) AS n FROM red WHERE window_size = '1m' GROUP BY service_name ORDER BY service_name"
    console.open("#/sql")
    area = console.driver.find_element(By.ID, "sql-input")
    area.clear()
    area.send_keys(query)
    area.send_keys(Keys.CONTROL, Keys.ENTER)
    cells = wait_for("the result table appears", lambda: console.js(
        "const t = document.querySelector('#sql-table');"
        "return t && [...t.querySelectorAll('tbody tr')].map(tr => [...tr.children].map(td => td.textContent))"),
        deadline_s=30)
    names = [c[0] for c in cells]
    api_names = [r["service_name"] for r in console.rows(query)]
    # Counts move with live data; the services (the rows' keys) do not within this run.
    assert names and set(names) <= set(api_names) | {console.spike_service}, (names, api_names)
    assert all(int(c[1]) > 0 for c in cells)
    curl = console.driver.find_element(By.ID, "sql-curl").get_attribute("textContent")
    assert curl.startswith(f"curl -s {console.base}/api/v1/sql -H 'Content-Type: application/json'"), curl
    console.shot("sql")

    # A time column gets a chart.
    timed = "SELECT window_start, sum(calls) AS calls FROM red WHERE window_size = '1s' AND window_start >= now() - INTERVAL '1 minute' GROUP BY window_start ORDER BY window_start"
    console.open("#/sql?q=" + requests.utils.quote(timed))
    wait_for("the result is charted", lambda: console.js(
        "const p = document.querySelector('.sql-chart svg.chart path.line'); return p && p.getAttribute('d').length > 20"),
        deadline_s=30)

    bad = "SELEC nonsense FROM nowhere"
    status, body = console.sql(bad)
    assert status == 400
    console.open("#/sql?q=" + requests.utils.quote(bad))
    shown = wait_for("the API's error is shown", lambda: console.js(
        "const e = document.querySelector('#sql-result .error'); return e && [e.querySelector('strong').textContent, e.querySelector('.error-message').textContent]"),
        deadline_s=30)
    assert shown == [f"HTTP 400 · {body['error']['code']}", body["error"]["message"]], (shown, body)
    console.shot("sql-error")


def test_no_request_left_loopback_and_no_csp_violation(console):
    # Visit every page once more so the log covers them all.
    for page in ("#/board", "#/series", "#/problems", "#/graph", "#/sql"):
        console.open(page)
        wait_for(f"{page} renders", lambda: console.js("return document.querySelector('main').children.length > 1"), deadline_s=30)
    urls = []
    for entry in console.driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    urls += console.js("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls, "the network log is empty"
    origin = console.base + "/"
    # Only network schemes can leave the machine; chrome:// and chrome-untrusted:// are the
    # browser's own start page, served from inside the browser.
    network = [u for u in urls if u.split(":", 1)[0].lower() in ("http", "https", "ws", "wss", "ftp")]
    ours = [u for u in network if u.startswith(origin)]
    assert len(ours) > 20, f"the console's own requests are missing from the log: {network[:20]}"
    foreign = [u for u in network if not u.startswith(origin)]
    assert not foreign, f"requests left {origin}: {foreign}"
    # The bad query's 400 is logged by Chromium as a failed load; anything else severe (a CSP
    # violation, an uncaught script error) fails the test.
    problems = [
        e
        for e in console.driver.get_log("browser")
        if e["level"] == "SEVERE" and "the server responded with a status of 400" not in e["message"]
    ]
    assert not problems, problems
