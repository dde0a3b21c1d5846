"""SKAB development benchmark for redwatch's anomaly detection (see benches/skab/README.md).

Every SKAB experiment file is replayed through a real `redwatch run` (one process per file:
the warm-up is 15% of each series), its eight sensors as OTLP gauges, one point per 5 m window.
redwatch's decisions come from the `anomalies` table; the two baselines run on the per-window
values read back from `metric_points`. All are scored with SKAB's standard scoring
(scoring.py) on the test part of every file (rows after the first 400).

A file's prediction for a row is 1 when any of its sensors is in alarm in that window (SKAB is
multivariate; redwatch and the baselines watch each sensor on its own).
"""

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import baselines  # noqa: E402
import replay  # noqa: E402
import scoring  # noqa: E402

WARMUP_SHARE = 0.15
LABELS = ("anomaly", "changepoint")


def metric_name(column):
    out = "".join(c.lower() if c.isalnum() else "_" for c in column).strip("_")
    return "skab." + "_".join(p for p in out.split("_") if p)


def load(data_dir):
    """[(file id, rows)] for every experiment with anomalies (anomaly-free.csv is not scored)."""
    if os.path.isdir(os.path.join(data_dir, "data")):
        data_dir = os.path.join(data_dir, "data")
    files = []
    for root, _, names in os.walk(data_dir):
        for n in names:
            if n.endswith(".csv") and "anomaly-free" not in root + n:
                files.append(os.path.join(root, n))
    if not files:
        raise SystemExit(f"no SKAB csv files under {data_dir}")
    out = []
    for path in sorted(files, key=lambda p: (os.path.dirname(p), int(os.path.basename(p)[:-4]))):
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f, delimiter=";"))
        fid = os.path.relpath(path, data_dir)[:-4]
        out.append((fid, rows))
    return out


def parse(rows):
    """(times in s, {metric: values}, anomaly labels, changepoint labels)."""
    cols = [c for c in rows[0] if c not in ("datetime",) + LABELS]
    times = [datetime.fromisoformat(r["datetime"]).replace(tzinfo=timezone.utc).timestamp()
             for r in rows]
    series = {}
    for c in cols:
        vals = []
        for r in rows:
            v = (r[c] or "").strip()
            vals.append(float(v) if v else None)
        series[metric_name(c)] = vals
    anom = [int(float(r["anomaly"])) for r in rows]
    cps = [int(float(r["changepoint"])) for r in rows]
    return times, series, anom, cps


def run_file(binary, fid, rows, workdir):
    times, series, anom, cps = parse(rows)
    n = len(times)
    warmup = int(round(WARMUP_SHARE * n))
    os.makedirs(workdir, exist_ok=True)
    t0, anomalies, values, counters, info = replay.replay(binary, series, warmup, workdir)
    for m, vals in series.items():
        got = sum(v is not None for v in values[m])
        want = sum(v is not None for v in vals)
        if got != want:
            raise replay.ReplayError(f"{fid} {m}: {got} final windows, {want} points sent")
    alarm_rows = []
    for a in anomalies:
        i = replay.window_index(a["window_start"], t0)
        if 0 <= i < n:
            alarm_rows.append(dict(a, row=i))
    alarms = sum(1 for a in anomalies if a["incident_state"] != "resolved")
    if alarms != info.get("redwatch_anomalies_total"):
        print(f"WARNING {fid}: {alarms} alarm rows in SQL, redwatch_anomalies_total "
              f"{info.get('redwatch_anomalies_total')}", file=sys.stderr)
    pred = {"redwatch": [0] * n}
    opens = [0] * n
    for a in alarm_rows:
        if a["incident_state"] != "resolved":
            pred["redwatch"][a["row"]] = 1
        if a["incident_state"] == "open":
            opens[a["row"]] = 1
    # Non-standard view: a sensor is in alarm from the window its incident opens until the
    # window that resolves it (what an incident list shows), not only on anomalous windows.
    spans = [0] * n
    open_at = {}
    for a in sorted(alarm_rows, key=lambda a: a["row"]):
        key = (a["signal"], a["incident_id"])
        if a["incident_state"] == "open":
            open_at[key] = a["row"]
        elif a["incident_state"] == "resolved" and key in open_at:
            for i in range(open_at.pop(key), a["row"]):
                spans[i] = 1
    for start in open_at.values():
        for i in range(start, n):
            spans[i] = 1
    pred["redwatch_incidents"] = spans
    for name, fn in baselines.BASELINES.items():
        p = [0] * n
        for vals in values.values():
            for i, hit in enumerate(fn(vals, warmup)):
                p[i] |= hit
        pred[name] = p
    return {"id": fid, "n": n, "warmup": warmup, "times": times, "anomaly": anom,
            "changepoint": cps, "pred": pred, "opens": opens, "alarms": alarm_rows,
            "counters": counters, "self_metrics": info}


