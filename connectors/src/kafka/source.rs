//! The consume loop: one blocking thread that polls the consumer, decodes, queues batches on the
//! pipeline, pauses partitions under backpressure, commits offsets and checks the brokers.

use super::offsets::{commit_metadata, parse_commit_metadata, CommitTracker};
use super::rebalance::{Assignment, Health, RevokeCommits, SourceContext};
use super::sink::SinkProgress;
use super::{consumer_config, producer_config, KafkaSourceError, MESSAGE_REJECT_REASONS};
use crate::otlp::decode::{self, DecodeSettings, TraceDecodeOutcome};
use crate::otlp::decode_error_reason;
use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use redwatch_engine::config::{KafkaEncoding, KafkaReceiverConfig};
use redwatch_engine::model::{SourceId, UnixNanos};
use redwatch_engine::pipeline::{Backpressure, Batch, IngestHandle};
use redwatch_engine::telemetry::{Counter, Gauge, Registry};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const RECEIVER: &str = "kafka";
const POLL: Duration = Duration::from_millis(100);
/// How often offsets are committed, the brokers checked and the lag measured.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
const BROKER_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the offsets a revoke would commit are brought up to date.
const REVOKE_CANDIDATES: Duration = Duration::from_millis(100);
/// Longest time the watermark is held for a group join that assigns nothing.
const JOIN_HOLD_MAX: Duration = Duration::from_secs(300);

/// A running Kafka source, as seen from the outside (readiness).
#[derive(Debug, Clone)]
pub struct KafkaSourceHandle {
    health: Arc<Health>,
}

impl KafkaSourceHandle {
    /// `Ok` while the brokers answer; otherwise why not (for `/readyz`).
    pub fn ready(&self) -> Result<(), String> {
        match self.health.problem.lock() {
            Ok(g) => match &*g {
                None => Ok(()),
                Some(p) => Err(p.clone()),
            },
            Err(_) => Err("kafka source state is poisoned".to_string()),
        }
    }
}

