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

#[path = "../tests/kafka_support/admin.rs"]
mod kafka_admin;
#[path = "payload/mod.rs"]
mod payload;

use kafka_admin::create_topic_on;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use redwatch_connectors::kafka::rdkafka;
use redwatch_connectors::kafka::records::partition_for;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PARTITIONS: i32 = 4;
const SECOND: u64 = 1_000_000_000;
const WINDOW: u64 = 10 * SECOND;
const MINUTE: u64 = 60 * SECOND;
const SPECS: [(&str, u64); 2] = [("10s", WINDOW), ("1m", MINUTE)];

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

struct Args {
    redwatch: PathBuf,
    spans: u64,
    backlog_secs: u64,
    rate: f64,
    delay_secs: u64,
}

fn args() -> Args {
    let mut a = Args {
        redwatch: std::env::var("REDWATCH_BIN").unwrap_or_default().into(),
        spans: 2_000_000,
        backlog_secs: 300,
        rate: 10_000.0,
        delay_secs: 100,
    };
    let v: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < v.len() {
        let next = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--redwatch" => a.redwatch = next.into(),
            "--spans" => a.spans = next.parse().unwrap_or(a.spans),
            "--backlog-secs" => a.backlog_secs = next.parse().unwrap_or(a.backlog_secs),
            "--rate" => a.rate = next.parse().unwrap_or(a.rate),
            "--delay-secs" => a.delay_secs = next.parse().unwrap_or(a.delay_secs),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    assert!(
        a.redwatch.is_file(),
        "--redwatch PATH (or REDWATCH_BIN) names the redwatch binary to run (a release build)"
    );
    a.backlog_secs = (a.backlog_secs / 60).max(1) * 60;
    a
}

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "120000")
        .set("message.max.bytes", "10000000")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

async fn send(p: &FutureProducer, topic: &str, partition: i32, bytes: &[u8]) {
    p.send(
        FutureRecord::<(), [u8]>::to(topic)
            .partition(partition)
            .payload(bytes),
        Duration::from_secs(120),
    )
    .await
    .unwrap_or_else(|(e, _)| panic!("produce to {topic}/{partition}: {e}"));
}

// --- the truth -----------------------------------------------------------------------------

/// (window spec, window start ns, series as the sink's key spells it).
type Key = (&'static str, u64, String);

fn kind_label(kind: i32) -> &'static str {
    match kind {
        1 => "SPAN_KIND_INTERNAL",
        2 => "SPAN_KIND_SERVER",
        3 => "SPAN_KIND_CLIENT",
        4 => "SPAN_KIND_PRODUCER",
        5 => "SPAN_KIND_CONSUMER",
        _ => "SPAN_KIND_UNSPECIFIED",
    }
}

/// Every span of a request: (end time ns, series).
fn spans_of(bytes: &[u8]) -> Vec<(u64, String)> {
    let req = ExportTraceServiceRequest::decode(bytes).expect("a generated request decodes");
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        let service = rs
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(
                |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                },
            )
            .unwrap_or_else(|| "unknown_service".into());
        for s in rs.scope_spans.iter().flat_map(|s| &s.spans) {
            assert!(
                !service.contains(['|', '\\']) && !s.name.contains(['|', '\\']),
                "names with key separators would need the sink's escaping"
            );
            out.push((
                s.end_time_unix_nano,
                format!("{service}|{}|{}", s.name, kind_label(s.kind)),
            ));
        }
    }
    out
}

/// Calls per key, over windows starting before `until`.
#[derive(Default)]
struct Truth {
    calls: HashMap<Key, f64>,
    spans: u64,
}

impl Truth {
    fn add(&mut self, end: u64, series: &str, n: f64) {
        for (spec, size) in SPECS {
            *self
                .calls
                .entry((spec, end / size * size, series.to_string()))
                .or_default() += n;
        }
        self.spans += n as u64;
    }
}

// --- reading a RED topic back ----------------------------------------------------------------

