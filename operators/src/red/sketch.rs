//! A mergeable quantile sketch for span durations: DDSketch (Masson, Rim & Lee, "DDSketch: a fast
//! and fully-mergeable quantile sketch with relative-error guarantees", VLDB 2019) with the
//! logarithmic mapping and a compact hybrid store.
//!
//! Owns: one series' duration distribution (milliseconds), its exact merge (window roll-ups and
//! `quantile_merge` in SQL) and its versioned binary encoding (the `duration_sketch` column).
//! Must not: know about windows, series or Arrow — it is a plain value type.
//!
//! Why not the `sketches-ddsketch` crate: its dense `Vec<u64>` store costs 1–4 KiB per sketch for
//! typical latency ranges and counts are integers, while the budget is ≤ 2 KiB per active series
//! (several open windows included) and spans carry fractional sampling weights.
//!
//! - **Mapping.** `gamma = (1 + α) / (1 − α)` with α = 1 %, bucket `key = ceil(ln v / ln gamma)`
//!   covers `(gamma^(key−1), gamma^key]` and is reported as `2·gamma^key / (gamma + 1)`, within
//!   α of every value in it. Values below [`QuantileSketch::MIN_VALUE`] go to a zero bucket
//!   reported as 0; values above [`QuantileSketch::MAX_VALUE`] (and +∞) share the top key. The
//!   range is 1 ns (OTLP's timestamp resolution, so every non-zero span duration is in it) to
//!   ~116 days: [`QuantileSketch::MAX_BINS`] keys, each fitting an `i16`.
//! - **Store.** A sorted sparse `Vec` of 4-byte compact entries (key and a whole count < 2²¹
//!   in one `u32`) while every weight is a whole number — unsampled spans — or else of 8-byte
//!   `(i16 key, f32 weight)` entries; sparse while that is the smaller form (always for ≤ 64
//!   keys, never beyond 256), then a dense `offset: i16` + `Vec<f32>` spanning exactly the
//!   lowest to the highest key. Window state packs sketches with [`QuantileSketch::pack_state`]
//!   (~1 byte per key). Nothing is ever collapsed: the
//!   whole value range is at most `MAX_BINS` keys (≤ 7.4 KiB dense, for a sketch holding both
//!   1 ns and 116 days), so every quantile keeps the α guarantee. A collapsing-lowest store
//!   (DDSketch's) would save memory only for sketches spanning more than ~10 decades, and costs
//!   exactly the low quantiles of windows that mix no-op spans of a few ns with slow calls.
//! - **Weights.** Bins hold `f32`: integral per-bin totals are exact up to 2²⁴ (16.7 M); above
//!   that, small increments to a single bin get lost in rounding. Merging large bins stays
//!   accurate to 2⁻²⁴ relative. The total and the zero bucket are `f64`.
//! - **Quantile rank.** With total weight `W`, `quantile(q)` reports the bucket where the
//!   cumulative weight (zero bucket first, then keys ascending) first exceeds `q·(W − 1)`. For
//!   unit weights that is DDSketch's lower quantile: the estimate is within α of
//!   `x[⌊q·(n−1)⌋]` of the sorted values; an integral weight `w` counts as `w` copies, and
//!   fractional weights extend the same rule continuously.
//! - **Encoding** (version 1): version byte, flags byte (dense store / integral bin weights as
//!   varints instead of `f32` LE / integral totals as varints instead of `f64` LE), total, zero
//!   weight, then either `n` sparse entries (first key zigzag varint, then `gap − 1` varints,
//!   each followed by its weight) or a dense store (zigzag offset, length, every bin's weight).
//!   [`QuantileSketch::decode`] checks every invariant the code relies on and never allocates
//!   more than the input can describe.

use redwatch_engine::prefetch::prefetch_slice;
use thiserror::Error;

mod codec;
mod encoded;
mod packed;
#[cfg(test)]
mod tests;

pub use codec::put_varint;
use codec::{checked_key, unzigzag, zigzag, Header, Reader};

