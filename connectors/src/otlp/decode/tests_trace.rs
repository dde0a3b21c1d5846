//! Trace scanner tests: the differential property against the reference decoder, and unit tests
//! of the individual rules.

use super::tests_fixtures::*;
use super::{decode_traces_proto, DecodeError, DecodeSettings, Rejections, TraceDecodeOutcome};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, ArrayValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};
use proptest::prelude::*;
use prost::Message;
use redwatch_engine::config::DimensionSource;
use redwatch_engine::model::{SourceId, SpanKind, StatusCode};

fn decode(req: &ExportTraceServiceRequest, settings: &DecodeSettings) -> TraceDecodeOutcome {
    decode_bytes(req.encode_to_vec(), settings).expect("valid request")
}

fn decode_bytes(
    buf: Vec<u8>,
    settings: &DecodeSettings,
) -> Result<TraceDecodeOutcome, DecodeError> {
    decode_traces_proto(Bytes::from(buf), SourceId(3), settings, &policy(), NOW)
}

/// `body` framed as a length-delimited field with the given key byte.
fn wrap(field_key: u8, body: Vec<u8>) -> Vec<u8> {
    let mut out = vec![field_key];
    prost::encoding::encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(&body);
    out
}

fn check_against_reference(req: &ExportTraceServiceRequest, settings: &DecodeSettings) {
    let out = decode(req, settings);
    assert_eq!(out.batch.source, SourceId(3));
    assert_eq!(
        usize::from(out.batch.dims_per_span),
        settings.dim_keys.len()
    );
    assert_eq!(
        out.batch.dim_values.len(),
        out.batch.len() * settings.dim_keys.len()
    );
    assert_eq!(flatten(&out), reference(req, settings, &policy(), NOW));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Scanner == reference decoder on prost structs, for any valid request.
    #[test]
    fn scanner_matches_reference(req in any_request()) {
        check_against_reference(&req, &settings(&["dim.a", "dim.b", "service.name", "sampling.ratio"]));
        check_against_reference(&req, &settings(&[]));
        check_against_reference(&req, &settings_from(&[
            ("dim.a", DimensionSource::Span),
            ("dim.a", DimensionSource::Scope),
            ("dim.b", DimensionSource::Resource),
            ("dim.b", DimensionSource::Any),
        ]));
    }
}

#[test]
fn dimension_sources_pick_span_scope_or_resource_attributes() {
    use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
    let rs = ResourceSpans {
        resource: Some(Resource {
            attributes: vec![
                kv_str("service.name", "checkout"),
                kv_str("deployment.environment", "prod"),
                kv_str("tier", "from-resource"),
            ],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "lib".into(),
                attributes: vec![kv_str("tier", "from-scope"), kv_str("lib.kind", "http")],
                ..Default::default()
            }),
            spans: vec![span(
                "GET /",
                vec![kv_str("http.method", "GET"), kv_str("tier", "from-span")],
            )],
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    };
    let s = settings_from(&[
        ("http.method", DimensionSource::Any),
        ("deployment.environment", DimensionSource::Resource),
        ("deployment.environment", DimensionSource::Span),
        ("tier", DimensionSource::Any),
        ("tier", DimensionSource::Scope),
        ("tier", DimensionSource::Resource),
        ("lib.kind", DimensionSource::Any),
        ("absent", DimensionSource::Any),
    ]);
    let req = request(vec![rs.clone()]);
    let flat = flatten(&decode(&req, &s));
    let want: Vec<Option<String>> = [
        Some("GET"),
        Some("prod"),
        None,
        Some("from-span"),
        Some("from-scope"),
        Some("from-resource"),
        Some("http"),
        None,
    ]
    .iter()
    .map(|v| v.map(str::to_string))
    .collect();
    assert_eq!(flat.spans[0].dims, want);
    assert_eq!(flat, reference(&req, &s, &policy(), NOW));

    // The scope may follow the spans on the wire: still applied to them.
    let ss = &rs.scope_spans[0];
    let mut ss_bytes = ScopeSpans {
        scope: None,
        ..ss.clone()
    }
    .encode_to_vec();
    ss_bytes.push(0x0a);
    ss.scope
        .as_ref()
        .unwrap()
        .encode_length_delimited(&mut ss_bytes)
        .unwrap();
    let mut rs_bytes = wrap(0x12, ss_bytes);
    rs_bytes.push(0x0a);
    rs.resource
        .as_ref()
        .unwrap()
        .encode_length_delimited(&mut rs_bytes)
        .unwrap();
    let buf = wrap(0x0a, rs_bytes);
    let flat2 = flatten(&decode_bytes(buf.clone(), &s).unwrap());
    assert_eq!(flat2.spans[0].dims, want);
    let parsed = ExportTraceServiceRequest::decode(&buf[..]).unwrap();
    assert_eq!(flat2, reference(&parsed, &s, &policy(), NOW));
}

