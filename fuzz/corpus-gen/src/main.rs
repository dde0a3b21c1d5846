//! Writes the seed corpus of the fuzz targets: small valid OTLP requests in the shapes of the
//! decoder unit tests' fixtures (protobuf and OTLP/JSON), plus a few malformed ones.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml -p redwatch-fuzz-corpus-gen -- tests/fuzz-corpus`
//!
//! Every valid seed is decoded once here and must be accepted, so the corpus cannot silently rot
//! when the decoders change. File names are stable (`<n>-<what>`), so regenerating rewrites the
//! same files.

#![forbid(unsafe_code)]

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile, Exemplar, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use redwatch_connectors::otlp::decode::{
    decode_metrics_json, decode_metrics_proto, decode_traces_json, decode_traces_proto,
    DecodeSettings,
};
use redwatch_engine::config::WindowsConfig;
use redwatch_engine::model::SourceId;
use redwatch_engine::time::TimePolicy;
use std::path::{Path, PathBuf};

const SEC: u64 = 1_000_000_000;
/// Must equal `redwatch_fuzz::NOW`: the seeds' spans and points end just before it.
const NOW: u64 = 1_700_000_000 * SEC;

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        key_strindex: 0,
    }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.into())
}

fn resource(attrs: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource {
        attributes: attrs,
        ..Default::default()
    })
}

fn span(name: &str, kind: i32, ago_s: u64, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: (1..=16).collect(),
        span_id: (1..=8).collect(),
        parent_span_id: vec![9; 8],
        name: name.into(),
        kind,
        start_time_unix_nano: NOW - ago_s * SEC - 250_000_000,
        end_time_unix_nano: NOW - ago_s * SEC,
        attributes,
        status: Some(Status {
            message: String::new(),
            code: 0,
        }),
        ..Default::default()
    }
}