const GAMMA: f64 =
    (1.0 + QuantileSketch::RELATIVE_ACCURACY) / (1.0 - QuantileSketch::RELATIVE_ACCURACY);
/// `GAMMA.ln()`, spelled out because `ln` is not `const` (a test checks it).
const LN_GAMMA: f64 = 0.020_000_666_706_669_435;
const INV_LN_GAMMA: f64 = 1.0 / LN_GAMMA;
const ESTIMATE_FACTOR: f64 = 2.0 / (GAMMA + 1.0);
/// Key of [`QuantileSketch::MIN_VALUE`] and of [`QuantileSketch::MAX_VALUE`] (a test checks them).
const MIN_KEY: i16 = -690;
const MAX_KEY: i16 = 1152;
/// A sparse store switches to dense only when it holds more keys than this…
const SPARSE_MIN_KEYS: usize = 64;
/// …and always before it holds more than this (keeps inserts cheap).
const SPARSE_MAX_KEYS: usize = 256;

const VERSION: u8 = 1;
const FLAG_DENSE: u8 = 1;
const FLAG_INTEGRAL_WEIGHTS: u8 = 2;
const FLAG_INTEGRAL_TOTALS: u8 = 4;
const KNOWN_FLAGS: u8 = FLAG_DENSE | FLAG_INTEGRAL_WEIGHTS | FLAG_INTEGRAL_TOTALS;
/// Integral bin weights up to this are written as varints.
const MAX_VARINT_WEIGHT: f32 = 4_294_967_296.0;
/// Integral totals up to this (2^53) are written as varints.
const MAX_VARINT_TOTAL: f64 = 9_007_199_254_740_992.0;

/// Why bytes are not a sketch. Decoding is deterministic: retrying the same bytes cannot help.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SketchError {
    #[error("sketch encoding ends early")]
    Truncated,
    #[error("unsupported sketch encoding version {0} (this build reads version {VERSION})")]
    UnsupportedVersion(u8),
    #[error("unknown sketch encoding flags {0:#04x}")]
    UnknownFlags(u8),
    #[error("malformed varint in sketch encoding")]
    BadVarint,
    #[error("invalid sketch encoding: {0}")]
    Invalid(&'static str),
    #[error("{0} trailing bytes after sketch encoding")]
    TrailingBytes(usize),
}

/// A mergeable DDSketch of durations in milliseconds; see the module doc.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuantileSketch {
    /// Total weight added (zero bucket included).
    count: f64,
    /// Weight of values below `MIN_VALUE`.
    zero: f64,
    store: Store,
}

impl QuantileSketch {
    /// Relative accuracy guarantee alpha.
    pub const RELATIVE_ACCURACY: f64 = 0.01;
    /// Values below this (ms; 1 ns) are counted in the zero bucket and reported as 0.
    pub const MIN_VALUE: f64 = 1e-6;
    /// Values from this (ms; ≈ 116 days) up share the highest key (reported as ≈ 1e10).
    pub const MAX_VALUE: f64 = 1e10;
    /// Number of keys from `MIN_VALUE` to `MAX_VALUE`: the most a store can span.
    pub const MAX_BINS: usize = (MAX_KEY as i32 - MIN_KEY as i32 + 1) as usize;

    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a value (milliseconds, >= 0; NaN/negative are ignored) with a weight (> 0, finite;
    /// others ignored, as are weights outside `f32`'s range).
    #[inline]
    pub fn add(&mut self, value: f64, weight: f64) {
        let w = weight as f32;
        // Written so that NaN value or weight fails the test.
        let valid = value >= 0.0 && w > 0.0 && w <= f32::MAX;
        if !valid {
            return;
        }
        self.count += weight;
        if value < Self::MIN_VALUE {
            self.zero += weight;
        } else {
            self.store.add(key_of(value), w);
        }
    }

    /// Starts loading what [`add`](Self::add) of `value` will read into the cache: the bin of
    /// a dense store, the entries a sparse one searches (up to 16 lines).
    #[inline]
    pub fn prefetch(&self, value: f64) {
        match &self.store {
            Store::Dense { offset, bins } => {
                let index = (i32::from(key_of(value.max(Self::MIN_VALUE))) - i32::from(*offset))
                    .clamp(0, bins.len().saturating_sub(1) as i32);
                prefetch_slice(&bins[index as usize..], 1);
            }
            Store::Compact(entries) => prefetch_slice(entries, 16),
            Store::Sparse(entries) => prefetch_slice(entries, 16),
        }
    }

    /// Adds everything `other` holds. Bin by bin the result equals the sketch of both inputs.
    pub fn merge(&mut self, other: &QuantileSketch) {
        if other.count == 0.0 {
            return;
        }
        self.count += other.count;
        self.zero += other.zero;
        self.store.merge(&other.store);
    }

    /// Total weight.
    pub fn count(&self) -> f64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0.0
    }

