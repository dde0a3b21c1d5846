//! The detector parameters shared by every series (derived once from the `anomaly:` config),
//! the detector bits a decision's votes are made of, and their exported names.

use super::seasonal::SeasonalParams;
use crate::anomaly::AnomalyConfig;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Detector bits in [`Decision::votes`].
pub const ROBUST_Z: u8 = 1;
pub const EWMA: u8 = 2;
pub const SEASONAL: u8 = 4;
pub const CUSUM: u8 = 8;

/// `anomaly.detector` for each combination of voting detectors.
const DETECTOR_NAMES: [&str; 16] = [
    "ensemble",
    "robust_z",
    "ewma",
    "robust_z+ewma",
    "seasonal",
    "robust_z+seasonal",
    "ewma+seasonal",
    "robust_z+ewma+seasonal",
    "cusum",
    "robust_z+cusum",
    "ewma+cusum",
    "robust_z+ewma+cusum",
    "seasonal+cusum",
    "robust_z+seasonal+cusum",
    "ewma+seasonal+cusum",
    "robust_z+ewma+seasonal+cusum",
];

/// The name of a set of detector bits, e.g. `robust_z+seasonal`.
pub fn detector_name(votes: u8) -> &'static str {
    DETECTOR_NAMES[(votes & 15) as usize]
}

/// The detector parameters shared by every series, derived once from [`AnomalyConfig`].
#[derive(Debug, Clone)]
pub struct DetectorParams {
    /// (threshold, baseline windows)
    pub robust_z: Option<(f64, usize)>,
    /// (threshold, alpha)
    pub ewma: Option<(f64, f64)>,
    pub seasonal: Option<SeasonalParams>,
    /// (slack, threshold)
    pub cusum: Option<(f64, f64)>,
    pub min_votes: u32,
    pub seasonal_veto_z: f64,
    pub min_calls: f64,
    pub warmup_windows: u32,
    pub min_relative_change: f64,
    /// The same for ingested metrics (their level has no meaning a percentage could use).
    pub min_relative_change_metrics: f64,
    pub min_ratio_change: f64,
    /// Half-width of the expected range in robust standard deviations (Student-t with the
    /// robust baseline's degrees of freedom).
    pub range_q_t: f64,
    /// The same for the seasonal and EWMA baselines (normal).
    pub range_q_normal: f64,
    /// Largest calibrated tail probability that may open an incident (`1 − alarm_score`).
    pub open_p: f64,
    /// Anomalous windows of an incident after which its values are learnt as the new normal.
    pub accept_after: u32,
}

impl DetectorParams {
    pub fn new(cfg: &AnomalyConfig) -> Self {
        let d = &cfg.detectors;
        let conf = cfg.ensemble.expected_range_confidence.clamp(0.5, 0.999_999);
        let p = 1.0 - (1.0 - conf) / 2.0;
        let range_q_normal = Normal::standard().inverse_cdf(p);
        let df = d.robust_z.baseline_windows.max(2) as f64 - 1.0;
        let range_q_t = StudentsT::new(0.0, 1.0, df)
            .map(|t| t.inverse_cdf(p))
            .unwrap_or(range_q_normal);
        let s = &d.seasonal;
        let slot_ns = (s.slot.as_nanos() as u64).max(1);
        let period_ns = (s.period.as_nanos() as u64).max(slot_ns);
        DetectorParams {
            robust_z: d
                .robust_z
                .enabled
                .then_some((d.robust_z.threshold, d.robust_z.baseline_windows.max(4))),
            ewma: d.ewma.enabled.then_some((d.ewma.threshold, d.ewma.alpha)),
            seasonal: s.enabled.then_some(SeasonalParams {
                period_ns,
                slot_ns,
                n_slots: (period_ns / slot_ns).clamp(1, 1 << 16) as usize,
                threshold: s.threshold,
                level_alpha: s.level_alpha,
                slot_alpha: s.slot_alpha,
            }),
            cusum: d
                .cusum
                .enabled
                .then_some((d.cusum.slack, d.cusum.threshold)),
            min_votes: cfg.ensemble.min_votes.max(1) as u32,
            seasonal_veto_z: cfg.ensemble.seasonal_veto_z,
            min_calls: cfg.min_calls,
            warmup_windows: cfg.warmup_windows.min(u32::MAX as usize) as u32,
            min_relative_change: cfg.min_relative_change,
            min_relative_change_metrics: cfg.min_relative_change_metrics,
            min_ratio_change: cfg.min_ratio_change,
            range_q_t,
            range_q_normal,
            open_p: (1.0 - cfg.alarm_score).clamp(0.0, 1.0),
            accept_after: cfg.accept_shift_after_windows.clamp(1, u32::MAX as usize) as u32,
        }
    }
}
