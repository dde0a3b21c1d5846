//! The config structs. Every field carries its doc; defaults are the `Default` impls below and
//! nowhere else (`redwatch validate --print-defaults` prints `Config::default()`).

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// The whole redwatch configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where telemetry comes in.
    pub receivers: ReceiversConfig,
    /// Event-time window specs and watermark behaviour.
    pub windows: WindowsConfig,
    /// The RED (rate, errors, duration) aggregation.
    pub red: RedConfig,
    /// The service graph (client/server span pairs across services).
    pub service_graph: super::ServiceGraphConfig,
    /// Where results go.
    pub exporters: ExportersConfig,
    /// SQL over the live tables (HTTP API, Flight SQL, continuous queries).
    pub sql: SqlConfig,
    /// Anomaly detection on every closed window of every RED series.
    pub anomaly: super::AnomalyConfig,
    /// Trend prediction per RED series.
    pub forecast: super::ForecastConfig,
    /// Resource bounds of the pipeline.
    pub limits: LimitsConfig,
    /// The web console at `/` on the SQL HTTP listener.
    pub ui: super::UiConfig,
}

/// Telemetry sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ReceiversConfig {
    /// The OTLP receivers (gRPC and HTTP).
    pub otlp: OtlpReceiverConfig,
    /// Consume OTLP export requests from Kafka topics; absent = no Kafka source. Needs the
    /// `kafka` cargo feature (on by default).
    pub kafka: Option<KafkaReceiverConfig>,
}

/// How a Kafka message's value is encoded: one OTLP export request per message, as the
/// OpenTelemetry Collector's kafka exporter writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KafkaEncoding {
    /// Protobuf `Export*ServiceRequest`.
    #[default]
    OtlpProto,
    /// OTLP/JSON `Export*ServiceRequest`.
    OtlpJson,
}

/// The Kafka source (docs/kafka-exactness.md): each assigned partition is one event-time source;
/// offsets are committed only up to messages whose windows have all been purged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaReceiverConfig {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// Topic carrying `ExportTraceServiceRequest` messages.
    pub traces_topic: String,
    /// Topic carrying `ExportMetricsServiceRequest` messages (counted like OTLP metrics);
    /// `null` = not subscribed.
    pub metrics_topic: Option<String>,
    /// Consumer group; instances in one group split the partitions.
    pub group_id: String,
    /// `client.id` reported to the brokers.
    pub client_id: String,
    /// Encoding of the message values.
    pub encoding: KafkaEncoding,
    /// Undecodable messages are copied here (with the reason in a header); `null` = only counted.
    pub dead_letter_topic: Option<String>,
    /// Extra librdkafka properties passed through as they are (security, tuning), e.g.
    /// `security.protocol: SASL_SSL`. They override redwatch's own settings.
    pub librdkafka: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaReceiverConfig {
    fn default() -> Self {
        Self {
            brokers: vec!["127.0.0.1:9092".to_string()],
            traces_topic: "otlp_spans".to_string(),
            metrics_topic: Some("otlp_metrics".to_string()),
            group_id: "redwatch".to_string(),
            client_id: "redwatch".to_string(),
            encoding: KafkaEncoding::OtlpProto,
            dead_letter_topic: None,
            librdkafka: std::collections::BTreeMap::new(),
        }
    }
}

/// OTLP receivers. Set a protocol to `null` to disable it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpReceiverConfig {
    /// OTLP/gRPC: `TraceService/Export` and `MetricsService/Export`.
    pub grpc: Option<OtlpGrpcConfig>,
    /// OTLP/HTTP: `POST /v1/traces` and `/v1/metrics`, protobuf or JSON, optionally gzip.
    pub http: Option<OtlpHttpConfig>,
    /// Caps applied while decoding (both protocols and the Kafka source).
    pub limits: OtlpLimitsConfig,
}

impl Default for OtlpReceiverConfig {
    fn default() -> Self {
        Self {
            grpc: Some(OtlpGrpcConfig::default()),
            http: Some(OtlpHttpConfig::default()),
            limits: OtlpLimitsConfig::default(),
        }
    }
}

/// `receivers.otlp.limits`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpLimitsConfig {
    /// Longer span names, service names, metric names and attribute keys/values are truncated
    /// to this many bytes (at a UTF-8 boundary) and counted in
    /// `redwatch_strings_truncated_total`, as the OpenTelemetry SDK's attribute length limits do.
    pub max_string_bytes: ByteSize,
}

