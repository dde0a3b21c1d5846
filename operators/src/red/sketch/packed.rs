//! A denser encoding for sketches kept in window state (emitted windows waiting for late data,
//! the open rollup window), never written anywhere else: about 1 byte per key instead of the
//! SQL encoding's 2.
//!
//! Only compact stores (whole counts, see `Store::Compact`) with whole totals use it; every
//! other sketch is written in the regular encoding, which [`QuantileSketch::unpack_state`] also
//! reads (its version byte differs from [`TAG`]).
//!
//! Layout: [`TAG`], total and zero weight as varints, the number of keys `n` as a varint, the
//! first key as a zigzag varint (when `n > 0`), then per key one byte — high nibble
//! `d = key − previous − 1` (0 for the first; 15 = escape: a varint `d − 15` follows), low nibble
//! the count (1…15; 0 = escape: a varint `count − 16` follows), escapes in that order. Latency keys
//! are mostly 1–3 apart with small counts, so nearly every key takes one byte.

use super::{
    checked_key, compact_index, compact_key, put_varint, unzigzag, zigzag, QuantileSketch, Reader,
    SketchError, Store, COUNT_BITS, COUNT_MASK, MAX_VARINT_TOTAL, SPARSE_MAX_KEYS,
};

/// First byte of the state encoding (the regular encoding starts with its version, 1).
const TAG: u8 = 0xA5;

impl QuantileSketch {
    /// Appends the state encoding of `self` to `out` (see the module doc).
    pub fn pack_state(&self, out: &mut Vec<u8>) {
        let whole = |x: f64| x.fract() == 0.0 && (0.0..=MAX_VARINT_TOTAL).contains(&x);
        let Store::Compact(entries) = &self.store else {
            return self.encode(out);
        };
        if !whole(self.count) || !whole(self.zero) {
            return self.encode(out);
        }
        out.push(TAG);
        put_varint(out, self.count as u64);
        put_varint(out, self.zero as u64);
        put_varint(out, entries.len() as u64);
        let mut previous: Option<i16> = None;
        for &e in entries {
            let key = compact_key(e);
            let count = e & COUNT_MASK;
            let gap = previous.map_or(0, |p| (i32::from(key) - i32::from(p) - 1) as u64);
            if previous.is_none() {
                put_varint(out, zigzag(key));
            }
            let g = gap.min(15) as u8;
            let c = if (1..=15).contains(&count) {
                count as u8
            } else {
                0
            };
            out.push(g << 4 | c);
            if g == 15 {
                put_varint(out, gap - 15);
            }
            if c == 0 {
                put_varint(out, u64::from(count) - 16);
            }
            previous = Some(key);
        }
    }

    /// Reads what [`Self::pack_state`] wrote (either form); any other bytes give an error.
    pub fn unpack_state(bytes: &[u8]) -> Result<QuantileSketch, SketchError> {
        if bytes.first() != Some(&TAG) {
            return QuantileSketch::decode(bytes);
        }
        let mut r = Reader { bytes, pos: 1 };
        let count = r.total(true)?;
        let zero = r.total(true)?;
        let n = r.varint()?;
        if n > SPARSE_MAX_KEYS as u64 || n as usize > r.remaining() {
            return Err(SketchError::Invalid("too many sparse bins"));
        }
        let mut entries = Vec::with_capacity(n as usize);
        let mut previous: Option<i64> = None;
        let mut sum = zero;
        for _ in 0..n {
            let first = match previous {
                None => Some(unzigzag(r.varint()?)),
                Some(_) => None,
            };
            let b = r.byte()?;
            let (g, c) = (u64::from(b >> 4), u64::from(b & 0x0f));
            let gap = if g == 15 {
                15 + r.varint()?.min(1 << 16)
            } else {
                g
            };
            let count = if c == 0 {
                16 + r.varint()?.min(u64::from(COUNT_MASK))
            } else {
                c
            };
            let key = match (first, previous) {
                (Some(k), _) if gap == 0 => k,
                (Some(_), _) => return Err(SketchError::Invalid("gap before the first key")),
                (None, Some(p)) => p + 1 + gap as i64,
                (None, None) => unreachable!("the first key is read above"),
            };
            let key = checked_key(key)?;
            if count > u64::from(COUNT_MASK) {
                return Err(SketchError::Invalid("weight not representable"));
            }
            entries.push(compact_index(key) << COUNT_BITS | count as u32);
            sum += count as f64;
            previous = Some(i64::from(key));
        }
        if r.remaining() != 0 {
            return Err(SketchError::TrailingBytes(r.remaining()));
        }
        if sum != count {
            return Err(SketchError::Invalid("total weight disagrees with the bins"));
        }
        Ok(QuantileSketch {
            count,
            zero,
            store: Store::Compact(entries),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any sketch packs and unpacks to itself (the same store form), and compact ones take
        /// fewer bytes than the regular encoding.
        #[test]
        fn pack_state_round_trips(
            values in prop::collection::vec(
                (0.0f64..1e7, prop::sample::select(vec![1.0, 1.0, 2.0, 40.0, 0.5, 3e6])), 0..400),
        ) {
            let mut s = QuantileSketch::new();
            for (v, w) in values {
                s.add(v, w);
            }
            let mut packed = Vec::new();
            s.pack_state(&mut packed);
            let back = QuantileSketch::unpack_state(&packed).unwrap();
            prop_assert_eq!(&back, &s);
            prop_assert_eq!(back.to_bytes(), s.to_bytes());
            prop_assert_eq!(
                matches!(back.store, Store::Compact(_)),
                matches!(s.store, Store::Compact(_))
            );
            if matches!(s.store, Store::Compact(_)) && s.bins().count() > 4 {
                prop_assert!(packed.len() < s.to_bytes().len());
            }
        }

        /// Bytes that are not a packed sketch give an error, never a panic.
        #[test]
        fn garbage_is_an_error_not_a_panic(tail in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut bytes = vec![TAG];
            bytes.extend_from_slice(&tail);
            let _ = QuantileSketch::unpack_state(&bytes);
        }
    }

    #[test]
    fn typical_latency_sketch_takes_about_a_byte_per_key() {
        let mut s = QuantileSketch::new();
        let mut x = 0.37f64;
        for _ in 0..100 {
            // A deterministic spread of ~30 ms latencies.
            x = (x * 9301.0 + 0.49297).fract();
            s.add(30.0 * (2.0 * x - 1.0).exp(), 1.0);
        }
        let keys = s.bins().count();
        let mut packed = Vec::new();
        s.pack_state(&mut packed);
        assert!(
            packed.len() <= keys + keys / 4 + 8,
            "{} bytes, {keys} keys",
            packed.len()
        );
        assert_eq!(QuantileSketch::unpack_state(&packed).unwrap(), s);
    }
}
