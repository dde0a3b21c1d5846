//! The `spans` table: recent raw spans, sampled per second and capped in rows.

use crate::assembly::Assembly;
use redwatch_queries::catalog;
use redwatch_queries::spans::{SpansTable, SpansTableOperator, SpansTableSettings};
use std::sync::Arc;

pub fn install(asm: &mut Assembly<'_>) {
    let cfg = asm.cfg;
    let table = Arc::new(SpansTable::default());
    asm.table(catalog::SPANS.with(table.clone()));
    let op = SpansTableOperator::new(
        table,
        SpansTableSettings {
            dims: cfg.red.dimensions.iter().map(|d| d.name.clone()).collect(),
            max_rows: cfg.sql.spans_max_rows,
            retention_ns: cfg.sql.retention.as_nanos() as u64,
            per_second: cfg.sql.spans_per_second,
        },
    );
    asm.operator(move |_| Box::new(op));
}
