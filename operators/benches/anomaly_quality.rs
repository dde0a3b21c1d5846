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

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Binomial, Distribution, Normal, Poisson};
use redwatch_engine::config::{AnomalyConfig, ForecastConfig};
use redwatch_engine::SpanKind;
use redwatch_operators::anomaly::{AnomalyEngine, IncidentState};
use redwatch_operators::red::SeriesKey;
use std::collections::HashMap;
use std::f64::consts::PI;
use std::sync::Arc;
use std::time::Instant;

const W_NS: u64 = 10_000_000_000;
const WINDOWS_PER_DAY: u64 = 8640;
const DAYS: u64 = 4;
/// Windows after an event's end during which an alarm still counts for it (5 minutes).
const TOLERANCE: u64 = 30;
/// An arbitrary Monday 00:00 UTC, so slots line up with days.
const EPOCH0: u64 = 1_767_571_200 * 1_000_000_000;
const SIGNALS: [&str; 4] = [
    "request_rate",
    "error_ratio",
    "latency_p50_ms",
    "latency_p99_ms",
];

#[derive(Debug, Clone, Copy)]
enum Shape {
    /// 1 + a·sin over the day, peak mid-afternoon.
    Smooth(f64),
    /// Smooth, plus ×`factor` from 09:00 to 17:00 with 15-minute ramps.
    BusinessHours(f64),
    /// Smooth, plus a ×3 batch burst 02:00–02:15 every night.
    NightlyBatch(f64),
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// p99 × f, p50 × (1 + (f-1)/3).
    LatencySpike(f64),
    /// Error ratio becomes this.
    ErrorBurst(f64),
    /// p50 and p99 × f.
    LatencyShift(f64),
    /// Traffic × f (a drop when f < 1).
    RateShift(f64),
    /// Traffic ramps to × f over `ramp` windows, then holds.
    RateRamp(f64, u64),
    /// Latency drifts to × f over `ramp` windows, then holds.
    LatencyDrift(f64, u64),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::LatencySpike(_) => "latency spike",
            Kind::ErrorBurst(_) => "error burst",
            Kind::LatencyShift(_) => "latency level shift",
            Kind::RateShift(f) if *f < 1.0 => "traffic drop",
            Kind::RateShift(_) => "traffic surge",
            Kind::RateRamp(..) => "traffic ramp",
            Kind::LatencyDrift(..) => "slow latency drift",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Event {
    kind: Kind,
    start: u64,
    len: u64,
}

#[derive(Debug, Clone)]
struct SeriesSpec {
    name: String,
    group: &'static str,
    rate: f64,
    shape: Shape,
    p50_ms: f64,
    error_ratio: f64,
    events: Vec<Event>,
}

fn seasonal_factor(shape: Shape, w: u64) -> f64 {
    let day = (w % WINDOWS_PER_DAY) as f64 / WINDOWS_PER_DAY as f64;
    let smooth = |a: f64| 1.0 + a * (2.0 * PI * (day - 0.375)).sin();
    let minute = (w % WINDOWS_PER_DAY) / 6;
    let plateau = |from: u64, to: u64, ramp: u64| -> f64 {
        if minute < from || minute >= to {
            0.0
        } else if minute < from + ramp {
            (minute - from) as f64 / ramp as f64
        } else if minute >= to - ramp {
            (to - minute) as f64 / ramp as f64
        } else {
            1.0
        }
    };
    match shape {
        Shape::Smooth(a) => smooth(a),
        Shape::BusinessHours(f) => smooth(0.2) * (1.0 + (f - 1.0) * plateau(540, 1020, 15)),
        Shape::NightlyBatch(a) => smooth(a) * (1.0 + 2.0 * plateau(120, 135, 1)),
    }
}

/// One window's true parameters: (rate, error ratio, p50, p99).
fn truth(s: &SeriesSpec, w: u64) -> (f64, f64, f64, f64) {
    let season = seasonal_factor(s.shape, w);
    let mut rate = s.rate * season;
    let mut err = s.error_ratio;
    // Latency grows a little with load.
    let mut p50 = s.p50_ms * (1.0 + 0.15 * (season - 1.0));
    let mut p99 = 3.5 * p50;
    for e in &s.events {
        if w < e.start || w >= e.start + e.len {
            continue;
        }
        let k = (w - e.start) as f64;
        match e.kind {
            Kind::LatencySpike(f) => {
                p99 *= f;
                p50 *= 1.0 + (f - 1.0) / 3.0;
            }
            Kind::ErrorBurst(r) => err = r,
            Kind::LatencyShift(f) => {
                p50 *= f;
                p99 *= f;
            }
            Kind::RateShift(f) => rate *= f,
            Kind::RateRamp(f, ramp) => rate *= 1.0 + (f - 1.0) * (k / ramp as f64).min(1.0),
            Kind::LatencyDrift(f, ramp) => {
                let m = 1.0 + (f - 1.0) * (k / ramp as f64).min(1.0);
                p50 *= m;
                p99 *= m;
            }
        }
    }
    (rate, err, p50, p99)
}

/// Observed window values (rate, error ratio, p50, p99, calls), with realistic noise.
struct Observer {
    rng: StdRng,
    /// Slow multiplicative wobbles (AR(1)) of traffic and latency: real series are
    /// overdispersed compared with pure counting noise.
    wobble_rate: f64,
    wobble_lat: f64,
}

impl Observer {
    fn observe(&mut self, s: &SeriesSpec, w: u64) -> [f64; 5] {
        let (rate, err, p50, p99) = truth(s, w);
        let n01 = Normal::new(0.0, 1.0).unwrap();
        self.wobble_rate =
            0.97 * self.wobble_rate + 0.03f64.sqrt() * 0.03 * n01.sample(&mut self.rng);
        self.wobble_lat =
            0.97 * self.wobble_lat + 0.03f64.sqrt() * 0.03 * n01.sample(&mut self.rng);
        let lambda = (rate * 10.0 * (1.0 + self.wobble_rate)).max(0.0);
        let calls = if lambda > 0.0 {
            Poisson::new(lambda).unwrap().sample(&mut self.rng)
        } else {
            0.0
        };
        let n = calls as u64;
        let errors = if n > 0 {
            Binomial::new(n, err.clamp(0.0, 1.0))
                .unwrap()
                .sample(&mut self.rng) as f64
        } else {
            0.0
        };
        // Sampling sd of a quantile of n lognormal(σ = 0.5) draws, relative: p50 0.63/√n,
        // p99 1.86/√n.
        let nn = calls.max(1.0);
        let lat = 1.0 + self.wobble_lat;
        let q50 = p50 * lat * (0.63 / nn.sqrt() * n01.sample(&mut self.rng)).exp();
        let q99 = (p99 * lat * (1.86 / nn.sqrt() * n01.sample(&mut self.rng)).exp()).max(q50);
        [
            calls / 10.0,
            if n > 0 { errors / calls } else { 0.0 },
            q50,
            q99,
            calls,
        ]
    }
}

/// The labelled suite.
fn suite(seed: u64) -> Vec<SeriesSpec> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut add = |name: &str,
                   group: &'static str,
                   rate: f64,
                   shape: Shape,
                   p50: f64,
                   kinds: &[(Kind, u64)],
                   rng: &mut StdRng| {
        // Events on days 1–3, at least 4 hours apart, not inside the nightly batch peak.
        let mut events: Vec<Event> = Vec::new();
        for &(kind, len) in kinds {
            loop {
                let start =
                    rng.random_range(WINDOWS_PER_DAY + 360..DAYS * WINDOWS_PER_DAY - len - 360);
                let clear = events
                    .iter()
                    .all(|e| start + len + 1440 < e.start || e.start + e.len + 1440 < start);
                if clear {
                    events.push(Event { kind, start, len });
                    break;
                }
            }
        }
        out.push(SeriesSpec {
            name: name.to_string(),
            group,
            rate,
            shape,
            p50_ms: p50,
            error_ratio: 0.005,
            events,
        });
    };
    // No incidents: seasonal only, busy and quiet.
    for (i, (rate, shape)) in [
        (500.0, Shape::Smooth(0.6)),
        (50.0, Shape::Smooth(0.4)),
        (5.0, Shape::Smooth(0.5)),
        (200.0, Shape::BusinessHours(3.0)),
        (100.0, Shape::NightlyBatch(0.3)),
        (20.0, Shape::BusinessHours(2.0)),
    ]
    .into_iter()
    .enumerate()
    {
        add(
            &format!("seasonal-{i}"),
            "seasonal only",
            rate,
            shape,
            40.0 + 20.0 * i as f64,
            &[],
            &mut rng,
        );
    }
    let busy = [
        (300.0, Shape::Smooth(0.5)),
        (80.0, Shape::BusinessHours(2.5)),
        (150.0, Shape::NightlyBatch(0.4)),
    ];
    for (i, &(rate, shape)) in busy.iter().enumerate() {
        let p50 = 30.0 + 25.0 * i as f64;
        add(
            &format!("spike-{i}"),
            "spikes",
            rate,
            shape,
            p50,
            &[
                (Kind::LatencySpike(4.0), 2),
                (Kind::LatencySpike(3.0), 1),
                (Kind::LatencySpike(6.0), 3),
                (Kind::LatencySpike(3.0), 6),
            ],
            &mut rng,
        );
        add(
            &format!("errors-{i}"),
            "error bursts",
            rate,
            shape,
            p50,
            &[
                (Kind::ErrorBurst(0.05), 6),
                (Kind::ErrorBurst(0.2), 3),
                (Kind::ErrorBurst(0.08), 30),
                (Kind::ErrorBurst(0.5), 2),
            ],
            &mut rng,
        );
        add(
            &format!("shift-{i}"),
            "level shifts",
            rate,
            shape,
            p50,
            &[(Kind::LatencyShift(1.6), 360), (Kind::RateShift(0.4), 180)],
            &mut rng,
        );
        add(
            &format!("ramp-{i}"),
            "traffic ramps and drops",
            rate,
            shape,
            p50,
            &[(Kind::RateRamp(2.5, 120), 360), (Kind::RateShift(0.05), 60)],
            &mut rng,
        );
        add(
            &format!("drift-{i}"),
            "slow drifts",
            rate,
            shape,
            p50,
            &[(Kind::LatencyDrift(1.8, 720), 1080)],
            &mut rng,
        );
    }
    // Low traffic. At 0.5 calls/s (5 a window) nothing is labelled: latency and error ratio
    // are below `min_calls` by design, and the series must simply stay quiet. At 2.5 and 4
    // calls/s (12–60 a window over the day) gross incidents must be found.
    add(
        "low-0",
        "low traffic",
        0.5,
        Shape::Smooth(0.5),
        80.0,
        &[],
        &mut rng,
    );
    for (i, rate) in [2.5, 4.0].into_iter().enumerate() {
        add(
            &format!("low-{}", i + 1),
            "low traffic",
            rate,
            Shape::Smooth(0.5),
            80.0,
            &[
                (Kind::ErrorBurst(0.6), 30),
                (Kind::LatencySpike(10.0), 30),
                (Kind::RateShift(0.0), 60),
            ],
            &mut rng,
        );
    }
    out
}

