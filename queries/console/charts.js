// Charts of the redwatch console: plain SVG built with DOM calls (no library, nothing inline
// that the Content-Security-Policy would refuse). Exposes `RWCharts` for app.js.
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";

  function el(tag, attrs, parent) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs || {}) {
      if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, attrs[k]);
    }
    if (parent) parent.appendChild(e);
    return e;
  }

  function titled(node, text) {
    const t = el("title", {}, node);
    t.textContent = text;
    return node;
  }

  // Round tick values: 1, 2, 5 × 10^k.
  function niceTicks(lo, hi, count) {
    if (!(hi > lo)) { hi = lo + 1; }
    const span = hi - lo;
    const raw = span / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(10));
    return out;
  }

  function fmtNum(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
    if (a >= 100) return v.toFixed(0);
    if (a >= 10) return v.toFixed(1);
    if (a >= 1) return v.toFixed(2);
    return v.toPrecision(2);
  }

  function fmtTime(t, spanMs) {
    const d = new Date(t);
    const p = (n) => String(n).padStart(2, "0");
    const hm = p(d.getHours()) + ":" + p(d.getMinutes());
    return spanMs <= 15 * 60 * 1000 ? hm + ":" + p(d.getSeconds()) : hm;
  }

  // A line chart over time.
  //   opts.series:   [{name, cls, points: [{t, v, provisional}]}]
  //   opts.bands:    [{t0, t1, lo, hi, title}]        expected range of anomalous windows
  //   opts.markers:  [{t, v, cls, title, data}]      anomaly markers
  //   opts.forecast: [{t, v, lo, hi, title}]         predictions ahead of now
  //   opts.now:      ms; a vertical line, the forecast lies to its right
  //   opts.label:    accessible name; opts.unit: y-axis unit
  function lineChart(opts) {
    const W = opts.width || 1180, H = opts.height || 170;
    const m = { l: 56, r: 12, t: 12, b: 24 };
    const svg = el("svg", {
      class: "chart", viewBox: `0 0 ${W} ${H}`, width: "100%", height: H,
      role: "img", "aria-label": opts.label || "chart", preserveAspectRatio: "none",
    });
    titled(svg, opts.label || "chart");
    const pts = [];
    (opts.series || []).forEach((s) => s.points.forEach((p) => { if (p.v !== null && p.v !== undefined) pts.push(p); }));
    const all = pts.map((p) => p.t)
      .concat((opts.forecast || []).map((f) => f.t))
      .concat((opts.bands || []).flatMap((b) => [b.t0, b.t1]))
      .concat(opts.now ? [opts.now] : []);
    let t0 = opts.t0 !== undefined ? opts.t0 : Math.min(...all);
    let t1 = opts.t1 !== undefined ? opts.t1 : Math.max(...all);
    if (!isFinite(t0) || !isFinite(t1)) { t1 = Date.now(); t0 = t1 - 3600e3; }
    if (t1 <= t0) t1 = t0 + 1000;
    const ys = pts.map((p) => p.v)
      .concat((opts.bands || []).flatMap((b) => [b.lo, b.hi]))
      // A forecast's interval can be far wider than the data: it is clipped, not fitted.
      .concat((opts.forecast || []).map((f) => f.v))
      .concat((opts.markers || []).map((k) => k.v))
      .filter((v) => v !== null && v !== undefined && isFinite(v));
    let y0 = Math.min(0, ...ys), y1 = Math.max(...ys, 0);
    if (!(y1 > y0)) y1 = y0 + 1;
    y1 += (y1 - y0) * 0.05;
    const x = (t) => m.l + ((t - t0) / (t1 - t0)) * (W - m.l - m.r);
    const y = (v) => H - m.b - ((v - y0) / (y1 - y0)) * (H - m.t - m.b);
    const clampY = (v) => y(Math.max(y0, Math.min(y1, v)));

    const axes = el("g", { class: "axes" }, svg);
    niceTicks(y0, y1, 4).forEach((v) => {
      el("line", { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v), class: "grid" }, axes);
      el("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end" }, axes).textContent = fmtNum(v);
    });
    const nt = Math.max(2, Math.floor((W - m.l - m.r) / 120));
    for (let i = 0; i <= nt; i++) {
      const t = t0 + ((t1 - t0) * i) / nt;
      el("text", { x: x(t), y: H - 6, "text-anchor": i === 0 ? "start" : i === nt ? "end" : "middle" }, axes)
        .textContent = fmtTime(t, t1 - t0);
    }
    if (opts.unit) el("text", { x: 4, y: m.t + 4, class: "unit" }, axes).textContent = opts.unit;

    const bands = el("g", { class: "bands" }, svg);
    (opts.bands || []).forEach((b) => {
      titled(el("rect", {
        class: "band", x: x(b.t0), width: Math.max(2, x(b.t1) - x(b.t0)),
        y: clampY(b.hi), height: Math.max(1, clampY(b.lo) - clampY(b.hi)),
      }, bands), b.title || "expected range");
    });

    const lines = el("g", { class: "lines" }, svg);
    (opts.series || []).forEach((s, i) => {
      const cls = s.cls || "s" + i;
      const fin = s.points.filter((p) => !p.provisional && p.v !== null && p.v !== undefined);
      const prov = s.points.filter((p) => p.provisional && p.v !== null && p.v !== undefined);
      if (fin.length) {
        const d = fin.map((p, j) => (j ? "L" : "M") + x(p.t).toFixed(1) + "," + y(p.v).toFixed(1)).join("");
        titled(el("path", { d, class: "line " + cls, "data-series": s.name }, lines), s.name);
        if (fin.length === 1) el("circle", { cx: x(fin[0].t), cy: y(fin[0].v), r: 2.5, class: "dot " + cls }, lines);
      }
      if (prov.length) {
        // Open windows: dashed from the last final point, hollow dots (their values still move).
        const chain = (fin.length ? [fin[fin.length - 1]] : []).concat(prov);
        const d = chain.map((p, j) => (j ? "L" : "M") + x(p.t).toFixed(1) + "," + y(p.v).toFixed(1)).join("");
        el("path", { d, class: "line provisional " + cls }, lines);
        prov.forEach((p) => titled(el("circle", {
          cx: x(p.t), cy: y(p.v), r: 3, class: "provisional-dot " + cls,
        }, lines), `${s.name} ${fmtNum(p.v)} (open window, provisional)`));
      }
    });

    const fc = opts.forecast || [];
    if (fc.length) {
      const g = el("g", { class: "forecast" }, svg);
      const up = fc.map((f, j) => (j ? "L" : "M") + x(f.t) + "," + clampY(f.hi)).join("");
      const down = fc.slice().reverse().map((f) => "L" + x(f.t) + "," + clampY(f.lo)).join("");
      titled(el("path", { d: up + down + "Z", class: "forecast-interval" }, g), "forecast interval");
      el("path", { d: fc.map((f, j) => (j ? "L" : "M") + x(f.t) + "," + y(f.v)).join(""), class: "forecast-line" }, g);
      fc.forEach((f) => titled(el("circle", { cx: x(f.t), cy: y(f.v), r: 3, class: "forecast-dot" }, g),
        f.title || `forecast ${fmtNum(f.v)} [${fmtNum(f.lo)}, ${fmtNum(f.hi)}]`));
    }
    if (opts.now) {
      const g = el("g", { class: "now" }, svg);
      el("line", { x1: x(opts.now), x2: x(opts.now), y1: m.t, y2: H - m.b, class: "now-line" }, g);
      el("text", { x: x(opts.now) + 3, y: m.t + 10 }, g).textContent = "now";
    }
    const mk = el("g", { class: "markers" }, svg);
    (opts.markers || []).forEach((k) => {
      const c = el("path", {
        d: `M${x(k.t)},${clampY(k.v) - 7}l6,11h-12z`, class: "anomaly-marker " + (k.cls || ""),
        tabindex: "0", role: "img", "aria-label": k.title,
      }, mk);
      for (const a in k.data || {}) c.setAttribute("data-" + a, k.data[a]);
      titled(c, k.title);
    });
    return svg;
  }

  // A sparkline: final points as a line, provisional ones dashed with hollow dots.
  function sparkline(points, label, t0, t1) {
    const W = 120, H = 24;
    const svg = el("svg", { class: "spark", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": label });
    titled(svg, label);
    const vals = points.filter((p) => p.v !== null && p.v !== undefined);
    if (!vals.length) return svg;
    const lo = 0, hi = Math.max(...vals.map((p) => p.v)) || 1;
    const a = t0 !== undefined ? t0 : vals[0].t, b = t1 !== undefined ? t1 : vals[vals.length - 1].t;
    const x = (t) => 2 + ((t - a) / Math.max(1, b - a)) * (W - 6);
    const y = (v) => H - 2 - ((v - lo) / (hi - lo)) * (H - 4);
    const fin = vals.filter((p) => !p.provisional), prov = vals.filter((p) => p.provisional);
    if (fin.length) el("path", { d: fin.map((p, j) => (j ? "L" : "M") + x(p.t).toFixed(1) + "," + y(p.v).toFixed(1)).join(""), class: "spark-line" }, svg);
    if (prov.length) {
      const chain = (fin.length ? [fin[fin.length - 1]] : []).concat(prov);
      el("path", { d: chain.map((p, j) => (j ? "L" : "M") + x(p.t).toFixed(1) + "," + y(p.v).toFixed(1)).join(""), class: "spark-line provisional" }, svg);
      prov.forEach((p) => el("circle", { cx: x(p.t), cy: y(p.v), r: 2, class: "provisional-dot" }, svg));
    }
    return svg;
  }

  // The service graph: nodes in columns by depth from the callers that nobody calls.
  function serviceGraph(edges, label) {
    const nodes = new Map();
    const node = (n) => { if (!nodes.has(n)) nodes.set(n, { name: n, in: 0, depth: 0 }); return nodes.get(n); };
    edges.forEach((e) => { node(e.client); node(e.server).in++; });
    const out = new Map();
    edges.forEach((e) => { if (!out.has(e.client)) out.set(e.client, []); out.get(e.client).push(e.server); });
    const roots = [...nodes.values()].filter((n) => n.in === 0).map((n) => n.name);
    const seen = new Set();
    const queue = (roots.length ? roots : [...nodes.keys()].slice(0, 1)).map((r) => [r, 0]);
    while (queue.length) {
      const [n, d] = queue.shift();
      if (seen.has(n)) continue;
      seen.add(n);
      nodes.get(n).depth = d;
      (out.get(n) || []).forEach((s) => { if (!seen.has(s)) queue.push([s, d + 1]); });
    }
    const cols = [];
    [...nodes.values()].sort((p, q) => p.name.localeCompare(q.name)).forEach((n) => {
      (cols[n.depth] = cols[n.depth] || []).push(n);
    });
    const colW = 300, rowH = 70, nodeW = 150, nodeH = 34;
    const W = Math.max(600, cols.length * colW + 40);
    const H = Math.max(200, Math.max(...cols.map((c) => (c ? c.length : 0))) * rowH + 40);
    cols.forEach((c, i) => (c || []).forEach((n, j) => {
      n.x = 20 + i * colW;
      n.y = 20 + j * rowH + (H - 40 - c.length * rowH) / 2;
    }));
    const svg = el("svg", { class: "graph", viewBox: `0 0 ${W} ${H}`, width: "100%", height: Math.min(H, 600), role: "img", "aria-label": label });
    titled(svg, label);
    const defs = el("defs", {}, svg);
    const mkr = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 8, markerHeight: 8, orient: "auto-start-reverse" }, defs);
    el("path", { d: "M0,0L10,5L0,10z", class: "arrow" }, mkr);
    const eg = el("g", { class: "edges" }, svg);
    edges.forEach((e) => {
      const a = nodes.get(e.client), b = nodes.get(e.server);
      const x1 = a.x + nodeW, y1 = a.y + nodeH / 2;
      let x2 = b.x, y2 = b.y + nodeH / 2;
      let d, lx, ly;
      if (b.depth > a.depth) {
        const mx = (x1 + x2) / 2;
        d = `M${x1},${y1}C${mx},${y1} ${mx},${y2} ${x2},${y2}`;
        lx = (x1 + x2) / 2; ly = (y1 + y2) / 2 - 4;
      } else if (b.depth === a.depth) {
        // Same column: a bulge to the right of both boxes.
        x2 = b.x + nodeW;
        d = `M${x1},${y1}C${x1 + 70},${y1} ${x2 + 70},${y2} ${x2},${y2}`;
        lx = x1 + 56; ly = (y1 + y2) / 2 + 4;
      } else {
        x2 = b.x + nodeW / 2; y2 = b.y;
        d = `M${a.x + nodeW / 2},${a.y}C${a.x + nodeW / 2},${a.y - 40} ${x2},${y2 - 40} ${x2},${y2}`;
        lx = (a.x + nodeW / 2 + x2) / 2; ly = Math.min(a.y, y2) - 24;
      }
      const cls = e.error_pct >= 5 ? "edge bad" : e.error_pct > 0 ? "edge warn" : "edge";
      titled(el("path", { d, class: cls, "marker-end": "url(#arrow)" }, eg),
        `${e.client} → ${e.server}: ${fmtNum(e.rate)}/s, ${e.error_pct.toFixed(1)}% errors`);
      el("text", { x: lx, y: ly, "text-anchor": "middle", class: "edge-label" }, eg)
        .textContent = `${fmtNum(e.rate)}/s · ${e.error_pct.toFixed(1)}%`;
    });
    const ng = el("g", { class: "nodes" }, svg);
    nodes.forEach((n) => {
      const g = el("g", { class: "node" }, ng);
      el("rect", { x: n.x, y: n.y, width: nodeW, height: nodeH, rx: 6 }, g);
      el("text", { x: n.x + nodeW / 2, y: n.y + nodeH / 2 + 4, "text-anchor": "middle" }, g).textContent = n.name;
    });
    return svg;
  }

  window.RWCharts = { lineChart, sparkline, serviceGraph, fmtNum, fmtTime };
})();