/// Key `<spec>|<start>|<share>|<series>` → (spec, start, series).
fn parse_key(key: &str) -> Option<(&'static str, u64, String)> {
    let mut it = key.splitn(4, '|');
    let spec = match it.next()? {
        "10s" => "10s",
        "1m" => "1m",
        _ => return None,
    };
    let start = it.next()?.parse().ok()?;
    let _share = it.next()?;
    Some((spec, start, it.next()?.to_string()))
}

/// The calls a RED record carries (every status of its series).
fn record_calls(payload: &[u8]) -> f64 {
    let Ok(req) = ExportMetricsServiceRequest::decode(payload) else {
        return f64::NAN;
    };
    let mut n = 0.0;
    for m in req
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == "traces.span.metrics.calls")
    {
        if let Some(metric::Data::Sum(s)) = &m.data {
            for dp in &s.data_points {
                n += match dp.value {
                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                    Some(number_data_point::Value::AsDouble(d)) => d,
                    None => 0.0,
                };
            }
        }
    }
    n
}

/// What a live reader of a RED topic knows: the latest calls per record key, their sum per
/// (spec, window, series) over shares, and when each key last changed.
#[derive(Default)]
struct Board {
    latest: HashMap<String, f64>,
    sums: HashMap<Key, f64>,
    changed_at: HashMap<Key, u64>,
    /// Keys changed since `wait_exact` last looked.
    dirty: Vec<Key>,
    records: u64,
}

