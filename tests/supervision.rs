//! A failed operator does not leave the engine limping: when the operator task panics, the
//! failure is logged and counted, `/healthz` turns unhealthy, receivers refuse new data with a
//! retryable error, and `redwatch run` exits non-zero so that a supervisor restarts it.
//! The panic comes from the `panic_operator` test hook (`REDWATCH_TEST_PANIC_OPERATOR` for the
//! binary): an operator that panics on the first batch it sees.

mod common;

use common::*;
use prost::Message;
use redwatch::server::{Engine, StartOptions};

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

/// One HTTP/1.1 POST of a protobuf body (the answer is read and ignored: the process may die
/// while answering).
fn post_protobuf(addr: &str, path: &str, body: &[u8]) {
    let mut c = std::net::TcpStream::connect(addr).expect("connect to OTLP/HTTP");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).expect("send request head");
    c.write_all(body).expect("send request body");
    let _ = c.read_to_end(&mut Vec::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_panic_fails_healthz_and_is_counted() {
    let cfg = test_config();
    let mut e = Engine::start(
        &cfg,
        StartOptions {
            panic_operator: true,
            ..StartOptions::default()
        },
    )
    .await
    .expect("engine starts");
    let healthz = format!("http://{}/healthz", e.addrs["sql_http"]);
    let r = reqwest::get(&healthz).await.expect("healthz answers");
    assert_eq!(r.status().as_u16(), 200, "healthy before any data");

    // The first batch reaches the panicking operator.
    let _ = grpc_export(&e, trace_request(Some("checkout"), &good_spans("p"))).await;
    let why = tokio::time::timeout(Duration::from_secs(30), e.failed())
        .await
        .expect("the engine reports the failed pipeline");
    assert!(why.to_string().contains("operator panicked"), "{why}");

    let r = reqwest::get(&healthz).await.expect("healthz answers");
    assert_eq!(r.status().as_u16(), 503);
    let body = r.text().await.unwrap_or_default();
    assert!(body.contains("REDWATCH_TEST_PANIC_OPERATOR"), "{body}");
    assert_eq!(
        e.registry.value("redwatch_pipeline_failures_total", &[]),
        1.0
    );
    // New data is refused with a retryable status, never taken and lost.
    let status = grpc_export(&e, trace_request(Some("checkout"), &good_spans("q")))
        .await
        .expect_err("a dead pipeline takes no data");
    assert!(
        matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::ResourceExhausted
        ),
        "{status:?}"
    );
    e.shutdown().await;
}

#[test]
fn redwatch_run_exits_non_zero_when_an_operator_panics() {
    let env = [("REDWATCH_TEST_PANIC_OPERATOR", "1")];
    let (mut child, addrs, lines) = spawn_redwatch_run(&[], &env, &["otlp_http"]);
    let http = addrs["otlp_http"].clone();
    // Keep draining stderr so the child never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let body = trace_request(Some("checkout"), &good_spans("p")).encode_to_vec();
    post_protobuf(&http, "/v1/traces", &body);
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(s) => s.expect("wait for redwatch"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("redwatch kept running after its operator panicked");
        }
    };
    let rest = drain.join().unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(1),
        "exit status {status:?}; log: {rest:#?}"
    );
    assert!(
        rest.iter().any(|l| l.contains("operator panicked")),
        "the failure is logged: {rest:#?}"
    );
}
