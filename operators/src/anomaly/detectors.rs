//! The point detectors that need no calendar: robust z-score (median/MAD over a ring buffer),
//! EWMA/EWMV control limits and a two-sided CUSUM, plus what a signal's unit says about noise.
//!
//! Each detector scores a value *before* learning it ([`Verdict`]) and is then told whether the
//! ensemble called the window anomalous, so an incident does not teach the baseline its own
//! values at full weight. State is a few numbers or one fixed-size `f32` ring; parameters live
//! in the shared [`super::params::DetectorParams`], not per series.

use super::ring::Ring16;

/// What one detector says about one value, before learning it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// The value the detector expected.
    pub expected: f64,
    /// Its standard deviation estimate (already floored by the signal's noise model).
    pub sd: f64,
    /// `(value - expected) / sd`, signed.
    pub z: f64,
}

impl Verdict {
    pub fn new(x: f64, expected: f64, sd: f64) -> Self {
        Verdict {
            expected,
            sd,
            z: (x - expected) / sd,
        }
    }
}

/// What the unit of a signal says about its noise and its guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalKind {
    /// Calls per second: Poisson counting noise; no minimum-traffic guard (drops matter).
    Rate,
    /// A share of calls in [0, 1] (`error_ratio`): binomial noise, minimum-traffic guard.
    Ratio,
    /// A latency quantile in ms: relative noise, minimum-traffic guard.
    Latency,
    /// Any other metric: no noise model, no guard.
    Generic,
}

impl SignalKind {
    /// The kind a signal name implies.
    pub fn of(signal: &str) -> SignalKind {
        if signal == "request_rate" {
            SignalKind::Rate
        } else if signal.ends_with("_ratio") {
            SignalKind::Ratio
        } else if signal.starts_with("latency_") {
            SignalKind::Latency
        } else {
            SignalKind::Generic
        }
    }

    /// Whether windows with fewer than `min_calls` calls are skipped.
    pub fn needs_traffic(self) -> bool {
        matches!(self, SignalKind::Ratio | SignalKind::Latency)
    }

    /// Values can't be negative (the reported expected range is clamped at 0).
    pub fn non_negative(self) -> bool {
        !matches!(self, SignalKind::Generic)
    }

    /// Maps a value to the scale the detectors work on, where noise is roughly symmetric and
    /// of stable size: `ln` for latencies (lognormal tails: a p99 of 50 calls is very skewed),
    /// `sqrt` for rates and ratios (Poisson / binomial counts: variance-stabilising), identity
    /// otherwise.
    pub fn transform(self, x: f64) -> f64 {
        match self {
            SignalKind::Rate => x.max(0.0).sqrt(),
            SignalKind::Ratio => x.clamp(0.0, 1.0).sqrt(),
            SignalKind::Latency => x.max(1e-3).ln(),
            SignalKind::Generic => x,
        }
    }

    /// The inverse of [`SignalKind::transform`].
    pub fn inverse(self, y: f64) -> f64 {
        match self {
            SignalKind::Rate => y.max(0.0).powi(2),
            SignalKind::Ratio => y.clamp(0.0, 1.0).powi(2),
            SignalKind::Latency => y.exp(),
            SignalKind::Generic => y,
        }
    }

    /// The smallest standard deviation (on the transformed scale) a value around the
    /// transformed `expected` can honestly have, given `calls` calls in a window of `window_s`
    /// seconds: counting noise a baseline learnt on busy windows would otherwise understate.
    pub fn noise_floor(self, expected: f64, calls: f64, window_s: f64) -> f64 {
        match self {
            // sqrt(count) has sd 1/2; sqrt(rate) = sqrt(count / window_s).
            SignalKind::Rate => 0.5 / window_s.max(1e-3).sqrt(),
            // sqrt(p̂) has sd ≈ 1/(2√n).
            SignalKind::Ratio => 0.5 / calls.max(1.0).sqrt(),
            // 2% relative: the quantile sketch's error plus a margin.
            SignalKind::Latency => 0.02,
            SignalKind::Generic => 1e-3 * expected.abs() + 1e-9,
        }
    }
}

