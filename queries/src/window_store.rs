//! The windowed-table store: the one lifecycle of every live windowed table (`red`,
//! `metric_points`, `service_graph`, `sessions`; docs/design.md, "Tables").
//!
//! - [`Retained`]: what a table keeps once rows can no longer change (or, for `service_graph`,
//!   its final windows), by age behind the newest end (`sql.retention`) and by a cap on the
//!   total weight (bytes, or rows), oldest first out.
//! - [`WindowedTable`]: the whole lifecycle for tables fed one row per (window, series):
//!   provisional rows of open windows (replaced on every publication, dropped the moment their
//!   window turns final), final windows that still take late re-emissions (a series' row is
//!   replaced; the batch is rebuilt on demand and cached), and sealing once no late update can
//!   come (`end + allowed_lateness` passed by a window of the same size): only the batch is
//!   kept, in a [`Retained`].
//!
//! A table supplies how its rows become a batch ([`WindowRows`]); it must not re-implement the
//! lifecycle.

use crate::table::{Partition, PruneFilter};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use redwatch_engine::model::UnixNanos;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

mod columns;
pub use columns::{DimsColumn, Float64Columns, WindowColumns, OVERFLOW_KEY};

/// What a [`Retained`] store weighs an entry at (bytes for most tables, rows for one).
pub trait Weighed {
    fn weight(&self) -> usize;
}

impl Weighed for Partition {
    fn weight(&self) -> usize {
        self.bytes()
    }
}

#[derive(Debug)]
struct Kept<E> {
    /// Position in the age order: the oldest entry goes first when over the cap.
    age: u64,
    end: UnixNanos,
    value: E,
}

/// Entries kept for a retention behind the newest end and within a cap on their total weight.
#[derive(Debug)]
pub struct Retained<K, E> {
    entries: BTreeMap<K, Kept<E>>,
    weight: usize,
}

impl<K, E> Default for Retained<K, E> {
    fn default() -> Self {
        Retained {
            entries: BTreeMap::new(),
            weight: 0,
        }
    }
}

impl<K: Ord + Copy, E: Weighed> Retained<K, E> {
    /// Keeps `value` under `key` (replacing what was there); `age` orders entries oldest first
    /// (a window's start, a chunk's sequence number), `end` is what retention compares.
    pub fn insert(&mut self, key: K, age: u64, end: UnixNanos, value: E) {
        self.weight += value.weight();
        if let Some(old) = self.entries.insert(key, Kept { age, end, value }) {
            self.weight -= old.value.weight();
        }
    }

    pub fn contains(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// Changes the entry under `key` in place (its weight is taken again).
    pub fn update<T>(&mut self, key: &K, f: impl FnOnce(&mut E) -> T) -> Option<T> {
        let kept = self.entries.get_mut(key)?;
        self.weight -= kept.value.weight();
        let out = f(&mut kept.value);
        self.weight += kept.value.weight();
        Some(out)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total weight of what is kept.
    pub fn weight(&self) -> usize {
        self.weight
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &E)> {
        self.entries.iter().map(|(k, e)| (k, &e.value))
    }

    pub fn values(&self) -> impl Iterator<Item = &E> {
        self.entries.values().map(|e| &e.value)
    }

    /// Drops entries ending before `horizon`, then the oldest while the total weight is over
    /// `max_weight`.
    pub fn expire(&mut self, horizon: UnixNanos, max_weight: usize) {
        let mut dropped = 0;
        self.entries.retain(|_, e| {
            let keep = e.end >= horizon;
            if !keep {
                dropped += e.value.weight();
            }
            keep
        });
        self.weight -= dropped;
        while self.weight > max_weight {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.age)
                .map(|(k, _)| *k);
            match oldest.and_then(|k| self.entries.remove(&k)) {
                Some(e) => self.weight -= e.value.weight(),
                None => break,
            }
        }
    }
}

/// A batch of a windowed table with whatever its table prunes on.
pub trait StoredPart: Clone + Send {
    fn partition(&self) -> &Partition;
    fn partition_mut(&mut self) -> &mut Partition;
    /// The partitions of several windows of one spec as one (provisional rows).
    fn concat(parts: Vec<Self>, batch: RecordBatch, time_ranges: TimeRanges) -> Self;
    /// Called after the first `n` rows were cut off (`None`: rows were filtered out anywhere).
    fn rows_dropped(&mut self, _prefix: Option<usize>) {}
    /// Appends the parts of the batch that may match `filter`.
    fn select(&self, filter: &PruneFilter, out: &mut Vec<RecordBatch>) {
        let p = self.partition();
        if p.batch.num_rows() > 0 && filter.may_match(p) {
            out.push(p.batch.clone());
        }
    }
}

impl StoredPart for Partition {
    fn partition(&self) -> &Partition {
        self
    }
    fn partition_mut(&mut self) -> &mut Partition {
        self
    }
    fn concat(_parts: Vec<Self>, batch: RecordBatch, time_ranges: TimeRanges) -> Self {
        Partition {
            batch,
            time_ranges,
            service_range: None,
        }
    }
}

pub type TimeRanges = Vec<(&'static str, i128, i128)>;

/// The pruning ranges of the windows `[start, start + size_ns)` for `start` in `first..=last`.
pub fn window_ranges(first: UnixNanos, last: UnixNanos, size_ns: u64) -> TimeRanges {
    let (s, e) = (first as i128, last as i128);
    let size = size_ns as i128;
    vec![("window_start", s, e), ("window_end", s + size, e + size)]
}

/// The window a row belongs to.
#[derive(Debug, Clone, Copy)]
pub struct RowWindow<'a> {
    /// The window spec as written in config (`10s`).
    pub label: &'a Arc<str>,
    pub size_ns: u64,
    pub start: UnixNanos,
    pub end: UnixNanos,
}

/// How one table's rows become record batches.
pub trait WindowRows: Send + Sync {
    /// A row as the operator emits it.
    type Row;
    /// The row's series (rows of a window are kept and built in this order).
    type Series: Ord + Clone + Send;
    /// What the table keeps of a row until it is sealed.
    type Values: Send;
    type Part: StoredPart;

