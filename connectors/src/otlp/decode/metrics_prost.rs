//! `ExportMetricsServiceRequest` (prost types) → [`MetricBatch`]: the test oracle of the wire
//! scanner, implementing the rules of [`super::metrics`] on decoded objects. Strings go to the
//! batch arena.

use super::metrics::{
    format_scalar, push_histogram_buckets, Canon, OriginHasher, Tally, FLAG_NO_RECORDED_VALUE,
};
use super::{DecodeError, MetricsDecodeOutcome};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
use redwatch_engine::metric_model::{
    ExpHistogramRecord, HistogramRecord, MStr, MStrError, MetricBatch, MetricKind, MetricRecord,
    MetricResource, PointRecord, PointValue, SummaryRecord, Temporality,
};
use redwatch_engine::model::{SourceId, UnixNanos};
use redwatch_engine::time::TimePolicy;

fn canon(kv: &KeyValue) -> Canon<'_> {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        None => Canon::Unset,
        Some(any_value::Value::StringValue(s)) => Canon::Str(s.as_bytes()),
        Some(any_value::Value::BoolValue(b)) => Canon::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Canon::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => Canon::Double(d.to_bits()),
        Some(_) => Canon::Other,
    }
}

fn arena_err(_: MStrError) -> DecodeError {
    DecodeError::Malformed("metrics request too large".to_string())
}

struct Conv<'p> {
    batch: MetricBatch,
    tally: Tally,
    policy: &'p TimePolicy,
    now: UnixNanos,
    fmt: String,
}

impl Conv<'_> {
    fn s(&mut self, s: &str) -> Result<MStr, DecodeError> {
        self.batch.arena_str(s).map_err(arena_err)
    }

    fn attrs(&mut self, kvs: &[KeyValue]) -> Result<(u32, u32), DecodeError> {
        let a = self.batch.attrs.len() as u32;
        for kv in kvs {
            let v = canon(kv);
            let value = match v {
                Canon::Str(s) => self.s(std::str::from_utf8(s).unwrap_or(""))?,
                other => {
                    let mut fmt = std::mem::take(&mut self.fmt);
                    let ok = format_scalar(&mut fmt, other);
                    let r = if ok { Some(self.s(&fmt)?) } else { None };
                    self.fmt = fmt;
                    match r {
                        Some(r) => r,
                        None => continue,
                    }
                }
            };
            let key = self.s(&kv.key)?;
            self.batch.attrs.push((key, value));
        }
        Ok((a, self.batch.attrs.len() as u32))
    }

    /// Counts a point and, when it is accepted and has a value, pushes it.
    fn point(
        &mut self,
        metric: u32,
        start: u64,
        time: u64,
        flags: u32,
        attrs: &[KeyValue],
        value: Option<PointValue>,
    ) -> Result<(), DecodeError> {
        if !self.tally.admit(time, self.policy, self.now) {
            return Ok(());
        }
        let Some(value) = value else {
            return Ok(());
        };
        if flags & FLAG_NO_RECORDED_VALUE != 0 {
            return Ok(());
        }
        let attrs = self.attrs(attrs)?;
        self.batch.points.push(PointRecord {
            metric,
            start,
            time,
            attrs,
            value,
        });
        Ok(())
    }

    /// [`point`](Self::point) for a value whose record was just pushed: takes the record back
    /// with `pop` when the point is not kept. `times` is `(start, time, flags)`.
    fn point_or_pop(
        &mut self,
        metric: u32,
        (start, time, flags): (u64, u64, u32),
        attrs: &[KeyValue],
        value: PointValue,
        pop: impl FnOnce(&mut MetricBatch),
    ) -> Result<(), DecodeError> {
        let before = self.batch.points.len();
        self.point(metric, start, time, flags, attrs, Some(value))?;
        if self.batch.points.len() == before {
            pop(&mut self.batch);
        }
        Ok(())
    }
}

