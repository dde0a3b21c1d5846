//! Anomaly detection quality on a labelled synthetic suite (no criterion: prints tables).
//!
//! `cargo bench -p redwatch-operators --bench anomaly_quality`
//!
//! The suite is generated deterministically (seeded): RED series of 10 s windows over four days
//! with daily seasonality (smooth curves, a business-hours plateau, a nightly batch peak),
//! Poisson traffic with extra overdispersion, binomial errors and latency quantiles with the
//! sampling noise of a quantile of that many calls, plus injected incidents (latency spikes,
//! error bursts, latency level shifts, traffic drops, traffic surges ramping up, slow latency
//! drifts) on days 1–3, on busy and on low-traffic series, and series with no incident at all.
//! Day 0 is training (the seasonal profile's first period): no incidents, alarms not scored.
//!
//! Scoring is event-level: an incident (the engine's own, per series and signal) that opens
//! inside a labelled event of its series or up to `TOLERANCE` windows after it is a true
//! positive, any other is a false positive; an event is detected when at least one incident
//! opens in that span. Delay = first alarm window − event start. Forecasts are scored on the
//! default run: MAPE of the 5-minute-ahead value and coverage of its 95% interval, on windows
//! outside any event.

mod gauges;
mod suite;
#[path = "../../src/anomaly/synthetic.rs"]
mod synthetic;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redwatch_operators::anomaly::{AnomalyConfig, ForecastConfig};
use redwatch_operators::anomaly::{AnomalyEngine, IncidentState};
use redwatch_operators::red::SeriesKey;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use suite::*;

/// One series' generated observations, shared by all configurations.
struct Data {
    spec: SeriesSpec,
    key: Arc<SeriesKey>,
    /// Per window: rate, error ratio, p50, p99, calls.
    values: Vec<[f64; 5]>,
}

#[derive(Default, Clone)]
struct Score {
    tp_incidents: u64,
    fp_incidents: u64,
    events: u64,
    detected: u64,
    delays: Vec<u64>,
    seasonal_only_alarms: u64,
    day0_alarms: u64,
    /// Per event kind: (events, detected).
    by_kind: HashMap<&'static str, (u64, u64)>,
    by_group_fp: HashMap<&'static str, u64>,
}

#[derive(Default)]
struct ForecastScore {
    /// Per signal: (sum of absolute percentage errors, n, covered, n for coverage).
    per_signal: HashMap<&'static str, (f64, u64, u64, u64)>,
}

