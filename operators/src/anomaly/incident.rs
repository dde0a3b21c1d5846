//! Incidents: the anomalous windows of one excursion of one series and signal form one incident
//! (open → ongoing → resolved after `resolve_after` calm windows in a row), with hysteresis (a
//! window far out but below the alarm bar continues an open incident), a refractory period
//! after each resolution, a stable 16-byte id usable as an OTLP trace id, and a severity from
//! the calibrated score by fixed cut-offs.
//!
//! The id is a pure function of (series, signal, first window start), so a replay of the same
//! data names the same incident the same way.

use super::{IncidentState, Severity};
use crate::red::SeriesKey;

/// Where an incident of one series and signal stands.
#[derive(Debug, Clone, Copy, Default)]
pub struct IncidentTracker {
    /// Anomalous windows in the open incident (0 = none open).
    anomalous: u32,
    /// Calm windows in a row since the last anomalous one.
    calm: u16,
    /// Windows left in the refractory period after the last incident resolved.
    refractory_left: u16,
    /// Highest severity reached.
    peak: u8,
    /// Start of the incident's first anomalous window (Unix ns); with the series and signal it
    /// names the incident ([`incident_id`]), so the id itself is not stored.
    started: u64,
    /// End of its latest anomalous window.
    last_end: u64,
}

/// How windows become incidents: hysteresis, resolution and refractory period
/// (docs/anomaly-detection.md, "Incidents").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IncidentPolicy {
    /// While an incident is open, a window whose tail probability is at most this continues it
    /// although it would not open one (`1 − clear_score`).
    pub continue_p: f64,
    /// Calm windows in a row that resolve an incident.
    pub resolve_after: u32,
    /// Windows after a resolution during which no new incident opens.
    pub refractory: u32,
}

impl Default for IncidentPolicy {
    fn default() -> Self {
        IncidentPolicy {
            continue_p: 0.01,
            resolve_after: 3,
            refractory: 0,
        }
    }
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
        self.anomalous > 0
    }

    /// Anomalous windows so far in the open incident (0 = none open).
    pub fn duration_windows(&self) -> u32 {
        self.anomalous
    }

    /// One window `[start, end)`: `anomalous` is the ensemble's decision, `p` the window's
    /// calibrated tail probability, `sustained` whether a shift detector still sees the shift.
    /// Opens an incident (outside the refractory period), continues it (an anomalous window, or
    /// while open one with `p ≤ continue_p` or a sustained shift: hysteresis),
    /// or counts a calm window and resolves after `resolve_after` of them in a row. Returns the
    /// step when the window is part of an incident or resolves one; `id` names an incident by
    /// its start.
    #[allow(clippy::too_many_arguments)]
    pub fn window(
        &mut self,
        anomalous: bool,
        p: f64,
        sustained: bool,
        start: u64,
        end: u64,
        policy: &IncidentPolicy,
        id: impl FnOnce(u64) -> [u8; 16],
    ) -> Option<IncidentStep> {
        if !self.is_open() {
            if self.refractory_left > 0 {
                self.refractory_left -= 1;
                return None;
            }
            if !anomalous {
                return None;
            }
            *self = IncidentTracker {
                started: start,
                ..Default::default()
            };
            return Some(self.grow(p, end, IncidentState::Open, id));
        }
        if anomalous || sustained || p <= policy.continue_p {
            return Some(self.grow(p, end, IncidentState::Ongoing, id));
        }
        self.calm = self.calm.saturating_add(1);
        if (self.calm as u32) < policy.resolve_after.max(1) {
            return None;
        }
        let step = self.step(IncidentState::Resolved, id);
        *self = IncidentTracker {
            refractory_left: policy.refractory.min(u16::MAX as u32) as u16,
            ..Default::default()
        };
        Some(step)
    }

    fn grow(
        &mut self,
        p: f64,
        end: u64,
        state: IncidentState,
        id: impl FnOnce(u64) -> [u8; 16],
    ) -> IncidentStep {
        self.anomalous = self.anomalous.saturating_add(1);
        self.calm = 0;
        self.last_end = self.last_end.max(end);
        self.peak = self.peak.max(Severity::from_p(p) as u8);
        self.step(state, id)
    }

    fn step(&self, state: IncidentState, id: impl FnOnce(u64) -> [u8; 16]) -> IncidentStep {
        IncidentStep {
            id: id(self.started),
            state,
            severity: Severity::from_u8(self.peak),
            started: self.started,
            duration_ns: self.last_end.saturating_sub(self.started),
            windows: self.anomalous,
        }
    }
}

/// Severity cut-offs on the calibrated tail probability p = 1 − score (docs/anomaly-detection.md,
/// "Severity"): low p > 1e-6, medium 1e-9 < p ≤ 1e-6, high 1e-12 < p ≤ 1e-9, critical p ≤ 1e-12.
pub const SEVERITY_P: [f64; 3] = [1e-6, 1e-9, 1e-12];

