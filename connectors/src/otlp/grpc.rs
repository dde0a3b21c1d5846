//! OTLP/gRPC receiver: `TraceService/Export` and `MetricsService/Export` on one listener.
//!
//! The request body reaches the decoder as raw `Bytes` through a pass-through codec (no prost
//! object tree). tonic enforces `max_message_size` before and after gzip decompression; its
//! "too large" answers are rewritten to `RESOURCE_EXHAUSTED` and counted here.
//!
//! Memory: a request is admitted only below the memory limiter's soft limit, and its body is
//! accounted frame by frame as it arrives ([`MeteredBody`]); past the hard limit the read stops
//! with `RESOURCE_EXHAUSTED` + `RetryInfo`. Streams per connection, connections and request time
//! are bounded by config. gzip and zstd are accepted (the Collector sends either).

use super::{Ack, Encoding, IngestError, ReceiverCore, Signal};
use bytes::{Buf, BufMut, Bytes};
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
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio_util::sync::CancellationToken;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{NamedService, UnaryService};
use tonic::{Code, Status};

/// Passes message bytes through untouched, in both directions.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// Encoder half of [`RawCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawEncoder;

/// Decoder half of [`RawCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // Splits the buffer: no copy.
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// `google.rpc.Status` (google/rpc/status.proto), the payload of `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// `google.rpc.RetryInfo` (google/rpc/error_details.proto).
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<prost_types::Duration>,
}

/// How long a client told to back off should wait before it retries.
const RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// `RESOURCE_EXHAUSTED` with a `RetryInfo` detail: the OTLP spec makes `RESOURCE_EXHAUSTED`
/// retryable only when the server says when to retry, and the Collector's exporter drops the
/// data otherwise. (Two message types written out here instead of a dependency on tonic-types.)
/// The same `RetryInfo` also rides alone in the `google.rpc.retryinfo-bin` trailer, where the
/// OpenTelemetry Python SDK's exporter looks for it.
pub fn retryable_resource_exhausted(message: &str) -> Status {
    let code = tonic::Code::ResourceExhausted;
    let retry_info = RetryInfo {
        retry_delay: Some(prost_types::Duration {
            seconds: RETRY_DELAY.as_secs() as i64,
            nanos: RETRY_DELAY.subsec_nanos() as i32,
        }),
    }
    .encode_to_vec();
    let details = RpcStatus {
        code: code as i32,
        message: message.to_string(),
        details: vec![prost_types::Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: retry_info.clone(),
        }],
    };
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert_bin(
        "google.rpc.retryinfo-bin",
        tonic::metadata::MetadataValue::from_bytes(&retry_info),
    );
    Status::with_details_and_metadata(
        code,
        message,
        Bytes::from(details.encode_to_vec()),
        metadata,
    )
}

fn status_of(e: &IngestError) -> Status {
    match e {
        IngestError::Decode(d) => Status::invalid_argument(d.to_string()),
        IngestError::Backpressure(Backpressure::QueueFull) => retryable_resource_exhausted(
            "redwatch is behind: the pipeline queue is full; retry with backoff",
        ),
        IngestError::Backpressure(Backpressure::Memory(m)) => {
            retryable_resource_exhausted(&super::memory_message(*m))
        }
        IngestError::Backpressure(Backpressure::Closed) => {
            Status::unavailable("redwatch is shutting down")
        }
    }
}

fn trace_response(ack: Ack) -> Bytes {
    let resp = ExportTraceServiceResponse {
        partial_success: (ack.rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: ack.rejected as i64,
            error_message: ack.message.unwrap_or_default(),
        }),
    };
    Bytes::from(resp.encode_to_vec())
}

fn metrics_response(ack: Ack) -> Bytes {
    let resp = ExportMetricsServiceResponse {
        partial_success: (ack.rejected > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: ack.rejected as i64,
            error_message: ack.message.unwrap_or_default(),
        }),
    };
    Bytes::from(resp.encode_to_vec())
}

#[derive(Clone)]
struct ExportMethod {
    core: Arc<ReceiverCore>,
    signal: Signal,
}

impl UnaryService<Bytes> for ExportMethod {
    type Response = Bytes;
    type Future = Pin<Box<dyn Future<Output = Result<tonic::Response<Bytes>, Status>> + Send>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let core = self.core.clone();
        let signal = self.signal;
        Box::pin(async move {
            // The bytes the body accounted while it was read move to this request.
            let mut reservation = request
                .extensions()
                .get::<SharedReservation>()
                .and_then(|s| s.0.lock().ok().and_then(|mut r| r.take()))
                .unwrap_or_else(|| core.handle_memory().empty());
            let body = request.into_inner();
            // The decompressed message, which tonic holds beside what was read.
            if let Err(bp) = core.account(signal, &mut reservation, body.len()) {
                return Err(status_of(&IngestError::Backpressure(bp)));
            }
            let res = match signal {
                Signal::Traces => core
                    .export_traces(body, Encoding::Protobuf, reservation)
                    .await
                    .map(trace_response),
                Signal::Metrics => core
                    .export_metrics(body, Encoding::Protobuf, reservation)
                    .await
                    .map(metrics_response),
            };
            res.map(tonic::Response::new).map_err(|e| status_of(&e))
        })
    }
}

/// One OTLP gRPC service (traces or metrics) over the raw codec.
#[derive(Clone)]
pub struct OtlpGrpcService<const TRACES: bool> {
    core: Arc<ReceiverCore>,
    max_message_size: usize,
}

/// `TraceService`.
pub type TraceGrpcService = OtlpGrpcService<true>;
/// `MetricsService`.
pub type MetricsGrpcService = OtlpGrpcService<false>;

