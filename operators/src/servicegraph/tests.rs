//! Service graph tests over a known multi-service trace set: exact edge and failure counts,
//! unpaired spans, expiry, out-of-order arrival, bounds.

use super::*;
use crate::layout::SpanSections;
use redwatch_engine::config::{Dimension, DimensionSource};
use redwatch_engine::fixtures::{span_batch, SpanFixture};
use redwatch_engine::model::{SourceId, SpanKind, StatusCode};
use redwatch_engine::telemetry::Registry;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

const SEC: u64 = 1_000_000_000;
/// Event time of the test data: the start of a 10 s window.
const T0: u64 = 1_700_000_000 * SEC;
/// Wall clock of the tests.
const NOW: u64 = T0 + 20 * SEC;

#[derive(Default)]
struct Collect {
    finals: Mutex<Vec<EdgeRow>>,
    provisional: Mutex<Vec<EdgeRow>>,
    unpaired: Mutex<BTreeMap<(String, String, &'static str), u64>>,
    expired: Mutex<Vec<Arc<EdgeKey>>>,
}

impl ServiceGraphSink for Collect {
    fn on_final(&self, rows: &[EdgeRow]) {
        self.finals.lock().unwrap().extend_from_slice(rows);
    }
    fn on_provisional(&self, _size: u64, rows: &[EdgeRow]) {
        *self.provisional.lock().unwrap() = rows.to_vec();
    }
    fn on_unpaired(&self, u: &[Unpaired]) {
        let mut m = self.unpaired.lock().unwrap();
        for x in u {
            let k = (
                x.edge.client.to_string(),
                x.edge.server.to_string(),
                x.edge.connection_type.as_label(),
            );
            *m.entry(k).or_insert(0) += x.spans;
        }
    }
    fn on_series_expired(&self, edges: &[Arc<EdgeKey>]) {
        self.expired.lock().unwrap().extend_from_slice(edges);
    }
}

impl Collect {
    /// Final rows summed per (client, server, connection type): (requests, failed).
    fn edges(&self) -> BTreeMap<(String, String, &'static str), (f64, f64)> {
        let mut m = BTreeMap::new();
        for r in self.finals.lock().unwrap().iter() {
            let d = r.delta.as_ref().unwrap();
            let e = m
                .entry((
                    r.edge.client.to_string(),
                    r.edge.server.to_string(),
                    r.edge.connection_type.as_label(),
                ))
                .or_insert((0.0, 0.0));
            e.0 += d.requests;
            e.1 += d.failed;
        }
        m
    }

