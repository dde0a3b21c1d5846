//! Session windows through a real engine: OTLP/gRPC spans of known traces in (each service in
//! its own request), the `sessions` SQL table out — sessions per trace id and per a span
//! attribute (`enduser.id`), with exact span and error counts, services, root span names, and
//! a trace whose two bursts are further apart than the gap (two sessions).

mod common;

use common::*;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use redwatch::config::{Dimension, DimensionSource, ExtraWindow, SessionKey};
use std::time::Duration;

const MS: u64 = 1_000_000;

/// A SERVER span of trace `[trace; 16]` with span id `id` (parent 0 = a root span), lasting `ms`
/// and ending at `end`.
fn span(trace: u8, id: u8, parent: u8, name: &str, ms: u64, end: u64) -> Span {
    tree_span(trace, id, parent, name, SpanKind::Server, ms, end)
}

/// `span` with the `enduser.id` attribute.
fn of_user(s: Span, user: &str) -> Span {
    with_attrs(s, &[("enduser.id", user)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_known_traces_and_users_are_exact_in_sql() {
    let mut cfg = test_config();
    cfg.service_graph.enabled = false;
    let gap = Some(Duration::from_secs(2));
    cfg.windows.extra = vec![
        ExtraWindow {
            gap,
            key: Some(SessionKey::Name("trace_id".into())),
            ..Default::default()
        },
        ExtraWindow {
            gap,
            key: Some(SessionKey::Attribute(Dimension {
                name: "enduser.id".into(),
                default: None,
                source: DimensionSource::Span,
            })),
            ..Default::default()
        },
    ];
    let e = start(&cfg).await;
    let end = now_ns() - 100 * MS;
    // Trace a1: gateway (root, alice) -> api -> db (ERROR). Trace b2: two spans 4 s apart (two
    // sessions with a 2 s gap). Trace c3: one root span of alice 500 ms after trace a1.
    let a = 0xa1;
    let gateway = vec![
        of_user(span(a, 1, 0, "GET /checkout", 300, end - 500 * MS), "alice"),
        of_user(span(0xc3, 1, 0, "GET /home", 20, end), "alice"),
    ];
    let api = vec![
        span(a, 2, 1, "POST /orders", 200, end - 510 * MS),
        span(0xb2, 1, 0, "GET /health", 1, end - 4000 * MS),
        span(0xb2, 2, 0, "GET /health", 1, end),
    ];
    let db = vec![failed(span(a, 3, 2, "INSERT orders", 50, end - 520 * MS))];
    for req in [
        request_of("gateway", gateway),
        request_of("api", api),
        request_of("db", db),
    ] {
        grpc_export(&e, req).await.expect("export accepted");
    }
    let q =
        "SELECT session_key, gap, key_value, session_id, spans, errors, duration_ms, services, \
             services_truncated, root_span_name, session_start, session_end, is_final \
             FROM sessions WHERE is_final ORDER BY session_key, key_value, session_start";
    wait_until(DEADLINE, "every session is final in SQL", || async {
        sql_rows(&e, q).await.len() == 5
    })
    .await;
    let rows = sql_rows(&e, q).await;
    let got: Vec<(String, String, f64, f64, Vec<String>, String)> = rows
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or("<null>").to_string();
            let services = r["services"]
                .as_array()
                .map(|v| {
                    v.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            (
                s("session_key"),
                s("key_value"),
                r["spans"].as_f64().unwrap_or(-1.0),
                r["errors"].as_f64().unwrap_or(-1.0),
                services,
                s("root_span_name"),
            )
        })
        .collect();
    let st = |x: &str| x.to_string();
    let hex = |b: u8| format!("{b:02x}").repeat(16);
    assert_eq!(
        got,
        vec![
            (
                st("enduser.id"),
                st("alice"),
                2.0,
                0.0,
                vec![st("gateway")],
                st("GET /checkout")
            ),
            (
                st("trace_id"),
                hex(0xa1),
                3.0,
                1.0,
                vec![st("gateway"), st("api"), st("db")],
                st("GET /checkout")
            ),
            (
                st("trace_id"),
                hex(0xb2),
                1.0,
                0.0,
                vec![st("api")],
                st("GET /health")
            ),
            (
                st("trace_id"),
                hex(0xb2),
                1.0,
                0.0,
                vec![st("api")],
                st("GET /health")
            ),
            (
                st("trace_id"),
                hex(0xc3),
                1.0,
                0.0,
                vec![st("gateway")],
                st("GET /home")
            ),
        ]
    );
    // Trace a1: from the gateway span's start to its end, 300 ms; its session ends 2 s after
    // its last span.
    assert_eq!(rows[1]["duration_ms"].as_f64(), Some(300.0));
    assert_eq!(rows[1]["gap"].as_str(), Some("2s"));
    assert_eq!(rows[1]["services_truncated"].as_bool(), Some(false));
    let ts = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    assert!(
        ts(&rows[2]["session_end"]) < ts(&rows[3]["session_start"]),
        "{rows:?}"
    );
    let ids: std::collections::BTreeSet<u64> = rows
        .iter()
        .filter_map(|r| r["session_id"].as_u64())
        .collect();
    assert_eq!(ids.len(), 5, "session ids are unique: {rows:?}");
    // Spans without enduser.id are counted, not sessionized; nothing was late.
    let m = scrape(&e).await;
    assert_eq!(
        m.value(
            "redwatch_sessions_spans_without_key_total",
            &[("key", "enduser.id"), ("gap", "2s")]
        ),
        4.0
    );
    assert_eq!(
        m.value("redwatch_late_dropped_total", &[("signal", "sessions")]),
        0.0
    );
    // An aggregate over sessions: per key, sessions and spans.
    let agg = sql_rows(
        &e,
        "SELECT session_key, count(*) AS n, sum(spans) AS spans FROM sessions \
         WHERE is_final GROUP BY session_key ORDER BY session_key",
    )
    .await;
    assert_eq!(agg[0]["n"].as_i64(), Some(1));
    assert_eq!(agg[1]["n"].as_i64(), Some(4));
    assert_eq!(agg[1]["spans"].as_f64(), Some(6.0));
    e.shutdown().await;
}
