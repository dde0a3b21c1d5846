//! The bounded store of half edges waiting for their partner, keyed by (trace id, client span
//! id): a client span waits under its own id, a server span under its parent's.
//!
//! Like the Collector's servicegraph store: at most `max_items` edges wait; a span that would
//! open one more is dropped (the caller counts it); an edge waits at most `wait` (wall clock)
//! and then expires unpaired.

use super::ConnectionType;
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
}

#[derive(Debug)]
struct Pending {
    client: Option<Half>,
    server: Option<Half>,
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
        let key = (trace_id, client_span_id);
        let messaging = connection_type == ConnectionType::MessagingSystem;
        if let Some(p) = self.map.get_mut(&key) {
            let partner_waits = if is_client {
                p.server.is_some()
            } else {
                p.client.is_some()
            };
            if !partner_waits {
                // The same side again (a retried export): the newer one wins, as in the Collector.
                if is_client {
                    p.client = Some(half);
                } else {
                    p.server = Some(half);
                }
                p.messaging |= messaging;
                return Upsert::Waiting;
            }
            let Some(p) = self.map.remove(&key) else {
                return Upsert::Waiting;
            };
            let (client, server) = if is_client {
                (Some(half), p.server)
            } else {
                (p.client, Some(half))
            };
            return match (client, server) {
                (Some(client), Some(server)) => Upsert::Paired {
                    client,
                    server,
                    connection_type: if messaging || p.messaging {
                        ConnectionType::MessagingSystem
                    } else {
                        ConnectionType::Direct
                    },
                },
                _ => Upsert::Waiting,
            };
        }
        if self.map.len() >= self.max_items {
            return Upsert::Dropped;
        }
        let (client, server) = if is_client {
            (Some(half), None)
        } else {
            (None, Some(half))
        };
        self.map.insert(
            key,
            Pending {
                client,
                server,
                messaging,
                expires_at: now.saturating_add(self.wait_ns),
            },
        );
        Upsert::Waiting
    }

    /// Removes every edge whose wait ended at or before `now`, handing its waiting half to `f`
    /// as `(half, is_client, connection type)`. Returns how many expired.
    pub fn expire(
        &mut self,
        now: UnixNanos,
        mut f: impl FnMut(&Half, bool, ConnectionType),
    ) -> usize {
        let mut n = 0;
        self.map.retain(|_, p| {
            if p.expires_at > now {
                return true;
            }
            n += 1;
            let ct = if p.messaging {
                ConnectionType::MessagingSystem
            } else {
                ConnectionType::Direct
            };
            if let Some(c) = &p.client {
                f(c, true, ct);
            }
            if let Some(s) = &p.server {
                f(s, false, ct);
            }
            false
        });
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
                .flat_map(|p| p.client.iter().chain(p.server.iter()))
                .map(|h| h.dims.len() * std::mem::size_of::<Arc<str>>())
                .sum::<usize>()
    }
}
