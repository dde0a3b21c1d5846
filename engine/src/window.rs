//! Event-time tumbling window state with watermark-driven emission, lateness and purging.
//!
//! Owns the window lifecycle of docs/design.md ("Time semantics"): a window is emitted final
//! when the watermark passes its end, keeps accepting late data (and re-emits just the changed keys, with their deltas) until
//! `end + allowed_lateness`, and is then purged; data for a purged window is refused as late.
//! It must not know what is aggregated: `A` is any mergeable aggregate.
//!
//! State size: an open window holds its keys' aggregates in one dense vector behind a small
//! key → position index (the aggregates carry no hash-table slack, and the vector is sized from
//! the previous window's key count). Keys that are dense ids ([`WindowKey::dense_id`], the
//! series ids of a registry) index a table of positions directly: the per-span hot path does no
//! hashing, and batch updaters can [`prefetch`](WindowStore::prefetch) what an update will
//! touch. Once emitted, a window only waits for rare late data, so each key's aggregate is
//! settled into its compact form ([`WindowAggregate::pack`], else boxed): a few small map slots
//! and bytes instead of the full aggregate. Late data unpacks the key; the re-emission packs it
//! again. Readers only ever see live aggregates.

use crate::model::UnixNanos;
use hashbrown::HashMap;
use settled::SettledWindow;
use starts::Windows;
use std::hash::Hash;

mod settled;
mod shares;
mod starts;

/// An aggregate's compact, read-only form (see [`WindowAggregate::pack`]).
pub type Packed = Box<[u8]>;

/// A per-key aggregate that windows can hold and merge.
pub trait WindowAggregate: Default {
    /// Adds `other` into `self`.
    fn merge(&mut self, other: &Self);
    /// Heap bytes owned beyond `size_of::<Self>()`, for state-size accounting.
    fn heap_bytes(&self) -> usize {
        0
    }
    /// Drops spare capacity; called once a key's window has been emitted (from then on it only
    /// takes late data, which is rare) when the aggregate does not [`pack`](Self::pack).
    fn shrink_to_fit(&mut self) {}
    /// A compact form to hold once the key's window has been emitted, or `None` (the default)
    /// to keep the aggregate as it is (boxed). [`unpack`](Self::unpack) must give back an
    /// aggregate equal to `self`, so an aggregate that packs implements both.
    fn pack(&self) -> Option<Packed> {
        None
    }
    /// The aggregate `packed` holds. Only ever called with the output of [`pack`](Self::pack)
    /// (never with outside bytes), when late data arrives for the key.
    fn unpack(_packed: &[u8]) -> Self {
        Self::default()
    }
}

/// The data arrived for a window that has already been purged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late;

/// A key with late data in a settled window (see [`settled`]).
#[derive(Debug, Default)]
struct LateEntry<A> {
    /// Everything the window has seen for the key.
    total: A,
    /// What arrived since the key was last emitted.
    pending: A,
    /// Whether this key has been emitted for this window.
    emitted: bool,
}

/// A key of a [`WindowStore`]. Keys that are small dense ids (the series ids a registry hands
/// out under its cardinality limit) find their aggregate in an open window by direct indexing;
/// other keys through a hash index.
pub trait WindowKey: Hash + Eq + Clone {
    /// The key as an index into a table, when it is a dense id. Ids from [`DENSE_IDS`] up are
    /// hashed like other keys, so a stray large id never sizes a table.
    fn dense_id(&self) -> Option<u32> {
        None
    }
}

/// [`WindowStore::update_batch`] prefetches an aggregate twice this many updates ahead and
/// calls `prefetch_heap` this many ahead: enough to overlap a few cache misses (~100 ns each)
/// with the work of the updates in between.
pub const PREFETCH_AHEAD: usize = 4;

/// [`WindowStore::update_batch`] prefetches only while the open windows hold at least this many
/// (window, key) aggregates: ~4 MB with their heap, past what stays in a core's caches. Below
/// it the updates mostly hit the cache anyway and the prefetching is extra work (~6% of the CPU
/// per span with one or two windows open per series).
pub const PREFETCH_MIN_ENTRIES: usize = 8 * 1024;

/// Dense ids below this are indexed directly. The table of an open window is as long as the
/// largest id it holds (at most 512 KiB; 80 KB at the default RED cardinality limit of 20 000,
/// beside the window's 20 000 aggregates of ~224 B); larger ids are hashed.
pub const DENSE_IDS: u32 = 1 << 17;

impl WindowKey for u32 {
    #[inline]
    fn dense_id(&self) -> Option<u32> {
        Some(*self)
    }
}
impl WindowKey for u64 {}
impl WindowKey for String {}
impl WindowKey for &str {}
impl<T: Hash + Eq + ?Sized> WindowKey for std::sync::Arc<T> {}

