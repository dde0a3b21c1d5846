//! Seasonal baseline: additive Holt-Winters without trend, on coarse calendar slots.
//!
//! expected(t) = level + offset(t), where `offset` is a per-slot profile over one period
//! (default a day of 5-minute slots: 288 slots, whatever the window size), interpolated linearly
//! between slot centres so a ramp does not turn into a staircase. Each slot also keeps the mean
//! absolute residual seen in it, so a busy hour may be noisier than a quiet one.
//!
//! Storage is compact: offsets as `f32`, spreads as a 16-bit log code (0.14% steps) — 6 bytes a
//! slot, plus a byte counting first-period visits: 2 KiB for a daily profile, 14 KiB for a
//! weekly one. Owns nothing but that state; the
//! period/slot/smoothing parameters are shared ([`SeasonalParams`]).

use super::detectors::Verdict;

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

/// The seasonal state of one series and signal.
#[derive(Debug, Clone)]
pub struct Seasonal {
    /// Per-slot offset from the level; NaN = slot not seen yet.
    offset: Box<[f32]>,
    /// Per-slot mean absolute residual, log-coded; 0 = not seen yet.
    spread: Box<[u16]>,
    /// Per-slot visits during the first period (a running mean then), saturating.
    visits: Box<[u8]>,
    level: f64,
    /// Mean absolute residual over all slots.
    global_spread: f64,
    first_t: u64,
    last_t: u64,
    n: u32,
    slots_seen: u32,
}

fn encode_spread(v: f64) -> u16 {
    if v.is_nan() || v <= 0.0 {
        return 1;
    }
    ((v.log2() + 64.0) * 512.0).round().clamp(1.0, 65535.0) as u16
}

fn decode_spread(c: u16) -> f64 {
    (c as f64 / 512.0 - 64.0).exp2()
}

impl Seasonal {
    pub fn new(p: &SeasonalParams) -> Self {
        Seasonal {
            offset: vec![f32::NAN; p.n_slots].into_boxed_slice(),
            spread: vec![0; p.n_slots].into_boxed_slice(),
            visits: vec![0; p.n_slots].into_boxed_slice(),
            level: 0.0,
            global_spread: 0.0,
            first_t: 0,
            last_t: 0,
            n: 0,
            slots_seen: 0,
        }
    }

    /// Seen a whole period, with at least 90% of the slots filled: only then does the profile
    /// speak for the calendar (vote and veto).
    pub fn warm(&self, p: &SeasonalParams) -> bool {
        self.n > 0
            && self.last_t.saturating_sub(self.first_t) >= p.period_ns
            && self.slots_seen as usize * 10 >= p.n_slots * 9
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
        let (o0, o1) = (self.offset[i0], self.offset[i1]);
        let off = match (o0.is_nan(), o1.is_nan()) {
            (false, false) => (1.0 - w) * o0 as f64 + w * o1 as f64,
            (false, true) => o0 as f64,
            (true, false) => o1 as f64,
            (true, true) => return None,
        };
        let (s0, s1) = (self.spread[i0], self.spread[i1]);
        let spread = match (s0, s1) {
            (0, 0) => None,
            (a, 0) => Some(decode_spread(a)),
            (0, b) => Some(decode_spread(b)),
            (a, b) => Some((1.0 - w) * decode_spread(a) + w * decode_spread(b)),
        };
        Some((off, spread))
    }

