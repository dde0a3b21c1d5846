//! Shared helpers of the root integration tests: an in-process engine with a test config, OTLP
//! request builders, gRPC (typed and raw-bytes) and HTTP clients, a `/metrics` scraper and parser,
//! and condition polling with a deadline.
//!
//! Synchronisation is always "wait for a condition": windows close on event time, so tests wait
//! until the pipeline's watermark has passed the windows they sent data for, then read the
//! counters once and compare them exactly. Nothing here sleeps to let something happen.

#![allow(dead_code)]

pub mod pki;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use redwatch::config::Config;
use redwatch::server::{Engine, StartOptions};
use redwatch_connectors::otlp::grpc::RawCodec;
use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tonic::codec::CompressionEncoding;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

/// The primary window of every test engine.
pub const WINDOW: Duration = Duration::from_secs(1);
/// How long a test waits for a condition (windows closing, counters appearing).
pub const DEADLINE: Duration = Duration::from_secs(20);

pub const TRACE_EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
pub const METRICS_EXPORT: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

pub const CT_PROTOBUF: &str = "application/x-protobuf";
pub const CT_JSON: &str = "application/json";

// ---------------------------------------------------------------------------------------------
// Engine
// ---------------------------------------------------------------------------------------------

/// The test config: ephemeral ports on 127.0.0.1, 1 s windows, no rollups, a watermark that
/// follows the data without slack, 1 s idle timeout (so the last windows close about a second
/// after the last request) and 5 s allowed lateness.
pub fn test_config() -> Config {
    let mut cfg = Config::default();
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    cfg.receivers
        .otlp
        .grpc
        .as_mut()
        .expect("gRPC receiver on by default")
        .endpoint = any;
    cfg.receivers
        .otlp
        .http
        .as_mut()
        .expect("HTTP receiver on by default")
        .endpoint = any;
    cfg.exporters
        .prometheus
        .as_mut()
        .expect("Prometheus exporter on by default")
        .endpoint = any;
    cfg.sql.http_endpoint = Some(any);
    cfg.sql.flight_endpoint = None;
    cfg.windows.size = WINDOW;
    cfg.windows.rollups = Vec::new();
    cfg.windows.max_out_of_orderness = Duration::ZERO;
    cfg.windows.idle_timeout = Duration::from_secs(1);
    cfg.windows.allowed_lateness = Duration::from_secs(5);
    cfg
}

/// Starts an engine in-process; panics with the config problems if the config is invalid.
pub async fn start(cfg: &Config) -> Engine {
    if std::env::var("REDWATCH_TEST_LOG").is_ok() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("REDWATCH_TEST_LOG"))
            .with_test_writer()
            .try_init();
    }
    let problems = cfg.validate();
    assert!(problems.is_empty(), "test config is invalid: {problems:?}");
    Engine::start(cfg, StartOptions::default())
        .await
        .expect("engine starts")
}

/// Waits until everything queued so far has been processed; returns the watermark (ns).
pub async fn barrier(e: &Engine) -> u64 {
    e.ingest_handle()
        .expect("engine is running")
        .barrier()
        .await
        .expect("pipeline answers the barrier")
}

