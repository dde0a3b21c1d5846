//! Crash test of the Kafka source (issue 4): spans produced across many windows, the `redwatch`
//! binary SIGKILLed mid-stream and restarted with the same consumer group; every window's final
//! count must equal the truth — nothing lost, nothing counted twice.
//!
//! Prometheus counters die with the process, so the durable result is assembled the way a keyed
//! Kafka sink would hold it: each window has its own series (span name `w<second>`), and a window
//! emitted again by the second run replaces what the first run had emitted (DESIGN.md, "Kafka").
//! The first run is scraped right before the kill: a window emitted after that scrape cannot have
//! been purged (and its offsets committed) within the same millisecond, so the second run
//! re-emits it in full.
//!
//! The same run also writes to the Kafka sink (`exporters.kafka`); after the restart, the latest
//! record per key on the sink topic, read by an independent consumer, must equal the truth too:
//! that is the durable result DESIGN.md promises.

#![cfg(feature = "kafka")]

mod common;
mod kafka_support;

use common::{trace_request, Scrape, SpanSpec, GOOD_SERVICE};
use kafka_support::{brokers, create_topic, now_ns, scrape, Redwatch, SECOND};
use prost::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use redwatch_connectors::kafka::rdkafka;
use redwatch_engine::config::KafkaEncoding;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(180);
const PARTITIONS: i32 = 2;
const MESSAGES: usize = 120;
const KILL_AFTER: usize = 60;
const PRODUCE_EVERY: Duration = Duration::from_millis(125);
const DOWNTIME: Duration = Duration::from_secs(4);
const SINK_PARTITIONS: i32 = 2;

/// Final calls per window name (`w<second>`), summed over the window's series.
fn calls_per_window(s: &Scrape) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for x in s
        .samples
        .iter()
        .filter(|x| x.name == "traces_span_metrics_calls_total")
    {
        if let Some(name) = x.labels.get("span_name") {
            *m.entry(name.clone()).or_default() += x.value;
        }
    }
    m
}

