//! OTLP/JSON: parsed with the opentelemetry-proto serde types, then handled by the protobuf paths.
//!
//! Traces are re-encoded to protobuf and scanned by [`super::trace`], so JSON and protobuf share
//! one set of semantics (at the cost of one encode; JSON is the slow path anyway). This module
//! must not grow its own interpretation of spans.

use super::{DecodeError, DecodeSettings, MetricsDecodeOutcome, TraceDecodeOutcome};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use redwatch_engine::model::{SourceId, UnixNanos};
use redwatch_engine::time::TimePolicy;

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    // serde_json's message names the line and column.
    serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))
}

pub(super) fn decode_traces(
    body: &[u8],
    source: SourceId,
    settings: &DecodeSettings,
    policy: &TimePolicy,
    now: UnixNanos,
) -> Result<TraceDecodeOutcome, DecodeError> {
    let req: ExportTraceServiceRequest = parse(body)?;
    let buf = Bytes::from(req.encode_to_vec());
    super::decode_traces_proto(buf, source, settings, policy, now)
}

pub(super) fn decode_metrics(
    body: &[u8],
    policy: &TimePolicy,
    now: UnixNanos,
) -> Result<MetricsDecodeOutcome, DecodeError> {
    let req: ExportMetricsServiceRequest = parse(body)?;
    Ok(super::metrics::count(&req, policy, now))
}
