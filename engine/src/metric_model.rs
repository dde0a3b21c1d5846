//! The compact internal form of decoded OTLP metric data points.
//!
//! A [`MetricBatch`] is to metrics what [`crate::model::SpanBatch`] is to spans: it keeps the
//! request buffer and refers to names, units and attribute strings inside it by offset
//! ([`MStr`]), so decoding allocates nothing per point in the steady state. Points are plain
//! records in one `Vec`; the variable-length parts (attributes, bucket bounds and counts,
//! quantiles) live in shared side vectors and are referenced by range. Every `MStr` handed out is
//! valid UTF-8 — that is checked once, when it is created, which is why the constructors live
//! here and the fields are private. This module owns no semantics beyond "what a point says":
//! temporality conversion and windowing belong to the metrics operator.

use crate::model::{SourceId, StrError, StrRef, UnixNanos};
use bytes::Bytes;
use std::ops::Range;

/// A validated UTF-8 string inside a [`MetricBatch`]: the span model's [`StrRef`].
pub type MStr = StrRef;

/// The kind of an OTLP metric, as the operator distinguishes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum MetricKind {
    Gauge = 0,
    /// A monotonic `Sum` (an SDK counter).
    Counter = 1,
    /// A non-monotonic `Sum` (an SDK up-down counter).
    UpDownCounter = 2,
    Histogram = 3,
    ExponentialHistogram = 4,
    Summary = 5,
}

impl MetricKind {
    pub const ALL: [MetricKind; 6] = [
        MetricKind::Gauge,
        MetricKind::Counter,
        MetricKind::UpDownCounter,
        MetricKind::Histogram,
        MetricKind::ExponentialHistogram,
        MetricKind::Summary,
    ];

    /// The `metric_type` column value.
    pub fn as_str(&self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
            MetricKind::UpDownCounter => "up_down_counter",
            MetricKind::Histogram => "histogram",
            MetricKind::ExponentialHistogram => "exponential_histogram",
            MetricKind::Summary => "summary",
        }
    }
}

/// OTLP `AggregationTemporality` (gauges and summaries have none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Temporality {
    #[default]
    Unspecified = 0,
    Delta = 1,
    Cumulative = 2,
}

impl Temporality {
    pub fn from_i32(v: i32) -> Temporality {
        match v {
            1 => Temporality::Delta,
            2 => Temporality::Cumulative,
            _ => Temporality::Unspecified,
        }
    }
}

/// One metric (name, kind, …) of a request; its points refer to it by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricRecord {
    pub name: MStr,
    pub unit: MStr,
    pub kind: MetricKind,
    pub temporality: Temporality,
    /// Index into [`MetricBatch::resources`].
    pub resource: u32,
}

/// What a resource (and scope) contributes to its points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricResource {
    /// `service.name`, if the resource has a string one.
    pub service_name: Option<MStr>,
    /// A hash of the resource attributes and the instrumentation scope (name, version): points
    /// of one series from different origins (instances of a service) are different streams for
    /// cumulative-to-delta conversion, then add up in one window row.
    pub origin: u64,
}

/// The value part of a point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PointValue {
    /// Gauge and sum points (`as_int` converted to f64).
    Number(f64),
    /// Index into [`MetricBatch::histograms`].
    Histogram(u32),
    /// Index into [`MetricBatch::exp_histograms`].
    ExpHistogram(u32),
    /// Index into [`MetricBatch::summaries`].
    Summary(u32),
}

/// One decoded data point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointRecord {
    /// Index into [`MetricBatch::metrics`].
    pub metric: u32,
    /// `start_time_unix_nano` (0 = not set).
    pub start: UnixNanos,
    /// `time_unix_nano`, the point's event time.
    pub time: UnixNanos,
    /// Range in [`MetricBatch::attrs`] of the point's attributes (string form, as sent).
    pub attrs: (u32, u32),
    pub value: PointValue,
}

