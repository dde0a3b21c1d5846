//! Unit tests of the ensemble decision (`ensemble.rs`).

use super::*;
use crate::anomaly::params::detector_name;
use crate::anomaly::AnomalyConfig;
use proptest::prelude::*;

const W: u64 = 10_000_000_000;

fn obs(i: u64, value: f64, calls: f64) -> Observation {
    Observation {
        value,
        t_mid: i * W + W / 2,
        calls,
        window_s: 10.0,
    }
}

fn run(p: &DetectorParams, kind: SignalKind, dir: Direction, xs: &[(f64, f64)]) -> Vec<Decision> {
    let mut d = SignalDetector::new(p);
    let mut s = Vec::new();
    xs.iter()
        .enumerate()
        .map(|(i, &(x, c))| d.observe(&obs(i as u64, x, c), kind, dir, p, 0, &mut s))
        .collect()
}

fn wiggle(i: usize) -> f64 {
    // Deterministic noise in [-1, 1].
    ((i as f64 * 12.9898).sin() * 43758.5453).fract()
}

#[test]
fn latency_spike_alarms_after_warmup_only() {
    let p = DetectorParams::new(&AnomalyConfig::default());
    let mut xs: Vec<(f64, f64)> = (0..300).map(|i| (100.0 + 3.0 * wiggle(i), 500.0)).collect();
    xs[30].0 = 400.0; // during warm-up
    xs[200].0 = 400.0;
    let d = run(&p, SignalKind::Latency, Direction::Up, &xs);
    assert!(!d[30].anomalous);
    assert!(d[200].anomalous, "{:?}", d[200]);
    assert!(
        d[200].expected_min < 100.0 && d[200].expected_max > 100.0 && d[200].expected_max < 200.0
    );
    assert!(d[200].votes & (ROBUST_Z | EWMA) == ROBUST_Z | EWMA);
    let alarms = d.iter().filter(|d| d.anomalous).count();
    assert_eq!(alarms, 1);
}

#[test]
fn direction_filters_alarms() {
    let p = DetectorParams::new(&AnomalyConfig::default());
    let mut xs: Vec<(f64, f64)> = (0..300).map(|i| (100.0 + 3.0 * wiggle(i), 500.0)).collect();
    xs[200].0 = 10.0; // latency drop: good news, no alarm upward-only
    assert!(run(&p, SignalKind::Latency, Direction::Up, &xs)
        .iter()
        .all(|d| !d.anomalous));
    assert!(run(&p, SignalKind::Latency, Direction::Both, &xs)[200].anomalous);
}

#[test]
fn low_traffic_error_ratio_needs_big_effect() {
    let p = DetectorParams::new(&AnomalyConfig::default());
    // 30 calls a window, no errors, then one error: 3% is noise at this traffic.
    let mut xs: Vec<(f64, f64)> = (0..300).map(|_| (0.0, 30.0)).collect();
    xs[200].0 = 1.0 / 30.0;
    xs[250].0 = 0.5;
    let d = run(&p, SignalKind::Ratio, Direction::Up, &xs);
    assert!(!d[200].anomalous, "{:?}", d[200]);
    assert!(d[250].anomalous, "{:?}", d[250]);
}

#[test]
fn cusum_alone_with_seasonal_disabled_finds_a_small_shift() {
    let mut cfg = AnomalyConfig::default();
    cfg.detectors.seasonal.enabled = false;
    let p = DetectorParams::new(&cfg);
    let xs: Vec<(f64, f64)> = (0..600)
        .map(|i| {
            (
                100.0 + 8.0 * wiggle(i) + if i >= 400 { 15.0 } else { 0.0 },
                1000.0,
            )
        })
        .collect();
    let d = run(&p, SignalKind::Latency, Direction::Up, &xs);
    assert!(d[..400].iter().all(|d| !d.anomalous));
    let first = d.iter().position(|d| d.anomalous).unwrap();
    assert!((400..440).contains(&first), "{first}");
    assert!(d[first].votes & CUSUM != 0);
}

#[test]
fn names_cover_every_combination() {
    assert_eq!(detector_name(ROBUST_Z | SEASONAL), "robust_z+seasonal");
    assert_eq!(detector_name(CUSUM), "cusum");
    assert_eq!(detector_name(0), "ensemble");
}

proptest! {
    /// A constant series never alarms, whatever its level and traffic.
    #[test]
    fn constant_never_alarms(v in 0.0f64..1e6, calls in 0.0f64..1e5, n in 1usize..400) {
        let p = DetectorParams::new(&AnomalyConfig::default());
        let xs = vec![(v, calls); n];
        for kind in [SignalKind::Rate, SignalKind::Latency, SignalKind::Generic] {
            prop_assert!(run(&p, kind, Direction::Both, &xs).iter().all(|d| !d.anomalous));
        }
    }

    /// Expected ranges are ordered and finite for any finite input.
    #[test]
    fn ranges_ordered(xs in proptest::collection::vec((-1e6f64..1e6, 0.0f64..1e4), 1..300)) {
        let p = DetectorParams::new(&AnomalyConfig::default());
        for d in run(&p, SignalKind::Generic, Direction::Both, &xs) {
            prop_assert!(d.expected_min.is_finite() && d.expected_max.is_finite());
            prop_assert!(d.expected_min <= d.expected_max);
            prop_assert!(d.z >= 0.0 && (0.0..=1.0).contains(&d.score));
        }
    }
}
