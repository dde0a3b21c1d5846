//! OTLP exporter: sends the spans redwatch derives (anomalies, predictions) and its RED metrics
//! to an OTLP backend (Jaeger, a Collector) over gRPC or HTTP/protobuf.
//!
//! Owns a bounded queue per signal (traces, metrics), batching, retries with backoff and its
//! self-metrics. Producers (the operator task) only ever `try_send`: when a queue is full the
//! record is dropped and counted, so a slow or absent backend never stalls the pipeline. It must
//! not build or interpret the records it carries — that is the producers' job ([`red_metrics`]
//! builds the RED metric points, [`signal_spans`] the anomaly and prediction spans).
//!
//! Self-metrics (`exporter="otlp"`, `signal="traces"|"metrics"`): `redwatch_export_sent_total`
//! (spans / data points accepted by the backend), `redwatch_export_failed_total{reason}` (given
//! up on: `rejected` by partial success, `retries_exhausted`, `permanent`, `shutdown`),
//! `redwatch_export_dropped_total` (queue full), `redwatch_export_retries_total` (attempts that
//! will be retried) and `redwatch_export_queue_depth`.

mod coalesce;
pub mod problem_spans;
pub mod red_metrics;
pub mod signal_spans;
mod transport;

use crate::config::OtlpExporterConfig;
use backon::ExponentialBackoff;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{metric, ResourceMetrics};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use redwatch_engine::telemetry::{Counter, Gauge, Registry};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
pub use transport::{Request, SendError, Transport};

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
    /// `exporters.otlp.tls` cannot be put in force (not retryable: fix the config).
    #[error("exporters.otlp.tls: {0}")]
    Tls(#[from] redwatch_engine::security::SecurityError),
}

/// The exporter's self-metrics.
#[derive(Debug, Clone)]
struct Metrics {
    sent: Arc<Counter>,
    dropped: Arc<Counter>,
    retries: Arc<Counter>,
    depth: Arc<Gauge>,
    registry: Arc<Registry>,
    labels: [(&'static str, &'static str); 2],
}

const LABELS: [(&str, &str); 2] = [("exporter", "otlp"), ("signal", "traces")];
/// The labels of the metrics queue's self-metrics.
pub const METRICS_LABELS: [(&str, &str); 2] = [("exporter", "otlp"), ("signal", "metrics")];

impl Metrics {
    fn new(registry: &Arc<Registry>, labels: [(&'static str, &'static str); 2]) -> Self {
        Metrics {
            sent: registry.counter(
                "redwatch_export_sent_total",
                "Records accepted by the export destination.",
                &labels,
            ),
            dropped: registry.counter(
                "redwatch_export_dropped_total",
                "Records dropped because the export queue was full.",
                &labels,
            ),
            retries: registry.counter(
                "redwatch_export_retries_total",
                "Export attempts that failed and will be retried.",
                &labels,
            ),
            depth: registry.gauge(
                "redwatch_export_queue_depth",
                "Records waiting in the export queue.",
                &labels,
            ),
            registry: registry.clone(),
            labels,
        }
    }

    fn failed(&self, reason: &str, n: u64) {
        self.registry
            .counter(
                "redwatch_export_failed_total",
                "Records the exporter gave up on, by reason.",
                &[self.labels[0], self.labels[1], ("reason", reason)],
            )
            .add(n);
    }
}

/// One kind of record the exporter carries: its queue items and how a batch of them becomes
/// one export request.
pub trait Signal: Send + 'static {
    /// Spans or data points in the item (what `max_size`, drops and failures count).
    fn count(&self) -> u64;
    /// The export request of a batch (items with the same resource and scope merged).
    fn request(batch: Vec<Self>) -> Request
    where
        Self: Sized;
}

impl Signal for ResourceSpans {
    fn count(&self) -> u64 {
        span_count(self)
    }
    fn request(batch: Vec<Self>) -> Request {
        Request::Traces(ExportTraceServiceRequest {
            resource_spans: coalesce::merge(batch),
        })
    }
}

impl Signal for ResourceMetrics {
    fn count(&self) -> u64 {
        point_count(self)
    }
    fn request(batch: Vec<Self>) -> Request {
        Request::Metrics(ExportMetricsServiceRequest {
            resource_metrics: coalesce::merge_metrics(batch),
        })
    }
}

/// The producer side of one signal's queue.
#[derive(Debug, Clone)]
struct Queue<S> {
    tx: mpsc::Sender<S>,
    metrics: Metrics,
    capacity: usize,
}

