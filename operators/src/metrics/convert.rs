//! Temporality conversion of one metric point: what a gauge reading, a delta point or a
//! cumulative point (against its stream's previous value) adds to its window. Allocates only
//! what the cumulative streams keep (their last value).

use super::agg::{Contribution, ExpBuckets, ExpHist};
use super::cumulative::{Delta, Last, Streams};
use super::operator::Counters;
use redwatch_engine::metric_model::{ExpHistogramRecord, HistogramRecord, MetricBatch, MetricKind};
use redwatch_engine::model::UnixNanos;
use std::sync::Arc;

/// Where and when one point is: its cumulative stream (series hash + origin; only used for
/// cumulative points) and its times.
#[derive(Debug, Clone, Copy)]
pub(super) struct PointAt {
    pub stream: (u64, u64),
    pub start: UnixNanos,
    pub time: UnixNanos,
    pub cumulative: bool,
    /// The point goes to an overflow series (no bucket counts kept).
    pub overflow: bool,
}

/// The cumulative streams' last values and the counters of points that add nothing.
pub(super) struct Converter<'s> {
    pub streams: &'s mut Streams,
    pub counters: &'s Counters,
    pub now: UnixNanos,
}

impl Converter<'_> {
    /// A gauge reading, a delta sum, or a cumulative sum's increase.
    pub fn number(
        &mut self,
        at: &PointAt,
        kind: MetricKind,
        v: f64,
    ) -> Option<Contribution<'static>> {
        let time = at.time;
        if kind == MetricKind::Gauge || !at.cumulative {
            return Some(Contribution::Number {
                value: v,
                last: v,
                time,
                counted: true,
            });
        }
        let monotonic = kind != MetricKind::UpDownCounter;
        match self.streams.offer(
            at.stream,
            at.start,
            time,
            Last::Number(v),
            monotonic,
            self.now,
        ) {
            Delta::Increase {
                delta: Last::Number(d),
                ..
            } => Some(Contribution::Number {
                value: d,
                last: v,
                time,
                counted: true,
            }),
            Delta::Baseline => {
                self.counters.baseline.inc();
                Some(Contribution::Number {
                    value: 0.0,
                    last: v,
                    time,
                    counted: false,
                })
            }
            d => {
                self.counters.count_unused(&d);
                None
            }
        }
    }

    /// An explicit histogram as sent (delta) or its increase (cumulative, counts in `scratch`).
    pub fn histogram<'a>(
        &mut self,
        at: &PointAt,
        batch: &'a MetricBatch,
        h: &'a HistogramRecord,
        bounds: Option<&'a Arc<[f64]>>,
        scratch: &'a mut Vec<u64>,
    ) -> Option<Contribution<'a>> {
        let time = at.time;
        let counts = if at.overflow {
            &[][..]
        } else {
            batch.buckets_of(h).1
        };
        if !at.cumulative {
            return Some(Contribution::Histogram {
                time,
                count: h.count,
                sum: h.sum,
                min: h.min,
                max: h.max,
                bounds,
                counts,
            });
        }
        let last = Last::Histogram {
            count: h.count,
            sum: h.sum.unwrap_or(0.0),
            counts: batch.buckets_of(h).1.to_vec(),
        };
        match self
            .streams
            .offer(at.stream, at.start, time, last, true, self.now)
        {
            Delta::Increase {
                delta:
                    Last::Histogram {
                        count,
                        sum,
                        counts: c,
                    },
                whole,
            } => {
                scratch.clear();
                if !at.overflow {
                    scratch.extend_from_slice(&c);
                }
                Some(Contribution::Histogram {
                    time,
                    count,
                    sum: h.sum.map(|_| sum),
                    // Min and max of a cumulative point cover its whole span.
                    min: if whole { h.min } else { None },
                    max: if whole { h.max } else { None },
                    bounds,
                    counts: scratch,
                })
            }
            Delta::Baseline => {
                self.counters.baseline.inc();
                None
            }
            d => {
                self.counters.count_unused(&d);
                None
            }
        }
    }

    /// An exponential histogram as sent (delta) or its increase (cumulative); its buckets go
    /// to `owned`, which the contribution borrows.
    pub fn exp<'a>(
        &mut self,
        at: &PointAt,
        batch: &MetricBatch,
        e: &ExpHistogramRecord,
        owned: &'a mut Option<ExpHist>,
    ) -> Option<Contribution<'a>> {
        let (count, sum, min, max, hist) = self.exp_delta(at, batch, e);
        *owned = hist;
        owned.as_ref().map(|hist| Contribution::Exp {
            time: at.time,
            count,
            sum,
            min,
            max,
            hist,
        })
    }

    /// An exponential histogram's count, sum, min, max and buckets (`None`: nothing to add).
    fn exp_delta(
        &mut self,
        at: &PointAt,
        batch: &MetricBatch,
        e: &ExpHistogramRecord,
    ) -> (u64, Option<f64>, Option<f64>, Option<f64>, Option<ExpHist>) {
        let (pos, neg) = batch.exp_buckets_of(e);
        let eh = ExpHist {
            scale: e.scale,
            zero_count: e.zero_count,
            zero_threshold: e.zero_threshold,
            positive: ExpBuckets {
                offset: e.positive_offset,
                counts: pos.to_vec(),
            },
            negative: ExpBuckets {
                offset: e.negative_offset,
                counts: neg.to_vec(),
            },
        };
        if !at.cumulative {
            return (e.count, e.sum, e.min, e.max, Some(eh));
        }
        let last = Last::Exp {
            count: e.count,
            sum: e.sum.unwrap_or(0.0),
            hist: eh,
        };
        match self
            .streams
            .offer(at.stream, at.start, at.time, last, true, self.now)
        {
            Delta::Increase {
                delta: Last::Exp { count, sum, hist },
                whole,
            } => (
                count,
                e.sum.map(|_| sum),
                if whole { e.min } else { None },
                if whole { e.max } else { None },
                Some(hist),
            ),
            Delta::Baseline => {
                self.counters.baseline.inc();
                (0, None, None, None, None)
            }
            d => {
                self.counters.count_unused(&d);
                (0, None, None, None, None)
            }
        }
    }
}
