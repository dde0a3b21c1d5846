//! OTLP/HTTP receiver: `POST /v1/traces` and `/v1/metrics`, `application/x-protobuf` or
//! `application/json`, optionally `Content-Encoding: gzip` or `zstd`.
//!
//! Memory: a request is admitted only below the memory limiter's soft limit; its body (and its
//! decompressed form) is accounted chunk by chunk as it is read, and past the hard limit the read
//! stops with 429 + `Retry-After`. Reading a body is bounded in time (408) and connections in
//! number.
//!
//! Answers follow the OTLP/HTTP spec: 200 with an `Export*ServiceResponse` in the request's
//! encoding (partial success included), 400 with a `google.rpc.Status` for bad data, 413 for
//! oversized bodies (before and after decompression), 415 for a wrong media type or encoding,
//! 429 with `Retry-After` when the pipeline is behind, 503 while shutting down.

use super::{Ack, Encoding, IngestError, ReceiverCore, Signal};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use redwatch_engine::memory::Reservation;
use redwatch_engine::pipeline::Backpressure;
use redwatch_engine::security::SecureListener;
use std::io::Read;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct HttpState {
    core: Arc<ReceiverCore>,
    max_body: usize,
    request_timeout: std::time::Duration,
}

/// Bounds of one OTLP/HTTP listener (`receivers.otlp.http`).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub max_body_size: usize,
    pub max_connections: usize,
    pub request_timeout: std::time::Duration,
}

/// The OTLP/HTTP routes.
pub fn router(core: Arc<ReceiverCore>, limits: HttpLimits) -> Router {
    let (nf, na) = (core.clone(), core.clone());
    Router::new()
        .route("/v1/traces", post(traces))
        .route("/v1/metrics", post(metrics))
        .fallback(move || async move {
            nf.reject_unrouted("not_found");
            error_response(
                Encoding::Json,
                StatusCode::NOT_FOUND,
                "no such endpoint: OTLP/HTTP accepts POST /v1/traces and POST /v1/metrics",
            )
        })
        .method_not_allowed_fallback(move || async move {
            na.reject_unrouted("method_not_allowed");
            let mut r = error_response(
                Encoding::Json,
                StatusCode::METHOD_NOT_ALLOWED,
                "OTLP/HTTP export endpoints accept POST only",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            r
        })
        .with_state(HttpState {
            core,
            max_body: limits.max_body_size,
            request_timeout: limits.request_timeout,
        })
}

/// Serves OTLP/HTTP on `listener` until `cancel` fires.
pub async fn serve(
    listener: SecureListener,
    core: Arc<ReceiverCore>,
    limits: HttpLimits,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let app = router(core, limits).layer(listener.auth_layer());
    let listener = super::conn_limit::LimitedIncoming::new(listener, limits.max_connections);
    axum::serve(listener, app)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
}

async fn traces(State(st): State<HttpState>, req: Request) -> Response {
    handle(st, Signal::Traces, req).await
}

async fn metrics(State(st): State<HttpState>, req: Request) -> Response {
    handle(st, Signal::Metrics, req).await
}

/// A refusal: HTTP status, counter reason, message.
struct Refusal(StatusCode, &'static str, String);

fn media_type(headers: &HeaderMap) -> Option<Encoding> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = ct.split(';').next()?.trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
        "application/json" => Some(Encoding::Json),
        _ => None,
    }
}

/// Decompresses gzip, refusing output larger than `limit` (a gzip bomb stops at the limit).
pub fn gunzip_limited(data: &[u8], limit: usize) -> Result<Vec<u8>, GunzipError> {
    inflate_limited(flate2::read::GzDecoder::new(data), limit, &mut |_| Ok(()))
}

/// Decompresses zstd, refusing output larger than `limit`.
pub fn unzstd_limited(data: &[u8], limit: usize) -> Result<Vec<u8>, GunzipError> {
    let dec = zstd::stream::read::Decoder::new(data)
        .map_err(|e| GunzipError::Invalid(format!("zstd: {e}")))?;
    inflate_limited(dec, limit, &mut |_| Ok(()))
}

/// Reads a decompressing reader to its end in chunks, calling `account` with each chunk's size
/// before the output grows (the memory limiter), refusing output larger than `limit`.
fn inflate_limited(
    dec: impl Read,
    limit: usize,
    account: &mut dyn FnMut(usize) -> Result<(), GunzipError>,
) -> Result<Vec<u8>, GunzipError> {
    const CHUNK: usize = 256 << 10;
    let mut out = Vec::new();
    let mut dec = dec.take(limit as u64 + 1);
    loop {
        let before = out.len();
        account(CHUNK)?;
        out.reserve_exact(CHUNK);
        let n = (&mut dec)
            .take(CHUNK as u64)
            .read_to_end(&mut out)
            .map_err(|e| GunzipError::Invalid(e.to_string()))?;
        if out.len() > limit {
            return Err(GunzipError::TooLarge);
        }
        if n == 0 || out.len() == before {
            return Ok(out);
        }
    }
}

