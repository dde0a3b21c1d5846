//! The fleet's Kafka side (docs/fleet.md): the merge role's consumer of the shuffle topic and
//! every merge instance's reader of the results topic.
//!
//! Ingest instances need nothing here: their Kafka sink writes each share's final windows to
//! `fleet.shuffle_topic` with the exact state in the [`wire::STATE_HEADER`] header (`sink.rs`).
//! A merge instance consumes the shuffle topic in its own consumer group
//! (`<receivers.kafka.group_id>.merge`); on every assignment it reads its partitions from the
//! beginning and rebuilds their merge state (`merge.rs`), so it commits no offsets: merged rows
//! are a function of the latest share records, and writing one again writes the same record. It
//! hands merged rows to the RED sinks it was given (the Kafka sink writing `fleet.results_topic`,
//! anomaly detection). Every merge instance also reads the whole results topic into its `red`
//! table, so a query on any of them sees the whole fleet.

pub mod merge;
pub mod wire;

use super::{consumer_config, KafkaSourceError};
use crate::config::FleetConfig;
use crate::config::KafkaReceiverConfig;
use merge::{MergeSettings, Offered, PartitionMerge};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Headers, Message};
use rdkafka::metadata::Metadata;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use redwatch_engine::config::{LimitsConfig, WindowsConfig};
use redwatch_engine::telemetry::{Counter, Gauge, Registry};
use redwatch_operators::red::{RedRow, RedSink};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const POLL: Duration = Duration::from_millis(100);
/// How often merged windows are closed and emitted, and results handed to the table.
const EMIT_EVERY: Duration = Duration::from_millis(100);
/// How long a share may stay silent before it no longer holds eviction back, in idle timeouts.
const FORGET_IDLE_TIMEOUTS: u32 = 10;
const FORGET_AT_LEAST: Duration = Duration::from_secs(300);

/// The merge role's consumer group over the shuffle topic.
pub fn merge_group(cfg: &KafkaReceiverConfig) -> String {
    format!("{}.merge", cfg.group_id)
}

/// How long a share may stay silent before the merge stops waiting for it: ten idle timeouts,
/// at least five minutes (an ingest instance restarting rejoins its group and replays meanwhile).
pub fn share_forget(windows: &WindowsConfig) -> Duration {
    (windows.idle_timeout * FORGET_IDLE_TIMEOUTS).max(FORGET_AT_LEAST)
}

/// The settings of a merge from the config (windows, limits).
pub fn merge_settings(windows: &WindowsConfig, limits: &LimitsConfig) -> MergeSettings {
    MergeSettings {
        lateness_ns: windows.allowed_lateness.as_nanos() as u64,
        idle: windows.idle_timeout,
        forget: share_forget(windows),
        max_bytes: limits
            .memory
            .as_ref()
            .map_or(512 << 20, |m| (m.limit.as_u64() / 2) as usize),
    }
}

#[derive(Debug)]
enum Assignment {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

#[derive(Default)]
struct MergeContext {
    events: Mutex<Vec<Assignment>>,
}

impl ClientContext for MergeContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!("fleet merge consumer: {error}: {reason}");
    }
}

fn partition_list(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ConsumerContext for MergeContext {
    fn pre_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = r {
            if let Ok(mut ev) = self.events.lock() {
                ev.push(Assignment::Revoked(partition_list(tpl)));
            }
        }
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Assign(tpl) => {
                if let Ok(mut ev) = self.events.lock() {
                    ev.push(Assignment::Assigned(partition_list(tpl)));
                }
            }
            Rebalance::Error(e) => tracing::warn!("fleet merge: rebalance failed: {e}"),
            Rebalance::Revoke(_) => {}
        }
    }
}

struct MergeCounters {
    changed: Arc<Counter>,
    unchanged: Arc<Counter>,
    evicted: Arc<Counter>,
    registry: Arc<Registry>,
    emitted: Arc<Counter>,
    evicted_early: Arc<Counter>,
    state_bytes: Arc<Gauge>,
    partitions: Arc<Gauge>,
}

