//! The anomaly sink: a [`RedSink`] that runs the [`AnomalyEngine`] on every first final
//! emission of a primary RED window and turns what it finds into signals — `anomaly_detected`
//! and `metric_prediction` spans for the OTLP exporter (DESIGN.md, "Anomaly and prediction
//! signals"), rows of the `anomalies` and `predictions` tables, `redwatch_anomalies_total` /
//! `redwatch_predictions_total`, and the board of open incidents the demo view shows.
//!
//! It runs on the operator task, so it only computes (a few µs per series), appends and
//! `try_send`s; it never waits for the exporter. Detection itself lives in
//! `redwatch-operators`; the wire, queue and retries in the connectors' `otlp_exporter`.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use redwatch_connectors::otlp_exporter::OtlpExportHandle;
use redwatch_engine::config::Config;
use redwatch_engine::telemetry::{Counter, Registry};
use redwatch_operators::anomaly::{Anomaly, AnomalyEngine, IncidentState, Severity};
use redwatch_operators::forecast::Prediction;
use redwatch_operators::red::{Exemplars, RedRow, RedSink, SeriesKey};
use redwatch_queries::anomalies::{hex, AnomaliesTable, PredictionsTable};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

// Metric series (issue 7 item 5): `impl MetricSink for AnomalySink`.
mod metric_series;

/// Name of the anomaly span.
pub const ANOMALY_SPAN: &str = "anomaly_detected";
/// Name of the anomaly span's event.
pub const ANOMALY_EVENT: &str = "anomaly_alert";
/// Name of the event of the span that marks an incident resolved.
pub const RESOLVED_EVENT: &str = "anomaly_resolved";
/// Name of the prediction span.
pub const PREDICTION_SPAN: &str = "metric_prediction";
/// Name of the prediction span's event when a trend change is predicted.
pub const TREND_EVENT: &str = "trend_change_predicted";

/// Open incidents and the latest prediction per series and signal, for the live view.
#[derive(Debug, Default)]
pub struct AnomalyBoard {
    state: Mutex<BoardState>,
}

#[derive(Debug, Default)]
struct BoardState {
    open: HashMap<[u8; 16], Anomaly>,
    forecasts: HashMap<(Arc<SeriesKey>, Arc<str>), Prediction>,
}

impl AnomalyBoard {
    /// The newest record of each open incident, worst first (at most `n`).
    pub fn open(&self, n: usize) -> Vec<Anomaly> {
        let Ok(st) = self.state.lock() else {
            return Vec::new();
        };
        let mut v: Vec<Anomaly> = st.open.values().cloned().collect();
        v.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(
                    a.p_value
                        .unwrap_or(1.0)
                        .total_cmp(&b.p_value.unwrap_or(1.0)),
                )
                .then(a.series.cmp(&b.series))
        });
        v.truncate(n);
        v
    }

    /// Open incidents.
    pub fn open_count(&self) -> usize {
        self.state.lock().map(|s| s.open.len()).unwrap_or(0)
    }

    /// The latest predictions that say something: a predicted threshold crossing first (soonest
    /// first), then trend changes (largest relative change first); at most `n`.
    pub fn notable_forecasts(&self, n: usize) -> Vec<Prediction> {
        let Ok(st) = self.state.lock() else {
            return Vec::new();
        };
        let mut v: Vec<Prediction> = st
            .forecasts
            .values()
            .filter(|p| p.trend_change || p.time_to_threshold_ms.is_some())
            .cloned()
            .collect();
        let change = |p: &Prediction| {
            let mid = (p.lower + p.upper) / 2.0;
            ((p.value - mid).abs() / mid.abs().max(1e-9)).min(1e9)
        };
        v.sort_by(|a, b| {
            a.time_to_threshold_ms
                .unwrap_or(u64::MAX)
                .cmp(&b.time_to_threshold_ms.unwrap_or(u64::MAX))
                .then(change(b).total_cmp(&change(a)))
                .then(a.series.cmp(&b.series))
        });
        v.truncate(n);
        v
    }

    fn record(&self, anomalies: &[Anomaly], predictions: &[Prediction]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        for a in anomalies {
            if a.incident_state == IncidentState::Resolved {
                st.open.remove(&a.incident_id);
            } else {
                st.open.insert(a.incident_id, a.clone());
            }
        }
        for p in predictions {
            st.forecasts
                .insert((p.series.clone(), p.signal.clone()), p.clone());
        }
    }

    fn expire(&self, series: &[Arc<SeriesKey>]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        st.open.retain(|_, a| !series.contains(&a.series));
        st.forecasts.retain(|(s, _), _| !series.contains(s));
    }
}

