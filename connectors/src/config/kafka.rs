//! The Kafka sink's config (`exporters.kafka`) and the checks of both Kafka sections
//! (`receivers.kafka`, `exporters.kafka`) that serde cannot express.

use super::receivers::{KafkaEncoding, KafkaReceiverConfig};
use serde::{Deserialize, Serialize};

/// The Kafka sink (docs/kafka-exactness.md): final RED windows as OTLP metrics and anomaly /
/// prediction spans as OTLP traces, one export request per message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaExporterConfig {
    /// Bootstrap brokers, `host:port`.
    pub brokers: Vec<String>,
    /// Topic for final RED windows (`ExportMetricsServiceRequest`, one window of one series per
    /// message, keyed by window spec, window start and series); `null` = not written.
    pub metrics_topic: Option<String>,
    /// Topic for `anomaly_detected` and `metric_prediction` spans (`ExportTraceServiceRequest`,
    /// keyed by trace id); `null` = not written.
    pub spans_topic: Option<String>,
    /// `client.id` reported to the brokers.
    pub client_id: String,
    /// Encoding of the message values: `otlp_proto` or `otlp_json`.
    pub encoding: KafkaEncoding,
    /// Messages that may wait for delivery; when that many wait, the operators wait for room
    /// (backpressure up to the Kafka source, which pauses its partitions): nothing is dropped.
    pub queue_size: usize,
    /// Extra librdkafka producer properties passed through as they are (security, tuning),
    /// e.g. `security.protocol: SASL_SSL`. They override redwatch's own settings.
    pub librdkafka: std::collections::BTreeMap<String, String>,
}

impl Default for KafkaExporterConfig {
    fn default() -> Self {
        Self {
            brokers: vec!["127.0.0.1:9092".to_string()],
            metrics_topic: Some("redwatch_red_metrics".to_string()),
            spans_topic: Some("redwatch_signals".to_string()),
            client_id: "redwatch".to_string(),
            encoding: KafkaEncoding::OtlpProto,
            queue_size: 100_000,
            librdkafka: std::collections::BTreeMap::new(),
        }
    }
}

fn check_brokers(brokers: &[String], path: &str, out: &mut Vec<(String, String)>) {
    if brokers.is_empty() {
        out.push((
            format!("{path}.brokers"),
            "list at least one host:port".into(),
        ));
    }
    for (i, b) in brokers.iter().enumerate() {
        let b = b.trim();
        let ok = b
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !ok {
            out.push((
                format!("{path}.brokers[{i}]"),
                format!("`{b}` is not host:port"),
            ));
        }
    }
}

/// Kafka's own rule for topic names.
fn check_topic(topic: &str, key: String, out: &mut Vec<(String, String)>) {
    let ok = !topic.is_empty()
        && topic.len() <= 249
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        out.push((
            key,
            format!(
                "`{topic}` is not a valid Kafka topic name ([a-zA-Z0-9._-], 1 to 249 characters)"
            ),
        ));
    }
}

fn check_librdkafka(
    props: &std::collections::BTreeMap<String, String>,
    path: &str,
    out: &mut Vec<(String, String)>,
) {
    for k in props.keys() {
        if k.trim().is_empty() || k.contains(char::is_whitespace) {
            out.push((
                format!("{path}.librdkafka"),
                format!("`{k}` is not a librdkafka property name"),
            ));
        }
    }
}

