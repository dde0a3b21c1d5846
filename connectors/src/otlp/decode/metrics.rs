//! Metrics requests: decoded with prost and, for now, only counted and time-checked per data
//! point. Lateness is not applied to metrics yet (no metric windows exist).

use super::{DecodeError, MetricsDecodeOutcome, Rejections};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use redwatch_engine::model::UnixNanos;
use redwatch_engine::time::{TimeCheck, TimePolicy};

pub(super) fn decode_proto(
    buf: &[u8],
    policy: &TimePolicy,
    now: UnixNanos,
) -> Result<MetricsDecodeOutcome, DecodeError> {
    let req = ExportMetricsServiceRequest::decode(buf)
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    Ok(count(&req, policy, now))
}

/// Counts the data points of every metric type and checks their timestamps.
pub(super) fn count(
    req: &ExportMetricsServiceRequest,
    policy: &TimePolicy,
    now: UnixNanos,
) -> MetricsDecodeOutcome {
    let mut received = 0u64;
    let mut rejected = Rejections::default();
    let mut check = |ts: UnixNanos| {
        received += 1;
        match policy.check(ts, now) {
            TimeCheck::Invalid => rejected.invalid_timestamp += 1,
            TimeCheck::Future => rejected.future_timestamp += 1,
            TimeCheck::Ok | TimeCheck::Late => {}
        }
    };
    let metrics = req
        .resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics);
    for m in metrics {
        match &m.data {
            Some(Data::Gauge(g)) => g.data_points.iter().for_each(|p| check(p.time_unix_nano)),
            Some(Data::Sum(s)) => s.data_points.iter().for_each(|p| check(p.time_unix_nano)),
            Some(Data::Histogram(h)) => h.data_points.iter().for_each(|p| check(p.time_unix_nano)),
            Some(Data::ExponentialHistogram(h)) => {
                h.data_points.iter().for_each(|p| check(p.time_unix_nano))
            }
            Some(Data::Summary(s)) => s.data_points.iter().for_each(|p| check(p.time_unix_nano)),
            None => {}
        }
    }
    let message = super::point_rejection_message(&rejected, policy);
    MetricsDecodeOutcome {
        received,
        accepted: received - rejected.total(),
        rejected,
        message,
    }
}
