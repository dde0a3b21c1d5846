//! Test fixtures for the decoders: builders, proptest strategies for whole requests, and a
//! reference decoder that applies the scanner's rules to prost structs — the differential oracle.

use super::{DecodeSettings, Rejections, TraceDecodeOutcome};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    any_value::Value, AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, ResourceSpans, ScopeSpans, Span, Status};
use proptest::collection::vec;
use proptest::prelude::*;
use redwatch_engine::config::{DimensionSource, WindowsConfig};
use redwatch_engine::model::{SpanKind, StatusCode};
use redwatch_engine::time::{TimeCheck, TimePolicy};

pub(crate) const SEC: u64 = 1_000_000_000;
/// The wall clock of the tests.
pub(crate) const NOW: u64 = 1_700_000_000 * SEC;

/// Default windows (10 s, 30 s lateness, 1 h future skew) with the watermark at `NOW - 60 s`, so
/// spans ending before `NOW - 100 s` are late.
pub(crate) fn policy() -> TimePolicy {
    let p = TimePolicy::new(&WindowsConfig::default());
    p.publish_watermark(NOW - 60 * SEC);
    p
}

pub(crate) fn settings(keys: &[&str]) -> DecodeSettings {
    DecodeSettings {
        dim_keys: keys.iter().map(|k| k.to_string()).collect(),
        dim_sources: Vec::new(),
        ..Default::default()
    }
}

/// Settings whose dimensions read from the given sources.
pub(crate) fn settings_from(dims: &[(&str, DimensionSource)]) -> DecodeSettings {
    DecodeSettings {
        dim_keys: dims.iter().map(|(k, _)| k.to_string()).collect(),
        dim_sources: dims.iter().map(|(_, s)| *s).collect(),
        ..Default::default()
    }
}

pub(crate) fn kv(key: &str, value: Option<Value>) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value }),
        key_strindex: 0,
    }
}

pub(crate) fn kv_str(key: &str, value: &str) -> KeyValue {
    kv(key, Some(Value::StringValue(value.to_string())))
}

/// A valid server span ending 10 s before `NOW`.
pub(crate) fn span(name: &str, attributes: Vec<KeyValue>) -> Span {
    Span {
        trace_id: (1..=16).collect(),
        span_id: (1..=8).collect(),
        parent_span_id: vec![9; 8],
        name: name.to_string(),
        kind: 2,
        start_time_unix_nano: NOW - 11 * SEC,
        end_time_unix_nano: NOW - 10 * SEC,
        attributes,
        status: Some(Status {
            message: String::new(),
            code: 2,
        }),
        ..Default::default()
    }
}

