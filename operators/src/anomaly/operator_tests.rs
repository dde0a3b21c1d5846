//! Operator-level tests: closed windows in through the sink traits, the anomaly stream out.

use super::*;
use crate::anomaly::tests::{jitter, row};
use crate::metrics::{Contribution, MetricAgg};
use crate::red::Exemplar;
use redwatch_engine::metric_model::MetricKind;
use redwatch_engine::{SpanKind, StatusCode};

const W: u64 = 10_000_000_000;

/// A subscriber that keeps everything it is given.
#[derive(Default)]
struct Collect {
    batches: Mutex<Vec<Signals>>,
    expired: Mutex<Vec<Arc<SeriesKey>>>,
}

impl Collect {
    fn anomalies(&self) -> Vec<Anomaly> {
        let b = self.batches.lock().unwrap();
        b.iter().flat_map(|s| s.anomalies.clone()).collect()
    }
    fn predictions(&self) -> usize {
        let b = self.batches.lock().unwrap();
        b.iter().map(|s| s.predictions.len()).sum()
    }
}

impl SignalSink for Collect {
    fn on_signals(&self, s: &Signals) {
        assert!(!s.is_empty(), "an empty batch is not emitted");
        assert_eq!(s.anomalies.len(), s.exemplars.len());
        assert_eq!(s.predictions.len(), s.prediction_windows_ns.len());
        self.batches.lock().unwrap().push(s.clone());
    }
    fn on_series_expired(&self, series: &[Arc<SeriesKey>]) {
        self.expired.lock().unwrap().extend(series.iter().cloned());
    }
}

fn key() -> Arc<SeriesKey> {
    Arc::new(SeriesKey {
        service_name: Arc::from("payments"),
        span_name: Arc::from("POST /charge"),
        kind: SpanKind::Server,
        dims: Box::new([]),
        overflow: false,
    })
}

/// Window `i` of `series`: 200 calls of about `ms`, the slowest one offered as exemplar.
fn red_row(series: &Arc<SeriesKey>, i: u64, ms: f64) -> RedRow {
    let mut r = row(series, i, 200, 0, ms);
    r.total.exemplars.offer(
        StatusCode::Unset,
        Exemplar {
            trace_id: [i as u8; 16],
            span_id: [i as u8; 8],
            duration_ms: ms * 1.018,
        },
    );
    r
}

fn operator(cfg: &AnomalyConfig) -> (Arc<AnomalyOperator>, Arc<Collect>, Arc<Registry>) {
    let registry = Registry::new();
    let out = Arc::new(Collect::default());
    let stream = SignalStream::new();
    stream.subscribe(out.clone());
    let (forecast, red) = (ForecastConfig::default(), RedConfig::default());
    let op = AnomalyOperator::new(cfg, &forecast, &red, stream, &registry);
    (op, out, registry)
}

#[test]
fn a_latency_spike_is_emitted_with_its_window_exemplars_and_counted() {
    let (op, out, registry) = operator(&AnomalyConfig::default());
    let s = key();
    for i in 0..300u64 {
        let ms = if (250..255).contains(&i) {
            900.0
        } else {
            100.0 + 4.0 * jitter(i)
        };
        RedSink::on_final(&*op, &[red_row(&s, i, ms)]);
    }
    let got = out.anomalies();
    let p99: Vec<&Anomaly> = got
        .iter()
        .filter(|a| &*a.signal == "latency_p99_ms")
        .collect();
    assert!(!p99.is_empty(), "{got:?}");
    assert_eq!(p99[0].incident_state, IncidentState::Open);
    assert_eq!(p99[0].window_start, 250 * W);
    // The anomaly of window 250 carries that window's exemplar.
    let batches = out.batches.lock().unwrap();
    let first = batches
        .iter()
        .flat_map(|b| b.anomalies.iter().zip(&b.exemplars))
        .find(|(a, _)| a.window_start == 250 * W)
        .expect("the spike's window");
    let ex = first.1.expect("exemplars of the spike's window");
    assert_eq!(ex.slowest.map(|e| e.trace_id), Some([250; 16]));
    drop(batches);
    let alarms = got
        .iter()
        .filter(|a| a.incident_state != IncidentState::Resolved)
        .count();
    assert_eq!(registry.total("redwatch_anomalies_total"), alarms as f64);
    assert!(out.predictions() > 0, "default forecasting predicts");
    assert_eq!(
        registry.total("redwatch_predictions_total"),
        out.predictions() as f64
    );
}

#[test]
fn provisional_rollup_and_re_emitted_rows_emit_nothing() {
    let (op, out, _) = operator(&AnomalyConfig::default());
    let s = key();
    for i in 0..100u64 {
        RedSink::on_final(&*op, &[red_row(&s, i, 50.0)]);
    }
    let before = out.batches.lock().unwrap().len();
    let mut r = red_row(&s, 100, 5000.0);
    r.first = false;
    RedSink::on_final(&*op, std::slice::from_ref(&r));
    r.first = true;
    r.primary = false;
    RedSink::on_final(&*op, std::slice::from_ref(&r));
    r.primary = true;
    r.is_final = false;
    RedSink::on_final(&*op, std::slice::from_ref(&r));
    assert_eq!(out.batches.lock().unwrap().len(), before);
}

#[test]
fn the_stream_gives_every_subscriber_every_batch_and_forwards_expiry() {
    let stream = SignalStream::new();
    let (a, b) = (Arc::new(Collect::default()), Arc::new(Collect::default()));
    stream.subscribe(a.clone());
    stream.subscribe(b.clone());
    assert_eq!(stream.subscribers(), 2);
    let registry = Registry::new();
    let op = AnomalyOperator::new(
        &AnomalyConfig::default(),
        &ForecastConfig::default(),
        &RedConfig::default(),
        stream,
        &registry,
    );
    let s = key();
    for i in 0..60u64 {
        RedSink::on_final(&*op, &[red_row(&s, i, 50.0 + jitter(i))]);
    }
    let (na, nb) = (
        a.batches.lock().unwrap().len(),
        b.batches.lock().unwrap().len(),
    );
    assert!(na > 0);
    assert_eq!(na, nb, "every subscriber sees every batch");
    RedSink::on_series_expired(&*op, std::slice::from_ref(&s));
    assert_eq!(*a.expired.lock().unwrap(), vec![s.clone()]);
    assert_eq!(*b.expired.lock().unwrap(), vec![s]);
}

fn metric_row(key: &Arc<MetricSeriesKey>, w: u64, value: f64) -> MetricRow {
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

// Moved from the app's anomaly sink (its metric-series test); asserts what it asserted there.
#[test]
fn a_metric_named_in_anomaly_signals_is_watched_per_window() {
    let cfg = AnomalyConfig {
        signals: vec!["queue.depth".to_string()],
        ..AnomalyConfig::default()
    };
    let (op, out, registry) = operator(&cfg);
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
        MetricSink::on_final(&*op, &[metric_row(&key, t0 + w, 100.0 + 5.0 * noise)]);
    }
    assert_eq!(out.anomalies().len(), 0, "a steady series raises nothing");
    for w in 200..203u64 {
        MetricSink::on_final(&*op, &[metric_row(&key, t0 + w, 5000.0)]);
    }
    assert!(
        !out.anomalies().is_empty(),
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
    let b = out.batches.lock().unwrap();
    assert!(b.iter().flat_map(|s| &s.exemplars).all(Option::is_none));
}
