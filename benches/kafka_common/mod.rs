//! What the Kafka benches share: a producer and a consumer reading a topic from its start, a
//! small export request, a Kafka-only engine config, polling with a deadline, the wall clock.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use redwatch::config::{Config, KafkaReceiverConfig};
use redwatch::server::{Engine, StartOptions};
use redwatch_connectors::kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use redwatch_connectors::kafka::rdkafka::message::Message as _;
use redwatch_connectors::kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use redwatch_connectors::kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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

/// Produces `bytes` to `topic`/`partition`, waiting up to `timeout` for the broker's answer.
pub async fn produce(
    p: &FutureProducer,
    topic: &str,
    partition: i32,
    bytes: &[u8],
    timeout: Duration,
) {
    p.send(
        FutureRecord::<(), [u8]>::to(topic)
            .partition(partition)
            .payload(bytes),
        timeout,
    )
    .await
    .unwrap_or_else(|(e, _)| panic!("produce to {topic}/{partition}: {e}"));
}

/// Polls `c` until it has read `messages` messages or 300 s have passed, handing each payload
/// to `each`; returns how many it read.
#[allow(dead_code)] // the fleet bench reads until its topic is idle
pub fn poll_messages(c: &BaseConsumer, messages: usize, mut each: impl FnMut(&[u8])) -> usize {
    let mut n = 0;
    let until = Instant::now() + Duration::from_secs(300);
    while n < messages && Instant::now() < until {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            each(m.payload().unwrap_or_default());
            n += 1;
        }
    }
    n
}

/// The defaults with the Kafka source on `topic` (a fresh consumer group named from
/// `group_prefix`) and no OTLP, Prometheus or SQL listeners.
#[allow(dead_code)] // the fleet bench runs redwatch processes with their own config
pub fn kafka_only_config(brokers: &str, topic: &str, group_prefix: &str) -> Config {
    let mut cfg = Config::default();
    cfg.receivers.otlp.grpc = None;
    cfg.receivers.otlp.http = None;
    cfg.exporters.prometheus = None;
    cfg.sql.http_endpoint = None;
    cfg.sql.flight_endpoint = None;
    cfg.receivers.kafka = Some(KafkaReceiverConfig {
        brokers: vec![brokers.to_string()],
        traces_topic: topic.to_string(),
        metrics_topic: None,
        group_id: format!("{group_prefix}_{}", now_ns()),
        ..Default::default()
    });
    cfg
}

/// Polls `cond` every 5 ms until it holds (true) or `deadline` passes (false, said on stderr).
#[allow(dead_code)] // the fleet bench waits on processes
pub async fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    while !cond() {
        if Instant::now() >= until {
            eprintln!("timed out waiting until {what}");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// Starts an in-process engine on `cfg` and waits up to 120 s until its Kafka source has
/// consumed a first message; false if it had not by then.
#[allow(dead_code)] // the fleet bench runs redwatch processes
pub async fn start_consuming(cfg: &Config) -> (Engine, bool) {
    let e = Engine::start(cfg, StartOptions::default())
        .await
        .expect("engine starts");
    let reg = e.registry.clone();
    let consumed = wait_for(
        "the first message is consumed",
        Duration::from_secs(120),
        || reg.total("redwatch_kafka_messages_total") > 0.0,
    )
    .await;
    (e, consumed)
}

/// Runs a bench's `main` future on a tokio runtime of two worker threads.
pub fn run_on_two_workers<F: std::future::Future>(main: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(main)
}
