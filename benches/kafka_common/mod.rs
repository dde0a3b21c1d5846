//! What the Kafka benches share: a producer, a small export request, the wall clock.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use redwatch_connectors::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use redwatch_connectors::kafka::rdkafka::producer::FutureProducer;
use redwatch_connectors::kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A producer for the benches' topics (large messages, 2-minute timeout, 5 ms linger).
pub fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "120000")
        .set("message.max.bytes", "10000000")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// A consumer outside any group's offsets (a fresh `group_prefix`-named group, no commits),
/// assigned every partition of `topic` from its beginning; `extra` adds librdkafka settings.
pub fn read_from_start(
    brokers: &str,
    topic: &str,
    partitions: i32,
    group_prefix: &str,
    extra: &[(&str, &str)],
) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{group_prefix}_{}", now_ns()))
        .set("enable.auto.commit", "false");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let c: BaseConsumer = config.create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("offset");
    }
    c.assign(&tpl).expect("assign");
    c
}

/// A small export request: 20 server spans of `service` ending now, trace and span ids from
/// `seq`.
#[allow(dead_code)] // the fleet bench produces its own payloads
pub fn small_request(seq: u64, service: &str) -> ExportTraceServiceRequest {
    let now = now_ns();
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let spans = (0..20u64)
        .map(|i| Span {
            trace_id: [(seq % 251) as u8 + 1; 16].to_vec(),
            span_id: (seq * 100 + i + 1).to_be_bytes().to_vec(),
            name: format!("op {}", i % 5),
            kind: 2,
            start_time_unix_nano: now - 5_000_000,
            end_time_unix_nano: now,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}
