//! Seasonal baseline: additive Holt-Winters without trend, on coarse calendar slots.
//!
//! expected(t) = level + offset(t), where `offset` is a per-slot profile over one period
//! (default a day of 5-minute slots: 288 slots, whatever the window size), interpolated linearly
//! between slot centres so a ramp does not turn into a staircase. Each slot also keeps the mean
//! absolute residual seen in it, so a busy hour may be noisier than a quiet one.
//!
//! Storage is compact: 2 bytes a slot. An offset is an `i8` code on a per-series grid
//! (`base + code × step`, the step doubling whenever the profile outgrows ±127 steps); a spread a
//! `u8` log code relative to the step (2^(1/16) ≈ 4.4% apart). Both are written with stochastic
//! rounding (a hash of the time and slot decides which neighbouring code), so the small
//! per-window updates a slot gets are unbiased on average instead of vanishing into the
//! rounding. During the first period each slot also counts its visits (a running mean then);
//! that byte is freed once the profile is warm. A daily profile of 5-minute slots is 576 bytes, a
//! weekly one 4 KiB. Owns nothing but that state; the period/slot/smoothing parameters are
//! shared ([`SeasonalParams`]).

use super::detectors::Verdict;
use weekly::*;

mod weekly;

/// Shared parameters of the seasonal baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeasonalParams {
    pub period_ns: u64,
    pub slot_ns: u64,
    pub n_slots: usize,
    pub threshold: f64,
    pub level_alpha: f64,
    pub slot_alpha: f64,
}

/// Mean absolute deviation → standard deviation under normality.
const MEAN_ABS_TO_SD: f64 = 1.2533;
/// Smoothing of the profile-wide spread, a slow floor under the slot spreads (~1000 windows:
/// a drift of an hour or two must not widen it much).
const GLOBAL_SPREAD_ALPHA: f64 = 0.001;
/// Neighbouring slots sharing one spread code: none (1). Sharing one between two slots saves 144
/// bytes a daily profile, but averages a sharp daily edge's wide spread with its calm
/// neighbour's: the quality bench then raised a false alarm at a 02:00 batch edge.
pub const SPREAD_GROUP: usize = 1;
/// Offset code of a slot not seen yet.
const UNSEEN: i8 = i8::MIN;
/// Largest offset code magnitude.
const MAX_CODE: f64 = 127.0;
/// Spread codes per doubling, and the code of a spread of one step.
const SPREAD_PER_OCTAVE: f64 = 16.0;
const SPREAD_ONE_STEP: f64 = 32.0;
/// A spread of more steps than this ([`SPREAD_ONE_STEP`] + 255 codes) coarsens the grid.
const MAX_SPREAD_STEPS_LOG2: f64 = (255.0 - SPREAD_ONE_STEP) / SPREAD_PER_OCTAVE;

/// The seasonal state of one series and signal.
#[derive(Debug, Clone)]
pub struct Seasonal {
    /// `n_slots` offset codes (`i8` as `u8`; [`UNSEEN`] = not seen yet), then one spread code
    /// per [`SPREAD_GROUP`] slots (0 = not seen yet).
    codes: Box<[u8]>,
    /// Per-slot visits during the first period (a running mean then); freed once warm.
    visits: Option<Box<[u8]>>,
    /// The offset grid: `base + code × step` (step 0 = no slot seen yet).
    base: f32,
    step: f32,
    level: f64,
    /// Mean absolute residual over all slots.
    global_spread: f32,
    first_t: u64,
    last_t: u64,
    n: u32,
    slots_seen: u32,
    /// Whether the profile explains more than noise (see [`Seasonal::present`]): 0 = not
    /// judged yet, 1 = absent, 2 = present. Re-judged every 256 windows once warm.
    presence: u8,
    /// Day-of-week terms, learnt with a daily period only: additive level offsets on the
    /// profile's grid (`code × step`), or — on a positive scale ([`Seasonal::set_multiplicative`])
    /// — factors `exp(code × WEEKLY_LOG_STEP)` of the day's profile; and whether they hold a
    /// weekly season (same codes as `presence` in [`WEEKLY_JUDGED`], plus the bits
    /// [`MULTIPLICATIVE`] and [`WEEKLY_REPORTED`]): a weekly rhythm costs 8 bytes instead of a
    /// 7-day profile's 4 KiB.
    weekly: [i8; 7],
    weekly_presence: u8,
}

