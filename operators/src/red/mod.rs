//! RED: rate, errors and duration per series and event-time window, as the Collector's
//! spanmetrics connector defines the series, plus quantiles from a mergeable sketch.
//!
//! The operator owns window state and series identities; it hands results to [`RedSink`]s
//! (Prometheus, live tables, the demo view) and never formats them itself.

mod aggregate;
mod config;
mod operator;
mod series;
mod shares;
pub mod sketch;
pub mod span_names;

pub use aggregate::{Buckets, Exemplar, Exemplars, RedAgg};
pub use config::{RedConfig, SpanNameRule, SpanNamesConfig};
pub use operator::{RedOperator, UNKNOWN_SERVICE};
pub use series::{Lookup, SeriesId, SeriesKey, SeriesRef, SeriesRegistry};
pub use shares::{ShareKey, NO_SHARE};

use redwatch_engine::model::UnixNanos;
use std::sync::Arc;

/// One RED result row: a series in a window of one window spec.
#[derive(Debug, Clone)]
pub struct RedRow {
    /// The window spec, as written in config (`10s`, `1m`).
    pub window_size: Arc<str>,
    pub window_size_ns: u64,
    /// Whether this row is of the primary window spec (whose deltas feed Prometheus and OTLP).
    pub primary: bool,
    pub start: UnixNanos,
    pub end: UnixNanos,
    pub series: Arc<SeriesKey>,
    /// The source Kafka partition of a share row (sinks that ask for shares,
    /// [`RedSink::wants_shares`]); `None` for spans received over OTLP and for merged rows.
    pub share: Option<u32>,
    /// False for a provisional row of a window still open.
    pub is_final: bool,
    /// True when this (window, series) row is emitted final for the first time; false on a late
    /// re-emission or a provisional row.
    pub first: bool,
    /// Everything the window has for the series.
    pub total: RedAgg,
    /// What this final emission adds to the earlier ones (None for provisional rows).
    pub delta: Option<RedAgg>,
}

impl RedRow {
    /// Spans per second over the window.
    pub fn rate_per_s(&self) -> f64 {
        self.total.total_calls() / (self.window_size_ns as f64 / 1e9)
    }

    /// Errors / calls (0 when there were no calls).
    pub fn error_ratio(&self) -> f64 {
        let c = self.total.total_calls();
        if c > 0.0 {
            self.total.errors() / c
        } else {
            0.0
        }
    }
}

/// Where RED results go. Called on the operator task: implementations must be quick
/// (update a map, push to a bounded queue) and must not block.
pub trait RedSink: Send + Sync {
    /// Final rows (first emissions and late re-emissions) of one window spec.
    fn on_final(&self, rows: &[RedRow]);
    /// Whether this sink takes one final row per (series, share) — the shares of a series kept
    /// apart per source Kafka partition (docs/kafka-exactness.md) — instead of one merged row
    /// per series.
    fn wants_shares(&self) -> bool {
        false
    }
    /// The current provisional rows of one window spec's open windows (replacing earlier ones).
    fn on_provisional(&self, _window_size_ns: u64, _rows: &[RedRow]) {}
    /// Series that were forgotten (idle past `red.series_expiry`).
    fn on_series_expired(&self, _series: &[Arc<SeriesKey>]) {}
}
