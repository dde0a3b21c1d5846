//! The Kafka source (docs/kafka-exactness.md): OTLP export requests consumed from Kafka topics.
//!
//! Owns the consumer, the per-partition event-time sources, backpressure (pausing partitions),
//! offset commits that wait for purged and delivered windows, bad-message accounting and the
//! dead-letter copy. It decodes with the OTLP decoders and never aggregates. The Kafka sink
//! (`sink.rs`, `records.rs`) writes final RED windows (one record per source partition's
//! share) and anomaly / prediction spans back to Kafka.
//!
//! Files: `source` (start and the poll loop), `partitions` (join, assignment, revoke, reading
//! where a partition starts), `ingest` (decode, replay skipping, backpressure, dead letters),
//! `commit` (commits and broker health), `rebalance` (librdkafka callbacks), `offsets` (what is
//! committable), `counters`; `fleet/` is a fleet's merge role and results reader
//! (docs/fleet.md).

mod commit;
mod counters;
pub mod fleet;
mod ingest;
mod offsets;
mod partitions;
mod rebalance;
pub mod records;
mod sink;
mod source;

pub use offsets::{commit_metadata, parse_commit_metadata, CommitTracker};
/// The rdkafka crate this source is built with (tests and tools use it to produce and administer).
pub use rdkafka;
pub use sink::{sink_producer_config, KafkaSink, KafkaSinkError, SinkProgress};
pub use source::{KafkaSource, KafkaSourceHandle, StartupHold};

use crate::config::KafkaReceiverConfig;
use rdkafka::ClientConfig;

/// Rejection reasons of `redwatch_kafka_messages_rejected_total{reason}`.
pub const MESSAGE_REJECT_REASONS: &[&str] = &[
    "malformed",
    "invalid_utf8",
    "invalid_json",
    "too_many_items",
    "empty",
    "backpressure",
];

/// What went wrong starting the Kafka source.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    /// The config cannot work (no brokers, an empty topic name); retrying will not help.
    #[error("{0}")]
    Config(String),
    /// librdkafka refused the client config or the subscription; retrying will not help.
    #[error("kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
}

/// The librdkafka consumer config for `cfg`: manual commits, earliest offset for a new group,
/// then `cfg.librdkafka` on top.
pub fn consumer_config(cfg: &KafkaReceiverConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.join(","))
        .set("group.id", &cfg.group_id)
        .set("client.id", &cfg.client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // Consumer lag comes from the statistics (no watermark round trip per partition).
        .set("statistics.interval.ms", "5000");
    for (k, v) in &cfg.librdkafka {
        c.set(k, v);
    }
    c
}

/// The member-less consumer group whose committed offsets hold each partition's purged-through
/// time, for brokers that drop commit metadata.
pub fn shadow_group(cfg: &KafkaReceiverConfig) -> String {
    format!("{}.redwatch-purged-through", cfg.group_id)
}

/// The librdkafka producer config (dead-letter topic) for `cfg`.
pub fn producer_config(cfg: &KafkaReceiverConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", cfg.brokers.join(","))
        .set("client.id", &cfg.client_id);
    for (k, v) in &cfg.librdkafka {
        // Consumer-only properties would make the producer refuse to start.
        if !matches!(
            k.as_str(),
            "group.id" | "enable.auto.commit" | "auto.offset.reset" | "session.timeout.ms"
        ) {
            c.set(k, v);
        }
    }
    c
}

/// Checks what serde cannot: every problem, with its path (the same checks
/// `Config::validate` runs on `receivers.kafka`).
pub fn validate(cfg: &KafkaReceiverConfig) -> Result<(), KafkaSourceError> {
    let problems: Vec<String> = cfg
        .validate("receivers.kafka")
        .into_iter()
        .map(|(p, m)| format!("{p}: {m}"))
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(KafkaSourceError::Config(problems.join("; ")))
    }
}
