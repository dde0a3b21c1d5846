//! The `anomalies` and `predictions` tables: every anomaly record (open, ongoing and resolving
//! windows of incidents) and every emitted prediction, bounded by rows and age.
//!
//! Appended to by the anomaly sink on the operator task, one partition per closed window (the
//! records of a window are few); a query takes a snapshot and never blocks the appender. This
//! module only stores and serves rows: detection and export live elsewhere.

use crate::schema;
use crate::table::{Partition, PartitionSource, PruneFilter};
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::record_batch::RecordBatch;
use redwatch_operators::anomaly::{Anomaly, SignalSink, Signals};
use redwatch_operators::forecast::Prediction;
use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

/// Bounds of one table.
#[derive(Debug, Clone, Copy)]
pub struct SignalTableSettings {
    /// Rows kept at most; the oldest partitions go first.
    pub max_rows: usize,
    /// Rows whose newest time is older than this (relative to the newest appended) go.
    pub retention_ns: u64,
}

impl Default for SignalTableSettings {
    fn default() -> Self {
        SignalTableSettings {
            max_rows: 100_000,
            retention_ns: crate::config::DEFAULT_RETENTION.as_nanos() as u64,
        }
    }
}

#[derive(Debug, Default)]
struct Stored {
    parts: VecDeque<Partition>,
    rows: usize,
}

/// Partitions, bounded by rows and age.
#[derive(Debug, Default)]
pub(crate) struct Bounded {
    settings: Option<SignalTableSettings>,
    stored: Mutex<Stored>,
}

impl Bounded {
    pub(crate) fn new(settings: SignalTableSettings) -> Bounded {
        Bounded {
            settings: Some(settings),
            ..Default::default()
        }
    }

    pub(crate) fn push(&self, p: Partition, newest_ns: u64) {
        self.keep(Some(p), newest_ns, self.settings.unwrap_or_default());
    }

    /// Appends `p` (if any), then drops the oldest partitions while over `s.max_rows` or
    /// older than `s.retention_ns` behind `newest_ns`.
    pub(crate) fn keep(&self, p: Option<Partition>, newest_ns: u64, s: SignalTableSettings) {
        let Ok(mut st) = self.stored.lock() else {
            return;
        };
        if let Some(p) = p {
            st.rows += p.batch.num_rows();
            st.parts.push_back(p);
        }
        let horizon = newest_ns.saturating_sub(s.retention_ns) as i128;
        while let Some(front) = st.parts.front() {
            let too_old = front
                .time_ranges
                .iter()
                .map(|(_, _, max)| *max)
                .max()
                .is_some_and(|max| max < horizon);
            if st.rows > s.max_rows || too_old {
                if let Some(p) = st.parts.pop_front() {
                    st.rows -= p.batch.num_rows();
                }
            } else {
                break;
            }
        }
    }

    pub(crate) fn rows(&self) -> usize {
        self.stored.lock().map(|s| s.rows).unwrap_or(0)
    }

    pub(crate) fn snapshot(&self, filter: &PruneFilter) -> Vec<RecordBatch> {
        let Ok(st) = self.stored.lock() else {
            return Vec::new();
        };
        st.parts
            .iter()
            .filter(|p| filter.may_match(p))
            .map(|p| p.batch.clone())
            .collect()
    }
}

pub(crate) fn ms(ns: u64) -> i64 {
    (ns / 1_000_000) as i64
}

pub(crate) fn service_range<'a>(names: impl Iterator<Item = &'a str>) -> Option<(String, String)> {
    let mut lo: Option<&str> = None;
    let mut hi: Option<&str> = None;
    for n in names {
        lo = Some(lo.map_or(n, |l| l.min(n)));
        hi = Some(hi.map_or(n, |h| h.max(n)));
    }
    Some((lo?.to_string(), hi?.to_string()))
}

/// Lower-case hex of an id.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The `anomalies` table.
#[derive(Debug, Default)]
pub struct AnomaliesTable {
    inner: Bounded,
}

impl AnomaliesTable {
    pub fn new(settings: SignalTableSettings) -> Arc<Self> {
        Arc::new(AnomaliesTable {
            inner: Bounded {
                settings: Some(settings),
                ..Default::default()
            },
        })
    }

    pub fn rows(&self) -> usize {
        self.inner.rows()
    }