/// A window not emitted yet: every key's live aggregate (the per-span hot path).
#[derive(Debug)]
struct OpenWindow<K, A> {
    /// Dense id → position in `aggs` + 1 (0: not in this window), for keys with a dense id.
    dense: Vec<u32>,
    /// Any other key → position in `aggs`.
    hashed: HashMap<K, u32>,
    /// Position → key, so the window drains in insertion order.
    keys: Vec<K>,
    aggs: Vec<A>,
    /// Updated since the last advance.
    touched: bool,
}

impl<K, A> Default for OpenWindow<K, A> {
    fn default() -> Self {
        OpenWindow {
            dense: Vec::new(),
            hashed: HashMap::new(),
            keys: Vec::new(),
            aggs: Vec::new(),
            touched: false,
        }
    }
}

/// `key`'s dense id when it indexes the dense table.
#[inline]
fn dense_index<K: WindowKey>(key: &K) -> Option<usize> {
    key.dense_id()
        .filter(|&id| id < DENSE_IDS)
        .map(|id| id as usize)
}

impl<K: WindowKey, A: WindowAggregate> OpenWindow<K, A> {
    fn with_capacity(keys: usize) -> Self {
        OpenWindow {
            keys: Vec::with_capacity(keys),
            aggs: Vec::with_capacity(keys),
            ..OpenWindow::default()
        }
    }

    /// Position of `key`'s aggregate in `aggs`.
    #[inline]
    fn position(&self, key: &K) -> Option<usize> {
        match dense_index(key) {
            Some(id) => match self.dense.get(id) {
                Some(&p) if p > 0 => Some(p as usize - 1),
                _ => None,
            },
            None => self.hashed.get(key).map(|&p| p as usize),
        }
    }

    /// The key's aggregate, created empty when new.
    #[inline]
    fn get_or_insert(&mut self, key: &K) -> &mut A {
        self.touched = true;
        let i = match self.position(key) {
            Some(i) => i,
            None => self.insert(key),
        };
        &mut self.aggs[i]
    }

    #[cold]
    fn insert(&mut self, key: &K) -> usize {
        let i = self.aggs.len();
        if i == self.aggs.capacity() {
            // By a quarter, not doubling: the aggregates are most of an open window's bytes.
            let more = (i / 4).max(16);
            self.aggs.reserve_exact(more);
            self.keys.reserve_exact(more);
        }
        self.aggs.push(A::default());
        self.keys.push(key.clone());
        match dense_index(key) {
            Some(id) => {
                if id >= self.dense.len() {
                    let len = (id + 1).max(self.dense.len() + self.dense.len() / 4);
                    self.dense.resize(len, 0);
                }
                self.dense[id] = i as u32 + 1;
            }
            None => {
                self.hashed.insert(key.clone(), i as u32);
            }
        }
        i
    }

    fn len(&self) -> usize {
        self.aggs.len()
    }

    fn iter(&self) -> impl Iterator<Item = (&K, &A)> {
        self.keys.iter().zip(&self.aggs)
    }

    /// Every key with its aggregate, in insertion order.
    fn into_entries(self) -> impl Iterator<Item = (K, A)> {
        self.keys.into_iter().zip(self.aggs)
    }

    fn state_bytes(&self) -> usize {
        self.dense.capacity() * std::mem::size_of::<u32>()
            + self.hashed.capacity() * (std::mem::size_of::<(K, u32)>() + 1)
            + self.keys.capacity() * std::mem::size_of::<K>()
            + self.aggs.capacity() * std::mem::size_of::<A>()
            + self.aggs.iter().map(A::heap_bytes).sum::<usize>()
    }
}

#[derive(Debug)]
enum Slot<K, A> {
    /// Not emitted yet: every key's live aggregate (the per-span hot path).
    Open(OpenWindow<K, A>),
    /// Keys settled between updates: every emitted window, and the open windows of a store
    /// made with [`WindowStore::packing_open_windows`]. `dirty` when some key is
    /// [`Settled::Late`]: late data to re-emit, or (open) an update to pack again.
    Settled {
        entries: SettledWindow<K, A>,
        emitted: bool,
        dirty: bool,
    },
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

/// Windows of one size, aligned to the Unix epoch, half-open `[start, end)`: tumbling, or
/// hopping (a window starts every `slide`, see [`with_slide`](WindowStore::with_slide)).
#[derive(Debug)]
pub struct WindowStore<K, A> {
    size: u64,
    /// Distance between window starts; `size` for tumbling windows.
    slide: u64,
    lateness: u64,
    slots: Windows<Slot<K, A>>,
    watermark: UnixNanos,
    /// Open windows settle (pack) their keys after each advance too.
    pack_open: bool,
    /// Keys of the last window emitted open: the next open window starts with room for them.
    open_keys_hint: usize,
}

impl<K: WindowKey, A: WindowAggregate> WindowStore<K, A> {
    pub fn new(size_ns: u64, allowed_lateness_ns: u64) -> Self {
        assert!(size_ns > 0, "window size must be positive");
        WindowStore {
            size: size_ns,
            slide: size_ns,
            lateness: allowed_lateness_ns,
            slots: Windows::new(size_ns),
            watermark: 0,
            pack_open: false,
            open_keys_hint: 0,
        }
    }

