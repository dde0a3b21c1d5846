//! [`AnomalyEngine`]: detector, incident and forecaster state for every (series, signal), fed
//! one value per closed window.
//!
//! Only the first final emission of a primary RED window is observed: provisional rows, rollup
//! rows and late re-emissions update nothing (detectors learn each window exactly once, in
//! event-time order per series; a window at or before the last one seen is ignored). A series
//! whose `request_rate` skips windows had no calls in them: up to [`MAX_GAP_FILL`] missing
//! windows are observed as rate 0 when the next row arrives, so a traffic drop to nothing still
//! alarms (with the missing windows' own times).

use super::ensemble::{Decision, Observation, SignalDetector};
use super::incident::{incident_id, IncidentPolicy, IncidentStep, IncidentTracker};
use super::params::{detector_name, DetectorParams};
use super::{Anomaly, IncidentState, SignalKind};
use crate::anomaly::{AnomalyConfig, Direction, ForecastConfig};
use crate::forecast::{steps_to_threshold, ForecastParams, Forecaster, Prediction};
use crate::red::{RedRow, SeriesKey};
use hashbrown::HashMap;
use std::sync::Arc;

/// Longest run of empty windows filled in as rate 0.
pub const MAX_GAP_FILL: u64 = 360;

/// One configured signal.
#[derive(Debug, Clone)]
struct SignalSpec {
    name: Arc<str>,
    kind: SignalKind,
    direction: Direction,
    detect: bool,
    forecast: bool,
    /// (threshold, upwards)
    threshold: Option<(f64, bool)>,
}

/// State of one series and signal.
#[derive(Debug, Clone)]
struct SignalState {
    signal: u16,
    last_end: u64,
    detector: Option<SignalDetector>,
    incident: IncidentTracker,
    forecaster: Option<Forecaster>,
    since_prediction: u32,
}

/// The RED signals, by position in [`RedRow`]-derived values.
const RED: [&str; 4] = [
    "request_rate",
    "error_ratio",
    "latency_p50_ms",
    "latency_p99_ms",
];

/// What the engine derived from its config, shared by all series.
#[derive(Debug)]
struct Settings {
    detect_enabled: bool,
    forecast_enabled: bool,
    params: DetectorParams,
    fparams: ForecastParams,
    incidents: IncidentPolicy,
    every_windows: u32,
    trend_change_ratio: f64,
}

/// Per-series, per-signal anomaly detection and forecasting.
#[derive(Debug)]
pub struct AnomalyEngine {
    settings: Settings,
    signals: Vec<SignalSpec>,
    /// Index in `signals` of each RED signal, if configured.
    red_index: [Option<u16>; 4],
    series: HashMap<Arc<SeriesKey>, Vec<SignalState>>,
    scratch: Vec<f32>,
}

type Out = (Vec<Anomaly>, Vec<Prediction>);

