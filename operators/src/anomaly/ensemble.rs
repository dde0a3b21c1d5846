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
use super::score::{TailLedger, ValueShape};
use super::seasonal::Seasonal;
use crate::anomaly::Direction;
use probability::Probability;

#[path = "ensemble_probability.rs"]
mod probability;

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

/// Share of the ledger's memory kept once a weekly season is found (see `observe`).
const LEDGER_KEEP_ON_WEEK: f32 = 0.25;

/// z in the alarm direction (≥ 0 means "the way that alarms").
fn directional(z: f64, dir: Direction) -> f64 {
    match dir {
        Direction::Up => z,
        Direction::Down => -z,
        Direction::Both => z.abs(),
    }
}

/// One call of [`SignalDetector::observe`]: the window, its signal, the alarm direction and the
/// parameters.
struct Case<'a> {
    o: &'a Observation,
    kind: SignalKind,
    dir: Direction,
    p: &'a DetectorParams,
}

impl Case<'_> {
    /// The least spread a baseline expecting `e` may claim: the signal's noise model, and half
    /// the series' quantum (`q_floor`).
    fn floor(&self, e: f64, q_floor: f64) -> f64 {
        self.kind
            .noise_floor(e, self.o.calls, self.o.window_s)
            .max(q_floor)
    }
}

/// The window's value and the baselines' verdicts on it, before anything is learnt.
#[derive(Debug, Clone, Copy)]
struct Scores {
    /// The value on the original scale.
    raw: f64,
    /// The value on the transformed scale (see `SignalKind::transform`).
    x: f64,
    /// The resolution of a value (0: continuous).
    quantum: f64,
    /// Half the quantum for ingested metrics, else 0 (see [`Case::floor`]).
    q_floor: f64,
    /// The signal or the series never goes below zero.
    non_negative: bool,
    /// The rolling median's verdict.
    rv: Option<Verdict>,
    /// The EWMA's verdict.
    ev: Option<Verdict>,
    /// The calendar's verdict.
    sv: Option<Verdict>,
    /// The seasonal baseline has seen a period and found a season in it: it speaks.
    seasonal_on: bool,
    /// The seasonal baseline has seen a period (found a season or not).
    seasonal_judged: bool,
}

/// The detectors' votes on one window.
#[derive(Debug, Clone, Copy)]
struct Votes {
    /// Detector bits that voted for an alarm.
    votes: u8,
    /// How many point detectors voted (CUSUM not counted).
    point_votes: u32,
    /// Largest directional z-score of the point detectors.
    z_max: f64,
    /// The calendar's directional z-score, once it found a season.
    seasonal_z: Option<f64>,
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
        let c = Case { o, kind, dir, p };
        let sc = self.score(&c, scratch);
        let mut v = self.point_votes(&c, &sc);
        if self.cusum_fires(&c, &sc) {
            v.votes |= CUSUM;
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
        let weekly_on =
            sc.seasonal_on && self.seasonal.as_ref().is_some_and(|s| s.weekly_present());
        let strict = kind == SignalKind::Generic && (!sc.seasonal_on || weekly_on);
        let sustained = !strict
            && p.cusum.is_some_and(|(_, h)| {
                let (hi, lo) = (self.cusum.hi as f64, self.cusum.lo as f64);
                match dir {
                    Direction::Up => hi > h / 2.0,
                    Direction::Down => lo > h / 2.0,
                    Direction::Both => hi.max(lo) > h / 2.0,
                }
            });

        let pr = self.probability(&c, &sc, v.seasonal_z);
        let (expected, lo, hi) = self.expected_range(&c, &sc, &pr);
        let anomalous = self.alarms(&c, &sc, &v, expected, pr.p_cal, strict);
        self.learn(&c, &sc, &pr, anomalous, strict, incident_windows);

        Decision {
            anomalous,
            score: 1.0 - pr.p_cal,
            p: pr.p_cal,
            z: v.z_max,
            expected,
            expected_min: lo,
            expected_max: hi,
            votes: v.votes,
            sustained,
        }
    }

    /// The value on the transformed scale and every baseline's verdict on it.
    fn score(&mut self, c: &Case, scratch: &mut Vec<f32>) -> Scores {
        let (o, kind, p) = (c.o, c.kind, c.p);
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
        let floor = |e: f64| c.floor(e, q_floor);
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
        Scores {
            raw,
            x,
            quantum,
            q_floor,
            non_negative: kind.non_negative() || self.shape.non_negative(),
            rv,
            ev,
            sv,
            seasonal_on,
            seasonal_judged,
        }
    }

