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
use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float64Builder, MapBuilder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::record_batch::RecordBatch;
use redwatch_engine::model::UnixNanos;
use redwatch_operators::red::{RedRow, RedSink, SeriesKey};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

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
struct RedPartition {
    part: Partition,
    window_size: Arc<str>,
    /// Service-ordered chunks covering the batch (empty: no index, scan it whole).
    chunks: Arc<[Chunk]>,
}

impl RedPartition {
    fn bytes(&self) -> usize {
        self.part.bytes()
    }

    fn num_rows(&self) -> usize {
        self.part.batch.num_rows()
    }

    /// The parts of the batch that may match `filter` (zero-copy slices), appended to `out`.
    fn select(&self, filter: &PruneFilter, out: &mut Vec<RecordBatch>) {
        if self.num_rows() == 0
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
fn chunks_of(rows: &[(&SeriesKey, &RowValues)], base: usize, out: &mut Vec<Chunk>) {
    let mut start = 0;
    while start < rows.len() {
        let mut end = (start + CHUNK_ROWS).min(rows.len());
        // Keep a service in one chunk.
        while end < rows.len() && rows[end].0.service_name == rows[end - 1].0.service_name {
            end += 1;
        }
        out.push(Chunk {
            offset: base + start,
            len: end - start,
            first: rows[start].0.service_name.clone(),
            last: rows[end - 1].0.service_name.clone(),
        });
        start = end;
    }
}

/// The values of one row, computed once at emission.
#[derive(Debug, Clone)]
struct RowValues {
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

#[derive(Debug)]
struct Window {
    label: Arc<str>,
    size_ns: u64,
    start: UnixNanos,
    rows: BTreeMap<Arc<SeriesKey>, RowValues>,
    cached: Option<RedPartition>,
}

#[derive(Debug, Default)]
struct State {
    /// Final windows by (window size, start).
    windows: BTreeMap<(u64, UnixNanos), Window>,
    /// Sealed windows: only their batch remains.
    sealed: BTreeMap<(u64, UnixNanos), RedPartition>,
    sealed_bytes: usize,
    /// Provisional rows per window size.
    provisional: HashMap<u64, RedPartition>,
    newest_end: UnixNanos,
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

/// The `red` table, fed as a [`RedSink`].
#[derive(Debug)]
pub struct RedTable {
    settings: RedTableSettings,
    state: Mutex<State>,
}

impl RedTable {
    pub fn new(settings: RedTableSettings) -> Arc<Self> {
        Arc::new(RedTable {
            settings,
            state: Mutex::new(State::default()),
        })
    }

    /// Final windows held (sealed or not).
    pub fn window_count(&self) -> usize {
        self.state
            .lock()
            .map(|s| s.windows.len() + s.sealed.len())
            .unwrap_or(0)
    }

    /// Bytes of sealed windows.
    pub fn sealed_bytes(&self) -> usize {
        self.state.lock().map(|s| s.sealed_bytes).unwrap_or(0)
    }

    /// The record batch of one window's rows (sorted by series), every buffer allocated with
    /// its exact size so that the batch's memory size is what it holds.
    fn build(
        &self,
        label: &Arc<str>,
        size_ns: u64,
        start: UnixNanos,
        rows: &[(&SeriesKey, &RowValues)],
        is_final: bool,
    ) -> RedPartition {
        let n = rows.len();
        let kind_of = |k: &SeriesKey| if k.overflow { "" } else { k.kind.as_label() };
        let mut lens = [0usize; 6]; // service, span, kind, dim keys, dim values, sketch
        let mut entries = 0;
        for (k, v) in rows {
            lens[0] += k.service_name.len();
            lens[1] += k.span_name.len();
            lens[2] += kind_of(k).len();
            for (name, val) in self.settings.dims.iter().zip(k.dims.iter()) {
                lens[3] += name.len();
                lens[4] += val.len();
                entries += 1;
            }
            if k.overflow {
                lens[3] += "otel_metric_overflow".len();
                lens[4] += "true".len();
                entries += 1;
            }
            lens[5] += v.sketch.len();
        }
        let mut window_size = StringBuilder::with_capacity(n, n * label.len());
        let mut ws = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut we = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut service = StringBuilder::with_capacity(n, lens[0]);
        let mut span = StringBuilder::with_capacity(n, lens[1]);
        let mut kind = StringBuilder::with_capacity(n, lens[2]);
        let mut dims = MapBuilder::with_capacity(
            None,
            StringBuilder::with_capacity(entries, lens[3]),
            StringBuilder::with_capacity(entries, lens[4]),
            n,
        );
        let mut f64s: Vec<Float64Builder> =
            (0..11).map(|_| Float64Builder::with_capacity(n)).collect();
        let mut sketch = BinaryBuilder::with_capacity(n, lens[5]);
        let mut fin = BooleanBuilder::with_capacity(n);
        let secs = size_ns as f64 / 1e9;
        let start_ms = (start / 1_000_000) as i64;
        let end_ms = ((start + size_ns) / 1_000_000) as i64;
        for (k, v) in rows {
            window_size.append_value(&**label);
            ws.append_value(start_ms);
            we.append_value(end_ms);
            service.append_value(&*k.service_name);
            span.append_value(&*k.span_name);
            kind.append_value(kind_of(k));
            for (name, val) in self.settings.dims.iter().zip(k.dims.iter()) {
                dims.keys().append_value(name);
                dims.values().append_value(&**val);
            }
            if k.overflow {
                dims.keys().append_value("otel_metric_overflow");
                dims.values().append_value("true");
            }
            let _ = dims.append(true);
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
            for (b, x) in f64s.iter_mut().zip(vals) {
                b.append_option(x);
            }
            sketch.append_value(&v.sketch);
            fin.append_value(is_final);
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(window_size.finish()),
            Arc::new(ws.finish()),
            Arc::new(we.finish()),
            Arc::new(service.finish()),
            Arc::new(span.finish()),
            Arc::new(kind.finish()),
            Arc::new(dims.finish()),
        ];
        cols.extend(
            f64s.into_iter()
                .map(|mut b| Arc::new(b.finish()) as ArrayRef),
        );
        cols.push(Arc::new(sketch.finish()));
        cols.push(Arc::new(fin.finish()));
        let batch = RecordBatch::try_new(schema::RED.clone(), cols)
            .unwrap_or_else(|_| RecordBatch::new_empty(schema::RED.clone()));
        let service_range = match (rows.first(), rows.last()) {
            (Some(a), Some(b)) => {
                // Rows are sorted by SeriesKey, whose first field is the service name.
                Some((a.0.service_name.to_string(), b.0.service_name.to_string()))
            }
            _ => None,
        };
        let s = start as i128;
        let e = (start + size_ns) as i128;
        let mut chunks = Vec::new();
        chunks_of(rows, 0, &mut chunks);
        RedPartition {
            part: Partition {
                batch,
                time_ranges: vec![("window_start", s, s), ("window_end", e, e)],
                service_range,
            },
            window_size: label.clone(),
            chunks: chunks.into(),
        }
    }

    fn build_window(&self, w: &Window) -> RedPartition {
        let rows: Vec<(&SeriesKey, &RowValues)> = w.rows.iter().map(|(k, v)| (&**k, v)).collect();
        self.build(&w.label, w.size_ns, w.start, &rows, true)
    }

    fn maintain(&self, st: &mut State) {
        let s = &self.settings;
        // Seal windows no late update can reach any more.
        let newest = st.newest_end;
        let ready: Vec<(u64, UnixNanos)> = st
            .windows
            .iter()
            .filter(|(_, w)| w.start + w.size_ns + s.lateness_ns < newest)
            .map(|(k, _)| *k)
            .collect();
        for k in ready {
            if let Some(w) = st.windows.remove(&k) {
                let p = w.cached.clone().unwrap_or_else(|| self.build_window(&w));
                st.sealed_bytes += p.bytes();
                st.sealed.insert(k, p);
            }
        }
        // Retention by age, then by bytes (oldest first).
        let horizon = newest.saturating_sub(s.retention_ns);
        let old: Vec<(u64, UnixNanos)> = st
            .sealed
            .keys()
            .filter(|(size, start)| start + size < horizon)
            .copied()
            .collect();
        for k in old {
            if let Some(p) = st.sealed.remove(&k) {
                st.sealed_bytes -= p.bytes();
            }
        }
        while st.sealed_bytes > s.max_bytes {
            let oldest = st.sealed.keys().min_by_key(|(_, start)| *start).copied();
            match oldest.and_then(|k| st.sealed.remove(&k)) {
                Some(p) => st.sealed_bytes -= p.bytes(),
                None => break,
            }
        }
    }
}

impl RedSink for RedTable {
    fn on_final(&self, rows: &[RedRow]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        // Windows that just became final leave the provisional snapshot at once, so a query
        // never sees one window both as final and as provisional rows.
        let mut closed: HashMap<u64, UnixNanos> = HashMap::new();
        for r in rows {
            let e = closed.entry(r.window_size_ns).or_insert(r.start);
            *e = (*e).max(r.start);
        }
        for (size, through) in closed {
            if let Some(p) = st.provisional.get_mut(&size) {
                drop_windows_through(p, through);
            }
        }
        for r in rows {
            st.newest_end = st.newest_end.max(r.end);
            let key = (r.window_size_ns, r.start);
            if st.sealed.contains_key(&key) {
                // Cannot happen within allowed lateness; keep what the table has.
                continue;
            }
            let w = st.windows.entry(key).or_insert_with(|| Window {
                label: r.window_size.clone(),
                size_ns: r.window_size_ns,
                start: r.start,
                rows: BTreeMap::new(),
                cached: None,
            });
            w.rows.insert(r.series.clone(), RowValues::of(r));
            w.cached = None;
        }
        self.maintain(&mut st);
    }

    fn on_provisional(&self, window_size_ns: u64, rows: &[RedRow]) {
        let mut sorted: Vec<&RedRow> = rows.iter().collect();
        sorted.sort_by(|a, b| (a.start, &a.series).cmp(&(b.start, &b.series)));
        // One partition per open window of this spec, merged into one batch.
        let values: Vec<(RowValues, &RedRow)> =
            sorted.iter().map(|r| (RowValues::of(r), *r)).collect();
        let mut batches = Vec::new();
        let mut chunks = Vec::new();
        let mut offset = 0;
        let mut label: Option<Arc<str>> = None;
        let mut ranges = (i128::MAX, i128::MIN);
        let mut i = 0;
        while i < values.len() {
            let start = values[i].1.start;
            let j = values[i..]
                .iter()
                .position(|(_, r)| r.start != start)
                .map_or(values.len(), |p| i + p);
            let chunk: Vec<(&SeriesKey, &RowValues)> =
                values[i..j].iter().map(|(v, r)| (&*r.series, v)).collect();
            let l = label.get_or_insert_with(|| values[i].1.window_size.clone());
            let p = self.build(l, window_size_ns, start, &chunk, false);
            ranges.0 = ranges.0.min(start as i128);
            ranges.1 = ranges.1.max(start as i128);
            chunks_of(&chunk, offset, &mut chunks);
            offset += chunk.len();
            batches.push(p.part.batch);
            i = j;
        }
        let batch = match arrow::compute::concat_batches(&schema::RED, &batches) {
            Ok(b) => b,
            Err(_) => return,
        };
        let part = RedPartition {
            part: Partition {
                batch,
                time_ranges: if values.is_empty() {
                    Vec::new()
                } else {
                    vec![
                        ("window_start", ranges.0, ranges.1),
                        (
                            "window_end",
                            ranges.0 + window_size_ns as i128,
                            ranges.1 + window_size_ns as i128,
                        ),
                    ]
                },
                service_range: None,
            },
            window_size: label.unwrap_or_else(|| Arc::from("")),
            chunks: chunks.into(),
        };
        if let Ok(mut st) = self.state.lock() {
            st.provisional.insert(window_size_ns, part);
        }
    }
}

/// Removes the rows of windows starting at or before `through` from a provisional partition.
fn drop_windows_through(p: &mut RedPartition, through: UnixNanos) {
    use arrow::array::{Array, BooleanArray, TimestampMillisecondArray};
    let through_ms = (through / 1_000_000) as i64;
    let Some(starts) = p
        .part
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
        p.part.batch = p.part.batch.slice(dropped, n - dropped);
        p.chunks = p
            .chunks
            .iter()
            .filter(|c| c.offset >= dropped)
            .map(|c| Chunk {
                offset: c.offset - dropped,
                ..c.clone()
            })
            .collect();
        return;
    }
    let keep: BooleanArray = (0..n).map(|i| Some(starts.value(i) > through_ms)).collect();
    if let Ok(b) = arrow::compute::filter_record_batch(&p.part.batch, &keep) {
        p.part.batch = b;
        p.chunks = Arc::from([]);
    }
}

impl PartitionSource for RedTable {
    /// Every partition holds one window spec (`RedPartition::select` checks it).
    fn exact_columns(&self) -> &'static [&'static str] {
        &["window_size"]
    }

    fn snapshot(&self, filter: &PruneFilter) -> Vec<RecordBatch> {
        let Ok(mut st) = self.state.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for p in st.sealed.values() {
            p.select(filter, &mut out);
        }
        let keys: Vec<(u64, UnixNanos)> = st.windows.keys().copied().collect();
        for k in keys {
            let Some(w) = st.windows.get(&k) else {
                continue;
            };
            let p = match &w.cached {
                Some(p) => p.clone(),
                None => {
                    let p = self.build_window(w);
                    if let Some(w) = st.windows.get_mut(&k) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use redwatch_engine::config::Config;
    use redwatch_engine::fixtures::{span_batch, SpanFixture};
    use redwatch_engine::model::SourceId;
    use redwatch_engine::telemetry::Registry;
    use redwatch_operators::red::RedOperator;

    #[test]
    fn a_window_is_never_both_final_and_provisional() {
        let table = RedTable::new(RedTableSettings {
            dims: vec![],
            lateness_ns: 5_000_000_000,
            retention_ns: u64::MAX,
            max_bytes: usize::MAX,
        });
        let mut cfg = Config::default();
        cfg.windows.rollups = vec![];
        let reg = Registry::new();
        let mut op = RedOperator::new(&cfg, vec![table.clone()], &reg);
        let t0 = 1_700_000_000_000_000_000u64;
        op.process_spans(
            &span_batch(SourceId(0), 0, &[SpanFixture::new("s", "x", t0 + 1, 1.0)]),
            t0,
        );
        op.publish_provisional();
        let rows = |t: &RedTable| -> usize {
            t.snapshot(&PruneFilter::default())
                .iter()
                .map(|b| b.num_rows())
                .sum()
        };
        assert_eq!(rows(&table), 1);
        op.advance(t0 + 20_000_000_000);
        assert_eq!(
            rows(&table),
            1,
            "the final row replaced the provisional one"
        );
    }
}
