//! The webhook against a real local HTTP receiver: one open and one resolve per problem, 503s
//! retried, a full queue counted, a refusal not retried.

use super::*;
use crate::config::WebhookFormat;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use redwatch_engine::model::SpanKind;
use redwatch_operators::anomaly::Severity;
use redwatch_operators::problems::{Cause, Member};
use redwatch_operators::red::SeriesKey;
use serde_json::Value;
use std::sync::Mutex;

const T0: u64 = 1_767_571_200_000_000_000;

fn problem(state: ProblemState) -> Problem {
    let series = Arc::new(SeriesKey {
        service_name: Arc::from("payment"),
        span_name: Arc::from("Charge"),
        kind: SpanKind::Server,
        dims: Box::new([]),
        overflow: false,
    });
    Problem {
        id: [7; 16],
        state,
        onset: T0,
        opened_at: T0 + 20_000_000_000,
        resolved_at: (state == ProblemState::Resolved).then_some(T0 + 120_000_000_000),
        updated_at: T0 + 120_000_000_000,
        members: vec![Member {
            incident_id: [1; 16],
            series,
            signal: Arc::from("latency_p99_ms"),
            onset: T0,
            last_end: T0 + 60_000_000_000,
            last_seen: T0 + 90_000_000_000,
            severity: Severity::High,
            peak_score: 1.0,
            min_p: 1e-12,
            windows: 6,
            value: 812.0,
            expected: 40.0,
            resolved: state == ProblemState::Resolved,
        }],
        causes: vec![Cause {
            service: Arc::from("payment"),
            span_name: Arc::from("Charge"),
            kind: SpanKind::Server,
            signal: Arc::from("latency_p99_ms"),
            points: 5.0,
            evidence: "alarmed first; deepest on the call path".into(),
        }],
        summary: "payment Charge (server) latency_p99_ms 812 ms (expected 40 ms)".into(),
    }
}

/// What the receiver saw: (status it answered, body).
type Seen = Arc<Mutex<Vec<(u16, Value)>>>;

/// A receiver that answers 503 to the first `fail_first` requests, then `then`.
async fn receiver(fail_first: usize, then: StatusCode) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            post(move |State(seen): State<Seen>, body: String| async move {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let mut s = seen.lock().unwrap();
                let status = if s.len() < fail_first {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    then
                };
                s.push((status.as_u16(), v));
                status
            }),
        )
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}/hook"), seen)
}

fn cfg(url: &str, format: WebhookFormat) -> WebhookExporterConfig {
    WebhookExporterConfig {
        url: Some(url.to_string()),
        format,
        initial_interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(100),
        ..Default::default()
    }
}

/// Waits (deadline 20 s) until `f` holds.
async fn until(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "condition not met within 20 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn one_open_and_one_resolve_per_problem_with_503s_retried() {
    let (url, seen) = receiver(2, StatusCode::OK).await;
    let registry = Registry::new();
    let cancel = CancellationToken::new();
    let (h, task) = start(
        &cfg(&url, WebhookFormat::Alertmanager),
        &registry,
        cancel.clone(),
    )
    .unwrap();
    h.notify(&problem(ProblemState::Open));
    h.notify(&problem(ProblemState::Ongoing)); // not a notification
    h.notify(&problem(ProblemState::Resolved));
    // The receiver records a request before its answer reaches the exporter, so wait for the
    // exporter's own count too (asserting it right after the receiver saw the second 200 raced).
    until(|| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| *s == 200)
            .count()
            == 2
            && h.counters.sent.get() == 2
    })
    .await;
    let s = seen.lock().unwrap().clone();
    let statuses: Vec<(u16, &str)> = s
        .iter()
        .map(|(code, v)| (*code, v["status"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        statuses,
        [
            (503, "firing"),
            (503, "firing"),
            (200, "firing"),
            (200, "resolved")
        ]
    );
    let open = &s[2].1;
    assert_eq!(open["version"], "4");
    assert_eq!(open["alerts"][0]["labels"]["problem_id"], "07".repeat(16));
    assert_eq!(open["alerts"][0]["labels"]["service"], "payment");
    assert_eq!(open["alerts"][0]["labels"]["span_name"], "Charge");
    assert_eq!(open["alerts"][0]["labels"]["signal"], "latency_p99_ms");
    assert_eq!(open["alerts"][0]["labels"]["severity"], "high");
    assert_eq!(open["alerts"][0]["startsAt"], "2026-01-05T00:00:00.000Z");
    assert_eq!(open["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert!(open["alerts"][0]["annotations"]["summary"]
        .as_str()
        .unwrap()
        .starts_with("payment Charge (server)"));
    let resolved = &s[3].1;
    assert_eq!(resolved["alerts"][0]["endsAt"], "2026-01-05T00:02:00.000Z");
    assert_eq!(h.counters.sent.get(), 2);
    assert_eq!(h.counters.retries.get(), 2);
    assert_eq!(h.counters.failed.get(), 0);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn slack_format_and_a_refusal_is_not_retried() {
    let (url, seen) = receiver(0, StatusCode::BAD_REQUEST).await;
    let registry = Registry::new();
    let cancel = CancellationToken::new();
    let (h, task) = start(&cfg(&url, WebhookFormat::Slack), &registry, cancel.clone()).unwrap();
    h.notify(&problem(ProblemState::Open));
    until(|| h.counters.failed.get() == 1).await;
    let s = seen.lock().unwrap().clone();
    assert_eq!(s.len(), 1);
    let text = s[0].1["text"].as_str().unwrap();
    assert!(
        text.starts_with(":rotating_light: Problem (high): payment Charge"),
        "{text}"
    );
    assert!(
        text.contains("Likely cause: payment Charge (latency_p99_ms)"),
        "{text}"
    );
    assert_eq!(h.counters.retries.get(), 0);
    cancel.cancel();
    task.await.unwrap();
}

#[test]
fn a_full_queue_drops_and_counts() {
    let registry = Registry::new();
    let mut c = cfg("http://127.0.0.1:9/hook", WebhookFormat::Alertmanager);
    c.queue_size = 1;
    let (h, mut rx) = channel(&c, &registry);
    h.notify(&problem(ProblemState::Open));
    h.notify(&problem(ProblemState::Resolved));
    assert_eq!(h.counters.dropped.get(), 1);
    assert!(rx.try_recv().is_ok());
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn an_unreachable_receiver_gives_up_after_max_elapsed_time() {
    // A port that was just free: connections are refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let registry = Registry::new();
    let cancel = CancellationToken::new();
    let mut c = cfg(
        &format!("http://127.0.0.1:{port}/hook"),
        WebhookFormat::Alertmanager,
    );
    c.max_elapsed_time = Duration::from_millis(300);
    let (h, task) = start(&c, &registry, cancel.clone()).unwrap();
    h.notify(&problem(ProblemState::Open));
    until(|| h.counters.failed.get() == 1).await;
    assert!(h.counters.retries.get() >= 1);
    assert_eq!(h.counters.sent.get(), 0);
    cancel.cancel();
    task.await.unwrap();
}
