//! How unlikely a window's value is: the count model, the predictive distribution (the
//! calendar or the rolling median, whichever has predicted the series better lately), their
//! tails in the alarm direction and the ledger's calibration. Part of the ensemble
//! (`ensemble.rs`); it reads the detectors' state and learns nothing but the log scores.

use super::{Case, Scores, SignalDetector};
use crate::anomaly::detectors::{SignalKind, Verdict};
use crate::anomaly::score::{coin, Tails, EXACT_COUNT_BELOW, T_DOF};
use crate::anomaly::Direction;

/// Largest expected count of an ingested metric scored as a count (the exact tail sums up to
/// the value: cost grows with it); above, the Student-t on the identity scale.
const BIG_COUNT_BELOW: f64 = 5000.0;

/// Smoothing of the prequential log scores (~100 windows).
const NLL_ALPHA: f32 = 0.01;

/// Negative log density (up to a constant) of a standardised residual `z` under Student-t(ν)
/// with scale `sd`: what the log scores average.
fn nll(z: f64, sd: f64) -> f32 {
    let z = z.clamp(-10.0, 10.0);
    (sd.max(1e-300).ln() + 0.5 * (T_DOF + 1.0) * (z * z / T_DOF).ln_1p()) as f32
}

/// How unlikely the window's value is.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probability {
    /// The value as a count (rates, ratios, integer-valued metrics).
    pub(super) count: Option<f64>,
    /// Calls per unit of the signal (ratios), else 1.
    pub(super) exposure: f64,
    /// The count's expected value and variance, for counts small enough that their
    /// discreteness matters.
    pub(super) count_model: Option<(f64, f64)>,
    /// A model gave the value's tails (else `p_model` is 1).
    pub(super) has_tails: bool,
    /// The model's tail probability in the alarm direction.
    pub(super) p_model: f64,
    /// `p_model` calibrated by the series' ledger.
    pub(super) p_cal: f64,
}

impl SignalDetector {
    /// The calibrated tail probability of the value in the alarm direction, from the count
    /// model or the better of the predictive distributions.
    pub(super) fn probability(
        &mut self,
        c: &Case,
        sc: &Scores,
        seasonal_z: Option<f64>,
    ) -> Probability {
        let (o, kind, dir, p) = (c.o, c.kind, c.dir, c.p);
        let (raw, x, rv) = (sc.raw, sc.x, sc.rv);
        // The count model, for counts small enough that their discreteness matters.
        let (count, exposure) = match kind {
            SignalKind::Rate => (Some(raw * o.window_s), 1.0),
            SignalKind::Ratio => (Some(raw * o.calls), o.calls.max(1.0)),
            SignalKind::Generic if self.shape.integer_counts() => (Some(raw), 1.0),
            _ => (None, 1.0),
        };
        let count_model = count.and_then(|_| self.count_model(kind, exposure));
        let robust_ready = self.robust.as_ref().is_some_and(|r| r.ready());
        self.update_log_scores(sc, robust_ready);
        let calendar = sc.seasonal_on && (!robust_ready || self.nll[0] <= self.nll[1]);
        let predictive = self.predictive(c, sc, calendar, robust_ready);
        let coin_v = coin(o.t_mid, raw.to_bits() ^ ((self.n as u64) << 17));
        let tails = self.tails(c, sc, count, count_model, predictive, coin_v);
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
        Probability {
            count,
            exposure,
            count_model,
            has_tails: tails.is_some(),
            p_model,
            p_cal: self.ledger.calibrate(p_model),
        }
    }

    /// The count's expected value and variance (`exposure` calls per unit of the signal).
    fn count_model(&self, kind: SignalKind, exposure: f64) -> Option<(f64, f64)> {
        let (m, disp) = self.shape.count_model()?;
        let mu = m * exposure;
        // An integer gauge far less dispersed than counts (a temperature in whole degrees)
        // is no count.
        let counts_like = kind != SignalKind::Generic || disp >= 0.7;
        // Overdispersion of a count near zero cannot be told from one stray event: the
        // shape r = μ²/(var − μ) stays ≥ 0.3 (var ≤ μ + μ²/0.3).
        let var = (mu * disp.max(1.0)).min(mu + mu * mu / 0.3);
        (counts_like && mu < EXACT_COUNT_BELOW).then_some((mu, var))
    }

    /// The prequential log scores of the calendar and the rolling median, once both speak.
    fn update_log_scores(&mut self, sc: &Scores, robust_ready: bool) {
        if let (Some(a), Some(b), true, true) = (sc.sv, sc.rv, sc.seasonal_judged, robust_ready) {
            let (na, nb) = (nll(a.z, a.sd), nll(b.z, b.sd));
            if self.nll == [0.0; 2] {
                self.nll = [na, nb];
            } else {
                self.nll[0] += NLL_ALPHA * (na - self.nll[0]);
                self.nll[1] += NLL_ALPHA * (nb - self.nll[1]);
            }
        }
    }

    /// The predictive distribution of the score (a verdict and the Student-t's degrees of
    /// freedom): the calendar or the rolling median, whichever has predicted this series better
    /// lately (a season found in noise, or a calendar too unsure of a sparse slot, loses to the
    /// recent history), else the EWMA.
    fn predictive(
        &self,
        c: &Case,
        sc: &Scores,
        calendar: bool,
        robust_ready: bool,
    ) -> Option<(Verdict, f64)> {
        let (o, kind, quantum) = (c.o, c.kind, sc.quantum);
        let mut predictive = match (calendar, sc.sv, sc.rv, sc.ev) {
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
                    *v = Verdict::new(sc.x, v.expected, fl * disp.sqrt());
                    *nu = 200.0;
                }
                // Coarsely quantised: the median and MAD are themselves quantised; the EWMA's
                // mean and spread (less the rounding's own q²/12) describe the latent value.
                SignalKind::Generic if quantum > 0.2 * v.sd && self.ewma.ready() => {
                    let var = self.ewma.sd().powi(2);
                    let latent = (var - quantum * quantum / 12.0).max(0.5 * var).sqrt();
                    *v = Verdict::new(sc.x, self.ewma.mean(), latent.max(0.25 * quantum));
                    *nu = 30.0;
                }
                _ => {}
            }
        }
        predictive
    }

    /// The value's tails under the count model, a negative binomial for a large overdispersed
    /// count, else the predictive Student-t over the value's quantum.
    fn tails(
        &self,
        c: &Case,
        sc: &Scores,
        count: Option<f64>,
        count_model: Option<(f64, f64)>,
        predictive: Option<(Verdict, f64)>,
        coin_v: f64,
    ) -> Option<Tails> {
        let (kind, raw, quantum) = (c.kind, sc.raw, sc.quantum);
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
        match (count, count_model, predictive) {
            (Some(k), Some((mu, var)), _) => Some(Tails::count(k, mu, var, coin_v)),
            _ if big_count.is_some() => {
                big_count.map(|(k, mu, var)| Tails::count(k, mu, var, coin_v))
            }
            (_, _, Some((v, nu))) => {
                let lo = if quantum > 0.0 {
                    if sc.non_negative && raw - 0.5 * quantum <= 0.0 {
                        f64::NEG_INFINITY
                    } else {
                        kind.transform(raw - 0.5 * quantum)
                    }
                } else {
                    sc.x
                };
                let hi = if quantum > 0.0 {
                    kind.transform(raw + 0.5 * quantum)
                } else {
                    sc.x
                };
                Some(Tails::student(lo, hi, v.expected, v.sd, nu, coin_v))
            }
            _ => None,
        }
    }
}
