//! A fleet against one `all` instance (issue 14, docs/fleet.md), `redwatch run` processes
//! against the broker named by `REDWATCH_KAFKA_BROKERS` (benches/fleet_run.sh starts a fresh
//! tansu and runs this under the ports lock):
//!
//! `fleet --redwatch PATH [--spans 2000000] [--backlog-secs 300] [--rate 10000]
//!  [--delay-secs 100]`
//!
//! 1. Backlog: `--spans` spans in realistic 500-span requests (the `payload` module's shape, 20
//!    services × 50 operations = 1000 series), the same request sequence on each of the 4
//!    partitions of a fresh telemetry topic, so every series is on every partition. End times
//!    run in order over `--backlog-secs` (whole minutes, in the past); then two small sentinel
//!    requests per partition (another service, 15 s and 35 s after the backlog, one series per
//!    shuffle partition) move every watermark and every share's progress past the backlog's
//!    last windows, so they close on data, not on idle timeouts.
//! 2. Throughput. Every instance is started first on the empty topic (its groups joined, its
//!    partitions assigned), then SIGSTOPped; the backlog is produced; then, one after the other:
//!    - one `fleet.role: all` instance pinned to core 0 (`taskset -c 0`), SIGCONTed;
//!    - 2 ingest instances pinned to core 0 and 2 merge instances pinned to core 1, SIGCONTed.
//!
//!    Done = exact, read by an independent consumer: for the `all` instance its Kafka sink
//!    topic (`exporters.kafka.metrics_topic`, shares summed per key as a consumer does), for the
//!    fleet the results topic; the latest record of every (window spec, window, series) key
//!    carries exactly the calls the truth (computed here from the produced spans) says, for
//!    every window of the backlog, 10 s and 1 m. Spans/s = backlog spans / (done − SIGCONT).
//!    Reported with each process's CPU seconds (`/proc/PID/stat`).
//! 3. Shuffle bytes per span: the shuffle topic's records of the backlog's windows (key +
//!    value + headers), divided by the backlog's spans.
//! 4. Delay: fresh topics; a fleet (pinned as above) and an `all` instance (core 0), default
//!    config (10 s windows, 1 m rollup, 5 s out-of-orderness, 30 s lateness and idle timeout);
//!    requests produced at `--rate` spans/s for `--delay-secs`, end times "now". For every
//!    window: the wall time its last span was produced, and the wall time its results became
//!    exact (every series of it, read live from the results / sink topic).
//!
//! Throughput settings differ from the defaults in two places: `windows.idle_timeout: 10m`
//! (SIGSTOPped instances must not see their partitions idle and move the watermark to wall
//! clock, which would make the backlog late) and the group's session timeout (2 min, to stay in
//! the group while stopped). The delay phase runs the defaults.

#[path = "args/mod.rs"]
mod args;
#[path = "../tests/kafka_support/admin.rs"]
mod kafka_admin;
#[path = "kafka_common/mod.rs"]
mod kafka_common;
#[path = "payload/mod.rs"]
mod payload;
#[path = "fleet/processes.rs"]
mod processes;
#[path = "fleet/truth.rs"]
mod truth;

use args::flag;
use kafka_admin::create_topic_on;
use kafka_common::{now_ns, produce, producer, read_from_start};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use processes::*;
use prost::Message as _;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureProducer;
use redwatch_connectors::kafka::rdkafka;
use redwatch_connectors::kafka::records::partition_for;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use truth::*;

const PARTITIONS: i32 = 4;
const SECOND: u64 = 1_000_000_000;
const WINDOW: u64 = 10 * SECOND;
const MINUTE: u64 = 60 * SECOND;
const SPECS: [(&str, u64); 2] = [("10s", WINDOW), ("1m", MINUTE)];

struct Args {
    redwatch: PathBuf,
    spans: u64,
    backlog_secs: u64,
    rate: f64,
    delay_secs: u64,
}

fn args() -> Args {
    let mut a = Args {
        redwatch: flag("--redwatch")
            .unwrap_or_else(|| std::env::var("REDWATCH_BIN").unwrap_or_default().into()),
        spans: flag("--spans").unwrap_or(2_000_000),
        backlog_secs: flag("--backlog-secs").unwrap_or(300),
        rate: flag("--rate").unwrap_or(10_000.0),
        delay_secs: flag("--delay-secs").unwrap_or(100),
    };
    assert!(
        a.redwatch.is_file(),
        "--redwatch PATH (or REDWATCH_BIN) names the redwatch binary to run (a release build)"
    );
    a.backlog_secs = (a.backlog_secs / 60).max(1) * 60;
    a
}

async fn send(p: &FutureProducer, topic: &str, partition: i32, bytes: &[u8]) {
    produce(p, topic, partition, bytes, Duration::from_secs(120)).await;
}

