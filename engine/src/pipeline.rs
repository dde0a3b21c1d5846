//! The pipeline runtime: a bounded queue from receivers to one task that owns the operators,
//! drives the watermark and ticks them.
//!
//! Receivers hold an [`IngestHandle`]; when the queue stays full for `enqueue_timeout` they get
//! [`Backpressure`] and must answer their client with a retryable error — memory never grows
//! past `queue_capacity` batches. Operators run on one task and need no locks; they emit results
//! through sinks they were built with. Shutdown: cancel the receivers, drop their handles, and
//! [`Pipeline::run`] drains what is queued and returns.

use crate::memory::{MemoryExhausted, MemoryLimiter, Reservation};
use crate::metric_model::MetricBatch;
use crate::model::{SourceId, SpanBatch, UnixNanos};
use crate::telemetry::{Gauge, Registry};
use crate::time::{TimePolicy, WatermarkTracker};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Data moving through the pipeline.
#[derive(Debug)]
pub enum Batch {
    Spans(SpanBatch),
    /// Metric data points (operators that only read spans ignore these). Boxed: a metric
    /// batch is several times the size of the other messages.
    Metrics(Box<MetricBatch>),
}

impl Batch {
    pub fn source(&self) -> SourceId {
        match self {
            Batch::Spans(b) => b.source,
            Batch::Metrics(b) => b.source,
        }
    }

    pub fn max_event_time(&self) -> Option<UnixNanos> {
        match self {
            Batch::Spans(b) => b.max_event_time(),
            Batch::Metrics(b) => b.max_event_time(),
        }
    }

    /// Bytes the batch keeps alive while it is queued (accounted by the memory limiter).
    pub fn retained_bytes(&self) -> usize {
        match self {
            Batch::Spans(b) => b.retained_bytes(),
            Batch::Metrics(b) => b.retained_bytes(),
        }
    }
}

/// What an operator sees besides its data.
pub struct OpContext<'a> {
    /// Wall clock.
    pub now: UnixNanos,
    /// The current watermark.
    pub watermark: UnixNanos,
    pub metrics: &'a Registry,
}

/// Size of an operator's state, for the `redwatch_window_state_*` gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateStats {
    pub series: usize,
    pub windows: usize,
    pub entries: usize,
    pub bytes: usize,
}

