//! OTLP exporter: sends the spans redwatch derives (anomalies, predictions) to an OTLP backend
//! (Jaeger, a Collector) over gRPC or HTTP/protobuf.
//!
//! Owns a bounded queue, batching, retries with backoff and its self-metrics. Producers (the
//! operator task) only ever `try_send`: when the queue is full the record is dropped and counted,
//! so a slow or absent backend never stalls the pipeline. It must not build or interpret the
//! records it carries — that is the producers' job.
//!
//! Self-metrics (`exporter="otlp"`, `signal="traces"`): `redwatch_export_sent_total` (spans
//! accepted by the backend), `redwatch_export_failed_total{reason}` (spans given up on:
//! `rejected` by partial success, `retries_exhausted`, `permanent`, `shutdown`),
//! `redwatch_export_dropped_total` (queue full), `redwatch_export_retries_total` (attempts that
//! will be retried) and `redwatch_export_queue_depth`.

mod transport;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use redwatch_engine::config::OtlpExporterConfig;
use redwatch_engine::telemetry::{Counter, Gauge, Registry};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
pub use transport::{SendError, Transport};

/// Longest time the exporter keeps flushing after cancellation.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The endpoint is not a usable URL (not retryable: fix the config).
    #[error("exporters.otlp.endpoint `{0}` is invalid: {1}")]
    InvalidEndpoint(String, String),
    /// A configured header cannot be sent (not retryable: fix the config).
    #[error("exporters.otlp.headers.{0} cannot be sent: {1}")]
    InvalidHeader(String, String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// The exporter's self-metrics.
#[derive(Debug, Clone)]
struct Metrics {
    sent: Arc<Counter>,
    dropped: Arc<Counter>,
    retries: Arc<Counter>,
    depth: Arc<Gauge>,
    registry: Arc<Registry>,
}

const LABELS: [(&str, &str); 2] = [("exporter", "otlp"), ("signal", "traces")];

impl Metrics {
    fn new(registry: &Arc<Registry>) -> Self {
        Metrics {
            sent: registry.counter(
                "redwatch_export_sent_total",
                "Records accepted by the export destination.",
                &LABELS,
            ),
            dropped: registry.counter(
                "redwatch_export_dropped_total",
                "Records dropped because the export queue was full.",
                &LABELS,
            ),
            retries: registry.counter(
                "redwatch_export_retries_total",
                "Export attempts that failed and will be retried.",
                &LABELS,
            ),
            depth: registry.gauge(
                "redwatch_export_queue_depth",
                "Records waiting in the export queue.",
                &LABELS,
            ),
            registry: registry.clone(),
        }
    }

    fn failed(&self, reason: &str, n: u64) {
        self.registry
            .counter(
                "redwatch_export_failed_total",
                "Records the exporter gave up on, by reason.",
                &[LABELS[0], LABELS[1], ("reason", reason)],
            )
            .add(n);
    }
}

/// The producer side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct OtlpExportHandle {
    tx: mpsc::Sender<ResourceSpans>,
    metrics: Metrics,
    capacity: usize,
}

impl OtlpExportHandle {
    /// Queues `spans` for export; when the queue is full (or the exporter stopped) they are
    /// dropped and counted. Returns whether they were queued.
    pub fn export_spans(&self, spans: ResourceSpans) -> bool {
        let n = span_count(&spans);
        match self.tx.try_send(spans) {
            Ok(()) => {
                self.metrics
                    .depth
                    .set((self.capacity - self.tx.capacity()) as f64);
                true
            }
            Err(_) => {
                self.metrics.dropped.add(n);
                false
            }
        }
    }
}

fn span_count(rs: &ResourceSpans) -> u64 {
    rs.scope_spans.iter().map(|s| s.spans.len() as u64).sum()
}

/// Builds the exporter: the handle producers enqueue to, and the task that drains the queue
/// (run it until `cancel`; it then flushes what is queued for at most [`SHUTDOWN_FLUSH`]).
pub fn start(
    cfg: &OtlpExporterConfig,
    registry: &Arc<Registry>,
    cancel: CancellationToken,
) -> Result<(OtlpExportHandle, impl Future<Output = ()> + Send + 'static), ExportError> {
    let transport = Transport::new(cfg)?;
    Ok(start_with(cfg, transport, registry, cancel))
}