async fn wait_assigned(rw: &mut Redwatch, addr: &str, topic: &str) {
    let until = Instant::now() + DEADLINE;
    loop {
        if let Some(s) = scrape(addr).await {
            let assigned = (0..PARTITIONS).all(|p| {
                s.get(
                    "redwatch_kafka_lag",
                    &[("partition", &p.to_string()), ("topic", topic)],
                )
                .is_some()
            });
            if assigned {
                return;
            }
        }
        assert!(
            Instant::now() < until,
            "partitions of {topic} were not assigned within {DEADLINE:?}:\n{}",
            rw.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn window_name(end: u64) -> String {
    format!("w{}", end / SECOND)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_neither_loses_nor_double_counts_windows() {
    let topic = format!("otlp_spans_crash_{}_{}", std::process::id(), now_ns());
    create_topic(&topic, PARTITIONS).await;
    let sink_topic = format!("{topic}_red");
    create_topic(&sink_topic, SINK_PARTITIONS).await;
    let dir = std::env::temp_dir().join(format!("redwatch-kafka-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("redwatch.yaml");
    std::fs::write(
        &config,
        format!(
            "receivers:\n  otlp:\n    grpc: {{ endpoint: 127.0.0.1:0 }}\n    http: {{ endpoint: 127.0.0.1:0 }}\n  \
             kafka:\n    brokers: ['{}']\n    traces_topic: {topic}\n    metrics_topic: null\n    \
             group_id: {topic}_group\n    \
             librdkafka: {{ session.timeout.ms: '6000', heartbeat.interval.ms: '1000' }}\nwindows:\n  size: 1s\n  rollups: []\n  max_out_of_orderness: 0s\n  \
             allowed_lateness: 2s\n  idle_timeout: 5s\nexporters:\n  prometheus: {{ endpoint: 127.0.0.1:0 }}\n  \
             kafka:\n    brokers: ['{}']\n    metrics_topic: {sink_topic}\n    spans_topic: null\n\
             sql:\n  http_endpoint: 127.0.0.1:0\n  flight_endpoint: null\n",
            brokers(),
            brokers()
        ),
    )
    .expect("config written");

    let mut run1 = Redwatch::spawn(&config);
    let addr1 = run1.addr("prometheus").await;
    wait_assigned(&mut run1, &addr1, &topic).await;

    // Every message: three spans ending now and one ending 1.2 s ago (a late update of the
    // previous window, which makes messages feed two windows).
    let truth: Arc<Mutex<BTreeMap<String, f64>>> = Arc::default();
    let (killed_tx, mut killed_rx) = tokio::sync::watch::channel(false);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let (t, tp) = (truth.clone(), topic.clone());
    let (ready_to_kill_tx, ready_to_kill_rx) = tokio::sync::oneshot::channel();
    let produce = tokio::spawn(async move {
        let mut ready = Some(ready_to_kill_tx);
        for i in 0..MESSAGES {
            if i == KILL_AFTER {
                if let Some(r) = ready.take() {
                    let _ = r.send(());
                }
            }
            let now = now_ns();
            let mut spans = Vec::new();
            for end in [now, now, now, now - 1_200_000_000] {
                spans.push(SpanSpec::new(&window_name(end)).end(end).duration_ms(5));
            }
            {
                let mut t = t.lock().expect("truth");
                for s in &spans {
                    *t.entry(s.name.clone()).or_default() += 1.0;
                }
            }
            let payload = trace_request(Some(GOOD_SERVICE), &spans).encode_to_vec();
            producer
                .send(
                    FutureRecord::<(), [u8]>::to(&tp)
                        .partition(i as i32 % PARTITIONS)
                        .payload(&payload),
                    Duration::from_secs(60),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("producing message {i}: {e}"));
            tokio::time::sleep(PRODUCE_EVERY).await;
        }
        let _ = killed_rx.wait_for(|k| *k).await;
    });

    ready_to_kill_rx
        .await
        .expect("producer reached the kill point");
    let before = scrape(&addr1).await.expect("first run answers /metrics");
    let commits = before.sum("redwatch_kafka_commits_total");
    run1.child.kill().expect("SIGKILL");
    let _ = run1.child.wait();
    let _ = killed_tx.send(true);
    assert!(
        commits > 0.0,
        "the first run committed no offsets before the kill, so the test would prove nothing:\n{}",
        run1.log_text()
    );
    let first = calls_per_window(&before);

    // Stay down longer than window + allowed lateness: a restart must not turn the backlog late.
    tokio::time::sleep(DOWNTIME).await;
    let mut run2 = Redwatch::spawn(&config);
    let addr2 = run2.addr("prometheus").await;
    produce.await.expect("producer finished");
    let truth = truth.lock().expect("truth").clone();

    // Every window is final and purged (no later change possible) once the second run's
    // watermark has passed the last window's end plus the allowed lateness.
    let last_end = truth
        .keys()
        .filter_map(|w| w.trim_start_matches('w').parse::<u64>().ok())
        .max()
        .map(|s| (s + 1) * SECOND)
        .expect("spans were produced");
    let until = Instant::now() + DEADLINE;
    let after = loop {
        if let Some(s) = scrape(&addr2).await {
            let lag_s = s.get("redwatch_watermark_lag_seconds", &[]);
            let watermark =
                lag_s.map(|l| now_ns().saturating_sub((l.max(0.0) * SECOND as f64) as u64));
            if watermark.is_some_and(|w| w > last_end + 3 * SECOND) {
                break s;
            }
        }
        assert!(
            Instant::now() < until,
            "the second run's watermark did not pass the last window within {DEADLINE:?}:\n{}",
            run2.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let second = calls_per_window(&after);
    let mut merged = first.clone();
    merged.extend(second.clone());
    let mut diff = String::new();
    for (w, v) in &truth {
        let got = merged.get(w).copied();
        if got != Some(*v) {
            diff.push_str(&format!(
                "  {w}: expected {v}, got {got:?} (first run {:?}, second run {:?})\n",
                first.get(w),
                second.get(w)
            ));
        }
    }
    for (w, v) in &merged {
        if !truth.contains_key(w) {
            diff.push_str(&format!("  {w}: unexpected window with {v}\n"));
        }
    }
    assert!(
        diff.is_empty(),
        "final windows differ from the truth after the crash:\n{diff}\nsecond run log:\n{}",
        run2.log_text()
    );
    assert_eq!(
        after.sum("redwatch_late_dropped_total"),
        0.0,
        "the second run dropped replayed spans as late:\n{}",
        run2.log_text()
    );

    // The sink topic: latest record per key, summed per window name, equals the truth.
    let per_window = |records: &[kafka_support::Record]| {
        let mut m: BTreeMap<String, f64> = BTreeMap::new();
        for ((_, name, _, _), v) in kafka_support::sink_calls(KafkaEncoding::OtlpProto, records) {
            *m.entry(name).or_default() += v;
        }
        m
    };
    let (b, t, want) = (brokers(), sink_topic.clone(), truth.clone());
    let records = tokio::task::spawn_blocking(move || {
        kafka_support::read_topic(&b, &t, SINK_PARTITIONS, DEADLINE, |r| per_window(r) == want)
    })
    .await
    .expect("sink reader");
    let sink = per_window(&records);
    let d = kafka_support::diff(&truth, &sink);
    assert!(
        d.is_empty(),
        "the sink topic's latest record per key differs from the truth after the crash \
         ({} records):\n{d}\nsecond run log:\n{}",
        records.len(),
        run2.log_text()
    );
    eprintln!(
        "crash test: {} windows; first run {} commits, {} windows emitted; second run re-emitted {} \
         windows, skipped {} replayed spans of purged windows, dropped {} late",
        truth.len(),
        commits,
        first.len(),
        second.len(),
        after.sum("redwatch_kafka_replay_skipped_total"),
        after.sum("redwatch_late_dropped_total"),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
