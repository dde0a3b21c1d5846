//! The `sessions` table: session windows (`windows.extra: [{gap, key}]`), one row per session.
//!
//! A final session's row is replaced while late data can change it (re-emission, same
//! `session_id`) and removed when it is retracted (merged into another session, or open again);
//! once the operator purges the session (`end + allowed_lateness` passed) the row can no longer
//! change and is sealed into an immutable chunk. Sealed chunks are kept for `retention` (behind
//! the newest session end) and within `max_bytes`, oldest first out (the windowed-table store's
//! [`Retained`]). Open sessions show as
//! provisional rows (`is_final = false`), replaced on every publication; a session never shows
//! as both.

use crate::schema;
use crate::table::{Partition, PartitionSource, PruneFilter};
use crate::window_store::Retained;
use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, ListBuilder, StringBuilder,
    TimestampMillisecondBuilder, UInt64Builder,
};
use arrow::record_batch::RecordBatch;
use redwatch_engine::model::UnixNanos;
use redwatch_operators::sessions::{SessionRetraction, SessionRow, SessionSink};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Purged rows packed into one sealed chunk at most.
const CHUNK_ROWS: usize = 4096;

/// Bounds of the `sessions` table.
#[derive(Debug, Clone)]
pub struct SessionsTableSettings {
    /// Sealed sessions ending longer than this before the newest session end are dropped.
    pub retention_ns: u64,
    /// Sealed chunks beyond this many bytes are dropped, oldest first.
    pub max_bytes: usize,
}

impl Default for SessionsTableSettings {
    fn default() -> Self {
        SessionsTableSettings {
            retention_ns: crate::config::DEFAULT_RETENTION.as_nanos() as u64,
            max_bytes: 256 << 20,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// Final rows that may still change, by session id.
    finals: HashMap<u64, SessionRow>,
    finals_cache: Option<Partition>,
    /// Purged rows not packed into a chunk yet.
    purged: Vec<SessionRow>,
    /// Sealed chunks by sequence number (oldest first), weighed in bytes.
    sealed: Retained<u64, Partition>,
    next_chunk: u64,
    /// Open sessions by id, with the spec they belong to.
    provisional: HashMap<u64, SessionRow>,
    newest_end: UnixNanos,
}

/// The `sessions` table, fed as a [`SessionSink`].
#[derive(Debug, Default)]
pub struct SessionsTable {
    settings: SessionsTableSettings,
    state: Mutex<State>,
}

impl SessionsTable {
    pub fn new(settings: SessionsTableSettings) -> Arc<Self> {
        Arc::new(SessionsTable {
            settings,
            state: Mutex::new(State::default()),
        })
    }

    /// Final rows held (changeable and sealed).
    pub fn final_rows(&self) -> usize {
        self.state
            .lock()
            .map(|s| {
                s.finals.len()
                    + s.purged.len()
                    + s.sealed.values().map(|p| p.batch.num_rows()).sum::<usize>()
            })
            .unwrap_or(0)
    }

    fn build<'a>(rows: impl Iterator<Item = &'a SessionRow>) -> Partition {
        let rows: Vec<&SessionRow> = rows.collect();
        let n = rows.len();
        let mut key = StringBuilder::with_capacity(n, n * 8);
        let mut gap = StringBuilder::with_capacity(n, n * 4);
        let mut value = StringBuilder::with_capacity(n, n * 32);
        let mut id = UInt64Builder::with_capacity(n);
        let mut start = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut end = TimestampMillisecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut f64s: Vec<Float64Builder> =
            (0..3).map(|_| Float64Builder::with_capacity(n)).collect();
        let mut services = ListBuilder::new(StringBuilder::new());
        let mut truncated = BooleanBuilder::with_capacity(n);
        let mut root = StringBuilder::with_capacity(n, n * 16);
        let mut fin = BooleanBuilder::with_capacity(n);
        let (mut lo, mut hi) = (i128::MAX, i128::MIN);
        let (mut lo_end, mut hi_end) = (i128::MAX, i128::MIN);
        for r in &rows {
            key.append_value(&*r.key_name);
            gap.append_value(&*r.gap);
            value.append_value(&*r.key_value);
            id.append_value(r.session_id);
            start.append_value((r.start / 1_000_000) as i64);
            end.append_value((r.end / 1_000_000) as i64);
            for (b, x) in f64s.iter_mut().zip([r.spans, r.errors, r.duration_ms]) {
                b.append_value(x);
            }
            for s in r.services.iter() {
                services.values().append_value(&**s);
            }
            services.append(true);
            truncated.append_value(r.services_truncated);
            root.append_option(r.root_span_name.as_deref());
            fin.append_value(r.is_final);
            lo = lo.min(r.start as i128);
            hi = hi.max(r.start as i128);
            lo_end = lo_end.min(r.end as i128);
            hi_end = hi_end.max(r.end as i128);
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(key.finish()),
            Arc::new(gap.finish()),
            Arc::new(value.finish()),
            Arc::new(id.finish()),
            Arc::new(start.finish()),
            Arc::new(end.finish()),
        ];
        cols.extend(
            f64s.into_iter()
                .map(|mut b| Arc::new(b.finish()) as ArrayRef),
        );
        cols.push(Arc::new(services.finish()));
        cols.push(Arc::new(truncated.finish()));
        cols.push(Arc::new(root.finish()));
        cols.push(Arc::new(fin.finish()));
        let batch = match RecordBatch::try_new(schema::SESSIONS.clone(), cols) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("sessions: cannot build a batch: {e}");
                RecordBatch::new_empty(schema::SESSIONS.clone())
            }
        };
        Partition {
            batch,
            time_ranges: if n == 0 {
                Vec::new()
            } else {
                vec![("session_start", lo, hi), ("session_end", lo_end, hi_end)]
            },
            service_range: None,
        }
    }

    /// Packs purged rows into a sealed chunk and applies retention.
    fn seal(&self, st: &mut State, force: bool) {
        while st.purged.len() >= CHUNK_ROWS || (force && !st.purged.is_empty()) {
            let take = st.purged.len().min(CHUNK_ROWS);
            let rows: Vec<SessionRow> = st.purged.drain(..take).collect();
            let p = Self::build(rows.iter());
            let end = rows.iter().map(|r| r.end).max().unwrap_or(0);
            st.sealed.insert(st.next_chunk, st.next_chunk, end, p);
            st.next_chunk += 1;
        }
        let horizon = st.newest_end.saturating_sub(self.settings.retention_ns);
        st.sealed.expire(horizon, self.settings.max_bytes);
    }
}

