//! Incidents: consecutive anomalous windows of one series and signal form one incident
//! (open → ongoing → resolved after `resolve_after` calm windows in a row), with a stable
//! 16-byte id usable as an OTLP trace id, and a severity from score and duration.
//!
//! The id is a pure function of (series, signal, first window start), so a replay of the same
//! data names the same incident the same way.

use super::{IncidentState, Severity};
use crate::red::SeriesKey;

/// Where an incident of one series and signal stands.
#[derive(Debug, Clone, Copy, Default)]
pub struct IncidentTracker {
    /// The open incident's id (all zero = none open).
    id: [u8; 16],
    /// Anomalous windows in the open incident.
    anomalous: u32,
    /// Calm windows in a row since the last anomalous one.
    calm: u32,
    /// Highest severity reached.
    peak: u8,
    /// Start of the incident's first anomalous window (Unix ns).
    started: u64,
    /// End of its latest anomalous window.
    last_end: u64,
}

/// What one window did to the incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncidentStep {
    pub id: [u8; 16],
    pub state: IncidentState,
    pub severity: Severity,
    /// Start of the incident's first anomalous window.
    pub started: u64,
    /// From `started` to the end of the incident's latest anomalous window (ns).
    pub duration_ns: u64,
    /// Anomalous windows in the incident so far.
    pub windows: u32,
}

impl IncidentTracker {
    pub fn is_open(&self) -> bool {
        self.id != [0; 16]
    }

    /// Anomalous windows so far in the open incident.
    pub fn duration_windows(&self) -> u32 {
        self.anomalous
    }

    /// An anomalous window with ensemble score `score`: opens or continues the incident
    /// (without window times: duration 0).
    pub fn anomalous(&mut self, score: f64, new_id: impl FnOnce() -> [u8; 16]) -> IncidentStep {
        self.anomalous_at(score, 0, 0, new_id)
    }

    /// An anomalous window `[start, end)` with ensemble score `score`: opens or continues the
    /// incident.
    pub fn anomalous_at(
        &mut self,
        score: f64,
        start: u64,
        end: u64,
        new_id: impl FnOnce() -> [u8; 16],
    ) -> IncidentStep {
        let state = if self.is_open() {
            IncidentState::Ongoing
        } else {
            *self = IncidentTracker {
                id: new_id(),
                started: start,
                ..Default::default()
            };
            IncidentState::Open
        };
        self.anomalous = self.anomalous.saturating_add(1);
        self.calm = 0;
        self.last_end = self.last_end.max(end);
        let sev = Severity::from_score_and_duration(score, self.anomalous);
        self.peak = self.peak.max(sev as u8);
        self.step(state)
    }

    fn step(&self, state: IncidentState) -> IncidentStep {
        IncidentStep {
            id: self.id,
            state,
            severity: Severity::from_u8(self.peak),
            started: self.started,
            duration_ns: self.last_end.saturating_sub(self.started),
            windows: self.anomalous,
        }
    }

    /// A calm window: resolves the open incident after `resolve_after` of them in a row.
    pub fn calm(&mut self, resolve_after: u32) -> Option<IncidentStep> {
        if !self.is_open() {
            return None;
        }
        self.calm += 1;
        if self.calm < resolve_after {
            return None;
        }
        let step = self.step(IncidentState::Resolved);
        *self = IncidentTracker::default();
        Some(step)
    }
}

impl Severity {
    /// Severity from the ensemble score (a z-score) and how many anomalous windows the incident
    /// has lasted: by score, low < 7 ≤ medium < 12 ≤ high < 25 ≤ critical; one level up once the
    /// incident has lasted 6 windows, two levels up at 30.
    pub fn from_score_and_duration(score: f64, windows: u32) -> Severity {
        let base: u8 = if score >= 25.0 {
            3
        } else if score >= 12.0 {
            2
        } else if score >= 7.0 {
            1
        } else {
            0
        };
        let bump = match windows {
            0..=5 => 0,
            6..=29 => 1,
            _ => 2,
        };
        Severity::from_u8(base + bump)
    }

    fn from_u8(v: u8) -> Severity {
        match v {
            0 => Severity::Low,
            1 => Severity::Medium,
            2 => Severity::High,
            _ => Severity::Critical,
        }
    }
}

