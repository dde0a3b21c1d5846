//! The `red` table: final RED windows (kept for `retention`, capped in bytes) plus the
//! provisional rows of the windows still open.
//!
//! A window's rows can change until `allowed_lateness` after its end (late re-emissions replace
//! a series' row), so an open-for-updates window keeps its rows and rebuilds its record batch on
//! demand; once no update can come it is sealed: only the batch is kept.
//!
//! Pruning: a window's batch holds one window spec (`window_size`) and its rows sorted by
//! series, i.e. by service first, so besides the time ranges every batch knows its
//! `window_size` and is indexed in chunks of about [`CHUNK_ROWS`] rows with their service range:
//! `window_size = '1m'` skips every 10 s batch and `service_name = 'x'` (or `IN (…)`) scans only
//! the chunks that can hold `x` (zero-copy slices of the batch).
//!
//! Bytes: a sealed batch is built with exact buffer capacities (value lengths are summed first),
//! so `sealed_bytes` (what `sql.max_table_bytes` caps) is the memory the batches hold.

use crate::schema;
use crate::table::{Partition, PartitionSource, PruneFilter};
use crate::window_store::{
    window_ranges, DimsColumn, Float64Columns, RowWindow, StoredPart, TimeRanges, WindowBounds,
    WindowColumns, WindowRows, WindowedTable, OVERFLOW_KEY,
};
use arrow::array::{ArrayRef, BinaryBuilder, StringBuilder};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use redwatch_engine::model::UnixNanos;
use redwatch_operators::red::{RedRow, RedSink, SeriesKey};
use std::sync::Arc;

/// Rows per service-pruning chunk (a chunk ends at the first service change past this many).
pub const CHUNK_ROWS: usize = 1024;

/// Rows `offset..offset + len` of a batch, holding services `first..=last`.
#[derive(Debug, Clone)]
struct Chunk {
    offset: usize,
    len: usize,
    first: Arc<str>,
    last: Arc<str>,
}

/// A batch of the `red` table with what pruning needs.
#[derive(Debug, Clone)]
pub struct RedPartition {
    part: Partition,
    window_size: Arc<str>,
    /// Service-ordered chunks covering the batch (empty: no index, scan it whole).
    chunks: Arc<[Chunk]>,
}

impl StoredPart for RedPartition {
    fn partition(&self) -> &Partition {
        &self.part
    }

    fn partition_mut(&mut self) -> &mut Partition {
        &mut self.part
    }

    /// The windows' chunks follow each other in the merged batch.
    fn concat(parts: Vec<Self>, batch: RecordBatch, time_ranges: TimeRanges) -> Self {
        let mut chunks = Vec::new();
        let mut offset = 0;
        for p in &parts {
            chunks.extend(p.chunks.iter().map(|c| Chunk {
                offset: offset + c.offset,
                ..c.clone()
            }));
            offset += p.part.batch.num_rows();
        }
        RedPartition {
            part: Partition {
                batch,
                time_ranges,
                service_range: None,
            },
            window_size: parts
                .first()
                .map_or_else(|| Arc::from(""), |p| p.window_size.clone()),
            chunks: chunks.into(),
        }
    }

    fn rows_dropped(&mut self, prefix: Option<usize>) {
        self.chunks = match prefix {
            Some(dropped) => self
                .chunks
                .iter()
                .filter(|c| c.offset >= dropped)
                .map(|c| Chunk {
                    offset: c.offset - dropped,
                    ..c.clone()
                })
                .collect(),
            None => Arc::from([]),
        };
    }

    /// The parts of the batch that may match `filter` (zero-copy slices), appended to `out`.
    fn select(&self, filter: &PruneFilter, out: &mut Vec<RecordBatch>) {
        if self.part.batch.num_rows() == 0
            || !filter.may_match(&self.part)
            || !filter.window_size_may_match(&self.window_size)
        {
            return;
        }
        if filter.services.is_none() || self.chunks.is_empty() {
            out.push(self.part.batch.clone());
            return;
        }
        // Adjacent matching chunks become one slice.
        let mut run: Option<(usize, usize)> = None;
        for c in self.chunks.iter() {
            if filter.services_may_match(&c.first, &c.last) {
                run = match run {
                    Some((start, end)) if end == c.offset => Some((start, c.offset + c.len)),
                    Some((start, end)) => {
                        out.push(self.part.batch.slice(start, end - start));
                        Some((c.offset, c.offset + c.len))
                    }
                    None => Some((c.offset, c.offset + c.len)),
                };
            }
        }
        if let Some((start, end)) = run {
            out.push(self.part.batch.slice(start, end - start));
        }
    }
}

