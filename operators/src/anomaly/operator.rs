//! The anomaly operator: detection and forecasting downstream of the window operators, and the
//! anomaly stream it emits (docs/design.md, "Data flow").
//!
//! [`AnomalyOperator`] is a sink of closed windows — [`RedSink`] of the RED operator,
//! [`MetricSink`] of the metrics operator — so it runs on the operator task and sees each
//! series' windows once, in event-time order. It feeds the first final emission of every
//! primary window to the [`AnomalyEngine`] and hands what it raised, as one [`Signals`] batch,
//! to its output: a [`SignalStream`] whose subscribers ([`SignalSink`]s) are the exporters'
//! span encoders, the `anomalies`/`predictions` tables, the demo's board and any later operator
//! (e.g. correlation). It counts what it emits (`redwatch_anomalies_total`,
//! `redwatch_predictions_total`) and must not encode, store or send anything itself.
//!
//! The stream keeps nothing: each batch goes to every subscriber in subscription order before
//! the operator returns, so a subscriber that queues (the OTLP exporter) owns its bound.

use super::{AnomalyEngine, IncidentState};
use crate::anomaly::Anomaly;
use crate::anomaly::{AnomalyConfig, ForecastConfig};
use crate::forecast::Prediction;
use crate::metrics::{MetricRow, MetricSeriesKey, MetricSink};
use crate::red::RedConfig;
use crate::red::{Exemplars, RedRow, RedSink, SeriesKey};
use redwatch_engine::telemetry::{Counter, Registry};
use std::sync::{Arc, Mutex, RwLock};

/// What one batch of closed windows raised.
#[derive(Debug, Clone, Default)]
pub struct Signals {
    /// Anomalous windows and the windows that resolved incidents.
    pub anomalies: Vec<Anomaly>,
    /// The exemplars of each anomaly's window, in the order of `anomalies` (None for metric
    /// series and for gap-filled windows that had no row).
    pub exemplars: Vec<Option<Exemplars>>,
    pub predictions: Vec<Prediction>,
    /// The length of the window each prediction was made at, in the order of `predictions`.
    pub prediction_windows_ns: Vec<u64>,
}

impl Signals {
    /// What one row raised: its anomalies with `exemplars` of each, its predictions made at
    /// windows of `window_ns`.
    fn add(
        &mut self,
        anomalies: Vec<Anomaly>,
        exemplars: impl Fn(&Anomaly) -> Option<Exemplars>,
        predictions: Vec<Prediction>,
        window_ns: u64,
    ) {
        self.exemplars.extend(anomalies.iter().map(exemplars));
        self.anomalies.extend(anomalies);
        self.prediction_windows_ns
            .extend(predictions.iter().map(|_| window_ns));
        self.predictions.extend(predictions);
    }

    /// Nothing was raised.
    pub fn is_empty(&self) -> bool {
        self.anomalies.is_empty() && self.predictions.is_empty()
    }
}

/// A subscriber of the anomaly stream. Called on the operator task: it must not wait.
pub trait SignalSink: Send + Sync {
    /// One batch of anomalies and predictions (never empty).
    fn on_signals(&self, signals: &Signals);
    /// Series that were forgotten upstream (idle past the series expiry): their incidents and
    /// forecasts will not continue.
    fn on_series_expired(&self, _series: &[Arc<SeriesKey>]) {}
}

/// The anomaly stream: a fan-out of [`Signals`] to every subscriber, in subscription order.
/// Features subscribe while the engine is assembled; a later subscriber sees later batches.
#[derive(Default)]
pub struct SignalStream {
    subscribers: RwLock<Vec<Arc<dyn SignalSink>>>,
}

impl SignalStream {
    pub fn new() -> Arc<Self> {
        Arc::new(SignalStream::default())
    }

    /// Adds a subscriber.
    pub fn subscribe(&self, sink: Arc<dyn SignalSink>) {
        if let Ok(mut s) = self.subscribers.write() {
            s.push(sink);
        }
    }

    /// Number of subscribers.
    pub fn subscribers(&self) -> usize {
        self.subscribers.read().map(|s| s.len()).unwrap_or(0)
    }
}

impl SignalSink for SignalStream {
    fn on_signals(&self, signals: &Signals) {
        if let Ok(subs) = self.subscribers.read() {
            for s in subs.iter() {
                s.on_signals(signals);
            }
        }
    }

    fn on_series_expired(&self, series: &[Arc<SeriesKey>]) {
        if let Ok(subs) = self.subscribers.read() {
            for s in subs.iter() {
                s.on_series_expired(series);
            }
        }
    }
}

