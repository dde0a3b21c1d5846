//! OTLP export of anomaly and prediction spans (and RED metrics), end to end in one process: a
//! load of spans into the engine's OTLP/gRPC receiver, anomaly detection on the closed windows,
//! and a tonic `TraceService` + `MetricsService` receiver in the test standing in for Jaeger / a
//! Collector.
//!
//! The load replays history fast (event times from the past, in order, accepted as late data
//! within `allowed_lateness`), then keeps a steady real-time load, so detectors warm up in
//! seconds rather than minutes. Waits are conditions with deadlines.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use redwatch::config::{Config, OtlpExporterConfig};
use redwatch::server::Engine;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const SEC: u64 = 1_000_000_000;

/// The engine's watermark follows wall clock until data arrives (every source starts idle), so
/// the replayed history is late data: accepted while within `allowed_lateness`.
const REPLAY_LATENESS: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// The receiver (stand-in for Jaeger)
// ---------------------------------------------------------------------------------------------

/// Resource attributes (key, value as text) and a received span.
type ReceivedSpan = (Vec<(String, String)>, Span);

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<ReceivedSpan>>>);

/// Received RED metric points: (metric name, service_name attribute, value or count).
#[derive(Clone, Default)]
struct ReceivedMetrics(Arc<Mutex<Vec<(String, String, f64)>>>);

