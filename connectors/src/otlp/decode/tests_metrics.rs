//! The metrics scanner against its oracle (prost + conversion), and malformed metrics requests.

use super::tests_fixtures::*;
use super::{
    decode_metrics_json, decode_metrics_prost, decode_metrics_proto, DecodeError,
    MetricsDecodeOutcome,
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile, Exemplar, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use proptest::collection::vec;
use proptest::prelude::*;
use prost::Message;
use redwatch_engine::fixtures::metric_points_view as view;
use redwatch_engine::metric_model::PointValue;
use redwatch_engine::model::SourceId;

fn same(a: &MetricsDecodeOutcome, b: &MetricsDecodeOutcome) {
    assert_eq!(
        (a.received, a.accepted, a.rejected, &a.message),
        (b.received, b.accepted, b.rejected, &b.message)
    );
    assert_eq!(view(&a.batch), view(&b.batch));
}

fn check(buf: &[u8]) {
    let p = policy();
    let fast = decode_metrics_proto(buf.to_vec().into(), SourceId(3), &p, NOW);
    let oracle = decode_metrics_prost(buf, SourceId(3), &p, NOW);
    match (fast, oracle) {
        (Ok(a), Ok(b)) => same(&a, &b),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("scanner {a:?} vs prost {b:?}"),
    }
}

fn point_time() -> impl Strategy<Value = u64> {
    prop_oneof![
        8 => (0u64..90).prop_map(|a| NOW - a * SEC),
        1 => Just(0u64),
        1 => Just(NOW + 2 * 3600 * SEC),
        1 => (100u64..1000).prop_map(|a| NOW - a * SEC),
    ]
}

fn attrs() -> impl Strategy<Value = Vec<KeyValue>> {
    vec(key_value(), 0..4)
}

fn exemplars() -> impl Strategy<Value = Vec<Exemplar>> {
    vec(
        (any::<u64>(), any::<f64>(), vec(any::<u8>(), 0..9)).prop_map(|(t, v, id)| Exemplar {
            filtered_attributes: vec![kv_str("k", "v")],
            time_unix_nano: t,
            span_id: id.clone(),
            trace_id: id,
            value: Some(opentelemetry_proto::tonic::metrics::v1::exemplar::Value::AsDouble(v)),
        }),
        0..2,
    )
}

fn number_point() -> impl Strategy<Value = NumberDataPoint> {
    (
        attrs(),
        prop_oneof![Just(0u64), (1u64..1000).prop_map(|a| NOW - a * SEC)],
        point_time(),
        prop_oneof![
            Just(None),
            any::<f64>().prop_map(|v| Some(number_data_point::Value::AsDouble(v))),
            any::<i64>().prop_map(|v| Some(number_data_point::Value::AsInt(v))),
            Just(Some(number_data_point::Value::AsDouble(f64::NAN))),
        ],
        prop_oneof![Just(0u32), Just(1u32), any::<u32>()],
        exemplars(),
    )
        .prop_map(
            |(attributes, start, time, value, flags, exemplars)| NumberDataPoint {
                attributes,
                start_time_unix_nano: start,
                time_unix_nano: time,
                exemplars,
                flags,
                value,
            },
        )
}

fn histogram_point() -> impl Strategy<Value = HistogramDataPoint> {
    (
        attrs(),
        point_time(),
        vec(any::<u64>(), 0..5),
        vec(-10.0f64..10.0, 0..4),
        proptest::option::of(any::<f64>()),
        proptest::option::of(any::<f64>()),
        any::<u64>(),
        prop_oneof![Just(0u32), Just(1u32)],
    )
        .prop_map(
            |(attributes, time, counts, bounds, sum, min, count, flags)| HistogramDataPoint {
                attributes,
                start_time_unix_nano: 5,
                time_unix_nano: time,
                count,
                sum,
                bucket_counts: counts,
                explicit_bounds: bounds,
                exemplars: Vec::new(),
                flags,
                min,
                max: sum,
            },
        )
}

fn exp_point() -> impl Strategy<Value = ExponentialHistogramDataPoint> {
    (
        attrs(),
        point_time(),
        -10i32..20,
        (any::<i32>(), vec(any::<u64>(), 0..5)),
        proptest::option::of((any::<i32>(), vec(any::<u64>(), 0..5))),
        any::<u64>(),
        any::<f64>(),
    )
        .prop_map(|(attributes, time, scale, pos, neg, zero, thr)| {
            ExponentialHistogramDataPoint {
                attributes,
                start_time_unix_nano: 0,
                time_unix_nano: time,
                count: zero.wrapping_add(1),
                sum: Some(thr),
                scale,
                zero_count: zero,
                positive: Some(Buckets {
                    offset: pos.0,
                    bucket_counts: pos.1,
                }),
                negative: neg.map(|(offset, bucket_counts)| Buckets {
                    offset,
                    bucket_counts,
                }),
                flags: 0,
                exemplars: Vec::new(),
                min: None,
                max: Some(thr),
                zero_threshold: thr,
            }
        })
}

fn summary_point() -> impl Strategy<Value = SummaryDataPoint> {
    (
        attrs(),
        point_time(),
        any::<u64>(),
        any::<f64>(),
        vec((0.0f64..=1.0, any::<f64>()), 0..3),
    )
        .prop_map(|(attributes, time, count, sum, q)| SummaryDataPoint {
            attributes,
            start_time_unix_nano: 0,
            time_unix_nano: time,
            count,
            sum,
            quantile_values: q
                .into_iter()
                .map(|(quantile, value)| ValueAtQuantile { quantile, value })
                .collect(),
            flags: 0,
        })
}

fn data() -> impl Strategy<Value = Option<Data>> {
    prop_oneof![
        1 => Just(None),
        3 => vec(number_point(), 0..4).prop_map(|p| Some(Data::Gauge(Gauge { data_points: p }))),
        3 => (vec(number_point(), 0..4), 0..4i32, any::<bool>()).prop_map(|(p, t, m)| Some(
            Data::Sum(Sum { data_points: p, aggregation_temporality: t, is_monotonic: m })
        )),
        2 => (vec(histogram_point(), 0..3), 0..3i32).prop_map(|(p, t)| Some(Data::Histogram(
            Histogram { data_points: p, aggregation_temporality: t }
        ))),
        2 => (vec(exp_point(), 0..3), 0..3i32).prop_map(|(p, t)| Some(
            Data::ExponentialHistogram(ExponentialHistogram { data_points: p, aggregation_temporality: t })
        )),
        1 => vec(summary_point(), 0..3).prop_map(|p| Some(Data::Summary(Summary { data_points: p }))),
    ]
}

fn metric() -> impl Strategy<Value = Metric> {
    (
        "[a-z.]{0,8}",
        "[a-zA-Z{}/]{0,3}",
        data(),
        vec(key_value(), 0..2),
    )
        .prop_map(|(name, unit, data, metadata)| Metric {
            name,
            description: "d".into(),
            unit,
            metadata,
            data,
        })
}

fn any_metrics_request() -> impl Strategy<Value = ExportMetricsServiceRequest> {
    let resource = proptest::option::of(
        vec(
            prop_oneof![
                3 => key_value(),
                1 => "[a-c]{1,2}".prop_map(|s| kv_str("service.name", &s)),
            ],
            0..4,
        )
        .prop_map(|attributes| Resource {
            attributes,
            ..Default::default()
        }),
    );
    let scope = (
        proptest::option::of(("[a-z]{0,3}", "[0-9]{0,2}")),
        vec(metric(), 0..4),
    )
        .prop_map(|(s, metrics)| ScopeMetrics {
            scope: s.map(|(name, version)| InstrumentationScope {
                name,
                version,
                ..Default::default()
            }),
            metrics,
            schema_url: String::new(),
        });
    vec(
        (resource, vec(scope, 0..3)).prop_map(|(resource, scope_metrics)| ResourceMetrics {
            resource,
            scope_metrics,
            schema_url: String::new(),
        }),
        0..3,
    )
    .prop_map(|resource_metrics| ExportMetricsServiceRequest { resource_metrics })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Scanner == prost + conversion for any valid request, and the JSON path agrees.
    #[test]
    fn metrics_scanner_matches_prost(req in any_metrics_request()) {
        let buf = req.encode_to_vec();
        check(&buf);
        let p = policy();
        if let Ok(body) = serde_json::to_vec(&req) {
            if let Ok(j) = decode_metrics_json(&body, SourceId(3), &p, NOW) {
                // JSON cannot carry NaN/inf; compare only when it round-trips. (Against the
                // request itself, not its protobuf: protobuf drops a -0.0 default, JSON keeps it.)
                let back: Result<ExportMetricsServiceRequest, _> = serde_json::from_slice(&body);
                if back.as_ref().ok() == Some(&req) {
                    let want = super::metrics_prost::to_batch(&req, SourceId(3), &p, NOW).unwrap();
                    same(&j, &want);
                }
            }
        }
    }

    /// Corrupted requests: the scanner and prost agree on accept/refuse, never panic.
    #[test]
    fn corrupted_metrics_requests_agree(req in any_metrics_request(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
        let buf = req.encode_to_vec();
        if !buf.is_empty() {
            check(&buf[..cut.index(buf.len())]);
            let mut b = buf.clone();
            let i = flip.0.index(b.len());
            b[i] ^= flip.1 | 1;
            check(&b);
        }
    }
}

/// An encoded request whose one resource and scope hold `metric`, bytes as given (no encoding
/// round trip, so they may be malformed on purpose).
fn request_of_raw_metric(metric: &[u8]) -> Vec<u8> {
    let mut scope = Vec::new();
    prost::encoding::bytes::encode(2, &metric.to_vec(), &mut scope);
    let mut rm = Vec::new();
    prost::encoding::bytes::encode(2, &scope, &mut rm);
    let mut raw = Vec::new();
    prost::encoding::bytes::encode(1, &rm, &mut raw);
    raw
}

fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv_str("service.name", "svc")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
}

fn gauge(name: &str, v: f64) -> Metric {
    Metric {
        name: name.into(),
        unit: "1".into(),
        data: Some(Data::Gauge(Gauge {
            data_points: vec![NumberDataPoint {
                time_unix_nano: NOW - SEC,
                value: Some(number_data_point::Value::AsDouble(v)),
                attributes: vec![kv_str("host", "a")],
                ..Default::default()
            }],
        })),
        ..Default::default()
    }
}

#[test]
fn a_gauge_point_keeps_its_strings_in_the_request() {
    let buf = request(vec![gauge("cpu", 0.5)]).encode_to_vec();
    let out = decode_metrics_proto(buf.into(), SourceId(1), &policy(), NOW).unwrap();
    let v = view(&out.batch);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].name, "cpu");
    assert_eq!(v[0].service.as_deref(), Some("svc"));
    assert_eq!(v[0].attrs, vec![("host".to_string(), "a".to_string())]);
    assert_eq!(out.batch.points[0].value, PointValue::Number(0.5));
}

