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
    /// Span attributes naming the peer of a CLIENT/PRODUCER span, first match wins (the
    /// Collector's `virtual_node_peer_attributes`). A client span that waits `wait` without its
    /// server half but has one of them becomes an edge to a virtual server node named by the
    /// value (`connection_type="virtual_node"`) instead of an unpaired span; a SERVER/CONSUMER
    /// span without a parent becomes an edge from the virtual client `user`. An empty list
    /// switches virtual nodes off.
    pub virtual_node_peer_attributes: Vec<String>,
    /// Adds the label `virtual_node` (`client` or `server`: which side is virtual) to virtual
    /// node edges on `/metrics` (the Collector's `virtual_node_extra_label`). Other edges carry no
    /// such label, which PromQL treats as `virtual_node=""`.
    pub virtual_node_extra_label: bool,
    /// Attributes naming the database of a CLIENT span (the Collector's
    /// `database_name_attributes`): the first key found wins, each key looked up in the
    /// resource's attributes, then in the span's (as the Collector does). Such a span is a complete edge
    /// on its own, to a server node named by the value, with `connection_type="database"`; it
    /// does not wait for a server half. An empty list switches this off.
    pub database_name_attributes: Vec<String>,
}

/// Names in `virtual_node_peer_attributes` and in `database_name_attributes`, each at most.
pub const MAX_SERVICE_GRAPH_ATTRIBUTES: usize = 8;

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
            // The Collector's defaults.
            virtual_node_peer_attributes: vec![
                "peer.service".to_string(),
                "db.name".to_string(),
                "db.system".to_string(),
            ],
            virtual_node_extra_label: false,
            database_name_attributes: vec!["db.name".to_string()],
        }
    }
}

impl ServiceGraphConfig {
    /// Whether unpaired client spans with a peer attribute and root server spans become edges
    /// of virtual nodes.
    pub fn virtual_nodes(&self) -> bool {
        !self.virtual_node_peer_attributes.is_empty()
    }

    /// The span attributes the decoder must extract for the service graph itself, beyond
    /// `dimensions`: the peer attributes (span only) and the database name attributes (resource
    /// and span), each (name, source) once. None reads the instrumentation scope, so they do not
    /// make the decoder read scopes in two passes. [`ServiceGraphConfig::attribute_index`] finds
    /// them.
    pub fn attribute_dims(&self) -> Vec<Dimension> {
        let mut out: Vec<Dimension> = Vec::new();
        let peers = self
            .virtual_node_peer_attributes
            .iter()
            .take(MAX_SERVICE_GRAPH_ATTRIBUTES)
            .map(|n| (n, DimensionSource::Span));
        let dbs = self
            .database_name_attributes
            .iter()
            .take(MAX_SERVICE_GRAPH_ATTRIBUTES)
            .flat_map(|n| [(n, DimensionSource::Resource), (n, DimensionSource::Span)]);
        for (name, source) in peers.chain(dbs) {
            if !out.iter().any(|d| d.name == *name && d.source == source) {
                out.push(Dimension {
                    name: name.clone(),
                    default: None,
                    source,
                });
            }
        }
        out
    }

    /// Where `name` read from `source` sits in [`ServiceGraphConfig::attribute_dims`].
    pub fn attribute_index(&self, name: &str, source: DimensionSource) -> Option<usize> {
        self.attribute_dims()
            .iter()
            .position(|d| d.name == name && d.source == source)
    }

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
        for (key, list) in [
            (
                "virtual_node_peer_attributes",
                &self.virtual_node_peer_attributes,
            ),
            ("database_name_attributes", &self.database_name_attributes),
        ] {
            if list.len() > MAX_SERVICE_GRAPH_ATTRIBUTES {
                bad(key, "has more attributes than supported (8)");
            }
            for (i, name) in list.iter().enumerate() {
                if name.is_empty() {
                    bad(&format!("{key}[{i}]"), "must not be empty");
                }
            }
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
    fn decoder_extracts_peer_and_database_attributes_only_for_the_service_graph() {
        let mut c = Config::default();
        c.red.dimensions = vec![Dimension {
            name: "http.method".into(),
            default: None,
            source: DimensionSource::Any,
        }];
        let got: Vec<(String, DimensionSource)> = c
            .decode_dimensions()
            .into_iter()
            .map(|d| (d.name, d.source))
            .collect();
        let d = |n: &str, s| (n.to_string(), s);
        assert_eq!(
            got,
            [
                d("http.method", DimensionSource::Any),
                d("peer.service", DimensionSource::Span),
                d("db.name", DimensionSource::Span),
                d("db.system", DimensionSource::Span),
                d("db.name", DimensionSource::Resource),
            ]
        );
        let sg = &c.service_graph;
        assert_eq!(
            sg.attribute_index("db.system", DimensionSource::Span),
            Some(2)
        );
        assert_eq!(
            sg.attribute_index("db.name", DimensionSource::Resource),
            Some(3)
        );
        assert!(!c
            .decode_dimensions()
            .iter()
            .any(|d| d.source.reads_scope() && d.name.starts_with("db.")));
        c.service_graph.virtual_node_peer_attributes = Vec::new();
        c.service_graph.database_name_attributes = vec!["db.namespace".into(), "".into()];
        assert!(!c.service_graph.virtual_nodes());
        // db.namespace and "" each from the resource and the span.
        assert_eq!(c.decode_dimensions().len(), 5);
        let problems = c.validate();
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["service_graph.database_name_attributes[1]"]);
        c.service_graph.enabled = false;
        assert_eq!(c.decode_dimensions().len(), 1);
        let yaml = parse_yaml_with_overrides(
            "service_graph: { virtual_node_peer_attributes: [net.peer.name], \
             virtual_node_extra_label: true, database_name_attributes: [] }",
            &[],
        )
        .unwrap();
        assert_eq!(
            yaml.service_graph.virtual_node_peer_attributes,
            ["net.peer.name"]
        );
        assert!(yaml.service_graph.virtual_node_extra_label);
        assert!(yaml.service_graph.database_name_attributes.is_empty());
    }

    #[test]
    fn defaults_follow_the_collector() {
        let c = Config::default();
        assert!(c.service_graph.enabled);
        assert_eq!(
            c.service_graph.virtual_node_peer_attributes,
            ["peer.service", "db.name", "db.system"]
        );
        assert!(!c.service_graph.virtual_node_extra_label);
        assert_eq!(c.service_graph.database_name_attributes, ["db.name"]);
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
