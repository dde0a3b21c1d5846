//! Where results go (`exporters`): Prometheus and the OTLP exporter (the Kafka sink's block is
//! `kafka.rs`). Defaults are the `Default` impls here and nowhere else.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

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
    /// Notifications on problem open and resolve (Alertmanager or Slack JSON); `url: null` =
    /// none (`problems.rs`).
    pub webhook: super::WebhookExporterConfig,
}

impl Default for ExportersConfig {
    fn default() -> Self {
        ExportersConfig {
            prometheus: Some(PrometheusConfig::default()),
            otlp: None,
            kafka: None,
            webhook: super::WebhookExporterConfig::default(),
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
