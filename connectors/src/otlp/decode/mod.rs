//! OTLP request decoders: protobuf and JSON, traces and metrics.
//!
//! Owns turning one export request into what the pipeline consumes (a [`SpanBatch`] of accepted
//! spans) plus the per-item rejection counts and the partial-success message the receiver sends
//! back. Traces take the zero-copy scanner in [`trace`]; OTLP/JSON is parsed with the
//! opentelemetry-proto serde types, re-encoded and run through the same scanner, so both encodings
//! share one set of semantics. Metrics take the scanner in [`metrics_wire`] (JSON: the serde types
//! converted by [`metrics_prost`], the scanner's oracle) into a [`MetricBatch`]. Decoders never queue, count
//! self-metrics or aggregate — the receiver does that.

mod common;
mod json;
pub mod json_budget;
mod metrics;
mod metrics_prost;
mod metrics_wire;
mod sampling;
mod trace;
mod wire;

#[cfg(test)]
mod tests_fixtures;
#[cfg(test)]
mod tests_json_metrics;
#[cfg(test)]
mod tests_malformed;
#[cfg(test)]
mod tests_metrics;
#[cfg(test)]
mod tests_trace;

use crate::config::OtlpLimitsConfig;
use bytes::Bytes;
use redwatch_engine::config::{Dimension, DimensionSource};
use redwatch_engine::metric_model::MetricBatch;
use redwatch_engine::model::{SourceId, SpanBatch, UnixNanos};
use redwatch_engine::time::TimePolicy;

/// What the decoder needs from config.
#[derive(Debug, Clone, Default)]
pub struct DecodeSettings {
    /// Attribute keys of the configured dimensions, in order (RED's, then the service graph's).
    /// For each span, the value is looked up where `dim_sources` says; absent -> None.
    pub dim_keys: Vec<String>,
    /// Where each key is read from; a missing entry means [`DimensionSource::Any`]: the span's
    /// attributes, then its instrumentation scope's, then its resource's.
    pub dim_sources: Vec<DimensionSource>,
    /// `receivers.otlp.limits.max_string_bytes`: strings handed to operators are cut to this
    /// many bytes by the receiver after decoding ([`SpanBatch::truncate_strings`]); `None` = no cap.
    pub max_string_bytes: Option<usize>,
}

impl DecodeSettings {
    /// The decoder's dimensions (`redwatch_operators::layout::SpanSections::decode_dimensions`)
    /// and the receivers' `limits`.
    pub fn from_config(dims: &[Dimension], limits: &OtlpLimitsConfig) -> DecodeSettings {
        DecodeSettings {
            dim_keys: dims.iter().map(|d| d.name.clone()).collect(),
            dim_sources: dims.iter().map(|d| d.source).collect(),
            max_string_bytes: Some(limits.max_string_bytes.as_u64() as usize),
        }
    }

    /// The source of dimension `i`.
    pub fn source(&self, i: usize) -> DimensionSource {
        self.dim_sources.get(i).copied().unwrap_or_default()
    }
}

/// Per-item rejections inside an otherwise valid request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejections {
    /// Zero timestamp, or (spans) a start of zero or after the end.
    pub invalid_timestamp: u64,
    /// More than `max_future_skew` ahead of the wall clock.
    pub future_timestamp: u64,
    /// For a window that has already been purged.
    pub late: u64,
}

impl Rejections {
    pub fn total(&self) -> u64 {
        self.invalid_timestamp + self.future_timestamp + self.late
    }

    /// `(reason label, count)` for every reason, zeros included.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("invalid_timestamp", self.invalid_timestamp),
            ("future_timestamp", self.future_timestamp),
            ("late", self.late),
        ]
        .into_iter()
    }
}

/// A decoded trace export request.
#[derive(Debug)]
pub struct TraceDecodeOutcome {
    /// Accepted spans only.
    pub batch: SpanBatch,
    /// Spans in the request.
    pub received: u64,
    pub rejected: Rejections,
    /// Accepted spans whose resource has no string `service.name`.
    pub spans_missing_service_name: u64,
    /// Human-readable summary for OTLP partial success (None when nothing was rejected), e.g.
    /// "2 spans rejected: 1 with a zero or inverted timestamp, 1 more than 1h0m0s ahead of the
    /// wall clock".
    pub message: Option<String>,
}

/// A decoded metrics export request.
#[derive(Debug, Clone)]
pub struct MetricsDecodeOutcome {
    /// The accepted points that carry a value.
    pub batch: MetricBatch,
    /// Data points in the request, over all metric types.
    pub received: u64,
    pub accepted: u64,
    pub rejected: Rejections,
    /// Partial-success summary, None when nothing was rejected.
    pub message: Option<String>,
}

/// Why a whole request was refused. Retrying the same bytes cannot help.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Bad protobuf framing: truncated, bad tag / wire type / length, varint overflow, nesting too
    /// deep.
    #[error("malformed protobuf: {0}")]
    Malformed(String),
    /// A string field is not UTF-8 (protobuf `string` must be).
    #[error("invalid UTF-8 in {field}")]
    InvalidUtf8 { field: &'static str },
    /// The body is not OTLP/JSON; the message carries serde_json's line and column.
    #[error("invalid OTLP/JSON: {0}")]
    Json(String),
    /// OTLP/JSON whose parsed form would be too large for its size (docs/design.md, "State and
    /// its bounds"): e.g. millions of `{}` spans.
    #[error("OTLP/JSON body of {body_bytes} bytes would decode to more than {limit} bytes (too many items for its size; at most {} decoded bytes per body byte)", json_budget::AMPLIFICATION)]
    TooManyItems { body_bytes: u64, limit: u64 },
}

