//! The `metric_points` table: final metric windows (kept for `retention`, capped in bytes) plus
//! the provisional rows of the windows still open. Same lifecycle as the `red` table: a window
//! takes late re-emissions (a series' row is replaced) until `allowed_lateness` after its end,
//! then it is sealed and only its record batch is kept.

use crate::schema;
use crate::table::{Partition, PartitionSource, PruneFilter};
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, ListBuilder, MapBuilder, StringBuilder,
    TimestampMillisecondBuilder, UInt64Builder,
};
use arrow::record_batch::RecordBatch;
use redwatch_engine::model::UnixNanos;
use redwatch_operators::metrics::{MetricAgg, MetricRow, MetricSeriesKey, MetricSink};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct Window {
    label: Arc<str>,
    size_ns: u64,
    start: UnixNanos,
    rows: BTreeMap<Arc<MetricSeriesKey>, MetricAgg>,
    cached: Option<Partition>,
}

#[derive(Debug, Default)]
struct State {
    windows: BTreeMap<(u64, UnixNanos), Window>,
    sealed: BTreeMap<(u64, UnixNanos), Partition>,
    sealed_bytes: usize,
    provisional: HashMap<u64, Partition>,
    newest_end: UnixNanos,
}

/// Bounds of the `metric_points` table.
#[derive(Debug, Clone)]
pub struct MetricPointsSettings {
    /// No update can arrive this long after a window's end (the pipeline's allowed lateness).
    pub lateness_ns: u64,
    /// Windows older than this (behind the newest) are dropped.
    pub retention_ns: u64,
    /// Sealed windows beyond this many bytes are dropped oldest first.
    pub max_bytes: usize,
}

impl Default for MetricPointsSettings {
    fn default() -> Self {
        MetricPointsSettings {
            lateness_ns: 30_000_000_000,
            retention_ns: redwatch_engine::config::DEFAULT_RETENTION.as_nanos() as u64,
            max_bytes: 256 << 20,
        }
    }
}

/// The `metric_points` table, fed as a [`MetricSink`].
#[derive(Debug, Default)]
pub struct MetricPointsTable {
    settings: MetricPointsSettings,
    state: Mutex<State>,
}

fn f64_list(b: &mut ListBuilder<Float64Builder>, v: Option<&[f64]>) {
    match v {
        Some(v) => {
            b.values().append_slice(v);
            b.append(true);
        }
        None => b.append(false),
    }
}

fn u64_list(b: &mut ListBuilder<UInt64Builder>, v: Option<&[u64]>) {
    match v {
        Some(v) => {
            b.values().append_slice(v);
            b.append(true);
        }
        None => b.append(false),
    }
}

