//! Continuous queries: a configured query runs on every closed window; its rows land in
//! `continuous_results` and its numeric columns in `redwatch_continuous_<name>` gauges.

mod common;

use common::*;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use redwatch::config::ContinuousQuery;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_query_runs_per_closed_window_into_table_and_gauges() {
    let mut cfg = test_config();
    cfg.sql.continuous = vec![ContinuousQuery {
        name: "svc_errors".into(),
        query: "SELECT service_name, sum(errors) AS errors, sum(calls) AS calls FROM red \
                WHERE window_start = $window_start AND is_final GROUP BY service_name"
            .into(),
    }];
    let e = start(&cfg).await;
    // One window's worth: 6 calls, 2 of them errors, all ending in the same 1 s window.
    let end = now_ns();
    let end = end - end % 1_000_000_000 + 500_000_000;
    let spans: Vec<SpanSpec> = (0..6)
        .map(|i| {
            let s = SpanSpec::new("GET /cq").end(end.min(now_ns()));
            if i < 2 {
                s.status(StatusCode::Error)
            } else {
                s
            }
        })
        .collect();
    grpc_export(&e, trace_request(Some("cq-service"), &spans))
        .await
        .expect("export accepted");
    wait_until(DEADLINE, "the continuous query stored its row", || async {
        let v = sql_answer(
            &e,
            "SELECT columns FROM continuous_results WHERE name = 'svc_errors'",
        )
        .await;
        v["rows"].as_array().is_some_and(|r| !r.is_empty())
    })
    .await;
    let v = sql_answer(
        &e,
        "SELECT columns FROM continuous_results WHERE name = 'svc_errors'",
    )
    .await;
    let row: serde_json::Value = serde_json::from_str(
        v["rows"][0]["columns"]
            .as_str()
            .expect("columns is JSON text"),
    )
    .unwrap();
    assert_eq!(row["service_name"], "cq-service");
    assert_eq!(row["errors"], 2.0);
    assert_eq!(row["calls"], 6.0);
    let gauge = |column: &str| {
        e.registry.value(
            "redwatch_continuous_svc_errors",
            &[("column", column), ("service_name", "cq-service")],
        )
    };
    assert_eq!(gauge("calls"), 6.0);
    assert_eq!(gauge("errors"), 2.0);
    assert_eq!(
        e.registry.value(
            "redwatch_continuous_runs_total",
            &[("query", "svc_errors"), ("outcome", "error")]
        ),
        0.0
    );
    e.shutdown().await;
}