/// A second destination of anomaly and prediction spans (the Kafka sink).
pub type SpanOutput = Box<dyn Fn(ResourceSpans) + Send + Sync>;

/// The [`RedSink`] running anomaly detection and forecasting.
pub struct AnomalySink {
    engine: Mutex<AnomalyEngine>,
    exporter: Option<OtlpExportHandle>,
    also: std::sync::OnceLock<SpanOutput>,
    anomalies: Arc<AnomaliesTable>,
    predictions: Arc<PredictionsTable>,
    board: Arc<AnomalyBoard>,
    registry: Arc<Registry>,
    predictions_total: Arc<Counter>,
    dims: Vec<String>,
    resource: Resource,
    scope: InstrumentationScope,
}

impl AnomalySink {
    /// A sink for `cfg`'s `anomaly` and `forecast` sections. `exporter`: where spans go
    /// (None = no OTLP export; tables and metrics are still fed).
    pub fn new(
        cfg: &Config,
        exporter: Option<OtlpExportHandle>,
        anomalies: Arc<AnomaliesTable>,
        predictions: Arc<PredictionsTable>,
        registry: Arc<Registry>,
    ) -> Arc<Self> {
        let predictions_total = registry.counter(
            "redwatch_predictions_total",
            "Predictions emitted (metric_prediction spans).",
            &[],
        );
        Arc::new(AnomalySink {
            engine: Mutex::new(AnomalyEngine::new(&cfg.anomaly, &cfg.forecast)),
            exporter,
            also: std::sync::OnceLock::new(),
            anomalies,
            predictions,
            board: Arc::new(AnomalyBoard::default()),
            registry,
            predictions_total,
            dims: cfg.red.dimensions.iter().map(|d| d.name.clone()).collect(),
            resource: Resource {
                attributes: vec![kv_str("service.name", "redwatch")],
                ..Default::default()
            },
            scope: InstrumentationScope {
                name: "redwatch".to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                ..Default::default()
            },
        })
    }