    /// Appends one partition holding `records`.
    pub fn append(&self, records: &[Anomaly]) {
        if records.is_empty() {
            return;
        }
        let n = records.len();
        let mut start = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut end = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut signal = StringBuilder::new();
        let mut service = StringBuilder::new();
        let mut span = StringBuilder::new();
        let mut kind = StringBuilder::new();
        let mut value = Float64Builder::with_capacity(n);
        let mut emin = Float64Builder::with_capacity(n);
        let mut emax = Float64Builder::with_capacity(n);
        let mut severity = StringBuilder::new();
        let mut score = Float64Builder::with_capacity(n);
        let mut detector = StringBuilder::new();
        let mut incident = StringBuilder::new();
        let mut state = StringBuilder::new();
        let mut inc_start = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut inc_ms = Int64Builder::with_capacity(n);
        let mut inc_windows = Int64Builder::with_capacity(n);
        let mut p_value = Float64Builder::with_capacity(n);
        let mut z = Float64Builder::with_capacity(n);
        for a in records {
            start.append_value(ms(a.window_start));
            end.append_value(ms(a.window_end));
            signal.append_value(&*a.signal);
            service.append_value(&*a.series.service_name);
            span.append_value(&*a.series.span_name);
            kind.append_value(a.series.kind.as_label());
            value.append_value(a.value);
            emin.append_value(a.expected_min);
            emax.append_value(a.expected_max);
            severity.append_value(a.severity.as_str());
            score.append_option(a.score);
            detector.append_value(a.detector);
            incident.append_value(hex(&a.incident_id));
            state.append_value(a.incident_state.as_str());
            inc_start.append_value(ms(a.incident_start));
            inc_ms.append_value(ms(a.incident_duration_ns));
            inc_windows.append_value(a.incident_windows as i64);
            p_value.append_option(a.p_value);
            z.append_option(a.z);
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(start.finish()),
            Arc::new(end.finish()),
            Arc::new(signal.finish()),
            Arc::new(service.finish()),
            Arc::new(span.finish()),
            Arc::new(kind.finish()),
            Arc::new(value.finish()),
            Arc::new(emin.finish()),
            Arc::new(emax.finish()),
            Arc::new(severity.finish()),
            Arc::new(score.finish()),
            Arc::new(detector.finish()),
            Arc::new(incident.finish()),
            Arc::new(state.finish()),
            Arc::new(inc_start.finish()),
            Arc::new(inc_ms.finish()),
            Arc::new(inc_windows.finish()),
            Arc::new(p_value.finish()),
            Arc::new(z.finish()),
        ];
        let Ok(batch) = RecordBatch::try_new(schema::ANOMALIES.clone(), cols) else {
            return;
        };
        let lo = records.iter().map(|a| a.window_start).min().unwrap_or(0);
        let hi_start = records.iter().map(|a| a.window_start).max().unwrap_or(0);
        let lo_end = records.iter().map(|a| a.window_end).min().unwrap_or(0);
        let hi = records.iter().map(|a| a.window_end).max().unwrap_or(0);
        let p = Partition {
            batch,
            time_ranges: vec![
                ("window_start", lo as i128, hi_start as i128),
                ("window_end", lo_end as i128, hi as i128),
            ],
            service_range: service_range(records.iter().map(|a| &*a.series.service_name)),
        };
        self.inner.push(p, hi);
    }
}

/// Fed by the anomaly stream.
impl SignalSink for AnomaliesTable {
    fn on_signals(&self, s: &Signals) {
        self.append(&s.anomalies);
    }
}

impl PartitionSource for AnomaliesTable {
    fn snapshot(&self, filter: &PruneFilter) -> Vec<RecordBatch> {
        self.inner.snapshot(filter)
    }
}

/// The `predictions` table.
#[derive(Debug, Default)]
pub struct PredictionsTable {
    inner: Bounded,
}

impl PredictionsTable {
    pub fn new(settings: SignalTableSettings) -> Arc<Self> {
        Arc::new(PredictionsTable {
            inner: Bounded {
                settings: Some(settings),
                ..Default::default()
            },
        })
    }

    pub fn rows(&self) -> usize {
        self.inner.rows()
    }

