//! The seasonal baseline's day-of-week terms: additive offsets, or factors for non-negative
//! series once their second week is seen; whether a weekly season is present at all is judged
//! from the data (docs/anomaly-detection.md, "Seasonality is found, not assumed").

use super::*;

/// One day, the period with which the day-of-week offsets are learnt.
pub(super) const DAY_NS: u64 = 86_400_000_000_000;
/// Bits of `weekly_presence` holding the judgement (0 = not judged, 1 = absent, 2 = present).
pub(super) const WEEKLY_JUDGED: u8 = 0x03;
/// Bit of `weekly_presence`: a weekly season was found and reported once
/// ([`Seasonal::weekly_newly_found`]).
pub(super) const WEEKLY_REPORTED: u8 = 0x40;
/// Bit of `weekly_presence`: the day-of-week terms are factors (see [`Seasonal::weekly`]).
pub(super) const MULTIPLICATIVE: u8 = 0x80;
/// Natural-log step of a day-of-week factor's code: 3% resolution (stochastically rounded),
/// factors from ×0.019 to ×53.
pub(super) const WEEKLY_LOG_STEP: f64 = 1.0 / 32.0;

/// Where multiplicative day-of-week factors stand, by the series' age ([`Seasonal::factor_phase`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FactorPhase {
    Waiting,
    Learning,
    Settled,
}

/// Share of a weekday's factor one day of it replaces in the series' second week.
pub(super) const WEEKLY_FACTOR_ALPHA_FIRST: f64 = 0.9;
/// The level's rate (× `level_alpha`) on a multiplicative series in its second week.
pub(super) const LEVEL_RATE_UNJUDGED: f64 = 0.1;
/// Share of a weekday's offset one day of it replaces.
pub(super) const WEEKLY_ALPHA: f64 = 0.3;

impl Seasonal {
    /// Whether the day-of-week offsets hold a weekly season.
    pub fn weekly_present(&self) -> bool {
        self.weekly_presence & WEEKLY_JUDGED == 2
    }

    /// Where the day-of-week factors stand: by the series' age (first week: waiting; second
    /// week: learning fast; afterwards: settled).
    pub(super) fn factor_phase(&self) -> FactorPhase {
        let age = self.last_t.saturating_sub(self.first_t);
        if age < 7 * DAY_NS {
            FactorPhase::Waiting
        } else if age < 14 * DAY_NS {
            FactorPhase::Learning
        } else {
            FactorPhase::Settled
        }
    }

    /// True once, the first time a weekly season is found and its terms have settled (factors:
    /// from the third week): from then on the calendar predicts with its day-of-week terms, a
    /// different model from the one it was before.
    pub fn weekly_newly_found(&mut self) -> bool {
        let settled = !self.multiplicative() || self.factor_phase() == FactorPhase::Settled;
        if self.weekly_present() && settled && self.weekly_presence & WEEKLY_REPORTED == 0 {
            self.weekly_presence |= WEEKLY_REPORTED;
            return true;
        }
        false
    }

    pub(super) fn multiplicative(&self) -> bool {
        self.weekly_presence & MULTIPLICATIVE != 0
    }

    /// Whether the day-of-week terms are factors of the day's profile (a weekend at 35% of a
    /// weekday's traffic is 35% of every hour, not a constant amount less) rather than additive
    /// offsets: for series on a non-negative scale. A change of mode forgets what the weekly
    /// terms learnt.
    pub fn set_multiplicative(&mut self, on: bool) {
        if on != self.multiplicative() {
            self.weekly = [0; 7];
            self.weekly_presence = if on { MULTIPLICATIVE } else { 0 };
        }
    }

    pub(super) fn day_of_week(t: u64) -> usize {
        ((t / DAY_NS) % 7) as usize
    }

    /// The day-of-week offset at `t` (0 unless a weekly season was found).
    pub(super) fn weekly_at(&self, t: u64, p: &SeasonalParams) -> f64 {
        if self.multiplicative() || !self.weekly_present() || p.period_ns != DAY_NS {
            return 0.0;
        }
        self.weekly[Self::day_of_week(t)] as f64 * self.step as f64
    }

    /// The day-of-week factor at `t` of a multiplicative weekly season (1 unless one was found)
    /// for a day's baseline `base` (a factor of a baseline at or below 0 means nothing: 1).
    pub(super) fn weekly_factor(&self, t: u64, base: f64, p: &SeasonalParams) -> f64 {
        if !(self.multiplicative() && self.weekly_present()) {
            return 1.0;
        }
        self.learnt_factor(t, base, p)
    }

    /// The day-of-week factor learnt so far (whether or not it was found to be a season): the
    /// level and the profile learn values divided by it from the second week on, so that they
    /// do not chase every weekend while the factors are being learnt.
    pub(super) fn learnt_factor(&self, t: u64, base: f64, p: &SeasonalParams) -> f64 {
        if !self.multiplicative() || p.period_ns != DAY_NS || base <= 0.0 {
            return 1.0;
        }
        (self.weekly[Self::day_of_week(t)] as f64 * WEEKLY_LOG_STEP).exp()
    }

