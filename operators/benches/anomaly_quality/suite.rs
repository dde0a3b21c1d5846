//! The labelled synthetic suite: series specifications, their true parameters per window and
//! the noisy observations a RED pipeline would produce from them.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Binomial, Distribution, Normal, Poisson};
use redwatch_engine::SpanKind;
use redwatch_operators::red::SeriesKey;
use std::f64::consts::PI;
use std::sync::Arc;

pub const W_NS: u64 = 10_000_000_000;
pub const WINDOWS_PER_DAY: u64 = 8640;
pub const DAYS: u64 = 4;
/// Windows after an event's end during which an alarm still counts for it (5 minutes).
pub const TOLERANCE: u64 = 30;
/// An arbitrary Monday 00:00 UTC, so slots line up with days.
pub const EPOCH0: u64 = 1_767_571_200 * 1_000_000_000;
pub const SIGNALS: [&str; 4] = [
    "request_rate",
    "error_ratio",
    "latency_p50_ms",
    "latency_p99_ms",
];

#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// 1 + a·sin over the day, peak mid-afternoon.
    Smooth(f64),
    /// Smooth, plus ×`factor` from 09:00 to 17:00 with 15-minute ramps.
    BusinessHours(f64),
    /// Smooth, plus a ×3 batch burst 02:00–02:15 every night.
    NightlyBatch(f64),
}

#[derive(Debug, Clone, Copy)]
pub enum Kind {
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
    pub fn name(&self) -> &'static str {
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
pub struct Event {
    pub kind: Kind,
    pub start: u64,
    pub len: u64,
}

#[derive(Debug, Clone)]
pub struct SeriesSpec {
    pub name: String,
    pub group: &'static str,
    pub rate: f64,
    pub shape: Shape,
    pub p50_ms: f64,
    pub error_ratio: f64,
    pub events: Vec<Event>,
}

pub fn seasonal_factor(shape: Shape, w: u64) -> f64 {
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
pub fn truth(s: &SeriesSpec, w: u64) -> (f64, f64, f64, f64) {
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
pub struct Observer {
    pub rng: StdRng,
    /// Slow multiplicative wobbles (AR(1)) of traffic and latency: real series are
    /// overdispersed compared with pure counting noise.
    pub wobble_rate: f64,
    pub wobble_lat: f64,
}

impl Observer {
    pub fn observe(&mut self, s: &SeriesSpec, w: u64) -> [f64; 5] {
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
pub fn suite(seed: u64) -> Vec<SeriesSpec> {
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

pub fn key(name: &str) -> Arc<SeriesKey> {
    Arc::new(SeriesKey {
        service_name: Arc::from("suite"),
        span_name: Arc::from(name),
        kind: SpanKind::Server,
        dims: Box::new([]),
        overflow: false,
    })
}