#[test]
fn resource_after_scope_spans_is_still_applied() {
    let rs = ResourceSpans {
        resource: None,
        scope_spans: vec![ScopeSpans {
            scope: None,
            spans: vec![span("GET /", vec![kv_str("dim.a", "from-span")])],
            schema_url: String::new(),
        }],
        schema_url: "s".into(),
    };
    let resource = Resource {
        attributes: vec![
            kv_str("service.name", "checkout"),
            kv_str("dim.b", "from-res"),
        ],
        ..Default::default()
    };
    // ResourceSpans with its field 1 (resource) appended after the spans.
    let mut rs_bytes = rs.encode_to_vec();
    rs_bytes.push(0x0a);
    resource.encode_length_delimited(&mut rs_bytes).unwrap();
    let req = wrap(0x0a, rs_bytes);

    let s = settings(&["dim.a", "dim.b"]);
    let out = decode_bytes(req.clone(), &s).unwrap();
    let flat = flatten(&out);
    assert_eq!(flat.services, vec![Some("checkout".to_string())]);
    assert_eq!(
        flat.spans[0].dims,
        vec![Some("from-span".into()), Some("from-res".into())]
    );
    assert_eq!(out.spans_missing_service_name, 0);
    let parsed = ExportTraceServiceRequest::decode(&req[..]).unwrap();
    assert_eq!(flat, reference(&parsed, &s, &policy(), NOW));
}

#[test]
fn repeated_resource_and_status_merge_like_prost() {
    let rs = resource_spans(
        Some(vec![kv_str("dim.a", "first")]),
        vec![span("x", vec![])],
    );
    let mut rs_bytes = rs.encode_to_vec();
    let second = Resource {
        attributes: vec![kv_str("service.name", "svc"), kv_str("dim.a", "second")],
        ..Default::default()
    };
    rs_bytes.push(0x0a);
    second.encode_length_delimited(&mut rs_bytes).unwrap();
    let req = wrap(0x0a, rs_bytes);

    let s = settings(&["dim.a"]);
    let flat = flatten(&decode_bytes(req.clone(), &s).unwrap());
    assert_eq!(flat.services, vec![Some("svc".to_string())]);
    // First attribute with the key wins, over the merged attribute list.
    assert_eq!(flat.spans[0].dims, vec![Some("first".to_string())]);
    let parsed = ExportTraceServiceRequest::decode(&req[..]).unwrap();
    assert_eq!(flat, reference(&parsed, &s, &policy(), NOW));
}

/// A request around one span given as raw bytes.
fn request_around_span(span_bytes: Vec<u8>) -> Vec<u8> {
    wrap(0x0a, wrap(0x12, wrap(0x12, span_bytes)))
}

