//! Bad input end to end (README.md, "Errors the sender sees"): every rejection gets a clear answer to the sender
//! (gRPC status, HTTP code with a `google.rpc.Status` body in the request's encoding, or OTLP
//! partial success), moves the right `redwatch_*_rejected_total{reason}` counter, and leaves the
//! good data around it — before, after and, for partial success, inside the same request —
//! counted exactly in `traces_span_metrics_calls_total`.
//!
//! Each test runs its own in-process engine on ephemeral ports (see `common::test_config`).

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use redwatch::config::Config;
use redwatch::server::Engine;
use std::time::Duration;
use tonic::Code;

const KIB: usize = 1024;

/// The test config with receiver size limits (byte sizes parsed as a config file gives them).
fn with_limits(max_grpc: usize, max_http: usize) -> Config {
    let mut cfg = test_config();
    if let Some(g) = cfg.receivers.otlp.grpc.as_mut() {
        g.max_message_size = serde_json::from_value(serde_json::json!(max_grpc)).expect("size");
    }
    if let Some(h) = cfg.receivers.otlp.http.as_mut() {
        h.max_body_size = serde_json::from_value(serde_json::json!(max_http)).expect("size");
    }
    cfg
}

/// A valid trace request of at least `min_bytes` encoded bytes (service `oversized`).
fn big_request(min_bytes: usize) -> (ExportTraceServiceRequest, Vec<u8>) {
    let n = min_bytes / 60 + 1;
    let spans: Vec<SpanSpec> = (0..n)
        .map(|i| SpanSpec::new(&format!("oversized operation number {i:08}")))
        .collect();
    let req = trace_request(Some("oversized"), &spans);
    let bytes = req.encode_to_vec();
    assert!(bytes.len() > min_bytes, "{} > {min_bytes}", bytes.len());
    (req, bytes)
}

/// A valid request cut short inside its first `ResourceSpans`, so its framing is broken.
fn truncated(full: &[u8]) -> Vec<u8> {
    assert!(full.len() > 100, "the request should be long enough to cut");
    full[..full.len() * 2 / 3].to_vec()
}

/// An engine between two rounds of good traffic: `start` sends good spans before the bad input,
/// `finish` sends more after it, asserts that every good span (and nothing else) was counted
/// exactly once, and shuts the engine down.
struct Bracketed {
    e: Engine,
    exp: ExpectedCalls,
}

impl Bracketed {
    async fn start(cfg: &Config) -> Self {
        let e = start(cfg).await;
        let mut exp = ExpectedCalls::default();
        send_good(&e, &mut exp, "before").await;
        Self { e, exp }
    }

    async fn finish(mut self) {
        send_good(&self.e, &mut self.exp, "after").await;
        assert_calls_exactly(&self.e, &self.exp).await;
        self.e.shutdown().await;
    }
}

/// Sends `good_spans(phase)` through `grpc_raw` (gzipped on the wire if `gzip`), asserts all of
/// them were accepted (`accepted` names the call if it fails) and records them in `exp`.
async fn send_raw_good(
    e: &Engine,
    exp: &mut ExpectedCalls,
    phase: &str,
    gzip: bool,
    accepted: &str,
) {
    let spans = good_spans(phase);
    let body = trace_request(Some(GOOD_SERVICE), &spans).encode_to_vec();
    let ok = grpc_raw(grpc_channel(e).await, TRACE_EXPORT, body, gzip)
        .await
        .expect(accepted);
    let resp = ExportTraceServiceResponse::decode(ok).expect("an ExportTraceServiceResponse");
    assert_eq!(rejected_spans(&resp), 0);
    exp.add(Some(GOOD_SERVICE), &spans);
}

/// Exports `req` over gRPC and asserts a partial success rejecting exactly `rejected` spans,
/// with a message.
async fn grpc_partial_success(e: &Engine, req: ExportTraceServiceRequest, rejected: i64) {
    let resp = grpc_export(e, req).await.expect("partial success is OK");
    let ps = resp.partial_success.expect("partial_success is set");
    assert_eq!(ps.rejected_spans, rejected);
    assert!(
        !ps.error_message.is_empty(),
        "error_message explains the rejection"
    );
}

