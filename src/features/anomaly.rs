//! Anomaly detection and forecasting on RED and metric windows: the `anomalies` and
//! `predictions` tables, the live view's board, and the spans sent to the exporters installed
//! before it.

use crate::anomaly_sink::AnomalySink;
use crate::assembly::Assembly;
use redwatch_engine::config::FleetRole;
use redwatch_queries::anomalies::{AnomaliesTable, PredictionsTable, SignalTableSettings};
use redwatch_queries::catalog;

pub fn install(asm: &mut Assembly<'_>) {
    let cfg = asm.cfg;
    let settings = SignalTableSettings {
        retention_ns: cfg.sql.retention.as_nanos() as u64,
        ..Default::default()
    };
    let anomalies = AnomaliesTable::new(settings);
    let predictions = PredictionsTable::new(settings);
    asm.table(catalog::ANOMALIES.with(anomalies.clone()));
    asm.table(catalog::PREDICTIONS.with(predictions.clone()));
    // An ingest instance sees shares of series: detection runs on the merge instance that owns
    // the whole series (docs/fleet.md).
    if !(cfg.anomaly.enabled || cfg.forecast.enabled) || cfg.fleet.role == FleetRole::Ingest {
        return;
    }
    let sink = AnomalySink::new(
        cfg,
        asm.otlp_exporter.clone(),
        anomalies,
        predictions,
        asm.registry.clone(),
    );
    asm.view.set_anomaly_board(sink.board());
    let mut outputs = std::mem::take(&mut asm.span_outputs);
    match outputs.len() {
        0 => {}
        1 => sink.also_export_to(outputs.remove(0)),
        _ => sink.also_export_to(Box::new(move |rs| {
            for o in &outputs {
                o(rs.clone());
            }
        })),
    }
    asm.metric_sink(sink.clone()); // anomalies on metric series
    asm.red_sink(sink);
}