fn rs(
    res: Option<Resource>,
    scope: Option<InstrumentationScope>,
    spans: Vec<Span>,
) -> ResourceSpans {
    ResourceSpans {
        resource: res,
        scope_spans: vec![ScopeSpans {
            scope,
            spans,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

fn traces(resource_spans: Vec<ResourceSpans>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest { resource_spans }
}

/// The valid trace requests, by name.
fn trace_seeds() -> Vec<(&'static str, ExportTraceServiceRequest)> {
    let svc = |n: &str| resource(vec![kv("service.name", s(n))]);
    let mut out = vec![(
        "one-span",
        traces(vec![rs(
            svc("checkout"),
            None,
            vec![span("GET /cart", 2, 10, vec![])],
        )]),
    )];

    // Dimensions from span, scope and resource attributes of every value type; events, links,
    // error status, sampling.
    let mut rich = span(
        "POST /pay",
        2,
        5,
        vec![
            kv("dim.a", s("eu-west")),
            kv("dim.b", Value::IntValue(-42)),
            kv("http.status_code", Value::IntValue(500)),
            kv("retry", Value::BoolValue(true)),
            kv("ratio", Value::DoubleValue(0.25)),
            kv("sampling.adjusted_count", Value::IntValue(4)),
        ],
    );
    rich.status = Some(Status {
        message: "card declined".into(),
        code: 2,
    });
    rich.trace_state = "vendor=x,ot=rv:0123456789abcd;th:fd70a4".into();
    rich.flags = 0x301;
    rich.events = vec![span::Event {
        time_unix_nano: NOW - 5 * SEC,
        name: "exception".into(),
        attributes: vec![kv("exception.type", s("Declined"))],
        dropped_attributes_count: 1,
    }];
    rich.links = vec![span::Link {
        trace_id: vec![7; 16],
        span_id: vec![8; 8],
        trace_state: "ot=th:8".into(),
        attributes: vec![kv("link", s("batch"))],
        dropped_attributes_count: 0,
        flags: 1,
    }];
    let mut client = span(
        "SELECT orders",
        3,
        5,
        vec![kv("db.system", s("postgresql"))],
    );
    client.trace_state = "ot=th:8".into();
    let mut sampled = span(
        "sampled",
        1,
        6,
        vec![kv("sampling.probability", Value::DoubleValue(0.1))],
    );
    sampled.kind = 5;
    let scope = Some(InstrumentationScope {
        name: "io.opentelemetry.http".into(),
        version: "1.2.3".into(),
        attributes: vec![kv("dim.c", s("scope-value")), kv("dim.a", s("from-scope"))],
        dropped_attributes_count: 0,
    });
    let mut res = svc("payments");
    res.as_mut()
        .unwrap()
        .attributes
        .extend([kv("dim.b", s("resource-b")), kv("host.name", s("node-1"))]);
    res.as_mut().unwrap().entity_refs = vec![EntityRef {
        schema_url: "https://opentelemetry.io/schemas/1.30.0".into(),
        r#type: "service".into(),
        id_keys: vec!["service.name".into()],
        description_keys: vec!["host.name".into()],
    }];
    out.push((
        "dims-events-links-sampling",
        traces(vec![
            rs(res, scope, vec![rich, client, sampled]),
            rs(
                svc("frontend"),
                None,
                vec![span("GET /", 2, 3, vec![kv("dim.a", s("us"))])],
            ),
        ]),
    ));

    // Rejections: zero, inverted, future, late; one accepted.
    let mut zero = span("zero", 2, 1, vec![]);
    zero.start_time_unix_nano = 0;
    let mut inverted = span("inverted", 2, 1, vec![]);
    inverted.start_time_unix_nano = inverted.end_time_unix_nano + 1;
    let mut future = span("future", 2, 1, vec![]);
    future.start_time_unix_nano = NOW + 2 * 3600 * SEC;
    future.end_time_unix_nano = NOW + 2 * 3600 * SEC + 1;
    out.push((
        "rejections",
        traces(vec![rs(
            svc("batch"),
            None,
            vec![
                zero,
                inverted,
                future,
                span("late", 2, 500, vec![]),
                span("ok", 2, 1, vec![]),
            ],
        )]),
    ));

    // No resource, a resource without service.name, a non-string service.name; nested values.
    let nested = Value::KvlistValue(KeyValueList {
        values: vec![
            kv(
                "list",
                Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(s("x")),
                        },
                        AnyValue {
                            value: Some(Value::BytesValue(vec![0, 1, 2])),
                        },
                        AnyValue { value: None },
                    ],
                }),
            ),
            kv("n", Value::DoubleValue(f64::NAN)),
        ],
    });
    out.push((
        "no-service-nested-values",
        traces(vec![
            rs(
                None,
                None,
                vec![span("a", 0, 2, vec![kv("dim.a", nested.clone())])],
            ),
            rs(
                resource(vec![kv("other", s("x"))]),
                None,
                vec![span("b", 4, 2, vec![])],
            ),
            rs(
                resource(vec![
                    kv("service.name", Value::IntValue(7)),
                    kv("dim.b", nested),
                ]),
                None,
                vec![span(
                    "c",
                    2,
                    2,
                    vec![kv("dim.a", Value::BytesValue(vec![0xff]))],
                )],
            ),
        ]),
    ));

    // Unicode names, empty names and ids of the wrong length.
    let mut odd = span("héllo wörld ✓ 日本", 2, 2, vec![kv("dim.a", s("ünï"))]);
    odd.trace_id = vec![1, 2, 3];
    odd.span_id = vec![];
    odd.parent_span_id = vec![];
    out.push((
        "unicode-odd-ids",
        traces(vec![rs(
            svc("サービス"),
            None,
            vec![odd, span("", 2, 2, vec![])],
        )]),
    ));

    // The benchmark's shape: several services and operations in one request.
    let mut many = Vec::new();
    for svc_i in 0..4 {
        let spans = (0..6)
            .map(|op| {
                span(
                    &format!("op-{op}"),
                    if op % 2 == 0 { 2 } else { 3 },
                    1 + op as u64,
                    vec![kv("http.route", s(&format!("/r/{op}")))],
                )
            })
            .collect();
        many.push(rs(svc(&format!("svc-{svc_i}")), None, spans));
    }
    out.push(("services-operations", traces(many)));
    out.push(("empty-request", traces(vec![])));
    out
}

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

