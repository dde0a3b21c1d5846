//! [`ResolvedIncidents`]: the member incidents a resolved problem still expects records from,
//! each with its problem id, so that such a record is released into that problem's trace rather
//! than the incident's own (one incident, one trace; docs/anomaly-detection.md, "Problems").
//!
//! A problem resolves when every member resolved; a member whose series stopped reporting
//! resolves by timeout, without its incident's `resolved` record. When the series reports again
//! the detector sends that incident's remaining records — after the problem is gone. Only such
//! timed-out members are kept: an incident whose `resolved` record came sends nothing more.
//!
//! Bounded by count: at most `capacity` incidents, about [`ENTRY_BYTES`] each (the map entry
//! and its place in the eviction order), so at most `capacity × ENTRY_BYTES` bytes (0.8 MB for
//! the default 10 000). An entry leaves when its incident's `resolved` record arrives or its
//! series expires (the detector forgot it: no record of that incident can come); past the bound
//! the oldest is evicted and counted in [`ResolvedIncidents::evicted`] — every kept entry is still
//! needed, so a late record of an evicted one leaves in its incident's own trace.

use crate::red::SeriesKey;
use hashbrown::{HashMap, HashSet};
use std::collections::VecDeque;
use std::sync::Arc;

/// Approximate bytes per kept incident: key, problem id, series handle and insertion counter in
/// the map (with hashbrown's control byte and load factor), plus the eviction queue's entry.
pub const ENTRY_BYTES: usize = 80;

/// See the module comment.
#[derive(Debug)]
pub struct ResolvedIncidents {
    /// Incident → (its problem, its series, the insertion number of this entry).
    by_incident: HashMap<[u8; 16], ([u8; 16], Arc<SeriesKey>, u64)>,
    /// (incident, insertion number), oldest first; an entry whose number no longer matches the
    /// map's was removed or replaced and is skipped.
    order: VecDeque<([u8; 16], u64)>,
    capacity: usize,
    inserted: u64,
    /// Entries evicted by the count bound before their incident's last record came.
    pub evicted: u64,
}

impl ResolvedIncidents {
    pub fn new(capacity: usize) -> Self {
        ResolvedIncidents {
            by_incident: HashMap::new(),
            order: VecDeque::new(),
            capacity,
            inserted: 0,
            evicted: 0,
        }
    }

    /// Incident `incident` of `series` belonged to `problem`, which resolved before its last
    /// record came.
    pub fn insert(&mut self, incident: [u8; 16], problem: [u8; 16], series: Arc<SeriesKey>) {
        if self.capacity == 0 {
            self.evicted += 1;
            return;
        }
        self.inserted += 1;
        self.by_incident
            .insert(incident, (problem, series, self.inserted));
        self.order.push_back((incident, self.inserted));
        while self.by_incident.len() > self.capacity {
            let Some((id, n)) = self.order.pop_front() else {
                break;
            };
            if self.by_incident.get(&id).is_some_and(|e| e.2 == n) {
                self.by_incident.remove(&id);
                self.evicted += 1;
            }
        }
        self.compact();
    }

    /// The problem of a late record of `incident`; `last`: it is the incident's final
    /// (`resolved`) record, after which the entry is not needed.
    pub fn problem_of(&mut self, incident: &[u8; 16], last: bool) -> Option<[u8; 16]> {
        let pid = self.by_incident.get(incident)?.0;
        if last {
            self.by_incident.remove(incident);
            self.compact();
        }
        Some(pid)
    }

    /// The detector forgot these series: their incidents send nothing more.
    pub fn forget_series(&mut self, series: &[Arc<SeriesKey>]) {
        if self.by_incident.is_empty() {
            return;
        }
        let gone: HashSet<&SeriesKey> = series.iter().map(|s| &**s).collect();
        self.by_incident.retain(|_, e| !gone.contains(&*e.1));
        self.compact();
    }

    /// Incidents kept.
    pub(super) fn len(&self) -> usize {
        self.by_incident.len()
    }

    /// Drops queue entries of removed incidents once they outnumber the live ones, so the queue
    /// stays within twice the bound.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.by_incident.len() + 16 {
            let map = &self.by_incident;
            self.order
                .retain(|(id, n)| map.get(id).is_some_and(|e| e.2 == *n));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redwatch_engine::model::SpanKind;

    fn series(name: &str) -> Arc<SeriesKey> {
        Arc::new(SeriesKey {
            service_name: Arc::from(name),
            span_name: Arc::from("op"),
            kind: SpanKind::Server,
            dims: Box::new([]),
            overflow: false,
        })
    }

    #[test]
    fn the_oldest_is_evicted_past_the_bound_and_counted() {
        let mut r = ResolvedIncidents::new(2);
        let s = series("a");
        for i in 0..3u8 {
            r.insert([i; 16], [100 + i; 16], s.clone());
        }
        assert_eq!(r.len(), 2);
        assert_eq!(r.evicted, 1);
        assert_eq!(r.problem_of(&[0; 16], false), None);
        assert_eq!(r.problem_of(&[1; 16], false), Some([101; 16]));
        // The final record frees the entry; nothing is evicted for the next one.
        assert_eq!(r.problem_of(&[1; 16], true), Some([101; 16]));
        assert_eq!(r.problem_of(&[1; 16], false), None);
        r.insert([3; 16], [103; 16], s);
        assert_eq!((r.len(), r.evicted), (2, 1));
    }

    #[test]
    fn expired_series_are_forgotten_and_the_queue_stays_bounded() {
        let mut r = ResolvedIncidents::new(4);
        let (a, b) = (series("a"), series("b"));
        r.insert([1; 16], [9; 16], a.clone());
        r.insert([2; 16], [9; 16], b.clone());
        r.forget_series(&[series("a")]);
        assert_eq!(r.problem_of(&[1; 16], false), None);
        assert_eq!(r.problem_of(&[2; 16], false), Some([9; 16]));
        for i in 0..1000u32 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            id[15] = 7;
            r.insert(id, [9; 16], a.clone());
            r.problem_of(&id, true);
        }
        assert_eq!(r.len(), 1);
        assert!(r.order.len() <= 2 * r.len() + 17, "{}", r.order.len());
        assert_eq!(r.evicted, 0);
    }
}
