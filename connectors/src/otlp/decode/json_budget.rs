//! The item budget of OTLP/JSON: what parsing a body into the opentelemetry-proto serde types
//! will allocate, estimated by one pass over its bytes before anything is parsed.
//!
//! Parsed naively, `{},` (3 bytes) in `spans` becomes a ~300-byte `Span`: a 16 MiB body would be
//! gigabytes. The scanner charges every array element the size of the struct it turns into (known
//! from the key of its array), every object the transient buffer serde's `flatten` builds
//! (`AnyValue`, `Metric.data`), every scalar in an array its slot, and strings their own bytes. A
//! body whose estimate passes [`AMPLIFICATION`] × its size (+ [`SMALL_BODY_ALLOWANCE`]) is refused
//! as a whole with a clear error; the receiver reserves [`transient_bytes`] with the memory limiter
//! before parsing. The scanner only measures: malformed JSON is left for serde to describe.

use super::DecodeError;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1 as m;
use opentelemetry_proto::tonic::trace::v1 as t;
use std::mem::size_of;

/// Decoded bytes allowed per body byte (docs/design.md, "State and its bounds").
pub const AMPLIFICATION: u64 = 8;
/// Small bodies may exceed the ratio by this much (a single minimal span is mostly struct).
pub const SMALL_BODY_ALLOWANCE: u64 = 64 << 10;
/// Deeper nesting is refused here (serde_json stops at 128 anyway); keeps the scanner's stack
/// bounded.
const MAX_DEPTH: usize = 256;
/// serde's buffered `Content` map entry (key, value) for an object member under `flatten`.
const OBJECT_OVERHEAD: u64 = 64;
/// A scalar array element: its slot plus a buffered `Content` value.
const SCALAR_IN_ARRAY: u64 = 40;

/// Size of the struct an element of the array under `key` becomes.
fn element_size(key: &[u8]) -> u64 {
    let s = match key {
        b"resourceSpans" => size_of::<t::ResourceSpans>(),
        b"scopeSpans" => size_of::<t::ScopeSpans>(),
        b"spans" => size_of::<t::Span>(),
        b"events" => size_of::<t::span::Event>(),
        b"links" => size_of::<t::span::Link>(),
        b"attributes" | b"metadata" | b"filteredAttributes" => size_of::<KeyValue>(),
        b"values" => size_of::<KeyValue>().max(size_of::<AnyValue>()),
        b"resourceMetrics" => size_of::<m::ResourceMetrics>(),
        b"scopeMetrics" => size_of::<m::ScopeMetrics>(),
        b"metrics" => size_of::<m::Metric>(),
        b"dataPoints" => size_of::<m::NumberDataPoint>()
            .max(size_of::<m::HistogramDataPoint>())
            .max(size_of::<m::ExponentialHistogramDataPoint>())
            .max(size_of::<m::SummaryDataPoint>()),
        b"exemplars" => size_of::<m::Exemplar>(),
        b"quantileValues" => size_of::<m::summary_data_point::ValueAtQuantile>(),
        // Unknown keys are ignored by serde (no allocation), but charge them as the largest
        // element anyway: the table, not the attacker, decides what is cheap.
        _ => LARGEST,
    };
    s as u64
}

const LARGEST: usize = 512;