/// Why a gzip body could not be inflated.
#[derive(Debug, thiserror::Error)]
pub enum GunzipError {
    #[error("invalid gzip data: {0}")]
    Invalid(String),
    #[error("decompressed body exceeds the size limit")]
    TooLarge,
    #[error("{0}")]
    Memory(Backpressure),
}

/// Reads the body chunk by chunk, accounting each with the memory limiter, within
/// `max_body` bytes.
async fn read_raw(
    st: &HttpState,
    signal: Signal,
    body: Body,
    reservation: &mut Reservation,
) -> Result<Bytes, Refusal> {
    use http_body_util::BodyExt;
    let too_large = |what: &str| {
        Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "request body larger than {} bytes (receivers.otlp.http.max_body_size){what}",
                st.max_body
            ),
        )
    };
    let mut body = body;
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            Refusal(
                StatusCode::BAD_REQUEST,
                "malformed",
                format!("reading the request body failed: {e}"),
            )
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if buf.len() + data.len() > st.max_body {
            return Err(too_large(""));
        }
        st.core
            .account(signal, reservation, data.len())
            .map_err(memory_refusal)?;
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

/// A refusal for memory backpressure (already counted by the receiver).
fn memory_refusal(bp: Backpressure) -> Refusal {
    let msg = match bp {
        Backpressure::Memory(m) => super::memory_message(m),
        other => other.to_string(),
    };
    Refusal(StatusCode::TOO_MANY_REQUESTS, "", msg)
}

async fn read_body(
    st: &HttpState,
    signal: Signal,
    headers: &HeaderMap,
    body: Body,
    reservation: &mut Reservation,
) -> Result<Bytes, Refusal> {
    let raw = match tokio::time::timeout(
        st.request_timeout,
        read_raw(st, signal, body, reservation),
    )
    .await
    {
        Ok(r) => r?,
        Err(_) => {
            return Err(Refusal(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!(
                    "the request body was not received within {:?} (receivers.otlp.http.request_timeout)",
                    st.request_timeout
                ),
            ))
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let core = st.core.clone();
    let mut account = |n: usize| {
        core.account(signal, reservation, n)
            .map_err(GunzipError::Memory)
    };
    let inflated = match encoding.as_deref() {
        None | Some("") | Some("identity") => return Ok(raw),
        Some("gzip") | Some("x-gzip") => inflate_limited(
            flate2::read::GzDecoder::new(&raw[..]),
            st.max_body,
            &mut account,
        ),
        Some("zstd") => zstd::stream::read::Decoder::new(&raw[..])
            .map_err(|e| GunzipError::Invalid(format!("zstd: {e}")))
            .and_then(|d| inflate_limited(d, st.max_body, &mut account)),
        Some(other) => {
            return Err(Refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "bad_encoding",
                format!("unsupported Content-Encoding `{other}`: use gzip, zstd or none"),
            ))
        }
    };
    match inflated {
        Ok(v) => Ok(Bytes::from(v)),
        Err(GunzipError::TooLarge) => Err(Refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "decompressed body larger than {} bytes (receivers.otlp.http.max_body_size)",
                st.max_body
            ),
        )),
        Err(GunzipError::Memory(bp)) => Err(memory_refusal(bp)),
        Err(e) => Err(Refusal(
            StatusCode::BAD_REQUEST,
            "bad_encoding",
            e.to_string(),
        )),
    }
}

