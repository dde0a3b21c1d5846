//! What the Kafka sink writes (docs/kafka-exactness.md): a final RED window of one series in one
//! share as an OTLP `ExportMetricsServiceRequest` with the spanmetrics names, its message key,
//! and the partition a key belongs to. Pure: no I/O, no rdkafka.
//!
//! Key of a RED record: `<window_size>|<window_start_ns>|<share>|<series>`, where `<share>` is
//! the source partition (`<traces_topic>:<partition>`) or `otlp:<client_id>` for spans received
//! over OTLP, and `<series>` is `service|span name|SPAN_KIND_…|dim values…` with `|` and `\`
//! escaped by `\`. A re-emission of the window (late data, a replay after a crash, a new owner
//! of the partition) has the same key, so it replaces the earlier record in a compacted topic or
//! for any reader keeping the latest record per key; shares of one series add. The partition
//! depends on `<series>` only (murmur2, as Kafka's Java clients hash keys), so every share and
//! window of a series stays in one partition, in order.

use crate::spanmetrics::{self, kv, RedPoint};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use redwatch_operators::red::RedRow;

pub use crate::spanmetrics::{CALLS as CALLS_METRIC, DURATION as DURATION_METRIC};
/// Data point attribute naming the window spec (`10s`, `1m`), so rollups stay apart.
pub const WINDOW_SIZE_ATTR: &str = "redwatch.window_size";
/// Data point attribute naming the share (`otlp_spans:3`, `otlp:redwatch`).
pub const SHARE_ATTR: &str = "redwatch.share";

/// The share label of a row: `<traces_topic>:<partition>` for a Kafka partition's share,
/// `otlp:<client_id>` for spans received over OTLP.
pub fn share_label(share: Option<u32>, traces_topic: &str, client_id: &str) -> String {
    match share {
        Some(p) => format!("{traces_topic}:{p}"),
        None => format!("otlp:{client_id}"),
    }
}

fn push_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        if c == '|' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The message key of a RED row of share `share` (see [`share_label`]):
/// `<window_size>|<window_start_ns>|<share>|<series>`.
pub fn red_key(row: &RedRow, share: &str) -> String {
    let s = &row.series;
    let mut k = String::with_capacity(64);
    k.push_str(&row.window_size);
    k.push('|');
    k.push_str(&row.start.to_string());
    k.push('|');
    push_escaped(&mut k, share);
    k.push('|');
    push_escaped(&mut k, &s.service_name);
    k.push('|');
    push_escaped(&mut k, &s.span_name);
    k.push('|');
    k.push_str(s.kind.as_label());
    for d in s.dims.iter() {
        k.push('|');
        push_escaped(&mut k, d);
    }
    if s.overflow {
        k.push_str("|otel_metric_overflow");
    }
    k
}

/// The part of a key that picks the partition: the series of a RED key (after the third `|`;
/// window size, start and share never contain one), the whole key otherwise.
pub fn partition_part(key: &[u8]) -> &[u8] {
    let mut bars = key.iter().enumerate().filter(|(_, b)| **b == b'|');
    match (bars.next(), bars.next(), bars.next()) {
        (Some(_), Some(_), Some((i, _))) => &key[i + 1..],
        _ => key,
    }
}

