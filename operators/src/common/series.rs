//! A generic series table: interns series keys to small ids, with a cardinality limit, reserved
//! overflow series at the front and idle expiry.
//!
//! Lookups take a borrowed form of the key (`Q: Equivalent<K>`), so a known series costs no
//! allocation; a new series builds its owned key once.
//!
//! Each key is stored once, in its slot (`Arc<K>`, which is what callers are handed). The hash
//! index holds only the 4-byte ids and compares a candidate by looking at its slot's key, so a
//! series costs its key plus ~5 bytes per index bucket plus one slot. The borrowed form and the
//! owned key must hash alike (as for a `HashMap` lookup with `Equivalent`).

use hashbrown::{DefaultHashBuilder, Equivalent, HashTable};
use redwatch_engine::model::UnixNanos;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

/// Small integer id of a series, used as the window-state key.
pub type SeriesId = u32;

/// When a series was last active: by wall clock and by event time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// Wall clock of the last item.
    pub last_seen: UnixNanos,
    /// Largest event time of the series (its windows live at most until then + size + lateness).
    pub last_event: UnixNanos,
}

impl Activity {
    /// Records an item seen at wall clock `now` with event time `event_time`.
    pub fn touch(&mut self, now: UnixNanos, event_time: UnixNanos) {
        self.last_seen = now;
        self.last_event = self.last_event.max(event_time);
    }

    /// Idle since before `idle_before` (wall clock) and all windows purged
    /// (`last_event < purged_through`).
    pub fn expired(&self, idle_before: UnixNanos, purged_through: UnixNanos) -> bool {
        self.last_seen < idle_before && self.last_event < purged_through
    }
}

#[derive(Debug)]
struct Slot<K> {
    key: Arc<K>,
    activity: Activity,
}

/// Result of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Known(SeriesId),
    New(SeriesId),
    Overflow(SeriesId),
}

impl Lookup {
    pub fn id(self) -> SeriesId {
        match self {
            Lookup::Known(i) | Lookup::New(i) | Lookup::Overflow(i) => i,
        }
    }
}

/// Slots added at least when the slot vector grows (it grows by a quarter, not by doubling, so
/// at most ~20% of it is spare).
const MIN_SLOT_GROWTH: usize = 16;

/// Control bytes hashbrown allocates past the buckets (one SIMD group; 16 on x86_64/SSE2, the
/// widest it uses).
const TABLE_GROUP_WIDTH: usize = 16;

/// Measures the heap bytes of a series key.
pub type KeySize<K> = fn(&K) -> usize;

/// All active series of one operator. Ids `0..reserved` are the overflow series, which never
/// expire and do not count against the limit.
#[derive(Debug)]
pub struct SeriesTable<K> {
    /// Ids of the active series (not the reserved ones), hashed by their slot's key.
    ids: HashTable<SeriesId>,
    hasher: DefaultHashBuilder,
    slots: Vec<Option<Slot<K>>>,
    free: Vec<SeriesId>,
    limit: usize,
    reserved: usize,
    /// Cap on the summed heap bytes of the active keys, and how a key's bytes are measured
    /// (docs/design.md, "State and its bounds": the cardinality limit counts bytes as well).
    byte_limit: Option<(usize, KeySize<K>)>,
    key_bytes: usize,
}

/// The key in slot `id`, if that slot is in use.
fn slot_key<K>(slots: &[Option<Slot<K>>], id: SeriesId) -> Option<&K> {
    match slots.get(id as usize) {
        Some(Some(s)) => Some(&*s.key),
        _ => None,
    }
}

/// Bytes hashbrown allocates for a table of `capacity` entries of type `T`: buckets (a power of
/// two, 1/8 kept empty from 8 buckets on) of `T` plus one control byte each, plus one group.
fn hash_table_bytes<T>(capacity: usize) -> usize {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        capacity + 1
    } else {
        capacity / 7 * 8
    };
    buckets * (std::mem::size_of::<T>() + 1) + TABLE_GROUP_WIDTH
}

impl<K: Hash + Eq> SeriesTable<K> {
    /// `limit` active series at most; `overflow` keys take ids `0, 1, ...` in order.
    pub fn with_overflow(overflow: impl IntoIterator<Item = K>, limit: usize) -> Self {
        let slots: Vec<Option<Slot<K>>> = overflow
            .into_iter()
            .map(|k| {
                Some(Slot {
                    key: Arc::new(k),
                    activity: Activity::default(),
                })
            })
            .collect();
        SeriesTable {
            ids: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            reserved: slots.len(),
            slots,
            free: Vec::new(),
            limit,
            byte_limit: None,
            key_bytes: 0,
        }
    }

