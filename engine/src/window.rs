//! Event-time tumbling window state with watermark-driven emission, lateness and purging.
//!
//! Owns the lifecycle of DESIGN.md: a window is emitted final when the watermark passes its end,
//! keeps accepting late data (and re-emits just the changed keys, with their deltas) until
//! `end + allowed_lateness`, and is then purged; data for a purged window is refused as late.
//! It must not know what is aggregated: `A` is any mergeable aggregate.

use crate::model::UnixNanos;
use hashbrown::HashMap;
use std::collections::BTreeMap;
use std::hash::Hash;

/// A per-key aggregate that windows can hold and merge.
pub trait WindowAggregate: Default {
    /// Adds `other` into `self`.
    fn merge(&mut self, other: &Self);
    /// Heap bytes owned beyond `size_of::<Self>()`, for state-size accounting.
    fn heap_bytes(&self) -> usize {
        0
    }
}

/// The data arrived for a window that has already been purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late;

/// One key's state in one window.
#[derive(Debug, Default)]
pub struct Entry<A> {
    /// Everything the window has seen for the key.
    pub total: A,
    /// What arrived since the window was last emitted (only once it has been emitted).
    pub pending: Option<A>,
    /// Whether this key has been emitted for this window.
    pub emitted: bool,
}

#[derive(Debug)]
struct Slot<K, A> {
    entries: HashMap<K, Entry<A>>,
    emitted: bool,
    dirty: bool,
}

/// One emitted row: a key's state in a window whose end the watermark has passed.
#[derive(Debug)]
pub struct Emitted<'a, K, A> {
    pub start: UnixNanos,
    pub end: UnixNanos,
    /// True when this key's row is emitted for the first time in this window (also for a key
    /// that first arrives late); false when a late update re-emits it.
    pub first: bool,
    /// True during the window's own first emission (once per window).
    pub window_first: bool,
    pub key: &'a K,
    /// The key's complete state in the window.
    pub total: &'a A,
    /// What this emission adds to earlier ones (equals `total` on the first emission).
    pub delta: &'a A,
}

/// Tumbling windows of one size, aligned to the Unix epoch, half-open `[start, end)`.
#[derive(Debug)]
pub struct WindowStore<K, A> {
    size: u64,
    lateness: u64,
    slots: BTreeMap<UnixNanos, Slot<K, A>>,
    watermark: UnixNanos,
}

impl<K: Hash + Eq + Clone, A: WindowAggregate> WindowStore<K, A> {
    pub fn new(size_ns: u64, allowed_lateness_ns: u64) -> Self {
        assert!(size_ns > 0, "window size must be positive");
        WindowStore {
            size: size_ns,
            lateness: allowed_lateness_ns,
            slots: BTreeMap::new(),
            watermark: 0,
        }
    }

    pub fn size_ns(&self) -> u64 {
        self.size
    }

    /// Start of the window that holds event time `ts`.
    pub fn window_start(&self, ts: UnixNanos) -> UnixNanos {
        ts - ts % self.size
    }

    /// The watermark of the last [`advance`](Self::advance).
    pub fn watermark(&self) -> UnixNanos {
        self.watermark
    }

    fn is_purged(&self, start: UnixNanos) -> bool {
        start
            .saturating_add(self.size)
            .saturating_add(self.lateness)
            <= self.watermark
    }

    /// Applies `f` to `key`'s state in the window of event time `ts` (and to its pending delta if
    /// that window was already emitted).
    pub fn update(
        &mut self,
        ts: UnixNanos,
        key: &K,
        mut f: impl FnMut(&mut A),
    ) -> Result<(), Late> {
        let start = self.window_start(ts);
        if self.is_purged(start) {
            return Err(Late);
        }
        let slot = self.slots.entry(start).or_insert_with(|| Slot {
            entries: HashMap::new(),
            emitted: false,
            dirty: false,
        });
        let entry = match slot.entries.get_mut(key) {
            Some(e) => e,
            None => slot.entries.entry(key.clone()).or_default(),
        };
        f(&mut entry.total);
        if slot.emitted {
            f(entry.pending.get_or_insert_with(A::default));
            slot.dirty = true;
        }
        Ok(())
    }

    /// Merges `delta` into `key`'s state in the window of event time `ts`.
    pub fn merge(&mut self, ts: UnixNanos, key: &K, delta: &A) -> Result<(), Late> {
        self.update(ts, key, |a| a.merge(delta))
    }

