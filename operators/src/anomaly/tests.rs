//! Engine-level tests: RED rows in, anomalies, incidents and predictions out.

use super::*;
use crate::anomaly::{AnomalyConfig, ForecastConfig, ThresholdConfig};
use crate::forecast::Prediction;
use crate::red::{RedAgg, RedRow};
use redwatch_engine::{SpanKind, StatusCode};

const W: u64 = 10_000_000_000;

fn key(name: &str) -> Arc<SeriesKey> {
    Arc::new(SeriesKey {
        service_name: Arc::from("checkout"),
        span_name: Arc::from(name),
        kind: SpanKind::Server,
        dims: Box::new([]),
        overflow: false,
    })
}

/// A RED row for window `i` with `calls` spans of `ms` each, `errors` of them failed (also used
/// by the operator tests).
pub(super) fn row(series: &Arc<SeriesKey>, i: u64, calls: u32, errors: u32, ms: f64) -> RedRow {
    let mut total = RedAgg::default();
    for c in 0..calls {
        let status = if c < errors {
            StatusCode::Error
        } else {
            StatusCode::Unset
        };
        // A little spread so quantiles differ.
        total.add(status, ms * (1.0 + 0.002 * (c % 10) as f64), 0, 1.0);
    }
    RedRow {
        window_size: Arc::from("10s"),
        window_size_ns: W,
        primary: true,
        start: i * W,
        end: (i + 1) * W,
        series: series.clone(),
        share: None,
        is_final: true,
        first: true,
        total,
        delta: None,
    }
}

pub(super) fn jitter(i: u64) -> f64 {
    ((i as f64 * 12.9898).sin() * 43758.5453).fract()
}

#[test]
fn latency_incident_opens_continues_and_resolves() {
    let mut e = AnomalyEngine::new(&AnomalyConfig::default(), &ForecastConfig::default());
    let s = key("GET /cart");
    let mut all = Vec::new();
    for i in 0..400u64 {
        let ms = if (300..310).contains(&i) {
            900.0
        } else {
            100.0 + 4.0 * jitter(i)
        };
        let (a, _) = e.observe_red(&row(&s, i, 200, 0, ms));
        all.extend(a);
    }
    let lat: Vec<&Anomaly> = all
        .iter()
        .filter(|a| &*a.signal == "latency_p99_ms")
        .collect();
    assert!(!lat.is_empty(), "{all:?}");
    assert_eq!(lat[0].incident_state, IncidentState::Open);
    assert_eq!(lat[0].window_start, 300 * W);
    assert!(lat[0].value > lat[0].expected_max);
    assert!(lat.iter().all(|a| a.incident_id == lat[0].incident_id));
    let last = lat.last().unwrap();
    assert_eq!(last.incident_state, IncidentState::Resolved);
    assert_eq!(last.window_start, (310 + 2) * W);
    // The resolving record says how long the incident lasted: windows 300..310.
    assert_eq!(last.incident_start, 300 * W);
    assert_eq!(last.incident_duration_ns, 10 * W);
    assert_eq!(last.incident_windows, 10);
    assert_eq!(
        (lat[0].incident_duration_ns, lat[0].incident_windows),
        (W, 1)
    );
    assert!(lat[1..lat.len() - 1]
        .iter()
        .all(|a| a.incident_state == IncidentState::Ongoing));
    assert!(last.severity >= Severity::High);
    // No other signal alarmed: rate and error ratio did not change.
    assert!(
        all.iter().all(|a| a.signal.starts_with("latency_")),
        "{all:?}"
    );
}

#[test]
fn late_provisional_and_rollup_rows_change_nothing() {
    let mut e = AnomalyEngine::new(&AnomalyConfig::default(), &ForecastConfig::default());
    let s = key("GET /");
    for i in 0..100u64 {
        e.observe_red(&row(&s, i, 100, 0, 50.0));
    }
    let bytes = e.state_bytes();
    let mut r = row(&s, 100, 100, 100, 5000.0);
    r.first = false;
    assert_eq!(e.observe_red(&r), (vec![], vec![]));
    r.first = true;
    r.is_final = false;
    assert_eq!(e.observe_red(&r), (vec![], vec![]));
    r.is_final = true;
    r.primary = false;
    assert_eq!(e.observe_red(&r), (vec![], vec![]));
    // An old window is ignored, too.
    assert_eq!(
        e.observe_red(&row(&s, 50, 100, 100, 5000.0)),
        (vec![], vec![])
    );
    assert_eq!(e.state_bytes(), bytes);
    assert_eq!(e.series_count(), 1);
}

#[test]
fn traffic_drop_to_nothing_alarms_through_gap_fill() {
    let mut e = AnomalyEngine::new(&AnomalyConfig::default(), &ForecastConfig::default());
    let s = key("GET /");
    for i in 0..200u64 {
        e.observe_red(&row(&s, i, 500 + (jitter(i) * 20.0) as u32, 0, 50.0));
    }
    // Nothing for 20 windows, then traffic is back.
    let (a, _) = e.observe_red(&row(&s, 220, 500, 0, 50.0));
    let rate: Vec<&Anomaly> = a.iter().filter(|a| &*a.signal == "request_rate").collect();
    assert!(!rate.is_empty());
    assert_eq!(rate[0].window_start, 200 * W);
    assert_eq!(rate[0].value, 0.0);
}