/// Splits rows sorted by series (service first) into chunks of about `CHUNK_ROWS`.
fn chunks_of(rows: &[(&Arc<SeriesKey>, &RowValues)]) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let mut end = (start + CHUNK_ROWS).min(rows.len());
        // Keep a service in one chunk.
        while end < rows.len() && rows[end].0.service_name == rows[end - 1].0.service_name {
            end += 1;
        }
        out.push(Chunk {
            offset: start,
            len: end - start,
            first: rows[start].0.service_name.clone(),
            last: rows[end - 1].0.service_name.clone(),
        });
        start = end;
    }
    out
}

/// The values of one row, computed once at emission.
#[derive(Debug, Clone)]
pub struct RowValues {
    calls: f64,
    errors: f64,
    min: Option<f64>,
    avg: Option<f64>,
    max: Option<f64>,
    q: [Option<f64>; 4],
    sketch: Vec<u8>,
}

impl RowValues {
    fn of(r: &RedRow) -> RowValues {
        let t = &r.total;
        let calls = t.total_calls();
        let has = calls > 0.0;
        RowValues {
            calls,
            errors: t.errors(),
            min: has.then_some(t.min_ms),
            avg: has.then(|| t.total_sum_ms() / calls),
            max: has.then_some(t.max_ms),
            q: [0.5, 0.9, 0.95, 0.99].map(|q| t.quantile_ms(q)),
            sketch: t.sketch.to_bytes(),
        }
    }
}

/// Bounds of the `red` table.
#[derive(Debug, Clone)]
pub struct RedTableSettings {
    /// Names of the configured dimensions (map keys of `dims`).
    pub dims: Vec<String>,
    /// No update can arrive this long after a window's end (the pipeline's allowed lateness).
    pub lateness_ns: u64,
    /// Windows older than this (behind the newest) are dropped.
    pub retention_ns: u64,
    /// Sealed windows beyond this many bytes are dropped oldest first.
    pub max_bytes: usize,
}

/// How RED rows become `red` batches.
#[derive(Debug)]
pub struct RedRows {
    /// Names of the configured dimensions (map keys of `dims`).
    dims: Vec<String>,
}

impl WindowRows for RedRows {
    type Row = RedRow;
    type Series = Arc<SeriesKey>;
    type Values = RowValues;
    type Part = RedPartition;

    fn schema(&self) -> SchemaRef {
        schema::RED.clone()
    }

    fn window(r: &RedRow) -> RowWindow<'_> {
        RowWindow {
            label: &r.window_size,
            size_ns: r.window_size_ns,
            start: r.start,
            end: r.end,
        }
    }

    fn series(r: &RedRow) -> &Arc<SeriesKey> {
        &r.series
    }

    fn values(r: &RedRow) -> RowValues {
        RowValues::of(r)
    }

    /// The record batch of one window's rows (sorted by series), every buffer allocated with
    /// its exact size so that the batch's memory size is what it holds.
    fn build(
        &self,
        label: &Arc<str>,
        size_ns: u64,
        start: UnixNanos,
        rows: &[(&Arc<SeriesKey>, &RowValues)],
        is_final: bool,
    ) -> RedPartition {
        let batch = self.batch(label, size_ns, start, rows, is_final);
        let service_range = match (rows.first(), rows.last()) {
            (Some(a), Some(b)) => {
                // Rows are sorted by SeriesKey, whose first field is the service name.
                Some((a.0.service_name.to_string(), b.0.service_name.to_string()))
            }
            _ => None,
        };
        RedPartition {
            part: Partition {
                batch,
                time_ranges: window_ranges(start, start, size_ns),
                service_range,
            },
            window_size: label.clone(),
            chunks: chunks_of(rows).into(),
        }
    }
}

fn kind_of(k: &SeriesKey) -> &'static str {
    if k.overflow {
        ""
    } else {
        k.kind.as_label()
    }
}

impl RedRows {
    /// Value bytes of the string and binary columns, so builders get exact capacities:
    /// (service, span, kind, dim keys, dim values, sketch) and the map's entry count.
    fn lengths(&self, rows: &[(&Arc<SeriesKey>, &RowValues)]) -> ([usize; 6], usize) {
        let mut lens = [0usize; 6];
        let mut entries = 0;
        for (k, v) in rows {
            lens[0] += k.service_name.len();
            lens[1] += k.span_name.len();
            lens[2] += kind_of(k).len();
            for (name, val) in self.dims.iter().zip(k.dims.iter()) {
                lens[3] += name.len();
                lens[4] += val.len();
                entries += 1;
            }
            if k.overflow {
                lens[3] += OVERFLOW_KEY.len();
                lens[4] += "true".len();
                entries += 1;
            }
            lens[5] += v.sketch.len();
        }
        (lens, entries)
    }