fn key(name: &str) -> Arc<SeriesKey> {
    Arc::new(SeriesKey {
        service_name: Arc::from("suite"),
        span_name: Arc::from(name),
        kind: SpanKind::Server,
        dims: Box::new([]),
        overflow: false,
    })
}

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
) -> (Score, f64) {
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
                            "{} {} day {} {:02}:{:02} value {:.4} expected [{:.4}, {:.4}] score {:.1} by {}",
                            d.spec.name,
                            a.signal,
                            w / WINDOWS_PER_DAY,
                            (w % WINDOWS_PER_DAY) / 360,
                            (w % 360) / 6,
                            a.value,
                            a.expected_min,
                            a.expected_max,
                            a.score,
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
    (score, ns_per_obs)
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
            let dec = det.observe(&o, kind, dir, &p, &mut scratch);
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
    // `ANOMALY_QUALITY_ONLY=ensemble` runs just the rows whose name contains it.
    let only_rows = std::env::var("ANOMALY_QUALITY_ONLY").unwrap_or_default();
    for (name, cfg) in &configs {
        if !name.contains(only_rows.as_str()) {
            continue;
        }
        let is_default = name.starts_with("ensemble");
        let (mut s, ns) = if is_default {
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
            default_score = Some(s);
        }
    }
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
}