    /// Appends one partition holding `records`.
    pub fn append(&self, records: &[Prediction]) {
        if records.is_empty() {
            return;
        }
        let n = records.len();
        let mut end = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut signal = StringBuilder::new();
        let mut service = StringBuilder::new();
        let mut span = StringBuilder::new();
        let mut value = Float64Builder::with_capacity(n);
        let mut lower = Float64Builder::with_capacity(n);
        let mut upper = Float64Builder::with_capacity(n);
        let mut confidence = Float64Builder::with_capacity(n);
        let mut horizon = Int64Builder::with_capacity(n);
        let mut method = StringBuilder::new();
        let mut trend = BooleanBuilder::with_capacity(n);
        let mut ttt = Int64Builder::with_capacity(n);
        for p in records {
            end.append_value(ms(p.window_end));
            signal.append_value(&*p.signal);
            service.append_value(&*p.series.service_name);
            span.append_value(&*p.series.span_name);
            value.append_value(p.value);
            lower.append_value(p.lower);
            upper.append_value(p.upper);
            confidence.append_value(p.confidence);
            horizon.append_value(p.horizon_ms.min(i64::MAX as u64) as i64);
            method.append_value(p.method);
            trend.append_value(p.trend_change);
            ttt.append_option(
                p.time_to_threshold_ms
                    .map(|t| t.min(i64::MAX as u64) as i64),
            );
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(end.finish()),
            Arc::new(signal.finish()),
            Arc::new(service.finish()),
            Arc::new(span.finish()),
            Arc::new(value.finish()),
            Arc::new(lower.finish()),
            Arc::new(upper.finish()),
            Arc::new(confidence.finish()),
            Arc::new(horizon.finish()),
            Arc::new(method.finish()),
            Arc::new(trend.finish()),
            Arc::new(ttt.finish()),
        ];
        let Ok(batch) = RecordBatch::try_new(schema::PREDICTIONS.clone(), cols) else {
            return;
        };
        let lo = records.iter().map(|p| p.window_end).min().unwrap_or(0);
        let hi = records.iter().map(|p| p.window_end).max().unwrap_or(0);
        let p = Partition {
            batch,
            time_ranges: vec![("window_end", lo as i128, hi as i128)],
            service_range: service_range(records.iter().map(|p| &*p.series.service_name)),
        };
        self.inner.push(p, hi);
    }
}

/// Fed by the anomaly stream.
impl SignalSink for PredictionsTable {
    fn on_signals(&self, s: &Signals) {
        self.append(&s.predictions);
    }
}

impl PartitionSource for PredictionsTable {
    fn snapshot(&self, filter: &PruneFilter) -> Vec<RecordBatch> {
        self.inner.snapshot(filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redwatch_engine::model::SpanKind;
    use redwatch_operators::anomaly::{IncidentState, Severity};
    use redwatch_operators::red::SeriesKey;

    fn series(svc: &str) -> Arc<SeriesKey> {
        Arc::new(SeriesKey {
            service_name: svc.into(),
            span_name: "GET /".into(),
            kind: SpanKind::Server,
            dims: Box::new([]),
            overflow: false,
        })
    }

    fn anomaly(svc: &str, start_s: u64) -> Anomaly {
        Anomaly {
            signal: "latency_p99_ms".into(),
            series: series(svc),
            value: 900.0,
            expected_min: 10.0,
            expected_max: 50.0,
            severity: Severity::High,
            score: Some(0.999_999_9),
            p_value: Some(1e-7),
            z: Some(12.0),
            votes: 2,
            detector: "robust_z+ewma",
            window_start: start_s * 1_000_000_000,
            window_end: (start_s + 10) * 1_000_000_000,
            incident_id: [7; 16],
            incident_state: IncidentState::Open,
            incident_start: start_s * 1_000_000_000,
            incident_duration_ns: 10 * 1_000_000_000,
            incident_windows: 1,
        }
    }

    #[test]
    fn anomalies_are_bounded_by_rows_and_age_and_pruned_by_service() {
        let t = AnomaliesTable::new(SignalTableSettings {
            max_rows: 3,
            retention_ns: 100 * 1_000_000_000,
        });
        t.append(&[anomaly("a", 0), anomaly("b", 0)]);
        t.append(&[anomaly("c", 10)]);
        assert_eq!(t.rows(), 3);
        t.append(&[anomaly("d", 20)]);
        assert_eq!(t.rows(), 2, "the oldest partition went over max_rows");
        t.append(&[anomaly("e", 500)]);
        assert_eq!(t.rows(), 1, "everything older than the retention went");
        let f = PruneFilter {
            services: Some(vec!["zzz".into()]),
            ..Default::default()
        };
        assert!(t.snapshot(&f).is_empty());
        let b = t.snapshot(&PruneFilter::default());
        assert_eq!(b[0].num_rows(), 1);
        assert_eq!(b[0].schema(), schema::ANOMALIES.clone());
    }

    #[test]
    fn predictions_match_the_schema() {
        let t = PredictionsTable::new(SignalTableSettings::default());
        t.append(&[Prediction {
            signal: "request_rate".into(),
            series: series("a"),
            value: 5.0,
            lower: 4.0,
            upper: 6.0,
            confidence: 0.95,
            horizon_ms: 300_000,
            method: "holt",
            trend_change: true,
            time_to_threshold_ms: None,
            window_end: 1_000_000_000,
        }]);
        let b = t.snapshot(&PruneFilter::default());
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].schema(), schema::PREDICTIONS.clone());
    }
}