    fn unpaired(&self) -> BTreeMap<(String, String, &'static str), u64> {
        self.unpaired.lock().unwrap().clone()
    }
}

fn config() -> SpanSections {
    let mut c = SpanSections::default();
    c.windows.size = Duration::from_secs(10);
    c.windows.allowed_lateness = Duration::from_secs(30);
    c.service_graph.wait = Duration::from_secs(10);
    c
}

fn op(cfg: &SpanSections) -> (ServiceGraphOperator, Arc<Collect>, Arc<Registry>) {
    let sink = Arc::new(Collect::default());
    let reg = Registry::new();
    let o = ServiceGraphOperator::new(
        &cfg.windows,
        &cfg.red,
        &cfg.service_graph,
        vec![sink.clone()],
        &reg,
    );
    (o, sink, reg)
}

fn tid(n: u8) -> [u8; 16] {
    [n; 16]
}

fn sid(n: u8) -> [u8; 8] {
    [0, 0, 0, 0, 0, 0, 0, n]
}

/// A span of `service` with kind, ids and duration, ending `end_ms` after `T0`.
fn sp(
    service: &str,
    kind: SpanKind,
    trace: u8,
    span: u8,
    parent: u8,
    end_ms: u64,
    dur_ms: f64,
) -> SpanFixture {
    let parent = if parent == 0 { [0; 8] } else { sid(parent) };
    SpanFixture::new(service, "op", T0 + end_ms * 1_000_000, dur_ms)
        .kind(kind)
        .ids(tid(trace), sid(span), parent)
}

fn batch(spans: &[SpanFixture]) -> redwatch_engine::model::SpanBatch {
    span_batch(SourceId(0), 0, spans)
}

fn counter(reg: &Registry, name: &str) -> f64 {
    let mut v = 0.0;
    reg.visit(|n, _, _, samples| {
        if n == name {
            v = samples.iter().map(|s| s.value).sum();
        }
    });
    v
}

/// Three traces over four services plus a queue:
///
/// - trace 1: frontend (root SERVER 1: an edge from `user`) → CLIENT 2 → cart SERVER 3 → CLIENT 4 → payments
///   SERVER 5 (ERROR)
/// - trace 2: frontend CLIENT 2 → cart SERVER 3; checkout PRODUCER 6 → email CONSUMER 7
/// - trace 3: frontend CLIENT 2 (ERROR) → cart SERVER 3; frontend CLIENT 8 whose server is
///   never seen; cart SERVER 9 whose client (parent 10) is never seen; an INTERNAL span
fn trace_set() -> Vec<SpanFixture> {
    use SpanKind::*;
    vec![
        sp("frontend", Server, 1, 1, 0, 100, 90.0),
        sp("frontend", Client, 1, 2, 1, 95, 80.0),
        sp("cart", Server, 1, 3, 2, 90, 70.0),
        sp("cart", Client, 1, 4, 3, 85, 30.0),
        sp("payments", Server, 1, 5, 4, 84, 25.0).status(StatusCode::Error),
        sp("frontend", Client, 2, 2, 1, 200, 40.0),
        sp("cart", Server, 2, 3, 2, 199, 35.0),
        sp("checkout", Producer, 2, 6, 3, 150, 1.0),
        sp("email", Consumer, 2, 7, 6, 400, 200.0),
        sp("frontend", Client, 3, 2, 1, 300, 40.0).status(StatusCode::Error),
        sp("cart", Server, 3, 3, 2, 299, 35.0),
        sp("frontend", Client, 3, 8, 1, 300, 5.0),
        sp("cart", Server, 3, 9, 10, 310, 5.0),
        sp("cart", Internal, 3, 11, 9, 305, 1.0),
    ]
}

fn key(c: &str, s: &str, ct: &'static str) -> (String, String, &'static str) {
    (c.to_string(), s.to_string(), ct)
}

#[test]
fn known_trace_set_gives_exact_edges_failures_and_unpaired_counts() {
    let cfg = config();
    let (mut o, sink, reg) = op(&cfg);
    o.process_spans(&batch(&trace_set()), NOW);
    assert_eq!(o.pending_len(), 2, "the two halves without a partner wait");
    o.advance(T0 + 10 * SEC);
    // The root frontend SERVER span is an edge from the virtual client `user`.
    let want = BTreeMap::from([
        (key("cart", "payments", ""), (1.0, 1.0)),
        (key("checkout", "email", "messaging_system"), (1.0, 0.0)),
        (key("frontend", "cart", ""), (3.0, 1.0)),
        (key("user", "frontend", "virtual_node"), (1.0, 0.0)),
    ]);
    assert_eq!(sink.edges(), want);
    assert_eq!(
        counter(&reg, "redwatch_service_graph_edges_paired_total"),
        5.0
    );
    assert_eq!(
        counter(&reg, "redwatch_service_graph_root_spans_total"),
        1.0
    );
    // Not yet expired.
    o.expire_pending(NOW + 9 * SEC);
    assert!(sink.unpaired().is_empty());
    o.expire_pending(NOW + 10 * SEC);
    assert_eq!(
        sink.unpaired(),
        BTreeMap::from([(key("", "cart", ""), 1), (key("frontend", "", ""), 1)])
    );
    assert_eq!(o.pending_len(), 0);
    assert_eq!(
        counter(&reg, "redwatch_service_graph_edges_expired_total"),
        2.0
    );
}

#[test]
fn latencies_land_in_the_collector_buckets_in_seconds() {
    let cfg = config();
    let (mut o, sink, _) = op(&cfg);
    o.process_spans(
        &batch(&[
            sp("a", SpanKind::Client, 1, 1, 0, 100, 30.0),
            sp("b", SpanKind::Server, 1, 2, 1, 99, 7.0),
        ]),
        NOW,
    );
    o.advance(T0 + 10 * SEC);
    let rows = sink.finals.lock().unwrap().clone();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!((r.start, r.end), (T0, T0 + 10 * SEC));
    assert!(r.is_final);
    let n = o.bounds().len();
    assert_eq!(n, 16);
    // 30 ms: first bound >= 0.03 is 0.05 (index 5); 7 ms: 0.008 (index 3).
    let mut want_client = vec![0.0; n + 1];
    want_client[5] = 1.0;
    let mut want_server = vec![0.0; n + 1];
    want_server[3] = 1.0;
    assert_eq!(r.total.client.buckets.dense(n), want_client);
    assert_eq!(r.total.server.buckets.dense(n), want_server);
    assert!((r.total.client.sum_s - 0.03).abs() < 1e-9);
    assert!((r.total.server.sum_s - 0.007).abs() < 1e-9);
    let p99 = r.total.client.quantile_ms(0.99).unwrap();
    assert!((p99 - 30.0).abs() <= 0.3, "{p99}");
}

#[test]
fn server_before_client_pairs_across_batches() {
    let cfg = config();
    let (mut o, sink, _) = op(&cfg);
    // Out of order: the server span arrives first, in its own batch.
    o.process_spans(
        &batch(&[sp("cart", SpanKind::Server, 7, 3, 2, 90, 70.0)]),
        NOW,
    );
    assert_eq!(o.pending_len(), 1);
    o.process_spans(
        &batch(&[sp("frontend", SpanKind::Client, 7, 2, 1, 95, 80.0)]),
        NOW + 3 * SEC,
    );
    assert_eq!(o.pending_len(), 0);
    o.advance(T0 + 10 * SEC);
    assert_eq!(
        sink.edges(),
        BTreeMap::from([(key("frontend", "cart", ""), (1.0, 0.0))])
    );
    o.expire_pending(NOW + 60 * SEC);
    assert!(sink.unpaired().is_empty());
}

#[test]
fn a_partner_arriving_after_the_wait_finds_nothing_and_both_count_as_unpaired() {
    let cfg = config();
    let (mut o, sink, _) = op(&cfg);
    o.process_spans(
        &batch(&[sp("cart", SpanKind::Server, 7, 3, 2, 90, 7.0)]),
        NOW,
    );
    o.expire_pending(NOW + 10 * SEC);
    assert_eq!(sink.unpaired(), BTreeMap::from([(key("", "cart", ""), 1)]));
    o.process_spans(
        &batch(&[sp("frontend", SpanKind::Client, 7, 2, 1, 95, 8.0)]),
        NOW + 11 * SEC,
    );
    assert_eq!(o.pending_len(), 1);
    o.expire_pending(NOW + 21 * SEC);
    assert_eq!(
        sink.unpaired(),
        BTreeMap::from([(key("", "cart", ""), 1), (key("frontend", "", ""), 1)])
    );
    o.advance(T0 + 100 * SEC);
    assert!(sink.edges().is_empty());
}

#[test]
fn a_repeated_half_replaces_the_waiting_one_and_pairs_once() {
    let cfg = config();
    let (mut o, sink, _) = op(&cfg);
    o.process_spans(
        &batch(&[
            sp("a", SpanKind::Client, 1, 1, 0, 10, 1.0),
            sp("a2", SpanKind::Client, 1, 1, 0, 10, 1.0).status(StatusCode::Error),
            sp("b", SpanKind::Server, 1, 2, 1, 9, 1.0),
            sp("b", SpanKind::Server, 1, 2, 1, 9, 1.0),
        ]),
        NOW,
    );
    // The second server span is a new half (its client already left with the first).
    assert_eq!(o.pending_len(), 1);
    o.advance(T0 + 10 * SEC);
    assert_eq!(
        sink.edges(),
        BTreeMap::from([(key("a2", "b", ""), (1.0, 1.0))])
    );
    o.expire_pending(NOW + 60 * SEC);
    assert_eq!(sink.unpaired(), BTreeMap::from([(key("", "b", ""), 1)]));
}

#[test]
fn pending_edges_are_bounded_and_overflow_is_counted() {
    let mut cfg = config();
    cfg.service_graph.max_items = 2;
    let (mut o, sink, reg) = op(&cfg);
    o.process_spans(
        &batch(&[
            sp("a", SpanKind::Client, 1, 1, 0, 10, 1.0),
            sp("a", SpanKind::Client, 2, 1, 0, 10, 1.0),
            sp("a", SpanKind::Client, 3, 1, 0, 10, 1.0),
            // The partner of a waiting edge still pairs when the store is full.
            sp("b", SpanKind::Server, 1, 2, 1, 9, 1.0),
        ]),
        NOW,
    );
    assert_eq!(
        counter(&reg, "redwatch_service_graph_dropped_spans_total"),
        1.0
    );
    assert_eq!(o.pending_len(), 1);
    o.advance(T0 + 10 * SEC);
    assert_eq!(
        sink.edges(),
        BTreeMap::from([(key("a", "b", ""), (1.0, 0.0))])
    );
}

#[test]
fn edges_past_the_cardinality_limit_fold_into_the_overflow_edge() {
    let mut cfg = config();
    cfg.service_graph.cardinality_limit = 1;
    let (mut o, sink, reg) = op(&cfg);
    o.process_spans(
        &batch(&[
            sp("a", SpanKind::Client, 1, 1, 0, 10, 1.0),
            sp("b", SpanKind::Server, 1, 2, 1, 9, 1.0),
            sp("a", SpanKind::Client, 2, 1, 0, 10, 1.0),
            sp("c", SpanKind::Server, 2, 2, 1, 9, 1.0),
        ]),
        NOW,
    );
    o.advance(T0 + 10 * SEC);
    let rows = sink.finals.lock().unwrap().clone();
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .any(|r| r.edge.overflow && r.total.requests == 1.0));
    assert_eq!(
        counter(&reg, "redwatch_service_graph_overflow_requests_total"),
        1.0
    );
}

