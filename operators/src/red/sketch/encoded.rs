//! Merging a sketch straight from its encoding ([`QuantileSketch::merge_encoded`]), for
//! `quantile_merge` in SQL: the bins are read (and checked) into a buffer on the stack and
//! added to the store from there — no `QuantileSketch` is built and nothing is allocated for
//! the input.
//!
//! Must stay equivalent to `decode` + `merge` (same errors for the same bytes, the same sketch
//! after merging): the property tests below check both against the originals.
//!
//! [`QuantileSketch::absorb_encoded`] (in `dense`) is the SQL accumulators' variant: one pass
//! over the bytes straight into a dense store, not atomic on error.

mod dense;
#[cfg(test)]
mod fixtures;

use super::{
    bump, checked_key, dense_from, dense_len, densify, merge_sparse, rebase, should_densify,
    sparse_len, unzigzag, Header, QuantileSketch, Reader, SketchError, SparseBin, Store,
    FLAG_DENSE, MAX_VARINT_WEIGHT, SPARSE_MAX_KEYS,
};

/// The bins of an encoding, borrowed from the stack buffers they were read into.
enum Bins<'a> {
    Sparse(&'a [SparseBin]),
    Dense { offset: i16, bins: &'a [f32] },
}

impl Bins<'_> {
    /// Lowest and highest key holding weight (dense edges are non-empty by validation).
    fn key_range(&self) -> Option<(i32, i32)> {
        match self {
            Bins::Sparse(e) => Some((i32::from(e.first()?.key), i32::from(e.last()?.key))),
            Bins::Dense { offset, bins } => {
                let lo = i32::from(*offset);
                Some((lo, lo + bins.len() as i32 - 1))
            }
        }
    }
}

impl QuantileSketch {
    /// Adds the sketch encoded in `bytes` (by [`Self::encode`]) to this one: the same result as
    /// `self.merge(&QuantileSketch::decode(bytes)?)`, and the same error for bytes that are
    /// not a sketch (then `self` is unchanged), without building the decoded sketch.
    pub fn merge_encoded(&mut self, bytes: &[u8]) -> Result<(), SketchError> {
        let mut r = Reader { bytes, pos: 0 };
        let Header {
            flags,
            integral_weights: integral,
            count,
            zero,
        } = r.header()?;
        if flags & FLAG_DENSE == 0 {
            let mut buf = [SparseBin {
                key: 0,
                weight: 0.0,
            }; SPARSE_MAX_KEYS];
            let n = read_sparse(&mut r, integral, &mut buf)?;
            self.merge_bins(&r, count, zero, Bins::Sparse(&buf[..n]))
        } else {
            let mut buf = [0.0f32; QuantileSketch::MAX_BINS];
            let (offset, len) = read_dense(&mut r, integral, &mut buf)?;
            self.merge_bins(
                &r,
                count,
                zero,
                Bins::Dense {
                    offset,
                    bins: &buf[..len],
                },
            )
        }
    }

