//! OTLP/JSON traces (which OTLP/JSON forms the opentelemetry-proto serde types accept) and the
//! metrics counters.

use super::tests_fixtures::*;
use super::{
    decode_metrics_json, decode_metrics_proto, decode_traces_json, DecodeError, Rejections,
    TraceDecodeOutcome,
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use prost::Message;
use redwatch_engine::model::{SourceId, SpanKind, StatusCode};

fn json(body: &str, dims: &[&str]) -> Result<TraceDecodeOutcome, DecodeError> {
    decode_traces_json(
        body.as_bytes(),
        SourceId(1),
        &settings(dims),
        &policy(),
        NOW,
    )
}

/// A one-span OTLP/JSON request; `span_fields` is spliced into the span object.
fn one_span(span_fields: &str) -> String {
    format!(
        r#"{{"resourceSpans":[{{
            "resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"cart"}}}}]}},
            "scopeSpans":[{{"scope":{{"name":"lib","version":"1"}},"spans":[{{
                "traceId":"5b8efff798038103d269b633813fc60c",
                "spanId":"eee19b7ec3c1b174",
                "parentSpanId":"eee19b7ec3c1b173",
                "name":"GET /cart",
                {span_fields}
            }}]}}]
        }}]}}"#
    )
}

fn times(start: &str, end: &str) -> String {
    format!(r#""startTimeUnixNano":{start},"endTimeUnixNano":{end}"#)
}

#[test]
fn json_happy_path_with_hex_ids_and_string_timestamps() {
    let start = NOW - 2 * SEC;
    let end = NOW - SEC;
    let body = one_span(&format!(
        r#"{}, "kind":2, "status":{{"code":2,"message":"boom"}},
           "traceState":"ot=th:8",
           "flags":257, "droppedAttributesCount":0,
           "attributes":[
             {{"key":"http.method","value":{{"stringValue":"GET"}}}},
             {{"key":"n","value":{{"intValue":"42"}}}},
             {{"key":"m","value":{{"intValue":43}}}},
             {{"key":"d","value":{{"doubleValue":2.5}}}},
             {{"key":"d2","value":{{"doubleValue":3}}}},
             {{"key":"b","value":{{"boolValue":true}}}},
             {{"key":"arr","value":{{"arrayValue":{{"values":[{{"stringValue":"x"}},{{"intValue":"1"}}]}}}}}},
             {{"key":"kv","value":{{"kvlistValue":{{"values":[{{"key":"a","value":{{"boolValue":false}}}}]}}}}}},
             {{"key":"raw","value":{{"bytesValue":"AQID"}}}}
           ],
           "events":[{{"timeUnixNano":"{end}","name":"ev","attributes":[]}}],
           "links":[{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b170"}}],
           "someUnknownField":{{"ignored":true}}"#,
        times(&format!("\"{start}\""), &format!("\"{end}\""))
    ));
    let out = json(
        &body,
        &["http.method", "n", "m", "d", "d2", "b", "arr", "kv", "raw"],
    )
    .unwrap();
    let f = flatten(&out);
    assert_eq!(f.services, vec![Some("cart".into())]);
    assert_eq!(f.received, 1);
    let sp = &f.spans[0];
    assert_eq!(
        sp.trace_id,
        [
            0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f,
            0xc6, 0x0c
        ]
    );
    assert_eq!(sp.span_id, [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]);
    assert_eq!(
        sp.parent_span_id,
        [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x73]
    );
    assert_eq!((sp.start, sp.end), (start, end));
    assert_eq!(sp.name, "GET /cart");
    assert_eq!(sp.kind, SpanKind::Server);
    assert_eq!(sp.status, StatusCode::Error);
    assert_eq!(sp.weight(), 2.0);
    let want: Vec<Option<String>> = ["GET", "42", "43", "2.5", "3", "true"]
        .iter()
        .map(|s| Some(s.to_string()))
        .chain([None, None, None])
        .collect();
    assert_eq!(sp.dims, want);
}

#[test]
fn json_timestamps_as_numbers_and_other_standard_forms() {
    let (start, end) = (NOW - 2 * SEC, NOW - SEC);
    // 64-bit integers as JSON numbers, upper-case hex ids, empty parent id, kind as a number.
    let body = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{
            "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
            "parentSpanId":"","name":"n","kind":3,{}
        }}]}}]}}]}}"#,
        times(&start.to_string(), &end.to_string())
    );
    let f = flatten(&json(&body, &[]).unwrap());
    assert_eq!(f.services, vec![None]);
    assert_eq!(f.missing_service, 1);
    assert_eq!((f.spans[0].start, f.spans[0].end), (start, end));
    assert_eq!(f.spans[0].trace_id[0], 0x5b);
    assert_eq!(f.spans[0].parent_span_id, [0; 8]);
    assert_eq!(f.spans[0].kind, SpanKind::Client);

    // Missing optional members default, an empty object is an empty request.
    assert_eq!(json("{}", &[]).unwrap().received, 0);
    assert_eq!(json(r#"{"resourceSpans":[]}"#, &[]).unwrap().received, 0);
}

#[test]
fn json_time_checks_apply() {
    let body = one_span(&times("\"0\"", &format!("\"{}\"", NOW - SEC)));
    let out = json(&body, &[]).unwrap();
    assert_eq!(out.rejected.invalid_timestamp, 1);
    assert_eq!(
        out.message.as_deref(),
        Some("1 span rejected: 1 with a zero or inverted timestamp")
    );
}

/// Forms the OTLP/JSON spec does not require and that the serde types refuse (documented in the
/// decoder's report): enum names instead of integers, and non-hex ids.
#[test]
fn json_non_standard_forms_are_refused() {
    let end = format!("\"{}\"", NOW - SEC);
    for extra in [
        format!(r#"{}, "kind":"SPAN_KIND_SERVER""#, times(&end, &end)),
        format!(
            r#"{}, "status":{{"code":"STATUS_CODE_ERROR"}}"#,
            times(&end, &end)
        ),
    ] {
        assert!(
            matches!(json(&one_span(&extra), &[]), Err(DecodeError::Json(_))),
            "{extra}"
        );
    }
    let bad_id = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"not-hex"}]}]}]}"#;
    assert!(matches!(json(bad_id, &[]), Err(DecodeError::Json(_))));
}

