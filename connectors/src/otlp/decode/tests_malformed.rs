//! Malformed input: the scanner never panics, refuses everything prost refuses, and where both
//! accept a mangled request they read it the same way.

use super::tests_fixtures::*;
use super::{decode_traces_proto, DecodeError, DecodeSettings};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use proptest::collection::vec;
use proptest::prelude::*;
use prost::Message;
use redwatch_engine::config::DimensionSource;
use redwatch_engine::model::SourceId;

/// Dimensions read from any attributes (each `ScopeSpans` read in two passes), and dimensions
/// that never read the scope (one pass).
fn dims() -> [DecodeSettings; 2] {
    [
        settings(&["dim.a", "service.name"]),
        settings_from(&[
            ("dim.a", DimensionSource::Span),
            ("dim.b", DimensionSource::Resource),
        ]),
    ]
}

/// Decodes `buf` with both prost and the scanner and checks they agree.
fn differential(buf: &[u8]) -> Result<(), TestCaseError> {
    for s in dims() {
        differential_with(buf, &s)?;
    }
    Ok(())
}

fn differential_with(buf: &[u8], s: &DecodeSettings) -> Result<(), TestCaseError> {
    let p = policy();
    let theirs = ExportTraceServiceRequest::decode(buf);
    let ours = decode_traces_proto(Bytes::copy_from_slice(buf), SourceId(0), s, &p, NOW);
    match (theirs, ours) {
        (Err(e), Ok(_)) => {
            return Err(TestCaseError::fail(format!(
                "prost refused ({e}) but the scanner accepted {buf:02x?}"
            )))
        }
        (Err(_), Err(_)) => {}
        (Ok(_), Err(DecodeError::Malformed(m))) => {
            // The one deliberate difference: groups (deprecated, never used by OTLP) are refused.
            prop_assert!(
                m.contains("group wire type"),
                "scanner refused ({m}), prost accepted"
            );
        }
        (Ok(_), Err(e)) => {
            return Err(TestCaseError::fail(format!(
                "scanner refused ({e}), prost accepted"
            )))
        }
        (Ok(req), Ok(out)) => {
            prop_assert_eq!(flatten(&out), reference(&req, s, &p, NOW));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn every_truncation(req in any_request()) {
        let buf = req.encode_to_vec();
        for len in 0..buf.len() {
            differential(&buf[..len])?;
        }
    }

    #[test]
    fn byte_flips(req in any_request(), flips in vec((any::<prop::sample::Index>(), 1u8..=255), 1..4)) {
        let mut buf = req.encode_to_vec();
        if !buf.is_empty() {
            for (i, x) in flips {
                let i = i.index(buf.len());
                buf[i] ^= x;
            }
        }
        differential(&buf)?;
    }

    #[test]
    fn inserted_and_deleted_bytes(
        req in any_request(),
        at in any::<prop::sample::Index>(),
        insert in vec(any::<u8>(), 0..4),
        delete in 0usize..3,
    ) {
        let mut buf = req.encode_to_vec();
        let i = at.index(buf.len() + 1);
        let del_end = (i + delete).min(buf.len());
        buf.splice(i..del_end, insert);
        differential(&buf)?;
    }

    #[test]
    fn random_bytes(buf in vec(any::<u8>(), 0..512)) {
        differential(&buf)?;
    }

    /// Random bytes behind a plausible prefix (a resource_spans / scope_spans / span frame), so
    /// the noise reaches the inner messages.
    #[test]
    fn random_span_bodies(body in vec(any::<u8>(), 0..200)) {
        let mut buf = Vec::new();
        let mut span = vec![0x12];
        prost::encoding::encode_varint(body.len() as u64, &mut span);
        span.extend_from_slice(&body);
        let mut ss = vec![0x12];
        prost::encoding::encode_varint(span.len() as u64, &mut ss);
        ss.extend_from_slice(&span);
        buf.push(0x0a);
        prost::encoding::encode_varint(ss.len() as u64, &mut buf);
        buf.extend_from_slice(&ss);
        differential(&buf)?;
    }
}