impl MetricPointsTable {
    pub fn new(settings: MetricPointsSettings) -> Arc<Self> {
        Arc::new(MetricPointsTable {
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

    fn build(
        label: &str,
        size_ns: u64,
        start: UnixNanos,
        rows: &[(&MetricSeriesKey, &MetricAgg)],
        is_final: bool,
    ) -> Partition {
        let n = rows.len();
        let mut window_size = StringBuilder::with_capacity(n, n * 4);
        let mut ws = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut we = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut name = StringBuilder::with_capacity(n, n * 24);
        let mut mtype = StringBuilder::with_capacity(n, n * 8);
        let mut unit = StringBuilder::with_capacity(n, n * 2);
        let mut service = StringBuilder::with_capacity(n, n * 16);
        let mut attrs = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        let mut f64s: Vec<Float64Builder> =
            (0..6).map(|_| Float64Builder::with_capacity(n)).collect();
        let mut bounds = ListBuilder::new(Float64Builder::new());
        let mut counts = ListBuilder::new(UInt64Builder::new());
        let mut exp_scale = Int32Builder::with_capacity(n);
        let mut exp_zero = UInt64Builder::with_capacity(n);
        let mut exp_pos_off = Int32Builder::with_capacity(n);
        let mut exp_pos = ListBuilder::new(UInt64Builder::new());
        let mut exp_neg_off = Int32Builder::with_capacity(n);
        let mut exp_neg = ListBuilder::new(UInt64Builder::new());
        let mut quantiles = ListBuilder::new(Float64Builder::new());
        let mut qvalues = ListBuilder::new(Float64Builder::new());
        let mut fin = BooleanBuilder::with_capacity(n);
        let start_ms = (start / 1_000_000) as i64;
        let end_ms = ((start + size_ns) / 1_000_000) as i64;
        for (k, a) in rows {
            window_size.append_value(label);
            ws.append_value(start_ms);
            we.append_value(end_ms);
            name.append_value(&*k.name);
            mtype.append_value(k.kind.as_str());
            if k.overflow || k.unit.is_empty() {
                unit.append_null();
            } else {
                unit.append_value(&*k.unit);
            }
            service.append_option(k.service_name.as_deref());
            for (key, v) in k.attrs.iter() {
                attrs.keys().append_value(&**key);
                attrs.values().append_value(&**v);
            }
            if k.overflow {
                attrs.keys().append_value("otel_metric_overflow");
                attrs.values().append_value("true");
            }
            let _ = attrs.append(true);
            let has = a.count > 0.0;
            let summary = a.summary();
            let is_hist = a.histogram().is_some() || a.exp_histogram().is_some();
            let vals = [
                Some(a.count),
                (!a.sum_unknown && (has || summary.is_some())).then_some(a.sum),
                a.min_value(),
                a.max_value(),
                (a.last_time > 0 && !is_hist && summary.is_none()).then_some(a.last),
                a.avg(),
            ];
            for (b, x) in f64s.iter_mut().zip(vals) {
                b.append_option(x);
            }
            match a.histogram().filter(|h| !h.mixed && !h.counts.is_empty()) {
                Some(h) => {
                    f64_list(&mut bounds, h.bounds.as_deref());
                    u64_list(&mut counts, Some(&h.counts));
                }
                None => {
                    bounds.append(false);
                    counts.append(false);
                }
            }
            match a.exp_histogram() {
                Some(e) => {
                    exp_scale.append_value(e.scale);
                    exp_zero.append_value(e.zero_count);
                    exp_pos_off.append_value(e.positive.offset);
                    u64_list(&mut exp_pos, Some(&e.positive.counts));
                    exp_neg_off.append_value(e.negative.offset);
                    u64_list(&mut exp_neg, Some(&e.negative.counts));
                }
                None => {
                    exp_scale.append_null();
                    exp_zero.append_null();
                    exp_pos_off.append_null();
                    exp_pos.append(false);
                    exp_neg_off.append_null();
                    exp_neg.append(false);
                }
            }
            match summary {
                Some(s) => {
                    let q: Vec<f64> = s.quantiles.iter().map(|x| x.0).collect();
                    let v: Vec<f64> = s.quantiles.iter().map(|x| x.1).collect();
                    f64_list(&mut quantiles, Some(&q));
                    f64_list(&mut qvalues, Some(&v));
                }
                None => {
                    quantiles.append(false);
                    qvalues.append(false);
                }
            }
            fin.append_value(is_final);
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(window_size.finish()),
            Arc::new(ws.finish()),
            Arc::new(we.finish()),
            Arc::new(name.finish()),
            Arc::new(mtype.finish()),
            Arc::new(unit.finish()),
            Arc::new(service.finish()),
            Arc::new(attrs.finish()),
        ];
        cols.extend(
            f64s.into_iter()
                .map(|mut b| Arc::new(b.finish()) as ArrayRef),
        );
        cols.push(Arc::new(bounds.finish()));
        cols.push(Arc::new(counts.finish()));
        cols.push(Arc::new(exp_scale.finish()));
        cols.push(Arc::new(exp_zero.finish()));
        cols.push(Arc::new(exp_pos_off.finish()));
        cols.push(Arc::new(exp_pos.finish()));
        cols.push(Arc::new(exp_neg_off.finish()));
        cols.push(Arc::new(exp_neg.finish()));
        cols.push(Arc::new(quantiles.finish()));
        cols.push(Arc::new(qvalues.finish()));
        cols.push(Arc::new(fin.finish()));
        let batch = match RecordBatch::try_new(schema::METRIC_POINTS.clone(), cols) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("metric_points: cannot build a batch: {e}");
                RecordBatch::new_empty(schema::METRIC_POINTS.clone())
            }
        };
        let s = start as i128;
        let e = (start + size_ns) as i128;
        Partition {
            batch,
            time_ranges: vec![("window_start", s, s), ("window_end", e, e)],
            service_range: None,
        }
    }

    fn build_window(w: &Window) -> Partition {
        let rows: Vec<(&MetricSeriesKey, &MetricAgg)> =
            w.rows.iter().map(|(k, v)| (&**k, v)).collect();
        Self::build(&w.label, w.size_ns, w.start, &rows, true)
    }

    fn maintain(&self, st: &mut State) {
        let s = &self.settings;
        let newest = st.newest_end;
        let ready: Vec<(u64, UnixNanos)> = st
            .windows
            .iter()
            .filter(|(_, w)| w.start + w.size_ns + s.lateness_ns < newest)
            .map(|(k, _)| *k)
            .collect();
        for k in ready {
            if let Some(w) = st.windows.remove(&k) {
                let p = w.cached.clone().unwrap_or_else(|| Self::build_window(&w));
                st.sealed_bytes += p.bytes();
                st.sealed.insert(k, p);
            }
        }
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

impl MetricSink for MetricPointsTable {
    fn on_final(&self, rows: &[MetricRow]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        // Windows that just became final leave the provisional snapshot at once.
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
                continue;
            }
            let w = st.windows.entry(key).or_insert_with(|| Window {
                label: r.window_size.clone(),
                size_ns: r.window_size_ns,
                start: r.start,
                rows: BTreeMap::new(),
                cached: None,
            });
            w.rows.insert(r.series.clone(), r.total.clone());
            w.cached = None;
        }
        self.maintain(&mut st);
    }

    fn on_provisional(&self, window_size_ns: u64, rows: &[MetricRow]) {
        let mut sorted: Vec<&MetricRow> = rows.iter().collect();
        sorted.sort_by(|a, b| (a.start, &a.series).cmp(&(b.start, &b.series)));
        let mut batches = Vec::new();
        let mut ranges = (i128::MAX, i128::MIN);
        let mut i = 0;
        while i < sorted.len() {
            let start = sorted[i].start;
            let j = sorted[i..]
                .iter()
                .position(|r| r.start != start)
                .map_or(sorted.len(), |p| i + p);
            let chunk: Vec<(&MetricSeriesKey, &MetricAgg)> = sorted[i..j]
                .iter()
                .map(|r| (&*r.series, &r.total))
                .collect();
            let label = sorted[i].window_size.clone();
            let p = Self::build(&label, window_size_ns, start, &chunk, false);
            ranges.0 = ranges.0.min(start as i128);
            ranges.1 = ranges.1.max(start as i128);
            batches.push(p.batch);
            i = j;
        }
        let batch = match arrow::compute::concat_batches(&schema::METRIC_POINTS, &batches) {
            Ok(b) => b,
            Err(_) => return,
        };
        let part = Partition {
            batch,
            time_ranges: if sorted.is_empty() {
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

impl PartitionSource for MetricPointsTable {
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
                    let p = Self::build_window(w);
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
    use bytes::Bytes;
    use redwatch_engine::config::Config;
    use redwatch_engine::metric_model::{
        MetricBatch, MetricKind, PointSpec, Temporality, ValueSpec,
    };
    use redwatch_engine::model::SourceId;
    use redwatch_engine::telemetry::Registry;
    use redwatch_operators::metrics::MetricsOperator;

    #[test]
    fn final_rows_replace_provisional_ones_and_carry_every_column() {
        let table = MetricPointsTable::new(MetricPointsSettings::default());
        let mut cfg = Config::default();
        cfg.windows.rollups = vec![];
        let reg = Registry::new();
        let mut op = MetricsOperator::new(&cfg, vec![table.clone()], &reg);
        let t0 = 1_700_000_000_000_000_000u64;
        let mut b = MetricBatch::new(SourceId(0), Bytes::new());
        for (i, v) in [3.0, 5.0].into_iter().enumerate() {
            b.push_point(&PointSpec {
                service: Some("svc"),
                origin: 1,
                name: "queue.depth",
                unit: "1",
                kind: MetricKind::Gauge,
                temporality: Temporality::Unspecified,
                start: 0,
                time: t0 + 1 + i as u64,
                attrs: &[("q", "a")],
                value: ValueSpec::Number(v),
            })
            .unwrap();
        }
        op.process_metrics(&b, t0);
        op.publish_provisional();
        let rows =
            |t: &MetricPointsTable| -> Vec<RecordBatch> { t.snapshot(&PruneFilter::default()) };
        let snap = rows(&table);
        assert_eq!(snap.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        op.advance(t0 + 20_000_000_000);
        let snap = rows(&table);
        assert_eq!(snap.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
        let b = &snap[0];
        assert_eq!(b.num_columns(), schema::METRIC_POINTS.fields().len());
        let col = |n: &str| {
            b.column_by_name(n)
                .unwrap()
                .as_any()
                .downcast_ref::<arrow::array::Float64Array>()
                .unwrap()
                .value(0)
        };
        assert_eq!(
            (col("count"), col("sum"), col("last"), col("avg")),
            (2.0, 8.0, 5.0, 4.0)
        );
    }
}