/// Median and MAD of a rolling window of recent values (2 bytes each, see [`Ring16`]).
#[derive(Debug, Clone)]
pub struct RobustZ {
    ring: Ring16,
}

/// MAD → standard deviation under normality.
const MAD_TO_SD: f64 = 1.4826;

impl RobustZ {
    pub fn new(capacity: usize) -> Self {
        RobustZ {
            ring: Ring16::new(capacity.max(1)),
        }
    }

    /// Values held.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Ready once half the baseline is filled.
    pub fn ready(&self) -> bool {
        self.ring.len() * 2 >= self.ring.capacity() && self.ring.len() >= 4
    }

    /// (median, robust sd) of the baseline; `scratch` avoids an allocation per call.
    pub fn baseline(&self, scratch: &mut Vec<f32>) -> Option<(f64, f64)> {
        if self.ring.is_empty() {
            return None;
        }
        self.ring.fill_f32(scratch);
        let med = median_in_place(scratch);
        for v in scratch.iter_mut() {
            *v = (*v - med).abs();
        }
        let mad = median_in_place(scratch);
        Some((med as f64, MAD_TO_SD * mad as f64))
    }

    /// Scores `x` against the baseline, with the spread floored at `floor`.
    pub fn score(&self, x: f64, floor: f64, scratch: &mut Vec<f32>) -> Option<Verdict> {
        let (med, sd) = self.baseline(scratch)?;
        Some(Verdict::new(x, med, sd.max(floor)))
    }

    pub fn push(&mut self, x: f64) {
        self.ring.push(x);
    }

    pub fn heap_bytes(&self) -> usize {
        self.ring.heap_bytes()
    }
}

/// Median by selection (average of the two middle values for even lengths); reorders `v`.
fn median_in_place(v: &mut [f32]) -> f32 {
    let n = v.len();
    let mid = n / 2;
    let (lo, m, _) = v.select_nth_unstable_by(mid, f32::total_cmp);
    let upper = *m;
    if n % 2 == 1 {
        upper
    } else {
        let lower = lo.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        0.5 * (lower + upper)
    }
}

/// Exponentially weighted mean and variance.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ewma {
    mean: f64,
    /// Single precision: a spread needs no more, and four signals a series save 16 bytes.
    var: f32,
    n: u32,
}

impl Ewma {
    pub fn n(&self) -> u32 {
        self.n
    }

    pub fn mean(&self) -> f64 {
        self.mean
    }

    pub fn sd(&self) -> f64 {
        (self.var as f64).sqrt()
    }

    /// Ready after a few values (the ensemble's warm-up guards the rest).
    pub fn ready(&self) -> bool {
        self.n >= 8
    }

    pub fn score(&self, x: f64, floor: f64) -> Option<Verdict> {
        (self.n > 0).then(|| Verdict::new(x, self.mean, self.sd().max(floor)))
    }

    /// Learns `x`. When `freeze_spread` (the window was anomalous) only the mean moves.
    pub fn update(&mut self, x: f64, alpha: f64, freeze_spread: bool) {
        if self.n == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            let d = x - self.mean;
            self.mean += alpha * d;
            if !freeze_spread {
                self.var = ((1.0 - alpha) * (self.var as f64 + alpha * d * d)) as f32;
            }
        }
        self.n = self.n.saturating_add(1);
    }
}

/// Two-sided tabular CUSUM on standardised residuals, with its own slow reference for when no
/// seasonal baseline supplies the residuals.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cusum {
    /// Upper and lower cumulative sums, in standard deviations.
    pub hi: f32,
    pub lo: f32,
    /// The slow reference: mean and variance (Huber-clipped updates).
    ref_mean: f32,
    ref_var: f32,
    ref_n: u16,
}

/// Smoothing of CUSUM's own reference (~100 windows of memory).
const CUSUM_REF_ALPHA: f64 = 0.01;