impl NamedService for OtlpGrpcService<true> {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl NamedService for OtlpGrpcService<false> {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}

impl<const TRACES: bool> OtlpGrpcService<TRACES> {
    pub fn new(core: Arc<ReceiverCore>, max_message_size: usize) -> Self {
        OtlpGrpcService {
            core,
            max_message_size,
        }
    }

    fn signal() -> Signal {
        if TRACES {
            Signal::Traces
        } else {
            Signal::Metrics
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;

fn grpc_error_response(code: Code, message: &str) -> http::Response<tonic::body::Body> {
    let mut r = Status::new(code, message).into_http();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    r
}

impl<const TRACES: bool, B> tower::Service<http::Request<B>> for OtlpGrpcService<TRACES>
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let expected = if TRACES {
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        } else {
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
        };
        if req.uri().path() != expected {
            return Box::pin(async {
                Ok(grpc_error_response(Code::Unimplemented, "no such method"))
            });
        }
        let core = self.core.clone();
        let max = self.max_message_size;
        let signal = Self::signal();
        // Admission: above the soft memory limit, refuse before reading anything.
        let reservation = match core.admit(signal) {
            Ok(r) => r,
            Err(bp) => {
                let st = status_of(&IngestError::Backpressure(bp));
                return Box::pin(async move { Ok(grpc_status_response(st)) });
            }
        };
        let shared = SharedReservation(Arc::new(std::sync::Mutex::new(Some(reservation))));
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(shared.clone());
        let req = http::Request::from_parts(
            parts,
            MeteredBody {
                inner: Box::pin(body),
                core: core.clone(),
                signal,
                shared,
            },
        );
        Box::pin(async move {
            let method = ExportMethod {
                core: core.clone(),
                signal,
            };
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Zstd)
                .max_decoding_message_size(max)
                .max_encoding_message_size(usize::MAX);
            let mut resp = grpc.unary(method, req).await;
            count_transport_rejections(&core, Self::signal(), &mut resp);
            Ok(resp)
        })
    }
}

/// A trailers-only gRPC answer carrying `st` (details and metadata included).
fn grpc_status_response(st: Status) -> http::Response<tonic::body::Body> {
    let mut r = st.into_http();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    r
}

/// The reservation of one request, shared by its body (which grows it as frames arrive) and the
/// export method (which takes it over once tonic has read the message).
#[derive(Clone)]
struct SharedReservation(Arc<std::sync::Mutex<Option<Reservation>>>);

/// A request body that accounts every data frame with the memory limiter before tonic buffers
/// it; past the hard limit it fails with `RESOURCE_EXHAUSTED` + `RetryInfo` (counted).
struct MeteredBody<B> {
    inner: Pin<Box<B>>,
    core: Arc<ReceiverCore>,
    signal: Signal,
    shared: SharedReservation,
}

impl<B> http_body::Body for MeteredBody<B>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = B::Data;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.remaining();
                    let accounted = match this.shared.0.lock() {
                        Ok(mut g) => match g.as_mut() {
                            Some(r) => this.core.account(this.signal, r, n),
                            None => Ok(()),
                        },
                        Err(_) => Ok(()),
                    };
                    if let Err(bp) = accounted {
                        let st = status_of(&IngestError::Backpressure(bp));
                        return Poll::Ready(Some(Err(Box::new(st))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// tonic refuses oversized and undecompressable messages before our handler runs: count those
/// and answer "too large" uniformly with `RESOURCE_EXHAUSTED` (what other gRPC stacks send).
fn count_transport_rejections(
    core: &ReceiverCore,
    signal: Signal,
    resp: &mut http::Response<tonic::body::Body>,
) {
    let Some(status) = Status::from_header_map(resp.headers()) else {
        return;
    };
    let msg = status.message();
    let reason = match status.code() {
        Code::OutOfRange if msg.contains("too large") => "too_large",
        Code::ResourceExhausted if msg.starts_with("Error decompressing") => "too_large",
        Code::Internal if msg.starts_with("Error decompressing") => "bad_encoding",
        Code::Cancelled if msg.contains("Timeout") => "timeout",
        _ => return,
    };
    core.reject_request(signal, reason);
    if status.code() == Code::OutOfRange {
        let new =
            Status::resource_exhausted(format!("{msg} (receivers.otlp.grpc.max_message_size)"));
        let _ = new.add_header(resp.headers_mut());
    }
}

/// Bounds of one OTLP/gRPC listener (`receivers.otlp.grpc`).
#[derive(Debug, Clone, Copy)]
pub struct GrpcLimits {
    pub max_message_size: usize,
    pub max_concurrent_streams: u32,
    pub max_connections: usize,
    pub request_timeout: std::time::Duration,
}

/// HTTP/2 receive windows: what a connection may have in flight before our body accounting sees
/// it (docs/design.md, "State and its bounds").
const STREAM_WINDOW: u32 = 256 << 10;
const CONNECTION_WINDOW: u32 = 1 << 20;

/// Serves OTLP/gRPC on `listener` until `cancel` fires.
pub async fn serve(
    listener: SecureListener,
    core: Arc<ReceiverCore>,
    limits: GrpcLimits,
    cancel: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let auth = listener.auth_layer();
    let incoming =
        super::conn_limit::LimitedIncoming::new(listener, limits.max_connections).into_stream();
    let max = limits.max_message_size;
    tonic::transport::Server::builder()
        .max_concurrent_streams(Some(limits.max_concurrent_streams))
        .timeout(limits.request_timeout)
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .layer(auth)
        .add_service(TraceGrpcService::new(core.clone(), max))
        .add_service(MetricsGrpcService::new(core, max))
        .serve_with_incoming_shutdown(incoming, cancel.cancelled_owned())
        .await
}
