//! The zero-copy scanner of `ExportMetricsServiceRequest`.
//!
//! Walks the protobuf wire format directly, in the style of [`super::trace`]: the whole request
//! is validated as prost would (framing, wire types of known fields, packed and unpacked repeated
//! scalars, UTF-8 of every string, nesting depth), unknown fields are skipped by wire type, and
//! names, units and attribute strings are kept as offsets into the request. Semantics equal
//! [`super::metrics_prost`] (the oracle): the last occurrence of a scalar wins, repeated
//! messages merge as prost merges them — including a `Metric` whose data oneof occurs several
//! times (the last run of one kind wins, as prost replaces a oneof of another kind) — and the
//! rules of [`super::metrics`] decide what a point keeps.

mod fields;

use super::common::{key_value, resource_attributes, scope_parts, Kind, Slot, Value};
use super::metrics::{
    format_scalar, push_histogram_buckets, Canon, OriginHasher, Tally, FLAG_NO_RECORDED_VALUE,
};
use super::wire::{container_children, container_header, malformed, Container, Fault, Reader};
use super::{DecodeError, MetricsDecodeOutcome};
use bytes::Bytes;
use fields::{buckets, exemplar, repeated_fixed64, value_at_quantile, zigzag32};
use redwatch_engine::metric_model::{
    ExpHistogramRecord, HistogramRecord, MStr, MStrError, MetricBatch, MetricKind, MetricRecord,
    MetricResource, PointRecord, PointValue, SummaryRecord, Temporality,
};
use redwatch_engine::model::{SourceId, UnixNanos};
use redwatch_engine::time::TimePolicy;

const SERVICE_NAME: &[u8] = b"service.name";

fn str_fault(field: &'static str) -> impl Fn(MStrError) -> Fault {
    move |e| match e {
        MStrError::InvalidUtf8 => Fault::invalid_utf8(field),
        MStrError::OutOfBounds => malformed("string beyond the size limit of a batch", 0),
    }
}

/// Decodes an `ExportMetricsServiceRequest` (see [`super::decode_metrics_proto`]).
pub(super) fn decode(
    buf: Bytes,
    source: SourceId,
    policy: &TimePolicy,
    now: UnixNanos,
) -> Result<MetricsDecodeOutcome, DecodeError> {
    if u32::try_from(buf.len()).is_err() {
        return Err(DecodeError::Malformed(
            "request larger than 4 GiB".to_string(),
        ));
    }
    let data = buf.clone();
    let mut sc = Scanner {
        base: data.as_ptr() as usize,
        data: &data,
        policy,
        now,
        batch: MetricBatch::new(source, buf),
        tally: Tally::default(),
        fmt: String::new(),
        bounds: Vec::new(),
        counts: Vec::new(),
        pos: Vec::new(),
        neg: Vec::new(),
        quantiles: Vec::new(),
    };
    sc.request(Reader::new(&data))
        .map_err(|f| f.into_error(&data))?;
    let Scanner { batch, tally, .. } = sc;
    Ok(tally.outcome(batch, policy))
}

/// Where the batch stood when a metric began (to undo the points of a replaced oneof run).
#[derive(Clone, Copy)]
struct Mark {
    points: usize,
    attrs: usize,
    histograms: usize,
    exp_histograms: usize,
    summaries: usize,
    f64s: usize,
    u64s: usize,
    tally: Tally,
}

/// What the fields of one data point said.
#[derive(Default)]
struct PointFields {
    start: u64,
    time: u64,
    flags: u32,
    number: Option<f64>,
    count: u64,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    scale: i32,
    zero_count: u64,
    zero_threshold: f64,
    pos_offset: i32,
    neg_offset: i32,
}

struct Scanner<'s> {
    base: usize,
    data: &'s [u8],
    policy: &'s TimePolicy,
    now: UnixNanos,
    batch: MetricBatch,
    tally: Tally,
    fmt: String,
    /// Per-point scratch for repeated scalars (they may come in several packed runs).
    bounds: Vec<f64>,
    counts: Vec<u64>,
    pos: Vec<u64>,
    neg: Vec<u64>,
    quantiles: Vec<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PointKind {
    Number,
    Histogram,
    Exp,
    Summary,
}

