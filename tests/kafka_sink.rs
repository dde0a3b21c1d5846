//! The Kafka sink (`exporters.kafka`) against a real broker (tansu, started by
//! tests/run-all.sh; see TESTING.md): known spans in through the Kafka source, the RED topic read
//! back by an independent consumer, decoded, and compared exactly per window, series and status;
//! keys and partitions as docs/kafka-exactness.md specifies.

#![cfg(feature = "kafka")]

mod common;
mod kafka_support;

use common::{
    good_spans, noise, now_ns, test_config, trace_request, ExpectedCalls, Load, GOOD_SERVICE, SEC,
};
use kafka_support::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use redwatch::config::{Config, KafkaEncoding, KafkaExporterConfig, KafkaReceiverConfig};
use redwatch_connectors::kafka::records::partition_for;
use redwatch_connectors::kafka::KafkaSink;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const SINK_PARTITIONS: i32 = 3;
const DEADLINE: Duration = Duration::from_secs(120);

fn sink_config(
    source_topic: &str,
    metrics_topic: &str,
    encoding: KafkaEncoding,
    queue_size: usize,
) -> Config {
    let mut cfg = test_config();
    cfg.receivers.kafka = Some(KafkaReceiverConfig {
        brokers: vec![brokers()],
        traces_topic: source_topic.to_string(),
        metrics_topic: None,
        group_id: unique("redwatch_sink_test"),
        ..Default::default()
    });
    cfg.exporters.kafka = Some(KafkaExporterConfig {
        brokers: vec![brokers()],
        metrics_topic: Some(metrics_topic.to_string()),
        spans_topic: None,
        encoding,
        queue_size,
        ..Default::default()
    });
    cfg
}

/// The default producer queue.
const QUEUE: usize = 100_000;

