//! The service graph operator: spans in, paired edges per event-time window out.

use super::aggregate::EdgeAgg;
use super::store::{Half, PendingStore, Upsert};
use super::virtual_node::{stand_in, NodeAttributes, USER_NODE};
use super::ServiceGraphConfig;
use super::{ConnectionType, EdgeKey, EdgeRef, EdgeRow, ServiceGraphSink, Unpaired, VirtualSide};
use crate::common::{
    due, recycle, Lookup, SeriesId, SeriesTable, WindowSpec, WindowSpecs, PROVISIONAL_EVERY_NS,
    SERIES_EXPIRY_EVERY_NS,
};
use crate::red::RedConfig;
use crate::red::UNKNOWN_SERVICE;
use hashbrown::{HashMap, HashSet};
use redwatch_engine::config::{Dimension, WindowsConfig, MAX_DIMENSIONS};
use redwatch_engine::model::{SpanBatch, SpanKind, StatusCode, StrRef, UnixNanos};
use redwatch_engine::pipeline::{Batch, OpContext, Operator, StateStats};
use redwatch_engine::telemetry::{Counter, Gauge, Registry};
use redwatch_engine::window::WindowStore;
use std::sync::Arc;

/// Longest pause between two scans for expired half edges.
const MAX_EXPIRY_SCAN_EVERY_NS: u64 = 1_000_000_000;
/// The series id of the overflow edge.
const OVERFLOW_EDGE: SeriesId = 0;
/// Distinct service names kept interned at most (the set is rebuilt past it).
const MAX_INTERNED: usize = 100_000;

/// An expired half: the half, whether it is the client, the connection type.
type ExpiredHalf = (Half, bool, ConnectionType);

/// A paired request waiting for its window update (applied once per batch, see
/// [`ServiceGraphOperator::flush`]).
#[derive(Debug, Clone, Copy)]
struct Completed {
    edge: SeriesId,
    /// Event time: the later end of the two spans.
    event: UnixNanos,
    client_s: f64,
    server_s: f64,
    buckets: (usize, usize),
    failed: bool,
    weight: f64,
}

struct Counters {
    late: Arc<Counter>,
    dropped: Arc<Counter>,
    root_spans: Arc<Counter>,
    paired: Arc<Counter>,
    virtual_edges: Arc<Counter>,
    database_edges: Arc<Counter>,
    expired: Arc<Counter>,
    overflow: Arc<Counter>,
    pending: Arc<Gauge>,
    edges: Arc<Gauge>,
}

/// Pairs client and server spans into service graph edges.
pub struct ServiceGraphOperator {
    /// The primary window only (no rollups).
    windows: WindowSpecs<SeriesId, EdgeAgg>,
    pending: PendingStore,
    /// Edge series known, for the cardinality limit and expiry (id 0: the overflow edge).
    series: SeriesTable<EdgeKey>,
    /// Requests paired in the current batch, not yet in their window.
    completed: Vec<Completed>,
    overflow_key: Arc<EdgeKey>,
    /// Distinct unpaired edges reported per expiry scan at most (the rest count as overflow).
    unpaired_limit: usize,
    series_expiry_ns: u64,
    lateness_ns: u64,
    /// Unpaired spans since the sinks were last told.
    unpaired: HashMap<Arc<EdgeKey>, u64>,
    services: HashSet<Arc<str>>,
    empty: Arc<str>,
    /// The virtual client of parentless server spans.
    user_node: Arc<str>,
    /// Where the peer and database name attributes are.
    nodes: NodeAttributes,
    bounds: Vec<f64>,
    /// `service_graph.dimensions`: where their values sit among the batch's dimensions, and
    /// their defaults.
    dims: Vec<Dimension>,
    dims_offset: usize,
    sinks: Vec<Arc<dyn ServiceGraphSink>>,
    expiry_every_ns: u64,
    last_expiry_scan: UnixNanos,
    last_provisional: UnixNanos,
    last_series_expiry: UnixNanos,
    counters: Counters,
}