    /// Learns the residual `r` (against level and daily profile, without the weekly term) into
    /// today's day-of-week offset, `rate` of the usual speed; judges the weekly season after eight
    /// days: the spread of the 7 offsets against what a day's mean of noise leaves in them.
    pub(super) fn learn_weekly(
        &mut self,
        r: f64,
        t: u64,
        window_ns: u64,
        rate: f64,
        p: &SeasonalParams,
    ) {
        if p.period_ns != DAY_NS || self.step <= 0.0 {
            return;
        }
        let d = Self::day_of_week(t);
        let frac = (window_ns as f64 / DAY_NS as f64).min(1.0);
        let a = rate * (1.0 - (1.0 - WEEKLY_ALPHA).powf(frac));
        if self.multiplicative() {
            // None in the first week (a series shorter than a week has no weekly rhythm to
            // learn), fast in the second (the level waits for the factors, see `update`), at the
            // usual rate afterwards: a holiday must not move a factor much.
            let fa = match self.factor_phase() {
                FactorPhase::Waiting => return,
                FactorPhase::Learning => WEEKLY_FACTOR_ALPHA_FIRST,
                FactorPhase::Settled => WEEKLY_ALPHA,
            };
            let a = rate * (1.0 - (1.0 - fa).powf(frac));
            return self.learn_weekly_factor(r, t, d, a, window_ns);
        }
        let cur = self.weekly[d] as f64;
        let mut v = cur + a * (r / self.step as f64 - cur);
        if v.abs() > MAX_CODE {
            let k = (v.abs() / MAX_CODE).log2().ceil() as i32;
            self.coarsen(k);
            v /= (k as f64).exp2();
        }
        self.weekly[d] = (v + coin(t, d, 3)).floor().clamp(-MAX_CODE, MAX_CODE) as i8;
        let step = self.step as f64;
        if self.last_t.saturating_sub(self.first_t) >= 8 * DAY_NS && self.n.is_multiple_of(64) {
            let w: Vec<f64> = self.weekly.iter().map(|&c| c as f64 * step).collect();
            let mean = w.iter().sum::<f64>() / 7.0;
            let var = w.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 7.0;
            let sd = self.global_spread as f64 * MEAN_ABS_TO_SD;
            let m = (DAY_NS as f64 / window_ns.max(1) as f64).max(1.0);
            let judged = if var > 4.0 * sd * sd / m + step * step {
                2
            } else {
                1
            };
            self.weekly_presence = (self.weekly_presence & !WEEKLY_JUDGED) | judged;
        }
    }

    /// [`Seasonal::learn_weekly`] for factors: `ratio` is the value over the day's baseline
    /// (without the weekly term), learnt in linear space (a day's mean ratio, not the mean of
    /// its logs, which zeros of a count would sink), stored as a log code. The weekly season is
    /// judged as the additive one, on the logs, against the relative noise of a day's mean.
    pub(super) fn learn_weekly_factor(
        &mut self,
        ratio: f64,
        t: u64,
        d: usize,
        a: f64,
        window_ns: u64,
    ) {
        let lim = MAX_CODE * WEEKLY_LOG_STEP;
        let cur = (self.weekly[d] as f64 * WEEKLY_LOG_STEP).exp();
        let v = cur + a * (ratio.clamp((-lim).exp(), lim.exp()) - cur);
        let code = v.max(1e-300).ln() / WEEKLY_LOG_STEP;
        self.weekly[d] = (code + coin(t, d, 3)).floor().clamp(-MAX_CODE, MAX_CODE) as i8;
        // Level × factor is one product: keep the factors' mean log at 0 so the split cannot
        // wander (the level and the profile take up the rest).
        let mean: i32 = self.weekly.iter().map(|&c| c as i32).sum::<i32>() / 7;
        if mean != 0 {
            for c in self.weekly.iter_mut() {
                *c = (*c as i32 - mean).clamp(-(MAX_CODE as i32), MAX_CODE as i32) as i8;
            }
        }
        if self.last_t.saturating_sub(self.first_t) >= 8 * DAY_NS && self.n.is_multiple_of(64) {
            let w: Vec<f64> = self
                .weekly
                .iter()
                .map(|&c| c as f64 * WEEKLY_LOG_STEP)
                .collect();
            let mean = w.iter().sum::<f64>() / 7.0;
            let var = w.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 7.0;
            // Relative noise: the profile-wide spread against the level of the day.
            let typical = (self.level + self.mean_offset()).abs().max(1e-300);
            let rel = self.global_spread as f64 * MEAN_ABS_TO_SD / typical;
            let m = (DAY_NS as f64 / window_ns.max(1) as f64).max(1.0);
            let present = var > 4.0 * rel * rel / m + WEEKLY_LOG_STEP * WEEKLY_LOG_STEP;
            self.weekly_presence =
                (self.weekly_presence & !WEEKLY_JUDGED) | if present { 2 } else { 1 };
        }
    }
}