impl Cusum {
    /// Feeds one standardised residual `r` (clamped, so one outlier can't decide alone) and
    /// returns the signed alarm: `+1` for an upward shift, `-1` for downward, `0` none. An alarm
    /// also needs the current residual beyond the slack: a shift that has ended stops alarming
    /// although the sum takes a while to drain.
    pub fn update(&mut self, r: f64, slack: f64, threshold: f64) -> i8 {
        let r = r.clamp(-6.0, 6.0);
        let cap = (2.0 * threshold) as f32;
        self.hi = ((self.hi as f64 + r - slack).max(0.0) as f32).min(cap);
        self.lo = ((self.lo as f64 - r - slack).max(0.0) as f32).min(cap);
        if self.hi as f64 > threshold && r > slack {
            1
        } else if self.lo as f64 > threshold && r < -slack {
            -1
        } else {
            0
        }
    }

    /// Standardised residual of `x` against the own reference (None while it has too little
    /// history), then learns `x`: clipped to ±3 sd, at a tenth of the rate while a shift is
    /// suspected (either sum past `threshold / 2`), and outliers (> 2.5 sd) leave the variance
    /// alone — otherwise the reference would chase the very shift CUSUM is summing up.
    pub fn reference_residual(&mut self, x: f64, floor: f64, threshold: f64) -> Option<f64> {
        let mean = self.ref_mean as f64;
        let sd = (self.ref_var as f64).sqrt().max(floor).max(1e-12);
        let r = (self.ref_n >= 30).then_some((x - mean) / sd);
        if self.ref_n == 0 {
            self.ref_mean = x as f32;
        } else {
            let mut a = CUSUM_REF_ALPHA.max(1.0 / (self.ref_n as f64 + 1.0));
            let d = x - mean;
            let (d, learn_var) = if self.ref_n >= 30 {
                if self.statistic() > threshold / 2.0 {
                    a *= 0.1;
                }
                (d.clamp(-3.0 * sd, 3.0 * sd), d.abs() <= 2.5 * sd)
            } else {
                (d, true)
            };
            self.ref_mean = (mean + a * d) as f32;
            if learn_var {
                self.ref_var = ((1.0 - a) * (self.ref_var as f64 + a * d * d)) as f32;
            }
        }
        self.ref_n = self.ref_n.saturating_add(1);
        r
    }

    /// Forgets the shift summed so far: the sums restart at 0 and the own reference at `x` (a
    /// shift accepted as the new normal is not summed on).
    pub fn restart(&mut self, x: f64) {
        self.hi = 0.0;
        self.lo = 0.0;
        if self.ref_n > 0 {
            self.ref_mean = x as f32;
        }
    }

    /// The own reference's mean, once it has history.
    pub fn reference_mean(&self) -> Option<f64> {
        (self.ref_n >= 30).then_some(self.ref_mean as f64)
    }