    fn batch(
        &self,
        label: &Arc<str>,
        size_ns: u64,
        start: UnixNanos,
        rows: &[(&Arc<SeriesKey>, &RowValues)],
        is_final: bool,
    ) -> RecordBatch {
        let n = rows.len();
        let (lens, entries) = self.lengths(rows);
        let mut window = WindowColumns::new(n, n * label.len(), start, size_ns, is_final);
        let mut service = StringBuilder::with_capacity(n, lens[0]);
        let mut span = StringBuilder::with_capacity(n, lens[1]);
        let mut kind = StringBuilder::with_capacity(n, lens[2]);
        let mut dims = DimsColumn::with_capacity(n, entries, lens[3], lens[4]);
        let mut f64s = Float64Columns::new(11, n);
        let mut sketch = BinaryBuilder::with_capacity(n, lens[5]);
        let secs = size_ns as f64 / 1e9;
        for (k, v) in rows {
            window.append(label);
            service.append_value(&*k.service_name);
            span.append_value(&*k.span_name);
            kind.append_value(kind_of(k));
            let pairs = self.dims.iter().zip(k.dims.iter());
            dims.append(pairs.map(|(name, val)| (name.as_str(), &**val)), k.overflow);
            let ratio = if v.calls > 0.0 {
                v.errors / v.calls
            } else {
                0.0
            };
            let vals = [
                Some(v.calls),
                Some(v.errors),
                Some(ratio),
                Some(v.calls / secs),
                v.min,
                v.avg,
                v.max,
                v.q[0],
                v.q[1],
                v.q[2],
                v.q[3],
            ];
            f64s.append(vals);
            sketch.append_value(&v.sketch);
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(service.finish()),
            Arc::new(span.finish()),
            Arc::new(kind.finish()),
            dims.finish(),
        ];
        f64s.finish_into(&mut cols);
        cols.push(Arc::new(sketch.finish()));
        window.finish(&schema::RED, cols)
    }
}

/// The `red` table, fed as a [`RedSink`].
#[derive(Debug)]
pub struct RedTable {
    store: WindowedTable<RedRows>,
}

impl RedTable {
    pub fn new(settings: RedTableSettings) -> Arc<Self> {
        let bounds = WindowBounds {
            lateness_ns: settings.lateness_ns,
            retention_ns: settings.retention_ns,
            max_bytes: settings.max_bytes,
        };
        let rows = RedRows {
            dims: settings.dims,
        };
        Arc::new(RedTable {
            store: WindowedTable::new(rows, bounds),
        })
    }

    /// Final windows held (sealed or not).
    pub fn window_count(&self) -> usize {
        self.store.window_count()
    }

    /// Bytes of sealed windows.
    pub fn sealed_bytes(&self) -> usize {
        self.store.sealed_bytes()
    }

    /// The `red_windows` table over this table's windows.
    pub fn windows(self: &Arc<Self>) -> Arc<RedWindows> {
        Arc::new(RedWindows(self.clone()))
    }
}

/// The `red_windows` table: one row per final window of a [`RedTable`], built per query from
/// the store's window list (a few thousand rows at most: one per window within retention).
#[derive(Debug)]
pub struct RedWindows(Arc<RedTable>);

impl PartitionSource for RedWindows {
    /// `window_size` is applied exactly when the list is built.
    fn exact_columns(&self) -> &'static [&'static str] {
        &["window_size"]
    }

    fn snapshot(&self, filter: &PruneFilter) -> Vec<RecordBatch> {
        use arrow::array::{BooleanArray, Int64Array, TimestampMillisecondArray};
        let windows = self.0.store.windows(filter);
        if windows.is_empty() {
            return Vec::new();
        }
        let ms = |ns: u64| (ns / 1_000_000) as i64;
        let mut label = StringBuilder::with_capacity(windows.len(), windows.len() * 4);
        for w in &windows {
            label.append_value(&w.label);
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(label.finish()),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(windows.iter().map(|w| ms(w.start)))
                    .with_timezone("UTC"),
            ),
            Arc::new(
                TimestampMillisecondArray::from_iter_values(
                    windows.iter().map(|w| ms(w.start + w.size_ns)),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(Int64Array::from_iter_values(
                windows.iter().map(|w| w.rows as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                windows.iter().map(|w| w.version as i64),
            )),
            Arc::new(BooleanArray::from_iter(
                windows.iter().map(|w| Some(w.sealed)),
            )),
        ];
        RecordBatch::try_new(schema::RED_WINDOWS.clone(), cols)
            .map(|b| vec![b])
            .unwrap_or_default()
    }
}

impl RedSink for RedTable {
    fn on_final(&self, rows: &[RedRow]) {
        self.store.on_final(rows);
    }

    fn on_provisional(&self, window_size_ns: u64, rows: &[RedRow]) {
        self.store.on_provisional(window_size_ns, rows);
    }
}

impl PartitionSource for RedTable {
    /// Every partition holds one window spec (`RedPartition::select` checks it).
    fn exact_columns(&self) -> &'static [&'static str] {
        &["window_size"]
    }

    fn snapshot(&self, filter: &PruneFilter) -> Vec<RecordBatch> {
        self.store.snapshot(filter)
    }
}

#[cfg(test)]
#[path = "red_tests.rs"]
mod tests;
