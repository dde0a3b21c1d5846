//! The checks behind the fuzz targets of `fuzz_targets/` (kept here so that the corpus generator
//! and a plain `cargo test` can share them).
//!
//! Every target asserts that decoding never panics (libFuzzer also catches hangs, overflows and
//! runaway allocations) and that an accepted request is internally consistent (every string
//! reference of the batch resolves, accepted + rejected = received). The protobuf targets are also
//! differential: the trace scanner must accept exactly what prost accepts (except the deprecated
//! group wire type, which it refuses on purpose) and count the same spans; the metrics scanner
//! must produce exactly what its oracle (prost + conversion) produces.

#![forbid(unsafe_code)]

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use redwatch_connectors::otlp::decode::{
    decode_metrics_json, decode_metrics_prost, decode_metrics_proto, decode_traces_json,
    decode_traces_proto, DecodeError, DecodeSettings, MetricsDecodeOutcome, TraceDecodeOutcome,
};
use redwatch_engine::config::{DimensionSource, WindowsConfig};
pub use redwatch_engine::fixtures::{metric_points_view as metrics_view, PointView};
use redwatch_engine::model::SourceId;
use redwatch_engine::time::TimePolicy;
use std::sync::LazyLock;

pub const SEC: u64 = 1_000_000_000;
/// The wall clock of every decode (the same as the decoder unit tests').
pub const NOW: u64 = 1_700_000_000 * SEC;

/// Default windows with the watermark at `NOW - 60 s` (spans ending before `NOW - 100 s` are
/// late, after `NOW + 1 h` from the future).
static POLICY: LazyLock<TimePolicy> = LazyLock::new(|| {
    let p = TimePolicy::new(&WindowsConfig::default());
    p.publish_watermark(NOW - 60 * SEC);
    p
});

/// Dimensions read from any attributes (each `ScopeSpans` read in two passes) and dimensions
/// with fixed sources (one pass): both scanner paths.
static SETTINGS: LazyLock<[DecodeSettings; 2]> = LazyLock::new(|| {
    [
        DecodeSettings {
            dim_keys: vec!["dim.a".into(), "service.name".into()],
            dim_sources: Vec::new(),
            ..Default::default()
        },
        DecodeSettings {
            dim_keys: vec!["dim.a".into(), "dim.b".into(), "dim.c".into()],
            dim_sources: vec![
                DimensionSource::Span,
                DimensionSource::Resource,
                DimensionSource::Scope,
            ],
            ..Default::default()
        },
    ]
});

/// Reads everything an accepted trace batch refers to (panics on a dangling reference) and
/// checks the counts add up.
fn check_trace_outcome(o: &TraceDecodeOutcome) {
    let b = &o.batch;
    assert_eq!(
        b.spans.len() as u64 + o.rejected.total(),
        o.received,
        "accepted + rejected != received"
    );
    assert_eq!(o.message.is_some(), o.rejected.total() > 0);
    for r in &b.resources {
        if let Some(s) = r.service_name {
            std::hint::black_box(b.str(s));
        }
    }
    for sp in &b.spans {
        assert!(
            (sp.resource as usize) < b.resources.len(),
            "span resource out of range"
        );
        std::hint::black_box(b.str(sp.name));
        for d in b.dims_of(sp).iter().flatten() {
            std::hint::black_box(b.str(*d));
        }
        assert!(
            sp.weight.is_finite() && sp.weight >= 1.0,
            "weight {}",
            sp.weight
        );
    }
}

fn span_count(req: &ExportTraceServiceRequest) -> u64 {
    req.resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len() as u64)
        .sum()
}

/// `ExportTraceServiceRequest` protobuf: the scanner against prost.
pub fn trace_proto(data: &[u8]) {
    let theirs = ExportTraceServiceRequest::decode(data);
    for s in SETTINGS.iter() {
        let ours = decode_traces_proto(Bytes::copy_from_slice(data), SourceId(0), s, &POLICY, NOW);
        match (&theirs, ours) {
            (Err(_), Err(e)) => std::hint::black_box(e.to_string()).clear(),
            (Err(e), Ok(_)) => panic!("prost refused ({e}) but the scanner accepted"),
            // The one deliberate difference: groups (deprecated, never used by OTLP) are refused.
            (Ok(_), Err(DecodeError::Malformed(m))) if m.contains("group wire type") => {}
            (Ok(_), Err(e)) => panic!("scanner refused ({e}), prost accepted"),
            (Ok(req), Ok(out)) => {
                check_trace_outcome(&out);
                assert_eq!(
                    out.received,
                    span_count(req),
                    "span count differs from prost"
                );
            }
        }
    }
}

/// OTLP/JSON `ExportTraceServiceRequest`.
pub fn traces_json(data: &[u8]) {
    for s in SETTINGS.iter() {
        match decode_traces_json(data, SourceId(0), s, &POLICY, NOW) {
            Ok(out) => check_trace_outcome(&out),
            Err(e) => std::hint::black_box(e.to_string()).clear(),
        }
    }
}

fn check_metrics_outcome(o: &MetricsDecodeOutcome) -> Vec<PointView> {
    assert_eq!(
        o.accepted + o.rejected.total(),
        o.received,
        "accepted + rejected != received"
    );
    assert!(
        o.batch.len() as u64 <= o.accepted,
        "more points than accepted"
    );
    assert_eq!(o.message.is_some(), o.rejected.total() > 0);
    metrics_view(&o.batch)
}

/// `ExportMetricsServiceRequest` protobuf: the scanner against its oracle (prost + conversion).
pub fn metrics_proto(data: &[u8]) {
    let ours = decode_metrics_proto(Bytes::copy_from_slice(data), SourceId(3), &POLICY, NOW);
    let theirs = decode_metrics_prost(data, SourceId(3), &POLICY, NOW);
    match (ours, theirs) {
        (Ok(a), Ok(b)) => {
            let (va, vb) = (check_metrics_outcome(&a), check_metrics_outcome(&b));
            assert_eq!(
                (a.received, a.accepted, a.rejected, &a.message),
                (b.received, b.accepted, b.rejected, &b.message),
                "counts differ from the oracle"
            );
            assert_eq!(va, vb, "points differ from the oracle");
        }
        (Err(a), Err(b)) => {
            std::hint::black_box((a.to_string(), b.to_string()));
        }
        // Groups (deprecated, never used by OTLP) are refused on purpose, as for traces.
        (Err(DecodeError::Malformed(m)), Ok(_)) if m.contains("group wire type") => {}
        (Err(e), Ok(_)) => panic!("scanner refused ({e}), the oracle accepted"),
        (Ok(_), Err(e)) => panic!("the oracle refused ({e}) but the scanner accepted"),
    }
}

/// OTLP/JSON `ExportMetricsServiceRequest`.
pub fn metrics_json(data: &[u8]) {
    match decode_metrics_json(data, SourceId(3), &POLICY, NOW) {
        Ok(out) => {
            check_metrics_outcome(&out);
        }
        Err(e) => std::hint::black_box(e.to_string()).clear(),
    }
}