    /// The point detectors' votes (robust_z, ewma, seasonal once on) and the largest
    /// directional z-score.
    fn point_votes(&self, c: &Case, sc: &Scores) -> Votes {
        let (kind, dir, p) = (c.kind, c.dir, c.p);
        // A rate whose expected count is below `min_calls` is too quiet for point tests (ten
        // empty seconds of a 1 call/s series are not news); CUSUM still sees a lasting drop.
        let quiet_rate = kind == SignalKind::Rate
            && sc
                .rv
                .or(sc.ev)
                .is_some_and(|v| kind.inverse(v.expected) * c.o.window_s < p.min_calls);
        let mut votes = 0u8;
        let mut z_max: f64 = 0.0;
        if let (Some((thr, _)), Some(v), Some(r)) = (p.robust_z, sc.rv, &self.robust) {
            let z = directional(v.z, dir);
            z_max = z_max.max(z);
            if r.ready() && z >= thr {
                votes |= ROBUST_Z;
            }
        }
        if let (Some((thr, _)), Some(v)) = (p.ewma, sc.ev) {
            let z = directional(v.z, dir);
            z_max = z_max.max(z);
            if self.ewma.ready() && z >= thr {
                votes |= EWMA;
            }
        }
        let mut seasonal_z = None;
        if let (Some(sp), Some(v)) = (&p.seasonal, sc.sv) {
            if sc.seasonal_on {
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
        Votes {
            votes,
            point_votes: votes.count_ones(),
            z_max,
            seasonal_z,
        }
    }

    /// Feeds CUSUM this window's residual; whether it alarms in the alarm direction.
    fn cusum_fires(&mut self, c: &Case, sc: &Scores) -> bool {
        let (dir, p) = (c.dir, c.p);
        let Some((slack, h)) = p.cusum else {
            return false;
        };
        // With a season, CUSUM sums the seasonal residuals (from the end of the first
        // period); without one, residuals against its own slow reference.
        let r = if sc.seasonal_on {
            sc.sv.map(|v| v.z)
        } else if p.seasonal.is_none() || sc.seasonal_judged {
            self.cusum
                .reference_residual(sc.x, c.floor(sc.x, sc.q_floor), h)
        } else {
            None
        };
        let Some(r) = r else {
            return false;
        };
        let sig = self.cusum.update(r, slack, h);
        match dir {
            Direction::Up => sig > 0,
            Direction::Down => sig < 0,
            Direction::Both => sig != 0,
        }
    }

    /// The expected value and range on the original scale: from the count model, else the
    /// primary baseline — the calendar once it found a season, else the rolling median, else
    /// the EWMA.
    fn expected_range(&self, c: &Case, sc: &Scores, pr: &Probability) -> (f64, f64, f64) {
        let (o, kind, p, raw) = (c.o, c.kind, c.p, sc.raw);
        let (primary, q) = match (sc.seasonal_on, sc.sv, sc.rv, sc.ev) {
            (true, Some(v), _, _) => (Some(v), p.range_q_normal),
            (_, _, Some(v), _) if self.robust.as_ref().is_some_and(|r| r.ready()) => {
                (Some(v), p.range_q_t)
            }
            (_, _, _, Some(v)) => (Some(v), p.range_q_normal),
            _ => (None, p.range_q_normal),
        };
        let (expected, lo, hi) = match (pr.count_model, primary) {
            (Some((mu, var)), _) => {
                let per = match kind {
                    SignalKind::Rate => 1.0 / o.window_s.max(1e-9),
                    _ => 1.0 / pr.exposure,
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
        if sc.non_negative {
            (expected, lo.max(0.0), hi.max(0.0))
        } else {
            (expected, lo, hi)
        }
    }

    /// The decision rule (see the module comment): point votes past the effect-size guard and
    /// the seasonal veto, or CUSUM with a sustained effect, each through its calibrated gate.
    fn alarms(
        &self,
        c: &Case,
        sc: &Scores,
        v: &Votes,
        expected: f64,
        p_cal: f64,
        strict: bool,
    ) -> bool {
        let (kind, dir, p) = (c.kind, c.dir, c.p);
        // The effect-size guard is on the original scale: "10% slower", "1 point more errors",
        // and never less than one quantum of the series' own resolution.
        let min_change = match kind {
            SignalKind::Ratio => p.min_ratio_change,
            SignalKind::Generic => (p.min_relative_change_metrics * expected.abs()).max(sc.quantum),
            _ => p.min_relative_change * expected.abs(),
        };
        let change = directional(sc.raw - expected, dir);
        let effect = change >= min_change;
        // CUSUM fires on sustained moderate departures, so its effect is measured on the
        // sustained part: the EWMA mean (~20 windows) against CUSUM's reference (the calendar,
        // or its own slow mean).
        let reference = if sc.seasonal_on {
            Some(expected)
        } else {
            self.cusum.reference_mean().map(|m| kind.inverse(m))
        };
        let cusum_effect = match (sc.ev, reference) {
            (Some(e), Some(r)) if self.ewma.ready() => {
                directional(kind.inverse(e.expected) - r, dir) >= min_change
            }
            _ => false,
        };
        // The veto guards point votes only: with a season, CUSUM already sums residuals
        // against the calendar.
        let vetoed = v.seasonal_z.is_some_and(|z| z < p.seasonal_veto_z);
        let warm = self.n >= p.warmup_windows;
        // See `strict` in `observe`.
        let cusum_open_p = if strict { p.open_p } else { CUSUM_OPEN_P };
        warm && ((effect && v.point_votes >= p.min_votes && !vetoed && p_cal <= p.open_p)
            || (cusum_effect && v.votes & CUSUM != 0 && p_cal <= cusum_open_p))
    }

    /// Learn. An anomalous window moves the baselines only by a clamped amount and never
    /// their spreads, so an incident is not learnt as normal at full speed — until it has
    /// lasted `accept_shift_after_windows`: then it is the new normal.
    fn learn(
        &mut self,
        c: &Case,
        sc: &Scores,
        pr: &Probability,
        anomalous: bool,
        strict: bool,
        incident_windows: u32,
    ) {
        let (o, p, x) = (c.o, c.p, sc.x);
        let accepted = incident_windows >= p.accept_after;
        let held_back = anomalous && !accepted;
        if accepted && strict {
            self.cusum.restart(x);
        }
        if let (Some(r), Some((thr, _))) = (self.robust.as_mut(), p.robust_z) {
            let v = match sc.rv {
                Some(v) if held_back => x.clamp(v.expected - thr * v.sd, v.expected + thr * v.sd),
                _ => x,
            };
            r.push(v);
        }
        let (ethr, ealpha) = p.ewma.unwrap_or((5.0, REFERENCE_ALPHA));
        let ex = match sc.ev {
            Some(v) if self.ewma.ready() && !accepted => {
                x.clamp(v.expected - ethr * v.sd, v.expected + ethr * v.sd)
            }
            _ => x,
        };
        self.ewma.update(ex, ealpha, held_back);
        if let (Some(s), Some(sp)) = (self.seasonal.as_mut(), &p.seasonal) {
            let sd = sc.sv.map_or(0.0, |v| v.sd);
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
        if let Some(k) = pr.count {
            self.shape.learn_count(k, pr.exposure, held_back);
        }
        self.shape.learn_value(sc.raw);
        // Every window after the warm-up counts towards the calibration (leaving out the
        // alarming ones would teach it that tails are lighter than they are), but an incident's
        // alarming windows only in its first few, so one long incident does not numb the series.
        // The warm-up's are left out: they are scored by half-learnt models (a count's dispersion
        // starts at Poisson), and with the ledger's ~6000-window memory their tails numbed
        // bursty counts for weeks (score ≥ 0.999 on 0.072% of windows instead of 0.1%).
        let warm = self.n >= p.warmup_windows;
        if (incident_windows < 3 || !anomalous) && pr.has_tails && warm {
            self.ledger.learn(pr.p_model);
        }
        self.n = self.n.saturating_add(1);
    }

    pub fn heap_bytes(&self) -> usize {
        self.robust.as_ref().map_or(0, |r| r.heap_bytes())
            + self.seasonal.as_ref().map_or(0, |s| s.heap_bytes())
    }
}

#[cfg(test)]
#[path = "ensemble_tests.rs"]
mod tests;
