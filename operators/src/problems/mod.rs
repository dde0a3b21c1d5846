//! Problems: anomalies that overlap in time and connect through the live service graph (or share
//! a service) grouped into one problem, with a ranked list of likely causes and the evidence for
//! each rank in words (docs/anomaly-detection.md, "Problems").
//!
//! [`Correlator`] sits downstream of detection: it is fed the [`Anomaly`] records of each closed
//! window and the service graph's final edge rows, and on each [`Correlator::advance`] returns
//! the anomaly records it releases (each tagged with its problem) and snapshots of the problems
//! that opened, changed or resolved. It owns grouping and ranking only: it must not export,
//! format spans or store tables (the OTLP exporter, SQL tables, the webhook and the demo view do
//! that), and it never looks at raw spans.
//!
//! Memory is bounded: at most [`ProblemParams::max_members`] member incidents and
//! [`ProblemParams::max_edges`] graph edges are held; an anomaly past the bound is released
//! without a problem and counted. As many timed-out members of resolved problems are kept
//! (about 80 bytes each) so their late records still join their problem's trace; one evicted by
//! that bound is counted.

mod config;
mod correlator;
mod graph;
mod operator;
mod rank;
mod resolved;

pub use config::ProblemsConfig;
pub use correlator::{Correlator, Released, Step};
pub use graph::LiveGraph;
pub use operator::{ProblemBatch, ProblemOperator, ProblemSink, ProblemStream};
pub use rank::rank_causes;

use crate::anomaly::{Anomaly, Severity};
use crate::red::SeriesKey;
use redwatch_engine::model::SpanKind;
use std::sync::Arc;

/// How anomalies group into problems.
#[derive(Debug, Clone, PartialEq)]
pub struct ProblemParams {
    /// The primary window width (ns): every other duration here counts in windows of it.
    pub window_ns: u64,
    /// Windows a new problem waits before it is published: anomalies of the same propagation
    /// that alarm a window later (a caller's detector is a window slower than its callee's) join
    /// it before anyone is paged, instead of opening a second problem.
    pub hold_windows: u32,
    /// Windows after all its members resolved before a problem resolves; until then an echo
    /// (a caller that alarms late) still joins it.
    pub linger_windows: u32,
    /// A member without any record for this many windows counts as resolved (its series
    /// stopped reporting).
    pub member_timeout_windows: u32,
    /// An edge not seen in a final service graph row for this many windows leaves the live
    /// graph.
    pub edge_ttl_windows: u32,
    /// A problem is published only once confirmed (Prometheus' `for:`): one of its members has
    /// been anomalous in two consecutive windows, or `confirm_signals` signals of one series each
    /// have a tail probability at most `confirm_p`. A one-window blip (one slow request in a
    /// p99 and its echo in the callers' p99s, however extreme) stays pending; when it resolves
    /// unconfirmed its records are released without a problem and it is counted
    /// ([`Correlator::unconfirmed`]).
    pub confirm_p: f64,
    /// Signals of one series that must each reach `confirm_p` in a single window to confirm a
    /// problem before any member persisted (2: a shift seen by two statistics, e.g. the median
    /// and the p99, or the error ratio and the p99; one slow request moves only the tail).
    pub confirm_signals: usize,
    /// Most member incidents held (over all unresolved problems).
    pub max_members: usize,
    /// Most edges in the live graph.
    pub max_edges: usize,
}

impl ProblemParams {
    /// The defaults for windows of `window_ns`.
    pub fn new(window_ns: u64) -> Self {
        ProblemParams {
            window_ns: window_ns.max(1),
            hold_windows: 1,
            linger_windows: 6,
            member_timeout_windows: 60,
            edge_ttl_windows: 90,
            confirm_p: 1e-9,
            confirm_signals: 2,
            max_members: 10_000,
            max_edges: 10_000,
        }
    }
}

/// Where a problem stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemState {
    /// Published in this step for the first time.
    Open,
    /// Published earlier and changed in this step (new members, another first cause).
    Ongoing,
    /// All members resolved (and stayed so for `linger_windows`).
    Resolved,
}

impl ProblemState {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProblemState::Open => "open",
            ProblemState::Ongoing => "ongoing",
            ProblemState::Resolved => "resolved",
        }
    }
}

/// One member incident of a problem (one series and signal), summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub incident_id: [u8; 16],
    pub series: Arc<SeriesKey>,
    pub signal: Arc<str>,
    /// Start of the incident's first anomalous window (ns).
    pub onset: u64,
    /// End of its latest anomalous window (ns).
    pub last_end: u64,
    /// End of the window of its latest record of any kind (ns), for the timeout.
    pub last_seen: u64,
    pub severity: Severity,
    pub peak_score: f64,
    /// The smallest tail probability of its windows (1 − score).
    pub min_p: f64,
    /// Anomalous windows so far.
    pub windows: u32,
    /// The value at the window of largest departure, and the expected value then (midpoint of
    /// the expected range): their difference is the member's change.
    pub value: f64,
    pub expected: f64,
    pub resolved: bool,
}

