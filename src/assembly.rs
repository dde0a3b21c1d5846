//! The seam every feature installs into (docs/design.md, "Adding a feature").
//!
//! A feature module (`crate::features::*`) gets the [`Assembly`] once and declares what it adds:
//! its live tables, its operators and the sinks they feed, its Prometheus sections, its
//! readiness checks, and the tasks it starts (listeners, exporters, consumers), each in its
//! shutdown [`Stage`]. [`Assembly::start`] then wires them generically: the SQL catalog from the
//! declared tables, the operator pipeline, the starters in stage order. This module knows no
//! feature by name; it must not grow a feature's logic.

use crate::config::{AuthConfig, Config, TlsServerConfig};
use crate::server::StartOptions;
use crate::view::LiveView;
use anyhow::Context;
use redwatch_connectors::otlp_exporter::signal_spans::SpanDestination;
use redwatch_connectors::otlp_exporter::OtlpExportHandle;
use redwatch_connectors::prometheus::PrometheusRed;
use redwatch_engine::pipeline::{pipeline, IngestHandle, Operator, PipelineSettings};
use redwatch_engine::security::{Protocol, SecureListener};
use redwatch_engine::telemetry::{Counter, Registry};
use redwatch_engine::time::TimePolicy;
use redwatch_operators::anomaly::SignalStream;
use redwatch_operators::metrics::MetricSink;
use redwatch_operators::red::RedSink;
use redwatch_operators::servicegraph::ServiceGraphSink;
use redwatch_queries::catalog::TableDef;
use redwatch_queries::query::{QueryEngine, QueryLimits};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A component that can make the engine not ready: `Err(reason)` turns `/readyz` into a 503.
pub type ReadinessCheck = Box<dyn Fn() -> Result<(), String> + Send + Sync>;
/// A started component's task; it ends when its stage is cancelled.
pub type Task = JoinHandle<anyhow::Result<()>>;
/// The future a starter returns (it may borrow the [`Started`] it was given).
pub type StartFuture<'r> = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'r>>;
type Starter<'a> = Box<dyn for<'r> FnOnce(&'r mut Started) -> StartFuture<'r> + Send + 'a>;
type OperatorFactory<'a> = Box<dyn FnOnce(&mut Sinks) -> Box<dyn Operator> + Send + 'a>;

/// When a started component stops in the staged shutdown: receivers first (nothing new comes
/// in), then the operators drain, then exporters (they deliver what the operators emitted
/// last). Exporters also *start* first, so that no data arrives before its outputs exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Exporters,
    Receivers,
}

/// What the window operators deliver to: every feature adds its sinks here, and the operator
/// that feeds them takes the full list when the pipeline is built.
#[derive(Default)]
pub struct Sinks {
    /// Closed and provisional RED windows.
    pub red: Vec<Arc<dyn RedSink>>,
    /// Closed metric windows.
    pub metrics: Vec<Arc<dyn MetricSink>>,
    /// Closed service graph windows (besides the service graph feature's own sinks).
    pub service_graph: Vec<Arc<dyn ServiceGraphSink>>,
}

/// The engine under construction; see the module comment.
pub struct Assembly<'a> {
    pub cfg: &'a Config,
    pub registry: Arc<Registry>,
    /// The Prometheus exposition; features add their sections to it.
    pub prometheus: Arc<PrometheusRed>,
    /// The demo's live view.
    pub view: Arc<LiveView>,
    /// The OTLP exporter, when configured (installed before the features that export spans).
    pub otlp_exporter: Option<OtlpExportHandle>,
    /// Where the anomaly stream's spans go (the OTLP exporter, the Kafka sink's spans topic),
    /// installed before the features that export spans: the problems feature sends its problem
    /// traces to each of them.
    pub span_destinations: Vec<Arc<dyn SpanDestination>>,
    /// The anomaly stream: what the anomaly operator raises (anomalies with their exemplars,
    /// predictions). Exporters, tables, the view and downstream operators subscribe to it.
    pub anomaly_stream: Arc<SignalStream>,
    sinks: Sinks,
    tables: Vec<TableDef>,
    operators: Vec<OperatorFactory<'a>>,
    before_run: Vec<Starter<'a>>,
    starters: Vec<(Stage, Starter<'a>)>,
    readiness: Arc<Mutex<Vec<ReadinessCheck>>>,
    receivers_cancel: CancellationToken,
    exporters_cancel: CancellationToken,
    opts: StartOptions,
}

