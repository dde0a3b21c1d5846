//! The `red` table: final RED windows (kept for `retention`, capped in bytes) plus the
//! provisional rows of the windows still open.
//!
//! A window's rows can change until `allowed_lateness` after its end (late re-emissions replace
//! a series' row), so an open-for-updates window keeps its rows and rebuilds its record batch on
//! demand; once no update can come it is sealed: only the batch is kept.

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
    cached: Option<Partition>,
}

#[derive(Debug, Default)]
struct State {
    /// Final windows by (window size, start).
    windows: BTreeMap<(u64, UnixNanos), Window>,
    /// Sealed windows: only their batch remains.
    sealed: BTreeMap<(u64, UnixNanos), Partition>,
    sealed_bytes: usize,
    /// Provisional rows per window size.
    provisional: HashMap<u64, Partition>,
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

    fn build(
        &self,
        label: &str,
        size_ns: u64,
        start: UnixNanos,
        rows: &[(&SeriesKey, &RowValues)],
        is_final: bool,
    ) -> Partition {
        let n = rows.len();
        let mut window_size = StringBuilder::with_capacity(n, n * 4);
        let mut ws = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut we = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut service = StringBuilder::with_capacity(n, n * 16);
        let mut span = StringBuilder::with_capacity(n, n * 24);
        let mut kind = StringBuilder::with_capacity(n, n * 16);
        let mut dims = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        let mut f64s: Vec<Float64Builder> =
            (0..11).map(|_| Float64Builder::with_capacity(n)).collect();
        let mut sketch = BinaryBuilder::with_capacity(n, n * 300);
        let mut fin = BooleanBuilder::with_capacity(n);
        let secs = size_ns as f64 / 1e9;
        let start_ms = (start / 1_000_000) as i64;
        let end_ms = ((start + size_ns) / 1_000_000) as i64;
        for (k, v) in rows {
            window_size.append_value(label);
            ws.append_value(start_ms);
            we.append_value(end_ms);
            service.append_value(&*k.service_name);
            span.append_value(&*k.span_name);
            kind.append_value(if k.overflow { "" } else { k.kind.as_label() });
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
        Partition {
            batch,
            time_ranges: vec![("window_start", s, s), ("window_end", e, e)],
            service_range,
        }
    }

    fn build_window(&self, w: &Window) -> Partition {
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
            let label = values[i].1.window_size.clone();
            let p = self.build(&label, window_size_ns, start, &chunk, false);
            ranges.0 = ranges.0.min(start as i128);
            ranges.1 = ranges.1.max(start as i128);
            batches.push(p.batch);
            i = j;
        }
        let batch = match arrow::compute::concat_batches(&schema::RED, &batches) {
            Ok(b) => b,
            Err(_) => return,
        };
        let part = Partition {
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
        };
        if let Ok(mut st) = self.state.lock() {
            st.provisional.insert(window_size_ns, part);
        }
    }
}

/// Removes the rows of windows starting at or before `through` from a provisional partition.
fn drop_windows_through(p: &mut Partition, through: UnixNanos) {
    use arrow::array::{Array, BooleanArray, TimestampMillisecondArray};
    let through_ms = (through / 1_000_000) as i64;
    let Some(starts) = p
        .batch
        .column(1)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
    else {
        return;
    };
    if (0..starts.len()).all(|i| starts.value(i) > through_ms) {
        return;
    }
    let keep: BooleanArray = (0..starts.len())
        .map(|i| Some(starts.value(i) > through_ms))
        .collect();
    if let Ok(b) = arrow::compute::filter_record_batch(&p.batch, &keep) {
        p.batch = b;
    }
}

impl PartitionSource for RedTable {
    fn snapshot(&self, filter: &PruneFilter) -> Vec<RecordBatch> {
        let Ok(mut st) = self.state.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for p in st.sealed.values() {
            if filter.may_match(p) && p.batch.num_rows() > 0 {
                out.push(p.batch.clone());
            }
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
            if filter.may_match(&p) && p.batch.num_rows() > 0 {
                out.push(p.batch);
            }
        }
        for p in st.provisional.values() {
            if p.batch.num_rows() > 0 && filter.may_match(p) {
                out.push(p.batch.clone());
            }
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