    /// Also caps the active keys' summed bytes (`size` of each key) at `limit`: past it, new
    /// series overflow like they do past the count limit.
    pub fn with_byte_limit(mut self, limit: usize, size: KeySize<K>) -> Self {
        self.byte_limit = Some((limit, size));
        self
    }

    /// Summed bytes of the active keys (0 without a byte limit).
    pub fn key_bytes(&self) -> usize {
        self.key_bytes
    }

    /// Finds or creates the series for `q` (building its key with `to_owned`); `overflow_id`
    /// once the limit is reached.
    pub fn find_or_insert<Q: Hash + Equivalent<K> + ?Sized>(
        &mut self,
        q: &Q,
        overflow_id: SeriesId,
        to_owned: impl FnOnce(&Q) -> K,
    ) -> Lookup {
        let hash = self.hasher.hash_one(q);
        let slots = &self.slots;
        let found = self.ids.find(hash, |&id| {
            slot_key(slots, id).is_some_and(|k| q.equivalent(k))
        });
        if let Some(&id) = found {
            return Lookup::Known(id);
        }
        if self.ids.len() >= self.limit {
            return Lookup::Overflow(overflow_id);
        }
        let key = to_owned(q);
        if let Some((limit, size)) = self.byte_limit {
            let b = size(&key);
            if self.key_bytes + b > limit {
                return Lookup::Overflow(overflow_id);
            }
            self.key_bytes += b;
        }
        debug_assert_eq!(
            self.hasher.hash_one(&key),
            hash,
            "a borrowed key must hash like its owned key"
        );
        let slot = Slot {
            key: Arc::new(key),
            activity: Activity::default(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(slot);
                id
            }
            None => {
                if self.slots.len() == self.slots.capacity() {
                    let grow = (self.slots.len() / 4).max(MIN_SLOT_GROWTH);
                    self.slots.reserve_exact(grow);
                }
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as SeriesId
            }
        };
        let (hasher, slots) = (&self.hasher, &self.slots);
        // Rehashing on growth recomputes each id's hash from its slot's key (all are present,
        // the new one included).
        self.ids.insert_unique(hash, id, |&id| {
            slot_key(slots, id).map_or(0, |k| hasher.hash_one(k))
        });
        Lookup::New(id)
    }

    /// Records activity of a series.
    pub fn touch(&mut self, id: SeriesId, now: UnixNanos, event_time: UnixNanos) {
        if let Some(Some(slot)) = self.slots.get_mut(id as usize) {
            slot.activity.touch(now, event_time);
        }
    }

    pub fn key(&self, id: SeriesId) -> Option<&Arc<K>> {
        self.slots
            .get(id as usize)
            .and_then(|s| s.as_ref())
            .map(|s| &s.key)
    }

    /// Active series (without the overflow series).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Forgets series idle since before `idle_before` (wall clock) whose windows are all purged
    /// (`last_event < purged_through`); never the overflow series. Returns their keys.
    pub fn expire(&mut self, idle_before: UnixNanos, purged_through: UnixNanos) -> Vec<Arc<K>> {
        let mut gone = Vec::new();
        for (id, slot) in self.slots.iter_mut().enumerate().skip(self.reserved) {
            let expired =
                matches!(slot, Some(s) if s.activity.expired(idle_before, purged_through));
            if expired {
                if let Some(s) = slot.take() {
                    let id = id as SeriesId;
                    let hash = self.hasher.hash_one(&*s.key);
                    if let Ok(entry) = self.ids.find_entry(hash, |&c| c == id) {
                        entry.remove();
                    }
                    self.free.push(id);
                    if let Some((_, size)) = self.byte_limit {
                        self.key_bytes = self.key_bytes.saturating_sub(size(&s.key));
                    }
                    gone.push(s.key);
                }
            }
        }
        gone
    }

