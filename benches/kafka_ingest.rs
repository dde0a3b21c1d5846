//! Kafka ingest benchmark (issue 4), against the broker named by `REDWATCH_KAFKA_BROKERS`:
//!
//! `cargo bench --bench kafka_ingest -- [--messages 800] [--reps 3] [--latency-secs 10]
//! [--partitions 1]`
//!
//! 1. Produces `--messages` realistic OTLP trace requests (500 spans, ~400 B/span, the
//!    `payload` module's shape) round-robin to a fresh topic of `--partitions` partitions (each
//!    partition is a share of the RED state, docs/kafka-exactness.md).
//! 2. Baseline, `--reps` times: a bare rdkafka `BaseConsumer` (assign, no group) reads the whole
//!    topic and only prost-decodes each message (`prost_decode_touch`).
//! 3. redwatch: an in-process engine with the Kafka source and full RED (10 s windows, 1 m
//!    rollup) consumes the same topic; timed from its first consumed message until every span
//!    is through the operators (pipeline barrier).
//!    Both report spans per wall second and per process CPU-second (all threads: librdkafka's
//!    too), so "per core" is spans / CPU-seconds.
//! 4. Latency: a second engine (1 s windows, no out-of-orderness slack) with the Kafka sink;
//!    small requests produced at 50/s for `--latency-secs`; an independent consumer notes when
//!    each window's first record reaches the sink topic. Reported: produce → window emitted on
//!    the sink topic, per message, and emission after the window's end.

#[path = "args/mod.rs"]
mod args;
#[path = "../tests/kafka_support/admin.rs"]
mod kafka_admin;
#[path = "kafka_common/mod.rs"]
mod kafka_common;
#[path = "payload/mod.rs"]
mod payload;

use args::flag;
use kafka_admin::create_topic_on;
use kafka_common::{
    kafka_only_config, now_ns, poll_messages, produce, producer, read_from_start, small_request,
    start_consuming,
};
use prost::Message as _;
use rdkafka::message::Message;
use redwatch::config::{Config, KafkaExporterConfig};
use redwatch::server::{Engine, StartOptions};
use redwatch_connectors::kafka::rdkafka;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECOND: u64 = 1_000_000_000;

/// User + system CPU seconds of this process (all threads).
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the `(comm)`: state is field 3; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // `after` starts at field 3, so field n is at index n - 3.
    (ticks(11) + ticks(12)) / 100.0
}

struct Args {
    messages: usize,
    reps: usize,
    latency_secs: u64,
    /// Partitions of the ingest topic (messages round-robin over them).
    partitions: i32,
}

fn args() -> Args {
    Args {
        messages: flag("--messages").unwrap_or(800),
        reps: flag("--reps").unwrap_or(3),
        latency_secs: flag("--latency-secs").unwrap_or(10),
        partitions: flag("--partitions").map_or(1, |n: i32| n.max(1)),
    }
}

/// Reads `messages` messages of partition 0 and prost-decodes each: (spans, wall s, CPU s).
fn bare_consumer(brokers: &str, topic: &str, partitions: i32, messages: usize) -> (u64, f64, f64) {
    let c = read_from_start(brokers, topic, partitions, "bench_bare", &[]);
    let mut sink = 0u64;
    let mut start: Option<(Instant, f64)> = None;
    let n = poll_messages(&c, messages, |m| {
        start.get_or_insert_with(|| (Instant::now(), cpu_seconds()));
        sink ^= payload::prost_decode_touch(m);
    });
    std::hint::black_box(sink);
    let (t0, c0) = start.unwrap_or((Instant::now(), cpu_seconds()));
    (n as u64, t0.elapsed().as_secs_f64(), cpu_seconds() - c0)
}