    /// Expected value at `t` (`t` = the window's midpoint, in Unix nanoseconds).
    pub fn expected(&self, t: u64, p: &SeasonalParams) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        Some(self.level + self.profile_at(t, p).map_or(0.0, |(o, _)| o))
    }

    /// Scores `x` at `t`, spread floored at `floor`.
    pub fn score(&self, x: f64, t: u64, floor: f64, p: &SeasonalParams) -> Option<Verdict> {
        if self.n == 0 {
            return None;
        }
        let (off, slot_spread) = self.profile_at(t, p).unwrap_or((0.0, None));
        let global = self.global_spread * MEAN_ABS_TO_SD;
        let sd = match slot_spread {
            Some(s) => (s * MEAN_ABS_TO_SD).max(0.7 * global),
            None => global,
        };
        Some(Verdict::new(x, self.level + off, sd.max(floor)))
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
        let (i0, i1, w) = Self::slots_at(t, p);
        let profile = self.profile_at(t, p);
        // A residual against a profile not seen yet says nothing about the spread.
        let learn_spread = profile.is_some() && !anomalous;
        let (off, _) = profile.unwrap_or((0.0, None));
        let limit = p.threshold * sd;
        let clamp = |r: f64| {
            if warm && sd > 0.0 {
                r.clamp(-limit, limit)
            } else {
                r
            }
        };
        if warm {
            let rate = if anomalous { 0.1 } else { 1.0 };
            self.level += rate * p.level_alpha * clamp(x - self.level - off);
        }
        // The residual against the updated level goes into the profile (Holt-Winters order).
        let r_clamped = clamp(x - self.level - off);
        let slot_rate = if anomalous { 0.25 } else { 1.0 };
        let frac = (window_ns as f64 / p.slot_ns as f64).min(1.0);
        let per_window = 1.0 - (1.0 - p.slot_alpha).powf(frac);
        for (i, wi) in [(i0, 1.0 - w), (i1, w)] {
            if wi <= 0.0 {
                continue;
            }
            let a = if warm {
                slot_rate * per_window * wi
            } else {
                self.visits[i] = self.visits[i].saturating_add(1);
                wi / self.visits[i] as f64
            };
            if self.offset[i].is_nan() {
                self.offset[i] = (x - self.level) as f32;
                self.slots_seen += 1;
            } else {
                self.offset[i] = (self.offset[i] as f64 + a * r_clamped) as f32;
            }
            if !learn_spread {
                continue;
            }
            let abs = r_clamped.abs();
            let s = match self.spread[i] {
                0 => abs.max(self.global_spread),
                c => (1.0 - a) * decode_spread(c) + a * abs,
            };
            self.spread[i] = encode_spread(s);
        }
        if learn_spread {
            self.global_spread = if self.global_spread == 0.0 {
                r_clamped.abs()
            } else {
                (1.0 - GLOBAL_SPREAD_ALPHA) * self.global_spread
                    + GLOBAL_SPREAD_ALPHA * r_clamped.abs()
            };
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.offset.len() * std::mem::size_of::<f32>() + self.spread.len() * 2 + self.visits.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIN: u64 = 60_000_000_000;
    const W: u64 = 10_000_000_000;

    fn params() -> SeasonalParams {
        SeasonalParams {
            period_ns: 1440 * MIN,
            slot_ns: 5 * MIN,
            n_slots: 288,
            threshold: 5.0,
            level_alpha: 0.005,
            slot_alpha: 0.3,
        }
    }

    /// A daily curve: 100 at night, 300 at the afternoon peak.
    fn daily(t: u64) -> f64 {
        let day = (t % (1440 * MIN)) as f64 / (1440 * MIN) as f64;
        200.0 - 100.0 * (2.0 * std::f64::consts::PI * day).cos()
    }

    /// Runs `days` days of 10 s windows of `curve` (+ ±2 noise) and returns the largest |z| seen
    /// on the last day, scoring each window before learning it.
    fn max_z_last_day(curve: impl Fn(u64) -> f64, days: u64, check_jump: bool) -> (Seasonal, f64) {
        let p = params();
        let mut s = Seasonal::new(&p);
        let step = 10_000_000_000u64;
        let mut worst: f64 = 0.0;
        let mut t = 0;
        while t < days * 1440 * MIN {
            let x = curve(t)
                + if (t / step).is_multiple_of(2) {
                    2.0
                } else {
                    -2.0
                };
            let v = s.score(x, t, 0.5, &p);
            if t >= (days - 1) * 1440 * MIN {
                assert!(s.warm(&p));
                worst = worst.max(v.unwrap().z.abs());
                // A 50% jump is far outside at any hour.
                if check_jump {
                    let j = s.score(curve(t) * 1.5, t, 0.5, &p).unwrap();
                    assert!(j.z > 8.0, "minute {}: {j:?}", (t % (1440 * MIN)) / MIN);
                }
            }
            s.update(x, t, step, &p, false, v.map_or(0.0, |v| v.sd));
            t += step;
        }
        (s, worst)
    }

    #[test]
    fn learns_a_daily_profile() {
        let (s, worst) = max_z_last_day(daily, 3, true);
        assert!(worst < 4.0, "{worst}");
        assert_eq!(s.heap_bytes(), 288 * 7);
    }

    #[test]
    fn a_sharp_daily_step_becomes_expected() {
        // Traffic doubles within one window at 09:00 and halves at 17:00, every day.
        let step = |t: u64| {
            let m = (t % (1440 * MIN)) / MIN;
            if (540..1020).contains(&m) {
                400.0
            } else {
                200.0
            }
        };
        let (_, worst) = max_z_last_day(step, 3, false);
        // The step itself lands between slot centres; the profile explains most of it.
        assert!(worst < 25.0, "{worst}");
    }

    #[test]
    fn anomalous_windows_barely_enter_the_profile() {
        let p = params();
        let mut s = Seasonal::new(&p);
        let mut t = 0;
        while !s.warm(&p) {
            s.update(
                10.0 + if (t / W).is_multiple_of(2) { 1.0 } else { -1.0 },
                t,
                W,
                &p,
                false,
                1.0,
            );
            t += W;
        }
        let (offsets, level, spread) = (s.offset.clone(), s.level, s.global_spread);
        s.update(1e6, t, W, &p, true, 1.0);
        // Clamped to 5 sd, at a tenth of the level rate and a quarter of the slot rate.
        assert!((s.level - level).abs() <= 0.1 * p.level_alpha * 5.0 + 1e-9);
        let moved: f64 = s
            .offset
            .iter()
            .zip(offsets.iter())
            .map(|(a, b)| (a - b).abs() as f64)
            .sum();
        assert!(moved <= 0.25 * p.slot_alpha * 5.0 + 1e-3, "{moved}");
        assert_eq!(s.global_spread, spread);
    }

    proptest! {
        #[test]
        fn spread_code_round_trips(v in 1e-12f64..1e12) {
            let d = decode_spread(encode_spread(v));
            prop_assert!((d / v - 1.0).abs() < 0.0015);
        }

        #[test]
        fn slots_in_range(t in any::<u64>()) {
            let p = params();
            let (i0, i1, w) = Seasonal::slots_at(t, &p);
            prop_assert!(i0 < 288 && i1 < 288 && (0.0..1.0).contains(&w));
        }
    }
}
