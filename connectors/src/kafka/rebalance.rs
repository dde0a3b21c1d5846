//! The consumer's context: librdkafka callbacks (errors, rebalances) and commit-on-revoke.
//!
//! librdkafka calls the rebalance callback from inside `poll`, and takes the partitions away
//! right after it returns; a commit issued later by the loop would race the next owner. So the
//! loop keeps fresh offsets here (every ~100 ms), and the revoke callback commits them while the
//! partitions are still this member's. It owns no partition state.
//!
//! Which offset a revoke commits:
//! - on shutdown, only what fed purged windows (the restart replays the rest and rebuilds the
//!   open windows);
//! - on a rebalance while this instance keeps running, everything it has consumed and queued:
//!   those messages sit in this instance's open windows, which it still emits, so the next owner
//!   must start after them or the union of the instances would count them twice. The price: if
//!   this instance dies before those windows close, their share of the revoked partition is
//!   lost (the at-least-once guarantee holds for crashes without a rebalance in between).

use super::offsets::commit_metadata;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use redwatch_engine::model::UnixNanos;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Rebalance events, handed from librdkafka's callback to the loop.
#[derive(Debug)]
pub(super) enum Assignment {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

/// Offsets of the traces topic that may be committed, with the watermark they belong to.
#[derive(Debug, Default)]
pub(super) struct RevokeCommits {
    /// The watermark whose purged windows the offsets cover (the commit metadata).
    pub wm: UnixNanos,
    /// Per partition: the next offset after messages that fed only purged windows, when it is
    /// beyond what was committed.
    pub offsets: HashMap<i32, i64>,
    /// Per partition: the next offset after everything consumed and queued (what a live
    /// rebalance commits).
    pub consumed: HashMap<i32, i64>,
    /// What the revoke callback committed, per partition (the loop takes it over).
    pub committed: HashMap<i32, i64>,
    /// The source is stopping: a revoke commits only `offsets`.
    pub shutting_down: bool,
}

/// Why the source is not ready, shared with readiness checks.
#[derive(Debug)]
pub(super) struct Health {
    /// `None` = connected; otherwise why not.
    pub problem: Mutex<Option<String>>,
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
}

pub(super) struct SourceContext {
    pub events: Mutex<Vec<Assignment>>,
    pub health: Arc<Health>,
    pub traces_topic: String,
    pub revoke: Mutex<RevokeCommits>,
    /// The member-less group holding each partition's purged-through time as its offset.
    pub shadow: BaseConsumer,
    /// High watermark per traces partition, from librdkafka's statistics (its fetch responses):
    /// the lag gauges read it here instead of asking the broker from the poll loop.
    pub high_watermarks: Mutex<HashMap<i32, i64>>,
}

impl ClientContext for SourceContext {
    fn stats(&self, stats: rdkafka::Statistics) {
        let Some(topic) = stats.topics.get(&self.traces_topic) else {
            return;
        };
        if let Ok(mut hw) = self.high_watermarks.lock() {
            for p in topic.partitions.values() {
                // -1 is librdkafka's internal "unassigned" partition; negative offsets are unknown.
                if p.partition >= 0 && p.hi_offset >= 0 {
                    hw.insert(p.partition, p.hi_offset);
                }
            }
        }
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode;
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.health
                .set(Some(format!("all Kafka brokers are down: {reason}")));
        } else {
            tracing::warn!("kafka: {error}: {reason}");
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl SourceContext {
    /// Commits the committable offsets of the revoked traces partitions (shadow group first, as
    /// in the loop's commits), while they are still ours.
    fn commit_on_revoke(&self, c: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let Ok(mut r) = self.revoke.lock() else {
            return;
        };
        let mut offsets = TopicPartitionList::new();
        let mut shadow = TopicPartitionList::new();
        let mut done = Vec::new();
        for e in tpl.elements() {
            if e.topic() != self.traces_topic {
                continue;
            }
            let purged = r.offsets.get(&e.partition()).copied();
            let consumed = if r.shutting_down {
                None
            } else {
                r.consumed.get(&e.partition()).copied()
            };
            let Some(off) = purged.max(consumed) else {
                continue;
            };
            let mut x = offsets.add_partition(&self.traces_topic, e.partition());
            if x.set_offset(Offset::Offset(off)).is_err() {
                continue;
            }
            x.set_metadata(commit_metadata(r.wm));
            let _ = shadow.add_partition_offset(
                &self.traces_topic,
                e.partition(),
                Offset::Offset(r.wm.min(i64::MAX as u64) as i64),
            );
            done.push((e.partition(), off));
        }
        if done.is_empty() {
            return;
        }
        if let Err(e) = self.shadow.commit(&shadow, CommitMode::Sync) {
            tracing::warn!("kafka: cannot record the purged-through time on revoke: {e}");
            return;
        }
        match c.commit(&offsets, CommitMode::Sync) {
            Ok(()) => {
                tracing::info!("kafka: committed {done:?} (partition, offset) on revoke");
                for (p, off) in done {
                    r.offsets.remove(&p);
                    r.consumed.remove(&p);
                    r.committed.insert(p, off);
                }
            }
            Err(e) => tracing::warn!("kafka: commit on revoke failed: {e}"),
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
