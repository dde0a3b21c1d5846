//! The service graph: pairs each CLIENT (or PRODUCER) span with the SERVER (or CONSUMER) span
//! it caused — same trace, the server span's parent is the client span — and aggregates the
//! pairs per (client service, server service, connection type) and event-time window, as the
//! Collector's servicegraph connector defines the edges.
//!
//! Pairing waits a bounded time (`service_graph.wait`, wall clock) in a bounded store
//! (`max_items`). Like the Collector, some edges have one real side only (`virtual_node.rs`):
//! a client span with a database name attribute is a `database` edge at once; a client half
//! that expires with a peer attribute becomes an edge to a virtual server node, and a server
//! span without a parent an edge from the virtual client `user` (both with connection type
//! `virtual_node`). Every other half that finds no partner expires and is counted as unpaired,
//! so each client/server span ends up in exactly one edge or in the unpaired count. The operator
//! hands results to [`ServiceGraphSink`]s (Prometheus, the `service_graph` table) and never
//! formats them itself.

mod aggregate;
mod config;
mod operator;
mod store;
mod virtual_node;

#[cfg(test)]
mod tests;

pub use aggregate::EdgeAgg;
pub use config::{ServiceGraphConfig, MAX_SERVICE_GRAPH_ATTRIBUTES};
pub use operator::ServiceGraphOperator;
pub use store::{Half, PendingStore, Upsert};

use hashbrown::Equivalent;
use redwatch_engine::model::UnixNanos;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// How the client reaches the server, with the Collector's label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum ConnectionType {
    /// A direct request (CLIENT → SERVER): label value `""`.
    #[default]
    Direct,
    /// Through a messaging system (PRODUCER → CONSUMER): `messaging_system`.
    MessagingSystem,
    /// One side is a virtual node (an uninstrumented peer, or the `user`): `virtual_node`.
    VirtualNode,
    /// A client span calling a database (no server span expected): `database`.
    Database,
}

impl ConnectionType {
    /// The `connection_type` label value.
    pub fn as_label(&self) -> &'static str {
        match self {
            ConnectionType::Direct => "",
            ConnectionType::MessagingSystem => "messaging_system",
            ConnectionType::VirtualNode => "virtual_node",
            ConnectionType::Database => "database",
        }
    }
}

/// Which side of an edge is a virtual node, for the optional `virtual_node` label
/// (`service_graph.virtual_node_extra_label`; always `None` when that is off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum VirtualSide {
    #[default]
    None,
    /// The client is virtual (`user`): label value `client`.
    Client,
    /// The server is virtual (named by a peer attribute): label value `server`.
    Server,
}

impl VirtualSide {
    /// The `virtual_node` label value, None when the edge carries no such label.
    pub fn as_label(&self) -> Option<&'static str> {
        match self {
            VirtualSide::None => None,
            VirtualSide::Client => Some("client"),
            VirtualSide::Server => Some("server"),
        }
    }
}

/// The identity of an edge series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EdgeKey {
    /// The client's `service.name` ("" when unknown: an unpaired server span).
    pub client: Arc<str>,
    /// The server's `service.name` ("" when unknown: an unpaired client span).
    pub server: Arc<str>,
    pub connection_type: ConnectionType,
    /// The virtual side, when `service_graph.virtual_node_extra_label` is on.
    pub virtual_node: VirtualSide,
    /// Values of `service_graph.dimensions` read from the client span, then the same dimensions
    /// read from the server span ("" = absent); labels `client_<dim>`, `server_<dim>`.
    pub dims: Box<[Arc<str>]>,
    /// The edge that collects everything past `service_graph.cardinality_limit`.
    pub overflow: bool,
}

impl EdgeKey {
    /// Hashes an edge's parts; [`EdgeKey`] and [`EdgeRef`] must hash alike.
    fn hash_parts<'a, H: Hasher>(
        parts: (&str, &str, ConnectionType, VirtualSide),
        dims: impl ExactSizeIterator<Item = &'a Arc<str>>,
        overflow: bool,
        h: &mut H,
    ) {
        let (client, server, connection_type, virtual_node) = parts;
        client.hash(h);
        server.hash(h);
        connection_type.hash(h);
        virtual_node.hash(h);
        dims.len().hash(h);
        for d in dims {
            d.hash(h);
        }
        overflow.hash(h);
    }

    /// The overflow edge for `n_dims` dimensions.
    pub fn overflow(n_dims: usize) -> EdgeKey {
        let empty: Arc<str> = Arc::from("");
        EdgeKey {
            client: empty.clone(),
            server: empty.clone(),
            connection_type: ConnectionType::Direct,
            virtual_node: VirtualSide::None,
            dims: vec![empty; 2 * n_dims].into_boxed_slice(),
            overflow: true,
        }
    }

    /// Approximate heap bytes of the key.
    pub fn heap_bytes(&self) -> usize {
        self.client.len()
            + self.server.len()
            + self.dims.iter().map(|d| d.len() + 16).sum::<usize>()
            + 32
    }
}

