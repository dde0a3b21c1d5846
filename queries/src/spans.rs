//! The `spans` table: recent raw spans, bounded by rows, age and an admission rate.
//!
//! Fed by an operator on the pipeline task. Every batch's ERROR spans are admitted first, up to
//! `per_second` a second of their own, then other spans up to `per_second` a second, so a
//! firehose (of errors too) cannot turn the table into a copy of the stream; what is not
//! admitted is still aggregated by RED.

use crate::anomalies::{Bounded, SignalTableSettings};
use crate::schema;
use crate::table::{Partition, PartitionSource, PruneFilter};
use arrow::array::{
    ArrayRef, Float64Builder, MapBuilder, StringBuilder, TimestampNanosecondBuilder,
};
use arrow::record_batch::RecordBatch;
use redwatch_engine::model::{SpanBatch, SpanRecord, StatusCode, UnixNanos};
use redwatch_engine::pipeline::{Batch, OpContext, Operator, StateStats};
use std::fmt::Write;
use std::sync::Arc;

/// Bounds of the `spans` table.
#[derive(Debug, Clone)]
pub struct SpansTableSettings {
    pub dims: Vec<String>,
    pub max_rows: usize,
    pub retention_ns: u64,
    pub per_second: usize,
}

/// The readable side of the table (bounded by the operator's settings).
#[derive(Debug, Default)]
pub struct SpansTable {
    stored: Bounded,
}

impl SpansTable {
    pub fn rows(&self) -> usize {
        self.stored.rows()
    }
}

impl PartitionSource for SpansTable {
    fn snapshot(&self, filter: &PruneFilter) -> Vec<RecordBatch> {
        self.stored.snapshot(filter)
    }
}

struct Builders {
    end: TimestampNanosecondBuilder,
    start: TimestampNanosecondBuilder,
    service: StringBuilder,
    name: StringBuilder,
    kind: StringBuilder,
    status: StringBuilder,
    duration: Float64Builder,
    weight: Float64Builder,
    trace: StringBuilder,
    span: StringBuilder,
    parent: StringBuilder,
    dims: MapBuilder<StringBuilder, StringBuilder>,
    rows: usize,
    min_end: UnixNanos,
    max_end: UnixNanos,
    services: Option<(String, String)>,
}

impl Builders {
    fn new() -> Self {
        Builders {
            end: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            start: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            service: StringBuilder::new(),
            name: StringBuilder::new(),
            kind: StringBuilder::new(),
            status: StringBuilder::new(),
            duration: Float64Builder::new(),
            weight: Float64Builder::new(),
            trace: StringBuilder::new(),
            span: StringBuilder::new(),
            parent: StringBuilder::new(),
            dims: MapBuilder::new(None, StringBuilder::new(), StringBuilder::new()),
            rows: 0,
            min_end: u64::MAX,
            max_end: 0,
            services: None,
        }
    }

    fn finish(&mut self) -> Option<Partition> {
        if self.rows == 0 {
            return None;
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.end.finish()),
            Arc::new(self.start.finish()),
            Arc::new(self.service.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.duration.finish()),
            Arc::new(self.weight.finish()),
            Arc::new(self.trace.finish()),
            Arc::new(self.span.finish()),
            Arc::new(self.parent.finish()),
            Arc::new(self.dims.finish()),
        ];
        let batch = RecordBatch::try_new(schema::SPANS.clone(), cols).ok()?;
        let p = Partition {
            batch,
            time_ranges: vec![("end_time", self.min_end as i128, self.max_end as i128)],
            service_range: self.services.take(),
        };
        self.rows = 0;
        self.min_end = u64::MAX;
        self.max_end = 0;
        Some(p)
    }
}

