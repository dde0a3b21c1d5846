//! The engine's features, one module each. A module's `install` declares into the
//! [`Assembly`](crate::assembly::Assembly) everything the feature adds — tables, operators and
//! sinks, Prometheus sections, readiness checks, listeners and exporters by shutdown stage —
//! and nothing else in the application names its parts (docs/design.md, "Adding a feature").
//! `Engine::start` lists the `install` calls.

pub mod anomaly;
pub mod continuous;
pub mod kafka;
pub mod metrics;
pub mod otlp_export;
pub mod otlp_receivers;
pub mod problems;
pub mod prometheus;
pub mod red;
pub mod service_graph;
pub mod sessions;
pub mod spans;
pub mod sql;
pub mod test_hooks;
