//! RED metrics over OTLP: a [`RedSink`] that turns each final window of the primary window spec
//! into `traces.span.metrics.calls` (monotonic Sum) and `traces.span.metrics.duration`
//! (explicit-bucket Histogram, unit `ms`, the configured buckets) data points, one per series
//! and status, in the spanmetrics connector's form ([`crate::spanmetrics`]), and queues them on
//! the OTLP exporter's metrics queue (batching, retries and drops are the exporter's).
//!
//! Temporality (`exporters.otlp.temporality`):
//! - `delta`: a point carries one emission's delta, start = the window's start, time = its end.
//!   A late re-emission of a window sends only what it adds (docs/design.md, "Time semantics"), with
//!   the same interval.
//! - `cumulative`: running totals per series and status, grown by each emission's delta, with a
//!   fixed start time (the start of the first window exported for the series) and time = the
//!   newest window end seen for the series (never moving backwards: a late update is stamped
//!   1 ms after the series' previous point). Totals are forgotten
//!   with the series (`on_series_expired`); a series that comes back starts again (a reset).
//!
//! Provisional rows and rollup windows never reach it. Sampling-weighted counts are rounded to
//! integers for histogram buckets (OTLP bucket counts are integers); the histogram count is
//! the sum of its rounded buckets, the calls Sum keeps the weighted value.

use super::OtlpExportHandle;
use crate::config::OtlpTemporality;
use crate::spanmetrics::{self, kv, RedPoint};
use hashbrown::HashMap;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use redwatch_engine::config::Dimension;
use redwatch_engine::model::StatusCode;
use redwatch_operators::red::{RedAgg, RedRow, RedSink, SeriesKey};
use std::sync::{Arc, Mutex};

/// How much later than the series' previous point a cumulative point of a late update is
/// stamped (its window ended before that point).
const LATE_STEP_NS: u64 = 1_000_000;

pub use crate::spanmetrics::{CALLS, DURATION};

/// Running totals of one series and status (cumulative temporality).
#[derive(Debug, Clone, Default)]
struct Totals {
    calls: f64,
    sum_ms: f64,
    /// Non-cumulative bucket counts, `bounds + 1` long (last = +Inf).
    buckets: Vec<f64>,
}

#[derive(Debug, Clone, Default)]
struct SeriesTotals {
    /// The fixed start time of the series' cumulative points.
    start: u64,
    /// The newest point time sent.
    last: u64,
    by_status: [Option<Totals>; 3],
}

/// One point pair to send: (series, status, interval, values).
struct Point<'a> {
    series: &'a SeriesKey,
    status: StatusCode,
    start: u64,
    time: u64,
    calls: f64,
    sum_ms: f64,
    buckets: &'a [f64],
}

/// The RED metrics sink of the OTLP exporter.
pub struct OtlpRedMetrics {
    exporter: OtlpExportHandle,
    temporality: OtlpTemporality,
    bounds: Vec<f64>,
    /// Attribute names of the configured dimensions.
    dim_names: Vec<String>,
    /// (series, status) pairs per queued record: two points each, `batch.max_size` points.
    pairs_per_record: usize,
    resource: Resource,
    scope: InstrumentationScope,
    totals: Mutex<HashMap<Arc<SeriesKey>, SeriesTotals>>,
}

impl OtlpRedMetrics {
    /// A sink sending to `exporter`; `bounds` = `red.buckets_ms`, `dims` = `red.dimensions`,
    /// `max_points` = `exporters.otlp.batch.max_size`.
    pub fn new(
        exporter: OtlpExportHandle,
        temporality: OtlpTemporality,
        bounds: Vec<f64>,
        dims: &[Dimension],
        max_points: usize,
    ) -> Arc<Self> {
        Arc::new(OtlpRedMetrics {
            exporter,
            temporality,
            bounds,
            dim_names: dims.iter().map(|d| d.name.clone()).collect(),
            pairs_per_record: (max_points / 2).max(1),
            resource: Resource {
                attributes: vec![kv("service.name", "redwatch")],
                ..Default::default()
            },
            scope: spanmetrics::scope(),
            totals: Mutex::new(HashMap::new()),
        })
    }

    /// Series with cumulative totals.
    pub fn series_count(&self) -> usize {
        self.totals.lock().map(|t| t.len()).unwrap_or(0)
    }

    /// The data point attributes of a series and status.
    fn attributes(
        &self,
        k: &SeriesKey,
        status: StatusCode,
    ) -> Vec<opentelemetry_proto::tonic::common::v1::KeyValue> {
        spanmetrics::with_status(&spanmetrics::series_attributes(k, &self.dim_names), status)
    }

