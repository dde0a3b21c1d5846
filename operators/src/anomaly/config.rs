//! Config of anomaly detection (`anomaly:`) and trend prediction (`forecast:`).
//!
//! Owns the shape, defaults and pure validation of these two sections; the detectors themselves
//! live in `redwatch-operators` (`anomaly/`, `forecast/`) and read these structs.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The RED signals every series has, in the order they are evaluated.
pub const RED_SIGNALS: &[&str] = &[
    "request_rate",
    "error_ratio",
    "latency_p50_ms",
    "latency_p99_ms",
];

/// Anomaly detection on every closed primary window of every RED series (and selected metrics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyConfig {
    /// Run detection at all.
    pub enabled: bool,
    /// Signals to watch: RED signals (`request_rate`, `error_ratio`, `latency_p50_ms`,
    /// `latency_p99_ms`) and ingested metric names.
    pub signals: Vec<String>,
    /// Which way a signal alarms: `up`, `down` or `both`. Signals not listed alarm both ways.
    pub directions: BTreeMap<String, Direction>,
    /// Windows with fewer (weighted) calls than this raise no latency or error-ratio alarm and
    /// do not teach the baselines (a p99 of 3 requests says little).
    pub min_calls: f64,
    /// Windows a series must have seen before it may alarm.
    pub warmup_windows: usize,
    /// Calm windows in a row after which an open incident is resolved (calm: the score below
    /// `clear_score`).
    pub resolve_after_windows: usize,
    /// Calibrated score (in [0, 1]; on normal data a share 1 − s of windows scores ≥ s) at or
    /// above which a window may open an incident, when the detectors also agree (see
    /// `ensemble`). 0.99999: about one window in 100 000 of normal data passes this bar alone.
    pub alarm_score: f64,
    /// Hysteresis: while an incident is open, a window scoring at least this continues it
    /// (although it would not open one); below it, the window counts as calm.
    pub clear_score: f64,
    /// Windows after an incident resolved during which no new incident of the same series and
    /// signal opens (the tail of an excursion is not a second one).
    pub refractory_windows: usize,
    /// Once an incident has lasted this many anomalous windows, its values are learnt at full
    /// weight: a level shift that persists becomes the new normal (alarm once, then adapt).
    pub accept_shift_after_windows: usize,
    /// Smallest relative departure from the expected value that may alarm (0.1 = 10%), for
    /// the RED rate and latency signals; keeps statistically clear but tiny changes quiet.
    pub min_relative_change: f64,
    /// The same for ingested metrics (`signals` that are not RED signals); a departure must also
    /// be at least one quantum of the series' own resolution. A gauge's level often has no scale
    /// a percentage could use (a 4% drop of a flow can be 6 standard deviations): 0 leaves only
    /// the quantum and the score.
    pub min_relative_change_metrics: f64,
    /// Smallest absolute departure of `error_ratio` (and other `*_ratio` signals) that may alarm.
    pub min_ratio_change: f64,
    /// How the detectors' verdicts combine into one decision.
    pub ensemble: EnsembleConfig,
    /// The individual detectors and their sensitivity.
    pub detectors: DetectorsConfig,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            signals: RED_SIGNALS.iter().map(|s| s.to_string()).collect(),
            directions: [
                ("request_rate", Direction::Both),
                ("error_ratio", Direction::Up),
                ("latency_p50_ms", Direction::Up),
                ("latency_p99_ms", Direction::Up),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
            min_calls: 20.0,
            warmup_windows: 60,
            resolve_after_windows: 3,
            alarm_score: 0.99999,
            clear_score: 0.99,
            refractory_windows: 6,
            accept_shift_after_windows: 30,
            min_relative_change: 0.1,
            min_relative_change_metrics: 0.1,
            min_ratio_change: 0.01,
            ensemble: EnsembleConfig::default(),
            detectors: DetectorsConfig::default(),
        }
    }
}

/// Which departures from the expected value count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Only values above the expected range.
    Up,
    /// Only values below the expected range.
    Down,
    /// Both.
    #[default]
    Both,
}

/// The ensemble decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnsembleConfig {
    /// Point detectors (robust_z, ewma, seasonal) that must agree for an alarm; a CUSUM alarm
    /// counts on its own.
    pub min_votes: usize,
    /// Once the seasonal baseline has seen a whole period, a value whose seasonal z-score is
    /// below this is what the season predicts and never alarms (a daily peak is not an anomaly).
    pub seasonal_veto_z: f64,
    /// Two-sided confidence of the reported `[expected_min, expected_max]` range.
    pub expected_range_confidence: f64,
}

impl Default for EnsembleConfig {
    fn default() -> Self {
        Self {
            min_votes: 2,
            seasonal_veto_z: 4.5,
            expected_range_confidence: 0.99,
        }
    }
}

