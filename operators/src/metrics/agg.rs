//! The per-(window, series) aggregate of metric points and how contributions merge into it.
//!
//! A contribution is what one point adds once temporality has been dealt with (a delta, a gauge
//! reading, a summary snapshot). Numbers keep count/sum/min/max/last; histograms merge bucket
//! counts (explicit: same bounds; exponential: rescaled to the coarser scale); summaries keep the
//! newest snapshot. Everything here is mergeable, so rollups and late re-emissions work as for RED.

use redwatch_engine::window::WindowAggregate;
use std::sync::Arc;

pub use super::exp_hist::{ExpBuckets, ExpHist};

/// An explicit-bucket histogram's counts (bounds are the series').
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hist {
    pub bounds: Option<Arc<[f64]>>,
    pub counts: Vec<u64>,
    /// Contributions with different bounds met (only in an overflow series): buckets dropped.
    pub mixed: bool,
}

/// The newest snapshot of a summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SummarySnap {
    pub time: u64,
    pub count: u64,
    pub sum: f64,
    /// `(quantile, value)` pairs.
    pub quantiles: Vec<(f64, f64)>,
}

/// Kind-specific parts of an aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum AggExt {
    Histogram(Hist),
    Exp(ExpHist),
    Summary(SummarySnap),
}

/// What one point adds to a window, after temporality conversion.
#[derive(Debug, Clone, Copy)]
pub enum Contribution<'a> {
    /// A gauge reading or a sum delta. `counted = false`: only `last` moves (the baseline point
    /// of a cumulative stream).
    Number {
        value: f64,
        last: f64,
        time: u64,
        counted: bool,
    },
    /// An explicit histogram delta.
    Histogram {
        time: u64,
        count: u64,
        sum: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
        bounds: Option<&'a Arc<[f64]>>,
        counts: &'a [u64],
    },
    /// An exponential histogram delta.
    Exp {
        time: u64,
        count: u64,
        sum: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
        hist: &'a ExpHist,
    },
    /// A summary snapshot.
    Summary {
        time: u64,
        count: u64,
        sum: f64,
        quantiles: &'a [f64],
    },
}

/// One series' state in one window.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricAgg {
    /// Numbers: points counted; histograms: observations.
    pub count: f64,
    pub sum: f64,
    /// ±infinity while nothing has been seen.
    pub min: f64,
    pub max: f64,
    /// Value of the newest point (gauges: the reading; sums: the raw value as sent).
    pub last: f64,
    /// Event time of `last` (0 = none).
    pub last_time: u64,
    /// Some contribution lacked a sum / min / max (histograms): those columns are unknown.
    pub sum_unknown: bool,
    pub minmax_unknown: bool,
    pub ext: Option<Box<AggExt>>,
}

impl Default for MetricAgg {
    fn default() -> Self {
        MetricAgg {
            count: 0.0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            last: 0.0,
            last_time: 0,
            sum_unknown: false,
            minmax_unknown: false,
            ext: None,
        }
    }
}

impl MetricAgg {
    fn take_last(&mut self, last: f64, time: u64) {
        // Ties go to the later arrival.
        if time >= self.last_time {
            self.last = last;
            self.last_time = time;
        }
    }

    fn stats(&mut self, count: u64, sum: Option<f64>, min: Option<f64>, max: Option<f64>) {
        self.count += count as f64;
        match sum {
            Some(s) => self.sum += s,
            None => self.sum_unknown |= count > 0,
        }
        match (min, max) {
            (Some(lo), Some(hi)) => {
                self.min = self.min.min(lo);
                self.max = self.max.max(hi);
            }
            _ => self.minmax_unknown |= count > 0,
        }
    }

