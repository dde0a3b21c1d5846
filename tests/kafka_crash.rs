//! Crash test of the Kafka source (issues 4 and 13), with the default windows (10 s plus the
//! `1m` rollup): spans produced across many windows, the `redwatch` binary SIGKILLed in the
//! middle of a rollup window (after it committed offsets) and restarted with the same consumer
//! group; every window's final count, of both window specs, must equal the truth — nothing lost,
//! nothing counted twice.
//!
//! Prometheus counters die with the process, so the durable result is assembled the way a keyed
//! Kafka sink would hold it: each 10 s window has its own series (span name `w<10 s index>`), and
//! a window emitted again by the second run replaces what the first run had emitted
//! (docs/kafka-exactness.md). The first run is scraped right before the kill: a window emitted
//! after that scrape cannot have been purged (and its offsets committed) within the same
//! millisecond, so the second run re-emits it in full.
//!
//! The same run also writes to the Kafka sink (`exporters.kafka`); after the restart, the latest
//! record per key on the sink topic, read by an independent consumer, must equal the truth too,
//! for the 10 s windows and for the `1m` rollup: that is the durable result the design promises.

#![cfg(feature = "kafka")]

mod common;
mod kafka_support;

use common::{trace_request, Scrape, SpanSpec, GOOD_SERVICE};
use kafka_support::{brokers, create_topic, now_ns, scrape, Redwatch, SECOND};
use prost::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use redwatch::config::KafkaEncoding;
use redwatch_connectors::kafka::rdkafka;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(180);
const PARTITIONS: i32 = 2;
/// Messages produced after the kill (the first run is killed once it has committed, which takes
/// a `1m` rollup window plus the allowed lateness).
const AFTER_KILL: usize = 60;
/// How long after its first commit the first run is killed: inside the next rollup window.
const KILL_AFTER_COMMIT: Duration = Duration::from_secs(12);
const PRODUCE_EVERY: Duration = Duration::from_millis(125);
const WINDOW: u64 = 10 * SECOND;
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
    format!("w{}", end / WINDOW)
}

/// Calls per (window spec, window name) of the sink topic's latest record per key, shares
/// added.
fn sink_per_window(records: &[kafka_support::Record]) -> BTreeMap<(String, String), f64> {
    let mut m: BTreeMap<(String, String), f64> = BTreeMap::new();
    for r in kafka_support::latest_per_key(records).values() {
        let req = kafka_support::decode_metrics(KafkaEncoding::OtlpProto, &r.payload);
        for ((_, name, _, _), v, ws) in kafka_support::calls_in(&req) {
            *m.entry((ws, name)).or_default() += v;
        }
    }
    m
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
             librdkafka: {{ session.timeout.ms: '6000', heartbeat.interval.ms: '1000' }}\nwindows:\n  max_out_of_orderness: 0s\n  \
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

    // Every message: three spans ending now and one ending 1.2 s ago (right after a window
    // boundary, a late update of the previous 10 s window within the allowed lateness, which
    // makes messages feed two windows). The producer runs until the
    // first run is killed, then AFTER_KILL messages more.
    let truth: Arc<Mutex<BTreeMap<String, f64>>> = Arc::default();
    let (killed_tx, killed_rx) = tokio::sync::watch::channel(false);
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let (t, tp) = (truth.clone(), topic.clone());
    let produce = tokio::spawn(async move {
        let mut after_kill = 0;
        let mut i = 0;
        while after_kill < AFTER_KILL {
            if *killed_rx.borrow() {
                after_kill += 1;
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
                        .partition(i % PARTITIONS)
                        .payload(&payload),
                    Duration::from_secs(60),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("producing message {i}: {e}"));
            i += 1;
            tokio::time::sleep(PRODUCE_EVERY).await;
        }
    });

    // Kill once the first run has committed (a rollup window was purged and delivered), in the
    // middle of the next rollup window.
    let until = Instant::now() + DEADLINE;
    loop {
        let committed = scrape(&addr1)
            .await
            .is_some_and(|s| s.sum("redwatch_kafka_commits_total") > 0.0);
        if committed {
            break;
        }
        assert!(
            Instant::now() < until,
            "the first run committed nothing within {DEADLINE:?}:\n{}",
            run1.log_text()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Fault injection point (not synchronisation): some seconds into the next rollup window.
    tokio::time::sleep(KILL_AFTER_COMMIT).await;
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
        .map(|w| ((w + 1) * WINDOW).div_ceil(60 * SECOND) * 60 * SECOND)
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

    // The sink topic: latest record per key, shares added, per window spec and window name,
    // equals the truth — for the 10 s windows and for the `1m` rollup (each window name lies in
    // one minute, so its rollup calls are its calls).
    let mut want: BTreeMap<(String, String), f64> = BTreeMap::new();
    for (w, v) in &truth {
        want.insert(("10s".to_string(), w.clone()), *v);
        want.insert(("1m".to_string(), w.clone()), *v);
    }
    let (b, t, w) = (brokers(), sink_topic.clone(), want.clone());
    let records = tokio::task::spawn_blocking(move || {
        kafka_support::read_topic(&b, &t, SINK_PARTITIONS, DEADLINE, |r| {
            sink_per_window(r) == w
        })
    })
    .await
    .expect("sink reader");
    let sink = sink_per_window(&records);
    let d = kafka_support::diff(&want, &sink);
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
