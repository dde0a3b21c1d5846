//! The Kafka source's counters (labels: receiver `kafka`).

use super::MESSAGE_REJECT_REASONS;
use redwatch_engine::telemetry::{Counter, Registry};
use std::sync::Arc;

const RECEIVER: &str = "kafka";

/// Counters of the source (labels: receiver `kafka`).
pub(super) struct Counters {
    pub(super) messages: Arc<Counter>,
    pub(super) rejected: Vec<(&'static str, Arc<Counter>)>,
    pub(super) dead_lettered: Arc<Counter>,
    pub(super) spans_received: Arc<Counter>,
    pub(super) spans_accepted: Arc<Counter>,
    pub(super) spans_rejected: Vec<(&'static str, Arc<Counter>)>,
    pub(super) points_received: Arc<Counter>,
    pub(super) points_accepted: Arc<Counter>,
    pub(super) late: Arc<Counter>,
    pub(super) replay_skipped: Arc<Counter>,
    pub(super) missing_service: Arc<Counter>,
    pub(super) paused: Arc<Counter>,
    pub(super) commits: Arc<Counter>,
    pub(super) points_late: Arc<Counter>,
    pub(super) points_skipped: Arc<Counter>,
    pub(super) dead_letter_failed: Arc<Counter>,
    pub(super) truncated: Arc<Counter>,
}

/// One counter per reason.
fn per_reason(
    reasons: &[&'static str],
    counter: impl Fn(&str) -> Arc<Counter>,
) -> Vec<(&'static str, Arc<Counter>)> {
    reasons.iter().map(|r| (*r, counter(r))).collect()
}

impl Counters {
    pub(super) fn new(reg: &Registry) -> Self {
        let r = [("receiver", RECEIVER)];
        Counters {
            messages: reg.counter(
                "redwatch_kafka_messages_total",
                "Kafka messages consumed.",
                &[],
            ),
            rejected: per_reason(MESSAGE_REJECT_REASONS, |reason| {
                reg.counter(
                    "redwatch_kafka_messages_rejected_total",
                    "Kafka messages that could not be decoded, per reason (skipped).",
                    &[("reason", reason)],
                )
            }),
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
            spans_rejected: per_reason(crate::otlp::ITEM_REJECT_REASONS, |reason| {
                reg.counter(
                    "redwatch_spans_rejected_total",
                    "Spans refused individually (partial success), per receiver and reason.",
                    &[("receiver", RECEIVER), ("reason", reason)],
                )
            }),
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
            truncated: crate::otlp::strings_truncated_counter(reg),
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
            points_late: reg.counter(
                "redwatch_late_dropped_total",
                "Items dropped because their window was already purged.",
                &[("signal", "metrics")],
            ),
            points_skipped: reg.counter(
                "redwatch_kafka_replay_skipped_points_total",
                "Replayed metric points skipped after a restart because their windows were already final and purged.",
                &[],
            ),
            dead_letter_failed: reg.counter(
                "redwatch_kafka_dead_letter_failed_total",
                "Dead-letter copies the broker did not take (the offset is committed anyway, after the attempt).",
                &[],
            ),
        }
    }

    pub(super) fn reject(&self, reason: &str) {
        if let Some((_, c)) = self.rejected.iter().find(|(r, _)| *r == reason) {
            c.inc();
        }
    }
}
