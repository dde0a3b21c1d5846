//! Scale-out (issue 4): two redwatch engines in one consumer group over a 4-partition topic
//! split the partitions; the union of their final windows, read through each one's SQL API,
//! equals the truth — every span counted once, by exactly one of them.

#![cfg(feature = "kafka")]

mod common;
mod kafka_support;

use common::{good_spans, test_config, trace_request, GOOD_SERVICE};
use kafka_support::*;
use prost::Message as _;
use redwatch::config::{Config, KafkaReceiverConfig};
use redwatch::server::Engine;
use std::collections::BTreeMap;
use std::time::Duration;

const PARTITIONS: i32 = 4;
const DEADLINE: Duration = Duration::from_secs(180);

/// (window start in ms, span name, span kind) → final calls, from the engine's `red` table.
async fn final_windows(e: &Engine) -> BTreeMap<(i64, String, String), f64> {
    let q = "SELECT CAST(window_start AS BIGINT) AS ws, span_name, span_kind, \
             SUM(calls) AS calls FROM red WHERE is_final AND window_size = '1s' \
             GROUP BY CAST(window_start AS BIGINT), span_name, span_kind";
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/sql", e.addrs["sql_http"]))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "query": q }).to_string())
        .send()
        .await
        .expect("SQL answers");
    let status = r.status().as_u16();
    let body = r.bytes().await.expect("SQL answer body");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("SQL answers JSON");
    assert_eq!(status, 200, "{v}");
    let mut m = BTreeMap::new();
    for row in v["rows"].as_array().expect("rows") {
        let key = (
            row["ws"].as_i64().expect("ws"),
            row["span_name"].as_str().expect("span_name").to_string(),
            row["span_kind"].as_str().expect("span_kind").to_string(),
        );
        *m.entry(key).or_default() += row["calls"].as_f64().expect("calls");
    }
    m
}

/// An engine config reading `topic` in a fresh consumer group named after `group_prefix`, with
/// quick group liveness settings, 60 s allowed lateness and a 5 s idle timeout.
fn group_config(topic: &str, group_prefix: &str) -> Config {
    let mut cfg = test_config();
    cfg.receivers.kafka = Some(KafkaReceiverConfig {
        brokers: vec![brokers()],
        traces_topic: topic.to_string(),
        metrics_topic: None,
        group_id: unique(group_prefix),
        librdkafka: [
            ("session.timeout.ms".to_string(), "10000".to_string()),
            ("heartbeat.interval.ms".to_string(), "1000".to_string()),
        ]
        .into(),
        ..Default::default()
    });
    cfg.windows.allowed_lateness = Duration::from_secs(60);
    cfg.windows.idle_timeout = Duration::from_secs(5);
    cfg
}

/// Waits (polling every `poll`) until every instance behind `proms` holds partitions of `topic`
/// and all of them are assigned; returns how many each holds.
async fn wait_all_hold_partitions(proms: &[String], topic: &str, poll: Duration) -> Vec<usize> {
    let until = std::time::Instant::now() + DEADLINE;
    loop {
        let held = wait_assigned_among(proms, topic, PARTITIONS, DEADLINE, String::new).await;
        if held.iter().all(|h| *h > 0) {
            return held;
        }
        assert!(
            std::time::Instant::now() < until,
            "the second member never got partitions: {held:?}"
        );
        tokio::time::sleep(poll).await;
    }
}