    /// Adds one point's contribution.
    pub fn add(&mut self, c: &Contribution<'_>) {
        match *c {
            Contribution::Number {
                value,
                last,
                time,
                counted,
            } => {
                if counted {
                    self.count += 1.0;
                    self.sum += value;
                    self.min = self.min.min(value);
                    self.max = self.max.max(value);
                }
                self.take_last(last, time);
            }
            Contribution::Histogram {
                time,
                count,
                sum,
                min,
                max,
                bounds,
                counts,
            } => {
                self.stats(count, sum, min, max);
                self.last_time = self.last_time.max(time);
                let ext = self
                    .ext
                    .get_or_insert_with(|| Box::new(AggExt::Histogram(Hist::default())));
                if let AggExt::Histogram(h) = &mut **ext {
                    add_hist(h, bounds, counts);
                }
            }
            Contribution::Exp {
                time,
                count,
                sum,
                min,
                max,
                hist,
            } => {
                self.stats(count, sum, min, max);
                self.last_time = self.last_time.max(time);
                match self.ext.as_deref_mut() {
                    Some(AggExt::Exp(e)) => e.merge(hist),
                    _ => self.ext = Some(Box::new(AggExt::Exp(hist.clone()))),
                }
            }
            Contribution::Summary {
                time,
                count,
                sum,
                quantiles,
            } => {
                let newer = match self.ext.as_deref() {
                    Some(AggExt::Summary(s)) => time >= s.time,
                    _ => true,
                };
                if newer {
                    let q = quantiles.chunks_exact(2).map(|p| (p[0], p[1])).collect();
                    self.set_summary(SummarySnap {
                        time,
                        count,
                        sum,
                        quantiles: q,
                    });
                }
            }
        }
    }

    fn set_summary(&mut self, s: SummarySnap) {
        self.count = s.count as f64;
        self.sum = s.sum;
        self.last_time = s.time;
        let q = |x: f64| s.quantiles.iter().find(|(k, _)| *k == x).map(|(_, v)| *v);
        self.min = q(0.0).unwrap_or(f64::INFINITY);
        self.max = q(1.0).unwrap_or(f64::NEG_INFINITY);
        self.ext = Some(Box::new(AggExt::Summary(s)));
    }

    /// Mean of the counted values (None without any).
    pub fn avg(&self) -> Option<f64> {
        (self.count > 0.0 && !self.sum_unknown).then(|| self.sum / self.count)
    }

    pub fn min_value(&self) -> Option<f64> {
        (self.min.is_finite() && !self.minmax_unknown).then_some(self.min)
    }

    pub fn max_value(&self) -> Option<f64> {
        (self.max.is_finite() && !self.minmax_unknown).then_some(self.max)
    }

    pub fn histogram(&self) -> Option<&Hist> {
        match self.ext.as_deref() {
            Some(AggExt::Histogram(h)) => Some(h),
            _ => None,
        }
    }

    pub fn exp_histogram(&self) -> Option<&ExpHist> {
        match self.ext.as_deref() {
            Some(AggExt::Exp(h)) => Some(h),
            _ => None,
        }
    }

    pub fn summary(&self) -> Option<&SummarySnap> {
        match self.ext.as_deref() {
            Some(AggExt::Summary(s)) => Some(s),
            _ => None,
        }
    }
}

fn add_hist(h: &mut Hist, bounds: Option<&Arc<[f64]>>, counts: &[u64]) {
    if h.mixed {
        return;
    }
    if h.counts.is_empty() && h.bounds.is_none() {
        h.bounds = bounds.cloned();
        h.counts.extend_from_slice(counts);
        return;
    }
    let same = match (h.bounds.as_ref(), bounds) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || **a == **b,
        (None, None) => true,
        _ => false,
    };
    if !same || h.counts.len() != counts.len() {
        h.mixed = true;
        h.bounds = None;
        h.counts.clear();
        return;
    }
    for (a, b) in h.counts.iter_mut().zip(counts) {
        *a += b;
    }
}

impl MetricAgg {
    /// Merges the count, sum, min, max (and what of them is unknown) and the last time of a
    /// histogram-like aggregate `o`.
    fn merge_distribution_stats(&mut self, o: &Self) {
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
        self.sum_unknown |= o.sum_unknown;
        self.minmax_unknown |= o.minmax_unknown;
        self.last_time = self.last_time.max(o.last_time);
    }
}

