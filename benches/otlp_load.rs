//! End-to-end OTLP/gRPC load benchmark of the release `redwatch run` binary, with its baseline
//! measured in the same run on this 2-core machine.
//!
//! `cargo bench --bench otlp_load -- [--secs 15] [--concurrency 8] [--gzip] [--mode state]`
//!
//! Throughput mode (default), in one run:
//! 1. baseline: a child pinned to the server core decodes the same payloads with prost (and with
//!    redwatch's scanner, and scanner + RED aggregation) for `--baseline-secs` each;
//! 2. starts `redwatch run` (`REDWATCH_BIN`, else the `redwatch` binary cargo built with this
//!    bench) pinned to the server core with a temporary config (ports 0, nothing late, enough
//!    cardinality) and waits for its `listening` lines;
//! 3. loads it over OTLP/gRPC from the client core (this process re-executes itself under
//!    `taskset`): `--concurrency` requests in flight, warmup, then the measured window;
//! 4. reads the server's `/metrics`, CPU time and RSS, stops it with SIGTERM and prints a table
//!    plus one machine-readable `RESULT` line.
//!
//! State mode (`--mode state`): 100 services × 100 operations = 10 000 series at a steady rate
//! with default window settings for longer than one window-plus-lateness period, sampling
//! `redwatch_window_state_bytes{operator="red"}` per active series every 5 s.
//!
//! `--phase profile --iters N` runs only the scanner + RED aggregation loop (for callgrind/perf;
//! `--decode-only` leaves out the aggregation, `--now-ns T` fixes the clock: see
//! `benches/callgrind.sh`).

#[path = "load/blast.rs"]
mod blast;
#[path = "load/measure.rs"]
mod measure;
mod payload;
#[path = "load/probe.rs"]
mod probe;
#[path = "load/server.rs"]
mod server;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, ValueEnum};
use measure::load;
use probe::EngineFigures;
use redwatch::config::Config;
use redwatch_connectors::otlp::decode::{decode_traces_proto, DecodeSettings};
use redwatch_engine::model::SourceId;
use redwatch_engine::telemetry::Registry;
use redwatch_engine::time::{wall_clock, TimePolicy};
use redwatch_operators::red::RedOperator;
use server::{engine_config, tls_files, Server, BENCH_TOKEN};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Set in the re-executed, pinned copy of the orchestrator.
const PINNED_ENV: &str = "REDWATCH_OTLP_LOAD_PINNED";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Maximum accepted spans/s against the prost baseline.
    Throughput,
    /// Window state bytes per active series with 10 000 series.
    State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    Orchestrate,
    Baseline,
    Profile,
}

#[derive(Parser, Debug, Clone)]
#[command(
    about = "End-to-end OTLP/gRPC load benchmark of `redwatch run` with a same-run prost baseline"
)]
struct Args {
    #[arg(long, value_enum, default_value = "throughput")]
    mode: Mode,
    /// Measured window in seconds [throughput: 15, state: 120].
    #[arg(long)]
    secs: Option<f64>,
    /// Load before the window, not counted.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Export requests in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// HTTP/2 connections (0 = one per in-flight request).
    #[arg(long, default_value_t = 0)]
    connections: usize,
    /// Send gzip-compressed requests (compressed once up front; timestamps then stay fixed).
    #[arg(long)]
    gzip: bool,
    /// Serve and load OTLP/gRPC over TLS with a bearer token (`tls` and `auth` on the receiver;
    /// certificates made by rcgen for this run). `benches/tls_compare.sh` runs with and without.
    #[arg(long)]
    tls: bool,
    /// Run the server with `limits.memory: null` (the memory limiter accounts but never
    /// refuses); `benches/limiter_compare.sh` runs with and without it back to back.
    #[arg(long)]
    no_memory_limit: bool,
    /// Spans per second to offer (0 = as fast as the server answers) [throughput: 0, state: 100000].
    #[arg(long)]
    rate: Option<f64>,
    /// Distinct requests of 500 spans to cycle through [throughput: 256, state: 400].
    #[arg(long)]
    requests: Option<usize>,
    /// Services in the generated data [throughput: 20, state: 100].
    #[arg(long)]
    services: Option<usize>,
    /// Operations per service [throughput: 50, state: 100].
    #[arg(long)]
    ops: Option<usize>,
    /// Seconds per baseline decoder.
    #[arg(long, default_value_t = 5.0)]
    baseline_secs: f64,
    #[arg(long, default_value_t = 0)]
    server_core: usize,
    #[arg(long, default_value_t = 1)]
    client_core: usize,
    /// The redwatch binary [env REDWATCH_BIN, else the one cargo built with this bench].
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Profile phase: passes over the payloads.
    #[arg(long, default_value_t = 40)]
    iters: usize,
    /// Profile phase: decode only, no RED aggregation.
    #[arg(long)]
    decode_only: bool,
    /// Profile phase: this clock (ns since the epoch) instead of the wall clock, so that
    /// instruction counts repeat exactly (`benches/callgrind.sh`).
    #[arg(long)]
    now_ns: Option<u64>,
    #[arg(long, value_enum, default_value = "orchestrate", hide = true)]
    phase: Phase,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The settings after mode defaults.
#[derive(Debug, Clone)]
struct Plan {
    secs: f64,
    rate: f64,
    requests: usize,
    shape: payload::PayloadShape,
}

impl Args {
    fn plan(&self) -> Plan {
        let state = self.mode == Mode::State;
        let shape = payload::PayloadShape {
            services: self.services.unwrap_or(if state { 100 } else { 20 }),
            ops_per_service: self.ops.unwrap_or(if state { 100 } else { 50 }),
            ..Default::default()
        };
        Plan {
            secs: self.secs.unwrap_or(if state { 120.0 } else { 15.0 }),
            rate: self.rate.unwrap_or(if state { 100_000.0 } else { 0.0 }),
            requests: self.requests.unwrap_or(if state { 400 } else { 256 }),
            shape,
        }
    }