    /// Weight counted in the zero bucket (values below [`Self::MIN_VALUE`]).
    pub fn zero_weight(&self) -> f64 {
        self.zero
    }

    /// Non-empty bins as `(key, weight)`, keys ascending (zero bucket not included).
    pub fn bins(&self) -> impl Iterator<Item = (i16, f32)> + '_ {
        self.store.iter()
    }

    /// Estimate of the q-quantile (0 <= q <= 1), None when empty or when `q` is outside [0, 1].
    /// See the module doc for the rank definition.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&q) || self.is_empty() {
            return None;
        }
        let rank = (q * (self.count - 1.0)).max(0.0);
        let mut cumulative = self.zero;
        if cumulative > rank {
            return Some(0.0);
        }
        let mut last = None;
        for (key, w) in self.store.iter() {
            cumulative += f64::from(w);
            if cumulative > rank {
                return Some(estimate(key));
            }
            last = Some(key);
        }
        // Only reachable when f32 rounding left the bins short of the f64 total.
        Some(last.map_or(0.0, estimate))
    }

    /// Heap bytes owned (for state accounting).
    pub fn heap_bytes(&self) -> usize {
        match &self.store {
            Store::Compact(entries) => entries.capacity() * std::mem::size_of::<u32>(),
            Store::Sparse(entries) => entries.capacity() * std::mem::size_of::<SparseBin>(),
            Store::Dense { bins, .. } => bins.capacity() * std::mem::size_of::<f32>(),
        }
    }

    /// Drops spare capacity (e.g. once a window is final and only read or merged from).
    pub fn shrink_to_fit(&mut self) {
        match &mut self.store {
            Store::Compact(entries) => entries.shrink_to_fit(),
            Store::Sparse(entries) => entries.shrink_to_fit(),
            Store::Dense { bins, .. } => bins.shrink_to_fit(),
        }
    }
}

/// The bucket key of a value `>= MIN_VALUE`.
#[inline]
fn key_of(value: f64) -> i16 {
    if value >= QuantileSketch::MAX_VALUE {
        return MAX_KEY;
    }
    // In range by construction; the clamp guards the float edges (and `as` saturates anyway).
    ((value.ln() * INV_LN_GAMMA).ceil() as i16).clamp(MIN_KEY, MAX_KEY)
}

/// The value reported for a bucket key.
fn estimate(key: i16) -> f64 {
    (f64::from(key) * LN_GAMMA).exp() * ESTIMATE_FACTOR
}

