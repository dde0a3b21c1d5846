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
mod store;
#[cfg(test)]
mod tests;

pub use codec::put_varint;
use codec::{checked_key, dense_len, sparse_len, unzigzag, zigzag, Header, Reader};
use store::*;

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