    /// The arguments a child phase needs to build the same payloads.
    fn data_args(&self, plan: &Plan) -> Vec<String> {
        vec![
            "--requests".into(),
            plan.requests.to_string(),
            "--services".into(),
            plan.shape.services.to_string(),
            "--ops".into(),
            plan.shape.ops_per_service.to_string(),
        ]
    }
}

fn main() {
    let args = Args::parse();
    let res = match args.phase {
        Phase::Orchestrate => orchestrate(&args),
        Phase::Baseline => baseline(&args),
        Phase::Profile => profile(&args),
    };
    if let Err(e) = res {
        eprintln!("otlp_load: {e:#}");
        std::process::exit(1);
    }
}

// ---- baseline and profile (single thread, pinned by the caller) --------------------------------

fn red_config(lateness: Duration) -> Config {
    let mut cfg = Config::default();
    cfg.windows.max_out_of_orderness = lateness;
    cfg.windows.allowed_lateness = lateness;
    cfg.red.cardinality_limit = 20_000;
    cfg
}

/// Runs `f` over the payloads for `secs`; returns spans/s.
fn rate_of(set: &payload::PayloadSet, secs: f64, mut f: impl FnMut(&payload::Payload)) -> f64 {
    // One untimed pass: page faults, caches, series creation.
    set.payloads.iter().for_each(&mut f);
    let t0 = Instant::now();
    let mut spans = 0usize;
    'outer: loop {
        for p in &set.payloads {
            f(p);
            spans += p.spans;
            if t0.elapsed().as_secs_f64() >= secs {
                break 'outer;
            }
        }
    }
    spans as f64 / t0.elapsed().as_secs_f64()
}

fn baseline(args: &Args) -> anyhow::Result<()> {
    let plan = args.plan();
    let now = wall_clock();
    let set = payload::generate(&plan.shape, plan.requests, now);
    let cfg = red_config(Duration::from_secs(3600));
    let policy = TimePolicy::new(&cfg.windows);
    let settings = DecodeSettings::default();
    let secs = args.baseline_secs;
    let (wall0, cpu0) = (
        Instant::now(),
        probe::cpu_secs(std::process::id()).unwrap_or(0.0),
    );
    let mut sink = 0u64;
    let prost = rate_of(&set, secs, |p| {
        sink ^= payload::prost_decode_touch(&p.bytes)
    });
    let scan = rate_of(&set, secs, |p| {
        if let Ok(o) = decode_traces_proto(p.bytes.clone(), SourceId(0), &settings, &policy, now) {
            sink ^= o.batch.len() as u64;
        }
    });
    let registry = Registry::new();
    let mut op = RedOperator::new(&cfg.windows, &cfg.red, Vec::new(), &registry);
    let scan_red = rate_of(&set, secs, |p| {
        if let Ok(o) = decode_traces_proto(p.bytes.clone(), SourceId(0), &settings, &policy, now) {
            op.process_spans(&o.batch, now);
        }
    });
    // Below ~100% this thread had to share its core with other work.
    let cpu_share =
        (probe::cpu_secs(std::process::id()).unwrap_or(0.0) - cpu0) / wall0.elapsed().as_secs_f64();
    println!(
        "RESULT baseline prost={prost:.0} scan={scan:.0} scan_red={scan_red:.0} cpu_share={cpu_share:.3} bytes_per_span={:.1} spans={} series={} sink={}",
        set.bytes_per_span(),
        set.spans,
        set.series,
        sink & 1
    );
    Ok(())
}

