//! The Kafka sink (`exporters.kafka`, docs/kafka-exactness.md): final RED windows as OTLP metrics and
//! anomaly / prediction spans as OTLP traces, one export request per message.
//!
//! It runs on the operator task as a [`RedSink`]: it encodes and hands the message to
//! librdkafka's bounded queue. A full queue is backpressure, not a drop: the operator task waits
//! for room (so the pipeline queue fills and the Kafka source pauses its partitions). Every
//! record gets a sequence number that stays outstanding until the broker acknowledged it; a
//! record the broker did not take (`message.timeout.ms`) is sent again, and stays outstanding
//! meanwhile. The Kafka source asks [`SinkProgress`] before committing offsets, so an offset is
//! committed only after the windows it fed reached the sink topic (docs/kafka-exactness.md).

use super::fleet::wire::{self, STATE_HEADER};
use super::records::{partition_for, red_key, share_label, RedRecordBuilder};
use crate::config::{FleetConfig, FleetRole};
use crate::config::{KafkaEncoding, KafkaExporterConfig, KafkaReceiverConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use rdkafka::message::DeliveryResult;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Partitioner, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use redwatch_engine::telemetry::{Counter, Gauge, Registry};
use redwatch_operators::red::{RedConfig, RedRow, RedSink};
use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How long the operator task waits before offering a record again to a full producer queue.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(5);
/// How often records the broker did not take are sent again.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// Which records are on their way to the broker, by sequence number.
#[derive(Debug, Default)]
pub struct SinkProgress {
    state: Mutex<ProgressState>,
}

#[derive(Debug, Default)]
struct ProgressState {
    next: u64,
    outstanding: BTreeSet<u64>,
}

impl SinkProgress {
    pub(super) fn begin(&self) -> u64 {
        let Ok(mut s) = self.state.lock() else {
            return 0;
        };
        let seq = s.next;
        s.next += 1;
        s.outstanding.insert(seq);
        seq
    }

    pub(super) fn done(&self, seq: u64) -> usize {
        match self.state.lock() {
            Ok(mut s) => {
                s.outstanding.remove(&seq);
                s.outstanding.len()
            }
            Err(_) => 0,
        }
    }

    /// A mark after every record handed to the sink so far.
    pub fn mark(&self) -> u64 {
        self.state.lock().map(|s| s.next).unwrap_or(u64::MAX)
    }

    /// Whether every record before `mark` was acknowledged by the broker (or failed and was
    /// counted).
    pub fn passed(&self, mark: u64) -> bool {
        match self.state.lock() {
            Ok(s) => s.outstanding.first().is_none_or(|first| *first >= mark),
            Err(_) => false,
        }
    }

    /// Records on their way.
    pub fn outstanding(&self) -> usize {
        self.state.lock().map(|s| s.outstanding.len()).unwrap_or(0)
    }
}

/// Picks the partition from the series part of the key (see `records`).
pub struct SeriesPartitioner;

impl Partitioner for SeriesPartitioner {
    fn partition(
        &self,
        _topic: &str,
        key: Option<&[u8]>,
        partition_cnt: i32,
        _available: impl Fn(i32) -> bool,
    ) -> i32 {
        partition_for(key.unwrap_or_default(), partition_cnt)
    }
}

/// A record the broker did not take, to send again (same sequence number).
struct Failed {
    topic: String,
    key: Vec<u8>,
    payload: Vec<u8>,
    /// The fleet state header (`fleet::wire`), when the record has one.
    state: Option<Vec<u8>>,
    seq: u64,
}

struct SinkContext {
    progress: Arc<SinkProgress>,
    partitioner: SeriesPartitioner,
    delivered: Arc<Counter>,
    failed: Arc<Counter>,
    depth: Arc<Gauge>,
    retry: Arc<Mutex<VecDeque<Failed>>>,
}

impl ClientContext for SinkContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!("kafka sink: {error}: {reason}");
    }
}