    /// Open incidents and forecasts, for the live view.
    pub fn board(&self) -> Arc<AnomalyBoard> {
        self.board.clone()
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

    /// Sends the spans to a second output too (the Kafka sink); set once, before the pipeline
    /// runs.
    pub fn also_export_to(&self, output: SpanOutput) {
        let _ = self.also.set(output);
    }

    fn export(&self, spans: Vec<Span>) {
        let also = self.also.get();
        if self.exporter.is_none() && also.is_none() {
            return;
        }
        // One span per queued record: `queue_size` counts spans, and the exporter merges the
        // shared resource back into one per request.
        for s in spans {
            let rs = ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(self.scope.clone()),
                    spans: vec![s],
                    ..Default::default()
                }],
                ..Default::default()
            };
            if let Some(a) = also {
                a(rs.clone());
            }
            if let Some(x) = &self.exporter {
                x.export_spans(rs);
            }
        }
    }

    /// The series' identity as span attributes.
    fn series_attrs(&self, s: &SeriesKey, out: &mut Vec<KeyValue>) {
        out.push(kv_str("service.name.observed", &s.service_name));
        out.push(kv_str("span.name.observed", &s.span_name));
        out.push(kv_str("span.kind.observed", s.kind.as_label()));
        for (name, v) in self.dims.iter().zip(s.dims.iter()) {
            if !v.is_empty() {
                out.push(kv_str(&format!("{name}.observed"), v));
            }
        }
    }

    /// The `anomaly_detected` span of one anomalous window, linked to the window's exemplar
    /// spans (slowest, slowest failed) when known.
    pub fn anomaly_span(&self, a: &Anomaly, exemplars: Option<&Exemplars>) -> Span {
        let mut attrs = vec![
            kv_str("anomaly.signal", &a.signal),
            kv_f64("anomaly.value", a.value),
            kv_f64("anomaly.expected_min", a.expected_min),
            kv_f64("anomaly.expected_max", a.expected_max),
            kv_str("anomaly.severity", a.severity.as_str()),
            kv_str("anomaly.detector", a.detector),
            kv_str("anomaly.incident_id", &hex(&a.incident_id)),
            kv_str("anomaly.incident_state", a.incident_state.as_str()),
        ];
        // The calibrated score and the raw statistics behind it; a `resolved` record carries
        // none of them (it is no alarm). See docs/anomaly-detection.md.
        if let Some(score) = a.score {
            attrs.push(kv_f64("anomaly.score", score));
        }
        if let Some(p) = a.p_value {
            attrs.push(kv_f64("anomaly.p_value", p));
        }
        if let Some(z) = a.z {
            attrs.push(kv_f64("anomaly.z", z));
            attrs.push(kv_i64("anomaly.votes", a.votes as i64));
        }
        let resolved = a.incident_state == IncidentState::Resolved;
        if resolved {
            // The final span of an incident: how long it lasted (first anomalous window's start
            // to the last one's end) and how many windows were anomalous.
            attrs.push(kv_i64(
                "anomaly.incident_duration_ms",
                (a.incident_duration_ns / 1_000_000).min(i64::MAX as u64) as i64,
            ));
            attrs.push(kv_i64(
                "anomaly.incident_windows",
                a.incident_windows as i64,
            ));
        }
        self.series_attrs(&a.series, &mut attrs);
        // One incident = one trace: the trace id is the incident id; its first window is the
        // root span and later windows are its children, the resolving (calm) window last.
        let root = span_id(&a.incident_id, u64::MAX);
        let (id, parent) = if a.incident_state == IncidentState::Open {
            (root, Vec::new())
        } else {
            (span_id(&a.incident_id, a.window_start), root.to_vec())
        };
        // A resolved incident is over: its final span is not an error whatever its peak.
        let error = a.severity >= Severity::High && !resolved;
        let mut links: Vec<Link> = Vec::new();
        if let Some(x) = exemplars.filter(|_| !resolved) {
            for (kind, e) in [("slowest", x.slowest), ("failed", x.failed)] {
                let Some(e) = e else { continue };
                if let Some(l) = links.iter_mut().find(|l| l.span_id == e.span_id) {
                    l.attributes.push(kv_str("exemplar.kind", kind));
                    continue;
                }
                links.push(Link {
                    trace_id: e.trace_id.to_vec(),
                    span_id: e.span_id.to_vec(),
                    attributes: vec![
                        kv_str("exemplar.kind", kind),
                        kv_f64("exemplar.duration_ms", e.duration_ms),
                    ],
                    ..Default::default()
                });
            }
        }
        Span {
            links,
            trace_id: a.incident_id.to_vec(),
            span_id: id.to_vec(),
            parent_span_id: parent,
            name: ANOMALY_SPAN.to_string(),
            kind: SpanKind::Internal as i32,
            start_time_unix_nano: a.window_start,
            end_time_unix_nano: a.window_end,
            events: vec![Event {
                time_unix_nano: a.window_end,
                name: if resolved {
                    RESOLVED_EVENT
                } else {
                    ANOMALY_EVENT
                }
                .to_string(),
                attributes: attrs.clone(),
                ..Default::default()
            }],
            attributes: attrs,
            status: Some(Status {
                code: if error {
                    StatusCode::Error as i32
                } else if resolved {
                    StatusCode::Ok as i32
                } else {
                    StatusCode::Unset as i32
                },
                message: if error {
                    format!(
                        "{} {} anomaly on {} {}",
                        a.severity.as_str(),
                        a.signal,
                        a.series.service_name,
                        a.series.span_name
                    )
                } else {
                    String::new()
                },
            }),
            ..Default::default()
        }
    }

    /// The `metric_prediction` span of one prediction (its time: the window it was made at).
    pub fn prediction_span(&self, p: &Prediction, window_ns: u64) -> Span {
        let mut attrs = vec![
            kv_str("prediction.signal", &p.signal),
            kv_f64("prediction.value", p.value),
            kv_f64("prediction.lower", p.lower),
            kv_f64("prediction.upper", p.upper),
            kv_f64("prediction.confidence", p.confidence),
            kv_i64(
                "prediction.horizon_ms",
                p.horizon_ms.min(i64::MAX as u64) as i64,
            ),
            kv_str("prediction.method", p.method),
            kv_bool("prediction.trend_change", p.trend_change),
        ];
        if let Some(t) = p.time_to_threshold_ms {
            attrs.push(kv_i64(
                "prediction.time_to_threshold_ms",
                t.min(i64::MAX as u64) as i64,
            ));
        }
        self.series_attrs(&p.series, &mut attrs);
        let mut h = Fnv::new();
        h.eat(p.series.service_name.as_bytes());
        h.eat(p.series.span_name.as_bytes());
        h.eat(&[p.series.kind as u8]);
        for d in p.series.dims.iter() {
            h.eat(d.as_bytes());
        }
        h.eat(p.signal.as_bytes());
        h.eat(&p.window_end.to_le_bytes());
        let a = h.finish();
        h.eat(b"trace");
        let b = h.finish();
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&a.to_be_bytes());
        trace_id[8..].copy_from_slice(&b.to_be_bytes());
        let events = if p.trend_change {
            vec![Event {
                time_unix_nano: p.window_end,
                name: TREND_EVENT.to_string(),
                attributes: attrs.clone(),
                ..Default::default()
            }]
        } else {
            Vec::new()
        };
        Span {
            trace_id: trace_id.to_vec(),
            span_id: nonzero(a ^ b.rotate_left(17)).to_be_bytes().to_vec(),
            name: PREDICTION_SPAN.to_string(),
            kind: SpanKind::Internal as i32,
            start_time_unix_nano: p.window_end.saturating_sub(window_ns),
            end_time_unix_nano: p.window_end,
            attributes: attrs,
            events,
            status: Some(Status::default()),
            ..Default::default()
        }
    }
}