impl<'a> Assembly<'a> {
    /// An empty assembly for `cfg` (which must already be validated).
    pub fn new(cfg: &'a Config, opts: StartOptions) -> Assembly<'a> {
        let registry = Registry::new();
        registry
            .gauge(
                "redwatch_build_info",
                "redwatch version.",
                &[("version", env!("CARGO_PKG_VERSION"))],
            )
            .set(1.0);
        Assembly {
            cfg,
            registry,
            prometheus: PrometheusRed::new(cfg.red.buckets_ms.clone(), &cfg.red.dimensions),
            view: LiveView::new(),
            otlp_exporter: None,
            span_destinations: Vec::new(),
            anomaly_stream: SignalStream::new(),
            sinks: Sinks::default(),
            tables: Vec::new(),
            operators: Vec::new(),
            before_run: Vec::new(),
            starters: Vec::new(),
            readiness: Arc::default(),
            receivers_cancel: CancellationToken::new(),
            exporters_cancel: CancellationToken::new(),
            opts,
        }
    }

    /// The options given to `Engine::start`.
    pub fn options(&self) -> &StartOptions {
        &self.opts
    }

    /// Declares a live SQL table (`redwatch_queries::catalog`: name, schema, time columns)
    /// with the source of its rows. A table no feature declares reads as empty.
    pub fn table(&mut self, def: TableDef) {
        self.tables.push(def);
    }

    /// Adds a sink of RED windows.
    pub fn red_sink(&mut self, sink: Arc<dyn RedSink>) {
        self.sinks.red.push(sink);
    }

    /// Adds a sink of metric windows.
    pub fn metric_sink(&mut self, sink: Arc<dyn MetricSink>) {
        self.sinks.metrics.push(sink);
    }

    /// Adds a sink of service graph windows.
    pub fn service_graph_sink(&mut self, sink: Arc<dyn ServiceGraphSink>) {
        self.sinks.service_graph.push(sink);
    }

    /// Adds an operator to the pipeline, built once every feature has added its sinks.
    /// Operators see each batch in the order they were added.
    pub fn operator(&mut self, build: impl FnOnce(&mut Sinks) -> Box<dyn Operator> + Send + 'a) {
        self.operators.push(Box::new(build));
    }

    /// Adds a readiness check (`/readyz`).
    pub fn readiness_check(&mut self, check: ReadinessCheck) {
        if let Ok(mut c) = self.readiness.lock() {
            c.push(check);
        }
    }

    /// The cancellation of `stage`, for tasks a feature builds before the engine starts.
    pub fn cancel(&self, stage: Stage) -> CancellationToken {
        match stage {
            Stage::Receivers => self.receivers_cancel.clone(),
            Stage::Exporters => self.exporters_cancel.clone(),
        }
    }

    /// Runs `start` once the pipeline exists but before it runs (e.g. to hold the watermark
    /// from its first tick).
    pub fn before_run(
        &mut self,
        start: impl for<'r> FnOnce(&'r mut Started) -> StartFuture<'r> + Send + 'a,
    ) {
        self.before_run.push(Box::new(start));
    }

    /// Runs `start` once the pipeline runs; starters of [`Stage::Exporters`] run before those
    /// of [`Stage::Receivers`], each in the order added.
    pub fn on_start(
        &mut self,
        stage: Stage,
        start: impl for<'r> FnOnce(&'r mut Started) -> StartFuture<'r> + Send + 'a,
    ) {
        self.starters.push((stage, Box::new(start)));
    }

    /// Wires what the features declared and starts it.
    pub async fn start(self) -> anyhow::Result<crate::server::Engine> {
        let (receivers_cancel, exporters_cancel) =
            (self.receivers_cancel.clone(), self.exporters_cancel.clone());
        let pipeline_cancel = CancellationToken::new();
        let res = self.start_inner(pipeline_cancel.clone()).await;
        if res.is_err() {
            // Whatever started before the failure stops again.
            receivers_cancel.cancel();
            pipeline_cancel.cancel();
            exporters_cancel.cancel();
        }
        res
    }

    async fn start_inner(
        mut self,
        pipeline_cancel: CancellationToken,
    ) -> anyhow::Result<crate::server::Engine> {
        let cfg = self.cfg;
        let queries = QueryEngine::new(
            redwatch_queries::catalog::providers(std::mem::take(&mut self.tables)),
            QueryLimits::from_config(&cfg.sql),
        )
        .context("starting the query runtime")?;
        let mut sinks = std::mem::take(&mut self.sinks);
        let ops: Vec<Box<dyn Operator>> = self.operators.drain(..).map(|b| b(&mut sinks)).collect();
        let (handle, pipe) = pipeline(
            Arc::new(TimePolicy::new(&cfg.windows)),
            PipelineSettings::from_config(&cfg.limits),
            ops,
            self.registry.clone(),
        );
        let mut started = Started {
            registry: self.registry.clone(),
            prometheus: self.prometheus.clone(),
            handle: handle.clone(),
            queries: queries.clone(),
            readiness: self.readiness.clone(),
            pipeline_failed: Arc::default(),
            fall_back_to_ephemeral_ports: self.opts.fall_back_to_ephemeral_ports,
            addrs: BTreeMap::new(),
            receivers: Vec::new(),
            exporters: Vec::new(),
            receivers_cancel: self.receivers_cancel.clone(),
            exporters_cancel: self.exporters_cancel.clone(),
        };
        for s in self.before_run.drain(..) {
            s(&mut started).await?;
        }
        let pipeline_task = tokio::spawn(pipe.run(pipeline_cancel.clone()));
        let pipeline_failures = self.registry.counter(
            "redwatch_pipeline_failures_total",
            "The operator task ended while the engine was running (an operator panicked); /healthz fails and the process exits non-zero.",
            &[],
        );
        self.starters
            .sort_by_key(|(stage, _)| *stage == Stage::Receivers);
        for (_, s) in self.starters.drain(..) {
            s(&mut started).await?;
        }
        Ok(self.engine(
            started,
            handle,
            queries,
            pipeline_task,
            pipeline_cancel,
            pipeline_failures,
        ))
    }

    fn engine(
        self,
        started: Started,
        handle: IngestHandle,
        queries: QueryEngine,
        pipeline: JoinHandle<()>,
        pipeline_cancel: CancellationToken,
        pipeline_failures: Arc<Counter>,
    ) -> crate::server::Engine {
        crate::server::Engine {
            addrs: started.addrs,
            registry: self.registry,
            view: self.view,
            prometheus: self.prometheus,
            queries,
            handle: Some(handle),
            receivers_cancel: self.receivers_cancel,
            receivers: started.receivers,
            pipeline_cancel,
            pipeline,
            pipeline_failed: started.pipeline_failed,
            pipeline_failures,
            exporters_cancel: self.exporters_cancel,
            exporters: started.exporters,
        }
    }
}