/// librdkafka properties of the Kafka source that redwatch sets itself: overriding one breaks
/// the commit scheme that keeps results exact (docs/kafka-exactness.md), with why.
pub const RESERVED_SOURCE_PROPERTIES: &[(&str, &str)] = &[
    (
        "enable.auto.commit",
        "redwatch commits offsets itself, only once the windows they fed are purged and delivered",
    ),
    (
        "enable.auto.offset.store",
        "redwatch stores offsets itself, only once the windows they fed are purged and delivered",
    ),
    (
        "auto.commit.enable",
        "redwatch commits offsets itself, only once the windows they fed are purged and delivered",
    ),
    ("group.id", "set receivers.kafka.group_id instead"),
    ("bootstrap.servers", "set receivers.kafka.brokers instead"),
    (
        "metadata.broker.list",
        "set receivers.kafka.brokers instead",
    ),
    ("client.id", "set receivers.kafka.client_id instead"),
    (
        "enable.partition.eof",
        "the consume loop does not expect end-of-partition events",
    ),
    (
        "isolation.level",
        "read_uncommitted would count messages of aborted transactions",
    ),
    (
        "group.protocol",
        "the incremental (KIP-848) protocol changes how revokes are committed",
    ),
    (
        "partition.assignment.strategy",
        "cooperative assignment changes how revokes are committed",
    ),
    (
        "group.instance.id",
        "static membership keeps partitions of a stopped instance without a revoke",
    ),
    (
        "statistics.interval.ms",
        "redwatch reads consumer lag from librdkafka's statistics",
    ),
];

impl KafkaReceiverConfig {
    /// Every problem of this section, as (dotted path, message); `path` is where the section
    /// sits (`receivers.kafka`). Pure.
    pub fn validate(&self, path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        check_brokers(&self.brokers, path, &mut out);
        check_topic(&self.traces_topic, format!("{path}.traces_topic"), &mut out);
        if let Some(t) = &self.metrics_topic {
            check_topic(t, format!("{path}.metrics_topic"), &mut out);
            if *t == self.traces_topic {
                out.push((
                    format!("{path}.metrics_topic"),
                    "must differ from traces_topic".into(),
                ));
            }
        }
        if let Some(t) = &self.dead_letter_topic {
            check_topic(t, format!("{path}.dead_letter_topic"), &mut out);
            if *t == self.traces_topic || self.metrics_topic.as_ref() == Some(t) {
                out.push((
                    format!("{path}.dead_letter_topic"),
                    "must differ from the topics consumed".into(),
                ));
            }
        }
        if self.group_id.trim().is_empty() {
            out.push((format!("{path}.group_id"), "must not be empty".into()));
        }
        check_librdkafka(&self.librdkafka, path, &mut out);
        for k in self.librdkafka.keys() {
            if let Some((_, why)) = RESERVED_SOURCE_PROPERTIES.iter().find(|(r, _)| r == k) {
                out.push((
                    format!("{path}.librdkafka.{k}"),
                    format!("cannot be overridden: {why}"),
                ));
            }
        }
        out
    }
}

impl KafkaExporterConfig {
    /// Every problem of this section, as (dotted path, message); `path` is where the section
    /// sits (`exporters.kafka`). Pure.
    pub fn validate(&self, path: &str) -> Vec<(String, String)> {
        self.validate_in(path, false)
    }

    /// [`Self::validate`] for an instance of a fleet (`fleet.role` ingest or merge, `in_fleet`),
    /// whose RED windows go to the fleet's topics whatever `metrics_topic` says.
    pub fn validate_in(&self, path: &str, in_fleet: bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        check_brokers(&self.brokers, path, &mut out);
        if self.metrics_topic.is_none() && self.spans_topic.is_none() && !in_fleet {
            out.push((
                format!("{path}.metrics_topic"),
                "set metrics_topic, spans_topic or both (or remove exporters.kafka)".into(),
            ));
        }
        if let Some(t) = &self.metrics_topic {
            check_topic(t, format!("{path}.metrics_topic"), &mut out);
        }
        if let Some(t) = &self.spans_topic {
            check_topic(t, format!("{path}.spans_topic"), &mut out);
        }
        if self.queue_size == 0 || self.queue_size > 10_000_000 {
            out.push((
                format!("{path}.queue_size"),
                "must be between 1 and 10000000".into(),
            ));
        }
        check_librdkafka(&self.librdkafka, path, &mut out);
        out
    }
}
