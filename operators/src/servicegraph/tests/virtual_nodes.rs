//! Edges with one real side: database calls, client spans naming an uninstrumented peer,
//! server spans without a parent (the virtual client `user`), and that every other lone half
//! still counts as unpaired exactly once.

use super::*;

/// The span attributes of the service graph's virtual nodes and database edges, placed where
/// the decoder puts them for `cfg` ([`SpanSections::decode_dimensions`]).
fn attrs(cfg: &SpanSections, span: SpanFixture, values: &[(&str, &str)]) -> SpanFixture {
    let dims: Vec<Option<&str>> = cfg
        .decode_dimensions()
        .iter()
        .map(|d| values.iter().find(|(k, _)| *k == d.name).map(|(_, v)| *v))
        .collect();
    span.dims(&dims)
}

fn attr_batch(cfg: &SpanSections, spans: &[SpanFixture]) -> redwatch_engine::model::SpanBatch {
    span_batch(SourceId(0), cfg.decode_dimensions().len() as u16, spans)
}

/// Spans of `shop` whose partners are not instrumented:
///
/// - traces 20, 21: CLIENT with `peer.service=stripe`, no server (21 fails)
/// - traces 22–24: CLIENT with `db.system=postgresql`, `db.name=orders` (23 fails)
/// - trace 25: CLIENT with `db.system=redis` only, no server
/// - trace 26: CLIENT with `peer.service=inventory` whose inventory SERVER does arrive
/// - trace 27: CLIENT without attributes, no server
/// - trace 28: PRODUCER with `peer.service=queue`, no consumer
/// - trace 29: root SERVER of shop; root CONSUMER of worker
/// - trace 30: inventory SERVER whose parent (span 9) never arrives
fn uninstrumented_set(cfg: &SpanSections) -> Vec<SpanFixture> {
    use SpanKind::*;
    let a = |s: SpanFixture, v: &[(&str, &str)]| attrs(cfg, s, v);
    let pg = [("db.system", "postgresql"), ("db.name", "orders")];
    vec![
        a(
            sp("shop", Client, 20, 1, 0, 100, 10.0),
            &[("peer.service", "stripe")],
        ),
        a(
            sp("shop", Client, 21, 1, 0, 110, 20.0),
            &[("peer.service", "stripe")],
        )
        .status(StatusCode::Error),
        a(sp("shop", Client, 22, 1, 0, 120, 3.0), &pg),
        a(sp("shop", Client, 23, 1, 0, 130, 4.0), &pg).status(StatusCode::Error),
        a(sp("shop", Client, 24, 1, 0, 140, 5.0), &pg),
        a(
            sp("shop", Client, 25, 1, 0, 150, 1.0),
            &[("db.system", "redis")],
        ),
        a(
            sp("shop", Client, 26, 1, 0, 160, 9.0),
            &[("peer.service", "inventory")],
        ),
        a(sp("inventory", Server, 26, 2, 1, 159, 7.0), &[]),
        a(sp("shop", Client, 27, 1, 0, 170, 1.0), &[]),
        a(
            sp("shop", Producer, 28, 1, 0, 180, 1.0),
            &[("peer.service", "queue")],
        ),
        a(sp("shop", Server, 29, 1, 0, 190, 50.0), &[]),
        a(sp("worker", Consumer, 29, 2, 0, 195, 5.0), &[]),
        a(sp("inventory", Server, 30, 2, 9, 200, 2.0), &[]),
    ]
}

