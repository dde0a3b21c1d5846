//! The valid metrics requests of the seed corpus, and the too-deep one the malformed seeds use.

use crate::attributes::{kv, nested_value, resource, s};
use crate::{NOW, SEC};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    number_data_point::Value as N, summary_data_point::ValueAtQuantile, Exemplar,
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

fn nd(ago_s: u64, v: number_data_point::Value, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: NOW - 60 * SEC,
        time_unix_nano: NOW - ago_s * SEC,
        value: Some(v),
        ..Default::default()
    }
}

fn metric(name: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        description: "d".into(),
        unit: unit.into(),
        metadata: vec![],
        data: Some(data),
    }
}

fn rm(res: Option<Resource>, metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: res,
        scope_metrics: vec![ScopeMetrics {
            scope: Some(InstrumentationScope {
                name: "meter".into(),
                ..Default::default()
            }),
            metrics,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

fn metrics(resource_metrics: Vec<ResourceMetrics>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest { resource_metrics }
}

fn svc(n: &str) -> Option<Resource> {
    resource(vec![kv("service.name", s(n)), kv("host", s("a"))])
}

/// The valid metrics requests, by name. The third one (`histogram`) is the base of the
/// malformed seeds.
pub fn metric_seeds() -> Vec<(&'static str, ExportMetricsServiceRequest)> {
    let no_data = Metric {
        name: "no.data".into(),
        ..Default::default()
    };
    vec![
        ("gauge", metrics(vec![rm(svc("node"), vec![gauge()])])),
        (
            "sums",
            metrics(vec![rm(
                svc("api"),
                vec![sum(1, true), sum(2, true), sum(2, false)],
            )]),
        ),
        (
            "histogram",
            metrics(vec![rm(svc("api"), vec![histogram()])]),
        ),
        (
            "exp-histogram",
            metrics(vec![rm(svc("rpc"), vec![exp_histogram()])]),
        ),
        ("summary", metrics(vec![rm(None, vec![summary()])])),
        (
            "edge-points-no-data",
            metrics(vec![
                rm(
                    resource(vec![kv("service.name", Value::IntValue(1))]),
                    vec![edge_points(), no_data],
                ),
                rm(svc("日本"), vec![gauge()]),
            ]),
        ),
        ("empty-request", metrics(vec![])),
    ]
}

fn exemplar() -> Exemplar {
    Exemplar {
        filtered_attributes: vec![kv("user", s("u1"))],
        time_unix_nano: NOW - 3 * SEC,
        span_id: vec![3; 8],
        trace_id: vec![4; 16],
        value: Some(exemplar::Value::AsDouble(0.7)),
    }
}

fn gauge() -> Metric {
    metric(
        "cpu",
        "1",
        Data::Gauge(Gauge {
            data_points: vec![
                nd(2, N::AsDouble(0.5), vec![kv("core", Value::IntValue(0))]),
                nd(2, N::AsInt(-3), vec![kv("core", Value::IntValue(1))]),
            ],
        }),
    )
}

fn sum(temporality: i32, monotonic: bool) -> Metric {
    metric(
        "http.server.requests",
        "{request}",
        Data::Sum(Sum {
            data_points: vec![nd(
                1,
                N::AsInt(1234),
                vec![kv("route", s("/a")), kv("ok", Value::BoolValue(true))],
            )],
            aggregation_temporality: temporality,
            is_monotonic: monotonic,
        }),
    )
}

fn histogram() -> Metric {
    metric(
        "http.server.duration",
        "ms",
        Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                attributes: vec![kv("route", s("/a"))],
                start_time_unix_nano: NOW - 60 * SEC,
                time_unix_nano: NOW - SEC,
                count: 10,
                sum: Some(123.5),
                bucket_counts: vec![1, 4, 3, 2],
                explicit_bounds: vec![5.0, 10.0, 50.0],
                exemplars: vec![exemplar()],
                flags: 0,
                min: Some(0.5),
                max: Some(80.0),
            }],
            aggregation_temporality: 2,
        }),
    )
}

fn exp_histogram() -> Metric {
    metric(
        "rpc.duration",
        "s",
        Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {
                attributes: vec![],
                start_time_unix_nano: NOW - 60 * SEC,
                time_unix_nano: NOW - SEC,
                count: 9,
                sum: Some(4.5),
                scale: 3,
                zero_count: 1,
                positive: Some(Buckets {
                    offset: -2,
                    bucket_counts: vec![1, 2, 3],
                }),
                negative: Some(Buckets {
                    offset: 1,
                    bucket_counts: vec![2],
                }),
                flags: 0,
                exemplars: vec![exemplar()],
                min: Some(-1.0),
                max: Some(2.0),
                zero_threshold: 1e-9,
            }],
            aggregation_temporality: 1,
        }),
    )
}

fn summary() -> Metric {
    metric(
        "gc.pause",
        "ms",
        Data::Summary(Summary {
            data_points: vec![SummaryDataPoint {
                attributes: vec![],
                start_time_unix_nano: NOW - 60 * SEC,
                time_unix_nano: NOW - SEC,
                count: 100,
                sum: 250.0,
                quantile_values: vec![
                    ValueAtQuantile {
                        quantile: 0.5,
                        value: 2.0,
                    },
                    ValueAtQuantile {
                        quantile: 0.99,
                        value: 9.5,
                    },
                ],
                flags: 0,
            }],
        }),
    )
}

/// Points without a value, with a zero time, in the future, late.
fn edge_points() -> Metric {
    let mut no_value = nd(1, N::AsDouble(1.0), vec![]);
    no_value.flags = 1; // NO_RECORDED_VALUE
    let mut zero_time = nd(1, N::AsDouble(1.0), vec![]);
    zero_time.time_unix_nano = 0;
    let mut future = nd(1, N::AsDouble(1.0), vec![]);
    future.time_unix_nano = NOW + 2 * 3600 * SEC;
    let late = nd(500, N::AsDouble(1.0), vec![]);
    metric(
        "edge",
        "",
        Data::Gauge(Gauge {
            data_points: vec![no_value, zero_time, future, late],
        }),
    )
}

/// A valid-looking request nested past the decoder's depth limit.
pub fn too_deep() -> ExportMetricsServiceRequest {
    metrics(vec![rm(
        None,
        vec![metric(
            "deep",
            "",
            Data::Gauge(Gauge {
                data_points: vec![nd(
                    1,
                    number_data_point::Value::AsInt(1),
                    vec![kv("k", nested_value(40))],
                )],
            }),
        )],
    )])
}
