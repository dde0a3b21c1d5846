//! redwatch operators: the stateful computations between decoding and export.
//!
//! One folder per operator family (`red/` today; metric windows, service graph, detectors and
//! forecasters join as they are built). [`registry`] lists them explicitly.

#![forbid(unsafe_code)]

pub mod anomaly;
pub mod common;
pub mod forecast;
pub mod metrics;
pub mod red;
pub mod servicegraph;
pub mod sessions;

/// The operator families this build provides, by name (for `--help` texts and status pages).
pub fn registry() -> &'static [&'static str] {
    &[
        "red",
        "metrics",
        "anomaly",
        "forecast",
        "service_graph",
        "sessions",
    ]
}
