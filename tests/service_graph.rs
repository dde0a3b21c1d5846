//! The service graph through a real engine: OTLP/gRPC in (server halves before client halves,
//! in separate requests), `traces_service_graph_*` on `/metrics` and the `service_graph` SQL
//! table out, with exact edge, failure and unpaired counts, database edges and virtual nodes
//! (peer attributes read by the decoder from span attributes).

mod common;

use common::*;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use std::time::Duration;

/// A span `call` of trace `trace` with `span` / `parent` ids (0 = none), lasting `ms`, ending at
/// `end`.
fn span(trace: u8, id: u8, parent: u8, kind: SpanKind, ms: u64, end: u64, error: bool) -> Span {
    let s = tree_span(trace, id, parent, "call", kind, ms, end);
    if error {
        failed(s)
    } else {
        s
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_failures_and_unpaired_spans_are_exact_on_metrics_and_in_sql() {
    let mut cfg = test_config();
    cfg.service_graph.wait = Duration::from_secs(1);
    let e = start(&cfg).await;
    let end = now_ns() - 50_000_000;
    // 4 traces: gateway CLIENT 1 -> api SERVER 2 -> api CLIENT 3 -> db-svc SERVER 4 (ERROR in
    // traces 1 and 2); api PRODUCER 5 -> worker CONSUMER 6. Plus a gateway CLIENT 7 in trace 9
    // whose server never arrives, and a root api SERVER (an edge from `user`). Uninstrumented
    // peers: a gateway CLIENT naming `peer.service=ext-payments` whose server never arrives (an
    // edge to that virtual node), and two api CLIENT spans to database `users` (one failed).
    let mut gateway = Vec::new();
    let mut api = Vec::new();
    let mut back = Vec::new();
    for t in 1..=4u8 {
        gateway.push(span(t, 1, 0, SpanKind::Client, 30, end, false));
        api.push(span(t, 2, 1, SpanKind::Server, 25, end - 1, false));
        api.push(span(t, 3, 2, SpanKind::Client, 10, end - 2, false));
        back.push(span(t, 4, 3, SpanKind::Server, 8, end - 3, t <= 2));
        api.push(span(t, 5, 2, SpanKind::Producer, 1, end - 4, false));
        back.push(span(t, 6, 5, SpanKind::Consumer, 3, end - 5, false));
    }
    gateway.push(span(9, 7, 0, SpanKind::Client, 5, end, false));
    api.push(span(10, 1, 0, SpanKind::Server, 5, end, false));
    gateway.push(with_attrs(
        span(11, 1, 0, SpanKind::Client, 7, end, false),
        &[("peer.service", "ext-payments"), ("http.method", "POST")],
    ));
    let pg = [("db.system", "postgresql"), ("db.name", "users")];
    api.push(with_attrs(
        span(12, 1, 0, SpanKind::Client, 2, end, false),
        &pg,
    ));
    api.push(with_attrs(
        span(13, 1, 0, SpanKind::Client, 4, end, true),
        &pg,
    ));
    // Server halves first, each service in its own request.
    let (db, worker): (Vec<Span>, Vec<Span>) = back
        .into_iter()
        .partition(|s| s.kind == SpanKind::Server as i32);
    for req in [
        request_of("db-svc", db),
        request_of("worker", worker),
        request_of("api", api),
        request_of("gateway", gateway),
    ] {
        grpc_export(&e, req).await.expect("export accepted");
    }
    wait_windows_final(&e).await;
    let edge = |c: &'static str, s: &'static str, ct: &'static str| {
        [("client", c), ("server", s), ("connection_type", ct)]
    };
    let gw = edge("gateway", "api", "");
    let db = edge("api", "db-svc", "");
    let mq = edge("api", "worker", "messaging_system");
    let unpaired = edge("gateway", "", "");
    let ext = edge("gateway", "ext-payments", "virtual_node");
    let users = edge("api", "users", "database");
    let user = edge("user", "api", "virtual_node");
    wait_until(DEADLINE, "the lonely client spans expire", || async {
        let m = scrape(&e).await;
        m.get("traces_service_graph_unpaired_spans_total", &unpaired) == Some(1.0)
            && m.get("traces_service_graph_request_total", &ext) == Some(1.0)
    })
    .await;
    let m = scrape(&e).await;
    assert_eq!(m.value("traces_service_graph_request_total", &gw), 4.0);
    assert_eq!(
        m.value("traces_service_graph_request_failed_total", &gw),
        0.0
    );
    assert_eq!(m.value("traces_service_graph_request_total", &db), 4.0);
    assert_eq!(
        m.value("traces_service_graph_request_failed_total", &db),
        2.0
    );
    assert_eq!(m.value("traces_service_graph_request_total", &mq), 4.0);
    assert_eq!(m.value("traces_service_graph_request_total", &users), 2.0);
    assert_eq!(
        m.value("traces_service_graph_request_failed_total", &users),
        1.0
    );
    assert_eq!(m.value("traces_service_graph_request_total", &user), 1.0);
    assert_eq!(
        m.value("traces_service_graph_request_failed_total", &ext),
        0.0
    );
    assert_eq!(m.sum("traces_service_graph_request_total"), 16.0);
    assert_eq!(m.sum("traces_service_graph_unpaired_spans_total"), 1.0);
    assert_eq!(
        m.value("traces_service_graph_request_client_seconds_count", &gw),
        4.0
    );
    let mut le = gw.to_vec();
    le.push(("le", "0.05"));
    assert_eq!(
        m.value("traces_service_graph_request_client_seconds_bucket", &le),
        4.0
    );
    assert_eq!(m.value("redwatch_service_graph_root_spans_total", &[]), 1.0);
    assert_eq!(
        m.value("redwatch_service_graph_database_edges_total", &[]),
        2.0
    );
    assert_eq!(
        m.value("redwatch_service_graph_virtual_node_edges_total", &[]),
        2.0
    );

    let rows = sql_rows(
        &e,
        "SELECT client, server, connection_type, sum(requests) AS requests, sum(failed) AS failed \
         FROM service_graph WHERE is_final GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    .await;
    let got: Vec<(String, String, String, f64, f64)> = rows
        .iter()
        .map(|r| {
            (
                r["client"].as_str().unwrap_or_default().to_string(),
                r["server"].as_str().unwrap_or_default().to_string(),
                r["connection_type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                r["requests"].as_f64().unwrap_or(-1.0),
                r["failed"].as_f64().unwrap_or(-1.0),
            )
        })
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        got,
        vec![
            (s("api"), s("db-svc"), s(""), 4.0, 2.0),
            (s("api"), s("users"), s("database"), 2.0, 1.0),
            (s("api"), s("worker"), s("messaging_system"), 4.0, 0.0),
            (s("gateway"), s("api"), s(""), 4.0, 0.0),
            (s("gateway"), s("ext-payments"), s("virtual_node"), 1.0, 0.0),
            (s("user"), s("api"), s("virtual_node"), 1.0, 0.0),
        ]
    );
    e.shutdown().await;
}
