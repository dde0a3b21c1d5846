"""Two plain univariate baselines, run on the same per-window values redwatch saw (read back from
its `metric_points` table), with the same warm-up. Parameters are textbook defaults, fixed
before looking at the scores and not tuned on the corpus.

* EWMA z-score: mean and variance as exponentially weighted moving averages (alpha = 0.1, i.e.
  a memory of ~10 windows); a window alarms when |x - mean| > 3 standard deviations of the
  estimate made before it. Every window updates the estimate.
* Rolling median/MAD: the median and the median absolute deviation of the previous 60 windows;
  a window alarms when its modified z-score |x - median| / (1.4826 * MAD) exceeds 3.5 (the
  Iglewicz-Hoaglin cut-off).

A spread of 0 (a constant or quantised stretch) is floored at 1e-9 * max(1, |centre|) so that a
division is defined; then any change alarms, as it would for a plain implementation.
"""

import statistics
from collections import deque

EWMA_ALPHA = 0.1
EWMA_Z = 3.0
MAD_WINDOW = 60
MAD_Z = 3.5
MAD_SCALE = 1.4826


def _floor(spread, centre):
    return max(spread, 1e-9 * max(1.0, abs(centre)))


def ewma_z(values, warmup):
    """0/1 per value: the EWMA z-score alarm (none before `warmup` values were seen)."""
    out = []
    mean = var = None
    for i, x in enumerate(values):
        if x is None:
            out.append(0)
            continue
        if mean is None:
            mean, var = x, 0.0
            out.append(0)
            continue
        z = abs(x - mean) / _floor(var ** 0.5, mean)
        out.append(1 if i >= warmup and z > EWMA_Z else 0)
        d = x - mean
        mean += EWMA_ALPHA * d
        var = (1 - EWMA_ALPHA) * (var + EWMA_ALPHA * d * d)
    return out


def rolling_mad(values, warmup):
    """0/1 per value: the rolling median/MAD alarm (none before `warmup` values were seen)."""
    out = []
    past = deque(maxlen=MAD_WINDOW)
    for i, x in enumerate(values):
        if x is None:
            out.append(0)
            continue
        if len(past) >= 2 and i >= warmup:
            med = statistics.median(past)
            mad = statistics.median(abs(v - med) for v in past)
            z = abs(x - med) / _floor(MAD_SCALE * mad, med)
            out.append(1 if z > MAD_Z else 0)
        else:
            out.append(0)
        past.append(x)
    return out


BASELINES = {"ewma_z": ewma_z, "rolling_median_mad": rolling_mad}
