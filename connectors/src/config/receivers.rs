//! Where telemetry comes in (`receivers`): the OTLP listeners and the Kafka source. Defaults are
//! the `Default` impls here and nowhere else.

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

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

impl super::Validate for OtlpReceiverConfig {
    /// The listeners' size caps; their `tls` and `auth` blocks are checked with every
    /// listener's.
    fn validate(&self, path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(g) = &self.grpc {
            if g.max_message_size.as_u64() == 0 || g.max_message_size.as_u64() > u32::MAX as u64 {
                out.push((
                    format!("{path}.grpc.max_message_size"),
                    "must be between 1 byte and 4GiB".into(),
                ));
            }
        }
        if let Some(h) = &self.http {
            if h.max_body_size.as_u64() == 0 {
                out.push((
                    format!("{path}.http.max_body_size"),
                    "must be greater than 0".into(),
                ));
            }
        }
        out
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
