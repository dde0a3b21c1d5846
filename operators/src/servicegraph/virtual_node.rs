//! Edges with one real side, as the Collector's servicegraph connector makes them: a database
//! call (the client span names the database), an uninstrumented peer (a client span that never
//! gets its server half but names its peer) and the `user` (a server span without a parent).
//!
//! Owns where the decoder put the attributes that name those nodes and how the missing half is
//! stood in for. It must not touch the pending store or the windows: the operator decides when
//! an edge is complete.

use super::store::Half;
use super::VirtualSide;
use super::{ServiceGraphConfig, MAX_SERVICE_GRAPH_ATTRIBUTES};
use crate::red::RedConfig;
use redwatch_engine::config::{DimensionSource, MAX_DIMENSIONS};
use redwatch_engine::model::{SpanBatch, StrRef};
use std::sync::Arc;

/// The virtual client of server spans without a parent (the Collector's name).
pub const USER_NODE: &str = "user";

/// Where the peer and database name attributes sit among a span's decoded dimension values.
#[derive(Debug, Clone, Default)]
pub(super) struct NodeAttributes {
    /// `virtual_node_peer_attributes`, in priority order.
    peers: Vec<usize>,
    /// `database_name_attributes`, in priority order.
    databases: Vec<usize>,
    /// `virtual_node_extra_label`.
    extra_label: bool,
}

impl NodeAttributes {
    /// The layout of [`crate::layout::SpanSections::decode_dimensions`]: RED's dimensions, the
    /// service graph's, then
    /// [`super::ServiceGraphConfig::attribute_dims`].
    pub(super) fn new(red: &RedConfig, sg: &ServiceGraphConfig) -> NodeAttributes {
        let offset =
            red.dimensions.len().min(MAX_DIMENSIONS) + sg.dimensions.len().min(MAX_DIMENSIONS);
        let index = |names: &[String], source: DimensionSource| -> Vec<usize> {
            names
                .iter()
                .take(MAX_SERVICE_GRAPH_ATTRIBUTES)
                .filter_map(|n| sg.attribute_index(n, source).map(|i| offset + i))
                .collect()
        };
        // Each database key: the resource's value first, then the span's (the Collector's order).
        let databases = sg
            .database_name_attributes
            .iter()
            .take(MAX_SERVICE_GRAPH_ATTRIBUTES)
            .flat_map(|n| [DimensionSource::Resource, DimensionSource::Span].map(|s| (n, s)))
            .filter_map(|(n, s)| sg.attribute_index(n, s).map(|i| offset + i))
            .collect();
        NodeAttributes {
            peers: index(&sg.virtual_node_peer_attributes, DimensionSource::Span),
            databases,
            extra_label: sg.virtual_node_extra_label,
        }
    }

    /// Whether virtual nodes are on (some peer attribute is configured).
    pub(super) fn virtual_nodes(&self) -> bool {
        !self.peers.is_empty()
    }

    /// The first non-empty value among `indexes`.
    fn first<'b>(
        batch: &'b SpanBatch,
        values: &[Option<StrRef>],
        indexes: &[usize],
    ) -> Option<&'b str> {
        indexes
            .iter()
            .filter_map(|i| values.get(*i).copied().flatten())
            .map(|r| batch.str(r))
            .find(|v| !v.is_empty())
    }

    /// The peer a client span names, if any.
    pub(super) fn peer<'b>(
        &self,
        batch: &'b SpanBatch,
        values: &[Option<StrRef>],
    ) -> Option<&'b str> {
        Self::first(batch, values, &self.peers)
    }

    /// The database a client span calls, if it names one.
    pub(super) fn database<'b>(
        &self,
        batch: &'b SpanBatch,
        values: &[Option<StrRef>],
    ) -> Option<&'b str> {
        Self::first(batch, values, &self.databases)
    }

    /// The `virtual_node` label side of an edge whose `side` is virtual.
    pub(super) fn label(&self, side: VirtualSide) -> VirtualSide {
        if self.extra_label {
            side
        } else {
            VirtualSide::None
        }
    }
}

/// The half standing in for the missing side of `real`: named `service`, same end and weight,
/// not failed, empty dimensions, and the latency `duration_s` (the Collector records 0 for a
/// virtual node and the client's latency for a database).
pub(super) fn stand_in(
    service: Arc<str>,
    real: &Half,
    duration_s: f64,
    empty_dims: Box<[Arc<str>]>,
) -> Half {
    Half {
        service,
        end: real.end,
        duration_s,
        weight: real.weight,
        failed: false,
        dims: empty_dims,
        peer: None,
    }
}