/// A listener's `tls` and `auth` blocks and the protocol it speaks (for ALPN).
#[derive(Clone)]
pub struct ListenerSecurity {
    pub tls: Option<TlsServerConfig>,
    pub auth: Option<AuthConfig>,
    pub protocol: Protocol,
}

impl ListenerSecurity {
    /// A listener's config blocks (cloned) for `protocol`.
    pub fn of(
        tls: &Option<TlsServerConfig>,
        auth: &Option<AuthConfig>,
        protocol: Protocol,
    ) -> Self {
        ListenerSecurity {
            tls: tls.clone(),
            auth: auth.clone(),
            protocol,
        }
    }
}

/// What starters get: the running pipeline's handle, the SQL engine, and where to put the tasks
/// they start.
pub struct Started {
    pub registry: Arc<Registry>,
    pub prometheus: Arc<PrometheusRed>,
    pub handle: IngestHandle,
    pub queries: QueryEngine,
    /// Set once the pipeline task ended while the engine was running (an operator panicked).
    pub pipeline_failed: Arc<OnceLock<String>>,
    readiness: Arc<Mutex<Vec<ReadinessCheck>>>,
    fall_back_to_ephemeral_ports: bool,
    addrs: BTreeMap<&'static str, SocketAddr>,
    receivers: Vec<Task>,
    exporters: Vec<Task>,
    receivers_cancel: CancellationToken,
    exporters_cancel: CancellationToken,
}

impl Started {
    /// Binds listener `name` with its TLS and bearer auth (docs/design.md, "Security"): every
    /// listener binds here, and its address is recorded in `Engine::addrs`.
    pub async fn bind(
        &mut self,
        name: &'static str,
        addr: SocketAddr,
        security: &ListenerSecurity,
    ) -> anyhow::Result<SecureListener> {
        let l = match redwatch_connectors::bind(name, addr).await {
            Ok(l) => l,
            Err(e)
                if self.fall_back_to_ephemeral_ports
                    && e.kind() == std::io::ErrorKind::AddrInUse =>
            {
                tracing::warn!("{name}: {addr} is in use, binding an ephemeral port instead");
                redwatch_connectors::bind(name, SocketAddr::new(addr.ip(), 0)).await?
            }
            Err(e) => return Err(e.into()),
        };
        self.addrs.insert(name, l.local_addr()?);
        let (tls, auth) = (security.tls.as_ref(), security.auth.as_ref());
        redwatch_engine::security::secure(name, l, tls, auth, security.protocol, &self.registry)
            .with_context(|| format!("{name}: TLS/auth settings"))
    }

    /// The cancellation of `stage`.
    pub fn cancel(&self, stage: Stage) -> CancellationToken {
        match stage {
            Stage::Receivers => self.receivers_cancel.clone(),
            Stage::Exporters => self.exporters_cancel.clone(),
        }
    }

    /// Runs `task` until the engine stops; it should end once `cancel(stage)` fires.
    pub fn spawn(
        &mut self,
        stage: Stage,
        task: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        let t = tokio::spawn(task);
        match stage {
            Stage::Receivers => self.receivers.push(t),
            Stage::Exporters => self.exporters.push(t),
        }
    }

    /// Adds a readiness check (`/readyz`).
    pub fn readiness_check(&self, check: ReadinessCheck) {
        if let Ok(mut c) = self.readiness.lock() {
            c.push(check);
        }
    }

    /// Whether every readiness check passes (the first failing one's reason otherwise).
    pub fn readiness(&self) -> impl Fn() -> Result<(), String> + Send + Sync + 'static {
        let checks = self.readiness.clone();
        move || {
            let checks = checks
                .lock()
                .map_err(|_| "readiness state poisoned".to_string())?;
            checks.iter().try_for_each(|c| c())
        }
    }
}
