//! Calibration of the anomaly score (docs/anomaly-detection.md, "The score"): on generated
//! series without anomalies, of every kind the detectors must handle, the share of windows with
//! score ≥ s is within ±20% of 1 − s for s = 0.9, 0.99 and 0.999.
//!
//! Each kind runs enough seeded series that 0.999 means something: ≥ 240 000 scored windows
//! (≈ 240 expected at 0.999; ±20% is then about ±3 standard errors of a binomial count).

use super::ensemble::{Observation, SignalDetector};
use super::incident::{IncidentPolicy, IncidentTracker};
use super::params::DetectorParams;
use super::SignalKind;
use crate::anomaly::AnomalyConfig;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Binomial, Distribution, Normal};
use synthetic::{daily, neg_binomial, poisson, PER_DAY_5M};

#[path = "synthetic.rs"]
mod synthetic;

const MIN5: u64 = 300_000_000_000;
const S10: u64 = 10_000_000_000;
/// An arbitrary Monday 00:00 UTC.
const EPOCH: u64 = 1_767_571_200 * 1_000_000_000;

/// One generated series: (signal name, window width, values with their calls).
struct Series {
    signal: &'static str,
    width: u64,
    points: Vec<(f64, f64)>,
}

/// Weekday/weekend level at 5-minute window `w` (day 0 is a Monday).
fn weekly(w: u64) -> f64 {
    if (w / PER_DAY_5M) % 7 >= 5 {
        0.6
    } else {
        1.0
    }
}

fn generate(kind: &str, seed: u64, n: usize) -> Series {
    let mut rng = StdRng::seed_from_u64(seed);
    let n01 = Normal::new(0.0, 1.0).unwrap();
    let mut points = Vec::with_capacity(n);
    let (signal, width) = match kind {
        "red_rate" | "red_errors" | "red_latency" => (
            match kind {
                "red_rate" => "request_rate",
                "red_errors" => "error_ratio",
                _ => "latency_p99_ms",
            },
            S10,
        ),
        _ => ("gauge", MIN5),
    };
    for w in 0..n as u64 {
        let p = match kind {
            // RED, 10 s windows: Poisson calls at 30/s, 1% binomial errors, a p99 with the
            // sampling noise of a quantile of that many calls.
            "red_rate" => {
                let c = poisson(&mut rng, 300.0);
                (c / 10.0, c)
            }
            "red_errors" => {
                let c = poisson(&mut rng, 300.0);
                let e = Binomial::new(c as u64, 0.01).unwrap().sample(&mut rng) as f64;
                (e / c.max(1.0), c)
            }
            "red_latency" => {
                let c = poisson(&mut rng, 300.0);
                let z: f64 = n01.sample(&mut rng);
                (120.0 * (1.86 / c.max(1.0).sqrt() * z).exp(), c)
            }
            // Gauges, one point per 5-minute window.
            "gaussian" => (100.0 + 5.0 * n01.sample(&mut rng), 0.0),
            "mostly_zero" => (poisson(&mut rng, 0.05), 0.0),
            "bursty_counts" => (neg_binomial(&mut rng, 12.0, 1.5), 0.0),
            "quantised" => {
                let x: f64 = 21.0 + 0.6 * n01.sample(&mut rng);
                ((x * 2.0).round() / 2.0, 0.0)
            }
            "weekly_counts" => (poisson(&mut rng, 200.0 * daily(w, 0.6) * weekly(w)), 0.0),
            "daily_gauge" => (50.0 * daily(w, 0.3) + 1.5 * n01.sample(&mut rng), 0.0),
            _ => unreachable!("{kind}"),
        };
        points.push(p);
    }
    Series {
        signal,
        width,
        points,
    }
}