/// A uniform number in [0, 1) from `t` and `i`: the stochastic rounding's coin.
fn coin(t: u64, i: usize, salt: u64) -> f64 {
    let mut z = t ^ ((i as u64) << 40) ^ salt;
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

impl Seasonal {
    pub fn new(p: &SeasonalParams) -> Self {
        let mut codes = vec![0u8; p.n_slots + p.n_slots.div_ceil(SPREAD_GROUP)].into_boxed_slice();
        codes[..p.n_slots].fill(UNSEEN as u8);
        let s = Seasonal {
            codes,
            visits: Some(vec![0; p.n_slots].into_boxed_slice()),
            base: 0.0,
            step: 0.0,
            level: 0.0,
            global_spread: 0.0,
            first_t: 0,
            last_t: 0,
            n: 0,
            slots_seen: 0,
            presence: 0,
            weekly: [0; 7],
            weekly_presence: 0,
        };
        // The slot count is derived from `codes` (not stored): exact when it divides evenly.
        debug_assert_eq!(s.n_slots(), p.n_slots);
        s
    }

    fn n_slots(&self) -> usize {
        // `codes` holds the offsets, then one spread per SPREAD_GROUP slots (the count is not
        // stored: 8 bytes a signal).
        self.codes.len() * SPREAD_GROUP / (SPREAD_GROUP + 1)
    }

    /// The offset of slot `i` (None = not seen yet).
    fn offset(&self, i: usize) -> Option<f64> {
        let c = self.codes[i] as i8;
        (c != UNSEEN).then_some(self.base as f64 + c as f64 * self.step as f64)
    }

    /// The spread of slot `i` (None = not seen yet).
    fn spread(&self, i: usize) -> Option<f64> {
        let c = self.codes[self.n_slots() + i / SPREAD_GROUP];
        (c != 0)
            .then(|| self.step as f64 * ((c as f64 - SPREAD_ONE_STEP) / SPREAD_PER_OCTAVE).exp2())
    }

    /// Coarsens the grid by 2^k: offsets halve k times, spreads lose k octaves of codes.
    fn coarsen(&mut self, k: i32) {
        if k <= 0 {
            return;
        }
        let f = (k as f64).exp2();
        self.step = (self.step as f64 * f) as f32;
        if !self.multiplicative() {
            for c in self.weekly.iter_mut() {
                *c = (*c as f64 / f).round() as i8;
            }
        }
        let n = self.n_slots();
        let (offsets, spreads) = self.codes.split_at_mut(n);
        for c in offsets.iter_mut() {
            let v = *c as i8;
            if v != UNSEEN {
                *c = ((v as f64 / f).round() as i8) as u8;
            }
        }
        let drop = (SPREAD_PER_OCTAVE * k as f64).min(255.0) as u8;
        for c in spreads.iter_mut() {
            if *c != 0 {
                *c = c.saturating_sub(drop).max(1);
            }
        }
    }

    /// Stores offset `v` in slot `i`, stochastically rounded with coin `u`.
    fn set_offset(&mut self, i: usize, v: f64, u: f64) {
        if !v.is_finite() {
            return;
        }
        if self.step == 0.0 {
            // The first slot seen anchors the grid at its value.
            self.base = v as f32;
            self.step = ((v.abs() / 1024.0).max(1e-9)) as f32;
        }
        let q = (v - self.base as f64) / self.step as f64;
        if q.abs() > MAX_CODE {
            self.coarsen((q.abs() / MAX_CODE).log2().ceil() as i32);
        }
        let q = (v - self.base as f64) / self.step as f64;
        let c = (q + u).floor().clamp(-MAX_CODE, MAX_CODE) as i8;
        self.codes[i] = c as u8;
    }

    /// Stores spread `s` (> 0) in slot `i`, stochastically rounded (log scale) with coin `u`.
    fn set_spread(&mut self, i: usize, s: f64, u: f64) {
        if !(s.is_finite() && self.step > 0.0) {
            return;
        }
        let s = s.max(1e-300);
        let octaves = (s / self.step as f64).log2();
        if octaves > MAX_SPREAD_STEPS_LOG2 {
            self.coarsen((octaves - MAX_SPREAD_STEPS_LOG2).ceil() as i32);
        }
        let octaves = (s / self.step as f64).log2();
        let c = (octaves * SPREAD_PER_OCTAVE + SPREAD_ONE_STEP + u)
            .floor()
            .clamp(1.0, 255.0) as u8;
        let n = self.n_slots();
        self.codes[n + i / SPREAD_GROUP] = c;
    }

    /// Seen a whole period, with at least 90% of the slots filled: only then does the profile
    /// speak for the calendar (vote and veto).
    pub fn warm(&self, p: &SeasonalParams) -> bool {
        self.n > 0
            && self.last_t.saturating_sub(self.first_t) >= p.period_ns
            && self.slots_seen as usize * 10 >= p.n_slots * 9
    }

    /// Warm, and the profile found a season: the spread of the slot offsets is well above what
    /// noise alone leaves in them (docs/anomaly-detection.md, "Seasonality"). A series without a
    /// daily shape is judged by its rolling baselines only.
    pub fn present(&self, p: &SeasonalParams) -> bool {
        self.presence == 2 && self.warm(p)
    }

    /// Mean of the slot offsets seen.
    fn mean_offset(&self) -> f64 {
        let (mut n, mut sum) = (0.0, 0.0);
        for i in 0..self.n_slots() {
            if let Some(o) = self.offset(i) {
                n += 1.0;
                sum += o;
            }
        }
        if n > 0.0 {
            sum / n
        } else {
            0.0
        }
    }

    /// Judges whether the profile holds a season: variance of the slot offsets against the
    /// variance a slot's mean of `m` windows of noise has (m = windows per slot).
    fn judge(&mut self, p: &SeasonalParams, window_ns: u64) {
        let (mut n, mut sum, mut sq) = (0.0, 0.0, 0.0);
        for i in 0..self.n_slots() {
            if let Some(o) = self.offset(i) {
                n += 1.0;
                sum += o;
                sq += o * o;
            }
        }
        if n < 2.0 {
            return;
        }
        let mean = sum / n;
        let var = (sq / n - mean * mean).max(0.0);
        let sd = self.global_spread as f64 * MEAN_ABS_TO_SD;
        let m = (p.slot_ns as f64 / window_ns.max(1) as f64).max(1.0);
        self.presence = if var > 4.0 * sd * sd / m + 1e-300 {
            2
        } else {
            1
        };
    }

    /// The two slots around `t` and the weight of the second.
    fn slots_at(t: u64, p: &SeasonalParams) -> (usize, usize, f64) {
        let pos = (t % p.period_ns) as f64 / p.slot_ns as f64 - 0.5;
        let pos = if pos < 0.0 {
            pos + p.n_slots as f64
        } else {
            pos
        };
        let i0 = (pos.floor() as usize) % p.n_slots;
        let i1 = (i0 + 1) % p.n_slots;
        (i0, i1, pos - pos.floor())
    }

    /// Interpolated (offset, spread) at `t`; None when neither neighbouring slot was seen.
    fn profile_at(&self, t: u64, p: &SeasonalParams) -> Option<(f64, Option<f64>)> {
        let (i0, i1, w) = Self::slots_at(t, p);
        let off = match (self.offset(i0), self.offset(i1)) {
            (Some(o0), Some(o1)) => (1.0 - w) * o0 + w * o1,
            (Some(o0), None) => o0,
            (None, Some(o1)) => o1,
            (None, None) => return None,
        };
        let off = off + self.weekly_at(t, p);
        let spread = match (self.spread(i0), self.spread(i1)) {
            (None, None) => None,
            (Some(a), None) => Some(a),
            (None, Some(b)) => Some(b),
            (Some(a), Some(b)) => Some((1.0 - w) * a + w * b),
        };
        Some((off, spread))
    }

    /// Expected value at `t` (`t` = the window's midpoint, in Unix nanoseconds).
    pub fn expected(&self, t: u64, p: &SeasonalParams) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let base = self.level + self.profile_at(t, p).map_or(0.0, |(o, _)| o);
        Some(base * self.weekly_factor(t, base, p))
    }

    /// Scores `x` at `t`, spread floored at `floor`.
    pub fn score(&self, x: f64, t: u64, floor: f64, p: &SeasonalParams) -> Option<Verdict> {
        if self.n == 0 {
            return None;
        }
        let (off, slot_spread) = self.profile_at(t, p).unwrap_or((0.0, None));
        let global = self.global_spread as f64 * MEAN_ABS_TO_SD;
        let sd = match slot_spread {
            Some(s) => (s * MEAN_ABS_TO_SD).max(0.7 * global),
            None => global,
        };
        // Spreads are learnt per unit factor and scale with its square root (count-like noise).
        let base = self.level + off;
        let f = self.weekly_factor(t, base, p);
        Some(Verdict::new(x, base * f, (sd * f.sqrt()).max(floor)))
    }

    /// Learns `x` at `t`. During the first period everything is learnt as it comes (that is
    /// what the first period is for). Afterwards residuals are clamped to `threshold` standard
    /// deviations, and an anomalous window (`anomalous`) moves the level at a tenth and the
    /// profile at a quarter of their rates and leaves the spreads alone: an incident barely
    /// enters tomorrow's profile, while a change that recurs every day is still learnt within a
    /// few days, and a lasting shift is accepted within hours.
    ///
    /// `window_ns` (the window's width) scales the per-window slot rate so that one period's
    /// values replace `slot_alpha` of a slot, whatever the window size.
    pub fn update(
        &mut self,
        x: f64,
        t: u64,
        window_ns: u64,
        p: &SeasonalParams,
        anomalous: bool,
        sd: f64,
    ) {
        if self.n == 0 {
            // The profile starts out absolute: during the first period every slot learns the
            // values themselves and the level stays 0; afterwards the level carries "today
            // versus the usual day". (Starting the level at the first value instead lets level
            // and profile trade places through the day and tear at the period's wrap.)
            self.level = 0.0;
            self.first_t = t;
        }
        let warm = self.warm(p);
        let anomalous = anomalous && warm;
        self.n = self.n.saturating_add(1);
        self.last_t = self.last_t.max(t);
        let slots = Self::slots_at(t, p);
        let profile = self.profile_at(t, p);
        // A residual against a profile not seen yet says nothing about the spread.
        let learn_spread = profile.is_some() && !anomalous;
        let (off, _) = profile.unwrap_or((0.0, None));
        // A multiplicative weekly season: level and profile learn the value divided by the day's
        // factor f (its noise: the scored spread `sd` over f); spreads are stored per unit
        // factor (× √f, see `score`).
        let f = if warm {
            self.learnt_factor(t, self.level + off, p)
        } else {
            1.0
        };
        let sd_unit = sd / f;
        let s = Sample {
            x_day: x,
            sd_day: sd,
            x: x / f,
            f,
            off,
            clamp: Clamp {
                on: warm && sd_unit > 0.0,
                limit: p.threshold * sd_unit,
            },
        };
        if warm {
            self.learn_level(&s, anomalous, p);
        }
        // The residual against the updated level goes into the profile (Holt-Winters order).
        let r_clamped = s.clamp.apply(s.x - self.level - off);
        let slot_rate = if anomalous { 0.25 } else { 1.0 };
        let frac = (window_ns as f64 / p.slot_ns as f64).min(1.0);
        let per_window = 1.0 - (1.0 - p.slot_alpha).powf(frac);
        let unit = f.sqrt();
        self.learn_slots(
            t,
            slots,
            &SlotLesson {
                x: s.x,
                r_clamped,
                rate: slot_rate * per_window,
                warm,
                learn_spread,
                unit,
            },
        );
        if warm {
            let rate = if anomalous { 0.25 } else { 1.0 };
            let r = self.weekly_residual(&s, t, p);
            if r.is_finite() {
                self.learn_weekly(r, t, window_ns, rate, p);
            }
        }
        if learn_spread {
            self.learn_global_spread(r_clamped, unit);
        }
        if self.warm(p) && (self.presence == 0 || self.n.is_multiple_of(256)) {
            self.judge(p, window_ns);
        }
        if self.visits.is_some() && self.warm(p) {
            // The first period is over: visits are never read again.
            self.visits = None;
        }
    }

    /// Moves the level towards the window's value (after the first period).
    fn learn_level(&mut self, s: &Sample, anomalous: bool, p: &SeasonalParams) {
        let rate = if anomalous { 0.1 } else { 1.0 };
        // While the day-of-week factors are still unjudged, the level moves slowly: at the
        // usual rate it follows a weekend within a day and hides it from the factors.
        let rate = if self.multiplicative() && self.factor_phase() == FactorPhase::Learning {
            rate * LEVEL_RATE_UNJUDGED
        } else {
            rate
        };
        self.level += rate * p.level_alpha * s.clamp.apply(s.x - self.level - s.off);
    }

    /// The spread of all slots, which a slot starts from (per unit factor: × `unit`).
    fn learn_global_spread(&mut self, r_clamped: f64, unit: f64) {
        let global_spread = self.global_spread as f64;
        self.global_spread = if self.global_spread == 0.0 {
            (r_clamped.abs() * unit) as f32
        } else {
            ((1.0 - GLOBAL_SPREAD_ALPHA) * global_spread
                + GLOBAL_SPREAD_ALPHA * r_clamped.abs() * unit) as f32
        };
    }

    /// Teaches the (up to two) slots around the window their offset and spread.
    fn learn_slots(&mut self, t: u64, (i0, i1, w): (usize, usize, f64), l: &SlotLesson) {
        let global_spread = self.global_spread as f64;
        for (i, wi) in [(i0, 1.0 - w), (i1, w)] {
            if wi <= 0.0 {
                continue;
            }
            let a = match self.visits.as_mut().filter(|_| !l.warm) {
                Some(v) => {
                    v[i] = v[i].saturating_add(1);
                    wi / v[i] as f64
                }
                None => l.rate * wi,
            };
            match self.offset(i) {
                None => {
                    self.set_offset(i, l.x - self.level, coin(t, i, 1));
                    self.slots_seen += 1;
                }
                Some(o) => self.set_offset(i, o + a * l.r_clamped, coin(t, i, 1)),
            }
            if !l.learn_spread {
                continue;
            }
            let abs = l.r_clamped.abs() * l.unit;
            let s = match self.spread(i) {
                None => abs.max(global_spread),
                Some(old) => (1.0 - a) * old + a * abs,
            };
            self.set_spread(i, s, coin(t, i, 2));
        }
    }

    /// What the weekly factors learn from the window (NaN: nothing).
    fn weekly_residual(&self, s: &Sample, t: u64, p: &SeasonalParams) -> f64 {
        if !self.multiplicative() {
            return s
                .clamp
                .apply(s.x - self.level - s.off + self.weekly_at(t, p));
        }
        // The value over the day's baseline without the weekly factor (not clamped: the
        // factor is what moves it; learn_weekly_factor bounds the ratio).
        let base = self.level + s.off;
        if base > 0.0 {
            let fit = base * s.f;
            // An outlier moves the factor no more than `threshold` spreads would.
            let lim = p.threshold * s.sd_day;
            let xc = if s.sd_day > 0.0 {
                s.x_day.clamp(fit - lim, fit + lim)
            } else {
                s.x_day
            };
            xc / base
        } else {
            f64::NAN
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.codes.len() + self.visits.as_ref().map_or(0, |v| v.len())
    }

    /// The slot offsets (NaN = not seen), for tests and diagnostics.
    pub fn offsets(&self) -> Vec<f64> {
        (0..self.n_slots())
            .map(|i| self.offset(i).unwrap_or(f64::NAN))
            .collect()
    }
}

/// One window's value in the profile's terms.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// The value and its scored spread as observed.
    x_day: f64,
    sd_day: f64,
    /// The value over the day's weekly factor `f` (1 unless the weekly season is
    /// multiplicative).
    x: f64,
    f: f64,
    /// The profile's offset at the window.
    off: f64,
    clamp: Clamp,
}

/// After the first period, residuals are clamped to `threshold` spreads.
#[derive(Debug, Clone, Copy)]
struct Clamp {
    on: bool,
    limit: f64,
}

impl Clamp {
    fn apply(self, r: f64) -> f64 {
        if self.on {
            r.clamp(-self.limit, self.limit)
        } else {
            r
        }
    }
}

/// What one window teaches the slots around it.
#[derive(Debug, Clone, Copy)]
struct SlotLesson {
    /// The value (over the weekly factor).
    x: f64,
    /// Its clamped residual against the level and profile.
    r_clamped: f64,
    /// The slot rate of this window, before the slot's interpolation weight.
    rate: f64,
    warm: bool,
    learn_spread: bool,
    /// √f: spreads are stored per unit factor.
    unit: f64,
}

#[cfg(test)]
#[path = "seasonal_tests.rs"]
mod tests;
