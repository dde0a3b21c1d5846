//! The bins of a [`QuantileSketch`]: the compact, sparse and dense stores, how they grow, widen
//! and merge. The sketch's module doc says why the stores look like this.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct SparseBin {
    pub(super) key: i16,
    pub(super) weight: f32,
}

/// Bins by key. Invariants: sparse (compact or not) keys strictly ascending with positive
/// weights, at most `SPARSE_MAX_KEYS` of them; dense bins non-empty at both ends; keys within
/// `MIN_KEY..=MAX_KEY`.
///
/// Every sketch starts [`Store::Compact`]: 4 bytes per key while weights are whole numbers below
/// 2²¹ per bin (unsampled spans: always, for any window up to two million spans in one bin). The
/// first fractional weight or overflowing bin widens it to [`Store::Sparse`] (8 bytes per key,
/// `f32` weights). Both encode alike: the representation never shows in an encoding, a quantile
/// or equality.
#[derive(Debug, Clone)]
pub(super) enum Store {
    Compact(Vec<u32>),
    Sparse(Vec<SparseBin>),
    Dense { offset: i16, bins: Vec<f32> },
}

impl Default for Store {
    fn default() -> Self {
        Store::Compact(Vec::new())
    }
}

impl PartialEq for Store {
    /// Same bins, both dense or both sparse (compact and wide sparse stores are the same
    /// sketch).
    fn eq(&self, other: &Store) -> bool {
        let dense = |s: &Store| matches!(s, Store::Dense { .. });
        dense(self) == dense(other) && self.iter().eq(other.iter())
    }
}

/// A compact bin is `(key − MIN_KEY) << COUNT_BITS | count`: 11 bits cover every key (`MAX_BINS`
/// = 1 843 < 2¹¹), so entries sort by key.
pub(super) const COUNT_BITS: u32 = 21;
pub(super) const COUNT_MASK: u32 = (1 << COUNT_BITS) - 1;

#[inline]
pub(super) fn compact_index(key: i16) -> u32 {
    (i32::from(key) - i32::from(MIN_KEY)) as u32
}

#[inline]
pub(super) fn compact_key(e: u32) -> i16 {
    ((e >> COUNT_BITS) as i32 + i32::from(MIN_KEY)) as i16
}

/// The whole-number weight a compact bin can take, if `w` is one.
#[inline]
pub(super) fn compact_weight(w: f32) -> Option<u32> {
    if w == 1.0 {
        // Unsampled spans: the common case, without `fract` (a libm call on baseline x86_64).
        return Some(1);
    }
    (w >= 1.0 && w <= COUNT_MASK as f32 && w as u32 as f32 == w).then_some(w as u32)
}

#[inline]
pub(super) fn compact_search(entries: &[u32], key: i16) -> Result<usize, usize> {
    let index = compact_index(key);
    entries.binary_search_by(|e| (e >> COUNT_BITS).cmp(&index))
}

/// Adds `c` to a compact bin unless its count would overflow.
#[inline]
pub(super) fn compact_bump(e: &mut u32, c: u32) -> bool {
    let fits = (*e & COUNT_MASK) + c <= COUNT_MASK;
    if fits {
        *e += c;
    }
    fits
}

pub(super) fn widen_compact(entries: &[u32]) -> Vec<SparseBin> {
    entries
        .iter()
        .map(|&e| SparseBin {
            key: compact_key(e),
            weight: (e & COUNT_MASK) as f32,
        })
        .collect()
}

/// Dense (4 bytes per spanned key, O(1) adds) once it is about as small as compact (4 bytes per
/// held key), past `SPARSE_MIN_KEYS`; always past `SPARSE_MAX_KEYS`.
pub(super) fn compact_should_densify(entries: &[u32]) -> bool {
    let (Some(&first), Some(&last)) = (entries.first(), entries.last()) else {
        return false;
    };
    let span = ((last >> COUNT_BITS) - (first >> COUNT_BITS) + 1) as usize;
    entries.len() > SPARSE_MIN_KEYS
        && (entries.len() > SPARSE_MAX_KEYS || span <= entries.len() + entries.len() / 8)
}

/// Union of two compact stores with exact capacity; `None` if a bin would overflow.
pub(super) fn merge_compact(a: &[u32], b: &[u32]) -> Option<Vec<u32>> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (ka, kb) = (a[i] >> COUNT_BITS, b[j] >> COUNT_BITS);
        if ka < kb {
            out.push(a[i]);
            i += 1;
        } else if kb < ka {
            out.push(b[j]);
            j += 1;
        } else {
            let mut e = a[i];
            if !compact_bump(&mut e, b[j] & COUNT_MASK) {
                return None;
            }
            out.push(e);
            i += 1;
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out.shrink_to_fit();
    Some(out)
}

impl Store {
    /// A sparse store holding `entries` (sorted, validated), compact when it can be.
    pub(super) fn sparse(entries: Vec<SparseBin>) -> Store {
        let compact: Option<Vec<u32>> = entries
            .iter()
            .map(|e| compact_weight(e.weight).map(|c| compact_index(e.key) << COUNT_BITS | c))
            .collect();
        match compact {
            Some(c) => Store::Compact(c),
            None => Store::Sparse(entries),
        }
    }