impl Member {
    /// How far the member moved from its expected value at its largest departure.
    pub fn change(&self) -> f64 {
        self.value - self.expected
    }

    fn from_anomaly(a: &Anomaly) -> Member {
        Member {
            incident_id: a.incident_id,
            series: a.series.clone(),
            signal: a.signal.clone(),
            onset: a.incident_start,
            last_end: a.window_end,
            last_seen: a.window_end,
            severity: a.severity,
            peak_score: a.score.unwrap_or(0.0),
            min_p: p_of(a),
            windows: a.incident_windows.max(1),
            value: a.value,
            expected: mid(a),
            resolved: false,
        }
    }

    /// Folds a later record of the same incident in.
    fn update(&mut self, a: &Anomaly) {
        self.last_seen = self.last_seen.max(a.window_end);
        self.severity = self.severity.max(a.severity);
        if a.incident_state == crate::anomaly::IncidentState::Resolved {
            self.resolved = true;
            return;
        }
        self.last_end = self.last_end.max(a.window_end);
        self.peak_score = self.peak_score.max(a.score.unwrap_or(0.0));
        self.min_p = self.min_p.min(p_of(a));
        self.windows = self.windows.max(a.incident_windows);
        let e = mid(a);
        if (a.value - e).abs() > self.change().abs() {
            self.value = a.value;
            self.expected = e;
        }
    }
}

/// The record's tail probability (1 when it carries none).
fn p_of(a: &Anomaly) -> f64 {
    a.p_value
        .or(a.score.map(|s| 1.0 - s))
        .filter(|p| p.is_finite())
        .unwrap_or(1.0)
}

fn mid(a: &Anomaly) -> f64 {
    let m = 0.5 * (a.expected_min + a.expected_max);
    if m.is_finite() {
        m
    } else {
        a.value
    }
}

/// One likely cause: a series of the problem, with the reasons for its rank.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub service: Arc<str>,
    pub span_name: Arc<str>,
    pub kind: SpanKind,
    /// The member signal that speaks for it (its earliest, then strongest).
    pub signal: Arc<str>,
    /// The ranking points (higher ranks first); the evidence says where they come from.
    pub points: f64,
    /// Why, in words: onset order, position on the call path, how much of its callers' change
    /// it explains, error bursts on edges into it.
    pub evidence: String,
}

/// A problem as published: a snapshot taken when it opened, changed or resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Stable id (a pure function of its first member incident): the OTLP trace id of its trace.
    pub id: [u8; 16],
    pub state: ProblemState,
    /// Start of its earliest member's first anomalous window (ns).
    pub onset: u64,
    /// When it was published (ns, event time): the end of the window at which its hold ended and
    /// it was confirmed.
    pub opened_at: u64,
    /// The window end at which it resolved (ns).
    pub resolved_at: Option<u64>,
    /// The window end of this snapshot (ns).
    pub updated_at: u64,
    /// Members, by onset.
    pub members: Vec<Member>,
    /// Likely causes, most likely first (one per series).
    pub causes: Vec<Cause>,
    /// One line for humans: the first cause and what followed it.
    pub summary: String,
}

impl Problem {
    /// The first likely cause.
    pub fn cause(&self) -> Option<&Cause> {
        self.causes.first()
    }

    /// Services with a member, in onset order.
    pub fn services(&self) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = Vec::new();
        for m in &self.members {
            if !out.iter().any(|s| *s == m.series.service_name) {
                out.push(m.series.service_name.clone());
            }
        }
        out
    }
}

/// The problem id for a problem first created by incident `first`: a different 16 bytes than
/// the incident's own id (the incident's spans become children in the problem's trace).
pub fn problem_id(first: &[u8; 16]) -> [u8; 16] {
    use crate::anomaly::splitmix;
    let a = u64::from_be_bytes(first[..8].try_into().unwrap_or_default());
    let b = u64::from_be_bytes(first[8..].try_into().unwrap_or_default());
    let x = splitmix(a ^ 0x7072_6f62_6c65_6d00 ^ b.rotate_left(17));
    let y = splitmix(b ^ 0x6973_7375_6531_3700 ^ a.rotate_left(29));
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&x.to_be_bytes());
    id[8..].copy_from_slice(&y.to_be_bytes());
    id
}

#[cfg(test)]
mod tests;
