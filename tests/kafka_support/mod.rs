//! Shared helpers of the Kafka sink, outage and scale-out tests: the broker from
//! `REDWATCH_KAFKA_BROKERS` (tests/run-all.sh starts tansu), topics, a producer, an independent
//! consumer that reads the sink topic back, and `redwatch run` child processes.
#![allow(dead_code)]

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use redwatch::config::KafkaEncoding;
use redwatch_connectors::kafka::rdkafka;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const SECOND: u64 = 1_000_000_000;

pub fn brokers() -> String {
    std::env::var("REDWATCH_KAFKA_BROKERS").unwrap_or_else(|_| {
        panic!(
            "REDWATCH_KAFKA_BROKERS is not set: this test needs a Kafka broker. \
             tests/run-all.sh starts one (tansu) and sets it; by hand: \
             `tansu broker --listener-url tcp://127.0.0.1:9092 --advertised-listener-url \
             tcp://127.0.0.1:9092 --storage-engine memory://tansu/` and \
             REDWATCH_KAFKA_BROKERS=127.0.0.1:9092"
        )
    })
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), now_ns())
}

/// Topic creation, standalone (also included by `benches/kafka_ingest.rs`).
#[path = "admin.rs"]
mod admin;
pub use admin::create_topic_on;

pub async fn create_topic(name: &str, partitions: i32) {
    create_topic_on(&brokers(), name, partitions).await
}

pub fn producer_on(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "120000")
        .create()
        .expect("producer")
}

pub async fn produce(p: &FutureProducer, topic: &str, partition: i32, payload: &[u8]) {
    p.send(
        FutureRecord::<(), [u8]>::to(topic)
            .partition(partition)
            .payload(payload),
        Duration::from_secs(120),
    )
    .await
    .unwrap_or_else(|(e, _)| panic!("producing to {topic}/{partition}: {e}"));
}

/// One message read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub payload: Vec<u8>,
    /// Bytes of the record's header keys and values.
    pub header_bytes: usize,
}

/// Reads every partition of `topic` from the beginning with an independent consumer (no group:
/// `assign`) until `done` holds for what was read, or `deadline` passes (then returns what it
/// has; the caller's comparison names what is missing).
pub fn read_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    deadline: Duration,
    mut done: impl FnMut(&[Record]) -> bool,
) -> Vec<Record> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("redwatch_sink_reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("reader consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition offset");
    }
    c.assign(&tpl).expect("assign");
    let until = Instant::now() + deadline;
    let mut out = Vec::new();
    while Instant::now() < until {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                payload: m.payload().unwrap_or_default().to_vec(),
                header_bytes: m.headers().map_or(0, |h| {
                    h.iter()
                        .map(|x| x.key.len() + x.value.map_or(0, <[u8]>::len))
                        .sum()
                }),
            }),
            Some(Err(e)) => eprintln!("reader: {e}"),
            None => {
                if done(&out) {
                    return out;
                }
            }
        }
    }
    out
}

/// The latest record of each key, in (partition, offset) order of arrival.
pub fn latest_per_key(records: &[Record]) -> BTreeMap<String, Record> {
    let mut m = BTreeMap::new();
    for r in records {
        m.insert(r.key.clone(), r.clone());
    }
    m
}

pub fn decode_metrics(encoding: KafkaEncoding, payload: &[u8]) -> ExportMetricsServiceRequest {
    match encoding {
        KafkaEncoding::OtlpProto => ExportMetricsServiceRequest::decode(payload)
            .expect("a sink record is an ExportMetricsServiceRequest"),
        KafkaEncoding::OtlpJson => serde_json::from_slice(payload)
            .expect("a sink record is an OTLP/JSON ExportMetricsServiceRequest"),
    }
}

/// A string or integer attribute, as text.
pub fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            Some(any_value::Value::IntValue(i)) => Some(i.to_string()),
            _ => None,
        }
    })
}

/// (window_start_ns, span name, span kind label, status label) of a calls data point.
pub type WindowSeries = (u64, String, String, String);

