//! Anomaly detection and forecasting: the anomaly operator on closed RED and metric windows,
//! and the subscribers of its stream this feature owns — the `anomalies` and `predictions`
//! tables and the live view's board. Exporters subscribe in their own features.

use crate::assembly::Assembly;
use crate::config::FleetRole;
use crate::view::AnomalyBoard;
use redwatch_operators::anomaly::AnomalyOperator;
use redwatch_queries::anomalies::{AnomaliesTable, PredictionsTable, SignalTableSettings};
use redwatch_queries::catalog;
use std::sync::Arc;

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
    asm.anomaly_stream.subscribe(anomalies);
    asm.anomaly_stream.subscribe(predictions);
    let board = Arc::new(AnomalyBoard::default());
    asm.view.set_anomaly_board(board.clone());
    asm.anomaly_stream.subscribe(board);
    let op = AnomalyOperator::new(
        &cfg.anomaly,
        &cfg.forecast,
        &cfg.red,
        asm.anomaly_stream.clone(),
        &asm.registry,
    );
    asm.metric_sink(op.clone()); // anomalies on metric series
    asm.red_sink(op);
}