    /// Heap bytes of the table, `key_bytes` counting what one key holds on the heap (beyond its
    /// inline size): the id index, the slots, the free list and each key's `Arc` allocation.
    pub fn heap_bytes_with(&self, key_bytes: impl Fn(&K) -> usize) -> usize {
        let arc_alloc = 2 * std::mem::size_of::<usize>() + std::mem::size_of::<K>();
        hash_table_bytes::<SeriesId>(self.ids.capacity())
            + self.slots.capacity() * std::mem::size_of::<Option<Slot<K>>>()
            + self.free.capacity() * std::mem::size_of::<SeriesId>()
            + self
                .slots
                .iter()
                .flatten()
                .map(|s| key_bytes(&s.key) + arc_alloc)
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(limit: usize) -> SeriesTable<String> {
        SeriesTable::with_overflow(["overflow".to_string()], limit)
    }

    fn get(t: &mut SeriesTable<String>, k: &str) -> Lookup {
        t.find_or_insert(k, 0, str::to_string)
    }

    #[test]
    fn the_byte_limit_overflows_long_keys() {
        let mut t = table(100).with_byte_limit(10, String::len);
        assert_eq!(get(&mut t, "abcd"), Lookup::New(1));
        assert_eq!(get(&mut t, "efgh"), Lookup::New(2));
        assert_eq!(get(&mut t, "ijk"), Lookup::Overflow(0));
        assert_eq!(get(&mut t, "ij"), Lookup::New(3));
        assert_eq!(t.key_bytes(), 10);
    }

    #[test]
    fn borrowed_lookups_find_owned_keys_and_the_limit_overflows() {
        let mut t = table(2);
        let a = get(&mut t, "a");
        assert_eq!(a, Lookup::New(1));
        assert_eq!(get(&mut t, "a"), Lookup::Known(1));
        assert_eq!(get(&mut t, "b"), Lookup::New(2));
        assert_eq!(get(&mut t, "c"), Lookup::Overflow(0));
        // The overflow series is not in the index: its key is not found as a regular series.
        assert_eq!(get(&mut t, "overflow"), Lookup::Overflow(0));
        assert_eq!(t.key(1).map(|k| k.as_str()), Some("a"));
        assert_eq!(t.key(0).map(|k| k.as_str()), Some("overflow"));
        assert!(t.key(3).is_none());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn expired_series_leave_the_index_and_their_ids_are_reused() {
        let n = 5_000;
        let mut t = table(n);
        let ids: Vec<SeriesId> = (0..n).map(|i| get(&mut t, &format!("k{i}")).id()).collect();
        for (i, &id) in ids.iter().enumerate() {
            // Even keys stay active, odd ones go idle.
            t.touch(id, if i % 2 == 0 { 200 } else { 100 }, 10);
        }
        let gone = t.expire(150, 1_000);
        assert_eq!(gone.len(), n / 2);
        assert!(gone
            .iter()
            .all(|k| k[1..].parse::<usize>().unwrap() % 2 == 1));
        assert_eq!(t.len(), n - n / 2);
        for (i, &id) in ids.iter().enumerate().step_by(2) {
            assert_eq!(get(&mut t, &format!("k{i}")), Lookup::Known(id));
        }
        assert!(t.key(ids[1]).is_none());
        // New series (an expired key among them) take freed ids, no new slots.
        let slots = t.slots.len();
        let again = get(&mut t, "k1");
        assert!(matches!(again, Lookup::New(id) if ids.contains(&id)));
        assert_eq!(get(&mut t, "k1"), Lookup::Known(again.id()));
        assert!(matches!(get(&mut t, "fresh"), Lookup::New(id) if ids.contains(&id)));
        assert_eq!(t.slots.len(), slots);
        // The overflow series never expires.
        let rest = t.len();
        assert_eq!(t.expire(UnixNanos::MAX, UnixNanos::MAX).len(), rest);
        assert!(t.is_empty());
        assert_eq!(t.key(0).map(|k| k.as_str()), Some("overflow"));
    }

    #[test]
    fn slots_grow_by_a_quarter() {
        let mut t = table(usize::MAX);
        for i in 0..10_000 {
            get(&mut t, &format!("k{i}"));
        }
        assert!(t.slots.capacity() <= t.slots.len() * 5 / 4 + MIN_SLOT_GROWTH);
    }

    /// Registry overhead per series beyond the key itself: the id index (5 B per bucket, up to
    /// 2.3 buckets per series), one slot (24 B, up to 1.25 slots per series) and the `Arc`
    /// header (16 B).
    #[test]
    fn bytes_per_series_at_10k_keys_are_bounded() {
        let n = 10_000;
        let mut t = table(n);
        for i in 0..n {
            get(&mut t, &format!("key-{i:05}"));
        }
        let key_inline = std::mem::size_of::<String>();
        let overhead = t.heap_bytes_with(|_| 0) - (n + 1) * key_inline;
        let per_series = overhead as f64 / n as f64;
        println!("registry overhead: {per_series:.1} B per series at {n} series");
        // The layout with a second copy of each key in a `HashMap<K, SeriesId>` and doubling
        // slots spent ~86 B here (plus the copied keys).
        assert!(per_series <= 64.0, "{per_series:.1} B overhead per series");
    }
}