#[test]
fn repeated_span_fields_follow_prost() {
    use opentelemetry_proto::tonic::trace::v1::Status;
    let s = settings(&["a"]);
    let base = span("first", vec![kv_str("a", "1")]).encode_to_vec(); // status code ERROR
    let cases: Vec<(Vec<u8>, &str, StatusCode)> = vec![
        // A second status without a code keeps ERROR.
        (
            wrap(
                0x7a,
                Status {
                    message: "m".into(),
                    code: 0,
                }
                .encode_to_vec(),
            ),
            "first",
            StatusCode::Error,
        ),
        // A second status with a code overrides it.
        (
            wrap(
                0x7a,
                Status {
                    message: String::new(),
                    code: 1,
                }
                .encode_to_vec(),
            ),
            "first",
            StatusCode::Ok,
        ),
        // The last name wins.
        (wrap(0x2a, b"second".to_vec()), "second", StatusCode::Error),
    ];
    for (extra, name, status) in cases {
        let mut sb = base.clone();
        sb.extend_from_slice(&extra);
        // And a second attribute with the same key: the first one wins.
        sb.extend_from_slice(&wrap(0x4a, kv_str("a", "2").encode_to_vec()));
        let buf = request_around_span(sb);
        let flat = flatten(&decode_bytes(buf.clone(), &s).unwrap());
        assert_eq!(flat.spans[0].name, name);
        assert_eq!(flat.spans[0].status, status);
        assert_eq!(flat.spans[0].dims, vec![Some("1".to_string())]);
        let parsed = ExportTraceServiceRequest::decode(&buf[..]).unwrap();
        assert_eq!(flat, reference(&parsed, &s, &policy(), NOW));
    }
}

#[test]
fn span_fields_are_copied() {
    let mut sp = span("GET /users/{id}", vec![]);
    sp.kind = 3;
    let out = decode(
        &request(vec![resource_spans(None, vec![sp.clone()])]),
        &settings(&[]),
    );
    let f = &flatten(&out).spans[0];
    assert_eq!(f.trace_id.to_vec(), sp.trace_id);
    assert_eq!(f.span_id.to_vec(), sp.span_id);
    assert_eq!(f.parent_span_id, [9; 8]);
    assert_eq!((f.start, f.end), (NOW - 11 * SEC, NOW - 10 * SEC));
    assert_eq!(f.name, "GET /users/{id}");
    assert_eq!(f.kind, SpanKind::Client);
    assert_eq!(f.status, StatusCode::Error);
    assert_eq!(f.weight(), 1.0);
    assert_eq!(out.received, 1);
}

#[test]
fn ids_of_the_wrong_length_become_zeros_and_unknown_enums_unspecified() {
    let mut sp = span("x", vec![]);
    sp.trace_id = vec![1; 15];
    sp.span_id = vec![];
    sp.parent_span_id = vec![1; 9];
    sp.kind = 42;
    sp.status = Some(opentelemetry_proto::tonic::trace::v1::Status {
        message: "m".into(),
        code: 7,
    });
    let f = &flatten(&decode(
        &request(vec![resource_spans(None, vec![sp])]),
        &settings(&[]),
    ))
    .spans[0];
    assert_eq!(f.trace_id, [0; 16]);
    assert_eq!(f.span_id, [0; 8]);
    assert_eq!(f.parent_span_id, [0; 8]);
    assert_eq!(f.kind, SpanKind::Unspecified);
    assert_eq!(f.status, StatusCode::Unset);
}

#[test]
fn dims_come_from_span_then_resource_then_absent() {
    let req = request(vec![resource_spans(
        Some(vec![
            kv_str("service.name", "svc"),
            kv_str("region", "eu"),
            kv_str("tier", "res-tier"),
            kv(
                "arr",
                Some(Value::ArrayValue(ArrayValue { values: vec![] })),
            ),
        ]),
        vec![span(
            "x",
            vec![
                kv_str("tier", "span-tier"),
                // A non-scalar span value counts as absent: the resource's value is used.
                kv("region", Some(Value::BytesValue(vec![1, 2]))),
            ],
        )],
    )]);
    let s = settings(&["tier", "region", "missing", "arr", "service.name"]);
    let f = flatten(&decode(&req, &s));
    assert_eq!(
        f.spans[0].dims,
        vec![
            Some("span-tier".into()),
            Some("eu".into()),
            None,
            None,
            Some("svc".into())
        ]
    );
}