    fn schema(&self) -> SchemaRef;
    fn window(row: &Self::Row) -> RowWindow<'_>;
    fn series(row: &Self::Row) -> &Self::Series;
    fn values(row: &Self::Row) -> Self::Values;
    /// The batch of one window's rows, sorted by series.
    fn build(
        &self,
        label: &Arc<str>,
        size_ns: u64,
        start: UnixNanos,
        rows: &[(&Self::Series, &Self::Values)],
        is_final: bool,
    ) -> Self::Part;
}

/// Bounds of a windowed table.
#[derive(Debug, Clone, Copy)]
pub struct WindowBounds {
    /// No update can arrive this long after a window's end (the pipeline's allowed lateness).
    pub lateness_ns: u64,
    /// Windows older than this (behind the newest) are dropped.
    pub retention_ns: u64,
    /// Sealed windows beyond this many bytes are dropped oldest first.
    pub max_bytes: usize,
}

impl<P: StoredPart> Weighed for Sealed<P> {
    fn weight(&self) -> usize {
        self.part.partition().bytes()
    }
}

/// A sealed window's batch, with what [`WindowedTable::windows`] reports of it.
#[derive(Debug, Clone)]
struct Sealed<P> {
    part: P,
    label: Arc<str>,
    version: u64,
}

/// One final window of a table as [`WindowedTable::windows`] lists it.
#[derive(Debug, Clone)]
pub struct WindowVersion {
    /// The window spec as written in config (`10s`).
    pub label: Arc<str>,
    pub size_ns: u64,
    pub start: UnixNanos,
    /// Rows (series) the window holds.
    pub rows: usize,
    /// The table's change sequence number when the window's rows last changed: a late
    /// re-emission that restates the window gives it a new one. Numbers only grow while the
    /// process runs (they restart with it), so a reader compares them for equality.
    pub version: u64,
    /// No late update can reach the window any more.
    pub sealed: bool,
}

/// A final window that may still take late re-emissions.
struct OpenWindow<R: WindowRows> {
    label: Arc<str>,
    size_ns: u64,
    start: UnixNanos,
    rows: BTreeMap<R::Series, R::Values>,
    cached: Option<R::Part>,
    /// The change sequence number of the window's last change.
    version: u64,
}

type WindowKey = (u64, UnixNanos);

struct State<R: WindowRows> {
    /// Final windows by (window size, start).
    open: BTreeMap<WindowKey, OpenWindow<R>>,
    /// Sealed windows: only their batch remains.
    sealed: Retained<WindowKey, Sealed<R::Part>>,
    /// Provisional rows per window size.
    provisional: HashMap<u64, R::Part>,
    /// The newest final window end per window size (the newest overall is their maximum:
    /// retention runs on it). A window is sealed only by its own spec's progress: the
    /// operators emit one spec after another in a watermark step, so a newer primary window
    /// may arrive just before a late restatement of a rollup window that the same step then
    /// purges (docs/design.md, "Tables").
    newest_end: HashMap<u64, UnixNanos>,
    /// Change sequence number: grows by one with every batch of final rows.
    version: u64,
}

/// A live table of windows, each holding one row per series.
pub struct WindowedTable<R: WindowRows> {
    rows: R,
    bounds: WindowBounds,
    state: Mutex<State<R>>,
}

impl<R: WindowRows> std::fmt::Debug for WindowedTable<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowedTable")
            .field("bounds", &self.bounds)
            .finish_non_exhaustive()
    }
}

