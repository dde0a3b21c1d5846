//! The calibrated anomaly score (docs/anomaly-detection.md, "The score"): the probability, under
//! the series' own predictive distribution, of a value less extreme than the one observed, so
//! that on normal data the share of windows with score ≥ s is about 1 − s on every series.
//!
//! Three parts, each a few bytes per (series, signal):
//! - [`ValueShape`]: what the values themselves say — their quantum (the smallest non-zero step
//!   seen: a quantised gauge or a count), whether they are non-negative integers (counts), and a
//!   slow raw-scale mean and dispersion index for the count model.
//! - The predictive tail: a negative binomial (Poisson when not overdispersed) for small counts,
//!   else a Student-t on the detector's variance-stabilised scale. A quantised value is a cell
//!   `[x − q/2, x + q/2]`, not a point: its probability mass is spread with a deterministic coin
//!   (randomised PIT), which keeps discrete series calibrated instead of scoring every zero alike.
//! - [`TailLedger`]: a per-series recalibration. It counts (with a slow decay) how often the
//!   model's tail probability fell below 0.1, 0.01 and 0.001 and scales the tail probability by
//!   observed ÷ nominal (each level shrunk towards what the coarser ones say): heavy-tailed
//!   series get lower scores, without the model having to know why.
//!
//! Must not decide alarms (the ensemble does) nor keep per-window history.

use statrs::function::erf::erfc;

/// Degrees of freedom of the Student-t predictive distribution: a rolling baseline of 60 values
/// estimates its spread with about this many (the median/MAD is ~37% efficient).
pub const T_DOF: f64 = 20.0;
/// Below this expected count per window, counts are scored exactly (negative binomial); above it
/// the variance-stabilised normal approximation is as good and cheaper.
pub const EXACT_COUNT_BELOW: f64 = 30.0;
/// Smoothing of the raw-scale mean and dispersion index of counts.
const COUNT_ALPHA: f64 = 0.01;
/// Nominal tail levels the ledger checks.
const LEVELS: [f64; 3] = [0.1, 0.01, 0.001];
/// The ledger's memory (windows), and its prior's weight: worth `LEDGER_PRIOR_HITS` tail hits
/// at each level, at least `LEDGER_PRIOR` windows.
const LEDGER_MEMORY: f64 = 6000.0;
const LEDGER_PRIOR: f64 = 300.0;
const LEDGER_PRIOR_HITS: f64 = 3.0;

