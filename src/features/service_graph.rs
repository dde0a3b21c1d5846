//! The service graph: its operator, its Prometheus families and the `service_graph` table.

use crate::assembly::Assembly;
use redwatch_connectors::prometheus::PrometheusServiceGraph;
use redwatch_operators::servicegraph::{ServiceGraphOperator, ServiceGraphSink};
use redwatch_queries::catalog;
use redwatch_queries::service_graph::{ServiceGraphTable, ServiceGraphTableSettings};
use std::sync::Arc;

pub fn install(asm: &mut Assembly<'_>) {
    let cfg = asm.cfg;
    let sg = &cfg.service_graph;
    if !sg.enabled {
        return;
    }
    let table = ServiceGraphTable::new(ServiceGraphTableSettings {
        dims: sg.dimensions.iter().map(|d| d.name.clone()).collect(),
        retention_ns: cfg.sql.retention.as_nanos() as u64,
        max_rows: (cfg.sql.max_table_bytes.as_u64() / 256).max(1000) as usize,
    });
    let prom =
        PrometheusServiceGraph::new(sg.buckets_s.clone(), &sg.dimensions, sg.cardinality_limit);
    asm.prometheus.add_section(prom.clone());
    asm.table(catalog::SERVICE_GRAPH.with(table.clone()));
    let registry = asm.registry.clone();
    // Built with the pipeline: later features (problems) add sinks of their own.
    asm.operator(move |sinks| {
        let mut all: Vec<Arc<dyn ServiceGraphSink>> = vec![prom, table];
        all.append(&mut sinks.service_graph);
        Box::new(ServiceGraphOperator::new(
            &cfg.windows,
            &cfg.red,
            &cfg.service_graph,
            all,
            &registry,
        ))
    });
}