impl AnomalyEngine {
    /// An engine for `cfg` (detection) and `fcfg` (forecasting). Signals are the union of both
    /// sections' `signals`; a section with `enabled: false` contributes nothing.
    pub fn new(cfg: &AnomalyConfig, fcfg: &ForecastConfig) -> Self {
        let mut signals: Vec<SignalSpec> = Vec::new();
        let spec = |name: &str, signals: &mut Vec<SignalSpec>| -> usize {
            if let Some(i) = signals.iter().position(|s| &*s.name == name) {
                return i;
            }
            signals.push(SignalSpec {
                name: Arc::from(name),
                kind: SignalKind::of(name),
                direction: cfg.directions.get(name).copied().unwrap_or_default(),
                detect: false,
                forecast: false,
                threshold: None,
            });
            signals.len() - 1
        };
        if cfg.enabled {
            for s in &cfg.signals {
                let i = spec(s, &mut signals);
                signals[i].detect = true;
            }
        }
        if fcfg.enabled {
            for s in &fcfg.signals {
                let i = spec(s, &mut signals);
                signals[i].forecast = true;
            }
            for t in &fcfg.thresholds {
                if let Some(s) = signals.iter_mut().find(|s| *s.name == *t.signal) {
                    s.threshold = Some((t.value, t.direction != Direction::Down));
                }
            }
        }
        let mut red_index = [None; 4];
        for (slot, name) in red_index.iter_mut().zip(RED) {
            *slot = signals
                .iter()
                .position(|s| &*s.name == name)
                .map(|i| i as u16);
        }
        AnomalyEngine {
            settings: Settings {
                detect_enabled: cfg.enabled,
                forecast_enabled: fcfg.enabled,
                params: DetectorParams::new(cfg),
                fparams: ForecastParams::new(fcfg),
                incidents: IncidentPolicy {
                    continue_p: (1.0 - cfg.clear_score).clamp(0.0, 1.0),
                    resolve_after: cfg.resolve_after_windows.max(1) as u32,
                    refractory: cfg.refractory_windows.min(u32::MAX as usize) as u32,
                },
                every_windows: fcfg.every_windows.max(1) as u32,
                trend_change_ratio: fcfg.trend_change_ratio,
            },
            signals,
            red_index,
            series: HashMap::new(),
            scratch: Vec::new(),
        }
    }

    /// Observes a RED row: its `request_rate`, `error_ratio`, `latency_p50_ms` and
    /// `latency_p99_ms`, as configured. Only final, primary, first emissions count; anything
    /// else returns nothing and changes nothing.
    pub fn observe_red(&mut self, row: &RedRow) -> (Vec<Anomaly>, Vec<Prediction>) {
        let mut out = (Vec::new(), Vec::new());
        if !row.is_final || !row.primary || !row.first || self.red_index.iter().all(Option::is_none)
        {
            return out;
        }
        let calls = row.total.total_calls();
        let values = [
            Some(row.rate_per_s()),
            (calls > 0.0).then(|| row.error_ratio()),
            row.total.quantile_ms(0.5),
            row.total.quantile_ms(0.99),
        ];
        let states = states_of(&mut self.series, &row.series);
        for (idx, value) in self.red_index.into_iter().zip(values) {
            if let (Some(sig), Some(v)) = (idx, value) {
                let w = Step {
                    start: row.start,
                    end: row.end,
                    value: v,
                    calls,
                };
                observe(
                    states,
                    &self.signals,
                    sig,
                    &row.series,
                    w,
                    &self.settings,
                    &mut self.scratch,
                    &mut out,
                );
            }
        }
        out
    }

    /// Observes one window's value of any configured signal of a series (`weight_calls`: the
    /// calls behind it, for the noise models and the minimum-traffic guard; pass 0 for metrics
    /// without calls). Unknown signals are ignored. Times are Unix nanoseconds.
    pub fn observe_value(
        &mut self,
        signal: &str,
        series: &Arc<SeriesKey>,
        window_start: u64,
        window_end: u64,
        value: f64,
        weight_calls: f64,
    ) -> (Vec<Anomaly>, Vec<Prediction>) {
        let mut out = (Vec::new(), Vec::new());
        if let Some(sig) = self.signals.iter().position(|s| &*s.name == signal) {
            let states = states_of(&mut self.series, series);
            let w = Step {
                start: window_start,
                end: window_end,
                value,
                calls: weight_calls,
            };
            observe(
                states,
                &self.signals,
                sig as u16,
                series,
                w,
                &self.settings,
                &mut self.scratch,
                &mut out,
            );
        }
        out
    }

    /// Series with state.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// (series, signal) pairs with state.
    pub fn signal_count(&self) -> usize {
        self.series.values().map(Vec::len).sum()
    }