#[test]
fn database_calls_and_parentless_servers_are_edges_at_once() {
    let cfg = config();
    let (mut o, sink, reg) = op(&cfg);
    o.process_spans(&attr_batch(&cfg, &uninstrumented_set(&cfg)), NOW);
    // Waiting: stripe ×2, redis, the bare client, the queue producer, the orphan server.
    assert_eq!(o.pending_len(), 6);
    o.advance(T0 + 10 * SEC);
    assert_eq!(
        sink.edges(),
        BTreeMap::from([
            (key("shop", "inventory", ""), (1.0, 0.0)),
            (key("shop", "orders", "database"), (3.0, 1.0)),
            (key("user", "shop", "virtual_node"), (1.0, 0.0)),
            (key("user", "worker", "virtual_node"), (1.0, 0.0)),
        ])
    );
    assert_eq!(
        counter(&reg, "redwatch_service_graph_database_edges_total"),
        3.0
    );
    assert_eq!(
        counter(&reg, "redwatch_service_graph_root_spans_total"),
        2.0
    );
    assert_eq!(
        counter(&reg, "redwatch_service_graph_edges_paired_total"),
        1.0
    );
    // A database edge: the server side is the database, with the client's latency.
    let rows = sink.finals.lock().unwrap().clone();
    let db = rows
        .iter()
        .find(|r| r.edge.connection_type == ConnectionType::Database)
        .unwrap();
    assert!((db.total.server.sum_s - 0.012).abs() < 1e-9);
    assert!((db.total.client.sum_s - 0.012).abs() < 1e-9);
    assert_eq!(db.edge.virtual_node, VirtualSide::None);
}

#[test]
fn a_full_pending_store_drops_waiting_halves_but_not_database_or_user_edges() {
    let mut cfg = config();
    cfg.service_graph.max_items = 1;
    let (mut o, sink, reg) = op(&cfg);
    o.process_spans(&attr_batch(&cfg, &uninstrumented_set(&cfg)), NOW);
    // The first stripe client fills the store; every later half that would wait is dropped,
    // the inventory pair included (its client found the store full).
    assert_eq!(o.pending_len(), 1);
    assert_eq!(
        counter(&reg, "redwatch_service_graph_dropped_spans_total"),
        7.0
    );
    o.advance(T0 + 10 * SEC);
    assert_eq!(
        sink.edges(),
        BTreeMap::from([
            (key("shop", "orders", "database"), (3.0, 1.0)),
            (key("user", "shop", "virtual_node"), (1.0, 0.0)),
            (key("user", "worker", "virtual_node"), (1.0, 0.0)),
        ])
    );
}

#[test]
fn a_database_named_by_the_resource_wins_over_the_span_as_in_the_collector() {
    use redwatch_engine::config::DimensionSource;
    let cfg = config();
    let layout = cfg.decode_dimensions();
    let dims: Vec<Option<&str>> = layout
        .iter()
        .map(|d| match (d.name.as_str(), d.source) {
            ("db.name", DimensionSource::Resource) => Some("from-resource"),
            ("db.name", DimensionSource::Span) => Some("from-span"),
            _ => None,
        })
        .collect();
    let spans = [
        sp("shop", SpanKind::Client, 1, 1, 0, 10, 1.0).dims(&dims),
        sp("shop", SpanKind::Client, 2, 1, 0, 10, 1.0).dims(&dims[..layout.len() - 1]),
    ];
    let (mut o, sink, _) = op(&cfg);
    o.process_spans(&attr_batch(&cfg, &spans), NOW);
    o.advance(T0 + 10 * SEC);
    assert_eq!(
        sink.edges(),
        BTreeMap::from([
            (key("shop", "from-resource", "database"), (1.0, 0.0)),
            (key("shop", "from-span", "database"), (1.0, 0.0)),
        ])
    );
}

