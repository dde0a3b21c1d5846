//! A running engine: [`Engine::start`] lists the features that install themselves into the
//! [`Assembly`](crate::assembly::Assembly), and [`Engine::shutdown`] takes it down in stages
//! (receivers → operators → exporters).

use crate::assembly::Assembly;
use crate::config::Config;
use crate::features;
use crate::view::LiveView;
use redwatch_connectors::prometheus::PrometheusRed;
use redwatch_engine::pipeline::IngestHandle;
use redwatch_engine::telemetry::Registry;
use redwatch_queries::query::QueryEngine;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Options that are not part of the config file.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// When a configured port is taken, bind an ephemeral one instead (the demo does this so it
    /// starts next to another redwatch).
    pub fall_back_to_ephemeral_ports: bool,
    /// Test hook: an operator that panics on the first batch it sees, to prove that an operator
    /// failure makes `/healthz` fail and the process exit non-zero (`redwatch run` sets it from
    /// the `REDWATCH_TEST_PANIC_OPERATOR` environment variable).
    pub panic_operator: bool,
}

/// A running engine.
pub struct Engine {
    /// Bound addresses by listener name (`otlp_grpc`, `otlp_http`, `prometheus`).
    pub addrs: BTreeMap<&'static str, SocketAddr>,
    pub registry: Arc<Registry>,
    pub view: Arc<LiveView>,
    pub prometheus: Arc<PrometheusRed>,
    pub queries: QueryEngine,
    pub(crate) handle: Option<IngestHandle>,
    pub(crate) receivers_cancel: CancellationToken,
    pub(crate) receivers: Vec<JoinHandle<anyhow::Result<()>>>,
    pub(crate) pipeline_cancel: CancellationToken,
    pub(crate) pipeline: JoinHandle<()>,
    /// Set once the pipeline task ended while the engine was running (an operator panicked).
    pub(crate) pipeline_failed: Arc<std::sync::OnceLock<String>>,
    pub(crate) pipeline_failures: Arc<redwatch_engine::telemetry::Counter>,
    pub(crate) exporters_cancel: CancellationToken,
    pub(crate) exporters: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Engine {
    /// Starts every configured feature. The config must already be validated.
    ///
    /// Each feature installs itself (docs/design.md, "Adding a feature"); the order is the order
    /// operators see a batch and sinks see a window. Outputs that other features send to (Kafka,
    /// the OTLP exporter) come before those features.
    pub async fn start(cfg: &Config, opts: StartOptions) -> anyhow::Result<Engine> {
        let mut asm = Assembly::new(cfg, opts);
        features::red::install(&mut asm);
        features::spans::install(&mut asm);
        features::test_hooks::install(&mut asm);
        features::service_graph::install(&mut asm);
        features::sessions::install(&mut asm);
        features::metrics::install(&mut asm);
        features::continuous::install(&mut asm);
        features::otlp_receivers::install(&mut asm);
        features::kafka::install(&mut asm)?;
        features::otlp_export::install(&mut asm)?;
        features::anomaly::install(&mut asm);
        features::problems::install(&mut asm)?;
        features::prometheus::install(&mut asm);
        features::sql::install(&mut asm);
        asm.start().await
    }

    /// A handle into the pipeline (tests use its barrier to wait for processing).
    pub fn ingest_handle(&self) -> Option<&IngestHandle> {
        self.handle.as_ref()
    }

    /// Resolves when a component task ends on its own: a listener failed, or the operator
    /// pipeline ended (an operator panicked). A failed pipeline is logged, counted in
    /// `redwatch_pipeline_failures_total` and turns `/healthz` unhealthy; the caller should stop
    /// the process with a non-zero exit so that a supervisor restarts it.
    pub async fn failed(&mut self) -> anyhow::Error {
        let tasks = self.receivers.iter_mut().chain(self.exporters.iter_mut());
        tokio::select! {
            (res, _, _) = futures_select_all(tasks) => match res {
                Ok(Ok(())) => anyhow::anyhow!("a listener stopped unexpectedly"),
                Ok(Err(e)) => e,
                Err(e) => anyhow::anyhow!("a listener task panicked: {e}"),
            },
            res = &mut self.pipeline => {
                let why = match res {
                    Ok(()) => "the operator task ended unexpectedly".to_string(),
                    Err(e) if e.is_panic() => {
                        let p = e.into_panic();
                        let msg = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "unknown panic".into());
                        format!("an operator panicked: {msg}")
                    }
                    Err(e) => format!("the operator task was cancelled: {e}"),
                };
                self.pipeline_failures.inc();
                let _ = self.pipeline_failed.set(why.clone());
                tracing::error!("{why}; the engine cannot go on (exit non-zero for a restart)");
                anyhow::anyhow!(why)
            }
        }
    }

    /// Staged shutdown: stop receivers, drain the operators, then stop the exporters.
    pub async fn shutdown(mut self) {
        self.receivers_cancel.cancel();
        for r in self.receivers.drain(..) {
            if let Ok(Err(e)) = r.await {
                tracing::warn!("receiver ended with an error: {e:#}");
            }
        }
        self.handle = None;
        self.pipeline_cancel.cancel();
        if self.pipeline_failed.get().is_none() {
            let _ = (&mut self.pipeline).await;
        }
        self.exporters_cancel.cancel();
        for e in self.exporters.drain(..) {
            let _ = e.await;
        }
    }
}

/// Waits for the first of several join handles (pending forever when there are none).
async fn futures_select_all<'a, T>(
    tasks: impl Iterator<Item = &'a mut JoinHandle<T>>,
) -> (Result<T, tokio::task::JoinError>, usize, ())
where
    T: 'a,
{
    let mut tasks: Vec<&'a mut JoinHandle<T>> = tasks.collect();
    if tasks.is_empty() {
        std::future::pending::<()>().await;
    }
    std::future::poll_fn(|cx| {
        for (i, t) in tasks.iter_mut().enumerate() {
            if let std::task::Poll::Ready(r) = std::pin::Pin::new(&mut **t).poll(cx) {
                return std::task::Poll::Ready((r, i, ()));
            }
        }
        std::task::Poll::Pending
    })
    .await
}
