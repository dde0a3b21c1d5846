//! The `redwatch` command line. Exit codes: 0 ok, 2 bad usage or config, 1 runtime failure.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use redwatch::config::{self, Config};
use redwatch::demo::{self, DemoOptions};
use redwatch::generate::{self, GenerateOptions, Workload};
use redwatch::server::{Engine, StartOptions};
use redwatch::sql_cli::{self, OutputFormat, SqlCliError, SqlOptions};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "redwatch",
    version,
    about = "Event-time RED metrics, anomaly spans and SQL over live telemetry windows"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct ConfigArgs {
    /// YAML config file (defaults apply to every key it leaves out).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Override one key, e.g. `--set windows.size=30s` (repeatable; after env overrides).
    #[arg(long = "set", value_name = "KEY.PATH=VALUE")]
    sets: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the engine as a server.
    Run {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Run the engine with a built-in workload and a live view (nothing else needed).
    Demo {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Spans per second the built-in generator sends.
        #[arg(long, default_value_t = 2000.0)]
        rate: f64,
        /// Stop after this long (e.g. `60s`); default: until Ctrl-C.
        #[arg(long, value_parser = humantime_duration)]
        duration: Option<Duration>,
        /// Series shown in the table.
        #[arg(long, default_value_t = 15)]
        top: usize,
    },
    /// Send the demo's workload to an OTLP/gRPC endpoint.
    Generate {
        /// OTLP/gRPC endpoint, e.g. http://127.0.0.1:4317.
        #[arg(long)]
        otlp: String,
        /// Spans per second.
        #[arg(long, default_value_t = 2000.0)]
        rate: f64,
        /// Stop after this long (e.g. `5m`); default: until Ctrl-C.
        #[arg(long, value_parser = humantime_duration)]
        duration: Option<Duration>,
        /// Random seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Run one SQL query against a running server, or open an interactive SQL shell.
    Sql {
        /// The query; without one, an interactive shell opens (statements end with `;`).
        query: Option<String>,
        /// Base URL of the server's SQL HTTP API.
        #[arg(long, default_value = "http://127.0.0.1:7070")]
        url: String,
        /// How results are printed.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Bearer token for a server with `sql.auth` (sent as `Authorization: Bearer`).
        #[arg(long, env = "REDWATCH_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// PEM CA certificates that sign the server's certificate (for an https:// --url).
        #[arg(long, env = "REDWATCH_CA_FILE")]
        ca_file: Option<std::path::PathBuf>,
        /// PEM client certificate, for a server that asks for one (`sql.tls.client_ca_file`).
        #[arg(long, env = "REDWATCH_CERT_FILE", requires = "key_file")]
        cert_file: Option<std::path::PathBuf>,
        /// PEM private key of --cert-file.
        #[arg(long, env = "REDWATCH_KEY_FILE", requires = "cert_file")]
        key_file: Option<std::path::PathBuf>,
    },
    /// Check a config file and print every problem with its path.
    Validate {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Print the full default config and exit.
        #[arg(long)]
        print_defaults: bool,
    },
}

/// Config overrides the demo applies before the user's own.
const DEMO_DEFAULTS: &[&str] = &[
    "anomaly.warmup_windows=8",
    "anomaly.detectors.robust_z.baseline_windows=8",
];

fn humantime_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// Bad usage or config (exit 2) versus runtime failure (exit 1).
enum Failure {
    Usage(String),
    Runtime(anyhow::Error),
}

fn load_config(args: &ConfigArgs) -> Result<Config, Failure> {
    let cfg = config::load(args.config.as_deref(), std::env::vars(), &args.sets)
        .map_err(|e| Failure::Usage(format!("config: {e}")))?;
    let problems = cfg.validate();
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
        return Err(Failure::Usage(format!(
            "config has problems:\n{}",
            list.join("\n")
        )));
    }
    Ok(cfg)
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called, so call it
/// before binding listeners: a signal that arrives right after the `listening` lines must find
/// them in place rather than kill the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            if let Some(mut term) = term {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
                return;
            }
        }
        let _ = ctrl_c.await;
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Validate {
            cfg,
            print_defaults,
        } => validate(&cfg, print_defaults),
        Command::Sql {
            query,
            url,
            format,
            token,
            ca_file,
            cert_file,
            key_file,
        } => sql_cli::run(SqlOptions {
            query,
            url,
            format,
            token,
            tls: redwatch::config::TlsClientConfig {
                ca_file,
                cert_file,
                key_file,
                insecure_skip_verify: false,
            },
        })
        .map_err(|e| match e {
            SqlCliError::Usage(m) => Failure::Usage(m),
            SqlCliError::Runtime(m) => Failure::Runtime(anyhow::anyhow!(m)),
        }),
        Command::Run { cfg } => serve(&cfg),
        Command::Demo {
            cfg,
            rate,
            duration,
            top,
        } => {
            // The demo's incidents start 90 s in: detectors warm up on 8 windows instead of 60
            // (the user's own --set still wins, being applied later).
            let mut cfg = cfg;
            let mut sets: Vec<String> = DEMO_DEFAULTS.iter().map(|s| s.to_string()).collect();
            sets.append(&mut cfg.sets);
            cfg.sets = sets;
            let cfg = load_config(&cfg)?;
            // The live view owns the terminal: only warnings go to stderr.
            init_logging("warn");
            runtime()?
                .block_on(demo::run(
                    cfg,
                    DemoOptions {
                        rate,
                        duration,
                        top,
                    },
                ))
                .map_err(Failure::Runtime)
        }
        Command::Generate {
            otlp,
            rate,
            duration,
            seed,
        } => generate(otlp, rate, duration, seed),
    }
}

