//! Sparse histogram bucket counts of one RED aggregate, 4 bytes per touched bucket while the
//! counts are whole numbers.
//!
//! Owns: the `(code, weighted count)` pairs of [`super::RedAgg`], sorted by code (code =
//! status × 65 + bucket index, always < 256). Must not: know bucket bounds.
//!
//! Unsampled spans add whole counts, so an open window's buckets start compact: one `u32` per
//! touched bucket, `code << 24 | count`. The first fractional weight (sampling) or a count past
//! 2²⁴ − 1 widens them to `(u16, f64)` pairs, exact as before. Either form grows by a quarter, not
//! by doubling: a typical series touches about ten buckets and there is one such list per series
//! per open window.

use redwatch_engine::prefetch::prefetch_slice;

const COUNT_BITS: u32 = 24;
const COUNT_MASK: u32 = (1 << COUNT_BITS) - 1;

#[derive(Debug, Clone)]
pub(crate) enum BucketCounts {
    Compact(Vec<u32>),
    /// Boxed: rare, and it keeps the enum (one per open window and series) at 24 bytes.
    #[allow(clippy::box_collection)]
    Wide(Box<Vec<(u16, f64)>>),
}

impl Default for BucketCounts {
    fn default() -> Self {
        BucketCounts::Compact(Vec::new())
    }
}

impl PartialEq for BucketCounts {
    /// Same codes and counts, whatever the form.
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

/// The whole count a compact entry can take, if `w` is one.
#[inline]
fn whole(w: f64) -> Option<u32> {
    if w == 1.0 {
        // Unsampled spans: the common case, without `fract` (a libm call on baseline x86_64).
        return Some(1);
    }
    (w >= 1.0 && w <= f64::from(COUNT_MASK) && f64::from(w as u32) == w).then_some(w as u32)
}

/// Room for one more element, growing by a quarter (at least 4).
#[inline]
fn grow<T>(v: &mut Vec<T>) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 4).max(4));
    }
}

impl BucketCounts {
    /// Starts loading the counts into the cache ahead of an [`add`](Self::add).
    #[inline]
    pub(crate) fn prefetch(&self) {
        match self {
            BucketCounts::Compact(entries) => prefetch_slice(entries, 2),
            BucketCounts::Wide(entries) => prefetch_slice(entries, 4),
        }
    }

    /// Adds `weight` to bucket `code` (< 256).
    #[inline]
    pub(crate) fn add(&mut self, code: u16, weight: f64) {
        if let BucketCounts::Compact(entries) = self {
            if let (Some(c), Ok(code8)) = (whole(weight), u8::try_from(code)) {
                let key = u32::from(code8);
                match entries.binary_search_by(|e| (e >> COUNT_BITS).cmp(&key)) {
                    Ok(i) if (entries[i] & COUNT_MASK) + c <= COUNT_MASK => {
                        entries[i] += c;
                        return;
                    }
                    Err(i) => {
                        grow(entries);
                        entries.insert(i, key << COUNT_BITS | c);
                        return;
                    }
                    Ok(_) => {}
                }
            }
            self.widen();
        }
        if let BucketCounts::Wide(entries) = self {
            match entries.binary_search_by_key(&code, |(c, _)| *c) {
                Ok(i) => entries[i].1 += weight,
                Err(i) => {
                    grow(entries);
                    entries.insert(i, (code, weight));
                }
            }
        }
    }

    /// Builds the list from `(code, count)` pairs sorted by code, each code once.
    pub(crate) fn from_sorted(pairs: Vec<(u16, f64)>) -> Self {
        let compact: Option<Vec<u32>> = pairs
            .iter()
            .map(|&(code, w)| {
                let code = u8::try_from(code).ok()?;
                Some(u32::from(code) << COUNT_BITS | whole(w)?)
            })
            .collect();
        match compact {
            Some(c) => BucketCounts::Compact(c),
            None => BucketCounts::Wide(Box::new(pairs)),
        }
    }

    fn widen(&mut self) {
        if let BucketCounts::Compact(entries) = self {
            let mut wide = Vec::with_capacity(entries.len() + 1);
            wide.extend(
                entries
                    .iter()
                    .map(|&e| ((e >> COUNT_BITS) as u16, f64::from(e & COUNT_MASK))),
            );
            *self = BucketCounts::Wide(Box::new(wide));
        }
    }

    /// `(code, count)` pairs, codes ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u16, f64)> + '_ {
        let (compact, wide) = match self {
            BucketCounts::Compact(e) => (e.as_slice(), &[][..]),
            BucketCounts::Wide(e) => (&[][..], e.as_slice()),
        };
        compact
            .iter()
            .map(|&e| ((e >> COUNT_BITS) as u16, f64::from(e & COUNT_MASK)))
            .chain(wide.iter().copied())
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            BucketCounts::Compact(e) => e.len(),
            BucketCounts::Wide(e) => e.len(),
        }
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            BucketCounts::Compact(e) => e.capacity() * std::mem::size_of::<u32>(),
            BucketCounts::Wide(e) => {
                std::mem::size_of::<Vec<(u16, f64)>>()
                    + e.capacity() * std::mem::size_of::<(u16, f64)>()
            }
        }
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        match self {
            BucketCounts::Compact(e) => e.shrink_to_fit(),
            BucketCounts::Wide(e) => e.shrink_to_fit(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn whole_counts_stay_compact_and_a_fraction_widens_exactly() {
        let mut b = BucketCounts::default();
        for code in [7u16, 3, 7, 130, 3, 3] {
            b.add(code, 1.0);
        }
        assert!(matches!(b, BucketCounts::Compact(_)));
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            [(3, 3.0), (7, 2.0), (130, 1.0)]
        );
        assert!(b.heap_bytes() <= 4 * 4);
        b.add(7, 0.5);
        assert!(matches!(b, BucketCounts::Wide(_)));
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            [(3, 3.0), (7, 2.5), (130, 1.0)]
        );
    }

    #[test]
    fn the_list_takes_three_words() {
        assert_eq!(std::mem::size_of::<BucketCounts>(), 24);
    }

    #[test]
    fn a_count_past_24_bits_widens() {
        let mut b = BucketCounts::default();
        b.add(1, f64::from(COUNT_MASK));
        assert!(matches!(b, BucketCounts::Compact(_)));
        b.add(1, 1.0);
        assert!(matches!(b, BucketCounts::Wide(_)));
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            [(1, f64::from(COUNT_MASK) + 1.0)]
        );
    }

    proptest! {
        /// Any mix of weights gives the sums of a plain map, in code order, and `from_sorted`
        /// of those sums is the same list.
        #[test]
        fn equals_a_plain_map(adds in prop::collection::vec(
            (0u16..195, prop::sample::select(vec![1.0, 2.0, 0.25, 3.0, 1e7])), 0..200)) {
            let mut b = BucketCounts::default();
            let mut model: BTreeMap<u16, f64> = BTreeMap::new();
            for &(code, w) in &adds {
                b.add(code, w);
                *model.entry(code).or_default() += w;
            }
            let want: Vec<(u16, f64)> = model.into_iter().collect();
            prop_assert_eq!(b.iter().collect::<Vec<_>>(), want.clone());
            prop_assert_eq!(BucketCounts::from_sorted(want), b);
        }
    }
}
