//! Configuration: the YAML keys listed in README.md, "Configuration", as serde structs.
//!
//! Owns the shape of the config, its defaults (defined once, here, through `Default` impls) and
//! `validate()`. It must not build anything: turning a config into a running pipeline is the
//! binary's job. Loading (file + env overrides + `--set`) lives in [`load`].

mod anomaly;
mod exporters;
mod fleet;
mod kafka;
mod load;
mod problems;
mod receivers;
mod security;
mod service_graph;
mod sessions;
mod types;
mod ui;

pub use anomaly::*;
pub use exporters::*;
pub use fleet::{FleetConfig, FleetRole};
pub use kafka::KafkaExporterConfig;
pub use security::{parse_token_file, AuthConfig, TlsClientConfig, TlsServerConfig};

pub use service_graph::*;
pub use sessions::*;

pub use load::{apply_override, load, parse_yaml_with_overrides, LoadError};
pub use problems::{ProblemsConfig, WebhookExporterConfig, WebhookFormat};
pub use receivers::*;
pub use types::*;
pub use ui::UiConfig;

/// Continuous-query names whose `redwatch_continuous_<name>` gauges would clash with the
/// continuous-query runner's own counters.
pub const RESERVED_CONTINUOUS_NAMES: &[&str] = &["runs_total", "windows_skipped_total"];

use std::fmt;

/// One problem found by [`Config::validate`], with the dotted path of the offending key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl Config {
    /// Checks cross-field rules that serde cannot express. Pure: returns every problem found.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut bad = |path: &str, message: String| {
            problems.push(ConfigProblem {
                path: path.to_string(),
                message,
            })
        };
        let w = &self.windows;
        if w.size.is_zero() {
            bad("windows.size", "must be greater than 0".into());
        } else {
            if w.size.as_millis() == 0 || !w.size.as_nanos().is_multiple_of(1_000_000) {
                bad(
                    "windows.size",
                    "must be a whole number of milliseconds".into(),
                );
            }
            for (i, x) in w.extra.iter().enumerate() {
                let path = format!("windows.extra[{i}]");
                match x.hopping() {
                    Some((size, slide)) => {
                        let fmt =
                            |d: std::time::Duration| humantime::format_duration(d).to_string();
                        if slide.is_zero() || !slide.as_nanos().is_multiple_of(w.size.as_nanos()) {
                            bad(
                                &format!("{path}.slide"),
                                format!(
                                    "{} is not a multiple of windows.size ({})",
                                    fmt(slide),
                                    fmt(w.size)
                                ),
                            );
                        } else if !size.as_nanos().is_multiple_of(slide.as_nanos()) || size <= slide
                        {
                            bad(
                                &format!("{path}.size"),
                                format!(
                                    "{} is not a multiple of the slide ({}) greater than it",
                                    fmt(size),
                                    fmt(slide)
                                ),
                            );
                        }
                    }
                    None if x.is_session() => {
                        for (p, m) in x.validate_session(&path) {
                            bad(&p, m);
                        }
                    }
                    None => bad(&path, "a hopping window needs both size and slide".into()),
                }
            }
            let sessions = w.extra.iter().filter(|x| x.is_session()).count();
            if sessions > MAX_SESSION_SPECS {
                bad(
                    "windows.extra",
                    format!(
                        "at most {MAX_SESSION_SPECS} session specs are supported, not {sessions}"
                    ),
                );
            }
            for (i, r) in w.rollups.iter().enumerate() {
                if !r.as_nanos().is_multiple_of(w.size.as_nanos()) || *r <= w.size {
                    bad(
                        &format!("windows.rollups[{i}]"),
                        format!(
                            "{} is not a multiple of windows.size ({}) greater than it",
                            humantime::format_duration(*r),
                            humantime::format_duration(w.size)
                        ),
                    );
                }
            }
        }
        if w.idle_timeout.is_zero() {
            bad("windows.idle_timeout", "must be greater than 0".into());
        }
        if w.max_future_skew.is_zero() {
            bad("windows.max_future_skew", "must be greater than 0".into());
        }
        let r = &self.red;
        if r.cardinality_limit == 0 {
            bad("red.cardinality_limit", "must be at least 1".into());
        }
        if r.buckets_ms.is_empty() {
            bad("red.buckets_ms", "needs at least one bucket bound".into());
        }
        if r.buckets_ms.len() > MAX_BUCKETS {
            bad(
                "red.buckets_ms",
                format!("at most {MAX_BUCKETS} bucket bounds are supported"),
            );
        }
        if r.buckets_ms
            .windows(2)
            .any(|p| p[0] >= p[1] || p[0].is_nan())
            || r.buckets_ms.iter().any(|b| !b.is_finite() || *b <= 0.0)
        {
            bad(
                "red.buckets_ms",
                "bounds must be positive, finite and strictly increasing".into(),
            );
        }
        for (i, d) in r.dimensions.iter().enumerate() {
            if d.name.is_empty() {
                bad(
                    &format!("red.dimensions[{i}].name"),
                    "must not be empty".into(),
                );
            }
            if RESERVED_LABELS.contains(&d.label().as_str()) {
                bad(
                    &format!("red.dimensions[{i}].name"),
                    format!("`{}` clashes with a built-in label", d.name),
                );
            }
        }
        if r.dimensions.len() > MAX_DIMENSIONS {
            bad(
                "red.dimensions",
                format!("at most {MAX_DIMENSIONS} dimensions are supported"),
            );
        }
        let o = &self.receivers.otlp;
        if let Some(g) = &o.grpc {
            if g.max_message_size.as_u64() == 0 || g.max_message_size.as_u64() > u32::MAX as u64 {
                bad(
                    "receivers.otlp.grpc.max_message_size",
                    "must be between 1 byte and 4GiB".into(),
                );
            }
        }
        if let Some(h) = &o.http {
            if h.max_body_size.as_u64() == 0 {
                bad(
                    "receivers.otlp.http.max_body_size",
                    "must be greater than 0".into(),
                );
            }
        }
        let sq = &self.sql;
        if sq.query_timeout.is_zero() {
            bad("sql.query_timeout", "must be greater than 0".into());
        }
        if sq.memory_limit.as_u64() < 1 << 20 {
            bad("sql.memory_limit", "must be at least 1MiB".into());
        }
        if sq.max_result_rows == 0 {
            bad("sql.max_result_rows", "must be at least 1".into());
        }
        if sq.shared_memory_limit < sq.memory_limit {
            bad(
                "sql.shared_memory_limit",
                format!(
                    "must be at least sql.memory_limit ({}): one query alone could never use its own limit",
                    sq.memory_limit
                ),
            );
        }
        if sq.max_concurrent_queries == 0 {
            bad("sql.max_concurrent_queries", "must be at least 1".into());
        }
        if sq.max_result_bytes.as_u64() < 1 << 10 {
            bad("sql.max_result_bytes", "must be at least 1KiB".into());
        }
        for (i, h) in sq.allowed_hosts.iter().enumerate() {
            if h.is_empty() || h.contains(|c: char| c.is_whitespace() || c == '/' || c == ':') {
                bad(
                    &format!("sql.allowed_hosts[{i}]"),
                    format!("{h:?} is not a host name (no port, scheme or path)"),
                );
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, q) in sq.continuous.iter().enumerate() {
            let valid = !q.name.is_empty()
                && q.name
                    .starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && q.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                bad(
                    &format!("sql.continuous[{i}].name"),
                    format!("`{}` must match [a-z_][a-z0-9_]*", q.name),
                );
            }
            if !names.insert(q.name.as_str()) {
                bad(
                    &format!("sql.continuous[{i}].name"),
                    format!("`{}` is used twice", q.name),
                );
            }
            if RESERVED_CONTINUOUS_NAMES.contains(&q.name.as_str()) {
                bad(
                    &format!("sql.continuous[{i}].name"),
                    format!(
                        "`{}` is taken: redwatch_continuous_{} is one of redwatch's own metrics",
                        q.name, q.name
                    ),
                );
            }
            if q.query.trim().is_empty() {
                bad(
                    &format!("sql.continuous[{i}].query"),
                    "must not be empty".into(),
                );
            }
        }
        for (path, message) in
            self.anomaly
                .validate("anomaly")
                .into_iter()
                .chain(self.forecast.validate("forecast"))
                .chain(self.red.span_names.validate("red.span_names"))
                .chain(self.service_graph.validate("service_graph"))
                .chain(
                    self.exporters
                        .otlp
                        .iter()
                        .flat_map(|o| o.validate("exporters.otlp")),
                )
                .chain(
                    self.receivers
                        .kafka
                        .iter()
                        .flat_map(|k| k.validate("receivers.kafka")),
                )
                .chain(self.exporters.kafka.iter().flat_map(|k| {
                    k.validate_in("exporters.kafka", self.fleet.role != FleetRole::All)
                }))
                .chain(self.ui.problems())
                .chain(self.exporters.webhook.problems())
                .chain(self.fleet.problems(
                    self.receivers.kafka.is_some(),
                    self.exporters.kafka.is_some(),
                ))
        {
            bad(&path, message);
        }
        for (path, message) in self.security_problems() {
            bad(&path, message);
        }
        if let Some(m) = &self.limits.memory {
            if m.spike >= m.limit {
                bad(
                    "limits.memory.spike",
                    format!("must be below limits.memory.limit ({})", m.limit),
                );
            }
        }
        if self.limits.queue_capacity == 0 {
            bad("limits.queue_capacity", "must be at least 1".into());
        }
        problems
    }
}

