//! From a consumed message to the pipeline: decoding, replay skipping, backpressure (pausing
//! partitions) and bad-message accounting with the dead-letter copy. Traces and metrics take
//! the same path (docs/kafka-exactness.md).

use super::partitions::Signal;
use super::sink::SinkProgress;
use super::source::Loop;
use crate::config::KafkaEncoding;
use crate::otlp::decode;
use crate::otlp::decode_error_reason;
use bytes::Bytes;
use rdkafka::consumer::Consumer;
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use redwatch_engine::model::{SourceId, UnixNanos};
use redwatch_engine::pipeline::{Backpressure, Batch};
use redwatch_engine::telemetry::Counter;
use redwatch_engine::time::TimePolicy;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The dead-letter producer: copies are tracked until the broker answered, and offsets are
/// committed only after the copies of the messages before them were attempted.
pub(super) struct DeadLetter {
    pub producer: ThreadedProducer<DeadLetterContext>,
    pub topic: String,
    pub progress: Arc<SinkProgress>,
}

pub(super) struct DeadLetterContext {
    pub progress: Arc<SinkProgress>,
    pub failed: Arc<Counter>,
}

impl ClientContext for DeadLetterContext {}

impl ProducerContext for DeadLetterContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        if let Err((e, _)) = result {
            self.failed.inc();
            tracing::warn!("kafka: a dead-letter copy was not delivered: {e}");
        }
        self.progress.done(seq as u64);
    }
}

/// Counting to do once a decoded message is in the pipeline.
type Finish = Box<dyn FnOnce(&Loop)>;

/// A decoded message: the batch to queue (none when nothing is left), its largest event time,
/// and the counting to do once it is in.
type Decoded = (Option<Batch>, u64, Finish);

/// What processing a message came to.
enum Processed {
    Done,
    /// The pipeline is full: nothing was counted or recorded; process it again later.
    Full,
}

impl Loop {
    pub(super) fn on_message(&mut self, s: Signal, p: i32, offset: i64, payload: Option<Bytes>) {
        if !self.partitions.contains_key(&(s, p)) {
            // The assignment callback normally comes first; be safe if it did not.
            self.assign(s, p);
        }
        let Some(st) = self.partitions.get_mut(&(s, p)) else {
            return;
        };
        if st.resumed_at.take().is_some() {
            self.handle.set_pending(st.source, false);
        }
        // Below `next_offset` is a re-delivery.
        if st.next_offset.is_some_and(|n| offset < n) {
            tracing::debug!(
                "kafka: {s:?} {p}: offset {offset} again (next {:?})",
                st.next_offset
            );
            return;
        }
        let body = payload.unwrap_or_default();
        if st.start.is_none() || !st.waiting.is_empty() {
            // Keep the partition's order: behind what waits (for room, or for its start).
            if st.start.is_some() {
                st.next_offset = Some(offset + 1);
            }
            st.waiting.push_back((offset, body));
            return;
        }
        st.next_offset = Some(offset + 1);
        if let Processed::Full = self.process(s, p, offset, &body) {
            self.wait_for_room(s, p, offset, body);
        }
    }

    /// Decodes one message, skips what was final before a restart and queues the rest.
    fn process(&mut self, s: Signal, p: i32, offset: i64, body: &Bytes) -> Processed {
        let Some(st) = self.partitions.get(&(s, p)) else {
            return Processed::Done;
        };
        let (source, purged_through) = (st.source, st.purged_through());
        if body.is_empty() {
            self.reject(s, p, offset, "empty", body);
            return Processed::Done;
        }
        let now = self.handle.now();
        let policy = self.handle.policy().clone();
        // The batch to queue, its largest event time, and the counting to do once it is in.
        let decoded = match s {
            Signal::Traces => self.decode_traces(p, body, source, purged_through, &policy, now),
            Signal::Metrics => self.decode_metrics(body, source, purged_through, &policy, now),
        };
        let (batch, max_ts, finish) = match decoded {
            Ok(d) => d,
            Err(reason) => {
                self.reject(s, p, offset, reason, body);
                return Processed::Done;
            }
        };
        let queued = batch.is_some();
        if let Some(b) = batch {
            match self.rt.block_on(self.handle.send(b)) {
                Ok(()) => {}
                // Queue full or over the memory limiter's soft limit: pause the partition.
                Err(Backpressure::QueueFull | Backpressure::Memory(_)) => return Processed::Full,
                // Shutting down: the offset is not recorded, so it is not committed either.
                Err(Backpressure::Closed) => return Processed::Done,
            }
        }
        if let Some(st) = self.partitions.get_mut(&(s, p)) {
            st.tracker
                .record(offset, if queued { max_ts } else { 0 }, &policy);
        }
        finish(self);
        Processed::Done
    }

