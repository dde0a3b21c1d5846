//! The RED operator: spans in, per-window per-series RED rows out.

use super::aggregate::{Buckets, RedAgg};
use super::series::{Lookup, SeriesId, SeriesKey, SeriesRef, SeriesRegistry};
use super::shares::{merge_final, merge_provisional, ShareKey, ShareRow, NO_SHARE};
use super::span_names::SpanNameNormalizer;
use super::RedConfig;
use super::{RedRow, RedSink};
use crate::common::{
    due, recycle, SpecInfo, WindowSpec, WindowSpecs, PROVISIONAL_EVERY_NS, SERIES_EXPIRY_EVERY_NS,
};
use redwatch_engine::config::{Dimension, WindowsConfig, MAX_DIMENSIONS};
use redwatch_engine::model::{SpanBatch, StrRef, UnixNanos};
use redwatch_engine::pipeline::{Batch, OpContext, Operator, StateStats};
use redwatch_engine::telemetry::{Counter, Gauge, Registry};
use redwatch_engine::window::WindowAggregate;
use redwatch_engine::window::{Emitted, WindowStore};
use std::sync::Arc;

/// A span without `service.name` counts under this name (OpenTelemetry resource semantic
/// conventions).
pub const UNKNOWN_SERVICE: &str = "unknown_service";

struct Counters {
    late: Arc<Counter>,
    overflow_spans: Arc<Counter>,
    series_created: Arc<Counter>,
    series_expired: Arc<Counter>,
    active_series: Arc<Gauge>,
    names_normalized: Arc<Counter>,
}

/// A span resolved to its series, waiting for its window update.
#[derive(Debug, Clone, Copy)]
struct Resolved {
    id: SeriesId,
    /// The window-state key: the series in the batch's share.
    key: ShareKey,
    /// Index in the batch's spans.
    span: u32,
    end: UnixNanos,
    ms: f64,
    bucket: u32,
}

/// Computes RED per series for the primary window and its rollups.
pub struct RedOperator {
    specs: WindowSpecs<ShareKey, RedAgg>,
    /// Source partitions whose shares the windows may hold (merging looks them up).
    shares: Vec<u32>,
    series: SeriesRegistry,
    buckets: Buckets,
    dims: Vec<Dimension>,
    span_names: SpanNameNormalizer,
    sinks: Vec<Arc<dyn RedSink>>,
    series_expiry_ns: u64,
    lateness_ns: u64,
    last_provisional: UnixNanos,
    last_expiry: UnixNanos,
    counters: Counters,
    /// Scratch for [`Self::process_spans`].
    resolved: Vec<Resolved>,
    /// Scratch: spans whose primary window is purged.
    late_spans: Vec<Resolved>,
}