/// Adds to a bin, saturating instead of reaching +∞.
#[inline]
fn bump(bin: &mut f32, w: f32) {
    *bin = (*bin + w).min(f32::MAX);
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct SparseBin {
    key: i16,
    weight: f32,
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
enum Store {
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
const COUNT_BITS: u32 = 21;
const COUNT_MASK: u32 = (1 << COUNT_BITS) - 1;

#[inline]
fn compact_index(key: i16) -> u32 {
    (i32::from(key) - i32::from(MIN_KEY)) as u32
}

#[inline]
fn compact_key(e: u32) -> i16 {
    ((e >> COUNT_BITS) as i32 + i32::from(MIN_KEY)) as i16
}

/// The whole-number weight a compact bin can take, if `w` is one.
#[inline]
fn compact_weight(w: f32) -> Option<u32> {
    if w == 1.0 {
        // Unsampled spans: the common case, without `fract` (a libm call on baseline x86_64).
        return Some(1);
    }
    (w >= 1.0 && w <= COUNT_MASK as f32 && w as u32 as f32 == w).then_some(w as u32)
}

#[inline]
fn compact_search(entries: &[u32], key: i16) -> Result<usize, usize> {
    let index = compact_index(key);
    entries.binary_search_by(|e| (e >> COUNT_BITS).cmp(&index))
}

/// Adds `c` to a compact bin unless its count would overflow.
#[inline]
fn compact_bump(e: &mut u32, c: u32) -> bool {
    let fits = (*e & COUNT_MASK) + c <= COUNT_MASK;
    if fits {
        *e += c;
    }
    fits
}

fn widen_compact(entries: &[u32]) -> Vec<SparseBin> {
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
fn compact_should_densify(entries: &[u32]) -> bool {
    let (Some(&first), Some(&last)) = (entries.first(), entries.last()) else {
        return false;
    };
    let span = ((last >> COUNT_BITS) - (first >> COUNT_BITS) + 1) as usize;
    entries.len() > SPARSE_MIN_KEYS
        && (entries.len() > SPARSE_MAX_KEYS || span <= entries.len() + entries.len() / 8)
}

/// Union of two compact stores with exact capacity; `None` if a bin would overflow.
fn merge_compact(a: &[u32], b: &[u32]) -> Option<Vec<u32>> {
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
    fn sparse(entries: Vec<SparseBin>) -> Store {
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
    fn widen(&mut self) {
        if let Store::Compact(entries) = self {
            *self = Store::Sparse(widen_compact(entries));
        }
    }

    /// Bins held (spanned, for a dense store).
    fn len(&self) -> usize {
        match self {
            Store::Compact(e) => e.len(),
            Store::Sparse(e) => e.len(),
            Store::Dense { bins, .. } => bins.len(),
        }
    }

    #[inline]
    fn add(&mut self, key: i16, w: f32) {
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
    fn add_new_key(&mut self, key: i16, w: f32) {
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

    fn merge(&mut self, other: &Store) {
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
    fn key_range(&self) -> Option<(i32, i32)> {
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
    fn iter(&self) -> BinIter<'_> {
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

enum BinIter<'a> {
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
fn rebase(offset: &mut i16, bins: &mut Vec<f32>, new_lo: i32, new_hi: i32) {
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
fn dense_from(entries: &[SparseBin], lo: i32, hi: i32) -> Store {
    let mut bins = vec![0.0f32; (hi - lo + 1) as usize];
    for e in entries {
        bins[(i32::from(e.key) - lo) as usize] = e.weight;
    }
    Store::Dense {
        offset: lo as i16,
        bins,
    }
}

fn densify(entries: &[SparseBin]) -> Store {
    match (entries.first(), entries.last()) {
        (Some(first), Some(last)) => dense_from(entries, first.key.into(), last.key.into()),
        _ => Store::default(),
    }
}

/// Dense once it is no larger than sparse (4 bytes per spanned key vs 8 per held key), past
/// `SPARSE_MIN_KEYS`; always past `SPARSE_MAX_KEYS`.
fn should_densify(entries: &[SparseBin]) -> bool {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return false;
    };
    let span = (i32::from(last.key) - i32::from(first.key) + 1) as usize;
    entries.len() > SPARSE_MIN_KEYS
        && (entries.len() > SPARSE_MAX_KEYS || span <= 2 * entries.len())
}

/// Adds `w` at `key` in a sorted sparse store, growing capacity by half (not doubling).
fn sparse_add(entries: &mut Vec<SparseBin>, key: i16, w: f32) {
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
fn merge_sparse(a: &[SparseBin], b: &[SparseBin]) -> Vec<SparseBin> {
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