impl ProducerContext<SeriesPartitioner> for SinkContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        match result {
            Ok(_) => {
                self.delivered.inc();
                let left = self.progress.done(seq as u64);
                self.depth.set(left as f64);
            }
            Err((e, msg)) => {
                // Still outstanding: offsets of the windows it carries stay uncommitted until
                // the retry is delivered.
                self.failed.inc();
                tracing::warn!("kafka sink: a record was not delivered (sent again): {e}");
                use rdkafka::message::{Headers as _, Message as _};
                let state = msg.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == STATE_HEADER)
                        .and_then(|h| h.value.map(<[u8]>::to_vec))
                });
                if let Ok(mut q) = self.retry.lock() {
                    q.push_back(Failed {
                        topic: msg.topic().to_string(),
                        key: msg.key().unwrap_or_default().to_vec(),
                        payload: msg.payload().unwrap_or_default().to_vec(),
                        state,
                        seq: seq as u64,
                    });
                }
            }
        }
    }

    fn get_custom_partitioner(&self) -> Option<&SeriesPartitioner> {
        Some(&self.partitioner)
    }
}

/// What went wrong starting the Kafka sink.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSinkError {
    /// The config cannot work; retrying will not help.
    #[error("{0}")]
    Config(String),
    /// librdkafka refused the producer config; retrying will not help.
    #[error("kafka producer: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
}

/// The librdkafka producer config of the sink: bounded queue, ordered retries, then
/// `cfg.librdkafka` on top.
pub fn sink_producer_config(cfg: &KafkaExporterConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.join(","))
        .set("client.id", &cfg.client_id)
        .set("queue.buffering.max.messages", cfg.queue_size.to_string())
        .set("linger.ms", "5")
        // A topic-level property: librdkafka then has a default topic config, which the custom
        // partitioner is registered on (without one, rdkafka 0.39 dereferences a null config).
        .set("message.timeout.ms", "300000")
        // A re-emitted window must land after the earlier record of its key.
        .set("max.in.flight.requests.per.connection", "1");
    for (k, v) in &cfg.librdkafka {
        c.set(k, v);
    }
    c
}

struct SinkCounters {
    red_records: Arc<Counter>,
    span_records: Arc<Counter>,
    queue_full_waits: Arc<Counter>,
    dropped_other: Arc<Counter>,
    depth: Arc<Gauge>,
}

/// The Kafka sink; register it as a [`RedSink`] and hand it anomaly / prediction spans.
pub struct KafkaSink {
    producer: ThreadedProducer<SinkContext, SeriesPartitioner>,
    progress: Arc<SinkProgress>,
    /// Where RED records go: `exporters.kafka.metrics_topic`, or in a fleet the shuffle topic
    /// (ingest) or the results topic (merge).
    metrics_topic: Option<String>,
    /// Fleet roles: every RED record carries its exact state (`fleet::wire`).
    state_header: bool,
    /// The merge role writes merged windows under one share label, `merged`.
    fixed_share: Option<String>,
    spans_topic: Option<String>,
    encoding: KafkaEncoding,
    builder: RedRecordBuilder,
    retry: Arc<Mutex<VecDeque<Failed>>>,
    /// The traces topic the source partitions of shares belong to (share labels).
    traces_topic: String,
    client_id: String,
    counters: SinkCounters,
}