impl Default for OtlpLimitsConfig {
    fn default() -> Self {
        Self {
            max_string_bytes: ByteSize::kib(4),
        }
    }
}

/// OTLP/gRPC listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpGrpcConfig {
    /// Listen address; port 0 binds an ephemeral port.
    pub endpoint: SocketAddr,
    /// Largest accepted request after decompression; larger ones get `RESOURCE_EXHAUSTED`.
    pub max_message_size: ByteSize,
    /// TLS (rustls); `null` = plaintext. See docs/design.md, "Security".
    pub tls: Option<super::TlsServerConfig>,
    /// Bearer-token authentication; `null` = none. Refused requests get gRPC `UNAUTHENTICATED` and count in
    /// `redwatch_unauthenticated_requests_total{listener="otlp_grpc"}`.
    pub auth: Option<super::AuthConfig>,
    /// Concurrent HTTP/2 streams (requests) per connection.
    pub max_concurrent_streams: u32,
    /// Open connections; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// A request (reading it included) that takes longer is cancelled (`CANCELLED`).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for OtlpGrpcConfig {
    fn default() -> Self {
        Self {
            endpoint: SocketAddr::from(([127, 0, 0, 1], 4317)),
            max_message_size: ByteSize::mib(16),
            tls: None,
            auth: None,
            max_concurrent_streams: 64,
            max_connections: 256,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// OTLP/HTTP listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpHttpConfig {
    /// Listen address; port 0 binds an ephemeral port.
    pub endpoint: SocketAddr,
    /// Largest accepted body, before and after decompression; larger ones get 413.
    pub max_body_size: ByteSize,
    /// TLS (rustls); `null` = plaintext. See docs/design.md, "Security".
    pub tls: Option<super::TlsServerConfig>,
    /// Bearer-token authentication; `null` = none. Refused requests get HTTP 401 and count in
    /// `redwatch_unauthenticated_requests_total{listener="otlp_http"}`.
    pub auth: Option<super::AuthConfig>,
    /// Open connections; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Reading a request body that takes longer is abandoned with 408.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for OtlpHttpConfig {
    fn default() -> Self {
        Self {
            endpoint: SocketAddr::from(([127, 0, 0, 1], 4318)),
            max_body_size: ByteSize::mib(16),
            tls: None,
            auth: None,
            max_connections: 256,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Event-time windows (docs/design.md, "Time semantics").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowsConfig {
    /// The primary tumbling window, aligned to the Unix epoch.
    #[serde(with = "humantime_serde")]
    pub size: Duration,
    /// Coarser tumbling windows computed from the primary window's results (multiples of `size`).
    #[serde(with = "humantime_duration_list")]
    pub rollups: Vec<Duration>,
    /// More window specs: hopping `{size, slide}` (computed from the primary windows' results,
    /// like rollups) and session `{gap, key}` (spans grouped per key value until a gap).
    pub extra: Vec<ExtraWindow>,
    /// How far behind the newest event time the watermark trails.
    #[serde(with = "humantime_serde")]
    pub max_out_of_orderness: Duration,
    /// How long after its end an emitted window still accepts (and re-emits) late data.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// A source without data for this long stops holding the watermark back.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Event times further than this ahead of the wall clock are rejected.
    #[serde(with = "humantime_serde")]
    pub max_future_skew: Duration,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        Self {
            size: Duration::from_secs(10),
            rollups: vec![Duration::from_secs(60)],
            extra: Vec::new(),
            max_out_of_orderness: Duration::from_secs(5),
            allowed_lateness: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_future_skew: Duration::from_secs(3600),
        }
    }
}

/// An extra window spec. Hopping: `{size: 1m, slide: 10s}` — a `size` window starting every
/// `slide` (a multiple of `windows.size` that divides `size`). Session: `{gap: 30s, key:
/// trace_id}` — per key value, spans whose event times lie within `gap` of each other form one
/// session (see `sessions.rs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExtraWindow {
    /// Hopping: the window length.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub size: Option<Duration>,
    /// Hopping: how far apart window starts are.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub slide: Option<Duration>,
    /// Session: spans of one key value whose event times are at most this far apart share a
    /// session; it ends `gap` after its last span.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub gap: Option<Duration>,
    /// Session: what groups spans — `trace_id`, `service.name`, or an attribute written like a
    /// RED dimension, `{name: enduser.id, source: span}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<super::SessionKey>,
    /// Session: a session never grows past this length (a longer activity is split into
    /// consecutive sessions); default 1h.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_duration: Option<Duration>,
    /// Session: open sessions at most; spans that would open more are dropped and counted
    /// (`redwatch_sessions_overflow_spans_total`); default 100000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<usize>,
}

impl ExtraWindow {
    /// `(size, slide)` of a hopping spec.
    pub fn hopping(&self) -> Option<(Duration, Duration)> {
        match (self.size, self.slide, self.is_session()) {
            (Some(size), Some(slide), false) => Some((size, slide)),
            _ => None,
        }
    }
}

/// RED aggregation, compatible with the Collector's spanmetrics connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedConfig {
    /// Extra series dimensions, read from span, scope or resource attributes (see `source`).
    pub dimensions: Vec<Dimension>,
    /// Span-name normalisation before series lookup (collapses ids in path-like names).
    pub span_names: super::SpanNamesConfig,
    /// Histogram bucket upper bounds in milliseconds (Prometheus `le`), strictly increasing.
    pub buckets_ms: Vec<f64>,
    /// Distinct active series at most; further series fold into one overflow series.
    pub cardinality_limit: usize,
    /// The same limit in bytes: the active series keys' strings (service, span name, dimension
    /// values; for ingested metrics name and attributes) sum to at most this; further series
    /// fold into the overflow series. Bounds state and the `/metrics` exposition.
    pub cardinality_limit_bytes: ByteSize,
    /// A series with no data for this long is forgotten (it leaves `/metrics` and frees its slot).
    #[serde(with = "humantime_serde")]
    pub series_expiry: Duration,
}

impl Default for RedConfig {
    fn default() -> Self {
        Self {
            dimensions: Vec::new(),
            buckets_ms: vec![
                2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0,
                5000.0, 10000.0, 15000.0,
            ],
            cardinality_limit: 10_000,
            cardinality_limit_bytes: ByteSize::mib(16),
            series_expiry: Duration::from_secs(900),
            span_names: super::SpanNamesConfig::default(),
        }
    }
}

/// One extra RED dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    /// Attribute key, e.g. `http.method`.
    pub name: String,
    /// Value used when no attribute of `source` has the key; absent = empty label.
    #[serde(default)]
    pub default: Option<String>,
    /// Where the value is read from: `any` (span, then scope, then resource; the default),
    /// `span`, `resource` or `scope`.
    #[serde(default)]
    pub source: super::DimensionSource,
}

