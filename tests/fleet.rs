//! A fleet (issue 14, docs/fleet.md) against the real broker: 2 ingest + 2 merge `redwatch`
//! processes on a 4-partition input topic where every series is on every partition.
//!
//! The truth is computed here from the raw spans produced (plain code, nothing of redwatch's):
//! calls per (window spec, window, series, status), and each window's durations for its p99.
//! It must equal the results topic's latest record per key (read by an independent consumer,
//! OTLP payload only), the `red` table queried on either merge instance, and
//! `quantile_merge(duration_sketch, 0.99)` within the sketch's 1% relative error.
//!
//! - `a_fleet_is_exact_and_one_incident_alarms_once_on_its_owner`: a backlog of 85 windows
//!   (detection's default warm-up is 60) with one tail-latency incident on one series (its p99
//!   10× up for three windows), spread over every partition: exactly one incident and one
//!   `anomaly_detected` trace, on the merge instance owning the series, none on the other.
//! - `a_fleet_stays_exact_when_an_ingest_and_a_merge_instance_are_sigkilled`: live spans; one
//!   ingest instance (after it committed offsets) and one merge instance are SIGKILLed
//!   mid-window and restarted; still exact.

#![cfg(feature = "kafka")]

mod common;
mod kafka_support;

use common::{resource_spans, SpanSpec};
use kafka_support::{
    brokers, create_topic, now_ns, read_topic, scrape, unique, Record, Redwatch, SECOND,
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message as _;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PARTITIONS: i32 = 4;
const SERVICES: usize = 3;
const WINDOW: u64 = 10 * SECOND;
const MINUTE: u64 = 60 * SECOND;
const DEADLINE: Duration = Duration::from_secs(240);

/// The two tests start 4 processes each: one at a time on a 2-core machine.
static ONE_FLEET_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// (window spec, window start ns, span name, status label).
type Key = (String, u64, String, String);
/// (window spec, window start ns, span name).
type WindowKey = (String, u64, String);

/// The truth, from the raw spans.
#[derive(Default, Clone)]
struct Truth {
    calls: BTreeMap<Key, f64>,
    durations: BTreeMap<WindowKey, Vec<f64>>,
}

impl Truth {
    fn add(&mut self, span: &SpanSpec) {
        let status = match span.status {
            StatusCode::Error => "STATUS_CODE_ERROR",
            StatusCode::Ok => "STATUS_CODE_OK",
            StatusCode::Unset => "STATUS_CODE_UNSET",
        };
        let ms = span.duration.as_nanos() as f64 / 1e6;
        for (spec, size) in [("10s", WINDOW), ("1m", MINUTE)] {
            let start = span.end / size * size;
            *self
                .calls
                .entry((spec.into(), start, span.name.clone(), status.into()))
                .or_default() += 1.0;
            self.durations
                .entry((spec.into(), start, span.name.clone()))
                .or_default()
                .push(ms);
        }
    }

    /// Calls per window and series (statuses added), and errors.
    fn per_window(&self) -> BTreeMap<WindowKey, (f64, f64)> {
        let mut m: BTreeMap<WindowKey, (f64, f64)> = BTreeMap::new();
        for ((spec, start, name, status), v) in &self.calls {
            let e = m.entry((spec.clone(), *start, name.clone())).or_default();
            e.0 += v;
            if status == "STATUS_CODE_ERROR" {
                e.1 += v;
            }
        }
        m
    }

    /// Whether `got` is within the sketch's 1% relative error of the p99 of the raw durations
    /// (any value between the ranks next to 0.99 · (n − 1)).
    fn p99_ok(&self, k: &WindowKey, got: f64) -> bool {
        let Some(d) = self.durations.get(k) else {
            return false;
        };
        let mut d = d.clone();
        d.sort_by(f64::total_cmp);
        let r = 0.99 * (d.len() - 1) as f64;
        let lo = d[(r.floor() as usize).saturating_sub(1)];
        let hi = d[(r.ceil() as usize + 1).min(d.len() - 1)];
        got >= lo * 0.99 - 1e-9 && got <= hi * 1.01 + 1e-9
    }
}

/// A deterministic spread in [0, 1) (no randomness in tests: the same data every run).
fn spread(a: u64, b: u64, c: u64, d: u64) -> f64 {
    let mut x = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(c.wrapping_mul(0x94D0_49BB_1331_11EB))
        .wrapping_add(d);
    x ^= x >> 31;
    x = x.wrapping_mul(0xD6E8_FEB8_6659_FD93);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn service(i: usize) -> String {
    format!("svc{i}")
}

/// Span names name their service, so the OTLP payload's span name identifies the series.
fn op(i: usize) -> String {
    format!("GET /svc{i}")
}

/// One message: `per_service` spans of every service, ending in `[from, from + span)`.
fn message(
    truth: &mut Truth,
    from: u64,
    span: u64,
    per_service: usize,
    seed: (u64, u64),
    slow: Option<usize>,
) -> Vec<u8> {
    let mut rs = Vec::new();
    for s in 0..SERVICES {
        let mut spans = Vec::new();
        for k in 0..per_service {
            let x = spread(seed.0, seed.1, s as u64, k as u64);
            let end = from + ((k as u64 * span) / per_service as u64) + (x * 1e6) as u64;
            let base_us = 20_000.0 + 10_000.0 * x;
            // The incident: the slowest tail (1 span in 25) of one service is 10× slower, so
            // its p99 jumps while its p50, rate and errors stay as they were.
            let us = if slow == Some(s) && k == 0 {
                base_us * 10.0
            } else {
                base_us
            };
            let mut sp = SpanSpec::new(&op(s)).end(end.min(from + span - 1));
            sp.duration = Duration::from_micros(us as u64);
            if k % 10 == 3 {
                sp = sp.status(StatusCode::Error);
            }
            truth.add(&sp);
            spans.push(sp);
        }
        rs.push(resource_spans(Some(&service(s)), &spans));
    }
    ExportTraceServiceRequest { resource_spans: rs }.encode_to_vec()
}

/// The topics and configs of one fleet.
struct Fleet {
    input: String,
    shuffle: String,
    results: String,
    signals: [String; 2],
    dir: PathBuf,
}

impl Fleet {
    async fn new(name: &str) -> Fleet {
        let input = unique(&format!("fleet_{name}_in"));
        let f = Fleet {
            shuffle: format!("{input}_partials"),
            results: format!("{input}_windows"),
            signals: [format!("{input}_signals0"), format!("{input}_signals1")],
            dir: std::env::temp_dir().join(format!("redwatch-{input}")),
            input,
        };
        create_topic(&f.input, PARTITIONS).await;
        create_topic(&f.shuffle, PARTITIONS).await;
        create_topic(&f.results, PARTITIONS).await;
        for s in &f.signals {
            create_topic(s, 1).await;
        }
        std::fs::create_dir_all(&f.dir).expect("temp dir");
        f
    }

    /// The config of instance `i` of `role`: the default config but for ephemeral ports, quick
    /// group liveness, a 2 s allowed lateness and a 5 s idle timeout (to keep the test short).
    fn config(&self, role: &str, i: usize) -> PathBuf {
        let b = brokers();
        let spans_topic = if role == "merge" {
            self.signals[i].as_str()
        } else {
            "null"
        };
        let yaml = format!(
            "receivers:\n  otlp:\n    grpc: {{ endpoint: 127.0.0.1:0 }}\n    http: {{ endpoint: 127.0.0.1:0 }}\n  \
             kafka:\n    brokers: ['{b}']\n    traces_topic: {input}\n    metrics_topic: null\n    \
             group_id: {input}_group\n    client_id: {role}{i}\n    \
             librdkafka: {{ session.timeout.ms: '6000', heartbeat.interval.ms: '1000' }}\n\
             windows: {{ allowed_lateness: 2s, idle_timeout: 5s }}\n\
             exporters:\n  prometheus: {{ endpoint: 127.0.0.1:0 }}\n  \
             kafka: {{ brokers: ['{b}'], metrics_topic: null, spans_topic: {spans_topic}, client_id: {role}{i} }}\n\
             sql:\n  http_endpoint: 127.0.0.1:0\n  flight_endpoint: null\n\
             fleet: {{ role: {role}, shuffle_topic: {shuffle}, results_topic: {results} }}\n",
            input = self.input,
            shuffle = self.shuffle,
            results = self.results,
        );
        let path = self.dir.join(format!("{role}{i}.yaml"));
        std::fs::write(&path, yaml).expect("config written");
        path
    }
}

struct Instance {
    rw: Redwatch,
    prom: String,
    sql: String,
    config: PathBuf,
}

async fn spawn(config: &Path) -> Instance {
    let mut rw = Redwatch::spawn(config);
    let prom = rw.addr("prometheus").await;
    let sql = rw.addr("sql_http").await;
    Instance {
        rw,
        prom,
        sql,
        config: config.to_path_buf(),
    }
}

impl Instance {
    async fn restart(&mut self) {
        *self = spawn(&self.config.clone()).await;
    }
}

fn logs(all: &[&Instance]) -> String {
    all.iter()
        .map(|i| format!("--- {}:\n{}", i.config.display(), i.rw.log_text()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits until the merge instances together hold every shuffle partition; returns which
/// instance holds each.
async fn merge_owners(merges: &[&Instance], deadline: Duration) -> BTreeMap<i32, usize> {
    let until = Instant::now() + deadline;
    loop {
        let mut owners = BTreeMap::new();
        for (i, m) in merges.iter().enumerate() {
            if let Some(s) = scrape(&m.prom).await {
                for p in 0..PARTITIONS {
                    if s.get(
                        "redwatch_fleet_merge_partition_assigned",
                        &[("partition", &p.to_string())],
                    ) == Some(1.0)
                    {
                        owners.insert(p, i);
                    }
                }
            }
        }
        if owners.len() == PARTITIONS as usize {
            return owners;
        }
        assert!(
            Instant::now() < until,
            "the shuffle partitions were not all assigned (have {owners:?}):\n{}",
            logs(merges)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn sql(addr: &str, q: &str) -> Vec<serde_json::Value> {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/sql"))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "query": q }).to_string())
        .send()
        .await
        .expect("SQL answers");
    let status = r.status().as_u16();
    let v: serde_json::Value =
        serde_json::from_slice(&r.bytes().await.expect("body")).expect("JSON");
    assert_eq!(status, 200, "{q}: {v}");
    v["rows"].as_array().expect("rows").clone()
}

/// (calls, errors) and `quantile_merge` p99 per window and series, from a merge instance's `red`.
async fn red_table(addr: &str) -> BTreeMap<WindowKey, (f64, f64, f64)> {
    let q = "SELECT window_size, CAST(window_start AS BIGINT) AS ws, span_name, \
             SUM(calls) AS calls, SUM(errors) AS errors, \
             quantile_merge(duration_sketch, 0.99) AS p99 \
             FROM red WHERE is_final GROUP BY window_size, CAST(window_start AS BIGINT), span_name";
    let mut m = BTreeMap::new();
    for r in sql(addr, q).await {
        let key = (
            r["window_size"].as_str().expect("window_size").to_string(),
            r["ws"].as_u64().expect("ws") * 1_000_000,
            r["span_name"].as_str().expect("span_name").to_string(),
        );
        m.insert(
            key,
            (
                r["calls"].as_f64().expect("calls"),
                r["errors"].as_f64().expect("errors"),
                r["p99"].as_f64().unwrap_or(f64::NAN),
            ),
        );
    }
    m
}

/// Calls per (spec, window, span name, status) of the results topic's latest record per key,
/// from the OTLP payload alone.
fn results_calls(records: &[Record]) -> BTreeMap<Key, f64> {
    let mut m = BTreeMap::new();
    for r in kafka_support::latest_per_key(records).values() {
        let req = ExportMetricsServiceRequest::decode(r.payload.as_slice()).expect("OTLP metrics");
        for ((start, name, _, status), v, ws) in kafka_support::calls_in(&req) {
            *m.entry((ws, start, name, status)).or_default() += v;
        }
    }
    m
}

/// Histogram p99 is not checked here (buckets are coarse); the sum of durations is.
fn results_sums(records: &[Record]) -> BTreeMap<WindowKey, f64> {
    let mut m = BTreeMap::new();
    for r in kafka_support::latest_per_key(records).values() {
        let req = ExportMetricsServiceRequest::decode(r.payload.as_slice()).expect("OTLP metrics");
        for rm in &req.resource_metrics {
            for sm in &rm.scope_metrics {
                for mt in sm
                    .metrics
                    .iter()
                    .filter(|m| m.name == "traces.span.metrics.duration")
                {
                    let Some(metric::Data::Histogram(h)) = &mt.data else {
                        panic!("duration is a histogram");
                    };
                    for dp in &h.data_points {
                        let a = &dp.attributes;
                        let k = (
                            kafka_support::attr(a, "redwatch.window_size").unwrap_or_default(),
                            dp.start_time_unix_nano,
                            kafka_support::attr(a, "span.name").unwrap_or_default(),
                        );
                        *m.entry(k).or_default() += dp.sum.unwrap_or(0.0);
                    }
                }
            }
        }
    }
    m
}

/// Reads the results topic until its latest records equal the truth (or the deadline).
async fn results_equal_truth(f: &Fleet, truth: &Truth, all: &[&Instance]) {
    let (b, t, want) = (brokers(), f.results.clone(), truth.calls.clone());
    let records = tokio::task::spawn_blocking(move || {
        read_topic(&b, &t, PARTITIONS, DEADLINE, |r| results_calls(r) == want)
    })
    .await
    .expect("results reader");
    let got = results_calls(&records);
    let d = kafka_support::diff(&truth.calls, &got);
    assert!(
        d.is_empty(),
        "the results topic's latest record per key differs from the truth ({} keys compared, {} records):\n{d}\n{}",
        truth.calls.len(),
        records.len(),
        logs(all)
    );
    let mut sums_want: BTreeMap<WindowKey, f64> = BTreeMap::new();
    for (k, d) in &truth.durations {
        sums_want.insert(k.clone(), d.iter().sum());
    }
    let sums = results_sums(&records);
    for (k, v) in &sums_want {
        let g = sums.get(k).copied().unwrap_or(f64::NAN);
        assert!(
            (g - v).abs() <= 1e-6 * v.max(1.0),
            "duration sum of {k:?}: expected {v}, results topic has {g}"
        );
    }
    eprintln!(
        "fleet: results topic equals the truth: {} keys, {} windows×series, {} records read",
        truth.calls.len(),
        truth.durations.len(),
        records.len()
    );
}

/// Waits until a merge instance's `red` table equals the truth: calls and errors exactly, the
/// `quantile_merge` p99 within the sketch's error.
async fn red_equal_truth(m: &Instance, truth: &Truth, all: &[&Instance]) {
    let want = truth.per_window();
    let until = Instant::now() + DEADLINE;
    loop {
        let got = red_table(&m.sql).await;
        let mut problems = Vec::new();
        for (k, (calls, errors)) in &want {
            match got.get(k) {
                None => problems.push(format!("{k:?}: missing")),
                Some((c, e, p)) => {
                    if c != calls || e != errors {
                        problems.push(format!(
                            "{k:?}: calls/errors {c}/{e}, expected {calls}/{errors}"
                        ));
                    }
                    if !truth.p99_ok(k, *p) {
                        problems.push(format!("{k:?}: quantile_merge p99 {p} out of bound"));
                    }
                }
            }
        }
        for k in got.keys().filter(|k| !want.contains_key(*k)) {
            problems.push(format!("{k:?}: unexpected"));
        }
        if problems.is_empty() {
            eprintln!(
                "fleet: the red table on {} equals the truth ({} windows×series)",
                m.sql,
                want.len()
            );
            return;
        }
        if Instant::now() >= until {
            let fleet_metrics = reqwest::get(format!("http://{}/metrics", m.prom))
                .await
                .expect("metrics")
                .text()
                .await
                .expect("metrics text");
            let fleet_metrics: Vec<&str> = fleet_metrics
                .lines()
                .filter(|l| l.starts_with("redwatch_fleet"))
                .collect();
            panic!(
                "the red table on {} differs from the truth ({} of {} keys):\n{}\n{}\n{}",
                m.sql,
                problems.len(),
                want.len(),
                problems.join("\n"),
                fleet_metrics.join("\n"),
                logs(all)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Distinct trace ids of `anomaly_detected` spans on a merge instance's signals topic.
fn anomaly_traces(topic: &str) -> BTreeSet<(String, String)> {
    span_traces(topic, "anomaly_detected")
}

/// Distinct (trace id, `service.name.observed`) of the spans named `name` on a signals topic.
fn span_traces(topic: &str, name: &str) -> BTreeSet<(String, String)> {
    let records = read_topic(&brokers(), topic, 1, Duration::from_secs(5), |_| false);
    let mut out = BTreeSet::new();
    for r in records {
        let req = ExportTraceServiceRequest::decode(r.payload.as_slice()).expect("OTLP traces");
        for rs in &req.resource_spans {
            for ss in &rs.scope_spans {
                for s in ss.spans.iter().filter(|s| s.name == name) {
                    let trace: String = s.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                    let observed = kafka_support::attr(&s.attributes, "service.name.observed")
                        .unwrap_or_default();
                    out.insert((trace, observed));
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_is_exact_and_one_incident_alarms_once_on_its_owner() {
    let _one = ONE_FLEET_AT_A_TIME.lock().await;
    let f = Fleet::new("exact").await;
    // The backlog: 85 windows ending a minute ago, every series in every window on every
    // partition, 25 spans each; service 1's tail is 10× slower in windows 70–72 (an incident).
    const WINDOWS: u64 = 85;
    let base = (now_ns() / MINUTE - 16) * MINUTE;
    let mut truth = Truth::default();
    let producer = kafka_support::producer_on(&brokers());
    for w in 0..WINDOWS {
        for p in 0..PARTITIONS {
            let slow = (70..=72).contains(&w).then_some(1);
            let payload = message(
                &mut truth,
                base + w * WINDOW,
                WINDOW,
                25,
                (w, p as u64),
                slow,
            );
            kafka_support::produce(&producer, &f.input, p, &payload).await;
        }
    }
    let ingest = [
        spawn(&f.config("ingest", 0)).await,
        spawn(&f.config("ingest", 1)).await,
    ];
    let merge = [
        spawn(&f.config("merge", 0)).await,
        spawn(&f.config("merge", 1)).await,
    ];
    let all: Vec<&Instance> = ingest.iter().chain(merge.iter()).collect();
    let owners = merge_owners(&[&merge[0], &merge[1]], DEADLINE).await;

    results_equal_truth(&f, &truth, &all).await;
    red_equal_truth(&merge[0], &truth, &all).await;
    red_equal_truth(&merge[1], &truth, &all).await;

    // What the shuffle costs: bytes per record (key, OTLP value, state header) and per span.
    let (b, t) = (brokers(), f.shuffle.clone());
    let shuffle = tokio::task::spawn_blocking(move || {
        read_topic(&b, &t, PARTITIONS, Duration::from_secs(10), |_| false)
    })
    .await
    .expect("shuffle reader");
    let spans: f64 = truth
        .calls
        .iter()
        .filter(|(k, _)| k.0 == "10s")
        .map(|(_, v)| v)
        .sum();
    let (key, value, header): (usize, usize, usize) = shuffle.iter().fold((0, 0, 0), |a, r| {
        (
            a.0 + r.key.len(),
            a.1 + r.payload.len(),
            a.2 + r.header_bytes,
        )
    });
    let n = shuffle.len().max(1) as f64;
    eprintln!(
        "RESULT fleet_shuffle records={} spans={spans} key_bytes_per_record={:.0} value_bytes_per_record={:.0} header_bytes_per_record={:.0} shuffle_bytes_per_span={:.2}",
        shuffle.len(),
        key as f64 / n,
        value as f64 / n,
        header as f64 / n,
        (key + value + header) as f64 / spans
    );

    // Exactly one incident, on the merge instance owning svc1's shuffle partition.
    let series = format!("{}|{}|SPAN_KIND_SERVER", service(1), op(1));
    let part = redwatch_connectors::kafka::records::partition_for(
        format!("10s|0|x|{series}").as_bytes(),
        PARTITIONS,
    );
    let owner = owners[&part];
    let incidents = |rows: Vec<serde_json::Value>| -> BTreeSet<(String, String)> {
        rows.iter()
            .map(|r| {
                (
                    r["incident_id"].as_str().unwrap_or_default().to_string(),
                    r["service_name"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let q = "SELECT DISTINCT incident_id, service_name FROM anomalies";
    let on_owner = incidents(sql(&merge[owner].sql, q).await);
    let elsewhere = incidents(sql(&merge[1 - owner].sql, q).await);
    let traces_owner = anomaly_traces(&f.signals[owner]);
    let traces_elsewhere = anomaly_traces(&f.signals[1 - owner]);
    assert_eq!(
        on_owner.len(),
        1,
        "one incident on the owner (merge{owner}): {on_owner:?}\n{}",
        logs(&all)
    );
    assert_eq!(on_owner.iter().next().map(|x| x.1.as_str()), Some("svc1"));
    assert!(elsewhere.is_empty(), "no incident elsewhere: {elsewhere:?}");
    let trace_ids: BTreeSet<&String> = traces_owner.iter().map(|(t, _)| t).collect();
    assert_eq!(
        trace_ids.len(),
        1,
        "one anomaly_detected trace from the owner: {traces_owner:?}"
    );
    assert!(
        traces_owner.iter().all(|(_, s)| s == "svc1"),
        "{traces_owner:?}"
    );
    // With problems on (the default) that trace is the incident's problem's: its root is the
    // problem_detected span.
    let problems = span_traces(&f.signals[owner], "problem_detected");
    assert!(
        trace_ids
            .iter()
            .all(|t| problems.iter().any(|(p, _)| p == *t)),
        "the anomaly trace is a problem trace: anomaly {trace_ids:?}, problems {problems:?}"
    );
    assert!(
        traces_elsewhere.is_empty(),
        "no anomaly_detected span from the other merge instance: {traces_elsewhere:?}"
    );
    let _ = std::fs::remove_dir_all(&f.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_stays_exact_when_an_ingest_and_a_merge_instance_are_sigkilled() {
    let _one = ONE_FLEET_AT_A_TIME.lock().await;
    let f = Fleet::new("kill").await;
    let mut ingest = [
        spawn(&f.config("ingest", 0)).await,
        spawn(&f.config("ingest", 1)).await,
    ];
    let mut merge = [
        spawn(&f.config("merge", 0)).await,
        spawn(&f.config("merge", 1)).await,
    ];
    {
        let all: Vec<&Instance> = ingest.iter().chain(merge.iter()).collect();
        kafka_support::wait_assigned_among(
            &[ingest[0].prom.clone(), ingest[1].prom.clone()],
            &f.input,
            PARTITIONS,
            DEADLINE,
            || logs(&all),
        )
        .await;
        merge_owners(&[&merge[0], &merge[1]], DEADLINE).await;
    }
    // Live spans: every 250 ms one message per partition, each with 4 spans per service ending
    // in the last 250 ms and one 1.2 s old (late data for the previous window, within lateness).
    let producer = kafka_support::producer_on(&brokers());
    let mut truth = Truth::default();
    let mut seq = 0u64;
    let mut send = |truth: &mut Truth| {
        seq += 1;
        let now = now_ns();
        let mut msgs = Vec::new();
        for p in 0..PARTITIONS {
            let m = message(
                truth,
                now - 250_000_000,
                250_000_000,
                4,
                (seq, p as u64),
                None,
            );
            msgs.push((p, m));
            if seq % 4 == 0 {
                let late = (seq, 100 + p as u64);
                msgs.push((
                    p,
                    message(truth, now - 1_200_000_000, 1_000_000, 1, late, None),
                ));
            }
        }
        msgs
    };
    // Until ingest0 has committed offsets (a window purged and delivered), then some seconds
    // into the next window: SIGKILL ingest0 and merge0.
    let until = Instant::now() + DEADLINE;
    let mut committed_at: Option<Instant> = None;
    loop {
        for (p, m) in send(&mut truth) {
            kafka_support::produce(&producer, &f.input, p, &m).await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        if committed_at.is_none() {
            let s = scrape(&ingest[0].prom).await;
            if s.is_some_and(|s| s.sum("redwatch_kafka_commits_total") > 0.0) {
                committed_at = Some(Instant::now());
            }
        }
        // Fault injection point (not synchronisation): 14 s after the first commit.
        if committed_at.is_some_and(|t| t.elapsed() >= Duration::from_secs(14)) {
            break;
        }
        assert!(Instant::now() < until, "ingest0 committed nothing");
    }
    let emitted = scrape(&merge[0].prom)
        .await
        .map_or(0.0, |s| s.sum("redwatch_fleet_merge_windows_emitted_total"));
    ingest[0].rw.child.kill().expect("SIGKILL ingest0");
    merge[0].rw.child.kill().expect("SIGKILL merge0");
    let _ = ingest[0].rw.child.wait();
    let _ = merge[0].rw.child.wait();
    eprintln!("fleet: SIGKILLed ingest0 and merge0 (merge0 had emitted {emitted} windows)");
    for _ in 0..12 {
        for (p, m) in send(&mut truth) {
            kafka_support::produce(&producer, &f.input, p, &m).await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    ingest[0].restart().await;
    merge[0].restart().await;
    for _ in 0..80 {
        for (p, m) in send(&mut truth) {
            kafka_support::produce(&producer, &f.input, p, &m).await;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let all: Vec<&Instance> = ingest.iter().chain(merge.iter()).collect();
    results_equal_truth(&f, &truth, &all).await;
    red_equal_truth(&merge[0], &truth, &all).await;
    red_equal_truth(&merge[1], &truth, &all).await;
    let replayed = scrape(&ingest[0].prom)
        .await
        .map_or(0.0, |s| s.sum("redwatch_kafka_replay_skipped_total"));
    eprintln!("fleet: after the kills, the restarted ingest0 skipped {replayed} replayed spans of purged windows");
    let _ = std::fs::remove_dir_all(&f.dir);
}