#[test]
fn number_and_bool_dims_are_formatted() {
    let req = request(vec![resource_spans(
        Some(vec![kv("res.int", Some(Value::IntValue(7)))]),
        vec![span(
            "x",
            vec![
                kv("i", Some(Value::IntValue(-42))),
                kv("d", Some(Value::DoubleValue(1.5))),
                kv("d2", Some(Value::DoubleValue(3.0))),
                kv("d3", Some(Value::DoubleValue(1e21))),
                kv("t", Some(Value::BoolValue(true))),
                kv("f", Some(Value::BoolValue(false))),
                kv("t2", Some(Value::BoolValue(true))),
            ],
        )],
    )]);
    let s = settings(&["i", "d", "d2", "d3", "t", "f", "t2", "res.int"]);
    let dims = flatten(&decode(&req, &s)).spans[0].dims.clone();
    let want = [
        "-42",
        "1.5",
        "3",
        "1000000000000000000000",
        "true",
        "false",
        "true",
        "7",
    ];
    assert_eq!(dims, want.map(|w| Some(w.to_string())).to_vec());
}

fn weight_of(attrs: Vec<KeyValue>, trace_state: &str) -> f64 {
    let mut sp = span("x", attrs);
    sp.trace_state = trace_state.to_string();
    flatten(&decode(
        &request(vec![resource_spans(None, vec![sp])]),
        &settings(&[]),
    ))
    .spans[0]
        .weight()
}

#[test]
fn sampling_weights() {
    let int = |k: &str, v: i64| kv(k, Some(Value::IntValue(v)));
    let dbl = |k: &str, v: f64| kv(k, Some(Value::DoubleValue(v)));
    assert_eq!(weight_of(vec![], ""), 1.0);
    assert_eq!(weight_of(vec![], "ot=th:8"), 2.0);
    assert_eq!(weight_of(vec![], "ot=rv:1234;th:c"), 4.0);
    assert_eq!(weight_of(vec![], "ot=th:0"), 1.0);
    assert_eq!(weight_of(vec![], "ot=th:XYZ"), 1.0);
    assert_eq!(
        weight_of(vec![dbl("sampling.probability", 0.1)], "ot=th:8"),
        10.0
    );
    assert_eq!(weight_of(vec![dbl("sampling.ratio", 0.5)], ""), 2.0);
    assert_eq!(
        weight_of(
            vec![
                dbl("sampling.probability", 0.25),
                int("sampling.adjusted_count", 8)
            ],
            "ot=th:8"
        ),
        8.0
    );
    assert_eq!(
        weight_of(vec![dbl("sampling.adjusted_count", 2.5)], ""),
        2.5
    );
    // A subnormal probability (1/p infinite, found by fuzzing) is invalid: the next rule applies.
    assert_eq!(
        weight_of(
            vec![dbl("sampling.probability", f64::from_bits(12))],
            "ot=th:8"
        ),
        2.0
    );
    // Invalid values are ignored, falling through to the next rule.
    assert_eq!(
        weight_of(
            vec![
                int("sampling.adjusted_count", 0),
                dbl("sampling.probability", 1.5)
            ],
            "ot=th:c"
        ),
        4.0
    );
    assert_eq!(
        weight_of(vec![kv_str("sampling.probability", "0.5")], ""),
        1.0
    );
    assert_eq!(weight_of(vec![dbl("sampling.ratio", 0.0)], ""), 1.0);
}