/// An explicit-bucket histogram point's payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistogramRecord {
    pub count: u64,
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Range in [`MetricBatch::f64s`] of the bucket bounds.
    pub bounds: (u32, u32),
    /// Range in [`MetricBatch::u64s`] of the bucket counts.
    pub counts: (u32, u32),
}

/// An exponential histogram point's payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExpHistogramRecord {
    pub count: u64,
    pub sum: Option<f64>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub scale: i32,
    pub zero_count: u64,
    pub zero_threshold: f64,
    pub positive_offset: i32,
    /// Range in [`MetricBatch::u64s`].
    pub positive: (u32, u32),
    pub negative_offset: i32,
    /// Range in [`MetricBatch::u64s`].
    pub negative: (u32, u32),
}

/// A summary point's payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SummaryRecord {
    pub count: u64,
    pub sum: f64,
    /// Range in [`MetricBatch::f64s`] of `quantile, value` pairs (two f64s per quantile).
    pub quantiles: (u32, u32),
}

/// Decoded points of one request (or one Kafka message), plus the buffers their strings live in.
#[derive(Debug, Clone)]
pub struct MetricBatch {
    pub source: SourceId,
    buf: Bytes,
    arena: Vec<u8>,
    pub resources: Vec<MetricResource>,
    pub metrics: Vec<MetricRecord>,
    pub points: Vec<PointRecord>,
    /// Point attributes as (key, value) strings; non-string values formatted into the arena.
    pub attrs: Vec<(MStr, MStr)>,
    pub histograms: Vec<HistogramRecord>,
    pub exp_histograms: Vec<ExpHistogramRecord>,
    pub summaries: Vec<SummaryRecord>,
    pub f64s: Vec<f64>,
    pub u64s: Vec<u64>,
}

/// One point with everything it refers to, for building batches by hand (tests, benches, the
/// workload generator): see [`MetricBatch::push_point`].
#[derive(Debug, Clone, Copy)]
pub struct PointSpec<'a> {
    pub service: Option<&'a str>,
    pub origin: u64,
    pub name: &'a str,
    pub unit: &'a str,
    pub kind: MetricKind,
    pub temporality: Temporality,
    pub start: UnixNanos,
    pub time: UnixNanos,
    pub attrs: &'a [(&'a str, &'a str)],
    pub value: ValueSpec<'a>,
}

/// The value of a [`PointSpec`].
#[derive(Debug, Clone, Copy)]
pub enum ValueSpec<'a> {
    Number(f64),
    Histogram {
        count: u64,
        sum: Option<f64>,
        min: Option<f64>,
        max: Option<f64>,
        bounds: &'a [f64],
        counts: &'a [u64],
    },
    ExpHistogram {
        count: u64,
        sum: Option<f64>,
        scale: i32,
        zero_count: u64,
        positive_offset: i32,
        positive: &'a [u64],
        negative_offset: i32,
        negative: &'a [u64],
    },
    Summary {
        count: u64,
        sum: f64,
        /// `(quantile, value)` pairs.
        quantiles: &'a [(f64, f64)],
    },
}

/// Why a string could not be referenced.
pub type MStrError = StrError;

fn range((a, b): (u32, u32)) -> Range<usize> {
    a as usize..b as usize
}

impl MetricBatch {
    /// An empty batch whose `MStr`s will point into `buf`.
    pub fn new(source: SourceId, buf: Bytes) -> Self {
        MetricBatch {
            source,
            buf,
            arena: Vec::new(),
            resources: Vec::new(),
            metrics: Vec::new(),
            points: Vec::new(),
            attrs: Vec::new(),
            histograms: Vec::new(),
            exp_histograms: Vec::new(),
            summaries: Vec::new(),
            f64s: Vec::new(),
            u64s: Vec::new(),
        }
    }

    /// Validates `buf[start..start+len]` as UTF-8 and returns a reference to it.
    pub fn request_str(&self, start: usize, len: usize) -> Result<MStr, MStrError> {
        StrRef::in_request(&self.buf, start, len)
    }

    /// Copies `s` into the batch arena.
    pub fn arena_str(&mut self, s: &str) -> Result<MStr, MStrError> {
        StrRef::in_arena(&mut self.arena, s)
    }

