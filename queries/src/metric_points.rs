//! The `metric_points` table: final metric windows (kept for `retention`, capped in bytes) plus
//! the provisional rows of the windows still open. The lifecycle (late re-emissions replace a
//! series' row until `allowed_lateness` after the window's end, then only the sealed batch is
//! kept) is the windowed-table store's (`window_store.rs`); this module builds the batches.

use crate::schema;
use crate::table::{Partition, PartitionSource, PruneFilter};
use crate::window_store::{
    window_ranges, DimsColumn, Float64Columns, RowWindow, WindowBounds, WindowColumns, WindowRows,
    WindowedTable,
};
use arrow::array::{
    ArrayRef, Float64Builder, Int32Builder, ListBuilder, PrimitiveBuilder, StringBuilder,
    UInt64Builder,
};
use arrow::datatypes::{ArrowPrimitiveType, SchemaRef};
use arrow::record_batch::RecordBatch;
use redwatch_engine::model::UnixNanos;
use redwatch_operators::metrics::{MetricAgg, MetricRow, MetricSeriesKey, MetricSink, SummarySnap};
use std::sync::Arc;

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
            retention_ns: crate::config::DEFAULT_RETENTION.as_nanos() as u64,
            max_bytes: 256 << 20,
        }
    }
}

/// The `metric_points` table, fed as a [`MetricSink`].
#[derive(Debug)]
pub struct MetricPointsTable {
    store: WindowedTable<MetricRows>,
}

impl Default for MetricPointsTable {
    fn default() -> Self {
        MetricPointsTable::with(MetricPointsSettings::default())
    }
}

/// One row of a list column: `v`, or NULL.
fn list<T: ArrowPrimitiveType>(b: &mut ListBuilder<PrimitiveBuilder<T>>, v: Option<&[T::Native]>) {
    match v {
        Some(v) => {
            b.values().append_slice(v);
            b.append(true);
        }
        None => b.append(false),
    }
}

/// The columns of a point's shape: explicit and exponential histogram buckets, summary
/// quantiles.
struct ShapeColumns {
    bounds: ListBuilder<Float64Builder>,
    counts: ListBuilder<UInt64Builder>,
    exp_scale: Int32Builder,
    exp_zero: UInt64Builder,
    exp_pos_off: Int32Builder,
    exp_pos: ListBuilder<UInt64Builder>,
    exp_neg_off: Int32Builder,
    exp_neg: ListBuilder<UInt64Builder>,
    quantiles: ListBuilder<Float64Builder>,
    qvalues: ListBuilder<Float64Builder>,
}

impl ShapeColumns {
    fn with_capacity(n: usize) -> Self {
        ShapeColumns {
            bounds: ListBuilder::new(Float64Builder::new()),
            counts: ListBuilder::new(UInt64Builder::new()),
            exp_scale: Int32Builder::with_capacity(n),
            exp_zero: UInt64Builder::with_capacity(n),
            exp_pos_off: Int32Builder::with_capacity(n),
            exp_pos: ListBuilder::new(UInt64Builder::new()),
            exp_neg_off: Int32Builder::with_capacity(n),
            exp_neg: ListBuilder::new(UInt64Builder::new()),
            quantiles: ListBuilder::new(Float64Builder::new()),
            qvalues: ListBuilder::new(Float64Builder::new()),
        }
    }

    fn append(&mut self, a: &MetricAgg, summary: Option<&SummarySnap>) {
        match a.histogram().filter(|h| !h.mixed && !h.counts.is_empty()) {
            Some(h) => {
                list(&mut self.bounds, h.bounds.as_deref());
                list(&mut self.counts, Some(&h.counts));
            }
            None => {
                self.bounds.append(false);
                self.counts.append(false);
            }
        }
        match a.exp_histogram() {
            Some(e) => {
                self.exp_scale.append_value(e.scale);
                self.exp_zero.append_value(e.zero_count);
                self.exp_pos_off.append_value(e.positive.offset);
                list(&mut self.exp_pos, Some(&e.positive.counts));
                self.exp_neg_off.append_value(e.negative.offset);
                list(&mut self.exp_neg, Some(&e.negative.counts));
            }
            None => {
                self.exp_scale.append_null();
                self.exp_zero.append_null();
                self.exp_pos_off.append_null();
                self.exp_pos.append(false);
                self.exp_neg_off.append_null();
                self.exp_neg.append(false);
            }
        }
        match summary {
            Some(s) => {
                let q: Vec<f64> = s.quantiles.iter().map(|x| x.0).collect();
                let v: Vec<f64> = s.quantiles.iter().map(|x| x.1).collect();
                list(&mut self.quantiles, Some(&q));
                list(&mut self.qvalues, Some(&v));
            }
            None => {
                self.quantiles.append(false);
                self.qvalues.append(false);
            }
        }
    }