/// The sum of two instances' final windows.
fn union_of(
    wa: &BTreeMap<(i64, String, String), f64>,
    wb: &BTreeMap<(i64, String, String), f64>,
) -> BTreeMap<(i64, String, String), f64> {
    let mut union = wa.clone();
    for (k, v) in wb {
        *union.entry(k.clone()).or_default() += v;
    }
    union
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_in_one_group_split_the_partitions_and_their_union_is_exact() {
    let topic = unique("otlp_spans_scaleout");
    create_topic(&topic, PARTITIONS).await;
    let cfg = group_config(&topic, "redwatch_scaleout");
    // A partition fetched late must not turn its messages late (allowed lateness 60 s).
    let a = common::start(&cfg).await;
    let b = common::start(&cfg).await;
    let proms = [
        a.addrs["prometheus"].to_string(),
        b.addrs["prometheus"].to_string(),
    ];
    // The group settles: both members hold partitions, all four are assigned.
    let held = wait_all_hold_partitions(&proms, &topic, Duration::from_millis(500)).await;
    eprintln!("partitions held by the two instances: {held:?}");

    let mut truth: BTreeMap<(i64, String, String), f64> = BTreeMap::new();
    // Spans of one series in every partition: both instances count part of each window.
    produce_known(&topic, 0, 24, &mut truth).await;
    common::wait_until(
        DEADLINE,
        "both instances consumed all 24 messages",
        || async {
            a.registry.total("redwatch_kafka_messages_total")
                + b.registry.total("redwatch_kafka_messages_total")
                >= 24.0
        },
    )
    .await;
    common::wait_windows_final(&a).await;
    common::wait_windows_final(&b).await;

    let (wa, wb) = (final_windows(&a).await, final_windows(&b).await);
    assert!(
        !wa.is_empty() && !wb.is_empty(),
        "both instances counted part of the stream: {wa:?} / {wb:?}"
    );
    let d = diff(&truth, &union_of(&wa, &wb));
    assert!(
        d.is_empty(),
        "the union of both instances' final windows differs from the truth:\n{d}\nA: {wa:?}\nB: {wb:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// Produces `n` messages of `good_spans("scale")` round-robin over the partitions, starting at
/// message `first`; records the truth per (window start ms, span name, kind).
async fn produce_known(
    topic: &str,
    first: usize,
    n: usize,
    truth: &mut BTreeMap<(i64, String, String), f64>,
) {
    let p = producer_on(&brokers());
    for i in first..first + n {
        let spans = good_spans("scale");
        for s in &spans {
            let ws = (s.end / SECOND * SECOND / 1_000_000) as i64;
            *truth
                .entry((ws, s.name.clone(), s.kind.as_str_name().to_string()))
                .or_default() += 1.0;
        }
        let payload = trace_request(Some(GOOD_SERVICE), &spans).encode_to_vec();
        produce(&p, topic, i as i32 % PARTITIONS, &payload).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A second instance joins mid-stream: the first one's partitions are revoked while their
/// messages sit in its windows (emitted, not purged). It commits only what is durable and drops
/// the revoked partitions' shares — restating its emitted rows without them — and the newcomer
/// rebuilds them by replay (docs/kafka-exactness.md): the union of their final windows counts
/// every span once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_joining_mid_stream_takes_over_without_double_counting() {
    let topic = unique("otlp_spans_rebalance");
    create_topic(&topic, PARTITIONS).await;
    let cfg = group_config(&topic, "redwatch_rebalance");
    // The first instance's windows must still be open when the second one joins (a group join
    // takes ~20 s on tansu), and a partition fetched late must not turn its messages late: both
    // are what the 60 s allowed lateness is for.
    let a = common::start(&cfg).await;
    let pa = a.addrs["prometheus"].to_string();
    wait_assigned_among(
        std::slice::from_ref(&pa),
        &topic,
        PARTITIONS,
        DEADLINE,
        String::new,
    )
    .await;

    let mut truth = BTreeMap::new();
    produce_known(&topic, 0, 16, &mut truth).await;
    common::wait_until(
        DEADLINE,
        "the first instance consumed 16 messages",
        || async { a.registry.total("redwatch_kafka_messages_total") >= 16.0 },
    )
    .await;
    // Its windows are still open (allowed lateness 60 s) when the second one joins.
    let b = common::start(&cfg).await;
    let proms = [pa.clone(), b.addrs["prometheus"].to_string()];
    wait_all_hold_partitions(&proms, &topic, Duration::from_millis(250)).await;
    produce_known(&topic, 16, 16, &mut truth).await;
    let want: f64 = truth.values().sum();
    common::wait_until(
        DEADLINE,
        "every span is counted by one of the instances",
        || async {
            let (wa, wb) = (final_windows(&a).await, final_windows(&b).await);
            let got = wa.values().chain(wb.values()).sum::<f64>();
            got >= want
        },
    )
    .await;
    common::wait_windows_final(&a).await;
    common::wait_windows_final(&b).await;
    let (wa, wb) = (final_windows(&a).await, final_windows(&b).await);
    let d = diff(&truth, &union_of(&wa, &wb));
    assert!(
        d.is_empty(),
        "after a mid-stream rebalance the union of final windows differs from the truth:\n{d}\nA: {wa:?}\nB: {wb:?}"
    );
    a.shutdown().await;
    b.shutdown().await;
}