/// Shares of scored windows with score ≥ 0.9, 0.99, 0.999, and the number scored.
fn shares(kind: &str, series: u64, windows: usize, skip: usize) -> ([f64; 3], u64) {
    let cfg = AnomalyConfig::default();
    let p = DetectorParams::new(&cfg);
    let policy = IncidentPolicy::default();
    let mut hits = [0u64; 3];
    let mut scored = 0u64;
    let mut seasons = [0u64; 2];
    let (mut in_incident, mut opened) = (0u64, 0u64);
    for s in 0..series {
        let g = generate(kind, 1000 * s + kind.len() as u64, windows);
        let sk = SignalKind::of(g.signal);
        let dir = cfg.directions.get(g.signal).copied().unwrap_or_default();
        let mut det = SignalDetector::new(&p);
        let mut inc = IncidentTracker::default();
        let mut scratch = Vec::new();
        for (w, &(value, calls)) in g.points.iter().enumerate() {
            let (daily, weekly) = det.seasons(&p);
            seasons[0] += daily as u64;
            seasons[1] += weekly as u64;
            if sk.needs_traffic() && calls < cfg.min_calls {
                continue;
            }
            let start = EPOCH + w as u64 * g.width;
            let o = Observation {
                value,
                t_mid: start + g.width / 2,
                calls,
                window_s: g.width as f64 / 1e9,
            };
            let d = det.observe(&o, sk, dir, &p, inc.duration_windows(), &mut scratch);
            in_incident += inc.is_open() as u64;
            opened += d.anomalous as u64;
            inc.window(
                d.anomalous,
                d.p,
                d.sustained,
                start,
                start + g.width,
                &policy,
                |_| [1; 16],
            );
            assert!((0.0..=1.0).contains(&d.score), "{kind}: {d:?}");
            if w < skip {
                continue;
            }
            scored += 1;
            for (i, lvl) in [0.9, 0.99, 0.999].into_iter().enumerate() {
                if d.score >= lvl {
                    hits[i] += 1;
                }
            }
        }
    }
    println!(
        "{kind}: windows with a daily / weekly season found: {seasons:?}; anomalous {opened}, in an incident {in_incident}"
    );
    (hits.map(|h| h as f64 / scored.max(1) as f64), scored)
}

/// Runs one kind and asserts the shares; `windows` per series, the first `skip` (the warm-up
/// and, for seasonal kinds, the first period) unscored.
fn check(kind: &str, series: u64, windows: usize, skip: usize) {
    let (got, scored) = shares(kind, series, windows, skip);
    println!("{kind}: {scored} windows, shares ≥ 0.9/0.99/0.999: {got:?}");
    assert!(scored >= 240_000, "{kind}: only {scored} windows scored");
    for (share, s) in got.iter().zip([0.9, 0.99, 0.999]) {
        let want = 1.0 - s;
        assert!(
            (share / want - 1.0).abs() <= 0.2,
            "{kind}: share of windows with score ≥ {s} is {share:.5}, want {want} ± 20% (all: {got:?})"
        );
    }
}

#[test]
fn calibrated_on_red_rates() {
    check("red_rate", 80, 4_500, 1_500);
}

#[test]
fn calibrated_on_red_error_ratios() {
    check("red_errors", 40, 7_500, 1_500);
}

#[test]
fn calibrated_on_red_latency() {
    check("red_latency", 40, 7_500, 1_500);
}

#[test]
fn calibrated_on_gaussian_gauges() {
    check("gaussian", 40, 7_500, 1_500);
}

#[test]
fn calibrated_on_mostly_zero_counts() {
    check("mostly_zero", 40, 7_500, 1_500);
}

#[test]
fn calibrated_on_bursty_overdispersed_counts() {
    check("bursty_counts", 40, 7_500, 1_500);
}

#[test]
fn calibrated_on_quantised_gauges() {
    check("quantised", 40, 7_500, 1_500);
}

#[test]
fn calibrated_on_daily_gauges() {
    check("daily_gauge", 40, 7_500, 1_500);
}

#[test]
fn calibrated_on_weekly_seasonal_counts() {
    check("weekly_counts", 40, 7_500, 1_500);
}

#[test]
fn generators_are_seeded() {
    let a = generate("bursty_counts", 7, 100).points;
    let b = generate("bursty_counts", 7, 100).points;
    assert_eq!(a, b);
    assert!(a.iter().any(|&(x, _)| x > 0.0));
}