#[test]
fn late_partner_updates_an_emitted_window_with_its_delta() {
    let cfg = config();
    let (mut o, sink, reg) = op(&cfg);
    o.process_spans(
        &batch(&[
            sp("a", SpanKind::Client, 1, 1, 0, 10, 1.0),
            sp("b", SpanKind::Server, 1, 2, 1, 9, 1.0),
            sp("a", SpanKind::Client, 2, 1, 0, 20, 1.0),
        ]),
        NOW,
    );
    o.publish_provisional();
    assert_eq!(sink.provisional.lock().unwrap().len(), 1);
    o.advance(T0 + 10 * SEC);
    // The second server span arrives after its window was emitted (within lateness).
    o.process_spans(&batch(&[sp("b", SpanKind::Server, 2, 2, 1, 19, 1.0)]), NOW);
    o.advance(T0 + 11 * SEC);
    let rows = sink.finals.lock().unwrap().clone();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].total.requests, 2.0);
    assert_eq!(rows[1].delta.as_ref().unwrap().requests, 1.0);
    assert_eq!(sink.edges()[&key("a", "b", "")], (2.0, 0.0));
    // Once purged, a pair for that window is dropped and counted as late.
    o.advance(T0 + 100 * SEC);
    o.process_spans(
        &batch(&[
            sp("a", SpanKind::Client, 3, 1, 0, 10, 1.0),
            sp("b", SpanKind::Server, 3, 2, 1, 9, 1.0),
        ]),
        NOW,
    );
    assert_eq!(sink.edges()[&key("a", "b", "")], (2.0, 0.0));
    assert_eq!(counter(&reg, "redwatch_late_dropped_total"), 1.0);
}