    /// Decodes a traces message of partition `p` and drops the spans final before a restart;
    /// `Err`: the reason it is rejected.
    fn decode_traces(
        &self,
        p: i32,
        body: &Bytes,
        source: SourceId,
        purged_through: UnixNanos,
        policy: &TimePolicy,
        now: UnixNanos,
    ) -> Result<Decoded, &'static str> {
        let decoded = match self.encoding {
            KafkaEncoding::OtlpProto => {
                decode::decode_traces_proto(body.clone(), source, &self.settings, policy, now)
            }
            KafkaEncoding::OtlpJson => {
                decode::decode_traces_json(body, source, &self.settings, policy, now)
            }
        };
        let mut out = decoded.map_err(|e| decode_error_reason(&e))?;
        if let Some(max) = self.settings.max_string_bytes {
            self.counters.truncated.add(out.batch.truncate_strings(max));
        }
        let before = out.batch.spans.len();
        if purged_through > 0 {
            out.batch
                .spans
                .retain(|x| !policy.all_purged(x.end, purged_through));
        }
        let skipped = (before - out.batch.spans.len()) as u64;
        out.batch.share = Some(p as u32);
        let accepted = out.batch.len() as u64;
        let max_ts = out.batch.max_event_time().unwrap_or(0);
        let batch = (accepted > 0).then(|| Batch::Spans(out.batch));
        let finish = Box::new(move |l: &Loop| {
            let c = &l.counters;
            c.replay_skipped.add(skipped);
            c.spans_received.add(out.received);
            c.spans_accepted.add(accepted);
            for (reason, n) in out.rejected.iter() {
                if let Some((_, ctr)) = c.spans_rejected.iter().find(|(r, _)| *r == reason) {
                    ctr.add(n);
                }
            }
            c.late.add(out.rejected.late);
            c.missing_service.add(out.spans_missing_service_name);
        });
        Ok((batch, max_ts, finish))
    }

    /// Decodes a metrics message and drops the points final before a restart; `Err`: the
    /// reason it is rejected.
    fn decode_metrics(
        &self,
        body: &Bytes,
        source: SourceId,
        purged_through: UnixNanos,
        policy: &TimePolicy,
        now: UnixNanos,
    ) -> Result<Decoded, &'static str> {
        let decoded = match self.encoding {
            KafkaEncoding::OtlpProto => {
                decode::decode_metrics_proto(body.clone(), source, policy, now)
            }
            KafkaEncoding::OtlpJson => decode::decode_metrics_json(body, source, policy, now),
        };
        let mut out = decoded.map_err(|e| decode_error_reason(&e))?;
        if let Some(max) = self.settings.max_string_bytes {
            self.counters.truncated.add(out.batch.truncate_strings(max));
        }
        let before = out.batch.points.len();
        if purged_through > 0 {
            out.batch
                .points
                .retain(|x| !policy.all_purged(x.time, purged_through));
        }
        let skipped = (before - out.batch.points.len()) as u64;
        let accepted = out.accepted.saturating_sub(skipped);
        let max_ts = out.batch.max_event_time().unwrap_or(0);
        let batch = (!out.batch.is_empty()).then(|| Batch::Metrics(Box::new(out.batch)));
        let finish = Box::new(move |l: &Loop| {
            let c = &l.counters;
            c.points_skipped.add(skipped);
            c.points_received.add(out.received);
            c.points_accepted.add(accepted);
            c.points_late.add(out.rejected.late);
        });
        Ok((batch, max_ts, finish))
    }

    /// Backpressure: keep the message (its payload is reference-counted, not copied) and pause
    /// the partition; messages librdkafka had already fetched queue up behind it, and nothing
    /// more is fetched until the queue has drained.
    fn wait_for_room(&mut self, s: Signal, p: i32, offset: i64, body: Bytes) {
        let tpl = self.tpl(s, p);
        let Some(st) = self.partitions.get_mut(&(s, p)) else {
            return;
        };
        st.waiting.push_front((offset, body));
        // Held back by backpressure, not idle: keep holding the watermark meanwhile.
        self.handle.set_pending(st.source, true);
        if !st.paused {
            if let Err(e) = self.consumer.pause(&tpl) {
                tracing::warn!("kafka: cannot pause {s:?} partition {p}: {e}");
            }
            st.paused = true;
            self.counters.paused.inc();
            tracing::debug!("kafka: paused {s:?} partition {p} at offset {offset}");
        }
    }

    /// Processes waiting messages in order while the pipeline has room; resumes drained
    /// partitions whose start is known.
    pub(super) fn retry_waiting(&mut self) {
        let idle = Duration::from_nanos(self.handle.policy().idle_timeout_ns);
        for st in self.partitions.values_mut() {
            if st.resumed_at.is_some_and(|t| t.elapsed() >= idle) {
                st.resumed_at = None;
                self.handle.set_pending(st.source, false);
            }
        }
        let waiting: Vec<(Signal, i32)> = self
            .partitions
            .iter()
            .filter(|(_, st)| st.start.is_some() && (st.paused || !st.waiting.is_empty()))
            .map(|(k, _)| *k)
            .collect();
        for (s, p) in waiting {
            while let Some(st) = self.partitions.get_mut(&(s, p)) {
                let Some((offset, body)) = st.waiting.pop_front() else {
                    break;
                };
                st.next_offset = Some(st.next_offset.map_or(offset + 1, |n| n.max(offset + 1)));
                if let Processed::Full = self.process(s, p, offset, &body) {
                    if let Some(st) = self.partitions.get_mut(&(s, p)) {
                        st.waiting.push_front((offset, body));
                    }
                    return;
                }
            }
            let tpl = self.tpl(s, p);
            let Some(st) = self.partitions.get_mut(&(s, p)) else {
                continue;
            };
            if st.paused {
                match self.consumer.resume(&tpl) {
                    Ok(()) => {
                        st.paused = false;
                        st.resumed_at = Some(Instant::now());
                        tracing::debug!(
                            "kafka: resumed {s:?} partition {p} (next {:?})",
                            st.next_offset
                        );
                    }
                    Err(e) => tracing::warn!("kafka: cannot resume {s:?} partition {p}: {e}"),
                }
            }
        }
    }

    /// Counts (and dead-letters) an undecodable message; its offset is recorded as feeding no
    /// window.
    fn reject(&mut self, s: Signal, p: i32, offset: i64, reason: &'static str, body: &Bytes) {
        self.counters.reject(reason);
        tracing::debug!("kafka: rejected message {s:?} {p}@{offset}: {reason}");
        let policy = self.handle.policy().clone();
        if let Some(st) = self.partitions.get_mut(&(s, p)) {
            st.tracker.record(offset, 0, &policy);
        }
        if let Some(dl) = &self.dead_letter {
            let key = format!("{}:{p}:{offset}", self.topics.name(s));
            let headers = OwnedHeaders::new().insert(Header {
                key: "redwatch.reject_reason",
                value: Some(reason),
            });
            let seq = dl.progress.begin();
            let rec = BaseRecord::with_opaque_to(&dl.topic, seq as usize)
                .key(&key)
                .payload(body.as_ref())
                .headers(headers);
            match dl.producer.send(rec) {
                Ok(()) => self.counters.dead_lettered.inc(),
                Err((e, _)) => {
                    dl.progress.done(seq);
                    self.counters.dead_letter_failed.inc();
                    tracing::warn!("kafka: cannot copy to the dead-letter topic: {e}");
                }
            }
        }
    }
}