fn run(
    data: &[Data],
    cfg: &AnomalyConfig,
    fcfg: &ForecastConfig,
    fs: Option<&mut ForecastScore>,
) -> (Score, f64, usize) {
    let mut engine = AnomalyEngine::new(cfg, fcfg);
    let mut score = Score::default();
    let mut fs = fs;
    let t0 = Instant::now();
    let mut obs = 0u64;
    for d in data {
        let mut opened: Vec<(u64, String)> = Vec::new();
        for (w, v) in d.values.iter().enumerate() {
            let w = w as u64;
            let start = EPOCH0 + w * W_NS;
            for (si, sig) in SIGNALS.iter().enumerate() {
                let (anoms, preds) =
                    engine.observe_value(sig, &d.key, start, start + W_NS, v[si], v[4]);
                obs += 1;
                for a in anoms {
                    if a.incident_state == IncidentState::Open {
                        let w = (a.window_start - EPOCH0) / W_NS;
                        let what = format!(
                            "{} {} day {} {:02}:{:02} value {:.4} expected [{:.4}, {:.4}] score {:.6} z {:.1} by {}",
                            d.spec.name,
                            a.signal,
                            w / WINDOWS_PER_DAY,
                            (w % WINDOWS_PER_DAY) / 360,
                            (w % 360) / 6,
                            a.value,
                            a.expected_min,
                            a.expected_max,
                            a.score.unwrap_or(f64::NAN),
                            a.z.unwrap_or(f64::NAN),
                            a.detector
                        );
                        opened.push((w, what));
                    }
                }
                if let Some(fs) = fs.as_deref_mut() {
                    for p in preds {
                        let steps = p.horizon_ms / 10_000;
                        let target = w + steps;
                        let Some(actual) = d.values.get(target as usize) else {
                            continue;
                        };
                        let in_event = d.spec.events.iter().any(|e| {
                            target + TOLERANCE >= e.start && w <= e.start + e.len + 6 * TOLERANCE
                        });
                        if in_event
                            || target < WINDOWS_PER_DAY
                            || (si > 0 && actual[4] < cfg.min_calls)
                        {
                            continue;
                        }
                        let a = actual[si];
                        let e = fs.per_signal.entry(SIGNALS[si]).or_default();
                        if si != 1 && a > 0.0 {
                            e.0 += ((p.value - a) / a).abs();
                            e.1 += 1;
                        }
                        e.3 += 1;
                        if a >= p.lower && a <= p.upper {
                            e.2 += 1;
                        }
                    }
                }
            }
        }
        // Score this series.
        let mut event_hit = vec![None::<u64>; d.spec.events.len()];
        let verbose = std::env::var_os("ANOMALY_QUALITY_VERBOSE").is_some();
        for (w, what) in &opened {
            let w = *w;
            if w < WINDOWS_PER_DAY {
                score.day0_alarms += 1;
                if verbose {
                    println!("training-day incident: {what}");
                }
                continue;
            }
            let hit = d
                .spec
                .events
                .iter()
                .position(|e| w >= e.start && w < e.start + e.len + TOLERANCE);
            match hit {
                Some(i) => {
                    score.tp_incidents += 1;
                    if event_hit[i].is_none() {
                        event_hit[i] = Some(w - d.spec.events[i].start);
                    }
                }
                None => {
                    if verbose {
                        println!("false incident: {what}");
                    }
                    score.fp_incidents += 1;
                    *score.by_group_fp.entry(d.spec.group).or_default() += 1;
                    if d.spec.events.is_empty() {
                        score.seasonal_only_alarms += 1;
                    }
                }
            }
        }
        if verbose {
            for e in &d.spec.events {
                println!(
                    "event: {} {} day {} {:02}:{:02} for {} windows",
                    d.spec.name,
                    e.kind.name(),
                    e.start / WINDOWS_PER_DAY,
                    (e.start % WINDOWS_PER_DAY) / 360,
                    (e.start % 360) / 6,
                    e.len
                );
            }
            for (_, what) in opened.iter().filter(|(w, _)| *w >= WINDOWS_PER_DAY) {
                println!("incident: {what}");
            }
        }
        for (e, hit) in d.spec.events.iter().zip(&event_hit) {
            score.events += 1;
            let k = score.by_kind.entry(e.kind.name()).or_default();
            k.0 += 1;
            if verbose && hit.is_none() {
                println!(
                    "missed: {} {} at window {}",
                    d.spec.name,
                    e.kind.name(),
                    e.start
                );
            }
            if let Some(delay) = hit {
                score.detected += 1;
                k.1 += 1;
                score.delays.push(*delay);
            }
        }
    }
    let ns_per_obs = t0.elapsed().as_nanos() as f64 / obs as f64;
    let bytes_per_series = engine.state_bytes() / engine.series_count().max(1);
    (score, ns_per_obs, bytes_per_series)
}

