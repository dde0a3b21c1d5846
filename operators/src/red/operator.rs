//! The RED operator: spans in, per-window per-series RED rows out.

use super::aggregate::{Buckets, RedAgg};
use super::series::{Lookup, SeriesId, SeriesRef, SeriesRegistry};
use super::{RedRow, RedSink};
use redwatch_engine::config::{Config, Dimension, MAX_DIMENSIONS};
use redwatch_engine::model::{SpanBatch, UnixNanos};
use redwatch_engine::pipeline::{Batch, OpContext, Operator, StateStats};
use redwatch_engine::telemetry::{Counter, Gauge, Registry};
use redwatch_engine::window::{Emitted, WindowStore};
use std::sync::Arc;

/// A span without `service.name` counts under this name (OpenTelemetry resource semantic
/// conventions).
pub const UNKNOWN_SERVICE: &str = "unknown_service";

struct Spec {
    label: Arc<str>,
    store: WindowStore<SeriesId, RedAgg>,
    emitted: Arc<Counter>,
}

impl Spec {
    /// Advances this spec's windows to `wm`, handing each emitted entry to `also` and the final
    /// rows to the sinks.
    fn advance(
        &mut self,
        wm: UnixNanos,
        primary: bool,
        series: &SeriesRegistry,
        sinks: &[Arc<dyn RedSink>],
        mut also: impl FnMut(&Emitted<'_, SeriesId, RedAgg>),
    ) {
        let mut rows = Vec::new();
        let mut windows = 0u64;
        let mut last_first = None;
        let (label, size) = (self.label.clone(), self.store.size_ns());
        self.store.advance(wm, |e| {
            also(&e);
            if e.window_first && last_first != Some(e.start) {
                last_first = Some(e.start);
                windows += 1;
            }
            if let Some(row) = final_row(&label, size, primary, series, &e) {
                rows.push(row);
            }
        });
        self.emitted.add(windows);
        if !rows.is_empty() {
            for s in sinks {
                s.on_final(&rows);
            }
        }
    }
}

struct Counters {
    late: Arc<Counter>,
    overflow_spans: Arc<Counter>,
    series_created: Arc<Counter>,
    series_expired: Arc<Counter>,
    active_series: Arc<Gauge>,
}

/// Computes RED per series for the primary window and its rollups.
pub struct RedOperator {
    primary: Spec,
    rollups: Vec<Spec>,
    series: SeriesRegistry,
    buckets: Buckets,
    dims: Vec<Dimension>,
    sinks: Vec<Arc<dyn RedSink>>,
    series_expiry_ns: u64,
    lateness_ns: u64,
    last_provisional: UnixNanos,
    last_expiry: UnixNanos,
    counters: Counters,
}

const PROVISIONAL_EVERY_NS: u64 = 1_000_000_000;
const EXPIRY_EVERY_NS: u64 = 5_000_000_000;

fn spec_label(ns: u64) -> Arc<str> {
    Arc::from(humantime::format_duration(std::time::Duration::from_nanos(ns)).to_string())
}

impl RedOperator {
    pub fn new(cfg: &Config, sinks: Vec<Arc<dyn RedSink>>, registry: &Registry) -> Self {
        let lateness = cfg.windows.allowed_lateness.as_nanos() as u64;
        let spec = |ns: u64| Spec {
            label: spec_label(ns),
            store: WindowStore::new(ns, lateness),
            emitted: registry.counter(
                "redwatch_windows_emitted_total",
                "Windows emitted as final, per window spec.",
                &[("window_size", &spec_label(ns))],
            ),
        };
        let primary = spec((cfg.windows.size.as_nanos() as u64).max(1));
        let rollups = cfg
            .windows
            .rollups
            .iter()
            .map(|d| spec((d.as_nanos() as u64).max(1)))
            .collect();
        let dims: Vec<Dimension> = cfg
            .red
            .dimensions
            .iter()
            .take(MAX_DIMENSIONS)
            .cloned()
            .collect();
        RedOperator {
            primary,
            rollups,
            series: SeriesRegistry::new(cfg.red.cardinality_limit, dims.len()),
            buckets: Buckets::new(cfg.red.buckets_ms.clone()),
            dims,
            sinks,
            series_expiry_ns: cfg.red.series_expiry.as_nanos() as u64,
            lateness_ns: lateness,
            last_provisional: 0,
            last_expiry: 0,
            counters: Counters {
                late: registry.counter(
                    "redwatch_late_dropped_total",
                    "Items dropped because their window was already purged.",
                    &[("signal", "spans")],
                ),
                overflow_spans: registry.counter(
                    "redwatch_red_overflow_spans_total",
                    "Spans counted in the overflow series because red.cardinality_limit was reached.",
                    &[],
                ),
                series_created: registry.counter(
                    "redwatch_red_series_created_total",
                    "RED series created.",
                    &[],
                ),
                series_expired: registry.counter(
                    "redwatch_red_series_expired_total",
                    "RED series forgotten after red.series_expiry without data.",
                    &[],
                ),
                active_series: registry.gauge(
                    "redwatch_red_active_series",
                    "RED series currently tracked (the overflow series not counted).",
                    &[],
                ),
            },
        }
    }

    /// The histogram bucket bounds in use.
    pub fn buckets(&self) -> &Buckets {
        &self.buckets
    }

