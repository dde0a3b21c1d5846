//! The bounded store of half edges waiting for their partner, keyed by (trace id, client span
//! id): a client span waits under its own id, a server span under its parent's.
//!
//! Like the Collector's servicegraph store: at most `max_items` edges wait; a span that would
//! open one more is dropped (the caller counts it); an edge waits at most `wait` (wall clock)
//! and then expires unpaired.

use super::ConnectionType;
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use redwatch_engine::model::UnixNanos;
use std::sync::Arc;

/// One side of an edge: what the pair needs from a span.
#[derive(Debug, Clone, PartialEq)]
pub struct Half {
    pub service: Arc<str>,
    /// The span's end (event time).
    pub end: UnixNanos,
    pub duration_s: f64,
    /// Sampling weight (adjusted count).
    pub weight: f64,
    pub failed: bool,
    /// Values of `service_graph.dimensions` from this span.
    pub dims: Box<[Arc<str>]>,
    /// A client span's first `virtual_node_peer_attributes` value: the virtual server node it
    /// becomes an edge to if its server half never arrives.
    pub peer: Option<Arc<str>>,
}

/// One waiting half: only one side ever waits (the other side completes the edge and removes
/// it), so the entry holds one half inline.
#[derive(Debug)]
struct Pending {
    half: Half,
    is_client: bool,
    messaging: bool,
    expires_at: UnixNanos,
}

/// What [`PendingStore::upsert`] did with a half.
#[derive(Debug, PartialEq)]
pub enum Upsert {
    /// The partner was waiting: the edge is complete and has left the store.
    Paired {
        client: Half,
        server: Half,
        connection_type: ConnectionType,
    },
    /// The half waits for its partner (a repeated half replaces the earlier one).
    Waiting,
    /// The store is full: the half was dropped.
    Dropped,
}

type Key = ([u8; 16], [u8; 8]);

/// Half edges waiting for their partner.
#[derive(Debug)]
pub struct PendingStore {
    map: HashMap<Key, Pending>,
    max_items: usize,
    wait_ns: u64,
}

impl PendingStore {
    pub fn new(max_items: usize, wait_ns: u64) -> Self {
        PendingStore {
            map: HashMap::new(),
            max_items: max_items.max(1),
            wait_ns,
        }
    }

    /// Offers one half of the edge `(trace_id, client_span_id)` at wall clock `now`.
    pub fn upsert(
        &mut self,
        trace_id: [u8; 16],
        client_span_id: [u8; 8],
        is_client: bool,
        connection_type: ConnectionType,
        half: Half,
        now: UnixNanos,
    ) -> Upsert {
        let messaging = connection_type == ConnectionType::MessagingSystem;
        let full = self.map.len() >= self.max_items;
        match self.map.entry((trace_id, client_span_id)) {
            Entry::Occupied(mut o) if o.get().is_client == is_client => {
                // The same side again (a retried export): the newer one wins, as in the Collector.
                let p = o.get_mut();
                p.half = half;
                p.messaging |= messaging;
                Upsert::Waiting
            }
            Entry::Occupied(o) => {
                let p = o.remove();
                let connection_type = if messaging || p.messaging {
                    ConnectionType::MessagingSystem
                } else {
                    ConnectionType::Direct
                };
                let (client, server) = if is_client {
                    (half, p.half)
                } else {
                    (p.half, half)
                };
                Upsert::Paired {
                    client,
                    server,
                    connection_type,
                }
            }
            Entry::Vacant(_) if full => Upsert::Dropped,
            Entry::Vacant(v) => {
                v.insert(Pending {
                    half,
                    is_client,
                    messaging,
                    expires_at: now.saturating_add(self.wait_ns),
                });
                Upsert::Waiting
            }
        }
    }

    /// Whether [`upsert`](Self::upsert) would drop a half of edge `(trace_id, client_span_id)`
    /// now: the store is full and that edge is not waiting.
    pub fn would_drop(&self, trace_id: &[u8; 16], client_span_id: &[u8; 8]) -> bool {
        self.map.len() >= self.max_items && !self.map.contains_key(&(*trace_id, *client_span_id))
    }

    /// Removes every edge whose wait ended at or before `now`, handing its waiting half to `f`
    /// as `(half, is_client, connection type)`. Returns how many expired.
    pub fn expire(
        &mut self,
        now: UnixNanos,
        mut f: impl FnMut(Half, bool, ConnectionType),
    ) -> usize {
        let mut n = 0;
        for (_, p) in self.map.extract_if(|_, p| p.expires_at <= now) {
            n += 1;
            let ct = if p.messaging {
                ConnectionType::MessagingSystem
            } else {
                ConnectionType::Direct
            };
            f(p.half, p.is_client, ct);
        }
        n
    }

    /// Edges waiting.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Approximate bytes held.
    pub fn state_bytes(&self) -> usize {
        self.map.capacity() * (std::mem::size_of::<(Key, Pending)>() + 1)
            + self
                .map
                .values()
                .map(|p| p.half.dims.len() * std::mem::size_of::<Arc<str>>())
                .sum::<usize>()
    }
}