/// Anomaly detection and forecasting on closed RED and metric windows; see the module comment.
pub struct AnomalyOperator {
    detection: Mutex<AnomalyEngine>,
    output: Arc<dyn SignalSink>,
    /// Number of configured RED dimensions (metric series get as many empty values).
    dims: usize,
    registry: Arc<Registry>,
    predictions_total: Arc<Counter>,
}

impl AnomalyOperator {
    /// An operator for the `anomaly` and `forecast` sections (series shaped by `red`'s
    /// dimensions), emitting to `output`.
    pub fn new(
        anomaly: &AnomalyConfig,
        forecast: &ForecastConfig,
        red: &RedConfig,
        output: Arc<dyn SignalSink>,
        registry: &Arc<Registry>,
    ) -> Arc<Self> {
        let predictions_total = registry.counter(
            "redwatch_predictions_total",
            "Predictions emitted (metric_prediction spans).",
            &[],
        );
        Arc::new(AnomalyOperator {
            detection: Mutex::new(AnomalyEngine::new(anomaly, forecast)),
            output,
            dims: red.dimensions.len(),
            registry: registry.clone(),
            predictions_total,
        })
    }

    /// Counts and emits one batch.
    fn emit(&self, signals: Signals) {
        if signals.is_empty() {
            return;
        }
        for a in &signals.anomalies {
            self.count_anomaly(a);
        }
        self.predictions_total.add(signals.predictions.len() as u64);
        self.output.on_signals(&signals);
    }

    fn count_anomaly(&self, a: &Anomaly) {
        if a.incident_state == IncidentState::Resolved {
            return;
        }
        self.registry
            .counter(
                "redwatch_anomalies_total",
                "Anomalous windows detected, by signal and severity.",
                &[("signal", &a.signal), ("severity", a.severity.as_str())],
            )
            .inc();
    }

    /// Observes `rows` under the detection lock, then emits what they raised.
    fn observe_rows<'r, R: 'r>(
        &self,
        rows: impl Iterator<Item = &'r R>,
        mut observe: impl FnMut(&mut AnomalyEngine, &R, &mut Signals),
    ) {
        let mut out = Signals::default();
        {
            let Ok(mut detection) = self.detection.lock() else {
                return;
            };
            for r in rows {
                observe(&mut detection, r, &mut out);
            }
        }
        self.emit(out);
    }

    fn expire(&self, series: &[Arc<SeriesKey>]) {
        if let Ok(mut d) = self.detection.lock() {
            d.expire(series);
        }
        self.output.on_series_expired(series);
    }
}

/// Only the first final emission of a primary window is observed (docs/anomaly-detection.md).
fn observed(primary: bool, first: bool, is_final: bool) -> bool {
    primary && first && is_final
}

impl RedSink for AnomalyOperator {
    fn on_final(&self, rows: &[RedRow]) {
        let rows = rows
            .iter()
            .filter(|r| observed(r.primary, r.first, r.is_final));
        self.observe_rows(rows, |detection, r, out| {
            let (a, p) = detection.observe_red(r);
            // A gap-filled window had no row, hence no exemplars.
            let exemplars = |x: &Anomaly| (x.window_start == r.start).then_some(r.total.exemplars);
            out.add(a, exemplars, p, r.window_size_ns);
        });
    }

    fn on_series_expired(&self, series: &[Arc<SeriesKey>]) {
        self.expire(series);
    }
}

/// Metric series (docs/anomaly-detection.md): each first final primary row gives one value per
/// window ([`MetricRow::signal_value`]) to the detectors of the signal named like the metric
/// (list metric names in `anomaly.signals` / `forecast.signals` to watch them); what they find
/// goes out exactly like RED anomalies, without exemplars.
impl MetricSink for AnomalyOperator {
    fn on_final(&self, rows: &[MetricRow]) {
        let rows = rows
            .iter()
            .filter(|r| observed(r.primary, r.first, r.is_final));
        self.observe_rows(rows, |detection, r, out| {
            let Some(value) = r.signal_value() else {
                return;
            };
            let series = Arc::new(r.series.anomaly_series(self.dims));
            let (a, p) =
                detection.observe_value(&r.series.name, &series, r.start, r.end, value, 0.0);
            out.add(a, |_| None, p, r.window_size_ns);
        });
    }

    fn on_series_expired(&self, series: &[Arc<MetricSeriesKey>]) {
        let keys: Vec<_> = series
            .iter()
            .map(|s| Arc::new(s.anomaly_series(self.dims)))
            .collect();
        self.expire(&keys);
    }
}

#[cfg(test)]
#[path = "operator_tests.rs"]
mod tests;