impl Hash for EdgeKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let parts = (
            &*self.client,
            &*self.server,
            self.connection_type,
            self.virtual_node,
        );
        EdgeKey::hash_parts(parts, self.dims.iter(), self.overflow, h);
    }
}

/// An edge borrowed from the two halves that make it, for lookups that neither clone the
/// halves' `Arc`s nor allocate the dimension list of a known edge.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EdgeRef<'a> {
    pub client: &'a Arc<str>,
    pub server: &'a Arc<str>,
    pub connection_type: ConnectionType,
    pub virtual_node: VirtualSide,
    pub client_dims: &'a [Arc<str>],
    pub server_dims: &'a [Arc<str>],
}

impl EdgeRef<'_> {
    fn dims(&self) -> impl ExactSizeIterator<Item = &Arc<str>> {
        // `Chain` is not `ExactSizeIterator`; the two slices' lengths are known.
        let n = self.client_dims.len() + self.server_dims.len();
        (0..n).map(move |i| match self.client_dims.get(i) {
            Some(d) => d,
            None => &self.server_dims[i - self.client_dims.len()],
        })
    }

    pub(crate) fn to_key(self) -> EdgeKey {
        EdgeKey {
            client: self.client.clone(),
            server: self.server.clone(),
            connection_type: self.connection_type,
            virtual_node: self.virtual_node,
            dims: self.dims().cloned().collect(),
            overflow: false,
        }
    }
}

impl Hash for EdgeRef<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let parts = (
            &**self.client,
            &**self.server,
            self.connection_type,
            self.virtual_node,
        );
        EdgeKey::hash_parts(parts, self.dims(), false, h);
    }
}

/// Equal strings, by pointer first (interned service names usually are the same `Arc`).
fn same(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}

impl Equivalent<EdgeKey> for EdgeRef<'_> {
    fn equivalent(&self, k: &EdgeKey) -> bool {
        !k.overflow
            && k.connection_type == self.connection_type
            && k.virtual_node == self.virtual_node
            && same(&k.client, self.client)
            && same(&k.server, self.server)
            && k.dims.len() == self.client_dims.len() + self.server_dims.len()
            && k.dims.iter().zip(self.dims()).all(|(a, b)| same(a, b))
    }
}

/// One service graph result row: an edge in a window.
#[derive(Debug, Clone)]
pub struct EdgeRow {
    /// The window spec, as written in config (`10s`).
    pub window_size: Arc<str>,
    pub window_size_ns: u64,
    pub start: UnixNanos,
    pub end: UnixNanos,
    pub edge: Arc<EdgeKey>,
    /// False for a provisional row of a window still open.
    pub is_final: bool,
    /// Everything the window has for the edge.
    pub total: EdgeAgg,
    /// What this final emission adds to earlier ones (None for provisional rows).
    pub delta: Option<EdgeAgg>,
}

/// Spans that expired without a partner, per (client, server, connection type): one side of
/// the key is "" (the unknown partner).
#[derive(Debug, Clone, PartialEq)]
pub struct Unpaired {
    pub edge: Arc<EdgeKey>,
    pub spans: u64,
}

/// Where service graph results go. Called on the operator task: implementations must be quick
/// and must not block.
pub trait ServiceGraphSink: Send + Sync {
    /// Final rows (first emissions and late re-emissions).
    fn on_final(&self, rows: &[EdgeRow]);
    /// The current provisional rows of the open windows (replacing earlier ones).
    fn on_provisional(&self, _window_size_ns: u64, _rows: &[EdgeRow]) {}
    /// Spans that expired unpaired since the last call.
    fn on_unpaired(&self, _unpaired: &[Unpaired]) {}
    /// Edges forgotten after `service_graph.series_expiry` without requests.
    fn on_series_expired(&self, _edges: &[Arc<EdgeKey>]) {}
}