/// The detectors. Each can be switched off; thresholds are in robust standard deviations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorsConfig {
    /// Median/MAD z-score over a rolling window of recent values.
    pub robust_z: RobustZConfig,
    /// Exponentially weighted mean and variance control limits.
    pub ewma: EwmaConfig,
    /// Additive Holt-Winters baseline with coarse seasonal slots.
    pub seasonal: SeasonalConfig,
    /// Two-sided CUSUM on the seasonal (or EWMA) residuals, for slow shifts and drifts.
    pub cusum: CusumConfig,
}

/// Robust z-score detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RobustZConfig {
    /// Take part in the ensemble.
    pub enabled: bool,
    /// |z| at or above which it votes for an alarm.
    pub threshold: f64,
    /// Length of the rolling baseline, in windows (kept as a ring buffer of `f32`).
    pub baseline_windows: usize,
}

impl Default for RobustZConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 5.0,
            baseline_windows: 60,
        }
    }
}

/// EWMA/EWMV control-limit detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EwmaConfig {
    /// Take part in the ensemble.
    pub enabled: bool,
    /// |z| at or above which it votes for an alarm.
    pub threshold: f64,
    /// Smoothing factor of the mean and variance, in (0, 1]; smaller = longer memory.
    pub alpha: f64,
}

impl Default for EwmaConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: 5.0,
            alpha: 0.05,
        }
    }
}

/// Seasonal baseline detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeasonalConfig {
    /// Take part in the ensemble.
    pub enabled: bool,
    /// Season length: `1d` for a daily profile; `7d` (weekly) costs 7× the memory.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// Width of one profile slot; the period must be a whole number of slots.
    #[serde(with = "humantime_serde")]
    pub slot: Duration,
    /// |z| at or above which it votes for an alarm.
    pub threshold: f64,
    /// Smoothing of the deseasonalised level ("today versus the usual day"), per window.
    pub level_alpha: f64,
    /// Share of a slot's offset and spread that one period's values replace (0.3: the profile
    /// mostly reflects the last three periods); independent of the window size.
    pub slot_alpha: f64,
}

impl Default for SeasonalConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            period: Duration::from_secs(86_400),
            slot: Duration::from_secs(300),
            threshold: 5.0,
            level_alpha: 0.003,
            slot_alpha: 0.3,
        }
    }
}

/// CUSUM detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CusumConfig {
    /// Take part in the ensemble (alone, a CUSUM alarm is enough).
    pub enabled: bool,
    /// Allowance per window, in standard deviations (drifts smaller than this are ignored).
    pub slack: f64,
    /// Decision interval: cumulative sum (in standard deviations) at which it alarms.
    pub threshold: f64,
}

impl Default for CusumConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            slack: 2.0,
            threshold: 12.0,
        }
    }
}

/// Trend prediction per series and signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastConfig {
    /// Run forecasting at all.
    pub enabled: bool,
    /// Signals to forecast (same names as `anomaly.signals`).
    pub signals: Vec<String>,
    /// How far ahead to predict.
    #[serde(with = "humantime_serde")]
    pub horizon: Duration,
    /// Recent windows the linear trend is fitted on (ring buffer of `f32`).
    pub history_windows: usize,
    /// Nominal coverage of the prediction interval `[lower, upper]`, in (0, 1).
    pub confidence: f64,
    /// A prediction is emitted every this many windows per series (and whenever a threshold
    /// crossing is predicted).
    pub every_windows: usize,
    /// Relative change between now and the horizon that flags a trend change (0.1 = 10%).
    pub trend_change_ratio: f64,
    /// Thresholds (SLOs) whose crossing within the horizon is reported as `time_to_threshold`.
    pub thresholds: Vec<ThresholdConfig>,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            signals: RED_SIGNALS.iter().map(|s| s.to_string()).collect(),
            horizon: Duration::from_secs(300),
            history_windows: 60,
            confidence: 0.95,
            every_windows: 6,
            trend_change_ratio: 0.1,
            thresholds: Vec::new(),
        }
    }
}

/// One threshold on a signal, for every series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    /// The signal it applies to (e.g. `latency_p99_ms`).
    pub signal: String,
    /// The threshold value, in the signal's unit.
    pub value: f64,
    /// `up`: crossing means rising above `value` (the default); `down`: falling below it.
    #[serde(default = "ThresholdConfig::default_direction")]
    pub direction: Direction,
}

impl ThresholdConfig {
    fn default_direction() -> Direction {
        Direction::Up
    }
}