/// A thread reading every partition of `topic` from the beginning (no group) into a board.
struct Reader {
    board: Arc<Mutex<Board>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    fn start(brokers: &str, topic: &str) -> Reader {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("fleet_bench_reader_{}", now_ns()))
            .set("enable.auto.commit", "false")
            .set("fetch.wait.max.ms", "20")
            .create()
            .expect("reader");
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("offset");
        }
        c.assign(&tpl).expect("assign");
        let board = Arc::new(Mutex::new(Board::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (board.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Some(Ok(m)) = c.poll(Duration::from_millis(50)) else {
                    continue;
                };
                let at = now_ns();
                let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
                let Some(k) = parse_key(&key) else { continue };
                let calls = record_calls(m.payload().unwrap_or_default());
                let mut b = b.lock().expect("board");
                b.records += 1;
                let old = b.latest.insert(key, calls);
                if old != Some(calls) {
                    // A restatement with the same calls changes nothing.
                    *b.sums.entry(k.clone()).or_default() += calls - old.unwrap_or(0.0);
                    b.changed_at.insert(k.clone(), at);
                    b.dirty.push(k);
                }
            }
        });
        Reader {
            board,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until the board equals the truth: every key of `truth` has its calls, and no
    /// other key of a window starting before `until` has any. Returns the wall time (ns) the
    /// last key became right, or None after `deadline`. Checks only the keys that changed since
    /// the last look, so checking costs the driver little while the instances run.
    fn wait_exact(&self, truth: &HashMap<Key, f64>, until: u64, deadline: Duration) -> Option<u64> {
        let stop = Instant::now() + deadline;
        let mut wrong: HashSet<Key> = truth.keys().cloned().collect();
        let mut extra: HashSet<Key> = HashSet::new();
        loop {
            let b_dirty = std::mem::take(&mut self.board.lock().expect("board").dirty);
            {
                let b = self.board.lock().expect("board");
                for k in b_dirty {
                    let got = b.sums.get(&k).copied().unwrap_or(0.0);
                    match truth.get(&k) {
                        Some(want) if *want == got => {
                            wrong.remove(&k);
                        }
                        Some(_) => {
                            wrong.insert(k);
                        }
                        None if k.1 < until && got != 0.0 => {
                            extra.insert(k);
                        }
                        None => {
                            extra.remove(&k);
                        }
                    }
                }
            }
            if wrong.is_empty() && extra.is_empty() {
                let b = self.board.lock().expect("board");
                return truth
                    .keys()
                    .filter_map(|k| b.changed_at.get(k))
                    .max()
                    .copied();
            }
            if Instant::now() > stop {
                eprintln!(
                    "not exact after {deadline:?}: {} keys wrong or missing, {} unexpected",
                    wrong.len(),
                    extra.len()
                );
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// --- redwatch processes ---------------------------------------------------------------------

struct Instance {
    name: String,
    child: Child,
    log: PathBuf,
    prom: String,
}

impl Instance {
    fn spawn(bin: &Path, dir: &Path, name: &str, core: u32, yaml: &str) -> Instance {
        let cfg = dir.join(format!("{name}.yaml"));
        std::fs::write(&cfg, yaml).expect("config written");
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new("taskset")
            .args(["-c", &core.to_string()])
            .arg(bin)
            .args(["run", "--config"])
            .arg(&cfg)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("taskset redwatch starts");
        let mut i = Instance {
            name: name.into(),
            child,
            log,
            prom: String::new(),
        };
        i.prom = i.addr("prometheus");
        i
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn addr(&mut self, what: &str) -> String {
        let needle = format!("listening {what} ");
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(a) = self.log_text().lines().find_map(|l| {
                l.find(&needle)
                    .map(|i| l[i + needle.len()..].trim().to_string())
            }) {
                return a;
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                panic!("{} exited with {s}:\n{}", self.name, self.log_text());
            }
            assert!(Instant::now() < until, "{}: no {what} address", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {sig} {}", self.name);
    }

    /// User + system CPU seconds so far.
    fn cpu_s(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or_default();
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // Fields 14 and 15 of stat; `after` starts at field 3.
        (ticks(11) + ticks(12)) / 100.0
    }

    /// The sum of a metric's samples whose labels contain every `label="value"` given.
    async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let Ok(r) = reqwest::get(format!("http://{}/metrics", self.prom)).await else {
            return f64::NAN;
        };
        let text = r.text().await.unwrap_or_default();
        let mut sum = 0.0;
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, v)) = l.rsplit_once(' ') else {
                continue;
            };
            let metric = series.split('{').next().unwrap_or_default();
            if metric == name
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
            {
                sum += v.parse::<f64>().unwrap_or(0.0);
            }
        }
        sum
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One experiment's topics and instance configs.
struct Topics {
    input: String,
    shuffle: String,
    results: String,
    sink: String,
}

impl Topics {
    async fn create(brokers: &str, name: &str) -> Topics {
        let input = format!("fleet_bench_{name}_{}", now_ns());
        let t = Topics {
            shuffle: format!("{input}_partials"),
            results: format!("{input}_windows"),
            sink: format!("{input}_all_red"),
            input,
        };
        for topic in [&t.input, &t.shuffle, &t.results, &t.sink] {
            create_topic_on(brokers, topic, PARTITIONS).await;
        }
        t
    }

    /// `redwatch run` config: the defaults but for ephemeral ports, the fleet's topics and
    /// `windows` / `librdkafka` as given.
    fn config(&self, brokers: &str, role: &str, windows: &str, librdkafka: &str) -> String {
        let group = if role == "all" {
            format!("{}_all", self.input)
        } else {
            format!("{}_fleet", self.input)
        };
        let metrics_topic = if role == "all" {
            self.sink.as_str()
        } else {
            "null"
        };
        format!(
            "receivers:\n  otlp:\n    grpc: {{ endpoint: 127.0.0.1:0 }}\n    http: {{ endpoint: 127.0.0.1:0 }}\n  \
             kafka:\n    brokers: ['{brokers}']\n    traces_topic: {input}\n    metrics_topic: null\n    \
             group_id: {group}\n    client_id: {role}\n    librdkafka: {librdkafka}\n\
             windows: {windows}\n\
             exporters:\n  prometheus: {{ endpoint: 127.0.0.1:0 }}\n  \
             kafka: {{ brokers: ['{brokers}'], metrics_topic: {metrics_topic}, spans_topic: null }}\n\
             sql:\n  http_endpoint: 127.0.0.1:0\n  flight_endpoint: null\n\
             fleet: {{ role: {role}, shuffle_topic: {shuffle}, results_topic: {results} }}\n",
            input = self.input,
            shuffle = self.shuffle,
            results = self.results,
        )
    }
}

/// Waits until `instances` together hold every partition (`metric` = the assignment gauge).
async fn wait_assigned(instances: &[&Instance], metric: &str, topic: Option<&str>) {
    let until = Instant::now() + Duration::from_secs(180);
    loop {
        let mut held = 0.0;
        for i in instances {
            for p in 0..PARTITIONS {
                let ps = p.to_string();
                let mut labels = vec![("partition", ps.as_str())];
                if let Some(t) = topic {
                    labels.push(("topic", t));
                }
                held += i.metric(metric, &labels).await;
            }
        }
        if held == PARTITIONS as f64 {
            return;
        }
        if Instant::now() > until {
            let logs: Vec<String> = instances
                .iter()
                .map(|i| format!("--- {}\n{}", i.name, i.log_text()))
                .collect();
            panic!(
                "{metric}: {held} of {PARTITIONS} assigned\n{}",
                logs.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Span names of the sentinel service whose series land on every shuffle partition: a merge
/// closes a window of a shuffle partition once every share wrote a later window there.
fn sentinel_names() -> Vec<String> {
    let mut names: Vec<Option<String>> = vec![None; PARTITIONS as usize];
    for i in 0.. {
        let name = format!("tick{i}");
        let key = format!("10s|0|x|sentinel|{name}|SPAN_KIND_SERVER");
        let p = partition_for(key.as_bytes(), PARTITIONS) as usize;
        names[p].get_or_insert(name);
        if names.iter().all(Option::is_some) {
            break;
        }
    }
    names.into_iter().flatten().collect()
}

/// A request with one span of each sentinel series, ending at `end`.
fn sentinel(end: u64) -> Vec<u8> {
    let spans = sentinel_names()
        .into_iter()
        .enumerate()
        .map(|(i, name)| Span {
            trace_id: [7; 16].to_vec(),
            span_id: (end + i as u64).to_be_bytes().to_vec(),
            name,
            kind: 2,
            start_time_unix_nano: end - 1_000_000,
            end_time_unix_nano: end,
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("sentinel".into())),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
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

async fn throughput(a: &Args, brokers: &str, dir: &Path) {
    let t = Topics::create(brokers, "tp").await;
    let b = &a.redwatch;
    // Stay in the group while stopped; never see the stopped partitions as idle.
    let librdkafka = "{ session.timeout.ms: '120000', heartbeat.interval.ms: '3000', \
                      max.poll.interval.ms: '900000' }";
    let windows = "{ idle_timeout: 10m }";
    let all = Instance::spawn(
        b,
        dir,
        "all",
        0,
        &t.config(brokers, "all", windows, librdkafka),
    );
    let ingest: Vec<Instance> = (0..2)
        .map(|i| {
            let cfg = t.config(brokers, "ingest", windows, librdkafka);
            Instance::spawn(b, dir, &format!("ingest{i}"), 0, &cfg)
        })
        .collect();
    let merge: Vec<Instance> = (0..2)
        .map(|i| {
            let cfg = t.config(brokers, "merge", windows, librdkafka);
            Instance::spawn(b, dir, &format!("merge{i}"), 1, &cfg)
        })
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
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("fleet_bench_bytes_{}", now_ns()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("offset");
    }
    c.assign(&tpl).expect("assign");
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
    let all = Instance::spawn(
        b,
        dir,
        "d_all",
        0,
        &t.config(brokers, "all", windows, librdkafka),
    );
    let ingest: Vec<Instance> = (0..2)
        .map(|i| {
            let cfg = t.config(brokers, "ingest", windows, librdkafka);
            Instance::spawn(b, dir, &format!("d_ingest{i}"), 0, &cfg)
        })
        .collect();
    let merge: Vec<Instance> = (0..2)
        .map(|i| {
            let cfg = t.config(brokers, "merge", windows, librdkafka);
            Instance::spawn(b, dir, &format!("d_merge{i}"), 1, &cfg)
        })
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
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(run(a));
}