fn hex(out: &mut String, bytes: &[u8]) {
    out.clear();
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// The operator that fills a [`SpansTable`].
pub struct SpansTableOperator {
    table: Arc<SpansTable>,
    settings: SpansTableSettings,
    builders: Builders,
    second: u64,
    admitted_this_second: usize,
    errors_this_second: usize,
    hex: String,
    last_flush: UnixNanos,
}

const FLUSH_ROWS: usize = 8192;
const FLUSH_EVERY_NS: u64 = 1_000_000_000;

impl SpansTableOperator {
    pub fn new(table: Arc<SpansTable>, settings: SpansTableSettings) -> Self {
        SpansTableOperator {
            table,
            settings,
            builders: Builders::new(),
            second: 0,
            admitted_this_second: 0,
            errors_this_second: 0,
            hex: String::with_capacity(32),
            last_flush: 0,
        }
    }

    fn append(&mut self, batch: &SpanBatch, s: &SpanRecord) {
        let b = &mut self.builders;
        let service = batch
            .service_of(s)
            .map(|r| batch.str(r))
            .unwrap_or(redwatch_operators::red::UNKNOWN_SERVICE);
        b.end.append_value(s.end as i64);
        b.start.append_value(s.start as i64);
        b.service.append_value(service);
        b.name.append_value(batch.str(s.name));
        b.kind.append_value(s.kind.as_label());
        b.status.append_value(s.status.as_label());
        b.duration.append_value(s.duration_ms());
        b.weight.append_value(s.weight);
        hex(&mut self.hex, &s.trace_id);
        b.trace.append_value(&self.hex);
        hex(&mut self.hex, &s.span_id);
        b.span.append_value(&self.hex);
        if s.parent_span_id == [0; 8] {
            b.parent.append_null();
        } else {
            hex(&mut self.hex, &s.parent_span_id);
            b.parent.append_value(&self.hex);
        }
        for (name, v) in self.settings.dims.iter().zip(batch.dims_of(s)) {
            if let Some(v) = v {
                b.dims.keys().append_value(name);
                b.dims.values().append_value(batch.str(*v));
            }
        }
        let _ = b.dims.append(true);
        b.rows += 1;
        b.min_end = b.min_end.min(s.end);
        b.max_end = b.max_end.max(s.end);
        b.services = Some(match b.services.take() {
            None => (service.to_string(), service.to_string()),
            Some((lo, hi)) => (
                if service < lo.as_str() {
                    service.to_string()
                } else {
                    lo
                },
                if service > hi.as_str() {
                    service.to_string()
                } else {
                    hi
                },
            ),
        });
    }

    fn flush(&mut self, now: UnixNanos) {
        self.last_flush = now;
        let part = self.builders.finish();
        let bounds = SignalTableSettings {
            max_rows: self.settings.max_rows,
            retention_ns: self.settings.retention_ns,
        };
        // A partition's one time range is its end times.
        self.table.stored.keep(part, now, bounds);
    }
}

impl Operator for SpansTableOperator {
    fn name(&self) -> &'static str {
        "spans_table"
    }

    fn process_batch(&mut self, batch: &Batch, ctx: &mut OpContext<'_>) {
        let Batch::Spans(b) = batch else {
            return;
        };
        let second = ctx.now / 1_000_000_000;
        if second != self.second {
            self.second = second;
            self.admitted_this_second = 0;
            self.errors_this_second = 0;
        }
        // Errors have their own budget: before, they bypassed the rate limit without bound.
        for s in b.spans.iter().filter(|s| s.status == StatusCode::Error) {
            if self.errors_this_second >= self.settings.per_second {
                break;
            }
            self.errors_this_second += 1;
            self.append(b, s);
        }
        for s in b.spans.iter().filter(|s| s.status != StatusCode::Error) {
            if self.admitted_this_second >= self.settings.per_second {
                break;
            }
            self.admitted_this_second += 1;
            self.append(b, s);
        }
        if self.builders.rows >= FLUSH_ROWS {
            self.flush(ctx.now);
        }
    }

    fn on_tick(&mut self, ctx: &mut OpContext<'_>) {
        if ctx.now.saturating_sub(self.last_flush) >= FLUSH_EVERY_NS {
            self.flush(ctx.now);
        }
    }

    fn snapshot(&self) -> StateStats {
        StateStats {
            entries: self.table.rows(),
            ..StateStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redwatch_engine::fixtures::{span_batch, SpanFixture};
    use redwatch_engine::model::SourceId;
    use redwatch_engine::telemetry::Registry;

    #[test]
    fn errors_first_then_rate_limited_and_bounded_rows() {
        let table = Arc::new(SpansTable::default());
        let mut op = SpansTableOperator::new(
            table.clone(),
            SpansTableSettings {
                dims: vec![],
                max_rows: 5,
                retention_ns: u64::MAX,
                per_second: 2,
            },
        );
        let now = 1_700_000_000_000_000_000u64;
        let mut spans: Vec<SpanFixture> = (0..4)
            .map(|i| SpanFixture::new("s", &format!("ok{i}"), now, 1.0))
            .collect();
        spans.push(SpanFixture::new("s", "bad", now, 1.0).status(StatusCode::Error));
        let reg = Registry::new();
        let mut ctx = OpContext {
            now,
            watermark: 0,
            metrics: &reg,
        };
        op.process_batch(&Batch::Spans(span_batch(SourceId(0), 0, &spans)), &mut ctx);
        op.flush(now);
        // 1 error + 2 admitted.
        assert_eq!(table.rows(), 3);
        let rows = table.snapshot(&PruneFilter::default());
        let names = rows[0]
            .column(3)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        assert_eq!(names.value(0), "bad");
        // next second: 3 more rows, bounded to 5 by dropping the oldest partition.
        let mut ctx = OpContext {
            now: now + 1_000_000_000,
            watermark: 0,
            metrics: &reg,
        };
        op.process_batch(&Batch::Spans(span_batch(SourceId(0), 0, &spans)), &mut ctx);
        op.flush(now + 1_000_000_000);
        assert_eq!(table.rows(), 3);
        // A burst of errors is bounded too: 2 errors + 2 others a second, not 10 + 2.
        let mut burst = spans.clone();
        for i in 0..9 {
            burst.push(
                SpanFixture::new("s", &format!("bad{i}"), now, 1.0).status(StatusCode::Error),
            );
        }
        let before = op.builders.rows;
        let mut ctx = OpContext {
            now: now + 2_000_000_000,
            watermark: 0,
            metrics: &reg,
        };
        op.process_batch(&Batch::Spans(span_batch(SourceId(0), 0, &burst)), &mut ctx);
        assert_eq!(op.builders.rows - before, 4);
    }
}