/// Upper tail probability P(T > t) of a Student-t with `nu` degrees of freedom: Wallace's
/// normalising transform (accurate to a few % far into the tail) and the normal tail.
pub fn t_upper(t: f64, nu: f64) -> f64 {
    let z = (nu * (t * t / nu).ln_1p()).sqrt() * (8.0 * nu + 1.0) / (8.0 * nu + 3.0);
    let z = if t < 0.0 { -z } else { z };
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// A uniform number in [0, 1) from a few bits of context: the randomised PIT's coin.
/// Deterministic, so a replay scores the same.
pub fn coin(a: u64, b: u64) -> f64 {
    let mut z = a ^ b.rotate_left(29) ^ 0x5851_f42d_4c95_7f2d;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Lower and upper tail of an observation: `lower` = P(X < x) + v·P(X = x), `upper` = 1 − lower,
/// both computed without cancellation where it matters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tails {
    pub lower: f64,
    pub upper: f64,
}

impl Tails {
    /// Tails of the cell `[lo, hi]` (a point when equal) under Student-t(`nu`) with location `m`
    /// and scale `sd`, the mass of the cell split by coin `v`.
    pub fn student(lo: f64, hi: f64, m: f64, sd: f64, nu: f64, v: f64) -> Tails {
        let sd = sd.max(1e-300);
        let (a, b) = ((lo - m) / sd, (hi - m) / sd);
        // (P(X > t), P(X < t)), the smaller one computed directly (one tail function per point).
        let tails = |t: f64| {
            if t >= 0.0 {
                let up = t_upper(t, nu);
                (up, 1.0 - up)
            } else {
                let low = t_upper(-t, nu);
                (1.0 - low, low)
            }
        };
        let (up_a, low_a) = tails(a);
        let (up_b, low_b) = if b == a { (up_a, low_a) } else { tails(b) };
        let upper = up_b + (1.0 - v) * (up_a - up_b).max(0.0);
        let lower = low_a + v * (low_b - low_a).max(0.0);
        Tails { lower, upper }
    }

    /// Tails of count `k` under a negative binomial with mean `mu` and variance `var` (Poisson
    /// when `var ≤ mu`), the mass at `k` split by coin `v`.
    pub fn count(k: f64, mu: f64, var: f64, v: f64) -> Tails {
        let k = k.max(0.0).round();
        let mu = mu.max(1e-6);
        let sd = var.max(mu).sqrt();
        if k > mu + 60.0 * sd + 60.0 {
            // Astronomically far out: not worth a long sum.
            return Tails {
                lower: 1.0,
                upper: 1e-300,
            };
        }
        // pmf(0) and the ratio pmf(i+1)/pmf(i) = (i + r)/(i + 1) · mu/(r + mu) (r → ∞: Poisson).
        let over = var - mu;
        let (mut pmf, r) = if over > 1e-9 * mu {
            let r = mu * mu / over;
            ((r * (r / (r + mu)).ln()).exp(), Some(r))
        } else {
            ((-mu).exp(), None)
        };
        let mut below = 0.0;
        let n = k as u64;
        for i in 0..n {
            below += pmf;
            let i = i as f64;
            pmf *= match r {
                Some(r) => (i + r) / (i + 1.0) * mu / (r + mu),
                None => mu / (i + 1.0),
            };
            if pmf == 0.0 && below >= 1.0 {
                break;
            }
        }
        let below = below.min(1.0);
        let lower = (below + v * pmf).min(1.0);
        // Upper: the mass above k, summed directly when the lower side is near 1 (no
        // cancellation), else 1 − lower.
        let upper = if lower > 0.99 {
            let mut above = 0.0;
            let mut p = pmf;
            let mut i = k;
            while i < k + 2000.0 {
                p *= match r {
                    Some(r) => (i + r) / (i + 1.0) * mu / (r + mu),
                    None => mu / (i + 1.0),
                };
                above += p;
                i += 1.0;
                if p < above * 1e-12 || p == 0.0 {
                    break;
                }
            }
            above + (1.0 - v) * pmf
        } else {
            1.0 - lower
        };
        Tails {
            lower,
            upper: upper.max(1e-300),
        }
    }

    /// The tail probability in the alarm direction (`up`/`down`; both: twice the smaller tail).
    pub fn p(&self, up: bool, down: bool) -> f64 {
        let p = match (up, down) {
            (true, false) => self.upper,
            (false, true) => self.lower,
            _ => 2.0 * self.lower.min(self.upper),
        };
        p.clamp(1e-300, 1.0)
    }
}

/// What a series' own values say about their resolution and domain.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValueShape {
    /// Smallest non-zero step between consecutive values (0 = none seen yet).
    quantum: f32,
    last: f32,
    /// Slow raw-scale mean of the count, and mean of (count − mean)² / mean (1 = Poisson).
    count_mean: f32,
    dispersion: f32,
    flags: u8,
}

const SEEN: u8 = 1;
const NEGATIVE: u8 = 2;
const NON_INTEGER: u8 = 4;

impl ValueShape {
    /// The quantum of the values (0 = continuous or unknown).
    pub fn quantum(&self) -> f64 {
        self.quantum as f64
    }

    /// No negative value seen (yet).
    pub fn non_negative(&self) -> bool {
        self.flags & NEGATIVE == 0
    }

    /// Only non-negative integers seen: a count.
    pub fn integer_counts(&self) -> bool {
        self.flags & SEEN != 0 && self.flags & (NEGATIVE | NON_INTEGER) == 0
    }

    /// Learns a raw value: sign, integrality, quantum.
    pub fn learn_value(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if x < 0.0 {
            self.flags |= NEGATIVE;
        }
        if x != x.round() {
            self.flags |= NON_INTEGER;
        }
        if self.flags & SEEN != 0 {
            let d = (x - self.last as f64).abs();
            // Steps below the value's own float precision are not a resolution.
            if d > 1e-6 * x.abs().max(self.last.abs() as f64) && d > 0.0 {
                let d = d as f32;
                if self.quantum == 0.0 || d < self.quantum {
                    self.quantum = d;
                }
            }
        }
        self.flags |= SEEN;
        self.last = x as f32;
    }

