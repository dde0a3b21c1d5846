//! Kafka: the sink of final RED windows and anomaly/prediction spans (`exporters.kafka`) and
//! the exactly-once source (`receivers.kafka`), which commits offsets only once the sink
//! delivered the windows they fed (docs/kafka-exactness.md). The only place that knows
//! whether this redwatch was built with the `kafka` feature.

use crate::assembly::Assembly;

#[cfg(feature = "kafka")]
pub fn install(asm: &mut Assembly<'_>) -> anyhow::Result<()> {
    let sink = match &asm.cfg.exporters.kafka {
        Some(_) => Some(enabled::install_sink(asm)?),
        None => None,
    };
    if asm.cfg.fleet.role == crate::config::FleetRole::Merge {
        // The merge role consumes the shuffle topic instead of telemetry (docs/fleet.md).
        enabled::install_merge(asm);
    } else if asm.cfg.receivers.kafka.is_some() {
        enabled::install_source(asm, sink.map(|s| s.progress()));
    }
    Ok(())
}

#[cfg(not(feature = "kafka"))]
pub fn install(asm: &mut Assembly<'_>) -> anyhow::Result<()> {
    if asm.cfg.exporters.kafka.is_some() {
        anyhow::bail!(
            "exporters.kafka is set but this redwatch was built without the `kafka` feature"
        );
    }
    if asm.cfg.receivers.kafka.is_some() {
        anyhow::bail!(
            "receivers.kafka is set but this redwatch was built without the `kafka` feature"
        );
    }
    if asm.cfg.fleet.role != crate::config::FleetRole::All {
        anyhow::bail!(
            "fleet.role is not `all` but this redwatch was built without the `kafka` feature"
        );
    }
    Ok(())
}

#[cfg(feature = "kafka")]
mod enabled {
    use crate::assembly::{Assembly, Stage};
    use anyhow::Context;
    use redwatch_connectors::kafka::{fleet, KafkaSink, KafkaSource, SinkProgress, StartupHold};
    use redwatch_connectors::otlp::decode::DecodeSettings;
    use redwatch_engine::pipeline::Operator;
    use redwatch_operators::red::RedSink;
    use redwatch_queries::catalog;
    use std::sync::{Arc, Mutex};

    pub(super) fn install_sink(asm: &mut Assembly<'_>) -> anyhow::Result<Arc<KafkaSink>> {
        let sink = KafkaSink::new(
            asm.cfg.exporters.kafka.as_ref(),
            &asm.cfg.fleet,
            &asm.cfg.red,
            asm.cfg.receivers.kafka.as_ref(),
            &asm.registry,
        )
        .context("starting the Kafka sink")?;
        asm.red_sink(sink.clone());
        // The anomaly stream's spans, when `spans_topic` is set; with problems on, the anomaly
        // spans go out in their problem's trace, as on the OTLP exporter (features/problems.rs).
        if asm
            .cfg
            .exporters
            .kafka
            .as_ref()
            .is_some_and(|k| k.spans_topic.is_some())
        {
            let spans = crate::features::problems::signal_spans(asm.cfg, sink.clone());
            asm.anomaly_stream.subscribe(Arc::new(spans));
            asm.span_destinations.push(sink.clone());
        }
        // Exporters stop after the operators drained: deliver what they emitted last.
        let k = sink.clone();
        asm.on_start(Stage::Exporters, move |s| {
            let c = s.cancel(Stage::Exporters);
            s.spawn(Stage::Exporters, async move {
                c.cancelled().await;
                let _ = tokio::task::spawn_blocking(move || {
                    k.flush(std::time::Duration::from_secs(10))
                })
                .await;
                Ok(())
            });
            Box::pin(async { Ok(()) })
        });
        Ok(sink)
    }

