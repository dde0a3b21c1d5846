//! Trend prediction per series and signal: a linear trend (OLS over the recent windows, with a
//! Student-t prediction interval) and Holt's double exponential smoothing, the one with the
//! smaller recent one-step error speaking for the series.
//!
//! Owns the per-series forecasting state (one half-precision ring of `history_windows` values
//! plus a few numbers) and the arithmetic; it does not decide when to emit, which signals to follow or how
//! thresholds are configured — that is [`crate::anomaly::AnomalyEngine`]'s job.

use crate::anomaly::ForecastConfig;
use crate::anomaly::Ring16;
use crate::red::SeriesKey;
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};
use std::sync::Arc;

/// A prediction for one series and signal, made at the end of a window (the `metric_prediction`
/// span of docs/design.md, "Signals that leave").
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub signal: Arc<str>,
    pub series: Arc<SeriesKey>,
    /// The predicted value at `window_end + horizon_ms`.
    pub value: f64,
    /// The prediction interval, of nominal coverage `confidence`.
    pub lower: f64,
    pub upper: f64,
    pub confidence: f64,
    pub horizon_ms: u64,
    /// `linear_trend` or `holt`: the method with the smaller recent one-step error.
    pub method: &'static str,
    /// The predicted change from the current level exceeds `forecast.trend_change_ratio`.
    pub trend_change: bool,
    /// When a configured threshold of the signal will be crossed within the horizon (0 = it
    /// already is).
    pub time_to_threshold_ms: Option<u64>,
    /// End of the window the prediction was made at, Unix nanoseconds.
    pub window_end: u64,
}

/// Holt's smoothing of the level.
pub const HOLT_ALPHA: f64 = 0.2;
/// Holt's smoothing of the trend.
pub const HOLT_BETA: f64 = 0.02;
/// Smoothing of the one-step errors that choose the method.
const ERROR_ALPHA: f64 = 0.05;

/// Method names, as exported in `prediction.method`.
pub const METHOD_LINEAR: &str = "linear_trend";
pub const METHOD_HOLT: &str = "holt";

/// Shared forecasting parameters, derived once from [`ForecastConfig`].
#[derive(Debug, Clone)]
pub struct ForecastParams {
    pub horizon_ns: u64,
    pub history: usize,
    pub confidence: f64,
    /// Two-sided Student-t quantiles for the interval, by degrees of freedom (index = df).
    t_quantile: Vec<f64>,
    /// The normal quantile for the interval (Holt).
    z_quantile: f64,
}

impl ForecastParams {
    pub fn new(cfg: &ForecastConfig) -> Self {
        let history = cfg.history_windows.max(3);
        let conf = if cfg.confidence > 0.0 && cfg.confidence < 1.0 {
            cfg.confidence
        } else {
            0.95
        };
        let p = 1.0 - (1.0 - conf) / 2.0;
        let z_quantile = Normal::standard().inverse_cdf(p);
        let t_quantile = (0..=history)
            .map(|df| match StudentsT::new(0.0, 1.0, df.max(1) as f64) {
                Ok(t) => t.inverse_cdf(p),
                Err(_) => z_quantile,
            })
            .collect();
        ForecastParams {
            horizon_ns: cfg.horizon.as_nanos().min(u64::MAX as u128) as u64,
            history,
            confidence: conf,
            t_quantile,
            z_quantile,
        }
    }

    /// Minimum history before forecasting: half the buffer, at least 8 windows.
    pub fn min_history(&self) -> usize {
        (self.history / 2).max(8).min(self.history)
    }
}

/// One forecast at `steps` windows ahead.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    pub value: f64,
    pub lower: f64,
    pub upper: f64,
    pub method: &'static str,
    /// The method's estimate of the current level (what "now" is, without the noise).
    pub level_now: f64,
    /// Its slope, per window.
    pub slope: f64,
}

/// The forecasting state of one series and signal.
#[derive(Debug, Clone)]
pub struct Forecaster {
    ring: Ring16,
    holt_level: f64,
    holt_trend: f64,
    /// EWMA of squared one-step errors of Holt (its interval's variance).
    holt_sq_err: f64,
    /// EWMA of absolute one-step errors, per method.
    err_linear: f32,
    err_holt: f32,
    /// The linear trend's one-step forecast for the next window (NaN = none).
    next_linear: f32,
    /// Online calibration of the interval width: a factor nudged up when one of this series'
    /// own earlier intervals missed and down when it covered, so that the miss rate settles
    /// at `1 - confidence` (distribution-free: correlated noise and curvature the models
    /// ignore are absorbed here).
    calibration: f32,
    /// The earlier forecast being checked: value, half-width, windows until its target.
    pending_value: f32,
    pending_half_width: f32,
    pending_left: u32,
    n: u32,
}

