//! Metric windowing: OTLP metric points (every type and temporality) windowed in event time into
//! per-series rows — the `metric_points` table.
//!
//! Cumulative sums and histograms become deltas per stream ([`cumulative`]), deltas and gauge
//! readings merge into window aggregates ([`agg`]), series are interned with a cardinality limit
//! and expire when idle ([`series`]). The operator hands rows to [`MetricSink`]s and never
//! formats them; closed windows also feed anomaly detection through [`MetricRow::signal_value`].

mod agg;
mod convert;
mod cumulative;
mod exp_hist;
mod operator;
mod series;

pub use agg::{AggExt, Contribution, ExpBuckets, ExpHist, Hist, MetricAgg, SummarySnap};
pub use cumulative::{Delta, Last, Streams};
pub use operator::MetricsOperator;
pub use series::{
    MetricLookup, MetricSeriesId, MetricSeriesKey, MetricSeriesRef, MetricSeriesRegistry,
};

use redwatch_engine::metric_model::MetricKind;
use redwatch_engine::model::UnixNanos;
use std::sync::Arc;

/// One `metric_points` row: a series in a window of one window spec.
#[derive(Debug, Clone)]
pub struct MetricRow {
    /// The window spec, as written in config (`10s`, `1m`).
    pub window_size: Arc<str>,
    pub window_size_ns: u64,
    /// Whether this row is of the primary window spec.
    pub primary: bool,
    pub start: UnixNanos,
    pub end: UnixNanos,
    pub series: Arc<MetricSeriesKey>,
    /// False for a provisional row of a window still open.
    pub is_final: bool,
    /// True on the first final emission of this (window, series); false on a late re-emission
    /// or a provisional row.
    pub first: bool,
    /// Everything the window has for the series.
    pub total: MetricAgg,
    /// What this final emission adds to earlier ones (None for provisional rows).
    pub delta: Option<MetricAgg>,
}

impl MetricRow {
    /// The one value per window that anomaly detection and forecasting watch for this series:
    /// gauges their mean, sums their increase, histograms and summaries their mean observation.
    pub fn signal_value(&self) -> Option<f64> {
        let t = &self.total;
        match self.series.kind {
            MetricKind::Gauge => t.avg(),
            MetricKind::Counter | MetricKind::UpDownCounter => (t.count > 0.0).then_some(t.sum),
            MetricKind::Histogram | MetricKind::ExponentialHistogram | MetricKind::Summary => {
                t.avg()
            }
        }
    }
}

impl MetricSeriesKey {
    /// The series as anomaly detection names it (a RED-shaped key): the service (or
    /// `unknown_service`), `metric{k=v,...}` in place of the span name, no span kind, and
    /// `n_dims` empty dimension values. The signal itself is the metric name.
    pub fn anomaly_series(&self, n_dims: usize) -> crate::red::SeriesKey {
        use std::fmt::Write;
        let mut name = self.name.to_string();
        if !self.attrs.is_empty() {
            name.push('{');
            for (i, (k, v)) in self.attrs.iter().enumerate() {
                let sep = if i > 0 { "," } else { "" };
                let _ = write!(name, "{sep}{k}={v}");
            }
            name.push('}');
        }
        let empty: Arc<str> = Arc::from("");
        crate::red::SeriesKey {
            service_name: self
                .service_name
                .clone()
                .unwrap_or_else(|| Arc::from(crate::red::UNKNOWN_SERVICE)),
            span_name: Arc::from(name),
            kind: redwatch_engine::model::SpanKind::Unspecified,
            dims: vec![empty; n_dims].into_boxed_slice(),
            overflow: self.overflow,
        }
    }
}

/// Where metric rows go. Called on the operator task: implementations must be quick and must
/// not block.
pub trait MetricSink: Send + Sync {
    /// Final rows (first emissions and late re-emissions) of one window spec.
    fn on_final(&self, rows: &[MetricRow]);
    /// The current provisional rows of one window spec's open windows (replacing earlier ones).
    fn on_provisional(&self, _window_size_ns: u64, _rows: &[MetricRow]) {}
    /// Series that were forgotten (idle past the series expiry).
    fn on_series_expired(&self, _series: &[Arc<MetricSeriesKey>]) {}
}
