//! Bounded in bytes, end to end (docs/design.md, "State and its bounds"): the real `redwatch run`
//! binary runs as a child process with `limits.memory.limit = 256MiB` and is attacked over its
//! real OTLP listeners — OTLP/JSON that would amplify, 64 concurrent 16 MiB gRPC exports while
//! the pipeline is behind, 10 000 series with 1 MiB span names. Each test asserts that the
//! child's peak resident set (VmHWM in /proc/<pid>/status) stays under the limit plus
//! [`RSS_ALLOWANCE`], that good traffic around the attack is counted exactly, and that every
//! refusal is counted and, where the OTLP spec says so, retryable.

mod common;

use bytes::Bytes;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use prost::Message;
use std::collections::HashMap;

use std::process::Child;
use std::time::Duration;
use tonic::transport::Channel;

/// The memory limit every test configures.
const LIMIT: u64 = 256 << 20;
/// What the process holds beyond the accounted bytes (documented in docs/design.md): the
/// binary, DataFusion's and the runtime's own allocations, allocator slack, HTTP/2 receive
/// windows (256 KiB per stream, 1 MiB per connection) and the work of the operator task on the
/// batch it is processing.
const RSS_ALLOWANCE: u64 = 192 << 20;

/// A `redwatch run` child process with its listen addresses.
struct Redwatch {
    child: Child,
    addrs: HashMap<String, String>,
    /// Retryable refusals met by good traffic (counted by redwatch like any other).
    good_refusals: std::sync::atomic::AtomicU64,
}

impl Redwatch {
    fn start(extra: &[&str]) -> Redwatch {
        let sets: Vec<&str> = ["limits.memory.limit=256MiB", "limits.memory.spike=64MiB"]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        let listeners = ["otlp_grpc", "otlp_http", "prometheus", "sql_http"];
        let (child, addrs, lines) = spawn_redwatch_run(&sets, &[], &listeners);
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        Redwatch {
            child,
            addrs,
            good_refusals: Default::default(),
        }
    }