    /// Approximate bytes of all detector and forecaster state (excluding the series keys,
    /// which the RED operator owns and shares).
    pub fn state_bytes(&self) -> usize {
        let per_entry =
            std::mem::size_of::<Arc<SeriesKey>>() + std::mem::size_of::<Vec<SignalState>>() + 8;
        self.series
            .values()
            .map(|v| {
                per_entry
                    + v.capacity() * std::mem::size_of::<SignalState>()
                    + v.iter()
                        .map(|s| {
                            s.detector.as_ref().map_or(0, |d| d.heap_bytes())
                                + s.forecaster.as_ref().map_or(0, |f| f.heap_bytes())
                        })
                        .sum::<usize>()
            })
            .sum()
    }

    /// Forgets `series` (the RED operator expired them). Returns how many had state.
    pub fn expire(&mut self, series: &[Arc<SeriesKey>]) -> usize {
        series
            .iter()
            .filter(|k| self.series.remove(&***k).is_some())
            .count()
    }

    /// Forgets every series whose newest observed window ended at or before `window_end`.
    /// Returns how many were forgotten.
    pub fn expire_idle(&mut self, window_end: u64) -> usize {
        let before = self.series.len();
        self.series
            .retain(|_, v| v.iter().any(|s| s.last_end > window_end));
        before - self.series.len()
    }
}

/// The signal states of `series`, created empty on first sight: one lookup per row.
fn states_of<'a>(
    map: &'a mut HashMap<Arc<SeriesKey>, Vec<SignalState>>,
    series: &Arc<SeriesKey>,
) -> &'a mut Vec<SignalState> {
    // An `Arc` clone (one atomic increment) is cheaper than a second lookup.
    map.entry(series.clone()).or_default()
}

/// One window of one signal of a series: gap fill (rates), then [`step`].
#[allow(clippy::too_many_arguments)]
fn observe(
    states: &mut Vec<SignalState>,
    signals: &[SignalSpec],
    sig: u16,
    series: &Arc<SeriesKey>,
    w: Step,
    set: &Settings,
    scratch: &mut Vec<f32>,
    out: &mut Out,
) {
    if w.end <= w.start || !w.value.is_finite() {
        return;
    }
    let spec = &signals[sig as usize];
    let pos = match states.iter().position(|s| s.signal == sig) {
        Some(p) => p,
        None => {
            states.push(SignalState {
                signal: sig,
                last_end: 0,
                detector: (set.detect_enabled && spec.detect)
                    .then(|| SignalDetector::new(&set.params)),
                incident: IncidentTracker::default(),
                forecaster: (set.forecast_enabled && spec.forecast)
                    .then(|| Forecaster::new(&set.fparams)),
                since_prediction: 0,
            });
            states.len() - 1
        }
    };
    let st = &mut states[pos];
    let last_end = st.last_end;
    if w.end <= last_end {
        return;
    }
    let width = w.end - w.start;
    if spec.kind == SignalKind::Rate && last_end > 0 && w.start > last_end {
        let missing = (w.start - last_end) / width;
        if missing <= MAX_GAP_FILL && (w.start - last_end).is_multiple_of(width) {
            for k in 0..missing {
                let s = last_end + k * width;
                let empty = Step {
                    start: s,
                    end: s + width,
                    value: 0.0,
                    calls: 0.0,
                };
                step(st, spec, series, empty, set, scratch, out);
            }
        }
    }
    step(st, spec, series, w, set, scratch, out);
}

/// One window of one (series, signal): detection, incidents, forecasting.
fn step(
    st: &mut SignalState,
    spec: &SignalSpec,
    series: &Arc<SeriesKey>,
    w: Step,
    set: &Settings,
    scratch: &mut Vec<f32>,
    out: &mut Out,
) {
    st.last_end = w.end;
    if spec.kind.needs_traffic() && w.calls < set.params.min_calls {
        return;
    }
    detect(st, spec, series, &w, set, scratch, out);
    forecast(st, spec, series, &w, set, out);
}