impl KafkaSink {
    /// Creates the producer for `exporters.kafka` (`exporter`, which must be set and valid):
    /// its topics follow `fleet`'s role, its records `red`'s dimensions and bounds, and share
    /// labels name `source`'s (`receivers.kafka`) traces topic.
    pub fn new(
        exporter: Option<&KafkaExporterConfig>,
        fleet: &FleetConfig,
        red: &RedConfig,
        source: Option<&KafkaReceiverConfig>,
        registry: &Registry,
    ) -> Result<Arc<KafkaSink>, KafkaSinkError> {
        let Some(k) = exporter else {
            return Err(KafkaSinkError::Config(
                "exporters.kafka is not configured".into(),
            ));
        };
        let problems = k.validate_in("exporters.kafka", fleet.role != FleetRole::All);
        if !problems.is_empty() {
            let list: Vec<String> = problems.iter().map(|(p, m)| format!("{p}: {m}")).collect();
            return Err(KafkaSinkError::Config(list.join("; ")));
        }
        let progress = Arc::new(SinkProgress::default());
        let retry = Arc::new(Mutex::new(VecDeque::new()));
        let depth = registry.gauge(
            "redwatch_kafka_sink_queue_depth",
            "Kafka sink records waiting for the broker's acknowledgement.",
            &[],
        );
        let ctx = SinkContext {
            progress: progress.clone(),
            partitioner: SeriesPartitioner,
            delivered: registry.counter(
                "redwatch_kafka_sink_delivered_total",
                "Kafka sink records acknowledged by the broker.",
                &[],
            ),
            failed: registry.counter(
                "redwatch_kafka_sink_delivery_failed_total",
                "Kafka sink records the broker did not take before message.timeout.ms (sent again).",
                &[],
            ),
            depth: depth.clone(),
            retry: retry.clone(),
        };
        let producer = sink_producer_config(k).create_with_context(ctx)?;
        let records = |kind: &str| {
            registry.counter(
                "redwatch_kafka_sink_records_total",
                "Records handed to the Kafka sink's producer, per kind (red, spans).",
                &[("kind", kind)],
            )
        };
        let dropped = |reason: &str| {
            registry.counter(
                "redwatch_kafka_sink_dropped_total",
                "Kafka sink records dropped before reaching the producer, per reason.",
                &[("reason", reason)],
            )
        };
        let (metrics_topic, state_header, fixed_share) = match fleet.role {
            FleetRole::All => (k.metrics_topic.clone(), false, None),
            FleetRole::Ingest => (Some(fleet.shuffle_topic.clone()), true, None),
            FleetRole::Merge => (
                Some(fleet.results_topic.clone()),
                true,
                Some(MERGED_SHARE.to_string()),
            ),
        };
        let sink = Arc::new(KafkaSink {
            producer,
            progress,
            retry,
            metrics_topic,
            state_header,
            fixed_share,
            spans_topic: k.spans_topic.clone(),
            encoding: k.encoding,
            traces_topic: source.map_or_else(String::new, |r| r.traces_topic.clone()),
            client_id: k.client_id.clone(),
            builder: RedRecordBuilder {
                dims: red.dimensions.iter().map(|d| d.name.clone()).collect(),
                bounds: red.buckets_ms.clone(),
            },
            counters: SinkCounters {
                red_records: records("red"),
                span_records: records("spans"),
                queue_full_waits: registry.counter(
                    "redwatch_kafka_sink_queue_full_waits_total",
                    "Times the Kafka sink waited for room in the producer queue (backpressure).",
                    &[],
                ),
                dropped_other: dropped("producer_error"),
                depth,
            },
        });
        let weak = Arc::downgrade(&sink);
        std::thread::Builder::new()
            .name("kafka-sink-retry".into())
            .spawn(move || retry_loop(weak))
            .map_err(|e| KafkaSinkError::Config(format!("cannot start the retry thread: {e}")))?;
        Ok(sink)
    }

    /// Delivery progress, for the Kafka source's commit gate.
    pub fn progress(&self) -> Arc<SinkProgress> {
        self.progress.clone()
    }

    fn encode<M: Message + serde::Serialize>(&self, m: &M) -> Option<Vec<u8>> {
        match self.encoding {
            KafkaEncoding::OtlpProto => Some(m.encode_to_vec()),
            KafkaEncoding::OtlpJson => match serde_json::to_vec(m) {
                Ok(v) => Some(v),
                Err(e) => {
                    tracing::warn!("kafka sink: cannot encode a record as JSON: {e}");
                    self.counters.dropped_other.inc();
                    None
                }
            },
        }
    }

