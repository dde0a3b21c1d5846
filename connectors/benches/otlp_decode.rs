//! Decoding cost of OTLP trace requests: the zero-copy scanner against a full prost decode of the
//! same bytes, on a realistic request (1000 spans, 10 resources, HTTP/DB attributes, events).

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span::Event, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use redwatch_connectors::otlp::decode::{decode_traces_json, decode_traces_proto, DecodeSettings};
use redwatch_engine::config::WindowsConfig;
use redwatch_engine::model::SourceId;
use redwatch_engine::time::TimePolicy;
use std::hint::black_box;

const NOW: u64 = 1_700_000_000_000_000_000;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

fn str_kv(key: &str, value: &str) -> KeyValue {
    kv(key, Value::StringValue(value.into()))
}

/// `resources` resources with `per_resource` spans each, shaped like instrumented HTTP services.
fn request(resources: usize, per_resource: usize) -> ExportTraceServiceRequest {
    let routes = ["/api/cart", "/api/checkout", "/api/users/{id}", "/health"];
    let resource_spans = (0..resources)
        .map(|r| ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    str_kv("service.name", &format!("service-{r}")),
                    str_kv("service.version", "1.4.2"),
                    str_kv("deployment.environment", "production"),
                    str_kv("host.name", &format!("ip-10-0-0-{r}.ec2.internal")),
                    str_kv("telemetry.sdk.language", "rust"),
                    str_kv("telemetry.sdk.name", "opentelemetry"),
                    str_kv("telemetry.sdk.version", "0.31.0"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "opentelemetry-http".into(),
                    version: "0.31.0".into(),
                    ..Default::default()
                }),
                spans: (0..per_resource)
                    .map(|i| {
                        let end = NOW - 5_000_000_000 - (i as u64) * 1_000_000;
                        let route = routes[i % routes.len()];
                        Span {
                            trace_id: (0..16).map(|b| (b * 7 + i) as u8).collect(),
                            span_id: (0..8).map(|b| (b * 3 + i) as u8).collect(),
                            parent_span_id: if i % 3 == 0 { vec![] } else { vec![7; 8] },
                            trace_state: if i % 4 == 0 {
                                "ot=th:c".into()
                            } else {
                                String::new()
                            },
                            flags: 0x301,
                            name: format!("GET {route}"),
                            kind: 2,
                            start_time_unix_nano: end - 3_000_000 - (i as u64 % 97) * 10_000,
                            end_time_unix_nano: end,
                            attributes: vec![
                                str_kv("http.request.method", "GET"),
                                str_kv("http.route", route),
                                str_kv("url.path", &format!("{route}?page={i}")),
                                kv(
                                    "http.response.status_code",
                                    Value::IntValue(if i % 50 == 0 { 500 } else { 200 }),
                                ),
                                str_kv("server.address", "shop.example.com"),
                                kv("server.port", Value::IntValue(443)),
                                str_kv("network.protocol.version", "1.1"),
                                str_kv("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)"),
                            ],
                            events: if i % 10 == 0 {
                                vec![Event {
                                    time_unix_nano: end - 1_000,
                                    name: "exception".into(),
                                    attributes: vec![str_kv("exception.type", "Timeout")],
                                    dropped_attributes_count: 0,
                                }]
                            } else {
                                vec![]
                            },
                            status: Some(Status {
                                message: String::new(),
                                code: if i % 50 == 0 { 2 } else { 0 },
                            }),
                            ..Default::default()
                        }
                    })
                    .collect(),
                schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
            }],
            schema_url: String::new(),
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

fn bench_decode(c: &mut Criterion) {
    let req = request(10, 100);
    let spans = 1000u64;
    let buf = Bytes::from(req.encode_to_vec());
    let json = serde_json::to_vec(&req).expect("serializable");
    let policy = TimePolicy::new(&WindowsConfig::default());
    let settings = DecodeSettings {
        dim_keys: vec![
            "http.response.status_code".into(),
            "deployment.environment".into(),
        ],
        ..Default::default()
    };
    let out =
        decode_traces_proto(buf.clone(), SourceId(0), &settings, &policy, NOW).expect("valid");
    assert_eq!(out.batch.len() as u64, spans);

    let mut g = c.benchmark_group("otlp_decode_traces");
    g.throughput(Throughput::Elements(spans));
    g.bench_function("scanner_no_dims", |b| {
        let s = DecodeSettings::default();
        b.iter(|| {
            decode_traces_proto(black_box(buf.clone()), SourceId(0), &s, &policy, NOW)
                .map(|o| o.batch.len())
        })
    });
    g.bench_function("scanner_2_dims", |b| {
        b.iter(|| {
            decode_traces_proto(black_box(buf.clone()), SourceId(0), &settings, &policy, NOW)
                .map(|o| o.batch.len())
        })
    });
    // The server's default config: no RED dimensions, the service graph's peer and database
    // attributes (`Config::decode_dimensions`).
    g.bench_function("scanner_default_config", |b| {
        let s = DecodeSettings::from_config(
            &redwatch_operators::layout::SpanSections::default().decode_dimensions(),
            &redwatch_connectors::config::OtlpLimitsConfig::default(),
        );
        b.iter(|| {
            decode_traces_proto(black_box(buf.clone()), SourceId(0), &s, &policy, NOW)
                .map(|o| o.batch.len())
        })
    });
    g.bench_function("prost_decode", |b| {
        b.iter(|| {
            ExportTraceServiceRequest::decode(black_box(&buf[..])).map(|r| r.resource_spans.len())
        })
    });
    g.bench_function("json_2_dims", |b| {
        b.iter_batched(
            || json.clone(),
            |j: Vec<u8>| {
                decode_traces_json(&j, SourceId(0), &settings, &policy, NOW).map(|o| o.batch.len())
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
