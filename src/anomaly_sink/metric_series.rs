//! Anomaly detection and forecasting on metric series (issue 7 item 5): the [`AnomalySink`]
//! also takes closed `metric_points` windows. Each first final primary row gives one value per
//! window ([`MetricRow::signal_value`]) to the detectors of the signal named like the metric
//! (list metric names in `anomaly.signals` / `forecast.signals` to watch them); what they find
//! goes out exactly like RED anomalies (spans, tables, the board), without exemplars.

use super::AnomalySink;
use redwatch_operators::forecast::Prediction;
use redwatch_operators::metrics::{MetricRow, MetricSeriesKey, MetricSink};
use std::sync::Arc;

impl MetricSink for AnomalySink {
    fn on_final(&self, rows: &[MetricRow]) {
        let mut anomalies = Vec::new();
        let mut predictions: Vec<(Prediction, u64)> = Vec::new();
        {
            let Ok(mut engine) = self.engine.lock() else {
                return;
            };
            for r in rows.iter().filter(|r| r.primary && r.first && r.is_final) {
                let Some(value) = r.signal_value() else {
                    continue;
                };
                let series = Arc::new(r.series.anomaly_series(self.dims.len()));
                let (a, p) =
                    engine.observe_value(&r.series.name, &series, r.start, r.end, value, 0.0);
                anomalies.extend(a);
                predictions.extend(p.into_iter().map(|p| (p, r.window_size_ns)));
            }
        }
        if anomalies.is_empty() && predictions.is_empty() {
            return;
        }
        for a in &anomalies {
            self.count_anomaly(a);
        }
        self.predictions_total.add(predictions.len() as u64);
        let mut spans: Vec<_> = anomalies
            .iter()
            .map(|a| self.anomaly_span(a, None))
            .collect();
        spans.extend(predictions.iter().map(|(p, w)| self.prediction_span(p, *w)));
        self.export(spans);
        let predictions: Vec<Prediction> = predictions.into_iter().map(|(p, _)| p).collect();
        self.anomalies.append(&anomalies);
        self.predictions.append(&predictions);
        self.board.record(&anomalies, &predictions);
    }

    fn on_series_expired(&self, series: &[Arc<MetricSeriesKey>]) {
        let keys: Vec<_> = series
            .iter()
            .map(|s| Arc::new(s.anomaly_series(self.dims.len())))
            .collect();
        if let Ok(mut e) = self.engine.lock() {
            e.expire(&keys);
        }
        self.board.expire(&keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redwatch_engine::config::Config;
    use redwatch_engine::metric_model::MetricKind;
    use redwatch_engine::telemetry::Registry;
    use redwatch_operators::metrics::{Contribution, MetricAgg};
    use redwatch_queries::anomalies::{AnomaliesTable, PredictionsTable};

    fn row(key: &Arc<MetricSeriesKey>, w: u64, value: f64) -> MetricRow {
        let mut total = MetricAgg::default();
        total.add(&Contribution::Number {
            value,
            last: value,
            time: w * 10_000_000_000 + 1,
            counted: true,
        });
        MetricRow {
            window_size: Arc::from("10s"),
            window_size_ns: 10_000_000_000,
            primary: true,
            start: w * 10_000_000_000,
            end: (w + 1) * 10_000_000_000,
            series: key.clone(),
            is_final: true,
            first: true,
            total,
            delta: None,
        }
    }

    #[test]
    fn a_metric_named_in_anomaly_signals_is_watched_per_window() {
        let mut cfg = Config::default();
        cfg.anomaly.signals = vec!["queue.depth".to_string()];
        let registry = Registry::new();
        let anomalies = AnomaliesTable::new(Default::default());
        let sink = AnomalySink::new(
            &cfg,
            None,
            anomalies.clone(),
            PredictionsTable::new(Default::default()),
            registry.clone(),
        );
        let key = Arc::new(MetricSeriesKey {
            name: Arc::from("queue.depth"),
            kind: MetricKind::Gauge,
            unit: Arc::from("1"),
            service_name: Some(Arc::from("worker")),
            attrs: Box::new([(Arc::from("queue"), Arc::from("emails"))]),
            bounds: None,
            overflow: false,
        });
        let t0 = 170_000_000;
        for w in 0..200u64 {
            let noise = ((w as f64 * 12.9898).sin() * 43758.5453).fract();
            MetricSink::on_final(&*sink, &[row(&key, t0 + w, 100.0 + 5.0 * noise)]);
        }
        assert_eq!(anomalies.rows(), 0, "a steady series raises nothing");
        for w in 200..203u64 {
            MetricSink::on_final(&*sink, &[row(&key, t0 + w, 5000.0)]);
        }
        assert!(
            anomalies.rows() > 0,
            "the spike is an anomaly of signal queue.depth"
        );
        let n = registry.value(
            "redwatch_anomalies_total",
            &[("signal", "queue.depth"), ("severity", "critical")],
        ) + registry.value(
            "redwatch_anomalies_total",
            &[("signal", "queue.depth"), ("severity", "high")],
        );
        assert!(n > 0.0, "counted under the metric's name");
    }
}
