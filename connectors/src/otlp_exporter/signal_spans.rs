//! The spans of the anomaly stream: `anomaly_detected` and `metric_prediction` (docs/design.md,
//! "Signals that leave"; attributes and the score in docs/anomaly-detection.md).
//!
//! [`SpanEncoder`] turns one [`Anomaly`] or [`Prediction`] into an OTLP span; [`SignalSpans`]
//! subscribes to the anomaly stream and hands each span to a [`SpanDestination`] (the OTLP
//! exporter's queue, the Kafka sink). It only encodes: detection is the anomaly operator's, the
//! queue, batching and retries are the exporter's.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use redwatch_operators::anomaly::{Anomaly, IncidentState, Severity, SignalSink, Signals};
use redwatch_operators::forecast::Prediction;
use redwatch_operators::red::{Exemplars, SeriesKey};
use ring::digest::{Context, SHA256};
use std::sync::Arc;

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

/// Somewhere spans can be sent without waiting: it queues them or drops and counts them.
pub trait SpanDestination: Send + Sync {
    /// Queues one `ResourceSpans`; whether it was queued.
    fn export_spans(&self, spans: ResourceSpans) -> bool;
}

impl SpanDestination for super::OtlpExportHandle {
    fn export_spans(&self, spans: ResourceSpans) -> bool {
        super::OtlpExportHandle::export_spans(self, spans)
    }
}

impl<T: SpanDestination + ?Sized> SpanDestination for Arc<T> {
    fn export_spans(&self, spans: ResourceSpans) -> bool {
        (**self).export_spans(spans)
    }
}

/// A subscriber of the anomaly stream that sends every record as a span to `D`.
pub struct SignalSpans<D> {
    destination: D,
    encoder: SpanEncoder,
    /// Whether anomaly records become spans here (with problems on, the problem stream sends
    /// them, in their problem's trace: `problem_spans.rs`).
    anomalies: bool,
}

impl<D: SpanDestination> SignalSpans<D> {
    /// Spans to `destination`; `dims`: the names of the configured RED dimensions, in order.
    pub fn new(destination: D, dims: Vec<String>) -> Self {
        SignalSpans {
            destination,
            encoder: SpanEncoder::new(dims),
            anomalies: true,
        }
    }

    /// Predictions only: anomaly spans are sent by the problem stream.
    pub fn predictions_only(mut self) -> Self {
        self.anomalies = false;
        self
    }
}

impl<D: SpanDestination> SignalSink for SignalSpans<D> {
    fn on_signals(&self, s: &Signals) {
        // Every record becomes a span, the resolving one too (it closes the incident's trace).
        // One span per queued record: `queue_size` counts spans, and the exporter merges the
        // shared resource back into one per request.
        let anomalies = s.anomalies.iter().zip(&s.exemplars);
        for (a, x) in anomalies.filter(|_| self.anomalies) {
            let span = self.encoder.anomaly_span(a, x.as_ref());
            self.destination
                .export_spans(self.encoder.resource_spans(span));
        }
        for (p, w) in s.predictions.iter().zip(&s.prediction_windows_ns) {
            let span = self.encoder.prediction_span(p, *w);
            self.destination
                .export_spans(self.encoder.resource_spans(span));
        }
    }
}

/// Builds the spans of anomalies and predictions, with resource `service.name=redwatch`.
#[derive(Debug, Clone)]
pub struct SpanEncoder {
    dims: Vec<String>,
    resource: Resource,
    scope: InstrumentationScope,
}

impl SpanEncoder {
    /// `dims`: the names of the configured RED dimensions, in the order of a series' values.
    pub fn new(dims: Vec<String>) -> Self {
        SpanEncoder {
            dims,
            resource: Resource {
                attributes: vec![kv_str("service.name", "redwatch")],
                ..Default::default()
            },
            scope: InstrumentationScope {
                name: "redwatch".to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                ..Default::default()
            },
        }
    }

