//! The demo's workload generator: a small shop of services whose traces have realistic,
//! log-normal latencies and whose traffic carries scheduled incidents (latency spike, error burst,
//! traffic drop, slow latency ramp). It speaks real OTLP/gRPC, so it can feed any receiver.

mod workload;

pub use workload::{default_incidents, Incident, IncidentKind, Workload, CYCLE_S};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How the generator runs.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// OTLP/gRPC endpoint, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// Target spans per second.
    pub rate: f64,
    /// Stop after this long (None = until cancelled).
    pub duration: Option<Duration>,
    /// Seed of the random generator (same seed, same traces).
    pub seed: u64,
}

/// Totals of a generator run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerateStats {
    pub requests: u64,
    pub spans_sent: u64,
    pub failed_requests: u64,
}

/// Errors that stop the generator.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("invalid OTLP endpoint `{0}`: {1}")]
    Endpoint(String, String),
}

/// Sends the workload to `opts.endpoint` until cancelled or `opts.duration` elapses.
pub async fn run(
    opts: GenerateOptions,
    workload: &mut Workload,
    cancel: CancellationToken,
    mut on_progress: impl FnMut(&GenerateStats),
) -> Result<GenerateStats, GenerateError> {
    let channel = tonic::transport::Channel::from_shared(opts.endpoint.clone())
        .map_err(|e| GenerateError::Endpoint(opts.endpoint.clone(), e.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    let mut client =
        TraceServiceClient::new(channel).send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let tick = Duration::from_millis(100);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut stats = GenerateStats::default();
    let mut budget = 0.0f64;
    let mut last_warn: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = interval.tick() => {}
        }
        if opts.duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
        budget += opts.rate * tick.as_secs_f64();
        let want = budget.floor() as usize;
        if want == 0 {
            continue;
        }
        let now = redwatch_engine::time::wall_clock();
        let req = workload.request(now, want);
        let n = workload::span_count(&req) as u64;
        budget -= n as f64;
        stats.requests += 1;
        match client.export(req).await {
            Ok(_) => stats.spans_sent += n,
            Err(status) => {
                stats.failed_requests += 1;
                if last_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    last_warn = Some(Instant::now());
                    tracing::warn!(
                        "generator: export to {} failed: {} {}",
                        opts.endpoint,
                        status.code(),
                        status.message()
                    );
                }
            }
        }
        on_progress(&stats);
    }
    Ok(stats)
}
