//! The valid trace requests of the seed corpus, and the too-deep one the malformed seeds use.

use crate::attributes::{kv, nested_value, resource, s};
use crate::{NOW, SEC};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};

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

fn svc(n: &str) -> Option<Resource> {
    resource(vec![kv("service.name", s(n))])
}

/// The valid trace requests, by name. The second one (`POST /pay`) is the base of the
/// malformed seeds.
pub fn trace_seeds() -> Vec<(&'static str, ExportTraceServiceRequest)> {
    vec![
        (
            "one-span",
            traces(vec![rs(
                svc("checkout"),
                None,
                vec![span("GET /cart", 2, 10, vec![])],
            )]),
        ),
        ("dims-events-links-sampling", dims_events_links_sampling()),
        ("rejections", rejections()),
        ("no-service-nested-values", no_service_nested_values()),
        ("unicode-odd-ids", unicode_odd_ids()),
        ("services-operations", services_operations()),
        ("empty-request", traces(vec![])),
    ]
}

/// Dimensions from span, scope and resource attributes of every value type; events, links,
/// error status, sampling.
fn dims_events_links_sampling() -> ExportTraceServiceRequest {
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
    traces(vec![
        rs(
            payments_resource(),
            scope,
            vec![rich_span(), client, sampled],
        ),
        rs(
            svc("frontend"),
            None,
            vec![span("GET /", 2, 3, vec![kv("dim.a", s("us"))])],
        ),
    ])
}

/// A server span with attributes of every value type, an error status, a trace state, flags,
/// an event and a link.
fn rich_span() -> Span {
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
    rich
}

/// `payments` with more attributes and an entity reference.
fn payments_resource() -> Option<Resource> {
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
    res
}

/// Rejections: zero, inverted, future, late; one accepted.
fn rejections() -> ExportTraceServiceRequest {
    let mut zero = span("zero", 2, 1, vec![]);
    zero.start_time_unix_nano = 0;
    let mut inverted = span("inverted", 2, 1, vec![]);
    inverted.start_time_unix_nano = inverted.end_time_unix_nano + 1;
    let mut future = span("future", 2, 1, vec![]);
    future.start_time_unix_nano = NOW + 2 * 3600 * SEC;
    future.end_time_unix_nano = NOW + 2 * 3600 * SEC + 1;
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
    )])
}

/// No resource, a resource without service.name, a non-string service.name; nested values.
fn no_service_nested_values() -> ExportTraceServiceRequest {
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
    ])
}

/// Unicode names, empty names and ids of the wrong length.
fn unicode_odd_ids() -> ExportTraceServiceRequest {
    let mut odd = span("héllo wörld ✓ 日本", 2, 2, vec![kv("dim.a", s("ünï"))]);
    odd.trace_id = vec![1, 2, 3];
    odd.span_id = vec![];
    odd.parent_span_id = vec![];
    traces(vec![rs(
        svc("サービス"),
        None,
        vec![odd, span("", 2, 2, vec![])],
    )])
}

/// The benchmark's shape: several services and operations in one request.
fn services_operations() -> ExportTraceServiceRequest {
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
    traces(many)
}

/// A valid-looking request nested past the decoder's depth limit.
pub fn too_deep() -> ExportTraceServiceRequest {
    traces(vec![rs(
        None,
        None,
        vec![span("deep", 2, 1, vec![kv("k", nested_value(40))])],
    )])
}
