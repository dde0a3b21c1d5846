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
#[path = "load/decode_phases.rs"]
mod decode_phases;
#[path = "load/measure.rs"]
mod measure;
#[path = "load/orchestrate.rs"]
mod orchestrate;
mod payload;
#[path = "load/probe.rs"]
mod probe;
#[path = "load/report.rs"]
mod report;
#[path = "load/server.rs"]
mod server;

use anyhow::{anyhow, bail, Context};
use clap::{Parser, ValueEnum};
use probe::EngineFigures;
use redwatch_engine::time::wall_clock;
use server::{Server, BENCH_TOKEN};
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
        Phase::Orchestrate => orchestrate::orchestrate(&args),
        Phase::Baseline => decode_phases::baseline(&args),
        Phase::Profile => decode_phases::profile(&args),
    };
    if let Err(e) = res {
        eprintln!("otlp_load: {e:#}");
        std::process::exit(1);
    }
}

fn pinned(core: usize, program: &std::path::Path) -> Command {
    let mut c = Command::new("taskset");
    c.arg("-c").arg(core.to_string()).arg(program);
    c
}
