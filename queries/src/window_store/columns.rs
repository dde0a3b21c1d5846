//! The columns every windowed table's batch of one window shares: `window_size`,
//! `window_start`, `window_end` first, nullable `DOUBLE` values, a `dims` map and `is_final`
//! last. A table builds its own columns between them.

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, MapBuilder, StringBuilder,
    TimestampMillisecondBuilder,
};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use redwatch_engine::model::UnixNanos;
use std::sync::Arc;

/// The map entry that marks the overflow series (every other dimension folded into it).
pub const OVERFLOW_KEY: &str = "otel_metric_overflow";

/// The `window_size`, `window_start`, `window_end` columns a windowed table's batch of one
/// window begins with, and the `is_final` column it ends with.
pub struct WindowColumns {
    label: StringBuilder,
    start: TimestampMillisecondBuilder,
    end: TimestampMillisecondBuilder,
    start_ms: i64,
    end_ms: i64,
    fin: BooleanBuilder,
    is_final: bool,
}

impl WindowColumns {
    /// For `rows` rows of window `[start, start + size_ns)`, `label_bytes` of labels in all.
    pub fn new(
        rows: usize,
        label_bytes: usize,
        start: UnixNanos,
        size_ns: u64,
        is_final: bool,
    ) -> Self {
        WindowColumns {
            label: StringBuilder::with_capacity(rows, label_bytes),
            start: TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC"),
            end: TimestampMillisecondBuilder::with_capacity(rows).with_timezone("UTC"),
            start_ms: (start / 1_000_000) as i64,
            end_ms: ((start + size_ns) / 1_000_000) as i64,
            fin: BooleanBuilder::with_capacity(rows),
            is_final,
        }
    }

    #[inline]
    pub fn append(&mut self, label: &str) {
        self.label.append_value(label);
        self.start.append_value(self.start_ms);
        self.end.append_value(self.end_ms);
        self.fin.append_value(self.is_final);
    }

    /// The batch: the window columns, the table's `columns`, then `is_final`. A batch that does
    /// not fit `schema` (a bug) is logged and replaced by an empty one.
    pub fn finish(mut self, schema: &SchemaRef, columns: Vec<ArrayRef>) -> RecordBatch {
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(columns.len() + 4);
        cols.push(Arc::new(self.label.finish()));
        cols.push(Arc::new(self.start.finish()));
        cols.push(Arc::new(self.end.finish()));
        cols.extend(columns);
        cols.push(Arc::new(self.fin.finish()));
        RecordBatch::try_new(schema.clone(), cols).unwrap_or_else(|e| {
            tracing::warn!("windowed table: cannot build a batch: {e}");
            RecordBatch::new_empty(schema.clone())
        })
    }
}

/// Nullable `DOUBLE` columns side by side.
pub struct Float64Columns(Vec<Float64Builder>);

impl Float64Columns {
    pub fn new(columns: usize, rows: usize) -> Self {
        Float64Columns(
            (0..columns)
                .map(|_| Float64Builder::with_capacity(rows))
                .collect(),
        )
    }

    /// One row: a value per column, in order.
    #[inline]
    pub fn append<const N: usize>(&mut self, values: [Option<f64>; N]) {
        for (b, x) in self.0.iter_mut().zip(values) {
            b.append_option(x);
        }
    }

    pub fn finish_into(self, cols: &mut Vec<ArrayRef>) {
        cols.extend(
            self.0
                .into_iter()
                .map(|mut b| Arc::new(b.finish()) as ArrayRef),
        );
    }
}

/// A series' dimensions as a `MAP<STRING, STRING>` column (`dims`, `attrs`): its (name, value)
/// pairs, and [`OVERFLOW_KEY`]` = true` on the overflow series.
pub struct DimsColumn(MapBuilder<StringBuilder, StringBuilder>);

impl Default for DimsColumn {
    fn default() -> Self {
        DimsColumn(MapBuilder::new(
            None,
            StringBuilder::new(),
            StringBuilder::new(),
        ))
    }
}

impl DimsColumn {
    /// For `rows` maps of `entries` entries in all, `key_bytes` and `value_bytes` long.
    pub fn with_capacity(
        rows: usize,
        entries: usize,
        key_bytes: usize,
        value_bytes: usize,
    ) -> Self {
        DimsColumn(MapBuilder::with_capacity(
            None,
            StringBuilder::with_capacity(entries, key_bytes),
            StringBuilder::with_capacity(entries, value_bytes),
            rows,
        ))
    }

    /// One row's map.
    #[inline]
    pub fn append<'a>(&mut self, pairs: impl Iterator<Item = (&'a str, &'a str)>, overflow: bool) {
        for (name, value) in pairs {
            self.0.keys().append_value(name);
            self.0.values().append_value(value);
        }
        if overflow {
            self.0.keys().append_value(OVERFLOW_KEY);
            self.0.values().append_value("true");
        }
        let _ = self.0.append(true);
    }

    pub fn finish(mut self) -> ArrayRef {
        Arc::new(self.0.finish())
    }
}