impl Dimension {
    /// The Prometheus label name: the attribute key with every non `[a-zA-Z0-9_]` replaced by `_`.
    pub fn label(&self) -> String {
        let mut s: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if s.starts_with(|c: char| c.is_ascii_digit()) {
            s.insert(0, '_');
        }
        s
    }
}

/// Result destinations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportersConfig {
    /// Prometheus exposition of RED and self-metrics; `null` disables it.
    pub prometheus: Option<PrometheusConfig>,
    /// OTLP export of anomaly and prediction spans (and RED metrics); absent = no OTLP export.
    pub otlp: Option<OtlpExporterConfig>,
    /// Kafka sink of final RED windows and anomaly/prediction spans; absent = none. Needs the
    /// `kafka` cargo feature (on by default).
    pub kafka: Option<super::KafkaExporterConfig>,
}

impl Default for ExportersConfig {
    fn default() -> Self {
        ExportersConfig {
            prometheus: Some(PrometheusConfig::default()),
            otlp: None,
            kafka: None,
        }
    }
}

/// OTLP exporter (to Jaeger, a Collector or any OTLP backend).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpExporterConfig {
    /// Base URL of the receiver, e.g. `http://127.0.0.1:14317` (gRPC) or `http://host:4318`
    /// (HTTP; `/v1/traces` is appended).
    pub endpoint: String,
    /// `grpc` or `http/protobuf`.
    pub protocol: OtlpProtocol,
    /// Extra headers (gRPC metadata) sent with every export, e.g. an authorization token:
    /// `authorization: Bearer <token>`.
    pub headers: std::collections::BTreeMap<String, String>,
    /// TLS to the receiver (needed for an `https://` endpoint); `null` = plaintext.
    pub tls: Option<super::TlsClientConfig>,
    /// `gzip` or `none`.
    pub compression: OtlpCompression,
    /// How records are grouped into export requests.
    pub batch: OtlpBatchConfig,
    /// Records that may wait for export; beyond it new ones are dropped and counted
    /// (`redwatch_export_dropped_total`), the operators never wait.
    pub queue_size: usize,
    /// Retries of retryable failures (gRPC UNAVAILABLE, RESOURCE_EXHAUSTED, …; HTTP 429, 502,
    /// 503, 504, connection errors), exponential backoff with jitter.
    pub retry: OtlpRetryConfig,
    /// Aggregation temporality of exported RED metrics: `delta` or `cumulative`.
    pub temporality: OtlpTemporality,
    /// Whether RED metrics (`traces.span.metrics.*`) are exported besides the anomaly and
    /// prediction spans. Off for a receiver that takes traces only (Jaeger: it reads RED from
    /// Prometheus instead).
    pub red_metrics: bool,
}