struct Run {
    name: &'static str,
    wall_s: f64,
    cpu: Vec<(String, f64)>,
}

/// SIGCONTs `instances` and waits until `reader` equals the truth.
fn drain(
    name: &'static str,
    instances: &[&Instance],
    reader: &Reader,
    truth: &Truth,
    until: u64,
) -> Run {
    let cpu0: Vec<f64> = instances.iter().map(|i| i.cpu_s()).collect();
    let t0 = now_ns();
    for i in instances {
        i.signal("-CONT");
    }
    let done = reader.wait_exact(&truth.calls, until, Duration::from_secs(600));
    let wall_s = done.map_or(f64::NAN, |d| d.saturating_sub(t0) as f64 / 1e9);
    let cpu = instances
        .iter()
        .zip(cpu0)
        .map(|(i, c)| (i.name.clone(), i.cpu_s() - c))
        .collect();
    Run { name, wall_s, cpu }
}

/// The two setups of one measurement, started and assigned: one `all` instance on core 0, and
/// a fleet of 2 ingest instances on core 0 and 2 merge instances on core 1.
struct Setups {
    all: Instance,
    ingest: Vec<Instance>,
    merge: Vec<Instance>,
}

impl Setups {
    async fn start(
        b: &Path,
        dir: &Path,
        brokers: &str,
        t: &Topics,
        prefix: &str,
        windows: &str,
        librdkafka: &str,
    ) -> Setups {
        let spawn = |role: &str, name: String, core: u32| {
            let cfg = t.config(brokers, role, windows, librdkafka);
            Instance::spawn(b, dir, &name, core, &cfg)
        };
        let all = spawn("all", format!("{prefix}all"), 0);
        let ingest: Vec<Instance> = (0..2)
            .map(|i| spawn("ingest", format!("{prefix}ingest{i}"), 0))
            .collect();
        let merge: Vec<Instance> = (0..2)
            .map(|i| spawn("merge", format!("{prefix}merge{i}"), 1))
            .collect();
        wait_assigned(&[&all], "redwatch_kafka_partition_assigned", Some(&t.input)).await;
        wait_assigned(
            &[&ingest[0], &ingest[1]],
            "redwatch_kafka_partition_assigned",
            Some(&t.input),
        )
        .await;
        wait_assigned(
            &[&merge[0], &merge[1]],
            "redwatch_fleet_merge_partition_assigned",
            None,
        )
        .await;
        Setups { all, ingest, merge }
    }
}

