//! `redwatch demo`: the engine with the default config plus the built-in workload generator
//! feeding its own OTLP/gRPC receiver, and a live view of the busiest series.

use crate::config::Config;
use crate::generate::{self, GenerateOptions, Workload};
use crate::server::{Engine, StartOptions};
use crate::view::{render, Headline};
use anyhow::Context;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Spans per second the generator sends.
    pub rate: f64,
    /// Stop after this long (None = until Ctrl-C).
    pub duration: Option<Duration>,
    /// Rows in the table.
    pub top: usize,
}

/// Runs the demo until Ctrl-C (or `duration`).
pub async fn run(cfg: Config, opts: DemoOptions) -> anyhow::Result<()> {
    let engine = Engine::start(
        &cfg,
        StartOptions {
            fall_back_to_ephemeral_ports: true,
            ..StartOptions::default()
        },
    )
    .await?;
    let grpc = *engine
        .addrs
        .get("otlp_grpc")
        .context("the demo needs the OTLP gRPC receiver (receivers.otlp.grpc)")?;
    let console_url = engine
        .addrs
        .get("sql_http")
        .filter(|_| cfg.ui.enabled)
        .map(|a| format!("http://{a}/"));
    if let Some(url) = &console_url {
        println!("redwatch web console: {url}");
    }
    let started = Instant::now();
    let start_ns = redwatch_engine::time::wall_clock();
    let cancel = CancellationToken::new();
    let generator = spawn_generator(grpc, opts.rate, start_ns, cancel.clone());
    let schedule = Workload::new(0, start_ns);
    let tty = std::io::stdout().is_terminal();
    let every = if tty {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_accepted = 0.0;
    let mut last_at = Instant::now();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut engine = engine;
    let outcome: anyhow::Result<()> = loop {
        tokio::select! {
            _ = &mut ctrl_c => break Ok(()),
            e = engine.failed() => break Err(e),
            _ = tick.tick() => {}
        }
        if opts.duration.is_some_and(|d| started.elapsed() >= d) {
            break Ok(());
        }
        let accepted = engine.registry.total("redwatch_spans_accepted_total");
        let dt = last_at.elapsed().as_secs_f64().max(1e-3);
        let sps = (accepted - last_accepted) / dt;
        last_accepted = accepted;
        last_at = Instant::now();
        let head = Headline::read(&engine.registry, started.elapsed().as_secs_f64(), sps);
        let lines = notes(&engine, grpc, console_url.as_deref(), &schedule);
        let mut text = render(&head, &engine.view.top(opts.top), &lines);
        text.push_str(&engine.view.render_anomalies(5));
        let mut out = std::io::stdout().lock();
        if tty {
            let _ = write!(out, "\x1b[H\x1b[2J{text}");
        } else {
            let _ = writeln!(out, "{text}");
        }
        let _ = out.flush();
    };
    cancel.cancel();
    let stats = generator
        .await
        .ok()
        .and_then(|r| r.ok())
        .unwrap_or_default();
    let accepted = engine.registry.total("redwatch_spans_accepted_total");
    engine.shutdown().await;
    println!(
        "\nredwatch demo stopped: generator sent {} spans in {} requests ({} failed); engine accepted {}.",
        stats.spans_sent, stats.requests, stats.failed_requests, accepted
    );
    outcome
}

/// The lines under the live view: where to send data and look, and the incidents injected now.
fn notes(
    engine: &Engine,
    grpc: std::net::SocketAddr,
    console_url: Option<&str>,
    schedule: &Workload,
) -> Vec<String> {
    let mut notes: Vec<String> = vec![format!(
        "OTLP gRPC {} | OTLP HTTP {} | Prometheus http://{}/metrics | Ctrl-C to stop",
        grpc,
        engine
            .addrs
            .get("otlp_http")
            .map(|a| a.to_string())
            .unwrap_or_else(|| "off".into()),
        engine
            .addrs
            .get("prometheus")
            .map(|a| a.to_string())
            .unwrap_or_else(|| "off".into()),
    )];
    if let Some(url) = console_url {
        notes.push(format!("web console {url} (SQL API {url}api/v1/sql)"));
    }
    let active: Vec<String> = schedule
        .active_incidents(redwatch_engine::time::wall_clock())
        .iter()
        .map(|i| format!("{} on {}", i.name, i.service))
        .collect();
    notes.push(if active.is_empty() {
        "injected incidents: none right now (schedule: latency spike @90s, error burst @200s, traffic drop @320s, slow ramp @420s; repeats every 10 min)".to_string()
    } else {
        format!("injected incidents now: {}", active.join(", "))
    });
    notes
}

/// The built-in workload, sent to the engine's OTLP gRPC receiver until `cancel`.
fn spawn_generator(
    grpc: std::net::SocketAddr,
    rate: f64,
    start_ns: u64,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<Result<generate::GenerateStats, generate::GenerateError>> {
    tokio::spawn(async move {
        let mut workload = Workload::new(42, start_ns);
        generate::run(
            GenerateOptions {
                endpoint: format!("http://{grpc}"),
                rate,
                duration: None,
                seed: 42,
            },
            &mut workload,
            cancel,
            |_| {},
        )
        .await
    })
}
