//! Reading and dropping single keys of a [`WindowStore`] across its windows: what per-partition
//! shares of window state need (docs/kafka-exactness.md) — a late re-emission looks up the
//! other shares of a series, and a revoked partition's share is forgotten without being
//! emitted. It must not emit or purge anything.

use super::{OpenWindow, Slot, WindowAggregate, WindowKey, WindowStore};
use crate::model::UnixNanos;

impl<K: WindowKey, A: WindowAggregate> WindowStore<K, A> {
    /// Calls `f` with `key`'s complete state in the window starting at `start` (open or
    /// emitted, not purged); false when that window does not hold the key.
    pub fn with_total(&self, start: UnixNanos, key: &K, f: impl FnOnce(&A)) -> bool {
        match self.slots.get(start) {
            Some(Slot::Open(open)) => match open.position(key) {
                Some(i) => {
                    f(&open.aggs[i]);
                    true
                }
                None => false,
            },
            Some(Slot::Settled { entries, .. }) => entries.with_total(key, f),
            None => false,
        }
    }

    /// Calls `f` with `(start, end, key)` of every key of the windows already emitted (and not
    /// purged yet).
    pub fn for_each_emitted_key(&self, mut f: impl FnMut(UnixNanos, UnixNanos, &K)) {
        for (start, slot) in self.slots.iter() {
            if let Slot::Settled {
                entries,
                emitted: true,
                ..
            } = slot
            {
                entries.for_each_key(|k| f(start, start + self.size, k));
            }
        }
    }

    /// Forgets every key `keep` refuses, in every window, without emitting it (the state of a
    /// Kafka partition revoked from this instance: its new owner rebuilds it by replay).
    pub fn retain_keys(&mut self, keep: impl Fn(&K) -> bool) {
        for (_, slot) in self.slots.iter_mut() {
            match slot {
                Slot::Open(open) => {
                    if open.keys.iter().all(&keep) {
                        continue;
                    }
                    let old = std::mem::take(open);
                    let touched = old.touched;
                    let mut fresh = OpenWindow::with_capacity(old.len());
                    for (key, agg) in old.into_entries().filter(|(k, _)| keep(k)) {
                        *fresh.get_or_insert(&key) = agg;
                    }
                    fresh.touched = touched;
                    *open = fresh;
                }
                Slot::Settled { entries, .. } => entries.retain_keys(&keep),
            }
        }
    }
}