/// The estimated bytes parsing `body` allocates, or why the body is over its budget.
pub fn estimate(body: &[u8]) -> Result<u64, DecodeError> {
    let len = body.len() as u64;
    let budget = len * AMPLIFICATION + SMALL_BODY_ALLOWANCE;
    // Per open container: (is_array, element size of its array / key).
    let mut stack: Vec<(bool, u64)> = Vec::new();
    let mut key: &[u8] = b"";
    let mut expect_key = false;
    let mut after_open_or_comma = false;
    let mut cost = len;
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b':' => {
                i += 1;
                continue;
            }
            b'"' => {
                let start = i + 1;
                let mut j = start;
                while j < body.len() && body[j] != b'"' {
                    j += if body[j] == b'\\' { 2 } else { 1 };
                }
                let s = &body[start..j.min(body.len())];
                match stack.last() {
                    Some((false, _)) if expect_key => {
                        key = s;
                        expect_key = false;
                    }
                    Some((true, _)) => cost += SCALAR_IN_ARRAY,
                    _ => {}
                }
                i = j + 1;
                after_open_or_comma = false;
                continue;
            }
            b'{' | b'[' => {
                let elem = match stack.last() {
                    Some((true, e)) => *e,
                    Some((false, _)) => element_size(key),
                    None => LARGEST as u64,
                };
                if c == b'{' {
                    cost += OBJECT_OVERHEAD;
                    if matches!(stack.last(), Some((true, _)) | None) {
                        cost += elem;
                    }
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(DecodeError::Json(format!(
                        "nesting deeper than {MAX_DEPTH} levels at byte {i}"
                    )));
                }
                stack.push((c == b'[', elem));
                expect_key = c == b'{';
                after_open_or_comma = c == b'[';
            }
            b'}' | b']' => {
                stack.pop();
                after_open_or_comma = false;
            }
            b',' => {
                expect_key = matches!(stack.last(), Some((false, _)));
                after_open_or_comma = true;
            }
            _ => {
                // A number or literal: charged when it starts an array element.
                if after_open_or_comma && matches!(stack.last(), Some((true, _))) {
                    cost += SCALAR_IN_ARRAY;
                }
                after_open_or_comma = false;
                while i + 1 < body.len()
                    && !matches!(
                        body[i + 1],
                        b',' | b']' | b'}' | b'"' | b' ' | b'\t' | b'\n' | b'\r' | b'{' | b'['
                    )
                {
                    i += 1;
                }
            }
        }
        if cost > budget {
            return Err(DecodeError::TooManyItems {
                body_bytes: len,
                limit: budget,
            });
        }
        i += 1;
    }
    Ok(cost)
}

/// Bytes to reserve before parsing a body whose [`estimate`] is `estimate`: growing vectors may
/// hold up to twice their elements, and the protobuf re-encode is at most the body again.
pub fn transient_bytes(estimate: u64, body_len: usize) -> u64 {
    estimate * 2 + body_len as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_objects_in_spans_are_over_budget() {
        let mut body = br#"{"resourceSpans":[{"scopeSpans":[{"spans":["#.to_vec();
        for _ in 0..200_000 {
            body.extend_from_slice(b"{},");
        }
        body.extend_from_slice(b"{}]}]}]}");
        match estimate(&body) {
            Err(DecodeError::TooManyItems { body_bytes, .. }) => {
                assert_eq!(body_bytes, body.len() as u64)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn realistic_spans_fit_with_room() {
        let span = r#"{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /api/orders","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000","attributes":[{"key":"http.method","value":{"stringValue":"GET"}},{"key":"http.status_code","value":{"intValue":"200"}}],"status":{"code":1}}"#;
        let mut body = String::from(
            r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},"scopeSpans":[{"spans":["#,
        );
        for i in 0..5000 {
            if i > 0 {
                body.push(',');
            }
            body.push_str(span);
        }
        body.push_str("]}]}]}");
        let e = estimate(body.as_bytes()).unwrap();
        let ratio = e as f64 / body.len() as f64;
        assert!(ratio < 4.0, "{ratio}");
    }

    #[test]
    fn histograms_fit() {
        let dp = r#"{"startTimeUnixNano":"1","timeUnixNano":"2","count":"10","sum":1.5,"bucketCounts":["0","1","2","3","4","5","6","7","8","9","10","11","12","13","14","15"],"explicitBounds":[2,4,6,8,10,50,100,200,400,800,1000,1400,2000,5000,10000]}"#;
        let mut body = String::from(
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"h","histogram":{"aggregationTemporality":1,"dataPoints":["#,
        );
        for i in 0..5000 {
            if i > 0 {
                body.push(',');
            }
            body.push_str(dp);
        }
        body.push_str("]}}]}]}]}");
        let e = estimate(body.as_bytes()).unwrap();
        assert!(e < body.len() as u64 * AMPLIFICATION);
    }
}
