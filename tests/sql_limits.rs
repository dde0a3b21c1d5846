//! The SQL HTTP API's bounds end to end, on a real engine over real HTTP: string functions that
//! would build gigabytes are refused before they run (and the process does not grow), results
//! are capped in bytes, and requests a foreign web page could send through a browser (wrong
//! content type, a rebound `Host`, a cross-origin `Origin`) are refused. Every refusal is
//! counted by its code, and the API answers normally afterwards.

mod common;

use common::*;
use redwatch::server::Engine;

struct Reply {
    status: u16,
    body: serde_json::Value,
}

async fn post(e: &Engine, headers: &[(&str, &str)], body: String) -> Reply {
    let url = format!("http://{}/api/v1/sql", e.addrs["sql_http"]);
    let mut req = reqwest::Client::new().post(url).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("SQL API reachable");
    let status = r.status().as_u16();
    let bytes = r.bytes().await.expect("answer body");
    Reply {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    }
}

async fn query(e: &Engine, sql: &str) -> Reply {
    post(
        e,
        &[("content-type", "application/json")],
        serde_json::json!({ "query": sql }).to_string(),
    )
    .await
}

fn failed(e: &Engine, code: &str) -> f64 {
    e.registry
        .value("redwatch_sql_queries_failed_total", &[("code", code)])
}

/// The process's peak resident set (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM in /proc/self/status")
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amplifying_functions_and_big_results_are_refused_without_growing_memory() {
    let mut cfg = test_config();
    cfg.sql.max_result_bytes = serde_json::from_value(serde_json::json!("1MiB")).expect("size");
    let e = start(&cfg).await;
    let before = peak_rss();

    // 8 at once, each asking for 8 000 rows of 262 000 bytes (2 GB per query).
    let amplifying = "SELECT repeat('x', 262000) AS s FROM generate_series(1, 8000)";
    let replies = futures::future::join_all((0..8).map(|_| query(&e, amplifying))).await;
    for r in &replies {
        assert_eq!(r.status, 413, "{}", r.body);
        assert_eq!(r.body["error"]["code"], "memory_limit", "{}", r.body);
        let msg = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("repeat()"), "{msg}");
    }
    assert_eq!(failed(&e, "memory_limit"), 8.0);
    // lpad with a column count is checked per row as well.
    let r = query(
        &e,
        "SELECT lpad('x', value * 1000000) FROM generate_series(1, 1000)",
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(failed(&e, "memory_limit"), 9.0);
    let grown = peak_rss().saturating_sub(before);
    assert!(
        grown < 256 << 20,
        "peak RSS grew by {grown} bytes while refusing the amplifying queries"
    );

    // Small calls of the same functions still work.
    let r = query(&e, "SELECT repeat('ab', 3) AS s, lpad('7', 3, '0') AS p").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["rows"][0]["s"], "ababab");
    assert_eq!(r.body["rows"][0]["p"], "007");

    // 5 000 rows of 1 000 bytes fit the memory limit but not max_result_bytes (1 MiB).
    let r = query(
        &e,
        "SELECT repeat('x', 1000) AS s FROM generate_series(1, 5000)",
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "result_too_large");
    let msg = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("max_result_bytes"), "{msg}");
    assert_eq!(failed(&e, "result_too_large"), 1.0);

    let r = query(&e, "SELECT count(*) AS n FROM generate_series(1, 10)").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["rows"][0]["n"], 10);
    e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_foreign_web_page_could_send_are_refused_and_counted() {
    let cfg = test_config();
    let e = start(&cfg).await;
    let body = serde_json::json!({ "query": "SELECT 1 AS one" }).to_string();

    // A cross-site form or a "simple" fetch can only send these content types.
    for ct in ["text/plain", "application/x-www-form-urlencoded"] {
        let r = post(&e, &[("content-type", ct)], body.clone()).await;
        assert_eq!(r.status, 415, "{ct}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "unsupported_media_type");
    }
    // DNS rebinding: the request reaches 127.0.0.1 under the attacker's name.
    let r = post(
        &e,
        &[
            ("content-type", "application/json"),
            ("host", "evil.example:7070"),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "forbidden_host");
    let r = post(
        &e,
        &[
            ("content-type", "application/json"),
            ("origin", "https://evil.example"),
        ],
        body.clone(),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "forbidden_origin");
    assert_eq!(failed(&e, "forbidden"), 4.0);

    // The same query as JSON from a local client (reqwest sends Host: 127.0.0.1:port).
    let r = post(&e, &[("content-type", "application/json")], body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["rows"][0]["one"], 1);
    e.shutdown().await;
}