impl RedOperator {
    pub fn new(
        windows: &WindowsConfig,
        red: &RedConfig,
        sinks: Vec<Arc<dyn RedSink>>,
        registry: &Registry,
    ) -> Self {
        let lateness = windows.allowed_lateness.as_nanos() as u64;
        let specs = WindowSpecs::from_config(windows, |ns, rollup| {
            // A rollup takes one merge per series and primary window: its open windows stay
            // packed between those (issue 3's state budget); the primary's take every span.
            let store = if rollup {
                WindowStore::new(ns, lateness).packing_open_windows()
            } else {
                WindowStore::new(ns, lateness)
            };
            let label = crate::common::spec_label(ns);
            let emitted = registry.counter(
                "redwatch_windows_emitted_total",
                "Windows emitted as final, per window spec.",
                &[("window_size", &label)],
            );
            WindowSpec::new(store, Some(emitted))
        });
        let dims: Vec<Dimension> = red
            .dimensions
            .iter()
            .take(MAX_DIMENSIONS)
            .cloned()
            .collect();
        RedOperator {
            specs,
            series: SeriesRegistry::new(red.cardinality_limit, dims.len()).with_byte_limit(
                red.cardinality_limit_bytes.as_u64() as usize,
                SeriesKey::heap_bytes,
            ),
            buckets: Buckets::new(red.buckets_ms.clone()),
            dims,
            span_names: SpanNameNormalizer::new(&red.span_names),
            sinks,
            series_expiry_ns: red.series_expiry.as_nanos() as u64,
            lateness_ns: lateness,
            last_provisional: 0,
            last_expiry: 0,
            resolved: Vec::new(),
            late_spans: Vec::new(),
            shares: Vec::new(),
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
                names_normalized: registry.counter(
                    "redwatch_red_span_names_normalized_total",
                    "Spans whose name red.span_names rewrote before series lookup.",
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
    ///
    /// In two passes: every span is first resolved to its series and bucket (the registry and
    /// name tables stay in cache), then the window updates run with the aggregates, buckets and
    /// sketch bins of later updates prefetched ([`WindowStore::update_batch`]): with many
    /// windows open (wide out-of-orderness, replayed data) nearly every update misses the
    /// cache, and this lets the misses overlap.
    pub fn process_spans(&mut self, batch: &SpanBatch, now: UnixNanos) {
        let mut resolved = std::mem::take(&mut self.resolved);
        if let Some(share) = batch.share {
            if !self.shares.contains(&share) {
                self.shares.push(share);
            }
        }
        self.resolve(batch, &mut resolved);
        let mut late_spans = std::mem::take(&mut self.late_spans);
        let series = &mut self.series;
        self.specs.primary.store.update_batch(
            &resolved,
            |r| (r.end, &r.key),
            |agg, r| agg.prefetch_heap(r.ms),
            |r, agg| {
                let span = &batch.spans[r.span as usize];
                let (trace_id, span_id) = (&span.trace_id, &span.span_id);
                agg.add_span(
                    span.status,
                    r.ms,
                    r.bucket as usize,
                    span.weight,
                    trace_id,
                    span_id,
                )
            },
            |r, outcome| match outcome {
                Ok(()) => series.touch(r.id, now, r.end),
                Err(_) => late_spans.push(*r),
            },
        );
        for r in late_spans.drain(..) {
            self.late_for_primary(batch, &r, now);
        }
        self.late_spans = recycle(late_spans);
        self.resolved = recycle(resolved);
    }

    /// A span whose primary window is purged goes straight into the rollup (and hopping)
    /// windows still open for it — the primary's deltas can no longer carry it there. That is
    /// what lets a partition taken over by an instance whose watermark is ahead rebuild its
    /// rollups by replay (docs/kafka-exactness.md). Late only when no spec takes it.
    fn late_for_primary(&mut self, batch: &SpanBatch, r: &Resolved, now: UnixNanos) {
        let primary = &self.specs.primary.store;
        let (start, size) = (primary.window_start(r.end), primary.size_ns());
        let span = &batch.spans[r.span as usize];
        let mut one = RedAgg::default();
        one.add_span(
            span.status,
            r.ms,
            r.bucket as usize,
            span.weight,
            &span.trace_id,
            &span.span_id,
        );
        let mut taken = false;
        for rollup in self.specs.rollups.iter_mut() {
            taken |= rollup
                .store
                .merge_covering(start, start + size, &r.key, &one)
                .is_ok();
        }
        if taken {
            self.series.touch(r.id, now, r.end);
        } else {
            self.counters.late.inc();
        }
    }

    /// Each span's series (created or overflow as the registry decides), duration and bucket.
    fn resolve(&mut self, batch: &SpanBatch, out: &mut Vec<Resolved>) {
        let n = self.dims.len();
        let mut dims: [&str; MAX_DIMENSIONS] = [""; MAX_DIMENSIONS];
        // Spans of one resource share its service: read (and check) the name once per run.
        let mut last_service: Option<(Option<StrRef>, &str)> = None;
        for (index, span) in batch.spans.iter().enumerate() {
            let service_ref = batch.service_of(span);
            let service = match last_service {
                Some((r, name)) if r == service_ref => name,
                _ => {
                    let name = service_ref.map_or(UNKNOWN_SERVICE, |r| batch.str(r));
                    last_service = Some((service_ref, name));
                    name
                }
            };
            let values = batch.dims_of(span);
            for (i, slot) in dims.iter_mut().enumerate().take(n) {
                *slot = match values.get(i).copied().flatten() {
                    Some(r) => batch.str(r),
                    None => self.dims[i].default.as_deref().unwrap_or(""),
                };
            }
            let (span_name, renamed) = self.span_names.normalize(batch.str(span.name));
            if renamed {
                self.counters.names_normalized.inc();
            }
            let lookup = self.series.lookup(SeriesRef {
                service_name: service,
                span_name,
                kind: span.kind,
                dims: &dims[..n],
            });
            match lookup {
                Lookup::Known(_) => {}
                Lookup::New(_) => self.counters.series_created.inc(),
                Lookup::Overflow(_) => self.counters.overflow_spans.inc(),
            }
            let ms = span.duration_ms();
            out.push(Resolved {
                id: lookup.id(),
                key: ShareKey::new(lookup.id(), batch.share),
                span: index as u32,
                end: span.end,
                ms,
                bucket: self.buckets.index(ms) as u32,
            });
        }
    }

    /// Moves every window spec to watermark `wm`, emitting final rows to the sinks: one row per
    /// share to the sinks that ask for shares, one merged row per series to the others.
    pub fn advance(&mut self, wm: UnixNanos) {
        let RedOperator {
            specs,
            series,
            sinks,
            shares,
            ..
        } = self;
        // Shares are merged as each spec emits, before that spec purges: a window emitted
        // and purged in one step still has its other shares' totals to add.
        specs.advance(
            wm,
            |spec, e| final_row(spec, series, e),
            |rows: Vec<ShareRow>, store| {
                if shares.is_empty() {
                    // Only OTLP-sourced spans: every series has one share, the rows are merged.
                    let rows: Vec<RedRow> = rows.into_iter().map(|r| r.row).collect();
                    for s in sinks.iter() {
                        s.on_final(&rows);
                    }
                    return;
                }
                let share_rows: Vec<RedRow> = rows.iter().map(|r| r.row.clone()).collect();
                for s in sinks.iter().filter(|s| s.wants_shares()) {
                    s.on_final(&share_rows);
                }
                let merged = merge_final(rows, store, shares);
                for s in sinks.iter().filter(|s| !s.wants_shares()) {
                    s.on_final(&merged);
                }
            },
        );
    }

    /// Publishes provisional rows of the open windows to the sinks (one merged row per series).
    pub fn publish_provisional(&self) {
        self.specs.provisional(
            |spec, start, end, key, agg| {
                let row = RedRow {
                    window_size: spec.label.clone(),
                    window_size_ns: spec.size_ns,
                    primary: spec.primary,
                    start,
                    end,
                    series: self.series.key(key.series)?.clone(),
                    share: key.share(),
                    is_final: false,
                    first: false,
                    total: agg.clone(),
                    delta: None,
                };
                Some((key.series, row))
            },
            |size, rows| {
                let rows = if self.shares.is_empty() {
                    rows.iter().map(|(_, r)| r.clone()).collect()
                } else {
                    merge_provisional(rows.to_vec())
                };
                for s in &self.sinks {
                    s.on_provisional(size, &rows);
                }
            },
        );
    }

    fn expire(&mut self, now: UnixNanos, wm: UnixNanos) {
        let purged_through = self.specs.purged_through(wm, self.lateness_ns);
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
    spec: SpecInfo<'_>,
    series: &SeriesRegistry,
    e: &Emitted<'_, ShareKey, RedAgg>,
) -> Option<ShareRow> {
    let row = RedRow {
        window_size: spec.label.clone(),
        window_size_ns: spec.size_ns,
        primary: spec.primary,
        start: e.start,
        end: e.end,
        series: series.key(e.key.series)?.clone(),
        share: e.key.share(),
        is_final: true,
        first: e.first,
        total: e.total.clone(),
        delta: Some(e.delta.clone()),
    };
    Some(ShareRow {
        row,
        series: e.key.series,
        window_first: e.window_first,
    })
}

impl Operator for RedOperator {
    fn name(&self) -> &'static str {
        "red"
    }

    fn process_batch(&mut self, batch: &Batch, ctx: &mut OpContext<'_>) {
        match batch {
            Batch::Spans(b) => self.process_spans(b, ctx.now),
            Batch::Metrics(_) => {}
        }
    }

    fn on_watermark(&mut self, ctx: &mut OpContext<'_>) {
        self.advance(ctx.watermark);
    }

    /// Forgets a revoked partition's share in every spec. Merged rows of windows already
    /// emitted with that share in them are restated without it (no delta: Prometheus and OTLP
    /// keep what they counted), so the instance's `red` table shows only what it still owns
    /// and the new owner's rows add up with it (docs/kafka-exactness.md).
    fn on_share_dropped(&mut self, share: u32, _ctx: &mut OpContext<'_>) {
        let mut touched: Vec<(Arc<str>, UnixNanos, UnixNanos, SeriesId)> = Vec::new();
        self.specs.for_each_spec(|label, store| {
            store.for_each_emitted_key(|start, end, k| {
                if k.share == share {
                    touched.push((label.clone(), start, end, k.series));
                }
            });
        });
        self.specs.retain_keys(|k: &ShareKey| k.share != share);
        self.shares.retain(|s| *s != share);
        if touched.is_empty() {
            return;
        }
        let mut rows: Vec<RedRow> = Vec::with_capacity(touched.len());
        for (label, start, end, id) in touched {
            let (Some(store), Some(key)) = (self.specs.store_of(&label), self.series.key(id))
            else {
                continue;
            };
            let mut total = RedAgg::default();
            for &s in self.shares.iter().chain(std::iter::once(&NO_SHARE)) {
                store.with_total(
                    start,
                    &ShareKey {
                        series: id,
                        share: s,
                    },
                    |a| total.merge(a),
                );
            }
            rows.push(RedRow {
                window_size: label.clone(),
                window_size_ns: store.size_ns(),
                primary: *label == *self.specs.primary.label,
                start,
                end,
                series: key.clone(),
                share: None,
                is_final: true,
                first: false,
                total,
                delta: Some(RedAgg::default()),
            });
        }
        for s in self.sinks.iter().filter(|s| !s.wants_shares()) {
            s.on_final(&rows);
        }
    }

    fn on_tick(&mut self, ctx: &mut OpContext<'_>) {
        if due(&mut self.last_provisional, ctx.now, PROVISIONAL_EVERY_NS) {
            self.publish_provisional();
        }
        if due(&mut self.last_expiry, ctx.now, SERIES_EXPIRY_EVERY_NS) {
            self.expire(ctx.now, ctx.watermark);
        }
        self.counters.active_series.set(self.series.len() as f64);
    }

    fn snapshot(&self) -> StateStats {
        let mut s = StateStats {
            series: self.series.len(),
            bytes: self.series.heap_bytes(),
            ..StateStats::default()
        };
        self.specs.add_stats(&mut s);
        s
    }
}