    /// The larger of the two sums, in standard deviations.
    pub fn statistic(&self) -> f64 {
        self.hi.max(self.lo) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn robust_z_ignores_outliers_in_baseline() {
        let mut r = RobustZ::new(21);
        let mut s = Vec::new();
        for i in 0..21 {
            r.push(if i == 5 { 1e6 } else { 100.0 + (i % 3) as f64 });
        }
        let (med, sd) = r.baseline(&mut s).unwrap();
        assert_eq!(med, 101.0);
        assert!(sd > 0.0 && sd < 2.0, "{sd}");
        let v = r.score(200.0, 0.1, &mut s).unwrap();
        assert!(v.z > 50.0);
        let v = r.score(101.5, 0.1, &mut s).unwrap();
        assert!(v.z.abs() < 1.0);
    }

    #[test]
    fn ewma_tracks_mean_and_variance() {
        let mut e = Ewma::default();
        for i in 0..2000 {
            e.update(if i % 2 == 0 { 9.0 } else { 11.0 }, 0.05, false);
        }
        assert!((e.mean() - 10.0).abs() < 0.1);
        assert!((e.sd() - 1.0).abs() < 0.1, "{}", e.sd());
        let before = e.sd();
        e.update(1000.0, 0.05, true);
        assert_eq!(e.sd(), before);
    }

    #[test]
    fn cusum_detects_small_persistent_shift_not_noise() {
        let mut c = Cusum::default();
        // Alternating ±1 never accumulates past the slack.
        for i in 0..1000 {
            let r = if i % 2 == 0 { 1.0 } else { -1.0 };
            assert_eq!(c.update(r, 1.0, 12.0), 0);
        }
        let mut first = None;
        for i in 0..100 {
            if c.update(2.0, 1.0, 12.0) == 1 && first.is_none() {
                first = Some(i);
            }
        }
        assert_eq!(first, Some(12));
        // Back to normal: the alarm stops at once.
        assert_eq!(c.update(0.0, 1.0, 12.0), 0);
    }

    #[test]
    fn noise_floors_are_sane() {
        // Over 10 s, sqrt(rate) has sd 0.5/sqrt(10) whatever the rate.
        let f = SignalKind::Rate.noise_floor(10.0, 1000.0, 10.0);
        assert!((f - 0.5 / 10f64.sqrt()).abs() < 1e-9);
        // Error ratio 0 over 100 calls: one error (sqrt(0.01) = 0.1) is 2 sd, not significant.
        let f = SignalKind::Ratio.noise_floor(0.0, 100.0, 10.0);
        assert!((f - 0.05).abs() < 1e-9);
        for k in [
            SignalKind::Rate,
            SignalKind::Ratio,
            SignalKind::Latency,
            SignalKind::Generic,
        ] {
            for x in [0.01, 0.25, 1.0] {
                assert!((k.inverse(k.transform(x)) - x).abs() < 1e-9);
            }
        }
        assert_eq!(SignalKind::of("error_ratio"), SignalKind::Ratio);
        assert_eq!(SignalKind::of("latency_p99_ms"), SignalKind::Latency);
        assert_eq!(SignalKind::of("cpu.utilization"), SignalKind::Generic);
    }

    proptest! {
        /// The ring's median equals a sort-based median of the last `cap` values.
        #[test]
        fn robust_median_matches_naive(xs in proptest::collection::vec(-1e6f32..1e6, 1..200), cap in 1usize..64) {
            let mut r = RobustZ::new(cap);
            for &x in &xs {
                r.push(x as f64);
            }
            let start = xs.len().saturating_sub(cap);
            let mut tail: Vec<f32> = xs[start..].to_vec();
            tail.sort_by(f32::total_cmp);
            let n = tail.len();
            let naive = if n % 2 == 1 { tail[n / 2] } else { 0.5 * (tail[n / 2 - 1] + tail[n / 2]) };
            let (med, sd) = r.baseline(&mut Vec::new()).unwrap();
            // Values are stored in half precision (relative ~0.05%; values far below the
            // largest held lose more).
            let largest = tail.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
            let tol = 1e-3 * largest + 1e-9;
            prop_assert!((med - naive as f64).abs() <= tol, "{} vs {}", med, naive);
            prop_assert!(sd >= 0.0);
        }

        /// EWMA stays within the range of its inputs, and its variance is never negative.
        #[test]
        fn ewma_bounded(xs in proptest::collection::vec(-1e3f64..1e3, 1..300), alpha in 0.001f64..1.0) {
            let mut e = Ewma::default();
            let (lo, hi) = xs.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            for &x in &xs {
                e.update(x, alpha, false);
                prop_assert!(e.sd() >= 0.0);
            }
            prop_assert!(e.mean() >= lo - 1e-9 && e.mean() <= hi + 1e-9);
        }

        /// CUSUM sums stay in [0, 2h] whatever comes in.
        #[test]
        fn cusum_bounded(rs in proptest::collection::vec(-1e9f64..1e9, 1..300)) {
            let mut c = Cusum::default();
            for &r in &rs {
                c.update(r, 0.5, 5.0);
                prop_assert!(c.hi >= 0.0 && c.hi <= 10.0 && c.lo >= 0.0 && c.lo <= 10.0);
            }
        }
    }
}