/// The detector's decision on the window and what it does to the series' incident.
fn detect(
    st: &mut SignalState,
    spec: &SignalSpec,
    series: &Arc<SeriesKey>,
    w: &Step,
    set: &Settings,
    scratch: &mut Vec<f32>,
    out: &mut Out,
) {
    let width = w.end - w.start;
    if let Some(det) = st.detector.as_mut() {
        let o = Observation {
            value: w.value,
            t_mid: w.start + width / 2,
            calls: w.calls,
            window_s: width as f64 / 1e9,
        };
        let d = det.observe(
            &o,
            spec.kind,
            spec.direction,
            &set.params,
            st.incident.duration_windows(),
            scratch,
        );
        let step = st.incident.window(
            d.anomalous,
            d.p,
            d.sustained,
            w.start,
            w.end,
            &set.incidents,
            |started| incident_id(series, &spec.name, started),
        );
        if let Some(step) = step {
            out.0.push(anomaly(spec, series, w, &d, step));
        }
    }
}

/// The forecaster learns the window and, when due, predicts.
fn forecast(
    st: &mut SignalState,
    spec: &SignalSpec,
    series: &Arc<SeriesKey>,
    w: &Step,
    set: &Settings,
    out: &mut Out,
) {
    let width = w.end - w.start;
    if let Some(f) = st.forecaster.as_mut() {
        let fp = &set.fparams;
        f.observe(w.value, fp.confidence);
        st.since_prediction += 1;
        let steps = fp.horizon_ns.div_ceil(width).max(1);
        // Forecasting costs a pass over the history: only when it may be emitted.
        let due = st.since_prediction >= set.every_windows || spec.threshold.is_some();
        let Some(fc) = due.then(|| f.predict(steps, fp)).flatten() else {
            return;
        };
        let ttt = spec.threshold.and_then(|(thr, up)| {
            steps_to_threshold(fc.level_now, w.value, fc.slope, thr, up, steps)
        });
        if st.since_prediction < set.every_windows && ttt.is_none() {
            return;
        }
        st.since_prediction = 0;
        let clamp = |v: f64| {
            if spec.kind.non_negative() {
                v.max(0.0)
            } else {
                v
            }
        };
        let window_ms = width as f64 / 1e6;
        out.1.push(Prediction {
            signal: spec.name.clone(),
            series: series.clone(),
            value: clamp(fc.value),
            lower: clamp(fc.lower),
            upper: fc.upper,
            confidence: fp.confidence,
            horizon_ms: fp.horizon_ns / 1_000_000,
            method: fc.method,
            trend_change: (fc.value - fc.level_now).abs() / fc.level_now.abs().max(1e-9)
                > set.trend_change_ratio,
            time_to_threshold_ms: ttt.map(|k| (k * window_ms).round() as u64),
            window_end: w.end,
        });
    }
}

/// The record of one incident window (or of the calm window that resolved the incident: no
/// alarm score, no raw statistic, no votes).
fn anomaly(
    spec: &SignalSpec,
    series: &Arc<SeriesKey>,
    w: &Step,
    d: &Decision,
    step: IncidentStep,
) -> Anomaly {
    let resolved = step.state == IncidentState::Resolved;
    let votes = if resolved { 0 } else { d.votes };
    Anomaly {
        signal: spec.name.clone(),
        series: series.clone(),
        value: w.value,
        expected_min: d.expected_min,
        expected_max: d.expected_max,
        severity: step.severity,
        score: (!resolved).then_some(d.score),
        p_value: (!resolved).then_some(d.p),
        z: (!resolved).then_some(d.z),
        votes: votes.count_ones() as u8,
        detector: detector_name(votes),
        window_start: w.start,
        window_end: w.end,
        incident_id: step.id,
        incident_state: step.state,
        incident_start: step.started,
        incident_duration_ns: step.duration_ns,
        incident_windows: step.windows,
    }
}

#[derive(Debug, Clone, Copy)]
struct Step {
    start: u64,
    end: u64,
    value: f64,
    calls: f64,
}