pub(crate) fn resource_spans(
    resource_attrs: Option<Vec<KeyValue>>,
    spans: Vec<Span>,
) -> ResourceSpans {
    ResourceSpans {
        resource: resource_attrs.map(|attributes| Resource {
            attributes,
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: None,
            spans,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

pub(crate) fn request(resource_spans: Vec<ResourceSpans>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest { resource_spans }
}

/// A decode result in plain owned form, comparable across decoders.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Flat {
    pub services: Vec<Option<String>>,
    pub spans: Vec<FlatSpan>,
    pub received: u64,
    pub rejected: Rejections,
    pub missing_service: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FlatSpan {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: [u8; 8],
    pub start: u64,
    pub end: u64,
    /// `f64::to_bits`, so equality is exact.
    pub weight_bits: u64,
    pub name: String,
    pub resource: u32,
    pub dims: Vec<Option<String>>,
    pub kind: SpanKind,
    pub status: StatusCode,
}

impl FlatSpan {
    pub fn weight(&self) -> f64 {
        f64::from_bits(self.weight_bits)
    }
}

pub(crate) fn flatten(o: &TraceDecodeOutcome) -> Flat {
    let b = &o.batch;
    Flat {
        services: b
            .resources
            .iter()
            .map(|r| r.service_name.map(|s| b.str(s).to_string()))
            .collect(),
        spans: b
            .spans
            .iter()
            .map(|sp| FlatSpan {
                trace_id: sp.trace_id,
                span_id: sp.span_id,
                parent_span_id: sp.parent_span_id,
                start: sp.start,
                end: sp.end,
                weight_bits: sp.weight.to_bits(),
                name: b.str(sp.name).to_string(),
                resource: sp.resource,
                dims: b
                    .dims_of(sp)
                    .iter()
                    .map(|d| d.map(|r| b.str(r).to_string()))
                    .collect(),
                kind: sp.kind,
                status: sp.status,
            })
            .collect(),
        received: o.received,
        rejected: o.rejected,
        missing_service: o.spans_missing_service_name,
    }
}

// ---- the reference decoder: the documented rules, applied to prost structs ----

/// The value of the first attribute with `key`, as a dimension string (scalars only).
fn lookup(attrs: &[KeyValue], key: &str) -> Option<String> {
    let kv = attrs.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        Value::StringValue(s) => Some(s.clone()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::DoubleValue(d) => Some(format!("{d}")),
        _ => None,
    }
}

fn lookup_number(attrs: &[KeyValue], key: &str) -> Option<f64> {
    let kv = attrs.iter().find(|kv| kv.key == key)?;
    match kv.value.as_ref()?.value.as_ref()? {
        Value::IntValue(i) => Some(*i as f64),
        Value::DoubleValue(d) => Some(*d),
        _ => None,
    }
}

/// Weight from tracestate `ot=...;th:HEX`, written independently of the scanner's parser.
pub(crate) fn reference_th_weight(ts: &str) -> Option<f64> {
    let ot = ts
        .split(',')
        .map(|m| m.trim_matches([' ', '\t']))
        .filter_map(|m| m.split_once('='))
        .find(|(k, _)| *k == "ot")?
        .1;
    let th = ot.split(';').find_map(|sub| sub.strip_prefix("th:"))?;
    let ok = (1..=14).contains(&th.len())
        && th
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !ok {
        return None;
    }
    let t = u64::from_str_radix(&format!("{th:0<14}"), 16).ok()?;
    let two56 = 1u64 << 56;
    Some(two56 as f64 / (two56 - t) as f64)
}

pub(crate) fn reference_weight(sp: &Span) -> f64 {
    if let Some(c) = lookup_number(&sp.attributes, "sampling.adjusted_count") {
        if c > 0.0 && c.is_finite() {
            return c;
        }
    }
    for key in ["sampling.probability", "sampling.ratio"] {
        if let Some(p) = lookup_number(&sp.attributes, key) {
            if p > 0.0 && p <= 1.0 {
                return 1.0 / p;
            }
        }
    }
    reference_th_weight(&sp.trace_state).unwrap_or(1.0)
}

fn id<const N: usize>(v: &[u8]) -> [u8; N] {
    v.try_into().unwrap_or([0; N])
}

pub(crate) fn reference(
    req: &ExportTraceServiceRequest,
    settings: &DecodeSettings,
    policy: &TimePolicy,
    now: u64,
) -> Flat {
    let mut out = Flat {
        services: vec![],
        spans: vec![],
        received: 0,
        rejected: Rejections::default(),
        missing_service: 0,
    };
    let empty = Resource::default();
    for (ri, rs) in req.resource_spans.iter().enumerate() {
        let res = rs.resource.as_ref().unwrap_or(&empty);
        let service = res
            .attributes
            .iter()
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| match &v.value {
                Some(Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            });
        out.services.push(service.clone());
        let spans = rs.scope_spans.iter().flat_map(|ss| {
            let scope = ss.scope.as_ref().map_or(&[][..], |s| &s.attributes[..]);
            ss.spans.iter().map(move |sp| (scope, sp))
        });
        for (scope_attrs, sp) in spans {
            out.received += 1;
            let (start, end) = (sp.start_time_unix_nano, sp.end_time_unix_nano);
            if start == 0 || start > end {
                out.rejected.invalid_timestamp += 1;
                continue;
            }
            match policy.check(end, now) {
                TimeCheck::Ok => {}
                TimeCheck::Invalid => {
                    out.rejected.invalid_timestamp += 1;
                    continue;
                }
                TimeCheck::Future => {
                    out.rejected.future_timestamp += 1;
                    continue;
                }
                TimeCheck::Late => {
                    out.rejected.late += 1;
                    continue;
                }
            }
            if service.is_none() {
                out.missing_service += 1;
            }
            out.spans.push(FlatSpan {
                trace_id: id(&sp.trace_id),
                span_id: id(&sp.span_id),
                parent_span_id: id(&sp.parent_span_id),
                start,
                end,
                weight_bits: reference_weight(sp).to_bits(),
                name: sp.name.clone(),
                resource: ri as u32,
                dims: settings
                    .dim_keys
                    .iter()
                    .enumerate()
                    .map(|(i, k)| match settings.source(i) {
                        DimensionSource::Any => lookup(&sp.attributes, k)
                            .or_else(|| lookup(scope_attrs, k))
                            .or_else(|| lookup(&res.attributes, k)),
                        DimensionSource::Span => lookup(&sp.attributes, k),
                        DimensionSource::Scope => lookup(scope_attrs, k),
                        DimensionSource::Resource => lookup(&res.attributes, k),
                    })
                    .collect(),
                kind: SpanKind::from_i32(sp.kind),
                status: StatusCode::from_i32(sp.status.as_ref().map_or(0, |s| s.code)),
            });
        }
    }
    out
}

// ---- proptest strategies ----

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z./_]{1,12}",
        "\\PC{0,8}", // any printable unicode
        Just("héllo wörld ✓ 日本".to_string()),
    ]
}

/// Attribute keys: the configured dimensions, the sampling keys and noise.
fn attr_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("service.name".to_string()),
        Just("dim.a".to_string()),
        Just("dim.b".to_string()),
        Just("sampling.adjusted_count".to_string()),
        Just("sampling.probability".to_string()),
        Just("sampling.ratio".to_string()),
        Just("sampling.".to_string()),
        Just(String::new()),
        text(),
    ]
}