#[test]
fn sampling_weights_scale_requests() {
    let cfg = config();
    let (mut o, sink, _) = op(&cfg);
    o.process_spans(
        &batch(&[
            sp("a", SpanKind::Client, 1, 1, 0, 10, 1.0)
                .weight(4.0)
                .status(StatusCode::Error),
            sp("b", SpanKind::Server, 1, 2, 1, 9, 1.0).weight(4.0),
        ]),
        NOW,
    );
    o.advance(T0 + 10 * SEC);
    assert_eq!(sink.edges()[&key("a", "b", "")], (4.0, 4.0));
}

#[test]
fn edge_dimensions_come_from_each_side_after_the_red_dimensions() {
    let mut cfg = config();
    let d = |name: &str, default: Option<&str>| Dimension {
        name: name.into(),
        default: default.map(str::to_string),
        source: DimensionSource::Any,
    };
    cfg.red.dimensions = vec![d("http.method", None)];
    cfg.service_graph.dimensions = vec![d("deployment.environment", Some("none"))];
    let (mut o, sink, _) = op(&cfg);
    let b = span_batch(
        SourceId(0),
        2,
        &[
            sp("a", SpanKind::Client, 1, 1, 0, 10, 1.0).dims(&[Some("GET"), Some("prod")]),
            sp("b", SpanKind::Server, 1, 2, 1, 9, 1.0).dims(&[Some("GET"), None]),
        ],
    );
    o.process_spans(&b, NOW);
    o.advance(T0 + 10 * SEC);
    let rows = sink.finals.lock().unwrap().clone();
    let dims: Vec<&str> = rows[0].edge.dims.iter().map(|d| &**d).collect();
    assert_eq!(dims, ["prod", "none"]);
}

