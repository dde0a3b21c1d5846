//! A generic series table: interns series keys to small ids, with a cardinality limit, reserved
//! overflow series at the front and idle expiry.
//!
//! Lookups take a borrowed form of the key (`Q: Equivalent<K>`), so a known series costs no
//! allocation; a new series builds its owned key once.

use hashbrown::{Equivalent, HashMap};
use redwatch_engine::model::UnixNanos;
use std::hash::Hash;
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

/// All active series of one operator. Ids `0..reserved` are the overflow series, which never
/// expire and do not count against the limit.
#[derive(Debug)]
pub struct SeriesTable<K> {
    ids: HashMap<K, SeriesId>,
    slots: Vec<Option<Slot<K>>>,
    free: Vec<SeriesId>,
    limit: usize,
    reserved: usize,
}

impl<K: Hash + Eq + Clone> SeriesTable<K> {
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
            ids: HashMap::new(),
            reserved: slots.len(),
            slots,
            free: Vec::new(),
            limit,
        }
    }

    /// Finds or creates the series for `q` (building its key with `to_owned`); `overflow_id`
    /// once the limit is reached.
    pub fn find_or_insert<Q: Hash + Equivalent<K> + ?Sized>(
        &mut self,
        q: &Q,
        overflow_id: SeriesId,
        to_owned: impl FnOnce(&Q) -> K,
    ) -> Lookup {
        if let Some(&id) = self.ids.get(q) {
            return Lookup::Known(id);
        }
        if self.ids.len() >= self.limit {
            return Lookup::Overflow(overflow_id);
        }
        let key = to_owned(q);
        let slot = Slot {
            key: Arc::new(key.clone()),
            activity: Activity::default(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(slot);
                id
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as SeriesId
            }
        };
        self.ids.insert(key, id);
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
                    self.ids.remove(&*s.key);
                    self.free.push(id as SeriesId);
                    gone.push(s.key);
                }
            }
        }
        gone
    }

    /// Approximate heap bytes of the table, `key_bytes` counting what one key holds.
    pub fn heap_bytes_with(&self, key_bytes: impl Fn(&K) -> usize) -> usize {
        self.ids.capacity() * (std::mem::size_of::<(K, SeriesId)>() + 1)
            + self.slots.capacity() * std::mem::size_of::<Option<Slot<K>>>()
            + self
                .slots
                .iter()
                .flatten()
                .map(|s| key_bytes(&s.key) + std::mem::size_of::<K>())
                .sum::<usize>()
    }
}
