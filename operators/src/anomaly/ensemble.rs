//! The ensemble: every configured detector scores a window's value, their votes combine into one
//! decision with a score and an expected range, and then every detector learns the value (at
//! reduced weight when the window was anomalous).
//!
//! Decision rule (the defaults): after `warmup_windows`, a window is anomalous when
//! - at least `min_votes` point detectors (robust_z, ewma, seasonal once warm) are past their
//!   thresholds in the alarm direction, the departure from the expected value is at least
//!   `min_relative_change` (ratios: `min_ratio_change`), and — once the seasonal profile has
//!   seen a whole period — the seasonal z-score is at least `seasonal_veto_z` (what the
//!   calendar predicts is not an anomaly); or
//! - CUSUM alarms and the EWMA mean departs from CUSUM's reference by at least the minimum
//!   change (CUSUM sums residuals against the calendar already; measuring the effect on a
//!   smoothed value keeps slowly wandering noise and single noisy windows quiet).
//!
//! CUSUM runs on the seasonal residuals, so with the seasonal detector enabled it starts after
//! one period (on a not yet deseasonalised series a daily ramp looks like a drift); with the
//! seasonal detector disabled it runs on residuals against its own slow reference (an EWMA of
//! ~100 windows) from the start.

use super::detectors::{Cusum, Ewma, RobustZ, SignalKind, Verdict};
use super::params::{DetectorParams, CUSUM, EWMA, ROBUST_Z, SEASONAL};
use super::score::{coin, TailLedger, Tails, ValueShape, EXACT_COUNT_BELOW, T_DOF};
use super::seasonal::Seasonal;
use crate::anomaly::Direction;

/// Largest calibrated tail probability with which a CUSUM alarm opens an incident (score ≥
/// 0.75): a drift is found by its sum, but its window must still lean the alarm's way well
/// beyond the middle — not a window back to normal after a short excursion.
const CUSUM_OPEN_P: f64 = 0.25;

/// EWMA smoothing used as CUSUM's reference when the EWMA detector itself is disabled.
const REFERENCE_ALPHA: f64 = 0.05;

/// One window's value and its context.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    pub value: f64,
    /// Window midpoint, Unix nanoseconds (the seasonal clock).
    pub t_mid: u64,
    /// Weighted calls in the window (noise models and guards).
    pub calls: f64,
    pub window_s: f64,
}

/// The ensemble's verdict on one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub anomalous: bool,
    /// The calibrated score in [0, 1]: 1 − `p` (see [`super::score`]).
    pub score: f64,
    /// The calibrated tail probability of the value in the alarm direction (kept apart from
    /// `score` because 1 − p rounds to 1 below ~1e-16).
    pub p: f64,
    /// Largest directional z-score of the point detectors (≥ 0): the raw statistic.
    pub z: f64,
    pub expected: f64,
    pub expected_min: f64,
    pub expected_max: f64,
    /// Detector bits that voted for an alarm (also when the ensemble did not alarm).
    pub votes: u8,
    /// CUSUM still sums a shift in the alarm direction (past half its threshold): an open
    /// incident continues through windows that flicker below the alarm bar.
    pub sustained: bool,
}

/// All detector state of one series and signal.
#[derive(Debug, Clone)]
pub struct SignalDetector {
    robust: Option<RobustZ>,
    ewma: Ewma,
    seasonal: Option<Seasonal>,
    cusum: Cusum,
    shape: ValueShape,
    ledger: TailLedger,
    /// Prequential log scores (EW mean negative log predictive density) of the calendar and
    /// of the rolling median: the score uses whichever predicts this series better.
    nll: [f32; 2],
    n: u32,
}

/// Largest expected count of an ingested metric scored as a count (the exact tail sums up to
/// the value: cost grows with it); above, the Student-t on the identity scale.
const BIG_COUNT_BELOW: f64 = 5000.0;

