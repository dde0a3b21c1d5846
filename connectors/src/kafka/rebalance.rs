//! The consumer's context: librdkafka callbacks (errors, statistics, rebalances) and
//! commit-on-revoke.
//!
//! librdkafka calls the rebalance callback from inside `poll`, and takes the partitions away
//! right after it returns; a commit issued later by the loop would race the next owner. So the
//! loop keeps fresh offsets here (every ~100 ms), and the revoke callback commits them while the
//! partitions are still this member's. It owns no partition state.
//!
//! A revoke commits only what is durable (docs/kafka-exactness.md): offsets after messages whose
//! windows, of every window spec, were purged and delivered, with the purged-through time. The
//! loop then drops the partition's share of the window state; the next owner replays from that
//! offset and rebuilds the open windows exactly as this instance would have.

use super::commit::{commit_with_purged_through, CommitFailed};
use rdkafka::consumer::{BaseConsumer, CommitMode, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use redwatch_engine::model::UnixNanos;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// A topic-partition, by topic name.
pub(super) type TopicPartition = (String, i32);

/// Rebalance events, handed from librdkafka's callback to the loop.
#[derive(Debug)]
pub(super) enum Assignment {
    Assigned(Vec<TopicPartition>),
    Revoked(Vec<TopicPartition>),
}

/// Offsets that may be committed, with their purged-through times.
#[derive(Debug, Default)]
pub(super) struct RevokeCommits {
    /// Per partition: the next offset after messages that fed only purged (and delivered)
    /// windows, and the purged-through time that goes with it.
    pub offsets: HashMap<TopicPartition, (i64, UnixNanos)>,
    /// What the revoke callback committed, per partition.
    pub committed: HashMap<TopicPartition, i64>,
}

/// Why the source is not ready, shared with readiness checks.
#[derive(Debug, Default)]
pub(super) struct Health {
    /// `None` = the brokers answer; otherwise why not.
    pub problem: Mutex<Option<String>>,
    /// Partitions held paused because their committed offset or purged-through time could not
    /// be read yet, with the reason.
    pub unresolved: Mutex<BTreeMap<TopicPartition, String>>,
}

impl Health {
    pub fn set(&self, p: Option<String>) {
        if let Ok(mut g) = self.problem.lock() {
            if *g != p {
                match &p {
                    Some(m) => tracing::warn!("kafka source not ready: {m}"),
                    None => tracing::info!("kafka source connected"),
                }
                *g = p;
            }
        }
    }

    /// Records (or, with `None`, clears) why a partition is held paused.
    pub fn set_unresolved(&self, tp: &TopicPartition, why: Option<String>) {
        if let Ok(mut g) = self.unresolved.lock() {
            match why {
                Some(w) => {
                    g.insert(tp.clone(), w);
                }
                None => {
                    g.remove(tp);
                }
            }
        }
    }

    /// `Ok` when the brokers answer and every partition's offsets are known.
    pub fn ready(&self) -> Result<(), String> {
        if let Some(p) = self
            .problem
            .lock()
            .map_err(|_| "poisoned".to_string())?
            .clone()
        {
            return Err(p);
        }
        let u = self.unresolved.lock().map_err(|_| "poisoned".to_string())?;
        match u.iter().next() {
            None => Ok(()),
            Some(((t, p), why)) => Err(format!(
                "{} partition(s) held paused until their committed offset is known, e.g. {t}:{p}: {why}",
                u.len()
            )),
        }
    }
}

pub(super) struct SourceContext {
    pub events: Mutex<Vec<Assignment>>,
    pub health: Arc<Health>,
    pub revoke: Mutex<RevokeCommits>,
    /// The member-less group holding each partition's purged-through time as its offset.
    pub shadow: BaseConsumer,
    /// Consumer lag per partition, from librdkafka's statistics (no extra round trips).
    pub lag: Mutex<HashMap<TopicPartition, i64>>,
}

impl ClientContext for SourceContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode;
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.health
                .set(Some(format!("all Kafka brokers are down: {reason}")));
        } else {
            tracing::warn!("kafka: {error}: {reason}");
        }
    }

    fn stats(&self, stats: Statistics) {
        let Ok(mut lag) = self.lag.lock() else { return };
        for (topic, t) in &stats.topics {
            for (p, s) in &t.partitions {
                if *p >= 0 && s.consumer_lag >= 0 {
                    lag.insert((topic.clone(), *p), s.consumer_lag);
                }
            }
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

/// The shadow group's offset for purged-through time `wm`.
pub(super) fn shadow_offset(wm: UnixNanos) -> Offset {
    Offset::Offset(wm.min(i64::MAX as u64) as i64)
}

impl SourceContext {
    /// Commits the durable offsets of the revoked partitions (shadow group first, as in the
    /// loop's commits), while they are still ours.
    fn commit_on_revoke(&self, c: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let Ok(mut r) = self.revoke.lock() else {
            return;
        };
        let offsets: Vec<(TopicPartition, (i64, UnixNanos))> = tpl
            .elements()
            .iter()
            .filter_map(|e| {
                let tp = (e.topic().to_string(), e.partition());
                r.offsets.get(&tp).map(|&o| (tp, o))
            })
            .collect();
        if offsets.is_empty() {
            return;
        }
        match commit_with_purged_through(c, &self.shadow, &offsets, CommitMode::Sync) {
            Ok(()) => {
                tracing::info!(
                    "kafka: committed {offsets:?} ((topic, partition), (offset, purged-through)) on revoke"
                );
                for (tp, (off, _)) in offsets {
                    r.offsets.remove(&tp);
                    r.committed.insert(tp, off);
                }
            }
            Err(CommitFailed::Shadow(e)) => {
                tracing::warn!("kafka: cannot record the purged-through time on revoke: {e}")
            }
            Err(CommitFailed::Offsets(e)) => tracing::warn!("kafka: commit on revoke failed: {e}"),
        }
    }
}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.commit_on_revoke(c, tpl);
            if let Ok(mut ev) = self.events.lock() {
                ev.push(Assignment::Revoked(partitions(tpl)));
            }
        }
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                if let Ok(mut ev) = self.events.lock() {
                    ev.push(Assignment::Assigned(partitions(tpl)));
                }
            }
            Rebalance::Error(e) => tracing::warn!("kafka rebalance failed: {e}"),
            Rebalance::Revoke(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_names_a_partition_held_paused_until_its_offsets_are_known() {
        let h = Health::default();
        assert_eq!(h.ready(), Ok(()));
        let tp = ("otlp_spans".to_string(), 3);
        h.set_unresolved(
            &tp,
            Some("cannot read the committed offset: timed out".into()),
        );
        let why = h.ready().unwrap_err();
        assert!(why.contains("otlp_spans:3"), "{why}");
        assert!(why.contains("timed out"), "{why}");
        h.set_unresolved(&tp, None);
        assert_eq!(h.ready(), Ok(()));
        h.set(Some("all Kafka brokers are down".into()));
        assert_eq!(h.ready(), Err("all Kafka brokers are down".to_string()));
    }
}
