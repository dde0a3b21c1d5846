//! The metrics operator: metric points in, per-window per-series `metric_points` rows out.

use super::agg::{Contribution, MetricAgg};
use super::convert::{Converter, PointAt};
use super::cumulative::{Delta, Streams};
use super::series::{
    MetricLookup, MetricSeriesId, MetricSeriesKey, MetricSeriesRef, MetricSeriesRegistry,
};
use super::{MetricRow, MetricSink};
use crate::common::{due, WindowSpec, WindowSpecs, PROVISIONAL_EVERY_NS, SERIES_EXPIRY_EVERY_NS};
use crate::red::RedConfig;
use hashbrown::DefaultHashBuilder;
use redwatch_engine::config::WindowsConfig;
use redwatch_engine::metric_model::{MetricBatch, PointRecord, PointValue, Temporality};
use redwatch_engine::model::UnixNanos;
use redwatch_engine::pipeline::{Batch, OpContext, Operator, StateStats};
use redwatch_engine::telemetry::{Counter, Gauge, Registry};
use redwatch_engine::window::WindowStore;
use std::hash::BuildHasher;
use std::sync::Arc;

pub(super) struct Counters {
    points: Arc<Counter>,
    late: Arc<Counter>,
    out_of_order: Arc<Counter>,
    no_room: Arc<Counter>,
    pub(super) baseline: Arc<Counter>,
    overflow_points: Arc<Counter>,
    series_created: Arc<Counter>,
    series_expired: Arc<Counter>,
    active_series: Arc<Gauge>,
    streams: Arc<Gauge>,
}

/// The point's attributes as sorted (key, value) pairs, in `attrs` (reused across points).
fn sorted_attrs<'b>(batch: &'b MetricBatch, p: &PointRecord, attrs: &mut Vec<(&'b str, &'b str)>) {
    attrs.clear();
    attrs.extend(
        batch
            .attrs_of(p)
            .iter()
            .map(|(k, v)| (batch.str(*k), batch.str(*v))),
    );
    attrs.sort_unstable();
}

impl Counters {
    /// Counts a cumulative point that adds nothing: out of order, or no room for its stream.
    pub(super) fn count_unused(&self, d: &Delta) {
        match d {
            Delta::OutOfOrder => self.out_of_order.inc(),
            Delta::NoRoom => self.no_room.inc(),
            _ => {}
        }
    }
}

/// Windows metric points per series for the primary window spec and its rollups.
pub struct MetricsOperator {
    specs: WindowSpecs<MetricSeriesId, MetricAgg>,
    series: MetricSeriesRegistry,
    streams: Streams,
    hasher: DefaultHashBuilder,
    sinks: Vec<Arc<dyn MetricSink>>,
    series_expiry_ns: u64,
    lateness_ns: u64,
    last_provisional: UnixNanos,
    last_expiry: UnixNanos,
    counters: Counters,
    /// Scratch for histogram deltas.
    scratch: Vec<u64>,
}

impl MetricsOperator {
    /// Uses `windows` (size, rollups, allowed lateness) and the RED limits
    /// (`red.cardinality_limit`, `red.series_expiry`).
    pub fn new(
        windows: &WindowsConfig,
        red: &RedConfig,
        sinks: Vec<Arc<dyn MetricSink>>,
        registry: &Registry,
    ) -> Self {
        let lateness = windows.allowed_lateness.as_nanos() as u64;
        let limit = red.cardinality_limit.max(1);
        let dropped = |reason: &str| {
            registry.counter(
                "redwatch_metric_points_dropped_total",
                "Metric points the metrics operator could not use, per reason.",
                &[("reason", reason)],
            )
        };
        MetricsOperator {
            specs: WindowSpecs::from_config(windows, |ns, _| {
                WindowSpec::new(WindowStore::new(ns, lateness), None)
            }),
            series: MetricSeriesRegistry::new(limit).with_byte_limit(
                red.cardinality_limit_bytes.as_u64() as usize,
                MetricSeriesKey::heap_bytes,
            ),
            // A few origins (instances) per series on average before streams are refused.
            streams: Streams::new(limit.saturating_mul(4).max(1024)),
            hasher: DefaultHashBuilder::default(),
            sinks,
            series_expiry_ns: red.series_expiry.as_nanos() as u64,
            lateness_ns: lateness,
            last_provisional: 0,
            last_expiry: 0,
            scratch: Vec::new(),
            counters: Counters {
                points: registry.counter(
                    "redwatch_metric_points_windowed_total",
                    "Metric points added to metric windows.",
                    &[],
                ),
                late: registry.counter(
                    "redwatch_late_dropped_total",
                    "Items dropped because their window was already purged.",
                    &[("signal", "metric_points")],
                ),
                out_of_order: dropped("cumulative_out_of_order"),
                no_room: dropped("stream_limit"),
                baseline: registry.counter(
                    "redwatch_metric_cumulative_baselines_total",
                    "First points of cumulative streams without a start time (baseline only).",
                    &[],
                ),
                overflow_points: registry.counter(
                    "redwatch_metric_overflow_points_total",
                    "Metric points counted in an overflow series because red.cardinality_limit was reached.",
                    &[],
                ),
                series_created: registry.counter(
                    "redwatch_metric_series_created_total",
                    "Metric series created.",
                    &[],
                ),
                series_expired: registry.counter(
                    "redwatch_metric_series_expired_total",
                    "Metric series forgotten after red.series_expiry without data.",
                    &[],
                ),
                active_series: registry.gauge(
                    "redwatch_metric_active_series",
                    "Metric series currently tracked (overflow series not counted).",
                    &[],
                ),
                streams: registry.gauge(
                    "redwatch_metric_cumulative_streams",
                    "Cumulative streams whose last point is kept for delta conversion.",
                    &[],
                ),
            },
        }
    }