impl<R: WindowRows> WindowedTable<R> {
    pub fn new(rows: R, bounds: WindowBounds) -> Self {
        WindowedTable {
            rows,
            bounds,
            state: Mutex::new(State {
                open: BTreeMap::new(),
                sealed: Retained::default(),
                provisional: HashMap::new(),
                newest_end: HashMap::new(),
                version: 0,
            }),
        }
    }

    /// How this table builds its batches.
    pub fn rows(&self) -> &R {
        &self.rows
    }

    /// Final windows held (sealed or not).
    pub fn window_count(&self) -> usize {
        self.state
            .lock()
            .map(|s| s.open.len() + s.sealed.len())
            .unwrap_or(0)
    }

    /// Bytes of sealed windows.
    pub fn sealed_bytes(&self) -> usize {
        self.state.lock().map(|s| s.sealed.weight()).unwrap_or(0)
    }

    fn build_window(&self, w: &OpenWindow<R>) -> R::Part {
        let rows: Vec<(&R::Series, &R::Values)> = w.rows.iter().collect();
        self.rows.build(&w.label, w.size_ns, w.start, &rows, true)
    }

    /// Final rows (first emissions and late re-emissions).
    pub fn on_final(&self, rows: &[R::Row]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        // Windows that just became final leave the provisional snapshot at once, so a query
        // never sees one window both as final and as provisional rows.
        let mut closed: HashMap<u64, UnixNanos> = HashMap::new();
        for r in rows {
            let w = R::window(r);
            let e = closed.entry(w.size_ns).or_insert(w.start);
            *e = (*e).max(w.start);
        }
        for (size, through) in closed {
            if let Some(p) = st.provisional.get_mut(&size) {
                drop_windows_through(p, through);
            }
        }
        st.version += 1;
        let version = st.version;
        for r in rows {
            let w = R::window(r);
            let newest = st.newest_end.entry(w.size_ns).or_insert(0);
            *newest = (*newest).max(w.end);
            let key = (w.size_ns, w.start);
            if st.sealed.contains(&key) {
                // Cannot happen within allowed lateness; keep what the table has.
                continue;
            }
            let open = st.open.entry(key).or_insert_with(|| OpenWindow {
                label: w.label.clone(),
                size_ns: w.size_ns,
                start: w.start,
                rows: BTreeMap::new(),
                cached: None,
                version,
            });
            open.rows.insert(R::series(r).clone(), R::values(r));
            open.cached = None;
            open.version = version;
        }
        self.maintain(&mut st);
    }

    /// Seals windows no late update can reach any more, then applies retention.
    fn maintain(&self, st: &mut State<R>) {
        let b = &self.bounds;
        let per_size = &st.newest_end;
        let newest = per_size.values().copied().max().unwrap_or(0);
        let ready: Vec<WindowKey> = st
            .open
            .iter()
            .filter(|(_, w)| {
                let own_size = per_size.get(&w.size_ns).copied().unwrap_or(0);
                w.start + w.size_ns + b.lateness_ns < own_size
            })
            .map(|(k, _)| *k)
            .collect();
        for k in ready {
            if let Some(w) = st.open.remove(&k) {
                let part = w.cached.clone().unwrap_or_else(|| self.build_window(&w));
                let sealed = Sealed {
                    part,
                    label: w.label.clone(),
                    version: w.version,
                };
                st.sealed.insert(k, w.start, w.start + w.size_ns, sealed);
            }
        }
        st.sealed
            .expire(newest.saturating_sub(b.retention_ns), b.max_bytes);
    }