/// Step of the interval calibration.
const CALIBRATION_STEP: f64 = 0.05;

/// An OLS line over the ring: fitted value and slope at the newest point, residual sd, n, and
/// the pieces of the prediction variance.
struct LineFit {
    intercept: f64,
    slope: f64,
    s: f64,
    n: usize,
    mean_x: f64,
    sxx: f64,
    /// (1 + ρ) / (1 − ρ) for the lag-1 autocorrelation ρ > 0 of the residuals: how much
    /// correlated noise inflates the uncertainty of the fitted line.
    autocorr_inflation: f64,
}

impl LineFit {
    fn at(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }
}

impl Forecaster {
    pub fn new(p: &ForecastParams) -> Self {
        Forecaster {
            ring: Ring16::new(p.history),
            holt_level: 0.0,
            holt_trend: 0.0,
            holt_sq_err: 0.0,
            err_linear: 0.0,
            err_holt: 0.0,
            next_linear: f32::NAN,
            calibration: 1.0,
            pending_value: 0.0,
            pending_half_width: 0.0,
            pending_left: 0,
            n: 0,
        }
    }

    /// The current interval calibration factor.
    pub fn calibration(&self) -> f64 {
        self.calibration as f64
    }

    /// Scores the pending forecast against `x` when its target window has come.
    fn check_pending(&mut self, x: f64, confidence: f64) {
        if self.pending_left == 0 {
            return;
        }
        self.pending_left -= 1;
        if self.pending_left > 0 {
            return;
        }
        let miss = (x - self.pending_value as f64).abs() > self.pending_half_width as f64;
        let factor = if miss {
            1.0 + CALIBRATION_STEP * confidence
        } else {
            1.0 - CALIBRATION_STEP * (1.0 - confidence)
        };
        self.calibration = ((self.calibration as f64 * factor).clamp(0.5, 5.0)) as f32;
    }

    /// Windows observed.
    pub fn n(&self) -> u32 {
        self.n
    }

