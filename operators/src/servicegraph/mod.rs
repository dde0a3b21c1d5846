//! The service graph: pairs each CLIENT (or PRODUCER) span with the SERVER (or CONSUMER) span
//! it caused — same trace, the server span's parent is the client span — and aggregates the
//! pairs per (client service, server service, connection type) and event-time window, as the
//! Collector's servicegraph connector defines the edges.
//!
//! Pairing waits a bounded time (`service_graph.wait`, wall clock) in a bounded store
//! (`max_items`); halves that find no partner expire and are counted as unpaired. The operator
//! hands results to [`ServiceGraphSink`]s (Prometheus, the `service_graph` table) and never
//! formats them itself.

mod aggregate;
mod operator;
mod store;

#[cfg(test)]
mod tests;

pub use aggregate::EdgeAgg;
pub use operator::ServiceGraphOperator;
pub use store::{Half, PendingStore, Upsert};

use redwatch_engine::model::UnixNanos;
use std::sync::Arc;

/// How the client reaches the server, with the Collector's label values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum ConnectionType {
    /// A direct request (CLIENT → SERVER): label value `""`.
    #[default]
    Direct,
    /// Through a messaging system (PRODUCER → CONSUMER): `messaging_system`.
    MessagingSystem,
}

impl ConnectionType {
    /// The `connection_type` label value.
    pub fn as_label(&self) -> &'static str {
        match self {
            ConnectionType::Direct => "",
            ConnectionType::MessagingSystem => "messaging_system",
        }
    }
}

/// The identity of an edge series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeKey {
    /// The client's `service.name` ("" when unknown: an unpaired server span).
    pub client: Arc<str>,
    /// The server's `service.name` ("" when unknown: an unpaired client span).
    pub server: Arc<str>,
    pub connection_type: ConnectionType,
    /// Values of `service_graph.dimensions` read from the client span, then the same dimensions
    /// read from the server span ("" = absent); labels `client_<dim>`, `server_<dim>`.
    pub dims: Box<[Arc<str>]>,
    /// The edge that collects everything past `service_graph.cardinality_limit`.
    pub overflow: bool,
}

impl EdgeKey {
    /// The overflow edge for `n_dims` dimensions.
    pub fn overflow(n_dims: usize) -> EdgeKey {
        let empty: Arc<str> = Arc::from("");
        EdgeKey {
            client: empty.clone(),
            server: empty.clone(),
            connection_type: ConnectionType::Direct,
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