impl RedSink for AnomalySink {
    fn on_final(&self, rows: &[RedRow]) {
        let mut anomalies = Vec::new();
        // The exemplars of each anomaly's window (None for gap-filled windows without a row).
        let mut exemplars: Vec<Option<Exemplars>> = Vec::new();
        let mut predictions: Vec<(Prediction, u64)> = Vec::new();
        {
            let Ok(mut engine) = self.engine.lock() else {
                return;
            };
            for r in rows.iter().filter(|r| r.primary && r.first && r.is_final) {
                let (a, p) = engine.observe_red(r);
                for x in &a {
                    exemplars.push((x.window_start == r.start).then_some(r.total.exemplars));
                }
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
        // Every record becomes a span, the resolving one too (it closes the incident's trace).
        let mut spans: Vec<Span> = anomalies
            .iter()
            .zip(&exemplars)
            .map(|(a, x)| self.anomaly_span(a, x.as_ref()))
            .collect();
        spans.extend(predictions.iter().map(|(p, w)| self.prediction_span(p, *w)));
        self.export(spans);
        let predictions: Vec<Prediction> = predictions.into_iter().map(|(p, _)| p).collect();
        self.anomalies.append(&anomalies);
        self.predictions.append(&predictions);
        self.board.record(&anomalies, &predictions);
    }

    fn on_series_expired(&self, series: &[Arc<SeriesKey>]) {
        if let Ok(mut e) = self.engine.lock() {
            e.expire(series);
        }
        self.board.expire(series);
    }
}

/// The span id of the window starting at `window_start` in an incident (`u64::MAX`: the
/// incident's root span).
fn span_id(incident: &[u8; 16], window_start: u64) -> [u8; 8] {
    let mut h = Fnv::new();
    h.eat(incident);
    h.eat(&window_start.to_le_bytes());
    nonzero(h.finish()).to_be_bytes()
}

fn nonzero(x: u64) -> u64 {
    if x == 0 {
        1
    } else {
        x
    }
}

/// FNV-1a, with a final avalanche so nearby inputs give unrelated ids.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn eat(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
    }
    fn finish(&self) -> u64 {
        // splitmix64 finaliser
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn kv_str(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.to_string()))
}