impl Config {
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

    /// The attribute dimensions the decoder extracts per span, in order: `red.dimensions`, then
    /// (when the service graph runs) `service_graph.dimensions` and the attributes of its virtual
    /// nodes and database edges ([`ServiceGraphConfig::attribute_dims`]). Operators index into
    /// this list.
    pub fn decode_dimensions(&self) -> Vec<Dimension> {
        let mut d: Vec<Dimension> = self
            .red
            .dimensions
            .iter()
            .take(MAX_DIMENSIONS)
            .cloned()
            .collect();
        if self.service_graph.enabled {
            d.extend(
                self.service_graph
                    .dimensions
                    .iter()
                    .take(MAX_DIMENSIONS)
                    .cloned(),
            );
            d.extend(self.service_graph.attribute_dims());
        }
        // Session keys (windows.extra {gap, key: {name: ...}}) come last: sessions.rs.
        d.extend(self.session_key_dimensions());
        d
    }
}

/// Labels redwatch itself sets on RED series; a dimension may not reuse them.
pub const RESERVED_LABELS: &[&str] = &[
    "service_name",
    "span_name",
    "span_kind",
    "status_code",
    "le",
    "otel_metric_overflow",
    "window_size",
];

/// Upper bound on histogram bucket bounds, so bucket indices fit a byte.
pub const MAX_BUCKETS: usize = 64;
/// Upper bound on configured dimensions.
pub const MAX_DIMENSIONS: usize = 16;

#[cfg(test)]
mod tests;
