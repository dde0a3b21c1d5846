//! The measured load phase: generators on the client core against the server, with readings of
//! the server's CPU, memory and engine figures before and after.

use super::*;

/// What the load phase measured.
pub(crate) struct RunFigures {
    pub(crate) gen: GenInfo,
    pub(crate) spans_per_s: f64,
    pub(crate) server_cpu_pct: f64,
    pub(crate) spans_per_cpu_s: f64,
    pub(crate) errors: u64,
    pub(crate) error_codes: String,
    pub(crate) rejected: u64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
    pub(crate) server_accepted_per_s: f64,
    pub(crate) rss_kib: u64,
    pub(crate) hwm_kib: u64,
    pub(crate) other_load_pct: f64,
    pub(crate) client_cpu_pct: f64,
    pub(crate) max_bytes_per_series_late: f64,
    pub(crate) samples: usize,
}

pub(crate) struct GenInfo {
    pub(crate) bytes_per_span: f64,
    pub(crate) series: usize,
}

/// Server-side readings at one instant.
#[derive(Clone, Copy)]
pub(crate) struct Reading {
    pub(crate) at: Instant,
    pub(crate) server_cpu: f64,
    pub(crate) core_busy: f64,
    pub(crate) client_cpu: f64,
    pub(crate) figures: EngineFigures,
}

pub(crate) fn read_now(server_pid: u32, core: usize, prometheus: &str) -> Reading {
    let figures = probe::scrape(prometheus)
        .map(|t| EngineFigures::from_text(&t))
        .unwrap_or_default();
    Reading {
        at: Instant::now(),
        server_cpu: probe::cpu_secs(server_pid).unwrap_or(0.0),
        core_busy: probe::cpu_busy_secs(core).unwrap_or(0.0),
        client_cpu: probe::cpu_secs(std::process::id()).unwrap_or(0.0),
        figures,
    }
}

pub(crate) fn load(
    args: &Args,
    plan: &Plan,
    server: &Server,
    tls: Option<redwatch::config::TlsClientConfig>,
) -> anyhow::Result<RunFigures> {
    let set = payload::generate(&plan.shape, plan.requests, wall_clock());
    check_shift(&set)?;
    let gen = GenInfo {
        bytes_per_span: set.bytes_per_span(),
        series: set.series,
    };
    eprintln!(
        "load: {} spans in {} requests, {:.1} B/span, {} series, {:.1}% errors",
        set.spans,
        set.payloads.len(),
        set.bytes_per_span(),
        set.series,
        100.0 * set.error_spans as f64 / set.spans as f64
    );
    let bplan = blast_plan(args, plan, server, tls);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let probe = Probe {
        pid: server.pid,
        core: args.server_core,
        prometheus: server.prometheus.clone(),
    };
    let state_mode = args.mode == Mode::State;
    let measured = rt.block_on(blast_and_probe(bplan, set, probe, state_mode))?;
    Ok(figures(gen, measured, server.pid))
}

/// The load client's settings for this run.
fn blast_plan(
    args: &Args,
    plan: &Plan,
    server: &Server,
    tls: Option<redwatch::config::TlsClientConfig>,
) -> blast::BlastPlan {
    blast::BlastPlan {
        endpoint: format!(
            "{}://{}",
            if tls.is_some() { "https" } else { "http" },
            server.grpc
        ),
        token: tls.as_ref().map(|_| BENCH_TOKEN.to_string()),
        tls,
        concurrency: args.concurrency,
        connections: args.connections,
        warmup: Duration::from_secs_f64(args.warmup),
        window: Duration::from_secs_f64(plan.secs),
        request_timeout: Duration::from_secs(10),
        rate: plan.rate,
        gzip: args.gzip,
        fresh_durations: args.mode == Mode::State,
    }
}

/// Where the server's readings come from.
#[derive(Clone)]
struct Probe {
    pid: u32,
    core: usize,
    prometheus: String,
}

impl Probe {
    /// Reads the server at `t`. Probes run on the blocking pool (same pinned core) so they
    /// never stall the workers.
    async fn at(&self, t: tokio::time::Instant) -> anyhow::Result<Reading> {
        let (pid, core, prom) = (self.pid, self.core, self.prometheus.clone());
        tokio::time::sleep_until(t).await;
        tokio::task::spawn_blocking(move || read_now(pid, core, &prom))
            .await
            .map_err(|e| anyhow!("probe: {e}"))
    }
}