/// `redwatch validate`: prints the defaults, or checks a config file.
fn validate(cfg: &ConfigArgs, print_defaults: bool) -> Result<(), Failure> {
    if print_defaults {
        let text =
            serde_yaml_ng::to_string(&Config::default()).map_err(|e| Failure::Runtime(e.into()))?;
        print!("{text}");
        return Ok(());
    }
    if cfg.config.is_none() {
        return Err(Failure::Usage(
            "validate needs --config FILE (or --print-defaults)".into(),
        ));
    }
    load_config(cfg)?;
    println!("config ok");
    Ok(())
}

/// `redwatch run`: the engine as a server until a signal or a failure.
fn serve(cfg: &ConfigArgs) -> Result<(), Failure> {
    let cfg = load_config(cfg)?;
    init_logging("info");
    runtime()?.block_on(async {
        let signal = shutdown_signal();
        let opts = StartOptions {
            panic_operator: std::env::var_os("REDWATCH_TEST_PANIC_OPERATOR").is_some(),
            ..StartOptions::default()
        };
        let mut engine = Engine::start(&cfg, opts).await.map_err(Failure::Runtime)?;
        tracing::info!("redwatch {} running", env!("CARGO_PKG_VERSION"));
        let result = tokio::select! {
            _ = signal => Ok(()),
            e = engine.failed() => Err(Failure::Runtime(e)),
        };
        tracing::info!("shutting down: receivers, then operators, then exporters");
        engine.shutdown().await;
        result
    })
}

/// `redwatch generate`: the demo's workload alone, sent to an OTLP endpoint.
fn generate(otlp: String, rate: f64, duration: Option<Duration>, seed: u64) -> Result<(), Failure> {
    init_logging("info");
    runtime()?.block_on(async {
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let signal = shutdown_signal();
        tokio::spawn(async move {
            signal.await;
            c.cancel();
        });
        let mut workload = Workload::new(seed, redwatch_engine::time::wall_clock());
        let stats = generate::run(
            GenerateOptions {
                endpoint: otlp,
                rate,
                duration,
                seed,
            },
            &mut workload,
            cancel,
            |_| {},
        )
        .await
        .map_err(|e| Failure::Usage(e.to_string()))?;
        println!(
            "sent {} spans in {} requests ({} failed)",
            stats.spans_sent, stats.requests, stats.failed_requests
        );
        Ok(())
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
