//! Decode and RED aggregation cost per span, on the realistic payloads of `payload/`.
//!
//! Groups (all `Throughput::Elements(spans)`, one pass over the same 64 requests = 32 000 spans):
//! - `prost_decode`: the baseline — `ExportTraceServiceRequest::decode` into the generated
//!   types, touching every span (what any prost-based server pays);
//! - `scan_decode`: redwatch's zero-copy scanner, `decode_traces_proto`;
//! - `decode_aggregate`: the scanner plus `RedOperator::process_spans` — the per-span work of the
//!   engine without network, queue or emission;
//! - `aggregate_only`: `process_spans` on batches decoded beforehand.
//!
//! Time: the payloads end within the 5 s before the bench starts and the operator's watermark is
//! never advanced, so no span is late and no window closes; the operator has no sinks.
//!
//! `cargo bench --bench decode_aggregate` (add `-- --quick` for a short run).

mod payload;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use redwatch::config::Config;
use redwatch_connectors::otlp::decode::{decode_traces_proto, DecodeSettings};
use redwatch_engine::model::{SourceId, SpanBatch};
use redwatch_engine::telemetry::Registry;
use redwatch_engine::time::{wall_clock, TimePolicy};
use redwatch_operators::red::RedOperator;
use std::hint::black_box;
use std::time::Duration;

const REQUESTS: usize = 64;

/// A config whose windows stay open for the whole bench.
fn bench_config() -> Config {
    let mut cfg = Config::default();
    cfg.windows.max_out_of_orderness = Duration::from_secs(3600);
    cfg.windows.allowed_lateness = Duration::from_secs(3600);
    cfg
}

fn benches(c: &mut Criterion) {
    let now = wall_clock();
    let set = payload::generate(&payload::PayloadShape::default(), REQUESTS, now);
    let spans = set.spans as u64;
    eprintln!(
        "payloads: {} requests, {} spans, {:.1} bytes/span, {} series",
        set.payloads.len(),
        set.spans,
        set.bytes_per_span(),
        set.series
    );
    let bufs: Vec<Bytes> = set.payloads.iter().map(|p| p.bytes.clone()).collect();
    let cfg = bench_config();
    let policy = TimePolicy::new(&cfg.windows);
    let settings = DecodeSettings::default();
    let registry = Registry::new();
    let decode = |b: &Bytes| -> SpanBatch {
        decode_traces_proto(b.clone(), SourceId(0), &settings, &policy, now)
            .map(|o| o.batch)
            .unwrap_or_else(|e| panic!("generated payload does not decode: {e}"))
    };
    let batches: Vec<SpanBatch> = bufs.iter().map(decode).collect();
    assert_eq!(batches.iter().map(|b| b.len() as u64).sum::<u64>(), spans);

    let mut g = c.benchmark_group("prost_decode");
    g.throughput(Throughput::Elements(spans));
    g.bench_function("500_spans_x64", |b| {
        b.iter(|| {
            bufs.iter().fold(0u64, |a, buf| {
                a ^ payload::prost_decode_touch(black_box(buf))
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("scan_decode");
    g.throughput(Throughput::Elements(spans));
    g.bench_function("500_spans_x64", |b| {
        b.iter(|| {
            bufs.iter()
                .map(|buf| decode(black_box(buf)).len())
                .sum::<usize>()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("decode_aggregate");
    g.throughput(Throughput::Elements(spans));
    let mut op = RedOperator::new(&cfg.windows, &cfg.red, Vec::new(), &registry);
    g.bench_function("500_spans_x64", |b| {
        b.iter(|| {
            for buf in &bufs {
                op.process_spans(&decode(black_box(buf)), now);
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("aggregate_only");
    g.throughput(Throughput::Elements(spans));
    let mut op = RedOperator::new(&cfg.windows, &cfg.red, Vec::new(), &registry);
    g.bench_function("500_spans_x64", |b| {
        b.iter(|| {
            for batch in &batches {
                op.process_spans(black_box(batch), now);
            }
        })
    });
    g.finish();
}

criterion_group!(decode_aggregate, benches);
criterion_main!(decode_aggregate);