/// The scanner + RED loop alone, for `valgrind --tool=callgrind
/// --toggle-collect='*profile_loop*'` or `perf record`.
#[inline(never)]
fn profile_loop(
    set: &payload::PayloadSet,
    iters: usize,
    now: u64,
    mut op: Option<&mut RedOperator>,
) -> usize {
    let cfg = red_config(Duration::from_secs(3600));
    let policy = TimePolicy::new(&cfg.windows);
    let settings = DecodeSettings::default();
    let mut spans = 0;
    for _ in 0..iters {
        for p in &set.payloads {
            if let Ok(o) =
                decode_traces_proto(p.bytes.clone(), SourceId(0), &settings, &policy, now)
            {
                spans += o.batch.len();
                if let Some(op) = op.as_deref_mut() {
                    op.process_spans(&o.batch, now);
                }
            }
        }
    }
    spans
}

fn profile(args: &Args) -> anyhow::Result<()> {
    let plan = args.plan();
    let now = args.now_ns.unwrap_or_else(wall_clock);
    let set = payload::generate(&plan.shape, plan.requests, now);
    let registry = Registry::new();
    let cfg = red_config(Duration::from_secs(3600));
    let mut op = RedOperator::new(&cfg.windows, &cfg.red, Vec::new(), &registry);
    // Series creation happens in the first pass; outside `profile_loop`, so that callgrind's
    // `--toggle-collect` counts steady-state work only.
    let policy = TimePolicy::new(&cfg.windows);
    for p in &set.payloads {
        let o = decode_traces_proto(
            p.bytes.clone(),
            SourceId(0),
            &DecodeSettings::default(),
            &policy,
            now,
        )?;
        op.process_spans(&o.batch, now);
    }
    let t0 = Instant::now();
    let spans = profile_loop(
        &set,
        args.iters,
        now,
        (!args.decode_only).then_some(&mut op),
    );
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "RESULT profile spans={spans} secs={dt:.3} spans_per_s={:.0} bytes_per_span={:.1}",
        spans as f64 / dt,
        set.bytes_per_span()
    );
    Ok(())
}

// ---- orchestration -----------------------------------------------------------------------------