    /// Queues a record, waiting for room while the producer queue is full (backpressure, never
    /// a drop). Only a record librdkafka refuses outright (e.g. over `message.max.bytes`) is
    /// dropped and counted.
    fn send(&self, topic: &str, key: &[u8], payload: &[u8], state: Option<&[u8]>) -> bool {
        let seq = self.progress.begin();
        loop {
            let mut rec = BaseRecord::with_opaque_to(topic, seq as usize)
                .key(key)
                .payload(payload);
            if let Some(v) = state {
                rec = rec.headers(state_headers(v));
            }
            match self.producer.send(rec) {
                Ok(()) => {
                    self.counters.depth.set(self.progress.outstanding() as f64);
                    return true;
                }
                Err((e, _))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    self.counters.queue_full_waits.inc();
                    std::thread::sleep(QUEUE_FULL_WAIT);
                }
                Err((e, _)) => {
                    self.progress.done(seq);
                    self.counters.dropped_other.inc();
                    tracing::warn!("kafka sink: cannot queue a record: {e}");
                    return false;
                }
            }
        }
    }

    /// Sends again the records the broker did not take, in the order they failed.
    fn retry_failed(&self) {
        loop {
            let Some(f) = self.retry.lock().ok().and_then(|mut q| q.pop_front()) else {
                return;
            };
            let mut rec = BaseRecord::with_opaque_to(&f.topic, f.seq as usize)
                .key(&f.key)
                .payload(&f.payload);
            if let Some(v) = &f.state {
                rec = rec.headers(state_headers(v));
            }
            if let Err((e, _)) = self.producer.send(rec) {
                if e.rdkafka_error_code() != Some(rdkafka::types::RDKafkaErrorCode::QueueFull) {
                    tracing::warn!("kafka sink: cannot queue a record again (retried): {e}");
                }
                if let Ok(mut q) = self.retry.lock() {
                    q.push_front(f);
                }
                return;
            }
        }
    }

    /// Writes one `ExportTraceServiceRequest` holding `spans`, keyed by the trace id of its
    /// first span (an incident's spans share it, so they stay in one partition, in order).
    pub fn export_spans(&self, spans: ResourceSpans) -> bool {
        let Some(topic) = &self.spans_topic else {
            return false;
        };
        let key: String = spans
            .scope_spans
            .iter()
            .flat_map(|s| s.spans.first())
            .next()
            .map(|s| s.trace_id.iter().map(|b| format!("{b:02x}")).collect())
            .unwrap_or_default();
        let req = ExportTraceServiceRequest {
            resource_spans: vec![spans],
        };
        let Some(payload) = self.encode(&req) else {
            return false;
        };
        self.counters.span_records.inc();
        self.send(topic, key.as_bytes(), &payload, None)
    }

    /// Waits up to `timeout` for queued records to be delivered (on shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(
                "kafka sink: {} records not delivered at shutdown: {e}",
                self.progress.outstanding()
            );
        }
    }
}

/// The share label of the merge role's records on the results topic.
pub const MERGED_SHARE: &str = "merged";

fn state_headers(v: &[u8]) -> OwnedHeaders {
    OwnedHeaders::new().insert(Header {
        key: STATE_HEADER,
        value: Some(v),
    })
}

/// The anomaly stream's spans (`exporters.kafka.spans_topic`): see [`KafkaSink::export_spans`].
impl crate::otlp_exporter::signal_spans::SpanDestination for KafkaSink {
    fn export_spans(&self, spans: ResourceSpans) -> bool {
        KafkaSink::export_spans(self, spans)
    }
}

/// Sends failed records again until the sink is dropped.
fn retry_loop(sink: Weak<KafkaSink>) {
    loop {
        std::thread::sleep(RETRY_EVERY);
        let Some(s) = sink.upgrade() else { return };
        s.retry_failed();
    }
}

impl RedSink for KafkaSink {
    fn on_final(&self, rows: &[RedRow]) {
        let Some(topic) = &self.metrics_topic else {
            return;
        };
        for r in rows.iter().filter(|r| r.is_final) {
            let share = match &self.fixed_share {
                Some(s) => s.clone(),
                None => share_label(r.share, &self.traces_topic, &self.client_id),
            };
            let Some(payload) = self.encode(&self.builder.request(r, &share)) else {
                continue;
            };
            let state = self.state_header.then(|| wire::encode(r, &share));
            self.counters.red_records.inc();
            self.send(
                topic,
                red_key(r, &share).as_bytes(),
                &payload,
                state.as_deref(),
            );
        }
    }

    fn wants_shares(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_passes_a_mark_once_everything_before_it_is_acknowledged() {
        let p = SinkProgress::default();
        assert!(p.passed(p.mark()));
        let a = p.begin();
        let b = p.begin();
        let m = p.mark();
        let c = p.begin();
        assert!(!p.passed(m));
        p.done(b);
        assert!(!p.passed(m));
        p.done(a);
        assert!(p.passed(m), "c came after the mark");
        assert!(!p.passed(p.mark()));
        p.done(c);
        assert!(p.passed(p.mark()));
        assert_eq!(p.outstanding(), 0);
    }
}
