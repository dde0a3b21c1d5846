//! The sketch's versioned binary encoding (the `duration_sketch` column; the format is in the
//! parent module's comment): [`QuantileSketch::encode`], [`QuantileSketch::decode`] and the
//! checked reader that `decode`, `merge_encoded` and `absorb_encoded` share.

use super::{
    QuantileSketch, SketchError, SparseBin, Store, FLAG_DENSE, FLAG_INTEGRAL_TOTALS,
    FLAG_INTEGRAL_WEIGHTS, KNOWN_FLAGS, MAX_KEY, MAX_VARINT_TOTAL, MAX_VARINT_WEIGHT, MIN_KEY,
    SPARSE_MAX_KEYS, VERSION,
};

impl QuantileSketch {
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
        let store = if flags & FLAG_DENSE == 0 {
            let n = sparse_len(r.varint()?, r.remaining(), integral_weights)?;
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
            let len = dense_len(offset, r.varint()?, r.remaining(), integral_weights)?;
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
}

pub(super) fn is_integral_total(x: f64) -> bool {
    x.fract() == 0.0 && x <= MAX_VARINT_TOTAL
}

pub(super) fn is_integral_weight(w: f32) -> bool {
    w.fract() == 0.0 && w <= MAX_VARINT_WEIGHT
}

pub(super) fn zigzag(key: i16) -> u64 {
    let k = i64::from(key);
    ((k << 1) ^ (k >> 63)) as u64
}

pub(super) fn unzigzag(raw: u64) -> i64 {
    (raw >> 1) as i64 ^ -((raw & 1) as i64)
}

pub(super) fn checked_key(key: i64) -> Result<i16, SketchError> {
    if (i64::from(MIN_KEY)..=i64::from(MAX_KEY)).contains(&key) {
        Ok(key as i16)
    } else {
        Err(SketchError::Invalid("bin key out of range"))
    }
}

/// A sparse store's entry count, checked: at most [`SPARSE_MAX_KEYS`], and `remaining` bytes
/// enough for the entries (a key byte and a weight each: one byte when `integral`, four
/// otherwise).
#[inline]
pub(super) fn sparse_len(n: u64, remaining: usize, integral: bool) -> Result<usize, SketchError> {
    if n > SPARSE_MAX_KEYS as u64 {
        return Err(SketchError::Invalid("too many sparse bins"));
    }
    let n = n as usize;
    let min_weight_bytes = if integral { 1 } else { 4 };
    if n * (1 + min_weight_bytes) > remaining {
        return Err(SketchError::Truncated);
    }
    Ok(n)
}

/// A dense store's bin count as read after its `offset`, checked: at least one bin, at most
/// [`QuantileSketch::MAX_BINS`], the last key in range, and `remaining` bytes enough for the
/// weights (one byte each when `integral`, four otherwise).
#[inline]
pub(super) fn dense_len(
    offset: i16,
    len: u64,
    remaining: usize,
    integral: bool,
) -> Result<usize, SketchError> {
    if len == 0 || len > QuantileSketch::MAX_BINS as u64 {
        return Err(SketchError::Invalid("dense store length out of range"));
    }
    if i64::from(offset) + len as i64 - 1 > i64::from(MAX_KEY) {
        return Err(SketchError::Invalid("bin key out of range"));
    }
    let len = len as usize;
    let min_weight_bytes = if integral { 1 } else { 4 };
    if len * min_weight_bytes > remaining {
        return Err(SketchError::Truncated);
    }
    Ok(len)
}

/// Appends `v` as an unsigned LEB128 varint (also the packed window state's integer form).
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) struct Reader<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
}

/// The fixed start of an encoding, checked: version, flags and the two totals.
pub(super) struct Header {
    pub(super) flags: u8,
    pub(super) integral_weights: bool,
    pub(super) count: f64,
    pub(super) zero: f64,
}

impl Reader<'_> {
    /// Reads and checks the [`Header`] (`decode`, `merge_encoded` and `absorb_encoded` share it,
    /// so the same bytes give the same error everywhere).
    pub(super) fn header(&mut self) -> Result<Header, SketchError> {
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

    pub(super) fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(super) fn byte(&mut self) -> Result<u8, SketchError> {
        let b = *self.bytes.get(self.pos).ok_or(SketchError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N], SketchError> {
        let end = self.pos.checked_add(N).ok_or(SketchError::Truncated)?;
        let slice = self
            .bytes
            .get(self.pos..end)
            .ok_or(SketchError::Truncated)?;
        self.pos = end;
        slice.try_into().map_err(|_| SketchError::Truncated)
    }

    pub(super) fn varint(&mut self) -> Result<u64, SketchError> {
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

    pub(super) fn total(&mut self, integral: bool) -> Result<f64, SketchError> {
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

    pub(super) fn weight(&mut self, integral: bool) -> Result<f32, SketchError> {
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
