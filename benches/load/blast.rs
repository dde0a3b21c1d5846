//! The OTLP/gRPC load client: keeps `concurrency` export requests in flight, each a
//! pre-encoded `ExportTraceServiceRequest` sent as raw bytes, and counts what the server
//! acknowledged, by phase (warmup, measured window).
//!
//! Plain requests go through tonic with redwatch's pass-through `RawCodec` (no protobuf encoding
//! on the client). Gzip requests are compressed once, up front, and framed by hand (5-byte gRPC
//! prefix with the compressed flag, `grpc-encoding: gzip`), because tonic would compress every
//! request again on the client's core. Plain payloads have their timestamps moved to the present
//! just before sending, so the server's windows advance and close as in production; gzip payloads
//! keep the times they were generated with.

use crate::payload::PayloadSet;
use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use redwatch_connectors::otlp::grpc::RawCodec;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tower::Service;

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// How to load the server.
#[derive(Debug, Clone)]
pub struct BlastPlan {
    pub endpoint: String,
    pub concurrency: usize,
    /// HTTP/2 connections; 0 = one per in-flight request.
    pub connections: usize,
    pub warmup: Duration,
    pub window: Duration,
    pub request_timeout: Duration,
    /// Spans per second over all workers; 0 = as fast as the server answers.
    pub rate: f64,
    pub gzip: bool,
    /// Scale each span's duration by a fresh pseudo-random factor per request (state mode: a
    /// cycled payload set would otherwise show each series the same ~20 durations forever).
    pub fresh_durations: bool,
    /// TLS to an `https://` endpoint (`--tls`).
    pub tls: Option<redwatch::config::TlsClientConfig>,
    /// Sent as `authorization: Bearer <token>` with every request (`--tls`).
    pub token: Option<String>,
}

/// What one phase saw, by completion time.
#[derive(Debug, Clone, Default)]
pub struct PhaseStats {
    pub ok: u64,
    pub spans: u64,
    pub rejected_spans: u64,
    pub bytes: u64,
    /// Failed requests by gRPC code.
    pub errors: Vec<(Code, u64)>,
    pub first_error: Option<String>,
    pub latencies_us: Vec<u32>,
}

impl PhaseStats {
    fn error(&mut self, s: &Status) {
        match self.errors.iter_mut().find(|(c, _)| *c == s.code()) {
            Some((_, n)) => *n += 1,
            None => self.errors.push((s.code(), 1)),
        }
        if self.first_error.is_none() {
            self.first_error = Some(format!("{:?}: {}", s.code(), s.message()));
        }
    }

    fn merge(&mut self, o: PhaseStats) {
        self.ok += o.ok;
        self.spans += o.spans;
        self.rejected_spans += o.rejected_spans;
        self.bytes += o.bytes;
        for (c, n) in o.errors {
            match self.errors.iter_mut().find(|(k, _)| *k == c) {
                Some((_, m)) => *m += n,
                None => self.errors.push((c, n)),
            }
        }
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.latencies_us.extend(o.latencies_us);
    }

