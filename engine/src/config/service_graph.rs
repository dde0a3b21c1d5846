//! Config of the service graph (issue 7) and of the span attributes and names that shape series:
//! where a dimension's value is read from, and how span names are normalised before they become
//! part of a RED series.
//!
//! Owns these structs, their defaults and their pure validation; it must not build operators.

use super::types::Dimension;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Where a dimension's value is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DimensionSource {
    /// The span's attributes, then its instrumentation scope's, then its resource's (the first
    /// one that has the key with a scalar value).
    #[default]
    Any,
    /// Only the span's attributes.
    Span,
    /// Only the resource's attributes (e.g. `deployment.environment`).
    Resource,
    /// Only the instrumentation scope's attributes.
    Scope,
}

impl DimensionSource {
    /// Whether values may come from the instrumentation scope.
    pub fn reads_scope(self) -> bool {
        matches!(self, DimensionSource::Any | DimensionSource::Scope)
    }
}

/// One span-name rewrite rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanNameRule {
    /// A regular expression (Rust `regex` syntax) matched anywhere in the span name.
    pub pattern: String,
    /// What every match is replaced with; `$1` / `${name}` refer to capture groups.
    pub replacement: String,
}

/// Span-name normalisation, applied before a span is looked up in its RED series, so names that
/// carry ids (`GET /users/123`) do not create a series each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpanNamesConfig {
    /// Replace path segments that are ids — decimal numbers, UUIDs, hex ids of 8+ characters
    /// with a digit — by `{id}` in path-like names: `GET /users/123` → `GET /users/{id}`.
    pub collapse_ids: bool,
    /// Rewrite rules, applied in order (each replaces all its matches) before ids are collapsed.
    pub rules: Vec<SpanNameRule>,
}

impl Default for SpanNamesConfig {
    fn default() -> Self {
        SpanNamesConfig {
            collapse_ids: true,
            rules: Vec::new(),
        }
    }
}

impl SpanNamesConfig {
    /// Every problem, as (dotted path, message); `path` is where the section sits. Pure.
    pub fn validate(&self, path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (i, r) in self.rules.iter().enumerate() {
            if r.pattern.is_empty() {
                out.push((
                    format!("{path}.rules[{i}].pattern"),
                    "must not be empty".to_string(),
                ));
                continue;
            }
            if let Err(e) = regex::RegexBuilder::new(&r.pattern)
                .size_limit(1 << 20)
                .build()
            {
                // The regex error spans several lines (pattern, caret, message): keep it on one.
                let msg = e
                    .to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                out.push((
                    format!("{path}.rules[{i}].pattern"),
                    format!("is not a valid regular expression: {msg}"),
                ));
            }
        }
        out
    }
}

/// The service graph: client/server (and producer/consumer) span pairs across services, as the
/// Collector's servicegraph connector computes them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceGraphConfig {
    /// Whether the service graph operator runs.
    pub enabled: bool,
    /// How long (wall clock) half of an edge waits for the other half; then it is dropped and
    /// counted in `traces_service_graph_unpaired_spans_total`.
    #[serde(with = "humantime_serde")]
    pub wait: Duration,
    /// Edges waiting for their other half at most; spans that would open more are dropped and
    /// counted (`redwatch_service_graph_dropped_spans_total`).
    pub max_items: usize,
    /// Extra edge dimensions: read from the client span for `client_<name>` and from the
    /// server span for `server_<name>` labels.
    pub dimensions: Vec<Dimension>,
    /// Latency histogram bucket upper bounds in seconds, strictly increasing.
    pub buckets_s: Vec<f64>,
    /// Distinct edges (client, server, connection type, dimensions) at most; further ones fold
    /// into one overflow edge.
    pub cardinality_limit: usize,
    /// An edge with no requests for this long is forgotten (it leaves `/metrics`).
    #[serde(with = "humantime_serde")]
    pub series_expiry: Duration,
}

impl Default for ServiceGraphConfig {
    fn default() -> Self {
        ServiceGraphConfig {
            enabled: true,
            wait: Duration::from_secs(10),
            max_items: 10_000,
            dimensions: Vec::new(),
            // The Collector's servicegraph connector defaults.
            buckets_s: vec![
                0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.4, 2.0, 5.0,
                10.0, 15.0,
            ],
            cardinality_limit: 10_000,
            series_expiry: Duration::from_secs(900),
        }
    }
}

