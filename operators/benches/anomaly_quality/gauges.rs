//! The hard cases beyond RED: gauges and counts as a metric pipeline sends them (one point per
//! 5-minute window, fed as an ingested metric, default `anomaly:` config apart from `signals`):
//! mostly-zero counts, bursty overdispersed counts, quantised gauges, level shifts that persist,
//! weekly seasonality with a holiday, slow monotone drifts toward a failure. Each kind comes
//! with and without a labelled event; the series without one measure false incidents per
//! series-week.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use redwatch_operators::anomaly::{AnomalyConfig, ForecastConfig};
use redwatch_operators::anomaly::{AnomalyEngine, IncidentState};
use std::collections::BTreeMap;

use crate::suite::{key, EPOCH0};
use crate::synthetic::{daily, neg_binomial, poisson};

pub const W5_NS: u64 = 300_000_000_000;
pub const PER_DAY: u64 = 288;
pub const WEEKS: u64 = 5;
/// Windows after an event's end during which an alarm still counts for it (1 hour).
pub const TOLERANCE: u64 = 12;
/// The first week is training (the profile's first periods): not scored.
pub const TRAIN: u64 = 7 * PER_DAY;
const SIGNAL: &str = "gauge";

/// A labelled event: [start, start + len) in windows.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub start: u64,
    pub len: u64,
}

pub struct Gauge {
    pub name: String,
    pub kind: &'static str,
    pub values: Vec<f64>,
    pub events: Vec<Event>,
}

/// One series of `kind`; `with_event` adds its labelled event somewhere after training.
fn gauge(kind: &'static str, i: usize, with_event: bool, rng: &mut StdRng) -> Gauge {
    let n = WEEKS * 7 * PER_DAY;
    let n01 = Normal::new(0.0, 1.0).unwrap();
    let start = rng.random_range(TRAIN + PER_DAY..n - 3 * PER_DAY);
    let mut events = Vec::new();
    let mut values = Vec::with_capacity(n as usize);
    // Per kind: the event and the generator.
    let event = match kind {
        "mostly zero counts" => Event { start, len: 2 },
        "bursty counts" => Event { start, len: 6 },
        "quantised gauge" => Event { start, len: 12 },
        // A shift that persists to the end: alarm once (in its first 2 hours), then it is the
        // new normal — a later incident is a false one.
        "persistent level shift" => Event { start, len: 24 },
        // A holiday: a weekday (in week 3 or 4) with the traffic of a quiet Sunday.
        "weekly with a holiday" => {
            let day = (start / PER_DAY / 7) * 7 + 2; // a Wednesday
            Event {
                start: day * PER_DAY,
                len: PER_DAY,
            }
        }
        // A machine heating up over two days until it fails: the last day is labelled.
        "drift to failure" => Event {
            start: start + PER_DAY,
            len: PER_DAY,
        },
        _ => unreachable!(),
    };
    if with_event {
        events.push(event);
    }
    let inside = |w: u64| with_event && w >= event.start && w < event.start + event.len;
    for w in 0..n {
        let x = match kind {
            "mostly zero counts" => {
                let base = poisson(rng, 0.04 * daily(w, 0.5));
                if inside(w) {
                    base + 8.0
                } else {
                    base
                }
            }
            "bursty counts" => {
                let m = 30.0 * daily(w, 0.6) * if inside(w) { 5.0 } else { 1.0 };
                neg_binomial(rng, m, 2.0)
            }
            "quantised gauge" => {
                let x: f64 = 21.0 + 0.4 * n01.sample(rng) + if inside(w) { 3.0 } else { 0.0 };
                (x * 2.0).round() / 2.0
            }
            "persistent level shift" => {
                let level = if with_event && w >= event.start {
                    130.0
                } else {
                    100.0
                };
                level * daily(w, 0.2) + 3.0 * n01.sample(rng)
            }
            "weekly with a holiday" => {
                let dow = (w / PER_DAY) % 7;
                let weekend = dow >= 5 || inside(w);
                poisson(
                    rng,
                    300.0 * daily(w, 0.7) * if weekend { 0.35 } else { 1.0 },
                )
            }
            "drift to failure" => {
                // Slow monotone heating from the drift's start (two days before the failure),
                // +12 °C by the end; the machine is replaced after it.
                let drift_start = event.start - PER_DAY;
                let heat = if with_event && w >= drift_start && w < event.start + event.len {
                    12.0 * (w - drift_start) as f64 / (2 * PER_DAY) as f64
                } else {
                    0.0
                };
                60.0 + 2.0 * daily(w, 0.5) + heat + 0.8 * n01.sample(rng)
            }
            _ => unreachable!(),
        };
        values.push(x);
    }
    Gauge {
        name: format!("{kind} {i}{}", if with_event { "" } else { " (quiet)" }),
        kind,
        values,
        events,
    }
}

pub const KINDS: [&str; 6] = [
    "mostly zero counts",
    "bursty counts",
    "quantised gauge",
    "persistent level shift",
    "weekly with a holiday",
    "drift to failure",
];

/// The gauge suite: per kind, 4 series with an event and 4 quiet ones.
pub fn gauges(seed: u64) -> Vec<Gauge> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6a09_e667);
    let mut out = Vec::new();
    for kind in KINDS {
        for i in 0..4 {
            out.push(gauge(kind, i, true, &mut rng));
            out.push(gauge(kind, i, false, &mut rng));
        }
    }
    out
}

