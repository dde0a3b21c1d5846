//! Assembles a running engine from a config: pipeline, RED operator, receivers, exporters —
//! and takes it down in stages (receivers → operators → exporters).

use crate::view::LiveView;
use anyhow::Context;
use redwatch_connectors::otlp::decode::DecodeSettings;
use redwatch_connectors::otlp::{grpc, http, ReceiverCore};
use redwatch_connectors::prometheus::{self, PrometheusRed};
use redwatch_engine::config::Config;
use redwatch_engine::pipeline::{pipeline, IngestHandle, PipelineSettings};
use redwatch_engine::security::Protocol;
use redwatch_engine::telemetry::Registry;
use redwatch_engine::time::TimePolicy;
use redwatch_operators::red::{RedOperator, RedSink};
use redwatch_queries::red::{RedTable, RedTableSettings};
use redwatch_queries::session::{QueryEngine, QueryLimits};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

type ReadinessCheck = Box<dyn Fn() -> Result<(), String> + Send + Sync>;
type ReadinessChecks = Arc<std::sync::Mutex<Vec<ReadinessCheck>>>;

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

/// The test hook of [`StartOptions::panic_operator`].
struct PanickingOperator;

impl redwatch_engine::pipeline::Operator for PanickingOperator {
    fn name(&self) -> &'static str {
        "panicking_test_operator"
    }

    fn process_batch(
        &mut self,
        _batch: &redwatch_engine::pipeline::Batch,
        _ctx: &mut redwatch_engine::pipeline::OpContext<'_>,
    ) {
        panic!("REDWATCH_TEST_PANIC_OPERATOR: this operator fails on its first batch");
    }
}

/// The listener's TLS and bearer auth (docs/design.md, "Security").
fn secure(
    name: &'static str,
    l: tokio::net::TcpListener,
    tls: Option<&redwatch_engine::config::TlsServerConfig>,
    auth: Option<&redwatch_engine::config::AuthConfig>,
    protocol: Protocol,
    registry: &Arc<Registry>,
) -> anyhow::Result<redwatch_engine::security::SecureListener> {
    redwatch_engine::security::secure(name, l, tls, auth, protocol, registry)
        .with_context(|| format!("{name}: TLS/auth settings"))
}

/// A running engine.
pub struct Engine {
    /// Bound addresses by listener name (`otlp_grpc`, `otlp_http`, `prometheus`).
    pub addrs: BTreeMap<&'static str, SocketAddr>,
    pub registry: Arc<Registry>,
    pub view: Arc<LiveView>,
    pub prometheus: Arc<PrometheusRed>,
    pub tables: Arc<redwatch_queries::Tables>,
    pub queries: QueryEngine,
    handle: Option<IngestHandle>,
    receivers_cancel: CancellationToken,
    receivers: Vec<JoinHandle<anyhow::Result<()>>>,
    pipeline_cancel: CancellationToken,
    pipeline: JoinHandle<()>,
    /// Set once the pipeline task ended while the engine was running (an operator panicked).
    pipeline_failed: Arc<std::sync::OnceLock<String>>,
    pipeline_failures: Arc<redwatch_engine::telemetry::Counter>,
    exporters_cancel: CancellationToken,
    exporters: Vec<JoinHandle<anyhow::Result<()>>>,
}

async fn bind(
    name: &'static str,
    addr: SocketAddr,
    opts: &StartOptions,
) -> anyhow::Result<tokio::net::TcpListener> {
    match redwatch_connectors::bind(name, addr).await {
        Ok(l) => Ok(l),
        Err(e)
            if opts.fall_back_to_ephemeral_ports && e.kind() == std::io::ErrorKind::AddrInUse =>
        {
            tracing::warn!("{name}: {addr} is in use, binding an ephemeral port instead");
            Ok(redwatch_connectors::bind(name, SocketAddr::new(addr.ip(), 0)).await?)
        }
        Err(e) => Err(e.into()),
    }
}