/// POSTs `req` as OTLP/JSON and asserts a 200 whose partial success rejects exactly `rejected`
/// spans, with a message when it rejects any.
async fn post_json_traces(e: &Engine, req: &ExportTraceServiceRequest, rejected: i64) {
    let r = http_post(e, "/v1/traces", Some(CT_JSON), None, to_json(req)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let (got, msg) = json_partial_success(&r.json());
    assert_eq!(got, rejected, "{:?}", r.json());
    if rejected > 0 {
        assert!(!msg.is_empty(), "errorMessage explains the rejection");
    }
}

/// POSTs each OTLP/JSON body to `path` and asserts a 400 INVALID_ARGUMENT that mentions the
/// body's needles.
async fn assert_json_bodies_refused(e: &Engine, path: &str, cases: &[(&str, &[&str])]) {
    for (body, needles) in cases {
        let body = body.as_bytes().to_vec();
        let r = http_post(e, path, Some(CT_JSON), None, body).await;
        assert_http_json_error(&r, 400, Some(RPC_INVALID_ARGUMENT), needles);
    }
}

/// Sends `points` good metric points over raw gRPC and asserts they were all accepted.
async fn send_good_metrics_grpc(e: &Engine, points: usize) {
    let body = metrics_request("checkout", points).encode_to_vec();
    let ok = grpc_raw(grpc_channel(e).await, METRICS_EXPORT, body, false)
        .await
        .expect("good metrics accepted");
    assert_eq!(decode_metrics_response(&ok).partial_success, None);
}

// ---------------------------------------------------------------------------------------------
// 1. truncated protobuf
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_protobuf_over_grpc_is_invalid_argument() {
    let mut t = Bracketed::start(&test_config()).await;
    let e = &t.e;

    let full = trace_request(Some("truncated"), &good_spans("bad")).encode_to_vec();
    let res = grpc_raw(grpc_channel(e).await, TRACE_EXPORT, truncated(&full), false).await;
    assert_status(res, Code::InvalidArgument, &["malformed"]);
    // The same bytes uncut go through the same raw path: the cut was the cause.
    send_raw_good(
        e,
        &mut t.exp,
        "raw whole",
        false,
        "the whole request is accepted",
    )
    .await;

    let m = scrape(e).await;
    assert_request_rejections(&m, &[("otlp_grpc", "spans", "malformed", 1.0)]);
    assert_span_rejections(&m, &[]);

    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_protobuf_over_http_is_400() {
    let t = Bracketed::start(&test_config()).await;
    let e = &t.e;

    let full = trace_request(Some("truncated"), &good_spans("bad")).encode_to_vec();
    let r = http_post(e, "/v1/traces", Some(CT_PROTOBUF), None, truncated(&full)).await;
    assert_http_proto_error(&r, 400, Some(RPC_INVALID_ARGUMENT), &["malformed"]);

    let m = scrape(e).await;
    assert_request_rejections(&m, &[("otlp_http", "spans", "malformed", 1.0)]);
    assert_span_rejections(&m, &[]);

    t.finish().await;
}

// ---------------------------------------------------------------------------------------------
// 2. invalid JSON
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_over_http_is_400() {
    let mut t = Bracketed::start(&test_config()).await;
    let e = &t.e;

    let cases: [(&str, &[&str]); 3] = [
        // Not JSON at all (cut mid-document): serde_json names line and column.
        (
            r#"{"resourceSpans": [{"scopeSpans": ["#,
            &["json", "line", "column"],
        ),
        // JSON, but a span name that is a number.
        (
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":42,"endTimeUnixNano":"1"}]}]}]}"#,
            &["json", "invalid type"],
        ),
        // JSON, but resourceSpans is an object instead of an array.
        (
            r#"{"resourceSpans":{"scopeSpans":[]}}"#,
            &["json", "invalid type"],
        ),
    ];
    assert_json_bodies_refused(e, "/v1/traces", &cases).await;

    // Good OTLP/JSON still goes through.
    let spans = good_spans("after json");
    post_json_traces(e, &trace_request(Some(GOOD_SERVICE), &spans), 0).await;
    t.exp.add(Some(GOOD_SERVICE), &spans);

    let m = scrape(e).await;
    assert_request_rejections(&m, &[("otlp_http", "spans", "invalid_json", 3.0)]);
    assert_span_rejections(&m, &[]);

    t.finish().await;
}

// ---------------------------------------------------------------------------------------------
// 3. wrong content type
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_content_type_over_http_is_415() {
    let t = Bracketed::start(&test_config()).await;
    let e = &t.e;

    // A perfectly good protobuf body, labelled text/plain.
    let body = trace_request(Some("wrong-type"), &good_spans("bad")).encode_to_vec();
    let r = http_post(e, "/v1/traces", Some("text/plain"), None, body.clone()).await;
    assert_http_json_error(&r, 415, None, &["content-type", "text/plain"]);
    // No Content-Type at all.
    let r = http_post(e, "/v1/traces", None, None, body).await;
    assert_http_json_error(&r, 415, None, &["content-type"]);

    let m = scrape(e).await;
    assert_request_rejections(&m, &[("otlp_http", "spans", "unsupported_media_type", 2.0)]);
    assert_span_rejections(&m, &[]);

    t.finish().await;
}

// ---------------------------------------------------------------------------------------------
// 4. oversized bodies
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_over_http_is_413() {
    let t = Bracketed::start(&with_limits(16 << 20, 64 * KIB)).await;
    let e = &t.e;

    let (req, bytes) = big_request(100 * KIB);
    let r = http_post(e, "/v1/traces", Some(CT_PROTOBUF), None, bytes).await;
    assert_http_proto_error(&r, 413, Some(RPC_RESOURCE_EXHAUSTED), &["max_body_size"]);
    let json = to_json(&req);
    assert!(json.len() > 64 * KIB);
    let r = http_post(e, "/v1/traces", Some(CT_JSON), None, json).await;
    assert_http_json_error(&r, 413, Some(RPC_RESOURCE_EXHAUSTED), &["max_body_size"]);

    let m = scrape(e).await;
    assert_request_rejections(&m, &[("otlp_http", "spans", "too_large", 2.0)]);

    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_over_grpc_is_resource_exhausted() {
    let t = Bracketed::start(&with_limits(64 * KIB, 16 << 20)).await;
    let e = &t.e;

    let (req, _) = big_request(100 * KIB);
    let res = grpc_export(e, req).await;
    assert_status(res, Code::ResourceExhausted, &["too large"]);

    let m = scrape(e).await;
    assert_request_rejections(&m, &[("otlp_grpc", "spans", "too_large", 1.0)]);

    t.finish().await;
}

// ---------------------------------------------------------------------------------------------
// 5. gzip bombs and broken gzip
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bomb_and_bad_gzip_over_http() {
    let mut t = Bracketed::start(&with_limits(16 << 20, 64 * KIB)).await;
    let e = &t.e;

    // 16 MiB of zeros squeeze into a few KiB: well under the limit on the wire, 256 times over
    // it inflated.
    let bomb = gzip(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 64 * KIB, "bomb is {} bytes", bomb.len());
    let r = http_post(
        e,
        "/v1/traces",
        Some(CT_PROTOBUF),
        Some("gzip"),
        bomb.clone(),
    )
    .await;
    assert_http_proto_error(
        &r,
        413,
        Some(RPC_RESOURCE_EXHAUSTED),
        &["decompressed", "max_body_size"],
    );
    let r = http_post(e, "/v1/traces", Some(CT_JSON), Some("gzip"), bomb).await;
    assert_http_json_error(
        &r,
        413,
        Some(RPC_RESOURCE_EXHAUSTED),
        &["decompressed", "max_body_size"],
    );

    // Not gzip at all, though labelled so.
    let r = http_post(
        e,
        "/v1/traces",
        Some(CT_PROTOBUF),
        Some("gzip"),
        b"this is not gzip data".to_vec(),
    )
    .await;
    assert_http_proto_error(&r, 400, Some(RPC_INVALID_ARGUMENT), &["gzip"]);
    // gzip cut short.
    let whole = gzip(&trace_request(Some("cut"), &good_spans("bad")).encode_to_vec());
    let r = http_post(
        e,
        "/v1/traces",
        Some(CT_PROTOBUF),
        Some("gzip"),
        whole[..whole.len() / 2].to_vec(),
    )
    .await;
    assert_http_proto_error(&r, 400, Some(RPC_INVALID_ARGUMENT), &["gzip"]);

    // A properly gzipped good request is accepted, so the refusals above were about the bodies.
    let spans = good_spans("gzipped");
    let body = gzip(&trace_request(Some(GOOD_SERVICE), &spans).encode_to_vec());
    let r = http_post(e, "/v1/traces", Some(CT_PROTOBUF), Some("gzip"), body).await;
    assert_eq!(r.status, 200, "{r:?}");
    t.exp.add(Some(GOOD_SERVICE), &spans);

    let m = scrape(e).await;
    assert_request_rejections(
        &m,
        &[
            ("otlp_http", "spans", "too_large", 2.0),
            ("otlp_http", "spans", "bad_encoding", 2.0),
        ],
    );

    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bomb_over_grpc_is_resource_exhausted() {
    let mut t = Bracketed::start(&with_limits(64 * KIB, 16 << 20)).await;
    let e = &t.e;

    // The client gzips 16 MiB of zeros into a message of a few KiB.
    let res = grpc_raw(
        grpc_channel(e).await,
        TRACE_EXPORT,
        vec![0u8; 16 << 20],
        true,
    )
    .await;
    assert_status(res, Code::ResourceExhausted, &["decompress"]);

    // A gzip-compressed good message is accepted.
    let accepted = "a gzipped good message is accepted";
    send_raw_good(e, &mut t.exp, "gzipped", true, accepted).await;

    let m = scrape(e).await;
    assert_request_rejections(&m, &[("otlp_grpc", "spans", "too_large", 1.0)]);

    t.finish().await;
}

// ---------------------------------------------------------------------------------------------
// 6. missing service.name
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_service_name_counts_as_unknown_service() {
    let mut t = Bracketed::start(&test_config()).await;
    let e = &t.e;

    // gRPC: a resource without service.name (3 spans) and no resource at all (2 spans).
    let no_name = good_spans("no name")[..3].to_vec();
    let no_resource = good_spans("no resource")[3..5].to_vec();
    let mut rs_none = resource_spans(None, &no_resource);
    rs_none.resource = None;
    let req = ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(None, &no_name), rs_none],
    };
    let resp = grpc_export(e, req).await.expect("accepted");
    assert_eq!(rejected_spans(&resp), 0);
    t.exp.add(None, &no_name);
    t.exp.add(None, &no_resource);

    // HTTP JSON: a resource without service.name (6 spans).
    let json_spans = good_spans("json no name");
    post_json_traces(e, &trace_request(None, &json_spans), 0).await;
    t.exp.add(None, &json_spans);

    let m = scrape(e).await;
    assert_eq!(
        m.value("redwatch_spans_missing_service_name_total", &[]),
        (no_name.len() + no_resource.len() + json_spans.len()) as f64
    );
    assert_request_rejections(&m, &[]);
    assert_span_rejections(&m, &[]);

    t.finish().await;
}

// ---------------------------------------------------------------------------------------------
// 7. invalid and future timestamps: partial success
// ---------------------------------------------------------------------------------------------

/// Good spans interleaved with two zero/inverted end times and one end time 2 h ahead.
fn mixed_timestamps(phase: &str) -> (Vec<SpanSpec>, Vec<SpanSpec>) {
    let good = good_spans(phase);
    let now = now_ns();
    let bad = vec![
        SpanSpec::new(&format!("{phase} zero")).end(0),
        // End 0 with a real start (set by `set_inverted_start`): inverted as well as zero.
        SpanSpec::new(&format!("{phase} inverted")).end(0),
        SpanSpec::new(&format!("{phase} future")).end(now + 2 * 3600 * 1_000_000_000),
    ];
    (good, bad)
}

fn interleave(good: &[SpanSpec], bad: &[SpanSpec]) -> Vec<SpanSpec> {
    let mut all = Vec::new();
    let mut b = bad.iter();
    for g in good {
        all.push(g.clone());
        if let Some(x) = b.next() {
            all.push(x.clone());
        }
    }
    all.extend(b.cloned());
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_and_future_timestamps_get_partial_success() {
    let mut t = Bracketed::start(&test_config()).await;
    let e = &t.e;

    // gRPC.
    let (good, bad) = mixed_timestamps("grpc mixed");
    let mut req = trace_request(Some(GOOD_SERVICE), &interleave(&good, &bad));
    set_inverted_start(&mut req.resource_spans[0], "grpc mixed inverted");
    grpc_partial_success(e, req, bad.len() as i64).await;
    t.exp.add(Some(GOOD_SERVICE), &good);

    // HTTP JSON.
    let (good, bad) = mixed_timestamps("json mixed");
    let mut req = trace_request(Some(GOOD_SERVICE), &interleave(&good, &bad));
    set_inverted_start(&mut req.resource_spans[0], "json mixed inverted");
    post_json_traces(e, &req, bad.len() as i64).await;
    t.exp.add(Some(GOOD_SERVICE), &good);

    let m = scrape(e).await;
    assert_span_rejections(
        &m,
        &[
            ("otlp_grpc", "invalid_timestamp", 2.0),
            ("otlp_grpc", "future_timestamp", 1.0),
            ("otlp_http", "invalid_timestamp", 2.0),
            ("otlp_http", "future_timestamp", 1.0),
        ],
    );
    assert_request_rejections(&m, &[]);

    t.finish().await;
}

/// Gives the span named `name` a start of now (its end stays 0).
fn set_inverted_start(rs: &mut ResourceSpans, name: &str) {
    let span = rs.scope_spans[0]
        .spans
        .iter_mut()
        .find(|s| s.name == name)
        .expect("the inverted span is in the request");
    span.start_time_unix_nano = now_ns();
    assert_eq!(span.end_time_unix_nano, 0);
}

// ---------------------------------------------------------------------------------------------
// 8. late data
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_for_purged_windows_are_rejected_as_late() {
    let mut t = Bracketed::start(&test_config()).await;
    let e = &t.e;
    // Let the watermark advance past the good data: windows 10 minutes back are long purged.
    wait_windows_final(e).await;
    let ten_min_ago = now_ns() - 600 * 1_000_000_000;

    // gRPC: 2 late spans among good ones.
    let good = good_spans("grpc with late");
    let late: Vec<SpanSpec> = (0..2)
        .map(|i| SpanSpec::new(&format!("grpc late {i}")).end(ten_min_ago))
        .collect();
    let req = trace_request(Some(GOOD_SERVICE), &interleave(&good, &late));
    grpc_partial_success(e, req, 2).await;
    t.exp.add(Some(GOOD_SERVICE), &good);

    // HTTP JSON: 3 late spans among good ones.
    let good = good_spans("json with late");
    let late: Vec<SpanSpec> = (0..3)
        .map(|i| SpanSpec::new(&format!("json late {i}")).end(ten_min_ago))
        .collect();
    let req = trace_request(Some(GOOD_SERVICE), &interleave(&good, &late));
    post_json_traces(e, &req, 3).await;
    t.exp.add(Some(GOOD_SERVICE), &good);

    let m = scrape(e).await;
    assert_span_rejections(
        &m,
        &[("otlp_grpc", "late", 2.0), ("otlp_http", "late", 3.0)],
    );
    assert_eq!(
        m.value("redwatch_late_dropped_total", &[("signal", "spans")]),
        5.0
    );
    assert_request_rejections(&m, &[]);

    t.finish().await;
}

// ---------------------------------------------------------------------------------------------
// 9. huge cardinality
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_cardinality_folds_into_the_overflow_series() {
    const LIMIT: usize = 1000;
    const REQUESTS: usize = 100;
    const PER_REQUEST: usize = 1000;
    const TOTAL: usize = REQUESTS * PER_REQUEST;
    // Bound on the RED operator's state. Per (window, series) entry the state holds a fixed
    // aggregate plus a sparse sketch and sparse buckets of one value — well under 2 KiB. At most
    // LIMIT + 1 series exist, and an entry lives from its window's start until end + allowed
    // lateness (1 s + 5 s), so about 7 windows hold entries at once: 1001 * 7 * 2 KiB ≈ 14 MiB
    // even if every window saw every series. Unbounded growth (one entry per distinct span
    // name: 100,000) would be far above it.
    const STATE_BOUND: f64 = 16.0 * 1024.0 * 1024.0;

    let mut cfg = test_config();
    cfg.red.cardinality_limit = LIMIT;
    let e = start(&cfg).await;
    let channel = grpc_channel(&e).await;
    let mut client =
        opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient::new(
            channel,
        );

    let mut max_state = 0.0f64;
    for r in 0..REQUESTS {
        let spans: Vec<SpanSpec> = (0..PER_REQUEST)
            .map(|i| SpanSpec::new(&format!("op-{:06}", r * PER_REQUEST + i)))
            .collect();
        let resp = client
            .export(trace_request(Some("cardinality"), &spans))
            .await
            .unwrap_or_else(|s| panic!("request {r} refused: {s:?}"))
            .into_inner();
        assert_eq!(rejected_spans(&resp), 0, "request {r}");
        if r % 10 == 9 {
            barrier(&e).await;
            let b = e
                .registry
                .value("redwatch_window_state_bytes", &[("operator", "red")]);
            max_state = max_state.max(b);
        }
    }
    wait_windows_final(&e).await;
    let m = scrape(&e).await;
    let calls = m.calls();
    let overflow_key = |k: &String| k.contains("otel_metric_overflow=\"true\"");
    let series = calls.keys().filter(|k| !overflow_key(k)).count();
    let normal: f64 = calls
        .iter()
        .filter(|(k, _)| !overflow_key(k))
        .map(|(_, v)| v)
        .sum();
    let overflow: f64 = calls
        .iter()
        .filter(|(k, _)| overflow_key(k))
        .map(|(_, v)| v)
        .sum();
    println!(
        "series {series}, normal calls {normal}, overflow calls {overflow}, max state bytes {max_state}"
    );
    assert!(
        series <= LIMIT,
        "{series} distinct series exported, limit {LIMIT}"
    );
    assert!(
        overflow > 0.0,
        "an otel_metric_overflow=\"true\" series carries the rest"
    );
    assert_eq!(
        normal + overflow,
        TOTAL as f64,
        "every span counted exactly once"
    );
    assert_eq!(overflow, (TOTAL - LIMIT) as f64, "overflow series calls");
    assert_eq!(
        m.value("redwatch_red_overflow_spans_total", &[]),
        (TOTAL - LIMIT) as f64
    );
    let active = m.value("redwatch_red_active_series", &[]);
    assert!(
        active <= LIMIT as f64,
        "redwatch_red_active_series = {active}"
    );
    let state = m.value("redwatch_window_state_bytes", &[("operator", "red")]);
    max_state = max_state.max(state);
    assert!(max_state > 0.0, "window state bytes are reported");
    assert!(
        max_state < STATE_BOUND,
        "window state grew to {max_state} bytes (bound {STATE_BOUND})"
    );
    assert_request_rejections(&m, &[]);
    assert_span_rejections(&m, &[]);
    e.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 10. backpressure
// ---------------------------------------------------------------------------------------------

/// What one flood request got.
enum FloodOutcome {
    Ok(Vec<SpanSpec>),
    Refused,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backpressure_answers_retryable_errors_and_loses_nothing_accepted() {
    const PER_PROTOCOL: usize = 16;
    const SPANS: usize = 20;
    let mut cfg = test_config();
    cfg.limits.queue_capacity = 1;
    cfg.limits.enqueue_timeout = Duration::from_millis(1);
    let e = std::sync::Arc::new(start(&cfg).await);
    let ballast = add_ballast_source(&e).await;
    let mut exp = ExpectedCalls::default();
    barrier(&e).await;
    send_good(&e, &mut exp, "before").await;

    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(grpc_channel(&e).await);
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let (mut grpc_refused, mut http_refused, mut ok_requests, mut rounds) = (0u64, 0u64, 0u64, 0);
    let until = std::time::Instant::now() + Duration::from_secs(60);
    // One round is normally enough; more only if a ballast was aggregated before the flood
    // reached the queue (a much faster machine or build).
    while (grpc_refused == 0 || http_refused == 0) && std::time::Instant::now() < until {
        rounds += 1;
        barrier(&e).await;
        queue_ballast(&e, ballast, &mut exp).await;
        let mut tasks = Vec::new();
        for i in 0..PER_PROTOCOL {
            let spans: Vec<SpanSpec> = (0..SPANS)
                .map(|j| SpanSpec::new(&format!("flood-{}", (i + j) % 8)))
                .collect();
            let body = trace_request(Some("flood"), &spans).encode_to_vec();
            let channel = channels[i % channels.len()].clone();
            tasks.push(tokio::spawn(async move {
                match grpc_raw(channel, TRACE_EXPORT, body, false).await {
                    Ok(b) => {
                        let resp = ExportTraceServiceResponse::decode(b).expect("response");
                        assert_eq!(rejected_spans(&resp), 0);
                        (true, FloodOutcome::Ok(spans))
                    }
                    Err(st) => {
                        let delay = retry_delay(&st);
                        assert_status(Err::<(), _>(st), Code::ResourceExhausted, &["queue"]);
                        assert!(
                            delay.is_some_and(|d| d > Duration::ZERO),
                            "RESOURCE_EXHAUSTED carries RetryInfo (else OTLP clients drop the data)"
                        );
                        (true, FloodOutcome::Refused)
                    }
                }
            }));
            let spans: Vec<SpanSpec> = (0..SPANS)
                .map(|j| SpanSpec::new(&format!("flood-{}", (i + j) % 8)))
                .collect();
            let body = trace_request(Some("flood"), &spans).encode_to_vec();
            let (e2, http) = (e.clone(), http.clone());
            tasks.push(tokio::spawn(async move {
                let r =
                    http_post_with(&http, &e2, "/v1/traces", Some(CT_PROTOBUF), None, body).await;
                match r.status {
                    200 => (false, FloodOutcome::Ok(spans)),
                    429 => {
                        let retry = r
                            .headers
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        assert!(!retry.is_empty(), "429 carries Retry-After");
                        assert_http_proto_error(&r, 429, Some(RPC_RESOURCE_EXHAUSTED), &["queue"]);
                        (false, FloodOutcome::Refused)
                    }
                    _ => panic!("unexpected flood answer {r:?}"),
                }
            }));
        }
        for t in tasks {
            let (is_grpc, outcome) = t.await.expect("flood task");
            match outcome {
                FloodOutcome::Ok(spans) => {
                    ok_requests += 1;
                    exp.add(Some("flood"), &spans);
                }
                FloodOutcome::Refused if is_grpc => grpc_refused += 1,
                FloodOutcome::Refused => http_refused += 1,
            }
        }
    }
    println!(
        "backpressure: {rounds} rounds, {ok_requests} accepted, {grpc_refused} gRPC and \
         {http_refused} HTTP refusals"
    );
    assert!(
        grpc_refused > 0,
        "no gRPC request saw RESOURCE_EXHAUSTED in {rounds} rounds"
    );
    assert!(
        http_refused > 0,
        "no HTTP request saw 429 in {rounds} rounds"
    );

    let m = scrape(&e).await;
    assert_request_rejections(
        &m,
        &[
            ("otlp_grpc", "spans", "backpressure", grpc_refused as f64),
            ("otlp_http", "spans", "backpressure", http_refused as f64),
        ],
    );

    // Once the queue has drained, a lone request fits again.
    barrier(&e).await;
    send_good(&e, &mut exp, "after").await;
    assert_calls_exactly(&e, &exp).await;
    match std::sync::Arc::try_unwrap(e) {
        Ok(e) => e.shutdown().await,
        Err(_) => panic!("engine still shared"),
    }
}

// ---------------------------------------------------------------------------------------------
// 11. unknown methods and paths
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_grpc_methods_and_http_routes_are_refused() {
    let t = Bracketed::start(&test_config()).await;
    let e = &t.e;
    let body = trace_request(Some("unknown"), &good_spans("bad")).encode_to_vec();

    let res = grpc_raw(
        grpc_channel(e).await,
        "/opentelemetry.proto.collector.trace.v1.TraceService/Push",
        body.clone(),
        false,
    )
    .await;
    assert_status(res, Code::Unimplemented, &[]);
    let res = grpc_raw(
        grpc_channel(e).await,
        "/acme.Telemetry/Export",
        body.clone(),
        false,
    )
    .await;
    assert_status(res, Code::Unimplemented, &[]);
    let res = grpc_raw(
        grpc_channel(e).await,
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
        body,
        false,
    )
    .await;
    assert_status(res, Code::Unimplemented, &[]);

    let r = http_request(e, reqwest::Method::GET, "/v1/traces").await;
    assert_eq!(r.status, 405, "GET /v1/traces: {r:?}");
    let allow = r
        .headers
        .get(reqwest::header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        allow.contains("POST"),
        "405 names the allowed method: Allow = {allow:?}"
    );
    let r = http_request(e, reqwest::Method::POST, "/v1/logs").await;
    assert_eq!(r.status, 404, "POST /v1/logs: {r:?}");
    let r = http_request(e, reqwest::Method::GET, "/nope").await;
    assert_eq!(r.status, 404, "GET /nope: {r:?}");

    // HTTP requests for no export endpoint are counted (signal "none"). Unknown gRPC methods are
    // answered UNIMPLEMENTED by tonic's router before a receiver sees them.
    let m = scrape(e).await;
    assert_request_rejections(
        &m,
        &[
            ("otlp_http", "none", "method_not_allowed", 1.0),
            ("otlp_http", "none", "not_found", 2.0),
        ],
    );
    assert_span_rejections(&m, &[]);

    t.finish().await;
}

// ---------------------------------------------------------------------------------------------
// 12. the metrics endpoint
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_metrics_over_grpc_is_invalid_argument() {
    let t = Bracketed::start(&test_config()).await;
    let e = &t.e;
    send_good_metrics_grpc(e, 4).await;

    let full = metrics_request("truncated", 20).encode_to_vec();
    let res = grpc_raw(
        grpc_channel(e).await,
        METRICS_EXPORT,
        truncated(&full),
        false,
    )
    .await;
    assert_status(res, Code::InvalidArgument, &["malformed"]);

    send_good_metrics_grpc(e, 3).await;

    let m = scrape(e).await;
    assert_request_rejections(&m, &[("otlp_grpc", "metric_points", "malformed", 1.0)]);
    assert_eq!(
        m.value(
            "redwatch_metric_points_accepted_total",
            &[("receiver", "otlp_grpc")]
        ),
        7.0
    );

    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_metrics_over_http_are_400_with_a_reason() {
    let t = Bracketed::start(&test_config()).await;
    let e = &t.e;

    // Truncated protobuf.
    let full = metrics_request("truncated", 20).encode_to_vec();
    let r = http_post(e, "/v1/metrics", Some(CT_PROTOBUF), None, truncated(&full)).await;
    assert_http_proto_error(&r, 400, Some(RPC_INVALID_ARGUMENT), &["malformed"]);
    // A metric name that is not UTF-8.
    let mut bad = metrics_request("utf8", 1).encode_to_vec();
    let at = bad
        .windows(6)
        .position(|w| w == b"system")
        .expect("metric name in the request");
    bad[at] = 0xff;
    let r = http_post(e, "/v1/metrics", Some(CT_PROTOBUF), None, bad).await;
    assert_http_proto_error(
        &r,
        400,
        Some(RPC_INVALID_ARGUMENT),
        &["utf-8", "Metric.name"],
    );
    // Invalid OTLP/JSON: cut mid-document, and a histogram count that is not a number.
    let cases: [(&str, &[&str]); 2] = [
        (
            r#"{"resourceMetrics": [{"scopeMetrics": ["#,
            &["json", "line"],
        ),
        (
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"h","histogram":{"dataPoints":[{"timeUnixNano":"1","count":"x"}]}}]}]}]}"#,
            &["json", "histogram"],
        ),
    ];
    assert_json_bodies_refused(e, "/v1/metrics", &cases).await;
    // Good metrics still go through.
    let good = metrics_request("checkout", 5).encode_to_vec();
    let r = http_post(e, "/v1/metrics", Some(CT_PROTOBUF), None, good).await;
    assert_eq!(r.status, 200, "{r:?}");

    let m = scrape(e).await;
    assert_request_rejections(
        &m,
        &[
            ("otlp_http", "metric_points", "malformed", 1.0),
            ("otlp_http", "metric_points", "invalid_utf8", 1.0),
            ("otlp_http", "metric_points", "invalid_json", 2.0),
        ],
    );
    assert_eq!(
        m.value(
            "redwatch_metric_points_accepted_total",
            &[("receiver", "otlp_http")]
        ),
        5.0
    );

    t.finish().await;
}

/// The `google.rpc.RetryInfo.retry_delay` in a status's `grpc-status-details-bin`, decoded with
/// message types written here from google/rpc/status.proto and error_details.proto.
fn retry_delay(st: &tonic::Status) -> Option<Duration> {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        retry_delay: Option<prost_types::Duration>,
    }
    let status = RpcStatus::decode(st.details()).ok()?;
    let any = status
        .details
        .iter()
        .find(|a| a.type_url == "type.googleapis.com/google.rpc.RetryInfo")?;
    let d = RetryInfo::decode(any.value.as_slice()).ok()?.retry_delay?;
    Some(Duration::new(
        d.seconds.max(0) as u64,
        d.nanos.max(0) as u32,
    ))
}