/// Decodes a protobuf `ExportTraceServiceRequest`. The batch keeps `buf` and refers to names in it.
pub fn decode_traces_proto(
    buf: Bytes,
    source: SourceId,
    settings: &DecodeSettings,
    policy: &TimePolicy,
    now: UnixNanos,
) -> Result<TraceDecodeOutcome, DecodeError> {
    trace::decode(buf, source, settings, policy, now)
}

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`.
pub fn decode_traces_json(
    body: &[u8],
    source: SourceId,
    settings: &DecodeSettings,
    policy: &TimePolicy,
    now: UnixNanos,
) -> Result<TraceDecodeOutcome, DecodeError> {
    json::decode_traces(body, source, settings, policy, now)
}

/// Decodes a protobuf `ExportMetricsServiceRequest`. The batch keeps `buf` and refers to
/// strings in it.
pub fn decode_metrics_proto(
    buf: Bytes,
    source: SourceId,
    policy: &TimePolicy,
    now: UnixNanos,
) -> Result<MetricsDecodeOutcome, DecodeError> {
    metrics_wire::decode(buf, source, policy, now)
}

/// Decodes a protobuf `ExportMetricsServiceRequest` with prost and converts it (the scanner's
/// test oracle; also for benchmarks).
pub fn decode_metrics_prost(
    buf: &[u8],
    source: SourceId,
    policy: &TimePolicy,
    now: UnixNanos,
) -> Result<MetricsDecodeOutcome, DecodeError> {
    use prost::Message;
    let req =
        opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest::decode(
            buf,
        )
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    metrics_prost::to_batch(&req, source, policy, now)
}

/// Decodes an OTLP/JSON `ExportMetricsServiceRequest`.
pub fn decode_metrics_json(
    body: &[u8],
    source: SourceId,
    policy: &TimePolicy,
    now: UnixNanos,
) -> Result<MetricsDecodeOutcome, DecodeError> {
    json::decode_metrics(body, source, policy, now)
}

/// The partial-success message for rejected spans.
fn span_rejection_message(r: &Rejections, policy: &TimePolicy) -> Option<String> {
    rejection_message(
        r,
        ("span", "spans"),
        "with a zero or inverted timestamp",
        policy,
    )
}

/// The partial-success message for rejected metric data points.
fn point_rejection_message(r: &Rejections, policy: &TimePolicy) -> Option<String> {
    rejection_message(
        r,
        ("data point", "data points"),
        "with a zero timestamp",
        policy,
    )
}

fn rejection_message(
    r: &Rejections,
    (one, many): (&str, &str),
    invalid: &str,
    policy: &TimePolicy,
) -> Option<String> {
    let total = r.total();
    if total == 0 {
        return None;
    }
    let mut parts = Vec::new();
    if r.invalid_timestamp > 0 {
        parts.push(format!("{} {invalid}", r.invalid_timestamp));
    }
    if r.future_timestamp > 0 {
        parts.push(format!(
            "{} more than {} ahead of the wall clock",
            r.future_timestamp,
            go_duration(policy.max_future_skew_ns)
        ));
    }
    if r.late > 0 {
        parts.push(format!(
            "{} too late (their window closed more than {} before the watermark)",
            r.late,
            go_duration(policy.allowed_lateness_ns)
        ));
    }
    let noun = if total == 1 { one } else { many };
    Some(format!("{total} {noun} rejected: {}", parts.join(", ")))
}

/// Formats a duration as Go's `time.Duration.String` does (`1h0m0s`, `1m30s`, `1.5s`, `250ms`) —
/// the form Collector users know from OTLP messages.
fn go_duration(ns: u64) -> String {
    /// `v / unit` with the remainder as a decimal fraction without trailing zeros.
    fn with_fraction(v: u64, unit: u64, digits: usize) -> String {
        let (int, rem) = (v / unit, v % unit);
        if rem == 0 {
            return int.to_string();
        }
        let frac = format!("{rem:0digits$}");
        format!("{int}.{}", frac.trim_end_matches('0'))
    }
    const S: u64 = 1_000_000_000;
    match ns {
        0 => "0s".to_string(),
        1..=999 => format!("{ns}ns"),
        1_000..=999_999 => format!("{}µs", with_fraction(ns, 1_000, 3)),
        1_000_000..=999_999_999 => format!("{}ms", with_fraction(ns, 1_000_000, 6)),
        _ => {
            let secs = ns / S;
            let (h, m) = (secs / 3600, secs / 60 % 60);
            let s = with_fraction(ns % (60 * S), S, 9);
            match (h, m) {
                (0, 0) => format!("{s}s"),
                (0, m) => format!("{m}m{s}s"),
                (h, m) => format!("{h}h{m}m{s}s"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(500), "500ns");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(250_000_000), "250ms");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(30_000_000_000), "30s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(go_duration(3_661_000_000_001), "1h1m1.000000001s");
    }

    #[test]
    fn rejections_iterate_every_reason() {
        let r = Rejections {
            invalid_timestamp: 1,
            future_timestamp: 2,
            late: 3,
        };
        assert_eq!(r.total(), 6);
        let v: Vec<_> = r.iter().collect();
        assert_eq!(
            v,
            vec![
                ("invalid_timestamp", 1),
                ("future_timestamp", 2),
                ("late", 3)
            ]
        );
    }
}