    /// The child's peak resident set, in bytes.
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/<pid>/status of redwatch");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmHWM")
            * 1024
    }

    fn assert_rss_bounded(&self, what: &str) {
        let peak = self.peak_rss();
        eprintln!(
            "{what}: peak RSS of redwatch {:.1} MiB (limit {} MiB + allowance {} MiB)",
            peak as f64 / 1048576.0,
            LIMIT >> 20,
            RSS_ALLOWANCE >> 20
        );
        assert!(
            peak < LIMIT + RSS_ALLOWANCE,
            "{what}: peak RSS {peak} bytes is over the limit plus the allowance"
        );
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addrs["otlp_grpc"]))
            .expect("uri")
            .connect()
            .await
            .expect("connect to OTLP/gRPC")
    }

    /// The `redwatch_*` self-metrics (the RED families are skipped while streaming the page).
    /// Also returns the size of the whole page.
    async fn self_metrics(&self) -> (Scrape, usize) {
        let url = format!("http://{}/metrics", self.addrs["prometheus"]);
        let mut r = reqwest::get(url).await.expect("/metrics answers");
        assert_eq!(r.status().as_u16(), 200);
        let (mut kept, mut partial, mut total) = (String::new(), Vec::new(), 0usize);
        while let Some(chunk) = r.chunk().await.expect("/metrics body") {
            total += chunk.len();
            partial.extend_from_slice(&chunk);
            while let Some(nl) = partial.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = partial.drain(..=nl).collect();
                if line.starts_with(b"redwatch_") {
                    kept.push_str(&String::from_utf8_lossy(&line));
                }
            }
        }
        (parse_exposition(&kept), total)
    }

    async fn sql_number(&self, query: &str) -> f64 {
        let url = format!("http://{}/api/v1/sql", self.addrs["sql_http"]);
        let r = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .body(serde_json::json!({ "query": query }).to_string())
            .send()
            .await
            .expect("SQL API answers");
        let v: serde_json::Value =
            serde_json::from_slice(&r.bytes().await.expect("answer")).expect("JSON answer");
        v["rows"][0]["n"].as_f64().unwrap_or(0.0)
    }

    /// Waits until the `red` table's 10 s windows count `expected` calls of `service` (provisional
    /// rows included), failing with the last count at the deadline.
    async fn assert_calls(&self, service: &str, expected: f64) {
        let q = format!(
            "SELECT sum(calls) AS n FROM red WHERE service_name = '{service}' AND window_size = '10s'"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let n = self.sql_number(&q).await;
            if n == expected {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{service}: the red table counts {n} calls, expected exactly {expected}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends one request of known good spans over gRPC, retrying while it is refused with
    /// retryable backpressure (as an OTLP exporter does); returns how many spans it carried.
    /// The refusals it met are added to `self.good_refusals`.
    async fn send_good(&self, phase: &str) -> f64 {
        let spans = good_spans(phase);
        let body = Bytes::from(trace_request(Some(GOOD_SERVICE), &spans).encode_to_vec());
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        let reply = loop {
            match grpc_raw(self.channel().await, TRACE_EXPORT, body.clone(), false).await {
                Ok(r) => break r,
                Err(s)
                    if s.code() == tonic::Code::ResourceExhausted
                        && std::time::Instant::now() < deadline =>
                {
                    self.good_refusals
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(s) => panic!("good request ({phase}) refused: {s:?}"),
            }
        };
        let resp = ExportTraceServiceResponse::decode(reply).expect("export response");
        assert_eq!(rejected_spans(&resp), 0);
        spans.len() as f64
    }
}

impl Drop for Redwatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rejected(m: &Scrape, receiver: &str, reason: &str) -> f64 {
    m.get(
        "redwatch_requests_rejected_total",
        &[
            ("receiver", receiver),
            ("signal", "spans"),
            ("reason", reason),
        ],
    )
    .unwrap_or(0.0)
}

/// `{},` repeated into a body of `size` bytes of OTLP/JSON spans.
fn amplifying_json(size: usize) -> Vec<u8> {
    let head = br#"{"resourceSpans":[{"scopeSpans":[{"spans":["#;
    let tail = b"{}]}]}]}";
    let mut body = head.to_vec();
    while body.len() + 3 + tail.len() < size {
        body.extend_from_slice(b"{},");
    }
    body.extend_from_slice(tail);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amplifying_json_is_refused_before_it_is_parsed() {
    let rw = Redwatch::start(&[]);
    let mut good = rw.send_good("before").await;
    // 8 at once, each just under the 16 MiB body limit: parsed naively, ~5.6M spans each.
    let body = Bytes::from(amplifying_json((16 << 20) - 1024));
    let url = format!("http://{}/v1/traces", rw.addrs["otlp_http"]);
    let client = reqwest::Client::new();
    let sends = (0..8).map(|_| {
        client
            .post(&url)
            .header("content-type", CT_JSON)
            .body(body.clone())
            .send()
    });
    let mut compressed = Vec::new();
    {
        use std::io::Write;
        let mut z = flate2::write::GzEncoder::new(&mut compressed, flate2::Compression::best());
        z.write_all(&body).expect("gzip");
        z.finish().expect("gzip");
    }
    for r in futures::future::join_all(sends).await {
        let r = r.expect("answer");
        assert_eq!(r.status().as_u16(), 400);
        let v: serde_json::Value =
            serde_json::from_slice(&r.bytes().await.expect("body")).expect("JSON error body");
        assert_eq!(v["code"], 3, "INVALID_ARGUMENT: {v}");
        assert!(
            v["message"]
                .as_str()
                .unwrap_or("")
                .contains("too many items"),
            "{v}"
        );
    }
    // The same 16 MiB as a ~16 KiB gzip body.
    assert!(compressed.len() < 64 << 10);
    let r = client
        .post(&url)
        .header("content-type", CT_JSON)
        .header("content-encoding", "gzip")
        .body(compressed)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status().as_u16(), 400);
    good += rw.send_good("after").await;

    let (m, _) = rw.self_metrics().await;
    assert_eq!(rejected(&m, "otlp_http", "too_many_items"), 9.0);
    assert_eq!(rejected(&m, "otlp_http", "memory_limit"), 0.0);
    rw.assert_calls(GOOD_SERVICE, good).await;
    rw.assert_rss_bounded("9 amplifying 16 MiB OTLP/JSON bodies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_16mib_grpc_exports_get_retryable_backpressure() {
    // The case is about memory, not read time: on a loaded CI machine a 15 MiB stream sharing a
    // connection window with 7 others may take longer than the default 30 s to arrive.
    let rw = Redwatch::start(&["receivers.otlp.grpc.request_timeout=5m"]);
    let mut good = rw.send_good("before").await;
    // One ~15.5 MiB export of valid spans of another service.
    let bulk = |n: usize| -> Vec<SpanSpec> {
        (0..n)
            .map(|i| {
                SpanSpec::new(&format!("bulk op {}", i % 50))
                    .status(StatusCode::Ok)
                    .duration_ms(1 + i as u64 % 200)
            })
            .collect()
    };
    let per_span = trace_request(Some("bulk"), &bulk(1000)).encoded_len() / 1000;
    let per_request = (31 << 19) / per_span;
    let body = Bytes::from(trace_request(Some("bulk"), &bulk(per_request)).encode_to_vec());
    assert!(
        body.len() > 14 << 20 && body.len() < 16 << 20,
        "{}",
        body.len()
    );
    // 64 at once over 8 connections (8 streams each), while the operator task is busy.
    let mut channels = Vec::new();
    for _ in 0..8 {
        channels.push(rw.channel().await);
    }
    let sends =
        (0..64).map(|i| grpc_raw(channels[i % 8].clone(), TRACE_EXPORT, body.clone(), false));
    let (mut ok, mut refused) = (0.0, 0.0);
    for r in futures::future::join_all(sends).await {
        match r {
            Ok(reply) => {
                let resp = ExportTraceServiceResponse::decode(reply).expect("response");
                assert_eq!(rejected_spans(&resp), 0);
                ok += 1.0;
            }
            Err(s) => {
                assert_eq!(
                    s.code(),
                    tonic::Code::ResourceExhausted,
                    "{:?}: {}",
                    s.code(),
                    s.message()
                );
                // Retryable: the OTLP spec (and the Collector) retry RESOURCE_EXHAUSTED only
                // with RetryInfo.
                assert!(
                    s.metadata().get_bin("google.rpc.retryinfo-bin").is_some()
                        && !s.details().is_empty(),
                    "RESOURCE_EXHAUSTED without RetryInfo: {s:?}"
                );
                refused += 1.0;
            }
        }
    }
    assert!(
        refused > 0.0,
        "64 x 16 MiB under a 256 MiB limit: some must be refused"
    );
    good += rw.send_good("after").await;

    let (m, _) = rw.self_metrics().await;
    let counted =
        rejected(&m, "otlp_grpc", "memory_limit") + rejected(&m, "otlp_grpc", "backpressure");
    let good_refused = rw.good_refusals.load(std::sync::atomic::Ordering::Relaxed) as f64;
    assert_eq!(
        counted,
        refused + good_refused,
        "every refusal counted ({ok} accepted, {good_refused} retries of good requests)"
    );
    assert!(
        m.sum("redwatch_memory_limiter_refused_total") >= rejected(&m, "otlp_grpc", "memory_limit")
    );
    eprintln!(
        "64 x {} MiB: {ok} accepted, {refused} refused with RetryInfo",
        body.len() >> 20
    );
    rw.assert_calls("bulk", ok * per_request as f64).await;
    rw.assert_calls(GOOD_SERVICE, good).await;
    rw.assert_rss_bounded("64 concurrent 16 MiB gRPC exports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_series_with_1mib_names_are_truncated_and_bounded() {
    let rw = Redwatch::start(&[]);
    let good = rw.send_good("before").await;
    let url = format!("http://{}/v1/traces", rw.addrs["otlp_http"]);
    let client = reqwest::Client::new();
    let (series, per_request) = (10_000usize, 8usize);
    let mut sent = 0usize;
    let mut refused_retried = 0u64;
    while sent < series {
        let spans: Vec<SpanSpec> = (sent..(sent + per_request).min(series))
            .map(|i| {
                // Unique in the first bytes, so the names stay distinct after truncation.
                let mut name = format!("{i:05} ");
                name.push_str(&"x".repeat((1 << 20) - name.len()));
                SpanSpec::new(&name)
            })
            .collect();
        let n = spans.len();
        let body = trace_request(Some("wide"), &spans).encode_to_vec();
        // zstd on the wire, as the Collector sends it.
        let body = Bytes::from(zstd::bulk::compress(&body, 1).expect("zstd"));
        loop {
            let r = client
                .post(&url)
                .header("content-type", CT_PROTOBUF)
                .header("content-encoding", "zstd")
                .body(body.clone())
                .send()
                .await
                .expect("answer");
            match r.status().as_u16() {
                200 => break,
                429 => {
                    assert!(r.headers().contains_key("retry-after"));
                    refused_retried += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                s => panic!("unexpected status {s}: {:?}", r.text().await),
            }
        }
        sent += n;
    }
    let (m, page) = rw.self_metrics().await;
    assert_eq!(
        m.value("redwatch_strings_truncated_total", &[]),
        series as f64
    );
    assert_eq!(
        rejected(&m, "otlp_http", "memory_limit") + rejected(&m, "otlp_http", "backpressure"),
        refused_retried as f64
    );
    // Series past red.cardinality_limit_bytes (16 MiB of keys: ~4 000 names of 4 KiB) fold
    // into the overflow series, counted.
    let overflowed = m.value("redwatch_red_overflow_spans_total", &[]);
    assert!(overflowed > 5_000.0, "{overflowed} spans overflowed");
    rw.assert_calls("wide", (series as f64) - overflowed).await;
    rw.assert_calls(GOOD_SERVICE, good).await;
    eprintln!("/metrics page: {page} bytes");
    rw.assert_rss_bounded("10 000 series with 1 MiB span names");
}
