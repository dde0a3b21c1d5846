//! Joining, assignment and revocation of partitions (docs/kafka-exactness.md).
//!
//! An assigned partition is an event-time source. It stays paused — holding the watermark —
//! until its committed offset and purged-through time are known: resuming without them would
//! re-count windows that were final before a restart. Reads that fail are retried with a
//! backoff, logged, and reported by `/readyz`. A revoked partition's state is dropped (its share
//! of the window state too); its new owner rebuilds it by replay.

use super::offsets::{parse_commit_metadata, CommitTracker};
use super::rebalance::{Assignment, TopicPartition};
use super::source::Loop;
use bytes::Bytes;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use redwatch_engine::model::{SourceId, UnixNanos};
use redwatch_engine::telemetry::Gauge;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BROKER_TIMEOUT: Duration = Duration::from_secs(2);
/// First and largest wait between attempts to read a partition's committed offset.
const RESOLVE_BACKOFF: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(10));
/// Longest time the watermark is held for a group join that has not settled.
const JOIN_HOLD_MAX: Duration = Duration::from_secs(300);

/// Which topic a partition belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Signal {
    Traces,
    Metrics,
}

/// An assigned partition, by topic kind and number.
pub(super) type PartitionKey = (Signal, i32);

/// The topics consumed.
pub(super) struct Topics {
    pub traces: String,
    pub metrics: Option<String>,
}

impl Topics {
    pub fn name(&self, s: Signal) -> &str {
        match s {
            Signal::Traces => &self.traces,
            Signal::Metrics => self.metrics.as_deref().unwrap_or_default(),
        }
    }

    pub fn signal_of(&self, topic: &str) -> Option<Signal> {
        if topic == self.traces {
            Some(Signal::Traces)
        } else if self.metrics.as_deref() == Some(topic) {
            Some(Signal::Metrics)
        } else {
            None
        }
    }
}

/// Where an assigned partition starts, once read from the group.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Start {
    /// Data of windows purged through this time was final before a restart: skipped.
    pub purged_through: UnixNanos,
    pub committed: Option<i64>,
}

/// One assigned partition.
pub(super) struct PartitionState {
    pub source: SourceId,
    /// `None` until the committed offset and purged-through time are known; the partition is
    /// paused meanwhile.
    pub start: Option<Start>,
    /// When to try reading them again, and the wait after that.
    pub retry: (Instant, Duration),
    /// Messages waiting (for room in the pipeline, or for `start`), in offset order; the
    /// partition is paused meanwhile (at most what librdkafka had already fetched).
    pub waiting: VecDeque<(i64, Bytes)>,
    pub paused: bool,
    /// When a paused partition was resumed: it holds the watermark until librdkafka delivers
    /// from it again, or for `idle_timeout` if nothing more comes.
    pub resumed_at: Option<Instant>,
    /// Next offset expected; anything below is a re-delivery and is ignored.
    pub next_offset: Option<i64>,
    pub tracker: CommitTracker,
    pub last_committed: Option<i64>,
    pub lag: Arc<Gauge>,
    /// 1 while the partition is assigned here, 0 after it was revoked.
    pub assigned: Arc<Gauge>,
}

impl PartitionState {
    pub fn purged_through(&self) -> UnixNanos {
        self.start.map_or(0, |s| s.purged_through)
    }
}

/// While the group (re)joins, a placeholder source holds the watermark so that the backlog of
/// the partitions about to be assigned is not late. A source that has no data goes idle after
/// `idle_timeout`, so the placeholder is renewed before that.
pub(super) struct JoinHold {
    source: SourceId,
    renewed: Instant,
    since: Instant,
}

impl JoinHold {
    pub fn new(source: SourceId) -> Self {
        let now = Instant::now();
        JoinHold {
            source,
            renewed: now,
            since: now,
        }
    }
}

