//! The OTLP exporter: the anomaly stream's spans (anomalies, predictions) and (with
//! `red_metrics`) the RED metrics over OTLP. Its handle stays in [`Assembly::otlp_exporter`]
//! for features that export signals of their own.

use crate::assembly::{Assembly, Stage};
use anyhow::Context;
use redwatch_connectors::otlp_exporter::{self, red_metrics::OtlpRedMetrics};
use std::sync::Arc;

pub fn install(asm: &mut Assembly<'_>) -> anyhow::Result<()> {
    let cfg = asm.cfg;
    let Some(o) = &cfg.exporters.otlp else {
        return Ok(());
    };
    let problems = o.validate("exporters.otlp");
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(|(p, m)| format!("{p}: {m}")).collect();
        anyhow::bail!("invalid config: {}", list.join("; "));
    }
    let (handle, task) = otlp_exporter::start(o, &asm.registry, asm.cancel(Stage::Exporters))
        .context("OTLP exporter")?;
    asm.on_start(Stage::Exporters, move |s| {
        s.spawn(Stage::Exporters, async move {
            task.await;
            Ok(())
        });
        Box::pin(async { Ok(()) })
    });
    // RED metrics over OTLP (`traces.span.metrics.*`, exporters.otlp.temporality).
    if o.red_metrics {
        asm.red_sink(OtlpRedMetrics::new(
            handle.clone(),
            o.temporality,
            cfg.red.buckets_ms.clone(),
            &cfg.red.dimensions,
            o.batch.max_size,
        ));
    }
    // `anomaly_detected` and `metric_prediction` spans; with problems on, anomaly spans go out
    // in their problem's trace (features/problems.rs).
    let spans = crate::features::problems::signal_spans(cfg, handle.clone());
    asm.anomaly_stream.subscribe(Arc::new(spans));
    asm.span_destinations.push(Arc::new(handle.clone()));
    asm.otlp_exporter = Some(handle);
    Ok(())
}
