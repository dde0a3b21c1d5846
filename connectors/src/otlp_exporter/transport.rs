//! The wire side of the OTLP exporter: one export request over gRPC (tonic `TraceServiceClient`
//! / `MetricsServiceClient` on one channel) or HTTP/protobuf (`POST /v1/traces`,
//! `POST /v1/metrics`), and the classification of failures into retryable or not (OTLP
//! specification, "Failures" / "Retryable response codes").

use super::ExportError;
use crate::config::{OtlpCompression, OtlpExporterConfig, OtlpProtocol};
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use redwatch_engine::security::{self, connector::TlsConnector, Alpn};
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

/// One export request.
#[derive(Debug, Clone)]
pub enum Request {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

/// How export requests travel.
#[derive(Debug, Clone)]
pub enum Transport {
    Grpc {
        client: Box<TraceServiceClient<Channel>>,
        metrics: Box<MetricsServiceClient<Channel>>,
        metadata: MetadataMap,
    },
    Http {
        client: reqwest::Client,
        /// `…/v1/traces`
        url: String,
        /// `…/v1/metrics`
        metrics_url: String,
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
                let ep = Endpoint::from_shared(endpoint.clone())
                    .map_err(|e| bad(e.to_string()))?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(REQUEST_TIMEOUT);
                let channel =
                    match (&cfg.tls, endpoint.starts_with("https://")) {
                        (Some(tls), true) => ep.connect_with_connector_lazy(TlsConnector::new(
                            security::client_config(tls, Alpn::H2)?,
                        )),
                        (None, false) => ep.connect_lazy(),
                        _ => return Err(bad(
                            "an https:// endpoint needs exporters.otlp.tls, and tls needs https://"
                                .into(),
                        )),
                    };
                let mut client = TraceServiceClient::new(channel.clone())
                    .max_decoding_message_size(4 << 20)
                    .max_encoding_message_size(usize::MAX);
                let mut metrics = MetricsServiceClient::new(channel)
                    .max_decoding_message_size(4 << 20)
                    .max_encoding_message_size(usize::MAX);
                if cfg.compression == OtlpCompression::Gzip {
                    client = client.send_compressed(CompressionEncoding::Gzip);
                    metrics = metrics.send_compressed(CompressionEncoding::Gzip);
                }
                client = client.accept_compressed(CompressionEncoding::Gzip);
                metrics = metrics.accept_compressed(CompressionEncoding::Gzip);
                let mut metadata = MetadataMap::new();
                for (k, v) in &cfg.headers {
                    let key = AsciiMetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .map_err(|e| ExportError::InvalidHeader(k.clone(), e.to_string()))?;
                    let value = AsciiMetadataValue::try_from(v.as_str())
                        .map_err(|e| ExportError::InvalidHeader(k.clone(), e.to_string()))?;
                    metadata.insert(key, value);
                }
                Ok(Transport::Grpc {
                    client: Box::new(client),
                    metrics: Box::new(metrics),
                    metadata,
                })
            }
            OtlpProtocol::HttpProtobuf => {
                let base = endpoint
                    .strip_suffix("/v1/traces")
                    .unwrap_or(&endpoint)
                    .to_string();
                let url = format!("{base}/v1/traces");
                let metrics_url = format!("{base}/v1/metrics");
                reqwest::Url::parse(&url).map_err(|e| bad(e.to_string()))?;
                let mut headers = reqwest::header::HeaderMap::new();
                for (k, v) in &cfg.headers {
                    let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|e| ExportError::InvalidHeader(k.clone(), e.to_string()))?;
                    let value = reqwest::header::HeaderValue::from_str(v)
                        .map_err(|e| ExportError::InvalidHeader(k.clone(), e.to_string()))?;
                    headers.insert(name, value);
                }
                let mut client = reqwest::Client::builder()
                    .no_proxy()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(REQUEST_TIMEOUT);
                match (&cfg.tls, endpoint.starts_with("https://")) {
                    (Some(tls), true) => {
                        client = client
                            .use_preconfigured_tls(security::client_config(tls, Alpn::Http1)?);
                    }
                    (None, false) => {}
                    _ => {
                        return Err(bad(
                            "an https:// endpoint needs exporters.otlp.tls, and tls needs https://"
                                .into(),
                        ))
                    }
                }
                let client = client
                    .build()
                    .map_err(|e| ExportError::Client(e.to_string()))?;
                Ok(Transport::Http {
                    client,
                    url,
                    metrics_url,
                    headers,
                    gzip: cfg.compression == OtlpCompression::Gzip,
                })
            }
        }
    }

    /// Sends one request; on success returns the spans or data points the destination rejected
    /// (`partial_success.rejected_spans` / `rejected_data_points`).
    pub async fn send(&mut self, req: &Request) -> Result<i64, SendError> {
        let grpc = |s: tonic::Status| SendError::Grpc {
            code: s.code(),
            message: s.message().to_string(),
        };
        match self {
            Transport::Grpc {
                client,
                metrics,
                metadata,
            } => match req {
                Request::Traces(r) => {
                    let mut r = tonic::Request::new(r.clone());
                    *r.metadata_mut() = metadata.clone();
                    let resp = client.export(r).await.map_err(grpc)?.into_inner();
                    Ok(resp.partial_success.map_or(0, |p| p.rejected_spans))
                }
                Request::Metrics(r) => {
                    let mut r = tonic::Request::new(r.clone());
                    *r.metadata_mut() = metadata.clone();
                    let resp = metrics.export(r).await.map_err(grpc)?.into_inner();
                    Ok(resp.partial_success.map_or(0, |p| p.rejected_data_points))
                }
            },
            Transport::Http {
                client,
                url,
                metrics_url,
                headers,
                gzip,
            } => {
                let (target, body) = match req {
                    Request::Traces(r) => (url.as_str(), r.encode_to_vec()),
                    Request::Metrics(r) => (metrics_url.as_str(), r.encode_to_vec()),
                };
                let bytes = post(client, target, headers, *gzip, body).await?;
                match req {
                    Request::Traces(_) => ExportTraceServiceResponse::decode(bytes.as_ref())
                        .map(|r| r.partial_success.map_or(0, |p| p.rejected_spans)),
                    Request::Metrics(_) => ExportMetricsServiceResponse::decode(bytes.as_ref())
                        .map(|r| r.partial_success.map_or(0, |p| p.rejected_data_points)),
                }
                .map_err(|e| SendError::BadAnswer(e.to_string()))
            }
        }
    }
}

/// POSTs one protobuf body; the answer's body on a 2xx status.
async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &reqwest::header::HeaderMap,
    gzip: bool,
    body: Vec<u8>,
) -> Result<bytes::Bytes, SendError> {
    let mut rb = client
        .post(url)
        .headers(headers.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf");
    rb = if gzip {
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
            message: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            retry_after,
        });
    }
    Ok(bytes)
}