    /// Moves the watermark to `wm` (never back), emits every window whose end it passed that has
    /// not been emitted or has late changes, then purges windows past their lateness.
    pub fn advance(&mut self, wm: UnixNanos, mut emit: impl FnMut(Emitted<'_, K, A>)) {
        self.watermark = self.watermark.max(wm);
        let wm = self.watermark;
        let size = self.size;
        // Windows whose end <= wm, i.e. start <= wm - size.
        if let Some(last_start) = wm.checked_sub(size) {
            for (&start, slot) in self.slots.range_mut(..=last_start) {
                let end = start + size;
                if !slot.emitted {
                    slot.emitted = true;
                    for (key, e) in slot.entries.iter_mut() {
                        e.emitted = true;
                        emit(Emitted {
                            start,
                            end,
                            first: true,
                            window_first: true,
                            key,
                            total: &e.total,
                            delta: &e.total,
                        });
                    }
                } else if slot.dirty {
                    slot.dirty = false;
                    for (key, e) in slot.entries.iter_mut() {
                        if let Some(p) = e.pending.take() {
                            let first = !e.emitted;
                            e.emitted = true;
                            emit(Emitted {
                                start,
                                end,
                                first,
                                window_first: false,
                                key,
                                total: &e.total,
                                delta: &p,
                            });
                        }
                    }
                }
            }
        }
        let lateness = self.lateness;
        while let Some((&start, _)) = self.slots.first_key_value() {
            if start.saturating_add(size).saturating_add(lateness) <= wm {
                self.slots.pop_first();
            } else {
                break;
            }
        }
    }

    /// Visits every key of the windows not yet emitted (provisional results).
    pub fn for_each_open(&self, mut f: impl FnMut(UnixNanos, UnixNanos, &K, &A)) {
        for (&start, slot) in self.slots.iter().filter(|(_, s)| !s.emitted) {
            for (k, e) in slot.entries.iter() {
                f(start, start + self.size, k, &e.total);
            }
        }
    }

    /// Number of windows held (open or waiting for late data).
    pub fn window_count(&self) -> usize {
        self.slots.len()
    }

    /// Number of (window, key) entries held.
    pub fn entry_count(&self) -> usize {
        self.slots.values().map(|s| s.entries.len()).sum()
    }

    /// Approximate bytes of state held.
    pub fn state_bytes(&self) -> usize {
        let per_entry = std::mem::size_of::<(K, Entry<A>)>() + 1;
        self.slots
            .values()
            .map(|s| {
                s.entries.capacity() * per_entry
                    + s.entries
                        .values()
                        .map(|e| {
                            e.total.heap_bytes()
                                + e.pending
                                    .as_ref()
                                    .map_or(0, |p| std::mem::size_of::<A>() + p.heap_bytes())
                        })
                        .sum::<usize>()
            })
            .sum()
    }

    /// The newest window end at or before which every window has been purged.
    pub fn purged_through(&self) -> UnixNanos {
        self.watermark.saturating_sub(self.lateness)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Clone, PartialEq)]
    struct Count(u64);
    impl WindowAggregate for Count {
        fn merge(&mut self, o: &Self) {
            self.0 += o.0;
        }
    }

    type Rows = Vec<(u64, &'static str, bool, u64, u64)>;

    fn drain(s: &mut WindowStore<&'static str, Count>, wm: u64) -> Rows {
        let mut out = Vec::new();
        s.advance(wm, |e| {
            out.push((e.start, *e.key, e.first, e.total.0, e.delta.0))
        });
        out.sort();
        out
    }

    #[test]
    fn emits_when_watermark_passes_end_then_reemits_late_deltas_then_purges() {
        let mut s: WindowStore<&str, Count> = WindowStore::new(10, 20);
        s.update(3, &"a", |c| c.0 += 1).unwrap();
        s.update(7, &"a", |c| c.0 += 1).unwrap();
        s.update(12, &"b", |c| c.0 += 1).unwrap();
        assert_eq!(drain(&mut s, 9), vec![]);
        assert_eq!(drain(&mut s, 10), vec![(0, "a", true, 2, 2)]);
        // late but within lateness: re-emitted with its delta only.
        s.update(5, &"a", |c| c.0 += 1).unwrap();
        assert_eq!(drain(&mut s, 11), vec![(0, "a", false, 3, 1)]);
        assert_eq!(drain(&mut s, 12), vec![]);
        // a key new to an emitted window: its first row, carrying everything it has.
        s.update(6, &"c", |c| c.0 += 2).unwrap();
        assert_eq!(drain(&mut s, 12), vec![(0, "c", true, 2, 2)]);
        assert_eq!(drain(&mut s, 20), vec![(10, "b", true, 1, 1)]);
        // window [0,10) purged at 10 + 20.
        assert_eq!(drain(&mut s, 30), vec![]);
        assert_eq!(s.update(1, &"a", |c| c.0 += 1), Err(Late));
        assert_eq!(s.window_count(), 1);
    }

    #[test]
    fn first_data_for_a_passed_but_unpurged_window_is_emitted_as_first() {
        let mut s: WindowStore<&str, Count> = WindowStore::new(10, 20);
        assert_eq!(drain(&mut s, 25), vec![]);
        s.update(4, &"x", |c| c.0 += 5).unwrap();
        assert_eq!(drain(&mut s, 25), vec![(0, "x", true, 5, 5)]);
    }

    #[test]
    fn open_windows_are_visible_as_provisional() {
        let mut s: WindowStore<&str, Count> = WindowStore::new(10, 0);
        s.update(1, &"a", |c| c.0 += 1).unwrap();
        s.update(11, &"a", |c| c.0 += 1).unwrap();
        drain(&mut s, 10);
        let mut open = Vec::new();
        s.for_each_open(|st, en, k, a| open.push((st, en, *k, a.0)));
        assert_eq!(open, vec![(10, 20, "a", 1)]);
    }
}
