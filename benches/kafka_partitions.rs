//! Kafka consumption across partitions (issue 13, item 8), against the broker named by
//! `REDWATCH_KAFKA_BROKERS`:
//!
//! `cargo bench --bench kafka_partitions -- [--partitions 4,16] [--messages 800] [--reps 3]
//!  [--paced-rate 8] [--paced-secs 15]`
//!
//! For each partition count P, on a fresh P-partition topic:
//! 1. Backlog: `--messages` realistic OTLP trace requests (the `payload` module's shape, spread
//!    round-robin over the partitions) are produced first.
//! 2. Bare consumer, `--reps` times: an rdkafka `BaseConsumer` assigned every partition reads
//!    the whole backlog and prost-decodes each message (`prost_decode_touch`).
//! 3. redwatch, `--reps` times: an in-process engine (Kafka source in a fresh consumer group,
//!    full RED with the default 10 s windows and 1 m rollup) consumes the same backlog, timed
//!    from its first consumed message until every span is through the operators.
//!    Both report messages and spans per wall second (median of the reps) and their ratio.
//! 4. Paced: a fresh topic and engine; small requests (20 spans) produced at `--paced-rate`
//!    messages/s for `--paced-secs`, round-robin over the partitions; reported: messages the
//!    engine consumed while the producer ran, and how long after it stopped the engine had all.

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
    start_consuming, wait_for,
};
use prost::Message as _;
use redwatch::config::Config;
use redwatch::server::{Engine, StartOptions};
use std::time::{Duration, Instant};

struct Args {
    partitions: Vec<i32>,
    messages: usize,
    reps: usize,
    paced_rate: f64,
    paced_secs: u64,
}

fn args() -> Args {
    Args {
        partitions: flag::<String>("--partitions").map_or(vec![4, 16], |v| {
            v.split(',').filter_map(|p| p.parse().ok()).collect()
        }),
        messages: flag("--messages").unwrap_or(800),
        reps: flag("--reps").unwrap_or(3),
        paced_rate: flag("--paced-rate").unwrap_or(8.0),
        paced_secs: flag("--paced-secs").unwrap_or(15),
    }
}

/// Reads `messages` messages from every partition of `topic` and prost-decodes each:
/// (messages, wall s from the first message).
fn bare_consumer(brokers: &str, topic: &str, partitions: i32, messages: usize) -> (usize, f64) {
    let c = read_from_start(brokers, topic, partitions, "bench_bare", &[]);
    let mut sink = 0u64;
    let mut start: Option<Instant> = None;
    let n = poll_messages(&c, messages, |m| {
        start.get_or_insert_with(Instant::now);
        sink ^= payload::prost_decode_touch(m);
    });
    std::hint::black_box(sink);
    (
        n,
        start.map(|s| s.elapsed().as_secs_f64()).unwrap_or(f64::NAN),
    )
}

fn engine_config(brokers: &str, topic: &str) -> Config {
    let mut cfg = kafka_only_config(brokers, topic, "bench_partitions");
    if let Some(k) = cfg.receivers.kafka.as_mut() {
        // tansu holds a group join for about half the session timeout.
        k.librdkafka = [
            ("session.timeout.ms".to_string(), "6000".to_string()),
            ("heartbeat.interval.ms".to_string(), "1000".to_string()),
        ]
        .into();
    }
    // The backlog is consumed after a group join: keep it on time.
    cfg.windows.max_out_of_orderness = Duration::from_secs(600);
    cfg.windows.allowed_lateness = Duration::from_secs(600);
    cfg
}

