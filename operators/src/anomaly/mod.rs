//! Anomaly detection on windowed series: per (series, signal) detectors with bounded state, an
//! ensemble decision, incidents, and (through [`crate::forecast`]) trend predictions.
//!
//! [`AnomalyEngine`] is fed one value per closed window — from final primary RED rows
//! ([`AnomalyEngine::observe_red`]) or any other windowed series
//! ([`AnomalyEngine::observe_value`]) — and returns [`Anomaly`] and [`crate::forecast::Prediction`]
//! records. It owns detector state only: it must not export, format or store results (the
//! OTLP exporter, SQL tables and the demo view do that), and it never looks at raw spans.
//!
//! [`AnomalyOperator`] runs it downstream of the window operators (a sink of closed RED and
//! metric windows) and emits what it raises on the anomaly stream ([`SignalStream`]), which
//! exporters, tables, the demo view and later operators subscribe to.

mod config;
mod detection;
mod detectors;
mod ensemble;
pub mod fixtures;
mod incident;
mod operator;
mod params;
mod ring;
mod score;
mod seasonal;

pub use config::{
    AnomalyConfig, CusumConfig, DetectorsConfig, Direction, EnsembleConfig, EwmaConfig,
    ForecastConfig, RobustZConfig, SeasonalConfig, ThresholdConfig, MAX_HISTORY_WINDOWS,
    MAX_SEASONAL_SLOTS, RED_SIGNALS,
};
pub use detection::AnomalyEngine;
pub use detectors::{Cusum, Ewma, RobustZ, SignalKind, Verdict};
pub use ensemble::{Decision, Observation, SignalDetector};
pub(crate) use incident::splitmix;
pub use incident::{incident_id, IncidentPolicy, IncidentTracker, SEVERITY_P};
pub use operator::{AnomalyOperator, SignalSink, SignalStream, Signals};
pub use params::{detector_name, DetectorParams};
pub use ring::Ring16;
pub use score::{t_upper, TailLedger, Tails, ValueShape};
pub use seasonal::{Seasonal, SeasonalParams};

use crate::red::SeriesKey;
use std::sync::Arc;

/// How bad an anomaly is (exported as `anomaly.severity`; docs/anomaly-detection.md, "Severity").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Low = 0,
    Medium = 1,
    High = 2,
    Critical = 3,
}

impl Severity {
    /// The exported value: `low`, `medium`, `high`, `critical`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Where the incident an anomaly belongs to stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentState {
    /// The first anomalous window of the incident.
    Open,
    /// A later anomalous window of the same incident.
    Ongoing,
    /// The incident ended: `resolve_after_windows` calm windows in a row. The record carries the
    /// (calm) window that resolved it and the incident's peak severity, and no alarm score.
    Resolved,
}

impl IncidentState {
    pub fn as_str(&self) -> &'static str {
        match self {
            IncidentState::Open => "open",
            IncidentState::Ongoing => "ongoing",
            IncidentState::Resolved => "resolved",
        }
    }
}

/// One anomalous window of one series and signal (or the window that resolved an incident).
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    /// `request_rate`, `error_ratio`, `latency_p50_ms`, `latency_p99_ms` or a metric name.
    pub signal: Arc<str>,
    pub series: Arc<SeriesKey>,
    /// The window's value.
    pub value: f64,
    /// The range the ensemble expected (`anomaly.expected_range_confidence`, two-sided).
    pub expected_min: f64,
    pub expected_max: f64,
    /// Peak severity of the incident so far (fixed cut-offs of the score, [`SEVERITY_P`]).
    pub severity: Severity,
    /// The calibrated score in [0, 1] (docs/anomaly-detection.md, "The score"): on normal data
    /// the share of windows with score ≥ s is about 1 − s. None on a `resolved` record.
    pub score: Option<f64>,
    /// The calibrated tail probability, 1 − score, kept apart because it stays precise where
    /// the score rounds to 1. None on a `resolved` record.
    pub p_value: Option<f64>,
    /// The raw statistic: the largest z-score (robust standard deviations, on the signal's
    /// variance-stabilised scale) among the point detectors, in the alarm direction. None on a
    /// `resolved` record.
    pub z: Option<f64>,
    /// How many detectors voted (the ones named in `detector`).
    pub votes: u8,
    /// The detectors that voted, e.g. `robust_z+ewma+seasonal` (`ensemble` when none did, as
    /// on a resolving window).
    pub detector: &'static str,
    /// The window, Unix nanoseconds, half-open.
    pub window_start: u64,
    pub window_end: u64,
    /// Stable id of the incident (the OTLP trace id of its spans).
    pub incident_id: [u8; 16],
    pub incident_state: IncidentState,
    /// Start of the incident's first anomalous window (Unix ns).
    pub incident_start: u64,
    /// From `incident_start` to the end of the incident's latest anomalous window (ns): on a
    /// resolved record, how long the incident lasted.
    pub incident_duration_ns: u64,
    /// Anomalous windows in the incident so far.
    pub incident_windows: u32,
}

#[cfg(test)]
mod calibration_tests;
#[cfg(test)]
mod tests;
