//! redwatch operators: the stateful computations between decoding and export.
//!
//! One folder per operator family: `red/` (RED aggregation), `metrics/` (metric windows),
//! `servicegraph/`, `sessions/` (session windows), `anomaly/` (detectors), `forecast/`,
//! `problems/` (correlation of anomalies into problems);
//! `common/` holds what the windowed ones share. The binary's `src/features/` installs them
//! (one module per feature); this crate does not list or start them itself.

#![forbid(unsafe_code)]

pub mod anomaly;
pub mod common;
pub mod forecast;
pub mod layout;
pub mod metrics;
pub mod problems;
pub mod red;
pub mod servicegraph;
pub mod sessions;
