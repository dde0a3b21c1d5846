//! The Kafka source against a real broker (tansu, started by tests/run-all.sh; see TESTING.md).
//!
//! Every test creates its own topics and consumer group, waits until its partitions are assigned
//! (a group join takes ~20–25 s on tansu), produces known OTLP export requests and waits for the
//! windows to close before comparing `/metrics` exactly. `REDWATCH_KAFKA_BROKERS` must be set:
//! without a broker these tests fail, they never skip.

#![cfg(feature = "kafka")]

mod common;
mod kafka_support;

use common::*;
use kafka_support::{brokers, create_topic, produce, producer_on, unique};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::ClientConfig;
use redwatch::config::{Config, KafkaEncoding, KafkaReceiverConfig};
use redwatch::server::Engine;
use redwatch_connectors::kafka::rdkafka;
use std::time::Duration;

/// Group joins are slow on the test broker.
const KAFKA_DEADLINE: Duration = Duration::from_secs(120);

fn producer() -> FutureProducer {
    producer_on(&brokers())
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
    // Produces to tansu can take a second each on a loaded machine, and a partition is idle
    // after 1 s: a generous lateness keeps spans stamped before a slow produce in their window.
    cfg.windows.allowed_lateness = Duration::from_secs(60);
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

/// The purged-through time travels in the commit metadata and, for brokers that drop metadata
/// (tansu 0.6 does), as the committed offset of a member-less shadow group: the broker must give
/// back a nanosecond timestamp committed as an offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purged_through_time_round_trips_through_the_broker() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let topic = unique("otlp_spans_meta");
    create_topic(&topic, 1).await;
    let p = producer();
    produce(&p, &topic, 0, b"x").await;
    let group = unique("meta_group");
    let purged_through = now_ns() as i64;
    let (t, g) = (topic.clone(), group.clone());
    let (offset, metadata) = tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", &g)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        let mut e = tpl.add_partition(&t, 0);
        e.set_offset(Offset::Offset(purged_through))
            .expect("offset");
        e.set_metadata(redwatch_connectors::kafka::commit_metadata(1234));
        c.commit(&tpl, CommitMode::Sync).expect("commit");
        let mut q = TopicPartitionList::new();
        q.add_partition(&t, 0);
        let r = c
            .committed_offsets(q, Duration::from_secs(10))
            .expect("committed offsets");
        let e = r.find_partition(&t, 0).expect("partition in answer");
        (e.offset(), e.metadata().to_string())
    })
    .await
    .expect("consumer thread");
    assert_eq!(offset, rdkafka::Offset::Offset(purged_through));
    // Real Kafka keeps the metadata; tansu 0.6 returns it empty (then the shadow group is used).
    let md = redwatch_connectors::kafka::parse_commit_metadata(&metadata);
    assert!(
        md == 1234 || md == 0,
        "unexpected commit metadata {metadata:?}"
    );
}

/// With no broker to talk to, the source keeps running and says why it is not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_brokers_make_the_source_not_ready() {
    use redwatch_connectors::kafka::KafkaSource;
    use redwatch_engine::pipeline::{pipeline, PipelineSettings};
    use redwatch_engine::telemetry::Registry;
    use redwatch_engine::time::TimePolicy;
    let cfg = test_config();
    let registry = Registry::new();
    let (handle, pipe) = pipeline(
        std::sync::Arc::new(TimePolicy::new(&cfg.windows)),
        PipelineSettings::from_config(&cfg.limits),
        Vec::new(),
        registry.clone(),
    );
    let cancel = tokio_util::sync::CancellationToken::new();
    let pipe_task = tokio::spawn(pipe.run(cancel.clone()));
    let kcfg = KafkaReceiverConfig {
        // Nothing listens on port 1.
        brokers: vec!["127.0.0.1:1".to_string()],
        group_id: unique("unreachable"),
        ..Default::default()
    };
    let (source, task) = KafkaSource::start(
        &kcfg,
        handle.clone(),
        Default::default(),
        registry,
        cancel.clone(),
        None,
        None,
    )
    .expect("the source starts without a broker");
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let why = loop {
        if let Err(why) = source.ready() {
            if !why.contains("not connected to Kafka yet") {
                break why;
            }
        }
        assert!(
            std::time::Instant::now() < until,
            "the source did not report the brokers as down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(why.to_lowercase().contains("broker"), "reason: {why}");
    assert!(!task.is_finished(), "the source keeps running");
    cancel.cancel();
    task.await.expect("source stops");
    drop(handle);
    pipe_task.await.expect("pipeline stops");
}

/// A full pipeline queue pauses the partition and rewinds it; nothing is dropped or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_pipeline_pauses_the_partition_and_loses_nothing() {
    let topic = unique("otlp_spans_backpressure");
    create_topic(&topic, 1).await;
    let mut cfg = kafka_config(&topic, KafkaEncoding::OtlpProto);
    cfg.limits.queue_capacity = 1;
    cfg.limits.enqueue_timeout = Duration::from_millis(1);
    let e = start(&cfg).await;
    wait_assigned(&e, &topic, 1).await;
    let ballast = add_ballast_source(&e).await;
    let mut exp = ExpectedCalls::default();
    let p = producer();
    let mut produced = 0u64;
    let mut kafka_spans = 0.0;
    let until = std::time::Instant::now() + KAFKA_DEADLINE;
    let mut round = 0;
    while e.registry.total("redwatch_kafka_partition_pauses_total") == 0.0 {
        assert!(
            std::time::Instant::now() < until,
            "the partition was never paused in {round} rounds"
        );
        round += 1;
        // Wait until the consumer has caught up, so the burst meets a busy pipeline.
        wait_consumed(&e, produced).await;
        barrier(&e).await;
        let mut round_exp = ExpectedCalls::default();
        let reqs = known_requests(&format!("round {round}"), 30, &mut round_exp);
        kafka_spans += round_exp.total();
        for (k, v) in round_exp.0 {
            *exp.0.entry(k).or_default() += v;
        }
        let payloads: Vec<Vec<u8>> = reqs.iter().map(|r| r.encode_to_vec()).collect();
        queue_ballast(&e, ballast, &mut exp).await;
        let mut tasks = Vec::new();
        for payload in payloads {
            let (p, t) = (p.clone(), topic.clone());
            tasks.push(tokio::spawn(
                async move { produce(&p, &t, 0, &payload).await },
            ));
        }
        for t in tasks {
            t.await.expect("producer task");
        }
        produced += reqs.len() as u64;
    }
    // Messages consumed again after a rewind count twice in `redwatch_kafka_messages_total`;
    // wait on the spans instead.
    wait_until(
        KAFKA_DEADLINE,
        "every produced span is accepted",
        || async {
            e.registry
                .value("redwatch_spans_accepted_total", &[("receiver", "kafka")])
                >= kafka_spans
        },
    )
    .await;
    assert_calls_exactly(&e, &exp).await;
    assert_eq!(
        e.registry
            .value("redwatch_spans_accepted_total", &[("receiver", "kafka")]),
        kafka_spans,
        "spans of rewound messages are accepted once"
    );
    e.shutdown().await;
}
