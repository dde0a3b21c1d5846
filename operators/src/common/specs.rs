//! The window specs of an operator: the primary window and its rollups, which the primary's
//! emitted deltas feed.

use redwatch_engine::config::WindowsConfig;
use redwatch_engine::model::UnixNanos;
use redwatch_engine::pipeline::StateStats;
use redwatch_engine::telemetry::Counter;
use redwatch_engine::window::{Emitted, WindowAggregate, WindowKey, WindowStore};
use std::sync::Arc;

/// How often operators publish provisional rows of their open windows.
pub const PROVISIONAL_EVERY_NS: u64 = 1_000_000_000;
/// How often operators look for idle series to expire.
pub const SERIES_EXPIRY_EVERY_NS: u64 = 5_000_000_000;

/// Whether `every` ns have passed since `*last` (wall clock); if so, moves `*last` to `now`.
pub fn due(last: &mut UnixNanos, now: UnixNanos, every: u64) -> bool {
    if now.saturating_sub(*last) >= every {
        *last = now;
        true
    } else {
        false
    }
}

/// The config spelling of a window size (`10s`, `1m`).
pub fn spec_label(ns: u64) -> Arc<str> {
    Arc::from(humantime::format_duration(std::time::Duration::from_nanos(ns)).to_string())
}

/// What a row builder needs to know about the spec it builds for.
#[derive(Debug, Clone, Copy)]
pub struct SpecInfo<'a> {
    pub label: &'a Arc<str>,
    pub size_ns: u64,
    /// Whether this is the primary window spec.
    pub primary: bool,
}

/// One window spec: its windows, its label and (optionally) a counter of windows emitted.
pub struct WindowSpec<K, A> {
    pub label: Arc<str>,
    pub store: WindowStore<K, A>,
    emitted: Option<Arc<Counter>>,
}

impl<K: WindowKey, A: WindowAggregate> WindowSpec<K, A> {
    /// A spec labelled after the store's window size.
    pub fn new(store: WindowStore<K, A>, emitted: Option<Arc<Counter>>) -> Self {
        WindowSpec {
            label: spec_label(store.size_ns()),
            store,
            emitted,
        }
    }

    /// Advances the windows to `wm`, handing each emitted entry to `also`, building rows with
    /// `row` and handing a non-empty set of rows to `emit` — with the store as it is before the
    /// purge, so the rows' windows can still be read — then purging.
    fn advance<R>(
        &mut self,
        wm: UnixNanos,
        primary: bool,
        row: &mut impl FnMut(SpecInfo<'_>, &Emitted<'_, K, A>) -> Option<R>,
        emit: &mut impl FnMut(Vec<R>, &WindowStore<K, A>),
        mut also: impl FnMut(&Emitted<'_, K, A>),
    ) {
        let mut rows = Vec::new();
        let mut windows = 0u64;
        let mut last_first = None;
        let label = self.label.clone();
        let info = SpecInfo {
            label: &label,
            size_ns: self.store.size_ns(),
            primary,
        };
        self.store.emit_due(wm, |e| {
            also(&e);
            if e.window_first && last_first != Some(e.start) {
                last_first = Some(e.start);
                windows += 1;
            }
            if let Some(r) = row(info, &e) {
                rows.push(r);
            }
        });
        if let Some(c) = &self.emitted {
            c.add(windows);
        }
        if !rows.is_empty() {
            emit(rows, &self.store);
        }
        self.store.purge_expired();
    }
}

/// The primary window spec and its rollups.
pub struct WindowSpecs<K, A> {
    pub primary: WindowSpec<K, A>,
    pub rollups: Vec<WindowSpec<K, A>>,
}

impl<K: WindowKey, A: WindowAggregate> WindowSpecs<K, A> {
    /// The specs of `windows`: `make(size_ns, is_rollup)` builds each. Hopping specs of
    /// `windows.extra` are rollups with a slide (validated config: the slide is a multiple of
    /// the primary size and divides the hopping size), labelled `<size>/<slide>`.
    pub fn from_config(
        windows: &WindowsConfig,
        mut make: impl FnMut(u64, bool) -> WindowSpec<K, A>,
    ) -> Self {
        let ns = |d: std::time::Duration| (d.as_nanos() as u64).max(1);
        let primary = make(ns(windows.size), false);
        let mut rollups: Vec<WindowSpec<K, A>> =
            windows.rollups.iter().map(|d| make(ns(*d), true)).collect();
        for (size, slide) in windows.extra.iter().filter_map(|x| x.hopping()) {
            let spec = make(ns(size), true);
            let label = Arc::from(format!("{}/{}", spec.label, spec_label(ns(slide))));
            rollups.push(WindowSpec {
                label,
                store: spec.store.with_slide(ns(slide)),
                emitted: spec.emitted,
            });
        }
        WindowSpecs { primary, rollups }
    }