    /// Keeps open windows packed as well, unpacking a key for each update and packing it again
    /// at the next [`advance`](Self::advance): for stores updated in bulk and rarely (a rollup
    /// takes one merge per key and primary window), never for per-span updates.
    pub fn packing_open_windows(mut self) -> Self {
        self.pack_open = true;
        self
    }

    /// Hopping windows: one starts every `slide_ns` (which divides the size), so each event
    /// time lies in `size / slide` windows. Such a store is fed by
    /// [`merge_covering`](Self::merge_covering), not per event.
    pub fn with_slide(mut self, slide_ns: u64) -> Self {
        assert!(
            slide_ns > 0 && self.size.is_multiple_of(slide_ns),
            "the slide must divide the window size"
        );
        self.slide = slide_ns;
        self.slots.set_step(slide_ns);
        self
    }

    pub fn size_ns(&self) -> u64 {
        self.size
    }

    pub fn slide_ns(&self) -> u64 {
        self.slide
    }

    /// Start of the (tumbling) window that holds event time `ts`.
    pub fn window_start(&self, ts: UnixNanos) -> UnixNanos {
        debug_assert_eq!(
            self.slide, self.size,
            "per-event updates need tumbling windows"
        );
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
    pub fn update(&mut self, ts: UnixNanos, key: &K, f: impl FnMut(&mut A)) -> Result<(), Late> {
        self.update_window(self.window_start(ts), key, f)
    }

    /// Applies `f` to `key`'s state in the window starting at `start`.
    fn update_window(
        &mut self,
        start: UnixNanos,
        key: &K,
        mut f: impl FnMut(&mut A),
    ) -> Result<(), Late> {
        if self.is_purged(start) {
            return Err(Late);
        }
        let (pack_open, hint) = (self.pack_open, self.open_keys_hint);
        let slot = self.slots.get_or_insert_with(start, || {
            if pack_open {
                Slot::Settled {
                    entries: SettledWindow::default(),
                    emitted: false,
                    dirty: false,
                }
            } else {
                Slot::Open(OpenWindow::with_capacity(hint))
            }
        });
        match slot {
            Slot::Open(open) => f(open.get_or_insert(key)),
            Slot::Settled {
                entries,
                emitted,
                dirty,
            } => {
                let l = entries.late_mut(key);
                f(&mut l.total);
                if *emitted {
                    f(&mut l.pending);
                }
                *dirty = true;
            }
        }
        Ok(())
    }

    /// `key`'s live aggregate in the open window of event time `ts`, if it has one yet (none is
    /// created; emitted and packed windows have none). For reading what an update will touch
    /// before making it, see [`prefetch`](Self::prefetch).
    #[inline]
    pub fn peek(&self, ts: UnixNanos, key: &K) -> Option<&A> {
        match self.slots.get(self.window_start(ts))? {
            Slot::Open(open) => open.position(key).map(|i| &open.aggs[i]),
            Slot::Settled { .. } => None,
        }
    }

    /// Starts loading `key`'s aggregate in the window of `ts` into the cache, a few updates
    /// before [`update`](Self::update) touches it: with many open windows (wide
    /// out-of-orderness) an update misses the cache, and prefetching lets the misses of
    /// consecutive updates overlap. Only a hint; changes nothing.
    #[inline]
    pub fn prefetch(&self, ts: UnixNanos, key: &K) {
        if let Some(a) = self.peek(ts, key) {
            crate::prefetch::prefetch_value(a);
        }
    }

    /// Applies a batch of updates in order, exactly as [`update`](Self::update) one by one
    /// would: `at` gives an update's event time and key, `apply` changes its aggregate, `done`
    /// hears its outcome. Meanwhile the aggregate of the update `2 × PREFETCH_AHEAD` ahead is
    /// [prefetched](Self::prefetch), and `prefetch_heap` is called with the aggregate (in cache by
    /// then) of the one `PREFETCH_AHEAD` ahead, to prefetch what it points to: with many windows
    /// open nearly every update misses the cache, and this lets the misses overlap. With fewer
    /// than [`PREFETCH_MIN_ENTRIES`] aggregates open it just updates.
    pub fn update_batch<U>(
        &mut self,
        updates: &[U],
        at: impl Fn(&U) -> (UnixNanos, &K),
        mut prefetch_heap: impl FnMut(&A, &U),
        mut apply: impl FnMut(&U, &mut A),
        mut done: impl FnMut(&U, Result<(), Late>),
    ) {
        if self.open_entries() < PREFETCH_MIN_ENTRIES {
            for u in updates {
                let (ts, key) = at(u);
                let outcome = self.update(ts, key, |a| apply(u, a));
                done(u, outcome);
            }
            return;
        }
        for (i, u) in updates.iter().enumerate() {
            if let Some(ahead) = updates.get(i + 2 * PREFETCH_AHEAD) {
                let (ts, key) = at(ahead);
                self.prefetch(ts, key);
            }
            if let Some(ahead) = updates.get(i + PREFETCH_AHEAD) {
                let (ts, key) = at(ahead);
                if let Some(agg) = self.peek(ts, key) {
                    prefetch_heap(agg, ahead);
                }
            }
            let (ts, key) = at(u);
            let outcome = self.update(ts, key, |a| apply(u, a));
            done(u, outcome);
        }
    }

    /// Merges `delta` into `key`'s state in the window of event time `ts`.
    pub fn merge(&mut self, ts: UnixNanos, key: &K, delta: &A) -> Result<(), Late> {
        self.update(ts, key, |a| a.merge(delta))
    }

    /// Merges `delta`, the state of `key` over the finer window `[start, end)`, into every
    /// window of this store that covers that whole interval (one when tumbling, `size / slide`
    /// when hopping and the slide is a multiple of the finer window). Late if any of them is.
    pub fn merge_covering(
        &mut self,
        start: UnixNanos,
        end: UnixNanos,
        key: &K,
        delta: &A,
    ) -> Result<(), Late> {
        let (size, slide) = (self.size, self.slide);
        let mut result = Ok(());
        // Window starts s ≡ 0 (mod slide) with s <= start and s + size >= end, newest first.
        let mut s = start - start % slide;
        while s.saturating_add(size) >= end {
            if self.update_window(s, key, |a| a.merge(delta)).is_err() {
                result = Err(Late);
            }
            match s.checked_sub(slide) {
                Some(prev) => s = prev,
                None => break,
            }
        }
        result
    }

    /// Moves the watermark to `wm` (never back), emits every window whose end it passed that has
    /// not been emitted or has late changes, then purges windows past their lateness.
    pub fn advance(&mut self, wm: UnixNanos, emit: impl FnMut(Emitted<'_, K, A>)) {
        self.emit_due(wm, emit);
        self.purge_expired();
    }

    /// The first half of [`advance`](Self::advance): moves the watermark to `wm` (never back)
    /// and emits every window whose end it passed that has not been emitted or has late
    /// changes, purging nothing. A caller that reads other keys of an emitted window (merging
    /// shares, docs/kafka-exactness.md) does so before [`purge_expired`](Self::purge_expired).
    pub fn emit_due(&mut self, wm: UnixNanos, mut emit: impl FnMut(Emitted<'_, K, A>)) {
        self.watermark = self.watermark.max(wm);
        let wm = self.watermark;
        let size = self.size;
        let mut open_keys = None;
        // Windows whose end <= wm, i.e. start <= wm - size.
        if let Some(last_start) = wm.checked_sub(size) {
            for (start, slot) in self.slots.up_to_mut(last_start) {
                let end = start + size;
                match slot {
                    Slot::Open(open) => {
                        let open = std::mem::take(open);
                        open_keys = Some(open.len());
                        let mut settled = SettledWindow::with_capacity(open.len());
                        for (key, total) in open.into_entries() {
                            emit(Emitted {
                                start,
                                end,
                                first: true,
                                window_first: true,
                                key: &key,
                                total: &total,
                                delta: &total,
                            });
                            settled.settle(key, total);
                        }
                        settled.trim();
                        *slot = Slot::Settled {
                            entries: settled,
                            emitted: true,
                            dirty: false,
                        };
                    }
                    Slot::Settled {
                        entries,
                        emitted: emitted @ false,
                        dirty,
                    } => {
                        *emitted = true;
                        *dirty = false;
                        let old = std::mem::take(entries);
                        let mut fresh = SettledWindow::with_capacity(old.len());
                        old.drain_totals(|key, total| {
                            emit(Emitted {
                                start,
                                end,
                                first: true,
                                window_first: true,
                                key: &key,
                                total: &total,
                                delta: &total,
                            });
                            fresh.settle(key, total);
                        });
                        fresh.trim();
                        *entries = fresh;
                    }
                    Slot::Settled {
                        entries,
                        emitted: true,
                        dirty: dirty @ true,
                    } => {
                        *dirty = false;
                        entries.resettle_late(|key, l| {
                            emit(Emitted {
                                start,
                                end,
                                first: !l.emitted,
                                window_first: false,
                                key,
                                total: &l.total,
                                delta: &l.pending,
                            })
                        });
                    }
                    Slot::Settled { .. } => {}
                }
            }
        }
        if let Some(n) = open_keys {
            self.open_keys_hint = n;
        }
        self.pack_idle_open_windows();
        // Open windows of a packing store: pack what the updates since the last advance unpacked.
        for (_, slot) in self.slots.iter_mut() {
            if let Slot::Settled {
                entries,
                emitted: false,
                dirty: dirty @ true,
            } = slot
            {
                *dirty = false;
                entries.resettle_late(|_, _| {});
            }
        }
    }

    /// The second half of [`advance`](Self::advance): purges the windows past their lateness
    /// at the current watermark.
    pub fn purge_expired(&mut self) {
        let (size, lateness, wm) = (self.size, self.lateness, self.watermark);
        self.slots
            .drop_while(|start| start.saturating_add(size).saturating_add(lateness) <= wm);
    }

    /// Packs the open windows that are not the newest and took no update since the previous
    /// advance: with a bounded out-of-orderness the previous window only waits for the watermark
    /// to pass its end, and live aggregates are several times the packed bytes. A straggler
    /// unpacks just its key until the next advance packs it again, as in a
    /// [`packing_open_windows`](Self::packing_open_windows) store.
    fn pack_idle_open_windows(&mut self) {
        let newest = self
            .slots
            .iter()
            .rev()
            .find(|(_, s)| matches!(s, Slot::Open(_)))
            .map(|(start, _)| start);
        let packs = A::default().pack().is_some();
        let mut keys = None;
        for (start, slot) in self.slots.iter_mut() {
            let Slot::Open(open) = slot else { continue };
            let touched = std::mem::replace(&mut open.touched, false);
            if touched || Some(start) == newest || !packs {
                continue;
            }
            let open = std::mem::take(open);
            keys = Some(open.len());
            let mut entries = SettledWindow::with_capacity(open.len());
            for (key, total) in open.into_entries() {
                entries.settle(key, total);
            }
            entries.trim();
            *slot = Slot::Settled {
                entries,
                emitted: false,
                dirty: false,
            };
        }
        if let Some(n) = keys {
            self.open_keys_hint = n;
        }
    }

    /// Visits every key of the windows not yet emitted (provisional results).
    pub fn for_each_open(&self, mut f: impl FnMut(UnixNanos, UnixNanos, &K, &A)) {
        for (start, slot) in self.slots.iter() {
            let end = start + self.size;
            match slot {
                Slot::Open(open) => {
                    for (k, a) in open.iter() {
                        f(start, end, k, a);
                    }
                }
                Slot::Settled {
                    entries,
                    emitted: false,
                    ..
                } => entries.for_each(|k, a| f(start, end, k, a)),
                Slot::Settled { .. } => {}
            }
        }
    }

    /// Number of windows held (open or waiting for late data).
    pub fn window_count(&self) -> usize {
        self.slots.len()
    }

    /// Number of (window, key) aggregates held live in open windows.
    fn open_entries(&self) -> usize {
        self.slots
            .values()
            .map(|s| match s {
                Slot::Open(open) => open.len(),
                Slot::Settled { .. } => 0,
            })
            .sum()
    }

    /// Number of (window, key) entries held.
    pub fn entry_count(&self) -> usize {
        self.slots
            .values()
            .map(|s| match s {
                Slot::Open(open) => open.len(),
                Slot::Settled { entries, .. } => entries.len(),
            })
            .sum()
    }

    /// Approximate bytes of state held: map slots (capacity, plus a control byte each) and the
    /// heap each entry owns (packed bytes of emitted keys included).
    pub fn state_bytes(&self) -> usize {
        self.slots
            .values()
            .map(|s| match s {
                Slot::Open(open) => open.state_bytes(),
                Slot::Settled { entries, .. } => entries.state_bytes(),
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
    fn retained_keys_stay_and_dropped_keys_vanish_from_open_and_emitted_windows() {
        let mut s: WindowStore<&'static str, Count> = WindowStore::new(10, 30);
        for (ts, k) in [(1, "a"), (2, "b"), (15, "a"), (16, "b")] {
            s.update(ts, &k, |c| c.0 += 1).unwrap();
        }
        // [0,10) emitted, [10,20) open.
        assert_eq!(
            drain(&mut s, 10),
            vec![(0, "a", true, 1, 1), (0, "b", true, 1, 1)]
        );
        s.update(3, &"b", |c| c.0 += 1).unwrap();
        s.retain_keys(|k| *k != "b");
        let mut seen = 0;
        assert!(s.with_total(0, &"a", |c| seen = c.0));
        assert_eq!(seen, 1);
        assert!(!s.with_total(0, &"b", |_| {}));
        assert!(s.with_total(10, &"a", |c| seen = c.0));
        assert!(!s.with_total(10, &"b", |_| {}));
        let mut emitted = Vec::new();
        s.for_each_emitted_key(|start, end, k| emitted.push((start, end, *k)));
        assert_eq!(emitted, vec![(0, 10, "a")]);
        // The dropped key's late update is not re-emitted, and its open window is gone.
        assert_eq!(drain(&mut s, 20), vec![(10, "a", true, 1, 1)]);
    }

    #[test]
    fn dense_and_hashed_ids_hold_the_same_state_and_drain_in_insertion_order() {
        // Small ids index the dense table, ids from DENSE_IDS up are hashed; a peek sees both.
        let keys = [7u32, DENSE_IDS + 3, 0, u32::MAX, 7, DENSE_IDS - 1, 0];
        let mut s: WindowStore<u32, Count> = WindowStore::new(10, 0);
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(
                s.peek(4, k).map(|c| c.0),
                keys[..n]
                    .contains(k)
                    .then(|| { keys[..n].iter().filter(|x| *x == k).count() as u64 })
            );
            s.prefetch(4, k);
            s.update(4, k, |c| c.0 += 1).unwrap();
        }
        assert_eq!(s.peek(4, &1), None, "never updated");
        assert_eq!(s.peek(14, &7), None, "another window");
        let mut rows = Vec::new();
        s.advance(10, |e| rows.push((*e.key, e.total.0)));
        assert_eq!(
            rows,
            [
                (7, 2),
                (DENSE_IDS + 3, 1),
                (0, 2),
                (u32::MAX, 1),
                (DENSE_IDS - 1, 1)
            ]
        );
        assert_eq!(s.peek(4, &7), None, "emitted windows are not peeked");
    }

    /// `update_batch` over 60 updates in three windows (the first purged: late), dense and
    /// hashed keys, after `filler` other keys were put in an open window, against `update`.
    fn batch_update_matches_single_updates(filler: u32) {
        let updates: Vec<(u64, u32)> = (0..60u64)
            .map(|i| {
                let key = (i * 13 % 5) as u32 + if i % 3 == 0 { DENSE_IDS } else { 0 };
                (i * 7 % 40, key)
            })
            .collect();
        let mut batch: WindowStore<u32, Count> = WindowStore::new(10, 0);
        let mut single: WindowStore<u32, Count> = WindowStore::new(10, 0);
        for s in [&mut batch, &mut single] {
            s.advance(10, |_| {});
            for k in 0..filler {
                s.update(35, &(100 + k), |c| c.0 += 1).unwrap();
            }
        }
        let (mut got, mut prefetched) = (Vec::new(), 0);
        batch.update_batch(
            &updates,
            |u| (u.0, &u.1),
            |_, _| prefetched += 1,
            |u, c| c.0 += u.0 + 1,
            |u, outcome| got.push((u.0, u.1, outcome)),
        );
        let expected: Vec<_> = updates
            .iter()
            .map(|u| (u.0, u.1, single.update(u.0, &u.1, |c| c.0 += u.0 + 1)))
            .collect();
        assert_eq!(got, expected);
        assert!(got.iter().any(|g| g.2.is_err()) && got.iter().any(|g| g.2.is_ok()));
        // Prefetching only past PREFETCH_MIN_ENTRIES open aggregates.
        assert_eq!(prefetched > 0, filler as usize >= PREFETCH_MIN_ENTRIES);
        let rows = |s: &mut WindowStore<u32, Count>| {
            let mut out = Vec::new();
            s.advance(100, |e| out.push((e.start, *e.key, e.total.0)));
            out.sort();
            out
        };
        assert_eq!(rows(&mut batch), rows(&mut single));
    }

    #[test]
    fn a_batch_update_equals_the_same_updates_one_by_one() {
        batch_update_matches_single_updates(0);
        batch_update_matches_single_updates(PREFETCH_MIN_ENTRIES as u32);
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

    /// A count that packs into its 8 LE bytes and counts its unpacks.
    #[derive(Debug, Default, Clone, PartialEq)]
    struct PackedCount(u64);
    impl WindowAggregate for PackedCount {
        fn merge(&mut self, o: &Self) {
            self.0 += o.0;
        }
        fn pack(&self) -> Option<Packed> {
            Some(Box::new(self.0.to_le_bytes()))
        }
        fn unpack(packed: &[u8]) -> Self {
            PackedCount(u64::from_le_bytes(packed.try_into().expect("8 bytes")))
        }
    }

    fn drain_packed(s: &mut WindowStore<&'static str, PackedCount>, wm: u64) -> Rows {
        let mut out = Vec::new();
        s.advance(wm, |e| {
            out.push((e.start, *e.key, e.first, e.total.0, e.delta.0))
        });
        out.sort();
        out
    }

    #[test]
    fn packed_windows_emit_exactly_what_live_ones_do() {
        // Same updates and watermarks into a packing and a plain store, late data included.
        // (Some(event time, key, count to add)) or (None, watermark to advance to).
        type Step = (Option<(u64, &'static str, u64)>, u64);
        let steps: &[Step] = &[
            (Some((3, "a", 1)), 0),
            (Some((7, "a", 2)), 0),
            (Some((12, "b", 1)), 0),
            (None, 10),
            (Some((5, "a", 4)), 0),
            (Some((6, "c", 2)), 0),
            (Some((15, "b", 1)), 0),
            (None, 21),
            (Some((1, "a", 1)), 0),
            (Some((2, "a", 1)), 0),
            (None, 25),
            (None, 30),
            (Some((4, "a", 1)), 0),
            (Some((35, "d", 3)), 0),
            (None, 60),
        ];
        let mut packed: WindowStore<&str, PackedCount> = WindowStore::new(10, 20);
        let mut plain: WindowStore<&str, Count> = WindowStore::new(10, 20);
        let mut rows = 0;
        for (update, wm) in steps {
            match update {
                Some((ts, k, n)) => assert_eq!(
                    packed.update(*ts, k, |c| c.0 += n),
                    plain.update(*ts, k, |c| c.0 += n)
                ),
                None => {
                    let a = drain_packed(&mut packed, *wm);
                    assert_eq!(a, drain(&mut plain, *wm), "at watermark {wm}");
                    rows += a.len();
                }
            }
            assert_eq!(packed.entry_count(), plain.entry_count());
        }
        assert_eq!(rows, 6);
    }

    #[test]
    fn state_bytes_count_packed_entries() {
        let mut s: WindowStore<u32, PackedCount> = WindowStore::new(10, 100);
        for k in 0..50u32 {
            s.update(5, &k, |c| c.0 += 1).unwrap();
        }
        let open = s.state_bytes();
        assert!(open >= 50 * std::mem::size_of::<(u32, PackedCount)>());
        s.advance(10, |_| {});
        // Emitted: an index slot (key, offset) per key plus its 8 packed bytes and their
        // length byte, back to back.
        let index = settled_index_bytes(&s);
        assert!((50 * 9..4 * 50 * 9).contains(&index), "{index}");
        let (len, cap) = settled_arena(&s);
        assert!(len == 50 * 9 && cap <= len + len / 4, "{len} {cap}");
        assert_eq!(s.state_bytes(), index + cap);
        // Late data unpacks one key (boxed total and pending) until it is re-emitted; its
        // bytes stay in the arena until they are half of it.
        s.update(5, &7, |c| c.0 += 1).unwrap();
        let live = settled_live_bytes(&s);
        assert!(live >= std::mem::size_of::<LateEntry<PackedCount>>());
        assert_eq!(s.state_bytes(), settled_index_bytes(&s) + cap + live);
        let mut rows = Vec::new();
        s.advance(11, |e| rows.push((*e.key, e.first, e.total.0, e.delta.0)));
        assert_eq!(rows, vec![(7, false, 2, 1)]);
        assert_eq!(settled_arena(&s).0, 51 * 9);
        // Every key late once: the arena is compacted back to one copy of each.
        for k in 0..50u32 {
            s.update(5, &k, |c| c.0 += 1).unwrap();
        }
        s.advance(12, |_| {});
        let (len, cap) = settled_arena(&s);
        assert_eq!(len, 50 * 9);
        assert_eq!(
            s.state_bytes(),
            settled_index_bytes(&s) + cap + settled_live_bytes(&s)
        );
    }

    fn settled_arena(s: &WindowStore<u32, PackedCount>) -> (usize, usize) {
        s.slots
            .values()
            .map(|x| match x {
                Slot::Settled { entries, .. } => (entries.arena_len(), entries.arena_capacity()),
                Slot::Open(_) => (0, 0),
            })
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }

    fn settled_index_bytes(s: &WindowStore<u32, PackedCount>) -> usize {
        s.slots
            .values()
            .map(|x| match x {
                Slot::Settled { entries, .. } => entries.index_bytes(),
                Slot::Open(_) => 0,
            })
            .sum()
    }

    fn settled_live_bytes(s: &WindowStore<u32, PackedCount>) -> usize {
        s.slots
            .values()
            .map(|x| match x {
                Slot::Settled { entries, .. } => entries.live_bytes(),
                Slot::Open(_) => 0,
            })
            .sum()
    }

    #[test]
    fn a_packing_open_store_packs_between_advances_and_reads_through() {
        let mut s: WindowStore<&str, PackedCount> = WindowStore::new(10, 20).packing_open_windows();
        fn open_rows(s: &WindowStore<&'static str, PackedCount>) -> Vec<(u64, &'static str, u64)> {
            let mut open = Vec::new();
            s.for_each_open(|st, _, k, a| open.push((st, *k, a.0)));
            open.sort();
            open
        }
        s.update(3, &"a", |c| c.0 += 2).unwrap();
        s.update(4, &"a", |c| c.0 += 1).unwrap();
        s.update(5, &"c", |c| c.0 += 1).unwrap();
        s.update(14, &"b", |c| c.0 += 1).unwrap();
        let expected = vec![(0, "a", 3), (0, "c", 1), (10, "b", 1)];
        assert_eq!(open_rows(&s), expected);
        assert_eq!(drain_packed(&mut s, 5), vec![]);
        // Packed now: every open key takes its 8 bytes and a length byte besides its slot.
        let bytes_and_index = |s: &WindowStore<&'static str, PackedCount>| {
            s.slots
                .values()
                .map(|x| match x {
                    Slot::Settled {
                        entries,
                        emitted: false,
                        dirty: false,
                    } => (
                        entries.arena_len(),
                        entries.index_bytes(),
                        entries.live_bytes(),
                    ),
                    _ => panic!("open windows of a packing store are settled"),
                })
                .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
        };
        assert_eq!(bytes_and_index(&s).0, 3 * 9);
        assert_eq!(bytes_and_index(&s).2, 0);
        assert_eq!(open_rows(&s), expected);
        // Updating one key of a packed window leaves the others as they were.
        s.update(6, &"a", |c| c.0 += 1).unwrap();
        assert_eq!(drain_packed(&mut s, 6), vec![]);
        assert_eq!(bytes_and_index(&s).2, 0);
        // "a" was packed again; its old bytes are reclaimed once they are a quarter of the arena.
        assert!(bytes_and_index(&s).0 <= 4 * 9, "{:?}", bytes_and_index(&s));
        assert_eq!(open_rows(&s), vec![(0, "a", 4), (0, "c", 1), (10, "b", 1)]);
        assert_eq!(
            drain_packed(&mut s, 10),
            vec![(0, "a", true, 4, 4), (0, "c", true, 1, 1)]
        );
        s.update(7, &"a", |c| c.0 += 1).unwrap();
        assert_eq!(
            drain_packed(&mut s, 20),
            vec![(0, "a", false, 5, 1), (10, "b", true, 1, 1)]
        );
    }

    #[test]
    fn an_idle_previous_window_is_packed_and_emits_the_same_rows() {
        let mut s: WindowStore<&str, PackedCount> = WindowStore::new(10, 20);
        let mut plain: WindowStore<&str, Count> = WindowStore::new(10, 20);
        let is_open = |s: &WindowStore<&str, PackedCount>, start: u64| {
            matches!(s.slots.get(start), Some(Slot::Open(_)))
        };
        for (ts, k) in [(3, "a"), (4, "b"), (12, "a")] {
            s.update(ts, &k, |c| c.0 += 1).unwrap();
            plain.update(ts, &k, |c| c.0 += 1).unwrap();
        }
        // Touched since the last advance: both stay live.
        assert_eq!(drain_packed(&mut s, 5), drain(&mut plain, 5));
        assert!(is_open(&s, 0) && is_open(&s, 10));
        // [0,10) took nothing since: packed; [10,20) is the newest and stays live.
        s.update(13, &"b", |c| c.0 += 1).unwrap();
        plain.update(13, &"b", |c| c.0 += 1).unwrap();
        assert_eq!(drain_packed(&mut s, 6), drain(&mut plain, 6));
        assert!(!is_open(&s, 0) && is_open(&s, 10));
        let mut open = Vec::new();
        s.for_each_open(|st, _, k, a| open.push((st, *k, a.0)));
        open.sort();
        assert_eq!(
            open,
            vec![(0, "a", 1), (0, "b", 1), (10, "a", 1), (10, "b", 1)]
        );
        // A straggler for the packed window, then its emission and a late update.
        s.update(7, &"a", |c| c.0 += 2).unwrap();
        plain.update(7, &"a", |c| c.0 += 2).unwrap();
        for wm in [7, 10, 12] {
            assert_eq!(drain_packed(&mut s, wm), drain(&mut plain, wm), "at {wm}");
        }
        s.update(8, &"b", |c| c.0 += 1).unwrap();
        plain.update(8, &"b", |c| c.0 += 1).unwrap();
        for wm in [13, 20, 40] {
            assert_eq!(drain_packed(&mut s, wm), drain(&mut plain, wm), "at {wm}");
        }
        assert_eq!(s.entry_count(), plain.entry_count());
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
