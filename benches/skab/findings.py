"""Where redwatch's alarms go wrong on a bench run: per file, per sensor and per detector.
Usage: python3 benches/skab/findings.py target/skab-bench/results.json [EARLIER/results.json]
(with a second run: a per-file comparison first)."""

import json
import statistics
import sys
from collections import Counter, defaultdict

TRAIN = 400


def segments(labels):
    """[start, end) runs of 1s."""
    out, start = [], None
    for i, v in enumerate(labels + [0]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i))
            start = None
    return out


def quantiles(xs):
    if not xs:
        return "-"
    xs = sorted(xs)
    pick = [xs[int(q * (len(xs) - 1))] for q in (0.1, 0.5, 0.9)]
    return " / ".join(f"{v:.3g}" for v in pick) + f" (max {xs[-1]:.3g}, n={len(xs)})"


def file_stats(f):
    """(false-alarm windows, alarmed anomalous windows, incidents opened in normal rows, share of
    the anomaly covered) after warm-up."""
    anom, pred, w = f["anomaly"], f["pred"]["redwatch"], f["warmup"]
    fp = sum(1 for i in range(w, f["n"]) if pred[i] and not anom[i])
    tp = sum(1 for i in range(w, f["n"]) if pred[i] and anom[i])
    opens = sum(1 for a in f["alarms"] if a["incident_state"] == "open" and a["row"] >= w
                and not anom[a["row"]])
    return fp, tp, opens, tp / max(1, sum(anom[w:]))


def compare(new, old):
    lines = ["| file | false-alarm windows | false opens | anomaly covered |", "|---|---|---|---|"]
    olds = {f["id"]: f for f in old["files"]}
    for f in new["files"]:
        if f["id"] not in olds:
            continue
        a, b = file_stats(olds[f["id"]]), file_stats(f)
        lines.append(f"| {f['id']} | {a[0]} → {b[0]} | {a[2]} → {b[2]} | {a[3]:.0%} → {b[3]:.0%} |")
    return "\n".join(lines)


def report(d):
    lines = []
    fp_sig, tp_sig, fp_det, tp_det = Counter(), Counter(), Counter(), Counter()
    open_fp_sig, open_tp_sig = Counter(), Counter()
    fp_scores, tp_scores = [], []
    per_file = []
    for f in d["files"]:
        anom, n, w = f["anomaly"], f["n"], f["warmup"]
        seg = [s for s in segments(anom) if s[1] > TRAIN]
        rows_by = defaultdict(list)
        for a in f["alarms"]:
            rows_by[a["row"]].append(a)
        fp_rows = tp_rows = 0
        opens_normal = opens_anom = 0
        for i in range(max(w, 0), n):
            alarms = [a for a in rows_by.get(i, []) if a["incident_state"] != "resolved"]
            for a in rows_by.get(i, []):
                if a["incident_state"] == "open":
                    if anom[i]:
                        opens_anom += 1
                        open_tp_sig[a["signal"]] += 1
                    else:
                        opens_normal += 1
                        open_fp_sig[a["signal"]] += 1
            if not alarms:
                continue
            if anom[i]:
                tp_rows += 1
            else:
                fp_rows += 1
            for a in alarms:
                (tp_sig if anom[i] else fp_sig)[a["signal"]] += 1
                (tp_det if anom[i] else fp_det)[a["detector"]] += 1
                if a.get("score") is not None:
                    (tp_scores if anom[i] else fp_scores).append(a["score"])
        seg_desc = []
        for s, e in seg:
            hit = [i for i in range(s, e) if f["pred"]["redwatch"][i]]
            cover = len(hit) / (e - s)
            delay = (hit[0] - s) if hit else None
            seg_desc.append(f"[{s},{e}) " + (f"first alarm +{delay}, {cover:.0%} covered"
                                             if hit else "MISSED"))
        per_file.append((f["id"], fp_rows, tp_rows, opens_normal, opens_anom, seg_desc))
    lines.append("Per file (after warm-up; rows = windows; opens = incidents opened):\n")
    lines.append("| file | false-alarm windows | alarmed anomaly windows | opens in normal "
                 "| opens in anomaly | labelled anomalies (test part) |")
    lines.append("|---|---|---|---|---|---|")
    for fid, fp, tp, on, oa, sd in per_file:
        lines.append(f"| {fid} | {fp} | {tp} | {on} | {oa} | {'; '.join(sd)} |")
    lines.append("\nAlarm windows per sensor (signal), normal vs anomalous rows; incidents opened "
                 "in normal vs anomalous rows:\n")
    lines.append("| signal | false-alarm windows | anomaly windows | opens normal | opens anomaly |")
    lines.append("|---|---|---|---|---|")
    for s in sorted(set(fp_sig) | set(tp_sig)):
        lines.append(f"| {s} | {fp_sig[s]} | {tp_sig[s]} | {open_fp_sig[s]} | {open_tp_sig[s]} |")
    lines.append("\nDetector votes on alarm windows (normal / anomalous):\n")
    for k in sorted(set(fp_det) | set(tp_det), key=lambda k: -(fp_det[k] + tp_det[k])):
        lines.append(f"- `{k}`: {fp_det[k]} / {tp_det[k]}")
    lines.append(f"\nScore on false-alarm windows (p10 / p50 / p90): {quantiles(fp_scores)}")
    lines.append(f"Score on anomalous windows (p10 / p50 / p90): {quantiles(tp_scores)}")
    med = statistics.median
    if fp_scores and tp_scores:
        lines.append(f"(median ratio anomalous/false: {med(tp_scores) / max(med(fp_scores), 1e-12):.3g})")
    return "\n".join(lines)


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        run = json.load(fh)
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as fh:
            print("Compared with the earlier run (earlier → this one):\n")
            print(compare(run, json.load(fh)) + "\n")
    print(report(run))