    /// Turns a compact store into a wide sparse one (any other store is left as it is).
    pub(super) fn widen(&mut self) {
        if let Store::Compact(entries) = self {
            *self = Store::Sparse(widen_compact(entries));
        }
    }

    /// Bins held (spanned, for a dense store).
    pub(super) fn len(&self) -> usize {
        match self {
            Store::Compact(e) => e.len(),
            Store::Sparse(e) => e.len(),
            Store::Dense { bins, .. } => bins.len(),
        }
    }

    #[inline]
    pub(super) fn add(&mut self, key: i16, w: f32) {
        match self {
            Store::Dense { offset, bins } => {
                // A key below `offset` wraps to a huge index and misses.
                let index = (i32::from(key) - i32::from(*offset)) as usize;
                if let Some(bin) = bins.get_mut(index) {
                    bump(bin, w);
                    return;
                }
            }
            Store::Compact(entries) => {
                if let (Ok(i), Some(c)) = (compact_search(entries, key), compact_weight(w)) {
                    if compact_bump(&mut entries[i], c) {
                        return;
                    }
                }
            }
            Store::Sparse(entries) => {
                if let Ok(i) = entries.binary_search_by_key(&key, |e| e.key) {
                    bump(&mut entries[i].weight, w);
                    return;
                }
            }
        }
        self.add_new_key(key, w);
    }

    /// `add` for a key outside the dense range or missing from the sparse store.
    #[cold]
    pub(super) fn add_new_key(&mut self, key: i16, w: f32) {
        if let Store::Compact(entries) = self {
            if let (Err(i), Some(c)) = (compact_search(entries, key), compact_weight(w)) {
                if entries.len() == entries.capacity() {
                    entries.reserve_exact((entries.len() / 2).max(4));
                }
                entries.insert(i, compact_index(key) << COUNT_BITS | c);
                if compact_should_densify(entries) {
                    *self = densify(&widen_compact(entries));
                }
                return;
            }
            // A fractional weight or an overflowing bin.
            self.widen();
        }
        let key = i32::from(key);
        match self {
            Store::Dense { offset, bins } => {
                let lo = i32::from(*offset);
                let hi = lo + bins.len() as i32 - 1;
                let (new_lo, new_hi) = (lo.min(key), hi.max(key));
                rebase(offset, bins, new_lo, new_hi);
                bump(&mut bins[(key - new_lo) as usize], w);
            }
            Store::Sparse(entries) => {
                sparse_add(entries, key as i16, w);
                if should_densify(entries) {
                    *self = densify(entries);
                }
            }
            Store::Compact(_) => unreachable!("widened above"),
        }
    }

    pub(super) fn merge(&mut self, other: &Store) {
        let Some((other_lo, other_hi)) = other.key_range() else {
            return;
        };
        if let (Store::Compact(a), Store::Compact(b)) = (&mut *self, other) {
            if let Some(merged) = merge_compact(a, b) {
                *a = merged;
                if compact_should_densify(a) {
                    *self = densify(&widen_compact(a));
                }
                return;
            }
        }
        self.widen();
        let (lo, hi) = match self.key_range() {
            Some((lo, hi)) => (lo.min(other_lo), hi.max(other_hi)),
            None => (other_lo, other_hi),
        };
        if let Store::Sparse(a) = &mut *self {
            let merged = match other {
                Store::Sparse(b) => Some(merge_sparse(a, b)),
                Store::Compact(b) => Some(merge_sparse(a, &widen_compact(b))),
                Store::Dense { .. } => None,
            };
            if let Some(m) = merged {
                *a = m;
                if should_densify(a) {
                    *self = densify(a);
                }
                return;
            }
        }
        match self {
            Store::Dense { offset, bins } => rebase(offset, bins, lo, hi),
            Store::Sparse(entries) => *self = dense_from(entries, lo, hi),
            Store::Compact(_) => unreachable!("widened above"),
        }
        let Store::Dense { bins, .. } = self else {
            unreachable!("made dense above");
        };
        for (key, w) in other.iter() {
            bump(&mut bins[(i32::from(key) - lo) as usize], w);
        }
    }

    /// Lowest and highest key holding weight.
    pub(super) fn key_range(&self) -> Option<(i32, i32)> {
        match self {
            Store::Compact(entries) => Some((
                i32::from(compact_key(*entries.first()?)),
                i32::from(compact_key(*entries.last()?)),
            )),
            Store::Sparse(entries) => Some((
                i32::from(entries.first()?.key),
                i32::from(entries.last()?.key),
            )),
            Store::Dense { offset, bins } if !bins.is_empty() => {
                let lo = i32::from(*offset);
                Some((lo, lo + bins.len() as i32 - 1))
            }
            Store::Dense { .. } => None,
        }
    }

