//! Metrics requests: the rules both metric decoders share (what a point keeps, when it is
//! rejected, how its origin is identified), and the outcome they produce.
//!
//! The protobuf path is the wire scanner in [`super::metrics_wire`]; the prost conversion in
//! [`super::metrics_prost`] is its test oracle; OTLP/JSON is parsed with the serde types and
//! re-encoded for the scanner, so every path shares one set of semantics:
//! - a point is rejected (and counted) for a zero time, a time too far ahead, or a purged window;
//! - a point flagged `NO_RECORDED_VALUE`, a number point without a (finite) value, and a metric
//!   without data add nothing (they are accepted, not windowed);
//! - attributes keep scalar values in string form (ints and doubles formatted as Rust does,
//!   bools `true`/`false`); arrays, maps, bytes and empty values are left out;
//! - an explicit histogram whose bucket counts do not number `bounds + 1` keeps count, sum, min
//!   and max but no buckets;
//! - the origin of a point (resource attributes + scope name/version) is a hash of the values as
//!   sent, so one series from two instances stays two streams for cumulative-to-delta conversion.

use super::{MetricsDecodeOutcome, Rejections};
use redwatch_engine::metric_model::MetricBatch;
use redwatch_engine::model::UnixNanos;
use redwatch_engine::time::{TimeCheck, TimePolicy};
use std::hash::Hasher;

/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
pub(super) const FLAG_NO_RECORDED_VALUE: u32 = 1;

/// An attribute value as both decoders see it, for the origin hash.
#[derive(Debug, Clone, Copy)]
pub(super) enum Canon<'a> {
    Unset,
    Other,
    Str(&'a [u8]),
    Bool(bool),
    Int(i64),
    Double(u64),
}

/// Hash of a resource's attributes and a scope's name and version (deterministic: SipHash with
/// fixed keys, so the two decoders and restarts agree).
#[derive(Clone)]
pub(super) struct OriginHasher(std::hash::DefaultHasher);

impl OriginHasher {
    pub(super) fn new() -> Self {
        OriginHasher(std::hash::DefaultHasher::new())
    }

    pub(super) fn attr(&mut self, key: &[u8], v: Canon<'_>) {
        let h = &mut self.0;
        h.write(key);
        h.write_u8(0xff);
        match v {
            Canon::Unset => h.write_u8(0),
            Canon::Other => h.write_u8(1),
            Canon::Str(s) => {
                h.write_u8(2);
                h.write(s);
                h.write_u8(0xff);
            }
            Canon::Bool(b) => h.write_u8(if b { 4 } else { 3 }),
            Canon::Int(i) => {
                h.write_u8(5);
                h.write_i64(i);
            }
            Canon::Double(d) => {
                h.write_u8(6);
                h.write_u64(d);
            }
        }
    }

    /// The origin of points of this resource under a scope.
    pub(super) fn with_scope(&self, name: &[u8], version: &[u8]) -> u64 {
        let mut h = self.0.clone();
        h.write_u8(0xfe);
        h.write(name);
        h.write_u8(0xff);
        h.write(version);
        h.finish()
    }
}

/// Tallies received / rejected points and applies the time rules.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Tally {
    pub(super) received: u64,
    pub(super) rejected: Rejections,
}

impl Tally {
    /// Counts a point; true when its time is acceptable.
    pub(super) fn admit(&mut self, time: UnixNanos, policy: &TimePolicy, now: UnixNanos) -> bool {
        self.received += 1;
        match policy.check(time, now) {
            TimeCheck::Ok => true,
            TimeCheck::Invalid => {
                self.rejected.invalid_timestamp += 1;
                false
            }
            TimeCheck::Future => {
                self.rejected.future_timestamp += 1;
                false
            }
            TimeCheck::Late => {
                self.rejected.late += 1;
                false
            }
        }
    }

    pub(super) fn outcome(self, batch: MetricBatch, policy: &TimePolicy) -> MetricsDecodeOutcome {
        MetricsDecodeOutcome {
            batch,
            received: self.received,
            accepted: self.received - self.rejected.total(),
            rejected: self.rejected,
            message: super::point_rejection_message(&self.rejected, policy),
        }
    }
}

/// Pushes an explicit histogram point's bucket bounds and counts to `b` when they agree (counts
/// number `bounds + 1`); else none (the point keeps count, sum, min and max only). Returns the
/// `(bounds, counts)` ranges for the
/// [`HistogramRecord`](redwatch_engine::metric_model::HistogramRecord).
pub(super) fn push_histogram_buckets(
    b: &mut MetricBatch,
    bounds: &[f64],
    counts: &[u64],
) -> ((u32, u32), (u32, u32)) {
    if counts.len() == bounds.len() + 1 {
        (
            b.push_f64s(bounds.iter().copied()),
            b.push_u64s(counts.iter().copied()),
        )
    } else {
        ((0, 0), (0, 0))
    }
}

/// Formats a non-string scalar attribute value (as the trace decoder does for dimensions).
pub(super) fn format_scalar(out: &mut String, v: Canon<'_>) -> bool {
    use std::fmt::Write;
    out.clear();
    match v {
        Canon::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Canon::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Canon::Double(d) => {
            let _ = write!(out, "{}", f64::from_bits(d));
        }
        Canon::Unset | Canon::Other | Canon::Str(_) => return false,
    }
    true
}