#[test]
fn timestamp_rejections_are_counted_with_a_message() {
    let mut zero = span("a", vec![]);
    zero.start_time_unix_nano = 0;
    let mut future = span("b", vec![]);
    future.end_time_unix_nano = NOW + 2 * 3600 * SEC;
    let ok = span("c", vec![]);
    let req = request(vec![resource_spans(None, vec![zero, future, ok])]);
    let out = decode(&req, &settings(&[]));
    assert_eq!(out.received, 3);
    assert_eq!(out.batch.len(), 1);
    assert_eq!(
        out.rejected,
        Rejections {
            invalid_timestamp: 1,
            future_timestamp: 1,
            late: 0
        }
    );
    assert_eq!(
        out.message.as_deref(),
        Some("2 spans rejected: 1 with a zero or inverted timestamp, 1 more than 1h0m0s ahead of the wall clock")
    );

    let mut inverted = span("a", vec![]);
    inverted.start_time_unix_nano = inverted.end_time_unix_nano + 1;
    let mut late = span("b", vec![]);
    late.start_time_unix_nano = NOW - 1000 * SEC;
    late.end_time_unix_nano = NOW - 999 * SEC;
    let mut no_end = span("c", vec![]);
    no_end.end_time_unix_nano = 0;
    let out = decode(
        &request(vec![resource_spans(None, vec![inverted, late, no_end])]),
        &settings(&[]),
    );
    assert_eq!(out.batch.len(), 0);
    assert_eq!(out.rejected.invalid_timestamp, 2);
    assert_eq!(out.rejected.late, 1);
    assert_eq!(
        out.message.as_deref(),
        Some("3 spans rejected: 2 with a zero or inverted timestamp, 1 too late (their window closed more than 30s before the watermark)")
    );

    let out = decode(
        &request(vec![resource_spans(None, vec![span("ok", vec![])])]),
        &settings(&[]),
    );
    assert_eq!(out.message, None);
    assert_eq!(out.rejected.total(), 0);
}

#[test]
fn spans_missing_service_name_are_counted() {
    let req = request(vec![
        resource_spans(None, vec![span("a", vec![]), span("b", vec![])]),
        resource_spans(
            Some(vec![kv("service.name", Some(Value::IntValue(5)))]),
            vec![span("c", vec![])],
        ),
        resource_spans(
            Some(vec![kv_str("service.name", "svc")]),
            vec![span("d", vec![])],
        ),
        resource_spans(Some(vec![kv_str("other", "x")]), vec![]),
    ]);
    let out = decode(&req, &settings(&[]));
    let f = flatten(&out);
    assert_eq!(f.services, vec![None, None, Some("svc".into()), None]);
    assert_eq!(out.spans_missing_service_name, 3);
    assert_eq!(
        f.spans.iter().map(|s| s.resource).collect::<Vec<_>>(),
        vec![0, 0, 1, 2]
    );
}

#[test]
fn empty_request_is_fine() {
    let out = decode_bytes(vec![], &settings(&["a"])).unwrap();
    assert_eq!(out.received, 0);
    assert!(out.batch.is_empty());
    assert_eq!(out.message, None);
}

#[test]
fn invalid_utf8_rejects_the_request_like_prost() {
    // Span name with invalid UTF-8: build a valid request with a placeholder and patch it.
    let req = request(vec![resource_spans(None, vec![span("\u{1}ZZZ", vec![])])]);
    let mut buf = req.encode_to_vec();
    let i = buf.windows(4).position(|w| w == b"\x01ZZZ").unwrap();
    buf[i + 1] = 0xff;
    assert!(ExportTraceServiceRequest::decode(&buf[..]).is_err());
    assert!(matches!(
        decode_bytes(buf, &settings(&[])),
        Err(DecodeError::InvalidUtf8 { field: "Span.name" })
    ));

    // The same in a string nobody uses (an event name) is still refused, as prost refuses it.
    let mut sp = span("x", vec![]);
    sp.events
        .push(opentelemetry_proto::tonic::trace::v1::span::Event {
            name: "\u{1}QQQ".into(),
            ..Default::default()
        });
    let mut buf = request(vec![resource_spans(None, vec![sp])]).encode_to_vec();
    let i = buf.windows(4).position(|w| w == b"\x01QQQ").unwrap();
    buf[i + 2] = 0xc3; // a lone lead byte
    assert!(ExportTraceServiceRequest::decode(&buf[..]).is_err());
    assert!(matches!(
        decode_bytes(buf, &settings(&[])),
        Err(DecodeError::InvalidUtf8 {
            field: "Event.name"
        })
    ));
}