/// Longest supported seasonal profile, in slots (a week of 5-minute slots is 2016).
pub const MAX_SEASONAL_SLOTS: u128 = 4096;
/// Longest supported rolling buffers, in windows.
pub const MAX_HISTORY_WINDOWS: usize = 4096;

fn push(out: &mut Vec<(String, String)>, path: &str, key: &str, msg: impl Into<String>) {
    out.push((format!("{path}.{key}"), msg.into()));
}

fn check_positive(out: &mut Vec<(String, String)>, path: &str, key: &str, v: f64) {
    if !(v.is_finite() && v > 0.0) {
        push(out, path, key, "must be a finite number greater than 0");
    }
}

fn check_fraction(out: &mut Vec<(String, String)>, path: &str, key: &str, v: f64) {
    if !(v > 0.0 && v <= 1.0) {
        push(out, path, key, "must be in (0, 1]");
    }
}

fn check_signals(out: &mut Vec<(String, String)>, path: &str, signals: &[String]) {
    for (i, s) in signals.iter().enumerate() {
        if s.is_empty() {
            push(out, path, &format!("signals[{i}]"), "must not be empty");
        }
        if signals[..i].contains(s) {
            push(
                out,
                path,
                &format!("signals[{i}]"),
                format!("`{s}` is listed twice"),
            );
        }
    }
}

fn check_non_negative(out: &mut Vec<(String, String)>, path: &str, key: &str, v: f64) {
    if !(v.is_finite() && v >= 0.0) {
        push(out, path, key, "must be a finite number ≥ 0");
    }
}

impl AnomalyConfig {
    /// Every problem of this section, as (dotted path, message); `path` is where the section
    /// sits (`anomaly`). Pure.
    pub fn validate(&self, path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        check_signals(&mut out, path, &self.signals);
        check_non_negative(&mut out, path, "min_calls", self.min_calls);
        if self.resolve_after_windows == 0 {
            push(
                &mut out,
                path,
                "resolve_after_windows",
                "must be at least 1",
            );
        }
        if !(self.alarm_score > 0.0 && self.alarm_score < 1.0) {
            push(&mut out, path, "alarm_score", "must be in (0, 1)");
        }
        if !(self.clear_score > 0.0 && self.clear_score <= self.alarm_score) {
            push(&mut out, path, "clear_score", "must be in (0, alarm_score]");
        }
        if self.accept_shift_after_windows == 0 {
            push(
                &mut out,
                path,
                "accept_shift_after_windows",
                "must be at least 1",
            );
        }
        check_non_negative(
            &mut out,
            path,
            "min_relative_change",
            self.min_relative_change,
        );
        check_non_negative(
            &mut out,
            path,
            "min_relative_change_metrics",
            self.min_relative_change_metrics,
        );
        check_non_negative(&mut out, path, "min_ratio_change", self.min_ratio_change);
        self.ensemble.check(&mut out, &format!("{path}.ensemble"));
        self.detectors.check(&mut out, &format!("{path}.detectors"));
        out
    }
}

impl EnsembleConfig {
    fn check(&self, out: &mut Vec<(String, String)>, path: &str) {
        if self.min_votes == 0 || self.min_votes > 3 {
            push(out, path, "min_votes", "must be 1, 2 or 3");
        }
        check_non_negative(out, path, "seasonal_veto_z", self.seasonal_veto_z);
        if !(self.expected_range_confidence > 0.0 && self.expected_range_confidence < 1.0) {
            push(out, path, "expected_range_confidence", "must be in (0, 1)");
        }
    }
}

impl DetectorsConfig {
    fn check(&self, out: &mut Vec<(String, String)>, path: &str) {
        let rp = format!("{path}.robust_z");
        check_positive(out, &rp, "threshold", self.robust_z.threshold);
        if self.robust_z.baseline_windows < 8
            || self.robust_z.baseline_windows > MAX_HISTORY_WINDOWS
        {
            push(
                out,
                &rp,
                "baseline_windows",
                format!("must be between 8 and {MAX_HISTORY_WINDOWS}"),
            );
        }
        let wp = format!("{path}.ewma");
        check_positive(out, &wp, "threshold", self.ewma.threshold);
        check_fraction(out, &wp, "alpha", self.ewma.alpha);
        self.seasonal.check(out, &format!("{path}.seasonal"));
        let cp = format!("{path}.cusum");
        check_non_negative(out, &cp, "slack", self.cusum.slack);
        check_positive(out, &cp, "threshold", self.cusum.threshold);
    }
}