/// The valid metrics requests, by name.
fn metric_seeds() -> Vec<(&'static str, ExportMetricsServiceRequest)> {
    use number_data_point::Value as N;
    let svc = |n: &str| resource(vec![kv("service.name", s(n)), kv("host", s("a"))]);
    let exemplar = Exemplar {
        filtered_attributes: vec![kv("user", s("u1"))],
        time_unix_nano: NOW - 3 * SEC,
        span_id: vec![3; 8],
        trace_id: vec![4; 16],
        value: Some(exemplar::Value::AsDouble(0.7)),
    };
    let gauge = metric(
        "cpu",
        "1",
        Data::Gauge(Gauge {
            data_points: vec![
                nd(2, N::AsDouble(0.5), vec![kv("core", Value::IntValue(0))]),
                nd(2, N::AsInt(-3), vec![kv("core", Value::IntValue(1))]),
            ],
        }),
    );
    let sum = |temporality: i32, monotonic: bool| {
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
    };
    let histogram = metric(
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
                exemplars: vec![exemplar.clone()],
                flags: 0,
                min: Some(0.5),
                max: Some(80.0),
            }],
            aggregation_temporality: 2,
        }),
    );
    let exp = metric(
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
                exemplars: vec![exemplar],
                min: Some(-1.0),
                max: Some(2.0),
                zero_threshold: 1e-9,
            }],
            aggregation_temporality: 1,
        }),
    );
    let summary = metric(
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
    );
    let mut no_value = nd(1, N::AsDouble(1.0), vec![]);
    no_value.flags = 1; // NO_RECORDED_VALUE
    let mut zero_time = nd(1, N::AsDouble(1.0), vec![]);
    zero_time.time_unix_nano = 0;
    let mut future = nd(1, N::AsDouble(1.0), vec![]);
    future.time_unix_nano = NOW + 2 * 3600 * SEC;
    let late = nd(500, N::AsDouble(1.0), vec![]);
    let edge = metric(
        "edge",
        "",
        Data::Gauge(Gauge {
            data_points: vec![no_value, zero_time, future, late],
        }),
    );
    let no_data = Metric {
        name: "no.data".into(),
        ..Default::default()
    };
    vec![
        ("gauge", metrics(vec![rm(svc("node"), vec![gauge.clone()])])),
        (
            "sums",
            metrics(vec![rm(
                svc("api"),
                vec![sum(1, true), sum(2, true), sum(2, false)],
            )]),
        ),
        ("histogram", metrics(vec![rm(svc("api"), vec![histogram])])),
        ("exp-histogram", metrics(vec![rm(svc("rpc"), vec![exp])])),
        ("summary", metrics(vec![rm(None, vec![summary])])),
        (
            "edge-points-no-data",
            metrics(vec![
                rm(
                    resource(vec![kv("service.name", Value::IntValue(1))]),
                    vec![edge, no_data],
                ),
                rm(svc("日本"), vec![gauge]),
            ]),
        ),
        ("empty-request", metrics(vec![])),
    ]
}

/// An attribute value nested `levels` kvlists deep (3 messages a level).
fn nested_value(levels: usize) -> Value {
    let mut v = s("leaf");
    for _ in 0..levels {
        v = Value::KvlistValue(KeyValueList {
            values: vec![kv("k", v)],
        });
    }
    v
}