async fn red_windows_reach_the_sink_topic_exactly(encoding: KafkaEncoding, queue_size: usize) {
    let source = unique("otlp_spans_sink_src");
    let red = unique("redwatch_red_sink");
    create_topic(&source, 2).await;
    create_topic(&red, SINK_PARTITIONS).await;
    let e = common::start(&sink_config(&source, &red, encoding, queue_size)).await;
    let prom = e.addrs["prometheus"].to_string();
    wait_assigned_among(
        std::slice::from_ref(&prom),
        &source,
        2,
        DEADLINE,
        String::new,
    )
    .await;

    // The same series in every message, messages spread over a few windows.
    let mut truth: BTreeMap<WindowSeries, f64> = BTreeMap::new();
    let mut exp = ExpectedCalls::default();
    let p = producer_on(&brokers());
    for i in 0..10 {
        let spans = good_spans("sink");
        for s in &spans {
            let start = s.end / SECOND * SECOND;
            *truth
                .entry((
                    start,
                    s.name.clone(),
                    s.kind.as_str_name().to_string(),
                    s.status.as_str_name().to_string(),
                ))
                .or_default() += 1.0;
        }
        exp.add(Some(GOOD_SERVICE), &spans);
        let payload = trace_request(Some(GOOD_SERVICE), &spans).encode_to_vec();
        produce(&p, &source, i % 2, &payload).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    common::wait_until(DEADLINE, "the 10 messages are consumed", || async {
        e.registry.total("redwatch_kafka_messages_total") >= 10.0
    })
    .await;
    // Every window final on /metrics first: the sink writes the same final windows.
    common::assert_calls_exactly(&e, &exp).await;

    let (b, t) = (brokers(), red.clone());
    let want = truth.clone();
    let records = tokio::task::spawn_blocking(move || {
        read_topic(&b, &t, SINK_PARTITIONS, DEADLINE, |r| {
            sink_calls(encoding, r) == want
        })
    })
    .await
    .expect("reader thread");
    let got = sink_calls(encoding, &records);
    let d = diff(&truth, &got);
    assert!(
        d.is_empty(),
        "RED windows on the sink topic differ from the truth ({} records):\n{d}",
        records.len()
    );

    // Keys: <window_size>|<window_start>|<share>|<service>|<span name>|<kind>, the share being
    // the source partition the spans came from; one series (all its shares), one partition.
    let mut partition_of_series: BTreeMap<String, i32> = BTreeMap::new();
    for r in &records {
        let req = decode_metrics(encoding, &r.payload);
        let calls = calls_in(&req);
        let ((start, name, kind, _), _, ws) = calls.first().expect("a record has data points");
        let series = format!("{GOOD_SERVICE}|{name}|{kind}");
        let shares: Vec<String> = (0..2)
            .map(|p| format!("{ws}|{start}|{source}:{p}|{series}"))
            .collect();
        assert!(shares.contains(&r.key), "key {} of {req:?}", r.key);
        assert_eq!(ws, "1s");
        assert_eq!(
            r.partition,
            partition_for(r.key.as_bytes(), SINK_PARTITIONS),
            "key {} is in the partition its series hashes to",
            r.key
        );
        let p = *partition_of_series
            .entry(series.clone())
            .or_insert(r.partition);
        assert_eq!(p, r.partition, "series {series} is spread over partitions");
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let duration = metrics
            .iter()
            .find(|m| m.name == "traces.span.metrics.duration")
            .expect("the duration histogram is written next to the calls");
        assert_eq!(duration.unit, "ms");
        let Some(metric::Data::Histogram(h)) = &duration.data else {
            panic!("duration is a histogram: {duration:?}")
        };
        let n: u64 = h.data_points.iter().map(|d| d.count).sum();
        let c: f64 = calls.iter().map(|(_, v, _)| v).sum();
        assert_eq!(
            n as f64, c,
            "histogram counts agree with calls in {}",
            r.key
        );
    }
    assert!(
        partition_of_series.len() >= 3,
        "several series were written: {partition_of_series:?}"
    );
    assert_eq!(
        e.registry
            .total("redwatch_kafka_sink_delivery_failed_total"),
        0.0
    );
    assert_eq!(e.registry.total("redwatch_kafka_sink_dropped_total"), 0.0);
    e.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_windows_are_written_as_otlp_proto_keyed_by_window_and_series() {
    red_windows_reach_the_sink_topic_exactly(KafkaEncoding::OtlpProto, QUEUE).await;
}

/// A producer queue of one record: every window's records wait for room in turn (backpressure
/// on the operator task) instead of being dropped, and the topic still holds every window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_sink_queue_makes_ingest_wait_and_drops_nothing() {
    red_windows_reach_the_sink_topic_exactly(KafkaEncoding::OtlpProto, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn red_windows_are_written_as_otlp_json() {
    red_windows_reach_the_sink_topic_exactly(KafkaEncoding::OtlpJson, QUEUE).await;
}

/// Anomaly and prediction spans go out as `ExportTraceServiceRequest`s keyed by trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signal_spans_are_written_as_trace_requests_keyed_by_trace_id() {
    let topic = unique("redwatch_signals");
    create_topic(&topic, 2).await;
    let mut cfg = Config::default();
    cfg.exporters.kafka = Some(KafkaExporterConfig {
        brokers: vec![brokers()],
        metrics_topic: None,
        spans_topic: Some(topic.clone()),
        ..Default::default()
    });
    let registry = redwatch_engine::telemetry::Registry::new();
    let sink = KafkaSink::new(
        cfg.exporters.kafka.as_ref(),
        &cfg.fleet,
        &cfg.red,
        cfg.receivers.kafka.as_ref(),
        &registry,
    )
    .expect("sink starts");
    let span = |id: u8| Span {
        trace_id: vec![id; 16],
        span_id: vec![id; 8],
        name: "anomaly_detected".into(),
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        ..Default::default()
    };
    for id in [1u8, 2, 3] {
        assert!(sink.export_spans(ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span(id)],
                ..Default::default()
            }],
            ..Default::default()
        }));
    }
    let s2 = sink.clone();
    tokio::task::spawn_blocking(move || s2.flush(Duration::from_secs(30)))
        .await
        .expect("flush");
    let (b, t) = (brokers(), topic.clone());
    let records =
        tokio::task::spawn_blocking(move || read_topic(&b, &t, 2, DEADLINE, |r| r.len() >= 3))
            .await
            .expect("reader thread");
    assert_eq!(records.len(), 3, "{records:?}");
    for r in &records {
        let req = ExportTraceServiceRequest::decode(r.payload.as_slice())
            .expect("an ExportTraceServiceRequest");
        let s = &req.resource_spans[0].scope_spans[0].spans[0];
        let hex: String = s.trace_id.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(r.key, hex);
        assert_eq!(s.name, "anomaly_detected");
    }
    assert_eq!(
        registry.value("redwatch_kafka_sink_records_total", &[("kind", "spans")]),
        3.0
    );
    assert_eq!(registry.total("redwatch_kafka_sink_delivered_total"), 3.0);
}