impl SeasonalConfig {
    fn check(&self, out: &mut Vec<(String, String)>, path: &str) {
        check_positive(out, path, "threshold", self.threshold);
        check_fraction(out, path, "level_alpha", self.level_alpha);
        check_fraction(out, path, "slot_alpha", self.slot_alpha);
        if self.slot.as_millis() == 0 {
            push(out, path, "slot", "must be at least 1ms");
        } else if self.period.is_zero()
            || !self.period.as_nanos().is_multiple_of(self.slot.as_nanos())
        {
            push(out, path, "period", "must be a whole number (≥ 1) of slots");
        } else if self.period.as_nanos() / self.slot.as_nanos() > MAX_SEASONAL_SLOTS {
            push(
                out,
                path,
                "period",
                format!("at most {MAX_SEASONAL_SLOTS} slots per period (use a coarser slot)"),
            );
        }
    }
}

impl ForecastConfig {
    /// Every problem of this section, as (dotted path, message); `path` is where the section
    /// sits (`forecast`). Pure.
    pub fn validate(&self, path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        check_signals(&mut out, path, &self.signals);
        if self.horizon.as_millis() == 0 {
            push(&mut out, path, "horizon", "must be at least 1ms");
        }
        if self.history_windows < 8 || self.history_windows > MAX_HISTORY_WINDOWS {
            push(
                &mut out,
                path,
                "history_windows",
                format!("must be between 8 and {MAX_HISTORY_WINDOWS}"),
            );
        }
        if !(self.confidence > 0.0 && self.confidence < 1.0) {
            push(&mut out, path, "confidence", "must be in (0, 1)");
        }
        if self.every_windows == 0 {
            push(&mut out, path, "every_windows", "must be at least 1");
        }
        check_positive(
            &mut out,
            path,
            "trend_change_ratio",
            self.trend_change_ratio,
        );
        for (i, t) in self.thresholds.iter().enumerate() {
            if t.signal.is_empty() {
                push(
                    &mut out,
                    path,
                    &format!("thresholds[{i}].signal"),
                    "must not be empty",
                );
            }
            if !t.value.is_finite() {
                push(
                    &mut out,
                    path,
                    &format!("thresholds[{i}].value"),
                    "must be finite",
                );
            }
            if t.direction == Direction::Both {
                push(
                    &mut out,
                    path,
                    &format!("thresholds[{i}].direction"),
                    "must be `up` or `down`",
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(AnomalyConfig::default().validate("anomaly").is_empty());
        assert!(ForecastConfig::default().validate("forecast").is_empty());
    }

    #[test]
    fn parses_yaml_with_durations_and_rejects_unknown_keys() {
        let a: AnomalyConfig = serde_yaml_ng::from_str(
            "detectors: { seasonal: { period: 7d, slot: 10m }, robust_z: { threshold: 4 } }\n\
             directions: { request_rate: down }\nmin_calls: 5",
        )
        .unwrap();
        assert_eq!(a.detectors.seasonal.period, Duration::from_secs(7 * 86_400));
        assert_eq!(a.detectors.robust_z.threshold, 4.0);
        assert_eq!(a.detectors.robust_z.baseline_windows, 60);
        assert_eq!(a.directions.get("request_rate"), Some(&Direction::Down));
        assert!(a.validate("anomaly").is_empty());
        assert!(serde_yaml_ng::from_str::<AnomalyConfig>("detectors: { nope: 1 }").is_err());
        let f: ForecastConfig = serde_yaml_ng::from_str(
            "horizon: 15m\nthresholds: [{ signal: latency_p99_ms, value: 500 }]",
        )
        .unwrap();
        assert_eq!(f.horizon, Duration::from_secs(900));
        assert_eq!(f.thresholds[0].direction, Direction::Up);
        assert!(serde_yaml_ng::from_str::<ForecastConfig>("horizonn: 1m").is_err());
    }

    #[test]
    fn validate_reports_paths() {
        let mut a = AnomalyConfig::default();
        a.detectors.seasonal.slot = Duration::from_secs(7);
        a.detectors.ewma.alpha = 0.0;
        a.resolve_after_windows = 0;
        a.signals.push("error_ratio".into());
        let p: Vec<String> = a.validate("anomaly").into_iter().map(|(p, _)| p).collect();
        assert!(
            p.contains(&"anomaly.detectors.seasonal.period".to_string()),
            "{p:?}"
        );
        assert!(p.contains(&"anomaly.detectors.ewma.alpha".to_string()));
        assert!(p.contains(&"anomaly.resolve_after_windows".to_string()));
        assert!(p.contains(&"anomaly.signals[4]".to_string()));
        let mut f = ForecastConfig {
            confidence: 1.0,
            ..Default::default()
        };
        f.thresholds.push(ThresholdConfig {
            signal: String::new(),
            value: f64::NAN,
            direction: Direction::Both,
        });
        let p: Vec<String> = f.validate("forecast").into_iter().map(|(p, _)| p).collect();
        assert_eq!(p.len(), 4, "{p:?}");
    }
}