/// Counters of the source (labels: receiver `kafka`).
struct Counters {
    messages: Arc<Counter>,
    rejected: Vec<(&'static str, Arc<Counter>)>,
    dead_lettered: Arc<Counter>,
    spans_received: Arc<Counter>,
    spans_accepted: Arc<Counter>,
    spans_rejected: Vec<(&'static str, Arc<Counter>)>,
    points_received: Arc<Counter>,
    points_accepted: Arc<Counter>,
    late: Arc<Counter>,
    replay_skipped: Arc<Counter>,
    missing_service: Arc<Counter>,
    paused: Arc<Counter>,
    commits: Arc<Counter>,
}

impl Counters {
    fn new(reg: &Registry) -> Self {
        let r = [("receiver", RECEIVER)];
        Counters {
            messages: reg.counter(
                "redwatch_kafka_messages_total",
                "Kafka messages consumed.",
                &[],
            ),
            rejected: MESSAGE_REJECT_REASONS
                .iter()
                .map(|reason| {
                    (
                        *reason,
                        reg.counter(
                            "redwatch_kafka_messages_rejected_total",
                            "Kafka messages that could not be decoded, per reason (skipped).",
                            &[("reason", reason)],
                        ),
                    )
                })
                .collect(),
            dead_lettered: reg.counter(
                "redwatch_kafka_dead_lettered_total",
                "Rejected Kafka messages copied to the dead-letter topic.",
                &[],
            ),
            spans_received: reg.counter(
                "redwatch_spans_received_total",
                "Spans received, per receiver.",
                &r,
            ),
            spans_accepted: reg.counter(
                "redwatch_spans_accepted_total",
                "Spans accepted into the pipeline, per receiver.",
                &r,
            ),
            spans_rejected: crate::otlp::ITEM_REJECT_REASONS
                .iter()
                .map(|reason| {
                    (
                        *reason,
                        reg.counter(
                            "redwatch_spans_rejected_total",
                            "Spans refused individually (partial success), per receiver and reason.",
                            &[("receiver", RECEIVER), ("reason", reason)],
                        ),
                    )
                })
                .collect(),
            points_received: reg.counter(
                "redwatch_metric_points_received_total",
                "Metric data points received, per receiver.",
                &r,
            ),
            points_accepted: reg.counter(
                "redwatch_metric_points_accepted_total",
                "Metric data points accepted, per receiver.",
                &r,
            ),
            late: reg.counter(
                "redwatch_late_dropped_total",
                "Items dropped because their window was already purged.",
                &[("signal", "spans")],
            ),
            replay_skipped: reg.counter(
                "redwatch_kafka_replay_skipped_total",
                "Replayed spans skipped after a restart because their window was already final and purged.",
                &[],
            ),
            missing_service: reg.counter(
                "redwatch_spans_missing_service_name_total",
                "Spans whose resource has no service.name (counted as unknown_service).",
                &[],
            ),
            paused: reg.counter(
                "redwatch_kafka_partition_pauses_total",
                "Times a partition was paused because the pipeline queue was full.",
                &[],
            ),
            commits: reg.counter(
                "redwatch_kafka_commits_total",
                "Offset commits (only for messages whose windows are purged).",
                &[],
            ),
        }
    }

    fn reject(&self, reason: &str) {
        if let Some((_, c)) = self.rejected.iter().find(|(r, _)| *r == reason) {
            c.inc();
        }
    }
}

/// One assigned traces partition.
struct PartitionState {
    source: SourceId,
    /// Spans in windows purged through this time were final before a restart: skipped.
    purged_through: UnixNanos,
    /// Messages waiting for room in the pipeline, in offset order (the partition is paused
    /// meanwhile; at most what librdkafka had already fetched).
    waiting: VecDeque<(i64, Bytes)>,
    paused: bool,
    /// When a paused partition was resumed: it holds the watermark (see
    /// [`IngestHandle::set_pending`]) until librdkafka delivers from it again, or for
    /// `idle_timeout` if nothing more comes — the fetch after a resume is not idleness.
    resumed_at: Option<Instant>,
    /// Next offset expected; anything below is a re-delivery and is ignored.
    next_offset: Option<i64>,
    tracker: CommitTracker,
    last_committed: Option<i64>,
    lag: Arc<Gauge>,
    /// 1 while the partition is assigned here, 0 after it was revoked.
    assigned: Arc<Gauge>,
}

/// The Kafka source: build it with [`KafkaSource::start`].
pub struct KafkaSource;

/// The watermark hold registered before the pipeline runs (see [`KafkaSource::hold_watermark`]).
#[derive(Debug)]
pub struct StartupHold(SourceId);

impl KafkaSource {
    /// Registers the source that holds the watermark until the first partitions are assigned.
    /// Call it before the pipeline task starts: otherwise its first tick, with no source holding,
    /// moves the watermark to the wall clock and the backlog of the partitions is late.
    pub async fn hold_watermark(cfg: &KafkaReceiverConfig, handle: &IngestHandle) -> StartupHold {
        let name = format!("kafka:{}:joining", cfg.traces_topic);
        StartupHold(handle.add_source(&name, true).await)
    }

    /// Creates the consumer, subscribes, and runs the consume loop on a blocking thread until
    /// `cancel`; then commits what is committable and leaves the group. With `sink` (the Kafka
    /// sink's progress), offsets are committed only once the windows they fed were delivered.
    pub fn start(
        cfg: &KafkaReceiverConfig,
        handle: IngestHandle,
        settings: DecodeSettings,
        registry: Arc<Registry>,
        cancel: CancellationToken,
        hold: Option<StartupHold>,
        sink: Option<Arc<SinkProgress>>,
    ) -> Result<(KafkaSourceHandle, tokio::task::JoinHandle<()>), KafkaSourceError> {
        super::validate(cfg)?;
        let health = Arc::new(Health {
            problem: Mutex::new(Some("not connected to Kafka yet".to_string())),
        });
        let shadow: BaseConsumer = {
            let mut c = consumer_config(cfg);
            c.set("group.id", super::shadow_group(cfg));
            // Never polled: statistics would pile up in its queue.
            c.set("statistics.interval.ms", "0");
            c.create()?
        };
        let ctx = SourceContext {
            events: Mutex::new(Vec::new()),
            health: health.clone(),
            traces_topic: cfg.traces_topic.clone(),
            revoke: Mutex::new(RevokeCommits::default()),
            shadow,
            high_watermarks: Mutex::new(HashMap::new()),
        };
        let consumer: BaseConsumer<SourceContext> =
            consumer_config(cfg).create_with_context(ctx)?;
        let mut topics = vec![cfg.traces_topic.as_str()];
        if let Some(m) = &cfg.metrics_topic {
            topics.push(m.as_str());
        }
        consumer.subscribe(&topics)?;
        let dead_letter = match &cfg.dead_letter_topic {
            Some(t) => {
                let p: ThreadedProducer<DefaultProducerContext> = producer_config(cfg).create()?;
                Some((p, t.clone()))
            }
            None => None,
        };
        let rt = tokio::runtime::Handle::current();
        let mut run = Loop {
            consumer,
            traces_topic: cfg.traces_topic.clone(),
            encoding: cfg.encoding,
            handle,
            settings,
            counters: Counters::new(&registry),
            registry,
            partitions: HashMap::new(),
            dead_letter,
            health: health.clone(),
            rt,
            joining: hold.map(|h| {
                let now = Instant::now();
                JoinHold {
                    source: h.0,
                    renewed: now,
                    since: now,
                }
            }),
            sink,
            gated: None,
            revoked: HashMap::new(),
        };
        let task = tokio::task::spawn_blocking(move || run.run(cancel));
        Ok((KafkaSourceHandle { health }, task))
    }
}

struct Loop {
    consumer: BaseConsumer<SourceContext>,
    traces_topic: String,
    encoding: KafkaEncoding,
    handle: IngestHandle,
    settings: DecodeSettings,
    counters: Counters,
    registry: Arc<Registry>,
    partitions: HashMap<i32, PartitionState>,
    dead_letter: Option<(ThreadedProducer<DefaultProducerContext>, String)>,
    health: Arc<Health>,
    rt: tokio::runtime::Handle,
    joining: Option<JoinHold>,
    /// State of partitions revoked from this member, kept in case they come back (a group
    /// rejoin after a broker outage revokes and re-assigns everything): their messages already
    /// sit in open windows and must not be consumed a second time.
    revoked: HashMap<i32, PartitionState>,
    /// The Kafka sink's delivery progress, when there is a sink.
    sink: Option<Arc<SinkProgress>>,
    /// A watermark waiting for the sink: (watermark, sink mark taken right after it).
    gated: Option<(UnixNanos, u64)>,
}

/// While the group (re)joins, a placeholder source holds the watermark so that the backlog of
/// the partitions about to be assigned is not late (DESIGN.md, "Time semantics"). A source that
/// has no data goes idle after `idle_timeout`, so the placeholder is renewed before that.
struct JoinHold {
    source: SourceId,
    renewed: Instant,
    since: Instant,
}

impl Loop {
    fn hold_for_join(&mut self) {
        if self.joining.is_none() {
            let name = format!("kafka:{}:joining", self.traces_topic);
            let source = self.rt.block_on(self.handle.add_source(&name, true));
            let now = Instant::now();
            self.joining = Some(JoinHold {
                source,
                renewed: now,
                since: now,
            });
        }
    }

    fn release_join_hold(&mut self) {
        if let Some(j) = self.joining.take() {
            self.rt.block_on(self.handle.remove_source(j.source));
        }
    }

    fn renew_join_hold(&mut self) {
        let idle = Duration::from_nanos(self.handle.policy().idle_timeout_ns);
        let every = (idle / 2).max(Duration::from_millis(100));
        let Some(j) = &self.joining else { return };
        if j.since.elapsed() >= JOIN_HOLD_MAX.max(idle) {
            tracing::warn!(
                "kafka: no partition of {} assigned after {JOIN_HOLD_MAX:?}; not holding the watermark any longer",
                self.traces_topic
            );
            self.release_join_hold();
            return;
        }
        if j.renewed.elapsed() < every {
            return;
        }
        let (old, since) = (j.source, j.since);
        let name = format!("kafka:{}:joining", self.traces_topic);
        let source = self.rt.block_on(self.handle.add_source(&name, true));
        self.rt.block_on(self.handle.remove_source(old));
        self.joining = Some(JoinHold {
            source,
            renewed: Instant::now(),
            since,
        });
    }

    fn run(&mut self, cancel: CancellationToken) {
        let mut last_housekeeping = Instant::now() - HOUSEKEEPING;
        let mut last_candidates = Instant::now();
        self.hold_for_join();
        while !cancel.is_cancelled() && !self.handle.is_closed() {
            let polled = match self.consumer.poll(POLL) {
                Some(Ok(m)) => Some(Ok((
                    m.topic().to_string(),
                    m.partition(),
                    m.offset(),
                    m.payload().map(Bytes::copy_from_slice),
                ))),
                Some(Err(e)) => Some(Err(e)),
                None => None,
            };
            self.apply_rebalances();
            match polled {
                Some(Ok((topic, partition, offset, payload))) => {
                    self.counters.messages.inc();
                    if topic == self.traces_topic {
                        self.on_traces(partition, offset, payload);
                    } else {
                        self.on_metrics(&topic, partition, offset, payload);
                    }
                }
                Some(Err(e)) => tracing::warn!("kafka consume error: {e}"),
                None => {}
            }
            self.retry_waiting();
            self.renew_join_hold();
            if last_candidates.elapsed() >= REVOKE_CANDIDATES {
                last_candidates = Instant::now();
                self.publish_revoke_candidates();
            }
            if last_housekeeping.elapsed() >= HOUSEKEEPING {
                last_housekeeping = Instant::now();
                self.commit(CommitMode::Async);
                self.check_brokers();
            }
        }
        if let Ok(mut r) = self.consumer.context().revoke.lock() {
            r.shutting_down = true;
        }
        self.commit(CommitMode::Sync);
        self.release_join_hold();
        let ids: Vec<SourceId> = self.partitions.values().map(|p| p.source).collect();
        for id in ids {
            self.rt.block_on(self.handle.remove_source(id));
        }
        self.consumer.unsubscribe();
    }

    fn apply_rebalances(&mut self) {
        let events = match self.consumer.context().events.lock() {
            Ok(mut ev) => std::mem::take(&mut *ev),
            Err(_) => return,
        };
        for ev in events {
            match ev {
                Assignment::Assigned(ps) => {
                    for (topic, p) in ps {
                        if topic == self.traces_topic {
                            self.assign(p);
                        }
                    }
                    if !self.partitions.is_empty() {
                        self.release_join_hold();
                    }
                }
                Assignment::Revoked(ps) => {
                    // The revoke callback committed what was committable while the partitions
                    // were still ours (see `rebalance`); hold the watermark until the group has
                    // settled again.
                    let committed = match self.consumer.context().revoke.lock() {
                        Ok(mut r) => std::mem::take(&mut r.committed),
                        Err(_) => HashMap::new(),
                    };
                    self.hold_for_join();
                    for (topic, p) in ps {
                        if topic != self.traces_topic {
                            continue;
                        }
                        if let Some(mut st) = self.partitions.remove(&p) {
                            self.rt.block_on(self.handle.remove_source(st.source));
                            st.lag.set(0.0);
                            st.assigned.set(0.0);
                            if let Some(off) = committed.get(&p) {
                                st.last_committed = Some(*off);
                            }
                            self.revoked.insert(p, st);
                        }
                    }
                }
            }
        }
    }

    /// Registers a traces partition as an event-time source and reads its purged-through time.
    fn assign(&mut self, partition: i32) {
        if self.partitions.contains_key(&partition) {
            return;
        }
        let name = format!("kafka:{}:{}", self.traces_topic, partition);
        let source = self.rt.block_on(self.handle.add_source(&name, true));
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.traces_topic, partition);
        let (purged_through, committed) = match self.consumer.committed_offsets(tpl, BROKER_TIMEOUT)
        {
            Ok(c) => c
                .find_partition(&self.traces_topic, partition)
                .map(|e| {
                    let off = match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    };
                    (parse_commit_metadata(e.metadata()), off)
                })
                .unwrap_or((0, None)),
            Err(e) => {
                tracing::warn!("kafka: cannot read committed offset of {name}: {e}");
                (0, None)
            }
        };
        let purged_through = if purged_through == 0 && committed.is_some() {
            self.shadow_purged_through(partition)
        } else {
            purged_through
        };
        if let Some(mut old) = self.revoked.remove(&partition) {
            // Back to this member with nobody having committed past us in between: what we
            // consumed is still in our open windows, so carry on from where we were (messages
            // librdkafka delivers again below `next_offset` are ignored).
            if committed.unwrap_or(-1) <= old.last_committed.unwrap_or(-1) {
                tracing::info!(
                    "kafka: {name} is back (committed offset {committed:?}); continuing at offset {:?}",
                    old.next_offset
                );
                old.source = source;
                old.assigned.set(1.0);
                old.paused = false;
                if !old.waiting.is_empty() {
                    self.handle.set_pending(source, true);
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition(&self.traces_topic, partition);
                    if self.consumer.pause(&tpl).is_ok() {
                        old.paused = true;
                    }
                }
                self.partitions.insert(partition, old);
                return;
            }
            tracing::info!(
                "kafka: {name} was consumed elsewhere since it was revoked (committed offset \
                 {committed:?}, ours {:?}); starting over from the committed offset",
                old.last_committed
            );
        }
        tracing::info!(
            "kafka: assigned {name} (committed offset {committed:?}, purged through {purged_through} ns)"
        );
        let p = partition.to_string();
        let lag = self.registry.gauge(
            "redwatch_kafka_lag",
            "Messages between the consumed position and the partition's high watermark.",
            &[
                ("topic", self.traces_topic.as_str()),
                ("partition", p.as_str()),
            ],
        );
        let assigned = self.registry.gauge(
            "redwatch_kafka_partition_assigned",
            "1 while the partition is assigned to this instance, 0 after it was revoked.",
            &[
                ("topic", self.traces_topic.as_str()),
                ("partition", p.as_str()),
            ],
        );
        assigned.set(1.0);
        self.partitions.insert(
            partition,
            PartitionState {
                source,
                purged_through,
                waiting: VecDeque::new(),
                paused: false,
                resumed_at: None,
                next_offset: committed,
                tracker: CommitTracker::default(),
                last_committed: committed,
                lag,
                assigned,
            },
        );
    }

