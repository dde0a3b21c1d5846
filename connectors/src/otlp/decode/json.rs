//! OTLP/JSON: parsed with the opentelemetry-proto serde types, then handled by the protobuf paths.
//!
//! Traces are re-encoded to protobuf and scanned by [`super::trace`], so JSON and protobuf share
//! one set of semantics (at the cost of one encode; JSON is the slow path anyway). Metrics go
//! through [`super::metrics_prost`], the oracle the metrics scanner is tested against. This
//! module must not grow its own interpretation of spans or points.

use super::{DecodeError, DecodeSettings, MetricsDecodeOutcome, TraceDecodeOutcome};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use redwatch_engine::model::{SourceId, UnixNanos};
use redwatch_engine::time::TimePolicy;

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    super::json_budget::estimate(body)?;
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
    source: SourceId,
    policy: &TimePolicy,
    now: UnixNanos,
) -> Result<MetricsDecodeOutcome, DecodeError> {
    let req: ExportMetricsServiceRequest = parse(body)?;
    let data_missing = req
        .resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .any(|m| m.data.is_none());
    if data_missing {
        find_swallowed_metric_data(body)?;
    }
    super::metrics_prost::to_batch(&req, source, policy, now)
}

/// `Metric.data` is a `#[serde(flatten)] Option<_>` in opentelemetry-proto, and serde turns an
/// invalid `gauge`/`sum`/... object there into `None` instead of an error — its points would
/// vanish uncounted. When a metric came out without data, look at the raw metric objects again and
/// report the first data member that does not parse. (Only on that rare path; costs nothing
/// otherwise.)
fn find_swallowed_metric_data(body: &[u8]) -> Result<(), DecodeError> {
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, Gauge, Histogram, Sum, Summary,
    };
    use serde_json::{Map, Value};

    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Request {
        #[serde(default)]
        resource_metrics: Option<Vec<ResourceMetrics>>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ResourceMetrics {
        #[serde(default)]
        scope_metrics: Option<Vec<ScopeMetrics>>,
    }
    #[derive(serde::Deserialize)]
    struct ScopeMetrics {
        #[serde(default)]
        metrics: Option<Vec<Map<String, Value>>>,
    }
    fn check<T: serde::de::DeserializeOwned>(v: &Value) -> Result<(), serde_json::Error> {
        T::deserialize(v).map(|_| ())
    }

    let raw: Request = parse(body)?;
    for (i, rm) in raw.resource_metrics.iter().flatten().enumerate() {
        for (j, sm) in rm.scope_metrics.iter().flatten().enumerate() {
            for (k, m) in sm.metrics.iter().flatten().enumerate() {
                for (key, v) in m.iter().filter(|(_, v)| !v.is_null()) {
                    let r = match key.as_str() {
                        "gauge" => check::<Gauge>(v),
                        "sum" => check::<Sum>(v),
                        "histogram" => check::<Histogram>(v),
                        "exponentialHistogram" => check::<ExponentialHistogram>(v),
                        "summary" => check::<Summary>(v),
                        _ => Ok(()),
                    };
                    if let Err(e) = r {
                        return Err(DecodeError::Json(format!(
                            "resourceMetrics[{i}].scopeMetrics[{j}].metrics[{k}].{key}: {e}"
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}
