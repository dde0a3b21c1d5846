use super::*;
use crate::config::{OtlpProtocol, OtlpRetryConfig};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};
use std::collections::VecDeque;
use std::sync::Mutex;

/// What the fake backend answers next: `Ok(rejected)` or an error code.
type Answer = Result<i64, tonic::Code>;

#[derive(Default)]
struct Backend {
    script: Mutex<VecDeque<Answer>>,
    got: Mutex<Vec<(ExportTraceServiceRequest, Option<String>)>>,
}

#[derive(Clone)]
struct Svc(Arc<Backend>);

#[tonic::async_trait]
impl TraceService for Svc {
    async fn export(
        &self,
        r: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let answer = self.0.script.lock().unwrap().pop_front().unwrap_or(Ok(0));
        let token = r
            .metadata()
            .get("x-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match answer {
            Ok(rejected) => {
                self.0.got.lock().unwrap().push((r.into_inner(), token));
                Ok(tonic::Response::new(ExportTraceServiceResponse {
                    partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
                        rejected_spans: rejected,
                        error_message: "no".into(),
                    }),
                }))
            }
            Err(code) => Err(tonic::Status::new(code, "scripted failure")),
        }
    }
}

async fn backend(script: Vec<Answer>) -> (Arc<Backend>, String) {
    let b = Arc::new(Backend {
        script: Mutex::new(script.into()),
        ..Default::default()
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let svc = TraceServiceServer::new(Svc(b.clone())).accept_compressed(CompressionEncoding::Gzip);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(l)),
    );
    (b, format!("http://{addr}"))
}

use tonic::codec::CompressionEncoding;

fn cfg(endpoint: &str) -> OtlpExporterConfig {
    OtlpExporterConfig {
        endpoint: endpoint.to_string(),
        batch: crate::config::OtlpBatchConfig {
            max_size: 2,
            timeout: Duration::from_millis(50),
        },
        retry: OtlpRetryConfig {
            initial_interval: Duration::from_millis(10),
            max_interval: Duration::from_millis(40),
            max_elapsed_time: Duration::from_secs(5),
        },
        headers: [("x-token".to_string(), "secret".to_string())].into(),
        ..Default::default()
    }
}