async fn handle(st: HttpState, signal: Signal, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some(enc) = media_type(&parts.headers) else {
        st.core.reject_request(signal, "unsupported_media_type");
        let got = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none");
        return error_response(
            Encoding::Json,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!(
                "unsupported Content-Type `{got}`: use application/x-protobuf or application/json"
            ),
        );
    };
    let mut reservation = match st.core.admit(signal) {
        Ok(r) => r,
        Err(bp) => return backpressure_response(enc, &bp),
    };
    let body = match read_body(&st, signal, &parts.headers, body, &mut reservation).await {
        Ok(b) => b,
        Err(Refusal(code, reason, msg)) => {
            // An empty reason: counted where it was refused (memory).
            if !reason.is_empty() {
                st.core.reject_request(signal, reason);
            }
            let mut r = error_response(enc, code, &msg);
            if code == StatusCode::TOO_MANY_REQUESTS {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            return r;
        }
    };
    let result = match signal {
        Signal::Traces => st.core.export_traces(body, enc, reservation).await,
        Signal::Metrics => st.core.export_metrics(body, enc, reservation).await,
    };
    match result {
        Ok(ack) => success_response(enc, signal, ack),
        Err(IngestError::Decode(e)) => error_response(enc, StatusCode::BAD_REQUEST, &e.to_string()),
        Err(IngestError::Backpressure(bp)) => backpressure_response(enc, &bp),
    }
}

/// 429 + `Retry-After` (queue full, memory limit) or 503 (shutting down): both retryable.
fn backpressure_response(enc: Encoding, bp: &Backpressure) -> Response {
    let (status, msg) = match bp {
        Backpressure::QueueFull => (
            StatusCode::TOO_MANY_REQUESTS,
            "redwatch is behind: the pipeline queue is full; retry later".to_string(),
        ),
        Backpressure::Memory(m) => (StatusCode::TOO_MANY_REQUESTS, super::memory_message(*m)),
        Backpressure::Closed => (
            StatusCode::SERVICE_UNAVAILABLE,
            "redwatch is shutting down".to_string(),
        ),
    };
    let mut r = error_response(enc, status, &msg);
    if status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

fn content_type(enc: Encoding) -> HeaderValue {
    match enc {
        Encoding::Protobuf => HeaderValue::from_static("application/x-protobuf"),
        Encoding::Json => HeaderValue::from_static("application/json"),
    }
}

fn success_response(enc: Encoding, signal: Signal, ack: Ack) -> Response {
    let body: Vec<u8> = match enc {
        Encoding::Protobuf => match signal {
            Signal::Traces => ExportTraceServiceResponse {
                partial_success: (ack.rejected > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: ack.rejected as i64,
                    error_message: ack.message.clone().unwrap_or_default(),
                }),
            }
            .encode_to_vec(),
            Signal::Metrics => ExportMetricsServiceResponse {
                partial_success: (ack.rejected > 0).then(|| ExportMetricsPartialSuccess {
                    rejected_data_points: ack.rejected as i64,
                    error_message: ack.message.clone().unwrap_or_default(),
                }),
            }
            .encode_to_vec(),
        },
        Encoding::Json => {
            let v = if ack.rejected == 0 {
                serde_json::json!({})
            } else {
                let key = match signal {
                    Signal::Traces => "rejectedSpans",
                    Signal::Metrics => "rejectedDataPoints",
                };
                serde_json::json!({ "partialSuccess": {
                    key: ack.rejected.to_string(),
                    "errorMessage": ack.message.unwrap_or_default(),
                }})
            };
            v.to_string().into_bytes()
        }
    };
    ([(header::CONTENT_TYPE, content_type(enc))], body).into_response()
}

/// `google.rpc.Status` code for an HTTP status (gRPC code numbers).
fn rpc_code(status: StatusCode) -> i32 {
    match status {
        StatusCode::BAD_REQUEST => 3,            // INVALID_ARGUMENT
        StatusCode::PAYLOAD_TOO_LARGE => 8,      // RESOURCE_EXHAUSTED
        StatusCode::TOO_MANY_REQUESTS => 8,      // RESOURCE_EXHAUSTED
        StatusCode::REQUEST_TIMEOUT => 4,        // DEADLINE_EXCEEDED
        StatusCode::UNSUPPORTED_MEDIA_TYPE => 3, // INVALID_ARGUMENT
        StatusCode::SERVICE_UNAVAILABLE => 14,   // UNAVAILABLE
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => 12, // UNIMPLEMENTED
        _ => 2,                                  // UNKNOWN
    }
}

/// An error answer carrying a `google.rpc.Status` in the request's encoding.
pub fn error_response(enc: Encoding, status: StatusCode, message: &str) -> Response {
    let code = rpc_code(status);
    let body = match enc {
        Encoding::Protobuf => {
            let mut buf = Vec::with_capacity(message.len() + 8);
            prost::encoding::int32::encode(1, &code, &mut buf);
            prost::encoding::string::encode(2, &message.to_string(), &mut buf);
            buf
        }
        Encoding::Json => serde_json::json!({ "code": code, "message": message })
            .to_string()
            .into_bytes(),
    };
    (status, [(header::CONTENT_TYPE, content_type(enc))], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gunzip_stops_at_the_limit() {
        let bomb = gz(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 64 << 10);
        assert!(matches!(
            gunzip_limited(&bomb, 1 << 20),
            Err(GunzipError::TooLarge)
        ));
        assert_eq!(gunzip_limited(&gz(b"hello"), 5).unwrap(), b"hello");
        assert!(matches!(
            gunzip_limited(b"not gzip", 100),
            Err(GunzipError::Invalid(_))
        ));
    }

    #[test]
    fn media_types_are_parsed_with_parameters() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert_eq!(media_type(&h), Some(Encoding::Json));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(media_type(&h), None);
    }
}