    fn all(&self) -> impl Iterator<Item = (&WindowSpec<K, A>, bool)> {
        std::iter::once((&self.primary, true)).chain(self.rollups.iter().map(|r| (r, false)))
    }

    /// Moves every spec to watermark `wm`: `row` builds the final rows, `emit` gets each
    /// spec's non-empty rows with that spec's store, before the store purges the windows past
    /// their lateness. The primary's deltas feed the rollups before those advance.
    pub fn advance<R>(
        &mut self,
        wm: UnixNanos,
        mut row: impl FnMut(SpecInfo<'_>, &Emitted<'_, K, A>) -> Option<R>,
        mut emit: impl FnMut(Vec<R>, &WindowStore<K, A>),
    ) {
        let WindowSpecs { primary, rollups } = self;
        primary.advance(wm, true, &mut row, &mut emit, |e| {
            for r in rollups.iter_mut() {
                // Cannot be late: a rollup (or hopping) window outlives every primary window
                // inside it.
                let _ = r.store.merge_covering(e.start, e.end, e.key, e.delta);
            }
        });
        for r in rollups.iter_mut() {
            r.advance(wm, false, &mut row, &mut emit, |_| {});
        }
    }

    /// The provisional rows of every spec's open windows: `row` builds them from
    /// `(spec, start, end, key, aggregate)`, `emit` gets each spec's rows (also when empty).
    pub fn provisional<R>(
        &self,
        mut row: impl FnMut(SpecInfo<'_>, UnixNanos, UnixNanos, &K, &A) -> Option<R>,
        mut emit: impl FnMut(u64, &[R]),
    ) {
        for (spec, primary) in self.all() {
            let mut rows = Vec::new();
            let info = SpecInfo {
                label: &spec.label,
                size_ns: spec.store.size_ns(),
                primary,
            };
            spec.store.for_each_open(|start, end, key, agg| {
                if let Some(r) = row(info, start, end, key, agg) {
                    rows.push(r);
                }
            });
            emit(info.size_ns, &rows);
        }
    }

    /// The store of the spec labelled `label`.
    pub fn store_of(&self, label: &str) -> Option<&WindowStore<K, A>> {
        self.all()
            .find(|(s, _)| &*s.label == label)
            .map(|(s, _)| &s.store)
    }

    /// Calls `f` with every spec's label and store.
    pub fn for_each_spec(&self, mut f: impl FnMut(&Arc<str>, &WindowStore<K, A>)) {
        for (s, _) in self.all() {
            f(&s.label, &s.store);
        }
    }

    /// Forgets, in every spec, the keys `keep` refuses (see [`WindowStore::retain_keys`]).
    pub fn retain_keys(&mut self, keep: impl Fn(&K) -> bool) {
        self.primary.store.retain_keys(&keep);
        for r in self.rollups.iter_mut() {
            r.store.retain_keys(&keep);
        }
    }

    /// Event time before which every spec's windows are purged, at watermark `wm`.
    pub fn purged_through(&self, wm: UnixNanos, lateness_ns: u64) -> UnixNanos {
        let largest = self
            .all()
            .map(|(s, _)| s.store.size_ns())
            .max()
            .unwrap_or(0);
        wm.saturating_sub(lateness_ns + largest)
    }

    /// Adds the windows, entries and bytes of every spec to `s`.
    pub fn add_stats(&self, s: &mut StateStats) {
        for (spec, _) in self.all() {
            s.windows += spec.store.window_count();
            s.entries += spec.store.entry_count();
            s.bytes += spec.store.state_bytes();
        }
    }
}