impl Default for OtlpExporterConfig {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:14317".to_string(),
            protocol: OtlpProtocol::Grpc,
            headers: std::collections::BTreeMap::new(),
            tls: None,
            compression: OtlpCompression::Gzip,
            batch: OtlpBatchConfig::default(),
            queue_size: 10_000,
            retry: OtlpRetryConfig::default(),
            temporality: OtlpTemporality::Delta,
            red_metrics: true,
        }
    }
}

impl OtlpExporterConfig {
    /// Every problem of this section, as (dotted path, message); `path` is where the section
    /// sits (`exporters.otlp`). Pure.
    pub fn validate(&self, path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |key: &str, msg: &str| out.push((format!("{path}.{key}"), msg.to_string()));
        if !(self.endpoint.starts_with("http://") || self.endpoint.starts_with("https://"))
            || self.endpoint.len() <= "https://".len()
        {
            bad("endpoint", "must be an http:// or https:// URL");
        }
        if self.batch.max_size == 0 {
            bad("batch.max_size", "must be at least 1");
        }
        if self.batch.timeout.is_zero() {
            bad("batch.timeout", "must be greater than 0");
        }
        if self.queue_size == 0 {
            bad("queue_size", "must be at least 1");
        }
        if self.retry.initial_interval.is_zero() {
            bad("retry.initial_interval", "must be greater than 0");
        }
        if self.retry.max_interval < self.retry.initial_interval {
            bad(
                "retry.max_interval",
                "must be at least retry.initial_interval",
            );
        }
        match (&self.tls, self.endpoint.starts_with("https://")) {
            (None, true) => bad("tls", "is required for an https:// endpoint"),
            (Some(_), false) => bad("endpoint", "must be an https:// URL when tls is set"),
            (Some(t), true) => out.extend(t.validate(&format!("{path}.tls"))),
            (None, false) => {}
        }
        let mut bad = |key: &str, msg: &str| out.push((format!("{path}.{key}"), msg.to_string()));
        for k in self.headers.keys() {
            let valid = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !valid {
                bad(&format!("headers.{k}"), "is not a valid header name");
            }
        }
        out
    }
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (`TraceService/Export`).
    #[default]
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`POST /v1/traces`).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// Request compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OtlpCompression {
    /// gzip.
    #[default]
    Gzip,
    /// Uncompressed.
    None,
}

/// Aggregation temporality of exported sums and histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OtlpTemporality {
    /// Each point carries one window's delta.
    #[default]
    Delta,
    /// Each point carries the running total since start.
    Cumulative,
}

/// Batching of the OTLP exporter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpBatchConfig {
    /// Records (spans) per export request at most.
    pub max_size: usize,
    /// A partial batch is sent after waiting this long.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for OtlpBatchConfig {
    fn default() -> Self {
        Self {
            max_size: 512,
            timeout: Duration::from_secs(1),
        }
    }
}

/// Retry policy of the OTLP exporter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpRetryConfig {
    /// Wait before the first retry; doubled after each failure (with jitter).
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Longest wait between two attempts.
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// A batch still failing after this long is dropped and counted.
    #[serde(with = "humantime_serde")]
    pub max_elapsed_time: Duration,
}

impl Default for OtlpRetryConfig {
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(30),
            max_elapsed_time: Duration::from_secs(300),
        }
    }
}

