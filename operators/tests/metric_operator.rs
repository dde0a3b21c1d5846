//! The metrics operator on hand-made streams with known answers: cumulative-to-delta with resets
//! and start times, late re-emission, exponential histograms across scales, summaries, the
//! cardinality limit with its overflow series, and series expiry.

use bytes::Bytes;
use redwatch_engine::metric_model::{MetricBatch, MetricKind, PointSpec, Temporality, ValueSpec};
use redwatch_engine::model::SourceId;
use redwatch_engine::pipeline::{OpContext, Operator};
use redwatch_engine::telemetry::Registry;
use redwatch_operators::layout::SpanSections;
use redwatch_operators::metrics::{MetricRow, MetricSeriesKey, MetricSink, MetricsOperator};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SEC;

#[derive(Default)]
struct Rows {
    rows: Mutex<Vec<MetricRow>>,
    expired: Mutex<Vec<Arc<MetricSeriesKey>>>,
}

impl MetricSink for Rows {
    fn on_final(&self, rows: &[MetricRow]) {
        self.rows.lock().unwrap().extend(rows.iter().cloned());
    }
    fn on_series_expired(&self, series: &[Arc<MetricSeriesKey>]) {
        self.expired.lock().unwrap().extend(series.iter().cloned());
    }
}

fn setup(limit: usize) -> (MetricsOperator, Arc<Rows>, Arc<Registry>) {
    let mut cfg = SpanSections::default();
    cfg.windows.size = Duration::from_secs(10);
    cfg.windows.allowed_lateness = Duration::from_secs(30);
    cfg.windows.rollups = vec![];
    cfg.red.cardinality_limit = limit;
    cfg.red.series_expiry = Duration::from_secs(60);
    let rows = Arc::new(Rows::default());
    let reg = Registry::new();
    let op = MetricsOperator::new(&cfg.windows, &cfg.red, vec![rows.clone()], &reg);
    (op, rows, reg)
}

fn spec<'a>(
    name: &'a str,
    kind: MetricKind,
    t: Temporality,
    start: u64,
    time: u64,
    value: ValueSpec<'a>,
) -> PointSpec<'a> {
    PointSpec {
        service: Some("svc"),
        origin: 1,
        name,
        unit: "1",
        kind,
        temporality: t,
        start,
        time,
        attrs: &[],
        value,
    }
}

fn feed(op: &mut MetricsOperator, points: &[PointSpec<'_>]) {
    let mut b = MetricBatch::new(SourceId(0), Bytes::new());
    for p in points {
        b.push_point(p).unwrap();
    }
    op.process_metrics(&b, T0);
}

fn counter(start: u64, time_s: u64, v: f64) -> PointSpec<'static> {
    spec(
        "requests",
        MetricKind::Counter,
        Temporality::Cumulative,
        start,
        T0 + time_s * SEC,
        ValueSpec::Number(v),
    )
}

#[test]
fn cumulative_counters_become_deltas_with_resets_and_start_times() {
    let (mut op, rows, _) = setup(100);
    let s1 = T0 - 100 * SEC;
    feed(
        &mut op,
        &[
            counter(s1, 1, 10.0),            // first point with a start time: 10 since start
            counter(s1, 2, 15.0),            // +5
            counter(s1, 1, 12.0),            // out of order: dropped
            counter(s1, 12, 4.0),            // value went down: reset, +4
            counter(T0 + 13 * SEC, 14, 2.0), // new start time: reset, +2
            counter(0, 15, 9.0),             // no start time on a known stream: +7
        ],
    );
    op.advance(T0 + 100 * SEC);
    let rows = rows.rows.lock().unwrap();
    let w: Vec<(u64, f64, f64, f64)> = rows
        .iter()
        .map(|r| {
            (
                (r.start - T0) / SEC,
                r.total.count,
                r.total.sum,
                r.total.last,
            )
        })
        .collect();
    assert_eq!(w, vec![(0, 2.0, 15.0, 15.0), (10, 3.0, 13.0, 9.0)]);
    assert_eq!(rows[1].total.min_value(), Some(2.0));
    assert_eq!(rows[1].total.max_value(), Some(7.0));
}

#[test]
fn a_first_cumulative_point_without_start_time_is_only_a_baseline() {
    let (mut op, rows, _) = setup(100);
    feed(&mut op, &[counter(0, 1, 100.0), counter(0, 3, 130.0)]);
    op.advance(T0 + 100 * SEC);
    let rows = rows.rows.lock().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].total.count, rows[0].total.sum), (1.0, 30.0));
    assert_eq!(rows[0].signal_value(), Some(30.0));
}

#[test]
fn late_points_within_lateness_re_emit_the_window_with_their_delta() {
    let (mut op, rows, _) = setup(100);
    let gauge = |t: u64, v: f64| {
        spec(
            "temp",
            MetricKind::Gauge,
            Temporality::Unspecified,
            0,
            T0 + t * SEC,
            ValueSpec::Number(v),
        )
    };
    feed(&mut op, &[gauge(1, 20.0), gauge(2, 22.0)]);
    op.advance(T0 + 15 * SEC);
    feed(&mut op, &[gauge(3, 30.0)]);
    op.advance(T0 + 16 * SEC);
    // Past the lateness: dropped.
    op.advance(T0 + 45 * SEC);
    feed(&mut op, &[gauge(4, 99.0)]);
    op.advance(T0 + 50 * SEC);
    let rows = rows.rows.lock().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0].first && !rows[1].first);
    let t = &rows[1].total;
    assert_eq!(
        (t.count, t.sum, t.last, t.max_value()),
        (3.0, 72.0, 30.0, Some(30.0))
    );
    let d = rows[1].delta.as_ref().unwrap();
    assert_eq!((d.count, d.sum), (1.0, 30.0));
}