impl ServiceGraphOperator {
    /// An operator for the `service_graph` section; `red` fixes where its dimensions start in
    /// the decoder's layout ([`crate::layout`]).
    pub fn new(
        windows: &WindowsConfig,
        red: &RedConfig,
        sg: &ServiceGraphConfig,
        sinks: Vec<Arc<dyn ServiceGraphSink>>,
        registry: &Registry,
    ) -> Self {
        let lateness = windows.allowed_lateness.as_nanos() as u64;
        let size = (windows.size.as_nanos() as u64).max(1);
        let wait = (sg.wait.as_nanos() as u64).max(1);
        let dims: Vec<Dimension> = sg.dimensions.iter().take(MAX_DIMENSIONS).cloned().collect();
        let c = |name: &'static str, help: &'static str| registry.counter(name, help, &[]);
        ServiceGraphOperator {
            windows: WindowSpecs {
                primary: WindowSpec::new(WindowStore::new(size, lateness), None),
                rollups: Vec::new(),
            },
            pending: PendingStore::new(sg.max_items, wait),
            series: SeriesTable::with_overflow(
                [EdgeKey::overflow(dims.len())],
                sg.cardinality_limit.max(1),
            ),
            completed: Vec::new(),
            overflow_key: Arc::new(EdgeKey::overflow(dims.len())),
            unpaired_limit: sg.cardinality_limit.max(1),
            series_expiry_ns: sg.series_expiry.as_nanos() as u64,
            lateness_ns: lateness,
            unpaired: HashMap::new(),
            services: HashSet::new(),
            empty: Arc::from(""),
            user_node: Arc::from(USER_NODE),
            nodes: NodeAttributes::new(red, sg),
            bounds: sg.buckets_s.clone(),
            dims_offset: red.dimensions.len().min(MAX_DIMENSIONS),
            dims,
            sinks,
            expiry_every_ns: (wait / 4).clamp(1, MAX_EXPIRY_SCAN_EVERY_NS),
            last_expiry_scan: 0,
            last_provisional: 0,
            last_series_expiry: 0,
            counters: Counters {
                late: registry.counter(
                    "redwatch_late_dropped_total",
                    "Items dropped because their window was already purged.",
                    &[("signal", "service_graph")],
                ),
                dropped: c(
                    "redwatch_service_graph_dropped_spans_total",
                    "Client/server spans dropped because service_graph.max_items edges were waiting.",
                ),
                root_spans: c(
                    "redwatch_service_graph_root_spans_total",
                    "Server/consumer spans without a parent: no client can pair with them.",
                ),
                paired: c(
                    "redwatch_service_graph_edges_paired_total",
                    "Client and server spans paired into an edge.",
                ),
                virtual_edges: c(
                    "redwatch_service_graph_virtual_node_edges_total",
                    "Edges with a virtual node: expired client spans with a peer attribute, and server spans without a parent (client `user`).",
                ),
                database_edges: c(
                    "redwatch_service_graph_database_edges_total",
                    "Client spans with a database name attribute, counted as edges to the database at once.",
                ),
                expired: c(
                    "redwatch_service_graph_edges_expired_total",
                    "Half edges that waited service_graph.wait without finding their partner.",
                ),
                overflow: c(
                    "redwatch_service_graph_overflow_requests_total",
                    "Requests counted in the overflow edge because service_graph.cardinality_limit was reached.",
                ),
                pending: registry.gauge(
                    "redwatch_service_graph_pending_edges",
                    "Half edges waiting for their partner.",
                    &[],
                ),
                edges: registry.gauge(
                    "redwatch_service_graph_active_edges",
                    "Edge series currently tracked (the overflow edge not counted).",
                    &[],
                ),
            },
        }
    }