impl ServiceGraphConfig {
    /// Every problem, as (dotted path, message); `path` is where the section sits. Pure.
    pub fn validate(&self, path: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut bad = |key: &str, msg: &str| out.push((format!("{path}.{key}"), msg.to_string()));
        if self.wait.is_zero() {
            bad("wait", "must be greater than 0");
        }
        if self.max_items == 0 {
            bad("max_items", "must be at least 1");
        }
        if self.cardinality_limit == 0 {
            bad("cardinality_limit", "must be at least 1");
        }
        if self.buckets_s.is_empty() {
            bad("buckets_s", "needs at least one bucket bound");
        }
        if self.buckets_s.len() > super::MAX_BUCKETS {
            bad("buckets_s", "has more bucket bounds than supported (64)");
        }
        if self
            .buckets_s
            .windows(2)
            .any(|p| p[0] >= p[1] || p[0].is_nan())
            || self.buckets_s.iter().any(|b| !b.is_finite() || *b <= 0.0)
        {
            bad(
                "buckets_s",
                "bounds must be positive, finite and strictly increasing",
            );
        }
        if self.dimensions.len() > super::MAX_DIMENSIONS {
            bad("dimensions", "has more dimensions than supported (16)");
        }
        let mut labels = std::collections::HashSet::new();
        for (i, d) in self.dimensions.iter().enumerate() {
            if d.name.is_empty() {
                bad(&format!("dimensions[{i}].name"), "must not be empty");
            } else if !labels.insert(d.label()) {
                bad(
                    &format!("dimensions[{i}].name"),
                    "maps to the same label as an earlier dimension",
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_yaml_with_overrides, Config};
    use super::*;

    #[test]
    fn service_graph_and_dimension_keys_parse() {
        let c = parse_yaml_with_overrides(
            "red:\n  dimensions:\n    - { name: http.method, default: \"\" }\n    \
             - { name: deployment.environment, source: resource }\n    \
             - { name: otel.library.tier, source: scope, default: none }\n  \
             span_names:\n    collapse_ids: false\n    \
             rules: [{ pattern: '^GET /v[0-9]+/', replacement: 'GET /v{n}/' }]\n\
             service_graph: { wait: 2s, max_items: 50, dimensions: [{ name: k8s.cluster }] }\n",
            &[],
        )
        .unwrap();
        let d = &c.red.dimensions;
        assert_eq!(d[0].source, DimensionSource::Any);
        assert_eq!(d[0].default.as_deref(), Some(""));
        assert_eq!(d[1].source, DimensionSource::Resource);
        assert_eq!(d[2].source, DimensionSource::Scope);
        assert!(!c.red.span_names.collapse_ids);
        assert_eq!(c.red.span_names.rules[0].replacement, "GET /v{n}/");
        assert_eq!(c.service_graph.wait, Duration::from_secs(2));
        assert_eq!(c.service_graph.max_items, 50);
        assert_eq!(c.service_graph.dimensions[0].name, "k8s.cluster");
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        // The old form (name and default only) still means "span, then scope, then resource".
        let old = parse_yaml_with_overrides(
            "red: { dimensions: [{ name: http.method, default: GET }] }",
            &[],
        )
        .unwrap();
        assert_eq!(old.red.dimensions[0].source, DimensionSource::Any);
        assert!(parse_yaml_with_overrides(
            "red: { dimensions: [{ name: a, source: links }] }",
            &[]
        )
        .is_err());
        assert!(parse_yaml_with_overrides("service_graph: { waitt: 1s }", &[]).is_err());
    }

    #[test]
    fn defaults_follow_the_collector() {
        let c = Config::default();
        assert!(c.service_graph.enabled);
        assert_eq!(c.service_graph.wait, Duration::from_secs(10));
        assert_eq!(c.service_graph.max_items, 10_000);
        assert_eq!(c.service_graph.buckets_s.len(), 16);
        assert!(c.red.span_names.collapse_ids);
    }

    #[test]
    fn bad_regex_and_bad_service_graph_values_report_paths() {
        let mut c = Config::default();
        c.red.span_names.rules = vec![
            SpanNameRule {
                pattern: "ok/[0-9]+".into(),
                replacement: "ok/{n}".into(),
            },
            SpanNameRule {
                pattern: "GET /(unclosed".into(),
                replacement: "x".into(),
            },
            SpanNameRule {
                pattern: String::new(),
                replacement: "x".into(),
            },
        ];
        c.service_graph.wait = Duration::ZERO;
        c.service_graph.max_items = 0;
        c.service_graph.buckets_s = vec![1.0, 0.5];
        c.service_graph.dimensions = vec![
            Dimension {
                name: "a.b".into(),
                default: None,
                source: DimensionSource::Any,
            },
            Dimension {
                name: "a_b".into(),
                default: None,
                source: DimensionSource::Span,
            },
        ];
        let problems = c.validate();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "red.span_names.rules[1].pattern",
                "red.span_names.rules[2].pattern",
                "service_graph.wait",
                "service_graph.max_items",
                "service_graph.buckets_s",
                "service_graph.dimensions[1].name",
            ]
        );
        assert!(
            problems[0]
                .message
                .contains("not a valid regular expression")
                && !problems[0].message.contains('\n'),
            "{}",
            problems[0].message
        );
    }
}