#[test]
fn expired_client_spans_with_a_peer_become_virtual_node_edges_and_the_rest_stay_unpaired() {
    let cfg = config();
    let (mut o, sink, reg) = op(&cfg);
    o.process_spans(&attr_batch(&cfg, &uninstrumented_set(&cfg)), NOW);
    o.advance(T0 + 10 * SEC);
    o.expire_pending(NOW + 9 * SEC);
    assert!(sink.unpaired().is_empty());
    assert_eq!(o.pending_len(), 6);
    o.expire_pending(NOW + 10 * SEC);
    assert_eq!(o.pending_len(), 0);
    // The window was emitted already (not purged): the virtual edges re-emit it.
    o.advance(T0 + 11 * SEC);
    assert_eq!(
        sink.edges(),
        BTreeMap::from([
            (key("shop", "inventory", ""), (1.0, 0.0)),
            (key("shop", "orders", "database"), (3.0, 1.0)),
            (key("shop", "queue", "virtual_node"), (1.0, 0.0)),
            (key("shop", "redis", "virtual_node"), (1.0, 0.0)),
            (key("shop", "stripe", "virtual_node"), (2.0, 1.0)),
            (key("user", "shop", "virtual_node"), (1.0, 0.0)),
            (key("user", "worker", "virtual_node"), (1.0, 0.0)),
        ])
    );
    // Only halves that name no peer are unpaired: each span is in one edge or unpaired once.
    assert_eq!(
        sink.unpaired(),
        BTreeMap::from([(key("", "inventory", ""), 1), (key("shop", "", ""), 1)])
    );
    assert_eq!(
        counter(&reg, "redwatch_service_graph_virtual_node_edges_total"),
        6.0
    );
    assert_eq!(
        counter(&reg, "redwatch_service_graph_edges_expired_total"),
        6.0
    );
    let total: f64 = sink.edges().values().map(|(r, _)| r).sum();
    let unpaired: u64 = sink.unpaired().values().sum();
    // 13 spans: the inventory pair is one edge of two spans, the rest one span each.
    assert_eq!(total as u64 + 1 + unpaired, 13);
    // A virtual server side records no latency, as in the Collector.
    let rows = sink.finals.lock().unwrap().clone();
    let stripe = rows
        .iter()
        .rev()
        .find(|r| &*r.edge.server == "stripe")
        .unwrap();
    assert!((stripe.total.client.sum_s - 0.03).abs() < 1e-9);
    assert_eq!(stripe.total.server.sum_s, 0.0);
    assert_eq!(stripe.edge.virtual_node, VirtualSide::None);
}

#[test]
fn the_virtual_node_label_names_the_virtual_side_when_asked() {
    let mut cfg = config();
    cfg.service_graph.virtual_node_extra_label = true;
    let (mut o, sink, _) = op(&cfg);
    o.process_spans(&attr_batch(&cfg, &uninstrumented_set(&cfg)), NOW);
    o.expire_pending(NOW + 10 * SEC);
    o.advance(T0 + 10 * SEC);
    let rows = sink.finals.lock().unwrap().clone();
    let side = |c: &str, s: &str| {
        rows.iter()
            .find(|r| &*r.edge.client == c && &*r.edge.server == s)
            .map(|r| r.edge.virtual_node)
    };
    assert_eq!(side("user", "shop"), Some(VirtualSide::Client));
    assert_eq!(side("shop", "stripe"), Some(VirtualSide::Server));
    assert_eq!(side("shop", "orders"), Some(VirtualSide::None));
    assert_eq!(side("shop", "inventory"), Some(VirtualSide::None));
}

#[test]
fn without_peer_attributes_there_are_no_virtual_nodes_and_without_database_attributes_no_database_edges(
) {
    let mut cfg = config();
    cfg.service_graph.virtual_node_peer_attributes = Vec::new();
    cfg.service_graph.database_name_attributes = Vec::new();
    let spans = uninstrumented_set(&cfg);
    assert_eq!(cfg.decode_dimensions().len(), 0);
    let (mut o, sink, reg) = op(&cfg);
    o.process_spans(&attr_batch(&cfg, &spans), NOW);
    o.expire_pending(NOW + 10 * SEC);
    o.advance(T0 + 10 * SEC);
    assert_eq!(
        sink.edges(),
        BTreeMap::from([(key("shop", "inventory", ""), (1.0, 0.0))])
    );
    // 8 shop client/producer halves and the orphan inventory server; the roots are not edges.
    assert_eq!(
        sink.unpaired(),
        BTreeMap::from([
            (key("", "inventory", ""), 1),
            (key("shop", "", ""), 7),
            (key("shop", "", "messaging_system"), 1),
        ])
    );
    assert_eq!(
        counter(&reg, "redwatch_service_graph_root_spans_total"),
        2.0
    );
    assert_eq!(
        counter(&reg, "redwatch_service_graph_virtual_node_edges_total"),
        0.0
    );
}
