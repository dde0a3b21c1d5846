//! An anomaly record for the tests of what consumes them (span encoding, the terminal board).

use super::{Anomaly, IncidentState, Severity};
use crate::red::SeriesKey;
use redwatch_engine::model::SpanKind;
use std::sync::Arc;

/// The series `cart` / `GET /cart` (server, no dimensions).
pub fn cart_series() -> Arc<SeriesKey> {
    Arc::new(SeriesKey {
        service_name: "cart".into(),
        span_name: "GET /cart".into(),
        kind: SpanKind::Server,
        dims: Box::new([]),
        overflow: false,
    })
}

/// A `latency_p99_ms` record of [`cart_series`] for the one-second window at `start`, of
/// incident `[9; 16]` (started at 1 s, two windows so far).
pub fn anomaly(state: IncidentState, start: u64, severity: Severity) -> Anomaly {
    // A resolved record carries no alarm score (the engine's contract).
    let alarm = state != IncidentState::Resolved;
    Anomaly {
        signal: "latency_p99_ms".into(),
        series: cart_series(),
        value: 800.0,
        expected_min: 10.0,
        expected_max: 40.0,
        severity,
        score: alarm.then_some(0.999_999_99),
        p_value: alarm.then_some(1e-8),
        z: alarm.then_some(9.5),
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