/// [`start`] with a given transport.
pub fn start_with(
    cfg: &OtlpExporterConfig,
    transport: Transport,
    registry: &Arc<Registry>,
    cancel: CancellationToken,
) -> (OtlpExportHandle, impl Future<Output = ()> + Send + 'static) {
    let capacity = cfg.queue_size.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let metrics = Metrics::new(registry);
    // Register the failure family up front, so it is visible before the first failure.
    metrics.failed("retries_exhausted", 0);
    let handle = OtlpExportHandle {
        tx,
        metrics: metrics.clone(),
        capacity,
    };
    let worker = Worker {
        rx,
        transport,
        metrics,
        capacity,
        max_batch: cfg.batch.max_size.max(1),
        batch_timeout: cfg.batch.timeout,
        backoff: Backoff {
            initial: cfg.retry.initial_interval,
            max: cfg.retry.max_interval,
            max_elapsed: cfg.retry.max_elapsed_time,
        },
        cancel,
        seed: seed(),
    };
    (handle, worker.run())
}

/// Exponential backoff bounds.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    initial: Duration,
    max: Duration,
    max_elapsed: Duration,
}

struct Worker {
    rx: mpsc::Receiver<ResourceSpans>,
    transport: Transport,
    metrics: Metrics,
    capacity: usize,
    max_batch: usize,
    batch_timeout: Duration,
    backoff: Backoff,
    cancel: CancellationToken,
    seed: u64,
}

/// Whether a send ended normally or was cut short by shutdown.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Done,
    Interrupted,
}

