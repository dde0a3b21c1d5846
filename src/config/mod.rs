//! The whole config file: [`Config`] lists every section, each owned by the component it
//! configures (the engine's own sections, windows, RED, SQL and limits, sit in
//! `redwatch_engine::config` with the loading and validation plumbing).
//!
//! This is the one crate that knows every component, so the file's shape lives here, and so does
//! the cross-section validation (`fleet` against the Kafka sections, every listener's `tls` and
//! `auth`). It must not build anything: features read their own sections when they install.
//! `redwatch validate --print-defaults` prints `Config::default()`.

pub use redwatch_connectors::config::*;
pub use redwatch_engine::config::*;
pub use redwatch_operators::anomaly::{
    AnomalyConfig, CusumConfig, DetectorsConfig, Direction, EnsembleConfig, EwmaConfig,
    ForecastConfig, RobustZConfig, SeasonalConfig, ThresholdConfig, MAX_HISTORY_WINDOWS,
    MAX_SEASONAL_SLOTS, RED_SIGNALS,
};
pub use redwatch_operators::layout::SpanSections;
pub use redwatch_operators::problems::ProblemsConfig;
pub use redwatch_operators::red::{RedConfig, SpanNameRule, SpanNamesConfig};
pub use redwatch_operators::servicegraph::{ServiceGraphConfig, MAX_SERVICE_GRAPH_ATTRIBUTES};
pub use redwatch_queries::config::{
    ContinuousQuery, SqlConfig, UiConfig, DEFAULT_RETENTION, RESERVED_CONTINUOUS_NAMES,
};

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The whole redwatch configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where telemetry comes in.
    pub receivers: ReceiversConfig,
    /// Event-time window specs and watermark behaviour.
    pub windows: WindowsConfig,
    /// The RED (rate, errors, duration) aggregation.
    pub red: RedConfig,
    /// The service graph (client/server span pairs across services).
    pub service_graph: ServiceGraphConfig,
    /// Where results go.
    pub exporters: ExportersConfig,
    /// SQL over the live tables (HTTP API, Flight SQL, continuous queries).
    pub sql: SqlConfig,
    /// Anomaly detection on every closed window of every RED series.
    pub anomaly: AnomalyConfig,
    /// Trend prediction per RED series.
    pub forecast: ForecastConfig,
    /// Resource bounds of the pipeline.
    pub limits: LimitsConfig,
    /// The web console at `/` on the SQL HTTP listener.
    pub ui: UiConfig,
    /// Correlation of anomalies into problems.
    pub problems: ProblemsConfig,
    /// A fleet of instances with Kafka as the backbone: this instance's role and the topics
    /// between the roles (docs/fleet.md).
    pub fleet: FleetConfig,
}

/// Loads the config file (if any), applies env and `--set` overrides, and deserializes it
/// ([`redwatch_engine::config::load`]).
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    sets: &[String],
) -> Result<Config, LoadError> {
    redwatch_engine::config::load(file, env, sets)
}

/// Parses YAML text, applies `(path, yaml value)` overrides in order, deserializes.
pub fn parse_yaml_with_overrides(
    text: &str,
    overrides: &[(Vec<String>, String)],
) -> Result<Config, LoadError> {
    redwatch_engine::config::parse_yaml_with_overrides(text, overrides)
}

impl Config {
    /// Checks the rules serde cannot express, section by section and across sections. Pure:
    /// returns every problem found, with its path.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut found = self.windows.validate("windows");
        found.extend(self.red.validate("red"));
        found.extend(self.receivers.otlp.validate("receivers.otlp"));
        found.extend(self.sql.validate("sql"));
        found.extend(self.anomaly.validate("anomaly"));
        found.extend(self.forecast.validate("forecast"));
        found.extend(self.red.span_names.validate("red.span_names"));
        found.extend(self.service_graph.validate("service_graph"));
        if let Some(o) = &self.exporters.otlp {
            found.extend(o.validate("exporters.otlp"));
        }
        if let Some(k) = &self.receivers.kafka {
            found.extend(k.validate("receivers.kafka"));
        }
        if let Some(k) = &self.exporters.kafka {
            found.extend(k.validate_in("exporters.kafka", self.fleet.role != FleetRole::All));
        }
        found.extend(self.ui.problems());
        found.extend(self.exporters.webhook.problems());
        found.extend(self.fleet.problems(
            self.receivers.kafka.is_some(),
            self.exporters.kafka.is_some(),
        ));
        found.extend(self.security_problems());
        found.extend(self.limits.validate("limits"));
        problems(found)
    }

    /// Problems of every listener's `tls` and `auth` block (reads the files they name).
    fn security_problems(&self) -> Vec<(String, String)> {
        let o = &self.receivers.otlp;
        let blocks = [
            (
                "receivers.otlp.grpc",
                o.grpc.as_ref().map(|g| (&g.tls, &g.auth)),
            ),
            (
                "receivers.otlp.http",
                o.http.as_ref().map(|h| (&h.tls, &h.auth)),
            ),
            ("sql", Some((&self.sql.tls, &self.sql.auth))),
            (
                "exporters.prometheus",
                self.exporters
                    .prometheus
                    .as_ref()
                    .map(|p| (&p.tls, &p.auth)),
            ),
        ];
        let mut out = Vec::new();
        for (path, block) in blocks {
            let Some((tls, auth)) = block else { continue };
            if let Some(t) = tls {
                out.extend(t.validate(&format!("{path}.tls")));
            }
            if let Some(a) = auth {
                out.extend(a.validate(&format!("{path}.auth")));
            }
        }
        out
    }

    /// The sections the span operators and the decoder's layout follow from.
    pub fn span_sections(&self) -> SpanSections {
        SpanSections {
            windows: self.windows.clone(),
            red: self.red.clone(),
            service_graph: self.service_graph.clone(),
        }
    }

    /// The attribute dimensions the decoder extracts per span
    /// ([`SpanSections::decode_dimensions`]).
    pub fn decode_dimensions(&self) -> Vec<Dimension> {
        self.span_sections().decode_dimensions()
    }

    /// The session specs, resolved ([`SpanSections::session_specs`]).
    pub fn session_specs(&self) -> Vec<SessionSpec> {
        self.span_sections().session_specs()
    }
}

#[cfg(test)]
mod tests;