#[test]
fn low_traffic_latency_is_not_judged() {
    let mut e = AnomalyEngine::new(&AnomalyConfig::default(), &ForecastConfig::default());
    let s = key("GET /rare");
    let mut n = 0;
    for i in 0..300u64 {
        // 5 calls a window; latency all over the place.
        let ms = if i % 7 == 0 { 2000.0 } else { 20.0 };
        let (a, _) = e.observe_red(&row(&s, i, 5, (i % 2) as u32, ms));
        n += a
            .iter()
            .filter(|a| !a.signal.starts_with("request"))
            .count();
    }
    assert_eq!(n, 0);
}

#[test]
fn predictions_with_trend_and_threshold() {
    let fcfg = ForecastConfig {
        thresholds: vec![ThresholdConfig {
            signal: "latency_p99_ms".into(),
            value: 300.0,
            direction: crate::anomaly::Direction::Up,
        }],
        ..Default::default()
    };
    let mut e = AnomalyEngine::new(&AnomalyConfig::default(), &fcfg);
    let s = key("GET /slow");
    let mut preds = Vec::new();
    // Latency climbing 1 ms per window: 300 ms is reached 30 windows (5 min) after 270.
    for i in 0..200u64 {
        let (_, p) = e.observe_red(&row(&s, i, 100, 0, 100.0 + i as f64));
        preds.extend(p);
    }
    let lat: Vec<&Prediction> = preds
        .iter()
        .filter(|p| &*p.signal == "latency_p99_ms")
        .collect();
    assert!(!lat.is_empty());
    let p = lat.last().unwrap();
    assert_eq!(p.horizon_ms, 300_000);
    assert!(p.trend_change, "{p:?}");
    assert!(p.lower <= p.value && p.value <= p.upper);
    // At window 199 the p99 is ~300: a crossing is due now or within a few windows.
    let ttt = p.time_to_threshold_ms.expect("threshold crossing");
    assert!(ttt <= 60_000, "{ttt}");
    // Early on (p99 ~ 150 at window 50) the crossing is beyond the horizon.
    assert!(lat
        .iter()
        .any(|p| p.window_end <= 60 * W && p.time_to_threshold_ms.is_none()));
    // Flat request rate: predictions every 6 windows, no trend change.
    let rate: Vec<&Prediction> = preds
        .iter()
        .filter(|p| &*p.signal == "request_rate")
        .collect();
    assert!(rate.len() >= 20 && rate.iter().all(|p| !p.trend_change));
}

#[test]
fn state_is_bounded_and_expires() {
    let mut e = AnomalyEngine::new(&AnomalyConfig::default(), &ForecastConfig::default());
    let keys: Vec<_> = (0..10).map(|i| key(&format!("op{i}"))).collect();
    for i in 0..50u64 {
        for k in &keys {
            e.observe_red(&row(k, i, 50, 1, 10.0));
        }
    }
    let per_series = e.state_bytes() / e.series_count();
    // Four signals with a daily profile each (first period: with its visit counts).
    assert!(per_series < 6 * 1024, "{per_series}");
    assert_eq!(e.signal_count(), 40);
    assert_eq!(e.expire(&keys[..3]), 3);
    assert_eq!(e.series_count(), 7);
    e.observe_red(&row(&keys[5], 60, 50, 1, 10.0));
    assert_eq!(e.expire_idle(50 * W), 6);
    assert_eq!(e.series_count(), 1);
}

#[test]
fn disabled_sections_do_nothing() {
    let cfg = AnomalyConfig {
        enabled: false,
        ..Default::default()
    };
    let fcfg = ForecastConfig {
        enabled: false,
        ..Default::default()
    };
    let mut e = AnomalyEngine::new(&cfg, &fcfg);
    let s = key("x");
    for i in 0..300u64 {
        let (a, p) = e.observe_red(&row(&s, i, 100, if i > 250 { 100 } else { 0 }, 10.0));
        assert!(a.is_empty() && p.is_empty());
    }
}

#[test]
fn steady_state_per_series_is_compact() {
    // One day and a bit of 5-minute windows: the seasonal profiles are warm (first-period visit
    // counts freed), rings full. Default config: 4 RED signals, detectors and forecasters.
    const W5: u64 = 300_000_000_000;
    let mut e = AnomalyEngine::new(&AnomalyConfig::default(), &ForecastConfig::default());
    let s = key("GET /compact");
    for i in 0..(288 + 72) as u64 {
        let mut r = row(&s, i, 200, 1, 40.0 + 5.0 * jitter(i));
        r.start = i * W5;
        r.end = (i + 1) * W5;
        r.window_size_ns = W5;
        e.observe_red(&r);
    }
    let bytes = e.state_bytes();
    println!("steady state: {bytes} bytes per RED series (4 signals)");
    // 4 × (daily profile 576 + two 60-value half-precision rings 240 + ~300 of scalars).
    assert!(bytes <= 4650, "{bytes}");
}