    /// The latency bucket bounds (seconds).
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// Half edges waiting for their partner.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.services.get(s) {
            return a.clone();
        }
        if self.services.len() >= MAX_INTERNED {
            self.services.clear();
        }
        let a: Arc<str> = Arc::from(s);
        self.services.insert(a.clone());
        a
    }

    /// Offers the client/server spans of one batch for pairing (at wall clock `now`).
    pub fn process_spans(&mut self, batch: &SpanBatch, now: UnixNanos) {
        // Spans of one resource share its service: intern it once per run of them.
        let mut last_service: Option<(Option<StrRef>, Arc<str>)> = None;
        for span in &batch.spans {
            let (is_client, ct) = match span.kind {
                SpanKind::Client => (true, ConnectionType::Direct),
                SpanKind::Producer => (true, ConnectionType::MessagingSystem),
                SpanKind::Server => (false, ConnectionType::Direct),
                SpanKind::Consumer => (false, ConnectionType::MessagingSystem),
                _ => continue,
            };
            let key_span = if is_client {
                span.span_id
            } else {
                span.parent_span_id
            };
            // A server span without a parent: no client can pair with it; with virtual nodes on
            // it is an edge from `user` at once (the Collector makes it when it expires).
            let root_server = !is_client && key_span == [0; 8];
            if root_server {
                self.counters.root_spans.inc();
            }
            if key_span == [0; 8] && !(root_server && self.nodes.virtual_nodes()) {
                continue;
            }
            if span.trace_id == [0; 16] {
                continue;
            }
            let values = batch.dims_of(span);
            // A database call is complete on its own: the server is the database.
            let database = if is_client {
                self.nodes.database(batch, values)
            } else {
                None
            };
            // A half the full store would drop is dropped before it is built (under a flood of
            // halves that never pair, the store stays full and this is most client spans).
            if !root_server
                && database.is_none()
                && self.pending.would_drop(&span.trace_id, &key_span)
            {
                self.counters.dropped.inc();
                continue;
            }
            let service_ref = batch.service_of(span);
            let service = match &last_service {
                Some((r, a)) if *r == service_ref => a.clone(),
                _ => {
                    let a = match service_ref {
                        Some(r) => self.intern(batch.str(r)),
                        None => self.intern(UNKNOWN_SERVICE),
                    };
                    last_service = Some((service_ref, a.clone()));
                    a
                }
            };
            let dims: Box<[Arc<str>]> = self
                .dims
                .iter()
                .enumerate()
                .map(
                    |(i, d)| match values.get(self.dims_offset + i).copied().flatten() {
                        Some(r) => Arc::from(batch.str(r)),
                        None => Arc::from(d.default.as_deref().unwrap_or("")),
                    },
                )
                .collect();
            let mut half = Half {
                service,
                end: span.end,
                duration_s: span.duration_ns() as f64 / 1e9,
                weight: span.weight,
                failed: span.status == StatusCode::Error,
                dims,
                peer: None,
            };
            if root_server {
                let user = stand_in(self.user_node.clone(), &half, 0.0, self.blank_dims());
                let side = self.nodes.label(VirtualSide::Client);
                self.counters.virtual_edges.inc();
                self.complete(user, half, ConnectionType::VirtualNode, side, now);
                continue;
            }
            if is_client {
                if let Some(db) = database {
                    let db = self.intern(db);
                    let server = stand_in(db, &half, half.duration_s, self.blank_dims());
                    self.counters.database_edges.inc();
                    self.complete(
                        half,
                        server,
                        ConnectionType::Database,
                        VirtualSide::None,
                        now,
                    );
                    continue;
                }
                if self.nodes.virtual_nodes() {
                    half.peer = self.nodes.peer(batch, values).map(|p| self.intern(p));
                }
            }
            match self
                .pending
                .upsert(span.trace_id, key_span, is_client, ct, half, now)
            {
                Upsert::Paired {
                    client,
                    server,
                    connection_type,
                } => {
                    self.counters.paired.inc();
                    self.complete(client, server, connection_type, VirtualSide::None, now)
                }
                Upsert::Waiting => {}
                Upsert::Dropped => self.counters.dropped.inc(),
            }
        }
        self.flush();
    }

    /// Adds the requests paired since the last flush to their windows, the aggregates of later
    /// updates prefetched (with many windows open nearly every update misses the cache).
    fn flush(&mut self) {
        let completed = std::mem::take(&mut self.completed);
        let late = &self.counters.late;
        self.windows.primary.store.update_batch(
            &completed,
            |c| (c.event, &c.edge),
            |agg, c| agg.prefetch_heap(c.client_s, c.server_s),
            |c, agg| agg.add(c.client_s, c.server_s, c.buckets, c.failed, c.weight),
            |_, outcome| {
                if outcome.is_err() {
                    late.inc();
                }
            },
        );
        self.completed = recycle(completed);
    }

    /// The edge series of `key` (created, or the overflow edge past the cardinality limit),
    /// marked active.
    fn edge_id(&mut self, key: EdgeRef<'_>, now: UnixNanos, event: UnixNanos) -> SeriesId {
        let lookup = self
            .series
            .find_or_insert(&key, OVERFLOW_EDGE, |k| k.to_key());
        if let Lookup::Overflow(_) = lookup {
            self.counters.overflow.inc();
        }
        let id = lookup.id();
        self.series.touch(id, now, event);
        id
    }

    /// `n_dims` empty dimension values: the side of an edge that is not a real span.
    fn blank_dims(&self) -> Box<[Arc<str>]> {
        vec![self.empty.clone(); self.dims.len()].into_boxed_slice()
    }

    fn complete(
        &mut self,
        client: Half,
        server: Half,
        ct: ConnectionType,
        virtual_node: VirtualSide,
        now: UnixNanos,
    ) {
        let event = client.end.max(server.end);
        let edge = self.edge_id(
            EdgeRef {
                client: &client.service,
                server: &server.service,
                connection_type: ct,
                virtual_node,
                client_dims: &client.dims,
                server_dims: &server.dims,
            },
            now,
            event,
        );
        let bucket = |s: f64| self.bounds.partition_point(|b| *b < s);
        let buckets = (bucket(client.duration_s), bucket(server.duration_s));
        let failed = client.failed || server.failed;
        self.completed.push(Completed {
            edge,
            event,
            client_s: client.duration_s,
            server_s: server.duration_s,
            buckets,
            failed,
            weight: client.weight,
        });
    }

    /// Expires half edges whose wait ended by `now`: a client half that names its peer becomes
    /// a virtual node edge, every other half is unpaired and the sinks are told.
    pub fn expire_pending(&mut self, now: UnixNanos) {
        let mut expired: Vec<ExpiredHalf> = Vec::new();
        let n = self.pending.expire(now, |h, is_client, ct| {
            expired.push((h, is_client, ct));
        });
        self.counters.expired.add(n as u64);
        if expired.is_empty() {
            return;
        }
        self.report_expired(expired, now);
        self.flush();
    }

    /// Expired halves: client halves naming a peer become virtual node edges, the others are
    /// counted unpaired and the sinks told.
    fn report_expired(&mut self, expired: Vec<ExpiredHalf>, now: UnixNanos) {
        let n_dims = self.dims.len();
        for (mut half, is_client, ct) in expired {
            if let (true, Some(peer)) = (is_client, half.peer.take()) {
                let server = stand_in(peer, &half, 0.0, self.blank_dims());
                let side = self.nodes.label(VirtualSide::Server);
                self.counters.virtual_edges.inc();
                self.complete(half, server, ConnectionType::VirtualNode, side, now);
                continue;
            }
            let empty = self.empty.clone();
            let blank = || vec![self.empty.clone(); n_dims];
            let all_dims: Box<[Arc<str>]> = if is_client {
                half.dims.iter().cloned().chain(blank()).collect()
            } else {
                blank()
                    .into_iter()
                    .chain(half.dims.iter().cloned())
                    .collect()
            };
            let (c, s) = if is_client {
                (half.service, empty)
            } else {
                (empty, half.service)
            };
            let key = EdgeKey {
                client: c,
                server: s,
                connection_type: ct,
                virtual_node: VirtualSide::None,
                dims: all_dims,
                overflow: false,
            };
            let key =
                if self.unpaired.contains_key(&key) || self.unpaired.len() < self.unpaired_limit {
                    Arc::new(key)
                } else {
                    self.overflow_key.clone()
                };
            *self.unpaired.entry(key).or_insert(0) += 1;
        }
        if self.unpaired.is_empty() {
            return;
        }
        let list: Vec<Unpaired> = self
            .unpaired
            .drain()
            .map(|(edge, spans)| Unpaired { edge, spans })
            .collect();
        for s in &self.sinks {
            s.on_unpaired(&list);
        }
    }

    /// Moves the windows to watermark `wm`, emitting final rows to the sinks.
    pub fn advance(&mut self, wm: UnixNanos) {
        let (sinks, series) = (&self.sinks, &self.series);
        self.windows.advance(
            wm,
            |spec, e| {
                Some(EdgeRow {
                    window_size: spec.label.clone(),
                    window_size_ns: spec.size_ns,
                    start: e.start,
                    end: e.end,
                    edge: series.key(*e.key)?.clone(),
                    is_final: true,
                    total: e.total.clone(),
                    delta: Some(e.delta.clone()),
                })
            },
            |rows, _| {
                for s in sinks {
                    s.on_final(&rows);
                }
            },
        );
    }

    /// Publishes provisional rows of the open windows to the sinks.
    pub fn publish_provisional(&self) {
        self.windows.provisional(
            |spec, start, end, key, agg| {
                Some(EdgeRow {
                    window_size: spec.label.clone(),
                    window_size_ns: spec.size_ns,
                    start,
                    end,
                    edge: self.series.key(*key)?.clone(),
                    is_final: false,
                    total: agg.clone(),
                    delta: None,
                })
            },
            |size, rows| {
                for s in &self.sinks {
                    s.on_provisional(size, rows);
                }
            },
        );
    }

    pub(super) fn expire_series(&mut self, now: UnixNanos, wm: UnixNanos) {
        let idle_before = now.saturating_sub(self.series_expiry_ns);
        let purged_through = self.windows.purged_through(wm, self.lateness_ns);
        let gone = self.series.expire(idle_before, purged_through);
        if !gone.is_empty() {
            for s in &self.sinks {
                s.on_series_expired(&gone);
            }
        }
    }
}