const RESOURCE_METRICS: Container = Container {
    header: "ResourceMetrics.resource",
    children: "ResourceMetrics.scope_metrics",
    schema_url: "ResourceMetrics.schema_url",
};

const SCOPE_METRICS: Container = Container {
    header: "ScopeMetrics.scope",
    children: "ScopeMetrics.metrics",
    schema_url: "ScopeMetrics.schema_url",
};

impl Scanner<'_> {
    /// The bytes of a string value (its address is in the request).
    fn bytes_at(&self, addr: u64, len: u32) -> &[u8] {
        let off = (addr as usize).wrapping_sub(self.base);
        self.data.get(off..off + len as usize).unwrap_or(&[])
    }

    fn mstr(&self, s: &[u8], field: &'static str) -> Result<MStr, Fault> {
        let off = (s.as_ptr() as usize).wrapping_sub(self.base);
        self.batch
            .request_str(off, s.len())
            .map_err(str_fault(field))
    }

    fn canon(&self, v: Value) -> Canon<'_> {
        match v.kind {
            Kind::Unset => Canon::Unset,
            Kind::Other => Canon::Other,
            Kind::Str => Canon::Str(self.bytes_at(v.bits, v.len)),
            Kind::Bool => Canon::Bool(v.bits != 0),
            Kind::Int => Canon::Int(v.bits as i64),
            Kind::Double => Canon::Double(v.bits),
        }
    }

    fn request(&mut self, mut r: Reader<'_>) -> Result<(), Fault> {
        while r.has_more() {
            let (f, wt) = r.key()?;
            match f {
                1 => {
                    let (m, d) =
                        r.message(wt, "ExportMetricsServiceRequest.resource_metrics", 0)?;
                    self.resource_metrics(m, d)?;
                }
                _ => r.skip(f, wt, 0)?,
            }
        }
        Ok(())
    }

    fn resource_metrics(&mut self, r: Reader<'_>, depth: u32) -> Result<(), Fault> {
        // Pass 1: the resource (it may follow the scopes) and this level's framing.
        let mut origin = OriginHasher::new();
        let mut service = Slot::EMPTY;
        container_header(r, depth, &RESOURCE_METRICS, |m, d| {
            self.resource(m, d, &mut origin, &mut service)
        })?;
        let service_name = match service.value {
            v if service.found && v.kind == Kind::Str => {
                let s = self.bytes_at(v.bits, v.len);
                Some(self.mstr(s, "service.name")?)
            }
            _ => None,
        };
        // Pass 2: the scopes.
        container_children(r, depth, &RESOURCE_METRICS, |m, d| {
            self.scope_metrics(m, d, service_name, &origin)
        })
    }

    fn resource(
        &mut self,
        r: Reader<'_>,
        depth: u32,
        origin: &mut OriginHasher,
        service: &mut Slot,
    ) -> Result<(), Fault> {
        resource_attributes(r, depth, |a| {
            origin.attr(a.key, self.canon(a.value));
            if a.key == SERVICE_NAME {
                service.offer(a.value);
            }
        })
    }

    fn scope_metrics(
        &mut self,
        r: Reader<'_>,
        depth: u32,
        service_name: Option<MStr>,
        origin: &OriginHasher,
    ) -> Result<(), Fault> {
        let mut name: &[u8] = &[];
        let mut version: &[u8] = &[];
        container_header(r, depth, &SCOPE_METRICS, |m, d| {
            scope_parts(m, d, &mut name, &mut version, |_| {})
        })?;
        let resource = u32::try_from(self.batch.resources.len())
            .map_err(|_| malformed("too many scopes", r.pos()))?;
        self.batch.resources.push(MetricResource {
            service_name,
            origin: origin.with_scope(name, version),
        });
        container_children(r, depth, &SCOPE_METRICS, |m, d| self.metric(m, d, resource))
    }

    fn mark(&self) -> Mark {
        let b = &self.batch;
        Mark {
            points: b.points.len(),
            attrs: b.attrs.len(),
            histograms: b.histograms.len(),
            exp_histograms: b.exp_histograms.len(),
            summaries: b.summaries.len(),
            f64s: b.f64s.len(),
            u64s: b.u64s.len(),
            tally: self.tally,
        }
    }

    fn undo(&mut self, m: &Mark) {
        let b = &mut self.batch;
        b.points.truncate(m.points);
        b.attrs.truncate(m.attrs);
        b.histograms.truncate(m.histograms);
        b.exp_histograms.truncate(m.exp_histograms);
        b.summaries.truncate(m.summaries);
        b.f64s.truncate(m.f64s);
        b.u64s.truncate(m.u64s);
        self.tally = m.tally;
    }

    fn metric(&mut self, mut r: Reader<'_>, depth: u32, resource: u32) -> Result<(), Fault> {
        let metric = u32::try_from(self.batch.metrics.len())
            .map_err(|_| malformed("too many metrics", r.pos()))?;
        let mark = self.mark();
        let mut name: &[u8] = r.empty();
        let mut unit: &[u8] = r.empty();
        // The data oneof: its field number, and the run's temporality / monotonic flag.
        let mut run = 0u32;
        let mut temporality = 0i32;
        let mut monotonic = false;
        while r.has_more() {
            let (f, wt) = r.key()?;
            match f {
                1 => name = r.string(wt, "Metric.name")?,
                2 => {
                    r.string(wt, "Metric.description")?;
                }
                3 => unit = r.string(wt, "Metric.unit")?,
                12 => {
                    let (m, d) = r.message(wt, "Metric.metadata", depth)?;
                    key_value(m, d)?;
                }
                5 | 7 | 9 | 10 | 11 => {
                    let field = match f {
                        5 => "Metric.gauge",
                        7 => "Metric.sum",
                        9 => "Metric.histogram",
                        10 => "Metric.exponential_histogram",
                        _ => "Metric.summary",
                    };
                    let (m, d) = r.message(wt, field, depth)?;
                    if f != run {
                        // prost replaces a oneof of another kind: drop what the old run added.
                        self.undo(&mark);
                        run = f;
                        temporality = 0;
                        monotonic = false;
                    }
                    let kind = match f {
                        5 | 7 => PointKind::Number,
                        9 => PointKind::Histogram,
                        10 => PointKind::Exp,
                        _ => PointKind::Summary,
                    };
                    self.data(m, d, metric, (f, kind), &mut temporality, &mut monotonic)?;
                }
                _ => r.skip(f, wt, depth)?,
            }
        }
        let (kind, temporality) = match run {
            0 => return Ok(()),
            5 => (MetricKind::Gauge, Temporality::Unspecified),
            7 if monotonic => (MetricKind::Counter, Temporality::from_i32(temporality)),
            7 => (
                MetricKind::UpDownCounter,
                Temporality::from_i32(temporality),
            ),
            9 => (MetricKind::Histogram, Temporality::from_i32(temporality)),
            10 => (
                MetricKind::ExponentialHistogram,
                Temporality::from_i32(temporality),
            ),
            _ => (MetricKind::Summary, Temporality::Unspecified),
        };
        let rec = MetricRecord {
            name: self.mstr(name, "Metric.name")?,
            unit: self.mstr(unit, "Metric.unit")?,
            kind,
            temporality,
            resource,
        };
        self.batch.metrics.push(rec);
        Ok(())
    }

    /// `Gauge`, `Sum`, `Histogram`, `ExponentialHistogram` or `Summary`.
    fn data(
        &mut self,
        mut r: Reader<'_>,
        depth: u32,
        metric: u32,
        (field, kind): (u32, PointKind),
        temporality: &mut i32,
        monotonic: &mut bool,
    ) -> Result<(), Fault> {
        // Sum (7), Histogram (9) and ExponentialHistogram (10) carry a temporality; Sum also
        // `is_monotonic`. Gauge and Summary have only their points.
        let has_temporality = matches!(field, 7 | 9 | 10);
        let is_sum = field == 7;
        while r.has_more() {
            let (f, wt) = r.key()?;
            match f {
                1 => {
                    let (m, d) = r.message(wt, "data_points", depth)?;
                    self.point(m, d, metric, kind)?;
                }
                2 if has_temporality || is_sum => {
                    *temporality = r.varint_field(wt, "aggregation_temporality")? as i32;
                }
                3 if is_sum => {
                    *monotonic = r.varint_field(wt, "Sum.is_monotonic")? != 0;
                }
                _ => r.skip(f, wt, depth)?,
            }
        }
        Ok(())
    }

    fn point(
        &mut self,
        mut r: Reader<'_>,
        depth: u32,
        metric: u32,
        kind: PointKind,
    ) -> Result<(), Fault> {
        let attrs_start = self.batch.attrs.len();
        let attrs_field = match kind {
            PointKind::Number | PointKind::Summary => 7,
            PointKind::Histogram => 9,
            PointKind::Exp => 1,
        };
        let mut p = PointFields::default();
        self.bounds.clear();
        self.counts.clear();
        self.pos.clear();
        self.neg.clear();
        self.quantiles.clear();
        while r.has_more() {
            let (f, wt) = r.key()?;
            if f == attrs_field {
                let (m, d) = r.message(wt, "DataPoint.attributes", depth)?;
                let a = key_value(m, d)?;
                self.push_attr(a.key, a.value)?;
                continue;
            }
            match (kind, f) {
                (_, 2) => p.start = r.fixed64_field(wt, "DataPoint.start_time_unix_nano")?,
                (_, 3) => p.time = r.fixed64_field(wt, "DataPoint.time_unix_nano")?,
                (PointKind::Number, 4) => {
                    p.number = Some(f64::from_bits(
                        r.fixed64_field(wt, "NumberDataPoint.as_double")?,
                    ))
                }
                (PointKind::Number, 6) => {
                    p.number = Some(r.fixed64_field(wt, "NumberDataPoint.as_int")? as i64 as f64)
                }
                (PointKind::Number, 5) | (PointKind::Histogram, 8) | (PointKind::Exp, 11) => {
                    let (m, d) = r.message(wt, "DataPoint.exemplars", depth)?;
                    exemplar(m, d)?;
                }
                (PointKind::Number, 8)
                | (PointKind::Histogram, 10)
                | (PointKind::Exp, 10)
                | (PointKind::Summary, 8) => {
                    p.flags = r.varint_field(wt, "DataPoint.flags")? as u32;
                }
                (PointKind::Histogram | PointKind::Exp | PointKind::Summary, 4) => {
                    p.count = r.fixed64_field(wt, "DataPoint.count")?
                }
                (PointKind::Histogram | PointKind::Exp, 5) => {
                    p.sum = Some(f64::from_bits(r.fixed64_field(wt, "DataPoint.sum")?))
                }
                (PointKind::Summary, 5) => {
                    p.sum = Some(f64::from_bits(r.fixed64_field(wt, "SummaryDataPoint.sum")?))
                }
                (PointKind::Histogram, 6) => {
                    repeated_fixed64(&mut r, wt, "HistogramDataPoint.bucket_counts", |v| {
                        self.counts.push(v)
                    })?
                }
                (PointKind::Histogram, 7) => {
                    repeated_fixed64(&mut r, wt, "HistogramDataPoint.explicit_bounds", |v| {
                        self.bounds.push(f64::from_bits(v))
                    })?
                }
                (PointKind::Histogram, 11) | (PointKind::Exp, 12) => {
                    p.min = Some(f64::from_bits(r.fixed64_field(wt, "DataPoint.min")?))
                }
                (PointKind::Histogram, 12) | (PointKind::Exp, 13) => {
                    p.max = Some(f64::from_bits(r.fixed64_field(wt, "DataPoint.max")?))
                }
                (PointKind::Exp, 6) => {
                    let v = r.varint_field(wt, "ExponentialHistogramDataPoint.scale")? as u32;
                    p.scale = zigzag32(v);
                }
                (PointKind::Exp, 7) => {
                    p.zero_count =
                        r.fixed64_field(wt, "ExponentialHistogramDataPoint.zero_count")?
                }
                (PointKind::Exp, 8) => {
                    let (m, d) = r.message(wt, "ExponentialHistogramDataPoint.positive", depth)?;
                    buckets(m, d, &mut p.pos_offset, &mut self.pos)?;
                }
                (PointKind::Exp, 9) => {
                    let (m, d) = r.message(wt, "ExponentialHistogramDataPoint.negative", depth)?;
                    buckets(m, d, &mut p.neg_offset, &mut self.neg)?;
                }
                (PointKind::Exp, 14) => {
                    p.zero_threshold = f64::from_bits(
                        r.fixed64_field(wt, "ExponentialHistogramDataPoint.zero_threshold")?,
                    )
                }
                (PointKind::Summary, 6) => {
                    let (m, d) = r.message(wt, "SummaryDataPoint.quantile_values", depth)?;
                    let (q, v) = value_at_quantile(m, d)?;
                    self.quantiles.push(q);
                    self.quantiles.push(v);
                }
                _ => r.skip(f, wt, depth)?,
            }
        }
        let keep = self.tally.admit(p.time, self.policy, self.now)
            && p.flags & FLAG_NO_RECORDED_VALUE == 0
            && (kind != PointKind::Number || p.number.is_some_and(f64::is_finite));
        if !keep {
            self.batch.attrs.truncate(attrs_start);
            return Ok(());
        }
        let b = &mut self.batch;
        let value = match kind {
            PointKind::Number => PointValue::Number(p.number.unwrap_or(0.0)),
            PointKind::Histogram => {
                let (bounds, counts) = push_histogram_buckets(b, &self.bounds, &self.counts);
                b.histograms.push(HistogramRecord {
                    count: p.count,
                    sum: p.sum,
                    min: p.min,
                    max: p.max,
                    bounds,
                    counts,
                });
                PointValue::Histogram((b.histograms.len() - 1) as u32)
            }
            PointKind::Exp => {
                let positive = b.push_u64s(self.pos.iter().copied());
                let negative = b.push_u64s(self.neg.iter().copied());
                b.exp_histograms.push(ExpHistogramRecord {
                    count: p.count,
                    sum: p.sum,
                    min: p.min,
                    max: p.max,
                    scale: p.scale,
                    zero_count: p.zero_count,
                    zero_threshold: p.zero_threshold,
                    positive_offset: p.pos_offset,
                    positive,
                    negative_offset: p.neg_offset,
                    negative,
                });
                PointValue::ExpHistogram((b.exp_histograms.len() - 1) as u32)
            }
            PointKind::Summary => {
                let quantiles = b.push_f64s(self.quantiles.iter().copied());
                b.summaries.push(SummaryRecord {
                    count: p.count,
                    sum: p.sum.unwrap_or(0.0),
                    quantiles,
                });
                PointValue::Summary((b.summaries.len() - 1) as u32)
            }
        };
        b.points.push(PointRecord {
            metric,
            start: p.start,
            time: p.time,
            attrs: (attrs_start as u32, b.attrs.len() as u32),
            value,
        });
        Ok(())
    }

    fn push_attr(&mut self, key: &[u8], v: Value) -> Result<(), Fault> {
        let value = match v.kind {
            Kind::Unset | Kind::Other => return Ok(()),
            Kind::Str => {
                let s = self.bytes_at(v.bits, v.len);
                self.mstr(s, "AnyValue.string_value")?
            }
            _ => {
                let mut fmt = std::mem::take(&mut self.fmt);
                format_scalar(&mut fmt, self.canon(v));
                let r = self.batch.arena_str(&fmt);
                self.fmt = fmt;
                r.map_err(str_fault("attribute value"))?
            }
        };
        let key = self.mstr(key, "KeyValue.key")?;
        self.batch.attrs.push((key, value));
        Ok(())
    }
}
