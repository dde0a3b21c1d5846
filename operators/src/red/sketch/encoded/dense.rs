//! Accumulating many encoded sketches into one dense store, in one pass over each encoding
//! ([`QuantileSketch::absorb_encoded`]): what `quantile_merge` in SQL does per row.
//!
//! Owns: the hot merge of a SQL accumulator. The input's entries are read as they come
//! (varints) and added straight into the accumulator's dense bins (`i16` keys in
//! `MIN_KEY..=MAX_KEY` index a `Vec<f32>` spanning the accumulator's range, grown exactly when
//! a key falls outside it) — no stack buffer, no sparse merge allocating a vector per row. Runs
//! of two-byte entries (the unsampled case) are checked in one tight pass over their bytes and
//! then added without per-entry branches.
//!
//! Must stay equivalent to `decode` + `merge` for valid input: the same bins (bit for bit, the
//! same saturating `f32` additions in the same order), total and zero bucket, so the same
//! quantiles; and an error exactly when `decode` gives one (the same error). Unlike
//! [`QuantileSketch::merge_encoded`] it is not atomic: after an error part of the input's bins
//! may have been added (never the totals). The sketch then stays safe to use (no panic, every
//! store invariant holds) but describes nothing meaningful: discard it — a failing SQL
//! aggregate fails the whole query anyway.

use super::super::{
    bump, checked_key, dense_len, densify, rebase, sparse_len, unzigzag, widen_compact, Header,
    QuantileSketch, Reader, SketchError, Store, FLAG_DENSE, MAX_KEY,
};
use super::{varint, weight};

impl QuantileSketch {
    /// Adds the sketch encoded in `bytes` to this one, keeping this one's store dense: for
    /// valid bytes the same bins, total and quantiles as
    /// `self.merge(&QuantileSketch::decode(bytes)?)`, and the same error for bytes that are not
    /// a sketch. Not atomic: after an error, discard this sketch (see the module doc).
    pub fn absorb_encoded(&mut self, bytes: &[u8]) -> Result<(), SketchError> {
        let mut r = Reader { bytes, pos: 0 };
        let Header {
            flags,
            integral_weights: integral,
            count,
            zero,
        } = r.header()?;
        make_dense(&mut self.store);
        let holds_bins = if flags & FLAG_DENSE == 0 {
            absorb_sparse(&mut r, integral, &mut self.store)?
        } else {
            absorb_dense(&mut r, integral, &mut self.store)?
        };
        if r.remaining() != 0 {
            return Err(SketchError::TrailingBytes(r.remaining()));
        }
        if (count > 0.0) != (zero > 0.0 || holds_bins) {
            return Err(SketchError::Invalid("total weight disagrees with the bins"));
        }
        // `merge` skips an empty input; adding 0.0 to a non-negative total is the same.
        self.count += count;
        self.zero += zero;
        Ok(())
    }
}

/// Turns a non-empty compact or sparse store into a dense one spanning its keys (an empty store
/// stays as it is until its first key).
fn make_dense(store: &mut Store) {
    match store {
        Store::Dense { .. } => {}
        Store::Compact(entries) if !entries.is_empty() => *store = densify(&widen_compact(entries)),
        Store::Sparse(entries) if !entries.is_empty() => *store = densify(entries),
        Store::Compact(_) | Store::Sparse(_) => {}
    }
}

/// Adds a positive weight at `key` to a store made dense by `make_dense`.
#[inline(always)]
fn add_at(store: &mut Store, key: i16, w: f32) {
    if let Store::Dense { offset, bins } = store {
        // A key below `offset` wraps to a huge index and misses.
        if let Some(bin) = bins.get_mut((i32::from(key) - i32::from(*offset)) as usize) {
            bump(bin, w);
            return;
        }
    }
    add_outside(store, key, w);
}

/// `add_at` for a key outside the dense range (or the first key of an empty store): the range
/// grows exactly to the key, so both edge bins keep weight.
#[cold]
#[inline(never)]
fn add_outside(store: &mut Store, key: i16, w: f32) {
    make_dense(store);
    match store {
        Store::Dense { offset, bins } if !bins.is_empty() => {
            let lo = i32::from(*offset);
            let hi = lo + bins.len() as i32 - 1;
            let k = i32::from(key);
            let new_lo = lo.min(k);
            rebase(offset, bins, new_lo, hi.max(k));
            if let Some(bin) = bins.get_mut((k - new_lo) as usize) {
                bump(bin, w);
            }
        }
        // Empty (`make_dense` leaves nothing else).
        _ => {
            *store = Store::Dense {
                offset: key,
                bins: vec![w.min(f32::MAX)],
            }
        }
    }
}