/// Calls per window, series and status in one sink record (the `traces.span.metrics.calls`
/// sum), with the window size it names.
pub fn calls_in(req: &ExportMetricsServiceRequest) -> Vec<(WindowSeries, f64, String)> {
    let mut out = Vec::new();
    for rm in &req.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                if m.name != "traces.span.metrics.calls" {
                    continue;
                }
                let Some(metric::Data::Sum(s)) = &m.data else {
                    panic!("traces.span.metrics.calls is not a sum: {m:?}");
                };
                for dp in &s.data_points {
                    let v = match dp.value {
                        Some(number_data_point::Value::AsInt(i)) => i as f64,
                        Some(number_data_point::Value::AsDouble(d)) => d,
                        None => panic!("calls data point without a value"),
                    };
                    let a = &dp.attributes;
                    out.push((
                        (
                            dp.start_time_unix_nano,
                            attr(a, "span.name").unwrap_or_default(),
                            attr(a, "span.kind").unwrap_or_default(),
                            attr(a, "status.code").unwrap_or_default(),
                        ),
                        v,
                        attr(a, "redwatch.window_size").unwrap_or_default(),
                    ));
                }
            }
        }
    }
    out
}

/// Calls per (window, series, status) from the latest record of every key of a RED sink topic.
pub fn sink_calls(encoding: KafkaEncoding, records: &[Record]) -> BTreeMap<WindowSeries, f64> {
    let mut m = BTreeMap::new();
    for r in latest_per_key(records).values() {
        for (k, v, _) in calls_in(&decode_metrics(encoding, &r.payload)) {
            *m.entry(k).or_default() += v;
        }
    }
    m
}

/// Lines naming each difference between `want` and `got`.
pub fn diff<K: Ord + std::fmt::Debug>(want: &BTreeMap<K, f64>, got: &BTreeMap<K, f64>) -> String {
    let mut d = String::new();
    for (k, v) in want {
        let g = got.get(k).copied();
        if g != Some(*v) {
            d.push_str(&format!("  {k:?}: expected {v}, got {g:?}\n"));
        }
    }
    for (k, v) in got {
        if !want.contains_key(k) {
            d.push_str(&format!("  {k:?}: unexpected, {v}\n"));
        }
    }
    d
}

/// A `redwatch run` child whose output is collected by reader threads.
pub struct Redwatch {
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Redwatch {
    pub fn spawn(config: &std::path::Path) -> Redwatch {
        let bin = std::env::var("REDWATCH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_redwatch").to_string());
        let mut child = Command::new(bin)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("redwatch starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        for out in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Ok(mut l) = log.lock() {
                        l.push(line);
                    }
                }
            });
        }
        Redwatch { child, log }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Waits for the `listening <name> <addr>` line.
    pub async fn addr(&mut self, name: &str) -> String {
        let needle = format!("listening {name} ");
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let found = self.log.lock().ok().and_then(|l| {
                l.iter().find_map(|line| {
                    let i = line.find(&needle)?;
                    Some(line[i + needle.len()..].trim().to_string())
                })
            });
            if let Some(a) = found {
                return a;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("redwatch exited with {status}:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < until,
                "redwatch did not log its {name} address:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Redwatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `/metrics` of a child, parsed.
pub async fn scrape(addr: &str) -> Option<super::common::Scrape> {
    let r = reqwest::get(format!("http://{addr}/metrics")).await.ok()?;
    Some(super::common::parse_exposition(&r.text().await.ok()?))
}

/// The watermark of a child, from `redwatch_watermark_lag_seconds`.
pub fn watermark_of(s: &super::common::Scrape) -> Option<u64> {
    let lag = s.get("redwatch_watermark_lag_seconds", &[])?;
    Some(now_ns().saturating_sub((lag.max(0.0) * SECOND as f64) as u64))
}

/// Waits until every partition `0..partitions` of `topic` is assigned to one of `addrs`
/// (Prometheus addresses); returns how many each one holds.
pub async fn wait_assigned_among(
    addrs: &[String],
    topic: &str,
    partitions: i32,
    deadline: Duration,
    what: impl Fn() -> String,
) -> Vec<usize> {
    let until = Instant::now() + deadline;
    loop {
        let mut held = vec![0usize; addrs.len()];
        let mut covered = vec![false; partitions as usize];
        for (i, a) in addrs.iter().enumerate() {
            if let Some(s) = scrape(a).await {
                for p in 0..partitions {
                    if s.get(
                        "redwatch_kafka_partition_assigned",
                        &[("partition", &p.to_string()), ("topic", topic)],
                    ) == Some(1.0)
                    {
                        held[i] += 1;
                        covered[p as usize] = true;
                    }
                }
            }
        }
        if covered.iter().all(|c| *c) && held.iter().sum::<usize>() == partitions as usize {
            return held;
        }
        assert!(
            Instant::now() < until,
            "partitions of {topic} were not assigned within {deadline:?} (held {held:?}):\n{}",
            what()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