/// Parses `key=value` words of the first line starting with `prefix`.
fn result_fields(out: &str, prefix: &str) -> Option<Vec<(String, String)>> {
    let line = out.lines().find(|l| l.starts_with(prefix))?;
    Some(
        line.split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn field(fields: &[(String, String)], key: &str) -> f64 {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

fn pinned(core: usize, program: &std::path::Path) -> Command {
    let mut c = Command::new("taskset");
    c.arg("-c").arg(core.to_string()).arg(program);
    c
}

fn orchestrate(args: &Args) -> anyhow::Result<()> {
    let me = std::env::current_exe().context("own path")?;
    if std::env::var_os(PINNED_ENV).is_none() {
        // Re-execute pinned to the client core: load threads and probes stay off the server core.
        let status = pinned(args.client_core, &me)
            .args(std::env::args_os().skip(1))
            .env(PINNED_ENV, "1")
            .status()
            .context("taskset (util-linux) is needed to pin the load generator")?;
        std::process::exit(status.code().unwrap_or(1));
    }
    let plan = args.plan();
    let bin = args
        .bin
        .clone()
        .or_else(|| std::env::var_os("REDWATCH_BIN").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_redwatch")));
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    // Not available_parallelism(): this process is pinned to one core.
    let cores = std::fs::read_to_string("/proc/cpuinfo")
        .map(|s| s.lines().filter(|l| l.starts_with("processor")).count())
        .unwrap_or(0);
    eprintln!(
        "otlp_load {:?}: {date}, {cores} cores ({cpu}); server on core {}, load on core {}; binary {}",
        args.mode,
        args.server_core,
        args.client_core,
        bin.display()
    );

    // Other work on the machine skews everything: say so up front.
    let busy = |c| probe::cpu_busy_secs(c).unwrap_or(0.0);
    let (s0, c0) = (busy(args.server_core), busy(args.client_core));
    std::thread::sleep(Duration::from_secs(1));
    let (s1, c1) = (busy(args.server_core), busy(args.client_core));
    eprintln!(
        "before the run: core {} {:.0}% busy, core {} {:.0}% busy (this process included)",
        args.server_core,
        100.0 * (s1 - s0),
        args.client_core,
        100.0 * (c1 - c0)
    );
    if s1 - s0 > 0.05 {
        eprintln!("WARNING: the server core is not idle; figures will be low (see 'other load')");
    }

    // 1. Baseline on the server core, before the server exists.
    let base = if args.mode == Mode::Throughput {
        eprintln!(
            "baseline: prost decode, scan decode, scan + RED, {} s each, pinned to core {}",
            args.baseline_secs, args.server_core
        );
        let out = pinned(args.server_core, &me)
            .args(["--phase", "baseline", "--baseline-secs"])
            .arg(args.baseline_secs.to_string())
            .args(args.data_args(&plan))
            .stderr(Stdio::inherit())
            .output()
            .context("baseline child")?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let f = result_fields(&text, "RESULT baseline")
            .ok_or_else(|| anyhow!("baseline child printed no result (status {})", out.status))?;
        Some(f)
    } else {
        None
    };

    // 2. The server.
    let dir = std::env::temp_dir().join(format!("redwatch-otlp-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let cfg_path = dir.join("config.yaml");
    let mut config = engine_config(args.mode);
    let client_tls = if args.tls {
        let (server_tls, client_tls) = tls_files(&dir)?;
        config = config.replacen(
            "grpc: { endpoint: \"127.0.0.1:0\" }",
            &format!("grpc: {{ endpoint: \"127.0.0.1:0\", tls: {server_tls}, auth: {{ bearer_tokens: [{BENCH_TOKEN}] }} }}"),
            1,
        );
        Some(client_tls)
    } else {
        None
    };
    if args.no_memory_limit {
        config.push_str("limits:\n  memory: null\n");
    }
    std::fs::write(&cfg_path, config)?;
    let mut server = Server::start(&bin, &cfg_path, &dir.join("server.log"), args.server_core)?;
    eprintln!(
        "server pid {} on core {}: otlp_grpc {}, prometheus {} (config {}, log {})",
        server.pid,
        args.server_core,
        server.grpc,
        server.prometheus,
        cfg_path.display(),
        server.log.display()
    );

    // 3. Load from this (client-pinned) process.
    let result = load(args, &plan, &server, client_tls);
    let final_metrics = probe::scrape(&server.prometheus).map(|t| EngineFigures::from_text(&t));
    let alive = server.alive();
    let exit = server.stop();
    let (warn_lines, error_lines) = server.log_counts();
    let run = result?;
    let fin = final_metrics.unwrap_or_default();

    // 4. Report.
    let gen = &run.gen;
    eprintln!();
    println!("## otlp_load {:?} — {date}, {cores} × {cpu}", args.mode);
    println!(
        "payloads: {} requests × 500 spans, {:.1} B/span, {} services × {} ops = {} series; {} in flight over {} connection(s), {}; {:.0} s window after {:.0} s warmup{}",
        plan.requests,
        gen.bytes_per_span,
        plan.shape.services,
        plan.shape.ops_per_service,
        gen.series,
        args.concurrency,
        if args.connections == 0 { args.concurrency } else { args.connections },
        if args.gzip { "gzip (timestamps fixed)" } else { "uncompressed (timestamps moved to now per request)" },
        plan.secs,
        args.warmup,
        if plan.rate > 0.0 { format!(", offered {} spans/s", si(plan.rate)) } else { String::new() },
    );
    println!(
        "transport: {}",
        if args.tls {
            "TLS 1.3 (rustls) + bearer token on the receiver"
        } else {
            "plaintext, no auth"
        }
    );
    println!();
    println!("| figure | value |");
    println!("|---|---:|");
    let e2e = run.spans_per_s;
    if let Some(b) = &base {
        let (prost, scan, scan_red) = (field(b, "prost"), field(b, "scan"), field(b, "scan_red"));
        println!(
            "| prost decode baseline, 1 pinned core | {} spans/s (1.00×) |",
            si(prost)
        );
        println!(
            "| baseline thread's share of its core | {:.0}% |",
            100.0 * field(b, "cpu_share")
        );
        println!(
            "| scan decode, 1 pinned core | {} spans/s ({:.2}×) |",
            si(scan),
            scan / prost
        );
        println!(
            "| scan decode + RED aggregate, 1 pinned core | {} spans/s ({:.2}×) |",
            si(scan_red),
            scan_red / prost
        );
        println!(
            "| **end-to-end accepted, server on 1 pinned core** | **{} spans/s ({:.2}× prost)** |",
            si(e2e),
            e2e / prost
        );
    } else {
        println!(
            "| end-to-end accepted, server on 1 pinned core | {} spans/s |",
            si(e2e)
        );
    }
    println!("| server CPU | {:.0}% of one core |", run.server_cpu_pct);
    println!(
        "| spans per server CPU-second | {} |",
        si(run.spans_per_cpu_s)
    );
    println!(
        "| gRPC errors / rejected spans (partial success) | {} ({}) / {} |",
        run.errors, run.error_codes, run.rejected
    );
    println!(
        "| latency p50 / p99 / max | {:.1} / {:.1} / {:.1} ms |",
        run.p50, run.p99, run.max
    );
    println!(
        "| server-side accepted in window (`redwatch_spans_accepted_total` delta) | {} spans/s |",
        si(run.server_accepted_per_s)
    );
    println!(
        "| `redwatch_late_dropped_total` / spans rejected / requests rejected | {} / {} / {} |",
        fin.late_dropped, fin.rejected, fin.requests_rejected
    );
    println!(
        "| active series / `window_state_bytes{{red}}` / bytes per series | {} / {} / {:.0} B |",
        fin.active_series,
        fin.state_bytes,
        fin.bytes_per_series()
    );
    if args.mode == Mode::State {
        println!(
            "| bytes per series, max over the last half of the run | {:.0} B ({} samples) |",
            run.max_bytes_per_series_late, run.samples
        );
        println!(
            "| state entries per series | {:.1} |",
            fin.state_entries / fin.active_series.max(1.0)
        );
        println!("| overflow spans | {} |", fin.overflow_spans);
    }
    println!(
        "| server RSS end / peak | {:.0} / {:.0} MiB |",
        run.rss_kib as f64 / 1024.0,
        run.hwm_kib as f64 / 1024.0
    );
    println!(
        "| other load on the server core | {:.1}% |",
        run.other_load_pct
    );
    println!(
        "| client (this process) CPU | {:.0}% of one core |",
        run.client_cpu_pct
    );
    println!(
        "| server alive after load / exit after SIGTERM / log WARN, ERROR lines | {} / {} / {}, {} |",
        alive, exit, warn_lines, error_lines
    );
    println!();
    let mut result = format!(
        "RESULT otlp_load mode={:?} gzip={} tls={} spans_per_s={e2e:.0} server_cpu_pct={:.1} spans_per_cpu_s={:.0} errors={} rejected={} p50_ms={:.2} p99_ms={:.2} late_dropped={} active_series={} state_bytes={} bytes_per_series={:.0} rss_kib={} hwm_kib={} other_load_pct={:.1} warn_lines={warn_lines} error_lines={error_lines}",
        args.mode, args.gzip, args.tls, run.server_cpu_pct, run.spans_per_cpu_s, run.errors, run.rejected, run.p50, run.p99,
        fin.late_dropped, fin.active_series, fin.state_bytes, fin.bytes_per_series(), run.rss_kib, run.hwm_kib, run.other_load_pct
    );
    if let Some(b) = &base {
        let prost = field(b, "prost");
        result.push_str(&format!(
            " prost={prost:.0} scan={:.0} scan_red={:.0} ratio={:.3}",
            field(b, "scan"),
            field(b, "scan_red"),
            e2e / prost
        ));
        println!(
            "targets: end-to-end ≥ 0.60× prost decode: {} ({:.2}×); ≥ 350k spans/s per core: {} ({} spans/s, {} per server CPU-s)",
            verdict(e2e / prost >= 0.60),
            e2e / prost,
            verdict(e2e >= 350_000.0 && run.spans_per_cpu_s >= 350_000.0),
            si(e2e),
            si(run.spans_per_cpu_s)
        );
    }
    if args.mode == Mode::State {
        println!(
            "target: ≤ 2 KiB of window state per active series: {} ({:.0} B at the end, {:.0} B max over the last half)",
            verdict(fin.bytes_per_series() <= 2048.0 && run.max_bytes_per_series_late <= 2048.0),
            fin.bytes_per_series(),
            run.max_bytes_per_series_late
        );
    }
    println!("{result}");
    let clean = fin.late_dropped == 0.0 && run.errors == 0 && alive;
    if !clean {
        println!("WARNING: the engine dropped, rejected or failed under load (see the table); server log {}", server.log.display());
    }
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "MISSED"
    }
}

fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
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
