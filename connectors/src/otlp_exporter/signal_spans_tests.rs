//! Moved with the span encoding from the app's anomaly sink; they assert what they asserted there.

use super::*;
use redwatch_operators::anomaly::fixtures::anomaly;

fn sink() -> SpanEncoder {
    SpanEncoder::new(Vec::new())
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
}
