//! RED metrics: the RED operator, the `red` table, and the RED sinks every engine has (the
//! Prometheus exposition and the live view).

use crate::assembly::Assembly;
use crate::config::{Config, FleetRole};
use redwatch_operators::red::RedOperator;
use redwatch_queries::catalog;
use redwatch_queries::red::{RedTable, RedTableSettings};
use std::sync::Arc;

pub fn install(asm: &mut Assembly<'_>) {
    let cfg = asm.cfg;
    if cfg.fleet.role == FleetRole::Merge {
        // A merge instance aggregates no spans: its `red` table is the fleet's results topic
        // (features::kafka, docs/fleet.md).
        return;
    }
    let table = table(cfg, cfg.windows.allowed_lateness.as_nanos() as u64);
    asm.table(catalog::RED.with(table.clone()));
    asm.table(catalog::RED_WINDOWS.with(table.windows()));
    asm.red_sink(asm.prometheus.clone());
    asm.red_sink(asm.view.clone());
    if cfg.fleet.role == FleetRole::All {
        // An ingest instance's rows are shares of series, not what a query should see.
        asm.red_sink(table);
    }
    let registry = asm.registry.clone();
    asm.operator(move |sinks| {
        Box::new(RedOperator::new(
            &cfg.windows,
            &cfg.red,
            std::mem::take(&mut sinks.red),
            &registry,
        ))
    });
}

/// The `red` table for `cfg`, sealing windows `lateness_ns` after their end.
pub fn table(cfg: &Config, lateness_ns: u64) -> Arc<RedTable> {
    RedTable::new(RedTableSettings {
        dims: cfg.red.dimensions.iter().map(|d| d.name.clone()).collect(),
        lateness_ns,
        retention_ns: cfg.sql.retention.as_nanos() as u64,
        max_bytes: cfg.sql.max_table_bytes.as_u64() as usize,
    })
}