    /// Values held, oldest first.
    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.ring.iter()
    }

    /// Slope and intercept only (x = 0 for the oldest value): one pass.
    fn line(&self) -> Option<(f64, f64)> {
        let n = self.ring.len();
        if n < 3 {
            return None;
        }
        let nf = n as f64;
        let mean_x = (nf - 1.0) / 2.0;
        let (mut sy, mut sxy) = (0.0, 0.0);
        for (i, y) in self.values().enumerate() {
            sy += y;
            sxy += (i as f64 - mean_x) * y;
        }
        // Σ(x - x̄)² over 0..n-1.
        let sxx = nf * (nf * nf - 1.0) / 12.0;
        let slope = sxy / sxx;
        Some((slope, sy / nf - slope * mean_x))
    }

    fn fit(&self) -> Option<LineFit> {
        let (slope, intercept) = self.line()?;
        let n = self.ring.len();
        let nf = n as f64;
        let mean_x = (nf - 1.0) / 2.0;
        let sxx = nf * (nf * nf - 1.0) / 12.0;
        let (mut sse, mut lag1, mut prev) = (0.0, 0.0, None::<f64>);
        for (i, y) in self.values().enumerate() {
            let r = y - (intercept + slope * i as f64);
            sse += r * r;
            if let Some(p) = prev {
                lag1 += p * r;
            }
            prev = Some(r);
        }
        let s = (sse / (nf - 2.0)).sqrt();
        let rho = if sse > 0.0 {
            (lag1 / sse).clamp(0.0, 0.9)
        } else {
            0.0
        };
        Some(LineFit {
            intercept,
            slope,
            s,
            n,
            mean_x,
            sxx,
            autocorr_inflation: (1.0 + rho) / (1.0 - rho),
        })
    }

    /// Learns the value of the newest window (`confidence`: the interval's nominal coverage,
    /// for the calibration).
    pub fn observe(&mut self, x: f64, confidence: f64) {
        if !x.is_finite() {
            return;
        }
        self.check_pending(x, confidence);
        // One-step errors of both methods, before they learn x.
        if self.n >= 2 {
            let holt_next = self.holt_level + self.holt_trend;
            let e = x - holt_next;
            self.err_holt = ewma(self.err_holt, e.abs(), self.n);
            self.holt_sq_err = if self.n == 2 {
                e * e
            } else {
                (1.0 - ERROR_ALPHA) * self.holt_sq_err + ERROR_ALPHA * e * e
            };
            if !self.next_linear.is_nan() {
                let e = (x - self.next_linear as f64).abs();
                self.err_linear = ewma(self.err_linear, e, self.n);
            }
        }
        // Holt.
        if self.n == 0 {
            self.holt_level = x;
            self.holt_trend = 0.0;
        } else {
            let prev = self.holt_level;
            self.holt_level = HOLT_ALPHA * x + (1.0 - HOLT_ALPHA) * (prev + self.holt_trend);
            self.holt_trend =
                HOLT_BETA * (self.holt_level - prev) + (1.0 - HOLT_BETA) * self.holt_trend;
        }
        // Ring and the linear trend's next one-step forecast.
        self.ring.push(x);
        self.n = self.n.saturating_add(1);
        self.next_linear = match self.line() {
            Some((slope, intercept)) => (intercept + slope * self.ring.len() as f64) as f32,
            None => f32::NAN,
        };
    }

    /// The method with the smaller recent one-step error.
    pub fn best_method(&self) -> &'static str {
        if self.err_linear <= self.err_holt {
            METHOD_LINEAR
        } else {
            METHOD_HOLT
        }
    }

    /// A forecast `steps` windows ahead with the chosen method, once enough history is in; the
    /// interval is widened or narrowed by the calibration, and the forecast is remembered for
    /// checking if none is pending.
    pub fn predict(&mut self, steps: u64, p: &ForecastParams) -> Option<Forecast> {
        let mut fc = self.predict_raw(steps, p)?;
        let c = self.calibration as f64;
        let half = |d: f64| d * c;
        fc.lower = fc.value - half(fc.value - fc.lower);
        fc.upper = fc.value + half(fc.upper - fc.value);
        if self.pending_left == 0 {
            self.pending_value = fc.value as f32;
            self.pending_half_width = (fc.upper - fc.value) as f32;
            self.pending_left = steps.clamp(1, u32::MAX as u64) as u32;
        }
        Some(fc)
    }

    /// The forecast of the chosen method without calibration.
    fn predict_raw(&self, steps: u64, p: &ForecastParams) -> Option<Forecast> {
        if (self.ring.len()) < p.min_history() {
            return None;
        }
        let h = steps.max(1) as f64;
        match self.best_method() {
            METHOD_LINEAR => {
                let f = self.fit()?;
                let x_now = (f.n - 1) as f64;
                let x0 = x_now + h;
                let df = (f.n - 2).min(p.t_quantile.len() - 1);
                let q = p.t_quantile[df];
                // Student-t interval of a new observation; the parameter part is inflated for
                // autocorrelated residuals (an effective sample size smaller than n).
                let param = (1.0 / f.n as f64 + (x0 - f.mean_x).powi(2) / f.sxx.max(1e-12))
                    * f.autocorr_inflation;
                let se = f.s * (1.0 + param).sqrt();
                let value = f.at(x0);
                Some(Forecast {
                    value,
                    lower: value - q * se,
                    upper: value + q * se,
                    method: METHOD_LINEAR,
                    level_now: f.at(x_now),
                    slope: f.slope,
                })
            }
            _ => {
                let value = self.holt_level + h * self.holt_trend;
                // Var of the h-step error: σ²[1 + Σ_{j=1}^{h-1} α²(1 + jβ)²].
                let (a, b) = (HOLT_ALPHA, HOLT_BETA);
                let k = h - 1.0;
                let sum =
                    a * a * (k + b * k * (k + 1.0) + b * b * k * (k + 1.0) * (2.0 * k + 1.0) / 6.0);
                let se = (self.holt_sq_err * (1.0 + sum)).sqrt();
                Some(Forecast {
                    value,
                    lower: value - p.z_quantile * se,
                    upper: value + p.z_quantile * se,
                    method: METHOD_HOLT,
                    level_now: self.holt_level,
                    slope: self.holt_trend,
                })
            }
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.ring.heap_bytes()
    }
}

/// EWMA of errors that starts as a plain mean for the first few values.
fn ewma(prev: f32, x: f64, n: u32) -> f32 {
    let a = ERROR_ALPHA.max(1.0 / n.max(1) as f64);
    ((1.0 - a) * prev as f64 + a * x) as f32
}