    /// The count model, once it has some history: (mean count per unit of exposure, dispersion
    /// index ≥ 0; 1 = Poisson).
    pub fn count_model(&self) -> Option<(f64, f64)> {
        // An index within its own estimation noise of 1 is Poisson: flooring a noisy index at 1
        // would bias every count's spread up.
        let d = self.dispersion as f64;
        (self.dispersion > 0.0).then_some((self.count_mean as f64, if d < 1.3 { 1.0 } else { d }))
    }

    /// Learns a count `k` seen over `exposure` (calls for an error count, 1 otherwise);
    /// `anomalous` windows move the mean at a tenth of the rate and leave the dispersion alone.
    pub fn learn_count(&mut self, k: f64, exposure: f64, anomalous: bool) {
        if !(k.is_finite() && k >= 0.0 && exposure > 0.0) {
            return;
        }
        if self.dispersion == 0.0 {
            self.count_mean = (k / exposure).max(1e-6) as f32;
            self.dispersion = 1.0;
            return;
        }
        let a = if anomalous {
            0.1 * COUNT_ALPHA
        } else {
            COUNT_ALPHA
        };
        let mu = self.count_mean as f64 * exposure;
        if !anomalous {
            let d = ((k - mu).powi(2) / mu.max(1e-3)).min(1000.0);
            self.dispersion = ((1.0 - a) * self.dispersion as f64 + a * d).max(1e-3) as f32;
        }
        let m = (1.0 - a) * self.count_mean as f64 + a * k / exposure;
        self.count_mean = m.max(1e-6) as f32;
    }
}

/// Per-series recalibration of the model's tail probabilities (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct TailLedger {
    /// Decayed window count and decayed counts of model p ≤ 0.1, 0.01, 0.001.
    n: f32,
    hits: [f32; 3],
}

impl TailLedger {
    /// The correction factors observed ÷ nominal at the three levels.
    fn factors(&self) -> [f64; 3] {
        let mut f = [1.0f64; 3];
        for (i, lvl) in LEVELS.iter().enumerate() {
            // Each level is shrunk towards what the coarser levels say — 1 for the first, the
            // first's factor for the second, the log-linear extrapolation of the two for the
            // third — by a prior worth `LEDGER_PRIOR_HITS` tail hits (at least `LEDGER_PRIOR`
            // windows): at 0.001 a 6000-window memory holds only ~6 hits, and a factor
            // estimated from so few scatters so much that its reciprocal (what the share of
            // extreme scores follows) is biased up by ~20%.
            let prior_f = match i {
                0 => 1.0,
                1 => f[0],
                _ => f[1] * (f[1] / f[0]).clamp(1.0 / 3.0, 3.0),
            };
            let prior = (LEDGER_PRIOR_HITS / lvl).max(LEDGER_PRIOR);
            let rate = (self.hits[i] as f64 + prior * lvl * prior_f) / (self.n as f64 + prior);
            f[i] = (rate / lvl).clamp(0.2, 20.0);
        }
        // A tail probability must stay monotone in the model's: the factor may not fall by
        // more than the level does (10× per decade); keep it within 3× per decade (the model's
        // shape is trusted that far, the sparse far tail no further).
        for i in 1..3 {
            f[i] = f[i].clamp(f[i - 1] / 3.0, f[i - 1] * 3.0);
        }
        f[0] = f[0].clamp(0.2, 5.0);
        f
    }

    /// The calibrated tail probability of a model tail probability `p`.
    pub fn calibrate(&self, p: f64) -> f64 {
        let f = self.factors();
        // Log-linear in log p between (1, 1), (0.1, f0), (0.01, f1), (0.001, f2); constant below.
        let lp = -p.max(1e-300).log10();
        let lf = |i: usize| f[i].ln();
        let g = if lp <= 1.0 {
            lp * lf(0)
        } else if lp <= 2.0 {
            lf(0) + (lp - 1.0) * (lf(1) - lf(0))
        } else if lp <= 3.0 {
            lf(1) + (lp - 2.0) * (lf(2) - lf(1))
        } else {
            lf(2)
        };
        (p * g.exp()).min(1.0)
    }