/// Malformed protobuf derived from a valid request, by name: `deep` is a valid-looking request
/// nested past the depth limit.
fn malformed_proto(
    valid: &[u8],
    utf8_target: &[u8],
    deep: Vec<u8>,
) -> Vec<(&'static str, Vec<u8>)> {
    let mut bad_utf8 = valid.to_vec();
    if let Some(i) = bad_utf8
        .windows(utf8_target.len())
        .position(|w| w == utf8_target)
    {
        bad_utf8[i] = 0xff;
    }
    vec![
        ("truncated", valid[..valid.len() * 2 / 3].to_vec()),
        ("invalid-utf8", bad_utf8),
        ("length-past-end", vec![0x0a, 0x7f, 0x12, 0x00]),
        (
            "varint-overflow",
            vec![
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ],
        ),
        ("wrong-wire-type", vec![0x08, 0x01]),
        ("group-wire-type", vec![0x7b, 0x7c]),
        ("too-deep", deep),
    ]
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("create corpus dir");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn main() {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "tests/fuzz-corpus".into()),
    );
    let policy = TimePolicy::new(&WindowsConfig::default());
    policy.publish_watermark(NOW - 60 * SEC);
    let settings = DecodeSettings {
        dim_keys: vec!["dim.a".into(), "service.name".into()],
        dim_sources: Vec::new(),
        ..Default::default()
    };
    let mut total = 0usize;
    let mut put = |target: &str, name: String, bytes: &[u8]| {
        total += bytes.len();
        write(&root.join(target), &name, bytes);
    };

    let trace = trace_seeds();
    for (i, (name, req)) in trace.iter().enumerate() {
        let pb = req.encode_to_vec();
        let out = decode_traces_proto(
            Bytes::from(pb.clone()),
            SourceId(0),
            &settings,
            &policy,
            NOW,
        )
        .unwrap_or_else(|e| panic!("trace seed {name} refused: {e}"));
        assert_eq!(
            out.received as usize,
            req.resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .map(|s| s.spans.len())
                .sum::<usize>()
        );
        put("trace_proto", format!("{i:02}-{name}"), &pb);
        let json = serde_json::to_vec(req).expect("json");
        decode_traces_json(&json, SourceId(0), &settings, &policy, NOW)
            .unwrap_or_else(|e| panic!("trace JSON seed {name} refused: {e}"));
        put("traces_json", format!("{i:02}-{name}.json"), &json);
    }
    let rich = trace[1].1.encode_to_vec();
    let deep = traces(vec![rs(
        None,
        None,
        vec![span("deep", 2, 1, vec![kv("k", nested_value(40))])],
    )]);
    for (name, bytes) in malformed_proto(&rich, b"POST /pay", deep.encode_to_vec()) {
        assert!(
            decode_traces_proto(
                Bytes::from(bytes.clone()),
                SourceId(0),
                &settings,
                &policy,
                NOW
            )
            .is_err(),
            "malformed trace seed {name} accepted"
        );
        put("trace_proto", format!("bad-{name}"), &bytes);
    }

    let metric_reqs = metric_seeds();
    for (i, (name, req)) in metric_reqs.iter().enumerate() {
        let pb = req.encode_to_vec();
        decode_metrics_proto(Bytes::from(pb.clone()), SourceId(3), &policy, NOW)
            .unwrap_or_else(|e| panic!("metrics seed {name} refused: {e}"));
        put("metrics_proto", format!("{i:02}-{name}"), &pb);
        let json = serde_json::to_vec(req).expect("json");
        decode_metrics_json(&json, SourceId(3), &policy, NOW)
            .unwrap_or_else(|e| panic!("metrics JSON seed {name} refused: {e}"));
        put("metrics_json", format!("{i:02}-{name}.json"), &json);
    }
    let hist = metric_reqs[2].1.encode_to_vec();
    let deep = metrics(vec![rm(
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
    )]);
    for (name, bytes) in malformed_proto(&hist, b"http.server.duration", deep.encode_to_vec()) {
        assert!(
            decode_metrics_proto(Bytes::from(bytes.clone()), SourceId(3), &policy, NOW).is_err(),
            "malformed metrics seed {name} accepted"
        );
        put("metrics_proto", format!("bad-{name}"), &bytes);
    }

    // Malformed JSON: syntax, wrong types, out-of-range numbers, bad ids, a data member serde
    // would otherwise swallow.
    let bad_json: [(&str, &str, &str); 8] = [
        (
            "traces_json",
            "bad-syntax.json",
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"#,
        ),
        (
            "traces_json",
            "bad-type.json",
            r#"{"resourceSpans":{"scopeSpans":[]}}"#,
        ),
        (
            "traces_json",
            "bad-ids-times.json",
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","spanId":"0102","name":"x","kind":2,"startTimeUnixNano":"18446744073709551616","endTimeUnixNano":"1"}]}]}]}"#,
        ),
        ("traces_json", "not-an-object.json", "[1,2,3]"),
        (
            "metrics_json",
            "bad-syntax.json",
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","gauge":"#,
        ),
        (
            "metrics_json",
            "swallowed-data.json",
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","gauge":{"dataPoints":"no"}}]}]}]}"#,
        ),
        (
            "metrics_json",
            "bad-numbers.json",
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"x","sum":{"aggregationTemporality":9,"dataPoints":[{"timeUnixNano":"-1","asInt":"9223372036854775808"}]}}]}]}]}"#,
        ),
        ("metrics_json", "not-an-object.json", "null"),
    ];
    for (target, name, body) in bad_json {
        put(target, name.to_string(), body.as_bytes());
    }
    println!("wrote {total} bytes of seeds under {}", root.display());
}