#[test]
fn exponential_histograms_merge_across_scales_and_convert_from_cumulative() {
    let (mut op, rows, _) = setup(100);
    let exp = |t: u64, temporality, scale, counts: &'static [u64]| {
        spec(
            "size",
            MetricKind::ExponentialHistogram,
            temporality,
            T0 - SEC,
            T0 + t * SEC,
            ValueSpec::ExpHistogram {
                count: counts.iter().sum(),
                sum: Some(counts.iter().sum::<u64>() as f64),
                scale,
                zero_count: 0,
                positive_offset: 4,
                positive: counts,
                negative_offset: 0,
                negative: &[],
            },
        )
    };
    feed(
        &mut op,
        &[
            // Delta at scale 1: buckets 4..6.
            exp(1, Temporality::Delta, 1, &[1, 2, 3]),
            // Delta at scale 0: bucket 4 (= scale-1 buckets 8, 9).
            exp(2, Temporality::Delta, 0, &[10]),
        ],
    );
    op.advance(T0 + 100 * SEC);
    let rows = rows.rows.lock().unwrap();
    let e = rows[0].total.exp_histogram().unwrap();
    assert_eq!(e.scale, 0);
    // Scale 1 buckets 4,5 -> scale 0 bucket 2; 6 -> 3; plus 10 in bucket 4.
    assert_eq!(
        (e.positive.offset, e.positive.counts.clone()),
        (2, vec![3, 3, 10])
    );
    assert_eq!(rows[0].total.count, 16.0);
    drop(rows);

    let (mut op, rows, _) = setup(100);
    feed(
        &mut op,
        &[
            exp(1, Temporality::Cumulative, 1, &[1, 2, 3]),
            exp(2, Temporality::Cumulative, 1, &[2, 2, 5]),
        ],
    );
    op.advance(T0 + 100 * SEC);
    let rows = rows.rows.lock().unwrap();
    let e = rows[0].total.exp_histogram().unwrap();
    // First point from its start (6), then +3: bucket-wise 1+1, 2+0, 3+2.
    assert_eq!(e.positive.counts, vec![2, 2, 5]);
    assert_eq!(rows[0].total.count, 9.0);
}

#[test]
fn summaries_keep_the_newest_snapshot() {
    let (mut op, rows, _) = setup(100);
    let q = |t: u64, count: u64, qs: &'static [(f64, f64)]| {
        spec(
            "rpc",
            MetricKind::Summary,
            Temporality::Unspecified,
            0,
            T0 + t * SEC,
            ValueSpec::Summary {
                count,
                sum: count as f64 * 2.0,
                quantiles: qs,
            },
        )
    };
    feed(
        &mut op,
        &[
            q(3, 30, &[(0.0, 1.0), (0.5, 2.0), (1.0, 9.0)]),
            q(1, 10, &[(0.5, 1.0)]),
        ],
    );
    op.advance(T0 + 100 * SEC);
    let rows = rows.rows.lock().unwrap();
    let t = &rows[0].total;
    assert_eq!(
        (t.count, t.sum, t.min_value(), t.max_value()),
        (30.0, 60.0, Some(1.0), Some(9.0))
    );
    assert_eq!(t.summary().unwrap().quantiles.len(), 3);
}

#[test]
fn series_past_the_cardinality_limit_fold_into_the_overflow_series_of_their_kind() {
    let (mut op, rows, reg) = setup(2);
    let g = |name: &'static str, v: f64| {
        spec(
            name,
            MetricKind::Gauge,
            Temporality::Unspecified,
            0,
            T0 + SEC,
            ValueSpec::Number(v),
        )
    };
    feed(
        &mut op,
        &[g("a", 1.0), g("b", 2.0), g("c", 3.0), g("d", 4.0)],
    );
    feed(&mut op, &[counter(T0, 2, 5.0)]);
    op.advance(T0 + 100 * SEC);
    let rows = rows.rows.lock().unwrap();
    let overflow: Vec<_> = rows.iter().filter(|r| r.series.overflow).collect();
    assert_eq!(overflow.len(), 2);
    let gauge = overflow
        .iter()
        .find(|r| r.series.kind == MetricKind::Gauge)
        .unwrap();
    assert_eq!((gauge.total.count, gauge.total.sum), (2.0, 7.0));
    let c = overflow
        .iter()
        .find(|r| r.series.kind == MetricKind::Counter)
        .unwrap();
    assert_eq!(c.total.sum, 5.0);
    assert_eq!(reg.value("redwatch_metric_overflow_points_total", &[]), 3.0);
}

#[test]
fn idle_series_expire_once_their_windows_are_purged() {
    let (mut op, rows, reg) = setup(100);
    feed(&mut op, &[counter(T0, 1, 5.0)]);
    assert_eq!(op.series_and_streams(), (1, 1));
    let mut ctx = OpContext {
        now: T0 + 120 * SEC,
        watermark: T0 + 120 * SEC,
        metrics: &reg,
    };
    op.on_watermark(&mut ctx);
    op.on_tick(&mut ctx);
    assert_eq!(op.series_and_streams(), (0, 0));
    assert_eq!(rows.expired.lock().unwrap().len(), 1);
}