    /// Counts one window's model tail probability.
    /// Keeps `keep` of what the ledger remembers (its factors stay; new windows weigh more):
    /// for a model that just changed.
    pub fn forget(&mut self, keep: f32) {
        self.n *= keep;
        for h in self.hits.iter_mut() {
            *h *= keep;
        }
    }

    pub fn learn(&mut self, p: f64) {
        let keep = (1.0 - 1.0 / LEDGER_MEMORY) as f32;
        self.n = self.n * keep + 1.0;
        for (i, lvl) in LEVELS.iter().enumerate() {
            self.hits[i] = self.hits[i] * keep + if p <= *lvl { 1.0 } else { 0.0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_tail_matches_known_values() {
        // t20: P(T > 2.086) = 0.025, P(T > 3.552) = 0.001.
        assert!((t_upper(2.086, 20.0) - 0.025).abs() < 0.001);
        assert!((t_upper(3.552, 20.0) / 0.001 - 1.0).abs() < 0.05);
        assert!((t_upper(0.0, 20.0) - 0.5).abs() < 1e-12);
        assert!((t_upper(-2.086, 20.0) - 0.975).abs() < 0.001);
    }

    #[test]
    fn poisson_tails_are_exact() {
        // Poisson(0.05): P(X = 0) = e^-0.05.
        let t = Tails::count(0.0, 0.05, 0.05, 1.0);
        assert!((t.lower - (-0.05f64).exp()).abs() < 1e-12);
        // P(X ≥ 3) = 1 − e^-μ(1 + μ + μ²/2) ≈ 2.04e-5.
        let t = Tails::count(3.0, 0.05, 0.05, 0.0);
        let want = 1.0 - (-0.05f64).exp() * (1.0 + 0.05 + 0.00125);
        assert!((t.upper / want - 1.0).abs() < 1e-6, "{t:?} vs {want}");
        // Negative binomial: more mass far out than Poisson with the same mean.
        let nb = Tails::count(10.0, 2.0, 8.0, 0.0);
        let po = Tails::count(10.0, 2.0, 2.0, 0.0);
        assert!(nb.upper > 100.0 * po.upper);
    }

    #[test]
    fn ledger_shrinks_heavy_tails() {
        let mut l = TailLedger::default();
        assert!((l.calibrate(0.001) - 0.001).abs() < 1e-12);
        // A series whose model tail probabilities are three times too small: P(p ≤ l) = 3l.
        for i in 0..40_000u64 {
            let u = (i as f64 * 0.618_033_988_749_895).fract();
            l.learn(u / 3.0);
        }
        let c = l.calibrate(0.005);
        assert!((c / 0.015 - 1.0).abs() < 0.2, "{c}");
        let c = l.calibrate(0.05);
        // (shrunk a little towards nominal by the prior)
        assert!((c / 0.15 - 1.0).abs() < 0.2, "{c}");
        // Monotone.
        let mut last = 0.0;
        for k in 0..60 {
            let p = 10f64.powf(-(k as f64) / 10.0);
            let c = l.calibrate(p);
            assert!(c <= 1.0);
            if k > 0 {
                assert!(c <= last + 1e-12, "{p}: {c} > {last}");
            }
            last = c;
        }
    }

    #[test]
    fn quantum_and_counts_are_learnt() {
        let mut s = ValueShape::default();
        for x in [0.0, 0.0, 1.0, 0.0, 3.0, 0.0] {
            s.learn_value(x);
        }
        assert_eq!(s.quantum(), 1.0);
        assert!(s.integer_counts() && s.non_negative());
        let mut g = ValueShape::default();
        for x in [20.5, 20.0, 21.5, 20.0] {
            g.learn_value(x);
        }
        assert_eq!(g.quantum(), 0.5);
        assert!(!g.integer_counts());
        g.learn_value(-1.0);
        assert!(!g.non_negative());
    }
}
