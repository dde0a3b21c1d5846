//! The Kafka source against a real broker (tansu, started by tests/run-all.sh; see TESTING.md).
//!
//! Every test creates its own topics and consumer group, waits until its partitions are assigned
//! (a group join takes ~20–25 s on tansu), produces known OTLP export requests and waits for the
//! windows to close before comparing `/metrics` exactly. `REDWATCH_KAFKA_BROKERS` must be set:
//! without a broker these tests fail, they never skip.

#![cfg(feature = "kafka")]

mod common;

use common::*;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use redwatch::server::Engine;
use redwatch_connectors::kafka::rdkafka;
use redwatch_engine::config::{Config, KafkaEncoding, KafkaReceiverConfig};
use std::time::Duration;

/// Group joins are slow on the test broker.
const KAFKA_DEADLINE: Duration = Duration::from_secs(120);

fn brokers() -> String {
    std::env::var("REDWATCH_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!(
            "REDWATCH_KAFKA_BROKERS is not set: these tests need a Kafka broker. \
             tests/run-all.sh starts one (tansu) and sets it; by hand: \
             `tansu broker --listener-url tcp://127.0.0.1:9092 --advertised-listener-url \
             tcp://127.0.0.1:9092 --storage-engine memory://tansu/` and \
             REDWATCH_KAFKA_BROKERS=127.0.0.1:9092"
        )
    })
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), now_ns())
}

/// Creates `name` with `partitions` partitions (tansu loses data on auto-created topics).
async fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
    let res = admin
        .create_topics([&topic], &opts)
        .await
        .unwrap_or_else(|e| panic!("creating topic {name}: {e}"));
    for r in res {
        r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

async fn produce(p: &FutureProducer, topic: &str, partition: i32, payload: &[u8]) {
    p.send(
        FutureRecord::<(), [u8]>::to(topic)
            .partition(partition)
            .payload(payload),
        Duration::from_secs(30),
    )
    .await
    .unwrap_or_else(|(e, _)| panic!("producing to {topic}/{partition}: {e}"));
}

fn kafka_config(topic: &str, encoding: KafkaEncoding) -> Config {
    let mut cfg = test_config();
    cfg.receivers.kafka = Some(KafkaReceiverConfig {
        brokers: vec![brokers()],
        traces_topic: topic.to_string(),
        metrics_topic: None,
        group_id: unique("redwatch_test"),
        encoding,
        ..Default::default()
    });
    cfg
}

/// Waits until the engine has been assigned `partitions` partitions of `topic`.
async fn wait_assigned(e: &Engine, topic: &str, partitions: i32) {
    for p in 0..partitions {
        let ps = p.to_string();
        wait_until(
            KAFKA_DEADLINE,
            &format!("partition {topic}/{p} is assigned"),
            || async {
                e.registry.contains(
                    "redwatch_kafka_lag",
                    &[("topic", topic), ("partition", &ps)],
                )
            },
        )
        .await;
    }
}

/// Waits until the engine has consumed `n` messages.
async fn wait_consumed(e: &Engine, n: u64) {
    wait_until(
        KAFKA_DEADLINE,
        &format!("{n} Kafka messages are consumed"),
        || async { e.registry.total("redwatch_kafka_messages_total") >= n as f64 },
    )
    .await;
}

fn rejected(e: &Engine, reason: &str) -> f64 {
    e.registry.value(
        "redwatch_kafka_messages_rejected_total",
        &[("reason", reason)],
    )
}

/// Requests of several phases, with distinct span names, each recorded in `exp`.
fn known_requests(
    prefix: &str,
    n: usize,
    exp: &mut ExpectedCalls,
) -> Vec<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest> {
    (0..n)
        .map(|i| {
            let spans = good_spans(&format!("{prefix} {i}"));
            exp.add(Some(GOOD_SERVICE), &spans);
            trace_request(Some(GOOD_SERVICE), &spans)
        })
        .collect()
}

async fn exact_windows_for(encoding: KafkaEncoding) {
    let topic = unique("otlp_spans");
    create_topic(&topic, 2).await;
    let e = start(&kafka_config(&topic, encoding)).await;
    wait_assigned(&e, &topic, 2).await;

    let mut exp = ExpectedCalls::default();
    let p = producer();
    let reqs = known_requests(&format!("{encoding:?}"), 6, &mut exp);
    for (i, r) in reqs.iter().enumerate() {
        let payload = match encoding {
            KafkaEncoding::OtlpProto => r.encode_to_vec(),
            KafkaEncoding::OtlpJson => to_json(r),
        };
        produce(&p, &topic, (i % 2) as i32, &payload).await;
    }
    wait_consumed(&e, reqs.len() as u64).await;
    assert_calls_exactly(&e, &exp).await;
    assert_eq!(
        e.registry.total("redwatch_kafka_messages_rejected_total"),
        0.0
    );
    assert_eq!(
        e.registry
            .value("redwatch_spans_accepted_total", &[("receiver", "kafka")]),
        exp.total()
    );
    e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_proto_messages_become_exact_red_windows() {
    exact_windows_for(KafkaEncoding::OtlpProto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_json_messages_become_exact_red_windows() {
    exact_windows_for(KafkaEncoding::OtlpJson).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_messages_are_rejected_and_the_partition_keeps_flowing() {
    let topic = unique("otlp_spans_garbage");
    let dlq = unique("otlp_spans_dlq");
    create_topic(&topic, 1).await;
    create_topic(&dlq, 1).await;
    let mut cfg = kafka_config(&topic, KafkaEncoding::OtlpProto);
    if let Some(k) = cfg.receivers.kafka.as_mut() {
        k.dead_letter_topic = Some(dlq.clone());
    }
    let e = start(&cfg).await;
    wait_assigned(&e, &topic, 1).await;

    let mut exp = ExpectedCalls::default();
    let good = known_requests("garbage test", 5, &mut exp);
    let full = good[0].encode_to_vec();
    // Field 1 with wire type 7 (invalid), over and over: never a valid protobuf.
    let random_bytes = vec![0x0f_u8; 64];
    let truncated = full[..full.len() / 2].to_vec();
    let wrong_encoding = to_json(&trace_request(
        Some(GOOD_SERVICE),
        &[SpanSpec::new("json in a proto topic").status(StatusCode::Ok)],
    ));
    let empty: Vec<u8> = Vec::new();
    let garbage = [random_bytes, truncated, wrong_encoding, empty];

    let p = producer();
    let mut sent = 0u64;
    for (i, g) in good.iter().enumerate() {
        produce(&p, &topic, 0, &g.encode_to_vec()).await;
        sent += 1;
        if let Some(bad) = garbage.get(i) {
            produce(&p, &topic, 0, bad).await;
            sent += 1;
        }
    }
    wait_consumed(&e, sent).await;
    assert_calls_exactly(&e, &exp).await;
    let total_rejected = e.registry.total("redwatch_kafka_messages_rejected_total");
    assert_eq!(
        total_rejected,
        garbage.len() as f64,
        "every garbage message is counted as rejected exactly once"
    );
    assert_eq!(rejected(&e, "empty"), 1.0);
    assert!(
        rejected(&e, "malformed") >= 2.0,
        "random bytes and truncated protobuf are malformed"
    );
    wait_until(
        KAFKA_DEADLINE,
        "the garbage is copied to the dead-letter topic",
        || async { e.registry.total("redwatch_kafka_dead_lettered_total") >= garbage.len() as f64 },
    )
    .await;
    e.shutdown().await;
}