impl<S: Signal> Queue<S> {
    fn push(&self, item: S) -> bool {
        let n = item.count();
        match self.tx.try_send(item) {
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

/// The producer side: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct OtlpExportHandle {
    spans: Queue<ResourceSpans>,
    metrics: Queue<ResourceMetrics>,
}

impl OtlpExportHandle {
    /// Queues `spans` for export; when the queue is full (or the exporter stopped) they are
    /// dropped and counted. Returns whether they were queued.
    pub fn export_spans(&self, spans: ResourceSpans) -> bool {
        self.spans.push(spans)
    }

    /// Queues metric points for export (their own queue of `queue_size` items, batched by data
    /// points); when the queue is full they are dropped and counted.
    pub fn export_metrics(&self, metrics: ResourceMetrics) -> bool {
        self.metrics.push(metrics)
    }
}

fn span_count(rs: &ResourceSpans) -> u64 {
    rs.scope_spans.iter().map(|s| s.spans.len() as u64).sum()
}

/// Data points in `rm`.
pub fn point_count(rm: &ResourceMetrics) -> u64 {
    rm.scope_metrics
        .iter()
        .flat_map(|s| s.metrics.iter())
        .map(|m| match &m.data {
            Some(metric::Data::Sum(x)) => x.data_points.len() as u64,
            Some(metric::Data::Gauge(x)) => x.data_points.len() as u64,
            Some(metric::Data::Histogram(x)) => x.data_points.len() as u64,
            Some(metric::Data::ExponentialHistogram(x)) => x.data_points.len() as u64,
            Some(metric::Data::Summary(x)) => x.data_points.len() as u64,
            None => 0,
        })
        .sum()
}

/// Builds the exporter: the handle producers enqueue to, and the task that drains the queues
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
    let (spans, traces_worker) = queue::<ResourceSpans>(
        cfg,
        transport.clone(),
        Metrics::new(registry, LABELS),
        cancel.clone(),
    );
    let (metrics, metrics_worker) = queue::<ResourceMetrics>(
        cfg,
        transport,
        Metrics::new(registry, METRICS_LABELS),
        cancel,
    );
    let handle = OtlpExportHandle { spans, metrics };
    (handle, async move {
        tokio::join!(traces_worker.run(), metrics_worker.run());
    })
}

fn queue<S: Signal>(
    cfg: &OtlpExporterConfig,
    transport: Transport,
    metrics: Metrics,
    cancel: CancellationToken,
) -> (Queue<S>, Worker<S>) {
    let capacity = cfg.queue_size.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    // Register the failure family up front, so it is visible before the first failure.
    metrics.failed("retries_exhausted", 0);
    let q = Queue {
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
        warned_permanent: false,
    };
    (q, worker)
}

/// Exponential backoff bounds (`exporters.otlp.retry`).
#[derive(Debug, Clone, Copy)]
struct Backoff {
    initial: Duration,
    max: Duration,
    max_elapsed: Duration,
}

impl Backoff {
    /// The retry intervals of one batch before jitter ([`crate::retry::exponential`]).
    fn intervals(&self) -> ExponentialBackoff {
        crate::retry::exponential(self.initial, self.max)
    }
}

struct Worker<S> {
    rx: mpsc::Receiver<S>,
    transport: Transport,
    metrics: Metrics,
    capacity: usize,
    max_batch: usize,
    batch_timeout: Duration,
    backoff: Backoff,
    cancel: CancellationToken,
    /// Draws the retry jitter.
    seed: fastrand::Rng,
    /// A permanent failure was logged at warn level (later ones go to debug: a destination
    /// without a metrics service would otherwise log every batch).
    warned_permanent: bool,
}

/// Whether a send ended normally or was cut short by shutdown.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Done,
    Interrupted,
}

impl<S: Signal> Worker<S> {
    fn what(&self) -> &'static str {
        if self.metrics.labels[1].1 == "metrics" {
            "data points"
        } else {
            "spans"
        }
    }

    async fn run(mut self) {
        let mut batch: Vec<S> = Vec::new();
        let mut records = 0usize;
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
                    records += item.count() as usize;
                    batch.push(item);
                    deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.batch_timeout);
                    if records >= self.max_batch {
                        deadline = None;
                        records = 0;
                        if self.send(std::mem::take(&mut batch), None).await == Sent::Interrupted {
                            break;
                        }
                    }
                }
                _ = timer => {
                    deadline = None;
                    records = 0;
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
    async fn flush_on_shutdown(&mut self, mut batch: Vec<S>) {
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
                    Some(item) => {
                        n += item.count() as usize;
                        chunk.push(item);
                    }
                    None => break,
                }
            }
            if Instant::now() >= until {
                let lost: u64 = chunk.iter().map(S::count).sum::<u64>()
                    + left.by_ref().map(|item| item.count()).sum::<u64>();
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
    async fn send(&mut self, batch: Vec<S>, until: Option<Instant>) -> Sent {
        if batch.is_empty() {
            return Sent::Done;
        }
        let n: u64 = batch.iter().map(S::count).sum();
        let what = self.what();
        let req = S::request(batch);
        let started = Instant::now();
        let mut intervals = self.backoff.intervals();
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
                            "OTLP export: the destination rejected {rejected} of {n} {what}"
                        );
                        self.metrics.failed("rejected", rejected);
                    }
                    return Sent::Done;
                }
                Err(e) if e.retryable() => {
                    let interval = intervals.next().unwrap_or(self.backoff.max);
                    let wait = e
                        .retry_after()
                        .unwrap_or_else(|| jitter(interval, &mut self.seed))
                        .min(self.backoff.max);
                    let elapsed = started.elapsed();
                    let out_of_time = elapsed + wait > self.backoff.max_elapsed
                        || until.is_some_and(|u| Instant::now() + wait > u);
                    if out_of_time {
                        tracing::warn!("OTLP export of {n} {what} failed, giving up: {e}");
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
                }
                Err(e) => {
                    if self.warned_permanent {
                        tracing::debug!("OTLP export of {n} {what} failed permanently: {e}");
                    } else {
                        self.warned_permanent = true;
                        tracing::warn!(
                            "OTLP export of {n} {what} failed permanently (further permanent failures are counted in redwatch_export_failed_total and logged at debug level): {e}"
                        );
                    }
                    self.metrics.failed("permanent", n);
                    return Sent::Done;
                }
            }
        }
    }

    async fn retry_once_on_shutdown(&mut self, req: Request, n: u64) -> Sent {
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

/// A randomly seeded generator for the retry jitter.
fn seed() -> fastrand::Rng {
    fastrand::Rng::new()
}

/// `d` randomised by ±50% (the OpenTelemetry SDKs' randomization factor), so many exporters
/// that failed together do not retry together.
fn jitter(d: Duration, rng: &mut fastrand::Rng) -> Duration {
    d.mul_f64(0.5 + rng.f64())
}

#[cfg(test)]
mod tests;