/// One engine reading the whole backlog: (wall s from its first consumed message, late drops).
async fn redwatch_backlog(brokers: &str, topic: &str, messages: usize, spans: u64) -> (f64, f64) {
    let (e, _) = start_consuming(&engine_config(brokers, topic)).await;
    let reg = e.registry.clone();
    let t0 = Instant::now();
    let done = wait_for("every span is accepted", Duration::from_secs(600), || {
        reg.total("redwatch_kafka_messages_total") >= messages as f64
            && reg.value("redwatch_spans_accepted_total", &[("receiver", "kafka")]) >= spans as f64
    })
    .await;
    if let Some(h) = e.ingest_handle() {
        let _ = h.barrier().await;
    }
    let wall = if done {
        t0.elapsed().as_secs_f64()
    } else {
        f64::NAN
    };
    let late = reg.total("redwatch_late_dropped_total");
    e.shutdown().await;
    (wall, late)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn backlog(a: &Args, brokers: &str, partitions: i32) -> String {
    let topic = format!("bench_partitions_{partitions}_{}", now_ns());
    create_topic_on(brokers, &topic, partitions).await;
    let set = payload::generate(
        &payload::PayloadShape::default(),
        a.messages.min(200),
        now_ns(),
    );
    let p = producer(brokers);
    let mut spans = 0u64;
    for i in 0..a.messages {
        let pl = &set.payloads[i % set.payloads.len()];
        let bytes = pl.shifted(now_ns().saturating_sub(set.now_ns));
        spans += pl.spans as u64;
        let partition = i as i32 % partitions;
        produce(&p, &topic, partition, &bytes, Duration::from_secs(120)).await;
    }
    eprintln!(
        "P={partitions}: produced {} messages, {spans} spans",
        a.messages
    );
    let mut bare = Vec::new();
    for rep in 0..a.reps {
        let (b, t, m) = (brokers.to_string(), topic.clone(), a.messages);
        let (n, wall) = tokio::task::spawn_blocking(move || bare_consumer(&b, &t, partitions, m))
            .await
            .expect("bare consumer");
        assert_eq!(n, a.messages, "the bare consumer read every message");
        println!(
            "RESULT kafka_partitions_bare partitions={partitions} rep={rep} messages={n} spans={spans} wall_s={wall:.3} messages_per_s={:.1} spans_per_s={:.0}",
            n as f64 / wall,
            spans as f64 / wall
        );
        bare.push(wall);
    }
    let mut rw = Vec::new();
    for rep in 0..a.reps {
        let (wall, late) = redwatch_backlog(brokers, &topic, a.messages, spans).await;
        println!(
            "RESULT kafka_partitions_redwatch partitions={partitions} rep={rep} messages={} spans={spans} wall_s={wall:.3} messages_per_s={:.1} spans_per_s={:.0} late_dropped={late}",
            a.messages,
            a.messages as f64 / wall,
            spans as f64 / wall
        );
        rw.push(wall);
    }
    let (bw, rw) = (median(bare), median(rw));
    let m = a.messages as f64;
    format!(
        "| {partitions} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
        m / bw,
        spans as f64 / bw,
        m / rw,
        spans as f64 / rw,
        bw / rw
    )
}

async fn paced(a: &Args, brokers: &str, partitions: i32) -> String {
    let topic = format!("bench_paced_{partitions}_{}", now_ns());
    create_topic_on(brokers, &topic, partitions).await;
    let cfg = engine_config(brokers, &topic);
    let e = Engine::start(&cfg, StartOptions::default())
        .await
        .expect("engine starts");
    let reg = e.registry.clone();
    let t = topic.clone();
    wait_for(
        "every partition is assigned",
        Duration::from_secs(120),
        || {
            (0..partitions).all(|p| {
                reg.contains(
                    "redwatch_kafka_partition_assigned",
                    &[("topic", &t), ("partition", &p.to_string())],
                )
            })
        },
    )
    .await;
    let p = producer(brokers);
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < Duration::from_secs(a.paced_secs) {
        let bytes = small_request(n, "paced").encode_to_vec();
        let partition = (n % partitions as u64) as i32;
        produce(&p, &topic, partition, &bytes, Duration::from_secs(30)).await;
        n += 1;
        let next = Duration::from_secs_f64(n as f64 / a.paced_rate);
        if let Some(wait) = next.checked_sub(t0.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    let produced_s = t0.elapsed().as_secs_f64();
    let during = reg.total("redwatch_kafka_messages_total");
    let t1 = Instant::now();
    let caught_up = wait_for(
        "every paced message is consumed",
        Duration::from_secs(120),
        || reg.total("redwatch_kafka_messages_total") >= n as f64,
    )
    .await;
    let catch_up = if caught_up {
        format!("{:.2}", t1.elapsed().as_secs_f64())
    } else {
        "never (120 s)".to_string()
    };
    println!(
        "RESULT kafka_partitions_paced partitions={partitions} produced={n} produced_per_s={:.1} consumed_while_producing={during} consumed_per_s={:.1} catch_up_s={catch_up}",
        n as f64 / produced_s,
        during / produced_s
    );
    e.shutdown().await;
    format!(
        "| {partitions} | {:.1} | {:.1} | {catch_up} |",
        n as f64 / produced_s,
        during / produced_s
    )
}

async fn run(a: Args) {
    let brokers = std::env::var("REDWATCH_KAFKA_BROKERS")
        .expect("REDWATCH_KAFKA_BROKERS names the broker (tests/run-all.sh starts tansu)");
    let mut rows = Vec::new();
    let mut paced_rows = Vec::new();
    for &p in &a.partitions {
        rows.push(backlog(&a, &brokers, p).await);
        paced_rows.push(paced(&a, &brokers, p).await);
    }
    println!("\n| partitions | bare msgs/s | bare spans/s | redwatch msgs/s | redwatch spans/s | redwatch / bare |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!("{r}");
    }
    println!("\n| partitions | produced msgs/s | redwatch consumed msgs/s while producing | catch-up after the producer stopped (s) |");
    println!("|---:|---:|---:|---|");
    for r in paced_rows {
        println!("{r}");
    }
}

fn main() {
    kafka_common::run_on_two_workers(run(args()));
}
