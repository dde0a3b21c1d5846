//! Test fixtures shared by the `merge_encoded` and `absorb_encoded` tests.

use super::super::{QuantileSketch, SketchError};

/// A sketch of `(value, weight)` pairs.
pub(super) fn sketch(values: &[(f64, f64)]) -> QuantileSketch {
    let mut s = QuantileSketch::new();
    for &(v, w) in values {
        s.add(v, w);
    }
    s
}

/// Sketches of every shape (empty, zero bucket only, sparse, dense), of values from 0 and
/// 1e-9 to e²⁵ with weights drawn from `weight`.
pub(super) fn sketches(
    weight: impl proptest::strategy::Strategy<Value = f64>,
) -> impl proptest::strategy::Strategy<Value = QuantileSketch> {
    use proptest::prelude::*;
    let value = prop_oneof![
        Just(0.0),
        1e-9f64..1e-5,
        (-16.0f64..25.0).prop_map(f64::exp),
        (1.0f64..6.0).prop_map(f64::exp),
    ];
    prop::collection::vec((value, weight), 0..600).prop_map(|v| sketch(&v))
}

/// The reference both merge paths must equal: decode, then merge.
pub(super) fn merged_via_decode(
    mut acc: QuantileSketch,
    bytes: &[u8],
) -> Result<QuantileSketch, SketchError> {
    acc.merge(&QuantileSketch::decode(bytes)?);
    Ok(acc)
}

/// The `quantile_merge` shape: 500 encoded sketches of 20–60 latency-like values each
/// (deterministic).
pub(super) fn small_latency_sketches() -> Vec<Vec<u8>> {
    let mut x = 1u64;
    (0..500u64)
        .map(|i| {
            let mut s = QuantileSketch::new();
            for _ in 0..20 + i % 41 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                s.add(5.0 * (4.0 * u).exp(), 1.0);
            }
            s.to_bytes()
        })
        .collect()
}

/// Three ways to break a valid encoding, for the "rejects what decode rejects" tests: one byte
/// flipped, cut short, extra bytes appended.
pub(super) fn corrupted(
    valid: &[u8],
    position: proptest::sample::Index,
    xor: u8,
    cut: proptest::sample::Index,
    tail: &[u8],
) -> [Vec<u8>; 3] {
    let mut flipped = valid.to_vec();
    let i = position.index(flipped.len());
    flipped[i] ^= xor;
    let truncated = valid[..cut.index(valid.len())].to_vec();
    let mut extended = valid.to_vec();
    extended.extend_from_slice(tail);
    [flipped, truncated, extended]
}
