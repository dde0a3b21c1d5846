// The redwatch console: a read-only client of POST /api/v1/sql. Every picture on these pages is
// one of the queries shown under it, which a user can copy, run with curl or `redwatch sql`, or
// open in the SQL page. No framework, nothing loaded from elsewhere (see console.rs for the CSP).
"use strict";

(function () {
  const C = window.RWCharts;
  const main = document.getElementById("main");
  const statusEl = document.getElementById("status");
  let cfg = { jaeger_url: null, primary_window: "10s", primary_window_ms: 10000, rollups: ["1m"], rollup_ms: [60000], allowed_lateness_ms: 30000 };
  let cleanup = null;

  // ---- small DOM helpers --------------------------------------------------------------------

  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      const v = attrs[k];
      if (v === undefined || v === null || v === false) continue;
      if (k === "on") { for (const ev in v) e.addEventListener(ev, v[ev]); }
      else if (k === "dataset") { for (const d in v) e.dataset[d] = v[d]; }
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      e.appendChild(typeof kid === "string" || typeof kid === "number" ? document.createTextNode(String(kid)) : kid);
    }
    return e;
  }
  const lit = (s) => "'" + String(s).replace(/'/g, "''") + "'";
  const shq = (s) => "'" + String(s).replace(/'/g, "'\\''") + "'";
  const num = (v, d) => (v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(d));
  const ts = (s) => (s ? Date.parse(s) : NaN);
  const hms = (t) => { const d = new Date(t); return isNaN(d) ? "–" : d.toLocaleTimeString([], { hour12: false }); };
  const dur = (ms) => {
    if (ms === null || ms === undefined) return "–";
    const s = Math.round(ms / 1000);
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  };
  function setStatus(text, bad) {
    statusEl.textContent = text;
    statusEl.classList.toggle("bad", !!bad);
  }

  // ---- the API ------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  async function sql(query) {
    let resp;
    try {
      resp = await fetch("/api/v1/sql", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ query, format: "json" }),
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(0, "unreachable", "the server did not answer: " + e.message);
    }
    const text = await resp.text();
    let body;
    try { body = JSON.parse(text); } catch (e) { body = null; }
    if (!resp.ok) {
      const err = body && body.error;
      throw new ApiError(resp.status, err ? err.code : "http_" + resp.status, err ? err.message : text);
    }
    return body;
  }

  function errorBox(e) {
    return h("div", { class: "error", role: "alert" },
      h("strong", { text: e.status ? `HTTP ${e.status} · ${e.code}` : e.code || "error" }), ": ",
      h("span", { class: "error-message", text: e.message }));
  }

  function curlFor(query) {
    return `curl -s ${location.origin}/api/v1/sql -H 'Content-Type: application/json' -d ${shq(JSON.stringify({ query }))}`;
  }
  function cliFor(query) {
    return `redwatch sql --url ${location.origin} ${shq(query)}`;
  }

  function copyButton(label, getText) {
    return h("button", {
      type: "button", class: "copy",
      on: {
        click: async (ev) => {
          const b = ev.currentTarget;
          try { await navigator.clipboard.writeText(getText()); b.textContent = "Copied"; }
          catch (e) { b.textContent = "Copy failed: select the text"; }
          setTimeout(() => { b.textContent = label; }, 1500);
        },
      },
    }, label);
  }

  // The query behind a picture, copyable three ways and openable in the SQL page.
  function queryBox(getQuery, title) {
    const pre = h("pre", { class: "sql-text" });
    const d = h("details", { class: "query" },
      h("summary", {}, title || "Query behind this view"),
      pre,
      h("div", { class: "actions" },
        copyButton("Copy SQL", () => getQuery()),
        copyButton("Copy curl", () => curlFor(getQuery())),
        copyButton("Copy redwatch sql", () => cliFor(getQuery())),
        h("a", { class: "open-sql", href: "#", on: { click: (ev) => { ev.preventDefault(); go("sql", { q: getQuery() }); } } }, "Open in SQL editor")));
    d.addEventListener("toggle", () => { pre.textContent = getQuery(); });
    d.refresh = () => { if (d.open) pre.textContent = getQuery(); };
    return d;
  }

  const short = (id) => (id.length > 16 ? id.slice(0, 16) + "…" : id);
  function traceLink(id) {
    if (!id) return h("span", { text: "–" });
    if (cfg.jaeger_url) {
      return h("a", { href: `${cfg.jaeger_url}/trace/${encodeURIComponent(id)}`, target: "_blank", rel: "noopener noreferrer", class: "trace", title: id }, h("code", { text: short(id) }));
    }
    return h("code", { class: "trace", title: id + " (set ui.jaeger_url to link trace ids)", text: id });
  }

  // ---- routing ------------------------------------------------------------------------------

  function parseHash() {
    const raw = location.hash.replace(/^#\/?/, "");
    const [page, qs] = raw.split("?");
    return { page: page || "board", params: new URLSearchParams(qs || "") };
  }
  function go(page, params) {
    const qs = new URLSearchParams();
    for (const k in params || {}) if (params[k] !== undefined && params[k] !== null && params[k] !== "") qs.set(k, params[k]);
    const s = qs.toString();
    location.hash = "#/" + page + (s ? "?" + s : "");
  }
  function seriesHref(service, span, kind) {
    const qs = new URLSearchParams({ service, span, kind });
    return "#/series?" + qs.toString();
  }

  const pages = { board: boardPage, series: seriesPage, problems: problemsPage, graph: graphPage, sql: sqlPage };

  function route() {
    if (cleanup) { cleanup(); cleanup = null; }
    const { page, params } = parseHash();
    const fn = pages[page] || boardPage;
    document.querySelectorAll("nav a").forEach((a) => {
      if (a.dataset.page === page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    main.replaceChildren();
    main.dataset.page = page;
    cleanup = fn(params) || null;
  }

  // Runs `tick` now and then every `ms` while the tab is visible; returns the stopper.
  function every(ms, tick) {
    let stopped = false, timer = null, busy = false;
    const run = async () => {
      if (stopped) return;
      if (!document.hidden && !busy) {
        busy = true;
        try { await tick(); } finally { busy = false; }
      }
      if (!stopped) timer = setTimeout(run, ms);
    };
    run();
    return () => { stopped = true; clearTimeout(timer); };
  }

  // ---- services board -----------------------------------------------------------------------

  const PAGE_ROWS = 100;
  const COLS = [
    { key: "service_name", label: "Service", type: "text" },
    { key: "span_name", label: "Operation", type: "text" },
    { key: "span_kind", label: "Kind", type: "text" },
    { key: "window_start", label: "Window", type: "text" },
    { key: "rate_per_s", label: "Rate /s", type: "num", digits: 2 },
    { key: "error_ratio", label: "Error %", type: "num", digits: 2, scale: 100 },
    { key: "p50_ms", label: "p50 ms", type: "num", digits: 2 },
    { key: "p99_ms", label: "p99 ms", type: "num", digits: 2 },
  ];

  const secs = (ms) => Math.max(1, Math.ceil(ms / 1000));
  // How far back the board looks for a series' latest closed window.
  function lookbackSeconds() { return Math.max(120, 12 * secs(cfg.primary_window_ms)); }

  const BOARD_COLS = "service_name, span_name, span_kind, window_start, window_end, calls, rate_per_s, error_ratio, p50_ms, p99_ms";
  // The board: each series' latest closed primary window within the look-back.
  function boardQuery() {
    return `SELECT ${BOARD_COLS}
FROM (
  SELECT ${BOARD_COLS},
         row_number() OVER (PARTITION BY service_name, span_name, span_kind ORDER BY window_start DESC) AS newest
  FROM red
  WHERE window_size = ${lit(cfg.primary_window)} AND is_final
    AND window_start >= now() - INTERVAL '${lookbackSeconds()} seconds'
)
WHERE newest = 1`;
  }
  // Once a second: the closed primary windows within the look-back and their versions (a late
  // re-emission that restates a window gives it a new version). Reads no rows of `red`.
  function windowsQuery() {
    return `SELECT window_start, window_end, version, now() AS now FROM red_windows
WHERE window_size = ${lit(cfg.primary_window)} AND window_start >= now() - INTERVAL '${lookbackSeconds()} seconds'
ORDER BY window_start`;
  }
  // The rows of the windows that are new or restated since the board last read them.
  function windowRowsQuery(starts) {
    const lo = starts.reduce((a, b) => (ts(a) <= ts(b) ? a : b));
    const hi = starts.reduce((a, b) => (ts(a) >= ts(b) ? a : b));
    return `SELECT ${BOARD_COLS} FROM red
WHERE window_size = ${lit(cfg.primary_window)} AND is_final
  AND window_start >= ${lit(lo)} AND window_start <= ${lit(hi)}` +
      (starts.length > 1 ? `
  AND window_start IN (${starts.map(lit).join(", ")})` : "");
  }
  function sparkWindow() { return cfg.rollups.length ? cfg.rollups[0] : cfg.primary_window; }
  function sparkWindowMs() { return cfg.rollups.length ? cfg.rollup_ms[0] : cfg.primary_window_ms; }
  function sparkQuery(rows, provisionalOnly) {
    const uniq = (xs) => [...new Set(xs)].map(lit).join(", ") || "''";
    const range = provisionalOnly
      ? `NOT is_final AND window_start >= now() - INTERVAL '${2 * secs(sparkWindowMs())} seconds'`
      : "window_start >= now() - INTERVAL '1 hour'";
    return `SELECT service_name, span_name, span_kind, window_start, rate_per_s, is_final FROM red
WHERE window_size = ${lit(sparkWindow())} AND ${range}
  AND service_name IN (${uniq(rows.map((r) => r.service_name))})
  AND span_name IN (${uniq(rows.map((r) => r.span_name))})
ORDER BY window_start`;
  }

  function boardPage() {
    const st = { rows: [], byKey: new Map(), versions: null, sparkRollup: null, sortKey: "rate_per_s", sortDir: -1, filter: "", page: 0, spark: new Map(), prov: new Map(), closedEnd: undefined, live: true };
    const key = (r) => r.service_name + "\u0000" + r.span_name + "\u0000" + r.span_kind;
    const filterIn = h("input", { id: "board-filter", type: "search", placeholder: "service or operation", autocomplete: "off" });
    const liveIn = h("input", { id: "board-live", type: "checkbox", checked: true });
    const info = h("p", { class: "info", id: "board-info", "aria-live": "polite" });
    const err = h("div", { class: "err-slot" });
    const thead = h("thead");
    const tbody = h("tbody");
    const table = h("table", { class: "board", id: "board", "aria-describedby": "board-info" }, h("caption", { class: "sr-only", text: "Services and operations, latest closed window" }), thead, tbody);
    const pager = h("div", { class: "pager" });
    const qb = queryBox(boardQuery, "Board query (latest closed window per series)");
    const qs = queryBox(() => sparkQuery(visible(), false), "Sparkline query (last hour, visible rows)");
    const qw = queryBox(windowsQuery, "Live updates: which closed windows are new or restated (read each second)");
    main.append(
      h("h1", { text: "Services" }),
      h("div", { class: "controls" },
        h("label", { for: "board-filter", text: "Filter" }), filterIn,
        h("label", { class: "check" }, liveIn, " Live (1 s)"),
        h("span", { class: "legend" }, h("span", { class: "legend-final", text: "— closed windows" }), " ", h("span", { class: "legend-prov", text: "┄ open (provisional)" }))),
      info, err, table, pager, qb, qw, qs);

    function sorted() {
      const f = st.filter.toLowerCase();
      let rows = f ? st.rows.filter((r) => (r.service_name + " " + r.span_name + " " + r.span_kind).toLowerCase().includes(f)) : st.rows.slice();
      const k = st.sortKey, d = st.sortDir;
      rows.sort((a, b) => {
        const x = a[k], y = b[k];
        if (x === y) return key(a) < key(b) ? -1 : 1;
        if (x === undefined || x === null) return 1;
        if (y === undefined || y === null) return -1;
        return (x < y ? -1 : 1) * d;
      });
      return rows;
    }
    function visible() {
      const rows = sorted();
      const pages = Math.max(1, Math.ceil(rows.length / PAGE_ROWS));
      if (st.page >= pages) st.page = pages - 1;
      return rows.slice(st.page * PAGE_ROWS, (st.page + 1) * PAGE_ROWS);
    }

    function renderHead() {
      thead.replaceChildren(h("tr", {}, COLS.map((c) => {
        const active = st.sortKey === c.key;
        return h("th", { scope: "col", "aria-sort": active ? (st.sortDir > 0 ? "ascending" : "descending") : "none", class: c.type },
          h("button", { type: "button", class: "sort", dataset: { key: c.key }, on: { click: () => {
            if (st.sortKey === c.key) st.sortDir = -st.sortDir; else { st.sortKey = c.key; st.sortDir = c.type === "num" ? -1 : 1; }
            st.page = 0; renderHead(); renderBody(); loadSparks();
          } } }, c.label, h("span", { class: "arrow", "aria-hidden": "true", text: active ? (st.sortDir > 0 ? " ▲" : " ▼") : "" })));
      }), h("th", { scope: "col", text: "Rate, last hour" })));
    }

    function sparkCell(r) {
      const k = key(r);
      const pts = (st.spark.get(k) || []).slice();
      const prov = st.prov.get(k) || [];
      const finals = new Set(pts.map((p) => p.t));
      prov.forEach((p) => { if (!finals.has(p.t)) pts.push(p); });
      pts.sort((a, b) => a.t - b.t);
      const now = Date.now();
      return C.sparkline(pts, `${r.service_name} ${r.span_name}: rate over the last hour`, now - 3600e3, now);
    }

    function renderBody() {
      const rows = sorted();
      const vis = visible();
      const frag = document.createDocumentFragment();
      vis.forEach((r) => {
        const tr = h("tr", { dataset: { service: r.service_name, span: r.span_name, kind: r.span_kind, windowStart: r.window_start, windowEnd: r.window_end } });
        COLS.forEach((c) => {
          if (c.key === "service_name") {
            tr.appendChild(h("td", { class: "text" }, h("a", { href: seriesHref(r.service_name, r.span_name, r.span_kind), text: r.service_name })));
          } else if (c.key === "window_start") {
            tr.appendChild(h("td", { class: "text time", title: `${r.window_start} – ${r.window_end}`, text: hms(ts(r.window_start)) }));
          } else if (c.type === "num") {
            const v = r[c.key];
            tr.appendChild(h("td", { class: "num", dataset: { col: c.key, value: v === undefined || v === null ? "" : String(v) },
              text: v === undefined || v === null ? "–" : num(v * (c.scale || 1), c.digits) }));
          } else {
            tr.appendChild(h("td", { class: "text", text: r[c.key] }));
          }
        });
        tr.appendChild(h("td", { class: "spark-cell" }, sparkCell(r)));
        frag.appendChild(tr);
      });
      tbody.replaceChildren(frag);
      const pages = Math.max(1, Math.ceil(rows.length / PAGE_ROWS));
      const first = rows.length ? st.page * PAGE_ROWS + 1 : 0;
      info.textContent = `${rows.length} series` + (st.filter ? ` matching “${st.filter}”` : "") +
        ` · showing ${first}–${Math.min(rows.length, (st.page + 1) * PAGE_ROWS)} · window ${cfg.primary_window}` +
        (st.closedEnd ? ` · latest closed window ends ${hms(ts(st.closedEnd))}` : "");
      pager.replaceChildren(
        h("button", { type: "button", disabled: st.page === 0, on: { click: () => { st.page--; renderBody(); loadSparks(); } } }, "Previous"),
        h("span", { text: ` page ${st.page + 1} of ${pages} ` }),
        h("button", { type: "button", disabled: st.page >= pages - 1, on: { click: () => { st.page++; renderBody(); loadSparks(); } } }, "Next"));
      // Marks for the render-time benchmark (benches/console/board_bench.py), once per page load.
      if (vis.length && !performance.getEntriesByName("board-rows").length) performance.mark("board-rows");
      table.dataset.rows = String(vis.length);
      table.dataset.total = String(rows.length);
      qb.refresh(); qs.refresh();
    }

    // The board as the SQL API has it: a full read when the page opens (or when windows it
    // read have gone, e.g. the engine restarted); afterwards only the rows of windows that are
    // new or were restated by late data (their version in `red_windows` changed), merged into
    // what the page holds; series whose latest window left the look-back drop out, as they do
    // from the full query.
    async function loadBoard(windows) {
      const seen = st.versions;
      const listed = new Map(windows.rows.map((w) => [w.window_start, w.version]));
      const now = windows.rows.length ? ts(windows.rows[0].now) : Date.now();
      const horizon = now - lookbackSeconds() * 1000;
      const gone = seen && [...seen.keys()].some((t) => ts(t) >= horizon && !listed.has(t));
      st.versions = listed;
      if (!seen || gone) {
        const res = await sql(boardQuery());
        st.byKey = new Map();
        merge(res.rows);
        return true;
      }
      const changed = [...listed.keys()].filter((t) => seen.get(t) !== listed.get(t));
      let evicted = false;
      for (const [k, r] of st.byKey) if (ts(r.window_start) < horizon) { st.byKey.delete(k); evicted = true; }
      if (changed.length) merge((await sql(windowRowsQuery(changed))).rows);
      else if (evicted) st.rows = [...st.byKey.values()];
      return changed.length > 0 || evicted;
    }
    function merge(rows) {
      rows.forEach((r) => {
        const k = key(r), old = st.byKey.get(k);
        if (!old || ts(old.window_start) <= ts(r.window_start)) st.byKey.set(k, r);
      });
      st.rows = [...st.byKey.values()];
    }

    // Sparklines of the rows on screen: closed rollup windows are cached per series until the
    // next rollup window closes; the open (provisional) ones are re-read on every update.
    async function loadSparks() {
      const vis = visible();
      if (!vis.length) return;
      const wanted = new Set(vis.map(key));
      const rollup = st.closedEnd ? Math.floor(ts(st.closedEnd) / sparkWindowMs()) : null;
      if (rollup !== st.sparkRollup || st.spark.size > 4 * PAGE_ROWS) { st.spark = new Map(); st.sparkRollup = rollup; }
      const missing = vis.filter((r) => !st.spark.has(key(r)));
      if (missing.length) {
        const res = await sql(sparkQuery(missing, false));
        const want = new Set(missing.map(key));
        want.forEach((k) => st.spark.set(k, []));
        res.rows.forEach((r) => {
          const k = key(r);
          if (r.is_final && want.has(k)) st.spark.get(k).push({ t: ts(r.window_start), v: r.rate_per_s, provisional: false });
        });
      }
      const res = await sql(sparkQuery(vis, true));
      st.prov = new Map();
      res.rows.forEach((r) => {
        const k = key(r);
        if (!wanted.has(k)) return;
        if (!st.prov.has(k)) st.prov.set(k, []);
        st.prov.get(k).push({ t: ts(r.window_start), v: r.rate_per_s, provisional: true });
      });
      tbody.querySelectorAll("tr").forEach((tr, i) => {
        if (vis[i]) tr.lastChild.replaceChildren(sparkCell(vis[i]));
      });
      table.dataset.sparks = "1";
      if (!performance.getEntriesByName("board-sparklines").length) performance.mark("board-sparklines");
    }

    async function tick() {
      try {
        const windows = await sql(windowsQuery());
        const ends = windows.rows.map((w) => w.window_end);
        st.closedEnd = ends.length ? ends.reduce((a, b) => (ts(a) >= ts(b) ? a : b)) : st.closedEnd;
        if (await loadBoard(windows)) renderBody();
        await loadSparks();
        err.replaceChildren();
        table.dataset.ticks = String(+(table.dataset.ticks || 0) + 1);
        setStatus("updated " + hms(Date.now()));
      } catch (e) {
        err.replaceChildren(errorBox(e));
        setStatus("update failed", true);
      }
    }

    filterIn.addEventListener("input", () => { st.filter = filterIn.value; st.page = 0; renderBody(); loadSparks().catch(() => {}); });
    renderHead();
    let stop = every(1000, tick);
    liveIn.addEventListener("change", () => {
      stop(); stop = liveIn.checked ? every(1000, tick) : () => {};
    });
    return () => stop();
  }

  // ---- series page --------------------------------------------------------------------------

  const RANGES = { "15m": 15, "1h": 60, "6h": 360 };

  function signalChart(signal) {
    if (/error/.test(signal)) return "errors";
    if (/latency|_ms$|duration/.test(signal)) return "latency";
    return "rate";
  }

  function seriesPage(params) {
    const service = params.get("service"), span = params.get("span"), kind = params.get("kind");
    const range = RANGES[params.get("range")] ? params.get("range") : "1h";
    if (!service) return seriesPicker();
    const minutes = RANGES[range];
    const win = minutes > 60 && cfg.rollups.length ? cfg.rollups[0] : cfg.primary_window;
    const where = `service_name = ${lit(service)} AND span_name = ${lit(span || "")}`;
    const since = `now() - INTERVAL '${minutes} minutes'`;
    const q = {
      red: `SELECT window_start, window_end, calls, errors, error_ratio, rate_per_s, p50_ms, p90_ms, p99_ms, is_final FROM red
WHERE window_size = ${lit(win)} AND ${where} AND span_kind = ${lit(kind || "")} AND window_start >= ${since}
ORDER BY window_start`,
      anomalies: `SELECT window_start, window_end, signal, value, expected_min, expected_max, severity, score, incident_id, incident_state FROM anomalies
WHERE ${where} AND window_start >= ${since}
ORDER BY window_start`,
      predictions: `SELECT window_end, signal, value, lower, upper, confidence, horizon_ms, method FROM predictions
WHERE ${where} AND window_end >= now() - INTERVAL '${Math.max(2, Math.ceil((4 * cfg.primary_window_ms) / 60000))} minutes'
ORDER BY window_end`,
      exemplars: `(SELECT 'slowest' AS why, end_time, duration_ms, status_code, trace_id FROM spans
 WHERE ${where} AND end_time >= ${since} ORDER BY duration_ms DESC LIMIT 5)
UNION ALL
(SELECT 'failed' AS why, end_time, duration_ms, status_code, trace_id FROM spans
 WHERE ${where} AND status_code = 'STATUS_CODE_ERROR' AND end_time >= ${since} ORDER BY end_time DESC LIMIT 5)`,
    };
    const rangeSel = h("select", { id: "series-range" }, Object.keys(RANGES).map((r) => h("option", { value: r, selected: r === range }, "last " + r)));
    rangeSel.addEventListener("change", () => go("series", { service, span, kind, range: rangeSel.value }));
    const charts = h("div", { class: "charts" });
    const below = h("div", { class: "below" });
    const err = h("div", { class: "err-slot" });
    main.append(
      h("h1", {}, h("span", { text: service }), h("span", { class: "sub", text: ` ${span || ""} · ${kind || ""}` })),
      h("div", { class: "controls" }, h("label", { for: "series-range", text: "Range" }), rangeSel,
        h("span", { class: "info", text: ` window ${win} · markers: anomalies (shaded: expected range) · dashed after now: forecast with interval` })),
      err, charts, below,
      queryBox(() => q.red, "Series query"), queryBox(() => q.anomalies, "Anomalies query"),
      queryBox(() => q.predictions, "Forecast query"), queryBox(() => q.exemplars, "Exemplar traces query"));

    async function load() {
      try {
        const [red, an, pr, ex] = await Promise.all([sql(q.red), sql(q.anomalies), sql(q.predictions), sql(q.exemplars)]);
        draw(red.rows, an.rows, pr.rows, ex.rows);
        err.replaceChildren();
        setStatus("updated " + hms(Date.now()));
      } catch (e) {
        err.replaceChildren(errorBox(e));
        setStatus("update failed", true);
      }
    }

    function draw(rows, anomalies, predictions, exemplars) {
      const now = Date.now();
      const t0 = now - minutes * 60e3;
      const pt = (r, v) => ({ t: ts(r.window_start), v, provisional: !r.is_final });
      const groups = { rate: { bands: [], markers: [], forecast: [] }, errors: { bands: [], markers: [], forecast: [] }, latency: { bands: [], markers: [], forecast: [] } };
      anomalies.filter((a) => a.incident_state !== "resolved").forEach((a) => {
        const g = groups[signalChart(a.signal)];
        const scale = a.signal === "error_ratio" ? 100 : 1;
        const title = `${a.severity} anomaly on ${a.signal}: ${C.fmtNum(a.value * scale)} (expected ${C.fmtNum(a.expected_min * scale)}–${C.fmtNum(a.expected_max * scale)}) at ${hms(ts(a.window_start))}`;
        g.bands.push({ t0: ts(a.window_start), t1: ts(a.window_end), lo: a.expected_min * scale, hi: a.expected_max * scale, title: "expected range: " + title });
        g.markers.push({ t: ts(a.window_start), v: a.value * scale, cls: a.severity, title,
          data: { signal: a.signal, severity: a.severity, windowStart: a.window_start, incident: a.incident_id } });
      });
      const latest = new Map();
      predictions.forEach((p) => { const w = ts(p.window_end); if (!latest.has(p.signal) || latest.get(p.signal) < w) latest.set(p.signal, w); });
      predictions.filter((p) => ts(p.window_end) === latest.get(p.signal)).forEach((p) => {
        const g = groups[signalChart(p.signal)];
        const scale = p.signal === "error_ratio" ? 100 : 1;
        g.forecast.push({ t: ts(p.window_end) + p.horizon_ms, v: p.value * scale, lo: p.lower * scale, hi: p.upper * scale,
          title: `forecast of ${p.signal} (${p.method}): ${C.fmtNum(p.value * scale)} [${C.fmtNum(p.lower * scale)}, ${C.fmtNum(p.upper * scale)}] at ${hms(ts(p.window_end) + p.horizon_ms)}` });
      });
      Object.values(groups).forEach((g) => g.forecast.sort((a, b) => a.t - b.t));
      const t1 = Math.max(now, ...Object.values(groups).flatMap((g) => g.forecast.map((f) => f.t)));
      const common = { t0, t1, now };
      charts.replaceChildren(
        h("section", { "aria-label": "Request rate" }, h("h2", { text: "Rate (requests/s)" }),
          C.lineChart(Object.assign({ label: `${service} ${span} request rate`, unit: "/s", series: [{ name: "rate_per_s", cls: "s0", points: rows.map((r) => pt(r, r.rate_per_s)) }] }, groups.rate, common))),
        h("section", { "aria-label": "Errors" }, h("h2", { text: "Errors (%)" }),
          C.lineChart(Object.assign({ label: `${service} ${span} error percentage`, unit: "%", series: [{ name: "error %", cls: "s3", points: rows.map((r) => pt(r, r.error_ratio * 100)) }] }, groups.errors, common))),
        h("section", { "aria-label": "Latency" }, h("h2", { text: "Latency (ms): p50, p90, p99" }),
          C.lineChart(Object.assign({ label: `${service} ${span} latency quantiles`, unit: "ms", series: [
            { name: "p50_ms", cls: "s0", points: rows.map((r) => pt(r, r.p50_ms)) },
            { name: "p90_ms", cls: "s1", points: rows.map((r) => pt(r, r.p90_ms)) },
            { name: "p99_ms", cls: "s2", points: rows.map((r) => pt(r, r.p99_ms)) }] }, groups.latency, common))));
      charts.dataset.points = String(rows.length);
      charts.dataset.markers = String(anomalies.filter((a) => a.incident_state !== "resolved").length);
      const anTable = h("table", { class: "list" }, h("caption", { text: `Anomalies (${anomalies.length})` }),
        h("thead", {}, h("tr", {}, ["Window", "Signal", "Severity", "Value", "Expected", "State", "Incident trace"].map((c) => h("th", { scope: "col", text: c })))),
        h("tbody", {}, anomalies.slice().reverse().map((a) => h("tr", {},
          h("td", { text: hms(ts(a.window_start)) }), h("td", { text: a.signal }), h("td", {}, h("span", { class: "sev " + a.severity, text: a.severity })),
          h("td", { class: "num", text: C.fmtNum(a.value) }), h("td", { class: "num", text: `${C.fmtNum(a.expected_min)} – ${C.fmtNum(a.expected_max)}` }),
          h("td", { text: a.incident_state }), h("td", {}, traceLink(a.incident_id))))));
      const exTable = h("table", { class: "list" }, h("caption", { text: "Exemplar traces (slowest and failed spans)" }),
        h("thead", {}, h("tr", {}, ["Why", "End", "Duration ms", "Status", "Trace"].map((c) => h("th", { scope: "col", text: c })))),
        h("tbody", {}, exemplars.map((s) => h("tr", {}, h("td", { text: s.why }), h("td", { text: hms(ts(s.end_time)) }),
          h("td", { class: "num", text: num(s.duration_ms, 2) }), h("td", { text: s.status_code }), h("td", {}, traceLink(s.trace_id))))));
      below.replaceChildren(anTable, exTable);
    }
    return every(5000, load);
  }

  function seriesPicker() {
    const q = `SELECT service_name, span_name, span_kind, sum(calls) AS calls FROM red
WHERE window_size = ${lit(cfg.primary_window)} AND window_start >= now() - INTERVAL '10 minutes'
GROUP BY service_name, span_name, span_kind ORDER BY service_name, span_name, span_kind LIMIT 2000`;
    const list = h("ul", { class: "picker" });
    const err = h("div", { class: "err-slot" });
    main.append(h("h1", { text: "Series" }), h("p", { text: "Pick a series (or open one from the services board)." }), err, list, queryBox(() => q));
    sql(q).then((res) => {
      list.replaceChildren(...res.rows.map((r) => h("li", {}, h("a", { href: seriesHref(r.service_name, r.span_name, r.span_kind) },
        `${r.service_name} · ${r.span_name} · ${r.span_kind}`))));
    }).catch((e) => err.replaceChildren(errorBox(e)));
  }

  // ---- problems / anomalies -----------------------------------------------------------------

  function problemsPage(params) {
    const onlyOpen = params.get("open") === "1";
    // Each incident's newest window, with the problem it belongs to (its newest snapshot in
    // `problem_members`) and that problem's ranked likely causes (newest `problems` snapshot).
    const q = () => `WITH incidents AS (
  SELECT incident_id, service_name, span_name, span_kind, signal, severity, value, expected_min, expected_max,
         incident_start, incident_duration_ms, incident_windows, incident_state, window_end, detector, score
  FROM (
    SELECT *, row_number() OVER (PARTITION BY incident_id ORDER BY window_end DESC) AS newest
    FROM anomalies WHERE window_end >= now() - INTERVAL '6 hours'
  )
  WHERE newest = 1${onlyOpen ? " AND incident_state <> 'resolved'" : ""}
), membership AS (
  SELECT incident_id AS member_incident, problem_id
  FROM (
    SELECT incident_id, problem_id, row_number() OVER (PARTITION BY incident_id ORDER BY updated_at DESC) AS newest
    FROM problem_members WHERE updated_at >= now() - INTERVAL '6 hours'
  )
  WHERE newest = 1
), causes AS (
  SELECT problem_id AS cause_problem, cause_service, cause_span, cause_kind, cause_signal, causes
  FROM (
    SELECT *, row_number() OVER (PARTITION BY problem_id ORDER BY updated_at DESC) AS newest
    FROM problems WHERE updated_at >= now() - INTERVAL '6 hours'
  )
  WHERE newest = 1
)
SELECT incidents.*, membership.problem_id, causes.cause_service, causes.cause_span, causes.cause_kind, causes.cause_signal, causes.causes
FROM incidents
LEFT JOIN membership ON incidents.incident_id = membership.member_incident
LEFT JOIN causes ON membership.problem_id = causes.cause_problem
ORDER BY window_end DESC
LIMIT 500`;
    const openIn = h("input", { id: "problems-open", type: "checkbox", checked: onlyOpen });
    openIn.addEventListener("change", () => go("problems", { open: openIn.checked ? "1" : "" }));
    const err = h("div", { class: "err-slot" });
    const body = h("tbody");
    const table = h("table", { class: "list", id: "problems" }, h("caption", { class: "sr-only", text: "Incidents, newest first" }),
      h("thead", {}, h("tr", {}, ["Severity", "Signal", "Series", "Likely cause", "Value", "Expected range", "Started", "Duration", "State", "Trace"].map((c) => h("th", { scope: "col", text: c })))), body);
    main.append(h("h1", { text: "Problems and anomalies" }),
      h("div", { class: "controls" }, h("label", { class: "check" }, openIn, " Open incidents only"),
        h("span", { class: "info", text: " One row per incident (its newest window), last 6 hours. The trace holds every window of the incident; the likely cause is the first of its problem's ranked causes." })),
      err, table, queryBox(q));
    // Which cause lists the user opened, so a refresh keeps them open.
    const opened = new Set();
    function causeCell(a) {
      if (!a.problem_id || !a.cause_service) return h("td", { class: "cause", text: "–" });
      const ranked = (a.causes || "").split("\n").filter((l) => l.trim());
      const d = h("details", { class: "causes", open: opened.has(a.problem_id) },
        h("summary", { title: `problem ${a.problem_id}` },
          h("span", { class: "cause-first", text: `${a.cause_service} · ${a.cause_span}` }),
          h("span", { class: "cause-signal", text: ` (${a.cause_signal})` })),
        h("ol", { class: "cause-ranks", "aria-label": "likely causes, most likely first" },
          ranked.map((l) => h("li", { text: l.replace(/^\d+\.\s*/, "") }))));
      d.addEventListener("toggle", () => { if (d.open) opened.add(a.problem_id); else opened.delete(a.problem_id); });
      return h("td", { class: "cause", dataset: { problem: a.problem_id, service: a.cause_service, span: a.cause_span, kind: a.cause_kind || "", signal: a.cause_signal || "" } }, d);
    }
    return every(5000, async () => {
      try {
        const res = await sql(q());
        body.replaceChildren(...(res.rows.length ? res.rows.map((a) => h("tr", { dataset: { incident: a.incident_id, signal: a.signal } },
          h("td", {}, h("span", { class: "sev " + a.severity, text: a.severity })),
          h("td", { text: a.signal }),
          h("td", {}, h("a", { href: seriesHref(a.service_name, a.span_name, a.span_kind) + "&range=1h", text: `${a.service_name} · ${a.span_name}` })),
          causeCell(a),
          h("td", { class: "num", text: C.fmtNum(a.value) }),
          h("td", { class: "num", text: `${C.fmtNum(a.expected_min)} – ${C.fmtNum(a.expected_max)}` }),
          h("td", { text: hms(ts(a.incident_start)) }),
          h("td", { text: dur(a.incident_duration_ms) + ` (${a.incident_windows} windows)` }),
          h("td", { text: a.incident_state }),
          h("td", {}, traceLink(a.incident_id)))) : [h("tr", {}, h("td", { colspan: "10", text: "No incidents in the last 6 hours." }))]));
        table.dataset.rows = String(res.rows.length);
        err.replaceChildren();
        setStatus("updated " + hms(Date.now()));
      } catch (e) { err.replaceChildren(errorBox(e)); setStatus("update failed", true); }
    });
  }

  // ---- service graph ------------------------------------------------------------------------

  function graphPage() {
    const minutes = 5;
    const q = `SELECT client, server, connection_type, sum(requests) AS requests, sum(failed) AS failed,
       count(DISTINCT window_start) AS windows, max(server_p99_ms) AS server_p99_ms
FROM service_graph
WHERE window_size = ${lit(cfg.primary_window)} AND is_final AND window_start >= now() - INTERVAL '${minutes} minutes'
GROUP BY client, server, connection_type
ORDER BY client, server`;
    const err = h("div", { class: "err-slot" });
    const pic = h("div", { class: "graph-wrap" });
    const body = h("tbody");
    main.append(h("h1", { text: "Service graph" }),
      h("p", { class: "info", text: `Edges from client to server over the last ${minutes} minutes of closed ${cfg.primary_window} windows; rate = requests / time covered.` }),
      err, pic,
      h("table", { class: "list", id: "edges" }, h("caption", { text: "Edges" }),
        h("thead", {}, h("tr", {}, ["Client", "Server", "Type", "Rate /s", "Error %", "Server p99 ms (max)"].map((c) => h("th", { scope: "col", text: c })))), body),
      queryBox(() => q));
    return every(10000, async () => {
      try {
        const res = await sql(q);
        const edges = res.rows.map((r) => ({ ...r,
          rate: r.requests / Math.max(1, r.windows * cfg.primary_window_ms / 1000),
          error_pct: r.requests > 0 ? (100 * r.failed) / r.requests : 0 }));
        pic.replaceChildren(edges.length ? C.serviceGraph(edges, "service graph: services as boxes, calls as arrows labelled with rate and error %") : h("p", { text: "No service-graph edges yet." }));
        body.replaceChildren(...edges.map((e) => h("tr", {}, h("td", { text: e.client }), h("td", { text: e.server }), h("td", { text: e.connection_type }),
          h("td", { class: "num", text: num(e.rate, 2) }), h("td", { class: "num", text: num(e.error_pct, 2) }), h("td", { class: "num", text: num(e.server_p99_ms, 2) }))));
        err.replaceChildren();
        setStatus("updated " + hms(Date.now()));
      } catch (e) { err.replaceChildren(errorBox(e)); setStatus("update failed", true); }
    });
  }

  // ---- SQL editor ---------------------------------------------------------------------------

  const DEFAULT_SQL = () => `SELECT window_start, service_name, sum(calls) AS calls, max(p99_ms) AS p99_ms
FROM red
WHERE window_size = ${lit(cfg.primary_window)} AND window_start >= now() - INTERVAL '15 minutes'
GROUP BY window_start, service_name
ORDER BY window_start`;

  function sqlPage(params) {
    const area = h("textarea", { id: "sql-input", rows: "8", spellcheck: "false", "aria-describedby": "sql-help" });
    area.value = params.get("q") || DEFAULT_SQL();
    const runBtn = h("button", { type: "button", id: "sql-run", class: "primary" }, "Run");
    const out = h("div", { id: "sql-result", "aria-live": "polite" });
    const curl = h("pre", { class: "sql-text", id: "sql-curl" });
    const cli = h("pre", { class: "sql-text", id: "sql-cli" });
    const refreshCmds = () => { curl.textContent = curlFor(area.value); cli.textContent = cliFor(area.value); };
    area.addEventListener("input", refreshCmds);
    refreshCmds();
    main.append(h("h1", { text: "SQL" }),
      h("label", { for: "sql-input", text: "Query (DataFusion SQL; tables: red, red_windows, spans, metric_points, anomalies, predictions, service_graph, sessions, continuous_results, problems, problem_members)" }),
      area,
      h("p", { id: "sql-help", class: "info", text: "Ctrl+Enter runs the query. The API is read-only: SELECT, EXPLAIN, SHOW." }),
      h("div", { class: "actions" }, runBtn, copyButton("Copy curl", () => curlFor(area.value)), copyButton("Copy redwatch sql", () => cliFor(area.value))),
      h("details", { class: "query" }, h("summary", { text: "Same query with curl and redwatch sql" }), curl, cli),
      out);

    async function run() {
      runBtn.disabled = true;
      out.replaceChildren(h("p", { class: "info", text: "running…" }));
      try {
        const res = await sql(area.value);
        out.replaceChildren(...renderResult(res));
        out.dataset.state = "ok";
        setStatus(`${res.rows.length} rows in ${res.elapsed_ms} ms`);
      } catch (e) {
        out.replaceChildren(errorBox(e));
        out.dataset.state = "error";
        setStatus("query failed", true);
      } finally { runBtn.disabled = false; }
    }
    runBtn.addEventListener("click", run);
    area.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); run(); } });
    if (params.get("q")) run();
    area.focus();
  }

  function renderResult(res) {
    const cols = res.columns || [];
    const isTime = (c) => /^Timestamp|^Date/.test(c.type);
    const isNum = (c) => /^(U?Int\d+|Float\d+|Decimal)/.test(c.type);
    const parts = [h("p", { class: "info", id: "sql-count", text: `${res.rows.length} rows · ${res.elapsed_ms} ms` })];
    const timeCol = cols.find(isTime);
    const numCols = cols.filter(isNum);
    if (timeCol && numCols.length && res.rows.length) {
      const keyCol = cols.find((c) => c.type === "Utf8" || c.type === "Utf8View" || c.type === "LargeUtf8");
      const series = [];
      if (keyCol) {
        const by = new Map();
        res.rows.forEach((r) => { const k = r[keyCol.name]; if (!by.has(k)) by.set(k, []); by.get(k).push({ t: ts(r[timeCol.name]), v: r[numCols[0].name] }); });
        [...by.entries()].slice(0, 8).forEach(([k, pts], i) => series.push({ name: `${numCols[0].name} · ${k}`, cls: "s" + i, points: pts }));
      } else {
        numCols.slice(0, 4).forEach((c, i) => series.push({ name: c.name, cls: "s" + i, points: res.rows.map((r) => ({ t: ts(r[timeCol.name]), v: r[c.name] })) }));
      }
      series.forEach((s) => s.points.sort((a, b) => a.t - b.t));
      parts.push(h("section", { class: "sql-chart", "aria-label": "chart of the result" },
        h("p", { class: "info", text: `chart: ${series.map((s) => s.name).join(", ")} over ${timeCol.name}` + (series.length === 8 ? " (first 8 series)" : "") }),
        C.lineChart({ label: `query result: ${numCols[0].name} over ${timeCol.name}`, series })));
    }
    const shown = res.rows.slice(0, 1000);
    parts.push(h("div", { class: "table-wrap" }, h("table", { class: "list", id: "sql-table" },
      h("thead", {}, h("tr", {}, cols.map((c) => h("th", { scope: "col", title: c.type, text: c.name })))),
      h("tbody", {}, shown.map((r) => h("tr", {}, cols.map((c) => {
        const v = r[c.name];
        return h("td", { class: isNum(c) ? "num" : "", text: v === undefined || v === null ? "NULL" : typeof v === "object" ? JSON.stringify(v) : String(v) });
      })))))));
    if (res.rows.length > shown.length) parts.push(h("p", { class: "info", text: `first ${shown.length} of ${res.rows.length} rows shown` }));
    return parts;
  }

  // ---- start --------------------------------------------------------------------------------

  fetch("/console/config.json", { cache: "no-store" })
    .then((r) => r.json())
    .then((c) => { cfg = Object.assign(cfg, c); })
    .catch(() => setStatus("could not read /console/config.json; using defaults", true))
    .finally(() => {
      window.addEventListener("hashchange", route);
      route();
    });
})();
