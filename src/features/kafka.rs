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
    if asm.cfg.receivers.kafka.is_some() {
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
    Ok(())
}

#[cfg(feature = "kafka")]
mod enabled {
    use crate::assembly::{Assembly, Stage};
    use anyhow::Context;
    use redwatch_connectors::kafka::{KafkaSink, KafkaSource, SinkProgress, StartupHold};
    use redwatch_connectors::otlp::decode::DecodeSettings;
    use std::sync::{Arc, Mutex};

    pub(super) fn install_sink(asm: &mut Assembly<'_>) -> anyhow::Result<Arc<KafkaSink>> {
        let sink = KafkaSink::new(asm.cfg, &asm.registry).context("starting the Kafka sink")?;
        asm.red_sink(sink.clone());
        let k = sink.clone();
        asm.span_outputs.push(Box::new(move |rs| {
            k.export_spans(rs);
        }));
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

    pub(super) fn install_source(asm: &mut Assembly<'_>, sink: Option<Arc<SinkProgress>>) {
        let Some(cfg) = asm.cfg.receivers.kafka.clone() else {
            return;
        };
        let settings = DecodeSettings::from_config(asm.cfg);
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