impl WindowAggregate for MetricAgg {
    fn merge(&mut self, o: &Self) {
        match o.ext.as_deref() {
            None => {
                self.count += o.count;
                self.sum += o.sum;
                self.min = self.min.min(o.min);
                self.max = self.max.max(o.max);
                if o.last_time > 0 {
                    self.take_last(o.last, o.last_time);
                }
            }
            Some(AggExt::Histogram(h)) => {
                self.merge_distribution_stats(o);
                let ext = self
                    .ext
                    .get_or_insert_with(|| Box::new(AggExt::Histogram(Hist::default())));
                if let AggExt::Histogram(mine) = &mut **ext {
                    if h.mixed {
                        mine.mixed = true;
                        mine.bounds = None;
                        mine.counts.clear();
                    } else {
                        add_hist(mine, h.bounds.as_ref(), &h.counts);
                    }
                }
            }
            Some(AggExt::Exp(e)) => {
                self.merge_distribution_stats(o);
                match self.ext.as_deref_mut() {
                    Some(AggExt::Exp(mine)) => mine.merge(e),
                    _ => self.ext = Some(Box::new(AggExt::Exp(e.clone()))),
                }
            }
            Some(AggExt::Summary(s)) => {
                let newer = match self.ext.as_deref() {
                    Some(AggExt::Summary(m)) => s.time >= m.time,
                    _ => true,
                };
                if newer {
                    self.set_summary(s.clone());
                }
            }
        }
    }

    fn heap_bytes(&self) -> usize {
        match self.ext.as_deref() {
            None => 0,
            Some(AggExt::Histogram(h)) => 64 + h.counts.capacity() * 8,
            Some(AggExt::Exp(e)) => {
                96 + (e.positive.counts.capacity() + e.negative.counts.capacity()) * 8
            }
            Some(AggExt::Summary(s)) => 64 + s.quantiles.capacity() * 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::exp_hist::MAX_EXP_BUCKETS;

    fn exp(scale: i32, offset: i32, counts: &[u64]) -> ExpHist {
        ExpHist {
            scale,
            positive: ExpBuckets {
                offset,
                counts: counts.to_vec(),
            },
            ..ExpHist::default()
        }
    }

    #[test]
    fn exp_histograms_merge_at_the_coarser_scale() {
        // Scale 1 buckets 4,5 (= scale 0 bucket 2) and 6 (= scale 0 bucket 3).
        let mut a = exp(1, 4, &[1, 2, 3]);
        let b = exp(0, 2, &[10]);
        a.merge(&b);
        assert_eq!(a.scale, 0);
        assert_eq!(
            a.positive,
            ExpBuckets {
                offset: 2,
                counts: vec![13, 3]
            }
        );
        // Negative indices floor: -3 -> -2, -2 and -1 -> -1.
        let mut n = exp(2, -3, &[1, 1, 1]);
        n.rescale(1);
        assert_eq!(
            n.positive,
            ExpBuckets {
                offset: -2,
                counts: vec![1, 2]
            }
        );
    }

    #[test]
    fn exp_merge_keeps_the_bucket_limit() {
        let mut a = exp(5, 0, &[1]);
        let b = exp(5, 1000, &[1]);
        a.merge(&b);
        let span = a.positive.counts.len();
        assert!(span <= MAX_EXP_BUCKETS, "{span}");
        assert_eq!(a.positive.total(), 2);
        assert!(a.scale < 5);
    }

    #[test]
    fn exp_subtraction_detects_resets() {
        let cur = exp(0, 0, &[5, 5]);
        let prev = exp(1, 0, &[1, 1, 1]);
        let d = cur.checked_sub(&prev).unwrap();
        assert_eq!(d.positive.counts, vec![3, 4]);
        assert!(prev.checked_sub(&cur).is_none());
    }

    #[test]
    fn gauges_keep_last_by_event_time() {
        let mut a = MetricAgg::default();
        for (v, t) in [(3.0, 20), (1.0, 10), (7.0, 15)] {
            a.add(&Contribution::Number {
                value: v,
                last: v,
                time: t,
                counted: true,
            });
        }
        assert_eq!(
            (a.count, a.sum, a.min, a.max, a.last),
            (3.0, 11.0, 1.0, 7.0, 3.0)
        );
    }
}
