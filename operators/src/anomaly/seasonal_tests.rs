//! Unit tests of the seasonal baseline (`seasonal.rs`).

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
    assert_eq!(
        s.heap_bytes(),
        288 + 288usize.div_ceil(SPREAD_GROUP),
        "2 bytes a slot once warm"
    );
}

#[test]
fn tiny_updates_are_not_lost_to_the_grid() {
    let p = params();
    let mut s = Seasonal::new(&p);
    s.set_offset(0, 0.0, 0.0);
    s.set_offset(1, 100.0, 0.0);
    let step = s.step as f64;
    // 10 000 updates of a hundredth of a step each: one hundred steps in total.
    let mut v = s.offset(0).unwrap();
    for k in 0..10_000u64 {
        s.set_offset(0, v + step / 100.0, coin(k, 0, 1));
        v = s.offset(0).unwrap();
    }
    assert!(
        (v - 100.0 * step).abs() < 30.0 * step,
        "{v} vs {}",
        100.0 * step
    );
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
    let (offsets, level, spread) = (s.offsets(), s.level, s.global_spread);
    s.update(1e6, t, W, &p, true, 1.0);
    // Clamped to 5 sd, at a tenth of the level rate and a quarter of the slot rate.
    assert!((s.level - level).abs() <= 0.1 * p.level_alpha * 5.0 + 1e-9);
    let moved: f64 = s
        .offsets()
        .iter()
        .zip(offsets.iter())
        .map(|(a, b)| (a - b).abs())
        .sum();
    // (plus at most one grid step per touched slot from the rounding)
    assert!(
        moved <= 0.25 * p.slot_alpha * 5.0 + 2.0 * s.step as f64 + 1e-3,
        "{moved}"
    );
    assert_eq!(s.global_spread, spread);
}

proptest! {
    /// Stored offsets and spreads are within one grid step / one code of what was written,
    /// and stochastic rounding is unbiased: many small updates add up.
    #[test]
    fn codes_round_trip(v in -1e6f64..1e6, sp in 1e-3f64..1e3) {
        let p = params();
        let mut s = Seasonal::new(&p);
        s.set_offset(0, 10.0, 0.5);
        s.set_offset(1, v, 0.3);
        let got = s.offset(1).unwrap();
        prop_assert!((got - v).abs() <= s.step as f64 * 1.0001, "{got} vs {v} step {}", s.step);
        prop_assert!((s.offset(0).unwrap() - 10.0).abs() <= s.step as f64 * 1.0001);
        s.set_spread(1, sp, 0.5);
        let back = s.spread(1).unwrap();
        // Spreads below the grid's smallest code (a quarter step) read as that code.
        let smallest = s.step as f64 * (-31.0f64 / 16.0).exp2();
        prop_assert!(back >= sp / 1.05 || back >= smallest * 0.999, "{back} vs {sp}");
        prop_assert!(back <= (sp * 1.05).max(smallest * 1.001), "{back} vs {sp}");
    }

    #[test]
    fn slots_in_range(t in any::<u64>()) {
        let p = params();
        let (i0, i1, w) = Seasonal::slots_at(t, &p);
        prop_assert!(i0 < 288 && i1 < 288 && (0.0..1.0).contains(&w));
    }
}

#[test]
fn weekend_becomes_a_day_of_week_factor() {
    // 5-minute windows, a daily shape, weekends at 35% of a weekday's traffic, every hour.
    let p = SeasonalParams {
        level_alpha: 0.003,
        ..params()
    };
    let w5 = 5 * MIN;
    let value = |t: u64| {
        let weekend = (t / (1440 * MIN)) % 7 >= 5;
        daily(t) * if weekend { 0.35 } else { 1.0 }
    };
    let mut s = Seasonal::new(&p);
    s.set_multiplicative(true);
    let mut found = 0;
    let mut t = 0;
    while t < 21 * 1440 * MIN {
        let x = value(t)
            + if (t / w5).is_multiple_of(2) {
                1.0
            } else {
                -1.0
            };
        let sd = s.score(x, t, 0.5, &p).map_or(0.0, |v| v.sd);
        s.update(x, t, w5, &p, false, sd);
        found += s.weekly_newly_found() as u32;
        t += w5;
    }
    assert!(s.weekly_present());
    assert_eq!(found, 1, "reported once, once settled");
    // Saturday noon against Wednesday noon of the fourth week.
    let noon = 720 * MIN;
    let sat = s.expected(26 * 1440 * MIN + noon, &p).unwrap();
    let wed = s.expected(23 * 1440 * MIN + noon, &p).unwrap();
    assert!((sat / wed - 0.35).abs() < 0.05, "{sat} / {wed}");
}