/// What the load phase saw: the client's warmup and window stats, and the server's readings
/// at the window's start and end (and every 5 s in between in state mode).
struct Measured {
    warm: blast::PhaseStats,
    window: blast::PhaseStats,
    start: Reading,
    end: Reading,
    samples: Vec<Reading>,
}

/// Runs the load client and reads the server at the window's edges.
async fn blast_and_probe(
    bplan: blast::BlastPlan,
    set: payload::PayloadSet,
    probe: Probe,
    state_mode: bool,
) -> anyhow::Result<Measured> {
    let (ttx, trx) = tokio::sync::oneshot::channel();
    let blast = tokio::spawn(async move { blast::run(&bplan, set, ttx).await });
    let timing = trx
        .await
        .map_err(|_| anyhow!("the load client did not start"))?;
    let start = probe.at(timing.window_start).await?;
    let mut samples = Vec::new();
    if state_mode {
        let mut t = timing.window_start;
        loop {
            t += Duration::from_secs(5);
            if t >= timing.window_end {
                break;
            }
            let r = probe.at(t).await?;
            eprintln!(
                "  t={:>4.0}s active_series={} state_bytes={} entries={} bytes/series={:.0} late={}",
                r.at.duration_since(start.at).as_secs_f64(),
                r.figures.active_series,
                r.figures.state_bytes,
                r.figures.state_entries,
                r.figures.bytes_per_series(),
                r.figures.late_dropped
            );
            samples.push(r);
        }
    }
    let end = probe.at(timing.window_end).await?;
    let (warm, window) = blast
        .await
        .map_err(|e| anyhow!("load client: {e}"))?
        .map_err(|e| anyhow!("load client: {e}"))?;
    Ok(Measured {
        warm,
        window,
        start,
        end,
        samples,
    })
}

/// The run's figures from what the load phase measured.
fn figures(gen: GenInfo, m: Measured, server_pid: u32) -> RunFigures {
    let Measured {
        warm,
        mut window,
        start,
        end,
        samples,
    } = m;
    let dt = end.at.duration_since(start.at).as_secs_f64();
    let cpu = end.server_cpu - start.server_cpu;
    let spans_per_s = window.spans as f64 / dt;
    let (rss_kib, hwm_kib) = probe::memory_kib(server_pid).unwrap_or((0, 0));
    if warm.ok == 0 && window.ok == 0 {
        eprintln!(
            "load: no request succeeded; first error: {:?}",
            window.first_error.as_ref().or(warm.first_error.as_ref())
        );
    } else if let Some(e) = &window.first_error {
        eprintln!("load: first error in the window: {e}");
    }
    let half = samples.len() / 2;
    let max_late = samples[half..]
        .iter()
        .map(|r| r.figures.bytes_per_series())
        .fold(0.0, f64::max);
    RunFigures {
        gen,
        spans_per_s,
        server_cpu_pct: 100.0 * cpu / dt,
        spans_per_cpu_s: if cpu > 0.0 {
            window.spans as f64 / cpu
        } else {
            0.0
        },
        errors: window.error_count() + warm.error_count(),
        error_codes: window.error_codes(),
        rejected: window.rejected_spans + warm.rejected_spans,
        p50: window.latency_ms(0.5),
        p99: window.latency_ms(0.99),
        max: window.latency_ms(1.0),
        server_accepted_per_s: (end.figures.accepted - start.figures.accepted) / dt,
        rss_kib,
        hwm_kib,
        other_load_pct: (100.0 * ((end.core_busy - start.core_busy) - cpu) / dt).max(0.0),
        client_cpu_pct: 100.0 * (end.client_cpu - start.client_cpu) / dt,
        max_bytes_per_series_late: max_late,
        samples: samples.len(),
    }
}

/// Checks the timestamp shift on one payload: prost decodes it and every end time moved.
fn check_shift(set: &payload::PayloadSet) -> anyhow::Result<()> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let Some(p) = set.payloads.first() else {
        bail!("no payloads")
    };
    let ends = |b: &[u8]| -> anyhow::Result<Vec<u64>> {
        let r = ExportTraceServiceRequest::decode(b)?;
        Ok(r.resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| s.end_time_unix_nano)
            .collect())
    };
    let (a, b) = (ends(&p.bytes)?, ends(&p.shifted(1_000_000_007))?);
    if a.len() != b.len() || a.iter().zip(&b).any(|(x, y)| x + 1_000_000_007 != *y) {
        bail!("timestamp shift is broken");
    }
    Ok(())
}
