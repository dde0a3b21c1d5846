//! RED metrics: the RED operator, the `red` table, and the RED sinks every engine has (the
//! Prometheus exposition and the live view).

use crate::assembly::Assembly;
use redwatch_operators::red::RedOperator;
use redwatch_queries::catalog;
use redwatch_queries::red::{RedTable, RedTableSettings};

pub fn install(asm: &mut Assembly<'_>) {
    let cfg = asm.cfg;
    let table = RedTable::new(RedTableSettings {
        dims: cfg.red.dimensions.iter().map(|d| d.name.clone()).collect(),
        lateness_ns: cfg.windows.allowed_lateness.as_nanos() as u64,
        retention_ns: cfg.sql.retention.as_nanos() as u64,
        max_bytes: cfg.sql.max_table_bytes.as_u64() as usize,
    });
    asm.table(catalog::RED.with(table.clone()));
    asm.red_sink(asm.prometheus.clone());
    asm.red_sink(asm.view.clone());
    asm.red_sink(table);
    let registry = asm.registry.clone();
    asm.operator(move |sinks| {
        Box::new(RedOperator::new(
            cfg,
            std::mem::take(&mut sinks.red),
            &registry,
        ))
    });
}