/// Forms the general protobuf JSON mapping allows but opentelemetry-proto 0.33's serde types
/// refuse: doubles as strings ("NaN", "Infinity", "1.5"), 32-bit integers as strings, and `null`
/// for a repeated field. The OTLP/JSON spec does not require them and SDK exporters do not write
/// them (NaN attribute values aside). Pinned here so a dependency update that accepts them is
/// noticed.
#[test]
fn json_forms_the_serde_types_refuse() {
    let end = format!("\"{}\"", NOW - SEC);
    let t = times(&end, &end);
    for extra in [
        format!(r#"{t}, "attributes":[{{"key":"d","value":{{"doubleValue":"NaN"}}}}]"#),
        format!(r#"{t}, "attributes":[{{"key":"d","value":{{"doubleValue":"1.5"}}}}]"#),
        format!(r#"{t}, "droppedAttributesCount":"3""#),
        format!(r#"{t}, "kind":"2""#),
        format!(r#"{t}, "attributes":null"#),
    ] {
        assert!(
            matches!(json(&one_span(&extra), &[]), Err(DecodeError::Json(_))),
            "{extra}"
        );
    }
    // snake_case member names are unknown fields, ignored (here: the span has no start time).
    let body = one_span(&format!(
        r#""start_time_unix_nano":"1", "endTimeUnixNano":{end}"#
    ));
    assert_eq!(json(&body, &[]).unwrap().rejected.invalid_timestamp, 1);
}

#[test]
fn bad_json_is_reported_with_line_and_column() {
    match json("{\"resourceSpans\": [\n  {,}]}", &[]) {
        Err(DecodeError::Json(m)) => assert!(m.contains("line 2 column"), "{m}"),
        other => panic!("{other:?}"),
    }
    match json(r#"{"resourceSpans": 5}"#, &[]) {
        Err(DecodeError::Json(m)) => assert!(m.contains("line 1 column"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(json("", &[]), Err(DecodeError::Json(_))));
    let e = json("[", &[]).unwrap_err();
    assert!(e.to_string().starts_with("invalid OTLP/JSON: "), "{e}");
}

// ---- metrics ----

fn number_point(t: u64) -> NumberDataPoint {
    NumberDataPoint {
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(1.0)),
        ..Default::default()
    }
}

fn metric(data: Data) -> Metric {
    Metric {
        name: "m".into(),
        data: Some(data),
        ..Default::default()
    }
}

/// One metric of every type; each has one point per timestamp in `ts`.
fn all_types(ts: &[u64]) -> ExportMetricsServiceRequest {
    let metrics = vec![
        metric(Data::Gauge(Gauge {
            data_points: ts.iter().map(|&t| number_point(t)).collect(),
        })),
        metric(Data::Sum(Sum {
            data_points: ts.iter().map(|&t| number_point(t)).collect(),
            aggregation_temporality: 1,
            is_monotonic: true,
        })),
        metric(Data::Histogram(Histogram {
            data_points: ts
                .iter()
                .map(|&t| HistogramDataPoint {
                    time_unix_nano: t,
                    count: 2,
                    bucket_counts: vec![1, 1],
                    explicit_bounds: vec![5.0],
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: 2,
        })),
        metric(Data::ExponentialHistogram(ExponentialHistogram {
            data_points: ts
                .iter()
                .map(|&t| ExponentialHistogramDataPoint {
                    time_unix_nano: t,
                    count: 1,
                    positive: Some(Buckets {
                        offset: 1,
                        bucket_counts: vec![1],
                    }),
                    ..Default::default()
                })
                .collect(),
            aggregation_temporality: 2,
        })),
        metric(Data::Summary(Summary {
            data_points: ts
                .iter()
                .map(|&t| SummaryDataPoint {
                    time_unix_nano: t,
                    count: 1,
                    ..Default::default()
                })
                .collect(),
        })),
        Metric::default(), // no data: no points
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn metrics_points_of_every_type_are_counted() {
    let p = policy();
    let req = all_types(&[NOW - SEC, NOW - 2 * SEC]);
    let out = decode_metrics_proto(req.encode_to_vec().into(), SourceId(1), &p, NOW).unwrap();
    assert_eq!((out.received, out.accepted), (10, 10));
    assert_eq!(out.rejected, Rejections::default());
    assert_eq!(out.message, None);

    // Per type, one zero, one future and one late point (its window was purged: the fixture's
    // watermark is at NOW - 60 s) and one good one.
    let req = all_types(&[0, NOW + 2 * 3600 * SEC, NOW - 10_000 * SEC, NOW - SEC]);
    let out = decode_metrics_proto(req.encode_to_vec().into(), SourceId(1), &p, NOW).unwrap();
    assert_eq!((out.received, out.accepted), (20, 5));
    assert_eq!(
        out.rejected,
        Rejections {
            invalid_timestamp: 5,
            future_timestamp: 5,
            late: 5
        }
    );
    assert_eq!(
        out.message.as_deref(),
        Some("15 data points rejected: 5 with a zero timestamp, 5 more than 1h0m0s ahead of the wall clock, 5 too late (their window closed more than 30s before the watermark)")
    );

    // The JSON path counts the same.
    let body = serde_json::to_vec(&req).unwrap();
    let j = decode_metrics_json(&body, SourceId(1), &p, NOW).unwrap();
    assert_eq!(
        (j.received, j.accepted, j.rejected, j.message),
        (out.received, out.accepted, out.rejected, out.message)
    );
    assert_eq!(j.batch.len(), out.batch.len());
    assert_eq!(out.batch.len(), 5);
}

#[test]
fn malformed_metrics_are_refused() {
    let p = policy();
    let mut buf = all_types(&[NOW]).encode_to_vec();
    buf.truncate(buf.len() - 3);
    assert!(matches!(
        decode_metrics_proto(buf.into(), SourceId(1), &p, NOW),
        Err(DecodeError::Malformed(_))
    ));
    assert!(matches!(
        decode_metrics_json(b"{\"resourceMetrics\": {", SourceId(1), &p, NOW),
        Err(DecodeError::Json(_))
    ));
}

#[test]
fn metrics_json_standard_forms() {
    let p = policy();
    let t = NOW - SEC;
    let body = format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"s"}}}}]}},
          "scopeMetrics":[{{"scope":{{"name":"x"}},"metrics":[
            {{"name":"g","unit":"1","gauge":{{"dataPoints":[{{"timeUnixNano":"{t}","asDouble":1.5}},{{"timeUnixNano":{t},"asInt":"3"}}]}}}},
            {{"name":"s","sum":{{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{{"startTimeUnixNano":"1","timeUnixNano":"{t}","asInt":4}}]}}}},
            {{"name":"h","histogram":{{"aggregationTemporality":1,"dataPoints":[{{"timeUnixNano":"{t}","count":"3","sum":2.0,"bucketCounts":["1","2"],"explicitBounds":[1.0]}}]}}}},
            {{"name":"e","exponentialHistogram":{{"aggregationTemporality":1,"dataPoints":[{{"timeUnixNano":"{t}","count":"1","scale":2,"zeroCount":"0","positive":{{"offset":1,"bucketCounts":["1"]}}}}]}}}},
            {{"name":"q","summary":{{"dataPoints":[{{"timeUnixNano":"0","count":"1","sum":1.0,"quantileValues":[{{"quantile":0.5,"value":1.0}}]}}]}}}}
          ]}}]}}]}}"#
    );
    let out = decode_metrics_json(body.as_bytes(), SourceId(1), &p, NOW).unwrap();
    assert_eq!((out.received, out.accepted), (6, 5));
    assert_eq!(out.rejected.invalid_timestamp, 1);
}

/// serde's `flatten` would turn invalid metric data into "no data"; the decoder reports it.
#[test]
fn invalid_metric_data_is_reported_not_dropped() {
    let p = policy();
    let t = NOW - SEC;
    let body = format!(
        r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[
            {{"name":"ok","gauge":{{"dataPoints":[{{"timeUnixNano":"{t}","asDouble":1}}]}}}},
            {{"name":"bad","histogram":{{"dataPoints":[{{"timeUnixNano":"{t}","count":"x"}}]}}}}
        ]}}]}}]}}"#
    );
    match decode_metrics_json(body.as_bytes(), SourceId(1), &p, NOW) {
        Err(DecodeError::Json(m)) => {
            assert!(
                m.starts_with("resourceMetrics[0].scopeMetrics[0].metrics[1].histogram: "),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    // A metric without data (or with a null one) is fine: no points.
    let body = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"a"},{"name":"b","gauge":null}]}]}]}"#;
    let out = decode_metrics_json(body.as_bytes(), SourceId(1), &p, NOW).unwrap();
    assert_eq!(out.received, 0);
}
