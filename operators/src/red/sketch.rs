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

mod encoded;
mod packed;

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

    /// Compact, versioned binary encoding (this goes into an Arrow Binary column and is decoded
    /// by a SQL UDF later).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let integral_totals = is_integral_total(self.count) && is_integral_total(self.zero);
        let integral_weights = match &self.store {
            Store::Compact(_) => true,
            Store::Sparse(entries) => entries.iter().all(|e| is_integral_weight(e.weight)),
            Store::Dense { bins, .. } => bins.iter().all(|&w| is_integral_weight(w)),
        };
        let mut flags = 0;
        if matches!(self.store, Store::Dense { .. }) {
            flags |= FLAG_DENSE;
        }
        if integral_weights {
            flags |= FLAG_INTEGRAL_WEIGHTS;
        }
        if integral_totals {
            flags |= FLAG_INTEGRAL_TOTALS;
        }
        out.push(VERSION);
        out.push(flags);
        for total in [self.count, self.zero] {
            if integral_totals {
                put_varint(out, total as u64);
            } else {
                out.extend_from_slice(&total.to_le_bytes());
            }
        }
        let put_weight = |out: &mut Vec<u8>, w: f32| {
            if integral_weights {
                put_varint(out, w as u64);
            } else {
                out.extend_from_slice(&w.to_le_bytes());
            }
        };
        match &self.store {
            Store::Compact(_) | Store::Sparse(_) => {
                put_varint(out, self.store.len() as u64);
                let mut previous: Option<i16> = None;
                for (key, weight) in self.store.iter() {
                    match previous {
                        None => put_varint(out, zigzag(key)),
                        Some(p) => put_varint(out, (i32::from(key) - i32::from(p) - 1) as u64),
                    }
                    put_weight(out, weight);
                    previous = Some(key);
                }
            }
            Store::Dense { offset, bins } => {
                put_varint(out, zigzag(*offset));
                put_varint(out, bins.len() as u64);
                for &w in bins {
                    put_weight(out, w);
                }
            }
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes [`Self::encode`]'s output; any other input gives an error (never a panic).
    pub fn decode(bytes: &[u8]) -> Result<QuantileSketch, SketchError> {
        let mut r = Reader { bytes, pos: 0 };
        let Header {
            flags,
            integral_weights,
            count,
            zero,
        } = r.header()?;
        let min_weight_bytes = if integral_weights { 1 } else { 4 };
        let store = if flags & FLAG_DENSE == 0 {
            let n = r.varint()?;
            if n > SPARSE_MAX_KEYS as u64 {
                return Err(SketchError::Invalid("too many sparse bins"));
            }
            let n = n as usize;
            if n * (1 + min_weight_bytes) > r.remaining() {
                return Err(SketchError::Truncated);
            }
            let mut entries = Vec::with_capacity(n);
            let mut previous: Option<i64> = None;
            for _ in 0..n {
                let raw = r.varint()?;
                let key = match previous {
                    None => unzigzag(raw),
                    // Capped first so the sum cannot overflow; `checked_key` judges the rest.
                    Some(p) => p + 1 + raw.min(1 << 16) as i64,
                };
                let key = checked_key(key)?;
                let weight = r.weight(integral_weights)?;
                if weight == 0.0 {
                    return Err(SketchError::Invalid("empty sparse bin"));
                }
                entries.push(SparseBin { key, weight });
                previous = Some(i64::from(key));
            }
            Store::sparse(entries)
        } else {
            let offset = checked_key(unzigzag(r.varint()?))?;
            let len = r.varint()?;
            if len == 0 || len > QuantileSketch::MAX_BINS as u64 {
                return Err(SketchError::Invalid("dense store length out of range"));
            }
            if i64::from(offset) + len as i64 - 1 > i64::from(MAX_KEY) {
                return Err(SketchError::Invalid("bin key out of range"));
            }
            let len = len as usize;
            if len * min_weight_bytes > r.remaining() {
                return Err(SketchError::Truncated);
            }
            let mut bins = Vec::with_capacity(len);
            for _ in 0..len {
                bins.push(r.weight(integral_weights)?);
            }
            if bins[0] == 0.0 || bins[len - 1] == 0.0 {
                return Err(SketchError::Invalid("dense store edge bin is empty"));
            }
            Store::Dense { offset, bins }
        };
        if r.remaining() != 0 {
            return Err(SketchError::TrailingBytes(r.remaining()));
        }
        let holds_weight = zero > 0.0 || store.iter().next().is_some();
        if (count > 0.0) != holds_weight {
            return Err(SketchError::Invalid("total weight disagrees with the bins"));
        }
        Ok(QuantileSketch { count, zero, store })
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

fn is_integral_total(x: f64) -> bool {
    x.fract() == 0.0 && x <= MAX_VARINT_TOTAL
}

fn is_integral_weight(w: f32) -> bool {
    w.fract() == 0.0 && w <= MAX_VARINT_WEIGHT
}

fn zigzag(key: i16) -> u64 {
    let k = i64::from(key);
    ((k << 1) ^ (k >> 63)) as u64
}

fn unzigzag(raw: u64) -> i64 {
    (raw >> 1) as i64 ^ -((raw & 1) as i64)
}

fn checked_key(key: i64) -> Result<i16, SketchError> {
    if (i64::from(MIN_KEY)..=i64::from(MAX_KEY)).contains(&key) {
        Ok(key as i16)
    } else {
        Err(SketchError::Invalid("bin key out of range"))
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// The fixed start of an encoding, checked: version, flags and the two totals.
struct Header {
    flags: u8,
    integral_weights: bool,
    count: f64,
    zero: f64,
}

impl Reader<'_> {
    /// Reads and checks the [`Header`] (`decode`, `merge_encoded` and `absorb_encoded` share it,
    /// so the same bytes give the same error everywhere).
    fn header(&mut self) -> Result<Header, SketchError> {
        let version = self.byte()?;
        if version != VERSION {
            return Err(SketchError::UnsupportedVersion(version));
        }
        let flags = self.byte()?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(SketchError::UnknownFlags(flags));
        }
        let count = self.total(flags & FLAG_INTEGRAL_TOTALS != 0)?;
        let zero = self.total(flags & FLAG_INTEGRAL_TOTALS != 0)?;
        if zero > count {
            return Err(SketchError::Invalid("zero bucket exceeds the total weight"));
        }
        Ok(Header {
            flags,
            integral_weights: flags & FLAG_INTEGRAL_WEIGHTS != 0,
            count,
            zero,
        })
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, SketchError> {
        let b = *self.bytes.get(self.pos).ok_or(SketchError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SketchError> {
        let end = self.pos.checked_add(N).ok_or(SketchError::Truncated)?;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or(SketchError::Truncated)?;
        self.pos = end;
        slice.try_into().map_err(|_| SketchError::Truncated)
    }

    fn varint(&mut self) -> Result<u64, SketchError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                return Err(SketchError::BadVarint);
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(SketchError::BadVarint)
    }

    fn total(&mut self, integral: bool) -> Result<f64, SketchError> {
        let x = if integral {
            let v = self.varint()?;
            if v > 1 << 53 {
                return Err(SketchError::Invalid("total out of range"));
            }
            v as f64
        } else {
            f64::from_le_bytes(self.array()?)
        };
        if x >= 0.0 && x.is_finite() {
            Ok(x)
        } else {
            Err(SketchError::Invalid("total is negative or not finite"))
        }
    }

    fn weight(&mut self, integral: bool) -> Result<f32, SketchError> {
        if integral {
            let v = self.varint()?;
            let w = v as f32;
            // Only exactly representable integers: one sketch, one encoding.
            if w > MAX_VARINT_WEIGHT || w as u64 != v {
                return Err(SketchError::Invalid("weight not representable"));
            }
            Ok(w)
        } else {
            let w = f32::from_le_bytes(self.array()?);
            if w >= 0.0 && w.is_finite() {
                Ok(w)
            } else {
                Err(SketchError::Invalid("weight is negative or not finite"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    use rand_distr::{Distribution, LogNormal, Pareto};

    const QS: [f64; 8] = [0.0, 0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0];

    fn sketch_of(values: &[f64]) -> QuantileSketch {
        let mut s = QuantileSketch::new();
        for &v in values {
            s.add(v, 1.0);
        }
        s
    }

    fn log_normal(seed: u64, mu: f64, sigma: f64, n: usize) -> Vec<f64> {
        let dist = LogNormal::new(mu, sigma).unwrap();
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n).map(|_| dist.sample(&mut rng)).collect()
    }

    /// `x[⌊q·(n−1)⌋]` of the sorted values, with the same float expression the sketch uses.
    fn exact_lower_quantile(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() as f64 - 1.0)).floor() as usize]
    }

    fn is_dense(s: &QuantileSketch) -> bool {
        matches!(s.store, Store::Dense { .. })
    }

    fn bins(s: &QuantileSketch) -> Vec<(i16, f32)> {
        s.bins().collect()
    }

    /// Same logical content: bins, zero bucket, total and quantiles.
    fn assert_same(a: &QuantileSketch, b: &QuantileSketch) -> Result<(), TestCaseError> {
        prop_assert_eq!(bins(a), bins(b));
        prop_assert_eq!(a.zero_weight(), b.zero_weight());
        prop_assert_eq!(a.count(), b.count());
        for q in QS {
            prop_assert_eq!(a.quantile(q), b.quantile(q), "q = {}", q);
        }
        Ok(())
    }

    /// Latency-like value sets within `MIN_VALUE..MAX_VALUE` (every quantile within α).
    fn accurate_values() -> impl Strategy<Value = Vec<f64>> {
        prop_oneof![
            prop::collection::vec(1e-3f64..1e5, 1..3000),
            (any::<u64>(), -2.0f64..8.0, 0.1f64..2.0, 1usize..5000)
                .prop_map(|(seed, mu, sigma, n)| log_normal(seed, mu, sigma, n)),
            (any::<u64>(), 0.01f64..100.0, 0.8f64..3.0, 1usize..5000).prop_map(
                |(seed, scale, shape, n)| {
                    let dist = Pareto::new(scale, shape).unwrap();
                    let mut rng = StdRng::seed_from_u64(seed);
                    (0..n).map(|_| dist.sample(&mut rng)).collect()
                }
            ),
            (
                prop::collection::vec(1e-2f64..1e4, 1..10),
                prop::collection::vec(any::<prop::sample::Index>(), 1..2000)
            )
                .prop_map(|(distinct, picks)| picks
                    .iter()
                    .map(|i| distinct[i.index(distinct.len())])
                    .collect()),
            prop::collection::vec((1e-3f64..1e4, prop::bool::weighted(0.3)), 1..3000).prop_map(
                |pairs| pairs
                    .into_iter()
                    .map(|(v, zero)| if zero { 0.0 } else { v })
                    .collect()
            ),
        ]
    }

    /// Values that also exercise the zero bucket, the whole key range and clamping.
    fn wild_values() -> impl Strategy<Value = Vec<f64>> {
        prop_oneof![
            prop::collection::vec((-25.0f64..30.0).prop_map(f64::exp), 0..400),
            prop::collection::vec((1.0f64..8.0).prop_map(f64::exp), 0..400),
            prop::collection::vec(prop_oneof![Just(0.0), 1e-12f64..1e-8, 1e-3f64..1e3], 0..200),
        ]
    }

    proptest! {
        #[test]
        fn unit_weight_quantiles_are_within_alpha(mut values in accurate_values()) {
            let s = sketch_of(&values);
            values.sort_by(f64::total_cmp);
            prop_assert_eq!(s.count(), values.len() as f64);
            for q in QS {
                let exact = exact_lower_quantile(&values, q);
                let estimate = s.quantile(q).unwrap();
                if exact == 0.0 {
                    prop_assert_eq!(estimate, 0.0);
                } else {
                    let err = (estimate - exact).abs() / exact;
                    prop_assert!(
                        err <= QuantileSketch::RELATIVE_ACCURACY + 1e-9,
                        "q={} exact={} estimate={} err={}", q, exact, estimate, err
                    );
                }
            }
        }

        #[test]
        fn merge_equals_sketch_of_union(
            a in wild_values(),
            b in wild_values(),
            c in wild_values(),
            seed in any::<u64>(),
        ) {
            let (sa, sb, sc) = (sketch_of(&a), sketch_of(&b), sketch_of(&c));
            let mut all: Vec<f64> = a.iter().chain(&b).copied().collect();
            let direct = sketch_of(&all);
            all.shuffle(&mut StdRng::seed_from_u64(seed));
            assert_same(&direct, &sketch_of(&all))?;

            let mut ab = sa.clone();
            ab.merge(&sb);
            let mut ba = sb.clone();
            ba.merge(&sa);
            assert_same(&ab, &direct)?;
            assert_same(&ba, &direct)?;

            let mut ab_c = ab.clone();
            ab_c.merge(&sc);
            let mut bc = sb.clone();
            bc.merge(&sc);
            let mut a_bc = sa.clone();
            a_bc.merge(&bc);
            all.extend(&c);
            assert_same(&ab_c, &a_bc)?;
            assert_same(&ab_c, &sketch_of(&all))?;
            prop_assert!(bins(&ab_c).len() <= QuantileSketch::MAX_BINS);
        }

        #[test]
        fn integral_weight_equals_repeated_adds(
            pairs in prop::collection::vec((0.0f64..1e4, 1u32..6), 0..500),
        ) {
            let mut weighted = QuantileSketch::new();
            let mut repeated = QuantileSketch::new();
            for &(v, w) in &pairs {
                weighted.add(v, f64::from(w));
                for _ in 0..w {
                    repeated.add(v, 1.0);
                }
            }
            assert_same(&weighted, &repeated)?;
        }

        #[test]
        fn encoding_round_trips(
            values in prop_oneof![wild_values(), accurate_values()],
            weights in prop::collection::vec(prop_oneof![Just(1.0f64), 0.01f64..100.0], 1..8),
            fractional in any::<bool>(),
        ) {
            let mut s = QuantileSketch::new();
            for (i, &v) in values.iter().enumerate() {
                s.add(v, if fractional { weights[i % weights.len()] } else { 1.0 });
            }
            let bytes = s.to_bytes();
            let decoded = QuantileSketch::decode(&bytes);
            prop_assert_eq!(decoded.as_ref(), Ok(&s));
            prop_assert_eq!(decoded.unwrap().to_bytes(), bytes.clone());
            for len in 0..bytes.len() {
                prop_assert!(QuantileSketch::decode(&bytes[..len]).is_err(), "prefix {}", len);
            }
            let mut extended = bytes.clone();
            extended.push(0);
            prop_assert_eq!(QuantileSketch::decode(&extended), Err(SketchError::TrailingBytes(1)));
        }

        #[test]
        fn corrupted_encodings_never_panic(
            values in wild_values(),
            position in any::<prop::sample::Index>(),
            xor in 1u8..=255,
        ) {
            let mut bytes = sketch_of(&values).to_bytes();
            let i = position.index(bytes.len());
            bytes[i] ^= xor;
            if let Ok(s) = QuantileSketch::decode(&bytes) {
                // Whatever is accepted is a consistent sketch.
                prop_assert_eq!(QuantileSketch::decode(&s.to_bytes()), Ok(s.clone()));
                let _ = s.quantile(0.99);
            }
        }

        #[test]
        fn random_bytes_never_panic(
            flags in 0u8..8,
            tail in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            let _ = QuantileSketch::decode(&tail);
            let mut bytes = vec![VERSION, flags];
            bytes.extend(&tail);
            for len in 0..=bytes.len() {
                let _ = QuantileSketch::decode(&bytes[..len]);
            }
        }
    }

    #[test]
    fn constants_match_their_definitions() {
        assert!((GAMMA.ln() - LN_GAMMA).abs() < 1e-17);
        assert_eq!(key_of(QuantileSketch::MIN_VALUE), MIN_KEY);
        assert_eq!(key_of(QuantileSketch::MAX_VALUE * 0.999_999), MAX_KEY);
        assert_eq!(key_of(QuantileSketch::MAX_VALUE / GAMMA), MAX_KEY - 1);
        assert_eq!(QuantileSketch::MAX_BINS, 1843);
        assert_eq!(std::mem::size_of::<SparseBin>(), 8);
    }

    #[test]
    fn weight_three_equals_three_adds() {
        let mut a = QuantileSketch::new();
        let mut b = QuantileSketch::new();
        for v in [3.0, 17.5, 250.0] {
            a.add(v, 3.0);
            for _ in 0..3 {
                b.add(v, 1.0);
            }
        }
        assert_eq!(a, b);
        assert_eq!(a.count(), 9.0);
        for q in QS {
            assert_eq!(a.quantile(q), b.quantile(q));
        }
    }

    #[test]
    fn invalid_input_is_ignored() {
        let mut s = QuantileSketch::new();
        for (v, w) in [
            (f64::NAN, 1.0),
            (-1.0, 1.0),
            (5.0, 0.0),
            (5.0, -1.0),
            (5.0, f64::NAN),
            (5.0, f64::INFINITY),
            (5.0, 1e300),
            (5.0, 1e-300),
        ] {
            s.add(v, w);
        }
        assert!(s.is_empty());
        assert_eq!(s.quantile(0.5), None);
        assert_eq!(s, QuantileSketch::new());
        s.add(5.0, 1.0);
        assert_eq!(s.quantile(-0.1), None);
        assert_eq!(s.quantile(f64::NAN), None);
        assert!(s.quantile(1.0).is_some());
    }

    #[test]
    fn zero_bucket_and_clamped_values() {
        let mut s = QuantileSketch::new();
        s.add(0.0, 1.0);
        s.add(1e-10, 1.0);
        s.add(1e15, 1.0);
        s.add(f64::INFINITY, 1.0);
        assert_eq!(s.zero_weight(), 2.0);
        assert_eq!(s.quantile(0.0), Some(0.0));
        assert_eq!(s.quantile(1.0 / 3.0), Some(0.0));
        let top = s.quantile(1.0).unwrap();
        assert!(
            (top / QuantileSketch::MAX_VALUE - 1.0).abs() <= 0.02,
            "{top}"
        );
        assert_eq!(bins(&s), vec![(MAX_KEY, 2.0)]);
    }

    #[test]
    fn every_quantile_is_accurate_across_the_whole_range() {
        // 1 ns … 10⁹ ms: 15 decades, ~1,730 keys, none collapsed.
        let mut values: Vec<f64> = (0..20_000)
            .map(|i| 1e-6 * 10f64.powf(15.0 * f64::from(i) / 19_999.0))
            .collect();
        let mut s = QuantileSketch::new();
        for &v in values.iter().rev() {
            s.add(v, 1.0);
        }
        assert!(is_dense(&s));
        assert!(s.heap_bytes() <= 4 * QuantileSketch::MAX_BINS);
        values.sort_by(f64::total_cmp);
        for q in [0.0, 0.001, 0.01, 0.1, 0.5, 0.9, 0.99, 1.0] {
            let exact = exact_lower_quantile(&values, q);
            let err = (s.quantile(q).unwrap() - exact).abs() / exact;
            assert!(
                err <= QuantileSketch::RELATIVE_ACCURACY + 1e-9,
                "q={q} err={err}"
            );
        }
        assert_eq!(s.count(), 20_000.0);
    }

    #[test]
    fn a_one_nanosecond_span_beside_slow_calls_keeps_its_quantile() {
        // The window the SQL oracle caught: a 1 ns span and ~1 s calls (1,036 keys apart).
        let mut slow = QuantileSketch::new();
        slow.add(1_013.0, 1.0);
        let mut fast = QuantileSketch::new();
        fast.add(1e-6, 1.0);
        for s in [sketch_of(&[1e-6, 1_013.0]), {
            let mut m = slow.clone();
            m.merge(&fast);
            m
        }] {
            let low = s.quantile(0.0).unwrap();
            assert!(
                (low / 1e-6 - 1.0).abs() <= QuantileSketch::RELATIVE_ACCURACY,
                "{low}"
            );
            let high = s.quantile(1.0).unwrap();
            assert!(
                (high / 1_013.0 - 1.0).abs() <= QuantileSketch::RELATIVE_ACCURACY,
                "{high}"
            );
        }
    }

    #[test]
    fn sparse_and_dense_merge_both_ways() {
        let narrow = sketch_of(&log_normal(1, 3.0, 2.0, 20_000));
        let few = sketch_of(&[0.5, 40.0, 900.0, 1e6]);
        assert!(is_dense(&narrow) && !is_dense(&few));
        let mut a = narrow.clone();
        a.merge(&few);
        let mut b = few.clone();
        b.merge(&narrow);
        assert_eq!(bins(&a), bins(&b));
        assert_eq!(a.count(), 20_004.0);
        let mut c = QuantileSketch::new();
        c.merge(&narrow);
        assert_eq!(c, narrow);
        c.merge(&QuantileSketch::new());
        assert_eq!(c, narrow);
    }

    #[test]
    fn fractional_weights_follow_the_rank_rule() {
        let mut s = QuantileSketch::new();
        s.add(10.0, 0.5);
        s.add(20.0, 2.5);
        s.add(30.0, 1.0);
        // W = 4, rank(q) = 3q; cumulative weights 0.5, 3, 4: a rank in [0, 0.5) reports 10,
        // [0.5, 3) reports 20, [3, 4) reports 30.
        let near = |q: f64, v: f64| (s.quantile(q).unwrap() / v - 1.0).abs() <= 0.01;
        assert!(near(0.0, 10.0));
        assert!(near(0.1, 10.0));
        assert!(near(0.2, 20.0));
        assert!(near(0.99, 20.0));
        assert!(near(1.0, 30.0));
    }

    #[test]
    fn decode_rejects_inconsistent_encodings() {
        use SketchError::*;
        let d = QuantileSketch::decode;
        assert_eq!(d(&[]), Err(Truncated));
        assert_eq!(d(&[2, 0]), Err(UnsupportedVersion(2)));
        assert_eq!(d(&[1, 8]), Err(UnknownFlags(8)));
        // Empty sketch: integral totals and weights, 0 sparse bins.
        assert_eq!(d(&[1, 6, 0, 0, 0]), Ok(QuantileSketch::new()));
        // Total without bins, and bins without total.
        assert!(matches!(d(&[1, 6, 1, 0, 0]), Err(Invalid(_))));
        assert!(matches!(d(&[1, 6, 0, 0, 1, 2, 1]), Err(Invalid(_))));
        // Zero bucket above the total.
        assert!(matches!(d(&[1, 6, 1, 2, 0]), Err(Invalid(_))));
        // Sparse bin with zero weight; key out of range (zigzag 4000 = key 2000).
        assert!(matches!(d(&[1, 6, 1, 0, 1, 2, 0]), Err(Invalid(_))));
        assert!(matches!(
            d(&[1, 6, 1, 0, 1, 0xa0, 0x1f, 1]),
            Err(Invalid(_))
        ));
        // Dense store with an empty edge bin, and with an absurd length.
        assert!(matches!(d(&[1, 7, 2, 0, 2, 3, 1, 1, 0]), Err(Invalid(_))));
        assert!(matches!(
            d(&[1, 7, 2, 0, 2, 0xff, 0xff, 0x03]),
            Err(Invalid(_))
        ));
        // Sparse count larger than the bytes could hold.
        assert_eq!(d(&[1, 6, 2, 0, 100, 2, 1]), Err(Truncated));
        // Overlong varint.
        assert_eq!(
            d(&[1, 6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            Err(BadVarint)
        );
        // A valid dense one: keys 1..=3, weights 1, 0, 1.
        let s = d(&[1, 7, 2, 0, 2, 3, 1, 0, 1]).unwrap();
        assert_eq!(bins(&s), vec![(1, 1.0), (3, 1.0)]);
    }

    #[test]
    fn memory_per_sketch() {
        let mut report = Vec::new();
        for n in [20, 1_000, 10_000, 1_000_000] {
            let s = sketch_of(&log_normal(7, 50f64.ln(), 0.8, n));
            let encoded = s.to_bytes().len();
            report.push(format!(
                "{n} values: {} heap bytes ({}, {} keys), {encoded} encoded bytes",
                s.heap_bytes(),
                if is_dense(&s) { "dense" } else { "sparse" },
                s.bins().count(),
            ));
            match n {
                20 => assert!(!is_dense(&s) && s.heap_bytes() <= 256, "{}", s.heap_bytes()),
                10_000 => assert!(s.heap_bytes() <= 1600, "{}", s.heap_bytes()),
                _ => {}
            }
        }
        println!("QuantileSketch memory (log-normal, median 50 ms, sigma 0.8):");
        for line in report {
            println!("  {line}");
        }
    }

    fn is_compact(s: &QuantileSketch) -> bool {
        matches!(s.store, Store::Compact(_))
    }

    #[test]
    fn unit_weights_stay_compact_at_four_bytes_per_key() {
        let s = sketch_of(&log_normal(11, 2.0, 0.9, 100));
        assert!(is_compact(&s));
        let keys = s.bins().count();
        assert!(
            s.heap_bytes() <= 4 * (keys + keys / 2 + 4),
            "{}",
            s.heap_bytes()
        );
    }

    #[test]
    fn a_fractional_weight_widens_without_changing_the_sketch() {
        let values = log_normal(12, 1.0, 0.7, 200);
        let mut s = sketch_of(&values);
        let mut wide = s.clone();
        wide.store.widen();
        assert!(is_compact(&s) && !is_compact(&wide));
        assert_eq!(s, wide);
        assert_eq!(s.to_bytes(), wide.to_bytes());
        s.add(values[0], 0.25);
        wide.add(values[0], 0.25);
        assert!(!is_compact(&s));
        // (The widened one may also have turned dense on the way: same bins either way.)
        assert_eq!(bins(&s), bins(&wide));
        assert_eq!(s.count(), wide.count());
    }

    #[test]
    fn a_bin_past_two_million_widens_and_stays_exact() {
        let mut s = QuantileSketch::new();
        s.add(5.0, f64::from(COUNT_MASK));
        assert!(is_compact(&s));
        s.add(5.0, 1.0);
        assert!(!is_compact(&s));
        assert_eq!(bins(&s), vec![(key_of(5.0), COUNT_MASK as f32 + 1.0)]);
        // The same through merges of two compact sketches.
        let mut a = QuantileSketch::new();
        a.add(5.0, f64::from(COUNT_MASK));
        let mut b = QuantileSketch::new();
        b.add(5.0, 3.0);
        b.add(7.0, 1.0);
        a.merge(&b);
        assert!(!is_compact(&a));
        assert_eq!(
            bins(&a),
            vec![(key_of(5.0), COUNT_MASK as f32 + 3.0), (key_of(7.0), 1.0)]
        );
    }

    proptest! {
        /// Compact, wide and decoded sketches of the same weighted values agree bin for bin,
        /// byte for byte, merged in any combination.
        #[test]
        fn compact_and_wide_stores_are_the_same_sketch(
            a in prop::collection::vec((1e-3f64..1e5, prop::sample::select(vec![1.0, 2.0, 0.5, 1000.0])), 0..300),
            b in prop::collection::vec((1e-3f64..1e5, prop::sample::select(vec![1.0, 3.0])), 0..300),
        ) {
            let build = |vals: &[(f64, f64)], wide: bool| {
                let mut s = QuantileSketch::new();
                if wide {
                    s.store.widen();
                }
                for &(v, w) in vals {
                    s.add(v, w);
                }
                s
            };
            for (x, y) in [(false, false), (false, true), (true, false), (true, true)] {
                let mut m = build(&a, x);
                m.merge(&build(&b, y));
                let mut all = a.clone();
                all.extend_from_slice(&b);
                let direct = build(&all, false);
                assert_same(&m, &direct)?;
                let decoded = QuantileSketch::decode(&m.to_bytes()).unwrap();
                assert_same(&decoded, &m)?;
                prop_assert_eq!(decoded.to_bytes(), m.to_bytes());
            }
        }
    }
}