    /// `span` under redwatch's resource and scope.
    pub fn resource_spans(&self, span: Span) -> ResourceSpans {
        ResourceSpans {
            resource: Some(self.resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(self.scope.clone()),
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
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

    fn anomaly_attrs(&self, a: &Anomaly) -> Vec<KeyValue> {
        let incident: String = a.incident_id.iter().map(|b| format!("{b:02x}")).collect();
        let mut attrs = vec![
            kv_str("anomaly.signal", &a.signal),
            kv_f64("anomaly.value", a.value),
            kv_f64("anomaly.expected_min", a.expected_min),
            kv_f64("anomaly.expected_max", a.expected_max),
            kv_str("anomaly.severity", a.severity.as_str()),
            kv_str("anomaly.detector", a.detector),
            kv_str("anomaly.incident_id", &incident),
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
        if a.incident_state == IncidentState::Resolved {
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
        attrs
    }

    /// The `anomaly_detected` span of one anomalous window, linked to the window's exemplar
    /// spans (slowest, slowest failed) when known.
    pub fn anomaly_span(&self, a: &Anomaly, exemplars: Option<&Exemplars>) -> Span {
        let attrs = self.anomaly_attrs(a);
        let resolved = a.incident_state == IncidentState::Resolved;
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
        let links = match exemplars.filter(|_| !resolved) {
            Some(x) => exemplar_links(x),
            None => Vec::new(),
        };
        let event = if resolved {
            RESOLVED_EVENT
        } else {
            ANOMALY_EVENT
        };
        let (code, message) = if error {
            let m = format!(
                "{} {} anomaly on {} {}",
                a.severity.as_str(),
                a.signal,
                a.series.service_name,
                a.series.span_name
            );
            (StatusCode::Error, m)
        } else if resolved {
            (StatusCode::Ok, String::new())
        } else {
            (StatusCode::Unset, String::new())
        };
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
                name: event.to_string(),
                attributes: attrs.clone(),
                ..Default::default()
            }],
            attributes: attrs,
            status: Some(Status {
                code: code as i32,
                message,
            }),
            ..Default::default()
        }
    }

    /// The `metric_prediction` span of one prediction (its time: the window it was made at,
    /// `window_ns` long).
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
        let (trace_id, span_id) = prediction_ids(p);
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
            span_id: span_id.to_vec(),
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

/// Links to the window's slowest and slowest failed spans (one link when they are the same).
pub(super) fn exemplar_links(x: &Exemplars) -> Vec<Link> {
    let mut links: Vec<Link> = Vec::new();
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
    links
}

/// SHA-256 over length-prefixed parts, so ("ab", "c") and ("a", "bc") differ. Ids derived from
/// it are stable across runs and builds (a replay re-creates the same spans).
pub(super) fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = Context::new(&SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_le_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// An 8-byte span id from `bytes`, never all zero (an invalid id in OTLP).
pub(super) fn nonzero_id(bytes: &[u8]) -> [u8; 8] {
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[..8]);
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

/// The span id of the window starting at `window_start` in an incident (`u64::MAX`: the
/// incident's root span).
pub(super) fn span_id(incident: &[u8; 16], window_start: u64) -> [u8; 8] {
    nonzero_id(&digest(&[incident, &window_start.to_le_bytes()]))
}

/// A prediction's own trace and span id, from its series, signal and time.
fn prediction_ids(p: &Prediction) -> ([u8; 16], [u8; 8]) {
    let s = &p.series;
    let kind = [s.kind as u8];
    let end = p.window_end.to_le_bytes();
    let mut parts: Vec<&[u8]> = vec![s.service_name.as_bytes(), s.span_name.as_bytes(), &kind];
    parts.extend(s.dims.iter().map(|d| d.as_bytes()));
    parts.push(p.signal.as_bytes());
    parts.push(&end);
    let d = digest(&parts);
    let mut trace = [0u8; 16];
    trace.copy_from_slice(&d[..16]);
    (trace, nonzero_id(&d[16..24]))
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

pub(super) fn kv_str(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.to_string()))
}

pub(super) fn kv_f64(key: &str, v: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(v))
}

pub(super) fn kv_i64(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

fn kv_bool(key: &str, v: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(v))
}

#[cfg(test)]
#[path = "signal_spans_tests.rs"]
mod tests;