#[derive(Default, Debug)]
pub struct KindScore {
    pub events: u64,
    pub detected: u64,
    pub tp_incidents: u64,
    pub fp_incidents: u64,
    /// False incidents on the quiet series, and their scored weeks.
    pub quiet_fp: u64,
    pub quiet_weeks: f64,
    pub delays: Vec<u64>,
}

/// Runs the suite through one engine (default config but `signals`), scoring per kind.
pub fn run(data: &[Gauge], verbose: bool) -> BTreeMap<&'static str, KindScore> {
    let mut cfg = AnomalyConfig {
        signals: vec![SIGNAL.to_string()],
        ..Default::default()
    };
    cfg.directions.clear();
    let fcfg = ForecastConfig {
        enabled: false,
        ..Default::default()
    };
    let mut engine = AnomalyEngine::new(&cfg, &fcfg);
    let mut out: BTreeMap<&'static str, KindScore> = BTreeMap::new();
    for g in data {
        let k = key(&g.name);
        let mut opened = Vec::new();
        for (w, &x) in g.values.iter().enumerate() {
            let start = EPOCH0 + w as u64 * W5_NS;
            let (anoms, _) = engine.observe_value(SIGNAL, &k, start, start + W5_NS, x, 0.0);
            for a in anoms {
                if a.incident_state == IncidentState::Open {
                    opened.push(((a.window_start - EPOCH0) / W5_NS, a));
                }
            }
        }
        let s = out.entry(g.kind).or_default();
        let mut hit = vec![None::<u64>; g.events.len()];
        for (w, a) in &opened {
            if *w < TRAIN {
                continue;
            }
            match g
                .events
                .iter()
                .position(|e| *w >= e.start && *w < e.start + e.len + TOLERANCE)
            {
                Some(i) => {
                    s.tp_incidents += 1;
                    hit[i].get_or_insert(w - g.events[i].start);
                }
                None => {
                    s.fp_incidents += 1;
                    if g.events.is_empty() {
                        s.quiet_fp += 1;
                    }
                    if verbose {
                        println!(
                            "false incident: {} day {} {:02}:{:02} value {:.2} expected [{:.2}, {:.2}] score {:.7} z {:.1} by {}",
                            g.name,
                            w / PER_DAY,
                            (w % PER_DAY) / 12,
                            (w % 12) * 5,
                            a.value,
                            a.expected_min,
                            a.expected_max,
                            a.score.unwrap_or(f64::NAN),
                            a.z.unwrap_or(f64::NAN),
                            a.detector
                        );
                    }
                }
            }
        }
        if g.events.is_empty() {
            s.quiet_weeks += (g.values.len() as u64 - TRAIN) as f64 / (7 * PER_DAY) as f64;
        }
        for (e, h) in g.events.iter().zip(&hit) {
            s.events += 1;
            match h {
                Some(d) => {
                    s.detected += 1;
                    s.delays.push(*d);
                }
                None if verbose => println!("missed: {} at window {}", g.name, e.start),
                None => {}
            }
        }
    }
    out
}

/// `ANOMALY_QUALITY_GAUGE_TRACE=name:from_window:count` prints the default ensemble's decisions
/// for one gauge series (tuning aid).
pub fn trace(data: &[Gauge], spec: &str) {
    use redwatch_operators::anomaly::{DetectorParams, Observation, SignalDetector, SignalKind};
    let parts: Vec<&str> = spec.split(':').collect();
    let g = data.iter().find(|g| g.name == parts[0]).expect("series");
    let from: u64 = parts[1].parse().unwrap();
    let n: u64 = parts[2].parse().unwrap();
    let mut cfg = AnomalyConfig::default();
    cfg.directions.clear();
    let p = DetectorParams::new(&cfg);
    let mut det = SignalDetector::new(&p);
    let mut inc = redwatch_operators::anomaly::IncidentTracker::default();
    let policy = redwatch_operators::anomaly::IncidentPolicy {
        continue_p: 1.0 - cfg.clear_score,
        resolve_after: cfg.resolve_after_windows as u32,
        refractory: cfg.refractory_windows as u32,
    };
    let mut scratch = Vec::new();
    for (w, &x) in g.values.iter().enumerate() {
        let w = w as u64;
        let start = EPOCH0 + w * W5_NS;
        let o = Observation {
            value: x,
            t_mid: start + W5_NS / 2,
            calls: 0.0,
            window_s: 300.0,
        };
        let d = det.observe(
            &o,
            SignalKind::Generic,
            Default::default(),
            &p,
            inc.duration_windows(),
            &mut scratch,
        );
        let s = inc.window(
            d.anomalous,
            d.p,
            d.sustained,
            start,
            start + W5_NS,
            &policy,
            |_| [1; 16],
        );
        if w >= from && w < from + n {
            println!(
                "{w} {x:.2} {:?} {:?} {} p {:.2e} z {:.1} votes {} exp {:.1} [{:.1},{:.1}]",
                det.seasons(&p),
                s.map(|s| s.state),
                d.anomalous,
                d.p,
                d.z,
                d.votes,
                d.expected,
                d.expected_min,
                d.expected_max
            );
        }
    }
}