    /// The current provisional rows of one window spec's open windows (replacing earlier ones).
    pub fn on_provisional(&self, window_size_ns: u64, rows: &[R::Row]) {
        let mut sorted: Vec<&R::Row> = rows.iter().collect();
        sorted.sort_by(|a, b| {
            (R::window(a).start, R::series(a)).cmp(&(R::window(b).start, R::series(b)))
        });
        let values: Vec<(R::Values, &R::Row)> = sorted.iter().map(|r| (R::values(r), *r)).collect();
        // One partition per open window of this spec, merged into one batch.
        let mut parts = Vec::new();
        let mut i = 0;
        while i < values.len() {
            let w = R::window(values[i].1);
            let j = values[i..]
                .iter()
                .position(|(_, r)| R::window(r).start != w.start)
                .map_or(values.len(), |p| i + p);
            let chunk: Vec<(&R::Series, &R::Values)> = values[i..j]
                .iter()
                .map(|(v, r)| (R::series(r), v))
                .collect();
            parts.push(
                self.rows
                    .build(w.label, window_size_ns, w.start, &chunk, false),
            );
            i = j;
        }
        let batches: Vec<RecordBatch> = parts.iter().map(|p| p.partition().batch.clone()).collect();
        let Ok(batch) = arrow::compute::concat_batches(&self.rows.schema(), &batches) else {
            return;
        };
        let time_ranges = match (values.first(), values.last()) {
            (Some(a), Some(b)) => {
                window_ranges(R::window(a.1).start, R::window(b.1).start, window_size_ns)
            }
            _ => Vec::new(),
        };
        let part = R::Part::concat(parts, batch, time_ranges);
        if let Ok(mut st) = self.state.lock() {
            st.provisional.insert(window_size_ns, part);
        }
    }

    /// The final windows (sealed or not) that may match `filter` on `window_size` and the
    /// window times, in (size, start) order: what a reader polls to learn which windows changed
    /// since it last read them, without reading their rows.
    pub fn windows(&self, filter: &PruneFilter) -> Vec<WindowVersion> {
        let Ok(st) = self.state.lock() else {
            return Vec::new();
        };
        let wanted = |label: &str, size_ns: u64, start: UnixNanos| {
            filter.window_size_may_match(label)
                && filter.times_may_match(&window_ranges(start, start, size_ns))
        };
        let sealed = st
            .sealed
            .iter()
            .filter(|(&(size_ns, start), s)| wanted(&s.label, size_ns, start))
            .map(|(&(size_ns, start), s)| WindowVersion {
                label: s.label.clone(),
                size_ns,
                start,
                rows: s.part.partition().batch.num_rows(),
                version: s.version,
                sealed: true,
            });
        let open = st
            .open
            .iter()
            .filter(|(&(size_ns, start), w)| wanted(&w.label, size_ns, start))
            .map(|(&(size_ns, start), w)| WindowVersion {
                label: w.label.clone(),
                size_ns,
                start,
                rows: w.rows.len(),
                version: w.version,
                sealed: false,
            });
        let mut out: Vec<WindowVersion> = sealed.chain(open).collect();
        out.sort_by_key(|w| (w.size_ns, w.start));
        out
    }

    /// The batches that may hold rows matching `filter`: sealed, final, provisional.
    pub fn snapshot(&self, filter: &PruneFilter) -> Vec<RecordBatch> {
        let Ok(mut st) = self.state.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for p in st.sealed.values() {
            p.part.select(filter, &mut out);
        }
        let keys: Vec<WindowKey> = st.open.keys().copied().collect();
        for k in keys {
            let Some(w) = st.open.get(&k) else {
                continue;
            };
            let p = match &w.cached {
                Some(p) => p.clone(),
                None => {
                    let p = self.build_window(w);
                    if let Some(w) = st.open.get_mut(&k) {
                        w.cached = Some(p.clone());
                    }
                    p
                }
            };
            p.select(filter, &mut out);
        }
        for p in st.provisional.values() {
            p.select(filter, &mut out);
        }
        out
    }
}

/// Removes the rows of windows starting at or before `through` from a provisional partition
/// (its rows are sorted by window start, column 1).
fn drop_windows_through<P: StoredPart>(p: &mut P, through: UnixNanos) {
    use arrow::array::{Array, BooleanArray, TimestampMillisecondArray};
    let through_ms = (through / 1_000_000) as i64;
    let part = p.partition_mut();
    let Some(starts) = part
        .batch
        .column(1)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
    else {
        return;
    };
    let n = starts.len();
    // Rows are sorted by window start: the closed windows are a prefix.
    let dropped = (0..n)
        .position(|i| starts.value(i) > through_ms)
        .unwrap_or(n);
    if dropped == 0 {
        return;
    }
    if (dropped..n).all(|i| starts.value(i) > through_ms) {
        part.batch = part.batch.slice(dropped, n - dropped);
        p.rows_dropped(Some(dropped));
        return;
    }
    let keep: BooleanArray = (0..n).map(|i| Some(starts.value(i) > through_ms)).collect();
    if let Ok(b) = arrow::compute::filter_record_batch(&part.batch, &keep) {
        part.batch = b;
        p.rows_dropped(None);
    }
}

#[cfg(test)]
#[path = "window_store_tests.rs"]
mod tests;