/// Converts a decoded request.
pub(super) fn to_batch(
    req: &ExportMetricsServiceRequest,
    source: SourceId,
    policy: &TimePolicy,
    now: UnixNanos,
) -> Result<MetricsDecodeOutcome, DecodeError> {
    let mut c = Conv {
        batch: MetricBatch::new(source, bytes::Bytes::new()),
        tally: Tally::default(),
        policy,
        now,
        fmt: String::new(),
    };
    for rm in &req.resource_metrics {
        let mut origin = OriginHasher::new();
        let mut service: Option<Option<&str>> = None;
        for kv in rm.resource.iter().flat_map(|r| &r.attributes) {
            origin.attr(kv.key.as_bytes(), canon(kv));
            if kv.key == "service.name" && service.is_none() {
                service = Some(match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => Some(s.as_str()),
                    _ => None,
                });
            }
        }
        let service_name = match service.flatten() {
            Some(s) => Some(c.s(s)?),
            None => None,
        };
        for sm in &rm.scope_metrics {
            let (name, version) = sm
                .scope
                .as_ref()
                .map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
            let resource = c.batch.resources.len() as u32;
            c.batch.resources.push(MetricResource {
                service_name,
                origin: origin.with_scope(name.as_bytes(), version.as_bytes()),
            });
            for m in &sm.metrics {
                let Some(data) = &m.data else {
                    continue;
                };
                let (kind, temporality) = match data {
                    Data::Gauge(_) => (MetricKind::Gauge, Temporality::Unspecified),
                    Data::Sum(s) => (
                        if s.is_monotonic {
                            MetricKind::Counter
                        } else {
                            MetricKind::UpDownCounter
                        },
                        Temporality::from_i32(s.aggregation_temporality),
                    ),
                    Data::Histogram(h) => (
                        MetricKind::Histogram,
                        Temporality::from_i32(h.aggregation_temporality),
                    ),
                    Data::ExponentialHistogram(h) => (
                        MetricKind::ExponentialHistogram,
                        Temporality::from_i32(h.aggregation_temporality),
                    ),
                    Data::Summary(_) => (MetricKind::Summary, Temporality::Unspecified),
                };
                let metric = c.batch.metrics.len() as u32;
                let rec = MetricRecord {
                    name: c.s(&m.name)?,
                    unit: c.s(&m.unit)?,
                    kind,
                    temporality,
                    resource,
                };
                c.batch.metrics.push(rec);
                match data {
                    Data::Gauge(g) => number_points(&mut c, metric, &g.data_points)?,
                    Data::Sum(s) => number_points(&mut c, metric, &s.data_points)?,
                    Data::Histogram(h) => {
                        for p in &h.data_points {
                            let (bounds, counts) = push_histogram_buckets(
                                &mut c.batch,
                                &p.explicit_bounds,
                                &p.bucket_counts,
                            );
                            let i = c.batch.histograms.len() as u32;
                            c.batch.histograms.push(HistogramRecord {
                                count: p.count,
                                sum: p.sum,
                                min: p.min,
                                max: p.max,
                                bounds,
                                counts,
                            });
                            c.point_or_pop(
                                metric,
                                (p.start_time_unix_nano, p.time_unix_nano, p.flags),
                                &p.attributes,
                                PointValue::Histogram(i),
                                |b| {
                                    b.histograms.pop();
                                },
                            )?;
                        }
                    }
                    Data::ExponentialHistogram(h) => {
                        for p in &h.data_points {
                            let pos = p.positive.clone().unwrap_or_default();
                            let neg = p.negative.clone().unwrap_or_default();
                            let positive = c.batch.push_u64s(pos.bucket_counts);
                            let negative = c.batch.push_u64s(neg.bucket_counts);
                            let i = c.batch.exp_histograms.len() as u32;
                            c.batch.exp_histograms.push(ExpHistogramRecord {
                                count: p.count,
                                sum: p.sum,
                                min: p.min,
                                max: p.max,
                                scale: p.scale,
                                zero_count: p.zero_count,
                                zero_threshold: p.zero_threshold,
                                positive_offset: pos.offset,
                                positive,
                                negative_offset: neg.offset,
                                negative,
                            });
                            c.point_or_pop(
                                metric,
                                (p.start_time_unix_nano, p.time_unix_nano, p.flags),
                                &p.attributes,
                                PointValue::ExpHistogram(i),
                                |b| {
                                    b.exp_histograms.pop();
                                },
                            )?;
                        }
                    }
                    Data::Summary(s) => {
                        for p in &s.data_points {
                            let quantiles = c.batch.push_f64s(
                                p.quantile_values.iter().flat_map(|q| [q.quantile, q.value]),
                            );
                            let i = c.batch.summaries.len() as u32;
                            c.batch.summaries.push(SummaryRecord {
                                count: p.count,
                                sum: p.sum,
                                quantiles,
                            });
                            c.point_or_pop(
                                metric,
                                (p.start_time_unix_nano, p.time_unix_nano, p.flags),
                                &p.attributes,
                                PointValue::Summary(i),
                                |b| {
                                    b.summaries.pop();
                                },
                            )?;
                        }
                    }
                }
            }
        }
    }
    Ok(c.tally.outcome(c.batch, policy))
}

fn number_points(
    c: &mut Conv<'_>,
    metric: u32,
    points: &[opentelemetry_proto::tonic::metrics::v1::NumberDataPoint],
) -> Result<(), DecodeError> {
    for p in points {
        let v = match p.value {
            Some(number_data_point::Value::AsDouble(d)) => Some(d),
            Some(number_data_point::Value::AsInt(i)) => Some(i as f64),
            None => None,
        };
        let v = v.filter(|v| v.is_finite()).map(PointValue::Number);
        c.point(
            metric,
            p.start_time_unix_nano,
            p.time_unix_nano,
            p.flags,
            &p.attributes,
            v,
        )?;
    }
    Ok(())
}