/// Windows from `now` (in steps along `slope` from `level_now`) until `threshold` is crossed in
/// `direction` (`true` = upwards), if that happens within `steps`; `Some(0)` if already beyond.
pub fn steps_to_threshold(
    level_now: f64,
    latest: f64,
    slope: f64,
    threshold: f64,
    upwards: bool,
    steps: u64,
) -> Option<f64> {
    let beyond = |v: f64| {
        if upwards {
            v >= threshold
        } else {
            v <= threshold
        }
    };
    if beyond(latest) {
        return Some(0.0);
    }
    let toward = if upwards { slope > 0.0 } else { slope < 0.0 };
    if !toward {
        return None;
    }
    let k = ((threshold - level_now) / slope).max(0.0);
    (k <= steps as f64).then_some(k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{rngs::StdRng, SeedableRng};
    use rand_distr::{Distribution, Normal as RNormal};

    fn params(history: usize) -> ForecastParams {
        ForecastParams::new(&ForecastConfig {
            history_windows: history,
            ..Default::default()
        })
    }

    #[test]
    fn linear_trend_extrapolates_a_line_exactly() {
        let p = params(30);
        let mut f = Forecaster::new(&p);
        for i in 0..50 {
            f.observe(10.0 + 2.0 * i as f64, 0.95);
        }
        let fc = f.predict(30, &p).unwrap();
        // Last value is at i = 49: 108; 30 steps on: 168.
        assert!((fc.value - 168.0).abs() < 1e-3, "{fc:?}");
        assert!(fc.upper - fc.lower < 1e-2);
        assert!((fc.slope - 2.0).abs() < 1e-6);
    }

    #[test]
    fn interval_covers_about_nominal_on_noisy_trend() {
        let p = params(60);
        let mut rng = StdRng::seed_from_u64(7);
        let noise = RNormal::new(0.0, 5.0).unwrap();
        let (mut hit, mut total) = (0, 0);
        let steps = 10u64;
        let series: Vec<f64> = (0..5000)
            .map(|i| 100.0 + 0.05 * i as f64 + noise.sample(&mut rng))
            .collect();
        let mut f = Forecaster::new(&p);
        for (i, &x) in series.iter().enumerate() {
            f.observe(x, 0.95);
            if let (Some(fc), Some(&actual)) =
                (f.predict(steps, &p), series.get(i + steps as usize))
            {
                total += 1;
                if actual >= fc.lower && actual <= fc.upper {
                    hit += 1;
                }
            }
        }
        let cov = hit as f64 / total as f64;
        assert!((0.88..=0.99).contains(&cov), "coverage {cov}");
    }

    #[test]
    fn holt_wins_on_a_changing_slope() {
        let p = params(120);
        let mut f = Forecaster::new(&p);
        // Slope changes sign: the 120-window line lags, Holt follows.
        for i in 0..400 {
            let x = if i < 300 { i as f64 } else { 600.0 - i as f64 };
            f.observe(x, 0.95);
        }
        assert_eq!(f.best_method(), METHOD_HOLT);
        let fc = f.predict(10, &p).unwrap();
        assert!(fc.slope < 0.0, "{fc:?}");
    }

    #[test]
    fn threshold_crossing() {
        assert_eq!(
            steps_to_threshold(100.0, 100.0, 2.0, 120.0, true, 30),
            Some(10.0)
        );
        assert_eq!(steps_to_threshold(100.0, 100.0, 2.0, 200.0, true, 30), None);
        assert_eq!(
            steps_to_threshold(100.0, 130.0, -1.0, 120.0, true, 30),
            Some(0.0)
        );
        assert_eq!(
            steps_to_threshold(100.0, 100.0, -1.0, 90.0, false, 30),
            Some(10.0)
        );
        assert_eq!(steps_to_threshold(100.0, 100.0, 1.0, 90.0, false, 30), None);
    }

    proptest! {
        /// Whatever the input, forecasts are finite and ordered lower ≤ value ≤ upper.
        #[test]
        fn forecasts_are_ordered(xs in proptest::collection::vec(-1e6f64..1e6, 1..200), steps in 1u64..100) {
            let p = params(32);
            let mut f = Forecaster::new(&p);
            for &x in &xs {
                f.observe(x, 0.95);
                if let Some(fc) = f.predict(steps, &p) {
                    prop_assert!(fc.value.is_finite() && fc.lower.is_finite() && fc.upper.is_finite());
                    prop_assert!(fc.lower <= fc.value + 1e-6 && fc.value <= fc.upper + 1e-6, "{:?}", fc);
                }
            }
        }
    }
}