#[tonic::async_trait]
impl MetricsService for ReceivedMetrics {
    async fn export(
        &self,
        r: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
        let mut got = self.0.lock().unwrap();
        let svc = |a: &[opentelemetry_proto::tonic::common::v1::KeyValue]| {
            attrs_of(a).get("service.name").cloned().unwrap_or_default()
        };
        for rm in r.into_inner().resource_metrics {
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    match m.data {
                        Some(Data::Sum(x)) => {
                            for p in x.data_points {
                                let v = match p.value {
                                    Some(number_data_point::Value::AsDouble(d)) => d,
                                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                                    None => 0.0,
                                };
                                got.push((m.name.clone(), svc(&p.attributes), v));
                            }
                        }
                        Some(Data::Histogram(x)) => {
                            for p in x.data_points {
                                got.push((m.name.clone(), svc(&p.attributes), p.count as f64));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl Received {
    /// Received spans named `name`, with their resource attributes.
    fn named(&self, name: &str) -> Vec<ReceivedSpan> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.name == name)
            .cloned()
            .collect()
    }
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        r: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = self.0.lock().unwrap();
        for rs in r.into_inner().resource_spans {
            let res: Vec<(String, String)> = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .map(|kv| {
                    (
                        kv.key.clone(),
                        show(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                    )
                })
                .collect();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    got.push((res.clone(), s));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A running receiver that can be stopped and started again on the same port.
struct Receiver {
    addr: SocketAddr,
    got: Received,
    metrics: ReceivedMetrics,
    stop: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
}

impl Receiver {
    async fn start() -> Receiver {
        let mut r = Receiver {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            got: Received::default(),
            metrics: ReceivedMetrics::default(),
            stop: None,
        };
        r.up().await;
        r
    }

    async fn up(&mut self) {
        let l = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind the test receiver");
        self.addr = l.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let svc = TraceServiceServer::new(self.got.clone())
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        let msvc = MetricsServiceServer::new(self.metrics.clone())
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(svc)
                .add_service(msvc)
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(l),
                    c.cancelled_owned(),
                )
                .await;
        });
        self.stop = Some((cancel, task));
    }

    async fn down(&mut self) {
        if let Some((c, t)) = self.stop.take() {
            c.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

fn attrs(s: &Span) -> BTreeMap<String, String> {
    attrs_of(&s.attributes)
}

fn attrs_of(kvs: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                show(kv.value.as_ref().and_then(|v| v.value.as_ref())),
            )
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn exporter_cfg(url: &str, queue_size: usize) -> OtlpExporterConfig {
    let mut o = OtlpExporterConfig {
        endpoint: url.to_string(),
        queue_size,
        ..Default::default()
    };
    o.batch.timeout = Duration::from_millis(100);
    o.retry.initial_interval = Duration::from_millis(100);
    o.retry.max_interval = Duration::from_millis(400);
    o.retry.max_elapsed_time = Duration::from_secs(120);
    o
}

/// The anomaly tests' config: OTLP export to `url`, detectors warm after 20 windows, no
/// forecasts, and a lateness that accepts the replayed history of `payment_spike`.
fn replay_anomalies_to(cfg: &mut Config, url: &str) {
    cfg.exporters.otlp = Some(exporter_cfg(url, 10_000));
    cfg.anomaly.warmup_windows = 20;
    cfg.anomaly.detectors.robust_z.baseline_windows = 20;
    cfg.forecast.enabled = false;
    cfg.windows.allowed_lateness = REPLAY_LATENESS;
}

/// The latency spike of the anomaly tests: windows `SPIKE` at ~600 ms.
const SPIKE: std::ops::Range<u64> = 30..35;

/// 45 windows of history of `payments` (40 calls a window of ~20 ms, `SPIKE` at ~600 ms), then
/// real time; returns the load and its first window (Unix seconds).
fn payment_spike(e: &Engine) -> (Load, u64) {
    let first = now_ns() / SEC - 45;
    let load = Load::start(e, &["payments"], first, 40, |k, i| {
        let base = if SPIKE.contains(&k) { 600.0 } else { 20.0 };
        (base * (1.0 + 0.2 * noise(k, i))) as u64
    });
    (load, first)
}

fn export_value(e: &Engine, name: &str) -> f64 {
    e.registry
        .value(name, &[("exporter", "otlp"), ("signal", "traces")])
}

/// Every export failure, over all reasons.
fn export_failed(e: &Engine) -> f64 {
    e.registry.total("redwatch_export_failed_total")
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_spike_becomes_anomaly_spans_grouped_by_incident() {
    let recv = Receiver::start().await;
    let mut cfg: Config = test_config();
    replay_anomalies_to(&mut cfg, &recv.url());
    // One incident = one trace is the problems-off shape (problem traces: the next test).
    cfg.problems.enabled = false;
    let e = start(&cfg).await;

    // 45 windows of history: 30 normal calls of ~20 ms, windows 30..35 at ~600 ms.
    let (load, first) = payment_spike(&e);

    let got = recv.got.clone();
    wait_until(
        Duration::from_secs(60),
        "anomaly spans of the spike arrive",
        || {
            let got = got.clone();
            async move {
                got.named("anomaly_detected").iter().any(|(_, s)| {
                    attrs(s).get("anomaly.signal").map(String::as_str) == Some("latency_p99_ms")
                        && s.start_time_unix_nano == (first + SPIKE.end - 1) * SEC
                })
            }
        },
    )
    .await;
    load.stop().await;

    let all_spans = recv.got.named("anomaly_detected");
    // The span that resolves an incident (its trace's last) is checked on its own below.
    let (resolved, spans): (Vec<_>, Vec<_>) = all_spans.into_iter().partition(|(_, s)| {
        attrs(s).get("anomaly.incident_state").map(String::as_str) == Some("resolved")
    });
    let mut incidents: BTreeMap<String, Vec<&Span>> = BTreeMap::new();
    for (res, s) in &spans {
        assert!(
            res.contains(&("service.name".to_string(), "redwatch".to_string())),
            "resource of an anomaly span: {res:?}"
        );
        let a = attrs(s);
        for k in [
            "anomaly.signal",
            "anomaly.value",
            "anomaly.expected_min",
            "anomaly.expected_max",
            "anomaly.severity",
            "anomaly.score",
            "anomaly.detector",
            "anomaly.incident_id",
            "service.name.observed",
            "span.name.observed",
        ] {
            assert!(a.contains_key(k), "anomaly span lacks {k}: {a:?}");
        }
        assert_eq!(a["service.name.observed"], "payments");
        assert_eq!(a["span.name.observed"], "GET /pay");
        assert_eq!(s.kind, 1, "kind INTERNAL");
        assert_eq!(
            s.end_time_unix_nano - s.start_time_unix_nano,
            SEC,
            "one window"
        );
        let event = s
            .events
            .iter()
            .find(|ev| ev.name == "anomaly_alert")
            .expect("an anomaly_alert event");
        assert_eq!(event.attributes.len(), s.attributes.len());
        let sev = a["anomaly.severity"].as_str();
        let code = s.status.as_ref().map_or(0, |st| st.code);
        assert_eq!(
            code == 2,
            sev == "high" || sev == "critical",
            "status for {sev}"
        );
        // One incident = one trace: the trace id is the incident id.
        assert_eq!(hex(&s.trace_id), a["anomaly.incident_id"]);
        incidents
            .entry(a["anomaly.incident_id"].clone())
            .or_default()
            .push(s);
    }
    let p99: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| attrs(s)["anomaly.signal"] == "latency_p99_ms")
        .collect();
    assert!(
        p99.len() >= 2,
        "the 5-window spike should give several p99 spans: {p99:?}"
    );
    for s in &p99 {
        let start_s = s.start_time_unix_nano / SEC - first;
        assert!(
            SPIKE.contains(&start_s),
            "p99 anomaly outside the spike: window {start_s}"
        );
        let a = attrs(s);
        let v: f64 = a["anomaly.value"].parse().unwrap();
        let max: f64 = a["anomaly.expected_max"].parse().unwrap();
        assert!(v > max, "value {v} above the expected range (max {max})");
        // Linked to the window's slowest span (no failed spans in this load).
        assert_eq!(s.links.len(), 1, "one exemplar link: {:?}", s.links);
        let l = &s.links[0];
        assert_eq!((l.trace_id.len(), l.span_id.len()), (16, 8));
        assert_ne!(l.span_id, vec![0; 8]);
        let la = attrs_of(&l.attributes);
        assert_eq!(la["exemplar.kind"], "slowest");
        let slowest: f64 = la["exemplar.duration_ms"].parse().unwrap();
        assert!(
            slowest >= v * 0.99,
            "the slowest span ({slowest} ms) is at least the p99 ({v})"
        );
    }
    let first_p99 = p99.iter().min_by_key(|s| s.start_time_unix_nano).unwrap();
    assert_eq!(first_p99.start_time_unix_nano, (first + SPIKE.start) * SEC);
    let group = &incidents[&attrs(first_p99)["anomaly.incident_id"]];
    assert_eq!(
        group.len(),
        p99.len(),
        "all p99 spans of the spike form one incident"
    );
    assert!(group.iter().all(|s| s.trace_id == first_p99.trace_id));
    // The first window is the root; the others hang off it.
    for s in group.iter().filter(|s| s.span_id != first_p99.span_id) {
        assert_eq!(s.parent_span_id, first_p99.span_id);
    }
    for (_, r) in &resolved {
        let a = attrs(r);
        let Some(g) = incidents.get(&a["anomaly.incident_id"]) else {
            continue;
        };
        let root = g.iter().min_by_key(|s| s.start_time_unix_nano).unwrap();
        assert_eq!(r.trace_id, root.trace_id);
        assert_eq!(r.parent_span_id, root.span_id);
        assert!(r.start_time_unix_nano > g.iter().map(|s| s.start_time_unix_nano).max().unwrap());
        assert_eq!(r.status.as_ref().map_or(0, |st| st.code), 1, "status OK");
        let d: u64 = a["anomaly.incident_duration_ms"].parse().unwrap();
        assert!(
            d >= 1_000 * g.len() as u64,
            "duration {d} ms of {} windows",
            g.len()
        );
        assert!(r.events.iter().any(|ev| ev.name == "anomaly_resolved"));
    }
    assert!(
        e.registry.total("redwatch_anomalies_total") >= p99.len() as f64,
        "redwatch_anomalies_total counts the anomalies"
    );
    // RED metrics reach the same destination (exact values: tests/interop/test_red_metrics_otlp.py).
    let red_calls = || -> f64 {
        recv.metrics
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, svc, _)| n == "traces.span.metrics.calls" && svc == "payments")
            .map(|(_, _, v)| v)
            .sum()
    };
    wait_until(
        Duration::from_secs(20),
        "RED calls points of the closed windows arrive",
        || async { red_calls() >= 40.0 * 35.0 },
    )
    .await;
    assert_eq!(export_failed(&e), 0.0);
    assert_eq!(export_value(&e, "redwatch_export_dropped_total"), 0.0);

    // The anomalies table has them too.
    let rows = e
        .queries
        .execute(
            "SELECT incident_id FROM anomalies WHERE signal = 'latency_p99_ms' \
             AND service_name = 'payments' AND incident_state <> 'resolved'",
        )
        .await
        .expect("the anomalies table answers");
    assert_eq!(rows.num_rows(), p99.len());
    e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_is_one_problem_trace_with_its_member_anomalies_as_children() {
    let recv = Receiver::start().await;
    let (hook_url, hook) = webhook_receiver(2).await;
    let mut cfg: Config = test_config();
    replay_anomalies_to(&mut cfg, &recv.url());
    cfg.exporters.webhook.url = Some(hook_url);
    cfg.exporters.webhook.initial_interval = Duration::from_millis(50);
    assert!(cfg.problems.enabled, "problems are on by default");
    let e = start(&cfg).await;

    let (load, first) = payment_spike(&e);
    let got = recv.got.clone();
    wait_until(Duration::from_secs(90), "the problem resolves", || {
        let got = got.clone();
        async move { !got.named("problem_resolved").is_empty() }
    })
    .await;
    load.stop().await;

    let roots = recv.got.named("problem_detected");
    assert_eq!(roots.len(), 1, "one problem for the spike: {roots:?}");
    let (res, root) = &roots[0];
    assert!(res.contains(&("service.name".to_string(), "redwatch".to_string())));
    let a = attrs(root);
    assert_eq!(a["problem.id"], hex(&root.trace_id));
    assert_eq!(a["problem.cause.service"], "payments");
    assert_eq!(a["problem.cause.span"], "GET /pay");
    assert!(a["problem.cause.signal"].starts_with("latency_p"), "{a:?}");
    assert!(
        a["problem.summary"].starts_with("payments GET /pay ("),
        "{a:?}"
    );
    assert!(
        root.parent_span_id.is_empty(),
        "the problem span is the root"
    );
    // Its onset is the spike's first window; published within 2 windows after that window closed.
    assert_eq!(root.start_time_unix_nano, (first + SPIKE.start) * SEC);
    let published = root.end_time_unix_nano / SEC - (first + SPIKE.start + 1);
    assert!(
        (1..=2).contains(&published),
        "published {published} windows after the first anomaly"
    );
    // Linked to the exemplar (slowest span) of its cause's window.
    assert!(
        !root.links.is_empty(),
        "exemplar links on the root: {root:?}"
    );
    assert_eq!(
        attrs_of(&root.links[0].attributes)["exemplar.kind"],
        "slowest"
    );

    let members = recv.got.named("anomaly_detected");
    let in_problem: Vec<&Span> = members
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.trace_id == root.trace_id)
        .collect();
    let n: usize = a["problem.members"].parse().unwrap();
    assert!(n >= 2, "p50 and p99 of the spike: {n}");
    let incidents: std::collections::BTreeSet<String> = in_problem
        .iter()
        .map(|s| attrs(s)["anomaly.incident_id"].clone())
        .collect();
    assert_eq!(
        incidents.len(),
        n,
        "every member incident is in the problem's trace"
    );
    common::assert_member_tree(root, &in_problem, n);
    let resolved = recv.got.named("problem_resolved");
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].1.trace_id, root.trace_id);
    assert_eq!(resolved[0].1.parent_span_id, root.span_id);
    assert_eq!(e.registry.total("redwatch_problems_open"), 0.0);

    // The webhook: one firing and one resolved notification for the problem, delivered after
    // the receiver's first two answers (503) were retried.
    let seen = hook.clone();
    wait_until(
        Duration::from_secs(30),
        "the webhook gets the resolve",
        || {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .iter()
                    .filter(|(c, _)| *c == 200)
                    .count()
                    >= 2
            }
        },
    )
    .await;
    let seen = hook.lock().unwrap().clone();
    let delivered: Vec<(&str, &str)> = seen
        .iter()
        .filter(|(c, _)| *c == 200)
        .map(|(_, v)| {
            (
                v["status"].as_str().unwrap_or(""),
                v["alerts"][0]["labels"]["problem_id"]
                    .as_str()
                    .unwrap_or(""),
            )
        })
        .collect();
    let id = hex(&root.trace_id);
    assert_eq!(
        delivered,
        [("firing", id.as_str()), ("resolved", id.as_str())]
    );
    assert_eq!(seen.iter().filter(|(c, _)| *c == 503).count(), 2);
    assert_eq!(e.registry.total("redwatch_webhook_retries_total"), 2.0);
    e.shutdown().await;
}

/// What a webhook receiver saw: (status it answered, JSON body).
type HookSeen = Arc<Mutex<Vec<(u16, serde_json::Value)>>>;

/// A local HTTP receiver that answers 503 to its first `fail_first` POSTs, then 200.
async fn webhook_receiver(fail_first: usize) -> (String, HookSeen) {
    use axum::extract::State;
    use axum::http::StatusCode;
    let seen: HookSeen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            axum::routing::post(
                move |State(seen): State<HookSeen>, body: String| async move {
                    let v = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
                    let mut s = seen.lock().unwrap();
                    let code = if s.len() < fail_first {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    };
                    s.push((code.as_u16(), v));
                    code
                },
            ),
        )
        .with_state(seen.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}/hook"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_outage_retries_bounds_the_queue_and_recovers() {
    // Above the 12 prediction spans one window close enqueues at once.
    const QUEUE: usize = 30;
    let mut recv = Receiver::start().await;
    let mut cfg: Config = test_config();
    cfg.exporters.otlp = Some(exporter_cfg(&recv.url(), QUEUE));
    // Only predictions (a steady 4 spans per series and window), no anomalies: the exported
    // spans are exactly `redwatch_predictions_total`.
    cfg.anomaly.enabled = false;
    cfg.forecast.history_windows = 8;
    cfg.forecast.every_windows = 1;
    cfg.windows.allowed_lateness = REPLAY_LATENESS;
    let e = start(&cfg).await;
    // Real time from (almost) the start: a replayed burst of windows would close many windows
    // at once and overflow the small queue before the outage.
    let first = now_ns() / SEC - 1;
    let load = Load::start(&e, &["a", "b", "c"], first, 25, |k, i| {
        (20.0 * (1.0 + 0.2 * noise(k, i))) as u64
    });
    let sent = |e: &Engine| export_value(e, "redwatch_export_sent_total");
    let dropped = |e: &Engine| export_value(e, "redwatch_export_dropped_total");
    let retries = |e: &Engine| export_value(e, "redwatch_export_retries_total");
    let depth = |e: &Engine| export_value(e, "redwatch_export_queue_depth");

    wait_until(
        Duration::from_secs(40),
        "predictions reach the receiver",
        || async { sent(&e) >= 24.0 },
    )
    .await;
    assert_eq!(dropped(&e), 0.0);
    assert!(!recv.got.named("metric_prediction").is_empty());

    // Outage.
    recv.down().await;
    let produced_before = e.registry.total("redwatch_predictions_total");
    let sent_before = sent(&e);
    wait_until(
        Duration::from_secs(40),
        "the queue overflows while the receiver is down",
        || async {
            assert!(depth(&e) <= QUEUE as f64, "the queue stays bounded");
            dropped(&e) > 0.0 && retries(&e) >= 2.0
        },
    )
    .await;
    let sent_during = sent(&e);
    assert!(
        sent_during - sent_before <= 12.0,
        "nothing (beyond an in-flight batch) is sent while down"
    );

    // Recovery.
    recv.up().await;
    wait_until(
        Duration::from_secs(40),
        "the queued spans are delivered",
        || async { sent(&e) >= sent_during + QUEUE as f64 },
    )
    .await;
    let after_recovery = sent(&e);
    let produced_until_drained = e.registry.total("redwatch_predictions_total") - produced_before;
    let windows = load.windows();
    wait_until(
        Duration::from_secs(40),
        "new predictions flow again",
        || async { load.windows() >= windows + 2 && sent(&e) > after_recovery },
    )
    .await;
    load.stop().await;

    // Accounting: every prediction span was sent, dropped or given up on — and drops only
    // happened beyond the queue bound.
    wait_until(
        DEADLINE,
        "the exporter is idle and every span is accounted for",
        || async {
            let total = e.registry.total("redwatch_predictions_total");
            depth(&e) == 0.0 && sent(&e) + dropped(&e) + export_failed(&e) == total
        },
    )
    .await;
    assert_eq!(export_failed(&e), 0.0, "nothing given up on");
    let d = dropped(&e);
    assert!(
        d <= produced_until_drained - QUEUE as f64,
        "drops ({d}) only beyond the queue bound ({produced_until_drained} produced from the \
         outage until the queue drained)"
    );
    assert_eq!(
        recv.got.named("metric_prediction").len() as f64,
        sent(&e),
        "the receiver got every span counted as sent"
    );
    e.shutdown().await;
}