    /// The end of `decode`'s checks, then `merge` with the bins read.
    fn merge_bins(
        &mut self,
        r: &Reader<'_>,
        count: f64,
        zero: f64,
        other: Bins<'_>,
    ) -> Result<(), SketchError> {
        if r.remaining() != 0 {
            return Err(SketchError::TrailingBytes(r.remaining()));
        }
        let other_range = other.key_range();
        let holds_weight = zero > 0.0 || other_range.is_some();
        if (count > 0.0) != holds_weight {
            return Err(SketchError::Invalid("total weight disagrees with the bins"));
        }
        // From here on: `QuantileSketch::merge` and `Store::merge`.
        if count == 0.0 {
            return Ok(());
        }
        self.count += count;
        self.zero += zero;
        let Some((other_lo, other_hi)) = other_range else {
            return Ok(());
        };
        // Merged sketches live in SQL accumulators, not window state: the wide store keeps
        // this one path for any input weights.
        self.store.widen();
        let (lo, hi) = match self.store.key_range() {
            Some((lo, hi)) => (lo.min(other_lo), hi.max(other_hi)),
            None => (other_lo, other_hi),
        };
        if let (Store::Sparse(a), Bins::Sparse(b)) = (&mut self.store, &other) {
            *a = merge_sparse(a, b);
            if should_densify(a) {
                self.store = densify(a);
            }
            return Ok(());
        }
        match &mut self.store {
            Store::Dense { offset, bins } => rebase(offset, bins, lo, hi),
            Store::Sparse(entries) => self.store = dense_from(entries, lo, hi),
            Store::Compact(_) => unreachable!("widened above"),
        }
        let Store::Dense { bins: dense, .. } = &mut self.store else {
            return Ok(());
        };
        // In range: `[lo, hi]` contains every key of `other`.
        match other {
            Bins::Sparse(entries) => {
                for e in entries {
                    if let Some(bin) = dense.get_mut((i32::from(e.key) - lo) as usize) {
                        bump(bin, e.weight);
                    }
                }
            }
            Bins::Dense { offset, bins } => {
                let start = (i32::from(offset) - lo) as usize;
                if let Some(target) = dense.get_mut(start..start + bins.len()) {
                    for (bin, &w) in target.iter_mut().zip(bins) {
                        if w != 0.0 {
                            bump(bin, w);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// `Reader::varint` with the one-byte case (nearly every key gap and count) inlined.
#[inline(always)]
fn varint(r: &mut Reader<'_>) -> Result<u64, SketchError> {
    if let Some(&b) = r.bytes.get(r.pos) {
        if b < 0x80 {
            r.pos += 1;
            return Ok(u64::from(b));
        }
    }
    r.varint()
}

/// `Reader::weight`, through the inlined `varint`.
#[inline(always)]
fn weight(r: &mut Reader<'_>, integral: bool) -> Result<f32, SketchError> {
    if integral {
        let v = varint(r)?;
        let w = v as f32;
        if w > MAX_VARINT_WEIGHT || w as u64 != v {
            return Err(SketchError::Invalid("weight not representable"));
        }
        Ok(w)
    } else {
        r.weight(false)
    }
}

/// `decode`'s sparse store checks, reading the entries into `buf`; returns their number.
fn read_sparse(
    r: &mut Reader<'_>,
    integral: bool,
    buf: &mut [SparseBin; SPARSE_MAX_KEYS],
) -> Result<usize, SketchError> {
    let n = sparse_len(varint(r)?, r.remaining(), integral)?;
    let mut previous: Option<i64> = None;
    for slot in buf.iter_mut().take(n) {
        let raw = varint(r)?;
        let key = match previous {
            None => unzigzag(raw),
            // Capped first so the sum cannot overflow; `checked_key` judges the rest.
            Some(p) => p + 1 + raw.min(1 << 16) as i64,
        };
        let key = checked_key(key)?;
        let weight = weight(r, integral)?;
        if weight == 0.0 {
            return Err(SketchError::Invalid("empty sparse bin"));
        }
        *slot = SparseBin { key, weight };
        previous = Some(i64::from(key));
    }
    Ok(n)
}

/// `decode`'s dense store checks, reading the bins into `buf`; returns the offset and length.
fn read_dense(
    r: &mut Reader<'_>,
    integral: bool,
    buf: &mut [f32; QuantileSketch::MAX_BINS],
) -> Result<(i16, usize), SketchError> {
    let offset = checked_key(unzigzag(varint(r)?))?;
    let len = dense_len(offset, varint(r)?, r.remaining(), integral)?;
    for slot in buf.iter_mut().take(len) {
        *slot = weight(r, integral)?;
    }
    if buf[0] == 0.0 || buf[len - 1] == 0.0 {
        return Err(SketchError::Invalid("dense store edge bin is empty"));
    }
    Ok((offset, len))
}

#[cfg(test)]
mod tests {
    use super::fixtures::{merged_via_decode, sketch, small_latency_sketches};
    use super::*;
    use crate::red::sketch::VERSION;
    use proptest::prelude::*;

    /// Sketches of every shape: empty, zero bucket only, sparse, dense, fractional weights.
    fn sketches() -> impl Strategy<Value = QuantileSketch> {
        super::fixtures::sketches(prop_oneof![3 => Just(1.0f64), 1 => 0.01f64..50.0])
    }

    proptest! {
        #[test]
        fn merge_encoded_equals_decode_then_merge(
            acc in sketches(),
            others in prop::collection::vec(sketches(), 1..6),
        ) {
            let mut via_bytes = acc.clone();
            let mut via_decode = acc;
            for o in &others {
                let bytes = o.to_bytes();
                via_bytes.merge_encoded(&bytes).expect("a valid encoding");
                via_decode = merged_via_decode(via_decode, &bytes).expect("a valid encoding");
                prop_assert_eq!(&via_bytes, &via_decode);
            }
            prop_assert_eq!(via_bytes.to_bytes(), via_decode.to_bytes());
        }

        #[test]
        fn merge_encoded_rejects_what_decode_rejects(
            acc in sketches(),
            other in sketches(),
            position in any::<prop::sample::Index>(),
            xor in 1u8..=255,
            cut in any::<prop::sample::Index>(),
            tail in prop::collection::vec(any::<u8>(), 0..4),
        ) {
            let valid = other.to_bytes();
            for bytes in &super::fixtures::corrupted(&valid, position, xor, cut, &tail) {
                let mut merged = acc.clone();
                let result = merged.merge_encoded(bytes);
                match merged_via_decode(acc.clone(), bytes) {
                    Ok(expected) => {
                        prop_assert_eq!(result, Ok(()));
                        prop_assert_eq!(&merged, &expected);
                    }
                    Err(e) => {
                        prop_assert_eq!(result, Err(e));
                        prop_assert_eq!(&merged, &acc, "unchanged after an error");
                    }
                }
            }
        }

        #[test]
        fn random_bytes_merge_like_decode(
            flags in 0u8..8,
            tail in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut bytes = vec![VERSION, flags];
            bytes.extend(&tail);
            let acc = sketch(&[(3.0, 1.0), (40.0, 2.0)]);
            for len in 0..=bytes.len() {
                let mut merged = acc.clone();
                let result = merged.merge_encoded(&bytes[..len]);
                match merged_via_decode(acc.clone(), &bytes[..len]) {
                    Ok(e) => {
                        prop_assert_eq!(result, Ok(()));
                        prop_assert_eq!(&merged, &e);
                    }
                    Err(e) => {
                        prop_assert_eq!(result, Err(e));
                        prop_assert_eq!(&merged, &acc);
                    }
                }
            }
        }
    }

    #[test]
    fn merging_many_small_sketches_matches_decode() {
        // The `quantile_merge` shape: hundreds of 20–60 value sketches into one accumulator.
        let mut via_bytes = QuantileSketch::new();
        let mut via_decode = QuantileSketch::new();
        for bytes in small_latency_sketches() {
            via_bytes.merge_encoded(&bytes).expect("valid");
            via_decode.merge(&QuantileSketch::decode(&bytes).expect("valid"));
        }
        assert_eq!(via_bytes, via_decode);
        assert!(via_bytes.count() > 0.0);
    }
}
