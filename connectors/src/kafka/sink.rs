//! The Kafka sink (`exporters.kafka`, DESIGN.md "Kafka"): final RED windows as OTLP metrics and
//! anomaly / prediction spans as OTLP traces, one export request per message.
//!
//! It runs on the operator task as a [`RedSink`], so it only encodes and hands the message to
//! librdkafka's bounded queue; it never waits. A full queue drops the record and counts it.
//! Every record gets a sequence number that stays outstanding until the broker acknowledged
//! it (or it failed); the Kafka source asks [`SinkProgress`] before committing offsets, so an
//! offset is committed only after the windows it fed reached the sink topic.

use super::records::{partition_for, red_key, RedRecordBuilder};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Partitioner, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use redwatch_engine::config::{Config, KafkaEncoding, KafkaExporterConfig};
use redwatch_engine::telemetry::{Counter, Gauge, Registry};
use redwatch_operators::red::{RedRow, RedSink};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    fn begin(&self) -> u64 {
        let Ok(mut s) = self.state.lock() else {
            return 0;
        };
        let seq = s.next;
        s.next += 1;
        s.outstanding.insert(seq);
        seq
    }

    fn done(&self, seq: u64) -> usize {
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

struct SinkContext {
    progress: Arc<SinkProgress>,
    partitioner: SeriesPartitioner,
    delivered: Arc<Counter>,
    failed: Arc<Counter>,
    depth: Arc<Gauge>,
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
            Ok(_) => self.delivered.inc(),
            Err((e, _)) => {
                self.failed.inc();
                tracing::warn!("kafka sink: a record was not delivered: {e}");
            }
        }
        let left = self.progress.done(seq as u64);
        self.depth.set(left as f64);
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
    dropped_queue_full: Arc<Counter>,
    dropped_other: Arc<Counter>,
    depth: Arc<Gauge>,
}

/// The Kafka sink; register it as a [`RedSink`] and hand it anomaly / prediction spans.
pub struct KafkaSink {
    producer: ThreadedProducer<SinkContext, SeriesPartitioner>,
    progress: Arc<SinkProgress>,
    metrics_topic: Option<String>,
    spans_topic: Option<String>,
    encoding: KafkaEncoding,
    builder: RedRecordBuilder,
    counters: SinkCounters,
}

impl KafkaSink {
    /// Creates the producer for `cfg.exporters.kafka` (which must be set and valid).
    pub fn new(cfg: &Config, registry: &Registry) -> Result<Arc<KafkaSink>, KafkaSinkError> {
        let Some(k) = &cfg.exporters.kafka else {
            return Err(KafkaSinkError::Config(
                "exporters.kafka is not configured".into(),
            ));
        };
        let problems = k.validate("exporters.kafka");
        if !problems.is_empty() {
            let list: Vec<String> = problems.iter().map(|(p, m)| format!("{p}: {m}")).collect();
            return Err(KafkaSinkError::Config(list.join("; ")));
        }
        let progress = Arc::new(SinkProgress::default());
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
                "Kafka sink records the broker did not take before message.timeout.ms (lost).",
                &[],
            ),
            depth: depth.clone(),
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
        Ok(Arc::new(KafkaSink {
            producer,
            progress,
            metrics_topic: k.metrics_topic.clone(),
            spans_topic: k.spans_topic.clone(),
            encoding: k.encoding,
            builder: RedRecordBuilder {
                dims: cfg.red.dimensions.iter().map(|d| d.name.clone()).collect(),
                bounds: cfg.red.buckets_ms.clone(),
            },
            counters: SinkCounters {
                red_records: records("red"),
                span_records: records("spans"),
                dropped_queue_full: dropped("queue_full"),
                dropped_other: dropped("producer_error"),
                depth,
            },
        }))
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

    fn send(&self, topic: &str, key: &[u8], payload: &[u8]) -> bool {
        let seq = self.progress.begin();
        let rec = BaseRecord::with_opaque_to(topic, seq as usize)
            .key(key)
            .payload(payload);
        match self.producer.send(rec) {
            Ok(()) => {
                self.counters.depth.set(self.progress.outstanding() as f64);
                true
            }
            Err((e, _)) => {
                self.progress.done(seq);
                if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) {
                    self.counters.dropped_queue_full.inc();
                } else {
                    self.counters.dropped_other.inc();
                    tracing::warn!("kafka sink: cannot queue a record: {e}");
                }
                false
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
        self.send(topic, key.as_bytes(), &payload)
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

impl RedSink for KafkaSink {
    fn on_final(&self, rows: &[RedRow]) {
        let Some(topic) = &self.metrics_topic else {
            return;
        };
        for r in rows.iter().filter(|r| r.is_final) {
            let Some(payload) = self.encode(&self.builder.request(r)) else {
                continue;
            };
            self.counters.red_records.inc();
            self.send(topic, red_key(r).as_bytes(), &payload);
        }
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