fn median(v: &mut [u64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    v[v.len() / 2] as f64
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    // `ANOMALY_QUALITY_SEED=n` draws another suite of the same design.
    let seed: u64 = std::env::var("ANOMALY_QUALITY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_125);
    let specs = suite(seed);
    let mut rng = StdRng::seed_from_u64(seed ^ 7);
    let t0 = Instant::now();
    let data: Vec<Data> = specs
        .into_iter()
        .map(|spec| {
            let mut o = Observer {
                rng: StdRng::seed_from_u64(rng.random()),
                wobble_rate: 0.0,
                wobble_lat: 0.0,
            };
            let values = (0..DAYS * WINDOWS_PER_DAY)
                .map(|w| o.observe(&spec, w))
                .collect();
            Data {
                key: key(&spec.name),
                spec,
                values,
            }
        })
        .collect();
    let events: usize = data.iter().map(|d| d.spec.events.len()).sum();
    println!(
        "suite (seed {seed}): {} series × {} windows of 10 s ({} days; day 0 = training), {} labelled events; generated in {:.1}s\n",
        data.len(),
        DAYS * WINDOWS_PER_DAY,
        DAYS,
        events,
        t0.elapsed().as_secs_f64()
    );

    // `ANOMALY_QUALITY_TRACE=series:signal_index:from_window:count` prints the default
    // ensemble's decisions for one series and signal (tuning aid).
    if let Ok(t) = std::env::var("ANOMALY_QUALITY_TRACE") {
        let parts: Vec<&str> = t.split(':').collect();
        let d = data
            .iter()
            .find(|d| d.spec.name == parts[0])
            .expect("series");
        let si: usize = parts[1].parse().unwrap();
        let from: u64 = parts[2].parse().unwrap();
        let n: u64 = parts[3].parse().unwrap();
        let cfg = AnomalyConfig::default();
        let p = redwatch_operators::anomaly::DetectorParams::new(&cfg);
        let kind = redwatch_operators::anomaly::SignalKind::of(SIGNALS[si]);
        let dir = cfg.directions.get(SIGNALS[si]).copied().unwrap_or_default();
        let mut det = redwatch_operators::anomaly::SignalDetector::new(&p);
        let mut scratch = Vec::new();
        for (w, v) in d.values.iter().enumerate() {
            let w = w as u64;
            if kind.needs_traffic() && v[4] < cfg.min_calls {
                continue;
            }
            let o = redwatch_operators::anomaly::Observation {
                value: v[si],
                t_mid: EPOCH0 + w * W_NS + W_NS / 2,
                calls: v[4],
                window_s: 10.0,
            };
            let dec = det.observe(&o, kind, dir, &p, 0, &mut scratch);
            if w >= from && w < from + n {
                println!("{w} {:.3} {dec:?}", v[si]);
            }
        }
        return;
    }
    let no_forecast = ForecastConfig {
        enabled: false,
        ..Default::default()
    };
    let only = |name: &str| {
        let mut c = AnomalyConfig::default();
        c.ensemble.min_votes = 1;
        c.detectors.robust_z.enabled = name == "robust_z";
        c.detectors.ewma.enabled = name == "ewma";
        c.detectors.seasonal.enabled = name == "seasonal";
        c.detectors.cusum.enabled = name == "cusum";
        c
    };
    let configs: Vec<(&str, AnomalyConfig)> = vec![
        ("robust_z alone", only("robust_z")),
        ("ewma alone", only("ewma")),
        ("seasonal alone", only("seasonal")),
        ("cusum alone (own slow reference)", only("cusum")),
        ("ensemble (default config)", AnomalyConfig::default()),
    ];
    println!("| detector | precision | recall | events detected | false incidents | alarms on seasonal-only series | median delay (windows) | mean delay (windows) |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut fs = ForecastScore::default();
    let mut default_score = None;
    let mut cost = 0.0;
    let mut state = 0;
    // `ANOMALY_QUALITY_ONLY=ensemble` runs just the rows whose name contains it.
    let only_rows = std::env::var("ANOMALY_QUALITY_ONLY").unwrap_or_default();
    for (name, cfg) in &configs {
        if !name.contains(only_rows.as_str()) {
            continue;
        }
        let is_default = name.starts_with("ensemble");
        let (mut s, ns, bytes) = if is_default {
            run(&data, cfg, &ForecastConfig::default(), Some(&mut fs))
        } else {
            run(&data, cfg, &no_forecast, None)
        };
        let precision = s.tp_incidents as f64 / (s.tp_incidents + s.fp_incidents).max(1) as f64;
        let recall = s.detected as f64 / s.events.max(1) as f64;
        let mean = s.delays.iter().sum::<u64>() as f64 / s.delays.len().max(1) as f64;
        println!(
            "| {name} | {precision:.3} | {recall:.3} | {}/{} | {} | {} | {:.0} | {:.1} |",
            s.detected,
            s.events,
            s.fp_incidents,
            s.seasonal_only_alarms,
            median(&mut s.delays),
            mean
        );
        if is_default {
            cost = ns;
            state = bytes;
            default_score = Some(s);
        }
    }
    gauge_suite(seed);
    let Some(s) = default_score else { return };
    println!("\ndefault ensemble, recall by event kind:\n");
    println!("| event kind | detected |");
    println!("|---|---|");
    let mut kinds: Vec<_> = s.by_kind.iter().collect();
    kinds.sort();
    for (k, (n, d)) in kinds {
        println!("| {k} | {d}/{n} |");
    }
    println!("\ndefault ensemble, false incidents by series group: {:?}; incidents opened on training day 0 (not scored): {}", s.by_group_fp, s.day0_alarms);
    println!("\nforecast (default config: 5 min horizon, 95% interval), windows outside events, days 1–3:\n");
    println!("| signal | MAPE | interval coverage (nominal 0.95) | predictions scored |");
    println!("|---|---|---|---|");
    for sig in SIGNALS {
        if let Some((ape, n, cov, nc)) = fs.per_signal.get(sig) {
            let mape = if *n > 0 {
                format!("{:.1}%", 100.0 * ape / *n as f64)
            } else {
                "n/a (ratio near 0)".into()
            };
            println!(
                "| {sig} | {mape} | {:.3} | {nc} |",
                *cov as f64 / (*nc).max(1) as f64
            );
        }
    }
    println!("\nwall time of the default run (detectors + forecasters, generator excluded): {cost:.0} ns per series-signal-window");
    // State per series: the default (daily profile) and with a weekly profile.
    let mut weekly = AnomalyConfig::default();
    weekly.detectors.seasonal.period = std::time::Duration::from_secs(7 * 86_400);
    let mut e = AnomalyEngine::new(&weekly, &ForecastConfig::default());
    let k = key("weekly");
    for w in 0..10u64 {
        for sig in SIGNALS {
            e.observe_value(sig, &k, w * W_NS, (w + 1) * W_NS, 1.0, 100.0);
        }
    }
    println!(
        "state per RED series (4 signals, detectors + incident + forecaster): {state} bytes with the daily profile (default), {} bytes with a weekly profile",
        e.state_bytes()
    );
}

/// The gauge and count suite (`gauges.rs`): per kind, events detected, incidents, and false
/// incidents per series-week on the series without events.
fn gauge_suite(seed: u64) {
    let verbose = std::env::var_os("ANOMALY_QUALITY_VERBOSE").is_some();
    let data = gauges::gauges(seed);
    if let Ok(t) = std::env::var("ANOMALY_QUALITY_GAUGE_TRACE") {
        gauges::trace(&data, &t);
        return;
    }
    let scores = gauges::run(&data, verbose);
    println!(
        "\ngauges and counts (one point per 5 min, {} weeks, week 0 = training; default config): {} series\n",
        gauges::WEEKS,
        data.len()
    );
    println!("| kind | events detected | true incidents | false incidents | false incidents per quiet series-week | median delay (windows) |");
    println!("|---|---|---|---|---|---|");
    let (mut fp, mut weeks, mut ev, mut det, mut tp) = (0u64, 0.0, 0u64, 0u64, 0u64);
    for kind in gauges::KINDS {
        let Some(k) = scores.get(kind) else { continue };
        let mut d = k.delays.clone();
        println!(
            "| {kind} | {}/{} | {} | {} | {:.3} | {:.0} |",
            k.detected,
            k.events,
            k.tp_incidents,
            k.fp_incidents,
            k.quiet_fp as f64 / k.quiet_weeks.max(1e-9),
            median(&mut d)
        );
        fp += k.quiet_fp;
        weeks += k.quiet_weeks;
        ev += k.events;
        det += k.detected;
        tp += k.tp_incidents;
    }
    let all_fp: u64 = scores.values().map(|k| k.fp_incidents).sum();
    println!(
        "| **all** | {det}/{ev} | {tp} | {all_fp} | **{:.3}** | |",
        fp as f64 / weeks.max(1e-9)
    );
}