    /// Non-empty bins, keys ascending.
    pub(super) fn iter(&self) -> BinIter<'_> {
        match self {
            Store::Compact(entries) => BinIter::Compact(entries.iter()),
            Store::Sparse(entries) => BinIter::Sparse(entries.iter()),
            Store::Dense { offset, bins } => BinIter::Dense {
                key: i32::from(*offset),
                bins: bins.iter(),
            },
        }
    }
}

pub(super) enum BinIter<'a> {
    Compact(std::slice::Iter<'a, u32>),
    Sparse(std::slice::Iter<'a, SparseBin>),
    Dense {
        key: i32,
        bins: std::slice::Iter<'a, f32>,
    },
}

impl Iterator for BinIter<'_> {
    type Item = (i16, f32);

    fn next(&mut self) -> Option<(i16, f32)> {
        match self {
            BinIter::Compact(it) => it
                .next()
                .map(|&e| (compact_key(e), (e & COUNT_MASK) as f32)),
            BinIter::Sparse(it) => it.next().map(|e| (e.key, e.weight)),
            BinIter::Dense { key, bins } => loop {
                let w = *bins.next()?;
                let k = *key;
                *key += 1;
                if w != 0.0 {
                    return Some((k as i16, w));
                }
            },
        }
    }
}

/// Re-spans a dense store to `[new_lo, new_hi]`, which must contain its current range (keys
/// are always within `MIN_KEY..=MAX_KEY`, so the span is at most `MAX_BINS`).
pub(super) fn rebase(offset: &mut i16, bins: &mut Vec<f32>, new_lo: i32, new_hi: i32) {
    let lo = i32::from(*offset);
    let new_len = (new_hi - new_lo + 1) as usize;
    debug_assert!(new_lo <= lo && new_hi >= lo + bins.len() as i32 - 1);
    debug_assert!(new_len <= QuantileSketch::MAX_BINS);
    if new_lo == lo {
        if new_len > bins.len() {
            // Exact: a range grows rarely and a few spare bins would cost every series memory.
            bins.reserve_exact(new_len - bins.len());
            bins.resize(new_len, 0.0);
        }
        return;
    }
    let mut fresh = vec![0.0f32; new_len];
    let start = (lo - new_lo) as usize;
    fresh[start..start + bins.len()].copy_from_slice(bins);
    *bins = fresh;
    *offset = new_lo as i16;
}

/// A dense store spanning `[lo, hi]` (which contains every key of `entries`) holding `entries`.
pub(super) fn dense_from(entries: &[SparseBin], lo: i32, hi: i32) -> Store {
    let mut bins = vec![0.0f32; (hi - lo + 1) as usize];
    for e in entries {
        bins[(i32::from(e.key) - lo) as usize] = e.weight;
    }
    Store::Dense {
        offset: lo as i16,
        bins,
    }
}

pub(super) fn densify(entries: &[SparseBin]) -> Store {
    match (entries.first(), entries.last()) {
        (Some(first), Some(last)) => dense_from(entries, first.key.into(), last.key.into()),
        _ => Store::default(),
    }
}

/// Dense once it is no larger than sparse (4 bytes per spanned key vs 8 per held key), past
/// `SPARSE_MIN_KEYS`; always past `SPARSE_MAX_KEYS`.
pub(super) fn should_densify(entries: &[SparseBin]) -> bool {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return false;
    };
    let span = (i32::from(last.key) - i32::from(first.key) + 1) as usize;
    entries.len() > SPARSE_MIN_KEYS
        && (entries.len() > SPARSE_MAX_KEYS || span <= 2 * entries.len())
}

/// Adds `w` at `key` in a sorted sparse store, growing capacity by half (not doubling).
pub(super) fn sparse_add(entries: &mut Vec<SparseBin>, key: i16, w: f32) {
    match entries.binary_search_by_key(&key, |e| e.key) {
        Ok(i) => bump(&mut entries[i].weight, w),
        Err(i) => {
            if entries.len() == entries.capacity() {
                entries.reserve_exact((entries.len() / 2).max(4));
            }
            entries.insert(i, SparseBin { key, weight: w });
        }
    }
}

/// Union of two sorted sparse stores, with exact capacity.
pub(super) fn merge_sparse(a: &[SparseBin], b: &[SparseBin]) -> Vec<SparseBin> {
    let shared = {
        let (mut i, mut j, mut shared) = (0, 0, 0);
        while i < a.len() && j < b.len() {
            match a[i].key.cmp(&b[j].key) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    shared += 1;
                    i += 1;
                    j += 1;
                }
            }
        }
        shared
    };
    let mut out = Vec::with_capacity(a.len() + b.len() - shared);
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let take_a = j == b.len() || (i < a.len() && a[i].key <= b[j].key);
        let take_b = i == a.len() || (j < b.len() && b[j].key <= a[i].key);
        let mut e = if take_a { a[i] } else { b[j] };
        if take_a && take_b {
            bump(&mut e.weight, b[j].weight);
        }
        out.push(e);
        i += usize::from(take_a);
        j += usize::from(take_b);
    }
    out
}
