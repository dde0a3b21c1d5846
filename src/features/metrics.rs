//! Metric windowing: the metrics operator and the `metric_points` table.

use crate::assembly::Assembly;
use redwatch_operators::metrics::MetricsOperator;
use redwatch_queries::catalog;
use redwatch_queries::metric_points::{MetricPointsSettings, MetricPointsTable};

pub fn install(asm: &mut Assembly<'_>) {
    let cfg = asm.cfg;
    let table = MetricPointsTable::new(MetricPointsSettings {
        lateness_ns: cfg.windows.allowed_lateness.as_nanos() as u64,
        retention_ns: cfg.sql.retention.as_nanos() as u64,
        max_bytes: cfg.sql.max_table_bytes.as_u64() as usize,
    });
    asm.table(catalog::METRIC_POINTS.with(table.clone()));
    asm.metric_sink(table);
    let registry = asm.registry.clone();
    asm.operator(move |sinks| {
        Box::new(MetricsOperator::new(
            &cfg.windows,
            &cfg.red,
            std::mem::take(&mut sinks.metrics),
            &registry,
        ))
    });
}