    /// The string behind `r`.
    pub fn str(&self, r: MStr) -> &str {
        let len = r.len();
        let (in_arena, start) = r.place();
        let bytes = if in_arena {
            self.arena.get(start..start + len)
        } else {
            self.buf.get(start..start + len)
        };
        // Every MStr was validated when created; one from another batch shows as "".
        bytes
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// The attributes of a point.
    pub fn attrs_of(&self, p: &PointRecord) -> &[(MStr, MStr)] {
        self.attrs.get(range(p.attrs)).unwrap_or(&[])
    }

    pub fn metric_of(&self, p: &PointRecord) -> Option<&MetricRecord> {
        self.metrics.get(p.metric as usize)
    }

    pub fn resource_of(&self, m: &MetricRecord) -> Option<&MetricResource> {
        self.resources.get(m.resource as usize)
    }

    /// A histogram's bucket bounds and counts.
    pub fn buckets_of(&self, h: &HistogramRecord) -> (&[f64], &[u64]) {
        (
            self.f64s.get(range(h.bounds)).unwrap_or(&[]),
            self.u64s.get(range(h.counts)).unwrap_or(&[]),
        )
    }

    /// An exponential histogram's positive and negative bucket counts.
    pub fn exp_buckets_of(&self, h: &ExpHistogramRecord) -> (&[u64], &[u64]) {
        (
            self.u64s.get(range(h.positive)).unwrap_or(&[]),
            self.u64s.get(range(h.negative)).unwrap_or(&[]),
        )
    }

    /// A summary's `(quantile, value)` pairs, flattened.
    pub fn quantiles_of(&self, s: &SummaryRecord) -> &[f64] {
        self.f64s.get(range(s.quantiles)).unwrap_or(&[])
    }

    /// Appends f64s and returns their range.
    pub fn push_f64s(&mut self, v: impl IntoIterator<Item = f64>) -> (u32, u32) {
        let a = self.f64s.len() as u32;
        self.f64s.extend(v);
        (a, self.f64s.len() as u32)
    }

    /// Appends u64s and returns their range.
    pub fn push_u64s(&mut self, v: impl IntoIterator<Item = u64>) -> (u32, u32) {
        let a = self.u64s.len() as u32;
        self.u64s.extend(v);
        (a, self.u64s.len() as u32)
    }

    /// Appends one point, with a resource and a metric record of its own (strings go to the
    /// arena). Meant for hand-built batches; decoders share records between points.
    pub fn push_point(&mut self, p: &PointSpec<'_>) -> Result<(), MStrError> {
        let service_name = match p.service {
            Some(s) => Some(self.arena_str(s)?),
            None => None,
        };
        self.resources.push(MetricResource {
            service_name,
            origin: p.origin,
        });
        let name = self.arena_str(p.name)?;
        let unit = self.arena_str(p.unit)?;
        self.metrics.push(MetricRecord {
            name,
            unit,
            kind: p.kind,
            temporality: p.temporality,
            resource: (self.resources.len() - 1) as u32,
        });
        let a = self.attrs.len() as u32;
        for (k, v) in p.attrs {
            let kv = (self.arena_str(k)?, self.arena_str(v)?);
            self.attrs.push(kv);
        }
        let attrs = (a, self.attrs.len() as u32);
        let value = self.push_value(&p.value);
        self.points.push(PointRecord {
            metric: (self.metrics.len() - 1) as u32,
            start: p.start,
            time: p.time,
            attrs,
            value,
        });
        Ok(())
    }

    /// Stores a point's value (bucket arrays go to the shared vectors) and returns its record.
    fn push_value(&mut self, value: &ValueSpec<'_>) -> PointValue {
        match *value {
            ValueSpec::Number(v) => PointValue::Number(v),
            ValueSpec::Histogram {
                count,
                sum,
                min,
                max,
                bounds,
                counts,
            } => {
                let bounds = self.push_f64s(bounds.iter().copied());
                let counts = self.push_u64s(counts.iter().copied());
                self.histograms.push(HistogramRecord {
                    count,
                    sum,
                    min,
                    max,
                    bounds,
                    counts,
                });
                PointValue::Histogram((self.histograms.len() - 1) as u32)
            }
            ValueSpec::ExpHistogram {
                count,
                sum,
                scale,
                zero_count,
                positive_offset,
                positive,
                negative_offset,
                negative,
            } => {
                let positive = self.push_u64s(positive.iter().copied());
                let negative = self.push_u64s(negative.iter().copied());
                self.exp_histograms.push(ExpHistogramRecord {
                    count,
                    sum,
                    min: None,
                    max: None,
                    scale,
                    zero_count,
                    zero_threshold: 0.0,
                    positive_offset,
                    positive,
                    negative_offset,
                    negative,
                });
                PointValue::ExpHistogram((self.exp_histograms.len() - 1) as u32)
            }
            ValueSpec::Summary {
                count,
                sum,
                quantiles,
            } => {
                let quantiles = self.push_f64s(quantiles.iter().flat_map(|(q, v)| [*q, *v]));
                self.summaries.push(SummaryRecord {
                    count,
                    sum,
                    quantiles,
                });
                PointValue::Summary((self.summaries.len() - 1) as u32)
            }
        }
    }

    /// Largest event time in the batch.
    pub fn max_event_time(&self) -> Option<UnixNanos> {
        self.points.iter().map(|p| p.time).max()
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Shortens `r` to at most `max` bytes at a UTF-8 boundary; whether it was cut.
    fn truncate_ref(&self, r: &mut MStr, max: usize) -> bool {
        r.truncate(self.str(*r), max)
    }

    /// Caps every string the batch hands to operators (metric names and units, service names,
    /// attribute keys and values) at `max` bytes, cutting at a UTF-8 boundary. Returns how many
    /// were cut.
    pub fn truncate_strings(&mut self, max: usize) -> u64 {
        let mut n = 0;
        let mut metrics = std::mem::take(&mut self.metrics);
        for m in metrics.iter_mut() {
            n += self.truncate_ref(&mut m.name, max) as u64;
            n += self.truncate_ref(&mut m.unit, max) as u64;
        }
        self.metrics = metrics;
        let mut resources = std::mem::take(&mut self.resources);
        for r in resources.iter_mut() {
            if let Some(sn) = r.service_name.as_mut() {
                n += self.truncate_ref(sn, max) as u64;
            }
        }
        self.resources = resources;
        let mut attrs = std::mem::take(&mut self.attrs);
        for (k, v) in attrs.iter_mut() {
            n += self.truncate_ref(k, max) as u64;
            n += self.truncate_ref(v, max) as u64;
        }
        self.attrs = attrs;
        n
    }

    /// Bytes this batch keeps alive.
    pub fn retained_bytes(&self) -> usize {
        use std::mem::size_of;
        self.buf.len()
            + self.arena.capacity()
            + self.points.capacity() * size_of::<PointRecord>()
            + self.metrics.capacity() * size_of::<MetricRecord>()
            + self.resources.capacity() * size_of::<MetricResource>()
            + self.attrs.capacity() * size_of::<(MStr, MStr)>()
            + self.histograms.capacity() * size_of::<HistogramRecord>()
            + self.exp_histograms.capacity() * size_of::<ExpHistogramRecord>()
            + self.summaries.capacity() * size_of::<SummaryRecord>()
            + self.f64s.capacity() * 8
            + self.u64s.capacity() * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_resolve_and_bad_ones_are_refused() {
        let mut b = MetricBatch::new(SourceId(0), Bytes::from_static(b"xxcpu\xff"));
        let r = b.request_str(2, 3).unwrap();
        let a = b.arena_str("mem").unwrap();
        assert_eq!(b.str(r), "cpu");
        assert_eq!(b.str(a), "mem");
        assert_eq!(b.request_str(2, 4), Err(MStrError::InvalidUtf8));
        assert_eq!(b.request_str(5, 9), Err(MStrError::OutOfBounds));
    }
}