fn scalar_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        text().prop_map(Value::StringValue),
        any::<bool>().prop_map(Value::BoolValue),
        prop_oneof![any::<i64>(), -3i64..20].prop_map(Value::IntValue),
        prop_oneof![
            any::<f64>(),
            0.0f64..=1.0,
            Just(0.25),
            Just(1.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-0.0),
            Just(1e300),
        ]
        .prop_map(Value::DoubleValue),
        vec(any::<u8>(), 0..6).prop_map(Value::BytesValue),
    ]
}

pub(crate) fn any_value() -> impl Strategy<Value = Option<Value>> {
    let leaf = prop_oneof![
        8 => scalar_value().prop_map(Some),
        1 => Just(None),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(|vs| Some(Value::ArrayValue(ArrayValue {
                values: vs.into_iter().map(|value| AnyValue { value }).collect(),
            }))),
            vec(("[a-z]{0,4}", inner), 0..4).prop_map(|kvs| Some(Value::KvlistValue(
                KeyValueList {
                    values: kvs.into_iter().map(|(k, v)| kv(&k, v)).collect(),
                }
            ))),
        ]
    })
}

pub(crate) fn key_value() -> impl Strategy<Value = KeyValue> {
    (attr_key(), any_value(), any::<bool>(), 0..3i32).prop_map(|(key, value, has_value, idx)| {
        KeyValue {
            key,
            value: has_value.then_some(AnyValue { value }),
            key_strindex: idx,
        }
    })
}

fn attributes() -> impl Strategy<Value = Vec<KeyValue>> {
    vec(key_value(), 0..6)
}

fn bytes_id() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(vec![]),
        vec(any::<u8>(), 16),
        vec(any::<u8>(), 8),
        vec(any::<u8>(), 0..20),
    ]
}

fn trace_state() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("ot=th:8".to_string()),
        Just("vendor=x, ot=rv:0123456789abcd;th:fd70a4 ,k=v".to_string()),
        "[0-9a-f]{0,15}".prop_map(|h| format!("ot=th:{h}")),
        "[0-9a-fA-Fx;:=, ]{0,20}".prop_map(|t| format!("ot={t}")),
        text(),
    ]
}