/// The one small trait all operators share. Every method has a no-op default.
pub trait Operator: Send {
    fn name(&self) -> &'static str;
    /// Consumes one batch of data.
    fn process_batch(&mut self, _batch: &Batch, _ctx: &mut OpContext<'_>) {}
    /// The watermark advanced to `ctx.watermark`: close, emit and purge windows.
    fn on_watermark(&mut self, _ctx: &mut OpContext<'_>) {}
    /// Called periodically (provisional results, expiry).
    fn on_tick(&mut self, _ctx: &mut OpContext<'_>) {}
    /// A Kafka partition was revoked from this instance: forget the state of its share without
    /// emitting it (its new owner rebuilds it by replay; docs/kafka-exactness.md).
    fn on_share_dropped(&mut self, _share: u32, _ctx: &mut OpContext<'_>) {}
    /// State size (and, later, a checkpoint).
    fn snapshot(&self) -> StateStats {
        StateStats::default()
    }
}

/// Control signals travel in order with the data.
#[derive(Debug)]
enum Message {
    /// A batch and the bytes it holds against the memory limiter (released once processed).
    Batch(Batch, Reservation),
    SourceUp {
        id: SourceId,
        name: String,
        holds_before_data: bool,
    },
    SourceDown(SourceId),
    /// Forget a share's state (see [`Operator::on_share_dropped`]).
    DropShare(u32),
    /// Answered once everything queued before it has been processed and the watermark has been
    /// re-evaluated; carries the watermark.
    Barrier(oneshot::Sender<UnixNanos>),
}

/// The queue stayed full (or the pipeline is gone): tell the client to retry later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Backpressure {
    #[error("the pipeline queue is full; retry later")]
    QueueFull,
    /// The memory limiter refused the bytes (`limits.memory`).
    #[error("{0}")]
    Memory(MemoryExhausted),
    #[error("the engine is shutting down")]
    Closed,
}

/// A clock source in Unix nanoseconds (the wall clock, or a test's).
pub type Clock = Arc<dyn Fn() -> UnixNanos + Send + Sync>;

/// Receivers' way into the pipeline. Cheap to clone.
#[derive(Clone)]
pub struct IngestHandle {
    tx: mpsc::Sender<Message>,
    next_source: Arc<AtomicU32>,
    enqueue_timeout: Duration,
    policy: Arc<TimePolicy>,
    clock: Clock,
    pending: PendingSources,
    memory: Arc<MemoryLimiter>,
}

/// Sources holding data the full queue could not take yet; shared with the operator task
/// because the queue itself is what is full.
type PendingSources = Arc<Mutex<Vec<SourceId>>>;

impl IngestHandle {
    /// Registers a new event-time source.
    pub async fn add_source(&self, name: &str, holds_before_data: bool) -> SourceId {
        let id = SourceId(self.next_source.fetch_add(1, Ordering::Relaxed));
        let _ = self
            .tx
            .send(Message::SourceUp {
                id,
                name: name.to_string(),
                holds_before_data,
            })
            .await;
        id
    }

    /// Says whether `id` holds data it could not queue yet and will send once there is room (a
    /// Kafka partition paused by backpressure). While it does, it holds the watermark however
    /// long the wait: its data must not turn late because the pipeline was busy. OTLP receivers
    /// never set this — their clients own the retry.
    pub fn set_pending(&self, id: SourceId, pending: bool) {
        if let Ok(mut p) = self.pending.lock() {
            p.retain(|s| *s != id);
            if pending {
                p.push(id);
            }
        }
    }

    /// Unregisters a source (a revoked Kafka partition, a stopped receiver).
    pub async fn remove_source(&self, id: SourceId) {
        self.set_pending(id, false);
        let _ = self.tx.send(Message::SourceDown(id)).await;
    }

    /// Makes the operators forget the state of `share` (a revoked Kafka partition), after every
    /// batch queued before.
    pub async fn drop_share(&self, share: u32) {
        let _ = self.tx.send(Message::DropShare(share)).await;
    }

    /// Queues a batch, waiting up to `enqueue_timeout` for room. Its bytes are reserved with
    /// the memory limiter first: above the soft limit the batch is refused (the Kafka source
    /// pauses).
    pub async fn send(&self, batch: Batch) -> Result<(), Backpressure> {
        let r = self
            .memory
            .reserve_soft(batch.retained_bytes() as u64)
            .map_err(Backpressure::Memory)?;
        self.send_reserved(batch, r).await
    }

    /// Queues a batch whose bytes the caller has already reserved (an OTLP receiver, which
    /// admitted the request and accounted it while reading and decoding). The reservation is
    /// resized to the batch's retained bytes and released once the batch is processed.
    pub async fn send_reserved(
        &self,
        batch: Batch,
        mut reservation: Reservation,
    ) -> Result<(), Backpressure> {
        reservation
            .resize(batch.retained_bytes() as u64)
            .map_err(Backpressure::Memory)?;
        match self
            .tx
            .send_timeout(Message::Batch(batch, reservation), self.enqueue_timeout)
            .await
        {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(Backpressure::QueueFull),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => Err(Backpressure::Closed),
        }
    }

    /// Waits until everything sent before has been processed; returns the watermark.
    pub async fn barrier(&self) -> Option<UnixNanos> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Message::Barrier(tx)).await.ok()?;
        rx.await.ok()
    }

    /// The time rules (receivers reject invalid, future and late event times up front).
    pub fn policy(&self) -> &Arc<TimePolicy> {
        &self.policy
    }

    /// The memory limiter every receiver accounts against.
    pub fn memory(&self) -> &Arc<MemoryLimiter> {
        &self.memory
    }

    /// The pipeline's clock.
    pub fn now(&self) -> UnixNanos {
        (self.clock)()
    }

    /// Whether the operator task has stopped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Batches waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

/// Settings of the runtime itself.
#[derive(Clone)]
pub struct PipelineSettings {
    pub queue_capacity: usize,
    pub enqueue_timeout: Duration,
    /// How often operators are ticked and the watermark re-evaluated.
    pub tick: Duration,
    pub clock: Clock,
    /// `limits.memory` as `(limit, spike)` bytes; `None` = accounted but never refused.
    pub memory: Option<(u64, u64)>,
}

impl PipelineSettings {
    /// The settings of the `limits` section (the tick and clock are the engine's own).
    pub fn from_config(limits: &crate::config::LimitsConfig) -> Self {
        PipelineSettings {
            queue_capacity: limits.queue_capacity.max(1),
            enqueue_timeout: limits.enqueue_timeout,
            tick: Duration::from_millis(100),
            clock: Arc::new(crate::time::wall_clock),
            memory: limits
                .memory
                .as_ref()
                .map(|m| (m.limit.as_u64(), m.spike.as_u64())),
        }
    }
}

/// The operator task.
pub struct Pipeline {
    rx: mpsc::Receiver<Message>,
    operators: Vec<Box<dyn Operator>>,
    tracker: WatermarkTracker,
    pending: PendingSources,
    policy: Arc<TimePolicy>,
    registry: Arc<Registry>,
    tick: Duration,
    clock: Clock,
    watermark: UnixNanos,
    queue_depth: Arc<Gauge>,
    watermark_lag: Arc<Gauge>,
    state_gauges: Vec<[Arc<Gauge>; 3]>,
}

/// Creates the queue, its handle and the (not yet running) operator task.
pub fn pipeline(
    policy: Arc<TimePolicy>,
    settings: PipelineSettings,
    operators: Vec<Box<dyn Operator>>,
    registry: Arc<Registry>,
) -> (IngestHandle, Pipeline) {
    let (tx, rx) = mpsc::channel(settings.queue_capacity);
    let memory = match settings.memory {
        Some((limit, spike)) => MemoryLimiter::with_metrics(limit, spike, &registry),
        None => MemoryLimiter::unlimited(),
    };
    let handle = IngestHandle {
        memory,
        tx,
        next_source: Arc::new(AtomicU32::new(0)),
        enqueue_timeout: settings.enqueue_timeout,
        policy: policy.clone(),
        clock: settings.clock.clone(),
        pending: PendingSources::default(),
    };
    let queue_depth = registry.gauge(
        "redwatch_queue_depth",
        "Batches waiting between receivers and operators.",
        &[("queue", "pipeline")],
    );
    registry
        .gauge(
            "redwatch_queue_capacity",
            "Capacity of each bounded queue, in batches.",
            &[("queue", "pipeline")],
        )
        .set(settings.queue_capacity as f64);
    let watermark_lag = registry.gauge(
        "redwatch_watermark_lag_seconds",
        "Wall clock minus the event-time watermark.",
        &[],
    );
    let state_gauges = operators
        .iter()
        .map(|op| {
            let l = [("operator", op.name())];
            [
                registry.gauge(
                    "redwatch_window_state_series",
                    "Series held in window state.",
                    &l,
                ),
                registry.gauge(
                    "redwatch_window_state_entries",
                    "(window, series) entries held in window state.",
                    &l,
                ),
                registry.gauge(
                    "redwatch_window_state_bytes",
                    "Approximate bytes of window state.",
                    &l,
                ),
            ]
        })
        .collect();
    let tracker = WatermarkTracker::new(policy.max_out_of_orderness_ns, policy.idle_timeout_ns);
    let p = Pipeline {
        pending: handle.pending.clone(),
        rx,
        operators,
        tracker,
        policy,
        registry,
        tick: settings.tick,
        clock: settings.clock,
        watermark: 0,
        queue_depth,
        watermark_lag,
        state_gauges,
    };
    (handle, p)
}

impl Pipeline {
    /// Runs until every [`IngestHandle`] is dropped, or `cancel` fires — then drains the queue.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    self.rx.close();
                    while let Some(m) = self.rx.recv().await {
                        self.handle(m);
                    }
                    break;
                }
                m = self.rx.recv() => match m {
                    Some(m) => self.handle(m),
                    None => break,
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
        self.on_tick();
    }

    fn ctx_parts(&self) -> (UnixNanos, UnixNanos) {
        ((self.clock)(), self.watermark)
    }

    /// Calls `f` on every operator in order, with one context of `now` and `watermark`.
    #[inline]
    fn each_operator(
        &mut self,
        now: UnixNanos,
        watermark: UnixNanos,
        mut f: impl FnMut(&mut dyn Operator, &mut OpContext<'_>),
    ) {
        let mut ctx = OpContext {
            now,
            watermark,
            metrics: &self.registry,
        };
        for op in self.operators.iter_mut() {
            f(op.as_mut(), &mut ctx);
        }
    }

    fn handle(&mut self, m: Message) {
        match m {
            Message::Batch(b, _reservation) => {
                let now = (self.clock)();
                if let Some(max) = b.max_event_time() {
                    self.tracker.observe(b.source(), max, now);
                }
                let (now, watermark) = self.ctx_parts();
                self.each_operator(now, watermark, |op, ctx| op.process_batch(&b, ctx));
            }
            Message::SourceUp {
                id,
                name,
                holds_before_data,
            } => {
                let now = (self.clock)();
                self.tracker.add_source(id, &name, holds_before_data, now);
            }
            Message::SourceDown(id) => self.tracker.remove_source(id),
            Message::DropShare(share) => {
                let (now, watermark) = self.ctx_parts();
                self.each_operator(now, watermark, |op, ctx| op.on_share_dropped(share, ctx));
            }
            Message::Barrier(reply) => {
                self.on_tick();
                let _ = reply.send(self.watermark);
            }
        }
    }

    fn advance_watermark(&mut self, now: UnixNanos) {
        if let Ok(p) = self.pending.lock() {
            self.tracker.set_pending(&p);
        }
        let wm = self.tracker.watermark(now);
        if wm > self.watermark {
            self.watermark = wm;
            self.each_operator(now, wm, |op, ctx| op.on_watermark(ctx));
            // Published after the operators moved, so a receiver never rejects as late what an
            // operator would still have accepted.
            self.policy.publish_watermark(wm);
        }
        self.watermark_lag
            .set(now.saturating_sub(self.watermark) as f64 / 1e9);
    }

    fn on_tick(&mut self) {
        let now = (self.clock)();
        self.advance_watermark(now);
        self.each_operator(now, self.watermark, |op, ctx| op.on_tick(ctx));
        self.queue_depth
            .set((self.rx.max_capacity() - self.rx.capacity()) as f64);
        for (op, g) in self.operators.iter().zip(&self.state_gauges) {
            let s = op.snapshot();
            g[0].set(s.series as f64);
            g[1].set(s.entries as f64);
            g[2].set(s.bytes as f64);
        }
    }
}