    fn on_traces(&mut self, partition: i32, offset: i64, payload: Option<Bytes>) {
        if !self.partitions.contains_key(&partition) {
            // The assignment callback normally comes first; be safe if it did not.
            self.assign(partition);
        }
        let Some(st) = self.partitions.get_mut(&partition) else {
            return;
        };
        if st.resumed_at.take().is_some() {
            self.handle.set_pending(st.source, false);
        }
        // Below `next_offset` is a re-delivery.
        if st.next_offset.is_some_and(|n| offset < n) {
            tracing::debug!(
                "kafka: partition {partition}: offset {offset} again (next {:?})",
                st.next_offset
            );
            return;
        }
        if st.next_offset.is_some_and(|n| offset > n) {
            tracing::debug!(
                "kafka: partition {partition}: offset {offset} after a gap (next {:?})",
                st.next_offset
            );
        }
        st.next_offset = Some(offset + 1);
        let body = payload.unwrap_or_default();
        if !st.waiting.is_empty() {
            // Keep the partition's order: behind what waits for room.
            st.waiting.push_back((offset, body));
            return;
        }
        if self.process(partition, offset, &body).is_err() {
            self.wait_for_room(partition, offset, body);
        }
    }

    /// Decodes one traces message and queues its spans; `Err` = the pipeline is full (nothing was
    /// counted or recorded: the message is processed again later).
    fn process(&mut self, partition: i32, offset: i64, body: &Bytes) -> Result<(), Backpressure> {
        let Some(st) = self.partitions.get(&partition) else {
            return Ok(());
        };
        let (source, purged_through) = (st.source, st.purged_through);
        if body.is_empty() {
            self.reject(true, partition, offset, "empty", body);
            return Ok(());
        }
        let now = self.handle.now();
        let policy = self.handle.policy().clone();
        let decoded = match self.encoding {
            KafkaEncoding::OtlpProto => {
                decode::decode_traces_proto(body.clone(), source, &self.settings, &policy, now)
            }
            KafkaEncoding::OtlpJson => {
                decode::decode_traces_json(body, source, &self.settings, &policy, now)
            }
        };
        let mut out: TraceDecodeOutcome = match decoded {
            Ok(o) => o,
            Err(e) => {
                self.reject(true, partition, offset, decode_error_reason(&e), body);
                return Ok(());
            }
        };
        let mut skipped = 0;
        if purged_through > 0 {
            let before = out.batch.spans.len();
            out.batch.spans.retain(|s| {
                let end = policy.window_start(s.end).saturating_add(policy.window_ns);
                !policy.is_purged(end, purged_through)
            });
            skipped = (before - out.batch.spans.len()) as u64;
        }
        let accepted = out.batch.len() as u64;
        let max_ts = out.batch.max_event_time().unwrap_or(0);
        if accepted > 0 {
            match self.rt.block_on(self.handle.send(Batch::Spans(out.batch))) {
                Ok(()) => {}
                Err(Backpressure::QueueFull) => return Err(Backpressure::QueueFull),
                // Shutting down: the offset is not recorded, so it is not committed either.
                Err(Backpressure::Closed) => return Ok(()),
            }
        }
        if let Some(st) = self.partitions.get_mut(&partition) {
            st.tracker
                .record(offset, if accepted > 0 { max_ts } else { 0 }, &policy);
        }
        self.counted(partition, offset);
        let c = &self.counters;
        c.replay_skipped.add(skipped);
        c.spans_received.add(out.received);
        c.spans_accepted.add(accepted);
        for (reason, n) in out.rejected.iter() {
            if let Some((_, ctr)) = c.spans_rejected.iter().find(|(r, _)| *r == reason) {
                ctr.add(n);
            }
        }
        c.late.add(out.rejected.late);
        c.missing_service.add(out.spans_missing_service_name);
        Ok(())
    }

