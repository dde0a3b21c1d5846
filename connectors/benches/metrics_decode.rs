//! Decoding cost of OTLP metrics requests: the wire scanner against a prost decode plus the
//! conversion to the same `MetricBatch`, on a request shaped like an SDK export (10 resources x
//! 100 points: cumulative sums, gauges and 16-bucket histograms, three attributes each).
//!
//! `cargo bench -p redwatch-connectors --bench metrics_decode`

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use redwatch_connectors::otlp::decode::{decode_metrics_prost, decode_metrics_proto};
use redwatch_engine::config::WindowsConfig;
use redwatch_engine::model::SourceId;
use redwatch_engine::time::TimePolicy;
use std::hint::black_box;

const NOW: u64 = 1_700_000_000_000_000_000;

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value.into())),
        }),
        key_strindex: 0,
    }
}

fn attrs(i: usize) -> Vec<KeyValue> {
    vec![
        kv(
            "http.route",
            ["/api/cart", "/api/checkout", "/health"][i % 3],
        ),
        kv("http.response.status_code", ["200", "404", "500"][i % 3]),
        kv("host.name", &format!("host-{}", i % 10)),
    ]
}

fn number(i: usize, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs(i),
        start_time_unix_nano: NOW - 3_600_000_000_000,
        time_unix_nano: NOW - 1_000_000_000,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

/// 10 resources; per resource a cumulative counter, a gauge and a histogram of ~33 points each.
fn request() -> (ExportMetricsServiceRequest, usize) {
    let mut points = 0;
    let resource_metrics = (0..10)
        .map(|r| {
            let sums: Vec<_> = (0..34).map(|i| number(i, (i * 10) as f64)).collect();
            let gauges: Vec<_> = (0..33).map(|i| number(i, i as f64 * 0.5)).collect();
            let hists: Vec<_> = (0..33)
                .map(|i| HistogramDataPoint {
                    attributes: attrs(i),
                    start_time_unix_nano: NOW - 3_600_000_000_000,
                    time_unix_nano: NOW - 1_000_000_000,
                    count: 160,
                    sum: Some(1234.5),
                    bucket_counts: vec![10; 16],
                    explicit_bounds: (0..15).map(|b| (b * 10) as f64).collect(),
                    min: Some(0.5),
                    max: Some(900.0),
                    ..Default::default()
                })
                .collect();
            points += sums.len() + gauges.len() + hists.len();
            ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", &format!("service-{r}")),
                        kv("service.instance.id", &format!("instance-{r}")),
                        kv("telemetry.sdk.language", "rust"),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "app".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    }),
                    metrics: vec![
                        Metric {
                            name: "http.server.requests".into(),
                            unit: "1".into(),
                            data: Some(Data::Sum(Sum {
                                data_points: sums,
                                aggregation_temporality: 2,
                                is_monotonic: true,
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "process.memory.usage".into(),
                            unit: "By".into(),
                            data: Some(Data::Gauge(Gauge {
                                data_points: gauges,
                            })),
                            ..Default::default()
                        },
                        Metric {
                            name: "http.server.duration".into(),
                            unit: "ms".into(),
                            data: Some(Data::Histogram(Histogram {
                                data_points: hists,
                                aggregation_temporality: 2,
                            })),
                            ..Default::default()
                        },
                    ],
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }
        })
        .collect();
    (ExportMetricsServiceRequest { resource_metrics }, points)
}

fn bench(c: &mut Criterion) {
    let (req, points) = request();
    let buf = Bytes::from(req.encode_to_vec());
    let policy = TimePolicy::new(&WindowsConfig::default());
    let mut g = c.benchmark_group("metrics_decode");
    g.throughput(Throughput::Elements(points as u64));
    g.bench_function("wire_scanner", |b| {
        b.iter(|| {
            let out = decode_metrics_proto(buf.clone(), SourceId(0), &policy, NOW);
            black_box(out.map(|o| o.batch.len()).unwrap_or(0))
        })
    });
    g.bench_function("prost_then_convert", |b| {
        b.iter(|| {
            let out = decode_metrics_prost(&buf, SourceId(0), &policy, NOW);
            black_box(out.map(|o| o.batch.len()).unwrap_or(0))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