impl SessionSink for SessionsTable {
    fn on_final(&self, rows: &[SessionRow]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        for r in rows {
            st.newest_end = st.newest_end.max(r.end);
            st.provisional.remove(&r.session_id);
            st.finals.insert(r.session_id, r.clone());
        }
        st.finals_cache = None;
    }

    fn on_retract(&self, retractions: &[SessionRetraction]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        for r in retractions {
            st.finals.remove(&r.session_id);
        }
        st.finals_cache = None;
    }

    fn on_provisional(&self, key_name: &str, gap_ns: u64, rows: &[SessionRow]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        st.provisional
            .retain(|_, r| !(&*r.key_name == key_name && r.gap_ns == gap_ns));
        for r in rows {
            if !st.finals.contains_key(&r.session_id) {
                st.provisional.insert(r.session_id, r.clone());
            }
        }
    }

    fn on_purged(&self, session_ids: &[u64]) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        for id in session_ids {
            st.provisional.remove(id);
            if let Some(r) = st.finals.remove(id) {
                st.purged.push(r);
            }
        }
        st.finals_cache = None;
        self.seal(&mut st, false);
    }
}

impl PartitionSource for SessionsTable {
    fn snapshot(&self, filter: &PruneFilter) -> Vec<RecordBatch> {
        let Ok(mut st) = self.state.lock() else {
            return Vec::new();
        };
        self.seal(&mut st, true);
        let mut out: Vec<RecordBatch> = st
            .sealed
            .values()
            .filter(|p| p.batch.num_rows() > 0 && filter.may_match(p))
            .map(|p| p.batch.clone())
            .collect();
        if st.finals_cache.is_none() && !st.finals.is_empty() {
            let p = Self::build(st.finals.values());
            st.finals_cache = Some(p);
        }
        if let Some(p) = &st.finals_cache {
            if p.batch.num_rows() > 0 && filter.may_match(p) {
                out.push(p.batch.clone());
            }
        }
        if !st.provisional.is_empty() {
            let p = Self::build(st.provisional.values());
            if filter.may_match(&p) {
                out.push(p.batch);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, BooleanArray, Float64Array, StringArray, UInt64Array};

    const SEC: u64 = 1_000_000_000;

    fn row(id: u64, end_s: u64, spans: f64, is_final: bool) -> SessionRow {
        SessionRow {
            session_id: id,
            key_name: Arc::from("trace_id"),
            gap: Arc::from("30s"),
            gap_ns: 30 * SEC,
            key_value: Arc::from(format!("{id:032x}")),
            start: (end_s - 30) * SEC,
            end: end_s * SEC,
            spans,
            errors: 0.0,
            duration_ms: 1.0,
            services: vec![Arc::from("a"), Arc::from("b")].into(),
            services_truncated: false,
            root_span_name: Some(Arc::from("GET /")),
            is_final,
        }
    }

    fn rows(t: &SessionsTable) -> Vec<(u64, f64, bool)> {
        let mut out = Vec::new();
        for b in t.snapshot(&PruneFilter::default()) {
            let ids = b.column(3).as_any().downcast_ref::<UInt64Array>().unwrap();
            let spans = b.column(6).as_any().downcast_ref::<Float64Array>().unwrap();
            let fin = b
                .column(12)
                .as_any()
                .downcast_ref::<BooleanArray>()
                .unwrap();
            let root = b.column(11).as_any().downcast_ref::<StringArray>().unwrap();
            for i in 0..b.num_rows() {
                assert_eq!(root.value(i), "GET /");
                out.push((ids.value(i), spans.value(i), fin.value(i)));
            }
        }
        out.sort_by(|a, b| a.partial_cmp(b).unwrap());
        out
    }

    #[test]
    fn rows_move_from_provisional_to_final_to_sealed_and_retractions_remove_them() {
        let t = SessionsTable::new(SessionsTableSettings::default());
        t.on_provisional(
            "trace_id",
            30 * SEC,
            &[row(1, 100, 1.0, false), row(2, 100, 1.0, false)],
        );
        assert_eq!(rows(&t), vec![(1, 1.0, false), (2, 1.0, false)]);
        t.on_final(&[row(1, 100, 2.0, true)]);
        assert_eq!(rows(&t), vec![(1, 2.0, true), (2, 1.0, false)]);
        // A stale provisional publication cannot show a final session twice.
        t.on_provisional(
            "trace_id",
            30 * SEC,
            &[row(1, 100, 1.0, false), row(2, 100, 1.0, false)],
        );
        assert_eq!(rows(&t), vec![(1, 2.0, true), (2, 1.0, false)]);
        t.on_final(&[row(2, 110, 1.0, true)]);
        // Session 2 merged into 1: 1 re-emitted, 2 retracted.
        t.on_retract(&[SessionRetraction {
            session_id: 2,
            merged_into: Some(1),
        }]);
        t.on_final(&[row(1, 110, 3.0, true)]);
        assert_eq!(rows(&t), vec![(1, 3.0, true)]);
        t.on_purged(&[1]);
        assert_eq!(rows(&t), vec![(1, 3.0, true)]);
        assert_eq!(t.final_rows(), 1);
    }

    #[test]
    fn retention_and_bytes_drop_the_oldest_sealed_sessions() {
        let t = SessionsTable::new(SessionsTableSettings {
            retention_ns: 100 * SEC,
            max_bytes: usize::MAX,
        });
        for i in 0..10u64 {
            t.on_final(&[row(i + 1, 100 + i * 30, 1.0, true)]);
            t.on_purged(&[i + 1]);
            let _ = rows(&t); // seals what was purged
        }
        // Newest end 370 s: ends before 270 s are gone (100..=250 → 6 of them).
        let ids: Vec<u64> = rows(&t).iter().map(|r| r.0).collect();
        assert_eq!(ids, vec![7, 8, 9, 10]);
        let small = SessionsTable::new(SessionsTableSettings {
            retention_ns: u64::MAX,
            max_bytes: 1,
        });
        small.on_final(&[row(1, 100, 1.0, true)]);
        small.on_purged(&[1]);
        assert!(rows(&small).is_empty());
    }
}
