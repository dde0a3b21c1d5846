"""SKAB's standard scoring, written from its published definition (the SKAB README and the
evaluation description of its TSAD framework), not copied from it.

Two problems, both scored on the test part of every file (all rows after the first
`TRAIN_ROWS`), summed over files:

* Outlier detection: every row is a binary prediction. F1 = TP / (TP + (FP + FN) / 2),
  FAR = FP / (FP + TN) in %, MAR = FN / (FN + TP) in %.
* Changepoint detection (NAB-style): the predicted changepoints of a file are the rows where
  its binary prediction changes (|diff|, the first test row counting as a change when it is 1).
  Every labelled changepoint t opens a scoring window [t, t + 60 s] (windows that would overlap
  start where the previous one ends). In a window, the first predicted changepoint is a true
  positive worth a value that falls smoothly (a scaled tanh) from A_tp at the window's start to
  A_fp at its end; a window without one is a miss worth A_fn; a predicted changepoint outside
  every window is a false positive worth A_fp. The score is normalised between the null
  detector (every window missed) and the perfect one: 100 * (S - S_null) / (S_perfect - S_null).
  Profiles (A_tp, A_fp, A_fn): standard (1, -0.11, -1), low FP (1, -0.22, -1), low FN
  (1, -0.11, -2).
"""

import math

TRAIN_ROWS = 400
WINDOW_S = 60.0
PROFILES = {
    "standard": (1.0, -0.11, -1.0),
    "low_fp": (1.0, -0.22, -1.0),
    "low_fn": (1.0, -0.11, -2.0),
}
# The scoring curve is sampled at this many evenly spaced points over the window.
CURVE_POINTS = 1000


def binary_counts(truth, pred):
    """(tp, fp, fn, tn) of two equally long 0/1 sequences."""
    if len(truth) != len(pred):
        raise ValueError(f"truth has {len(truth)} rows, prediction {len(pred)}")
    tp = fp = fn = tn = 0
    for t, p in zip(truth, pred):
        if t and p:
            tp += 1
        elif p:
            fp += 1
        elif t:
            fn += 1
        else:
            tn += 1
    return tp, fp, fn, tn


def outlier_scores(files):
    """F1, FAR %, MAR % over `files`, a list of (truth, prediction) row sequences."""
    tp = fp = fn = tn = 0
    for truth, pred in files:
        a, b, c, d = binary_counts(truth, pred)
        tp, fp, fn, tn = tp + a, fp + b, fn + c, tn + d
    f1 = tp / (tp + (fn + fp) / 2) if tp + fn + fp else 1.0
    far = 100.0 * fp / (fp + tn) if fp + tn else 0.0
    mar = 100.0 * fn / (fn + tp) if fn + tp else 0.0
    return {"f1": round(f1, 2), "far": round(far, 2), "mar": round(mar, 2),
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def changes(pred):
    """Indices where a 0/1 prediction changes; index 0 counts when the prediction starts at 1."""
    out = [0] if pred and pred[0] else []
    out.extend(i for i in range(1, len(pred)) if pred[i] != pred[i - 1])
    return out


def scoring_windows(cp_times, width=WINDOW_S):
    """[start, end] per labelled changepoint (seconds); an overlapping window starts where the
    previous one ends."""
    wins = [[t, t + width] for t in sorted(cp_times)]
    for i in range(1, len(wins)):
        if wins[i - 1][1] >= wins[i][0]:
            wins[i][0] = wins[i - 1][1]
    return wins


def curve(position, a_tp, a_fp):
    """Value of a detection at `position` in [0, 1] of its window: A_tp at 0, A_fp at 1."""
    k = min(int(position * CURVE_POINTS), CURVE_POINTS - 1)
    x = -math.pi / 2 + k * math.pi / (CURVE_POINTS - 1)
    half = (a_tp - a_fp) / 2
    return -half * math.tanh(x) / math.tanh(math.pi / 2) + half + a_fp


def cp_confusion(cp_times, pred_times, width=WINDOW_S):
    """Per file: list of (window, first detection time or None) and the false-positive times."""
    wins = scoring_windows(cp_times, width)
    pred_times = sorted(pred_times)
    hits = []
    for s, e in wins:
        inside = [t for t in pred_times if s <= t <= e]
        hits.append(((s, e), inside[0] if inside else None))
    fps = [t for t in pred_times
           if not any(s <= t <= e for s, e in wins)]
    return hits, fps


def nab_scores(files, width=WINDOW_S):
    """NAB-style scores per profile over `files`, a list of (changepoint times, predicted
    changepoint times) in seconds; plus the number of missed changepoints and of false
    positives."""
    total = {p: [0.0, 0.0, 0.0] for p in PROFILES}  # score, null, perfect
    missed = fps_n = 0
    for cp_times, pred_times in files:
        hits, fps = cp_confusion(cp_times, pred_times, width)
        n_miss = sum(1 for _, t in hits if t is None)
        missed += n_miss
        fps_n += len(fps)
        for name, (a_tp, a_fp, a_fn) in PROFILES.items():
            s = a_fp * len(fps) + a_fn * n_miss
            for (ws, we), t in hits:
                if t is not None:
                    s += curve((t - ws) / (we - ws), a_tp, a_fp)
            total[name][0] += s
            total[name][1] += a_fn * len(hits)
            total[name][2] += a_tp * len(hits)
    out = {}
    for name, (s, null, perfect) in total.items():
        out[name] = round(100.0 * (s - null) / (perfect - null), 2) if perfect != null else 0.0
    out["missed_cps"] = missed
    out["fps"] = fps_n
    return out