/// Share of the ledger's memory kept once a weekly season is found (see `observe`).
const LEDGER_KEEP_ON_WEEK: f32 = 0.25;

/// Smoothing of the prequential log scores (~100 windows).
const NLL_ALPHA: f32 = 0.01;

/// Negative log density (up to a constant) of a standardised residual `z` under Student-t(ν)
/// with scale `sd`: what the log scores average.
fn nll(z: f64, sd: f64) -> f32 {
    let z = z.clamp(-10.0, 10.0);
    (sd.max(1e-300).ln() + 0.5 * (T_DOF + 1.0) * (z * z / T_DOF).ln_1p()) as f32
}

/// z in the alarm direction (≥ 0 means "the way that alarms").
fn directional(z: f64, dir: Direction) -> f64 {
    match dir {
        Direction::Up => z,
        Direction::Down => -z,
        Direction::Both => z.abs(),
    }
}

impl SignalDetector {
    pub fn new(p: &DetectorParams) -> Self {
        SignalDetector {
            robust: p.robust_z.map(|(_, b)| RobustZ::new(b)),
            ewma: Ewma::default(),
            seasonal: p.seasonal.as_ref().map(Seasonal::new),
            cusum: Cusum::default(),
            shape: ValueShape::default(),
            ledger: TailLedger::default(),
            nll: [0.0; 2],
            n: 0,
        }
    }

    /// Windows learnt so far.
    pub fn n(&self) -> u32 {
        self.n
    }

    /// Whether the seasonal baseline found (daily, weekly) seasons in this series.
    pub fn seasons(&self, p: &DetectorParams) -> (bool, bool) {
        match (&self.seasonal, &p.seasonal) {
            (Some(s), Some(sp)) => (s.present(sp), s.present(sp) && s.weekly_present()),
            _ => (false, false),
        }
    }