    fn temporality(&self) -> AggregationTemporality {
        match self.temporality {
            OtlpTemporality::Delta => AggregationTemporality::Delta,
            OtlpTemporality::Cumulative => AggregationTemporality::Cumulative,
        }
    }

    /// One record holding the calls and duration points of `points`.
    fn record(&self, points: &[Point<'_>]) -> ResourceMetrics {
        let points: Vec<RedPoint> = points
            .iter()
            .map(|p| RedPoint {
                attributes: self.attributes(p.series, p.status),
                start: p.start,
                time: p.time,
                calls: p.calls,
                sum_ms: p.sum_ms,
                buckets: p.buckets.to_vec(),
                min_max: None,
            })
            .collect();
        ResourceMetrics {
            resource: Some(self.resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(self.scope.clone()),
                metrics: spanmetrics::metrics(&points, &self.bounds, self.temporality()).into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn send(&self, points: &[Point<'_>]) {
        for chunk in points.chunks(self.pairs_per_record) {
            self.exporter.export_metrics(self.record(chunk));
        }
    }

    fn delta_points<'a>(
        &self,
        rows: &'a [(&'a RedRow, &'a RedAgg)],
        buckets: &'a [Vec<f64>],
    ) -> Vec<Point<'a>> {
        let mut out = Vec::new();
        let mut b = buckets.iter();
        for (row, delta) in rows {
            for s in delta.statuses() {
                let Some(counts) = b.next() else { break };
                out.push(Point {
                    series: &row.series,
                    status: s,
                    start: row.start,
                    time: row.end,
                    calls: delta.calls[s as usize],
                    sum_ms: delta.sum_ms[s as usize],
                    buckets: counts,
                });
            }
        }
        out
    }
}

impl RedSink for OtlpRedMetrics {
    fn on_final(&self, rows: &[RedRow]) {
        let nb = self.bounds.len();
        let deltas: Vec<(&RedRow, &RedAgg)> = rows
            .iter()
            .filter(|r| r.primary && r.is_final)
            .filter_map(|r| r.delta.as_ref().map(|d| (r, d)))
            .filter(|(_, d)| d.total_calls() > 0.0)
            .collect();
        if deltas.is_empty() {
            return;
        }
        match self.temporality {
            OtlpTemporality::Delta => {
                let buckets: Vec<Vec<f64>> = deltas
                    .iter()
                    .flat_map(|(_, d)| d.statuses().map(move |s| d.bucket_counts(s, nb)))
                    .collect();
                let points = self.delta_points(&deltas, &buckets);
                self.send(&points);
            }
            OtlpTemporality::Cumulative => {
                // Snapshot the grown totals under the lock, build and queue outside it.
                let mut snap: Vec<(Arc<SeriesKey>, StatusCode, u64, u64, Totals)> = Vec::new();
                {
                    let Ok(mut map) = self.totals.lock() else {
                        return;
                    };
                    for (row, d) in &deltas {
                        let e = map
                            .entry(row.series.clone())
                            .or_insert_with(|| SeriesTotals {
                                start: row.start,
                                ..Default::default()
                            });
                        // Time never moves backwards, and a late update gets its own
                        // (later) time, so no two points of a series share one.
                        e.last = if row.end > e.last {
                            row.end
                        } else {
                            e.last + LATE_STEP_NS
                        };
                        for s in d.statuses() {
                            let t = e.by_status[s as usize].get_or_insert_with(|| Totals {
                                buckets: vec![0.0; nb + 1],
                                ..Default::default()
                            });
                            t.calls += d.calls[s as usize];
                            t.sum_ms += d.sum_ms[s as usize];
                            for (acc, add) in t.buckets.iter_mut().zip(d.bucket_counts(s, nb)) {
                                *acc += add;
                            }
                            snap.push((row.series.clone(), s, e.start, e.last, t.clone()));
                        }
                    }
                }
                let points: Vec<Point<'_>> = snap
                    .iter()
                    .map(|(k, s, start, time, t)| Point {
                        series: k,
                        status: *s,
                        start: *start,
                        time: *time,
                        calls: t.calls,
                        sum_ms: t.sum_ms,
                        buckets: &t.buckets,
                    })
                    .collect();
                self.send(&points);
            }
        }
    }

    fn on_series_expired(&self, series: &[Arc<SeriesKey>]) {
        if let Ok(mut map) = self.totals.lock() {
            for s in series {
                map.remove(s);
            }
        }
    }
}
