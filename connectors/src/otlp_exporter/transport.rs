//! The wire side of the OTLP exporter: one export request over gRPC (tonic `TraceServiceClient`)
//! or HTTP/protobuf (`POST /v1/traces`), and the classification of failures into retryable or
//! not (OTLP specification, "Failures" / "Retryable response codes").

use super::ExportError;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use redwatch_engine::config::{OtlpCompression, OtlpExporterConfig, OtlpProtocol};
use std::io::Write;
use std::time::Duration;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, Endpoint};

/// Time one export attempt may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A failed export attempt.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The gRPC call ended with a non-OK status.
    #[error("gRPC {code:?}: {message}")]
    Grpc { code: tonic::Code, message: String },
    /// The HTTP request got a non-2xx answer.
    #[error("HTTP {status}: {message}")]
    Http {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or reset, timeout.
    #[error("connection: {0}")]
    Connection(String),
    /// The answer could not be decoded.
    #[error("bad answer: {0}")]
    BadAnswer(String),
}

impl SendError {
    /// Whether trying again later can help.
    pub fn retryable(&self) -> bool {
        use tonic::Code::*;
        match self {
            SendError::Grpc { code, .. } => matches!(
                code,
                Cancelled
                    | DeadlineExceeded
                    | ResourceExhausted
                    | Aborted
                    | OutOfRange
                    | Unavailable
                    | DataLoss
            ),
            SendError::Http { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            SendError::Connection(_) => true,
            SendError::BadAnswer(_) => false,
        }
    }

    /// The wait the destination asked for (HTTP `Retry-After` in seconds).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// How export requests travel.
#[derive(Debug, Clone)]
pub enum Transport {
    Grpc {
        client: TraceServiceClient<Channel>,
        metadata: MetadataMap,
    },
    Http {
        client: reqwest::Client,
        url: String,
        headers: reqwest::header::HeaderMap,
        gzip: bool,
    },
}

impl Transport {
    /// The transport `cfg` describes. Connections are made lazily, so an absent destination
    /// is a retryable send failure, not a start-up error.
    pub fn new(cfg: &OtlpExporterConfig) -> Result<Transport, ExportError> {
        let endpoint = cfg.endpoint.trim_end_matches('/').to_string();
        let bad = |m: String| ExportError::InvalidEndpoint(cfg.endpoint.clone(), m);
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(bad("must start with http:// or https://".into()));
        }
        match cfg.protocol {
            OtlpProtocol::Grpc => {
                let channel = Endpoint::from_shared(endpoint.clone())
                    .map_err(|e| bad(e.to_string()))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(REQUEST_TIMEOUT)
                    .connect_lazy();
                let mut client = TraceServiceClient::new(channel)
                    .max_decoding_message_size(4 << 20)
                    .max_encoding_message_size(usize::MAX);
                if cfg.compression == OtlpCompression::Gzip {
                    client = client.send_compressed(CompressionEncoding::Gzip);
                }
                client = client.accept_compressed(CompressionEncoding::Gzip);
                let mut metadata = MetadataMap::new();
                for (k, v) in &cfg.headers {
                    let key = AsciiMetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .map_err(|e| ExportError::InvalidHeader(k.clone(), e.to_string()))?;
                    let value = AsciiMetadataValue::try_from(v.as_str())
                        .map_err(|e| ExportError::InvalidHeader(k.clone(), e.to_string()))?;
                    metadata.insert(key, value);
                }
                Ok(Transport::Grpc { client, metadata })
            }
            OtlpProtocol::HttpProtobuf => {
                let url = if endpoint.ends_with("/v1/traces") {
                    endpoint
                } else {
                    format!("{endpoint}/v1/traces")
                };
                reqwest::Url::parse(&url).map_err(|e| bad(e.to_string()))?;
                let mut headers = reqwest::header::HeaderMap::new();
                for (k, v) in &cfg.headers {
                    let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|e| ExportError::InvalidHeader(k.clone(), e.to_string()))?;
                    let value = reqwest::header::HeaderValue::from_str(v)
                        .map_err(|e| ExportError::InvalidHeader(k.clone(), e.to_string()))?;
                    headers.insert(name, value);
                }
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(REQUEST_TIMEOUT)
                    .build()
                    .map_err(|e| ExportError::Client(e.to_string()))?;
                Ok(Transport::Http {
                    client,
                    url,
                    headers,
                    gzip: cfg.compression == OtlpCompression::Gzip,
                })
            }
        }
    }

    /// Sends one request; on success returns the spans the destination rejected
    /// (`partial_success.rejected_spans`).
    pub async fn send(&mut self, req: &ExportTraceServiceRequest) -> Result<i64, SendError> {
        let resp = match self {
            Transport::Grpc { client, metadata } => {
                let mut r = tonic::Request::new(req.clone());
                *r.metadata_mut() = metadata.clone();
                client
                    .export(r)
                    .await
                    .map_err(|s| SendError::Grpc {
                        code: s.code(),
                        message: s.message().to_string(),
                    })?
                    .into_inner()
            }
            Transport::Http {
                client,
                url,
                headers,
                gzip,
            } => {
                let body = req.encode_to_vec();
                let mut rb = client
                    .post(url.as_str())
                    .headers(headers.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf");
                rb = if *gzip {
                    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    e.write_all(&body)
                        .and_then(|_| e.finish())
                        .map(|b| rb.header(reqwest::header::CONTENT_ENCODING, "gzip").body(b))
                        .map_err(|e| SendError::BadAnswer(format!("gzip: {e}")))?
                } else {
                    rb.body(body)
                };
                let r = rb
                    .send()
                    .await
                    .map_err(|e| SendError::Connection(e.to_string()))?;
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let bytes = r
                    .bytes()
                    .await
                    .map_err(|e| SendError::Connection(e.to_string()))?;
                if !(200..300).contains(&status) {
                    return Err(SendError::Http {
                        status,
                        message: String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                            .into_owned(),
                        retry_after,
                    });
                }
                ExportTraceServiceResponse::decode(bytes.as_ref())
                    .map_err(|e| SendError::BadAnswer(e.to_string()))?
            }
        };
        Ok(resp.partial_success.map_or(0, |p| p.rejected_spans))
    }
}