def score(results, method, opens_as_cps=False):
    tr = scoring.TRAIN_ROWS
    outl, cpf = [], []
    for r in results:
        p = r["opens"] if opens_as_cps else r["pred"][method]
        outl.append((r["anomaly"][tr:], r["pred"][method][tr:]))
        t = r["times"][tr:]
        cp_true = [t[i] for i, c in enumerate(r["changepoint"][tr:]) if c]
        if opens_as_cps:
            cp_pred = [t[i] for i, o in enumerate(p[tr:]) if o]
        else:
            cp_pred = [t[i] for i in scoring.changes(p[tr:])]
        cpf.append((cp_true, cp_pred))
    # Incident opens are changepoints, not a per-window state: no outlier scores for them.
    outlier = None if opens_as_cps else scoring.outlier_scores(outl)
    return {"outlier": outlier, "changepoint": scoring.nab_scores(cpf)}


def tables(scores):
    lines = ["| detector | F1 | FAR, % | MAR, % | NAB standard | NAB lowFP | NAB lowFN "
             "| missed CPs | FPs |", "|---|---|---|---|---|---|---|---|---|"]
    for name, s in scores.items():
        o, c = s["outlier"] or {"f1": "—", "far": "—", "mar": "—"}, s["changepoint"]
        lines.append(f"| {name} | {o['f1']} | {o['far']} | {o['mar']} | {c['standard']} "
                     f"| {c['low_fp']} | {c['low_fn']} | {c['missed_cps']} | {c['fps']} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="SKAB checkout (or its data/ folder)")
    ap.add_argument("--redwatch", required=True, help="the redwatch binary")
    ap.add_argument("--out", default="target/skab-bench", help="folder for results.json, "
                    "summary.md")
    ap.add_argument("--label", default="", help="what was measured, e.g. the redwatch commit")
    ap.add_argument("--only", default="", help="comma-separated file ids (e.g. valve1/0)")
    args = ap.parse_args()
    files = load(args.data)
    if args.only:
        keep = set(args.only.split(","))
        files = [f for f in files if f[0] in keep]
    os.makedirs(args.out, exist_ok=True)
    results = []
    started = time.monotonic()
    for fid, rows in files:
        t = time.monotonic()
        results.append(run_file(args.redwatch, fid, rows, os.path.join(args.out, "runs", fid)))
        r = results[-1]
        print(f"{fid}: {r['n']} windows, warm-up {r['warmup']}, {len(r['alarms'])} anomaly rows "
              f"{r['self_metrics']} "
              f"({time.monotonic() - t:.1f}s)", file=sys.stderr)
    scores = {"redwatch": score(results, "redwatch")}
    for name in baselines.BASELINES:
        scores[name] = score(results, name)
    extra = {"redwatch, incident open → resolved as the alarm state":
             score(results, "redwatch_incidents"),
             "redwatch, incident opens as the changepoints": score(results, "redwatch", True)}
    counters = {}
    for r in results:
        for k, v in r["counters"].items():
            counters[k] = counters.get(k, 0) + v
    meta = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "git": git_head(),
        "label": args.label,
        "files": len(results),
        "seconds": round(time.monotonic() - started, 1),
        "counters": counters,
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump({"meta": meta, "scores": scores, "extra": extra, "files": results}, f)
    summary = (f"SKAB, {len(results)} files, {meta['date']}, {meta['cpu']}, bench {meta['git']}, {args.label}\n\n"
               + tables(scores) + "\n\nOther views of redwatch's alarms (same scoring):\n\n" + tables(extra)
               + f"\n\nself-metrics summed over runs: {counters}\n")
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write(summary)
    print(summary)
    if any(counters.values()):
        raise SystemExit(f"points were dropped or series expired during replay: {counters}")


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_head():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