fn rs(name: &str) -> ResourceSpans {
    ResourceSpans {
        scope_spans: vec![ScopeSpans {
            spans: vec![Span {
                name: name.to_string(),
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

async fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn grpc_batches_merge_resources_and_send_headers() {
    let (b, url) = backend(vec![]).await;
    let reg = Registry::new();
    let cancel = CancellationToken::new();
    let (h, task) = start(&cfg(&url), &reg, cancel.clone()).unwrap();
    let task = tokio::spawn(task);
    for i in 0..5 {
        assert!(h.export_spans(rs(&format!("s{i}"))));
    }
    let sent = || reg.value("redwatch_export_sent_total", &LABELS);
    wait("5 spans sent", || sent() == 5.0).await;
    let got = b.got.lock().unwrap().clone();
    // max_size 2: batches of 2, 2 and 1 (the last after the timeout); one resource each.
    let sizes: Vec<usize> = got
        .iter()
        .map(|(r, _)| {
            assert_eq!(r.resource_spans.len(), 1);
            r.resource_spans[0].scope_spans[0].spans.len()
        })
        .collect();
    assert_eq!(sizes, vec![2, 2, 1]);
    assert!(got.iter().all(|(_, t)| t.as_deref() == Some("secret")));
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn grpc_retries_retryable_codes_and_counts_partial_success() {
    let (b, url) = backend(vec![
        Err(tonic::Code::Unavailable),
        Err(tonic::Code::ResourceExhausted),
        Ok(1),
        Err(tonic::Code::InvalidArgument),
    ])
    .await;
    let reg = Registry::new();
    let cancel = CancellationToken::new();
    let (h, task) = start(&cfg(&url), &reg, cancel.clone()).unwrap();
    let task = tokio::spawn(task);
    h.export_spans(rs("a"));
    h.export_spans(rs("b"));
    let v = |n: &str, l: &[(&str, &str)]| reg.value(n, l);
    wait("the first batch is accepted", || {
        v("redwatch_export_sent_total", &LABELS) == 1.0
    })
    .await;
    assert_eq!(v("redwatch_export_retries_total", &LABELS), 2.0);
    let rejected = [LABELS[0], LABELS[1], ("reason", "rejected")];
    assert_eq!(v("redwatch_export_failed_total", &rejected), 1.0);
    // INVALID_ARGUMENT is permanent: counted, not retried.
    h.export_spans(rs("c"));
    h.export_spans(rs("d"));
    let permanent = [LABELS[0], LABELS[1], ("reason", "permanent")];
    wait("the permanent failure is counted", || {
        v("redwatch_export_failed_total", &permanent) == 2.0
    })
    .await;
    assert_eq!(v("redwatch_export_retries_total", &LABELS), 2.0);
    assert_eq!(b.got.lock().unwrap().len(), 1);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn full_queue_drops_and_counts_without_blocking() {
    let reg = Registry::new();
    let mut c = cfg("http://127.0.0.1:9");
    c.queue_size = 3;
    let (h, task) = start(&c, &reg, CancellationToken::new()).unwrap();
    // The worker is not running: nothing drains the queue.
    let queued = (0..5)
        .filter(|i| h.export_spans(rs(&i.to_string())))
        .count();
    assert_eq!(queued, 3);
    assert_eq!(reg.value("redwatch_export_dropped_total", &LABELS), 2.0);
    assert_eq!(reg.value("redwatch_export_queue_depth", &LABELS), 3.0);
    drop(task);
}

#[tokio::test]
async fn unreachable_destination_gives_up_after_max_elapsed_time() {
    let reg = Registry::new();
    // A port nobody listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = cfg(&format!("http://127.0.0.1:{port}"));
    c.retry.max_elapsed_time = Duration::from_millis(200);
    let cancel = CancellationToken::new();
    let (h, task) = start(&c, &reg, cancel.clone()).unwrap();
    let task = tokio::spawn(task);
    h.export_spans(rs("a"));
    let exhausted = [LABELS[0], LABELS[1], ("reason", "retries_exhausted")];
    wait("the batch is given up", || {
        reg.value("redwatch_export_failed_total", &exhausted) == 1.0
    })
    .await;
    assert!(reg.value("redwatch_export_retries_total", &LABELS) >= 1.0);
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn http_protobuf_posts_gzip_and_retries_503() {
    use axum::routing::post;
    let hits = Arc::new(Mutex::new(Vec::<(Option<String>, usize)>::new()));
    let h2 = hits.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |headers: http::HeaderMap, body: bytes::Bytes| {
            let hits = h2.clone();
            async move {
                let enc = headers
                    .get("content-encoding")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let mut g = hits.lock().unwrap();
                g.push((enc, body.len()));
                if g.len() == 1 {
                    (http::StatusCode::SERVICE_UNAVAILABLE, Vec::new())
                } else {
                    (http::StatusCode::OK, Vec::new())
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    let reg = Registry::new();
    let mut c = cfg(&format!("http://{addr}"));
    c.protocol = OtlpProtocol::HttpProtobuf;
    let cancel = CancellationToken::new();
    let (h, task) = start(&c, &reg, cancel.clone()).unwrap();
    let task = tokio::spawn(task);
    h.export_spans(rs("a"));
    wait("the span is sent", || {
        reg.value("redwatch_export_sent_total", &LABELS) == 1.0
    })
    .await;
    let g = hits.lock().unwrap().clone();
    assert_eq!(g.len(), 2);
    assert!(g
        .iter()
        .all(|(e, n)| e.as_deref() == Some("gzip") && *n > 0));
    cancel.cancel();
    task.await.unwrap();
}

#[test]
fn jitter_stays_within_half_and_one_and_a_half() {
    let mut s = seed();
    for _ in 0..1000 {
        let d = jitter(Duration::from_millis(100), &mut s);
        assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(150));
    }
}

// ---- metrics: the second queue and the RED metrics sink ----------------------------------------

use crate::config::OtlpTemporality;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::{
    metric::Data, number_data_point, AggregationTemporality,
};
use redwatch_engine::model::{SpanKind, StatusCode};
use redwatch_operators::red::{RedAgg, RedRow, RedSink, SeriesKey};

#[derive(Clone, Default)]
struct MetricsBackend(Arc<Mutex<Vec<ExportMetricsServiceRequest>>>);

#[tonic::async_trait]
impl MetricsService for MetricsBackend {
    async fn export(
        &self,
        r: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(r.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

async fn metrics_backend() -> (MetricsBackend, String) {
    let b = MetricsBackend::default();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let svc = MetricsServiceServer::new(b.clone()).accept_compressed(CompressionEncoding::Gzip);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(l)),
    );
    (b, format!("http://{addr}"))
}

const BOUNDS: [f64; 3] = [2.0, 4.0, 10.0];
const SEC: u64 = 1_000_000_000;

fn red_row(series: &Arc<SeriesKey>, w: u64, spans: &[(StatusCode, f64)], first: bool) -> RedRow {
    let b = redwatch_operators::red::Buckets::new(BOUNDS.to_vec());
    let mut agg = RedAgg::default();
    for &(s, ms) in spans {
        agg.add(s, ms, b.index(ms), 1.0);
    }
    RedRow {
        window_size: Arc::from("1s"),
        window_size_ns: SEC,
        primary: true,
        start: w * SEC,
        end: (w + 1) * SEC,
        series: series.clone(),
        share: None,
        is_final: true,
        first,
        total: agg.clone(),
        delta: Some(agg),
    }
}

/// (status label, start, time, calls, bucket counts, temporality) of every received point pair.
type Got = Vec<(String, u64, u64, f64, Vec<u64>, i32)>;

fn received(b: &MetricsBackend) -> Got {
    let mut calls = Vec::new();
    let mut hist = Vec::new();
    for req in b.0.lock().unwrap().iter() {
        for rm in &req.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    match &m.data {
                        Some(Data::Sum(s)) => {
                            assert_eq!(m.name, red_metrics::CALLS);
                            assert!(s.is_monotonic);
                            for p in &s.data_points {
                                let v = match p.value {
                                    Some(number_data_point::Value::AsDouble(v)) => v,
                                    Some(number_data_point::Value::AsInt(i)) => i as f64,
                                    None => f64::NAN,
                                };
                                calls.push((
                                    p.start_time_unix_nano,
                                    p.time_unix_nano,
                                    v,
                                    s.aggregation_temporality,
                                    p.attributes.clone(),
                                ));
                            }
                        }
                        Some(Data::Histogram(h)) => {
                            assert_eq!(
                                (m.name.as_str(), m.unit.as_str()),
                                (red_metrics::DURATION, "ms")
                            );
                            for p in &h.data_points {
                                assert_eq!(p.explicit_bounds, BOUNDS.to_vec());
                                assert_eq!(p.count, p.bucket_counts.iter().sum::<u64>());
                                hist.push(p.bucket_counts.clone());
                            }
                        }
                        other => panic!("unexpected metric {other:?}"),
                    }
                }
            }
        }
    }
    assert_eq!(
        calls.len(),
        hist.len(),
        "one histogram point per calls point"
    );
    calls
        .into_iter()
        .zip(hist)
        .map(|((start, time, v, t, attrs), h)| {
            let status = attrs
                .iter()
                .find(|kv| kv.key == "status.code")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| v.value.clone());
            let status = match status {
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => s,
                _ => String::new(),
            };
            (status, start, time, v, h, t)
        })
        .collect()
}

async fn red_metrics_run(temporality: OtlpTemporality) -> Got {
    let (b, url) = metrics_backend().await;
    let reg = Registry::new();
    let cancel = CancellationToken::new();
    let mut c = cfg(&url);
    c.batch.max_size = 512;
    let (h, task) = start(&c, &reg, cancel.clone()).unwrap();
    let task = tokio::spawn(task);
    let sink = red_metrics::OtlpRedMetrics::new(h, temporality, BOUNDS.to_vec(), &[], 512);
    let k = Arc::new(SeriesKey {
        service_name: "cart".into(),
        span_name: "GET /cart".into(),
        kind: SpanKind::Server,
        dims: Box::new([]),
        overflow: false,
    });
    let u = StatusCode::Unset;
    // Window 10: three spans (one on a bound, one past the last bound) and an error; window 11:
    // one span; then a late update of window 10 with one more span.
    sink.on_final(&[red_row(
        &k,
        10,
        &[(u, 1.0), (u, 4.0), (u, 50.0), (StatusCode::Error, 3.0)],
        true,
    )]);
    sink.on_final(&[red_row(&k, 11, &[(u, 5.0)], true)]);
    sink.on_final(&[red_row(&k, 10, &[(u, 3.0)], false)]);
    // Provisional and rollup rows never reach OTLP.
    let mut prov = red_row(&k, 12, &[(u, 1.0)], false);
    prov.is_final = false;
    prov.delta = None;
    let mut rollup = red_row(&k, 12, &[(u, 1.0)], true);
    rollup.primary = false;
    sink.on_final(&[prov, rollup]);
    let sent = || reg.value("redwatch_export_sent_total", &METRICS_LABELS);
    wait("8 points sent", || sent() == 8.0).await;
    assert_eq!(
        sink.series_count(),
        usize::from(temporality == OtlpTemporality::Cumulative)
    );
    cancel.cancel();
    task.await.unwrap();
    received(&b)
}

#[tokio::test]
async fn red_metrics_delta_points_carry_each_emission() {
    let got = red_metrics_run(OtlpTemporality::Delta).await;
    let d = AggregationTemporality::Delta as i32;
    let unset = "STATUS_CODE_UNSET".to_string();
    assert_eq!(
        got,
        vec![
            (unset.clone(), 10 * SEC, 11 * SEC, 3.0, vec![1, 1, 0, 1], d),
            (
                "STATUS_CODE_ERROR".to_string(),
                10 * SEC,
                11 * SEC,
                1.0,
                vec![0, 1, 0, 0],
                d
            ),
            (unset.clone(), 11 * SEC, 12 * SEC, 1.0, vec![0, 0, 1, 0], d),
            // The late update: only its own delta, over the same window.
            (unset, 10 * SEC, 11 * SEC, 1.0, vec![0, 1, 0, 0], d),
        ]
    );
}

#[tokio::test]
async fn red_metrics_cumulative_points_grow_from_a_fixed_start() {
    let got = red_metrics_run(OtlpTemporality::Cumulative).await;
    let c = AggregationTemporality::Cumulative as i32;
    let unset = "STATUS_CODE_UNSET".to_string();
    assert_eq!(
        got,
        vec![
            (unset.clone(), 10 * SEC, 11 * SEC, 3.0, vec![1, 1, 0, 1], c),
            (
                "STATUS_CODE_ERROR".to_string(),
                10 * SEC,
                11 * SEC,
                1.0,
                vec![0, 1, 0, 0],
                c
            ),
            (unset.clone(), 10 * SEC, 12 * SEC, 4.0, vec![1, 1, 1, 1], c),
            // The late update of window 10 grows the totals; time does not go back.
            (
                unset,
                10 * SEC,
                12 * SEC + 1_000_000,
                5.0,
                vec![1, 2, 1, 1],
                c
            ),
        ]
    );
}

#[tokio::test]
async fn metrics_queue_full_drops_and_counts_data_points() {
    let reg = Registry::new();
    let mut c = cfg("http://127.0.0.1:9");
    c.queue_size = 1;
    let (h, task) = start(&c, &reg, CancellationToken::new()).unwrap();
    let sink =
        red_metrics::OtlpRedMetrics::new(h, OtlpTemporality::Delta, BOUNDS.to_vec(), &[], 512);
    let k = Arc::new(SeriesKey {
        service_name: "a".into(),
        span_name: "b".into(),
        kind: SpanKind::Client,
        dims: Box::new([]),
        overflow: false,
    });
    // Nothing drains the queue: the second record (2 data points) is dropped and counted.
    sink.on_final(&[red_row(&k, 1, &[(StatusCode::Unset, 1.0)], true)]);
    sink.on_final(&[red_row(&k, 2, &[(StatusCode::Unset, 1.0)], true)]);
    assert_eq!(
        reg.value("redwatch_export_dropped_total", &METRICS_LABELS),
        2.0
    );
    assert_eq!(reg.value("redwatch_export_dropped_total", &LABELS), 0.0);
    drop(task);
}
