//! The per-(window, series) RED state: calls, errors and durations by status, histogram buckets
//! (exact, for Prometheus) and a quantile sketch (for p50…p99 and re-aggregation in SQL).
//!
//! Kept small because there is one per series per open window: buckets are stored sparsely
//! (a typical series touches a handful), the sketch is sparse until it grows.

use super::sketch::QuantileSketch;
use redwatch_engine::model::StatusCode;
use redwatch_engine::window::{Packed, WindowAggregate};

mod bucket_counts;
mod packed;

use bucket_counts::BucketCounts;

/// Histogram bucket bounds in ms, shared by every aggregate of one operator.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
    bounds: Vec<f64>,
}

impl Buckets {
    pub fn new(bounds: Vec<f64>) -> Self {
        Buckets { bounds }
    }

    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// Index of the bucket for `ms`: the first bound `>= ms` (Prometheus `le` is inclusive), or
    /// `bounds.len()` for +Inf.
    pub fn index(&self, ms: f64) -> usize {
        self.bounds.partition_point(|b| *b < ms)
    }
}

const STATUSES: usize = 3;
/// One status' share of the bucket code space (64 bounds + the +Inf bucket).
const CODES_PER_STATUS: u16 = 65;

/// RED state of one series in one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RedAgg {
    /// Weighted span counts per status (`StatusCode as usize`).
    pub calls: [f64; STATUSES],
    /// Weighted duration sums in ms per status.
    pub sum_ms: [f64; STATUSES],
    /// Smallest and largest duration seen (ms); meaningful only when `total_calls() > 0`.
    pub min_ms: f64,
    pub max_ms: f64,
    /// Sparse weighted bucket counts, sorted by code = status * 65 + bucket index.
    buckets: BucketCounts,
    /// Durations, all statuses together.
    pub sketch: QuantileSketch,
    /// A few spans worth looking at (the anomaly spans link to them).
    pub exemplars: Exemplars,
}

/// One span of a window: its ids and duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Exemplar {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub duration_ms: f64,
}

impl Exemplar {
    /// Whether `self` should replace `old` as "the slowest": longer, or as long with larger ids,
    /// so the choice does not depend on the order spans or partial aggregates arrive in.
    fn beats(&self, old: &Option<Exemplar>) -> bool {
        match old {
            None => true,
            Some(o) => match self.duration_ms.total_cmp(&o.duration_ms) {
                std::cmp::Ordering::Greater => true,
                std::cmp::Ordering::Less => false,
                std::cmp::Ordering::Equal => {
                    (self.trace_id, self.span_id) > (o.trace_id, o.span_id)
                }
            },
        }
    }
}

/// A fixed-size exemplar set per series and window: the slowest span and the slowest failed
/// one (48 bytes each, no allocation).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Exemplars {
    pub slowest: Option<Exemplar>,
    pub failed: Option<Exemplar>,
}

impl Exemplars {
    /// Considers one span.
    pub fn offer(&mut self, status: StatusCode, e: Exemplar) {
        if e.beats(&self.slowest) {
            self.slowest = Some(e);
        }
        if status == StatusCode::Error && e.beats(&self.failed) {
            self.failed = Some(e);
        }
    }

    fn merge(&mut self, o: &Exemplars) {
        if let Some(e) = o.slowest {
            if e.beats(&self.slowest) {
                self.slowest = Some(e);
            }
        }
        if let Some(e) = o.failed {
            if e.beats(&self.failed) {
                self.failed = Some(e);
            }
        }
    }
}

impl RedAgg {
    /// Adds one span and offers it as an exemplar.
    pub fn add_span(
        &mut self,
        status: StatusCode,
        duration_ms: f64,
        bucket: usize,
        weight: f64,
        trace_id: &[u8; 16],
        span_id: &[u8; 8],
    ) {
        self.add(status, duration_ms, bucket, weight);
        self.exemplars.offer(
            status,
            Exemplar {
                trace_id: *trace_id,
                span_id: *span_id,
                duration_ms,
            },
        );
    }

    /// Starts loading what adding a span of `duration_ms` will touch beyond the aggregate
    /// itself (its bucket counts and sketch bins) into the cache; see
    /// [`WindowStore::prefetch`](redwatch_engine::window::WindowStore::prefetch).
    #[inline]
    pub fn prefetch_heap(&self, duration_ms: f64) {
        self.buckets.prefetch();
        self.sketch.prefetch(duration_ms);
    }

    /// Adds one span.
    pub fn add(&mut self, status: StatusCode, duration_ms: f64, bucket: usize, weight: f64) {
        let s = status as usize;
        if self.total_calls() == 0.0 {
            self.min_ms = duration_ms;
            self.max_ms = duration_ms;
        } else {
            self.min_ms = self.min_ms.min(duration_ms);
            self.max_ms = self.max_ms.max(duration_ms);
        }
        self.calls[s] += weight;
        self.sum_ms[s] += duration_ms * weight;
        self.add_bucket(s as u16 * CODES_PER_STATUS + bucket as u16, weight);
        self.sketch.add(duration_ms, weight);
    }

    fn add_bucket(&mut self, code: u16, weight: f64) {
        self.buckets.add(code, weight);
    }

    pub fn total_calls(&self) -> f64 {
        self.calls.iter().sum()
    }

    pub fn errors(&self) -> f64 {
        self.calls[StatusCode::Error as usize]
    }

    pub fn total_sum_ms(&self) -> f64 {
        self.sum_ms.iter().sum()
    }