#[test]
fn a_repeated_data_oneof_keeps_only_the_last_run_like_prost() {
    // gauge, then sum: prost keeps the sum only.
    let g = gauge("m", 1.0).encode_to_vec();
    let sum = Metric {
        data: Some(Data::Sum(Sum {
            data_points: vec![NumberDataPoint {
                time_unix_nano: NOW - SEC,
                value: Some(number_data_point::Value::AsInt(7)),
                ..Default::default()
            }],
            aggregation_temporality: 2,
            is_monotonic: true,
        })),
        ..Default::default()
    }
    .encode_to_vec();
    let mut metric = g.clone();
    metric.extend_from_slice(&sum);
    metric.extend_from_slice(&sum); // the same kind again merges
    let m = Metric::decode(&metric[..]).unwrap();
    assert!(matches!(&m.data, Some(Data::Sum(s)) if s.data_points.len() == 2));
    let mut buf = Vec::new();
    let req = request(vec![m]);
    req.encode(&mut buf).unwrap();
    // Hand-build the request with the raw metric bytes.
    let raw = request_of_raw_metric(&metric);
    check(&raw);
    let out = decode_metrics_proto(raw.into(), SourceId(1), &policy(), NOW).unwrap();
    assert_eq!(out.received, 2);
    assert_eq!(out.batch.len(), 2);
    assert_eq!(out.batch.metrics[0].kind.as_str(), "counter");
}