    /// Backpressure: keep the message (its payload is reference-counted, not copied) and pause
    /// the partition; messages librdkafka had already fetched queue up behind it, and nothing
    /// more is fetched until the queue has drained.
    fn wait_for_room(&mut self, partition: i32, offset: i64, body: Bytes) {
        let Some(st) = self.partitions.get_mut(&partition) else {
            return;
        };
        st.waiting.push_front((offset, body));
        // Held back by backpressure, not idle: keep holding the watermark meanwhile.
        self.handle.set_pending(st.source, true);
        if !st.paused {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&self.traces_topic, partition);
            if let Err(e) = self.consumer.pause(&tpl) {
                tracing::warn!("kafka: cannot pause partition {partition}: {e}");
            }
            st.paused = true;
            self.counters.paused.inc();
            tracing::debug!("kafka: paused partition {partition} at offset {offset}");
        }
    }

    /// Processes waiting messages in order while the pipeline has room; resumes drained
    /// partitions.
    fn retry_waiting(&mut self) {
        let idle = Duration::from_nanos(self.handle.policy().idle_timeout_ns);
        for st in self.partitions.values_mut() {
            if st.resumed_at.is_some_and(|t| t.elapsed() >= idle) {
                st.resumed_at = None;
                self.handle.set_pending(st.source, false);
            }
        }
        let waiting: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.paused || !s.waiting.is_empty())
            .map(|(p, _)| *p)
            .collect();
        for p in waiting {
            loop {
                let Some((offset, body)) = self
                    .partitions
                    .get_mut(&p)
                    .and_then(|s| s.waiting.pop_front())
                else {
                    break;
                };
                if self.process(p, offset, &body).is_err() {
                    if let Some(st) = self.partitions.get_mut(&p) {
                        st.waiting.push_front((offset, body));
                    }
                    return;
                }
            }
            let Some(st) = self.partitions.get_mut(&p) else {
                continue;
            };
            if st.paused {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(&self.traces_topic, p);
                match self.consumer.resume(&tpl) {
                    Ok(()) => {
                        st.paused = false;
                        st.resumed_at = Some(Instant::now());
                        tracing::debug!("kafka: resumed partition {p} (next {:?})", st.next_offset);
                    }
                    Err(e) => tracing::warn!("kafka: cannot resume partition {p}: {e}"),
                }
            }
        }
    }

    fn on_metrics(&mut self, topic: &str, partition: i32, offset: i64, payload: Option<Bytes>) {
        let body = payload.unwrap_or_default();
        if body.is_empty() {
            self.reject(false, partition, offset, "empty", &body);
        } else {
            let now = self.handle.now();
            let policy = self.handle.policy().clone();
            // Metric points do not move event time (no source of their own) and are windowed
            // best-effort: a full queue drops the message (counted as backpressure).
            let source = SourceId(u32::MAX);
            let decoded = match self.encoding {
                KafkaEncoding::OtlpProto => {
                    decode::decode_metrics_proto(body.clone(), source, &policy, now)
                }
                KafkaEncoding::OtlpJson => decode::decode_metrics_json(&body, source, &policy, now),
            };
            match decoded {
                Ok(o) => {
                    self.counters.points_received.add(o.received);
                    self.counters.points_accepted.add(o.accepted);
                    if !o.batch.is_empty()
                        && self
                            .rt
                            .block_on(self.handle.send(Batch::Metrics(Box::new(o.batch))))
                            .is_err()
                    {
                        self.reject(false, partition, offset, "backpressure", &body);
                    }
                }
                Err(e) => self.reject(false, partition, offset, decode_error_reason(&e), &body),
            }
        }
        // Metric offsets are committable at once (see above).
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(topic, partition, Offset::Offset(offset + 1))
            .is_ok()
        {
            let _ = self.consumer.commit(&tpl, CommitMode::Async);
        }
    }

    /// Counts (and dead-letters) an undecodable message; a traces message's offset is recorded as
    /// feeding no window.
    fn reject(
        &mut self,
        traces: bool,
        partition: i32,
        offset: i64,
        reason: &'static str,
        body: &Bytes,
    ) {
        self.counters.reject(reason);
        tracing::debug!("kafka: rejected message {partition}@{offset}: {reason}");
        if traces {
            if let Some(st) = self.partitions.get_mut(&partition) {
                let policy = self.handle.policy().clone();
                st.tracker.record(offset, 0, &policy);
            }
            self.counted(partition, offset);
        }
        if let Some((producer, topic)) = &self.dead_letter {
            let key = format!("{}:{partition}:{offset}", self.traces_topic);
            let headers = OwnedHeaders::new().insert(Header {
                key: "redwatch.reject_reason",
                value: Some(reason),
            });
            let rec = BaseRecord::to(topic)
                .key(&key)
                .payload(body.as_ref())
                .headers(headers);
            match producer.send(rec) {
                Ok(()) => self.counters.dead_lettered.inc(),
                Err((e, _)) => tracing::warn!("kafka: cannot copy to the dead-letter topic: {e}"),
            }
        }
    }

    /// Commits, per partition, the offsets whose windows are all purged, with the purged-through
    /// time in the metadata.
    /// The watermark whose purged windows have all reached the sink (the published one when
    /// there is no sink). Windows purged at a watermark were emitted, and handed to the sink,
    /// before the pipeline published it; so a sink mark taken after reading the watermark
    /// covers them.
    fn committable_watermark(
        &mut self,
        policy: &redwatch_engine::time::TimePolicy,
    ) -> Option<UnixNanos> {
        let wm = policy.watermark();
        let Some(sink) = &self.sink else {
            return Some(wm);
        };
        let mark = sink.mark();
        if sink.passed(mark) {
            self.gated = None;
            return Some(wm);
        }
        let usable = match self.gated {
            Some((w, m)) if sink.passed(m) => Some(w),
            _ => None,
        };
        if usable.is_some() || self.gated.is_none() {
            self.gated = Some((wm, mark));
        }
        usable
    }

    /// A traces message is in the pipeline (or rejected): a live rebalance hands the partition
    /// over after it. Messages still waiting for room are not: the next owner takes them.
    fn counted(&self, partition: i32, offset: i64) {
        if let Ok(mut r) = self.consumer.context().revoke.lock() {
            r.consumed.insert(partition, offset + 1);
        }
    }

    /// Brings the offsets the revoke callback would commit up to date.
    fn publish_revoke_candidates(&mut self) {
        let policy = self.handle.policy().clone();
        let Some(wm) = self.committable_watermark(&policy) else {
            return;
        };
        let mut offsets = HashMap::new();
        for (p, st) in self.partitions.iter_mut() {
            if let Some(off) = st.tracker.advance(wm, &policy) {
                if st.last_committed.is_none_or(|c| off > c) {
                    offsets.insert(*p, off);
                }
            }
        }
        if let Ok(mut r) = self.consumer.context().revoke.lock() {
            r.wm = wm;
            r.offsets = offsets;
        }
    }

    fn commit(&mut self, mode: CommitMode) {
        let policy = self.handle.policy().clone();
        let Some(wm) = self.committable_watermark(&policy) else {
            return;
        };
        let mut tpl = TopicPartitionList::new();
        let mut any = false;
        for (p, st) in self.partitions.iter_mut() {
            let Some(off) = st.tracker.advance(wm, &policy) else {
                continue;
            };
            if st.last_committed.is_some_and(|c| c >= off) {
                continue;
            }
            let mut e = tpl.add_partition(&self.traces_topic, *p);
            if e.set_offset(Offset::Offset(off)).is_err() {
                continue;
            }
            e.set_metadata(commit_metadata(wm));
            st.last_committed = Some(off);
            any = true;
        }
        if any {
            // The shadow group first: the time it holds must never be older than the one that
            // belongs to the committed offsets (an older one would let replay double-count).
            let mut shadow = TopicPartitionList::new();
            for e in tpl.elements() {
                let _ = shadow.add_partition_offset(
                    e.topic(),
                    e.partition(),
                    Offset::Offset(wm.min(i64::MAX as u64) as i64),
                );
            }
            if let Err(e) = self
                .consumer
                .context()
                .shadow
                .commit(&shadow, CommitMode::Sync)
            {
                tracing::warn!("kafka: cannot record the purged-through time (retried later): {e}");
                for e in tpl.elements() {
                    if let Some(st) = self.partitions.get_mut(&e.partition()) {
                        st.last_committed = None;
                    }
                }
                return;
            }
            match self.consumer.commit(&tpl, mode) {
                Ok(()) => self.counters.commits.inc(),
                Err(e) => tracing::warn!("kafka: offset commit failed (retried later): {e}"),
            }
            // A revoke must never commit an older offset than this one.
            if let Ok(mut r) = self.consumer.context().revoke.lock() {
                let parts = &self.partitions;
                let newer = |p: &i32, off: &mut i64| {
                    parts
                        .get(p)
                        .and_then(|st| st.last_committed)
                        .is_none_or(|c| *off > c)
                };
                r.offsets.retain(newer);
                r.consumed.retain(newer);
            }
        }
    }

    /// The purged-through time kept as the shadow group's offset (for brokers that drop commit
    /// metadata, like tansu 0.6); 0 when there is none.
    fn shadow_purged_through(&self, partition: i32) -> UnixNanos {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.traces_topic, partition);
        match self
            .consumer
            .context()
            .shadow
            .committed_offsets(tpl, BROKER_TIMEOUT)
        {
            Ok(c) => match c
                .find_partition(&self.traces_topic, partition)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(o)) if o > 0 => o as UnixNanos,
                _ => 0,
            },
            Err(e) => {
                tracing::warn!(
                    "kafka: cannot read the purged-through time of partition {partition}: {e}"
                );
                0
            }
        }
    }

    /// Checks the brokers answer and updates the lag gauges.
    ///
    /// No request goes through the main consumer's connection here: the broker answers it only
    /// after the fetch in flight (up to `fetch.wait.max.ms`), so per-partition round trips from
    /// the poll loop stalled consumption (docs/kafka-exactness.md). The metadata
    /// check uses the shadow group's client, which never fetches; the lag uses the high
    /// watermarks librdkafka's statistics report.
    fn check_brokers(&mut self) {
        match self
            .consumer
            .context()
            .shadow
            .fetch_metadata(Some(&self.traces_topic), BROKER_TIMEOUT)
        {
            Ok(_) => self.health.set(None),
            Err(e) => {
                self.health
                    .set(Some(format!("Kafka brokers do not answer: {e}")));
                return;
            }
        }
        let Ok(high) = self
            .consumer
            .context()
            .high_watermarks
            .lock()
            .map(|h| h.clone())
        else {
            return;
        };
        for (p, st) in self.partitions.iter() {
            let (Some(pos), Some(high)) = (st.next_offset, high.get(p)) else {
                continue;
            };
            // The broker's high watermark can be wrong (tansu); never report a negative lag.
            st.lag.set(high.saturating_sub(pos).max(0) as f64);
        }
    }
}