impl Severity {
    /// Severity of a window with calibrated tail probability `p` (fixed cut-offs,
    /// [`SEVERITY_P`]).
    pub fn from_p(p: f64) -> Severity {
        let level = SEVERITY_P.iter().filter(|&&c| p <= c).count();
        Severity::from_u8(level as u8)
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

/// The splitmix64 finalizer: a well-spread 64-bit mix (incident and problem ids).
pub(crate) fn splitmix(mut z: u64) -> u64 {
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

    fn pol(resolve_after: u32, refractory: u32) -> IncidentPolicy {
        IncidentPolicy {
            continue_p: 0.01,
            resolve_after,
            refractory,
        }
    }

    fn ids(started: u64) -> [u8; 16] {
        [started as u8 + 1; 16]
    }

    #[test]
    fn lifecycle_open_ongoing_resolved() {
        let mut t = IncidentTracker::default();
        let p = pol(3, 0);
        assert_eq!(t.window(false, 0.5, false, 0, 1, &p, ids), None);
        let a = t.window(true, 1e-7, false, 6, 7, &p, ids).unwrap();
        assert_eq!(
            (a.state, a.id, a.severity),
            (IncidentState::Open, [7; 16], Severity::Medium)
        );
        // Two calm windows do not resolve; the next anomalous window continues the incident.
        assert_eq!(t.window(false, 0.5, false, 7, 8, &p, ids), None);
        assert_eq!(t.window(false, 0.5, false, 8, 9, &p, ids), None);
        let b = t.window(true, 1e-13, false, 9, 10, &p, ids).unwrap();
        assert_eq!(
            (b.id, b.state, b.severity),
            ([7; 16], IncidentState::Ongoing, Severity::Critical)
        );
        // Hysteresis: a window the ensemble would not open on, but still far out, continues.
        let c = t.window(false, 0.001, false, 10, 11, &p, ids).unwrap();
        assert_eq!(
            (c.state, c.severity),
            (IncidentState::Ongoing, Severity::Critical)
        );
        assert_eq!(t.window(false, 0.5, false, 11, 12, &p, ids), None);
        assert_eq!(t.window(false, 0.5, false, 12, 13, &p, ids), None);
        let r = t.window(false, 0.5, false, 13, 14, &p, ids).unwrap();
        assert_eq!(
            (r.id, r.state, r.windows),
            ([7; 16], IncidentState::Resolved, 3)
        );
        assert_eq!(r.duration_ns, 11 - 6);
        assert!(!t.is_open());
        assert_eq!(
            t.window(true, 1e-7, false, 20, 21, &p, ids).unwrap().id,
            [21; 16]
        );
    }

    #[test]
    fn refractory_period_keeps_the_next_noisy_window_quiet() {
        let mut t = IncidentTracker::default();
        let p = pol(1, 5);
        assert!(t.window(true, 1e-7, false, 0, 1, &p, ids).is_some());
        assert_eq!(
            t.window(false, 0.5, false, 1, 2, &p, ids).map(|s| s.state),
            Some(IncidentState::Resolved)
        );
        for i in 2..7 {
            assert_eq!(
                t.window(true, 1e-7, false, i, i + 1, &p, ids),
                None,
                "window {i}"
            );
        }
        assert_eq!(
            t.window(true, 1e-7, false, 7, 8, &p, ids).map(|s| s.state),
            Some(IncidentState::Open)
        );
    }

    #[test]
    fn severity_follows_fixed_cut_offs() {
        assert_eq!(Severity::from_p(1e-5), Severity::Low);
        assert_eq!(Severity::from_p(1e-6), Severity::Medium);
        assert_eq!(Severity::from_p(1e-10), Severity::High);
        assert_eq!(Severity::from_p(1e-12), Severity::Critical);
        assert_eq!(Severity::from_p(0.0), Severity::Critical);
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
        /// and its windows always carry the id of the incident they belong to.
        #[test]
        fn tracker_matches_model(seq in proptest::collection::vec(any::<bool>(), 1..200), n in 1u32..5) {
            let mut t = IncidentTracker::default();
            let p = pol(n, 0);
            let (mut open, mut calm_run, mut id) = (false, 0u32, 0u8);
            for (i, &anom) in seq.iter().enumerate() {
                let i = i as u64;
                let s = t.window(anom, if anom { 1e-9 } else { 0.5 }, false, i, i + 1, &p, ids);
                if anom {
                    let s = s.unwrap();
                    if !open { open = true; id = s.id[0]; prop_assert_eq!(s.state, IncidentState::Open); }
                    else { prop_assert_eq!(s.state, IncidentState::Ongoing); }
                    prop_assert_eq!(s.id[0], id);
                    calm_run = 0;
                } else {
                    if open { calm_run += 1; }
                    if open && calm_run >= n {
                        prop_assert_eq!(s.map(|s| s.state), Some(IncidentState::Resolved));
                        open = false;
                        calm_run = 0;
                    } else {
                        prop_assert!(s.is_none());
                    }
                }
            }
        }
    }
}