/// With problems on (the default), the spans topic carries the same problem traces as the OTLP
/// export: a latency spike on one series is one `problem_detected` root span (keyed by its
/// trace id, the problem id) whose children are the member incidents' `anomaly_detected` spans,
/// and a `problem_resolved` span when it resolves; no member span keeps its own incident trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn problem_traces_are_written_to_the_spans_topic() {
    let topic = unique("redwatch_problem_signals");
    create_topic(&topic, 2).await;
    let mut cfg = test_config();
    cfg.exporters.kafka = Some(KafkaExporterConfig {
        brokers: vec![brokers()],
        metrics_topic: None,
        spans_topic: Some(topic.clone()),
        ..Default::default()
    });
    assert!(cfg.problems.enabled, "problems are on by default");
    cfg.anomaly.warmup_windows = 20;
    cfg.anomaly.detectors.robust_z.baseline_windows = 20;
    cfg.forecast.enabled = false;
    // The replayed history is late for the wall-clock watermark: accepted within the lateness.
    cfg.windows.allowed_lateness = Duration::from_secs(120);
    let e = common::start(&cfg).await;

    // 45 windows of 40 calls of ~20 ms on one series, windows 30..35 at ~600 ms.
    const SPIKE: std::ops::Range<u64> = 30..35;
    let first = now_ns() / SEC - 45;
    let load = Load::start(&e, &["payments"], first, 40, |k, i| {
        let base = if SPIKE.contains(&k) { 600.0 } else { 20.0 };
        (base * (1.0 + 0.2 * noise(k, i))) as u64
    });
    let (b, t) = (brokers(), topic.clone());
    let resolved = |r: &[Record]| {
        r.iter()
            .flat_map(|r| spans_of(&r.payload))
            .any(|s| s.name == "problem_resolved")
    };
    let records = tokio::task::spawn_blocking(move || {
        read_topic(&b, &t, 2, Duration::from_secs(150), resolved)
    })
    .await
    .expect("reader thread");
    load.stop().await;

    let mut spans: Vec<(String, Span)> = Vec::new();
    for r in &records {
        let got = spans_of(&r.payload);
        assert_eq!(got.len(), 1, "one span per record: {got:?}");
        // Keyed by trace id: a problem's spans stay in one partition, in order.
        assert_eq!(r.key, hex(&got[0].trace_id));
        spans.extend(got.into_iter().map(|s| (r.key.clone(), s)));
    }
    let roots: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "problem_detected")
        .collect();
    assert_eq!(roots.len(), 1, "one problem for the spike: {roots:?}");
    let root = roots[0];
    assert!(
        root.parent_span_id.is_empty(),
        "the problem span is the root"
    );
    let a = |s: &Span, k: &str| attr(&s.attributes, k).unwrap_or_default();
    assert_eq!(a(root, "problem.id"), hex(&root.trace_id));
    assert_eq!(a(root, "problem.cause.service"), "payments");
    assert_eq!(a(root, "problem.cause.span"), "GET /pay");
    assert_eq!(root.start_time_unix_nano, (first + SPIKE.start) * SEC);

    let members: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "anomaly_detected")
        .collect();
    let n: usize = a(root, "problem.members").parse().expect("problem.members");
    assert!(n >= 2, "p50 and p99 of the spike: {n}");
    let in_problem: Vec<&Span> = members
        .iter()
        .copied()
        .filter(|s| s.trace_id == root.trace_id)
        .collect();
    let incidents: BTreeSet<String> = in_problem
        .iter()
        .map(|s| a(s, "anomaly.incident_id"))
        .collect();
    assert_eq!(incidents.len(), n, "every member incident is in the trace");
    // One incident, one trace: every span of the spike's incidents, alarms (open / ongoing
    // windows) and resolutions, is in the problem's trace.
    assert_eq!(
        in_problem.len(),
        members.len(),
        "no anomaly span outside the problem's trace: {members:?}"
    );
    let resolved = in_problem
        .iter()
        .filter(|s| a(s, "anomaly.incident_state") == "resolved")
        .count();
    let alarms = in_problem.len() - resolved;
    assert!(alarms >= 2 * n, "a spike of 5 windows: {alarms}");
    // Each incident resolved before its problem did (and its record went first, on the same
    // partition).
    assert_eq!(
        resolved, n,
        "every member incident's resolution is in the trace"
    );
    common::assert_member_tree(root, &in_problem, n);
    let done: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "problem_resolved")
        .collect();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].trace_id, root.trace_id);
    assert_eq!(done[0].parent_span_id, root.span_id);
    assert_eq!(
        e.registry
            .value("redwatch_kafka_sink_records_total", &[("kind", "spans")]),
        spans.len() as f64,
        "every span the sink wrote was read back"
    );
    e.shutdown().await;
}

/// The spans of one sink record.
fn spans_of(payload: &[u8]) -> Vec<Span> {
    let req = ExportTraceServiceRequest::decode(payload).expect("an ExportTraceServiceRequest");
    req.resource_spans
        .into_iter()
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