    /// The merge role: the `red` table read from the results topic, and the merge of the
    /// shuffle topic feeding every RED sink the features added (the Kafka sink writing the
    /// results topic, detection).
    pub(super) fn install_merge(asm: &mut Assembly<'_>) {
        let cfg = asm.cfg;
        // Results restate a window while ingest instances restate their shares, and later
        // still after an instance restarted and replayed: the table takes them for as long as
        // the merge remembers a silent share.
        let lateness = cfg.windows.allowed_lateness + fleet::share_forget(&cfg.windows);
        let table = crate::features::red::table(cfg, lateness.as_nanos() as u64);
        asm.table(catalog::RED.with(table.clone()));
        asm.table(catalog::RED_WINDOWS.with(table.windows()));
        let sinks: Arc<Mutex<Vec<Arc<dyn RedSink>>>> = Arc::default();
        let slot = sinks.clone();
        asm.operator(move |s| {
            if let Ok(mut slot) = slot.lock() {
                *slot = std::mem::take(&mut s.red);
            }
            Box::new(MergeFed)
        });
        asm.on_start(Stage::Receivers, move |s| {
            let sinks = sinks.lock().map(|mut v| std::mem::take(&mut *v));
            let cancel = s.cancel(Stage::Receivers);
            let started = sinks
                .map_err(|_| anyhow::anyhow!("fleet merge: sinks poisoned"))
                .and_then(|sinks| {
                    let merge = fleet::start_merge(
                        cfg.receivers.kafka.as_ref(),
                        &cfg.fleet,
                        fleet::merge_settings(&cfg.windows, &cfg.limits),
                        sinks,
                        s.registry.clone(),
                        cancel.clone(),
                    )
                    .context("starting the fleet merge")?;
                    let results = fleet::start_results(
                        cfg.receivers.kafka.as_ref(),
                        &cfg.fleet,
                        &cfg.windows,
                        table,
                        s.registry.clone(),
                        cancel,
                    )
                    .context("starting the fleet results reader")?;
                    Ok((merge, results))
                });
            Box::pin(async move {
                let (merge, results) = started?;
                s.spawn(Stage::Receivers, async move {
                    merge
                        .await
                        .map_err(|e| anyhow::anyhow!("fleet merge task failed: {e}"))
                });
                s.spawn(Stage::Receivers, async move {
                    results
                        .await
                        .map_err(|e| anyhow::anyhow!("fleet results reader failed: {e}"))
                });
                Ok(())
            })
        });
    }

    /// The merge role's place in the operator pipeline: its input is the shuffle topic, not
    /// the pipeline's batches; it only took the RED sinks.
    struct MergeFed;

    impl Operator for MergeFed {
        fn name(&self) -> &'static str {
            "fleet_merge"
        }
    }

    pub(super) fn install_source(asm: &mut Assembly<'_>, sink: Option<Arc<SinkProgress>>) {
        let Some(cfg) = asm.cfg.receivers.kafka.clone() else {
            return;
        };
        let settings = DecodeSettings::from_config(
            &asm.cfg.decode_dimensions(),
            &asm.cfg.receivers.otlp.limits,
        );
        // The source holds the watermark from the pipeline's first tick until it joined.
        let hold: Arc<Mutex<Option<StartupHold>>> = Arc::default();
        let (held, k) = (hold.clone(), cfg.clone());
        asm.before_run(move |s| {
            Box::pin(async move {
                let h = KafkaSource::hold_watermark(&k, &s.handle).await;
                if let Ok(mut held) = held.lock() {
                    *held = Some(h);
                }
                Ok(())
            })
        });
        asm.on_start(Stage::Receivers, move |s| {
            let hold = hold.lock().ok().and_then(|mut h| h.take());
            let started = KafkaSource::start(
                &cfg,
                s.handle.clone(),
                settings,
                s.registry.clone(),
                s.cancel(Stage::Receivers),
                hold,
                sink,
            )
            .context("starting the Kafka source");
            Box::pin(async move {
                let (source, task) = started?;
                s.readiness_check(Box::new(move || {
                    source.ready().map_err(|e| format!("kafka: {e}"))
                }));
                s.spawn(Stage::Receivers, async move {
                    task.await
                        .map_err(|e| anyhow::anyhow!("Kafka source task failed: {e}"))
                });
                Ok(())
            })
        });
    }
}