/// Kafka's murmur2 (the Java clients' default partitioner hash).
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = 0x9747_b28c ^ (len as u32);
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for c in chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    match tail.len() {
        3 => {
            h ^= (tail[2] as u32) << 16;
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        2 => {
            h ^= (tail[1] as u32) << 8;
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        1 => {
            h ^= tail[0] as u32;
            h = h.wrapping_mul(M);
        }
        _ => {}
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// The partition (of `partitions`) a key is written to.
pub fn partition_for(key: &[u8], partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    ((murmur2(partition_part(key)) & 0x7fff_ffff) % partitions as u32) as i32
}

/// Builds RED records; knows the dimension names and bucket bounds.
#[derive(Debug, Clone)]
pub struct RedRecordBuilder {
    /// Attribute names of the configured dimensions, in config order.
    pub dims: Vec<String>,
    /// Histogram bucket bounds (ms).
    pub bounds: Vec<f64>,
}

impl RedRecordBuilder {
    /// One final window of one series in share `share`: `traces.span.metrics.calls` (a sum)
    /// and `traces.span.metrics.duration` (a histogram, ms), one data point per status code,
    /// start/end = the window. The value is the share's whole window, restated by a later record
    /// of the same key, so the temporality is cumulative (since the window start), never delta.
    /// Weighted counts that are not whole numbers are written as doubles; histogram counts are
    /// rounded.
    pub fn request(&self, row: &RedRow, share: &str) -> ExportMetricsServiceRequest {
        let s = &row.series;
        let mut base = spanmetrics::series_attributes(s, &self.dims);
        base.push(kv(WINDOW_SIZE_ATTR, &row.window_size));
        base.push(kv(SHARE_ATTR, share));
        let agg = &row.total;
        // The window's min/max are over all statuses: exact for a point only when it is the
        // window's only status.
        let single_status = agg.statuses().count() == 1;
        let points: Vec<RedPoint> = agg
            .statuses()
            .map(|status| RedPoint {
                attributes: spanmetrics::with_status(&base, status),
                start: row.start,
                time: row.end,
                calls: agg.calls[status as usize],
                sum_ms: agg.sum_ms[status as usize],
                buckets: agg.bucket_counts(status, self.bounds.len()),
                min_max: single_status.then_some((agg.min_ms, agg.max_ms)),
            })
            .collect();
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", &s.service_name)],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(spanmetrics::scope()),
                    metrics: spanmetrics::metrics(
                        &points,
                        &self.bounds,
                        AggregationTemporality::Cumulative,
                    )
                    .into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
    use redwatch_engine::model::{SpanKind, StatusCode};
    use redwatch_operators::red::{RedAgg, SeriesKey};
    use std::sync::Arc;

    fn row(service: &str, name: &str, start: u64) -> RedRow {
        let bounds = vec![10.0, 100.0];
        let mut total = RedAgg::default();
        total.add(StatusCode::Unset, 5.0, 0, 1.0);
        total.add(StatusCode::Unset, 50.0, 1, 1.0);
        total.add(StatusCode::Error, 500.0, 2, 1.0);
        let _ = bounds;
        RedRow {
            window_size: "10s".into(),
            window_size_ns: 10_000_000_000,
            primary: true,
            start,
            end: start + 10_000_000_000,
            series: Arc::new(SeriesKey {
                service_name: service.into(),
                span_name: name.into(),
                kind: SpanKind::Server,
                dims: vec![Arc::<str>::from("eu")].into_boxed_slice(),
                overflow: false,
            }),
            share: None,
            is_final: true,
            first: true,
            total,
            delta: None,
        }
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest (murmur2 of these strings).
        assert_eq!(murmur2(b"21") as i32, -973932308);
        assert_eq!(murmur2(b"foobar") as i32, -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string") as i32, -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58897971
        );
        assert_eq!(murmur2(b"abc") as i32, 479470107);
    }

    #[test]
    fn keys_name_the_window_share_and_series_and_one_series_keeps_its_partition() {
        let a = row("cart|x", "GET \\cart", 1_000);
        let share = share_label(Some(3), "otlp_spans", "redwatch");
        assert_eq!(share, "otlp_spans:3");
        assert_eq!(share_label(None, "otlp_spans", "rw-1"), "otlp:rw-1");
        let k = red_key(&a, &share);
        assert_eq!(
            k,
            "10s|1000|otlp_spans:3|cart\\|x|GET \\\\cart|SPAN_KIND_SERVER|eu"
        );
        // Another share of the same window and series: another key, the same partition.
        let other = red_key(&a, "otlp_spans:0");
        assert_ne!(other, k);
        assert_eq!(
            partition_part(other.as_bytes()),
            partition_part(k.as_bytes())
        );
        assert_eq!(
            partition_part(k.as_bytes()),
            b"cart\\|x|GET \\\\cart|SPAN_KIND_SERVER|eu"
        );
        let b = row("cart|x", "GET \\cart", 2_000_000_000_000);
        assert_ne!(red_key(&b, &share), k);
        for n in 1..16 {
            assert_eq!(
                partition_for(red_key(&b, "otlp:x").as_bytes(), n),
                partition_for(k.as_bytes(), n)
            );
        }
        assert_eq!(partition_part(b"0123abcd"), b"0123abcd");
        assert_eq!(partition_for(b"x", 0), 0);
    }

    #[test]
    fn a_window_becomes_spanmetrics_sum_and_histogram_per_status() {
        let b = RedRecordBuilder {
            dims: vec!["region".into()],
            bounds: vec![10.0, 100.0],
        };
        let req = b.request(&row("cart", "GET /cart", 1_000), "otlp_spans:1");
        let m = &req.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(m[0].name, CALLS_METRIC);
        assert_eq!(m[1].name, DURATION_METRIC);
        assert_eq!(m[1].unit, "ms");
        let Some(metric::Data::Sum(sum)) = &m[0].data else {
            panic!("calls is a sum")
        };
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(sum.data_points.len(), 2);
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsInt(2))
        );
        assert_eq!(sum.data_points[0].start_time_unix_nano, 1_000);
        assert_eq!(sum.data_points[0].time_unix_nano, 10_000_001_000);
        let attrs: Vec<(&str, String)> = sum.data_points[1]
            .attributes
            .iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    _ => String::new(),
                };
                (kv.key.as_str(), v)
            })
            .collect();
        assert!(attrs.contains(&("status.code", "STATUS_CODE_ERROR".into())));
        assert!(attrs.contains(&("region", "eu".into())));
        assert!(attrs.contains(&(SHARE_ATTR, "otlp_spans:1".into())));
        assert!(attrs.contains(&("span.kind", "SPAN_KIND_SERVER".into())));
        let Some(metric::Data::Histogram(h)) = &m[1].data else {
            panic!("duration is a histogram")
        };
        assert_eq!(h.data_points[0].bucket_counts, vec![1, 1, 0]);
        assert_eq!(h.data_points[0].count, 2);
        assert_eq!(h.data_points[1].bucket_counts, vec![0, 0, 1]);
        assert_eq!(h.data_points[1].sum, Some(500.0));
    }
}