    /// Non-cumulative bucket counts of one status, `n_bounds + 1` long (last = +Inf bucket).
    pub fn bucket_counts(&self, status: StatusCode, n_bounds: usize) -> Vec<f64> {
        let mut out = vec![0.0; n_bounds + 1];
        let base = status as u16 * CODES_PER_STATUS;
        for (code, w) in self.buckets.iter() {
            if code >= base && code < base + CODES_PER_STATUS {
                let i = (code - base) as usize;
                if i < out.len() {
                    out[i] += w;
                }
            }
        }
        out
    }

    /// Statuses with at least one span.
    pub fn statuses(&self) -> impl Iterator<Item = StatusCode> + '_ {
        StatusCode::ALL
            .into_iter()
            .filter(|s| self.calls[*s as usize] > 0.0)
    }

    /// A quantile of the durations (ms), clamped to the observed min/max.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        self.sketch
            .quantile(q)
            .map(|v| v.clamp(self.min_ms, self.max_ms))
    }
}

impl WindowAggregate for RedAgg {
    fn merge(&mut self, o: &Self) {
        if o.total_calls() == 0.0 {
            return;
        }
        if self.total_calls() == 0.0 {
            self.min_ms = o.min_ms;
            self.max_ms = o.max_ms;
        } else {
            self.min_ms = self.min_ms.min(o.min_ms);
            self.max_ms = self.max_ms.max(o.max_ms);
        }
        for s in 0..STATUSES {
            self.calls[s] += o.calls[s];
            self.sum_ms[s] += o.sum_ms[s];
        }
        for (code, w) in o.buckets.iter() {
            self.add_bucket(code, w);
        }
        self.sketch.merge(&o.sketch);
        self.exemplars.merge(&o.exemplars);
    }

    fn heap_bytes(&self) -> usize {
        self.buckets.heap_bytes() + self.sketch.heap_bytes()
    }

    fn shrink_to_fit(&mut self) {
        self.buckets.shrink_to_fit();
        self.sketch.shrink_to_fit();
    }

    /// Emitted windows hold their aggregates packed (see `packed.rs`): ~4× smaller.
    fn pack(&self) -> Option<Packed> {
        Some(self.pack_bytes())
    }

    fn unpack(packed: &[u8]) -> Self {
        // The window store only hands back what `pack` made, which `packed`'s property test
        // round-trips bit for bit; anything else is a bug in this process, not bad input.
        Self::try_unpack(packed).expect("bytes packed by RedAgg::pack")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_index_is_le_inclusive() {
        let b = Buckets::new(vec![2.0, 4.0, 10.0]);
        assert_eq!(b.index(0.5), 0);
        assert_eq!(b.index(2.0), 0);
        assert_eq!(b.index(2.0001), 1);
        assert_eq!(b.index(10.0), 2);
        assert_eq!(b.index(11.0), 3);
    }

    #[test]
    fn add_and_merge_agree() {
        let b = Buckets::new(vec![2.0, 4.0, 10.0]);
        let spans = [
            (StatusCode::Unset, 1.0, 1.0),
            (StatusCode::Error, 3.0, 2.0),
            (StatusCode::Ok, 12.0, 1.0),
            (StatusCode::Unset, 4.0, 0.5),
        ];
        let mut all = RedAgg::default();
        let mut left = RedAgg::default();
        let mut right = RedAgg::default();
        for (i, (s, d, w)) in spans.iter().enumerate() {
            all.add(*s, *d, b.index(*d), *w);
            if i % 2 == 0 {
                left.add(*s, *d, b.index(*d), *w);
            } else {
                right.add(*s, *d, b.index(*d), *w);
            }
        }
        left.merge(&right);
        assert_eq!(left.calls, all.calls);
        assert_eq!(left.sum_ms, all.sum_ms);
        assert_eq!(left.min_ms, 1.0);
        assert_eq!(left.max_ms, 12.0);
        assert_eq!(
            left.bucket_counts(StatusCode::Unset, 3),
            vec![1.0, 0.5, 0.0, 0.0]
        );
        assert_eq!(
            left.bucket_counts(StatusCode::Error, 3),
            vec![0.0, 2.0, 0.0, 0.0]
        );
        assert_eq!(
            left.bucket_counts(StatusCode::Ok, 3),
            vec![0.0, 0.0, 0.0, 1.0]
        );
        assert_eq!(left.errors(), 2.0);
        assert_eq!(left.total_calls(), 4.5);
    }

    #[test]
    fn exemplars_keep_the_slowest_and_slowest_failed_whatever_the_order() {
        let spans = [
            (StatusCode::Unset, 5.0, 1u8),
            (StatusCode::Error, 30.0, 2),
            (StatusCode::Ok, 90.0, 3),
            (StatusCode::Error, 7.0, 4),
            (StatusCode::Unset, 90.0, 5),
        ];
        let add = |a: &mut RedAgg, (s, d, id): (StatusCode, f64, u8)| {
            a.add_span(s, d, 0, 1.0, &[id; 16], &[id; 8])
        };
        let mut forward = RedAgg::default();
        let mut left = RedAgg::default();
        let mut right = RedAgg::default();
        for (i, sp) in spans.iter().enumerate() {
            add(&mut forward, *sp);
            add(if i % 2 == 0 { &mut right } else { &mut left }, *sp);
        }
        left.merge(&right);
        assert_eq!(left.exemplars, forward.exemplars);
        let e = forward.exemplars;
        // Two spans of 90 ms: the tie goes to the larger ids, in any order.
        assert_eq!(e.slowest.map(|x| x.span_id), Some([5; 8]));
        assert_eq!(
            e.failed.map(|x| (x.span_id, x.duration_ms)),
            Some(([2; 8], 30.0))
        );
    }
}
