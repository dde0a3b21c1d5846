//! Builders of decoded data for tests and benches (the one place such fixtures live).
//!
//! They produce the same [`SpanBatch`] a decoder would, with the strings in the batch arena.

use crate::metric_model::{MetricBatch, PointValue};
use crate::model::{
    ResourceRecord, SourceId, SpanBatch, SpanKind, SpanRecord, StatusCode, UnixNanos,
};
use bytes::Bytes;

/// A span described with owned values.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanFixture {
    /// `None` = the resource has no `service.name`.
    pub service: Option<String>,
    pub name: String,
    pub kind: SpanKind,
    pub status: StatusCode,
    pub start: UnixNanos,
    pub end: UnixNanos,
    pub weight: f64,
    /// Values of the configured dimensions (`None` = absent).
    pub dims: Vec<Option<String>>,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// All zeros = a root span.
    pub parent_span_id: [u8; 8],
}

impl SpanFixture {
    /// A server span of `service`/`name` lasting `duration_ms` and ending at `end`.
    pub fn new(service: &str, name: &str, end: UnixNanos, duration_ms: f64) -> Self {
        let dur = (duration_ms * 1e6).round() as u64;
        SpanFixture {
            service: Some(service.to_string()),
            name: name.to_string(),
            kind: SpanKind::Server,
            status: StatusCode::Unset,
            start: end.saturating_sub(dur),
            end,
            weight: 1.0,
            dims: Vec::new(),
            trace_id: [0; 16],
            span_id: [0; 8],
            parent_span_id: [0; 8],
        }
    }

    /// Sets the trace, span and parent span ids.
    pub fn ids(mut self, trace_id: [u8; 16], span_id: [u8; 8], parent_span_id: [u8; 8]) -> Self {
        self.trace_id = trace_id;
        self.span_id = span_id;
        self.parent_span_id = parent_span_id;
        self
    }

    /// Sets the dimension values.
    pub fn dims(mut self, dims: &[Option<&str>]) -> Self {
        self.dims = dims.iter().map(|d| d.map(str::to_string)).collect();
        self
    }

    pub fn status(mut self, s: StatusCode) -> Self {
        self.status = s;
        self
    }

    pub fn kind(mut self, k: SpanKind) -> Self {
        self.kind = k;
        self
    }

    pub fn weight(mut self, w: f64) -> Self {
        self.weight = w;
        self
    }
}

/// Builds one batch holding `spans` (one resource per span), with `dims` values per span.
pub fn span_batch(source: SourceId, dims: u16, spans: &[SpanFixture]) -> SpanBatch {
    let mut b = SpanBatch::new(source, Bytes::new(), dims);
    for s in spans {
        let service_name = s
            .service
            .as_deref()
            .map(|v| b.arena_str(v).expect("fixture string fits"));
        let resource = b.resources.len() as u32;
        b.resources.push(ResourceRecord { service_name });
        let name = b.arena_str(&s.name).expect("fixture string fits");
        let first_dim = b.dim_values.len() as u32;
        for i in 0..dims as usize {
            let v = s
                .dims
                .get(i)
                .cloned()
                .flatten()
                .map(|v| b.arena_str(&v).expect("fixture string fits"));
            b.dim_values.push(v);
        }
        b.spans.push(SpanRecord {
            trace_id: s.trace_id,
            span_id: s.span_id,
            parent_span_id: s.parent_span_id,
            start: s.start,
            end: s.end,
            weight: s.weight,
            name,
            resource,
            dims: first_dim,
            kind: s.kind,
            status: s.status,
        });
    }
    b
}

/// Everything a metrics batch says about one point, resolved (strings, payloads; floats as
/// bits, so NaN compares).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointView {
    pub service: Option<String>,
    pub origin: u64,
    pub name: String,
    pub unit: String,
    pub kind: &'static str,
    pub temporality: u8,
    pub start: u64,
    pub time: u64,
    pub attrs: Vec<(String, String)>,
    pub value: Vec<u64>,
}

fn bits(x: Option<f64>) -> u64 {
    x.map_or(u64::MAX - 1, f64::to_bits)
}

/// Resolves every point of a batch into a [`PointView`] (panics on a dangling reference: for
/// tests and fuzzing, which compare decoders' output).
pub fn metric_points_view(b: &MetricBatch) -> Vec<PointView> {
    b.points
        .iter()
        .map(|p| {
            let m = b.metric_of(p).expect("point without metric");
            let r = b.resource_of(m).expect("metric without resource");
            let value = match p.value {
                PointValue::Number(v) => vec![0, v.to_bits()],
                PointValue::Histogram(i) => {
                    let h = &b.histograms[i as usize];
                    let (bounds, counts) = b.buckets_of(h);
                    let mut v = vec![1, h.count, bits(h.sum), bits(h.min), bits(h.max)];
                    v.push(bounds.len() as u64);
                    v.extend(bounds.iter().map(|x| x.to_bits()));
                    v.extend(counts);
                    v
                }
                PointValue::ExpHistogram(i) => {
                    let h = &b.exp_histograms[i as usize];
                    let (pos, neg) = b.exp_buckets_of(h);
                    let mut v = vec![
                        2,
                        h.count,
                        bits(h.sum),
                        bits(h.min),
                        bits(h.max),
                        h.scale as u64,
                        h.zero_count,
                        h.zero_threshold.to_bits(),
                        h.positive_offset as u64,
                        pos.len() as u64,
                        h.negative_offset as u64,
                    ];
                    v.extend(pos);
                    v.extend(neg);
                    v
                }
                PointValue::Summary(i) => {
                    let s = &b.summaries[i as usize];
                    let mut v = vec![3, s.count, s.sum.to_bits()];
                    v.extend(b.quantiles_of(s).iter().map(|x| x.to_bits()));
                    v
                }
            };
            PointView {
                service: r.service_name.map(|s| b.str(s).to_string()),
                origin: r.origin,
                name: b.str(m.name).to_string(),
                unit: b.str(m.unit).to_string(),
                kind: m.kind.as_str(),
                temporality: m.temporality as u8,
                start: p.start,
                time: p.time,
                attrs: b
                    .attrs_of(p)
                    .iter()
                    .map(|(k, v)| (b.str(*k).to_string(), b.str(*v).to_string()))
                    .collect(),
                value,
            }
        })
        .collect()
}
