//! The default phase: re-executes itself pinned to the client core, runs the baseline child on
//! the server core, starts `redwatch run` there, loads it and hands the figures to `report`.

use super::measure::{load, RunFigures};
use super::probe::{self, EngineFigures};
use super::report::{self, result_fields, Outcome};
use super::server::{engine_config, tls_files, Server, BENCH_TOKEN};
use super::{pinned, Args, Mode, Plan, PINNED_ENV};
use anyhow::{anyhow, Context};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The machine the run is on, for the headings.
pub(crate) struct Machine {
    pub(crate) date: String,
    pub(crate) cores: usize,
    pub(crate) cpu: String,
}

pub(crate) fn orchestrate(args: &Args) -> anyhow::Result<()> {
    let me = std::env::current_exe().context("own path")?;
    if std::env::var_os(PINNED_ENV).is_none() {
        reexec_pinned(args, &me)?;
    }
    let plan = args.plan();
    let bin = server_binary(args);
    let machine = Machine::describe();
    eprintln!(
        "otlp_load {:?}: {}, {} cores ({}); server on core {}, load on core {}; binary {}",
        args.mode,
        machine.date,
        machine.cores,
        machine.cpu,
        args.server_core,
        args.client_core,
        bin.display()
    );
    warn_if_busy(args);

    // 1. Baseline on the server core, before the server exists.
    let base = if args.mode == Mode::Throughput {
        Some(run_baseline(args, &plan, &me)?)
    } else {
        None
    };

    // 2. The server.
    let (mut server, client_tls) = start_server(args, &bin)?;

    // 3. Load from this (client-pinned) process.
    let result = load(args, &plan, &server, client_tls);
    let final_metrics = probe::scrape(&server.prometheus).map(|t| EngineFigures::from_text(&t));
    let alive = server.alive();
    let exit = server.stop();
    let (warn_lines, error_lines) = server.log_counts();
    let run: RunFigures = result?;
    let outcome = Outcome {
        run,
        fin: final_metrics.unwrap_or_default(),
        alive,
        exit,
        warn_lines,
        error_lines,
        log: server.log.clone(),
    };

    // 4. Report.
    report::print(args, &plan, &machine, base.as_deref(), &outcome);
    Ok(())
}

/// Re-executes this program pinned to the client core: load threads and probes stay off the
/// server core. Exits with the child's status.
fn reexec_pinned(args: &Args, me: &Path) -> anyhow::Result<()> {
    let status = pinned(args.client_core, me)
        .args(std::env::args_os().skip(1))
        .env(PINNED_ENV, "1")
        .status()
        .context("taskset (util-linux) is needed to pin the load generator")?;
    std::process::exit(status.code().unwrap_or(1));
}

/// `--bin`, else `REDWATCH_BIN`, else the `redwatch` binary cargo built with this bench.
fn server_binary(args: &Args) -> PathBuf {
    args.bin
        .clone()
        .or_else(|| std::env::var_os("REDWATCH_BIN").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_redwatch")))
}

impl Machine {
    fn describe() -> Machine {
        let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
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
        Machine { date, cores, cpu }
    }
}

/// Other work on the machine skews everything: say so up front.
fn warn_if_busy(args: &Args) {
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
}

/// Runs the baseline phase in a child pinned to the server core; returns its `RESULT` fields.
fn run_baseline(args: &Args, plan: &Plan, me: &Path) -> anyhow::Result<Vec<(String, String)>> {
    eprintln!(
        "baseline: prost decode, scan decode, scan + RED, {} s each, pinned to core {}",
        args.baseline_secs, args.server_core
    );
    let out = pinned(args.server_core, me)
        .args(["--phase", "baseline", "--baseline-secs"])
        .arg(args.baseline_secs.to_string())
        .args(args.data_args(plan))
        .stderr(Stdio::inherit())
        .output()
        .context("baseline child")?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    result_fields(&text, "RESULT baseline")
        .ok_or_else(|| anyhow!("baseline child printed no result (status {})", out.status))
}

/// Writes the server's config into a fresh temporary directory and starts it on the server
/// core; returns it with the client's TLS settings of a `--tls` run.
fn start_server(
    args: &Args,
    bin: &Path,
) -> anyhow::Result<(Server, Option<redwatch::config::TlsClientConfig>)> {
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
    let server = Server::start(bin, &cfg_path, &dir.join("server.log"), args.server_core)?;
    eprintln!(
        "server pid {} on core {}: otlp_grpc {}, prometheus {} (config {}, log {})",
        server.pid,
        args.server_core,
        server.grpc,
        server.prometheus,
        cfg_path.display(),
        server.log.display()
    );
    Ok((server, client_tls))
}