/// Prometheus `/metrics` endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// Listen address; port 0 binds an ephemeral port.
    pub endpoint: SocketAddr,
    /// TLS (rustls); `null` = plaintext. See docs/design.md, "Security".
    pub tls: Option<super::TlsServerConfig>,
    /// Bearer-token authentication; `null` = none. Refused requests get HTTP 401 and count in
    /// `redwatch_unauthenticated_requests_total{listener="prometheus"}`.
    pub auth: Option<super::AuthConfig>,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self {
            endpoint: SocketAddr::from(([127, 0, 0, 1], 9464)),
            tls: None,
            auth: None,
        }
    }
}

/// How long the live tables keep windows by default (`sql.retention`).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(6 * 3600);

/// SQL over live windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlConfig {
    /// HTTP API (`POST /api/v1/sql`) and `/healthz`, `/readyz`; `null` disables the listener.
    pub http_endpoint: Option<SocketAddr>,
    /// Arrow Flight SQL endpoint; `null` disables it.
    pub flight_endpoint: Option<SocketAddr>,
    /// A query running longer is cancelled (HTTP 408).
    #[serde(with = "humantime_serde")]
    pub query_timeout: Duration,
    /// Memory one query may use for sorts, joins and aggregations (HTTP 413 beyond).
    pub memory_limit: ByteSize,
    /// Memory all running queries may use together (each still within `memory_limit`); a query
    /// that would pass it fails with HTTP 413.
    pub shared_memory_limit: ByteSize,
    /// Queries that run at once; more wait (at most `query_timeout`, and at most four times this
    /// many waiting) and are then refused with HTTP 503 and `Retry-After`.
    pub max_concurrent_queries: usize,
    /// Bytes of Arrow data a query may return (HTTP 413 beyond; add a LIMIT or aggregate).
    pub max_result_bytes: ByteSize,
    /// Host names (besides IP literals and `localhost`) the HTTP API answers to; any other
    /// `Host` header is refused with HTTP 403, so a web page cannot reach the API through DNS
    /// rebinding.
    pub allowed_hosts: Vec<String>,
    /// How long closed windows stay queryable.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Upper bound on the bytes the `red` table keeps; the oldest windows go first.
    pub max_table_bytes: ByteSize,
    /// Rows a query may return (HTTP 413 beyond; add a LIMIT or aggregate).
    pub max_result_rows: usize,
    /// Rows of the `spans` table (recent raw spans); the oldest go first.
    pub spans_max_rows: usize,
    /// Raw spans per second admitted to the `spans` table (errors first); the rest are only
    /// aggregated.
    pub spans_per_second: usize,
    /// Named queries run on every closed primary window.
    pub continuous: Vec<ContinuousQuery>,
    /// TLS (rustls) of both SQL listeners, the HTTP API and Flight SQL; `null` = plaintext.
    pub tls: Option<super::TlsServerConfig>,
    /// Bearer-token authentication of both SQL listeners; `null` = none. Refused requests get
    /// HTTP 401 / gRPC `UNAUTHENTICATED` and count in
    /// `redwatch_unauthenticated_requests_total{listener="sql_http"|"flight_sql"}`; `/healthz`
    /// and `/readyz` stay open (probes carry no token).
    pub auth: Option<super::AuthConfig>,
}

impl Default for SqlConfig {
    fn default() -> Self {
        SqlConfig {
            http_endpoint: Some(SocketAddr::from(([127, 0, 0, 1], 7070))),
            flight_endpoint: Some(SocketAddr::from(([127, 0, 0, 1], 50051))),
            query_timeout: Duration::from_secs(30),
            memory_limit: ByteSize::mib(512),
            shared_memory_limit: ByteSize::gib(1),
            max_concurrent_queries: 8,
            max_result_bytes: ByteSize::mib(64),
            allowed_hosts: Vec::new(),
            retention: DEFAULT_RETENTION,
            max_table_bytes: ByteSize::gib(1),
            max_result_rows: 100_000,
            spans_max_rows: 100_000,
            spans_per_second: 2_000,
            continuous: Vec::new(),
            tls: None,
            auth: None,
        }
    }
}

/// A query run on every window close; its result rows go to `continuous_results` and to
/// Prometheus as `redwatch_continuous_<name>` gauges (one per numeric column).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContinuousQuery {
    /// Name: `[a-z_][a-z0-9_]*`.
    pub name: String,
    /// A read-only SELECT; `$window_start` and `$window_end` are replaced by the closed window's
    /// bounds as timestamp literals.
    pub query: String,
}