    /// Adds the points of one batch to the open windows.
    pub fn process_metrics(&mut self, batch: &MetricBatch, now: UnixNanos) {
        // Borrowed by histogram contributions while the windows are updated.
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut attrs: Vec<(&str, &str)> = Vec::new();
        for p in &batch.points {
            let Some(m) = batch.metric_of(p) else {
                continue;
            };
            let res = batch.resource_of(m).copied().unwrap_or_default();
            sorted_attrs(batch, p, &mut attrs);
            let (hist, bounds) = match p.value {
                PointValue::Histogram(i) => match batch.histograms.get(i as usize) {
                    Some(h) => (Some(h), Some(batch.buckets_of(h).0)),
                    None => continue,
                },
                _ => (None, None),
            };
            let r = MetricSeriesRef {
                name: batch.str(m.name),
                kind: m.kind,
                unit: batch.str(m.unit),
                service_name: res.service_name.map(|s| batch.str(s)),
                attrs: &attrs,
                bounds,
            };
            let cumulative = m.temporality == Temporality::Cumulative;
            // The stream (series + origin) matters only for cumulative-to-delta conversion.
            let stream = if cumulative {
                (self.hasher.hash_one(r), res.origin)
            } else {
                (0, 0)
            };
            let (id, overflow, key_bounds) = self.series_of(r);
            let at = PointAt {
                stream,
                start: p.start,
                time: p.time,
                cumulative,
                overflow,
            };
            let mut conv = Converter {
                streams: &mut self.streams,
                counters: &self.counters,
                now,
            };
            // What this point adds, after temporality conversion (None = nothing to add).
            let mut owned_exp = None;
            let contribution = match (p.value, hist) {
                (PointValue::Number(v), _) => conv.number(&at, m.kind, v),
                (PointValue::Histogram(_), Some(h)) => {
                    conv.histogram(&at, batch, h, key_bounds.as_ref(), &mut scratch)
                }
                (PointValue::ExpHistogram(i), _) => {
                    let Some(e) = batch.exp_histograms.get(i as usize) else {
                        continue;
                    };
                    conv.exp(&at, batch, e, &mut owned_exp)
                }
                (PointValue::Summary(i), _) => {
                    batch
                        .summaries
                        .get(i as usize)
                        .map(|s| Contribution::Summary {
                            time: at.time,
                            count: s.count,
                            sum: s.sum,
                            quantiles: batch.quantiles_of(s),
                        })
                }
                (PointValue::Histogram(_), None) => None,
            };
            let Some(c) = contribution else {
                continue;
            };
            self.add_to_windows(id, &c, at.time, now);
        }
        self.scratch = scratch;
    }

    /// The point's series (a new one counted, or the overflow series), whether it is the
    /// overflow series, and the bucket bounds of its key.
    fn series_of(&mut self, r: MetricSeriesRef<'_>) -> (MetricSeriesId, bool, Option<Arc<[f64]>>) {
        let lookup = self.series.lookup(r);
        match lookup {
            MetricLookup::Known(_) => {}
            MetricLookup::New(_) => self.counters.series_created.inc(),
            MetricLookup::Overflow(_) => self.counters.overflow_points.inc(),
        }
        let id = lookup.id();
        let overflow = matches!(lookup, MetricLookup::Overflow(_));
        let key_bounds = if overflow {
            None
        } else {
            self.series.key(id).and_then(|k| k.bounds.clone())
        };
        (id, overflow, key_bounds)
    }