/// The stable id of the incident of (series, signal) that opened with the window starting at
/// `window_start`: FNV-1a over the parts, finalised twice with different seeds; never all zero.
pub fn incident_id(series: &SeriesKey, signal: &str, window_start: u64) -> [u8; 16] {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = FNV_OFFSET;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(FNV_PRIME);
        }
        // A separator, so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(FNV_PRIME);
    };
    eat(series.service_name.as_bytes());
    eat(series.span_name.as_bytes());
    eat(&[series.kind as u8, series.overflow as u8]);
    for d in series.dims.iter() {
        eat(d.as_bytes());
    }
    eat(signal.as_bytes());
    eat(&window_start.to_le_bytes());
    let a = splitmix(h ^ 0x9e37_79b9_7f4a_7c15);
    let b = splitmix(h ^ 0xd1b5_4a32_d192_ed03);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&a.to_be_bytes());
    id[8..].copy_from_slice(&b.to_be_bytes());
    if id == [0; 16] {
        id[15] = 1;
    }
    id
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use redwatch_engine::SpanKind;
    use std::sync::Arc;

    fn key(svc: &str) -> SeriesKey {
        SeriesKey {
            service_name: Arc::from(svc),
            span_name: Arc::from("GET /"),
            kind: SpanKind::Server,
            dims: Box::new([]),
            overflow: false,
        }
    }

    #[test]
    fn lifecycle_open_ongoing_resolved() {
        let mut t = IncidentTracker::default();
        assert_eq!(t.calm(3), None);
        let a = t.anomalous(5.0, || [7; 16]);
        assert_eq!(a.state, IncidentState::Open);
        assert_eq!(a.severity, Severity::Low);
        // Two calm windows do not resolve; the next anomalous window continues the incident.
        assert_eq!(t.calm(3), None);
        assert_eq!(t.calm(3), None);
        let b = t.anomalous(30.0, || [9; 16]);
        assert_eq!(
            (b.id, b.state, b.severity),
            ([7; 16], IncidentState::Ongoing, Severity::Critical)
        );
        // Severity never drops within an incident.
        let c = t.anomalous(5.0, || [9; 16]);
        assert_eq!(c.severity, Severity::Critical);
        assert_eq!(t.calm(3), None);
        assert_eq!(t.calm(3), None);
        let r = t.calm(3).unwrap();
        assert_eq!((r.id, r.state), ([7; 16], IncidentState::Resolved));
        assert!(!t.is_open());
        assert_eq!(t.anomalous(5.0, || [9; 16]).id, [9; 16]);
    }

    #[test]
    fn severity_grows_with_duration() {
        assert_eq!(Severity::from_score_and_duration(5.0, 1), Severity::Low);
        assert_eq!(Severity::from_score_and_duration(5.0, 6), Severity::Medium);
        assert_eq!(Severity::from_score_and_duration(5.0, 30), Severity::High);
        assert_eq!(
            Severity::from_score_and_duration(13.0, 30),
            Severity::Critical
        );
        assert_eq!(Severity::from_score_and_duration(8.0, 1), Severity::Medium);
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = incident_id(&key("a"), "error_ratio", 10);
        assert_eq!(a, incident_id(&key("a"), "error_ratio", 10));
        assert_ne!(a, incident_id(&key("b"), "error_ratio", 10));
        assert_ne!(a, incident_id(&key("a"), "request_rate", 10));
        assert_ne!(a, incident_id(&key("a"), "error_ratio", 20));
    }

    proptest! {
        /// Whatever the sequence, an incident resolves exactly after `n` calm windows in a row
        /// and anomalous windows always carry the id of the incident they belong to.
        #[test]
        fn tracker_matches_model(seq in proptest::collection::vec(any::<bool>(), 1..200), n in 1u32..5) {
            let mut t = IncidentTracker::default();
            let mut next = 1u8;
            let (mut open, mut calm_run, mut id) = (false, 0u32, 0u8);
            for &anom in &seq {
                if anom {
                    let s = t.anomalous(1.0, || { let v = [next; 16]; next = next.wrapping_add(1).max(1); v });
                    if !open { open = true; id = s.id[0]; prop_assert_eq!(s.state, IncidentState::Open); }
                    else { prop_assert_eq!(s.state, IncidentState::Ongoing); }
                    prop_assert_eq!(s.id[0], id);
                    calm_run = 0;
                } else {
                    let r = t.calm(n);
                    if open { calm_run += 1; }
                    if open && calm_run >= n {
                        prop_assert_eq!(r.map(|s| s.state), Some(IncidentState::Resolved));
                        open = false;
                        calm_run = 0;
                    } else {
                        prop_assert!(r.is_none());
                    }
                }
            }
        }
    }
}
