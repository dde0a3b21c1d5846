//! Random draws and the daily shape of the generated series that both the score calibration
//! test (`calibration_tests.rs`) and the anomaly quality bench (`benches/anomaly_quality/`)
//! use. Not part of the library: each includes this file by path.

use rand::rngs::StdRng;
use rand_distr::{Distribution, Gamma, Poisson};

/// 5-minute windows in a day.
pub const PER_DAY_5M: u64 = 288;

/// A Poisson count with mean `mean` (0 for a mean ≤ 0).
pub fn poisson(rng: &mut StdRng, mean: f64) -> f64 {
    if mean <= 0.0 {
        0.0
    } else {
        Poisson::new(mean).unwrap().sample(rng)
    }
}

/// A negative binomial count with mean `mean` and variance `mean + mean²/k` (gamma-Poisson).
pub fn neg_binomial(rng: &mut StdRng, mean: f64, k: f64) -> f64 {
    let lambda = Gamma::new(k, mean / k).unwrap().sample(rng);
    poisson(rng, lambda)
}

/// Daily shape (peak mid-afternoon), `amp` relative, at 5-minute window `w`.
pub fn daily(w: u64, amp: f64) -> f64 {
    let day = (w % PER_DAY_5M) as f64 / PER_DAY_5M as f64;
    1.0 + amp * (2.0 * std::f64::consts::PI * (day - 0.375)).sin()
}
