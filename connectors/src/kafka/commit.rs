//! Offset commits and broker health (docs/kafka-exactness.md, "Commits and purged-through
//! times").
//!
//! Every commit covers every assigned partition whose start is known — also those whose offset
//! did not move — with the purged-through time in the metadata and in the shadow group, so no
//! partition keeps an old time while the others move on. A commit that fails is simply made
//! again by the next one (each commit restates every partition). Offsets are committable only
//! up to messages whose windows, of every window spec, are purged at a watermark whose emitted
//! records the sink has delivered (and whose dead-letter copies were attempted).

use super::offsets::commit_metadata;
use super::rebalance::{shadow_offset, TopicPartition};
use super::source::Loop;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use redwatch_engine::model::UnixNanos;
use redwatch_engine::time::TimePolicy;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Which half of a commit failed.
#[derive(Debug)]
pub(super) enum CommitFailed {
    /// The shadow group's purged-through times: the offsets were not committed either.
    Shadow(KafkaError),
    /// The group's offsets (the purged-through times were recorded).
    Offsets(KafkaError),
}

/// The one commit sequence (docs/kafka-exactness.md): each partition's purged-through time
/// first as the offset of the member-less shadow group (for brokers that drop commit metadata;
/// its time must never be older than the one that belongs to the committed offset, or replay
/// would double-count), then the group's offsets with the same time in their metadata. Used by
/// the loop's commits and by the revoke callback.
pub(super) fn commit_with_purged_through<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    shadow: &BaseConsumer,
    offsets: &[(TopicPartition, (i64, UnixNanos))],
    mode: CommitMode,
) -> Result<(), CommitFailed> {
    let mut tpl = TopicPartitionList::new();
    let mut shadow_tpl = TopicPartitionList::new();
    for ((topic, p), (off, pt)) in offsets {
        let mut e = tpl.add_partition(topic, *p);
        if e.set_offset(Offset::Offset(*off)).is_err() {
            continue;
        }
        e.set_metadata(commit_metadata(*pt));
        let _ = shadow_tpl.add_partition_offset(topic, *p, shadow_offset(*pt));
    }
    shadow
        .commit(&shadow_tpl, CommitMode::Sync)
        .map_err(CommitFailed::Shadow)?;
    consumer.commit(&tpl, mode).map_err(CommitFailed::Offsets)
}

const BROKER_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the brokers are asked for metadata (the health check).
const BROKER_CHECK: Duration = Duration::from_secs(5);

impl Loop {
    /// The watermark whose purged windows have all reached the sink (the published one when
    /// there is no sink) and whose rejected messages' dead-letter copies were attempted. Windows
    /// purged at a watermark were emitted, and handed to the sink, before the pipeline
    /// published it; so a sink mark taken after reading the watermark covers them.
    fn committable_watermark(&mut self, policy: &TimePolicy) -> Option<UnixNanos> {
        let wm = policy.watermark();
        let sink_mark = self.sink.as_ref().map_or(0, |s| s.mark());
        let dl_mark = self.dead_letter.as_ref().map_or(0, |d| d.progress.mark());
        let passed = |l: &Loop, sm: u64, dm: u64| {
            l.sink.as_ref().is_none_or(|s| s.passed(sm))
                && l.dead_letter.as_ref().is_none_or(|d| d.progress.passed(dm))
        };
        if passed(self, sink_mark, dl_mark) {
            self.gated = None;
            return Some(wm);
        }
        let usable = match self.gated {
            Some((w, sm, dm)) if passed(self, sm, dm) => Some(w),
            _ => None,
        };
        if usable.is_some() || self.gated.is_none() {
            self.gated = Some((wm, sink_mark, dl_mark));
        }
        usable
    }

    /// Per partition whose start is known, the offset to commit at watermark `wm` and the
    /// purged-through time that goes with it. That time never goes back below the one the
    /// partition started with: early in a replay the watermark is still behind it, and a
    /// smaller time would make a later restart rebuild, from part of their data, windows that
    /// were final before.
    fn committable_offsets(
        &mut self,
        wm: UnixNanos,
        policy: &TimePolicy,
    ) -> Vec<(TopicPartition, (i64, UnixNanos))> {
        let mut out = Vec::new();
        for ((s, p), st) in self.partitions.iter_mut() {
            if st.start.is_none() {
                continue;
            }
            let off = st.tracker.advance(wm, policy).max(st.last_committed);
            if let Some(off) = off {
                let pt = wm.max(st.purged_through());
                out.push(((self.topics.name(*s).to_string(), *p), (off, pt)));
            }
        }
        out
    }

    /// Brings the offsets the revoke callback would commit up to date.
    pub(super) fn publish_revoke_candidates(&mut self) {
        let policy = self.handle.policy().clone();
        let Some(wm) = self.committable_watermark(&policy) else {
            return;
        };
        let offsets: HashMap<TopicPartition, (i64, UnixNanos)> =
            self.committable_offsets(wm, &policy).into_iter().collect();
        if let Ok(mut r) = self.consumer.context().revoke.lock() {
            r.offsets = offsets;
        }
    }

    /// Commits every assigned partition's durable offset with the purged-through time: the
    /// shadow group first (its time must never be older than the one that belongs to the
    /// committed offsets: an older one would let replay double-count), then the group.
    pub(super) fn commit(&mut self, mode: CommitMode) {
        let policy = self.handle.policy().clone();
        let Some(wm) = self.committable_watermark(&policy) else {
            return;
        };
        let offsets = self.committable_offsets(wm, &policy);
        if offsets.is_empty() {
            return;
        }
        let shadow = &self.consumer.context().shadow;
        match commit_with_purged_through(&self.consumer, shadow, &offsets, mode) {
            Err(CommitFailed::Shadow(e)) => tracing::warn!(
                "kafka: cannot record the purged-through time (retried next commit): {e}"
            ),
            Ok(()) => {
                self.counters.commits.inc();
                for ((topic, p), (off, _)) in offsets {
                    if let Some(s) = self.topics.signal_of(&topic) {
                        if let Some(st) = self.partitions.get_mut(&(s, p)) {
                            st.last_committed = Some(off);
                        }
                    }
                }
            }
            Err(CommitFailed::Offsets(e)) => {
                tracing::warn!("kafka: offset commit failed (retried next commit): {e}")
            }
        }
    }

    /// Checks the brokers answer (every few seconds) and copies the lag librdkafka's statistics
    /// reported to the gauges (no round trip per partition).
    pub(super) fn check_brokers(&mut self) {
        if self
            .last_broker_check
            .is_none_or(|t| t.elapsed() >= BROKER_CHECK)
        {
            self.last_broker_check = Some(Instant::now());
            // On the shadow consumer's connection: on the main one the request would wait
            // behind the fetch in flight and stall the loop.
            match self
                .consumer
                .context()
                .shadow
                .fetch_metadata(Some(&self.topics.traces), BROKER_TIMEOUT)
            {
                Ok(_) => self.health.set(None),
                Err(e) => self
                    .health
                    .set(Some(format!("Kafka brokers do not answer: {e}"))),
            }
        }
        let Ok(lag) = self.consumer.context().lag.lock() else {
            return;
        };
        for ((s, p), st) in self.partitions.iter() {
            if let Some(l) = lag.get(&(self.topics.name(*s).to_string(), *p)) {
                // The broker's high watermark can be wrong (tansu); never report a negative lag.
                st.lag.set((*l).max(0) as f64);
            }
        }
    }
}