fn engine_config(brokers: &str, topic: &str) -> Config {
    kafka_only_config(brokers, topic, "bench_redwatch")
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

async fn wait_for(what: &str, deadline: Duration, cond: impl FnMut() -> bool) {
    let done = kafka_common::wait_for(what, deadline, cond).await;
    assert!(done, "timed out waiting until {what}");
}

async fn run(a: Args) {
    let brokers = std::env::var("REDWATCH_KAFKA_BROKERS")
        .expect("REDWATCH_KAFKA_BROKERS names the broker (tests/run-all.sh starts tansu)");
    let topic = format!("bench_kafka_ingest_{}", now_ns());
    create_topic_on(&brokers, &topic, a.partitions).await;
    println!("RESULT kafka_topic partitions={}", a.partitions);

    // ---- 1. the messages -------------------------------------------------------------------
    let shape = payload::PayloadShape::default();
    let distinct = a.messages.min(200);
    let set = payload::generate(&shape, distinct, now_ns());
    let p = producer(&brokers);
    let mut total_spans = 0u64;
    let mut total_bytes = 0usize;
    let t = Instant::now();
    for i in 0..a.messages {
        let pl = &set.payloads[i % distinct];
        let bytes = pl.shifted(now_ns().saturating_sub(set.now_ns));
        total_spans += pl.spans as u64;
        total_bytes += bytes.len();
        let partition = i as i32 % a.partitions;
        produce(&p, &topic, partition, &bytes, Duration::from_secs(120)).await;
    }
    eprintln!(
        "produced {} messages, {total_spans} spans, {:.0} B/span in {:.1}s",
        a.messages,
        total_bytes as f64 / total_spans as f64,
        t.elapsed().as_secs_f64()
    );

    // ---- 2. bare consumer --------------------------------------------------------------------
    let mut bare = Vec::new();
    for rep in 0..a.reps {
        let (b, tp, m, np) = (brokers.clone(), topic.clone(), a.messages, a.partitions);
        let (n, wall, cpu) = tokio::task::spawn_blocking(move || bare_consumer(&b, &tp, np, m))
            .await
            .expect("bare consumer");
        assert_eq!(
            n as usize, a.messages,
            "the bare consumer read every message"
        );
        let (rate, per_cpu) = (total_spans as f64 / wall, total_spans as f64 / cpu);
        println!(
            "RESULT kafka_bare_decode rep={rep} spans={total_spans} wall_s={wall:.3} cpu_s={cpu:.2} spans_per_s={rate:.0} spans_per_cpu_s={per_cpu:.0}"
        );
        bare.push((rate, per_cpu));
    }

    // ---- 3. redwatch ---------------------------------------------------------------------------
    let mut cfg = engine_config(&brokers, &topic);
    // The backlog is consumed after a group join: keep it on time.
    cfg.windows.max_out_of_orderness = Duration::from_secs(600);
    cfg.windows.allowed_lateness = Duration::from_secs(600);
    let (e, consumed) = start_consuming(&cfg).await;
    assert!(
        consumed,
        "timed out waiting until the first message is consumed"
    );
    let reg = e.registry.clone();
    let (t0, c0) = (Instant::now(), cpu_seconds());
    let want = total_spans as f64;
    wait_for("every span is accepted", Duration::from_secs(300), || {
        reg.value("redwatch_spans_accepted_total", &[("receiver", "kafka")]) >= want
    })
    .await;
    let handle = e.ingest_handle().expect("running");
    let _ = handle.barrier().await;
    let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - c0);
    let late = reg.total("redwatch_late_dropped_total");
    let (rate, per_cpu) = (want / wall, want / cpu);
    println!(
        "RESULT kafka_redwatch_red spans={total_spans} wall_s={wall:.3} cpu_s={cpu:.2} spans_per_s={rate:.0} spans_per_cpu_s={per_cpu:.0} late_dropped={late}"
    );
    e.shutdown().await;

    // ---- 4. produce → emission latency ------------------------------------------------------
    let src = format!("bench_latency_src_{}", now_ns());
    let red = format!("bench_latency_red_{}", now_ns());
    create_topic_on(&brokers, &src, 1).await;
    create_topic_on(&brokers, &red, 1).await;
    let mut cfg = engine_config(&brokers, &src);
    cfg.windows.size = Duration::from_secs(1);
    cfg.windows.rollups = Vec::new();
    cfg.windows.max_out_of_orderness = Duration::ZERO;
    cfg.windows.allowed_lateness = Duration::from_secs(2);
    cfg.windows.idle_timeout = Duration::from_secs(1);
    cfg.exporters.kafka = Some(KafkaExporterConfig {
        brokers: vec![brokers.clone()],
        metrics_topic: Some(red.clone()),
        spans_topic: None,
        librdkafka: [("linger.ms".to_string(), "0".to_string())].into(),
        ..Default::default()
    });
    let e = Engine::start(&cfg, StartOptions::default())
        .await
        .expect("latency engine starts");
    let reg = e.registry.clone();
    wait_for(
        "the latency topic's partition is assigned",
        Duration::from_secs(120),
        || {
            reg.contains(
                "redwatch_kafka_partition_assigned",
                &[("topic", &src), ("partition", "0")],
            )
        },
    )
    .await;
    // The sink reader: first arrival (wall ns) per window start.
    let arrivals: Arc<Mutex<BTreeMap<u64, u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (b, t, arr, stop) = (brokers.clone(), red.clone(), arrivals.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = read_from_start(
                &b,
                &t,
                1,
                "bench_latency_reader",
                &[("fetch.wait.max.ms", "10")],
            );
            while !stop.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(50)) {
                    let at = now_ns();
                    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                    if let Some(start) = key.split('|').nth(1).and_then(|s| s.parse::<u64>().ok()) {
                        if let Ok(mut a) = arr.lock() {
                            a.entry(start).or_insert(at);
                        }
                    }
                }
            }
        })
    };
    let p = producer(&brokers);
    let mut sent: Vec<u64> = Vec::new();
    let until = Instant::now() + Duration::from_secs(a.latency_secs);
    let mut seq = 0;
    while Instant::now() < until {
        let req = small_request(seq, "latency");
        let at = now_ns();
        produce(&p, &src, 0, &req.encode_to_vec(), Duration::from_secs(30)).await;
        sent.push(at);
        seq += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The last window closes once the partition is idle.
    let last_window = sent.last().map(|t| t / SECOND * SECOND).unwrap_or(0);
    wait_for(
        "the last window reaches the sink",
        Duration::from_secs(60),
        || {
            arrivals
                .lock()
                .map(|a| a.contains_key(&last_window))
                .unwrap_or(false)
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let arrivals = arrivals.lock().map(|a| a.clone()).unwrap_or_default();
    // The final window is closed by idleness, not by data: leave it out.
    let mut produce_to_emit = Vec::new();
    let mut after_end = Vec::new();
    for &at in &sent {
        let w = at / SECOND * SECOND;
        if w == last_window {
            continue;
        }
        if let Some(&arr) = arrivals.get(&w) {
            produce_to_emit.push(arr.saturating_sub(at) as f64 / 1e6);
        }
    }
    for (&w, &arr) in &arrivals {
        if w != last_window && w >= sent.first().copied().unwrap_or(0) / SECOND * SECOND + SECOND {
            after_end.push(arr.saturating_sub(w + SECOND) as f64 / 1e6);
        }
    }
    let n = produce_to_emit.len();
    println!(
        "RESULT kafka_latency messages={n} windows={} produce_to_emit_p50_ms={:.1} produce_to_emit_p99_ms={:.1} after_window_end_p50_ms={:.1} after_window_end_p99_ms={:.1}",
        after_end.len(),
        percentile(&mut produce_to_emit, 0.5),
        percentile(&mut produce_to_emit, 0.99),
        percentile(&mut after_end, 0.5),
        percentile(&mut after_end, 0.99),
    );
    e.shutdown().await;

    let med = |mut v: Vec<f64>| percentile(&mut v, 0.5);
    let bare_rate = med(bare.iter().map(|b| b.0).collect());
    let bare_cpu = med(bare.iter().map(|b| b.1).collect());
    println!(
        "\n| consumer | spans/s (wall) | spans per CPU-s | ratio to bare decode (per CPU-s) |"
    );
    println!("|---|---:|---:|---:|");
    println!(
        "| bare rdkafka + prost decode (median of {}) | {bare_rate:.0} | {bare_cpu:.0} | 1.00× |",
        a.reps
    );
    println!(
        "| redwatch Kafka source → full RED | {rate:.0} | {per_cpu:.0} | {:.2}× |",
        per_cpu / bare_cpu
    );
}

fn main() {
    kafka_common::run_on_two_workers(run(args()));
}
