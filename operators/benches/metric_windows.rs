//! Metric windowing throughput (points/s on one core) and state per series (criterion).
//!
//! `cargo bench -p redwatch-operators --bench metric_windows`
//!
//! 10 000 series (100 metric names x 100 attribute sets, one service); one element = one data
//! point through `MetricsOperator::process_metrics` plus the watermark advance that closes and
//! emits windows (into a sink that drops the rows). Batches of 1000 points, event time moving
//! forward, 10 s windows with a 1 m rollup (the defaults). Variants: gauges, cumulative counters
//! (cumulative-to-delta per stream), delta explicit histograms (16 buckets), cumulative
//! histograms. The memory figure (window state + series registry + cumulative streams per
//! series, from the operator's own accounting) is printed once at start.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use redwatch_engine::metric_model::{MetricBatch, MetricKind, PointSpec, Temporality, ValueSpec};
use redwatch_engine::model::SourceId;
use redwatch_engine::pipeline::Operator;
use redwatch_engine::telemetry::Registry;
use redwatch_operators::layout::SpanSections;
use redwatch_operators::metrics::{MetricRow, MetricSink, MetricsOperator};
use std::cell::Cell;
use std::sync::Arc;

const SERIES: usize = 10_000;
const BATCH: usize = 1000;
const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;
const BOUNDS: [f64; 15] = [
    0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0, 7500.0,
    10000.0,
];

struct Drop;
impl MetricSink for Drop {
    fn on_final(&self, rows: &[MetricRow]) {
        std::hint::black_box(rows.len());
    }
}

#[derive(Clone, Copy)]
enum Variant {
    Gauge,
    CumulativeCounter,
    DeltaHistogram,
    CumulativeHistogram,
}

fn names() -> (Vec<String>, Vec<String>) {
    (
        (0..100).map(|i| format!("app.metric.{i}")).collect(),
        (0..100).map(|i| format!("instance-{i}")).collect(),
    )
}

/// Batch number `round`: points `round*BATCH ..` of the series cycle, one second apart per
/// full cycle (so each series' points move forward in time).
fn batch(v: Variant, round: u64, names: &(Vec<String>, Vec<String>)) -> MetricBatch {
    let mut b = MetricBatch::new(SourceId(0), Bytes::new());
    for i in 0..BATCH as u64 {
        let n = round * BATCH as u64 + i;
        let s = (n % SERIES as u64) as usize;
        let cycle = n / SERIES as u64;
        let time = T0 + cycle * SEC + (s as u64) * 1000;
        let attrs = [("host", names.1[s % 100].as_str()), ("region", "eu")];
        let counts: [u64; 16] = std::array::from_fn(|j| (cycle + 1) * (j as u64 % 3 + 1));
        let (kind, temporality, value) = match v {
            Variant::Gauge => (
                MetricKind::Gauge,
                Temporality::Unspecified,
                ValueSpec::Number((n % 97) as f64),
            ),
            Variant::CumulativeCounter => (
                MetricKind::Counter,
                Temporality::Cumulative,
                ValueSpec::Number((cycle * 10 + 3) as f64),
            ),
            Variant::DeltaHistogram | Variant::CumulativeHistogram => (
                MetricKind::Histogram,
                if matches!(v, Variant::DeltaHistogram) {
                    Temporality::Delta
                } else {
                    Temporality::Cumulative
                },
                ValueSpec::Histogram {
                    count: counts.iter().sum(),
                    sum: Some(cycle as f64 * 100.0),
                    min: Some(1.0),
                    max: Some(9000.0),
                    bounds: &BOUNDS,
                    counts: &counts,
                },
            ),
        };
        let _ = b.push_point(&PointSpec {
            service: Some("checkout"),
            origin: 7,
            name: &names.0[s / 100],
            unit: "1",
            kind,
            temporality,
            start: T0 - 3600 * SEC,
            time,
            attrs: &attrs,
            value,
        });
    }
    b
}

fn operator() -> MetricsOperator {
    let cfg = SpanSections::default();
    let sink: Arc<dyn MetricSink> = Arc::new(Drop);
    MetricsOperator::new(&cfg.windows, &cfg.red, vec![sink], &Registry::new())
}

fn memory_per_series(names: &(Vec<String>, Vec<String>)) {
    for (label, v) in [
        ("gauge", Variant::Gauge),
        ("cumulative counter", Variant::CumulativeCounter),
        (
            "cumulative histogram (16 buckets)",
            Variant::CumulativeHistogram,
        ),
    ] {
        let mut op = operator();
        // Two full cycles: every series has state in one open window and a cumulative stream.
        for round in 0..(2 * SERIES / BATCH) as u64 {
            op.process_metrics(&batch(v, round, names), T0);
        }
        let s = op.snapshot();
        println!(
            "metric_windows/memory {label}: {} series, {} bytes state = {:.0} bytes/series",
            s.series,
            s.bytes,
            s.bytes as f64 / s.series.max(1) as f64
        );
    }
}

fn bench(c: &mut Criterion) {
    let names = names();
    memory_per_series(&names);
    let mut g = c.benchmark_group("metric_windows");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (label, v) in [
        ("gauge", Variant::Gauge),
        ("cumulative_counter", Variant::CumulativeCounter),
        ("delta_histogram", Variant::DeltaHistogram),
        ("cumulative_histogram", Variant::CumulativeHistogram),
    ] {
        let mut op = operator();
        let round = Cell::new(0u64);
        g.bench_function(label, |b| {
            b.iter_batched(
                || {
                    let r = round.get();
                    round.set(r + 1);
                    batch(v, r, &names)
                },
                |batch| {
                    op.process_metrics(&batch, T0);
                    if let Some(t) = batch.max_event_time() {
                        op.advance(t.saturating_sub(5 * SEC));
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
