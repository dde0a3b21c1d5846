//! The demo's payment latency spike is one problem whose first likely cause is payment's
//! server span, published within 2 windows (issue 17).
//!
//! The demo's own workload (`generate::Workload`, its default incident schedule) feeds an
//! engine with the default windows and detectors. Its history is replayed fast — the 10-minute
//! detector warm-up and the first cycle — in event-time order, so the second cycle's payment
//! spike arrives within a minute of real time; then requests keep coming at the real pace.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use redwatch::config::Config;
use redwatch::generate::{default_incidents, Workload, CYCLE_S};
use std::time::Duration;

const SEC: u64 = 1_000_000_000;
const W: u64 = 10 * SEC;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_payment_spike_is_one_problem_caused_by_payments_server_span() {
    // Default windows, detectors and problems; ephemeral ports; the replayed history is late
    // for the wall clock only if the source idles, so a long lateness keeps it.
    let mut cfg: Config = test_config();
    let d = Config::default();
    cfg.windows = d.windows.clone();
    cfg.windows.allowed_lateness = Duration::from_secs(900);
    assert!(cfg.problems.enabled);
    let e = start(&cfg).await;

    let spike = &default_incidents()[0];
    assert_eq!((spike.name, spike.service), ("latency spike", "payment"));
    // The second cycle's spike starts 20 s before now; the workload starts a cycle before.
    let now = now_ns() / W * W;
    let spike_start = now - 20 * SEC;
    let start_ns = spike_start - ((CYCLE_S + spike.start_s) as u64) * SEC;
    let spike_end = spike_start + ((spike.end_s - spike.start_s) as u64) * SEC;
    let mut workload = Workload::new(42, start_ns);
    let addr = e.addrs["otlp_grpc"];
    let load = tokio::spawn(async move {
        let mut client = TraceServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let mut t = start_ns + SEC;
        while t < spike_end + 6 * W {
            sleep_until_wall(t).await;
            // ~100 spans per second of event time.
            let r = client.export(workload.request(t, 100)).await;
            assert!(r.is_ok(), "engine refused the load: {r:?}");
            t += SEC;
        }
    });

    let ms = |ns: u64| ns / 1_000_000;
    let q = format!(
        "SELECT DISTINCT problem_id FROM problem_members \
         WHERE service_name = 'payment' AND incident_start >= to_timestamp_millis({}) \
         AND incident_start < to_timestamp_millis({})",
        ms(spike_start - W),
        ms(spike_end)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let found = loop {
        let r = sql_answer(&e, &q).await;
        if r["rows"].as_array().is_some_and(|a| !a.is_empty()) {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no problem on payment within 240 s"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let ids = found["rows"].as_array().unwrap();
    assert_eq!(ids.len(), 1, "one problem for the spike: {found}");
    let id = ids[0]["problem_id"].as_str().unwrap().to_string();
    let p = sql_answer(
        &e,
        &format!(
            "SELECT state, cause_service, cause_span, cause_kind, cause_signal, cause_evidence, \
             CAST(onset AS BIGINT) AS onset_ms, CAST(opened_at AS BIGINT) AS opened_ms, summary \
             FROM problems WHERE problem_id = '{id}' ORDER BY updated_at LIMIT 1"
        ),
    )
    .await;
    let row = &p["rows"][0];
    assert_eq!(row["state"], "open", "{p}");
    assert_eq!(row["cause_service"], "payment", "{p}");
    assert_eq!(row["cause_span"], "oteldemo.PaymentService/Charge", "{p}");
    assert_eq!(row["cause_kind"], "SPAN_KIND_SERVER", "{p}");
    let opened = row["opened_ms"].as_u64().unwrap();
    // Published at most 2 windows after the spike's first window closed.
    assert!(
        opened <= ms(spike_start + 3 * W),
        "published {} ms after the spike began: {p}",
        opened - ms(spike_start)
    );
    eprintln!(
        "problem {id}: published {} ms after the spike began; {}",
        opened.saturating_sub(ms(spike_start)),
        row["summary"]
    );
    load.abort();
    e.shutdown().await;
}