fn reject_counter(registry: &Registry, topic: &'static str, reason: &str) -> Arc<Counter> {
    registry.counter(
        "redwatch_fleet_records_rejected_total",
        "Fleet records skipped because their redwatch.red header is missing or unreadable, per topic and reason.",
        &[("topic", topic), ("reason", reason)],
    )
}

fn assigned_gauge(registry: &Registry, partition: i32) -> Arc<Gauge> {
    registry.gauge(
        "redwatch_fleet_merge_partition_assigned",
        "1 while the shuffle partition is assigned to this merge instance (it owns the series hashed to it), 0 after it was revoked.",
        &[("partition", &partition.to_string())],
    )
}

/// The state header of a consumed record.
fn state_header<M: Message>(m: &M) -> Option<&[u8]> {
    m.headers()?
        .iter()
        .find(|h| h.key == wire::STATE_HEADER)?
        .value
}

/// `receivers.kafka`, which the merge role needs (the shuffle and results topics' brokers).
fn merge_kafka(
    kafka: Option<&KafkaReceiverConfig>,
) -> Result<&KafkaReceiverConfig, KafkaSourceError> {
    kafka.ok_or_else(|| KafkaSourceError::Config("fleet.role merge needs receivers.kafka".into()))
}

/// The partitions of `topic` in the metadata (none while it is unknown or in error).
fn topic_partitions<'m>(md: &'m Metadata, topic: &'m str) -> impl Iterator<Item = i32> + 'm {
    md.topics()
        .iter()
        .filter(move |t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
}

/// Starts the merge role's consumer: it merges the shuffle partitions this instance is assigned
/// and hands the merged rows to `sinks` (from its own thread, one call per batch) until `cancel`.
/// `kafka` is `receivers.kafka` (the shuffle topic's brokers).
pub fn start_merge(
    kafka: Option<&KafkaReceiverConfig>,
    fleet: &FleetConfig,
    settings: MergeSettings,
    sinks: Vec<Arc<dyn RedSink>>,
    registry: Arc<Registry>,
    cancel: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, KafkaSourceError> {
    let k = merge_kafka(kafka)?;
    super::validate(k)?;
    let mut c = consumer_config(k);
    c.set("group.id", merge_group(k))
        .set("statistics.interval.ms", "0");
    let consumer: BaseConsumer<MergeContext> = c.create_with_context(MergeContext::default())?;
    let topic = fleet.shuffle_topic.clone();
    consumer.subscribe(&[&topic])?;
    let role = MergeRole {
        topic,
        input: k.traces_topic.clone(),
        settings,
        sinks,
        counters: MergeCounters::new(registry),
        merges: HashMap::new(),
    };
    Ok(tokio::task::spawn_blocking(move || {
        role.run(&consumer, cancel)
    }))
}

impl MergeCounters {
    fn new(registry: Arc<Registry>) -> Self {
        let outcome = |o: &str| {
            registry.counter(
                "redwatch_fleet_merge_records_total",
                "Shuffle records merged, per outcome: changed (a new or restated share), unchanged (the same share again: a replay), evicted (a replay of a window already merged and no longer restated).",
                &[("outcome", o)],
            )
        };
        MergeCounters {
            changed: outcome("changed"),
            unchanged: outcome("unchanged"),
            evicted: outcome("evicted"),
            registry: registry.clone(),
            emitted: registry.counter(
                "redwatch_fleet_merge_windows_emitted_total",
                "Merged windows handed to the results topic and detection (first closes and restatements).",
                &[],
            ),
            evicted_early: registry.counter(
                "redwatch_fleet_merge_evicted_early_total",
                "Merged windows evicted before every share moved past their lateness, to stay under the merge's byte cap (limits.memory.limit / 2).",
                &[],
            ),
            state_bytes: registry.gauge(
                "redwatch_fleet_merge_state_bytes",
                "Bytes of share state the merge holds.",
                &[],
            ),
            partitions: registry.gauge(
                "redwatch_fleet_merge_partitions",
                "Shuffle partitions assigned to this merge instance.",
                &[],
            ),
        }
    }
}

/// The merge role's consumer thread: the shuffle partitions it is assigned, each merged from
/// the beginning.
struct MergeRole {
    /// The shuffle topic.
    topic: String,
    /// The input (traces) topic: every partition of it is a share.
    input: String,
    settings: MergeSettings,
    sinks: Vec<Arc<dyn RedSink>>,
    counters: MergeCounters,
    merges: HashMap<i32, PartitionMerge>,
}

impl MergeRole {
    fn run(mut self, consumer: &BaseConsumer<MergeContext>, cancel: CancellationToken) {
        let expected = self.expected_shares(consumer, &cancel);
        let mut last_emit = Instant::now();
        while !cancel.is_cancelled() {
            let polled = consumer.poll(POLL);
            self.take_assignments(consumer, &expected);
            self.counters.partitions.set(self.merges.len() as f64);
            let idle = polled.is_none();
            match polled {
                Some(Ok(m)) => match wire::decode(state_header(&m)) {
                    Ok((share, row)) => {
                        let (merge, counters) = (&mut self.merges, &self.counters);
                        let merge = merge
                            .entry(m.partition())
                            .or_insert_with(|| new_merge(self.settings, &expected, Instant::now()));
                        match merge.offer(share, row, Instant::now()) {
                            Offered::Changed => counters.changed.inc(),
                            Offered::Unchanged => counters.unchanged.inc(),
                            Offered::Evicted => counters.evicted.inc(),
                        }
                    }
                    Err(e) => {
                        reject_counter(&self.counters.registry, "shuffle", e.reason()).inc();
                        tracing::debug!("fleet merge: skipped a shuffle record: {e}");
                    }
                },
                Some(Err(e)) => tracing::warn!("fleet merge: consume error: {e}"),
                None => {}
            }
            if last_emit.elapsed() >= EMIT_EVERY || idle {
                last_emit = Instant::now();
                self.emit(Instant::now());
            }
        }
        consumer.unsubscribe();
    }

    /// Every partition of the input topic is a share the merge should hear from (waits until
    /// the topic is known, or `cancel`).
    fn expected_shares(
        &self,
        consumer: &BaseConsumer<MergeContext>,
        cancel: &CancellationToken,
    ) -> Vec<Arc<str>> {
        let input = &self.input;
        let mut expected: Vec<Arc<str>> = Vec::new();
        while expected.is_empty() && !cancel.is_cancelled() {
            match consumer.fetch_metadata(Some(input), Duration::from_secs(2)) {
                Ok(md) => {
                    expected = topic_partitions(&md, input)
                        .map(|p| Arc::from(format!("{input}:{p}")))
                        .collect();
                }
                Err(e) => tracing::warn!("fleet merge: cannot read {input}'s partitions: {e}"),
            }
            if expected.is_empty() {
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        expected
    }

    /// Applies the rebalances since the last poll: a revoked partition's merge is dropped, an
    /// assigned one starts over.
    fn take_assignments(&mut self, consumer: &BaseConsumer<MergeContext>, expected: &[Arc<str>]) {
        let events = consumer
            .context()
            .events
            .lock()
            .map(|mut e| std::mem::take(&mut *e))
            .unwrap_or_default();
        let topic = &self.topic;
        for ev in events {
            match ev {
                Assignment::Revoked(ps) => {
                    for p in ps {
                        self.merges.remove(&p);
                        assigned_gauge(&self.counters.registry, p).set(0.0);
                    }
                }
                Assignment::Assigned(ps) => {
                    tracing::info!("fleet merge: assigned {topic} partitions {ps:?}; rebuilding them from the beginning");
                    for p in ps {
                        self.merges
                            .insert(p, new_merge(self.settings, expected, Instant::now()));
                        assigned_gauge(&self.counters.registry, p).set(1.0);
                    }
                }
            }
        }
    }

    /// Closes the merged windows that are due and hands them to the sinks.
    fn emit(&mut self, now: Instant) {
        let counters = &self.counters;
        let mut bytes = 0;
        for (p, merge) in self.merges.iter_mut() {
            let early = merge.evicted_early;
            let rows = merge.advance(now);
            if !rows.is_empty() {
                tracing::debug!(
                    "fleet merge: partition {p} emits {} windows, ends {:?}..={:?}",
                    rows.len(),
                    rows.first().map(|r| r.end),
                    rows.last().map(|r| r.end)
                );
            }
            counters.evicted_early.add(merge.evicted_early - early);
            bytes += merge.bytes();
            if rows.is_empty() {
                continue;
            }
            counters.emitted.add(rows.len() as u64);
            for s in &self.sinks {
                s.on_final(&rows);
            }
        }
        counters.state_bytes.set(bytes as f64);
    }
}

/// A partition's merge expecting every share of the input topic.
fn new_merge(settings: MergeSettings, expected: &[Arc<str>], now: Instant) -> PartitionMerge {
    let mut m = PartitionMerge::new(settings);
    for s in expected {
        m.expect(s.clone(), now);
    }
    m
}

/// Starts the reader of the results topic: every partition from the beginning into `table`
/// (the merge instance's global `red` table), until `cancel`. `windows.idle_timeout` is how
/// long a partition's results may hold the others back.
pub fn start_results(
    kafka: Option<&KafkaReceiverConfig>,
    fleet: &FleetConfig,
    windows: &WindowsConfig,
    table: Arc<dyn RedSink>,
    registry: Arc<Registry>,
    cancel: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, KafkaSourceError> {
    let k = merge_kafka(kafka)?;
    let mut c = consumer_config(k);
    // Assigned, never subscribed and never committed: the group only names the client.
    c.set("group.id", format!("{}.results", k.group_id))
        .set("statistics.interval.ms", "0");
    let consumer: BaseConsumer = c.create()?;
    let topic = fleet.results_topic.clone();
    let rows_total = registry.counter(
        "redwatch_fleet_results_rows_total",
        "Final windows read from the results topic into the red table.",
        &[],
    );
    let rejected = registry.clone();
    let hold = windows.idle_timeout;
    Ok(tokio::task::spawn_blocking(move || {
        let mut order = None;
        let mut last = Instant::now();
        while !cancel.is_cancelled() {
            let order = match order.as_mut() {
                Some(o) => o,
                None => match assign_results(&consumer, &topic, hold) {
                    Some(o) => order.insert(o),
                    None => {
                        std::thread::sleep(Duration::from_millis(500));
                        continue;
                    }
                },
            };
            match consumer.poll(POLL) {
                Some(Ok(m)) => match wire::decode(state_header(&m)) {
                    Ok((_, mut row)) => {
                        row.first = true;
                        order.push(m.partition(), row, Instant::now());
                    }
                    Err(e) => reject_counter(&rejected, "results", e.reason()).inc(),
                },
                Some(Err(e)) => tracing::warn!("fleet: results consume error: {e}"),
                None => {}
            }
            if last.elapsed() >= EMIT_EVERY {
                last = Instant::now();
                let batch = order.due(last);
                if !batch.is_empty() {
                    rows_total.add(batch.len() as u64);
                    table.on_final(&batch);
                }
            }
        }
    }))
}

/// Assigns every partition of the results topic from the beginning; `None` while the topic is
/// unknown or the assignment fails.
fn assign_results(consumer: &BaseConsumer, topic: &str, hold: Duration) -> Option<ResultsInOrder> {
    let md = match consumer.fetch_metadata(Some(topic), Duration::from_secs(2)) {
        Ok(md) => md,
        Err(e) => {
            tracing::warn!("fleet: cannot read {topic}'s partitions: {e}");
            return None;
        }
    };
    let parts: Vec<i32> = topic_partitions(&md, topic).collect();
    if parts.is_empty() {
        return None;
    }
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        let _ = tpl.add_partition_offset(topic, *p, Offset::Beginning);
    }
    match consumer.assign(&tpl) {
        Ok(()) => {
            tracing::info!("fleet: reading {topic} partitions {parts:?} into the red table");
            Some(ResultsInOrder::new(&parts, hold, Instant::now()))
        }
        Err(e) => {
            tracing::warn!("fleet: cannot assign {topic}: {e}");
            None
        }
    }
}

/// Hands results to the table in window-end order across partitions. The table seals a window
/// once the newest end it has seen is `lateness` past it; reading a backlog partition after
/// partition would otherwise seal the early windows before the other partitions' rows of them
/// arrive. A row waits until every partition still delivering has reached its end; a partition
/// silent for `hold` (`windows.idle_timeout`, counted from the assignment for one that has
/// delivered nothing) no longer holds rows back, as an idle source holds no watermark.
struct ResultsInOrder {
    pending: BTreeMap<(u64, u64), RedRow>,
    seq: u64,
    /// Per partition: the largest end read and when it last delivered.
    partitions: HashMap<i32, (u64, Instant)>,
    hold: Duration,
}

impl ResultsInOrder {
    fn new(partitions: &[i32], hold: Duration, now: Instant) -> Self {
        ResultsInOrder {
            pending: BTreeMap::new(),
            seq: 0,
            partitions: partitions.iter().map(|p| (*p, (0, now))).collect(),
            hold,
        }
    }

    fn push(&mut self, partition: i32, row: RedRow, now: Instant) {
        let p = self.partitions.entry(partition).or_insert((0, now));
        *p = (p.0.max(row.end), now);
        self.seq += 1;
        self.pending.insert((row.end, self.seq), row);
    }

    fn due(&mut self, now: Instant) -> Vec<RedRow> {
        let bound = self
            .partitions
            .values()
            .filter(|(_, t)| now.saturating_duration_since(*t) < self.hold)
            .map(|(end, _)| *end)
            .min()
            .unwrap_or(u64::MAX);
        let rest = self.pending.split_off(&(bound.saturating_add(1), 0));
        std::mem::replace(&mut self.pending, rest)
            .into_values()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::wire::tests::row;
    use super::*;

    #[test]
    fn results_go_to_the_table_in_end_order_across_partitions() {
        let t = Instant::now();
        let hold = Duration::from_secs(5);
        let mut o = ResultsInOrder::new(&[0, 1, 2], hold, t);
        let w = |i: u64| row("x", i * 10_000_000_000, &[1.0]);
        for i in 1..=5 {
            o.push(0, w(i), t);
        }
        assert!(
            o.due(t).is_empty(),
            "partitions 1 and 2 have not delivered yet"
        );
        o.push(1, w(2), t);
        let ends: Vec<u64> = o.due(t).iter().map(|r| r.start / 10_000_000_000).collect();
        assert!(
            ends.is_empty(),
            "partition 2 still holds (assigned, silent < hold)"
        );
        let later = t + hold;
        let got: Vec<u64> = o
            .due(later)
            .iter()
            .map(|r| r.start / 10_000_000_000)
            .collect();
        assert_eq!(
            got,
            vec![1, 2, 2, 3, 4, 5],
            "silent partitions stop holding"
        );
        o.push(1, w(6), later);
        o.push(0, w(7), later);
        let got: Vec<u64> = o
            .due(later)
            .iter()
            .map(|r| r.start / 10_000_000_000)
            .collect();
        assert_eq!(got, vec![6], "partition 1 has reached 6, not 7");
    }
}