/// Resource bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Batches that may wait between the receivers and the operators.
    pub queue_capacity: usize,
    /// How long a receiver waits for queue space before answering with backpressure
    /// (gRPC `RESOURCE_EXHAUSTED`, HTTP 429).
    #[serde(with = "humantime_serde")]
    pub enqueue_timeout: Duration,
    /// The memory limiter: bytes held by in-flight requests (raw and decoded) and by queued
    /// batches. Above `limit - spike` receivers answer with retryable backpressure (gRPC
    /// `RESOURCE_EXHAUSTED` + `RetryInfo`, HTTP 429 + `Retry-After`) and the Kafka source
    /// pauses; nothing accounted ever passes `limit`. `null` = accounted, never refused.
    pub memory: Option<MemoryLimitConfig>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 256,
            enqueue_timeout: Duration::from_millis(500),
            memory: Some(MemoryLimitConfig::default()),
        }
    }
}

/// `limits.memory` (the Collector's `memory_limiter`: `limit_mib`, `spike_limit_mib`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryLimitConfig {
    /// Hard limit on accounted bytes: a reservation that would pass it is refused.
    pub limit: ByteSize,
    /// Headroom below `limit` for requests already admitted: new requests are refused once
    /// accounted bytes pass `limit - spike` (the soft limit).
    pub spike: ByteSize,
}

impl Default for MemoryLimitConfig {
    fn default() -> Self {
        Self {
            limit: ByteSize::gib(1),
            spike: ByteSize::mib(256),
        }
    }
}

/// `Vec<Duration>` as a list of humantime strings.
mod humantime_duration_list {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| humantime::format_duration(*d).to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let raw = Vec::<String>::deserialize(d)?;
        raw.iter()
            .map(|s| humantime::parse_duration(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod otlp_exporter_tests {
    use super::*;

    #[test]
    fn otlp_exporter_is_off_by_default_and_parses_design_keys() {
        assert_eq!(Config::default().exporters.otlp, None);
        let e: ExportersConfig = serde_yaml_ng::from_str(
            "otlp:\n  endpoint: http://collector:4318\n  protocol: http/protobuf\n  \
             headers: { authorization: Bearer x }\n  compression: none\n  \
             batch: { max_size: 100, timeout: 250ms }\n  queue_size: 50\n  \
             retry: { initial_interval: 2s, max_interval: 10s, max_elapsed_time: 1m }\n  \
             temporality: cumulative\n",
        )
        .unwrap();
        let o = e.otlp.unwrap();
        assert_eq!(o.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(o.compression, OtlpCompression::None);
        assert_eq!(o.batch.timeout, Duration::from_millis(250));
        assert_eq!(o.retry.max_elapsed_time, Duration::from_secs(60));
        assert_eq!(o.temporality, OtlpTemporality::Cumulative);
        assert_eq!(o.headers["authorization"], "Bearer x");
        assert!(o.validate("exporters.otlp").is_empty());
        // `otlp: {}` means the documented defaults.
        let d: ExportersConfig = serde_yaml_ng::from_str("otlp: {}").unwrap();
        let d = d.otlp.unwrap();
        assert_eq!(d, OtlpExporterConfig::default());
        assert_eq!(d.endpoint, "http://127.0.0.1:14317");
        assert_eq!((d.batch.max_size, d.queue_size), (512, 10_000));
        assert_eq!(d.retry.max_interval, Duration::from_secs(30));
        assert!(serde_yaml_ng::from_str::<ExportersConfig>("otlp: { protocol: udp }").is_err());
        assert!(serde_yaml_ng::from_str::<ExportersConfig>("otlp: { nope: 1 }").is_err());
    }

    #[test]
    fn otlp_exporter_validate_reports_paths() {
        let mut o = OtlpExporterConfig {
            endpoint: "collector:4317".into(),
            queue_size: 0,
            ..Default::default()
        };
        o.batch.max_size = 0;
        o.retry.max_interval = Duration::from_millis(1);
        let p: Vec<String> = o
            .validate("exporters.otlp")
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            p,
            [
                "exporters.otlp.endpoint",
                "exporters.otlp.batch.max_size",
                "exporters.otlp.queue_size",
                "exporters.otlp.retry.max_interval"
            ]
        );
    }
}
