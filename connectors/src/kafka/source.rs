//! The consume loop: one blocking thread that polls the consumer and hands each message to the
//! partition it belongs to; rebalances (`partitions`), decoding and backpressure (`ingest`),
//! commits and broker checks (`commit`) live beside it. See docs/kafka-exactness.md.

use super::counters::Counters;
use super::partitions::{JoinHold, PartitionState, Signal, Topics};
use super::rebalance::{Health, RevokeCommits, SourceContext};
use super::sink::SinkProgress;
use super::{consumer_config, producer_config, KafkaSourceError};
use crate::config::{KafkaEncoding, KafkaReceiverConfig};
use crate::otlp::decode::DecodeSettings;
use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::ThreadedProducer;
use redwatch_engine::model::{SourceId, UnixNanos};
use redwatch_engine::pipeline::IngestHandle;
use redwatch_engine::telemetry::Registry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub(super) const POLL: Duration = Duration::from_millis(100);
/// How often offsets are committed, the brokers checked and the lag gauges updated.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// How often the offsets a revoke would commit are brought up to date.
const REVOKE_CANDIDATES: Duration = Duration::from_millis(100);

/// A running Kafka source, as seen from the outside (readiness).
#[derive(Debug, Clone)]
pub struct KafkaSourceHandle {
    health: Arc<Health>,
}

impl KafkaSourceHandle {
    /// `Ok` while the brokers answer and every assigned partition's committed offset is known;
    /// otherwise why not (for `/readyz`).
    pub fn ready(&self) -> Result<(), String> {
        self.health.ready()
    }
}

/// The Kafka source: build it with [`KafkaSource::start`].
pub struct KafkaSource;

/// The watermark hold registered before the pipeline runs (see [`KafkaSource::hold_watermark`]).
#[derive(Debug)]
pub struct StartupHold(pub(super) SourceId);

impl KafkaSource {
    /// Registers the source that holds the watermark until the first partitions are assigned.
    /// Call it before the pipeline task starts: otherwise its first tick, with no source holding,
    /// moves the watermark to the wall clock and the backlog of the partitions is late.
    pub async fn hold_watermark(cfg: &KafkaReceiverConfig, handle: &IngestHandle) -> StartupHold {
        let name = format!("kafka:{}:joining", cfg.traces_topic);
        StartupHold(handle.add_source(&name, true).await)
    }

    /// Creates the consumer, subscribes, and runs the consume loop on a blocking thread until
    /// `cancel`; then commits what is durable and leaves the group. With `sink` (the Kafka
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
        let health = Arc::new(Health::default());
        health.set(Some("not connected to Kafka yet".to_string()));
        // Never polled: no statistics (they would pile up in its queue). Its connection never
        // has a fetch in flight, so requests on it (commits, metadata) are answered at once; on
        // the main consumer's connection they wait behind the fetch (`fetch.wait.max.ms`).
        let shadow: BaseConsumer = {
            let mut c = consumer_config(cfg);
            c.set("group.id", super::shadow_group(cfg))
                .set("statistics.interval.ms", "0");
            c.create()?
        };
        let ctx = SourceContext {
            events: Mutex::new(Vec::new()),
            health: health.clone(),
            revoke: Mutex::new(RevokeCommits::default()),
            shadow,
            lag: Mutex::new(HashMap::new()),
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
                let progress = Arc::new(SinkProgress::default());
                let counters = Counters::new(&registry);
                let ctx = super::ingest::DeadLetterContext {
                    progress: progress.clone(),
                    failed: counters.dead_letter_failed.clone(),
                };
                let p: ThreadedProducer<super::ingest::DeadLetterContext> =
                    producer_config(cfg).create_with_context(ctx)?;
                Some(super::ingest::DeadLetter {
                    producer: p,
                    topic: t.clone(),
                    progress,
                })
            }
            None => None,
        };
        let rt = tokio::runtime::Handle::current();
        let mut run = Loop {
            consumer,
            topics: Topics {
                traces: cfg.traces_topic.clone(),
                metrics: cfg.metrics_topic.clone(),
            },
            encoding: cfg.encoding,
            handle,
            settings,
            counters: Counters::new(&registry),
            registry,
            partitions: HashMap::new(),
            dead_letter,
            health: health.clone(),
            rt,
            joining: hold.map(|h| JoinHold::new(h.0)),
            sink,
            gated: None,
            last_broker_check: None,
        };
        let task = tokio::task::spawn_blocking(move || run.run(cancel));
        Ok((KafkaSourceHandle { health }, task))
    }
}

pub(super) struct Loop {
    pub consumer: BaseConsumer<SourceContext>,
    pub topics: Topics,
    pub encoding: KafkaEncoding,
    pub handle: IngestHandle,
    pub settings: DecodeSettings,
    pub counters: Counters,
    pub registry: Arc<Registry>,
    pub partitions: HashMap<(Signal, i32), PartitionState>,
    pub dead_letter: Option<super::ingest::DeadLetter>,
    pub health: Arc<Health>,
    pub rt: tokio::runtime::Handle,
    pub joining: Option<JoinHold>,
    /// The Kafka sink's delivery progress, when there is a sink.
    pub sink: Option<Arc<SinkProgress>>,
    /// A watermark waiting for the sink and the dead-letter copies: (watermark, sink mark,
    /// dead-letter mark) taken right after it.
    pub gated: Option<(UnixNanos, u64, u64)>,
    pub last_broker_check: Option<Instant>,
}

impl Loop {
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
                    if let Some(signal) = self.topics.signal_of(&topic) {
                        self.on_message(signal, partition, offset, payload);
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
                self.resolve_due();
            }
            if last_housekeeping.elapsed() >= HOUSEKEEPING {
                last_housekeeping = Instant::now();
                self.commit(CommitMode::Async);
                self.check_brokers();
            }
        }
        // Staged shutdown: commit what is durable. The partitions' sources stay registered, so
        // they keep holding the watermark while the pipeline drains: windows still open are
        // not emitted (nothing partial reaches the sink) and their messages are not committed
        // (the restart replays them).
        self.commit(CommitMode::Sync);
        self.consumer.unsubscribe();
    }
}