impl Engine {
    /// Starts every configured component. The config must already be validated.
    pub async fn start(cfg: &Config, opts: StartOptions) -> anyhow::Result<Engine> {
        let registry = Registry::new();
        registry
            .gauge(
                "redwatch_build_info",
                "redwatch version.",
                &[("version", env!("CARGO_PKG_VERSION"))],
            )
            .set(1.0);
        let policy = Arc::new(TimePolicy::new(&cfg.windows));
        let prom = PrometheusRed::new(cfg.red.buckets_ms.clone(), &cfg.red.dimensions);
        let view = LiveView::new();
        let red_table = RedTable::new(RedTableSettings {
            dims: cfg.red.dimensions.iter().map(|d| d.name.clone()).collect(),
            lateness_ns: cfg.windows.allowed_lateness.as_nanos() as u64,
            retention_ns: cfg.sql.retention.as_nanos() as u64,
            max_bytes: cfg.sql.max_table_bytes.as_u64() as usize,
        });
        let spans_table = Arc::new(redwatch_queries::spans::SpansTable::default());
        let signal_tables = redwatch_queries::anomalies::SignalTableSettings {
            retention_ns: cfg.sql.retention.as_nanos() as u64,
            ..Default::default()
        };
        let tables = Arc::new(redwatch_queries::Tables {
            red: red_table.clone(),
            spans: spans_table.clone(),
            continuous: Arc::new(redwatch_queries::continuous::ContinuousResults::default()),
            anomalies: redwatch_queries::anomalies::AnomaliesTable::new(signal_tables),
            predictions: redwatch_queries::anomalies::PredictionsTable::new(signal_tables),
        });
        let spans_op = redwatch_queries::spans::SpansTableOperator::new(
            spans_table,
            redwatch_queries::spans::SpansTableSettings {
                dims: cfg.red.dimensions.iter().map(|d| d.name.clone()).collect(),
                max_rows: cfg.sql.spans_max_rows,
                retention_ns: cfg.sql.retention.as_nanos() as u64,
                per_second: cfg.sql.spans_per_second,
            },
        );
        // ---- service graph (issue 7): operator, Prometheus families, `service_graph` table ----
        let mut extra_tables: Vec<redwatch_queries::ExtraTable> = Vec::new();
        let mut service_graph_op = None;
        if cfg.service_graph.enabled {
            let sg = &cfg.service_graph;
            let table = redwatch_queries::service_graph::ServiceGraphTable::new(
                redwatch_queries::service_graph::ServiceGraphTableSettings {
                    dims: sg.dimensions.iter().map(|d| d.name.clone()).collect(),
                    retention_ns: cfg.sql.retention.as_nanos() as u64,
                    max_rows: (cfg.sql.max_table_bytes.as_u64() / 256).max(1000) as usize,
                },
            );
            let prom_sg = prometheus::PrometheusServiceGraph::new(
                sg.buckets_s.clone(),
                &sg.dimensions,
                sg.cardinality_limit,
            );
            prom.add_section(prom_sg.clone());
            extra_tables.push((
                "service_graph",
                table.clone(),
                &["window_start", "window_end"],
            ));
            let sg_sinks: Vec<Arc<dyn redwatch_operators::servicegraph::ServiceGraphSink>> =
                vec![prom_sg, table];
            service_graph_op = Some(redwatch_operators::servicegraph::ServiceGraphOperator::new(
                cfg, sg_sinks, &registry,
            ));
        }
        // ---- end service graph ----
        // ---- metric windowing (issue 7): MetricsOperator -> `metric_points` table ----------
        let metric_points = redwatch_queries::metric_points::MetricPointsTable::new(
            redwatch_queries::metric_points::MetricPointsSettings {
                lateness_ns: cfg.windows.allowed_lateness.as_nanos() as u64,
                retention_ns: cfg.sql.retention.as_nanos() as u64,
                max_bytes: cfg.sql.max_table_bytes.as_u64() as usize,
            },
        );
        extra_tables.push((
            "metric_points",
            metric_points.clone(),
            &["window_start", "window_end"],
        ));
        let mut metric_sinks: Vec<Arc<dyn redwatch_operators::metrics::MetricSink>> =
            vec![metric_points];
        // ---- end metric windowing (the operator joins the pipeline below) ----
        // ---- session windows (issue 7): SessionOperator -> `sessions` table -----------------
        let sessions_table = redwatch_queries::session_windows::SessionsTable::new(
            redwatch_queries::session_windows::SessionsTableSettings {
                retention_ns: cfg.sql.retention.as_nanos() as u64,
                max_bytes: cfg.sql.max_table_bytes.as_u64() as usize,
            },
        );
        extra_tables.push((
            "sessions",
            sessions_table.clone(),
            &["session_start", "session_end"],
        ));
        let sessions_op = redwatch_operators::sessions::SessionOperator::new(
            cfg,
            vec![sessions_table],
            &registry,
        );
        // ---- end session windows (the operator joins the pipeline below) ----
        let queries = QueryEngine::new(
            tables.providers_with(extra_tables),
            QueryLimits::from_config(&cfg.sql),
        )
        .context("starting the query runtime")?;
        let exporters_cancel = CancellationToken::new();
        let mut sinks: Vec<Arc<dyn RedSink>> = vec![prom.clone(), view.clone(), red_table];
        if !cfg.sql.continuous.is_empty() {
            sinks.push(redwatch_queries::continuous::start(
                cfg.sql.continuous.clone(),
                queries.clone(),
                tables.continuous.clone(),
                registry.clone(),
                exporters_cancel.clone(),
            ));
        }
        // ---- Kafka sink (issue 4): final RED windows and anomaly/prediction spans ----------
        #[cfg(feature = "kafka")]
        let kafka_sink = match &cfg.exporters.kafka {
            Some(_) => {
                let k = redwatch_connectors::kafka::KafkaSink::new(cfg, &registry)
                    .context("starting the Kafka sink")?;
                sinks.push(k.clone());
                Some(k)
            }
            None => None,
        };
        #[cfg(not(feature = "kafka"))]
        if cfg.exporters.kafka.is_some() {
            anyhow::bail!(
                "exporters.kafka is set but this redwatch was built without the `kafka` feature"
            );
        }
        // ---- end Kafka sink ------------------------------------------------------------------
        // ---- anomaly detection, prediction and OTLP export (issue 6) ----
        let mut otlp_task = None;
        let otlp_exporter = match &cfg.exporters.otlp {
            Some(o) => {
                let problems = o.validate("exporters.otlp");
                if !problems.is_empty() {
                    let list: Vec<String> =
                        problems.iter().map(|(p, m)| format!("{p}: {m}")).collect();
                    anyhow::bail!("invalid config: {}", list.join("; "));
                }
                let (h, task) = redwatch_connectors::otlp_exporter::start(
                    o,
                    &registry,
                    exporters_cancel.clone(),
                )
                .context("OTLP exporter")?;
                otlp_task = Some(tokio::spawn(async move {
                    task.await;
                    Ok(())
                }));
                // RED metrics over OTLP (`traces.span.metrics.*`, exporters.otlp.temporality).
                if o.red_metrics {
                    sinks.push(
                        redwatch_connectors::otlp_exporter::red_metrics::OtlpRedMetrics::new(
                            h.clone(),
                            o.temporality,
                            cfg.red.buckets_ms.clone(),
                            &cfg.red.dimensions,
                            o.batch.max_size,
                        ),
                    );
                }
                Some(h)
            }
            None => None,
        };
        if cfg.anomaly.enabled || cfg.forecast.enabled {
            let sink = crate::anomaly_sink::AnomalySink::new(
                cfg,
                otlp_exporter,
                tables.anomalies.clone(),
                tables.predictions.clone(),
                registry.clone(),
            );
            view.set_anomaly_board(sink.board());
            metric_sinks.push(sink.clone()); // anomalies on metric series (issue 7 item 5)
            #[cfg(feature = "kafka")]
            if let Some(k) = &kafka_sink {
                let k = k.clone();
                sink.also_export_to(Box::new(move |rs| {
                    k.export_spans(rs);
                }));
            }
            sinks.push(sink);
        }
        // ---- end of issue 6 block ----
        let red = RedOperator::new(cfg, sinks, &registry);
        let (handle, pipe) = pipeline(
            policy,
            PipelineSettings::from_config(cfg),
            {
                let mut ops: Vec<Box<dyn redwatch_engine::pipeline::Operator>> =
                    vec![Box::new(red), Box::new(spans_op)];
                if opts.panic_operator {
                    ops.push(Box::new(PanickingOperator));
                }
                // The service graph (issue 7 block above).
                if let Some(op) = service_graph_op {
                    ops.push(Box::new(op));
                }
                // Session windows (issue 7 block above), only when a session spec is set.
                if sessions_op.is_active() {
                    ops.push(Box::new(sessions_op));
                }
                // Metric windowing (issue 7 block above).
                ops.push(Box::new(redwatch_operators::metrics::MetricsOperator::new(
                    cfg,
                    std::mem::take(&mut metric_sinks),
                    &registry,
                )));
                ops
            },
            registry.clone(),
        );
        // ---- Kafka source, part 1 of 2 (issue 4): hold the watermark from the first tick -----
        #[cfg(feature = "kafka")]
        let kafka_hold = match &cfg.receivers.kafka {
            Some(k) => {
                Some(redwatch_connectors::kafka::KafkaSource::hold_watermark(k, &handle).await)
            }
            None => None,
        };
        // ---- end Kafka source, part 1 ----------------------------------------------------------
        let pipeline_cancel = CancellationToken::new();
        let pipeline = tokio::spawn(pipe.run(pipeline_cancel.clone()));
        let pipeline_failed: Arc<std::sync::OnceLock<String>> = Arc::default();
        let pipeline_failures = registry.counter(
            "redwatch_pipeline_failures_total",
            "The operator task ended while the engine was running (an operator panicked); /healthz fails and the process exits non-zero.",
            &[],
        );

        let mut addrs = BTreeMap::new();
        let mut exporters = Vec::new();
        exporters.extend(otlp_task); // the OTLP exporter (issue 6 block above)
        #[cfg(feature = "kafka")]
        if let Some(k) = &kafka_sink {
            // Exporters stop after the operators drained: deliver what they emitted last.
            let (k, c) = (k.clone(), exporters_cancel.clone());
            exporters.push(tokio::spawn(async move {
                c.cancelled().await;
                let _ = tokio::task::spawn_blocking(move || {
                    k.flush(std::time::Duration::from_secs(10))
                })
                .await;
                Ok(())
            }));
        }
        if let Some(p) = &cfg.exporters.prometheus {
            let l = bind("prometheus", p.endpoint, &opts).await?;
            addrs.insert("prometheus", l.local_addr()?);
            let (tls, auth) = (p.tls.as_ref(), p.auth.as_ref());
            let l = secure("prometheus", l, tls, auth, Protocol::Http, &registry)?;
            let (red, reg, c) = (prom.clone(), registry.clone(), exporters_cancel.clone());
            exporters.push(tokio::spawn(async move {
                prometheus::serve(l, red, reg, c)
                    .await
                    .context("prometheus endpoint")
            }));
        }

        // Components that can make the engine not ready (a Kafka source without brokers) add a
        // check here; `/readyz` answers 503 with the first failing check's reason.
        let readiness_checks: ReadinessChecks = Arc::default();
        if let Some(addr) = cfg.sql.http_endpoint {
            let l = bind("sql_http", addr, &opts).await?;
            addrs.insert("sql_http", l.local_addr()?);
            let (tls, auth) = (cfg.sql.tls.as_ref(), cfg.sql.auth.as_ref());
            let l = secure("sql_http", l, tls, auth, Protocol::Http, &registry)?;
            let ready_pipeline = handle.clone();
            let failed = pipeline_failed.clone();
            let live: redwatch_queries::http::Readiness = Arc::new(move || match failed.get() {
                Some(why) => Err(format!("the operator pipeline failed: {why}")),
                None => Ok(()),
            });
            let checks = readiness_checks.clone();
            let ready: redwatch_queries::http::Readiness = Arc::new(move || {
                if ready_pipeline.is_closed() {
                    return Err("the pipeline has stopped".into());
                }
                let checks = checks
                    .lock()
                    .map_err(|_| "readiness state poisoned".to_string())?;
                checks.iter().try_for_each(|c| c())
            });
            let router = redwatch_queries::http::router(
                queries.clone(),
                live,
                ready,
                cfg.sql.allowed_hosts.clone(),
                &registry,
            )
            .merge(redwatch_queries::console::router(cfg));
            let c = exporters_cancel.clone();
            exporters.push(tokio::spawn(async move {
                redwatch_queries::http::serve(l, router, c)
                    .await
                    .context("SQL HTTP API")
            }));
        }

        if let Some(addr) = cfg.sql.flight_endpoint {
            let l = bind("flight_sql", addr, &opts).await?;
            addrs.insert("flight_sql", l.local_addr()?);
            let (tls, auth) = (cfg.sql.tls.as_ref(), cfg.sql.auth.as_ref());
            let l = secure("flight_sql", l, tls, auth, Protocol::Grpc, &registry)?;
            let (q, c) = (queries.clone(), exporters_cancel.clone());
            let m = redwatch_queries::metrics::QueryMetrics::new(&registry);
            exporters.push(tokio::spawn(async move {
                redwatch_queries::flight::serve(l, q, m, c)
                    .await
                    .context("Flight SQL endpoint")
            }));
        }

        let settings = DecodeSettings::from_config(cfg);
        let receivers_cancel = CancellationToken::new();
        let mut receivers = Vec::new();
        if let Some(g) = &cfg.receivers.otlp.grpc {
            let l = bind("otlp_grpc", g.endpoint, &opts).await?;
            addrs.insert("otlp_grpc", l.local_addr()?);
            let (tls, auth) = (g.tls.as_ref(), g.auth.as_ref());
            let l = secure("otlp_grpc", l, tls, auth, Protocol::Grpc, &registry)?;
            let core =
                ReceiverCore::new("otlp_grpc", handle.clone(), settings.clone(), &registry).await;
            let max = g.max_message_size.as_u64() as usize;
            let c = receivers_cancel.clone();
            receivers.push(tokio::spawn(async move {
                grpc::serve(l, core, max, c)
                    .await
                    .context("OTLP gRPC receiver")
            }));
        }
        if let Some(h) = &cfg.receivers.otlp.http {
            let l = bind("otlp_http", h.endpoint, &opts).await?;
            addrs.insert("otlp_http", l.local_addr()?);
            let (tls, auth) = (h.tls.as_ref(), h.auth.as_ref());
            let l = secure("otlp_http", l, tls, auth, Protocol::Http, &registry)?;
            let core =
                ReceiverCore::new("otlp_http", handle.clone(), settings.clone(), &registry).await;
            let max = h.max_body_size.as_u64() as usize;
            let c = receivers_cancel.clone();
            receivers.push(tokio::spawn(async move {
                http::serve(l, core, max, c)
                    .await
                    .context("OTLP HTTP receiver")
            }));
        }
        // ---- Kafka source, part 2 of 2 (issue 4) ---------------------------------------------
        #[cfg(feature = "kafka")]
        if let Some(k) = &cfg.receivers.kafka {
            let (kafka_source, task) = redwatch_connectors::kafka::KafkaSource::start(
                k,
                handle.clone(),
                settings.clone(),
                registry.clone(),
                receivers_cancel.clone(),
                kafka_hold,
                kafka_sink.as_ref().map(|s| s.progress()),
            )
            .context("starting the Kafka source")?;
            if let Ok(mut checks) = readiness_checks.lock() {
                checks.push(Box::new(move || {
                    kafka_source.ready().map_err(|e| format!("kafka: {e}"))
                }));
            }
            receivers.push(tokio::spawn(async move {
                task.await
                    .map_err(|e| anyhow::anyhow!("Kafka source task failed: {e}"))
            }));
        }
        #[cfg(not(feature = "kafka"))]
        if cfg.receivers.kafka.is_some() {
            anyhow::bail!(
                "receivers.kafka is set but this redwatch was built without the `kafka` feature"
            );
        }
        // ---- end Kafka source, part 2 ----------------------------------------------------------
        Ok(Engine {
            addrs,
            registry,
            view,
            prometheus: prom,
            tables,
            queries,
            handle: Some(handle),
            receivers_cancel,
            receivers,
            pipeline_cancel,
            pipeline,
            pipeline_failed,
            pipeline_failures,
            exporters_cancel,
            exporters,
        })
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

use std::future::Future;