impl Loop {
    pub(super) fn tpl(&self, s: Signal, p: i32) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(self.topics.name(s), p);
        tpl
    }

    pub(super) fn hold_for_join(&mut self) {
        if self.joining.is_none() {
            let name = format!("kafka:{}:joining", self.topics.traces);
            let source = self.rt.block_on(self.handle.add_source(&name, true));
            self.joining = Some(JoinHold::new(source));
        }
    }

    pub(super) fn release_join_hold(&mut self) {
        if let Some(j) = self.joining.take() {
            self.rt.block_on(self.handle.remove_source(j.source));
        }
    }

    pub(super) fn renew_join_hold(&mut self) {
        let idle = Duration::from_nanos(self.handle.policy().idle_timeout_ns);
        let every = (idle / 2).max(Duration::from_millis(100));
        let Some(j) = &self.joining else { return };
        if j.since.elapsed() >= JOIN_HOLD_MAX.max(idle) {
            tracing::warn!(
                "kafka: the group join of {} did not settle after {JOIN_HOLD_MAX:?}; not holding the watermark any longer",
                self.topics.traces
            );
            self.release_join_hold();
            return;
        }
        if j.renewed.elapsed() < every {
            return;
        }
        let (old, since) = (j.source, j.since);
        let name = format!("kafka:{}:joining", self.topics.traces);
        let source = self.rt.block_on(self.handle.add_source(&name, true));
        self.rt.block_on(self.handle.remove_source(old));
        self.joining = Some(JoinHold {
            source,
            renewed: Instant::now(),
            since,
        });
    }

    pub(super) fn apply_rebalances(&mut self) {
        let events = match self.consumer.context().events.lock() {
            Ok(mut ev) => std::mem::take(&mut *ev),
            Err(_) => return,
        };
        for ev in events {
            match ev {
                Assignment::Assigned(ps) => {
                    for (topic, p) in ps {
                        if let Some(s) = self.topics.signal_of(&topic) {
                            self.assign(s, p);
                        }
                    }
                    self.resolve_due();
                    // The group has settled, with or without partitions for this member: an
                    // instance left with none must not hold the watermark.
                    self.release_join_hold();
                }
                Assignment::Revoked(ps) => {
                    // The revoke callback committed what was durable while the partitions were
                    // still ours (see `rebalance`); hold the watermark until the group has
                    // settled again.
                    self.hold_for_join();
                    for (topic, p) in ps {
                        if let Some(s) = self.topics.signal_of(&topic) {
                            self.revoke(s, p);
                        }
                    }
                }
            }
        }
    }

    /// Forgets a revoked partition: its source, its waiting messages and its share of the
    /// window state (the next owner replays from the committed offset).
    fn revoke(&mut self, s: Signal, p: i32) {
        let Some(st) = self.partitions.remove(&(s, p)) else {
            return;
        };
        let tp: TopicPartition = (self.topics.name(s).to_string(), p);
        self.health.set_unresolved(&tp, None);
        if let Ok(mut r) = self.consumer.context().revoke.lock() {
            r.offsets.remove(&tp);
            r.committed.remove(&tp);
        }
        self.rt.block_on(self.handle.remove_source(st.source));
        if s == Signal::Traces {
            self.rt.block_on(self.handle.drop_share(p as u32));
        }
        st.lag.set(0.0);
        st.assigned.set(0.0);
        tracing::info!(
            "kafka: revoked {}:{p} (state dropped; {} waiting messages left to the next owner)",
            tp.0,
            st.waiting.len()
        );
    }

    /// Registers an assigned partition as an event-time source, paused until its committed
    /// offset and purged-through time are read (`resolve_due`).
    pub(super) fn assign(&mut self, s: Signal, p: i32) {
        if self.partitions.contains_key(&(s, p)) {
            return;
        }
        let topic = self.topics.name(s).to_string();
        let name = format!("kafka:{topic}:{p}");
        let source = self.rt.block_on(self.handle.add_source(&name, true));
        // Held back, not idle, until it can start.
        self.handle.set_pending(source, true);
        let paused = match self.consumer.pause(&self.tpl(s, p)) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("kafka: cannot pause {name} while reading its offsets: {e}");
                false
            }
        };
        let ps = p.to_string();
        let labels = [("topic", topic.as_str()), ("partition", ps.as_str())];
        let lag = self.registry.gauge(
            "redwatch_kafka_lag",
            "Messages between the consumed position and the partition's high watermark.",
            &labels,
        );
        let assigned = self.registry.gauge(
            "redwatch_kafka_partition_assigned",
            "1 while the partition is assigned to this instance, 0 after it was revoked.",
            &labels,
        );
        assigned.set(1.0);
        self.partitions.insert(
            (s, p),
            PartitionState {
                source,
                start: None,
                retry: (Instant::now(), RESOLVE_BACKOFF.0),
                waiting: VecDeque::new(),
                paused,
                resumed_at: None,
                next_offset: None,
                tracker: CommitTracker::default(),
                last_committed: None,
                lag,
                assigned,
            },
        );
    }

    /// Reads the start of every partition that waits for it and whose retry time has come, in
    /// one request (a request on the main consumer waits behind its fetch in flight, up to
    /// `fetch.wait.max.ms`: one per partition would stall the loop).
    pub(super) fn resolve_due(&mut self) {
        let now = Instant::now();
        let due: Vec<(Signal, i32)> = self
            .partitions
            .iter()
            .filter(|(_, st)| st.start.is_none() && st.retry.0 <= now)
            .map(|(k, _)| *k)
            .collect();
        if due.is_empty() {
            return;
        }
        match self.read_starts(&due) {
            Ok(starts) => {
                for (k, start) in starts {
                    self.started(k, start);
                }
            }
            Err(why) => {
                for (s, p) in due {
                    let tp: TopicPartition = (self.topics.name(s).to_string(), p);
                    let Some(st) = self.partitions.get_mut(&(s, p)) else {
                        continue;
                    };
                    let wait = st.retry.1;
                    st.retry = (Instant::now() + wait, (wait * 2).min(RESOLVE_BACKOFF.1));
                    tracing::warn!(
                        "kafka: {}:{p} stays paused: {why} (retrying in {wait:?})",
                        tp.0
                    );
                    self.health.set_unresolved(&tp, Some(why.clone()));
                }
            }
        }
    }

    /// A partition's start is known: it may go (`retry_waiting` resumes it).
    fn started(&mut self, (s, p): (Signal, i32), start: Start) {
        let tp: TopicPartition = (self.topics.name(s).to_string(), p);
        tracing::info!(
            "kafka: assigned {}:{p} (committed offset {:?}, purged through {} ns)",
            tp.0,
            start.committed,
            start.purged_through
        );
        self.health.set_unresolved(&tp, None);
        let Some(st) = self.partitions.get_mut(&(s, p)) else {
            return;
        };
        st.start = Some(start);
        st.next_offset = start.committed;
        st.last_committed = start.committed;
        if let Some(c) = start.committed {
            // Fetched before the start was known and below the committed offset.
            st.waiting.retain(|(o, _)| *o >= c);
        }
        // Still pending: the partition holds the watermark until it delivers again after the
        // resume (or for `idle_timeout`, see `retry_waiting`), however long the start took.
        if !st.paused {
            st.resumed_at = Some(Instant::now());
        }
    }

    /// The committed offsets and purged-through times of `parts` (from the commit metadata,
    /// else from the shadow group for brokers that drop metadata, like tansu 0.6); an error when
    /// any cannot be read.
    fn read_starts(&self, parts: &[PartitionKey]) -> Result<Vec<(PartitionKey, Start)>, String> {
        let mut tpl = TopicPartitionList::new();
        for (s, p) in parts {
            tpl.add_partition(self.topics.name(*s), *p);
        }
        let c = self
            .consumer
            .committed_offsets(tpl.clone(), BROKER_TIMEOUT)
            .map_err(|e| format!("cannot read the committed offset: {e}"))?;
        let mut out: Vec<(PartitionKey, Start)> = parts
            .iter()
            .map(|&(s, p)| {
                let (purged_through, committed) = c
                    .find_partition(self.topics.name(s), p)
                    .map(|e| {
                        let off = match e.offset() {
                            Offset::Offset(o) => Some(o),
                            _ => None,
                        };
                        (parse_commit_metadata(e.metadata()), off)
                    })
                    .unwrap_or((0, None));
                (
                    (s, p),
                    Start {
                        purged_through,
                        committed,
                    },
                )
            })
            .collect();
        if out
            .iter()
            .any(|(_, st)| st.purged_through == 0 && st.committed.is_some())
        {
            let shadow = self
                .consumer
                .context()
                .shadow
                .committed_offsets(tpl, BROKER_TIMEOUT)
                .map_err(|e| format!("cannot read the purged-through time: {e}"))?;
            for ((s, p), st) in out.iter_mut() {
                if st.purged_through != 0 || st.committed.is_none() {
                    continue;
                }
                let found = shadow
                    .find_partition(self.topics.name(*s), *p)
                    .map(|e| e.offset());
                if let Some(Offset::Offset(o)) = found {
                    if o > 0 {
                        st.purged_through = o as UnixNanos;
                    }
                }
            }
        }
        Ok(out)
    }
}
