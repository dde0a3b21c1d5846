//! Session windows: the session operator (when a session spec is set) and the `sessions` table.

use crate::assembly::Assembly;
use redwatch_operators::sessions::SessionOperator;
use redwatch_queries::catalog;
use redwatch_queries::sessions::{SessionsTable, SessionsTableSettings};

pub fn install(asm: &mut Assembly<'_>) {
    let cfg = asm.cfg;
    let table = SessionsTable::new(SessionsTableSettings {
        retention_ns: cfg.sql.retention.as_nanos() as u64,
        max_bytes: cfg.sql.max_table_bytes.as_u64() as usize,
    });
    asm.table(catalog::SESSIONS.with(table.clone()));
    let op = SessionOperator::new(
        &cfg.windows,
        cfg.session_specs(),
        vec![table],
        &asm.registry,
    );
    if op.is_active() {
        asm.operator(move |_| Box::new(op));
    }
}
