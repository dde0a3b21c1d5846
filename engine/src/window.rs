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
use settled::SettledWindow;
use starts::Windows;
use std::hash::Hash;

mod open;
mod settled;
mod shares;
mod starts;
#[cfg(test)]
mod tests;

use open::OpenWindow;

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

impl<K: WindowKey, A: WindowAggregate> Slot<K, A> {
    /// (window, key) entries held.
    fn len(&self) -> usize {
        match self {
            Slot::Open(open) => open.len(),
            Slot::Settled { entries, .. } => entries.len(),
        }
    }

    /// Approximate bytes held (see [`WindowStore::state_bytes`]).
    fn state_bytes(&self) -> usize {
        match self {
            Slot::Open(open) => open.state_bytes(),
            Slot::Settled { entries, .. } => entries.state_bytes(),
        }
    }
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
                if let Some(n) = Self::emit_slot(slot, start, start + size, &mut emit) {
                    open_keys = Some(n);
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

    /// Emits one due window `[start, end)`: every key of a window never emitted (an open one is
    /// settled on the way), or the late changes of an emitted one. Returns the key count of a
    /// window that was open (the next open window's capacity hint).
    fn emit_slot(
        slot: &mut Slot<K, A>,
        start: UnixNanos,
        end: UnixNanos,
        emit: &mut impl FnMut(Emitted<'_, K, A>),
    ) -> Option<usize> {
        let mut open_keys = None;
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
        open_keys
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
        self.slots.values().map(Slot::len).sum()
    }

    /// Approximate bytes of state held: map slots (capacity, plus a control byte each) and the
    /// heap each entry owns (packed bytes of emitted keys included).
    pub fn state_bytes(&self) -> usize {
        self.slots.values().map(Slot::state_bytes).sum()
    }

    /// The newest window end at or before which every window has been purged.
    pub fn purged_through(&self) -> UnixNanos {
        self.watermark.saturating_sub(self.lateness)
    }
}