/// (start, end): valid, zero, inverted, from the future, late.
fn times() -> impl Strategy<Value = (u64, u64)> {
    prop_oneof![
        6 => (1u64..10_000, 0u64..90).prop_map(|(d, a)| (NOW - a * SEC - d * 1_000_000, NOW - a * SEC)),
        1 => Just((0, NOW - SEC)),
        1 => Just((NOW - SEC, 0)),
        1 => Just((0, 0)),
        1 => Just((NOW - SEC, NOW - 2 * SEC)),
        1 => (0u64..5).prop_map(|h| (NOW + (h + 1) * 3600 * SEC, NOW + (h + 1) * 3600 * SEC + 1)),
        1 => (100u64..1000).prop_map(|a| (NOW - a * SEC - 1, NOW - a * SEC)),
        1 => (any::<u64>(), any::<u64>()),
    ]
}

fn event() -> impl Strategy<Value = span::Event> {
    (any::<u64>(), text(), attributes(), any::<u32>()).prop_map(|(t, name, attributes, d)| {
        span::Event {
            time_unix_nano: t,
            name,
            attributes,
            dropped_attributes_count: d,
        }
    })
}

fn link() -> impl Strategy<Value = span::Link> {
    (
        bytes_id(),
        bytes_id(),
        trace_state(),
        attributes(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(trace_id, span_id, trace_state, attributes, d, flags)| span::Link {
                trace_id,
                span_id,
                trace_state,
                attributes,
                dropped_attributes_count: d,
                flags,
            },
        )
}

fn any_span() -> impl Strategy<Value = Span> {
    (
        (bytes_id(), bytes_id(), bytes_id(), trace_state(), text()),
        (-2i32..9, times(), any::<u32>(), attributes()),
        (
            vec(event(), 0..2),
            vec(link(), 0..2),
            proptest::option::of((text(), -1i32..4)),
            any::<(u32, u32, u32)>(),
        ),
    )
        .prop_map(
            |(
                (trace_id, span_id, parent_span_id, trace_state, name),
                (kind, (start, end), flags, attributes),
                (events, links, status, dropped),
            )| Span {
                trace_id,
                span_id,
                trace_state,
                parent_span_id,
                flags,
                name,
                kind,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes,
                dropped_attributes_count: dropped.0,
                events,
                dropped_events_count: dropped.1,
                links,
                dropped_links_count: dropped.2,
                status: status.map(|(message, code)| Status { message, code }),
            },
        )
}

fn scope_spans() -> impl Strategy<Value = ScopeSpans> {
    (
        proptest::option::of((text(), text(), attributes())),
        vec(any_span(), 0..4),
        text(),
    )
        .prop_map(|(scope, spans, schema_url)| ScopeSpans {
            scope: scope.map(|(name, version, attributes)| InstrumentationScope {
                name,
                version,
                attributes,
                dropped_attributes_count: 0,
            }),
            spans,
            schema_url,
        })
}

fn resource() -> impl Strategy<Value = Resource> {
    (
        proptest::option::of(scalar_value()),
        attributes(),
        vec((text(), text(), vec(text(), 0..2)), 0..2),
    )
        .prop_map(|(service, mut attributes, entities)| {
            if let Some(v) = service {
                attributes.insert(0, kv("service.name", Some(v)));
            }
            Resource {
                attributes,
                dropped_attributes_count: 0,
                entity_refs: entities
                    .into_iter()
                    .map(|(schema_url, r#type, id_keys)| EntityRef {
                        schema_url,
                        r#type,
                        id_keys,
                        description_keys: vec!["d".into()],
                    })
                    .collect(),
            }
        })
}

pub(crate) fn any_request() -> impl Strategy<Value = ExportTraceServiceRequest> {
    vec(
        (
            proptest::option::of(resource()),
            vec(scope_spans(), 0..3),
            text(),
        )
            .prop_map(|(resource, scope_spans, schema_url)| ResourceSpans {
                resource,
                scope_spans,
                schema_url,
            }),
        0..3,
    )
    .prop_map(|resource_spans| ExportTraceServiceRequest { resource_spans })
}