    /// Counts one answered request of `spans` spans and `len` bytes; false if it failed.
    fn record(
        &mut self,
        res: Result<Bytes, Status>,
        spans: usize,
        len: usize,
        latency: Duration,
    ) -> bool {
        match res.and_then(|b| {
            ExportTraceServiceResponse::decode(b)
                .map_err(|e| Status::internal(format!("undecodable response: {e}")))
        }) {
            Ok(resp) => {
                let rejected = resp
                    .partial_success
                    .map(|p| p.rejected_spans.max(0) as u64)
                    .unwrap_or(0);
                self.ok += 1;
                self.spans += (spans as u64).saturating_sub(rejected);
                self.rejected_spans += rejected;
                self.bytes += len as u64;
                self.latencies_us
                    .push(latency.as_micros().min(u32::MAX as u128) as u32);
                true
            }
            Err(s) => {
                self.error(&s);
                false
            }
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.iter().map(|(_, n)| n).sum()
    }

    pub fn error_codes(&self) -> String {
        if self.errors.is_empty() {
            return "-".to_string();
        }
        let v: Vec<String> = self
            .errors
            .iter()
            .map(|(c, n)| format!("{c:?}:{n}"))
            .collect();
        v.join(",")
    }

    /// Latency quantile in milliseconds (sorts the samples the first time).
    pub fn latency_ms(&mut self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        if !self.latencies_us.is_sorted() {
            self.latencies_us.sort_unstable();
        }
        let i = ((self.latencies_us.len() - 1) as f64 * q).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// The bodies to send, as prepared before the run.
enum Bodies {
    /// Timestamps are moved to the present per request (the set's `now_ns` is their origin).
    Shifted { set: PayloadSet },
    /// Gzip-compressed once; (compressed bytes, spans).
    Gzip(Vec<(Bytes, usize)>),
}

/// The phase boundaries.
#[derive(Clone, Copy)]
pub struct Timing {
    pub window_start: Instant,
    pub window_end: Instant,
}

impl Bodies {
    /// The payloads as sent: gzip-compressed once up front, or shifted to now per request.
    fn new(gzip: bool, set: PayloadSet) -> Result<Bodies, String> {
        if !gzip {
            return Ok(Bodies::Shifted { set });
        }
        let mut v = Vec::with_capacity(set.payloads.len());
        for p in &set.payloads {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            std::io::Write::write_all(&mut enc, &p.bytes).map_err(|e| e.to_string())?;
            v.push((
                Bytes::from(enc.finish().map_err(|e| e.to_string())?),
                p.spans,
            ));
        }
        Ok(Bodies::Gzip(v))
    }
}

/// Opens the plan's HTTP/2 connections (one per request in flight unless `connections` says).
async fn connect(plan: &BlastPlan) -> Result<Vec<Channel>, String> {
    let n_conn = if plan.connections == 0 {
        plan.concurrency
    } else {
        plan.connections
    };
    let mut channels = Vec::with_capacity(n_conn);
    for _ in 0..n_conn.max(1) {
        let ep = Endpoint::from_shared(plan.endpoint.clone())
            .map_err(|e| e.to_string())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5));
        let channel = match &plan.tls {
            Some(tls) => {
                use redwatch_engine::security::{client_config, connector::TlsConnector, Alpn};
                let config = client_config(tls, Alpn::H2).map_err(|e| e.to_string())?;
                ep.connect_with_connector(TlsConnector::new(config)).await
            }
            None => ep.connect().await,
        };
        channels.push(channel.map_err(|e| format!("connect {}: {e}", plan.endpoint))?);
    }
    Ok(channels)
}

/// Runs the plan against the server; returns (warmup, window) stats. `timing` is sent as soon as
/// the connections are up and the phase clock starts.
pub async fn run(
    plan: &BlastPlan,
    set: PayloadSet,
    timing_tx: tokio::sync::oneshot::Sender<Timing>,
) -> Result<(PhaseStats, PhaseStats), String> {
    let bodies = Arc::new(Bodies::new(plan.gzip, set)?);
    let channels = connect(plan).await?;
    let uri: tonic::codegen::http::Uri =
        format!("{}{EXPORT_PATH}", plan.endpoint.trim_end_matches('/'))
            .parse()
            .map_err(|e| format!("bad endpoint: {e}"))?;
    let start = Instant::now();
    let timing = Timing {
        window_start: start + plan.warmup,
        window_end: start + plan.warmup + plan.window,
    };
    let _ = timing_tx.send(timing);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..plan.concurrency.max(1) {
        let worker = Worker {
            channel: channels[w % channels.len()].clone(),
            uri: uri.clone(),
            bodies: bodies.clone(),
            next: next.clone(),
            plan: plan.clone(),
            start,
            timing,
        };
        tasks.push(tokio::spawn(worker.run()));
    }
    let mut warm = PhaseStats::default();
    let mut window = PhaseStats::default();
    for t in tasks {
        let (a, b) = t.await.map_err(|e| format!("worker failed: {e}"))?;
        warm.merge(a);
        window.merge(b);
    }
    Ok((warm, window))
}

struct Worker {
    channel: Channel,
    uri: tonic::codegen::http::Uri,
    bodies: Arc<Bodies>,
    next: Arc<AtomicU64>,
    plan: BlastPlan,
    start: Instant,
    timing: Timing,
}

impl Worker {
    async fn run(mut self) -> (PhaseStats, PhaseStats) {
        let mut warm = PhaseStats::default();
        let mut window = PhaseStats::default();
        let generated_at = match &*self.bodies {
            Bodies::Shifted { set } => set.now_ns,
            Bodies::Gzip(_) => 0,
        };
        let count = match &*self.bodies {
            Bodies::Shifted { set } => set.payloads.len(),
            Bodies::Gzip(v) => v.len(),
        } as u64;
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        let authorization: Option<tonic::metadata::AsciiMetadataValue> = self
            .plan
            .token
            .as_ref()
            .and_then(|t| format!("Bearer {t}").parse().ok());
        loop {
            let k = self.next.fetch_add(1, Ordering::Relaxed);
            let i = (k % count) as usize;
            let (spans, len) = match &*self.bodies {
                Bodies::Shifted { set } => (set.payloads[i].spans, set.payloads[i].bytes.len()),
                Bodies::Gzip(v) => (v[i].1, v[i].0.len()),
            };
            if self.plan.rate > 0.0 {
                // Request k is due when the schedule has reached its first span.
                let due =
                    self.start + Duration::from_secs_f64(k as f64 * spans as f64 / self.plan.rate);
                tokio::time::sleep_until(due).await;
            }
            if Instant::now() >= self.timing.window_end {
                break;
            }
            let sent = Instant::now();
            let res = match &*self.bodies {
                Bodies::Shifted { set } => {
                    self.send_shifted(&mut grpc, set, (i, k), generated_at, authorization.as_ref())
                        .await
                }
                Bodies::Gzip(v) => {
                    let body = v[i].0.clone();
                    match tokio::time::timeout(
                        self.plan.request_timeout,
                        send_gzip(&mut self.channel, &self.uri, body, authorization.as_ref()),
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(Status::deadline_exceeded("client timeout")),
                    }
                }
            };
            let done = Instant::now();
            let phase = if done < self.timing.window_start {
                &mut warm
            } else if done < self.timing.window_end {
                &mut window
            } else {
                // Completed after the window: counted nowhere (the window is a rate).
                continue;
            };
            if !phase.record(res, spans, len, done.duration_since(sent)) {
                // A refusing or dead server: back off a little instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        (warm, window)
    }

    /// One export of payload `i` with its timestamps moved to now (request `k`).
    async fn send_shifted(
        &self,
        grpc: &mut tonic::client::Grpc<Channel>,
        set: &PayloadSet,
        (i, k): (usize, u64),
        generated_at: u64,
        authorization: Option<&tonic::metadata::AsciiMetadataValue>,
    ) -> Result<Bytes, Status> {
        let delta = redwatch_engine::time::wall_clock().saturating_sub(generated_at);
        let body = if self.plan.fresh_durations {
            set.payloads[i].shifted_fresh_durations(delta, k)
        } else {
            set.payloads[i].shifted(delta)
        };
        match tokio::time::timeout(self.plan.request_timeout, async {
            grpc.ready()
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?;
            let mut req = tonic::Request::new(body);
            if let Some(auth) = authorization {
                req.metadata_mut().insert("authorization", auth.clone());
            }
            grpc.unary::<Bytes, Bytes, RawCodec>(
                req,
                PathAndQuery::from_static(EXPORT_PATH),
                RawCodec,
            )
            .await
            .map(|r| r.into_inner())
        })
        .await
        {
            Ok(r) => r,
            Err(_) => Err(Status::deadline_exceeded("client timeout")),
        }
    }
}

/// One gzip-compressed export, framed by hand; returns the response message bytes.
async fn send_gzip(
    channel: &mut Channel,
    uri: &tonic::codegen::http::Uri,
    gz: Bytes,
    authorization: Option<&tonic::metadata::AsciiMetadataValue>,
) -> Result<Bytes, Status> {
    let mut framed = BytesMut::with_capacity(gz.len() + 5);
    framed.put_u8(1);
    framed.put_u32(gz.len() as u32);
    framed.extend_from_slice(&gz);
    let mut req = http::Request::builder();
    if let Some(a) = authorization {
        req = req.header("authorization", a.as_bytes());
    }
    let req = req
        .method(http::Method::POST)
        .uri(uri.clone())
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-encoding", "gzip")
        .body(tonic::body::Body::new(http_body_util::Full::new(
            framed.freeze(),
        )))
        .map_err(|e| Status::internal(e.to_string()))?;
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let resp = channel
        .call(req)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let (parts, body) = resp.into_parts();
    if let Some(s) = Status::from_header_map(&parts.headers) {
        if s.code() != Code::Ok {
            return Err(s);
        }
    }
    let collected = body
        .collect()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    if let Some(s) = collected.trailers().and_then(Status::from_header_map) {
        if s.code() != Code::Ok {
            return Err(s);
        }
    }
    let data = collected.to_bytes();
    if data.len() < 5 || data[0] != 0 {
        return Err(Status::internal("unexpected response framing"));
    }
    Ok(data.slice(5..))
}
