//! Cost of anomaly detection and forecasting per series-window (criterion).
//!
//! `cargo bench -p redwatch-operators --bench detector_cost`
//!
//! 1000 RED series, each warmed past its warm-up; one iteration feeds every series its next
//! 10 s window (the four RED signals through `observe_value`), so one element = one
//! series-window = four (series, signal) observations. Three variants: the default ensemble
//! alone, the default ensemble plus forecasting, and forecasting alone.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use redwatch_engine::SpanKind;
use redwatch_operators::anomaly::AnomalyEngine;
use redwatch_operators::anomaly::{AnomalyConfig, ForecastConfig};
use redwatch_operators::red::SeriesKey;
use std::hint::black_box;
use std::sync::Arc;

const SERIES: usize = 1000;
const W: u64 = 10_000_000_000;
const SIGNALS: [&str; 4] = [
    "request_rate",
    "error_ratio",
    "latency_p50_ms",
    "latency_p99_ms",
];

fn keys() -> Vec<Arc<SeriesKey>> {
    (0..SERIES)
        .map(|i| {
            Arc::new(SeriesKey {
                service_name: Arc::from(format!("svc-{}", i % 20)),
                span_name: Arc::from(format!("op-{i}")),
                kind: SpanKind::Server,
                dims: Box::new([]),
                overflow: false,
            })
        })
        .collect()
}

/// Deterministic noise in [-1, 1].
fn jitter(i: u64) -> f64 {
    ((i as f64 * 12.9898).sin() * 43758.5453).fract()
}

fn values(series: usize, w: u64) -> [f64; 5] {
    let j = jitter(w * 7919 + series as u64);
    let calls = 500.0 + 50.0 * j;
    [
        calls / 10.0,
        0.01 + 0.002 * j,
        40.0 * (1.0 + 0.05 * j),
        150.0 * (1.0 + 0.1 * j),
        calls,
    ]
}

fn feed(e: &mut AnomalyEngine, keys: &[Arc<SeriesKey>], w: u64) -> usize {
    let mut out = 0;
    for (s, k) in keys.iter().enumerate() {
        let v = values(s, w);
        for (i, sig) in SIGNALS.iter().enumerate() {
            let (a, p) = e.observe_value(sig, k, w * W, (w + 1) * W, v[i], v[4]);
            out += a.len() + p.len();
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let keys = keys();
    let mut g = c.benchmark_group("detector_cost");
    g.throughput(Throughput::Elements(SERIES as u64));
    let no_forecast = ForecastConfig {
        enabled: false,
        ..Default::default()
    };
    let no_detect = AnomalyConfig {
        enabled: false,
        ..Default::default()
    };
    let variants: [(&str, AnomalyConfig, ForecastConfig); 3] = [
        ("ensemble", AnomalyConfig::default(), no_forecast),
        (
            "ensemble+forecast",
            AnomalyConfig::default(),
            ForecastConfig::default(),
        ),
        ("forecast", no_detect, ForecastConfig::default()),
    ];
    for (name, cfg, fcfg) in variants {
        let mut e = AnomalyEngine::new(&cfg, &fcfg);
        let mut w = 0u64;
        while w < 200 {
            feed(&mut e, &keys, w);
            w += 1;
        }
        eprintln!(
            "{name}: {} bytes of state per series (4 signals)",
            e.state_bytes() / e.series_count().max(1)
        );
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    w += 1;
                    w
                },
                |w| black_box(feed(&mut e, &keys, w)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