/// `decode`'s sparse store checks, adding each bin as it is read; whether any bin was read.
fn absorb_sparse(
    r: &mut Reader<'_>,
    integral: bool,
    store: &mut Store,
) -> Result<bool, SketchError> {
    let n = sparse_len(varint(r)?, r.remaining(), integral)?;
    let mut previous = 0i64;
    for i in 0..n {
        if i == 1 && integral && absorb_short_entries(r, n - 1, previous, store) {
            break;
        }
        let raw = varint(r)?;
        let key = if i == 0 {
            unzigzag(raw)
        } else {
            // Capped first so the sum cannot overflow; `checked_key` judges the rest.
            previous + 1 + raw.min(1 << 16) as i64
        };
        let key = checked_key(key)?;
        let w = match r.bytes.get(r.pos) {
            // The common case (unsampled spans, < 128 per bin): a one-byte varint, exact in f32.
            Some(&b) if integral && b < 0x80 => {
                r.pos += 1;
                f32::from(b)
            }
            _ => weight(r, integral)?,
        };
        if w == 0.0 {
            return Err(SketchError::Invalid("empty sparse bin"));
        }
        add_at(store, key, w);
        previous = i64::from(key);
    }
    Ok(n > 0)
}

/// The fast path of `absorb_sparse` for the `count` entries after the first (key `previous`,
/// already added) when each is two one-byte varints (gap < 128, integral weight 1..=127 —
/// typical of unsampled windows): one check pass over the bytes, one range extension, then
/// branch-free adds. Returns false, having changed nothing, when any entry is not of that form
/// or would fail a check (then the general loop reads them and reports the same error as
/// `decode`).
fn absorb_short_entries(
    r: &mut Reader<'_>,
    count: usize,
    previous: i64,
    store: &mut Store,
) -> bool {
    let Some(body) = r.bytes.get(r.pos..r.pos + 2 * count) else {
        return false;
    };
    let (mut high, mut empty, mut last) = (0u8, false, previous);
    for entry in body.chunks_exact(2) {
        high |= entry[0] | entry[1];
        empty |= entry[1] == 0;
        last += 1 + i64::from(entry[0]);
    }
    if high >= 0x80 || empty || last > i64::from(MAX_KEY) {
        return false;
    }
    // `previous` is held, so the store is dense and spans it: extend it to `last` (which gets
    // weight, so the edge stays non-empty), then every key is in range.
    let Store::Dense { offset, bins } = store else {
        return false;
    };
    let lo = i32::from(*offset);
    let hi = lo + bins.len() as i32 - 1;
    if (last as i32) > hi {
        rebase(offset, bins, lo, last as i32);
    }
    let mut index = (previous as i32 - i32::from(*offset)) as usize;
    for entry in body.chunks_exact(2) {
        index += 1 + usize::from(entry[0]);
        if let Some(bin) = bins.get_mut(index) {
            bump(bin, f32::from(entry[1]));
        }
    }
    r.pos += 2 * count;
    true
}