    fn finish(mut self, cols: &mut Vec<ArrayRef>) {
        cols.push(Arc::new(self.bounds.finish()));
        cols.push(Arc::new(self.counts.finish()));
        cols.push(Arc::new(self.exp_scale.finish()));
        cols.push(Arc::new(self.exp_zero.finish()));
        cols.push(Arc::new(self.exp_pos_off.finish()));
        cols.push(Arc::new(self.exp_pos.finish()));
        cols.push(Arc::new(self.exp_neg_off.finish()));
        cols.push(Arc::new(self.exp_neg.finish()));
        cols.push(Arc::new(self.quantiles.finish()));
        cols.push(Arc::new(self.qvalues.finish()));
    }
}

impl MetricPointsTable {
    fn with(s: MetricPointsSettings) -> Self {
        let bounds = WindowBounds {
            lateness_ns: s.lateness_ns,
            retention_ns: s.retention_ns,
            max_bytes: s.max_bytes,
        };
        MetricPointsTable {
            store: WindowedTable::new(MetricRows, bounds),
        }
    }

    pub fn new(settings: MetricPointsSettings) -> Arc<Self> {
        Arc::new(Self::with(settings))
    }

    /// Final windows held (sealed or not).
    pub fn window_count(&self) -> usize {
        self.store.window_count()
    }
}

/// How metric rows become `metric_points` batches.
#[derive(Debug)]
pub struct MetricRows;

impl WindowRows for MetricRows {
    type Row = MetricRow;
    type Series = Arc<MetricSeriesKey>;
    type Values = MetricAgg;
    type Part = Partition;

    fn schema(&self) -> SchemaRef {
        schema::METRIC_POINTS.clone()
    }

    fn window(r: &MetricRow) -> RowWindow<'_> {
        RowWindow {
            label: &r.window_size,
            size_ns: r.window_size_ns,
            start: r.start,
            end: r.end,
        }
    }

    fn series(r: &MetricRow) -> &Arc<MetricSeriesKey> {
        &r.series
    }

    fn values(r: &MetricRow) -> MetricAgg {
        r.total.clone()
    }

    fn build(
        &self,
        label: &Arc<str>,
        size_ns: u64,
        start: UnixNanos,
        rows: &[(&Arc<MetricSeriesKey>, &MetricAgg)],
        is_final: bool,
    ) -> Partition {
        let n = rows.len();
        let mut window = WindowColumns::new(n, n * 4, start, size_ns, is_final);
        let mut name = StringBuilder::with_capacity(n, n * 24);
        let mut mtype = StringBuilder::with_capacity(n, n * 8);
        let mut unit = StringBuilder::with_capacity(n, n * 2);
        let mut service = StringBuilder::with_capacity(n, n * 16);
        let mut attrs = DimsColumn::default();
        let mut f64s = Float64Columns::new(6, n);
        let mut shape = ShapeColumns::with_capacity(n);
        for (k, a) in rows {
            window.append(label);
            name.append_value(&*k.name);
            mtype.append_value(k.kind.as_str());
            if k.overflow || k.unit.is_empty() {
                unit.append_null();
            } else {
                unit.append_value(&*k.unit);
            }
            service.append_option(k.service_name.as_deref());
            attrs.append(k.attrs.iter().map(|(key, v)| (&**key, &**v)), k.overflow);
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
            f64s.append(vals);
            shape.append(a, summary);
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(name.finish()),
            Arc::new(mtype.finish()),
            Arc::new(unit.finish()),
            Arc::new(service.finish()),
            attrs.finish(),
        ];
        f64s.finish_into(&mut cols);
        shape.finish(&mut cols);
        Partition {
            batch: window.finish(&schema::METRIC_POINTS, cols),
            time_ranges: window_ranges(start, start, size_ns),
            service_range: None,
        }
    }
}

impl MetricSink for MetricPointsTable {
    fn on_final(&self, rows: &[MetricRow]) {
        self.store.on_final(rows);
    }

    fn on_provisional(&self, window_size_ns: u64, rows: &[MetricRow]) {
        self.store.on_provisional(window_size_ns, rows);
    }
}

impl PartitionSource for MetricPointsTable {
    fn snapshot(&self, filter: &PruneFilter) -> Vec<RecordBatch> {
        self.store.snapshot(filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use redwatch_engine::metric_model::{
        MetricBatch, MetricKind, PointSpec, Temporality, ValueSpec,
    };
    use redwatch_engine::model::SourceId;
    use redwatch_engine::telemetry::Registry;
    use redwatch_operators::layout::SpanSections;
    use redwatch_operators::metrics::MetricsOperator;

    #[test]
    fn final_rows_replace_provisional_ones_and_carry_every_column() {
        let table = MetricPointsTable::new(MetricPointsSettings::default());
        let mut cfg = SpanSections::default();
        cfg.windows.rollups = vec![];
        let reg = Registry::new();
        let mut op = MetricsOperator::new(&cfg.windows, &cfg.red, vec![table.clone()], &reg);
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