#[test]
fn framing_errors_are_malformed() {
    let cases: &[(&str, &[u8])] = &[
        ("truncated varint", &[0x0a, 0x80]),
        ("length beyond", &[0x0a, 0x05, 0x00]),
        ("field number 0", &[0x02, 0x00]),
        ("invalid wire type", &[0x16]),
        (
            "wrong wire type for ExportTraceServiceRequest.resource_spans",
            &[0x0e],
        ),
        ("group wire type", &[0x13, 0x14]),
        (
            "wrong wire type for ExportTraceServiceRequest.resource_spans",
            &[0x08, 0x01],
        ),
        (
            "varint overflows",
            &[
                0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
            ],
        ),
        (
            "varint longer than 10 bytes",
            &[
                0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0x00,
            ],
        ),
        ("field key out of range", &[0x80, 0x80, 0x80, 0x80, 0x10]),
        ("truncated fixed64", &[0x11, 0x00]),
    ];
    for (what, bytes) in cases {
        match decode_bytes(bytes.to_vec(), &settings(&[])) {
            Err(DecodeError::Malformed(m)) => assert!(m.contains(what), "{m} vs {what}"),
            other => panic!("{what}: {other:?}"),
        }
    }
}

/// A resource whose attribute value is an array nested `levels` deep, optionally with an unknown
/// field in the innermost `AnyValue`.
fn nested_request(levels: usize, unknown_innermost: bool) -> Vec<u8> {
    let mut inner = AnyValue {
        value: Some(Value::IntValue(1)),
    }
    .encode_to_vec();
    if unknown_innermost {
        inner.extend_from_slice(&[0x48, 0x01]); // field 9, varint
    }
    for _ in 0..levels {
        // AnyValue{array_value: ArrayValue{values: [inner]}}
        let mut arr = vec![0x0a];
        prost::encoding::encode_varint(inner.len() as u64, &mut arr);
        arr.extend_from_slice(&inner);
        let mut any = vec![0x2a];
        prost::encoding::encode_varint(arr.len() as u64, &mut any);
        any.extend_from_slice(&arr);
        inner = any;
    }
    let mut kvb = vec![0x0a, 0x01, b'k', 0x12];
    prost::encoding::encode_varint(inner.len() as u64, &mut kvb);
    kvb.extend_from_slice(&inner);
    let resource = wrap(0x0a, kvb); // Resource.attributes
    let rs = wrap(0x0a, resource); // ResourceSpans.resource
    wrap(0x0a, rs) // Request.resource_spans
}

#[test]
fn nesting_limit_matches_prost() {
    let mut saw_ok = false;
    let mut saw_err = false;
    for levels in 40..52 {
        for unknown in [false, true] {
            let buf = nested_request(levels, unknown);
            let prost_ok = ExportTraceServiceRequest::decode(&buf[..]).is_ok();
            let ours = decode_bytes(buf, &settings(&["k"]));
            assert_eq!(
                prost_ok,
                ours.is_ok(),
                "levels {levels} unknown {unknown}: {ours:?}"
            );
            saw_ok |= prost_ok;
            saw_err |= !prost_ok;
        }
    }
    assert!(saw_ok && saw_err);
}

#[test]
fn long_and_non_ascii_attributes_match_the_reference() {
    let long_key = "k".repeat(200);
    let long_val = "v".repeat(300);
    let req = request(vec![resource_spans(
        Some(vec![kv_str("service.name", &"s".repeat(130))]),
        vec![span(
            &"n".repeat(1000),
            vec![
                kv_str(&long_key, &long_val),
                kv_str("dim.a", "ünïcödé"),
                kv("dim.b", Some(Value::IntValue(i64::MIN))),
            ],
        )],
    )]);
    let s = settings(&[&long_key, "dim.a", "dim.b"]);
    check_against_reference(&req, &s);
    let f = flatten(&decode(&req, &s));
    assert_eq!(f.spans[0].dims[0].as_deref(), Some(long_val.as_str()));
    assert_eq!(f.spans[0].dims[1].as_deref(), Some("ünïcödé"));
    assert_eq!(f.spans[0].dims[2].as_deref(), Some("-9223372036854775808"));
}
