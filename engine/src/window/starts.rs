//! The windows of one store, sorted by start: what the per-span hot path looks up.
//!
//! Owns: finding a window by its start. Windows are aligned to the slide, and a store's
//! windows are mostly consecutive, so the position is first guessed from the distance to the
//! oldest window (one subtraction and division, right whenever there is no gap) and otherwise
//! binary-searched in a dense array of starts. A `BTreeMap` did the same with a branchy
//! search through two levels of nodes on every update, a tenth of the CPU per span with ~30
//! windows open.

use crate::model::UnixNanos;

#[derive(Debug)]
pub(super) struct Windows<S> {
    /// Window starts, ascending; `slots[i]` belongs to `starts[i]`.
    starts: Vec<UnixNanos>,
    slots: Vec<S>,
    /// Distance between consecutive window starts.
    step: u64,
}

impl<S> Windows<S> {
    pub(super) fn new(step: u64) -> Self {
        debug_assert!(step > 0);
        Windows {
            starts: Vec::new(),
            slots: Vec::new(),
            step,
        }
    }

    pub(super) fn set_step(&mut self, step: u64) {
        debug_assert!(self.starts.is_empty() && step > 0);
        self.step = step;
    }

    /// `Ok(position)` of the window starting at `start`, or `Err(where it would go)`.
    #[inline]
    fn find(&self, start: UnixNanos) -> Result<usize, usize> {
        if let Some(&first) = self.starts.first() {
            if let Some(distance) = start.checked_sub(first) {
                let guess = (distance / self.step) as usize;
                if self.starts.get(guess) == Some(&start) {
                    return Ok(guess);
                }
            }
        }
        self.starts.binary_search(&start)
    }

    #[inline]
    pub(super) fn get(&self, start: UnixNanos) -> Option<&S> {
        self.find(start).ok().map(|i| &self.slots[i])
    }

    #[inline]
    pub(super) fn get_or_insert_with(
        &mut self,
        start: UnixNanos,
        new: impl FnOnce() -> S,
    ) -> &mut S {
        let i = match self.find(start) {
            Ok(i) => i,
            Err(i) => {
                self.starts.insert(i, start);
                self.slots.insert(i, new());
                i
            }
        };
        &mut self.slots[i]
    }

    /// Windows starting at or before `last`, oldest first.
    pub(super) fn up_to_mut(
        &mut self,
        last: UnixNanos,
    ) -> impl Iterator<Item = (UnixNanos, &mut S)> {
        let n = self.starts.partition_point(|&s| s <= last);
        self.starts[..n].iter().copied().zip(&mut self.slots[..n])
    }

    pub(super) fn iter(&self) -> impl DoubleEndedIterator<Item = (UnixNanos, &S)> {
        self.starts.iter().copied().zip(&self.slots)
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (UnixNanos, &mut S)> {
        self.starts.iter().copied().zip(&mut self.slots)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &S> {
        self.slots.iter()
    }

    #[cfg(test)]
    pub(super) fn first_start(&self) -> Option<UnixNanos> {
        self.starts.first().copied()
    }

    /// Drops the windows before the first one `keep` holds for (their starts ascending).
    pub(super) fn drop_while(&mut self, mut drop: impl FnMut(UnixNanos) -> bool) {
        let n = self.starts.iter().take_while(|&&s| drop(s)).count();
        self.starts.drain(..n);
        self.slots.drain(..n);
    }

    pub(super) fn len(&self) -> usize {
        self.starts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Windows;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// Whatever the inserts (gaps, out of order, off the step), lookups, iteration and
        /// purging agree with a BTreeMap.
        #[test]
        fn agrees_with_a_btree_map(
            ops in prop::collection::vec((0u64..40, any::<bool>()), 1..120),
            cut in 0u64..40,
        ) {
            let mut w = Windows::new(10);
            let mut model = BTreeMap::new();
            for (n, (k, insert)) in ops.iter().enumerate() {
                // Mostly multiples of the step, sometimes not (a guess must never be trusted).
                let start = if k % 7 == 3 { k * 10 + 5 } else { k * 10 };
                if *insert {
                    *w.get_or_insert_with(start, || n) += 0;
                    model.entry(start).or_insert(n);
                }
                prop_assert_eq!(w.get(start), model.get(&start));
                prop_assert_eq!(w.get(start + 1), model.get(&(start + 1)));
            }
            prop_assert!(w.iter().map(|(s, v)| (s, *v)).eq(model.iter().map(|(s, v)| (*s, *v))));
            let upto: Vec<_> = w.up_to_mut(cut * 10).map(|(s, v)| (s, *v)).collect();
            let expected: Vec<_> = model.range(..=cut * 10).map(|(s, v)| (*s, *v)).collect();
            prop_assert_eq!(upto, expected);
            w.drop_while(|s| s < cut * 10);
            model.retain(|s, _| *s >= cut * 10);
            prop_assert_eq!(w.len(), model.len());
            prop_assert_eq!(w.first_start(), model.keys().next().copied());
            prop_assert!(w.values().eq(model.values()));
        }
    }
}
