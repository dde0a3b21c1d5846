//! Config of the service graph (`service_graph`, issue 7): pairing, virtual nodes, database
//! edges, dimensions and limits. Owns these structs, their defaults and their pure validation;
//! it must not build operators.

use redwatch_engine::config::{Dimension, DimensionSource, MAX_BUCKETS, MAX_DIMENSIONS};
use serde::{Deserialize, Serialize};
use std::time::Duration;

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
        if self.buckets_s.len() > MAX_BUCKETS {
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
        if self.dimensions.len() > MAX_DIMENSIONS {
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