impl Worker {
    async fn run(mut self) {
        let mut batch: Vec<ResourceSpans> = Vec::new();
        let mut spans = 0usize;
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.cancel.cancelled() => break,
                item = self.rx.recv() => {
                    let Some(item) = item else { break };
                    self.update_depth();
                    spans += span_count(&item) as usize;
                    batch.push(item);
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.batch_timeout);
                    if spans >= self.max_batch {
                        deadline = None;
                        spans = 0;
                        if self.send(std::mem::take(&mut batch), None).await == Sent::Interrupted {
                            break;
                        }
                    }
                }
                _ = timer => {
                    deadline = None;
                    spans = 0;
                    if self.send(std::mem::take(&mut batch), None).await == Sent::Interrupted {
                        break;
                    }
                }
            }
        }
        self.flush_on_shutdown(batch).await;
    }

    /// Sends what is batched and queued, for at most [`SHUTDOWN_FLUSH`]; what is left is
    /// counted as failed (`shutdown`).
    async fn flush_on_shutdown(&mut self, mut batch: Vec<ResourceSpans>) {
        self.rx.close();
        let until = Instant::now() + SHUTDOWN_FLUSH;
        while let Ok(item) = self.rx.try_recv() {
            batch.push(item);
        }
        self.metrics.depth.set(0.0);
        let mut left = batch.into_iter().peekable();
        while left.peek().is_some() {
            let mut chunk = Vec::new();
            let mut n = 0usize;
            while n < self.max_batch {
                match left.next() {
                    Some(rs) => {
                        n += span_count(&rs) as usize;
                        chunk.push(rs);
                    }
                    None => break,
                }
            }
            if Instant::now() >= until {
                let lost: u64 = chunk.iter().map(span_count).sum::<u64>()
                    + left.by_ref().map(|rs| span_count(&rs)).sum::<u64>();
                self.metrics.failed("shutdown", lost);
                return;
            }
            self.send(chunk, Some(until)).await;
        }
    }

    fn update_depth(&self) {
        let queued = self.capacity - self.rx.capacity().min(self.capacity);
        self.metrics.depth.set(queued as f64);
    }

    /// Sends one batch, retrying retryable failures with backoff until it is accepted, fails
    /// permanently, runs out of `max_elapsed_time` or `until` passes.
    async fn send(&mut self, batch: Vec<ResourceSpans>, until: Option<Instant>) -> Sent {
        if batch.is_empty() {
            return Sent::Done;
        }
        let n: u64 = batch.iter().map(span_count).sum();
        let req = ExportTraceServiceRequest {
            resource_spans: merge(batch),
        };
        let started = Instant::now();
        let mut interval = self.backoff.initial;
        loop {
            let attempt = match until {
                Some(u) => {
                    let left = u.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(left, self.transport.send(&req)).await {
                        Ok(r) => r,
                        Err(_) => {
                            self.metrics.failed("shutdown", n);
                            return Sent::Interrupted;
                        }
                    }
                }
                None => self.transport.send(&req).await,
            };
            match attempt {
                Ok(rejected) => {
                    let rejected = (rejected.max(0) as u64).min(n);
                    self.metrics.sent.add(n - rejected);
                    if rejected > 0 {
                        tracing::warn!(
                            "OTLP export: the destination rejected {rejected} of {n} spans"
                        );
                        self.metrics.failed("rejected", rejected);
                    }
                    return Sent::Done;
                }
                Err(e) if e.retryable() => {
                    let wait = e
                        .retry_after()
                        .unwrap_or_else(|| jitter(interval, &mut self.seed))
                        .min(self.backoff.max);
                    let elapsed = started.elapsed();
                    let out_of_time = elapsed + wait > self.backoff.max_elapsed
                        || until.is_some_and(|u| Instant::now() + wait > u);
                    if out_of_time {
                        tracing::warn!("OTLP export of {n} spans failed, giving up: {e}");
                        self.metrics.failed("retries_exhausted", n);
                        return Sent::Done;
                    }
                    tracing::debug!("OTLP export failed, retrying in {wait:?}: {e}");
                    self.metrics.retries.inc();
                    if until.is_none() {
                        tokio::select! {
                            _ = self.cancel.cancelled() => {
                                // Shutdown: one more attempt inside the flush budget.
                                return self.retry_once_on_shutdown(req, n).await;
                            }
                            _ = tokio::time::sleep(wait) => {}
                        }
                    } else {
                        tokio::time::sleep(wait).await;
                    }
                    interval = (interval * 2).min(self.backoff.max);
                }
                Err(e) => {
                    tracing::warn!("OTLP export of {n} spans failed permanently: {e}");
                    self.metrics.failed("permanent", n);
                    return Sent::Done;
                }
            }
        }
    }

    async fn retry_once_on_shutdown(&mut self, req: ExportTraceServiceRequest, n: u64) -> Sent {
        match tokio::time::timeout(SHUTDOWN_FLUSH, self.transport.send(&req)).await {
            Ok(Ok(rejected)) => {
                let rejected = (rejected.max(0) as u64).min(n);
                self.metrics.sent.add(n - rejected);
                self.metrics.failed("rejected", rejected);
            }
            _ => self.metrics.failed("shutdown", n),
        }
        Sent::Interrupted
    }
}

/// Merges batch items with the same resource and scope, so a request carries each resource
/// once.
fn merge(batch: Vec<ResourceSpans>) -> Vec<ResourceSpans> {
    let mut out: Vec<ResourceSpans> = Vec::new();
    for rs in batch {
        match out
            .iter_mut()
            .find(|o| o.resource == rs.resource && o.schema_url == rs.schema_url)
        {
            Some(o) => {
                for ss in rs.scope_spans {
                    match o
                        .scope_spans
                        .iter_mut()
                        .find(|x| x.scope == ss.scope && x.schema_url == ss.schema_url)
                    {
                        Some(x) => x.spans.extend(ss.spans),
                        None => o.scope_spans.push(ss),
                    }
                }
            }
            None => out.push(rs),
        }
    }
    out
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t | 1
}

/// `d` randomised by ±50% (the OpenTelemetry SDKs' randomization factor), so many exporters
/// that failed together do not retry together.
fn jitter(d: Duration, state: &mut u64) -> Duration {
    // xorshift64*
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
    let unit = r as f64 / (1u64 << 53) as f64;
    d.mul_f64(0.5 + unit)
}

#[cfg(test)]
mod tests;