#[test]
fn packed_and_unpacked_repeated_fields_read_alike() {
    // HistogramDataPoint with bucket_counts (6) and explicit_bounds (7) unpacked.
    let mut p = Vec::new();
    prost::encoding::fixed64::encode(3, &(NOW - SEC), &mut p);
    prost::encoding::fixed64::encode(4, &3, &mut p);
    for c in [1u64, 2] {
        prost::encoding::fixed64::encode(6, &c, &mut p);
    }
    prost::encoding::double::encode(7, &1.5, &mut p);
    let mut h = Vec::new();
    prost::encoding::bytes::encode(1, &p, &mut h);
    let mut m = Vec::new();
    prost::encoding::string::encode(1, &"h".to_string(), &mut m);
    prost::encoding::bytes::encode(9, &h, &mut m);
    let raw = request_of_raw_metric(&m);
    check(&raw);
    let out = decode_metrics_proto(raw.into(), SourceId(1), &policy(), NOW).unwrap();
    let h = &out.batch.histograms[0];
    assert_eq!(out.batch.buckets_of(h), (&[1.5][..], &[1u64, 2][..]));
}

#[test]
fn malformed_metrics_requests_are_refused_with_a_reason() {
    let p = policy();
    let buf = request(vec![gauge("cpu", 1.0)]).encode_to_vec();
    let cut = buf[..buf.len() - 2].to_vec();
    match decode_metrics_proto(cut.into(), SourceId(1), &p, NOW) {
        Err(DecodeError::Malformed(m)) => assert!(m.contains("byte"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Invalid UTF-8 in the metric name.
    let mut bad = buf.clone();
    let at = bad.windows(3).position(|w| w == b"cpu").unwrap();
    bad[at] = 0xff;
    match decode_metrics_proto(bad.into(), SourceId(1), &p, NOW) {
        Err(DecodeError::InvalidUtf8 { field }) => assert_eq!(field, "Metric.name"),
        other => panic!("{other:?}"),
    }
    // A packed fixed64 run that is not a multiple of 8 bytes.
    let mut pt = Vec::new();
    prost::encoding::bytes::encode(6, &vec![0u8; 5], &mut pt);
    let mut h = Vec::new();
    prost::encoding::bytes::encode(1, &pt, &mut h);
    let mut m = Vec::new();
    prost::encoding::bytes::encode(9, &h, &mut m);
    let raw = request_of_raw_metric(&m);
    check(&raw);
    assert!(decode_metrics_proto(raw.into(), SourceId(1), &p, NOW).is_err());
}