async fn throughput(a: &Args, brokers: &str, dir: &Path) {
    let t = Topics::create(brokers, "tp").await;
    let b = &a.redwatch;
    // Stay in the group while stopped; never see the stopped partitions as idle.
    let librdkafka = "{ session.timeout.ms: '120000', heartbeat.interval.ms: '3000', \
                      max.poll.interval.ms: '900000' }";
    let windows = "{ idle_timeout: 10m }";
    let Setups { all, ingest, merge } =
        Setups::start(b, dir, brokers, &t, "", windows, librdkafka).await;
    let every: Vec<&Instance> = std::iter::once(&all)
        .chain(ingest.iter())
        .chain(merge.iter())
        .collect();
    for i in &every {
        i.signal("-STOP");
    }
    eprintln!("fleet bench: 5 instances assigned and stopped; producing the backlog");

    // The backlog: whole minutes in the past, the same requests on every partition.
    let secs = a.backlog_secs;
    let t0 = (now_ns() / MINUTE) * MINUTE - (secs + 180) * SECOND;
    let end = t0 + secs * SECOND;
    let shape = payload::PayloadShape {
        spread_ns: 2 * SECOND,
        ..Default::default()
    };
    let per_partition = (a.spans / PARTITIONS as u64 / shape.spans_per_request as u64).max(2);
    let set = payload::generate(&shape, per_partition.min(200) as usize, t0 + 2 * SECOND);
    let spans: Vec<Vec<(u64, String)>> = set.payloads.iter().map(|p| spans_of(&p.bytes)).collect();
    let step = (secs * SECOND - 2 * SECOND) / (per_partition - 1);
    let mut truth = Truth::default();
    let prod = producer(brokers);
    let produce_start = Instant::now();
    for k in 0..per_partition {
        let i = (k % set.payloads.len() as u64) as usize;
        let delta = k * step;
        for (e, s) in &spans[i] {
            truth.add(e + delta, s, PARTITIONS as f64);
        }
        let bytes = set.payloads[i].shifted(delta);
        for p in 0..PARTITIONS {
            send(&prod, &t.input, p, &bytes).await;
        }
    }
    for p in 0..PARTITIONS {
        send(&prod, &t.input, p, &sentinel(end + 15 * SECOND)).await;
        send(&prod, &t.input, p, &sentinel(end + 35 * SECOND)).await;
    }
    let series = {
        let mut s: Vec<&String> = truth.calls.keys().map(|k| &k.2).collect();
        s.sort();
        s.dedup();
        s.len()
    };
    eprintln!(
        "fleet bench: produced {} spans ({} requests of {} per partition, {series} series, {} windows of 10 s) in {:.1} s",
        truth.spans,
        per_partition,
        shape.spans_per_request,
        secs / 10,
        produce_start.elapsed().as_secs_f64()
    );

    let fleet_refs: Vec<&Instance> = ingest.iter().chain(merge.iter()).collect();
    let run_all = || {
        let sink = Reader::start(brokers, &t.sink);
        drain("all", &[&all], &sink, &truth, end)
    };
    let run_fleet = || {
        let results = Reader::start(brokers, &t.results);
        let r = drain("fleet", &fleet_refs, &results, &truth, end);
        let records = results.board.lock().expect("board").records;
        (r, records)
    };
    let (one, (fleet, results_records)) = if std::env::var("FLEET_FIRST").is_ok() {
        let f = run_fleet();
        (run_all(), f)
    } else {
        let o = run_all();
        (o, run_fleet())
    };
    for i in &every {
        let text = reqwest::get(format!("http://{}/metrics", i.prom))
            .await
            .map(|r| r.text());
        if let Ok(text) = text {
            for l in text.await.unwrap_or_default().lines() {
                if l.starts_with("redwatch_late") || l.starts_with("redwatch_watermark") {
                    eprintln!("{}: {l}", i.name);
                }
            }
        }
    }
    let late_all = all
        .metric("redwatch_late_dropped_total", &[("signal", "spans")])
        .await;
    drop(every);
    drop(all);
    let mut late_fleet = 0.0;
    for i in &ingest {
        late_fleet += i
            .metric("redwatch_late_dropped_total", &[("signal", "spans")])
            .await;
    }
    let mut merge_records = 0.0;
    for m in &merge {
        merge_records += m.metric("redwatch_fleet_merge_records_total", &[]).await;
    }

    for r in [&one, &fleet] {
        let cpu: Vec<String> = r.cpu.iter().map(|(n, c)| format!("{n}={c:.2}")).collect();
        let total: f64 = r.cpu.iter().map(|c| c.1).sum();
        println!(
            "RESULT fleet_throughput setup={} spans={} series={series} wall_s={:.3} spans_per_s={:.0} cpu_s_total={total:.2} spans_per_cpu_s={:.0} cpu_s {}",
            r.name,
            truth.spans,
            r.wall_s,
            truth.spans as f64 / r.wall_s,
            truth.spans as f64 / total,
            cpu.join(" ")
        );
    }
    println!(
        "RESULT fleet_throughput_ratio fleet_over_all={:.3} late_dropped_all={late_all} late_dropped_fleet={late_fleet} merge_records={merge_records} results_records={results_records}",
        one.wall_s / fleet.wall_s
    );

    // The shuffle's bytes, for the backlog's windows.
    let (bs, topic) = (brokers.to_string(), t.shuffle.clone());
    let (records, bytes) = tokio::task::spawn_blocking(move || topic_bytes(&bs, &topic, end))
        .await
        .expect("shuffle reader");
    let per_share_window_series =
        truth.spans as f64 / PARTITIONS as f64 / (secs / 10) as f64 / series as f64;
    println!(
        "RESULT fleet_shuffle records={records} bytes={bytes} spans={} bytes_per_record={:.0} bytes_per_span={:.1} spans_per_series_share_10s_window={per_share_window_series:.1}",
        truth.spans,
        bytes as f64 / records.max(1) as f64,
        bytes as f64 / truth.spans as f64
    );
}

/// (records, key + value + header bytes) of a topic's records of windows starting before
/// `until`, read from the beginning until 3 s pass without a record.
fn topic_bytes(brokers: &str, topic: &str, until: u64) -> (u64, u64) {
    let c = read_from_start(brokers, topic, PARTITIONS, "fleet_bench_bytes", &[]);
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(3) {
        let Some(Ok(m)) = c.poll(Duration::from_millis(100)) else {
            continue;
        };
        last = Instant::now();
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        if parse_key(&key).is_none_or(|k| k.1 >= until) {
            continue;
        }
        records += 1;
        bytes += (key.len() + m.payload().map_or(0, <[u8]>::len)) as u64;
        bytes += m.headers().map_or(0, |h| {
            h.iter()
                .map(|x| x.key.len() + x.value.map_or(0, <[u8]>::len))
                .sum::<usize>()
        }) as u64;
    }
    (records, bytes)
}

