//! Continuous queries: SQL run on every closed RED window, results in the
//! `continuous_results` table and as Prometheus gauges.

use crate::assembly::{Assembly, Stage};
use redwatch_queries::catalog;
use redwatch_queries::continuous::{self, ContinuousResults};
use std::sync::Arc;

pub fn install(asm: &mut Assembly<'_>) {
    let cfg = asm.cfg;
    if cfg.sql.continuous.is_empty() {
        return;
    }
    let results = Arc::new(ContinuousResults::default());
    asm.table(catalog::CONTINUOUS_RESULTS.with(results.clone()));
    let (trigger, runs) =
        continuous::trigger(cfg.sql.continuous.clone(), results, asm.registry.clone());
    asm.red_sink(trigger);
    asm.on_start(Stage::Exporters, move |s| {
        let (queries, cancel) = (s.queries.clone(), s.cancel(Stage::Exporters));
        tokio::spawn(runs.run(queries, cancel));
        Box::pin(async { Ok(()) })
    });
}
