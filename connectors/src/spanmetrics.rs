//! The OTLP form of RED windows, as the Collector's spanmetrics connector writes it: a
//! `traces.span.metrics.calls` monotonic Sum and a `traces.span.metrics.duration` Histogram
//! (unit `ms`), one data point per series and status code, with the connector's attribute keys
//! (`service.name`, `span.name`, `span.kind`, `status.code`, then the configured dimensions by
//! their attribute names). A Prometheus exporter downstream turns those keys into the
//! `service_name`, `span_name`, … labels of docs/design.md ("Signals that leave"), so both paths end up with the same series.
//!
//! Shared by the OTLP exporter (`otlp_exporter::red_metrics`, delta or cumulative) and the Kafka
//! sink (`kafka::records`, one delta record per window). Pure: builds messages, no I/O.

use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, Sum,
};
use redwatch_engine::model::StatusCode;
use redwatch_operators::red::SeriesKey;

/// OTLP name of the calls Sum.
pub const CALLS: &str = "traces.span.metrics.calls";
/// OTLP name of the duration Histogram (unit `ms`).
pub const DURATION: &str = "traces.span.metrics.duration";

/// A string attribute.
pub fn kv(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
        ..Default::default()
    }
}

/// The instrumentation scope of everything redwatch writes.
pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "redwatch".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    }
}

/// The attributes of a series' data points without the status: `service.name`, `span.name`,
/// `span.kind`, non-empty dimensions under their attribute names (`dim_names`, in config
/// order), and `otel_metric_overflow="true"` for the overflow series.
pub fn series_attributes(series: &SeriesKey, dim_names: &[String]) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(4 + dim_names.len());
    if series.overflow {
        out.push(kv("otel_metric_overflow", "true"));
    } else {
        out.push(kv("service.name", &series.service_name));
        out.push(kv("span.name", &series.span_name));
        out.push(kv("span.kind", series.kind.as_label()));
    }
    for (name, v) in dim_names.iter().zip(series.dims.iter()) {
        if !v.is_empty() {
            out.push(kv(name, v));
        }
    }
    out
}

/// `base` plus `status.code`.
pub fn with_status(base: &[KeyValue], status: StatusCode) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(base.len() + 1);
    out.extend_from_slice(base);
    out.push(kv("status.code", status.as_label()));
    out
}

/// One series and status over one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct RedPoint {
    pub attributes: Vec<KeyValue>,
    pub start: u64,
    pub time: u64,
    /// Sampling-weighted span count (written as an integer when it is whole).
    pub calls: f64,
    pub sum_ms: f64,
    /// Non-cumulative bucket counts, `bounds + 1` long (last = +Inf); weighted counts are
    /// rounded, as OTLP bucket counts are integers, and the point's count is their sum.
    pub buckets: Vec<f64>,
    /// Smallest and largest duration, when the interval's are known (a delta point).
    pub min_max: Option<(f64, f64)>,
}

fn calls_value(n: f64) -> number_data_point::Value {
    if n.fract() == 0.0 && (0.0..i64::MAX as f64).contains(&n) {
        number_data_point::Value::AsInt(n as i64)
    } else {
        number_data_point::Value::AsDouble(n)
    }
}

/// The calls Sum and the duration Histogram of `points`.
pub fn metrics(
    points: &[RedPoint],
    bounds: &[f64],
    temporality: AggregationTemporality,
) -> [Metric; 2] {
    let mut calls = Vec::with_capacity(points.len());
    let mut durations = Vec::with_capacity(points.len());
    for p in points {
        calls.push(NumberDataPoint {
            attributes: p.attributes.clone(),
            start_time_unix_nano: p.start,
            time_unix_nano: p.time,
            value: Some(calls_value(p.calls)),
            ..Default::default()
        });
        let bucket_counts: Vec<u64> = p
            .buckets
            .iter()
            .map(|b| b.max(0.0).round() as u64)
            .collect();
        durations.push(HistogramDataPoint {
            attributes: p.attributes.clone(),
            start_time_unix_nano: p.start,
            time_unix_nano: p.time,
            count: bucket_counts.iter().sum(),
            sum: Some(p.sum_ms),
            bucket_counts,
            explicit_bounds: bounds.to_vec(),
            min: p.min_max.map(|m| m.0),
            max: p.min_max.map(|m| m.1),
            ..Default::default()
        });
    }
    let t = temporality as i32;
    [
        Metric {
            name: CALLS.to_string(),
            description: "Spans per series, counted in event-time windows (sampling-weighted)."
                .to_string(),
            unit: "1".to_string(),
            data: Some(metric::Data::Sum(Sum {
                data_points: calls,
                aggregation_temporality: t,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        Metric {
            name: DURATION.to_string(),
            description: "Span duration per series in milliseconds.".to_string(),
            unit: "ms".to_string(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: durations,
                aggregation_temporality: t,
            })),
            ..Default::default()
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use redwatch_engine::model::SpanKind;

    fn key(overflow: bool) -> SeriesKey {
        SeriesKey {
            service_name: "cart".into(),
            span_name: "GET /cart".into(),
            kind: SpanKind::Server,
            dims: vec!["GET".into(), "".into()].into(),
            overflow,
        }
    }

    fn attrs(kvs: &[KeyValue]) -> Vec<(String, String)> {
        kvs.iter()
            .map(|kv| match &kv.value.as_ref().unwrap().value {
                Some(any_value::Value::StringValue(s)) => (kv.key.clone(), s.clone()),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn attributes_use_the_spanmetrics_keys_and_skip_empty_dimensions() {
        let dims = [
            "http.method".to_string(),
            "deployment.environment".to_string(),
        ];
        let base = series_attributes(&key(false), &dims);
        let got = attrs(&with_status(&base, StatusCode::Error));
        let want: Vec<(String, String)> = [
            ("service.name", "cart"),
            ("span.name", "GET /cart"),
            ("span.kind", "SPAN_KIND_SERVER"),
            ("http.method", "GET"),
            ("status.code", "STATUS_CODE_ERROR"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(got, want);
        let overflow = attrs(&series_attributes(&key(true), &dims));
        assert_eq!(overflow[0], ("otel_metric_overflow".into(), "true".into()));
        assert!(!overflow.iter().any(|(k, _)| k == "service.name"));
    }

    #[test]
    fn whole_counts_are_integers_and_buckets_are_rounded() {
        let p = RedPoint {
            attributes: vec![],
            start: 1,
            time: 2,
            calls: 3.0,
            sum_ms: 12.5,
            buckets: vec![1.4, 1.6, 0.0],
            min_max: Some((1.0, 9.0)),
        };
        let [calls, duration] = metrics(&[p], &[2.0, 4.0], AggregationTemporality::Delta);
        let Some(metric::Data::Sum(s)) = calls.data else {
            panic!("calls is a sum")
        };
        assert!(s.is_monotonic);
        assert_eq!(
            s.data_points[0].value,
            Some(number_data_point::Value::AsInt(3))
        );
        let Some(metric::Data::Histogram(h)) = duration.data else {
            panic!("duration is a histogram")
        };
        let d = &h.data_points[0];
        assert_eq!(d.bucket_counts, vec![1, 2, 0]);
        assert_eq!(d.count, 3);
        assert_eq!((d.min, d.max), (Some(1.0), Some(9.0)));
        assert_eq!(duration.unit, "ms");
        assert_eq!(
            calls_value(2.5),
            number_data_point::Value::AsDouble(2.5),
            "weighted counts stay fractional"
        );
    }
}