/// Produce → final window, live, default config.
async fn delay(a: &Args, brokers: &str, dir: &Path) {
    let t = Topics::create(brokers, "delay").await;
    let b = &a.redwatch;
    // Quick group liveness, as the tests use; windows are the defaults.
    let librdkafka = "{ session.timeout.ms: '6000', heartbeat.interval.ms: '1000' }";
    let windows = "{}";
    let Setups { all, ingest, merge } =
        Setups::start(b, dir, brokers, &t, "d_", windows, librdkafka).await;
    let sink = Reader::start(brokers, &t.sink);
    let results = Reader::start(brokers, &t.results);

    let shape = payload::PayloadShape {
        spread_ns: SECOND / 2,
        ..Default::default()
    };
    let set = payload::generate(&shape, 200, now_ns());
    let spans: Vec<Vec<(u64, String)>> = set.payloads.iter().map(|p| spans_of(&p.bytes)).collect();
    let per_s = a.rate / shape.spans_per_request as f64;
    let mut truth = Truth::default();
    // Per window (spec, start): the wall time its last span was produced.
    let mut last_produced: HashMap<(&'static str, u64), u64> = HashMap::new();
    let prod = producer(brokers);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(a.delay_secs) {
        let i = (n % set.payloads.len() as u64) as usize;
        let delta = now_ns().saturating_sub(set.now_ns);
        let bytes = set.payloads[i].shifted(delta);
        send(&prod, &t.input, (n % PARTITIONS as u64) as i32, &bytes).await;
        let at = now_ns();
        for (e, s) in &spans[i] {
            truth.add(e + delta, s, 1.0);
            for (spec, size) in SPECS {
                last_produced.insert((spec, (e + delta) / size * size), at);
            }
        }
        n += 1;
        let next = Duration::from_secs_f64(n as f64 / per_s);
        if let Some(w) = next.checked_sub(start.elapsed()) {
            tokio::time::sleep(w).await;
        }
    }
    let stopped = now_ns();
    eprintln!(
        "fleet bench: produced {} spans live in {n} requests at {:.0} spans/s; waiting for the last windows",
        truth.spans,
        truth.spans as f64 / start.elapsed().as_secs_f64()
    );
    // Every window, the last ones too (they close on the idle timeout).
    let (sink_done, results_done) = tokio::task::spawn_blocking(move || {
        let s = sink.wait_exact(&truth.calls, u64::MAX, Duration::from_secs(240));
        let r = results.wait_exact(&truth.calls, u64::MAX, Duration::from_secs(240));
        (
            (s, sink.board.lock().expect("board").changed_at.clone()),
            (r, results.board.lock().expect("board").changed_at.clone()),
        )
    })
    .await
    .expect("readers");
    drop((all, ingest, merge));
    for (setup, (done, changed)) in [("all", sink_done), ("fleet", results_done)] {
        if done.is_none() {
            println!("RESULT fleet_delay setup={setup} not_exact_within_s=240");
            continue;
        }
        // When each window became exact: its last key's change.
        let mut exact_at: HashMap<(&'static str, u64), u64> = HashMap::new();
        for ((spec, ws, _), at) in &changed {
            let e = exact_at.entry((spec, *ws)).or_default();
            *e = (*e).max(*at);
        }
        let mut rows: Vec<_> = last_produced.iter().collect();
        rows.sort_by_key(|((spec, ws), _)| (*spec, *ws));
        for ((spec, ws), last) in rows {
            let size = SPECS.iter().find(|s| s.0 == *spec).map_or(0, |s| s.1);
            let Some(at) = exact_at.get(&(*spec, *ws)) else {
                continue;
            };
            // Windows ending less than a window before the producer stopped close on the
            // idle timeout in a fleet (no share writes a later window), the last one in both.
            println!(
                "RESULT fleet_delay setup={setup} spec={spec} window_end_s={} after_last_span_s={:.2} after_window_end_s={:.2} producer_stopped_after_end_s={:.1}",
                (ws + size) / SECOND % 3600,
                at.saturating_sub(*last) as f64 / 1e9,
                at.saturating_sub(ws + size) as f64 / 1e9,
                (stopped as f64 - (ws + size) as f64) / 1e9,
            );
        }
    }
}

async fn run(a: Args) {
    let brokers = std::env::var("REDWATCH_KAFKA_BROKERS")
        .expect("REDWATCH_KAFKA_BROKERS names the broker (benches/fleet_run.sh starts tansu)");
    let dir = std::env::temp_dir().join(format!("redwatch-fleet-bench-{}", now_ns()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    eprintln!(
        "fleet bench: binary {}, logs in {}",
        a.redwatch.display(),
        dir.display()
    );
    if a.spans > 0 {
        throughput(&a, &brokers, &dir).await;
    }
    if a.delay_secs > 0 {
        delay(&a, &brokers, &dir).await;
    }
}

fn main() {
    kafka_common::run_on_two_workers(run(args()));
}