    /// Adds a point's contribution to its primary window, else to the rollup windows still
    /// open for it, else counts it late.
    fn add_to_windows(
        &mut self,
        id: MetricSeriesId,
        c: &Contribution,
        time: UnixNanos,
        now: UnixNanos,
    ) {
        match self.specs.primary.store.update(time, &id, |a| a.add(c)) {
            Ok(()) => {
                self.counters.points.inc();
                self.series.touch(id, now, time);
            }
            Err(_) => {
                // Its primary window is purged: the rollup windows still open take it
                // (late per window spec, docs/kafka-exactness.md).
                let primary = &self.specs.primary.store;
                let (start, size) = (primary.window_start(time), primary.size_ns());
                let mut one = MetricAgg::default();
                one.add(c);
                let mut taken = false;
                for r in self.specs.rollups.iter_mut() {
                    taken |= r
                        .store
                        .merge_covering(start, start + size, &id, &one)
                        .is_ok();
                }
                if taken {
                    self.counters.points.inc();
                    self.series.touch(id, now, time);
                } else {
                    self.counters.late.inc();
                }
            }
        }
    }

    /// Moves every window spec to watermark `wm`, emitting final rows to the sinks.
    pub fn advance(&mut self, wm: UnixNanos) {
        let MetricsOperator {
            specs,
            series,
            sinks,
            ..
        } = self;
        specs.advance(
            wm,
            |spec, e| {
                Some(MetricRow {
                    window_size: spec.label.clone(),
                    window_size_ns: spec.size_ns,
                    primary: spec.primary,
                    start: e.start,
                    end: e.end,
                    series: series.key(*e.key)?.clone(),
                    is_final: true,
                    first: e.first,
                    total: e.total.clone(),
                    delta: Some(e.delta.clone()),
                })
            },
            |rows, _| {
                for s in sinks.iter() {
                    s.on_final(&rows);
                }
            },
        );
    }

    /// Publishes provisional rows of the open windows to the sinks.
    pub fn publish_provisional(&self) {
        self.specs.provisional(
            |spec, start, end, id, agg| {
                Some(MetricRow {
                    window_size: spec.label.clone(),
                    window_size_ns: spec.size_ns,
                    primary: spec.primary,
                    start,
                    end,
                    series: self.series.key(*id)?.clone(),
                    is_final: false,
                    first: false,
                    total: agg.clone(),
                    delta: None,
                })
            },
            |size, rows| {
                for s in &self.sinks {
                    s.on_provisional(size, rows);
                }
            },
        );
    }

    fn expire(&mut self, now: UnixNanos, wm: UnixNanos) {
        let purged_through = self.specs.purged_through(wm, self.lateness_ns);
        let idle_before = now.saturating_sub(self.series_expiry_ns);
        self.streams.expire(idle_before);
        let gone = self.series.expire(idle_before, purged_through);
        if !gone.is_empty() {
            self.counters.series_expired.add(gone.len() as u64);
            for s in &self.sinks {
                s.on_series_expired(&gone);
            }
        }
    }

    /// Active series (overflow series not counted) and cumulative streams held.
    pub fn series_and_streams(&self) -> (usize, usize) {
        (self.series.len(), self.streams.len())
    }
}

impl Operator for MetricsOperator {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn process_batch(&mut self, batch: &Batch, ctx: &mut OpContext<'_>) {
        if let Batch::Metrics(b) = batch {
            self.process_metrics(b, ctx.now);
        }
    }

    fn on_watermark(&mut self, ctx: &mut OpContext<'_>) {
        self.advance(ctx.watermark);
    }

    fn on_tick(&mut self, ctx: &mut OpContext<'_>) {
        if due(&mut self.last_provisional, ctx.now, PROVISIONAL_EVERY_NS) {
            self.publish_provisional();
        }
        if due(&mut self.last_expiry, ctx.now, SERIES_EXPIRY_EVERY_NS) {
            self.expire(ctx.now, ctx.watermark);
        }
        self.counters.active_series.set(self.series.len() as f64);
        self.counters.streams.set(self.streams.len() as f64);
    }

    fn snapshot(&self) -> StateStats {
        let mut s = StateStats {
            series: self.series.len(),
            bytes: self.series.heap_bytes() + self.streams.heap_bytes(),
            ..StateStats::default()
        };
        self.specs.add_stats(&mut s);
        s
    }
}