fn kv_f64(key: &str, v: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(v))
}

fn kv_i64(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

fn kv_bool(key: &str, v: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use redwatch_engine::model::SpanKind as Kind;

    fn sink() -> Arc<AnomalySink> {
        AnomalySink::new(
            &Config::default(),
            None,
            AnomaliesTable::new(Default::default()),
            PredictionsTable::new(Default::default()),
            Registry::new(),
        )
    }

    fn anomaly(state: IncidentState, start: u64, sev: Severity) -> Anomaly {
        Anomaly {
            signal: "latency_p99_ms".into(),
            series: Arc::new(SeriesKey {
                service_name: "cart".into(),
                span_name: "GET /cart".into(),
                kind: Kind::Server,
                dims: Box::new([]),
                overflow: false,
            }),
            value: 800.0,
            expected_min: 10.0,
            expected_max: 40.0,
            severity: sev,
            // A resolved record carries no alarm score (the engine's contract).
            score: (state != IncidentState::Resolved).then_some(0.999_999_99),
            p_value: (state != IncidentState::Resolved).then_some(1e-8),
            z: (state != IncidentState::Resolved).then_some(9.5),
            votes: 2,
            detector: "robust_z+ewma",
            window_start: start,
            window_end: start + 1_000_000_000,
            incident_id: [9; 16],
            incident_state: state,
            incident_start: 1_000_000_000,
            incident_duration_ns: start,
            incident_windows: 2,
        }
    }

    fn attr<'a>(s: &'a [KeyValue], k: &str) -> Option<&'a any_value::Value> {
        s.iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    #[test]
    fn anomaly_spans_of_one_incident_share_the_trace_and_hang_off_the_first() {
        let s = sink();
        let mut ex = Exemplars::default();
        let e = |id: u8, ms: f64| redwatch_operators::red::Exemplar {
            trace_id: [id; 16],
            span_id: [id; 8],
            duration_ms: ms,
        };
        ex.offer(redwatch_engine::model::StatusCode::Error, e(1, 900.0));
        ex.offer(redwatch_engine::model::StatusCode::Unset, e(2, 50.0));
        let open = s.anomaly_span(
            &anomaly(IncidentState::Open, 1_000_000_000, Severity::Medium),
            Some(&ex),
        );
        assert_eq!(open.links.len(), 1, "slowest and failed are the same span");
        assert_eq!(open.links[0].trace_id, vec![1; 16]);
        assert_eq!(open.links[0].attributes.len(), 3);
        let next = s.anomaly_span(
            &anomaly(IncidentState::Ongoing, 2_000_000_000, Severity::High),
            None,
        );
        assert!(next.links.is_empty());
        assert_eq!(open.trace_id, vec![9; 16]);
        assert_eq!(next.trace_id, open.trace_id);
        assert!(open.parent_span_id.is_empty());
        assert_eq!(next.parent_span_id, open.span_id);
        assert_ne!(next.span_id, open.span_id);
        assert_eq!(open.name, ANOMALY_SPAN);
        assert_eq!(open.kind, SpanKind::Internal as i32);
        assert_eq!(open.status.as_ref().unwrap().code, StatusCode::Unset as i32);
        assert_eq!(next.status.as_ref().unwrap().code, StatusCode::Error as i32);
        assert_eq!(
            (open.start_time_unix_nano, open.end_time_unix_nano),
            (1_000_000_000, 2_000_000_000)
        );
        for k in [
            "anomaly.signal",
            "anomaly.value",
            "anomaly.expected_min",
            "anomaly.expected_max",
            "anomaly.severity",
            "anomaly.score",
            "anomaly.p_value",
            "anomaly.z",
            "anomaly.votes",
            "anomaly.detector",
            "anomaly.incident_id",
            "service.name.observed",
            "span.name.observed",
        ] {
            assert!(attr(&open.attributes, k).is_some(), "{k}");
            assert!(attr(&open.events[0].attributes, k).is_some(), "event {k}");
        }
        assert_eq!(open.events[0].name, ANOMALY_EVENT);
        assert_eq!(
            attr(&open.attributes, "anomaly.incident_id"),
            Some(&any_value::Value::StringValue("09".repeat(16)))
        );
    }

    #[test]
    fn resolved_incident_ends_its_trace_with_a_resolved_span() {
        let s = sink();
        let open = s.anomaly_span(
            &anomaly(IncidentState::Open, 1_000_000_000, Severity::High),
            None,
        );
        let mut ex = Exemplars::default();
        ex.offer(
            redwatch_engine::model::StatusCode::Unset,
            redwatch_operators::red::Exemplar {
                trace_id: [3; 16],
                span_id: [3; 8],
                duration_ms: 5.0,
            },
        );
        let r = s.anomaly_span(
            &anomaly(IncidentState::Resolved, 5_000_000_000, Severity::Critical),
            Some(&ex),
        );
        assert_eq!(r.name, ANOMALY_SPAN);
        assert_eq!(r.trace_id, open.trace_id);
        assert_eq!(r.parent_span_id, open.span_id);
        assert_ne!(r.span_id, open.span_id);
        assert!(
            r.links.is_empty(),
            "a calm window's exemplars are not the incident's"
        );
        assert_eq!(r.status.as_ref().unwrap().code, StatusCode::Ok as i32);
        assert_eq!(
            attr(&r.attributes, "anomaly.incident_state"),
            Some(&any_value::Value::StringValue("resolved".into()))
        );
        assert_eq!(
            attr(&r.attributes, "anomaly.incident_duration_ms"),
            Some(&any_value::Value::IntValue(5_000))
        );
        assert_eq!(
            attr(&r.attributes, "anomaly.incident_windows"),
            Some(&any_value::Value::IntValue(2))
        );
        assert_eq!(r.events[0].name, RESOLVED_EVENT);
        assert!(attr(&open.attributes, "anomaly.incident_duration_ms").is_none());
        // No alarm score on the resolving record, nor the raw statistics of its calm window.
        for k in [
            "anomaly.score",
            "anomaly.p_value",
            "anomaly.z",
            "anomaly.votes",
        ] {
            assert!(attr(&r.attributes, k).is_none(), "{k} on a resolved span");
        }
        assert_eq!(
            attr(&r.attributes, "anomaly.severity"),
            Some(&any_value::Value::StringValue("critical".into())),
            "the incident's peak severity"
        );
    }

    #[test]
    fn prediction_span_carries_interval_and_trend_event() {
        let s = sink();
        let a = anomaly(IncidentState::Open, 0, Severity::Low);
        let p = Prediction {
            signal: "request_rate".into(),
            series: a.series.clone(),
            value: 50.0,
            lower: 40.0,
            upper: 60.0,
            confidence: 0.95,
            horizon_ms: 300_000,
            method: "holt",
            trend_change: true,
            time_to_threshold_ms: Some(120_000),
            window_end: 10_000_000_000,
        };
        let sp = s.prediction_span(&p, 1_000_000_000);
        assert_eq!(sp.name, PREDICTION_SPAN);
        assert_eq!(sp.events[0].name, TREND_EVENT);
        assert_eq!(
            attr(&sp.attributes, "prediction.time_to_threshold_ms"),
            Some(&any_value::Value::IntValue(120_000))
        );
        assert_eq!(
            attr(&sp.attributes, "prediction.horizon_ms"),
            Some(&any_value::Value::IntValue(300_000))
        );
        assert_eq!(sp.trace_id.len(), 16);
        assert_eq!(sp.span_id.len(), 8);
        let board = s.board();
        board.record(std::slice::from_ref(&a), &[p]);
        assert_eq!(board.open_count(), 1);
        assert_eq!(board.notable_forecasts(5).len(), 1);
        board.record(&[anomaly(IncidentState::Resolved, 5, Severity::Low)], &[]);
        assert_eq!(board.open_count(), 0);
    }
}