    /// Adds the spans of one batch to the open windows.
    pub fn process_spans(&mut self, batch: &SpanBatch, now: UnixNanos) {
        let n = self.dims.len();
        let mut dims: [&str; MAX_DIMENSIONS] = [""; MAX_DIMENSIONS];
        for span in &batch.spans {
            let service = batch
                .service_of(span)
                .map(|r| batch.str(r))
                .unwrap_or(UNKNOWN_SERVICE);
            let values = batch.dims_of(span);
            for (i, slot) in dims.iter_mut().enumerate().take(n) {
                *slot = match values.get(i).copied().flatten() {
                    Some(r) => batch.str(r),
                    None => self.dims[i].default.as_deref().unwrap_or(""),
                };
            }
            let lookup = self.series.lookup(SeriesRef {
                service_name: service,
                span_name: batch.str(span.name),
                kind: span.kind,
                dims: &dims[..n],
            });
            match lookup {
                Lookup::Known(_) => {}
                Lookup::New(_) => self.counters.series_created.inc(),
                Lookup::Overflow(_) => self.counters.overflow_spans.inc(),
            }
            let id = lookup.id();
            let ms = span.duration_ms();
            let bucket = self.buckets.index(ms);
            let (status, weight) = (span.status, span.weight);
            let (trace_id, span_id) = (&span.trace_id, &span.span_id);
            match self.primary.store.update(span.end, &id, |a| {
                a.add_span(status, ms, bucket, weight, trace_id, span_id)
            }) {
                Ok(()) => self.series.touch(id, now, span.end),
                Err(_) => self.counters.late.inc(),
            }
        }
    }

    /// Moves every window spec to watermark `wm`, emitting final rows to the sinks.
    pub fn advance(&mut self, wm: UnixNanos) {
        let RedOperator {
            primary,
            rollups,
            series,
            sinks,
            ..
        } = self;
        // The primary spec's deltas feed the rollups before those advance themselves.
        primary.advance(wm, true, series, sinks, |e| {
            for r in rollups.iter_mut() {
                // Cannot be late: a rollup window outlives every primary window inside it.
                let _ = r.store.merge(e.start, e.key, e.delta);
            }
        });
        for r in rollups.iter_mut() {
            r.advance(wm, false, series, sinks, |_| {});
        }
    }

    /// Publishes provisional rows of the open windows to the sinks.
    pub fn publish_provisional(&self) {
        for (spec, primary) in
            std::iter::once((&self.primary, true)).chain(self.rollups.iter().map(|r| (r, false)))
        {
            let mut rows = Vec::new();
            let size = spec.store.size_ns();
            spec.store.for_each_open(|start, end, id, agg| {
                if let Some(key) = self.series.key(*id) {
                    rows.push(RedRow {
                        window_size: spec.label.clone(),
                        window_size_ns: size,
                        primary,
                        start,
                        end,
                        series: key.clone(),
                        is_final: false,
                        first: false,
                        total: agg.clone(),
                        delta: None,
                    });
                }
            });
            for s in &self.sinks {
                s.on_provisional(size, &rows);
            }
        }
    }

    fn expire(&mut self, now: UnixNanos, wm: UnixNanos) {
        let largest = self
            .rollups
            .iter()
            .map(|r| r.store.size_ns())
            .chain(std::iter::once(self.primary.store.size_ns()))
            .max()
            .unwrap_or(0);
        let purged_through = wm.saturating_sub(self.lateness_ns + largest);
        let gone = self
            .series
            .expire(now.saturating_sub(self.series_expiry_ns), purged_through);
        if !gone.is_empty() {
            self.counters.series_expired.add(gone.len() as u64);
            for s in &self.sinks {
                s.on_series_expired(&gone);
            }
        }
    }
}

fn final_row(
    label: &Arc<str>,
    size: u64,
    primary: bool,
    series: &SeriesRegistry,
    e: &Emitted<'_, SeriesId, RedAgg>,
) -> Option<RedRow> {
    Some(RedRow {
        window_size: label.clone(),
        window_size_ns: size,
        primary,
        start: e.start,
        end: e.end,
        series: series.key(*e.key)?.clone(),
        is_final: true,
        first: e.first,
        total: e.total.clone(),
        delta: Some(e.delta.clone()),
    })
}

impl Operator for RedOperator {
    fn name(&self) -> &'static str {
        "red"
    }

    fn process_batch(&mut self, batch: &Batch, ctx: &mut OpContext<'_>) {
        match batch {
            Batch::Spans(b) => self.process_spans(b, ctx.now),
        }
    }

    fn on_watermark(&mut self, ctx: &mut OpContext<'_>) {
        self.advance(ctx.watermark);
    }

    fn on_tick(&mut self, ctx: &mut OpContext<'_>) {
        if ctx.now.saturating_sub(self.last_provisional) >= PROVISIONAL_EVERY_NS {
            self.last_provisional = ctx.now;
            self.publish_provisional();
        }
        if ctx.now.saturating_sub(self.last_expiry) >= EXPIRY_EVERY_NS {
            self.last_expiry = ctx.now;
            self.expire(ctx.now, ctx.watermark);
        }
        self.counters.active_series.set(self.series.len() as f64);
    }

    fn snapshot(&self) -> StateStats {
        let specs = std::iter::once(&self.primary).chain(self.rollups.iter());
        let mut s = StateStats {
            series: self.series.len(),
            bytes: self.series.heap_bytes(),
            ..StateStats::default()
        };
        for spec in specs {
            s.windows += spec.store.window_count();
            s.entries += spec.store.entry_count();
            s.bytes += spec.store.state_bytes();
        }
        s
    }
}