#[test]
fn idle_edges_expire_from_the_series() {
    let mut cfg = config();
    cfg.service_graph.series_expiry = Duration::from_secs(60);
    let (mut o, sink, _) = op(&cfg);
    o.process_spans(
        &batch(&[
            sp("a", SpanKind::Client, 1, 1, 0, 10, 1.0),
            sp("b", SpanKind::Server, 1, 2, 1, 9, 1.0),
        ]),
        NOW,
    );
    o.advance(T0 + 100 * SEC);
    o.expire_series(NOW + 30 * SEC, T0 + 100 * SEC);
    assert!(sink.expired.lock().unwrap().is_empty());
    o.expire_series(NOW + 61 * SEC, T0 + 100 * SEC);
    assert_eq!(sink.expired.lock().unwrap().len(), 1);
}

/// Database edges and virtual nodes.
mod virtual_nodes;

mod arrival_order {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever order and batching the spans of a trace set arrive in (within the wait),
        /// the edges, failures and unpaired counts are the same.
        #[test]
        fn edges_do_not_depend_on_arrival_order(
            keys in proptest::collection::vec(any::<u64>(), 14),
            cuts in proptest::collection::vec(0usize..14, 0..5),
        ) {
            let mut spans = trace_set();
            // Shuffle by sorting on random keys.
            let mut keyed: Vec<(u64, SpanFixture)> = keys.into_iter().zip(spans.drain(..)).collect();
            keyed.sort_by_key(|(k, _)| *k);
            let spans: Vec<SpanFixture> = keyed.into_iter().map(|(_, s)| s).collect();
            let mut cuts = cuts;
            cuts.push(spans.len());
            cuts.sort_unstable();
            let cfg = config();
            let (mut o, sink, _) = op(&cfg);
            let mut from = 0;
            for (i, to) in cuts.into_iter().enumerate() {
                if to > from {
                    o.process_spans(&batch(&spans[from..to]), NOW + i as u64 * SEC);
                    from = to;
                }
            }
            o.advance(T0 + 10 * SEC);
            o.expire_pending(NOW + 100 * SEC);
            let want = BTreeMap::from([
                (key("cart", "payments", ""), (1.0, 1.0)),
                (key("checkout", "email", "messaging_system"), (1.0, 0.0)),
                (key("frontend", "cart", ""), (3.0, 1.0)),
                (key("user", "frontend", "virtual_node"), (1.0, 0.0)),
            ]);
            prop_assert_eq!(sink.edges(), want);
            prop_assert_eq!(
                sink.unpaired(),
                BTreeMap::from([(key("", "cart", ""), 1), (key("frontend", "", ""), 1)])
            );
        }
    }
}

#[test]
fn a_borrowed_edge_hashes_and_compares_like_its_owned_key() {
    use super::EdgeRef;
    use hashbrown::{DefaultHashBuilder, Equivalent};
    use std::hash::BuildHasher;
    let h = DefaultHashBuilder::default();
    let s = |v: &str| -> Arc<str> { Arc::from(v) };
    let (a, b) = (s("checkout"), s("payments"));
    let (client_dims, server_dims) = ([s("eu")], [s("")]);
    let r = EdgeRef {
        client: &a,
        server: &b,
        connection_type: ConnectionType::Direct,
        virtual_node: VirtualSide::None,
        client_dims: &client_dims,
        server_dims: &server_dims,
    };
    let k = r.to_key();
    assert_eq!(*k.dims, [s("eu"), s("")]);
    assert_eq!(h.hash_one(r), h.hash_one(&k));
    assert!(r.equivalent(&k));
    // Equal strings in other allocations are the same edge.
    let a2 = s("checkout");
    let same = EdgeRef { client: &a2, ..r };
    assert!(same.equivalent(&k));
    assert_eq!(h.hash_one(same), h.hash_one(&k));
    // Any part that differs is another edge.
    let other_dims = [s("us")];
    for other in [
        EdgeRef { server: &a, ..r },
        EdgeRef {
            connection_type: ConnectionType::MessagingSystem,
            ..r
        },
        EdgeRef {
            virtual_node: VirtualSide::Client,
            ..r
        },
        EdgeRef {
            client_dims: &other_dims,
            ..r
        },
    ] {
        assert!(!other.equivalent(&k), "{other:?}");
    }
    let overflow = EdgeKey {
        overflow: true,
        ..k.clone()
    };
    assert!(!r.equivalent(&overflow));
    assert_ne!(h.hash_one(&overflow), h.hash_one(&k));
}