/// `decode`'s dense store checks, adding each non-empty bin as it is read; whether any bin was
/// read (always, for valid input).
fn absorb_dense(
    r: &mut Reader<'_>,
    integral: bool,
    store: &mut Store,
) -> Result<bool, SketchError> {
    let offset = checked_key(unzigzag(varint(r)?))?;
    let len = dense_len(offset, varint(r)?, r.remaining(), integral)?;
    let (mut first, mut last) = (0.0f32, 0.0f32);
    for i in 0..len {
        let w = weight(r, integral)?;
        if i == 0 {
            first = w;
        }
        last = w;
        if w != 0.0 {
            // In range: checked above (`offset + len − 1 <= MAX_KEY`).
            add_at(store, (i32::from(offset) + i as i32) as i16, w);
        }
    }
    if first == 0.0 || last == 0.0 {
        return Err(SketchError::Invalid("dense store edge bin is empty"));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{merged_via_decode, sketch, small_latency_sketches};
    use super::*;
    use crate::red::sketch::VERSION;
    use proptest::prelude::*;

    /// Sketches of every shape: empty, zero bucket only, compact, sparse, dense, fractional
    /// weights, bins past 2²¹ and 2²⁴.
    fn sketches() -> impl Strategy<Value = QuantileSketch> {
        super::super::fixtures::sketches(prop_oneof![
            6 => Just(1.0f64),
            2 => 0.01f64..50.0,
            1 => Just(3_000_000.0f64),
            1 => Just(40_000_000.0f64),
        ])
    }

    /// What a caller sees: bins, total, zero bucket and quantiles (the store's form may differ:
    /// the accumulator is always dense).
    fn assert_same_sketch(a: &QuantileSketch, b: &QuantileSketch) -> Result<(), TestCaseError> {
        prop_assert_eq!(a.count().to_bits(), b.count().to_bits());
        prop_assert_eq!(a.zero_weight().to_bits(), b.zero_weight().to_bits());
        let bins = |s: &QuantileSketch| s.bins().map(|(k, w)| (k, w.to_bits())).collect::<Vec<_>>();
        prop_assert_eq!(bins(a), bins(b));
        for q in [0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
            prop_assert_eq!(
                a.quantile(q).map(f64::to_bits),
                b.quantile(q).map(f64::to_bits)
            );
        }
        // Its encoding is a valid sketch with the same bins.
        let round = QuantileSketch::decode(&a.to_bytes())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(bins(&round), bins(b));
        Ok(())
    }

    /// Every store invariant `decode` checks, without going through the encoding.
    fn assert_store_invariants(s: &QuantileSketch) {
        match &s.store {
            Store::Dense { offset, bins } => {
                if let (Some(first), Some(last)) = (bins.first(), bins.last()) {
                    assert!(*first != 0.0 && *last != 0.0, "dense edges hold weight");
                }
                assert!(i32::from(*offset) + bins.len() as i32 - 1 <= i32::from(MAX_KEY));
                assert!(bins.len() <= QuantileSketch::MAX_BINS);
            }
            Store::Compact(_) | Store::Sparse(_) => {
                let keys: Vec<i16> = s.bins().map(|(k, _)| k).collect();
                assert!(keys.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }

    proptest! {
        #[test]
        fn absorb_encoded_equals_decode_then_merge(
            acc in sketches(),
            others in prop::collection::vec(sketches(), 1..8),
        ) {
            let mut absorbed = acc.clone();
            let mut via_decode = acc;
            for o in &others {
                let bytes = o.to_bytes();
                absorbed.absorb_encoded(&bytes).expect("a valid encoding");
                via_decode = merged_via_decode(via_decode, &bytes).expect("a valid encoding");
                assert_same_sketch(&absorbed, &via_decode)?;
                assert_store_invariants(&absorbed);
            }
        }

        #[test]
        fn absorb_encoded_rejects_what_decode_rejects(
            acc in sketches(),
            other in sketches(),
            position in any::<prop::sample::Index>(),
            xor in 1u8..=255,
            cut in any::<prop::sample::Index>(),
            tail in prop::collection::vec(any::<u8>(), 0..4),
        ) {
            let valid = other.to_bytes();
            for bytes in &super::super::fixtures::corrupted(&valid, position, xor, cut, &tail) {
                let mut absorbed = acc.clone();
                let result = absorbed.absorb_encoded(bytes);
                match merged_via_decode(acc.clone(), bytes) {
                    Ok(expected) => {
                        prop_assert_eq!(result, Ok(()));
                        assert_same_sketch(&absorbed, &expected)?;
                    }
                    Err(e) => {
                        prop_assert_eq!(result, Err(e));
                        // Discarded by contract, but still safe to use.
                        assert_store_invariants(&absorbed);
                        let _ = absorbed.quantile(0.99);
                        let _ = absorbed.to_bytes();
                        absorbed.merge(&acc);
                        let _ = absorbed.absorb_encoded(&valid);
                    }
                }
            }
        }

        #[test]
        fn random_bytes_absorb_like_decode(
            flags in 0u8..8,
            tail in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut bytes = vec![VERSION, flags];
            bytes.extend(&tail);
            let acc = sketch(&[(3.0, 1.0), (40.0, 2.0)]);
            for len in 0..=bytes.len() {
                let mut absorbed = acc.clone();
                let result = absorbed.absorb_encoded(&bytes[..len]);
                match merged_via_decode(acc.clone(), &bytes[..len]) {
                    Ok(e) => {
                        prop_assert_eq!(result, Ok(()));
                        assert_same_sketch(&absorbed, &e)?;
                    }
                    Err(e) => prop_assert_eq!(result, Err(e)),
                }
                assert_store_invariants(&absorbed);
            }
        }
    }

    #[test]
    fn an_empty_accumulator_takes_the_first_sketch_whole() {
        let mut acc = QuantileSketch::new();
        acc.absorb_encoded(&QuantileSketch::new().to_bytes())
            .expect("empty sketch");
        assert!(acc.is_empty());
        let zeros = sketch(&[(0.0, 2.0)]);
        acc.absorb_encoded(&zeros.to_bytes()).expect("zero bucket");
        assert_eq!(acc.count(), 2.0);
        assert_eq!(acc.bins().count(), 0);
        let s = sketch(&[(5.0, 1.0), (500.0, 3.0), (0.01, 1.0)]);
        acc.absorb_encoded(&s.to_bytes()).expect("sparse");
        let mut expected = zeros.clone();
        expected.merge(&s);
        assert_eq!(
            acc.bins().collect::<Vec<_>>(),
            expected.bins().collect::<Vec<_>>()
        );
        assert!(matches!(acc.store, Store::Dense { .. }));
        assert_store_invariants(&acc);
    }

    #[test]
    fn a_dense_encoding_with_an_empty_edge_is_refused() {
        // Dense, integral: total 2, zero 0, offset 2 (zigzag 4), 3 bins: 1, 1, 0.
        let bytes = [1, 7, 2, 0, 4, 3, 1, 1, 0];
        let mut acc = QuantileSketch::new();
        assert_eq!(
            acc.absorb_encoded(&bytes),
            Err(SketchError::Invalid("dense store edge bin is empty"))
        );
        assert_store_invariants(&acc);
        assert_eq!(acc.count(), 0.0, "totals are only added on success");
    }

    #[test]
    fn short_entries_take_the_fast_path_and_fall_back_with_decodes_errors() {
        // Keys 1..=40 apart by one, unit weights: after the first entry, two bytes per entry.
        let s = sketch(
            &(0..40)
                .map(|i| (1.5 * 1.0201f64.powi(i), 1.0))
                .collect::<Vec<_>>(),
        );
        let bytes = s.to_bytes();
        let mut acc = sketch(&[(100.0, 1.0)]);
        let mut expected = acc.clone();
        acc.absorb_encoded(&bytes).expect("valid");
        expected.merge(&s);
        assert_eq!(
            acc.bins().collect::<Vec<_>>(),
            expected.bins().collect::<Vec<_>>()
        );
        // The last weight zeroed, the last gap pushed past MAX_KEY, a two-byte gap: the same
        // outcome as decode.
        let n = bytes.len();
        let mut zero = bytes.clone();
        zero[n - 1] = 0;
        let mut far = bytes.clone();
        far[n - 2] = 0x7f;
        let mut far_high = s.to_bytes();
        far_high.truncate(n - 2);
        far_high.extend([0x80 | 0x7f, 0x0f, 1]);
        for b in [&zero, &far, &far_high] {
            let mut acc = QuantileSketch::new();
            let want = QuantileSketch::decode(b).map(|_| ());
            assert_eq!(acc.absorb_encoded(b), want);
            assert_store_invariants(&acc);
        }
    }

    #[test]
    fn many_small_sketches_match_decode_then_merge() {
        // The `quantile_merge` shape: hundreds of 20–60 value sketches into one accumulator.
        let mut absorbed = QuantileSketch::new();
        let mut via_decode = QuantileSketch::new();
        for bytes in small_latency_sketches() {
            absorbed.absorb_encoded(&bytes).expect("valid");
            via_decode.merge(&QuantileSketch::decode(&bytes).expect("valid"));
        }
        assert_eq!(absorbed.count(), via_decode.count());
        assert_eq!(
            absorbed.bins().collect::<Vec<_>>(),
            via_decode.bins().collect::<Vec<_>>()
        );
        assert!(matches!(absorbed.store, Store::Dense { .. }));
    }
}