impl Operator for ServiceGraphOperator {
    fn name(&self) -> &'static str {
        "service_graph"
    }

    fn process_batch(&mut self, batch: &Batch, ctx: &mut OpContext<'_>) {
        match batch {
            Batch::Spans(b) => self.process_spans(b, ctx.now),
            Batch::Metrics(_) => {}
        }
    }

    fn on_watermark(&mut self, ctx: &mut OpContext<'_>) {
        self.advance(ctx.watermark);
    }

    fn on_tick(&mut self, ctx: &mut OpContext<'_>) {
        if due(&mut self.last_expiry_scan, ctx.now, self.expiry_every_ns) {
            self.expire_pending(ctx.now);
        }
        if due(&mut self.last_provisional, ctx.now, PROVISIONAL_EVERY_NS) {
            self.publish_provisional();
        }
        if due(
            &mut self.last_series_expiry,
            ctx.now,
            SERIES_EXPIRY_EVERY_NS,
        ) {
            self.expire_series(ctx.now, ctx.watermark);
        }
        self.counters.pending.set(self.pending.len() as f64);
        self.counters.edges.set(self.series.len() as f64);
    }

    fn snapshot(&self) -> StateStats {
        let mut s = StateStats {
            series: self.series.len(),
            windows: 0,
            entries: self.pending.len(),
            bytes: self.pending.state_bytes() + self.series.heap_bytes_with(EdgeKey::heap_bytes),
        };
        self.windows.add_stats(&mut s);
        s
    }
}