    /// Scores the observation, decides, then learns it. `incident_windows`: anomalous windows
    /// of the series' open incident so far (0 = none open); once it reaches
    /// `accept_shift_after_windows` the values are learnt as the new normal.
    pub fn observe(
        &mut self,
        o: &Observation,
        kind: SignalKind,
        dir: Direction,
        p: &DetectorParams,
        incident_windows: u32,
        scratch: &mut Vec<f32>,
    ) -> Decision {
        // Everything below works on the transformed scale (see `SignalKind::transform`).
        let raw = o.value;
        // A weekly rhythm of a metric never seen negative scales its day (a weekend at a third of
        // a weekday's traffic is a third of every hour); the RED signals' stabilised scales keep
        // additive day-of-week offsets.
        if let Some(s) = self.seasonal.as_mut() {
            s.set_multiplicative(kind == SignalKind::Generic && self.shape.non_negative());
        }
        let x = kind.transform(raw);
        // The resolution of a value: one call (rates), one error (ratios), the series' own
        // quantum (other metrics); latency quantiles come from a sketch and are continuous.
        let quantum = match kind {
            SignalKind::Rate => 1.0 / o.window_s.max(1e-9),
            SignalKind::Ratio => 1.0 / o.calls.max(1.0),
            SignalKind::Latency => 0.0,
            SignalKind::Generic => self.shape.quantum(),
        };
        let q_floor = if kind == SignalKind::Generic {
            0.5 * quantum
        } else {
            0.0
        };
        let floor = |e: f64| kind.noise_floor(e, o.calls, o.window_s).max(q_floor);
        let rv: Option<Verdict> = self.robust.as_ref().and_then(|r| {
            let (med, sd) = r.baseline(scratch)?;
            Some(Verdict::new(x, med, sd.max(floor(med))))
        });
        let ev: Option<Verdict> = self
            .ewma
            .score(x, 0.0)
            .map(|v| Verdict::new(x, v.expected, v.sd.max(floor(v.expected))));
        // The seasonal baseline speaks once it has seen a period and found a season in it;
        // `seasonal_judged`: it has seen a period (found a season or not).
        let (sv, seasonal_on, seasonal_judged) = match (&self.seasonal, &p.seasonal) {
            (Some(s), Some(sp)) => {
                let e = s.expected(o.t_mid, sp);
                let v = e.and_then(|e| s.score(x, o.t_mid, floor(e), sp));
                (v, s.present(sp), s.warm(sp))
            }
            _ => (None, false, false),
        };

        // A rate whose expected count is below `min_calls` is too quiet for point tests (ten
        // empty seconds of a 1 call/s series are not news); CUSUM still sees a lasting drop.
        let quiet_rate = kind == SignalKind::Rate
            && rv
                .or(ev)
                .is_some_and(|v| kind.inverse(v.expected) * o.window_s < p.min_calls);
        let mut votes = 0u8;
        let mut z_max: f64 = 0.0;
        if let (Some((thr, _)), Some(v), Some(r)) = (p.robust_z, rv, &self.robust) {
            let z = directional(v.z, dir);
            z_max = z_max.max(z);
            if r.ready() && z >= thr {
                votes |= ROBUST_Z;
            }
        }
        if let (Some((thr, _)), Some(v)) = (p.ewma, ev) {
            let z = directional(v.z, dir);
            z_max = z_max.max(z);
            if self.ewma.ready() && z >= thr {
                votes |= EWMA;
            }
        }
        let mut seasonal_z = None;
        if let (Some(sp), Some(v)) = (&p.seasonal, sv) {
            if seasonal_on {
                let z = directional(v.z, dir);
                seasonal_z = Some(z);
                z_max = z_max.max(z);
                if z >= sp.threshold {
                    votes |= SEASONAL;
                }
            }
        }
        if quiet_rate {
            votes = 0;
        }
        let point_votes = votes.count_ones();
        if let Some((slack, h)) = p.cusum {
            // With a season, CUSUM sums the seasonal residuals (from the end of the first
            // period); without one, residuals against its own slow reference.
            let r = if seasonal_on {
                sv.map(|v| v.z)
            } else if p.seasonal.is_none() || seasonal_judged {
                self.cusum.reference_residual(x, floor(x), h)
            } else {
                None
            };
            if let Some(r) = r {
                let sig = self.cusum.update(r, slack, h);
                let fires = match dir {
                    Direction::Up => sig > 0,
                    Direction::Down => sig < 0,
                    Direction::Both => sig != 0,
                };
                if fires {
                    votes |= CUSUM;
                }
            }
        }

        // An ingested metric is judged strictly — a CUSUM alarm opens an incident only through
        // the calibrated gate (like a point alarm), CUSUM's sum does not hold one open (the clear
        // rule does), and CUSUM restarts once the shift is accepted — where its sum is no
        // evidence by itself: without a daily season CUSUM sums residuals against its own slow
        // reference, which a bursty or wandering metric keeps feeding; with a weekly rhythm
        // found, the calendar's day-of-week factors model the week, and the lenient rule only
        // opened incidents at the weekend's edges. A daily season without a judged week (a
        // series younger than eight days, or one without a weekly rhythm) keeps the RED signals'
        // rule: there CUSUM's sum of the calendar's residuals finds slow shifts whose windows
        // score below `alarm_score` (docs/anomaly-detection.md, "When a window alarms").
        let weekly_on = seasonal_on && self.seasonal.as_ref().is_some_and(|s| s.weekly_present());
        let strict = kind == SignalKind::Generic && (!seasonal_on || weekly_on);
        let sustained = !strict
            && p.cusum.is_some_and(|(_, h)| {
                let (hi, lo) = (self.cusum.hi as f64, self.cusum.lo as f64);
                match dir {
                    Direction::Up => hi > h / 2.0,
                    Direction::Down => lo > h / 2.0,
                    Direction::Both => hi.max(lo) > h / 2.0,
                }
            });

        // The primary baseline: the calendar once it found a season, else the rolling median,
        // else the EWMA.
        let (primary, q) = match (seasonal_on, sv, rv, ev) {
            (true, Some(v), _, _) => (Some(v), p.range_q_normal),
            (_, _, Some(v), _) if self.robust.as_ref().is_some_and(|r| r.ready()) => {
                (Some(v), p.range_q_t)
            }
            (_, _, _, Some(v)) => (Some(v), p.range_q_normal),
            _ => (None, p.range_q_normal),
        };
        let non_negative = kind.non_negative() || self.shape.non_negative();
        // The count model, for counts small enough that their discreteness matters.
        let (count, exposure) = match kind {
            SignalKind::Rate => (Some(raw * o.window_s), 1.0),
            SignalKind::Ratio => (Some(raw * o.calls), o.calls.max(1.0)),
            SignalKind::Generic if self.shape.integer_counts() => (Some(raw), 1.0),
            _ => (None, 1.0),
        };
        let count_model = count.and_then(|_| {
            let (m, disp) = self.shape.count_model()?;
            let mu = m * exposure;
            // An integer gauge far less dispersed than counts (a temperature in whole degrees)
            // is no count.
            let counts_like = kind != SignalKind::Generic || disp >= 0.7;
            // Overdispersion of a count near zero cannot be told from one stray event: the
            // shape r = μ²/(var − μ) stays ≥ 0.3 (var ≤ μ + μ²/0.3).
            let var = (mu * disp.max(1.0)).min(mu + mu * mu / 0.3);
            (counts_like && mu < EXACT_COUNT_BELOW).then_some((mu, var))
        });
        // The predictive distribution of the score: the calendar or the rolling median,
        // whichever has predicted this series better lately (a season found in noise, or a
        // calendar too unsure of a sparse slot, loses to the recent history), else the EWMA.
        let robust_ready = self.robust.as_ref().is_some_and(|r| r.ready());
        if let (Some(a), Some(b), true, true) = (sv, rv, seasonal_judged, robust_ready) {
            let (na, nb) = (nll(a.z, a.sd), nll(b.z, b.sd));
            if self.nll == [0.0; 2] {
                self.nll = [na, nb];
            } else {
                self.nll[0] += NLL_ALPHA * (na - self.nll[0]);
                self.nll[1] += NLL_ALPHA * (nb - self.nll[1]);
            }
        }
        let calendar = seasonal_on && (!robust_ready || self.nll[0] <= self.nll[1]);
        let mut predictive = match (calendar, sv, rv, ev) {
            (true, Some(v), _, _) => Some((v, T_DOF)),
            (_, _, Some(v), _) if robust_ready => Some((v, T_DOF)),
            (_, _, _, Some(v)) => Some((v, 30.0)),
            _ => None,
        };
        if let Some((v, nu)) = predictive.as_mut() {
            let fl = kind.noise_floor(v.expected, o.calls, o.window_s);
            match kind {
                // Counting noise dominates: its size is known (Poisson, times the series' own
                // dispersion) far better than a rolling spread can estimate it.
                SignalKind::Rate | SignalKind::Ratio if v.sd <= 1.25 * fl => {
                    let disp = self.shape.count_model().map_or(1.0, |(_, d)| d.max(1.0));
                    *v = Verdict::new(x, v.expected, fl * disp.sqrt());
                    *nu = 200.0;
                }
                // Coarsely quantised: the median and MAD are themselves quantised; the EWMA's
                // mean and spread (less the rounding's own q²/12) describe the latent value.
                SignalKind::Generic if quantum > 0.2 * v.sd && self.ewma.ready() => {
                    let var = self.ewma.sd().powi(2);
                    let latent = (var - quantum * quantum / 12.0).max(0.5 * var).sqrt();
                    *v = Verdict::new(x, self.ewma.mean(), latent.max(0.25 * quantum));
                    *nu = 30.0;
                }
                _ => {}
            }
        }
        let coin_v = coin(o.t_mid, raw.to_bits() ^ ((self.n as u64) << 17));
        // A larger, clearly overdispersed count of an ingested metric (identity scale; spread²
        // ≥ 3 × mean) is skewed like a count: the predictive mean and spread (which follow the
        // calendar) become a negative binomial with those moments.
        let big_count = match (kind, count, predictive) {
            (SignalKind::Generic, Some(k), Some((v, _)))
                if self.shape.count_model().is_some_and(|(_, d)| d >= 0.7)
                    && v.expected > 0.0
                    && v.expected < BIG_COUNT_BELOW
                    && v.sd * v.sd >= 3.0 * v.expected =>
            {
                Some((k, v.expected, (v.sd * v.sd).max(v.expected)))
            }
            _ => None,
        };
        let tails = match (count, count_model, predictive) {
            (Some(k), Some((mu, var)), _) => Some(Tails::count(k, mu, var, coin_v)),
            _ if big_count.is_some() => {
                big_count.map(|(k, mu, var)| Tails::count(k, mu, var, coin_v))
            }
            (_, _, Some((v, nu))) => {
                let lo = if quantum > 0.0 {
                    if non_negative && raw - 0.5 * quantum <= 0.0 {
                        f64::NEG_INFINITY
                    } else {
                        kind.transform(raw - 0.5 * quantum)
                    }
                } else {
                    x
                };
                let hi = if quantum > 0.0 {
                    kind.transform(raw + 0.5 * quantum)
                } else {
                    x
                };
                Some(Tails::student(lo, hi, v.expected, v.sd, nu, coin_v))
            }
            _ => None,
        };
        let (up, down) = match dir {
            Direction::Up => (true, false),
            Direction::Down => (false, true),
            Direction::Both => (true, true),
        };
        let mut p_model = tails.map_or(1.0, |t| t.p(up, down));
        // A calendar whose slot is noisy (a sparse series) can be far less sure than the recent
        // history: when the calendar itself finds the value unusual (past the veto), the sharper
        // of the two predictive distributions speaks.
        if let (true, Some(v), None) = (
            seasonal_z.is_some_and(|z| z >= p.seasonal_veto_z),
            rv,
            count_model,
        ) {
            if robust_ready && calendar {
                let t = Tails::student(x, x, v.expected, v.sd, T_DOF, coin_v);
                p_model = p_model.min(t.p(up, down));
            }
        }
        let p_cal = self.ledger.calibrate(p_model);

        let (expected, lo, hi) = match (count_model, primary) {
            (Some((mu, var)), _) => {
                let per = match kind {
                    SignalKind::Rate => 1.0 / o.window_s.max(1e-9),
                    _ => 1.0 / exposure,
                };
                let half = q * var.sqrt();
                (mu * per, (mu - half) * per, (mu + half) * per)
            }
            (None, Some(v)) => (
                kind.inverse(v.expected),
                kind.inverse(v.expected - q * v.sd),
                kind.inverse(v.expected + q * v.sd),
            ),
            (None, None) => (raw, raw, raw),
        };
        let (lo, hi) = if non_negative {
            (lo.max(0.0), hi.max(0.0))
        } else {
            (lo, hi)
        };
        // The effect-size guard is on the original scale: "10% slower", "1 point more errors",
        // and never less than one quantum of the series' own resolution.
        let min_change = match kind {
            SignalKind::Ratio => p.min_ratio_change,
            SignalKind::Generic => (p.min_relative_change_metrics * expected.abs()).max(quantum),
            _ => p.min_relative_change * expected.abs(),
        };
        let change = directional(raw - expected, dir);
        let effect = change >= min_change;
        // CUSUM fires on sustained moderate departures, so its effect is measured on the
        // sustained part: the EWMA mean (~20 windows) against CUSUM's reference (the calendar,
        // or its own slow mean).
        let reference = if seasonal_on {
            Some(expected)
        } else {
            self.cusum.reference_mean().map(|m| kind.inverse(m))
        };
        let cusum_effect = match (ev, reference) {
            (Some(v), Some(r)) if self.ewma.ready() => {
                directional(kind.inverse(v.expected) - r, dir) >= min_change
            }
            _ => false,
        };
        // The veto guards point votes only: with a season, CUSUM already sums residuals
        // against the calendar.
        let vetoed = seasonal_z.is_some_and(|z| z < p.seasonal_veto_z);
        let warm = self.n >= p.warmup_windows;
        // See `strict` above.
        let cusum_open_p = if strict { p.open_p } else { CUSUM_OPEN_P };
        let anomalous = warm
            && ((effect && point_votes >= p.min_votes && !vetoed && p_cal <= p.open_p)
                || (cusum_effect && votes & CUSUM != 0 && p_cal <= cusum_open_p));

        // Learn. An anomalous window moves the baselines only by a clamped amount and never
        // their spreads, so an incident is not learnt as normal at full speed — until it has
        // lasted `accept_shift_after_windows`: then it is the new normal.
        let accepted = incident_windows >= p.accept_after;
        let held_back = anomalous && !accepted;
        if accepted && strict {
            self.cusum.restart(x);
        }
        if let (Some(r), Some((thr, _))) = (self.robust.as_mut(), p.robust_z) {
            let v = match rv {
                Some(v) if held_back => x.clamp(v.expected - thr * v.sd, v.expected + thr * v.sd),
                _ => x,
            };
            r.push(v);
        }
        let (ethr, ealpha) = p.ewma.unwrap_or((5.0, REFERENCE_ALPHA));
        let ex = match ev {
            Some(v) if self.ewma.ready() && !accepted => {
                x.clamp(v.expected - ethr * v.sd, v.expected + ethr * v.sd)
            }
            _ => x,
        };
        self.ewma.update(ex, ealpha, held_back);
        if let (Some(s), Some(sp)) = (self.seasonal.as_mut(), &p.seasonal) {
            let sd = sv.map_or(0.0, |v| v.sd);
            let window_ns = (o.window_s * 1e9) as u64;
            // The calendar learns an incident at reduced weight however long it lasts: a holiday
            // must not become tomorrow's level nor next week's profile. (On a series with a
            // season a lasting shift thus stays one incident until the calendar catches up.)
            s.update(
                x,
                o.t_mid,
                window_ns,
                sp,
                anomalous || incident_windows > 0,
                sd,
            );
            // The ledger's tail counts describe the calendar without a week: once the weekly
            // season is found, they start over (else its weekend misfits keep the scores of the
            // model that fits numbed for weeks).
            if s.weekly_newly_found() {
                self.ledger.forget(LEDGER_KEEP_ON_WEEK);
            }
        }
        if let Some(k) = count {
            self.shape.learn_count(k, exposure, held_back);
        }
        self.shape.learn_value(raw);
        // Every window after the warm-up counts towards the calibration (leaving out the
        // alarming ones would teach it that tails are lighter than they are), but an incident's
        // alarming windows only in its first few, so one long incident does not numb the series.
        // The warm-up's are left out: they are scored by half-learnt models (a count's dispersion
        // starts at Poisson), and with the ledger's ~6000-window memory their tails numbed
        // bursty counts for weeks (score ≥ 0.999 on 0.072% of windows instead of 0.1%).
        if (incident_windows < 3 || !anomalous) && tails.is_some() && warm {
            self.ledger.learn(p_model);
        }
        self.n = self.n.saturating_add(1);

        Decision {
            anomalous,
            score: 1.0 - p_cal,
            p: p_cal,
            z: z_max,
            expected,
            expected_min: lo,
            expected_max: hi,
            votes,
            sustained,
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.robust.as_ref().map_or(0, |r| r.heap_bytes())
            + self.seasonal.as_ref().map_or(0, |s| s.heap_bytes())
    }
}

#[cfg(test)]
#[path = "ensemble_tests.rs"]
mod tests;