/// Polls `cond` every 50 ms until it holds; panics after `deadline` naming `what`.
pub async fn wait_until<F, Fut>(deadline: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let until = Instant::now() + deadline;
    loop {
        if cond().await {
            return;
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every window holding data sent so far is final and reflected on `/metrics`:
/// the watermark has passed the end of the window of "now". A later re-emission cannot follow,
/// because every span sent so far ended at or before now (future spans are rejected).
pub async fn wait_windows_final(e: &Engine) {
    let end = window_end(now_ns());
    wait_until(DEADLINE, "the watermark passes the last window", || async {
        barrier(e).await >= end
    })
    .await;
}

/// End of the primary window holding `ts`.
pub fn window_end(ts: u64) -> u64 {
    let w = WINDOW.as_nanos() as u64;
    (ts / w + 1) * w
}

/// Wall clock in Unix nanoseconds.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

/// Sleeps until the wall clock reaches `t` (Unix ns); returns at once if it has. For cases
/// whose event times must not run ahead of the wall clock (the watermark never passes it).
pub async fn sleep_until_wall(t: u64) {
    let now = now_ns();
    if t > now {
        tokio::time::sleep(Duration::from_nanos(t - now)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// OTLP requests
// ---------------------------------------------------------------------------------------------

/// One span to send.
#[derive(Debug, Clone)]
pub struct SpanSpec {
    pub name: String,
    pub kind: SpanKind,
    pub status: StatusCode,
    pub duration: Duration,
    /// End time in Unix ns; `start = end - duration` (0 stays 0).
    pub end: u64,
}

impl SpanSpec {
    /// A SERVER span with status UNSET lasting 10 ms and ending now.
    pub fn new(name: &str) -> Self {
        SpanSpec {
            name: name.to_string(),
            kind: SpanKind::Server,
            status: StatusCode::Unset,
            duration: Duration::from_millis(10),
            end: now_ns(),
        }
    }

    pub fn kind(mut self, k: SpanKind) -> Self {
        self.kind = k;
        self
    }

    pub fn status(mut self, s: StatusCode) -> Self {
        self.status = s;
        self
    }

    pub fn duration_ms(mut self, ms: u64) -> Self {
        self.duration = Duration::from_millis(ms);
        self
    }

    pub fn end(mut self, end: u64) -> Self {
        self.end = end;
        self
    }

    pub fn start(&self) -> u64 {
        self.end.saturating_sub(self.duration.as_nanos() as u64)
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A string attribute.
pub fn kv(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
        ..Default::default()
    }
}

/// A span of trace `[trace; 16]` with span id `id` and parent `parent` (0 = none: a root span),
/// of `kind`, lasting `ms` and ending at `end`, status UNSET.
pub fn tree_span(
    trace: u8,
    id: u8,
    parent: u8,
    name: &str,
    kind: SpanKind,
    ms: u64,
    end: u64,
) -> Span {
    let sid = |n: u8| {
        if n == 0 {
            Vec::new()
        } else {
            vec![0, 0, 0, 0, 0, 0, 0, n]
        }
    };
    Span {
        trace_id: vec![trace; 16],
        span_id: sid(id),
        parent_span_id: sid(parent),
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: end - ms * 1_000_000,
        end_time_unix_nano: end,
        status: Some(Status {
            code: StatusCode::Unset as i32,
            message: String::new(),
        }),
        ..Default::default()
    }
}

/// `s` with status ERROR.
pub fn failed(mut s: Span) -> Span {
    s.status = Some(Status {
        code: StatusCode::Error as i32,
        message: String::new(),
    });
    s
}

/// `span` with string attributes (in place of any it had).
pub fn with_attrs(mut span: Span, attrs: &[(&str, &str)]) -> Span {
    span.attributes = attrs.iter().map(|(k, v)| kv(k, v)).collect();
    span
}

/// A resource with `service.name` (when given) and one more attribute, so "no service.name"
/// really means a resource without that key rather than no resource.
pub fn resource(service: Option<&str>) -> Resource {
    let mut attributes = vec![kv("host.name", "test-host")];
    if let Some(s) = service {
        attributes.push(kv("service.name", s));
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

fn span(s: &SpanSpec) -> Span {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let mut trace_id = vec![0u8; 16];
    trace_id[8..].copy_from_slice(&id.to_be_bytes());
    Span {
        trace_id,
        span_id: id.to_be_bytes().to_vec(),
        name: s.name.clone(),
        kind: s.kind as i32,
        start_time_unix_nano: s.start(),
        end_time_unix_nano: s.end,
        status: Some(Status {
            code: s.status as i32,
            message: String::new(),
        }),
        ..Default::default()
    }
}

/// `ResourceSpans` of one resource (`service` = its `service.name`) holding `spans`.
pub fn resource_spans(service: Option<&str>, spans: &[SpanSpec]) -> ResourceSpans {
    ResourceSpans {
        resource: Some(resource(service)),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "redwatch-tests".to_string(),
                ..Default::default()
            }),
            spans: spans.iter().map(span).collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// An export request with one resource.
pub fn trace_request(service: Option<&str>, spans: &[SpanSpec]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(service, spans)],
    }
}

/// A metrics export request with `points` gauge points stamped now.
pub fn metrics_request(service: &str, points: usize) -> ExportMetricsServiceRequest {
    let now = now_ns();
    let data_points = (0..points)
        .map(|i| NumberDataPoint {
            attributes: vec![kv("cpu", &i.to_string())],
            start_time_unix_nano: now - 1_000_000_000,
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsDouble(0.5)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource(Some(service))),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "system.cpu.utilization".to_string(),
                    unit: "1".to_string(),
                    data: Some(metric::Data::Gauge(Gauge { data_points })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// OTLP/JSON of a request (the opentelemetry-proto serde mapping: camelCase, hex ids, 64-bit
/// integers as strings).
/// A request of one resource (`service`) holding hand-built `spans` (ids, parents, attributes
/// set by the caller).
pub fn request_of(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    let mut rs = resource_spans(Some(service), &[]);
    rs.scope_spans[0].spans = spans;
    ExportTraceServiceRequest {
        resource_spans: vec![rs],
    }
}

/// Runs `query` over the HTTP SQL API as JSON and returns its rows; panics on an error answer.
pub async fn sql_rows(e: &Engine, query: &str) -> Vec<serde_json::Value> {
    let url = format!("http://{}/api/v1/sql", e.addrs["sql_http"]);
    let r = reqwest::Client::new()
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(serde_json::json!({"query": query, "format": "json"}).to_string())
        .send()
        .await
        .expect("SQL API answers");
    let status = r.status().as_u16();
    let body = r.bytes().await.expect("answer body");
    assert_eq!(status, 200, "{query}: {}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON answer");
    v["rows"].as_array().cloned().unwrap_or_default()
}

/// The whole JSON answer of `query` on the SQL HTTP API, in its default format (asserts success).
pub async fn sql_answer(e: &Engine, query: &str) -> serde_json::Value {
    let addr = e.addrs["sql_http"];
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/sql"))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "query": query }).to_string())
        .send()
        .await
        .expect("SQL API answers");
    assert!(
        resp.status().is_success(),
        "query failed: {}",
        resp.text().await.unwrap_or_default()
    );
    serde_json::from_slice(&resp.bytes().await.expect("body")).expect("JSON answer")
}

pub fn to_json(req: &ExportTraceServiceRequest) -> Vec<u8> {
    serde_json::to_vec(req).expect("request serialises to JSON")
}

/// Gzip of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).expect("gzip into memory");
    e.finish().expect("gzip into memory")
}

// ---------------------------------------------------------------------------------------------
// Expected RED series
// ---------------------------------------------------------------------------------------------

/// A RED series as a canonical label string, `k="v",...` sorted by label name.
pub type SeriesLabels = String;

/// Canonical form of a label set.
pub fn canonical(labels: &BTreeMap<String, String>) -> SeriesLabels {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The series `traces_span_metrics_calls_total` should carry for a span.
pub fn series_of(service: &str, s: &SpanSpec) -> SeriesLabels {
    let mut l = BTreeMap::new();
    l.insert("service_name".to_string(), service.to_string());
    l.insert("span_name".to_string(), s.name.clone());
    l.insert("span_kind".to_string(), s.kind.as_str_name().to_string());
    l.insert(
        "status_code".to_string(),
        s.status.as_str_name().to_string(),
    );
    canonical(&l)
}

/// Calls per series the test expects on `/metrics` once all windows are final.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExpectedCalls(pub BTreeMap<SeriesLabels, f64>);

impl ExpectedCalls {
    /// Records spans that the engine accepted under `service` (`None` → `unknown_service`).
    pub fn add(&mut self, service: Option<&str>, spans: &[SpanSpec]) {
        let svc = service.unwrap_or("unknown_service");
        for s in spans {
            *self.0.entry(series_of(svc, s)).or_default() += 1.0;
        }
    }

    /// Records `n` accepted spans like `s` under `service`.
    pub fn add_n(&mut self, service: Option<&str>, s: &SpanSpec, n: f64) {
        let svc = service.unwrap_or("unknown_service");
        *self.0.entry(series_of(svc, s)).or_default() += n;
    }

    pub fn total(&self) -> f64 {
        self.0.values().sum()
    }
}

/// A known mix of spans: three SERVER OK, two CLIENT ERROR, one INTERNAL UNSET, names prefixed
/// with `phase` so a lost request shows which one it was.
pub fn good_spans(phase: &str) -> Vec<SpanSpec> {
    let mut v = Vec::new();
    for d in [5, 20, 120] {
        v.push(
            SpanSpec::new(&format!("{phase} GET /cart"))
                .status(StatusCode::Ok)
                .duration_ms(d),
        );
    }
    for d in [3, 900] {
        v.push(
            SpanSpec::new(&format!("{phase} SELECT cart"))
                .kind(SpanKind::Client)
                .status(StatusCode::Error)
                .duration_ms(d),
        );
    }
    v.push(SpanSpec::new(&format!("{phase} render")).kind(SpanKind::Internal));
    v
}

pub const GOOD_SERVICE: &str = "checkout";

/// Sends `good_spans(phase)` over gRPC and over HTTP protobuf, asserts both were fully accepted,
/// and records them in `exp`.
pub async fn send_good(e: &Engine, exp: &mut ExpectedCalls, phase: &str) {
    let grpc_spans = good_spans(&format!("{phase} grpc"));
    let resp = grpc_export(e, trace_request(Some(GOOD_SERVICE), &grpc_spans))
        .await
        .unwrap_or_else(|s| panic!("good gRPC request ({phase}) refused: {s:?}"));
    assert_eq!(rejected_spans(&resp), 0, "good gRPC request ({phase})");
    exp.add(Some(GOOD_SERVICE), &grpc_spans);

    let http_spans = good_spans(&format!("{phase} http"));
    let body = trace_request(Some(GOOD_SERVICE), &http_spans).encode_to_vec();
    let r = http_post(e, "/v1/traces", Some(CT_PROTOBUF), None, body).await;
    assert_eq!(r.status, 200, "good HTTP request ({phase}): {r:?}");
    let resp = ExportTraceServiceResponse::decode(r.body.as_slice())
        .expect("HTTP protobuf answer is an ExportTraceServiceResponse");
    assert_eq!(rejected_spans(&resp), 0, "good HTTP request ({phase})");
    exp.add(Some(GOOD_SERVICE), &http_spans);
}

/// Waits for the windows to close and asserts `/metrics` carries exactly `exp`, no more.
pub async fn assert_calls_exactly(e: &Engine, exp: &ExpectedCalls) {
    wait_windows_final(e).await;
    let calls = scrape(e).await.calls();
    let got = ExpectedCalls(calls);
    if got != *exp {
        let mut diff = String::new();
        for (k, v) in &exp.0 {
            let g = got.0.get(k).copied();
            if g != Some(*v) {
                diff.push_str(&format!("  {k}: expected {v}, got {g:?}\n"));
            }
        }
        for (k, v) in &got.0 {
            if !exp.0.contains_key(k) {
                diff.push_str(&format!("  {k}: unexpected series with {v}\n"));
            }
        }
        panic!("traces_span_metrics_calls_total differs from what was accepted:\n{diff}");
    }
}

/// Spans per ballast batch: enough that the pipeline needs a long time to aggregate them (a few
/// hundred ms in a debug build, measured), far longer than a flood of requests needs to reach
/// the queue (tens of ms).
pub const BALLAST_SPANS: usize = 300_000;

/// Adds the source that `queue_ballast` sends its batches as.
pub async fn add_ballast_source(e: &Engine) -> redwatch_engine::model::SourceId {
    e.ingest_handle()
        .expect("engine is running")
        .add_source("ballast", false)
        .await
}

/// Queues one big batch straight into the pipeline and waits until the operator task has
/// taken it off the queue: from then until it has aggregated every span, the pipeline is
/// "behind" and the one-slot queue fills with the first request that arrives. This makes a slow
/// pipeline deterministic instead of hoping a flood outruns a fast one (it does not: a free
/// flood of 48 concurrent 2000-span requests never filled the queue in 97 rounds, because
/// decoding is slower than aggregating). The queue must be empty (after a barrier).
pub async fn queue_ballast(
    e: &Engine,
    source: redwatch_engine::model::SourceId,
    exp: &mut ExpectedCalls,
) {
    use redwatch_engine::fixtures::{span_batch, SpanFixture};
    let handle = e.ingest_handle().expect("engine is running");
    let end = now_ns();
    let names: Vec<String> = (0..100).map(|i| format!("ballast-{i}")).collect();
    let fixtures: Vec<SpanFixture> = (0..BALLAST_SPANS)
        .map(|i| SpanFixture::new("ballast", &names[i % names.len()], end, 7.0))
        .collect();
    let batch = span_batch(source, 0, &fixtures);
    handle
        .send(redwatch_engine::pipeline::Batch::Spans(batch))
        .await
        .expect("an empty queue has room for the ballast");
    for name in &names {
        let n = BALLAST_SPANS / names.len();
        exp.add_n(Some("ballast"), &SpanSpec::new(name), n as f64);
    }
    wait_until(
        DEADLINE,
        "the pipeline takes the ballast off the queue",
        || async { handle.queue_depth() == 0 },
    )
    .await;
}

/// `redwatch run` as a child process: every listener on an ephemeral port, then `sets` as more
/// `--set` overrides, `env` added to its environment (RUST_LOG removed), stdout discarded. Waits
/// until its log (stderr) has named the address of each of `listeners` (`listening <name>
/// <addr>`); returns the child, those addresses and the rest of its log, which the caller must
/// keep draining so that the child never blocks on a full pipe.
pub fn spawn_redwatch_run(
    sets: &[&str],
    env: &[(&str, &str)],
    listeners: &[&str],
) -> (
    std::process::Child,
    std::collections::HashMap<String, String>,
    std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
) {
    use std::io::BufRead;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_redwatch"));
    cmd.arg("run");
    for kv in [
        "receivers.otlp.grpc.endpoint=127.0.0.1:0",
        "receivers.otlp.http.endpoint=127.0.0.1:0",
        "exporters.prometheus.endpoint=127.0.0.1:0",
        "sql.http_endpoint=127.0.0.1:0",
        "sql.flight_endpoint=127.0.0.1:0",
    ]
    .iter()
    .chain(sets)
    {
        cmd.args(["--set", kv]);
    }
    let mut child = cmd
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start redwatch run");
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut addrs = std::collections::HashMap::new();
    let mut log = Vec::new();
    while !listeners.iter().all(|n| addrs.contains_key(*n)) {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("redwatch ended before listening; log: {log:#?}"))
            .expect("stderr line");
        log.push(line.clone());
        for name in listeners {
            if let Some(addr) = line.split(&format!("listening {name} ")).nth(1) {
                addrs.insert(name.to_string(), addr.trim().to_string());
            }
        }
    }
    (child, addrs, lines)
}

// ---------------------------------------------------------------------------------------------
// gRPC
// ---------------------------------------------------------------------------------------------

/// A fresh channel to the engine's OTLP/gRPC listener.
pub async fn grpc_channel(e: &Engine) -> Channel {
    let addr = e.addrs["otlp_grpc"];
    Channel::from_shared(format!("http://{addr}"))
        .expect("valid URI")
        .connect()
        .await
        .expect("connect to OTLP/gRPC")
}

/// Exports `req` with the generated OTLP client.
pub async fn grpc_export(
    e: &Engine,
    req: ExportTraceServiceRequest,
) -> Result<ExportTraceServiceResponse, tonic::Status> {
    let mut c = TraceServiceClient::new(grpc_channel(e).await)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    c.export(req).await.map(|r| r.into_inner())
}

/// Sends `body` as-is (no protobuf encoding) as the message of the unary call `path`;
/// `gzip` compresses it on the wire (grpc-encoding: gzip).
pub async fn grpc_raw(
    channel: Channel,
    path: &'static str,
    body: impl Into<Bytes>,
    gzip: bool,
) -> Result<Bytes, tonic::Status> {
    let mut g = tonic::client::Grpc::new(channel)
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    if gzip {
        g = g.send_compressed(CompressionEncoding::Gzip);
    }
    g.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("channel not ready: {e}")))?;
    g.unary(
        tonic::Request::new(body.into()),
        PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(|r| r.into_inner())
}

/// Asserts a gRPC error has `code` and a message containing every one of `needles`
/// (case-insensitive).
pub fn assert_status(
    res: Result<impl std::fmt::Debug, tonic::Status>,
    code: tonic::Code,
    needles: &[&str],
) {
    let st = match res {
        Ok(v) => panic!("expected gRPC {code:?}, got OK: {v:?}"),
        Err(st) => st,
    };
    assert_eq!(st.code(), code, "gRPC code (message: {:?})", st.message());
    let msg = st.message().to_ascii_lowercase();
    for n in needles {
        assert!(
            msg.contains(&n.to_ascii_lowercase()),
            "gRPC message {:?} should mention {n:?}",
            st.message()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// An HTTP answer, fully read.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl HttpReply {
    pub fn content_type(&self) -> &str {
        self.headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// `google.rpc.Status` (google/rpc/status.proto), written here rather than taken from the server.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types::Any>,
}

/// gRPC code numbers used in `google.rpc.Status`.
pub const RPC_INVALID_ARGUMENT: i32 = 3;
pub const RPC_RESOURCE_EXHAUSTED: i32 = 8;

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client")
}

/// POSTs `body` to the OTLP/HTTP listener.
pub async fn http_post(
    e: &Engine,
    path: &str,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: Vec<u8>,
) -> HttpReply {
    http_post_with(
        &http_client(),
        e,
        path,
        content_type,
        content_encoding,
        body,
    )
    .await
}

/// POSTs with a given client (to reuse connections under load).
pub async fn http_post_with(
    client: &reqwest::Client,
    e: &Engine,
    path: &str,
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: Vec<u8>,
) -> HttpReply {
    let url = format!("http://{}{path}", e.addrs["otlp_http"]);
    let mut rb = client.post(url).body(body);
    if let Some(ct) = content_type {
        rb = rb.header(reqwest::header::CONTENT_TYPE, ct);
    }
    if let Some(ce) = content_encoding {
        rb = rb.header(reqwest::header::CONTENT_ENCODING, ce);
    }
    read_reply(rb.send().await.expect("OTLP/HTTP answers")).await
}

/// Sends `method path` with no body to the OTLP/HTTP listener.
pub async fn http_request(e: &Engine, method: reqwest::Method, path: &str) -> HttpReply {
    let url = format!("http://{}{path}", e.addrs["otlp_http"]);
    let r = http_client()
        .request(method, url)
        .send()
        .await
        .expect("OTLP/HTTP answers");
    read_reply(r).await
}

async fn read_reply(r: reqwest::Response) -> HttpReply {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await.expect("read HTTP body").to_vec();
    HttpReply {
        status,
        headers,
        body,
    }
}

/// Asserts an OTLP/HTTP error answer: `status`, a JSON `{"code", "message"}` body whose message
/// mentions every one of `needles`.
/// `rpc_code: None` accepts any non-OK code.
pub fn assert_http_json_error(r: &HttpReply, status: u16, rpc_code: Option<i32>, needles: &[&str]) {
    assert_error_reply(r, status, CT_JSON, "JSON");
    let v = r.json();
    let code = v["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer code in {v}"));
    let msg = v["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {v}"));
    assert_rpc_status(code, msg, rpc_code, needles, &v);
}

/// Asserts an OTLP/HTTP error answer whose body is a protobuf `google.rpc.Status`.
pub fn assert_http_proto_error(
    r: &HttpReply,
    status: u16,
    rpc_code: Option<i32>,
    needles: &[&str],
) {
    assert_error_reply(r, status, CT_PROTOBUF, "protobuf");
    let st = RpcStatus::decode(r.body.as_slice()).expect("body is a google.rpc.Status");
    assert_rpc_status(i64::from(st.code), &st.message, rpc_code, needles, &st);
}

/// The HTTP status of an error answer, and that its body is `content_type` (`what` names it).
fn assert_error_reply(r: &HttpReply, status: u16, content_type: &str, what: &str) {
    assert_eq!(
        r.status,
        status,
        "HTTP status; body {:?}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        r.content_type().starts_with(content_type),
        "error body should be {what}, content-type is {:?}",
        r.content_type()
    );
}

/// A `google.rpc.Status`'s code (`rpc_code`, or any non-OK code for `None`) and message (mentions
/// every one of `needles`); `body` is shown when the code is wrong.
fn assert_rpc_status(
    code: i64,
    msg: &str,
    rpc_code: Option<i32>,
    needles: &[&str],
    body: &dyn std::fmt::Debug,
) {
    match rpc_code {
        Some(c) => assert_eq!(code, i64::from(c), "google.rpc.Status code in {body:?}"),
        None => assert_ne!(code, 0, "google.rpc.Status code in {body:?}"),
    }
    assert_mentions(msg, needles);
}

/// Asserts `msg` mentions every one of `needles`, case-insensitively.
pub fn assert_mentions(msg: &str, needles: &[&str]) {
    let lower = msg.to_ascii_lowercase();
    for n in needles {
        assert!(
            lower.contains(&n.to_ascii_lowercase()),
            "message {msg:?} should mention {n:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// /metrics
// ---------------------------------------------------------------------------------------------

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed `/metrics` page.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// The sample `name` with exactly `labels` (in any order), if exported.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Like [`Scrape::get`], but the sample must be exported.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| {
            let have: Vec<String> = self
                .samples
                .iter()
                .filter(|s| s.name == name)
                .map(|s| canonical(&s.labels))
                .collect();
            panic!("{name}{labels:?} is not on /metrics; exported series of {name}: {have:?}")
        })
    }

    /// Sum of `name` over every label set.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }

    /// `traces_span_metrics_calls_total` per series.
    pub fn calls(&self) -> BTreeMap<SeriesLabels, f64> {
        let mut m = BTreeMap::new();
        for s in self
            .samples
            .iter()
            .filter(|s| s.name == "traces_span_metrics_calls_total")
        {
            *m.entry(canonical(&s.labels)).or_default() += s.value;
        }
        m
    }
}

/// Scrapes the engine's `/metrics`.
pub async fn scrape(e: &Engine) -> Scrape {
    let url = format!("http://{}/metrics", e.addrs["prometheus"]);
    let r = http_client()
        .get(url)
        .send()
        .await
        .expect("/metrics answers");
    assert_eq!(r.status().as_u16(), 200, "/metrics status");
    let text = r.text().await.expect("/metrics body");
    parse_exposition(&text)
}

/// Parses the Prometheus text exposition format (comments skipped, label escapes honoured).
pub fn parse_exposition(text: &str) -> Scrape {
    let mut samples = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(
            parse_sample(line).unwrap_or_else(|| panic!("unparseable /metrics line: {line:?}")),
        );
    }
    Scrape { samples }
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if rest.starts_with('{') {
        let mut chars = rest[1..].char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next()?;
            match c {
                '}' => {
                    rest = &rest[1 + i + 1..];
                    break;
                }
                ',' => {}
                '=' => {
                    if chars.next()?.1 != '"' {
                        return None;
                    }
                    let mut v = String::new();
                    loop {
                        match chars.next()?.1 {
                            '\\' => match chars.next()?.1 {
                                'n' => v.push('\n'),
                                c => v.push(c),
                            },
                            '"' => break,
                            c => v.push(c),
                        }
                    }
                    labels.insert(std::mem::take(&mut key), v);
                }
                c => key.push(c),
            }
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// `(rejected, error_message)` of an OTLP/JSON trace answer (`{}` = nothing rejected); accepts
/// `rejectedSpans` as a string (proto3 JSON for int64) or a number.
pub fn json_partial_success(v: &serde_json::Value) -> (i64, String) {
    let Some(ps) = v.get("partialSuccess") else {
        return (0, String::new());
    };
    let n = match &ps["rejectedSpans"] {
        serde_json::Value::String(s) => s.parse().expect("rejectedSpans is an integer string"),
        serde_json::Value::Number(n) => n.as_i64().expect("rejectedSpans is an integer"),
        serde_json::Value::Null => 0,
        other => panic!("rejectedSpans has an unexpected type: {other}"),
    };
    let msg = ps["errorMessage"].as_str().unwrap_or("").to_string();
    (n, msg)
}

/// `partial_success.rejected_spans` of a trace answer (0 when absent).
pub fn rejected_spans(r: &ExportTraceServiceResponse) -> i64 {
    r.partial_success.as_ref().map_or(0, |p| p.rejected_spans)
}

/// Asserts the whole `redwatch_requests_rejected_total` family: the listed
/// `(receiver, signal, reason)` series have the given values, every other series is 0.
pub fn assert_request_rejections(m: &Scrape, expected: &[(&str, &str, &str, f64)]) {
    assert_family(
        m,
        "redwatch_requests_rejected_total",
        &expected
            .iter()
            .map(|(rcv, sig, reason, n)| {
                (
                    vec![("receiver", *rcv), ("signal", *sig), ("reason", *reason)],
                    *n,
                )
            })
            .collect::<Vec<_>>(),
    );
}

/// Asserts the whole `redwatch_spans_rejected_total` family: the listed `(receiver, reason)`
/// series have the given values, every other series is 0.
pub fn assert_span_rejections(m: &Scrape, expected: &[(&str, &str, f64)]) {
    assert_family(
        m,
        "redwatch_spans_rejected_total",
        &expected
            .iter()
            .map(|(rcv, reason, n)| (vec![("receiver", *rcv), ("reason", *reason)], *n))
            .collect::<Vec<_>>(),
    );
}

fn assert_family(m: &Scrape, name: &str, expected: &[(Vec<(&str, &str)>, f64)]) {
    for (labels, n) in expected {
        assert_eq!(m.value(name, labels), *n, "{name}{labels:?}");
    }
    for s in m.samples.iter().filter(|s| s.name == name) {
        let listed = expected.iter().any(|(labels, _)| {
            labels.len() == s.labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        });
        if !listed {
            assert_eq!(
                s.value,
                0.0,
                "{name}{{{}}} should not have moved",
                canonical(&s.labels)
            );
        }
    }
}

/// Decodes a metrics export answer (for the metrics receiver's success path).
pub fn decode_metrics_response(b: &[u8]) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse::decode(b).expect("an ExportMetricsServiceResponse")
}

/// One second in nanoseconds.
pub const SEC: u64 = 1_000_000_000;

/// Sends `calls` spans per window and series, window after window from `first_window_s` (Unix
/// seconds): as fast as possible while behind the wall clock, then one window a second.
/// `latency_ms(window_index, i)` gives each span's duration.
pub struct Load {
    stop: Arc<AtomicBool>,
    windows: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    pub fn start(
        e: &Engine,
        services: &'static [&'static str],
        first_window_s: u64,
        calls: usize,
        latency_ms: impl Fn(u64, usize) -> u64 + Send + 'static,
    ) -> Load {
        let addr = e.addrs["otlp_grpc"];
        let stop = Arc::new(AtomicBool::new(false));
        let windows = Arc::new(AtomicU64::new(0));
        let (s, w) = (stop.clone(), windows.clone());
        let task = tokio::spawn(async move {
            let ch = tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect()
                .await
                .expect("connect to the engine");
            let mut client = TraceServiceClient::new(ch);
            let mut k = 0u64;
            while !s.load(Ordering::Relaxed) {
                let start = (first_window_s + k) * SEC;
                // Never send a window that has not begun yet; in real time, send a window's
                // spans just after it ends so the next one closes it.
                sleep_until_wall(start + SEC).await;
                for svc in services {
                    let spans: Vec<SpanSpec> = (0..calls)
                        .map(|i| {
                            let end = start + (i as u64 * (SEC - 1)) / calls as u64;
                            SpanSpec::new("GET /pay")
                                .duration_ms(latency_ms(k, i))
                                .end(end)
                        })
                        .collect();
                    let r = client.export(trace_request(Some(svc), &spans)).await;
                    assert!(r.is_ok(), "engine refused the load: {r:?}");
                }
                k += 1;
                w.store(k, Ordering::Relaxed);
            }
        });
        Load {
            stop,
            windows,
            task,
        }
    }

    /// Windows sent so far.
    pub fn windows(&self) -> u64 {
        self.windows.load(Ordering::Relaxed)
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the load task ends cleanly");
    }
}

/// A deterministic value in [0, 1).
pub fn noise(k: u64, i: usize) -> f64 {
    (((k * 131 + i as u64 * 17) as f64 * 12.9898).sin() * 43758.5453)
        .fract()
        .abs()
}

/// A problem trace's member spans hang together: an incident's first span is a child of the
/// problem's `root`, its later windows children of that one; `n` member incidents, so `n`
/// children of the root.
pub fn assert_member_tree(root: &Span, in_problem: &[&Span], n: usize) {
    let ids: std::collections::BTreeSet<&Vec<u8>> = in_problem.iter().map(|s| &s.span_id).collect();
    for s in in_problem {
        assert!(
            s.parent_span_id == root.span_id || ids.contains(&s.parent_span_id),
            "member span without its parent in the trace: {s:?}"
        );
    }
    assert_eq!(
        in_problem
            .iter()
            .filter(|s| s.parent_span_id == root.span_id)
            .count(),
        n,
        "one child of the root per member incident"
    );
}
